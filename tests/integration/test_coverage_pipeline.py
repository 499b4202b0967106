"""Coverage through the whole pipeline on the simulated venue, where the truth is known:

- a `files` root that carries only the market datasets (a manifest, as the importers write):
  the day runs, the market figures equal those of the full source, every account-side figure
  is not_covered and the section says so instead of printing zeros;
- a full source's first day has no start-of-day positions: the position rebuild is `skipped`
  (never "equal"), and the next day it runs and is rated.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from pypdf import PdfReader

from venue_risk import pipeline
from venue_risk.coverage import ACCOUNT_COLUMNS, ACCOUNT_DATASETS, MARKET_DATASETS
from venue_risk.importers.layout import write_dataset
from venue_risk.settings import Settings

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory) -> Path:
    from venue_risk.simulate import simulate

    root = tmp_path_factory.mktemp("sim")
    simulate("tiny", D1, 2, root)
    return root


def _settings(mp: pytest.MonkeyPatch, home: Path, root: Path) -> Settings:
    for var in ("VENUE_RISK_DATA", "VENUE_RISK_LANDING", "VENUE_RISK_WAREHOUSE", "VENUE_RISK_REPORTS",
                "VENUE_RISK_OUTBOX", "VENUE_RISK_SIMULATED", "VENUE_RISK_VENUE_NAME"):
        mp.delenv(var, raising=False)
    mp.setenv("VENUE_RISK_HOME", str(home))
    mp.setenv("VENUE_RISK_SOURCE", "files")
    mp.setenv("VENUE_RISK_FILES_ROOT", str(root))
    mp.setenv("VENUE_RISK_START_DATE", D1.isoformat())
    return Settings.from_env()


def _run(home: Path, root: Path, day: dt.date) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        settings = _settings(mp, home, root)
        pipeline.run_day(day, settings)
    report = home / "reports" / day.isoformat()
    return {"summary": json.loads((report / "summary.json").read_text()),
            "pdf": report / f"venue-risk-{day.isoformat()}.pdf",
            "metrics": home / "data" / "metrics" / f"date={day.isoformat()}"}


@pytest.fixture(scope="module")
def full_runs(sim_root, tmp_path_factory) -> list[dict]:
    home = tmp_path_factory.mktemp("home-full")
    return [_run(home, sim_root, d) for d in (D1, D2)]


@pytest.fixture(scope="module")
def market_run(sim_root, tmp_path_factory) -> dict:
    """D1 from a root holding only the market datasets, written through the importers' layout
    (so the manifest declares them; trades without their account-side columns)."""
    root = tmp_path_factory.mktemp("market-only")
    for dataset in MARKET_DATASETS:
        frame = pl.read_parquet(sim_root / dataset / f"date={D1}" / "*.parquet")
        if dataset == "trades":
            frame = frame.drop(*ACCOUNT_COLUMNS["trades"], "liquidation_id")
        write_dataset(root, dataset, frame, written_by="test", inputs=["simulated tiny"],
                      days=[D1] if dataset in ("instruments", "risk_tiers") else None)
    return _run(tmp_path_factory.mktemp("home-market"), root, D1)


def test_market_only_day_runs_and_says_what_it_cannot_see(market_run, full_runs):
    s = market_run["summary"]
    assert s["scope"]["kind"] == "market_only" and s["scope"]["window"] is None  # a whole day
    assert {d for d, c in s["coverage"].items() if c["state"] == "absent"} == set(ACCOUNT_DATASETS)
    full = full_runs[0]["summary"]["figures"]
    for name, fig in s["figures"].items():
        if fig["status"] == "not_covered":
            assert fig["value"] is None
            assert full[name]["status"] != "not_covered"
    # the simulated day had liquidations: a market-only source must not report zero of them
    assert full["liquidation_count"]["value"] > 0
    assert s["figures"]["liquidation_count"]["status"] == "not_covered"
    # market figures are the same numbers as from the full source (liquidation fills excluded
    # from the market-only trades, so volume is compared on the index and mark figures)
    for name in ("index_max_gap_bps", "mark_basis_p99_bps", "index_source_exclusions",
                 "single_source_worst_move_bps", "crowded_symbols"):
        assert s["figures"][name]["value"] == pytest.approx(full[name]["value"], rel=1e-12, abs=1e-12), name
        assert s["figures"][name]["status"] == full[name]["status"], name
    text = " ".join("\n".join(p.extract_text() or "" for p in PdfReader(market_run["pdf"]).pages).split())
    assert "Market-only report" in text and "NOT COVERED. This source does not carry liquidations" in text
    assert "No liquidations on this day" not in text


def test_first_day_rebuild_is_skipped_then_rated(full_runs):
    first, second = full_runs[0]["summary"]["figures"], full_runs[1]["summary"]["figures"]
    assert first["position_rebuild_mismatches"]["status"] == "skipped"
    assert first["position_rebuild_mismatches"]["value"] is None
    assert "start-of-day positions" in first["position_rebuild_mismatches"]["threshold"]
    assert second["position_rebuild_mismatches"]["status"] in ("green", "amber", "red")
    text = " ".join("\n".join(p.extract_text() or "" for p in PdfReader(full_runs[0]["pdf"]).pages).split())
    assert "Position rebuild check skipped" in text
    assert "Rebuilt positions equal positions_eod" not in text
