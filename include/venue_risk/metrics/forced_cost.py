"""Forced-execution cost of liquidations, insurance-fund flows and margin sensitivity
(DESIGN 4.2).

A liquidated account pays the venue's liquidation fee and loses whatever the forced execution
gives away against the mark price. Per liquidation the cost is expressed as a rate of the
position's notional, cost_rate = liquidation fee rate + slippage_bps / 10,000 (slippage signed,
positive = adverse), where the fee rate is the fee actually charged over the filled notional at
the trigger mark: the venue charges the instrument's rate but never more than the equity left
after the fills, so on small tiers, where the instrument's rate exceeds the maintenance margin
rate, the charged rate is lower. Then in four units a risk committee can weigh:

- equity lost (USDT) = cost_rate x filled quantity x mark price at the trigger = fee charged +
  adverse execution against the mark, (mark - VWAP) x filled quantity for a sell;
- share of the position's initial margin = cost_rate x leverage (initial margin is
  notional / leverage);
- share of the maintenance buffer = cost_rate / maintenance margin rate. The maintenance margin
  is the equity left between the liquidation price and the bankruptcy price, so a share above 1
  means the liquidation ended beyond bankruptcy and drew on the insurance fund;
- margin steps = cost_rate / the increase in maintenance margin rate from the position's tier to
  the next tier: how many tier steps of margin the forced execution consumed. The position's tier
  is the one whose maintenance margin rate is the rate recorded with the liquidation (the same
  rate the buffer share divides by), so a backstop or auction that takes over the small remainder
  of a position after incremental reductions keeps the position's tier; only where no tier, or
  more than one, has the recorded rate is the tier the one whose notional range holds the
  liquidated qty x mark (column tier_basis says which).

Insurance fund: daily inflow (fees kept by the fund), outflow (shortfalls of bankrupt fills),
net, and the fund's opening and closing balance, with a reconciliation check. A sensitivity table
shows what an extra 1, 2, 5 or 10 bps of forced-execution cost consumes at 5x to 100x leverage
on the venue's own tiers: at high leverage a few basis points of execution cost are a large part
of the margin the account posted.

Known limits: The cost is measured against the trigger mark, market move during the execution
included. The position's tier is inferred from the maintenance rate recorded with the
liquidation (tier_basis says when it fell back to the notional). The sensitivity table is
static: one position at the tier each leverage implies, no funding, no market move. Liquidations
are attributed to insurance-fund pools by symbol (one pool per symbol, one shared pool, or a
pools mapping); with no fund rows at all they go to the pool `unknown`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Sequence

import polars as pl

from venue_risk import margin
from venue_risk.errors import InputError
from venue_risk.metrics.frames import conform as _conform
from venue_risk.metrics.slippage import ALL_SYMBOLS, _order_keys

METHOD = __doc__

F64, I64, STR = pl.Float64, pl.Int64, pl.String

COSTS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "liquidation_id": I64,
    "symbol": STR,
    "path": STR,
    "side": STR,
    "account": I64,
    "leverage": F64,
    "maintenance_margin_rate": F64,
    "liquidation_fee_rate": F64,
    "fee_rate_charged": F64,
    "slippage_bps": F64,
    "filled_qty": F64,
    "filled_notional": F64,
    "filled_notional_at_mark": F64,
    "position_notional": F64,
    "tier": I64,
    "tier_mmr": F64,
    "mmr_increment": F64,
    "cost_rate": F64,
    "equity_lost": F64,
    "pct_initial_margin": F64,
    "buffer_share": F64,
    "margin_steps": F64,
    "tier_basis": STR,
}

COST_BY_PATH_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "symbol": STR,
    "path": STR,
    "count": I64,
    "count_filled": I64,
    "filled_notional_at_mark": F64,
    "equity_lost": F64,
    "cost_rate_wmean": F64,
    "cost_rate_p95": F64,
    "pct_initial_margin_p50": F64,
    "pct_initial_margin_p95": F64,
    "buffer_share_p50": F64,
    "buffer_share_p95": F64,
    "buffer_share_max": F64,
    "buffer_exceeded_count": I64,
}

FUND_FLOWS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "pool": STR,
    "liquidation_count": I64,
    "fees": F64,
    "inflow": F64,
    "outflow": F64,
    "net": F64,
    "balance_open": F64,
    "balance_close": F64,
    "balance_min": F64,
    "check_diff": F64,
}

SENSITIVITY_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "symbol": STR,
    "leverage": F64,
    "tier": I64,
    "tier_notional_floor": F64,
    "tier_notional_cap": F64,
    "initial_margin_rate": F64,
    "maintenance_margin_rate": F64,
    "mmr_increment": F64,
    "extra_bps": F64,
    "initial_margin_share": F64,
    "buffer_share": F64,
    "margin_steps": F64,
}

#: Pool name used when the insurance fund has no snapshot to attribute liquidations to.
UNKNOWN_POOL = "unknown"
#: Relative tolerance when matching a liquidation's recorded maintenance margin rate to a tier's.
MMR_MATCH_RTOL = 1e-12
#: tier_basis values: the tier whose rate is the recorded rate, or the notional-based fallback.
TIER_FROM_MMR, TIER_FROM_NOTIONAL = "recorded_mmr", "notional"


def mmr_increment(tiers: Sequence[margin.Tier], tier: margin.Tier) -> float:
    """MMR of the next tier minus the MMR of `tier`; for the last tier, its MMR minus the
    previous tier's (the last step up); NaN for a symbol with a single tier."""
    ordered = sorted(tiers, key=lambda t: t.tier)
    i = next(k for k, t in enumerate(ordered) if t.tier == tier.tier)
    if i + 1 < len(ordered):
        return ordered[i + 1].maintenance_margin_rate - tier.maintenance_margin_rate
    if i > 0:
        return tier.maintenance_margin_rate - ordered[i - 1].maintenance_margin_rate
    return math.nan


