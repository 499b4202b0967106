"""Index and mark integrity (DESIGN 4.4): the published index recomputed from its sources with
the venue's own rule, the seconds each source was stale or excluded, how far one broken or
corrupted source could move the index and which positions that would push into liquidation, and
the mark's basis to the index and lag behind trades.

Index recomputation. For every symbol the published index is recomputed, second by second, from
`index_components` with the venue's own rule (`venue_risk.index_rule`, the function the venue
publishes with) and the instrument's own parameters from `instruments`: a source whose latest
received update is older than `index_stale_s` seconds is stale and dropped; a live source more
than `index_outlier_pct` from the median of the live sources is an outlier; the index is the
weighted mean of the live, non-outlier sources (weights from `index_components.weight`,
renormalized), the median when more than one source is an outlier, and it holds its previous
value when fewer than `index_min_sources` sources are live. At second t a source's price is its
latest update with received_ts <= t. Without the previous day's components a source that has not
updated yet in the first `index_stale_s` seconds of the day is "unknown" (neither ok nor stale),
and the recomputed index of those seconds is left empty (not verifiable) rather than guessed.
gap_bps = (published - recomputed) / recomputed x 10,000: zero wherever the venue followed its
rule.

Per source: the seconds it was stale or excluded as an outlier, and each excluded window (a run
of consecutive seconds with the same status: first and last second, length). These windows are
what the report shows as "source X was excluded from hh:mm to hh:mm".

Single-source sensitivity. For every source j the index is recomputed (a) with j removed from the
basket and (b) with j corrupted: at every second where j is live its price is replaced by the
value x that moves the index most (separately the largest rise and the largest fall), searched
over every positive price: values inside the outlier band, values the rule excludes as an outlier,
and values that leave two or more outliers and so switch the rule to its median fallback. The
search is exact up to a relative 1e-9. With the other live prices fixed, the basket median M(x) is
continuous and nondecreasing in x, so each source's ratio to it (x / M(x) for j, p_i / M(x) for
every other live source i) is monotone in x and the values of x that leave a source inside the
band form one interval. Between consecutive ends of these intervals the rule keeps the same
sources, and the index (M(x) under the median fallback, else the weighted mean of the kept
sources) is continuous and nondecreasing in x: its largest rise and fall are approached at those
ends, or reached beyond the outermost one, where (with three or more live sources) M(x) and the
index are constant. So the rule is evaluated at every end x0, computed per second from the sorted
prices of the other live sources, at x0 x (1 - 1e-9) and x0 x (1 + 1e-9), and at 10 x beyond the
outermost end; a worst move approached only at an open boundary is reported at the boundary
-/+ 1e-9. The move is (scenario index - recomputed index) / recomputed index x 10,000 bps; the
report shows the largest |move| over the day, its source and second, the corrupt value that
causes it (price and deviation from the uncorrupted median), and how many open isolated
positions of `positions_eod` that move (in either direction: longs for a fall, shorts for a rise)
applied to the end-of-day mark would push across their liquidation price
(`margin.isolated_liquidation_price`: where equity equals maintenance margin).

Broken-source counterfactual. For every window in which a source was excluded as an outlier, the
index the venue would have published had the rule kept that source (weighted mean of the sources
the rule used plus that source), its largest move against the recomputed index and when, next to
the published index's actual move attributable to the source ((published - index without the
source) / index without the source, which is ~0 when the rule protected margin state), and the
positions the counterfactual move would have pushed across their liquidation price at the
end-of-day mark (signed: a rise crosses shorts, a fall crosses longs).

Mark. basis = (mark - index) / index x 10,000 bps per second: mean, mean and p99 of |basis|, max
|basis|. Mark lag behind the traded price by volatility bucket: the last traded price per second
(the last trade at or before the second; mark_index.last_price before the day's first trade) and
the mark; the bucket of a second is the tercile (per date x symbol) of the realized volatility of
the mark's 1-s log returns over the trailing 5 minutes (annualized). Per bucket: lag_s = the shift
k (0 ... 30 s) that minimizes the mean squared log distance between the traded price at t and the
mark at t + k (how many seconds later the mark reproduces the trades; 0 = no lag), and
mean_abs_gap_bps = mean |last - mark| / mark x 10,000, the price distance the mark leaves open to
the trades, which widens when a lagging mark meets a fast market.

Known limits: Second resolution: several component updates inside one second count as the last.
Without the previous day's components the first index_stale_s seconds of the day cannot be
checked (left empty, not guessed). Single-source sensitivity and the broken-source
counterfactual count open isolated positions of positions_eod at the end-of-day mark: cross
positions and positions opened and closed inside the day are not counted. The rule implemented
drops stale and outlying sources with a median fallback (Binance's form); a venue that caps
outliers at a band (OKX, Deribit) needs its rule in `venue_risk.index_rule`. Mark lag is
searched over 0-30 s only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from venue_risk import index_rule, margin
from venue_risk.errors import InputError
from venue_risk.schema import TS
from venue_risk.metrics.frames import conform as _conform, require_columns as _require

METHOD = __doc__

#: Status labels per source and second (index_rule codes plus "unknown": no data yet today).
STATUS_OK, STATUS_STALE, STATUS_OUTLIER, STATUS_UNKNOWN = "ok", "stale", "outlier", "unknown"
_UNKNOWN_CODE = 3
_STATUS_LABELS = {**index_rule.STATUS_NAMES, _UNKNOWN_CODE: STATUS_UNKNOWN}
#: The rule's method per second, by code.
_METHODS = ("hold", "median_fallback", "weighted_mean")

#: Gaps above this (bps) count as a disagreement between published and recomputed index.
GAP_TOLERANCE_BPS = 0.1
#: Corrupt-value search: relative step either side of each end of a source's in-band interval
#: (a worst move approached at an open boundary is reported at boundary -/+ this) ...
BREAKPOINT_EPS = 1e-9
#: ... and how far beyond the outermost end the search goes (x 10 above, / 10 below).
FAR_FACTOR = 10.0
#: Corrupt values whose moves agree within this relative tolerance are ties (the one nearest the
#: uncorrupted median is reported).
TIE_RTOL = 1e-12
#: Mark-lag settings: trailing realized-vol window and the largest lag tried (seconds).
VOL_WINDOW_S = 300
MAX_LAG_S = 30
VOL_BUCKETS = ("low", "mid", "high")
SECONDS_PER_YEAR = 365.0 * 86_400.0

F64, I64, STR = pl.Float64, pl.Int64, pl.String

INDEX_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "ts": TS, "symbol": STR, "index_published": F64, "index_recomputed": F64,
    "gap_bps": F64, "method": STR, "n_live": I64, "n_outlier": I64, "verifiable": pl.Boolean,
}
STATUS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "ts": TS, "symbol": STR, "source": STR, "price": F64, "age_s": F64,
    "weight": F64, "deviation_pct": F64, "status": STR,
}
EXCLUSIONS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "source": STR, "seconds": I64, "seconds_ok": I64,
    "seconds_stale": I64, "seconds_outlier": I64, "seconds_excluded": I64, "seconds_unknown": I64,
    "windows": I64, "longest_window_s": I64,
}
WINDOWS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "source": STR, "status": STR, "start": TS, "end": TS,
    "seconds": I64,
}
GAP_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "seconds": I64, "seconds_verifiable": I64,
    "max_abs_gap_bps": F64, "p99_abs_gap_bps": F64, "seconds_gap_over_tol": I64,
    "ts_max_gap": TS, "seconds_hold": I64, "seconds_median_fallback": I64,
}
SENSITIVITY_DETAIL_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "source": STR, "scenario": STR, "max_move_bps": F64,
    "ts_max_move": TS, "corrupt_price": F64, "corrupt_pct": F64,
}
SENSITIVITY_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR,
    "drop_move_bps": F64, "drop_source": STR, "drop_ts": TS,
    "corrupt_pct": F64, "corrupt_move_bps": F64, "corrupt_source": STR, "corrupt_ts": TS,
    "worst_move_bps": F64, "worst_scenario": STR, "worst_source": STR,
    "mark_eod": F64, "isolated_positions": I64, "positions_crossed": I64, "notional_crossed": F64,
    "corrupt_price": F64, "corrupt_method": STR,
}
COUNTERFACTUAL_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "source": STR, "start": TS, "end": TS, "seconds": I64,
    "max_deviation_pct": F64, "cf_move_bps": F64, "cf_ts": TS, "published_move_bps": F64,
    "mark_eod": F64, "positions_crossed": I64, "notional_crossed": F64,
}
BASIS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "seconds": I64, "basis_mean_bps": F64,
    "basis_abs_mean_bps": F64, "basis_abs_p99_bps": F64, "basis_abs_max_bps": F64,
}
LAG_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": STR, "vol_bucket": STR, "seconds": I64, "vol_lo": F64,
    "vol_hi": F64, "lag_s": F64, "mean_abs_gap_bps": F64, "aligned_rms_gap_bps": F64,
}



def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)



# --------------------------------------------------------------------------------------------
# the per-symbol basket: source matrices on the 1-s grid of mark_index


@dataclass
class _Basket:
    symbol: str
    date: dt.date
    ts_us: np.ndarray  # (T,) epoch microseconds of the grid
    sources: list[str]
    weights: np.ndarray  # (S,)
    price: np.ndarray  # (T, S)
    age: np.ndarray  # (T, S)
    unknown: np.ndarray  # (T, S) no update yet today and no previous-day data
    outlier_pct: float
    stale_s: float
    min_sources: int
    published: np.ndarray  # (T,)
    mark: np.ndarray  # (T,)
    prev_index: float = np.nan

    def rule(self, price=None, age=None, weights=None):
        """index_rule.compute_index with this instrument's parameters."""
        return index_rule.compute_index(
            self.price if price is None else price, self.age if age is None else age,
            self.weights if weights is None else weights, self.outlier_pct, self.stale_s,
            self.min_sources, self.prev_index)


