"""Slippage of liquidation executions (DESIGN 4.1), on hand-built canonical frames.

The frame builders at the top are shared with test_forced_cost.py and test_summary.py (imported
as a module). Fixture day 2024-03-01.

Liquidations (all numbers worked by hand in the tests):
  1  BTCUSDT sell (long closed), market path, qty 2, filled 2, mark 100, bankruptcy 98.5,
     leverage 100, MMR 0.005; fills 1.5 @ 99 and 0.5 @ 98 (the 98 fill is beyond bankruptcy).
  2  BTCUSDT buy (short closed), market path, qty 1, filled 1, mark 100, bankruptcy 103,
     leverage 50, MMR 0.01; fill 1 @ 100.5.
  3  ETHUSDT sell, incremental path, partial: qty 10, filled 4, mark 50, bankruptcy 40,
     leverage 10, MMR 0.004; fills 3 @ 49.9 and 1 @ 49.5.
  4  ETHUSDT buy, auction path, qty 3, no fill, mark 50.
"""

from __future__ import annotations

import datetime as dt
import sys

import polars as pl
import pytest

from venue_risk import margin, schema
from venue_risk.metrics import slippage

approx = pytest.approx
fx = sys.modules[__name__]  # the tests below read the builders as fx.<name>

DAY = dt.date(2024, 3, 1)


def ts(h: int, m: int = 0, s: int = 0, us: int = 0) -> dt.datetime:
    return dt.datetime(2024, 3, 1, h, m, s, us, tzinfo=dt.timezone.utc)


def frame(name: str, rows: list[dict]) -> pl.DataFrame:
    """A canonical frame of dataset `name` from row dicts (absent columns are null)."""
    spec = schema.DATASETS[name].schema
    if not rows:
        return schema.empty_frame(name)
    data = {c: [r.get(c) for r in rows] for c in spec}
    return schema.conform(name, pl.DataFrame(data, schema=spec))


def liquidations() -> pl.DataFrame:
    base = dict(margin_mode="isolated", account=7)
    return frame("liquidations", [
        dict(base, liquidation_id=1, ts_trigger=ts(10), ts_done=ts(10, 0, 2, 500_000),
             symbol="BTCUSDT", side="sell", qty=2.0, filled_qty=2.0, mark_price=100.0,
             liquidation_price=99.5, bankruptcy_price=98.5, path="market", leverage=100.0,
             maintenance_margin_rate=0.005, fee=0.0, insurance_fund_delta=-0.25),
        dict(base, liquidation_id=2, ts_trigger=ts(11), ts_done=ts(11, 0, 1),
             symbol="BTCUSDT", side="buy", qty=1.0, filled_qty=1.0, mark_price=100.0,
             liquidation_price=101.0, bankruptcy_price=103.0, path="market", leverage=50.0,
             maintenance_margin_rate=0.01, fee=0.5, insurance_fund_delta=0.5),
        dict(base, liquidation_id=3, ts_trigger=ts(12), ts_done=ts(12, 0, 5),
             symbol="ETHUSDT", side="sell", qty=10.0, filled_qty=4.0, mark_price=50.0,
             liquidation_price=45.0, bankruptcy_price=40.0, path="incremental", leverage=10.0,
             maintenance_margin_rate=0.004, fee=2.0, insurance_fund_delta=None),
        dict(base, liquidation_id=4, ts_trigger=ts(13), ts_done=ts(13, 0, 3),
             symbol="ETHUSDT", side="buy", qty=3.0, filled_qty=0.0, mark_price=50.0,
             liquidation_price=55.0, bankruptcy_price=60.0, path="auction", leverage=10.0,
             maintenance_margin_rate=0.004, fee=0.0, insurance_fund_delta=0.0),
    ])


def trade(trade_id: int, t: dt.datetime, symbol: str, price: float, qty: float, side: str,
          liquidation_id: int | None) -> dict:
    return dict(ts=t, symbol=symbol, trade_id=trade_id, price=price, qty=qty, taker_side=side,
                taker_order_id=1000 + trade_id, maker_order_id=2000 + trade_id, taker_account=7,
                maker_account=8, taker_fee=0.0, maker_fee=0.0, liquidation_id=liquidation_id)