def _tier_table(risk_tiers: pl.DataFrame) -> pl.DataFrame:
    """One row per symbol x tier: notional_floor, notional_cap, tier_mmr and mmr_increment (MMR of
    the next tier - tier_mmr; for the last tier tier_mmr - MMR of the previous tier; null for a
    symbol with a single tier), the vectorized form of `mmr_increment`."""
    mmr = pl.col("maintenance_margin_rate")
    return (risk_tiers.sort("symbol", "tier")
            .select("symbol", pl.col("tier").cast(I64), pl.col("notional_floor").cast(F64),
                    pl.col("notional_cap").cast(F64), mmr.cast(F64).alias("tier_mmr"),
                    pl.coalesce(mmr.shift(-1).over("symbol") - mmr, mmr - mmr.shift(1).over("symbol"))
                    .cast(F64).alias("mmr_increment")))


def _position_tiers(ex: pl.DataFrame, tiers: pl.DataFrame) -> pl.DataFrame:
    """Per row of `ex` (with _row, symbol, maintenance_margin_rate, position_notional): tier and
    tier_basis. The tier is the symbol's only tier whose MMR equals the recorded
    maintenance_margin_rate (relative tolerance MMR_MATCH_RTOL); where none or several match, the
    tier whose [notional_floor, notional_cap) holds |position_notional| (margin.tier_for_notional:
    the first tier below the lowest floor, the last above the highest cap; null without a
    notional)."""
    rec, tmmr = pl.col("maintenance_margin_rate"), pl.col("tier_mmr")
    notional = pl.col("position_notional").abs()
    rate_hit = ((tmmr - rec).abs() <= MMR_MATCH_RTOL * pl.max_horizontal(rec.abs(), tmmr.abs())).fill_null(False)
    in_range = (pl.col("notional_floor") <= notional) & (notional < pl.col("notional_cap"))
    per_row = (
        ex.select("_row", "symbol", "maintenance_margin_rate", "position_notional")
        .join(tiers, on="symbol", how="inner")
        .group_by("_row")
        .agg(rate_hit.sum().alias("_n_rate"),
             pl.col("tier").filter(rate_hit).first().alias("_by_rate"),
             pl.col("tier").filter(in_range.fill_null(False)).min().alias("_by_range"),
             pl.col("tier").first().alias("_first"), pl.col("tier").last().alias("_last"),
             pl.col("notional_floor").first().alias("_first_floor"),
             notional.first().alias("_notional"))
    )
    no_notional = pl.col("_notional").is_null() | pl.col("_notional").is_nan()
    by_notional = (pl.when(no_notional).then(None)
                   .when(pl.col("_by_range").is_not_null()).then(pl.col("_by_range"))
                   .when(pl.col("_notional") < pl.col("_first_floor")).then(pl.col("_first"))
                   .otherwise(pl.col("_last")))
    from_rate = pl.col("_n_rate") == 1
    return per_row.select(
        "_row",
        pl.when(from_rate).then(pl.col("_by_rate")).otherwise(by_notional).cast(I64).alias("tier"),
        pl.when(from_rate).then(pl.lit(TIER_FROM_MMR))
        .when(by_notional.is_not_null()).then(pl.lit(TIER_FROM_NOTIONAL)).alias("tier_basis"))


