"""The generated parts of the project's documentation (`docs/*.md`), made from the code so that
the documents cannot drift from it:

- `datasets`: the canonical dataset contract's tables, from `venue_risk.schema` (columns, types,
  keys, the day column) and the gate's `NULLABLE` and `ENUMS` (which columns may be null, which
  values an enumerated column may hold);
- `metric-tables`: the warehouse's metric tables (`venue_risk.metric_jobs`);
- `settings`: the table of environment settings in `venue_risk.settings`' docstring;
- `methods`: one section per metric family, from the family modules' docstrings (what it
  measures, the formulas, the known limits) and their documented module constants (`#:`
  comments: the parameters), in `venue_risk.methods.FAMILIES` order.

A block sits in a markdown file between `<!-- generated:NAME -->` and
`<!-- end generated:NAME -->`; `venue-risk docs` rewrites every block in place,
`venue-risk docs --check` lists the blocks that differ from the code (tests run the check).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated:(?P=name) -->)",
                   re.S)


def dtype_name(dtype: pl.DataType) -> str:
    """The contract's name of a Polars type: timestamp[us, UTC], date, int64, float64, string,
    bool, list[string]."""
    if isinstance(dtype, pl.Datetime):
        return f"timestamp[{dtype.time_unit}, {dtype.time_zone or 'naive'}]"
    if isinstance(dtype, pl.List):
        return f"list[{dtype_name(dtype.inner)}]"
    return {pl.Date: "date", pl.Int64: "int64", pl.Float64: "float64", pl.String: "string",
            pl.Boolean: "bool"}.get(dtype.base_type(), str(dtype))


def datasets_block() -> str:
    """One subsection per canonical dataset: grain (reference snapshot or rows placed in the day
    by a column), keys, and a table of column, type, nullable and allowed values."""
    from venue_risk.quality.suites import API_SCOPES, ENUMS, NULLABLE
    from venue_risk.schema import DATASETS

    allowed_values = {name: dict(cols) for name, cols in ENUMS.items()}
    allowed_values.setdefault("api_keys", {})["scopes"] = API_SCOPES  # each element of the list

    out = []
    for name, ds in DATASETS.items():
        placed = ("a daily snapshot (reference data, no per-row timestamp)" if ds.reference
                  else f"rows placed in the day by `{ds.day_column}`")
        keys = ", ".join(f"`{k}`" for k in ds.keys) if ds.keys else "none (rows are not unique by any key)"
        out += [f"### `{name}`", "", f"{placed.capitalize()}. Keys (not null, unique together): {keys}.", "",
                "| column | type | null allowed | allowed values |", "|---|---|---|---|"]
        for col, dtype in ds.schema.items():
            null = "yes" if col in NULLABLE.get(name, frozenset()) else "no"
            allowed = ", ".join(f"`{v}`" for v in allowed_values.get(name, {}).get(col, ()))
            out.append(f"| `{col}` | {dtype_name(dtype)} | {null} | {allowed} |")
        out.append("")
    return "\n".join(out)


def methods_block() -> str:
    """The methods document (`venue_risk.methods.document_markdown`, without a version)."""
    from venue_risk.methods import document_markdown

    return document_markdown()


def settings_block() -> str:
    """The settings table: the markdown table of `venue_risk.settings`' docstring."""
    import venue_risk.settings

    doc = venue_risk.settings.__doc__ or ""
    return "\n".join(line for line in doc.splitlines() if line.startswith("|")) + "\n"


def metric_tables_block() -> str:
    """The metric tables of the warehouse (metric_jobs.METRIC_TABLES), marked per-symbol where
    the split path computes them per symbol group (metric_jobs.SYMBOL_TABLES)."""
    import textwrap

    from venue_risk.metric_jobs import METRIC_TABLES, SYMBOL_TABLES

    names = [f"`{t}`" + ("\u00a0†" if t in SYMBOL_TABLES else "") for t in METRIC_TABLES]
    return textwrap.fill(", ".join(names) + ".", width=96, break_on_hyphens=False) + (
        "\n\n† computed per symbol group on the split path (a mapped task per group), then combined.\n")


GENERATORS: dict[str, Callable[[], str]] = {"datasets": datasets_block, "methods": methods_block,
                                             "settings": settings_block, "metric-tables": metric_tables_block}


def render_blocks(text: str) -> str:
    """`text` with every generated block's body replaced by its generator's output. An unknown
    block name is an error naming it."""
    def body(m: re.Match) -> str:
        name = m.group("name")
        if name not in GENERATORS:
            raise ValueError(f"unknown generated block {name!r}; known: {', '.join(GENERATORS)}")
        return m.group(1) + GENERATORS[name]().rstrip("\n") + "\n" + m.group(4)

    return BLOCK.sub(body, text)


def _changed(paths: list[Path]) -> list[tuple[Path, str, str]]:
    """(path, its text, the text with fresh blocks) of every file whose blocks are stale."""
    pairs = [(path, path.read_text()) for path in paths]
    return [(path, text, fresh) for path, text in pairs if (fresh := render_blocks(text)) != text]


def stale_blocks(paths: list[Path]) -> list[str]:
    """`path: block` for every generated block whose text differs from what the code generates."""
    stale = []
    for path, text, fresh in _changed(paths):
        old = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
        new = {m.group("name"): m.group("body") for m in BLOCK.finditer(fresh)}
        stale += [f"{path}: {name}" for name in old if old[name] != new[name]]
    return stale


def write_blocks(paths: list[Path]) -> list[Path]:
    """Rewrite the generated blocks of `paths` in place; returns the files that changed."""
    from venue_risk.atomic import write_atomic

    changed = _changed(paths)
    for path, _, fresh in changed:
        write_atomic(path, lambda tmp, text=fresh: tmp.write_text(text))
    return [path for path, _, _ in changed]