def trades() -> pl.DataFrame:
    return frame("trades", [
        trade(1, ts(10, 0, 1), "BTCUSDT", 99.0, 1.5, "sell", 1),
        trade(2, ts(10, 0, 2), "BTCUSDT", 98.0, 0.5, "sell", 1),
        trade(3, ts(11, 0, 1), "BTCUSDT", 100.5, 1.0, "buy", 2),
        trade(4, ts(12, 0, 1), "ETHUSDT", 49.9, 3.0, "sell", 3),
        trade(5, ts(12, 0, 4), "ETHUSDT", 49.5, 1.0, "sell", 3),
        trade(6, ts(9), "BTCUSDT", 100.0, 2.0, "buy", None),  # an ordinary trade
    ])


def book_depth() -> pl.DataFrame:
    rows = []
    for t, pct, notional in [
        (ts(9, 59), -1.0, 1000.0), (ts(9, 59), 1.0, 2000.0), (ts(9, 59), -0.2, 300.0),
        (ts(10), -1.0, 400.0),  # snapshot exactly at liquidation 1's trigger: used
        (ts(10, 0, 30), -1.0, 5.0),  # after the trigger: ignored
    ]:
        rows.append(dict(ts=t, symbol="BTCUSDT", percentage=pct, depth=notional / 100, notional=notional))
    return frame("book_depth", rows)


def instruments() -> pl.DataFrame:
    base = dict(quote="USDT", tick_size=0.1, lot_size=0.001, max_leverage=125.0, taker_fee_rate=0.0005,
                maker_fee_rate=0.0002, funding_interval_hours=8, funding_cap=0.003,
                index_sources=["a", "b", "c"], index_outlier_pct=0.05, index_stale_s=10.0,
                index_min_sources=3, liquidation_incremental_notional=1e6,
                liquidation_auction_discount=0.005)
    return frame("instruments", [
        dict(base, symbol="BTCUSDT", base="BTC", liquidation_fee_rate=0.005),
        dict(base, symbol="ETHUSDT", base="ETH", liquidation_fee_rate=0.01),
    ])


def risk_tiers() -> pl.DataFrame:
    rows = []
    for symbol, scale in (("BTCUSDT", 1.0), ("ETHUSDT", 0.5)):
        for t in margin.build_tiers(margin.BINANCE_BTC_2021, scale=scale):
            rows.append(dict(symbol=symbol, tier=t.tier, notional_floor=t.notional_floor,
                             notional_cap=t.notional_cap, max_leverage=t.max_leverage,
                             maintenance_margin_rate=t.maintenance_margin_rate,
                             maintenance_amount=t.maintenance_amount))
    return frame("risk_tiers", rows)


def insurance_fund() -> pl.DataFrame:
    return frame("insurance_fund", [
        dict(ts=ts(23, 59), pool="USDT", balance=1002.25),  # out of order on purpose
        dict(ts=ts(0), pool="USDT", balance=1000.0),
        dict(ts=ts(12), pool="USDT", balance=990.0),
    ])


def market_metrics() -> pl.DataFrame:
    base = dict(open_interest=1.0, long_short_account_ratio=1.0, taker_buy_sell_ratio=1.0)
    return frame("market_metrics", [
        dict(base, ts=ts(23, 55), symbol="ETHUSDT", open_interest_value=3000.0),
        dict(base, ts=ts(12), symbol="ETHUSDT", open_interest_value=2500.0),
        dict(base, ts=ts(0), symbol="BTCUSDT", open_interest_value=5000.0),
        dict(base, ts=ts(23, 55), symbol="BTCUSDT", open_interest_value=6000.0),
    ])


def row(frame: pl.DataFrame, **keys) -> dict:
    """The single row of `frame` matching keys."""
    sub = frame.filter(pl.all_horizontal([pl.col(k) == v for k, v in keys.items()]))
    assert sub.height == 1, (keys, sub)
    return sub.row(0, named=True)



@pytest.fixture
def ex() -> pl.DataFrame:
    return slippage.liquidation_executions(fx.liquidations(), fx.trades(), fx.book_depth())


def test_columns_and_one_row_per_liquidation(ex):
    assert ex.columns[0] == "date"
    assert dict(ex.schema) == slippage.EXECUTIONS_SCHEMA
    assert ex["liquidation_id"].to_list() == [1, 2, 3, 4]  # sorted by trigger time
    assert ex["date"].unique().to_list() == [fx.DAY]


