"""The report: context (plain data from the metric frames) -> charts (SVG) -> HTML (Jinja2,
autoescaped) -> PDF (WeasyPrint) + summary.json. Airflow-free."""

from venue_risk.report.context import (
    build_context,
    default_pseudonym_key,
    figure_unit,
    format_figure,
    pseudonymize,
    summary_json,
)
from venue_risk.report.methods_doc import methods_summary, render_methods
from venue_risk.report.render import render_html, render_report

__all__ = [
    "build_context", "default_pseudonym_key", "figure_unit", "format_figure", "methods_summary",
    "pseudonymize", "render_methods", "render_html", "render_report", "summary_json",
]
