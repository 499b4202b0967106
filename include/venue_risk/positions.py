"""Position rebuild from fills (DESIGN 4.6), shared by the simulator and the metrics.

One fill of qty q at price p changes the taker by +q (buy) / -q (sell) and the maker by the
opposite (taker first, then maker). For a position (size S, entry E) and signed change d:
- open or increase (S = 0 or sign(d) = sign(S)): E' = (|S| E + |d| p) / (|S| + |d|);
- reduce (|d| <= |S|, opposite sign): E unchanged; realized PnL = |d| x (p - E) x sign(S);
- flip (|d| > |S|): realized PnL = |S| x (p - E) x sign(S), E' = p;
- a size with |S'| < FLAT_EPS is flat: S' = 0, E' = 0.
Flat positions are omitted from the output (and from the simulator's positions_eod).
"""

from __future__ import annotations

import numpy as np
import polars as pl

FLAT_EPS = 1e-9


def step(size: float, entry: float, delta: float, price: float) -> tuple[float, float, float]:
    """Apply a signed change `delta` at `price`; returns (size, entry, realized PnL)."""
    new = size + delta
    if abs(new) < FLAT_EPS:
        new = 0.0
    if size == 0.0 or (size > 0) == (delta > 0):
        if new == 0.0:
            return 0.0, 0.0, 0.0
        return new, (abs(size) * entry + abs(delta) * price) / (abs(size) + abs(delta)), 0.0
    sgn = 1.0 if size > 0 else -1.0
    closed = min(abs(delta), abs(size))
    realized = closed * (price - entry) * sgn
    if new == 0.0:
        return 0.0, 0.0, realized
    if (new > 0) != (size > 0):
        return new, price, realized
    return new, entry, realized


def apply_fills(start_positions: pl.DataFrame, fills: pl.DataFrame) -> pl.DataFrame:
    """End positions from start-of-day positions (positions_eod shape: account, symbol, size,
    entry_price) and the day's trades, applied in exchange order (ts, trade_id).

    Returns account, symbol, size, entry_price for every non-flat position, sorted by account
    and symbol.
    """
    book: dict[tuple[int, str], tuple[float, float]] = {}
    if start_positions.height:
        for a, s, q, e in start_positions.select("account", "symbol", "size", "entry_price").iter_rows():
            if q != 0.0:
                book[(int(a), s)] = (float(q), float(e))
    if fills.height:
        f = fills.sort("ts", "trade_id")
        sym = f["symbol"].to_list()
        px = f["price"].to_numpy().tolist()
        qty = f["qty"].to_numpy().tolist()
        buy = (f["taker_side"] == "buy").to_list()
        tk = f["taker_account"].to_list()
        mk = f["maker_account"].to_list()
        for i in range(f.height):
            d = qty[i] if buy[i] else -qty[i]
            for acct, dd in ((tk[i], d), (mk[i], -d)):
                key = (acct, sym[i])
                q0, e0 = book.get(key, (0.0, 0.0))
                q1, e1, _ = step(q0, e0, dd, px[i])
                book[key] = (q1, e1)
    rows = sorted((a, s, q, e) for (a, s), (q, e) in book.items() if q != 0.0)
    return pl.DataFrame(
        {
            "account": np.array([r[0] for r in rows], dtype=np.int64),
            "symbol": [r[1] for r in rows],
            "size": np.array([r[2] for r in rows], dtype=np.float64),
            "entry_price": np.array([r[3] for r in rows], dtype=np.float64),
        },
        schema={"account": pl.Int64, "symbol": pl.String, "size": pl.Float64, "entry_price": pl.Float64},
    )
