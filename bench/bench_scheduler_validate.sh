#!/bin/bash
# The validate task under a real scheduler (LocalExecutor, SQLite, api-server, dag-processor)
# with and without the warm imports of deploy/airflow_local_settings.py (venue_risk.preload).
# usage: bench/bench_scheduler_validate.sh 0|1   (1: with the local settings in $AIRFLOW_HOME/config)
# Triggers venue_risk_daily for demo day 2026-11-02 and prints every task instance's duration (s).
# (The scheduler also creates the latest scheduled run, which simulates up to yesterday first.)
set -u
PRE=$1
R=$(cd "$(dirname "$0")/.." && pwd)
export AIRFLOW_HOME=${BENCH_DIR:-/tmp/venue-risk-bench}/airflow$PRE
export AIRFLOW__CORE__DAGS_FOLDER=$R/dags AIRFLOW__CORE__PLUGINS_FOLDER=$R/plugins AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$AIRFLOW_HOME/airflow.db
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING
export AIRFLOW__CORE__PARALLELISM=2
PORT=$((8790 + PRE))
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://localhost:$PORT/execution/
export AIRFLOW__API__BASE_URL=http://localhost:$PORT
export VENUE_RISK_HOME=${BENCH_DIR:-/tmp/venue-risk-bench}/home$PRE VENUE_RISK_SIM_SCALE=demo VENUE_RISK_SIM_GENESIS=2026-11-01
B=$R/.venv/bin
rm -rf $AIRFLOW_HOME $VENUE_RISK_HOME; mkdir -p $AIRFLOW_HOME/config $VENUE_RISK_HOME
[ "$PRE" = 1 ] && cp $R/deploy/airflow_local_settings.py $AIRFLOW_HOME/config/
$B/airflow db migrate > $AIRFLOW_HOME/migrate.log 2>&1 || { tail $AIRFLOW_HOME/migrate.log; exit 1; }
$B/airflow pools set venue_risk_warehouse 1 w > /dev/null
$B/venue-risk simulate --scale demo --start 2026-11-01 --days 2 > /dev/null
$B/airflow api-server --port $PORT > $AIRFLOW_HOME/api.log 2>&1 & A=$!
$B/airflow dag-processor > $AIRFLOW_HOME/dp.log 2>&1 & D=$!
$B/airflow scheduler > $AIRFLOW_HOME/sched.log 2>&1 & S=$!
trap "kill $A $D $S 2>/dev/null" EXIT
for i in $(seq 60); do $B/airflow dags list 2>/dev/null | grep -q venue_risk_daily && break; sleep 3; done
$B/airflow dags unpause venue_risk_daily > /dev/null
$B/airflow dags trigger venue_risk_daily -l 2026-11-02T00:00:00+00:00 > /dev/null
for i in $(seq 120); do
  st=$($B/airflow dags state venue_risk_daily 2026-11-02T00:00:00+00:00 2>/dev/null | tail -1)
  case "$st" in success|failed) break;; esac; sleep 5; done
echo "state: $st"
$B/python - <<PY
import sqlite3
c = sqlite3.connect("$AIRFLOW_HOME/airflow.db")
for r in c.execute("select task_id, map_index, state, round(duration, 2) from task_instance order by start_date"): print(r)
PY
