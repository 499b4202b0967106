"""The reports page of the Airflow UI: one row per day from the venue's start date to yesterday
(UTC), newest first, with the day's run state, report status, delivery state, baseline gaps and
staleness, and links. It reads the files under reports/ and data/ (summary.json, the delivery
ledger, failure records; never the DuckDB file, so it works while a run writes the warehouse) and
the run states the plugin reads from Airflow's metadata DB. No server path is shown.

Run state of a day (`run_state`), from the latest Airflow run of its logical date:
  succeeded  the run succeeded and the report exists (or, with no Airflow run, a report built by
             `venue-risk run-day` / `reprocess`);
  failed     the run failed (the error's first line from data/runs/date=D/failure.json);
  running / queued  as Airflow says;
  skipped    the run succeeded but reported nothing (a late scheduled run, see the DAG);
  missing    no run and no report.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from jinja2 import Environment, select_autoescape

from venue_risk.deliver import entry_state, read_ledger
from venue_risk.runs import read_failures

_STATUS_COLOURS = {"green": "#1b7f3b", "amber": "#b36b00", "red": "#b3261e"}
_STATE_COLOURS = {"succeeded": "#1b7f3b", "failed": "#b3261e", "missing": "#b36b00", "running": "#1f5fbf",
                  "queued": "#1f5fbf", "skipped": "#5a6478"}
MAX_ROWS = 400

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Venue risk reports</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2433}
h1{font-size:20px;margin:0 0 4px} p.sub{color:#5a6478;margin:0 0 16px;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 10px;border-bottom:1px solid #e3e7ee;text-align:left;vertical-align:top}
th{background:#f4f6fa;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.chip{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
.note{color:#5a6478;font-size:12px} .warn{color:#b3261e;font-size:12px}
a{color:#1f5fbf}
</style></head><body>
<h1>Venue risk reports</h1>
<p class="sub">{{ counts }}; every day from the start date {{ first_day }} to {{ last_day }} (UTC), newest first.
{% if hidden %}{{ hidden }} older day(s) not shown.{% endif %}</p>
{% if rows %}
<table><thead><tr><th>Date</th><th>Run</th><th>Report</th><th>Delivery</th><th>Liquidations</th>
<th>Liquidated notional (USDT)</th><th>Baseline</th><th>Files</th></tr></thead><tbody>
{% for r in rows %}<tr data-day="{{ r.date }}" data-run="{{ r.run }}" data-delivery="{{ r.delivery }}">
<td>{{ r.date }}</td>
<td><span class="chip" style="background:{{ state_colours.get(r.run, '#5a6478') }}">{{ r.run }}</span>
{% if r.error %}<div class="warn">{{ r.error }}</div>{% endif %}</td>
<td>{% if r.status %}<span class="chip" style="background:{{ colours.get(r.status, '#5a6478') }}">{{ r.status|upper }}</span>{% else %}<span class="note">no report</span>{% endif %}</td>
<td>{{ r.delivery }}</td>
<td class="num">{{ r.liquidations }}</td><td class="num">{{ r.liquidated_notional }}</td>
<td>{% if r.stale %}<div class="warn">stale: computed before the rerun of {{ r.stale|join(', ') }}</div>{% endif %}
{% if r.missing_days %}<div class="warn">missing from baseline: {{ r.missing_days|join(', ') }}</div>{% endif %}</td>
<td>{% for label, href in r.links %}<a href="{{ href }}">{{ label }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</td>
</tr>{% endfor %}
</tbody></table>
{% else %}<p>No days to show yet: the start date {{ first_day }} is not before today.</p>{% endif %}
</body></html>"""


def _figure(summary: dict, name: str):
    entry = summary.get("figures", {}).get(name)
    return entry.get("value") if isinstance(entry, dict) else None


