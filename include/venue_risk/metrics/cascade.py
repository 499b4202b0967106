"""Liquidation cascades on a graph of symbols (DESIGN 4.9).

Graph. One node per symbol: its end-of-day mark, its book depth curve (cumulative notional to
each band of book_depth, bids for -x %, asks for +x %, from the day's last snapshot or the
per-band median over the day's snapshots) and its open positions with their liquidation prices
(liquidation_bands.position_bands). Edges: the correlation of 1-minute mark log returns (last
mark of each minute) and the cross-margin accounts two symbols share (count and notional).

Moves are simple returns of the mark, in fractions (-0.05 = 5 % down). Given the liquidated set,
the target move of every symbol is
  d_s = shock_s + e_s                       (exogenous shock + own liquidation impact)
  T_s = d_s + sum_{j != s} rho_sj x d_j      (one hop of correlation x move)
- Liquidation: an isolated position is liquidated once the move reaches its liquidation
  distance LP / mark - 1 (long: move <= it; short: move >= it). A cross account is evaluated as a
  whole at the moved marks mark_j x (1 + m_j): once its cross equity W_c + sum size_j x
  (price_j - entry_j) <= sum MM_j(|size_j| x price_j), every cross position it holds is
  liquidated; this is how shared cross-margin accounts carry a move from one symbol to another.
- Impact: liquidated longs are sold into the bids and liquidated shorts bought from the asks;
  the two net in notional (|size| x end-of-day mark, the unit of book_depth). The impact of a net
  notional N is the band x where the depth curve D reaches N: linear between the bands, with
  D(0) = 0, and beyond the last band extended at the density (notional per %) of the outermost
  segment. e_s = -x / 100 for net selling, +x / 100 for net buying.
- Latency: the engine checks and liquidates once per round of latency_s seconds. Between rounds
  the fraction lambda = 1 - exp(-latency_s / response_s) of the pending move (T - m) lands
  (response_s: how fast impact and correlated moves reach the price), m <- m + lambda x (T - m);
  the shock itself lands at once. The fixed point does not depend on latency (liquidations only
  grow with the move, so the iteration climbs to the least fixed point); latency sets how many
  rounds and seconds (duration_s = iterations x latency_s) the cascade takes, and a cascade cut
  at max_iter is reported with converged = false.
- Fixed point: stop when no position is newly liquidated at the current move and none would be
  at the full pending move T; then the final move is T.
Outputs: final move per symbol, liquidated notional per symbol, amplification = final move /
shock of the shocked symbol, rounds (rounds that liquidated something), and the critical
symbols: a symbol's contribution is the price move its own liquidations caused across the graph,
|e_j| x (1 + sum_{s != j} |rho_sj|); critical symbols are those with at least 10 % of the total
contribution, largest first.

Known limits: Book depth comes from snapshots and does not refill while the cascade runs (no
resiliency), and beyond the outermost band it is extrapolated at the last band's density.
Correlation carries moves one hop per round; shared cross accounts carry them through equity.
Positions are the end-of-day ones; engine latency and response time are parameters, not
measured.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from venue_risk import margin
from venue_risk.errors import InputError
from venue_risk.metrics.liquidation_bands import tiers_by_symbol

METHOD = __doc__

#: Share of the total contribution a symbol needs to be listed as critical.
CRITICAL_SHARE = 0.10
DEFAULT_SHOCKS = (0.02, 0.05, 0.10, 0.20)

F64, I64, STR = pl.Float64, pl.Int64, pl.String

POSITION_COLUMNS = ("symbol", "account", "margin_mode", "size", "entry_price", "liquidation_price",
                    "cross_wallet")

CASCADE_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "shock_symbol": STR,
    "shock_pct": F64,  # signed, percent
    "symbol": STR,
    "final_move_pct": F64,
    "own_impact_pct": F64,
    "liquidated_notional": F64,
    "liquidated_positions": I64,
    "contribution_pct": F64,
    "critical": pl.Boolean,
}

TABLE_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "shock_symbol": STR,
    "shock": F64,  # size, fraction
    "direction": I64,  # -1 down, +1 up
    "shock_pct": F64,  # signed, percent
    "final_move_pct": F64,
    "amplification": F64,
    "liquidated_notional": F64,
    "liquidated_positions": I64,
    "rounds": I64,
    "iterations": I64,
    "duration_s": F64,
    "converged": pl.Boolean,
    "critical_symbols": pl.List(STR),
}

EDGES_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "symbol_a": STR,
    "symbol_b": STR,
    "correlation": F64,
    "shared_cross_accounts": I64,
    "shared_cross_notional": F64,
}


@dataclasses.dataclass(frozen=True)
class CascadeGraph:
    """Symbols with depth curves and positions, correlation and shared cross-margin edges."""

    date: dt.date | None
    symbols: tuple[str, ...]
    marks: np.ndarray
    depth_pct: tuple[np.ndarray, ...]  # per symbol: band distances in percent, ascending, > 0
    bid_notional: tuple[np.ndarray, ...]  # cumulative notional to -depth_pct
    ask_notional: tuple[np.ndarray, ...]  # cumulative notional to +depth_pct
    correlation: np.ndarray  # n x n, unit diagonal
    positions: pl.DataFrame  # POSITION_COLUMNS + sym (index) and notional at the mark
    tiers: Mapping[str, Sequence[margin.Tier]]
    shared_cross_accounts: np.ndarray  # n x n
    shared_cross_notional: np.ndarray  # n x n

    def with_depth_scaled(self, factor: float) -> "CascadeGraph":
        """The same graph with every depth curve multiplied by `factor` (positions unchanged)."""
        return dataclasses.replace(self, bid_notional=tuple(b * factor for b in self.bid_notional),
                                   ask_notional=tuple(a * factor for a in self.ask_notional))


def depth_curves(book_depth: pl.DataFrame, stat: str = "last") -> pl.DataFrame:
    """symbol, percentage, notional: the depth curve per symbol, from the day's last snapshot
    (stat="last") or the per-band median of the day's snapshots (stat="median")."""
    if stat == "last":
        last = book_depth.group_by("symbol").agg(pl.col("ts").max().alias("_last"))
        out = (book_depth.join(last, on="symbol").filter(pl.col("ts") == pl.col("_last"))
               .group_by("symbol", "percentage").agg(pl.col("notional").last()))
    elif stat == "median":
        out = book_depth.group_by("symbol", "percentage").agg(pl.col("notional").median())
    else:
        raise InputError("parameters", f"depth stat {stat!r}", expected="'last' or 'median'")
    return out.select("symbol", "percentage", "notional").sort("symbol", "percentage")


