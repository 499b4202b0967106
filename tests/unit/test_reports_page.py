"""The reports page of the Airflow UI plugin, served by its FastAPI app."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient


def _report(root, day, status, count, extra_name=""):
    folder = root / day
    folder.mkdir(parents=True)
    (folder / f"venue-risk-{day}.pdf").write_bytes(b"%PDF-1.7 test")
    (folder / "summary.json").write_text(json.dumps({
        "date": day, "overall_status": status, "data_quality": {"status": "passed"},
        "figures": {"liquidation_count": {"value": count}, "liquidation_notional": {"value": 1234567.0},
                    "odd<script>": {"value": 1}},
    }))


def test_page_lists_reports_newest_first_with_status_and_links(tmp_path, monkeypatch):
    monkeypatch.setenv("VENUE_RISK_REPORTS", str(tmp_path))
    _report(tmp_path, "2026-11-01", "green", 3)
    _report(tmp_path, "2026-11-02", "<b>red</b>", 41)
    import importlib.util

    from conftest import PROJECT

    spec = importlib.util.spec_from_file_location("venue_risk_reports_plugin",
                                                  PROJECT / "plugins" / "venue_risk_reports.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    client = TestClient(plugin.app)
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert html.index("2026-11-02") < html.index("2026-11-01")
    assert "1,234,567" in html and ">41<" in html
    assert "<b>red</b>" not in html and "&lt;B&gt;RED&lt;/B&gt;" in html  # data is escaped
    assert 'href="files/2026-11-01/venue-risk-2026-11-01.pdf"' in html
    pdf = client.get("/files/2026-11-01/venue-risk-2026-11-01.pdf")
    assert pdf.status_code == 200 and pdf.content == b"%PDF-1.7 test"
    assert client.get("/files/2026-11-01/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/files/2026-11-03/summary.json").status_code == 404
    assert [v["url_route"] for v in plugin.VenueRiskReportsPlugin.external_views] == ["venue-risk-reports"]
