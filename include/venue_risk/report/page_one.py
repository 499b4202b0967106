"""Page one of the daily report, for a committee that reads it in five minutes: what changed since
yesterday and why it matters, ranked by severity, and the headline figures grouped by family.

    changes_since_yesterday(figures, yesterday) -> ranked items, each with its sentence
    group_figures(figures) -> [{key, title, status, figures}] in FIGURE_GROUPS order
    family_verdict(title, figures) -> one sentence: the worst status and the figure that set it

`figures` are the context's headline figure dicts (figure, label, display, baseline_display,
value, baseline, status, threshold); `yesterday` is {figure: {status, display}} from the
previous day's summary.json, or None when there was no report the day before.
"""

from __future__ import annotations

#: Severity of a rated status; the ranking and the verdicts use it.
SEVERITY = {"green": 0, "amber": 1, "red": 2}

#: Headline figures grouped by family, in page order: (key, title, figures). A figure in no group
#: goes to a last group "Other figures".
FIGURE_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("activity", "Market activity", ("volume_notional", "trade_count", "open_interest_value_close")),
    ("liquidations", "Liquidations and forced execution",
     ("liquidation_count", "liquidation_notional", "slippage_p95_bps", "max_buffer_share", "adl_events",
      "liquidation_notional_within_5pct", "cascade_amplification_10pct")),
    ("insurance", "Insurance fund", ("insurance_fund_close", "insurance_fund_net")),
    ("market", "Index, mark, funding and drift",
     ("index_max_gap_bps", "index_source_exclusions", "broken_source_cf_move_bps",
      "broken_source_published_move_bps", "single_source_worst_move_bps", "single_source_positions_crossed",
      "mark_basis_p99_bps", "crowded_symbols", "crowded_vol_rising_symbols", "drifted_features")),
    ("accounts", "Order flow, anomalies, cross margin and API keys",
     ("order_flow_violations", "position_rebuild_mismatches", "anomaly_incidents", "anomaly_incidents_high",
      "rules_model_disagreements", "cross_breach_empirical_3s", "cross_breach_corr_one_3s",
      "api_keys_failing", "api_automation_without_kill_switch", "api_unattributed_requests")),
    ("quality", "Data quality", ("data_quality_status", "data_quality_failed_checks")),
)

#: Why a figure out of its band matters to the committee, one clause per figure.
WHY_IT_MATTERS: dict[str, str] = {
    "volume_notional": "volume sets how much depth liquidations can lean on",
    "trade_count": "a change in activity changes how fast the book refills after forced selling",
    "open_interest_value_close": "open interest is the exposure that can be forced out at once",
    "liquidation_count": "liquidations are forced execution the venue carries out for its traders",
    "liquidation_notional": "forced selling of this size consumes book depth and can start a cascade",
    "slippage_p95_bps": "slippage on liquidations is equity the liquidated accounts lose to the book",
    "max_buffer_share": "above 100 % a liquidation ended beyond bankruptcy and drew on the insurance fund",
    "adl_events": "auto-deleveraging closes profitable traders' positions: the fund could not cover a loss",
    "liquidation_notional_within_5pct": "this is what a 5 % move would force out of the book",
    "cascade_amplification_10pct": "amplification above 1 means forced selling deepens a shock",
    "insurance_fund_close": "the insurance fund is what stands between a bankrupt fill and ADL",
    "insurance_fund_net": "a draw on the fund means liquidations ended beyond bankruptcy",
    "index_max_gap_bps": "a published index off the venue's own rule moves every mark and margin call",
    "index_source_exclusions": "excluded sources are the index rule protecting marks from a bad feed",
    "broken_source_cf_move_bps": "this is how far a broken feed would have moved marks had the rule kept it",
    "broken_source_published_move_bps": "a broken feed moved the published index: margin state moved with it",
    "single_source_worst_move_bps": "one corrupted source could move the index this far",
    "single_source_positions_crossed": "positions one corrupted source could push into liquidation",
    "mark_basis_p99_bps": "a wide mark-index basis triggers liquidations the index does not justify",
    "crowded_symbols": "crowded positioning with unusual funding unwinds violently when volatility rises",
    "crowded_vol_rising_symbols": "crowding with rising volatility is where the next cascade starts",
    "drifted_features": "a drifted feature means today's market is not the one the baseline describes",
    "order_flow_violations": "a reduce-only or post-only order that broke its rule is a matching-engine fault",
    "position_rebuild_mismatches": "positions that do not rebuild from fills mean the position records are wrong",
    "anomaly_incidents": "correlated anomalies are early warnings of a stressed book",
    "anomaly_incidents_high": "high-severity incidents are the ones that preceded past cascades",
    "rules_model_disagreements": "where the model and the fixed limits disagree, one of them is miscalibrated",
    "cross_breach_empirical_3s": "cross accounts that a 3-sigma day would push below maintenance",
    "cross_breach_corr_one_3s": "cross accounts whose hedges fail when correlations jump to one",
    "api_keys_failing": "over-scoped or unprotected keys are how accounts get drained",
    "api_automation_without_kill_switch": "a bot without cancel-on-disconnect leaves orders behind when it dies",
    "api_unattributed_requests": "requests no key accounts for cannot be audited",
    "data_quality_status": "figures built on quarantined or failed data are weaker",
    "data_quality_failed_checks": "failed checks name the data the figures could not rely on",
}


