"""Slippage of liquidation executions, per liquidation path (DESIGN 4.1).

When a position is liquidated the venue sends a liquidation order; its fills are the trades
that carry the liquidation's id. For each liquidation:

- VWAP = sum(price x qty) / sum(qty) over its fills.
- Slippage in basis points, measured against the mark price at the trigger, signed so that a
  positive number is adverse to the liquidated account: for a sell (closing a long)
  slippage_bps = (mark - VWAP) / mark x 10,000; for a buy (closing a short)
  slippage_bps = (VWAP - mark) / mark x 10,000.
- Fill ratio = filled quantity / order quantity; time to complete = ts_done - ts_trigger.
- Fills beyond the bankruptcy price (below it for a sell, above it for a buy) are the fills the
  account's equity could not pay for: their quantity, and the shortfall
  sum(|fill price - bankruptcy price| x fill qty) that the insurance fund absorbs.
- Size to depth = order notional (qty x mark at trigger) / book notional within 1 % of the mid
  on the side the order consumes (the bids for a sell, the asks for a buy), from the latest
  book snapshot at or before the trigger. Liquidations are binned on it
  (<0.1, 0.1-0.5, 0.5-1, 1-2, >=2 times the 1 % depth) so paths are compared on like-for-like
  order sizes: a path that only ever handles small orders looks cheap for that reason alone.

Per date x symbol x path the report shows the count, filled notional, the notional-weighted
mean, percentiles (p50, p95, p99), the maximum and the 95 % expected shortfall of slippage, the
fill ratio, time to complete and the share of filled quantity beyond the bankruptcy price.
A liquidation with no fill keeps its row (its slippage is undefined, not zero).

Known limits: Slippage is measured against the mark at the trigger, so a liquidation that fills
over seconds of a fast market counts the market's move as slippage (time to complete is shown
beside it). Size to depth uses the latest book_depth snapshot at or before the trigger, up to a
minute old. A percentile over fewer than 20 liquidations with fills is `insufficient_data`; a
path with no liquidation that day has no row, not a zero.
"""

from __future__ import annotations

import polars as pl

from venue_risk.errors import InputError
from venue_risk.schema import LIQUIDATION_PATHS, TS
from venue_risk.metrics.frames import conform as _conform

METHOD = __doc__

#: Relative tolerance between the sum of a liquidation's fill quantities and its filled_qty.
FILL_QTY_RTOL = 1e-9

#: Size-to-depth bins: (label, lower bound inclusive, upper bound exclusive).
SIZE_TO_DEPTH_BINS: tuple[tuple[str, float, float], ...] = (
    ("<0.1", 0.0, 0.1),
    ("0.1-0.5", 0.1, 0.5),
    ("0.5-1", 0.5, 1.0),
    ("1-2", 1.0, 2.0),
    (">=2", 2.0, float("inf")),
)
#: Bin label of a liquidation with no book snapshot at or before its trigger.
NO_DEPTH_BIN = "no depth"
BIN_ORDER: tuple[str, ...] = tuple(b[0] for b in SIZE_TO_DEPTH_BINS) + (NO_DEPTH_BIN,)

#: Symbol label of the all-symbol roll-up rows.
ALL_SYMBOLS = "ALL"

F64, I64, STR = pl.Float64, pl.Int64, pl.String

EXECUTIONS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "liquidation_id": I64,
    "symbol": STR,
    "path": STR,
    "side": STR,
    "account": I64,
    "margin_mode": STR,
    "ts_trigger": TS,
    "ts_done": TS,
    "qty": F64,
    "filled_qty": F64,
    "mark_price": F64,
    "liquidation_price": F64,
    "bankruptcy_price": F64,
    "leverage": F64,
    "maintenance_margin_rate": F64,
    "fee": F64,
    "insurance_fund_delta": F64,
    "fill_count": I64,
    "vwap": F64,
    "filled_notional": F64,
    "filled_notional_at_mark": F64,
    "order_notional": F64,
    "slippage_bps": F64,
    "fill_ratio": F64,
    "time_to_complete_s": F64,
    "beyond_bankruptcy_qty": F64,
    "shortfall": F64,
    "depth_ts": TS,
    "depth_notional_1pct": F64,
    "size_to_depth": F64,
    "size_to_depth_bin": STR,
}

