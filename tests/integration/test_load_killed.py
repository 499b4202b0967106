"""Fault injection: the load process killed (SIGKILL) in the middle of its transaction leaves the
warehouse exactly as it was before (the day's previous contents), and the next load succeeds."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import polars as pl
import pytest

from venue_risk.schema import DATASET_NAMES
from venue_risk.warehouse import day_digest, load_day

DAY = dt.date(2026, 11, 1)
pytestmark = pytest.mark.integration

KILLER = """
import datetime as dt, json, os, signal, sys
import venue_risk.warehouse as w

calls = {"n": 0}
real = w.duckdb_ddl

def ddl_then_die(name):
    calls["n"] += 1
    if calls["n"] == 9:  # eight datasets deleted and re-inserted inside the open transaction
        os.kill(os.getpid(), signal.SIGKILL)
    return real(name)

w.duckdb_ddl = ddl_then_die
args = json.loads(sys.argv[1])
w.load_day(args["warehouse"], dt.date.fromisoformat(args["day"]), args["paths"])
print("not killed")
"""


def test_load_killed_mid_transaction_keeps_the_previous_day(tmp_path):
    from venue_risk.simulate import simulate

    root = tmp_path / "sim"
    simulate("tiny", DAY, 1, root)
    paths = {d: str(root / d / f"date={DAY}" / "data.parquet") for d in DATASET_NAMES}
    warehouse = tmp_path / "warehouse.duckdb"
    load_day(warehouse, DAY, paths)
    before = day_digest(warehouse, DAY)

    # a changed day (half the trades, no liquidations' fills changed) that must never half-land
    changed = dict(paths)
    for name in ("instruments", "trades", "order_events", "mark_index", "funding", "liquidations",
                 "book_depth", "positions_eod", "api_requests"):
        frame = pl.read_parquet(paths[name])
        out = tmp_path / "changed" / f"{name}.parquet"
        out.parent.mkdir(exist_ok=True)
        frame.head(max(frame.height // 2, 1)).write_parquet(out)
        changed[name] = str(out)
    proc = subprocess.run([sys.executable, "-c", KILLER,
                           json.dumps({"warehouse": str(warehouse), "day": DAY.isoformat(), "paths": changed})],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "not killed" not in proc.stdout
    assert day_digest(warehouse, DAY) == before  # the WAL's uncommitted work is gone

    counts = load_day(warehouse, DAY, changed)  # and the warehouse still takes a load
    assert counts["trades"] == pl.read_parquet(changed["trades"]).height
    assert day_digest(warehouse, DAY) != before
