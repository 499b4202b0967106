"""The single-source corrupt search of the index integrity metrics (DESIGN 4.4), compiled
(numba), for one source j of a basket: `corrupt_candidates`, the K corrupt prices per second
worth trying (the breakpoints of the rule in j's price, and far beyond them), and
`corrupt_moves`, the venue's index rule (venue_risk.index_rule, steps 2-4) evaluated at every
candidate, held forward along the seconds, and the largest rise and fall with the candidate
causing each.

`corrupt_moves` is index_rule.index_from_median and hold_forward, the closed-form median of
metrics.index_integrity._others_order, and the tie-break of the reported move, written as one
loop over seconds x candidates x sources instead of numpy passes over (K, T) temporaries: the
same float operations in the same order (sources summed in basket order, the median as
(v + v) / 2), so every move is bit-identical to evaluating the rule on the full basket
(tests/unit/test_index_integrity.py checks it against index_rule.compute_index, and the search
against a dense grid of corrupt values). Both replaced numpy code and give the same tables bit
for bit. The compiled code is cached beside the sources (__pycache__); `make env` compiles it
once.
"""

from __future__ import annotations

import numba
import numpy as np

_DBL_MAX = np.finfo(np.float64).max


@numba.njit(cache=True, nogil=True)
def _clip(v: float, lo: float, hi: float) -> float:
    """numpy's clip of one value: min(max(v, lo), hi), NaN if any of them is NaN."""
    if np.isnan(v) or np.isnan(lo) or np.isnan(hi):
        return np.nan
    return min(max(v, lo), hi)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def corrupt_candidates(price: np.ndarray, live: np.ndarray, j: int, even: np.ndarray, lo: np.ndarray,
                       mid: np.ndarray, hi: np.ndarray, median0: np.ndarray, pct: float,
                       corrupt_pct: float, eps: float, far: float) -> np.ndarray:
    """(K, T) corrupt values of source j to evaluate per second: the breakpoints, where the set of
    sources the rule keeps changes (the ends of each live source's in-band interval in x; NaN
    where a source is not live), each x (1 - eps) and then x (1 + eps), then far below and far
    above.

    Breakpoints (2 S rows, with the median's order statistics even, lo, mid, hi of the other live
    prices as in corrupt_moves): j's own ends, x / M(x) = 1 +/- pct: n odd hi x (1 + pct) and
    lo x (1 - pct); n even mid x (1 + pct) / (1 - pct) if <= hi, else (mid + hi) / 2 x (1 + pct),
    and mid x (1 - pct) / (1 + pct) if >= lo, else (lo + mid) / 2 x (1 - pct). Then each other
    source i's, M(x) = p_i / (1 + pct) (one row per i in basket order) and M(x) = p_i / (1 - pct),
    solved by the generalized inverse of M: clip(y, lo, hi) (n odd), clip(2 y - mid, lo, hi)
    (n even); where it lands on a kink of M the value is merely redundant. A breakpoint that is
    not positive and finite is NaN. Far: far x the highest and 1 / far x the lowest of the
    breakpoints and the live prices (NaN where there are none). corrupt_pct (NaN: none): every row
    clipped to median0 x (1 -/+ corrupt_pct), and those two bounds added as the last rows. Values
    that are not positive and finite are replaced by j's own price (no corruption: move 0)."""
    t_n, s_n = price.shape
    r_n = 2 * s_n
    k_n = 2 * r_n + 2 + (0 if np.isnan(corrupt_pct) else 2)
    up, dn = 1.0 + pct, 1.0 - pct
    below, above = 1.0 - eps, 1.0 + eps
    x = np.empty((k_n, t_n))
    bp = np.empty(r_n)
    for t in range(t_n):
        e, l, m, h = even[t], lo[t], mid[t], hi[t]
        if e:
            s_up, s_dn = m * up / dn, m * dn / up
            bp[0] = s_up if s_up <= h else (m + h) / 2 * up
            bp[1] = s_dn if s_dn >= l else (l + m) / 2 * dn
        else:
            bp[0], bp[1] = h * up, l * dn
        r = 2
        for div in (up, dn):
            for i in range(s_n):
                if i != j:
                    y = (price[t, i] if live[t, i] else np.nan) / div
                    bp[r] = _clip(2 * y - m, l, h) if e else _clip(y, l, h)
                    r += 1
        top, bottom = np.nan, np.nan
        for r in range(r_n):
            v = bp[r]
            if not (np.isfinite(v) and v > 0):
                bp[r] = np.nan
            elif np.isnan(top):
                top, bottom = v, v
            else:
                top, bottom = max(top, v), min(bottom, v)
        for i in range(s_n):
            v = price[t, i]
            if live[t, i] and not np.isnan(v):
                if np.isnan(top):
                    top, bottom = v, v
                else:
                    top, bottom = max(top, v), min(bottom, v)
        for r in range(r_n):
            x[r, t] = bp[r] * below
            x[r_n + r, t] = bp[r] * above
        x[2 * r_n, t] = bottom / far
        x[2 * r_n + 1, t] = top * far
        if not np.isnan(corrupt_pct):
            lo_b, hi_b = median0[t] * (1 - corrupt_pct), median0[t] * (1 + corrupt_pct)
            for k in range(2 * r_n + 2):
                x[k, t] = _clip(x[k, t], lo_b, hi_b)
            x[2 * r_n + 2, t], x[2 * r_n + 3, t] = lo_b, hi_b
        for k in range(k_n):
            v = x[k, t]
            if not (np.isfinite(v) and v > 0):
                x[k, t] = price[t, j]
    return x