def mark_correlation(mark_index: pl.DataFrame) -> pl.DataFrame:
    """symbol_a, symbol_b, correlation: Pearson correlation of 1-minute log returns of the mark
    (last mark of each minute), over the minutes both symbols have; null with fewer than 3."""
    per_min = (mark_index.filter(pl.col("mark_price") > 0)
               .with_columns(pl.col("ts").dt.truncate("1m").alias("minute"))
               .sort("symbol", "ts").group_by("symbol", "minute", maintain_order=True)
               .agg(pl.col("mark_price").last())
               .sort("symbol", "minute")
               .with_columns(pl.col("mark_price").log().diff().over("symbol").alias("r"))
               .drop_nulls("r"))
    wide = per_min.pivot(on="symbol", index="minute", values="r").sort("minute")
    symbols = sorted(per_min["symbol"].unique().to_list())
    rows = []
    for i, a in enumerate(symbols):
        for b in symbols[i + 1:]:
            pair = wide.select(a, b).drop_nulls()
            rho = pair.select(pl.corr(a, b)).item() if pair.height >= 3 else None
            rows.append({"symbol_a": a, "symbol_b": b, "correlation": rho})
    return pl.DataFrame(rows, schema={"symbol_a": STR, "symbol_b": STR, "correlation": F64})