def test_sell_two_fills_vwap_slippage_shortfall(ex):
    r = fx.row(ex, liquidation_id=1)
    # fills 1.5 @ 99 and 0.5 @ 98: notional 148.5 + 49 = 197.5, vwap = 197.5 / 2 = 98.75
    assert r["fill_count"] == 2
    assert r["filled_notional"] == approx(197.5)
    assert r["vwap"] == approx(98.75)
    # sell: (mark - vwap) / mark * 1e4 = (100 - 98.75) / 100 * 1e4 = 125 bps (adverse)
    assert r["slippage_bps"] == approx(125.0)
    # bankruptcy 98.5: the 98 fill (0.5) is below it; shortfall = |98 - 98.5| * 0.5 = 0.25
    assert r["beyond_bankruptcy_qty"] == approx(0.5)
    assert r["shortfall"] == approx(0.25)
    assert r["order_notional"] == approx(200.0)  # 2 * 100
    assert r["filled_notional_at_mark"] == approx(200.0)
    assert r["fill_ratio"] == approx(1.0)
    assert r["time_to_complete_s"] == approx(2.5)  # 10:00:00 -> 10:00:02.5
    # bids within 1 %: the snapshot at exactly 10:00 (400), not 09:59 (1000) nor 10:00:30 (5)
    assert r["depth_notional_1pct"] == approx(400.0)
    assert r["depth_ts"] == fx.ts(10)
    assert r["size_to_depth"] == approx(0.5)  # 200 / 400
    assert r["size_to_depth_bin"] == "0.5-1"  # lower bound inclusive


def test_depth_snapshot_rows_out_of_order_and_repeated():
    # The 10:00 bid row repeated later in the frame with another value: of a repeated snapshot
    # row the last one counts (800, not 400), whether the rows are in time order or not (the
    # second frame has them newest first); the latest snapshot at or before the trigger is used.
    book = fx.book_depth()
    repeated = book.filter(pl.col("ts") == fx.ts(10)).with_columns(pl.lit(800.0).alias("notional"))
    for depth in (pl.concat([book, repeated]).sort("ts", maintain_order=True),
                  pl.concat([book.reverse(), repeated])):
        ex = slippage.liquidation_executions(fx.liquidations(), fx.trades(), depth)
        r = fx.row(ex, liquidation_id=1)
        assert r["depth_ts"] == fx.ts(10) and r["depth_notional_1pct"] == approx(800.0)
        assert r["size_to_depth"] == approx(0.25)  # 200 / 800
        assert fx.row(ex, liquidation_id=2)["depth_notional_1pct"] == approx(2000.0)


def test_buy_closes_short(ex):
    r = fx.row(ex, liquidation_id=2)
    # one fill 1 @ 100.5; buy: (vwap - mark) / mark * 1e4 = 0.5 / 100 * 1e4 = 50 bps
    assert r["vwap"] == approx(100.5)
    assert r["slippage_bps"] == approx(50.0)
    # bankruptcy 103: 100.5 is not above it
    assert r["beyond_bankruptcy_qty"] == 0.0 and r["shortfall"] == 0.0
    # asks within 1 % from the 09:59 snapshot: 2000; size 100 / 2000 = 0.05
    assert r["depth_notional_1pct"] == approx(2000.0)
    assert r["size_to_depth"] == approx(0.05)
    assert r["size_to_depth_bin"] == "<0.1"
    assert r["time_to_complete_s"] == approx(1.0)


def test_partial_fill(ex):
    r = fx.row(ex, liquidation_id=3)
    # qty 10, filled 4: fill ratio 0.4; vwap over filled only: (3*49.9 + 1*49.5) / 4 = 199.2 / 4
    assert r["fill_ratio"] == approx(0.4)
    assert r["filled_notional"] == approx(199.2)
    assert r["vwap"] == approx(49.8)
    # (50 - 49.8) / 50 * 1e4 = 40 bps
    assert r["slippage_bps"] == approx(40.0)
    assert r["order_notional"] == approx(500.0)
    assert r["filled_notional_at_mark"] == approx(200.0)
    # no ETHUSDT book snapshot at all
    assert r["size_to_depth"] is None and r["size_to_depth_bin"] == slippage.NO_DEPTH_BIN


def test_unfilled_liquidation_keeps_its_row(ex):
    r = fx.row(ex, liquidation_id=4)
    assert r["fill_count"] == 0
    assert r["filled_notional"] == 0.0
    assert r["vwap"] is None and r["slippage_bps"] is None
    assert r["fill_ratio"] == 0.0
    assert r["order_notional"] == approx(150.0)


