#!/usr/bin/env bash
# The production-like stack, natively on this machine's PostgreSQL and Redis (no Docker):
# Postgres metadata DB, CeleryExecutor on Redis, and the five Airflow processes: api-server,
# scheduler, dag-processor, triggerer, one Celery worker. Same settings as docker-compose.yml
# (deploy/stack.env holds them for both).
#
#   deploy/native-stack.sh start    create the metadata DB if missing, migrate, start everything
#   deploy/native-stack.sh stop     stop every process it started, each by its own PID
#   deploy/native-stack.sh env      print the environment (source it to run `airflow` commands)
#   deploy/native-stack.sh drop-db  drop the metadata DB (after stop)
#
# Knobs (environment): STACK_HOME (the Airflow home, default <project>/.airflow-stack),
# STACK_DB (venue_risk_airflow), STACK_PG_HOST/PORT/USER (127.0.0.1/5432/postgres),
# STACK_REDIS_URL (redis://127.0.0.1:6379/0), STACK_API_PORT (8080), STACK_WORKER_LOG_PORT
# (8793), STACK_TRIGGER_LOG_PORT (8794), STACK_WORKERS (Celery workers, 1; worker k > 1 is
# celery-worker-k, named worker<k>@host, serving its logs on STACK_WORKER_LOG_PORT + k - 1),
# STACK_WORKER_CONCURRENCY (task slots per worker, default stack.env's 4). Secrets (JWT, API and Fernet keys) are generated once
# into $STACK_HOME/secrets.env (mode 600). Users: admin/admin-password and risk (viewer); the
# generated passwords are in $STACK_HOME/simple_auth_manager_passwords.json.generated.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${STACK_BIN:-$ROOT/.venv/bin}"
export STACK_HOME="${STACK_HOME:-$ROOT/.airflow-stack}"
export STACK_DB="${STACK_DB:-venue_risk_airflow}"
export STACK_PG_HOST="${STACK_PG_HOST:-127.0.0.1}" STACK_PG_PORT="${STACK_PG_PORT:-5432}"
export STACK_PG_USER="${STACK_PG_USER:-postgres}"
export STACK_REDIS_URL="${STACK_REDIS_URL:-redis://127.0.0.1:6379/0}"
export STACK_API_HOST=127.0.0.1 STACK_API_PORT="${STACK_API_PORT:-8080}"
export STACK_WORKER_LOG_PORT="${STACK_WORKER_LOG_PORT:-8793}"
export STACK_TRIGGER_LOG_PORT="${STACK_TRIGGER_LOG_PORT:-8794}"
export AIRFLOW_HOME="$STACK_HOME"
RUN="$STACK_HOME/run"
LOGS="$STACK_HOME/logs"
export STACK_WORKERS="${STACK_WORKERS:-1}"
PROCESSES=(api-server scheduler dag-processor triggerer celery-worker)
for ((k=2; k<=STACK_WORKERS; k++)); do PROCESSES+=("celery-worker-$k"); done

secrets() {
  mkdir -p "$STACK_HOME"
  if [ ! -f "$STACK_HOME/secrets.env" ]; then
    (umask 077; "$BIN/python" - > "$STACK_HOME/secrets.env" <<'EOF'
import base64, os, secrets
print(f"STACK_JWT_SECRET={secrets.token_urlsafe(48)}")
print(f"STACK_API_SECRET_KEY={secrets.token_urlsafe(32)}")
print(f"STACK_FERNET_KEY={base64.urlsafe_b64encode(os.urandom(32)).decode()}")
EOF
    )
  fi
  set -a; . "$STACK_HOME/secrets.env"; set +a
}

load_env() {
  secrets
  # deploy/stack.env: KEY=value lines with ${VAR} filled in from the variables above
  while IFS= read -r line; do
    case "$line" in ''|'#'*) continue ;; esac
    export "${line%%=*}=$(eval "printf '%s' \"${line#*=}\"")"
  done < "$ROOT/deploy/stack.env"
  export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags" AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
  export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
  export VENUE_RISK_HOME="${VENUE_RISK_HOME:-$ROOT}"
}

