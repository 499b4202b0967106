"""Writing the `files` layout from an importer: canonical partitions
`<root>/<dataset>/date=YYYY-MM-DD/data.parquet` and the coverage manifest `<root>/_coverage.json`.

The manifest says which datasets the root carries, for which days, and over which window of each
day (DESIGN 2, Coverage):

    {"manifest": "venue-risk coverage v1",
     "venue": "Binance USD-M futures",
     "datasets": {
        "trades": {"dates": {"2024-08-08": {"from": "2024-08-08T23:54:16.123000Z",
                                             "to": "2024-08-08T23:59:59.990000Z",
                                             "rows": 21313, "written_by": "binance-ws",
                                             "inputs": ["btcusdt_20240808.gz"]}},
                   "note": "..."},
        "instruments": {"dates": {"2024-08-08": {"reference": "binance-usdm 2024-08-01", ...}}}}}

A dataset the manifest does not name is not carried (absent). A named dataset with `dates` is
carried on those days only; one without `dates` (a venue's export that always carries it) on
every day. `from`/`to` bound the time the rows cover; without them the gate measures the window
from the rows. `missing_columns` lists canonical columns the format cannot fill (null in the
partition): the gate allows their nulls and the figures that need them are not covered. Several imports into one root merge: a later import of a (dataset, day) replaces
that partition and its manifest entry.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from venue_risk.atomic import write_json_atomic, write_parquet_atomic
from venue_risk.schema import DATASETS

MANIFEST = "_coverage.json"
MANIFEST_VERSION = "venue-risk coverage v1"


def manifest_path(root: Path) -> Path:
    return Path(root) / MANIFEST


def read_manifest(root: Path) -> dict | None:
    """The root's manifest, or None when the root has none (then it carries all 16 datasets)."""
    path = manifest_path(root)
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); expected a coverage manifest") from None
    unknown = sorted(set(manifest.get("datasets", {})) - set(DATASETS))
    if unknown:
        raise ValueError(f"{path}: unknown dataset(s) {unknown}; expected names among {list(DATASETS)}")
    return manifest


def iso_utc(ts: dt.datetime) -> str:
    """`2024-08-08T23:54:16.123000Z` (UTC, microseconds)."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return ts.isoformat(timespec="microseconds") + "Z"


def conform(dataset: str, frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` in the canonical columns and types of `dataset`: columns the format does not carry
    are added as nulls, extra columns are an error, values are cast strictly (a value that does
    not cast raises)."""
    spec = DATASETS[dataset]
    extra = [c for c in frame.columns if c not in spec.schema]
    if extra:
        raise ValueError(f"dataset {dataset!r}: importer produced unknown column(s) {extra}")
    return frame.select([
        (pl.col(c).cast(t, strict=True) if c in frame.columns else pl.lit(None, dtype=t)).alias(c)
        for c, t in spec.schema.items()])


def write_dataset(root: Path, dataset: str, frame: pl.DataFrame, *, written_by: str,
                  inputs: list[str], days: list[dt.date] | None = None,
                  windows: dict[dt.date, tuple[dt.datetime, dt.datetime]] | None = None,
                  only_day: dt.date | None = None, note: str | None = None,
                  extra: dict | None = None) -> list[dt.date]:
    """Write `frame` (canonical columns) as one partition per UTC day of its day column and
    record each day in the manifest. Reference datasets (no day column) are written for `days`.
    `windows` declares the covered window per day (`from`/`to`: a capture's span); without it the
    manifest records the rows' first and last timestamp and the gate measures the window. `only_day` keeps that day only. Returns the days written."""
    root = Path(root)
    spec = DATASETS[dataset]
    # columns the format does not carry: null here, and declared missing in the manifest so the
    # gate allows the nulls and the figures needing them say "not covered"
    missing = [c for c in spec.columns if c not in frame.columns]
    frame = conform(dataset, frame)
    if spec.day_column is None:
        if not days:
            raise ValueError(f"dataset {dataset!r} is reference data: give the days it applies to")
        parts = {d: frame for d in days}
    else:
        col = pl.col(spec.day_column)
        key = col.dt.date() if isinstance(spec.schema[spec.day_column], pl.Datetime) else col
        parts = {d: part.drop("_day") for (d,), part in
                 frame.with_columns(key.alias("_day")).partition_by("_day", as_dict=True,
                                                                   maintain_order=True).items()}
    if only_day is not None:
        parts = {d: p for d, p in parts.items() if d == only_day}
    entries: dict[str, dict] = {}
    for day, part in sorted(parts.items()):
        write_parquet_atomic(part, root / dataset / f"date={day.isoformat()}" / "data.parquet")
        entry: dict = {"rows": part.height, "written_by": written_by, "inputs": sorted(set(inputs))}
        if missing:
            entry["missing_columns"] = missing
        window = (windows or {}).get(day)
        if window is not None:
            entry |= {"from": iso_utc(window[0]), "to": iso_utc(window[1])}
        elif spec.day_column and isinstance(spec.schema[spec.day_column], pl.Datetime) and part.height:
            # informational: the gate measures the window from the rows (coverage.measure)
            entry |= {"first_ts": iso_utc(part[spec.day_column].min()),
                      "last_ts": iso_utc(part[spec.day_column].max())}
        entry |= extra or {}
        entries[day.isoformat()] = entry
    update_manifest(root, dataset, entries, note=note)
    return sorted(parts)


def update_manifest(root: Path, dataset: str, entries: dict[str, dict], *, note: str | None = None,
                    venue: str | None = None) -> None:
    """Merge `entries` ({iso day: entry}) of `dataset` into the root's manifest (atomic write)."""
    manifest = read_manifest(root) or {"manifest": MANIFEST_VERSION, "datasets": {}}
    if venue:
        manifest["venue"] = venue
    item = manifest["datasets"].setdefault(dataset, {})
    item.setdefault("dates", {}).update(entries)
    if note:
        item["note"] = note
    write_json_atomic(manifest, manifest_path(root))


def set_venue(root: Path, venue: str) -> None:
    """Record the venue's name in the manifest (shown on the report)."""
    manifest = read_manifest(root) or {"manifest": MANIFEST_VERSION, "datasets": {}}
    manifest["venue"] = venue
    write_json_atomic(manifest, manifest_path(root))
