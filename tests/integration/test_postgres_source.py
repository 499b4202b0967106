"""The `postgres` source against this machine's PostgreSQL (127.0.0.1:5432, user postgres, trust
authentication; CI has the same).

The module creates its own database (unique name) holding the reference schema, loads two
simulated tiny days into it, and creates the read-only role with the shipped
`postgres_readonly_role.sql` (roles are cluster-wide: unique names); all are dropped at the end.

- the pipeline run on the postgres source gives the same metric tables and summary figures as the
  run on the `files` source over the same simulated days (both days: the second has a baseline);
- the reader cannot write, and the source refuses a superuser or a role that can write;
- a wrong password or an unreachable server gives a clear message without the password, in the
  error, the logs and the captured output;
- a mapping naming an unknown dataset or returning a wrong column is a clear error naming them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import traceback
import uuid
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from venue_risk import pipeline
from venue_risk.errors import InputError
from venue_risk.schema import DATASET_NAMES
from venue_risk.settings import Settings
from venue_risk.sources import postgres as pgsrc
from venue_risk.sources import postgres_reference as ref
from venue_risk.sources.postgres import PostgresSource

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
DAYS = [dt.date(2026, 11, 1), dt.date(2026, 11, 2)]
HOST, PORT, ADMIN = "127.0.0.1", 5432, "postgres"
PATH_VARS = ("VENUE_RISK_DATA", "VENUE_RISK_LANDING", "VENUE_RISK_WAREHOUSE", "VENUE_RISK_REPORTS",
             "VENUE_RISK_OUTBOX", "VENUE_RISK_SIMULATED", "VENUE_RISK_FILES_ROOT",
             "VENUE_RISK_PG_MAPPING", "AIRFLOW_CONN_VENUE_DB")


def _uri(user: str, database: str, password: str = "", port: int = PORT) -> str:
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"postgresql://{auth}@{HOST}:{port}/{database}"


def _admin_sql(*statements: str, database: str = "postgres") -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(_uri(ADMIN, database), autocommit=True) as con:
        for statement in statements:
            with pgsrc._plain_cursor(con) as cur:
                cur.execute(statement)


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory) -> Path:
    """Two simulated tiny days as canonical files (the `files` source's folder)."""
    from venue_risk.simulate import simulate

    root = tmp_path_factory.mktemp("pg-sim")
    simulate("tiny", DAYS[0], len(DAYS), root, seed=7)
    return root


@pytest.fixture(scope="module")
def pg(sim_root):
    """A private database with the reference schema holding the simulated days, a reader role
    made by the shipped role script, and a non-superuser writer role; dropped at the end."""
    tag = uuid.uuid4().hex[:10]
    db, reader, writer = f"vr_test_{tag}", f"vr_reader_{tag}", f"vr_writer_{tag}"
    password = f"Pw:{uuid.uuid4().hex}@/x"  # URI-special characters on purpose
    _admin_sql(f'CREATE DATABASE "{db}"')
    try:
        ref.create_reference_schema(_uri(ADMIN, db))
        ref.load_files(_uri(ADMIN, db), sim_root, DAYS)
        psql = shutil.which("psql") or pytest.fail("psql not found (the PostgreSQL client)")
        subprocess.run([psql, "-h", HOST, "-p", str(PORT), "-U", ADMIN, "-d", db, "-q",
                        "-v", f"reader={reader}", "-v", f"reader_password={password}",
                        "-f", str(pgsrc.READONLY_ROLE_SQL)], check=True, capture_output=True)
        _admin_sql(f'CREATE ROLE "{writer}" LOGIN PASSWORD \'{password}\'',
                   f'GRANT USAGE ON SCHEMA venue_risk TO "{writer}"',
                   f'GRANT SELECT ON ALL TABLES IN SCHEMA venue_risk TO "{writer}"',
                   f'GRANT INSERT ON venue_risk.trades TO "{writer}"', database=db)
        yield {"db": db, "reader": reader, "writer": writer, "password": password,
               "reader_uri": _uri(reader, db, password)}
    finally:
        _admin_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)',
                   f'DROP ROLE IF EXISTS "{reader}"', f'DROP ROLE IF EXISTS "{writer}"')