def graph_from_parts(marks: Mapping[str, float], depth: pl.DataFrame, correlation: pl.DataFrame,
                     positions: pl.DataFrame, tiers: Mapping[str, Sequence[margin.Tier]] | None = None,
                     date: dt.date | None = None) -> CascadeGraph:
    """A graph from its parts: marks {symbol: mark}, depth (symbol, percentage, notional),
    correlation (symbol_a, symbol_b, correlation; a missing or null pair counts as 0), positions
    (symbol, account, margin_mode, size, entry_price, liquidation_price, cross_wallet; cross rows
    need cross_wallet and tiers of their symbols)."""
    symbols = tuple(sorted(marks))
    idx = {s: i for i, s in enumerate(symbols)}
    n = len(symbols)
    dp, bids, asks = [], [], []
    for s in symbols:
        d = depth.filter(pl.col("symbol") == s)
        curves = []
        for side in (d.filter(pl.col("percentage") < 0).with_columns(-pl.col("percentage")),
                     d.filter(pl.col("percentage") > 0)):
            side = side.sort("percentage")
            if side.height == 0 or side["notional"].max() <= 0:
                raise InputError("book_depth", f"symbol {s!r} has no depth on one side of the book",
                                 column="notional", expected="positive cumulative notional per band")
            curves.append((side["percentage"].to_numpy(),
                           np.maximum.accumulate(side["notional"].fill_null(0.0).to_numpy())))
        pct = curves[0][0]
        if not np.allclose(pct, curves[1][0]):
            raise InputError("book_depth", f"symbol {s!r}: bid and ask bands differ", column="percentage",
                             expected="the same bands on both sides")
        dp.append(pct)
        bids.append(curves[0][1])
        asks.append(curves[1][1])
    corr = np.eye(n)
    for a, b, r in correlation.select("symbol_a", "symbol_b", "correlation").iter_rows():
        if a in idx and b in idx and r is not None and not math.isnan(r) and a != b:
            corr[idx[a], idx[b]] = corr[idx[b], idx[a]] = r
    pos = positions.select(POSITION_COLUMNS).filter(pl.col("size") != 0)
    unknown = sorted(set(pos["symbol"].to_list()) - set(idx))
    if unknown:
        raise InputError("positions_eod", f"positions in symbol(s) {unknown} without a mark",
                         column="symbol", expected="a mark and book depth for every symbol")
    if pos.height == 0:  # (replace_strict cannot type an empty mapping)
        pos = pos.with_columns(pl.lit(None, I64).alias("sym"), pl.lit(None, F64).alias("notional"))
    else:
        pos = pos.with_columns(
            pl.col("symbol").replace_strict(idx, return_dtype=I64).alias("sym"),
            (pl.col("size").abs() * pl.col("symbol").replace_strict(dict(marks), return_dtype=F64))
            .alias("notional"))
    tiers = dict(tiers or {})
    cross = pos.filter(pl.col("margin_mode") == "cross")
    missing = sorted(set(cross["symbol"].to_list()) - set(tiers))
    if missing:
        raise InputError("risk_tiers", f"no tiers for cross positions in {missing}", column="symbol",
                         expected="tiers for every symbol with a cross position")
    shared_n, shared_notional = np.zeros((n, n)), np.zeros((n, n))
    for (_acct,), g in cross.group_by(["account"]):
        syms, notl = g["sym"].to_list(), g["notional"].to_list()
        for i, a in enumerate(syms):
            for j, b in enumerate(syms):
                if i != j and a != b:  # each ordered pair once per account
                    shared_n[a, b] += 1
                    shared_notional[a, b] += notl[i] + notl[j]
    return CascadeGraph(date, symbols, np.array([marks[s] for s in symbols], dtype=float),
                        tuple(dp), tuple(bids), tuple(asks), corr, pos, tiers, shared_n,
                        shared_notional)


def build_graph(bands: pl.DataFrame, book_depth: pl.DataFrame, mark_index: pl.DataFrame,
                risk_tiers: pl.DataFrame, depth_stat: str = "last") -> CascadeGraph:
    """The day's graph: marks and positions from `bands` (position_bands), depth curves from
    book_depth (depth_curves, `depth_stat`), correlation from mark_index (mark_correlation),
    tiers from risk_tiers. Symbols are those of the bands and of book_depth with a mark."""
    marks = dict(bands.select("symbol", "mark_price").unique("symbol").iter_rows())
    if mark_index.height:
        last = (mark_index.filter(pl.col("mark_price") > 0).sort("ts")
                .group_by("symbol").agg(pl.col("mark_price").last()))
        for s, m in last.iter_rows():
            marks.setdefault(s, m)
    depth = depth_curves(book_depth, depth_stat)
    marks = {s: m for s, m in marks.items() if s in set(depth["symbol"].to_list()) or s in set(bands["symbol"].to_list())}
    dates = bands["date"].drop_nulls().unique().to_list()
    return graph_from_parts(marks, depth, mark_correlation(mark_index), bands,
                            tiers_by_symbol(risk_tiers), dates[0] if len(dates) == 1 else None)


