"""The data-quality gate of a landed day: canonical schema check (Polars), then the Great
Expectations suites (`quality.suites`), then the rows depending on quarantined rows (a
liquidation and its fills go together: `quarantine_dependents`), then the split of every
dataset into validated rows and quarantined rows.

The gate runs in parts by symbol group (DESIGN 8), so that no process holds a large day:

    gate_parts(day, landed, groups, root)  -> [{"part": "g00", "symbols": [...]}, ..., {"part": "venue", "symbols": None}]
                                            (and the day's facts for the parts: parts/facts.json)
    validate_part(day, landed, root, part)   one part's rows (Airflow: mapped tasks)
    combine_parts(day, root, parts)          day totals, limits, coverage, validation.json
    run_gate(day, landed, root, groups=...)  the three in sequence in one process

A group part validates the rows of its symbols of every dataset with a symbol column (a fill of
a liquidation goes with its liquidation, see `_read_part`); the `venue` part validates the
datasets without a symbol column, the reference datasets `instruments` and `risk_tiers` whole,
and the rows whose symbol is in no group (unlisted or null). Every per-row rule is decided with
the day's reference data, so the outcome does not depend on the number of groups (see
`validate_part` for how each cross-symbol rule is kept exact).

Outputs, under the data folder:

- `quality/date=D/parts/<part>.json`: what one part found (checks with failed counts and their
  first row, bad rows per dataset and reason, GX results), read by `combine_parts`;
- `quality/date=D/validation.json`: {date, status, checks, quarantined, row_counts, coverage,
  validated, quarantine, engine, gx_import_seconds, seconds} (status passed / warnings /
  failed; `quarantined` = [{dataset, reason, expectation, rows}]; `row_counts` = landed rows
  per dataset, the volume history of later days; `validated` = {dataset: [part files]});
- `quality/date=D/gx_results.json`: the GX validation results per dataset, merged over the
  parts (row lists cut to 20);
- `validated/<dataset>/date=D/<part>.parquet`: the good rows of each part, in canonical order
  (sorted by the day column and keys: row order in the input is not a contract); the day's
  rows are the union of the files validation.json lists (other files there are removed);
- `quarantine/<dataset>/date=D/data.parquet`: the bad rows with `reason`, `expectation` and
  `source_row` (row number in the landed file); `quarantine/date=D/quarantine.parquet`: all of
  them in one shape (date, dataset, reason, expectation, source_row, record JSON) for the
  warehouse table (parts write theirs as `<part>.parquet`, merged and removed by the combine).

A critical failure raises `DataQualityError` after writing validation.json and the GX results;
the parts' validated and quarantine files are then removed and none is referenced.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from pathlib import Path

import polars as pl

from venue_risk.atomic import write_json_atomic, write_parquet_atomic, write_sorted_parquet_atomic
from venue_risk.memory import release_memory
from venue_risk.quality.basic import DataQualityError, schema_check, timestamp_unit_check
from venue_risk.quality.limits import DEFAULT_QUARANTINE_LIMITS, limit_checks
from venue_risk.schema import DATASETS
from venue_risk.split import group_name, packed_groups, symbol_groups

QUARANTINE_SCHEMA = {"date": pl.Date, "dataset": pl.String, "reason": pl.String,
                     "expectation": pl.String, "source_row": pl.Int64, "record": pl.String}


def partition(root: Path, dataset: str, day: dt.date) -> Path:
    return Path(root) / dataset / f"date={day.isoformat()}" / "data.parquet"


def sort_columns(dataset: str) -> list[str]:
    spec = DATASETS[dataset]
    cols = [c for c in ([spec.day_column] if spec.day_column else []) + list(spec.keys)]
    if dataset == "api_requests":
        cols += ["key_id", "endpoint", "method", "source_ip", "status", "latency_ms"]
    out: list[str] = []
    for c in cols:
        if c and c not in out:
            out.append(c)
    return out


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (dt.date, dt.time)):  # (datetime is a date)
        return value.isoformat()
    return value


def record_json(rows: pl.DataFrame) -> list[str]:
    """Each row as a JSON object of its original values, for the warehouse `quarantine` table:
    NaN and infinities (not JSON numbers) as the strings "NaN", "Infinity", "-Infinity" instead
    of null, so the record still shows what was wrong; timestamps in ISO 8601."""
    return [json.dumps({k: _json_value(v) for k, v in row.items()}, separators=(",", ":"))
            for row in rows.iter_rows(named=True)]


#: Quarantine reasons of the rows that depend on quarantined rows.
FILLS_QUARANTINED = "fills quarantined in trades"
LIQUIDATION_QUARANTINED = "liquidation quarantined"
SYMBOL_QUARANTINED = "the symbol's instrument or risk tiers quarantined"
WALLET_QUARANTINED = "the cross account's accounts_eod row quarantined"


def _rows_where(frame: pl.DataFrame, column: str, values: pl.Series) -> list[int]:
    if not values.len():
        return []
    return frame.with_row_index("_row").filter(pl.col(column).is_in(values.implode()))["_row"].to_list()


def _source(row_ids: dict[str, pl.Series | None] | None, dataset: str, row: int) -> int:
    """The landed row number of row position `row` of a part's frame of `dataset`."""
    ids = (row_ids or {}).get(dataset)
    return int(ids[row]) if ids is not None else int(row)


def removed_symbols(frames: dict[str, pl.DataFrame], bad_rows: dict[str, dict[int, str]]) -> set[str]:
    """The symbols whose instrument row or any of whose risk tiers is quarantined (`frames`
    holds the whole instruments and risk_tiers of the day)."""
    removed: set[str] = set()
    for dataset in ("instruments", "risk_tiers"):
        frame, rows = frames.get(dataset), bad_rows.get(dataset) or {}
        if frame is not None and rows:
            removed |= set(frame[sorted(rows)]["symbol"].drop_nulls().to_list())
    return removed


