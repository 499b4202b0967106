"""The `files` source: a folder of canonical Parquet or CSV files, one partition per dataset and
UTC day, laid out as `<root>/<dataset>/date=YYYY-MM-DD/<any name>.parquet|.csv`.

This is the contract for a venue's own export jobs. Column names and types are those of
`venue_risk.schema`; timestamps are UTC (naive timestamps are read as UTC, zoned ones converted
to UTC, any precision cast to microseconds); CSV list columns (`index_sources`, `scopes`,
`ip_allowlist`) hold a JSON array or `|`-separated values. Every problem is raised as an
`InputError` naming the dataset, file, column and row and what was expected.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import polars as pl

from venue_risk.atomic import write_atomic
from venue_risk.errors import InputError
from venue_risk.importers.layout import read_manifest
from venue_risk.schema import DATASETS


def partition_dir(root: Path, dataset: str, day: dt.date) -> Path:
    """`<root>/<dataset>/date=YYYY-MM-DD`."""
    return Path(root) / dataset / f"date={day.isoformat()}"


class FilesSource:
    """Canonical files under one root folder."""

    kind = "files"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "root": str(self.root)}

    def prepare(self, day: dt.date) -> None:
        """Nothing to prepare (the venue's export jobs or an importer wrote the files); checks
        that every dataset the root carries on `day` has its partition, and names all the
        missing ones in one error."""
        if not self.root.is_dir():
            raise InputError("*", "source folder does not exist", file=str(self.root),
                             expected="a folder with one subfolder per dataset")
        missing = [name for name in self.declared(day)
                   if not any(partition_dir(self.root, name, day).glob("*.parquet"))
                   and not any(partition_dir(self.root, name, day).glob("*.csv"))]
        if missing:
            manifest = read_manifest(self.root)
            why = (f"the manifest {self.root / '_coverage.json'} says the root carries them on {day}"
                   if manifest else "a root without _coverage.json carries all 16 datasets")
            raise InputError(", ".join(missing), f"no partition for {day} of {len(missing)} carried "
                             f"dataset(s): " + ", ".join(str(partition_dir(self.root, m, day)) for m in missing),
                             file=str(self.root),
                             expected=f"<dataset>/date={day}/<name>.parquet or .csv for each ({why}; "
                                      "a dataset the source cannot provide is left out of the manifest)")

    def declared(self, day: dt.date) -> dict[str, dict | None]:
        """{dataset: its manifest entry for `day`} for the datasets the root carries on `day`:
        those `_coverage.json` names for the day, or all 16 without a manifest."""
        from venue_risk.coverage import manifest_day

        try:
            manifest = read_manifest(self.root)
        except ValueError as exc:
            raise InputError("*", str(exc), file=str(self.root / "_coverage.json")) from None
        return manifest_day(manifest, day)

    def venue(self) -> str | None:
        """The venue name the manifest records, if any."""
        manifest = read_manifest(self.root)
        return (manifest or {}).get("venue")

    def files(self, dataset: str, day: dt.date) -> list[Path]:
        """The partition's data files, sorted by name; an error if there are none."""
        folder = partition_dir(self.root, dataset, day)
        if not folder.is_dir():
            raise InputError(dataset, f"no partition for {day}", file=str(folder),
                             expected=f"{folder}/<name>.parquet or .csv")
        found = sorted(p for p in folder.iterdir() if p.suffix in (".parquet", ".csv"))
        if not found:
            raise InputError(dataset, f"partition for {day} holds no .parquet or .csv file",
                             file=str(folder))
        return found

    def land(self, dataset: str, day: dt.date, target: Path) -> int | None:
        """Copy the day's rows of `dataset` to `target` (Parquet, atomic) without holding them in
        memory, when every file of the partition is Parquet with exactly the canonical columns
        and types (a venue's own export, the simulator): a lazy scan in canonical column order
        streamed to a temporary file, then renamed; rows in the same order as `read`. Returns the
        rows written, or None when a file needs conforming (a CSV, another type, a missing or
        extra column, an unreadable file): the caller then uses `read`, which conforms or names
        the problem."""
        spec = DATASETS[dataset]
        files = self.files(dataset, day)
        if any(p.suffix != ".parquet" for p in files):
            return None
        for path in files:
            try:
                schema = pl.read_parquet_schema(path)
            except Exception:
                return None
            if dict(schema) != dict(spec.schema):
                return None
        scan = pl.concat([pl.scan_parquet(p).select(spec.columns) for p in files], how="vertical")
        write_atomic(target, lambda tmp: scan.sink_parquet(tmp, compression="zstd"))
        return pl.scan_parquet(target).select(pl.len()).collect().item()

    def read(self, dataset: str, day: dt.date) -> pl.DataFrame:
        """The day's rows of `dataset` in canonical columns and types (files concatenated in name
        order, rows in file order)."""
        frames = [read_canonical_file(dataset, path) for path in self.files(dataset, day)]
        return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def read_canonical_file(dataset: str, path: Path) -> pl.DataFrame:
    """Read one Parquet or CSV file and conform it to the canonical schema of `dataset`."""
    try:
        if path.suffix == ".parquet":
            raw = pl.read_parquet(path)
        else:
            check_csv_fields(dataset, path)
            raw = pl.read_csv(path, infer_schema=False)
    except InputError:
        raise
    except Exception as exc:  # polars raises several kinds for unreadable files
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise InputError(dataset, f"not a readable {kind} file ({type(exc).__name__}: {exc})",
                         file=str(path)) from exc
    return conform_columns(dataset, raw, str(path))


def check_csv_fields(dataset: str, path: Path) -> None:
    """Strict CSV: every line has as many fields as the header. A short line would otherwise be
    read with nulls in its last columns (a file cut off mid-line loses its rows quietly), a long
    one shifted. Raises InputError naming the file, the line (1-based, as an editor shows it)
    and the row (0-based data row), and what was expected."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise InputError(dataset, "empty CSV file (no header line)", file=str(path),
                             expected="a header line with the canonical columns")
        n, row = len(header), -1
        for row, fields in enumerate(reader):
            if len(fields) != n and fields:
                at_end = next(reader, None) is None
                cut = " - the file ends there: was it cut off mid-line?" if at_end and len(fields) < n else ""
                raise InputError(dataset, f"line {reader.line_num} has {len(fields)} field(s), the header "
                                 f"has {n}{cut} (line starts {','.join(fields)[:80]!r})",
                                 file=str(path), row=row, expected=f"{n} fields on every line")


def conform_columns(dataset: str, raw: pl.DataFrame, file: str) -> pl.DataFrame:
    """Check the columns of `raw` against the canonical schema and cast them, naming the first
    row whose value cannot be read as the expected type. Never drops or reorders rows."""
    spec = DATASETS[dataset]
    missing = [c for c in spec.columns if c not in raw.columns]
    if missing:
        raise InputError(dataset, f"missing column(s) {missing}", file=file,
                         column=missing[0], expected=f"columns {spec.columns}")
    unknown = [c for c in raw.columns if c not in spec.schema]
    if unknown:
        raise InputError(dataset, f"unknown column(s) {unknown}", file=file, column=unknown[0],
                         expected=f"only the canonical columns {spec.columns}")
    return pl.DataFrame([_cast_column(dataset, file, raw[c], t) for c, t in spec.schema.items()])


def _cast_column(dataset: str, file: str, col: pl.Series, target: pl.DataType) -> pl.Series:
    if col.dtype == target:
        return col
    try:
        if isinstance(target, pl.Datetime):
            return _to_utc_us(col)
        if isinstance(target, pl.List) and col.dtype == pl.String:
            return pl.Series(col.name, [_parse_list(v) for v in col.to_list()], dtype=target)
        if col.dtype == pl.String and target == pl.Boolean:
            mapped = col.str.to_lowercase().replace_strict(
                {"true": True, "false": False, "1": True, "0": False}, default=None,
                return_dtype=pl.Boolean)
            _check_no_new_nulls(col, mapped)
            return mapped
        if col.dtype == pl.String and target == pl.Date:
            return col.str.to_date("%Y-%m-%d", strict=True)
        return col.cast(target, strict=True)
    except InputError:
        raise
    except Exception:
        bad_row, bad_value = _first_uncastable(col, target)
        expected = {pl.Boolean: "a boolean: true, false, 1 or 0"}.get(target, str(target))
        if isinstance(target, pl.List):
            expected = "a list: a JSON array such as [\"a\",\"b\"], or a|b"
        raise InputError(dataset, f"value {bad_value!r} is not a {target}", file=file,
                         column=col.name, row=bad_row, expected=expected) from None


def _to_utc_us(col: pl.Series) -> pl.Series:
    if col.dtype == pl.String:
        col = col.str.to_datetime(time_unit="us", time_zone="UTC", strict=True)
    if not isinstance(col.dtype, pl.Datetime):
        raise TypeError(f"{col.dtype} is not a timestamp")
    if col.dtype.time_zone is None:
        col = col.dt.replace_time_zone("UTC")
    return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def _parse_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    text = value.strip()
    if text.startswith("["):
        return [str(v) for v in json.loads(text)]
    return [v for v in text.split("|") if v] if text else []


def _check_no_new_nulls(before: pl.Series, after: pl.Series) -> None:
    new_nulls = after.is_null() & before.is_not_null()
    if new_nulls.any():
        raise ValueError("uncastable")


def _first_uncastable(col: pl.Series, target: pl.DataType) -> tuple[int | None, object]:
    """Row (0-based, as in the file) and value of the first entry that does not cast."""
    try:
        if isinstance(target, pl.Datetime) and col.dtype == pl.String:
            cast = col.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
        elif isinstance(target, pl.List) and col.dtype == pl.String:
            for i, value in enumerate(col.to_list()):
                try:
                    _parse_list(value)
                except ValueError:
                    return i, value
            return None, col.dtype
        elif target == pl.Boolean and col.dtype == pl.String:
            cast = col.str.to_lowercase().replace_strict(
                {"true": True, "false": False, "1": True, "0": False}, default=None,
                return_dtype=pl.Boolean)
        else:
            cast = col.cast(target, strict=False)
    except Exception:
        return None, col.dtype
    bad = (cast.is_null() & col.is_not_null()).arg_true()
    if len(bad) == 0:
        return None, col.dtype
    return int(bad[0]), col[int(bad[0])]
