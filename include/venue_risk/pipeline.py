"""The stages of the nightly run, as functions of (date, inputs) that hand each other paths and
small JSON-serializable dicts, never frames. The Airflow DAG wires them as tasks; the CLI
(`venue-risk run-day`) and the tests call them directly.

prepare_source -> extract (per dataset) -> validate -> load -> compute_metrics -> store_metrics
-> build_report -> deliver
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Callable

import venue_risk
from venue_risk.atomic import write_atomic, write_json_atomic, write_parquet_atomic
from venue_risk.metric_jobs import METRIC_TABLES
from venue_risk.schema import DATASET_NAMES
from venue_risk.settings import Settings



def as_date(day: str | dt.date) -> dt.date:
    return day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)[:10])


def code_version(home: Path) -> str:
    """Package version plus the git commit of the project checkout, when there is one."""
    try:
        sha = subprocess.run(["git", "-C", str(home), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(home), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{venue_risk.__version__}+g{sha}" + (".dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return venue_risk.__version__


# -- stages -------------------------------------------------------------------------------------

def check_day(day: str | dt.date, settings: Settings) -> dt.date:
    """The day as a date; a day before the venue's start date (VENUE_RISK_START_DATE) raises
    BeforeStartDate: nothing before it is the venue's history."""
    from venue_risk.errors import BeforeStartDate

    day = as_date(day)
    if day < settings.first_day:
        raise BeforeStartDate(day.isoformat(), settings.start_date)
    return day


def prepare_source(day: str | dt.date, settings: Settings) -> dict:
    """Make the source ready for the day (the simulated venue simulates it if not cached); a day
    before the start date fails loudly."""
    day = check_day(day, settings)
    source = settings.source()
    source.prepare(day)
    return source.describe()


def extract(day: str | dt.date, dataset: str, settings: Settings) -> dict:
    """Land one dataset's day: {dataset, path, rows, source_files, carried, declared}. A dataset
    the source does not carry (venue_risk.coverage.source_declares) lands as an empty partition
    with carried = False; the gate then reports it absent."""
    import polars as pl

    from venue_risk.coverage import source_declares
    from venue_risk.landing import land_dataset, landing_path
    from venue_risk.schema import DATASETS

    day, source = as_date(day), settings.source()
    declared = source_declares(source, day)
    if dataset not in declared:
        path = write_parquet_atomic(pl.DataFrame(schema=DATASETS[dataset].schema),
                                    landing_path(settings.paths.landing, dataset, day))
        return {"dataset": dataset, "path": str(path), "rows": 0, "source_files": [],
                "carried": False, "declared": None}
    return land_dataset(source, dataset, day, settings.paths.landing) | {
        "carried": True, "declared": declared[dataset]}


def landed_paths(extracted: list[dict]) -> dict[str, str]:
    return {e["dataset"]: e["path"] for e in extracted}


def quality_dir(settings: Settings, day: dt.date) -> Path:
    return settings.paths.data / "quality" / f"date={day.isoformat()}"


def _declared(extracted: list[dict]) -> dict | None:
    """{dataset: declared entry} of the carried datasets of the extract results (None: all)."""
    return ({e["dataset"]: e.get("declared") for e in extracted if e.get("carried", True)}
            if extracted else None)


def validate(day: str | dt.date, extracted: list[dict], settings: Settings,
             groups: int | None = None) -> dict:
    """Run the data-quality gate (Great Expectations suites) on the landed day, in `groups`
    symbol groups one after the other (default settings.symbol_groups, else the symbols packed
    by their landed rows: split.packed_groups; the result does not depend on it). Writes data/quality/date=D/validation.json and
    gx_results.json (copied beside the report), the validated partitions and the quarantine.
    Raises DataQualityError on a critical failure."""
    from venue_risk.quality import run_gate

    day = as_date(day)
    result = run_gate(day, landed_paths(extracted), settings.paths.data,
                      quarantine_limits=settings.quarantine_limits or None,
                      declared=_declared(extracted),
                      groups=groups if groups is not None else settings.symbol_groups)
    return {"status": result["status"], "path": str(quality_dir(settings, day) / "validation.json"),
            "quarantined": sum(q["rows"] for q in result["quarantined"])}


