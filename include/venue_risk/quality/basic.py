"""Basic checks of a landed day: canonical columns and types, non-null and unique keys, and
every row's timestamp inside the partition's UTC day [D 00:00, D+1 00:00).

Each check yields {dataset, check, severity, failed_count, example}; severity `critical` stops
the day (DataQualityError), `warning` is reported.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from venue_risk.schema import DATASETS


class DataQualityError(RuntimeError):
    """A critical check failed: the day is not loaded. `result` holds every check."""

    def __init__(self, result: dict):
        self.result = result
        failed = [c for c in result["checks"] if c["severity"] == "critical" and c["failed_count"]]
        self.failed = failed
        lines = "; ".join(
            f"{c['dataset']}: expectation '{c['check']}'"
            + (f" [{c['expectation']}]" if c.get("expectation") else "")
            + f" failed for {c['failed_count']} row(s)"
            + (f", e.g. {str(c['example'])[:200]}" if c.get("example") else "")
            for c in failed)
        super().__init__(f"data quality gate failed for {result['date']} "
                         f"({len(failed)} critical expectation(s) failed; nothing loaded): {lines}")


def check_dataset(dataset: str, frame: pl.DataFrame, day: dt.date) -> list[dict]:
    """The basic checks of one dataset's day."""
    spec = DATASETS[dataset]
    checks: list[dict] = []

    def add(check: str, severity: str, bad: pl.DataFrame | None, example: str = "") -> None:
        count = 0 if bad is None else bad.height
        if count and not example:
            example = str(bad.head(1).to_dicts()[0])
        checks.append({"dataset": dataset, "check": check, "severity": severity,
                       "failed_count": count, "example": example})

    schema_ok = dict(frame.schema) == spec.schema
    mismatch = "" if schema_ok else (
        f"got {dict(frame.schema)}, expected {spec.schema}")
    checks.append({"dataset": dataset, "check": "schema and types", "severity": "critical",
                   "failed_count": 0 if schema_ok else 1, "example": mismatch})
    if not schema_ok:
        return checks
    if spec.keys:
        null_keys = frame.filter(pl.any_horizontal([pl.col(k).is_null() for k in spec.keys]))
        add(f"keys {list(spec.keys)} not null", "critical", null_keys)
        dupes = frame.filter(pl.struct(list(spec.keys)).is_duplicated())
        add(f"keys {list(spec.keys)} unique", "critical", dupes)
    if spec.day_column:
        col = pl.col(spec.day_column)
        if spec.schema[spec.day_column] == pl.Date:
            outside = frame.filter(col != day)
        else:
            start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
            end = start + dt.timedelta(days=1)
            outside = frame.filter((col < start) | (col >= end))
        add(f"{spec.day_column} inside {day}", "critical", outside)
    return checks


def validate_day(day: dt.date, landed: dict[str, str]) -> dict:
    """Run the basic checks over every landed dataset ({dataset: parquet path}).

    Returns {date, status, checks}; raises DataQualityError if a critical check failed."""
    checks: list[dict] = []
    for dataset in DATASETS:
        if dataset not in landed:
            checks.append({"dataset": dataset, "check": "dataset present", "severity": "critical",
                           "failed_count": 1, "example": "no landed partition"})
            continue
        checks.extend(check_dataset(dataset, pl.read_parquet(Path(landed[dataset])), day))
    failed_critical = any(c["failed_count"] and c["severity"] == "critical" for c in checks)
    failed_warning = any(c["failed_count"] and c["severity"] == "warning" for c in checks)
    status = "failed" if failed_critical else ("warnings" if failed_warning else "passed")
    result = {"date": day.isoformat(), "status": status, "checks": checks}
    if failed_critical:
        raise DataQualityError(result)
    return result
