"""Warm imports for the long-lived Airflow processes that fork task processes.

On Linux, Airflow 3 starts every task process with a bare os.fork() of the process that runs it:
the LocalExecutor's workers (themselves forked from `airflow scheduler`) and the Celery pool
processes (forked from `airflow celery worker`). A module imported in that parent before the
fork is already loaded in every task it starts. Importing Great Expectations costs about 5 s
(scipy, pandas, altair, pydantic models), the same for a tiny or a large day, and would otherwise
be paid by every `validate` task; imported once in the scheduler or the Celery worker, it is paid
once per process start (about 300 MB of RSS, shared copy-on-write with the tasks).

`deploy/airflow_local_settings.py` (copied to $AIRFLOW_HOME/config/ by `make` and the Dockerfile)
calls `warm_imports()` when `is_task_parent(sys.argv)`; every other Airflow command (the CLI,
the api-server, the dag-processor, `airflow dags test`) imports nothing extra.
"""

from __future__ import annotations

import importlib
import os
from typing import Sequence

#: Airflow commands whose process forks task processes: argv[1:] starts with one of these.
TASK_PARENT_COMMANDS: tuple[tuple[str, ...], ...] = (("scheduler",), ("celery", "worker"))
#: Modules imported by warm_imports, in order.
WARM_MODULES: tuple[str, ...] = ("great_expectations.expectations", "venue_risk.quality.gate")
#: The numba-compiled loops (each module's warm_up() compiles or loads them).
COMPILED_MODULES: tuple[str, ...] = ("venue_risk.fill_replay", "venue_risk.corrupt_search")


def is_task_parent(argv: Sequence[str]) -> bool:
    """True when argv is `airflow scheduler ...` or `airflow celery worker ...` (the program name
    ends in 'airflow'), i.e. a process whose forks run tasks."""
    if not argv or not os.path.basename(argv[0]).endswith("airflow"):
        return False
    args = [a for a in argv[1:] if not a.startswith("-")]
    return any(tuple(args[:len(c)]) == c for c in TASK_PARENT_COMMANDS)


def warm_imports(modules: Sequence[str] = WARM_MODULES) -> list[str]:
    """Import great_expectations as the gate does (`quality.suites.import_gx`), then `modules`,
    then load the compiled loops (`warm_compiled`); returns the names imported."""
    from venue_risk.quality.suites import import_gx

    import_gx()
    for name in modules:
        importlib.import_module(name)
    warm_compiled()
    return ["great_expectations", *modules, *COMPILED_MODULES]


def warm_compiled() -> None:
    """Compile the numba loops of COMPILED_MODULES, or load them from numba's cache: numba's
    start (about 1 s) that every metric task would otherwise pay. `make env` and the Dockerfile
    call it once to fill the cache."""
    for name in COMPILED_MODULES:
        importlib.import_module(name).warm_up()


if __name__ == "__main__":  # `python -m venue_risk.preload`: fill numba's cache (make env, the Dockerfile)
    warm_compiled()
