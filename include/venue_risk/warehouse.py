"""The DuckDB warehouse: canonical datasets and metric tables, keyed by date.

DuckDB allows one writing process, and while it holds the file no other process can open it,
read-only included (DESIGN section 1). So every write happens in `load_day` / `store_tables`
(called from tasks in a one-slot writer pool), each as one transaction that deletes the day and
inserts it again: a rerun replaces the day atomically and leaves the warehouse exactly as one run
would. Readers open the file read-only, only after the day's load in the same run.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import polars as pl

from venue_risk.schema import DATASETS, duckdb_ddl


@contextmanager
def connect(path: Path, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with the session time zone pinned to UTC."""
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: load a day first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def _quote_path(path: str | Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


QUARANTINE_DDL = ("CREATE TABLE IF NOT EXISTS quarantine (date DATE NOT NULL, dataset VARCHAR, "
                  "reason VARCHAR, expectation VARCHAR, source_row BIGINT, record VARCHAR)")


def load_day(path: Path, day: dt.date, landed: dict[str, str],
             quarantine: str | None = None) -> dict[str, int]:
    """Replace day `day` of every canonical dataset with its (validated) Parquet file, and the
    day's rows of the `quarantine` table (date, dataset, reason, expectation, source_row, record)
    with the gate's quarantine file, in one transaction. Returns the rows now held per table."""
    counts: dict[str, int] = {}
    with connect(path, read_only=False) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for dataset in DATASETS:
                con.execute(duckdb_ddl(dataset))
                con.execute(f"DELETE FROM {dataset} WHERE date = DATE '{day.isoformat()}'")
                cols = ", ".join(DATASETS[dataset].columns)
                src = f"read_parquet({_quote_path(landed[dataset])})"
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


def store_tables(path: Path, day: dt.date, tables: dict[str, str]) -> dict[str, int]:
    """Replace day `day` of each metric table ({table: Parquet path with a leading `date`
    column}) in one transaction; tables are created from the first file's schema."""
    counts: dict[str, int] = {}
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
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return counts


def read_day(con: duckdb.DuckDBPyConnection, table: str, day: dt.date) -> pl.DataFrame:
    """One day of a table as a Polars frame (through Arrow), without the partition `date`
    column for canonical datasets that do not carry it themselves."""
    frame = con.sql(f"SELECT * FROM {table} WHERE date = DATE '{day.isoformat()}'").pl()
    spec = DATASETS.get(table)
    if spec is not None and "date" not in spec.schema:
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
        return {
            table: con.sql(
                f"SELECT md5(coalesce(string_agg(CAST(t AS VARCHAR), chr(10) ORDER BY CAST(t AS VARCHAR)), '')) "
                f"FROM {table} AS t WHERE date = DATE '{day.isoformat()}'").fetchall()[0][0]
            for table in tables
        }
