"""Orders, order events and API traffic around the engine's fills.

- Every taker order (market or limit IOC, and liquidation IOC orders) gets `new`, then one
  `partial_fill` / `fill` per fill with cum_filled_qty, and `expire` if an IOC left a remainder.
- Every fill has its own maker order: post-only GTX quotes of market makers resting 0.2-30 s (70%
  fully filled; 30% larger, partially filled then cancelled), auction bids (limit GTC) and
  backstop orders (limit GTC).
- Heavy quote cancels: 2-5 cancelled post-only quotes (new then cancel 0.05-5 s later) per filled
  maker quote.
- API: a trading key (read, trade; IP allowlist; cancel-on-disconnect) for market makers and ~60%
  of traders, a read-only key for some; taker orders of key holders go through their key (80%,
  the rest via UI: api_key_id null); market-maker order actions are batched 10 to a request
  (`/fapi/v1/batchOrders`); reads (~30 a key a day, ~2000 for market makers); ~0.6% extra order
  requests rejected with 429, 0.3% with 400, 0.05% with 503.

Memory layout (so that a `large` day of ~50M orders and ~100M events fits in a few GB): the
day's random draws are made once for the whole day (in a fixed order: the output does not
depend on the chunking), kept as compact numpy arrays per order source (`Orders`: taker orders,
one maker order per fill, cancelled quotes; "concat index" = position in taker | maker | quote).
Order ids (rank in (new_ts, sym, rank, local)), order events and trades are then produced one
time window at a time (`Orders.assign_ids`, `Orders.events`), and the API requests from the
collected batch events (`build_api`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from venue_risk.simulate.accounts import Accounts
from venue_risk.simulate.config import BACKSTOP_ACCOUNT, DAY_US, Scale
from venue_risk.simulate.engine import TIFS, TYPES

EVENT_RANK = {"new": 0, "partial_fill": 1, "fill": 2, "cancel": 3, "expire": 4}
EVENTS = tuple(EVENT_RANK)  # event names by rank
READ_ENDPOINTS = ["/fapi/v2/account", "/fapi/v2/positionRisk", "/fapi/v1/openOrders"]
# request codes in lexicographic order of their strings (sorting by code = sorting by string)
ENDPOINTS = ("/fapi/v1/batchOrders", "/fapi/v1/openOrders", "/fapi/v1/order", "/fapi/v2/account",
             "/fapi/v2/positionRisk")
METHODS = ("DELETE", "GET", "POST")
SCOPES = ("read", "trade")
_LIMIT, _GTX, _GTC = TYPES.index("limit"), TIFS.index("GTX"), TIFS.index("GTC")


def trade_key(a: np.ndarray) -> np.ndarray:
    return a * 10 + 1


def chunk_edges(n_chunks: int) -> np.ndarray:
    """Inner boundaries (µs of the day) of `n_chunks` equal time windows; window i holds the
    timestamps ts with edges[i - 1] <= ts < edges[i] (the first and last are open-ended)."""
    return np.array([i * DAY_US // n_chunks for i in range(1, n_chunks)], dtype=np.int64)


@dataclass
class Orders:
    """The day's orders as compact arrays, by source (taker orders in (sym, local) order; one
    maker order per fill in trade-id order; cancelled quotes), and their order ids."""

    fills: dict  # the day's fills (numpy arrays sorted by trade_id)
    t: dict  # taker orders: sym, local, ts, account, buy, type, tif, price, qty, reduce_only, liq, post_only, key
    m: dict  # maker orders (per fill): new_ts, qty, cancel_ts, unfilled (fills whose quote was cancelled first)
    q: dict  # quotes: sym, new_ts, buy, price, qty, mm (index into mm_ids), cancel_ts
    t_row: np.ndarray  # per fill: its taker order's row in `t`
    has_key: np.ndarray  # per account: has a trading key
    mm_ids: np.ndarray  # market-maker accounts (quotes hold an index into it)
    n_tk: int = 0
    nf: int = 0
    nq: int = 0
    oid: np.ndarray | None = None  # order id per concat index
    tf_cum: np.ndarray | None = None  # per fill: the taker order's cum filled qty after it
    t_done: np.ndarray | None = None  # per taker order: filled qty
    t_exp: np.ndarray | None = None  # per taker order: expire ts (-1: none)
    mm_carry: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.n_tk + self.nf + self.nq

    def assign_ids(self, edges: np.ndarray, next_order_id: int) -> None:
        """Order ids: rank in (new_ts, sym, rank, local) + next_order_id, window by window."""
        t_new, m_new, q_new = self.t["ts"], self.m["new_ts"], self.q["new_ts"]
        self.oid = np.empty(self.n, dtype=np.int64)
        cw = [np.searchsorted(edges, x, side="right").astype(np.int16) for x in (t_new, m_new, q_new)]
        split = [np.argsort(c, kind="stable") for c in cw]
        counts = [np.bincount(c, minlength=len(edges) + 1) for c in cw]
        del cw
        starts = [np.concatenate([[0], np.cumsum(c)]) for c in counts]
        f_sym = self.fills["sym"]
        nxt = next_order_id
        for w in range(len(edges) + 1):
            ti, mi, qi = (split[j][starts[j][w]:starts[j][w + 1]] for j in range(3))
            new_ts = np.concatenate([t_new[ti], m_new[mi], q_new[qi]])
            sym = np.concatenate([self.t["sym"][ti], f_sym[mi], self.q["sym"][qi]])
            rank = np.concatenate([np.zeros(len(ti), np.int8), np.ones(len(mi), np.int8), np.full(len(qi), 2, np.int8)])
            local = np.concatenate([self.t["local"][ti], mi, qi])
            ci = np.concatenate([ti, self.n_tk + mi, self.n_tk + self.nf + qi])
            order = np.lexsort((local, rank, sym, new_ts))
            self.oid[ci[order]] = nxt + np.arange(len(order), dtype=np.int64)
            nxt += len(order)
        # taker fills: cum filled qty per order (in trade-id order), expiry of IOC remainders
        self.tf_cum = group_cumsum(self.t_row, self.fills["qty"])
        done = np.full(self.n_tk, -np.inf)
        np.maximum.at(done, self.t_row, self.tf_cum)
        last = np.full(self.n_tk, -1, dtype=np.int64)
        np.maximum.at(last, self.t_row, self.fills["ts"])
        done = np.where(done == -np.inf, 0.0, done)
        self.t_done = done
        self.t_exp = np.where(done < self.t["qty"] * (1 - 1e-9), np.where(last >= 0, last, self.t["ts"]) + 1, -1)

    def attrs(self, ci: np.ndarray) -> dict:
        """The order columns (sym, account, key (-1: none), buy, type, tif, price, qty,
        reduce_only, post_only) of the orders at concat indices `ci`."""
        t, m, q, f = self.t, self.m, self.q, self.fills
        src = np.where(ci < self.n_tk, 0, np.where(ci < self.n_tk + self.nf, 1, 2))
        it, im, iq = ci[src == 0], ci[src == 1] - self.n_tk, ci[src == 2] - self.n_tk - self.nf
        q_acct = self.mm_ids[q["mm"][iq]]
        f_maker = f["maker"][im]
        kind = f["maker_kind"][im]
        has_key = self.has_key
        parts = {
            "sym": (t["sym"][it], f["sym"][im], q["sym"][iq]),
            "account": (t["account"][it], f_maker, q_acct),
            "key": (t["key"][it], np.where(has_key[f_maker] & (f_maker != BACKSTOP_ACCOUNT), trade_key(f_maker), -1),
                    np.where(has_key[q_acct], trade_key(q_acct), -1)),
            "buy": (t["buy"][it], ~f["buy"][im], q["buy"][iq]),
            "type": (t["type"][it], np.full(len(im), _LIMIT, np.int8), np.full(len(iq), _LIMIT, np.int8)),
            "tif": (t["tif"][it], np.where(kind == 0, _GTX, _GTC).astype(np.int8), np.full(len(iq), _GTX, np.int8)),
            "price": (t["price"][it], f["price"][im], q["price"][iq]),
            "qty": (t["qty"][it], m["qty"][im], q["qty"][iq]),
            "reduce_only": (t["reduce_only"][it], np.zeros(len(im), bool), np.zeros(len(iq), bool)),
            "post_only": (t["post_only"][it], kind == 0, np.ones(len(iq), bool)),
        }
        out = {}
        for name, (a, b, c) in parts.items():
            col = np.empty(len(ci), dtype=np.result_type(a.dtype, b.dtype, c.dtype))
            col[src == 0], col[src == 1], col[src == 2] = a, b, c
            out[name] = col
        return out

    def window_events(self, lo: int, hi: int) -> dict:
        """The order events with lo <= ts < hi in exchange order (ts, order_id, event rank):
        ts, order_id, er (event rank), cum and the order columns (`attrs`)."""
        f = self.fills
        n_tk, nf = self.n_tk, self.nf
        ts_l, ci_l, er_l, cum_l = [], [], [], []

        def add(ts: np.ndarray, ci: np.ndarray, er: np.ndarray | int, cum: np.ndarray | float) -> None:
            ts_l.append(ts)
            ci_l.append(ci)
            er_l.append(np.broadcast_to(np.asarray(er, dtype=np.int8), ts.shape))
            cum_l.append(np.broadcast_to(np.asarray(cum, dtype=np.float64), ts.shape))

        def within(x: np.ndarray) -> np.ndarray:  # (-1: none)
            return np.flatnonzero((x >= max(lo, 0)) & (x < hi))

        for j, x in enumerate((self.t["ts"], self.m["new_ts"], self.q["new_ts"])):  # new
            i = within(x)
            add(x[i], i + (0, n_tk, n_tk + nf)[j], 0, 0.0)
        a, b = np.searchsorted(f["ts"], [lo, hi])  # fills (sorted by ts)
        fi = np.arange(a, b)
        fts, fq = f["ts"][a:b], f["qty"][a:b]
        tr = self.t_row[a:b]
        cum = self.tf_cum[a:b]
        add(fts, tr, np.where(cum >= self.t["qty"][tr] * (1 - 1e-9), 2, 1), cum)
        add(fts, n_tk + fi, np.where(fq >= self.m["qty"][a:b] * (1 - 1e-9), 2, 1), fq)
        i = within(self.m["cancel_ts"])  # cancels (cancel_ts -1: none)
        filled = f["qty"][i].copy()  # a maker order's filled qty at its cancel: its fill's (0: filled after)
        filled[np.isin(i, self.m["unfilled"])] = 0.0
        add(self.m["cancel_ts"][i], n_tk + i, 3, filled)
        i = within(self.q["cancel_ts"])
        add(self.q["cancel_ts"][i], n_tk + nf + i, 3, 0.0)
        i = within(self.t_exp)
        add(self.t_exp[i], i, 4, self.t_done[i])
        ts, ci, er, cum = (np.concatenate(x) for x in (ts_l, ci_l, er_l, cum_l))
        oid = self.oid[ci]
        order = np.lexsort((er, oid, ts))
        ts, ci, er, cum, oid = ts[order], ci[order], er[order], cum[order], oid[order]
        return {"ts": ts, "order_id": oid, "er": er, "cum": cum, **self.attrs(ci)}

    def batch_rows(self, ev: dict) -> dict:
        """Every 10th market-maker order action (new / cancel of a post-only order via a key)
        per key and action, counted over the day in time order (call with consecutive windows)."""
        sel = np.flatnonzero((ev["key"] >= 0) & ((ev["er"] == 0) | (ev["er"] == 3)) & ev["post_only"])
        key, act = ev["key"][sel], (ev["er"][sel] == 0).astype(np.int64)  # 0 cancel, 1 new
        g = key * 2 + act
        order = np.argsort(g, kind="stable")
        gs = g[order]
        first = np.concatenate([[True], gs[1:] != gs[:-1]]) if len(gs) else np.zeros(0, bool)
        start = np.maximum.accumulate(np.where(first, np.arange(len(gs)), 0)) if len(gs) else np.zeros(0, np.int64)
        pos = np.arange(len(gs)) - start
        carry = np.array([self.mm_carry.get(int(x), 0) for x in gs[first]], dtype=np.int64)
        pos = pos + np.repeat(carry, np.diff(np.concatenate([np.flatnonzero(first), [len(gs)]])))
        for x, c in zip(gs[first].tolist(), np.diff(np.concatenate([np.flatnonzero(first), [len(gs)]])).tolist()):
            self.mm_carry[x] = self.mm_carry.get(x, 0) + c
        keep = sel[order[pos % 10 == 0]]
        return {"ts": ev["ts"][keep], "key": ev["key"][keep], "account": ev["account"][keep],
                "new": ev["er"][keep] == 0}


def group_cumsum(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Running sum of x within each group g, in row order, added one value at a time (the same
    floats as a sequential cum_sum per group; groups are small: one level per rank in group)."""
    order = np.argsort(g, kind="stable")
    gs = g[order]
    first = np.ones(len(gs), dtype=bool)
    first[1:] = gs[1:] != gs[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(gs)), 0))
    rank = np.arange(len(gs)) - start
    del start, gs, first
    xs = x[order]
    cum = xs.copy()
    by_rank = np.argsort(rank, kind="stable")
    counts = np.bincount(rank) if len(rank) else np.zeros(1, np.int64)
    pos = np.concatenate([[0], np.cumsum(counts)])
    for r in range(1, len(counts)):
        i = by_rank[pos[r]:pos[r + 1]]
        cum[i] = cum[i - 1] + xs[i]
    out = np.empty_like(cum)
    out[order] = cum
    return out


