"""Incidents: injected deviations with a ground-truth record.

An incident kind is one small function `fn(plan: DayPlan, inc: Incident, rng) -> dict` registered
with `@register("kind")`. It edits the day's *inputs* in `plan` before anything is generated
(additive log returns, volatility / depth / spread multipliers, silent or shifted index-source
windows, the venue mid's premium, the traders' buy bias and position size, free-form `plan.flags`
for order-flow kinds) and returns its truth record
{kind, symbol, start, end, accounts, source, details} (start / end: ISO-8601 UTC). A record whose
`accounts` is None gets the accounts liquidated on that symbol inside [start, end] filled in after
the day is simulated; `accounts == LONG_BUILD` gets the traders whose long position on the symbol
grew over the day.

Kinds (params; defaults):
- `stale_index_source` {source: seeded choice}: the source sends no update in the window.
- `broken_index_source` {source: seeded choice, offset: 0.15}: the source prints
  price x (1 + offset) for every update whose source time is in the window; the venue's outlier
  rule excludes it when |offset| > 5%, so index and mark do not move because of it.
- `volatility_shock` {move, ramp_s, rebound, vol_x, spill, depth_x}: see the function.
- `crowded_funding` {days: 4, premium: 0.0006, buy_bias: 0.45, oi_growth: 1.5, crowd_share: 0.7,
  vol_rise: 0.5}:
  a multi-day regime starting on `Incident.day` at 00:00 (start / duration_s are ignored); one
  truth record per covered day, spanning that whole day. `premium` is the funding rate's excess
  over the 0.01% baseline per 8 h (the mid's premium over index is set ~0.05% higher than that,
  to clear the +-0.05% interest clamp, inside which the rate stays at exactly 0.01%).

Multi-day kinds (`MULTI_DAY`) are applied on each of the `params["days"]` days from
`Incident.day`; the kind function finds its day index from `plan.date - inc.date(plan.anchor)`.

To add a kind: write the function below, decorate it with `@register("my_kind")`, and read any
new `plan` field / flag where the day is generated (market.py for prices, feeds and book;
engine.py / flows.py for orders and API traffic).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from venue_risk.simulate.config import (
    FUNDING_CLAMP, INDEX_OUTLIER_PCT, INDEX_STALE_S, INTEREST_8H, MINUTES, PREMIUM_MEAN, SECONDS,
    Instrument)

LONG_BUILD = "@long_build"  # truth `accounts` placeholder: traders whose long grew that day
MULTI_DAY = {"crowded_funding"}


@dataclass(frozen=True)
class Incident:
    """An incident on `day` (a date, or an int offset from the run's start) at `start` (time of
    day, UTC) for `duration_s` seconds on `symbol`; `params` are kind-specific."""

    kind: str
    day: int | dt.date
    symbol: str
    start: dt.time = dt.time(12, 0)
    duration_s: float = 600.0
    params: dict = field(default_factory=dict)

    def date(self, run_start: dt.date) -> dt.date:
        return self.day if isinstance(self.day, dt.date) else run_start + dt.timedelta(days=self.day)

    @property
    def span_days(self) -> int:
        """Days covered (multi-day kinds: params["days"], default 4; otherwise 1)."""
        return max(1, int(self.params.get("days", 4))) if self.kind in MULTI_DAY else 1

    def dates(self, run_start: dt.date) -> list[dt.date]:
        d0 = self.date(run_start)
        return [d0 + dt.timedelta(days=i) for i in range(self.span_days)]


@dataclass
class DayPlan:
    """The day's input modifiers (neutral by default), indexed [symbol, second] / [symbol, minute]."""

    date: dt.date
    instruments: tuple[Instrument, ...]
    ret_shift: np.ndarray = None  # (S, T) added to log returns
    vol_mult: np.ndarray = None  # (S, T) multiplies per-second volatility (and trade intensity)
    depth_mult: np.ndarray = None  # (S, MINUTES) multiplies book depth
    spread_mult: np.ndarray = None  # (S, MINUTES) multiplies the half spread
    silent: list = field(default_factory=list)  # (symbol, source, t0_s, t1_s): no updates
    source_shift: list = field(default_factory=list)  # (symbol, source, t0_s, t1_s, rel offset)
    flags: dict = field(default_factory=dict)  # free-form switches for order-flow incidents
    anchor: dt.date | None = None  # the run's start (resolves int `Incident.day` offsets)
    # allocated on first use (None = neutral), (S, T): added to the venue mid's log premium over
    # the true price; added to the traders' probability of buying; multiplies their target size
    premium_shift: np.ndarray | None = None
    buy_bias: np.ndarray | None = None
    target_mult: np.ndarray | None = None
    crowd_share: dict = field(default_factory=dict)  # symbol -> share of traders buy_bias /
    # target_mult apply to (default 1: all; membership is a fixed hash of the account id)

    def per_second(self, name: str) -> np.ndarray:
        """The (S, T) array `name` (premium_shift, buy_bias, target_mult), allocated neutral."""
        if getattr(self, name) is None:
            fill = 1.0 if name == "target_mult" else 0.0
            setattr(self, name, np.full((len(self.instruments), SECONDS), fill))
        return getattr(self, name)

    def __post_init__(self) -> None:
        s = len(self.instruments)
        self.ret_shift = np.zeros((s, SECONDS))
        self.vol_mult = np.ones((s, SECONDS))
        self.depth_mult = np.ones((s, MINUTES))
        self.spread_mult = np.ones((s, MINUTES))

    def sym_index(self, symbol: str) -> int:
        return [i.symbol for i in self.instruments].index(symbol)


