"""The metric stage: read one day (and the trailing history it needs) from the warehouse,
run every metric family, and return the tables to store per date.

Each family is a function of frames only; this module is the one place that knows which
warehouse tables feed which family and which stored metric table serves as whose baseline.
"""

from __future__ import annotations

import contextlib
import datetime as dt

import duckdb
import polars as pl

from venue_risk.schema import DATASETS
from venue_risk.warehouse import read_day, read_history, table_exists

INPUTS = ("instruments", "risk_tiers", "trades", "order_events", "liquidations", "book_depth",
          "market_metrics", "insurance_fund", "funding", "mark_index", "index_components",
          "positions_eod", "accounts_eod", "leverage_changes", "api_keys", "api_requests")
#: The columns the metric families read of a dataset, where that is not all of them (the
#: largest input: order_events without account, api_key_id and reject_reason is ~25 % smaller).
READ_COLUMNS: dict[str, tuple[str, ...]] = {
    "order_events": ("ts", "symbol", "order_id", "event", "side", "order_type", "tif", "price", "qty",
                     "cum_filled_qty", "reduce_only", "post_only"),
}
#: Trailing days of per-minute features used as the anomaly baseline (bounded: 1,440 rows per
#: symbol and day).
ANOMALY_BASELINE_DAYS = 7

#: Stored metric tables, in the order they are computed.
METRIC_TABLES = (
    "liquidation_executions", "slippage_by_path", "slippage_by_depth_bin", "forced_costs",
    "forced_cost_by_path", "insurance_fund_flows", "margin_sensitivity",
    "crowding", "index_gap_summary", "source_exclusions", "exclusion_windows",
    "single_source_sensitivity", "broken_source_counterfactual", "mark_basis",
    "mark_lag_by_vol_bucket", "feature_samples", "feature_drift", "fill_quality_by_vol_bucket",
    "order_flow_violations", "order_flow_counts", "position_rebuild_check", "position_rebuild_excluded",
    "minute_features", "anomaly_incidents", "rules_vs_model",
    "cross_margin_stress", "cross_margin_summary",
    "position_bands", "time_in_band", "liquidations_at_risk", "cascade_table",
    "api_key_checklist", "api_checklist_totals", "api_unattributed", "api_scope_usage",
    "venue_figures",
)


def read_partitions(files: list[str], dataset: str, symbols: list[str] | None = None,
                    columns: tuple[str, ...] | None = None) -> pl.DataFrame:
    """One day of canonical dataset `dataset` from the gate's validated Parquet partitions of
    that day (`files`, in the order the warehouse loaded them: the same rows in the same order
    as warehouse.read_day returns for the day), read by Polars: only `columns` (None: the
    dataset's schema), only the rows of `symbols` where the dataset has a symbol column (the
    filter is pushed into the Parquet scan, so row groups of other symbols are skipped)."""
    schema = DATASETS[dataset].schema
    cols = list(columns or schema)
    scan = pl.scan_parquet(files).select(cols)
    if symbols is not None and "symbol" in schema:
        scan = scan.filter(pl.col("symbol").is_in(list(symbols)))
    # the in-memory engine keeps the files' row order (the streaming one does not promise it)
    return scan.collect(engine="in-memory").cast({c: schema[c] for c in cols})


