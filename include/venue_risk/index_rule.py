"""The venue's published-index rule (DESIGN 4.4) as a pure numpy function.

Input: per-second matrices (T seconds x S sources) of each source's latest received price and its
age (seconds since that update was received), plus the instrument's source weights.

Per second t:
1. stale: a source whose age > stale_s (or with no price yet) is dropped;
2. if fewer than min_sources non-stale sources remain, the index holds its previous value
   (`prev_index` before the first second);
3. m = median of the non-stale prices; a source with |p / m - 1| > outlier_pct is an outlier;
4. more than one outlier: index = m (median fallback);
   otherwise index = sum(w_i p_i) / sum(w_i) over the non-stale, non-outlier sources (weights
   renormalized).
Status per source and second: OK (0), STALE (1), OUTLIER (2).

The simulator publishes `mark_index.index_price` with exactly this function, and metrics
recompute it from `index_components` with `source_matrix` + `compute_index`.
"""

from __future__ import annotations

import warnings

import numpy as np

OK, STALE, OUTLIER = 0, 1, 2
STATUS_NAMES = {OK: "ok", STALE: "stale", OUTLIER: "outlier"}


def source_matrix(
    grid_s: np.ndarray,
    received_s: list[np.ndarray],
    prices: list[np.ndarray],
    prev_received_s: np.ndarray | None = None,
    prev_prices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Latest price and its age per grid time and source.

    grid_s: (T,) evaluation times (seconds); received_s[j], prices[j]: source j's updates sorted by
    receipt time. An update counts at t when received_s <= t. prev_* give each source's last update
    before the first one listed (e.g. from the previous day, in the same time base); without it a
    source with no update yet has price nan and age inf.
    Returns (price (T, S), age (T, S)).
    """
    t_n, s_n = len(grid_s), len(received_s)
    price = np.full((t_n, s_n), np.nan)
    age = np.full((t_n, s_n), np.inf)
    for j in range(s_n):
        rec = np.asarray(received_s[j], dtype=np.float64)
        px = np.asarray(prices[j], dtype=np.float64)
        idx = np.searchsorted(rec, grid_s, side="right") - 1
        have = idx >= 0
        price[have, j] = px[idx[have]]
        age[have, j] = grid_s[have] - rec[idx[have]]
        if prev_prices is not None and prev_received_s is not None and np.isfinite(prev_received_s[j]):
            price[~have, j] = prev_prices[j]
            age[~have, j] = grid_s[~have] - prev_received_s[j]
    return price, age


def compute_index(
    price: np.ndarray,
    age: np.ndarray,
    weights: np.ndarray,
    outlier_pct: float,
    stale_s: float,
    min_sources: int,
    prev_index: float = np.nan,
) -> tuple[np.ndarray, np.ndarray]:
    """Index per second and status per (second, source); see the module docstring for the rule."""
    price = np.asarray(price, dtype=np.float64)
    age = np.asarray(age, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    stale = ~(age <= stale_s) | ~np.isfinite(price)
    live = np.where(stale, np.nan, price)
    n_live = (~stale).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(live, axis=1)
    outlier = ~stale & (np.abs(price / med[:, None] - 1.0) > outlier_pct)
    n_out = outlier.sum(axis=1)
    use = ~stale & ~outlier
    ww = np.where(use, w[None, :], 0.0)
    wsum = ww.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        wmean = (np.where(use, price, 0.0) * ww).sum(axis=1) / wsum
    index = np.where(n_out > 1, med, wmean)
    hold = n_live < min_sources
    index = np.where(hold | ~np.isfinite(index), np.nan, index)
    # hold: carry the last published value forward (prev_index before the first second)
    valid = ~np.isnan(index)
    pos = np.where(valid, np.arange(len(index)), -1)
    pos = np.maximum.accumulate(pos) if len(pos) else pos
    held = np.where(pos >= 0, index[np.maximum(pos, 0)], prev_index)
    status = np.full(price.shape, OK, dtype=np.int8)
    status[outlier] = OUTLIER
    status[stale] = STALE
    return held, status
