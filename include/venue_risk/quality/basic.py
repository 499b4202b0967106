"""The gate's first check and its error: the canonical schema of a landed dataset, checked in
Polars before Great Expectations sees the frame (pandas conversion would blur the dtypes), and
`DataQualityError`, raised when a critical expectation fails.

Each check is {dataset, check, severity, failed_count, example}; severity `critical` stops the
day (DataQualityError), `warning` quarantines rows or flags the report.
"""

from __future__ import annotations

import datetime as dt
import math

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
            + (f", e.g. {str(c['example'])[:600]}" if c.get("example") else "")
            for c in failed)
        super().__init__(f"data quality gate failed for {result['date']} "
                         f"({len(failed)} critical expectation(s) failed; nothing loaded): {lines}")


def schema_check(dataset: str, frame: pl.DataFrame) -> dict:
    """The canonical schema check of one landed dataset: the columns, in order, with the exact
    canonical Polars dtypes (critical). {dataset, check, severity, failed_count (0 or 1),
    example (what was got and what was expected)}."""
    spec = DATASETS[dataset]
    ok = dict(frame.schema) == spec.schema
    return {"dataset": dataset, "check": "schema and types", "severity": "critical",
            "failed_count": 0 if ok else 1,
            "example": "" if ok else f"got {dict(frame.schema)}, expected {spec.schema}"}


#: Epoch microseconds of 1970-04-27 and of year 5138: a real timestamp of a venue lies between.
_US_LOW, _US_HIGH = 10**13, 10**17
_UNITS = ((1e6, "seconds"), (1e3, "milliseconds"), (1e-3, "nanoseconds"))


def guess_unit(epoch_us: float, day: dt.date) -> str | None:
    """The unit that values read as microseconds were most likely written in: the one whose
    factor f brings epoch_us x f closest (in log scale) to the day's start; None when no unit
    comes within a factor of 10. E.g. 1_762_041_600 (seconds) read as microseconds -> 'seconds'."""
    if not epoch_us or not math.isfinite(epoch_us) or epoch_us <= 0:
        return None
    target = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc).timestamp() * 1e6
    best = min(_UNITS, key=lambda fu: abs(math.log10(epoch_us * fu[0] / target)))
    return best[1] if abs(math.log10(epoch_us * best[0] / target)) < 1 else None


def timestamp_unit_check(dataset: str, frame: pl.DataFrame, day: dt.date) -> list[dict]:
    """Unit sanity of every timestamp column (critical, DESIGN 5): a column whose median value
    lies before 1970-04-27 or after the year 5138 as microseconds since the epoch holds values
    written in another unit (seconds, milliseconds or nanoseconds read as microseconds); the
    check names the unit the values look like. One check per timestamp column that has values."""
    checks = []
    for col, dtype in DATASETS[dataset].schema.items():
        if not isinstance(dtype, pl.Datetime) or col not in frame.columns:
            continue
        values = frame[col].dt.epoch("us").drop_nulls()
        if not values.len():
            continue
        median = float(values.median())
        bad = not (_US_LOW <= abs(median) <= _US_HIGH)
        example = ""
        if bad:
            unit = guess_unit(median, day)
            row = int(frame[col].is_not_null().arg_true()[0])
            example = (f"median {int(median)} us since the epoch = {_as_text(median)}; the values look "
                       f"like {unit or 'another unit'} since the epoch, not microseconds "
                       f"(row {row}: {int(frame[col].dt.epoch('us')[row])})")
        checks.append({"dataset": dataset, "check": f"{col} in microseconds (unit sanity)",
                       "severity": "critical", "expectation": "timestamp unit (venue_risk.quality.basic)",
                       "failed_count": int(values.len()) if bad else 0, "example": example})
    return checks


def _as_text(epoch_us: float) -> str:
    try:
        return (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
                + dt.timedelta(microseconds=epoch_us)).isoformat()
    except OverflowError:
        return "beyond year 9999"
