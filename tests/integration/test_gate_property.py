"""Property: whatever a corruption does to a landed day, the gate rejects it (DataQualityError)
or quarantines it, or the metric stage completes on what was loaded. Never an input error (or any
error) after the load.

Hypothesis draws a dataset, a column, a corruption kind (null, NaN, inf, negative, zero,
out-of-day, wrong timestamp unit, duplicate key, unknown enum value, dangling reference) and how
many rows it hits, applies it to the landed Parquet of a simulated tiny day whose previous day is
in the warehouse, and runs gate -> load -> metric stage.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from venue_risk.quality import DataQualityError
from venue_risk.schema import DATASETS, DATASET_NAMES

PREV = dt.date(2026, 11, 1)
DAY = dt.date(2026, 11, 2)
pytestmark = pytest.mark.integration

ID_COLUMNS = {"liquidation_id", "taker_order_id", "maker_order_id", "order_id", "account",
              "taker_account", "maker_account", "key_id", "api_key_id"}


@pytest.fixture(scope="module")
def landed_day(tmp_path_factory) -> dict:
    """PREV run through the warehouse, DAY landed (not validated); paths to copy per example."""
    import os

    from venue_risk import pipeline
    from venue_risk.settings import Settings
    from venue_risk.simulate import simulate

    root = tmp_path_factory.mktemp("prop-exports")
    simulate("tiny", PREV, 2, root)
    home = tmp_path_factory.mktemp("prop-home")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("VENUE_RISK_DATA", "VENUE_RISK_LANDING", "VENUE_RISK_WAREHOUSE", "VENUE_RISK_REPORTS",
                    "VENUE_RISK_OUTBOX", "VENUE_RISK_SIMULATED", "VENUE_RISK_QUARANTINE_LIMITS"):
            mp.delenv(var, raising=False)
        mp.setenv("VENUE_RISK_HOME", str(home))
        mp.setenv("VENUE_RISK_SOURCE", "files")
        mp.setenv("VENUE_RISK_FILES_ROOT", str(root))
        s = Settings.from_env()
        prev_extracted = [pipeline.extract(PREV, n, s) for n in DATASET_NAMES]
        pipeline.validate(PREV, prev_extracted, s)
        pipeline.load(PREV, prev_extracted, s)
        pipeline.store_metrics(PREV, pipeline.compute_metrics(PREV, s), s)
        landed = {e["dataset"]: e["path"] for e in (pipeline.extract(DAY, n, s) for n in DATASET_NAMES)}
    assert os.path.exists(s.paths.warehouse)
    return {"landed": landed, "warehouse": s.paths.warehouse, "data": s.paths.data}


def _kinds(dataset: str, column: str) -> list[str]:
    dtype = DATASETS[dataset].schema[column]
    kinds = ["null"]
    if dtype == pl.Float64:
        kinds += ["nan", "inf", "negative", "zero"]
    if dtype == pl.Int64:
        kinds += ["negative", "zero"]
    if isinstance(dtype, pl.Datetime):
        kinds += ["out_of_day", "wrong_unit"]
    if dtype == pl.String:
        kinds += ["unknown_enum"]
    if column in DATASETS[dataset].keys:
        kinds += ["duplicate_key"]
    if column in ID_COLUMNS:
        kinds += ["dangling_reference"]
    return kinds


@st.composite
def corruptions(draw):
    dataset = draw(st.sampled_from(DATASET_NAMES))
    column = draw(st.sampled_from(DATASETS[dataset].columns))
    kind = draw(st.sampled_from(_kinds(dataset, column)))
    rows = draw(st.sampled_from([1, 3, 50, "all"]))
    seed = draw(st.integers(0, 10_000))
    return dataset, column, kind, rows, seed


def corrupt(frame: pl.DataFrame, column: str, kind: str, rows, seed: int, keys: tuple[str, ...]) -> pl.DataFrame:
    """`frame` with `kind` applied to `column` on `rows` rows chosen with `seed`."""
    if frame.height == 0:
        return frame
    n = frame.height if rows == "all" else min(int(rows), frame.height)
    picked = pl.Series(range(frame.height)).sample(n, seed=seed).sort()
    hit = pl.int_range(pl.len()).is_in(picked.implode())
    col, dtype = pl.col(column), frame.schema[column]
    if kind == "duplicate_key":
        if frame.height < 2:
            return frame
        first = frame.row(0, named=True)
        return frame.with_columns([pl.when(hit & (pl.int_range(pl.len()) > 0)).then(pl.lit(first[k], dtype=frame.schema[k]))
                                   .otherwise(pl.col(k)).alias(k) for k in keys])
    value = {
        "null": lambda: pl.lit(None, dtype=dtype),
        "nan": lambda: pl.lit(float("nan")),
        "inf": lambda: pl.lit(float("inf")),
        "negative": lambda: -col.abs() - 1,
        "zero": lambda: pl.lit(0, dtype=dtype),
        "out_of_day": lambda: col + dt.timedelta(days=1),
        "wrong_unit": lambda: col.dt.epoch("s").cast(dtype),
        "unknown_enum": lambda: pl.lit("Bogus-Value"),
        "dangling_reference": lambda: pl.lit(10**15, dtype=dtype),
    }[kind]()
    return frame.with_columns(pl.when(hit).then(value).otherwise(col).cast(dtype).alias(column))


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(corruption=corruptions())
def test_gate_rejects_quarantines_or_the_metric_stage_completes(landed_day, tmp_path_factory, corruption):
    from venue_risk.metric_jobs import compute_all
    from venue_risk.quality import run_gate
    from venue_risk.warehouse import connect, load_day

    dataset, column, kind, rows, seed = corruption
    work = tmp_path_factory.mktemp("example")
    landed = {}
    for name, path in landed_day["landed"].items():
        target = work / "landing" / name / "data.parquet"
        target.parent.mkdir(parents=True)
        shutil.copy(path, target)
        landed[name] = str(target)
    frame = pl.read_parquet(landed[dataset])
    corrupt(frame, column, kind, rows, seed, DATASETS[dataset].keys).write_parquet(landed[dataset])
    data = work / "data"
    shutil.copytree(Path(landed_day["data"]) / "quality", data / "quality")  # volume history
    warehouse = work / "warehouse.duckdb"
    shutil.copy(landed_day["warehouse"], warehouse)
    try:
        result = run_gate(DAY, landed, data)
    except DataQualityError:
        return  # rejected before the load: fine
    load_day(warehouse, DAY, result["validated"], quarantine=result["quarantine"])
    with connect(warehouse, read_only=True) as con:
        tables = compute_all(con, DAY, 30)  # must not raise, whatever was corrupted
    assert "venue_figures" in tables and tables["venue_figures"].height > 0
