"""The report: context from fixture metric frames, render to HTML + PDF + summary.json, read the
PDF back (pypdf) and check what a risk committee must see."""

from __future__ import annotations

import datetime as dt
import json
import re
import types
from pathlib import Path

import polars as pl
import pytest
from pypdf import PdfReader

from venue_risk.report import (
    build_context,
    format_figure,
    methodology_sections,
    pseudonymize,
    render_html,
    render_report,
    summary_json,
)
from venue_risk.report import charts

DAY = dt.date(2026, 11, 5)
HOSTILE = "<script>alert(1)</script>"


# -- fixture metric modules (for the methodology appendix) --------------------------------------

def _fake_module(name: str, doc: str, funcs: dict) -> types.ModuleType:
    mod = types.ModuleType(f"venue_risk.metrics.{name}", doc)
    for fname, fn in funcs.items():
        fn.__module__ = mod.__name__
        setattr(mod, fname, fn)
    return mod


def _slippage_by_path_fn(executions):
    """Per date x symbol x path: count, notional, notional-weighted mean slippage.

        slippage_bps = (mark - vwap) / mark * 1e4    (sell; mirror for buy)

    Positive = adverse.
    """


def _cost_fn(executions):
    """cost_rate = liquidation_fee_rate + adverse slippage rate;
    buffer_share = cost_rate / maintenance_margin_rate."""


def _helper(x):  # private: not in the appendix
    """not shown"""


SLIPPAGE_MOD = _fake_module(
    "slippage",
    "Slippage per liquidation path.\n\nvwap = sum(p*q)/sum(q) over the liquidation's fills.",
    {"slippage_by_path": _slippage_by_path_fn, "_helper": _helper})
COST_MOD = _fake_module(
    "forced_cost",
    "Forced-execution cost.\n\nEquity lost, % of initial margin, share of the maintenance buffer.",
    {"forced_costs": _cost_fn})


# -- fixture frames -----------------------------------------------------------------------------

LIQS = [
    # id, symbol, path, side, account, leverage, notional, slippage_bps, beyond_qty, shortfall, ttc, s2d
    (1, "BTCUSDT", "incremental", "sell", 1001, 20, 2_400_000.0, 4.2, 0.0, 0.0, 38.0, 1.4),
    (2, "BTCUSDT", "incremental", "sell", 1002, 10, 1_100_000.0, 2.1, 0.0, 0.0, 21.0, 0.7),
    (3, "BTCUSDT", "auction", "buy", 1003, 50, 310_000.0, 6.5, 0.0, 0.0, 3.0, 0.2),
    (4, "ETHUSDT", "auction", "sell", 1004, 25, 95_000.0, 3.3, 0.0, 0.0, 2.5, 0.05),
    (5, "ETHUSDT", "market", "sell", 1005, 100, 180_000.0, 58.7, 0.9, 1_057.0, 0.4, 0.8),
    (6, "BTCUSDT", "market", "buy", 1006, 75, 260_000.0, 21.4, 0.0, 0.0, 0.3, 0.6),
    (7, f"BAD{HOSTILE}", "market", "sell", 1007, 5, 40_000.0, 9.9, 0.0, 0.0, 0.2, 0.03),
]
MMR = {5: 0.10, 10: 0.05, 20: 0.025, 25: 0.025, 50: 0.01, 75: 0.005, 100: 0.005}
FEE = 0.005


def executions_frame() -> pl.DataFrame:
    rows = []
    t0 = dt.datetime(2026, 11, 5, 14, 0, tzinfo=dt.timezone.utc)
    for i, (lid, sym, path, side, acct, lev, notional, slip, beyond, shortfall, ttc, s2d) in enumerate(LIQS):
        mark = 60_000.0 if sym.startswith("BTC") else 3_000.0
        qty = notional / mark
        rows.append({
            "date": DAY, "liquidation_id": lid, "symbol": sym, "path": path, "side": side,
            "account": acct, "ts_trigger": t0 + dt.timedelta(minutes=7 * i),
            "ts_done": t0 + dt.timedelta(minutes=7 * i, seconds=ttc), "qty": qty,
            "filled_qty": qty * (0.97 if path == "market" else 1.0), "mark_price": mark,
            "bankruptcy_price": mark * (1 - 1 / lev), "leverage": float(lev),
            "maintenance_margin_rate": MMR[lev], "fill_count": 3, "vwap": mark * (1 - slip / 1e4),
            "filled_notional": notional * (0.97 if path == "market" else 1.0), "order_notional": notional,
            "slippage_bps": slip, "fill_ratio": 0.97 if path == "market" else 1.0,
            "time_to_complete_s": ttc, "beyond_bankruptcy_qty": beyond, "shortfall": shortfall,
            "size_to_depth": s2d,
            "size_to_depth_bin": "<0.1" if s2d < 0.1 else "0.1-0.5" if s2d < 0.5 else "0.5-1" if s2d < 1 else "1-2",
        })
    return pl.DataFrame(rows)


