"""Bad inputs through the `files` source (issue 5): each case corrupts one file of a simulated
tiny day and asserts the outcome: a clear error naming the problem (InputError at extract, or
DataQualityError from a critical expectation: nothing loaded, no report), or the bad rows
quarantined with the right reason while the good rows are loaded and reported. In no case is a
report computed from bad rows: the warehouse the report reads holds none of them.

Most cases run the stages in process (`pipeline.run_day`); one case runs the real DAG
(`dag.test`) for a critical failure, then fixes the input and reruns."""

from __future__ import annotations

import datetime as dt
import email
import json
import shutil
from email import policy
from pathlib import Path

import polars as pl
import pytest

from venue_risk import pipeline
from venue_risk.errors import InputError
from venue_risk.quality import DataQualityError
from venue_risk.settings import Settings

PROJECT = Path(__file__).resolve().parents[2]
PREV = dt.date(2026, 11, 1)
DAY = dt.date(2026, 11, 2)
pytestmark = pytest.mark.integration


def _part(root: Path, dataset: str, day: dt.date = DAY) -> Path:
    return root / dataset / f"date={day.isoformat()}" / "data.parquet"


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> Path:
    from venue_risk.simulate import simulate

    root = tmp_path_factory.mktemp("exports-clean")
    simulate("tiny", PREV, 2, root)
    return root


def _use(monkeypatch, home: Path, root: Path) -> Settings:
    for var in ("VENUE_RISK_DATA", "VENUE_RISK_LANDING", "VENUE_RISK_WAREHOUSE", "VENUE_RISK_REPORTS",
                "VENUE_RISK_OUTBOX", "VENUE_RISK_SIMULATED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VENUE_RISK_HOME", str(home))
    monkeypatch.setenv("VENUE_RISK_SOURCE", "files")
    monkeypatch.setenv("VENUE_RISK_FILES_ROOT", str(root))
    return Settings.from_env()


@pytest.fixture(scope="module")
def clean_summary(clean_root, tmp_path_factory) -> dict:
    """summary.json of a clean first run of DAY."""
    home = tmp_path_factory.mktemp("home-clean")
    with pytest.MonkeyPatch.context() as mp:
        pipeline.run_day(DAY, _use(mp, home, clean_root))
    return json.loads((home / "reports" / DAY.isoformat() / "summary.json").read_text())


@pytest.fixture
def case(clean_root, tmp_path, monkeypatch):
    """A copy of the clean exports to corrupt, and settings pointing a fresh home at it."""
    root = tmp_path / "exports"
    shutil.copytree(clean_root, root)
    return root, _use(monkeypatch, tmp_path / "home", root)


def _edit(root: Path, dataset: str, fn) -> None:
    path = _part(root, dataset)
    fn(pl.read_parquet(path)).write_parquet(path)


def _set(frame: pl.DataFrame, row: int, **values) -> pl.DataFrame:
    idx = pl.int_range(pl.len()) == row
    return frame.with_columns([pl.when(idx).then(pl.lit(v, dtype=frame.schema[c])).otherwise(pl.col(c)).alias(c)
                               for c, v in values.items()])


def _nothing_built(settings: Settings) -> None:
    assert not (settings.paths.reports / DAY.isoformat()).exists()
    assert not settings.paths.warehouse.exists()


def _validation(settings: Settings) -> dict:
    return json.loads((pipeline.quality_dir(settings, DAY) / "validation.json").read_text())


def _warehouse(settings: Settings, sql: str):
    from venue_risk.warehouse import connect

    with connect(settings.paths.warehouse, read_only=True) as con:
        return con.sql(sql).fetchall()


# -- clear errors at extract ---------------------------------------------------------------------

