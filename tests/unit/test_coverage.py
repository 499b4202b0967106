"""Coverage (DESIGN 2): dataset states measured by the gate, figure statuses decided from them,
and the rule that nothing uncovered, unsampled or skipped is ever rated green."""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest

from venue_risk.coverage import (ACCOUNT_DATASETS, MIN_SAMPLES, measure, needs_state,
                                 report_scope)
from venue_risk.errors import InputError
from venue_risk.metrics import summary
from venue_risk.schema import DATASETS
from venue_risk.sources.files import FilesSource

DAY = dt.date(2024, 8, 8)
T0 = dt.datetime(2024, 8, 8, tzinfo=dt.timezone.utc)
NO_HISTORY = pl.DataFrame(schema={"date": pl.Date, "figure": pl.String, "value": pl.Float64})


def _marks(start: dt.datetime, seconds: int) -> pl.DataFrame:
    ts = pl.datetime_range(start, start + dt.timedelta(seconds=seconds - 1), "1s", eager=True,
                           time_unit="us", time_zone="UTC")
    return pl.DataFrame({"ts": ts, "symbol": "BTCUSDT"})


def _full_coverage() -> dict[str, dict]:
    return {d: measure(d, pl.DataFrame(schema=DATASETS[d].schema), DAY, carried=True)
            | {"state": "complete"} for d in DATASETS}


def test_not_carried_is_absent():
    c = measure("liquidations", None, DAY, carried=False)
    assert c["state"] == "absent" and c["rows"] == 0 and c["note"] == "not carried by the source"


def test_full_day_series_is_complete_and_six_minutes_partial():
    full = measure("mark_index", _marks(T0, 86_400), DAY, carried=True)
    assert full["state"] == "complete" and full["rows"] == 86_400 and full["largest_gap_s"] == 1.0
    start = T0 + dt.timedelta(hours=23, minutes=54, seconds=16)
    part = measure("mark_index", _marks(start, 344), DAY, carried=True)
    assert part["state"] == "partial"
    assert part["window_start"] == start.isoformat()
    assert part["first_ts"] == start.isoformat() and part["rows"] == 344


def test_declared_window_wins_and_a_gap_is_reported():
    frame = pl.concat([_marks(T0, 3600), _marks(T0 + dt.timedelta(hours=5), 3600)])
    c = measure("mark_index", frame, DAY, carried=True,
                declared={"from": "2024-08-08T00:00:00Z", "to": "2024-08-08T06:00:00Z",
                          "missing_columns": ["last_price"]})
    assert c["state"] == "partial" and c["declared_window"]
    assert c["window_end"] == "2024-08-08T06:00:00+00:00"
    assert c["largest_gap_s"] == pytest.approx(4 * 3600 + 1)
    assert c["missing_columns"] == ["last_price"]


def test_rare_events_cover_the_day_when_carried():
    one = pl.DataFrame({"ts_trigger": [T0 + dt.timedelta(hours=12)]},
                       schema={"ts_trigger": pl.Datetime("us", "UTC")})
    assert measure("liquidations", one, DAY, carried=True)["state"] == "complete"


def test_needs_state_names_missing_datasets_and_columns():
    cov = _full_coverage()
    cov["liquidations"] = measure("liquidations", None, DAY, carried=False)
    cov["trades"]["missing_columns"] = ["taker_account"]
    state, missing, _ = needs_state(("liquidations", "trades", "trades.taker_account"), cov)
    assert state == "absent" and missing == ["liquidations", "trades.taker_account"]


def _rows(today, coverage=None, samples=None, skipped=None, history=NO_HISTORY):
    rows = summary.summary_rows(today, history, coverage=coverage, samples=samples, skipped=skipped)
    return {r["figure"]: r for r in rows.iter_rows(named=True)}


def test_absent_dataset_makes_its_figures_not_covered_never_a_green_zero():
    cov = _full_coverage()
    cov["liquidations"] = measure("liquidations", None, DAY, carried=False)
    today = {"liquidation_count": 0.0, "adl_events": 0.0, "liquidation_count_market": 0.0,
             "mark_basis_p99_bps": 1.0}
    rows = _rows(today, coverage=cov)
    for figure in ("liquidation_count", "adl_events", "liquidation_count_market"):
        assert rows[figure]["status"] == "not_covered", figure
        assert rows[figure]["value"] is None
        assert "liquidations" in rows[figure]["threshold"]
    assert rows["mark_basis_p99_bps"]["status"] == "green"
    # the same zero with the dataset carried is a real (rated) zero
    assert _rows(today, coverage=_full_coverage())["adl_events"]["status"] == "green"


def test_small_samples_are_insufficient_data_with_n():
    n = MIN_SAMPLES["liquidations_for_percentile"] - 1
    rows = _rows({"slippage_p95_bps": 10.0},
                 samples={"slippage_p95_bps": (n, MIN_SAMPLES["liquidations_for_percentile"], "liquidations")})
    assert rows["slippage_p95_bps"]["status"] == "insufficient_data"
    assert rows["slippage_p95_bps"]["n"] == n and rows["slippage_p95_bps"]["value"] == 10.0
    enough = _rows({"slippage_p95_bps": 10.0}, samples={"slippage_p95_bps": (20, 20, "liquidations")})
    assert enough["slippage_p95_bps"]["status"] == "green"


