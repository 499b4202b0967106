"""Test-wide set-up: a private Airflow home (SQLite, LocalExecutor, this project's dags/ and
plugins/, no examples) created before anything imports Airflow, and a private venue-risk home
per test that needs one."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="venue-risk-airflow-"))
os.environ.update({
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
})
os.environ.pop("AIRFLOW_CONN_SMTP_DEFAULT", None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB with the warehouse writer pool (once per test session)."""
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True)
    subprocess.run([airflow, "pools", "set", "venue_risk_warehouse", "1", "warehouse writers"],
                   check=True, capture_output=True)
    return _AIRFLOW_HOME


@pytest.fixture
def venue_home(tmp_path, monkeypatch) -> Path:
    """A private project home: data/, reports/, outbox/ under tmp_path, tiny simulated venue."""
    for var in ("VENUE_RISK_DATA", "VENUE_RISK_LANDING", "VENUE_RISK_WAREHOUSE", "VENUE_RISK_REPORTS",
                "VENUE_RISK_OUTBOX", "VENUE_RISK_SIMULATED", "VENUE_RISK_SOURCE", "VENUE_RISK_FILES_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VENUE_RISK_HOME", str(tmp_path))
    monkeypatch.setenv("VENUE_RISK_SIM_SCALE", "tiny")
    monkeypatch.setenv("VENUE_RISK_SIM_GENESIS", "2026-11-01")
    return tmp_path


@pytest.fixture(scope="session")
def random_month(tmp_path_factory) -> dict:
    """One tiny simulated month (30 days from 2026-11-01, venue seed 7) with incidents of every
    market kind at seeded random times and symbols (`random_plan(seed=11)`), simulated once per
    test session and shared by the detection tests. Read-only for its users."""
    import datetime as dt

    from venue_risk.simulate import random_plan, simulate

    start, days = dt.date(2026, 11, 1), 30
    out = tmp_path_factory.mktemp("random-month")
    plan = random_plan("tiny", start, days, seed=11)
    simulate("tiny", start, days, out, seed=7, incidents=plan)
    return {"out": out, "plan": plan, "start": start, "days": days}