def gate_parts(day: str | dt.date, extracted: list[dict], settings: Settings,
               groups: int | None = None) -> list[dict]:
    """The parts of the split gate (quality.gate.gate_parts): one per symbol group (`groups` or
    settings.symbol_groups round-robin, else the symbols packed by their landed rows:
    split.packed_groups) and the venue part. Stores the day's facts (schema, units, row counts,
    rows per symbol, coverage of the whole landed files) that every part reads, so they are
    computed once, not per part."""
    from venue_risk.quality.gate import gate_parts as parts

    landed = landed_paths(extracted)
    return parts(as_date(day), landed, groups or settings.symbol_groups, settings.paths.data,
                 _declared(extracted))


def validate_part(day: str | dt.date, extracted: list[dict], part: dict, settings: Settings) -> dict:
    """One part of the split gate (quality.gate.validate_part): its validated partitions,
    quarantine rows and quality/date=D/parts/<part>.json. Returns a small summary."""
    from venue_risk.quality.gate import validate_part as run_part

    return run_part(as_date(day), landed_paths(extracted), settings.paths.data, part,
                    declared=_declared(extracted))


def combine_gate(day: str | dt.date, extracted: list[dict], parts: list[dict], settings: Settings) -> dict:
    """Combine the parts of the split gate (quality.gate.combine_parts) into validation.json;
    returns what `validate` returns. Raises DataQualityError on a critical failure."""
    from venue_risk.quality.gate import combine_parts

    day = as_date(day)
    result = combine_parts(day, settings.paths.data, parts,
                           quarantine_limits=settings.quarantine_limits or None,
                           declared=_declared(extracted))
    return {"status": result["status"], "path": str(quality_dir(settings, day) / "validation.json"),
            "quarantined": sum(q["rows"] for q in result["quarantined"])}


def load(day: str | dt.date, extracted: list[dict], settings: Settings) -> dict:
    """Replace the day in the warehouse (one transaction): the validated partitions (every part
    file validation.json lists per dataset) and the quarantined rows of the gate's run
    (validation.json), never the raw landing."""
    import json

    from venue_risk.quality import DataQualityError
    from venue_risk.warehouse import load_day

    day = as_date(day)
    path = quality_dir(settings, day) / "validation.json"
    try:
        validation = json.loads(path.read_text())
    except FileNotFoundError:
        raise RuntimeError(f"no validation of {day} at {path}: run the validate stage first") from None
    if validation.get("status") == "failed" or "validated" not in validation:
        raise DataQualityError(validation)
    return load_day(settings.paths.warehouse, day, validation["validated"],
                    quarantine=validation.get("quarantine"))


def metrics_dir(settings: Settings, day: dt.date) -> Path:
    return settings.paths.data / "metrics" / f"date={day.isoformat()}"


def baseline_path(settings: Settings, day: dt.date) -> Path:
    return metrics_dir(settings, day) / "baseline.json"


def _coverage(settings: Settings, day: dt.date) -> dict | None:
    import json

    return json.loads((quality_dir(settings, day) / "validation.json").read_text()).get("coverage")


def validated_partitions(settings: Settings, day: dt.date) -> dict[str, list[str]] | None:
    """{dataset: validated Parquet files} the warehouse loaded the day from (validation.json's
    `validated`), for the metric stage to read the day's rows from (metric_jobs.read_inputs);
    None (read the warehouse) when the gate's record lists none or a listed file is gone."""
    import json

    path = quality_dir(settings, day) / "validation.json"
    try:
        validation = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    files = validation.get("validated") if validation.get("status") != "failed" else None
    if not files or not all(Path(f).is_file() for paths in files.values() for f in paths):
        return None
    return files