def test_a_check_that_did_not_run_is_skipped_not_passed():
    rows = _rows({"position_rebuild_mismatches": 0.0},
                 skipped={"position_rebuild_mismatches": "no start-of-day positions"})
    r = rows["position_rebuild_mismatches"]
    assert r["status"] == "skipped" and r["value"] is None and "start-of-day" in r["threshold"]


def test_ratio_only_figures_need_baseline_days():
    history = pl.DataFrame({"date": [DAY - dt.timedelta(days=i) for i in (1, 2)],
                            "figure": ["volume_notional"] * 2, "value": [1e6, 1e6]})
    assert _rows({"volume_notional": 1e6}, history=history)["volume_notional"]["status"] == "insufficient_data"
    history3 = pl.concat([history, pl.DataFrame({"date": [DAY - dt.timedelta(days=3)],
                                                 "figure": ["volume_notional"], "value": [1e6]})])
    assert _rows({"volume_notional": 1e6}, history=history3)["volume_notional"]["status"] == "green"
    assert _rows({"volume_notional": 1e7}, history=history3)["volume_notional"]["status"] == "red"


def test_partial_day_turns_baseline_rules_off():
    cov = _full_coverage()
    start = T0 + dt.timedelta(hours=23, minutes=54)
    cov["trades"] = measure("trades", _marks(start, 300).rename({"ts": "ts"}), DAY, carried=True)
    assert cov["trades"]["state"] == "partial"
    history = pl.DataFrame({"date": [DAY - dt.timedelta(days=i) for i in range(1, 6)],
                            "figure": ["volume_notional"] * 5, "value": [1e9] * 5})
    r = _rows({"volume_notional": 1e6}, coverage=cov, history=history)["volume_notional"]
    # 1e6 against a 1e9 baseline would be red; on a 5-minute window it is not comparable
    assert r["status"] == "insufficient_data" and "window only" in r["threshold"]


def test_overall_status_ignores_unrated_figures_and_is_never_green_without_any():
    rows = pl.DataFrame({"status": ["not_covered", "insufficient_data", "skipped"]})
    assert summary.overall_status(rows) == "insufficient_data"
    rows = pl.DataFrame({"status": ["not_covered", "green", "amber", "skipped"]})
    assert summary.overall_status(rows) == "amber"
    # a clean gate on a source that lets nothing be rated is not a green venue
    rows = pl.DataFrame({"figure": ["liquidation_count", "data_quality_status", "data_quality_failed_checks"],
                         "status": ["not_covered", "green", "green"]})
    assert summary.overall_status(rows) == "insufficient_data"


def test_market_only_scope_sentence():
    cov = _full_coverage()
    for d in ACCOUNT_DATASETS:
        cov[d] = measure(d, None, DAY, carried=False)
    start = T0 + dt.timedelta(hours=23, minutes=54)
    cov["trades"] = measure("trades", _marks(start, 360), DAY, carried=True)
    cov["mark_index"] = measure("mark_index", _marks(start, 360), DAY, carried=True)
    scope = report_scope(cov)
    assert scope["kind"] == "market_only"
    assert "Market-only report" in scope["sentence"] and "not covered" in scope["sentence"]
    assert "2024-08-08 23:54:00-24:00:00 UTC (6 min of 24 h)" in scope["sentence"]


def test_files_source_names_every_missing_partition_at_once(tmp_path):
    (tmp_path / "trades" / f"date={DAY}").mkdir(parents=True)
    with pytest.raises(InputError) as err:
        FilesSource(tmp_path).prepare(DAY)
    text = str(err.value)
    assert "16 carried dataset(s)" in text  # (trades' folder holds no file either)
    for name in DATASETS:
        assert f"{name}/date={DAY}" in text
    # a manifest narrows what the root carries
    (tmp_path / "_coverage.json").write_text(json.dumps(
        {"manifest": "venue-risk coverage v1", "datasets": {"trades": {"dates": {str(DAY): {}}},
                                                             "funding": {}}}))
    with pytest.raises(InputError) as err:
        FilesSource(tmp_path).prepare(DAY)
    assert "trades" in str(err.value) and "funding" in str(err.value)
    assert "order_events" not in str(err.value)
    assert set(FilesSource(tmp_path).declared(DAY)) == {"trades", "funding"}
    assert set(FilesSource(tmp_path).declared(DAY + dt.timedelta(days=1))) == {"funding"}


def test_cli_run_day_names_every_missing_partition_without_a_traceback(tmp_path, monkeypatch, capsys):
    from venue_risk.cli import main

    root = tmp_path / "exports"
    (root / "trades" / f"date={DAY}").mkdir(parents=True)
    (root / "_coverage.json").write_text(json.dumps(
        {"manifest": "venue-risk coverage v1",
         "datasets": {"trades": {}, "mark_index": {}, "instruments": {}}}))
    for var in ("VENUE_RISK_DATA", "VENUE_RISK_LANDING", "VENUE_RISK_WAREHOUSE", "VENUE_RISK_REPORTS",
                "VENUE_RISK_OUTBOX", "VENUE_RISK_ALERT_RECIPIENTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VENUE_RISK_HOME", str(tmp_path))
    monkeypatch.setenv("VENUE_RISK_SOURCE", "files")
    monkeypatch.setenv("VENUE_RISK_FILES_ROOT", str(root))
    monkeypatch.setenv("VENUE_RISK_START_DATE", DAY.isoformat())
    assert main(["run-day", "--date", DAY.isoformat()]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "3 carried dataset(s)" in err
    for name in ("trades", "mark_index", "instruments"):
        assert f"{name}/date={DAY}" in err
