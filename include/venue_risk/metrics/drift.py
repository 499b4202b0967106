"""Distribution drift of key features, and fill quality by volatility bucket (DESIGN 4.5).

Drift is a signal, not noise: when the distribution of a feature the venue's risk depends on
moves away from its recent past, the report names the feature.

Features (one value per observation of the day, all symbols pooled):
- liquidation_slippage_bps: slippage_bps of each filled liquidation (see `slippage`);
- spread_bps: (best_ask - best_bid) / mid x 10,000 per mark_index second, mid = (bid + ask) / 2;
- depth_1pct_notional: book notional within 1 % of the mid, bids (-1 band) + asks (+1 band), per
  book snapshot;
- order_size_notional: qty x price of every `new` order event; an order without a price (market,
  liquidation) is valued at the symbol's mark at or before the event;
- leverage: leverage of each end-of-day position;
- basis_bps: (mark_price - index_price) / index_price x 10,000 per mark_index second;
- fill_rate: per order placed that day (a `new` event), max(cum_filled_qty) over its events /
  the new event's qty, clipped to [0, 1].
Every day stores a bounded, deterministic sample of each feature: all values if there are at most
2,000, otherwise 2,000 drawn without replacement from the values in sorted order with a generator
seeded from (seed, feature, date), so the stored sample does not depend on input row order.

Against the baseline (the stored samples of the earlier days in a trailing window, default 30
days, pooled):
- PSI (population stability index): bin edges are the baseline's (expected) deciles (quantiles
  at k / bins, linear interpolation, duplicate edges merged), the outer bins open-ended, a value
  on an edge falls in the lower bin; with e_i, a_i the shares of expected and actual values in
  bin i, PSI = sum_i (a_i - e_i) x ln(a_i / e_i), where an empty bin's share is replaced by
  epsilon = 1e-4 so the log stays finite (an empty bin then contributes a bounded, not an
  infinite, amount). 0 for identical distributions; by convention < 0.1 stable, 0.1-0.25
  moderate, > 0.25 a significant shift.
- KS: the two-sample Kolmogorov-Smirnov statistic D = sup_x |F_expected(x) - F_actual(x)|, the
  largest gap between the two empirical distribution functions, evaluated exactly at every
  observed value.
A feature is `drifted` when PSI > 0.25 and KS > 0.25, both samples hold at least 50 values and
the baseline covers at least 3 days. Both measures must agree: PSI alone reacts to small shifts
inside the bulk of a narrow distribution (a day-to-day move of a third of a standard deviation
already gives PSI ~ 0.3), and the KS threshold is an effect size, not a significance level (with
thousands of autocorrelated intraday values any test rejects every day, while a gap of a quarter
between the two distribution functions is a shift a risk committee can see). On a simulated
month this names the basis during a crowded-funding regime and the spread on a volatile day, and
nothing on ordinary days.

Fill quality by volatility bucket: every second of the day gets the rolling 5-minute realized
volatility of the mark, sqrt(mean of squared 1-second mark log returns over the last 300 seconds
x 31,536,000 seconds a year); the day's seconds of each symbol are cut at the terciles of that
volatility into low, mid and high (each a third of the day). Each trade is joined to the latest
mark_index second at or before it (a trade before the symbol's first mark row is left out). Per date x symbol x bucket: trade_count; effective spread
bps = mean of 2 x |price - mid| / mid x 10,000 (mid = (best_bid + best_ask) / 2 at that second);
taker slippage vs mark bps = mean of (price - mark) / mark x 10,000 for a taker buy, the mirror
for a taker sell (positive = the taker paid more than mark); the bucket's volatility range. Fills
degrade when the high bucket's numbers exceed the low bucket's.

Known limits: Features are pooled over all symbols, so a shift in one small symbol can be
diluted by the large ones. Each day keeps a 2,000-value sample per feature, and a feature needs
50 values on each side and 3 baseline days before it can be called drifted. The thresholds (PSI
and KS both above 0.25) are conventions, not calibrated alarm rates. Volatility buckets are
terciles of the day's own seconds: `high` is high for that day, not against history.
"""

from __future__ import annotations

import datetime as dt
import zlib

import numpy as np
import polars as pl

from venue_risk.errors import InputError
from venue_risk.metrics.frames import require_columns as _require

METHOD = __doc__

