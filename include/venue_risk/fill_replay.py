"""Fills replayed through `positions.step`, compiled (numba): the inner loop of the position
rebuild (DESIGN 4.6), which is sequential by nature (each fill's entry price depends on every
earlier fill of the same account and symbol) and was a Python loop of two `step` calls per fill
(9 s for the 3.2M fills of a large venue's BTCUSDT day).

`step` is compiled from the one Python definition in venue_risk.positions, and the loop applies
it in the same order with the same float operations (taker first, then maker with the opposite
change), so sizes and entry prices are bit-identical to the Python loop. The compiled code is
cached beside the sources (__pycache__, `cache=True`); `make env` compiles it once.
"""

from __future__ import annotations

import numba
import numpy as np

from venue_risk.positions import step

_step = numba.njit(cache=True, nogil=True)(step)


@numba.njit(cache=True, nogil=True)
def replay(taker_key: np.ndarray, maker_key: np.ndarray, delta: np.ndarray, price: np.ndarray,
           size: np.ndarray, entry: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply fill i (in array order) to position taker_key[i] with signed change delta[i] and then
    to maker_key[i] with -delta[i], at price[i]: (size[k], entry[k]) = step(size[k], entry[k], d,
    price[i]). size and entry (one entry per position key, the start of day) are updated in place
    to the end of day. Returns per fill and role (row 2 i: taker, 2 i + 1: maker) size_before,
    size_after, entry_price_after and the signed change."""
    n = delta.shape[0]
    before = np.empty(2 * n)
    after = np.empty(2 * n)
    entry_after = np.empty(2 * n)
    signed = np.empty(2 * n)
    for i in range(n):
        for r in range(2):
            k = taker_key[i] if r == 0 else maker_key[i]
            d = delta[i] if r == 0 else -delta[i]
            q0 = size[k]
            q1, e1, _ = _step(q0, entry[k], d, price[i])
            size[k] = q1
            entry[k] = e1
            j = 2 * i + r
            before[j] = q0
            after[j] = q1
            entry_after[j] = e1
            signed[j] = d
    return before, after, entry_after, signed


def warm_up() -> None:
    """Compile (or load from the cache) the kernels, on a one-fill example."""
    one = np.zeros(1, dtype=np.int64)
    replay(one, one, np.ones(1), np.ones(1), np.zeros(1), np.zeros(1))