def metric_groups(day: str | dt.date, settings: Settings) -> list[dict]:
    """The day's symbol groups for the split metric stage, over the symbols of the loaded
    instruments: settings.symbol_groups of them round-robin (split.symbol_groups), else packed
    by their landed rows as the gate recorded them (validation.json `symbol_rows`,
    split.packed_groups; a validation.json from before it recorded them: ceil(rows /
    ROWS_PER_GROUP) groups round-robin): [{group, symbols}], JSON for Airflow's task mapping.
    A day without instruments has one empty group."""
    import json

    from venue_risk.schema import DATASETS
    from venue_risk.split import group_name, groups_for_rows, packed_groups, symbol_groups
    from venue_risk.warehouse import connect

    day = as_date(day)
    with connect(settings.paths.warehouse, read_only=True) as con:
        symbols = [r[0] for r in con.sql(
            f"SELECT DISTINCT symbol FROM instruments WHERE date = DATE '{day.isoformat()}' "
            "AND symbol IS NOT NULL").fetchall()]
    validation = (json.loads((quality_dir(settings, day) / "validation.json").read_text())
                  if settings.symbol_groups is None else {})
    rows = validation.get("symbol_rows")
    if settings.symbol_groups is not None:
        groups = symbol_groups(symbols, settings.symbol_groups)
    elif rows is not None:
        groups = packed_groups({s: int(rows.get(s, 0)) for s in symbols})
    else:  # a validation.json from before the gate recorded rows per symbol
        counts = validation.get("row_counts", {})
        groups = symbol_groups(symbols, groups_for_rows(
            sum(v for k, v in counts.items() if k in DATASETS and "symbol" in DATASETS[k].schema)))
    return [{"group": group_name(i), "symbols": g} for i, g in enumerate(groups or [[]])]


def compute_symbol_metrics(day: str | dt.date, group: dict, settings: Settings) -> dict[str, str]:
    """One symbol group's per-symbol metric tables (metric_jobs.SYMBOL_TABLES), each written
    as data/metrics/date=D/parts/<group>/<table>.parquet (temp file + rename); returns
    {table: path}. Reads the group's rows of the day's validated partitions and the warehouse
    (read-only) and writes no table in it, so the groups of a
    day run side by side (Airflow mapped tasks) without the warehouse's writer lock."""
    from venue_risk.metric_jobs import compute_symbols
    from venue_risk.warehouse import connect

    day = as_date(day)
    coverage = _coverage(settings, day)
    with connect(settings.paths.warehouse, read_only=True) as con:
        tables = compute_symbols(con, day, list(group["symbols"]), coverage, validated_partitions(settings, day))
    folder = metrics_dir(settings, day) / "parts" / group["group"]
    return {name: str(write_parquet_atomic(frame, folder / f"{name}.parquet")) for name, frame in tables.items()}