BY_PATH_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "symbol": STR,
    "path": STR,
    "count": I64,
    "count_filled": I64,
    "notional": F64,
    "slippage_bps_wmean": F64,
    "slippage_bps_p50": F64,
    "slippage_bps_p95": F64,
    "slippage_bps_p99": F64,
    "slippage_bps_max": F64,
    "slippage_bps_es95": F64,
    "fill_ratio": F64,
    "ttc_p50_s": F64,
    "ttc_p95_s": F64,
    "beyond_bankruptcy_share": F64,
    "beyond_bankruptcy_count": I64,
    "shortfall": F64,
}

BY_DEPTH_BIN_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "path": STR,
    "size_to_depth_bin": STR,
    "count": I64,
    "count_filled": I64,
    "notional": F64,
    "slippage_bps_wmean": F64,
    "slippage_bps_p95": F64,
}



def _order_keys(frame: pl.DataFrame, *, symbol: bool = True, bins: bool = False) -> pl.DataFrame:
    """Deterministic row order: date, symbol (ALL last), path in LIQUIDATION_PATHS order, bin."""
    path_rank = pl.col("path").replace_strict(
        {p: i for i, p in enumerate(LIQUIDATION_PATHS)}, default=len(LIQUIDATION_PATHS),
        return_dtype=pl.Int64)
    keys: list[pl.Expr] = [pl.col("date")]
    if symbol:
        keys += [pl.col("symbol") == ALL_SYMBOLS, pl.col("symbol")]
    keys += [path_rank, pl.col("path")]
    if bins:
        keys.append(pl.col("size_to_depth_bin").replace_strict(
            {b: i for i, b in enumerate(BIN_ORDER)}, default=len(BIN_ORDER), return_dtype=pl.Int64))
    return frame.sort(keys, nulls_last=True)


def _check_inputs(liquidations: pl.DataFrame, fills: pl.DataFrame) -> None:
    dupes = liquidations.filter(pl.col("liquidation_id").is_duplicated())["liquidation_id"]
    if dupes.len():
        raise InputError("liquidations", f"liquidation_id {dupes.unique().sort().to_list()[:5]} "
                         "appears more than once", column="liquidation_id",
                         expected="one row per liquidation")
    bad_side = liquidations.filter(~pl.col("side").is_in(["buy", "sell"]) | pl.col("side").is_null())
    if bad_side.height:
        raise InputError("liquidations", f"liquidation_id {bad_side['liquidation_id'][0]} has side "
                         f"{bad_side['side'][0]!r}", column="side", expected="'buy' or 'sell'")
    orphans = fills.join(liquidations.select("liquidation_id"), on="liquidation_id", how="anti")
    if orphans.height:
        ids = orphans["liquidation_id"].unique().sort().to_list()
        raise InputError("trades", f"fills carry liquidation_id {ids[:5]} absent from liquidations "
                         f"(trade_id {orphans['trade_id'].sort()[0]} first)", column="liquidation_id",
                         expected="every liquidation fill to reference a row of liquidations")
    sums = (
        liquidations.select("liquidation_id", "symbol", "filled_qty")
        .join(fills.group_by("liquidation_id").agg(
            pl.col("qty").sum().alias("fills_qty"),
            pl.col("symbol").n_unique().alias("fills_symbols"),
            pl.col("symbol").first().alias("fills_symbol")), on="liquidation_id", how="left")
        .with_columns(pl.col("fills_qty").fill_null(0.0))
    )
    wrong_symbol = sums.filter(pl.col("fills_symbol").is_not_null()
                               & ((pl.col("fills_symbol") != pl.col("symbol"))
                                  | (pl.col("fills_symbols") > 1)))
    if wrong_symbol.height:
        r = wrong_symbol.sort("liquidation_id").row(0, named=True)
        raise InputError("trades", f"fills of liquidation_id {r['liquidation_id']} trade symbol "
                         f"{r['fills_symbol']!r}", column="symbol",
                         expected=f"the liquidation's symbol {r['symbol']!r}")
    tol = FILL_QTY_RTOL * pl.max_horizontal(pl.col("fills_qty").abs(), pl.col("filled_qty").abs())
    mismatch = sums.filter(pl.col("filled_qty").is_null()
                           | ((pl.col("fills_qty") - pl.col("filled_qty")).abs() > tol))
    if mismatch.height:
        r = mismatch.sort("liquidation_id").row(0, named=True)
        raise InputError("liquidations", f"liquidation_id {r['liquidation_id']}: its fills in trades "
                         f"sum to qty {r['fills_qty']!r} but filled_qty is {r['filled_qty']!r}"
                         f" ({mismatch.height} liquidation(s) disagree)", column="filled_qty",
                         expected=f"the sum of the fills' qty within {FILL_QTY_RTOL:g} relative")


