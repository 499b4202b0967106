"""Funding-volatility crowding (DESIGN 4.3): funding paid and realized volatility per symbol,
scored against their own baseline with the open-interest build-up, to flag positioning crowded
on one side before volatility unwinds it.

Funding tends to amplify crowded positioning: when one side of a perpetual is crowded it pays the
other side to keep its positions, and a crowded book unwinds violently when volatility rises.
Funding and realized volatility are therefore measured together, per date x symbol:

- funding_paid = sum of the day's funding rates (decimal per day; positive = longs pay shorts);
  funding_interest = sum of the day's interest_rate (the neutral funding when the premium stays
  inside the clamp: 0.01 % per 8 h = 0.03 % a day); funding_annualized = mean funding rate x
  settlements per year, settlements per year = 24 / funding_interval_hours x 365.
- realized_vol = annualized volatility of the mark price: the last mark of every UTC minute,
  1-minute log returns r = ln(mark_m / mark_(m-1)) (a minute with no mark row is skipped, so the
  return spans the gap), sample standard deviation (n - 1) x sqrt(525,600 minutes a year).
- oi_change = relative change of open interest from the day's first to its last 5-minute
  snapshot: (OI_last - OI_first) / OI_first; oi_value_close = the last snapshot's
  open_interest_value (quote); long_short_ratio and taker_buy_sell_ratio = means over the day's
  snapshots.

Against the symbol's trailing baseline (the earlier days' rows of the same table inside a window
of `window` days, default 30; a day already flagged `crowded` is left out so that a regime does
not become its own baseline) each of funding_paid, oi_change and realized_vol gets a robust z:
z = (x - median) / scale, scale = max(1.4826 x MAD, floor), MAD = median |x - median|.
The floors keep a flat history (MAD = 0: funding sitting exactly on the interest rate every day)
from turning a tiny move into an infinite z: funding 0.1 bp a day (1e-5) or 10 % of the day's
funding_interest, whichever is larger; oi_change 1 percentage point (0.01); realized_vol 5 % of
its median (and at least 0.01, i.e. 1 vol point).
With fewer than `min_days` (default 7) baseline days the trailing median is not trusted: the
funding z is taken against a prior instead, median = the day's funding_interest with the funding
floor as scale, and the oi and vol z are null (treated as 0); the baseline_days column says how
many days the baseline held (0 on a venue's first day) and baseline = "trailing" or "prior".

crowding_score = |funding_z| x sign(oi_change) x (1 + max(vol_z, 0)): the funding deviation, of
either sign, counted in the direction of the open-interest build-up (positive when positions are
being added while one side pays unusual funding: crowded longs when funding is above its
baseline, crowded shorts when below; negative when open interest falls, i.e. the crowd is
leaving), amplified when realized volatility is above its baseline. crowded_side = "long" when
funding is above its baseline, "short" below.
Flags: `crowded` when crowding_score >= 3 (a three-scale funding deviation with open interest
building), or by the absolute rule |funding_paid| >= 3 x funding_interest (0.09 % a day at the
usual interest rate, about 33 % a year), which needs no history, so the first day can flag;
`crowded_and_vol_rising` when crowded and vol_z >= 1 (realized volatility at least one scale
above its baseline median).

Known limits: Daily resolution: funding, open-interest change (first to last 5-minute snapshot,
so an intraday build-up that unwinds by the close does not show) and realized volatility are one
value per day. For the first 7 days of a venue the funding z is against a prior (the interest
rate), not a history, and the open-interest and volatility terms are off. The score ranks
symbols; it is not a probability of an unwind.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from venue_risk.errors import InputError
from venue_risk.metrics.frames import require_columns as _require, conform as _conform

METHOD = __doc__

#: Minutes in a (365-day) year: annualization of 1-minute returns.
MINUTES_PER_YEAR = 525_600
#: Consistency factor of the MAD for a normal distribution.
MAD_SCALE = 1.4826
#: Default trailing window (days) and the fewest baseline days a trailing median is trusted with.
WINDOW_DAYS = 30
MIN_DAYS = 7
#: Scale floors (see the module docstring).
FUNDING_FLOOR_ABS = 1e-5
FUNDING_FLOOR_INTEREST_SHARE = 0.10
OI_CHANGE_FLOOR = 0.01
VOL_FLOOR_REL = 0.05
VOL_FLOOR_ABS = 0.01
#: Flag thresholds.
SCORE_THRESHOLD = 3.0
ABS_FUNDING_MULTIPLE = 3.0
VOL_RISING_Z = 1.0

F64, I64, STR = pl.Float64, pl.Int64, pl.String

DAILY_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "symbol": STR,
    "settlements": I64,
    "funding_paid": F64,
    "funding_interest": F64,
    "funding_annualized": F64,
    "realized_vol": F64,
    "oi_change": F64,
    "oi_value_close": F64,
    "long_short_ratio": F64,
    "taker_buy_sell_ratio": F64,
}

SCORES_SCHEMA: dict[str, pl.DataType] = {
    **DAILY_SCHEMA,
    "baseline_days": I64,
    "baseline": STR,
    "funding_median": F64,
    "funding_scale": F64,
    "funding_z": F64,
    "oi_change_z": F64,
    "vol_z": F64,
    "crowding_score": F64,
    "crowded_side": STR,
    "funding_extreme": pl.Boolean,
    "crowded": pl.Boolean,
    "crowded_and_vol_rising": pl.Boolean,
}




def annualized_realized_vol(mark_index: pl.DataFrame) -> pl.DataFrame:
    """Annualized realized volatility per date x symbol from 1-minute mark log returns.

    mark_m = the last mark_price of UTC minute m (rows sorted by ts); r_m = ln(mark_m / mark_(m-1))
    over consecutive available minutes of the same symbol and date; realized_vol =
    std(r, ddof=1) x sqrt(525,600). Null with fewer than two returns. Columns: date, symbol,
    realized_vol.
    """
    _require(mark_index, "mark_index", ["ts", "symbol", "mark_price"])
    bad = mark_index.filter(pl.col("mark_price").is_not_null() & (pl.col("mark_price") <= 0))
    if bad.height:
        r = bad.row(0, named=True)
        raise InputError("mark_index", f"mark_price {r['mark_price']!r} for {r['symbol']} at {r['ts']}",
                         column="mark_price", expected="a positive price")
    minute = (
        mark_index.filter(pl.col("mark_price").is_not_null())
        .with_columns(pl.col("ts").dt.truncate("1m").alias("_m"))
        .group_by(["symbol", "_m"])
        .agg(pl.col("mark_price").sort_by("ts").last())
        .with_columns(pl.col("_m").dt.date().alias("date"))
        .sort(["symbol", "_m"])
        .with_columns(pl.col("mark_price").log().diff().over(["symbol", "date"]).alias("_r"))
    )
    return (minute.group_by(["date", "symbol"])
            .agg((pl.col("_r").drop_nulls().std(ddof=1) * MINUTES_PER_YEAR ** 0.5).alias("realized_vol"))
            .sort(["date", "symbol"]))


def funding_vol_daily(funding: pl.DataFrame, mark_index: pl.DataFrame, market_metrics: pl.DataFrame,
                      instruments: pl.DataFrame) -> pl.DataFrame:
    """Funding, realized volatility and positioning per date x symbol.

    settlements = number of funding rows; funding_paid = sum(funding_rate);
    funding_interest = sum(interest_rate); funding_annualized = mean(funding_rate) x
    (24 / funding_interval_hours) x 365 (the instrument's interval);
    realized_vol = std(1-minute mark log returns, ddof=1) x sqrt(525,600) (see
    `annualized_realized_vol`); oi_change = (OI_last - OI_first) / OI_first over the day's
    market_metrics snapshots in time order; oi_value_close = open_interest_value of the last
    snapshot; long_short_ratio = mean(long_short_account_ratio); taker_buy_sell_ratio =
    mean(taker_buy_sell_ratio). date = the UTC date of the rows. A symbol present in any input
    has a row (the measures it has no data for are null). Raises InputError when a funded symbol
    has no instrument row or a positive funding_interval_hours.
    """
    _require(funding, "funding", ["ts", "symbol", "funding_rate", "interest_rate"])
    _require(market_metrics, "market_metrics", ["ts", "symbol", "open_interest", "open_interest_value",
                                                "long_short_account_ratio", "taker_buy_sell_ratio"])
    _require(instruments, "instruments", ["symbol", "funding_interval_hours"])
    interval = instruments.select("symbol", "funding_interval_hours").unique("symbol", keep="last")
    fund = funding.join(interval, on="symbol", how="left")
    bad = fund.filter(pl.col("funding_interval_hours").is_null() | (pl.col("funding_interval_hours") <= 0))
    if bad.height:
        sym = bad["symbol"][0]
        raise InputError("instruments", f"no positive funding_interval_hours for funded symbol {sym!r}",
                         column="funding_interval_hours",
                         expected="one instruments row per funded symbol with an interval > 0 hours")
    per_year = 24.0 / pl.col("funding_interval_hours").cast(F64) * 365.0
    f = (fund.with_columns(pl.col("ts").dt.date().alias("date"))
         .group_by(["date", "symbol"])
         .agg(pl.len().cast(I64).alias("settlements"),
              pl.col("funding_rate").sum().alias("funding_paid"),
              pl.col("interest_rate").sum().alias("funding_interest"),
              (pl.col("funding_rate").mean() * per_year.first()).alias("funding_annualized")))
    oi = pl.col("open_interest").sort_by("ts")
    m = (market_metrics.with_columns(pl.col("ts").dt.date().alias("date"))
         .group_by(["date", "symbol"])
         .agg(pl.when(oi.first() != 0).then((oi.last() - oi.first()) / oi.first()).alias("oi_change"),
              pl.col("open_interest_value").sort_by("ts").last().alias("oi_value_close"),
              pl.col("long_short_account_ratio").mean().alias("long_short_ratio"),
              pl.col("taker_buy_sell_ratio").mean().alias("taker_buy_sell_ratio")))
    v = annualized_realized_vol(mark_index)
    keys = pl.concat([x.select("date", "symbol") for x in (f, m, v)]).unique()
    out = (keys.join(f, on=["date", "symbol"], how="left")
           .join(v, on=["date", "symbol"], how="left")
           .join(m, on=["date", "symbol"], how="left")
           .with_columns(pl.col("settlements").fill_null(0)))
    return _conform(out, DAILY_SCHEMA).sort(["date", "symbol"])


def robust_z(x: pl.Expr, median: pl.Expr, mad: pl.Expr, floor: pl.Expr | float) -> pl.Expr:
    """z = (x - median) / max(1.4826 x MAD, floor)."""
    floor = floor if isinstance(floor, pl.Expr) else pl.lit(floor)
    return (x - median) / pl.max_horizontal(MAD_SCALE * mad, floor)


def _baseline_stats(today: pl.DataFrame, history: pl.DataFrame, window: int) -> pl.DataFrame:
    """Per today's (date, symbol): count, median and MAD of the three measures over the baseline."""
    cols = ["funding_paid", "oi_change", "realized_vol"]
    hist = history.select(
        pl.col("date").alias("_hdate"), "symbol", *cols,
        (pl.col("crowded").fill_null(False) if "crowded" in history.columns else pl.lit(False))
        .alias("_flagged"))
    pairs = (today.select("date", "symbol").unique()
             .join(hist, on="symbol", how="inner")
             .filter((pl.col("_hdate") < pl.col("date"))
                     & (pl.col("_hdate") >= pl.col("date") - pl.duration(days=window))
                     & ~pl.col("_flagged"))
             .unique(["date", "symbol", "_hdate"], keep="last"))
    aggs = [pl.col("_hdate").n_unique().cast(I64).alias("baseline_days")]
    for c in cols:
        aggs += [pl.col(c).median().alias(f"_{c}_med"),
                 (pl.col(c) - pl.col(c).median()).abs().median().alias(f"_{c}_mad")]
    return pairs.group_by(["date", "symbol"]).agg(aggs)


def crowding_scores(today: pl.DataFrame, history: pl.DataFrame, window: int = WINDOW_DAYS,
                    min_days: int = MIN_DAYS) -> pl.DataFrame:
    """Robust z-scores against the trailing baseline, the crowding score and the two flags.

    `today`: rows of `funding_vol_daily` (any dates); `history`: earlier rows of the same table
    (or of this one: a row with crowded = true is left out of the baseline). For each row the
    baseline is the symbol's history rows with date in [date - window days, date), one per date.
    z = (x - median) / max(1.4826 x MAD, floor) for x in funding_paid (floor = max(1e-5,
    0.1 x funding_interest)), oi_change (floor 0.01), realized_vol (floor = max(0.05 x median,
    0.01)). With fewer than `min_days` baseline days: baseline = "prior", funding_z =
    (funding_paid - funding_interest) / funding floor, oi_change_z and vol_z null.
    crowding_score = |funding_z| x sign(oi_change) x (1 + max(vol_z, 0)) (vol_z null counts 0);
    crowded_side = "long" if funding_z > 0, "short" if < 0; funding_extreme = |funding_paid| >=
    3 x funding_interest (with funding_interest > 0); crowded = crowding_score >= 3 or
    funding_extreme; crowded_and_vol_rising = crowded and vol_z >= 1.
    """
    need = ["date", "symbol", "funding_paid", "funding_interest", "oi_change", "realized_vol"]
    _require(today, "crowding (today)", need)
    if window < 1 or min_days < 0:
        raise InputError("crowding", f"window {window}, min_days {min_days}",
                         expected="window >= 1 day and min_days >= 0")
    if history is None or history.height == 0:
        history = pl.DataFrame(schema={c: DAILY_SCHEMA[c] for c in need})
    else:
        _require(history, "crowding (history)", ["date", "symbol", "funding_paid", "oi_change", "realized_vol"])
    today = _conform(today.with_columns([pl.lit(None).cast(t).alias(c) for c, t in DAILY_SCHEMA.items()
                                         if c not in today.columns]), DAILY_SCHEMA)
    stats = _baseline_stats(today, history.cast({"date": pl.Date}), window)
    df = (today.join(stats, on=["date", "symbol"], how="left")
          .with_columns(pl.col("baseline_days").fill_null(0)))
    trailing = pl.col("baseline_days") >= min_days
    f_floor = pl.max_horizontal(pl.lit(FUNDING_FLOOR_ABS),
                                FUNDING_FLOOR_INTEREST_SHARE * pl.col("funding_interest").abs().fill_null(0.0))
    v_floor = pl.max_horizontal(pl.lit(VOL_FLOOR_ABS), VOL_FLOOR_REL * pl.col("_realized_vol_med").abs())
    f_med = pl.when(trailing).then(pl.col("_funding_paid_med")).otherwise(pl.col("funding_interest"))
    f_scale = pl.when(trailing).then(pl.max_horizontal(MAD_SCALE * pl.col("_funding_paid_mad"), f_floor)
                                     ).otherwise(f_floor)
    df = df.with_columns(
        pl.when(trailing).then(pl.lit("trailing")).otherwise(pl.lit("prior")).alias("baseline"),
        f_med.alias("funding_median"),
        f_scale.alias("funding_scale"),
    ).with_columns(
        ((pl.col("funding_paid") - pl.col("funding_median")) / pl.col("funding_scale")).alias("funding_z"),
        pl.when(trailing).then(robust_z(pl.col("oi_change"), pl.col("_oi_change_med"),
                                        pl.col("_oi_change_mad"), OI_CHANGE_FLOOR)).alias("oi_change_z"),
        pl.when(trailing).then(robust_z(pl.col("realized_vol"), pl.col("_realized_vol_med"),
                                        pl.col("_realized_vol_mad"), v_floor)).alias("vol_z"),
    )
    amp = 1.0 + pl.max_horizontal(pl.col("vol_z").fill_null(0.0).fill_nan(0.0), pl.lit(0.0))
    score = pl.col("funding_z").abs() * pl.col("oi_change").sign() * amp
    extreme = ((pl.col("funding_interest") > 0)
               & (pl.col("funding_paid").abs() >= ABS_FUNDING_MULTIPLE * pl.col("funding_interest")))
    df = df.with_columns(
        score.alias("crowding_score"),
        pl.when(pl.col("funding_z") > 0).then(pl.lit("long"))
        .when(pl.col("funding_z") < 0).then(pl.lit("short")).alias("crowded_side"),
        extreme.fill_null(False).alias("funding_extreme"),
    ).with_columns(
        ((pl.col("crowding_score") >= SCORE_THRESHOLD).fill_null(False) | pl.col("funding_extreme"))
        .alias("crowded"),
    ).with_columns(
        (pl.col("crowded") & (pl.col("vol_z") >= VOL_RISING_Z).fill_null(False)).alias("crowded_and_vol_rising"),
    )
    return _conform(df, SCORES_SCHEMA).sort(["date", "symbol"])


def trailing_history(frames: list[pl.DataFrame], day: dt.date, window: int = WINDOW_DAYS) -> pl.DataFrame:
    """Convenience for callers holding per-day frames: the rows dated in [day - window, day)."""
    if not frames:
        return pl.DataFrame(schema=SCORES_SCHEMA)
    hist = pl.concat(frames, how="diagonal_relaxed")
    return hist.filter((pl.col("date") < day) & (pl.col("date") >= day - dt.timedelta(days=window)))