def _day_of(mark_index: pl.DataFrame) -> dt.date:
    days = mark_index.select(pl.col("ts").dt.date().unique())["ts"]
    if days.len() != 1:
        raise InputError("mark_index", f"holds {days.len()} dates ({days.sort().to_list()[:3]})",
                         column="ts", expected="the seconds of exactly one UTC date")
    return days[0]


def _baskets(index_components: pl.DataFrame, instruments: pl.DataFrame, mark_index: pl.DataFrame,
             prev_index_components: pl.DataFrame | None = None,
             prev_index: dict[str, float] | None = None) -> list[_Basket]:
    _require(index_components, "index_components", ("received_ts", "symbol", "source", "price", "weight"))
    _require(instruments, "instruments", ("symbol", "index_sources", "index_outlier_pct",
                                          "index_stale_s", "index_min_sources"))
    _require(mark_index, "mark_index", ("ts", "symbol", "mark_price", "index_price"))
    if mark_index.height == 0:
        return []
    day = _day_of(mark_index)
    us0 = int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    for c in ("received_ts", "source", "price"):
        n = index_components[c].null_count()
        if n:
            raise InputError("index_components", f"{n} row(s) with an empty {c}", column=c,
                             expected="a value on every source update")
    inst = {r["symbol"]: r for r in instruments.iter_rows(named=True)}
    comps = index_components.select(
        "symbol", "source", ((pl.col("received_ts").dt.epoch("us") - us0) / 1e6).alias("_rec_s"), "price", "weight")
    # per source, its updates by receipt time (ties keep the stored order)
    by_source = {k: g.sort("_rec_s", maintain_order=True)
                 for k, g in comps.partition_by("symbol", "source", as_dict=True, maintain_order=True).items()}
    prev = None
    if prev_index_components is not None and prev_index_components.height:
        last = (prev_index_components.with_columns(
            ((pl.col("received_ts").dt.epoch("us") - us0) / 1e6).alias("_rec_s"))
            .filter(pl.col("_rec_s") < 0).sort("_rec_s")
            .group_by("symbol", "source").agg(pl.col("_rec_s", "price", "weight").last()))
        prev = {(r["symbol"], r["source"]): r for r in last.iter_rows(named=True)}
    no_rows = comps.clear()
    out = []
    by_symbol = mark_index.select("symbol", "ts", "index_price", "mark_price").partition_by(
        "symbol", as_dict=True, maintain_order=False)
    for (sym,) in sorted(by_symbol, key=lambda k: (k[0] is not None, k[0] or "")):
        g = by_symbol[(sym,)].sort("ts", maintain_order=True)
        if sym not in inst:
            raise InputError("instruments", f"no row for symbol {sym!r} of mark_index", column="symbol",
                             expected="one row per traded symbol")
        r = inst[sym]
        for c in ("index_sources", "index_outlier_pct", "index_stale_s", "index_min_sources"):
            if r[c] is None:
                raise InputError("instruments", f"symbol {sym!r} has no {c}", column=c,
                                 expected="the instrument's index rule parameters")
        sources = list(r["index_sources"])
        if not sources:
            raise InputError("instruments", f"symbol {sym!r} lists no index sources",
                             column="index_sources", expected="at least one source")
        ts_us = g["ts"].dt.epoch("us").to_numpy()
        grid = (ts_us - us0) / 1e6
        rec_l, px_l, w = [], [], np.full(len(sources), np.nan)
        prev_rec, prev_px = np.full(len(sources), np.nan), np.full(len(sources), np.nan)
        for j, s in enumerate(sources):
            cs = by_source.get((sym, s), no_rows)
            rec_l.append(cs["_rec_s"].to_numpy())
            px_l.append(cs["price"].to_numpy())
            if cs.height:
                w[j] = cs["weight"][-1]
            p = prev.get((sym, s)) if prev is not None else None
            if p is not None:
                prev_rec[j], prev_px[j] = p["_rec_s"], p["price"]
                if np.isnan(w[j]):
                    w[j] = p["weight"]
        if np.any(w[np.isfinite(w)] < 0):
            raise InputError("index_components", f"symbol {sym!r} has a negative source weight",
                             column="weight", expected="weights >= 0")
        price, age = index_rule.source_matrix(grid, rec_l, px_l, prev_rec if prev is not None else None,
                                              prev_px if prev is not None else None)
        stale_s = float(r["index_stale_s"])
        # No data yet today and no previous-day data: within the first stale_s seconds the source
        # may well be live (its last update is in yesterday's file), so its status is unknown.
        unknown = ~np.isfinite(price) & (grid[:, None] <= stale_s)
        out.append(_Basket(
            sym, day, ts_us, sources, np.nan_to_num(w, nan=0.0), price, age, unknown,
            float(r["index_outlier_pct"]), stale_s, int(r["index_min_sources"]),
            g["index_price"].to_numpy().astype(float), g["mark_price"].to_numpy().astype(float),
            (prev_index or {}).get(sym, np.nan)))
    return out


