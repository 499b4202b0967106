"""Warm imports for the processes that fork Airflow task processes (venue_risk.preload and
deploy/airflow_local_settings.py): only `airflow scheduler` and `airflow celery worker` import
Great Expectations at start-up, through Airflow's own local-settings hook."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from venue_risk.preload import is_task_parent

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv, expected", [
    (["/opt/venv/bin/airflow", "scheduler"], True),
    (["airflow", "scheduler", "--pid", "/tmp/s.pid"], True),
    (["/usr/local/bin/airflow", "celery", "worker", "-q", "default"], True),
    (["airflow", "dags", "test", "venue_risk_daily", "2026-11-02"], False),
    (["airflow", "api-server"], False),
    (["airflow", "dag-processor"], False),
    (["airflow", "celery", "flower"], False),
    (["airflow"], False),
    (["/usr/bin/python", "scheduler"], False),
    ([], False),
])
def test_is_task_parent(argv, expected):
    assert is_task_parent(argv) is expected


@pytest.mark.parametrize("command, warmed", [("scheduler", True), ("dags", False)])
def test_airflow_imports_gx_at_start_up_only_in_task_parents(tmp_path, command, warmed):
    """A real `import airflow` with $AIRFLOW_HOME/config/airflow_local_settings.py in place, under
    the argv of the command: Great Expectations and the compiled loops are loaded afterwards only
    for the scheduler."""
    home = tmp_path / "airflow"
    (home / "config").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "airflow_local_settings.py", home / "config" / "airflow_local_settings.py")
    code = (f"import sys; sys.argv = ['{Path(sys.executable).parent / 'airflow'}', '{command}']\n"
            "import airflow.settings\n"
            "fr, cs = sys.modules.get('venue_risk.fill_replay'), sys.modules.get('venue_risk.corrupt_search')\n"
            "compiled = bool(fr and cs and fr.replay.signatures and cs.corrupt_moves.signatures)\n"
            "print('great_expectations' in sys.modules, compiled, 'airflow_local_settings' in sys.modules)")
    env = dict(os.environ, AIRFLOW_HOME=str(home),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == [str(warmed), str(warmed), "True"]