def compute_metrics(day: str | dt.date, settings: Settings,
                    parts: list[dict[str, str]] | None = None) -> dict[str, str]:
    """Read the day (from the validated partitions the warehouse loaded it from,
    `validated_partitions`) and its baselines and earlier days (from the warehouse, read-only,
    via Arrow), compute every
    metric table (venue_risk.metric_jobs) and write each as Parquet; returns {table: path}.
    `parts`: the outputs of compute_symbol_metrics for every symbol group of the day (the split
    path), whose per-symbol tables are put together instead of computed here; None: everything
    in this process (metric_jobs.compute_all; on a day of several symbol groups by size, the
    groups one after the other, so memory stays bounded). All give the same tables.
    Also writes data/metrics/date=D/baseline.json: which days of the window the baselines held
    (with their versions) and which they missed (venue_risk.baseline)."""
    import polars as pl

    from venue_risk.baseline import baseline_record, window_start
    from venue_risk.memory import release_memory
    from venue_risk.metric_jobs import compute_all, compute_combined, compute_symbols
    from venue_risk.warehouse import connect, day_versions

    day = as_date(day)
    coverage = _coverage(settings, day)
    files = validated_partitions(settings, day)
    groups = metric_groups(day, settings) if parts is None else None
    with connect(settings.paths.warehouse, read_only=True) as con:
        versions = day_versions(con, window_start(day, settings.first_day, settings.baseline_days), day)
        if parts is None and len(groups) == 1:
            tables = compute_all(con, day, settings.baseline_days, settings.engine_latency_s, coverage, files)
        else:
            if parts is None:  # a day too large for one pass: its groups one after the other
                frames = []
                for g in groups:
                    frames.append(compute_symbols(con, day, g["symbols"], coverage, files))
                    release_memory()  # (a group's frames are gone: its peak is not carried over)
            else:
                frames = [{name: pl.read_parquet(path) for name, path in part.items()} for part in parts]
            tables = compute_combined(con, day, frames, settings.baseline_days, settings.engine_latency_s,
                                      coverage, files)
    write_json_atomic(baseline_record(day, settings.first_day, settings.baseline_days, versions),
                      baseline_path(settings, day))
    return {name: str(write_parquet_atomic(_with_date(frame, day), metrics_dir(settings, day) / f"{name}.parquet"))
            for name, frame in tables.items()}


def _with_date(frame, day: dt.date):
    import polars as pl

    if "date" in frame.columns:
        frame = frame.with_columns(pl.lit(day).cast(pl.Date).alias("date"))
        return frame.select(["date", *[c for c in frame.columns if c != "date"]])
    return frame.select(pl.lit(day).cast(pl.Date).alias("date"), pl.all())


def store_metrics(day: str | dt.date, tables: dict[str, str], settings: Settings) -> dict:
    """Replace the day's rows of every metric table in the warehouse (one transaction, which also
    records the day's version); then mark stale every later report whose baseline read another
    version of this day (or missed it). Returns {rows, version, stale_reports}."""
    from venue_risk.baseline import mark_stale_reports
    from venue_risk.warehouse import store_tables

    day = as_date(day)
    stored = store_tables(settings.paths.warehouse, day, tables)
    return stored | {"stale_reports": mark_stale_reports(settings.paths.reports, day, stored["version"])}


def report_dir(settings: Settings, day: dt.date) -> Path:
    return settings.paths.reports / day.isoformat()


