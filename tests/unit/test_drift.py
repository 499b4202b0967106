"""Drift (DESIGN 4.5): PSI, KS, feature samples, drift verdicts and fill quality by volatility
bucket, on hand-built frames with hand-computed answers."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from venue_risk import schema
from venue_risk.metrics import drift

approx = pytest.approx
DAY = dt.date(2024, 3, 11)


def ts(s: float, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=s)


def frame(name: str, rows: list[dict]) -> pl.DataFrame:
    spec = schema.DATASETS[name].schema
    return pl.DataFrame([{c: r.get(c) for c in spec} for r in rows], schema=spec)


def test_psi_of_two_small_known_distributions():
    """expected 1..10, bins=2: edge = median 5.5, shares 0.5 / 0.5.
    actual 1,2,3,7,8,9,10,10,10,10: shares 0.3 / 0.7.
    PSI = (0.3 - 0.5) ln(0.3 / 0.5) + (0.7 - 0.5) ln(0.7 / 0.5)
        = 0.2 x 0.5108256 + 0.2 x 0.3364722 = 0.1694596."""
    e = np.arange(1, 11, dtype=float)
    a = np.array([1, 2, 3, 7, 8, 9, 10, 10, 10, 10], dtype=float)
    assert drift.psi(e, a, bins=2) == approx(0.2 * math.log(5 / 3) + 0.2 * math.log(7 / 5), rel=1e-12)
    assert drift.psi(e, a, bins=2) == approx(0.1694596, abs=1e-7)
    # Series input and nulls / NaN are accepted (dropped).
    assert drift.psi(pl.Series(list(e) + [None]), pl.Series(list(a) + [float("nan")]), bins=2) == approx(0.1694596, abs=1e-7)


def test_psi_empty_bin_uses_epsilon_and_identical_is_zero():
    """actual all <= 5.5: shares 1 / 0 -> 1 / 1e-4:
    PSI = (1 - 0.5) ln(2) + (1e-4 - 0.5) ln(1e-4 / 0.5) = 0.3465736 + 4.2577455 = 4.6043191."""
    e = np.arange(1, 11, dtype=float)
    expected = 0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert drift.psi(e, np.array([1.0, 2.0, 5.5]), bins=2) == approx(expected, rel=1e-12)
    assert expected == approx(4.6043191, abs=1e-6)
    rng = np.random.default_rng(1)
    x = rng.normal(size=500)
    assert drift.psi(x, x.copy()) == 0.0
    assert math.isnan(drift.psi(x, np.array([])))


def test_ks_of_two_small_samples():
    """e = 1,2,3,4; a = 3,4,5,6,7. ECDFs at 1: .25 / 0; 2: .5 / 0; 3: .75 / .2; 4: 1 / .4 (gap .6);
    5: 1 / .6; ... D = 0.6."""
    assert drift.ks_statistic(np.array([1.0, 2, 3, 4]), np.array([3.0, 4, 5, 6, 7])) == approx(0.6)
    assert drift.ks_statistic(np.array([1.0, 2, 3]), np.array([1.0, 2, 3])) == 0.0
    # Ties across the samples: e = 1,1,2; a = 1,2,2: at 1: 2/3 vs 1/3 -> D = 1/3.
    assert drift.ks_statistic(pl.Series([1.0, 1, 2]), pl.Series([1.0, 2, 2])) == approx(1 / 3)
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=300), rng.normal(0.3, 1.0, size=200)
    assert drift.ks_statistic(a, b) == approx(scipy_stats.ks_2samp(a, b).statistic, abs=1e-12)


def _day_inputs():
    """Two symbols' mark_index seconds, a book, orders, positions and liquidation executions."""
    mi = frame("mark_index", [
        {"ts": ts(0), "symbol": "A", "mark_price": 100.0, "index_price": 99.99, "best_bid": 99.0, "best_ask": 101.0},
        {"ts": ts(1), "symbol": "A", "mark_price": 100.5, "index_price": 100.5, "best_bid": 99.5, "best_ask": 100.5},
    ])
    bd = frame("book_depth", [
        {"ts": ts(0), "symbol": "A", "percentage": p, "notional": n}
        for p, n in [(-1.0, 1000.0), (1.0, 500.0), (-2.0, 9e9), (0.2, 9e9)]])
    oe = frame("order_events", [
        {"ts": ts(0.5), "symbol": "A", "order_id": 1, "event": "new", "price": 100.0, "qty": 2.0, "cum_filled_qty": 0.0},
        {"ts": ts(0.7), "symbol": "A", "order_id": 1, "event": "partial_fill", "price": 100.0, "qty": 2.0, "cum_filled_qty": 0.5},
        {"ts": ts(0.9), "symbol": "A", "order_id": 1, "event": "cancel", "price": 100.0, "qty": 2.0, "cum_filled_qty": 0.5},
        {"ts": ts(1.5), "symbol": "A", "order_id": 2, "event": "new", "price": None, "qty": 3.0, "cum_filled_qty": 0.0},
        {"ts": ts(1.6), "symbol": "A", "order_id": 2, "event": "fill", "price": None, "qty": 3.0, "cum_filled_qty": 3.0},
    ])
    pos = frame("positions_eod", [{"date": DAY, "account": i, "symbol": "A", "leverage": lv}
                                  for i, lv in enumerate([5.0, 20.0])])
    ex = pl.DataFrame({"date": [DAY, DAY], "slippage_bps": [12.0, None]})
    return frame("trades", []), oe, mi, bd, pos, ex


