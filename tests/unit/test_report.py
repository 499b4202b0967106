"""The report: context from fixture metric frames, render to HTML + PDF + summary.json, read the
PDF back (pypdf) and check what a risk committee must see."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
from pathlib import Path

import polars as pl
import pytest
from pypdf import PdfReader

from venue_risk.report import (
    build_context,
    format_figure,
    methods_summary,
    pseudonymize,
    render_html,
    render_report,
    summary_json,
)
from venue_risk.metrics import forced_cost, slippage, summary
from venue_risk.report import charts

sys.path.insert(0, str(Path(__file__).parent))
import test_slippage as fx  # noqa: E402  (canonical frame builders)

DAY = dt.date(2026, 11, 5)
HOSTILE = "<script>alert(1)</script>"


# -- the methods page: the summary of the real methods document, with links to its files ---------

METHODS_VERSION = "0.1.0+gtest"
METHODS = methods_summary(METHODS_VERSION,
                          {"pdf": Path("/srv/reports/methods/venue-risk-methods-0.1.0+gtest.pdf"),
                           "html": Path("/srv/reports/methods/venue-risk-methods-0.1.0+gtest.html")},
                          Path("/srv/reports/2026-11-05"))


# -- fixture frames: canonical inputs run through the real metric functions ---------------------
#
# The report reads the metric tables by their real column names, so its frames come from the
# metric modules themselves: a rename in venue_risk.metrics breaks this test.

HOSTILE_SYMBOL = f"BAD{HOSTILE}"
LIQS = [
    # id, symbol, path, side, account, leverage, order notional, slippage_bps, beyond bankruptcy,
    # time to complete (s), size to depth
    (1, "BTCUSDT", "incremental", "sell", 1001, 20, 2_400_000.0, 4.2, False, 38.0, 1.4),
    (2, "BTCUSDT", "incremental", "sell", 1002, 10, 1_100_000.0, 2.1, False, 21.0, 0.7),
    (3, "BTCUSDT", "auction", "buy", 1003, 50, 310_000.0, 6.5, False, 3.0, 0.2),
    (4, "ETHUSDT", "auction", "sell", 1004, 25, 95_000.0, 3.3, False, 2.5, 0.05),
    (5, "ETHUSDT", "market", "sell", 1005, 100, 180_000.0, 58.7, True, 0.4, 0.8),
    (6, "BTCUSDT", "market", "buy", 1006, 75, 260_000.0, 21.4, False, 0.3, 0.6),
    (7, HOSTILE_SYMBOL, "market", "sell", 1007, 5, 40_000.0, 9.9, False, 0.2, 0.03),
]
MMR = {5: 0.10, 10: 0.05, 20: 0.025, 25: 0.025, 50: 0.01, 75: 0.005, 100: 0.005}
FEE = 0.005
T0 = dt.datetime(2026, 11, 5, 14, 0, tzinfo=dt.timezone.utc)
MIDNIGHT = dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc)
FUND_OPEN = 5_000_000.0


def _mark(symbol: str) -> float:
    return 3_000.0 if symbol.startswith("ETH") else 60_000.0


def input_frames(liqs=LIQS) -> dict[str, pl.DataFrame]:
    """Canonical input datasets (schema.conform through fx.frame) of the fixture day.

    Each liquidation is filled in three equal fills around a VWAP set to give its slippage. The
    one flagged beyond bankruptcy (ETHUSDT at 100x, MMR 0.5 %, 58.7 bps of slippage) has its
    lowest fill below the bankruptcy price: no fee is charged, the insurance fund pays the
    shortfall and the cost exceeds the maintenance buffer."""
    liq_rows, trade_rows, depth_rows = [], [], []
    trade_id = 1
    for i, (lid, sym, path, side, acct, lev, notional, slip, beyond, ttc, s2d) in enumerate(liqs):
        mark = _mark(sym)
        sell = side == "sell"
        qty = notional / mark
        filled = qty * (0.97 if path == "market" else 1.0)
        bankruptcy = mark * (1 - 1 / lev) if sell else mark * (1 + 1 / lev)
        vwap = mark * (1 - slip / 1e4) if sell else mark * (1 + slip / 1e4)
        spread = 15.0 if beyond else vwap * 2e-4   # the beyond case reaches past bankruptcy
        t = T0 + dt.timedelta(minutes=7 * i)
        for k, price in enumerate((vwap - spread, vwap, vwap + spread)):
            trade_rows.append(fx.trade(trade_id, t + dt.timedelta(seconds=ttc * (k + 1) / 3), sym, price,
                                       filled / 3, side, lid))
            trade_id += 1
        shortfall = (bankruptcy - (vwap - spread)) * filled / 3 if beyond else 0.0
        # the fee is capped at the equity left (here: whatever the slippage leaves of the buffer)
        fee = 0.0 if beyond else min(FEE, MMR[lev] - slip / 1e4 - 5e-4) * filled * mark
        liq_rows.append(dict(
            liquidation_id=lid, ts_trigger=t, ts_done=t + dt.timedelta(seconds=ttc), account=acct,
            symbol=sym, side=side, qty=qty, filled_qty=filled, mark_price=mark,
            liquidation_price=mark * (1 - 0.5 / lev) if sell else mark * (1 + 0.5 / lev),
            bankruptcy_price=bankruptcy, path=path, margin_mode="isolated", leverage=float(lev),
            maintenance_margin_rate=MMR[lev], fee=fee, insurance_fund_delta=fee - shortfall))
        # the 1 % book depth on the side the order consumes, one second before the trigger
        depth_notional = notional / s2d
        depth_rows.append(dict(ts=t - dt.timedelta(seconds=1), symbol=sym,
                               percentage=-1.0 if sell else 1.0, depth=depth_notional / mark,
                               notional=depth_notional))
    # ordinary (non-liquidation) trades: the day's volume
    for k, sym in enumerate(("BTCUSDT", "ETHUSDT", "BTCUSDT")):
        trade_rows.append(fx.trade(trade_id, MIDNIGHT + dt.timedelta(hours=1 + k), sym, _mark(sym),
                                   5.0, "buy", None))
        trade_id += 1

    liquidations = fx.frame("liquidations", liq_rows)
    net = sum(r["insurance_fund_delta"] for r in liq_rows)
    minutes = range(0, 1440, 5)
    insurance_fund = fx.frame("insurance_fund", [
        dict(ts=MIDNIGHT + dt.timedelta(minutes=m), pool="main", balance=FUND_OPEN + net * m / 1435)
        for m in minutes])
    base_mm = dict(open_interest=1.0, long_short_account_ratio=1.0, taker_buy_sell_ratio=1.0)
    market_metrics = fx.frame("market_metrics", [
        dict(base_mm, ts=MIDNIGHT + dt.timedelta(hours=23, minutes=55), symbol="BTCUSDT",
             open_interest_value=400_000_000.0),
        dict(base_mm, ts=MIDNIGHT + dt.timedelta(hours=23, minutes=55), symbol="ETHUSDT",
             open_interest_value=56_700_000.0),
    ])
    # instruments and tiers: the shared builders, plus the hostile symbol on BTC's terms
    instruments, tiers = fx.instruments(), fx.risk_tiers()
    instruments = pl.concat([instruments, instruments.filter(pl.col("symbol") == "BTCUSDT")
                             .with_columns(pl.lit(HOSTILE_SYMBOL).alias("symbol"))])
    tiers = pl.concat([tiers, tiers.filter(pl.col("symbol") == "BTCUSDT")
                       .with_columns(pl.lit(HOSTILE_SYMBOL).alias("symbol"))])
    return {
        "liquidations": liquidations, "trades": fx.frame("trades", trade_rows),
        "book_depth": fx.frame("book_depth", depth_rows), "instruments": instruments,
        "risk_tiers": tiers, "insurance_fund": insurance_fund, "market_metrics": market_metrics,
    }


def metric_frames(liqs=LIQS) -> dict[str, pl.DataFrame]:
    """The report's frames as the pipeline computes them (pipeline.compute_metrics)."""
    data = input_frames(liqs)
    ex = slippage.liquidation_executions(data["liquidations"], data["trades"], data["book_depth"])
    costs = forced_cost.forced_costs(ex, data["instruments"], data["risk_tiers"])
    sensitivity = pl.concat(
        [forced_cost.margin_sensitivity(data["risk_tiers"], symbol, date=DAY)
         for symbol in data["instruments"]["symbol"].sort().to_list()], how="vertical")
    return {
        "liquidation_executions": ex,
        "slippage_by_path": slippage.slippage_by_path(ex),
        "slippage_by_depth_bin": slippage.slippage_by_depth_bin(ex),
        "forced_costs": costs,
        "forced_cost_by_path": forced_cost.forced_cost_by_path(costs),
        "insurance_fund_flows": forced_cost.insurance_fund_flows(data["liquidations"],
                                                                 data["insurance_fund"]),
        "margin_sensitivity": sensitivity,
        "insurance_fund": data["insurance_fund"],
    }