def test_by_path(ex):
    out = slippage.slippage_by_path(ex)
    assert dict(out.schema) == slippage.BY_PATH_SCHEMA
    r = fx.row(out, symbol="BTCUSDT", path="market")
    assert r["count"] == 2 and r["count_filled"] == 2
    assert r["notional"] == approx(298.0)  # 197.5 + 100.5
    # weighted by filled notional: (125 * 197.5 + 50 * 100.5) / 298 = 29712.5 / 298
    assert r["slippage_bps_wmean"] == approx(29712.5 / 298)
    # two values [50, 125], linear at position q * (n - 1): p50 = 87.5,
    # p95 = 50 + 0.95 * 75 = 121.25, p99 = 50 + 0.99 * 75 = 124.25; es95 = mean(>= 121.25) = 125
    assert r["slippage_bps_p50"] == approx(87.5)
    assert r["slippage_bps_p95"] == approx(121.25)
    assert r["slippage_bps_p99"] == approx(124.25)
    assert r["slippage_bps_max"] == approx(125.0)
    assert r["slippage_bps_es95"] == approx(125.0)
    assert r["fill_ratio"] == approx(1.0)  # 3 / 3
    # time to complete [2.5, 1.0]: p50 1.75, p95 1.0 + 0.95 * 1.5 = 2.425
    assert r["ttc_p50_s"] == approx(1.75)
    assert r["ttc_p95_s"] == approx(2.425)
    # beyond bankruptcy 0.5 of 3 filled
    assert r["beyond_bankruptcy_share"] == approx(0.5 / 3)
    assert r["shortfall"] == approx(0.25)

    unfilled = fx.row(out, symbol="ETHUSDT", path="auction")
    assert unfilled["count"] == 1 and unfilled["count_filled"] == 0
    assert unfilled["slippage_bps_wmean"] is None and unfilled["slippage_bps_p95"] is None
    assert unfilled["fill_ratio"] == 0.0 and unfilled["beyond_bankruptcy_share"] is None

    partial = fx.row(out, symbol="ETHUSDT", path="incremental")
    assert partial["fill_ratio"] == approx(0.4)
    # ALL roll-up per path: market is BTC only, so equal to the BTC row
    all_market = fx.row(out, symbol=slippage.ALL_SYMBOLS, path="market")
    assert all_market["slippage_bps_wmean"] == approx(29712.5 / 298)
    assert all_market["beyond_bankruptcy_share"] == approx(1 / 6)  # 0.5*100 / (3*100)
    assert out.filter(pl.col("symbol") == slippage.ALL_SYMBOLS).height == 3


def _synthetic(slips: list[float], symbol: str = "BTCUSDT", marks: list[float] | None = None,
               qty: list[float] | None = None, filled: list[float] | None = None) -> pl.DataFrame:
    n = len(slips)
    marks = marks or [100.0] * n
    qty = qty or [1.0] * n
    filled = filled or qty
    data = {c: [None] * n for c in slippage.EXECUTIONS_SCHEMA}
    data.update(date=[fx.DAY] * n, liquidation_id=list(range(n)), symbol=[symbol] * n,
                path=["market"] * n, side=["sell"] * n, slippage_bps=slips, mark_price=marks,
                qty=qty, filled_qty=filled, fill_count=[1] * n,
                filled_notional=[f * m for f, m in zip(filled, marks)],
                beyond_bankruptcy_qty=[0.0] * n, shortfall=[0.0] * n, time_to_complete_s=[1.0] * n,
                size_to_depth_bin=["<0.1"] * n)
    return pl.DataFrame(data, schema=slippage.EXECUTIONS_SCHEMA)


def test_quantiles_and_es95_small_set():
    out = slippage.slippage_by_path(_synthetic([10.0, 20.0, 30.0, 40.0, 100.0]))
    r = fx.row(out, symbol="BTCUSDT")
    # sorted [10, 20, 30, 40, 100], position q * 4: p50 = 30; p95 at 3.8 = 40 + 0.8 * 60 = 88;
    # p99 at 3.96 = 40 + 0.96 * 60 = 97.6; es95 = mean of values >= 88 = 100 (= max, n <= 20)
    assert r["slippage_bps_p50"] == approx(30.0)
    assert r["slippage_bps_p95"] == approx(88.0)
    assert r["slippage_bps_p99"] == approx(97.6)
    assert r["slippage_bps_es95"] == approx(100.0)
    assert r["slippage_bps_wmean"] == approx(40.0)  # equal notional: plain mean 200 / 5


def test_es95_with_21_values_averages_the_top_two():
    out = slippage.slippage_by_path(_synthetic([float(v) for v in range(1, 22)]))
    r = fx.row(out, symbol="BTCUSDT")
    # 1..21: p95 at position 0.95 * 20 = 19 -> 20 exactly; es95 = mean(20, 21) = 20.5
    assert r["slippage_bps_p95"] == approx(20.0)
    assert r["slippage_bps_es95"] == approx(20.5)
    assert r["slippage_bps_max"] == approx(21.0)


