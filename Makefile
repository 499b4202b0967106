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

.PHONY: demo test env airflow-home browser clean

env: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==0.13.8
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

airflow-home: env
	mkdir -p $(AIRFLOW_HOME)/config
	cp deploy/airflow_local_settings.py $(AIRFLOW_HOME)/config/airflow_local_settings.py
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	$(BIN)/airflow pools set venue_risk_warehouse 1 "DuckDB warehouse writers (one at a time)" > /dev/null

demo: airflow-home
	$(BIN)/venue-risk simulate --scale demo --start $(DEMO_START) --days $(DEMO_DAYS)
	@for d in $$($(BIN)/venue-risk dates --start $(DEMO_START) --days $(DEMO_DAYS)); do \
	  echo "== venue_risk_daily $$d"; \
	  $(BIN)/airflow dags test venue_risk_daily $$d > $(AIRFLOW_HOME)/dags-test-$$d.log 2>&1; \
	  state=$$($(BIN)/airflow dags state venue_risk_daily $$d 2>/dev/null | tail -n 1); \
	  if [ "$$state" != "success" ]; then echo "venue_risk_daily $$d ended '$$state'; log: $(AIRFLOW_HOME)/dags-test-$$d.log"; exit 1; fi; \
	done
	@$(BIN)/venue-risk newest-report

# Headless Chromium for the Airflow UI page test (Debian's package; installed when we are root).
browser:
	@command -v chromium > /dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	  else echo "chromium is not installed: the UI page test will be skipped"; fi; }

test: env browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME) data reports/*/ outbox
