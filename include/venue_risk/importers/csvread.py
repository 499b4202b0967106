"""Reading public market-data CSVs for the importers: plain, gzip or zip files, with or without a
header line, every value checked, and every problem raised as an `InputError` that names the
file, the line (1-based, as an editor shows it) and the column.

The parse is done by Polars (all fields as text) for speed; the slow line-by-line scan with the
`csv` module runs only to locate a problem (a short line, a blank line before the bad row).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from venue_risk.errors import InputError

#: Epoch magnitudes (UTC years ~1973..2286) by unit; anything else is ambiguous or not epoch time.
EPOCH_RANGES = {"ms": (1e11, 1e13), "us": (1e14, 1e16)}
TS = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class CsvText:
    """One CSV document: its display name (`file` or `archive.zip:member.csv`) and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Table:
    """A CSV read as text columns, named by the format's column names."""

    source: CsvText
    frame: pl.DataFrame
    has_header: bool
    dataset: str  # the canonical dataset the rows go to (for error messages)
    absent: tuple[str, ...] = ()  # optional columns the header did not have (read as nulls)

    def line_of(self, row: int) -> int:
        """1-based line number of data row `row` (0-based), counting the header line."""
        return _line_of_row(self.source.data, row, self.has_header)

    def error(self, problem: str, *, row: int | None = None, column: str | None = None,
              expected: str | None = None) -> InputError:
        """An InputError naming this file, the line of `row` and `column`."""
        if row is not None:
            problem = f"line {self.line_of(row)}: {problem}"
        return InputError(self.dataset, problem, file=self.source.name, column=column, row=row,
                          expected=expected)