def build_orders(scale: Scale, fills: dict, takers: dict, markets: list, acc: Accounts,
                 rng: np.random.Generator, flags: dict | None = None, notes: dict | None = None) -> Orders:
    """fills: numpy arrays sym, trade_id, ts, price, qty, buy, maker, maker_kind, t_row (taker
    order row) sorted by trade_id; takers: numpy arrays sym, local, ts, account, buy, type, tif,
    price, qty, reduce_only, liq, post_only in (sym, local) order. Draws the day's maker orders,
    cancelled quotes and key use. `flags`: the day plan's incident flags (fill_after_cancel,
    cancel_burst); what they did is written to `notes` (account_incidents.resolve reads it)."""
    flags = flags or {}
    notes = {} if notes is None else notes
    f_sym = fills["sym"]
    nf = len(f_sym)
    lots = np.array([m.inst.lot for m in markets])
    ticks = np.array([m.inst.tick for m in markets])
    f_ts = fills["ts"]
    f_qty = fills["qty"]
    f_kind = fills["maker_kind"]
    f_maker = fills["maker"]
    # maker orders, one per fill
    back = np.where(f_kind == 0, rng.integers(200_000, 30_000_000, nf),
                    np.where(f_kind == 1, rng.integers(50_000, 400_000, nf), 5))
    m_new = np.maximum(f_ts - back, 0)
    del back
    partial = (f_kind == 0) & (rng.random(nf) < 0.3)
    f_lot = lots[f_sym]
    m_qty = np.where(partial, np.ceil(f_qty * rng.uniform(1.5, 3.0, nf) / f_lot) * f_lot, f_qty)
    m_qty = np.where(partial, np.round(m_qty, 10), m_qty)
    del f_lot
    m_cancel = np.where(partial, np.minimum(f_ts + rng.integers(100_000, 10_000_000, nf), DAY_US - 1), -1)
    m_filled = f_qty.copy()
    # incident: a quote filled after its cancel event (the cancel moved before the fill)
    taken = set()
    f_tid = fills["trade_id"] if "trade_id" in fills else np.arange(nf) + fills["first_trade_id"]
    for spec in flags.get("fill_after_cancel", []):
        cand = np.flatnonzero((f_sym == spec["sym"]) & (f_kind == 0) & (f_ts >= spec["t"]))
        cand = [i for i in cand.tolist() if i not in taken]
        if not cand:
            raise ValueError(f"fill_after_cancel: no maker fill after {spec['t']} us")
        i = cand[0]
        taken.add(i)
        partial[i] = True
        m_qty[i] = np.round(np.ceil(2.0 * f_qty[i] / lots[f_sym[i]]) * lots[f_sym[i]], 10)
        m_cancel[i] = max(int(m_new[i]) + 1, int(f_ts[i]) - spec["gap_us"])
        m_filled[i] = 0.0
        notes.setdefault("fill_after_cancel", {})[spec["tag"]] = {
            "sym": int(f_sym[i]), "local": i, "account": int(f_maker[i]), "trade_id": int(f_tid[i]),
            "cancel_ts": int(m_cancel[i]), "fill_ts": int(f_ts[i])}
    m = {"new_ts": m_new, "qty": m_qty, "cancel_ts": m_cancel,
         "unfilled": np.flatnonzero(m_filled != f_qty)}  # (keys: from the account, in `attrs`)
    del m_filled
    # cancelled quotes
    n_filled_quotes = int((f_kind == 0).sum())
    lo, hi = scale.cancels_per_fill
    reps = rng.integers(lo, hi + 1, n_filled_quotes)
    src = np.repeat(np.flatnonzero(f_kind == 0), reps)
    del reps
    nq = len(src)
    q_sym = f_sym[src].astype(np.int8 if len(markets) < 128 else np.int64)
    q_new = rng.integers(0, DAY_US - 6_000_000, nq)
    q_buy = rng.random(nq) < 0.5
    bids = np.stack([mk.bid for mk in markets])
    asks = np.stack([mk.ask for mk in markets])
    off = rng.integers(0, 20, nq)
    q_px = np.empty(nq)
    step = 1 << 22
    for a in range(0, nq, step):  # in blocks: the same values, less temporary memory
        s, sec, b = q_sym[a:a + step], q_new[a:a + step] // 1_000_000, q_buy[a:a + step]
        o = off[a:a + step] * ticks[s]
        q_px[a:a + step] = np.round(np.where(b, bids[s, sec] - o, asks[s, sec] + o), 8)
    del off
    u = rng.uniform(0.5, 2.0, nq)
    q_qty = np.empty(nq)
    for a in range(0, nq, step):
        s = q_sym[a:a + step]
        q_qty[a:a + step] = np.round(np.maximum(np.floor(f_qty[src[a:a + step]] * u[a:a + step] / lots[s]) * lots[s],
                                                lots[s]), 10)
    del u, src
    mm_dtype = np.int8 if len(acc.mm_ids) < 128 else np.int64
    q_mm = rng.integers(0, len(acc.mm_ids), nq).astype(mm_dtype)  # account = acc.mm_ids[q_mm]
    q_cancel = q_new + rng.integers(50_000, 5_000_000, nq)
    # incident: a cancel burst (resting quotes placed before the window, all cancelled inside it)
    for spec in flags.get("cancel_burst", []):
        r2 = np.random.default_rng(spec["seed"])
        k = spec["sym"]
        base = (int((q_sym == k).sum()) + int((partial & (f_sym == k)).sum())) / 1440.0
        mins = (spec["t1"] - spec["t0"]) / 60e6
        n_x = max(20, int(round(spec["x"] * base * mins)))
        who = acc.mm_ids[r2.permutation(len(acc.mm_ids))[:max(1, min(spec["n_accounts"], len(acc.mm_ids)))]]
        b_cancel = r2.integers(spec["t0"], max(spec["t0"] + 1, spec["t1"]), n_x)
        b_new = np.maximum(spec["t0"] - r2.integers(1, max(2, spec["rest_us"]), n_x), 0)
        b_sec = b_new // 1_000_000
        b_buy = r2.random(n_x) < 0.5
        b_off = r2.integers(0, 20, n_x) * ticks[k]
        b_px = np.round(np.where(b_buy, markets[k].bid[b_sec] - b_off, markets[k].ask[b_sec] + b_off), 8)
        ref = f_qty[f_sym == k]
        b_q = np.round(np.maximum(np.floor((np.median(ref) if len(ref) else lots[k]) * r2.uniform(0.5, 2.0, n_x)
                                           / lots[k]) * lots[k], lots[k]), 10)
        q_sym = np.concatenate([q_sym, np.full(n_x, k, dtype=q_sym.dtype)])
        q_new = np.concatenate([q_new, b_new])
        q_buy = np.concatenate([q_buy, b_buy])
        q_px = np.concatenate([q_px, b_px])
        q_qty = np.concatenate([q_qty, b_q])
        q_mm = np.concatenate([q_mm, np.searchsorted(acc.mm_ids, who[r2.integers(0, len(who), n_x)]).astype(mm_dtype)])
        q_cancel = np.concatenate([q_cancel, b_cancel])
        nq += n_x
        notes.setdefault("cancel_burst", {})[spec["tag"]] = {
            "extra": int(n_x), "base_per_min": base, "accounts": sorted(int(a) for a in set(who.tolist()))}
    q = {"sym": q_sym, "new_ts": q_new, "buy": q_buy, "price": q_px, "qty": q_qty, "mm": q_mm,
         "cancel_ts": q_cancel}
    # taker orders
    t_acct = takers["account"]
    is_liq = takers["type"] == TYPES.index("liquidation")
    via_key = acc.has_key[t_acct] & ~is_liq & (rng.random(len(t_acct)) < 0.8)
    t = dict(takers, key=np.where(via_key, trade_key(t_acct), -1))
    t.pop("liq", None)
    return Orders(fills, t, m, q, fills["t_row"], acc.has_key, acc.mm_ids, len(t_acct), nf, nq)