def test_feature_samples_values():
    """spread (101 - 99) / 100 = 200 bps and 1 / 100 = 100 bps; basis (100 - 99.99) / 99.99 x 1e4
    = 1.0001 bps and 0; depth 1000 + 500 = 1500 (only the +-1 % bands); order sizes 2 x 100 = 200
    and 3 x mark 100.5 (market order valued at the mark at or before it) = 301.5; fill rates
    0.5 / 2 = 0.25 and 1; leverage 5, 20; liquidation slippage 12 (the unfilled one is null)."""
    out = drift.feature_samples(*_day_inputs(), seed=1)
    assert out.columns == ["date", "feature", "value"]
    got = {f: sorted(out.filter(pl.col("feature") == f)["value"].to_list()) for f in drift.FEATURES}
    assert got["spread_bps"] == approx([100.0, 200.0])
    assert got["basis_bps"] == approx([0.0, 0.01 / 99.99 * 1e4])
    assert got["depth_1pct_notional"] == approx([1500.0])
    assert got["order_size_notional"] == approx([200.0, 301.5])
    assert got["fill_rate"] == approx([0.25, 1.0])
    assert got["leverage"] == [5.0, 20.0]
    assert got["liquidation_slippage_bps"] == [12.0]
    assert out["date"].unique().to_list() == [DAY]


def test_feature_samples_are_bounded_and_deterministic():
    n = 5000
    mi = pl.DataFrame({"ts": [ts(i) for i in range(n)], "symbol": ["A"] * n,
                       "mark_price": np.linspace(100, 101, n), "index_price": [100.0] * n,
                       "last_price": [100.0] * n, "best_bid": [99.9] * n, "best_ask": [100.1] * n},
                      schema=schema.DATASETS["mark_index"].schema)
    _, oe, _, bd, pos, ex = _day_inputs()
    a = drift.feature_samples(frame("trades", []), oe, mi, bd, pos, ex, seed=7, sample_size=300)
    b = drift.feature_samples(frame("trades", []), oe, mi.sample(fraction=1.0, shuffle=True, seed=2),
                              bd, pos, ex, seed=7, sample_size=300)
    c = drift.feature_samples(frame("trades", []), oe, mi, bd, pos, ex, seed=8, sample_size=300)
    assert a.equals(b)
    basis = a.filter(pl.col("feature") == "basis_bps")
    assert basis.height == 300 and basis["value"].n_unique() == 300
    assert not basis.equals(c.filter(pl.col("feature") == "basis_bps"))