FEATURES: tuple[str, ...] = ("liquidation_slippage_bps", "spread_bps", "depth_1pct_notional",
                             "order_size_notional", "leverage", "basis_bps", "fill_rate")
#: Values stored per feature and date.
SAMPLE_SIZE = 2_000
#: Replacement share of an empty PSI bin.
PSI_EPSILON = 1e-4
PSI_THRESHOLD = 0.25
KS_THRESHOLD = 0.25
#: Fewest values in either sample, and fewest baseline days, for a drift verdict.
MIN_VALUES = 50
MIN_BASELINE_DAYS = 3
WINDOW_DAYS = 30
#: Rolling window (seconds) of the volatility that buckets the day.
VOL_WINDOW_S = 300
SECONDS_PER_YEAR = 31_536_000
VOL_BUCKETS: tuple[str, ...] = ("low", "mid", "high")

F64, I64, STR = pl.Float64, pl.Int64, pl.String

SAMPLES_SCHEMA: dict[str, pl.DataType] = {"date": pl.Date, "feature": STR, "value": F64}
FEATURE_ENUM = pl.Enum(list(FEATURES))
DRIFT_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "feature": STR, "psi": F64, "ks": F64, "n_today": I64, "n_baseline": I64,
    "baseline_days": I64, "drifted": pl.Boolean,
}
FILL_QUALITY_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "vol_bucket": STR, "trade_count": I64,
    "effective_spread_bps": F64, "taker_slippage_bps": F64, "vol_min": F64, "vol_max": F64,
}


