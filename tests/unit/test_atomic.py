"""Atomic Parquet writes: the sorted writer equals a sort then a write."""

from __future__ import annotations

import polars as pl
import pytest

from venue_risk.atomic import write_parquet_atomic, write_sorted_parquet_atomic


@pytest.mark.parametrize("rows_per_group", [2, 9, 1 << 20])  # in row groups, and at once
def test_sorted_write_equals_sort_then_write_with_nulls_ties_and_row_groups(tmp_path, rows_per_group):
    frame = pl.DataFrame({
        "ts": [3, 1, None, 2, 1, 3, 2, None, 1],
        "key": ["b", "a", "z", None, "a", "a", "c", "y", None],
        "v": list(range(9)),  # ties in (ts, key) keep their input order
        "tags": [["x"], [], None, ["y", "z"], ["q"], [], ["r"], ["s"], []],
    })
    expected = frame.sort(["ts", "key"], maintain_order=True, nulls_last=True)
    path = write_sorted_parquet_atomic(frame, ["ts", "key"], tmp_path / "s.parquet",
                                      rows_per_group=rows_per_group)
    got = pl.read_parquet(path)
    assert got.equals(expected) and got.schema == frame.schema
    assert got["v"].to_list() == [1, 4, 8, 6, 3, 5, 0, 7, 2]
    assert not list(tmp_path.glob(".*tmp"))


def test_sorted_write_of_an_empty_frame_keeps_the_schema(tmp_path):
    frame = pl.DataFrame(schema={"ts": pl.Int64, "key": pl.String})
    got = pl.read_parquet(write_sorted_parquet_atomic(frame, ["ts"], tmp_path / "e.parquet"))
    assert got.height == 0 and got.schema == frame.schema
    assert pl.read_parquet(write_parquet_atomic(frame, tmp_path / "f.parquet")).schema == frame.schema