def build_api(acc: Accounts, orders: Orders, batch: dict, genesis: dt.date, day: dt.date, day_us0: int,
              last_used: dict, rng: np.random.Generator, flags: dict | None = None, notes: dict | None = None
              ) -> tuple[pl.DataFrame, dict, dict, dict]:
    """Returns (api_keys, api_requests as numpy columns sorted in exchange order with ts in µs of
    the day and endpoint / method / scope_used as codes into ENDPOINTS / METHODS / SCOPES,
    `ip_of` (key id -> source IP), updated last_used). `batch`: the day's `Orders.batch_rows`
    (concatenated). `flags`["keys"]: incident keys (over-scoped, automation without kill switch)
    added to the day's snapshot with their requests; what was added goes to `notes["keys"]`."""
    flags = flags or {}
    notes = {} if notes is None else notes
    # taker orders placed via a key: one request each (in order id order)
    t = orders.t
    tsel = np.flatnonzero(t["key"] >= 0)
    tsel = tsel[np.argsort(orders.oid[tsel], kind="stable")]
    lat_t = rng.lognormal(np.log(40.0), 0.5, len(tsel))
    req_t = {"ts": np.maximum(t["ts"][tsel] - (lat_t * 1000).astype(np.int64), 0),
             "key_id": t["key"][tsel].astype(np.int64), "account": t["account"][tsel].astype(np.int64),
             "endpoint": np.full(len(tsel), ENDPOINTS.index("/fapi/v1/order"), np.int8),
             "method": np.full(len(tsel), METHODS.index("POST"), np.int8),
             "status": np.full(len(tsel), 200, np.int64), "latency_ms": np.round(lat_t, 3),
             "scope_used": np.full(len(tsel), SCOPES.index("trade"), np.int8)}
    del lat_t, tsel
    # market-maker actions batched 10 to a request (sorted by key, action (cancel < new), ts)
    bo = np.lexsort((batch["ts"], batch["new"], batch["key"]))
    mm = {k: v[bo] for k, v in batch.items()}
    lat_m = rng.lognormal(np.log(12.0), 0.4, len(bo))
    req_m = {"ts": np.maximum(mm["ts"] - (lat_m * 1000).astype(np.int64), 0),
             "key_id": mm["key"].astype(np.int64), "account": mm["account"].astype(np.int64),
             "endpoint": np.full(len(bo), ENDPOINTS.index("/fapi/v1/batchOrders"), np.int8),
             "method": np.where(mm["new"], METHODS.index("POST"), METHODS.index("DELETE")).astype(np.int8),
             "status": np.full(len(bo), 200, np.int64), "latency_ms": np.round(lat_m, 3),
             "scope_used": np.full(len(bo), SCOPES.index("trade"), np.int8)}
    del mm, lat_m, bo
    # reads
    keys = api_keys_frame(acc, genesis)
    k_id = keys["key_id"].to_numpy()
    k_acct = keys["account"].to_numpy()
    n_reads = rng.poisson(np.where(acc.is_mm[k_acct], 2000, 30))
    r_key = np.repeat(k_id, n_reads)
    lat_r = rng.lognormal(np.log(25.0), 0.5, len(r_key))
    r_ts = rng.integers(0, DAY_US, len(r_key))
    read_codes = np.array([ENDPOINTS.index(e) for e in READ_ENDPOINTS], dtype=np.int8)
    req_r = {"ts": r_ts, "key_id": r_key, "account": np.repeat(k_acct, n_reads),
             "endpoint": read_codes[rng.integers(0, 3, len(r_key))],
             "method": np.full(len(r_key), METHODS.index("GET"), np.int8),
             "status": np.full(len(r_key), 200, np.int64), "latency_ms": np.round(lat_r, 3),
             "scope_used": np.full(len(r_key), SCOPES.index("read"), np.int8)}
    keys, req_x, ip_x = _incident_keys(acc, keys, flags.get("keys", []), day_us0, notes)
    cols = list(req_t)
    orders_req = {c: np.concatenate([req_t[c], req_m[c]]) for c in cols}
    del req_t, req_m
    # rejected extra requests
    n = len(orders_req["ts"])
    pick = rng.random(n)
    e = np.flatnonzero(pick < 0.0095)
    err = {c: orders_req[c][e] for c in cols}
    err["status"] = np.where(pick[e] < 0.006, 429, np.where(pick[e] < 0.009, 400, 503)).astype(np.int64)
    err["ts"] = np.minimum(err["ts"] + 1_000, DAY_US - 1)
    parts = [orders_req, err, req_r] + ([req_x] if req_x is not None else [])
    req = {}
    for c in cols:
        req[c] = np.concatenate([p[c] for p in parts])
        for p in parts:
            del p[c]
    order = np.lexsort((req["status"], req["method"], req["endpoint"], req["key_id"], req["ts"]))
    for c in cols:
        req[c] = req[c][order]
    del order
    ip_of = {}
    for a, kid in zip(k_acct.tolist(), k_id.tolist()):
        ips = acc.allow_ips[a]
        ip_of[kid] = ips[0] if kid % 10 == 1 else f"198.51.100.{a % 250 + 1}"
    ip_of.update(ip_x)
    last_ts = {}
    if len(req["ts"]):
        ko = np.argsort(req["key_id"], kind="stable")
        kk = req["key_id"][ko]
        ends = np.flatnonzero(np.concatenate([kk[1:] != kk[:-1], [True]]))
        starts = np.concatenate([[0], ends[:-1] + 1])
        mx = np.maximum.reduceat(req["ts"][ko], starts)
        last_ts = dict(zip(kk[ends].tolist(), mx.tolist()))
    last_used = dict(last_used)
    for kid, ts in last_ts.items():
        last_used[str(kid)] = int(day_us0 + ts)
    keys = keys.with_columns(last_used_at=pl.col("key_id").cast(pl.String)
                             .replace_strict(last_used, default=None, return_dtype=pl.Int64))
    return keys, req, ip_of, last_used


