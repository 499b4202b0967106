"""The synthetic venue (tiny scale): layout and schemas, determinism, and the coherence of every
dataset with the venue's own rules (positions, liquidations, fees, insurance fund, funding,
index, orders, market metrics, wallets) and with its ground truth."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from venue_risk import margin
from venue_risk.index_rule import STALE, compute_index, source_matrix
from venue_risk.positions import apply_fills, step
from venue_risk.schema import DATASETS
from venue_risk.simulate import SCALES, Incident, day_dates, simulate
from venue_risk.simulate.config import BACKSTOP_ACCOUNT, SEGMENT_MID
from venue_risk.simulate.market import tick_round

D0 = dt.date(2026, 11, 1)
D1 = D0 + dt.timedelta(days=1)
UTC = dt.timezone.utc


def read(out: Path, name: str, day: dt.date) -> pl.DataFrame:
    return pl.read_parquet(out / name / f"date={day.isoformat()}" / "data.parquet")


def t0(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=UTC)


@pytest.fixture(scope="module")
def venue(tmp_path_factory) -> Path:
    """Two tiny days, default incident plan (stale source day 0, BTC shock day 1)."""
    out = tmp_path_factory.mktemp("tiny")
    assert simulate("tiny", D0, 2, out) == [D0, D1]
    return out


@pytest.fixture(scope="module")
def stress(tmp_path_factory) -> Path:
    """One tiny day with a -25% crash and a +35% spike in thin books: every liquidation path."""
    out = tmp_path_factory.mktemp("stress")
    shocks = [Incident("volatility_shock", 0, "BTCUSDT", dt.time(6, 0), 1200,
                       {"move": -0.25, "depth_x": 0.05, "rebound": 0.0}),
              Incident("volatility_shock", 0, "BTCUSDT", dt.time(12, 0), 1200,
                       {"move": 0.35, "depth_x": 0.05, "rebound": 0.0})]
    simulate("tiny", D0, 1, out, incidents=shocks)
    return out


def symbols(out: Path) -> list[str]:
    return read(out, "instruments", D0)["symbol"].to_list()


def start_positions(out: Path, day: dt.date) -> pl.DataFrame:
    """Start-of-day positions: the previous day's positions_eod, or the genesis state."""
    prev = out / "positions_eod" / f"date={(day - dt.timedelta(days=1)).isoformat()}" / "data.parquet"
    if prev.exists():
        return pl.read_parquet(prev).select("account", "symbol", "size", "entry_price")
    syms = dict(enumerate(symbols(out)))
    g = pl.read_parquet(out / "_state" / "genesis" / "positions.parquet").filter(pl.col("size") != 0)
    return g.select("account", symbol=pl.col("symbol_idx").replace_strict(syms, return_dtype=pl.String),
                    size="size", entry_price="entry")


def prev_state(out: Path, day: dt.date) -> dict:
    p = out / "_state" / f"date={(day - dt.timedelta(days=1)).isoformat()}" / "state.json"
    if not p.exists():
        p = out / "_state" / "genesis" / "state.json"
    return json.loads(p.read_text())


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- layout, schemas, determinism -------------------------------------------------------------

def test_every_dataset_every_day_with_canonical_schema(venue):
    assert day_dates(D0, 2) == [D0, D1]
    for day in (D0, D1):
        for name, spec in DATASETS.items():
            df = read(venue, name, day)
            assert df.schema == spec.polars_schema(), name
            if spec.day_column and df.height:
                col = df[spec.day_column]
                lo = day if spec.day_column == "date" else t0(day)
                hi = day if spec.day_column == "date" else t0(day) + dt.timedelta(days=1)
                assert col.min() >= lo and (col.max() <= hi if spec.day_column == "date" else col.max() < hi), name
            if spec.keys and df.height:
                assert df.select(spec.keys).is_duplicated().sum() == 0, name
        truth = venue / "_truth" / f"date={day.isoformat()}"
        assert (truth / "incidents.json").exists() and (truth / "liquidation_book.parquet").exists()
        assert (venue / "_state" / f"date={day.isoformat()}" / "state.json").exists()
    assert not list(venue.rglob("*.tmp"))