def open_csvs(path: Path) -> list[CsvText]:
    """The CSV documents of `path`: a plain `.csv`, a `.csv.gz` or `.gz`, or a `.zip` holding one or
    more `.csv` members (as downloaded from data.binance.vision)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("*", "input file does not exist", file=str(path))
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
                if not members:
                    raise InputError("*", "zip archive holds no .csv member", file=str(path),
                                     expected="a data.binance.vision zip with one CSV inside")
                return [CsvText(f"{path}:{m}", archive.read(m)) for m in sorted(members)]
        if name.endswith(".gz"):
            return [CsvText(str(path), gzip.decompress(path.read_bytes()))]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError("*", f"not a readable archive ({type(exc).__name__}: {exc})",
                         file=str(path)) from None
    return [CsvText(str(path), path.read_bytes())]


def strip_suffixes(name: str) -> str:
    """`BTCUSDT-aggTrades-2024-08-08.csv.gz` -> `BTCUSDT-aggTrades-2024-08-08`."""
    for suffix in (".gz", ".zip", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def first_line(data: bytes) -> list[str]:
    """The fields of the first non-empty line."""
    for line in io.StringIO(data.decode("utf-8", errors="replace")):
        if line.strip():
            return next(csv.reader([line]))
    return []


def looks_like_header(fields: list[str]) -> bool:
    """A header line starts with a name, a data line with a number (every format read here starts
    its rows with an id or a time: epoch digits or `YYYY-MM-DD ...`)."""
    if not fields:
        return False
    head = fields[0].strip()
    return not (head[:1].isdigit() or head[:1] == "-")


def read_table(source: CsvText, dataset: str, columns: list[str], *,
               header_required: bool = False, optional: tuple[str, ...] = ()) -> Table:
    """Read `source` as text columns.

    With a header line, the columns are found by name: every name in `columns` must be present
    except those in `optional` (added as nulls); other columns are kept. Without one (Binance's
    older public files), the line must have exactly `len(columns)` fields, taken in that order.
    A line with more or fewer fields than the header (a file cut off mid-line) is an error naming
    the line."""
    fields = first_line(source.data)
    if not fields:
        raise InputError(dataset, "empty CSV file", file=source.name,
                         expected=f"columns {','.join(columns)}")
    has_header = looks_like_header(fields)
    if not has_header and header_required:
        raise InputError(dataset, f"no header line (first line starts {','.join(fields)[:80]!r})",
                         file=source.name, expected=f"a header with columns {','.join(columns)}")
    if has_header:
        names = [f.strip() for f in fields]
        missing = [c for c in columns if c not in names and c not in optional]
        if missing:
            raise InputError(dataset, f"header lacks column(s) {missing} (header: {','.join(names)[:200]})",
                             file=source.name, column=missing[0],
                             expected=f"columns {','.join(columns)}")
    else:
        names = list(columns)
        if len(fields) != len(columns):
            raise InputError(dataset, f"line 1 has {len(fields)} field(s) and no header line",
                             file=source.name,
                             expected=f"{len(columns)} fields {','.join(columns)} (or a header line)")
    try:
        frame = pl.read_csv(io.BytesIO(source.data), has_header=has_header, new_columns=names,
                            infer_schema=False, truncate_ragged_lines=False)
    except Exception as exc:  # polars: a line with more fields than the header, bad quoting ...
        _raise_ragged(source, dataset, len(names), has_header)
        raise InputError(dataset, f"not a readable CSV file ({type(exc).__name__}: {exc})",
                         file=source.name) from None
    if frame.width and frame.height and frame[frame.columns[-1]].null_count():
        # a short line reads with nulls in its last fields: find it (a null may also be a real empty value)
        _raise_ragged(source, dataset, len(names), has_header)
    absent = tuple(c for c in optional if c not in frame.columns)
    frame = frame.with_columns([pl.lit(None, pl.String).alias(c) for c in absent])
    return Table(source, frame, has_header, dataset, absent)


def _raise_ragged(source: CsvText, dataset: str, n: int, has_header: bool) -> None:
    """Raise an InputError at the first line whose field count is not `n`; return if none."""
    reader = csv.reader(io.StringIO(source.data.decode("utf-8", errors="replace")))
    if has_header:
        next(reader, None)
    row = -1
    for fields in reader:
        if not fields:
            continue
        row += 1
        if len(fields) != n:
            line = reader.line_num
            at_end = next(reader, None) is None
            cut = " - the file ends there: was it cut off mid-line?" if at_end and len(fields) < n else ""
            raise InputError(dataset, f"line {line} has {len(fields)} field(s), expected {n}{cut} "
                             f"(line starts {','.join(fields)[:80]!r})",
                             file=source.name, row=row, expected=f"{n} fields on every line")


def _line_of_row(data: bytes, row: int, has_header: bool) -> int:
    """1-based line of data row `row`, skipping blank lines as the parser does."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
    if has_header:
        next(reader, None)
    seen = -1
    for fields in reader:
        if fields:
            seen += 1
            if seen == row:
                return reader.line_num
    return row + 1 + int(has_header)


# --- typed columns ------------------------------------------------------------------------------

def _first_bad(raw: pl.Series, cast: pl.Series) -> int | None:
    bad = (cast.is_null() & raw.is_not_null() & (raw.str.strip_chars() != "")).arg_true()
    return int(bad[0]) if len(bad) else None


def _blank_to_null(raw: pl.Series) -> pl.Series:
    return pl.Series(raw.name, raw.str.strip_chars()).replace("", None)


def required(table: Table, column: str) -> pl.Series:
    """The text column, with an error at the first empty value."""
    raw = _blank_to_null(table.frame[column])
    if raw.null_count():
        row = int(raw.is_null().arg_true()[0])
        raise table.error("empty value", row=row, column=column, expected="a value on every line")
    return raw


def _numbers(table: Table, column: str, dtype: pl.DataType, need: bool, what: str,
             expected: str) -> pl.Series:
    """Column cast to `dtype` (empty values null unless `need`), an error at the first value
    that does not cast."""
    raw = required(table, column) if need else _blank_to_null(table.frame[column])
    cast = raw.cast(dtype, strict=False)
    bad = _first_bad(raw, cast)
    if bad is not None:
        raise table.error(f"value {raw[bad]!r} is not {what}", row=bad, column=column, expected=expected)
    return cast


def floats(table: Table, column: str, *, need: bool = True) -> pl.Series:
    """Column as Float64 (empty values null unless `need`), an error at the first non-number."""
    return _numbers(table, column, pl.Float64, need, "a number", "a decimal number")


