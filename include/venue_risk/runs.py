"""The last failure of each day's run, kept as a file for the reports page (which must not read
the DuckDB file, and for which Airflow's metadata DB holds the run state but not the error).

data/runs/date=D/failure.json = {day, task, error (first line), run_id, at}; written when a stage
fails (the DAG's failure callback, `venue-risk run-day`), removed when the day's run delivers.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from venue_risk.atomic import write_json_atomic


def failure_path(data: Path, day: str) -> Path:
    return Path(data) / "runs" / f"date={day}" / "failure.json"


def first_line(error: str, limit: int = 300) -> str:
    """The error's first non-empty line, cut at `limit` characters."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def record_failure(data: Path, day: str, task: str, error: str, run_id: str) -> Path:
    """Write the day's failure record (replacing an older one)."""
    return write_json_atomic({"day": day, "task": task, "error": first_line(error), "run_id": run_id,
                              "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
                             failure_path(data, day))


def clear_failure(data: Path, day: str) -> None:
    """The day delivered: its failure record goes."""
    failure_path(data, day).unlink(missing_ok=True)


def read_failures(data: Path) -> dict[str, dict]:
    """{day: failure record} for every day with one."""
    out = {}
    for path in sorted((Path(data) / "runs").glob("date=*/failure.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out[path.parent.name.removeprefix("date=")] = record
    return out