def graph_edges(graph: CascadeGraph) -> pl.DataFrame:
    """One row per symbol pair: correlation, shared cross-margin accounts and their notional
    (both legs, at the marks)."""
    rows = []
    for i, a in enumerate(graph.symbols):
        for j in range(i + 1, len(graph.symbols)):
            rows.append({"date": graph.date, "symbol_a": a, "symbol_b": graph.symbols[j],
                         "correlation": float(graph.correlation[i, j]),
                         "shared_cross_accounts": int(graph.shared_cross_accounts[i, j]),
                         "shared_cross_notional": float(graph.shared_cross_notional[i, j])})
    return pl.DataFrame(rows, schema=EDGES_SCHEMA)


def impact_pct(depth_pct: np.ndarray, cum_notional: np.ndarray, notional: float) -> float:
    """Band (percent) reached walking `notional` into a cumulative depth curve: linear between
    (0, 0) and the bands, beyond the last band at the outermost segment's notional per %."""
    if notional <= 0:
        return 0.0
    x = np.concatenate(([0.0], depth_pct))
    d = np.concatenate(([0.0], cum_notional))
    if notional <= d[-1]:
        k = int(np.searchsorted(d, notional, side="left"))  # d[k-1] < notional <= d[k]
        return float(x[k - 1] + (notional - d[k - 1]) / (d[k] - d[k - 1]) * (x[k] - x[k - 1]))
    slope = (d[-1] - d[-2]) / (x[-1] - x[-2])
    if slope <= 0:
        slope = d[-1] / x[-1]
    return float(x[-1] + (notional - d[-1]) / slope)


