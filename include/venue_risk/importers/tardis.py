"""Importer of Tardis.dev downloadable CSV datasets (plain `.csv` or `.csv.gz`) into the `files`
layout.

    venue-risk import tardis --input FILE... --out ROOT [--date D] [--reference FILE]

Data type of a file: from its name as the Tardis clients save it,
`<exchange>_<data_type>_<YYYY-MM-DD>_<SYMBOL>.csv.gz` (or without the date:
`binance-futures_book_snapshot_5_BTCUSDT.csv`), data_type one of `trades`, `derivative_ticker`,
`liquidations`, `book_snapshot_<N>`; for another name, from the header: `funding_timestamp` makes
a derivative_ticker, `asks[0].price` a book snapshot (N = its levels). trades and liquidations
have the same columns, so those files must be named. The symbol of a row is its `symbol` column;
one import holds one exchange. Times are microseconds since the epoch, UTC (a file in another
unit is an error naming the line); rows are placed by the exchange's `timestamp`
(`local_timestamp`, the capture's receive time, is not used).

Columns and mapping:

* trades `exchange,symbol,timestamp,local_timestamp,id,side,price,amount` -> trades: `side` is
  the taker's side (`unknown` -> null, counted in the manifest entry), `qty` = amount; the ids
  must be integers (as Binance's are).
* liquidations (same columns) -> liquidations with what the public feed gives: liquidation_id
  = id, ts_trigger = ts_done = timestamp, side (the liquidation order's side: sell closes a long),
  qty = filled_qty = amount. The feed's `price` (the liquidation order's price: neither the
  mark, the liquidation nor the bankruptcy price) has no canonical column and is dropped;
  account, path, bankruptcy_price and the other columns stay null and are listed in the
  manifest entry's `missing_columns`. Where the feed gives no id (Binance's forceOrder stream has
  none) or a non-integer one, liquidation_id = timestamp_us x 1000 + n (n = the row's order among
  rows of that symbol and timestamp), and the entry says so.
* derivative_ticker `exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,
  predicted_funding_rate,open_interest,last_price,index_price,mark_price` ->
  - mark_index, one row per second that has rows (ts = the second's start): mark_price,
    index_price, last_price = the last non-empty value in the second; best_bid/best_ask from the
    last book snapshot of that second when a book_snapshot file of the symbol is imported too,
    else null;
  - market_metrics, one row per 5 minutes (ts = the bucket's start): open_interest = the last
    value in the bucket (base units), open_interest_value = that times the last mark price in the
    bucket (derived); the long/short and taker ratios are not in the feed (null);
  - funding settlements where they can be identified: `funding_timestamp` is the next settlement
    time; when it moves from T to a later time on a row at or after T, a settlement at T is
    written with funding_rate = the last `funding_rate` announced for T, provided that
    announcement is within `SETTLEMENT_TOLERANCE_S` of T (a feed gap around the settlement
    leaves it out), and mark_price / index_price = the last values at or before T;
    premium_index and interest_rate are not in the feed (null). Settlements before the file's
    first row or after its last are not identified.
* book_snapshot_N `exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,
  bids[0].price,bids[0].amount,...` -> book_depth from the last snapshot in each minute (ts =
  that snapshot's time), mid = (best bid + best ask) / 2, bands of `BANDS` percent: depth = the
  summed amounts (base) of the levels within the band, notional = summed price x amount (quote).
  With N levels the far bands are out of reach: a snapshot gives the bands out to the first one
  at or beyond its deepest level on either side, the same bands on both sides; the outermost
  written band (and any band beyond a side's deepest level) is a lower bound. Snapshots without
  both a bid and an ask are skipped.

Days and windows as in `binance_public`: every UTC day with rows (or `day` only), the window of a
day its first to last row; `instruments` and `risk_tiers` for each day written, from the shipped
Binance USD-M reference or the `reference` override.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from venue_risk.errors import InputError
from venue_risk.importers.csvread import (FILE_COL, Table, epoch_ts, epoch_unit, floats, ints,
                                          open_csvs, read_table, required, strip_suffixes,
                                          summarize, symbols_written, write_days, write_reference)
from venue_risk.importers.layout import set_venue
from venue_risk.schema import DATASETS
from venue_risk.simulate.config import BANDS as SIM_BANDS

FORMAT = "tardis"
#: book_depth bands, percent from the mid (the simulated venue's bands)
BANDS: tuple[float, ...] = tuple(float(b) for b in SIM_BANDS)
SETTLEMENT_TOLERANCE_S = 60.0
VENUES = {"binance-futures": "Binance USD-M futures"}

BASE = ["exchange", "symbol", "timestamp", "local_timestamp"]
TRADES = BASE + ["id", "side", "price", "amount"]
TICKER = BASE + ["funding_timestamp", "funding_rate", "predicted_funding_rate", "open_interest",
                 "last_price", "index_price", "mark_price"]
KINDS = ("trades", "liquidations", "derivative_ticker", "book_snapshot")
UNSUPPORTED = ("incremental_book_L2", "quotes", "book_ticker", "options_chain")
_NAME = re.compile(r"^(?P<exchange>[a-z0-9-]+)_(?P<type>trades|liquidations|derivative_ticker|"
                   r"book_snapshot_(?P<levels>\d+)|incremental_book_L2|quotes|book_ticker|options_chain)"
                   r"_(?:(?P<date>\d{4}-\d{2}-\d{2})_)?(?P<symbol>.+)$")
NAMING = ("<exchange>_<data_type>_<YYYY-MM-DD>_<SYMBOL>.csv[.gz] or <exchange>_<data_type>_<SYMBOL>.csv[.gz], "
          "data_type one of trades, liquidations, derivative_ticker, book_snapshot_<N>")


@dataclass(frozen=True)
class TardisFile:
    """An input document and its Tardis data type (`book_snapshot` with its `levels`)."""

    name: str
    kind: str
    levels: int | None = None


def kind_from_name(path: Path) -> tuple[str, int | None] | None:
    """(data type, levels) from a Tardis file name, or None when the name does not say."""
    m = _NAME.match(strip_suffixes(Path(path).name))
    if not m:
        return None
    kind = m["type"]
    if kind in UNSUPPORTED:
        raise InputError("*", f"Tardis data type {kind!r} is not imported", file=str(path),
                         expected="trades, liquidations, derivative_ticker or book_snapshot_<N>")
    if kind.startswith("book_snapshot_"):
        return "book_snapshot", int(m["levels"])
    return kind, None


def kind_from_header(header: list[str], where: str) -> tuple[str, int | None]:
    """(data type, levels) from a header line (see module doc)."""
    if "funding_timestamp" in header:
        return "derivative_ticker", None
    levels = sum(1 for h in header if re.fullmatch(r"asks\[\d+\]\.price", h))
    if levels:
        return "book_snapshot", levels
    if set(TRADES) <= set(header):
        raise InputError("*", "trades and liquidations files have the same columns: the name must say "
                         "which", file=where, expected=NAMING)
    raise InputError("*", f"not a Tardis CSV this importer reads (header {','.join(header)[:200]})",
                     file=where, expected=NAMING)


def snapshot_columns(levels: int) -> list[str]:
    """`asks[0].price, asks[0].amount, bids[0].price, bids[0].amount, ...` for `levels` levels."""
    return [f"{side}[{i}].{f}" for i in range(levels) for side in ("asks", "bids") for f in ("price", "amount")]


def _base(table: Table) -> dict[str, pl.Series]:
    return {"ts": epoch_ts(table, "timestamp", allowed=("us",)),
            "symbol": required(table, "symbol")}


def parse_trades(table: Table) -> tuple[pl.DataFrame, int]:
    """trades rows and the number of rows whose side is `unknown` (taker_side null)."""
    side = required(table, "side").str.to_lowercase()
    bad = (~side.is_in(["buy", "sell", "unknown"])).arg_true()
    if len(bad):
        raise table.error(f"side {side[int(bad[0])]!r}", row=int(bad[0]), column="side",
                          expected="buy, sell or unknown")
    frame = pl.DataFrame({**_base(table), "trade_id": ints(table, "id"), "price": floats(table, "price"),
                          "qty": floats(table, "amount"),
                          "taker_side": side.replace("unknown", None)})
    return frame, int((side == "unknown").sum())


def parse_liquidations(table: Table) -> tuple[pl.DataFrame, bool]:
    """liquidations rows (the columns the feed gives) and whether the ids were synthesized."""
    side = required(table, "side").str.to_lowercase()
    bad = (~side.is_in(["buy", "sell"])).arg_true()
    if len(bad):
        raise table.error(f"side {side[int(bad[0])]!r}", row=int(bad[0]), column="side",
                          expected="buy or sell (the liquidation order's side)")
    base = _base(table)
    amount = floats(table, "amount")
    ids = table.frame["id"].str.strip_chars().cast(pl.Int64, strict=False)
    synthesized = bool(ids.null_count())
    frame = pl.DataFrame({"liquidation_id": ids, "ts_trigger": base["ts"], "ts_done": base["ts"],
                          "symbol": base["symbol"], "side": side, "qty": amount, "filled_qty": amount})
    if synthesized:
        us = frame["ts_trigger"].dt.epoch("us")
        n = frame.select(pl.int_range(pl.len()).over("symbol", "ts_trigger")).to_series()
        frame = frame.with_columns(liquidation_id=us * 1000 + n)
    return frame, synthesized


def parse_ticker(table: Table) -> pl.DataFrame:
    """derivative_ticker rows: ts, symbol, funding_ts, funding_rate, open_interest, last_price,
    index_price, mark_price (empty values null)."""
    ft = ints(table, "funding_timestamp", need=False)
    ft = pl.select(pl.when(ft > 0).then(ft)).to_series()  # 0: no announced settlement
    epoch_unit(ft, table, "funding_timestamp", allowed=("us",))
    return pl.DataFrame({
        **_base(table),
        "funding_ts": ft.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        **{c: floats(table, c, need=False) for c in
           ("funding_rate", "open_interest", "last_price", "index_price", "mark_price")}})


def parse_snapshots(table: Table, levels: int) -> pl.DataFrame:
    """Book snapshots with a valid best bid and ask: ts, symbol, asks (price, amount) and bids
    as lists of `levels` entries (NaN where the snapshot has fewer levels)."""
    base = _base(table)
    cols = {c: floats(table, c, need=False).fill_null(float("nan")) for c in snapshot_columns(levels)}
    side = lambda s, f: pl.concat_list([cols[f"{s}[{i}].{f}"] for i in range(levels)])  # noqa: E731
    frame = pl.DataFrame(base).with_columns(ask_p=side("asks", "price"), ask_a=side("asks", "amount"),
                                           bid_p=side("bids", "price"), bid_a=side("bids", "amount"))
    valid = cols["asks[0].price"].is_not_nan() & cols["bids[0].price"].is_not_nan()
    return frame.filter(valid)


def last_per(frame: pl.DataFrame, every: str, by: str = "ts") -> pl.DataFrame:
    """The last row (in time order, then file order) per symbol and `every` bucket of `by`."""
    return (frame.with_row_index("_n").sort(by, "_n")
            .with_columns(pl.col(by).dt.truncate(every).alias("_bucket"))
            .unique(["symbol", "_bucket"], keep="last", maintain_order=True).drop("_n"))


def depth_bands(ask_p: np.ndarray, ask_a: np.ndarray, bid_p: np.ndarray, bid_a: np.ndarray,
                bands: tuple[float, ...] = BANDS) -> list[list[tuple[float, float, float]]]:
    """Per snapshot (rows of the level matrices, NaN = no level): [(signed percentage, depth,
    notional), ...] for the bands it reaches (module doc): asks within +x % of the mid, bids
    within -x %."""
    out = []
    for ap, aa, bp, ba in zip(ask_p, ask_a, bid_p, bid_a):
        mid = (ap[0] + bp[0]) / 2.0
        deepest = max(np.nanmax(ap) / mid - 1.0, 1.0 - np.nanmin(bp) / mid) * 100.0
        reach = next((i for i, b in enumerate(bands) if b >= deepest - 1e-12), len(bands) - 1)
        rows = []
        for b in bands[: reach + 1]:
            for sgn, p, a in ((-1.0, bp, ba), (1.0, ap, aa)):
                within = (p <= mid * (1 + b / 100)) if sgn > 0 else (p >= mid * (1 - b / 100))
                within &= ~np.isnan(p) & ~np.isnan(a)
                rows.append((sgn * b, float(a[within].sum()), float((p[within] * a[within]).sum())))
        out.append(sorted(rows))
    return out


def book_depth_rows(snaps: pl.DataFrame) -> pl.DataFrame:
    """book_depth from the last snapshot per symbol and minute."""
    last = last_per(snaps, "1m")
    mat = {c: np.array(last[c].to_list(), dtype=float).reshape(last.height, -1)
           for c in ("ask_p", "ask_a", "bid_p", "bid_a")}
    bands = depth_bands(mat["ask_p"], mat["ask_a"], mat["bid_p"], mat["bid_a"])
    n = [len(b) for b in bands]
    flat = [r for b in bands for r in b]
    return pl.DataFrame({
        "ts": last["ts"].gather(np.repeat(np.arange(last.height), n)),
        "symbol": last["symbol"].gather(np.repeat(np.arange(last.height), n)),
        "percentage": [r[0] for r in flat], "depth": [r[1] for r in flat],
        "notional": [r[2] for r in flat],
        FILE_COL: last[FILE_COL].gather(np.repeat(np.arange(last.height), n))},
        schema_overrides={"percentage": pl.Float64, "depth": pl.Float64, "notional": pl.Float64})


def mark_index_rows(ticker: pl.DataFrame, snaps: pl.DataFrame | None) -> pl.DataFrame:
    """One row per symbol and second of the ticker: last non-empty mark/index/last price, and the
    best bid/ask of the second's last snapshot when snapshots of the symbol are given."""
    cols = ("mark_price", "index_price", "last_price")
    out = (ticker.with_row_index("_n").sort("ts", "_n")
           .group_by("symbol", pl.col("ts").dt.truncate("1s"), maintain_order=True)
           .agg([pl.col(c).drop_nulls().last() for c in cols] + [pl.col(FILE_COL).last()])
           .filter(pl.any_horizontal([pl.col(c).is_not_null() for c in cols])))
    if snaps is not None and not snaps.is_empty():
        top = (last_per(snaps, "1s")
               .select("symbol", pl.col("_bucket").alias("ts"),
                       pl.col("bid_p").list.first().alias("best_bid"),
                       pl.col("ask_p").list.first().alias("best_ask")))
        out = out.join(top, on=["symbol", "ts"], how="left")
    return out