def build_report(day: str | dt.date, extracted: list[dict], settings: Settings,
                 run_id: str = "manual", pseudonym_key: bytes | None = None) -> dict:
    """Read today's metric tables and the trailing history (read-only), build the report context
    and render PDF, HTML and summary.json into reports/<date>/.

    pseudonym_key: the secret key of the account pseudonyms (the DAG passes the Airflow variable
    venue_risk_pseudonym_key); None -> VENUE_RISK_PSEUDONYM_KEY, else accounts as recorded (the
    report says so); b"" -> pseudonyms off."""
    import json

    import polars as pl

    from venue_risk.metrics import summary
    from venue_risk.report import build_context, methods_summary, render_methods, render_report
    from venue_risk.warehouse import connect, read_day, read_history

    day = as_date(day)
    with connect(settings.paths.warehouse, read_only=True) as con:
        frames = {name: read_day(con, name, day) for name in METRIC_TABLES}
        frames["crowding_history"] = read_history(con, "crowding", day, settings.baseline_days)
        frames["insurance_fund"] = read_day(con, "insurance_fund", day)
        history = read_history(con, "venue_figures", day, settings.baseline_days)
        returns = minute_returns(con, day)
    validation = json.loads((quality_dir(settings, day) / "validation.json").read_text())
    coverage = validation.get("coverage")
    baseline = json.loads(baseline_path(settings, day).read_text())
    data_quality = data_quality_summary(validation)
    figures = dict(zip(frames["venue_figures"]["figure"].to_list(),
                       frames["venue_figures"]["value"].to_list()))
    figures["data_quality_status"] = float(summary.DATA_QUALITY_CODES[validation["status"]])
    figures["data_quality_failed_checks"] = float(
        sum(1 for c in validation["checks"] if c["failed_count"]))
    rows = summary.summary_rows(figures, history if history.height else
                                pl.DataFrame(schema={"date": pl.Date, "figure": pl.String, "value": pl.Float64}),
                                baseline_days=settings.baseline_days, coverage=coverage,
                                samples=figure_samples(frames, returns), skipped=skipped_figures(figures, coverage))
    run_meta = {
        "run_id": run_id,
        "code_version": code_version(settings.paths.home),
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": settings.source().describe(),
        "input_rows": {e["dataset"]: e["rows"] for e in extracted},
        "input_files": {e["dataset"]: e["source_files"] for e in extracted},
        "baseline_days": baseline["days"],
        "baseline_window_start": baseline["window_start"],
        "baseline_missing_days": baseline["missing_days"],
    }
    import os

    source = settings.source()
    named = getattr(source, "venue", None)
    venue_name = (settings.venue_name if "VENUE_RISK_VENUE_NAME" in os.environ or named is None
                  else (named() or settings.venue_name))  # (the importer's manifest names the venue)
    yesterday = previous_figures(settings, day)
    context = build_context(
        date=day,
        venue_name=venue_name,
        frames=frames,
        summary_rows=rows,
        history=history,
        methodology=methods_summary(run_meta["code_version"],
                                    render_methods(settings.paths.reports / "methods", run_meta["code_version"]),
                                    report_dir(settings, day)),
        run_meta=run_meta,
        data_quality=data_quality,
        pseudonymize_key=pseudonym_key,
        coverage=coverage,
        yesterday=yesterday,
    )
    context["baseline"] = baseline
    out = report_dir(settings, day)
    # the long tables go out as CSV beside the PDF (the PDF keeps their top rows), written first:
    # the PDF, written last, exists only when everything it refers to does
    from venue_risk.report.context import resolve_pseudonym_key
    from venue_risk.report.tables_csv import write_table_csvs

    context["csv"] = write_table_csvs(frames, out, resolve_pseudonym_key(pseudonym_key)[0])
    paths = render_report(context, out)
    write_json_atomic(validation, out / "validation.json")
    gx_results = quality_dir(settings, day) / "gx_results.json"
    if gx_results.exists():
        write_atomic(out / "gx_results.json", lambda tmp: tmp.write_bytes(gx_results.read_bytes()))
    return {k: str(v) for k, v in paths.items()} | {"status": context["overall_status"]}


def previous_figures(settings: Settings, day: dt.date) -> dict[str, dict] | None:
    """{figure: {status, display}} of the day before's report (its summary.json), for page one's
    "what changed since yesterday"; None when that day has no report."""
    import json

    path = report_dir(settings, day - dt.timedelta(days=1)) / "summary.json"
    if not path.is_file():
        return None
    figures = json.loads(path.read_text()).get("figures") or {}
    return {name: {"status": f.get("status"), "display": f.get("display")} for name, f in figures.items()}


def minute_returns(con, day: dt.date) -> int | None:
    """The fewest 1-minute mark returns any symbol has on `day` (minutes with a mark, less
    one): the sample behind realized volatility and return correlations; None without marks."""
    n = con.sql("SELECT min(m) FROM (SELECT symbol, count(DISTINCT date_trunc('minute', ts)) - 1 AS m "
                f"FROM mark_index WHERE date = DATE '{day.isoformat()}' GROUP BY symbol)").fetchall()[0][0]
    return None if n is None else int(n)