def forced_costs(executions: pl.DataFrame, instruments: pl.DataFrame,
                 risk_tiers: pl.DataFrame) -> pl.DataFrame:
    """Forced-execution cost per liquidation (one row per row of `executions`).

    cost_rate = fee_rate_charged + slippage_bps / 10,000, with slippage signed (positive =
    adverse), so price improvement lowers the cost; fee_rate_charged = fee /
    filled_notional_at_mark, the liquidation fee actually charged (the instrument's
    liquidation_fee_rate, capped at the equity left after the fills) over filled_qty x mark
    price at the trigger.
    equity_lost = cost_rate x filled_notional_at_mark = fee + (mark - vwap) x filled_qty for a
    sell ((vwap - mark) x filled_qty for a buy): exactly what the account lost against closing
    the filled quantity at the trigger mark with no fee.
    pct_initial_margin = cost_rate x leverage: the share of the initial margin
    (notional / leverage) consumed, as a decimal (0.12 = 12 %).
    buffer_share = cost_rate / maintenance_margin_rate (the rate recorded with the liquidation):
    the share of the maintenance buffer between the liquidation and bankruptcy prices consumed;
    above 1 the liquidation ended beyond bankruptcy and drew on the insurance fund.
    margin_steps = cost_rate / mmr_increment, where tier is the position's tier: the symbol's
    tier whose maintenance margin rate equals the recorded maintenance_margin_rate (relative
    tolerance 1e-12), the same rate buffer_share uses, so a backstop or auction taking over the
    remainder of a position after incremental reductions keeps the position's tier rather than
    the tier of its small remaining notional (tier_basis = recorded_mmr). Fallback, where no
    tier or more than one tier has the recorded rate (tier_basis = notional): the tier whose
    notional range holds position_notional = qty x mark at the trigger (margin.tier_for_notional;
    qty is the quantity put into this liquidation). tier_mmr = that tier's maintenance margin
    rate and mmr_increment = MMR of the next tier - tier_mmr (for the last tier: tier_mmr - MMR
    of the previous tier; null for a single tier).
    Liquidations without fills keep their row with null cost (no execution, no cost).
    Raises ValueError (InputError) when a symbol has no instrument row or no risk tiers.
    """
    fees = instruments.select("symbol", "liquidation_fee_rate").unique(subset="symbol", keep="first")
    symbols = set(executions["symbol"].unique().to_list())
    missing = sorted(symbols - set(fees["symbol"].to_list()))
    if missing:
        raise InputError("instruments", f"no instrument row for symbol(s) {missing}",
                         column="symbol", expected="one row per symbol that has liquidations")
    missing = sorted(symbols - set(risk_tiers["symbol"].drop_nulls().unique().to_list()))
    if missing:
        raise InputError("risk_tiers", f"no tiers for symbol(s) {missing}", column="symbol",
                         expected="the margin tiers of every symbol that has liquidations")

    tiers = _tier_table(risk_tiers)
    ex = executions.join(fees, on="symbol", how="left").with_columns(
        (pl.col("qty") * pl.col("mark_price")).alias("position_notional")).with_row_index("_row")
    ex = (ex.join(_position_tiers(ex, tiers), on="_row", how="left")
          .join(tiers.select("symbol", "tier", "tier_mmr", "mmr_increment"), on=["symbol", "tier"],
                how="left"))
    cost = pl.col("cost_rate")
    out = (
        ex.with_columns(
            pl.when(pl.col("filled_notional_at_mark") > 0)
            .then(pl.col("fee") / pl.col("filled_notional_at_mark")).alias("fee_rate_charged"),
        )
        .with_columns(
            (pl.col("fee_rate_charged") + pl.col("slippage_bps") / 1e4).alias("cost_rate"),
        )
        .with_columns(
            (cost * pl.col("filled_notional_at_mark")).alias("equity_lost"),
            (cost * pl.col("leverage")).alias("pct_initial_margin"),
            (cost / pl.col("maintenance_margin_rate")).alias("buffer_share"),
            (cost / pl.col("mmr_increment")).alias("margin_steps"),
        )
    )
    return _conform(out, COSTS_SCHEMA).sort(["date", "liquidation_id"], nulls_last=True)


