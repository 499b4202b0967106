"""The gate as the single line of defence (issue 9): a second bad-input matrix through the `files`
source on a simulated tiny day whose previous day is already in the warehouse.

- critical cases: the day fails with a message naming the dataset, the rule and what was wrong;
  the warehouse's day digests (of the day and of the day before) are unchanged, no report is
  built, and the alert goes to the operations list (VENUE_RISK_ALERT_RECIPIENTS), never to the
  committee;
- warning cases: the bad rows (and the rows depending on them) are quarantined with their
  reasons, and the metric figures equal those of a clean run whose input simply lacks those
  rows (the rebuild-related figures aside: the gate leaves those account-symbols out instead of
  reporting them as the venue's mismatches, which is checked too).
"""

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
from venue_risk.schema import DATASET_NAMES
from venue_risk.settings import Settings

from test_bad_inputs import _edit, _part, _set  # the same corruption helpers, same day

PREV = dt.date(2026, 11, 1)
DAY = dt.date(2026, 11, 2)
OPS, COMMITTEE = "ops@venue.test", "committee@venue.test"
pytestmark = pytest.mark.integration


def _use(mp, home: Path, root: Path, limits: str = "") -> Settings:
    for var in ("VENUE_RISK_DATA", "VENUE_RISK_LANDING", "VENUE_RISK_WAREHOUSE", "VENUE_RISK_REPORTS",
                "VENUE_RISK_OUTBOX", "VENUE_RISK_SIMULATED", "VENUE_RISK_PSEUDONYM_KEY"):
        mp.delenv(var, raising=False)
    mp.setenv("VENUE_RISK_HOME", str(home))
    mp.setenv("VENUE_RISK_SOURCE", "files")
    mp.setenv("VENUE_RISK_FILES_ROOT", str(root))
    mp.setenv("VENUE_RISK_RECIPIENTS", COMMITTEE)
    mp.setenv("VENUE_RISK_ALERT_RECIPIENTS", OPS)
    mp.setenv("VENUE_RISK_QUARANTINE_LIMITS", limits)
    return Settings.from_env()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """Clean exports of PREV and DAY, and a home whose warehouse holds PREV (run once)."""
    from venue_risk.simulate import simulate

    root = tmp_path_factory.mktemp("exports")
    simulate("tiny", PREV, 2, root)
    home = tmp_path_factory.mktemp("home-prev")
    with pytest.MonkeyPatch.context() as mp:
        pipeline.run_day(PREV, _use(mp, home, root))
    return {"root": root, "home": home}


@pytest.fixture
def case(base, tmp_path, monkeypatch):
    root, home = tmp_path / "exports", tmp_path / "home"
    shutil.copytree(base["root"], root)
    shutil.copytree(base["home"], home)
    return root, home, monkeypatch


def _to_csv(root: Path, dataset: str, fix=None) -> Path:
    """Replace the dataset's Parquet partition by a CSV (lists as JSON arrays)."""
    path = _part(root, dataset)
    frame = pl.read_parquet(path)
    frame = frame.with_columns([pl.col(c).map_elements(lambda v: json.dumps(v.to_list()), return_dtype=pl.String)
                                for c, t in frame.schema.items() if isinstance(t, pl.List)])
    csv = path.with_suffix(".csv")
    frame.write_csv(csv)
    path.unlink()
    if fix:
        fix(csv)
    return csv


def _replace_line(csv: Path, line_no: int, old: str, new: str) -> None:
    lines = csv.read_text().split("\n")
    assert old in lines[line_no - 1]
    lines[line_no - 1] = lines[line_no - 1].replace(old, new, 1)
    csv.write_text("\n".join(lines))


def _digests(settings: Settings) -> tuple:
    from venue_risk.warehouse import day_digest

    return day_digest(settings.paths.warehouse, PREV), day_digest(settings.paths.warehouse, DAY)


# -- critical: the day fails, nothing changes, operations are alerted ------------------------------

def _liq_rows(root: Path) -> pl.DataFrame:
    return pl.read_parquet(_part(root, "liquidations")).with_row_index("i")


