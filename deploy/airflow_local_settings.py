"""Airflow local settings for venue-risk: put this file in $AIRFLOW_HOME/config/ (`make` and the
Dockerfile do). Airflow imports it at start-up in every process; only the processes that fork
task processes (`airflow scheduler`, `airflow celery worker`) import Great Expectations here, so
that no `validate` task pays the 5 s import itself (see venue_risk.preload). If you already have
an airflow_local_settings.py, add these lines to it."""

import sys

try:
    from venue_risk.preload import is_task_parent, warm_imports
except ImportError:  # venue-risk not installed in this environment: nothing to warm
    pass
else:
    if is_task_parent(sys.argv):
        warm_imports()
