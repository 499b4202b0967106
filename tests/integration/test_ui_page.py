"""The "Risk reports" page, served by a real Airflow api-server (SQLite metadata DB) with this
project's plugin and loaded in headless Chromium: anonymous callers are refused, a user signed
in through Airflow's login form sees the reports with their status, and the page is in the nav.
(tests/integration/test_native_stack.py does the same on the production stack, with real runs.)"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import CHROMIUM, Browser, free_port  # noqa: E402

pytestmark = pytest.mark.integration


def _wait(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_reports_page_in_airflow_ui(airflow_db, tmp_path):
    reports = tmp_path / "reports"
    for day, status, count in (("2026-11-04", "amber", 101), ("2026-11-05", "red", 207)):
        (reports / day).mkdir(parents=True)
        (reports / day / f"venue-risk-{day}.pdf").write_bytes(b"%PDF-1.7")
        (reports / day / "summary.json").write_text(json.dumps({
            "overall_status": status, "data_quality": {"status": "passed"},
            "figures": {"liquidation_count": {"value": count}, "liquidation_notional": {"value": 3282104.4}}}))
    (reports / "2026-11-05" / "tables").mkdir()
    (reports / "2026-11-05" / "tables" / "slippage_by_path.csv").write_text("symbol,path\nBTCUSDT,market\n")
    (reports / "methods").mkdir()
    (reports / "methods" / "venue-risk-methods-1.2.3.pdf").write_bytes(b"%PDF-1.7 methods")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, VENUE_RISK_HOME=str(tmp_path), VENUE_RISK_START_DATE="2026-11-03",
               AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
               AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="risk:viewer")
    server = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(f"{base}/api/v2/monitor/health")
        for url in (f"{base}/venue-risk/", f"{base}/venue-risk/files/2026-11-05/venue-risk-2026-11-05.pdf",
                    f"{base}/venue-risk/files/2026-11-05/tables/slippage_by_path.csv"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url, timeout=10)
            assert refused.value.code == 401, url
        passwords = Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())["risk"]
        token = json.load(urllib.request.urlopen(urllib.request.Request(
            f"{base}/auth/token", data=json.dumps({"username": "risk", "password": password}).encode(),
            headers={"content-type": "application/json"})))["access_token"]
        plugins = json.load(urllib.request.urlopen(urllib.request.Request(
            f"{base}/api/v2/plugins", headers={"authorization": f"Bearer {token}"})))
        views = [v for p in plugins["plugins"] for v in p["external_views"]]
        assert {"name": "Risk reports", "href": "venue-risk/"}.items() <= views[0].items()
        with Browser() as browser:
            browser.login(base, f"{base}/venue-risk/", "risk", password)
            dom = browser.html()
            assert "Venue risk reports" in dom
            assert dom.index('data-day="2026-11-05"') < dom.index('data-day="2026-11-04"')
            assert ">RED<" in dom and ">AMBER<" in dom and "3,282,104" in dom
            assert 'href="files/2026-11-05/venue-risk-2026-11-05.pdf"' in dom
            assert 'data-day="2026-11-03" data-run="missing"' in dom  # no run, no report
            yesterday = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
            assert f'data-day="{yesterday}"' in dom and 'data-day="2026-11-02"' not in dom
            assert str(tmp_path) not in dom
            head = browser.evaluate("fetch('files/2026-11-05/venue-risk-2026-11-05.pdf').then(r => r.text())")
            assert head == "%PDF-1.7"
            # the links of a report's HTML: its CSV tables and the methods beside the reports
            csv = browser.evaluate("fetch('files/2026-11-05/tables/slippage_by_path.csv').then(r => r.text())")
            assert csv == "symbol,path\nBTCUSDT,market\n"
            methods = browser.evaluate("fetch('files/2026-11-05/../methods/venue-risk-methods-1.2.3.pdf')"
                                       ".then(r => r.text())")
            assert methods == "%PDF-1.7 methods"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