def run_state(airflow_state: str | None, has_report: bool, failure: dict | None) -> tuple[str, str]:
    """(state, error first line) of a day, from its latest Airflow run state (None: no run), whether
    its report exists and its failure record (None: none). See the module docstring."""
    error = str((failure or {}).get("error") or "")
    if airflow_state == "success":
        return ("succeeded", "") if has_report else ("skipped", "")
    if airflow_state == "failed":
        return "failed", error or "see the task log in Airflow"
    if airflow_state in ("running", "queued"):
        return airflow_state, ""
    if failure:
        return "failed", error
    return ("succeeded", "") if has_report else ("missing", "")


def delivery_state(entry: dict | None) -> str:
    """The ledger's word for a day: "sent", "revised (n)" (mailed again as REVISED n times),
    "outbox" (written to the outbox, not mailed) or "not sent"."""
    state = entry_state(entry)
    if state is None:
        return "not sent"
    revision = int(entry.get("revision", 0) or 0)
    if state == "sent" and revision:
        return f"revised ({revision})" if revision > 1 else "revised"
    return state


def day_rows(first_day: dt.date, last_day: dt.date, reports: Path, data: Path,
             airflow_states: dict[str, str], link_prefix: str = "files/",
             max_rows: int = MAX_ROWS) -> tuple[list[dict], int]:
    """(rows newest first, number of older days not shown): one row per day in
    [first_day, last_day], at most `max_rows`. `airflow_states`: {day: state of its latest
    Airflow run}."""
    reports, data = Path(reports), Path(data)
    failures = read_failures(data)
    ledger = read_ledger(data / "delivery-ledger.json")
    days = [last_day - dt.timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    hidden = max(0, len(days) - max_rows)
    rows = []
    for day in days[:max_rows]:
        key = day.isoformat()
        folder = reports / key
        summary, unreadable = {}, False
        if (folder / "summary.json").is_file():
            try:
                summary = json.loads((folder / "summary.json").read_text())
            except (OSError, json.JSONDecodeError):
                unreadable = True
        has_report = bool(summary) or unreadable
        state, error = run_state(airflow_states.get(key), has_report, failures.get(key))
        count = _figure(summary, "liquidation_count")
        notional = _figure(summary, "liquidation_notional")
        links = [(label, f"{link_prefix}{key}/{name}") for label, name in (
            ("PDF", f"venue-risk-{key}.pdf"), ("HTML", f"venue-risk-{key}.html"), ("JSON", "summary.json"))
            if (folder / name).is_file()]
        rows.append({
            "date": key, "run": state, "error": error,
            "status": "unreadable" if unreadable else str(summary.get("overall_status") or ""),
            "delivery": delivery_state(ledger.get(key)),
            "liquidations": "" if count is None else f"{count:,.0f}",
            "liquidated_notional": "" if notional is None else f"{notional:,.0f}",
            "stale": list(summary.get("stale_baseline_days") or []),
            "missing_days": list(summary.get("baseline_missing_days") or []),
            "links": links,
        })
    return rows, hidden


def render_index(first_day: dt.date, last_day: dt.date, reports: Path, data: Path,
                 airflow_states: dict[str, str], link_prefix: str = "files/") -> str:
    """The page's HTML (autoescaped: values from report files are data, never markup)."""
    rows, hidden = day_rows(first_day, last_day, reports, data, airflow_states, link_prefix)
    tally: dict[str, int] = {}
    for row in rows:
        tally[row["run"]] = tally.get(row["run"], 0) + 1
    counts = ", ".join(f"{n} {state}" for state, n in sorted(tally.items())) or "no days"
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_PAGE).render(rows=rows, hidden=hidden, counts=counts, first_day=first_day,
                                         last_day=last_day, colours=_STATUS_COLOURS,
                                         state_colours=_STATE_COLOURS)


def report_file(reports: Path, day: str, name: str) -> Path | None:
    """The file `reports/<day>/<name>` if it exists and lies inside the reports folder."""
    root = Path(reports).resolve()
    path = (root / day / name).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path