def test_split_run_is_byte_identical_to_single_run(venue, tmp_path):
    simulate("tiny", D0, 1, tmp_path)
    simulate("tiny", D1, 1, tmp_path)  # continues from the saved state of D0
    a, b = tree_hashes(venue), tree_hashes(tmp_path)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_chunking_and_workers_do_not_change_a_byte(venue, tmp_path):
    # one time window and one process vs 7 windows (uneven: every split point differs) and 2
    # engine processes: the same files, bit for bit (and the same as the default chunking)
    a, b = tmp_path / "one", tmp_path / "chunked"
    simulate("tiny", D0, 2, a, chunks=1, workers=1)
    simulate("tiny", D0, 2, b, chunks=7, workers=2)
    ha, hb = tree_hashes(a), tree_hashes(b)
    assert ha.keys() == hb.keys()
    assert [k for k in ha if ha[k] != hb[k]] == []
    assert ha == tree_hashes(venue)


def test_demo_day_chunked_is_byte_identical(tmp_path):
    a, b = tmp_path / "one", tmp_path / "chunked"
    simulate("demo", D0, 1, a, chunks=1, workers=1)
    simulate("demo", D0, 1, b, chunks=24, workers=2)
    ha, hb = tree_hashes(a), tree_hashes(b)
    assert ha.keys() == hb.keys()
    assert [k for k in ha if ha[k] != hb[k]] == []
    assert json.loads((a / "_truth" / f"date={D0}" / "incidents.json").read_text()) == \
        json.loads((b / "_truth" / f"date={D0}" / "incidents.json").read_text())


def test_empty_datasets_are_still_written(tmp_path):
    # an isolated quiet day may have no liquidation or leverage change; files exist regardless
    simulate("tiny", D0, 1, tmp_path, incidents=[])
    for name in DATASETS:
        assert (tmp_path / name / f"date={D0.isoformat()}" / "data.parquet").exists()


# --- 1. positions --------------------------------------------------------------------------------

def assert_same_positions(expected: pl.DataFrame, got: pl.DataFrame) -> None:
    j = expected.join(got, on=["account", "symbol"], how="full", suffix="_got", coalesce=True)
    assert j.height == expected.height == got.height
    assert (j["size"] - j["size_got"]).abs().max() <= 1e-9
    rel = ((j["entry_price"] - j["entry_price_got"]).abs() / j["entry_price"].abs()).max()
    assert rel <= 1e-9


@pytest.mark.parametrize("which", ["venue", "stress"])
def test_positions_eod_equal_rebuild_from_fills(which, request):
    out = request.getfixturevalue(which)
    days = [D0, D1] if which == "venue" else [D0]
    for day in days:
        eod = read(out, "positions_eod", day)
        rebuilt = apply_fills(start_positions(out, day), read(out, "trades", day))
        assert_same_positions(rebuilt, eod.select("account", "symbol", "size", "entry_price"))
        assert (eod["size"] != 0).all()  # flat positions are omitted
        iso = eod.filter(pl.col("margin_mode") == "isolated")
        assert (iso["isolated_margin"] > 0).all() and (iso["leverage"] >= 1).all()
        cross = eod.filter(pl.col("margin_mode") == "cross")
        assert (cross["isolated_margin"] == 0).all()


# --- 2-4. liquidations ---------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["venue", "stress"])
def test_liquidation_fills_are_in_trades(which, request):
    out = request.getfixturevalue(which)
    for day in ([D0, D1] if which == "venue" else [D0]):
        liq = read(out, "liquidations", day)
        tr = read(out, "trades", day).filter(pl.col("liquidation_id").is_not_null())
        assert liq.height > 0
        g = tr.group_by("liquidation_id").agg(
            pl.col("qty").sum().alias("fq"), pl.col("ts").max().alias("last"),
            pl.col("taker_account").unique().alias("takers"), pl.col("taker_side").unique().alias("sides"))
        j = liq.join(g, on="liquidation_id", how="left")
        assert j["fq"].null_count() == 0, "every liquidation has fills"
        assert ((j["fq"] - j["filled_qty"]).abs() <= 1e-9 * j["qty"]).all()
        assert (j["ts_done"] == j["last"]).all()
        assert all(t.to_list() == [a] for t, a in zip(j["takers"], j["account"]))
        assert all(s.to_list() == [x] for s, x in zip(j["sides"], j["side"]))
        assert (j["ts_done"] >= j["ts_trigger"]).all()