class _Engine:
    """Precomputed arrays of a graph for fast rounds (built once per graph: `engine`)."""

    def __init__(self, g: CascadeGraph):
        self.g = g
        p = g.positions
        self.n = len(g.symbols)
        self.sym = p["sym"].to_numpy()
        self.size = p["size"].to_numpy()
        self.notional = p["notional"].to_numpy()
        self.long = self.size > 0
        iso = (p["margin_mode"] == "isolated").to_numpy()
        self.iso = iso
        lp = p["liquidation_price"].fill_null(float("nan")).to_numpy()
        self.dist = np.where(iso, lp / g.marks[self.sym] - 1.0, np.nan)
        # cross positions as arrays: position index, account code, rank within the account (row
        # order), symbol, size, entry, and the tiers of their symbol padded to one width
        cross = (p.with_row_index("_i").filter(pl.col("margin_mode") == "cross")
                 .with_columns((pl.col("account").rank("dense") - 1).cast(pl.Int64).alias("_a"))
                 .with_columns(pl.int_range(pl.len()).over("_a").alias("_k")))
        wallets = cross.group_by("_a", maintain_order=True).agg(
            pl.col("account").first(), pl.col("cross_wallet").drop_nulls().first().alias("_wc")).sort("_a")
        missing = wallets.filter(pl.col("_wc").is_null())
        if missing.height:
            first = cross.filter(pl.col("_a").is_in(missing["_a"].implode()))["account"][0]
            raise InputError("positions_eod", f"cross account {first} has no cross_wallet",
                             column="cross_wallet", expected="W_c for every cross position")
        self.c_i = cross["_i"].to_numpy().astype(np.int64)
        self.c_a = cross["_a"].to_numpy()
        self.c_sym = self.sym[self.c_i]
        self.c_size = cross["size"].to_numpy()
        self.c_entry = cross["entry_price"].to_numpy()
        self.wallet = wallets["_wc"].to_numpy() if cross.height else np.zeros(0)
        k = cross["_k"].to_numpy()
        self.by_rank = [np.flatnonzero(k == r) for r in range(int(k.max()) + 1)] if cross.height else []
        names = cross["symbol"].to_list()
        width = max((len(g.tiers[s]) for s in set(names)), default=1)
        table = {s: np.array([(t.notional_floor, t.notional_cap, t.maintenance_margin_rate,
                               t.maintenance_amount) for t in g.tiers[s]]
                             + [(np.inf, -np.inf, np.nan, np.nan)] * (width - len(g.tiers[s])))
                 for s in set(names)}
        tiers = np.stack([table[s] for s in names]) if names else np.zeros((0, width, 4))
        self.t_floor, self.t_cap, self.t_mmr, self.t_amt = (tiers[:, :, j] for j in range(4))
        self.t_count = np.array([len(g.tiers[s]) for s in names], dtype=np.int64)

    def _cross_mm(self, notional: np.ndarray) -> np.ndarray:
        """margin.maintenance_margin per cross position, vectorized: the first tier whose
        [floor, cap) holds the notional; below the first floor the first tier, else the last."""
        held = (self.t_floor <= notional[:, None]) & (notional[:, None] < self.t_cap)
        first = np.argmax(held, axis=1)
        fallback = np.where(notional < self.t_floor[:, 0], 0, self.t_count - 1)
        tier = np.where(held.any(axis=1), first, fallback)
        rows = np.arange(len(notional))
        return np.abs(notional) * self.t_mmr[rows, tier] - self.t_amt[rows, tier]

    def crossed(self, m: np.ndarray) -> np.ndarray:
        """Positions liquidated at moves `m`: isolated ones beyond their liquidation price, and
        every position of a cross account whose equity W_c + sum size x (P - entry) <= sum MM,
        summed in the account's row order."""
        pm = m[self.sym]
        hit = self.iso & np.where(self.long, pm <= self.dist + 1e-12, pm >= self.dist - 1e-12)
        hit &= ~np.isnan(self.dist)
        if not len(self.c_i):
            return hit
        price = self.g.marks[self.c_sym] * (1.0 + m[self.c_sym])
        pnl = self.c_size * (price - self.c_entry)
        mm_pos = self._cross_mm(np.abs(self.c_size) * np.maximum(price, 0.0))
        equity, mm = self.wallet.copy(), np.zeros(len(self.wallet))
        for rank in self.by_rank:  # (one position per account at each rank: a plain +=)
            accounts = self.c_a[rank]
            equity[accounts] += pnl[rank]
            mm[accounts] += mm_pos[rank]
        hit[self.c_i[(equity <= mm)[self.c_a]]] = True
        return hit

    def impacts(self, liquidated: np.ndarray) -> np.ndarray:
        signed = np.where(self.long, self.notional, -self.notional) * liquidated
        net = np.bincount(self.sym, weights=signed, minlength=self.n)  # > 0: net selling
        e = np.zeros(self.n)
        for s in range(self.n):
            if net[s] > 0:
                e[s] = -impact_pct(self.g.depth_pct[s], self.g.bid_notional[s], net[s]) / 100.0
            elif net[s] < 0:
                e[s] = impact_pct(self.g.depth_pct[s], self.g.ask_notional[s], -net[s]) / 100.0
        return e

    def target(self, shock: np.ndarray, e: np.ndarray) -> np.ndarray:
        d = shock + e
        off = self.g.correlation - np.eye(self.n)
        return d + off @ d


@dataclasses.dataclass(frozen=True)
class CascadeResult:
    """One cascade: per-symbol frame (CASCADE_SCHEMA) and the summary figures."""

    per_symbol: pl.DataFrame
    shock_symbol: str
    shock_pct: float
    final_move_pct: float
    amplification: float
    liquidated_notional: float
    liquidated_positions: int
    rounds: int
    iterations: int
    duration_s: float
    converged: bool
    critical_symbols: list[str]


