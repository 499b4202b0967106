"""Account-side incidents (issue 4): order-flow violations, early-warning anomalies, API key
scoping and cross-margin portfolios, each a registered kind with a ground-truth record.

Kind functions only write `plan.flags` (and, for thin books, the depth / spread multipliers);
the engine (`run_injected`, order-flow events in exchange order), `flows.build_orders`
(cancels), `flows.build_api` (keys and requests) and `day.py` (cross-margin sizing before the
engine) read them. A record carries `details["_tag"]` until `resolve` fills in what only the
simulated day knows (order ids, trade ids, accounts, key ids) and drops the tag.

Kinds (params; defaults) and truth details:
- `reduce_only_grew_position` {partial: False, mode: "flip" if partial else "grow"}: an
  isolated trader with a position sends a reduce-only market order at `start`. grow: same side as
  the position, one fill (every fill grows |position|). flip: opposite side, qty = |position| +
  extra; with partial=True it fills in 3 fills (new, partial_fill, partial_fill, fill): the first
  two reduce (legitimate), the last crosses zero (the violation). details: order_id, account,
  mode, partial, violating_trade_ids, trade_ids, size_before, size_after.
- `post_only_took_liquidity` {}: a trader's limit GTX post_only order priced through the touch
  fills as taker at `start`. details: order_id, account, trade_ids.
- `fill_after_cancel` {gap_ms: 80}: the first post-only maker quote filled on the symbol at or
  after `start` gets its cancel event `gap_ms` before its (partial) fill. details: order_id,
  account, trade_id, cancel_ts, fill_ts.
- `cancel_burst` {x: 25, n_accounts: 2, rest_min: 30}: 1-3 market makers pull their resting
  quotes: extra post-only quotes, placed (new) at uniform times in the `rest_min` minutes before
  `start` and all cancelled inside [start, end), at `x` times the symbol's normal cancel rate. The
  window sees cancels without matching news, so cancels and the cancel/new ratio jump together.
  accounts = the market makers; details: extra_cancels, baseline_cancels_per_min, x, rest_min.
- `thin_book_cluster` {n_symbols: 2, depth_x: 0.1, spread_x: 10.0}: book depth x depth_x and
  half spread x spread_x on `symbol` and the next n_symbols - 1 symbols (instrument order) for
  the window's minutes (liquidity withdrawn: a tenth of the book, the touch ten times as wide);
  prices and volatility untouched. details: symbols, depth_x, spread_x.
- `leverage_spike` {per_min: 8, levels: [50, 75, 100, 125]}: n = per_min x window minutes
  (rounded up, at least 8) isolated traders of the symbol raise leverage to a high level (capped
  by the tier of their position / target) at uniform times over the window. accounts = those traders; details: changes [[ts, account, old, new]].
- `over_scoped_key` {withdraw: True, no_allowlist: True}: a trader gets a new key
  (key_id = account x 10 + 3, created at `start`, present in that day's snapshot only) with
  scopes read+trade(+withdraw) and an empty (or kept) allowlist, used for a few reads from an
  unlisted IP. details: key_id, account, scopes, ip_allowlist.
- `automation_key_without_kill_switch` {rpm: 60}: a trader gets a new read+trade key
  (account x 10 + 4, allowlisted, cancel_on_disconnect False, that day's snapshot only) polling
  `rpm` requests a minute through the window. details: key_id, account, requests, rpm.
- `cross_margin_small_hedge_trigger` {k: 3.0, hedge_ratio: 0.3, hedge_symbol: seeded}: a cross
  trader (frozen for the day) trades at `start` (>= 16:01) to a large position in `symbol` and a
  small one (hedge_ratio x its notional) in `hedge_symbol`, everything else closed; see
  `size_cross_hedge`. The small leg has the SAME direction as the main one: with positive
  correlations an opposite leg only lowers the correlation-one stress (|a s_A - b s_B| <=
  sqrt(a^2 s_A^2 + b^2 s_B^2 - 2 rho a b s_A s_B)), so it could never be the trigger.
  details: account, main_symbol, hedge_symbol (= trigger_symbol), k, hedge_ratio, sizes, marks,
  vol_daily, corr, wallet_eod, buffer_empirical (> 0), buffer_corr_one (< 0),
  buffer_corr_one_without_hedge (> 0), stress (the definitions), order_ids.
"""