def _cut_csv(csv: Path) -> None:
    data = csv.read_bytes()
    csv.write_bytes(data[: int(len(data) * 0.9)].rstrip(b"\n")[:-3])


def _two_files_one_duplicate(root: Path) -> None:
    path = _part(root, "trades")
    frame = pl.read_parquet(path)
    half = frame.height // 2
    frame.head(half + 1).write_parquet(path.with_name("a.parquet"))
    frame.slice(half).write_parquet(path.with_name("b.parquet"))
    path.unlink()


def _case_symbol(frame: pl.DataFrame) -> pl.DataFrame:
    sym = frame["symbol"][0]
    return frame.with_columns(pl.when(pl.col("symbol") == sym).then(pl.col("symbol").str.to_lowercase())
                              .otherwise(pl.col("symbol")).alias("symbol"))


CRITICAL = {
    "csv-cut-mid-line": (lambda r: _to_csv(r, "trades", _cut_csv), InputError,
                         ["'trades'", "trades/date=2026-11-02/data.csv", "cut off mid-line", "line "]),
    "csv-boolean-type-error": (lambda r: _to_csv(r, "order_events", lambda c: _replace_line(c, 9, ",false,", ",yes,")),
                               InputError, ["'order_events'", "row 7", "'yes'", "a boolean"]),
    "csv-list-type-error": (lambda r: _to_csv(r, "api_keys", lambda c: _replace_line(c, 4, '"[""', '"[[""')),
                            InputError, ["'api_keys'", "row 2", "column 'scopes'", "a list"]),
    "epoch-seconds-in-a-microsecond-column": (
        lambda r: _edit(r, "trades", lambda f: f.with_columns(
            (pl.col("ts").dt.epoch("s")).cast(pl.Datetime("us", "UTC")).alias("ts"))),
        DataQualityError, ["trades", "ts in microseconds (unit sanity)", "look like seconds"]),
    "epoch-milliseconds-in-a-microsecond-column": (
        lambda r: _edit(r, "liquidations", lambda f: f.with_columns(
            (pl.col("ts_trigger").dt.epoch("ms")).cast(pl.Datetime("us", "UTC")).alias("ts_trigger"))),
        DataQualityError, ["liquidations", "ts_trigger in microseconds", "look like milliseconds"]),
    "every-trade-outside-the-day": (
        lambda r: _edit(r, "trades", lambda f: f.with_columns(pl.col("ts") + dt.timedelta(days=1))),
        DataQualityError, ["trades", "quarantine limit", "every row of the dataset", "ts inside 2026-11-02"]),
    "null-taker-side-on-5-percent": (
        lambda r: _edit(r, "trades", lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) % 20 == 0).then(None).otherwise(pl.col("taker_side")).alias("taker_side"))),
        DataQualityError, ["trades", "quarantine limit", "above the limit of 1.00%", "'taker_side not null'"]),
    "unknown-order-event-on-3-percent": (
        lambda r: _edit(r, "order_events", lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) % 33 == 0).then(pl.lit("replace")).otherwise(pl.col("event")).alias("event"))),
        DataQualityError, ["order_events", "quarantine limit", "event in ["]),
    "duplicate-key-across-two-files": (_two_files_one_duplicate, DataQualityError, ["trades", "trade_id unique"]),
    "symbol-differing-only-in-case": (
        lambda r: _edit(r, "trades", _case_symbol), DataQualityError,
        ["trades", "quarantine limit", "'symbol is a listed instrument'"]),
    "instrument-row-null-funding-cap": (
        lambda r: _edit(r, "instruments", lambda f: _set(f, 0, funding_cap=None)), DataQualityError,
        ["instruments", "funding_cap not null", "the symbol's instrument or risk tiers quarantined"]),
    "risk-tiers-with-a-gap": (
        lambda r: _edit(r, "risk_tiers", lambda f: _set(f, 2, notional_floor=float(f["notional_floor"][2]) + 1.0)),
        DataQualityError, ["risk_tiers", "tiers of the symbol are contiguous",
                           "the symbol's instrument or risk tiers quarantined"]),
    "funding-in-percent-everywhere": (
        lambda r: _edit(r, "funding", lambda f: f.with_columns(pl.col("funding_rate") * 100)), DataQualityError,
        ["funding", "quarantine limit", "every row of the dataset"]),
    "negative-taker-fees": (
        lambda r: _edit(r, "trades", lambda f: f.with_columns(-pl.col("taker_fee").abs())), DataQualityError,
        ["trades", "quarantine limit", "fees have the sign of the instrument's fee rates"]),
    "cross-accounts-without-wallets": (
        lambda r: _edit(r, "accounts_eod", lambda f: f.head(1)), DataQualityError,
        ["positions_eod", "quarantine limit", "a cross position's account has a wallet balance"]),
    "http-status-out-of-range": (
        lambda r: _edit(r, "api_requests", lambda f: f.with_columns(pl.lit(9999).alias("status"))),
        DataQualityError, ["api_requests", "every row of the dataset", "status within [100, 599]"]),
    "infinite-mark-prices": (
        lambda r: _edit(r, "mark_index", lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) % 10 == 0).then(float("inf")).otherwise(pl.col("mark_price")).alias("mark_price"))),
        DataQualityError, ["mark_index", "quarantine limit", "mark_price > 0 and finite"]),
    "mark-index-missing-for-a-symbol": (
        lambda r: _edit(r, "mark_index", lambda f: f.filter(pl.col("symbol") != f["symbol"][0])), DataQualityError,
        ["quarantine limit", "'the symbol's instrument or risk tiers quarantined'",
         "'the symbol has a mark_index series'"]),
    "book-depth-one-side-missing": (
        lambda r: _edit(r, "book_depth", lambda f: f.filter((pl.col("symbol") != f["symbol"][0]) | (pl.col("percentage") < 0))),
        DataQualityError, ["quarantine limit", "'the symbol's book_depth has positive notional on both sides"]),
    "instrument-without-risk-tiers": (
        lambda r: _edit(r, "risk_tiers", lambda f: f.filter(pl.col("symbol") != f["symbol"][0])), DataQualityError,
        ["quarantine limit", "'the symbol has risk tiers'"]),
    "instrument-with-too-few-index-sources": (
        lambda r: _edit(r, "instruments", lambda f: _set(f, 0, index_sources=["binance"])), DataQualityError,
        ["quarantine limit", "'index_sources lists at least index_min_sources distinct sources'"]),
    "zero-funding-interval": (
        lambda r: _edit(r, "instruments", lambda f: _set(f, 1, funding_interval_hours=0)), DataQualityError,
        ["quarantine limit", "'funding_interval_hours in 1..24'"]),
    "insurance-pools-that-match-no-symbol": (
        lambda r: _edit(r, "insurance_fund", lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("POOL-A")).otherwise(pl.lit("POOL-B")).alias("pool"))),
        DataQualityError, ["liquidations", "quarantine limit", "'the symbol's insurance-fund pool is known"]),
    "null-index-source": (
        lambda r: _edit(r, "index_components", lambda f: _set(f, 4, source=None)), DataQualityError,
        ["index_components", "source not null"]),
    "duplicate-api-key-id": (
        lambda r: _edit(r, "api_keys", lambda f: _set(f, 1, key_id=f["key_id"][0])), DataQualityError,
        ["api_keys", "key_id unique"]),
    "duplicate-mark-index-row": (
        lambda r: _edit(r, "mark_index", lambda f: pl.concat([f, f.slice(100, 1)])), DataQualityError,
        ["mark_index", "['ts', 'symbol'] unique together"]),
    "duplicate-position-row": (
        lambda r: _edit(r, "positions_eod", lambda f: pl.concat([f, f.slice(3, 1)])), DataQualityError,
        ["positions_eod", "['account', 'symbol'] unique together"]),
    "duplicate-liquidation-id": (
        lambda r: _edit(r, "liquidations", lambda f: _set(f, 1, liquidation_id=f["liquidation_id"][0])),
        DataQualityError, ["liquidations", "liquidation_id unique"]),
    "nanosecond-api-key-timestamps": (
        lambda r: _edit(r, "api_keys", lambda f: f.with_columns(
            pl.col("created_at").dt.epoch("ns").cast(pl.Datetime("us", "UTC")).alias("created_at"))),
        DataQualityError, ["api_keys", "created_at in microseconds", "look like nanoseconds"]),
}