def _bin_expr(ratio: pl.Expr) -> pl.Expr:
    expr = pl.when(ratio.is_null() | ratio.is_nan()).then(pl.lit(NO_DEPTH_BIN))
    for label, lo, hi in SIZE_TO_DEPTH_BINS:
        expr = expr.when((ratio >= lo) & (ratio < hi)).then(pl.lit(label))
    # Only an infinite ratio (a zero-notional book side) is left: the thinnest bin.
    return expr.otherwise(pl.lit(SIZE_TO_DEPTH_BINS[-1][0]))


def liquidation_executions(liquidations: pl.DataFrame, trades: pl.DataFrame,
                           book_depth: pl.DataFrame) -> pl.DataFrame:
    """One row per liquidation with its execution quality.

    Fills are the trades whose liquidation_id is the liquidation's. Per liquidation:
    fill_count = number of fills; filled_notional = sum(price x qty) over fills;
    vwap = filled_notional / sum(qty); order_notional = qty x mark_price (mark at the trigger);
    filled_notional_at_mark = filled_qty x mark_price;
    slippage_bps = (mark - vwap) / mark x 10,000 for a sell, (vwap - mark) / mark x 10,000 for a
    buy (positive = adverse to the liquidated account); fill_ratio = filled_qty / qty;
    time_to_complete_s = ts_done - ts_trigger in seconds;
    beyond_bankruptcy_qty = sum of fill qty priced below the bankruptcy price (sell) or above it
    (buy); shortfall = sum(|price - bankruptcy_price| x qty) over those fills;
    depth_notional_1pct = cumulative book notional at the -1 % band (sell: bids) or +1 % band
    (buy: asks) of the latest book_depth snapshot of the symbol at or before ts_trigger
    (depth_ts is that snapshot's time); size_to_depth = order_notional / depth_notional_1pct,
    binned into <0.1, 0.1-0.5, 0.5-1, 1-2, >=2 (lower bound inclusive), "no depth" when no
    snapshot precedes the trigger. date = the UTC date of ts_trigger.

    A liquidation without fills keeps its row with fill_count 0, filled notional 0 and null
    vwap and slippage. Raises ValueError (InputError) naming the liquidation when its fills' qty
    sum differs from filled_qty by more than 1e-9 relative, when fills carry a liquidation_id
    absent from liquidations, or when fills trade another symbol than the liquidation.
    """
    fills = trades.filter(pl.col("liquidation_id").is_not_null())
    _check_inputs(liquidations, fills)

    sell = pl.col("side") == "sell"
    fill_stats = (
        fills.join(liquidations.select("liquidation_id", "side", "bankruptcy_price"),
                   on="liquidation_id", how="inner")
        .with_columns(
            pl.when(sell).then(pl.col("price") < pl.col("bankruptcy_price"))
            .otherwise(pl.col("price") > pl.col("bankruptcy_price")).fill_null(False).alias("_beyond"))
        .group_by("liquidation_id")
        .agg(
            pl.len().cast(I64).alias("fill_count"),
            (pl.col("price") * pl.col("qty")).sum().alias("filled_notional"),
            pl.col("qty").sum().alias("_fills_qty"),
            pl.col("qty").filter(pl.col("_beyond")).sum().alias("beyond_bankruptcy_qty"),
            ((pl.col("price") - pl.col("bankruptcy_price")).abs() * pl.col("qty"))
            .filter(pl.col("_beyond")).sum().alias("shortfall"),
        )
    )
    mark = pl.col("mark_price")
    ex = (
        liquidations.join(fill_stats, on="liquidation_id", how="left")
        .with_columns(
            pl.col("fill_count").fill_null(0),
            pl.col("filled_notional").fill_null(0.0),
            pl.col("beyond_bankruptcy_qty").fill_null(0.0),
            pl.col("shortfall").fill_null(0.0),
            pl.when(pl.col("_fills_qty") > 0)
            .then(pl.col("filled_notional") / pl.col("_fills_qty")).alias("vwap"),
            pl.col("ts_trigger").dt.date().alias("date"),
            (pl.col("qty") * mark).alias("order_notional"),
            (pl.col("filled_qty") * mark).alias("filled_notional_at_mark"),
            (pl.col("filled_qty") / pl.col("qty")).alias("fill_ratio"),
            ((pl.col("ts_done") - pl.col("ts_trigger")).dt.total_microseconds() / 1e6)
            .alias("time_to_complete_s"),
        )
        .with_columns(
            (pl.when(sell).then(mark - pl.col("vwap")).otherwise(pl.col("vwap") - mark)
             / mark * 1e4).alias("slippage_bps"),
        )
    )

    # Book depth within 1 % on the side the order consumes: bids (-1 %) for a sell, asks (+1 %)
    # for a buy, latest snapshot at or before the trigger. Of several rows of one snapshot (same
    # symbol, side and ts) the last one counts: a backward as-of join takes the last right row
    # whose ts is at or before the trigger, so a stable sort by ts (none when the partition is
    # already in time order, as the warehouse stores it) keeps the last row of a tie last
    # without deduplicating every snapshot of the day.
    depth = (
        book_depth.filter(((pl.col("percentage").abs() - 1.0).abs() < 1e-9))
        .select(
            pl.col("symbol"),
            pl.when(pl.col("percentage") < 0).then(pl.lit("sell")).otherwise(pl.lit("buy")).alias("side"),
            pl.col("ts").alias("depth_ts"),
            pl.col("notional").alias("depth_notional_1pct"),
        )
    )
    if not depth["depth_ts"].is_sorted():
        depth = depth.sort("depth_ts", maintain_order=True)
    ex = (
        ex.sort("ts_trigger", nulls_last=True)
        .join_asof(depth, left_on="ts_trigger", right_on="depth_ts", by=["symbol", "side"],
                   strategy="backward", coalesce=False, check_sortedness=False)
        .with_columns((pl.col("order_notional") / pl.col("depth_notional_1pct")).alias("size_to_depth"))
        .with_columns(_bin_expr(pl.col("size_to_depth")).alias("size_to_depth_bin"))
    )
    return _conform(ex, EXECUTIONS_SCHEMA).sort(["date", "ts_trigger", "liquidation_id"], nulls_last=True)


