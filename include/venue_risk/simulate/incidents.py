"""Incidents: injected deviations with a ground-truth record.

An incident kind is one small function `fn(plan: DayPlan, inc: Incident, rng) -> dict` registered
with `@register("kind")`. It edits the day's *inputs* in `plan` before anything is generated
(additive log returns, volatility / depth / spread multipliers, silent or shifted index-source
windows, free-form `plan.flags` for order-flow kinds) and returns its truth record
{kind, symbol, start, end, accounts, source, details}. A record whose `accounts` is None gets the
accounts liquidated on that symbol inside [start, end] filled in after the day is simulated.

To add a kind: write the function below, decorate it with `@register("my_kind")`, and read any
new `plan` field / flag where the day is generated (market.py for prices, feeds and book;
engine.py / flows.py for orders and API traffic).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from venue_risk.simulate.config import MINUTES, SECONDS, Instrument


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
                  details={"silent_s": t1 - t0, "stale_after_s": 10.0})


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
    """Demo: stale source on day 2, BTC volatility shock on day 4 (7-day run);
    tiny (and large): the same two kinds on day offsets 0 and 1, as far as `days` allows."""
    if scale == "demo":
        plan = [Incident("stale_index_source", 2, "ETHUSDT", dt.time(9, 15), 420.0, {"source": "okx"}),
                Incident("volatility_shock", 4, "BTCUSDT", dt.time(14, 30), 1800.0,
                         {"move": -0.08, "depth_x": 0.04})]
    else:
        plan = [Incident("stale_index_source", 0, symbols[-1], dt.time(9, 15), 420.0,
                         {"source": "okx"}),
                Incident("volatility_shock", 1, symbols[0], dt.time(14, 30), 1800.0)]
    return [i for i in plan if isinstance(i.day, int) and i.day < days]


def apply_incidents(plan: DayPlan, incidents: list[Incident], run_start: dt.date,
                    rng: np.random.Generator) -> list[dict]:
    """Apply every incident of `plan.date` in list order; returns their truth records."""
    out = []
    for inc in incidents:
        if inc.date(run_start) != plan.date:
            continue
        if inc.kind not in REGISTRY:
            raise ValueError(f"unknown incident kind {inc.kind!r}; known: {sorted(REGISTRY)}")
        out.append(REGISTRY[inc.kind](plan, inc, rng))
    return out
