"""Page one's ranking of what changed since yesterday, the family grouping and the section
verdicts, on hand-built figures whose order can be worked out by hand."""

from __future__ import annotations

import base64
import re

from venue_risk.report.charts import sparkline
from venue_risk.report.page_one import (
    FIGURE_GROUPS,
    SECTIONS,
    WHY_IT_MATTERS,
    changes_since_yesterday,
    family_verdict,
    group_figures,
    section_verdicts,
)


def fig(name, status, value=1.0, baseline=1.0, display=None, threshold="red if > 2"):
    return {"figure": name, "label": name.replace("_", " "), "status": status, "value": value,
            "baseline": baseline, "display": display or f"{value:g}", "baseline_display": f"{baseline:g}",
            "threshold": threshold}


FIGURES = [
    fig("volume_notional", "green"),
    fig("liquidation_notional", "amber", value=9.0, baseline=3.0),   # amber, 3x baseline, amber yesterday
    fig("slippage_p95_bps", "red", value=50.0, baseline=10.0),       # red, was amber: worse
    fig("order_flow_violations", "red", value=3.0, baseline=0.0),    # red, was red: unchanged
    fig("drifted_features", "amber", value=1.0, baseline=0.0),       # amber, new (not rated yesterday)
    fig("insurance_fund_net", "green", value=5.0, baseline=4.0),     # green, was red: eased
    fig("trade_count", "insufficient_data"),                         # not rated: never listed
    fig("api_keys_failing", "not_covered"),
]
YESTERDAY = {
    "liquidation_notional": {"status": "amber", "display": "8"},
    "slippage_p95_bps": {"status": "amber", "display": "30"},
    "order_flow_violations": {"status": "red", "display": "2"},
    "drifted_features": {"status": "insufficient_data", "display": "0"},
    "insurance_fund_net": {"status": "red", "display": "-900"},
    "volume_notional": {"status": "green", "display": "1"},
}


def test_changes_ranked_by_severity_then_change_then_distance():
    items = changes_since_yesterday(FIGURES, YESTERDAY)
    assert [(i["figure"], i["change"]) for i in items] == [
        ("slippage_p95_bps", "worse"),           # red, worse than yesterday
        ("order_flow_violations", "unchanged"),  # red, as yesterday
        ("drifted_features", "new"),             # amber, new today (|1/0| ranks as 1)
        ("liquidation_notional", "unchanged"),   # amber, as yesterday, 3x its baseline
        ("insurance_fund_net", "eased"),         # green today, red yesterday
    ]
    worst = items[0]
    assert worst["sentence"] == "slippage p95 bps 50 (baseline 10), RED: red if > 2."
    assert worst["why"] == WHY_IT_MATTERS["slippage_p95_bps"]
    assert worst["yesterday"] == "yesterday 30, AMBER"
    assert items[2]["yesterday"] == "not rated yesterday"
    assert items[-1]["why"] is None  # eased to green: listed, with no alarm
    assert items[-1]["sentence"] == "insurance fund net 5 (baseline 4), back to GREEN."
    # among equal severity and change, the figure further from its baseline comes first
    a = fig("liquidation_count", "amber", value=2.0, baseline=1.0)
    b = fig("adl_events", "amber", value=10.0, baseline=1.0)
    assert [i["figure"] for i in changes_since_yesterday([a, b], {})] == ["adl_events", "liquidation_count"]


def test_without_a_report_yesterday_items_have_no_comparison():
    items = changes_since_yesterday(FIGURES, None)
    assert {i["change"] for i in items} == {None} and {i["yesterday"] for i in items} == {None}
    assert [i["figure"] for i in items] == ["slippage_p95_bps", "order_flow_violations",
                                           "liquidation_notional", "drifted_features"]
    assert changes_since_yesterday([fig("volume_notional", "green")], None) == []


def test_family_verdict_names_the_figure_that_set_it():
    v = family_verdict("Liquidations", [fig("liquidation_count", "green"),
                                        fig("slippage_p95_bps", "red", value=50.0, display="50.0 bps"),
                                        fig("max_buffer_share", "amber")])
    assert v == {"status": "red", "sentence": "Liquidations: RED, slippage p95 bps at 50.0 bps (red if > 2); "
                                              "1 more figure(s) out of band."}
    assert family_verdict("Drift", [fig("drifted_features", "green")]) == {
        "status": "green", "sentence": "Drift: GREEN, all 1 rated figure(s) within their thresholds."}
    v = family_verdict("API keys", [fig("api_keys_failing", "not_covered")])
    assert v == {"status": "not_covered", "sentence": "API keys: not rated today (not covered)."}
    v = family_verdict("Mixed", [fig("a", "not_covered"), fig("b", "skipped")])
    assert v["status"] == "insufficient_data" and "not covered, skipped" in v["sentence"]


def test_groups_follow_the_family_order_and_keep_every_figure():
    groups = group_figures(FIGURES + [fig("something_new", "green")])
    keys = [g["key"] for g in groups]
    order = [k for k, _, _ in FIGURE_GROUPS] + ["other"]
    assert keys == [k for k in order if k in keys]
    placed = [f["figure"] for g in groups for f in g["figures"]]
    assert sorted(placed) == sorted(f["figure"] for f in FIGURES + [fig("something_new", "green")])
    assert groups[-1]["key"] == "other" and groups[-1]["figures"][0]["figure"] == "something_new"
    liq = next(g for g in groups if g["key"] == "liquidations")
    assert liq["status"] == "red"  # slippage p95 is red


def test_section_verdicts_cover_every_section():
    verdicts = section_verdicts(FIGURES)
    assert list(verdicts) == [a for a, _, _ in SECTIONS]
    assert verdicts["liquidations"]["status"] == "red"
    assert verdicts["order-flow"]["status"] == "red"
    assert verdicts["api-keys"]["status"] == "not_covered"
    assert verdicts["methodology"]["status"] is None


def test_sparkline_draws_the_finite_days_and_today_in_its_status_colour():
    svg = sparkline([1.0, None, 3.0, 2.0, 5.0], "red", width=100, height=18)
    points = re.search(r'points="([^"]+)"', svg).group(1).split()
    assert len(points) == 4  # the missing day is skipped, its x slot kept
    xs = [float(p.split(",")[0]) for p in points]
    ys = [float(p.split(",")[1]) for p in points]
    assert xs == [2.0, 50.0, 74.0, 98.0]
    assert ys[0] == 16.0 and ys[-1] == 2.0  # min at the bottom, max (today) at the top
    assert 'fill="#d55e00"' in svg  # today's dot: red
    assert sparkline([None, 4.0], "green") == "" and sparkline([], None) == ""
    flat = sparkline([2.0, 2.0, 2.0], "green")
    assert {p.split(",")[1] for p in re.search(r'points="([^"]+)"', flat).group(1).split()} == {"9.0"}
    base64.b64encode(svg.encode())  # (embedded as a data URI in the report)


def test_per_path_figures_say_why_they_matter():
    from venue_risk.report.page_one import why_it_matters

    assert "incremental path" in why_it_matters("liquidation_notional_incremental")
    assert "auction path" in why_it_matters("liquidation_count_auction")
    assert why_it_matters("slippage_p95_bps") == WHY_IT_MATTERS["slippage_p95_bps"]
    assert why_it_matters("no_such_figure") is None
