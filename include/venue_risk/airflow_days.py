"""Run a DAG under Airflow for a range of days, one day after the other, in one process: for each
day exactly what `airflow dags test <dag> <day>` does (`DAG.test`: the day's run and every task
of it in this process, no scheduler), without paying Airflow's start, the DAG's parse and the
imports of every task (Great Expectations, Polars, DuckDB, matplotlib, WeasyPrint, the compiled
loops) again for every day. `make demo` runs the demo week with it.

    python -m venue_risk.airflow_days --start 2026-11-01 --days 7 [--dag venue_risk_daily] [--logs DIR]

Everything the runs print (Airflow's task logs, warnings) goes to DIR/dags-test-<day>.log, one
file per day; stdout gets one line per day: the day, the state its run ended in and its wall
time. The days run in date order and stop at the first run that did not end `success` (exit 1,
naming the day, the state and its log): a later day's baselines would read a day that failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


def day_range(start: dt.date, days: int) -> list[dt.date]:
    """start, start + 1 day, ..., start + (days - 1) days."""
    return [start + dt.timedelta(days=i) for i in range(days)]


def logical_date(day: dt.date) -> dt.datetime:
    """The day's run: logical date = the day's midnight UTC (as `airflow dags test <dag> <day>`)."""
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)


def log_path(logs: Path, day: dt.date) -> Path:
    """logs/dags-test-<day>.log."""
    return Path(logs) / f"dags-test-{day.isoformat()}.log"


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send everything this process writes to stdout and stderr (file descriptors 1 and 2:
    Python's streams, Airflow's log handlers and any library writing to them) to `path` (created
    or replaced), and put them back afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def load_dag(dag_id: str):
    """The DAG as `airflow dags test` loads it: parsed from the configured DAG bundles (the dags
    folder) and synced to the metadata DB."""
    from airflow.utils.cli import get_bagged_dag
    from airflow.utils.providers_configuration_loader import providers_configuration_loaded

    dag = providers_configuration_loaded(get_bagged_dag)(bundle_names=None, dag_id=dag_id)
    if dag is None:
        raise LookupError(f"DAG {dag_id!r} not found, or it failed to parse")
    return dag


def run_days(dag, days: list[dt.date], logs: Path, out: TextIO) -> int:
    """`dag.test` for each of `days` in order, each day's output in its log (`log_path`); one
    line per day on `out`. Returns 0 when every run ended `success`, else 1 after the first run
    that did not (its state and log named; the later days are not run)."""
    for day in days:
        path = log_path(logs, day)
        t0 = time.perf_counter()
        error = None
        with output_to(path):
            try:
                run = dag.test(logical_date=logical_date(day))
                state = str(getattr(run, "state", None) or "no run")
            except Exception as exc:  # the run could not even start: its log has the traceback
                import traceback

                traceback.print_exc()
                state, error = "error", f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        print(f"== {dag.dag_id} {day.isoformat()}: {state} in {seconds:.1f} s", file=out, flush=True)
        if state != "success":
            print(f"{dag.dag_id} {day.isoformat()} ended {state!r}"
                  f"{f' ({error})' if error else ''}; log: {path}", file=out, flush=True)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m venue_risk.airflow_days", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True, help="first day (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=1, help="number of days (default 1)")
    parser.add_argument("--dag", default="venue_risk_daily", help="DAG id (default venue_risk_daily)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="folder of the per-day logs (default: $AIRFLOW_HOME)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    logs = args.logs or Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    out = os.fdopen(os.dup(1), "w", buffering=1)  # this process's stdout, whatever the runs redirect
    load_log = logs / f"dags-test-load-{args.dag}.log"
    try:
        with output_to(load_log):
            dag = load_dag(args.dag)
    except (Exception, SystemExit) as exc:
        print(f"{args.dag}: could not load the DAG: {exc}; log: {load_log}", file=out, flush=True)
        return 1
    return run_days(dag, day_range(args.start, args.days), logs, out)


if __name__ == "__main__":
    sys.exit(main())
