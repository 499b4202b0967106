"""The gate's first check and its error: the canonical schema of a landed dataset, checked in
Polars before Great Expectations sees the frame (pandas conversion would blur the dtypes), and
`DataQualityError`, raised when a critical expectation fails.

Each check is {dataset, check, severity, failed_count, example}; severity `critical` stops the
day (DataQualityError), `warning` quarantines rows or flags the report.
"""

from __future__ import annotations

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


def schema_check(dataset: str, frame: pl.DataFrame) -> dict:
    """The canonical schema check of one landed dataset: the columns, in order, with the exact
    canonical Polars dtypes (critical). {dataset, check, severity, failed_count (0 or 1),
    example (what was got and what was expected)}."""
    spec = DATASETS[dataset]
    ok = dict(frame.schema) == spec.schema
    return {"dataset": dataset, "check": "schema and types", "severity": "critical",
            "failed_count": 0 if ok else 1,
            "example": "" if ok else f"got {dict(frame.schema)}, expected {spec.schema}"}
