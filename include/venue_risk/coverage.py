"""Coverage: what the source can see, and what every figure may therefore say (DESIGN 2).

One place that the gate, the metric stage and the report all ask:

- which datasets a source carries (`carried_datasets`): the simulated venue and a `files` root
  without a manifest carry all 16; a `files` root with `_coverage.json` (written by the
  importers) carries the datasets and days it names; the postgres source those its mapping names;
- how much of the day each carried dataset covers (`measure`): `complete`, `partial` (with the
  covered window) or `absent` (not carried), with rows, first and last timestamp and the
  largest gap;
- the status of each figure (`figure_status`): a figure needs named datasets (`FIGURE_NEEDS`);
  with one absent, or with a column it needs declared missing by the source, it is
  `not_covered` (never a green zero: "no liquidations" and "this source cannot see liquidations"
  are different statements); below its minimum sample (`MIN_SAMPLES`) it is
  `insufficient_data` with n; a check that could not run is `skipped` with its reason; else
  green / amber / red by its rule. On a partial day the figure is computed on the window, and
  rules that compare it with full-day baselines are off.

The overall status is the worst of green / amber / red over the covered figures; a report on
which every account-side dataset is absent is a market-only report (`report_scope`).

Known limits: Coverage is measured per dataset over all its symbols: a dataset carried for some
symbols only looks complete here, and a symbol missing from it is caught by the gate's per-
instrument rules (a mark series, a two-sided book, enough index sources) rather than classed
partial. An event dataset (trades, orders, requests) without a declared window counts as
covering the day when its rows reach within EVENT_EDGE_S of both ends; a quiet hour inside the
day is reported as the largest gap, not as partial coverage.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

FIGURE_STATUSES = ("green", "amber", "red", "not_covered", "insufficient_data", "skipped")
RAG = ("green", "amber", "red")

#: Datasets a venue's market data alone carries (public feeds); the rest are the account side.
MARKET_DATASETS = ("instruments", "risk_tiers", "trades", "mark_index", "index_components",
                   "funding", "market_metrics", "book_depth")
ACCOUNT_DATASETS = ("order_events", "liquidations", "positions_eod", "accounts_eod",
                    "leverage_changes", "api_keys", "api_requests", "insurance_fund")

#: Expected spacing of rows of the cadence datasets, seconds: a window counts as reaching the
#: start (end) of the day when its first (last) row is within CADENCE_TOLERANCE x cadence of it
#: (at least 60 s).
CADENCE_S: dict[str, float] = {"mark_index": 1, "index_components": 10, "book_depth": 60,
                               "insurance_fund": 60, "market_metrics": 300, "funding": 8 * 3600}
CADENCE_TOLERANCE = 2.0
#: Event datasets (trades, orders, requests): without a declared window, the rows are taken to
#: cover the day when they reach within this many seconds of both ends; liquidations and
#: leverage changes are rare, so their window is the day unless declared.
EVENT_EDGE_S = 3600.0
RARE_EVENTS = ("liquidations", "leverage_changes")

#: Columns of each dataset that only an account-side source fills: a source may declare them
#: missing (the importers of public formats do), then they may be null and figures needing them
#: are not covered.
ACCOUNT_COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": ("taker_order_id", "maker_order_id", "taker_account", "maker_account",
               "taker_fee", "maker_fee"),
}

#: Minimum samples behind the statistical figures: below it a figure is insufficient_data.
MIN_SAMPLES: dict[str, int] = {
    "liquidations_for_percentile": 20,  # liquidations with fills behind a p95 slippage
    "returns_for_vol": 60,  # 1-minute returns behind a realized volatility (one hour)
    "seconds_for_lag": 300,  # seconds of marks and trades behind a mark-lag estimate per bucket
    "seconds_for_basis": 300,  # seconds behind a mark-basis p99
    "baseline_days": 3,  # earlier days behind a ratio-to-baseline rule
}

#: The datasets (and, as "dataset.column", the columns) each headline figure needs.
_LIQ = ("liquidations",)
_INDEX = ("index_components", "mark_index", "instruments")
_ACCT_FILLS = ("trades.taker_account", "trades.maker_account")
FIGURE_NEEDS: dict[str, tuple[str, ...]] = {
    "volume_notional": ("trades",),
    "trade_count": ("trades",),
    "open_interest_value_close": ("market_metrics",),
    "liquidation_count": _LIQ,
    "liquidation_notional": _LIQ,
    "insurance_fund_close": ("insurance_fund",),
    "insurance_fund_net": ("insurance_fund",),
    "insurance_fund_open": ("insurance_fund",),
    "adl_events": _LIQ,
    "slippage_p95_bps": ("liquidations", "trades"),
    "max_buffer_share": ("liquidations", "trades", "risk_tiers"),
    "crowded_symbols": ("funding", "mark_index", "market_metrics"),
    "crowded_vol_rising_symbols": ("funding", "mark_index", "market_metrics"),
    "index_max_gap_bps": _INDEX,
    "index_source_exclusions": _INDEX,
    "broken_source_cf_move_bps": _INDEX,
    "broken_source_published_move_bps": _INDEX,
    "single_source_worst_move_bps": _INDEX,
    "single_source_positions_crossed": (*_INDEX, "positions_eod", "risk_tiers"),
    "mark_basis_p99_bps": ("mark_index",),
    "drifted_features": ("trades", "order_events", "mark_index", "book_depth", "positions_eod"),
    "order_flow_violations": ("order_events", "trades", *_ACCT_FILLS, "trades.taker_order_id"),
    "position_rebuild_mismatches": ("positions_eod", "trades", *_ACCT_FILLS),
    "anomaly_incidents": ("order_events", "leverage_changes", "book_depth", "mark_index",
                          "liquidations", "trades"),
    "anomaly_incidents_high": ("order_events", "leverage_changes", "book_depth", "mark_index",
                               "liquidations", "trades"),
    "rules_model_disagreements": ("order_events", "leverage_changes", "book_depth", "mark_index",
                                  "liquidations", "trades"),
    "cross_breach_empirical_3s": ("positions_eod", "accounts_eod", "mark_index", "risk_tiers"),
    "cross_breach_corr_one_3s": ("positions_eod", "accounts_eod", "mark_index", "risk_tiers"),
    "liquidation_notional_within_5pct": ("positions_eod", "accounts_eod", "risk_tiers", "mark_index"),
    "cascade_amplification_10pct": ("positions_eod", "accounts_eod", "risk_tiers", "mark_index",
                                    "book_depth"),
    "api_keys_failing": ("api_keys", "api_requests"),
    "api_automation_without_kill_switch": ("api_keys",),
    "api_unattributed_requests": ("api_keys", "api_requests"),
    "data_quality_status": (),
    "data_quality_failed_checks": (),
}


def figure_needs(figure: str) -> tuple[str, ...]:
    """The datasets (and dataset.column) a figure needs; per-path liquidation figures need the
    liquidations."""
    if figure.startswith(("liquidation_count_", "liquidation_notional_")) and figure not in FIGURE_NEEDS:
        return _LIQ
    return FIGURE_NEEDS.get(figure, ())


#: The datasets each report section needs (a section whose datasets are absent says so instead
#: of showing tables of zeros).
SECTION_NEEDS: dict[str, tuple[str, ...]] = {
    "slippage": ("liquidations", "trades"),
    "forced_cost": ("liquidations", "trades", "risk_tiers"),
    "crowding": ("funding", "mark_index", "market_metrics"),
    "index": _INDEX,
    "drift": ("trades", "order_events", "mark_index", "book_depth"),
    "order_flow": ("order_events", "trades", *_ACCT_FILLS),
    "anomalies": ("order_events", "leverage_changes", "book_depth", "mark_index", "liquidations"),
    "cross_margin": ("positions_eod", "accounts_eod", "mark_index", "risk_tiers"),
    "bands": ("positions_eod", "accounts_eod", "risk_tiers", "mark_index", "book_depth"),
    "api": ("api_keys", "api_requests"),
}


@dataclass(frozen=True)
class Window:
    """A covered time window [start, end] (UTC)."""

    start: dt.datetime
    end: dt.datetime

    def label(self) -> str:
        end = "24:00:00" if self.end.time() == dt.time() and self.end > self.start else f"{self.end:%H:%M:%S}"
        return f"{self.start:%Y-%m-%d %H:%M:%S}-{end} UTC"


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    return start, start + dt.timedelta(days=1)


def _parse_ts(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    ts = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)


def manifest_day(manifest: dict | None, day: dt.date) -> dict[str, dict | None]:
    """{dataset: the manifest's entry for the day (None when the dataset is carried every day
    without a per-day entry)} for the datasets carried on `day`; all 16 without a manifest."""
    from venue_risk.schema import DATASETS

    if manifest is None:
        return {name: None for name in DATASETS}
    out: dict[str, dict | None] = {}
    for name, item in (manifest.get("datasets") or {}).items():
        dates = (item or {}).get("dates")
        if dates is None:
            out[name] = None
        elif day.isoformat() in dates:
            out[name] = dates[day.isoformat()] or {}
    return out


def measure(dataset: str, frame, day: dt.date, carried: bool,
            declared: dict | None = None) -> dict:
    """The coverage of one dataset on `day`: {state, rows, first_ts, last_ts, largest_gap_s,
    window_start, window_end, missing_columns, note}.

    absent: not carried. A declared window (the manifest's `from`/`to`) is the window; else, for
    cadence datasets (CADENCE_S) and frequent events, the window runs from the first to the last
    row, and reaches a day edge when within max(60 s, CADENCE_TOLERANCE x cadence) of it
    (EVENT_EDGE_S for frequent events); rare events and snapshots cover the day when carried.
    complete when the window spans the day, else partial."""
    import polars as pl

    from venue_risk.schema import DATASETS

    spec = DATASETS[dataset]
    declared = declared or {}
    out: dict = {"state": "absent", "rows": 0, "first_ts": None, "last_ts": None,
                 "largest_gap_s": None, "window_start": None, "window_end": None,
                 "missing_columns": list(declared.get("missing_columns") or []),
                 "derived_columns": list(declared.get("derived_columns") or []),
                 "note": declared.get("note")}
    if not carried:
        out["note"] = "not carried by the source"
        return out
    start, end = day_bounds(day)
    out["rows"] = int(frame.height)
    ts_col = spec.day_column if spec.day_column and isinstance(spec.schema[spec.day_column], pl.Datetime) else None
    if ts_col and frame.height:
        ts = frame[ts_col].drop_nulls().sort()
        inside = ts.filter((ts >= start) & (ts < end))
        if inside.len():
            out["first_ts"], out["last_ts"] = inside[0].isoformat(), inside[-1].isoformat()
            gaps = inside.diff().drop_nulls()
            if gaps.len():
                out["largest_gap_s"] = round(gaps.max().total_seconds(), 3)
    w_start, w_end = _parse_ts(declared.get("from")), _parse_ts(declared.get("to"))
    out["declared_window"] = w_start is not None or w_end is not None
    if w_start is None and w_end is None:
        if ts_col and dataset not in RARE_EVENTS and out["first_ts"]:
            edge = (max(60.0, CADENCE_TOLERANCE * CADENCE_S[dataset]) if dataset in CADENCE_S
                    else EVENT_EDGE_S)
            first, last = _parse_ts(out["first_ts"]), _parse_ts(out["last_ts"])
            w_start = start if (first - start).total_seconds() <= edge else first
            reach = CADENCE_S.get(dataset, 0) + edge  # the last row of a cadence opens its interval
            w_end = end if (end - last).total_seconds() <= reach else last
        elif ts_col and dataset not in RARE_EVENTS:
            out["note"] = "carried, no rows today"
    w_start, w_end = max(w_start or start, start), min(w_end or end, end)
    if w_end <= w_start:
        out["state"] = "partial"
        out["note"] = "declared window lies outside the day"
        out["window_start"] = out["window_end"] = None
        return out
    out["window_start"], out["window_end"] = w_start.isoformat(), w_end.isoformat()
    # a window within a second of both ends is the whole day (a capture ending 23:59:59.9)
    whole = (w_start - start).total_seconds() <= 1 and (end - w_end).total_seconds() <= 1
    out["state"] = "complete" if whole else "partial"
    return out


def _window_of(entry: dict) -> Window | None:
    if not entry.get("window_start"):
        return None
    return Window(_parse_ts(entry["window_start"]), _parse_ts(entry["window_end"]))


def needs_state(needs: tuple[str, ...], coverage: dict[str, dict]) -> tuple[str, list[str], Window | None]:
    """(state, reasons, window) of a set of needs: `absent` with the missing datasets/columns
    named, `partial` with the intersection of the partial windows, or `complete`."""
    missing: list[str] = []
    windows: list[Window] = []
    for need in needs:
        dataset, _, column = need.partition(".")
        entry = coverage.get(dataset)
        if entry is None or entry["state"] == "absent":
            if dataset not in missing:
                missing.append(dataset)
        elif column and column in (entry.get("missing_columns") or []):
            missing.append(need)
        elif entry["state"] == "partial":
            w = _window_of(entry)
            if w is not None:
                windows.append(w)
    if missing:
        return "absent", missing, None
    if windows:
        return "partial", [], Window(max(w.start for w in windows), min(w.end for w in windows))
    return "complete", [], None


def not_covered_text(missing: list[str]) -> str:
    """`not covered: the source does not carry liquidations, insurance_fund`."""
    return "not covered: the source does not carry " + ", ".join(
        m.replace(".", " column ") for m in missing)


def report_scope(coverage: dict[str, dict]) -> dict:
    """The report's scope for page one: {kind: full | market_only | partial_sources, carried,
    absent, partial: {dataset: window label}, window (label of the market window or None),
    sentence}."""
    carried = [d for d, e in coverage.items() if e["state"] != "absent"]
    absent = [d for d, e in coverage.items() if e["state"] == "absent"]
    partial = {d: _window_of(e).label() for d, e in coverage.items()
               if e["state"] == "partial" and _window_of(e) is not None}
    market_state, _, window = needs_state(("trades", "mark_index"), coverage)
    if not absent:
        kind = "full"
    elif all(d in absent for d in ACCOUNT_DATASETS):
        kind = "market_only"
    else:
        kind = "partial_sources"
    parts = []
    if kind == "market_only":
        parts.append("Market-only report: the source carries public market data ("
                     + ", ".join(d for d in carried) + "); account-side sections (liquidations, "
                     "order flow, positions, cross margin, API keys, insurance fund) are not covered.")
    elif kind == "partial_sources":
        parts.append("Not covered by the source: " + ", ".join(absent) + ".")
    if window is not None:
        hours = (window.end - window.start).total_seconds() / 3600
        parts.append(f"Data window {window.label()} ({hours * 60:.0f} min of 24 h): "
                     "day totals are totals of the window, and comparisons with full-day "
                     "baselines are off." if hours < 1 else
                     f"Data window {window.label()} ({hours:.1f} h of 24 h): day totals are totals "
                     "of the window, and comparisons with full-day baselines are off.")
    elif market_state == "absent":
        parts.append("No market data (trades, mark_index) carried.")
    return {"kind": kind, "carried": carried, "absent": absent, "partial": partial,
            "window": window.label() if window else None, "sentence": " ".join(parts)}


def source_declares(source, day: dt.date) -> dict[str, dict | None]:
    """{dataset: declared entry or None} for the datasets `source` carries on `day`: a source
    with `declared(day)` (files: its manifest) says so itself; one with `carried()` (postgres:
    the datasets its mapping names) carries those; any other (simulated) carries all 16."""
    from venue_risk.schema import DATASETS

    if hasattr(source, "declared"):
        return source.declared(day)
    if hasattr(source, "carried"):
        carried = source.carried()
        return {name: None for name in DATASETS if name in carried}
    return {name: None for name in DATASETS}


#: Figures that test the venue's published index against its own rule and basket: they cannot
#: run when the source has no published index (an importer reconstructed index_price from the
#: few sources it was given).
PUBLISHED_INDEX_FIGURES = ("index_max_gap_bps", "broken_source_cf_move_bps",
                           "broken_source_published_move_bps", "single_source_worst_move_bps",
                           "single_source_positions_crossed")


def derived_index_skips(coverage: dict[str, dict] | None) -> dict[str, str]:
    """{figure: reason} for PUBLISHED_INDEX_FIGURES when mark_index.index_price is declared
    derived (not the venue's published value)."""
    entry = (coverage or {}).get("mark_index") or {}
    if "index_price" not in (entry.get("derived_columns") or []):
        return {}
    return {f: "no published index (index_price reconstructed by the importer)"
            for f in PUBLISHED_INDEX_FIGURES}
