"""The report's long tables as CSV files beside the PDF (`reports/<date>/tables/<table>.csv`): the
PDF keeps the top rows of each, the mail attaches the files and the HTML links them.

    write_table_csvs(frames, out_dir, key) -> {table: {"file", "rows"}}

Accounts are pseudonymized with the report's key (`context.pseudonymize`, the same pseudonyms as
the PDF); list columns are joined with '|'; timestamps are ISO 8601 UTC. A table absent from the
day's frames writes no file.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from venue_risk.atomic import write_atomic

#: The metric tables that go out as CSV, with the row order of the file.
CSV_TABLES: dict[str, list[str]] = {
    "liquidation_executions": ["ts_trigger", "liquidation_id"],
    "forced_costs": ["liquidation_id"],
    "slippage_by_path": ["symbol", "path"],
    "single_source_sensitivity": ["symbol", "source"],
    "order_flow_violations": ["ts", "trade_id", "kind"],
    "anomaly_incidents": ["start"],
    "cross_margin_stress": ["account", "scenario"],
    "time_in_band": ["symbol", "account"],
    "api_key_checklist": ["key_id"],
}

#: Columns that hold an account id (pseudonymized in the files).
ACCOUNT_COLUMNS = ("account", "taker_account", "maker_account")


def csv_frame(frame: pl.DataFrame, order: list[str], key: bytes | None) -> pl.DataFrame:
    """The frame as written: sorted by the `order` columns it has, account columns pseudonymized
    (as text), list columns joined with '|', other columns unchanged."""
    from venue_risk.report.context import pseudonymize

    by = [c for c in order if c in frame.columns]
    if by:
        frame = frame.sort(by, nulls_last=True, maintain_order=True)
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if name in ACCOUNT_COLUMNS:
            exprs.append(col.map_elements(lambda a: pseudonymize(a, key), return_dtype=pl.String,
                                          skip_nulls=True).alias(name))
        elif isinstance(dtype, pl.List):
            exprs.append(col.cast(pl.List(pl.String)).list.join("|").alias(name))
        else:
            exprs.append(col)
    return frame.select(exprs)


def write_table_csvs(frames: dict[str, pl.DataFrame], out_dir: Path, key: bytes | None) -> dict[str, dict]:
    """Write every CSV_TABLES table present in `frames` to out_dir/tables/<table>.csv (atomically;
    files of tables not written this time are removed, so the folder is this build's). Returns
    {table: {"file": "tables/<table>.csv", "rows": n}}."""
    folder = Path(out_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for table, order in CSV_TABLES.items():
        frame = frames.get(table)
        if frame is None:
            continue
        out = csv_frame(frame, order, key)
        path = folder / f"{table}.csv"
        write_atomic(path, lambda tmp, out=out: out.write_csv(tmp, datetime_format="%Y-%m-%dT%H:%M:%S%.6fZ"))
        written[table] = {"file": f"tables/{table}.csv", "rows": out.height}
    for stale in folder.glob("*.csv"):
        if stale.stem not in written:
            stale.unlink()
    return written