def read_inputs(con: duckdb.DuckDBPyConnection, day: dt.date, symbols: list[str] | None = None,
                names: tuple[str, ...] = INPUTS,
                partitions: dict[str, list[str]] | None = None) -> dict[str, pl.DataFrame]:
    """The day's canonical datasets `names`, plus the previous day's positions_eod
    (positions_start), the quarantined fills and the last minute of the previous day's index
    components (so a source's age is known from the first second of the day). `symbols`: only
    the rows of those symbols in every dataset with a symbol column (None: every row).
    `partitions`: {dataset: validated Parquet files} of the day the warehouse was loaded from
    (validation.json's `validated`); the day's datasets listed there are read from those files
    (`read_partitions`: the same frames in about the same time, without the warehouse's Arrow
    export holding a second copy: the large venue's busiest symbol group peaks 2.6 GiB lower),
    the rest and the earlier days from the warehouse. The partitions are read in two threads
    (Polars releases the GIL) while this one reads the warehouse."""
    from concurrent.futures import ThreadPoolExecutor

    where = None
    if symbols is not None:
        where = "symbol IN (" + ", ".join("'" + s.replace("'", "''") + "'" for s in symbols) + ")"

    def rows(table: str, on: dt.date) -> pl.DataFrame:
        return read_day(con, table, on, where if "symbol" in DATASETS[table].schema else None,
                        columns=READ_COLUMNS.get(table))

    files = {name: partitions[name] for name in names if partitions and partitions.get(name)}
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="read-partitions") as pool:
        read = {name: pool.submit(read_partitions, files[name], name, symbols, READ_COLUMNS.get(name))
                for name in files}
        from_warehouse = {name: rows(name, day) for name in names if name not in files}
        data = {name: read[name].result() if name in read else from_warehouse[name] for name in names}
    data["positions_start"] = rows("positions_eod", day - dt.timedelta(days=1))
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    data["quarantined_fills"] = quarantined_fills(con, day)
    data["prev_index_components"] = con.sql(
        f"SELECT * EXCLUDE (date) FROM index_components WHERE date = DATE '{day - dt.timedelta(days=1)}' "
        f"AND received_ts >= TIMESTAMPTZ '{(start - dt.timedelta(minutes=1)).isoformat()}'"
        + (f" AND {where}" if where else "")
    ).pl()
    return data


QUARANTINED_FILLS_SCHEMA = {"account": pl.Int64, "symbol": pl.String, "quarantined_fills": pl.Int64,
                            "quarantined_positions": pl.Int64}


def quarantined_fills(con: duckdb.DuckDBPyConnection, day: dt.date) -> pl.DataFrame:
    """account, symbol, quarantined_fills, quarantined_positions: per account and symbol, the
    rows the gate took out that the position rebuild would need (from the warehouse
    `quarantine` table's records): the day's trades (taker and maker side), and the
    positions_eod rows of the day (its end-of-day positions) and of the day before (its
    start-of-day positions). Their positions cannot be rebuilt and compared from what was
    loaded, so they are left out of the rebuild check rather than reported as the venue's
    mismatches."""
    empty = pl.DataFrame(schema=QUARANTINED_FILLS_SCHEMA)
    if not table_exists(con, "quarantine"):
        return empty
    fills = " UNION ALL ".join(
        f"SELECT TRY_CAST(json_extract_string(record, '$.{side}') AS BIGINT) AS account, "
        f"json_extract_string(record, '$.symbol') AS symbol, 1 AS f, 0 AS p FROM quarantine "
        f"WHERE date = DATE '{day.isoformat()}' AND dataset = 'trades'"
        for side in ("taker_account", "maker_account"))
    positions = (
        "SELECT TRY_CAST(json_extract_string(record, '$.account') AS BIGINT) AS account, "
        "json_extract_string(record, '$.symbol') AS symbol, 0 AS f, 1 AS p FROM quarantine "
        f"WHERE date IN (DATE '{day.isoformat()}', DATE '{(day - dt.timedelta(days=1)).isoformat()}') "
        "AND dataset = 'positions_eod'")
    out = con.sql(f"SELECT account, symbol, sum(f)::BIGINT AS quarantined_fills, "
                  f"sum(p)::BIGINT AS quarantined_positions FROM ({fills} UNION ALL {positions}) "
                  "WHERE account IS NOT NULL AND symbol IS NOT NULL GROUP BY ALL ORDER BY ALL").pl()
    return out.cast(empty.schema) if out.height else empty


def read_baselines(con: duckdb.DuckDBPyConnection, day: dt.date, days: int) -> dict[str, pl.DataFrame]:
    """Earlier days' rows of the metric tables that serve as trailing baselines."""
    out = {name: read_history(con, name, day, days) if table_exists(con, name) else pl.DataFrame()
           for name in ("crowding", "feature_samples", "api_scope_usage")}
    out["minute_features"] = (read_history(con, "minute_features", day, min(days, ANOMALY_BASELINE_DAYS))
                              if table_exists(con, "minute_features") else pl.DataFrame())
    return out


