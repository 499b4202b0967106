"""The matching and liquidation engine of one symbol for one day (an event loop in exchange order).

Events, in time order: funding settlements (00:00, 08:00, 16:00), 5-minute snapshots, taker
orders (Poisson arrivals, intensity x sigma_t / sigma_calm), and the fills of liquidations.
Before any event at time t every 1-second mark up to t is checked against the isolated positions'
liquidation prices (`margin.isolated_liquidation_price`); a long is liquidated when
mark <= LP, a short when mark >= LP.

- Takers are directional traders: P(buy) = clamp(0.5 + bias_t - 0.35 x size / target_t, 0.05, 0.95)
  (they mean-revert their own size; bias_t = mkt.buy_bias, 0 by default; target_t = target x
  mkt.target_mult, 1 by default; both apply to the crowd only: the accounts with
  frac(id x 0.618...) < mkt.crowd_share), order qty = target_t x U(0.1, 0.5); fills at best ask (buy) / best bid
  (sell) of that second against market makers (1 or 2 fills). Isolated margin: + |d| p / L on an
  increase, pro rata on a reduction, |size| p / L after a flip. Cross traders keep 2-3x leverage and
  are never liquidated by construction (no cross liquidation in the simulator).
- Liquidation path by notional at the trigger mark: >= liquidation_incremental_notional:
  `incremental` (2-8 IOC orders 1-2 s apart, each walking the book); else `auction` (70%: filled at
  mark x (1 -/+ discount) by 1-3 market makers 0.5-3 s later) or `market` (one IOC walking the book).
  What a walk cannot fill inside the 5% band is a separate `backstop` row filled by the backstop
  account at the bankruptcy price BP.
- Per liquidation row: fee = min(filled notional x liquidation_fee_rate, E+) with
  E+ = sum over fills not beyond BP of |p - BP| q (the equity those fills leave), shortfall =
  sum over fills beyond BP of |p - BP| q, insurance fund delta = fee - shortfall; each fill's
  taker_fee is the fee pro rata by fill notional. The trader's wallet gets the realized PnL of the
  fills, minus the fee, plus the shortfall (the fund covers it): it loses exactly the position's
  margin minus (E+ - fee).
- Funding: payment = size x mark x rate at settlement (longs pay a positive rate), to the wallet.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from venue_risk import margin
from venue_risk.positions import step
from venue_risk.simulate.config import (
    BACKSTOP_ACCOUNT, DAY_US, LEVERAGE_P, LEVERAGES, SECONDS, Scale)
from venue_risk.simulate.market import SymbolMarket, tick_round, walk_book

AUCTION_P = 0.7


class ENGINE_API:
    """The engine's state handed to an injected incident event (attribute access)."""

    def __init__(self, locals_: dict) -> None:
        self.__dict__.update(locals_)


@dataclass
class SymbolBook:
    """Positions of every account in one symbol (arrays indexed by account id)."""

    size: np.ndarray
    entry: np.ndarray
    margin: np.ndarray
    lev: np.ndarray


TYPES = ("market", "limit", "liquidation")  # order type codes of SymbolResult.orders["type"]
TIFS = ("IOC", "GTX", "GTC")  # time-in-force codes
FILL_DTYPES = {"ts": np.int64, "price": np.float64, "qty": np.float64, "buy": np.bool_, "taker": np.int64,
               "maker": np.int64, "taker_fee": np.float64, "maker_fee": np.float64, "liq": np.int64,
               "taker_order": np.int64, "maker_kind": np.int64}
ORDER_DTYPES = {"local": np.int64, "ts": np.int64, "account": np.int64, "buy": np.bool_, "type": np.int8,
                "tif": np.int8, "price": np.float64, "qty": np.float64, "reduce_only": np.bool_,
                "liq": np.int64, "post_only": np.bool_}


