"""The Great Expectations suites of the canonical datasets (DESIGN section 5), kept in code, and
the gate that runs them on a landed day.

Every expectation carries `meta = {name, severity, quarantine}`:

- `critical` stops the day: `DataQualityError` (the DAG's failure callback alerts with the
  failed expectations' names), nothing is loaded, no report.
- `warning` with `quarantine=True` is a row-level expectation: the rows GX reports as unexpected
  (`unexpected_index_list`, COMPLETE result format) are moved to the quarantine with the
  expectation's name as the reason; the good rows go on to the warehouse.
- `warning` without quarantine flags the report (table-level: volume).

GX runs every expectation (ephemeral context, pandas datasource, one `ValidationDefinition` per
dataset; the Polars frames are converted with `to_pandas()`). Cross-dataset expectations
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
                volume_band: tuple[float, float] | None) -> list[Rule]:
    """The expectations of one dataset for day `day` (`symbols`: the day's instruments;
    `volume_band`: allowed row count range from the trailing average, None without history)."""
    spec = DATASETS[dataset]
    rules: list[Rule] = [_c("columns are the canonical columns in order",
                            "ExpectTableColumnsToMatchOrderedList", column_list=spec.columns)]
    if dataset in MUST_HAVE_ROWS:
        rules.append(_c("at least one row", "ExpectTableRowCountToBeBetween", min_value=1))
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
    rules += _SPECIFIC[dataset](day)
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


def _instruments(day):
    return [*_positive("tick_size", "critical"), *_positive("lot_size", "critical"),
            *_finite("max_leverage", 1, 1000, severity="critical"),
            *_finite("taker_fee_rate", -0.01, 0.05, severity="critical"),
            *_finite("maker_fee_rate", -0.01, 0.05, severity="critical"),
            *_finite("liquidation_fee_rate", 0, 0.1, severity="critical"),
            *_positive("funding_cap", "critical"),
            _c("funding_cap <= 10%", "ExpectColumnValuesToBeBetween", column="funding_cap",
               min_value=0, max_value=0.1)]


def _risk_tiers(day):
    return [*_finite("notional_floor", 0, 1e15, severity="critical"),
            *_positive("notional_cap", "critical")[:1],
            *_finite("max_leverage", 1, 1000, severity="critical"),
            *_finite("maintenance_margin_rate", 0, 1, severity="critical"),
            *_finite("maintenance_amount", -1e15, 1e15, severity="critical")]


def _trades(day):
    return [*_positive("price"), *_positive("qty"), _in_set("taker_side", SIDES),
            *_finite("taker_fee"), *_finite("maker_fee"),
            _q("liquidation fills point to a known liquidation", "ExpectColumnValuesToBeInSet",
               column="_dq_liquidation_known", value_set=[True]),
            _q("taker_order_id is an order in order_events", "ExpectColumnValuesToBeInSet",
               column="_dq_taker_order_known", value_set=[True]),
            _q("maker_order_id is an order in order_events", "ExpectColumnValuesToBeInSet",
               column="_dq_maker_order_known", value_set=[True])]


def _order_events(day):
    return [_in_set("event", ORDER_EVENTS), _in_set("side", SIDES),
            _in_set("order_type", ORDER_TYPES), _in_set("tif", TIFS),
            *_positive("qty"),
            _q("price > 0 and finite (null for market orders)", "ExpectColumnValuesToBeBetween",
               column="price", min_value=0, max_value=BIG, strict_min=True),
            *_finite("cum_filled_qty", 0, BIG)]


def _mark_index(day):
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    rules = []
    for col in ("mark_price", "index_price", "last_price", "best_bid", "best_ask"):
        rules += _positive(col)
    rules.append(_q(f"mark within {MARK_INDEX_BAND:.0%} of index", "ExpectColumnValuesToBeBetween",
                    column="_dq_mark_index_gap", min_value=0, max_value=MARK_INDEX_BAND))
    rules.append(_c(f"every symbol's series reaches the last minute of the day (lag <= {FRESHNESS_S} s)",
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
            *_finite("premium_index", -1, 1), *_positive("mark_price"), *_positive("index_price")]


def _market_metrics(day):
    return [*_finite("open_interest", 0, BIG), *_finite("open_interest_value", 0, 1e15),
            *_finite("long_short_account_ratio", 0, 1e6, nullable=True),
            *_finite("taker_buy_sell_ratio", 0, 1e9, nullable=True)]


def _book_depth(day):
    return [*_finite("percentage", -100, 100), *_finite("depth", 0, BIG),
            *_finite("notional", 0, 1e15)]


def _liquidations(day):
    return [_in_set("side", SIDES), _in_set("path", LIQUIDATION_PATHS),
            _in_set("margin_mode", MARGIN_MODES), *_positive("qty"),
            *_finite("filled_qty", 0, BIG), *_positive("mark_price"),
            *_finite("leverage", 1, 1000), *_finite("fee", -BIG, BIG),
            _q("filled liquidation has its fills in trades", "ExpectColumnValuesToBeInSet",
               column="_dq_fills_found", value_set=[True])]


def _positions_eod(day):
    return [*_finite("size"), *_finite("entry_price", 0, BIG), _in_set("margin_mode", MARGIN_MODES),
            *_finite("leverage", 1, 1000), *_finite("isolated_margin", 0, 1e15)]


def _accounts_eod(day):
    return [*_finite("wallet_balance", -1e15, 1e15)]


def _leverage_changes(day):
    return [*_finite("old_leverage", 1, 1000), *_finite("new_leverage", 1, 1000)]


def _api_keys(day):
    return [_q("account not null", "ExpectColumnValuesToNotBeNull", column="account")]


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

def with_helper_columns(dataset: str, frame: pl.DataFrame, frames: dict[str, pl.DataFrame],
                        day: dt.date) -> pl.DataFrame:
    """Add the `_dq_` columns the cross-dataset expectations of `dataset` read."""
    spec = DATASETS[dataset]
    if spec.day_column and spec.schema[spec.day_column] == pl.Date:
        # a Date value set does not survive GX's suite serialization: compare ISO strings
        frame = frame.with_columns(pl.col(spec.day_column).dt.to_string("%Y-%m-%d").alias("_dq_day_iso"))
    if dataset == "trades":
        liq_ids = frames.get("liquidations", pl.DataFrame({"liquidation_id": []}))["liquidation_id"]
        order_ids = frames.get("order_events", pl.DataFrame({"order_id": []}))["order_id"].unique()
        return frame.with_columns(
            (pl.col("liquidation_id").is_null()
             | pl.col("liquidation_id").is_in(liq_ids.implode())).alias("_dq_liquidation_known"),
            pl.col("taker_order_id").is_in(order_ids.implode()).fill_null(False).alias("_dq_taker_order_known"),
            pl.col("maker_order_id").is_in(order_ids.implode()).fill_null(False).alias("_dq_maker_order_known"),
        )
    if dataset == "liquidations":
        trades = frames.get("trades")
        filled = (trades["liquidation_id"].drop_nulls().unique() if trades is not None
                  else pl.Series("liquidation_id", [], pl.Int64))
        return frame.with_columns(
            ((pl.col("filled_qty").fill_null(0).fill_nan(0) <= 0)
             | pl.col("liquidation_id").is_in(filled.implode())).fill_null(False).alias("_dq_fills_found"))
    if dataset == "mark_index":
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
        return frame.with_columns(
            ((pl.col("mark_price") / pl.col("index_price") - 1).abs()).alias("_dq_mark_index_gap"),
            ((pl.lit(end) - pl.col("ts").max().over("symbol")).dt.total_microseconds() / 1e6)
            .alias("_dq_symbol_end_lag_s"),
        )
    if dataset == "funding":
        caps = frames.get("instruments", pl.DataFrame(schema={"symbol": pl.String, "funding_cap": pl.Float64}))
        cap = frame.select("symbol").join(caps.select("symbol", "funding_cap").unique("symbol"),
                                          on="symbol", how="left", maintain_order="left")["funding_cap"]
        return frame.with_columns((pl.col("funding_rate").abs() / cap).alias("_dq_funding_cap_ratio"))
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
    strings, and GX's row hashing and null filtering are 3-5x faster on the codes)."""
    return frame.with_columns(pl.col(pl.String).cast(pl.Categorical)).to_pandas()


