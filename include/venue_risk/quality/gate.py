"""The data-quality gate of a landed day: canonical schema check (Polars), then the Great
Expectations suites (`quality.suites`), then the rows depending on quarantined rows (a
liquidation and its fills go together: `quarantine_dependents`), then the split of every
dataset into validated rows and quarantined rows.

Outputs, under the data folder:

- `quality/date=D/validation.json`: {date, status, checks, quarantined, row_counts, validated,
  quarantine} (status passed / warnings / failed; `quarantined` = [{dataset, reason,
  expectation, rows}]; `row_counts` = landed rows per dataset, the volume history of later days);
- `quality/date=D/gx_results.json`: the GX validation results per dataset (row lists cut to 20);
- `validated/<dataset>/date=D/data.parquet`: the good rows, in canonical order (sorted by the
  day column and keys: row order in the input is not a contract);
- `quarantine/<dataset>/date=D/data.parquet`: the bad rows with `reason`, `expectation` and
  `source_row`; `quarantine/date=D/quarantine.parquet`: all of them in one shape
  (date, dataset, reason, expectation, source_row, record JSON) for the warehouse table.

A critical failure raises `DataQualityError` after writing validation.json and the GX results,
and writes neither validated nor quarantine partitions.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from venue_risk.atomic import write_json_atomic, write_parquet_atomic
from venue_risk.quality.basic import DataQualityError, schema_check, timestamp_unit_check
from venue_risk.quality.limits import DEFAULT_QUARANTINE_LIMITS, limit_checks
from venue_risk.schema import DATASETS

QUARANTINE_SCHEMA = {"date": pl.Date, "dataset": pl.String, "reason": pl.String,
                     "expectation": pl.String, "source_row": pl.Int64, "record": pl.String}


def partition(root: Path, dataset: str, day: dt.date) -> Path:
    return Path(root) / dataset / f"date={day.isoformat()}" / "data.parquet"


def sort_columns(dataset: str) -> list[str]:
    spec = DATASETS[dataset]
    cols = [c for c in ([spec.day_column] if spec.day_column else []) + list(spec.keys)]
    if dataset == "api_requests":
        cols += ["key_id", "endpoint", "method", "source_ip", "status", "latency_ms"]
    out: list[str] = []
    for c in cols:
        if c and c not in out:
            out.append(c)
    return out


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (dt.date, dt.time)):  # (datetime is a date)
        return value.isoformat()
    return value


def record_json(rows: pl.DataFrame) -> list[str]:
    """Each row as a JSON object of its original values, for the warehouse `quarantine` table:
    NaN and infinities (not JSON numbers) as the strings "NaN", "Infinity", "-Infinity" instead
    of null, so the record still shows what was wrong; timestamps in ISO 8601."""
    return [json.dumps({k: _json_value(v) for k, v in row.items()}, separators=(",", ":"))
            for row in rows.iter_rows(named=True)]


#: Quarantine reasons of the rows that depend on quarantined rows.
FILLS_QUARANTINED = "fills quarantined in trades"
LIQUIDATION_QUARANTINED = "liquidation quarantined"
SYMBOL_QUARANTINED = "the symbol's instrument or risk tiers quarantined"
WALLET_QUARANTINED = "the cross account's accounts_eod row quarantined"


def _rows_where(frame: pl.DataFrame, column: str, values: pl.Series) -> list[int]:
    if not values.len():
        return []
    return frame.with_row_index("_row").filter(pl.col(column).is_in(values.implode()))["_row"].to_list()


def quarantine_symbol_dependents(frames: dict[str, pl.DataFrame],
                                 bad_rows: dict[str, dict[int, str]]) -> list[dict]:
    """Quarantine every row of a symbol whose instrument row or any of whose risk tiers is
    quarantined, in every dataset with a symbol column, in place in `bad_rows` (reason
    SYMBOL_QUARANTINED): without its instrument or its full tier table no figure of the symbol
    can be computed, and its positions, fills and prices left behind would read as the venue's
    errors. Returns one gate check per dataset that lost rows this way."""
    removed: set[str] = set()
    for dataset in ("instruments", "risk_tiers"):
        frame, rows = frames.get(dataset), bad_rows.get(dataset) or {}
        if frame is not None and rows:
            removed |= set(frame[sorted(rows)]["symbol"].drop_nulls().to_list())
    if not removed:
        return []
    checks = []
    values = pl.Series(sorted(removed), dtype=pl.String)
    for dataset, frame in frames.items():
        if "symbol" not in frame.columns:
            continue
        bad = bad_rows.setdefault(dataset, {})
        new = [r for r in _rows_where(frame, "symbol", values) if r not in bad]
        bad.update({r: SYMBOL_QUARANTINED for r in new})
        if new:
            checks.append({"dataset": dataset, "check": SYMBOL_QUARANTINED, "severity": "warning",
                           "expectation": "dependent rows (venue_risk.quality.gate)",
                           "failed_count": len(new), "quarantine": True,
                           "example": f"symbol(s) {sorted(removed)} removed by the gate"})
    return checks


def quarantine_dependents(frames: dict[str, pl.DataFrame], bad_rows: dict[str, dict[int, str]]) -> list[dict]:
    """Quarantine a liquidation together with all its fills when either side has a bad row, in
    place in `bad_rows`: a liquidation measured from part of its fills has a wrong VWAP, fill
    ratio and cost, and fills whose liquidation is missing cannot be attributed. First every
    liquidation with a quarantined fill (trades.liquidation_id) gets reason FILLS_QUARANTINED,
    then every fill of a quarantined liquidation gets reason LIQUIDATION_QUARANTINED. Likewise
    the cross positions of an account whose accounts_eod row is quarantined (WALLET_QUARANTINED:
    a cross position is margined by that wallet). Returns the gate checks of these rules
    (failed_count = rows quarantined by each)."""
    trades, liqs = frames.get("trades"), frames.get("liquidations")
    if trades is None or liqs is None:
        return []
    bad_t, bad_l = bad_rows.setdefault("trades", {}), bad_rows.setdefault("liquidations", {})
    ids = trades[sorted(bad_t)]["liquidation_id"].drop_nulls().unique() if bad_t else trades["liquidation_id"].clear()
    new_l = [r for r in _rows_where(liqs, "liquidation_id", ids) if r not in bad_l]
    bad_l.update({r: FILLS_QUARANTINED for r in new_l})
    ids = liqs[sorted(bad_l)]["liquidation_id"].drop_nulls().unique() if bad_l else liqs["liquidation_id"].clear()
    new_t = [r for r in _rows_where(trades, "liquidation_id", ids) if r not in bad_t]
    bad_t.update({r: LIQUIDATION_QUARANTINED for r in new_t})

    checks = []
    positions, accounts = frames.get("positions_eod"), frames.get("accounts_eod")
    bad_a = bad_rows.get("accounts_eod") or {}
    if positions is not None and accounts is not None and bad_a:
        # a cross position is margined by its account's wallet: without it, no band or stress
        bad_p = bad_rows.setdefault("positions_eod", {})
        gone = accounts[sorted(bad_a)]["account"].drop_nulls().unique()
        new_p = [r for r in positions.with_row_index("_row").filter(
            (pl.col("margin_mode") == "cross") & pl.col("account").is_in(gone.implode()))["_row"].to_list()
            if r not in bad_p]
        bad_p.update({r: WALLET_QUARANTINED for r in new_p})
        if new_p:
            checks.append({"dataset": "positions_eod", "check": WALLET_QUARANTINED, "severity": "warning",
                           "expectation": "dependent rows (venue_risk.quality.gate)",
                           "failed_count": len(new_p), "quarantine": True,
                           "example": f"accounts {gone.to_list()[:5]}"})

    def check(dataset: str, frame: pl.DataFrame, name: str, rows: list[int]) -> dict:
        example = str(frame.row(rows[0], named=True) | {"row": rows[0]})[:300] if rows else ""
        return {"dataset": dataset, "check": name, "severity": "warning",
                "expectation": "dependent rows (venue_risk.quality.gate)", "failed_count": len(rows),
                "example": example, "quarantine": True}

    return checks + [check("liquidations", liqs, FILLS_QUARANTINED, new_l),
                     check("trades", trades, LIQUIDATION_QUARANTINED, new_t)]


def _with_reasons(checks: list[dict], bad_rows: dict[str, dict[int, str]],
                  frames: dict[str, pl.DataFrame]) -> list[dict]:
    """Add to each failed limit check why the rows were quarantined (reason: count), and for
    rows that left with their symbol, which instrument or tier row took the symbol and why."""
    causes = []
    for dataset in ("instruments", "risk_tiers"):
        for row, reason in sorted((bad_rows.get(dataset) or {}).items()):
            if reason != SYMBOL_QUARANTINED:
                causes.append(f"{dataset} row {row} (symbol {frames[dataset]['symbol'][row]!r}): '{reason}'")
    for c in checks:
        if c["failed_count"]:
            counts: dict[str, int] = {}
            for reason in bad_rows[c["dataset"]].values():
                counts[reason] = counts.get(reason, 0) + 1
            top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
            c["example"] += "; reasons: " + ", ".join(f"'{r}' ({n})" for r, n in top)
            if SYMBOL_QUARANTINED in counts and causes:
                c["example"] += " - " + "; ".join(causes[:3])
    return checks


def run_gate(day: dt.date, landed: dict[str, str], data_root: Path,
             quarantine_limits: dict[str, float] | None = None,
             declared: dict[str, dict | None] | None = None) -> dict:
    """Validate the landed day and write the outputs above. Returns validation.json's content;
    raises DataQualityError on a critical failure, including a quarantine above a dataset's
    limit (`quarantine_limits`, share of landed rows; default quality.limits).

    `declared`: {dataset: manifest entry or None} for the datasets the source carries (None:
    all 16). A dataset not carried is landed empty, is not validated, and is `absent` in the
    result's `coverage` block ({dataset: venue_risk.coverage.measure(...)}), which the metric
    stage and the report read; a carried dataset without a landed partition is critical."""
    from venue_risk.coverage import measure
    from venue_risk.quality.suites import import_gx, run_suites, volume_bands

    started = time.perf_counter()
    import_gx()  # timed apart: a fixed cost per process, ~0 when preloaded (venue_risk.preload)
    gx_import_s = time.perf_counter() - started
    data_root = Path(data_root)
    qdir = data_root / "quality" / f"date={day.isoformat()}"
    checks: list[dict] = []
    frames: dict[str, pl.DataFrame] = {}
    absent: dict[str, pl.DataFrame] = {}
    row_counts: dict[str, int] = {}
    coverage: dict[str, dict] = {}
    carried = declared if declared is not None else {name: None for name in DATASETS}
    not_landed = [d for d in DATASETS if d in carried and d not in landed]
    if not_landed:
        checks.append({"dataset": ", ".join(not_landed), "check": "dataset present", "severity": "critical",
                       "expectation": "landed partition", "failed_count": len(not_landed),
                       "example": f"no landed partition for {len(not_landed)} carried dataset(s): "
                                  + ", ".join(not_landed)})
    for dataset in DATASETS:
        if dataset not in carried:
            coverage[dataset] = measure(dataset, None, day, carried=False)
            absent[dataset] = pl.DataFrame(schema=DATASETS[dataset].schema)
            continue
        if dataset not in landed:
            continue
        frame = pl.read_parquet(Path(landed[dataset]))
        row_counts[dataset] = frame.height
        check = schema_check(dataset, frame)
        checks.append(check | {"expectation": "canonical Polars schema"})
        if check["failed_count"]:
            continue
        units = timestamp_unit_check(dataset, frame, day)
        checks += units
        if not any(c["failed_count"] for c in units):
            frames[dataset] = frame
            coverage[dataset] = measure(dataset, frame, day, carried=True, declared=carried[dataset])
    gx_checks, bad_rows, gx_results = run_suites(
        day, frames, volume_bands(data_root / "quality", day), coverage)
    gx_checks += quarantine_symbol_dependents(frames, bad_rows)
    gx_checks += quarantine_dependents(frames, bad_rows)
    limits = quarantine_limits if quarantine_limits is not None else DEFAULT_QUARANTINE_LIMITS
    gx_checks += _with_reasons(limit_checks(row_counts, {d: len(r) for d, r in bad_rows.items()},
                                            limits), bad_rows, frames)
    checks += gx_checks
    failed_critical = any(c["failed_count"] and c["severity"] == "critical" for c in checks)
    failed_warning = any(c["failed_count"] and c["severity"] == "warning" for c in checks)
    status = "failed" if failed_critical else ("warnings" if failed_warning else "passed")
    quarantined = []
    for dataset, rows in bad_rows.items():
        counts: dict[str, int] = {}
        for reason in rows.values():
            counts[reason] = counts.get(reason, 0) + 1
        kinds = {c["check"]: c["expectation"] for c in gx_checks if c["dataset"] == dataset}
        quarantined += [{"dataset": dataset, "reason": r, "expectation": kinds.get(r, ""), "rows": n}
                        for r, n in sorted(counts.items())]
    for dataset, rows in bad_rows.items():  # rows the gate kept, as the metrics will see them
        if dataset in coverage and rows:
            coverage[dataset]["rows_validated"] = coverage[dataset]["rows"] - len(rows)
    result = {"date": day.isoformat(), "status": status, "checks": checks,
              "quarantined": quarantined, "row_counts": row_counts, "coverage": coverage,
              "engine": "great_expectations (ephemeral context, pandas datasource)",
              "gx_import_seconds": round(gx_import_s, 3)}
    write_json_atomic(gx_results, qdir / "gx_results.json")
    if failed_critical:
        result["seconds"] = round(time.perf_counter() - started, 3)
        write_json_atomic(result, qdir / "validation.json")
        raise DataQualityError(result)

    def split(dataset: str, frame: pl.DataFrame) -> tuple[str, pl.DataFrame | None]:
        """Write the dataset's validated partition (and its quarantine partition); returns the
        validated path and the quarantine rows in QUARANTINE_SCHEMA (None without any)."""
        rows = bad_rows.get(dataset) or {}
        if rows:
            flags = pl.DataFrame({"source_row": list(rows), "reason": list(rows.values())},
                                 schema={"source_row": pl.UInt32, "reason": pl.String})
            indexed = frame.with_row_index("source_row").join(flags, on="source_row", how="left",
                                                               maintain_order="left")
            good = indexed.filter(pl.col("reason").is_null()).drop("source_row", "reason")
        else:
            good = frame  # (no row to take out: no index, join or filter over a million rows)
        good = good.sort(sort_columns(dataset), maintain_order=True, nulls_last=True)
        path = str(write_parquet_atomic(good, partition(data_root / "validated", dataset, day)))
        bad_path = partition(data_root / "quarantine", dataset, day)
        if not rows:
            if bad_path.exists():
                bad_path.unlink()  # a rerun after a fix leaves no stale quarantine behind
            return path, None
        kinds = {q["reason"]: q["expectation"] for q in quarantined if q["dataset"] == dataset}
        bad = indexed.filter(pl.col("reason").is_not_null()).with_columns(
            pl.col("source_row").cast(pl.Int64),
            pl.col("reason").replace_strict(kinds, default="", return_dtype=pl.String).alias("expectation"))
        write_parquet_atomic(bad, bad_path)
        record = pl.Series("record", record_json(bad.select(frame.columns)), dtype=pl.String)
        return path, pl.DataFrame({
            "date": [day] * bad.height, "dataset": [dataset] * bad.height,
            "reason": bad["reason"], "expectation": bad["expectation"],
            "source_row": bad["source_row"], "record": record}, schema=QUARANTINE_SCHEMA)

    # two datasets at a time: sorting and writing Parquet run in Polars without the GIL
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(frames, pool.map(split, frames, frames.values())))
    for dataset, empty in absent.items():  # not carried: an empty partition, so the load is uniform
        done[dataset] = (str(write_parquet_atomic(empty, partition(data_root / "validated", dataset, day))), None)
    validated = {dataset: path for dataset, (path, _) in done.items()}
    parts = [bad for _, bad in done.values() if bad is not None]
    combined = pl.concat(parts) if parts else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    quarantine_file = write_parquet_atomic(
        combined, data_root / "quarantine" / f"date={day.isoformat()}" / "quarantine.parquet")
    result |= {"validated": validated, "quarantine": str(quarantine_file),
               "seconds": round(time.perf_counter() - started, 3)}
    write_json_atomic(result, qdir / "validation.json")
    return result