@pytest.mark.parametrize("name", list(CRITICAL))
def test_critical_input_stops_the_day(case, name):
    root, home, mp = case
    corrupt, error, texts = CRITICAL[name]
    corrupt(root)
    settings = _use(mp, home, root)
    before = _digests(settings)
    with pytest.raises(error) as err:
        pipeline.run_day(DAY, settings)
    message = str(err.value)
    for text in texts:
        assert text in message, f"{text!r} not in {message}"
    assert _digests(settings) == before
    assert not (settings.paths.reports / DAY.isoformat()).exists()
    alerts = sorted(settings.paths.outbox.glob(f"{DAY.isoformat()}-alert-*.eml"))
    assert len(alerts) == 1
    alert = email.message_from_bytes(alerts[0].read_bytes(), policy=policy.default)
    assert alert["To"] == OPS and COMMITTEE not in str(alert)
    body = alert.get_body(("plain",)).get_content()
    assert texts[0] in body


# -- warnings: quarantined with reasons, figures as if the rows were never there --------------------

REBUILD_FIGURES = {"position_rebuild_mismatches", "order_flow_violations"}


def _filled_liquidations(root: Path) -> list[int]:
    liqs = pl.read_parquet(_part(root, "liquidations")).with_row_index("i")
    return liqs.filter(pl.col("filled_qty") > 0)["i"].to_list()