def forced_costs_frame(ex: pl.DataFrame) -> pl.DataFrame:
    return ex.select(
        "date", "liquidation_id", "symbol", "path",
        (FEE + pl.col("slippage_bps") / 1e4).alias("cost_rate"),
    ).with_columns(
        (pl.col("cost_rate") * ex["filled_notional"]).alias("equity_lost"),
        (pl.col("cost_rate") * ex["leverage"]).alias("pct_initial_margin"),
        (pl.col("cost_rate") / ex["maintenance_margin_rate"]).alias("buffer_share"),
        (pl.col("cost_rate") / 0.005).alias("margin_steps"),
    )


def metric_frames() -> dict[str, pl.DataFrame]:
    ex = executions_frame()
    fc = forced_costs_frame(ex)
    by_path = ex.group_by("symbol", "path").agg(
        pl.len().alias("count"), pl.col("filled_notional").sum().alias("notional"),
        ((pl.col("slippage_bps") * pl.col("filled_notional")).sum() / pl.col("filled_notional").sum())
        .alias("slippage_bps_wmean"),
        pl.col("slippage_bps").quantile(0.5).alias("p50"), pl.col("slippage_bps").quantile(0.95).alias("p95"),
        pl.col("slippage_bps").quantile(0.99).alias("p99"), pl.col("slippage_bps").max().alias("max"),
        pl.col("slippage_bps").max().alias("es95"), pl.col("fill_ratio").mean(),
        pl.col("time_to_complete_s").median().alias("ttc_p50_s"),
        pl.col("time_to_complete_s").max().alias("ttc_p95_s"),
        (pl.col("beyond_bankruptcy_qty") > 0).mean().alias("beyond_bankruptcy_share"),
    ).with_columns(pl.lit(DAY).alias("date")).sort("symbol", "path")
    by_bin = ex.group_by("path", "size_to_depth_bin").agg(
        pl.len().alias("count"),
        ((pl.col("slippage_bps") * pl.col("filled_notional")).sum() / pl.col("filled_notional").sum())
        .alias("slippage_bps_wmean"),
        pl.col("slippage_bps").quantile(0.95).alias("p95"),
    ).with_columns(pl.lit(DAY).alias("date")).sort("path", "size_to_depth_bin")
    fcp = fc.join(ex.select("liquidation_id", "beyond_bankruptcy_qty"), on="liquidation_id").group_by(
        "symbol", "path").agg(
        pl.len().alias("count"), pl.col("equity_lost").sum(), pl.col("cost_rate").mean().alias("cost_rate_wmean"),
        pl.col("cost_rate").max().alias("cost_rate_p95"),
        pl.col("pct_initial_margin").median().alias("pct_initial_margin_p50"),
        pl.col("pct_initial_margin").max().alias("pct_initial_margin_p95"),
        pl.col("buffer_share").median().alias("buffer_share_p50"),
        pl.col("buffer_share").max().alias("buffer_share_p95"),
        pl.col("buffer_share").max().alias("buffer_share_max"),
        (pl.col("beyond_bankruptcy_qty") > 0).sum().alias("beyond_bankruptcy_count"),
    ).with_columns(pl.lit(DAY).alias("date"))
    flows = pl.DataFrame({
        "date": [DAY], "pool": ["main"], "inflow": [21_900.0], "outflow": [1_057.0], "net": [20_843.0],
        "balance_open": [5_000_000.0], "balance_close": [5_020_843.0], "check_diff": [0.0]})
    sens_rows = []
    tiers = {5: (6, 0.10), 10: (5, 0.05), 20: (4, 0.025), 50: (3, 0.01), 100: (2, 0.005)}
    for sym in ("BTCUSDT", "ETHUSDT"):
        for lev, (tier, mmr) in tiers.items():
            for extra in (1, 2, 5, 10):
                rate = extra / 1e4
                sens_rows.append({"symbol": sym, "leverage": float(lev), "tier": tier,
                                  "maintenance_margin_rate": mmr, "extra_bps": float(extra),
                                  "pct_initial_margin": rate * lev, "buffer_share": rate / mmr,
                                  "margin_steps": rate / 0.001})
    ts = [dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=m) for m in range(0, 1440)]
    balance = pl.DataFrame({"ts": ts, "pool": ["main"] * len(ts),
                            "balance": [5_000_000.0 + 14.5 * m for m in range(len(ts))]})
    return {
        "liquidation_executions": ex, "slippage_by_path": by_path, "slippage_by_depth_bin": by_bin,
        "forced_costs": fc, "forced_cost_by_path": fcp, "insurance_fund_flows": flows,
        "margin_sensitivity": pl.DataFrame(sens_rows), "insurance_fund": balance,
    }


