"""Importers of public market-data formats into the `files` layout (DESIGN 2): each writes the
canonical partitions of the datasets its format carries and the coverage manifest
(`importers.layout`).

    venue-risk import FORMAT --input FILE... --out ROOT [--date D] [--reference FILE]

Each format is a module with `import_files(inputs: list[Path], out: Path, day: date | None,
reference: Path | None) -> dict` (the summary printed by the CLI: datasets and days written).
"""

from __future__ import annotations

import importlib

#: FORMAT of the CLI -> module under venue_risk.importers
FORMATS = {"binance-ws": "binance_ws", "binance-public": "binance_public", "tardis": "tardis"}


def importer(fmt: str):
    """The `import_files` function of a format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; expected one of {sorted(FORMATS)}")
    return importlib.import_module(f"venue_risk.importers.{FORMATS[fmt]}").import_files
