"""The margin model (DESIGN section 3a), shared by the simulator and every metric.

- Position notional = |size| x mark. The tier is the one whose [notional_floor, notional_cap)
  holds the notional. Maintenance margin MM = notional x MMR - maintenance_amount, where the
  amount makes MM continuous across tiers: amt_k = amt_(k-1) + floor_k x (MMR_k - MMR_(k-1)).
- Isolated position, margin WB, entry EP, size Q > 0, side s (+1 long, -1 short):
  equity(P) = WB + s x Q x (P - EP). Liquidation price solves equity = MM:
  long  LP = (Q x EP - WB - amt) / (Q x (1 - MMR))
  short LP = (Q x EP + WB + amt) / (Q x (1 + MMR))
  using the tier whose range holds the notional Q x LP. Bankruptcy price (equity = 0):
  long EP - WB / Q, short EP + WB / Q.
- Cross margin: equity = wallet + sum of unrealized PnL; liquidated when equity <= sum of MM.

Known limits: One margin model: tiered maintenance rates with maintenance amounts (the Binance
USD-M form). Equity is wallet plus unrealized PnL at the mark: accrued funding and open orders'
margin are not in it. A cross position's liquidation price holds the account's other positions
at their marks (a joint move is the cross-margin stress's job). Portfolio margin, volatility-
dependent rates or other formulas need their own model here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import math


@dataclass(frozen=True)
class Tier:
    """One maintenance-margin tier of one symbol."""

    tier: int
    notional_floor: float
    notional_cap: float
    max_leverage: float
    maintenance_margin_rate: float
    maintenance_amount: float


# Binance USD-M BTCUSDT tiers, 2021 (DESIGN 3a): (cap, max leverage, MMR).
BINANCE_BTC_2021: tuple[tuple[float, float, float], ...] = (
    (50_000, 125, 0.004),
    (250_000, 100, 0.005),
    (1_000_000, 50, 0.01),
    (10_000_000, 20, 0.025),
    (20_000_000, 10, 0.05),
    (50_000_000, 5, 0.10),
    (100_000_000, 4, 0.125),
    (200_000_000, 3, 0.15),
    (300_000_000, 2, 0.25),
    (500_000_000, 1, 0.50),
)


def build_tiers(brackets: Sequence[tuple[float, float, float]], scale: float = 1.0) -> list[Tier]:
    """Tiers from (notional cap, max leverage, MMR) brackets, caps multiplied by `scale`.

    maintenance_amount_k = maintenance_amount_(k-1) + floor_k x (MMR_k - MMR_(k-1)), amount_1 = 0,
    so MM = notional x MMR - amount is continuous at every tier boundary.
    """
    tiers: list[Tier] = []
    floor, amount, prev_mmr = 0.0, 0.0, None
    for i, (cap, lev, mmr) in enumerate(brackets, start=1):
        if prev_mmr is not None:
            amount += floor * (mmr - prev_mmr)
        tiers.append(Tier(i, floor, cap * scale, float(lev), mmr, amount))
        floor, prev_mmr = cap * scale, mmr
    return tiers


def tier_for_notional(tiers: Sequence[Tier], notional: float) -> Tier:
    """The tier whose [notional_floor, notional_cap) holds `notional` (the last tier above it)."""
    for t in tiers:
        if t.notional_floor <= notional < t.notional_cap:
            return t
    if notional < tiers[0].notional_floor:
        return tiers[0]
    return tiers[-1]


def maintenance_margin(tiers: Sequence[Tier], notional: float) -> float:
    """MM = notional x MMR - maintenance_amount of the tier holding the notional."""
    t = tier_for_notional(tiers, abs(notional))
    return abs(notional) * t.maintenance_margin_rate - t.maintenance_amount


def max_leverage_for_notional(tiers: Sequence[Tier], notional: float) -> float:
    """The highest leverage the tier holding `notional` allows."""
    return tier_for_notional(tiers, abs(notional)).max_leverage


def isolated_liquidation_price(
    tiers: Sequence[Tier], size: float, entry_price: float, margin: float
) -> tuple[float, Tier]:
    """Liquidation price of an isolated position and the tier it is computed with.

    long LP = (Q EP - WB - amt) / (Q (1 - MMR)); short LP = (Q EP + WB + amt) / (Q (1 + MMR)),
    with the tier whose range holds Q x LP (MM depends on the notional at the liquidation
    price, not at entry). Returns (nan, tier 1) for a flat position; a long whose margin exceeds
    its notional has LP <= 0 (it cannot be liquidated) and is returned as 0.
    """
    q = abs(size)
    if q == 0:
        return math.nan, tiers[0]
    candidates = []
    for t in tiers:
        if size > 0:
            lp = (q * entry_price - margin - t.maintenance_amount) / (q * (1 - t.maintenance_margin_rate))
        else:
            lp = (q * entry_price + margin + t.maintenance_amount) / (q * (1 + t.maintenance_margin_rate))
        lp = max(lp, 0.0)
        candidates.append((lp, t))
        if t.notional_floor <= q * lp < t.notional_cap:
            return lp, t
    # No tier is self-consistent (only at a boundary, by rounding): use the tier at entry.
    t = tier_for_notional(tiers, q * entry_price)
    return next(lp for lp, c in candidates if c is t), t


def bankruptcy_price(size: float, entry_price: float, margin: float) -> float:
    """Price at which an isolated position's equity is zero: long EP - WB/Q, short EP + WB/Q."""
    q = abs(size)
    if q == 0:
        return math.nan
    return entry_price - margin / q if size > 0 else entry_price + margin / q


def unrealized_pnl(size: float, entry_price: float, price: float) -> float:
    """s x Q x (P - EP) with the sign carried by `size`."""
    return size * (price - entry_price)


def cross_account_equity(wallet: float, positions: Iterable[tuple[float, float, float]]) -> float:
    """Cross equity = wallet + sum(size x (mark - entry)) over (size, entry, mark) positions."""
    return wallet + sum(s * (m - e) for s, e, m in positions)


def tiers_from_rows(rows: Iterable[dict]) -> list[Tier]:
    """Tiers of one symbol from risk_tiers rows (dicts), sorted by tier number."""
    return [
        Tier(
            int(r["tier"]),
            float(r["notional_floor"]),
            float(r["notional_cap"]),
            float(r["max_leverage"]),
            float(r["maintenance_margin_rate"]),
            float(r["maintenance_amount"]),
        )
        for r in sorted(rows, key=lambda r: r["tier"])
    ]