def _plain_trades(root: Path) -> list[int]:
    t = pl.read_parquet(_part(root, "trades")).with_row_index("i")
    return t.filter(pl.col("liquidation_id").is_null())["i"].to_list()


def _liq(k: int, **values):
    return lambda r: _edit(r, "liquidations", lambda f: _set(f, _filled_liquidations(r)[k], **values))


def _liq_fn(k: int, fn):
    def corrupt(r):
        row = _filled_liquidations(r)[k]
        _edit(r, "liquidations", lambda f: _set(f, row, **fn(f.row(row, named=True))))
    return corrupt


def _fill_of(k: int, fn):
    """Corrupt the first fill of the k-th filled liquidation."""
    def corrupt(r):
        liq_id = pl.read_parquet(_part(r, "liquidations"))["liquidation_id"][_filled_liquidations(r)[k]]
        t = pl.read_parquet(_part(r, "trades")).with_row_index("i")
        row = t.filter(pl.col("liquidation_id") == liq_id)["i"][0]
        _edit(r, "trades", lambda f: _set(f, row, **fn(f.row(row, named=True))))
    return corrupt


def _trade(k: int, fn):
    def corrupt(r):
        row = _plain_trades(r)[k]
        _edit(r, "trades", lambda f: _set(f, row, **fn(f.row(row, named=True))))
    return corrupt


def _row(dataset: str, row: int, **values):
    return lambda r: _edit(r, dataset, lambda f: _set(f, row, **values))


def _next_day_mark_rows(r: Path) -> None:
    def add(f):
        extra = f.filter(pl.col("symbol") == f["symbol"][0]).tail(30).with_columns(
            pl.col("ts") + dt.timedelta(seconds=60))
        return pl.concat([f, extra])
    _edit(r, "mark_index", add)


def _cross_account(r: Path) -> int:
    """A cross account none of whose positions rows another case of its group corrupts."""
    pos = pl.read_parquet(_part(r, "positions_eod")).with_row_index("i")
    touched = pos.filter(pl.col("i").is_in([1, 2, 4]))["account"]
    return int(pos.filter((pl.col("margin_mode") == "cross") & ~pl.col("account").is_in(touched.implode()))["account"][0])


def _cross_wallet_null(r: Path) -> None:
    acct = _cross_account(r)
    _edit(r, "accounts_eod", lambda f: f.with_columns(
        pl.when(pl.col("account") == acct).then(None).otherwise(pl.col("wallet_balance")).alias("wallet_balance")))