IncidentFn = Callable[[DayPlan, Incident, np.random.Generator], dict]
REGISTRY: dict[str, IncidentFn] = {}


def register(kind: str) -> Callable[[IncidentFn], IncidentFn]:
    def deco(fn: IncidentFn) -> IncidentFn:
        REGISTRY[kind] = fn
        return fn
    return deco


def _iso(day: dt.date, seconds: float) -> str:
    t = dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc) + dt.timedelta(seconds=float(seconds))
    return t.isoformat()


def _window(plan: DayPlan, inc: Incident) -> tuple[int, int]:
    t0 = inc.start.hour * 3600 + inc.start.minute * 60 + inc.start.second
    return t0, int(min(SECONDS, t0 + inc.duration_s))


def record(plan: DayPlan, inc: Incident, t0: float, t1: float, accounts=None, source=None,
           details: dict | None = None) -> dict:
    """The ground-truth record of one incident."""
    return {"kind": inc.kind, "symbol": inc.symbol, "start": _iso(plan.date, t0),
            "end": _iso(plan.date, t1), "accounts": accounts, "source": source,
            "details": details or {}}


@register("stale_index_source")
def stale_index_source(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """One index source of `symbol` sends no update in [start, start + duration)."""
    inst = plan.instruments[plan.sym_index(inc.symbol)]
    source = inc.params.get("source", inst.sources[int(rng.integers(len(inst.sources)))])
    t0, t1 = _window(plan, inc)
    plan.silent.append((inc.symbol, source, t0, t1))
    return record(plan, inc, t0, t1, accounts=[], source=source,
                  details={"source": source, "silent_s": t1 - t0, "stale_after_s": INDEX_STALE_S,
                           "window_on": "received_ts"})


@register("broken_index_source")
def broken_index_source(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """One index source of `symbol` prints price x (1 + `offset`) (default 0.15, may be negative)
    for every update whose source time `ts` is in [start, start + duration). Beyond the venue's
    outlier threshold (5% of the basket median) the rule excludes it: the published index, the
    mark and margin state do not move because of it. details: source, offset, outlier_pct,
    excluded_by_rule, the source's weight share and the index move it would have caused had it
    been kept (weight share x offset)."""
    inst = plan.instruments[plan.sym_index(inc.symbol)]
    pick = inst.sources[int(rng.integers(len(inst.sources)))]
    source = inc.params.get("source") or pick
    offset = float(inc.params.get("offset", 0.15))
    t0, t1 = _window(plan, inc)
    plan.source_shift.append((inc.symbol, source, t0, t1, offset))
    w = np.asarray(inst.weights, dtype=float)
    share = float(w[list(inst.sources).index(source)] / w.sum())
    return record(plan, inc, t0, t1, accounts=[], source=source,
                  details={"source": source, "offset": offset, "outlier_pct": INDEX_OUTLIER_PCT,
                           "excluded_by_rule": abs(offset) > INDEX_OUTLIER_PCT,
                           "weight_share": share, "unprotected_index_move": share * offset,
                           "window_on": "ts"})


@register("crowded_funding")
def crowded_funding(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """Crowded long positioning on `symbol` over `days` (default 4) consecutive days from
    `inc.day` 00:00. With x = the share of the regime elapsed (0 -> 1, per second):

    - the venue mid trades at a persistent premium to the index: its log premium gets
      + (INTEREST_8H + FUNDING_CLAMP - PREMIUM_MEAN + premium x (0.75 + 0.5 x)), so each 8 h
      premium index is ~0.06% + premium x (...) and the funding rate (premium + clamp(interest -
      premium, +-0.05%)) is ~0.01% + premium x (0.75 + 0.5 x) per 8 h (`premium` default 0.0006:
      the funding rate's excess over the 0.01% baseline, 0.045% -> 0.075%; capped at the
      instrument's cap). It ramps in over the first 30 min and decays (10 min time constant) from
      16:00 of the last day, so every settlement on the regime's days is elevated (day 1's 00:00
      settlement, for the interval before the regime, excepted) and the day after is at baseline;
    - a crowd of directional traders (`crowd_share` of them, default 0.7; the rest trade as
      usual, so shorts remain) accumulates longs: P(buy) + `buy_bias` x (0.25 + 0.75 x) (default
      0.45) and target size x (1 + `oi_growth` x x) (default 1.5), i.e. their equilibrium position
      goes from ~0.3 to ~3 targets long: open interest and the long/short account ratio
      rise, taker buy/sell ratio > 1 over the regime (ramps in over the first hour, ends at 24:00
      of the last day; open interest then unwinds on the next day);
    - realized volatility rises mildly: sigma x (1 + `vol_rise` x x) (default 0.5: day means
      x1.06, 1.19, 1.31, 1.44 over 4 days).

    One truth record per covered day (start / end = that day); accounts = the traders whose long
    grew that day; details: day_index, days, first_day, last_day, the params, the expected
    funding rate range of the day's 08:00 / 16:00 settlements, open_interest_start / _end (base
    qty at 00:00 and at the end of the day)."""
    k = plan.sym_index(inc.symbol)
    n_days = inc.span_days
    premium = float(inc.params.get("premium", 0.0006))
    bias = float(inc.params.get("buy_bias", 0.45))
    share = float(inc.params.get("crowd_share", 0.7))
    growth = float(inc.params.get("oi_growth", 1.5))
    vol_rise = float(inc.params.get("vol_rise", 0.5))
    d0 = inc.date(plan.anchor)
    i = (plan.date - d0).days
    sec = np.arange(SECONDS, dtype=float)
    x = (i * SECONDS + sec) / (n_days * SECONDS)
    on_p = np.ones(SECONDS)
    on_b = np.ones(SECONDS)
    if i == 0:
        on_p = np.clip(sec / 1800.0, 0.0, 1.0)
        on_b = np.clip(sec / 3600.0, 0.0, 1.0)
    if i == n_days - 1:
        on_p = on_p * np.where(sec < 57_600, 1.0, np.exp(-np.maximum(sec - 57_600, 0.0) / 600.0))
    level = premium * (0.75 + 0.5 * x)
    plan.per_second("premium_shift")[k] += (INTEREST_8H + FUNDING_CLAMP - PREMIUM_MEAN + level) * on_p
    plan.per_second("buy_bias")[k] += bias * (0.25 + 0.75 * x) * on_b
    plan.per_second("target_mult")[k] *= 1.0 + growth * x * on_b
    plan.vol_mult[k] *= 1.0 + vol_rise * x
    plan.crowd_share[inc.symbol] = share
    cap = plan.instruments[k].funding_cap
    lo, hi = INTEREST_8H + premium * (0.75 + 0.5 * i / n_days), INTEREST_8H + premium * (0.75 + 0.5 * (i + 1) / n_days)
    return record(plan, inc, 0, SECONDS, accounts=LONG_BUILD,
                  details={"day_index": i, "days": n_days, "first_day": d0.isoformat(),
                           "last_day": (d0 + dt.timedelta(days=n_days - 1)).isoformat(),
                           "premium": premium, "buy_bias": bias, "oi_growth": growth,
                           "crowd_share": share,
                           "vol_rise": vol_rise,
                           "expected_funding_rate": [min(cap, lo), min(cap, hi)],
                           "baseline_funding_rate": INTEREST_8H})


@register("volatility_shock")
def volatility_shock(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """A fast move of `move` (log, default -0.07) on `symbol` over `ramp_s` (default 180 s), a
    partial rebound (`rebound` share, default 0.4) over the rest of the window, volatility x
    `vol_x` (default 4) decaying over the window, book depth x `depth_x` (default 0.5) on top of
    the volatility-driven thinning; other symbols take `spill` (default 0.6) x
    beta_i x beta_sym of the move and half the extra volatility (the common factor). Liquidation
    clusters follow from the engine; their accounts fill the record."""
    k = plan.sym_index(inc.symbol)
    move = float(inc.params.get("move", -0.07))
    ramp = int(inc.params.get("ramp_s", 180))
    rebound = float(inc.params.get("rebound", 0.4))
    vol_x = float(inc.params.get("vol_x", 4.0))
    spill = float(inc.params.get("spill", 0.6))
    depth_x = float(inc.params.get("depth_x", 0.5))
    t0, t1 = _window(plan, inc)
    ramp = min(ramp, t1 - t0)
    path = np.zeros(t1 - t0)
    path[:ramp] = move / ramp
    if t1 - t0 > ramp:
        path[ramp:] = -move * rebound / (t1 - t0 - ramp)
    decay = 1.0 + (vol_x - 1.0) * np.exp(-np.arange(t1 - t0) / max(1.0, (t1 - t0) / 2))
    bk = plan.instruments[k].beta
    for i, inst in enumerate(plan.instruments):
        w = 1.0 if i == k else spill * inst.beta * bk
        plan.ret_shift[i, t0:t1] += path * w
        plan.vol_mult[i, t0:t1] *= 1.0 + (decay - 1.0) * (1.0 if i == k else 0.5)
    plan.depth_mult[k, t0 // 60:(t1 + 59) // 60] *= depth_x
    return record(plan, inc, t0, t1, accounts=None,
                  details={"move": move, "ramp_s": ramp, "rebound": rebound, "vol_x": vol_x,
                           "spill": spill, "depth_x": depth_x})


def default_plan(scale: str, start: dt.date, days: int, symbols: list[str]) -> list[Incident]:
    """Demo (7-day run): a crowded-funding regime on XRPUSDT on days 1-4, a stale source on
    ETHUSDT on day 2, a BTC volatility shock on day 4, a broken SOLUSDT source (kraken printing
    18 % low for 20 minutes) on day 5; account kinds on day offsets 2-6: a partially filled
    reduce-only BTC order that flips (2), an ETH post-only order taking liquidity and a thin-book
    cluster on XRPUSDT, BTCUSDT and ETHUSDT at 03:10 for 15 minutes (3), an over-scoped key and a
    SOLUSDT fill after cancel (4), an automation key without kill switch (5), an ETHUSDT leverage
    spike, a BTCUSDT cross-margin book whose small SOLUSDT hedge is the trigger, and a SOLUSDT
    cancel burst (6);
    tiny (and large): a stale source and a volatility shock on
    day offsets 0 and 1, as far as `days` allows."""
    if scale == "demo":
        plan = [Incident("crowded_funding", 1, "XRPUSDT", dt.time(0), 0.0, {"days": 4, "premium": 0.0006}),
                Incident("stale_index_source", 2, "ETHUSDT", dt.time(9, 15), 420.0, {"source": "okx"}),
                Incident("volatility_shock", 4, "BTCUSDT", dt.time(14, 30), 1800.0,
                         {"move": -0.08, "depth_x": 0.04}),
                Incident("broken_index_source", 5, "SOLUSDT", dt.time(10, 40), 1200.0,
                         {"source": "kraken", "offset": -0.18}),
                Incident("reduce_only_grew_position", 2, "BTCUSDT", dt.time(11, 5), 60.0, {"partial": True}),
                Incident("post_only_took_liquidity", 3, "ETHUSDT", dt.time(13, 20), 60.0),
                Incident("over_scoped_key", 4, "BTCUSDT", dt.time(8, 0), 5400.0),
                Incident("automation_key_without_kill_switch", 5, "ETHUSDT", dt.time(16, 30), 7200.0),
                Incident("thin_book_cluster", 3, "XRPUSDT", dt.time(3, 10), 900.0, {"n_symbols": 3}),
                Incident("fill_after_cancel", 4, "SOLUSDT", dt.time(9, 30), 60.0),
                Incident("leverage_spike", 6, "ETHUSDT", dt.time(21, 10), 120.0),
                Incident("cross_margin_small_hedge_trigger", 6, "BTCUSDT", dt.time(16, 30), 60.0,
                         {"hedge_symbol": "SOLUSDT"}),
                Incident("cancel_burst", 6, "SOLUSDT", dt.time(19, 45), 240.0)]
    else:
        plan = [Incident("stale_index_source", 0, symbols[-1], dt.time(9, 15), 420.0,
                         {"source": "okx"}),
                Incident("volatility_shock", 1, symbols[0], dt.time(14, 30), 1800.0)]
    return [i for i in plan if isinstance(i.day, int) and i.day < days]


ALL_KINDS = ("stale_index_source", "broken_index_source", "crowded_funding", "volatility_shock")


def _draw(kind: str, rng: np.random.Generator) -> tuple[float, dict]:
    """A kind's seeded duration (s) and params for `random_plan`."""
    if kind == "stale_index_source":
        return float(rng.integers(5, 21) * 60), {}
    if kind == "broken_index_source":
        off = float(rng.uniform(0.10, 0.25)) * (1.0 if rng.random() < 0.5 else -1.0)
        return float(rng.integers(5, 31) * 60), {"offset": round(off, 4)}
    if kind == "crowded_funding":
        return float(SECONDS), {"days": 4, "premium": 0.0006}
    if kind == "volatility_shock":
        move = float(rng.uniform(0.05, 0.08)) * (-1.0 if rng.random() < 0.7 else 1.0)
        return 1800.0, {"move": round(move, 4)}
    if kind == "reduce_only_grew_position":
        partial = bool(rng.random() < 0.5)
        return 60.0, {"partial": partial}
    if kind in ("post_only_took_liquidity", "fill_after_cancel", "cross_margin_small_hedge_trigger"):
        return 60.0, {}
    if kind == "cancel_burst":
        return float(rng.integers(3, 7) * 60), {}
    if kind == "thin_book_cluster":
        return float(rng.integers(10, 31) * 60), {"n_symbols": int(rng.integers(1, 3))}
    if kind == "leverage_spike":
        return float(rng.integers(1, 4) * 60), {}
    if kind == "over_scoped_key":
        mode = int(rng.integers(3))
        return float(rng.integers(30, 121) * 60), {"withdraw": mode != 1, "no_allowlist": mode != 0}
    if kind == "automation_key_without_kill_switch":
        return float(rng.integers(30, 181) * 60), {}
    return 600.0, {}


def random_plan(scale: str, start: dt.date, days: int, seed: int,
                kinds: tuple[str, ...] = ALL_KINDS, per_kind: int = 2,
                warmup_days: int | None = None) -> list[Incident]:
    """`per_kind` incidents of each kind at seeded days, times and symbols within
    [start, start + days), sorted by (date, start time, kind, symbol); `Incident.day` is a date,
    so the plan means the same in a split run.

    - Intraday kinds start on a whole minute leaving room for their duration (stale 5-20 min,
      broken 5-30 min with offset +-U(10%, 25%), volatility shock 30 min with move
      -+U(5%, 8%), 70% down); the source of stale / broken sources is the simulator's seeded
      choice on the day (read it from the truth). crowded_funding covers min(4, days) whole days.
    - Account kinds (`ACCOUNT_KINDS`, pass them in `kinds`): reduce-only / post-only /
      fill-after-cancel 1 min (reduce-only partial 50%), cancel burst 3-6 min, thin-book cluster
      10-30 min on 1-2 symbols, leverage spike 1-3 min, over-scoped key 30-120 min (withdraw,
      no allowlist, or both), automation key 30-180 min, cross-margin hedge at a minute in
      16:05-23:29. The default `kinds` (ALL_KINDS) are the market kinds only.
    - The first `warmup_days` days (default days // 4, at most 7) stay clean so trailing
      baselines exist; so does the day after a crowded regime on its symbol.
    - Never two incidents of the same kind on the same symbol-day; incidents of different kinds
      avoid sharing a symbol-day while there is room (then they may share one, never both a stale
      and a broken source on the same symbol-day).
    """
    from venue_risk.simulate.config import SCALES

    if isinstance(start, str):
        start = dt.date.fromisoformat(start)
    unknown = [k for k in kinds if k not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown incident kinds {unknown}; known: {sorted(REGISTRY)}")
    symbols = [i.symbol for i in SCALES[scale].instruments]
    warm = min(7, days // 4) if warmup_days is None else int(warmup_days)
    rng = np.random.default_rng([seed, 0x1C1D])
    busy: dict[tuple[str, int], set[str]] = {}  # (symbol, day offset) -> kinds there
    plan = []
    index_kinds = {"stale_index_source", "broken_index_source"}
    for kind in kinds:
        for _ in range(per_kind):
            duration, params = _draw(kind, rng)
            span = min(4, days) if kind == "crowded_funding" else 1
            if kind == "crowded_funding":
                params["days"] = span
            placed = None
            for attempt in range(400):
                strict = attempt < 300
                sym = symbols[int(rng.integers(len(symbols)))]
                lo = warm if days - span >= warm else 0
                d = int(rng.integers(lo, days - span + 1))
                cover = range(d, d + span + (1 if kind == "crowded_funding" else 0))
                ok = True
                for j in cover:
                    there = busy.get((sym, j), set())
                    if kind in there or (strict and there) or (kind in index_kinds and there & index_kinds):
                        ok = False
                        break
                if ok:
                    placed = (sym, d, cover)
                    break
            if placed is None:
                raise ValueError(f"no room for {per_kind} x {kind} in {days} days x {len(symbols)} symbols")
            sym, d, cover = placed
            for j in cover:
                busy.setdefault((sym, j), set()).add(kind)
            if kind == "crowded_funding":
                t = dt.time(0, 0)
            elif kind == "cross_margin_small_hedge_trigger":  # after the 16:00 funding
                m = int(rng.integers(16 * 60 + 5, 23 * 60 + 30))
                t = dt.time(m // 60, m % 60)
            else:
                m = int(rng.integers(1, int((SECONDS - duration) // 60) - 1))
                t = dt.time(m // 60, m % 60)
            plan.append(Incident(kind, start + dt.timedelta(days=d), sym, t, duration, params))
    return sorted(plan, key=lambda i: (i.day, i.start, i.kind, i.symbol))


def apply_incidents(plan: DayPlan, incidents: list[Incident], run_start: dt.date,
                    rng: np.random.Generator) -> list[dict]:
    """Apply every incident covering `plan.date` in list order; returns their truth records."""
    plan.anchor = run_start
    out = []
    for inc in incidents:
        if plan.date not in inc.dates(run_start):
            continue
        if inc.kind not in REGISTRY:
            raise ValueError(f"unknown incident kind {inc.kind!r}; known: {sorted(REGISTRY)}")
        out.append(REGISTRY[inc.kind](plan, inc, rng))
    return out


from venue_risk.simulate.account_incidents import ACCOUNT_KINDS  # noqa: E402,F401  (registers the account kinds)
