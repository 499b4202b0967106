"""`python -m venue_risk.airflow_days` (what `make demo` runs): real Airflow runs of
venue_risk_daily (DAG.test, as `airflow dags test`) for several days in one process, each day's
output in its own log, stopping at the first day whose run fails."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 1)


def _private_airflow(home: Path) -> dict[str, str]:
    """The environment of an Airflow home of its own (SQLite metadata DB, migrated, with the
    warehouse pool): the runs made here must not show up in other tests' metadata DB (the
    reports page test reads which days ran)."""
    home.mkdir(parents=True)
    env = dict(os.environ, AIRFLOW_HOME=str(home),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db")
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([airflow, "pools", "set", "venue_risk_warehouse", "1", "warehouse writers"],
                   env=env, check=True, capture_output=True)
    return env


def test_days_run_in_one_process_and_stop_at_the_first_failed_day(venue_home, monkeypatch, tmp_path):
    from venue_risk.simulate import simulate

    root = venue_home / "exports"
    simulate("tiny", START, 3, root)
    broken = START + dt.timedelta(days=2)  # the third day's trades never arrived
    for f in (root / "trades" / f"date={broken.isoformat()}").iterdir():
        f.unlink()
    monkeypatch.setenv("VENUE_RISK_SOURCE", "files")
    monkeypatch.setenv("VENUE_RISK_FILES_ROOT", str(root))
    logs = tmp_path / "logs"
    env = _private_airflow(tmp_path / "airflow")
    out = subprocess.run([sys.executable, "-m", "venue_risk.airflow_days", "--start", START.isoformat(),
                          "--days", "4", "--logs", str(logs)], capture_output=True, text=True, timeout=900,
                         env=env)
    assert out.returncode == 1, out.stdout + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    days = [START + dt.timedelta(days=i) for i in range(4)]
    # one line per day run, in order: two successes, then the failed day named with its log
    assert [re.sub(r" in [0-9.]+ s$", "", line) for line in lines[:3]] == [
        f"== venue_risk_daily {days[0]}: success", f"== venue_risk_daily {days[1]}: success",
        f"== venue_risk_daily {broken}: failed"]
    assert lines[3] == (f"venue_risk_daily {broken} ended 'failed'; "
                        f"log: {logs / f'dags-test-{broken}.log'}")
    assert len(lines) == 4
    # each day's output went to its own log, not to stdout: the failed day's names the problem
    for day in days[:2]:
        assert (venue_home / "reports" / day.isoformat() / f"venue-risk-{day}.pdf").exists()
        assert (logs / f"dags-test-{day}.log").exists()
    assert "no partition for" in (logs / f"dags-test-{broken}.log").read_text()
    assert "Traceback" not in out.stdout
    # the day after the failed one was not run
    assert not (logs / f"dags-test-{days[3]}.log").exists()
    assert not (venue_home / "reports" / days[3].isoformat()).exists()
    assert not (venue_home / "reports" / broken.isoformat()).exists()