psql_admin() { psql -h "$STACK_PG_HOST" -p "$STACK_PG_PORT" -U "$STACK_PG_USER" -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

create_db() {
  if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$STACK_DB'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE \"$STACK_DB\""
    echo "created metadata database $STACK_DB"
  fi
}

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2> /dev/null; }

start_one() {
  local name=$1; shift
  if running "$name"; then echo "$name already running (PID $(cat "$RUN/$name.pid"))"; return; fi
  # setsid: the process leads its own group, so stop reaches the children it forks
  setsid "$BIN/airflow" "$@" > "$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
  echo "started $name (PID $!), log $LOGS/$name.log"
}

wait_healthy() {
  local url="http://$STACK_API_HOST:$STACK_API_PORT/api/v2/monitor/health" i
  for i in $(seq 1 120); do
    if curl -fsS "$url" > /dev/null 2>&1; then echo "api-server healthy at http://$STACK_API_HOST:$STACK_API_PORT/"; return; fi
    running api-server || { echo "api-server exited; see $LOGS/api-server.log" >&2; tail -n 30 "$LOGS/api-server.log" >&2; exit 1; }
    sleep 1
  done
  echo "api-server not healthy after 120 s; see $LOGS/api-server.log" >&2
  exit 1
}

start() {
  load_env
  mkdir -p "$RUN" "$LOGS" "$STACK_HOME/config"
  cp "$ROOT/deploy/airflow_local_settings.py" "$STACK_HOME/config/airflow_local_settings.py"
  create_db
  "$BIN/airflow" db migrate > "$LOGS/db-migrate.log" 2>&1 || { tail -n 30 "$LOGS/db-migrate.log" >&2; exit 1; }
  "$BIN/airflow" pools set venue_risk_warehouse 1 "DuckDB warehouse writers (one at a time)" > /dev/null
  start_one api-server api-server --port "$STACK_API_PORT"
  wait_healthy
  start_one scheduler scheduler
  start_one dag-processor dag-processor
  start_one triggerer triggerer
  local slots="${STACK_WORKER_CONCURRENCY:-$AIRFLOW__CELERY__WORKER_CONCURRENCY}" k
  start_one celery-worker celery worker --concurrency "$slots"
  for ((k=2; k<=STACK_WORKERS; k++)); do
    (export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$((STACK_WORKER_LOG_PORT + k - 1))
     start_one "celery-worker-$k" celery worker --concurrency "$slots" --celery-hostname "worker$k@%h")
  done
  echo "stack up: UI http://$STACK_API_HOST:$STACK_API_PORT/ (users in $STACK_HOME/simple_auth_manager_passwords.json.generated)"
}

stop_one() {
  local name=$1 pid i
  [ -f "$RUN/$name.pid" ] || return 0
  pid=$(cat "$RUN/$name.pid")
  if kill -0 "$pid" 2> /dev/null; then
    kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid" 2> /dev/null || true
    for i in $(seq 1 60); do kill -0 "$pid" 2> /dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2> /dev/null; then
      kill -KILL -- "-$pid" 2> /dev/null || kill -KILL "$pid" 2> /dev/null || true
      echo "stopped $name (PID $pid) with SIGKILL after 30 s"
    else
      echo "stopped $name (PID $pid)"
    fi
  fi
  rm -f "$RUN/$name.pid"
}

stop() {
  local i
  for ((i=${#PROCESSES[@]}-1; i>=0; i--)); do stop_one "${PROCESSES[$i]}"; done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) load_env; env | grep -E '^(AIRFLOW|VENUE_RISK)' | while IFS='=' read -r k v; do printf 'export %s=%q\n' "$k" "$v"; done ;;
  drop-db) load_env; psql_admin -c "DROP DATABASE IF EXISTS \"$STACK_DB\" WITH (FORCE)" ;;
  status) for p in "${PROCESSES[@]}"; do if running "$p"; then echo "$p running (PID $(cat "$RUN/$p.pid"))"; else echo "$p stopped"; fi; done ;;
  *) echo "usage: $0 start|stop|status|env|drop-db" >&2; exit 2 ;;
esac