@pytest.mark.parametrize("which", ["venue", "stress"])
def test_liquidations_fire_when_mark_crosses_liquidation_price(which, request):
    out = request.getfixturevalue(which)
    tiers = {s: margin.tiers_from_rows(read(out, "risk_tiers", D0).filter(pl.col("symbol") == s).to_dicts())
             for s in symbols(out)}
    for day in ([D0, D1] if which == "venue" else [D0]):
        liq = read(out, "liquidations", day).filter(pl.col("path") != "backstop")
        mi = read(out, "mark_index", day)
        trades = read(out, "trades", day)
        start = start_positions(out, day)
        j = liq.join(mi.select("ts", "symbol", "mark_price"), left_on=["ts_trigger", "symbol"],
                     right_on=["ts", "symbol"], how="left", suffix="_mi")
        assert (j["mark_price"] == j["mark_price_mi"]).all()
        for r in j.iter_rows(named=True):
            long = r["side"] == "sell"
            assert (r["mark_price"] <= r["liquidation_price"]) if long else (r["mark_price"] >= r["liquidation_price"])
            assert (r["bankruptcy_price"] < r["liquidation_price"]) if long else (r["bankruptcy_price"] > r["liquidation_price"])
            assert r["margin_mode"] == "isolated"
            pos = apply_fills(start, trades.filter(pl.col("ts") < r["ts_trigger"])).filter(
                (pl.col("account") == r["account"]) & (pl.col("symbol") == r["symbol"]))
            size, ep = pos["size"][0], pos["entry_price"][0]
            assert size == pytest.approx(r["qty"] if long else -r["qty"], abs=1e-9)
            wb = abs(ep - r["bankruptcy_price"]) * abs(size)  # BP = EP -/+ WB / Q
            lp, tier = margin.isolated_liquidation_price(tiers[r["symbol"]], size, ep, wb)
            assert lp == pytest.approx(r["liquidation_price"], rel=1e-9)
            assert tier.maintenance_margin_rate == r["maintenance_margin_rate"]


def test_liquidation_paths_by_size_and_book(stress):
    out = stress
    inst = read(out, "instruments", D0)
    thr = dict(zip(inst["symbol"], inst["liquidation_incremental_notional"]))
    disc = dict(zip(inst["symbol"], inst["liquidation_auction_discount"]))
    tick = dict(zip(inst["symbol"], inst["tick_size"]))
    liq = read(out, "liquidations", D0)
    tr = read(out, "trades", D0).filter(pl.col("liquidation_id").is_not_null())
    mi = read(out, "mark_index", D0).with_columns(mid=(pl.col("best_bid") + pl.col("best_ask")) / 2)
    bd = read(out, "book_depth", D0)
    mm = set(read(out, "accounts_eod", D0).filter(pl.col("is_market_maker"))["account"].to_list())
    paths = set(liq["path"])
    assert {"incremental", "auction", "market", "backstop"} <= paths
    notional = liq["qty"] * liq["mark_price"]
    main = liq.with_columns(n=notional).filter(pl.col("path") != "backstop")
    assert all((n >= thr[s]) == (p == "incremental") for n, s, p in zip(main["n"], main["symbol"], main["path"]))
    fills = tr.join(liq.select("liquidation_id", "path", "side", "mark_price", "bankruptcy_price", "qty"),
                    on="liquidation_id")
    # incremental: several IOC orders at least a second apart
    inc = fills.filter(pl.col("path") == "incremental").group_by("liquidation_id", "taker_order_id").agg(
        pl.col("ts").min()).sort("liquidation_id", "ts")
    for _, g in inc.group_by("liquidation_id"):
        assert g.height >= 2
        assert (g["ts"].diff().drop_nulls() >= dt.timedelta(seconds=1)).all()
    # auction: mark x (1 -/+ discount) by market makers
    for r in fills.filter(pl.col("path") == "auction").iter_rows(named=True):
        sgn = -1 if r["side"] == "sell" else 1
        assert r["price"] == tick_round(r["mark_price"] * (1 + sgn * disc[r["symbol"]]), tick[r["symbol"]])
        assert r["maker_account"] in mm
    # backstop: bankruptcy price, backstop account, the remainder of a walk that ran out of book
    bs = fills.filter(pl.col("path") == "backstop")
    assert (bs["price"] == bs["bankruptcy_price"]).all() and (bs["maker_account"] == BACKSTOP_ACCOUNT).all()
    for r in liq.filter(pl.col("path") == "backstop").iter_rows(named=True):
        parent = liq.filter((pl.col("account") == r["account"]) & (pl.col("path") != "backstop")
                            & (pl.col("ts_trigger") <= r["ts_trigger"])).sort("ts_trigger").tail(1)
        assert parent["filled_qty"][0] + r["qty"] == pytest.approx(parent["qty"][0], abs=1e-9)
    # market / incremental fills walk the published book: segment-mid distances from the mid,
    # at most the published depth inside 5% per order
    walk = fills.filter(pl.col("path").is_in(["market", "incremental"])).with_columns(
        sec=pl.col("ts").dt.truncate("1s"), minute=pl.col("ts").dt.truncate("1m"))
    walk = walk.join(mi.select("ts", "symbol", "mid"), left_on=["sec", "symbol"], right_on=["ts", "symbol"])
    dist = ((walk["price"] / walk["mid"] - 1).abs() * 100).to_numpy()
    tol = np.array([tick[s] for s in walk["symbol"]]) / walk["mid"].to_numpy() * 100 + 1e-9
    assert (np.abs(dist[:, None] - SEGMENT_MID[None, :]).min(axis=1) <= tol).all()
    per_order = walk.group_by("taker_order_id", "symbol", "minute", "taker_side").agg(pl.col("qty").sum())
    per_order = per_order.with_columns(percentage=pl.when(pl.col("taker_side") == "sell").then(-5.0).otherwise(5.0))
    cap = per_order.join(bd, left_on=["minute", "symbol", "percentage"], right_on=["ts", "symbol", "percentage"])
    assert cap.height == per_order.height and (cap["qty"] <= cap["depth"] + 1e-9).all()


