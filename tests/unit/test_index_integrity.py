"""Hand-computed cases of index and mark integrity (DESIGN 4.4) on a basket of four sources a, b,
c, d over a few seconds of 2026-11-01 (every source updates at midnight so no second is
"unknown")."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from venue_risk import margin
from venue_risk.errors import InputError
from venue_risk.metrics import index_integrity as ii

DAY = dt.date(2026, 11, 1)
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
SRC = ["a", "b", "c", "d"]
UTC_US = pl.Datetime("us", "UTC")


def at(s: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=s)


def components(updates: dict[str, list[tuple[float, float]]], weights: dict[str, float]) -> pl.DataFrame:
    rows = [{"ts": at(s), "received_ts": at(s), "symbol": "X", "source": src, "price": float(p),
             "weight": weights[src]} for src, ups in updates.items() for s, p in ups]
    return pl.DataFrame(rows, schema_overrides={"ts": UTC_US, "received_ts": UTC_US})


def instruments(stale_s=10.0, outlier=0.05, min_sources=3) -> pl.DataFrame:
    return pl.DataFrame({"symbol": ["X"], "index_sources": [SRC], "index_outlier_pct": [outlier],
                         "index_stale_s": [stale_s], "index_min_sources": [min_sources]})


def mark_index(published, mark=None) -> pl.DataFrame:
    n = len(published)
    return pl.DataFrame({"ts": [at(s) for s in range(n)], "symbol": ["X"] * n,
                         "mark_price": mark if mark is not None else list(published),
                         "index_price": [float(x) for x in published],
                         "last_price": [float(x) for x in published]},
                        schema_overrides={"ts": UTC_US})


def flat(prices: dict[str, float], n: int) -> dict[str, list[tuple[float, float]]]:
    return {s: [(t, p) for t in range(n)] for s, p in prices.items()}


W_UNEVEN = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
W_EVEN = {s: 0.25 for s in SRC}


def test_stale_source_excluded_and_weights_renormalized():
    # d updates only at t=0; with the instrument's own stale_s = 2 it is stale at t = 3, 4.
    ups = flat({"a": 100, "b": 101, "c": 99}, 5)
    ups["d"] = [(0, 104.0)]  # median(100, 101, 99, 104) = 100.5: 104 is 3.5 % off, inside the band
    comps = components(ups, W_UNEVEN)
    full = 0.4 * 100 + 0.3 * 101 + 0.2 * 99 + 0.1 * 104
    renorm = (0.4 * 100 + 0.3 * 101 + 0.2 * 99) / 0.9
    idx, st = ii.recompute_index_and_status(comps, instruments(stale_s=2.0),
                                            mark_index([full] * 3 + [renorm] * 2))
    assert idx["index_recomputed"].to_list() == pytest.approx([full] * 3 + [renorm] * 2)
    assert idx["gap_bps"].abs().max() == pytest.approx(0.0, abs=1e-9)
    assert st.filter(pl.col("source") == "d")["status"].to_list() == ["ok"] * 3 + ["stale"] * 2
    ex = ii.source_exclusions(st).filter(pl.col("source") == "d").row(0, named=True)
    assert (ex["seconds_stale"], ex["seconds_outlier"], ex["seconds_excluded"], ex["windows"]) == (2, 0, 2, 1)
    win = ii.exclusion_windows(st)
    assert win.select("source", "status", "start", "end", "seconds").rows() == [("d", "stale", at(3), at(4), 2)]
    gs = ii.index_gap_summary(idx).row(0, named=True)
    assert gs["max_abs_gap_bps"] == pytest.approx(0.0, abs=1e-9) and gs["seconds_gap_over_tol"] == 0


def test_one_outlier_dropped():
    comps = components(flat({"a": 100, "b": 110, "c": 99, "d": 100}, 2), W_UNEVEN)
    idx, st = ii.recompute_index_and_status(comps, instruments(), mark_index([100.0, 100.0]))
    expected = (0.4 * 100 + 0.2 * 99 + 0.1 * 100) / 0.7
    assert idx["index_recomputed"].to_list() == pytest.approx([expected] * 2)
    assert idx["method"].to_list() == ["weighted_mean"] * 2
    assert st.filter(pl.col("ts") == at(0))["status"].to_list() == ["ok", "outlier", "ok", "ok"]
    assert st.filter(pl.col("source") == "b")["deviation_pct"].to_list() == pytest.approx([0.1, 0.1])
    ex = ii.source_exclusions(st).filter(pl.col("source") == "b").row(0, named=True)
    assert (ex["seconds_outlier"], ex["seconds_excluded"]) == (2, 2)


def test_two_outliers_fall_back_to_median():
    # median(100, 110, 90, 101) = 100.5
    comps = components(flat({"a": 100, "b": 110, "c": 90, "d": 101}, 2), W_UNEVEN)
    idx = ii.recompute_index(comps, instruments(), mark_index([100.5, 100.5]))
    assert idx["index_recomputed"].to_list() == pytest.approx([100.5, 100.5])
    assert idx["method"].to_list() == ["median_fallback"] * 2
    assert idx["n_outlier"].to_list() == [2, 2]
    assert ii.index_gap_summary(idx)["seconds_median_fallback"].to_list() == [2]


def test_too_few_sources_hold_the_previous_value():
    # c and d stop at t=0; with stale_s = 1 only a and b are live from t = 2: fewer than 3 -> hold.
    ups = flat({"a": 100, "b": 101}, 4)
    ups["a"] = [(0, 100.0), (1, 100.0), (2, 120.0), (3, 130.0)]
    ups["c"], ups["d"] = [(0, 99.0)], [(0, 100.0)]
    first = 0.4 * 100 + 0.3 * 101 + 0.2 * 99 + 0.1 * 100
    idx = ii.recompute_index(components(ups, W_UNEVEN), instruments(stale_s=1.0), mark_index([first] * 4))
    assert idx["index_recomputed"].to_list() == pytest.approx([first] * 4)
    assert idx["method"].to_list() == ["weighted_mean", "weighted_mean", "hold", "hold"]
    assert idx["gap_bps"].to_list() == pytest.approx([0.0] * 4, abs=1e-9)


def test_gap_is_published_minus_rule_in_bps():
    comps = components(flat({s: 100 for s in SRC}, 3), W_EVEN)
    idx = ii.recompute_index(comps, instruments(), mark_index([100.0, 100.1, 99.95]))
    assert idx["gap_bps"].to_list() == pytest.approx([0.0, 10.0, -5.0])
    gs = ii.index_gap_summary(idx).row(0, named=True)
    assert gs["max_abs_gap_bps"] == pytest.approx(10.0)
    assert gs["seconds_gap_over_tol"] == 2
    assert gs["ts_max_gap"] == at(1)


def test_unknown_first_seconds_without_previous_day():
    # d first updates at t = 3: seconds 0..2 are unknown (its last price is in yesterday's file).
    ups = flat({"a": 100, "b": 100, "c": 100}, 4)
    ups["d"] = [(3, 100.0)]
    idx, st = ii.recompute_index_and_status(components(ups, W_EVEN), instruments(), mark_index([100.0] * 4))
    assert idx["verifiable"].to_list() == [False, False, False, True]
    assert idx["gap_bps"].null_count() == 3
    assert st.filter(pl.col("source") == "d")["status"].to_list() == ["unknown"] * 3 + ["ok"]
    assert ii.exclusion_windows(st).height == 0
    # with the previous day's last update the seconds are known
    prev = components({"d": [(-1.0, 100.0)]}, W_EVEN)
    idx2 = ii.recompute_index(components(ups, W_EVEN), instruments(), mark_index([100.0] * 4),
                              prev_index_components=prev)
    assert idx2["verifiable"].all()


def test_broken_source_counterfactual_is_weight_times_offset():
    # d prints 20 % above the others at t = 1..3 with weight 0.25: excluded as an outlier; kept,
    # the index would have been (3 x 100 + 120) / 4 = 105: +5 % = +500 bps.
    ups = flat({"a": 100, "b": 100, "c": 100}, 5)
    ups["d"] = [(0, 100.0), (1, 120.0), (2, 120.0), (3, 120.0), (4, 100.0)]
    comps, inst, mi = components(ups, W_EVEN), instruments(), mark_index([100.0] * 5)
    st = ii.source_status(comps, inst, mi)
    cf = ii.broken_source_counterfactual(comps, inst, mi, st)
    assert cf.height == 1
    r = cf.row(0, named=True)
    assert (r["source"], r["start"], r["end"], r["seconds"]) == ("d", at(1), at(3), 3)
    assert r["cf_move_bps"] == pytest.approx(500.0)
    assert r["max_deviation_pct"] == pytest.approx(0.2)
    assert r["published_move_bps"] == pytest.approx(0.0, abs=1e-9)


def _tiers_frame() -> pl.DataFrame:
    return pl.DataFrame([{"symbol": "X", "tier": t.tier, "notional_floor": t.notional_floor,
                          "notional_cap": t.notional_cap, "max_leverage": t.max_leverage,
                          "maintenance_margin_rate": t.maintenance_margin_rate,
                          "maintenance_amount": t.maintenance_amount}
                         for t in margin.build_tiers(margin.BINANCE_BTC_2021)])


def _positions() -> pl.DataFrame:
    # Notional ~100 sits in tier 1 (MMR 0.4 %, amount 0). Long LP = (EP - WB) / 0.996,
    # short LP = (EP + WB) / 1.004 with Q = 1, EP = 100.
    rows = [(1, 1.0, 100 - 99 * 0.996, "isolated"),     # long, LP 99
            (2, 1.0, 100 - 97 * 0.996, "isolated"),     # long, LP 97
            (3, -1.0, 101.5 * 1.004 - 100, "isolated"),  # short, LP 101.5
            (4, -1.0, 103 * 1.004 - 100, "isolated"),    # short, LP 103
            (5, 1.0, 0.0, "cross")]                      # cross: not counted
    return pl.DataFrame({"date": [DAY] * 5, "account": [r[0] for r in rows], "symbol": ["X"] * 5,
                         "size": [r[1] for r in rows], "entry_price": [100.0] * 5,
                         "margin_mode": [r[3] for r in rows], "leverage": [10.0] * 5,
                         "isolated_margin": [r[2] for r in rows]})


def test_single_source_sensitivity_drop_corrupt_and_positions_crossed():
    prices = {"a": 100, "b": 101, "c": 99, "d": 100}
    comps = components(flat(prices, 3), W_UNEVEN)
    base = 0.4 * 100 + 0.3 * 101 + 0.2 * 99 + 0.1 * 100  # 100.1
    mi = mark_index([base] * 3, mark=[100.0] * 3)
    # dropping b (101, weight 0.3) moves most: (40 + 19.8 + 10) / 0.7 = 99.714
    drop_b = ((0.4 * 100 + 0.2 * 99 + 0.1 * 100) / 0.7 - base) / base * 1e4
    # corrupting a (weight 0.4) to x: the others 99, 100, 101 put the median at
    # M(x) = (clip(x, 99, 100) + clip(x, 100, 101)) / 2, within [99.5, 100.5]. Upwards a stays in
    # the band while x <= 100.5 x 1.05 = 105.525 (median with a on top = (100 + 101) / 2); b, c, d
    # are never outliers (M moves by 0.5 %), so beyond 105.525 only a is out: index
    # (30.3 + 19.8 + 10) / 0.6 = 100.167 (+6.7 bps). The worst rise is the band edge, reached at
    # 105.525 x (1 - 1e-9): 0.4 x 105.525 + 30.3 + 19.8 + 10 = 102.31 -> +220.8 bps.
    a_up = 100.5 * 1.05
    corrupt_a = ((0.4 * a_up + 0.3 * 101 + 0.2 * 99 + 0.1 * 100) - base) / base * 1e4
    # downwards: the band edge at (99 + 100) / 2 x 0.95 = 94.525: 37.81 + 60.1 = 97.91 -> -218.8 bps
    a_dn = 99.5 * 0.95
    corrupt_a_dn = ((0.4 * a_dn + 0.3 * 101 + 0.2 * 99 + 0.1 * 100) - base) / base * 1e4
    moves = ii.single_source_moves(comps, instruments(), mi)
    assert dict(moves.schema) == ii.SENSITIVITY_DETAIL_SCHEMA
    got = {(r["source"], r["scenario"]): r for r in moves.iter_rows(named=True)}
    assert got[("b", "drop")]["max_move_bps"] == pytest.approx(drop_b)  # about -38.5 bps
    assert got[("a", "drop")]["max_move_bps"] == pytest.approx(
        ((0.3 * 101 + 0.2 * 99 + 0.1 * 100) / 0.6 - base) / base * 1e4)
    assert got[("a", "corrupt_up")]["max_move_bps"] == pytest.approx(corrupt_a)  # about +220.8 bps
    assert got[("a", "corrupt_up")]["corrupt_price"] == pytest.approx(a_up)
    assert got[("a", "corrupt_down")]["max_move_bps"] == pytest.approx(corrupt_a_dn)  # about -218.8
    assert got[("a", "corrupt_down")]["corrupt_price"] == pytest.approx(a_dn)
    # the uncorrupted median is median(100, 101, 99, 100) = 100: 105.525 is 5.525 % off it
    assert got[("a", "corrupt_up")]["corrupt_pct"] == pytest.approx(0.05525)
    assert got[("a", "drop")]["corrupt_price"] is None

    sens = ii.single_source_sensitivity(comps, instruments(), mi, _positions(), _tiers_frame())
    assert dict(sens.schema) == ii.SENSITIVITY_SCHEMA
    r = sens.row(0, named=True)
    assert (r["drop_source"], r["drop_move_bps"]) == ("b", pytest.approx(drop_b))
    assert (r["corrupt_source"], r["corrupt_move_bps"]) == ("a", pytest.approx(corrupt_a))
    assert r["corrupt_price"] == pytest.approx(a_up) and r["corrupt_pct"] == pytest.approx(0.05525)
    assert r["corrupt_method"] == "weighted_mean" and r["corrupt_ts"] == at(0)
    assert (r["worst_scenario"], r["worst_source"]) == ("corrupt", "a")
    # a +-2.21 % move from mark 100 reaches LP 99 (long) and 101.5 (short), not 97 or 103
    assert r["mark_eod"] == 100.0
    assert (r["isolated_positions"], r["positions_crossed"]) == (4, 2)
    assert r["notional_crossed"] == pytest.approx(200.0)


def test_corrupt_search_with_an_outlier_already_present_finds_the_median_fallback():
    # Equal weights, pct 5 %: a, b, c at 100, d at 82 (18 % below the median 100: an outlier).
    # Recomputed index = (100 + 100 + 100) / 3 = 100 (one outlier: weighted mean of the rest).
    # Corrupt a to x; the others are 82, 100, 100, so the median of the four is
    # M(x) = (clip(x, 82, 100) + 100) / 2: 91 for x <= 82, (x + 100) / 2 on [82, 100], 100 above.
    # Up: a is kept while x <= 100 x 1.05 = 105 -> (105 + 200) / 3 = 101.667: +166.7 bps; beyond,
    #   a and d are outliers -> median fallback M = 100: 0 bps. Worst rise +166.7 bps at 105.
    # Down: inside the band a is kept while x / M(x) >= 0.95, 2x / (x + 100) >= 0.95,
    #   x >= 95 / 1.05 = 90.476 -> (90.476 + 200) / 3 = 96.825: -317.5 bps (the band edge). Below
    #   90.476, M < 100 / 1.05 = 95.238 so b and c are outliers too (and a, d): median fallback
    #   M(x) = (x + 100) / 2, falling to (82 + 100) / 2 = 91 at x = 82 and staying 91 below:
    #   -900 bps. The worst is the median fallback, -900 bps, for any x <= 82; reported at the
    #   value nearest the median, 82 x (1 - 1e-9): 18 % below the uncorrupted median 100.
    # d corrupted: the others are 100, 100, 100, M = 100 for every x: d kept on [95, 105] ->
    #   (x + 300) / 4 = 98.75 ... 101.25: +-125 bps; outside, d alone is out: 100, 0 bps.
    # Dropping any source: 0 bps (without d: 100; without a: (100 + 100) / 2, d still out).
    comps = components(flat({"a": 100, "b": 100, "c": 100, "d": 82}, 2), W_EVEN)
    mi = mark_index([100.0, 100.0], mark=[100.0, 100.0])
    moves = ii.single_source_moves(comps, instruments(), mi)
    got = {(r["source"], r["scenario"]): r for r in moves.iter_rows(named=True)}
    assert got[("a", "corrupt_up")]["max_move_bps"] == pytest.approx((305 / 3 - 100) / 100 * 1e4)  # +166.7
    assert got[("a", "corrupt_up")]["corrupt_price"] == pytest.approx(105.0)
    assert got[("a", "corrupt_down")]["max_move_bps"] == pytest.approx(-900.0)
    assert got[("a", "corrupt_down")]["corrupt_price"] == pytest.approx(82.0)
    assert got[("a", "corrupt_down")]["corrupt_pct"] == pytest.approx(-0.18)
    assert got[("d", "corrupt_up")]["max_move_bps"] == pytest.approx(125.0)
    assert got[("d", "corrupt_down")]["max_move_bps"] == pytest.approx(-125.0)
    assert got[("d", "corrupt_down")]["corrupt_price"] == pytest.approx(95.0)
    assert got[("a", "drop")]["max_move_bps"] == pytest.approx(0.0, abs=1e-9)
    # the band-edge value inside the band moves the index less: -317.5 bps at 90.476
    band_edge = ((95 / 1.05 + 200) / 3 - 100) / 100 * 1e4
    assert band_edge == pytest.approx(-317.46, abs=0.01) and abs(band_edge) < 900

    r = ii.single_source_sensitivity(comps, instruments(), mi, _positions(), _tiers_frame()).row(0, named=True)
    assert (r["corrupt_source"], r["corrupt_move_bps"]) == ("a", pytest.approx(-900.0))
    assert r["corrupt_price"] == pytest.approx(82.0) and r["corrupt_pct"] == pytest.approx(-0.18)
    assert r["corrupt_method"] == "median_fallback" and r["corrupt_ts"] == at(0)
    assert (r["worst_scenario"], r["worst_move_bps"]) == ("corrupt", pytest.approx(-900.0))
    # +-9 % from mark 100 reaches all four liquidation prices (99, 97, 101.5, 103)
    assert r["positions_crossed"] == 4


def test_with_two_live_sources_the_corrupt_move_is_a_tenfold_corruption():
    # min_sources 2; c and d update once and go stale after second 10, so seconds 11-14 have only
    # a and b (both 100) live. With two live sources both are outliers of their median as soon as
    # they part by more than the band, so the index is the median (x + 100) / 2 and follows the
    # corrupt value x without bound: the search reports FAR_FACTOR x the highest breakpoint
    # (a's own band end 100 x 1.05 / 0.95) and 1 / FAR_FACTOR x the lowest (100 x 0.95 / 1.05).
    ups = flat({"a": 100, "b": 100}, 15)
    ups["c"], ups["d"] = [(0, 100.0)], [(0, 100.0)]
    moves = ii.single_source_moves(components(ups, W_EVEN), instruments(stale_s=10.0, min_sources=2),
                                   mark_index([100.0] * 15))
    got = {(r["source"], r["scenario"]): r for r in moves.iter_rows(named=True)}
    for scenario, x in (("corrupt_up", 100 * 1.05 / 0.95 * ii.FAR_FACTOR),
                        ("corrupt_down", 100 * 0.95 / 1.05 / ii.FAR_FACTOR)):
        r = got[("a", scenario)]
        assert r["corrupt_price"] == pytest.approx(x)
        assert r["max_move_bps"] == pytest.approx(((x + 100) / 2 - 100) / 100 * 1e4)  # +50,263 / -4,548
        assert r["ts_max_move"] >= at(11)


def test_corrupt_search_matches_a_dense_grid_of_corrupt_values():
    # Random baskets of five sources (some seconds with one stale source, so both odd and even
    # live counts, and some with sources already off by up to 15 %): the search must find at least
    # the largest rise and fall any corrupt value on a dense grid gives, and its value must give
    # the move reported.
    rng = np.random.default_rng(3)
    t_n, s_n, pct = 40, 5, 0.05
    price = 100 * (1 + 0.01 * rng.standard_normal((t_n, s_n)))
    off = rng.random((t_n, s_n)) < 0.25
    price = np.where(off, price * (1 + rng.uniform(-0.15, 0.15, (t_n, s_n))), price)
    age = np.where(rng.random((t_n, s_n)) < 0.15, 99.0, 0.0)
    weights = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    b = ii._Basket("X", DAY, np.arange(t_n) * 1_000_000, list("abcde"), weights, price, age,
                   np.zeros((t_n, s_n), dtype=bool), pct, 10.0, 3, np.full(t_n, np.nan), np.full(t_n, 100.0))
    base, _ = b.rule()
    live = (age <= 10.0) & np.isfinite(price)
    median0 = np.nanmedian(np.where(live, price, np.nan), axis=1)
    grid = np.concatenate([np.linspace(50, 150, 20_001), np.geomspace(1, 1e4, 2_001)])
    for j in range(s_n):
        up, up_x, down, down_x = ii._corrupt_search(b, j, base, live, median0, None)
        rows = np.repeat(price, len(grid), axis=0)
        rows[:, j] = np.where(np.repeat(live[:, j], len(grid)), np.tile(grid, t_n), rows[:, j])
        idx, _ = ii.index_rule.compute_index(rows, np.repeat(age, len(grid), axis=0), weights, pct, 10.0, 0)
        dense = ((idx.reshape(t_n, len(grid)) - base[:, None]) / base[:, None] * 1e4)
        hold = live.sum(axis=1) < 3
        assert np.all(up[~hold] >= dense.max(axis=1)[~hold] - 1e-6)
        assert np.all(down[~hold] <= dense.min(axis=1)[~hold] + 1e-6)
        for t in np.flatnonzero(~hold & live[:, j]):
            for mv, x in ((up[t], up_x[t]), (down[t], down_x[t])):
                p = price[t].copy()
                p[j] = x
                i1, _ = ii.index_rule.compute_index(p[None], age[t][None], weights, pct, 10.0, 3)
                assert (i1[0] - base[t]) / base[t] * 1e4 == pytest.approx(mv, abs=1e-9)


def test_counterfactual_move_crosses_positions_in_its_direction():
    ups = flat({"a": 100, "b": 100, "c": 100}, 3)
    ups["d"] = [(0, 120.0), (1, 120.0), (2, 120.0)]  # +5 % counterfactual: shorts up to 105
    comps, inst, mi = components(ups, W_EVEN), instruments(), mark_index([100.0] * 3)
    st = ii.source_status(comps, inst, mi)
    r = ii.broken_source_counterfactual(comps, inst, mi, st, _positions(), _tiers_frame()).row(0, named=True)
    assert r["cf_move_bps"] == pytest.approx(500.0)
    assert r["positions_crossed"] == 2  # both shorts (LP 101.5 and 103), no long


def test_mark_basis_small_case():
    mi = mark_index([100.0, 100.0, 100.0], mark=[101.0, 99.0, 100.5])
    r = ii.mark_basis(mi).row(0, named=True)
    assert r["date"] == DAY and r["seconds"] == 3
    assert r["basis_mean_bps"] == pytest.approx(50.0 / 3)
    assert r["basis_abs_mean_bps"] == pytest.approx(250.0 / 3)
    assert r["basis_abs_max_bps"] == pytest.approx(100.0)
    assert r["basis_abs_p99_bps"] == pytest.approx(100.0)


def test_mark_lag_rises_when_the_mark_is_delayed():
    rng = np.random.default_rng(1)
    n = 4000
    vol = np.where(np.arange(n) < n // 2, 1e-4, 5e-4)
    true = 100 * np.exp(np.cumsum(vol * rng.standard_normal(n)))
    ts = [at(s) for s in range(n)]
    trades = pl.DataFrame({"ts": ts, "symbol": ["X"] * n, "price": true}, schema_overrides={"ts": UTC_US})
    out = {}
    for delay in (0, 5):
        mark = np.concatenate([[true[0]] * delay, true[: n - delay]])
        mi = pl.DataFrame({"ts": ts, "symbol": ["X"] * n, "mark_price": mark, "index_price": mark,
                           "last_price": true}, schema_overrides={"ts": UTC_US})
        out[delay] = ii.mark_lag_by_vol_bucket(mi, trades)
    assert out[0]["vol_bucket"].to_list() == ["low", "mid", "high"]
    assert out[0]["lag_s"].to_list() == pytest.approx([0, 0, 0])
    assert out[5]["lag_s"].to_list() == pytest.approx([5, 5, 5], abs=0.5)
    high = out[5].filter(pl.col("vol_bucket") == "high")["mean_abs_gap_bps"][0]
    low = out[5].filter(pl.col("vol_bucket") == "low")["mean_abs_gap_bps"][0]
    assert high > low > out[0]["mean_abs_gap_bps"].max()


def test_bad_input_names_dataset_and_column():
    comps = components(flat({s: 100 for s in SRC}, 2), W_EVEN)
    with pytest.raises(InputError, match="instruments.*index_stale_s"):
        ii.recompute_index(comps, instruments().drop("index_stale_s"), mark_index([100.0, 100.0]))
    with pytest.raises(InputError, match="instruments.*'Y'"):
        ii.recompute_index(comps, instruments(), mark_index([100.0, 100.0]).with_columns(symbol=pl.lit("Y")))
    with pytest.raises(InputError, match="mark_index.*one UTC date"):
        two = mark_index([100.0, 100.0]).with_columns(pl.col("ts") + pl.duration(days=pl.int_range(2)))
        ii.recompute_index(comps, instruments(), two)


def test_compiled_corrupt_search_is_the_rule_on_the_full_basket_bit_for_bit():
    # For every candidate corrupt value, the venue's rule on the whole basket (index_rule.compute_
    # index: sorted median, outliers, weighted mean, hold) gives the moves; per second the reported
    # rise and fall must be exactly the largest of them, with the candidate the tie-break picks
    # (within TIE_RTOL, the value nearest the uncorrupted median, the first of equals). Baskets
    # with stale sources (odd and even live counts, seconds below min_sources that hold the last
    # index, a previous index before the first), sources far off and repeated prices (ties).
    rng = np.random.default_rng(11)
    t_n, s_n, pct, min_sources = 60, 5, 0.05, 3
    price = np.round(100 * (1 + 0.01 * rng.standard_normal((t_n, s_n))), 1)  # rounded: equal prices
    off = rng.random((t_n, s_n)) < 0.25
    price = np.where(off, price * (1 + rng.uniform(-0.15, 0.15, (t_n, s_n))), price)
    age = np.where(rng.random((t_n, s_n)) < 0.3, 99.0, 0.0)
    weights = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    b = ii._Basket("X", DAY, np.arange(t_n) * 1_000_000, list("abcde"), weights, price, age,
                   np.zeros((t_n, s_n), dtype=bool), pct, 10.0, min_sources, np.full(t_n, np.nan),
                   np.full(t_n, 100.0), prev_index=100.05)
    base, _ = b.rule()
    live = (age <= 10.0) & np.isfinite(price)
    assert (live.sum(axis=1) < min_sources).any() and (live.sum(axis=1) % 2 == 0).any()
    median0 = ii.index_rule.live_median(np.where(live, price, np.nan))
    for corrupt_pct in (None, 0.02):
        for j in range(s_n):
            x = ii._corrupt_candidates(b, j, live, median0, corrupt_pct, ii._others_order(price, live, j))
            moves = np.empty(x.shape)
            for k in range(x.shape[0]):
                p = price.copy()
                p[:, j] = np.where(live[:, j], x[k], price[:, j])
                idx, _ = ii.index_rule.compute_index(p, age, weights, pct, 10.0, min_sources, 100.05)
                moves[k] = (idx - base) / base * 1e4
            dev = np.nan_to_num(np.abs(x / median0 - 1.0), nan=np.inf)
            up, up_x, down, down_x = ii._corrupt_search(b, j, base, live, median0, corrupt_pct)
            for sign, got, got_x in ((1.0, up, up_x), (-1.0, down, down_x)):
                signed = sign * moves
                with np.errstate(invalid="ignore"):
                    best = np.nanmax(np.where(np.isnan(signed), -np.inf, signed), axis=0)
                    tie = signed >= best - ii.TIE_RTOL * np.maximum(np.abs(best), 1.0)
                k = np.argmin(np.where(tie, dev, np.inf), axis=0)
                want = moves[k, np.arange(t_n)]
                assert np.array_equal(got, want, equal_nan=True)
                want_x = np.where(live[:, j], x[k, np.arange(t_n)], np.nan)
                assert np.array_equal(got_x, want_x, equal_nan=True)