DQ_STATUS = "warnings"
DQ_FAILED_CHECKS = 1.0
HISTORY_DAYS = (dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 4))
HISTORY_SCALE = (0.4, 0.5, 0.6)  # earlier days' figures as a share of today's


def today_figures(liqs=LIQS) -> dict[str, float]:
    """summary.venue_day_figures of the fixture day, plus the data-quality figures the pipeline
    adds (pipeline.build_report)."""
    data = input_frames(liqs)
    frames = metric_frames(liqs)
    figures = summary.venue_day_figures(data["trades"], data["market_metrics"], data["liquidations"],
                                        data["insurance_fund"], frames["liquidation_executions"],
                                        frames["forced_costs"])
    figures["data_quality_status"] = summary.DATA_QUALITY_CODES[DQ_STATUS]
    figures["data_quality_failed_checks"] = DQ_FAILED_CHECKS
    return figures


def history_frame(figures: dict[str, float] | None = None) -> pl.DataFrame:
    figures = today_figures() if figures is None else figures
    rows = [{"date": d, "figure": f, "value": v * k}
            for d, k in zip(HISTORY_DAYS, HISTORY_SCALE) for f, v in figures.items()
            if not math.isnan(v)]
    return pl.DataFrame(rows, schema={"date": pl.Date, "figure": pl.String, "value": pl.Float64})


def summary_frame(figures: dict[str, float] | None = None,
                  history: pl.DataFrame | None = None) -> pl.DataFrame:
    figures = today_figures() if figures is None else figures
    return summary.summary_rows(figures, history_frame(figures) if history is None else history)


DATA_QUALITY = {
    "status": "warnings",
    "checks": [
        {"dataset": "trades", "check": "price > 0", "severity": "warning", "failed_count": 2,
         "expectation": "expect_column_values_to_be_between",
         "example": f"{{'trade_id': 9, 'symbol': '{HOSTILE}'}}"},
        {"dataset": "trades", "check": "keys unique", "severity": "critical", "failed_count": 0, "example": ""},
        {"dataset": "liquidations", "check": "schema and types", "severity": "critical", "failed_count": 0,
         "example": ""},
    ],
    "quarantined": [{"dataset": "trades", "reason": "price > 0",
                     "expectation": "expect_column_values_to_be_between", "rows": 2}],
    "seconds": 2.375,
    "gx_import_seconds": 1.25,
    "row_counts": {"trades": 12345, "liquidations": 7},
}

RUN_META = {
    "run_id": "scheduled__2026-11-05T00:00:00+00:00", "code_version": "0.1.0+gabc123",
    "generated_at": "2026-11-06T00:12:00+00:00", "source": {"kind": "simulated", "scale": "tiny"},
    "input_rows": {"trades": 12345, "liquidations": 7},
    "input_files": {"trades": [{"file": "/data/landing/trades/date=2026-11-05/part.parquet", "sha256": "a" * 64}],
                    "liquidations": [{"file": "/x/liquidations.parquet", "sha256": "b" * 64}]},
    "baseline_days": 3,
}


def make_context(frames=None, summary=None, history=None, key=b"test-key") -> dict:
    return build_context(
        date=DAY, venue_name=f"Test Venue {HOSTILE}",
        frames=metric_frames() if frames is None else frames,
        summary_rows=summary_frame() if summary is None else summary,
        history=history_frame() if history is None else history,
        methodology=METHODS,
        run_meta=RUN_META, data_quality=DATA_QUALITY, pseudonymize_key=key)


def empty_frames() -> dict[str, pl.DataFrame]:
    """A day without liquidations, through the same metric functions."""
    return metric_frames(liqs=[])


def pdf_text(path: Path) -> tuple[int, str]:
    reader = PdfReader(str(path))
    return len(reader.pages), "\n".join(p.extract_text() or "" for p in reader.pages)


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def summary_text(pdf: Path) -> str:
    """The squashed text of the summary section: page one and the pages up to the one with the
    report's contents (the summary ends with them)."""
    out = []
    for page in PdfReader(str(pdf)).pages:
        out.append(page.extract_text() or "")
        if "Contents" in out[-1]:
            break
    return _squash("\n".join(out))



# -- tests --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    ctx = make_context()
    out = tmp_path_factory.mktemp("report")
    return ctx, render_report(ctx, out)