def quarantine_symbol_dependents(frames: dict[str, pl.DataFrame],
                                 bad_rows: dict[str, dict[int, str]],
                                 removed: set[str] | None = None) -> list[dict]:
    """Quarantine every row of a symbol whose instrument row or any of whose risk tiers is
    quarantined, in every dataset with a symbol column, in place in `bad_rows` (reason
    SYMBOL_QUARANTINED): without its instrument or its full tier table no figure of the symbol
    can be computed, and its positions, fills and prices left behind would read as the venue's
    errors. `removed`: those symbols (default: from `frames`' instruments and risk_tiers; a
    part passes the day's set). Returns one gate check per dataset that lost rows this way."""
    removed = removed_symbols(frames, bad_rows) if removed is None else removed
    if not removed:
        return []
    checks = []
    values = pl.Series(sorted(removed), dtype=pl.String)
    for dataset, frame in frames.items():
        if "symbol" not in frame.columns:
            continue
        bad = bad_rows.setdefault(dataset, {})
        new = [r for r in _rows_where(frame, "symbol", values) if r not in bad]
        bad.update({r: SYMBOL_QUARANTINED for r in new})
        if new:
            checks.append({"dataset": dataset, "check": SYMBOL_QUARANTINED, "severity": "warning",
                           "expectation": "dependent rows (venue_risk.quality.gate)",
                           "failed_count": len(new), "quarantine": True,
                           "example": f"symbol(s) {sorted(removed)} removed by the gate"})
    return checks


def quarantine_dependents(frames: dict[str, pl.DataFrame], bad_rows: dict[str, dict[int, str]],
                          row_ids: dict[str, pl.Series | None] | None = None) -> list[dict]:
    """Quarantine a liquidation together with all its fills when either side has a bad row, in
    place in `bad_rows`: a liquidation measured from part of its fills has a wrong VWAP, fill
    ratio and cost, and fills whose liquidation is missing cannot be attributed. First every
    liquidation with a quarantined fill (trades.liquidation_id) gets reason FILLS_QUARANTINED,
    then every fill of a quarantined liquidation gets reason LIQUIDATION_QUARANTINED. Likewise
    the cross positions of an account whose accounts_eod row is quarantined (WALLET_QUARANTINED:
    a cross position is margined by that wallet). Returns the gate checks of these rules
    (failed_count = rows quarantined by each; `row_ids`: landed row numbers for the examples)."""
    trades, liqs = frames.get("trades"), frames.get("liquidations")
    if trades is None or liqs is None:
        return []
    bad_t, bad_l = bad_rows.setdefault("trades", {}), bad_rows.setdefault("liquidations", {})
    ids = trades[sorted(bad_t)]["liquidation_id"].drop_nulls().unique() if bad_t else trades["liquidation_id"].clear()
    new_l = [r for r in _rows_where(liqs, "liquidation_id", ids) if r not in bad_l]
    bad_l.update({r: FILLS_QUARANTINED for r in new_l})
    ids = liqs[sorted(bad_l)]["liquidation_id"].drop_nulls().unique() if bad_l else liqs["liquidation_id"].clear()
    new_t = [r for r in _rows_where(trades, "liquidation_id", ids) if r not in bad_t]
    bad_t.update({r: LIQUIDATION_QUARANTINED for r in new_t})

    checks = []
    positions, accounts = frames.get("positions_eod"), frames.get("accounts_eod")
    bad_a = bad_rows.get("accounts_eod") or {}
    if positions is not None and accounts is not None and bad_a:
        # a cross position is margined by its account's wallet: without it, no band or stress
        bad_p = bad_rows.setdefault("positions_eod", {})
        gone = accounts[sorted(bad_a)]["account"].drop_nulls().unique(maintain_order=True)
        new_p = [r for r in positions.with_row_index("_row").filter(
            (pl.col("margin_mode") == "cross") & pl.col("account").is_in(gone.implode()))["_row"].to_list()
            if r not in bad_p]
        bad_p.update({r: WALLET_QUARANTINED for r in new_p})
        if new_p:
            checks.append({"dataset": "positions_eod", "check": WALLET_QUARANTINED, "severity": "warning",
                           "expectation": "dependent rows (venue_risk.quality.gate)",
                           "failed_count": len(new_p), "quarantine": True,
                           "example": f"accounts {gone.to_list()[:5]}"})

    def check(dataset: str, frame: pl.DataFrame, name: str, rows: list[int]) -> dict:
        first = _source(row_ids, dataset, rows[0]) if rows else None
        example = str(frame.row(rows[0], named=True) | {"row": first})[:300] if rows else ""
        return {"dataset": dataset, "check": name, "severity": "warning",
                "expectation": "dependent rows (venue_risk.quality.gate)", "failed_count": len(rows),
                "example": example, "quarantine": True, "_rule": {"first_row": first}}

    return checks + [check("liquidations", liqs, FILLS_QUARANTINED, new_l),
                     check("trades", trades, LIQUIDATION_QUARANTINED, new_t)]


# -- the parts of a day ----------------------------------------------------------------------------

VENUE = "venue"
#: The one part of a day whose symbols pack into a single group (gate_parts): every row.
WHOLE_DAY = "day"
#: Reference datasets with a symbol column: small, validated and written whole by the venue part
#: (every part re-validates them to know which symbols the gate removes).
REFERENCE = ("instruments", "risk_tiers")
#: Datasets whose rows go with their liquidation's symbol (a fill and its liquidation in one part).
LIQUIDATION_LINKED = ("trades", "liquidations")
#: Whole datasets a group part reads for the cross-dataset rules (never written by it).
READ_WHOLE = ("instruments", "risk_tiers", "accounts_eod", "insurance_fund")
_UNIQUE_KINDS = ("ExpectColumnValuesToBeUnique", "ExpectCompoundColumnsToBeUnique")


def _quality_dir(data_root: Path, day: dt.date) -> Path:
    return Path(data_root) / "quality" / f"date={day.isoformat()}"


def part_file(data_root: Path, dataset: str, day: dt.date, part: str, kind: str = "validated") -> Path:
    """`<kind>/<dataset>/date=D/<part>.parquet` (kind: validated or quarantine)."""
    return Path(data_root) / kind / dataset / f"date={day.isoformat()}" / f"{part}.parquet"


