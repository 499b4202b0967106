"""The warehouse: a day is replaced atomically, reruns are idempotent, readers see UTC."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from venue_risk import warehouse
from venue_risk.schema import DATASETS, empty_frame

DAY = dt.date(2026, 11, 3)


def _landed(tmp_path, trades_rows: int) -> dict[str, str]:
    out = {}
    for name in DATASETS:
        frame = empty_frame(name)
        if name == "trades" and trades_rows:
            t0 = dt.datetime(2026, 11, 3, tzinfo=dt.timezone.utc)
            frame = pl.DataFrame({
                "ts": [t0 + dt.timedelta(minutes=i) for i in range(trades_rows)],
                "symbol": "BTCUSDT", "trade_id": range(trades_rows), "price": 90_000.0, "qty": 0.5,
                "taker_side": "buy", "taker_order_id": 1, "maker_order_id": 2, "taker_account": 3,
                "maker_account": 4, "taker_fee": 1.0, "maker_fee": 0.5, "liquidation_id": None,
            }, schema=DATASETS["trades"].schema)
        path = tmp_path / f"{name}-{trades_rows}.parquet"
        frame.write_parquet(path)
        out[name] = str(path)
    return out


def test_load_day_twice_is_idempotent(tmp_path):
    db = tmp_path / "w.duckdb"
    landed = _landed(tmp_path, 5)
    assert warehouse.load_day(db, DAY, landed)["trades"] == 5
    first = warehouse.day_digest(db, DAY)
    assert warehouse.load_day(db, DAY, landed)["trades"] == 5
    assert warehouse.day_digest(db, DAY) == first


def test_reload_replaces_the_day_and_leaves_other_days(tmp_path):
    db = tmp_path / "w.duckdb"
    warehouse.load_day(db, DAY, _landed(tmp_path, 5))
    other = DAY - dt.timedelta(days=1)
    warehouse.load_day(db, other, _landed(tmp_path, 2))
    warehouse.load_day(db, DAY, _landed(tmp_path, 3))
    with warehouse.connect(db, read_only=True) as con:
        assert warehouse.read_day(con, "trades", DAY).height == 3
        assert warehouse.read_day(con, "trades", other).height == 2
        got = warehouse.read_day(con, "trades", DAY)
    assert got["ts"].dtype == pl.Datetime("us", "UTC")
    assert "date" not in got.columns


def test_failed_load_rolls_back_to_the_previous_day(tmp_path):
    db = tmp_path / "w.duckdb"
    warehouse.load_day(db, DAY, _landed(tmp_path, 5))
    before = warehouse.day_digest(db, DAY)
    broken = _landed(tmp_path, 3)
    broken["insurance_fund"] = str(tmp_path / "does-not-exist.parquet")  # fails late in the load
    with pytest.raises(Exception):
        warehouse.load_day(db, DAY, broken)
    assert warehouse.day_digest(db, DAY) == before


def test_store_tables_replaces_metric_rows_by_date(tmp_path):
    db = tmp_path / "w.duckdb"
    path = tmp_path / "m.parquet"
    pl.DataFrame({"date": [DAY, DAY], "figure": ["a", "b"], "value": [1.0, 2.0]}).write_parquet(path)
    first = warehouse.store_tables(db, DAY, {"venue_figures": str(path)})
    again = warehouse.store_tables(db, DAY, {"venue_figures": str(path)})
    assert first == again == {"rows": {"venue_figures": 2}, "version": first["version"]}
    pl.DataFrame({"date": [DAY, DAY], "figure": ["a", "b"], "value": [1.0, 2.5]}).write_parquet(path)
    changed = warehouse.store_tables(db, DAY, {"venue_figures": str(path)})["version"]
    assert changed != first["version"]  # a changed day has a new version; an identical rerun has not
    with warehouse.connect(db, read_only=True) as con:
        assert warehouse.day_versions(con, DAY, DAY + dt.timedelta(days=1)) == {DAY.isoformat(): changed}
        assert warehouse.read_day(con, "venue_figures", DAY).height == 2
        hist = warehouse.read_history(con, "venue_figures", DAY + dt.timedelta(days=1), 30)
        assert hist.height == 2
        assert warehouse.read_history(con, "no_such_table", DAY, 30).height == 0


def test_open_waits_for_another_process_lock_then_names_the_holder(tmp_path):
    """A writer in another process holds the file: a read-only open waits with backoff while it
    does, and succeeds once it lets go; past the wait, the error names the holder's PID."""
    import subprocess
    import sys
    import time

    db = tmp_path / "w.duckdb"
    with warehouse.connect(db, read_only=False) as con:
        con.execute("CREATE TABLE t (a INT)")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
        "time.sleep(float(sys.argv[2]))"), str(db), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(warehouse.WarehouseLockTimeout, match=rf"locked by PID {holder.pid} .*waited"):
            with warehouse.connect(db, read_only=True, wait_s=0.5):
                pass
        t0 = time.monotonic()
        with warehouse.connect(db, read_only=True, wait_s=60) as con:  # waits out the holder
            assert con.sql("SELECT count(*) FROM t").fetchall() == [(0,)]
        assert time.monotonic() - t0 > 1.0
    finally:
        holder.kill()
        holder.wait()


def test_backoff_delays_grow_and_fit_the_wait():
    delays = list(warehouse.backoff_delays(5.0, 0.2, 2.0, 1.5))
    assert delays[:4] == [0.2, 0.4, 0.8, 1.5]
    assert sum(delays) == pytest.approx(5.0)
