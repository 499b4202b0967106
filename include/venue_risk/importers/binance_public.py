"""Importer of Binance public-data USD-M futures files (data.binance.vision, daily and monthly,
as `.csv` or the downloaded `.zip`) into the `files` layout.

    venue-risk import binance-public --input FILE... --out ROOT [--date D] [--reference FILE]

File names (the kind and symbol of a file come from its name; several kinds and symbols may be
given at once):

    <SYMBOL>-<kind>-<YYYY-MM-DD | YYYY-MM>.csv|.zip        kind: trades, aggTrades, fundingRate,
                                                                 bookDepth, metrics
    <SYMBOL>-<interval>-<YYYY-MM-DD | YYYY-MM>.csv|.zip    klines, as Binance names them; the kind is
        the nearest folder named markPriceKlines, indexPriceKlines or premiumIndexKlines above
        the file (Binance's layout `.../daily/markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-08-08.zip`)
    <SYMBOL>-<klineKind>-<interval>-<YYYY-MM-DD | YYYY-MM>.csv|.zip
        the same klines renamed outside that layout, e.g. `BTCUSDT-markPriceKlines-1m-2024-08-08.csv`

Columns (a header line is optional: Binance's older files have none, then the columns are taken
in this order):

    trades        id,price,qty,quote_qty,time,is_buyer_maker            -> trades
    aggTrades     agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,
                  is_buyer_maker                                          -> trades
    fundingRate   calc_time,funding_interval_hours,last_funding_rate     -> funding
    *Klines       open_time,open,high,low,close,volume,close_time,quote_volume,count,
                  taker_buy_volume,taker_buy_quote_volume,ignore         -> mark_index / funding
    bookDepth     timestamp,percentage,depth,notional                    -> book_depth
    metrics       create_time,symbol,sum_open_interest,sum_open_interest_value,
                  count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,
                  count_long_short_ratio,sum_taker_long_short_vol_ratio -> market_metrics

Mapping:

* trades: `taker_side` is `sell` when the buyer was the maker (`is_buyer_maker` true), else `buy`;
  `qty` is base quantity. From aggTrades, `trade_id` is Binance's aggregate trade id (one row per
  aggregate: the fills of one taker order at one price); trades and aggTrades of one symbol
  cannot be mixed (their ids are different series). Order ids, accounts and fees are not public.
* Times: epoch milliseconds, or microseconds in newer files, told per file by magnitude (ms
  1e11..1e13, us 1e14..1e16); a value in neither range, or a file mixing them, is an error naming
  the line. bookDepth and metrics times are text `YYYY-MM-DD HH:MM:SS`, UTC.
* funding: one row per settlement; `ts` is `calc_time` rounded to the whole hour (Binance's
  calc_time carries a few ms of jitter, e.g. `...00001`) when within `SNAP_S` seconds of it, else
  kept as is. `premium_index`, `mark_price`, `index_price` come from premiumIndexKlines,
  markPriceKlines, indexPriceKlines of the same symbol given in the same import: the close of the
  kline ending at the settlement (the value at that instant); null without them.
  `interest_rate` is not in these files (null).
* mark_index: one row per kline at its `close_time` (the grain is the kline interval: 1 minute
  for 1m klines), `mark_price` from markPriceKlines' close, `index_price` from indexPriceKlines'
  close (joined on the close time); `last_price`, `best_bid`, `best_ask` are not in these files.
  premiumIndexKlines only fill funding.premium_index.
* book_depth: rows as published: signed percentage bands (Binance: +-0.2, +-1 ... +-5), `depth`
  cumulative base quantity and `notional` cumulative quote from the mid to the band.
* market_metrics: `open_interest` = sum_open_interest (base), `open_interest_value` =
  sum_open_interest_value (quote), `long_short_account_ratio` = count_long_short_ratio (all
  accounts), `taker_buy_sell_ratio` = sum_taker_long_short_vol_ratio; 5-minute rows.
* A key restated (Binance's metrics files repeat some rows) keeps its last row; the count dropped
  goes into the manifest entry.

Days and windows: each dataset is written for every UTC day its rows fall in (a monthly
fundingRate file: each day of the month that has settlements), or only `day` when given. The
covered window of a day is its first to last row time (`layout.write_dataset`'s default).
`instruments` and `risk_tiers` are written for every day written, from the shipped Binance USD-M
reference file or the `reference` override (`importers.reference`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from venue_risk.errors import InputError
from venue_risk.importers.csvread import (FILE_COL, Table, bools, epoch_ts, floats, ints,
                                          open_csvs, read_table, strip_suffixes, summarize,
                                          symbols_written, text_or_epoch_ts, write_days,
                                          write_reference)
from venue_risk.importers.layout import set_venue

FORMAT = "binance-public"
VENUE = "Binance USD-M futures"
SNAP_S = 60  # a calc_time within this many seconds of a whole hour is that hour's settlement

TRADES = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"]
AGG_TRADES = ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id",
              "transact_time", "is_buyer_maker"]
FUNDING = ["calc_time", "funding_interval_hours", "last_funding_rate"]
KLINES = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
          "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore"]
BOOK_DEPTH = ["timestamp", "percentage", "depth", "notional"]
METRICS = ["create_time", "symbol", "sum_open_interest", "sum_open_interest_value",
           "count_toptrader_long_short_ratio", "sum_toptrader_long_short_ratio",
           "count_long_short_ratio", "sum_taker_long_short_vol_ratio"]

#: kind -> (columns in order, columns that may be absent from a header line)
COLUMNS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "trades": (TRADES, ("quote_qty",)),
    "aggTrades": (AGG_TRADES, ("first_trade_id", "last_trade_id")),
    "fundingRate": (FUNDING, ("funding_interval_hours",)),
    "markPriceKlines": (KLINES, tuple(c for c in KLINES if c not in ("open_time", "close", "close_time"))),
    "indexPriceKlines": (KLINES, tuple(c for c in KLINES if c not in ("open_time", "close", "close_time"))),
    "premiumIndexKlines": (KLINES, tuple(c for c in KLINES if c not in ("open_time", "close", "close_time"))),
    "bookDepth": (BOOK_DEPTH, ()),
    "metrics": (METRICS, ("symbol", "count_toptrader_long_short_ratio",
                          "sum_toptrader_long_short_ratio", "count_long_short_ratio",
                          "sum_taker_long_short_vol_ratio", "sum_open_interest_value")),
}
KLINE_KINDS = ("markPriceKlines", "indexPriceKlines", "premiumIndexKlines")
DATASET_OF = {"trades": "trades", "aggTrades": "trades", "fundingRate": "funding",
              "bookDepth": "book_depth", "metrics": "market_metrics"}
UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+(?:_[A-Z0-9]+)?)-(?P<rest>[A-Za-z0-9-]+?)-"
                   r"(?P<period>\d{4}-\d{2}(?:-\d{2})?)$")
_INTERVAL = re.compile(r"^(?P<n>\d+)(?P<unit>[smhdw])$")
NAMING = ("<SYMBOL>-<kind>-<YYYY-MM-DD|YYYY-MM>.csv|.zip with kind one of trades, aggTrades, "
          "fundingRate, bookDepth, metrics; klines as <SYMBOL>-<interval>-<date> under a folder "
          "markPriceKlines/indexPriceKlines/premiumIndexKlines, or <SYMBOL>-<klineKind>-<interval>-<date>")


@dataclass(frozen=True)
class BinanceFile:
    """An input file and what its name says: kind, symbol, period, kline interval."""

    path: Path
    kind: str
    symbol: str
    period: str
    interval: str | None = None


def interval_us(interval: str, where: str) -> int:
    """`1m` -> 60_000_000 (microseconds of a kline interval)."""
    m = _INTERVAL.match(interval)
    if not m:
        raise InputError("mark_index", f"kline interval {interval!r} is not supported", file=where,
                         expected="an interval such as 1s, 1m, 5m, 1h, 1d (not 1mo)")
    return int(m["n"]) * UNITS_S[m["unit"]] * 1_000_000


def classify(path: Path) -> BinanceFile:
    """Kind, symbol and period of a Binance public-data file from its name (see module doc)."""
    path = Path(path)
    m = _NAME.match(strip_suffixes(path.name))
    if not m:
        raise InputError("*", "not a Binance public-data file name", file=str(path), expected=NAMING)
    symbol, rest, period = m["symbol"], m["rest"], m["period"]
    if rest in COLUMNS and rest not in KLINE_KINDS:
        return BinanceFile(path, rest, symbol, period)
    parts = rest.split("-")
    if len(parts) == 2 and parts[0] in KLINE_KINDS and _INTERVAL.match(parts[1]):
        return BinanceFile(path, parts[0], symbol, period, parts[1])
    if len(parts) == 1 and (_INTERVAL.match(rest) or rest == "1mo"):
        folder = next((p for p in reversed(path.resolve().parent.parts) if p in KLINE_KINDS + ("klines",)), None)
        if folder is None:
            raise InputError("mark_index", f"kline file {path.name}: which klines? no folder named "
                             f"{'/'.join(KLINE_KINDS)} above it", file=str(path),
                             expected="Binance's folder layout, or a name such as "
                             f"{symbol}-markPriceKlines-{rest}-{period}.csv")
        if folder == "klines":
            raise InputError("trades", "trade klines carry no canonical dataset (import the trades or "
                             "aggTrades files instead)", file=str(path), expected=NAMING)
        return BinanceFile(path, folder, symbol, period, rest)
    raise InputError("*", f"unknown Binance public-data kind {rest!r}", file=str(path), expected=NAMING)


def _table(src, kind: str) -> Table:
    columns, optional = COLUMNS[kind]
    dataset = DATASET_OF.get(kind, "mark_index" if kind != "premiumIndexKlines" else "funding")
    return read_table(src, dataset, columns, optional=optional)


def parse_trades(table: Table, symbol: str, aggregated: bool) -> pl.DataFrame:
    """trades rows of a trades or aggTrades table."""
    id_col, qty_col, time_col = (("agg_trade_id", "quantity", "transact_time") if aggregated
                                 else ("id", "qty", "time"))
    buyer_maker = bools(table, "is_buyer_maker")
    return pl.DataFrame({
        "ts": epoch_ts(table, time_col), "symbol": symbol, "trade_id": ints(table, id_col),
        "price": floats(table, "price"), "qty": floats(table, qty_col),
        # the buyer made the market: the taker sold
        "taker_side": buyer_maker.replace_strict({True: "sell", False: "buy"}, return_dtype=pl.String)})


def snap_to_hour(ts: pl.Series, tolerance_s: int = SNAP_S) -> pl.Series:
    """Each time rounded to the nearest whole hour when within `tolerance_s` of it, else as is."""
    rounded = ts.dt.round("1h")
    near = (ts - rounded).abs() <= dt.timedelta(seconds=tolerance_s)
    return pl.select(pl.when(near).then(rounded).otherwise(ts)).to_series().alias(ts.name)


def parse_funding(table: Table, symbol: str) -> pl.DataFrame:
    """funding rows (ts, symbol, funding_rate) of a fundingRate table; ts snapped to the hour."""
    calc = epoch_ts(table, "calc_time")
    return pl.DataFrame({"ts": snap_to_hour(calc), "symbol": symbol,
                         "funding_rate": floats(table, "last_funding_rate"),
                         "_calc": calc})


def parse_klines(table: Table, symbol: str, step_us: int) -> pl.DataFrame:
    """symbol, ts (close_time), end (open_time + interval: the instant the close is the value
    of), close."""
    open_ts = epoch_ts(table, "open_time")
    return pl.DataFrame({"symbol": symbol, "ts": epoch_ts(table, "close_time"),
                         "end": open_ts + dt.timedelta(microseconds=step_us),
                         "close": floats(table, "close")})


def parse_book_depth(table: Table, symbol: str) -> pl.DataFrame:
    """book_depth rows of a bookDepth table (bands as published)."""
    return pl.DataFrame({"ts": text_or_epoch_ts(table, "timestamp"), "symbol": symbol,
                         "percentage": floats(table, "percentage"), "depth": floats(table, "depth"),
                         "notional": floats(table, "notional")})


def parse_metrics(table: Table, symbol: str) -> pl.DataFrame:
    """market_metrics rows of a metrics table; its `symbol` column must match the file name's."""
    named = table.frame["symbol"].drop_nulls().unique().to_list()
    other = [s for s in named if s.strip() and s.strip() != symbol]
    if other:
        row = int((table.frame["symbol"] == other[0]).arg_true()[0])
        raise table.error(f"symbol {other[0]!r} differs from the file name's {symbol!r}", row=row,
                          column="symbol", expected=f"{symbol} on every line")
    optional = {"open_interest_value": "sum_open_interest_value",
                "long_short_account_ratio": "count_long_short_ratio",
                "taker_buy_sell_ratio": "sum_taker_long_short_vol_ratio"}
    return pl.DataFrame({
        "ts": text_or_epoch_ts(table, "create_time"), "symbol": symbol,
        "open_interest": floats(table, "sum_open_interest"),
        # a column the file lacks stays out of the frame: the manifest then declares it missing
        **{col: floats(table, src, need=False) for col, src in optional.items() if src not in table.absent}})


