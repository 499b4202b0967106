"""The DuckDB warehouse: canonical datasets and metric tables, keyed by date.

DuckDB allows one writing process, and while it holds the file no other process can open it,
read-only included (DESIGN section 1). So every write happens in `load_day` / `store_tables`
(called from tasks in a one-slot writer pool), each as one transaction that deletes the day and
inserts it again: a rerun replaces the day atomically and leaves the warehouse exactly as one run
would. Readers open the file read-only, only after the day's load in the same run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import polars as pl

from venue_risk.schema import DATASETS, duckdb_ddl


#: How long an open of the warehouse waits for another process's lock before it fails (seconds;
#: VENUE_RISK_WAREHOUSE_WAIT_S), and the backoff between attempts (first, factor, largest).
WAREHOUSE_WAIT_S = 900.0
LOCK_BACKOFF = (0.2, 1.6, 10.0)


class WarehouseLockTimeout(RuntimeError):
    """The warehouse stayed locked by another process for longer than the wait allows."""


def lock_holder(message: str) -> str:
    """The process holding the DuckDB file, from DuckDB's lock error ("Conflicting lock is held
    in <program> (PID <n>)"), with its command line when /proc shows it."""
    match = re.search(r"held in (.*?) \(PID (\d+)\)", message)
    if not match:
        return "an unknown process"
    program, pid = match.group(1), match.group(2)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        cmdline = ""
    return f"PID {pid} ({cmdline[:200] or program})"


def backoff_delays(wait_s: float, first: float, factor: float, largest: float) -> Iterator[float]:
    """Sleeps between attempts: first, first*factor, ... capped at `largest`, summing to at most
    `wait_s` (the last one shortened to fit)."""
    total, delay = 0.0, first
    while total < wait_s:
        step = min(delay, largest, wait_s - total)
        yield step
        total += step
        delay *= factor


#: DuckDB's memory limit per warehouse connection (VENUE_RISK_DUCKDB_MEMORY): DuckDB's own
#: default is 80% of the machine; a load of a large day spills to disk past this instead, so the
#: load stage stays within its memory budget beside the other tasks of a worker.
DUCKDB_MEMORY = "3GB"