def test_feature_drift_verdicts():
    rng = np.random.default_rng(0)
    base = pl.concat([pl.DataFrame({"date": [DAY - dt.timedelta(days=d)] * 500,
                                    "feature": ["spread_bps"] * 500, "value": rng.normal(2.0, 0.5, 500)})
                      for d in range(1, 6)])
    today = pl.DataFrame({"date": [DAY] * 500, "feature": ["spread_bps"] * 500,
                          "value": rng.normal(2.0, 0.5, 500)})
    out = drift.feature_drift(today, base)
    assert out.columns == list(drift.DRIFT_SCHEMA) and out.height == len(drift.FEATURES)
    s = out.filter(pl.col("feature") == "spread_bps").row(0, named=True)
    assert s["n_today"] == 500 and s["n_baseline"] == 2500 and s["baseline_days"] == 5
    assert s["psi"] < 0.05 and s["ks"] < 0.1 and not s["drifted"]
    other = out.filter(pl.col("feature") == "leverage").row(0, named=True)
    assert other["psi"] is None and other["n_today"] == 0 and not other["drifted"]
    wide = today.with_columns(pl.col("value") * 3)  # spreads tripled
    s = drift.feature_drift(wide, base).filter(pl.col("feature") == "spread_bps").row(0, named=True)
    assert s["psi"] > 0.25 and s["ks"] > 0.25 and s["drifted"]
    # PSI alone is not enough: a shift of 0.15 sd moves PSI past a low threshold but not KS.
    shifted = today.with_columns(pl.col("value") + 0.075)
    s = drift.feature_drift(shifted, base, psi_threshold=0.01).filter(pl.col("feature") == "spread_bps").row(0, named=True)
    assert s["psi"] > 0.01 and s["ks"] < 0.25 and not s["drifted"]
    # Too short a baseline: measured, but no verdict.
    s = drift.feature_drift(wide, base.filter(pl.col("date") >= DAY - dt.timedelta(days=2))).filter(
        pl.col("feature") == "spread_bps").row(0, named=True)
    assert s["baseline_days"] == 2 and s["psi"] > 0.25 and not s["drifted"]
    # Rows of today or later, and outside the window, are not baseline.
    s = drift.feature_drift(wide, pl.concat([base, wide]), window=3).filter(
        pl.col("feature") == "spread_bps").row(0, named=True)
    assert s["baseline_days"] == 3 and s["n_baseline"] == 1500


def test_fill_quality_by_vol_bucket_on_a_tiny_frame():
    """Three 300-second phases of one symbol: A mark 100 flat (vol 0), B alternating 100 / 100.01,
    C alternating 100 / 101 (even seconds 100). Terciles of the rolling vol put A low, B mid, C high.
    Trades half a second after seconds 100, 450, 800 (marks 100, 100, 100):
      low  buy 100.01, bid/ask 99.99/100.01 -> eff 2 x 0.01 / 100 x 1e4 = 2 bps, slip +1 bp
      mid  buy 100.05, bid/ask 99.98/100.02 -> eff 10 bps, slip 5 bps
      high sell 99.8,  bid/ask 99.9/100.1   -> eff 40 bps, slip -(99.8 - 100) / 100 x 1e4 = 20 bps
    High-bucket top vol (second 899: the window holds the returns of seconds 600..899, i.e. 100.01
    -> 100 then 299 moves of |ln 1.01|) = sqrt((299 ln(1.01)^2 + ln(1.0001)^2) / 300 x 31,536,000)
    = 55.785."""
    rows = []
    for s in range(900):
        if s < 300:
            m, hs = 100.0, 0.01
        elif s < 600:
            m, hs = (100.0 if s % 2 == 0 else 100.01), 0.02
        else:
            m, hs = (100.0 if s % 2 == 0 else 101.0), 0.1
        mid = 100.0 if s % 2 == 0 else m
        rows.append({"ts": ts(s), "symbol": "A", "mark_price": m, "index_price": m,
                     "best_bid": mid - hs, "best_ask": mid + hs})
    mi = frame("mark_index", rows)
    tr = frame("trades", [
        {"ts": ts(100.5), "symbol": "A", "trade_id": 1, "price": 100.01, "qty": 1.0, "taker_side": "buy"},
        {"ts": ts(450.5), "symbol": "A", "trade_id": 2, "price": 100.05, "qty": 1.0, "taker_side": "buy"},
        {"ts": ts(800.5), "symbol": "A", "trade_id": 3, "price": 99.8, "qty": 1.0, "taker_side": "sell"},
    ])
    out = drift.fill_quality_by_vol_bucket(tr, mi)
    assert out.columns == list(drift.FILL_QUALITY_SCHEMA)
    assert out["vol_bucket"].to_list() == ["low", "mid", "high"]
    r = {row["vol_bucket"]: row for row in out.iter_rows(named=True)}
    assert [r[b]["trade_count"] for b in drift.VOL_BUCKETS] == [1, 1, 1]
    assert r["low"]["effective_spread_bps"] == approx(2.0) and r["low"]["taker_slippage_bps"] == approx(1.0)
    assert r["mid"]["effective_spread_bps"] == approx(10.0) and r["mid"]["taker_slippage_bps"] == approx(5.0)
    assert r["high"]["effective_spread_bps"] == approx(40.0) and r["high"]["taker_slippage_bps"] == approx(20.0)
    assert r["low"]["vol_min"] == 0.0 and r["low"]["vol_max"] == 0.0
    top = math.sqrt((299 * math.log(1.01) ** 2 + math.log(100.01 / 100) ** 2) / 300 * 31_536_000)
    assert r["high"]["vol_max"] == approx(top, rel=1e-9) and top == approx(55.785, abs=1e-3)
    assert r["mid"]["vol_max"] < r["high"]["vol_min"]