def run_suites(day: dt.date, frames: dict[str, pl.DataFrame],
               volume_bands: dict[str, tuple[float, float]]) -> tuple[list[dict], dict[str, dict[int, str]], dict]:
    """Run the GX suite of every frame. Returns (checks, bad_rows, gx_results):
    checks in the gate's result shape; bad_rows {dataset: {row index: reason}} for the
    quarantine (first failing expectation per row, in suite order); gx_results {dataset: GX
    validation result as JSON}."""
    gx = import_gx()
    import great_expectations.expectations as gxe

    context = _gx_context()
    source = context.data_sources.add_pandas("landing")
    symbols = (frames["instruments"]["symbol"].drop_nulls().unique().sort().to_list()
               if "instruments" in frames else [])
    checks: list[dict] = []
    bad_rows: dict[str, dict[int, str]] = {}
    gx_results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    for dataset, frame in frames.items():
        t_start = time.perf_counter()
        checked = with_helper_columns(dataset, frame, frames, day)
        rules = suite_rules(dataset, day, symbols, volume_bands.get(dataset))
        # the canonical columns, then the helper columns this gate added
        rules[0] = Rule(rules[0].name, "critical", rules[0].kind, {"column_list": checked.columns})
        # the suite is built whole and validated on the batch directly: adding expectations one
        # by one to a stored suite re-serializes the suite on every add (1.4 s of 4.3 s on a demo
        # day), and nothing here needs the suites or validation definitions persisted
        suite = gx.ExpectationSuite(name=dataset, expectations=[
            getattr(gxe, rule.kind)(**rule.kwargs, meta={"id": i, "name": rule.name,
                                                         "severity": rule.severity,
                                                         "quarantine": rule.quarantine})
            for i, rule in enumerate(rules)])
        batch = (source.add_dataframe_asset(dataset).add_batch_definition_whole_dataframe("day")
                 .get_batch(batch_parameters={"dataframe": _to_pandas(checked)}))
        result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
        by_id = {}
        for r in result.results:
            by_id[int(r.expectation_config.meta["id"])] = r
        rows: dict[int, str] = {}
        for i, rule in enumerate(rules):
            r = by_id.get(i)
            if r is None:
                raise RuntimeError(f"{dataset}: no GX result for {rule.name}; got {sorted(by_id)} {[x.expectation_config.meta for x in result.results][:3]}")
            res = r.result or {}
            raised = bool(r.exception_info and r.exception_info.get("raised_exception"))
            if raised:
                failed, example = 1, f"expectation raised: {_short(r.exception_info.get('exception_message'))}"
            elif "unexpected_count" in res and rule.kind != "ExpectTableRowCountToBeBetween":
                failed = int(res.get("unexpected_count") or 0)
                index = res.get("unexpected_index_list") or []
                example = ""
                if failed and index:
                    example = _short(frame.row(int(index[0]), named=True) | {"row": int(index[0])})
                if failed and rule.quarantine:
                    for idx in index:
                        rows.setdefault(int(idx), rule.name)
            else:
                failed = 0 if r.success else 1
                example = "" if r.success else _short(f"observed {res.get('observed_value')!r}")
            checks.append({"dataset": dataset, "check": rule.name, "severity": rule.severity,
                           "expectation": r.expectation_config.type, "failed_count": failed,
                           "example": example, "quarantine": rule.quarantine})
        bad_rows[dataset] = rows
        timings[dataset] = round(time.perf_counter() - t_start, 3)
        gx_results[dataset] = _trim_result(json.loads(json.dumps(result.to_json_dict(), default=str)))
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