def test_all_rollup_weights_ratios_by_mark():
    a = _synthetic([10.0], symbol="BTCUSDT", marks=[100.0], qty=[2.0], filled=[1.0])
    b = _synthetic([30.0], symbol="ETHUSDT", marks=[10.0], qty=[10.0], filled=[10.0])
    out = slippage.slippage_by_path(pl.concat([a, b]))
    all_row = fx.row(out, symbol=slippage.ALL_SYMBOLS)
    # notional at mark: filled 1*100 + 10*10 = 200 of 2*100 + 10*10 = 300 -> 2/3
    assert all_row["fill_ratio"] == approx(2 / 3)
    # wmean over filled notional 100 (BTC) and 100 (ETH): (10 + 30) / 2 = 20
    assert all_row["slippage_bps_wmean"] == approx(20.0)
    assert fx.row(out, symbol="BTCUSDT")["fill_ratio"] == approx(0.5)  # quantity ratio 1 / 2


def test_by_depth_bin(ex):
    out = slippage.slippage_by_depth_bin(ex)
    assert dict(out.schema) == slippage.BY_DEPTH_BIN_SCHEMA
    assert fx.row(out, path="market", size_to_depth_bin="0.5-1")["slippage_bps_wmean"] == approx(125.0)
    assert fx.row(out, path="market", size_to_depth_bin="<0.1")["slippage_bps_p95"] == approx(50.0)
    r = fx.row(out, path="auction", size_to_depth_bin=slippage.NO_DEPTH_BIN)
    assert r["count"] == 1 and r["count_filled"] == 0 and r["slippage_bps_wmean"] is None
    # bins come out in size order within a path
    assert out.filter(pl.col("path") == "market")["size_to_depth_bin"].to_list() == ["<0.1", "0.5-1"]


def test_empty_day():
    ex = slippage.liquidation_executions(fx.frame("liquidations", []), fx.frame("trades", []),
                                         fx.frame("book_depth", []))
    assert ex.height == 0 and dict(ex.schema) == slippage.EXECUTIONS_SCHEMA
    assert slippage.slippage_by_path(ex).height == 0
    assert dict(slippage.slippage_by_depth_bin(ex).schema) == slippage.BY_DEPTH_BIN_SCHEMA


def test_fill_qty_disagreeing_with_filled_qty_raises():
    liq = fx.liquidations().with_columns(
        pl.when(pl.col("liquidation_id") == 3).then(4.5).otherwise(pl.col("filled_qty")).alias("filled_qty"))
    with pytest.raises(ValueError, match=r"liquidation_id 3\b.*sum to qty 4\.0 but filled_qty is 4\.5"):
        slippage.liquidation_executions(liq, fx.trades(), fx.book_depth())


def test_filled_qty_without_fills_raises():
    trades = fx.trades().filter(pl.col("liquidation_id") != 2)
    with pytest.raises(ValueError, match=r"liquidation_id 2\b"):
        slippage.liquidation_executions(fx.liquidations(), trades, fx.book_depth())


def test_fill_within_relative_tolerance_is_accepted():
    liq = fx.liquidations().with_columns(
        pl.when(pl.col("liquidation_id") == 1).then(2.0 * (1 + 1e-12)).otherwise(pl.col("filled_qty"))
        .alias("filled_qty"))
    assert slippage.liquidation_executions(liq, fx.trades(), fx.book_depth()).height == 4


def test_fill_with_unknown_liquidation_raises():
    extra = fx.frame("trades", [fx.trade(99, fx.ts(14), "BTCUSDT", 100.0, 1.0, "sell", 77)])
    with pytest.raises(ValueError, match=r"liquidation_id \[77\] absent from liquidations"):
        slippage.liquidation_executions(fx.liquidations(), pl.concat([fx.trades(), extra]), fx.book_depth())


def test_fill_on_another_symbol_raises():
    trades = fx.trades().with_columns(
        pl.when(pl.col("trade_id") == 3).then(pl.lit("ETHUSDT")).otherwise(pl.col("symbol")).alias("symbol"))
    with pytest.raises(ValueError, match=r"liquidation_id 2\b.*'ETHUSDT'"):
        slippage.liquidation_executions(fx.liquidations(), trades, fx.book_depth())


def test_docstrings_state_formulas():
    assert slippage.METHOD == slippage.__doc__
    for fn in (slippage.liquidation_executions, slippage.slippage_by_path, slippage.slippage_by_depth_bin):
        assert fn.__doc__ and "=" in fn.__doc__