def day_symbols(landed: dict[str, str]) -> list[str]:
    """The distinct symbols of the landed instruments partition (its symbol column only); none
    when it is missing or unreadable (then the venue part takes every row)."""
    path = landed.get("instruments")
    if not path:
        return []
    try:
        column = pl.scan_parquet(path).select(pl.col("symbol").cast(pl.String)).collect()["symbol"]
    except Exception:  # a schema failure: the gate reports it, the parts need no groups
        return []
    return sorted(set(column.drop_nulls().to_list()))


def gate_parts(day: dt.date, landed: dict[str, str], groups: int | None, data_root: Path | None = None,
               declared: dict[str, dict | None] | None = None) -> list[dict]:
    """The parts of the day: one per symbol group of the day's symbols, named
    split.group_name(i), {"part": "g00", "symbols": [...]}, then {"part": "venue", "symbols":
    None} for the datasets without a symbol column, the reference datasets and the rows whose
    symbol is in no group. The groups: `groups` of them round-robin (split.symbol_groups), or
    with `groups` None the symbols packed by their landed rows (split.packed_groups of the
    facts' `symbol_rows`); when they pack into one group, the day is one part,
    {"part": "day", "symbols": None, "whole_day": True}, every row (a second part would only
    validate the reference datasets again). JSON-serializable (Airflow XCom). With `data_root`,
    the day's facts (`day_facts`, for `declared`) are computed here and stored for the parts."""
    if groups is None:
        groups_ = packed_groups(day_facts(day, landed, declared, data_root)["symbol_rows"])
        if len(groups_) <= 1:
            return [{"part": WHOLE_DAY, "symbols": None, "whole_day": True}]
    else:
        symbols = (day_facts(day, landed, declared, data_root)["symbols"] if data_root is not None
                   else day_symbols(landed))
        groups_ = symbol_groups(symbols, groups)
    return ([{"part": group_name(i), "symbols": g} for i, g in enumerate(groups_)]
            + [{"part": VENUE, "symbols": None}])


def symbol_rows(landed: dict[str, str], passed: list[str], symbols: list[str]) -> dict[str, int]:
    """{listed symbol: its landed rows summed over the `passed` datasets with a symbol column}
    (0 for a listed symbol without rows; rows of unlisted symbols are not counted: they go to
    the venue part). Reads the symbol column only."""
    rows = dict.fromkeys(symbols, 0)
    for dataset in passed:
        if "symbol" not in DATASETS[dataset].schema:
            continue
        counts = pl.scan_parquet(landed[dataset]).group_by("symbol").len().collect()
        for symbol, n in counts.iter_rows():
            if symbol in rows:
                rows[symbol] += int(n)
    return rows


_CACHE: dict[tuple, object] = {}


def _file_key(path: str) -> tuple:
    st = os.stat(path)
    return (str(path), st.st_mtime_ns, st.st_size)


def _cached(key: tuple, make):
    """make(), kept for the process (parts run in one process share the day's facts)."""
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = make()
    return _CACHE[key]


def _ts_column(dataset: str) -> str | None:
    spec = DATASETS[dataset]
    if spec.day_column and isinstance(spec.schema[spec.day_column], pl.Datetime):
        return spec.day_column
    return None


def facts_file(data_root: Path, day: dt.date) -> Path:
    """Where gate_parts stores the day's facts for the parts: quality/date=D/parts/facts.json."""
    return _quality_dir(Path(data_root), day) / "parts" / "facts.json"


def day_facts(day: dt.date, landed: dict[str, str], declared: dict[str, dict | None] | None,
              data_root: Path | None = None) -> dict:
    """What every part must agree on, from the whole landed files (read a column at a time):
    {checks: the day-level checks (dataset present, schema, timestamp units), row_counts,
    passed: datasets to validate (carried, landed, schema and units fine), carried, symbols,
    symbol_rows (`symbol_rows`: what the symbol groups are packed by), suite_coverage: per passed dataset the coverage the suites read (state, declared window,
    missing columns; from the day's first and last timestamps)}. Cached per process and, with
    `data_root`, in `facts_file` under a key of the landed files (path, mtime, size) and
    `declared`: computed once per day (by gate_parts), not by each part's process again (every
    part read every landed file's timestamps: a quarter of a small part's time on a large day).
    A stored entry whose key differs (a file landed again) is recomputed and replaced."""
    from venue_risk.coverage import measure

    carried = declared if declared is not None else {name: None for name in DATASETS}
    key = ("facts", 2, day, tuple(sorted((d, _file_key(p)) for d, p in landed.items())),
           json.dumps(carried, sort_keys=True, default=str))
    if data_root is not None:
        stored, stored_key = facts_file(data_root, day), json.dumps(key, default=str)
        try:
            entry = json.loads(stored.read_text())
        except (OSError, ValueError):
            entry = {}
        if entry.get("key") == stored_key:
            return _cached(key, lambda: entry["facts"])
        facts = day_facts(day, landed, declared)
        write_json_atomic({"key": stored_key, "facts": facts}, stored)
        return facts

    def make() -> dict:
        checks: list[dict] = []
        row_counts: dict[str, int] = {}
        passed: list[str] = []
        coverage: dict[str, dict] = {}
        not_landed = [d for d in DATASETS if d in carried and d not in landed]
        if not_landed:
            checks.append({"dataset": ", ".join(not_landed), "check": "dataset present", "severity": "critical",
                           "expectation": "landed partition", "failed_count": len(not_landed),
                           "example": f"no landed partition for {len(not_landed)} carried dataset(s): "
                                      + ", ".join(not_landed)})
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
        for dataset in DATASETS:
            if dataset not in carried or dataset not in landed:
                continue
            path = landed[dataset]
            schema = pl.read_parquet_schema(path)
            row_counts[dataset] = pl.scan_parquet(path).select(pl.len()).collect().item()
            check = schema_check(dataset, pl.DataFrame(schema=schema))
            checks.append(check | {"expectation": "canonical Polars schema"})
            if check["failed_count"]:
                continue
            stamps = [c for c, t in DATASETS[dataset].schema.items() if isinstance(t, pl.Datetime)]
            units = timestamp_unit_check(dataset, pl.scan_parquet(path).select(stamps).collect(), day) if stamps else []
            checks += units
            if any(c["failed_count"] for c in units):
                continue
            passed.append(dataset)
            ts = _ts_column(dataset)
            if ts:  # the window needs the first and last timestamps inside the day only
                edges = (pl.scan_parquet(path).select(ts)
                         .filter((pl.col(ts) >= start) & (pl.col(ts) < start + dt.timedelta(days=1)))
                         .select(pl.col(ts).min().alias("a"), pl.col(ts).max().alias("b")).collect())
                frame = pl.DataFrame({ts: [v for v in edges.row(0) if v is not None]},
                                     schema={ts: DATASETS[dataset].schema[ts]})
            else:
                frame = pl.DataFrame(schema=DATASETS[dataset].schema)
            coverage[dataset] = measure(dataset, frame, day, carried=True, declared=carried[dataset])
        symbols = day_symbols(landed)
        return {"checks": checks, "row_counts": row_counts, "passed": passed, "carried": carried,
                "symbols": symbols, "symbol_rows": symbol_rows(landed, passed, symbols),
                "suite_coverage": coverage}

    return _cached(key, make)


