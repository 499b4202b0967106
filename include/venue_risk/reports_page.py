"""The reports page of the Airflow UI: every report under `reports/` with its date, overall
status, headline figures and links. It reads only the files under `reports/` (never the DuckDB
file), so it works while a run is writing the warehouse."""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, select_autoescape

_STATUS_COLOURS = {"green": "#1b7f3b", "amber": "#b36b00", "red": "#b3261e"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Venue risk reports</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2433}
h1{font-size:20px;margin:0 0 4px} p.sub{color:#5a6478;margin:0 0 16px;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 10px;border-bottom:1px solid #e3e7ee;text-align:left}
th{background:#f4f6fa;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.chip{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
a{color:#1f5fbf}
</style></head><body>
<h1>Venue risk reports</h1>
<p class="sub">{{ reports|length }} report(s) in {{ folder }}; newest first.</p>
{% if reports %}
<table><thead><tr><th>Date</th><th>Status</th><th>Liquidations</th><th>Liquidated notional (USDT)</th>
<th>Data quality</th><th>Files</th></tr></thead><tbody>
{% for r in reports %}<tr>
<td>{{ r.date }}</td>
<td><span class="chip" style="background:{{ colours.get(r.status, '#5a6478') }}">{{ r.status|upper }}</span></td>
<td class="num">{{ r.liquidations }}</td><td class="num">{{ r.liquidated_notional }}</td>
<td>{{ r.data_quality }}</td>
<td>{% for label, href in r.links %}<a href="{{ href }}">{{ label }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</td>
</tr>{% endfor %}
</tbody></table>
{% else %}<p>No reports yet: run <code>venue_risk_daily</code> for a day.</p>{% endif %}
</body></html>"""


def _figure(summary: dict, name: str):
    entry = summary.get("figures", {}).get(name)
    return entry.get("value") if isinstance(entry, dict) else None


def list_reports(reports: Path, link_prefix: str = "files/") -> list[dict]:
    """One entry per `reports/<date>/summary.json`, newest first: date, status, a few headline
    figures and links to the PDF, HTML and JSON files that exist."""
    out = []
    for summary_path in sorted(Path(reports).glob("*/summary.json"), reverse=True):
        day = summary_path.parent.name
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError):
            out.append({"date": day, "status": "unreadable", "liquidations": "", "liquidated_notional": "",
                        "data_quality": "", "links": []})
            continue
        count = _figure(summary, "liquidation_count")
        notional = _figure(summary, "liquidation_notional")
        links = [(label, f"{link_prefix}{day}/{name}") for label, name in (
            ("PDF", f"venue-risk-{day}.pdf"), ("HTML", f"venue-risk-{day}.html"), ("JSON", "summary.json"))
            if (summary_path.parent / name).exists()]
        out.append({
            "date": day,
            "status": str(summary.get("overall_status", "unknown")),
            "liquidations": "" if count is None else f"{count:,.0f}",
            "liquidated_notional": "" if notional is None else f"{notional:,.0f}",
            "data_quality": str(summary.get("data_quality", {}).get("status", "")
                                if isinstance(summary.get("data_quality"), dict) else summary.get("data_quality", "")),
            "links": links,
        })
    return out


def render_index(reports: Path, link_prefix: str = "files/") -> str:
    """The page's HTML (autoescaped: values from report files are data, never markup)."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_PAGE).render(reports=list_reports(reports, link_prefix), folder=str(reports),
                                         colours=_STATUS_COLOURS)


def report_file(reports: Path, day: str, name: str) -> Path | None:
    """The file `reports/<day>/<name>` if it exists and lies inside the reports folder."""
    root = Path(reports).resolve()
    path = (root / day / name).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path
