"""Venue summary: the headline figures of the day with a baseline and a RAG status
(DESIGN 4.11).

Each headline figure (volume, trades, open interest, liquidations in count and notional, in
total and per liquidation path, insurance fund, ADL events, liquidation slippage, maintenance
buffer consumed, data quality) is shown with today's value, its baseline and a status:
green, amber or red. The baseline is the median of the figure over up to the 30 most recent
earlier days that have a value (the median, so one extreme day does not move it; the number of
days used is shown). The status is set by written rules, shown next to the figure: ratios to the
baseline (e.g. red if liquidated notional is above 3x its baseline), absolute levels (e.g. red
if any liquidation consumed more than its whole maintenance buffer, i.e. ended beyond
bankruptcy) and shares of another figure (liquidated notional as a share of volume). Ratio rules
need a baseline: until there is one, only the absolute rules apply and the report says
"no baseline yet". The day's overall status is the worst status of its figures.

Known limits: A baseline is a median over up to 30 earlier days with a value: with fewer than 3
days a figure whose only rule is a ratio to its baseline is `insufficient_data`. The thresholds
(DEFAULT_THRESHOLDS) are defaults to tune per venue. The overall status is the worst rated
figure, so one red figure makes the day red whatever the others say.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from venue_risk.schema import LIQUIDATION_PATHS

METHOD = __doc__

STATUSES = ("green", "amber", "red")
BASELINE_DAYS = 30

#: Codes of the figure data_quality_status (the gate's status as a number, so it can be stored
#: beside the other figures).
DATA_QUALITY_CODES = {"passed": 0.0, "warnings": 1.0, "failed": 2.0}

FIGURE_LABELS: dict[str, str] = {
    "volume_notional": "Volume (USDT)",
    "trade_count": "Trades (count)",
    "open_interest_value_close": "Open interest at close (USDT)",
    "liquidation_count": "Liquidations (count)",
    "liquidation_notional": "Liquidated notional at mark (USDT)",
    **{f"liquidation_count_{p}": f"Liquidations, {p} path (count)" for p in LIQUIDATION_PATHS},
    **{f"liquidation_notional_{p}": f"Liquidated notional, {p} path (USDT)" for p in LIQUIDATION_PATHS},
    "insurance_fund_close": "Insurance fund at close (USDT)",
    "insurance_fund_net": "Insurance fund net change (USDT)",
    "insurance_fund_open": "Insurance fund at open (USDT)",
    "adl_events": "ADL events (count)",
    "slippage_p95_bps": "Liquidation slippage p95 (bps)",
    "max_buffer_share": "Max maint. buffer consumed (x)",
    "data_quality_status": "Data quality (0 ok, 1 warn, 2 failed)",
    "data_quality_failed_checks": "Data-quality checks failed (count)",
    "crowded_symbols": "Crowded symbols (count)",
    "crowded_vol_rising_symbols": "Crowded with volatility rising (count)",
    "index_max_gap_bps": "Index gap vs rule, max (bps)",
    "index_source_exclusions": "Index source exclusions (windows)",
    "broken_source_cf_move_bps": "Broken source, move avoided (bps)",
    "broken_source_published_move_bps": "Broken source, move caused (bps)",
    "single_source_worst_move_bps": "Worst single-source index move (bps)",
    "single_source_positions_crossed": "Positions one source could liquidate",
    "mark_basis_p99_bps": "Mark basis p99 (bps)",
    "drifted_features": "Drifted features (count)",
    "order_flow_violations": "Order-flow violations (count)",
    "position_rebuild_mismatches": "Positions off the rebuild (count)",
    "anomaly_incidents": "Early-warning incidents (count)",
    "anomaly_incidents_high": "High-severity incidents (count)",
    "rules_model_disagreements": "Rules vs model disagreements (count)",
    "cross_breach_empirical_3s": "Cross accts breaching 3σ, empirical",
    "cross_breach_corr_one_3s": "Cross accts breaching 3σ, corr = 1",
    "liquidation_notional_within_5pct": "Liq. notional within 5% of mark (USDT)",
    "cascade_amplification_10pct": "Cascade amplification, 10% shock (x)",
    "api_keys_failing": "API keys failing a check (count)",
    "api_automation_without_kill_switch": "Automation keys, no kill switch",
    "api_unattributed_requests": "Requests with no key (count)",
}

#: Figures shown on page one, in order (a figure absent from today's figures is skipped).
HEADLINE_FIGURES: tuple[str, ...] = (
    "volume_notional",
    "trade_count",
    "open_interest_value_close",
    "liquidation_count",
    "liquidation_notional",
    *[f for p in LIQUIDATION_PATHS for f in (f"liquidation_count_{p}", f"liquidation_notional_{p}")],
    "insurance_fund_close",
    "insurance_fund_net",
    "adl_events",
    "slippage_p95_bps",
    "max_buffer_share",
    "crowded_symbols",
    "crowded_vol_rising_symbols",
    "index_max_gap_bps",
    "index_source_exclusions",
    "broken_source_cf_move_bps",
    "broken_source_published_move_bps",
    "single_source_worst_move_bps",
    "single_source_positions_crossed",
    "mark_basis_p99_bps",
    "drifted_features",
    "order_flow_violations",
    "position_rebuild_mismatches",
    "anomaly_incidents",
    "anomaly_incidents_high",
    "rules_model_disagreements",
    "cross_breach_empirical_3s",
    "cross_breach_corr_one_3s",
    "liquidation_notional_within_5pct",
    "cascade_amplification_10pct",
    "api_keys_failing",
    "api_automation_without_kill_switch",
    "api_unattributed_requests",
    "data_quality_status",
    "data_quality_failed_checks",
)

_NO_LIQUIDATIONS = ("green", "no filled liquidations today")

#: Default RAG rules per figure. Keys of a rule (each optional; a pair is (amber, red), either
#: may be None):
#:   above: (a, r)        amber if value > a, red if value > r (absolute levels);
#:   below: (a, r)        amber if value < a, red if value < r;
#:   ratio_above: (a, r)  amber if value > a x baseline, red if > r x baseline;
#:   ratio_below: (a, r)  amber if value < a x baseline, red if < r x baseline;
#:   share_of: (figure, a, r)  amber if value > a x today's `figure`, red if > r x it;
#:   drawdown: r          red if value < -r x today's insurance_fund_open (insurance fund net);
#:   if_missing: (status, text)  status when the value is missing (NaN); default amber.
#: Ratio rules apply only with a baseline > 0; the others always.
DEFAULT_THRESHOLDS: dict[str, dict[str, Any]] = {
    # Activity: a collapse or a spike against the baseline is a market event or a data problem.
    "volume_notional": {"ratio_below": (0.5, 0.25), "ratio_above": (2.0, 4.0)},
    "trade_count": {"ratio_below": (0.5, 0.25), "ratio_above": (2.0, 4.0)},
    "open_interest_value_close": {"ratio_below": (0.67, 0.5), "ratio_above": (1.5, 2.0)},
    # Liquidations: against the baseline, and liquidated notional as a share of volume.
    "liquidation_count": {"ratio_above": (1.5, 3.0)},
    "liquidation_notional": {"ratio_above": (1.5, 3.0), "share_of": ("volume_notional", 0.02, 0.05)},
    **{f"liquidation_count_{p}": {"ratio_above": (1.5, 3.0)}
       for p in LIQUIDATION_PATHS if p != "adl"},
    **{f"liquidation_notional_{p}": {"ratio_above": (1.5, 3.0)}
       for p in LIQUIDATION_PATHS if p != "adl"},
    # ADL means the insurance fund could not absorb a bankrupt position: any is notable.
    "liquidation_count_adl": {"above": (0, 5)},
    "liquidation_notional_adl": {"above": (0, None)},
    "adl_events": {"above": (0, 5)},
    # Insurance fund: any net loss is amber, a loss above 5 % of the opening balance is red;
    # a closing balance well below its baseline is a slow drawdown.
    "insurance_fund_net": {"below": (0.0, None), "drawdown": 0.05},
    "insurance_fund_close": {"ratio_below": (0.9, 0.75), "below": (None, 0.0)},
    # Execution quality of liquidations.
    "slippage_p95_bps": {"above": (50.0, 150.0), "ratio_above": (2.0, 4.0),
                         "if_missing": _NO_LIQUIDATIONS},
    # Consuming the whole maintenance buffer (1.0) is the normal end of a liquidation whose fee
    # takes the equity left; above 1 the fills went beyond bankruptcy and the fund paid.
    "max_buffer_share": {"above": (1.0, 2.0), "if_missing": _NO_LIQUIDATIONS},
    # Market side (DESIGN 4.3-4.5).
    "crowded_symbols": {"above": (0, 2)},
    "crowded_vol_rising_symbols": {"above": (None, 0)},
    "index_max_gap_bps": {"above": (0.1, 1.0)},
    "index_source_exclusions": {"above": (0, None)},
    "broken_source_cf_move_bps": {"above": (0.0, None)},
    "broken_source_published_move_bps": {"above": (0.1, 1.0)},
    "single_source_worst_move_bps": {"above": (50.0, 200.0)},
    "single_source_positions_crossed": {"above": (0, 10)},
    "mark_basis_p99_bps": {"above": (25.0, 50.0)},
    "drifted_features": {"above": (0, 2)},
    # Account side (DESIGN 4.6-4.10).
    "order_flow_violations": {"above": (None, 0)},
    "position_rebuild_mismatches": {"above": (None, 0)},
    "anomaly_incidents": {"above": (0, 3)},
    "anomaly_incidents_high": {"above": (None, 0)},
    "rules_model_disagreements": {"above": (0, None)},
    "cross_breach_empirical_3s": {"above": (None, 0)},
    "cross_breach_corr_one_3s": {"above": (0, 5)},
    "liquidation_notional_within_5pct": {"ratio_above": (1.5, 3.0)},
    "cascade_amplification_10pct": {"above": (1.5, 2.0)},
    "api_keys_failing": {"above": (0, None)},
    "api_automation_without_kill_switch": {"above": (None, 0)},
    "api_unattributed_requests": {"above": (0, None)},
    # Data quality: warnings are amber, a failed gate is red.
    "data_quality_status": {"above": (0.0, 1.0)},
    "data_quality_failed_checks": {"above": (0, None)},
}

SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "figure": pl.String,
    "label": pl.String,
    "value": pl.Float64,
    "baseline": pl.Float64,
    "baseline_days": pl.Int64,
    "status": pl.String,
    "threshold": pl.String,
    "n": pl.Int64,  # samples behind a statistical figure (None for counts and sums)
}

#: Figures whose rule is only a comparison with the baseline: with fewer baseline days than
#: coverage.MIN_SAMPLES["baseline_days"], or on a partial day, nothing checks them.
def _ratio_only(rule: dict[str, Any]) -> bool:
    return bool(rule) and set(rule) <= {"ratio_above", "ratio_below", "if_missing"}


#: Figures measured against a baseline of earlier days by their family (drift compares today's
#: feature distributions with earlier days'): too few days and the figure says so.
BASELINE_FAMILY_FIGURES = ("drifted_features",)


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def venue_day_figures(trades: pl.DataFrame, market_metrics: pl.DataFrame,
                      liquidations: pl.DataFrame, insurance_fund: pl.DataFrame,
                      executions: pl.DataFrame, costs: pl.DataFrame) -> dict[str, float]:
    """The day's headline figures (floats; NaN where undefined).

    volume_notional = sum(price x qty) over all trades; trade_count = number of trades;
    open_interest_value_close = sum over symbols of open_interest_value in each symbol's last
    5-minute snapshot of the day; liquidation_count = liquidations triggered;
    liquidation_notional = sum(qty x mark price at trigger) (the notional put into liquidation,
    filled or not), and liquidation_count_<path> / liquidation_notional_<path> the same per path;
    insurance_fund_open / insurance_fund_close = sum over pools of the first / last balance
    snapshot of the day; insurance_fund_net = close - open; adl_events = liquidations on the adl
    path; slippage_p95_bps = 95th percentile (linear interpolation) of slippage over all
    liquidations with fills (NaN if none); max_buffer_share = largest cost_rate /
    maintenance_margin_rate over liquidations, from `costs` (forced_cost.forced_costs, with the
    fee rate actually charged).
    """
    figures: dict[str, float] = {}
    figures["volume_notional"] = float(trades.select((pl.col("price") * pl.col("qty")).sum()).item() or 0.0)
    figures["trade_count"] = float(trades.height)
    oi = (market_metrics.group_by("symbol")
          .agg(pl.col("open_interest_value").sort_by("ts").last()).sort("symbol"))
    # (summed in symbol order: a group-by's row order varies from run to run, and so would the
    # last bits of the sum)
    figures["open_interest_value_close"] = (float(oi["open_interest_value"].sum())
                                            if oi.height else math.nan)
    notional = pl.col("qty") * pl.col("mark_price")
    figures["liquidation_count"] = float(liquidations.height)
    figures["liquidation_notional"] = float(liquidations.select(notional.sum()).item() or 0.0)
    for p in LIQUIDATION_PATHS:
        sub = liquidations.filter(pl.col("path") == p)
        figures[f"liquidation_count_{p}"] = float(sub.height)
        figures[f"liquidation_notional_{p}"] = float(sub.select(notional.sum()).item() or 0.0)
    if insurance_fund.height:
        pools = insurance_fund.group_by("pool").agg(
            pl.col("balance").sort_by("ts").first().alias("open"),
            pl.col("balance").sort_by("ts").last().alias("close")).sort("pool")
        figures["insurance_fund_open"] = float(pools["open"].sum())
        figures["insurance_fund_close"] = float(pools["close"].sum())
        figures["insurance_fund_net"] = figures["insurance_fund_close"] - figures["insurance_fund_open"]
    else:
        figures["insurance_fund_open"] = figures["insurance_fund_close"] = math.nan
        figures["insurance_fund_net"] = math.nan
    figures["adl_events"] = float(liquidations.filter(pl.col("path") == "adl").height)
    slip = executions["slippage_bps"].drop_nulls().drop_nans()
    figures["slippage_p95_bps"] = _num(slip.quantile(0.95, "linear")) if slip.len() else math.nan
    share = costs["buffer_share"].drop_nulls().drop_nans()
    figures["max_buffer_share"] = _num(share.max()) if share.len() else math.nan
    return figures


def market_day_figures(tables: dict[str, pl.DataFrame]) -> dict[str, float]:
    """Headline figures of the market-side families, from their metric tables.

    crowded_symbols / crowded_vol_rising_symbols = symbols flagged crowded /
    crowded_and_vol_rising; index_max_gap_bps = largest |published - recomputed| index gap;
    index_source_exclusions = excluded windows (stale or outlier) over all sources;
    broken_source_cf_move_bps = the largest index move an excluded outlier source would have
    caused had the rule kept it (0 if none); broken_source_published_move_bps = the move it
    actually caused; single_source_worst_move_bps / single_source_positions_crossed = the
    largest move dropping or corrupting one source could cause and the isolated positions it
    would push across their liquidation price; mark_basis_p99_bps = largest per-symbol p99 of
    |mark - index| / index; drifted_features = features whose distribution drifted.
    """
    def col_max(name: str, col: str, absolute: bool = True) -> float:
        frame = tables.get(name)
        if frame is None or frame.height == 0 or col not in frame.columns:
            return 0.0
        series = frame[col].cast(pl.Float64).drop_nulls().drop_nans()
        if absolute:
            series = series.abs()
        return float(series.max()) if series.len() else 0.0

    def count_true(name: str, col: str) -> float:
        frame = tables.get(name)
        if frame is None or frame.height == 0 or col not in frame.columns:
            return 0.0
        return float(frame[col].fill_null(False).sum())

    windows = tables.get("exclusion_windows")
    return {
        "crowded_symbols": count_true("crowding", "crowded"),
        "crowded_vol_rising_symbols": count_true("crowding", "crowded_and_vol_rising"),
        "index_max_gap_bps": col_max("index_gap_summary", "max_abs_gap_bps"),
        "index_source_exclusions": float(windows.height if windows is not None else 0),
        "broken_source_cf_move_bps": col_max("broken_source_counterfactual", "cf_move_bps"),
        "broken_source_published_move_bps": col_max("broken_source_counterfactual", "published_move_bps"),
        "single_source_worst_move_bps": col_max("single_source_sensitivity", "worst_move_bps"),
        "single_source_positions_crossed": col_max("single_source_sensitivity", "positions_crossed"),
        "mark_basis_p99_bps": col_max("mark_basis", "basis_abs_p99_bps"),
        "drifted_features": count_true("feature_drift", "drifted"),
    }


def account_day_figures(tables: dict[str, pl.DataFrame]) -> dict[str, float]:
    """Headline figures of the account-side families, from their metric tables.

    order_flow_violations = violation rows (reduce-only grew or flipped, post-only took
    liquidity, fill after cancel, self-trade); position_rebuild_mismatches = account x symbol
    pairs whose rebuilt end-of-day size differs from positions_eod; anomaly_incidents /
    anomaly_incidents_high = correlated-anomaly incidents (all / high severity);
    rules_model_disagreements = rows of rules_vs_model; cross_breach_empirical_3s /
    cross_breach_corr_one_3s = cross accounts breaching maintenance after a 3-sigma day under the
    empirical correlation / with correlations at one (worse direction); liquidation_notional_within_5pct =
    liquidation notional whose liquidation price lies within 5 % of mark (both sides);
    cascade_amplification_10pct = the largest amplification of a 10 % shock over symbols and
    directions; api_keys_failing / api_automation_without_kill_switch = keys failing any check /
    that check; api_unattributed_requests = requests with no known key.
    """
    def frame(name: str) -> pl.DataFrame:
        f = tables.get(name)
        return f if f is not None else pl.DataFrame()

    def breaching(scenarios: tuple[str, ...]) -> float:
        f = frame("cross_margin_summary")
        if f.height == 0:
            return 0.0
        f = f.filter(pl.col("scenario").is_in(list(scenarios)) & (pl.col("k_sigma") == 3.0))
        return float(f["accounts_breaching"].max() or 0) if f.height else 0.0

    incidents = frame("anomaly_incidents")
    lar = frame("liquidations_at_risk")
    cas = frame("cascade_table")
    keys = frame("api_key_checklist")
    unattributed = frame("api_unattributed")
    return {
        "order_flow_violations": float(frame("order_flow_violations").height),
        "position_rebuild_mismatches": float(frame("position_rebuild_check").height),
        "anomaly_incidents": float(incidents.height),
        "anomaly_incidents_high": float(incidents.filter(pl.col("severity") == "high").height)
        if incidents.height else 0.0,
        "rules_model_disagreements": float(frame("rules_vs_model").height),
        "cross_breach_empirical_3s": breaching(("empirical",)),
        "cross_breach_corr_one_3s": breaching(("corr_one_up", "corr_one_down")),
        "liquidation_notional_within_5pct": float(
            lar.filter(pl.col("distance_pct").abs() <= 5.0)["liquidation_notional"].sum()) if lar.height else 0.0,
        "cascade_amplification_10pct": float(
            cas.filter((pl.col("shock") - 0.10).abs() < 1e-9)["amplification"].max() or 0.0) if cas.height else 0.0,
        "api_keys_failing": float((~keys["ok"]).sum()) if keys.height else 0.0,
        "api_automation_without_kill_switch": float(keys["automation_without_kill_switch"].sum())
        if keys.height else 0.0,
        "api_unattributed_requests": float(unattributed["unattributed"].sum()) if unattributed.height else 0.0,
    }


def _baseline(history: pl.DataFrame, figure: str, days: int) -> tuple[float | None, int]:
    if history.height == 0 or not {"date", "figure", "value"} <= set(history.columns):
        return None, 0
    vals = (history.filter((pl.col("figure") == figure) & pl.col("value").is_not_null()
                           & pl.col("value").is_not_nan())
            .sort("date").unique(subset="date", keep="last").sort("date").tail(days))
    if vals.height == 0:
        return None, 0
    return float(vals["value"].median()), vals.height


def _fmt(x: float) -> str:
    x = round(float(x), 10)
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:g}"


def _evaluate(figure: str, value: float, baseline: float | None, rule: dict[str, Any],
              today: dict[str, float]) -> tuple[str, str]:
    """(status, threshold text) of one figure under its rule."""
    clauses: dict[str, list[str]] = {"red": [], "amber": []}
    hit: set[str] = set()

    def check(level: float | None, status: str, text: str, breached: bool) -> None:
        if level is None:
            return
        clauses[status].append(text)
        if breached:
            hit.add(status)

    missing = _missing(value)
    for key, op in (("above", ">"), ("below", "<")):
        if key in rule:
            for status, level in zip(("amber", "red"), rule[key]):
                if level is not None:
                    breached = (not missing) and (value > level if op == ">" else value < level)
                    check(level, status, f"{op} {_fmt(float(level))}", breached)
    has_ratio = "ratio_above" in rule or "ratio_below" in rule
    usable_baseline = baseline is not None and baseline > 0
    if has_ratio and usable_baseline:
        for key, op in (("ratio_above", ">"), ("ratio_below", "<")):
            if key in rule:
                for status, mult in zip(("amber", "red"), rule[key]):
                    if mult is not None:
                        level = mult * baseline
                        breached = (not missing) and (value > level if op == ">" else value < level)
                        check(mult, status, f"{op} {_fmt(float(mult))}x baseline", breached)
    if "share_of" in rule:
        other, a, r = rule["share_of"]
        base = today.get(other)
        if not _missing(base) and base > 0:
            label = FIGURE_LABELS.get(other, other).split(" (")[0].lower()
            for status, share in (("amber", a), ("red", r)):
                if share is not None:
                    breached = (not missing) and value > share * base
                    check(share, status, f"> {_fmt(share * 100)}% of {label}", breached)
    if "drawdown" in rule:
        opening = today.get("insurance_fund_open")
        if not _missing(opening) and opening > 0:
            r = rule["drawdown"]
            breached = (not missing) and value < -r * opening
            check(r, "red", f"< -{_fmt(r * 100)}% of the opening balance", breached)

    parts = [f"{s} if " + " or ".join(clauses[s]) for s in ("red", "amber") if clauses[s]]
    if has_ratio and baseline is None:
        parts.append("no baseline yet")
    elif has_ratio and not usable_baseline:
        parts.append("baseline is 0: ratio rules off")
    text = "; ".join(parts) if parts else "informational (no rule)"
    if missing:
        status, why = rule.get("if_missing", ("amber", "no data today"))
        return status, f"{why}; {text}"
    status = "red" if "red" in hit else ("amber" if "amber" in hit else "green")
    return status, text


def summary_rows(today: dict[str, float], history: pl.DataFrame,
                 thresholds: dict[str, dict[str, Any]] | None = None,
                 baseline_days: int = BASELINE_DAYS, coverage: dict[str, dict] | None = None,
                 samples: dict[str, tuple[int, int, str]] | None = None,
                 skipped: dict[str, str] | None = None) -> pl.DataFrame:
    """One row per headline figure: figure, label (with unit), value, baseline, baseline_days,
    status (green / amber / red) and threshold (the text of the rule that sets the status).

    history holds earlier days' figures in long form (date, figure, value). baseline = median of
    the figure over up to the `baseline_days` (30) most recent earlier dates with a value
    (NaN days are skipped); baseline_days = how many dates that was (0: no baseline yet).
    Rules are DEFAULT_THRESHOLDS, each figure's rule replaced by `thresholds[figure]` when given.
    status = red if any red clause of the rule holds, else amber if any amber clause holds,
    else green; without a baseline only the absolute clauses apply and the threshold text says
    "no baseline yet". Figures in HEADLINE_FIGURES that are absent from `today` are skipped;
    other figures get a row when `thresholds` names them.

    Coverage (venue_risk.coverage, DESIGN 2), before any rule: a figure needing a dataset (or a
    column) the source does not carry is `not_covered` with no value; a figure in `skipped`
    ({figure: reason}: its check could not run) is `skipped` with no value; a figure in
    `samples` ({figure: (n, minimum, what)}) with n < minimum is `insufficient_data` (value and
    n shown). On a partial day (coverage window) ratio rules are off; a figure whose rule is
    only a ratio to the baseline is `insufficient_data` on a partial day or with fewer than
    MIN_SAMPLES["baseline_days"] baseline days, as is drifted_features.
    """
    from venue_risk.coverage import MIN_SAMPLES, figure_needs, needs_state, not_covered_text

    rules = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    names = [f for f in HEADLINE_FIGURES if f in today]
    names += [f for f in (thresholds or {}) if f in today and f not in names]
    min_days = MIN_SAMPLES["baseline_days"]
    records = []
    for figure in names:
        value = _num(today[figure])
        baseline, n = _baseline(history, figure, baseline_days)
        rule = rules.get(figure, {})
        state, missing, window = (needs_state(figure_needs(figure), coverage) if coverage
                                  else ("complete", [], None))
        count, minimum, what = (samples or {}).get(figure, (None, 0, ""))
        if state == "absent":
            status, text, value = "not_covered", not_covered_text(missing), math.nan
        elif figure in (skipped or {}):
            status, text, value = "skipped", f"skipped: {skipped[figure]}", math.nan
        elif count is not None and count < minimum:
            status, text = "insufficient_data", f"insufficient data: n = {count} {what} (minimum {minimum})"
        elif state == "partial" and (_ratio_only(rule) or figure in BASELINE_FAMILY_FIGURES):
            status, text = "insufficient_data", ("data window only: no full-day baseline to "
                                                 "compare with")
        elif (_ratio_only(rule) or figure in BASELINE_FAMILY_FIGURES) and n < min_days:
            status, text = "insufficient_data", (f"insufficient data: baseline of {n} day(s) "
                                                 f"(minimum {min_days})")
        else:
            base = None if state == "partial" else baseline
            status, text = _evaluate(figure, value, base, rule, today)
            if state == "partial" and ("ratio_above" in rule or "ratio_below" in rule):
                text = f"{text} (window only: baseline comparison off)"
        records.append({
            "figure": figure,
            "label": FIGURE_LABELS.get(figure, figure),
            "value": None if math.isnan(value) else value,
            "baseline": baseline,
            "baseline_days": n,
            "status": status,
            "threshold": text,
            "n": count,
        })
    return pl.DataFrame(records, schema=SUMMARY_SCHEMA) if records else pl.DataFrame(schema=SUMMARY_SCHEMA)


#: Figures about the data rather than the venue.
DATA_QUALITY_FIGURES = ("data_quality_status", "data_quality_failed_checks")


def overall_status(rows: pl.DataFrame) -> str:
    """The worst status among the covered figures (red > amber > green; not_covered,
    insufficient_data and skipped figures do not count); `insufficient_data` when no figure
    about the venue (other than DATA_QUALITY_FIGURES) could be rated: never green on data
    nobody checked."""
    pairs = list(zip(rows["figure"].to_list(), rows["status"].to_list())) if "figure" in rows.columns \
        else [("", s) for s in rows["status"].to_list()]
    rated = [(f, s) for f, s in pairs if s in STATUSES]
    if not any(f not in DATA_QUALITY_FIGURES for f, _ in rated):
        return "insufficient_data"  # a clean gate says nothing about the venue
    return STATUSES[max(STATUSES.index(s) for _, s in rated)]
