"""The "Risk reports" page, served by a real Airflow api-server with this project's plugin and
loaded in headless Chromium: the page lists the reports under reports/ with their status."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port = _free_port()
    env = dict(os.environ, VENUE_RISK_REPORTS=str(reports), AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True")
    server = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}/venue-risk/")
        plugins = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/plugins"))
        views = [v for p in plugins["plugins"] for v in p["external_views"]]
        assert {"name": "Risk reports", "href": "venue-risk/"}.items() <= views[0].items()
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tempfile.mkdtemp()}", "--dump-dom", f"http://127.0.0.1:{port}/venue-risk/"],
            capture_output=True, text=True, timeout=60).stdout
        assert "Venue risk reports" in dom
        assert dom.index("2026-11-05") < dom.index("2026-11-04")
        assert ">RED<" in dom and ">AMBER<" in dom and "3,282,104" in dom
        assert 'href="files/2026-11-05/venue-risk-2026-11-05.pdf"' in dom
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/venue-risk/files/2026-11-05/venue-risk-2026-11-05.pdf") as r:
            assert r.read() == b"%PDF-1.7"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
