"""The synthetic venue (DESIGN section 3): a deterministic, vectorized simulator of one
perpetual-futures venue, coherent across every canonical dataset.

    simulate(scale, start, days, out, seed=7, incidents=None, chunks=None, workers=None)
        -> list of simulated dates

writes `<out>/<dataset>/date=YYYY-MM-DD/data.parquet` for every dataset of `schema.DATASETS`,
the ground truth in `<out>/_truth/date=.../` (incidents.json, liquidation_book.parquet) and the
end-of-day state in `<out>/_state/date=.../`. A run whose `start` has the previous day's state
continues from it (byte-identical to a single longer run: each day's randomness is seeded from
(seed, date)); otherwise `start` is the venue's genesis (`<out>/_state/genesis/`).

Chunking (memory): each day is generated per symbol in the engine (optionally in `workers`
processes; env VENUE_RISK_SIM_WORKERS, default 2 at `large`) and per time window for the order
flow and the big files (`chunks` windows a day; env VENUE_RISK_SIM_CHUNK, default 100 at `large`): trades,
order_events, index_components and api_requests are streamed with fixed-size row groups
(day.ROW_GROUP rows). The random draws do not depend on either, so the files are byte-identical
whatever the chunking (a `large` day: ~50M orders, ~100M order events, < 6 GB peak RSS).

Incidents: `incidents=None` uses the default plan anchored at the venue's genesis (demo: a stale
index source on ETHUSDT on day 2, a BTCUSDT volatility shock with a liquidation cluster in thin
books on day 4, ... and account incidents on days 2-6; tiny: a stale source and a shock on days 0
and 1). Explicit `Incident`s take a date, or an int day offset from `start`. Kinds and their
params: `incidents.py` (market: stale_index_source, broken_index_source, crowded_funding
(multi-day), volatility_shock; ALL_KINDS) and `account_incidents.py` (ACCOUNT_KINDS:
reduce_only_grew_position, post_only_took_liquidity, fill_after_cancel, cancel_burst,
thin_book_cluster, leverage_spike, over_scoped_key, automation_key_without_kill_switch,
cross_margin_small_hedge_trigger); see there to add a kind.

    random_plan(scale, start, days, seed, kinds=(...), per_kind=2) -> list[Incident]
    read_truth(out, day) -> list[dict]  (day=None: every simulated day, in date order)

`random_plan` places `per_kind` incidents of each kind at seeded days, times and symbols (dates,
not offsets: the plan means the same in a split run). Truth records:
{kind, symbol, start, end (ISO-8601 UTC), source, accounts, details}.

Conventions (what the files mean):
- positions_eod: flat positions are omitted; it equals `positions.apply_fills(previous day's
  positions_eod, the day's trades)` (genesis positions are in `_state/genesis/positions.parquet`).
  margin_mode / leverage come from the account's settings; isolated_margin is 0 for cross.
- accounts_eod.wallet_balance: total wallet (isolated margins included, unrealized PnL excluded);
  it moves only by realized PnL, trading and liquidation fees, funding, and the shortfall the
  insurance fund covers on a liquidation. No deposits or withdrawals; orders are never blocked
  for lack of wallet.
- Cross-margin accounts (market makers, the backstop account, cross traders at 2-3x) are not
  liquidated: the simulator keeps cross traders at low leverage instead of running the cross rule.
- Liquidations run on isolated positions only; the incremental path closes the whole position in
  2-8 IOC orders (not only down to a healthy tier). ADL is not simulated (the fund is sized so it
  never runs dry).
- insurance_fund row at minute m: the balance after every liquidation with ts_done <= m.
- market_metrics row at ts: open interest and long/short account ratio (traders only) from the
  positions after every event before ts; taker buy/sell ratio over [ts, ts + 5 min).
- mark_index.last_price: the last trade at or before the second (the previous day's last trade
  before the first one).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from venue_risk.simulate.config import SCALES, Scale
from venue_risk.simulate.incidents import (
    ACCOUNT_KINDS, ALL_KINDS, REGISTRY, Incident, default_plan, random_plan)

__all__ = ["simulate", "SCALES", "Incident", "REGISTRY", "ALL_KINDS", "ACCOUNT_KINDS", "day_dates",
           "random_plan", "read_truth"]


def read_truth(out: Path, day: dt.date | None = None) -> list[dict]:
    """The ground-truth incident records of `day` (`<out>/_truth/date=.../incidents.json`); with
    day=None, those of every simulated day in date order. A day that was not simulated raises
    FileNotFoundError."""
    import json

    root = Path(out) / "_truth"
    if day is None:
        files = sorted(root.glob("date=*/incidents.json"))
    else:
        if isinstance(day, str):
            day = dt.date.fromisoformat(day)
        files = [root / f"date={day.isoformat()}" / "incidents.json"]
    rows: list[dict] = []
    for f in files:
        rows.extend(json.loads(f.read_text()))
    return rows


def day_dates(start: dt.date, days: int) -> list[dt.date]:
    """The `days` consecutive dates from `start`."""
    return [start + dt.timedelta(days=i) for i in range(days)]


def simulate(scale: str, start: dt.date, days: int, out: Path, seed: int = 7,
             incidents: list[Incident] | None = None, verbose: bool | None = None,
             chunks: int | None = None, workers: int | None = None) -> list[dt.date]:
    """Simulate `days` days from `start` into `out`; returns the dates written. `chunks` (time
    windows a day) and `workers` (engine processes) change memory and time, never the output."""
    from venue_risk.simulate import accounts, market, state
    from venue_risk.simulate.day import simulate_day

    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    if isinstance(start, str):
        start = dt.date.fromisoformat(start)
    sc: Scale = SCALES[scale]
    out = Path(out)
    verbose = bool(os.environ.get("VENUE_RISK_SIM_VERBOSE")) if verbose is None else verbose
    acc = accounts.build(sc, seed)
    st = state.load(out, start - dt.timedelta(days=1))
    if st is None:
        g_old = state.load(out, None)
        if g_old is not None and dt.date.fromisoformat(g_old["genesis"]) < start:
            raise ValueError(f"{out} holds a venue from genesis {g_old['genesis']} without the state of "
                             f"{start - dt.timedelta(days=1)}: simulate the missing days first "
                             f"(or use a new folder to start a new venue on {start})")
        g = accounts.genesis(sc, acc, seed)
        st = {**g, "market": [market.genesis_state(i) for i in sc.instruments],
              "genesis": start.isoformat(), "fund": sc.insurance_fund, "next_trade_id": 1,
              "next_order_id": 1, "next_liq_id": 1, "key_last_used": {}}
        state.save(out, None, st)
        st = state.load(out, None)
    genesis = dt.date.fromisoformat(st["genesis"])
    if incidents is None:
        plan, anchor = default_plan(scale, genesis, 10_000, [i.symbol for i in sc.instruments]), genesis
    else:
        plan, anchor = incidents, start
    dates = day_dates(start, days)
    for day in dates:
        new_state, stats = simulate_day(sc, acc, day, st, seed, plan, anchor, out, chunks=chunks, workers=workers)
        state.save(out, day, new_state)
        st = state.load(out, day)
        if verbose:
            print(stats)
    return dates
