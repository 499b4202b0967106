"""The methods document as HTML and PDF, named with the code version: the full methods that the
daily report summarizes on one page, links to and attaches on request.

    methods_html(version) -> one self-contained HTML document (CSS inline, linked contents)
    render_methods(out_dir, version) -> {"html", "pdf"}: venue-risk-methods-<version>.{html,pdf}

The text is `venue_risk.methods.document_markdown` (the same text as docs/methods.md) rendered
by markdown-it (CommonMark with tables); every heading gets the id its contents link points to.
"""

from __future__ import annotations

import hashlib
import html as htmlmod
import re
from pathlib import Path

from venue_risk.atomic import write_atomic
from venue_risk.methods import document_markdown, slug

CSS = """
@page { size: A4; margin: 16mm 16mm 18mm 16mm;
  @bottom-left { content: "venue-risk methods, version VERSION"; font: 7pt "DejaVu Sans"; color: #4d5a66; }
  @bottom-right { content: "Page " counter(page) " of " counter(pages); font: 7pt "DejaVu Sans"; color: #4d5a66; } }
html { font-family: "DejaVu Sans", sans-serif; font-size: 9pt; line-height: 1.4; color: #1d2733; }
body { margin: 0; }
@media screen { body { max-width: 180mm; margin: 0 auto; padding: 10mm 8mm; } }
h1 { font-size: 17pt; margin: 0 0 3mm 0; }
h2 { font-size: 13pt; margin: 0 0 2mm 0; padding-bottom: 1mm; border-bottom: 2px solid #0072b2; break-before: page; }
h3 { font-size: 10pt; margin: 4mm 0 1.5mm 0; break-after: avoid; }
h4 { font-size: 9pt; margin: 3.5mm 0 1mm 0; break-after: avoid; font-family: "DejaVu Sans Mono", monospace; }
h4 code { font-size: 8pt; }
p, li { margin: 1mm 0; }
code, pre { font-family: "DejaVu Sans Mono", monospace; font-size: 8pt; }
pre { white-space: pre-wrap; background: #f4f6f8; padding: 1.5mm 2.5mm; }
table { border-collapse: collapse; width: 100%; font-size: 7.5pt; margin: 1.5mm 0; }
th, td { border-bottom: 1px solid #d5dce3; padding: 0.8mm 1.5mm; text-align: left; vertical-align: top; }
td code { word-break: break-all; }
a { color: #0072b2; }
"""


def _markdown_renderer():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_to_html(text: str) -> str:
    """CommonMark (with tables) to an HTML fragment; each heading gets id = methods.slug of its
    text, the anchor the contents and docs/methods.md link to; a heading text seen before gets
    -1, -2, ... appended, as GitHub does (each family has a "What it measures"), so every id is
    unique. Raw HTML in the text is escaped."""
    md = _markdown_renderer()
    tokens = md.parse(text)
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            anchor = slug(tokens[i + 1].content.replace("`", ""))
            repeats = seen.get(anchor, 0)
            seen[anchor] = repeats + 1
            tok.attrSet("id", f"{anchor}-{repeats}" if repeats else anchor)
    return md.renderer.render(tokens, md.options, {})


def methods_html(version: str) -> str:
    """The methods document for code `version` as one self-contained HTML page."""
    body = markdown_to_html(document_markdown(version))
    css = CSS.replace("VERSION", re.sub(r'["\\]', "", version))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>venue-risk methods ({htmlmod.escape(version)})</title><style>{css}</style></head>"
            f"<body>\n{body}</body></html>\n")


def methods_file_stem(version: str) -> str:
    """venue-risk-methods-<version>, the version made safe for a file name."""
    return "venue-risk-methods-" + re.sub(r"[^\w.+-]", "_", version)


def render_methods(out_dir: Path, version: str) -> dict[str, Path]:
    """Write venue-risk-methods-<version>.html and .pdf into out_dir (atomically) unless both
    exist and were made from the same text (a `.sha256` beside them records the HTML's digest,
    so a rebuild of an unchanged version costs nothing and a changed text is never served under
    an old file). Returns {"html", "pdf"} paths."""
    from weasyprint import HTML

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = methods_file_stem(version)
    paths = {"html": out_dir / f"{stem}.html", "pdf": out_dir / f"{stem}.pdf"}
    digest_path = out_dir / f"{stem}.sha256"
    html = methods_html(version)
    digest = hashlib.sha256(html.encode()).hexdigest()
    if (all(p.exists() for p in paths.values()) and digest_path.exists()
            and digest_path.read_text().strip() == digest):
        return paths
    pdf = HTML(string=html).write_pdf()
    digest_path.unlink(missing_ok=True)
    write_atomic(paths["html"], lambda tmp: tmp.write_text(html, encoding="utf-8"))
    write_atomic(paths["pdf"], lambda tmp: tmp.write_bytes(pdf))
    write_atomic(digest_path, lambda tmp: tmp.write_text(digest + "\n"))
    return paths


def methods_summary(version: str, paths: dict[str, Path] | None, report_dir: Path | None = None) -> dict:
    """The daily report's methods page: the code version, one row per family (number, title,
    what it measures, with the design references left out) and the methods files' names and
    their links relative to the report's folder (`report_dir`; None: the bare file names)."""
    import os

    from venue_risk.methods import summary_rows

    families = [{**row, "what": re.sub(r"\s*\(DESIGN[^)]*\)", "", row["what"])} for row in summary_rows()]
    files = {}
    for kind, path in (paths or {}).items():
        link = os.path.relpath(path, report_dir) if report_dir is not None else Path(path).name
        files[kind] = {"name": Path(path).name, "link": link}
    return {"version": version, "families": families, "files": files}
