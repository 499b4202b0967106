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


def live_median(live: np.ndarray) -> np.ndarray:
    """Median over the last axis of the non-NaN values (NaN where there are none).

    The values are sorted once with NaN last; with n values left the median is
    (v_l + v_h) / 2, l = h = n // 2 for n odd, l = n // 2 - 1 and h = n // 2 for n even: the same
    arithmetic as np.nanmedian, so the result is bit-identical to it."""
    live = np.asarray(live, dtype=np.float64)
    if live.shape[-1] == 0:
        return np.full(live.shape[:-1], np.nan)
    srt = np.sort(live, axis=-1)
    n = np.count_nonzero(~np.isnan(live), axis=-1)
    h = n // 2
    lo_i = np.where(n % 2 == 1, h, h - 1)
    last = live.shape[-1] - 1
    lo = np.take_along_axis(srt, np.clip(lo_i, 0, last)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(srt, np.minimum(h, last)[..., None], axis=-1)[..., 0]
    return np.where(n > 0, (lo + hi) / 2.0, np.nan)


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
    stale = ~(age <= stale_s) | ~np.isfinite(price)
    med = live_median(np.where(stale, np.nan, price))
    s_n = price.shape[1]
    index, outlier = index_from_median([price[:, i] for i in range(s_n)], [stale[:, i] for i in range(s_n)],
                                       med, weights, outlier_pct, min_sources, prev_index)
    status = np.full(price.shape, OK, dtype=np.int8)
    for i in range(s_n):
        status[outlier[i], i] = OUTLIER
    status[stale] = STALE
    return index, status


#: Seconds per block in index_from_median (keeps the temporaries of a block in cache).
BLOCK_S = 2048


def index_from_median(
    prices: list[np.ndarray],
    stale: list[np.ndarray],
    med: np.ndarray,
    weights: np.ndarray,
    outlier_pct: float,
    min_sources: int,
    prev_index: float = np.nan,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Steps 2-4 of the rule given m, the median of the live prices (step 3), one source at a time.

    prices[i], stale[i]: source i's price and stale flag, each broadcastable to med's shape
    (..., T), the seconds on the last axis; leading axes are independent scenarios over the same
    seconds (e.g. candidate prices of one source). The weighted sums accumulate source by source
    in basket order (for fewer than 8 sources the same additions, bit for bit, as numpy's sum
    over a (T, S) matrix). Computed in blocks of BLOCK_S seconds. Returns (index of med's shape,
    held along the seconds as in step 2; per source its outlier flags of med's shape)."""
    w = np.asarray(weights, dtype=np.float64)
    shape = med.shape
    index = np.empty(shape)
    outliers = [np.empty(shape, dtype=bool) for _ in prices]
    n_live = sum((~np.asarray(st) for st in stale), np.zeros(shape[-1:], dtype=np.int64))
    hold = np.broadcast_to(n_live < min_sources, shape)
    # a live price or 0: term_i = p0_i x (weight if used else 0); a stale source adds +0 either way
    # and an excluded live one +/-0, which leaves every non-zero sum as it is
    p0 = [np.where(~np.asarray(st), p, 0.0) for p, st in zip(prices, stale)]
    for a in range(0, shape[-1], BLOCK_S):
        sl = (..., slice(a, a + BLOCK_S))
        m = med[sl]
        n_out = np.zeros(m.shape, dtype=np.int8)
        r, ww, term = np.empty(m.shape), np.empty(m.shape), np.empty(m.shape)
        wsum, num = np.zeros(m.shape), np.zeros(m.shape)
        for i, (p, st) in enumerate(zip(prices, stale)):
            live = ~np.broadcast_to(st[sl], m.shape)
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(p[sl], m, out=r)
            np.subtract(r, 1.0, out=r)
            np.abs(r, out=r)
            outlier = np.greater(r, outlier_pct, out=outliers[i][sl])
            outlier &= live
            use = live ^ outlier  # outliers are live
            if np.isfinite(w[i]):
                np.multiply(use, w[i], out=ww)
            else:
                ww[...] = np.where(use, w[i], 0.0)
            np.multiply(p0[i][sl], ww, out=term)
            if i == 0:
                wsum[...], num[...] = ww, term
            else:
                wsum += ww
                num += term
            n_out += outlier
        with np.errstate(invalid="ignore", divide="ignore"):
            wmean = np.divide(num, wsum, out=num)
        idx = np.where(n_out > 1, m, wmean)
        index[sl] = np.where(hold[sl] | ~np.isfinite(idx), np.nan, idx)
    return hold_forward(index, prev_index), outliers


def hold_forward(index: np.ndarray, prev_index: float = np.nan) -> np.ndarray:
    """Step 2's hold: NaN entries take the last valid value before them along the last axis (the
    seconds), prev_index before the first one."""
    bad = np.isnan(index)
    bad_s = bad.reshape(-1, index.shape[-1]).any(axis=0) if index.size else np.zeros(0, dtype=bool)
    if not bad_s.any():
        return index
    if (bad[..., bad_s] == bad_s[bad_s]).all():
        # the same seconds are empty in every scenario: fill only those from one position vector
        pos = np.maximum.accumulate(np.where(bad_s, -1, np.arange(index.shape[-1])))
        held = index.copy()
        src = pos[bad_s]
        held[..., bad_s] = np.where(src >= 0, index[..., np.maximum(src, 0)], prev_index)
        return held
    valid = ~bad
    pos = np.where(valid, np.arange(index.shape[-1]), -1)
    pos = np.maximum.accumulate(pos, axis=-1)
    return np.where(pos >= 0, np.take_along_axis(index, np.maximum(pos, 0), axis=-1), prev_index)