from __future__ import annotations

import math

import numpy as np

from venue_risk import margin
from venue_risk.simulate.config import MINUTES, SECONDS
from venue_risk.simulate.incidents import DayPlan, Incident, _window, record, register

ACCOUNT_KINDS = ("reduce_only_grew_position", "post_only_took_liquidity", "fill_after_cancel",
                 "cancel_burst", "thin_book_cluster", "leverage_spike", "over_scoped_key",
                 "automation_key_without_kill_switch", "cross_margin_small_hedge_trigger")
HIGH_LEVERAGES = (50.0, 75.0, 100.0, 125.0)


def _tag(plan: DayPlan, kind: str) -> str:
    n = plan.flags.setdefault("_n", [0])
    n[0] += 1
    return f"{kind}#{n[0]}"


def _engine(plan: DayPlan, symbol: str, ev: dict) -> None:
    plan.flags.setdefault("engine", {}).setdefault(symbol, []).append(ev)


@register("reduce_only_grew_position")
def reduce_only_grew_position(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """A reduce-only order whose fill grew |position| (mode grow) or flipped it (mode flip;
    partial=True: the flipping fill is the last of three)."""
    partial = bool(inc.params.get("partial", False))
    mode = inc.params.get("mode", "flip" if partial else "grow")
    if mode not in ("grow", "flip"):
        raise ValueError(f"reduce_only_grew_position mode {mode!r}: expected grow or flip")
    t0, t1 = _window(plan, inc)
    tag = _tag(plan, inc.kind)
    _engine(plan, inc.symbol, {"type": "ro", "tag": tag, "t": t0 * 1_000_000, "u": float(rng.random()),
                               "partial": partial, "mode": mode})
    return record(plan, inc, t0, t1, accounts=[], details={"_tag": tag, "partial": partial, "mode": mode})


@register("post_only_took_liquidity")
def post_only_took_liquidity(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """A post-only (GTX) limit order that fills as taker."""
    t0, t1 = _window(plan, inc)
    tag = _tag(plan, inc.kind)
    _engine(plan, inc.symbol, {"type": "po", "tag": tag, "t": t0 * 1_000_000, "u": float(rng.random()),
                               "buy": bool(rng.random() < 0.5)})
    return record(plan, inc, t0, t1, accounts=[], details={"_tag": tag})


@register("fill_after_cancel")
def fill_after_cancel(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """A maker quote filled after its cancel event."""
    t0, t1 = _window(plan, inc)
    tag = _tag(plan, inc.kind)
    gap = int(float(inc.params.get("gap_ms", 80)) * 1000)
    plan.flags.setdefault("fill_after_cancel", []).append(
        {"tag": tag, "sym": plan.sym_index(inc.symbol), "t": t0 * 1_000_000, "gap_us": gap})
    return record(plan, inc, t0, t1, accounts=[], details={"_tag": tag, "gap_ms": gap / 1000})


@register("cancel_burst")
def cancel_burst(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """Many times the normal cancels on one symbol in a window, from one or a few market makers."""
    t0, t1 = _window(plan, inc)
    tag = _tag(plan, inc.kind)
    x = float(inc.params.get("x", 25.0))
    rest = float(inc.params.get("rest_min", 30.0))
    plan.flags.setdefault("cancel_burst", []).append(
        {"tag": tag, "sym": plan.sym_index(inc.symbol), "t0": t0 * 1_000_000, "t1": t1 * 1_000_000,
         "x": x, "rest_us": int(rest * 60e6), "n_accounts": int(inc.params.get("n_accounts", 2)),
         "seed": int(rng.integers(2**62))})
    return record(plan, inc, t0, t1, accounts=[], details={"_tag": tag, "x": x, "rest_min": rest})


@register("thin_book_cluster")
def thin_book_cluster(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """Depth within every band x depth_x, half spread x spread_x on one or more symbols."""
    t0, t1 = _window(plan, inc)
    n = max(1, min(int(inc.params.get("n_symbols", 2)), len(plan.instruments)))
    depth_x = float(inc.params.get("depth_x", 0.1))
    spread_x = float(inc.params.get("spread_x", 10.0))
    k0 = plan.sym_index(inc.symbol)
    ks = [(k0 + j) % len(plan.instruments) for j in range(n)]
    m0, m1 = t0 // 60, min(MINUTES, (t1 + 59) // 60)
    for k in ks:
        plan.depth_mult[k, m0:m1] *= depth_x
        plan.spread_mult[k, m0:m1] *= spread_x
    return record(plan, inc, t0, t1, accounts=[],
                  details={"symbols": [plan.instruments[k].symbol for k in ks], "depth_x": depth_x,
                           "spread_x": spread_x})


@register("leverage_spike")
def leverage_spike(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """per_min x minutes isolated traders of the symbol raise their leverage to a high level within
    the window."""
    t0, t1 = _window(plan, inc)
    tag = _tag(plan, inc.kind)
    n = max(8, math.ceil(float(inc.params.get("per_min", 8.0)) * (t1 - t0) / 60.0))
    levels = tuple(float(x) for x in inc.params.get("levels", HIGH_LEVERAGES))
    ts = np.sort(rng.integers(t0 * 1_000_000, max(t0 + 1, t1) * 1_000_000, n))
    seed = int(rng.integers(2**62))
    for j, t in enumerate(ts.tolist()):
        _engine(plan, inc.symbol, {"type": "lev", "tag": tag, "t": int(t), "seed": seed, "j": j,
                                   "levels": levels, "u": float(rng.random())})
    return record(plan, inc, t0, t1, accounts=[], details={"_tag": tag, "n": n, "levels": list(levels)})


@register("over_scoped_key")
def over_scoped_key(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """A new key with trade+withdraw scopes and/or no IP allowlist."""
    t0, t1 = _window(plan, inc)
    tag = _tag(plan, inc.kind)
    w = bool(inc.params.get("withdraw", True))
    na = bool(inc.params.get("no_allowlist", True))
    if not (w or na):
        raise ValueError("over_scoped_key needs withdraw or no_allowlist")
    plan.flags.setdefault("keys", []).append({"type": "over", "tag": tag, "t0": t0, "t1": t1,
                                              "withdraw": w, "no_allowlist": na,
                                              "u": float(rng.random()), "seed": int(rng.integers(2**62))})
    return record(plan, inc, t0, t1, accounts=[], details={"_tag": tag})


@register("automation_key_without_kill_switch")
def automation_key_without_kill_switch(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """A new high-rate key without cancel-on-disconnect."""
    t0, t1 = _window(plan, inc)
    tag = _tag(plan, inc.kind)
    plan.flags.setdefault("keys", []).append({"type": "auto", "tag": tag, "t0": t0, "t1": t1,
                                              "rpm": float(inc.params.get("rpm", 60.0)),
                                              "u": float(rng.random()), "seed": int(rng.integers(2**62))})
    return record(plan, inc, t0, t1, accounts=[], details={"_tag": tag})


@register("cross_margin_small_hedge_trigger")
def cross_margin_small_hedge_trigger(plan: DayPlan, inc: Incident, rng: np.random.Generator) -> dict:
    """A cross-margin account left at the end of the day with a large position in `symbol` and a
    small position in a correlated symbol, sized so the account survives a k-sigma stress under
    the day's empirical correlation but breaches maintenance when correlations are one (see
    `size_cross_hedge`); trades at `start` (after 16:00 so no funding follows)."""
    t0, t1 = _window(plan, inc)
    t0 = max(t0, 57_660)
    tag = _tag(plan, inc.kind)
    k0 = plan.sym_index(inc.symbol)
    others = [i.symbol for j, i in enumerate(plan.instruments) if j != k0]
    hedge = inc.params.get("hedge_symbol") or others[int(rng.integers(len(others)))]
    plan.flags.setdefault("cross", []).append(
        {"tag": tag, "main": inc.symbol, "hedge": hedge, "t": t0 * 1_000_000,
         "k": float(inc.params.get("k", 3.0)), "hedge_ratio": float(inc.params.get("hedge_ratio", 0.3)),
         "u": float(rng.random()), "long": bool(rng.random() < 0.5)})
    return record(plan, inc, t0, max(t0 + 1, t1), accounts=[], details={"_tag": tag})


# --- engine side ---------------------------------------------------------------------------------

def run_injected(ev: dict, t: int, E) -> None:
    """Run one injected order-flow event at `t` (µs) inside the engine's loop (E: engine state)."""
    s = min(t // 1_000_000, SECONDS - 1)
    lot = E.lot
    free = [int(a) for a in E.mem if E.isolated[a] and E.is_trader[a] and t > E.locked[a]]
    if not free and ev["type"] in ("ro", "po", "lev"):
        raise ValueError(f"{ev['tag']}: no isolated trader of {E.inst.symbol} free at {t} us")
    F = E.res.fills
    if ev["type"] == "ro":
        cand = [a for a in free if abs(E.size[a]) >= 4 * lot] or free
        a = cand[min(int(ev["u"] * len(cand)), len(cand) - 1)]
        x = float(E.size[a])
        ax = abs(x)
        long = x > 0 if x != 0 else True
        if ev["mode"] == "grow" or x == 0.0:
            buy = long
            q = max(lot, math.floor(max(ax, E.target[a] / E.mkt.mid[s]) * 0.5 / lot) * lot)
            parts = [q]
            violating = [0]
        else:
            buy = not long
            extra = max(lot, math.floor(0.5 * ax / lot) * lot)
            if ev["partial"]:
                p1 = max(lot, math.floor(0.3 * ax / lot) * lot)
                p2 = max(lot, math.floor(0.4 * ax / lot) * lot)
                parts = [p1, p2, round(ax - p1 - p2 + extra, 10)]
            else:
                parts = [round(ax + extra, 10)]
            violating = [len(parts) - 1]
        qty = round(sum(parts), 10)
        price = E.ask[s] if buy else E.bid[s]
        o = E.new_order(t, a, buy, "market", "IOC", math.nan, qty, True, -1, False)
        seqs = _fills(E, t, price, parts, buy, a, o)
        E.res.tagged.append({"tag": ev["tag"], "local": o, "account": a, "size_before": x,
                             "size_after": float(E.size[a]), "seqs": seqs,
                             "violating_seqs": [seqs[i] for i in violating]})
    elif ev["type"] == "po":
        a = free[min(int(ev["u"] * len(free)), len(free) - 1)]
        buy = ev["buy"]
        q = max(lot, math.floor(0.3 * E.target[a] / E.mkt.mid[s] / lot) * lot)
        price = E.ask[s] if buy else E.bid[s]
        o = E.new_order(t, a, buy, "limit", "GTX", float(price), q, False, -1, True)
        seqs = _fills(E, t, price, [q], buy, a, o)
        E.res.tagged.append({"tag": ev["tag"], "local": o, "account": a, "seqs": seqs})
    elif ev["type"] == "lev":
        done = {c[1] for c in E.res.lev_changes if len(c) > 4 and c[4] == ev["tag"]}
        order = np.random.default_rng(ev["seed"]).permutation(len(free)).tolist()
        for i in order:
            a = free[i]
            if a in done:
                continue
            notional = max(abs(E.size[a]) * E.mkt.mid[s], 1.5 * E.target[a])
            cap = margin.max_leverage_for_notional(E.tiers, notional)
            ok = [L for L in ev["levels"] if L <= cap and L > E.lev[a]]
            if not ok:
                continue
            new = ok[min(int(ev["u"] * len(ok)), len(ok) - 1)]
            E.res.lev_changes.append((t, a, float(E.lev[a]), new, ev["tag"]))
            E.lev[a] = new
            return
    elif ev["type"] == "cross":
        a, d = ev["account"], ev["delta"]
        buy = d > 0
        price = E.ask[s] if buy else E.bid[s]
        o = E.new_order(t, a, buy, "market", "IOC", math.nan, abs(d), False, -1, False)
        seqs = _fills(E, t, price, [abs(d)], buy, a, o)
        E.res.tagged.append({"tag": ev["tag"], "local": o, "account": a, "seqs": seqs})


def _fills(E, t: int, price: float, parts: list[float], buy: bool, a: int, o: int) -> list[int]:
    """Fill `parts` of taker order `o` at `price` against the best-placed market makers, at
    t, t + 1 µs, ...; returns the fills' positions in the symbol's fill list."""
    best = E.makers_for(buy)
    seqs = []
    for j, pq in enumerate(parts):
        seqs.append(len(E.res.fills["ts"]))
        fee_t = price * pq * E.inst.taker_fee_rate
        E.fill(t + j, price, pq, buy, a, best[j % len(best)], fee_t, price * pq * E.inst.maker_fee_rate,
               -1, o, 0)
    return seqs


# --- cross-margin sizing (before the engine) -------------------------------------------------------

def _minute_returns(mkts) -> tuple[np.ndarray, np.ndarray]:
    """Daily volatilities (1-minute mark log returns, x sqrt(1440)) and their correlation matrix."""
    r = np.stack([np.diff(np.log(m.mark[::60])) for m in mkts])
    vol = r.std(axis=1, ddof=1) * math.sqrt(MINUTES)
    return vol, np.corrcoef(r)


def stress_gap(sizes: np.ndarray, entry: np.ndarray, marks: np.ndarray, wallet: float, tiers: list,
               moves: np.ndarray) -> float:
    """equity - sum of maintenance margins after the relative price moves `moves` (cross rule)."""
    p = marks * (1.0 + moves)
    eq = wallet + float(np.sum(sizes * (p - entry)))
    mm = sum(margin.maintenance_margin(tiers[i], abs(sizes[i]) * p[i]) for i in range(len(sizes)) if sizes[i] != 0)
    return eq - mm


def stress_moves(sizes: np.ndarray, marks: np.ndarray, vol: np.ndarray, corr: np.ndarray, k: float
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The k-sigma moves of the two regimes (each both ways): empirical = the move of Mahalanobis
    length k (covariance vol x corr x vol) in the direction of the portfolio's exposure, i.e.
    -+k x cov w / sqrt(w' cov w) with w = size x mark (it moves the portfolio by -+k sigma_p);
    correlation one = every symbol by -+k x its own vol."""
    w = sizes * marks
    cov = np.outer(vol, vol) * corr
    sp = math.sqrt(max(float(w @ cov @ w), 1e-300))
    emp = cov @ w / sp * k
    return [-emp, emp], [-k * vol, k * vol]


def size_cross_hedge(spec: dict, mkts, st: dict, acc, tiers_all: list, taker_fee: list) -> dict:
    """Size the account's end-of-day portfolio: main leg M (long or short), a hedge leg of
    hedge_ratio x M's notional in the same direction (with correlations below one the small leg
    adds little to the empirical k-sigma stress; at correlation one its whole k-sigma move adds,
    and it is the trigger), every other symbol closed, all by market orders at `t` (after the
    16:00 funding, so the wallet is known). The scale is the geometric middle of the range in
    which the account survives the empirical stress and breaches the correlation-one one (the
    main leg alone survives correlation one). The account (a cross trader) does not trade
    otherwise that day."""
    n_sym = len(mkts)
    s = spec["t"] // 1_000_000
    vol, corr = _minute_returns(mkts)
    marks = np.array([float(m.mark[-1]) for m in mkts])
    cross = np.flatnonzero(acc.is_trader & ~acc.isolated)
    a = int(cross[min(int(spec["u"] * len(cross)), len(cross) - 1)])
    names = [m.inst.symbol for m in mkts]
    km, kh = names.index(spec["main"]), names.index(spec["hedge"])
    q0 = st["size"][a].astype(float).copy()
    e0 = st["entry"][a].astype(float).copy()
    wallet = float(st["wallet"][a])
    for k, m in enumerate(mkts):  # funding settlements before t on the start positions
        for sec, rate, _, mk, _ in m.funding:
            if sec * 1_000_000 <= spec["t"] and q0[k] != 0:
                wallet -= q0[k] * mk * rate
    sign = 1.0 if spec["long"] else -1.0
    ask = np.array([float(m.ask[s]) for m in mkts])
    bid = np.array([float(m.bid[s]) for m in mkts])
    from venue_risk.positions import step

    def outcome(scale_notional: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        target = np.zeros(n_sym)
        target[km] = sign * scale_notional / marks[km]
        target[kh] = sign * spec["hedge_ratio"] * scale_notional / marks[kh]
        lots = np.array([m.inst.lot for m in mkts])
        target = np.round(np.round(target / lots) * lots, 10)
        d = np.round(target - q0, 10)
        w = wallet
        q1, e1 = q0.copy(), e0.copy()
        for k in range(n_sym):
            if abs(d[k]) < 1e-12:
                continue
            p = ask[k] if d[k] > 0 else bid[k]
            q1[k], e1[k], rp = step(q0[k], e0[k], d[k], p)
            w += rp - p * abs(d[k]) * taker_fee[k]
        return q1, e1, d, w

    def gaps(x: float) -> tuple[float, float, float]:
        q1, e1, _, w = outcome(x)
        emp, one = stress_moves(q1, marks, vol, corr, spec["k"])
        g_emp = min(stress_gap(q1, e1, marks, w, tiers_all, mv) for mv in emp)
        g_one = min(stress_gap(q1, e1, marks, w, tiers_all, mv) for mv in one)
        qm = q1.copy()
        qm[kh] = 0.0
        g_main = min(stress_gap(qm, e1, marks, w, tiers_all, mv) for mv in one)
        return g_emp, g_one, g_main

    def bisect(i: int) -> float:
        lo, hi = 1.0, 1e3 * max(wallet, 1.0)
        for _ in range(80):
            mid = math.sqrt(lo * hi)
            if gaps(mid)[i] >= 0:
                lo = mid
            else:
                hi = mid
        return lo
    x_one, x_emp = bisect(1), bisect(0)
    x = math.sqrt(x_one * x_emp)
    q1, e1, d, w = outcome(x)
    g_emp, g_one, g_main = gaps(x)
    return {"account": a, "deltas": d, "sizes": q1, "entries": e1, "wallet_eod": w, "marks": marks,
            "vol": vol, "corr": corr, "g_emp": g_emp, "g_one": g_one, "g_main": g_main,
            "x_range": [x_one, x_emp], "main_idx": km, "hedge_idx": kh}


def prepare_cross(plan: DayPlan, mkts, st: dict, acc, scale) -> tuple[dict, dict, dict]:
    """Size every cross-margin incident of the day; returns (engine events per symbol,
    frozen accounts, sizing per tag)."""
    events: dict = {}
    frozen: dict = {}
    sized: dict = {}
    tiers_all = [m.inst.tiers for m in mkts]
    fees = [m.inst.taker_fee_rate for m in mkts]
    taken: set = set()
    for spec in plan.flags.get("cross", []):
        spec = dict(spec)
        for _ in range(50):
            r = size_cross_hedge(spec, mkts, st, acc, tiers_all, fees)
            if r["account"] not in taken:
                break
            spec["u"] = (spec["u"] + 0.137) % 1.0
        a = r["account"]
        taken.add(a)
        frozen[a] = 0
        for k, d in enumerate(r["deltas"].tolist()):
            if d != 0.0:
                events.setdefault(mkts[k].inst.symbol, []).append(
                    {"type": "cross", "tag": spec["tag"], "t": spec["t"] + k * 10, "account": a, "delta": d})
        sized[spec["tag"]] = (spec, r)
    return events, frozen, sized


# --- after the day: fill in the truth ------------------------------------------------------------

class _Lookup:
    """`lookup[key]` -> fn(*key) (ids computed on demand instead of a dict over every order)."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __getitem__(self, key: tuple) -> int:
        return self.fn(*key)


def resolve(truths: list[dict], results: list, order_id, trade_id, notes: dict, syms: list[str],
            sized: dict, us0: int) -> None:
    """Fill every tagged record's ids and accounts (in place) and drop the tags.
    `order_id(sym, rank, local)`: the order id of a taker order (rank 0, local: its engine order)
    or a maker order (rank 1, local: its fill's position in trade-id order); `trade_id(sym, seq)`:
    the trade id of the symbol's seq-th engine fill."""
    ids, tid = _Lookup(order_id), _Lookup(trade_id)
    tagged = {}
    for k, res in enumerate(results):
        for x in res.tagged:
            tagged.setdefault(x["tag"], []).append((k, x))
    lev = {}
    for k, res in enumerate(results):
        for c in res.lev_changes:
            if len(c) > 4:
                lev.setdefault(c[4], []).append([_iso_us(us0 + c[0]), int(c[1]), c[2], c[3]])
    for r in truths:
        tag = r["details"].pop("_tag", None)
        if tag is None:
            continue
        d = r["details"]
        kind = r["kind"]
        if kind in ("reduce_only_grew_position", "post_only_took_liquidity"):
            k, x = tagged[tag][0]
            d["order_id"] = int(ids[(k, 0, x["local"])])
            d["account"] = int(x["account"])
            d["trade_ids"] = [int(tid[(k, q)]) for q in x["seqs"]]
            if kind == "reduce_only_grew_position":
                d["violating_trade_ids"] = [int(tid[(k, q)]) for q in x["violating_seqs"]]
                d["size_before"], d["size_after"] = x["size_before"], x["size_after"]
            r["accounts"] = [int(x["account"])]
        elif kind == "fill_after_cancel":
            n = notes["fill_after_cancel"][tag]
            d.update({"order_id": int(ids[(n["sym"], 1, n["local"])]), "account": n["account"],
                      "trade_id": n["trade_id"], "cancel_ts": _iso_us(us0 + n["cancel_ts"]),
                      "fill_ts": _iso_us(us0 + n["fill_ts"])})
            r["accounts"] = [n["account"]]
        elif kind == "cancel_burst":
            n = notes["cancel_burst"][tag]
            d.update({"extra_cancels": n["extra"], "baseline_cancels_per_min": n["base_per_min"]})
            r["accounts"] = n["accounts"]
        elif kind == "leverage_spike":
            d["changes"] = lev.get(tag, [])
            r["accounts"] = sorted({c[1] for c in d["changes"]})
        elif kind in ("over_scoped_key", "automation_key_without_kill_switch"):
            n = notes["keys"][tag]
            d.update(n)
            r["accounts"] = [n["account"]]
        elif kind == "cross_margin_small_hedge_trigger":
            spec, z = sized[tag]
            names = syms
            d.update({"account": z["account"], "main_symbol": spec["main"], "hedge_symbol": spec["hedge"],
                      "trigger_symbol": spec["hedge"], "k": spec["k"], "hedge_ratio": spec["hedge_ratio"],
                      "sizes": {names[i]: float(v) for i, v in enumerate(z["sizes"]) if v != 0},
                      "marks": {names[i]: float(v) for i, v in enumerate(z["marks"])},
                      "vol_daily": {names[i]: float(v) for i, v in enumerate(z["vol"])},
                      "corr": z["corr"].tolist(), "wallet_eod": z["wallet_eod"],
                      "buffer_empirical": z["g_emp"], "buffer_corr_one": z["g_one"],
                      "buffer_corr_one_without_hedge": z["g_main"],
                      "stress": "k-sigma over 1 day; vol = std of 1-minute mark log returns x sqrt(1440); "
                                "empirical: move -+k cov w / sqrt(w' cov w), w = size x mark; "
                                "corr one: every symbol -+k vol; breach: equity <= sum MM at the moved marks",
                      "order_ids": [int(ids[(k, 0, x["local"])]) for k, x in tagged.get(tag, [])]})
            r["accounts"] = [z["account"]]


def _iso_us(us: int) -> str:
    import datetime as dt

    return (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=int(us))).isoformat()