class CashLog:
    """The wallet changes of one symbol's day, in the engine's order: replayed onto the wallets
    with `replay` (np.add.at applies them one by one, so the sums are the ones a direct
    `cash[a] += v` in the same order would give, whether the symbols ran here or in a worker)."""

    def __init__(self) -> None:
        self.acct: list[int] = []
        self.val: list[float] = []
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, a: int, v: float) -> None:
        self.acct.append(a)
        self.val.append(v)

    def add_many(self, idx: np.ndarray, vals: np.ndarray) -> None:
        self._flush()
        self.parts.append((np.asarray(idx, dtype=np.int64), np.asarray(vals, dtype=np.float64)))

    def _flush(self) -> None:
        if self.acct:
            self.parts.append((np.array(self.acct, dtype=np.int64), np.array(self.val, dtype=np.float64)))
            self.acct, self.val = [], []

    def freeze(self) -> None:
        """Turn the pending scalar changes into arrays (compact, picklable)."""
        self._flush()
        if len(self.parts) > 1:
            self.parts = [(np.concatenate([p[0] for p in self.parts]), np.concatenate([p[1] for p in self.parts]))]

    def replay(self, cash: np.ndarray) -> None:
        self.freeze()
        for idx, vals in self.parts:
            np.add.at(cash, idx, vals)


@dataclass
class SymbolResult:
    fills: dict = field(default_factory=lambda: {k: [] for k in (
        "ts", "price", "qty", "buy", "taker", "maker", "taker_fee", "maker_fee", "liq", "taker_order",
        "maker_kind")})
    orders: dict = field(default_factory=lambda: {k: [] for k in (
        "local", "ts", "account", "buy", "type", "tif", "price", "qty", "reduce_only", "liq",
        "post_only")})
    liqs: list = field(default_factory=list)
    lev_changes: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)  # (second, oi, n_long, n_short)
    fund_deltas: list = field(default_factory=list)  # (ts_done_us, delta)
    tagged: list = field(default_factory=list)  # injected incidents: {tag, local order, account, ...}
    cash: CashLog = field(default_factory=CashLog)  # the day's wallet changes (replay them in symbol order)

    def compact(self) -> None:
        """Turn the fill and order lists into numpy arrays (FILL_DTYPES / ORDER_DTYPES; order
        type and tif as codes into TYPES / TIFS) and freeze the cash log."""
        self.fills = {k: np.array(v, dtype=FILL_DTYPES[k]) for k, v in self.fills.items()}
        o = self.orders
        t_code, f_code = {x: i for i, x in enumerate(TYPES)}, {x: i for i, x in enumerate(TIFS)}
        o["type"] = [t_code[x] for x in o["type"]]
        o["tif"] = [f_code[x] for x in o["tif"]]
        self.orders = {k: np.array(v, dtype=ORDER_DTYPES[k]) for k, v in o.items()}
        self.cash.freeze()


def max_notional_for_leverage(tiers: list[margin.Tier], lev: float) -> float:
    """Largest notional at which `lev` is still allowed by the tiers."""
    ok = [t.notional_cap for t in tiers if t.max_leverage >= lev]
    return max(ok) if ok else tiers[0].notional_cap


_CUM_P = np.cumsum(LEVERAGE_P)


def draw_leverage(u: float, tiers: list[margin.Tier], notional: float) -> float:
    """A leverage from the realistic mix (LEVERAGE_P), capped by the tier of `notional`."""
    lev = float(LEVERAGES[min(int(_CUM_P.searchsorted(u)), len(LEVERAGES) - 1)])
    return min(lev, margin.max_leverage_for_notional(tiers, notional))


