"""The split metric stage (DESIGN 8): the per-symbol families run per symbol group (the DAG's
mapped tasks `compute_symbol_metrics`; in one process on a day of several groups, one after the
other), the rest once on the combined result. On demo days
(day 1 without start-of-day positions, the stale-index day, the volatility-shock day with its
liquidation cluster), every metric table and the report's summary equal the single-task path's,
whatever the grouping; groups computed in parallel processes next to a warehouse writer all
finish."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from venue_risk import pipeline
from venue_risk.metric_jobs import METRIC_TABLES, SYMBOL_TABLES
from venue_risk.schema import DATASET_NAMES
from venue_risk.settings import Settings

DAYS = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(4)]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("split")
    saved = dict(os.environ)
    os.environ.update({"VENUE_RISK_HOME": str(home), "VENUE_RISK_SIM_SCALE": "demo",
                       "VENUE_RISK_SIM_GENESIS": "2026-11-01"})
    for var in ("VENUE_RISK_DATA", "VENUE_RISK_WAREHOUSE", "VENUE_RISK_SOURCE", "VENUE_RISK_SYMBOL_GROUPS"):
        os.environ.pop(var, None)
    yield home
    os.environ.clear()
    os.environ.update(saved)


def _tables(paths: dict[str, str]) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(path) for name, path in paths.items()}


def _split(day: dt.date, settings: Settings, groups: int) -> dict[str, str]:
    s = replace(settings, symbol_groups=groups)
    parts = [pipeline.compute_symbol_metrics(day, g, s) for g in pipeline.metric_groups(day, s)]
    return pipeline.compute_metrics(day, s, parts=parts)


def _summary(day: dt.date, extracted: list[dict], settings: Settings) -> dict:
    pipeline.build_report(day, extracted, settings, run_id="split-test")
    summary = json.loads((pipeline.report_dir(settings, day) / "summary.json").read_text())
    summary["run"].pop("generated_at")  # the only field that differs between two builds
    return summary


def test_split_equals_single_task_on_demo_days(demo_home):
    settings = Settings.from_env()
    for day in DAYS:
        pipeline.prepare_source(day, settings)
        extracted = [pipeline.extract(day, name, settings) for name in DATASET_NAMES]
        pipeline.validate(day, extracted, settings)
        pipeline.load(day, extracted, settings)
        single = _tables(pipeline.compute_metrics(day, settings))
        assert set(single) == set(METRIC_TABLES)
        n_symbols = len(pipeline.metric_groups(day, replace(settings, symbol_groups=99)))
        assert n_symbols == 4  # one group per symbol
        for groups in (n_symbols, 3):
            split = _tables(_split(day, settings, groups))
            for name in METRIC_TABLES:
                assert split[name].equals(single[name]), (
                    f"{day} {name}: split into {groups} groups differs:\n"
                    f"{pl.concat([single[name], split[name]]).unique(keep='none', maintain_order=True)}")
        # the CLI's path on a day of several groups: the groups one after the other in-process
        sequential = _tables(pipeline.compute_metrics(day, replace(settings, symbol_groups=2)))
        for name in METRIC_TABLES:
            assert sequential[name].equals(single[name]), f"{day} {name}: groups in sequence differ"
        if day == DAYS[1]:  # the default grouping on a day "large" for a small cap: packed by rows
            from venue_risk import split as split_mod

            rows = json.loads((pipeline.quality_dir(settings, day) / "validation.json").read_text())["symbol_rows"]
            assert sorted(rows) == sorted(g for grp in pipeline.metric_groups(day, replace(settings, symbol_groups=99))
                                          for g in grp["symbols"])
            saved_cap = split_mod.ROWS_PER_GROUP
            split_mod.ROWS_PER_GROUP = max(rows.values())  # the busiest symbol alone, the rest packed
            try:
                groups = pipeline.metric_groups(day, settings)
                assert [g["symbols"] for g in groups] == split_mod.packed_groups(rows) and len(groups) > 1
                packed = _tables(pipeline.compute_metrics(day, settings))
            finally:
                split_mod.ROWS_PER_GROUP = saved_cap
            for name in METRIC_TABLES:
                assert packed[name].equals(single[name]), f"{day} {name}: packed groups differ"
        if day == DAYS[0]:
            continue
        # the tables the per-symbol tasks make are not all empty on these days
        assert single["liquidation_executions"].height and single["minute_features"].height
        if day == DAYS[-1]:
            pipeline.store_metrics(day, pipeline.compute_metrics(day, settings), settings)
            one = _summary(day, extracted, settings)
            pipeline.store_metrics(day, _split(day, settings, n_symbols), settings)
            assert _summary(day, extracted, settings) == one
        else:
            pipeline.store_metrics(day, pipeline.compute_metrics(day, settings), settings)


def _group_task(args):
    day, group = args
    return pipeline.compute_symbol_metrics(day, group, Settings.from_env())


def _store_task(day):
    settings = Settings.from_env()
    return pipeline.store_metrics(day, pipeline.compute_metrics(day, settings), settings)["rows"]


def test_groups_in_parallel_beside_a_writer(demo_home):
    """Two symbol groups computed by two processes while a third stores an earlier day
    (the warehouse's one writer): every process finishes (a reader that meets the writer's lock
    waits and retries, venue_risk.warehouse.connect), and the parts equal a serial run's."""
    settings = Settings.from_env()
    day = DAYS[-1]
    if not (pipeline.metrics_dir(settings, day) / "venue_figures.parquet").exists():
        pytest.skip("needs the days of test_split_equals_single_task_on_demo_days")
    groups = pipeline.metric_groups(day, replace(settings, symbol_groups=2))
    serial = [_tables(pipeline.compute_symbol_metrics(day, g, settings)) for g in groups]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        store = pool.apply_async(_store_task, (DAYS[-2],))
        parts = pool.map(_group_task, [(day, g) for g in groups])
        assert store.get(timeout=600)
    for got, want in zip(parts, serial):
        assert set(got) == set(SYMBOL_TABLES)
        for name in SYMBOL_TABLES:
            a, b = pl.read_parquet(got[name]), want[name]
            if name == "drift_values":  # observations without an order (the stored sample sorts them)
                a, b = a.sort(a.columns), b.sort(b.columns)
            assert a.equals(b), name