@numba.njit(cache=True, nogil=True, error_model="numpy")
def corrupt_moves(x: np.ndarray, price: np.ndarray, live: np.ndarray, j: int, even: np.ndarray,
                  lo: np.ndarray, mid: np.ndarray, hi: np.ndarray, median0: np.ndarray, base: np.ndarray,
                  weights: np.ndarray, outlier_pct: float, min_sources: int, prev_index: float,
                  tie_rtol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per second t: (up_move, up_x, down_move, down_x), the largest rise and fall of the index in
    bps over the candidates x[:, t] of source j, and the candidate causing it.

    x (K, T) candidates; price, live (T, S); even, lo, mid, hi (T,): the median of the live basket
    as a function of j's price v (index_integrity._others_order): n odd M = (c + c) / 2 with
    c = clip(v, lo, hi); n even M = (clip(v, lo, mid) + clip(v, mid, hi)) / 2; median0 where j
    is not live (then v = j's own price). Per candidate the rule: a live source is an outlier when
    |p / M - 1| > outlier_pct; more than one outlier: index = M, else the weighted mean of the
    live non-outliers (sum w_i p_i / sum w_i, in basket order); fewer than min_sources live
    sources, or a non-finite result: the last index of the same candidate row (prev_index before
    the first). move = (index - base) / base x 10,000. The pick: the largest signed move; of
    the candidates within tie_rtol x max(|best|, 1) of it, the first with the least
    dev = |x / median0 - 1| (NaN dev: never preferred)."""
    k_n, t_n = x.shape
    s_n = price.shape[1]
    last = np.full(k_n, prev_index)
    moves = np.empty(k_n)
    dev = np.empty(k_n)
    up = np.empty(t_n)
    up_x = np.empty(t_n)
    down = np.empty(t_n)
    down_x = np.empty(t_n)
    for t in range(t_n):
        n_live = 0
        for i in range(s_n):
            if live[t, i]:
                n_live += 1
        hold = n_live < min_sources
        lj = live[t, j]
        for k in range(k_n):
            xj = x[k, t] if lj else price[t, j]
            if not lj:
                m = median0[t]
            elif even[t]:
                m = (min(max(xj, lo[t]), mid[t]) + min(max(xj, mid[t]), hi[t])) / 2.0
            else:
                c = min(max(xj, lo[t]), hi[t])
                m = (c + c) / 2.0
            n_out = 0
            wsum = 0.0
            num = 0.0
            for i in range(s_n):
                p = xj if i == j else price[t, i]
                li = live[t, i]
                outlier = li and abs(p / m - 1.0) > outlier_pct
                w = weights[i]
                if li and not outlier:
                    ww = w
                elif np.isfinite(w):
                    ww = 0.0 * w  # (numpy's False x w: -0.0 for a negative weight)
                else:
                    ww = 0.0
                term = (p if li else 0.0) * ww
                if i == 0:
                    wsum = ww
                    num = term
                else:
                    wsum += ww
                    num += term
                if outlier:
                    n_out += 1
            idx = m if n_out > 1 else num / wsum
            if hold or not np.isfinite(idx):
                idx = last[k]
            else:
                last[k] = idx
            moves[k] = (idx - base[t]) / base[t] * 1e4
            d = abs(x[k, t] / median0[t] - 1.0)
            dev[k] = np.inf if np.isnan(d) else (_DBL_MAX if np.isinf(d) else d)
        for sign in (1.0, -1.0):
            best = np.nan
            for k in range(k_n):
                s = sign * moves[k]
                if not np.isnan(s) and (np.isnan(best) or s > best):
                    best = s
            floor = best - tie_rtol * max(abs(best), 1.0)
            pick, least = 0, np.inf
            for k in range(k_n):
                if sign * moves[k] >= floor and dev[k] < least:
                    pick, least = k, dev[k]
            if sign > 0:
                up[t], up_x[t] = moves[pick], x[pick, t]
            else:
                down[t], down_x[t] = moves[pick], x[pick, t]
    return up, up_x, down, down_x


def warm_up() -> None:
    """Compile (or load from the cache) the kernels, on a one-second, two-source example."""
    one = np.ones(1)
    for corrupt_pct in (np.nan, 0.02):
        corrupt_candidates(np.ones((1, 2)), np.ones((1, 2), dtype=np.bool_), 0, np.zeros(1, dtype=np.bool_),
                           one, one, one, one, 0.05, corrupt_pct, 1e-9, 10.0)
    corrupt_moves(np.ones((1, 1)), np.ones((1, 2)), np.ones((1, 2), dtype=np.bool_), 0,
                  np.zeros(1, dtype=np.bool_), one, one, one, one, one, np.ones(2), 0.05, 1, np.nan, 1e-12)