def read_file(f: BinanceFile) -> pl.DataFrame:
    """The rows of one input file (all its CSV members), tagged with their source in `_file`."""
    frames = []
    for src in open_csvs(f.path):
        table = _table(src, f.kind)
        if f.kind in ("trades", "aggTrades"):
            frame = parse_trades(table, f.symbol, f.kind == "aggTrades")
        elif f.kind == "fundingRate":
            frame = parse_funding(table, f.symbol)
        elif f.kind in KLINE_KINDS:
            frame = parse_klines(table, f.symbol, interval_us(f.interval or "", str(f.path)))
        elif f.kind == "bookDepth":
            frame = parse_book_depth(table, f.symbol)
        else:
            frame = parse_metrics(table, f.symbol)
        frames.append(frame.with_columns(pl.lit(src.name).alias(FILE_COL)))
    return pl.concat(frames, how="diagonal")


def mark_index_rows(mark: pl.DataFrame | None, index: pl.DataFrame | None) -> pl.DataFrame | None:
    """mark_index from mark- and index-price kline closes, joined on (symbol, close time)."""
    parts = [k.select("ts", "symbol", pl.col("close").alias(col), pl.col(FILE_COL).alias(f"{FILE_COL}{col}"))
             for k, col in ((mark, "mark_price"), (index, "index_price")) if k is not None]
    if not parts:
        return None
    out = parts[0]
    for other in parts[1:]:
        out = out.join(other, on=["ts", "symbol"], how="full", coalesce=True)
    files = [c for c in out.columns if c.startswith(FILE_COL)]
    return out.with_columns(pl.coalesce(files).alias(FILE_COL)).drop([c for c in files if c != FILE_COL])


