"""The DuckDB and pandas alternatives of bench/bench_alternatives.py compute the same slippage
and forced-cost tables as the project (so the benchmark compares like with like). No timing.

Inputs: the hand-built frames of test_slippage.py (four liquidations: sell and buy, partial, no
fill, fills beyond bankruptcy, with and without a book snapshot), alone and tiled 30 times with
each copy's fill prices shifted, so every symbol x path group has many different slippages
(non-trivial percentiles and es95)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_slippage as fx  # noqa: E402

_BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_alternatives.py"
_spec = importlib.util.spec_from_file_location("bench_alternatives", _BENCH)
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_alternatives", bench)
_spec.loader.exec_module(bench)


def hand_made() -> dict[str, pl.DataFrame]:
    return {"liquidations": fx.liquidations(), "trades": fx.trades(), "book_depth": fx.book_depth(),
            "instruments": fx.instruments(), "risk_tiers": fx.risk_tiers()}


def tiled(k: int = 30) -> dict[str, pl.DataFrame]:
    data = bench.replicate(hand_made(), k)
    # copy i of a trade gets its own price shift, (7i mod 30 - 15) x 0.03 %: fill qty unchanged
    copy = pl.col("symbol").str.extract(r"~(\d+)$").cast(pl.Int64).fill_null(0)
    data["trades"] = data["trades"].with_columns(
        pl.col("price") * (1 + 0.0003 * ((copy * 7) % 30 - 15)))
    return data


@pytest.mark.parametrize("make", [hand_made, tiled], ids=["hand_made", "tiled_x30"])
def test_alternatives_equal_the_project(make):
    data = make()
    rows = bench.check_all(data)  # raises AssertionError naming table, column and row
    assert rows["liquidation_executions"] == data["liquidations"].height
    assert rows["forced_costs"] == data["liquidations"].height
    assert rows["slippage_by_path"] == bench.project_slippage_by_path(data).height > 0
    assert rows["forced_cost_by_path"] == bench.project_forced_cost_by_path(data).height > 0


def test_tiled_groups_have_spread():
    # copies live under their own symbols; the ALL rows pool them (60 market liquidations)
    out = bench.project_slippage_by_path(tiled()).filter(pl.col("symbol") == "ALL")
    assert out["count"].sum() == 4 * 30
    market = out.filter(pl.col("path") == "market").row(0, named=True)
    assert market["count"] == 60
    assert market["slippage_bps_p50"] < market["slippage_bps_es95"] < market["slippage_bps_max"]


def test_difference_fails_loudly_naming_table_column_row():
    data = hand_made()
    ref = bench.project_slippage_by_path(data)
    got = pl.from_arrow(bench.duckdb_slippage_by_path(bench.duckdb_connection(data)))
    bench.assert_same("slippage_by_path", "duckdb", ref, got, bench.BY_PATH_SCHEMA)
    off = got.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.col("notional") * (1 + 1e-6))
                           .otherwise(pl.col("notional")).alias("notional"))
    with pytest.raises(AssertionError, match=r"slippage_by_path: column 'notional' differs at row 1 "
                                             r"\(date=.*symbol='ETHUSDT', path='incremental'\): project 199.2, duckdb"):
        bench.assert_same("slippage_by_path", "duckdb", ref, off, bench.BY_PATH_SCHEMA)
    # within 1e-9 relative passes
    near = got.with_columns(pl.col("notional") * (1 + 1e-12))
    bench.assert_same("slippage_by_path", "duckdb", ref, near, bench.BY_PATH_SCHEMA)