# --- 5. fees and insurance fund ---------------------------------------------------------------

@pytest.mark.parametrize("which", ["venue", "stress"])
def test_liquidation_fees_book_and_insurance_fund(which, request):
    out = request.getfixturevalue(which)
    inst = read(out, "instruments", D0)
    rate = dict(zip(inst["symbol"], inst["liquidation_fee_rate"]))
    days = [D0, D1] if which == "venue" else [D0]
    start_balance = SCALES["tiny"].insurance_fund
    for day in days:
        liq = read(out, "liquidations", day)
        book = pl.read_parquet(out / "_truth" / f"date={day.isoformat()}" / "liquidation_book.parquet")
        tr = read(out, "trades", day).filter(pl.col("liquidation_id").is_not_null())
        j = tr.join(liq.select("liquidation_id", "side", "bankruptcy_price", "mark_price"), on="liquidation_id")
        j = j.with_columns(beyond=pl.when(pl.col("side") == "sell").then(pl.col("price") < pl.col("bankruptcy_price"))
                           .otherwise(pl.col("price") > pl.col("bankruptcy_price")))
        g = j.group_by("liquidation_id").agg(
            fee=pl.col("taker_fee").sum(), notional=(pl.col("price") * pl.col("qty")).sum(),
            q=pl.col("qty").sum(),
            shortfall=((pl.col("price") - pl.col("bankruptcy_price")).abs() * pl.col("qty")).filter(pl.col("beyond")).sum(),
            bq=pl.col("qty").filter(pl.col("beyond")).sum(), mark=pl.col("mark_price").first(),
            side=pl.col("side").first())
        g = g.with_columns(vwap=pl.col("notional") / pl.col("q")).with_columns(
            slip=pl.when(pl.col("side") == "sell").then((pl.col("mark") - pl.col("vwap")) / pl.col("mark"))
            .otherwise((pl.col("vwap") - pl.col("mark")) / pl.col("mark")) * 1e4)
        g = g.rename({c: f"tr_{c}" for c in g.columns if c != "liquidation_id"})
        b = book.rename({c: f"bk_{c}" for c in book.columns if c != "liquidation_id"})
        c = liq.join(g, on="liquidation_id").join(b, on="liquidation_id")
        assert c.height == liq.height == book.height
        close = lambda a, b: ((c[a] - c[b]).abs() <= 1e-9 * (1 + c[b].abs())).all()  # noqa: E731
        assert close("tr_fee", "fee") and close("bk_fee", "fee")
        assert close("tr_notional", "bk_filled_notional") and close("tr_vwap", "bk_vwap")
        assert close("tr_shortfall", "bk_shortfall") and close("tr_bq", "bk_beyond_bankruptcy_qty")
        assert close("tr_slip", "bk_slippage_bps") and close("tr_q", "filled_qty")
        assert close("bk_insurance_fund_delta", "insurance_fund_delta")
        assert ((c["insurance_fund_delta"] - (c["fee"] - c["bk_shortfall"])).abs() <= 1e-9).all()
        c = c.with_columns(notional=pl.col("tr_notional"))
        assert (c["fee"] >= 0).all()
        assert all(f <= n * rate[s] + 1e-9 for f, n, s in zip(c["fee"], c["notional"], c["symbol"]))
        fund = read(out, "insurance_fund", day)
        assert fund.height == 1440 and set(fund["pool"]) == {"USDT"}
        assert fund["balance"][0] == pytest.approx(start_balance, abs=1e-6)
        for ts, bal in fund.sample(50, seed=1).select("ts", "balance").iter_rows():
            assert bal == pytest.approx(start_balance + liq.filter(pl.col("ts_done") <= ts)["insurance_fund_delta"].sum(), abs=1e-6)
        start_balance += liq["insurance_fund_delta"].sum()
    if which == "venue":  # the next day opens at the previous balance plus the day's deltas
        assert read(out, "insurance_fund", D1)["balance"][0] == pytest.approx(
            SCALES["tiny"].insurance_fund + read(out, "liquidations", D0)["insurance_fund_delta"].sum(), abs=1e-6)


