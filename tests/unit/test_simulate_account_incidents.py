"""Account-side incidents of the simulator (issue 4): tiny days with explicit incidents of every
account kind, and proof that each is in the data as its ground truth says (order-flow
violations with their order ids, cancel bursts, thin books, leverage spikes, API keys, a
cross-margin account whose small second leg is the trigger at correlation one), with the
simulator's coherence invariants kept."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from venue_risk import margin
from venue_risk.positions import apply_fills, step
from venue_risk.schema import DATASETS
from venue_risk.simulate import (
    ACCOUNT_KINDS, ALL_KINDS, REGISTRY, Incident, random_plan, read_truth, simulate)
from venue_risk.simulate.incidents import default_plan

D0 = dt.date(2026, 11, 1)
UTC = dt.timezone.utc

INCIDENTS = [
    Incident("reduce_only_grew_position", 0, "BTCUSDT", dt.time(3, 0), 60, {"partial": True}),
    Incident("reduce_only_grew_position", 0, "ETHUSDT", dt.time(3, 30), 60, {}),
    Incident("post_only_took_liquidity", 0, "ETHUSDT", dt.time(4, 0), 60),
    Incident("fill_after_cancel", 0, "BTCUSDT", dt.time(5, 0), 60),
    Incident("cancel_burst", 0, "BTCUSDT", dt.time(6, 0), 240),
    Incident("thin_book_cluster", 0, "ETHUSDT", dt.time(7, 0), 900),
    Incident("leverage_spike", 0, "BTCUSDT", dt.time(8, 0), 300),
    Incident("over_scoped_key", 0, "BTCUSDT", dt.time(9, 0), 3600),
    Incident("automation_key_without_kill_switch", 0, "ETHUSDT", dt.time(10, 0), 3600),
    Incident("cross_margin_small_hedge_trigger", 0, "BTCUSDT", dt.time(20, 0), 60),
]


def read(out: Path, name: str, day: dt.date = D0) -> pl.DataFrame:
    return pl.read_parquet(out / name / f"date={day.isoformat()}" / "data.parquet")


def t0(day: dt.date = D0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=UTC)


def start_positions(out: Path, day: dt.date = D0) -> pl.DataFrame:
    prev = out / "positions_eod" / f"date={(day - dt.timedelta(days=1)).isoformat()}" / "data.parquet"
    if prev.exists():
        return pl.read_parquet(prev).select("account", "symbol", "size", "entry_price")
    syms = dict(enumerate(read(out, "instruments", day)["symbol"].to_list()))
    g = pl.read_parquet(out / "_state" / "genesis" / "positions.parquet").filter(pl.col("size") != 0)
    return g.select("account", symbol=pl.col("symbol_idx").replace_strict(syms, return_dtype=pl.String),
                    size="size", entry_price="entry")


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("account-incidents")
    simulate("tiny", D0, 1, out, incidents=INCIDENTS)
    truth = read_truth(out, D0)
    return {"out": out, "truth": {(r["kind"], r["symbol"]): r for r in truth}, "list": truth}


def span(r: dict) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.fromisoformat(r["start"]), dt.datetime.fromisoformat(r["end"])


# --- coherence ------------------------------------------------------------------------------------

def assert_coherent(out: Path, day: dt.date) -> None:
    for name, spec in DATASETS.items():
        df = read(out, name, day)
        assert df.schema == spec.polars_schema(), name
        if spec.keys and df.height:
            assert df.select(spec.keys).is_duplicated().sum() == 0, name
    eod = read(out, "positions_eod", day).select("account", "symbol", "size", "entry_price")
    rebuilt = apply_fills(start_positions(out, day), read(out, "trades", day))
    j = rebuilt.join(eod, on=["account", "symbol"], how="full", suffix="_eod", coalesce=True)
    assert j.height == rebuilt.height == eod.height
    assert (j["size"] - j["size_eod"]).abs().max() <= 1e-9
    assert ((j["entry_price"] - j["entry_price_eod"]).abs() / j["entry_price"].abs()).max() <= 1e-9
    ev = read(out, "order_events", day)
    tr = read(out, "trades", day)
    new = ev.filter(pl.col("event") == "new")
    assert new["order_id"].is_unique().all()
    ids = set(new["order_id"])
    assert set(tr["taker_order_id"]) <= ids and set(tr["maker_order_id"]) <= ids
    tk = tr.join(new, left_on="taker_order_id", right_on="order_id")
    assert tk.height == tr.height and (tk["account"] == tk["taker_account"]).all()
    keys = read(out, "api_keys", day)
    assert keys["key_id"].is_unique().all()
    req = read(out, "api_requests", day)
    assert set(req["key_id"]) <= set(keys["key_id"])
    assert set(ev["api_key_id"].drop_nulls()) <= set(keys["key_id"])


def test_the_day_is_coherent_and_every_truth_record_is_resolved(day):
    assert_coherent(day["out"], D0)
    assert sorted(r["kind"] for r in day["list"]) == sorted(i.kind for i in INCIDENTS)
    for r in day["list"]:
        assert set(r) == {"kind", "symbol", "start", "end", "source", "accounts", "details"}
        assert "_tag" not in r["details"] and isinstance(r["accounts"], list)
        if r["kind"] != "thin_book_cluster":
            assert r["accounts"], r["kind"]
    assert set(ACCOUNT_KINDS) <= set(REGISTRY) and not set(ACCOUNT_KINDS) & set(ALL_KINDS)


# --- order-flow integrity -------------------------------------------------------------------------

def positions_through(out: Path, trades: pl.DataFrame, account: int, symbol: str) -> list[tuple[int, float, float]]:
    """(trade_id, size before, size after) of every fill of `account` on `symbol`, rebuilt from
    the start-of-day positions in exchange order (ts, trade_id)."""
    sp = start_positions(out).filter((pl.col("account") == account) & (pl.col("symbol") == symbol))
    q, e = (sp["size"][0], sp["entry_price"][0]) if sp.height else (0.0, 0.0)
    rows = []
    f = trades.filter((pl.col("symbol") == symbol)
                      & ((pl.col("taker_account") == account) | (pl.col("maker_account") == account))).sort("ts", "trade_id")
    for r in f.iter_rows(named=True):
        d = r["qty"] if r["taker_side"] == "buy" else -r["qty"]
        if r["taker_account"] != account:
            d = -d
        q1, e, _ = step(q, e, d, r["price"])
        rows.append((r["trade_id"], q, q1))
        q = q1
    return rows


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_reduce_only_fill_grows_or_flips_the_rebuilt_position(day, symbol):
    r = day["truth"][("reduce_only_grew_position", symbol)]
    d = r["details"]
    ev = read(day["out"], "order_events").filter(pl.col("order_id") == d["order_id"]).sort("ts", "cum_filled_qty")
    assert ev["reduce_only"].all() and (ev["account"] == d["account"]).all()
    tr = read(day["out"], "trades")
    mine = tr.filter(pl.col("taker_order_id") == d["order_id"]).sort("ts", "trade_id")
    assert mine["trade_id"].to_list() == d["trade_ids"]
    path = {tid: (a, b) for tid, a, b in positions_through(day["out"], tr, d["account"], symbol)}
    for tid in d["trade_ids"]:
        before, after = path[tid]
        bad = abs(after) > abs(before) + 1e-12 or (before != 0 and after != 0 and (after > 0) != (before > 0))
        assert bad == (tid in d["violating_trade_ids"]), (tid, before, after)
    assert d["violating_trade_ids"]
    if d["partial"]:
        assert ev["event"].to_list() == ["new", "partial_fill", "partial_fill", "fill"]
        assert d["mode"] == "flip" and d["violating_trade_ids"] == d["trade_ids"][-1:]
        before, after = path[d["trade_ids"][-1]]
        assert (before > 0) != (after > 0) and after != 0  # the last fill flips the position
        assert len(d["trade_ids"]) == 3
    else:
        assert ev["event"].to_list() == ["new", "fill"] and d["mode"] == "grow"
    assert path[d["trade_ids"][0]][0] == pytest.approx(d["size_before"])
    assert path[d["trade_ids"][-1]][1] == pytest.approx(d["size_after"])


def test_post_only_order_appears_as_taker(day):
    d = day["truth"][("post_only_took_liquidity", "ETHUSDT")]["details"]
    tr = read(day["out"], "trades")
    assert d["order_id"] in set(tr["taker_order_id"])
    new = read(day["out"], "order_events").filter((pl.col("order_id") == d["order_id"]) & (pl.col("event") == "new"))
    assert new.height == 1 and new["post_only"][0] and new["tif"][0] == "GTX" and new["account"][0] == d["account"]
    # the only post-only taker order of the day
    ev_new = read(day["out"], "order_events").filter(pl.col("event") == "new")
    po_takers = tr.join(ev_new, left_on="taker_order_id", right_on="order_id").filter(pl.col("post_only"))
    assert set(po_takers["taker_order_id"]) == {d["order_id"]}


def test_fill_after_cancel(day):
    r = day["truth"][("fill_after_cancel", "BTCUSDT")]
    d = r["details"]
    ev = read(day["out"], "order_events").filter(pl.col("order_id") == d["order_id"])
    cancel = ev.filter(pl.col("event") == "cancel")["ts"]
    fills = ev.filter(pl.col("event").is_in(["fill", "partial_fill"]))["ts"]
    assert cancel.len() == 1 and fills.len() >= 1 and fills.max() > cancel[0]
    assert cancel[0] == dt.datetime.fromisoformat(d["cancel_ts"]) and fills.max() == dt.datetime.fromisoformat(d["fill_ts"])
    tr = read(day["out"], "trades").filter(pl.col("trade_id") == d["trade_id"])
    assert tr["maker_order_id"][0] == d["order_id"] and tr["ts"][0] > cancel[0]
    assert tr["maker_account"][0] == d["account"] and span(r)[0] <= tr["ts"][0]
    # the only fill after a cancel that day
    all_ev = read(day["out"], "order_events")
    c = all_ev.filter(pl.col("event") == "cancel").select("order_id", c_ts="ts")
    f = all_ev.filter(pl.col("event").is_in(["fill", "partial_fill"])).join(c, on="order_id")
    assert set(f.filter(pl.col("ts") > pl.col("c_ts"))["order_id"]) == {d["order_id"]}


# --- early-warning anomalies ----------------------------------------------------------------------

def test_cancel_burst_jumps_cancels_per_minute(day):
    r = day["truth"][("cancel_burst", "BTCUSDT")]
    start, end = span(r)
    c = (read(day["out"], "order_events").filter((pl.col("event") == "cancel") & (pl.col("symbol") == "BTCUSDT"))
         .with_columns(m=pl.col("ts").dt.truncate("1m")))
    per_min = c.group_by("m").len()
    inside = per_min.filter(pl.col("m").is_between(start, end, closed="left"))["len"]
    outside = per_min.filter(~pl.col("m").is_between(start - dt.timedelta(minutes=1), end))["len"]
    assert inside.len() == 4 and inside.min() > 8 * outside.median() and inside.min() > outside.max()
    burst = c.filter(pl.col("ts").is_between(start, end, closed="left"))
    top = burst.group_by("account").len().sort("len", descending=True)
    assert set(r["accounts"]) <= set(top["account"].head(len(r["accounts"])))
    assert r["details"]["extra_cancels"] >= 10 * r["details"]["baseline_cancels_per_min"]


def test_thin_book_cluster_drops_depth_and_widens_spreads_without_a_price_shock(day):
    r = day["truth"][("thin_book_cluster", "ETHUSDT")]
    start, end = span(r)
    assert r["details"]["symbols"] == ["ETHUSDT", "BTCUSDT"]
    bd = read(day["out"], "book_depth").filter(pl.col("percentage").abs() == 1.0)
    mi = read(day["out"], "mark_index")
    for sym in r["details"]["symbols"]:
        d = bd.filter(pl.col("symbol") == sym).group_by("ts").agg(pl.col("notional").sum())
        inw = d.filter(pl.col("ts").is_between(start, end, closed="left"))["notional"]
        outw = d.filter(~pl.col("ts").is_between(start - dt.timedelta(hours=1), end + dt.timedelta(hours=1)))["notional"]
        assert inw.len() == 15 and inw.max() < 0.35 * outw.median()
        m = mi.filter(pl.col("symbol") == sym).with_columns(
            sp=(pl.col("best_ask") - pl.col("best_bid")) / (pl.col("best_ask") + pl.col("best_bid")) * 2,
            r=pl.col("mark_price").log().diff())
        w = pl.col("ts").is_between(start, end, closed="left")
        assert m.filter(w)["sp"].median() > 2.0 * m.filter(~w)["sp"].median()
        # no price shock: the window's 1-second mark volatility and net move are ordinary
        assert m.filter(w)["r"].std() < 2.0 * m.filter(~w)["r"].std()
        px = m.filter(w)["mark_price"]
        assert abs(px[-1] / px[0] - 1) < 0.01


def test_leverage_spike_clusters_high_leverage_changes(day):
    r = day["truth"][("leverage_spike", "BTCUSDT")]
    start, end = span(r)
    lc = read(day["out"], "leverage_changes").filter(pl.col("symbol") == "BTCUSDT")
    inw = lc.filter(pl.col("ts").is_between(start, end, closed="left"))
    assert inw.height >= 8 and sorted(set(inw["account"])) == r["accounts"]
    assert (inw.filter(pl.col("account").is_in(r["accounts"]))["new_leverage"] >= 50).all()
    assert (inw["new_leverage"] > inw["old_leverage"]).sum() >= 8
    per5 = lc.with_columns(b=pl.col("ts").dt.truncate("5m")).group_by("b").len()
    outside = per5.filter(~pl.col("b").is_between(start - dt.timedelta(minutes=5), end))["len"]
    assert inw.height >= 4 * max(1, outside.max() or 0)
    eod = read(day["out"], "positions_eod").filter(pl.col("symbol") == "BTCUSDT")
    last = lc.sort("ts").group_by("account").agg(pl.col("new_leverage").last())
    j = eod.join(last, on="account")
    assert (j["leverage"] == j["new_leverage"]).all()


# --- API keys ---------------------------------------------------------------------------------------

def test_over_scoped_and_automation_keys(day):
    keys = read(day["out"], "api_keys")
    req = read(day["out"], "api_requests")
    over = day["truth"][("over_scoped_key", "BTCUSDT")]["details"]
    auto = day["truth"][("automation_key_without_kill_switch", "ETHUSDT")]["details"]
    k = keys.filter(pl.col("key_id") == over["key_id"]).row(0, named=True)
    assert k["account"] == over["account"] and {"trade", "withdraw"} <= set(k["scopes"]) and k["ip_allowlist"] == []
    assert k["status"] == "active" and k["last_used_at"] is not None
    ips = req.filter(pl.col("key_id") == over["key_id"])["source_ip"].unique().to_list()
    assert ips and not set(ips) & {ip for lst in keys["ip_allowlist"].to_list() for ip in lst}
    a = keys.filter(pl.col("key_id") == auto["key_id"]).row(0, named=True)
    assert a["account"] == auto["account"] and not a["cancel_on_disconnect"] and "trade" in a["scopes"]
    per_min = (req.with_columns(m=pl.col("ts").dt.truncate("1m")).group_by("key_id", "m").len()
               .group_by("key_id").agg(pl.col("len").median().alias("med"), pl.col("len").max().alias("peak")))
    ar = req.filter(pl.col("key_id") == auto["key_id"])
    assert ar.height == auto["requests"] == 3600 and per_min.filter(pl.col("key_id") == auto["key_id"])["med"][0] >= 45
    # no other key is over-scoped or an automation key without a kill switch
    others = keys.filter(~pl.col("key_id").is_in([over["key_id"], auto["key_id"]]))
    assert not others["scopes"].list.contains("withdraw").any()
    trade = others.filter(pl.col("scopes").list.contains("trade"))
    assert trade["cancel_on_disconnect"].all() and (trade["ip_allowlist"].list.len() > 0).all()
    assert keys.filter(~pl.col("cancel_on_disconnect"))["scopes"].list.contains("trade").sum() == 1


def test_incident_keys_are_in_that_days_snapshot_only(tmp_path):
    simulate("tiny", D0, 2, tmp_path, incidents=[
        Incident("over_scoped_key", 0, "BTCUSDT", dt.time(9, 0), 600, {"withdraw": True, "no_allowlist": False})])
    k0, k1 = read(tmp_path, "api_keys", D0), read(tmp_path, "api_keys", D0 + dt.timedelta(days=1))
    d = read_truth(tmp_path, D0)[0]["details"]
    row = k0.filter(pl.col("key_id") == d["key_id"]).row(0, named=True)
    assert row["scopes"] == ["read", "trade", "withdraw"] and row["ip_allowlist"]
    assert d["key_id"] not in set(k1["key_id"]) and k0.height == k1.height + 1
    assert read_truth(tmp_path, D0 + dt.timedelta(days=1)) == []


# --- cross margin -----------------------------------------------------------------------------------

def test_cross_margin_account_breaches_only_when_correlations_are_one(day):
    r = day["truth"][("cross_margin_small_hedge_trigger", "BTCUSDT")]
    d = r["details"]
    out = day["out"]
    acct, main, hedge = d["account"], d["main_symbol"], d["hedge_symbol"]
    assert hedge != main and d["trigger_symbol"] == hedge
    pos = read(out, "positions_eod").filter(pl.col("account") == acct).sort("symbol")
    assert (pos["margin_mode"] == "cross").all() and set(pos["symbol"]) == {main, hedge}
    syms = sorted(read(out, "instruments")["symbol"].to_list())
    size = {s: q for s, q in pos.select("symbol", "size").iter_rows()}
    entry = {s: e for s, e in pos.select("symbol", "entry_price").iter_rows()}
    assert abs(size[hedge] * entry[hedge]) < 0.5 * abs(size[main] * entry[main])  # the small leg
    wallet = read(out, "accounts_eod").filter(pl.col("account") == acct)["wallet_balance"][0]
    tiers = {s: margin.tiers_from_rows(read(out, "risk_tiers").filter(pl.col("symbol") == s).to_dicts()) for s in syms}
    mi = read(out, "mark_index").filter(pl.col("ts").dt.second() == 0).sort("symbol", "ts")
    r1 = np.stack([np.diff(np.log(mi.filter(pl.col("symbol") == s)["mark_price"].to_numpy())) for s in syms])
    vol = r1.std(axis=1, ddof=1) * math.sqrt(1440)
    corr = np.corrcoef(r1)
    marks = np.array([read(out, "mark_index").filter(pl.col("symbol") == s)["mark_price"][-1] for s in syms])
    q = np.array([size.get(s, 0.0) for s in syms])
    e = np.array([entry.get(s, 0.0) for s in syms])
    k = d["k"]

    def buffer(qv: np.ndarray, move: np.ndarray) -> float:
        p = marks * (1 + move)
        eq = wallet + float(np.sum(qv * (p - e)))
        return eq - sum(margin.maintenance_margin(tiers[s], abs(qv[i]) * p[i]) for i, s in enumerate(syms) if qv[i])

    w = q * marks
    cov = np.outer(vol, vol) * corr
    emp = cov @ w / math.sqrt(w @ cov @ w) * k
    assert buffer(q, np.zeros(2)) > 0  # healthy now
    assert min(buffer(q, -emp), buffer(q, emp)) > 0  # survives the empirical-correlation stress
    assert min(buffer(q, -k * vol), buffer(q, k * vol)) < 0  # breaches at correlation one
    q_main = np.where(np.array(syms) == hedge, 0.0, q)
    assert min(buffer(q_main, -k * vol), buffer(q_main, k * vol)) > 0  # the hedge is the trigger
    assert corr[0, 1] < 0.95
    assert d["buffer_empirical"] > 0 > d["buffer_corr_one"]


# --- plans, determinism ---------------------------------------------------------------------------

def test_random_plan_places_account_kinds_and_default_kinds_are_unchanged():
    kinds = ALL_KINDS + ACCOUNT_KINDS
    p = random_plan("tiny", D0, 30, seed=11, kinds=kinds)
    assert p == random_plan("tiny", D0, 30, seed=11, kinds=kinds)
    assert sorted(i.kind for i in p) == sorted(k for k in kinds for _ in range(2))
    assert random_plan("tiny", D0, 30, seed=11) == [i for i in random_plan("tiny", D0, 30, seed=11)]
    assert {i.kind for i in random_plan("tiny", D0, 30, seed=11)} == set(ALL_KINDS)
    for i in p:
        sec = i.start.hour * 3600 + i.start.minute * 60
        if i.kind == "cross_margin_small_hedge_trigger":
            assert sec > 16 * 3600
        if i.kind in ACCOUNT_KINDS:
            assert D0 + dt.timedelta(days=7) <= i.day and sec + i.duration_s < 86_400


def test_default_plans():
    syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    demo = default_plan("demo", D0, 7, syms)
    acct = {(i.kind, i.day) for i in demo if i.kind in ACCOUNT_KINDS}
    assert acct == {("reduce_only_grew_position", 2), ("post_only_took_liquidity", 3), ("thin_book_cluster", 3),
                    ("over_scoped_key", 4), ("fill_after_cancel", 4), ("automation_key_without_kill_switch", 5),
                    ("leverage_spike", 6), ("cross_margin_small_hedge_trigger", 6), ("cancel_burst", 6)}
    assert {i.kind for i in demo if i.kind in ACCOUNT_KINDS} == set(ACCOUNT_KINDS)
    assert [i for i in demo if i.kind == "reduce_only_grew_position"][0].params["partial"]
    assert {i.kind for i in default_plan("tiny", D0, 7, syms[:2])} == {"stale_index_source", "volatility_shock"}


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_random_account_plan_runs_coherent_and_split_runs_are_identical(tmp_path):
    plan = random_plan("tiny", D0, 4, seed=5, kinds=ACCOUNT_KINDS, per_kind=1, warmup_days=0)
    a, b = tmp_path / "a", tmp_path / "b"
    simulate("tiny", D0, 4, a, incidents=plan)
    simulate("tiny", D0, 2, b, incidents=plan)
    simulate("tiny", D0 + dt.timedelta(days=2), 2, b, incidents=plan)
    ha, hb = tree_hashes(a), tree_hashes(b)
    assert ha.keys() == hb.keys() and [k for k in ha if ha[k] != hb[k]] == []
    truth = read_truth(a)
    assert sorted(r["kind"] for r in truth) == sorted(ACCOUNT_KINDS)
    for i in range(4):
        dday = D0 + dt.timedelta(days=i)
        assert_coherent(a, dday)
        ev = read(a, "order_events", dday)
        keys = read(a, "api_keys", dday)
        for r in read_truth(a, dday):
            dd = r["details"]
            if "order_id" in dd:
                assert dd["order_id"] in set(ev["order_id"])
            if "key_id" in dd:
                assert dd["key_id"] in set(keys["key_id"])