@pytest.mark.parametrize("corrupt, expected", [
    (lambda r: _edit(r, "trades", lambda f: f.drop("price")), ["'trades'", "missing column", "'price'"]),
    (lambda r: _edit(r, "trades", lambda f: _set(f.with_columns(pl.col("price").cast(pl.String)), 5, price="abc")),
     ["'trades'", "column 'price'", "row 5", "'abc'", "Float64"]),
    (lambda r: _edit(r, "trades", lambda f: f.with_columns(pl.lit(1).alias("venue_note"))),
     ["'trades'", "unknown column", "venue_note"]),
    (lambda r: shutil.rmtree(r / "funding" / f"date={DAY.isoformat()}"), ["'funding'", "no partition"]),
    (lambda r: _part(r, "trades").write_bytes(_part(r, "trades").read_bytes()[:2000]),
     ["'trades'", "not a readable Parquet file", "data.parquet"]),
], ids=["missing-column", "wrong-type", "unknown-column", "missing-dataset", "truncated-parquet"])
def test_input_errors_name_the_problem(case, corrupt, expected):
    root, settings = case
    corrupt(root)
    with pytest.raises(InputError) as err:
        pipeline.run_day(DAY, settings)
    for text in expected:
        assert text in str(err.value)
    _nothing_built(settings)


# -- critical expectations -----------------------------------------------------------------------

@pytest.mark.parametrize("corrupt, expectation", [
    (lambda r: _edit(r, "trades", lambda f: _set(f, 1, trade_id=f["trade_id"][0])), "trade_id unique"),
    (lambda r: _edit(r, "trades", lambda f: f.head(0)), "at least one row"),
    (lambda r: _edit(r, "mark_index", lambda f: f.filter(pl.col("ts").dt.hour() < 12)),
     "every symbol's series reaches the last minute of the day"),
], ids=["duplicate-trade-ids", "empty-file", "stale-mark-index"])
def test_critical_expectations_stop_the_day(case, corrupt, expectation):
    root, settings = case
    corrupt(root)
    with pytest.raises(DataQualityError) as err:
        pipeline.run_day(DAY, settings)
    assert expectation in str(err.value)
    validation = _validation(settings)
    assert validation["status"] == "failed"
    assert any(c["check"].startswith(expectation) and c["failed_count"] for c in validation["checks"])
    assert (pipeline.quality_dir(settings, DAY) / "gx_results.json").exists()
    _nothing_built(settings)


# -- warnings: quarantined rows, good rows loaded -------------------------------------------------

# One run carries four bad-row cases on distinct rows (each case keeps its own expected reason):
# a negative price, NaN and infinite values, a timestamp outside the day, an unknown symbol.
BAD_TRADE_CASES = {
    "negative-price": (lambda f: _set(f, 10, price=-float(f["price"][10])), {"price > 0 and finite": 1}),
    "nan-and-inf": (lambda f: _set(_set(f, 11, price=float("nan")), 12, qty=float("inf")),
                    {"price not null or NaN": 1, "qty > 0 and finite": 1}),
    "ts-outside-day": (lambda f: _set(f, 13, ts=f["ts"][13] + dt.timedelta(days=1)), {f"ts inside {DAY}": 1}),
    "unknown-symbol": (lambda f: _set(f, 14, symbol="DOGEUSDT"), {"symbol is a listed instrument": 1}),
}


def _all_bad_trades(frame: pl.DataFrame) -> pl.DataFrame:
    for corrupt, _ in BAD_TRADE_CASES.values():
        frame = corrupt(frame)
    return frame


