"""Liquidation cascades on a graph of symbols (DESIGN 4.9), fixed points worked by hand.

Two symbols, correlation 0.5. A: mark 100, bid depth linear, 1M notional per % (bands 1..5 %,
beyond 5 % extended at the same 1M per %). B: mark 50, 2M per %. Isolated longs (notional =
|size| x mark, the unit of book_depth):
  A: P1 LP 97 (-3 %) 1M; P2 LP 95.8 (-4.2 %) 2M; P3 LP 90 (-10 %) 5M.
  B: P4 LP 49 (-2 %) 1M; P5 LP 46 (-8 %) 1M.
Target move: d = shock + own impact, T_A = d_A + 0.5 d_B, T_B = d_B + 0.5 d_A.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from venue_risk import margin
from venue_risk.errors import InputError
from venue_risk.metrics import cascade as cc

approx = pytest.approx
BTC_TIERS = margin.build_tiers(margin.BINANCE_BTC_2021)
FAST = 1e6  # latency_s >> response_s: the whole pending move lands each round (lambda = 1)


def depth(per_pct: dict[str, float]) -> pl.DataFrame:
    rows = [{"symbol": s, "percentage": sign * k, "notional": k * v}
            for s, v in per_pct.items() for k in (1.0, 2.0, 3.0, 4.0, 5.0) for sign in (-1, 1)]
    return pl.DataFrame(rows)


def isolated(rows: list[tuple[str, float, float, float]]) -> pl.DataFrame:
    """(symbol, mark, notional, liquidation price) of isolated longs."""
    return pl.DataFrame({
        "symbol": [r[0] for r in rows], "account": list(range(1, len(rows) + 1)),
        "margin_mode": ["isolated"] * len(rows), "size": [r[2] / r[1] for r in rows],
        "entry_price": [r[1] for r in rows], "liquidation_price": [r[3] for r in rows],
        "cross_wallet": [None] * len(rows)}, schema_overrides={"cross_wallet": pl.Float64})


CORR = pl.DataFrame({"symbol_a": ["A"], "symbol_b": ["B"], "correlation": [0.5]})
MARKS = {"A": 100.0, "B": 50.0}


def two_symbol_graph() -> cc.CascadeGraph:
    pos = isolated([("A", 100.0, 1e6, 97.0), ("A", 100.0, 2e6, 95.8), ("A", 100.0, 5e6, 90.0),
                    ("B", 50.0, 1e6, 49.0), ("B", 50.0, 1e6, 46.0)])
    return cc.graph_from_parts(MARKS, depth({"A": 1e6, "B": 2e6}), CORR, pos)


def test_impact_walks_the_depth_curve():
    pct, cum = np.array([1.0, 2.0, 5.0]), np.array([1e6, 3e6, 6e6])
    assert cc.impact_pct(pct, cum, 0.5e6) == approx(0.5)
    assert cc.impact_pct(pct, cum, 2e6) == approx(1.5)
    assert cc.impact_pct(pct, cum, 6e6) == approx(5.0)
    assert cc.impact_pct(pct, cum, 8e6) == approx(7.0)  # beyond: outer segment 1M per %


def test_two_symbol_fixed_point_by_hand():
    # Shock A -3 %.
    # Round 1: m = (-3, 0): P1 (-3 %) liquidated; A sells 1M -> e_A = -1 %.
    #   d = (-4, 0); T = (-4, -2). Lands fully.
    # Round 2: m = (-4, -2): P4 (-2 %) liquidated; B sells 1M into 2M per % -> e_B = -0.5 %.
    #   d = (-4, -0.5); T_A = -4 - 0.25 = -4.25, T_B = -0.5 - 2 = -2.5.
    # Round 3: m = (-4.25, -2.5): P2 (-4.2 %) liquidated; A sold 3M -> e_A = -3 %.
    #   d = (-6, -0.5); T = (-6.25, -3.5). P3 (-10 %) and P5 (-8 %) not reached.
    # Round 4: nothing new at T: fixed point A -6.25 %, B -3.5 %; amplification 6.25 / 3.
    r = cc.cascade(two_symbol_graph(), "A", -3.0, latency_s=FAST)
    assert r.converged and r.rounds == 3 and r.iterations == 4
    per = {row["symbol"]: row for row in r.per_symbol.iter_rows(named=True)}
    assert per["A"]["final_move_pct"] == approx(-6.25)
    assert per["B"]["final_move_pct"] == approx(-3.5)
    assert per["A"]["own_impact_pct"] == approx(-3.0) and per["B"]["own_impact_pct"] == approx(-0.5)
    assert per["A"]["liquidated_notional"] == approx(3e6) and per["B"]["liquidated_notional"] == approx(1e6)
    assert r.amplification == approx(6.25 / 3)
    assert r.final_move_pct == approx(-6.25)
    assert r.liquidated_notional == approx(4e6) and r.liquidated_positions == 3
    # Contributions: |e| x (1 + 0.5): A 4.5, B 0.75 (14 % of 5.25): both critical, A first.
    assert per["A"]["contribution_pct"] == approx(4.5) and per["B"]["contribution_pct"] == approx(0.75)
    assert r.critical_symbols == ["A", "B"]


def test_latency_changes_rounds_not_the_fixed_point():
    g = two_symbol_graph()
    fast = cc.cascade(g, "A", -3.0, latency_s=FAST)
    slow = cc.cascade(g, "A", -3.0, latency_s=0.5, response_s=1.0)  # lambda = 0.39
    assert slow.converged and slow.final_move_pct == approx(fast.final_move_pct)
    assert slow.iterations > fast.iterations
    assert slow.duration_s == approx(slow.iterations * 0.5)
    cut = cc.cascade(g, "A", -3.0, latency_s=0.5, response_s=1.0, max_iter=2)
    assert not cut.converged and abs(cut.final_move_pct) < 6.25


def test_thinner_depth_alone_amplifies():
    # Depth x 0.5 (A 0.5M per %, B 1M per %), same positions. Shock A -3 %.
    # Round 1: P1 -> e_A = -2 %; T = (-5, -2.5).
    # Round 2: P2 (-4.2) and P4 (-2) -> A sold 3M: 5 % + 0.5M / 0.5M per % = 6 % -> e_A = -6 %;
    #   B sold 1M -> e_B = -1 %. d = (-9, -1); T = (-9.5, -5.5). P3 (-10), P5 (-8) not reached.
    # Fixed point A -9.5 %: amplification 9.5 / 3 = 3.17 > 2.08.
    g = two_symbol_graph()
    base = cc.cascade(g, "A", -3.0, latency_s=FAST)
    thin = cc.cascade(g.with_depth_scaled(0.5), "A", -3.0, latency_s=FAST)
    assert thin.final_move_pct == approx(-9.5)
    assert thin.amplification == approx(9.5 / 3)
    assert thin.rounds == 2
    assert thin.per_symbol.filter(pl.col("symbol") == "B")["final_move_pct"][0] == approx(-5.5)
    assert thin.amplification > base.amplification


def test_amplification_grows_with_shock_size():
    # Longs on A at every 1 % from -1 % to -40 %, notional k x 10k at -k %: more leverage sits
    # farther out, so liquidated notional grows faster than the shock. E.g. shock 2 %: 30k sold
    # -> 0.03 % -> amplification 1.015; shock 20 %: 2.1M sold -> -22.1 % -> P21, P22 (430k
    # more) -> -22.53 % -> amplification 1.1265.
    rows = [("A", 100.0, k * 1e4, 100.0 * (1 - k / 100)) for k in range(1, 41)]
    g = cc.graph_from_parts(MARKS, depth({"A": 1e6, "B": 2e6}), CORR, isolated(rows))
    table = cc.cascade_table(g, latency_s=FAST)
    assert table.columns[0] == "date"
    assert table.height == 2 * 4 * 2  # symbols x shocks x directions
    down = table.filter((pl.col("shock_symbol") == "A") & (pl.col("direction") == -1)).sort("shock")
    amp = down["amplification"].to_list()
    assert amp[0] == approx(1.015) and amp[-1] == approx(1.1265)
    assert all(a < b for a, b in zip(amp, amp[1:]))
    assert down["liquidated_notional"].to_list()[0] == approx(3e4)
    # Up shocks liquidate nothing (no shorts): amplification 1, no critical symbol.
    up = table.filter((pl.col("shock_symbol") == "A") & (pl.col("direction") == 1))
    assert up["amplification"].to_list() == approx([1.0] * 4)
    assert up["critical_symbols"].to_list() == [[]] * 4


def test_shared_cross_account_carries_the_move():
    # One cross account, W_c = 20,000: long 1,000 A @ 100 and long 2,000 B @ 50 (100k each,
    # tier 2, MM 450 each). Correlation 0. A -20 %: equity 20,000 - 20,000 = 0 <= MM -> the
    # account is liquidated: A sells 100k (-0.1 %), B sells 100k into 2M per % (-0.05 %).
    pos = pl.DataFrame({"symbol": ["A", "B"], "account": [9, 9], "margin_mode": ["cross"] * 2,
                        "size": [1_000.0, 2_000.0], "entry_price": [100.0, 50.0],
                        "liquidation_price": [None, None], "cross_wallet": [20_000.0, 20_000.0]},
                       schema_overrides={"liquidation_price": pl.Float64})
    zero = pl.DataFrame({"symbol_a": ["A"], "symbol_b": ["B"], "correlation": [0.0]})
    g = cc.graph_from_parts(MARKS, depth({"A": 1e6, "B": 2e6}), zero, pos,
                            tiers={"A": BTC_TIERS, "B": BTC_TIERS})
    edges = cc.graph_edges(g)
    assert edges["shared_cross_accounts"].to_list() == [1]
    assert edges["shared_cross_notional"].to_list() == approx([200_000.0])
    r = cc.cascade(g, "A", -20.0, latency_s=FAST)
    per = {row["symbol"]: row for row in r.per_symbol.iter_rows(named=True)}
    assert per["B"]["liquidated_notional"] == approx(100_000.0)
    assert per["B"]["final_move_pct"] == approx(-0.05)
    assert per["A"]["final_move_pct"] == approx(-20.1)
    # A -10 %: equity 10,000 > MM 850: nothing liquidated.
    assert cc.cascade(g, "A", -10.0, latency_s=FAST).liquidated_notional == 0.0


def test_cascade_bad_input():
    g = two_symbol_graph()
    with pytest.raises(InputError, match="shock symbol"):
        cc.cascade(g, "C", -3.0)
    with pytest.raises(InputError, match="latency"):
        cc.cascade(g, "A", -3.0, latency_s=0)
    with pytest.raises(InputError, match="no depth"):
        cc.graph_from_parts(MARKS, depth({"A": 1e6}), CORR, isolated([]))


def test_engine_latency_setting_reaches_the_cascade_table_and_the_report(monkeypatch):
    """VENUE_RISK_ENGINE_LATENCY_S sets the round time; the report states the latency the table
    was computed with (duration_s / iterations), not a constant."""
    from venue_risk.report.account import _latency
    from venue_risk.settings import Settings

    monkeypatch.setenv("VENUE_RISK_ENGINE_LATENCY_S", "2.5")
    latency = Settings.from_env().engine_latency_s
    assert latency == 2.5
    table = cc.cascade_table(two_symbol_graph(), latency_s=latency)
    moved = table.filter(pl.col("iterations") > 0)
    assert moved.height and (moved["duration_s"] == moved["iterations"] * 2.5).all()
    assert _latency(table) == 2.5
    assert _latency(cc.cascade_table(two_symbol_graph())) == 1.0


def _cross_hits_by_loop(g: cc.CascadeGraph, m: np.ndarray) -> set[int]:
    """The cross rule worked position by position: an account is liquidated when
    W_c + sum size x (P - entry) <= sum MM(|size| x max(P, 0)), P = mark x (1 + move)."""
    p = g.positions.with_row_index("_i").filter(pl.col("margin_mode") == "cross")
    hit: set[int] = set()
    for (_a,), acc in p.group_by(["account"], maintain_order=True):
        equity, mm = float(acc["cross_wallet"].drop_nulls()[0]), 0.0
        for row in acc.iter_rows(named=True):
            price = g.marks[row["sym"]] * (1.0 + m[row["sym"]])
            equity += row["size"] * (price - row["entry_price"])
            mm += margin.maintenance_margin(g.tiers[row["symbol"]], abs(row["size"]) * max(price, 0.0))
        if equity <= mm:
            hit |= set(acc["_i"].to_list())
    return hit


def test_cross_accounts_vectorized_equal_the_loop_across_tiers_and_moves():
    """The engine's vectorized cross rule liquidates exactly the accounts the per-position loop
    does, for 80 accounts of 1-3 positions (long and short, notionals spanning several tiers,
    a wallet on one row only) under 200 random moves, including ones below -100 % (P < 0)."""
    rng = np.random.default_rng(7)
    rows = []
    for account in range(80):
        wallet = float(rng.uniform(1e4, 3e6))
        for k, sym in enumerate(rng.choice(["A", "B"], size=int(rng.integers(1, 4)))):
            mark = MARKS[sym]
            size = float(rng.choice([-1, 1]) * rng.uniform(1e3, 4e7) / mark)
            rows.append({"symbol": sym, "account": account, "margin_mode": "cross", "size": size,
                         "entry_price": mark * float(rng.uniform(0.9, 1.1)), "liquidation_price": None,
                         "cross_wallet": wallet if k == 0 else None})
    rows += isolated([("A", 100.0, 1e6, 97.0)]).with_columns(pl.lit(999).alias("account")).to_dicts()
    pos = pl.DataFrame(rows, schema_overrides={"liquidation_price": pl.Float64, "cross_wallet": pl.Float64})
    g = cc.graph_from_parts(MARKS, depth({"A": 1e6, "B": 2e6}), CORR, pos,
                            tiers={"A": BTC_TIERS, "B": margin.build_tiers(margin.BINANCE_BTC_2021, 0.1)})
    engine = cc._Engine(g)
    cross = (g.positions["margin_mode"] == "cross").to_numpy()
    seen = set()
    for _ in range(200):
        m = rng.uniform(-1.2, 0.6, 2)
        got = engine.crossed(m)
        expected = _cross_hits_by_loop(g, m)
        assert set(np.flatnonzero(got & cross).tolist()) == expected
        seen.add(len(expected))
    assert len(seen) > 5  # the moves liquidate anything from none to every account


def test_cross_account_without_a_wallet_is_named():
    pos = pl.DataFrame({"symbol": ["A", "B"], "account": [5, 5], "margin_mode": ["cross", "cross"],
                        "size": [1.0, -2.0], "entry_price": [100.0, 50.0], "liquidation_price": [None, None],
                        "cross_wallet": [None, None]},
                       schema_overrides={"liquidation_price": pl.Float64, "cross_wallet": pl.Float64})
    g = cc.graph_from_parts(MARKS, depth({"A": 1e6, "B": 2e6}), CORR, pos,
                            tiers={"A": BTC_TIERS, "B": BTC_TIERS})
    with pytest.raises(InputError, match="cross account 5 has no cross_wallet"):
        cc._Engine(g)