def figure_samples(frames: dict, returns: int | None) -> dict[str, tuple[int, int, str]]:
    """{figure: (n, minimum, what)} for the statistical headline figures (coverage.MIN_SAMPLES):
    slippage p95 over liquidations with fills; mark basis p99 over the fewest seconds of any
    symbol; crowding (realized vol) and the empirical cross-margin stress over the fewest
    1-minute returns of any symbol."""
    from venue_risk.coverage import MIN_SAMPLES

    out: dict[str, tuple[int, int, str]] = {}
    exe = frames.get("liquidation_executions")
    if exe is not None and "slippage_bps" in exe.columns:
        n = int(exe["slippage_bps"].drop_nulls().drop_nans().len())
        out["slippage_p95_bps"] = (n, MIN_SAMPLES["liquidations_for_percentile"], "liquidations with fills")
    basis = frames.get("mark_basis")
    if basis is not None and basis.height and "seconds" in basis.columns:
        out["mark_basis_p99_bps"] = (int(basis["seconds"].min()), MIN_SAMPLES["seconds_for_basis"],
                                     "seconds of marks (fewest of any symbol)")
    if returns is not None:
        for figure in ("crowded_symbols", "crowded_vol_rising_symbols", "cross_breach_empirical_3s"):
            out[figure] = (returns, MIN_SAMPLES["returns_for_vol"], "1-minute returns (fewest of any symbol)")
    return out


def skipped_figures(figures: dict[str, float], coverage: dict | None = None) -> dict[str, str]:
    """{figure: reason} for the checks that could not run today: the position rebuild without
    start-of-day positions; the published-index checks without a published index
    (coverage.derived_index_skips)."""
    from venue_risk.coverage import derived_index_skips

    out = derived_index_skips(coverage)
    if figures.get("position_rebuild_ran") == 0.0:
        out["position_rebuild_mismatches"] = ("no start-of-day positions (the previous day's "
                                              "positions_eod is not in the warehouse: the venue's first day here)")
    return out


def data_quality_summary(validation: dict) -> dict:
    """The data-quality block of the report from the gate's result."""
    return {
        "status": validation["status"],
        "checks": validation["checks"],
        "quarantined": validation.get("quarantined", []),
        "seconds": validation.get("seconds"),
        "gx_import_seconds": validation.get("gx_import_seconds"),
        "row_counts": validation.get("row_counts"),
    }


#: The CSV tables attached to a report's mail, in total at most this many bytes (smallest first);
#: larger ones stay beside the report and the mail names them.
MAIL_CSV_BUDGET_BYTES = 10_000_000


def deliver(day: str | dt.date, settings: Settings, send: Callable | None,
            recipients: list[str] | None = None, force: bool = False, dry_run: bool = False,
            attach_methods: bool = False) -> dict:
    """Email the day's report once (or write it to the outbox when `send` is None). A day whose
    report is incomplete (no summary.json or no PDF: the build failed) raises FileNotFoundError
    and records nothing in the ledger. The report's CSV tables (tables/*.csv) are attached up to
    MAIL_CSV_BUDGET_BYTES in total, smallest first (the rest are named in the mail);
    attach_methods: the methods PDF the report was built with (summary.json `methods`), too."""
    import json

    from venue_risk.deliver import deliver as deliver_report

    day = as_date(day)
    rdir = report_dir(settings, day)
    summary_path = rdir / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"no report for {day.isoformat()}: {summary_path} is missing (the "
                                f"build_report stage did not complete); build the report, then deliver")
    summary = json.loads(summary_path.read_text())
    # the long tables, smallest first, within the mail's size budget; the rest are named in the mail
    attachments, not_attached, budget = [], [], MAIL_CSV_BUDGET_BYTES
    for path in sorted((rdir / "tables").glob("*.csv"), key=lambda p: (p.stat().st_size, p.name)):
        size = path.stat().st_size
        (attachments if size <= budget else not_attached).append(path)
        budget -= size if size <= budget else 0
    if attach_methods:
        pdf = ((summary.get("methods") or {}).get("files") or {}).get("pdf")
        if not pdf:
            raise FileNotFoundError(f"the {day.isoformat()} report names no methods PDF (built before "
                                    "methods were rendered): rebuild the report to attach them")
        attachments.append((rdir / pdf["link"]).resolve())
    result = deliver_report(
        rdir, day, list(recipients or settings.recipients), send,
        outbox=settings.paths.outbox, ledger=settings.paths.data / "delivery-ledger.json",
        force=force, dry_run=dry_run, status=summary["overall_status"], sender_address=settings.mail_from,
        attachments=attachments, not_attached=not_attached,
    )
    if not dry_run:
        from venue_risk.runs import clear_failure

        clear_failure(settings.paths.data, day.isoformat())
    return result


