"""Render the report: context -> charts (SVG) -> HTML (Jinja2, autoescape on for everything) ->
PDF (WeasyPrint, A4, page footer with date, status and page numbers) + summary.json. Every file is
written atomically (temp file + os.replace), so a reader never sees half a file; and the PDF, the
file delivery mails, is written last, so a PDF is never left beside a summary.json it does not
belong to (see `render_report`)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape
from markupsafe import Markup

from venue_risk.atomic import write_atomic
from venue_risk.report import context as ctxmod
from venue_risk.report.charts import build_charts

TEMPLATES = Path(__file__).parent / "templates"


def css_string(value: object) -> Markup:
    """A quoted CSS string literal safe in any stylesheet: every character other than letters,
    digits and space is written as a CSS hex escape (no quote, backslash or '</style>' can break
    out)."""
    out = []
    for ch in str(value):
        if ch.isascii() and (ch.isalnum() or ch == " "):
            out.append(ch)
        else:
            out.append(f"\\{ord(ch):x} ")
    return Markup('"' + "".join(out) + '"')


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml", "css", "txt"),
                                     default_for_string=True, default=True),
        undefined=Undefined,  # a missing value renders as n/a through the filters
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update({
        "usdt": ctxmod.usdt,
        "money": ctxmod.money,
        "money_signed": lambda v: ctxmod.usdt(v, signed=True).replace(" USDT", ""),
        "usdt_signed": lambda v: ctxmod.usdt(v, signed=True),
        "bps": ctxmod.bps,
        "pct": ctxmod.pct,
        "num": ctxmod.num,
        "figure": ctxmod.format_figure,
        "css_string": css_string,
        "seconds": lambda v: "n/a" if not isinstance(v, (int, float)) or v != v else f"{v:,.1f} s",
    })
    return env


def chart_image(svg: str, name: str) -> Markup:
    """A chart's SVG as an <img> with a data URI (base64 of the SVG), class "chart", alt = its name.
    WeasyPrint draws it as an image, with the chart's text still text, and does not run its
    HTML style pass over every element of the SVG, as it does for SVG inline in the HTML (a demo
    report's PDF: 5.2-5.6 s -> 4.5-4.9 s), nor warn for each SVG presentation property (fill,
    stroke, ...) in the elements' style attributes as an unknown CSS property (about 2,800
    warnings per demo report)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return Markup('<img class="chart" alt="{}" src="data:image/svg+xml;base64,{}">').format(
        name.replace("_", " "), Markup(data))


def render_html(context: dict, charts: dict[str, str] | None = None) -> str:
    """The report as one self-contained HTML document (CSS inline, charts as SVG images:
    `chart_image`)."""
    charts = build_charts(context) if charts is None else charts
    env = _env()
    css = (TEMPLATES / "report.css").read_text()
    return env.get_template("report.html").render(
        ctx=context,
        charts={k: chart_image(v, k) for k, v in charts.items()},  # our own SVG; data text in it is escaped
        css=Markup(css),
    )


def render_pdf_bytes(html: str) -> bytes:
    """WeasyPrint the HTML to PDF bytes (A4; page size and footer come from the CSS @page rules)."""
    from weasyprint import HTML

    return HTML(string=html, base_url=str(TEMPLATES)).write_pdf()


def render_pdf(html: str, target: Path) -> None:
    """WeasyPrint the HTML to the file `target`."""
    Path(target).write_bytes(render_pdf_bytes(html))


def render_report(context: dict, out_dir: Path) -> dict[str, Path]:
    """Write venue-risk-<date>.html, venue-risk-<date>.pdf and summary.json into out_dir, each
    atomically. Returns {"html", "pdf", "summary"} paths.

    Order, so that a failure at any point (a render error, a full disk) never leaves a PDF that
    delivery would mail with a summary.json from another build: everything is rendered in memory
    first; then an existing PDF of the day is removed, the HTML and summary.json are written, and
    the PDF is written last. The PDF exists only if every file of this build was written; a
    failed write leaves no temp file (`write_atomic`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    day = context["date"]
    html = render_html(context)
    pdf = render_pdf_bytes(html)
    summary = ctxmod.summary_json(context)
    text = json.dumps(summary, indent=2, sort_keys=True, allow_nan=False)
    paths = {
        "html": out_dir / f"venue-risk-{day}.html",
        "pdf": out_dir / f"venue-risk-{day}.pdf",
        "summary": out_dir / "summary.json",
    }
    paths["pdf"].unlink(missing_ok=True)  # no stale PDF beside the new files, whatever fails next
    write_atomic(paths["html"], lambda tmp: tmp.write_text(html, encoding="utf-8"))
    write_atomic(paths["summary"], lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    write_atomic(paths["pdf"], lambda tmp: tmp.write_bytes(pdf))
    return paths


def timed_render(context: dict, out_dir: Path) -> tuple[dict[str, Path], float]:
    """render_report and its wall time in seconds (for logs and the bench)."""
    t0 = time.perf_counter()
    paths = render_report(context, out_dir)
    return paths, time.perf_counter() - t0

