"""One simulated day: plan incidents, generate the market, run the engine per symbol, build and
write every canonical dataset plus the ground truth, return the end-of-day state.

Memory: the engine's results are compact numpy arrays per symbol (the symbols may run in
`workers` processes: their wallet changes are replayed in symbol order, so the output does not
depend on it); orders, order events, trades, index components and API requests are built and
written one time window at a time (`chunks` windows a day) through `ParquetStream`, which cuts
row groups at fixed row counts: the files are byte-identical whatever `chunks` and `workers`."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import polars as pl

from venue_risk import schema
from venue_risk.atomic import write_json_atomic, write_parquet_atomic
from venue_risk.simulate import account_incidents, flows, market
from venue_risk.simulate.accounts import Accounts
from venue_risk.simulate.config import (
    BANDS, INDEX_MIN_SOURCES, INDEX_OUTLIER_PCT, INDEX_STALE_S, INTEREST_8H, MINUTES, SECONDS, SEGMENT_MID,
    Scale)
from venue_risk.simulate.engine import TIFS, TYPES, SymbolBook, SymbolResult, run_symbol
from venue_risk.simulate.incidents import LONG_BUILD, DayPlan, Incident, apply_incidents

ENGINE_COLS = ("ts", "price", "qty", "buy", "taker", "maker", "taker_fee", "maker_fee", "liq",
               "taker_order", "maker_kind")
ROW_GROUP = 1 << 20  # rows per Parquet row group of the streamed datasets


def _epoch_us(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc).timestamp()) * 1_000_000


def _ts(col: str | pl.Expr, us0: int) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    return pl.from_epoch(e + us0, time_unit="us").dt.replace_time_zone("UTC")


def _write(out: Path, name: str, day: dt.date, frame: pl.DataFrame) -> None:
    path = Path(out) / name / f"date={day.isoformat()}" / "data.parquet"
    write_parquet_atomic(schema.conform(name, frame), path)


class ParquetStream:
    """Write dataset `name` of `day` chunk by chunk (`write(frame)`, frames in output order),
    atomically on `close()`. Row groups hold exactly ROW_GROUP rows (the last one the rest), so
    the bytes do not depend on how the rows were chunked."""

    def __init__(self, out: Path, name: str, day: dt.date) -> None:
        import pyarrow.parquet as pq

        self.name = name
        self.path = Path(out) / name / f"date={day.isoformat()}" / "data.parquet"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.schema = schema.conform(name, schema.empty_frame(name)).to_arrow().schema
        self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        self.buf: list = []
        self.n_buf = 0
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        import pyarrow as pa

        if not frame.height:
            return
        self.buf.append(schema.conform(self.name, frame).to_arrow().cast(self.schema))
        self.n_buf += frame.height
        self.rows += frame.height
        if self.n_buf >= ROW_GROUP:
            t = pa.concat_tables(self.buf).combine_chunks()  # the pages do not depend on the chunks
            k = (self.n_buf // ROW_GROUP) * ROW_GROUP
            self.writer.write_table(t.slice(0, k), row_group_size=ROW_GROUP)
            rest = t.slice(k)
            self.buf, self.n_buf = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> int:
        """Flush, close and move the file into place; returns the number of rows written."""
        import pyarrow as pa

        try:
            if self.n_buf or not self.rows:
                t = pa.concat_tables(self.buf).combine_chunks() if self.buf else self.schema.empty_table()
                self.writer.write_table(t, row_group_size=ROW_GROUP)
            self.writer.close()
            os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
        return self.rows


def _progress(msg: str, t0: float) -> None:
    """With VENUE_RISK_SIM_VERBOSE set: print a progress line (seconds, current RSS) to stderr."""
    if os.environ.get("VENUE_RISK_SIM_VERBOSE"):
        import sys

        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
        print(f"[simulate {time.perf_counter() - t0:7.1f}s rss {rss:5.2f} GB] {msg}", file=sys.stderr, flush=True)


def _batches(cols: dict, size: int = 1 << 19):
    """Slices of at most `size` rows of a dict of equal-length arrays (bounded conversion memory)."""
    n = len(next(iter(cols.values()))) if cols else 0
    for a in range(0, max(n, 1), size):
        yield {c: v[a:a + size] for c, v in cols.items()}


def _engine_task(args: tuple) -> tuple[SymbolResult, SymbolBook]:
    """Run one symbol's engine (in this process or a worker); returns (result, book)."""
    scale, mkt, book, isolated, is_trader, members, target, mm_ids, seed_key, inject, frozen = args
    res = run_symbol(scale, mkt, book, isolated, is_trader, members, target, mm_ids,
                     np.random.default_rng(seed_key), inject, frozen)
    return res, book


