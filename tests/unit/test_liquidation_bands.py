"""Liquidation bands, time in band and liquidations-at-risk (DESIGN 4.9), worked by hand.

Tiers: Binance BTC 2021 (margin.build_tiers) for both symbols. Tier 1 [0, 50k) MMR 0.4 % amt 0;
tier 2 [50k, 250k) MMR 0.5 % amt 50; tier 3 [250k, 1M) MMR 1 % amt 1,300. Warning level w = 0.8,
so the warning price uses MMR / 0.8 and amt / 0.8 (tier 2: 0.625 %, 62.5).
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from venue_risk import margin
from venue_risk.errors import InputError
from venue_risk.metrics import liquidation_bands as lb

approx = pytest.approx
DAY = dt.date(2026, 11, 1)
BTC_TIERS = margin.build_tiers(margin.BINANCE_BTC_2021)


def risk_tiers() -> pl.DataFrame:
    rows = [{"symbol": s, "tier": t.tier, "notional_floor": t.notional_floor,
             "notional_cap": t.notional_cap, "max_leverage": t.max_leverage,
             "maintenance_margin_rate": t.maintenance_margin_rate,
             "maintenance_amount": t.maintenance_amount}
            for s in ("BTCUSDT", "ETHUSDT") for t in BTC_TIERS]
    return pl.DataFrame(rows)


def positions() -> pl.DataFrame:
    # account 1: isolated long 10 @ 10,000, margin 10,000 (10x);
    # account 2: isolated short 24 @ 10,000, margin 24,000 (entry notional 240k: tier 2);
    # account 7: cross, wallet 80,000: long 30 BTC @ 10,000 and short 100 ETH @ 1,000 (mark 1,100).
    return pl.DataFrame({
        "date": [DAY] * 4, "account": [1, 2, 7, 7],
        "symbol": ["BTCUSDT", "BTCUSDT", "BTCUSDT", "ETHUSDT"],
        "size": [10.0, -24.0, 30.0, -100.0],
        "entry_price": [10_000.0, 10_000.0, 10_000.0, 1_000.0],
        "margin_mode": ["isolated", "isolated", "cross", "cross"],
        "leverage": [10.0, 10.0, 3.0, 3.0],
        "isolated_margin": [10_000.0, 24_000.0, 0.0, 0.0],
    })


def accounts() -> pl.DataFrame:
    return pl.DataFrame({"date": [DAY] * 3, "account": [1, 2, 7],
                         "wallet_balance": [10_000.0, 24_000.0, 80_000.0],
                         "is_market_maker": [False] * 3})


MARKS = pl.DataFrame({"symbol": ["BTCUSDT", "ETHUSDT"], "mark_price": [10_000.0, 1_100.0]})


@pytest.fixture
def bands() -> pl.DataFrame:
    return lb.position_bands(positions(), accounts(), risk_tiers(), MARKS)


def _row(bands: pl.DataFrame, account: int, symbol: str) -> dict:
    return bands.filter((pl.col("account") == account) & (pl.col("symbol") == symbol)).row(0, named=True)


def test_isolated_long_band(bands):
    r = _row(bands, 1, "BTCUSDT")
    # Tier 1 gives LP = 90,000 / (10 x 0.996) = 9,036.1 -> notional 90.4k, not in [0, 50k);
    # tier 2: LP = (10 x 10,000 - 10,000 - 50) / (10 x 0.995) = 89,950 / 9.95 = 9,040.20.
    assert r["liquidation_price"] == approx(89_950 / 9.95)
    assert r["liquidation_tier"] == 2
    # WP: tier 2 scaled: (100,000 - 10,000 - 62.5) / (10 x (1 - 0.00625)) = 89,937.5 / 9.9375.
    wp = 89_937.5 / 9.9375
    assert r["warning_price"] == approx(wp)
    # Check: at WP, MM / equity = (90,503.1 x 0.005 - 50) / (10,000 + 10 x (WP - 10,000)) = 0.8.
    assert (10 * wp * 0.005 - 50) / (10_000 + 10 * (wp - 10_000)) == approx(0.8)
    assert r["liquidation_distance_pct"] == approx((89_950 / 9.95 / 10_000 - 1) * 100)
    assert r["warning_distance_pct"] == approx((wp / 10_000 - 1) * 100)
    assert r["liquidation_price"] < r["warning_price"] < r["mark_price"]
    # MM at mark: 100,000 x 0.005 - 50 = 450; equity 10,000 -> ratio 0.045.
    assert r["margin_ratio"] == approx(0.045)
    assert r["side"] == "long" and r["in_band"] is False


def test_isolated_short_band_across_tiers(bands):
    r = _row(bands, 2, "BTCUSDT")
    # Entry notional 240k is tier 2, but tier 2 gives LP = 264,050 / (24 x 1.005) = 10,947.4 ->
    # notional 262.7k >= 250k; tier 3: LP = (240,000 + 24,000 + 1,300) / (24 x 1.01) = 10,944.72,
    # notional 262.7k in [250k, 1M).
    assert r["liquidation_price"] == approx(265_300 / 24.24)
    assert r["liquidation_tier"] == 3
    # WP, tier 3 scaled (MMR 1.25 %, amt 1,625): (264,000 + 1,625) / (24 x 1.0125) = 10,931.07.
    assert r["warning_price"] == approx(265_625 / 24.3)
    assert r["mark_price"] < r["warning_price"] < r["liquidation_price"]
    assert r["liquidation_notional"] == approx(24 * 265_300 / 24.24)


def test_cross_position_band_across_tiers(bands):
    btc = _row(bands, 7, "BTCUSDT")
    # W_c = 80,000. ETH held at its mark: uPnL = -100 x (1,100 - 1,000) = -10,000; ETH MM =
    # 110,000 x 0.005 - 50 = 500. Effective margin for BTC: 80,000 - 10,000 - 500 = 69,500.
    # BTC at the mark is 300k notional (tier 3), but the LP lies in tier 2:
    # LP = (300,000 - 69,500 - 50) / (30 x 0.995) = 230,450 / 29.85 = 7,720.27 (notional 231.6k).
    lp = 230_450 / 29.85
    assert btc["liquidation_price"] == approx(lp)
    assert btc["liquidation_tier"] == 2
    # At LP the account's equity equals the sum of MM.
    equity = 80_000 - 10_000 + 30 * (lp - 10_000)
    assert equity == approx(500 + (30 * lp * 0.005 - 50))
    # WP: margin 80,000 - 10,000 - 500 / 0.8 = 69,375; tier 2 scaled:
    # (300,000 - 69,375 - 62.5) / (30 x 0.99375) = 230,562.5 / 29.8125 = 7,733.75.
    wp = 230_562.5 / 29.8125
    assert btc["warning_price"] == approx(wp)
    mm_total = 500 + (30 * wp * 0.005 - 50)
    assert mm_total / (80_000 - 10_000 + 30 * (wp - 10_000)) == approx(0.8)
    # Account margin ratio at the marks: (1,700 + 500) / 70,000.
    assert btc["margin_ratio"] == approx(2_200 / 70_000)
    assert btc["cross_wallet"] == approx(80_000)
    eth = _row(bands, 7, "ETHUSDT")
    # BTC at its mark: uPnL 0, MM 300,000 x 0.01 - 1,300 = 1,700; margin 78,300;
    # short LP tier 2 = (100,000 + 78,300 + 50) / (100 x 1.005) = 1,774.63.
    assert eth["liquidation_price"] == approx(178_350 / 100.5)
    assert eth["liquidation_tier"] == 2


def test_cross_wallet_excludes_isolated_margin():
    pos = positions().with_columns(pl.lit(7, dtype=pl.Int64).alias("account"))
    acc = pl.DataFrame({"date": [DAY], "account": [7], "wallet_balance": [114_000.0],
                        "is_market_maker": [False]})
    b = lb.position_bands(pos, acc, risk_tiers(), MARKS)
    # 114,000 - 10,000 - 24,000 isolated = 80,000: the cross figures are unchanged.
    assert _row(b, 7, "ETHUSDT")["cross_wallet"] == approx(80_000)
    cross = b.filter(pl.col("margin_mode") == "cross").sort("symbol")
    assert cross["liquidation_price"].to_list() == approx([230_450 / 29.85, 178_350 / 100.5])


def test_bands_bad_input():
    with pytest.raises(InputError, match="warning_margin_ratio"):
        lb.position_bands(positions(), accounts(), risk_tiers(), MARKS, warning_margin_ratio=1.5)
    with pytest.raises(InputError, match="no mark"):
        lb.position_bands(positions(), accounts(), risk_tiers(), MARKS.head(1))
    with pytest.raises(InputError, match="wallet"):
        lb.position_bands(positions(), accounts().head(2), risk_tiers(), MARKS)


def _ts(sec: int) -> dt.datetime:
    return dt.datetime(2026, 11, 1, 0, 0, sec, tzinfo=dt.timezone.utc)


def test_time_in_band(bands):
    # Isolated long: LP 9,040.20, WP 9,050.31. Path (1 s samples) 10,000, 9,045 (in), 9,045 (in),
    # 9,100 (out), 9,049 (in), 9,030 (at LP: liquidated here), 9,045 (ignored: already gone).
    px = [10_000.0, 9_045.0, 9_045.0, 9_100.0, 9_049.0, 9_030.0, 9_045.0]
    mi = pl.DataFrame({"ts": [_ts(i) for i in range(7)], "symbol": ["BTCUSDT"] * 7, "mark_price": px},
                      schema_overrides={"ts": pl.Datetime("us", "UTC")})
    t = lb.time_in_band(bands, mi)
    r = _row(t, 1, "BTCUSDT")
    assert r["seconds_in_band"] == 3.0  # samples 1, 2, 4
    assert r["band_entries"] == 2  # at 1 and at 4
    assert r["first_entry_ts"] == _ts(1)
    assert r["reached_liquidation"] is True and r["liquidation_ts"] == _ts(5)
    assert r["seconds_to_liquidation"] == 4.0
    # Short (band above 10,931) and cross long (band below 7,733): never entered.
    for acct in (2, 7):
        r = _row(t, acct, "BTCUSDT")
        assert r["seconds_in_band"] == 0.0 and r["band_entries"] == 0
        assert r["first_entry_ts"] is None and r["reached_liquidation"] is False
    # ETH has no marks in the path: zero seconds, nulls.
    r = _row(t, 7, "ETHUSDT")
    assert r["seconds_in_band"] == 0.0 and r["liquidation_ts"] is None
    assert t.columns[0] == "date" and t.height == 4


def test_liquidations_at_risk_buckets():
    bands = pl.DataFrame({
        "date": [DAY] * 7, "symbol": ["BTCUSDT"] * 7,
        "side": ["long", "long", "long", "long", "long", "short", "short"],
        "notional": [100.0, 200.0, 400.0, 800.0, 1_600.0, 3_200.0, 6_400.0],
        "liquidation_notional": [99.0, 198.0, 395.0, 801.0, 1_200.0, 3_312.0, 7_000.0],
        # long -0.5 % and -1.0 % (the edge) -> bucket 1; -1.2 % -> bucket 2; a long whose LP is
        # above the mark (+0.3 %: already liquidatable) -> bucket 1; -25 % -> beyond 20 %, left out;
        # short +3.5 % -> bucket 4; short +20 % -> bucket 20.
        "liquidation_distance_pct": [-0.5, -1.0, -1.2, 0.3, -25.0, 3.5, 20.0],
    })
    out = lb.liquidations_at_risk(bands, MARKS)
    assert out.height == 2 * 2 * 20  # symbols x sides x buckets, zero-filled
    btc_long = out.filter((pl.col("symbol") == "BTCUSDT") & (pl.col("side") == "long"))
    assert btc_long["notional"].to_list()[:3] == [100.0 + 200.0 + 800.0, 400.0, 0.0]
    assert btc_long["positions"].to_list()[:2] == [3, 1]
    assert btc_long["cumulative_notional"].to_list()[-1] == 1_500.0  # the -25 % one left out
    assert btc_long["cumulative_liquidation_notional"][1] == approx(99 + 198 + 801 + 395)
    assert btc_long["distance_pct"][1] == -2.0 and btc_long["price_outer"][1] == approx(9_800.0)
    btc_short = out.filter((pl.col("symbol") == "BTCUSDT") & (pl.col("side") == "short"))
    assert btc_short["notional"][3] == 3_200.0 and btc_short["bucket"][3] == 4
    assert btc_short["notional"][19] == 6_400.0
    assert btc_short["cumulative_notional"].to_list()[2:4] == [0.0, 3_200.0]
    assert out.filter(pl.col("symbol") == "ETHUSDT")["notional"].sum() == 0.0
    assert out.columns[0] == "date" and out["date"].unique().to_list() == [DAY]


def test_liquidations_at_risk_from_bands(bands):
    out = lb.liquidations_at_risk(bands, MARKS)
    # Isolated long at -9.6 % -> bucket 10; isolated short at +9.45 % -> bucket 10; the cross
    # long (-22.8 %) and cross short (+61 %) are beyond 20 %.
    hit = out.filter(pl.col("positions") > 0).sort("side")
    assert hit.select("side", "bucket").rows() == [("long", 10), ("short", 10)]
    assert hit["notional"].to_list() == approx([100_000.0, 240_000.0])
