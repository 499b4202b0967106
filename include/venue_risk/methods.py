"""The methods of the report, one section per metric family, made from the code's own text: a
family's modules' docstrings say what it measures (the first paragraph), how (the rest, and every
public function's docstring, which states its formula) and its known limits (the module
docstring's paragraph that starts "Known limits:"); its parameters are the module constants
documented with a `#:` comment. `docs/methods.md` and the methods PDF/HTML are rendered from
here, and the daily report prints a one-page summary (`summary_rows`).

    FAMILIES: the families in report order, each with its number (the design's section), title,
    modules and the report section it feeds.
    family_markdown(family) -> the family's section of docs/methods.md.
    document_markdown(version) -> the whole document.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass
from types import ModuleType

LIMITS_PREFIX = "Known limits:"

#: The methods document's opening, before the contents.
INTRO = """How every figure of the daily report is computed: one section per metric family, each saying
what it measures, the method and its formulas, its known limits, its parameters and the formula
of every function that computes a table. The figure statuses of the report (green, amber, red,
not covered, insufficient data, skipped) are defined in the first section.

This document is generated from the code: each family's text is its modules' docstrings and its
parameters are their documented constants, so it states exactly what the code of its version
computes. It is kept in the repository as `docs/methods.md` (`venue-risk docs` regenerates it;
the tests fail when it differs from the code) and rendered as a PDF and HTML named with the code
version (`venue-risk methods`, and the daily report's build). The daily report carries a
one-page summary with the same version. Section numbers follow the design (`docs/design.md`);
the code cites them as `DESIGN 4.1` and so on.

Conventions: timestamps are UTC; money is in the quote currency; rates are decimals, shown as %
or bps with the unit in the label; "x" in a formula is multiplication."""


@dataclass(frozen=True)
class Family:
    """One metric family: its design section number, title and modules (import paths)."""

    number: str
    title: str
    modules: tuple[str, ...]

    @property
    def anchor(self) -> str:
        """The section's anchor in docs/methods.md and the methods HTML (GitHub's heading slug)."""
        return slug(f"{self.number} {self.title}")


FAMILIES: tuple[Family, ...] = (
    Family("2", "Coverage and figure statuses", ("venue_risk.coverage",)),
    Family("3a", "Margin model", ("venue_risk.margin",)),
    Family("4.1", "Slippage per liquidation path", ("venue_risk.metrics.slippage",)),
    Family("4.2", "Forced-execution cost", ("venue_risk.metrics.forced_cost",)),
    Family("4.3", "Funding-volatility crowding", ("venue_risk.metrics.crowding",)),
    Family("4.4", "Index and mark integrity", ("venue_risk.metrics.index_integrity", "venue_risk.index_rule")),
    Family("4.5", "Drift and fill quality", ("venue_risk.metrics.drift",)),
    Family("4.6", "Order-flow integrity", ("venue_risk.metrics.order_flow",)),
    Family("4.7", "Early-warning anomalies", ("venue_risk.metrics.anomalies",)),
    Family("4.8", "Cross-margin correlation stress", ("venue_risk.metrics.cross_margin",)),
    Family("4.9", "Liquidation bands and cascades",
           ("venue_risk.metrics.liquidation_bands", "venue_risk.metrics.cascade")),
    Family("4.10", "API permission scoping", ("venue_risk.metrics.api_scoping",)),
    Family("4.11", "Venue summary", ("venue_risk.metrics.summary",)),
)


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation other than '-' and '_'
    removed, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def module_parts(module: ModuleType) -> tuple[str, str, str]:
    """(what it measures, method, known limits) of a module's docstring: the first paragraph,
    the paragraphs after it except the one starting with LIMITS_PREFIX, and that one (without
    the prefix; '' when there is none)."""
    paragraphs = [p for p in (inspect.getdoc(module) or "").split("\n\n") if p.strip()]
    limits = [p for p in paragraphs[1:] if p.startswith(LIMITS_PREFIX)]
    method = [p for p in paragraphs[1:] if not p.startswith(LIMITS_PREFIX)]
    return (paragraphs[0] if paragraphs else "", "\n\n".join(method),
            "\n\n".join(p.removeprefix(LIMITS_PREFIX).strip() for p in limits))


def public_functions(module: ModuleType) -> list[tuple[str, object]]:
    """The module's own public functions that have a docstring, in source order."""
    funcs = [(obj.__code__.co_firstlineno, name, obj) for name, obj in vars(module).items()
             if not name.startswith("_") and inspect.isfunction(obj)
             and obj.__module__ == module.__name__ and inspect.getdoc(obj)]
    return [(name, obj) for _, name, obj in sorted(funcs, key=lambda t: t[:2])]