# --- 6. funding --------------------------------------------------------------------------------

def test_funding_follows_the_premium_formula(venue):
    inst = read(venue, "instruments", D0)
    cap = dict(zip(inst["symbol"], inst["funding_cap"]))
    mi = pl.concat([read(venue, "mark_index", d) for d in (D0, D1)]).with_columns(
        p=((pl.col("best_bid") + pl.col("best_ask")) / 2 - pl.col("index_price")) / pl.col("index_price"))
    f0 = read(venue, "funding", D0)
    assert f0.height == 3 * len(cap) and (f0.filter(pl.col("ts") == t0(D0))["funding_rate"] == 0.0001).all()
    f = read(venue, "funding", D1)
    assert sorted(set(f["ts"].dt.hour())) == [0, 8, 16]
    for r in f.iter_rows(named=True):
        lo = r["ts"] - dt.timedelta(hours=8)
        prem = mi.filter((pl.col("symbol") == r["symbol"]) & (pl.col("ts") >= lo) & (pl.col("ts") < r["ts"]))["p"]
        assert prem.len() == 8 * 3600
        assert r["premium_index"] == pytest.approx(prem.mean(), abs=1e-12)
        p = r["premium_index"]
        rate = min(cap[r["symbol"]], max(-cap[r["symbol"]], p + min(0.0005, max(-0.0005, 0.0001 - p))))
        assert r["funding_rate"] == pytest.approx(rate, abs=1e-15) and r["interest_rate"] == 0.0001
        at = mi.filter((pl.col("symbol") == r["symbol"]) & (pl.col("ts") == r["ts"]))
        assert (r["mark_price"], r["index_price"]) == (at["mark_price"][0], at["index_price"][0])


# --- 7. index and mark ---------------------------------------------------------------------------

def recompute_index(out: Path, day: dt.date, symbol: str):
    inst = read(out, "instruments", D0).filter(pl.col("symbol") == symbol).row(0, named=True)
    k = symbols(out).index(symbol)
    st = prev_state(out, day)["market"][k]
    comp = read(out, "index_components", day).filter(pl.col("symbol") == symbol)
    rec, px = [], []
    for src in inst["index_sources"]:
        c = comp.filter(pl.col("source") == src).sort("received_ts")
        rec.append((c["received_ts"] - t0(day)).dt.total_microseconds().to_numpy() / 1e6)
        px.append(c["price"].to_numpy())
    w = np.array([comp.filter(pl.col("source") == s)["weight"][0] for s in inst["index_sources"]])
    price, age = source_matrix(np.arange(86_400, dtype=float), rec, px,
                               np.asarray(st["src_received_s"]) - 86_400, np.asarray(st["src_price"]))
    return compute_index(price, age, w, inst["index_outlier_pct"], inst["index_stale_s"],
                         inst["index_min_sources"], st["index"])


@pytest.mark.parametrize("day", [D0, D1])
def test_published_index_is_the_rule_over_the_components(venue, day):
    for sym in symbols(venue):
        idx, _ = recompute_index(venue, day, sym)
        mi = read(venue, "mark_index", day).filter(pl.col("symbol") == sym).sort("ts")
        assert mi.height == 86_400
        np.testing.assert_allclose(mi["index_price"].to_numpy(), idx, rtol=1e-12)
        basis = (mi["mark_price"] / mi["index_price"] - 1).abs().max()
        tick = read(venue, "instruments", D0).filter(pl.col("symbol") == sym)["tick_size"][0]
        assert basis <= 0.005 + tick / mi["index_price"].min()
        assert (mi["best_bid"] < mi["best_ask"]).all()
        comp = read(venue, "index_components", day).filter(pl.col("symbol") == sym)
        lag = (comp["received_ts"] - comp["ts"]).dt.total_microseconds()
        assert lag.min() > 0 and lag.median() < 1_000_000
        gaps = comp.sort("received_ts").group_by("source").agg(pl.col("received_ts").diff().dt.total_microseconds().median())
        assert gaps["received_ts"].is_between(1_000_000, 2_000_000).all()