def _slippage_aggs(weight: pl.Expr) -> list[pl.Expr]:
    """Aggregations shared by the per-symbol rows (weight 1) and the ALL rows (weight mark)."""
    s = pl.col("slippage_bps")
    fn = pl.col("filled_notional")
    ttc = pl.col("time_to_complete_s")
    p95 = s.quantile(0.95, "linear")
    filled_w = (pl.col("filled_qty") * weight).sum()
    return [
        pl.len().cast(I64).alias("count"),
        (pl.col("fill_count") > 0).sum().cast(I64).alias("count_filled"),
        fn.sum().alias("notional"),
        pl.when(fn.filter(s.is_not_null()).sum() > 0)
        .then((s * fn).sum() / fn.filter(s.is_not_null()).sum()).alias("slippage_bps_wmean"),
        s.quantile(0.50, "linear").alias("slippage_bps_p50"),
        p95.alias("slippage_bps_p95"),
        s.quantile(0.99, "linear").alias("slippage_bps_p99"),
        s.max().alias("slippage_bps_max"),
        s.filter(s >= p95 - 1e-9 * p95.abs().clip(lower_bound=1.0)).mean().alias("slippage_bps_es95"),
        pl.when((pl.col("qty") * weight).sum() > 0)
        .then(filled_w / (pl.col("qty") * weight).sum()).alias("fill_ratio"),
        ttc.quantile(0.50, "linear").alias("ttc_p50_s"),
        ttc.quantile(0.95, "linear").alias("ttc_p95_s"),
        pl.when(filled_w > 0)
        .then((pl.col("beyond_bankruptcy_qty") * weight).sum() / filled_w)
        .alias("beyond_bankruptcy_share"),
        (pl.col("beyond_bankruptcy_qty") > 0).sum().cast(I64).alias("beyond_bankruptcy_count"),
        pl.col("shortfall").sum().alias("shortfall"),
    ]