def why_it_matters(figure: str) -> str | None:
    """WHY_IT_MATTERS of the figure; a per-path liquidation figure (liquidation_count_<path>,
    liquidation_notional_<path>) says what its path does to the book."""
    if figure in WHY_IT_MATTERS:
        return WHY_IT_MATTERS[figure]
    for kind in ("count", "notional"):
        prefix = f"liquidation_{kind}_"
        if figure.startswith(prefix):
            return (f"more forced execution through the {figure[len(prefix):]} path than usual: its "
                    "slippage and fills beyond bankruptcy are in the liquidations section")
    return None


def _word(status: str) -> str:
    return status.replace("_", " ").upper()


def _ratio(f: dict) -> float:
    """|value / baseline| (1 without a usable baseline): ties in severity rank by distance."""
    try:
        v, b = float(f["value"]), float(f["baseline"])
        return abs(v / b) if b else 1.0
    except (TypeError, ValueError, KeyError):
        return 1.0


def changes_since_yesterday(figures: list[dict], yesterday: dict[str, dict] | None) -> list[dict]:
    """The rated figures that need the committee's attention, most severe first: every red or
    amber figure, and every figure that was red or amber yesterday and is green today (eased).

    Each item: figure, label, status, change (new | worse | unchanged | eased; None without a
    report yesterday), sentence ("<label> <today> (baseline <b>), <STATUS>: <threshold>.", or
    ", back to GREEN." for an eased figure), why
    (WHY_IT_MATTERS, for red and amber) and yesterday ("yesterday <display>, <STATUS>", "not
    rated yesterday", or None). Ranked by today's severity, then worse-than-yesterday and new
    before unchanged before eased, then distance from the baseline (|value / baseline|)."""
    items = []
    for f in figures:
        status = f.get("status")
        if status not in SEVERITY:
            continue
        prev = (yesterday or {}).get(f["figure"]) or {}
        prev_status = prev.get("status") if prev.get("status") in SEVERITY else None
        if SEVERITY[status] == 0 and SEVERITY.get(prev_status, 0) == 0:
            continue
        if yesterday is None:
            change, before = None, None
        elif prev_status is None:
            change, before = "new", "not rated yesterday"
        else:
            change = ("worse" if SEVERITY[status] > SEVERITY[prev_status] else
                      "eased" if SEVERITY[status] < SEVERITY[prev_status] else "unchanged")
            before = f"yesterday {prev.get('display', 'n/a')}, {_word(prev_status)}"
        base = f.get("baseline_display")
        text = f"{f['label']} {f['display']}"
        if base and base != "n/a":
            text += f" (baseline {base})"
        if status == "green":
            text += ", back to GREEN."
        else:
            text += f", {_word(status)}" + (f": {f['threshold']}." if f.get("threshold") else ".")
        items.append({"figure": f["figure"], "label": f["label"], "status": status, "change": change,
                      "sentence": text, "why": why_it_matters(f["figure"]) if status != "green" else None,
                      "yesterday": before})
    order = {"worse": 0, "new": 0, None: 1, "unchanged": 1, "eased": 2}
    by_figure = {f["figure"]: f for f in figures}
    items.sort(key=lambda i: (-SEVERITY[i["status"]], order[i["change"]], -_ratio(by_figure[i["figure"]])))
    return items