def _cost_aggs() -> list[pl.Expr]:
    c = pl.col("cost_rate")
    w = pl.col("filled_notional_at_mark")
    filled = c.is_not_null()
    return [
        pl.len().cast(I64).alias("count"),
        filled.sum().cast(I64).alias("count_filled"),
        w.filter(filled).sum().alias("filled_notional_at_mark"),
        pl.col("equity_lost").sum().alias("equity_lost"),
        pl.when(w.filter(filled).sum() > 0)
        .then(pl.col("equity_lost").sum() / w.filter(filled).sum()).alias("cost_rate_wmean"),
        c.quantile(0.95, "linear").alias("cost_rate_p95"),
        pl.col("pct_initial_margin").quantile(0.50, "linear").alias("pct_initial_margin_p50"),
        pl.col("pct_initial_margin").quantile(0.95, "linear").alias("pct_initial_margin_p95"),
        pl.col("buffer_share").quantile(0.50, "linear").alias("buffer_share_p50"),
        pl.col("buffer_share").quantile(0.95, "linear").alias("buffer_share_p95"),
        pl.col("buffer_share").max().alias("buffer_share_max"),
        (pl.col("buffer_share") > 1).sum().cast(I64).alias("buffer_exceeded_count"),
    ]


def forced_cost_by_path(costs: pl.DataFrame) -> pl.DataFrame:
    """Forced-execution cost per date x symbol x path, plus an "ALL" symbol roll-up per path.

    count = liquidations; count_filled = those with a cost (at least one fill);
    filled_notional_at_mark = sum(filled_qty x mark); equity_lost = sum of equity lost (USDT);
    cost_rate_wmean = sum(equity_lost) / sum(filled_notional_at_mark) (the notional-weighted
    mean cost rate); cost_rate_p95, pct_initial_margin_p50/p95, buffer_share_p50/p95 =
    percentiles over liquidations (unweighted, linear interpolation at position q x (n - 1) of
    the sorted values); buffer_share_max = the largest buffer share; buffer_exceeded_count =
    liquidations with buffer_share > 1 (ended beyond bankruptcy).
    """
    per_symbol = costs.group_by(["date", "symbol", "path"]).agg(_cost_aggs())
    overall = (costs.group_by(["date", "path"]).agg(_cost_aggs())
               .with_columns(pl.lit(ALL_SYMBOLS).alias("symbol")))
    out = pl.concat([_conform(per_symbol, COST_BY_PATH_SCHEMA),
                     _conform(overall, COST_BY_PATH_SCHEMA)], how="vertical")
    return _order_keys(out)


def _pool_expr(liquidations: pl.DataFrame, insurance_fund: pl.DataFrame,
               pools: dict[str, str] | None) -> pl.Expr:
    fund_pools = sorted(insurance_fund["pool"].drop_nulls().unique().to_list())
    symbols = set(liquidations["symbol"].drop_nulls().unique().to_list())
    if pools is not None:
        unmapped = sorted(symbols - set(pools))
        if unmapped:
            raise InputError("liquidations", f"symbol(s) {unmapped} have no insurance-fund pool "
                             "in the pools mapping", column="symbol",
                             expected="every liquidated symbol mapped to a pool")
        return pl.col("symbol").replace_strict(pools, return_dtype=STR)
    if not symbols or symbols <= set(fund_pools):
        return pl.col("symbol")  # one pool per symbol (isolated insurance funds)
    if len(fund_pools) == 1:
        return pl.lit(fund_pools[0])  # one shared pool
    if not fund_pools:
        return pl.lit(UNKNOWN_POOL)
    raise InputError("insurance_fund", f"cannot attribute liquidations of {sorted(symbols)} to pools "
                     f"{fund_pools}", column="pool",
                     expected="a single pool, one pool per symbol, or a pools mapping")