def test_demo_report_is_short_linked_and_carries_its_tables(demo_home):
    """The demo day's report (built by the test above): at most 15 pages, its contents linking to
    every section, fonts embedded; the long tables beside it as CSV, whole (the rows of the metric
    table), accounts pseudonymized as in the PDF; the mail attaches them."""
    import sys
    from email import message_from_bytes
    from email.policy import default

    from pypdf import PdfReader

    from venue_risk.report.context import pseudonymize
    from venue_risk.report.page_one import SECTIONS

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
    from test_docs import internal_links, unembedded_fonts

    settings = Settings.from_env()
    day = DAYS[-1]
    rdir = pipeline.report_dir(settings, day)
    pdf = rdir / f"venue-risk-{day}.pdf"
    if not pdf.exists():
        pytest.skip("needs the report of test_split_equals_single_task_on_demo_days")
    reader = PdfReader(pdf)
    assert len(reader.pages) <= 15, f"the demo report has {len(reader.pages)} pages"
    links = dict(internal_links(pdf, range(0, 2)))
    assert all(links.get(anchor) is not None for anchor, _, _ in SECTIONS)
    assert unembedded_fonts(pdf) == []
    summary = json.loads((rdir / "summary.json").read_text())
    tables = summary["tables"]
    assert {"liquidation_executions", "forced_costs", "api_key_checklist"} <= set(tables)
    stored = pl.read_parquet(pipeline.metrics_dir(settings, day) / "liquidation_executions.parquet")
    rows = pl.read_csv(rdir / tables["liquidation_executions"]["file"], infer_schema=False)
    assert rows.height == stored.height == tables["liquidation_executions"]["rows"] > 8  # more than the PDF shows
    key = os.environ.get("VENUE_RISK_PSEUDONYM_KEY")
    assert sorted(rows["account"].to_list()) == sorted(
        pseudonymize(a, key.encode() if key else None) for a in stored["account"].to_list())
    sent = []
    pipeline.deliver(day, settings, sent.append, force=True)
    msg = message_from_bytes(sent[0].as_bytes(), policy=default)
    names = [a.get_filename() for a in msg.iter_attachments()]
    assert names[0] == pdf.name and sorted(names[1:]) == sorted(Path(t["file"]).name for t in tables.values())


