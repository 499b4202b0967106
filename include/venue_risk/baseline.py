"""Which days a day's baseline saw, which it missed, and which reports a rerun left stale.

A day's trailing baselines read the metric tables of the days before it (DESIGN section 4). The
window of day D is [max(start date, D - baseline_days), D): days before the venue's start date
are outside its history, not missing. Each stored day has a version (an md5 over its stored
metric rows, `warehouse.store_tables`); a report records the versions its baseline read. When
day B is recomputed later and its version changes (or B was missing and now exists), every
report that read the old B is computed on a stale baseline: it is marked so in its
summary.json (`stale_baseline_days`) until it is rebuilt (`venue-risk reprocess --from B`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from venue_risk.atomic import write_json_atomic


def window_start(day: dt.date, start_date: dt.date, baseline_days: int) -> dt.date:
    """First day of D's baseline window: max(start_date, D - baseline_days)."""
    return max(start_date, day - dt.timedelta(days=baseline_days))


def window_days(day: dt.date, start_date: dt.date, baseline_days: int) -> list[dt.date]:
    """Every day in [window_start, D), oldest first."""
    first = window_start(day, start_date, baseline_days)
    return [first + dt.timedelta(days=i) for i in range((day - first).days)]


def baseline_record(day: dt.date, start_date: dt.date, baseline_days: int,
                    versions: dict[str, str]) -> dict:
    """What D's baseline holds: {window_start, days (n stored), missing_days (ISO dates in the
    window with no stored metrics: failed, not run, or emptied), versions {ISO date: version}}."""
    wanted = [d.isoformat() for d in window_days(day, start_date, baseline_days)]
    present = {d: versions[d] for d in wanted if d in versions}
    return {
        "window_start": window_start(day, start_date, baseline_days).isoformat(),
        "days": len(present),
        "missing_days": [d for d in wanted if d not in present],
        "versions": present,
    }


def is_stale_against(record: dict, day: str, version: str) -> bool:
    """True when a report whose baseline record is `record` read day `day` other than it now is
    (`version`): it held another version of it, or missed it."""
    if day in record.get("versions", {}):
        return record["versions"][day] != version
    return day in record.get("missing_days", [])


def mark_stale_reports(reports: Path, day: dt.date, version: str) -> list[str]:
    """After day `day` was (re)stored with `version`: add it to `stale_baseline_days` in the
    summary.json of every later report whose baseline read it otherwise. Returns the marked
    report dates. Each summary.json is replaced atomically."""
    marked = []
    for path in sorted(Path(reports).glob("*/summary.json")):
        report_day = path.parent.name
        if report_day <= day.isoformat():
            continue
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        record = summary.get("baseline")
        if not isinstance(record, dict) or not is_stale_against(record, day.isoformat(), version):
            continue
        stale = sorted(set(summary.get("stale_baseline_days", [])) | {day.isoformat()})
        if stale != summary.get("stale_baseline_days"):
            summary["stale_baseline_days"] = stale
            write_json_atomic(summary, path)
        marked.append(report_day)
    return marked


def stale_reports(reports: Path) -> dict[str, list[str]]:
    """{report date: days whose rerun left it stale} over every summary.json under `reports`."""
    out = {}
    for path in sorted(Path(reports).glob("*/summary.json")):
        try:
            stale = json.loads(path.read_text()).get("stale_baseline_days") or []
        except (OSError, json.JSONDecodeError):
            continue
        if stale:
            out[path.parent.name] = stale
    return out