def market_metrics_rows(ticker: pl.DataFrame) -> pl.DataFrame:
    """One row per symbol and 5 minutes: the last open interest, times the last mark price."""
    return (ticker.with_row_index("_n").sort("ts", "_n")
            .group_by("symbol", pl.col("ts").dt.truncate("5m"), maintain_order=True)
            .agg(pl.col("open_interest").drop_nulls().last(), pl.col("mark_price").drop_nulls().last(),
                 pl.col(FILE_COL).last())
            .filter(pl.col("open_interest").is_not_null())
            .with_columns(open_interest_value=pl.col("open_interest") * pl.col("mark_price"))
            .drop("mark_price"))


def funding_rows(ticker: pl.DataFrame, tolerance_s: float = SETTLEMENT_TOLERANCE_S) -> pl.DataFrame:
    """Settlements identified in the ticker (module doc): ts, symbol, funding_rate, mark_price,
    index_price."""
    rows = []
    tol = dt.timedelta(seconds=tolerance_s)
    for (symbol,), g in ticker.with_row_index("_n").sort("ts", "_n").partition_by(
            "symbol", as_dict=True, maintain_order=True).items():
        ann = g.filter(pl.col("funding_ts").is_not_null())
        ft, ts = ann["funding_ts"].to_list(), ann["ts"].to_list()
        for i in range(1, len(ft)):
            settle = ft[i - 1]
            if not (ft[i] > settle and ts[i] >= settle):
                continue
            before = g.filter((pl.col("funding_ts") == settle) & (pl.col("ts") <= settle)
                              & pl.col("funding_rate").is_not_null())
            if before.is_empty() or settle - before["ts"][-1] > tol:
                continue
            upto = g.filter(pl.col("ts") <= settle)
            last = lambda c: upto[c].drop_nulls()[-1] if upto[c].drop_nulls().len() else None  # noqa: E731
            rows.append({"ts": settle, "symbol": symbol, "funding_rate": before["funding_rate"][-1],
                         "mark_price": last("mark_price"), "index_price": last("index_price"),
                         FILE_COL: before[FILE_COL][-1]})
    schema = {"ts": pl.Datetime("us", "UTC"), "symbol": pl.String, "funding_rate": pl.Float64,
              "mark_price": pl.Float64, "index_price": pl.Float64, FILE_COL: pl.String}
    return pl.DataFrame(rows, schema=schema).unique(["ts", "symbol"], keep="first", maintain_order=True)