def _incident_keys(acc: Accounts, keys: pl.DataFrame, specs: list, day_us0: int, notes: dict
                   ) -> tuple[pl.DataFrame, dict | None, dict]:
    """Add the day's incident keys (over-scoped: account x 10 + 3; automation without kill
    switch: account x 10 + 4) and their read requests (numpy columns as in `build_api`).
    Returns (keys, requests or None, ip map)."""
    if not specs:
        return keys, None, {}
    traders = np.flatnonzero(acc.is_trader)
    rows, reqs, ips = [], [], {}
    used: set = set()
    read_codes = np.array([ENDPOINTS.index(e) for e in READ_ENDPOINTS], dtype=np.int8)
    for spec in specs:
        r2 = np.random.default_rng(spec["seed"])
        suffix = 3 if spec["type"] == "over" else 4
        j = min(int(spec["u"] * len(traders)), len(traders) - 1)
        while int(traders[j]) * 10 + suffix in used:
            j = (j + 1) % len(traders)
        a = int(traders[j])
        kid = a * 10 + suffix
        used.add(kid)
        t0, t1 = spec["t0"] * 1_000_000, spec["t1"] * 1_000_000
        created = day_us0 + t0 - 1_000_000
        if spec["type"] == "over":
            scopes = ["read", "trade"] + (["withdraw"] if spec["withdraw"] else [])
            allow = [] if spec["no_allowlist"] else list(acc.allow_ips[a])
            cod = True
            ips[kid] = f"203.0.113.{a % 250 + 1}"
            n = 20
        else:
            scopes, allow, cod = ["read", "trade"], list(acc.allow_ips[a]), False
            ips[kid] = acc.allow_ips[a][0]
            n = int(round(spec["rpm"] * (t1 - t0) / 60e6))
        rows.append((kid, a, scopes, allow, created, created + 90 * 86_400_000_000, cod))
        ts = np.sort(r2.integers(t0, max(t0 + 1, t1), n))
        endpoint = read_codes[r2.integers(0, 3, n)]
        reqs.append({"ts": ts, "key_id": np.full(n, kid, np.int64), "account": np.full(n, a, np.int64),
                     "endpoint": endpoint, "method": np.full(n, METHODS.index("GET"), np.int8),
                     "status": np.full(n, 200, np.int64),
                     "latency_ms": np.round(r2.lognormal(np.log(25.0), 0.5, n), 3),
                     "scope_used": np.full(n, SCOPES.index("read"), np.int8)})
        notes.setdefault("keys", {})[spec["tag"]] = {
            "key_id": kid, "account": a, "scopes": scopes, "ip_allowlist": allow, "cancel_on_disconnect": cod,
            "requests": n, "rpm": (n / ((t1 - t0) / 60e6)) if t1 > t0 else 0.0}
    extra = pl.DataFrame(rows, schema={k: v for k, v in keys.schema.items() if k != "status"},
                         orient="row").with_columns(status=pl.lit("active"))
    req = {c: np.concatenate([r[c] for r in reqs]) for c in reqs[0]}
    return pl.concat([keys, extra]).sort("key_id"), req, ips