def family_verdict(title: str, figures: list[dict]) -> dict:
    """One sentence for a family: the worst rated status and the figure that set it (with its
    threshold), or that every rated figure is green, or why none is rated. {status, sentence}."""
    rated = [f for f in figures if f.get("status") in SEVERITY]
    if not rated:
        states = sorted({f.get("status") for f in figures if f.get("status")})
        status = "not_covered" if states == ["not_covered"] else (states[0] if len(states) == 1 else "insufficient_data")
        reasons = ", ".join(_word(s).lower() for s in states) or "no figures"
        return {"status": status, "sentence": f"{title}: not rated today ({reasons})."}
    worst = max(rated, key=lambda f: (SEVERITY[f["status"]], _ratio(f)))
    if SEVERITY[worst["status"]] == 0:
        return {"status": "green", "sentence": f"{title}: GREEN, all {len(rated)} rated figure(s) "
                                               "within their thresholds."}
    others = sum(1 for f in rated if SEVERITY[f["status"]] > 0) - 1
    sentence = (f"{title}: {_word(worst['status'])}, {worst['label']} at {worst['display']}"
                + (f" ({worst['threshold']})" if worst.get("threshold") else "")
                + (f"; {others} more figure(s) out of band." if others > 0 else "."))
    return {"status": worst["status"], "sentence": sentence}


def group_figures(figures: list[dict]) -> list[dict]:
    """The figures in FIGURE_GROUPS order, each group with its verdict; empty groups left out."""
    by_name = {f["figure"]: f for f in figures}
    placed: set[str] = set()
    groups = []
    for key, title, names in FIGURE_GROUPS:
        members = [by_name[n] for n in names if n in by_name]
        placed |= {f["figure"] for f in members}
        if members:
            groups.append({"key": key, "title": title, "figures": members, **family_verdict(title, members)})
    rest = [f for f in figures if f["figure"] not in placed]
    if rest:
        groups.append({"key": "other", "title": "Other figures", "figures": rest,
                       **family_verdict("Other figures", rest)})
    return groups


#: The report's sections (template anchors) with their titles and the headline figures each
#: section's verdict rests on, in page order: the linked table of contents and the one-sentence
#: verdict that opens each section.
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("liquidations", "Liquidations and slippage by path",
     ("liquidation_count", "liquidation_notional", "slippage_p95_bps")
     + tuple(f"liquidation_{k}_{p}" for p in ("incremental", "auction", "market", "backstop", "adl")
             for k in ("count", "notional"))),
    ("forced-cost", "Forced-execution cost", ("max_buffer_share", "insurance_fund_close", "insurance_fund_net",
                                              "adl_events")),
    ("crowding", "Funding and volatility crowding", ("crowded_symbols", "crowded_vol_rising_symbols")),
    ("index-integrity", "Index and mark integrity",
     ("index_max_gap_bps", "index_source_exclusions", "broken_source_cf_move_bps",
      "broken_source_published_move_bps", "single_source_worst_move_bps", "single_source_positions_crossed",
      "mark_basis_p99_bps")),
    ("drift", "Drift and fill quality", ("drifted_features",)),
    ("order-flow", "Order-flow integrity", ("order_flow_violations", "position_rebuild_mismatches")),
    ("anomalies", "Early-warning anomalies", ("anomaly_incidents", "anomaly_incidents_high",
                                              "rules_model_disagreements")),
    ("cross-margin", "Cross-margin stress", ("cross_breach_empirical_3s", "cross_breach_corr_one_3s")),
    ("bands-cascades", "Liquidation bands and cascades", ("liquidation_notional_within_5pct",
                                                          "cascade_amplification_10pct")),
    ("api-keys", "API key hygiene", ("api_keys_failing", "api_automation_without_kill_switch",
                                     "api_unattributed_requests")),
    ("data-quality", "Data quality", ("data_quality_status", "data_quality_failed_checks")),
    ("methodology", "Methods", ()),
    ("run-metadata", "Run metadata", ()),
)


def section_verdicts(figures: list[dict]) -> dict[str, dict]:
    """{section anchor: {title, status, sentence}}: family_verdict over the section's figures
    (sections without figures, methods and run metadata, have no verdict: status None)."""
    by_name = {f["figure"]: f for f in figures}
    out = {}
    for anchor, title, names in SECTIONS:
        members = [by_name[n] for n in names if n in by_name]
        verdict = family_verdict(title, members) if names else {"status": None, "sentence": ""}
        out[anchor] = {"title": title, **verdict}
    return out