def slippage_by_path(executions: pl.DataFrame) -> pl.DataFrame:
    """Slippage per date x symbol x liquidation path, plus an "ALL" symbol roll-up per path.

    Over the liquidations of the group: count = liquidations (filled or not); count_filled =
    those with at least one fill; notional = sum of filled notional (fill price x qty);
    slippage_bps_wmean = sum(slippage_bps x filled_notional) / sum(filled_notional);
    slippage_bps_p50 / p95 / p99 = percentiles of the per-liquidation slippage (each liquidation
    counts once, unweighted; liquidations without fills are left out) by linear interpolation
    between order statistics (the q-quantile of n sorted values x(0..n-1) is read at position
    q x (n - 1), as numpy's default); slippage_bps_max = the largest; slippage_bps_es95
    (expected shortfall at 95 %) = mean of the slippages at or above that p95. With 20 or fewer
    liquidations in a group p95 lies above the second largest value, so es95 equals the max.
    fill_ratio = sum(filled_qty) / sum(qty); ttc_p50_s / ttc_p95_s = percentiles of the time to
    complete (seconds, same method); beyond_bankruptcy_share = sum(beyond_bankruptcy_qty) /
    sum(filled_qty); beyond_bankruptcy_count = liquidations with any fill beyond the bankruptcy
    price; shortfall = sum of the shortfall drawn on the insurance fund.

    The ALL rows pool every symbol's liquidations of a path. Quantities of different symbols are
    not comparable, so there the two ratios are taken in notional at the trigger mark:
    fill_ratio = sum(filled_qty x mark) / sum(qty x mark), beyond_bankruptcy_share =
    sum(beyond_bankruptcy_qty x mark) / sum(filled_qty x mark).
    """
    per_symbol = executions.group_by(["date", "symbol", "path"]).agg(_slippage_aggs(pl.lit(1.0)))
    overall = (executions.group_by(["date", "path"]).agg(_slippage_aggs(pl.col("mark_price")))
               .with_columns(pl.lit(ALL_SYMBOLS).alias("symbol")))
    out = pl.concat([_conform(per_symbol, BY_PATH_SCHEMA), _conform(overall, BY_PATH_SCHEMA)],
                    how="vertical")
    return _order_keys(out)


def slippage_by_depth_bin(executions: pl.DataFrame) -> pl.DataFrame:
    """Slippage per date x path x size-to-depth bin (all symbols pooled), to compare paths on
    orders of the same size relative to the book.

    count = liquidations in the bin; count_filled = those with fills; notional = sum of filled
    notional; slippage_bps_wmean = sum(slippage_bps x filled_notional) / sum(filled_notional);
    slippage_bps_p95 = 95th percentile of per-liquidation slippage (linear interpolation at
    position 0.95 x (n - 1) of the sorted values). Bins are order notional / book notional within
    1 %: <0.1, 0.1-0.5, 0.5-1, 1-2, >=2, and "no depth" when no book snapshot preceded the trigger.
    """
    s, fn = pl.col("slippage_bps"), pl.col("filled_notional")
    out = executions.group_by(["date", "path", "size_to_depth_bin"]).agg(
        pl.len().cast(I64).alias("count"),
        (pl.col("fill_count") > 0).sum().cast(I64).alias("count_filled"),
        fn.sum().alias("notional"),
        pl.when(fn.filter(s.is_not_null()).sum() > 0)
        .then((s * fn).sum() / fn.filter(s.is_not_null()).sum()).alias("slippage_bps_wmean"),
        s.quantile(0.95, "linear").alias("slippage_bps_p95"),
    )
    return _order_keys(_conform(out, BY_DEPTH_BIN_SCHEMA), symbol=False, bins=True)
