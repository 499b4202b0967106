"""The venue's accounts: static attributes from the seed alone, and the genesis state.

Account ids: 1 = backstop account; 2 .. 1 + n_mm = market makers (cross margin, post-only,
large wallets); then isolated directional traders (1-2 symbols each, leverage from the realistic
mix capped by the tiers, target notional lognormal around the scale's median, a few whales at
~100x); then cross-margin portfolio traders (2-4 symbols, 2-3x leverage, wallet = 1.5 x sum of
targets / leverage, so they stay far from maintenance margin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from venue_risk.simulate.config import BACKSTOP_ACCOUNT, FIRST_MM, Scale
from venue_risk.simulate.engine import draw_leverage


@dataclass
class Accounts:
    n: int  # array length (ids 1 .. n - 1; index 0 unused)
    is_mm: np.ndarray
    is_trader: np.ndarray
    isolated: np.ndarray
    member: np.ndarray  # (n, S) trades the symbol as a taker
    target: np.ndarray  # (n, S) target position notional
    has_key: np.ndarray  # has a trading API key
    read_key: np.ndarray  # has a second, read-only key
    key_created_days: np.ndarray  # (n, 2) key age at genesis, days
    allow_ips: list  # per account: its allowlisted IPs (strings)
    mm_ids: np.ndarray


def build(scale: Scale, seed: int) -> Accounts:
    rng = np.random.default_rng([seed, 0])
    s_n = len(scale.instruments)
    n_mm, n_iso, n_x = scale.n_market_makers, scale.n_traders, scale.n_cross
    n = FIRST_MM + n_mm + n_iso + n_x
    ids = np.arange(n)
    mm = (ids >= FIRST_MM) & (ids < FIRST_MM + n_mm)
    iso = (ids >= FIRST_MM + n_mm) & (ids < FIRST_MM + n_mm + n_iso)
    cross = ids >= FIRST_MM + n_mm + n_iso
    pop = np.array([i.popularity for i in scale.instruments])
    pop = pop / pop.sum()
    member = np.zeros((n, s_n), dtype=bool)
    target = np.zeros((n, s_n))
    for a in ids[iso | cross]:
        k = int(rng.integers(1, 3)) if iso[a] else int(rng.integers(2, min(4, s_n) + 1))
        k = min(k, s_n)
        member[a, rng.choice(s_n, size=k, replace=False, p=pop)] = True
    med = scale.trader_notional
    target[:] = np.exp(np.log(med) + 1.0 * rng.standard_normal((n, s_n)))
    whale = np.zeros(n, dtype=bool)
    whale[rng.choice(ids[iso], size=max(2, int(round(scale.whale_share * n_iso))), replace=False)] = True
    target[whale] *= 100.0
    target[cross] *= 2.0
    target[~member] = 0.0
    has_key = mm | ((iso | cross) & (rng.random(n) < 0.6))
    read_key = mm | ((iso | cross) & (rng.random(n) < 0.3))
    created = rng.uniform(30, 700, (n, 2))
    ips = [[f"10.{(a >> 8) & 255}.{a & 255}.{j + 1}" for j in range(int(rng.integers(1, 3)))] for a in range(n)]
    return Accounts(n, mm, iso | cross, iso, member, target, has_key, read_key, created, ips,
                    ids[mm])


def genesis(scale: Scale, acc: Accounts, seed: int) -> dict:
    """Fresh venue: leverage settings, wallets, and initial positions at the genesis prices
    (traders at target x U(-1, 1), market makers holding the opposite, split evenly)."""
    rng = np.random.default_rng([seed, 1])
    s_n = len(scale.instruments)
    n = acc.n
    lev = np.full((n, s_n), 10.0)
    lev[BACKSTOP_ACCOUNT] = 1.0
    size = np.zeros((n, s_n))
    entry = np.zeros((n, s_n))
    marg = np.zeros((n, s_n))
    cross_tr = acc.is_trader & ~acc.isolated
    for k, inst in enumerate(scale.instruments):
        tiers = inst.tiers
        for a in np.flatnonzero(acc.is_trader):
            if acc.isolated[a]:
                lev[a, k] = draw_leverage(float(rng.random()), tiers, 1.5 * acc.target[a, k] if acc.target[a, k] else 1.0)
            else:
                lev[a, k] = float(rng.integers(2, 4))
            if acc.member[a, k]:
                q = np.floor(acc.target[a, k] * rng.uniform(-1, 1) / inst.price / inst.lot) * inst.lot
                size[a, k] = q
                entry[a, k] = inst.price if q != 0 else 0.0
                if acc.isolated[a]:
                    marg[a, k] = abs(q) * inst.price / lev[a, k]
        net = -size[acc.is_trader, k].sum()
        mms = acc.mm_ids
        each = np.floor(net / len(mms) / inst.lot) * inst.lot
        for j, a in enumerate(mms):
            q = each if j < len(mms) - 1 else net - each * (len(mms) - 1)
            size[a, k] = q
            entry[a, k] = inst.price if abs(q) >= 1e-9 else 0.0
            if abs(q) < 1e-9:
                size[a, k] = 0.0
    wallet = np.zeros(n)
    iso = acc.isolated
    wallet[iso] = 3.0 * (acc.target[iso] / lev[iso]).sum(axis=1) + 500.0
    wallet[cross_tr] = 1.5 * (acc.target[cross_tr] / lev[cross_tr]).sum(axis=1) + 500.0
    wallet[acc.mm_ids] = 20_000_000.0 * scale.depth_scale
    wallet[BACKSTOP_ACCOUNT] = 10 * scale.insurance_fund
    return {"lev": lev, "size": size, "entry": entry, "margin": marg, "wallet": wallet}
