"""Market-side incidents of the simulator (issue 3): a tiny month with a seeded random plan of
stale index sources, broken index sources, crowded-funding regimes and volatility shocks, and
proof that each is in the data as its ground truth says (the contract the detection metrics are
scored against)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from venue_risk.index_rule import OUTLIER, compute_index, source_matrix
from venue_risk.simulate import ALL_KINDS, Incident, random_plan, read_truth, simulate

D0 = dt.date(2026, 11, 1)
DAYS = 30
PLAN_SEED = 11
UTC = dt.timezone.utc


def t0(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=UTC)


def dsets(out: Path, name: str, columns: list[str] | None = None) -> pl.DataFrame:
    return pl.read_parquet(out / name / "date=*" / "data.parquet", columns=columns)


@pytest.fixture(scope="module")
def month(random_month):
    """The session's tiny month (30 days, `random_plan(seed=11)`, see conftest.random_month)."""
    out, plan = random_month["out"], random_month["plan"]
    assert (random_month["start"], random_month["days"]) == (D0, DAYS)
    assert plan == random_plan("tiny", D0, DAYS, seed=PLAN_SEED)
    truth = read_truth(out)
    mi = dsets(out, "mark_index", ["ts", "symbol", "mark_price", "index_price"])
    m1 = (mi.filter(pl.col("ts").dt.second() == 0).sort("symbol", "ts")
          .with_columns(r=pl.col("mark_price").log().diff().over("symbol"), d=pl.col("ts").dt.date()))
    rv = m1.group_by("d", "symbol").agg(rv=(pl.col("r").pow(2).sum() * 365).sqrt())
    return {"out": out, "plan": plan, "truth": truth, "mi": mi, "m1": m1, "rv": rv,
            "funding": dsets(out, "funding").with_columns(d=pl.col("ts").dt.date()),
            "mm": dsets(out, "market_metrics").with_columns(d=pl.col("ts").dt.date()),
            "comp": dsets(out, "index_components"),
            "instruments": pl.read_parquet(out / "instruments" / f"date={D0}" / "data.parquet")}


def of_kind(month, kind: str) -> list[dict]:
    return [r for r in month["truth"] if r["kind"] == kind]


def span(r: dict) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.fromisoformat(r["start"]), dt.datetime.fromisoformat(r["end"])


def symbol_days(month, kinds: tuple[str, ...]) -> set[tuple[dt.date, str]]:
    return {(span(r)[0].date(), r["symbol"]) for r in month["truth"] if r["kind"] in kinds}


# --- the plan and the truth ----------------------------------------------------------------------

def test_random_plan_is_seeded_spread_and_non_overlapping(month):
    plan = month["plan"]
    assert plan == random_plan("tiny", D0, DAYS, seed=PLAN_SEED)
    assert plan != random_plan("tiny", D0, DAYS, seed=PLAN_SEED + 1)
    assert sorted(i.kind for i in plan) == sorted(k for k in ALL_KINDS for _ in range(2))
    taken: dict[tuple[str, str, dt.date], Incident] = {}
    for inc in plan:
        assert isinstance(inc.day, dt.date)
        for d in inc.dates(D0):
            assert D0 + dt.timedelta(days=7) <= d < D0 + dt.timedelta(days=DAYS)  # warm-up days clean
            assert (inc.kind, inc.symbol, d) not in taken
            taken[(inc.kind, inc.symbol, d)] = inc
        sec = inc.start.hour * 3600 + inc.start.minute * 60
        if inc.kind == "crowded_funding":
            assert inc.span_days == inc.params["days"] == 4 and sec == 0
        else:
            assert 0 < sec and sec + inc.duration_s < 86_400
    # different kinds do not share a symbol-day while there is room (plenty here)
    per_sd: dict = {}
    for (kind, sym, d) in taken:
        per_sd.setdefault((sym, d), set()).add(kind)
    assert all(len(v) == 1 for v in per_sd.values())
    assert len({i.symbol for i in plan}) == 2


