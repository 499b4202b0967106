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
from venue_risk.atomic import write_json_atomic, write_parquet_atomic
from venue_risk.schema import DATASET_NAMES
from venue_risk.settings import Settings

METRIC_TABLES = (
    "liquidation_executions",
    "slippage_by_path",
    "slippage_by_depth_bin",
    "forced_costs",
    "forced_cost_by_path",
    "insurance_fund_flows",
    "margin_sensitivity",
    "venue_figures",
)


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

def prepare_source(day: str | dt.date, settings: Settings) -> dict:
    """Make the source ready for the day (the simulated venue simulates it if not cached)."""
    source = settings.source()
    source.prepare(as_date(day))
    return source.describe()


def extract(day: str | dt.date, dataset: str, settings: Settings) -> dict:
    """Land one dataset's day: {dataset, path, rows, source_files}."""
    from venue_risk.landing import land_dataset

    return land_dataset(settings.source(), dataset, as_date(day), settings.paths.landing)


def landed_paths(extracted: list[dict]) -> dict[str, str]:
    return {e["dataset"]: e["path"] for e in extracted}


def quality_dir(settings: Settings, day: dt.date) -> Path:
    return settings.paths.data / "quality" / f"date={day.isoformat()}"


def validate(day: str | dt.date, extracted: list[dict], settings: Settings) -> dict:
    """Run the data-quality gate on the landed day; the result is kept beside the data (and
    copied beside the report). Raises DataQualityError on a critical failure."""
    from venue_risk.quality import DataQualityError, validate_day

    day = as_date(day)
    out = quality_dir(settings, day) / "validation.json"
    try:
        result = validate_day(day, landed_paths(extracted))
    except DataQualityError as exc:
        write_json_atomic(exc.result, out)
        raise
    write_json_atomic(result, out)
    return {"status": result["status"], "path": str(out)}


def load(day: str | dt.date, extracted: list[dict], settings: Settings) -> dict:
    """Replace the day in the warehouse (one transaction)."""
    from venue_risk.warehouse import load_day

    return load_day(settings.paths.warehouse, as_date(day), landed_paths(extracted))


def metrics_dir(settings: Settings, day: dt.date) -> Path:
    return settings.paths.data / "metrics" / f"date={day.isoformat()}"


def compute_metrics(day: str | dt.date, settings: Settings) -> dict[str, str]:
    """Read the day from the warehouse (read-only, via Arrow), compute every metric table and
    write each as Parquet; returns {table: path}."""
    import polars as pl

    from venue_risk.metrics import forced_cost, slippage, summary
    from venue_risk.warehouse import connect, read_day

    day = as_date(day)
    with connect(settings.paths.warehouse, read_only=True) as con:
        data = {name: read_day(con, name, day) for name in (
            "instruments", "risk_tiers", "trades", "liquidations", "book_depth",
            "market_metrics", "insurance_fund")}
    executions = slippage.liquidation_executions(data["liquidations"], data["trades"], data["book_depth"])
    costs = forced_cost.forced_costs(executions, data["instruments"], data["risk_tiers"])
    sensitivity = pl.concat(
        [forced_cost.margin_sensitivity(data["risk_tiers"], symbol)
         for symbol in data["instruments"]["symbol"].sort().to_list()], how="vertical")
    figures = summary.venue_day_figures(data["trades"], data["market_metrics"], data["liquidations"],
                                        data["insurance_fund"], executions, costs)
    tables = {
        "liquidation_executions": executions,
        "slippage_by_path": slippage.slippage_by_path(executions),
        "slippage_by_depth_bin": slippage.slippage_by_depth_bin(executions),
        "forced_costs": costs,
        "forced_cost_by_path": forced_cost.forced_cost_by_path(costs),
        "insurance_fund_flows": forced_cost.insurance_fund_flows(data["liquidations"], data["insurance_fund"]),
        "margin_sensitivity": sensitivity,
        "venue_figures": pl.DataFrame({"figure": list(figures), "value": [float(v) for v in figures.values()]}),
    }
    out: dict[str, str] = {}
    for name, frame in tables.items():
        frame = _with_date(frame, day)
        out[name] = str(write_parquet_atomic(frame, metrics_dir(settings, day) / f"{name}.parquet"))
    return out


def _with_date(frame, day: dt.date):
    import polars as pl

    if "date" in frame.columns:
        frame = frame.with_columns(pl.lit(day).cast(pl.Date).alias("date"))
        return frame.select(["date", *[c for c in frame.columns if c != "date"]])
    return frame.select(pl.lit(day).cast(pl.Date).alias("date"), pl.all())