def read_input(path: Path) -> list[tuple[TardisFile, Table]]:
    """The documents of one input file with their data type, read as tables."""
    named = kind_from_name(path)
    out = []
    for src in open_csvs(path):
        header = [h.strip() for h in (src.data.split(b"\n", 1)[0].decode("utf-8", "replace").split(","))]
        kind, levels = named or kind_from_header(header, src.name)
        if kind == "book_snapshot":
            levels = levels or 0
            have = sum(1 for h in header if re.fullmatch(r"asks\[\d+\]\.price", h))
            if have and have != levels and named:
                raise InputError("book_depth", f"file name says {levels} levels, the header has {have}",
                                 file=src.name, expected=f"{levels} levels asks[0..{levels - 1}]")
            cols, dataset = BASE + snapshot_columns(levels), "book_depth"
        else:
            cols = TICKER if kind == "derivative_ticker" else TRADES
            dataset = {"trades": "trades", "liquidations": "liquidations",
                       "derivative_ticker": "mark_index"}[kind]
        table = read_table(src, dataset, cols, header_required=True,
                           optional=("local_timestamp", "exchange", "predicted_funding_rate"))
        out.append((TardisFile(src.name, kind, levels), table))
    return out


NOTES = {
    "trades": "Tardis trades: taker_side = the feed's side (unknown -> null); order ids, accounts, "
              "fees and liquidation ids are not public",
    "liquidations": "Tardis liquidations (public feed): liquidation_id = id (synthesized as "
                    "timestamp_us x 1000 + n where the feed has none), ts_trigger = ts_done = "
                    "timestamp, qty = filled_qty = amount, side = the liquidation order's side; the "
                    "feed's price (the order's price, not a mark/liquidation/bankruptcy price) is "
                    "dropped; account, path, prices, margin, fee, insurance fund not public",
    "mark_index": "Tardis derivative_ticker sampled per second (last value in each second, ts = the "
                  "second's start); best_bid/best_ask from the second's last book snapshot when one "
                  "was imported for the symbol",
    "market_metrics": "Tardis derivative_ticker per 5 minutes: open_interest = last value in the "
                      "bucket; open_interest_value = that x the bucket's last mark price (derived); "
                      "ratios not in the feed",
    "funding": "Tardis derivative_ticker: settlement at T when funding_timestamp moves past T; "
               "funding_rate = the last rate announced for T (within 60 s of T), mark/index = last "
               "values at or before T; premium_index, interest_rate not in the feed",
    "book_depth": "Tardis book_snapshot_N: last snapshot per minute, bands of the percentages "
                  "0.2..5 out to the first band at or beyond the deepest level (same bands on both "
                  "sides); the outermost band, and any band beyond a side's deepest level, is a "
                  "lower bound",
}