def test_truth_has_a_record_per_incident_day_with_the_contract_fields(month):
    truth = month["truth"]
    expected = sorted((d, i.symbol, i.kind) for i in month["plan"] for d in i.dates(D0))
    got = sorted((span(r)[0].date(), r["symbol"], r["kind"]) for r in truth)
    assert got == expected
    for r in truth:
        assert set(r) == {"kind", "symbol", "start", "end", "source", "accounts", "details"}
        start, end = span(r)
        assert start.tzinfo is not None and start.utcoffset() == dt.timedelta(0) and start < end
        assert isinstance(r["accounts"], list)
        if r["kind"] in ("stale_index_source", "broken_index_source"):
            assert r["source"] in ("binance", "coinbase", "okx", "kraken")
            assert r["details"]["source"] == r["source"]
    day = span(truth[0])[0].date()
    assert read_truth(month["out"], day) == [r for r in truth if span(r)[0].date() == day]
    for r in of_kind(month, "crowded_funding"):
        assert span(r)[1] - span(r)[0] == dt.timedelta(days=1) and r["accounts"]


# --- index sources -------------------------------------------------------------------------------

def test_broken_source_prints_off_by_offset_and_the_index_stays_with_the_others(month):
    broken = of_kind(month, "broken_index_source")
    assert len(broken) == 2
    for r in broken:
        start, end = span(r)
        day = start.date()
        off = r["details"]["offset"]
        assert abs(off) >= 0.10 and r["details"]["excluded_by_rule"]
        inst = month["instruments"].filter(pl.col("symbol") == r["symbol"]).row(0, named=True)
        srcs = inst["index_sources"]
        comp = month["comp"].filter((pl.col("symbol") == r["symbol"])
                                    & (pl.col("received_ts").dt.date() == day))
        rec, px = [], []
        for s in srcs:
            c = comp.filter(pl.col("source") == s).sort("received_ts")
            rec.append((c["received_ts"] - t0(day)).dt.total_microseconds().to_numpy() / 1e6)
            px.append(c["price"].to_numpy())
        price, age = source_matrix(np.arange(86_400, dtype=float), rec, px)
        j = srcs.index(r["source"])
        others = np.delete(price, j, axis=1)
        med = np.median(others, axis=1)
        # the broken source's own prints: off by ~offset in its window, clean outside
        c = comp.filter(pl.col("source") == r["source"]).with_columns(
            sec=((pl.col("received_ts") - t0(day)).dt.total_microseconds() // 1_000_000))
        inw = c.filter(pl.col("ts").is_between(start, end, closed="left") & (pl.col("sec") > 0))
        outw = c.filter((pl.col("ts") < start - dt.timedelta(seconds=5)) & (pl.col("sec") > 60))
        rel_in = inw["price"].to_numpy() / med[inw["sec"].to_numpy()] - 1
        rel_out = outw["price"].to_numpy() / med[outw["sec"].to_numpy()] - 1
        assert inw.height >= (end - start).total_seconds() / 2.5
        # (receipt-time median of the others: latency and noise leave a few 0.1% at most)
        assert abs(np.median(rel_in) - off) < 0.002 and np.quantile(np.abs(rel_in - off), 0.99) < 0.005
        assert np.quantile(np.abs(rel_out), 0.99) < 0.003 and np.abs(rel_out).max() < 0.02
        # the published index: within a few bps of the other sources' median, source excluded
        w0, w1 = int((start - t0(day)).total_seconds()) + 3, int((end - t0(day)).total_seconds())
        mi = month["mi"].filter((pl.col("symbol") == r["symbol"]) & (pl.col("ts").dt.date() == day)).sort("ts")
        idx = mi["index_price"].to_numpy()
        assert np.abs(idx[w0:w1] / med[w0:w1] - 1).max() < 5e-4
        w = np.array([comp.filter(pl.col("source") == s)["weight"][0] for s in srcs])
        _, status = compute_index(price, age, w,
                                  inst["index_outlier_pct"], inst["index_stale_s"], inst["index_min_sources"])
        assert (status[w0:w1, j] == OUTLIER).mean() > 0.99
        # the mark does not jump with it: its 1-minute moves in the window are ordinary
        mark = mi["mark_price"].to_numpy()
        assert np.abs(mark[w0:w1] / idx[w0:w1] - 1).max() < 0.005
        assert np.abs(np.diff(np.log(idx[w0 - 60:w1 + 60:60]))).max() < 0.01


def test_stale_source_sends_nothing_in_its_window(month):
    stale = of_kind(month, "stale_index_source")
    assert len(stale) == 2
    for r in stale:
        start, end = span(r)
        comp = month["comp"].filter((pl.col("symbol") == r["symbol"])
                                    & pl.col("received_ts").is_between(start, end, closed="left"))
        assert comp.filter(pl.col("source") == r["source"]).height == 0
        per_src = comp.group_by("source").len()
        assert per_src.height == 3 and per_src["len"].min() >= (end - start).total_seconds() / 2.5
        assert r["details"]["silent_s"] == (end - start).total_seconds()


# --- crowded funding -----------------------------------------------------------------------------

def test_crowded_regime_funding_open_interest_and_positioning(month):
    crowded = symbol_days(month, ("crowded_funding",))
    assert len(crowded) == 8
    f = month["funding"]
    clean = f.filter(~pl.struct("d", "symbol").map_elements(
        lambda s: (s["d"], s["symbol"]) in crowded, return_dtype=pl.Boolean))
    clean_med = clean["funding_rate"].median()
    assert clean_med == pytest.approx(1e-4)
    daily = f.group_by("d", "symbol").agg(pl.col("funding_rate").mean().alias("mean"),
                                          pl.col("funding_rate").filter(pl.col("ts").dt.hour() > 0).min().alias("min_08_16"))
    for d, s in crowded:
        row = daily.filter((pl.col("d") == d) & (pl.col("symbol") == s)).row(0, named=True)
        assert row["mean"] >= 3 * clean_med and row["min_08_16"] >= 3 * clean_med
    mm = month["mm"]
    oi = mm.group_by("d", "symbol").agg(pl.col("open_interest").mean().alias("oi"),
                                        pl.col("long_short_account_ratio").mean().alias("ls"))
    tr = dsets(month["out"], "trades", ["ts", "symbol", "taker_side", "qty", "liquidation_id"]).filter(
        pl.col("liquidation_id").is_null())
    for inc in (i for i in month["plan"] if i.kind == "crowded_funding"):
        days = inc.dates(D0)
        before = oi.filter((pl.col("d") == days[0] - dt.timedelta(days=1)) & (pl.col("symbol") == inc.symbol)).row(0, named=True)
        series = [oi.filter((pl.col("d") == d) & (pl.col("symbol") == inc.symbol)).row(0, named=True) for d in days]
        o = [x["oi"] for x in series]
        # open interest builds up over the regime: its mean is well above the day before it and
        # the last day's far above both. (Day over day it is not monotone at tiny scale: a few
        # whales hold most of the open interest, and their trading noise and liquidations move it
        # by ~a whale's target in a day.)
        assert np.mean(o) > 1.5 * before["oi"] and o[-1] > max(2 * before["oi"], o[0]), (before["oi"], o)
        assert min(x["ls"] for x in series) > max(1.5, before["ls"]) and series[-1]["ls"] > 2 * before["ls"]
        w = tr.filter((pl.col("symbol") == inc.symbol) & pl.col("ts").dt.date().is_in(days))
        buy = w.filter(pl.col("taker_side") == "buy")["qty"].sum()
        assert buy / w.filter(pl.col("taker_side") == "sell")["qty"].sum() > 1.0
        # funding well above baseline on every settlement from the first 08:00 to the last 16:00
        fs = f.filter((pl.col("symbol") == inc.symbol) & pl.col("d").is_in(days)).sort("ts")["funding_rate"].to_list()
        assert min(fs[1:]) > 4e-4 and fs[-1] > fs[1]
        # the day after is back at baseline
        after = f.filter((pl.col("symbol") == inc.symbol) & (pl.col("d") == days[-1] + dt.timedelta(days=1)))
        assert (after["funding_rate"] - 1e-4).abs().max() < 1e-5 if after.height else True
    # realized volatility rises mildly on the later days (regime average, last two vs first two)
    rv = month["rv"]
    for inc in (i for i in month["plan"] if i.kind == "crowded_funding"):
        v = [rv.filter((pl.col("d") == d) & (pl.col("symbol") == inc.symbol))["rv"][0] for d in inc.dates(D0)]
        assert np.mean(v[2:]) > np.mean(v[:2])


def test_clean_symbol_days_have_baseline_funding(month):
    crowded = symbol_days(month, ("crowded_funding",))
    f = month["funding"]
    n = 0
    for (d, s), g in f.group_by("d", "symbol"):
        if (d, s) in crowded:
            continue
        assert (g["funding_rate"] - 1e-4).abs().max() < 1e-5, (d, s)
        n += 1
    assert n == 2 * DAYS - len(crowded)


# --- volatility shock ----------------------------------------------------------------------------

def test_volatility_shock_raises_one_minute_realized_vol_on_the_shocked_symbol(month):
    shocks = of_kind(month, "volatility_shock")
    assert len(shocks) == 2
    flagged = symbol_days(month, ALL_KINDS)
    rv = month["rv"]
    for r in shocks:
        start, end = span(r)
        sym_rv = rv.filter(pl.col("symbol") == r["symbol"])
        clean = sym_rv.filter(~pl.col("d").is_in([d for d, s in flagged if s == r["symbol"]]))["rv"]
        hit = sym_rv.filter(pl.col("d") == start.date())["rv"][0]
        assert hit > 1.25 * clean.median() and hit > clean.quantile(0.9)
        m = month["m1"].filter((pl.col("symbol") == r["symbol"]) & (pl.col("d") == start.date()))
        inside = m.filter(pl.col("ts").is_between(start, end, closed="left"))["r"].std()
        outside = m.filter(~pl.col("ts").is_between(start - dt.timedelta(hours=1), end + dt.timedelta(hours=1)))["r"].std()
        assert inside > 2 * outside
        assert r["details"]["move"] == pytest.approx(
            next(i.params["move"] for i in month["plan"] if i.kind == "volatility_shock" and i.symbol == r["symbol"]
                 and i.day == start.date()))


# --- determinism with a multi-day incident ---------------------------------------------------------

def test_split_run_with_a_crowded_regime_is_byte_identical(tmp_path):
    plan = [Incident("crowded_funding", D0, "ETHUSDT", params={"days": 2}),
            Incident("broken_index_source", D0 + dt.timedelta(days=1), "BTCUSDT", dt.time(3, 0), 300.0,
                     {"offset": -0.2})]
    a, b = tmp_path / "a", tmp_path / "b"
    simulate("tiny", D0, 2, a, incidents=plan)
    simulate("tiny", D0, 1, b, incidents=plan)
    simulate("tiny", D0 + dt.timedelta(days=1), 1, b, incidents=plan)
    h = lambda root: {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
                      for p in sorted(root.rglob("*")) if p.is_file()}
    assert h(a) == h(b)
    assert [r["kind"] for r in read_truth(a, D0)] == ["crowded_funding"]
    assert sorted(r["kind"] for r in read_truth(a, D0 + dt.timedelta(days=1))) == [
        "broken_index_source", "crowded_funding"]
