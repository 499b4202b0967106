"""The report's long tables as CSV: whole, ordered, accounts pseudonymized as in the PDF, lists
joined, and only this build's files in the folder."""

from __future__ import annotations

import datetime as dt

import polars as pl

from venue_risk.report.context import pseudonymize
from venue_risk.report.tables_csv import write_table_csvs

T = dt.datetime(2026, 11, 5, 3, 0, 7, 250000, tzinfo=dt.timezone.utc)


def test_tables_written_whole_sorted_and_pseudonymized(tmp_path):
    exe = pl.DataFrame({"liquidation_id": [3, 1, 2], "account": [42, 7, None],
                        "ts_trigger": [T, T, T - dt.timedelta(seconds=1)], "slippage_bps": [1.5, 2.5, 0.0]})
    inc = pl.DataFrame({"start": [T], "symbols": [["BTCUSDT", "ETHUSDT"]], "max_z": [31.25]})
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "old_table.csv").write_text("stale\n")
    out = write_table_csvs({"liquidation_executions": exe, "anomaly_incidents": inc, "not_a_csv_table": exe},
                           tmp_path, b"key")
    assert out == {"liquidation_executions": {"file": "tables/liquidation_executions.csv", "rows": 3},
                   "anomaly_incidents": {"file": "tables/anomaly_incidents.csv", "rows": 1}}
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["anomaly_incidents.csv",
                                                                     "liquidation_executions.csv"]
    rows = pl.read_csv(tmp_path / "tables" / "liquidation_executions.csv", infer_schema=False)
    # ordered by trigger time, then id; accounts as the PDF shows them; a missing account stays empty
    assert rows["liquidation_id"].to_list() == ["2", "1", "3"]
    assert rows["account"].to_list() == [None, pseudonymize(7, b"key"), pseudonymize(42, b"key")]
    assert rows["ts_trigger"].to_list()[1] == "2026-11-05T03:00:07.250000Z"
    assert rows["slippage_bps"].to_list() == ["0.0", "2.5", "1.5"]
    text = (tmp_path / "tables" / "anomaly_incidents.csv").read_text()
    assert "BTCUSDT|ETHUSDT" in text
    # without a key, accounts as recorded
    write_table_csvs({"liquidation_executions": exe}, tmp_path, None)
    rows = pl.read_csv(tmp_path / "tables" / "liquidation_executions.csv", infer_schema=False)
    assert rows["account"].to_list() == [None, "7", "42"]
    assert not (tmp_path / "tables" / "anomaly_incidents.csv").exists()