def family_inputs(data: dict[str, pl.DataFrame], coverage: dict[str, dict] | None,
                  section: str) -> dict[str, pl.DataFrame]:
    """The inputs a metric family sees: `data` when the source covers what the family needs
    (venue_risk.coverage.SECTION_NEEDS), else every frame emptied, so the family yields its
    tables empty (their figures and sections then read `not_covered`, never a zero of data that
    was not there) and never meets columns the source declared missing."""
    from venue_risk.coverage import SECTION_NEEDS, needs_state

    if coverage is None or needs_state(SECTION_NEEDS[section], coverage)[0] != "absent":
        return data
    return {name: frame.clear() for name, frame in data.items()}


#: Metric tables computed per symbol group (in a split run, by Airflow mapped tasks over the
#: groups), with the key their rows are ordered by once the groups are put together. Each is
#: a row-wise function of one symbol's data, so the concatenation over groups (re-sorted by the
#: key, stably) equals the table computed over every symbol at once. The rest of
#: METRIC_TABLES (aggregates over symbols, baselines, cross-symbol families, the venue
#: summary) is computed once from these and the day's other inputs (`combined_tables`).
SYMBOL_TABLES: dict[str, tuple[str, ...]] = {
    "liquidation_executions": ("liquidation_id",),
    "forced_costs": ("liquidation_id",),
    "margin_sensitivity": ("symbol",),
    "index_gap_summary": ("symbol",),
    "source_exclusions": ("symbol",),
    "exclusion_windows": ("symbol",),
    "single_source_sensitivity": ("symbol",),
    "broken_source_counterfactual": ("symbol",),
    "mark_basis": ("symbol",),
    "mark_lag_by_vol_bucket": ("symbol",),
    "order_flow_violations": (),
    "position_rebuild_check": ("account", "symbol"),
    "minute_features": ("date", "symbol", "minute"),
    "drift_values": (),  # (not stored: the day's sample of it is, feature_samples)
}
#: Inputs only the per-symbol families read (the combine step never loads them: at a large
#: venue's size order_events alone holds 100M+ rows).
SYMBOL_ONLY_INPUTS = ("order_events", "index_components")
#: The inputs of `symbol_tables` (read per group, with only the group's symbols).
SYMBOL_INPUTS = ("instruments", "risk_tiers", "trades", "order_events", "liquidations", "book_depth",
                 "mark_index", "index_components", "positions_eod", "leverage_changes")


def index_tables(full: dict[str, pl.DataFrame], coverage: dict[str, dict] | None = None) -> dict[str, pl.DataFrame]:
    """DESIGN 4.4 index and mark integrity of the symbols in `full` but the single-source
    sensitivity (`sensitivity_table`): the index recomputed from index_components
    (venue_risk.index_rule) with each source's status, its gap to the published index, the
    exclusions, the broken-source counterfactual, the mark basis and the mark lag by volatility
    bucket."""
    from venue_risk.metrics import index_integrity as ii

    data = family_inputs(full, coverage, "index")
    prev = data["prev_index_components"]
    recomputed, status = ii.recompute_index_and_status(
        data["index_components"], data["instruments"], data["mark_index"],
        prev_index_components=prev if prev.height else None)
    return {
        "index_gap_summary": ii.index_gap_summary(recomputed),
        "source_exclusions": ii.source_exclusions(status),
        "exclusion_windows": ii.exclusion_windows(status),
        "broken_source_counterfactual": ii.broken_source_counterfactual(
            data["index_components"], data["instruments"], data["mark_index"], status,
            positions_eod=data["positions_eod"], risk_tiers=data["risk_tiers"]),
        "mark_basis": ii.mark_basis(full["mark_index"]),
        "mark_lag_by_vol_bucket": ii.mark_lag_by_vol_bucket(full["mark_index"], full["trades"]),
    }


