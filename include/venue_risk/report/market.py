"""Report context of the market-side families (DESIGN 4.3 crowding, 4.4 index and mark integrity,
4.5 drift): selection, sorting and formatting of the metric tables as the metric modules wrote
them (their own column names; nothing is recomputed here), plus the summary-page sentences.

Every builder accepts empty or missing frames (an empty day, a first day without history) and
then returns empty lists and a sentence that says so.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import polars as pl

TOP_N = 8                  # rows per table (the long tables go out whole as CSV)
TIMELINE_ROWS = 14         # symbol/source rows in the exclusion timeline
TIMELINE_WINDOWS = 600     # windows drawn in the timeline (longest first)
CROWDING_PANELS = 8        # symbols in the funding/volatility small multiples
NARRATIVE_WINDOWS = 4      # broken-source sentences on the summary page (largest moves first)
VOL_BUCKETS = ("low", "mid", "high")

# Thresholds the metric modules use, read (not re-derived) for the sentences.
try:  # pragma: no cover - import guard only
    from venue_risk.metrics.drift import MIN_BASELINE_DAYS as DRIFT_MIN_BASELINE_DAYS
    from venue_risk.metrics.drift import KS_THRESHOLD, MIN_VALUES, PSI_THRESHOLD
    from venue_risk.metrics.index_integrity import GAP_TOLERANCE_BPS
except Exception:  # pragma: no cover
    DRIFT_MIN_BASELINE_DAYS, GAP_TOLERANCE_BPS = 3, 0.1
    KS_THRESHOLD = PSI_THRESHOLD = 0.25
    MIN_VALUES = 50


def _ctx():
    from venue_risk.report import context as c
    return c


def _num_ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _f(v: Any, digits: int = 1) -> str:
    return f"{v:,.{digits}f}" if _num_ok(v) else "n/a"


def _hms(v: Any) -> str:
    """'13:05:07' from a datetime or an ISO timestamp; '' when missing."""
    if isinstance(v, dt.datetime):
        return v.strftime("%H:%M:%S")
    if isinstance(v, str) and "T" in v:
        return v.split("T", 1)[1][:8]
    return ""


def _sod(v: Any) -> float | None:
    """Seconds since midnight UTC of a datetime (None when missing)."""
    if not isinstance(v, dt.datetime):
        return None
    if v.tzinfo is not None:
        v = v.astimezone(dt.timezone.utc)
    return v.hour * 3600 + v.minute * 60 + v.second + v.microsecond / 1e6


def _has(frame: pl.DataFrame, *cols: str) -> bool:
    return isinstance(frame, pl.DataFrame) and frame.height > 0 and all(c in frame.columns for c in cols)


def _abs_sorted(frame: pl.DataFrame, col: str) -> pl.DataFrame:
    return frame.sort(pl.col(col).abs(), descending=True, nulls_last=True)


# -- 4.3 funding-volatility crowding ------------------------------------------------------------

CROWDING_COLUMNS = ["symbol", "settlements", "funding_paid", "funding_interest", "funding_annualized",
                    "realized_vol", "oi_change", "oi_value_close", "long_short_ratio",
                    "taker_buy_sell_ratio", "baseline_days", "baseline", "funding_z", "oi_change_z",
                    "vol_z", "crowding_score", "crowded_side", "funding_extreme", "crowded",
                    "crowded_and_vol_rising"]


def crowding_section(today: pl.DataFrame, history: pl.DataFrame, day: str) -> dict:
    """The crowding table (crowded first, then by |crowding_score|), the funding/vol series per
    symbol over the trailing window (history + today), and the crowded symbols."""
    c = _ctx()
    rows: list[dict] = []
    if _has(today, "symbol"):
        f = today
        if "crowding_score" in f.columns:
            order = [pl.col("crowded").fill_null(False)] if "crowded" in f.columns else []
            f = f.sort(order + [pl.col("crowding_score").abs()], descending=[True] * (len(order) + 1),
                       nulls_last=True)
        rows = c._rows(f.head(TOP_N), CROWDING_COLUMNS)
    for r in rows:
        fp = r.get("funding_paid")
        r["funding_bps"] = fp * 1e4 if _num_ok(fp) else None
        flags = []
        if r.get("crowded_and_vol_rising"):
            flags.append("crowded, vol rising")
        elif r.get("crowded"):
            flags.append("crowded")
        if r.get("funding_extreme"):
            flags.append("funding extreme")
        r["flags"] = ", ".join(flags)
    crowded = [r for r in rows if r.get("crowded")]
    baseline_days = max([int(r.get("baseline_days") or 0) for r in rows], default=0)

    # series: earlier days from crowding_history, today from the day's table (today wins)
    series: dict[str, dict[str, dict]] = {}
    for frame in (history, today):
        if not _has(frame, "date", "symbol"):
            continue
        cols = [x for x in ("date", "symbol", "funding_paid", "realized_vol", "crowded") if x in frame.columns]
        for r in frame.select(cols).iter_rows(named=True):
            d = r["date"].isoformat() if isinstance(r["date"], dt.date) else str(r["date"])[:10]
            if frame is history and d >= day:
                continue
            series.setdefault(str(r["symbol"]), {})[d] = {
                "date": d,
                "funding_bps": c._clean(r["funding_paid"] * 1e4) if _num_ok(r.get("funding_paid")) else None,
                "realized_vol_pct": c._clean(r["realized_vol"] * 100) if _num_ok(r.get("realized_vol")) else None,
                "crowded": bool(r.get("crowded")),
            }
    # panels: today's table order (crowded first, largest |score|), then other symbols by name
    order = [r["symbol"] for r in c._rows(today.sort(pl.col("crowding_score").abs(), descending=True, nulls_last=True)
                                          if _has(today, "crowding_score") else today, ["symbol"])] \
        if _has(today, "symbol") else []
    crowded_syms = [r["symbol"] for r in crowded]
    order = list(dict.fromkeys(crowded_syms + order + sorted(series)))
    panels = [{"symbol": s, "points": sorted(series[s].values(), key=lambda p: p["date"])}
              for s in order if s in series][:CROWDING_PANELS]
    days = sorted({d for s in series.values() for d in s})
    return {
        "rows": rows,
        "total_rows": today.height if isinstance(today, pl.DataFrame) else 0,
        "crowded": crowded,
        "baseline_days": baseline_days,
        "series": panels,
        "series_symbols_total": len(series),
        "series_days": len(days),
    }


def crowding_sentence(section: dict) -> str:
    crowded = section["crowded"]
    if not section["rows"]:
        return "Crowding: no funding data for this day."
    if not crowded:
        return (f"Crowding: no symbol crowded ({len(section['rows'])} symbol(s) scored against "
                f"{section['baseline_days']} baseline day(s)).")
    parts = []
    for r in crowded:
        fund = r.get("funding_paid")
        bits = [f"{r.get('crowded_side') or 'n/a'} side", f"score {_f(r.get('crowding_score'))}",
                f"funding {_f(fund * 1e4 if _num_ok(fund) else None, 2)} bps/day"]
        if r.get("crowded_and_vol_rising"):
            bits.append("volatility rising")
        parts.append(f"{r['symbol']} ({', '.join(bits)})")
    return "Crowded: " + "; ".join(parts) + "."


# -- 4.4 index and mark integrity ---------------------------------------------------------------

def _pivot_buckets(frame: pl.DataFrame, cols: list[str]) -> list[dict]:
    """Per symbol, each column of `cols` for the low / mid / high bucket side by side."""
    c = _ctx()
    if not _has(frame, "symbol", "vol_bucket"):
        return []
    out: dict[str, dict] = {}
    for r in c._rows(frame, ["symbol", "vol_bucket", *cols]):
        s = out.setdefault(str(r["symbol"]), {"symbol": str(r["symbol"])})
        for col in cols:
            s.setdefault(col, {})[str(r["vol_bucket"])] = r.get(col)
    rows = [out[k] for k in sorted(out)]
    return rows[:TOP_N]


def index_section(frames: dict) -> dict:
    c = _ctx()
    gap = c._frame(frames, "index_gap_summary")
    excl = c._frame(frames, "source_exclusions")
    win = c._frame(frames, "exclusion_windows")
    sens = c._frame(frames, "single_source_sensitivity")
    cf = c._frame(frames, "broken_source_counterfactual")
    basis = c._frame(frames, "mark_basis")
    lag = c._frame(frames, "mark_lag_by_vol_bucket")

    gaps = c._rows(gap.sort("max_abs_gap_bps", descending=True, nulls_last=True).head(TOP_N)
                   if _has(gap, "max_abs_gap_bps") else gap.head(TOP_N),
                   ["symbol", "seconds", "seconds_verifiable", "max_abs_gap_bps", "p99_abs_gap_bps",
                    "seconds_gap_over_tol", "ts_max_gap", "seconds_hold", "seconds_median_fallback"])
    for r in gaps:  # the second of the largest gap means something only when there is a gap
        g = r.get("max_abs_gap_bps")
        r["ts_max_gap_hms"] = _hms(r.get("ts_max_gap")) if _num_ok(g) and g > 0 else ""

    sources, clean_sources = [], []
    if _has(excl, "seconds_excluded", "symbol", "source"):
        hit = pl.col("seconds_excluded").fill_null(0) > 0
        for sym, g in sorted(excl.filter(~hit).group_by("symbol"), key=lambda t: str(t[0][0])):
            clean_sources.append({"symbol": str(sym[0]), "sources": sorted(str(x) for x in g["source"])})
        sources = c._rows(excl.filter(hit).sort(["seconds_excluded", "symbol", "source"],
                                                descending=[True, False, False], nulls_last=True).head(TOP_N),
                          ["symbol", "source", "seconds", "seconds_ok", "seconds_stale", "seconds_outlier",
                           "seconds_excluded", "seconds_unknown", "windows", "longest_window_s"])
    sources_with_exclusions = int((excl["seconds_excluded"].fill_null(0) > 0).sum()) if _has(excl, "seconds_excluded") else 0

    windows, timeline = [], []
    if _has(win, "symbol", "source", "status", "start", "end", "seconds"):
        top = win.sort(["seconds", "start"], descending=[True, False]).head(TOP_N)
        windows = c._rows(top, ["symbol", "source", "status", "start", "end", "seconds"])
        for r in windows:
            r["start_hms"], r["end_hms"] = _hms(r["start"]), _hms(r["end"])
        # timeline: the symbol/source rows with the most excluded seconds, their longest windows
        per = (win.group_by("symbol", "source").agg(pl.col("seconds").sum().alias("_tot"))
               .sort(["_tot", "symbol", "source"], descending=[True, False, False]).head(TIMELINE_ROWS))
        sel = (win.join(per.select("symbol", "source"), on=["symbol", "source"], how="semi")
               .sort("seconds", descending=True).head(TIMELINE_WINDOWS))
        for r in sel.iter_rows(named=True):
            a, b = _sod(r["start"]), _sod(r["end"])
            if a is None or b is None:
                continue
            timeline.append({"symbol": str(r["symbol"]), "source": str(r["source"]),
                             "status": str(r["status"]), "start_s": a, "end_s": b + 1.0})
    timeline_rows = [f"{s} / {src}" for s, src in
                     (per.select("symbol", "source").rows() if _has(win, "symbol", "source") else [])]
    stale = []
    if _has(win, "status", "symbol", "source", "seconds"):
        st = (win.filter(pl.col("status") == "stale").group_by("symbol", "source")
              .agg(pl.len().alias("windows"), pl.col("seconds").sum().alias("seconds"),
                   pl.col("seconds").max().alias("longest_s"), pl.col("start").min().alias("first"),
                   pl.col("end").max().alias("last"))
              .sort(["seconds", "symbol", "source"], descending=[True, False, False]))
        stale = c._rows(st, ["symbol", "source", "windows", "seconds", "longest_s", "first", "last"])
        for r in stale:
            r["first_hms"], r["last_hms"] = _hms(r["first"]), _hms(r["last"])

    sensitivity = []
    if _has(sens, "worst_move_bps"):
        sensitivity = c._rows(_abs_sorted(sens, "worst_move_bps").head(TOP_N),
                              ["symbol", "worst_move_bps", "worst_scenario", "worst_source", "drop_move_bps",
                               "drop_source", "corrupt_pct", "corrupt_move_bps", "corrupt_source",
                               "isolated_positions", "positions_crossed", "notional_crossed", "mark_eod"])

    counterfactual = []
    cf_total = cf.height if isinstance(cf, pl.DataFrame) else 0
    if _has(cf, "cf_move_bps"):
        counterfactual = c._rows(_abs_sorted(cf, "cf_move_bps"),
                                 ["symbol", "source", "start", "end", "seconds", "max_deviation_pct",
                                  "cf_move_bps", "cf_ts", "published_move_bps", "mark_eod",
                                  "positions_crossed", "notional_crossed"])
        for r in counterfactual:
            r["start_hms"], r["end_hms"], r["cf_ts_hms"] = _hms(r["start"]), _hms(r["end"]), _hms(r.get("cf_ts"))
            pm = r.get("published_move_bps")
            r["protected"] = not (_num_ok(pm) and pm > GAP_TOLERANCE_BPS)

    basis_rows = c._rows(basis.sort("basis_abs_p99_bps", descending=True, nulls_last=True).head(TOP_N)
                         if _has(basis, "basis_abs_p99_bps") else basis.head(TOP_N),
                         ["symbol", "seconds", "basis_mean_bps", "basis_abs_mean_bps", "basis_abs_p99_bps",
                          "basis_abs_max_bps"])
    lag_rows = _pivot_buckets(lag, ["lag_s", "mean_abs_gap_bps", "seconds"])
    from venue_risk.coverage import MIN_SAMPLES

    return {
        "lag_min_seconds": MIN_SAMPLES["seconds_for_lag"],
        "gaps": gaps,
        "gap_tolerance_bps": GAP_TOLERANCE_BPS,
        "gap_symbols_total": gap.height,
        "sources": sources,
        "sources_total": excl.height,
        "sources_with_exclusions": sources_with_exclusions,
        "clean_sources": clean_sources,
        "windows": windows,
        "windows_total": win.height,
        "timeline": timeline,
        "timeline_rows": timeline_rows,
        "stale": stale,
        "sensitivity": sensitivity,
        "sensitivity_total": sens.height,
        "counterfactual": counterfactual[:TOP_N],
        "counterfactual_all": counterfactual,
        "counterfactual_total": cf_total,
        "basis": basis_rows,
        "basis_total": basis.height,
        "lag": lag_rows,
        "lag_symbols_total": lag["symbol"].n_unique() if _has(lag, "symbol") else 0,
    }


def broken_source_sentences(section: dict) -> list[str]:
    """One sentence per broken-source window (largest counterfactual move first)."""
    c = _ctx()
    rows = section["counterfactual_all"]
    out = []
    for r in rows[:NARRATIVE_WINDOWS]:
        dev = r.get("max_deviation_pct")
        n = r.get("positions_crossed")
        n_txt = f"{int(n):,}" if _num_ok(n) else "n/a"
        pm = r.get("published_move_bps")
        when = (f" from {r['start_hms']} to {r['end_hms']} UTC" if r.get("start_hms") else "")
        text = (f"Index: {r['source']} on {r['symbol']} was excluded as an outlier for "
                f"{int(r.get('seconds') or 0):,} s{when} (max deviation {c.pct(dev, 2)} from the basket "
                f"median); had it been kept the index would have moved {_f(r.get('cf_move_bps'), 1)} bps "
                f"({n_txt} position{'s' if n != 1 else ''} pushed across liquidation); ")
        if r["protected"]:
            text += (f"the published index moved {_f(pm, 2)} bps, so margin state did not move "
                     f"because of it.")
        else:
            text += (f"the published index moved {_f(pm, 2)} bps because of it (above the "
                     f"{GAP_TOLERANCE_BPS:g} bps tolerance): the rule did not fully protect margin "
                     f"state.")
        out.append(text)
    if len(rows) > NARRATIVE_WINDOWS:
        rest = rows[NARRATIVE_WINDOWS:]
        worst = max((r.get("published_move_bps") or 0.0) for r in rest)
        out.append(f"{len(rest)} more broken-source window(s) in the index section (largest published "
                   f"move among them {_f(worst, 2)} bps).")
    return out


def stale_sentence(section: dict) -> str | None:
    stale = section["stale"]
    if not stale:
        return None
    parts = [f"{r['source']} on {r['symbol']} ({int(r['seconds']):,} s in {int(r['windows'])} window(s), "
             f"longest {int(r['longest_s']):,} s)" for r in stale[:4]]
    more = f" and {len(stale) - 4} more" if len(stale) > 4 else ""
    return f"Stale index sources excluded: {'; '.join(parts)}{more}."


# -- 4.5 drift and fill quality -----------------------------------------------------------------

def drift_section(frames: dict) -> dict:
    c = _ctx()
    fd = c._frame(frames, "feature_drift")
    fq = c._frame(frames, "fill_quality_by_vol_bucket")
    features = []
    if _has(fd, "feature"):
        keys = [pl.col(k).fill_null(False) if k == "drifted" else pl.col(k)
                for k in ("drifted", "psi") if k in fd.columns]
        f = fd.sort(keys, descending=[True] * len(keys), nulls_last=True) if keys else fd
        features = c._rows(f.head(TOP_N), ["feature", "psi", "ks", "n_today", "n_baseline",
                                           "baseline_days", "drifted"])
    baseline_days = max([int(r.get("baseline_days") or 0) for r in features], default=0)
    for r in features:  # why a shifted feature is not flagged (the module's own conditions)
        r["note"] = ""
        if not r.get("drifted") and _num_ok(r.get("psi")) and _num_ok(r.get("ks")) \
                and r["psi"] > PSI_THRESHOLD and r["ks"] > KS_THRESHOLD:
            if min(r.get("n_today") or 0, r.get("n_baseline") or 0) < MIN_VALUES:
                r["note"] = f"too few values (< {MIN_VALUES})"
            elif (r.get("baseline_days") or 0) < DRIFT_MIN_BASELINE_DAYS:
                r["note"] = f"baseline < {DRIFT_MIN_BASELINE_DAYS} days"
    fill = _pivot_buckets(fq, ["effective_spread_bps", "taker_slippage_bps", "trade_count"])
    return {
        "features": features,
        "drifted": [r for r in features if r.get("drifted")],
        "baseline_days": baseline_days,
        "min_baseline_days": DRIFT_MIN_BASELINE_DAYS,
        "fill_quality": fill,
        "fill_symbols_total": fq["symbol"].n_unique() if _has(fq, "symbol") else 0,
    }


def drift_sentence(section: dict) -> str:
    drifted = section["drifted"]
    n = section["baseline_days"]
    if drifted:
        parts = [f"{r['feature']} (PSI {_f(r.get('psi'), 2)}, KS {_f(r.get('ks'), 2)})" for r in drifted]
        return f"Drift: {', '.join(parts)} against the trailing {n}-day baseline."
    if not section["features"]:
        return "Drift: no feature samples for this day."
    if n < section["min_baseline_days"]:
        return (f"Drift: not yet assessed, the baseline holds {n} day(s) "
                f"({section['min_baseline_days']} needed); no feature flagged.")
    return f"Drift: no feature drifted against the trailing {n}-day baseline."


# -- everything ---------------------------------------------------------------------------------

def market_context(frames: dict, day: str, covered=lambda section: True) -> dict:
    """The market-side sections and their page-one sentences; `covered(section)` says whether
    the source covers a section (venue_risk.coverage.SECTION_NEEDS): an uncovered section gets
    no sentence (page one states the coverage once)."""
    c = _ctx()
    crowd = crowding_section(c._frame(frames, "crowding"), c._frame(frames, "crowding_history"), day)
    index = index_section(frames)
    drift = drift_section(frames)
    sentences = [drift_sentence(drift)] if covered("drift") else []
    if covered("index"):
        sentences += broken_source_sentences(index)
        stale = stale_sentence(index)
        if stale:
            sentences.append(stale)
    if covered("crowding"):
        sentences.append(crowding_sentence(crowd))
    return {"crowding": crowd, "index": index, "drift": drift, "market_narrative": sentences}