def test_bad_trade_rows_are_quarantined(case):
    root, settings = case
    dataset, corrupt = "trades", _all_bad_trades
    reasons = {r: n for _, expected in BAD_TRADE_CASES.values() for r, n in expected.items()}
    clean = pl.read_parquet(_part(root, dataset))
    _edit(root, dataset, corrupt)
    bad_ids = {int(i) for i in pl.read_parquet(_part(root, dataset)).join(
        clean, on=list(clean.columns), how="anti", nulls_equal=True)["trade_id"]}
    assert bad_ids
    pipeline.run_day(PREV, settings)  # the day before, clean: DAY's positions are rebuilt from it
    pipeline.run_day(DAY, settings)
    validation = _validation(settings)
    assert validation["status"] == "warnings"
    assert {q["reason"]: q["rows"] for q in validation["quarantined"] if q["dataset"] == dataset} == reasons
    # the report says so, and was computed from a warehouse holding none of the bad rows
    summary = json.loads((settings.paths.reports / DAY.isoformat() / "summary.json").read_text())
    assert summary["figures"]["data_quality_status"]["value"] == 1.0
    ids = ", ".join(str(i) for i in bad_ids)
    assert _warehouse(settings, f"SELECT count(*) FROM trades WHERE trade_id IN ({ids})")[0][0] == 0
    assert (_warehouse(settings, f"SELECT count(*) FROM trades WHERE date = DATE '{DAY}'")[0][0]
            == clean.height - len(bad_ids))
    assert dict(_warehouse(settings, "SELECT reason, count(*) FROM quarantine WHERE dataset = 'trades' "
                                     "GROUP BY reason")) == reasons
    # the warehouse record keeps what was wrong: NaN and infinity as such, not as null
    records = dict(_warehouse(settings, "SELECT reason, record FROM quarantine WHERE dataset = 'trades'"))
    assert json.loads(records["price not null or NaN"])["price"] == "NaN"
    assert json.loads(records["qty > 0 and finite"])["qty"] == "Infinity"
    assert json.loads(records["price > 0 and finite"])["price"] < 0
    quarantine = pl.read_parquet(settings.paths.data / "quarantine" / "trades" / f"date={DAY.isoformat()}" / "data.parquet")
    assert set(quarantine["trade_id"].to_list()) == bad_ids and "reason" in quarantine.columns
    # GX's results beside the report: each expectation that found rows lists all of them (the
    # second, COMPLETE pass), each one that found none still says how many rows it saw
    gx = json.loads((settings.paths.reports / DAY.isoformat() / "gx_results.json").read_text())["trades"]
    found = {e["expectation_config"]["meta"]["name"]: e["result"] for e in gx["results"]
             if e["result"].get("unexpected_count")}
    assert set(reasons) <= set(found)
    assert all(len(r["unexpected_index_list"]) == r["unexpected_count"] for r in found.values())
    assert all(e["result"]["element_count"] == clean.height for e in gx["results"]
               if "unexpected_count" in e["result"] and not e["result"]["unexpected_count"])
    # the accounts of the quarantined fills are not rebuilt from the remaining fills (which would
    # show false mismatches and reduce-only violations): they are listed as not compared
    figures = summary["figures"]
    assert figures["position_rebuild_mismatches"]["value"] == 0.0
    assert figures["order_flow_violations"]["value"] == 0.0
    bad = quarantine.select(pl.col("taker_account").alias("a"), "symbol").vstack(
        quarantine.select(pl.col("maker_account").alias("a"), "symbol"))
    excluded = set(_warehouse(settings, "SELECT account, symbol FROM position_rebuild_excluded"))
    assert excluded == {(int(a), s) for a, s in bad.iter_rows()}
    html = (settings.paths.reports / DAY.isoformat() / f"venue-risk-{DAY.isoformat()}.html").read_text()
    assert f"{len(excluded)} account-symbols with {bad.height} quarantined fills" in html
    assert "s importing Great Expectations in this process)" in html  # the gate's time, split


