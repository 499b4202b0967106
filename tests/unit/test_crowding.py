"""Funding-volatility crowding (DESIGN 4.3) on hand-built frames; every expected number is worked
by hand in the test's docstring or comments."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from venue_risk import schema
from venue_risk.errors import InputError
from venue_risk.metrics import crowding

approx = pytest.approx
DAY = dt.date(2024, 3, 11)


def ts(day: dt.date, h: int = 0, m: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, h, m, s, tzinfo=dt.timezone.utc)


def frame(name: str, rows: list[dict]) -> pl.DataFrame:
    spec = schema.DATASETS[name].schema
    return pl.DataFrame([{c: r.get(c) for c in spec} for r in rows], schema=spec)


def instruments(intervals: dict[str, int]) -> pl.DataFrame:
    return frame("instruments", [{"symbol": s, "funding_interval_hours": h} for s, h in intervals.items()])


def test_realized_vol_of_a_known_series():
    """Last marks of minutes 0..3: 100, 100e^0.01, 100, 100e^0.01 (minute 1 also has an earlier
    row that must be ignored). Returns +0.01, -0.01, +0.01: mean 1/300, deviations 2/300, -4/300,
    2/300, sum of squares 24/90,000, / (n - 1 = 2) = 1/7,500; std = sqrt(1/7,500);
    annualized = sqrt(525,600 / 7,500) = sqrt(70.08) = 8.3714..."""
    up = 100 * math.exp(0.01)
    mi = frame("mark_index", [
        {"ts": ts(DAY, 0, 0, 5), "symbol": "X", "mark_price": 100.0},
        {"ts": ts(DAY, 0, 1, 2), "symbol": "X", "mark_price": 123.0},
        {"ts": ts(DAY, 0, 1, 59), "symbol": "X", "mark_price": up},
        {"ts": ts(DAY, 0, 2, 30), "symbol": "X", "mark_price": 100.0},
        {"ts": ts(DAY, 0, 3, 0), "symbol": "X", "mark_price": up},
    ]).sample(fraction=1.0, shuffle=True, seed=3)  # input row order must not matter
    out = crowding.annualized_realized_vol(mi)
    assert out["realized_vol"][0] == approx(math.sqrt(70.08), rel=1e-12)
    assert out["date"][0] == DAY


def test_funding_vol_daily_annualization_and_positioning():
    """A: 8 h interval, rates 0.0001, 0.0002, 0.0003: funding_paid 0.0006, mean 0.0002 x 3 x 365 =
    0.219. B: 4 h interval, six rates of 0.0001: paid 0.0006, mean 0.0001 x 6 x 365 = 0.219.
    OI of A: 100 at 00:00, 130 at 00:05, 150 at 23:55 -> oi_change 0.5, close value = last row."""
    fund = frame("funding", [
        {"ts": ts(DAY, 8 * i), "symbol": "A", "funding_rate": r, "interest_rate": 0.0001}
        for i, r in enumerate([0.0001, 0.0002, 0.0003])
    ] + [{"ts": ts(DAY, 4 * i), "symbol": "B", "funding_rate": 0.0001, "interest_rate": 0.00005}
         for i in range(6)])
    mm = frame("market_metrics", [
        {"ts": ts(DAY, 23, 55), "symbol": "A", "open_interest": 150.0, "open_interest_value": 1500.0,
         "long_short_account_ratio": 1.5, "taker_buy_sell_ratio": 1.2},
        {"ts": ts(DAY, 0, 0), "symbol": "A", "open_interest": 100.0, "open_interest_value": 1000.0,
         "long_short_account_ratio": 1.0, "taker_buy_sell_ratio": 0.9},
        {"ts": ts(DAY, 0, 5), "symbol": "A", "open_interest": 130.0, "open_interest_value": 1300.0,
         "long_short_account_ratio": 2.0, "taker_buy_sell_ratio": 1.5},
    ])
    mi = frame("mark_index", [{"ts": ts(DAY, 0, m), "symbol": "A", "mark_price": 100.0 + m % 2}
                              for m in range(5)])
    out = crowding.funding_vol_daily(fund, mi, mm, instruments({"A": 8, "B": 4}))
    assert out.columns == list(crowding.DAILY_SCHEMA)
    a = out.filter(pl.col("symbol") == "A").row(0, named=True)
    b = out.filter(pl.col("symbol") == "B").row(0, named=True)
    assert a["settlements"] == 3 and a["funding_paid"] == approx(0.0006)
    assert a["funding_annualized"] == approx(0.219) and a["funding_interest"] == approx(0.0003)
    assert b["settlements"] == 6 and b["funding_annualized"] == approx(0.219)
    assert a["oi_change"] == approx(0.5) and a["oi_value_close"] == 1500.0
    assert a["long_short_ratio"] == approx(1.5) and a["taker_buy_sell_ratio"] == approx(1.2)
    assert a["realized_vol"] > 0 and b["realized_vol"] is None and b["oi_change"] is None


def test_funding_without_instrument_is_an_input_error():
    fund = frame("funding", [{"ts": ts(DAY), "symbol": "Z", "funding_rate": 0.0001, "interest_rate": 0.0001}])
    with pytest.raises(InputError, match="funding_interval_hours"):
        crowding.funding_vol_daily(fund, frame("mark_index", []), frame("market_metrics", []),
                                   instruments({"A": 8}))


def daily(day: dt.date, symbol: str, funding: float, oi: float, vol: float, **extra) -> dict:
    return {"date": day, "symbol": symbol, "settlements": 3, "funding_paid": funding,
            "funding_interest": 0.0003, "funding_annualized": funding / 3 * 1095, "realized_vol": vol,
            "oi_change": oi, **extra}


def test_robust_z_with_known_median_and_mad():
    """History funding_paid (x 1e-4) 1, 2, 3, 4, 5, 6, 100 over 7 days: median 4, |x - 4| = 3, 2, 1,
    0, 1, 2, 96 -> MAD 2 (x 1e-4), scale 1.4826 x 2e-4 = 2.9652e-4 (above the floor 3e-5).
    Today 13e-4: z = 9e-4 / 2.9652e-4 = 3.03521..."""
    hist = pl.DataFrame([daily(DAY - dt.timedelta(days=7 - i), "X", v * 1e-4, 0.0, 0.5)
                         for i, v in enumerate([1, 2, 3, 4, 5, 6, 100])])
    out = crowding.crowding_scores(pl.DataFrame([daily(DAY, "X", 13e-4, 0.0, 0.5)]), hist)
    r = out.row(0, named=True)
    assert r["baseline_days"] == 7 and r["baseline"] == "trailing"
    assert r["funding_median"] == approx(4e-4) and r["funding_scale"] == approx(2.9652e-4)
    assert r["funding_z"] == approx(9 / 2.9652, rel=1e-9)
    e = pl.DataFrame({"x": [13.0]}).select(crowding.robust_z(pl.col("x"), pl.lit(4.0), pl.lit(2.0), 0.1))
    assert e["x"][0] == approx(9 / 2.9652)


def test_crowding_flags_on_a_hand_made_history():
    """Ten baseline days per symbol: funding 0.0003 every day (MAD 0: floor max(1e-5, 0.1 x 0.0003)
    = 3e-5), oi_change 0.01, -0.01, 0.02, -0.02, 0 twice (median 0, MAD 0.01, scale 0.014826),
    realized vol 0.5 (MAD 0: floor max(0.01, 0.05 x 0.5) = 0.025).

    a  funding 0.00036, OI +5 %            funding_z = 0.6e-4 / 3e-5 = 2  -> score 2: not crowded
    b  funding 0.00045, OI +5 %            z = 1.5e-4 / 3e-5 = 5 -> score 5: crowded (long)
    c  funding 0.00045, OI -5 %            score -5 (crowd leaving): not crowded
    d  funding 0.00045, OI +5 %, vol 0.55  vol_z = 0.05 / 0.025 = 2 -> score 5 x 3 = 15, vol rising
    e  funding 0.0001,  OI +5 %            z = -2e-4 / 3e-5 = -6.67 -> score 6.67: crowded (short)
    f  funding 0.0012 with no history      prior baseline: z = 9e-4 / 3e-5 = 30, and the absolute
                                           rule (0.0012 >= 3 x 0.0003) flags it on day one
    """
    oi_hist = [0.01, -0.01, 0.02, -0.02, 0.0] * 2
    syms = ["a", "b", "c", "d", "e"]
    hist = pl.DataFrame([daily(DAY - dt.timedelta(days=10 - i), s, 0.0003, oi_hist[i], 0.5)
                         for s in syms for i in range(10)])
    today = pl.DataFrame([
        daily(DAY, "a", 0.00036, 0.05, 0.5), daily(DAY, "b", 0.00045, 0.05, 0.5),
        daily(DAY, "c", 0.00045, -0.05, 0.5), daily(DAY, "d", 0.00045, 0.05, 0.55),
        daily(DAY, "e", 0.0001, 0.05, 0.5), daily(DAY, "f", 0.0012, 0.05, 0.5),
    ])
    out = crowding.crowding_scores(today, hist)
    assert out.columns == list(crowding.SCORES_SCHEMA)
    r = {row["symbol"]: row for row in out.iter_rows(named=True)}
    assert r["a"]["funding_z"] == approx(2.0) and r["a"]["crowding_score"] == approx(2.0)
    assert r["a"]["oi_change_z"] == approx(0.05 / 0.014826) and not r["a"]["crowded"]
    assert r["b"]["crowding_score"] == approx(5.0) and r["b"]["crowded"] and r["b"]["crowded_side"] == "long"
    assert not r["b"]["crowded_and_vol_rising"] and not r["b"]["funding_extreme"]
    assert r["c"]["crowding_score"] == approx(-5.0) and not r["c"]["crowded"]
    assert r["d"]["vol_z"] == approx(2.0) and r["d"]["crowding_score"] == approx(15.0)
    assert r["d"]["crowded_and_vol_rising"]
    assert r["e"]["crowding_score"] == approx(20 / 3) and r["e"]["crowded"] and r["e"]["crowded_side"] == "short"
    assert r["f"]["baseline_days"] == 0 and r["f"]["baseline"] == "prior"
    assert r["f"]["funding_z"] == approx(30.0) and r["f"]["vol_z"] is None
    assert r["f"]["funding_extreme"] and r["f"]["crowded"] and not r["f"]["crowded_and_vol_rising"]
    assert all(r[s]["baseline_days"] == 10 for s in syms)


def test_baseline_window_min_days_and_flagged_days():
    """Rows outside the window, on or after the day, and rows flagged crowded stay out of the
    baseline; fewer than min_days baseline days fall back to the prior (median = interest)."""
    hist = pl.DataFrame([daily(DAY - dt.timedelta(days=i), "X", 0.0003, 0.0, 0.5, crowded=False)
                         for i in range(1, 6)]
                        + [daily(DAY - dt.timedelta(days=6), "X", 0.005, 0.0, 0.5, crowded=True),
                           daily(DAY - dt.timedelta(days=40), "X", 0.0003, 0.0, 0.5, crowded=False),
                           daily(DAY, "X", 0.9, 0.0, 0.5, crowded=False)])
    today = pl.DataFrame([daily(DAY, "X", 0.00045, 0.05, 0.5)])
    r = crowding.crowding_scores(today, hist, min_days=5).row(0, named=True)
    assert r["baseline_days"] == 5 and r["baseline"] == "trailing" and r["funding_z"] == approx(5.0)
    r = crowding.crowding_scores(today, hist, min_days=6).row(0, named=True)
    assert r["baseline_days"] == 5 and r["baseline"] == "prior" and r["oi_change_z"] is None
    assert r["funding_z"] == approx(5.0) and r["crowded"]  # 0.00045 vs the interest 0.0003


def test_missing_columns_raise_input_error():
    with pytest.raises(InputError, match="funding_paid"):
        crowding.crowding_scores(pl.DataFrame({"date": [DAY], "symbol": ["X"]}), None)