def _cross_wallet_expected(r: Path) -> dict:
    """The wallet row, and every cross position of its account with it."""
    acct = _cross_account(r)
    n = pl.read_parquet(_part(r, "positions_eod")).filter(
        (pl.col("margin_mode") == "cross") & (pl.col("account") == acct)).height
    return {("accounts_eod", "wallet_balance not null or NaN"): 1,
            ("positions_eod", "the cross account's accounts_eod row quarantined"): n}


def _funding_10x_inside_a_loose_cap(r: Path) -> None:
    _edit(r, "instruments", lambda f: f.with_columns(pl.lit(0.05).alias("funding_cap")))
    _edit(r, "funding", lambda f: _set(f, 1, funding_rate=float(f["funding_rate"][1]) * 10))


#: name -> (corruption, {(dataset, reason): rows}); the fills of a quarantined liquidation go with
#: it (reason "liquidation quarantined", counted by the test).
WARNINGS = {
    "liquidations": {
        "null-path": (_liq(0, path=None), {("liquidations", "path not null"): 1}),
        "filled-qty-ten-times-its-fills": (_liq_fn(1, lambda r: {"filled_qty": r["filled_qty"] * 10, "qty": r["qty"] * 10}),
                                           {("liquidations", "filled_qty equals the sum of its fills' qty"): 1}),
        "bankruptcy-price-inf": (_liq(2, bankruptcy_price=float("inf")),
                                 {("liquidations", "bankruptcy_price > 0 and finite"): 1}),
        "liquidation-price-inf": (_liq(3, liquidation_price=float("inf")),
                                  {("liquidations", "liquidation_price > 0 and finite"): 1}),
        "insurance-fund-delta-inf": (_liq(4, insurance_fund_delta=float("-inf")),
                                     {("liquidations", "insurance_fund_delta within [-1e+12, 1e+12]"): 1}),
        "side-does-not-close-the-position": (
            _liq_fn(5, lambda r: {"side": "buy" if r["side"] == "sell" else "sell"}),
            {("liquidations", "bankruptcy price beyond the liquidation price on the position's side "
                              "(sell: bankruptcy < liquidation; buy: bankruptcy > liquidation)"): 1}),
        "negative-liquidation-fee": (_liq_fn(6, lambda r: {"fee": -abs(r["fee"]) - 1.0}),
                                     {("liquidations", "fee within [0, 1e+12]"): 1}),
        "unknown-liquidation-side": (_liq(7, side="short"), {("liquidations", "side in ['buy', 'sell']"): 1}),
        "fill-symbol-differs-from-its-liquidation": (
            _fill_of(8, lambda r: {"symbol": "ETHUSDT" if r["symbol"] != "ETHUSDT" else "BTCUSDT"}),
            {("trades", "a liquidation fill trades the liquidation's symbol"): 1,
             ("liquidations", "fills quarantined in trades"): 1}),
    },
    "trades-and-orders": {
        "null-taker-side": (_trade(0, lambda r: {"taker_side": None}), {("trades", "taker_side not null"): 1}),
        "null-symbol": (_trade(1, lambda r: {"symbol": None}), {("trades", "symbol not null"): 1}),
        "negative-taker-fee": (_trade(2, lambda r: {"taker_fee": -abs(r["taker_fee"]) - 0.01}),
                               {("trades", "fees have the sign of the instrument's fee rates (no negative fee "
                                           "where the rate is not negative)"): 1}),
        "lower-case-symbol": (_trade(3, lambda r: {"symbol": r["symbol"].lower()}),
                              {("trades", "symbol is a listed instrument"): 1}),
        "null-order-side": (_row("order_events", 5, side=None), {("order_events", "side not null"): 1}),
        "unknown-tif": (_row("order_events", 6, tif="DAY"), {("order_events", "tif in ['FOK', 'GTC', 'GTX', 'IOC']"): 1}),
        "null-reduce-only": (_row("order_events", 7, reduce_only=None), {("order_events", "reduce_only not null"): 1}),
        "fill-of-an-unknown-liquidation": (_trade(4, lambda r: {"liquidation_id": 10**12}),
                                           {("trades", "liquidation fills point to a known liquidation"): 1}),
    },
    "reference-and-prices": {
        "funding-rate-10x-inside-a-loose-cap": (
            _funding_10x_inside_a_loose_cap,
            {("funding", "funding_rate = clamp(premium_index + clamp(interest_rate - premium_index, -0.05%, "
                         "+0.05%), -cap, +cap) (within 1e-06)"): 1}),
        "interest-rate-inf": (_row("funding", 2, interest_rate=float("inf")),
                              {("funding", "interest_rate within [-1, 1]"): 1}),
        "nan-in-a-nullable-ratio": (_row("market_metrics", 3, taker_buy_sell_ratio=float("nan")),
                                    {("market_metrics", "taker_buy_sell_ratio not NaN"): 1}),
        "unknown-api-scope": (_row("api_keys", 1, scopes=["read", "admin"]),
                              {("api_keys", "scopes within ['read', 'trade', 'withdraw', 'transfer']"): 1}),
        "null-api-key-status": (_row("api_keys", 2, status=None), {("api_keys", "status not null"): 1}),
        "next-day-rows-in-mark-index": (_next_day_mark_rows, {("mark_index", "ts inside 2026-11-02"): 30}),
        "null-wallet-of-a-cross-account": (_cross_wallet_null, _cross_wallet_expected),
        "negative-source-weight": (_row("index_components", 7, weight=-0.25),
                                   {("index_components", "weight within [0, 1]"): 1}),
        "null-position-size": (_row("positions_eod", 1, size=None), {("positions_eod", "size not null or NaN"): 1}),
        "unknown-position-margin-mode": (_row("positions_eod", 2, margin_mode="portfolio"),
                                         {("positions_eod", "margin_mode in ['cross', 'isolated']"): 1}),
        "position-dated-the-day-before": (_row("positions_eod", 4, date=PREV), {("positions_eod", f"date is {DAY}"): 1}),
    },
}