def test_liquidation_without_fills_is_quarantined(case):
    root, settings = case
    liq_id = int(pl.read_parquet(_part(root, "liquidations"))["liquidation_id"][0])
    _edit(root, "trades", lambda f: f.filter(pl.col("liquidation_id").is_null() | (pl.col("liquidation_id") != liq_id)))
    pipeline.run_day(DAY, settings)
    assert _validation(settings)["quarantined"] == [
        {"dataset": "liquidations", "reason": "filled liquidation has its fills in trades",
         "expectation": "expect_column_values_to_be_in_set", "rows": 1}]
    assert _warehouse(settings, f"SELECT count(*) FROM liquidations WHERE liquidation_id = {liq_id}")[0][0] == 0
    assert _warehouse(settings, f"SELECT count(*) FROM liquidation_executions WHERE liquidation_id = {liq_id}")[0][0] == 0


def test_liquidation_with_a_quarantined_fill_is_quarantined_too(case):
    """A bad fill of a liquidation takes its liquidation and its other fills to the quarantine
    with it: measured from the remaining fills, its slippage and cost would be wrong."""
    root, settings = case
    trades = pl.read_parquet(_part(root, "trades"))
    liq_id = int(trades.filter(pl.col("liquidation_id").is_not_null())["liquidation_id"][0])
    row = int(trades.with_row_index("i").filter(pl.col("liquidation_id") == liq_id)["i"][0])
    _edit(root, "trades", lambda f: _set(f, row, price=-float(f["price"][row])))
    pipeline.run_day(DAY, settings)
    fills = trades.filter(pl.col("liquidation_id") == liq_id).height
    q = {(x["dataset"], x["reason"]): x["rows"] for x in _validation(settings)["quarantined"]}
    assert q == ({("trades", "price > 0 and finite"): 1, ("liquidations", "fills quarantined in trades"): 1}
                 | ({("trades", "liquidation quarantined"): fills - 1} if fills > 1 else {}))
    assert _warehouse(settings, f"SELECT count(*) FROM liquidations WHERE liquidation_id = {liq_id}")[0][0] == 0
    assert _warehouse(settings, f"SELECT count(*) FROM trades WHERE liquidation_id = {liq_id}")[0][0] == 0
    assert _warehouse(settings, f"SELECT count(*) FROM liquidation_executions WHERE liquidation_id = {liq_id}")[0][0] == 0
    assert _warehouse(settings, "SELECT reason FROM quarantine WHERE dataset = 'liquidations'") == [
        ("fills quarantined in trades",)]


def test_a_quarantined_liquidation_takes_its_fills_with_it(case):
    root, settings = case
    liqs = pl.read_parquet(_part(root, "liquidations"))
    trades = pl.read_parquet(_part(root, "trades"))
    liq_id = int(trades.filter(pl.col("liquidation_id").is_not_null())["liquidation_id"][0])
    row = int(liqs.with_row_index("i").filter(pl.col("liquidation_id") == liq_id)["i"][0])
    _edit(root, "liquidations", lambda f: _set(f, row, qty=-1.0))
    pipeline.run_day(DAY, settings)
    fills = trades.filter(pl.col("liquidation_id") == liq_id).height
    q = {(x["dataset"], x["reason"]): x["rows"] for x in _validation(settings)["quarantined"]}
    assert q == {("liquidations", "qty > 0 and finite"): 1, ("trades", "liquidation quarantined"): fills}
    assert _warehouse(settings, f"SELECT count(*) FROM trades WHERE liquidation_id = {liq_id}")[0][0] == 0
    assert (_warehouse(settings, f"SELECT count(*) FROM trades WHERE date = DATE '{DAY}'")[0][0]
            == trades.height - fills)


def test_funding_rate_beyond_cap_is_quarantined(case):
    root, settings = case
    cap = float(pl.read_parquet(_part(root, "instruments"))
                .filter(pl.col("symbol") == pl.read_parquet(_part(root, "funding"))["symbol"][0])["funding_cap"][0])
    _edit(root, "funding", lambda f: _set(f, 0, funding_rate=cap * 2))
    pipeline.run_day(DAY, settings)
    q = _validation(settings)["quarantined"]
    assert [(x["dataset"], x["reason"], x["rows"]) for x in q] == [
        ("funding", "|funding_rate| within the instrument's funding_cap", 1)]
    assert _warehouse(settings, f"SELECT count(*) FROM funding WHERE abs(funding_rate) > {cap}")[0][0] == 0