def enrich_funding(funding: pl.DataFrame, klines: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """funding with premium_index / mark_price / index_price from the close of the kline of each
    kind ending at the settlement (null where no such kline was given)."""
    for kind, col in (("premiumIndexKlines", "premium_index"), ("markPriceKlines", "mark_price"),
                      ("indexPriceKlines", "index_price")):
        if kind in klines:
            k = klines[kind].select("symbol", pl.col("end").alias("ts"), pl.col("close").alias(col))
            funding = funding.join(k.unique(["symbol", "ts"], keep="last"), on=["symbol", "ts"], how="left")
    return funding


def _check_one_interval(files: list[BinanceFile]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for f in files:
        if f.interval is None:
            continue
        prev = seen.setdefault((f.kind, f.symbol), f.interval)
        if prev != f.interval:
            raise InputError("mark_index", f"{f.kind} of {f.symbol} given at two intervals ({prev} and "
                             f"{f.interval})", file=str(f.path), expected="one kline interval per kind and symbol")


def _check_trade_kinds(files: list[BinanceFile]) -> None:
    kinds: dict[str, set[str]] = {}
    for f in files:
        if f.kind in ("trades", "aggTrades"):
            kinds.setdefault(f.symbol, set()).add(f.kind)
    mixed = sorted(s for s, k in kinds.items() if len(k) > 1)
    if mixed:
        raise InputError("trades", f"both trades and aggTrades files given for {mixed}: their ids are "
                         "different series and the rows would count each trade twice",
                         expected="trades or aggTrades of a symbol, not both")


NOTES = {
    "trades": "Binance public trades/aggTrades: taker_side = sell when is_buyer_maker; from aggTrades "
              "trade_id is the aggregate trade id (one row per aggregate); order ids, accounts, fees "
              "and liquidation ids are not public",
    "funding": "Binance fundingRate: one row per settlement, ts = calc_time rounded to the hour; "
               "premium_index/mark_price/index_price from the kline closing at the settlement when "
               "premiumIndex/markPrice/indexPrice klines were imported with it, else null; "
               "interest_rate not published (null)",
    "mark_index": "Binance mark/index price klines: one row per kline at its close_time (grain = "
                  "the kline interval); last_price, best_bid, best_ask not in these files (null)",
    "book_depth": "Binance bookDepth: bands as published (+-0.2, +-1..+-5 %), depth cumulative "
                  "base quantity, notional cumulative quote",
    "market_metrics": "Binance metrics (5 min): open_interest = sum_open_interest, "
                      "open_interest_value = sum_open_interest_value, long_short_account_ratio = "
                      "count_long_short_ratio, taker_buy_sell_ratio = sum_taker_long_short_vol_ratio",
}


def import_files(inputs: list[Path], out: Path, day: dt.date | None, reference: Path | None) -> dict:
    """Import Binance public-data files into the `files` layout at `out` (see the module doc).
    Returns the summary (`csvread.summarize`): per dataset the rows and days written, the
    symbols, per file its kind and rows, notes."""
    if not inputs:
        raise ValueError("binance-public: no input files given")
    out = Path(out)
    files = [classify(Path(p)) for p in inputs]
    _check_one_interval(files)
    _check_trade_kinds(files)
    by_kind: dict[str, list[pl.DataFrame]] = {}
    file_rows = []
    for f in files:
        frame = read_file(f)
        by_kind.setdefault(f.kind, []).append(frame)
        file_rows.append({"file": str(f.path), "kind": f.kind, "symbol": f.symbol, "rows": frame.height})
    kinds = {k: pl.concat(v, how="diagonal") for k, v in by_kind.items()}
    klines = {k: kinds[k] for k in KLINE_KINDS if k in kinds}
    if "premiumIndexKlines" in kinds:
        with_funding = set(kinds["fundingRate"]["symbol"].unique()) if "fundingRate" in kinds else set()
        alone = sorted(set(kinds["premiumIndexKlines"]["symbol"].unique()) - with_funding)
        if alone:
            raise InputError("funding", f"premiumIndexKlines of {alone} only fill funding.premium_index: "
                             "give the symbol's fundingRate file in the same import",
                             expected="a fundingRate file with its premiumIndexKlines")

    datasets: dict[str, pl.DataFrame] = {}
    trade_parts = [kinds[k] for k in ("trades", "aggTrades") if k in kinds]
    if trade_parts:
        datasets["trades"] = pl.concat(trade_parts, how="vertical")
    if "fundingRate" in kinds:
        datasets["funding"] = enrich_funding(kinds["fundingRate"].drop("_calc"), klines)
    mark_index = mark_index_rows(klines.get("markPriceKlines"), klines.get("indexPriceKlines"))
    if mark_index is not None:
        datasets["mark_index"] = mark_index
    if "bookDepth" in kinds:
        datasets["book_depth"] = kinds["bookDepth"]
    if "metrics" in kinds:
        datasets["market_metrics"] = kinds["metrics"]

    written: dict[str, dict[dt.date, int]] = {}
    notes = []
    for name, frame in datasets.items():
        extra = None
        if name == "funding":
            offset = (kinds["fundingRate"]["ts"] - kinds["fundingRate"]["_calc"]).abs().max()
            extra = {"calc_time_max_offset_ms": offset.total_seconds() * 1000 if offset is not None else None}
            absent = [k for k in ("premiumIndexKlines", "markPriceKlines", "indexPriceKlines") if k not in klines]
            if absent:
                notes.append(f"funding: no {', '.join(absent)} given: their columns are null (declared missing)")
        per_day = write_days(out, name, frame, written_by=FORMAT, only_day=day, note=NOTES[name], extra=extra)
        if per_day:
            written[name] = per_day
    if not written:
        span = {n: (str(f["ts"].min()), str(f["ts"].max())) for n, f in datasets.items() if f.height}
        raise ValueError("binance-public: no rows written" + (f" for {day}" if day else "")
                         + f"; the inputs span {span or 'no rows'}")
    symbols = symbols_written(datasets, written)
    all_days = sorted({d for per_day in written.values() for d in per_day})
    ref = write_reference(out, symbols, all_days, written_by=FORMAT, reference=reference)
    set_venue(out, VENUE)
    return summarize(FORMAT, out, written, ref, symbols=symbols, files=file_rows, notes=notes)