def ints(table: Table, column: str, *, need: bool = True) -> pl.Series:
    """Column as Int64, an error at the first value that is not a whole number."""
    return _numbers(table, column, pl.Int64, need, "an integer", "a whole number")


def bools(table: Table, column: str) -> pl.Series:
    """Column as Boolean from true/false (any case) or 1/0."""
    raw = required(table, column)
    cast = raw.str.to_lowercase().replace_strict(
        {"true": True, "false": False, "1": True, "0": False}, default=None, return_dtype=pl.Boolean)
    bad = _first_bad(raw, cast)
    if bad is not None:
        raise table.error(f"value {raw[bad]!r} is not a boolean", row=bad, column=column,
                          expected="true or false")
    return cast


def epoch_unit(values: pl.Series, table: Table, column: str, allowed: tuple[str, ...] = ("ms", "us")) -> str:
    """The epoch unit of an integer column, told by magnitude: milliseconds are 1e11..1e13 (years
    1973..2286), microseconds 1e14..1e16. Every value must fall in the range of one allowed unit;
    a value in neither range, or a column mixing units, is an error naming the line."""
    ranges = {u: EPOCH_RANGES[u] for u in allowed}
    nonnull = values.drop_nulls()
    if nonnull.is_empty():
        return allowed[0]
    lo, hi = nonnull.min(), nonnull.max()
    for unit, (a, b) in ranges.items():
        if a <= lo and hi < b:
            return unit
    # locate the first value that disagrees with the unit of the first value
    first_unit = next((u for u, (a, b) in ranges.items() if a <= nonnull[0] < b), None)
    for row, v in enumerate(values.to_list()):
        if v is None:
            continue
        unit = next((u for u, (a, b) in ranges.items() if a <= v < b), None)
        if unit is None or (first_unit is not None and unit != first_unit):
            what = ("mixes units with earlier lines" if unit is not None
                    else "is ambiguous: not in the range of epoch " + " or ".join(
                        f"{u} ({a:.0e}..{b:.0e})" for u, (a, b) in ranges.items()))
            raise table.error(f"timestamp {v} {what}", row=row, column=column,
                              expected="epoch " + " or ".join(allowed) + " in one unit per file")
    raise table.error("timestamps are ambiguous", column=column)  # pragma: no cover


def epoch_ts(table: Table, column: str, allowed: tuple[str, ...] = ("ms", "us")) -> pl.Series:
    """An epoch column (unit by magnitude, see `epoch_unit`) as timestamp[us, UTC]."""
    values = ints(table, column)
    unit = epoch_unit(values, table, column, allowed)
    us = values * 1000 if unit == "ms" else values
    return us.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(column)


