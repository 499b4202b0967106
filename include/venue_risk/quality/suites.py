"""The Great Expectations suites of the canonical datasets (DESIGN section 5), kept in code, and
the gate that runs them on a landed day.

Every expectation carries `meta = {name, severity, quarantine}`:

- `critical` stops the day: `DataQualityError` (the DAG's failure callback alerts with the
  failed expectations' names), nothing is loaded, no report.
- `warning` with `quarantine=True` is a row-level expectation: the rows GX reports as unexpected
  (`unexpected_index_list`, COMPLETE result format) are moved to the quarantine with the
  expectation's name as the reason; the good rows go on to the warehouse.
- `warning` without quarantine flags the report (table-level: volume).

GX runs every expectation (ephemeral context, pandas datasource, one suite per dataset validated
on its batch; the Polars frames are converted with `to_pandas()`), in two passes on the same
batch: every expectation with the BASIC result format (success, unexpected and element counts,
observed values), then the expectations that found unexpected rows again with the COMPLETE
format, for the full list of those rows. GX's cost is mostly per expectation and grows with what
the format asks for: a demo day's 348 expectations took 3.75 s in COMPLETE, 2.34 s in BASIC, and
a day where nothing fails needs no second pass. Cross-dataset expectations
(referential integrity, mark vs index, funding vs the instrument's cap, per-symbol freshness) run
on helper columns (prefixed `_dq_`) that Polars derives from the other datasets before the frame
is handed to GX: GX's pandas datasource validates one frame at a time, and an order-id value set
of a million ids would otherwise be serialized into every result. The helper columns never reach
the validated partitions.

The canonical schema and types are checked first, in Polars (`quality.basic`), against the exact
canonical dtypes: pandas conversion loses the distinction GX would need (an Int64 column with
nulls becomes float64). A schema failure is critical and skips the GX suite of that dataset.

NaN and null are the same thing once in pandas, so `not null` expectations catch NaN; infinite
values fail the finite upper/lower bounds of the range expectations.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from venue_risk.schema import DATASETS, LIQUIDATION_PATHS, MARGIN_MODES, SIDES

BIG = 1e12  # finite bound: any price, quantity or notional beyond it is treated as corrupt
MARK_INDEX_BAND = 0.05  # mark must be within 5 % of the index
FRESHNESS_S = 60  # 1 s / 1 min series must reach the last minute of the day
VOLUME_BAND = (0.6, 1.6)  # row count / trailing average
# Datasets whose row count should be steady day to day (a feed that lost half its rows). Not
# liquidations: their count is a market outcome the report measures, not a data-quality signal.
VOLUME_DATASETS = ("trades", "order_events", "api_requests")
VOLUME_HISTORY_DAYS = 7
MUST_HAVE_ROWS = ("instruments", "risk_tiers", "trades", "order_events", "mark_index",
                  "index_components", "funding", "market_metrics", "book_depth", "positions_eod",
                  "accounts_eod", "api_keys", "insurance_fund")
ORDER_EVENTS = ("new", "partial_fill", "fill", "cancel", "reject", "expire", "amend")
ORDER_TYPES = ("limit", "market", "stop_market", "liquidation")
TIFS = ("GTC", "IOC", "FOK", "GTX")
API_KEY_STATUSES = ("active", "revoked", "expired", "disabled")
FUNDING_INTEREST_CLAMP = 0.0005  # rate = premium + clamp(interest - premium, -0.05 %, +0.05 %)
FUNDING_IDENTITY_TOL = 1e-6  # absolute, in rate units (0.01 bps): a rate in percent is 100x off
FILLS_QTY_RTOL = 1e-6  # fills of a liquidation sum to its filled_qty within this share of qty
MARK_TRIGGER_TOL = 0.001  # the trigger mark is at or beyond the liquidation price, within 10 bps

#: Columns that may be null (every other column of every dataset must not be: the metric stage
#: reads them all). NaN in a nullable float column is still an error (`not NaN`).
NULLABLE: dict[str, frozenset[str]] = {
    "trades": frozenset({"liquidation_id"}),
    "order_events": frozenset({"api_key_id", "price", "reject_reason"}),
    "market_metrics": frozenset({"long_short_account_ratio", "taker_buy_sell_ratio"}),
    "api_keys": frozenset({"scopes", "ip_allowlist", "last_used_at", "expires_at",
                           "cancel_on_disconnect"}),
    "api_requests": frozenset({"key_id", "account", "source_ip", "scope_used"}),
}

#: Columns with a fixed set of values (checked not null, then in the set).
ENUMS: dict[str, dict[str, tuple[str, ...]]] = {
    "trades": {"taker_side": SIDES},
    "order_events": {"event": ORDER_EVENTS, "side": SIDES, "order_type": ORDER_TYPES, "tif": TIFS},
    "liquidations": {"side": SIDES, "path": LIQUIDATION_PATHS, "margin_mode": MARGIN_MODES},
    "positions_eod": {"margin_mode": MARGIN_MODES},
    "api_keys": {"status": API_KEY_STATUSES},
}


@dataclass(frozen=True)
class Rule:
    """One expectation with its name, severity and whether failing rows are quarantined."""

    name: str
    severity: str  # critical | warning
    kind: str  # GX expectation class name, e.g. ExpectColumnValuesToBeBetween
    kwargs: dict
    quarantine: bool = False


def _c(name, kind, **kw):
    return Rule(name, "critical", kind, kw)


def _q(name, kind, **kw):
    return Rule(name, "warning", kind, kw, quarantine=True)


def _positive(col: str, severity: str = "warning") -> list[Rule]:
    """col not null (catches NaN) and 0 < col < 1e12 (catches negatives, zero and inf)."""
    make = _q if severity == "warning" else _c
    return [make(f"{col} not null or NaN", "ExpectColumnValuesToNotBeNull", column=col),
            make(f"{col} > 0 and finite", "ExpectColumnValuesToBeBetween", column=col,
                 min_value=0, max_value=BIG, strict_min=True)]


def _finite(col: str, lo: float = -BIG, hi: float = BIG, nullable: bool = False,
            severity: str = "warning") -> list[Rule]:
    make = _q if severity == "warning" else _c
    rules = [] if nullable else [make(f"{col} not null or NaN", "ExpectColumnValuesToNotBeNull", column=col)]
    return rules + [make(f"{col} within [{lo:g}, {hi:g}]", "ExpectColumnValuesToBeBetween",
                         column=col, min_value=lo, max_value=hi)]


def _in_set(col: str, values, severity: str = "warning") -> Rule:
    make = _q if severity == "warning" else _c
    return make(f"{col} in {sorted(values)}", "ExpectColumnValuesToBeInSet", column=col,
                value_set=sorted(values))


def suite_rules(dataset: str, day: dt.date, symbols: list[str],
                volume_band: tuple[float, float] | None,
                missing_columns: frozenset[str] = frozenset(),
                window_end: dt.datetime | None = None) -> list[Rule]:
    """The expectations of one dataset for day `day` (`symbols`: the day's instruments;
    `volume_band`: allowed row count range from the trailing average, None without history or
    on a partial day). Only datasets the source carries are validated. `missing_columns`: columns
    the source declares it cannot fill (coverage manifest): they may be null, and the figures
    needing them are not covered. `window_end`: the end of a declared partial window, which the
    freshness rules measure against instead of the end of the day."""
    spec = DATASETS[dataset]
    rules: list[Rule] = [_c("columns are the canonical columns in order",
                            "ExpectTableColumnsToMatchOrderedList", column_list=spec.columns)]
    if dataset in MUST_HAVE_ROWS:
        rules.append(_c("at least one row (the source carries this dataset, so an empty day is "
                        "a broken export)", "ExpectTableRowCountToBeBetween", min_value=1))
    for key in spec.keys:
        rules.append(_c(f"{key} not null", "ExpectColumnValuesToNotBeNull", column=key))
    if len(spec.keys) == 1:
        rules.append(_c(f"{spec.keys[0]} unique", "ExpectColumnValuesToBeUnique", column=spec.keys[0]))
    elif spec.keys:
        rules.append(_c(f"{list(spec.keys)} unique together", "ExpectCompoundColumnsToBeUnique",
                        column_list=list(spec.keys)))
    if spec.day_column:
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
        if spec.schema[spec.day_column] == pl.Date:
            rules.append(_q(f"{spec.day_column} is {day}", "ExpectColumnValuesToBeInSet",
                            column="_dq_day_iso", value_set=[day.isoformat()]))
        else:
            rules.append(_q(f"{spec.day_column} inside {day}", "ExpectColumnValuesToBeBetween",
                            column=spec.day_column, min_value=start,
                            max_value=start + dt.timedelta(days=1, microseconds=-1)))
    if "symbol" in spec.schema and dataset != "instruments":
        rules.append(_q("symbol is a listed instrument", "ExpectColumnValuesToBeInSet",
                        column="symbol", value_set=sorted(symbols)))
    specific = _SPECIFIC[dataset](day) if dataset != "mark_index" else _mark_index(day, window_end)
    rules += [r for r in specific if r.kwargs.get("column") not in missing_columns]
    rules += _generic_rules(dataset, missing_columns)
    if volume_band is not None and dataset in VOLUME_DATASETS:
        lo, hi = volume_band
        rules.append(Rule(f"row count within {VOLUME_BAND[0]:g}x-{VOLUME_BAND[1]:g}x of the "
                          f"trailing average ({int(lo)}-{int(hi)})", "warning",
                          "ExpectTableRowCountToBeBetween", {"min_value": int(lo), "max_value": int(hi)}))
    # GX keeps one of two expectations with equal configurations (meta aside): keep the first
    # (the key rules come first, so a key column's not-null stays critical).
    seen: set[str] = set()
    unique: list[Rule] = []
    for rule in rules:
        ident = rule.kind + repr(sorted(rule.kwargs.items()))
        if ident not in seen:
            seen.add(ident)
            unique.append(rule)
    return unique


def _generic_rules(dataset: str, missing_columns: frozenset[str] = frozenset()) -> list[Rule]:
    """The rules every column gets from the schema alone, so no metric meets a null, a NaN, an
    infinity or an unknown enum value after the load: every column outside NULLABLE not null;
    every enumerated column (ENUMS) in its set; every float column finite (|x| <= 1e12 or its
    dataset's wider bound, NaN included as null in GX); every nullable float column not NaN
    (a helper column, since pandas reads NaN as null)."""
    spec = DATASETS[dataset]
    nullable = NULLABLE.get(dataset, frozenset()) | missing_columns
    rules: list[Rule] = []
    for col, dtype in spec.schema.items():
        if col not in nullable and col not in spec.keys:  # (keys: critical not-null rules)
            rules.append(_q(f"{col} not null or NaN" if dtype == pl.Float64 else f"{col} not null",
                            "ExpectColumnValuesToNotBeNull", column=col))
        if col in ENUMS.get(dataset, {}):
            rules.append(_in_set(col, ENUMS[dataset][col]))
        if dtype == pl.Float64:
            rules.append(_q(f"{col} finite", "ExpectColumnValuesToBeBetween", column=col,
                            min_value=-1e15, max_value=1e15))
            if col in nullable:
                rules.append(_q(f"{col} not NaN", "ExpectColumnValuesToBeInSet",
                                column=f"_dq_nan_{col}", value_set=[False]))
    return rules


def _instruments(day):
    """Instrument rows are quarantined like any other row; the gate then takes every row of the
    symbol with them (quality.gate.quarantine_symbol_dependents), and the quarantine limits
    decide whether the day can go on without the symbol."""
    return [*_positive("tick_size"), *_positive("lot_size"),
            *_finite("max_leverage", 1, 1000),
            *_finite("taker_fee_rate", -0.01, 0.05),
            *_finite("maker_fee_rate", -0.01, 0.05),
            *_finite("liquidation_fee_rate", 0, 0.1),
            _q("funding_interval_hours in 1..24", "ExpectColumnValuesToBeBetween",
               column="funding_interval_hours", min_value=1, max_value=24),
            *_positive("funding_cap"),
            _q("funding_cap <= 10%", "ExpectColumnValuesToBeBetween", column="funding_cap",
               min_value=0, max_value=0.1),
            _q("index_outlier_pct in (0, 1)", "ExpectColumnValuesToBeBetween",
               column="index_outlier_pct", min_value=0, max_value=1, strict_min=True, strict_max=True),
            *_positive("index_stale_s"),
            _q("index_min_sources >= 1", "ExpectColumnValuesToBeBetween",
               column="index_min_sources", min_value=1),
            _q("index_sources lists at least index_min_sources distinct sources",
               "ExpectColumnValuesToBeInSet", column="_dq_index_sources_ok", value_set=[True]),
            _q("the symbol has risk tiers", "ExpectColumnValuesToBeInSet",
               column="_dq_has_tiers", value_set=[True]),
            _q("the symbol has a mark_index series", "ExpectColumnValuesToBeInSet",
               column="_dq_has_marks", value_set=[True]),
            _q("the symbol's book_depth has positive notional on both sides, in the same bands",
               "ExpectColumnValuesToBeInSet", column="_dq_depth_ok", value_set=[True])]


def _risk_tiers(day):
    return [*_finite("notional_floor", 0, 1e15),
            *_positive("notional_cap")[:1],
            *_finite("max_leverage", 1, 1000),
            *_finite("maintenance_margin_rate", 0, 1),
            *_finite("maintenance_amount", -1e15, 1e15),
            _q("tiers of the symbol are contiguous from 0 (floor = previous cap, cap > floor)",
               "ExpectColumnValuesToBeInSet", column="_dq_tier_contiguous", value_set=[True])]


def _trades(day):
    return [*_positive("price"), *_positive("qty"),
            *_finite("taker_fee"), *_finite("maker_fee"),
            _q("fees have the sign of the instrument's fee rates (no negative fee where the "
               "rate is not negative)", "ExpectColumnValuesToBeInSet", column="_dq_fee_sign_ok",
               value_set=[True]),
            _q("a liquidation fill trades the liquidation's symbol", "ExpectColumnValuesToBeInSet",
               column="_dq_fill_symbol_matches", value_set=[True]),
            _q("liquidation fills point to a known liquidation", "ExpectColumnValuesToBeInSet",
               column="_dq_liquidation_known", value_set=[True]),
            _q("taker_order_id is an order in order_events", "ExpectColumnValuesToBeInSet",
               column="_dq_taker_order_known", value_set=[True]),
            _q("maker_order_id is an order in order_events", "ExpectColumnValuesToBeInSet",
               column="_dq_maker_order_known", value_set=[True])]


def _order_events(day):
    return [*_positive("qty"),
            _q("price > 0 and finite (null for market orders)", "ExpectColumnValuesToBeBetween",
               column="price", min_value=0, max_value=BIG, strict_min=True),
            *_finite("cum_filled_qty", 0, BIG)]


def _mark_index(day, window_end: dt.datetime | None = None):
    end = window_end or dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    rules = []
    for col in ("mark_price", "index_price", "last_price", "best_bid", "best_ask"):
        rules += _positive(col)
    rules.append(_q(f"mark within {MARK_INDEX_BAND:.0%} of index", "ExpectColumnValuesToBeBetween",
                    column="_dq_mark_index_gap", min_value=0, max_value=MARK_INDEX_BAND))
    reach = "the last minute of the day" if window_end is None else f"the end of the declared window {end:%H:%M:%S}"
    rules.append(_c(f"every symbol's series reaches {reach} (lag <= {FRESHNESS_S} s)",
                    "ExpectColumnValuesToBeBetween", column="_dq_symbol_end_lag_s",
                    min_value=0, max_value=FRESHNESS_S))
    rules.append(_c(f"series reaches {end - dt.timedelta(seconds=FRESHNESS_S):%H:%M:%S}",
                    "ExpectColumnMaxToBeBetween", column="ts",
                    min_value=end - dt.timedelta(seconds=FRESHNESS_S)))
    return rules


def _index_components(day):
    return [*_positive("price"), *_finite("weight", 0, 1)]


def _funding(day):
    return [*_finite("funding_rate", -1, 1),
            _q("|funding_rate| within the instrument's funding_cap", "ExpectColumnValuesToBeBetween",
               column="_dq_funding_cap_ratio", min_value=0, max_value=1 + 1e-9),
            *_finite("premium_index", -1, 1), *_finite("interest_rate", -1, 1),
            _q("funding_rate = clamp(premium_index + clamp(interest_rate - premium_index, "
               f"-{FUNDING_INTEREST_CLAMP:.2%}, +{FUNDING_INTEREST_CLAMP:.2%}), -cap, +cap) "
               f"(within {FUNDING_IDENTITY_TOL:g})", "ExpectColumnValuesToBeInSet",
               column="_dq_funding_identity", value_set=[True]),
            *_positive("mark_price"), *_positive("index_price")]


def _market_metrics(day):
    return [*_finite("open_interest", 0, BIG), *_finite("open_interest_value", 0, 1e15),
            *_finite("long_short_account_ratio", 0, 1e6, nullable=True),
            *_finite("taker_buy_sell_ratio", 0, 1e9, nullable=True)]


def _book_depth(day):
    return [*_finite("percentage", -100, 100), *_finite("depth", 0, BIG),
            *_finite("notional", 0, 1e15)]


def _liquidations(day):
    return [*_positive("qty"),
            *_finite("filled_qty", 0, BIG), *_positive("mark_price"),
            *_positive("liquidation_price"), *_positive("bankruptcy_price"),
            *_finite("leverage", 1, 1000), *_finite("maintenance_margin_rate", 0, 1),
            *_finite("fee", 0, BIG), *_finite("insurance_fund_delta", -BIG, BIG),
            _q("filled liquidation has its fills in trades", "ExpectColumnValuesToBeInSet",
               column="_dq_fills_found", value_set=[True]),
            _q("filled_qty equals the sum of its fills' qty", "ExpectColumnValuesToBeInSet",
               column="_dq_fills_qty_match", value_set=[True]),
            _q("filled_qty <= qty", "ExpectColumnValuesToBeInSet",
               column="_dq_filled_within_qty", value_set=[True]),
            _q("bankruptcy price beyond the liquidation price on the position's side "
               "(sell: bankruptcy < liquidation; buy: bankruptcy > liquidation)",
               "ExpectColumnValuesToBeInSet", column="_dq_bankruptcy_beyond", value_set=[True]),
            _q(f"trigger mark at or beyond the liquidation price (within {MARK_TRIGGER_TOL:.1%}; "
               "not for adl)", "ExpectColumnValuesToBeInSet", column="_dq_mark_triggered",
               value_set=[True]),
            _q("the symbol's insurance-fund pool is known (one shared pool, or a pool named "
               "after the symbol)", "ExpectColumnValuesToBeInSet", column="_dq_pool_known",
               value_set=[True])]


def _positions_eod(day):
    return [*_finite("size"), *_finite("entry_price", 0, BIG),
            *_finite("leverage", 1, 1000), *_finite("isolated_margin", 0, 1e15),
            _q("a cross position's account has a wallet balance in accounts_eod",
               "ExpectColumnValuesToBeInSet", column="_dq_cross_wallet_known", value_set=[True])]


def _accounts_eod(day):
    return [*_finite("wallet_balance", -1e15, 1e15)]


def _leverage_changes(day):
    return [*_finite("old_leverage", 1, 1000), *_finite("new_leverage", 1, 1000)]


API_SCOPES = ("read", "trade", "withdraw", "transfer")


def _api_keys(day):
    return [_q(f"scopes within {list(API_SCOPES)}", "ExpectColumnValuesToBeInSet",
               column="_dq_scopes_known", value_set=[True])]


def _api_requests(day):
    return [*_finite("status", 100, 599), *_finite("latency_ms", 0, 1e9)]


def _insurance_fund(day):
    return [*_finite("balance", -1e15, 1e15)]


_SPECIFIC = {
    "instruments": _instruments, "risk_tiers": _risk_tiers, "trades": _trades,
    "order_events": _order_events, "mark_index": _mark_index,
    "index_components": _index_components, "funding": _funding,
    "market_metrics": _market_metrics, "book_depth": _book_depth, "liquidations": _liquidations,
    "positions_eod": _positions_eod, "accounts_eod": _accounts_eod,
    "leverage_changes": _leverage_changes, "api_keys": _api_keys,
    "api_requests": _api_requests, "insurance_fund": _insurance_fund,
}


# -- helper columns for cross-dataset expectations ----------------------------------------------

def _frame(frames: dict[str, pl.DataFrame], dataset: str) -> pl.DataFrame:
    return frames.get(dataset, pl.DataFrame(schema=DATASETS[dataset].schema))


def _side_sign() -> pl.Expr:
    return pl.when(pl.col("side") == "sell").then(1.0).when(pl.col("side") == "buy").then(-1.0)


def _depth_ok_symbols(book_depth: pl.DataFrame) -> pl.Series:
    """Symbols whose book depth the cascade model can use: positive notional on both sides
    and the same set of |percentage| bands on the bid and the ask side."""
    d = book_depth.filter(pl.col("percentage").is_finite() & (pl.col("percentage") != 0))
    sides = (d.group_by("symbol", (pl.col("percentage") > 0).alias("ask"))
             .agg(pl.col("percentage").abs().unique().sort().alias("bands"),
                  (pl.col("notional").max() > 0).alias("positive")))
    bid = sides.filter(~pl.col("ask")).drop("ask")
    ask = sides.filter(pl.col("ask")).drop("ask")
    both = bid.join(ask, on="symbol", suffix="_ask")
    return both.filter(pl.col("positive") & pl.col("positive_ask")
                       & (pl.col("bands") == pl.col("bands_ask")))["symbol"]


def with_helper_columns(dataset: str, frame: pl.DataFrame, frames: dict[str, pl.DataFrame],
                        day: dt.date, missing_columns: frozenset[str] = frozenset(),
                        window_end: dt.datetime | None = None) -> pl.DataFrame:
    """Add the `_dq_` columns the cross-dataset and cross-column expectations of `dataset` read
    (each True where the row is fine; null inputs count as fine here, the not-null rules catch
    them)."""
    spec = DATASETS[dataset]
    frame = frame.with_columns([pl.col(c).is_nan().fill_null(False).alias(f"_dq_nan_{c}")
                                for c in NULLABLE.get(dataset, frozenset()) | missing_columns
                                if spec.schema[c] == pl.Float64])
    if spec.day_column and spec.schema[spec.day_column] == pl.Date:
        # a Date value set does not survive GX's suite serialization: compare ISO strings
        frame = frame.with_columns(pl.col(spec.day_column).dt.to_string("%Y-%m-%d").alias("_dq_day_iso"))
    if dataset == "instruments":
        tiered = _frame(frames, "risk_tiers")["symbol"].drop_nulls().unique()
        marked = _frame(frames, "mark_index")["symbol"].drop_nulls().unique()
        def listed_in(dataset: str, symbols: pl.Series) -> pl.Expr:
            # a dataset the source does not carry cannot vouch for the symbol (nor count against it)
            if dataset not in frames:
                return pl.lit(True)
            return pl.col("symbol").is_in(symbols.implode()).fill_null(True)

        sources_ok = (pl.col("index_sources").list.drop_nulls().list.unique().list.len()
                      >= pl.col("index_min_sources")).fill_null(True)
        return frame.with_columns(
            # without index components there is no index rule to check the basket of
            (sources_ok if "index_components" in frames else pl.lit(True)).alias("_dq_index_sources_ok"),
            listed_in("risk_tiers", tiered).alias("_dq_has_tiers"),
            listed_in("mark_index", marked).alias("_dq_has_marks"),
            listed_in("book_depth", _depth_ok_symbols(_frame(frames, "book_depth"))).alias("_dq_depth_ok"))
    if dataset == "risk_tiers":
        ordered = frame.with_row_index("_i").sort("symbol", "tier", nulls_last=True)
        prev_cap = pl.col("notional_cap").shift(1).over("symbol")
        ok = (pl.when(prev_cap.is_null()).then(pl.col("notional_floor") == 0)
              .otherwise((pl.col("notional_floor") - prev_cap).abs() <= 1e-9 * prev_cap.abs().clip(1.0))
              & (pl.col("notional_cap") > pl.col("notional_floor"))).fill_null(True)
        # one bad tier makes the whole symbol's tier table unusable
        ordered = ordered.with_columns(ok.all().over("symbol").alias("_dq_tier_contiguous"))
        return frame.with_columns(ordered.sort("_i")["_dq_tier_contiguous"])
    if dataset == "trades":
        liqs = _frame(frames, "liquidations")
        liq_ids = liqs["liquidation_id"]
        order_ids = _frame(frames, "order_events")["order_id"].unique()
        liq_symbol = (frame.select("liquidation_id")
                      .join(liqs.select("liquidation_id", pl.col("symbol").alias("_ls"))
                            .unique("liquidation_id"), on="liquidation_id", how="left",
                            maintain_order="left")["_ls"])
        rates = (frame.select("symbol").join(
            _frame(frames, "instruments").select("symbol", "taker_fee_rate", "maker_fee_rate")
            .unique("symbol"), on="symbol", how="left", maintain_order="left"))
        fee_ok = (((rates["taker_fee_rate"] < 0) | (frame["taker_fee"] >= 0)).fill_null(True)
                  & ((rates["maker_fee_rate"] < 0) | (frame["maker_fee"] >= 0)).fill_null(True))
        def order_known(col: str) -> pl.Expr:
            # without order_events (or with the order ids declared missing) nothing to refer to
            if "order_events" not in frames or col in missing_columns:
                return pl.lit(True)
            return pl.col(col).is_in(order_ids.implode()).fill_null(False)

        return frame.with_columns(
            (pl.col("liquidation_id").is_null() | pl.lit("liquidations" not in frames)
             | pl.col("liquidation_id").is_in(liq_ids.implode())).alias("_dq_liquidation_known"),
            order_known("taker_order_id").alias("_dq_taker_order_known"),
            order_known("maker_order_id").alias("_dq_maker_order_known"),
            (pl.col("symbol") == liq_symbol).fill_null(True).alias("_dq_fill_symbol_matches"),
            fee_ok.alias("_dq_fee_sign_ok"),
        )
    if dataset == "liquidations":
        trades = _frame(frames, "trades")
        filled = trades["liquidation_id"].drop_nulls().unique()
        sums = (trades.filter(pl.col("liquidation_id").is_not_null())
                .group_by("liquidation_id").agg(pl.col("qty").sum().alias("_fills_qty")))
        fills_qty = frame.select("liquidation_id").join(sums, on="liquidation_id", how="left",
                                                        maintain_order="left")["_fills_qty"]
        pools = _frame(frames, "insurance_fund")["pool"].drop_nulls().unique()
        s = _side_sign()
        mark_gap = s * (pl.col("liquidation_price") - pl.col("mark_price")) / pl.col("mark_price")
        return frame.with_columns(
            ((pl.col("filled_qty").fill_null(0).fill_nan(0) <= 0)
             | pl.col("liquidation_id").is_in(filled.implode())).fill_null(False).alias("_dq_fills_found"),
            ((fills_qty.fill_null(0.0) - pl.col("filled_qty")).abs()
             <= FILLS_QTY_RTOL * pl.col("qty").abs()).fill_null(True).alias("_dq_fills_qty_match"),
            (pl.col("filled_qty") <= pl.col("qty") * (1 + FILLS_QTY_RTOL)).fill_null(True)
            .alias("_dq_filled_within_qty"),
            (s * (pl.col("liquidation_price") - pl.col("bankruptcy_price")) > 0).fill_null(True)
            .alias("_dq_bankruptcy_beyond"),
            ((pl.col("path") == "adl") | (mark_gap >= -MARK_TRIGGER_TOL)).fill_null(True)
            .alias("_dq_mark_triggered"),
            (pl.lit(pools.len() <= 1) | pl.col("symbol").is_in(pools.implode())).fill_null(True)
            .alias("_dq_pool_known"),
        )
    if dataset == "mark_index":
        day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
        end = min(window_end, day_end) if window_end else day_end
        # the freshness lag is measured on the rows inside the day: rows of the next day are
        # the day rule's business (quarantined and shown), not a stale series
        in_day_max = pl.col("ts").filter(pl.col("ts") < pl.lit(day_end)).max().over("symbol")
        return frame.with_columns(
            ((pl.col("mark_price") / pl.col("index_price") - 1).abs()).alias("_dq_mark_index_gap"),
            ((pl.lit(end) - in_day_max).dt.total_microseconds() / 1e6).clip(lower_bound=0.0)
            .fill_null(86_400.0).alias("_dq_symbol_end_lag_s"),
        )
    if dataset == "funding":
        caps = _frame(frames, "instruments")
        cap = frame.select("symbol").join(caps.select("symbol", "funding_cap").unique("symbol"),
                                          on="symbol", how="left", maintain_order="left")["funding_cap"]
        premium, interest = pl.col("premium_index"), pl.col("interest_rate")
        expected = (premium + (interest - premium).clip(-FUNDING_INTEREST_CLAMP, FUNDING_INTEREST_CLAMP))
        expected = pl.min_horizontal(pl.max_horizontal(expected, -pl.lit(cap)), pl.lit(cap))
        # the identity can be checked only where the source gives premium and interest (a
        # public funding file carries the rate alone: its other columns are declared missing)
        checkable = premium.is_not_null() & interest.is_not_null()
        return frame.with_columns(
            (pl.col("funding_rate").abs() / cap).alias("_dq_funding_cap_ratio"),
            (~checkable | ((pl.col("funding_rate") - expected).abs() <= FUNDING_IDENTITY_TOL).fill_null(True))
            .alias("_dq_funding_identity"))
    if dataset == "api_keys":
        return frame.with_columns(
            pl.col("scopes").list.eval(pl.element().is_in(list(API_SCOPES))).list.all()
            .fill_null(True).alias("_dq_scopes_known"))
    if dataset == "positions_eod":
        wallets = _frame(frames, "accounts_eod")["account"].drop_nulls().unique()
        return frame.with_columns(
            ((pl.col("margin_mode") != "cross") | pl.col("account").is_in(wallets.implode()))
            .fill_null(True).alias("_dq_cross_wallet_known"))
    return frame


# -- running the suites ------------------------------------------------------------------------

def import_gx():
    """great_expectations, imported with its usage analytics off (the one place that imports it:
    the gate, the suites and venue_risk.preload call this)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations

    return great_expectations


def _gx_context():
    gx = import_gx()
    context = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # progress bars only
        pass
    return context


def _short(value, limit: int = 300) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _trim_result(result: dict) -> dict:
    """A GX result dict with the row lists cut to 20 entries (kept beside the report)."""
    for r in result.get("results", []):
        res = r.get("result") or {}
        for key in ("unexpected_list", "unexpected_index_list", "partial_unexpected_list",
                    "partial_unexpected_index_list", "partial_unexpected_counts"):
            if isinstance(res.get(key), list) and len(res[key]) > 20:
                res[key] = res[key][:20]
    return result


def _to_pandas(frame: pl.DataFrame) -> "pandas.DataFrame":  # noqa: F821
    """The frame GX validates: string columns as pandas categoricals (same values and nulls;
    on the demo day's 1.2M order events the conversion takes 0.12 s instead of 1.15 s as
    strings, and GX's row hashing and null filtering are 3-5x faster on the codes). Converted a
    column at a time and joined without a copy: on 15.5M order events of one symbol the whole-frame
    conversion peaked 3.1 GB above the frame for a 1.0 GB result, by column 1.2 GB."""
    import pandas as pd

    columns = {}
    for name in frame.columns:
        column = frame[name]
        columns[name] = (column.cast(pl.Categorical) if column.dtype == pl.String else column).to_pandas()
    return pd.DataFrame(columns, copy=False) if columns else frame.to_pandas()


def _suite(gx, gxe, dataset: str, rules: list[Rule], ids) -> "gx.ExpectationSuite":  # noqa: F821
    """The GX suite of the rules numbered `ids` (each expectation's meta carries its number,
    name, severity and quarantine flag), built whole: adding expectations one by one to a stored
    suite re-serializes the suite on every add (1.4 s of 4.3 s on a demo day), and nothing here
    needs the suites or validation definitions persisted."""
    return gx.ExpectationSuite(name=dataset, expectations=[
        getattr(gxe, rules[i].kind)(**rules[i].kwargs, meta={"id": i, "name": rules[i].name,
                                                             "severity": rules[i].severity,
                                                             "quarantine": rules[i].quarantine})
        for i in ids])


def _found_rows(rule: Rule, result) -> bool:
    """Whether a BASIC result found unexpected rows whose numbers the gate needs (the first one
    as the check's example, all of them for a quarantine rule): a row-level expectation that ran
    and counted at least one."""
    raised = bool(result.exception_info and result.exception_info.get("raised_exception"))
    return (not raised and rule.kind != "ExpectTableRowCountToBeBetween"
            and bool((result.result or {}).get("unexpected_count")))


def run_suites(day: dt.date, frames: dict[str, pl.DataFrame],
               volume_bands: dict[str, tuple[float, float]],
               coverage: dict[str, dict] | None = None,
               reference: dict[str, pl.DataFrame] | None = None,
               row_ids: dict[str, pl.Series | None] | None = None,
               ) -> tuple[list[dict], dict[str, dict[int, str]], dict]:
    """Run the GX suite of every frame (the datasets the source carries). `coverage`: the
    gate's coverage per dataset (venue_risk.coverage.measure): its declared missing columns may
    be null, a declared window end replaces the end of the day in the freshness rules, and the
    volume band applies to complete days only. `reference`: the frames the cross-dataset
    helper columns and the listed symbols are read from (default `frames`; a symbol group of
    the split gate passes the day's reference data here and validates only its rows).
    `row_ids`: {dataset: the landed row number of each row of the frame} (default: the row
    position), used for the row named in the examples.

    Returns (checks, bad_rows, gx_results): checks in the gate's result shape, each with a
    `_rule` entry for the gate's combine step ({id, kind, first_row, raised, min, max, seen});
    bad_rows {dataset: {row position in the frame: reason}} for the quarantine (first failing
    expectation per row, in suite order); gx_results {dataset: GX validation result as JSON}."""
    gx = import_gx()
    import great_expectations.expectations as gxe

    context = _gx_context()
    source = context.data_sources.add_pandas("landing")
    reference = frames if reference is None else reference
    symbols = (reference["instruments"]["symbol"].drop_nulls().unique().sort().to_list()
               if "instruments" in reference else [])
    checks: list[dict] = []
    bad_rows: dict[str, dict[int, str]] = {}
    gx_results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    for dataset, frame in frames.items():
        t_start = time.perf_counter()
        cov = (coverage or {}).get(dataset) or {}
        missing = frozenset(cov.get("missing_columns") or ())
        window_end = (dt.datetime.fromisoformat(cov["window_end"]) if cov.get("declared_window")
                      and cov.get("window_end") else None)
        checked = with_helper_columns(dataset, frame, reference, day, missing, window_end)
        ids = (row_ids or {}).get(dataset)

        def source_row(idx: int) -> int:
            return int(ids[idx]) if ids is not None else idx
        band = volume_bands.get(dataset) if cov.get("state", "complete") == "complete" else None
        rules = suite_rules(dataset, day, symbols, band, missing, window_end)
        # the canonical columns, then the helper columns this gate added
        rules[0] = Rule(rules[0].name, "critical", rules[0].kind, {"column_list": checked.columns})
        batch = (source.add_dataframe_asset(dataset).add_batch_definition_whole_dataframe("day")
                 .get_batch(batch_parameters={"dataframe": _to_pandas(checked)}))
        result = batch.validate(_suite(gx, gxe, dataset, rules, range(len(rules))),
                                result_format={"result_format": "BASIC"})
        by_id = {int(r.expectation_config.meta["id"]): r for r in result.results}
        document = result.to_json_dict()
        rows_wanted = [i for i, r in by_id.items() if _found_rows(rules[i], r)]
        if rows_wanted:  # the second pass: the unexpected rows of the expectations that found some
            detail = batch.validate(_suite(gx, gxe, dataset, rules, rows_wanted),
                                    result_format={"result_format": "COMPLETE"})
            detailed = {int(r.expectation_config.meta["id"]): r for r in detail.results}
            if set(detailed) != set(rows_wanted):
                raise RuntimeError(f"{dataset}: the second GX pass returned the expectations "
                                   f"{sorted(detailed)}, not {rows_wanted}")
            by_id |= detailed
            entries = {int(e["expectation_config"]["meta"]["id"]): e for e in detail.to_json_dict()["results"]}
            document["results"] = [entries.get(int(e["expectation_config"]["meta"]["id"]), e)
                                   for e in document["results"]]
        rows: dict[int, str] = {}
        for i, rule in enumerate(rules):
            r = by_id.get(i)
            if r is None:
                raise RuntimeError(f"{dataset}: no GX result for {rule.name}; got {sorted(by_id)} {[x.expectation_config.meta for x in result.results][:3]}")
            res = r.result or {}
            raised = bool(r.exception_info and r.exception_info.get("raised_exception"))
            meta: dict = {"id": i, "kind": rule.kind, "first_row": None, "raised": raised}
            if rule.kind == "ExpectTableRowCountToBeBetween":
                meta |= {"min": rule.kwargs.get("min_value"), "max": rule.kwargs.get("max_value")}
            if rule.kind == "ExpectColumnMaxToBeBetween":  # the part holding the day's max decides
                meta["seen"] = frame[rule.kwargs["column"]].dt.epoch("us").max()  # (None: no value)
            if raised:
                failed, example = 1, f"expectation raised: {_short(r.exception_info.get('exception_message'))}"
            elif "unexpected_count" in res and rule.kind != "ExpectTableRowCountToBeBetween":
                failed = int(res.get("unexpected_count") or 0)
                index = res.get("unexpected_index_list") or []
                example = ""
                if failed and index:
                    meta["first_row"] = source_row(int(index[0]))
                    example = _short(frame.row(int(index[0]), named=True) | {"row": meta["first_row"]})
                if failed and rule.quarantine:
                    for idx in index:
                        rows.setdefault(int(idx), rule.name)
            else:
                failed = 0 if r.success else 1
                example = "" if r.success else _short(f"observed {res.get('observed_value')!r}")
            checks.append({"dataset": dataset, "check": rule.name, "severity": rule.severity,
                           "expectation": r.expectation_config.type, "failed_count": failed,
                           "example": example, "quarantine": rule.quarantine, "_rule": meta})
        bad_rows[dataset] = rows
        timings[dataset] = round(time.perf_counter() - t_start, 3)
        gx_results[dataset] = _trim_result(json.loads(json.dumps(document, default=str)))
        # the context outlives this call (GX keeps the last one): drop the asset, its batch and
        # the pandas copy of the frame now, not when the next dataset's is already built
        del batch, result, by_id
        source.delete_asset(dataset)
    context.data_sources.delete("landing")
    gx_results["_seconds_per_dataset"] = timings
    return checks, bad_rows, gx_results


# -- volume history ----------------------------------------------------------------------------

def volume_bands(quality_root: Path, day: dt.date,
                 days: int = VOLUME_HISTORY_DAYS) -> dict[str, tuple[float, float]]:
    """Row-count bands from the trailing average of the days before `day` that passed the gate
    (their validation.json `row_counts`); empty without history. Never reads the warehouse."""
    counts: dict[str, list[int]] = {}
    for back in range(1, days + 1):
        path = Path(quality_root) / f"date={(day - dt.timedelta(days=back)).isoformat()}" / "validation.json"
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if previous.get("status") == "failed":
            continue
        for dataset, n in (previous.get("row_counts") or {}).items():
            counts.setdefault(dataset, []).append(int(n))
    bands = {}
    for dataset, values in counts.items():
        avg = sum(values) / len(values)
        if avg > 0:
            bands[dataset] = (avg * VOLUME_BAND[0], avg * VOLUME_BAND[1])
    return bands