def _stages_to_metrics(settings: Settings) -> tuple[dict, pl.DataFrame]:
    extracted = [pipeline.extract(DAY, name, settings) for name in DATASET_NAMES]
    pipeline.validate(DAY, extracted, settings)
    pipeline.load(DAY, extracted, settings)
    tables = pipeline.compute_metrics(DAY, settings)
    validation = json.loads((pipeline.quality_dir(settings, DAY) / "validation.json").read_text())
    return validation, pl.read_parquet(tables["venue_figures"])


def _figures(frame: pl.DataFrame) -> dict:
    return dict(zip(frame["figure"].to_list(), frame["value"].to_list()))


@pytest.mark.parametrize("group", list(WARNINGS))
def test_warning_rows_are_quarantined_and_figures_equal_a_run_without_them(case, tmp_path, group):
    root, home, mp = case
    cases = WARNINGS[group]
    expectations = [exp(root) if callable(exp) else exp for _, exp in cases.values()]  # on clean input
    for corrupt, _ in cases.values():
        corrupt(root)
    limits = ",".join(f"{d}=0.9" for d in DATASET_NAMES)  # the limits are tested above
    shutil.copytree(home, tmp_path / "home-without")  # the previous day only, for the clean run
    settings = _use(mp, home, root, limits)
    validation, figures = _stages_to_metrics(settings)
    assert validation["status"] == "warnings"
    got = {(q["dataset"], q["reason"]): q["rows"] for q in validation["quarantined"]}
    expected: dict = {}
    for exp in expectations:
        for k, n in exp.items():
            expected[k] = expected.get(k, 0) + n
    liq_q = pl.read_parquet(settings.paths.data / "quarantine" / "liquidations" / f"date={DAY}" / "data.parquet") \
        if any(d == "liquidations" for d, _ in expected) else None
    if liq_q is not None:
        fills = pl.read_parquet(_part(root, "trades")).filter(
            pl.col("liquidation_id").is_in(liq_q["liquidation_id"].implode())).height
        own = expected.get(("trades", "a liquidation fill trades the liquidation's symbol"), 0)
        expected[("trades", "liquidation quarantined")] = fills - own
    assert got == expected

    # the same day, with the quarantined rows simply absent from the input
    clean = tmp_path / "without"
    shutil.copytree(root, clean)
    for dataset in {d for d, _ in got}:
        q = pl.read_parquet(settings.paths.data / "quarantine" / dataset / f"date={DAY}" / "data.parquet")
        path = _part(clean, dataset)
        frame = pl.read_parquet(path).with_row_index("_r")
        frame.filter(~pl.col("_r").is_in(q["source_row"].cast(pl.UInt32).implode())).drop("_r").write_parquet(path)
    without = _use(mp, tmp_path / "home-without", clean, limits)
    validation_without, figures_without = _stages_to_metrics(without)
    assert validation_without["status"] == "passed", [c for c in validation_without["checks"] if c["failed_count"]]
    a, b = _figures(figures), _figures(figures_without)
    assert a.keys() == b.keys()
    for name in a:
        if name not in REBUILD_FIGURES:
            assert a[name] == pytest.approx(b[name], rel=1e-12, abs=1e-12, nan_ok=True), name
    # rows the gate took out are never reported as the venue's mismatches
    assert a["position_rebuild_mismatches"] == 0.0