def cascade(graph: CascadeGraph, shock_symbol: str, shock_pct: float, latency_s: float = 1.0,
            max_iter: int = 200, response_s: float = 1.0, engine: _Engine | None = None) -> CascadeResult:
    """Iterate a shock of `shock_pct` percent (signed: -5 = 5 % down) on `shock_symbol` to the
    cascade's fixed point (module docstring for the model).

    Round: L = liquidated positions (isolated: move beyond LP / mark - 1; cross accounts: equity
    <= sum MM at the moved marks), cumulative; e_s = -impact(bids, net sold notional) or
    +impact(asks, net bought notional); T = d + (rho - I) d with d = shock + e; stop with m = T
    when nothing is newly liquidated at m nor at T, else m <- m + lambda (T - m), lambda = 1 -
    exp(-latency_s / response_s). final_move_pct = 100 m; amplification = m_shocked / shock;
    rounds = rounds that liquidated something; duration_s = iterations x latency_s;
    contribution_pct_j = 100 |e_j| (1 + sum_{s != j} |rho_sj|); critical = contribution >= 10 %
    of the total.
    """
    if shock_symbol not in graph.symbols:
        raise InputError("parameters", f"shock symbol {shock_symbol!r} is not in the graph",
                         expected=f"one of {list(graph.symbols)}")
    if shock_pct == 0 or latency_s <= 0 or response_s <= 0 or max_iter < 1:
        raise InputError("parameters", f"shock_pct {shock_pct!r}, latency_s {latency_s!r}, "
                         f"response_s {response_s!r}, max_iter {max_iter!r}",
                         expected="a non-zero shock, positive latency and response, max_iter >= 1")
    eng = engine if engine is not None and engine.g is graph else _Engine(graph)
    n = eng.n
    k = graph.symbols.index(shock_symbol)
    shock = np.zeros(n)
    shock[k] = shock_pct / 100.0
    lam = 1.0 - math.exp(-latency_s / response_s)
    m = shock.copy()
    liq = np.zeros(len(eng.sym), dtype=bool)
    rounds, converged, it = 0, False, 0
    e = np.zeros(n)
    target = m
    for it in range(1, max_iter + 1):
        new = eng.crossed(m) & ~liq
        if new.any():
            liq |= new
            rounds += 1
        e = eng.impacts(liq)
        target = eng.target(shock, e)
        if not new.any() and not (eng.crossed(target) & ~liq).any():
            m, converged = target, True
            break
        m = m + lam * (target - m)
    off_abs = np.abs(graph.correlation - np.eye(n)).sum(axis=0)
    contribution = np.abs(e) * (1.0 + off_abs) * 100.0
    total = contribution.sum()
    critical_mask = contribution >= CRITICAL_SHARE * total if total > 0 else np.zeros(n, dtype=bool)
    order = [i for i in np.argsort(-contribution, kind="stable") if critical_mask[i]]
    liq_notional = np.bincount(eng.sym, weights=eng.notional * liq, minlength=n)
    liq_count = np.bincount(eng.sym, weights=liq.astype(float), minlength=n)
    per_symbol = pl.DataFrame({
        "date": [graph.date] * n, "shock_symbol": [shock_symbol] * n,
        "shock_pct": [float(shock_pct)] * n, "symbol": list(graph.symbols),
        "final_move_pct": (m * 100.0).tolist(), "own_impact_pct": (e * 100.0).tolist(),
        "liquidated_notional": liq_notional.tolist(),
        "liquidated_positions": liq_count.astype(np.int64).tolist(),
        "contribution_pct": contribution.tolist(), "critical": critical_mask.tolist(),
    }, schema=CASCADE_SCHEMA)
    return CascadeResult(per_symbol, shock_symbol, float(shock_pct), float(m[k] * 100.0),
                         float(m[k] / shock[k]), float(liq_notional.sum()), int(liq.sum()), rounds,
                         it, it * latency_s, converged, [graph.symbols[i] for i in order])


def cascade_table(graph: CascadeGraph, shocks: Sequence[float] = DEFAULT_SHOCKS,
                  directions: Sequence[int] = (-1, 1), latency_s: float = 1.0, max_iter: int = 200,
                  response_s: float = 1.0) -> pl.DataFrame:
    """One row per shock symbol x shock size (fraction: 0.02 = 2 %) x direction (-1 down, +1 up):
    the cascade's amplification, liquidated notional and positions (all symbols), rounds,
    iterations, duration and critical symbols (see `cascade`)."""
    rows = []
    engine = _Engine(graph)  # the graph's arrays, once for all its shocks
    for sym in graph.symbols:
        for size in shocks:
            for direction in directions:
                r = cascade(graph, sym, direction * size * 100.0, latency_s, max_iter, response_s, engine)
                rows.append({"date": graph.date, "shock_symbol": sym, "shock": float(size),
                             "direction": int(direction), "shock_pct": r.shock_pct,
                             "final_move_pct": r.final_move_pct, "amplification": r.amplification,
                             "liquidated_notional": r.liquidated_notional,
                             "liquidated_positions": r.liquidated_positions, "rounds": r.rounds,
                             "iterations": r.iterations, "duration_s": r.duration_s,
                             "converged": r.converged, "critical_symbols": r.critical_symbols})
    out = pl.DataFrame(rows, schema=TABLE_SCHEMA)
    return out.sort("shock_symbol", "direction", "shock")