def _recompute(b: _Basket) -> tuple[np.ndarray, np.ndarray, dict]:
    """Recomputed index, status codes (with unknown) and per-second diagnostics of one basket
    (method_code indexes _METHODS)."""
    idx, status = b.rule()
    status = status.copy()
    status[b.unknown] = _UNKNOWN_CODE
    live = status != index_rule.STALE
    live &= status != _UNKNOWN_CODE
    n_live = live.sum(axis=1)
    n_out = (status == index_rule.OUTLIER).sum(axis=1)
    verifiable = ~b.unknown.any(axis=1)
    idx = np.where(verifiable, idx, np.nan)
    method = np.where(n_live < b.min_sources, 0, np.where(n_out > 1, 1, 2))
    med = index_rule.live_median(np.where(live, b.price, np.nan))
    return idx, status, {"n_live": n_live, "n_out": n_out, "verifiable": verifiable,
                         "method_code": method, "median": med}


def recompute_index_and_status(index_components: pl.DataFrame, instruments: pl.DataFrame,
                               mark_index: pl.DataFrame, *,
                               prev_index_components: pl.DataFrame | None = None,
                               prev_index: dict[str, float] | None = None
                               ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(recompute_index frame, source_status frame) in one pass; see those two functions.

    prev_index_components (optional): the previous day's index_components; each source's last
    update before midnight seeds the first seconds, as the venue's own rule sees them.
    prev_index (optional): symbol -> the previous day's last published index (held value if the
    day opens with too few sources)."""
    idx_frames, st_frames, unique_keys = [], [], True
    methods = pl.Series(_METHODS)
    labels = pl.Series([_STATUS_LABELS[k] for k in range(len(_STATUS_LABELS))])
    for b in _baskets(index_components, instruments, mark_index, prev_index_components, prev_index):
        idx, status, d = _recompute(b)
        unique_keys &= bool(np.all(np.diff(b.ts_us) > 0)) and len(set(b.sources)) == len(b.sources)
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = (b.published - idx) / idx * 1e4
            dev = b.price / d["median"][:, None] - 1.0
        idx_frames.append(pl.DataFrame({
            "ts": b.ts_us, "index_published": b.published,
            "index_recomputed": pl.Series(idx, nan_to_null=True), "gap_bps": pl.Series(gap, nan_to_null=True),
            "method": methods.gather(d["method_code"]), "n_live": d["n_live"], "n_outlier": d["n_out"],
            "verifiable": d["verifiable"]}).with_columns(pl.lit(b.date).alias("date"), pl.lit(b.symbol).alias("symbol")))
        # rows by source name, then second: the frame's sort order
        for i in sorted(range(len(b.sources)), key=lambda i: b.sources[i]):
            st_frames.append(pl.DataFrame({
                "ts": b.ts_us, "price": pl.Series(b.price[:, i], nan_to_null=True),
                "age_s": pl.Series(b.age[:, i]),
                "deviation_pct": pl.Series(dev[:, i], nan_to_null=True),
                "status": labels.gather(status[:, i]),
            }).with_columns(pl.lit(b.date).alias("date"), pl.lit(b.symbol).alias("symbol"),
                            pl.lit(b.sources[i]).alias("source"), pl.lit(float(b.weights[i])).alias("weight"),
                            pl.when(pl.col("age_s").is_infinite()).then(None).otherwise(pl.col("age_s")).alias("age_s")))
    if not idx_frames:
        return _empty(INDEX_SCHEMA).sort("date", "symbol", "ts"), _empty(STATUS_SCHEMA).sort("date", "symbol", "source", "ts")
    ts = pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    index_frame = _conform(pl.concat(idx_frames).with_columns(ts), INDEX_SCHEMA)
    status_frame = _conform(pl.concat(st_frames).with_columns(ts), STATUS_SCHEMA)
    # the baskets come by symbol (one each) with their seconds in order, the sources by name:
    # already sorted unless a second or a source repeats
    if not unique_keys:
        index_frame = index_frame.sort("date", "symbol", "ts")
        status_frame = status_frame.sort("date", "symbol", "source", "ts")
    return index_frame, status_frame


def recompute_index(index_components: pl.DataFrame, instruments: pl.DataFrame,
                    mark_index: pl.DataFrame, **prev) -> pl.DataFrame:
    """Published and recomputed index per second x symbol.

    index_recomputed = index_rule.compute_index over the per-second matrix of each source's latest
    received price (received_ts <= t) with the instrument's index_stale_s, index_outlier_pct,
    index_min_sources and the sources' weights from index_components;
    gap_bps = (index_published - index_recomputed) / index_recomputed x 10,000;
    method = hold (n_live < index_min_sources), median_fallback (n_outlier > 1) or weighted_mean;
    n_live = sources not stale, n_outlier = live sources beyond the band;
    verifiable = False (recomputed and gap empty) in the first index_stale_s seconds while a
    source has no update yet today and no previous-day data was given.
    Columns: date, ts, symbol, index_published, index_recomputed, gap_bps, method, n_live,
    n_outlier, verifiable; sorted by date, symbol, ts."""
    return recompute_index_and_status(index_components, instruments, mark_index, **prev)[0]


def source_status(index_components: pl.DataFrame, instruments: pl.DataFrame,
                  mark_index: pl.DataFrame, **prev) -> pl.DataFrame:
    """Status of every index source per second x symbol under the venue's rule.

    status = stale (age_s > index_stale_s, or no price), outlier (live and
    |price / median of live sources - 1| > index_outlier_pct), ok, or unknown (no update yet today
    within the first index_stale_s seconds and no previous-day data). price = latest received
    price; age_s = t - its received_ts (seconds); deviation_pct = price / median - 1.
    Columns: date, ts, symbol, source, price, age_s, weight, deviation_pct, status; sorted by
    date, symbol, source, ts."""
    return recompute_index_and_status(index_components, instruments, mark_index, **prev)[1]


# --------------------------------------------------------------------------------------------
# exclusions


def _runs(status: pl.DataFrame, statuses: tuple[str, ...] | None = None) -> pl.DataFrame:
    """Runs of consecutive seconds with the same status per date x symbol x source (only the
    runs of `statuses` if given). A run starts where the status, the date, symbol or source
    changes or the second does not follow the previous one; run ids are global (one scan of the
    frame sorted by date, symbol, source, ts)."""
    _require(status, "source_status", ("date", "ts", "symbol", "source", "status"))
    keys = ["date", "symbol", "source"]
    s = status.select(*keys, "ts", "status").sort(*keys, "ts")
    changed = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in keys]
                                + [(pl.col("status") != pl.col("status").shift(1)).fill_null(True)])
    gap = ((pl.col("ts") - pl.col("ts").shift(1)) != pl.duration(seconds=1)).fill_null(True)
    runs = s.with_columns((changed | gap).cum_sum().alias("_run"))
    if statuses is not None:
        runs = runs.filter(pl.col("status").is_in(list(statuses)))
    return runs.group_by("_run").agg(*[pl.col(c).first() for c in keys], pl.col("status").first(),
                                     pl.col("ts").min().alias("start"), pl.col("ts").max().alias("end"),
                                     pl.len().alias("seconds"))


def exclusion_windows(status: pl.DataFrame) -> pl.DataFrame:
    """Each run of consecutive seconds in which a source was excluded (stale or outlier).

    start / end = the first and last second of the run (inclusive); seconds = its length.
    Columns: date, symbol, source, status, start, end, seconds; sorted by date, symbol, source,
    start. Detection is scored on these windows."""
    r = _runs(status, (STATUS_STALE, STATUS_OUTLIER))
    return _conform(r, WINDOWS_SCHEMA).sort("date", "symbol", "source", "start")


def source_exclusions(status: pl.DataFrame) -> pl.DataFrame:
    """Seconds each source was stale or excluded, per date x symbol x source.

    seconds = seconds on the grid; seconds_ok / seconds_stale / seconds_outlier / seconds_unknown
    = seconds with that status; seconds_excluded = seconds_stale + seconds_outlier;
    windows = number of excluded runs (see exclusion_windows); longest_window_s = the longest.
    Columns: date, symbol, source, seconds, seconds_ok, seconds_stale, seconds_outlier,
    seconds_excluded, seconds_unknown, windows, longest_window_s."""
    _require(status, "source_status", ("date", "ts", "symbol", "source", "status"))
    st = pl.col("status")
    counts = status.group_by("date", "symbol", "source").agg(
        pl.len().alias("seconds"), (st == STATUS_OK).sum().alias("seconds_ok"),
        (st == STATUS_STALE).sum().alias("seconds_stale"),
        (st == STATUS_OUTLIER).sum().alias("seconds_outlier"),
        (st == STATUS_UNKNOWN).sum().alias("seconds_unknown"))
    win = exclusion_windows(status).group_by("date", "symbol", "source").agg(
        pl.len().alias("windows"), pl.col("seconds").max().alias("longest_window_s"))
    out = (counts.join(win, on=["date", "symbol", "source"], how="left")
           .with_columns((pl.col("seconds_stale") + pl.col("seconds_outlier")).alias("seconds_excluded"),
                         pl.col("windows").fill_null(0), pl.col("longest_window_s").fill_null(0)))
    return _conform(out, EXCLUSIONS_SCHEMA).sort("date", "symbol", "source")


def index_gap_summary(recomputed: pl.DataFrame) -> pl.DataFrame:
    """Published against recomputed index per date x symbol, over the verifiable seconds.

    max_abs_gap_bps = max |gap_bps|; p99_abs_gap_bps = 99th percentile of |gap_bps| (linear
    interpolation); seconds_gap_over_tol = seconds with |gap_bps| > 0.1; ts_max_gap = the second
    of the largest |gap|; seconds_hold / seconds_median_fallback = seconds the rule held the index
    or fell back to the median. Columns: date, symbol, seconds, seconds_verifiable,
    max_abs_gap_bps, p99_abs_gap_bps, seconds_gap_over_tol, ts_max_gap, seconds_hold,
    seconds_median_fallback."""
    _require(recomputed, "recompute_index", ("date", "ts", "symbol", "gap_bps", "method", "verifiable"))
    g = pl.col("gap_bps").abs()
    v = pl.col("verifiable") & pl.col("gap_bps").is_not_null()
    out = recomputed.group_by("date", "symbol").agg(
        pl.len().alias("seconds"), v.sum().alias("seconds_verifiable"),
        g.filter(v).max().alias("max_abs_gap_bps"),
        g.filter(v).quantile(0.99, "linear").alias("p99_abs_gap_bps"),
        (g.filter(v) > GAP_TOLERANCE_BPS).sum().alias("seconds_gap_over_tol"),
        pl.col("ts").filter(v).sort_by(g.filter(v), descending=True).first().alias("ts_max_gap"),
        (pl.col("method") == "hold").sum().alias("seconds_hold"),
        (pl.col("method") == "median_fallback").sum().alias("seconds_median_fallback"))
    return _conform(out, GAP_SUMMARY_SCHEMA).sort("date", "symbol")


# --------------------------------------------------------------------------------------------
# positions pushed across their liquidation price


def _isolated_book(positions_eod: pl.DataFrame, risk_tiers: pl.DataFrame, symbol: str) -> tuple[np.ndarray, np.ndarray]:
    """(signed size, liquidation price) of the symbol's open isolated positions."""
    _require(positions_eod, "positions_eod", ("symbol", "size", "entry_price", "margin_mode", "isolated_margin"))
    _require(risk_tiers, "risk_tiers", ("symbol", "tier", "notional_floor", "notional_cap", "max_leverage",
                                        "maintenance_margin_rate", "maintenance_amount"))
    pos = positions_eod.filter((pl.col("symbol") == symbol) & (pl.col("margin_mode") == "isolated")
                               & (pl.col("size") != 0))
    if pos.height == 0:
        return np.zeros(0), np.zeros(0)
    rows = risk_tiers.filter(pl.col("symbol") == symbol).to_dicts()
    if not rows:
        raise InputError("risk_tiers", f"no tiers for symbol {symbol!r} with isolated positions",
                         column="symbol", expected="the symbol's maintenance-margin tiers")
    tiers = margin.tiers_from_rows(rows)
    size = pos["size"].to_numpy().astype(float)
    lp = np.array([margin.isolated_liquidation_price(tiers, q, e, m)[0] for q, e, m in
                   zip(size, pos["entry_price"].to_numpy(), pos["isolated_margin"].fill_null(0.0).to_numpy())])
    return size, lp