def _values(x, name: str) -> np.ndarray:
    """Finite float values of an array or Series (nulls and NaN/inf dropped)."""
    if isinstance(x, pl.Series):
        x = x.cast(F64).drop_nulls().to_numpy()
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def psi(expected: np.ndarray | pl.Series, actual: np.ndarray | pl.Series, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`.

    edges = quantiles of expected at k / bins, k = 1 .. bins - 1 (linear interpolation),
    duplicates merged; bin i = (edge_(i-1), edge_i] with open outer bins; e_i, a_i = shares of
    expected and actual values in bin i, an empty share replaced by 1e-4;
    PSI = sum_i (a_i - e_i) x ln(a_i / e_i). NaN when either sample is empty (after dropping
    nulls and non-finite values).
    """
    if bins < 2:
        raise InputError("drift", f"bins = {bins}", expected="at least 2 bins")
    e, a = _values(expected, "expected"), _values(actual, "actual")
    if e.size == 0 or a.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(e, np.arange(1, bins) / bins))
    e_counts = np.bincount(np.searchsorted(edges, e, side="left"), minlength=edges.size + 1)
    a_counts = np.bincount(np.searchsorted(edges, a, side="left"), minlength=edges.size + 1)
    e_share = np.where(e_counts == 0, PSI_EPSILON, e_counts / e.size)
    a_share = np.where(a_counts == 0, PSI_EPSILON, a_counts / a.size)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def ks_statistic(expected: np.ndarray | pl.Series, actual: np.ndarray | pl.Series) -> float:
    """Two-sample Kolmogorov-Smirnov statistic D = max over every observed value x of
    |F_e(x) - F_a(x)|, F(x) = share of the sample <= x. NaN when either sample is empty."""
    e, a = np.sort(_values(expected, "expected")), np.sort(_values(actual, "actual"))
    if e.size == 0 or a.size == 0:
        return float("nan")
    grid = np.concatenate([e, a])
    fe = np.searchsorted(e, grid, side="right") / e.size
    fa = np.searchsorted(a, grid, side="right") / a.size
    return float(np.max(np.abs(fe - fa)))



def _mark_asof(left: pl.DataFrame, mark_index: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """Join the latest mark_index row at or before each left row's ts (same symbol)."""
    right = mark_index.select(pl.col("ts").alias("_mts"), "symbol", *cols).sort("_mts")
    return left.sort("ts").join_asof(right, left_on="ts", right_on="_mts", by="symbol",
                                     strategy="backward", check_sortedness=False)


def _feature_values(trades, order_events, mark_index, book_depth, positions_eod,
                    liquidation_executions) -> dict[str, pl.DataFrame]:
    """Per feature a frame (date, value) of every observation."""
    _require(mark_index, "mark_index", ["ts", "symbol", "mark_price", "index_price", "best_bid", "best_ask"])
    _require(book_depth, "book_depth", ["ts", "symbol", "percentage", "notional"])
    _require(order_events, "order_events", ["ts", "symbol", "order_id", "event", "price", "qty",
                                            "cum_filled_qty"])
    _require(positions_eod, "positions_eod", ["date", "leverage"])
    _require(liquidation_executions, "liquidation executions", ["date", "slippage_bps"])
    day = pl.col("ts").dt.date().alias("date")
    mid = (pl.col("best_bid") + pl.col("best_ask")) / 2
    out: dict[str, pl.DataFrame] = {}
    out["liquidation_slippage_bps"] = liquidation_executions.select("date", pl.col("slippage_bps").alias("value"))
    out["spread_bps"] = mark_index.select(day, ((pl.col("best_ask") - pl.col("best_bid")) / mid * 1e4).alias("value"))
    out["depth_1pct_notional"] = (
        book_depth.filter((pl.col("percentage").abs() - 1.0).abs() < 1e-9)
        .group_by(["ts", "symbol"]).agg(pl.col("notional").sum().alias("value"))
        .select(day, "value"))
    new = order_events.select("ts", "symbol", "order_id", "event", "price", "qty").filter(pl.col("event") == "new")
    priced = _mark_asof(new.select("ts", "symbol", "price", "qty"), mark_index, ["mark_price"])
    out["order_size_notional"] = priced.select(
        day, (pl.col("qty") * pl.coalesce("price", "mark_price")).alias("value"))
    out["leverage"] = positions_eod.select("date", pl.col("leverage").alias("value"))
    out["basis_bps"] = mark_index.select(
        day, ((pl.col("mark_price") - pl.col("index_price")) / pl.col("index_price") * 1e4).alias("value"))
    filled = (order_events.select("order_id", "cum_filled_qty")
              .filter(pl.col("order_id").is_in(new["order_id"].implode()))
              .group_by("order_id").agg(pl.col("cum_filled_qty").max().alias("_filled")))
    out["fill_rate"] = (
        new.group_by("order_id").agg(pl.col("ts").min(), pl.col("qty").sort_by("ts").first())
        .join(filled, on="order_id", how="left")
        .select(day, pl.when(pl.col("qty") > 0)
                .then((pl.col("_filled").fill_null(0.0) / pl.col("qty")).clip(0.0, 1.0)).alias("value")))
    return out


def _sample(values: np.ndarray, n: int, seed: int, feature: str, day: dt.date) -> np.ndarray:
    values = np.sort(values)
    if values.size <= n:
        return values
    rng = np.random.default_rng([seed, zlib.crc32(feature.encode()), day.toordinal()])
    return values[np.sort(rng.choice(values.size, n, replace=False))]


def feature_values(trades: pl.DataFrame, order_events: pl.DataFrame, mark_index: pl.DataFrame,
                   book_depth: pl.DataFrame, positions_eod: pl.DataFrame,
                   liquidation_executions: pl.DataFrame) -> pl.DataFrame:
    """Every finite observation of every drift feature: columns date, feature (Enum of
    FEATURES), value; the features and their formulas are in the module docstring. Row-wise in
    the symbols, so the values of several symbol groups put together are those of all their
    symbols (the split metric stage computes them per group). `trades` is accepted for symmetry
    with the pipeline's inputs and is not used."""
    parts = [frame.filter(pl.col("value").is_not_null() & pl.col("value").is_finite()
                          & pl.col("date").is_not_null())
             .select("date", pl.lit(feature, FEATURE_ENUM).alias("feature"), pl.col("value").cast(F64))
             for feature, frame in _feature_values(trades, order_events, mark_index, book_depth,
                                                   positions_eod, liquidation_executions).items()]
    return pl.concat(parts, how="vertical")


def sample_values(values: pl.DataFrame, seed: int = 0, sample_size: int = SAMPLE_SIZE) -> pl.DataFrame:
    """The stored sample of `feature_values` output: per (date, feature), the values sorted;
    all of them if at most `sample_size` (2,000), else `sample_size` drawn without replacement
    by numpy's default generator seeded with (seed, crc32(feature), date ordinal), kept in sorted
    order. Depends only on the multiset of values, not on their row order."""
    rows: list[pl.DataFrame] = []
    for (feature, day), part in sorted(values.partition_by("feature", "date", as_dict=True).items(),
                                       key=lambda kv: (FEATURES.index(kv[0][0]), kv[0][1])):
        vals = _sample(part["value"].to_numpy(), sample_size, seed, feature, day)
        rows.append(pl.DataFrame({"date": [day] * vals.size, "feature": [feature] * vals.size,
                                  "value": vals}, schema=SAMPLES_SCHEMA))
    if not rows:
        return pl.DataFrame(schema=SAMPLES_SCHEMA)
    rank = pl.col("feature").replace_strict({f: i for i, f in enumerate(FEATURES)}, return_dtype=I64)
    return pl.concat(rows).sort([pl.col("date"), rank], maintain_order=True)


def feature_samples(trades: pl.DataFrame, order_events: pl.DataFrame, mark_index: pl.DataFrame,
                    book_depth: pl.DataFrame, positions_eod: pl.DataFrame,
                    liquidation_executions: pl.DataFrame, seed: int = 0,
                    sample_size: int = SAMPLE_SIZE) -> pl.DataFrame:
    """A bounded, deterministic sample of every drift feature per date: columns date, feature,
    value = sample_values(feature_values(...)). Per (date, feature): the finite values sorted;
    all of them if at most `sample_size` (2,000), else `sample_size` drawn without replacement
    by numpy's default generator seeded with (seed, crc32(feature), date ordinal), kept in sorted
    order. Features and their formulas: see the module docstring."""
    return sample_values(feature_values(trades, order_events, mark_index, book_depth, positions_eod,
                                        liquidation_executions), seed, sample_size)


def feature_drift(today_samples: pl.DataFrame, baseline_samples: pl.DataFrame,
                  psi_threshold: float = PSI_THRESHOLD, ks_threshold: float = KS_THRESHOLD,
                  window: int = WINDOW_DAYS) -> pl.DataFrame:
    """PSI and KS of each feature's values of the day against the pooled baseline samples dated
    in [date - window days, date). Columns: date, feature, psi, ks, n_today, n_baseline,
    baseline_days (distinct baseline dates holding the feature), drifted = psi > psi_threshold
    and ks > ks_threshold and n_today >= 50 and n_baseline >= 50 and baseline_days >= 3.
    A feature with no values today or in the baseline has null psi / ks and is not drifted.
    Every feature of FEATURES gets a row for every date of today_samples."""
    for name, f in (("drift samples (today)", today_samples), ("drift samples (baseline)", baseline_samples)):
        if f is not None:
            _require(f, name, ["date", "feature", "value"])
    if baseline_samples is None:
        baseline_samples = pl.DataFrame(schema=SAMPLES_SCHEMA)
    rows = []
    base_parts = baseline_samples.partition_by("feature", as_dict=True)
    for day in sorted(today_samples["date"].unique().to_list()):
        lo = day - dt.timedelta(days=window)
        today = today_samples.filter(pl.col("date") == day)
        for feature in FEATURES:
            t = today.filter(pl.col("feature") == feature)["value"]
            b_frame = base_parts.get((feature,), pl.DataFrame(schema=SAMPLES_SCHEMA)).filter(
                (pl.col("date") < day) & (pl.col("date") >= lo))
            b = b_frame["value"]
            e_vals, a_vals = _values(b, "baseline"), _values(t, "today")
            p = psi(e_vals, a_vals) if e_vals.size and a_vals.size else None
            k = ks_statistic(e_vals, a_vals) if e_vals.size and a_vals.size else None
            n_days = b_frame["date"].n_unique()
            ok = a_vals.size >= MIN_VALUES and e_vals.size >= MIN_VALUES and n_days >= MIN_BASELINE_DAYS
            drifted = bool(ok and p is not None and p > psi_threshold and k > ks_threshold)
            rows.append({"date": day, "feature": feature, "psi": p, "ks": k, "n_today": int(a_vals.size),
                         "n_baseline": int(e_vals.size), "baseline_days": int(n_days), "drifted": drifted})
    return pl.DataFrame(rows, schema=DRIFT_SCHEMA)


def rolling_vol(mark_index: pl.DataFrame) -> pl.DataFrame:
    """Per symbol and mark_index second: vol_5m = sqrt(mean of squared 1-second mark log returns
    over the last 300 rows (seconds) x 31,536,000), the first second of a symbol-day taking the
    next second's value; vol_bucket = low / mid / high by the symbol-day's terciles of vol_5m
    (cut at its 1/3 and 2/3 quantiles, a value on a cut falling in the lower bucket).
    Columns: ts, symbol, date, mark_price, best_bid, best_ask, vol_5m, vol_bucket."""
    r2 = pl.col("mark_price").log().diff().pow(2).over(["symbol", "date"])
    vol = (mark_index.select("ts", "symbol", "mark_price", "best_bid", "best_ask")
           .with_columns(pl.col("ts").dt.date().alias("date"))
           .sort(["symbol", "ts"])
           .with_columns(r2.alias("_r2"))
           .with_columns((pl.col("_r2").rolling_mean(VOL_WINDOW_S, min_samples=1).over(["symbol", "date"])
                          * SECONDS_PER_YEAR).sqrt().alias("vol_5m"))
           .with_columns(pl.col("vol_5m").fill_null(strategy="backward").over(["symbol", "date"])))
    q1 = pl.col("vol_5m").quantile(1 / 3, "linear").over(["symbol", "date"])
    q2 = pl.col("vol_5m").quantile(2 / 3, "linear").over(["symbol", "date"])
    return vol.with_columns(
        pl.when(pl.col("vol_5m") <= q1).then(pl.lit("low"))
        .when(pl.col("vol_5m") <= q2).then(pl.lit("mid"))
        .when(pl.col("vol_5m").is_not_null()).then(pl.lit("high")).alias("vol_bucket")
    ).drop("_r2")


def fill_quality_by_vol_bucket(trades: pl.DataFrame, mark_index: pl.DataFrame) -> pl.DataFrame:
    """Fill quality per date x symbol x volatility bucket (low, mid, high: terciles of the
    symbol-day's rolling 5-minute realized volatility, see `rolling_vol`). Each trade takes the
    latest mark_index second at or before its ts; mid = (best_bid + best_ask) / 2 there.
    trade_count = trades; effective_spread_bps = mean(2 x |price - mid| / mid x 10,000);
    taker_slippage_bps = mean(s x (price - mark) / mark x 10,000), s = +1 taker buy, -1 taker
    sell; vol_min / vol_max = the bucket's range of vol_5m over the day's seconds. Buckets with no
    trade keep a row with trade_count 0 and null means."""
    _require(trades, "trades", ["ts", "symbol", "price", "qty", "taker_side"])
    _require(mark_index, "mark_index", ["ts", "symbol", "mark_price", "best_bid", "best_ask"])
    bad = trades.filter(~pl.col("taker_side").is_in(["buy", "sell"]) | pl.col("taker_side").is_null())
    if bad.height:
        raise InputError("trades", f"taker_side {bad['taker_side'][0]!r}", column="taker_side",
                         expected="'buy' or 'sell'")
    secs = rolling_vol(mark_index)
    ranges = (secs.filter(pl.col("vol_bucket").is_not_null())
              .group_by(["date", "symbol", "vol_bucket"])
              .agg(pl.col("vol_5m").min().alias("vol_min"), pl.col("vol_5m").max().alias("vol_max")))
    right = secs.select(pl.col("ts").alias("_mts"), "symbol", "mark_price", "best_bid", "best_ask",
                        "vol_bucket").sort("_mts")
    mid = (pl.col("best_bid") + pl.col("best_ask")) / 2
    sign = pl.when(pl.col("taker_side") == "buy").then(1.0).otherwise(-1.0)
    t = (trades.select("ts", "symbol", "price", "taker_side").sort("ts")
         .join_asof(right, left_on="ts", right_on="_mts", by="symbol", strategy="backward",
                    check_sortedness=False)
         .filter(pl.col("vol_bucket").is_not_null())
         .with_columns(pl.col("_mts").dt.date().alias("date"))
         .group_by(["date", "symbol", "vol_bucket"])
         .agg(pl.len().cast(I64).alias("trade_count"),
              (2 * (pl.col("price") - mid).abs() / mid * 1e4).mean().alias("effective_spread_bps"),
              (sign * (pl.col("price") - pl.col("mark_price")) / pl.col("mark_price") * 1e4).mean()
              .alias("taker_slippage_bps")))
    out = (ranges.join(t, on=["date", "symbol", "vol_bucket"], how="left")
           .with_columns(pl.col("trade_count").fill_null(0)))
    rank = pl.col("vol_bucket").replace_strict({b: i for i, b in enumerate(VOL_BUCKETS)}, return_dtype=I64)
    return out.select([pl.col(c).cast(t) for c, t in FILL_QUALITY_SCHEMA.items()]).sort(
        [pl.col("date"), pl.col("symbol"), rank])