def test_stale_source_incident_in_components_and_truth(venue):
    truth = json.loads((venue / "_truth" / f"date={D0.isoformat()}" / "incidents.json").read_text())
    stale = [r for r in truth if r["kind"] == "stale_index_source"]
    assert len(stale) == 1
    r = stale[0]
    start, end = dt.datetime.fromisoformat(r["start"]), dt.datetime.fromisoformat(r["end"])
    comp = read(venue, "index_components", D0).filter(
        (pl.col("symbol") == r["symbol"]) & (pl.col("source") == r["source"]))
    assert comp.filter(pl.col("received_ts").is_between(start, end, closed="left")).height == 0
    _, status = recompute_index(venue, D0, r["symbol"])
    j = read(venue, "instruments", D0).filter(pl.col("symbol") == r["symbol"])["index_sources"][0].to_list().index(r["source"])
    stale_s = np.flatnonzero(status[:, j] == STALE)
    assert (end - start).total_seconds() - 12 <= len(stale_s) <= (end - start).total_seconds() + 2
    assert start <= t0(D0) + dt.timedelta(seconds=int(stale_s[0])) <= start + dt.timedelta(seconds=12)


# --- 8. prices, book, orders, metrics, API, wallets ----------------------------------------------

def test_prices_levels_correlation_and_shock(venue):
    mi = pl.concat([read(venue, "mark_index", d) for d in (D0, D1)])
    lv = mi.group_by("symbol").agg(pl.col("mark_price").min().alias("lo"), pl.col("mark_price").max().alias("hi"))
    ranges = {"BTCUSDT": (50_000, 150_000), "ETHUSDT": (1_500, 5_000)}
    for s, lo, hi in lv.iter_rows():
        assert ranges[s][0] < lo and hi < ranges[s][1]
    m1 = mi.filter(pl.col("ts").dt.second() == 0).sort("ts").pivot(on="symbol", index="ts", values="mark_price")
    r = np.diff(np.log(m1.select("BTCUSDT", "ETHUSDT").to_numpy()), axis=0)
    assert np.corrcoef(r.T)[0, 1] > 0.3
    shock = [x for x in json.loads((venue / "_truth" / f"date={D1.isoformat()}" / "incidents.json").read_text())
             if x["kind"] == "volatility_shock"][0]
    s0 = dt.datetime.fromisoformat(shock["start"])
    btc = read(venue, "mark_index", D1).filter(pl.col("symbol") == "BTCUSDT")
    before = btc.filter(pl.col("ts") == s0)["mark_price"][0]
    low = btc.filter(pl.col("ts").is_between(s0, s0 + dt.timedelta(minutes=5)))["mark_price"].min()
    assert low / before - 1 < -0.04
    spread = btc.with_columns(s=(pl.col("best_ask") - pl.col("best_bid")) / pl.col("best_bid"))
    calm = spread.filter(pl.col("ts") < s0 - dt.timedelta(hours=2))["s"].median()
    hot = spread.filter(pl.col("ts").is_between(s0, s0 + dt.timedelta(minutes=10)))["s"].median()
    assert hot > 1.5 * calm
    d1 = read(venue, "book_depth", D1).filter((pl.col("symbol") == "BTCUSDT") & (pl.col("percentage") == -1.0))
    calm_d = d1.filter(pl.col("ts") < s0 - dt.timedelta(hours=2))["notional"].median()
    hot_d = d1.filter(pl.col("ts").is_between(s0, s0 + dt.timedelta(minutes=10)))["notional"].median()
    assert hot_d < 0.5 * calm_d
    assert shock["symbol"] == "BTCUSDT" and len(shock["accounts"]) >= 3
    liq = read(venue, "liquidations", D1).filter(
        (pl.col("symbol") == "BTCUSDT") & pl.col("ts_trigger").is_between(s0, dt.datetime.fromisoformat(shock["end"])))
    assert sorted(set(liq["account"])) == shock["accounts"]