def alert_failure(day: str, task: str, error: str, run_id: str, settings: Settings,
                  send: Callable | None, connection_error: str | None = None) -> dict:
    """A stage failed: record it for the reports page (data/runs/date=D/failure.json) and alert
    the operations list (venue_risk.deliver.send_alert: mailed, or the outbox with the reason)."""
    from venue_risk.deliver import send_alert
    from venue_risk.runs import record_failure

    record_failure(settings.paths.data, day, task, error, run_id)
    return send_alert(day=day, task=task, error=error, run_id=run_id, settings=settings, send=send,
                      connection_error=connection_error)


def run_day(day: str | dt.date, settings: Settings | None = None, send: Callable | None = None,
            run_id: str = "cli") -> dict:
    """Every stage for one day, in order, in this process (no Airflow). A failing stage raises,
    after an alert naming the stage and the error went to the operations list
    (VENUE_RISK_ALERT_RECIPIENTS, through `send`; else the outbox), as the DAG's failure
    callback does."""
    settings = settings or Settings.from_env()
    stage = "prepare_source"
    try:
        prepare_source(day, settings)
        stage = "extract"
        extracted = [extract(day, name, settings) for name in DATASET_NAMES]
        stage = "validate"
        validate(day, extracted, settings)
        stage = "load"
        load(day, extracted, settings)
        stage = "compute_metrics"
        tables = compute_metrics(day, settings)
        stage = "store_metrics"
        store_metrics(day, tables, settings)
        stage = "build_report"
        report = build_report(day, extracted, settings, run_id=run_id)
        stage = "deliver"
        delivery = deliver(day, settings, send)
    except Exception as exc:
        alert_failure(as_date(day).isoformat(), stage, f"{type(exc).__name__}: {exc}", run_id, settings, send)
        raise
    return {"report": report, "delivery": delivery}


def reprocess_days(start: str | dt.date, settings: Settings, end: str | dt.date | None = None) -> list[dt.date]:
    """The days `venue-risk reprocess --from start` recomputes, in date order: from `start` to
    `end`, or to the latest day that has a report, stored metrics or a failure record."""
    from venue_risk.runs import read_failures

    start = as_date(start)
    if end is None:
        known = [p.parent.name for p in settings.paths.reports.glob("*/summary.json")]
        known += [p.name.removeprefix("date=") for p in (settings.paths.data / "metrics").glob("date=*")]
        known += list(read_failures(settings.paths.data))
        days = [as_date(d) for d in known if is_iso_date(d)]
        end = max(days, default=start)
    end = as_date(end)
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def is_iso_date(text: str) -> bool:
    """True when `text` parses as a date in ISO 8601 form (e.g. 2026-11-07)."""
    try:
        dt.date.fromisoformat(text)
        return True
    except ValueError:
        return False


def reprocess(start: str | dt.date, settings: Settings, send: Callable | None,
              end: str | dt.date | None = None, run_id: str = "reprocess") -> list[dict]:
    """Recompute `start` to the latest day in date order (each day's baseline then sees the
    recomputed days before it), rebuilding each report; a mailed report whose headline changed is
    mailed again marked REVISED, an unchanged one is not. Stops at the first failing day (after
    its alert): the days after it would be computed on a baseline missing it."""
    out = []
    for day in reprocess_days(start, settings, end):
        result = run_day(day, settings, send=send, run_id=run_id)
        out.append({"day": day.isoformat(), "status": result["report"]["status"],
                    "delivery": result["delivery"]["status"],
                    "revised": bool(result["delivery"].get("revised"))})
    return out
