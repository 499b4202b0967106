"""Forced-execution cost, insurance-fund flows and margin sensitivity (DESIGN 4.2), worked by hand.

Frame builders come from test_slippage.py (fixture day 2024-03-01)."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_slippage as fx  # noqa: E402

from venue_risk import margin  # noqa: E402
from venue_risk.metrics import forced_cost, slippage  # noqa: E402

approx = pytest.approx
BTC_TIERS = margin.build_tiers(margin.BINANCE_BTC_2021)


@pytest.fixture
def costs() -> pl.DataFrame:
    ex = slippage.liquidation_executions(fx.liquidations(), fx.trades(), fx.book_depth())
    return forced_cost.forced_costs(ex, fx.instruments(), fx.risk_tiers())


def _twenty_x_liquidation() -> tuple[pl.DataFrame, pl.DataFrame]:
    """A 20x long on BTC: entry 31,500, size 10, isolated margin 31,500 * 10 / 20 = 15,750,
    bankruptcy 31,500 - 15,750 / 10 = 29,925; liquidated at mark 30,000 (notional 300,000,
    tier 3: 250k-1M, MMR 1 %), filled 10 @ 29,970."""
    liq = fx.frame("liquidations", [dict(
        liquidation_id=5, ts_trigger=fx.ts(15), ts_done=fx.ts(15, 0, 1), account=9, symbol="BTCUSDT",
        side="sell", qty=10.0, filled_qty=10.0, mark_price=30_000.0, liquidation_price=30_000.0,
        bankruptcy_price=margin.bankruptcy_price(10.0, 31_500.0, 15_750.0), path="market",
        margin_mode="isolated", leverage=20.0, maintenance_margin_rate=0.01, fee=1498.5,
        insurance_fund_delta=1498.5)])
    trades = fx.frame("trades", [fx.trade(50, fx.ts(15, 0, 1), "BTCUSDT", 29_970.0, 10.0, "sell", 5)])
    return liq, trades


def test_twenty_x_position_on_btc_tiers():
    liq, trades = _twenty_x_liquidation()
    assert liq["bankruptcy_price"][0] == approx(29_925.0)
    ex = slippage.liquidation_executions(liq, trades, fx.frame("book_depth", []))
    # (30,000 - 29,970) / 30,000 * 1e4 = 10 bps
    assert ex["slippage_bps"][0] == approx(10.0)
    c = forced_cost.forced_costs(ex, fx.instruments(), fx.risk_tiers()).row(0, named=True)
    # notional 10 * 30,000 = 300,000 -> tier 3 (MMR 1 %); next tier 2.5 % -> increment 1.5 %
    assert c["position_notional"] == approx(300_000.0)
    assert c["tier"] == 3 and c["tier_mmr"] == approx(0.01)
    assert c["mmr_increment"] == approx(0.015)
    # fee charged 1,498.5 (0.5 % of the 299,700 filled) over 300,000 at mark = 0.004995;
    # cost_rate = 0.004995 + 10 bps = 0.005995
    assert c["cost_rate"] == approx(0.005995)
    # equity lost = fee 1,498.5 + (30,000 - 29,970) x 10 = 1,798.5
    assert c["equity_lost"] == approx(1_798.5)
    # initial margin: 0.005995 * 20 = 0.1199 (12 % of the margin posted)
    assert c["pct_initial_margin"] == approx(0.1199)
    # maintenance buffer: 0.005995 / 0.01 = 0.5995; margin steps 0.005995 / 0.015 = 0.39967
    assert c["buffer_share"] == approx(0.5995)
    assert c["margin_steps"] == approx(0.005995 / 0.015)


THREE_TIERS = margin.build_tiers(((50_000, 125, 0.004), (250_000, 100, 0.005), (1_000_000, 50, 0.01)))


def _three_tier_frame(tiers=THREE_TIERS, symbol="BTCUSDT") -> pl.DataFrame:
    return fx.frame("risk_tiers", [dict(symbol=symbol, tier=t.tier, notional_floor=t.notional_floor,
                                        notional_cap=t.notional_cap, max_leverage=t.max_leverage,
                                        maintenance_margin_rate=t.maintenance_margin_rate,
                                        maintenance_amount=t.maintenance_amount) for t in tiers])


def _sliced_then_backstop() -> tuple[pl.DataFrame, pl.DataFrame]:
    """A 3 BTC long (notional 3 x 40,000 = 120,000: tier 2, MMR 0.5 %) liquidated at mark 40,000 by
    two incremental slices, 1.5 (id 11) and 1.0 (id 12), then a backstop of the remaining 0.5
    (id 13). Every row records the position's maintenance_margin_rate 0.005. Plus id 14, another
    account, recorded rate 0.0045 (no tier has it): qty 2.5 at 40,000 = 100,000."""
    base = dict(account=9, symbol="BTCUSDT", side="sell", mark_price=40_000.0, liquidation_price=40_000.0,
                bankruptcy_price=39_700.0, margin_mode="isolated", leverage=50.0,
                maintenance_margin_rate=0.005)
    liq = fx.frame("liquidations", [
        dict(base, liquidation_id=11, ts_trigger=fx.ts(15), ts_done=fx.ts(15, 0, 1), qty=1.5,
             filled_qty=1.5, path="incremental", fee=300.0, insurance_fund_delta=300.0),
        dict(base, liquidation_id=12, ts_trigger=fx.ts(15, 0, 2), ts_done=fx.ts(15, 0, 3), qty=1.0,
             filled_qty=1.0, path="incremental", fee=200.0, insurance_fund_delta=200.0),
        dict(base, liquidation_id=13, ts_trigger=fx.ts(15, 0, 4), ts_done=fx.ts(15, 0, 5), qty=0.5,
             filled_qty=0.5, path="backstop", fee=40.0, insurance_fund_delta=40.0),
        dict(base, liquidation_id=14, account=10, ts_trigger=fx.ts(16), ts_done=fx.ts(16, 0, 1), qty=2.5,
             filled_qty=2.5, path="market", maintenance_margin_rate=0.0045, fee=0.0, insurance_fund_delta=0.0),
    ])
    trades = fx.frame("trades", [
        fx.trade(60, fx.ts(15, 0, 1), "BTCUSDT", 39_980.0, 1.5, "sell", 11),
        fx.trade(61, fx.ts(15, 0, 3), "BTCUSDT", 39_960.0, 1.0, "sell", 12),
        fx.trade(62, fx.ts(15, 0, 5), "BTCUSDT", 39_800.0, 0.5, "sell", 13),
        fx.trade(63, fx.ts(16, 0, 1), "BTCUSDT", 40_000.0, 2.5, "sell", 14),
    ])
    return liq, trades


def test_backstop_after_incremental_slices_keeps_the_position_tier():
    liq, trades = _sliced_then_backstop()
    ex = slippage.liquidation_executions(liq, trades, fx.frame("book_depth", []))
    costs = forced_cost.forced_costs(ex, fx.instruments(), _three_tier_frame())
    back = fx.row(costs, liquidation_id=13)
    # remainder 0.5 x 40,000 = 20,000: inside tier 1 (0-50k, MMR 0.4 %) by notional; the old code
    # took that tier: tier 1, tier_mmr 0.004, increment 0.005 - 0.004 = 0.001, steps 0.007 / 0.001 = 7.0
    assert back["position_notional"] == approx(20_000.0)
    # fee 40 / 20,000 = 0.002; slippage (40,000 - 39,800) / 40,000 x 1e4 = 50 bps = 0.005;
    # cost_rate = 0.002 + 0.005 = 0.007
    assert back["fee_rate_charged"] == approx(0.002)
    assert back["cost_rate"] == approx(0.007)
    # the recorded rate 0.005 is tier 2's (50k-250k): tier 2, increment 0.01 - 0.005 = 0.005
    assert back["tier"] == 2 and back["tier_basis"] == "recorded_mmr"
    assert back["tier_mmr"] == approx(0.005) and back["mmr_increment"] == approx(0.005)
    # margin steps = 0.007 / 0.005 = 1.4; buffer share = 0.007 / 0.005 = 1.4: one tier, both columns
    assert back["margin_steps"] == approx(1.4)
    assert back["buffer_share"] == approx(0.007 / 0.005)
    # the slices keep tier 2 too: 1.5 x 40,000 = 60,000 (tier 2 by notional as well) and
    # 1.0 x 40,000 = 40,000 (tier 1 by notional; old code: increment 0.001)
    # slice 12: fee 200 / 40,000 = 0.005, slippage (40,000 - 39,960) / 40,000 = 10 bps -> 0.006;
    # steps 0.006 / 0.005 = 1.2 (old: 0.006 / 0.001 = 6.0)
    for lid in (11, 12):
        assert fx.row(costs, liquidation_id=lid)["tier"] == 2
    assert fx.row(costs, liquidation_id=12)["margin_steps"] == approx(0.006 / 0.005)
    # id 14 records 0.0045, no tier's rate: fallback to the notional 2.5 x 40,000 = 100,000 -> tier 2
    other = fx.row(costs, liquidation_id=14)
    assert other["tier"] == 2 and other["tier_basis"] == "notional"
    assert other["margin_steps"] == approx(0.0)  # no fee, fill at mark: cost 0
    assert dict(costs.schema) == forced_cost.COSTS_SCHEMA


def test_tier_falls_back_to_notional_when_tiers_share_the_recorded_rate():
    # tiers 1 and 2 both at 0.5 %: the recorded 0.005 does not say which; notional 20,000 -> tier 1,
    # whose next tier has the same rate (increment 0.005 - 0.005 = 0)
    shared = margin.build_tiers(((50_000, 125, 0.005), (250_000, 100, 0.005), (1_000_000, 50, 0.01)))
    liq, trades = _sliced_then_backstop()
    ex = slippage.liquidation_executions(liq, trades, fx.frame("book_depth", []))
    costs = forced_cost.forced_costs(ex, fx.instruments(), _three_tier_frame(shared))
    back = fx.row(costs, liquidation_id=13)
    assert back["tier"] == 1 and back["tier_basis"] == "notional" and back["mmr_increment"] == approx(0.0)
    # slice 11: notional 60,000 -> tier 2 (fallback too), increment 0.01 - 0.005 = 0.005;
    # cost 300 / 60,000 + (40,000 - 39,980) / 40,000 = 0.005 + 0.0005 = 0.0055 -> 1.1 steps
    s11 = fx.row(costs, liquidation_id=11)
    assert s11["tier"] == 2 and s11["tier_basis"] == "notional" and s11["margin_steps"] == approx(1.1)


def test_fill_beyond_bankruptcy_exceeds_buffer(costs):
    c = fx.row(costs, liquidation_id=1)
    # beyond bankruptcy no fee is charged (fee 0): cost = slippage 125 bps
    assert c["fee_rate_charged"] == approx(0.0)
    assert c["cost_rate"] == approx(0.0125)
    assert c["equity_lost"] == approx(0.0125 * 200)  # 2.5
    assert c["pct_initial_margin"] == approx(1.25)  # 100x: 125 % of initial margin
    assert c["buffer_share"] == approx(2.5) and c["buffer_share"] > 1  # 0.0125 / 0.005
    # recorded MMR 0.5 % -> the position's tier is tier 2 (50k-250k), although the notional put
    # into this liquidation, 2 x 100 = 200, lies in tier 1; next tier 1 %: increment 0.5 %;
    # margin steps 0.0125 / 0.005 = 2.5 (the old notional-based tier gave tier 1, 12.5 steps)
    assert c["tier"] == 2 and c["tier_mmr"] == approx(0.005) and c["tier_basis"] == "recorded_mmr"
    assert c["mmr_increment"] == approx(0.005) and c["margin_steps"] == approx(2.5)


def test_cost_uses_the_fee_actually_charged(costs):
    c = fx.row(costs, liquidation_id=2)
    # fee 0.5 charged on a fill of 1 (mark 100): rate 0.5 / 100; slippage +50 bps (buy above mark)
    fee_rate = 0.5 / 100
    assert c["liquidation_fee_rate"] == approx(0.005)  # the instrument's rate, kept for reference
    assert c["fee_rate_charged"] == approx(fee_rate)
    assert c["cost_rate"] == approx(fee_rate + 0.005)
    assert c["buffer_share"] == approx((fee_rate + 0.005) / 0.01)  # 1.0: all of the buffer, no more
    # equity lost = fee + (vwap - mark) x qty = 0.5 + 0.5
    assert c["equity_lost"] == approx(1.0)


def test_unfilled_has_no_cost(costs):
    c = fx.row(costs, liquidation_id=4)
    assert c["cost_rate"] is None and c["equity_lost"] is None and c["buffer_share"] is None
    assert costs.height == 4 and dict(costs.schema) == forced_cost.COSTS_SCHEMA


def test_cost_by_path(costs):
    out = forced_cost.forced_cost_by_path(costs)
    assert dict(out.schema) == forced_cost.COST_BY_PATH_SCHEMA
    r = fx.row(out, symbol="BTCUSDT", path="market")
    # liquidation 1: cost 0.0125 on 200 at mark (lost 2.5), 100x, MMR 0.005 -> buffer 2.5
    # liquidation 2: cost c2 = 0.5/100 + 0.005 = 0.01 on 100 (lost 1.0), 50x, MMR 0.01 -> buffer 1.0
    c2 = 0.5 / 100 + 0.005
    assert r["count"] == 2 and r["count_filled"] == 2
    assert r["equity_lost"] == approx(2.5 + 100 * c2)
    assert r["filled_notional_at_mark"] == approx(300.0)
    assert r["cost_rate_wmean"] == approx((2.5 + 100 * c2) / 300)
    assert r["cost_rate_p95"] == approx(c2 + 0.95 * (0.0125 - c2))
    assert r["pct_initial_margin_p50"] == approx((50 * c2 + 1.25) / 2)
    assert r["pct_initial_margin_p95"] == approx(50 * c2 + 0.95 * (1.25 - 50 * c2))
    assert r["buffer_share_p50"] == approx((100 * c2 + 2.5) / 2)
    assert r["buffer_share_p95"] == approx(100 * c2 + 0.95 * (2.5 - 100 * c2))
    assert r["buffer_share_max"] == approx(2.5)
    assert r["buffer_exceeded_count"] == 1  # 1.0 is not above 1
    unfilled = fx.row(out, symbol="ETHUSDT", path="auction")
    assert unfilled["count"] == 1 and unfilled["count_filled"] == 0 and unfilled["equity_lost"] == 0.0
    assert fx.row(out, symbol="ALL", path="market")["equity_lost"] == approx(2.5 + 100 * c2)


def test_sensitivity_at_50x_and_100x():
    tiers = fx.risk_tiers().filter(pl.col("symbol") == "BTCUSDT")
    out = forced_cost.margin_sensitivity(tiers, "BTCUSDT")
    assert dict(out.schema) == forced_cost.SENSITIVITY_SCHEMA
    assert out.height == 5 * 4
    # 100x -> tier 2 (50k-250k, MMR 0.5 %), next tier 1 %: increment 0.5 %
    r = fx.row(out, leverage=100.0, extra_bps=5.0)
    assert r["tier"] == 2 and r["maintenance_margin_rate"] == approx(0.005)
    assert r["mmr_increment"] == approx(0.005)
    assert r["initial_margin_share"] == approx(0.05)  # 0.0005 * 100
    assert r["buffer_share"] == approx(0.1)  # 0.0005 / 0.005
    assert r["margin_steps"] == approx(0.1)  # 0.0005 / 0.005
    r = fx.row(out, leverage=100.0, extra_bps=10.0)
    assert (r["initial_margin_share"], r["buffer_share"], r["margin_steps"]) == (approx(0.1), approx(0.2), approx(0.2))
    # 50x -> tier 3 (250k-1M, MMR 1 %), next 2.5 %: increment 1.5 %
    r = fx.row(out, leverage=50.0, extra_bps=5.0)
    assert r["tier"] == 3 and r["tier_notional_cap"] == approx(1_000_000.0)
    assert r["initial_margin_share"] == approx(0.025)  # 0.0005 * 50
    assert r["buffer_share"] == approx(0.05)  # 0.0005 / 0.01
    assert r["margin_steps"] == approx(0.0005 / 0.015)  # 1/30
    r = fx.row(out, leverage=50.0, extra_bps=1.0)
    assert (r["initial_margin_share"], r["buffer_share"]) == (approx(0.005), approx(0.01))
    # the other leverages' tiers: 20x tier 4, 10x tier 5, 5x tier 6 (MMR 10 %, increment 2.5 %)
    assert fx.row(out, leverage=20.0, extra_bps=1.0)["tier"] == 4
    assert fx.row(out, leverage=10.0, extra_bps=1.0)["tier"] == 5
    r = fx.row(out, leverage=5.0, extra_bps=10.0)
    assert r["tier"] == 6 and r["mmr_increment"] == approx(0.025) and r["margin_steps"] == approx(0.04)


def test_sensitivity_last_tier_and_unreachable_leverage():
    tiers = fx.risk_tiers()
    out = forced_cost.margin_sensitivity(tiers, "BTCUSDT", extra_bps=(10,), leverages=(1, 200))
    last = fx.row(out, leverage=1.0)
    # 1x -> tier 10 (MMR 50 %), the last: increment = 50 % - 25 % (previous tier)
    assert last["tier"] == 10 and last["mmr_increment"] == approx(0.25)
    assert last["margin_steps"] == approx(0.001 / 0.25)
    none = fx.row(out, leverage=200.0)
    assert none["tier"] is None and none["buffer_share"] is None
    with pytest.raises(ValueError, match="XRPUSDT"):
        forced_cost.margin_sensitivity(tiers, "XRPUSDT")


def test_mmr_increment_helper():
    assert forced_cost.mmr_increment(BTC_TIERS, BTC_TIERS[3]) == approx(0.025)  # 5 % - 2.5 %
    assert forced_cost.mmr_increment(BTC_TIERS, BTC_TIERS[-1]) == approx(0.25)


def test_insurance_fund_flows():
    out = forced_cost.insurance_fund_flows(fx.liquidations(), fx.insurance_fund())
    assert dict(out.schema) == forced_cost.FUND_FLOWS_SCHEMA
    r = out.row(0, named=True)
    assert out.height == 1 and r["pool"] == "USDT" and r["date"] == fx.DAY
    # deltas: -0.25 (bankrupt fill), +0.5 (fee), null -> fee 2.0, 0 (unfilled)
    assert r["liquidation_count"] == 4
    assert r["inflow"] == approx(2.5)  # 0.5 + 2.0
    assert r["outflow"] == approx(0.25)
    assert r["net"] == approx(2.25)
    assert r["fees"] == approx(2.5)  # 0 + 0.5 + 2.0 + 0
    # snapshots given out of order: 00:00 1000, 12:00 990, 23:59 1002.25
    assert r["balance_open"] == approx(1000.0)
    assert r["balance_close"] == approx(1002.25)
    assert r["balance_min"] == approx(990.0)
    # 1002.25 - 1000 - 2.25 = 0: the fund moved only by liquidations
    assert r["check_diff"] == approx(0.0, abs=1e-9)


def test_insurance_fund_flows_pools():
    two_pools = fx.frame("insurance_fund", [
        dict(ts=fx.ts(0), pool="BTCUSDT", balance=100.0), dict(ts=fx.ts(23), pool="BTCUSDT", balance=100.25),
        dict(ts=fx.ts(0), pool="ETHUSDT", balance=50.0), dict(ts=fx.ts(23), pool="ETHUSDT", balance=53.0),
    ])
    out = forced_cost.insurance_fund_flows(fx.liquidations(), two_pools)  # pools named by symbol
    btc, eth = fx.row(out, pool="BTCUSDT"), fx.row(out, pool="ETHUSDT")
    assert btc["net"] == approx(0.25)  # -0.25 + 0.5
    assert btc["check_diff"] == approx(0.0)
    assert eth["net"] == approx(2.0) and eth["check_diff"] == approx(1.0)  # 3 - 2: a top-up
    other = two_pools.with_columns(pl.col("pool").str.replace("USDT", "-pool"))
    with pytest.raises(ValueError, match="pools mapping"):
        forced_cost.insurance_fund_flows(fx.liquidations(), other)
    mapped = forced_cost.insurance_fund_flows(
        fx.liquidations(), other, pools={"BTCUSDT": "BTC-pool", "ETHUSDT": "ETH-pool"})
    assert fx.row(mapped, pool="ETH-pool")["inflow"] == approx(2.0)


def test_missing_instrument_or_tiers_raise():
    ex = slippage.liquidation_executions(fx.liquidations(), fx.trades(), fx.book_depth())
    with pytest.raises(ValueError, match=r"instrument row for symbol\(s\) \['ETHUSDT'\]"):
        forced_cost.forced_costs(ex, fx.instruments().filter(pl.col("symbol") == "BTCUSDT"), fx.risk_tiers())
    with pytest.raises(ValueError, match=r"no tiers for symbol\(s\) \['ETHUSDT'\]"):
        forced_cost.forced_costs(ex, fx.instruments(), fx.risk_tiers().filter(pl.col("symbol") == "BTCUSDT"))


def test_docstrings_state_formulas():
    assert forced_cost.METHOD == forced_cost.__doc__
    for fn in (forced_cost.forced_costs, forced_cost.forced_cost_by_path,
               forced_cost.insurance_fund_flows, forced_cost.margin_sensitivity):
        assert fn.__doc__ and "=" in fn.__doc__
