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
                 acc: Accounts, rng: np.random.Generator, next_order_id: int
                 ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """fills: sym, trade_id, ts, price, qty, buy, maker, maker_kind, taker_local (sorted by
    trade_id); takers: sym, local, ts, account, buy, type, tif, price, qty, reduce_only, liq.
    Returns (orders, order_events, fills with taker_order_id / maker_order_id)."""
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
    mk_key = np.where(acc.has_key[f_maker] & (f_maker != BACKSTOP_ACCOUNT), trade_key(f_maker), -1)
    makers = pl.DataFrame({
        "sym": f_sym, "rank": np.ones(nf, np.int64), "local": np.arange(nf), "new_ts": m_new,
        "account": f_maker, "buy": ~fills["buy"].to_numpy(),
        "type": "limit", "tif": np.where(f_kind == 0, "GTX", "GTC"),
        "price": fills["price"].to_numpy(), "qty": m_qty, "reduce_only": False,
        "post_only": f_kind == 0, "key": mk_key, "cancel_ts": m_cancel, "filled": f_qty,
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
    quotes = pl.DataFrame({
        "sym": q_sym, "rank": np.full(nq, 2, np.int64), "local": np.arange(nq), "new_ts": q_new,
        "account": q_acct, "buy": q_buy, "type": "limit", "tif": "GTX", "price": q_px,
        "qty": q_qty, "reduce_only": False, "post_only": True,
        "key": np.where(acc.has_key[q_acct], trade_key(q_acct), -1),
        "cancel_ts": q_new + rng.integers(50_000, 5_000_000, nq), "filled": np.zeros(nq),
    })
    # taker orders
    t_acct = takers["account"].to_numpy()
    is_liq = takers["type"].to_numpy() == "liquidation"
    via_key = acc.has_key[t_acct] & ~is_liq & (rng.random(takers.height) < 0.8)
    tk = takers.select(
        "sym", pl.lit(0, pl.Int64).alias("rank"), "local", pl.col("ts").alias("new_ts"), "account",
        "buy", "type", "tif", "price", "qty", "reduce_only",
        pl.lit(False).alias("post_only"),
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
              day: dt.date, day_us0: int, last_used: dict, rng: np.random.Generator
              ) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Returns (api_keys, api_requests with ts in µs of the day, updated last_used)."""
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
    req = req.with_columns(source_ip=pl.col("key_id").replace_strict(ip_of, return_dtype=pl.String))
    req = req.sort("ts", "key_id", "endpoint", "method", "status")
    used = req.group_by("key_id").agg(pl.col("ts").max())
    last_used = dict(last_used)
    for kid, ts in used.iter_rows():
        last_used[str(kid)] = int(day_us0 + ts)
    keys = keys.with_columns(last_used_at=pl.col("key_id").cast(pl.String)
                             .replace_strict(last_used, default=None, return_dtype=pl.Int64))
    return keys, req, last_used


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
