"""Early-warning anomalies (DESIGN 4.7): minute features, robust z, incidents and the
rules-versus-model comparison on hand-built frames, plus a clean simulated tiny week."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from venue_risk import schema
from venue_risk.metrics import anomalies as an

approx = pytest.approx
DAY = dt.date(2026, 11, 1)


def ts(h, m=0, s=0):
    return dt.datetime(2026, 11, 1, h, m, s, tzinfo=dt.timezone.utc)


def frame(name, rows):
    spec = schema.DATASETS[name].schema
    if not rows:
        return schema.empty_frame(name)
    return schema.conform(name, pl.DataFrame({c: [r.get(c) for r in rows] for c in spec}, schema=spec))


def test_minute_features():
    oe = frame("order_events", [dict(ts=ts(10, 0, i), symbol="BTCUSDT", order_id=i, event=e)
                                for i, e in enumerate(["new", "new", "cancel", "cancel", "cancel", "fill"])])
    lc = frame("leverage_changes", [
        dict(ts=ts(10, 0, 5), account=1, symbol="BTCUSDT", old_leverage=10.0, new_leverage=50.0),
        dict(ts=ts(10, 0, 9), account=2, symbol="BTCUSDT", old_leverage=20.0, new_leverage=5.0)])
    bd = frame("book_depth", [
        dict(ts=ts(10, 0, 30), symbol="BTCUSDT", percentage=-1.0, depth=1.0, notional=400.0),
        dict(ts=ts(10, 0, 30), symbol="BTCUSDT", percentage=1.0, depth=1.0, notional=600.0),
        dict(ts=ts(10, 0, 50), symbol="BTCUSDT", percentage=-0.2, depth=1.0, notional=100.0),
        dict(ts=ts(10, 0, 50), symbol="BTCUSDT", percentage=-1.0, depth=1.0, notional=500.0),
        dict(ts=ts(10, 0, 50), symbol="BTCUSDT", percentage=1.0, depth=1.0, notional=700.0)])
    mi = frame("mark_index", [
        dict(ts=ts(10, 0, 1), symbol="BTCUSDT", mark_price=100.0, best_bid=99.9, best_ask=100.1),
        dict(ts=ts(10, 0, 2), symbol="BTCUSDT", mark_price=100.0, best_bid=99.8, best_ask=100.2)])
    lq = frame("liquidations", [dict(liquidation_id=1, ts_trigger=ts(10, 0, 40), symbol="BTCUSDT")])
    tr = frame("trades", [dict(ts=ts(10, 0, 3), symbol="BTCUSDT", trade_id=i) for i in (1, 2)])
    f = an.minute_features(oe, lc, bd, mi, lq, tr)
    assert list(f.columns) == list(an.FEATURES_SCHEMA)
    assert f.height == 1440 and f["date"].unique().to_list() == [DAY]
    r = f.filter(pl.col("minute") == ts(10)).row(0, named=True)
    assert (r["cancels"], r["news"], r["cancel_new_ratio"]) == (3, 2, 1.5)
    assert (r["leverage_changes"], r["leverage_change_abs"], r["max_new_leverage"]) == (2, 55.0, 50.0)
    assert r["depth_1pct"] == 1_200.0  # the minute's last snapshot, -1 % + +1 % bands
    assert r["spread_bps"] == approx((0.2 / 100 + 0.4 / 100) / 2 * 1e4)  # mean of 20 and 40
    assert (r["liquidations"], r["trades"]) == (1, 2)
    q = f.filter(pl.col("minute") == ts(10, 1)).row(0, named=True)
    assert (q["cancels"], q["trades"], q["cancel_new_ratio"]) == (0, 0, 0.0)
    assert q["depth_1pct"] is None and q["spread_bps"] is None


def features(rows, symbols=("A",), minutes=30):
    """A minute-feature frame: quiet defaults, `rows` = {(symbol, minute index): {col: value}}."""
    out = []
    for s in symbols:
        for m in range(minutes):
            r = dict(date=DAY, symbol=s, minute=ts(10) + dt.timedelta(minutes=m), cancels=4, news=4,
                     cancel_new_ratio=1.0, leverage_changes=0, leverage_change_abs=0.0,
                     max_new_leverage=None, depth_1pct=1e6, spread_bps=2.0, liquidations=0, trades=10)
            r.update(rows.get((s, m), {}))
            out.append(r)
    return pl.DataFrame(out, schema=an.FEATURES_SCHEMA)


def test_robust_z_by_hand():
    # Baseline cancels 2, 4, 4, 6, 8: median 4, MAD 2 -> 1.4826 x 2 = 2.9652 (mean abs dev 1.6 ->
    # 2.005, floor sqrt(4) = 2), so 10 cancels score (10 - 4) / 2.9652. Depth constant 1e6: MAD 0,
    # the log floor 0.05 applies, so half the depth scores ln 2 / 0.05 = 13.86 (thinness, positive).
    base = features({("A", i): {"cancels": c} for i, c in enumerate([2, 4, 4, 6, 8])}, minutes=5)
    today = features({("A", 0): {"cancels": 10, "depth_1pct": 5e5}}, minutes=2)
    z = an.robust_z(today, base)
    assert list(z.columns) == list(an.ZSCORES_SCHEMA)
    get = {(m, f): v for m, f, v in z.select("minute", "feature", "z").iter_rows()}
    assert get[(ts(10), "cancels")] == approx(6 / 2.9652)
    assert get[(ts(10), "depth_1pct")] == approx(math.log(2) / 0.05)
    assert get[(ts(10, 1), "depth_1pct")] == approx(0.0)
    # A count feature at zero in the baseline: floor sqrt(max(0, 1)) = 1, one liquidation = z 1.
    today2 = features({("A", 0): {"liquidations": 1}}, minutes=1)
    z2 = an.robust_z(today2, base).filter(pl.col("feature") == "liquidations")
    assert z2["z"].to_list() == [1.0]
    # Without history the same day is the baseline.
    z3 = an.robust_z(today)
    s = an.baseline_stats(today).filter(pl.col("feature") == "cancels").row(0, named=True)
    assert s["baseline_median"] == 7.0  # median of 10 and 4
    assert z3.height == 2 * len(an.SCORED_FEATURES)


def zrows(entries):
    return pl.DataFrame([dict(date=DAY, symbol=s, minute=ts(h, m), feature=f, value=0.0,
                              baseline_median=0.0, baseline_scale=1.0, z=z)
                         for s, h, m, f, z in entries], schema=an.ZSCORES_SCHEMA)


def test_incidents_two_features_of_one_symbol_and_one_feature_across_three_symbols():
    z = zrows([
        ("A", 10, 0, "cancels", 7.0), ("A", 10, 3, "depth_1pct", 12.0),  # one symbol, 2 features
        ("A", 12, 0, "cancels", 9.0),                                     # alone: no incident
        ("A", 10, 0, "trades", 3.0),                                      # below the threshold
        ("B", 14, 0, "spread_bps", 25.0), ("C", 14, 1, "spread_bps", 8.0),
        ("D", 14, 2, "spread_bps", 7.0),                                  # one feature, 3 symbols
        ("E", 16, 0, "spread_bps", 9.0), ("F", 16, 1, "spread_bps", 9.0),  # two symbols only
        ("G", 18, 0, "cancels", 9.0), ("G", 18, 20, "trades", 9.0),       # beyond the window
    ])
    inc = an.incidents(z, z_threshold=6.0, window_min=5)
    assert list(inc.columns) == list(an.INCIDENTS_SCHEMA)
    assert inc.height == 2
    a = inc.row(0, named=True)
    assert (a["start"], a["end"]) == (ts(10), ts(10, 4))
    assert a["symbols"] == ["A"] and a["features"] == ["cancels", "depth_1pct"]
    assert a["max_z"] == 12.0 and a["severity"] == "medium" and a["kinds"] == ["multi_feature"]
    b = inc.row(1, named=True)
    assert (b["start"], b["end"]) == (ts(14), ts(14, 3))
    assert b["symbols"] == ["B", "C", "D"] and b["features"] == ["spread_bps"]
    assert b["severity"] == "high" and b["kinds"] == ["multi_symbol"] and b["n_anomalies"] == 3
    assert an.severity(6.0) == "low" and an.severity(10.0) == "medium" and an.severity(20.0) == "high"
    assert an.incidents(z, z_threshold=30.0).height == 0


def test_a_thin_book_cluster_on_three_symbols_is_one_incident():
    # each symbol thin (depth) and wide (spread): three multi-feature candidates plus two
    # multi-symbol ones (depth, spread) -> merged transitively into one incident
    # (all starting in the same minute: the per-symbol candidates come first, and none of them
    # shares a symbol with another)
    z = zrows([(s, 3, m, f, 8.0 + k) for k, s in enumerate("XYZ") for m in (10, 12)
               for f in ("depth_1pct", "spread_bps")])
    inc = an.incidents(z, z_threshold=6.0, window_min=5)
    assert inc.height == 1
    row = inc.row(0, named=True)
    assert row["symbols"] == ["X", "Y", "Z"] and row["features"] == ["depth_1pct", "spread_bps"]
    assert row["kinds"] == ["multi_feature", "multi_symbol"] and row["n_anomalies"] == 12
    assert (row["start"], row["end"]) == (ts(3, 10), ts(3, 13)) and row["max_z"] == 10.0


def test_rules_vs_model_both_ways():
    # A: 600 cancels at minute 5 (limit 500) with nothing else: a breach with no incident.
    # B: cancels 9x usual and depth a quarter of usual at minute 10 (both anomalous), cancels
    #    under the limit and depth 250k = at, not under, the minimum: an incident with no breach.
    f = features({("A", 5): {"cancels": 600, "news": 600},
                  ("B", 10): {"cancels": 36, "depth_1pct": 2.5e5}}, symbols=("A", "B"), minutes=30)
    z = an.robust_z(f)
    inc = an.incidents(z)
    assert inc.height == 1 and inc["symbols"].to_list() == [["B"]]
    assert set(inc["features"][0]) >= {"cancels", "depth_1pct"}
    out = an.rules_vs_model(f, inc, zscores=z)
    assert list(out.columns) == list(an.RULES_VS_MODEL_SCHEMA)
    cases = {r["case"]: r for r in out.to_dicts()}
    assert set(cases) == {an.CASE_INCIDENT_NO_BREACH, an.CASE_BREACH_NO_INCIDENT}
    i = cases[an.CASE_INCIDENT_NO_BREACH]
    assert i["symbols"] == ["B"] and i["rules_breached"] == [] and i["z_threshold"] == an.Z_THRESHOLD
    assert any(d.startswith("max_cancels_per_min: cancels max 36 vs limit 500") for d in i["rules_detail"])
    assert any(d.startswith("min_depth_1pct: depth within 1 % min 250,000") for d in i["rules_detail"])
    b = cases[an.CASE_BREACH_NO_INCIDENT]
    assert b["symbols"] == ["A"] and b["rules_breached"] == ["max_cancels_per_min"]
    assert b["start"] == ts(10, 5) and b["end"] == ts(10, 6)
    assert b["rules_detail"] == ["max_cancels_per_min: cancels 600 > limit 500 in 1 minute(s)"]
    assert b["model_features"] == ["cancels"]  # one feature alone is no incident
    assert any(d.startswith("cancels: max z") for d in b["model_detail"])
    # Overriding the limits: with a cap of 1,000 the A breach disappears; a higher depth minimum
    # makes B a breach too, so the incident agrees with the rules.
    out2 = an.rules_vs_model(f, inc, {"max_cancels_per_min": 1_000, "min_depth_1pct": {"B": 3e5}})
    assert out2.height == 0
    with pytest.raises(ValueError, match="unknown limit"):
        an.rules_vs_model(f, inc, {"max_cancel": 1})


def test_clean_tiny_week_false_incidents(tmp_path):
    """Clean simulated tiny week (trailing baseline of the days before): at most 1 false incident
    per symbol over the clean days; day 2 (index 1) carries the default plan's BTCUSDT
    volatility shock at 14:30 and is flagged there."""
    from venue_risk.simulate import simulate
    from venue_risk.sources import FilesSource

    start = dt.date(2026, 11, 1)
    simulate("tiny", start, 7, tmp_path)
    src = FilesSource(tmp_path)
    history, by_day = [], {}
    for i in range(7):
        d = start + dt.timedelta(days=i)
        r = {ds: src.read(ds, d) for ds in ("order_events", "leverage_changes", "book_depth",
                                            "mark_index", "liquidations", "trades")}
        f = an.minute_features(**r)
        z = an.robust_z(f, pl.concat(history) if history else None)
        by_day[i] = an.incidents(z)
        history.append(f)
    per_symbol: dict[str, int] = {}
    for i in range(7):
        if i != 1:
            for symbols in by_day[i]["symbols"].to_list():
                for sym in symbols:
                    per_symbol[sym] = per_symbol.get(sym, 0) + 1
    assert all(n <= 1 for n in per_symbol.values()), per_symbol  # at most 1 per symbol-week
    shock = by_day[1]
    assert shock.height >= 1
    hit = shock.filter(pl.col("symbols").list.contains("BTCUSDT")
                       & (pl.col("start") <= dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.timezone.utc))
                       & (pl.col("end") >= dt.datetime(2026, 11, 2, 14, 30, tzinfo=dt.timezone.utc)))
    assert hit.height >= 1
