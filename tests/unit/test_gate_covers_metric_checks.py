"""Every input check of the metric stage is a gate expectation first (DESIGN 5).

This test enumerates, from the source, every `raise InputError(<dataset>, ...)` in the metric
modules and maps each to the bad-input case that proves the gate stops or quarantines that
violation before the load (tests/integration/test_gate_defence.py: CRITICAL and WARNINGS cases;
tests/integration/test_bad_inputs.py: its case ids), or names why it cannot be reached from a
day's data (a parameter of the function, or a frame the metric stage derives itself). A new
input check in a metric module without a case fails here; so does a case name that does not exist.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
METRICS = PROJECT / "include" / "venue_risk" / "metrics"
DEFENCE = PROJECT / "tests" / "integration" / "test_gate_defence.py"
BAD_INPUTS = PROJECT / "tests" / "integration" / "test_bad_inputs.py"
NOT_DATA = "not reachable from a day's data"

#: (module.function, dataset argument, start of the message) -> covering case.
COVERED: dict[tuple[str, str, str], str] = {
    ("api_scoping.key_checklist", "api_keys", "key_id"): "CRITICAL:duplicate-api-key-id",
    ("cascade.graph_from_parts", "positions_eod", "positions in symbol"): "CRITICAL:mark-index-missing-for-a-symbol",
    ("cascade.graph_from_parts", "risk_tiers", "no tiers for cross"): "CRITICAL:instrument-without-risk-tiers",
    ("cascade.graph_from_parts", "book_depth", "symbol"): "CRITICAL:book-depth-one-side-missing",
    ("cascade.__init__", "positions_eod", "cross account"): "WARNING:null-wallet-of-a-cross-account",
    ("cross_margin.stress_cross_accounts", "accounts_eod", "account"): "CRITICAL:cross-accounts-without-wallets",
    ("cross_margin.stress_cross_accounts", "mark_index", "no mark for"): "CRITICAL:mark-index-missing-for-a-symbol",
    ("cross_margin.stress_cross_accounts", "risk_tiers", "no tiers for"): "CRITICAL:instrument-without-risk-tiers",
    ("crowding.annualized_realized_vol", "mark_index", "mark_price"): "CRITICAL:infinite-mark-prices",
    ("crowding.funding_vol_daily", "instruments", "no positive funding_interval_hours"): "CRITICAL:zero-funding-interval",
    ("drift.fill_quality_by_vol_bucket", "trades", "taker_side"): "WARNING:null-taker-side",
    ("forced_cost.forced_costs", "instruments", "no instrument row"): "CRITICAL:symbol-differing-only-in-case",
    ("forced_cost.forced_costs", "risk_tiers", "no tiers for"): "CRITICAL:instrument-without-risk-tiers",
    ("forced_cost._pool_expr", "insurance_fund", "cannot attribute"): "CRITICAL:insurance-pools-that-match-no-symbol",
    ("forced_cost._pool_expr", "liquidations", "symbol(s)"): NOT_DATA + " (a pools mapping parameter the metric stage does not pass)",
    ("forced_cost.margin_sensitivity", "risk_tiers", "no tiers for"): "CRITICAL:instrument-without-risk-tiers",
    ("index_integrity._day_of", "mark_index", "holds"): "WARNING:next-day-rows-in-mark-index",
    ("index_integrity._baskets", "index_components", "row(s) with an empty"): "CRITICAL:null-index-source",
    ("index_integrity._baskets", "instruments", "no row for symbol"): "CRITICAL:symbol-differing-only-in-case",
    ("index_integrity._baskets", "instruments", "symbol"): "CRITICAL:instrument-with-too-few-index-sources",
    ("index_integrity._baskets", "index_components", "symbol"): "WARNING:negative-source-weight",
    ("index_integrity._isolated_book", "risk_tiers", "no tiers for"): "CRITICAL:instrument-without-risk-tiers",
    ("liquidation_bands._marks_dict", "mark_index", "more than one"): "CRITICAL:duplicate-mark-index-row",
    ("liquidation_bands._marks_dict", "mark_index", "symbol"): "CRITICAL:infinite-mark-prices",
    ("liquidation_bands.position_bands", "positions_eod", "account"): "WARNING:unknown-position-margin-mode",
    ("liquidation_bands.position_bands", "accounts_eod", "cross account"): "WARNING:null-wallet-of-a-cross-account",
    ("liquidation_bands.position_bands", "ds", "no"): "CRITICAL:mark-index-missing-for-a-symbol",
    ("liquidation_bands.liquidations_at_risk", "positions_eod", "bands of"): "WARNING:position-dated-the-day-before",
    ("liquidation_bands.liquidations_at_risk", "mark_index", "no mark for"): "CRITICAL:mark-index-missing-for-a-symbol",
    ("order_flow._check_trades", "trades", "trade_id"): "CRITICAL:duplicate-key-across-two-files",
    ("order_flow._check_trades", "trades", "null value(s)"): "WARNING:null-symbol",
    ("order_flow._start_book", "positions_eod", "account"): "CRITICAL:duplicate-position-row",
    ("order_flow._start_book", "positions_eod", "null account"): "WARNING:null-position-size",
    ("order_flow.end_of_day_positions", "trades", "fills span"): "BAD_INPUTS:ts-outside-day",
    ("slippage._check_inputs", "liquidations", "liquidation_id"): "CRITICAL:duplicate-liquidation-id",
    ("slippage._check_inputs", "trades", "fills carry"): "WARNING:fill-of-an-unknown-liquidation",
    ("slippage._check_inputs", "trades", "fills of liquidation_id"): "WARNING:fill-symbol-differs-from-its-liquidation",
}
#: Messages that share a key above are told apart by a second case (both must exist).
ALSO: dict[tuple[str, str, str], list[str]] = {
    ("order_flow._check_trades", "trades", "trade_id"): ["WARNING:null-taker-side"],
    ("slippage._check_inputs", "liquidations", "liquidation_id"): ["WARNING:unknown-liquidation-side",
                                                                     "WARNING:filled-qty-ten-times-its-fills"],
    ("index_integrity._baskets", "instruments", "symbol"): ["CRITICAL:instrument-row-null-funding-cap"],
    ("liquidation_bands._marks_dict", "mark_index", "symbol"): ["CRITICAL:instrument-row-null-funding-cap"],
}
#: First arguments that are not canonical datasets: checks of parameters or derived frames.
NOT_INPUT = {"limits", "parameters", "crowding", "drift", "vols", "corr", "violations", "dataset"}


def _sites() -> set[tuple[str, str, str]]:
    found = set()
    for path in sorted(METRICS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                        and getattr(node.exc.func, "id", "") == "InputError"):
                    first = node.exc.args[0]
                    dataset = first.value if isinstance(first, ast.Constant) else ast.unparse(first)
                    if dataset in NOT_INPUT:
                        continue
                    message = node.exc.args[1]
                    text = (message.value if isinstance(message, ast.Constant) else
                            "".join(v.value for v in message.values if isinstance(v, ast.Constant))
                            if isinstance(message, ast.JoinedStr) else ast.unparse(message))
                    found.add((f"{path.stem}.{fn.name}", dataset, text.strip()))
    return found


def _key(site: tuple[str, str, str]) -> tuple[str, str, str] | None:
    where, dataset, text = site
    matches = [k for k in COVERED if k[0] == where and k[1] == dataset and text.startswith(k[2])]
    return max(matches, key=lambda k: len(k[2])) if matches else None


def _load(path: Path):
    import sys

    sys.path.insert(0, str(path.parent))  # it imports its sibling test_bad_inputs
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))


def test_every_metric_input_check_is_caught_by_the_gate_first():
    sites = _sites()
    assert len(sites) >= 30  # the enumeration itself works
    unmapped = sorted(s for s in sites if _key(s) is None)
    assert not unmapped, f"metric input checks with no gate case: {unmapped}"
    used = {_key(s) for s in sites}
    assert not set(COVERED) - used, f"stale entries: {sorted(set(COVERED) - used)}"


def test_every_named_case_exists():
    defence = _load(DEFENCE)
    bad_ids = BAD_INPUTS.read_text()
    names = {"CRITICAL": set(defence.CRITICAL),
             "WARNING": {n for group in defence.WARNINGS.values() for n in group}}
    for case in [c for c in COVERED.values()] + [c for cs in ALSO.values() for c in cs]:
        if case.startswith(NOT_DATA):
            continue
        kind, _, name = case.partition(":")
        if kind == "BAD_INPUTS":
            assert f'"{name}"' in bad_ids, case
        else:
            assert name in names[kind], case
