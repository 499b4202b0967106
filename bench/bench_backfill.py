"""Wall time of `airflow backfill create` over N days on the native production stack
(deploy/native-stack.sh: Postgres metadata DB, Celery on Redis), the simulated venue at a scale.

    .venv/bin/python bench/bench_backfill.py --scale tiny --days 4
    .venv/bin/python bench/bench_backfill.py --scale demo --days 4
    .venv/bin/python bench/bench_backfill.py --scale large --days 1 --groups 4 --workers 2 --concurrency 1

--workers N starts N Celery workers (deploy/native-stack.sh STACK_WORKERS) with --concurrency
task slots each; --groups sets VENUE_RISK_SYMBOL_GROUPS, the mapped gate and metric tasks per
day. The simulation of the days is done before the stack starts and is not timed. Besides the
total, it prints per task the wall time summed over its mapped instances, the span from the
first start to the last end, and the workers that ran it.

Uses its own metadata database, Redis database 14 (flushed at the end), free ports and a fresh venue home under
bench/results/ (all removed or stopped at the end); mail goes to the outbox (no SMTP
connection). Prints the time from `backfill create` to the last run's end, and each run's span.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
STACK = PROJECT / "deploy" / "native-stack.sh"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="tiny", choices=["tiny", "demo", "large"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=None, help="task slots per worker (stack.env: 4)")
    ap.add_argument("--groups", type=int, default=4,
                    help="VENUE_RISK_SYMBOL_GROUPS; 0 leaves it unset (one group per 4M landed rows)")
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--start", default="2026-11-01")
    args = ap.parse_args()
    import psycopg2

    work = PROJECT / "bench" / "results" / f"backfill-{args.scale}-w{args.workers}-g{args.groups}"
    shutil.rmtree(work, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VENUE_RISK"))}
    env.update({"STACK_HOME": str(work / "airflow"), "STACK_DB": f"venue_risk_bench_{secrets.token_hex(3)}",
                "STACK_REDIS_URL": "redis://127.0.0.1:6379/14", "STACK_API_PORT": str(free_port()),
                "STACK_WORKER_LOG_PORT": str(free_port()), "STACK_TRIGGER_LOG_PORT": str(free_port()),
                "STACK_BIN": str(BIN), "VENUE_RISK_HOME": str(work / "home"), "VENUE_RISK_SIM_SCALE": args.scale,
                "VENUE_RISK_SIM_GENESIS": args.start, "VENUE_RISK_START_DATE": args.start,
                "VENUE_RISK_SCHEDULE_GRACE_HOURS": "0", "STACK_WORKERS": str(args.workers)})
    if args.groups:
        env["VENUE_RISK_SYMBOL_GROUPS"] = str(args.groups)
    if args.concurrency:
        env["STACK_WORKER_CONCURRENCY"] = str(args.concurrency)
    first = dt.date.fromisoformat(args.start)
    # the venue is simulated first (not part of the timed backfill), once per scale, start and
    # days: later runs link to the same files (the pipeline only reads them)
    sim = PROJECT / "bench" / "results" / f"simulated-{args.scale}-{args.start}-{args.days}d"
    if not (sim / "DONE").exists():
        shutil.rmtree(sim, ignore_errors=True)
        subprocess.run([str(BIN / "venue-risk"), "simulate", "--scale", args.scale, "--start", args.start,
                        "--days", str(args.days), "--out", str(sim)], env=env, check=True)
        (sim / "DONE").touch()
    (work / "home" / "data" / "simulated").mkdir(parents=True)
    (work / "home" / "data" / "simulated" / f"{args.scale}-seed7").symlink_to(sim)
    subprocess.run([str(STACK), "start"], env=env, check=True)
    stack_env = dict(env)
    for line in subprocess.run([str(STACK), "env"], env=env, capture_output=True, text=True, check=True).stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        stack_env[key] = subprocess.run(["bash", "-c", f"printf %s {value}"], capture_output=True, text=True).stdout
    last = first + dt.timedelta(days=args.days - 1)

    def sql(query: str, *params):
        with psycopg2.connect(dbname=env["STACK_DB"], host="127.0.0.1", user="postgres") as con, con.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    try:
        while not sql("SELECT 1 FROM serialized_dag WHERE dag_id = 'venue_risk_daily'"):
            time.sleep(2)
        airflow = [str(BIN / "airflow")]
        subprocess.run(airflow + ["dags", "unpause", "venue_risk_daily"], env=stack_env, check=True, capture_output=True)
        started = time.time()
        subprocess.run(airflow + ["backfill", "create", "--dag-id", "venue_risk_daily", "--from-date",
                                  first.isoformat(), "--to-date", last.isoformat()],
                       env=stack_env, check=True, capture_output=True)
        while True:
            rows = sql("SELECT logical_date, state, start_date, end_date FROM dag_run "
                       "WHERE run_type = 'backfill' ORDER BY logical_date")
            if len(rows) == args.days and all(r[1] in ("success", "failed") for r in rows):
                break
            time.sleep(2)
        end = max(r[3] for r in rows).timestamp()
        print(f"backfill of {args.days} {args.scale} days: {end - started:.0f} s "
              f"({', '.join(r[1] for r in rows)})")
        for ld, state, s, e in rows:
            print(f"  {ld.date()} {state}: {s.timestamp() - started:6.0f} s -> {e.timestamp() - started:6.0f} s")
        print(f"workers {args.workers} x {args.concurrency or 4} slots, symbol groups {args.groups or 'by rows'}")
        print("backfill runs only (the scheduled run the unpause creates reports nothing):")
        print("| task | instances | summed wall (s) | span (s) | workers |\n|---|---:|---:|---:|---|")
        for task, n, wall, span, hosts in sql(
                "SELECT ti.task_id, count(*), sum(extract(epoch FROM ti.end_date - ti.start_date)), "
                "extract(epoch FROM max(ti.end_date) - min(ti.start_date)), "
                "string_agg(DISTINCT ti.hostname, ' ') FROM task_instance ti JOIN dag_run dr "
                "ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
                "WHERE ti.dag_id = 'venue_risk_daily' AND dr.run_type = 'backfill' GROUP BY ti.task_id "
                "ORDER BY min(ti.start_date)"):
            print(f"| {task} | {n} | {wall or 0:.1f} | {span or 0:.1f} | {hosts} |")
    finally:
        subprocess.run([str(STACK), "stop"], env=env, capture_output=True)
        subprocess.run([str(STACK), "drop-db"], env=env, capture_output=True)
        if shutil.which("redis-cli"):  # the broker's keys
            subprocess.run(["redis-cli", "-n", "14", "FLUSHDB"], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