def text_or_epoch_ts(table: Table, column: str) -> pl.Series:
    """A time column that is either text `YYYY-MM-DD HH:MM:SS[.f]` (UTC; Binance's bookDepth and
    metrics files) or epoch ms/us digits, as timestamp[us, UTC]."""
    raw = required(table, column)
    if raw.str.contains(r"^\d+$").all():
        return epoch_ts(table, column)
    cast = raw.str.replace("T", " ").str.strip_suffix("Z").str.to_datetime(
        "%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False)
    bad = _first_bad(raw, cast)
    if bad is not None:
        raise table.error(f"value {raw[bad]!r} is not a time", row=bad, column=column,
                          expected="YYYY-MM-DD HH:MM:SS (UTC) or epoch milliseconds")
    return cast.dt.replace_time_zone("UTC").alias(column)


def days_of(frame: pl.DataFrame, column: str) -> list[dt.date]:
    """The sorted UTC days of a timestamp column."""
    return sorted(frame[column].dt.date().unique().to_list())


# --- writing ------------------------------------------------------------------------------------

FILE_COL = "_file"  # the input file a row came from (per-day `inputs` of the manifest); dropped on write


def dedupe_keys(dataset: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """`frame` with one row per canonical key of `dataset` (the last in input order: a later file
    or line restating a key replaces the earlier one, as Binance's metrics files do), and the
    number of rows dropped."""
    from venue_risk.schema import DATASETS

    keys = list(DATASETS[dataset].keys)
    if not keys or frame.is_empty():
        return frame, 0
    kept = frame.unique(subset=keys, keep="last", maintain_order=True)
    return kept, frame.height - kept.height


def write_days(out: Path, dataset: str, frame: pl.DataFrame, *, written_by: str,
               only_day: dt.date | None, note: str | None = None,
               extra: dict | None = None) -> dict[dt.date, int]:
    """Write `frame` (canonical columns plus `_file`) one partition per UTC day of its day column,
    each day's manifest entry listing the input files that gave that day's rows. Keys are made
    unique first (`dedupe_keys`; the count dropped goes into the entry as `duplicate_keys_dropped`)
    and rows sorted by time. Returns the rows written per day."""
    from venue_risk.importers.layout import write_dataset
    from venue_risk.schema import DATASETS

    spec = DATASETS[dataset]
    frame, dropped = dedupe_keys(dataset, frame)
    sort = [spec.day_column] + [k for k in spec.keys if k != spec.day_column and k in frame.columns]
    frame = frame.sort(sort, maintain_order=True).with_columns(pl.col(spec.day_column).dt.date().alias("_day"))
    if only_day is not None:
        frame = frame.filter(pl.col("_day") == only_day)
    written: dict[dt.date, int] = {}
    for (day,), part in frame.partition_by("_day", as_dict=True, maintain_order=True).items():
        inputs = sorted({Path(f.split(":", 1)[0]).name for f in part[FILE_COL].unique().to_list()})
        entry_extra = dict(extra or {})
        if dropped:
            entry_extra["duplicate_keys_dropped"] = dropped
        write_dataset(out, dataset, part.drop(FILE_COL, "_day"), written_by=written_by,
                      inputs=inputs, note=note, extra=entry_extra or None)
        written[day] = part.height
    return dict(sorted(written.items()))


def write_reference(out: Path, symbols: list[str], days: list[dt.date], *, written_by: str,
                    reference: Path | None) -> dict[str, dict]:
    """`instruments` and `risk_tiers` of `symbols` for each of `days`, from the shipped Binance
    USD-M reference file or the user's `reference` override (`importers.reference`); no index
    sources (these imports carry no index components). The entries' `inputs` name the reference
    file, `reference` its label. Returns {dataset: {"rows", "days"}} (rows over all days)."""
    from venue_risk.importers.layout import write_dataset
    from venue_risk.importers.reference import SHIPPED, reference_label, reference_tables

    if not days:
        return {}
    instruments, tiers = reference_tables(sorted(symbols), {}, reference)
    label = reference_label(reference)
    note = f"from the reference file {label}" + (" (user override)" if reference else " (shipped)")
    names = [Path(reference).name if reference else SHIPPED.name]
    days = sorted(set(days))
    summary = {}
    for name, frame in (("instruments", instruments), ("risk_tiers", tiers)):
        write_dataset(out, name, frame, written_by=written_by, inputs=names, days=days,
                      note=note, extra={"reference": label})
        summary[name] = {"rows": frame.height * len(days), "days": [d.isoformat() for d in days]}
    return summary


def summarize(fmt: str, out: Path, written: dict[str, dict[dt.date, int]], reference: dict[str, dict],
              **more) -> dict:
    """The importer's summary for the CLI: {format, out, days, datasets: {name: {rows, days}}, ...}."""
    datasets = {name: {"rows": sum(per_day.values()), "days": [d.isoformat() for d in per_day]}
                for name, per_day in written.items()} | reference
    days = sorted({d for per_day in written.values() for d in per_day})
    return {"format": fmt, "out": str(out), "days": [d.isoformat() for d in days],
            "datasets": dict(sorted(datasets.items())), **more}


def symbols_written(datasets: dict[str, pl.DataFrame], written: dict[str, dict[dt.date, int]]) -> list[str]:
    """The symbols of the rows written (those on the days written of each dataset)."""
    from venue_risk.schema import DATASETS

    found: set[str] = set()
    for name, per_day in written.items():
        col = pl.col(DATASETS[name].day_column).dt.date()
        found |= set(datasets[name].filter(col.is_in(list(per_day)))["symbol"].drop_nulls().unique().to_list())
    return sorted(found)
