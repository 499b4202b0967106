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
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from venue_risk.simulate.config import BACKSTOP_ACCOUNT, DAY_US, Scale
from venue_risk.simulate.accounts import Accounts

EVENT_RANK = {"new": 0, "partial_fill": 1, "fill": 2, "cancel": 3, "expire": 4}
READ_ENDPOINTS = ["/fapi/v2/account", "/fapi/v2/positionRisk", "/fapi/v1/openOrders"]


def trade_key(a: np.ndarray) -> np.ndarray:
    return a * 10 + 1


def build_orders(scale: Scale, fills: pl.DataFrame, takers: pl.DataFrame, markets: list,
                 acc: Accounts, rng: np.random.Generator, next_order_id: int,
                 flags: dict | None = None, notes: dict | None = None
                 ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """fills: sym, trade_id, ts, price, qty, buy, maker, maker_kind, taker_local (sorted by
    trade_id); takers: sym, local, ts, account, buy, type, tif, price, qty, reduce_only, liq,
    post_only. Returns (orders, order_events, fills with taker_order_id / maker_order_id).
    `flags`: the day plan's incident flags (fill_after_cancel, cancel_burst); what they did is
    written to `notes` (account_incidents.resolve reads it)."""
    flags = flags or {}
    notes = {} if notes is None else notes
    nf = fills.height
    lots = np.array([m.inst.lot for m in markets])
    ticks = np.array([m.inst.tick for m in markets])
    f_sym = fills["sym"].to_numpy()
    f_ts = fills["ts"].to_numpy()
    f_qty = fills["qty"].to_numpy()
    f_kind = fills["maker_kind"].to_numpy()
    f_maker = fills["maker"].to_numpy()
    # maker orders, one per fill
    back = np.where(f_kind == 0, rng.integers(200_000, 30_000_000, nf),
                    np.where(f_kind == 1, rng.integers(50_000, 400_000, nf), 5))
    m_new = np.maximum(f_ts - back, 0)
    partial = (f_kind == 0) & (rng.random(nf) < 0.3)
    m_qty = np.where(partial, np.ceil(f_qty * rng.uniform(1.5, 3.0, nf) / lots[f_sym]) * lots[f_sym], f_qty)
    m_qty = np.where(partial, np.round(m_qty, 10), m_qty)
    m_cancel = np.where(partial, np.minimum(f_ts + rng.integers(100_000, 10_000_000, nf), DAY_US - 1), -1)
    m_filled = f_qty.copy()
    # incident: a quote filled after its cancel event (the cancel moved before the fill)
    taken = set()
    f_tid = fills["trade_id"].to_numpy()
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
    mk_key = np.where(acc.has_key[f_maker] & (f_maker != BACKSTOP_ACCOUNT), trade_key(f_maker), -1)
    makers = pl.DataFrame({
        "sym": f_sym, "rank": np.ones(nf, np.int64), "local": np.arange(nf), "new_ts": m_new,
        "account": f_maker, "buy": ~fills["buy"].to_numpy(),
        "type": "limit", "tif": np.where(f_kind == 0, "GTX", "GTC"),
        "price": fills["price"].to_numpy(), "qty": m_qty, "reduce_only": False,
        "post_only": f_kind == 0, "key": mk_key, "cancel_ts": m_cancel, "filled": m_filled,
    })
    # cancelled quotes
    n_filled_quotes = int((f_kind == 0).sum())
    lo, hi = scale.cancels_per_fill
    reps = rng.integers(lo, hi + 1, n_filled_quotes)
    src = np.repeat(np.flatnonzero(f_kind == 0), reps)
    nq = len(src)
    q_sym = f_sym[src]
    q_new = rng.integers(0, DAY_US - 6_000_000, nq)
    q_sec = q_new // 1_000_000
    q_buy = rng.random(nq) < 0.5
    bids = np.stack([m.bid for m in markets])
    asks = np.stack([m.ask for m in markets])
    off = rng.integers(0, 20, nq) * ticks[q_sym]
    q_px = np.where(q_buy, bids[q_sym, q_sec] - off, asks[q_sym, q_sec] + off)
    q_px = np.round(q_px, 8)
    q_qty = np.maximum(np.floor(f_qty[src] * rng.uniform(0.5, 2.0, nq) / lots[q_sym]) * lots[q_sym], lots[q_sym])
    q_qty = np.round(q_qty, 10)
    q_acct = acc.mm_ids[rng.integers(0, len(acc.mm_ids), nq)]
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
        q_sym = np.concatenate([q_sym, np.full(n_x, k)])
        q_new = np.concatenate([q_new, b_new])
        q_buy = np.concatenate([q_buy, b_buy])
        q_px = np.concatenate([q_px, b_px])
        q_qty = np.concatenate([q_qty, b_q])
        q_acct = np.concatenate([q_acct, who[r2.integers(0, len(who), n_x)]])
        q_cancel = np.concatenate([q_cancel, b_cancel])
        nq += n_x
        notes.setdefault("cancel_burst", {})[spec["tag"]] = {
            "extra": int(n_x), "base_per_min": base, "accounts": sorted(int(a) for a in set(who.tolist()))}
    quotes = pl.DataFrame({
        "sym": q_sym, "rank": np.full(nq, 2, np.int64), "local": np.arange(nq), "new_ts": q_new,
        "account": q_acct, "buy": q_buy, "type": "limit", "tif": "GTX", "price": q_px,
        "qty": q_qty, "reduce_only": False, "post_only": True,
        "key": np.where(acc.has_key[q_acct], trade_key(q_acct), -1),
        "cancel_ts": q_cancel, "filled": np.zeros(nq),
    })
    # taker orders
    t_acct = takers["account"].to_numpy()
    is_liq = takers["type"].to_numpy() == "liquidation"
    via_key = acc.has_key[t_acct] & ~is_liq & (rng.random(takers.height) < 0.8)
    tk = takers.select(
        "sym", pl.lit(0, pl.Int64).alias("rank"), "local", pl.col("ts").alias("new_ts"), "account",
        "buy", "type", "tif", "price", "qty", "reduce_only",
        "post_only",
        pl.Series("key", np.where(via_key, trade_key(t_acct), -1)),
        pl.lit(-1, pl.Int64).alias("cancel_ts"), pl.lit(None, pl.Float64).alias("filled"))
    orders = pl.concat([tk, makers, quotes], how="vertical_relaxed")
    orders = orders.sort("new_ts", "sym", "rank", "local").with_columns(
        order_id=pl.int_range(0, pl.len(), dtype=pl.Int64) + next_order_id,
        key=pl.when(pl.col("key") >= 0).then(pl.col("key")).otherwise(None),
        cancel_ts=pl.when(pl.col("cancel_ts") >= 0).then(pl.col("cancel_ts")).otherwise(None))
    ids = orders.select("sym", "rank", "local", "order_id")
    fills = (fills.with_columns(rank=pl.lit(0, pl.Int64), local=pl.col("taker_local"))
             .join(ids, on=["sym", "rank", "local"], how="left").rename({"order_id": "taker_order_id"})
             .drop("rank", "local")
             .with_columns(rank=pl.lit(1, pl.Int64), local=pl.int_range(0, pl.len(), dtype=pl.Int64))
             .join(ids, on=["sym", "rank", "local"], how="left").rename({"order_id": "maker_order_id"})
             .drop("rank", "local").sort("trade_id"))
    # events
    base = ["sym", "order_id", "account", "key", "buy", "type", "tif", "price", "qty", "reduce_only", "post_only"]
    o = orders.select(base + ["new_ts", "cancel_ts", "filled", "rank"])
    ev_new = o.select(base, ts=pl.col("new_ts"), event=pl.lit("new"), cum=pl.lit(0.0))
    tf = (fills.select("trade_id", "ts", "qty", order_id="taker_order_id").sort("order_id", "ts", "trade_id")
          .with_columns(cum=pl.col("qty").cum_sum().over("order_id")))
    tf = tf.join(o.select(base), on="order_id", how="left", suffix="_o")
    tf = tf.with_columns(event=pl.when(pl.col("cum") >= pl.col("qty_o") * (1 - 1e-9))
                         .then(pl.lit("fill")).otherwise(pl.lit("partial_fill")))
    ev_tfill = tf.select([c if c != "qty" else pl.col("qty_o").alias("qty") for c in base] + ["ts", "event", "cum"])
    mf = fills.select("ts", fq="qty", order_id="maker_order_id").join(o.select(base), on="order_id", how="left")
    ev_mfill = mf.select(*base, "ts", event=pl.when(pl.col("fq") >= pl.col("qty") * (1 - 1e-9))
                         .then(pl.lit("fill")).otherwise(pl.lit("partial_fill")), cum=pl.col("fq"))
    ev_cancel = o.filter(pl.col("cancel_ts").is_not_null()).select(
        base, ts=pl.col("cancel_ts"), event=pl.lit("cancel"), cum=pl.col("filled"))
    last = tf.group_by("order_id").agg(pl.col("ts").max().alias("last_ts"), pl.col("cum").max().alias("done"))
    ev_exp = (o.filter(pl.col("rank") == 0).join(last, on="order_id", how="left")
              .with_columns(done=pl.col("done").fill_null(0.0))
              .filter(pl.col("done") < pl.col("qty") * (1 - 1e-9))
              .select(base, ts=pl.coalesce("last_ts", "new_ts") + 1, event=pl.lit("expire"), cum=pl.col("done")))
    events = pl.concat([ev_new, ev_tfill, ev_mfill, ev_cancel, ev_exp], how="vertical_relaxed")
    events = (events.with_columns(er=pl.col("event").replace_strict(EVENT_RANK, return_dtype=pl.Int64))
              .sort("ts", "order_id", "er").drop("er"))
    return orders, events, fills


def build_api(acc: Accounts, orders: pl.DataFrame, events: pl.DataFrame, genesis: dt.date,
              day: dt.date, day_us0: int, last_used: dict, rng: np.random.Generator,
              flags: dict | None = None, notes: dict | None = None
              ) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Returns (api_keys, api_requests with ts in µs of the day, updated last_used). `flags`
    ["keys"]: incident keys (over-scoped, automation without kill switch) added to the day's
    snapshot with their requests; what was added goes to `notes["keys"]`."""
    flags = flags or {}
    notes = {} if notes is None else notes
    # taker orders placed via a key: one request each
    tk = orders.filter((pl.col("rank") == 0) & pl.col("key").is_not_null())
    lat_t = rng.lognormal(np.log(40.0), 0.5, tk.height)
    req_t = pl.DataFrame({"ts": np.maximum(tk["new_ts"].to_numpy() - (lat_t * 1000).astype(np.int64), 0),
                          "key_id": tk["key"].to_numpy(), "account": tk["account"].to_numpy(),
                          "endpoint": "/fapi/v1/order", "method": "POST", "status": 200,
                          "latency_ms": np.round(lat_t, 3), "scope_used": "trade"})
    # market-maker actions batched 10 to a request
    mm = (events.filter(pl.col("key").is_not_null() & pl.col("event").is_in(["new", "cancel"])
                        & pl.col("post_only"))
          .select("ts", "key", "account", "event").sort("key", "event", "ts")
          .with_columns(i=pl.int_range(0, pl.len()).over("key", "event"))
          .filter(pl.col("i") % 10 == 0))
    lat_m = rng.lognormal(np.log(12.0), 0.4, mm.height)
    req_m = pl.DataFrame({"ts": np.maximum(mm["ts"].to_numpy() - (lat_m * 1000).astype(np.int64), 0),
                          "key_id": mm["key"].to_numpy(), "account": mm["account"].to_numpy(),
                          "endpoint": "/fapi/v1/batchOrders",
                          "method": np.where(mm["event"].to_numpy() == "new", "POST", "DELETE"),
                          "status": 200, "latency_ms": np.round(lat_m, 3), "scope_used": "trade"})
    # reads
    keys = api_keys_frame(acc, genesis)
    k_id = keys["key_id"].to_numpy()
    k_acct = keys["account"].to_numpy()
    n_reads = rng.poisson(np.where(acc.is_mm[k_acct], 2000, 30))
    r_key = np.repeat(k_id, n_reads)
    lat_r = rng.lognormal(np.log(25.0), 0.5, len(r_key))
    req_r = pl.DataFrame({"ts": rng.integers(0, DAY_US, len(r_key)), "key_id": r_key,
                          "account": np.repeat(k_acct, n_reads),
                          "endpoint": np.array(READ_ENDPOINTS)[rng.integers(0, 3, len(r_key))],
                          "method": "GET", "status": 200, "latency_ms": np.round(lat_r, 3),
                          "scope_used": "read"})
    keys, req_x, ip_x = _incident_keys(acc, keys, flags.get("keys", []), day_us0, notes)
    if req_x is not None:
        req_r = pl.concat([req_r, req_x], how="vertical_relaxed")
    orders_req = pl.concat([req_t, req_m], how="vertical_relaxed")
    # rejected extra requests
    n = orders_req.height
    pick = rng.random(n)
    err = orders_req.with_columns(status=pl.Series(np.where(pick < 0.006, 429, np.where(pick < 0.009, 400, 503))),
                                  ts=pl.col("ts") + 1_000)
    err = err.filter(pl.Series(pick < 0.0095)).with_columns(ts=pl.min_horizontal(pl.col("ts"), DAY_US - 1))
    req = pl.concat([orders_req, err, req_r], how="vertical_relaxed")
    ip_of = {}
    for a, kid in zip(k_acct.tolist(), k_id.tolist()):
        ips = acc.allow_ips[a]
        ip_of[kid] = ips[0] if kid % 10 == 1 else f"198.51.100.{a % 250 + 1}"
    ip_of.update(ip_x)
    req = req.with_columns(source_ip=pl.col("key_id").replace_strict(ip_of, return_dtype=pl.String))
    req = req.sort("ts", "key_id", "endpoint", "method", "status")
    used = req.group_by("key_id").agg(pl.col("ts").max())
    last_used = dict(last_used)
    for kid, ts in used.iter_rows():
        last_used[str(kid)] = int(day_us0 + ts)
    keys = keys.with_columns(last_used_at=pl.col("key_id").cast(pl.String)
                             .replace_strict(last_used, default=None, return_dtype=pl.Int64))
    return keys, req, last_used


def _incident_keys(acc: Accounts, keys: pl.DataFrame, specs: list, day_us0: int, notes: dict
                   ) -> tuple[pl.DataFrame, pl.DataFrame | None, dict]:
    """Add the day's incident keys (over-scoped: account x 10 + 3; automation without kill
    switch: account x 10 + 4) and their read requests. Returns (keys, requests or None, ip map)."""
    if not specs:
        return keys, None, {}
    traders = np.flatnonzero(acc.is_trader)
    rows, reqs, ips = [], [], {}
    used: set = set()
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
        reqs.append(pl.DataFrame({"ts": ts, "key_id": np.full(n, kid, np.int64), "account": np.full(n, a, np.int64),
                                  "endpoint": np.array(READ_ENDPOINTS)[r2.integers(0, 3, n)], "method": "GET",
                                  "status": 200, "latency_ms": np.round(r2.lognormal(np.log(25.0), 0.5, n), 3),
                                  "scope_used": "read"}))
        notes.setdefault("keys", {})[spec["tag"]] = {
            "key_id": kid, "account": a, "scopes": scopes, "ip_allowlist": allow, "cancel_on_disconnect": cod,
            "requests": n, "rpm": (n / ((t1 - t0) / 60e6)) if t1 > t0 else 0.0}
    extra = pl.DataFrame(rows, schema={k: v for k, v in keys.schema.items() if k != "status"},
                         orient="row").with_columns(status=pl.lit("active"))
    return pl.concat([keys, extra]).sort("key_id"), pl.concat(reqs), ips


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
