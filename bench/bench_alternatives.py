"""The project's slippage and forced-cost tables against the obvious alternatives: plain DuckDB
SQL and pandas.

    .venv/bin/python bench/bench_alternatives.py --home DIR --day 2026-11-04 [--runs 5]
    .venv/bin/python bench/bench_alternatives.py --home DIR --day 2026-11-04 --scale large

What it measures. Two of the report's tables (DESIGN 4.1 and 4.2) are computed three ways in the
same process, from the same day's inputs (liquidations, trades, book_depth, instruments,
risk_tiers, read from the validated Parquet partitions under DIR/data/validated):

- "slippage_by_path": per liquidation its fills' VWAP, slippage vs the mark at the trigger,
  fills beyond bankruptcy and the as-of book depth (the per-liquidation executions table), then
  per date x symbol x path (plus the ALL roll-up) the counts, notional-weighted mean, p50 / p95 /
  p99, max and es95 of slippage, fill ratio, time to complete and the beyond-bankruptcy share;
- "forced_cost_by_path": the same executions, then per liquidation the cost rate (fee charged +
  slippage), equity lost, share of initial margin, share of the maintenance buffer and the
  position's tier (the forced_costs table), then per date x symbol x path (plus ALL) their
  sums and percentiles.

Each table is computed from the raw inputs every time (executions included), by
  project - venue_risk.metrics.slippage.liquidation_executions + slippage_by_path, and
            + forced_cost.forced_costs + forced_cost_by_path (as metric_jobs.liquidation_tables);
  duckdb  - one SQL statement per table (CTEs, window functions, ASOF JOIN for the book depth)
            over the Arrow tables registered with an in-memory connection, fetched as Arrow;
  pandas  - vectorized merges, groupbys, merge_asof, on frames converted with .to_pandas().
Loading the inputs, registering them with DuckDB and converting them to pandas are not timed.
(Repeated book_depth rows of one snapshot, which the dataset's primary key (ts, symbol,
percentage) rules out, count by their last row in the project and pandas; DuckDB's ASOF JOIN
would take any one of them.)

Before timing, the three results are checked equal: every column of both tables (and of the
per-liquidation executions and forced_costs tables they are built from), floats within 1e-9
relative (null and NaN count as equal: pandas has no null), everything else exactly; a
difference fails loudly naming the table, column and row. Then each method runs --runs times,
interleaved (the order rotates every round; the machine is shared), and a Markdown table gives
the median wall time (and the best), the rows in (the input rows the table reads) and rows/s.

If DIR has no validated data for the day, it is prepared first with the simulated venue:
`VENUE_RISK_HOME=DIR venue-risk run-day --date D` for each day from the genesis (2026-11-01 for
the demo scale; the day itself for --scale large) to D, with VENUE_RISK_SIM_SCALE=--scale and
VENUE_RISK_SIM_GENESIS=genesis. Nothing here assumes the demo's size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pandas as pd
import polars as pl

from venue_risk.metrics import forced_cost, slippage
from venue_risk.metrics.forced_cost import (COST_BY_PATH_SCHEMA, COSTS_SCHEMA, MMR_MATCH_RTOL,
                                            TIER_FROM_MMR, TIER_FROM_NOTIONAL)
from venue_risk.metrics.slippage import (ALL_SYMBOLS, BY_PATH_SCHEMA, EXECUTIONS_SCHEMA,
                                         NO_DEPTH_BIN, SIZE_TO_DEPTH_BINS)
from venue_risk.schema import LIQUIDATION_PATHS

INPUTS = ("liquidations", "trades", "book_depth", "instruments", "risk_tiers")
#: Inputs each table reads (for "rows in").
TABLE_INPUTS = {
    "slippage_by_path": ("liquidations", "trades", "book_depth"),
    "forced_cost_by_path": ("liquidations", "trades", "book_depth", "instruments", "risk_tiers"),
}
RTOL = 1e-9
METHODS = ("project", "duckdb", "pandas")

#: Book-depth band the size-to-depth ratio uses (percent), and its matching tolerance.
DEPTH_BAND, BAND_TOL = 1.0, 1e-9


# --------------------------------------------------------------------------------------------
# inputs


def load_inputs(home: Path, day: dt.date) -> dict[str, pl.DataFrame]:
    """The day's validated partitions of the five inputs, as Polars frames."""
    base = home / "data" / "validated"
    return {name: pl.read_parquet(base / name / f"date={day.isoformat()}" / "data.parquet")
            for name in INPUTS}


def has_inputs(home: Path, day: dt.date) -> bool:
    base = home / "data" / "validated"
    return all((base / n / f"date={day.isoformat()}" / "data.parquet").exists() for n in INPUTS)