def _liquidation_symbols(path: str) -> pl.DataFrame:
    """liquidation_id -> symbol of its first row, the part its fills and rows go to."""
    return _cached(("liqmap", _file_key(path)), lambda: (
        pl.scan_parquet(path).select("liquidation_id", pl.col("symbol").alias("_liq_symbol"))
        .filter(pl.col("liquidation_id").is_not_null())
        .unique("liquidation_id", keep="first", maintain_order=True)
        .with_columns(pl.lit(True).alias("_liq_known")).collect()))


def _read_part(dataset: str, path: str, symbols: list[str] | None, grouped: list[str],
               liquidations: str | None) -> tuple[pl.DataFrame, pl.Series]:
    """The rows of `dataset` that belong to a part, in landed order, and their landed row
    numbers (computed by the reader before the filter). A row belongs to the group of its
    symbol; trades and liquidations rows of a known liquidation_id go by the symbol of that
    liquidation's first row instead, so a liquidation, its duplicates and all its fills are in
    one part. `symbols` None: the venue part (symbol null or in no group: not in `grouped`, the
    symbols of every group; `grouped` empty for the whole day's one part: every row)."""
    def in_part(symbol: pl.Expr) -> pl.Expr:
        return ((symbol.is_null() | ~symbol.is_in(grouped)) if symbols is None
                else symbol.is_in(symbols)).fill_null(False)

    keep = in_part(pl.col("symbol"))
    if liquidations is not None and dataset in LIQUIDATION_LINKED:
        # by the liquidation's symbol where the liquidation is known: two membership tests of
        # the liquidation id instead of a join of every row with the liquidation map
        liq = _liquidation_symbols(liquidations)
        mine = liq.filter(in_part(pl.col("_liq_symbol")))["liquidation_id"]
        known = pl.col("liquidation_id").is_in(liq["liquidation_id"].implode()).fill_null(False)
        keep = pl.col("liquidation_id").is_in(mine.implode()).fill_null(False) | (~known & keep)
    frame = pl.scan_parquet(path, row_index_name="_source_row").filter(keep).collect(engine="streaming")
    if not frame["_source_row"].is_sorted():
        frame = frame.sort("_source_row")
    return frame.select(DATASETS[dataset].columns), frame["_source_row"].cast(pl.Int64)


def _read_whole(path: str, columns: list[str] | None = None) -> pl.DataFrame:
    return _cached(("whole", _file_key(path), tuple(columns or ())),
                   lambda: pl.scan_parquet(path).select(columns or pl.all()).collect())


def _reference_frames(part_frames: dict[str, pl.DataFrame], landed: dict[str, str],
                      passed: list[str]) -> dict[str, pl.DataFrame]:
    """The frames the cross-dataset helper columns of a part read: its own rows, with the day's
    whole instruments, risk_tiers, accounts_eod and insurance_fund, the day's symbols with a
    mark_index series, the day's book_depth (symbol, percentage, notional), and the order ids
    of order_events its trades refer to (its own orders, plus those found in the whole file)."""
    ref = dict(part_frames)
    for dataset in READ_WHOLE:
        if dataset in passed:
            ref[dataset] = _read_whole(landed[dataset])
    if "mark_index" in passed:
        ref["mark_index"] = _cached(("marked", _file_key(landed["mark_index"])), lambda: (
            pl.scan_parquet(landed["mark_index"]).select("symbol").unique().collect()))
    if "book_depth" in passed:
        ref["book_depth"] = _read_whole(landed["book_depth"], ["symbol", "percentage", "notional"])
    trades = part_frames.get("trades")
    if "order_events" in passed and trades is not None:
        own = part_frames["order_events"]["order_id"].unique()
        wanted = (pl.concat([trades["taker_order_id"], trades["maker_order_id"]]).drop_nulls().unique())
        missing = wanted.filter(~wanted.is_in(own.implode()))
        found = (pl.scan_parquet(landed["order_events"]).select("order_id")
                 .filter(pl.col("order_id").is_in(missing.implode())).unique().collect()["order_id"]
                 if missing.len() else own.clear())
        ref["order_events"] = pl.DataFrame({"order_id": pl.concat([own, found])})
    return ref