def test_orders_and_trades_reference_each_other(venue):
    for day in (D0, D1):
        ev = read(venue, "order_events", day)
        tr = read(venue, "trades", day)
        new = ev.filter(pl.col("event") == "new")
        assert new["order_id"].is_unique().all()
        tk = tr.join(new, left_on="taker_order_id", right_on="order_id", how="left")
        assert tk["account"].null_count() == 0 and (tk["account"] == tk["taker_account"]).all()
        assert (tk["side"] == tk["taker_side"]).all() and not tk["post_only"].any()
        lq = tk.filter(pl.col("liquidation_id").is_not_null())
        assert (lq["order_type"] == "liquidation").all() and lq["reduce_only"].all() and lq["api_key_id"].null_count() == lq.height
        assert (tk.filter(pl.col("liquidation_id").is_null())["order_type"] != "liquidation").all()
        mk = tr.join(new, left_on="maker_order_id", right_on="order_id", how="left")
        assert (mk["account"] == mk["maker_account"]).all() and (mk["side"] != mk["taker_side"]).all()
        quotes = mk.filter(pl.col("post_only"))
        assert (quotes["tif"] == "GTX").all() and quotes.height > 0.8 * tr.height
        # cum_filled_qty ends at the order's filled quantity
        filled = ev.filter(pl.col("event").is_in(["fill", "partial_fill"])).group_by("order_id").agg(pl.col("cum_filled_qty").max())
        by_order = pl.concat([tr.select(order_id="taker_order_id", q="qty"), tr.select(order_id="maker_order_id", q="qty")]) \
            .group_by("order_id").agg(pl.col("q").sum())
        c = filled.join(by_order, on="order_id", how="full", coalesce=True)
        assert c.null_count().sum_horizontal()[0] == 0
        assert ((c["cum_filled_qty"] - c["q"]).abs() <= 1e-9 * c["q"]).all()
        # heavy cancels: 2-5 cancelled quotes per filled quote; never a fill after a cancel
        cancelled = ev.filter(pl.col("event") == "cancel")
        zero = cancelled.filter(pl.col("cum_filled_qty") == 0).height
        assert 2 <= zero / quotes.height <= 5
        last_fill = ev.filter(pl.col("event").is_in(["fill", "partial_fill"])).group_by("order_id").agg(pl.col("ts").max())
        cf = cancelled.join(last_fill, on="order_id", suffix="_fill")
        assert (cf["ts_fill"] < cf["ts"]).all()
        # reduce-only taker fills never grow a position (default: no such incident)
        assert set(ev["event"]) <= {"new", "partial_fill", "fill", "cancel", "expire"}


def test_market_metrics_from_positions_and_trades(venue):
    m = read(venue, "market_metrics", D1)
    assert m.height == 288 * len(symbols(venue))
    eod = read(venue, "positions_eod", D0)
    acc = read(venue, "accounts_eod", D0)
    traders = acc.filter(~pl.col("is_market_maker") & (pl.col("account") != BACKSTOP_ACCOUNT))["account"]
    tr = read(venue, "trades", D1)
    for sym in symbols(venue):
        first = m.filter((pl.col("symbol") == sym) & (pl.col("ts") == t0(D1)))
        p = eod.filter(pl.col("symbol") == sym)
        assert first["open_interest"][0] == pytest.approx(p.filter(pl.col("size") > 0)["size"].sum(), rel=1e-9)
        pt = p.filter(pl.col("account").is_in(traders.implode()))
        assert first["long_short_account_ratio"][0] == pytest.approx(
            pt.filter(pl.col("size") > 0).height / pt.filter(pl.col("size") < 0).height)
        row = m.filter((pl.col("symbol") == sym) & (pl.col("ts") == t0(D1) + dt.timedelta(hours=10)))
        w = tr.filter((pl.col("symbol") == sym) & pl.col("ts").is_between(row["ts"][0], row["ts"][0] + dt.timedelta(minutes=5), closed="left"))
        b, s = w.filter(pl.col("taker_side") == "buy")["qty"].sum(), w.filter(pl.col("taker_side") == "sell")["qty"].sum()
        if s > 0:
            assert row["taker_buy_sell_ratio"][0] == pytest.approx(b / s)
        mi = read(venue, "mark_index", D1).filter((pl.col("symbol") == sym) & (pl.col("ts") == row["ts"][0]))
        assert row["open_interest_value"][0] == pytest.approx(row["open_interest"][0] * mi["mark_price"][0])


def test_api_keys_and_requests(venue):
    keys = read(venue, "api_keys", D1)
    req = read(venue, "api_requests", D1)
    assert keys.group_by("account").len()["len"].max() <= 2
    trade_keys = keys.filter(pl.col("scopes").list.contains("trade"))
    assert (trade_keys["ip_allowlist"].list.len() > 0).all() and trade_keys["cancel_on_disconnect"].all()
    assert not keys["scopes"].list.contains("withdraw").any()
    assert set(req["key_id"]) <= set(keys["key_id"])
    assert {200, 429} <= set(req["status"])
    assert req.filter(pl.col("method") == "GET")["scope_used"].unique().to_list() == ["read"]
    ev = read(venue, "order_events", D1).filter((pl.col("event") == "new") & pl.col("api_key_id").is_not_null())
    assert set(ev["api_key_id"]) <= set(trade_keys["key_id"])
    used = keys.filter(pl.col("key_id").is_in(req["key_id"].implode()))
    assert used["last_used_at"].null_count() == 0


