"""The `postgres` source: the venue's operational PostgreSQL database, read through ADBC
(Arrow-native) one dataset and UTC day at a time.

Mapping. A JSON file names, for each dataset the source carries, one SQL query that returns that
dataset's canonical columns (`venue_risk.schema`) for one day:

    {"datasets": {"trades": "SELECT ts, symbol, ... FROM venue_risk.trades
                             WHERE ts >= :day_start AND ts < :day_end ORDER BY ts, trade_id",
                  ...}}

A query may also be given as a list of lines (joined with newlines). Datasets the mapping does not
name are not carried (`carried()`). The day enters the SQL through three named placeholders:

| placeholder  | value                                        | SQL type    |
|---|---|---|
| `:day_start` | the day's first instant, 00:00 UTC (inclusive) | timestamptz |
| `:day_end`   | the next day's first instant (exclusive)     | timestamptz |
| `:day`       | the day itself                               | date        |

The source replaces them with typed literals it builds from the date (`TIMESTAMPTZ '2026-11-01
00:00:00+00'`, `DATE '2026-11-01'`), never from any text of the mapping: a query without bound
parameters is the one the ADBC PostgreSQL driver streams with COPY as a sequence of record
batches (with bound `$1` parameters it materialises the whole result in one batch), so
positional `$n` parameters are refused. The session runs in UTC, read-only.

The default mapping, `postgres_reference.json`, reads the *reference schema* of
`postgres_reference.sql` (schema `venue_risk`, one table per dataset; see
`venue_risk.sources.postgres_reference`).

Credentials. A PostgreSQL URI (`postgresql://USER:PASSWORD@HOST:5432/DB?sslmode=require`) or an
Airflow connection in its JSON form, taken from `AIRFLOW_CONN_VENUE_DB`: Airflow's own convention
for the connection `venue_db`, so one variable configures both. The password never appears in a
message, a log line or `describe()`.

Read-only. Before any read the source refuses a role that is a superuser or may INSERT, UPDATE,
DELETE or TRUNCATE any table or view in the schemas the mapping's queries read (found from their
plans, `EXPLAIN (VERBOSE, FORMAT JSON)`), and it sets the session `READ ONLY`.
`postgres_readonly_role.sql` shows how to create the SELECT-only role `venue_risk_reader`.

Rows arrive as Arrow record batches (`cursor.fetch_record_batch()`), become Polars frames chunk by
chunk and are conformed with the same checks as the `files` source (`conform_columns`). Every
problem is an `InputError` naming the dataset (and column and row where there is one).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

import polars as pl

from venue_risk.errors import InputError
from venue_risk.schema import DATASET_NAMES
from venue_risk.sources.files import conform_columns

log = logging.getLogger(__name__)

CONN_ENV = "AIRFLOW_CONN_VENUE_DB"
CONN_ID = "venue_db"
HERE = Path(__file__).resolve().parent
REFERENCE_MAPPING = HERE / "postgres_reference.json"
READONLY_ROLE_SQL = HERE / "postgres_readonly_role.sql"

PLACEHOLDERS = ("day_start", "day_end", "day")
_PLACEHOLDER_RE = re.compile(r"(?<![:\w]):(day_start|day_end|day)\b")
_POSITIONAL_RE = re.compile(r"\$\d+")
# libpq connection parameters passed through from a URI query or an Airflow connection's extra;
# anything else (Airflow-only extras such as `cursor`) is dropped, libpq would refuse it.
LIBPQ_PARAMS = frozenset({
    "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslcompression",
    "sslsni", "ssl_min_protocol_version", "ssl_max_protocol_version", "requirepeer",
    "require_auth", "channel_binding", "gssencmode", "krbsrvname", "connect_timeout",
    "application_name", "options", "target_session_attrs", "keepalives", "keepalives_idle",
    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "client_encoding",
    "service", "passfile",
})
WRITE_PRIVILEGES = "INSERT, UPDATE, DELETE, TRUNCATE"
ROLE_HELP = (f"a SELECT-only role: create it with {READONLY_ROLE_SQL.name} "
             f"(psql -v reader_password=... -f {READONLY_ROLE_SQL}), and connect as it")
CONN_HELP = (f"{CONN_ENV}=postgresql://venue_risk_reader:PASSWORD@HOST:5432/DATABASE (Airflow's "
             f"environment form of the connection {CONN_ID!r}) or the connection as Airflow JSON")


# -- connection settings ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PgConnection:
    """Where and as whom to connect. The password is kept out of `repr` and of every message."""

    host: str
    port: int
    database: str
    user: str
    password: str = field(default="", repr=False)
    params: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def uri(self) -> str:
        """The libpq URI (holds the password: never log or show it)."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in self.params)
        return f"postgresql://{auth}@{host}:{self.port}/{quote(self.database, safe='')}" + (
            f"?{query}" if query else "")

    def label(self) -> str:
        """host, port, database and user: what a message may show."""
        return f"host {self.host}, port {self.port}, database {self.database}, user {self.user}"

    def address(self) -> str:
        """`postgresql://user@host:port/database`, without the password."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def secrets(self) -> list[str]:
        """Every spelling of the secrets a driver message could echo."""
        found = [dict(self.params).get("sslpassword", ""), self.password]
        out: list[str] = []
        for s in filter(None, found):
            out += [s, quote(s, safe=""), quote_plus(s), quote(s)]
        return sorted(set(filter(None, out)), key=len, reverse=True)


def parse_connection(text: str) -> PgConnection:
    """A PostgreSQL URI (`postgres://` or `postgresql://`, Airflow's URI form) or an Airflow
    connection's JSON form (`{"conn_type": "postgres", "host", "port", "login", "password",
    "schema", "extra"}`; `schema` is the database). Errors never quote the text (it holds the
    password)."""
    text = (text or "").strip()
    if not text:
        raise InputError("*", f"no venue database connection: {CONN_ENV} is not set",
                         expected=CONN_HELP)
    if text.startswith("{"):
        return _from_airflow_json(text)
    return _from_uri(text)


def _from_uri(text: str) -> PgConnection:
    try:
        parts = urlsplit(text)
        port = parts.port or 5432
    except ValueError:
        raise InputError("*", f"{CONN_ENV} is not a valid connection URI (port or host unreadable)",
                         expected=CONN_HELP) from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise InputError("*", f"{CONN_ENV} has scheme {parts.scheme!r}", expected=CONN_HELP)
    extra: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "__extra__":
            try:
                extra.update({k: str(v) for k, v in json.loads(value).items()})
            except (ValueError, AttributeError):
                raise InputError("*", f"{CONN_ENV}: __extra__ is not a JSON object",
                                 expected=CONN_HELP) from None
        else:
            extra[key] = value
    return _connection(host=unquote(parts.hostname or ""), port=port,
                       database=unquote(parts.path.lstrip("/")), user=unquote(parts.username or ""),
                       password=unquote(parts.password or ""), extra=extra)


def _from_airflow_json(text: str) -> PgConnection:
    try:
        conf = json.loads(text)
        if not isinstance(conf, dict):
            raise ValueError
    except ValueError:
        raise InputError("*", f"{CONN_ENV} starts with '{{' but is not a JSON object",
                         expected=CONN_HELP) from None
    extra = conf.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else {}
        except ValueError:
            raise InputError("*", f"{CONN_ENV}: extra is not JSON", expected=CONN_HELP) from None
    try:
        port = int(conf.get("port") or 5432)
    except (TypeError, ValueError):
        raise InputError("*", f"{CONN_ENV}: port is not a number", expected=CONN_HELP) from None
    return _connection(host=str(conf.get("host") or ""), port=port,
                       database=str(conf.get("schema") or conf.get("database") or ""),
                       user=str(conf.get("login") or ""), password=str(conf.get("password") or ""),
                       extra={str(k): str(v) for k, v in dict(extra).items()})


def _connection(*, host: str, port: int, database: str, user: str, password: str,
                extra: dict[str, str]) -> PgConnection:
    missing = [n for n, v in (("host", host), ("database", database), ("user", user)) if not v]
    if missing:
        raise InputError("*", f"{CONN_ENV} names no {' or '.join(missing)}", expected=CONN_HELP)
    params = tuple(sorted((k, v) for k, v in extra.items() if k in LIBPQ_PARAMS))
    return PgConnection(host, port, database, user, password, params)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret, and any `user:password@` of a URI, replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.IGNORECASE)


# -- mapping ---------------------------------------------------------------------------------------

def load_mapping(path: str | Path) -> dict[str, str]:
    """dataset -> SQL text (as written, lines joined) from a mapping file, checked: a JSON object
    with a `datasets` object whose keys are canonical dataset names and whose values are a
    non-empty SQL string (or list of lines) using only the named placeholders."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError("*", f"cannot read the postgres mapping ({exc.strerror})", file=str(path),
                         expected="a JSON mapping file (VENUE_RISK_PG_MAPPING)") from None
    except ValueError as exc:
        raise InputError("*", f"the postgres mapping is not JSON ({exc})", file=str(path),
                         expected='{"datasets": {"<dataset>": "SELECT ..."}}') from None
    datasets = doc.get("datasets") if isinstance(doc, dict) else None
    if not isinstance(datasets, dict) or not datasets:
        raise InputError("*", "the postgres mapping has no 'datasets' object", file=str(path),
                         expected='{"datasets": {"<dataset>": "SELECT ..."}}')
    return {name: _mapping_sql(name, sql, path) for name, sql in datasets.items()}


def _mapping_sql(name: str, sql: Any, path: Path) -> str:
    """One mapping entry as SQL text, checked."""
    if name not in DATASET_NAMES:
        raise InputError(name, "the postgres mapping names an unknown dataset", file=str(path),
                         expected=f"one of the canonical datasets {list(DATASET_NAMES)}")
    if isinstance(sql, list) and all(isinstance(line, str) for line in sql):
        sql = "\n".join(sql)
    if not isinstance(sql, str) or not sql.strip():
        raise InputError(name, "the postgres mapping's entry is not SQL text", file=str(path),
                         expected="a SELECT as a string or a list of lines")
    if _POSITIONAL_RE.search(sql):
        raise InputError(name, "the mapping's SQL uses a positional parameter ($n)", file=str(path),
                         expected="the named placeholders :day_start, :day_end (timestamptz) and "
                                  ":day (date)")
    return sql.strip().rstrip(";").strip()


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[00:00 UTC of `day`, 00:00 UTC of the next day)."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    return start, start + dt.timedelta(days=1)


def bind_day(sql: str, day: dt.date) -> str:
    """`sql` with :day_start, :day_end and :day replaced by typed literals of `day` (built from the
    date alone, so nothing of the mapping's text is ever quoted into them)."""
    start, end = day_bounds(day)
    values = {"day_start": f"TIMESTAMPTZ '{start:%Y-%m-%d %H:%M:%S}+00'",
              "day_end": f"TIMESTAMPTZ '{end:%Y-%m-%d %H:%M:%S}+00'",
              "day": f"DATE '{day.isoformat()}'"}
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], sql)


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- plans and privileges ----------------------------------------------------------------------------

def plan_relations(plan: Any) -> set[tuple[str, str]]:
    """(schema, relation) of every relation an EXPLAIN (VERBOSE, FORMAT JSON) plan reads."""
    found: set[tuple[str, str]] = set()
    if isinstance(plan, list):
        for item in plan:
            found |= plan_relations(item)
    elif isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add((str(plan.get("Schema", "")), str(plan["Relation Name"])))
        for value in plan.values():
            if isinstance(value, (list, dict)):
                found |= plan_relations(value)
    return found


def plan_writes(plan: Any) -> bool:
    """Whether a plan modifies data (a ModifyTable node: INSERT, UPDATE, DELETE, MERGE)."""
    if isinstance(plan, list):
        return any(plan_writes(p) for p in plan)
    if isinstance(plan, dict):
        if plan.get("Node Type") == "ModifyTable":
            return True
        return any(plan_writes(v) for v in plan.values() if isinstance(v, (list, dict)))
    return False


_WRITABLE_SQL = (
    "SELECT c.relname, concat_ws(', ', "
    + ", ".join(f"CASE WHEN has_table_privilege(c.oid, '{p}') THEN '{p}' END"
                for p in WRITE_PRIVILEGES.split(", "))
    + ", CASE WHEN NOT has_table_privilege(c.oid, 'INSERT, UPDATE') "
    "AND has_any_column_privilege(c.oid, 'INSERT, UPDATE') THEN 'column INSERT/UPDATE' END) "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = {schema} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
    f"AND (has_table_privilege(c.oid, '{WRITE_PRIVILEGES}') "
    "OR has_any_column_privilege(c.oid, 'INSERT, UPDATE')) ORDER BY 1"
)


def writer_culprits(relations: dict[str, set[tuple[str, str]]], schema: str,
                    writable: list[str]) -> list[str]:
    """The datasets to name for writable tables of `schema`: those whose query reads one of
    them, else every dataset whose query reads the schema."""
    hit = {(schema, t) for t in writable}
    direct = sorted(d for d, rels in relations.items() if rels & hit)
    return direct or sorted(d for d, rels in relations.items() if any(s == schema for s, _ in rels))


def quote_literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings: only ' is doubled)."""
    return "'" + text.replace("'", "''") + "'"


# -- the source ------------------------------------------------------------------------------------

class PostgresSource:
    """The venue's PostgreSQL database, read through ADBC with a mapping of one query per
    carried dataset."""

    kind = "postgres"

    def __init__(self, connection: str, mapping: str | Path | None = None):
        self.conn = parse_connection(connection)
        self.mapping_path = Path(mapping) if mapping else REFERENCE_MAPPING
        self.queries = load_mapping(self.mapping_path)

    @classmethod
    def from_env(cls, mapping: str | Path | None = None) -> "PostgresSource":
        """The connection from AIRFLOW_CONN_VENUE_DB (the Airflow connection `venue_db`)."""
        return cls(os.environ.get(CONN_ENV, ""), mapping)

    def __repr__(self) -> str:
        return f"PostgresSource({self.conn.address()!r}, mapping={str(self.mapping_path)!r})"

    def carried(self) -> set[str]:
        """The datasets this source produces: those the mapping names."""
        return set(self.queries)

    def describe(self) -> dict[str, str]:
        """Where the data comes from (never the password), and the mapping's fingerprint."""
        return {"kind": self.kind, "host": self.conn.host, "port": str(self.conn.port),
                "database": self.conn.database, "user": self.conn.user,
                "mapping": str(self.mapping_path),
                "mapping_sha256": sha256_text(json.dumps(self.queries, sort_keys=True)),
                "carried": ",".join(n for n in DATASET_NAMES if n in self.queries)}

    def prepare(self, day: dt.date) -> None:
        """Connect and check, for every carried dataset's query, that it runs read-only as a role
        that cannot write: the day's extract then fails on nothing but data."""
        with self.connect(self.queries, day):
            pass

    def files(self, dataset: str, day: dt.date) -> list[Path]:
        """No files: a database source names its inputs with `inputs()`."""
        return []

    def inputs(self, dataset: str, day: dt.date) -> list[dict[str, str]]:
        """What landing records for the dataset instead of file hashes: the database address
        and the SHA-256 of the mapping's query text."""
        sql = self._query(dataset)
        return [{"file": f"{self.conn.address()} ({self.mapping_path.name}: {dataset})",
                 "sha256": sha256_text(sql), "query": sql}]

    def read(self, dataset: str, day: dt.date) -> pl.DataFrame:
        """The day's rows of `dataset` in canonical columns and types, in the query's order."""
        sql = self._query(dataset)
        with self.connect({dataset: sql}, day) as con:
            raw = self._fetch(con, dataset, bind_day(sql, day))
        where = f"{self.conn.address()} ({self.mapping_path.name}: {dataset})"
        return conform_columns(dataset, raw, where)

    def _query(self, dataset: str) -> str:
        if dataset not in self.queries:
            raise InputError(dataset, "not carried by the postgres source: the mapping names no SQL "
                             "for it", file=str(self.mapping_path),
                             expected=f"one of the carried datasets {sorted(self.queries)}")
        return self.queries[dataset]

    # -- connection, checks, fetch ------------------------------------------------------------------

    def connect(self, queries: dict[str, str] | None = None, day: dt.date | None = None) -> "_Session":
        """A checked session: connected (a failure names host, port, database and user, never the
        password), read-only, in UTC, as a role that cannot write the tables `queries` read
        (default: the whole mapping). Use as a context manager."""
        con = self._open()
        try:
            self._set_session(con)
            self._refuse_writer(con, self.queries if queries is None else queries,
                                day or dt.date(2000, 1, 1))
        except BaseException:
            con.close()
            raise
        return _Session(con)

    def _open(self):
        """An ADBC connection (autocommit, so each statement is its own read-only transaction)."""
        import adbc_driver_postgresql.dbapi as adbc

        failure = ""
        try:
            return adbc.connect(self.conn.uri(), autocommit=True)
        except Exception as exc:  # the driver's kinds vary; the text may echo the password
            failure = scrub(f"{type(exc).__name__}: {exc}".strip(), self.conn.secrets())
        # Raised outside the except block: no chained exception carries the driver's text.
        raise InputError("*", f"cannot connect to the venue database ({self.conn.label()}): "
                         f"{failure}", expected="a reachable PostgreSQL server and valid credentials "
                         f"in {CONN_ENV} (the Airflow connection {CONN_ID!r})")

    def _set_session(self, con) -> None:
        cur = _plain_cursor(con)
        try:
            self._run(cur, "*", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            self._run(cur, "*", "SET TIME ZONE 'UTC'")
            self._run(cur, "*", "SHOW default_transaction_read_only")
            if str(cur.fetchone()[0]).lower() != "on":
                raise InputError("*", "the session could not be made read-only",
                                 expected="default_transaction_read_only = on")
        finally:
            cur.close()

    def _refuse_writer(self, con, queries: dict[str, str], day: dt.date) -> None:
        """Raise unless the role is no superuser and may not write any table or view in the
        schemas the queries read."""
        cur = _plain_cursor(con)
        try:
            self._run(cur, "*", "SELECT current_user, rolsuper FROM pg_catalog.pg_roles "
                                "WHERE rolname = current_user")
            user, is_super = cur.fetchone()
            if is_super:
                raise InputError("*", f"the venue database role {user!r} is a superuser: the risk "
                                 "pipeline reads only through a role that cannot write",
                                 expected=ROLE_HELP)
            relations: dict[str, set[tuple[str, str]]] = {}
            for dataset, sql in queries.items():
                self._run(cur, dataset, "EXPLAIN (VERBOSE, FORMAT JSON) " + bind_day(sql, day))
                plan = json.loads(cur.fetchone()[0])
                if plan_writes(plan):
                    raise InputError(dataset, "the mapping's SQL modifies data",
                                     file=str(self.mapping_path), expected="a SELECT")
                relations[dataset] = plan_relations(plan)
            for schema in sorted({s for rels in relations.values() for s, _ in rels}):
                self._run(cur, "*", _WRITABLE_SQL.format(schema=quote_literal(schema)))
                writable = {r[0]: r[1] for r in cur.fetchall()}
                if writable:
                    shown = ", ".join(f"{schema}.{t} ({p})" for t, p in list(writable.items())[:5])
                    more = f" and {len(writable) - 5} more" if len(writable) > 5 else ""
                    raise InputError(", ".join(writer_culprits(relations, schema, list(writable))),
                                     f"the venue database role {user!r} can write {shown}{more} in "
                                     f"schema {schema!r}, which the mapping reads: the risk pipeline "
                                     "reads only through a role that cannot write",
                                     expected=ROLE_HELP)
        finally:
            cur.close()

    def _fetch(self, con, dataset: str, sql: str) -> pl.DataFrame:
        """Run one query and collect its record batches, each converted to Polars as it comes."""
        cur = con.cursor()
        try:
            self._run(cur, dataset, sql)
            try:
                reader = cur.fetch_record_batch()
                chunks = [pl.from_arrow(batch) for batch in reader]
                empty = reader.schema.empty_table()
            except Exception as exc:
                failure = scrub(f"{type(exc).__name__}: {exc}", self.conn.secrets())
            else:
                if not chunks:
                    return pl.from_arrow(empty)
                log.info("%s: %d row(s) in %d batch(es) from %s", dataset,
                         sum(c.height for c in chunks), len(chunks), self.conn.address())
                return pl.concat(chunks, how="vertical", rechunk=False) if len(chunks) > 1 else chunks[0]
        finally:
            cur.close()
        raise InputError(dataset, f"the query's result cannot be read as Arrow ({failure})",
                         file=str(self.mapping_path),
                         expected="distinct column names of types PostgreSQL and Arrow share")

    def _run(self, cur, dataset: str, sql: str) -> None:
        """Execute, turning a driver error into an InputError naming the dataset (secrets
        scrubbed)."""
        failure = ""
        try:
            cur.execute(sql)
            return
        except Exception as exc:
            failure = scrub(f"{type(exc).__name__}: {exc}".strip(), self.conn.secrets())
        hint = ""
        if "permission denied" in failure.lower():
            hint = f"; grant the reader SELECT on what the query reads ({READONLY_ROLE_SQL.name})"
        file = str(self.mapping_path) if dataset != "*" else None
        raise InputError(dataset, f"the venue database refused the query{hint}: {failure}",
                         file=file, expected="a SELECT over the venue database that returns the "
                                             "dataset's canonical columns")


def _plain_cursor(con):
    """A cursor that executes statements as they are (the driver otherwise wraps a query without
    parameters in COPY ... TO STDOUT, which SHOW and EXPLAIN cannot be)."""
    from adbc_driver_postgresql import StatementOptions

    cur = con.cursor()
    cur.adbc_statement.set_options(**{StatementOptions.USE_COPY.value: "false"})
    return cur


class _Session:
    """A checked ADBC connection, closed at the end of a `with` block."""

    def __init__(self, con):
        self.con = con

    def __enter__(self):
        return self.con

    def __exit__(self, *exc) -> None:
        self.con.close()