SUMMARY = [
    # figure, label, value, baseline, status, threshold
    ("volume_usdt", "Traded volume", 1_234_567_890.0, 1_100_000_000.0, "green", "amber beyond +-50% of baseline"),
    ("open_interest_usdt", "Open interest", 456_700_000.0, 450_000_000.0, "green", "amber beyond +-25%"),
    ("liquidation_count", "Liquidations", 7.0, 3.0, "amber", "amber above 2x baseline, red above 5x"),
    ("liquidation_notional", "Liquidated notional", 4_369_600.0, 1_500_000.0, "amber", "amber above 2x, red above 5x"),
    ("liquidation_slippage_p95_bps", "Liquidation slippage p95", 49.43, 12.0, "red", "red above 40 bps"),
    ("insurance_fund_net", "Insurance fund net", 20_843.0, 15_000.0, "green", "red if negative"),
    ("beyond_bankruptcy_share", "Fills beyond bankruptcy", 1 / 7, 0.0, "red", "red above 5%"),
    ("adl_events", "ADL events", 0.0, 0.0, "green", "red above 0"),
    ("data_quality_failed_checks", "Failed data-quality checks", 1.0, 0.0, "amber", "amber above 0"),
]


def summary_frame(rows=SUMMARY) -> pl.DataFrame:
    return pl.DataFrame([{"figure": f, "label": lab, "value": v, "baseline": b, "baseline_days": 3,
                          "status": s, "threshold": t} for f, lab, v, b, s, t in rows])


def history_frame() -> pl.DataFrame:
    rows = []
    for i, d in enumerate((dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 4))):
        for f, _, v, b, _, _ in SUMMARY:
            rows.append({"date": d, "figure": f, "value": b * (0.8 + 0.2 * i)})
    return pl.DataFrame(rows)


DATA_QUALITY = {
    "status": "warnings",
    "checks": [
        {"dataset": "trades", "check": "price > 0", "severity": "warning", "failed_count": 2,
         "example": f"{{'trade_id': 9, 'symbol': '{HOSTILE}'}}"},
        {"dataset": "trades", "check": "keys unique", "severity": "critical", "failed_count": 0, "example": ""},
        {"dataset": "liquidations", "check": "schema and types", "severity": "critical", "failed_count": 0,
         "example": ""},
    ],
    "quarantined": [{"dataset": "trades", "reason": "price > 0", "count": 2}],
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
        methodology=methodology_sections([SLIPPAGE_MOD, COST_MOD]),
        run_meta=RUN_META, data_quality=DATA_QUALITY, pseudonymize_key=key)


def empty_frames() -> dict[str, pl.DataFrame]:
    return {name: f.clear() for name, f in metric_frames().items()
            if name not in ("margin_sensitivity", "insurance_fund_flows", "insurance_fund")} | {
        "margin_sensitivity": metric_frames()["margin_sensitivity"]}


def pdf_text(path: Path) -> tuple[int, str]:
    reader = PdfReader(str(path))
    return len(reader.pages), "\n".join(p.extract_text() or "" for p in reader.pages)


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


# -- tests --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    ctx = make_context()
    out = tmp_path_factory.mktemp("report")
    return ctx, render_report(ctx, out)


