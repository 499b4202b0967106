"""Venue summary figures and RAG statuses (DESIGN 4.11), worked by hand.

Frame builders come from test_slippage.py (fixture day 2024-03-01)."""

from __future__ import annotations

import datetime as dt
import math
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_slippage as fx  # noqa: E402

from venue_risk.metrics import forced_cost, slippage, summary  # noqa: E402
from venue_risk.schema import LIQUIDATION_PATHS  # noqa: E402

approx = pytest.approx
HISTORY_SCHEMA = {"date": pl.Date, "figure": pl.String, "value": pl.Float64}


@pytest.fixture
def figures() -> dict[str, float]:
    ex = slippage.liquidation_executions(fx.liquidations(), fx.trades(), fx.book_depth())
    costs = forced_cost.forced_costs(ex, fx.instruments(), fx.risk_tiers())
    return summary.venue_day_figures(fx.trades(), fx.market_metrics(), fx.liquidations(),
                                     fx.insurance_fund(), ex, costs=costs)


def history(rows: dict[str, list[float]], end: dt.date = fx.DAY) -> pl.DataFrame:
    """Long-form history: each figure's values on the days before `end`, oldest first."""
    out = []
    for figure, values in rows.items():
        for i, v in enumerate(values):
            out.append({"date": end - dt.timedelta(days=len(values) - i), "figure": figure, "value": v})
    return pl.DataFrame(out, schema=HISTORY_SCHEMA)


def by_figure(rows: pl.DataFrame) -> dict[str, dict]:
    return {r["figure"]: r for r in rows.to_dicts()}


def test_venue_day_figures(figures):
    # trades: 197.5 + 100.5 + 199.2 (liquidation fills) + 200 (ordinary) = 697.2
    assert figures["volume_notional"] == approx(697.2)
    assert figures["trade_count"] == 6.0
    # last snapshot per symbol, whatever the row order: BTC 6000 + ETH 3000
    assert figures["open_interest_value_close"] == approx(9000.0)
    # qty x mark: 200 + 100 + 500 + 150
    assert figures["liquidation_count"] == 4.0
    assert figures["liquidation_notional"] == approx(950.0)
    assert figures["liquidation_count_market"] == 2.0 and figures["liquidation_notional_market"] == approx(300.0)
    assert figures["liquidation_count_incremental"] == 1.0
    assert figures["liquidation_notional_incremental"] == approx(500.0)
    assert figures["liquidation_notional_auction"] == approx(150.0)
    assert figures["liquidation_count_backstop"] == 0.0 and figures["liquidation_count_adl"] == 0.0
    assert all(f"liquidation_count_{p}" in figures for p in LIQUIDATION_PATHS)
    assert figures["insurance_fund_open"] == approx(1000.0)
    assert figures["insurance_fund_close"] == approx(1002.25)
    assert figures["insurance_fund_net"] == approx(2.25)
    assert figures["adl_events"] == 0.0
    # slippage of filled liquidations [40, 50, 125]: position 0.95 * 2 = 1.9 -> 50 + 0.9 * 75
    assert figures["slippage_p95_bps"] == approx(117.5)
    # from forced_costs (fee actually charged): liquidation 1 = 0.0125 / 0.005 = 2.5;
    # liquidation 3 = (2 / 200 + 0.004) / 0.004 = 3.5 (fee 2 on 4 x mark 50, 40 bps)
    assert figures["max_buffer_share"] == approx(3.5)
    assert all(isinstance(v, float) for v in figures.values())


def test_venue_day_figures_empty_day():
    ex = slippage.liquidation_executions(fx.frame("liquidations", []), fx.frame("trades", []),
                                         fx.frame("book_depth", []))
    figs = summary.venue_day_figures(fx.frame("trades", []), fx.frame("market_metrics", []),
                                     fx.frame("liquidations", []), fx.frame("insurance_fund", []), ex,
                                     forced_cost.forced_costs(ex, fx.instruments(), fx.risk_tiers()))
    assert figs["volume_notional"] == 0.0 and figs["liquidation_count"] == 0.0
    assert math.isnan(figs["slippage_p95_bps"]) and math.isnan(figs["max_buffer_share"])
    assert math.isnan(figs["insurance_fund_close"])
    rows = by_figure(summary.summary_rows(figs, pl.DataFrame(schema=HISTORY_SCHEMA)))
    assert rows["slippage_p95_bps"]["status"] == "green"
    assert rows["slippage_p95_bps"]["value"] is None
    assert rows["slippage_p95_bps"]["threshold"].startswith("no filled liquidations today")
    assert rows["insurance_fund_close"]["status"] == "amber"  # no fund data is not fine


