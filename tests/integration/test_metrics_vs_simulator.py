"""Slippage and forced cost computed from the canonical files agree with the simulator's own
bookkeeping (its `_truth/.../liquidation_book.parquet`, built from the fills it generated) for
every liquidation of simulated days, and the insurance-fund flows reconcile with its balance."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_series_equal

from venue_risk.metrics import forced_cost, slippage
from venue_risk.simulate import Incident, simulate
from venue_risk.sources import FilesSource

START = dt.date(2026, 11, 1)
DAYS = 3


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    """Three tiny days: the default plan (stale source on day 1, volatility shock on day 2), then a
    day with a -25 % crash and a +35 % spike in thin books, so every execution path occurs,
    including fills beyond bankruptcy and backstop take-overs."""
    out = tmp_path_factory.mktemp("sim")
    simulate("tiny", START, 2, out, seed=7)
    crash = [Incident("volatility_shock", 0, "BTCUSDT", dt.time(6, 0), 1200,
                      {"move": -0.25, "depth_x": 0.05, "rebound": 0.0}),
             Incident("volatility_shock", 0, "BTCUSDT", dt.time(12, 0), 1200,
                      {"move": 0.35, "depth_x": 0.05, "rebound": 0.0})]
    simulate("tiny", START + dt.timedelta(days=2), 1, out, seed=7, incidents=crash)
    return out


@pytest.mark.parametrize("offset", range(DAYS))
def test_every_liquidation_matches_the_simulator(venue, offset):
    day = START + dt.timedelta(days=offset)
    src = FilesSource(venue)
    data = {n: src.read(n, day) for n in ("liquidations", "trades", "book_depth", "instruments",
                                           "risk_tiers", "insurance_fund")}
    truth = pl.read_parquet(venue / "_truth" / f"date={day}" / "liquidation_book.parquet")
    assert truth.height > 0, "the simulated day has liquidations to check"

    ex = slippage.liquidation_executions(data["liquidations"], data["trades"], data["book_depth"])
    costs = forced_cost.forced_costs(ex, data["instruments"], data["risk_tiers"])
    assert ex.height == data["liquidations"].height == truth.height
    got = ex.join(costs.select("liquidation_id", "equity_lost", "buffer_share", "cost_rate"),
                  on="liquidation_id").join(truth, on="liquidation_id", suffix="_truth")
    assert got.height == truth.height
    for col in ("path", "side"):
        assert (got[col] == got[f"{col}_truth"]).all()
    for col in ("filled_qty", "vwap", "filled_notional", "slippage_bps", "shortfall",
                "beyond_bankruptcy_qty", "fee", "insurance_fund_delta"):
        assert_series_equal(got[col], got[f"{col}_truth"], check_names=False, rel_tol=1e-9, abs_tol=1e-9)

    # Equity lost = the fee the simulator charged + its fills' adverse distance from the mark.
    sign = pl.when(pl.col("side_truth") == "sell").then(1.0).otherwise(-1.0)
    expected = got.select(pl.col("fee_truth") + sign * (pl.col("mark_price_truth") - pl.col("vwap_truth"))
                          * pl.col("filled_qty_truth"))
    assert_series_equal(got["equity_lost"], expected.to_series(), check_names=False, rel_tol=1e-9, abs_tol=1e-6)
    # Above 1 exactly when fills went beyond bankruptcy and drew on the insurance fund.
    beyond = got.filter(pl.col("buffer_share") > 1 + 1e-9)
    assert (beyond["shortfall_truth"] > 0).all()

    flows = forced_cost.insurance_fund_flows(data["liquidations"], data["insurance_fund"])
    assert flows["net"].sum() == pytest.approx(truth["insurance_fund_delta"].sum(), abs=1e-6)
    assert flows["check_diff"].abs().max() < 1e-6


def test_the_simulated_days_exercise_every_execution_path(venue):
    truth = pl.concat([pl.read_parquet(p) for p in sorted(venue.glob("_truth/*/liquidation_book.parquet"))])
    assert {"incremental", "auction", "market", "backstop"} <= set(truth["path"].to_list())
    assert (truth["shortfall"] > 0).any() and (truth["beyond_bankruptcy_qty"] > 0).any()
