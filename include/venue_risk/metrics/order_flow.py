"""Order-flow integrity (DESIGN 4.6): positions rebuilt fill by fill, and the fills that break the
venue's order rules.

Position rebuild. Every account's position per symbol starts from the start-of-day positions
(the previous day's positions_eod) and takes the day's fills in exchange order (ts, then
trade_id). A fill of qty q changes the taker by +q (taker buy) or -q (taker sell) and the maker
by the opposite, taker first; size and entry price follow `venue_risk.positions.step` (the same
rule the simulator books positions with), so the end-of-day sizes equal positions_eod. Each fill
gives two rows (taker, maker) with the account's position just before and just after it.

Violations, one row per offending fill:

- reduce_only_flipped: a fill of a reduce-only order after which the position has the opposite
  sign of the position before it (size_before != 0, size_after != 0, signs differ).
- reduce_only_grew: any other fill of a reduce-only order with |size_after| > |size_before|
  (beyond 1e-9 base); this includes a reduce-only fill on a flat position. A flip is reported
  once, as reduce_only_flipped, whether or not |size| also grew (the details say).
- post_only_took_liquidity: a fill whose taker order is post-only (a post-only order must rest
  on the book or be rejected, never take).
- fill_after_cancel: a fill of an order (as taker or maker) at a ts strictly after the order's
  first cancel event. A fill at the same microsecond as the cancel is not flagged: timestamps
  carry no sequence number, and the venue's event log orders a fill before a cancel at the same
  ts (the match was in flight; the cancel then removes the remainder), so the fill wins the tie.
- self_trade: a fill whose taker account is its maker account (reported once, for the taker
  order; the details name the maker order).

Partial fills and rapid cancels: each violating fill says whether it came inside a partial fill
(the order had been partly filled before it: an earlier fill of the same order in exchange
order, or a partial_fill event at an earlier ts), how much of the order was filled before it,
and, for fill_after_cancel, the order's lifetime from new to cancel and the gap from the cancel
to the fill. Order attributes (reduce_only, post_only, order qty) come from the order's `new`
event, or its earliest event when the `new` fell on an earlier day; a fill whose order has no
event at all is not judged here (the data-quality suite checks trades against orders).

Counts per date x symbol x kind, zero rows included, with the distinct orders and accounts
involved.

Known limits: The rebuild needs start-of-day positions: on a venue's first day (no previous
positions_eod) the checks that depend on it are `skipped`. Fills in the same microsecond are
ordered by trade_id, and a fill in the same microsecond as its order's cancel is not flagged
(the venue's log puts the fill first). An order's attributes come from its `new` event, or its
earliest event when it was placed on an earlier day; accounts whose fills or positions the gate
quarantined are left out of the rebuild.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Iterable

import numpy as np
import polars as pl

from venue_risk.errors import InputError
from venue_risk.positions import FLAT_EPS
from venue_risk.schema import TS
from venue_risk.metrics.frames import require_columns as _require, conform as _conform

METHOD = __doc__

#: The violation kinds, in report order.
KINDS: tuple[str, ...] = ("reduce_only_grew", "reduce_only_flipped", "post_only_took_liquidity",
                          "fill_after_cancel", "self_trade")

#: A cancel this soon after the order's `new` is called a rapid cancel in the details.
RAPID_CANCEL_S = 1.0

F64, I64, STR = pl.Float64, pl.Int64, pl.String

FILLS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "trade_id": I64,
    "ts": TS,
    "symbol": STR,
    "account": I64,
    "role": STR,
    "order_id": I64,
    "price": F64,
    "qty_signed": F64,
    "size_before": F64,
    "size_after": F64,
    "entry_price_after": F64,
}

POSITIONS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "account": I64,
    "symbol": STR,
    "size": F64,
    "entry_price": F64,
}

VIOLATIONS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "kind": STR,
    "ts": TS,
    "symbol": STR,
    "trade_id": I64,
    "order_id": I64,
    "account": I64,
    "role": STR,
    "in_partial_fill": pl.Boolean,
    "details": STR,
}

COUNTS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "symbol": STR,
    "kind": STR,
    "count": I64,
    "orders": I64,
    "accounts": I64,
}

_TRADE_COLS = ("ts", "symbol", "trade_id", "price", "qty", "taker_side", "taker_order_id",
               "maker_order_id", "taker_account", "maker_account")
_POS_COLS = ("account", "symbol", "size", "entry_price")
_EVENT_COLS = ("ts", "order_id", "event", "qty", "reduce_only", "post_only")




def _check_trades(trades: pl.DataFrame) -> None:
    _require(trades, "trades", _TRADE_COLS)
    for col in ("ts", "symbol", "trade_id", "price", "qty", "taker_side", "taker_account",
                "maker_account"):
        n = trades[col].null_count()
        if n:
            tid = trades.filter(pl.col(col).is_null())["trade_id"][0]
            raise InputError("trades", f"{n} null value(s) (trade_id {tid} first)", column=col,
                             expected="a value on every fill")
    bad = trades.filter(~pl.col("taker_side").is_in(["buy", "sell"]))
    if bad.height:
        raise InputError("trades", f"trade_id {bad['trade_id'][0]} has taker_side "
                         f"{bad['taker_side'][0]!r}", column="taker_side", expected="'buy' or 'sell'")
    dup = trades.filter(pl.col("trade_id").is_duplicated())
    if dup.height:
        raise InputError("trades", f"trade_id {dup['trade_id'][0]} appears more than once",
                         column="trade_id", expected="unique trade ids")


def _start_book(positions_start: pl.DataFrame) -> dict[tuple[int, str], tuple[float, float]]:
    _require(positions_start, "positions_eod", _POS_COLS)
    dup = positions_start.filter(pl.struct("account", "symbol").is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        raise InputError("positions_eod", f"account {r['account']} symbol {r['symbol']!r} appears "
                         "more than once", column="account",
                         expected="one start-of-day position per account and symbol")
    book: dict[tuple[int, str], tuple[float, float]] = {}
    for a, s, q, e in positions_start.select(_POS_COLS).iter_rows():
        if q is None or a is None or s is None:
            raise InputError("positions_eod", f"null account, symbol or size (account {a}, "
                             f"symbol {s!r})", column="size", expected="non-null values")
        if q != 0.0:
            book[(int(a), s)] = (float(q), float(e if e is not None else 0.0))
    return book


#: The final book of the last replay, by (weak) reference to its input frames: the metric stage
#: calls rebuild_positions and then end_of_day_positions on the same frames, and the second
#: takes the book instead of replaying the day again. Only the book is kept (accounts x symbols),
#: never the per-fill rows, and the frames are not kept alive by it.
_LAST_BOOK: list[tuple[weakref.ref, weakref.ref, dict[tuple[int, str], tuple[float, float]]]] = []


def _replay(positions_start: pl.DataFrame, trades: pl.DataFrame
            ) -> tuple[pl.DataFrame, dict[tuple[int, str], tuple[float, float]]]:
    """The per-fill rows and the final book {(account, symbol): (size, entry)}."""
    rows, book = _replay_fills(positions_start, trades)
    _LAST_BOOK[:] = [(weakref.ref(positions_start), weakref.ref(trades), dict(book))]
    return rows, book


def _final_book(positions_start: pl.DataFrame, trades: pl.DataFrame) -> dict[tuple[int, str], tuple[float, float]]:
    """The final book of _replay, reused when the last replay was of the very same frames."""
    if _LAST_BOOK and _LAST_BOOK[0][0]() is positions_start and _LAST_BOOK[0][1]() is trades:
        return dict(_LAST_BOOK[0][2])
    return _replay(positions_start, trades)[1]


def _replay_fills(positions_start: pl.DataFrame, trades: pl.DataFrame
                  ) -> tuple[pl.DataFrame, dict[tuple[int, str], tuple[float, float]]]:
    """Replay every fill in exchange order through positions.step (see rebuild_positions), in
    compiled code (venue_risk.fill_replay.replay) over integer keys of (account, symbol)."""
    from venue_risk.fill_replay import replay

    _check_trades(trades)
    book = _start_book(positions_start)
    f = trades.sort("ts", "trade_id")
    n = f.height
    # one integer key per (account, symbol): the start book's, then each fill's taker and maker
    keys = pl.concat([
        pl.DataFrame({"account": [a for a, _ in book], "symbol": [s for _, s in book]},
                     schema={"account": I64, "symbol": STR}),
        f.select(pl.col("taker_account").cast(I64).alias("account"), "symbol"),
        f.select(pl.col("maker_account").cast(I64).alias("account"), "symbol"),
    ]).unique(maintain_order=True).with_row_index("key")
    size = np.zeros(keys.height)
    entry = np.zeros(keys.height)
    size[:len(book)] = [q for q, _ in book.values()]
    entry[:len(book)] = [e for _, e in book.values()]

    def key_of(role: str) -> np.ndarray:
        return (f.select(pl.col(f"{role}_account").cast(I64).alias("account"), "symbol")
                .join(keys, on=["account", "symbol"], how="left", maintain_order="left")["key"]
                .cast(pl.Int64).to_numpy(writable=True))

    # writable arrays throughout: the kernel is compiled (and cached) for those only
    qty = f["qty"].cast(pl.Float64).to_numpy(writable=True)
    delta = np.where((f["taker_side"] == "buy").to_numpy(), qty, -qty)
    before, after, entry_after, signed = replay(key_of("taker"), key_of("maker"), delta,
                                                f["price"].cast(pl.Float64).to_numpy(writable=True), size, entry)
    book = dict(zip(zip(keys["account"].to_list(), keys["symbol"].to_list()),
                    zip(size.tolist(), entry.tolist())))
    rows = pl.DataFrame({
        "trade_id": np.repeat(f["trade_id"].to_numpy(), 2),
        "ts": f["ts"].gather(np.repeat(np.arange(n), 2)),
        "symbol": f["symbol"].gather(np.repeat(np.arange(n), 2)),
        "account": np.column_stack([f["taker_account"].to_numpy(), f["maker_account"].to_numpy()]).ravel(),
        "role": np.tile(np.array(["taker", "maker"], dtype=object), n).tolist() if n else [],
        "order_id": pl.Series(np.column_stack([f["taker_order_id"].to_numpy(), f["maker_order_id"].to_numpy()])
                              .ravel(), dtype=I64) if n else pl.Series([], dtype=I64),
        "price": np.repeat(f["price"].to_numpy(), 2),
        "qty_signed": signed, "size_before": before, "size_after": after, "entry_price_after": entry_after,
    }, schema_overrides={"role": STR, "ts": TS, "symbol": STR})
    rows = rows.with_columns(pl.col("ts").dt.date().alias("date"))
    return _conform(rows, FILLS_SCHEMA), book


def rebuild_positions(positions_start: pl.DataFrame, trades: pl.DataFrame) -> pl.DataFrame:
    """Every fill applied to the taker and the maker, from start-of-day positions.

    positions_start: account, symbol, size, entry_price (positions_eod of the previous day);
    trades: the day's trades. Fills are taken in exchange order (ts, trade_id); per fill the
    taker's signed change is d = +qty for a taker buy, -qty for a taker sell, the maker's is -d,
    taker applied first. size_after = size_before + qty_signed (|size| < 1e-9 is flat: 0), entry
    price by `positions.step` (weighted average on increase, unchanged on reduction, the fill
    price on a flip). date = UTC date of the fill's ts.

    Returns two rows per fill (role taker, then maker): date, trade_id, ts, symbol, account,
    role, order_id, price, qty_signed, size_before, size_after, entry_price_after; sorted by
    ts, trade_id, role (taker first). Raises InputError naming the dataset and column on missing
    columns, null keys, a bad taker_side, duplicate trade ids or duplicate start positions.
    """
    rows, _ = _replay(positions_start, trades)
    return rows


def end_of_day_positions(positions_start: pl.DataFrame, trades: pl.DataFrame,
                         day: dt.date | None = None) -> pl.DataFrame:
    """End-of-day positions: the start-of-day positions with every fill of the day applied
    (same rule and order as `rebuild_positions`); flat positions are omitted, as in
    positions_eod.

    Returns date, account, symbol, size, entry_price sorted by account and symbol. date = `day`,
    else the UTC date of the trades (one date expected), else the start positions' date + 1 day.
    """
    book = _final_book(positions_start, trades)
    if day is None:
        dates = trades["ts"].dt.date().unique().drop_nulls()
        if dates.len() > 1:
            raise InputError("trades", f"fills span {dates.len()} dates", column="ts",
                             expected="one UTC day of fills (or pass day=)")
        if dates.len() == 1:
            day = dates[0]
        elif "date" in positions_start.columns and positions_start["date"].drop_nulls().len():
            day = positions_start["date"].drop_nulls().max() + dt.timedelta(days=1)
    items = sorted((a, s, q, e) for (a, s), (q, e) in book.items() if q != 0.0)
    out = pl.DataFrame({
        "account": [r[0] for r in items], "symbol": [r[1] for r in items],
        "size": [r[2] for r in items], "entry_price": [r[3] for r in items],
    }, schema={"account": I64, "symbol": STR, "size": F64, "entry_price": F64})
    return _conform(out.with_columns(pl.lit(day, dtype=pl.Date).alias("date")), POSITIONS_SCHEMA)


def _order_attributes(order_events: pl.DataFrame) -> pl.DataFrame:
    """Per order: reduce_only, post_only, order qty, side/type/tif, new ts and first cancel ts."""
    _require(order_events, "order_events", _EVENT_COLS)
    ev = order_events.with_columns((pl.col("event") != "new").alias("_not_new"))
    # the first event of each order (its new event, else its earliest): sort the keys only and
    # gather those rows, never a sorted copy of every event
    keys = ev.select("order_id", "_not_new", "ts").with_row_index("_r")
    rows = (keys.sort("order_id", "_not_new", "ts", maintain_order=True)
            .group_by("order_id", maintain_order=True).agg(pl.col("_r").first())["_r"])
    first = ev[rows].select("order_id", "reduce_only", "post_only", pl.col("qty").alias("order_qty"),
                            *[c for c in ("side", "order_type", "tif") if c in ev.columns])
    new_ts = ev.filter(pl.col("event") == "new").group_by("order_id").agg(pl.col("ts").min().alias("new_ts"))
    cancel = ev.filter(pl.col("event") == "cancel").group_by("order_id").agg(
        pl.col("ts").min().alias("cancel_ts"))
    return first.join(new_ts, on="order_id", how="left").join(cancel, on="order_id", how="left")


def _fmt(x: pl.Expr) -> pl.Expr:
    """A float as short text (up to 10 significant digits)."""
    return x.map_elements(lambda v: f"{v:.10g}", return_dtype=STR)


def violations(order_events: pl.DataFrame, trades: pl.DataFrame,
               fills_with_positions: pl.DataFrame) -> pl.DataFrame:
    """One row per violating fill, from the day's order events and trades and the output of
    `rebuild_positions`.

    kind = reduce_only_flipped when a reduce-only order's fill leaves size_after with the
    opposite sign of size_before (both non-zero); reduce_only_grew when otherwise
    |size_after| - |size_before| > 1e-9; post_only_took_liquidity when the taker order is
    post-only; fill_after_cancel when the fill's ts > the order's first cancel ts (equal ts: the
    fill wins, not flagged); self_trade when taker_account = maker_account.
    in_partial_fill = the order had fills before this one (earlier fills of the order in
    (ts, trade_id) order, or partial_fill events with ts < the fill's ts).

    Returns date, kind, ts, symbol, trade_id, order_id, account, role (the offending order's
    side of the fill: taker or maker), in_partial_fill, details (sizes before / after, order
    qty and quantity filled before, cancel ts and the gaps, the maker order of a self-trade);
    sorted by date, ts, trade_id, kind.
    """
    _check_trades(trades)
    _require(fills_with_positions, "fills_with_positions", tuple(FILLS_SCHEMA))
    _require(order_events, "order_events", _EVENT_COLS)
    # only the columns read here (a selection shares the frame's memory); the attributes of
    # orders without a fill today join no fill, so no events are filtered out first (that copy
    # of most of the day's events cost more than it saved)
    columns = [*_EVENT_COLS, *[c for c in ("side", "order_type", "tif") if c in order_events.columns]]
    order_events = order_events.select(columns)
    attrs = _order_attributes(order_events)
    partial_ev = order_events.filter(pl.col("event") == "partial_fill").select("order_id", pl.col("ts").alias("_pts"))

    # only the fills that can be reported (of a reduce-only, post-only or cancelled order, or a
    # self-trade) and the other fills of their orders (for the counts of earlier fills)
    self_ids = trades.filter(pl.col("taker_account") == pl.col("maker_account"))["trade_id"]
    flagged_order = (pl.col("reduce_only").fill_null(False) | pl.col("post_only").fill_null(False)
                     | pl.col("cancel_ts").is_not_null())
    flagged = attrs.filter(flagged_order)["order_id"]
    orders = pl.concat([flagged, fills_with_positions.filter(pl.col("trade_id").is_in(self_ids.implode()))
                        ["order_id"].drop_nulls()])
    fills = fills_with_positions.filter(pl.col("order_id").is_null() | pl.col("order_id").is_in(orders.implode()))
    fp = (fills.sort("ts", "trade_id", pl.col("role") == "maker")
          .with_columns(
              pl.when(pl.col("order_id").is_not_null())
              .then(pl.int_range(pl.len()).over("order_id")).otherwise(0).alias("_prior_fills"),
              (pl.col("qty_signed").abs().cum_sum().over("order_id") - pl.col("qty_signed").abs())
              .alias("_filled_before"))
          .join(attrs, on="order_id", how="left"))
    # partial_fill events strictly before the fill, counted only for the fills that can be
    # reported (of a reduce-only, post-only or cancelled order, or a self-trade)
    reportable = flagged_order | pl.col("trade_id").is_in(self_ids.implode())
    prior_ev = (fp.filter(reportable).select("trade_id", "role", "order_id", "ts")
                .join(partial_ev, on="order_id", how="inner")
                .filter(pl.col("_pts") < pl.col("ts"))
                .group_by("trade_id", "role").agg(pl.len().alias("_prior_events")))
    fp = (fp.join(prior_ev, on=["trade_id", "role"], how="left")
          .with_columns(((pl.col("_prior_fills") > 0) | (pl.col("_prior_events").fill_null(0) > 0))
                        .alias("in_partial_fill")))
    partial_txt = (pl.when(pl.col("in_partial_fill"))
                   .then(pl.lit("inside a partial fill: ") + pl.col("_prior_fills").cast(STR)
                         + pl.lit(" earlier fill(s) today, ") + _fmt(pl.col("_filled_before"))
                         + pl.lit(" filled before"))
                   .otherwise(pl.lit("not inside a partial fill")))
    order_txt = (pl.lit("order qty ") + pl.coalesce(_fmt(pl.col("order_qty")), pl.lit("?"))
                 + pl.lit("; ") + partial_txt)
    fill_txt = (pl.col("role") + pl.lit(" fill ") + _fmt(pl.col("qty_signed")) + pl.lit(" @ ")
                + _fmt(pl.col("price")))

    before, after = pl.col("size_before"), pl.col("size_after")
    flipped = (before != 0) & (after != 0) & ((before > 0) != (after > 0))
    grew = (after.abs() - before.abs()) > FLAT_EPS
    sizes_txt = pl.lit("position ") + _fmt(before) + pl.lit(" -> ") + _fmt(after)
    ro = (fp.filter(pl.col("reduce_only").fill_null(False) & (flipped | grew))
          .with_columns(
              pl.when(flipped).then(pl.lit("reduce_only_flipped")).otherwise(pl.lit("reduce_only_grew"))
              .alias("kind"),
              (pl.lit("reduce-only ") + fill_txt + pl.lit(": ") + sizes_txt
               + pl.when(flipped & grew).then(pl.lit(" (flipped and |size| grew)"))
               .when(flipped).then(pl.lit(" (flipped)"))
               .when(before == 0).then(pl.lit(" (opened from flat)"))
               .otherwise(pl.lit(" (|size| grew)"))
               + pl.lit("; ") + order_txt).alias("details")))

    po = (fp.filter((pl.col("role") == "taker") & pl.col("post_only").fill_null(False))
          .with_columns(
              pl.lit("post_only_took_liquidity").alias("kind"),
              (pl.lit("post-only order (tif ")
               + (pl.col("tif") if "tif" in fp.columns else pl.lit(None, STR)).fill_null("?")
               + pl.lit(") was the taker: ") + fill_txt + pl.lit("; ") + sizes_txt
               + pl.lit("; ") + order_txt).alias("details")))

    lifetime_s = (pl.col("cancel_ts") - pl.col("new_ts")).dt.total_microseconds() / 1e6
    gap_ms = (pl.col("ts") - pl.col("cancel_ts")).dt.total_microseconds() / 1e3
    fac = (fp.filter(pl.col("cancel_ts").is_not_null() & (pl.col("ts") > pl.col("cancel_ts")))
           .with_columns(
               pl.lit("fill_after_cancel").alias("kind"),
               (fill_txt + pl.lit(" at ") + pl.col("ts").dt.to_string("%H:%M:%S%.6f")
                + pl.lit(", ") + _fmt(gap_ms) + pl.lit(" ms after the cancel at ")
                + pl.col("cancel_ts").dt.to_string("%H:%M:%S%.6f")
                + pl.when(pl.col("new_ts").is_not_null())
                .then(pl.lit("; order lived ") + _fmt(lifetime_s) + pl.lit(" s from new to cancel")
                      + pl.when(lifetime_s <= RAPID_CANCEL_S).then(pl.lit(" (rapid cancel)"))
                      .otherwise(pl.lit("")))
                .otherwise(pl.lit("; new not seen today"))
                + pl.lit("; ") + order_txt).alias("details")))

    tk = fp.filter(pl.col("role") == "taker")
    st = (tk.join(trades.select("trade_id", "maker_order_id", "maker_account", "taker_account"),
                  on="trade_id", how="inner")
          .filter(pl.col("taker_account") == pl.col("maker_account"))
          .with_columns(
              pl.lit("self_trade").alias("kind"),
              (pl.lit("taker order ") + pl.col("order_id").cast(STR) + pl.lit(" matched maker order ")
               + pl.col("maker_order_id").cast(STR) + pl.lit(" of the same account: ")
               + fill_txt + pl.lit(" (net position unchanged)")).alias("details")))

    parts = [_conform(p, VIOLATIONS_SCHEMA) for p in (ro, po, fac, st)]
    out = pl.concat(parts, how="vertical")
    rank = pl.col("kind").replace_strict({k: i for i, k in enumerate(KINDS)}, return_dtype=I64)
    return out.sort(pl.col("date"), pl.col("ts"), pl.col("trade_id"), rank, pl.col("role") == "maker")


def violation_counts(violations: pl.DataFrame, symbols: Iterable[str] | pl.Series | pl.DataFrame,
                     day: dt.date | None = None) -> pl.DataFrame:
    """Counts per date x symbol x kind, with a zero row for every symbol and kind without a
    violation.

    count = violating fills; orders = distinct order ids; accounts = distinct accounts.
    symbols: the day's symbols (a list, a Series, or a frame with a `symbol` column, e.g.
    instruments); symbols that only appear in `violations` are added. Dates: `day` if given
    (needed for the zero rows of a day without any violation), else the dates in `violations`.
    Sorted by date, symbol, kind (in KINDS order).
    """
    if isinstance(symbols, pl.DataFrame):
        _require(symbols, "instruments", ("symbol",))
        symbols = symbols["symbol"]
    syms = sorted(set(list(symbols)) | set(violations["symbol"].drop_nulls().to_list()))
    dates = [day] if day is not None else sorted(violations["date"].drop_nulls().unique().to_list())
    if day is not None and violations.height and (violations["date"] != day).any():
        raise InputError("violations", f"rows dated other than {day}", column="date",
                         expected=f"only {day}")
    grid = (pl.DataFrame({"date": dates}, schema={"date": pl.Date})
            .join(pl.DataFrame({"symbol": syms}, schema={"symbol": STR}), how="cross")
            .join(pl.DataFrame({"kind": list(KINDS)}, schema={"kind": STR}), how="cross"))
    agg = violations.group_by("date", "symbol", "kind").agg(
        pl.len().cast(I64).alias("count"),
        pl.col("order_id").n_unique().cast(I64).alias("orders"),
        pl.col("account").n_unique().cast(I64).alias("accounts"))
    out = (grid.join(agg, on=["date", "symbol", "kind"], how="left")
           .with_columns(pl.col("count", "orders", "accounts").fill_null(0)))
    rank = pl.col("kind").replace_strict({k: i for i, k in enumerate(KINDS)}, return_dtype=I64)
    return _conform(out, COUNTS_SCHEMA).sort("date", "symbol", rank)