def test_summary_rows_without_history(figures):
    rows = summary.summary_rows(figures, pl.DataFrame(schema=HISTORY_SCHEMA))
    assert rows.columns == ["figure", "label", "value", "baseline", "baseline_days", "status", "threshold", "n"]
    assert "insurance_fund_open" not in rows["figure"].to_list()  # helper figure, not a row
    r = by_figure(rows)
    assert r["volume_notional"]["label"] == "Volume (USDT)"
    # a rule that only compares with the baseline checks nothing without one: not green
    assert r["volume_notional"]["status"] == "insufficient_data"
    assert r["volume_notional"]["baseline"] is None and r["volume_notional"]["baseline_days"] == 0
    assert r["volume_notional"]["threshold"] == "insufficient data: baseline of 0 day(s) (minimum 3)"
    # 950 > 5 % of 697.2 (34.86): red on the absolute rule alone
    assert r["liquidation_notional"]["status"] == "red"
    assert r["liquidation_notional"]["threshold"] == (
        "red if > 5% of volume; amber if > 2% of volume; no baseline yet")
    # 117.5 bps: above 50 (amber), not above 150 (red)
    assert r["slippage_p95_bps"]["status"] == "amber"
    assert r["slippage_p95_bps"]["threshold"] == "red if > 150; amber if > 50; no baseline yet"
    assert r["max_buffer_share"]["status"] == "red"
    assert r["max_buffer_share"]["threshold"] == "red if > 2; amber if > 1"
    assert r["insurance_fund_net"]["status"] == "green"
    assert r["insurance_fund_net"]["threshold"] == "red if < -5% of the opening balance; amber if < 0"
    assert r["adl_events"]["status"] == "green"
    assert summary.overall_status(rows) == "red"


def test_summary_rows_with_history():
    today = {"volume_notional": 697.2, "liquidation_count": 4.0, "slippage_p95_bps": 117.5,
             "insurance_fund_net": -60.0, "insurance_fund_open": 1000.0, "adl_events": 1.0,
             "max_buffer_share": math.nan, "trade_count": 6.0}
    hist = history({"volume_notional": [600.0, 700.0, 800.0], "liquidation_count": [1.0, 1.0, 2.0],
                    "slippage_p95_bps": [40.0, 60.0], "trade_count": [30.0, 40.0, 35.0]})
    r = by_figure(summary.summary_rows(today, hist))
    # volume: baseline median(600, 700, 800) = 700; 697.2 within [0.5x, 2x]
    assert r["volume_notional"]["baseline"] == approx(700.0) and r["volume_notional"]["baseline_days"] == 3
    assert r["volume_notional"]["status"] == "green"
    assert r["volume_notional"]["threshold"] == (
        "red if > 4x baseline or < 0.25x baseline; amber if > 2x baseline or < 0.5x baseline")
    # trades: baseline 35; 6 < 0.25 * 35 = 8.75 -> red
    assert r["trade_count"]["status"] == "red"
    # liquidations: baseline median(1, 1, 2) = 1; 4 > 3x -> red
    assert r["liquidation_count"]["baseline"] == approx(1.0)
    assert r["liquidation_count"]["status"] == "red"
    assert r["liquidation_count"]["threshold"] == "red if > 3x baseline; amber if > 1.5x baseline"
    # slippage: baseline 50; 117.5 > 2x (100) and > 50 absolute, not > 150 nor > 4x -> amber
    assert r["slippage_p95_bps"]["baseline"] == approx(50.0)
    assert r["slippage_p95_bps"]["status"] == "amber"
    # fund: -60 < -5 % of 1000 = -50 -> red
    assert r["insurance_fund_net"]["status"] == "red"
    # one ADL event: amber
    assert r["adl_events"]["status"] == "amber"
    # no filled liquidation today: no buffer consumed
    assert r["max_buffer_share"]["status"] == "green" and r["max_buffer_share"]["value"] is None
    small_loss = by_figure(summary.summary_rows({**today, "insurance_fund_net": -10.0}, hist))
    assert small_loss["insurance_fund_net"]["status"] == "amber"