def import_files(inputs: list[Path], out: Path, day: dt.date | None, reference: Path | None) -> dict:
    """Import Tardis.dev CSV files into the `files` layout at `out` (see the module doc).
    Returns the summary (`csvread.summarize`): per dataset the rows and days written, the
    symbols, the exchange, per file its type and rows, notes."""
    if not inputs:
        raise ValueError("tardis: no input files given")
    out = Path(out)
    parts: dict[str, list[pl.DataFrame]] = {}
    extras: dict[str, dict] = {}
    file_rows, exchanges, notes = [], set(), []
    levels_seen: set[int] = set()
    for path in inputs:
        for f, table in read_input(Path(path)):
            exchanges |= set(table.frame["exchange"].drop_nulls().unique().to_list())
            if f.kind == "trades":
                frame, unknown = parse_trades(table)
                if unknown:
                    extras.setdefault("trades", {})["taker_side_unknown"] = \
                        extras.get("trades", {}).get("taker_side_unknown", 0) + unknown
            elif f.kind == "liquidations":
                frame, synthesized = parse_liquidations(table)
                if synthesized:
                    extras.setdefault("liquidations", {})["liquidation_id"] = \
                        "synthesized: timestamp_us x 1000 + n (the feed gives no integer id)"
                    notes.append(f"liquidations: {f.name} has no integer ids: liquidation_id synthesized")
            elif f.kind == "derivative_ticker":
                frame = parse_ticker(table)
            else:
                frame = parse_snapshots(table, f.levels or 0)
                levels_seen.add(f.levels or 0)
            parts.setdefault(f.kind, []).append(frame.with_columns(pl.lit(f.name).alias(FILE_COL)))
            file_rows.append({"file": f.name, "kind": f.kind + (f"_{f.levels}" if f.levels else ""),
                              "rows": table.frame.height, "rows_used": frame.height})
    if len(exchanges) > 1:
        raise InputError("*", f"inputs from several exchanges {sorted(exchanges)}",
                         expected="one exchange per import (one venue per root)")
    kinds = {k: pl.concat(v, how="vertical") for k, v in parts.items()}

    datasets: dict[str, pl.DataFrame] = {}
    if "trades" in kinds:
        datasets["trades"] = kinds["trades"]
    if "liquidations" in kinds:
        datasets["liquidations"] = kinds["liquidations"]
        carried = set(kinds["liquidations"].columns)
        extras.setdefault("liquidations", {})["missing_columns"] = [
            c for c in DATASETS["liquidations"].columns if c not in carried]
    snaps = kinds.get("book_snapshot")
    if snaps is not None and not snaps.is_empty():
        depth = book_depth_rows(snaps)
        datasets["book_depth"] = depth
        extras["book_depth"] = {"levels": sorted(levels_seen), "snapshots_read": snaps.height,
                                "snapshots_used": depth.select("ts", "symbol").n_unique(),
                                "max_band_pct": float(depth["percentage"].max())}
        notes.append(f"book_depth: {snaps.height} snapshot(s) read, the last of each minute used "
                     f"({extras['book_depth']['snapshots_used']}); bands out to "
                     f"{extras['book_depth']['max_band_pct']} % (levels {sorted(levels_seen)})")
    if "derivative_ticker" in kinds:
        ticker = kinds["derivative_ticker"]
        with_ticker = set(ticker["symbol"].unique().to_list())
        book = snaps.filter(pl.col("symbol").is_in(list(with_ticker))) if snaps is not None else None
        datasets["mark_index"] = mark_index_rows(ticker, book)
        mm = market_metrics_rows(ticker)
        if not mm.is_empty():
            datasets["market_metrics"] = mm
        fund = funding_rows(ticker)
        if not fund.is_empty():
            datasets["funding"] = fund
        else:
            notes.append("funding: no settlement identified in the derivative_ticker rows")

    written: dict[str, dict[dt.date, int]] = {}
    for name, frame in datasets.items():
        if frame.is_empty():
            continue
        per_day = write_days(out, name, frame, written_by=FORMAT, only_day=day, note=NOTES[name],
                             extra=extras.get(name))
        if per_day:
            written[name] = per_day
    if not written:
        raise ValueError("tardis: no rows written" + (f" for {day}" if day else "")
                         + f" from {[r['file'] for r in file_rows]}")
    symbols = symbols_written(datasets, written)
    all_days = sorted({d for per_day in written.values() for d in per_day})
    ref = write_reference(out, symbols, all_days, written_by=FORMAT, reference=reference)
    exchange = next(iter(exchanges), None)
    if exchange:
        set_venue(out, VENUES.get(exchange, f"{exchange} (Tardis.dev)"))
    return summarize(FORMAT, out, written, ref, symbols=symbols, exchange=exchange, files=file_rows,
                     notes=notes)