def api_keys_frame(acc: Accounts, genesis: dt.date) -> pl.DataFrame:
    """The key set: trading key (a*10+1: read, trade; allowlist; cancel_on_disconnect) and
    read-only key (a*10+2). created_at/expires_at in µs since the epoch."""
    g_us = int(dt.datetime.combine(genesis, dt.time(0), tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    rows = []
    for a in range(acc.n):
        if acc.has_key[a]:
            c = g_us - int(acc.key_created_days[a, 0] * 86_400) * 1_000_000
            rows.append((a * 10 + 1, a, ["read", "trade"], list(acc.allow_ips[a]), c, c + 1095 * 86_400_000_000, True))
        if acc.read_key[a]:
            c = g_us - int(acc.key_created_days[a, 1] * 86_400) * 1_000_000
            rows.append((a * 10 + 2, a, ["read"], [], c, c + 1095 * 86_400_000_000, False))
    return pl.DataFrame(rows, schema={"key_id": pl.Int64, "account": pl.Int64, "scopes": pl.List(pl.String),
                                      "ip_allowlist": pl.List(pl.String), "created_at": pl.Int64,
                                      "expires_at": pl.Int64, "cancel_on_disconnect": pl.Boolean},
                        orient="row").with_columns(status=pl.lit("active"))