def run_symbol(scale: Scale, mkt: SymbolMarket, book: SymbolBook,
               isolated: np.ndarray, is_trader: np.ndarray, members: np.ndarray, target: np.ndarray,
               mm_ids: np.ndarray, rng: np.random.Generator, inject: list | None = None,
               frozen: dict | None = None) -> SymbolResult:
    """Simulate one symbol's day; mutates `book`; returns the day's records (compacted: numpy
    arrays) with its wallet changes in `res.cash` (replay them onto the wallets in symbol order).

    `inject`: order-flow incident events of this symbol (`account_incidents.engine_events`),
    run in time order with the day's events; `frozen`: account -> µs from which its random taker
    orders are skipped (all day: 0)."""
    inst = mkt.inst
    tiers = inst.tiers
    lot, rate_liq = inst.lot, inst.liquidation_fee_rate
    size, entry, marg, lev = book.size, book.entry, book.margin, book.lev
    n = len(size)
    res = SymbolResult()
    cash_add = res.cash.add
    mark = mkt.mark
    mark_l, bid_l, ask_l = mark.tolist(), mkt.bid.tolist(), mkt.ask.tolist()
    checked = isolated & is_trader
    lp_long = np.full(n, -np.inf)
    lp_short = np.full(n, np.inf)
    locked = np.full(n, -1, dtype=np.int64)
    order_seq = [0]
    liq_seq = [0]
    heap: list = []
    hseq = [0]

    # cached lp_long.max() / lp_short.min() (None: recompute)
    ext: list = [None, None]

    def set_lp(a: int, lo: float, sh: float) -> None:
        old_l, old_s = lp_long[a], lp_short[a]
        lp_long[a], lp_short[a] = lo, sh
        ml, ms = ext
        if ml is not None:
            if lo > ml:
                ext[0] = lo
            elif lo < old_l and old_l == ml:
                ext[0] = None
        if ms is not None:
            if sh < ms:
                ext[1] = sh
            elif sh > old_s and old_s == ms:
                ext[1] = None

    def refresh_lp(a: int, now: int) -> None:
        if not checked[a] or size[a] == 0.0 or now <= locked[a]:
            set_lp(a, -np.inf, np.inf)
            return
        lp, _ = margin.isolated_liquidation_price(tiers, size[a], entry[a], marg[a])
        if size[a] > 0:
            set_lp(a, lp, np.inf)
        else:
            set_lp(a, -np.inf, lp)

    for a in np.flatnonzero(checked & (size != 0)):
        refresh_lp(int(a), -1)

    def apply(a: int, d: float, p: float) -> None:
        q0 = float(size[a])  # Python floats: the same IEEE results as numpy scalars, faster
        q1, e1, rp = step(q0, float(entry[a]), d, p)
        if isolated[a]:
            if q1 == 0.0:
                marg[a] = 0.0
            elif q0 == 0.0:
                marg[a] = abs(d) * p / lev[a]
            elif (q0 > 0) == (d > 0):
                marg[a] += abs(d) * p / lev[a]
            elif (q1 > 0) != (q0 > 0):
                marg[a] = abs(q1) * p / lev[a]
            else:
                marg[a] *= abs(q1) / abs(q0)
        size[a], entry[a] = q1, e1
        cash_add(a, rp)

    F = res.fills
    f_append = [F[k].append for k in ("ts", "price", "qty", "buy", "taker", "maker", "taker_fee",
                                      "maker_fee", "liq", "taker_order", "maker_kind")]

    def fill(ts: int, p: float, q: float, buy: bool, taker: int, maker: int, tfee: float,
             mfee: float, liq: int, t_order: int, maker_kind: int) -> None:
        for ap, v in zip(f_append, (ts, p, q, buy, taker, maker, tfee, mfee, liq, t_order, maker_kind)):
            ap(v)
        apply(taker, q if buy else -q, p)
        apply(maker, -q if buy else q, p)
        cash_add(taker, -tfee)
        cash_add(maker, -mfee)
        refresh_lp(taker, ts)

    O = res.orders

    def new_order(ts: int, a: int, buy: bool, typ: str, tif: str, price: float, qty: float,
                  ro: bool, liq: int, po: bool = False) -> int:
        o = order_seq[0]
        order_seq[0] += 1
        for k, v in (("local", o), ("ts", ts), ("account", a), ("buy", buy), ("type", typ),
                     ("tif", tif), ("price", price), ("qty", qty), ("reduce_only", ro), ("liq", liq),
                     ("post_only", po)):
            O[k].append(v)
        return o

    def book_liq(a: int, S: int, m: float, lp: float, bp: float, mmr: float, path: str, sell: bool,
                 qty: float, trig_us: int, plan: list[tuple[int, float, float, int, int, int]]) -> None:
        """Account one liquidation row from its planned fills (ts, price, qty, maker, order, kind)
        and push the fills."""
        lid = liq_seq[0]
        liq_seq[0] += 1
        notional = sum(p * q for _, p, q, *_ in plan)
        fq = sum(q for _, _, q, *_ in plan)
        beyond = [(p < bp) if sell else (p > bp) for _, p, *_ in plan]
        shortfall = sum(abs(p - bp) * q for (_, p, q, *_), b in zip(plan, beyond) if b)
        bq = sum(q for (_, _, q, *_), b in zip(plan, beyond) if b)
        e_pos = sum(abs(p - bp) * q for (_, p, q, *_), b in zip(plan, beyond) if not b)
        fee_total = max(0.0, min(notional * rate_liq, e_pos))
        fees = [fee_total * p * q / notional if notional > 0 else 0.0 for _, p, q, *_ in plan]
        fee = sum(fees)
        for (ts, p, q, mk, o, kind), f in zip(plan, fees):
            mfee = 0.0 if mk == BACKSTOP_ACCOUNT else p * q * inst.maker_fee_rate
            heapq.heappush(heap, (ts, hseq[0], (ts, p, q, not sell, a, mk, f, mfee, lid, o, kind)))
            hseq[0] += 1
        cash_add(a, shortfall)
        vwap = notional / fq if fq > 0 else math.nan
        slip = ((m - vwap) / m if sell else (vwap - m) / m) * 1e4 if fq > 0 else math.nan
        ts_done = max(ts for ts, *_ in plan)
        locked[a] = max(locked[a], ts_done)
        res.fund_deltas.append((ts_done, fee - shortfall))
        res.liqs.append({
            "local": lid, "ts_trigger": trig_us, "ts_done": ts_done, "account": a,
            "side": "sell" if sell else "buy", "qty": qty, "filled_qty": fq, "mark_price": m,
            "liquidation_price": lp, "bankruptcy_price": bp, "path": path,
            "margin_mode": "isolated", "leverage": float(lev[a]), "maintenance_margin_rate": mmr,
            "fee": fee, "insurance_fund_delta": fee - shortfall, "vwap": vwap,
            "filled_notional": notional, "slippage_bps": slip, "shortfall": shortfall,
            "beyond_bankruptcy_qty": bq})

    def liquidate(a: int, S: int) -> None:
        m = mark_l[S]
        q = float(size[a])
        sell, qty = q > 0, abs(q)
        lp, tier = margin.isolated_liquidation_price(tiers, q, entry[a], marg[a])
        bp = margin.bankruptcy_price(q, entry[a], marg[a])
        t0 = S * 1_000_000
        set_lp(a, -np.inf, np.inf)
        notional = qty * m
        if notional >= inst.incremental_notional:
            path = "incremental"
            n_chunks = int(min(8, max(2, math.ceil(notional / (inst.incremental_notional / 2)))))
        else:
            path = "auction" if rng.random() < AUCTION_P else "market"
            n_chunks = 1
        gaps = rng.integers(1_000_000, 2_000_001, n_chunks)
        times = t0 + (rng.integers(20_000, 300_000) if path != "auction"
                      else rng.integers(500_000, 3_000_001)) + np.concatenate([[0], np.cumsum(gaps[:-1])])
        times = [int(min(t, DAY_US - 5_000 + 500 * k)) for k, t in enumerate(times)]
        plan = []
        left = qty
        if path == "auction":
            price = float(tick_round(m * (1 - inst.auction_discount) if sell else m * (1 + inst.auction_discount), inst.tick))
            o = new_order(times[0], a, not sell, "liquidation", "IOC", math.nan, qty, True, liq_seq[0])
            k_mm = int(rng.integers(1, 4))
            parts = [math.floor(qty / k_mm / lot) * lot for _ in range(k_mm - 1)]
            parts = [p for p in parts if p > 0] + [qty - sum(p for p in parts if p > 0)]
            best = makers_for(not sell)
            for j, pq in enumerate(parts):
                plan.append((times[0] + j, price, pq, best[j % len(best)], o, 1))
            left = 0.0
        else:
            chunk = math.floor(qty / n_chunks / lot) * lot
            for k, t in enumerate(times):
                cq = left if k == n_chunks - 1 else min(left, chunk)
                if cq <= lot * 0.5:
                    break
                o = new_order(t, a, not sell, "liquidation", "IOC", math.nan, cq, True, liq_seq[0])
                walked = walk_book(mkt, t // 1_000_000, sell, cq, lot)
                best = makers_for(not sell)
                for j, (p, fq) in enumerate(walked):
                    plan.append((t + j, p, fq, best[j % len(best)], o, 0))
                left -= sum(fq for _, fq in walked)
        if plan:
            book_liq(a, S, m, lp, bp, tier.maintenance_margin_rate, path, sell, qty, t0, plan)
        if left > lot * 0.5 or not plan:
            tb = (max(t for t, *_ in plan) if plan else times[0]) + 50
            ob = new_order(tb, a, not sell, "liquidation", "IOC", math.nan, left, True, liq_seq[0])
            book_liq(a, S, m, lp, bp, tier.maintenance_margin_rate, "backstop", sell, left, tb - 10,
                     [(tb, bp, left, BACKSTOP_ACCOUNT, ob, 2)])

    def makers_for(taker_buy: bool) -> list[int]:
        """Market makers best placed to take the other side first (the longest MM sells to a
        buying taker): keeps each MM's inventory near the MMs' share of the net."""
        inv = size[mm_ids]
        return mm_ids[np.argsort(-inv if taker_buy else inv, kind="stable")].tolist()

    def first_cross(s0: int, s1: int) -> int | None:
        if ext[0] is None:
            ext[0] = lp_long.max()
        if ext[1] is None:
            ext[1] = lp_short.min()
        ml, ms = ext
        if ml == -np.inf and ms == np.inf:
            return None
        seg = mark[s0:s1 + 1]
        hit = np.flatnonzero((seg <= ml) | (seg >= ms))
        return s0 + int(hit[0]) if len(hit) else None

    last = [-1]

    def advance(t_us: int) -> None:
        while True:
            target = min(t_us, heap[0][0]) if heap else t_us
            s_to = min(target // 1_000_000, SECONDS - 1)
            if s_to > last[0]:
                S = first_cross(last[0] + 1, s_to)
                if S is not None:
                    last[0] = S
                    m = mark_l[S]
                    for a in np.flatnonzero((lp_long >= m) | (lp_short <= m)):
                        liquidate(int(a), S)
                    continue
                last[0] = s_to
            if heap and heap[0][0] < t_us:
                ev = heapq.heappop(heap)[2]
                fill(*ev)
                continue
            return

    # static events: funding (kind 0), snapshots (1), taker arrivals (2)
    lam = scale.trades_per_day * inst.popularity / SECONDS * (mkt.sigma / inst.sigma_s)
    counts = rng.poisson(lam)
    n_arr = int(counts.sum())
    arr_ts = np.repeat(np.arange(SECONDS, dtype=np.int64) * 1_000_000, counts) + rng.integers(0, 1_000_000, n_arr)
    arr_ts.sort()
    U = rng.random((n_arr, 9)).tolist()
    mem = members
    n_mem = len(mem)
    fund = {sec * 1_000_000: (rate, m) for sec, rate, _, m, _ in mkt.funding}
    ev_ts = np.concatenate([np.array(sorted(fund), dtype=np.int64),
                            np.arange(0, SECONDS, 300, dtype=np.int64) * 1_000_000, arr_ts])
    ev_kind = np.concatenate([np.zeros(len(fund), np.int64), np.ones(SECONDS // 300, np.int64),
                              np.full(n_arr, 2, np.int64)])
    ev_idx = np.concatenate([np.zeros(len(fund) + SECONDS // 300, np.int64), np.arange(n_arr)])
    inj = sorted(inject or [], key=lambda e: e["t"])
    if inj:
        ev_ts = np.concatenate([ev_ts, np.array([e["t"] for e in inj], dtype=np.int64)])
        ev_kind = np.concatenate([ev_kind, np.full(len(inj), 3, np.int64)])
        ev_idx = np.concatenate([ev_idx, np.arange(len(inj), dtype=np.int64)])
    frozen = frozen or {}
    order = np.lexsort((ev_kind, ev_ts))
    max_notional = {float(L): max_notional_for_leverage(tiers, float(L)) for L in np.unique(np.concatenate([LEVERAGES, [2.0, 3.0]]))}
    mm_n = len(mm_ids)
    traders_mask = is_trader
    bias_l = None if mkt.buy_bias is None else mkt.buy_bias.tolist()
    tmult_l = None if mkt.target_mult is None else mkt.target_mult.tolist()
    crowd = ((np.arange(n) * 0.6180339887498949) % 1.0) < mkt.crowd_share
    for e in order.tolist():
        t = int(ev_ts[e])
        advance(t)
        kind = ev_kind[e]
        if kind == 0:
            r, m = fund[t]
            nz = np.flatnonzero(size != 0)
            res.cash.add_many(nz, -(size[nz] * m * r))
            continue
        if kind == 1:
            s = t // 1_000_000
            res.snapshots.append((s, float(size[size > 0].sum()), int(((size > 0) & traders_mask).sum()),
                                  int(((size < 0) & traders_mask).sum())))
            continue
        if kind == 3:
            from venue_risk.simulate.account_incidents import run_injected
            run_injected(inj[ev_idx[e]], t, ENGINE_API(locals_=dict(
                size=size, lev=lev, locked=locked, mem=mem, isolated=isolated, is_trader=is_trader,
                target=target, mkt=mkt, tiers=tiers, inst=inst, lot=lot, res=res, fill=fill,
                new_order=new_order, makers_for=makers_for, bid=bid_l, ask=ask_l)))
            continue
        u = U[ev_idx[e]]
        a = int(mem[min(int(u[0] * n_mem), n_mem - 1)])
        if t <= locked[a] or (frozen and t >= frozen.get(a, DAY_US)):
            continue
        s = t // 1_000_000
        x = float(size[a])
        price_ref = mkt.mid[s]
        nq = target[a] / price_ref
        if tmult_l is not None and crowd[a]:
            nq *= tmult_l[s]
        if bias_l is None or not crowd[a]:
            buy = u[1] < min(0.95, max(0.05, 0.5 - 0.35 * x / nq))
        else:
            buy = u[1] < min(0.95, max(0.05, 0.5 + bias_l[s] - 0.35 * x / nq))
        qty = max(lot, math.floor(nq * (0.1 + 0.4 * u[2]) / lot) * lot)
        if x == 0.0 and isolated[a] and u[3] < 0.1:
            new_lev = draw_leverage(u[4], tiers, 1.5 * target[a])
            if new_lev != lev[a]:
                res.lev_changes.append((max(0, t - 1000), a, float(lev[a]), new_lev))
                lev[a] = new_lev
        d = qty if buy else -qty
        if isolated[a] and abs(x + d) * price_ref > max_notional.get(float(lev[a]), math.inf):
            room = max_notional.get(float(lev[a]), math.inf) / price_ref - abs(x)
            qty = math.floor(max(0.0, room) / lot) * lot
            if qty < lot:
                continue
            d = qty if buy else -qty
        price = ask_l[s] if buy else bid_l[s]
        reducing = x != 0.0 and (x > 0) != buy and qty <= abs(x)
        is_limit = u[5] >= 0.7
        o = new_order(t, a, buy, "limit" if is_limit else "market", "IOC",
                      float(tick_round(price + (5 if buy else -5) * inst.tick, inst.tick)) if is_limit else math.nan,
                      qty, reducing and u[6] < 0.3, -1, False)
        if u[7] < 0.3 and qty >= 2 * lot:
            q1 = math.floor(qty * 0.6 / lot) * lot
            parts = [q1, qty - q1]
        else:
            parts = [qty]
        best = makers_for(buy)
        for j, pq in enumerate(parts):
            mk = best[j % mm_n]
            fill(t + j, price, pq, buy, a, mk, price * pq * inst.taker_fee_rate,
                 price * pq * inst.maker_fee_rate, -1, o, 0)
    advance(DAY_US)
    res.compact()
    return res
