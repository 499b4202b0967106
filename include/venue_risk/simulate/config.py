"""Scales and instrument reference data of the simulated venue.

Levels, fees and tiers follow DESIGN 3a (Binance USD-M figures): BTC tiers 125x/0.4% ... 1x/50%,
taker 0.05%, maker 0.02%, 8 h funding, interest 0.01% per 8 h, index rule 5% / 10 s / 3 sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from venue_risk import margin

SECONDS = 86_400
MINUTES = 1_440
DAY_US = SECONDS * 1_000_000
BANDS = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 3.0, 4.0, 5.0])  # % from mid, cumulative depth
SEGMENT_MID = (BANDS + np.concatenate([[0.0], BANDS[:-1]])) / 2  # fill distance inside each band
INTEREST_8H = 0.0001
FUNDING_CLAMP = 0.0005
PREMIUM_MEAN = 0.5e-4  # the venue mid's mean premium over the true price in a calm market
INDEX_OUTLIER_PCT = 0.05  # index rule (DESIGN 3a): outlier beyond 5% of the median,
INDEX_STALE_S = 10.0  # stale after 10 s,
INDEX_MIN_SOURCES = 3  # hold below 3 sources
LEVERAGES = np.array([2, 3, 5, 10, 20, 25, 50, 75, 100, 125], dtype=float)
LEVERAGE_P = np.array([0.06, 0.08, 0.16, 0.22, 0.18, 0.10, 0.10, 0.04, 0.04, 0.02])

ALT_BRACKETS: tuple[tuple[float, float, float], ...] = (
    (10_000, 75, 0.005), (50_000, 50, 0.01), (250_000, 25, 0.02), (1_000_000, 20, 0.025),
    (5_000_000, 10, 0.05), (10_000_000, 5, 0.10), (20_000_000, 4, 0.125),
    (30_000_000, 3, 0.15), (50_000_000, 2, 0.25), (100_000_000, 1, 0.50),
)


@dataclass(frozen=True)
class Instrument:
    """One perpetual and its simulation parameters."""

    symbol: str
    base: str
    price: float  # genesis price
    tick: float
    lot: float
    annual_vol: float
    beta: float  # loading on the common factor (correlation = beta_i x beta_j)
    popularity: float  # share of trades and traders
    depth_1pct: float  # notional within 1% of mid per side, calm regime
    half_spread_bps: float
    brackets: tuple[tuple[float, float, float], ...]
    bracket_scale: float
    liquidation_fee_rate: float
    funding_cap: float
    incremental_notional: float
    auction_discount: float = 0.0015
    taker_fee_rate: float = 0.0005
    maker_fee_rate: float = 0.0002
    sources: tuple[str, ...] = ("binance", "coinbase", "okx", "kraken")
    weights: tuple[float, ...] = (0.3, 0.3, 0.2, 0.2)
    latency_ms: tuple[float, ...] = (80.0, 150.0, 250.0, 400.0)

    @property
    def tiers(self) -> list[margin.Tier]:
        return margin.build_tiers(self.brackets, self.bracket_scale)

    @property
    def sigma_s(self) -> float:
        """Per-second log-return volatility in the calm regime."""
        return self.annual_vol / np.sqrt(365.0 * SECONDS)


BTC = Instrument("BTCUSDT", "BTC", 90_000.0, 0.1, 0.001, 0.55, 0.85, 0.45, 4e6, 0.5,
                 margin.BINANCE_BTC_2021, 1.0, 0.005, 0.003, 500_000.0)
ETH = Instrument("ETHUSDT", "ETH", 3_000.0, 0.01, 0.001, 0.70, 0.80, 0.30, 2e6, 0.7,
                 margin.BINANCE_BTC_2021, 0.5, 0.0075, 0.003, 300_000.0)
SOL = Instrument("SOLUSDT", "SOL", 140.0, 0.01, 0.01, 0.90, 0.70, 0.15, 8e5, 1.5,
                 ALT_BRACKETS, 1.0, 0.01, 0.005, 100_000.0)
XRP = Instrument("XRPUSDT", "XRP", 2.2, 0.0001, 0.1, 0.85, 0.65, 0.10, 6e5, 1.5,
                 ALT_BRACKETS, 1.0, 0.01, 0.005, 100_000.0)


def _large_universe(n: int = 40) -> tuple[Instrument, ...]:
    out = [BTC, ETH, SOL, XRP]
    for i in range(4, n):
        px = float(10 ** (1 + (i % 4)))
        out.append(Instrument(f"ALT{i:02d}USDT", f"ALT{i:02d}", px, px * 1e-4, 0.01, 1.0, 0.6,
                              0.02, 3e5, 2.0, ALT_BRACKETS, 1.0, 0.01, 0.005, 100_000.0))
    pop = np.array([x.popularity for x in out])
    pop = pop / pop.sum()
    from dataclasses import replace
    return tuple(replace(x, popularity=float(p)) for x, p in zip(out, pop))


@dataclass(frozen=True)
class Scale:
    """Size of one simulated venue."""

    name: str
    instruments: tuple[Instrument, ...]
    trades_per_day: int  # taker orders per day in the calm regime (fills are ~1.3x)
    n_traders: int  # isolated-margin directional traders
    n_cross: int  # cross-margin portfolio traders (low leverage)
    n_market_makers: int
    trader_notional: float  # median target position notional
    whale_share: float  # share of traders with ~100x the median (incremental-path sizes)
    depth_scale: float = 1.0
    insurance_fund: float = 5_000_000.0
    cancels_per_fill: tuple[int, int] = (2, 5)  # cancelled quotes per filled maker order
    extra: dict = field(default_factory=dict)


def _small(inst: Instrument, incremental: float) -> Instrument:
    from dataclasses import replace
    return replace(inst, incremental_notional=incremental)


SCALES: dict[str, Scale] = {
    # tiny: lower incremental thresholds so its few whales exercise the incremental path
    "tiny": Scale("tiny", (_small(BTC, 150_000.0), _small(ETH, 100_000.0)), 3_000, 40, 4, 2, 8_000.0, 0.05, depth_scale=0.3,
                  insurance_fund=500_000.0),
    "demo": Scale("demo", (BTC, ETH, SOL, XRP), 75_000, 500, 40, 4, 15_000.0, 0.03),
    # large: ~11M trades and ~50M order events (DESIGN 8: 10M trades, 40M order events); fewer
    # cancelled quotes per maker fill than demo, as on a venue whose makers quote less per fill
    "large": Scale("large", _large_universe(40), 7_500_000, 20_000, 1_500, 20, 15_000.0, 0.03,
                   depth_scale=3.0, insurance_fund=50_000_000.0, cancels_per_fill=(0, 1)),
}

BACKSTOP_ACCOUNT = 1  # the venue's backstop liquidity account
FIRST_MM = 2  # market makers are accounts 2 .. 1 + n_market_makers; traders follow
