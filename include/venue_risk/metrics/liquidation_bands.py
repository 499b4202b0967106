"""Liquidation bands, time in band and liquidations-at-risk curves (DESIGN 4.9).

A band is the range of prices in which a position moves from maintenance-margin pressure to
forced reduction. Every price uses the venue's margin model (`venue_risk.margin`, DESIGN 3a):
notional = |size| x price, MM = notional x MMR - maintenance_amount of the tier holding the
notional.

- Isolated position (margin WB, entry EP, size Q): liquidation price LP solves
  WB + s x Q x (P - EP) = MM(Q x P), i.e. margin.isolated_liquidation_price.
- Cross position i of an account: the account's cross equity is
  W_c + sum_j size_j x (P_j - EP_j), where W_c = wallet_balance - the isolated margins the
  account has posted (the wallet includes them); the account is liquidated when cross equity <=
  sum_j MM_j. Holding the account's other cross positions j at their end-of-day marks, the
  equation for P_i is the isolated one with an effective margin
  M_i = W_c + sum_{j != i} size_j x (mark_j - EP_j) - sum_{j != i} MM_j(mark_j),
  so LP_i = margin.isolated_liquidation_price(tiers, size_i, EP_i, M_i): closed form within a
  tier, the tier chosen so that it holds Q x LP (MM is convex in P with slope below Q, so the
  root is unique).
- Warning price WP: where the margin ratio MM / equity reaches the warning level w (default
  0.8; account totals for cross). MM / equity = w is equity = MM / w, i.e. the liquidation
  equation with every tier's MMR and maintenance amount divided by w; so WP is the same closed
  form on the scaled tiers, with the effective margin M_i = W_c + sum_{j != i} uPnL_j -
  sum_{j != i} MM_j / w for cross (WB for isolated). For a long LP < WP < mark while the margin
  ratio at the mark is below w; for a short mark < WP < LP.
- Band = [WP, LP]. Distances from the mark in percent: (price / mark - 1) x 100 (negative for
  longs, positive for shorts). margin_ratio = MM / equity at the mark (null when equity <= 0).
  A long whose margin covers its whole notional has no positive liquidation price: LP = 0.

Time in band: the end-of-day positions are held unchanged through the day's 1-second mark path
(a proxy: a position liquidated during the day is not in positions_eod, and intraday trading is
ignored). A mark sample is inside the band when it lies between LP (excluded) and WP (included),
beyond the warning price; the position "reaches liquidation" at the first sample at or beyond LP,
where it would have been force-reduced, so only time before that sample counts. Each sample holds
until the next sample of the symbol (the last one for 1 s).

Liquidations-at-risk: per symbol x side, positions are bucketed by the adverse distance of their
liquidation price from the end-of-day mark, a = max(0, -distance) for longs (price falling),
max(0, distance) for shorts: bucket k = max(1, ceil(a / bucket_pct)) covers
((k - 1) x bucket_pct, k x bucket_pct] percent (a position already at or beyond its LP is in
bucket 1); positions beyond max_pct are left out. Per bucket the notional at the mark
(|size| x mark) and at the liquidation price (|size| x LP), and both cumulated from the mark
outwards: the notional liquidated if the price moves that far, before any cascade.

Known limits: Time in band holds the end-of-day positions through the day's mark path: a
position liquidated or closed during the day is not in positions_eod, and intraday trading is
ignored. A cross position's band holds the account's other positions at their end-of-day marks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import polars as pl

from venue_risk import margin
from venue_risk.errors import InputError
from venue_risk.schema import TS
from venue_risk.metrics.frames import conform as _conform

METHOD = __doc__

#: Default warning level of the margin ratio MM / equity (1.0 is the liquidation itself).
WARNING_MARGIN_RATIO = 0.8

F64, I64, STR = pl.Float64, pl.Int64, pl.String

BANDS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "account": I64,
    "symbol": STR,
    "margin_mode": STR,
    "side": STR,  # long / short
    "size": F64,
    "entry_price": F64,
    "mark_price": F64,
    "notional": F64,  # |size| x mark
    "cross_wallet": F64,  # W_c: wallet less isolated margins (cross only)
    "equity": F64,  # position equity (isolated) or account cross equity (cross), at the marks
    "maintenance_margin": F64,  # this position's MM at the mark
    "margin_ratio": F64,  # MM / equity at the marks (account totals for cross)
    "liquidation_price": F64,
    "liquidation_tier": I64,
    "liquidation_notional": F64,  # |size| x LP
    "warning_margin_ratio": F64,
    "warning_price": F64,
    "liquidation_distance_pct": F64,
    "warning_distance_pct": F64,
    "in_band": pl.Boolean,  # the mark is beyond the warning price
}

TIME_IN_BAND_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "account": I64,
    "symbol": STR,
    "margin_mode": STR,
    "side": STR,
    "notional": F64,
    "warning_price": F64,
    "liquidation_price": F64,
    "seconds_in_band": F64,
    "band_entries": I64,
    "first_entry_ts": TS,
    "reached_liquidation": pl.Boolean,
    "liquidation_ts": TS,
    "seconds_to_liquidation": F64,  # from first entry to the liquidation sample
}

AT_RISK_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "symbol": STR,
    "side": STR,
    "bucket": I64,  # k: adverse distance in ((k-1) x bucket_pct, k x bucket_pct]
    "distance_pct": F64,  # signed outer edge: -k x bucket_pct for longs, +k x bucket_pct for shorts
    "price_outer": F64,  # mark x (1 + distance_pct / 100)
    "positions": I64,
    "notional": F64,
    "liquidation_notional": F64,
    "cumulative_notional": F64,
    "cumulative_liquidation_notional": F64,
}



def tiers_by_symbol(risk_tiers: pl.DataFrame) -> dict[str, list[margin.Tier]]:
    """The margin tiers of every symbol of risk_tiers (margin.tiers_from_rows per symbol)."""
    out: dict[str, list[margin.Tier]] = {}
    for (symbol,), rows in risk_tiers.group_by(["symbol"]):
        out[symbol] = margin.tiers_from_rows(rows.to_dicts())
    return out


def scaled_tiers(tiers: Sequence[margin.Tier], warning_margin_ratio: float) -> list[margin.Tier]:
    """Tiers whose MM is MM / w (MMR / w and maintenance_amount / w, same notional ranges):
    their "liquidation" price is where MM / equity = w."""
    w = warning_margin_ratio
    return [dataclasses.replace(t, maintenance_margin_rate=t.maintenance_margin_rate / w,
                                maintenance_amount=t.maintenance_amount / w) for t in tiers]


def eod_marks(mark_index: pl.DataFrame) -> pl.DataFrame:
    """symbol, mark_price: the last mark of each symbol in mark_index (latest ts)."""
    return (mark_index.filter(pl.col("mark_price").is_not_null())
            .sort("symbol", "ts").group_by("symbol", maintain_order=True)
            .agg(pl.col("mark_price").last()).sort("symbol"))


def _marks_dict(mark_eod: pl.DataFrame) -> dict[str, float]:
    if "ts" in mark_eod.columns:
        mark_eod = eod_marks(mark_eod)
    if mark_eod.filter(pl.col("symbol").is_duplicated()).height:
        raise InputError("mark_index", "more than one end-of-day mark for a symbol", column="symbol",
                         expected="one row per symbol (or the day's mark_index with ts)")
    bad = mark_eod.filter(pl.col("mark_price").is_null() | (pl.col("mark_price") <= 0))
    if bad.height:
        raise InputError("mark_index", f"symbol {bad['symbol'][0]!r} has mark {bad['mark_price'][0]!r}",
                         column="mark_price", expected="a positive end-of-day mark")
    return dict(zip(mark_eod["symbol"].to_list(), mark_eod["mark_price"].to_list()))


def position_bands(positions_eod: pl.DataFrame, accounts_eod: pl.DataFrame,
                   risk_tiers: pl.DataFrame, mark_eod: pl.DataFrame,
                   warning_margin_ratio: float = WARNING_MARGIN_RATIO) -> pl.DataFrame:
    """One row per open position with its liquidation band at the end-of-day marks.

    notional = |size| x mark; MM = margin.maintenance_margin(tiers, notional).
    Isolated: equity = isolated_margin + size x (mark - entry); LP from
    margin.isolated_liquidation_price(tiers, size, entry, isolated_margin).
    Cross: W_c = wallet_balance - sum of the account's isolated margins; account equity =
    W_c + sum size_j x (mark_j - entry_j) over its cross positions; margin_ratio = sum MM_j /
    equity; LP_i = margin.isolated_liquidation_price(tiers, size_i, entry_i, M_i) with
    M_i = W_c + sum_{j != i} (size_j x (mark_j - entry_j) - MM_j).
    Warning price WP: the same closed form on the tiers scaled by 1 / w (MM / equity = w), with
    margin WB (isolated) or W_c + sum_{j != i} (uPnL_j - MM_j / w) (cross).
    liquidation_distance_pct = (LP / mark - 1) x 100, warning_distance_pct = (WP / mark - 1) x 100;
    in_band = the mark is at or beyond WP (long: mark <= WP, short: mark >= WP).
    mark_eod: symbol, mark_price (or the day's mark_index: the last mark per symbol is used).
    Raises InputError for a position without a mark or tiers, a cross account missing from
    accounts_eod, or a warning level outside (0, 1].
    """
    w = float(warning_margin_ratio)
    if not (0.0 < w <= 1.0):
        raise InputError("parameters", f"warning_margin_ratio {warning_margin_ratio!r}",
                         expected="a margin ratio in (0, 1]")
    marks = _marks_dict(mark_eod)
    tiers = tiers_by_symbol(risk_tiers)
    pos = positions_eod.filter(pl.col("size") != 0).sort("account", "symbol")
    symbols = set(pos["symbol"].unique().to_list())
    for what, have, ds in (("mark", marks, "mark_index"), ("tiers", tiers, "risk_tiers")):
        missing = sorted(symbols - set(have))
        if missing:
            raise InputError(ds, f"no {what} for symbol(s) {missing}", column="symbol",
                             expected=f"the {what} of every symbol with an open position")
    bad_mode = pos.filter(~pl.col("margin_mode").is_in(["cross", "isolated"]) | pl.col("margin_mode").is_null())
    if bad_mode.height:
        raise InputError("positions_eod", f"account {bad_mode['account'][0]} has margin_mode "
                         f"{bad_mode['margin_mode'][0]!r}", column="margin_mode",
                         expected="'cross' or 'isolated'")
    wtiers = {s: scaled_tiers(t, w) for s, t in tiers.items()}
    wallets = dict(zip(accounts_eod["account"].to_list(), accounts_eod["wallet_balance"].to_list()))
    rows = pos.to_dicts()

    # Per cross account: W_c, sum of uPnL and of MM over its cross positions.
    iso_margin: dict[int, float] = {}
    cross_upnl: dict[int, float] = {}
    cross_mm: dict[int, float] = {}
    for r in rows:
        a = r["account"]
        if r["margin_mode"] == "isolated":
            iso_margin[a] = iso_margin.get(a, 0.0) + float(r["isolated_margin"] or 0.0)
        else:
            m = marks[r["symbol"]]
            r["_upnl"] = margin.unrealized_pnl(r["size"], r["entry_price"], m)
            r["_mm"] = margin.maintenance_margin(tiers[r["symbol"]], abs(r["size"]) * m)
            cross_upnl[a] = cross_upnl.get(a, 0.0) + r["_upnl"]
            cross_mm[a] = cross_mm.get(a, 0.0) + r["_mm"]
    missing = sorted(a for a in cross_upnl if a not in wallets or wallets[a] is None)
    if missing:
        raise InputError("accounts_eod", f"cross account(s) {missing[:5]} have no wallet balance",
                         column="account", expected="a row for every account with a cross position")

    out = []
    for r in rows:
        sym, size, ep = r["symbol"], float(r["size"]), float(r["entry_price"])
        m, q = marks[sym], abs(size)
        mm = margin.maintenance_margin(tiers[sym], q * m)
        if r["margin_mode"] == "isolated":
            wb = float(r["isolated_margin"] or 0.0)
            cross_wallet = None
            equity = wb + margin.unrealized_pnl(size, ep, m)
            ratio_mm = mm
            m_liq = m_warn = wb
        else:
            a = r["account"]
            cross_wallet = float(wallets[a]) - iso_margin.get(a, 0.0)
            equity = cross_wallet + cross_upnl[a]
            ratio_mm = cross_mm[a]
            others_upnl, others_mm = cross_upnl[a] - r["_upnl"], cross_mm[a] - r["_mm"]
            m_liq = cross_wallet + others_upnl - others_mm
            m_warn = cross_wallet + others_upnl - others_mm / w
        lp, tier = margin.isolated_liquidation_price(tiers[sym], size, ep, m_liq)
        wp, _ = margin.isolated_liquidation_price(wtiers[sym], size, ep, m_warn)
        out.append({
            "date": r["date"], "account": r["account"], "symbol": sym,
            "margin_mode": r["margin_mode"], "side": "long" if size > 0 else "short",
            "size": size, "entry_price": ep, "mark_price": m, "notional": q * m,
            "cross_wallet": cross_wallet, "equity": equity, "maintenance_margin": mm,
            "margin_ratio": ratio_mm / equity if equity > 0 else None,
            "liquidation_price": lp, "liquidation_tier": tier.tier, "liquidation_notional": q * lp,
            "warning_margin_ratio": w, "warning_price": wp,
            "liquidation_distance_pct": (lp / m - 1.0) * 100.0,
            "warning_distance_pct": (wp / m - 1.0) * 100.0,
            "in_band": (m <= wp) if size > 0 else (m >= wp),
        })
    if not out:
        return pl.DataFrame(schema=BANDS_SCHEMA)
    return _conform(pl.DataFrame(out, infer_schema_length=None), BANDS_SCHEMA).sort(
        "date", "symbol", "account")


def time_in_band(bands: pl.DataFrame, mark_index: pl.DataFrame) -> pl.DataFrame:
    """Per position of `bands`, its time inside the band on the day's mark path.

    The end-of-day position is held through the day's path (a proxy: positions liquidated during
    the day are not in positions_eod). Each mark sample holds until the next sample of the
    symbol (the last for 1 s). For a long, a sample is beyond warning when mark <= WP and at
    liquidation when mark <= LP (short: mark >= WP, mark >= LP).
    liquidation_ts = the first sample at liquidation (reached_liquidation); first_entry_ts =
    the first sample beyond warning; seconds_in_band = sum of the durations of samples strictly
    inside the band (beyond WP, not at LP) before liquidation_ts; band_entries = number of times
    the path entered the band (or hit LP directly) from outside it, up to liquidation_ts;
    seconds_to_liquidation = liquidation_ts - first_entry_ts. A symbol without marks gives
    0 seconds and nulls.
    """
    base = bands.select("date", "account", "symbol", "margin_mode", "side", "notional",
                        "warning_price", "liquidation_price")
    if base.height == 0:
        return pl.DataFrame(schema=TIME_IN_BAND_SCHEMA)
    mi = mark_index.filter(pl.col("mark_price").is_not_null()).select("ts", "symbol", "mark_price")
    paths: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for (sym,), g in mi.sort("symbol", "ts").group_by(["symbol"], maintain_order=True):
        ts = g["ts"].dt.epoch("us").to_numpy()
        dur = np.empty(len(ts), dtype=np.float64)
        dur[:-1] = np.diff(ts) / 1e6
        dur[-1] = 1.0
        paths[sym] = (ts, g["mark_price"].to_numpy(), dur)

    results: dict[str, list] = {k: [] for k in ("seconds_in_band", "band_entries", "first_entry_us",
                                                "reached_liquidation", "liquidation_us")}
    syms = base["symbol"].to_list()
    wp_all = base["warning_price"].to_numpy()
    lp_all = base["liquidation_price"].to_numpy()
    long_all = (base["side"] == "long").to_numpy()
    for i in range(base.height):
        path = paths.get(syms[i])
        if path is None or math.isnan(wp_all[i]) or math.isnan(lp_all[i]):
            results["seconds_in_band"].append(0.0)
            results["band_entries"].append(0)
            results["first_entry_us"].append(None)
            results["reached_liquidation"].append(False)
            results["liquidation_us"].append(None)
            continue
        ts, px, dur = path
        if long_all[i]:
            beyond, at_liq = px <= wp_all[i], px <= lp_all[i]
        else:
            beyond, at_liq = px >= wp_all[i], px >= lp_all[i]
        hit = np.flatnonzero(at_liq)
        end = int(hit[0]) if hit.size else len(px)
        inside = beyond[:end] & ~at_liq[:end]
        entering = beyond[: end + 1] if hit.size else beyond
        starts = int(entering[0]) + int(np.count_nonzero(entering[1:] & ~entering[:-1]))
        first = np.flatnonzero(beyond)
        results["seconds_in_band"].append(float(dur[:end][inside].sum()))
        results["band_entries"].append(starts)
        results["first_entry_us"].append(int(ts[first[0]]) if first.size else None)
        results["reached_liquidation"].append(bool(hit.size))
        results["liquidation_us"].append(int(ts[hit[0]]) if hit.size else None)
    out = base.with_columns(
        pl.Series("seconds_in_band", results["seconds_in_band"], dtype=F64),
        pl.Series("band_entries", results["band_entries"], dtype=I64),
        pl.Series("first_entry_ts", results["first_entry_us"], dtype=I64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.Series("reached_liquidation", results["reached_liquidation"], dtype=pl.Boolean),
        pl.Series("liquidation_ts", results["liquidation_us"], dtype=I64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
    ).with_columns(
        ((pl.col("liquidation_ts") - pl.col("first_entry_ts")).dt.total_microseconds() / 1e6)
        .alias("seconds_to_liquidation"))
    return _conform(out, TIME_IN_BAND_SCHEMA).sort("date", "symbol", "account")


def liquidations_at_risk(bands: pl.DataFrame, mark_eod: pl.DataFrame, bucket_pct: float = 1,
                         max_pct: float = 20) -> pl.DataFrame:
    """Liquidations-at-risk curve per symbol x side x distance bucket.

    adverse distance a = max(0, -liquidation_distance_pct) for longs, max(0,
    liquidation_distance_pct) for shorts, from the end-of-day mark; bucket k = max(1,
    ceil(a / bucket_pct)) for a <= max_pct (beyond it the position is left out).
    notional = sum |size| x mark, liquidation_notional = sum |size| x LP over the bucket's
    positions; cumulative_* = running sums from bucket 1 outwards. Every symbol of mark_eod
    (and of bands) gets both sides and every bucket 1 ... max_pct / bucket_pct, zero-filled.
    distance_pct = -k x bucket_pct (long) or +k x bucket_pct (short); price_outer = mark x
    (1 + distance_pct / 100). The date is the bands' date.
    """
    if bucket_pct <= 0 or max_pct <= 0:
        raise InputError("parameters", f"bucket_pct {bucket_pct!r}, max_pct {max_pct!r}",
                         expected="positive bucket width and range")
    marks = _marks_dict(mark_eod)
    n_buckets = int(math.ceil(max_pct / bucket_pct - 1e-9))
    dates = bands["date"].drop_nulls().unique().to_list()
    if len(dates) > 1:
        raise InputError("positions_eod", f"bands of {len(dates)} dates", column="date",
                         expected="the bands of one date")
    date = dates[0] if dates else None
    symbols = sorted(set(marks) | set(bands["symbol"].to_list()))
    missing = sorted(set(bands["symbol"].to_list()) - set(marks))
    if missing:
        raise InputError("mark_index", f"no mark for symbol(s) {missing}", column="symbol",
                         expected="the mark of every symbol with a position")
    dist = pl.col("liquidation_distance_pct")
    adverse = pl.when(pl.col("side") == "long").then(-dist).otherwise(dist).clip(lower_bound=0.0)
    eps = 1e-9
    per = (
        bands.filter(dist.is_not_null() & dist.is_not_nan())
        .with_columns(adverse.alias("_a"))
        .filter(pl.col("_a") <= max_pct + eps)
        .with_columns(((pl.col("_a") / bucket_pct - eps).ceil().clip(lower_bound=1.0)
                       .clip(upper_bound=n_buckets)).cast(I64).alias("bucket"))
        .group_by("symbol", "side", "bucket")
        .agg(pl.len().cast(I64).alias("positions"), pl.col("notional").sum(),
             pl.col("liquidation_notional").sum())
    )
    grid = pl.DataFrame({"symbol": symbols}, schema={"symbol": pl.String}).join(
        pl.DataFrame({"side": ["long", "short"]}), how="cross").join(
        pl.DataFrame({"bucket": list(range(1, n_buckets + 1))}, schema={"bucket": I64}), how="cross")
    sign = pl.when(pl.col("side") == "long").then(-1.0).otherwise(1.0)
    out = (
        grid.join(per, on=["symbol", "side", "bucket"], how="left")
        .with_columns(pl.col("positions").fill_null(0), pl.col("notional").fill_null(0.0),
                      pl.col("liquidation_notional").fill_null(0.0),
                      pl.lit(date, dtype=pl.Date).alias("date"),
                      (sign * pl.col("bucket") * bucket_pct).alias("distance_pct"),
                      (pl.col("symbol").replace_strict(marks, default=None, return_dtype=F64) if marks
                       else pl.lit(None, F64)).alias("_mark"))
        .with_columns((pl.col("_mark") * (1 + pl.col("distance_pct") / 100)).alias("price_outer"))
        .sort("symbol", "side", "bucket")
        .with_columns(pl.col("notional").cum_sum().over("symbol", "side").alias("cumulative_notional"),
                      pl.col("liquidation_notional").cum_sum().over("symbol", "side")
                      .alias("cumulative_liquidation_notional"))
    )
    return _conform(out, AT_RISK_SCHEMA).sort("symbol", "side", "bucket")