def default_chunks(scale: Scale) -> int:
    """Time windows a day (env VENUE_RISK_SIM_CHUNK; default one per ~75k taker orders, at least
    24: 100 at `large`): the output does not depend on it."""
    env = os.environ.get("VENUE_RISK_SIM_CHUNK")
    return max(1, int(env)) if env else max(24, scale.trades_per_day // 75_000)


def _release_memory() -> None:
    """glibc: serve big arrays from mmap (returned to the OS when freed) and trim the heap, so
    the process does not keep the peak of earlier phases (no-op elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: 1 MB
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def default_workers(scale: Scale) -> int:
    """Engine processes (env VENUE_RISK_SIM_WORKERS; default 2 from 1M taker orders a day, else 1)."""
    env = os.environ.get("VENUE_RISK_SIM_WORKERS")
    if env:
        return max(1, int(env))
    return min(2, os.cpu_count() or 1) if scale.trades_per_day >= 1_000_000 else 1


def simulate_day(scale: Scale, acc: Accounts, day: dt.date, st: dict, seed: int,
                 incidents: list[Incident], anchor: dt.date, out: Path, chunks: int | None = None,
                 workers: int | None = None) -> tuple[dict, dict]:
    """Simulate `day` from state `st`; writes its files; returns (new state, timing/stats).
    `chunks`: time windows for the order flow and the streamed files; `workers`: engine
    processes (defaults: `default_chunks`, `default_workers`); neither changes the output."""
    t_start = time.perf_counter()
    chunks = default_chunks(scale) if chunks is None else max(1, int(chunks))
    _release_memory()
    workers = default_workers(scale) if workers is None else max(1, int(workers))
    ordl = day.toordinal()
    us0 = _epoch_us(day)
    insts = scale.instruments
    syms = [i.symbol for i in insts]
    n_sym = len(syms)
    plan = DayPlan(day, insts)
    truths = apply_incidents(plan, incidents, anchor, np.random.default_rng([seed, ordl, 0]))
    mkts = market.generate(scale, plan, st["market"], np.random.default_rng([seed, ordl, 1]))
    t_mkt = time.perf_counter()
    _progress("market generated", t_start)
    cross_ev, frozen, sized = account_incidents.prepare_cross(plan, mkts, st, acc, scale)
    inject = {sym: list(plan.flags.get("engine", {}).get(sym, [])) + cross_ev.get(sym, []) for sym in syms}
    cash = st["wallet"].copy()
    new = {k: st[k].copy() for k in ("size", "entry", "margin", "lev")}

    def tasks():
        for k, mkt in enumerate(mkts):
            book = SymbolBook(*(new[x][:, k].copy() for x in ("size", "entry", "margin", "lev")))
            yield (scale, mkt, book, acc.isolated, acc.is_trader, np.flatnonzero(acc.member[:, k]), acc.target[:, k],
                   acc.mm_ids, [seed, ordl, 2, k], inject[syms[k]] or None, frozen or None)

    results: list[SymbolResult] = []
    pool = mp.get_context("fork").Pool(workers) if workers > 1 and n_sym > 1 else None
    try:
        it = pool.imap(_engine_task, tasks()) if pool else map(_engine_task, tasks())
        for k, (res, book) in enumerate(it):
            res.cash.replay(cash)  # in symbol order: the same sums as one sequential run
            res.cash = None
            for x, arr in zip(("size", "entry", "margin", "lev"), (book.size, book.entry, book.margin, book.lev)):
                new[x][:, k] = arr
            results.append(res)
            _progress(f"engine {syms[k]}: {len(res.fills['ts'])} fills", t_start)
    finally:
        if pool:
            pool.close()
            pool.join()
    t_eng = time.perf_counter()

    # liquidations: global ids by (ts_trigger, symbol, local)
    liq_rows = [dict(r, sym=k) for k, res in enumerate(results) for r in res.liqs]
    liq_schema = {"local": pl.Int64, "ts_trigger": pl.Int64, "ts_done": pl.Int64, "account": pl.Int64,
                  "side": pl.String, "qty": pl.Float64, "filled_qty": pl.Float64, "mark_price": pl.Float64,
                  "liquidation_price": pl.Float64, "bankruptcy_price": pl.Float64, "path": pl.String,
                  "margin_mode": pl.String, "leverage": pl.Float64, "maintenance_margin_rate": pl.Float64,
                  "fee": pl.Float64, "insurance_fund_delta": pl.Float64, "vwap": pl.Float64,
                  "filled_notional": pl.Float64, "slippage_bps": pl.Float64, "shortfall": pl.Float64,
                  "beyond_bankruptcy_qty": pl.Float64, "sym": pl.Int64}
    liqs = pl.DataFrame(liq_rows, schema=liq_schema).sort("ts_trigger", "sym", "local").with_columns(
        liquidation_id=pl.int_range(0, pl.len(), dtype=pl.Int64) + st["next_liq_id"],
        symbol=pl.col("sym").replace_strict(dict(enumerate(syms)), return_dtype=pl.String))
    # fills: global trade ids by (ts, symbol, engine order), as numpy columns sorted by trade id
    sizes = np.array([len(r.fills["ts"]) for r in results], dtype=np.int64)
    f_off = np.concatenate([[0], np.cumsum(sizes)])
    f_sym = np.repeat(np.arange(n_sym, dtype=np.int64), sizes)
    f_seq = np.arange(int(f_off[-1]), dtype=np.int64) - np.repeat(f_off[:-1], sizes)
    f_ts = np.concatenate([r.fills["ts"] for r in results]) if n_sym else np.zeros(0, np.int64)
    perm = np.lexsort((f_seq, f_sym, f_ts))
    fills = {"sym": f_sym[perm], "seq": f_seq[perm], "ts": f_ts[perm]}
    del f_sym, f_ts
    for c in ENGINE_COLS[1:]:
        fills[c] = np.concatenate([r.fills.pop(c) for r in results])[perm]
    nf = len(perm)
    pos_of = np.empty(nf, dtype=np.int64)  # concat row (symbol offset + seq) -> trade-id order
    pos_of[perm] = np.arange(nf, dtype=np.int64)
    del perm, f_seq
    fills["first_trade_id"] = st["next_trade_id"]  # trade id = first + position
    lid = np.full(nf, -1, dtype=np.int64)
    if liqs.height:
        width = int(liqs["local"].max()) + 1
        lkey = (liqs["sym"] * width + liqs["local"]).to_numpy()
        lorder = np.argsort(lkey)
        is_l = np.flatnonzero(fills["liq"] >= 0)
        j = np.searchsorted(lkey[lorder], fills["sym"][is_l] * width + fills["liq"][is_l])
        lid[is_l] = liqs["liquidation_id"].to_numpy()[lorder[j]]
    fills["liquidation_id"] = lid
    # taker orders in (sym, local) order
    t_sizes = np.array([len(r.orders["ts"]) for r in results], dtype=np.int64)
    t_off = np.concatenate([[0], np.cumsum(t_sizes)])
    takers = {"sym": np.repeat(np.arange(n_sym, dtype=np.int64), t_sizes)}
    for c in ("local", "ts", "account", "buy", "type", "tif", "price", "qty", "reduce_only", "liq", "post_only"):
        takers[c] = np.concatenate([r.orders.pop(c) for r in results])
    fills["t_row"] = t_off[fills["sym"]] + fills.pop("taker_order")
    for c in ("seq", "liq"):
        del fills[c]
    for m in mkts:  # no longer needed: free them
        m.true = m.sigma = m.status = None
    rng_f = np.random.default_rng([seed, ordl, 3])
    notes: dict = {}
    _release_memory()
    _progress("fills merged", t_start)
    orders = flows.build_orders(scale, fills, takers, mkts, acc, rng_f, plan.flags, notes)
    _progress(f"orders drawn: {orders.n}", t_start)
    del takers
    edges = flows.chunk_edges(chunks)
    orders.assign_ids(edges, st["next_order_id"])
    del orders.t["local"]
    _release_memory()
    _progress("order ids assigned", t_start)

    sym_map = dict(enumerate(syms))
    sym_expr = pl.col("sym").cast(pl.Int64).replace_strict(sym_map, return_dtype=pl.String)
    side = lambda c: pl.when(pl.col(c)).then(pl.lit("buy")).otherwise(pl.lit("sell"))  # noqa: E731
    nullable = lambda c: pl.when(pl.col(c) >= 0).then(pl.col(c)).otherwise(None)  # noqa: E731
    code = lambda c, names: pl.col(c).cast(pl.Int64).replace_strict(dict(enumerate(names)), return_dtype=pl.String)  # noqa: E731,E501
    w_trades, w_events = ParquetStream(out, "trades", day), ParquetStream(out, "order_events", day)
    batch: list[dict] = []
    bounds = [-(2**62)] + edges.tolist() + [2**62]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        a, b = np.searchsorted(fills["ts"], [lo, hi])
        tr = {c: fills[c][a:b] for c in ("ts", "sym", "price", "qty", "buy", "taker", "maker",
                                         "taker_fee", "maker_fee", "liquidation_id")}
        tr["trade_id"] = np.arange(a, b, dtype=np.int64) + st["next_trade_id"]
        tr["taker_order_id"] = orders.oid[fills["t_row"][a:b]]
        tr["maker_order_id"] = orders.oid[orders.n_tk + np.arange(a, b)]
        for part in _batches(tr):
            w_trades.write(pl.DataFrame(part).select(
                ts=_ts("ts", us0), symbol=sym_expr, trade_id="trade_id", price="price", qty="qty",
                taker_side=side("buy"), taker_order_id="taker_order_id", maker_order_id="maker_order_id",
                taker_account="taker", maker_account="maker", taker_fee="taker_fee", maker_fee="maker_fee",
                liquidation_id=nullable("liquidation_id")))
        del tr
        ev = orders.window_events(lo, hi)
        batch.append(orders.batch_rows(ev))
        for part in _batches(ev):
            w_events.write(pl.DataFrame(part).select(
                ts=_ts("ts", us0), symbol=sym_expr, order_id="order_id", account="account",
                api_key_id=nullable("key"), event=code("er", flows.EVENTS), side=side("buy"),
                order_type=code("type", TYPES), tif=code("tif", TIFS), price=pl.col("price").fill_nan(None),
                qty="qty", cum_filled_qty="cum", reduce_only="reduce_only", post_only="post_only",
                reject_reason=pl.lit(None, pl.String)))
        del ev, part
        _release_memory()
        _progress(f"window < {hi}: trades and events written", t_start)
    n_trades, n_events = w_trades.close(), w_events.close()
    # free what the API requests and the rest do not need
    orders.q = orders.m = orders.tf_cum = orders.t_done = orders.t_exp = None
    for c in ("taker", "maker", "taker_fee", "maker_fee", "liquidation_id", "maker_kind", "t_row"):
        del fills[c]
    orders.t_row = None
    _release_memory()
    batch_all = {c: np.concatenate([x[c] for x in batch]) for c in batch[0]}
    del batch
    keys, req, ip_of, last_used = flows.build_api(acc, orders, batch_all, dt.date.fromisoformat(st["genesis"]),
                                                  day, us0, st["key_last_used"], rng_f, plan.flags, notes)
    del batch_all
    _progress("api requests built", t_start)
    n_tk = orders.n_tk

    def order_id_of(k: int, rank: int, local: int) -> int:
        return int(orders.oid[t_off[k] + local] if rank == 0 else orders.oid[n_tk + local])

    def trade_id_of(k: int, seq: int) -> int:
        return int(st["next_trade_id"] + pos_of[f_off[k] + seq])

    account_incidents.resolve(truths, results, order_id_of, trade_id_of, notes, syms, sized, us0)
    n_orders = orders.n
    del orders, pos_of
    t_flow = time.perf_counter()

    W = lambda name, frame: _write(out, name, day, frame)  # noqa: E731
    w_req = ParquetStream(out, "api_requests", day)
    n_req = len(req["ts"])
    step = max(1, -(-n_req // chunks))
    for a in range(0, n_req, step):
        w_req.write(pl.DataFrame({c: v[a:a + step] for c, v in req.items()}).select(
            ts=_ts("ts", us0), key_id="key_id", account="account", endpoint=code("endpoint", flows.ENDPOINTS),
            method=code("method", flows.METHODS), status="status", latency_ms="latency_ms",
            scope_used=code("scope_used", flows.SCOPES),
            source_ip=pl.col("key_id").replace_strict(ip_of, return_dtype=pl.String)))
    w_req.close()
    del req
    W("api_keys", keys.sort("key_id").with_columns(
        created_at=_ts("created_at", 0), expires_at=_ts("expires_at", 0), last_used_at=_ts("last_used_at", 0)))

    W("instruments", pl.DataFrame([{
        "symbol": i.symbol, "base": i.base, "quote": "USDT", "tick_size": i.tick, "lot_size": i.lot,
        "max_leverage": i.tiers[0].max_leverage, "taker_fee_rate": i.taker_fee_rate,
        "maker_fee_rate": i.maker_fee_rate, "liquidation_fee_rate": i.liquidation_fee_rate,
        "funding_interval_hours": 8, "funding_cap": i.funding_cap, "index_sources": list(i.sources),
        "index_outlier_pct": INDEX_OUTLIER_PCT, "index_stale_s": INDEX_STALE_S,
        "index_min_sources": INDEX_MIN_SOURCES,
        "liquidation_incremental_notional": i.incremental_notional,
        "liquidation_auction_discount": i.auction_discount} for i in insts]))
    W("risk_tiers", pl.DataFrame([{
        "symbol": i.symbol, "tier": t.tier, "notional_floor": t.notional_floor, "notional_cap": t.notional_cap,
        "max_leverage": t.max_leverage, "maintenance_margin_rate": t.maintenance_margin_rate,
        "maintenance_amount": t.maintenance_amount} for i in insts for t in i.tiers]))
    # mark_index (last_price: the last trade at or before the second)
    mi, comps, depth, fund_rows, mm_rows = [], [], [], [], []
    sec_us = np.arange(SECONDS, dtype=np.int64) * 1_000_000
    by_sym = np.argsort(fills["sym"], kind="stable")
    for k, m in enumerate(mkts):
        fk = by_sym[np.searchsorted(fills["sym"][by_sym], k):np.searchsorted(fills["sym"][by_sym], k + 1)]
        fts, fpx = fills["ts"][fk], fills["price"][fk]
        j = np.searchsorted(fts, sec_us, side="right") - 1
        last = np.where(j >= 0, fpx[np.maximum(j, 0)] if len(fpx) else 0.0, st["market"][k]["last_price"])
        m.state["last_price"] = float(fpx[-1]) if len(fpx) else st["market"][k]["last_price"]
        mi.append(pl.DataFrame({"ts": sec_us, "symbol": syms[k], "mark_price": m.mark, "index_price": m.index,
                                "last_price": last, "best_bid": m.bid, "best_ask": m.ask}))
        mid_m = m.mid[::60]
        for sgn, cum in ((-1.0, m.depth_bid), (1.0, m.depth_ask)):
            seg = np.diff(np.concatenate([np.zeros((MINUTES, 1)), cum], axis=1), axis=1)
            notional = np.cumsum(seg * (mid_m[:, None] * (1 + sgn * SEGMENT_MID[None, :] / 100)), axis=1)
            depth.append(pl.DataFrame({"ts": np.repeat(np.arange(MINUTES, dtype=np.int64) * 60_000_000, len(BANDS)),
                                       "symbol": syms[k], "percentage": np.tile(sgn * BANDS, MINUTES),
                                       "depth": cum.reshape(-1), "notional": notional.reshape(-1)}))
        for sec, rate, prem, mk, ix in m.funding:
            fund_rows.append({"ts": sec * 1_000_000, "symbol": syms[k], "funding_rate": rate, "premium_index": prem,
                              "interest_rate": INTEREST_8H, "mark_price": mk, "index_price": ix})
        snaps = np.array(results[k].snapshots)
        buckets = fts // 300_000_000
        qb = fills["qty"][fk]
        buy = fills["buy"][fk]
        bv = np.bincount(buckets, weights=np.where(buy, qb, 0.0), minlength=288)
        sv = np.bincount(buckets, weights=np.where(buy, 0.0, qb), minlength=288)
        secs = snaps[:, 0].astype(np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mm_rows.append(pl.DataFrame({
                "ts": secs * 1_000_000, "symbol": syms[k], "open_interest": snaps[:, 1],
                "open_interest_value": snaps[:, 1] * m.mark[secs],
                "long_short_account_ratio": np.where(snaps[:, 3] > 0, snaps[:, 2] / np.maximum(snaps[:, 3], 1), np.nan),
                "taker_buy_sell_ratio": np.where(sv > 0, bv / np.where(sv > 0, sv, 1.0), np.nan)}))
    W("mark_index", pl.concat(mi).with_columns(ts=_ts("ts", us0)).sort("ts", "symbol"))
    w_comp = ParquetStream(out, "index_components", day)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        comps = []
        for k, m in enumerate(mkts):
            i = np.flatnonzero((m.comp_received_us >= lo) & (m.comp_received_us < hi))
            src = m.comp_source[i]
            comps.append(pl.DataFrame({"ts": m.comp_ts_us[i], "received_ts": m.comp_received_us[i], "symbol": syms[k],
                                       "source": np.asarray(m.inst.sources)[src], "price": m.comp_price[i],
                                       "weight": np.asarray(m.inst.weights)[src]}))
        w_comp.write(pl.concat(comps).sort("received_ts", "symbol", "source")
                     .with_columns(ts=_ts("ts", us0), received_ts=_ts("received_ts", us0)))
    w_comp.close()
    _progress("index components written", t_start)
    W("funding", pl.DataFrame(fund_rows).sort("ts", "symbol").with_columns(ts=_ts("ts", us0)))
    W("market_metrics", pl.concat(mm_rows).with_columns(
        pl.col("long_short_account_ratio", "taker_buy_sell_ratio").fill_nan(None))
      .sort("ts", "symbol").with_columns(ts=_ts("ts", us0)))
    W("book_depth", pl.concat(depth).sort("ts", "symbol", "percentage").with_columns(ts=_ts("ts", us0)))
    W("liquidations", liqs.sort("liquidation_id").with_columns(
        ts_trigger=_ts("ts_trigger", us0), ts_done=_ts("ts_done", us0)))
    # insurance fund per minute: balance after every liquidation with ts_done <= the minute
    deltas = sorted(d for res in results for d in res.fund_deltas)
    d_ts = np.array([d[0] for d in deltas], dtype=np.int64)
    d_cum = np.cumsum([d[1] for d in deltas]) if deltas else np.zeros(0)
    minute_us = np.arange(MINUTES, dtype=np.int64) * 60_000_000
    idx = np.searchsorted(d_ts, minute_us, side="right") - 1
    bal = st["fund"] + np.where(idx >= 0, d_cum[np.maximum(idx, 0)] if len(d_cum) else 0.0, 0.0)
    W("insurance_fund", pl.DataFrame({"ts": minute_us, "pool": "USDT", "balance": bal}).with_columns(ts=_ts("ts", us0)))
    # end-of-day positions and wallets
    pos = []
    isolated = acc.isolated
    for k in range(len(insts)):
        a = np.flatnonzero(new["size"][:, k] != 0.0)
        pos.append(pl.DataFrame({"account": a, "symbol": syms[k], "size": new["size"][a, k],
                                 "entry_price": new["entry"][a, k],
                                 "margin_mode": np.where(isolated[a], "isolated", "cross"),
                                 "leverage": new["lev"][a, k], "isolated_margin": new["margin"][a, k]},
                                schema_overrides={"account": pl.Int64}))
    W("positions_eod", pl.concat(pos).sort("account", "symbol").with_columns(date=pl.lit(day)))
    accts = np.arange(1, acc.n)
    W("accounts_eod", pl.DataFrame({"date": day, "account": accts, "wallet_balance": cash[accts],
                                    "is_market_maker": acc.is_mm[accts]}))
    lc = [(t, a, syms[k], o, n_) for k, res in enumerate(results) for (t, a, o, n_, *_) in res.lev_changes]
    W("leverage_changes", pl.DataFrame(lc, schema={"ts": pl.Int64, "account": pl.Int64, "symbol": pl.String,
                                                   "old_leverage": pl.Float64, "new_leverage": pl.Float64},
                                       orient="row").sort("ts", "account", "symbol").with_columns(ts=_ts("ts", us0)))
    # ground truth
    truth_dir = Path(out) / "_truth" / f"date={day.isoformat()}"
    for r in truths:
        if r["accounts"] == LONG_BUILD:
            k = syms.index(r["symbol"])
            q0, q1 = st["size"][:, k], new["size"][:, k]
            grew = acc.is_trader & (q1 > 0) & (q1 > q0)
            r["accounts"] = [int(a) for a in np.flatnonzero(grew)]
            r["details"]["open_interest_start"] = float(results[k].snapshots[0][1])
            r["details"]["open_interest_end"] = float(q1[q1 > 0].sum())
        if r["accounts"] is None:
            t0 = int((dt.datetime.fromisoformat(r["start"]).timestamp()) * 1e6) - us0
            t1 = int((dt.datetime.fromisoformat(r["end"]).timestamp()) * 1e6) - us0
            hit = liqs.filter(pl.col("ts_trigger").is_between(t0, t1))
            r["accounts"] = sorted(set(hit.filter(pl.col("symbol") == r["symbol"])["account"].to_list()))
            r["details"]["liquidations_on_symbol"] = hit.filter(pl.col("symbol") == r["symbol"]).height
            r["details"]["liquidations_all_symbols"] = hit.height
    write_json_atomic(truths, truth_dir / "incidents.json")
    write_parquet_atomic(liqs.sort("liquidation_id").select(
        "liquidation_id", "symbol", "path", "side", "qty", "filled_qty", "mark_price", "vwap", "filled_notional",
        "slippage_bps", "fee", "shortfall", "beyond_bankruptcy_qty", "insurance_fund_delta", "leverage",
        "maintenance_margin_rate"), truth_dir / "liquidation_book.parquet")
    t_end = time.perf_counter()

    new_state = dict(new)
    new_state.update({
        "wallet": cash, "market": [m.state for m in mkts], "genesis": st["genesis"],
        "fund": float(bal[-1] if not len(d_cum) else st["fund"] + d_cum[-1]),
        "next_trade_id": st["next_trade_id"] + nf,
        "next_order_id": st["next_order_id"] + n_orders,
        "next_liq_id": st["next_liq_id"] + liqs.height,
        "key_last_used": last_used})
    stats = {"day": day.isoformat(), "trades": n_trades, "order_events": n_events,
             "api_requests": n_req, "liquidations": liqs.height,
             "paths": dict(liqs.group_by("path").len().sort("path").iter_rows()),
             "seconds": {"market": round(t_mkt - t_start, 2), "engine": round(t_eng - t_mkt, 2),
                         "flows": round(t_flow - t_eng, 2), "write": round(t_end - t_flow, 2),
                         "total": round(t_end - t_start, 2)}}
    return new_state, stats