def _crossed(size: np.ndarray, lp: np.ndarray, mark: float, move_bps: float, both: bool) -> tuple[int, float]:
    """Positions not yet at their liquidation price at `mark` that a move of move_bps crosses.

    both=True: a move of |move_bps| either way (longs for a fall, shorts for a rise)."""
    if not len(size) or not np.isfinite(mark) or not np.isfinite(move_bps):
        return 0, 0.0
    m = abs(move_bps) / 1e4
    down = both or move_bps < 0
    up = both or move_bps > 0
    long_, short = size > 0, size < 0
    hit = np.zeros(len(size), dtype=bool)
    if down:
        hit |= long_ & (lp < mark) & (lp >= mark * (1 - m))
    if up:
        hit |= short & (lp > mark) & (lp <= mark * (1 + m))
    return int(hit.sum()), float((np.abs(size[hit]) * mark).sum())


# --------------------------------------------------------------------------------------------
# single-source sensitivity


def _argmax_abs(x: np.ndarray) -> int | None:
    a = np.where(np.isfinite(x), np.abs(x), -1.0)
    return int(np.argmax(a)) if len(a) and a.max() >= 0 else None


def _others_order(price: np.ndarray, live: np.ndarray, j: int) -> tuple[np.ndarray, ...]:
    """Per second, how the live basket's median M(x) depends on source j's price x.

    Returns (even, lo, mid, hi) with a = the other live prices sorted (1-based, m of them, n = m + 1
    live with j; -inf / +inf where a rank does not exist):
    n odd: M(x) = clip(x, lo, hi), lo = a_(m/2), hi = a_(m/2 + 1) (mid = hi);
    n even: M(x) = (clip(x, lo, mid) + clip(x, mid, hi)) / 2, mid = a_((m+1)/2), lo and hi its
    neighbours a_((m-1)/2) and a_((m+3)/2)."""
    t_n = price.shape[0]
    others = np.delete(np.where(live, price, np.nan), j, axis=1)
    m = np.isfinite(others).sum(axis=1)
    srt = np.sort(np.where(np.isfinite(others), others, np.inf), axis=1)
    pad = np.concatenate([np.full((t_n, 1), -np.inf), srt, np.full((t_n, 1), np.inf)], axis=1)

    def order(k: np.ndarray) -> np.ndarray:  # 0-based rank k of the sorted others, k = -1 ... m
        return np.take_along_axis(pad, (k + 1)[:, None], axis=1)[:, 0]

    even = (m % 2) == 1
    r = np.where(even, (m - 1) // 2, m // 2)
    lo, mid = order(r - 1), order(r)
    hi = np.where(even, order(np.minimum(r + 1, pad.shape[1] - 2)), mid)
    return even, lo, mid, hi


def _corrupt_candidates(b: _Basket, j: int, live: np.ndarray, median0: np.ndarray,
                        corrupt_pct: float | None,
                        order: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """(K, T) corrupt values of source j to evaluate: every breakpoint (an end of a live source's
    in-band interval in x, where the set of sources the rule keeps changes) x (1 -/+
    BREAKPOINT_EPS), plus FAR_FACTOR x beyond the highest and below the lowest of the breakpoints
    and the live prices (or, with corrupt_pct, everything clipped to median0 x (1 -/+
    corrupt_pct) plus those two bounds). Values that are not positive and finite are replaced by
    j's own price (no corruption: move 0). The formulas: venue_risk.corrupt_search.
    corrupt_candidates (compiled). order: _others_order(b.price, live, j) if already known."""
    from venue_risk.corrupt_search import corrupt_candidates

    even, lo, mid, hi = order if order is not None else _others_order(b.price, live, j)
    return corrupt_candidates(
        np.ascontiguousarray(b.price, dtype=np.float64), np.ascontiguousarray(live), j,
        np.ascontiguousarray(even), np.ascontiguousarray(lo, dtype=np.float64),
        np.ascontiguousarray(mid, dtype=np.float64), np.ascontiguousarray(hi, dtype=np.float64),
        np.ascontiguousarray(median0, dtype=np.float64), float(b.outlier_pct),
        np.nan if corrupt_pct is None else float(corrupt_pct), BREAKPOINT_EPS, FAR_FACTOR)


def _corrupt_search(b: _Basket, j: int, base: np.ndarray, live: np.ndarray, median0: np.ndarray,
                    corrupt_pct: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(up_move, up_x, down_move, down_x) per second: the largest rise and fall of the index (bps)
    source j can cause with one corrupt value, and that value (NaN where j is not live).

    Every candidate (`_corrupt_candidates`) is put through the venue's rule with j's price set to
    it: the basket median M(x) in closed form from the other live prices sorted once
    (`_others_order`; median0 where j is not live), then outliers, weighted mean or median
    fallback and hold, and per second the largest rise and fall (ties within TIE_RTOL: the value
    nearest the uncorrupted median), in one compiled pass over seconds x candidates
    (venue_risk.corrupt_search.corrupt_moves, bit-identical to index_rule on the full basket)."""
    from venue_risk.corrupt_search import corrupt_moves

    order = _others_order(b.price, live, j)
    x = _corrupt_candidates(b, j, live, median0, corrupt_pct, order)
    even, lo, mid, hi = (np.ascontiguousarray(a) for a in order)
    up, up_x, down, down_x = corrupt_moves(
        np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(b.price, dtype=np.float64),
        np.ascontiguousarray(live), j, even, lo.astype(np.float64), mid.astype(np.float64),
        hi.astype(np.float64), np.ascontiguousarray(median0, dtype=np.float64),
        np.ascontiguousarray(base, dtype=np.float64), np.ascontiguousarray(b.weights, dtype=np.float64),
        float(b.outlier_pct), int(b.min_sources), float(b.prev_index), TIE_RTOL)
    off = ~live[:, j]
    return up, np.where(off, np.nan, up_x), down, np.where(off, np.nan, down_x)


def _scenario_moves(b: _Basket, corrupt_pct: float | None):
    """Per source and scenario (drop, corrupt_up, corrupt_down): (source, scenario, move series in
    bps, corrupt value series or None, deviation of it from the uncorrupted median or None), and
    the recomputed index."""
    base, _ = b.rule()
    live = (b.age <= b.stale_s) & np.isfinite(b.price)
    median0 = index_rule.live_median(np.where(live, b.price, np.nan))
    out = []
    s = len(b.sources)
    for j, src in enumerate(b.sources):
        keep = [k for k in range(s) if k != j]
        idx_drop, _ = b.rule(b.price[:, keep], b.age[:, keep], b.weights[keep])
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((src, "drop", (idx_drop - base) / base * 1e4, None, None))
        up, up_x, down, down_x = _corrupt_search(b, j, base, live, median0, corrupt_pct)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((src, "corrupt_up", up, up_x, up_x / median0 - 1.0))
            out.append((src, "corrupt_down", down, down_x, down_x / median0 - 1.0))
    return base, out


def _method_at(b: _Basket, t: int, j: int, x: float) -> str:
    """The rule's method at second t with source j's price set to x."""
    p = b.price[t].copy()
    p[j] = x
    _, st = b.rule(p[None, :], b.age[t][None, :])
    n_live = int((st != index_rule.STALE).sum())
    if n_live < b.min_sources:
        return "hold"
    return "median_fallback" if int((st == index_rule.OUTLIER).sum()) > 1 else "weighted_mean"


def single_source_moves(index_components: pl.DataFrame, instruments: pl.DataFrame,
                        mark_index: pl.DataFrame, corrupt_pct: float | None = None, **prev) -> pl.DataFrame:
    """The largest index move per date x symbol x source x scenario (see single_source_sensitivity).

    scenario: drop (source removed); corrupt_up / corrupt_down: the source, wherever it is live,
    set to the corrupt value that raises / lowers the index most at that second (searched over all
    prices, see the module docstring). max_move_bps = the signed move with the largest |move| over
    the verifiable seconds (move = (scenario index - recomputed index) / recomputed index x
    10,000); ts_max_move = its second; corrupt_price = the corrupt value there and corrupt_pct =
    corrupt_price / median - 1, median = the uncorrupted median of the live sources at that second
    (both null for drop). corrupt_pct (parameter, optional): search only values within this
    fraction of that median. Columns: date, symbol, source, scenario, max_move_bps, ts_max_move,
    corrupt_price, corrupt_pct."""
    rows = []
    for b in _baskets(index_components, instruments, mark_index, prev.get("prev_index_components"),
                      prev.get("prev_index")):
        _, moves = _scenario_moves(b, corrupt_pct)
        ok = ~b.unknown.any(axis=1)
        for src, sc, mv, x, dev in moves:
            mv = np.where(ok, mv, np.nan)
            k = _argmax_abs(mv)
            rows.append({"date": b.date, "symbol": b.symbol, "source": src, "scenario": sc,
                         "max_move_bps": None if k is None else float(mv[k]),
                         "ts_max_move": None if k is None else int(b.ts_us[k]),
                         "corrupt_price": None if k is None or x is None else float(x[k]),
                         "corrupt_pct": None if k is None or dev is None else float(dev[k])})
    if not rows:
        return _empty(SENSITIVITY_DETAIL_SCHEMA)
    f = pl.DataFrame(rows, schema_overrides={"ts_max_move": pl.Int64, "corrupt_price": F64,
                                             "corrupt_pct": F64}).with_columns(
        pl.col("ts_max_move").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.col("corrupt_price", "corrupt_pct").fill_nan(None))
    return _conform(f, SENSITIVITY_DETAIL_SCHEMA).sort("date", "symbol", "source", "scenario")


def single_source_sensitivity(index_components: pl.DataFrame, instruments: pl.DataFrame,
                              mark_index: pl.DataFrame, positions_eod: pl.DataFrame,
                              risk_tiers: pl.DataFrame, corrupt_pct: float | None = None,
                              **prev) -> pl.DataFrame:
    """The largest index move one source could cause, per date x symbol, and its margin impact.

    drop: the index recomputed without source j (weights of the rest renormalized, the same
    min_sources). corrupt: source j, wherever it is live, set at each second to the price x that
    moves the index most, found by evaluating the venue's rule at every end of every live
    source's in-band interval in x, at x0 x (1 -/+ 1e-9), and at 10 x beyond the outermost end
    (the ends: x / M(x) = 1 +/- index_outlier_pct for j and M(x) = p_i / (1 -/+
    index_outlier_pct) for each other live source i, M(x) the live basket's median with j at x;
    between consecutive ends the kept sources are fixed and the index is nondecreasing in x, so
    the worst move is at one of them; see the module docstring). This covers values inside the
    band (weighted mean with j), values the rule excludes (weighted mean without j) and values
    that leave two or more outliers (median fallback). With fewer than three live sources
    (possible only when index_min_sources < 3) the index follows the corrupted source without
    bound and the move reported is that of a tenfold corruption. corrupt_pct (parameter,
    optional): search only |x / median - 1| <= corrupt_pct, median the uncorrupted median.
    move_bps(t) = (scenario index - recomputed index) / recomputed index x 10,000.
    drop_move_bps / corrupt_move_bps = the signed move of largest |move| over all sources and
    seconds, with its source and second; corrupt_price = the corrupt value x causing it (of the
    values causing the same move, the one nearest the median), corrupt_pct = corrupt_price /
    median - 1 with median the uncorrupted median of the live sources at corrupt_ts, and
    corrupt_method = the rule's method there (weighted_mean or median_fallback); worst_* = the
    larger of drop and corrupt.
    positions_crossed = open isolated positions (positions_eod, margin_mode isolated) whose
    liquidation price (margin.isolated_liquidation_price with the symbol's risk_tiers) lies
    between the end-of-day mark (mark_eod, the day's last mark_price) and mark_eod x
    (1 -/+ |worst_move_bps| / 10,000): longs below, shorts above; notional_crossed = sum of
    |size| x mark_eod over them. Columns: date, symbol, drop_move_bps, drop_source, drop_ts,
    corrupt_pct, corrupt_move_bps, corrupt_source, corrupt_ts, worst_move_bps, worst_scenario,
    worst_source, mark_eod, isolated_positions, positions_crossed, notional_crossed,
    corrupt_price, corrupt_method."""
    rows = []
    for b in _baskets(index_components, instruments, mark_index, prev.get("prev_index_components"),
                      prev.get("prev_index")):
        _, moves = _scenario_moves(b, corrupt_pct)
        ok = ~b.unknown.any(axis=1)
        best = {}
        for src, sc, mv, x, dev in moves:
            kind = "drop" if sc == "drop" else "corrupt"
            mv = np.where(ok, mv, np.nan)
            k = _argmax_abs(mv)
            if k is None:
                continue
            if kind not in best or abs(mv[k]) > abs(best[kind][0]):
                best[kind] = (float(mv[k]), src, int(b.ts_us[k]), k,
                              None if x is None else float(x[k]), None if dev is None else float(dev[k]))
        d = best.get("drop", (None,) * 6)
        c = best.get("corrupt", (None,) * 6)
        method = None
        if c[0] is not None and c[4] is not None and np.isfinite(c[4]):
            method = _method_at(b, c[3], b.sources.index(c[1]), c[4])
        cand = [(abs(v[0]), k, v) for k, v in best.items()]
        worst = max(cand, key=lambda x: x[0]) if cand else None
        mark_eod = float(b.mark[-1]) if len(b.mark) else np.nan
        size, lp = _isolated_book(positions_eod, risk_tiers, b.symbol)
        n, notional = _crossed(size, lp, mark_eod, worst[2][0], both=True) if worst else (0, 0.0)
        rows.append({"date": b.date, "symbol": b.symbol, "drop_move_bps": d[0], "drop_source": d[1],
                     "drop_ts": d[2], "corrupt_pct": c[5], "corrupt_move_bps": c[0],
                     "corrupt_source": c[1], "corrupt_ts": c[2],
                     "worst_move_bps": worst[2][0] if worst else None,
                     "worst_scenario": worst[1] if worst else None,
                     "worst_source": worst[2][1] if worst else None, "mark_eod": mark_eod,
                     "isolated_positions": len(size), "positions_crossed": n, "notional_crossed": notional,
                     "corrupt_price": c[4], "corrupt_method": method})
    if not rows:
        return _empty(SENSITIVITY_SCHEMA)
    f = pl.DataFrame(rows, schema_overrides={"drop_ts": pl.Int64, "corrupt_ts": pl.Int64, "corrupt_pct": F64,
                                             "corrupt_price": F64}).with_columns(
        pl.col("drop_ts", "corrupt_ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.col("corrupt_price", "corrupt_pct").fill_nan(None))
    return _conform(f, SENSITIVITY_SCHEMA).sort("date", "symbol")


# --------------------------------------------------------------------------------------------
# broken-source counterfactual


def broken_source_counterfactual(index_components: pl.DataFrame, instruments: pl.DataFrame,
                                 mark_index: pl.DataFrame, status: pl.DataFrame,
                                 positions_eod: pl.DataFrame | None = None,
                                 risk_tiers: pl.DataFrame | None = None, **prev) -> pl.DataFrame:
    """What each source excluded as an outlier would have done to the index had the rule kept it.

    For every outlier window of source j (exclusion_windows(status), status outlier), per second
    t of the window: cf(t) = sum(w_i p_i) / sum(w_i) over the sources the rule used (status ok)
    plus j; cf_move_bps = (cf - recomputed) / recomputed x 10,000, reported as the signed value of
    largest |cf_move| (cf_ts its second); published_move_bps = the largest
    |published - without_j| / without_j x 10,000 with without_j the rule's index with j removed
    from the basket (~0: the source did not move the published index);
    max_deviation_pct = the largest |p_j / median - 1| in the window. positions_crossed /
    notional_crossed (when positions_eod and risk_tiers are given): open isolated positions whose
    liquidation price lies between mark_eod and mark_eod x (1 + cf_move_bps / 10,000) (shorts for a
    rise, longs for a fall). Columns: date, symbol, source, start, end, seconds,
    max_deviation_pct, cf_move_bps, cf_ts, published_move_bps, mark_eod, positions_crossed,
    notional_crossed."""
    win = exclusion_windows(status).filter(pl.col("status") == STATUS_OUTLIER)
    if win.height == 0:
        return _empty(COUNTERFACTUAL_SCHEMA)
    rows = []
    for b in _baskets(index_components, instruments, mark_index, prev.get("prev_index_components"),
                      prev.get("prev_index")):
        w_sym = win.filter(pl.col("symbol") == b.symbol)
        if w_sym.height == 0:
            continue
        idx, st, d = _recompute(b)
        book = (_isolated_book(positions_eod, risk_tiers, b.symbol)
                if positions_eod is not None and risk_tiers is not None else (np.zeros(0), np.zeros(0)))
        mark_eod = float(b.mark[-1])
        without: dict[int, np.ndarray] = {}  # source -> the rule's index with it removed
        for r in w_sym.iter_rows(named=True):
            if r["source"] not in b.sources:
                continue
            j = b.sources.index(r["source"])
            a = int(np.searchsorted(b.ts_us, _epoch_us(r["start"])))
            e = int(np.searchsorted(b.ts_us, _epoch_us(r["end"]), side="right"))
            use = st[a:e] == index_rule.OK
            use[:, j] = True
            ww = np.where(use, b.weights[None, :], 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                cf = (np.where(use, b.price[a:e], 0.0) * ww).sum(axis=1) / ww.sum(axis=1)
                cf_move = (cf - idx[a:e]) / idx[a:e] * 1e4
                if j not in without:
                    keep = [k for k in range(len(b.sources)) if k != j]
                    without[j] = b.rule(b.price[:, keep], b.age[:, keep], b.weights[keep])[0]
                wo = without[j]
                pub_move = np.abs(b.published[a:e] - wo[a:e]) / wo[a:e] * 1e4
                dev = np.abs(b.price[a:e, j] / d["median"][a:e] - 1.0)
            k = _argmax_abs(cf_move)
            mv = float(cf_move[k]) if k is not None else np.nan
            n, notional = _crossed(book[0], book[1], mark_eod, mv, both=False)
            rows.append({"date": b.date, "symbol": b.symbol, "source": r["source"], "start": r["start"],
                         "end": r["end"], "seconds": r["seconds"],
                         "max_deviation_pct": float(np.nanmax(dev)) if np.isfinite(dev).any() else None,
                         "cf_move_bps": None if k is None else mv,
                         "cf_ts": None if k is None else int(b.ts_us[a + k]),
                         "published_move_bps": float(np.nanmax(pub_move)) if np.isfinite(pub_move).any() else None,
                         "mark_eod": mark_eod, "positions_crossed": n, "notional_crossed": notional})
    if not rows:
        return _empty(COUNTERFACTUAL_SCHEMA)
    f = pl.DataFrame(rows, schema_overrides={"cf_ts": pl.Int64}).with_columns(
        pl.col("cf_ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    return _conform(f, COUNTERFACTUAL_SCHEMA).sort("date", "symbol", "source", "start")


def _epoch_us(t: dt.datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int((t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) / dt.timedelta(microseconds=1))


# --------------------------------------------------------------------------------------------
# mark


def mark_basis(mark_index: pl.DataFrame) -> pl.DataFrame:
    """Mark basis per date x symbol: basis_bps = (mark_price - index_price) / index_price x 10,000
    per second; basis_mean_bps = its mean; basis_abs_mean_bps, basis_abs_p99_bps (linear
    interpolation) and basis_abs_max_bps = mean, 99th percentile and max of |basis_bps|.
    Columns: date, symbol, seconds, basis_mean_bps, basis_abs_mean_bps, basis_abs_p99_bps,
    basis_abs_max_bps."""
    _require(mark_index, "mark_index", ("ts", "symbol", "mark_price", "index_price"))
    basis = (pl.col("mark_price") - pl.col("index_price")) / pl.col("index_price") * 1e4
    out = (mark_index.with_columns(pl.col("ts").dt.date().alias("date"), basis.alias("_b"))
           .filter(pl.col("_b").is_not_null() & pl.col("_b").is_finite())
           .group_by("date", "symbol").agg(
               pl.len().alias("seconds"), pl.col("_b").mean().alias("basis_mean_bps"),
               pl.col("_b").abs().mean().alias("basis_abs_mean_bps"),
               pl.col("_b").abs().quantile(0.99, "linear").alias("basis_abs_p99_bps"),
               pl.col("_b").abs().max().alias("basis_abs_max_bps")))
    return _conform(out, BASIS_SCHEMA).sort("date", "symbol")


def _last_trade_price(mark_index: pl.DataFrame, trades: pl.DataFrame) -> pl.DataFrame:
    """mark_index with `_last`: the last trade price at or before each second."""
    _require(trades, "trades", ("ts", "symbol", "price"))
    t = (trades.select("ts", "symbol", pl.col("price").alias("_tp")).drop_nulls().sort("ts"))
    m = mark_index.sort("ts")
    j = m.join_asof(t, on="ts", by="symbol", strategy="backward", check_sortedness=False)
    fallback = pl.col("last_price") if "last_price" in m.columns else pl.col("mark_price")
    return j.with_columns(pl.coalesce(pl.col("_tp"), fallback).alias("_last"))


def mark_lag_by_vol_bucket(mark_index: pl.DataFrame, trades: pl.DataFrame) -> pl.DataFrame:
    """Mark lag behind the traded price per date x symbol x volatility bucket.

    vol(t) = std of the mark's 1-s log returns over the trailing 300 s x sqrt(seconds per year);
    vol_bucket = low / mid / high by the terciles of vol over the date x symbol (vol_lo / vol_hi
    = the bucket's range; seconds before 150 s of returns exist are in no bucket).
    last(t) = the last trade price at or before second t (mark_index.last_price before the day's
    first trade). Per bucket, over its seconds t and k = 0 ... 30 s:
    e_k = mean (log last(t) - log mark(t + k))^2;
    lag_s = the k minimizing e_k (refined by a parabola through its neighbours when 0 < k < 30):
    how many seconds later the mark best reproduces the traded price (0 = no lag);
    mean_abs_gap_bps = mean |last(t) - mark(t)| / mark(t) x 10,000 (the price distance the mark
    leaves open to the trades; it rises when the mark lags a moving market);
    aligned_rms_gap_bps = sqrt(e_lag) x 10,000 (what remains after the best alignment: spread and
    basis noise). Columns: date, symbol, vol_bucket, seconds, vol_lo, vol_hi, lag_s,
    mean_abs_gap_bps, aligned_rms_gap_bps."""
    _require(mark_index, "mark_index", ("ts", "symbol", "mark_price"))
    if mark_index.height == 0:
        return _empty(LAG_SCHEMA)
    m = _last_trade_price(mark_index, trades).with_columns(pl.col("ts").dt.date().alias("date"))
    rows = []
    ks = np.arange(MAX_LAG_S + 1)
    for (day, sym), g in m.sort("date", "symbol", "ts").group_by("date", "symbol", maintain_order=True):
        mark = g["mark_price"].to_numpy().astype(float)
        last = g["_last"].to_numpy().astype(float)
        if len(mark) < VOL_WINDOW_S + MAX_LAG_S + 2:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            lm, ll = np.log(mark), np.log(last)
            rm = np.diff(lm, prepend=np.nan)
            gap = np.abs(last - mark) / mark * 1e4
        vol = (pl.Series(rm).rolling_std(VOL_WINDOW_S, min_samples=VOL_WINDOW_S // 2).to_numpy()
               * np.sqrt(SECONDS_PER_YEAR))
        ok_vol = np.isfinite(vol)
        if not ok_vol.any():
            continue
        q1, q2 = np.quantile(vol[ok_vol], [1 / 3, 2 / 3])
        bucket = np.where(~ok_vol, -1, np.where(vol <= q1, 0, np.where(vol <= q2, 1, 2)))
        t_n = len(mark)
        for bi, name in enumerate(VOL_BUCKETS):
            sel = bucket == bi
            idx = np.flatnonzero(sel[: t_n - MAX_LAG_S] & np.isfinite(ll[: t_n - MAX_LAG_S]))
            lag = rms = None
            if len(idx):
                e = np.array([np.nanmean((ll[idx] - lm[idx + k]) ** 2) for k in ks])
                k = int(np.nanargmin(e))
                lag, rms = float(k), float(np.sqrt(e[k]) * 1e4)
                if 0 < k < MAX_LAG_S:
                    den = e[k - 1] - 2 * e[k] + e[k + 1]
                    if den > 0:
                        lag = float(k + 0.5 * (e[k - 1] - e[k + 1]) / den)
            rows.append({"date": day, "symbol": sym, "vol_bucket": name, "seconds": int(sel.sum()),
                         "vol_lo": float(vol[sel].min()) if sel.any() else None,
                         "vol_hi": float(vol[sel].max()) if sel.any() else None,
                         "lag_s": lag,
                         "mean_abs_gap_bps": float(np.nanmean(gap[sel])) if sel.any() else None,
                         "aligned_rms_gap_bps": rms})
    if not rows:
        return _empty(LAG_SCHEMA)
    order = {b: i for i, b in enumerate(VOL_BUCKETS)}
    out = _conform(pl.DataFrame(rows), LAG_SCHEMA)
    return out.sort("date", "symbol", pl.col("vol_bucket").replace_strict(order, return_dtype=pl.Int64))