def test_mark_index_next_day_rows_are_shown_as_such(case):
    """Rows of the next day mixed into mark_index are quarantined as outside the day, with an
    offending row as the example, and no longer read as a stale series."""
    root, home, mp = case
    _next_day_mark_rows(root)
    settings = _use(mp, home, root)
    extracted = [pipeline.extract(DAY, name, settings) for name in DATASET_NAMES]
    pipeline.validate(DAY, extracted, settings)
    validation = json.loads((pipeline.quality_dir(settings, DAY) / "validation.json").read_text())
    failed = {c["check"]: c for c in validation["checks"] if c["failed_count"]}
    assert set(failed) == {f"ts inside {DAY}"}
    assert "datetime(2026, 11, 3, 0, 0" in failed[f"ts inside {DAY}"]["example"]  # an offending row


def test_quarantined_instrument_takes_its_symbol_and_the_report_does_not_blame_the_venue(case):
    """One instrument row quarantined (limits raised so the day goes on without the symbol):
    every row of the symbol leaves with it, nothing of it reaches the warehouse, the rebuild
    shows no mismatch, and the report says the gate removed the rows."""
    root, home, mp = case
    symbol = pl.read_parquet(_part(root, "instruments"))["symbol"][0]
    _edit(root, "instruments", lambda f: _set(f, 0, tick_size=-1.0))
    settings = _use(mp, home, root, ",".join(f"{d}=1.0" for d in DATASET_NAMES))
    pipeline.run_day(DAY, settings)
    validation = json.loads((pipeline.quality_dir(settings, DAY) / "validation.json").read_text())
    got = {(q["dataset"], q["reason"]) for q in validation["quarantined"]}
    assert ("instruments", "tick_size > 0 and finite") in got
    for dataset in ("trades", "order_events", "mark_index", "positions_eod", "risk_tiers"):
        assert (dataset, "the symbol's instrument or risk tiers quarantined") in got
    from venue_risk.warehouse import connect

    with connect(settings.paths.warehouse, read_only=True) as con:
        for table in ("trades", "mark_index", "positions_eod", "instruments"):
            assert con.sql(f"SELECT count(*) FROM {table} WHERE date = DATE '{DAY}' "
                           f"AND symbol = '{symbol}'").fetchall()[0][0] == 0
    summary = json.loads((settings.paths.reports / DAY.isoformat() / "summary.json").read_text())
    assert summary["figures"]["position_rebuild_mismatches"]["value"] == 0.0
    html = (settings.paths.reports / DAY.isoformat() / f"venue-risk-{DAY}.html").read_text()
    assert "removed by the data-quality gate" in html
    assert "do not follow from start-of-day positions" not in html