def parameters(module: ModuleType) -> list[tuple[str, str, str]]:
    """(name, value, meaning) of every top-level assignment preceded by `#:` comment lines, in
    source order. The value is its source text when it fits on one line (so `8 * 3600` stays
    readable), else the value's repr; either is cut at 160 characters."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        if name.startswith("_"):
            continue
        comment, i = [], node.lineno - 2
        while i >= 0 and lines[i].startswith("#:"):
            comment.insert(0, lines[i][2:].strip())
            i -= 1
        if comment:
            text = (ast.get_source_segment(source, value) or "" if value.lineno == value.end_lineno
                    else repr(getattr(module, name)))
            text = " ".join(text.split())
            out.append((name, text if len(text) <= 160 else text[:159] + "…", " ".join(comment)))
    return out


def _md(text: str) -> str:
    """Docstring text as markdown that shows as written: '*', '<' and '>' escaped outside
    backtick spans (they are multiplication and comparison here, not emphasis or HTML)."""
    parts = re.split(r"(`[^`\n]*`)", text)
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1
                   else p.replace("*", r"\*").replace("<", "&lt;").replace(">", "&gt;") for p in parts)


def _cell(text: str) -> str:
    return _md(text).replace("|", r"\|")


def family_markdown(family: Family) -> str:
    """The family's section: heading, what it measures, the method, the known limits, the
    parameters table and one subsection per public function with its docstring."""
    modules = [importlib.import_module(m) for m in family.modules]
    parts = [module_parts(m) for m in modules]
    out = [f"## {family.number} {family.title}", "",
           "Code: " + ", ".join(f"`{m}`" for m in family.modules) + ".", "",
           "### What it measures", ""]
    out += [_md(what) + "\n" for what, _, _ in parts]
    out += ["### Method", ""]
    out += [_md(method) + "\n" for _, method, _ in parts if method]
    out += ["### Known limits", ""]
    out += [_md(limits) + "\n" for _, _, limits in parts if limits]
    params = [(m.__name__.rsplit(".", 1)[-1], p) for m in modules for p in parameters(m)]
    out += ["### Parameters", ""]
    if params:
        out += ["| parameter | value | meaning |", "|---|---|---|"]
        out += [f"| `{short}.{name}` | `{value.replace('|', '/')}` | {_cell(meaning)} |"
                for short, (name, value, meaning) in params]
    else:
        out.append("None beyond the inputs' own settings (instruments, risk tiers).")
    out += ["", "### Formulas by function", ""]
    for m in modules:
        short = m.__name__.rsplit(".", 1)[-1]
        for name, obj in public_functions(m):
            args = ", ".join(inspect.signature(obj).parameters)
            out += [f"#### `{short}.{name}({args})`", "", _md(inspect.getdoc(obj)), ""]
    return "\n".join(out) + "\n"


def document_markdown(version: str | None = None) -> str:
    """The whole methods document: title (with the code version when given), INTRO, contents
    (links to each family's anchor) and every family's section."""
    title = "# venue-risk methods" + (f" ({version})" if version else "")
    contents = "\n".join(f"- [{f.number} {f.title}](#{f.anchor})" for f in FAMILIES)
    return "\n\n".join([title, INTRO, "## Contents", contents]) + "\n\n" + "\n".join(
        family_markdown(f) for f in FAMILIES)


def summary_rows() -> list[dict]:
    """One row per family for the daily report's methods page: number, title, anchor and what it
    measures (the first paragraph of its first module's docstring, line breaks joined)."""
    rows = []
    for family in FAMILIES:
        what = module_parts(importlib.import_module(family.modules[0]))[0]
        rows.append({"number": family.number, "title": family.title, "anchor": family.anchor,
                     "what": " ".join(what.split())})
    return rows
