"""The day's market per symbol: true prices, index sources, published index, mark, book.

- Volatility regime: per-minute log-vol lv follows an AR(1) (half-life ~80 min, sd 0.3; 70% common
  across symbols); per-second sigma_t = sigma_calm x exp(lv - 0.045) x plan.vol_mult.
- Log returns r_t = sigma_t (beta z_c + sqrt(1 - beta^2) z_i) + jumps (Poisson, ~2 a day, sd 0.3%)
  + plan.ret_shift + a weak pull to the genesis level (2% of the log gap a day).
- Venue mid = true x exp(premium + plan.premium_shift), premium an AR(1) per second (mean 0.5 bp,
  sd 2 bp, ~5 min; the state carries the AR part only).
- Book per minute: half spread = base x (sigma/sigma_calm) x plan.spread_mult x noise;
  cumulative depth at band b% = D_1% x b^0.7 x (sigma/sigma_calm)^-0.8 x plan.depth_mult x noise
  (depth shrinks and spreads widen with volatility). best bid/ask are tick-rounded outwards.
- Index sources: each updates every U(1, 2) s (receipt time), carries the true price at its own
  source time (received - latency, lognormal around the source's median latency) x exp(bias + noise);
  plan.source_shift multiplies the updates whose source time is in a window by (1 + offset),
  plan.silent drops the updates received in a window.
- Index: `venue_risk.index_rule.compute_index` on the per-second matrix of latest received prices.
- Mark = index x (1 + clamp(mean of (mid - index) / index over the last 60 s, +-0.5%)), tick-rounded.
- Funding at 00:00, 08:00, 16:00: premium = mean over the interval of (mid - index) / index
  (mid = (best_bid + best_ask) / 2 as published), rate = clamp(premium + clamp(interest - premium,
  -0.05%, 0.05%), -cap, cap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from venue_risk import index_rule
from venue_risk.simulate.config import (
    BANDS, FUNDING_CLAMP, INDEX_MIN_SOURCES, INDEX_OUTLIER_PCT, INDEX_STALE_S, INTEREST_8H, MINUTES,
    PREMIUM_MEAN, SECONDS, SEGMENT_MID, Instrument, Scale)
from venue_risk.simulate.incidents import DayPlan

BASIS_WINDOW = 60
BASIS_CLAMP = 0.005
FUNDING_TIMES = (0, 28_800, 57_600)


def tick_round(x: np.ndarray | float, tick: float, how: str = "nearest") -> np.ndarray:
    """Round to the tick grid (and to the tick's decimals, so prices print cleanly)."""
    dec = max(0, int(round(-np.log10(tick)))) + 1
    f = {"nearest": np.round, "down": np.floor, "up": np.ceil}[how]
    return np.round(f(np.asarray(x) / tick) * tick, dec)


def genesis_state(inst: Instrument) -> dict:
    """Market state before the first day (source times in the previous day's seconds)."""
    n = len(inst.sources)
    return {"logp": float(np.log(inst.price)), "lv": 0.0, "premium": PREMIUM_MEAN,
            "basis_tail": [0.0] * (BASIS_WINDOW - 1), "index": inst.price,
            "src_price": [inst.price] * n, "src_received_s": [SECONDS - 1.0] * n,
            "funding_sum": 0.0, "funding_n": 0, "last_price": inst.price}


@dataclass
class SymbolMarket:
    inst: Instrument
    true: np.ndarray
    sigma: np.ndarray  # per-second volatility (T,)
    sigma_min: np.ndarray  # (MINUTES,)
    bid: np.ndarray
    ask: np.ndarray
    mid: np.ndarray  # (bid + ask) / 2
    index: np.ndarray
    mark: np.ndarray
    status: np.ndarray  # (T, n_sources) index_rule status codes
    depth_bid: np.ndarray  # (MINUTES, 9) cumulative base qty to each band
    depth_ask: np.ndarray
    comp_received_us: np.ndarray
    comp_ts_us: np.ndarray
    comp_source: np.ndarray  # source index
    comp_price: np.ndarray
    funding: list  # (second, rate, premium, mark, index)
    state: dict  # market state at the end of the day
    buy_bias: np.ndarray | None = None  # (T,) added to the traders' P(buy) (None: 0)
    target_mult: np.ndarray | None = None  # (T,) multiplies the traders' target size (None: 1)
    crowd_share: float = 1.0  # share of traders buy_bias / target_mult apply to


def _ar1(x: np.ndarray, phi: float, y0: float) -> np.ndarray:
    """y_t = phi y_(t-1) + x_t with y_(-1) = y0."""
    y, _ = lfilter([1.0], [1.0, -phi], x, zi=[phi * y0])
    return y


def generate(scale: Scale, plan: DayPlan, states: list[dict], rng: np.random.Generator) -> list[SymbolMarket]:
    """The day's market for every instrument of `scale` (states: each symbol's market state)."""
    n_sym = len(scale.instruments)
    t = SECONDS
    minute = np.arange(t) // 60
    zc = rng.standard_normal(t)
    ec = rng.standard_normal(MINUTES)
    phi_v = np.exp(-1.0 / 120.0)
    out = []
    for i, inst in enumerate(scale.instruments):
        st = states[i]
        r_sym = np.random.default_rng(rng.integers(2**63))
        lv = _ar1(0.3 * np.sqrt(1 - phi_v**2) * (0.7 * ec + 0.714 * r_sym.standard_normal(MINUTES)),
                  phi_v, st["lv"])
        sigma = inst.sigma_s * np.exp(lv[minute] - 0.045) * plan.vol_mult[i]
        r = sigma * (inst.beta * zc + np.sqrt(1 - inst.beta**2) * r_sym.standard_normal(t))
        n_jump = r_sym.poisson(2.0)
        r[r_sym.integers(0, t, n_jump)] += r_sym.normal(0.0, 0.003, n_jump)
        r += plan.ret_shift[i] - 0.02 * (st["logp"] - np.log(inst.price)) / t
        true = np.exp(st["logp"] + np.cumsum(r))
        phi_p = np.exp(-1.0 / 300.0)
        prem = PREMIUM_MEAN + _ar1(2e-4 * np.sqrt(1 - phi_p**2) * r_sym.standard_normal(t), phi_p,
                                   st["premium"] - PREMIUM_MEAN)
        mid_true = true * np.exp(prem if plan.premium_shift is None else prem + plan.premium_shift[i])
        sigma_min = sigma.reshape(MINUTES, 60).mean(axis=1)
        vr = sigma_min / inst.sigma_s
        hs = inst.half_spread_bps * 1e-4 * vr * plan.spread_mult[i] * np.exp(0.1 * r_sym.standard_normal(MINUTES))
        bid = tick_round(mid_true * (1 - hs[minute]), inst.tick, "down")
        ask = tick_round(mid_true * (1 + hs[minute]), inst.tick, "up")
        ask = np.where(ask <= bid, tick_round(bid + inst.tick, inst.tick), ask)
        mid = (bid + ask) / 2
        d1 = inst.depth_1pct * scale.depth_scale / mid[::60]
        shape = BANDS**0.7
        base = (d1 * vr**-0.8 * plan.depth_mult[i])[:, None] * shape[None, :]
        depth_bid = base * np.exp(0.15 * r_sym.standard_normal(MINUTES))[:, None]
        depth_ask = base * np.exp(0.15 * r_sym.standard_normal(MINUTES))[:, None]
        # index sources
        n_src = len(inst.sources)
        rec_l, ts_l, px_l = [], [], []
        rec_s, px_s = [], []
        for j, src in enumerate(inst.sources):
            gaps = r_sym.integers(1_000_000, 2_000_001, t)
            rec = r_sym.integers(0, 2_000_000) + np.concatenate([[0], np.cumsum(gaps[:-1])])
            rec = rec[rec < t * 1_000_000]
            lat = np.round(inst.latency_ms[j] * 1000 * np.exp(0.3 * r_sym.standard_normal(len(rec)))).astype(np.int64)
            ts = rec - np.maximum(lat, 1000)
            bias = r_sym.normal(0.0, 1e-4)
            px = true[np.clip(ts // 1_000_000, 0, t - 1)] * np.exp(bias + 0.5e-4 * r_sym.standard_normal(len(rec)))
            for sym, s_name, a, b, off in plan.source_shift:
                if sym == inst.symbol and s_name == src:
                    px = np.where((ts >= a * 1e6) & (ts < b * 1e6), px * (1 + off), px)
            keep = np.ones(len(rec), dtype=bool)
            for sym, s_name, a, b in plan.silent:
                if sym == inst.symbol and s_name == src:
                    keep &= ~((rec >= a * 1_000_000) & (rec < b * 1_000_000))
            rec, ts, px = rec[keep], ts[keep], tick_round(px[keep], inst.tick)
            rec_l.append(rec), ts_l.append(ts), px_l.append(px)
            rec_s.append(rec / 1e6), px_s.append(px)
        grid = np.arange(t, dtype=np.float64)
        price_m, age_m = index_rule.source_matrix(
            grid, rec_s, px_s, np.asarray(st["src_received_s"]) - t, np.asarray(st["src_price"]))
        index, status = index_rule.compute_index(
            price_m, age_m, np.asarray(inst.weights), INDEX_OUTLIER_PCT, INDEX_STALE_S, INDEX_MIN_SOURCES,
            st["index"])
        basis = (mid - index) / index
        ext = np.concatenate([np.asarray(st["basis_tail"]), basis])
        cs = np.concatenate([[0.0], np.cumsum(ext)])
        smooth = (cs[BASIS_WINDOW:] - cs[:-BASIS_WINDOW]) / BASIS_WINDOW
        mark = tick_round(index * (1 + np.clip(smooth, -BASIS_CLAMP, BASIS_CLAMP)), inst.tick)
        # funding
        p = basis
        funding = []
        for k, sec in enumerate(FUNDING_TIMES):
            if sec == 0:
                prem_k = st["funding_sum"] / st["funding_n"] if st["funding_n"] else 0.0
            else:
                prem_k = float(np.mean(p[FUNDING_TIMES[k - 1]:sec]))
            rate = prem_k + float(np.clip(INTEREST_8H - prem_k, -FUNDING_CLAMP, FUNDING_CLAMP))
            rate = float(np.clip(rate, -inst.funding_cap, inst.funding_cap))
            funding.append((sec, rate, prem_k, float(mark[sec]), float(index[sec])))
        tail = p[FUNDING_TIMES[-1]:]
        comp_src = np.concatenate([np.full(len(x), j, dtype=np.int64) for j, x in enumerate(rec_l)])
        new_state = {
            "logp": float(np.log(true[-1])), "lv": float(lv[-1]), "premium": float(prem[-1]),
            "basis_tail": basis[-(BASIS_WINDOW - 1):].tolist(), "index": float(index[-1]),
            "src_price": [float(x[-1]) if len(x) else st["src_price"][j] for j, x in enumerate(px_l)],
            "src_received_s": [float(x[-1] / 1e6) if len(x) else st["src_received_s"][j] - t
                               for j, x in enumerate(rec_l)],
            "funding_sum": float(np.sum(tail)), "funding_n": int(len(tail)),
            "last_price": st["last_price"],
        }
        out.append(SymbolMarket(inst, true, sigma, sigma_min, bid, ask, mid, index, mark, status,
                                depth_bid, depth_ask, np.concatenate(rec_l), np.concatenate(ts_l),
                                comp_src, np.concatenate(px_l), funding, new_state,
                                None if plan.buy_bias is None else plan.buy_bias[i],
                                None if plan.target_mult is None else plan.target_mult[i],
                                float(plan.crowd_share.get(inst.symbol, 1.0))))
    return out


def walk_book(mkt: SymbolMarket, second: int, side_sell: bool, qty: float, lot: float) -> list[tuple[float, float]]:
    """Fills of an order of `qty` walking the book at `second`: inside band segment k the fill is at
    mid x (1 -/+ SEGMENT_MID_k / 100) for the segment's quantity (lot-rounded); whatever is left
    beyond the 5% band is not filled. Returns [(price, qty)]."""
    depth = (mkt.depth_bid if side_sell else mkt.depth_ask)[second // 60]
    seg = np.diff(np.concatenate([[0.0], depth]))
    mid = float(mkt.mid[second])
    fills = []
    rem = qty
    for k in range(len(seg)):
        if rem <= lot * 0.5:
            break
        take = min(rem, np.floor(seg[k] / lot) * lot)
        if rem - take < lot * 0.5:
            take = rem
        if take <= 0:
            continue
        px = mid * (1 - SEGMENT_MID[k] / 100) if side_sell else mid * (1 + SEGMENT_MID[k] / 100)
        fills.append((float(tick_round(px, mkt.inst.tick)), float(take)))
        rem -= take
    return fills
