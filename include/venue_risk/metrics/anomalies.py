"""Early-warning anomalies: correlated per-minute anomalies and the venue's fixed limits
(DESIGN 4.7).

Minute features, per date x symbol x minute (every minute of the day, so a quiet minute counts as
zero): cancels and news (order_events with event cancel / new), cancel_new_ratio =
cancels / max(news, 1), leverage_changes (count) and leverage_change_abs = sum |new - old|
leverage, max_new_leverage, depth_1pct = book notional within 1 % of the mid on both sides
(the -1 % plus the +1 % cumulative band of the minute's last book_depth snapshot), spread_bps =
mean over the minute's mark_index seconds of (best_ask - best_bid) / mid x 10,000, liquidations
(by ts_trigger) and trades.

Robust z against the symbol's own baseline (the trailing days' minute features; the same day's
when there is no history, which the report states): per symbol and feature,
z = (x - median) / scale with scale = max(1.4826 x MAD, 1.2533 x mean absolute deviation,
floor), the floor keeping zero-inflated counts (most minutes have no liquidation or leverage
change) from scoring a single event as extreme: sqrt(max(median, 1)) for counts,
MIN_SCALE for the others. Depth and spread are scored on their logarithm (x = ln value: a book
at a quarter of its usual depth is a ratio, whatever the symbol), the others on the value.
Only the adverse direction is anomalous: high counts, ratio, leverage and spread, and thin books,
so depth is scored inverted: z = (median - ln depth) / scale (low depth = high score).

Incidents are correlated anomalies: a feature is anomalous in a minute when z >= z_threshold.
Anomalies chain into a cluster while consecutive ones are at most window_min minutes apart.
An incident is a cluster of one symbol holding two or more distinct features, or a cluster of
one feature holding three or more symbols; candidates that overlap in time and share a symbol are
merged. Each incident has its start (first anomalous minute), end (last anomalous minute + 1
minute), symbols, features, max_z and severity by max_z: high >= 20, medium >= 10, else low.
The minute profile of a day is taken as flat (no time-of-day baseline).

Model versus rules: the venue's fixed limits (cancels per symbol-minute above
max_cancels_per_min, a new leverage above max_leverage, depth within 1 % below min_depth_1pct)
are compared with the incidents; an incident with no limit breached on its symbols within its
window (+- window_min) and a breach (a span of breached minutes per symbol and rule) with no
incident on that symbol within the span (+- window_min) are listed with the features, z scores
and thresholds on the model side and the observed values and limits on the rules side.

Known limits: The minute profile is flat: no time-of-day baseline, so a regular daily peak
(funding settlement, a market open) can score as an anomaly. With no earlier days the baseline
is the day itself, which dilutes a day-long regime. An incident is co-occurrence inside a
window, not a cause. The fixed limits (DEFAULT_LIMITS) are the project's defaults: a venue sets
its own.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Mapping

import polars as pl

from venue_risk.errors import InputError
from venue_risk.schema import TS
from venue_risk.metrics.frames import conform as _conform, require_columns as _need

METHOD = __doc__

F64, I64, STR = pl.Float64, pl.Int64, pl.String

#: Default anomaly threshold on the robust z (tuned on clean simulated weeks: at most one false
#: incident per symbol-week) and default chaining window in minutes.
Z_THRESHOLD = 6.0
WINDOW_MIN = 5
#: Severity bands on an incident's max_z: (lower bound inclusive, label), highest first.
SEVERITY_BANDS: tuple[tuple[float, str], ...] = ((20.0, "high"), (10.0, "medium"), (0.0, "low"))
MAD_K = 1.4826  # MAD -> sigma under normality
MEAN_AD_K = 1.2533  # mean absolute deviation -> sigma under normality (sqrt(pi / 2))

#: Features scored by robust_z, in report order.
SCORED_FEATURES: tuple[str, ...] = ("cancels", "cancel_new_ratio", "leverage_changes",
                                    "leverage_change_abs", "depth_1pct", "spread_bps",
                                    "liquidations", "trades")
COUNT_FEATURES = frozenset({"cancels", "leverage_changes", "liquidations", "trades"})
#: Features whose low values are adverse (scored as median - x).
INVERTED_FEATURES = frozenset({"depth_1pct"})
#: Absolute scale floors of the non-count features (their units) and the relative floor.
#: Depth and spread are scored on ln(value) (a thin book is a ratio to the usual book), so their
#: floor is in log units (0.05 = 5 %).
LOG_FEATURES = frozenset({"depth_1pct", "spread_bps"})
MIN_SCALE: dict[str, float] = {"cancel_new_ratio": 0.25, "leverage_change_abs": 10.0,
                               "depth_1pct": 0.05, "spread_bps": 0.05}

#: The venue's fixed limits (overridable): cancels per symbol-minute, the highest leverage a
#: change may set, the least book notional within 1 % (both sides, USDT; a float or
#: {symbol: float}).
DEFAULT_LIMITS: dict[str, object] = {"max_cancels_per_min": 500.0, "max_leverage": 125.0,
                                     "min_depth_1pct": 250_000.0}

FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "minute": TS, "cancels": I64, "news": I64,
    "cancel_new_ratio": F64, "leverage_changes": I64, "leverage_change_abs": F64,
    "max_new_leverage": F64, "depth_1pct": F64, "spread_bps": F64, "liquidations": I64,
    "trades": I64,
}
ZSCORES_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "minute": TS, "feature": STR, "value": F64,
    "baseline_median": F64, "baseline_scale": F64, "z": F64,
}
INCIDENTS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "start": TS, "end": TS, "symbols": pl.List(STR), "features": pl.List(STR),
    "max_z": F64, "severity": STR, "kinds": pl.List(STR), "n_anomalies": I64,
}
RULES_VS_MODEL_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "case": STR, "start": TS, "end": TS, "symbols": pl.List(STR),
    "model_features": pl.List(STR), "max_z": F64, "z_threshold": F64,
    "model_detail": pl.List(STR), "rules_breached": pl.List(STR), "rules_detail": pl.List(STR),
}
CASE_INCIDENT_NO_BREACH = "incident_no_breach"
CASE_BREACH_NO_INCIDENT = "breach_no_incident"




def _minute(col: str) -> pl.Expr:
    return pl.col(col).dt.truncate("1m").alias("minute")


def minute_features(order_events: pl.DataFrame, leverage_changes: pl.DataFrame,
                    book_depth: pl.DataFrame, mark_index: pl.DataFrame,
                    liquidations: pl.DataFrame, trades: pl.DataFrame) -> pl.DataFrame:
    """Per date x symbol x minute features (every minute of every date present, every symbol
    present in any input; a minute without events counts 0, without a book snapshot or quote has
    null depth_1pct / spread_bps).

    cancels, news = order_events rows with event 'cancel' / 'new' in the minute;
    cancel_new_ratio = cancels / max(news, 1); leverage_changes = count of leverage_changes;
    leverage_change_abs = sum |new_leverage - old_leverage|; max_new_leverage = max new_leverage
    (null without a change); depth_1pct = notional at the -1 % band + notional at the +1 % band
    (cumulative from the mid) of the minute's last book_depth snapshot; spread_bps = mean over the
    minute of (best_ask - best_bid) / ((best_ask + best_bid) / 2) x 10,000 from mark_index;
    liquidations = liquidations with ts_trigger in the minute; trades = trades in the minute.
    """
    _need(order_events, "order_events", ("ts", "symbol", "event"))
    _need(leverage_changes, "leverage_changes", ("ts", "symbol", "old_leverage", "new_leverage"))
    _need(book_depth, "book_depth", ("ts", "symbol", "percentage", "notional"))
    _need(mark_index, "mark_index", ("ts", "symbol", "best_bid", "best_ask"))
    _need(liquidations, "liquidations", ("ts_trigger", "symbol"))
    _need(trades, "trades", ("ts", "symbol"))
    keys = ["symbol", "minute"]
    orders = (order_events.lazy().filter(pl.col("event").is_in(["cancel", "new"]))
              .group_by("symbol", _minute("ts"))
              .agg((pl.col("event") == "cancel").sum().cast(I64).alias("cancels"),
                   (pl.col("event") == "new").sum().cast(I64).alias("news")))
    lev = (leverage_changes.lazy().group_by("symbol", _minute("ts"))
           .agg(pl.len().cast(I64).alias("leverage_changes"),
                (pl.col("new_leverage") - pl.col("old_leverage")).abs().sum()
                .alias("leverage_change_abs"),
                pl.col("new_leverage").max().alias("max_new_leverage")))
    depth = (book_depth.lazy().filter((pl.col("percentage").abs() - 1.0).abs() < 1e-9)
             .group_by("symbol", "ts").agg(pl.col("notional").sum().alias("depth_1pct"),
                                           pl.len().alias("_bands"))
             .sort("ts")
             .group_by("symbol", _minute("ts"))
             .agg(pl.col("depth_1pct").last(), pl.col("_bands").last()))
    spread = (mark_index.lazy()
              .with_columns(((pl.col("best_ask") - pl.col("best_bid"))
                             / ((pl.col("best_ask") + pl.col("best_bid")) / 2) * 1e4)
                            .alias("_spread"))
              .group_by("symbol", _minute("ts")).agg(pl.col("_spread").mean().round(9).alias("spread_bps")))
    # (rounded: a parallel group mean can differ in the last bits from run to run, and a rerun of
    # a day must store identical rows)
    liq = (liquidations.lazy().group_by("symbol", _minute("ts_trigger"))
           .agg(pl.len().cast(I64).alias("liquidations")))
    trd = trades.lazy().group_by("symbol", _minute("ts")).agg(pl.len().cast(I64).alias("trades"))
    parts = [orders, lev, depth, spread, liq, trd]

    seen = pl.concat([p.select(keys) for p in parts], how="vertical").unique().collect()
    if seen.height == 0:
        return pl.DataFrame(schema=FEATURES_SCHEMA)
    days = seen["minute"].dt.date().unique().sort().to_list()
    symbols = seen["symbol"].unique().sort().to_list()
    grid = pl.concat([
        pl.DataFrame({"minute": pl.datetime_range(
            dt.datetime.combine(d, dt.time(), dt.timezone.utc),
            dt.datetime.combine(d, dt.time(23, 59), dt.timezone.utc),
            "1m", time_unit="us", time_zone="UTC", eager=True)}) for d in days
    ]).join(pl.DataFrame({"symbol": symbols}), how="cross").lazy()
    out = grid
    for p in parts:
        out = out.join(p, on=keys, how="left")
    counts = ["cancels", "news", "leverage_changes", "liquidations", "trades"]
    out = (out.with_columns([pl.col(c).fill_null(0) for c in counts]
                            + [pl.col("leverage_change_abs").fill_null(0.0),
                               # a snapshot missing one side of the 1 % band has no depth figure
                               pl.when(pl.col("_bands") == 2).then(pl.col("depth_1pct"))
                               .alias("depth_1pct")])
           .with_columns((pl.col("cancels") / pl.max_horizontal(pl.col("news"), pl.lit(1)))
                         .alias("cancel_new_ratio"),
                         pl.col("minute").dt.date().alias("date"))
           .collect())
    return _conform(out, FEATURES_SCHEMA).sort(["date", "symbol", "minute"])


def _long(features: pl.DataFrame) -> pl.DataFrame:
    _need(features, "minute_features", ("date", "symbol", "minute") + SCORED_FEATURES)
    return (features.select(["date", "symbol", "minute",
                             *[pl.col(f).cast(F64) for f in SCORED_FEATURES]])
            .unpivot(index=["date", "symbol", "minute"], on=list(SCORED_FEATURES),
                     variable_name="feature", value_name="value")
            .with_columns(pl.when(pl.col("feature").is_in(list(LOG_FEATURES)))
                          .then(pl.when(pl.col("value") > 0).then(pl.col("value").log()))
                          .otherwise(pl.col("value")).alias("x")))


def _scale_floor() -> pl.Expr:
    f, med = pl.col("feature"), pl.col("baseline_median")
    expr = pl.when(f.is_in(list(COUNT_FEATURES))).then(pl.max_horizontal(med, pl.lit(1.0)).sqrt())
    for name, lo in MIN_SCALE.items():
        expr = expr.when(f == name).then(pl.lit(lo))
    return expr.otherwise(pl.lit(0.0))


def baseline_stats(baseline: pl.DataFrame) -> pl.DataFrame:
    """Per symbol x feature: baseline_median, MAD, mean absolute deviation and baseline_scale =
    max(1.4826 MAD, 1.2533 mean absolute deviation, floor) with the floor of the module text
    (sqrt(max(median, 1)) for counts; MIN_SCALE for the others), taken over x = the value, or
    ln(value) for depth_1pct and spread_bps (the median is then the median log);
    n = baseline minutes with a value."""
    lg = _long(baseline).filter(pl.col("x").is_not_null() & pl.col("x").is_not_nan())
    med = pl.col("x").median()
    st = (lg.group_by("symbol", "feature")
          .agg(med.alias("baseline_median"),
               (pl.col("x") - med).abs().median().alias("mad"),
               (pl.col("x") - med).abs().mean().alias("mean_ad"),
               pl.len().cast(I64).alias("n"))
          .with_columns(pl.max_horizontal(MAD_K * pl.col("mad"), MEAN_AD_K * pl.col("mean_ad"),
                                          _scale_floor()).alias("baseline_scale")))
    return st.sort("symbol", "feature")


def robust_z(features: pl.DataFrame, baseline: pl.DataFrame | None = None) -> pl.DataFrame:
    """Long frame date, symbol, minute, feature, value, baseline_median, baseline_scale, z.

    z = (x - median) / scale, or (median - x) / scale for depth_1pct (thinness), where x = value,
    or ln(value) for depth_1pct and spread_bps (a book at half its usual depth scores as far as
    one at twice it), with median and scale = max(1.4826 MAD, 1.2533 mean absolute deviation, floor) per symbol and
    feature over `baseline` (the trailing days' minute features). Without a baseline (None or
    empty), and for a symbol absent from it, the same day's features are the baseline. A null
    value (no book snapshot, no quote) has a null z; a zero scale (a constant feature with a
    zero floor) gives a null z unless the value differs from the median.
    """
    lg = _long(features)
    own = baseline_stats(features)
    if baseline is None or baseline.height == 0:
        stats = own
    else:
        hist = baseline_stats(baseline)
        stats = pl.concat([hist, own.join(hist.select("symbol").unique(), on="symbol", how="anti")])
    sign = pl.when(pl.col("feature").is_in(list(INVERTED_FEATURES))).then(-1.0).otherwise(1.0)
    diff = sign * (pl.col("x") - pl.col("baseline_median"))
    out = (lg.join(stats.select("symbol", "feature", "baseline_median", "baseline_scale"),
                   on=["symbol", "feature"], how="left")
           .with_columns(pl.when(pl.col("baseline_scale") > 0).then(diff / pl.col("baseline_scale"))
                         .when(diff > 0).then(float("inf"))
                         .when(diff < 0).then(float("-inf")).alias("z")))
    order = {f: i for i, f in enumerate(SCORED_FEATURES)}
    return (_conform(out, ZSCORES_SCHEMA)
            .with_columns(pl.col("feature").replace_strict(order, return_dtype=I64).alias("_o"))
            .sort(["date", "symbol", "minute", "_o"]).drop("_o"))


def severity(max_z: float) -> str:
    """The SEVERITY_BANDS label of max_z: high >= 20, medium >= 10, else low."""
    for lo, label in SEVERITY_BANDS:
        if max_z >= lo:
            return label
    return SEVERITY_BANDS[-1][1]


def _clusters(anom: pl.DataFrame, by: str, window_min: int) -> pl.DataFrame:
    """Chain anomalies per date x `by` while consecutive minutes are <= window_min apart."""
    gap = pl.duration(minutes=window_min)
    return (anom.sort(["date", by, "minute"])
            .with_columns(((pl.col("minute").diff().over(["date", by]) > gap)
                           .fill_null(True)).cum_sum().over(["date", by]).alias("_c"))
            .group_by("date", by, "_c")
            .agg(pl.col("minute").min().alias("start"),
                 (pl.col("minute").max() + pl.duration(minutes=1)).alias("end"),
                 pl.col("symbol").unique().sort().alias("symbols"),
                 pl.col("feature").unique().alias("features"),
                 pl.col("z").max().alias("max_z"), pl.len().cast(I64).alias("n_anomalies")))


def incidents(zscores: pl.DataFrame, z_threshold: float = Z_THRESHOLD,
              window_min: int = WINDOW_MIN) -> pl.DataFrame:
    """Incidents from robust z scores: date, start, end, symbols, features, max_z, severity,
    kinds, n_anomalies.

    An anomaly is a (symbol, minute, feature) with z >= z_threshold. Per date, anomalies of one
    symbol chain while consecutive minutes are <= window_min apart; a chain with >= 2 distinct
    features is a 'multi_feature' candidate. Anomalies of one feature chain the same way across
    symbols; a chain with >= 3 distinct symbols is a 'multi_symbol' candidate. Candidates of a date
    that overlap in time (within window_min) and share a symbol are merged, transitively (union of
    symbols, features and kinds; n_anomalies = distinct anomalies). start = first anomalous minute, end =
    last anomalous minute + 1 minute; severity from max_z: high >= 20, medium >= 10, else low.
    """
    _need(zscores, "robust_z", ("date", "symbol", "minute", "feature", "z"))
    anom = zscores.filter(pl.col("z").is_not_null() & (pl.col("z") >= z_threshold))
    if anom.height == 0:
        return pl.DataFrame(schema=INCIDENTS_SCHEMA)
    anom = anom.select("date", "symbol", "minute", "feature", "z")
    feat_order = {f: i for i, f in enumerate(SCORED_FEATURES)}
    multi_f = (_clusters(anom, "symbol", window_min)
               .filter(pl.col("features").list.len() >= 2).with_columns(pl.lit("multi_feature").alias("kind")))
    multi_s = (_clusters(anom, "feature", window_min)
               .filter(pl.col("symbols").list.len() >= 3).with_columns(pl.lit("multi_symbol").alias("kind")))
    cands = pl.concat([multi_f.drop("symbol", strict=False).drop("feature", strict=False).drop("_c"),
                       multi_s.drop("symbol", strict=False).drop("feature", strict=False).drop("_c")],
                      how="diagonal").sort("date", "start").to_dicts()
    gap = dt.timedelta(minutes=window_min)

    def overlaps(m: dict, c: dict) -> bool:
        return (m["date"] == c["date"] and bool(m["symbols"] & c["symbols"])
                and c["start"] <= m["end"] + gap and m["start"] <= c["end"] + gap)

    merged: list[dict] = []  # pairwise non-overlapping
    for c in cands:
        c = dict(c, symbols=set(c["symbols"]), features=set(c["features"]), kinds={c["kind"]})
        # absorb every group c overlaps, again after each growth (merging is transitive)
        while hit := [m for m in merged if overlaps(m, c)]:
            for m in hit:
                merged.remove(m)
                c["start"], c["end"] = min(m["start"], c["start"]), max(m["end"], c["end"])
                c["symbols"] |= m["symbols"]
                c["features"] |= m["features"]
                c["kinds"] |= m["kinds"]
                c["max_z"] = max(m["max_z"], c["max_z"])
        merged.append(c)
    rows = []
    for m in merged:
        n = anom.filter((pl.col("date") == m["date"]) & pl.col("symbol").is_in(sorted(m["symbols"]))
                        & pl.col("feature").is_in(sorted(m["features"]))
                        & (pl.col("minute") >= m["start"]) & (pl.col("minute") < m["end"])).height
        rows.append({"date": m["date"], "start": m["start"], "end": m["end"],
                     "symbols": sorted(m["symbols"]),
                     "features": sorted(m["features"], key=lambda f: feat_order.get(f, 99)),
                     "max_z": m["max_z"], "severity": severity(m["max_z"]),
                     "kinds": sorted(m["kinds"]), "n_anomalies": n})
    return _conform(pl.DataFrame(rows, schema=INCIDENTS_SCHEMA), INCIDENTS_SCHEMA).sort("date", "start")


def _limits(limits: Mapping[str, object] | None) -> dict[str, object]:
    out = dict(DEFAULT_LIMITS)
    for k, v in (limits or {}).items():
        if k not in DEFAULT_LIMITS:
            raise InputError("limits", f"unknown limit {k!r}", expected=f"one of {sorted(DEFAULT_LIMITS)}")
        out[k] = v
    return out


def _min_depth_expr(value: object) -> pl.Expr:
    if isinstance(value, Mapping):
        default = float(value.get("*", DEFAULT_LIMITS["min_depth_1pct"]))
        return pl.col("symbol").replace_strict({k: float(v) for k, v in value.items() if k != "*"},
                                               default=default, return_dtype=F64)
    return pl.lit(float(value))


#: (rule, feature column, comparison, limit name, text)
_RULES = (("max_cancels_per_min", "cancels", "gt", "cancels"),
          ("max_leverage", "max_new_leverage", "gt", "new leverage"),
          ("min_depth_1pct", "depth_1pct", "lt", "depth within 1 %"))


def rule_breaches(features: pl.DataFrame, limits: Mapping[str, object] | None = None) -> pl.DataFrame:
    """Per date x symbol x minute x rule where a fixed limit is breached: cancels >
    max_cancels_per_min, max_new_leverage > max_leverage, depth_1pct < min_depth_1pct; columns
    date, symbol, minute, rule, observed, threshold."""
    lim = _limits(limits)
    parts = []
    for rule, col, op, _ in _RULES:
        thr = _min_depth_expr(lim[rule]) if rule == "min_depth_1pct" else pl.lit(float(lim[rule]))
        f = features.select("date", "symbol", "minute", pl.lit(rule).alias("rule"),
                            pl.col(col).cast(F64).alias("observed"), thr.alias("threshold"))
        cond = (pl.col("observed") > pl.col("threshold")) if op == "gt" else (pl.col("observed") < pl.col("threshold"))
        parts.append(f.filter(cond.fill_null(False)))
    return pl.concat(parts).sort("date", "symbol", "minute", "rule")


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def rules_vs_model(features: pl.DataFrame, incidents: pl.DataFrame,
                   limits: Mapping[str, object] | None = None,
                   zscores: pl.DataFrame | None = None, z_threshold: float = Z_THRESHOLD,
                   window_min: int = WINDOW_MIN) -> pl.DataFrame:
    """Where the fixed limits and the statistical incidents disagree: date, case, start, end,
    symbols, model_features, max_z, z_threshold, model_detail, rules_breached, rules_detail.

    Limits (DEFAULT_LIMITS, overridable per key; min_depth_1pct may be {symbol: value} with '*'
    as the default): cancels per symbol-minute > max_cancels_per_min (500), a leverage change to
    more than max_leverage (125x), depth within 1 % (both sides) < min_depth_1pct (250,000 USDT).
    Breached minutes chain per date x symbol x rule while <= window_min apart into breach spans.
    case 'incident_no_breach': an incident with no breached minute on its symbols within
    [start - window_min, end + window_min]; rules_detail lists each rule's worst observed value
    there against its limit. case 'breach_no_incident': a breach span with no incident holding its
    symbol within [span start - window_min, span end + window_min]; rules_detail gives the worst
    observed value against the limit, and model_detail the symbol's max z per feature over the
    span against z_threshold when `zscores` is given.
    """
    lim = _limits(limits)
    br = rule_breaches(features, lim)
    w = dt.timedelta(minutes=window_min)
    rows: list[dict] = []
    for inc in incidents.to_dicts():
        lo, hi = inc["start"] - w, inc["end"] + w
        win = (pl.col("date") == inc["date"]) & pl.col("symbol").is_in(inc["symbols"]) \
            & (pl.col("minute") >= lo) & (pl.col("minute") < hi)
        if br.filter(win).height:
            continue
        f = features.filter(win)
        detail = []
        for rule, col, op, text in _RULES:
            obs = f[col].max() if op == "gt" else f[col].min()
            thr = lim[rule]
            thr_txt = (", ".join(f"{k} {_fmt(float(v))}" for k, v in thr.items())
                       if isinstance(thr, Mapping) else _fmt(float(thr)))
            word = "max" if op == "gt" else "min"
            detail.append(f"{rule}: {text} {word} {_fmt(obs)} vs limit {thr_txt}")
        rows.append({"date": inc["date"], "case": CASE_INCIDENT_NO_BREACH, "start": inc["start"],
                     "end": inc["end"], "symbols": inc["symbols"], "model_features": inc["features"],
                     "max_z": inc["max_z"], "z_threshold": z_threshold,
                     "model_detail": [f"{', '.join(inc['features'])}: max z {_fmt(inc['max_z'])} "
                                      f">= {_fmt(z_threshold)}"],
                     "rules_breached": [], "rules_detail": detail})
    if br.height:
        spans = (br.sort("date", "symbol", "rule", "minute")
                 .with_columns(((pl.col("minute").diff().over(["date", "symbol", "rule"])
                                 > pl.duration(minutes=window_min)).fill_null(True))
                               .cum_sum().over(["date", "symbol", "rule"]).alias("_c"))
                 .group_by("date", "symbol", "rule", "_c")
                 .agg(pl.col("minute").min().alias("start"),
                      (pl.col("minute").max() + pl.duration(minutes=1)).alias("end"),
                      pl.col("observed").max().alias("obs_max"), pl.col("observed").min().alias("obs_min"),
                      pl.col("threshold").first(), pl.len().alias("minutes"))
                 .sort("date", "start", "symbol", "rule"))
        inc_rows = incidents.to_dicts()
        for s in spans.to_dicts():
            hit = any(i["date"] == s["date"] and s["symbol"] in i["symbols"]
                      and i["start"] <= s["end"] + w and s["start"] <= i["end"] + w for i in inc_rows)
            if hit:
                continue
            _, col, op, text = next(r for r in _RULES if r[0] == s["rule"])
            obs = s["obs_max"] if op == "gt" else s["obs_min"]
            rel = ">" if op == "gt" else "<"
            model_detail, feats, max_z = [], [], None
            if zscores is not None:
                zs = (zscores.filter((pl.col("date") == s["date"]) & (pl.col("symbol") == s["symbol"])
                                     & (pl.col("minute") >= s["start"]) & (pl.col("minute") < s["end"]))
                      .group_by("feature").agg(pl.col("z").max()).sort("z", descending=True, nulls_last=True))
                for r in zs.to_dicts():
                    model_detail.append(f"{r['feature']}: max z {_fmt(r['z'])} vs threshold {_fmt(z_threshold)}")
                    if r["z"] is not None and r["z"] >= z_threshold:
                        feats.append(r["feature"])
                max_z = zs["z"].max() if zs.height else None
            rows.append({"date": s["date"], "case": CASE_BREACH_NO_INCIDENT, "start": s["start"],
                         "end": s["end"], "symbols": [s["symbol"]], "model_features": feats,
                         "max_z": max_z, "z_threshold": z_threshold, "model_detail": model_detail,
                         "rules_breached": [s["rule"]],
                         "rules_detail": [f"{s['rule']}: {text} {_fmt(obs)} {rel} limit "
                                          f"{_fmt(s['threshold'])} in {s['minutes']} minute(s)"]})
    out = pl.DataFrame(rows, schema=RULES_VS_MODEL_SCHEMA)
    return _conform(out, RULES_VS_MODEL_SCHEMA).sort("date", "start", "case")
