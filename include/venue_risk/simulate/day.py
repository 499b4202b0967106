"""One simulated day: plan incidents, generate the market, run the engine per symbol, build and
write every canonical dataset plus the ground truth, return the end-of-day state."""

from __future__ import annotations

import datetime as dt
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
from venue_risk.simulate.engine import SymbolBook, run_symbol
from venue_risk.simulate.incidents import LONG_BUILD, DayPlan, Incident, apply_incidents

ENGINE_COLS = ("ts", "price", "qty", "buy", "taker", "maker", "taker_fee", "maker_fee", "liq",
               "taker_order", "maker_kind")


def _epoch_us(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc).timestamp()) * 1_000_000


def _ts(col: str | pl.Expr, us0: int) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    return pl.from_epoch(e + us0, time_unit="us").dt.replace_time_zone("UTC")


def _write(out: Path, name: str, day: dt.date, frame: pl.DataFrame) -> None:
    path = Path(out) / name / f"date={day.isoformat()}" / "data.parquet"
    write_parquet_atomic(schema.conform(name, frame), path)


def simulate_day(scale: Scale, acc: Accounts, day: dt.date, st: dict, seed: int,
                 incidents: list[Incident], anchor: dt.date, out: Path) -> tuple[dict, dict]:
    """Simulate `day` from state `st`; writes its files; returns (new state, timing/stats)."""
    t_start = time.perf_counter()
    ordl = day.toordinal()
    us0 = _epoch_us(day)
    insts = scale.instruments
    syms = [i.symbol for i in insts]
    plan = DayPlan(day, insts)
    truths = apply_incidents(plan, incidents, anchor, np.random.default_rng([seed, ordl, 0]))
    mkts = market.generate(scale, plan, st["market"], np.random.default_rng([seed, ordl, 1]))
    t_mkt = time.perf_counter()
    cross_ev, frozen, sized = account_incidents.prepare_cross(plan, mkts, st, acc, scale)
    inject = {sym: list(plan.flags.get("engine", {}).get(sym, [])) + cross_ev.get(sym, []) for sym in syms}
    cash = st["wallet"].copy()
    new = {k: st[k].copy() for k in ("size", "entry", "margin", "lev")}
    results = []
    for k, mkt in enumerate(mkts):
        book = SymbolBook(*(new[x][:, k].copy() for x in ("size", "entry", "margin", "lev")))
        res = run_symbol(scale, mkt, book, cash, acc.isolated, acc.is_trader,
                         np.flatnonzero(acc.member[:, k]), acc.target[:, k], acc.mm_ids,
                         np.random.default_rng([seed, ordl, 2, k]), inject[syms[k]] or None, frozen or None)
        for x, arr in zip(("size", "entry", "margin", "lev"), (book.size, book.entry, book.margin, book.lev)):
            new[x][:, k] = arr
        results.append(res)
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
    # fills: global trade ids by (ts, symbol, engine order)
    fr = []
    for k, res in enumerate(results):
        f = pl.DataFrame({c: res.fills[c] for c in ENGINE_COLS},
                         schema={"ts": pl.Int64, "price": pl.Float64, "qty": pl.Float64, "buy": pl.Boolean,
                                 "taker": pl.Int64, "maker": pl.Int64, "taker_fee": pl.Float64,
                                 "maker_fee": pl.Float64, "liq": pl.Int64, "taker_order": pl.Int64,
                                 "maker_kind": pl.Int64})
        fr.append(f.with_columns(sym=pl.lit(k, pl.Int64), seq=pl.int_range(0, pl.len(), dtype=pl.Int64)))
    fills = pl.concat(fr).sort("ts", "sym", "seq").with_columns(
        trade_id=pl.int_range(0, pl.len(), dtype=pl.Int64) + st["next_trade_id"])
    fills = fills.join(liqs.select(sym="sym", liq="local", liquidation_id="liquidation_id"),
                       on=["sym", "liq"], how="left").sort("trade_id").rename({"taker_order": "taker_local"})
    takers = pl.concat([pl.DataFrame(res.orders, schema={
        "local": pl.Int64, "ts": pl.Int64, "account": pl.Int64, "buy": pl.Boolean, "type": pl.String,
        "tif": pl.String, "price": pl.Float64, "qty": pl.Float64, "reduce_only": pl.Boolean,
        "liq": pl.Int64, "post_only": pl.Boolean}).with_columns(sym=pl.lit(k, pl.Int64))
        for k, res in enumerate(results)])
    rng_f = np.random.default_rng([seed, ordl, 3])
    notes: dict = {}
    orders, events, fills = flows.build_orders(scale, fills, takers, mkts, acc, rng_f, st["next_order_id"],
                                               plan.flags, notes)
    keys, req, last_used = flows.build_api(acc, orders, events, dt.date.fromisoformat(st["genesis"]),
                                           day, us0, st["key_last_used"], rng_f, plan.flags, notes)
    account_incidents.resolve(truths, results, orders, fills, notes, syms, sized, us0)
    t_flow = time.perf_counter()

    sym_expr = pl.col("sym").replace_strict(dict(enumerate(syms)), return_dtype=pl.String)
    side = lambda c: pl.when(pl.col(c)).then(pl.lit("buy")).otherwise(pl.lit("sell"))  # noqa: E731
    W = lambda name, frame: _write(out, name, day, frame)  # noqa: E731

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
    trades = fills.select(
        ts=_ts("ts", us0), symbol=sym_expr, trade_id="trade_id", price="price", qty="qty",
        taker_side=side("buy"), taker_order_id="taker_order_id", maker_order_id="maker_order_id",
        taker_account="taker", maker_account="maker", taker_fee="taker_fee", maker_fee="maker_fee",
        liquidation_id="liquidation_id")
    W("trades", trades)
    W("order_events", events.select(
        ts=_ts("ts", us0), symbol=sym_expr, order_id="order_id", account="account", api_key_id="key",
        event="event", side=side("buy"), order_type="type", tif="tif", price=pl.col("price").fill_nan(None),
        qty="qty", cum_filled_qty="cum", reduce_only="reduce_only", post_only="post_only",
        reject_reason=pl.lit(None, pl.String)))
    # mark_index (last_price: the last trade at or before the second)
    mi, comps, depth, fund_rows, mm_rows = [], [], [], [], []
    sec_us = np.arange(SECONDS, dtype=np.int64) * 1_000_000
    for k, m in enumerate(mkts):
        f = fills.filter(pl.col("sym") == k)
        fts, fpx = f["ts"].to_numpy(), f["price"].to_numpy()
        j = np.searchsorted(fts, sec_us, side="right") - 1
        last = np.where(j >= 0, fpx[np.maximum(j, 0)] if len(fpx) else 0.0, st["market"][k]["last_price"])
        m.state["last_price"] = float(fpx[-1]) if len(fpx) else st["market"][k]["last_price"]
        mi.append(pl.DataFrame({"ts": sec_us, "symbol": syms[k], "mark_price": m.mark, "index_price": m.index,
                                "last_price": last, "best_bid": m.bid, "best_ask": m.ask}))
        w = np.asarray(m.inst.weights)
        comps.append(pl.DataFrame({"ts": m.comp_ts_us, "received_ts": m.comp_received_us, "symbol": syms[k],
                                   "source": np.asarray(m.inst.sources)[m.comp_source],
                                   "price": m.comp_price, "weight": w[m.comp_source]}))
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
        buckets = (f["ts"].to_numpy() // 300_000_000)
        qb = f["qty"].to_numpy()
        buy = f["buy"].to_numpy()
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
    W("index_components", pl.concat(comps).sort("received_ts", "symbol", "source")
      .with_columns(ts=_ts("ts", us0), received_ts=_ts("received_ts", us0)))
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
    W("api_keys", keys.sort("key_id").with_columns(
        created_at=_ts("created_at", 0), expires_at=_ts("expires_at", 0), last_used_at=_ts("last_used_at", 0)))
    W("api_requests", req.with_columns(ts=_ts("ts", us0)))
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
        "next_trade_id": st["next_trade_id"] + fills.height,
        "next_order_id": st["next_order_id"] + orders.height,
        "next_liq_id": st["next_liq_id"] + liqs.height,
        "key_last_used": last_used})
    stats = {"day": day.isoformat(), "trades": fills.height, "order_events": events.height,
             "api_requests": req.height, "liquidations": liqs.height,
             "paths": dict(liqs.group_by("path").len().sort("path").iter_rows()),
             "seconds": {"market": round(t_mkt - t_start, 2), "engine": round(t_eng - t_mkt, 2),
                         "flows": round(t_flow - t_eng, 2), "write": round(t_end - t_flow, 2),
                         "total": round(t_end - t_start, 2)}}
    return new_state, stats