def prepare(home: Path, day: dt.date, scale: str, genesis: dt.date) -> None:
    """Simulate and run the pipeline for every day from genesis to day not yet in home."""
    env = dict(os.environ, VENUE_RISK_HOME=str(home), VENUE_RISK_SIM_SCALE=scale,
               VENUE_RISK_SIM_GENESIS=genesis.isoformat())
    cli = Path(sys.executable).with_name("venue-risk")
    d = genesis
    while d <= day:
        if not has_inputs(home, d):
            print(f"preparing {d} in {home} (scale {scale}) ...", file=sys.stderr, flush=True)
            subprocess.run([str(cli), "run-day", "--date", d.isoformat()], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        d += dt.timedelta(days=1)


def replicate(data: dict[str, pl.DataFrame], k: int) -> dict[str, pl.DataFrame]:
    """The inputs tiled k times, copy i under symbols "<symbol>~i" and with liquidation and trade
    ids shifted past the originals: k times the rows with the day's own shape, to see how the
    methods scale (a stand-in until a larger simulated scale is at hand). Time-stamped inputs
    come back in time order, as the warehouse's partitions are."""
    if k <= 1:
        return data
    lid = int(data["liquidations"]["liquidation_id"].max() or 0) + 1
    tid = int(data["trades"]["trade_id"].max() or 0) + 1
    out: dict[str, list[pl.DataFrame]] = {n: [] for n in data}
    for i in range(k):
        sym = pl.col("symbol") + f"~{i}" if i else pl.col("symbol")
        for name, frame in data.items():
            cols = [sym.alias("symbol")]
            if "liquidation_id" in frame.columns:
                cols.append(pl.col("liquidation_id") + i * lid)
            if name == "trades":
                cols.append(pl.col("trade_id") + i * tid)
            out[name].append(frame.with_columns(cols))
    when = {"liquidations": "ts_trigger", "trades": "ts", "book_depth": "ts"}
    # in time order, as the warehouse's partitions are
    return {name: pl.concat(frames).sort(when[name], maintain_order=True) if name in when
            else pl.concat(frames) for name, frames in out.items()}


def duckdb_connection(data: dict[str, pl.DataFrame]) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the inputs registered as Arrow tables (session time zone
    UTC, so a trigger's date is its UTC date)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, frame in data.items():
        con.register(name, frame.to_arrow())
    return con


def pandas_inputs(data: dict[str, pl.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: frame.to_pandas() for name, frame in data.items()}


# --------------------------------------------------------------------------------------------
# project


def project_executions(data: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return slippage.liquidation_executions(data["liquidations"], data["trades"], data["book_depth"])


def project_costs(data: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return forced_cost.forced_costs(project_executions(data), data["instruments"], data["risk_tiers"])


def project_slippage_by_path(data: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return slippage.slippage_by_path(project_executions(data))


def project_forced_cost_by_path(data: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return forced_cost.forced_cost_by_path(project_costs(data))


# --------------------------------------------------------------------------------------------
# DuckDB


def _path_rank_sql(col: str = "path") -> str:
    whens = " ".join(f"WHEN '{p}' THEN {i}" for i, p in enumerate(LIQUIDATION_PATHS))
    return f"CASE {col} {whens} ELSE {len(LIQUIDATION_PATHS)} END"


def _bin_sql(col: str) -> str:
    inf = "CAST('Infinity' AS DOUBLE)"
    whens = " ".join(
        f"WHEN {col} >= {lo!r} AND {col} < {inf if math.isinf(hi) else repr(hi)} THEN '{label}'"
        for label, lo, hi in SIZE_TO_DEPTH_BINS)
    return (f"CASE WHEN {col} IS NULL OR isnan({col}) THEN '{NO_DEPTH_BIN}' {whens} "
            f"ELSE '{SIZE_TO_DEPTH_BINS[-1][0]}' END")


EXECUTIONS_CTES = f"""
fills AS (
    SELECT t.liquidation_id, t.price, t.qty,
           coalesce(CASE WHEN l.side = 'sell' THEN t.price < l.bankruptcy_price
                         ELSE t.price > l.bankruptcy_price END, false) AS beyond,
           abs(t.price - l.bankruptcy_price) * t.qty AS gap
    FROM trades t JOIN liquidations l ON t.liquidation_id = l.liquidation_id
),
fill_stats AS (
    SELECT liquidation_id, count(*) AS fill_count, sum(price * qty) AS filled_notional,
           sum(qty) AS fills_qty,
           sum(qty) FILTER (WHERE beyond) AS beyond_qty,
           sum(gap) FILTER (WHERE beyond) AS shortfall
    FROM fills GROUP BY liquidation_id
),
depth AS (
    SELECT symbol, CASE WHEN percentage < 0 THEN 'sell' ELSE 'buy' END AS side,
           ts AS depth_ts, notional AS depth_notional_1pct
    FROM book_depth WHERE abs(abs(percentage) - {DEPTH_BAND}) < {BAND_TOL}
),
base AS (
    SELECT l.*, coalesce(f.fill_count, 0) AS fill_count,
           coalesce(f.filled_notional, 0.0) AS filled_notional,
           coalesce(f.beyond_qty, 0.0) AS beyond_bankruptcy_qty,
           coalesce(f.shortfall, 0.0) AS shortfall,
           CASE WHEN f.fills_qty > 0 THEN f.filled_notional / f.fills_qty END AS vwap,
           CAST(l.ts_trigger AS DATE) AS date,
           l.qty * l.mark_price AS order_notional,
           l.filled_qty * l.mark_price AS filled_notional_at_mark,
           l.filled_qty / l.qty AS fill_ratio,
           (epoch_us(l.ts_done) - epoch_us(l.ts_trigger)) / 1e6 AS time_to_complete_s
    FROM liquidations l LEFT JOIN fill_stats f ON f.liquidation_id = l.liquidation_id
),
with_depth AS (
    SELECT b.*,
           CASE WHEN b.side = 'sell' THEN b.mark_price - b.vwap ELSE b.vwap - b.mark_price END
               / b.mark_price * 1e4 AS slippage_bps,
           d.depth_ts, d.depth_notional_1pct,
           b.order_notional / d.depth_notional_1pct AS size_to_depth
    FROM base b ASOF LEFT JOIN depth d
        ON b.symbol = d.symbol AND b.side = d.side AND b.ts_trigger >= d.depth_ts
),
executions AS (
    SELECT *, {_bin_sql("size_to_depth")} AS size_to_depth_bin FROM with_depth
)"""


def _slippage_group_sql(keys: list[str], weight: str, symbol: str) -> str:
    k = ", ".join(keys)
    s, fn = "slippage_bps", "filled_notional"
    fn_s = f"sum({fn}) FILTER (WHERE {s} IS NOT NULL)"
    filled_w = f"sum(filled_qty * {weight})"
    return f"""
    SELECT date, {symbol} AS symbol, path,
           count(*) AS count,
           count(*) FILTER (WHERE fill_count > 0) AS count_filled,
           sum({fn}) AS notional,
           CASE WHEN {fn_s} > 0 THEN sum({s} * {fn}) / {fn_s} END AS slippage_bps_wmean,
           quantile_cont({s}, 0.50) AS slippage_bps_p50,
           any_value(_p95) AS slippage_bps_p95,
           quantile_cont({s}, 0.99) AS slippage_bps_p99,
           max({s}) AS slippage_bps_max,
           avg({s}) FILTER (WHERE {s} >= _p95 - 1e-9 * greatest(abs(_p95), 1.0)) AS slippage_bps_es95,
           CASE WHEN sum(qty * {weight}) > 0 THEN {filled_w} / sum(qty * {weight}) END AS fill_ratio,
           quantile_cont(time_to_complete_s, 0.50) AS ttc_p50_s,
           quantile_cont(time_to_complete_s, 0.95) AS ttc_p95_s,
           CASE WHEN {filled_w} > 0 THEN sum(beyond_bankruptcy_qty * {weight}) / {filled_w} END
               AS beyond_bankruptcy_share,
           count(*) FILTER (WHERE beyond_bankruptcy_qty > 0) AS beyond_bankruptcy_count,
           sum(shortfall) AS shortfall
    FROM (SELECT *, quantile_cont({s}, 0.95) OVER (PARTITION BY {k}) AS _p95 FROM executions)
    GROUP BY {k}"""


ORDER_BY_PATH = (f"ORDER BY date, symbol = '{ALL_SYMBOLS}', symbol, {_path_rank_sql()}, path")

SLIPPAGE_BY_PATH_SQL = f"""
WITH {EXECUTIONS_CTES},
by_path AS (
    {_slippage_group_sql(["date", "symbol", "path"], "1.0", "symbol")}
    UNION ALL
    {_slippage_group_sql(["date", "path"], "mark_price", f"'{ALL_SYMBOLS}'")}
)
SELECT * FROM by_path {ORDER_BY_PATH}"""

COSTS_CTES = f"""
tiers AS (
    SELECT symbol, CAST(tier AS BIGINT) AS tier, CAST(notional_floor AS DOUBLE) AS notional_floor,
           CAST(notional_cap AS DOUBLE) AS notional_cap,
           CAST(maintenance_margin_rate AS DOUBLE) AS tier_mmr,
           CAST(coalesce(lead(maintenance_margin_rate) OVER w - maintenance_margin_rate,
                         maintenance_margin_rate - lag(maintenance_margin_rate) OVER w) AS DOUBLE)
               AS mmr_increment
    FROM risk_tiers WINDOW w AS (PARTITION BY symbol ORDER BY tier)
),
fees AS (
    SELECT symbol, first(liquidation_fee_rate) AS liquidation_fee_rate
    FROM instruments GROUP BY symbol
),
cost_base AS (
    SELECT e.*, f.liquidation_fee_rate, e.qty * e.mark_price AS position_notional
    FROM executions e LEFT JOIN fees f ON f.symbol = e.symbol
),
tier_hits AS (
    SELECT liquidation_id,
           count(*) FILTER (WHERE hit) AS n_rate,
           min(tier) FILTER (WHERE hit) AS by_rate,
           min(tier) FILTER (WHERE notional_floor <= notional AND notional < notional_cap) AS by_range,
           min(tier) AS first_tier, max(tier) AS last_tier,
           arg_min(notional_floor, tier) AS first_floor,
           any_value(notional) AS notional
    FROM (SELECT c.liquidation_id, abs(c.position_notional) AS notional, t.tier,
                 t.notional_floor, t.notional_cap,
                 coalesce(abs(t.tier_mmr - c.maintenance_margin_rate)
                          <= {MMR_MATCH_RTOL!r} * greatest(abs(c.maintenance_margin_rate), abs(t.tier_mmr)),
                          false) AS hit
          FROM cost_base c JOIN tiers t ON t.symbol = c.symbol)
    GROUP BY liquidation_id
),
position_tier AS (
    SELECT liquidation_id, n_rate, by_rate,
           CASE WHEN notional IS NULL OR isnan(notional) THEN NULL
                WHEN by_range IS NOT NULL THEN by_range
                WHEN notional < first_floor THEN first_tier
                ELSE last_tier END AS by_notional
    FROM tier_hits
),
costs AS (
    SELECT c.*,
           CASE WHEN p.n_rate = 1 THEN p.by_rate ELSE p.by_notional END AS tier,
           CASE WHEN p.n_rate = 1 THEN '{TIER_FROM_MMR}'
                WHEN p.by_notional IS NOT NULL THEN '{TIER_FROM_NOTIONAL}' END AS tier_basis,
           t.tier_mmr, t.mmr_increment,
           CASE WHEN c.filled_notional_at_mark > 0 THEN c.fee / c.filled_notional_at_mark END
               AS fee_rate_charged,
           fee_rate_charged + c.slippage_bps / 1e4 AS cost_rate,
           cost_rate * c.filled_notional_at_mark AS equity_lost,
           cost_rate * c.leverage AS pct_initial_margin,
           cost_rate / c.maintenance_margin_rate AS buffer_share,
           cost_rate / t.mmr_increment AS margin_steps
    FROM cost_base c
    LEFT JOIN position_tier p ON p.liquidation_id = c.liquidation_id
    LEFT JOIN tiers t ON t.symbol = c.symbol
        AND t.tier = (CASE WHEN p.n_rate = 1 THEN p.by_rate ELSE p.by_notional END)
)"""


def _cost_group_sql(keys: list[str], symbol: str) -> str:
    w = "sum(filled_notional_at_mark) FILTER (WHERE cost_rate IS NOT NULL)"
    return f"""
    SELECT date, {symbol} AS symbol, path,
           count(*) AS count,
           count(cost_rate) AS count_filled,
           coalesce({w}, 0.0) AS filled_notional_at_mark,
           coalesce(sum(equity_lost), 0.0) AS equity_lost,
           CASE WHEN {w} > 0 THEN sum(equity_lost) / {w} END AS cost_rate_wmean,
           quantile_cont(cost_rate, 0.95) AS cost_rate_p95,
           quantile_cont(pct_initial_margin, 0.50) AS pct_initial_margin_p50,
           quantile_cont(pct_initial_margin, 0.95) AS pct_initial_margin_p95,
           quantile_cont(buffer_share, 0.50) AS buffer_share_p50,
           quantile_cont(buffer_share, 0.95) AS buffer_share_p95,
           max(buffer_share) AS buffer_share_max,
           count(*) FILTER (WHERE buffer_share > 1) AS buffer_exceeded_count
    FROM costs GROUP BY {", ".join(keys)}"""


FORCED_COST_BY_PATH_SQL = f"""
WITH {EXECUTIONS_CTES},
{COSTS_CTES},
by_path AS (
    {_cost_group_sql(["date", "symbol", "path"], "symbol")}
    UNION ALL
    {_cost_group_sql(["date", "path"], f"'{ALL_SYMBOLS}'")}
)
SELECT * FROM by_path {ORDER_BY_PATH}"""

EXECUTIONS_SQL = f"WITH {EXECUTIONS_CTES} SELECT * FROM executions ORDER BY date, ts_trigger, liquidation_id"
COSTS_SQL = f"WITH {EXECUTIONS_CTES}, {COSTS_CTES} SELECT * FROM costs ORDER BY date, liquidation_id"


def duckdb_slippage_by_path(con: duckdb.DuckDBPyConnection):
    return con.sql(SLIPPAGE_BY_PATH_SQL).to_arrow_table()


def duckdb_forced_cost_by_path(con: duckdb.DuckDBPyConnection):
    return con.sql(FORCED_COST_BY_PATH_SQL).to_arrow_table()


# --------------------------------------------------------------------------------------------
# pandas

PATH_RANK = {p: i for i, p in enumerate(LIQUIDATION_PATHS)}


def pandas_executions(p: dict[str, pd.DataFrame]) -> pd.DataFrame:
    liq, trades, book = p["liquidations"], p["trades"], p["book_depth"]
    fills = trades.loc[trades["liquidation_id"].notna(), ["liquidation_id", "price", "qty"]]
    fills = fills.astype({"liquidation_id": liq["liquidation_id"].dtype})
    f = fills.merge(liq[["liquidation_id", "side", "bankruptcy_price"]], on="liquidation_id")
    bp = f["bankruptcy_price"]
    beyond = np.where(f["side"] == "sell", f["price"] < bp, f["price"] > bp)
    f["pq"] = f["price"] * f["qty"]
    f["bq"] = f["qty"].where(beyond, 0.0)
    f["gap"] = ((f["price"] - bp).abs() * f["qty"]).where(beyond, 0.0)
    stats = f.groupby("liquidation_id", sort=False).agg(
        fill_count=("qty", "size"), filled_notional=("pq", "sum"), fills_qty=("qty", "sum"),
        beyond_bankruptcy_qty=("bq", "sum"), shortfall=("gap", "sum"))

    ex = liq.merge(stats, left_on="liquidation_id", right_index=True, how="left")
    ex["fill_count"] = ex["fill_count"].fillna(0).astype("int64")
    for c in ("filled_notional", "beyond_bankruptcy_qty", "shortfall"):
        ex[c] = ex[c].fillna(0.0)
    ex["vwap"] = (ex["filled_notional"] / ex["fills_qty"]).where(ex["fills_qty"] > 0)
    mark = ex["mark_price"]
    ex["date"] = ex["ts_trigger"].dt.normalize()
    ex["order_notional"] = ex["qty"] * mark
    ex["filled_notional_at_mark"] = ex["filled_qty"] * mark
    ex["fill_ratio"] = ex["filled_qty"] / ex["qty"]
    ex["time_to_complete_s"] = ((ex["ts_done"] - ex["ts_trigger"]) // pd.Timedelta(1, "us")) / 1e6
    ex["slippage_bps"] = np.where(ex["side"] == "sell", mark - ex["vwap"], ex["vwap"] - mark) / mark * 1e4

    band = book[((book["percentage"].abs() - DEPTH_BAND).abs() < BAND_TOL)]
    depth = pd.DataFrame({
        "symbol": band["symbol"],
        "side": pd.Series(np.where(band["percentage"] < 0, "sell", "buy"), index=band.index,
                          dtype=ex["side"].dtype),
        "depth_ts": band["ts"], "depth_notional_1pct": band["notional"]})
    depth = depth.drop_duplicates(["symbol", "side", "depth_ts"], keep="last").sort_values("depth_ts")
    ex = ex.sort_values("ts_trigger", kind="stable")
    timed = ex["ts_trigger"].notna()
    ex = pd.concat([
        pd.merge_asof(ex[timed], depth, left_on="ts_trigger", right_on="depth_ts",
                      by=["symbol", "side"], direction="backward"),
        ex[~timed]], ignore_index=True)
    ratio = ex["order_notional"] / ex["depth_notional_1pct"]
    ex["size_to_depth"] = ratio
    ex["size_to_depth_bin"] = np.select(
        [ratio.isna().to_numpy()] + [((ratio >= lo) & (ratio < hi)).to_numpy()
                                     for _, lo, hi in SIZE_TO_DEPTH_BINS],
        [NO_DEPTH_BIN] + [b[0] for b in SIZE_TO_DEPTH_BINS], default=SIZE_TO_DEPTH_BINS[-1][0])
    return ex.sort_values(["date", "ts_trigger", "liquidation_id"], na_position="last",
                          ignore_index=True)


def _order_by_path(out: pd.DataFrame) -> pd.DataFrame:
    out = out.assign(_all=out["symbol"] == ALL_SYMBOLS,
                     _rank=out["path"].map(PATH_RANK).fillna(len(LIQUIDATION_PATHS)))
    out = out.sort_values(["date", "_all", "symbol", "_rank", "path"], na_position="last",
                          ignore_index=True).drop(columns=["_all", "_rank"])
    out["date"] = out["date"].dt.date
    return out


def _pandas_slippage_group(ex: pd.DataFrame, keys: list[str], weight) -> pd.DataFrame:
    s, fn = ex["slippage_bps"], ex["filled_notional"]
    x = ex[keys].assign(
        s=s, fn=fn, sfn=s * fn, fn_s=fn.where(s.notna()), filled=ex["fill_count"] > 0,
        qw=ex["qty"] * weight, fw=ex["filled_qty"] * weight,
        bw=ex["beyond_bankruptcy_qty"] * weight, beyond=ex["beyond_bankruptcy_qty"] > 0,
        shortfall=ex["shortfall"], ttc=ex["time_to_complete_s"])
    g = x.groupby(keys, sort=False, dropna=False)
    p95 = g["s"].transform("quantile", 0.95)
    x["tail"] = s.where(s >= p95 - 1e-9 * p95.abs().clip(lower=1.0))
    g = x.groupby(keys, sort=False, dropna=False)
    out = g.agg(count=("s", "size"), count_filled=("filled", "sum"), notional=("fn", "sum"),
                sfn=("sfn", "sum"), fn_s=("fn_s", "sum"), slippage_bps_max=("s", "max"),
                slippage_bps_es95=("tail", "mean"), qw=("qw", "sum"), fw=("fw", "sum"),
                bw=("bw", "sum"), beyond_bankruptcy_count=("beyond", "sum"),
                shortfall=("shortfall", "sum"))
    sq = g["s"].quantile([0.50, 0.95, 0.99]).unstack()
    tq = g["ttc"].quantile([0.50, 0.95]).unstack()
    out["slippage_bps_wmean"] = (out["sfn"] / out["fn_s"]).where(out["fn_s"] > 0)
    out["slippage_bps_p50"], out["slippage_bps_p95"], out["slippage_bps_p99"] = sq[0.50], sq[0.95], sq[0.99]
    out["fill_ratio"] = (out["fw"] / out["qw"]).where(out["qw"] > 0)
    out["ttc_p50_s"], out["ttc_p95_s"] = tq[0.50], tq[0.95]
    out["beyond_bankruptcy_share"] = (out["bw"] / out["fw"]).where(out["fw"] > 0)
    out = out.reset_index()
    if "symbol" not in keys:
        out["symbol"] = ALL_SYMBOLS
    return out[list(BY_PATH_SCHEMA)]


def pandas_slippage_by_path(p: dict[str, pd.DataFrame]) -> pd.DataFrame:
    ex = pandas_executions(p)
    return _order_by_path(pd.concat([
        _pandas_slippage_group(ex, ["date", "symbol", "path"], 1.0),
        _pandas_slippage_group(ex, ["date", "path"], ex["mark_price"])], ignore_index=True))


def pandas_costs(p: dict[str, pd.DataFrame], ex: pd.DataFrame | None = None) -> pd.DataFrame:
    ex = pandas_executions(p) if ex is None else ex
    fees = p["instruments"][["symbol", "liquidation_fee_rate"]].drop_duplicates("symbol")
    rt = p["risk_tiers"].sort_values(["symbol", "tier"])
    mmr = rt["maintenance_margin_rate"].astype("float64")
    by_sym = mmr.groupby(rt["symbol"])
    tiers = pd.DataFrame({
        "symbol": rt["symbol"], "tier": rt["tier"].astype("int64"),
        "notional_floor": rt["notional_floor"].astype("float64"),
        "notional_cap": rt["notional_cap"].astype("float64"), "tier_mmr": mmr,
        "mmr_increment": (by_sym.shift(-1) - mmr).fillna(mmr - by_sym.shift(1))})

    c = ex.merge(fees, on="symbol", how="left")
    c["position_notional"] = c["qty"] * c["mark_price"]
    j = c[["liquidation_id", "symbol", "maintenance_margin_rate", "position_notional"]].merge(
        tiers, on="symbol")
    rec, tmmr = j["maintenance_margin_rate"], j["tier_mmr"]
    notional = j["position_notional"].abs()
    hit = (tmmr - rec).abs() <= MMR_MATCH_RTOL * np.maximum(rec.abs(), tmmr.abs())
    in_range = (j["notional_floor"] <= notional) & (notional < j["notional_cap"])
    j = j.assign(hit=hit, by_rate=j["tier"].where(hit), by_range=j["tier"].where(in_range),
                 notional=notional)
    pt = j.groupby("liquidation_id", sort=False).agg(
        n_rate=("hit", "sum"), by_rate=("by_rate", "min"), by_range=("by_range", "min"),
        first=("tier", "first"), last=("tier", "last"), first_floor=("notional_floor", "first"),
        notional=("notional", "first"))
    by_notional = np.select(
        [pt["notional"].isna(), pt["by_range"].notna(), pt["notional"] < pt["first_floor"]],
        [np.nan, pt["by_range"], pt["first"]], default=pt["last"])
    from_rate = pt["n_rate"] == 1
    pt["tier"] = np.where(from_rate, pt["by_rate"], by_notional)
    pt["tier_basis"] = np.where(from_rate, TIER_FROM_MMR,
                                np.where(np.isnan(by_notional), None, TIER_FROM_NOTIONAL))
    c = c.merge(pt[["tier", "tier_basis"]], left_on="liquidation_id", right_index=True, how="left")
    c = c.merge(tiers[["symbol", "tier", "tier_mmr", "mmr_increment"]].astype({"tier": "float64"}),
                on=["symbol", "tier"], how="left")
    fnam = c["filled_notional_at_mark"]
    c["fee_rate_charged"] = (c["fee"] / fnam).where(fnam > 0)
    cost = c["fee_rate_charged"] + c["slippage_bps"] / 1e4
    c["cost_rate"] = cost
    c["equity_lost"] = cost * fnam
    c["pct_initial_margin"] = cost * c["leverage"]
    c["buffer_share"] = cost / c["maintenance_margin_rate"]
    c["margin_steps"] = cost / c["mmr_increment"]
    return c.sort_values(["date", "liquidation_id"], na_position="last", ignore_index=True)


def _pandas_cost_group(c: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    filled = c["cost_rate"].notna()
    x = c[keys].assign(
        filled=filled, w=c["filled_notional_at_mark"].where(filled), el=c["equity_lost"],
        cost=c["cost_rate"], pim=c["pct_initial_margin"], bs=c["buffer_share"],
        exceeded=c["buffer_share"] > 1)
    g = x.groupby(keys, sort=False, dropna=False)
    out = g.agg(count=("filled", "size"), count_filled=("filled", "sum"),
                filled_notional_at_mark=("w", "sum"), equity_lost=("el", "sum"),
                buffer_share_max=("bs", "max"), buffer_exceeded_count=("exceeded", "sum"))
    out["cost_rate_wmean"] = (out["equity_lost"] / out["filled_notional_at_mark"]).where(
        out["filled_notional_at_mark"] > 0)
    out["cost_rate_p95"] = g["cost"].quantile(0.95)
    pq = g["pim"].quantile([0.50, 0.95]).unstack()
    bq = g["bs"].quantile([0.50, 0.95]).unstack()
    out["pct_initial_margin_p50"], out["pct_initial_margin_p95"] = pq[0.50], pq[0.95]
    out["buffer_share_p50"], out["buffer_share_p95"] = bq[0.50], bq[0.95]
    out = out.reset_index()
    if "symbol" not in keys:
        out["symbol"] = ALL_SYMBOLS
    return out[list(COST_BY_PATH_SCHEMA)]


def pandas_forced_cost_by_path(p: dict[str, pd.DataFrame]) -> pd.DataFrame:
    c = pandas_costs(p)
    return _order_by_path(pd.concat([_pandas_cost_group(c, ["date", "symbol", "path"]),
                                     _pandas_cost_group(c, ["date", "path"])], ignore_index=True))


# --------------------------------------------------------------------------------------------
# equality


def to_polars(result, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A method's result (Polars, Arrow or pandas) as a Polars frame in `schema` (NaN -> null for
    pandas, which has no null)."""
    if isinstance(result, pd.DataFrame):
        result = result.copy()
        if "date" in result and pd.api.types.is_datetime64_any_dtype(result["date"]):
            result["date"] = result["date"].dt.date
        frame = pl.from_pandas(result[[c for c in schema if c in result.columns]], nan_to_null=True)
    elif isinstance(result, pl.DataFrame):
        frame = result
    else:
        frame = pl.from_arrow(result)
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise AssertionError(f"missing column(s) {missing}")
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def assert_same(table: str, method: str, ref: pl.DataFrame, got, schema: dict[str, pl.DataType],
                keys: tuple[str, ...] = ("date", "symbol", "path"), rtol: float = RTOL) -> None:
    """Raise AssertionError naming table, column and row where `got` differs from `ref` (the
    project's): floats beyond `rtol` relative (null and NaN alike), anything else unequal."""
    try:
        got = to_polars(got, schema)
    except AssertionError as e:
        raise AssertionError(f"{table} ({method}): {e}") from None
    ref = ref.select([pl.col(c).cast(t) for c, t in schema.items()])
    if ref.height != got.height:
        raise AssertionError(f"{table} ({method}): {got.height} rows, project has {ref.height}")
    for col, dtype in schema.items():
        a, b = ref[col], got[col]
        if dtype.is_float():
            a_null, b_null = a.is_null() | a.is_nan(), b.is_null() | b.is_nan()
            scale = pl.select(pl.max_horizontal(a.abs(), b.abs())).to_series()
            close = ((a == b) | ((a - b).abs() <= rtol * scale)).fill_null(False)
            bad = (a_null != b_null) | (~a_null & ~b_null & ~close)
        else:
            bad = a.ne_missing(b)
        if bad.any():
            i = bad.arg_true()[0]
            where = ", ".join(f"{k}={ref[k][i]!r}" for k in keys if k in ref.columns)
            raise AssertionError(
                f"{table}: column {col!r} differs at row {i} ({where}): project {a[i]!r}, "
                f"{method} {b[i]!r} ({int(bad.sum())} row(s) differ)")


def all_results(data: dict[str, pl.DataFrame], con: duckdb.DuckDBPyConnection,
                pdata: dict[str, pd.DataFrame]) -> dict[str, dict[str, object]]:
    """Both tables and the per-liquidation tables they are built from, by every method."""
    p_ex = pandas_executions(pdata)
    return {
        "liquidation_executions": {
            "project": project_executions(data), "duckdb": con.sql(EXECUTIONS_SQL).to_arrow_table(),
            "pandas": p_ex},
        "forced_costs": {
            "project": project_costs(data), "duckdb": con.sql(COSTS_SQL).to_arrow_table(),
            "pandas": pandas_costs(pdata, p_ex)},
        "slippage_by_path": {
            "project": project_slippage_by_path(data), "duckdb": duckdb_slippage_by_path(con),
            "pandas": pandas_slippage_by_path(pdata)},
        "forced_cost_by_path": {
            "project": project_forced_cost_by_path(data), "duckdb": duckdb_forced_cost_by_path(con),
            "pandas": pandas_forced_cost_by_path(pdata)},
    }


SCHEMAS = {"liquidation_executions": (EXECUTIONS_SCHEMA, ("liquidation_id",)),
           "forced_costs": (COSTS_SCHEMA, ("liquidation_id",)),
           "slippage_by_path": (BY_PATH_SCHEMA, ("date", "symbol", "path")),
           "forced_cost_by_path": (COST_BY_PATH_SCHEMA, ("date", "symbol", "path"))}


def check_all(data: dict[str, pl.DataFrame], con: duckdb.DuckDBPyConnection | None = None,
              pdata: dict[str, pd.DataFrame] | None = None) -> dict[str, int]:
    """Compute every table every way and assert the DuckDB and pandas results equal the
    project's; returns the row count of each table."""
    con = con or duckdb_connection(data)
    pdata = pdata or pandas_inputs(data)
    rows = {}
    for table, results in all_results(data, con, pdata).items():
        schema, keys = SCHEMAS[table]
        ref = results["project"]
        for method in ("duckdb", "pandas"):
            assert_same(table, method, ref, results[method], schema, keys)
        rows[table] = ref.height
    return rows


# --------------------------------------------------------------------------------------------
# timing


def time_interleaved(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Wall times of each function, `runs` rounds; the order rotates every round."""
    labels = list(fns)
    times: dict[str, list[float]] = {k: [] for k in labels}
    for r in range(runs):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            gc.collect()
            t0 = time.perf_counter()
            fns[label]()
            times[label].append(time.perf_counter() - t0)
    return times


def bench(data: dict[str, pl.DataFrame], runs: int) -> list[dict]:
    con = duckdb_connection(data)
    pdata = pandas_inputs(data)
    fns = {
        ("slippage_by_path", "project"): lambda: project_slippage_by_path(data),
        ("slippage_by_path", "duckdb"): lambda: duckdb_slippage_by_path(con),
        ("slippage_by_path", "pandas"): lambda: pandas_slippage_by_path(pdata),
        ("forced_cost_by_path", "project"): lambda: project_forced_cost_by_path(data),
        ("forced_cost_by_path", "duckdb"): lambda: duckdb_forced_cost_by_path(con),
        ("forced_cost_by_path", "pandas"): lambda: pandas_forced_cost_by_path(pdata),
    }
    for fn in fns.values():  # warm-up (imports, DuckDB plan caches, Polars thread pool)
        fn()
    times = time_interleaved(fns, runs)
    rows = []
    for (table, method), ts in times.items():
        rows_in = sum(data[n].height for n in TABLE_INPUTS[table])
        med = statistics.median(ts)
        rows.append(dict(table=table, method=method, median_s=med, best_s=min(ts), rows_in=rows_in,
                         rows_per_s=rows_in / med if med > 0 else math.inf))
    return rows


def markdown(rows: list[dict], runs: int) -> str:
    out = [f"| table | method | wall ms (median of {runs}) | best ms | rows in | rows/s | vs project |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        proj = next(x for x in rows if x["table"] == r["table"] and x["method"] == "project")
        out.append(f"| {r['table']} | {r['method']} | {r['median_s'] * 1e3:.1f} | {r['best_s'] * 1e3:.1f} "
                   f"| {r['rows_in']:,} | {r['rows_per_s']:,.0f} | {r['median_s'] / proj['median_s']:.2f}x |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--day", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", default="demo")
    parser.add_argument("--replicate", type=int, default=1, metavar="K",
                        help="tile the day's inputs K times under renamed symbols (scaling check)")
    parser.add_argument("--genesis", type=dt.date.fromisoformat, default=None,
                        help="first simulated day (default 2026-11-01 for demo, the day otherwise)")
    args = parser.parse_args(argv)
    genesis = args.genesis or (dt.date(2026, 11, 1) if args.scale == "demo" else args.day)
    home = args.home.resolve()
    if not has_inputs(home, args.day):
        home.mkdir(parents=True, exist_ok=True)
        prepare(home, args.day, args.scale, genesis)

    data = replicate(load_inputs(home, args.day), args.replicate)
    sizes = ", ".join(f"{n} {data[n].height:,}" for n in INPUTS)
    tiled = f" x{args.replicate} (tiled)" if args.replicate > 1 else ""
    print(f"# {args.day}{tiled} ({home}, scale {args.scale}): {sizes}\n")
    t0 = time.perf_counter()
    counts = check_all(data)
    print(f"equality: OK - DuckDB and pandas equal the project on every column of "
          + ", ".join(f"{t} ({n} rows)" for t, n in counts.items())
          + f" (floats within {RTOL:g} relative; checked in {time.perf_counter() - t0:.1f} s)\n")
    rows = bench(data, args.runs)
    print(markdown(rows, args.runs))
    slow = [f"{r['table']}: project {p['median_s'] * 1e3:.1f} ms vs {r['method']} {r['median_s'] * 1e3:.1f} ms"
            for r in rows if r["method"] != "project"
            for p in rows if p["table"] == r["table"] and p["method"] == "project"
            if p["median_s"] >= r["median_s"]]
    if slow:
        print("\nproject NOT faster than an alternative: " + "; ".join(slow))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