def store_metrics(day: str | dt.date, tables: dict[str, str], settings: Settings) -> dict[str, int]:
    """Replace the day's rows of every metric table in the warehouse (one transaction)."""
    from venue_risk.warehouse import store_tables

    return store_tables(settings.paths.warehouse, as_date(day), tables)


def report_dir(settings: Settings, day: dt.date) -> Path:
    return settings.paths.reports / day.isoformat()


def build_report(day: str | dt.date, extracted: list[dict], settings: Settings,
                 run_id: str = "manual") -> dict:
    """Read today's metric tables and the trailing history (read-only), build the report context
    and render PDF, HTML and summary.json into reports/<date>/."""
    import json

    import polars as pl

    from venue_risk.metrics import forced_cost, slippage, summary
    from venue_risk.report import build_context, methodology_sections, render_report
    from venue_risk.warehouse import connect, read_day, read_history

    day = as_date(day)
    with connect(settings.paths.warehouse, read_only=True) as con:
        frames = {name: read_day(con, name, day) for name in METRIC_TABLES}
        frames["insurance_fund"] = read_day(con, "insurance_fund", day)
        history = read_history(con, "venue_figures", day, settings.baseline_days)
    validation = json.loads((quality_dir(settings, day) / "validation.json").read_text())
    data_quality = data_quality_summary(validation)
    figures = dict(zip(frames["venue_figures"]["figure"].to_list(),
                       frames["venue_figures"]["value"].to_list()))
    figures["data_quality_status"] = float(summary.DATA_QUALITY_CODES[validation["status"]])
    figures["data_quality_failed_checks"] = float(
        sum(1 for c in validation["checks"] if c["failed_count"]))
    rows = summary.summary_rows(figures, history if history.height else
                                pl.DataFrame(schema={"date": pl.Date, "figure": pl.String, "value": pl.Float64}))
    run_meta = {
        "run_id": run_id,
        "code_version": code_version(settings.paths.home),
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": settings.source().describe(),
        "input_rows": {e["dataset"]: e["rows"] for e in extracted},
        "input_files": {e["dataset"]: e["source_files"] for e in extracted},
        "baseline_days": int(history["date"].n_unique()) if history.height else 0,
    }
    context = build_context(
        date=day,
        venue_name=settings.venue_name,
        frames=frames,
        summary_rows=rows,
        history=history,
        methodology=methodology_sections([slippage, forced_cost, summary]),
        run_meta=run_meta,
        data_quality=data_quality,
        pseudonymize_key=None,
    )
    out = report_dir(settings, day)
    paths = render_report(context, out)
    write_json_atomic(validation, out / "validation.json")
    return {k: str(v) for k, v in paths.items()} | {"status": context["overall_status"]}


def data_quality_summary(validation: dict) -> dict:
    """The data-quality block of the report from the gate's result."""
    return {
        "status": validation["status"],
        "checks": validation["checks"],
        "quarantined": validation.get("quarantined", []),
    }


def deliver(day: str | dt.date, settings: Settings, send: Callable | None,
            recipients: list[str] | None = None, force: bool = False, dry_run: bool = False) -> dict:
    """Email the day's report once (or write it to the outbox when `send` is None)."""
    import json

    from venue_risk.deliver import deliver as deliver_report

    day = as_date(day)
    rdir = report_dir(settings, day)
    status = json.loads((rdir / "summary.json").read_text())["overall_status"]
    return deliver_report(
        rdir, day, list(recipients or settings.recipients), send,
        outbox=settings.paths.outbox, ledger=settings.paths.data / "delivery-ledger.json",
        force=force, dry_run=dry_run, status=status, sender_address=settings.mail_from,
    )


def run_day(day: str | dt.date, settings: Settings | None = None, send: Callable | None = None,
            run_id: str = "cli") -> dict:
    """Every stage for one day, in order, in this process (no Airflow)."""
    settings = settings or Settings.from_env()
    prepare_source(day, settings)
    extracted = [extract(day, name, settings) for name in DATASET_NAMES]
    validate(day, extracted, settings)
    load(day, extracted, settings)
    tables = compute_metrics(day, settings)
    store_metrics(day, tables, settings)
    report = build_report(day, extracted, settings, run_id=run_id)
    delivery = deliver(day, settings, send)
    return {"report": report, "delivery": delivery}