def sensitivity_table(full: dict[str, pl.DataFrame], coverage: dict[str, dict] | None = None) -> dict[str, pl.DataFrame]:
    """DESIGN 4.4 single-source sensitivity of the symbols in `full` (the largest index move one
    source could cause, venue_risk.metrics.index_integrity.single_source_sensitivity)."""
    from venue_risk.metrics import index_integrity as ii

    data = family_inputs(full, coverage, "index")
    return {"single_source_sensitivity": ii.single_source_sensitivity(
        data["index_components"], data["instruments"], data["mark_index"], data["positions_eod"],
        data["risk_tiers"])}


def symbol_tables(data: dict[str, pl.DataFrame], day: dt.date,
                  coverage: dict[str, dict] | None = None) -> dict[str, pl.DataFrame]:
    """The SYMBOL_TABLES of the symbols in `data` (every frame holding only those symbols'
    rows): DESIGN 4.1/4.2 per liquidation (executions, forced costs) and per symbol (margin
    sensitivity), 4.4 index and mark integrity, 4.6 order-flow violations and the position
    rebuild check (before the day-level exclusions of `combined_tables`), 4.7 per-minute
    features.

    The single-source sensitivity and the rest of the index family (numpy and compiled loops,
    which release the GIL) run in two more threads while this one computes the other families
    (Polars, which releases it too), so on a 2-core machine they overlap. Each reads the frames
    and returns its own tables: the tables are the same as computed one after the other."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="index-family") as pool:
        index = [pool.submit(job, data, coverage) for job in (sensitivity_table, index_tables)]
        out = _other_symbol_tables(data, day, coverage)
        for job in index:
            out |= job.result()
    return {name: out[name] for name in SYMBOL_TABLES}


def _other_symbol_tables(full: dict[str, pl.DataFrame], day: dt.date,
                         coverage: dict[str, dict] | None) -> dict[str, pl.DataFrame]:
    """The SYMBOL_TABLES other than those of `index_tables` and `sensitivity_table` (see
    symbol_tables)."""
    from venue_risk.metrics import anomalies, drift, forced_cost, order_flow, slippage

    data = family_inputs(full, coverage, "slippage")
    executions = slippage.liquidation_executions(data["liquidations"], data["trades"], data["book_depth"])
    out = {
        "liquidation_executions": executions,
        "forced_costs": forced_cost.forced_costs(executions, data["instruments"], data["risk_tiers"]),
        "margin_sensitivity": pl.concat(
            [forced_cost.margin_sensitivity(full["risk_tiers"], symbol)
             for symbol in full["instruments"]["symbol"].sort().to_list()], how="vertical")
        if full["instruments"].height else
        forced_cost.margin_sensitivity(full["risk_tiers"], "").clear(),
    }

    data = family_inputs(full, coverage, "order_flow")
    fills = order_flow.rebuild_positions(data["positions_start"], data["trades"])
    rebuilt = order_flow.end_of_day_positions(data["positions_start"], data["trades"], day)
    out["order_flow_violations"] = order_flow.violations(data["order_events"], data["trades"], fills)
    out["position_rebuild_check"] = (
        rebuilt.join(data["positions_eod"].select("account", "symbol", pl.col("size").alias("reported")),
                     on=["account", "symbol"], how="full", coalesce=True)
        .with_columns(pl.col("size").fill_null(0.0), pl.col("reported").fill_null(0.0))
        .filter((pl.col("size") - pl.col("reported")).abs() > 1e-9)
        .select("account", "symbol", pl.col("size").alias("rebuilt_size"), pl.col("reported").alias("reported_size")))

    data = family_inputs(full, coverage, "anomalies")
    out["minute_features"] = anomalies.minute_features(
        data["order_events"], data["leverage_changes"], data["book_depth"], data["mark_index"],
        data["liquidations"], data["trades"])

    data = family_inputs(full, coverage, "drift")
    out["drift_values"] = drift.feature_values(data["trades"], data["order_events"], data["mark_index"],
                                               data["book_depth"], data["positions_eod"], executions)
    return out


def concat_symbol_tables(parts: list[dict[str, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    """The SYMBOL_TABLES of several symbol groups as one table each: the groups' rows
    concatenated in group order, then stably sorted by the table's key (SYMBOL_TABLES), so the
    result does not depend on how the symbols were grouped. One part is returned as it is."""
    if len(parts) == 1:
        return dict(parts[0])
    out = {}
    for name, key in SYMBOL_TABLES.items():
        frame = pl.concat([p[name] for p in parts], how="vertical")
        out[name] = frame.sort(list(key), maintain_order=True, nulls_last=True) if key else frame
    return out


def liquidation_tables(data: dict[str, pl.DataFrame], sym: dict[str, pl.DataFrame],
                       coverage: dict[str, dict] | None = None) -> dict[str, pl.DataFrame]:
    """DESIGN 4.1 and 4.2: slippage per path and forced-execution cost, from the per-liquidation
    tables of `symbol_tables`."""
    from venue_risk.metrics import forced_cost, slippage

    executions, costs = sym["liquidation_executions"], sym["forced_costs"]
    return {
        "liquidation_executions": executions,
        "slippage_by_path": slippage.slippage_by_path(executions),
        "slippage_by_depth_bin": slippage.slippage_by_depth_bin(executions),
        "forced_costs": costs,
        "forced_cost_by_path": forced_cost.forced_cost_by_path(costs),
        "insurance_fund_flows": forced_cost.insurance_fund_flows(data["liquidations"], data["insurance_fund"]),
        "margin_sensitivity": sym["margin_sensitivity"],
    }


def market_tables(data: dict[str, pl.DataFrame], baselines: dict[str, pl.DataFrame],
                  sym: dict[str, pl.DataFrame], coverage: dict[str, dict] | None = None) -> dict[str, pl.DataFrame]:
    """DESIGN 4.3 (crowding), 4.4 (index and mark integrity, from `symbol_tables`) and 4.5
    (drift)."""
    from venue_risk.metrics import crowding, drift

    full = data
    cr = family_inputs(full, coverage, "crowding")
    daily = crowding.funding_vol_daily(cr["funding"], cr["mark_index"], cr["market_metrics"],
                                       cr["instruments"])
    dr = family_inputs(full, coverage, "drift")
    samples = drift.sample_values(sym["drift_values"])
    return {
        "crowding": crowding.crowding_scores(daily, baselines["crowding"]),
        **{name: sym[name] for name in ("index_gap_summary", "source_exclusions", "exclusion_windows",
                                        "single_source_sensitivity", "broken_source_counterfactual",
                                        "mark_basis", "mark_lag_by_vol_bucket")},
        "feature_samples": samples,
        "feature_drift": drift.feature_drift(
            samples, baselines["feature_samples"] if baselines["feature_samples"].height else samples.clear()),
        "fill_quality_by_vol_bucket": drift.fill_quality_by_vol_bucket(dr["trades"], dr["mark_index"]),
    }


def account_tables(data: dict[str, pl.DataFrame], baselines: dict[str, pl.DataFrame],
                   sym: dict[str, pl.DataFrame], day: dt.date, engine_latency_s: float = 1.0,
                   coverage: dict[str, dict] | None = None) -> dict[str, pl.DataFrame]:
    """DESIGN 4.6 (order flow), 4.7 (anomalies), 4.8 (cross margin), 4.9 (bands, cascades) and
    4.10 (API keys).

    Positions are rebuilt from the previous day's positions_eod; on the first day the warehouse
    holds (no previous day) there is nothing to rebuild from, so the rebuild check and the
    reduce-only checks, which need the position before each fill, are left empty that day.
    An account-symbol with a fill or a start- or end-of-day position the gate quarantined cannot
    be rebuilt and compared from what was loaded: it is left out of the rebuild check and the
    reduce-only checks and listed in position_rebuild_excluded (account, symbol,
    quarantined_fills, quarantined_positions) instead (a quarantined row on an unlisted symbol
    leaves out every symbol of its accounts)."""
    from venue_risk.metrics import (anomalies, api_scoping, cascade, cross_margin,
                                    liquidation_bands as bands_m, order_flow)

    full = data
    data = family_inputs(full, coverage, "order_flow")
    has_start = data["positions_start"].height > 0
    violations, check = sym["order_flow_violations"], sym["position_rebuild_check"]
    if not has_start:
        violations = violations.filter(~pl.col("kind").str.starts_with("reduce_only"))
        check = check.clear()
    excluded = data.get("quarantined_fills", pl.DataFrame(schema=QUARANTINED_FILLS_SCHEMA))
    if excluded.height:
        # a quarantined fill on an unlisted symbol may have been any of the account's symbols
        listed = data["instruments"]["symbol"]
        pairs = pl.concat([
            excluded.select("account", "symbol"),
            excluded.filter(~pl.col("symbol").is_in(listed.implode())).select("account").unique()
            .join(pl.DataFrame({"symbol": listed}), how="cross")]).unique()
        check = check.join(pairs, on=["account", "symbol"], how="anti")
        hit = violations.join(pairs.with_columns(pl.lit(True).alias("_quarantined")),
                              on=["account", "symbol"], how="left", maintain_order="left")
        violations = hit.filter(~(pl.col("kind").str.starts_with("reduce_only")
                                  & pl.col("_quarantined").fill_null(False))).drop("_quarantined")

    features = sym["minute_features"]
    baseline = baselines["minute_features"]
    z = anomalies.robust_z(features, baseline if baseline.height else None)
    incidents = anomalies.incidents(z)

    data = family_inputs(full, coverage, "cross_margin")
    vols, corr = cross_margin.return_stats(data["mark_index"])
    stress = cross_margin.stress_cross_accounts(data["positions_eod"], data["accounts_eod"], data["mark_index"],
                                                data["risk_tiers"], vols, corr)
    data = family_inputs(full, coverage, "bands")
    marks = bands_m.eod_marks(data["mark_index"])
    bands = bands_m.position_bands(data["positions_eod"], data["accounts_eod"], data["risk_tiers"], marks)
    graph = cascade.build_graph(bands, data["book_depth"], data["mark_index"], data["risk_tiers"])

    data = family_inputs(full, coverage, "api")
    history = baselines["api_scope_usage"]
    checklist = api_scoping.key_checklist(data["api_keys"], data["api_requests"], day,
                                          scope_history=history if history.height else None)
    return {
        "order_flow_violations": violations,
        "order_flow_counts": order_flow.violation_counts(violations, data["instruments"], day),
        "position_rebuild_check": check,
        "position_rebuild_excluded": excluded,
        "minute_features": features,
        "anomaly_incidents": incidents,
        "rules_vs_model": anomalies.rules_vs_model(features, incidents, zscores=z),
        "cross_margin_stress": stress,
        "cross_margin_summary": cross_margin.stress_summary(stress),
        "position_bands": bands,
        "time_in_band": bands_m.time_in_band(bands, data["mark_index"]),
        "liquidations_at_risk": bands_m.liquidations_at_risk(bands, marks),
        "cascade_table": cascade.cascade_table(graph, latency_s=engine_latency_s),
        "api_key_checklist": checklist,
        "api_checklist_totals": api_scoping.checklist_totals(checklist),
        "api_unattributed": api_scoping.unattributed_requests(data["api_requests"], data["api_keys"], day),
        "api_scope_usage": api_scoping.scope_usage(data["api_requests"], day),
    }


def day_tables(data: dict[str, pl.DataFrame], baselines: dict[str, pl.DataFrame],
               sym: dict[str, pl.DataFrame], day: dt.date, engine_latency_s: float = 1.0,
               coverage: dict[str, dict] | None = None) -> dict[str, pl.DataFrame]:
    """Every metric table of METRIC_TABLES for `day`, from the day's inputs (`data`, every
    symbol), its baselines and the SYMBOL_TABLES of all its symbols (`sym`, one call of
    `symbol_tables` or the groups' parts put together by `concat_symbol_tables`), including
    `venue_figures` (the day's headline figures in long form: figure, value), which later days
    read as their baseline."""
    from venue_risk.metrics import summary

    tables = liquidation_tables(data, sym, coverage)
    tables |= market_tables(data, baselines, sym, coverage)
    tables |= account_tables(data, baselines, sym, day, engine_latency_s, coverage)
    figures = summary.venue_day_figures(data["trades"], data["market_metrics"], data["liquidations"],
                                        data["insurance_fund"], tables["liquidation_executions"],
                                        tables["forced_costs"])
    figures |= summary.market_day_figures(tables)
    figures |= summary.account_day_figures(tables)
    # the position rebuild needs the previous day's positions: without them it did not run
    figures["position_rebuild_ran"] = 1.0 if data["positions_start"].height else 0.0
    tables["venue_figures"] = pl.DataFrame({"figure": list(figures),
                                            "value": [float(v) for v in figures.values()]})
    return {name: tables[name] for name in METRIC_TABLES}


@contextlib.contextmanager
def loading_kernels():
    """Load the compiled loops (venue_risk.preload.warm_compiled: numba's start, about 0.7 s in a
    fresh process, ~0 where they are loaded already) in another thread while the block runs, so
    reading the inputs and the families that need no compiled loop do not wait for it (a family
    calling one before it is loaded waits on numba's lock)."""
    from concurrent.futures import ThreadPoolExecutor

    from venue_risk.preload import warm_compiled

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-kernels") as pool:
        kernels = pool.submit(warm_compiled)
        yield
        kernels.result()


def compute_all(con: duckdb.DuckDBPyConnection, day: dt.date, baseline_days: int,
                engine_latency_s: float = 1.0, coverage: dict[str, dict] | None = None,
                partitions: dict[str, list[str]] | None = None) -> dict[str, pl.DataFrame]:
    """Every metric table for `day` in one process (the single-task path): `symbol_tables`
    over every symbol, then `day_tables`. `engine_latency_s`: the liquidation engine's round
    time in the cascade model (VENUE_RISK_ENGINE_LATENCY_S). `coverage`: the gate's coverage
    block (None: the source carries everything); a family whose datasets are not covered runs on
    empty inputs (`family_inputs`). `partitions`: the day's validated files (read_inputs)."""
    with loading_kernels():
        data = read_inputs(con, day, partitions=partitions)
        baselines = read_baselines(con, day, baseline_days)
        return day_tables(data, baselines, symbol_tables(data, day, coverage), day, engine_latency_s, coverage)


def compute_symbols(con: duckdb.DuckDBPyConnection, day: dt.date, symbols: list[str],
                    coverage: dict[str, dict] | None = None,
                    partitions: dict[str, list[str]] | None = None) -> dict[str, pl.DataFrame]:
    """The SYMBOL_TABLES of one symbol group (a mapped task of the split path): reads only the
    group's rows of SYMBOL_INPUTS (`partitions`: the day's validated files, read_inputs)."""
    with loading_kernels():
        return symbol_tables(read_inputs(con, day, symbols, SYMBOL_INPUTS, partitions), day, coverage)


def compute_combined(con: duckdb.DuckDBPyConnection, day: dt.date, parts: list[dict[str, pl.DataFrame]],
                     baseline_days: int, engine_latency_s: float = 1.0,
                     coverage: dict[str, dict] | None = None,
                     partitions: dict[str, list[str]] | None = None) -> dict[str, pl.DataFrame]:
    """Every metric table for `day` from the symbol groups' SYMBOL_TABLES (`parts`, in group
    order) and the day's other inputs (the split path's last step; `partitions`: the day's
    validated files, read_inputs)."""
    names = tuple(n for n in INPUTS if n not in SYMBOL_ONLY_INPUTS)
    data = read_inputs(con, day, names=names, partitions=partitions)
    baselines = read_baselines(con, day, baseline_days)
    return day_tables(data, baselines, concat_symbol_tables(parts), day, engine_latency_s, coverage)