def test_context_is_json_serializable_and_status_is_worst():
    ctx = make_context()
    json.dumps(ctx, allow_nan=False)
    rows = summary_frame()
    statuses = rows["status"].to_list()
    assert ctx["overall_status"] == summary.overall_status(rows) == "red"  # max buffer share > 1
    assert ctx["status_counts"] == {s: statuses.count(s) for s in ("red", "amber", "green", "not_covered",
                                                                   "insufficient_data", "skipped")}
    assert ctx["liquidation_count"] == len(LIQS)
    assert ctx["beyond_bankruptcy_count"] == 1
    assert [p["path"] for p in ctx["paths"]] == ["incremental", "auction", "market"]
    # numbers are not rounded in the context
    fig = {f["figure"]: f for f in ctx["figures"]}
    assert fig["slippage_p95_bps"]["value"] == today_figures()["slippage_p95_bps"]
    assert fig["slippage_p95_bps"]["value"] == pytest.approx(47.51)  # 21.4 + 0.7 x (58.7 - 21.4)
    # history trend: 3 earlier days + today
    assert [p["date"] for p in ctx["series"]["liquidation_notional_trend"]] == [
        "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]


def test_context_reads_the_metric_tables_as_computed():
    """The per-path table is slippage_by_path's ALL rows, unchanged; every table carries the
    metric modules' own column names, with numbers (not n/a) where the metric has one."""
    frames = metric_frames()
    ctx = make_context(frames=frames)
    all_rows = frames["slippage_by_path"].filter(pl.col("symbol") == "ALL")
    assert all_rows.height == len(ctx["paths"])
    for p in ctx["paths"]:
        r = all_rows.filter(pl.col("path") == p["path"]).row(0, named=True)
        for col in ("count", "notional", "slippage_bps_wmean", "slippage_bps_p50", "slippage_bps_p95",
                    "slippage_bps_max", "fill_ratio", "ttc_p95_s", "beyond_bankruptcy_count"):
            assert p[col] is not None and p[col] == r[col], (p["path"], col)
    market = next(p for p in ctx["paths"] if p["path"] == "market")
    assert market["beyond_bankruptcy_count"] == 1
    assert market["slippage_bps_max"] == pytest.approx(58.7)
    # by symbol and path: the ALL roll-ups first, then symbols by notional
    sbp = ctx["slippage_by_path"]
    assert [r["symbol"] for r in sbp[:3]] == ["ALL"] * 3
    assert all(r[c] is not None for r in sbp for c in (
        "slippage_bps_p50", "slippage_bps_p95", "slippage_bps_p99", "slippage_bps_max",
        "slippage_bps_es95"))
    assert all(r["slippage_bps_p95"] is not None for r in ctx["slippage_by_depth_bin"])
    # forced cost: buffer_exceeded_count is forced_cost_by_path's own count
    fcp = ctx["forced_cost_by_path"]
    assert fcp and all(r["buffer_exceeded_count"] is not None for r in fcp)
    assert sum(r["buffer_exceeded_count"] for r in fcp if r["symbol"] == "ALL") == 1
    assert [r for r in ctx["worst_forced_costs"]][0]["pct_initial_margin"] == pytest.approx(
        (58.7 / 1e4) * 100)  # the 100x liquidation beyond bankruptcy: no fee, cost = slippage
    # sensitivity: margin_sensitivity's initial_margin_share (5 bps at 100x = 5 % of IM)
    sens = ctx["sensitivity"]
    assert sens["symbol"] == "BTCUSDT"  # most liquidated notional
    row100 = next(r for r in sens["rows"] if r["leverage"] == 100.0)
    cell = next(c for c in row100["cells"] if c["extra_bps"] == 5.0)
    assert cell["initial_margin_share"] == pytest.approx(0.05)
    assert "5.0% of initial margin at 100x" in sens["takeaway"]


def test_overall_status_green_when_all_green():
    rows = summary_frame()
    green = rows.with_columns(pl.lit("green").alias("status"))
    assert make_context(summary=green)["overall_status"] == "green"
    one_amber = green.with_columns(
        pl.when(pl.col("figure") == "liquidation_count").then(pl.lit("amber"))
        .otherwise(pl.col("status")).alias("status"))
    assert make_context(summary=one_amber)["overall_status"] == "amber"


def test_accounts_are_pseudonymized():
    ctx = make_context(key=b"k1")
    accounts = {r["account"] for r in ctx["top_liquidations"]}
    assert all(re.fullmatch(r"acct-[0-9a-f]{10}", a) for a in accounts)
    assert pseudonymize(1005, b"k1") in accounts
    assert pseudonymize(1005, b"k1") != pseudonymize(1005, b"k2")
    assert pseudonymize(1005, b"k1") == pseudonymize("1005", b"k1")
    assert "1005" not in json.dumps(ctx["top_liquidations"])
    # b"" switches pseudonyms off explicitly
    raw = make_context(key=b"")
    assert "1005" in {r["account"] for r in raw["top_liquidations"]}
    assert raw["pseudonymized"] is False


def test_default_key_from_env(monkeypatch):
    """No key in the code: unset -> accounts as recorded and the report says so; the env key is used."""
    import venue_risk.report.context as context_module
    from venue_risk.report.context import default_pseudonym_key

    assert not hasattr(context_module, "DEFAULT_PSEUDONYM_KEY")
    monkeypatch.delenv("VENUE_RISK_PSEUDONYM_KEY", raising=False)
    assert default_pseudonym_key() is None
    ctx = make_context(key=None)
    assert "1005" in {r["account"] for r in ctx["top_liquidations"]} and ctx["pseudonymized"] is False
    assert "no pseudonym key is configured" in ctx["pseudonym_note"]
    assert "venue_risk_pseudonym_key" in ctx["pseudonym_note"]
    monkeypatch.setenv("VENUE_RISK_PSEUDONYM_KEY", "secret")
    assert default_pseudonym_key() == b"secret"
    ctx = make_context(key=None)
    assert pseudonymize(1005, b"secret") in {r["account"] for r in ctx["top_liquidations"]}
    assert ctx["pseudonym_note"] is None
    monkeypatch.setenv("VENUE_RISK_PSEUDONYM_KEY", "")
    assert default_pseudonym_key() is None


def test_format_figure():
    assert format_figure("volume_usdt", 1_234_567_890.0) == "1.23B USDT"
    assert format_figure("liquidation_notional", 4_369_600.0) == "4.37M USDT"
    assert format_figure("insurance_fund_net", 20_843.0) == "+20,843 USDT"
    assert format_figure("insurance_fund_net", -20_843.0) == "-20,843 USDT"
    assert format_figure("max_buffer_share", 1.4321) == "1.43x"
    assert format_figure("data_quality_status", 1.0) == "warnings"
    assert format_figure("liquidation_slippage_p95_bps", 49.43) == "49.4 bps"
    assert format_figure("liquidation_count", 7.0) == "7"
    assert format_figure("beyond_bankruptcy_share", 1 / 7) == "14.3%"
    assert format_figure("anything", None) == "n/a"
    assert format_figure("anything", float("nan")) == "n/a"


def test_methods_summary_rows_and_links():
    from venue_risk.methods import FAMILIES

    assert [f["title"] for f in METHODS["families"]] == [f.title for f in FAMILIES]
    assert METHODS["version"] == METHODS_VERSION
    # links relative to the report's folder, so they resolve beside the archived reports
    assert METHODS["files"]["pdf"] == {"name": "venue-risk-methods-0.1.0+gtest.pdf",
                                       "link": "../methods/venue-risk-methods-0.1.0+gtest.pdf"}
    # what each family measures, in words, without the design's section references
    slip = next(f for f in METHODS["families"] if f["number"] == "4.1")
    assert slip["what"] == "Slippage of liquidation executions, per liquidation path."
    assert not any("DESIGN" in f["what"] for f in METHODS["families"])


def test_summary_json(rendered):
    ctx, paths = rendered
    data = json.loads(paths["summary"].read_text())
    assert data == json.loads(json.dumps(summary_json(ctx)))
    assert data["date"] == "2026-11-05"
    assert data["overall_status"] == "red"
    rows = {r["figure"]: r for r in summary_frame().iter_rows(named=True)}
    assert set(data["figures"]) == set(rows)
    f, r = data["figures"]["slippage_p95_bps"], rows["slippage_p95_bps"]
    assert f == {**f, "value": r["value"], "baseline": r["baseline"], "baseline_days": 3,
                 "status": r["status"], "threshold": r["threshold"], "display": "47.5 bps"}
    f = data["figures"]["max_buffer_share"]
    # beyond the buffer (> 1x): flagged with the status summary.py's rule gives it
    assert f["value"] > 1.0 and f["status"] == rows["max_buffer_share"]["status"] != "green"
    assert f["display"] == format_figure("max_buffer_share", f["value"])
    by_path = data["liquidations"]["by_path"]
    assert set(by_path) == {"incremental", "auction", "market"}
    assert by_path["market"]["count"] == 3 and by_path["market"]["beyond_bankruptcy_count"] == 1
    assert data["liquidations"]["count"] == len(LIQS)
    # insurance fund net = the liquidations' insurance_fund_delta (fees in, the shortfall out)
    net = input_frames()["liquidations"]["insurance_fund_delta"].sum()
    assert data["insurance_fund"]["total"]["net"] == pytest.approx(net)
    assert data["insurance_fund"]["total"]["check_diff"] == pytest.approx(0.0, abs=1e-6)
    assert data["data_quality"]["status"] == "warnings"
    assert data["run"]["run_id"] == RUN_META["run_id"]


def test_pdf_content(rendered):
    ctx, paths = rendered
    assert paths["pdf"].name == "venue-risk-2026-11-05.pdf"
    assert paths["html"].name == "venue-risk-2026-11-05.html"
    pages, text = pdf_text(paths["pdf"])
    assert pages >= 4
    flat = _squash(text)
    assert "2026-11-05" in text
    assert "RED" in text
    assert "Status: RED" in text  # page footer
    assert f"Page 1 of {pages}" in text
    summary = json.loads(paths["summary"].read_text())
    for name, fig in summary["figures"].items():
        assert _squash(fig["display"]) in flat, (name, fig["display"])
        assert _squash(format_figure(name, fig["value"])) in flat
    for path in ("incremental", "auction", "market"):
        assert path in text
    # the path table (page 2) and the forced-cost table show the metric tables' numbers
    for p in ctx["paths"]:
        row = "".join([p["path"], f"{p['count']:,.0f}", _squash(format_figure("notional", p["notional"])),
                       f"{p['slippage_bps_wmean']:,.1f}", f"{p['slippage_bps_p50']:,.1f}",
                       f"{p['slippage_bps_p95']:,.1f}", f"{p['slippage_bps_max']:,.1f}"])
        assert row in flat, row
    market = next(r for r in ctx["forced_cost_by_path"]
                  if r["symbol"] == "ALL" and r["path"] == "market")
    assert _squash(f"{market['buffer_share_max'] * 100:,.0f}%{market['buffer_exceeded_count']}") in flat
    # the methods page: every family with what it measures, the code version, the methods file
    for fam in METHODS["families"]:
        assert _squash(fam["title"]) in flat and _squash(fam["what"]) in flat, fam["title"]
    assert _squash(f"code version {METHODS_VERSION}") in flat
    assert "venue-risk-methods-0.1.0+gtest.pdf" in flat
    for heading in ("Liquidations and slippage by path", "Forced-execution cost", "Data quality",
                    "Methods", "Run metadata"):
        assert heading in text
    assert "a" * 64 in flat  # file hash
    # data-quality page: expectation names, quarantine with its expectation, validation time
    assert "expect_column_values_to_be_between" in flat
    assert _squash("validation took 2.4 s (of which 1.2 s importing Great Expectations in this process)") in flat
    assert _squash("price > 0") in flat
    assert ctx["sensitivity"]["takeaway"][:40].replace(" ", "") in flat


def test_html_escapes_hostile_strings(rendered):
    ctx, paths = rendered
    html = paths["html"].read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    # a hostile venue name cannot break out of the CSS string of the page footer
    assert "</style><script" not in html


def test_charts_render_for_zero_rows():
    for name, svg in charts.build_charts({"date": "2026-11-05", "series": {}, "paths": []}).items():
        assert svg.startswith("<svg"), name
        assert "No liquidations on this day" in svg or "No " in svg, name
    assert set(charts.CHARTS) == set(charts.build_charts(make_context()))


def test_zero_liquidation_day_renders(tmp_path):
    figures = today_figures(liqs=[])
    no_history = pl.DataFrame(schema={"date": pl.Date, "figure": pl.String, "value": pl.Float64})
    ctx = make_context(frames=empty_frames(), summary=summary_frame(figures, no_history),
                       history=pl.DataFrame())
    assert ctx["liquidation_count"] == 0
    assert ctx["narrative"].startswith("No liquidations on this day.")
    json.dumps(ctx, allow_nan=False)
    paths = render_report(ctx, tmp_path)
    pages, text = pdf_text(paths["pdf"])
    assert pages >= 4
    assert "No liquidations on this day" in text
    assert json.loads(paths["summary"].read_text())["liquidations"]["count"] == 0


def test_render_is_atomic_and_repeatable(tmp_path, rendered):
    ctx, _ = rendered
    a = render_report(ctx, tmp_path)
    html1 = a["html"].read_text()
    b = render_report(ctx, tmp_path)
    assert b["html"].read_text() == html1  # same context -> same HTML (charts deterministic)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["summary.json", "venue-risk-2026-11-05.html", "venue-risk-2026-11-05.pdf"])


def test_missing_frames_and_empty_inputs():
    ctx = build_context(DAY, "V", {}, pl.DataFrame(), pl.DataFrame(), [], {}, {}, None)
    assert ctx["overall_status"] == "insufficient_data"  # no figure rated: never green
    html = render_html(ctx)
    assert "No liquidations on this day" in html


def test_hostile_path_name_is_escaped_in_charts_and_html():
    hostile = f"market{HOSTILE}$x$"
    liqs = [(lid, sym, hostile if path == "market" else path, *rest)
            for lid, sym, path, *rest in LIQS]
    ctx = make_context(frames=metric_frames(liqs))
    assert hostile in [p["path"] for p in ctx["paths"]]
    html = render_html(ctx)
    assert "<script>" not in html
    assert "market&lt;script&gt;" in html
    assert "&lt;script&gt;" in charts.build_charts(ctx)["slippage_distribution"]


# -- market-side sections (DESIGN 4.3-4.5) on a real simulated day ------------------------------
#
# A tiny simulated venue, two days; day two carries a broken index source (binance on ETHUSDT,
# 15 % off the basket for 10 minutes) and a stale one (okx on BTCUSDT). The metric tables come
# from metric_jobs.liquidation_tables / market_tables exactly as the pipeline computes them.

SIM_START = dt.date(2026, 11, 1)
SIM_DAY = dt.date(2026, 11, 2)


ACCOUNT_BASELINES = {"minute_features": pl.DataFrame(), "api_scope_usage": pl.DataFrame()}


def _sim_day_tables(root: Path, day: dt.date, baselines: dict,
                    account: bool = False) -> tuple[dict, dict]:
    from venue_risk import metric_jobs
    from venue_risk.sources import FilesSource

    src = FilesSource(root)
    data = {name: src.read(name, day) for name in metric_jobs.INPUTS}
    data["prev_index_components"] = data["index_components"].clear()
    # the account side needs the previous day's positions as its start
    data["positions_start"] = (src.read("positions_eod", day - dt.timedelta(days=1)) if account
                               else data["positions_eod"].clear())
    sym = metric_jobs.symbol_tables(data, day)
    tables = metric_jobs.liquidation_tables(data, sym)
    tables |= metric_jobs.market_tables(data, baselines, sym)
    if account:
        tables |= metric_jobs.account_tables(data, baselines | ACCOUNT_BASELINES, sym, day)
    figures = summary.venue_day_figures(data["trades"], data["market_metrics"], data["liquidations"],
                                        data["insurance_fund"], tables["liquidation_executions"],
                                        tables["forced_costs"])
    figures |= summary.market_day_figures(tables)
    if account:
        figures |= summary.account_day_figures(tables)
    tables["insurance_fund"] = data["insurance_fund"]
    return tables, figures


def _account_incidents():
    from venue_risk.simulate import Incident

    return [  # day two (index 1), clear of the index incidents above
        Incident("reduce_only_grew_position", 1, "BTCUSDT", dt.time(3, 0), 60, {"partial": True}),
        Incident("post_only_took_liquidity", 1, "ETHUSDT", dt.time(4, 0), 60),
        Incident("fill_after_cancel", 1, "BTCUSDT", dt.time(5, 0), 60),
        Incident("cancel_burst", 1, "BTCUSDT", dt.time(6, 0), 240),
        Incident("thin_book_cluster", 1, "ETHUSDT", dt.time(7, 0), 900),
        Incident("over_scoped_key", 1, "BTCUSDT", dt.time(9, 0), 3600),
        Incident("automation_key_without_kill_switch", 1, "ETHUSDT", dt.time(11, 0), 3600),
        Incident("cross_margin_small_hedge_trigger", 1, "BTCUSDT", dt.time(20, 0), 60),
    ]


ACCOUNT_INCIDENTS = _account_incidents()


@pytest.fixture(scope="module")
def market_day(tmp_path_factory):
    from venue_risk.metrics import crowding, drift, index_integrity
    from venue_risk.simulate import Incident, simulate

    root = tmp_path_factory.mktemp("sim")
    simulate("tiny", SIM_START, 2, root, incidents=[
        Incident("broken_index_source", 1, "ETHUSDT", dt.time(10, 0), 600.0,
                 {"source": "binance", "offset": 0.15}),
        Incident("stale_index_source", 1, "BTCUSDT", dt.time(16, 40), 300.0, {"source": "okx"}),
        *ACCOUNT_INCIDENTS,
    ])
    empty = {"crowding": pl.DataFrame(), "feature_samples": pl.DataFrame()}
    day1, fig1 = _sim_day_tables(root, SIM_START, empty)
    day2, fig2 = _sim_day_tables(root, SIM_DAY, {"crowding": day1["crowding"],
                                                 "feature_samples": day1["feature_samples"]},
                                 account=True)
    day2["crowding_history"] = day1["crowding"]
    history = pl.DataFrame([{"date": SIM_START, "figure": k, "value": float(v)} for k, v in fig1.items()
                            if not math.isnan(v)],
                           schema={"date": pl.Date, "figure": pl.String, "value": pl.Float64})
    fig2["data_quality_status"] = 0.0
    fig2["data_quality_failed_checks"] = 0.0
    ctx = build_context(
        date=SIM_DAY, venue_name="Sim Venue", frames=day2,
        summary_rows=summary.summary_rows(fig2, history), history=history,
        methodology=METHODS,
        run_meta=RUN_META, data_quality={"status": "passed", "checks": [], "quarantined": [],
                                         "seconds": 1.5},
        pseudonymize_key=b"k")
    out = tmp_path_factory.mktemp("market-report")
    return day2, ctx, render_report(ctx, out)


def test_market_sections_in_pdf(market_day):
    tables, ctx, paths = market_day
    pages, text = pdf_text(paths["pdf"])
    flat = _squash(text)
    for heading in ("Funding and volatility crowding", "Index and mark integrity",
                    "Published index against the rule", "Sources stale or excluded",
                    "Broken-source counterfactual", "Single-source sensitivity",
                    "Mark price: basis to the index and lag behind trades", "Drift and fill quality",
                    "Fill quality by volatility bucket", "Funding and realized volatility per symbol",
                    "Index sources excluded over the day"):
        assert _squash(heading) in flat, heading
    # crowding: funding paid in bps/day and the score of every symbol, as computed
    for r in tables["crowding"].iter_rows(named=True):
        assert _squash(f"{r['symbol']}{r['funding_paid'] * 1e4:,.2f}{r['funding_annualized'] * 100:,.1f}%"
                       f"{r['realized_vol'] * 100:,.1f}%") in flat, r["symbol"]
    # index: the broken source's window, its counterfactual move and the published move
    cf = tables["broken_source_counterfactual"]
    assert cf.height >= 1 and "binance" in cf["source"].to_list()
    top = cf.sort(pl.col("cf_move_bps").abs(), descending=True).row(0, named=True)
    assert _squash(f"{top['cf_move_bps']:,.1f}") in flat
    assert _squash(f"{top['max_deviation_pct'] * 100:,.2f}%") in flat
    assert "unaffected" in text
    sens = tables["single_source_sensitivity"].sort(pl.col("worst_move_bps").abs(), descending=True)
    assert _squash(f"{sens['symbol'][0]}{sens['worst_move_bps'][0]:,.1f}{sens['worst_scenario'][0]}") in flat
    for r in tables["mark_basis"].iter_rows(named=True):
        assert _squash(f"{r['basis_abs_p99_bps']:,.2f}") in flat
    # the stale source appears in the windows table
    stale = tables["exclusion_windows"].filter(pl.col("status") == "stale")
    assert stale.height and "okx" in stale["source"].to_list()
    # drift: every feature with its PSI; fill quality per symbol and bucket
    for r in tables["feature_drift"].iter_rows(named=True):
        assert r["feature"] in text
        if r["psi"] is not None:
            assert _squash(f"{r['psi']:,.3f}") in flat
    fq = tables["fill_quality_by_vol_bucket"].filter(pl.col("vol_bucket") == "high")
    for r in fq.iter_rows(named=True):
        assert _squash(f"{r['effective_spread_bps']:,.2f}") in flat
    # the methods page names the market families
    assert _squash("4.3Funding-volatility crowding") in flat
    assert _squash("4.4Index and mark integrity") in flat


def test_summary_page_names_broken_source_and_drift(market_day):
    tables, ctx, paths = market_day
    first = summary_text(paths["pdf"])
    assert _squash("Index: binance on ETHUSDT was excluded as an outlier for") in first
    assert _squash("so margin state did not move because of it") in first
    assert _squash("Stale index sources excluded: okx on BTCUSDT") in first
    assert _squash("Drift:") in first
    assert any(s.startswith(("Crowd", "Crowding")) for s in ctx["market_narrative"])
    assert json.loads(paths["summary"].read_text())["market_narrative"] == ctx["market_narrative"]
    # the summary (page one's status, changes and figures, then the narrative and the contents)
    # takes at most two pages
    assert _squash("Baseline: the figure's trailing baseline") in first
    reader = PdfReader(str(paths["pdf"]))
    assert "Contents" in reader.pages[0].extract_text() + reader.pages[1].extract_text()


def _cf_row(published_move_bps: float) -> pl.DataFrame:
    from venue_risk.metrics.index_integrity import COUNTERFACTUAL_SCHEMA

    t = dt.datetime(2026, 11, 5, 10, 0, tzinfo=dt.timezone.utc)
    return pl.DataFrame([{
        "date": DAY, "symbol": "ETHUSDT", "source": "kraken", "start": t,
        "end": t + dt.timedelta(seconds=299), "seconds": 300, "max_deviation_pct": 0.1234,
        "cf_move_bps": 301.26, "cf_ts": t + dt.timedelta(seconds=42),
        "published_move_bps": published_move_bps, "mark_eod": 3000.0, "positions_crossed": 7,
        "notional_crossed": 123_456.0}], schema=COUNTERFACTUAL_SCHEMA)


def test_broken_source_sentence_from_a_counterfactual_row(tmp_path):
    frames = metric_frames() | {"broken_source_counterfactual": _cf_row(0.0)}
    ctx = make_context(frames=frames)
    line = next(s for s in ctx["market_narrative"] if s.startswith("Index:"))
    assert line == ("Index: kraken on ETHUSDT was excluded as an outlier for 300 s from 10:00:00 to "
                    "10:04:59 UTC (max deviation 12.34% from the basket median); had it been kept the "
                    "index would have moved 301.3 bps (7 positions pushed across liquidation); the "
                    "published index moved 0.00 bps, so margin state did not move because of it.")
    paths = render_report(ctx, tmp_path)
    assert _squash(line) in summary_text(paths["pdf"])
    # the rule failed: the sentence says by how much the published index moved
    ctx = make_context(frames=metric_frames() | {"broken_source_counterfactual": _cf_row(2.5)})
    line = next(s for s in ctx["market_narrative"] if s.startswith("Index:"))
    assert "the published index moved 2.50 bps because of it" in line
    assert "did not fully protect margin state" in line
    assert ctx["index"]["counterfactual"][0]["protected"] is False


def test_drift_sentence_names_every_drifted_feature():
    from venue_risk.metrics.drift import DRIFT_SCHEMA

    fd = pl.DataFrame([
        {"date": DAY, "feature": "basis_bps", "psi": 0.41, "ks": 0.33, "n_today": 2000,
         "n_baseline": 8000, "baseline_days": 4, "drifted": True},
        {"date": DAY, "feature": "spread_bps", "psi": 0.9, "ks": 0.5, "n_today": 2000,
         "n_baseline": 8000, "baseline_days": 4, "drifted": True},
        {"date": DAY, "feature": "leverage", "psi": 0.01, "ks": 0.02, "n_today": 70,
         "n_baseline": 300, "baseline_days": 4, "drifted": False}], schema=DRIFT_SCHEMA)
    ctx = make_context(frames=metric_frames() | {"feature_drift": fd})
    assert ctx["market_narrative"][0] == ("Drift: spread_bps (PSI 0.90, KS 0.50), basis_bps (PSI 0.41, "
                                          "KS 0.33) against the trailing 4-day baseline.")
    ctx = make_context(frames=metric_frames() | {"feature_drift": fd.with_columns(drifted=False)})
    assert ctx["market_narrative"][0] == "Drift: no feature drifted against the trailing 4-day baseline."


def test_market_sections_render_with_zero_rows(tmp_path, market_day):
    """An empty day (every market table with its schema and no rows, no history): every section
    renders and says why it is empty."""
    tables, _, _ = market_day
    frames = {k: v.clear() for k, v in tables.items()}
    ctx = make_context(frames=frames, history=pl.DataFrame())
    json.dumps(ctx, allow_nan=False)
    paths = render_report(ctx, tmp_path)
    _, text = pdf_text(paths["pdf"])
    for phrase in ("Funding and volatility crowding", "No funding data for this day",
                   "No funding or volatility data yet", "Index and mark integrity",
                   "No index data for this day", "No index source was stale or excluded today",
                   "No source was excluded as an outlier today", "No single-source sensitivity",
                   "No mark prices for this day", "Drift and fill quality",
                   "No feature samples for this day", "No trades for this day: no fill quality"):
        assert _squash(phrase) in _squash(text), phrase
    assert "Drift: no feature samples for this day." in ctx["market_narrative"]
    # frames missing altogether (older warehouse): same
    html = render_html(make_context(frames=metric_frames()))
    assert "No funding data for this day" in html


# -- account-side sections (DESIGN 4.6-4.10) on the same simulated day --------------------------
#
# Day two of the simulated venue also carries account incidents (ACCOUNT_INCIDENTS): order-flow
# violations (one inside a partial fill), a cancel burst, a thin-book cluster, an over-scoped key,
# an automation key without kill switch and a cross-margin account whose small hedge is the
# trigger at correlation one. Tables from metric_jobs.account_tables, as the pipeline computes them.

ACCOUNT_HEADINGS = ("Order-flow integrity", "Early-warning anomalies", "Early-warning incidents over the day",
                    "Model versus rules", "Cross-margin stress", "Liquidation bands and cascades",
                    "Liquidations at risk: cumulative liquidation notional by distance from mark",
                    "Time in band", "Cascade amplification by shock size", "API key hygiene")


def test_account_sections_in_pdf(market_day):
    tables, ctx, paths = market_day
    _, text = pdf_text(paths["pdf"])
    flat = _squash(text)
    for heading in ACCOUNT_HEADINGS:
        assert _squash(heading) in flat, heading
    # order flow: every violation's order id and pseudonymized account, the counts per symbol
    viol = tables["order_flow_violations"]
    assert viol.height >= 3 and viol["in_partial_fill"].any()
    for r in viol.iter_rows(named=True):
        assert str(r["order_id"]) in flat
        assert pseudonymize(r["account"], b"k") in flat
        assert str(r["account"]) not in ctx["order_flow"]["examples"][0]["account"]
    counts = tables["order_flow_counts"]
    for sym in counts.filter(pl.col("count") > 0)["symbol"].unique().to_list():
        row = counts.filter(pl.col("symbol") == sym).sort("kind")
        total = int(row["count"].sum())
        assert _squash(f"{sym}") + "".join(
            str(int(counts.filter((pl.col("symbol") == sym) & (pl.col("kind") == k))["count"].sum()))
            for k in ("reduce_only_grew", "reduce_only_flipped", "post_only_took_liquidity",
                      "fill_after_cancel", "self_trade")) + str(total) in flat
    assert tables["position_rebuild_check"].height == 0
    n = tables["position_bands"].select("account", "symbol").unique().height
    assert _squash(f"Rebuilt positions equal positions_eod for {n} account-symbols") in flat
    # anomalies: each incident's max z and features
    for r in tables["anomaly_incidents"].iter_rows(named=True):
        assert _squash(f"{r['max_z']:,.1f}") in flat
        assert _squash(", ".join(r["features"])) in flat
    # cross margin: the scenario x k summary and the small-hedge trigger
    for r in tables["cross_margin_summary"].iter_rows(named=True):
        assert _squash(f"{r['accounts_breaching']}/{r['accounts']}") in flat
    assert _squash("a hedge that looks small can become the trigger when correlations jump toward one") in flat.lower()
    hedge = ctx["cross_margin"]["small_hedges"][0]
    assert hedge["trigger_symbol"] in ("BTCUSDT", "ETHUSDT") and hedge["trigger_share"] <= 0.25
    # liquidation bands: the at-risk table at 20 % and the cascade amplification at 10 %
    lar = tables["liquidations_at_risk"].filter(pl.col("bucket") == 20)
    for r in lar.iter_rows(named=True):
        assert _squash(format_figure("notional", r["cumulative_liquidation_notional"]).replace(" USDT", "")) in flat
    cas = tables["cascade_table"].filter((pl.col("shock") - 0.10).abs() < 1e-9)
    for r in cas.iter_rows(named=True):
        assert f"{r['amplification']:,.3f}" in flat
    assert _squash("engine latency 1.00 s per round") in flat  # the table's own latency
    # API keys: every failing key with its flags, checklist totals per check
    failing = tables["api_key_checklist"].filter(~pl.col("ok"))
    assert failing.height >= 2
    for r in failing.iter_rows(named=True):
        assert str(r["key_id"]) in flat and pseudonymize(r["account"], b"k") in flat
    assert "automation without kill switch" in text
    tot = tables["api_checklist_totals"].filter(pl.col("check") == "any").row(0, named=True)
    assert _squash(f"any check{tot['keys_failing']}/{tot['keys']}") in flat
    # the account figures' units: USDT and a multiple, not percent
    fig = {f["figure"]: f for f in ctx["figures"]}
    within = next(f for name, f in fig.items() if name.startswith("liquidation_notional_within"))
    assert within["display"].endswith("USDT")
    amp = next(f for name, f in fig.items() if name.startswith("cascade_amplification"))
    assert amp["display"].endswith("x")


def test_summary_page_names_account_findings(market_day):
    tables, ctx, paths = market_day
    first = summary_text(paths["pdf"])
    lines = ctx["account_narrative"]
    assert any(s.startswith("Order flow: ") for s in lines)
    assert any(s.startswith("Cross margin: with correlations at one, ") and "trigger symbols:" in s
               for s in lines)
    assert any(s.startswith("API keys: ") and "automation without kill switch" in s for s in lines)
    for line in lines:
        assert _squash(line) in first, line
    assert json.loads(paths["summary"].read_text())["account_narrative"] == lines
    assert _squash("Baseline: the figure's trailing baseline") in first


def test_account_sentences_from_hand_built_rows(tmp_path):
    from venue_risk.metrics import api_scoping
    from venue_risk.metrics.anomalies import INCIDENTS_SCHEMA
    from venue_risk.metrics.api_scoping import CHECKLIST_SCHEMA
    from venue_risk.metrics.order_flow import VIOLATIONS_SCHEMA

    t = dt.datetime(2026, 11, 5, 3, 0, 7, tzinfo=dt.timezone.utc)
    viol = pl.DataFrame([{
        "date": DAY, "kind": "reduce_only_grew", "ts": t, "symbol": "BTCUSDT", "trade_id": 77,
        "order_id": 987654, "account": 4242, "role": "taker", "in_partial_fill": True,
        "details": f"reduce-only fill grew the position {HOSTILE}"}], schema=VIOLATIONS_SCHEMA)
    key = {c: None for c in CHECKLIST_SCHEMA} | {
        "date": DAY, "key_id": 555, "account": 4242, "status": "active", "scopes": ["read", "trade"],
        "needed_scopes": ["read"], "unused_scope_list": ["trade"], "requests": 9000,
        "peak_requests_per_minute": 120, "automation": True, "kill_switch": False,
        "trade_and_withdraw": False, "trading_without_allowlist": False, "unused_scopes": True,
        "automation_without_kill_switch": True, "expired_but_active": False,
        "unused_but_active": False, "error_burst": False,
        "flags": ["unused_scopes", "automation_without_kill_switch"], "ok": False}
    checklist = pl.DataFrame([key], schema=CHECKLIST_SCHEMA)
    incident = pl.DataFrame([{
        "date": DAY, "start": t, "end": t + dt.timedelta(minutes=4), "symbols": ["ETHUSDT"],
        "features": ["cancels", "cancel_new_ratio"], "max_z": 31.25, "severity": "high",
        "kinds": ["multi_feature"], "n_anomalies": 6}], schema=INCIDENTS_SCHEMA)
    frames = metric_frames() | {"order_flow_violations": viol, "api_key_checklist": checklist,
                                "api_checklist_totals": api_scoping.checklist_totals(checklist),
                                "anomaly_incidents": incident}
    ctx = make_context(frames=frames)
    assert ctx["account_narrative"] == [
        "Order flow: 1 violation (reduce-only grew position 1); 1 inside a partial fill.",
        "Anomalies: 1 high-severity incident of 1: 03:00-03:04 UTC ETHUSDT (cancels, cancel_new_ratio; "
        "max z 31.2).",
        "API keys: 1 of 1 key(s) fail a check: scopes unused in the window (1), automation without kill "
        "switch (1).",
    ]
    paths = render_report(ctx, tmp_path)
    first = summary_text(paths["pdf"])
    for line in ctx["account_narrative"]:
        assert _squash(line) in first, line
    _, text = pdf_text(paths["pdf"])
    flat = _squash(text)
    assert "987654" in flat and pseudonymize(4242, b"test-key") in flat
    assert ctx["order_flow"]["examples"][0]["account"] == pseudonymize(4242, b"test-key")
    assert ctx["api"]["failing"][0]["account"] == pseudonymize(4242, b"test-key")
    html = paths["html"].read_text()
    assert "<script>" not in html and "grew the position &lt;script&gt;" in html


def test_account_sections_render_with_zero_rows_and_missing_tables(tmp_path, market_day):
    from venue_risk.metric_jobs import METRIC_TABLES

    tables, _, _ = market_day
    account = [t for t in METRIC_TABLES if t.startswith(("order_flow", "position_", "minute_", "anomaly",
                                                           "rules_", "cross_", "time_in", "liquidations_at",
                                                           "cascade", "api_"))]
    for frames in ({**tables, **{k: tables[k].clear() for k in account}},
                   {k: v for k, v in tables.items() if k not in account}):
        ctx = make_context(frames=frames, history=pl.DataFrame())
        json.dumps(ctx, allow_nan=False)
        assert ctx["account_narrative"] == []
        paths = render_report(ctx, tmp_path)
        flat = _squash(pdf_text(paths["pdf"])[1])
        for heading in ACCOUNT_HEADINGS[:1] + ("Early-warning anomalies", "Cross-margin stress",
                                               "Liquidation bands and cascades", "API key hygiene"):
            assert _squash(heading) in flat, heading
        for phrase in ("No open position within 20% of its liquidation price",
                       "No cascade computed today"):
            assert _squash(phrase) in flat, phrase


def test_all_zero_charts_say_no_data_instead_of_drawing_a_zero_axis():
    """A chart of zeros drew axes labelled "0 0 0 -0 -0" at a 1e-9 scale: it now says there is
    nothing to draw."""
    trend = charts.liquidation_notional_trend(
        [{"date": f"2026-11-0{i}", "value": 0.0} for i in range(1, 4)], "2026-11-03")
    assert "No liquidated notional on any of the 3 day(s)" in trend
    flat = charts.cascade_amplification(
        [{"symbol": "BTCUSDT", "direction": "down", "points": [[2.0, 1.0], [10.0, 1.0]]}], [2.0, 10.0])
    assert "No cascade" in flat
    drawn = charts.liquidation_notional_trend([{"date": "2026-11-01", "value": 5.0}], "2026-11-01")
    assert "No liquidated notional" not in drawn and "<svg" in drawn


def test_page_one_what_changed_contents_and_fonts(tmp_path):
    """Page one: the overall status, the ranked list of what changed since yesterday (from the
    previous report's statuses) and the figures by family; the summary's contents link to every
    section with a verdict, each link landing on the page where that section opens; fonts embedded."""
    from test_docs import internal_links, unembedded_fonts

    from venue_risk.report.page_one import SECTIONS

    ctx0 = make_context()
    rated = [f for f in ctx0["figures"] if f["status"] in ("red", "amber")]
    assert rated, "the fixture day has figures out of band"
    worst = max(rated, key=lambda f: {"amber": 1, "red": 2}[f["status"]])
    yesterday = {f["figure"]: {"status": "green", "display": "0"} for f in ctx0["figures"]}
    ctx = build_context(date=DAY, venue_name="Test Venue", frames=metric_frames(), summary_rows=summary_frame(),
                        history=history_frame(), methodology=METHODS, run_meta=RUN_META,
                        data_quality=DATA_QUALITY, pseudonymize_key=b"k", yesterday=yesterday)
    assert ctx["changes"][0]["status"] == worst["status"] and ctx["changes"][0]["change"] == "worse"
    paths = render_report(ctx, tmp_path)
    reader = PdfReader(str(paths["pdf"]))
    page_one = _squash(reader.pages[0].extract_text())
    assert _squash("What changed since yesterday") in page_one
    assert _squash(ctx["changes"][0]["sentence"]) in page_one and "WORSE" in page_one
    assert _squash("Headline figures by family") in page_one
    assert "RED" in page_one or "AMBER" in page_one
    # every section in the contents, each link resolving to the page that opens with its title
    links = dict(internal_links(paths["pdf"], range(0, 2)))
    for anchor, title, names in SECTIONS:
        assert links.get(anchor) is not None, f"contents link #{anchor} does not resolve"
        assert _squash(title) in _squash(reader.pages[links[anchor]].extract_text()), title
        if names:  # the section opens with its verdict
            assert _squash(ctx["verdicts"][anchor]["sentence"]) in _squash(reader.pages[links[anchor]].extract_text())
    assert unembedded_fonts(paths["pdf"]) == []
    # the HTML twin carries the same page one
    html = paths["html"].read_text()
    assert "What changed since yesterday" in html and 'href="#liquidations"' in html


def test_report_render_logs_no_css_warnings(caplog):
    """The charts are SVG images (render.chart_image), not SVG inline in the HTML, whose
    elements' style attributes WeasyPrint read as HTML CSS too, warning for each presentation
    property (fill, stroke, ...: about 2,800 warnings per demo report's log, which buried any
    real one). The report renders without a single "Ignored" warning; the same chart inline
    does warn, and a real unknown CSS property still warns (the test can fail)."""
    import logging

    from venue_risk.report.render import chart_image, render_html, render_pdf_bytes

    def ignored(records) -> list[str]:
        return [r.args[0] for r in records if r.name == "weasyprint" and r.msg.startswith("Ignored `")]

    ctx = make_context()
    built = charts.build_charts(ctx)
    html = render_html(ctx, built)
    assert "<svg" not in html and html.count('class="chart" alt=') == len(built)
    with caplog.at_level(logging.WARNING, logger="weasyprint"):
        assert render_pdf_bytes(html).startswith(b"%PDF")
    assert ignored(caplog.records) == []
    chart = built["slippage_distribution"]
    for body, expected in ((f'<p style="colour: red">x</p>{chart_image(chart, "c")}', ["colour"]),
                           (chart, None)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="weasyprint"):
            render_pdf_bytes(f"<html><body>{body}</body></html>")
        if expected:
            assert ignored(caplog.records) == expected
        else:
            assert {"fill", "stroke"} <= set(ignored(caplog.records))