def test_baseline_is_median_of_trailing_30_days_with_a_value():
    values = [float(v) for v in range(1, 36)] + [math.nan]  # 35 days, then a day without value
    r = by_figure(summary.summary_rows({"volume_notional": 20.0}, history({"volume_notional": values})))
    # the 30 most recent days with a value hold 6..35: median (20 + 21) / 2 = 20.5
    assert r["volume_notional"]["baseline"] == approx(20.5)
    assert r["volume_notional"]["baseline_days"] == 30


def test_zero_baseline_turns_ratio_rules_off():
    r = by_figure(summary.summary_rows({"liquidation_count": 5.0},
                                       history({"liquidation_count": [0.0, 0.0, 0.0]})))
    assert r["liquidation_count"]["status"] == "green"
    assert r["liquidation_count"]["threshold"] == "baseline is 0: ratio rules off"


def test_threshold_override_and_data_quality():
    today = {"volume_notional": 697.2, "data_quality_failed_checks": 2.0, "data_quality_status": 1.0}
    rows = summary.summary_rows(today, pl.DataFrame(schema=HISTORY_SCHEMA),
                                thresholds={"volume_notional": {"above": (500.0, 1000.0)}})
    r = by_figure(rows)
    assert r["volume_notional"]["status"] == "amber"
    assert r["volume_notional"]["threshold"] == "red if > 1000; amber if > 500"
    assert r["data_quality_failed_checks"]["status"] == "amber"
    assert r["data_quality_status"]["status"] == "amber"  # warnings
    failed = by_figure(summary.summary_rows({"data_quality_status": summary.DATA_QUALITY_CODES["failed"]},
                                            pl.DataFrame()))
    assert failed["data_quality_status"]["status"] == "red"
    assert summary.overall_status(rows) == "amber"


def test_overall_status():
    # nothing rated is never green
    assert summary.overall_status(pl.DataFrame(schema=summary.SUMMARY_SCHEMA)) == "insufficient_data"
    rows = pl.DataFrame({"status": ["green", "amber", "green"]})
    assert summary.overall_status(rows) == "amber"


def test_every_default_rule_has_a_label():
    assert set(summary.DEFAULT_THRESHOLDS) <= set(summary.FIGURE_LABELS)
    assert set(summary.HEADLINE_FIGURES) <= set(summary.FIGURE_LABELS)
    assert summary.METHOD == summary.__doc__


def test_market_day_figures_from_metric_tables():
    tables = {
        "crowding": pl.DataFrame({"symbol": ["A", "B", "C"], "crowded": [True, False, True],
                                  "crowded_and_vol_rising": [False, False, True]}),
        "index_gap_summary": pl.DataFrame({"max_abs_gap_bps": [0.0, 0.04]}),
        "exclusion_windows": pl.DataFrame({"source": ["okx", "kraken"]}),
        "broken_source_counterfactual": pl.DataFrame({"cf_move_bps": [-480.0, 120.0],
                                                      "published_move_bps": [0.02, 0.0]}),
        "single_source_sensitivity": pl.DataFrame({"worst_move_bps": [35.0, 12.0],
                                                   "positions_crossed": [3, 0]}),
        "mark_basis": pl.DataFrame({"basis_abs_p99_bps": [4.0, 9.5]}),
        "feature_drift": pl.DataFrame({"drifted": [False, True, None]}),
    }
    f = summary.market_day_figures(tables)
    assert f == {"crowded_symbols": 2.0, "crowded_vol_rising_symbols": 1.0, "index_max_gap_bps": 0.04,
                 "index_source_exclusions": 2.0, "broken_source_cf_move_bps": 480.0,
                 "broken_source_published_move_bps": 0.02, "single_source_worst_move_bps": 35.0,
                 "single_source_positions_crossed": 3.0, "mark_basis_p99_bps": 9.5, "drifted_features": 1.0}
    assert summary.market_day_figures({})["crowded_symbols"] == 0.0
