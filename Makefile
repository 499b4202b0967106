# venue-risk: the two commands of the README.
#   make demo   set up everything, simulate 7 demo days, run venue_risk_daily for each, print the newest PDF
#   make test   set up everything and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ROOT := $(CURDIR)
DEMO_START ?= 2026-11-01
DEMO_DAYS ?= 7

# A local Airflow home inside the project: SQLite metadata DB, LocalExecutor, our dags/ and
# plugins/, no example DAGs.
export AIRFLOW_HOME := $(ROOT)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(ROOT)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(ROOT)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(ROOT)/.airflow/airflow.db
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := True
export AIRFLOW__LOGGING__LOGGING_LEVEL := WARNING
export VENUE_RISK_HOME := $(ROOT)

.PHONY: demo test env airflow-home airflow-env browser subset-lib clean

# Bytecode is compiled here, once: the packages at install (--compile-bytecode), the project's
# own code on every make (only what changed). Where PYTHONDONTWRITEBYTECODE is set, Python
# never caches what it compiles, and every process (each Airflow task, each test's subprocess)
# would compile Airflow, GX and the rest from source again: the GX import alone took 12.5 s
# instead of 4.8 s.
# The same for the compiled loops (numba, cached beside the sources): compiled here once.
env: $(VENV)/.installed
	$(BIN)/python -m compileall -q -j 0 include dags plugins > /dev/null
	$(BIN)/python -m venue_risk.preload

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==0.13.8
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

airflow-home: env
	mkdir -p $(AIRFLOW_HOME)/config
	cp deploy/airflow_local_settings.py $(AIRFLOW_HOME)/config/airflow_local_settings.py
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	$(BIN)/airflow pools set venue_risk_warehouse 1 "DuckDB warehouse writers (one at a time)" > /dev/null

# Each day is what `airflow dags test venue_risk_daily <day>` runs (DAG.test), the days in date
# order in one process (venue_risk.airflow_days): Airflow's start, the DAG's parse and the
# imports are paid once, not once a day. Each day's log: .airflow/dags-test-<day>.log.
demo: airflow-home subset-lib
	$(BIN)/venue-risk simulate --scale demo --start $(DEMO_START) --days $(DEMO_DAYS)
	$(BIN)/python -m venue_risk.airflow_days --start $(DEMO_START) --days $(DEMO_DAYS) --logs $(AIRFLOW_HOME)
	@$(BIN)/venue-risk newest-report

# The local Airflow settings above as shell exports, for running `airflow` by hand:
#   eval "$(make -s airflow-env)"
airflow-env:
	@echo "export AIRFLOW_HOME=$(AIRFLOW_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(AIRFLOW__CORE__DAGS_FOLDER)"
	@echo "export AIRFLOW__CORE__PLUGINS_FOLDER=$(AIRFLOW__CORE__PLUGINS_FOLDER) AIRFLOW__CORE__LOAD_EXAMPLES=False"
	@echo "export AIRFLOW__CORE__EXECUTOR=LocalExecutor AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)"
	@echo "export AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING VENUE_RISK_HOME=$(VENUE_RISK_HOME)"

# Headless Chromium for the Airflow UI page test (Debian's package; installed when we are root).
browser:
	@command -v chromium > /dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	  else echo "chromium is not installed: the UI page test will be skipped"; fi; }

# Debian's HarfBuzz subsetting library, installed when we are root (as Chromium below):
# WeasyPrint subsets the report's fonts with it in about 0.05 s instead of fontTools' 0.6-0.8 s
# per PDF, and warns when it is missing. Optional: without it the PDFs are the same to read.
subset-lib:
	@ldconfig -p 2> /dev/null | grep -q libharfbuzz-subset || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libharfbuzz-subset0 > /dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libharfbuzz-subset0 > /dev/null; } || \
	    echo "libharfbuzz-subset0 could not be installed: WeasyPrint subsets fonts with fontTools (slower)"; \
	  else echo "libharfbuzz-subset0 is not installed: WeasyPrint subsets fonts with fontTools (slower)"; fi; }

test: env browser subset-lib
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME) data reports/*/ outbox

# .env for docker-compose.yml (.env.example documents each variable): this user's uid and fresh
# random secrets, mode 600. An existing .env is left as it is: delete it to start over (the
# Postgres volume keeps the first POSTGRES_PASSWORD; see .env.example).
define COMPOSE_ENV_PY
import base64, os, secrets
values = [
    ("AIRFLOW_UID", str(os.getuid())),
    ("AIRFLOW_JWT_SECRET", secrets.token_urlsafe(48)),
    ("AIRFLOW_API_SECRET_KEY", secrets.token_urlsafe(32)),
    ("AIRFLOW_FERNET_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode()),
    ("AIRFLOW_ADMIN_PASSWORD", secrets.token_urlsafe(18)),
    ("AIRFLOW_VIEWER_PASSWORD", secrets.token_urlsafe(18)),
    ("POSTGRES_PASSWORD", secrets.token_urlsafe(24)),
    ("VENUE_RISK_PSEUDONYM_KEY", secrets.token_urlsafe(32)),
    ("VENUE_RISK_START_DATE", "2026-11-01"),
]
print("# docker-compose.yml settings, written by make compose-env; see .env.example. Keep private.")
for name, value in values:
    print(name + "=" + value)
endef

.PHONY: compose-env
compose-env: export COMPOSE_ENV_PY := $(COMPOSE_ENV_PY)
compose-env:
	@if [ -e .env ]; then \
	  echo ".env already exists: left as it is (delete it to generate new secrets)"; \
	else \
	  umask 077 && $(PYTHON) -c "$$COMPOSE_ENV_PY" > .env.tmp && mv .env.tmp .env && \
	  echo "wrote .env (mode 600): uid $$(id -u), random secrets; the UI passwords are AIRFLOW_ADMIN_PASSWORD (admin) and AIRFLOW_VIEWER_PASSWORD (risk)"; \
	fi

# The production-like stack natively on this machine's PostgreSQL and Redis (deploy/native-stack.sh:
# metadata DB created if missing, api-server, scheduler, dag-processor, triggerer, one Celery
# worker; Airflow home, logs and PID files under .airflow-stack/). `make stack-env` prints the
# environment to source before running `airflow` commands against it.
.PHONY: stack stack-stop stack-env
stack: env
	deploy/native-stack.sh start

stack-stop:
	deploy/native-stack.sh stop

stack-env:
	@deploy/native-stack.sh env