def _open(path: Path, read_only: bool, wait_s: float | None) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, waiting out another process's lock with bounded exponential backoff
    (DESIGN section 1: every open of the warehouse, reader or writer, waits and retries); past
    the wait, WarehouseLockTimeout names the holder."""
    wait_s = float(os.environ.get("VENUE_RISK_WAREHOUSE_WAIT_S", WAREHOUSE_WAIT_S)) if wait_s is None else wait_s
    delays = backoff_delays(wait_s, *LOCK_BACKOFF)
    started = time.monotonic()
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only,
                                  config={"memory_limit": os.environ.get("VENUE_RISK_DUCKDB_MEMORY", DUCKDB_MEMORY)})
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            delay = next(delays, None)
            if delay is None:
                raise WarehouseLockTimeout(
                    f"warehouse {path} is locked by {lock_holder(str(exc))}: waited "
                    f"{time.monotonic() - started:.0f} s (VENUE_RISK_WAREHOUSE_WAIT_S={wait_s:g}) for "
                    f"{'a read-only' if read_only else 'a write'} open") from exc
            time.sleep(delay)


@contextmanager
def connect(path: Path, read_only: bool, wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with the session time zone pinned to UTC; waits (bounded) while another
    process holds the file."""
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: load a day first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only, wait_s)
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def _quote_path(path: str | Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


QUARANTINE_DDL = ("CREATE TABLE IF NOT EXISTS quarantine (date DATE NOT NULL, dataset VARCHAR, "
                  "reason VARCHAR, expectation VARCHAR, source_row BIGINT, record VARCHAR)")


def load_day(path: Path, day: dt.date, landed: dict[str, str | list[str]],
             quarantine: str | None = None) -> dict[str, int]:
    """Replace day `day` of every canonical dataset with its (validated) Parquet file or files
    (a list: the gate's parts, loaded together), and the day's rows of the `quarantine` table
    (date, dataset, reason, expectation, source_row, record) with the gate's quarantine file, in
    one transaction. Returns the rows now held per table."""
    counts: dict[str, int] = {}
    with connect(path, read_only=False) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for dataset in DATASETS:
                con.execute(duckdb_ddl(dataset))
                con.execute(f"DELETE FROM {dataset} WHERE date = DATE '{day.isoformat()}'")
                cols = ", ".join(DATASETS[dataset].columns)
                files = landed[dataset]
                src = (f"read_parquet([{', '.join(_quote_path(f) for f in files)}])"
                       if isinstance(files, (list, tuple)) else f"read_parquet({_quote_path(files)})")
                if "date" in DATASETS[dataset].schema:
                    con.execute(f"INSERT INTO {dataset} ({cols}) SELECT {cols} FROM {src}")
                else:
                    con.execute(f"INSERT INTO {dataset} (date, {cols}) "
                                f"SELECT DATE '{day.isoformat()}', {cols} FROM {src}")
                counts[dataset] = con.sql(
                    f"SELECT count(*) FROM {dataset} WHERE date = DATE '{day.isoformat()}'"
                ).fetchall()[0][0]
            con.execute(QUARANTINE_DDL)
            con.execute(f"DELETE FROM quarantine WHERE date = DATE '{day.isoformat()}'")
            if quarantine:
                con.execute("INSERT INTO quarantine (date, dataset, reason, expectation, source_row, record) "
                            "SELECT date, dataset, reason, expectation, source_row, record "
                            f"FROM read_parquet({_quote_path(quarantine)})")
            counts["quarantine"] = con.sql(
                f"SELECT count(*) FROM quarantine WHERE date = DATE '{day.isoformat()}'").fetchall()[0][0]
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return counts


def _add_new_columns(con: duckdb.DuckDBPyConnection, table: str, src: str) -> None:
    """Columns a newer version of a metric table carries are added to the stored table (null
    on the days stored before), so a warehouse outlives a code upgrade."""
    have = {r[0] for r in con.sql(f"DESCRIBE {table}").fetchall()}
    for name, dtype, *_ in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall():
        if name not in have:
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {dtype}')


DAY_VERSIONS_DDL = "CREATE TABLE IF NOT EXISTS day_versions (date DATE NOT NULL, version VARCHAR)"


def _table_day_digest(con: duckdb.DuckDBPyConnection, table: str, day: dt.date) -> str:
    """md5 over the day's rows of `table`, each rendered as text and sorted (order-free)."""
    return con.sql(
        f"SELECT md5(coalesce(string_agg(CAST(t AS VARCHAR), chr(10) ORDER BY CAST(t AS VARCHAR)), '')) "
        f"FROM {table} AS t WHERE date = DATE '{day.isoformat()}'").fetchall()[0][0]


def store_tables(path: Path, day: dt.date, tables: dict[str, str]) -> dict:
    """Replace day `day` of each metric table ({table: Parquet path with a leading `date`
    column}) in one transaction; tables are created from the first file's schema. In the same
    transaction the day's version (md5 over the per-table digests of the stored rows) goes to
    `day_versions`: later days record the versions their baselines saw, so a rerun that changes
    this day marks them stale, and an identical rerun does not.
    Returns {"rows": {table: rows}, "version": str}."""
    counts: dict[str, int] = {}
    digests: list[str] = []
    with connect(path, read_only=False) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for table, file in sorted(tables.items()):
                src = f"read_parquet({_quote_path(file)})"
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {src} LIMIT 0")
                _add_new_columns(con, table, src)
                con.execute(f"DELETE FROM {table} WHERE date = DATE '{day.isoformat()}'")
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {src}")
                counts[table] = con.sql(
                    f"SELECT count(*) FROM {table} WHERE date = DATE '{day.isoformat()}'"
                ).fetchall()[0][0]
                digests.append(f"{table}:{_table_day_digest(con, table, day)}")
            version = hashlib.md5("\n".join(digests).encode()).hexdigest()[:16]
            con.execute(DAY_VERSIONS_DDL)
            con.execute(f"DELETE FROM day_versions WHERE date = DATE '{day.isoformat()}'")
            con.execute("INSERT INTO day_versions VALUES (?, ?)", [day, version])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return {"rows": counts, "version": version}


def day_versions(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> dict[str, str]:
    """{ISO date: version} of the days in [start, end) whose metrics are stored."""
    if not table_exists(con, "day_versions"):
        return {}
    return dict(con.sql(
        f"SELECT CAST(date AS VARCHAR), version FROM day_versions WHERE date >= DATE '{start.isoformat()}' "
        f"AND date < DATE '{end.isoformat()}' ORDER BY date").fetchall())


def read_day(con: duckdb.DuckDBPyConnection, table: str, day: dt.date,
             where: str | None = None, columns: tuple[str, ...] | None = None) -> pl.DataFrame:
    """One day of a table as a Polars frame (through Arrow), without the partition `date`
    column for canonical datasets that do not carry it themselves; `where`: an extra SQL
    condition on the rows (e.g. the symbols of one group); `columns`: only these (in this order)."""
    extra = f" AND ({where})" if where else ""
    select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    frame = con.sql(f"SELECT {select} FROM {table} WHERE date = DATE '{day.isoformat()}'{extra}").pl()
    spec = DATASETS.get(table)
    if spec is not None and "date" not in spec.schema and "date" in frame.columns:
        frame = frame.drop("date")
    return frame


def read_history(con: duckdb.DuckDBPyConnection, table: str, day: dt.date,
                 days: int) -> pl.DataFrame:
    """Rows of `table` for the `days` dates before `day` (not including it); empty if the table
    does not exist yet."""
    if not table_exists(con, table):
        return pl.DataFrame()
    start = day - dt.timedelta(days=days)
    return con.sql(
        f"SELECT * FROM {table} WHERE date >= DATE '{start.isoformat()}' "
        f"AND date < DATE '{day.isoformat()}' ORDER BY date"
    ).pl()


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(con.sql(
        f"SELECT count(*) FROM information_schema.tables WHERE table_name = '{table}'"
    ).fetchall()[0][0])


def day_digest(path: Path, day: dt.date) -> dict[str, str]:
    """MD5 per table over the day's rows, each rendered as text and sorted: equal digests mean
    equal contents, whatever the physical row order (used to prove reruns are idempotent)."""
    with connect(path, read_only=True) as con:
        tables = [r[0] for r in con.sql(
            "SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]
        return {table: _table_day_digest(con, table, day) for table in tables}