def test_day_read_from_its_validated_partitions_equals_the_warehouse(demo_home):
    """The metric stage reads the day's rows from the validated partitions the warehouse loaded
    them from (pipeline.validated_partitions): every input frame, whole or one symbol group's,
    equals the warehouse's (values, types and row order), and so does every metric table; with a
    listed file gone the stage reads the warehouse instead."""
    from venue_risk.metric_jobs import INPUTS, compute_all, read_inputs
    from venue_risk.warehouse import connect

    settings = Settings.from_env()
    if not (pipeline.metrics_dir(settings, DAYS[-1]) / "venue_figures.parquet").exists():
        pytest.skip("needs the days of test_split_equals_single_task_on_demo_days")
    for day in DAYS:
        files = pipeline.validated_partitions(settings, day)
        assert files is not None and set(INPUTS) <= set(files)
        with connect(settings.paths.warehouse, read_only=True) as con:
            for symbols in (None, ["ETHUSDT", "SOLUSDT"]):
                stored, read = read_inputs(con, day, symbols), read_inputs(con, day, symbols, partitions=files)
                for name in INPUTS:
                    assert read[name].schema == stored[name].schema, (day, name)
                    assert read[name].equals(stored[name]), f"{day} {name} {symbols}: rows differ"
                    if symbols is not None and "symbol" in read[name].columns and read[name].height:
                        assert set(read[name]["symbol"].unique()) <= set(symbols)
                assert read["order_events"].height and read["trades"].height
    day = DAYS[-1]
    with connect(settings.paths.warehouse, read_only=True) as con:
        from_warehouse = {name: pipeline._with_date(frame, day) for name, frame in compute_all(
            con, day, settings.baseline_days, settings.engine_latency_s, pipeline._coverage(settings, day)).items()}
    from_files = _tables(pipeline.compute_metrics(day, settings))
    for name in METRIC_TABLES:
        assert from_files[name].equals(from_warehouse[name]), f"{day} {name} differs"
    files = pipeline.validated_partitions(settings, day)
    gone = Path(files["trades"][0])
    kept = gone.with_suffix(".kept")
    gone.rename(kept)
    try:
        assert pipeline.validated_partitions(settings, day) is None
        for name, frame in _tables(pipeline.compute_metrics(day, settings)).items():
            assert frame.equals(from_warehouse[name]), f"{day} {name} differs read from the warehouse"
    finally:
        kept.rename(gone)


def test_families_in_threads_equal_one_after_the_other(demo_home):
    """symbol_tables computes independent families in threads: on every demo day its tables
    equal those of the same families called one after the other in one thread."""
    from venue_risk import metric_jobs as mj
    from venue_risk.warehouse import connect

    settings = Settings.from_env()
    if not (pipeline.metrics_dir(settings, DAYS[-1]) / "venue_figures.parquet").exists():
        pytest.skip("needs the days of test_split_equals_single_task_on_demo_days")
    for day in DAYS:
        coverage = pipeline._coverage(settings, day)
        with connect(settings.paths.warehouse, read_only=True) as con:
            data = mj.read_inputs(con, day, partitions=pipeline.validated_partitions(settings, day))
            baselines = mj.read_baselines(con, day, settings.baseline_days)
        threaded = mj.symbol_tables(data, day, coverage)
        one_by_one = (mj._other_symbol_tables(data, day, coverage) | mj.index_tables(data, coverage)
                      | mj.sensitivity_table(data, coverage))
        assert list(threaded) == list(SYMBOL_TABLES)
        for name in SYMBOL_TABLES:
            got, want = threaded[name], one_by_one[name]
            if name == "drift_values":  # (its row order is not defined, even computed twice in one thread)
                got, want = got.sort(got.columns), want.sort(want.columns)
            assert got.equals(want), f"{day} {name} differs"
        assert threaded["single_source_sensitivity"].height and threaded["minute_features"].height