def test_unsorted_rows_are_accepted_and_report_the_same(case, clean_summary):
    root, settings = case
    for dataset in ("trades", "order_events", "mark_index", "liquidations", "book_depth"):
        _edit(root, dataset, lambda f: f.sample(fraction=1.0, shuffle=True, seed=3))
    pipeline.run_day(DAY, settings)
    assert _validation(settings)["status"] == "passed"
    summary = json.loads((settings.paths.reports / DAY.isoformat() / "summary.json").read_text())
    assert summary["figures"] == clean_summary["figures"]


def test_half_the_usual_volume_flags_the_day(case):
    root, settings = case
    pipeline.run_day(PREV, settings)  # history: the day before, clean
    _edit(root, "trades", lambda f: f.filter(pl.col("liquidation_id").is_not_null()
                                             | (pl.int_range(pl.len()) % 2 == 0)))
    pipeline.run_day(DAY, settings)
    validation = _validation(settings)
    assert validation["status"] == "warnings" and validation["quarantined"] == []
    failed = [c for c in validation["checks"] if c["failed_count"]]
    assert [(c["dataset"], c["severity"]) for c in failed] == [("trades", "warning")]
    assert failed[0]["check"].startswith("row count within 0.6x-1.6x of the trailing average")
    summary = json.loads((settings.paths.reports / DAY.isoformat() / "summary.json").read_text())
    assert summary["figures"]["data_quality_status"]["value"] == 1.0  # warnings: the report says so
    html = (settings.paths.reports / DAY.isoformat() / f"venue-risk-{DAY.isoformat()}.html").read_text()
    assert "row count within 0.6x-1.6x of the trailing average" in html


# -- a real Airflow run: critical failure, alert, warehouse untouched; then fix and rerun ---------

def test_dag_critical_failure_alerts_keeps_warehouse_and_fix_reruns_clean(
        airflow_db, clean_root, clean_summary, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from venue_risk.warehouse import day_digest

    root = tmp_path / "exports"
    shutil.copytree(clean_root, root)
    settings = _use(monkeypatch, tmp_path / "home", root)
    pipeline.run_day(DAY, settings)
    before = day_digest(settings.paths.warehouse, DAY)
    first = json.loads((settings.paths.reports / DAY.isoformat() / "summary.json").read_text())

    clean_trades = _part(root, "trades").read_bytes()
    _edit(root, "trades", lambda f: _set(f, 1, trade_id=f["trade_id"][0]))
    bag = DagBag(dag_folder=str(PROJECT / "dags"))
    assert bag.import_errors == {}
    run = bag.dags["venue_risk_daily"].test(
        logical_date=dt.datetime.combine(DAY, dt.time(), tzinfo=dt.timezone.utc))
    assert run.state == "failed"
    alerts = sorted((tmp_path / "home" / "outbox").glob(f"{DAY.isoformat()}-alert-*.eml"))
    assert alerts, "the failure callback wrote no alert"
    body = email.message_from_bytes(alerts[0].read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
    assert "validate" in body and "trade_id unique" in body and "expect_column_values_to_be_unique" in body
    assert day_digest(settings.paths.warehouse, DAY) == before

    _part(root, "trades").write_bytes(clean_trades)  # the venue fixes the export
    pipeline.run_day(DAY, settings)
    again = json.loads((settings.paths.reports / DAY.isoformat() / "summary.json").read_text())
    assert again["figures"] == first["figures"] == clean_summary["figures"]
    same = lambda s: {k: v for k, v in s.items() if k not in ("run", "generated_at")}  # noqa: E731
    assert same(again) == same(first)
    assert day_digest(settings.paths.warehouse, DAY) == before
