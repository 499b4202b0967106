"""Landing: the day's canonical partitions copied from the source into
`<landing>/<dataset>/date=YYYY-MM-DD/data.parquet`, with row counts and file hashes for the run
metadata (a source without files, a database, names its inputs itself: `inputs()`). The landing
zone is what validation and the warehouse load read."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Protocol

import polars as pl

from venue_risk.atomic import write_parquet_atomic


class Source(Protocol):
    kind: str

    def files(self, dataset: str, day: dt.date) -> list[Path]: ...

    def read(self, dataset: str, day: dt.date) -> pl.DataFrame: ...

    # optional: land(dataset, day, target) -> rows written, or None to fall back to read()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def landing_path(landing: Path, dataset: str, day: dt.date) -> Path:
    return Path(landing) / dataset / f"date={day.isoformat()}" / "data.parquet"


def source_inputs(source: Source, dataset: str, day: dt.date) -> list[dict]:
    """[{file, sha256}] of the source's files for the day; a source without files (the
    `postgres` source) describes its inputs with its own `inputs(dataset, day)` (for a database:
    its address and the SHA-256 of the query text)."""
    inputs = getattr(source, "inputs", None)
    if callable(inputs):
        return inputs(dataset, day)
    return [{"file": str(p), "sha256": sha256_file(p)} for p in source.files(dataset, day)]


def land_dataset(source: Source, dataset: str, day: dt.date, landing: Path) -> dict:
    """Read one dataset's day from the source and write it to the landing zone.

    Returns {dataset, path, rows, source_files: [{file, sha256, ...}]} (JSON-serializable)."""
    inputs = source_inputs(source, dataset, day)
    out = landing_path(landing, dataset, day)
    stream = getattr(source, "land", None)  # canonical Parquet: streamed, never whole in memory
    rows = stream(dataset, day, out) if callable(stream) else None
    if rows is None:
        frame = source.read(dataset, day)
        write_parquet_atomic(frame, out)
        rows = frame.height
    return {
        "dataset": dataset,
        "path": str(out),
        "rows": rows,
        "source_files": inputs,
    }