def _env(monkeypatch, home: Path, **values: str) -> Settings:
    for var in PATH_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VENUE_RISK_HOME", str(home))
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return Settings.from_env()


# -- the pipeline: postgres and files give the same figures --------------------------------------

_RUN_FILES = """
import datetime as dt, sys
from venue_risk import pipeline
from venue_risk.settings import Settings
settings = Settings.from_env()
for day in sys.argv[1:]:
    pipeline.run_day(dt.date.fromisoformat(day), settings)
"""


def _metric_tables(home: Path, day: dt.date) -> dict[str, pl.DataFrame]:
    folder = home / "data" / "metrics" / f"date={day.isoformat()}"
    return {p.name: pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


def _summary(home: Path, day: dt.date) -> dict:
    return json.loads((home / "reports" / day.isoformat() / "summary.json").read_text())


def test_pipeline_on_postgres_matches_files(pg, sim_root, tmp_path, monkeypatch, caplog):
    """run_day on both days through the postgres source and through the files source (in a
    parallel process): every metric table and every summary figure equal."""
    files_home, pg_home = tmp_path / "home-files", tmp_path / "home-pg"
    env = {k: v for k, v in os.environ.items() if k not in PATH_VARS}
    env.update(VENUE_RISK_HOME=str(files_home), VENUE_RISK_SOURCE="files",
               VENUE_RISK_FILES_ROOT=str(sim_root))
    files_run = subprocess.Popen([sys.executable, "-c", _RUN_FILES, *map(str, DAYS)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        settings = _env(monkeypatch, pg_home, VENUE_RISK_SOURCE="postgres",
                        AIRFLOW_CONN_VENUE_DB=pg["reader_uri"])
        assert settings.source().kind == "postgres"
        caplog.set_level(logging.INFO, logger="venue_risk.sources.postgres")
        for day in DAYS:
            pipeline.run_day(day, settings)
    finally:
        out, _ = files_run.communicate(timeout=600)
    assert files_run.returncode == 0, out[-3000:]

    # rows arrived through the driver in record batches (the largest dataset in several)
    batches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("index_components:")]
    assert batches and all("batch(es)" in m for m in batches)
    assert any(int(m.split(" in ")[1].split()[0]) > 1 for m in batches), batches

    for day in DAYS:
        pg_tables, files_tables = _metric_tables(pg_home, day), _metric_tables(files_home, day)
        assert len(files_tables) > 10 and sorted(pg_tables) == sorted(files_tables)
        for name, frame in files_tables.items():
            try:
                assert_frame_equal(pg_tables[name], frame, check_exact=True)
            except AssertionError as exc:
                raise AssertionError(f"{day} metric table {name}: {exc}") from None
        pg_summary, files_summary = _summary(pg_home, day), _summary(files_home, day)
        assert pg_summary["figures"] and pg_summary["figures"] == files_summary["figures"]
        for key in files_summary:
            if key != "run":
                assert pg_summary[key] == files_summary[key], key
        assert pg_summary["run"]["input_rows"] == files_summary["run"]["input_rows"]
    assert _summary(pg_home, DAYS[1])["baseline"]["days"] == 1

    # landing recorded the query's SHA-256 for each dataset, and never the password
    source = PostgresSource(pg["reader_uri"])
    run = _summary(pg_home, DAYS[1])["run"]
    hashes = {f["dataset"]: f["sha256"] for f in run["input_files"]}
    assert hashes == {n: pgsrc.sha256_text(source.queries[n]) for n in DATASET_NAMES}
    assert run["source"]["kind"] == "postgres" and run["source"]["user"] == pg["reader"]
    for path in pg_home.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html", ".eml"):
            assert pg["password"] not in path.read_text(errors="replace"), path


# -- read-only -----------------------------------------------------------------------------------

def test_reader_cannot_write(pg):
    """An INSERT through the source's own connection settings fails: the session is read-only,
    and the role has no INSERT privilege either."""
    import adbc_driver_postgresql.dbapi as adbc

    source = PostgresSource(pg["reader_uri"])
    source.prepare(DAYS[0])
    insert = "INSERT INTO venue_risk.insurance_fund VALUES (now(), 'X', 1.0)"
    with source.connect() as con, pgsrc._plain_cursor(con) as cur:
        with pytest.raises(adbc.Error, match="read-only transaction"):
            cur.execute(insert)
    with adbc.connect(pg["reader_uri"], autocommit=True) as con, pgsrc._plain_cursor(con) as cur:
        cur.execute("SET default_transaction_read_only = off")
        with pytest.raises(adbc.Error, match="permission denied"):
            cur.execute(insert)


def test_refuses_superuser(pg):
    source = PostgresSource(_uri(ADMIN, pg["db"]))
    with pytest.raises(InputError, match="superuser") as err:
        source.prepare(DAYS[0])
    assert "postgres_readonly_role.sql" in str(err.value)
    with pytest.raises(InputError, match="superuser"):
        source.read("trades", DAYS[0])


def test_refuses_role_that_can_write(pg):
    source = PostgresSource(_uri(pg["writer"], pg["db"], pg["password"]))
    with pytest.raises(InputError) as err:
        source.prepare(DAYS[0])
    message = str(err.value)
    assert "can write venue_risk.trades (INSERT)" in message and err.value.dataset == "trades"
    assert "postgres_readonly_role.sql" in message and pg["password"] not in message
    with pytest.raises(InputError, match=r"venue_risk\.trades \(INSERT\)") as err:
        source.read("funding", DAYS[0])  # another table of the same schema: still refused
    assert err.value.dataset == "funding"


# -- credentials -----------------------------------------------------------------------------------

class FakePasswordServer:
    """A PostgreSQL server that asks for a cleartext password and rejects it with an error that
    echoes it back (a driver message that contains the secret, for the scrubbing to remove)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._handle(conn)
                except OSError:
                    pass

    @staticmethod
    def _recv(conn, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data

    def _handle(self, conn) -> None:
        while True:  # SSLRequest / GSSENCRequest: decline, then the startup message
            length, code = struct.unpack("!ii", self._recv(conn, 8))
            body = self._recv(conn, length - 8)
            if code in (80877103, 80877104):
                conn.sendall(b"N")
                continue
            break
        user = dict(zip(*[iter(body.split(b"\0"))] * 2)).get(b"user", b"?").decode()
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        kind = self._recv(conn, 1)
        length = struct.unpack("!i", self._recv(conn, 4))[0]
        password = self._recv(conn, length - 4).rstrip(b"\0").decode()
        assert kind == b"p"
        fields = [b"SFATAL", b"VFATAL", b"C28P01",
                  f'Mpassword authentication failed for user "{user}" (got "{password}")'.encode()]
        payload = b"".join(f + b"\0" for f in fields) + b"\0"
        conn.sendall(b"E" + struct.pack("!i", len(payload) + 4) + payload)

    def close(self) -> None:
        self.sock.close()


def _assert_clear_and_secret_free(err: InputError, password: str, port: int, database: str,
                                  user: str, caplog, capfd) -> None:
    text = "".join(traceback.format_exception(err))
    out, errout = capfd.readouterr()
    message = str(err)
    for part in (f"host {HOST}", f"port {port}", f"database {database}", f"user {user}"):
        assert part in message, (part, message)
    assert "AIRFLOW_CONN_VENUE_DB" in message
    for where in (message, repr(err), text, caplog.text, out, errout):
        assert password not in where
        assert quote(password, safe="") not in where


def test_wrong_password_message(pg, tmp_path, monkeypatch, caplog, capfd):
    """A server that rejects the password (and echoes it in its error): the message names host,
    port, database and user, and the password appears nowhere, also through the pipeline."""
    caplog.set_level(logging.DEBUG)
    server = FakePasswordServer()
    try:
        password = "Wr0ng-" + uuid.uuid4().hex
        settings = _env(monkeypatch, tmp_path, VENUE_RISK_SOURCE="postgres",
                        AIRFLOW_CONN_VENUE_DB=_uri(pg["reader"], pg["db"], password, server.port))
        with pytest.raises(InputError, match="password authentication failed") as err:
            pipeline.prepare_source(DAYS[0], settings)
        _assert_clear_and_secret_free(err.value, password, server.port, pg["db"], pg["reader"],
                                      caplog, capfd)
        assert "***" in str(err.value)  # the echoed password was scrubbed, not just absent
    finally:
        server.close()


def test_unreachable_server_message(pg, caplog, capfd):
    with socket.socket() as s:  # a free port: nothing listens there
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    password = "Unre4ch-" + uuid.uuid4().hex
    conn = json.dumps({"conn_type": "postgres", "host": HOST, "port": port, "login": pg["reader"],
                       "password": password, "schema": pg["db"], "extra": {"connect_timeout": "5"}})
    with pytest.raises(InputError, match="cannot connect") as err:
        PostgresSource(conn).read("trades", DAYS[0])
    _assert_clear_and_secret_free(err.value, password, port, pg["db"], pg["reader"], caplog, capfd)


def test_missing_connection_is_clear(monkeypatch, tmp_path):
    settings = _env(monkeypatch, tmp_path, VENUE_RISK_SOURCE="postgres")
    with pytest.raises(InputError, match="AIRFLOW_CONN_VENUE_DB is not set"):
        settings.source()


def test_connection_forms():
    """Airflow's URI (postgres://, __extra__) and JSON forms give the same settings; repr,
    describe and scrub keep the password out."""
    secret = "p@ss:w/rd"
    a = pgsrc.parse_connection(f"postgres://u:{quote(secret, safe='')}@db.example:6543/venue"
                               "?sslmode=require&__extra__=%7B%22cursor%22%3A%22dictcursor%22%7D")
    b = pgsrc.parse_connection(json.dumps({"conn_type": "postgres", "host": "db.example",
                                           "port": 6543, "login": "u", "password": secret,
                                           "schema": "venue", "extra": {"sslmode": "require"}}))
    assert a == b and a.password == secret and a.params == (("sslmode", "require"),)
    assert secret not in repr(a) and "sslmode=require" in a.uri()
    assert pgsrc.parse_connection(a.uri()) == a
    source = PostgresSource(a.uri())
    assert secret not in repr(source) and secret not in json.dumps(source.describe())
    assert pgsrc.scrub(f"x {a.uri()} y", a.secrets()).count("***") == 1
    with pytest.raises(InputError, match="names no host"):
        pgsrc.parse_connection("postgresql:///venue")


# -- mapping -------------------------------------------------------------------------------------

def _mapping(tmp_path: Path, datasets: dict) -> Path:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"datasets": datasets}))
    return path


def test_mapping_unknown_dataset(pg, tmp_path):
    path = _mapping(tmp_path, {"trades": ref.reference_query("trades"), "tradez": "SELECT 1"})
    with pytest.raises(InputError, match="unknown dataset") as err:
        PostgresSource(pg["reader_uri"], path)
    assert err.value.dataset == "tradez" and str(path) in str(err.value)
    assert "liquidations" in str(err.value)  # the canonical names are listed


def test_mapping_wrong_columns(pg, tmp_path):
    """A query missing a canonical column, adding one, or returning a value of the wrong type:
    the error names the dataset, the column (and the row)."""
    good = ref.reference_query("trades")
    cases = {
        "missing": (good.replace("trade_id,", "trade_id AS trade_no,", 1), "trade_id", "missing"),
        "extra": (good.replace("SELECT ts,", "SELECT ts, 1 AS venue_flag,", 1), "venue_flag", "unknown"),
        "type": (good.replace(" price,", " 'n/a' AS price,", 1), "price", "not a Float64"),
    }
    for label, (sql, column, problem) in cases.items():
        source = PostgresSource(pg["reader_uri"], _mapping(tmp_path, {"trades": sql}))
        with pytest.raises(InputError, match=problem) as err:
            source.read("trades", DAYS[0])
        assert err.value.dataset == "trades" and err.value.column == column, label
        assert pg["password"] not in str(err.value)
    assert err.value.row == 0


def test_mapping_carries_only_named_datasets(pg, tmp_path):
    """carried() is the mapping's datasets; a dataset left out is not read; placeholders bind
    the day; landing of a carried dataset records the query hash."""
    from venue_risk.landing import land_dataset

    sql = ["SELECT ts, pool, balance FROM venue_risk.insurance_fund",
           "WHERE ts >= :day_start AND ts < :day_end AND ts::date = :day ORDER BY ts, pool"]
    source = PostgresSource(pg["reader_uri"], _mapping(tmp_path, {"insurance_fund": sql}))
    assert source.carried() == {"insurance_fund"}
    assert source.files("insurance_fund", DAYS[0]) == []
    with pytest.raises(InputError, match="not carried") as err:
        source.read("trades", DAYS[0])
    assert err.value.dataset == "trades"
    frame = source.read("insurance_fund", DAYS[1])
    assert frame.height == 1440 and frame["ts"].dt.date().unique().to_list() == [DAYS[1]]
    landed = land_dataset(source, "insurance_fund", DAYS[1], tmp_path / "landing")
    assert landed["rows"] == 1440
    assert landed["source_files"][0]["sha256"] == pgsrc.sha256_text("\n".join(sql))


def test_mapping_refuses_positional_parameters(tmp_path):
    path = _mapping(tmp_path, {"funding": "SELECT * FROM venue_risk.funding WHERE ts >= $1"})
    with pytest.raises(InputError, match="positional parameter") as err:
        PostgresSource("postgresql://u@h/db", path)
    assert err.value.dataset == "funding"


def test_shipped_reference_files_match_schema():
    """The shipped DDL and mapping are those generated from venue_risk.schema."""
    assert ref.REFERENCE_SQL.read_text() == ref.reference_ddl()
    assert json.loads(ref.REFERENCE_JSON.read_text()) == ref.reference_mapping()
    assert PostgresSource("postgresql://u@h/db").carried() == set(DATASET_NAMES)


def test_dag_reads_the_venue_db_connection_from_airflow(pg, airflow_db, tmp_path):
    """Under Airflow the credentials are the connection `venue_db` wherever Airflow keeps it:
    here in the metadata DB (no AIRFLOW_CONN_VENUE_DB in the environment), as a user adds it
    with `airflow connections add`; `airflow dags test` then reports the day from Postgres."""
    airflow = str(Path(sys.executable).parent / "airflow")
    env = {k: v for k, v in os.environ.items() if k not in PATH_VARS and not k.startswith("VENUE_RISK_")}
    env.update({"VENUE_RISK_HOME": str(tmp_path), "VENUE_RISK_SOURCE": "postgres",
                "VENUE_RISK_START_DATE": DAYS[0].isoformat()})
    subprocess.run([airflow, "connections", "add", "venue_db", "--conn-uri", pg["reader_uri"]],
                   env=env, check=True, capture_output=True, timeout=120)
    try:
        done = subprocess.run([airflow, "dags", "test", "venue_risk_daily", DAYS[0].isoformat()],
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        state = subprocess.run([airflow, "dags", "state", "venue_risk_daily", DAYS[0].isoformat()],
                               env=env, capture_output=True, text=True, timeout=120)
        assert state.stdout.strip().splitlines()[-1] == "success", state.stdout + state.stderr
        summary = _summary(tmp_path, DAYS[0])
        assert summary["run"]["source"]["kind"] == "postgres"
        assert pg["password"] not in (tmp_path / "reports").joinpath(
            DAYS[0].isoformat(), "summary.json").read_text()
    finally:
        subprocess.run([airflow, "connections", "delete", "venue_db"], env=env, capture_output=True,
                       timeout=120)
