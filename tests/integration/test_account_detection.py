"""Account-side detection scored against the simulator's ground truth over a simulated month
with account incidents at seeded random times and symbols (DESIGN 4.6-4.10, issue 4):
every order-flow violation is found with its order id; every injected cancel burst, thin-book
cluster and leverage spike is found as an early-warning incident on its symbol(s) with a window
overlapping the truth, with at most one false incident per symbol and week; every over-scoped key
and automation key without a kill switch is listed and no correctly scoped key is; and the small
hedge of a planted cross-margin portfolio is named as the trigger at correlation one."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from venue_risk.metric_jobs import ANOMALY_BASELINE_DAYS
from venue_risk.metrics import anomalies, api_scoping, cross_margin, order_flow
from venue_risk.simulate import ACCOUNT_KINDS, random_plan, read_truth, simulate
from venue_risk.sources import FilesSource

pytestmark = pytest.mark.integration
START, DAYS = dt.date(2026, 11, 1), 28
ORDER_FLOW_KINDS = {"reduce_only_grew_position": ("reduce_only_grew", "reduce_only_flipped"),
                    "post_only_took_liquidity": ("post_only_took_liquidity",),
                    "fill_after_cancel": ("fill_after_cancel",)}
ANOMALY_KINDS = ("cancel_burst", "thin_book_cluster", "leverage_spike")


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("account-month")
    plan = random_plan("tiny", START, DAYS, seed=13, kinds=ACCOUNT_KINDS)
    assert {i.kind for i in plan} == set(ACCOUNT_KINDS)
    simulate("tiny", START, DAYS, out, incidents=plan)
    src = FilesSource(out)
    days = [START + dt.timedelta(days=k) for k in range(DAYS)]
    results: dict[dt.date, dict] = {}
    assert not read_truth(out, START)  # random_plan keeps the first week clean
    features = {d: anomalies.minute_features(*(src.read(n, d) for n in (
        "order_events", "leverage_changes", "book_depth", "mark_index", "liquidations", "trades")))
        for d in days}
    for i, day in enumerate(days[1:], start=1):
        read = lambda name, d=day: src.read(name, d)  # noqa: E731
        # the metric stage's baseline: the trailing days' minute features (incident days included)
        baseline = pl.concat([features[d] for d in days[max(0, i - ANOMALY_BASELINE_DAYS):i]])
        fills = order_flow.rebuild_positions(src.read("positions_eod", days[i - 1]), read("trades"))
        vols, corr = cross_margin.return_stats(read("mark_index"))
        results[day] = {
            "violations": order_flow.violations(read("order_events"), read("trades"), fills),
            "keys": api_scoping.key_checklist(read("api_keys"), read("api_requests"), day),
            "stress": cross_margin.stress_cross_accounts(read("positions_eod"), read("accounts_eod"),
                                                         read("mark_index"), read("risk_tiers"), vols, corr),
            "incidents": anomalies.incidents(anomalies.robust_z(features[day], baseline)),
            "truth": read_truth(out, day),
        }
    return {"days": days, "results": results, "plan": plan,
            "symbols": src.read("instruments", START)["symbol"].to_list()}


def _planned(month: dict, kinds) -> int:
    return sum(1 for i in month["plan"] if i.kind in kinds)


def test_every_order_flow_violation_found_with_its_order_id(month):
    injected, found_ids = 0, set()
    for day, r in month["results"].items():
        truth = [t for t in r["truth"] if t["kind"] in ORDER_FLOW_KINDS]
        for t in truth:
            injected += 1
            order_id = t["details"]["order_id"]
            hits = r["violations"].filter((pl.col("order_id") == order_id)
                                          & pl.col("kind").is_in(ORDER_FLOW_KINDS[t["kind"]]))
            assert hits.height >= 1, f"{day} {t['kind']} order {order_id} not found"
            if t["kind"] == "reduce_only_grew_position" and t["details"].get("partial"):
                assert hits["in_partial_fill"].any(), f"{day} order {order_id}: not marked inside a partial fill"
        found_ids |= set(r["violations"]["order_id"].to_list())
        truth_ids = {t["details"]["order_id"] for t in truth}
        assert set(r["violations"]["order_id"].to_list()) <= truth_ids, f"{day}: violations on clean orders"
    assert injected == _planned(month, ORDER_FLOW_KINDS) == 6


def test_over_scoped_and_automation_keys_listed_and_clean_keys_not(month):
    listed = 0
    for day, r in month["results"].items():
        keys = r["keys"]
        over = {t["details"]["key_id"] for t in r["truth"] if t["kind"] == "over_scoped_key"}
        auto = {t["details"]["key_id"] for t in r["truth"] if t["kind"] == "automation_key_without_kill_switch"}
        scope_flagged = set(keys.filter(pl.col("trade_and_withdraw") | pl.col("trading_without_allowlist"))["key_id"].to_list())
        kill_flagged = set(keys.filter(pl.col("automation_without_kill_switch"))["key_id"].to_list())
        assert scope_flagged == over, f"{day}: over-scoped listed {scope_flagged}, injected {over}"
        assert kill_flagged == auto, f"{day}: no kill switch listed {kill_flagged}, injected {auto}"
        # the report lists every key failing any check: exactly the injected ones
        failing = set(keys.filter(~pl.col("ok"))["key_id"].to_list())
        assert failing == over | auto, f"{day}: keys failing a check {failing}, injected {over | auto}"
        listed += len(over) + len(auto)
    assert listed == _planned(month, ("over_scoped_key", "automation_key_without_kill_switch")) == 4


def test_small_hedge_named_as_trigger_when_correlations_jump_to_one(month):
    planted = 0
    for day, r in month["results"].items():
        for t in (t for t in r["truth"] if t["kind"] == "cross_margin_small_hedge_trigger"):
            planted += 1
            rows = r["stress"].filter((pl.col("account") == t["details"]["account"]) & (pl.col("k_sigma") == 3.0))
            empirical = rows.filter(pl.col("scenario") == "empirical")
            corr_one = rows.filter(pl.col("scenario").is_in(["corr_one_up", "corr_one_down"]) & pl.col("breach"))
            assert empirical.height == 1 and not empirical["breach"][0], f"{day}: breaches under empirical corr"
            assert corr_one.height >= 1, f"{day}: no breach with correlations at one"
            assert set(corr_one["trigger_symbol"].to_list()) == {t["details"]["hedge_symbol"]}
    assert planted == _planned(month, ("cross_margin_small_hedge_trigger",)) == 2


def _overlapping(incidents: pl.DataFrame, symbol: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    return incidents.filter(pl.col("symbols").list.contains(symbol) & (pl.col("start") < end)
                            & (pl.col("end") > start))


def test_every_injected_anomaly_found_on_its_symbols_and_window(month):
    found = {k: 0 for k in ANOMALY_KINDS}
    for day, r in month["results"].items():
        for t in (t for t in r["truth"] if t["kind"] in ANOMALY_KINDS):
            start, end = dt.datetime.fromisoformat(t["start"]), dt.datetime.fromisoformat(t["end"])
            for sym in t["details"].get("symbols") or [t["symbol"]]:
                hits = _overlapping(r["incidents"], sym, start, end)
                assert hits.height >= 1, (f"{day} {t['kind']} on {sym} {start:%H:%M}-{end:%H:%M} not found; "
                                          f"incidents: {r['incidents'].to_dicts()}")
                # and placed on it: starts and ends within 10 minutes of the truth window
                slack = dt.timedelta(minutes=10)
                tight = hits.filter((pl.col("start") >= start - slack) & (pl.col("end") <= end + slack))
                assert tight.height >= 1, f"{day} {t['kind']} on {sym}: incident windows {hits.select('start', 'end').rows()}"
            found[t["kind"]] += 1
    assert found == {k: _planned(month, (k,)) for k in ANOMALY_KINDS} == {k: 2 for k in ANOMALY_KINDS}


def test_at_most_one_false_incident_per_symbol_week(month):
    false: dict[tuple[str, int], list] = {}
    for day, r in month["results"].items():
        truth = [t for t in r["truth"] if t["kind"] in ANOMALY_KINDS]
        for inc in r["incidents"].to_dicts():
            true = any(set(inc["symbols"]) & set(t["details"].get("symbols") or [t["symbol"]])
                       and inc["start"] < dt.datetime.fromisoformat(t["end"])
                       and inc["end"] > dt.datetime.fromisoformat(t["start"]) for t in truth)
            if not true:
                week = (day - START).days // 7
                for sym in inc["symbols"]:
                    false.setdefault((sym, week), []).append((inc["start"], inc["features"]))
    over = {k: v for k, v in false.items() if len(v) > 1}
    assert not over, f"more than one false incident per symbol-week: {over}"