def test_context_is_json_serializable_and_status_is_worst():
    ctx = make_context()
    json.dumps(ctx, allow_nan=False)
    assert ctx["overall_status"] == "red"
    assert ctx["status_counts"] == {"green": 4, "amber": 3, "red": 2}
    assert ctx["liquidation_count"] == len(LIQS)
    assert ctx["beyond_bankruptcy_count"] == 1
    assert [p["path"] for p in ctx["paths"]] == ["incremental", "auction", "market"]
    # numbers are not rounded in the context
    fig = {f["figure"]: f for f in ctx["figures"]}
    assert fig["liquidation_slippage_p95_bps"]["value"] == 49.43
    # history trend: 3 earlier days + today
    assert [p["date"] for p in ctx["series"]["liquidation_notional_trend"]] == [
        "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]


def test_overall_status_green_when_all_green():
    rows = [(f, lab, v, b, "green", t) for f, lab, v, b, _, t in SUMMARY]
    assert make_context(summary=summary_frame(rows))["overall_status"] == "green"
    rows[2] = rows[2][:4] + ("amber",) + rows[2][5:]
    assert make_context(summary=summary_frame(rows))["overall_status"] == "amber"


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
    from venue_risk.report.context import DEFAULT_PSEUDONYM_KEY, default_pseudonym_key

    monkeypatch.delenv("VENUE_RISK_PSEUDONYM_KEY", raising=False)
    assert default_pseudonym_key() == DEFAULT_PSEUDONYM_KEY
    ctx = make_context(key=None)
    assert pseudonymize(1005, DEFAULT_PSEUDONYM_KEY) in {r["account"] for r in ctx["top_liquidations"]}
    monkeypatch.setenv("VENUE_RISK_PSEUDONYM_KEY", "secret")
    assert default_pseudonym_key() == b"secret"
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


def test_methodology_sections_from_docstrings():
    secs = methodology_sections([SLIPPAGE_MOD, COST_MOD])
    titles = [s["title"] for s in secs]
    assert titles == ["Slippage per liquidation path", "slippage.slippage_by_path(executions)",
                      "Forced-execution cost", "forced_cost.forced_costs(executions)"]
    # formulas keep their layout (dedented, line breaks kept)
    assert "    slippage_bps = (mark - vwap) / mark * 1e4" in secs[1]["text"]
    assert all(set(s) >= {"title", "text"} for s in secs)


def test_summary_json(rendered):
    ctx, paths = rendered
    data = json.loads(paths["summary"].read_text())
    assert data == json.loads(json.dumps(summary_json(ctx)))
    assert data["date"] == "2026-11-05"
    assert data["overall_status"] == "red"
    assert set(data["figures"]) == {f for f, *_ in SUMMARY}
    f = data["figures"]["liquidation_slippage_p95_bps"]
    assert f == {**f, "value": 49.43, "baseline": 12.0, "baseline_days": 3, "status": "red",
                 "threshold": "red above 40 bps", "display": "49.4 bps"}
    assert set(data["liquidations"]["by_path"]) == {"incremental", "auction", "market"}
    assert data["insurance_fund"]["total"]["net"] == 20_843.0
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
    for sec in methodology_sections([SLIPPAGE_MOD, COST_MOD]):
        assert _squash(sec["title"]) in flat, sec["title"]
    for heading in ("Liquidations and slippage by path", "Forced-execution cost", "Data quality",
                    "Methodology", "Run metadata"):
        assert heading in text
    assert "a" * 64 in flat  # file hash
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
    rows = [r for r in SUMMARY]
    ctx = make_context(frames=empty_frames(), summary=summary_frame(rows), history=pl.DataFrame())
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
    assert ctx["overall_status"] == "green"
    html = render_html(ctx)
    assert "No liquidations on this day" in html


def test_hostile_path_name_is_escaped_in_charts_and_html():
    frames = metric_frames()
    ex = frames["liquidation_executions"].with_columns(
        pl.when(pl.col("path") == "market").then(pl.lit(f"market{HOSTILE}$x$")).otherwise(pl.col("path"))
        .alias("path"))
    frames["liquidation_executions"] = ex
    ctx = make_context(frames=frames)
    html = render_html(ctx)
    assert "<script>" not in html
    assert "&lt;script&gt;" in charts.build_charts(ctx)["slippage_distribution"]
