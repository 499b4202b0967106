"""Cross-margin correlation stress (DESIGN 4.8), worked by hand.

Tiers: margin.build_tiers(BINANCE_BTC_2021) for every symbol; the maintenance amounts are
tier 3 (250k-1M, MMR 1 %) 1,300 and tier 4 (1M-10M, MMR 2.5 %) 16,300, so MM(N) = 0.01 N - 1,300
for N in [250k, 1M) and 0.025 N - 16,300 in [1M, 10M).

Account 1 (the brief's case): long BTC 20 @ 50,000 (w = +1,000,000), short ETH 120 @ 2,500
(w = -300,000), entries at mark, wallet 35,000; horizon vols BTC 2 %, ETH 3 %, corr 0.8
(horizon_min = 1, so vol_1m is the horizon vol).
  equity = 35,000; MM = 8,700 + 1,700 = 10,400.
  Sigma w = (0.0004 x 1e6 - 0.8 x 0.0006 x 3e5, 0.8 x 0.0006 x 1e6 - 0.0009 x 3e5) = (256, 210)
  w' Sigma w = 4e8 + 8.1e7 - 2 x 0.8 x 1e6 x 3e5 x 0.02 x 0.03 = 1.93e8, sigma_p = 13,892.44.
  empirical k=2: loss 27,784.9, equity after 7,215.1; r = -2 (256, 210) / sigma_p
    = (-3.6854 %, -3.0232 %): BTC 963,146 -> MM 8,331.5, ETH 290,930 -> MM 1,609.3:
    MM 9,940.8 -> breach. Without BTC: 35,000 + 9,069.6 > MM(ETH): saved; without ETH:
    35,000 - 36,854 < 0. Trigger BTC (removal avoids the breach).
  corr-one down k=2: BTC -4 %, ETH -6 %: P&L -40,000 + 18,000 = -22,000, equity 13,000;
    MM 8,300 + 1,520 = 9,820: no breach; largest loss BTC.
  corr-one up k=2: P&L +22,000, equity 57,000; MM (1.04M: 26,000 - 16,300 = 9,700) + 1,880
    = 11,580: no breach; largest loss ETH (the short loses 18,000).
  corr-one down k=3: equity 35,000 - 33,000 = 2,000; MM 8,100 + 1,430 = 9,530: breach; without
    ETH still a breach, without BTC 62,000 > 1,430: trigger BTC; notional at risk 940,000 + 273,000.
Account 2 (a small hedge that is the trigger at correlation one): long BTC 20 @ 50,000, long
PAXG 100 @ 3,000 (w = 300,000, a gold hedge with corr -0.5 to BTC, vol 1 %), wallet 75,000.
  empirical k=3: w' Sigma w = 4e8 + 9e6 - 6e7 = 3.49e8, sigma_p = 18,681.6, loss 56,044.9,
    equity 18,955.1; r = -3 (370, -70) / sigma_p: BTC 940,583 -> 8,105.8, PAXG 303,372 ->
    1,733.7: no breach; largest loss BTC.
  corr-one down k=3: BTC -6 %, PAXG -3 %: loss 69,000, equity 6,000 <= MM 8,100 + 1,610: breach.
    Without PAXG 15,000 > 8,100 and without BTC 66,000 > 1,610 both save it: the smallest,
    PAXG, is the trigger.
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from venue_risk import margin
from venue_risk.metrics import cross_margin as cm

approx = pytest.approx
DAY = dt.date(2026, 11, 1)
T = dt.datetime(2026, 11, 1, 23, 59, 59, tzinfo=dt.timezone.utc)
TIERS = margin.build_tiers(margin.BINANCE_BTC_2021)


def risk_tiers(symbols):
    return pl.DataFrame([dict(symbol=s, tier=t.tier, notional_floor=t.notional_floor,
                              notional_cap=t.notional_cap, max_leverage=t.max_leverage,
                              maintenance_margin_rate=t.maintenance_margin_rate,
                              maintenance_amount=t.maintenance_amount)
                         for s in symbols for t in TIERS])


def inputs():
    pos = pl.DataFrame({
        "date": [DAY] * 5, "account": [1, 1, 2, 2, 3],
        "symbol": ["BTCUSDT", "ETHUSDT", "BTCUSDT", "PAXGUSDT", "BTCUSDT"],
        "size": [20.0, -120.0, 20.0, 100.0, 1.0],
        "entry_price": [50_000.0, 2_500.0, 50_000.0, 3_000.0, 40_000.0],
        "margin_mode": ["cross", "cross", "cross", "cross", "isolated"],
        "leverage": [3.0] * 5, "isolated_margin": [0.0, 0.0, 0.0, 0.0, 1_000.0]})
    accounts = pl.DataFrame({"date": [DAY] * 3, "account": [1, 2, 3],
                             "wallet_balance": [35_000.0, 75_000.0, 5_000.0],
                             "is_market_maker": [False] * 3})
    marks = pl.DataFrame({"ts": [T] * 3, "symbol": ["BTCUSDT", "ETHUSDT", "PAXGUSDT"],
                          "mark_price": [50_000.0, 2_500.0, 3_000.0]})
    vols = pl.DataFrame({"symbol": ["BTCUSDT", "ETHUSDT", "PAXGUSDT"], "vol_1m": [0.02, 0.03, 0.01]})
    corr = pl.DataFrame({"symbol_a": ["BTCUSDT", "BTCUSDT"], "symbol_b": ["ETHUSDT", "PAXGUSDT"],
                         "corr": [0.8, -0.5]})
    return pos, accounts, marks, risk_tiers(["BTCUSDT", "ETHUSDT", "PAXGUSDT"]), vols, corr


@pytest.fixture(scope="module")
def stress():
    return cm.stress_cross_accounts(*inputs(), k_sigma=(1, 2, 3), horizon_min=1)


def row(stress, account, scenario, k):
    r = stress.filter((pl.col("account") == account) & (pl.col("scenario") == scenario)
                      & (pl.col("k_sigma") == k))
    assert r.height == 1
    return r.row(0, named=True)


def test_output_shape(stress):
    assert list(stress.columns) == list(cm.STRESS_SCHEMA)
    assert stress["date"].unique().to_list() == [DAY]
    assert sorted(stress["account"].unique().to_list()) == [1, 2]  # account 3 is isolated only
    assert stress.height == 2 * 3 * 3


def test_empirical_two_positions(stress):
    sp = math.sqrt(1.93e8)
    r = row(stress, 1, "empirical", 2)
    assert r["equity"] == approx(35_000) and r["mm"] == approx(10_400)
    assert r["portfolio_sigma"] == approx(sp) and sp == approx(13_892.44, abs=0.01)
    assert r["equity_after"] == approx(35_000 - 2 * sp)
    btc, eth = 1e6 * (1 - 2 * 256 / sp), 3e5 * (1 - 2 * 210 / sp)
    assert r["mm_after"] == approx(0.01 * btc - 1_300 + 0.01 * eth - 1_300)
    assert r["mm_after"] == approx(9_940.76, abs=0.01)
    assert r["breach"] is True
    assert r["liquidation_notional_at_risk"] == approx(btc + eth)
    assert (r["trigger_symbol"], r["trigger_reason"]) == ("BTCUSDT", "removal_avoids_breach")


def test_correlation_one_two_positions(stress):
    down = row(stress, 1, "corr_one_down", 2)
    assert down["pnl"] == approx(-22_000)
    assert down["equity_after"] == approx(13_000) and down["mm_after"] == approx(9_820)
    assert down["breach"] is False and down["liquidation_notional_at_risk"] == 0
    assert (down["trigger_symbol"], down["trigger_reason"]) == ("BTCUSDT", "largest_loss")
    up = row(stress, 1, "corr_one_up", 2)
    assert up["equity_after"] == approx(57_000) and up["mm_after"] == approx(11_580)
    assert up["breach"] is False and up["trigger_symbol"] == "ETHUSDT"
    d3 = row(stress, 1, "corr_one_down", 3)
    assert d3["equity_after"] == approx(2_000) and d3["mm_after"] == approx(9_530)
    assert d3["breach"] is True
    assert (d3["trigger_symbol"], d3["trigger_reason"]) == ("BTCUSDT", "removal_avoids_breach")
    assert d3["liquidation_notional_at_risk"] == approx(940_000 + 273_000)


def test_small_hedge_becomes_trigger_at_correlation_one(stress):
    sp = math.sqrt(3.49e8)
    emp = row(stress, 2, "empirical", 3)
    assert emp["equity_after"] == approx(75_000 - 3 * sp)
    btc, pax = 1e6 * (1 - 3 * 370 / sp), 3e5 * (1 + 3 * 70 / sp)
    assert emp["mm_after"] == approx(0.01 * btc - 1_300 + 0.01 * pax - 1_300)
    assert emp["breach"] is False and emp["trigger_symbol"] == "BTCUSDT"
    one = row(stress, 2, "corr_one_down", 3)
    assert one["equity_after"] == approx(6_000) and one["mm_after"] == approx(9_710)
    assert one["breach"] is True
    assert (one["trigger_symbol"], one["trigger_reason"]) == ("PAXGUSDT", "removal_avoids_breach")
    assert one["trigger_notional"] == approx(300_000)
    assert one["largest_loss_symbol"] == "BTCUSDT"


def test_summary(stress):
    s = cm.stress_summary(stress)
    assert list(s.columns) == list(cm.SUMMARY_SCHEMA)
    r = s.filter((pl.col("scenario") == "corr_one_down") & (pl.col("k_sigma") == 3)).row(0, named=True)
    assert (r["accounts"], r["accounts_breaching"]) == (2, 2)
    assert r["equity_at_risk"] == approx(110_000)
    assert r["liquidation_notional_at_risk"] == approx(940_000 + 273_000 + 940_000 + 291_000)
    assert r["trigger_symbols"] == ["BTCUSDT", "PAXGUSDT"]
    r1 = s.filter((pl.col("scenario") == "corr_one_up") & (pl.col("k_sigma") == 1)).row(0, named=True)
    assert r1["accounts_breaching"] == 0 and r1["equity_at_risk"] == 0


def test_return_stats():
    base = dt.datetime(2026, 11, 1, 0, 0, 30, tzinfo=dt.timezone.utc)
    a = [100.0, 101.0, 100.0, 102.0]
    b = [10.0, 10.1, 10.0, 10.2]  # same returns as a
    c = [100.0, 100.0 / 1.01, 100.0, 100.0 / 1.02]  # the opposite log returns
    rows = []
    for i in range(4):
        t = base + dt.timedelta(minutes=i)
        rows += [dict(ts=t, symbol="A", mark_price=a[i]), dict(ts=t, symbol="B", mark_price=b[i]),
                 dict(ts=t, symbol="C", mark_price=c[i]),
                 dict(ts=t - dt.timedelta(seconds=20), symbol="A", mark_price=1.0)]  # not last
    vols, corr = cm.return_stats(pl.DataFrame(rows))
    r = [math.log(101 / 100), math.log(100 / 101), math.log(102 / 100)]
    m = sum(r) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in r) / 2)
    va = vols.filter(pl.col("symbol") == "A").row(0, named=True)
    assert va["vol_1m"] == approx(sd) and va["n_returns"] == 3 and va["last_mark"] == 102.0
    assert va["date"] == DAY
    get = {(x, y): v for x, y, v in corr.select("symbol_a", "symbol_b", "corr").iter_rows()}
    assert get[("A", "B")] == approx(1.0) and get[("A", "C")] == approx(-1.0)
    assert get[("A", "A")] == approx(1.0) and corr.height == 9


def test_missing_vol_raises():
    pos, accounts, marks, tiers, vols, corr = inputs()
    with pytest.raises(ValueError, match="PAXGUSDT"):
        cm.stress_cross_accounts(pos, accounts, marks, tiers, vols.filter(pl.col("symbol") != "PAXGUSDT"),
                                 corr, horizon_min=1)
