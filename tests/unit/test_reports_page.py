"""The reports page: one row per day from the start date with run state, report status, delivery
state, baseline gaps and staleness (pure functions), and the plugin app refusing anonymous
callers (the logged-in path runs against a real api-server in tests/integration/test_ui_page.py)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json

import pytest
from fastapi.testclient import TestClient

from venue_risk.reports_page import day_rows, delivery_state, render_index, report_file, run_state
from venue_risk.runs import record_failure


def _report(root, day, status, count, **extra):
    folder = root / day
    folder.mkdir(parents=True)
    (folder / f"venue-risk-{day}.pdf").write_bytes(b"%PDF-1.7 test")
    (folder / "summary.json").write_text(json.dumps({
        "date": day, "overall_status": status, "data_quality": {"status": "passed"},
        "figures": {"liquidation_count": {"value": count}, "liquidation_notional": {"value": 1234567.0}},
        **extra}))


@pytest.mark.parametrize("airflow, has_report, failure, expected", [
    ("success", True, None, ("succeeded", "")),
    ("success", False, None, ("skipped", "")),
    ("failed", False, {"error": "DataQualityError: trades.price"}, ("failed", "DataQualityError: trades.price")),
    ("failed", False, None, ("failed", "see the task log in Airflow")),
    ("running", False, None, ("running", "")),
    ("queued", False, None, ("queued", "")),
    (None, False, None, ("missing", "")),
    (None, True, None, ("succeeded", "")),          # built by venue-risk run-day
    (None, False, {"error": "boom"}, ("failed", "boom")),  # run-day failed
])
def test_run_state(airflow, has_report, failure, expected):
    assert run_state(airflow, has_report, failure) == expected


def test_delivery_state_words():
    assert delivery_state(None) == "not sent"
    assert delivery_state({"state": "outbox"}) == "outbox"
    assert delivery_state({"state": "sent", "revision": 0}) == "sent"
    assert delivery_state({"state": "sent", "revision": 1}) == "revised"
    assert delivery_state({"state": "sent", "revision": 3}) == "revised (3)"
    assert delivery_state({"via": "smtp"}) == "sent"  # ledger entries from before states existed


def test_every_day_from_the_start_date_with_its_states(tmp_path):
    reports, data = tmp_path / "reports", tmp_path / "data"
    _report(reports, "2026-11-01", "green", 3)
    _report(reports, "2026-11-03", "<b>red</b>", 41, baseline_missing_days=["2026-11-02"],
            stale_baseline_days=["2026-11-01"])
    record_failure(data, "2026-11-02", "validate", "DataQualityError: trades: 3 rows\nmore detail", "r2")
    data.mkdir(exist_ok=True)
    (data / "delivery-ledger.json").write_text(json.dumps({
        "2026-11-01": {"state": "sent", "revision": 1}, "2026-11-03": {"state": "outbox"}}))
    states = {"2026-11-01": "success", "2026-11-02": "failed", "2026-11-03": "success"}
    rows, hidden = day_rows(dt.date(2026, 11, 1), dt.date(2026, 11, 4), reports, data, states)
    assert hidden == 0
    assert [(r["date"], r["run"], r["status"], r["delivery"]) for r in rows] == [
        ("2026-11-04", "missing", "", "not sent"),
        ("2026-11-03", "succeeded", "<b>red</b>", "outbox"),
        ("2026-11-02", "failed", "", "not sent"),
        ("2026-11-01", "succeeded", "green", "revised"),
    ]
    assert rows[2]["error"] == "DataQualityError: trades: 3 rows"
    assert rows[1]["missing_days"] == ["2026-11-02"] and rows[1]["stale"] == ["2026-11-01"]
    assert rows[3]["links"][0] == ("PDF", "files/2026-11-01/venue-risk-2026-11-01.pdf")
    assert rows[0]["links"] == []

    html = render_index(dt.date(2026, 11, 1), dt.date(2026, 11, 4), reports, data, states)
    assert html.index('data-day="2026-11-04"') < html.index('data-day="2026-11-01"')
    assert "1,234,567" in html and ">41<" in html
    assert "<b>red</b>" not in html and "&lt;B&gt;RED&lt;/B&gt;" in html  # data is escaped
    assert "missing from baseline: 2026-11-02" in html and "stale: computed before the rerun of 2026-11-01" in html
    assert str(tmp_path) not in html  # no server paths
    assert "1 failed, 1 missing, 2 succeeded" in html


def test_long_histories_are_capped(tmp_path):
    rows, hidden = day_rows(dt.date(2020, 1, 1), dt.date(2026, 11, 4), tmp_path, tmp_path, {}, max_rows=10)
    assert len(rows) == 10 and rows[0]["date"] == "2026-11-04" and hidden == (dt.date(2026, 11, 4) - dt.date(2020, 1, 1)).days + 1 - 10


def test_report_file_stays_inside_the_reports_folder(tmp_path):
    _report(tmp_path, "2026-11-01", "green", 3)
    assert report_file(tmp_path, "2026-11-01", "summary.json") == (tmp_path / "2026-11-01" / "summary.json").resolve()
    assert report_file(tmp_path, "2026-11-01", "../../etc/passwd") is None
    assert report_file(tmp_path, "2026-11-03", "summary.json") is None


def test_plugin_refuses_anonymous_callers(tmp_path, monkeypatch):
    from conftest import PROJECT

    monkeypatch.setenv("VENUE_RISK_REPORTS", str(tmp_path))
    _report(tmp_path, "2026-11-01", "green", 3)
    spec = importlib.util.spec_from_file_location("venue_risk_reports_plugin",
                                                  PROJECT / "plugins" / "venue_risk_reports.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    client = TestClient(plugin.app)
    for url in ("/", "/files/2026-11-01/venue-risk-2026-11-01.pdf", "/files/2026-11-01/summary.json"):
        response = client.get(url, headers={"accept": "application/json"})
        assert response.status_code == 401, url
        assert b"%PDF" not in response.content
    assert [v["url_route"] for v in plugin.VenueRiskReportsPlugin.external_views] == ["venue-risk-reports"]