def test_leverage_changes_and_tiers(venue):
    lc = read(venue, "leverage_changes", D1)
    assert lc.height > 0 and (lc["old_leverage"] != lc["new_leverage"]).all()
    last = lc.sort("ts").group_by("account", "symbol").agg(pl.col("new_leverage").last())
    eod = read(venue, "positions_eod", D1).join(last, on=["account", "symbol"])
    assert (eod["leverage"] == eod["new_leverage"]).all()
    cross = read(venue, "positions_eod", D1).filter(
        (pl.col("margin_mode") == "cross") & (pl.col("leverage") <= 3))
    assert cross.height > 0
    assert read(venue, "liquidations", D1).filter(pl.col("margin_mode") == "cross").height == 0


def test_wallets_move_by_realized_pnl_fees_funding_and_shortfall(venue):
    """wallet(D1) = wallet(D0) + realized PnL of D1's fills - fees paid - funding paid + the
    shortfall the insurance fund covered (beyond-bankruptcy fills of liquidated positions)."""
    w0 = dict(read(venue, "accounts_eod", D0).select("account", "wallet_balance").iter_rows())
    w1 = dict(read(venue, "accounts_eod", D1).select("account", "wallet_balance").iter_rows())
    pos = {(a, s): (q, e) for a, s, q, e in start_positions(venue, D1).iter_rows()}
    flow = {a: 0.0 for a in w0}
    fund = read(venue, "funding", D1).sort("ts").iter_rows(named=True)
    settle = list(fund)
    tr = read(venue, "trades", D1).sort("ts", "trade_id")
    k = 0
    for r in tr.iter_rows(named=True):
        while k < len(settle) and settle[k]["ts"] <= r["ts"]:
            f = settle[k]
            for (a, s), (q, e) in pos.items():
                if s == f["symbol"] and q != 0:
                    flow[a] -= q * f["mark_price"] * f["funding_rate"]
            k += 1
        d = r["qty"] if r["taker_side"] == "buy" else -r["qty"]
        for a, dd, fee in ((r["taker_account"], d, r["taker_fee"]), (r["maker_account"], -d, r["maker_fee"])):
            q, e = pos.get((a, r["symbol"]), (0.0, 0.0))
            q, e, rp = step(q, e, dd, r["price"])
            pos[(a, r["symbol"])] = (q, e)
            flow[a] += rp - fee
    for f in settle[k:]:
        for (a, s), (q, e) in pos.items():
            if s == f["symbol"] and q != 0:
                flow[a] -= q * f["mark_price"] * f["funding_rate"]
    book = pl.read_parquet(venue / "_truth" / f"date={D1.isoformat()}" / "liquidation_book.parquet")
    liq = read(venue, "liquidations", D1).join(book.select("liquidation_id", "shortfall"), on="liquidation_id")
    for a, sh in liq.select("account", "shortfall").iter_rows():
        flow[a] += sh
    for a in w0:
        assert w1[a] == pytest.approx(w0[a] + flow[a], abs=1e-6 * max(1.0, abs(w0[a])) ** 0.5)


def test_a_gap_in_the_saved_days_is_refused(venue, tmp_path):
    simulate("tiny", D0, 1, tmp_path)
    with pytest.raises(ValueError, match="missing days"):
        simulate("tiny", D0 + dt.timedelta(days=3), 1, tmp_path)
    with pytest.raises(ValueError, match="unknown scale"):
        simulate("huge", D0, 1, tmp_path)


def test_concurrent_prepares_of_a_backfill_give_the_single_run(venue, tmp_path):
    """The days of a backfill prepare the simulated source at the same time: each waits for the
    cache lock and finds the days the other simulated, so the cache equals one straight run."""
    import threading

    from venue_risk.sources.simulated import SimulatedSource

    source = SimulatedSource(tmp_path, scale="tiny", genesis=D0)
    errors = []

    def prepare(day):
        try:
            source.prepare(day)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=prepare, args=(d,)) for d in (D1, D0, D1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    a, b = tree_hashes(venue), tree_hashes(source.root)
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []
