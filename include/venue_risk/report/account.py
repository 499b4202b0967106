"""Report context of the account-side families (DESIGN 4.6 order-flow integrity, 4.7 early-warning
anomalies, 4.8 cross-margin stress, 4.9 liquidation bands and cascades, 4.10 API key hygiene):
selection, sorting and formatting of the metric tables as the metric modules wrote them (their own
column names; nothing is recomputed here), plus the summary-page sentences.

Accounts are shown through `pseudonymize` with the report's key. Every builder accepts empty or
missing frames and then returns empty lists (the template says why a section is empty).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import polars as pl

TOP_N = 8                   # rows per table of these sections (the long tables go out whole as CSV)
EXAMPLES_PER_KIND = 3       # violation examples: at least this many of each kind when present
TIMELINE_SYMBOLS = 14       # rows of the anomaly timeline
LAR_SYMBOLS = 8             # symbols drawn in the liquidations-at-risk chart
LAR_DISTANCES = (2, 5, 10, 20)  # % from mark, columns of the liquidations-at-risk table
SMALL_HEDGE_SHARE = 0.25    # a trigger at most this share of the account's gross notional reads
#                             as "a hedge that looks small"

# Names the metric modules use (read, not re-derived).
try:  # pragma: no cover - import guard only
    from venue_risk.metrics.api_scoping import CHECKS as API_CHECKS
    from venue_risk.metrics.cascade import DEFAULT_SHOCKS as CASCADE_SHOCKS
    from venue_risk.metrics.cross_margin import HORIZON_MIN, K_SIGMA, SCENARIOS
    from venue_risk.metrics.order_flow import KINDS
except Exception:  # pragma: no cover
    KINDS = ("reduce_only_grew", "reduce_only_flipped", "post_only_took_liquidity",
             "fill_after_cancel", "self_trade")
    SCENARIOS = ("empirical", "corr_one_up", "corr_one_down")
    K_SIGMA = (1.0, 2.0, 3.0)
    HORIZON_MIN = 60
    CASCADE_SHOCKS = (0.02, 0.05, 0.10, 0.20)
    API_CHECKS = ("trade_and_withdraw", "trading_without_allowlist", "unused_scopes",
                  "automation_without_kill_switch", "expired_but_active", "unused_but_active",
                  "error_burst")

KIND_LABELS = {
    "reduce_only_grew": "reduce-only grew position",
    "reduce_only_flipped": "reduce-only flipped position",
    "post_only_took_liquidity": "post-only took liquidity",
    "fill_after_cancel": "fill after cancel",
    "self_trade": "self-trade",
}
SCENARIO_LABELS = {
    "empirical": "empirical correlation",
    "corr_one_up": "correlations at one, up",
    "corr_one_down": "correlations at one, down",
}
SCENARIO_SHORT = {"empirical": "empirical", "corr_one_up": "corr 1 up", "corr_one_down": "corr 1 down"}
CHECK_LABELS = {
    "trade_and_withdraw": "trade and withdraw on one key",
    "trading_without_allowlist": "trade/withdraw without IP allowlist",
    "unused_scopes": "scopes unused in the window",
    "automation_without_kill_switch": "automation without kill switch",
    "expired_but_active": "expired but active",
    "unused_but_active": "unused but active",
    "error_burst": "burst of errors / rate limits",
    "any": "any check",
}
CASE_LABELS = {
    "incident_no_breach": "incident, no limit breached",
    "breach_no_incident": "limit breached, no incident",
}
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}


def _ctx():
    from venue_risk.report import context as c
    return c


def _ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _has(frame: Any, *cols: str) -> bool:
    return isinstance(frame, pl.DataFrame) and frame.height > 0 and all(c in frame.columns for c in cols)


def _present(frames: dict, name: str) -> bool:
    """The table was computed (possibly with zero rows) rather than missing altogether."""
    return isinstance(frames.get(name), pl.DataFrame) and len(frames[name].columns) > 0


def _hms(v: Any, seconds: bool = True) -> str:
    """'13:05:07' ('13:05') of an ISO timestamp or datetime; '' when missing."""
    if isinstance(v, dt.datetime):
        v = v.isoformat()
    if isinstance(v, str) and "T" in v:
        t = v.split("T", 1)[1]
        return t[:8] if seconds else t[:5]
    return ""


def _sod(v: Any) -> float | None:
    """Seconds since midnight UTC of an ISO timestamp (None when missing)."""
    if isinstance(v, str):
        try:
            v = dt.datetime.fromisoformat(v)
        except ValueError:
            return None
    if not isinstance(v, dt.datetime):
        return None
    if v.tzinfo is not None:
        v = v.astimezone(dt.timezone.utc)
    return v.hour * 3600 + v.minute * 60 + v.second + v.microsecond / 1e6


def _list(v: Any) -> list:
    return [x for x in v if x is not None] if isinstance(v, (list, tuple)) else []


def _join(v: Any, sep: str = ", ") -> str:
    return sep.join(str(x) for x in _list(v))


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


# -- 4.6 order-flow integrity -------------------------------------------------------------------

def order_flow_section(frames: dict, key: bytes | None) -> dict:
    c = _ctx()
    viol = c._frame(frames, "order_flow_violations")
    counts = c._frame(frames, "order_flow_counts")
    check = c._frame(frames, "position_rebuild_check")
    bands = c._frame(frames, "position_bands")

    # counts per symbol x kind (symbols with at least one violation), and totals per kind
    by_kind = {k: 0 for k in KINDS}
    matrix: list[dict] = []
    symbols_total = 0
    if _has(counts, "symbol", "kind", "count"):
        symbols_total = counts["symbol"].n_unique()
        per: dict[str, dict] = {}
        for r in counts.select("symbol", "kind", "count").iter_rows(named=True):
            n = int(r["count"] or 0)
            kind = str(r["kind"])
            by_kind[kind] = by_kind.get(kind, 0) + n
            if n:
                row = per.setdefault(str(r["symbol"]), {"symbol": str(r["symbol"]), "total": 0, "counts": {}})
                row["counts"][kind] = row["counts"].get(kind, 0) + n
                row["total"] += n
        matrix = sorted(per.values(), key=lambda r: (-r["total"], r["symbol"]))
    elif _has(viol, "kind"):  # counts table missing: the violations themselves, by kind
        for k, n in viol.group_by("kind").len().iter_rows():
            by_kind[str(k)] = int(n)
    kinds = list(KINDS) + sorted(k for k in by_kind if k not in KINDS)
    total = sum(by_kind.values()) if by_kind else 0
    if viol.height and not total:
        total = viol.height

    # example rows: a few of every kind first (so a rare kind is not crowded out), then by time
    examples: list[dict] = []
    partial = 0
    if _has(viol, "kind"):
        if "in_partial_fill" in viol.columns:
            partial = int(viol["in_partial_fill"].fill_null(False).sum())
        f = viol.sort([c_ for c_ in ("ts", "trade_id") if c_ in viol.columns] or ["kind"], nulls_last=True)
        f = f.with_row_index("_i")
        firsts = f.filter(pl.int_range(pl.len()).over("kind") < EXAMPLES_PER_KIND)
        picked = firsts.head(TOP_N)
        if picked.height < TOP_N:
            rest = f.join(picked.select("_i"), on="_i", how="anti").head(TOP_N - picked.height)
            picked = pl.concat([picked, rest], how="vertical_relaxed")
        examples = c._rows(picked.sort("_i"), ["ts", "symbol", "kind", "order_id", "trade_id", "account",
                                               "role", "in_partial_fill", "details"])
        for r in examples:
            r["time"] = _hms(r.get("ts"))
            r["kind_label"] = KIND_LABELS.get(str(r.get("kind")), str(r.get("kind")))
            r["account"] = c.pseudonymize(r.get("account"), key)

    mismatches = c._rows(check.sort(["account", "symbol"]).head(TOP_N)
                         if _has(check, "account", "symbol") else check.head(TOP_N),
                         ["account", "symbol", "rebuilt_size", "reported_size"])
    for r in mismatches:
        r["account"] = c.pseudonymize(r.get("account"), key)
    positions = bands.select("account", "symbol").unique().height if _has(bands, "account", "symbol") else None
    if not _present(frames, "position_rebuild_check"):
        rebuild = "No position rebuild check for this day."
    elif check.height:
        rebuild = (f"Rebuilt positions differ from positions_eod for {_plural(check.height, 'account-symbol')}"
                   f": the venue's end-of-day positions do not follow from start-of-day positions and the "
                   f"day's fills.")
    elif positions is not None:
        rebuild = (f"Rebuilt positions equal positions_eod for {_plural(positions, 'account-symbol')} "
                   f"(open at the end of the day; start-of-day positions plus every fill in exchange order).")
    else:
        rebuild = "Rebuilt positions equal positions_eod (no open position at the end of the day)."
    excluded = c._frame(frames, "position_rebuild_excluded")
    if _has(excluded, "account", "symbol", "quarantined_fills") and excluded.height:
        removed = [_plural(int(excluded["quarantined_fills"].sum()), "quarantined fill")]
        if "quarantined_positions" in excluded.columns and excluded["quarantined_positions"].sum():
            removed.append(_plural(int(excluded["quarantined_positions"].sum()), "quarantined position row"))
        rebuild += (f" Not compared, nor checked for reduce-only fills: "
                    f"{_plural(excluded.height, 'account-symbol')} with "
                    f"{' and '.join(removed)} "
                    f"(removed by the data-quality gate, see Data quality; not a venue mismatch), "
                    f"whose positions do not follow from the loaded rows.")
    return {
        "total": total,
        "by_kind": [{"kind": k, "label": KIND_LABELS.get(k, k), "count": by_kind.get(k, 0)} for k in kinds],
        "kinds": [{"kind": k, "label": KIND_LABELS.get(k, k)} for k in kinds],
        "matrix": matrix[:TOP_N],
        "matrix_total": len(matrix),
        "symbols_total": symbols_total,
        "examples": examples,
        "examples_total": viol.height,
        "in_partial_fill": partial,
        "mismatches": mismatches,
        "mismatches_total": check.height,
        "rebuild_sentence": rebuild,
        "present": _present(frames, "order_flow_violations"),
    }


def order_flow_sentence(section: dict) -> str | None:
    if not section["total"]:
        return None
    parts = [f"{r['label']} {r['count']:,}" for r in section["by_kind"] if r["count"]]
    text = f"Order flow: {_plural(section['total'], 'violation')} ({', '.join(parts)})"
    if section["in_partial_fill"]:
        text += f"; {section['in_partial_fill']:,} inside a partial fill"
    return text + "."


def rebuild_sentence(section: dict) -> str | None:
    return f"Position rebuild: {section['rebuild_sentence']}" if section["mismatches_total"] else None


# -- 4.7 early-warning anomalies ----------------------------------------------------------------

def anomalies_section(frames: dict) -> dict:
    c = _ctx()
    inc = c._frame(frames, "anomaly_incidents")
    rvm = c._frame(frames, "rules_vs_model")
    mf = c._frame(frames, "minute_features")

    incidents = c._rows(inc, ["start", "end", "symbols", "features", "max_z", "severity", "kinds",
                              "n_anomalies"]) if _has(inc, "start") else []
    for r in incidents:
        r["start_hm"], r["end_hm"] = _hms(r.get("start"), False), _hms(r.get("end"), False)
        r["start_s"], r["end_s"] = _sod(r.get("start")), _sod(r.get("end"))
        r["symbols"], r["features"] = _list(r.get("symbols")), _list(r.get("features"))
    by_sev = {s: sum(1 for r in incidents if r.get("severity") == s) for s in SEVERITY_RANK}
    ranked = sorted(incidents, key=lambda r: (SEVERITY_RANK.get(str(r.get("severity")), 3),
                                              -(r["max_z"] if _ok(r.get("max_z")) else 0.0),
                                              str(r.get("start"))))
    table = sorted(ranked[:TOP_N], key=lambda r: str(r.get("start")))

    # timeline rows: symbols with incidents (most severe first), then the other scored symbols
    syms_inc: list[str] = []
    for r in ranked:
        for s in r["symbols"]:
            if s not in syms_inc:
                syms_inc.append(str(s))
    others = sorted(str(s) for s in mf["symbol"].unique().to_list()) if _has(mf, "symbol") else []
    rows = list(dict.fromkeys(syms_inc + others))[:TIMELINE_SYMBOLS]
    timeline = [{"symbols": r["symbols"], "start_s": r["start_s"], "end_s": r["end_s"],
                 "severity": r.get("severity"), "max_z": r.get("max_z")}
                for r in incidents if r["start_s"] is not None]

    disagreements = []
    cases: dict[str, int] = {}
    if _has(rvm, "case"):
        for k, n in rvm.group_by("case").len().sort("case").iter_rows():
            cases[str(k)] = int(n)
        f = rvm.sort([x for x in ("start", "case") if x in rvm.columns], nulls_last=True)
        disagreements = c._rows(f.head(TOP_N), ["case", "start", "end", "symbols", "model_features",
                                                "max_z", "z_threshold", "model_detail", "rules_breached",
                                                "rules_detail"])
        for r in disagreements:
            r["case_label"] = CASE_LABELS.get(str(r.get("case")), str(r.get("case")))
            r["start_hm"], r["end_hm"] = _hms(r.get("start"), False), _hms(r.get("end"), False)
            for col in ("symbols", "model_features", "model_detail", "rules_breached", "rules_detail"):
                r[col] = _list(r.get(col))
    z_threshold = next((r["z_threshold"] for r in disagreements if _ok(r.get("z_threshold"))), None)
    return {
        "incidents": table,
        "incidents_total": len(incidents),
        "by_severity": by_sev,
        "high": [r for r in ranked if r.get("severity") == "high"],
        "timeline": timeline,
        "timeline_rows": rows,
        "timeline_symbols_total": len(set(syms_inc) | set(others)),
        "disagreements": disagreements,
        "disagreements_total": rvm.height,
        "cases": [{"case": k, "label": CASE_LABELS.get(k, k), "count": n} for k, n in cases.items()],
        "z_threshold": z_threshold,
        "scored": _has(mf, "symbol"),
        "present": _present(frames, "anomaly_incidents"),
    }


def anomalies_sentence(section: dict) -> str | None:
    high = section["high"]
    if not high:
        return None
    parts = [f"{r['start_hm']}-{r['end_hm']} UTC {', '.join(r['symbols'])} ({', '.join(r['features'])}; "
             f"max z {_ctx().num(r.get('max_z'), 1)})" for r in high[:3]]
    more = f" and {len(high) - 3} more" if len(high) > 3 else ""
    return (f"Anomalies: {_plural(len(high), 'high-severity incident')} of "
            f"{section['incidents_total']:,}: {'; '.join(parts)}{more}.")


# -- 4.8 cross-margin stress --------------------------------------------------------------------

def cross_margin_section(frames: dict, key: bytes | None) -> dict:
    c = _ctx()
    summ = c._frame(frames, "cross_margin_summary")
    stress = c._frame(frames, "cross_margin_stress")

    summary_rows = []
    if _has(summ, "scenario", "k_sigma"):
        order = {s: i for i, s in enumerate(SCENARIOS)}
        rows = c._rows(summ, ["scenario", "k_sigma", "accounts", "accounts_breaching", "equity_at_risk",
                              "loss", "liquidation_notional_at_risk", "trigger_symbols"])
        summary_rows = sorted(rows, key=lambda r: (order.get(str(r["scenario"]), 99),
                                                   r["k_sigma"] if _ok(r.get("k_sigma")) else 0))
        for r in summary_rows:
            r["scenario_label"] = SCENARIO_LABELS.get(str(r["scenario"]), str(r["scenario"]))
            r["trigger_symbols"] = _list(r.get("trigger_symbols"))
    accounts_total = max([int(r.get("accounts") or 0) for r in summary_rows], default=0)

    # breaching accounts: one row per account, where it first breaches in each scenario and its
    # trigger under correlations at one (the worst direction), else under the empirical correlation
    accounts: list[dict] = []
    if _has(stress, "account", "scenario", "k_sigma", "breach"):
        rows = c._rows(stress.filter(pl.col("breach").fill_null(False)).sort("account", "k_sigma"),
                       ["account", "scenario", "k_sigma", "n_positions", "gross_notional", "equity",
                        "mm", "equity_after", "mm_after", "liquidation_notional_at_risk",
                        "trigger_symbol", "trigger_reason", "trigger_notional", "largest_loss_symbol"])
        per: dict[Any, dict] = {}
        for r in rows:
            a = per.setdefault(r["account"], {"rows": {}, "first": r})
            a["rows"].setdefault(str(r["scenario"]), r)  # the smallest k at which it breaches
        for acct, a in per.items():
            first_k = {s: a["rows"][s]["k_sigma"] for s in a["rows"]}
            corr_one = [a["rows"][s] for s in ("corr_one_down", "corr_one_up") if s in a["rows"]]
            main = (min(corr_one, key=lambda r: (r["k_sigma"], -(r.get("liquidation_notional_at_risk") or 0)))
                    if corr_one else a["rows"].get("empirical") or a["first"])
            gross = main.get("gross_notional")
            tn = main.get("trigger_notional")
            share = tn / gross if _ok(tn) and _ok(gross) and gross > 0 else None
            liq = max((r.get("liquidation_notional_at_risk") or 0.0) for r in a["rows"].values())
            accounts.append({
                "account": c.pseudonymize(acct, key),
                "n_positions": main.get("n_positions"),
                "gross_notional": gross,
                "equity": main.get("equity"),
                "mm": main.get("mm"),
                "breaches": [{"scenario": s, "label": SCENARIO_SHORT.get(s, s), "k_sigma": first_k[s]}
                             for s in SCENARIOS if s in first_k],
                "empirical_k": first_k.get("empirical"),
                "corr_one_k": min([first_k[s] for s in ("corr_one_up", "corr_one_down") if s in first_k],
                                  default=None),
                "scenario": main.get("scenario"),
                "scenario_short": SCENARIO_SHORT.get(str(main.get("scenario")), str(main.get("scenario"))),
                "k_sigma": main.get("k_sigma"),
                "equity_after": main.get("equity_after"),
                "mm_after": main.get("mm_after"),
                "trigger_symbol": main.get("trigger_symbol"),
                "trigger_reason": main.get("trigger_reason"),
                "trigger_notional": tn,
                "trigger_share": share,
                "largest_loss_symbol": main.get("largest_loss_symbol"),
                "small_hedge": bool(share is not None and share <= SMALL_HEDGE_SHARE
                                    and main.get("trigger_reason") == "removal_avoids_breach"
                                    and str(main.get("scenario")).startswith("corr_one")),
                "liquidation_notional_at_risk": liq,
            })
        accounts.sort(key=lambda r: (r["corr_one_k"] if r["corr_one_k"] is not None else 99,
                                     -(r["liquidation_notional_at_risk"] or 0.0), r["account"]))
    hedges = [r for r in accounts if r["small_hedge"]]
    return {
        "summary": summary_rows,
        "accounts_total": accounts_total,
        "accounts": accounts[:TOP_N],
        "breaching_total": len(accounts),
        "small_hedges": hedges,
        "small_hedge_share": SMALL_HEDGE_SHARE,
        "horizon_text": (f"{HORIZON_MIN / 1440:g}-day" if HORIZON_MIN % 1440 == 0 else
                         f"{HORIZON_MIN / 60:g}-hour" if HORIZON_MIN % 60 == 0 else f"{HORIZON_MIN:g}-minute"),
        "hedge_sentence": _hedge_sentence(hedges),
        "present": _present(frames, "cross_margin_summary"),
    }


def _hedge_sentence(hedges: list[dict]) -> str | None:
    if not hedges:
        return None
    c = _ctx()
    h = hedges[0]
    emp = (f"; under the empirical correlation it first breaches at {h['empirical_k']:g} sigma"
           if _ok(h.get("empirical_k")) else "; under the empirical correlation it does not breach at "
                                                "any tested k")
    more = (f" {_plural(len(hedges) - 1, 'other account')} show the same pattern."
            if len(hedges) > 1 else "")
    return (f"A hedge that looks small can become the trigger when correlations jump toward one: "
            f"account {h['account']} breaches maintenance under {SCENARIO_LABELS.get(h['scenario'], h['scenario'])} "
            f"at {h['k_sigma']:g} sigma, and its {h['trigger_symbol']} position of {c.usdt(h['trigger_notional'])} "
            f"({c.pct(h['trigger_share'])} of its {c.usdt(h['gross_notional'])} gross notional) is the trigger: "
            f"without it the account would not breach{emp}.{more}")


def cross_margin_sentence(section: dict) -> str | None:
    rows = [r for r in section["summary"] if str(r["scenario"]).startswith("corr_one")
            and (r.get("accounts_breaching") or 0) > 0]
    if not rows:
        return None
    k = min(r["k_sigma"] for r in rows)  # the smallest common move that breaks an account
    at_k = [r for r in rows if r["k_sigma"] == k]
    worst = max(at_k, key=lambda r: r["accounts_breaching"])
    n = int(worst["accounts_breaching"])
    by_dir = ", ".join(f"{'down' if r['scenario'].endswith('down') else 'up'} {int(r['accounts_breaching'])}"
                       for r in at_k)
    emp = next((r for r in section["summary"] if r["scenario"] == "empirical" and r["k_sigma"] == k), None)
    emp_txt = f"; empirical correlation: {int(emp.get('accounts_breaching') or 0)}" if emp else ""
    trig = sorted({s for r in at_k for s in r["trigger_symbols"]})
    c = _ctx()
    return (f"Cross margin: with correlations at one, {_plural(n, 'cross account')} "
            f"{'breaches' if n == 1 else 'breach'} maintenance from a {k:g}-sigma common move ({by_dir}{emp_txt}), "
            f"liquidation notional at risk {c.usdt(worst.get('liquidation_notional_at_risk'))}; "
            f"trigger symbols: {', '.join(trig) if trig else 'n/a'}.")


# -- 4.9 liquidation bands and cascades ---------------------------------------------------------

def bands_section(frames: dict, key: bytes | None) -> dict:
    c = _ctx()
    lar = c._frame(frames, "liquidations_at_risk")
    tib = c._frame(frames, "time_in_band")
    bands = c._frame(frames, "position_bands")
    cas = c._frame(frames, "cascade_table")

    # liquidations-at-risk: curves per symbol x side, and the table at 2 / 5 / 10 / 20 % from mark
    curves: list[dict] = []
    lar_rows: list[dict] = []
    lar_symbols_total = 0
    if _has(lar, "symbol", "side", "distance_pct", "cumulative_liquidation_notional"):
        tot = (lar.group_by("symbol", "side").agg(pl.col("cumulative_liquidation_notional").max().alias("_m"))
               .group_by("symbol").agg(pl.col("_m").sum()).sort(["_m", "symbol"], descending=[True, False]))
        lar_symbols_total = tot.height
        order = [str(s) for s in tot["symbol"].to_list()]
        for sym in order:
            sub = lar.filter(pl.col("symbol") == sym)
            row: dict = {"symbol": sym, "long": {}, "short": {}, "total": 0.0}
            for side in ("long", "short"):
                s = sub.filter(pl.col("side") == side).sort(pl.col("distance_pct").abs())
                pts = [(abs(float(d)), float(v or 0.0)) for d, v in
                       s.select("distance_pct", "cumulative_liquidation_notional").iter_rows()
                       if d is not None]
                for d in LAR_DISTANCES:
                    within = [v for x, v in pts if x <= d + 1e-9]
                    row[side][str(d)] = within[-1] if within else 0.0
                if pts:
                    row["total"] += pts[-1][1]
                    if len(curves) < 2 * LAR_SYMBOLS and sym in order[:LAR_SYMBOLS]:
                        curves.append({"symbol": sym, "side": side,
                                       "points": [[(-x if side == "long" else x), v] for x, v in pts]})
            lar_rows.append(row)
    lar_rows = lar_rows[:TOP_N]

    in_band = []
    tib_positive = 0
    if _has(tib, "seconds_in_band"):
        hit = tib.filter(pl.col("seconds_in_band").fill_null(0) > 0)
        tib_positive = hit.height
        in_band = c._rows(hit.sort(["seconds_in_band", "notional"], descending=True, nulls_last=True).head(TOP_N),
                          ["account", "symbol", "margin_mode", "side", "notional", "warning_price",
                           "liquidation_price", "seconds_in_band", "band_entries", "first_entry_ts",
                           "reached_liquidation", "liquidation_ts", "seconds_to_liquidation"])
        for r in in_band:
            r["account"] = c.pseudonymize(r.get("account"), key)
            r["first_entry_hms"] = _hms(r.get("first_entry_ts"))
            r["liquidation_hms"] = _hms(r.get("liquidation_ts"))
    positions_in_band_eod = int(bands["in_band"].fill_null(False).sum()) if _has(bands, "in_band") else 0

    # cascades: amplification per shock symbol x direction x size
    series: list[dict] = []
    cascade_rows: list[dict] = []
    shocks = [float(s) for s in CASCADE_SHOCKS]
    cascade_symbols_total = 0
    if _has(cas, "shock_symbol", "shock", "direction", "amplification"):
        rows = c._rows(cas, ["shock_symbol", "shock", "direction", "shock_pct", "final_move_pct",
                             "amplification", "liquidated_notional", "liquidated_positions", "rounds",
                             "duration_s", "converged", "critical_symbols"])
        shocks = sorted({float(r["shock"]) for r in rows if _ok(r.get("shock"))} | set())
        per: dict[tuple, dict] = {}
        for r in rows:
            k = (str(r["shock_symbol"]), int(r["direction"] or 0))
            p = per.setdefault(k, {"shock_symbol": k[0], "direction": k[1],
                                   "direction_label": "down" if k[1] < 0 else "up", "by_shock": {}})
            p["by_shock"][f"{float(r['shock']):g}"] = r
        cascade_symbols_total = len({k[0] for k in per})
        for p in per.values():
            cells = [p["by_shock"].get(f"{s:g}") or {} for s in shocks]
            p["cells"] = [{"shock": s, "amplification": cell.get("amplification"),
                           "liquidated_notional": cell.get("liquidated_notional"),
                           "converged": cell.get("converged")} for s, cell in zip(shocks, cells)]
            big = cells[-1] if cells else {}
            p["largest"] = {"shock": shocks[-1] if shocks else None,
                            "final_move_pct": big.get("final_move_pct"),
                            "amplification": big.get("amplification"),
                            "liquidated_notional": big.get("liquidated_notional"),
                            "liquidated_positions": big.get("liquidated_positions"),
                            "rounds": big.get("rounds"), "duration_s": big.get("duration_s"),
                            "critical_symbols": _list(big.get("critical_symbols"))}
            p["not_converged"] = [f"{s * 100:g}%" for s, cell in zip(shocks, cells) if cell.get("converged") is False]
            series.append({"symbol": p["shock_symbol"], "direction": p["direction"],
                           "points": [[s * 100, cell.get("amplification")] for s, cell in zip(shocks, cells)
                                      if _ok(cell.get("amplification"))]})
        amp = (lambda p: p["largest"]["amplification"] if _ok(p["largest"]["amplification"]) else 0.0)
        cascade_rows = sorted(per.values(), key=lambda p: (-amp(p), p["shock_symbol"], p["direction"]))
        for p in cascade_rows:
            del p["by_shock"]
    # chart: the shock symbols of the rows shown, at most 8
    shown = list(dict.fromkeys(p["shock_symbol"] for p in cascade_rows))[:8]
    series = [s for s in series if s["symbol"] in shown]
    return {
        "lar": lar_rows,
        "lar_distances": list(LAR_DISTANCES),
        "lar_symbols_total": lar_symbols_total,
        "lar_curves": curves,
        "in_band": in_band,
        "in_band_total": tib_positive,
        "positions_total": bands.height,
        "positions_in_band_eod": positions_in_band_eod,
        "cascade": cascade_rows[:TOP_N],
        "cascade_total": len(cascade_rows),
        "cascade_symbols_total": cascade_symbols_total,
        "cascade_shocks": [s * 100 for s in shocks],
        "cascade_series": series,
        "cascade_latency_s": _latency(cas),
    }


def _latency(cas: pl.DataFrame) -> float | None:
    """The engine latency the cascade table was computed with: duration_s / iterations (the
    model's duration is iterations x latency_s); None without a row that iterated."""
    if not _has(cas, "duration_s", "iterations"):
        return None
    it = cas.filter(pl.col("iterations") > 0)
    return float(it["duration_s"][0] / it["iterations"][0]) if it.height else None


# -- 4.10 API key hygiene -----------------------------------------------------------------------

def api_section(frames: dict, key: bytes | None) -> dict:
    c = _ctx()
    chk = c._frame(frames, "api_key_checklist")
    tot = c._frame(frames, "api_checklist_totals")
    un = c._frame(frames, "api_unattributed")

    totals = []
    if _has(tot, "check", "keys_failing"):
        order = {k: i for i, k in enumerate(API_CHECKS + ("any",))}
        totals = sorted(c._rows(tot, ["check", "keys_failing", "keys", "share", "key_ids"]),
                        key=lambda r: order.get(str(r["check"]), 50))
        for r in totals:
            r["keys_total"] = r.pop("keys")  # (a dict key named "keys" is shadowed in Jinja)
            r["label"] = CHECK_LABELS.get(str(r["check"]), str(r["check"]))
            ids = _list(r.get("key_ids"))
            r["key_ids_text"] = ", ".join(str(i) for i in ids[:8]) + (f" +{len(ids) - 8}" if len(ids) > 8 else "")
    keys_total = max([int(r.get("keys_total") or 0) for r in totals], default=chk.height)

    failing = []
    failing_total = 0
    if _has(chk, "key_id", "ok"):
        f = chk.filter(~pl.col("ok").fill_null(True))
        failing_total = f.height
        if "flags" in f.columns:
            f = f.with_columns(pl.col("flags").list.len().alias("_n")).sort(["_n", "key_id"], descending=[True, False])
        failing = c._rows(f.head(TOP_N), ["key_id", "account", "status", "scopes", "needed_scopes",
                                          "unused_scope_list", "requests", "peak_requests_per_minute",
                                          "automation", "kill_switch", "errors", "rate_limited", "flags"])
        for r in failing:
            r["account"] = c.pseudonymize(r.get("account"), key)
            for col in ("scopes", "needed_scopes", "unused_scope_list", "flags"):
                r[col] = _list(r.get(col))
            r["flag_labels"] = [CHECK_LABELS.get(str(x), str(x)) for x in r["flags"]]
    unattributed = None
    if _has(un, "unattributed"):
        u = c._rows(un.head(1), ["requests", "unattributed", "null_key_id", "unknown_key_id", "share",
                                 "unknown_key_ids", "examples"])[0]
        u["unknown_key_ids"] = _list(u.get("unknown_key_ids"))
        u["examples"] = [str(x) for x in _list(u.get("examples"))][:5]
        unattributed = u
    return {
        "totals": totals,
        "keys_total": keys_total,
        "failing": failing,
        "failing_total": failing_total,
        "unattributed": unattributed,
        "present": _present(frames, "api_key_checklist"),
    }


def api_sentence(section: dict) -> str | None:
    fails = [r for r in section["totals"] if r["check"] != "any" and (r.get("keys_failing") or 0) > 0]
    n = next((int(r.get("keys_failing") or 0) for r in section["totals"] if r["check"] == "any"),
             section["failing_total"])
    if not n and not fails:
        return None
    parts = ", ".join(f"{r['label']} ({int(r['keys_failing'])})" for r in fails)
    return (f"API keys: {n:,} of {section['keys_total']:,} key(s) fail a check"
            + (f": {parts}." if parts else "."))


# -- everything ---------------------------------------------------------------------------------

def account_context(frames: dict, key: bytes | None, covered=lambda section: True) -> dict:
    """The account-side sections and their page-one sentences (none for a section the source
    does not cover: `covered(section)`)."""
    of = order_flow_section(frames, key)
    an = anomalies_section(frames)
    cm = cross_margin_section(frames, key)
    bd = bands_section(frames, key)
    api = api_section(frames, key)
    candidates = []
    if covered("order_flow"):
        candidates += [order_flow_sentence(of), rebuild_sentence(of)]
    if covered("anomalies"):
        candidates.append(anomalies_sentence(an))
    if covered("cross_margin"):
        candidates.append(cross_margin_sentence(cm))
    if covered("api"):
        candidates.append(api_sentence(api))
    sentences = [s for s in candidates if s]
    return {"order_flow": of, "anomalies": an, "cross_margin": cm, "bands": bd, "api": api,
            "account_narrative": sentences}