def insurance_fund_flows(liquidations: pl.DataFrame, insurance_fund: pl.DataFrame,
                         pools: dict[str, str] | None = None) -> pl.DataFrame:
    """Insurance-fund flows and balance per date x pool.

    Each liquidation's insurance_fund_delta is what the fund received (positive: the
    liquidation fee kept) or paid (negative: the shortfall of fills beyond the bankruptcy price,
    net of any fee collected) for it; where it is missing the liquidation's fee is used.
    inflow = sum of the positive deltas; outflow = sum of |negative deltas| (shortfall drawn);
    net = inflow - outflow; fees = sum of the fees recorded on the liquidations (for reference);
    liquidation_count = liquidations attributed to the pool (date = UTC date of ts_trigger).
    balance_open / balance_close / balance_min = the first, last and lowest balance snapshot of
    the day; check_diff = balance_close - balance_open - net: the change in the fund not explained
    by liquidations. It is ~0 when the fund's only flows are liquidations that happen between the
    first and last snapshot; otherwise it is the sum of other transfers (top-ups, withdrawals,
    flows before the first or after the last snapshot) or a bookkeeping error.
    Liquidations are attributed to pools by `pools` ({symbol: pool}) when given; otherwise by
    symbol when every liquidated symbol is a pool name, or to the only pool when there is one.
    """
    delta = pl.coalesce(pl.col("insurance_fund_delta"), pl.col("fee"))
    flows = (
        liquidations.with_columns(
            _pool_expr(liquidations, insurance_fund, pools).alias("pool"),
            pl.col("ts_trigger").dt.date().alias("date"),
            delta.alias("_delta"),
        )
        .group_by(["date", "pool"])
        .agg(
            pl.len().cast(I64).alias("liquidation_count"),
            pl.col("fee").sum().alias("fees"),
            pl.col("_delta").clip(lower_bound=0.0).sum().alias("inflow"),
            (-pl.col("_delta")).clip(lower_bound=0.0).sum().alias("outflow"),
        )
        .with_columns((pl.col("inflow") - pl.col("outflow")).alias("net"))
    )
    balances = (
        insurance_fund.with_columns(pl.col("ts").dt.date().alias("date"))
        .group_by(["date", "pool"])
        .agg(
            pl.col("balance").sort_by("ts").first().alias("balance_open"),
            pl.col("balance").sort_by("ts").last().alias("balance_close"),
            pl.col("balance").min().alias("balance_min"),
        )
    )
    out = (
        flows.join(balances, on=["date", "pool"], how="full", coalesce=True)
        .with_columns(
            pl.col("liquidation_count").fill_null(0),
            pl.col("fees").fill_null(0.0),
            pl.col("inflow").fill_null(0.0),
            pl.col("outflow").fill_null(0.0),
            pl.col("net").fill_null(0.0),
        )
        .with_columns(
            (pl.col("balance_close") - pl.col("balance_open") - pl.col("net")).alias("check_diff"))
    )
    return _conform(out, FUND_FLOWS_SCHEMA).sort(["date", "pool"], nulls_last=True)


def margin_sensitivity(risk_tiers: pl.DataFrame, symbol: str,
                       extra_bps: Sequence[float] = (1, 2, 5, 10),
                       leverages: Sequence[float] = (5, 10, 20, 50, 100),
                       date: dt.date | None = None) -> pl.DataFrame:
    """What an extra few basis points of forced-execution cost consume, per leverage.

    For each leverage L the implied tier is the largest-notional tier whose max_leverage >= L
    (the biggest position that L allows); MMR is that tier's maintenance margin rate and
    mmr_increment = MMR of the next tier - MMR (for the last tier: MMR - MMR of the previous
    tier). For each extra cost e (in bps, e / 10,000 as a rate):
    initial_margin_share = e x L (initial margin is 1 / L of the notional);
    buffer_share = e / MMR (share of the maintenance buffer between liquidation and bankruptcy);
    margin_steps = e / mmr_increment. Example on the Binance BTC 2021 tiers: at 100x (tier 2,
    MMR 0.5 %) an extra 5 bps (0.05 %) consumes 5 % of the initial margin and 10 % of the
    maintenance buffer. A leverage above every tier's maximum gets a row with null tier and
    values. One row per leverage x extra bps; `date` is the given date (null if none).
    """
    rows = risk_tiers.filter(pl.col("symbol") == symbol)
    if rows.height == 0:
        raise InputError("risk_tiers", f"no tiers for symbol {symbol!r}", column="symbol",
                         expected="the margin tiers of the symbol")
    tiers = margin.tiers_from_rows(rows.to_dicts())
    records = []
    for lev in leverages:
        allowed = [t for t in tiers if t.max_leverage >= lev]
        t = max(allowed, key=lambda t: t.notional_cap) if allowed else None
        inc = mmr_increment(tiers, t) if t else math.nan
        inc = None if math.isnan(inc) else inc
        for e in extra_bps:
            rate = e / 1e4
            records.append({
                "date": date,
                "symbol": symbol,
                "leverage": float(lev),
                "tier": t.tier if t else None,
                "tier_notional_floor": t.notional_floor if t else None,
                "tier_notional_cap": t.notional_cap if t else None,
                "initial_margin_rate": 1.0 / lev,
                "maintenance_margin_rate": t.maintenance_margin_rate if t else None,
                "mmr_increment": inc,
                "extra_bps": float(e),
                "initial_margin_share": rate * lev if t else None,
                "buffer_share": rate / t.maintenance_margin_rate if t else None,
                "margin_steps": rate / inc if inc else None,
            })
    return pl.DataFrame(records, schema=SENSITIVITY_SCHEMA) if records else \
        pl.DataFrame(schema=SENSITIVITY_SCHEMA)