def _counts(rows: dict[int, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in rows.values():
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def _part_outputs(day: dt.date, data_root: Path, name: str, dataset: str, frame: pl.DataFrame,
                  rows: dict[int, str], ids: pl.Series | None,
                  kinds: dict[str, str]) -> tuple[str, pl.DataFrame | None]:
    """Write the part's validated rows of `dataset` (canonical order) and its quarantine rows
    (with reason, expectation and the landed source_row); returns the validated path and the
    quarantine rows in QUARANTINE_SCHEMA (None without any)."""
    bad_path = part_file(data_root, dataset, day, name, "quarantine")
    if rows:
        flags = pl.DataFrame({"_pos": list(rows), "reason": list(rows.values())},
                             schema={"_pos": pl.UInt32, "reason": pl.String})
        indexed = frame.with_row_index("_pos").join(flags, on="_pos", how="left", maintain_order="left")
        good = indexed.filter(pl.col("reason").is_null()).drop("_pos", "reason")
    else:
        good = frame  # (no row to take out: no index, join or filter over a million rows)
    path = str(write_sorted_parquet_atomic(good, sort_columns(dataset), part_file(data_root, dataset, day, name)))
    if not rows:
        bad_path.unlink(missing_ok=True)  # a rerun after a fix leaves no stale quarantine behind
        return path, None
    bad = indexed.filter(pl.col("reason").is_not_null())
    source = (ids.gather(bad["_pos"]) if ids is not None else bad["_pos"]).cast(pl.Int64)
    bad = bad.drop("_pos").with_columns(
        source.alias("source_row"),
        pl.col("reason").replace_strict(kinds, default="", return_dtype=pl.String).alias("expectation"))
    bad = bad.select("source_row", *frame.columns, "reason", "expectation")
    write_parquet_atomic(bad, bad_path)
    record = pl.Series("record", record_json(bad.select(frame.columns)), dtype=pl.String)
    return path, pl.DataFrame({
        "date": [day] * bad.height, "dataset": [dataset] * bad.height,
        "reason": bad["reason"], "expectation": bad["expectation"],
        "source_row": bad["source_row"], "record": record}, schema=QUARANTINE_SCHEMA)


def validate_part(day: dt.date, landed: dict[str, str], data_root: Path, part: dict,
                  declared: dict[str, dict | None] | None = None) -> dict:
    """Validate one part of the day (from gate_parts) and write its outputs:
    `validated/<dataset>/date=D/<part>.parquet`, its quarantine rows and
    `quality/date=D/parts/<part>.json` (never validation.json). Returns {part, path, rows,
    quarantined, seconds}.

    The part reads only its rows of each dataset (a filtered lazy scan); the rules that look
    across symbols stay exact:
    - `symbol is a listed instrument` uses the day's whole symbol list; fee signs and funding
      caps the whole instruments; `the symbol has risk tiers / a mark_index series / book
      depth` the day's risk_tiers, mark_index symbols and book_depth; the pool rule the whole
      insurance_fund; the wallet rule the whole accounts_eod; `taker/maker_order_id is an order`
      the part's orders plus a lookup of the others in the whole order_events file;
    - a liquidation and all its fills are in one part (`_read_part`), so `fills ...` rules
      and quarantine_dependents see both sides;
    - every part re-validates instruments and risk_tiers whole (owned by the venue part), so
      SYMBOL_QUARANTINED takes the same symbols everywhere, and accounts_eod (owned by the
      venue part) for WALLET_QUARANTINED;
    - rules over a whole table (row counts, volume band, the series' last timestamp, key
      uniqueness without a symbol in the key) are decided again on day totals by combine_parts;
      schema, timestamp units and the coverage state come from the whole files (`day_facts`)."""
    from venue_risk.quality.suites import import_gx, run_suites, volume_bands

    started = time.perf_counter()
    import_gx()  # timed apart: a fixed cost per process, ~0 when preloaded (venue_risk.preload)
    gx_import_s = time.perf_counter() - started
    data_root = Path(data_root)
    name, symbols = part["part"], part.get("symbols")
    venue = symbols is None  # (the venue part, or the whole day's one part)
    facts = day_facts(day, landed, declared, data_root)
    passed = facts["passed"]
    liquidations = landed.get("liquidations") if "liquidations" in passed else None

    own: dict[str, pl.DataFrame] = {}  # the datasets this part writes
    row_ids: dict[str, pl.Series | None] = {}
    for dataset in passed:
        whole = dataset in REFERENCE or "symbol" not in DATASETS[dataset].schema
        if whole and venue:
            own[dataset], row_ids[dataset] = pl.read_parquet(landed[dataset]), None
        elif not whole:
            own[dataset], row_ids[dataset] = _read_part(dataset, landed[dataset], symbols,
                                                        [] if part.get("whole_day") else facts["symbols"],
                                                        liquidations)
    reference = _reference_frames(own, landed, passed)
    # GX on the part's non-empty rows (an empty dataset of the day: once, in the venue part),
    # and, in a group part, on the whole reference datasets the dependent rules need
    checked = {d: f for d, f in own.items() if f.height or (venue and not facts["row_counts"].get(d))}
    for dataset in ("instruments", "risk_tiers", "accounts_eod"):
        if dataset in passed and dataset not in own:
            checked[dataset] = reference[dataset]
    checked = {d: checked[d] for d in DATASETS if d in checked}
    gx_checks, bad_rows, gx_results = run_suites(
        day, checked, volume_bands(data_root / "quality", day), facts["suite_coverage"],
        reference=reference, row_ids=row_ids)
    release_memory()  # GX's pandas frames are gone: give their pages back before the writes
    removed = removed_symbols(reference | {d: checked[d] for d in REFERENCE if d in checked}, bad_rows)
    bad = {d: bad_rows.get(d, {}) for d in own}
    checks = [c for c in gx_checks if c["dataset"] in own]
    checks += [c | {"_rule": {}} for c in quarantine_symbol_dependents(own, bad, removed)]
    linked = dict(own)
    if "accounts_eod" in checked and "accounts_eod" not in own:  # (re-validated for reference)
        linked["accounts_eod"] = checked["accounts_eod"]
        bad["accounts_eod"] = bad_rows.get("accounts_eod", {})
    checks += [c | {"_rule": c.get("_rule", {})} for c in quarantine_dependents(linked, bad, row_ids)]
    bad = {d: bad.get(d, {}) for d in own}
    causes = [f"{d} row {row} (symbol {own[d]['symbol'][row]!r}): '{reason}'"
              for d in REFERENCE if d in own for row, reason in sorted(bad[d].items())
              if reason != SYMBOL_QUARANTINED]

    validated, quarantine, records = {}, {}, []
    for dataset, frame in own.items():
        kinds = {c["check"]: c["expectation"] for c in checks if c["dataset"] == dataset}
        validated[dataset], rec = _part_outputs(day, data_root, name, dataset, frame, bad[dataset],
                                                row_ids[dataset], kinds)
        if rec is not None:
            records.append(rec)
            quarantine[dataset] = str(part_file(data_root, dataset, day, name, "quarantine"))
    if venue:  # a dataset the source does not carry: an empty partition, so the load is uniform
        for dataset in DATASETS:
            if dataset not in facts["carried"]:
                validated[dataset] = str(write_parquet_atomic(
                    pl.DataFrame(schema=DATASETS[dataset].schema), part_file(data_root, dataset, day, name)))
    qdir = _quality_dir(data_root, day)
    records_path = qdir / "parts" / f"{name}.quarantine.parquet"
    if records:
        write_parquet_atomic(pl.concat(records), records_path)
    else:
        records_path.unlink(missing_ok=True)
    seconds = round(time.perf_counter() - started, 3)
    summary = {"part": name, "symbols": symbols, "date": day.isoformat(), "landed": dict(landed),
               "declared": declared, "global_checks": facts["checks"], "row_counts": facts["row_counts"],
               "symbol_rows": facts["symbol_rows"], "passed": passed, "checks": checks,
               "bad": {d: _counts(rows) for d, rows in bad.items() if rows},
               "removed": sorted(removed), "causes": causes,
               "rows": {d: f.height for d, f in own.items()},
               "validated": validated, "quarantine": quarantine,
               "records": str(records_path) if records else None,
               "gx_results": {d: r for d, r in gx_results.items() if d in own or d == "_seconds_per_dataset"},
               "gx_import_seconds": round(gx_import_s, 3), "seconds": seconds}
    path = write_json_atomic(summary, qdir / "parts" / f"{name}.json")
    return {"part": name, "path": str(path), "rows": sum(summary["rows"].values()),
            "quarantined": sum(sum(c.values()) for c in summary["bad"].values()), "seconds": seconds}


# -- combining the parts ---------------------------------------------------------------------------

def _first_failing(items: list[dict]) -> dict:
    """Of the same check from several parts, the one whose failing row comes first in the
    landed file (a row-less failure after those with a row)."""
    failing = [c for c in items if c["failed_count"]]
    if not failing:
        return items[0]
    return min(failing, key=lambda c: (c["_rule"].get("first_row") is None, c["_rule"].get("first_row") or 0))


def _duplicates(path: str, keys: tuple[str, ...]) -> tuple[int, int | None]:
    """(rows whose key occurs more than once, first such landed row) over the whole file, as GX
    counts them (a single key: nulls left out; a compound key: rows with every key null left
    out). Hashes first, so only candidate rows are read with their key values."""
    cols = list(keys)
    present = (pl.col(cols[0]).is_not_null() if len(cols) == 1
               else ~pl.all_horizontal([pl.col(c).is_null() for c in cols]))
    hashed = (pl.scan_parquet(path, row_index_name="_r").filter(present)
              .select("_r", pl.struct(cols).hash().alias("_h")).collect(engine="streaming"))
    # hashes seen twice, from the sorted hashes (neighbours equal): on 56.5M order events 1.5 s
    # where is_duplicated's hash table took 9.2 s
    hashes = hashed["_h"].sort()
    repeated = hashes.filter(hashes == hashes.shift(1)).unique()
    candidates = hashed.filter(pl.col("_h").is_in(repeated.implode()))["_r"]
    if not candidates.len():
        return 0, None
    rows = (pl.scan_parquet(path, row_index_name="_r").filter(pl.col("_r").is_in(candidates.implode()))
            .select("_r", *cols).collect())
    dup = rows.filter(pl.struct(cols).is_duplicated())
    return dup.height, (int(dup["_r"].min()) if dup.height else None)


def _landed_row(path: str, row: int) -> dict:
    return (pl.scan_parquet(path, row_index_name="_r").filter(pl.col("_r") == row).drop("_r")
            .collect().row(0, named=True))


def _merge_gx_check(dataset: str, items: list[dict], rows: int, landed: str) -> dict:
    """One GX check of the day from the same check of the parts that ran it: column rules
    sum their failed counts (example: the first failing landed row); table rules are decided on
    the day: row counts (non-empty, volume band) on the landed rows, the column max by the part
    holding the day's max, a key without a symbol column by a scan of the whole file."""
    from venue_risk.quality.suites import _short

    rule = items[0]["_rule"]
    kind = rule.get("kind")
    out = dict(items[0])
    if kind == "ExpectTableRowCountToBeBetween":
        lo, hi = rule.get("min"), rule.get("max")
        ok = (lo is None or rows >= lo) and (hi is None or rows <= hi)
        out |= {"failed_count": 0 if ok else 1, "example": "" if ok else _short(f"observed {rows!r}")}
    elif kind == "ExpectColumnMaxToBeBetween":
        out = dict(max(items, key=lambda c: (c["_rule"].get("seen") is not None, c["_rule"].get("seen") or 0)))
    elif kind == "ExpectTableColumnsToMatchOrderedList":
        out = dict(_first_failing(items))
    elif kind in _UNIQUE_KINDS and dataset not in REFERENCE and "symbol" in DATASETS[dataset].schema \
            and "symbol" not in DATASETS[dataset].keys:
        n, first = _duplicates(landed, DATASETS[dataset].keys)
        out |= {"failed_count": n,
                "example": _short(_landed_row(landed, first) | {"row": first}) if n else ""}
    else:
        out = dict(_first_failing(items))
        out["failed_count"] = sum(c["failed_count"] for c in items)
    return out


def _merge_gx_results(records: list[dict], merged: dict[tuple[str, int], dict]) -> dict:
    """gx_results.json over the parts: per dataset, each expectation's result with the parts'
    counts summed (lists cut to 20), its success as the day's check decided, and `parts`."""
    out: dict = {}
    seconds: dict[str, float] = {}
    for dataset in DATASETS:
        results = [r["gx_results"][dataset] for r in records if dataset in r["gx_results"]]
        if not results:
            continue
        base = json.loads(json.dumps(results[0]))
        by_id = {}
        for res in results:
            for item in res.get("results", []):
                by_id.setdefault(int(item["expectation_config"]["meta"]["id"]), []).append(item)
        for item in base.get("results", []):
            i = int(item["expectation_config"]["meta"]["id"])
            check = merged.get((dataset, i))
            if check is not None:
                item["success"] = not check["failed_count"]
            res = item.get("result") or {}
            others = [o.get("result") or {} for o in by_id.get(i, [])[1:]]
            for key in ("element_count", "unexpected_count", "missing_count"):
                if isinstance(res.get(key), int):
                    res[key] = res[key] + sum(int(o.get(key) or 0) for o in others)
            for key in ("partial_unexpected_list", "unexpected_list"):
                if isinstance(res.get(key), list):
                    res[key] = (res[key] + [v for o in others for v in (o.get(key) or [])])[:20]
        stats = base.get("statistics") or {}
        evaluated = len(base.get("results", []))
        ok = sum(1 for item in base.get("results", []) if item.get("success"))
        base["statistics"] = stats | {"evaluated_expectations": evaluated, "successful_expectations": ok,
                                      "unsuccessful_expectations": evaluated - ok,
                                      "success_percent": 100.0 * ok / evaluated if evaluated else None}
        base["success"] = ok == evaluated
        base["parts"] = [r["part"] for r in records if dataset in r["gx_results"]]
        out[dataset] = base
        for r in records:
            t = (r["gx_results"].get("_seconds_per_dataset") or {}).get(dataset)
            if t is not None and dataset in r["gx_results"]:
                seconds[dataset] = round(seconds.get(dataset, 0.0) + t, 3)
    out["_seconds_per_dataset"] = seconds
    return out


def _coverage(dataset: str, path: str, day: dt.date, declared: dict | None) -> dict:
    """coverage.measure of the whole landed dataset, from its timestamp column alone (the
    largest gap is a property of the day's whole series, not of any part's)."""
    from venue_risk.coverage import measure

    ts = _ts_column(dataset)
    frame = pl.scan_parquet(path).select(ts or DATASETS[dataset].columns[0]).collect()
    return measure(dataset, frame, day, carried=True, declared=declared)


def _remove_part_outputs(data_root: Path, day: dt.date, records: list[dict]) -> None:
    for r in records:
        for path in list(r["validated"].values()) + list(r["quarantine"].values()):
            Path(path).unlink(missing_ok=True)
        if r.get("records"):
            Path(r["records"]).unlink(missing_ok=True)


def combine_parts(day: dt.date, data_root: Path, parts: list[dict],
                  quarantine_limits: dict[str, float] | None = None,
                  declared: dict[str, dict | None] | None = None) -> dict:
    """Combine the parts' files (quality/date=D/parts/<part>.json of `parts`, from gate_parts)
    into the day's result, as one run over the whole day would give it: the day-level checks
    (present, schema, units), each GX check merged over the parts (`_merge_gx_check`), the
    dependent-row checks summed, the quarantine limits over the day's totals (quality.limits),
    the coverage of each whole dataset (`_coverage`). Writes gx_results.json and validation.json
    (`validated`: {dataset: [the parts' files]}; files of other parts or runs in those folders
    are removed), quarantine/<dataset>/date=D/data.parquet and quarantine/date=D/quarantine.parquet.
    Raises DataQualityError on a critical failure, after removing the parts' output files."""
    from venue_risk.coverage import measure

    started = time.perf_counter()
    data_root = Path(data_root)
    qdir = _quality_dir(data_root, day)
    records = [json.loads((qdir / "parts" / f"{p['part']}.json").read_text()) for p in parts]
    if not records or any(r["date"] != day.isoformat() for r in records):
        raise ValueError(f"combine_parts {day}: parts {[p['part'] for p in parts]} are not all of this day")
    first = records[0]
    landed = first["landed"]
    carried = declared if declared is not None else (
        first["declared"] if first["declared"] is not None else {name: None for name in DATASETS})
    row_counts = {d: int(n) for d, n in first["row_counts"].items()}
    checks = [dict(c) for c in first["global_checks"]]

    # GX checks, merged over the parts that ran them, in dataset and suite order
    by_key: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        for c in r["checks"]:
            if "id" in c["_rule"]:
                by_key.setdefault((c["dataset"], int(c["_rule"]["id"])), []).append(c)
    order = {d: i for i, d in enumerate(DATASETS)}
    merged = {key: _merge_gx_check(key[0], items, row_counts.get(key[0], 0), landed.get(key[0]))
              for key, items in sorted(by_key.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))}
    gx_checks = list(merged.values())
    # dependent-row checks: symbol's rows per dataset, then wallet, fills, liquidation
    dependents: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        for c in r["checks"]:
            if "id" not in c["_rule"]:
                dependents.setdefault((c["dataset"], c["check"]), []).append(c)
    rank = {SYMBOL_QUARANTINED: 0, WALLET_QUARANTINED: 1, FILLS_QUARANTINED: 2, LIQUIDATION_QUARANTINED: 3}
    for (dataset, name), items in sorted(dependents.items(), key=lambda kv: (rank[kv[0][1]], order[kv[0][0]])):
        c = dict(_first_failing(items))
        c["failed_count"] = sum(i["failed_count"] for i in items)
        gx_checks.append(c)

    bad: dict[str, dict[str, int]] = {}
    for r in records:
        for dataset, counts in r["bad"].items():
            for reason, n in counts.items():
                bad.setdefault(dataset, {})[reason] = bad.get(dataset, {}).get(reason, 0) + n
    totals = {d: sum(c.values()) for d, c in bad.items()}
    limits = quarantine_limits if quarantine_limits is not None else DEFAULT_QUARANTINE_LIMITS
    causes = [c for r in records for c in r["causes"]]
    for c in limit_checks(row_counts, totals, limits):
        if c["failed_count"]:  # why the rows were quarantined, in the order the rules ran
            seen = [g["check"] for g in gx_checks if g["dataset"] == c["dataset"]]
            counts = sorted(bad[c["dataset"]].items(),
                            key=lambda kv: seen.index(kv[0]) if kv[0] in seen else len(seen))
            top = sorted(counts, key=lambda kv: -kv[1])[:5]
            c["example"] += "; reasons: " + ", ".join(f"'{r}' ({n})" for r, n in top)
            if SYMBOL_QUARANTINED in bad[c["dataset"]] and causes:
                c["example"] += " - " + "; ".join(causes[:3])
        gx_checks.append(c)
    gx_checks = [{k: v for k, v in c.items() if not k.startswith("_")} for c in gx_checks]
    checks += gx_checks
    failed_critical = any(c["failed_count"] and c["severity"] == "critical" for c in checks)
    failed_warning = any(c["failed_count"] and c["severity"] == "warning" for c in checks)
    status = "failed" if failed_critical else ("warnings" if failed_warning else "passed")
    quarantined = []
    for dataset in DATASETS:
        kinds = {c["check"]: c["expectation"] for c in gx_checks if c["dataset"] == dataset}
        quarantined += [{"dataset": dataset, "reason": reason, "expectation": kinds.get(reason, ""), "rows": n}
                        for reason, n in sorted((bad.get(dataset) or {}).items())]
    coverage: dict[str, dict] = {}
    for dataset in DATASETS:
        if dataset not in carried:
            coverage[dataset] = measure(dataset, None, day, carried=False)
        elif dataset in first["passed"]:
            coverage[dataset] = _coverage(dataset, landed[dataset], day, carried[dataset])
            if totals.get(dataset):  # rows the gate kept, as the metrics will see them
                coverage[dataset]["rows_validated"] = coverage[dataset]["rows"] - totals[dataset]
    result = {"date": day.isoformat(), "status": status, "checks": checks,
              "quarantined": quarantined, "row_counts": row_counts,
              "symbol_rows": first.get("symbol_rows", {}), "coverage": coverage,
              "engine": "great_expectations (ephemeral context, pandas datasource)",
              "gx_import_seconds": max(r["gx_import_seconds"] for r in records)}
    write_json_atomic(_merge_gx_results(records, merged), qdir / "gx_results.json")
    part_seconds = sum(r["seconds"] for r in records)
    if failed_critical:
        _remove_part_outputs(data_root, day, records)
        result["seconds"] = round(part_seconds + time.perf_counter() - started, 3)
        write_json_atomic(result, qdir / "validation.json")
        raise DataQualityError(result)

    validated: dict[str, list[str]] = {}
    for r in records:
        for dataset, path in r["validated"].items():
            validated.setdefault(dataset, []).append(path)
    validated = {d: validated[d] for d in DATASETS if d in validated}
    for dataset, paths in validated.items():  # other parts' or runs' files: never read again
        for stale in Path(paths[0]).parent.glob("*.parquet"):
            if str(stale) not in paths:
                stale.unlink(missing_ok=True)
    for dataset in DATASETS:
        folder = Path(data_root) / "quarantine" / dataset / f"date={day.isoformat()}"
        pieces = [Path(r["quarantine"][dataset]) for r in records if dataset in r["quarantine"]]
        target = folder / "data.parquet"
        if pieces:
            write_parquet_atomic(pl.concat([pl.read_parquet(p) for p in pieces]).sort("source_row"), target)
        else:
            target.unlink(missing_ok=True)  # a rerun after a fix leaves no stale quarantine behind
        for piece in folder.glob("*.parquet") if folder.exists() else []:
            if piece != target:
                piece.unlink(missing_ok=True)
    rec = [pl.read_parquet(r["records"]) for r in records if r.get("records")]
    combined = (pl.concat(rec).sort(pl.col("dataset").replace_strict(order, return_dtype=pl.Int64), "source_row")
                if rec else pl.DataFrame(schema=QUARANTINE_SCHEMA))
    quarantine_file = write_parquet_atomic(
        combined, data_root / "quarantine" / f"date={day.isoformat()}" / "quarantine.parquet")
    for r in records:
        if r.get("records"):
            Path(r["records"]).unlink(missing_ok=True)
    result |= {"validated": validated, "quarantine": str(quarantine_file),
               "seconds": round(part_seconds + time.perf_counter() - started, 3)}
    write_json_atomic(result, qdir / "validation.json")
    return result


def run_gate(day: dt.date, landed: dict[str, str], data_root: Path,
             quarantine_limits: dict[str, float] | None = None,
             declared: dict[str, dict | None] | None = None, groups: int | None = None) -> dict:
    """Validate the landed day and write the outputs above: gate_parts, validate_part for each
    part in turn, combine_parts (the same code as the split Airflow tasks). Returns
    validation.json's content; raises DataQualityError on a critical failure, including a
    quarantine above a dataset's limit (`quarantine_limits`, share of landed rows; default
    quality.limits).

    `declared`: {dataset: manifest entry or None} for the datasets the source carries (None:
    all 16). A dataset not carried is landed empty, is not validated, and is `absent` in the
    result's `coverage` block ({dataset: venue_risk.coverage.measure(...)}), which the metric
    stage and the report read; a carried dataset without a landed partition is critical.
    `groups`: the number of symbol groups (None: the symbols packed by their landed rows,
    split.packed_groups: bounded memory on a large day); the result does not depend on it."""
    started = time.perf_counter()
    parts = gate_parts(day, landed, groups, data_root, declared)
    for part in parts:
        validate_part(day, landed, data_root, part, declared)
    result = combine_parts(day, data_root, parts, quarantine_limits, declared)
    result["seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(result, _quality_dir(Path(data_root), day) / "validation.json")
    return result
