"""The report context: one plain-Python, JSON-serializable dict holding everything the report
template needs, built from the day's metric frames. Numbers are kept at full precision here;
rounding happens only when a template (or `format_figure`) displays them.

Also: account pseudonyms (keyed hash), the display format of headline figures (shared by the
HTML, the PDF, summary.json and the email), and `summary_json`, the machine-readable summary.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import math
import os
from typing import Any, Iterable

import polars as pl

STATUS_RANK = {"green": 0, "amber": 1, "red": 2}
TOP_N = 8                   # rows per table in the PDF; the long tables go out whole as CSV (tables_csv)
TREND_POINTS = 400          # points per pool in the insurance-fund balance chart
MAX_CHANGES = 8              # items of page one's "what changed since yesterday" (the rest: the table)
SPARK_DAYS = 30              # days in a headline figure's sparkline on page one (today included)
PSEUDONYM_KEY_ENV = "VENUE_RISK_PSEUDONYM_KEY"          # the key for the CLI
PSEUDONYM_KEY_VARIABLE = "venue_risk_pseudonym_key"      # the key under Airflow (a Variable)
NO_PSEUDONYM_KEY_NOTE = (
    "Accounts are shown as recorded: no pseudonym key is configured (set the Airflow variable "
    f"{PSEUDONYM_KEY_VARIABLE} or {PSEUDONYM_KEY_ENV})")
PSEUDONYMS_OFF_NOTE = "Accounts are shown as recorded: pseudonyms are switched off (empty pseudonym key)"
SENSITIVITY_EXTRA_BPS = (1, 2, 5, 10)
SENSITIVITY_LEVERAGE = (5, 10, 20, 50, 100)


# -- pseudonyms ---------------------------------------------------------------------------------

def default_pseudonym_key() -> bytes | None:
    """The pseudonym key from the environment (VENUE_RISK_PSEUDONYM_KEY); unset or empty -> None
    (accounts shown as recorded). There is no built-in key: a key in the code is public, and a
    keyed hash with a public key hides nothing. The key is a deployment secret."""
    value = os.environ.get(PSEUDONYM_KEY_ENV)
    return value.encode() if value else None


def resolve_pseudonym_key(key: bytes | str | None) -> tuple[bytes | None, str | None]:
    """(HMAC key or None, note for the report when accounts are shown as recorded).

    key: the deployment secret passed in (the DAG reads the Airflow variable
    venue_risk_pseudonym_key); None -> VENUE_RISK_PSEUDONYM_KEY; b"" (or the variable set empty)
    -> pseudonyms switched off. None and the variable unset -> no key, with a note saying so."""
    if key is None:
        env = os.environ.get(PSEUDONYM_KEY_ENV)
        if env is None:
            return None, NO_PSEUDONYM_KEY_NOTE
        key = env
    key = key.encode() if isinstance(key, str) else bytes(key)
    return (key, None) if key else (None, PSEUDONYMS_OFF_NOTE)


def pseudonymize(account: Any, key: bytes | None) -> str:
    """'acct-' + the first 10 hex chars of HMAC-SHA256(key, str(account)); with key None the
    account id unchanged (as text). Stable across runs for the same key, so a committee can
    follow one account from day to day without learning who it is."""
    if account is None:
        return ""
    if key is None:
        return str(account)
    return "acct-" + hmac.new(key, str(account).encode(), hashlib.sha256).hexdigest()[:10]


# -- display formats ----------------------------------------------------------------------------

# figure name -> unit; names not listed are classified by `figure_unit` from their wording.
FIGURE_UNITS: dict[str, str] = {
    "max_buffer_share": "multiple",        # x of the maintenance buffer (1 = bankruptcy)
    "data_quality_status": "dq_status",    # 0 passed, 1 warnings, 2 failed
    "liquidation_notional_within_5pct": "usdt",
    "cascade_amplification_10pct": "multiple",  # final move / shock
}
# account-side figures named by what they count (violations, incidents, accounts, keys, requests)
COUNT_PREFIXES = ("order_flow_", "position_rebuild_", "anomaly_", "rules_model_", "cross_breach_",
                  "api_")
UNITS = ("usdt", "bps", "pct", "rate", "count", "ratio", "days", "multiple", "dq_status", "number")
DQ_STATUS_NAMES = {0: "passed", 1: "warnings", 2: "failed"}


def figure_unit(figure: str) -> str:
    """The display unit of a headline figure, from FIGURE_UNITS or the figure's name:
    *_bps / slippage -> bps; *_share / *_pct -> % of 1; *_rate -> % (3 decimals);
    counts, events, checks -> integer; notional, volume, balance, fund, equity, net, interest,
    inflow/outflow, usdt -> USDT; *_ratio -> plain ratio."""
    if figure in FIGURE_UNITS:
        return FIGURE_UNITS[figure]
    f = figure.lower()
    if f.startswith(COUNT_PREFIXES):
        return "count"
    if f.startswith("cascade_amplification"):
        return "multiple"
    if f.startswith("liquidation_notional"):
        return "usdt"
    if f.endswith("_bps") or "bps" in f or "slippage" in f:
        return "bps"
    if f.endswith("_days") or f == "baseline_days":
        return "days"
    if "ratio" in f:
        return "ratio"
    if f.endswith("_share") or "share" in f or "pct" in f or "percent" in f:
        return "pct"
    if f.endswith("_rate") or "rate" in f:
        return "rate"
    if any(w in f for w in ("count", "events", "checks", "number_of", "rows", "trades")) \
            and not any(w in f for w in ("notional", "volume", "usdt")):
        return "count"
    if any(w in f for w in ("notional", "volume", "balance", "fund", "equity", "net", "usdt",
                            "interest", "inflow", "outflow", "loss", "pnl", "fee", "shortfall")):
        return "usdt"
    if any(w in f for w in ("liquidations", "adl")):
        return "count"
    return "number"


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def usdt(v: Any, signed: bool = False) -> str:
    """Money in the quote currency: '12.35M USDT' from a million up, '12,345 USDT' below."""
    if not _is_num(v) or not math.isfinite(v):
        return "n/a"
    sign = "+" if signed and v > 0 else ""
    a = abs(v)
    if a >= 1e9:
        return f"{sign}{v / 1e9:,.2f}B USDT"
    if a >= 1e6:
        return f"{sign}{v / 1e6:,.2f}M USDT"
    if a >= 100 or v == 0:
        return f"{sign}{v:,.0f} USDT"
    return f"{sign}{v:,.2f} USDT"


def money(v: Any) -> str:
    """Money without the unit, for table cells whose header carries it: '3.50M', '18,739'."""
    return usdt(v).replace(" USDT", "")


def bps(v: Any) -> str:
    if not _is_num(v) or not math.isfinite(v):
        return "n/a"
    return f"{v:,.1f} bps"


def pct(v: Any, digits: int = 1) -> str:
    """A decimal share as percent: 0.253 -> '25.3%'."""
    if not _is_num(v) or not math.isfinite(v):
        return "n/a"
    return f"{v * 100:,.{digits}f}%"


def num(v: Any, digits: int = 0) -> str:
    if not _is_num(v) or not math.isfinite(v):
        return "n/a"
    return f"{v:,.{digits}f}"


def format_figure(figure: str, value: Any, unit: str | None = None) -> str:
    """The display string of a headline figure (HTML, PDF, summary.json, email all use it)."""
    if value is None or not _is_num(value) or not math.isfinite(value):
        return "n/a"
    unit = unit or figure_unit(figure)
    if unit == "usdt":
        return usdt(value, signed="_net" in figure or figure.endswith("net"))
    if unit == "bps":
        return bps(value)
    if unit == "pct":
        return pct(value)
    if unit == "rate":
        return pct(value, 3)
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "days":
        return f"{value:,.0f} d"
    if unit == "ratio":
        return f"{value:,.2f}"
    if unit == "multiple":
        return f"{value:,.2f}x"
    if unit == "dq_status":
        return DQ_STATUS_NAMES.get(int(round(value)), f"{value:g}")
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


# -- frame helpers ------------------------------------------------------------------------------

def _clean(v: Any) -> Any:
    """A JSON-safe scalar: dates as ISO text, NaN/inf as None, numpy-ish numbers as Python."""
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if hasattr(v, "item"):
        return _clean(v.item())
    return str(v)


def _rows(frame: pl.DataFrame | None, columns: Iterable[str] | None = None) -> list[dict]:
    if frame is None or frame.height == 0:
        return []
    if columns is None:
        return [{k: _clean(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
    columns = list(columns)
    frame = frame.select([c for c in columns if c in frame.columns])
    # a column the metric table does not (yet) have is shown as n/a, never a crash
    return [{c: _clean(row.get(c)) for c in columns} for row in frame.iter_rows(named=True)]


ALL_SYMBOLS = "ALL"


def _frame(frames: dict, name: str) -> pl.DataFrame:
    """The metric table `name` as the metric module produced it (its own column names)."""
    f = frames.get(name)
    return f if isinstance(f, pl.DataFrame) else pl.DataFrame()


def _all_first(frame: pl.DataFrame, by: str) -> pl.DataFrame:
    """The venue-wide roll-up rows (symbol 'ALL') first, then the symbols by `by`, largest first."""
    if not _has(frame, "symbol", by):
        return frame
    return frame.sort([pl.col("symbol") != ALL_SYMBOLS, pl.col(by)], descending=[False, True],
                      nulls_last=True)


def _has(frame: pl.DataFrame, *cols: str) -> bool:
    return frame.height > 0 and all(c in frame.columns for c in cols)


def _sum(frame: pl.DataFrame, col: str) -> float:
    if not _has(frame, col):
        return 0.0
    v = frame[col].cast(pl.Float64).fill_nan(None).sum()
    return float(v or 0.0)


# -- sections -----------------------------------------------------------------------------------

#: Columns of the per-path table on page 2 (slippage_by_path's own names).
PATH_COLUMNS = ["path", "count", "count_filled", "notional", "slippage_bps_wmean", "slippage_bps_p50",
                "slippage_bps_p95", "slippage_bps_p99", "slippage_bps_max", "slippage_bps_es95",
                "fill_ratio", "ttc_p50_s", "ttc_p95_s", "beyond_bankruptcy_share",
                "beyond_bankruptcy_count", "shortfall"]


def _path_summary(by_path: pl.DataFrame) -> list[dict]:
    """Liquidations per path over all symbols: the roll-up rows (symbol 'ALL') of
    slippage_by_path as the metric module computed them, in the venue's path order."""
    if not _has(by_path, "symbol", "path"):
        return []
    rows = _rows(by_path.filter(pl.col("symbol") == ALL_SYMBOLS), PATH_COLUMNS)
    from venue_risk.report.charts import order_paths

    rank = {p: i for i, p in enumerate(order_paths(r["path"] for r in rows))}
    return sorted(rows, key=lambda r: rank[r["path"]])


def _top(frame: pl.DataFrame, by: str, columns: list[str], n: int = TOP_N,
         descending: bool = True) -> list[dict]:
    if not _has(frame, by):
        return _rows(frame.head(n), columns)
    f = frame.sort(by, descending=descending, nulls_last=True).head(n)
    return _rows(f, columns)


def _sensitivity(frame: pl.DataFrame, executions: pl.DataFrame) -> dict:
    """The sensitivity table of the symbol with the most liquidated notional today (else the
    first symbol), leverage rows x extra-bps columns, and the takeaway sentence."""
    empty = {"symbol": None, "symbols": [], "extra_bps": list(SENSITIVITY_EXTRA_BPS), "rows": [],
             "takeaway": "No margin sensitivity table for this day (no risk tiers)."}
    if not _has(frame, "symbol", "leverage", "extra_bps"):
        return empty
    symbols = sorted(str(s) for s in frame["symbol"].unique().to_list())
    symbol = symbols[0]
    if _has(executions, "symbol", "filled_notional"):
        top = (executions.group_by("symbol").agg(pl.col("filled_notional").sum())
               .sort(["filled_notional", "symbol"], descending=[True, False]))
        if top.height and str(top["symbol"][0]) in symbols:
            symbol = str(top["symbol"][0])
    f = frame.filter(pl.col("symbol") == symbol).sort(["leverage", "extra_bps"])
    extra = sorted({float(x) for x in f["extra_bps"].to_list()})
    rows = []
    for lev in sorted({float(x) for x in f["leverage"].to_list()}):
        sub = f.filter(pl.col("leverage") == lev)
        first = sub.row(0, named=True)
        cells = {float(r["extra_bps"]): r for r in sub.iter_rows(named=True)}
        rows.append({
            "leverage": _clean(lev),
            "tier": _clean(first.get("tier")),
            "maintenance_margin_rate": _clean(first.get("maintenance_margin_rate")),
            "cells": [{
                "extra_bps": _clean(x),
                "initial_margin_share": _clean(cells[x].get("initial_margin_share")) if x in cells else None,
                "buffer_share": _clean(cells[x].get("buffer_share")) if x in cells else None,
                "margin_steps": _clean(cells[x].get("margin_steps")) if x in cells else None,
            } for x in extra],
        })
    return {"symbol": symbol, "symbols": symbols, "extra_bps": [_clean(x) for x in extra],
            "rows": rows, "takeaway": _sensitivity_takeaway(symbol, extra, rows)}


def _sensitivity_takeaway(symbol: str, extra: list[float], rows: list[dict]) -> str:
    if not rows or not extra:
        return "No margin sensitivity rows for this day."
    probe = 5.0 if 5.0 in extra else extra[len(extra) // 2]
    k = extra.index(probe)
    hi, lo = rows[-1], rows[0]
    c_hi, c_lo = hi["cells"][k], lo["cells"][k]

    def lev(x):
        return f"{x:g}x"

    steps = c_hi.get("margin_steps")
    steps_txt = f" ({steps:,.1f} margin steps)" if _is_num(steps) else ""
    text = (f"For {symbol}'s tiers, an extra {probe:g} bps ({probe / 100:.2f}%) of forced cost takes "
            f"{pct(c_hi.get('initial_margin_share'))} of initial margin at {lev(hi['leverage'])} "
            f"(tier {hi['tier']}, MMR {pct(hi['maintenance_margin_rate'], 2)}) and consumes "
            f"{pct(c_hi.get('buffer_share'), 0)} of the maintenance buffer{steps_txt}; at "
            f"{lev(lo['leverage'])} the same cost is {pct(c_lo.get('initial_margin_share'), 2)} of "
            f"initial margin and {pct(c_lo.get('buffer_share'), 1)} of the buffer.")
    worst = extra[-1]
    kw = extra.index(worst)
    full = [r for r in rows if _is_num(r["cells"][kw].get("buffer_share"))
            and r["cells"][kw]["buffer_share"] >= 1.0]
    step1 = [r for r in rows if _is_num(r["cells"][kw].get("margin_steps"))
             and r["cells"][kw]["margin_steps"] >= 1.0]
    if full:
        text += (f" From {lev(full[0]['leverage'])} up, an extra {worst:g} bps consumes the whole "
                 f"buffer: such a liquidation ends beyond bankruptcy and the insurance fund pays.")
    elif step1:
        text += (f" From {lev(step1[0]['leverage'])} up, an extra {worst:g} bps erases at least one "
                 f"full margin step.")
    else:
        text += f" At no listed leverage does an extra {worst:g} bps erase a full margin step."
    return text


def _depth_comparison(rows: list[dict]) -> str:
    """One sentence comparing paths inside the same size-to-depth bin (a fair comparison: the
    same order size relative to the book)."""
    by_bin: dict[str, list[dict]] = {}
    for r in rows:
        if _is_num(r.get("slippage_bps_wmean")) and (r.get("count") or 0) > 0:
            by_bin.setdefault(str(r["size_to_depth_bin"]), []).append(r)
    best = None
    for b, rs in by_bin.items():
        if len(rs) < 2:
            continue
        lo = min(rs, key=lambda r: r["slippage_bps_wmean"])
        hi = max(rs, key=lambda r: r["slippage_bps_wmean"])
        gap = hi["slippage_bps_wmean"] - lo["slippage_bps_wmean"]
        n = sum(int(r.get("count") or 0) for r in rs)
        if best is None or (n, gap) > (best[0], best[1]):
            best = (n, gap, b, lo, hi)
    if best is None:
        if not by_bin:
            return "No liquidations on this day: no size-to-depth comparison."
        return ("No size-to-depth bin holds liquidations from two paths today, so paths cannot be "
                "compared at equal size against the book.")
    _, gap, b, lo, hi = best
    p95 = (f"; p95 {bps(hi.get('slippage_bps_p95'))} vs {bps(lo.get('slippage_bps_p95'))}"
           if _is_num(hi.get("slippage_bps_p95")) and _is_num(lo.get("slippage_bps_p95")) else "")
    return (f"At equal size against the book (size-to-depth bin {b}, {best[0]} liquidations), "
            f"{hi['path']} slipped {bps(hi['slippage_bps_wmean'])} on average against "
            f"{bps(lo['slippage_bps_wmean'])} for {lo['path']} ({bps(gap)} apart{p95}).")


def _insurance_fund(flows: pl.DataFrame, balance: pl.DataFrame) -> tuple[dict, dict]:
    pools = _rows(flows.sort("pool") if _has(flows, "pool") else flows,
                  ["pool", "inflow", "outflow", "net", "balance_open", "balance_close", "check_diff"])
    total = {k: _sum(flows, k) for k in ("inflow", "outflow", "net", "balance_open", "balance_close",
                                         "check_diff")}
    series: dict[str, list] = {}
    if _has(balance, "ts", "balance"):
        b = balance if "pool" in balance.columns else balance.with_columns(pl.lit("fund").alias("pool"))
        for pool in sorted(str(p) for p in b["pool"].unique().to_list()):
            s = b.filter(pl.col("pool") == pool).sort("ts")
            step = max(1, math.ceil(s.height / TREND_POINTS))
            idx = list(range(0, s.height, step))
            if idx[-1] != s.height - 1:
                idx.append(s.height - 1)
            s = s[idx]
            series[pool] = [[_clean(t), _clean(v)] for t, v in zip(s["ts"].to_list(),
                                                                   s["balance"].to_list())]
    return {"pools": pools, "total": total, "has_flows": bool(pools)}, series


def _group_path_figures(figures: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split the headline figures into the main list and per-path rows (liquidation_count_<path>
    and liquidation_notional_<path> side by side), so page one stays one page."""
    from venue_risk.report.charts import PATH_ORDER

    per_path: dict[str, dict] = {}
    main = []
    for f in figures:
        m = None
        for kind in ("count", "notional"):
            prefix = f"liquidation_{kind}_"
            if f["figure"].startswith(prefix) and f["figure"][len(prefix):] in PATH_ORDER:
                m = (f["figure"][len(prefix):], kind)
        if m is None:
            main.append(f)
        else:
            per_path.setdefault(m[0], {"path": m[0]})[m[1]] = f
    rows = []
    for path in PATH_ORDER:
        if path not in per_path:
            continue
        r = per_path[path]
        parts = [r[k] for k in ("count", "notional") if k in r]
        worst = max(parts, key=lambda f: STATUS_RANK.get(f["status"], 0))
        thresholds = list(dict.fromkeys(p["threshold"] for p in parts if p["threshold"]))
        r["status"] = worst["status"]
        r["threshold"] = worst["threshold"] if worst["status"] != "green" else "; ".join(thresholds)
        rows.append(r)
    return main, rows


def _liq_notional_figure(names: Iterable[str]) -> str | None:
    names = [str(n) for n in names]
    if "liquidation_notional" in names:
        return "liquidation_notional"
    for n in names:
        low = n.lower()
        if "liquidat" in low and "notional" in low and "path" not in low:
            return n
    return None


def _data_quality(dq: dict) -> dict:
    dq = dict(dq or {})
    checks = [_clean(dict(c)) for c in dq.get("checks", []) or []]
    failed = [c for c in checks if (c.get("failed_count") or 0) > 0]
    sev = {"critical": 0, "warning": 1}
    failed.sort(key=lambda c: (sev.get(c.get("severity"), 2), -(c.get("failed_count") or 0),
                               str(c.get("dataset")), str(c.get("check"))))
    q = dq.get("quarantined") or []
    quarantined: list[dict] = []
    if isinstance(q, dict):  # {dataset: {reason: count}} or {dataset: count}
        for ds, v in sorted(q.items()):
            if isinstance(v, dict):
                quarantined += [{"dataset": ds, "reason": r, "count": c} for r, c in sorted(v.items())]
            else:
                quarantined.append({"dataset": ds, "reason": "", "count": v})
    else:
        for item in q:
            item = dict(item)
            quarantined.append({"dataset": item.get("dataset", ""),
                                "reason": item.get("reason", item.get("check", "")),
                                "expectation": item.get("expectation", ""),
                                "count": item.get("count", item.get("rows", item.get("failed_count", 0)))})
    quarantined = _clean(quarantined)
    seconds = dq.get("seconds")
    return {
        "seconds": _clean(seconds) if _is_num(seconds) else None,
        "gx_import_seconds": (_clean(dq["gx_import_seconds"])
                              if _is_num(dq.get("gx_import_seconds")) else None),
        "row_counts": [{"dataset": k, "rows": _clean(v)} for k, v in sorted((dq.get("row_counts") or {}).items())],
        "status": dq.get("status", "unknown"),
        "checks_total": len(checks),
        "checks_failed": len(failed),
        "failed_checks": failed[:30],
        "failed_checks_omitted": max(0, len(failed) - 30),
        "checks_by_dataset": [dict(d, rows=_clean((dq.get("row_counts") or {}).get(d["dataset"])))
                              for d in _checks_by_dataset(checks)],
        "quarantined": quarantined,
        "quarantined_total": int(sum((r.get("count") or 0) for r in quarantined)),
    }


def _checks_by_dataset(checks: list[dict]) -> list[dict]:
    out: dict[str, dict] = {}
    for c in checks:
        d = out.setdefault(str(c.get("dataset")), {"dataset": str(c.get("dataset")), "checks": 0,
                                                   "failed": 0, "failed_rows": 0})
        d["checks"] += 1
        if (c.get("failed_count") or 0) > 0:
            d["failed"] += 1
            d["failed_rows"] += int(c.get("failed_count") or 0)
    return [out[k] for k in sorted(out)]


def _run_meta(meta: dict) -> dict:
    meta = dict(meta or {})
    source = meta.get("source")
    kind = meta.get("source_kind") or (source.get("kind") if isinstance(source, dict) else source)
    rows = meta.get("input_rows") or {}
    files = meta.get("input_files") or meta.get("input_hashes") or {}
    file_rows = []
    for ds in sorted(files):
        v = files[ds]
        if isinstance(v, str):
            file_rows.append({"dataset": ds, "file": "", "sha256": v})
        elif isinstance(v, dict):
            file_rows.append({"dataset": ds, "file": str(v.get("file", "")), "sha256": str(v.get("sha256", ""))})
        else:
            for f in v or []:
                f = dict(f) if isinstance(f, dict) else {"file": str(f), "sha256": ""}
                file_rows.append({"dataset": ds, "file": str(f.get("file", "")),
                                  "sha256": str(f.get("sha256", ""))})
    for r in file_rows:
        r["file_name"] = "/".join(r["file"].replace("\\", "/").split("/")[-3:]) if r["file"] else ""
        r["rows"] = rows.get(r["dataset"])
    return _clean({
        **{k: v for k, v in meta.items() if k not in ("input_rows", "input_files", "input_hashes")},
        "source_kind": kind or "unknown",
        "input_rows": [{"dataset": k, "rows": rows[k]} for k in sorted(rows)],
        "input_rows_total": int(sum(v for v in rows.values() if _is_num(v))),
        "input_files": file_rows,
    })


def _narrative(paths: list[dict], worst: dict | None, fund_total: dict, beyond: int,
               has_flows: bool) -> str:
    n = sum(int(p.get("count") or 0) for p in paths)
    if n == 0:
        text = "No liquidations on this day."
    else:
        notional = sum(float(p.get("notional") or 0) for p in paths)
        parts = ", ".join(f"{p['path']} {int(p['count'])} ({usdt(p.get('notional'))})" for p in paths)
        text = f"{n} liquidation{'s' if n != 1 else ''}, {usdt(notional)} filled: {parts}."
        if worst:
            text += (f" Worst slippage {bps(worst.get('slippage_bps'))} "
                     f"({worst.get('symbol')}, {worst.get('path')}).")
        if beyond:
            text += f" {beyond} ended beyond the bankruptcy price."
    if has_flows:
        text += (f" Insurance fund net {usdt(fund_total.get('net'), signed=True)} "
                 f"(in {usdt(fund_total.get('inflow'))}, out {usdt(fund_total.get('outflow'))}).")
    else:
        text += " No insurance-fund flows recorded."
    return text


# -- the context --------------------------------------------------------------------------------

def build_context(date: str | dt.date, venue_name: str, frames: dict[str, pl.DataFrame],
                  summary_rows: pl.DataFrame, history: pl.DataFrame, methodology: dict | None,
                  run_meta: dict, data_quality: dict, pseudonymize_key: bytes | None = None,
                  coverage: dict[str, dict] | None = None, yesterday: dict[str, dict] | None = None) -> dict:
    """Everything the report shows, as a JSON-serializable dict.

    frames: metric tables by name (slippage_by_path, slippage_by_depth_bin, liquidation_executions,
    forced_costs, forced_cost_by_path, insurance_fund_flows, margin_sensitivity; optionally the raw
    insurance_fund balance series); any may be missing or empty.
    pseudonymize_key: HMAC key of the account pseudonyms (a deployment secret); None -> the
    environment's VENUE_RISK_PSEUDONYM_KEY, and without one accounts are shown as recorded with a
    note saying so (`resolve_pseudonym_key`); b"" -> accounts shown unchanged.
    coverage: the gate's coverage block (venue_risk.coverage); None: the source carries every
    dataset over the whole day. Sections whose datasets are absent say "not covered".
    yesterday: {figure: {status, display}} of the previous day's report (its summary.json), for
    page one's "what changed since yesterday"; None: no report the day before.
    """
    from venue_risk.coverage import SECTION_NEEDS, needs_state, report_scope

    day = date.isoformat() if isinstance(date, dt.date) else str(date)[:10]
    key, pseudonym_note = resolve_pseudonym_key(pseudonymize_key)

    sbp = _frame(frames, "slippage_by_path")
    sdb = _frame(frames, "slippage_by_depth_bin")
    exe = _frame(frames, "liquidation_executions")
    fc = _frame(frames, "forced_costs")
    fcp = _frame(frames, "forced_cost_by_path")
    iff = _frame(frames, "insurance_fund_flows")
    sens = _frame(frames, "margin_sensitivity")
    ifb = _frame(frames, "insurance_fund")

    # headline figures
    figures = []
    srows = summary_rows if isinstance(summary_rows, pl.DataFrame) else pl.DataFrame(summary_rows or [])
    for r in _rows(srows):
        fig_name = str(r.get("figure"))
        unit = r.get("unit") or figure_unit(fig_name)
        status = str(r.get("status") or "green").lower()
        n = r.get("n")
        display = format_figure(fig_name, r.get("value"), unit)
        if status == "not_covered":
            display = "not covered"
        elif status == "skipped":
            display = "skipped"
        elif n is not None and r.get("value") is None:
            display = "n/a"  # (a statistical figure's n is shown beside it: figures[].n)
        figures.append({
            "n": n,
            "figure": fig_name,
            "label": r.get("label") or fig_name.replace("_", " "),
            "value": r.get("value"),
            "baseline": r.get("baseline"),
            "baseline_days": r.get("baseline_days"),
            "status": status,
            "threshold": r.get("threshold") or "",
            "unit": unit,
            "display": display,
            "baseline_display": format_figure(fig_name, r.get("baseline"), unit)
            if r.get("baseline") is not None else "n/a",
        })
    figures_main, figures_by_path = _group_path_figures(figures)
    not_covered = [f for f in figures_main if f["status"] == "not_covered"]
    figures_main = [f for f in figures_main if f["status"] != "not_covered"]
    if figures_by_path and all(r["status"] == "not_covered" for r in figures_by_path):
        figures_by_path = []
    statuses = [f["status"] for f in figures if f["status"] in STATUS_RANK]
    # never green on data nobody could rate: without a covered, rated figure about the venue
    # (a clean data-quality gate is not one) the day is insufficient_data
    from venue_risk.metrics.summary import DATA_QUALITY_FIGURES

    venue_rated = [f for f in figures if f["status"] in STATUS_RANK and f["figure"] not in DATA_QUALITY_FIGURES]
    overall = max(statuses, key=STATUS_RANK.get) if venue_rated else "insufficient_data"
    status_counts = {s: [f["status"] for f in figures].count(s)
                     for s in ("red", "amber", "green", "not_covered", "insufficient_data", "skipped")}
    sections = {}
    for name, needs in SECTION_NEEDS.items():
        state, missing, window = needs_state(needs, coverage) if coverage else ("complete", [], None)
        sections[name] = {"state": state, "missing": [m.replace(".", " column ") for m in missing],
                          "window": window.label() if window else None}
    from venue_risk.coverage import derived_index_skips

    index_skips = derived_index_skips(coverage)
    if index_skips:
        sections["index"]["note"] = (
            "Index checks skipped: the source has no published index. index_price was reconstructed "
            "by the importer from the index components it was given, so the venue's own index rule "
            "and basket cannot be tested (gap to the rule, broken and single-source scenarios). Mark "
            "basis, mark lag and source staleness below are measured on the reconstructed series.")
    scope = report_scope(coverage) if coverage else {"kind": "full", "absent": [], "partial": {},
                                                      "window": None, "sentence": ""}

    # liquidations and slippage
    paths = _path_summary(sbp)
    liq_count = sum(int(p.get("count") or 0) for p in paths)
    liq_notional = sum(float(p.get("notional") or 0) for p in paths)
    beyond_count = sum(int(p.get("beyond_bankruptcy_count") or 0) for p in paths)
    exe_cols = ["liquidation_id", "symbol", "path", "side", "account", "leverage", "order_notional",
                "filled_notional", "slippage_bps", "fill_ratio", "time_to_complete_s",
                "size_to_depth", "beyond_bankruptcy_qty", "shortfall"]
    top_liqs = _top(exe, "slippage_bps", exe_cols, n=TOP_N)
    for r in top_liqs:
        r["account"] = pseudonymize(r.get("account"), key)
    worst = top_liqs[0] if top_liqs else None
    if worst is None and _has(sbp, "slippage_bps_max"):
        w = sbp.filter(pl.col("symbol") != ALL_SYMBOLS) if "symbol" in sbp.columns else sbp
        w = (w if w.height else sbp).sort("slippage_bps_max", descending=True, nulls_last=True).row(0, named=True)
        worst = {"slippage_bps": _clean(w["slippage_bps_max"]), "symbol": w.get("symbol"),
                 "path": w.get("path")}

    sbp_rows = _top(_all_first(sbp, "notional"), "", [
        "symbol", "path", "count", "notional", "slippage_bps_wmean", "slippage_bps_p50",
        "slippage_bps_p95", "slippage_bps_p99", "slippage_bps_max", "slippage_bps_es95", "fill_ratio",
        "ttc_p50_s", "ttc_p95_s", "beyond_bankruptcy_share", "beyond_bankruptcy_count"])
    if _has(sdb, "path", "size_to_depth_bin"):
        sdb_rows = _rows(sdb.sort(["path", "size_to_depth_bin"]),
                         ["path", "size_to_depth_bin", "count", "slippage_bps_wmean", "slippage_bps_p95"])
    else:
        sdb_rows = []

    # forced cost
    fcp_rows = _top(_all_first(fcp, "equity_lost"), "", ["symbol", "path", "count", "equity_lost", "cost_rate_wmean",
                                         "cost_rate_p95", "pct_initial_margin_p50",
                                         "pct_initial_margin_p95", "buffer_share_p50",
                                         "buffer_share_p95", "buffer_share_max",
                                         "buffer_exceeded_count"])
    fc_full = fc
    if _has(fc, "liquidation_id") and _has(exe, "liquidation_id") and "leverage" not in fc.columns:
        extra_cols = [c for c in ("liquidation_id", "leverage", "account", "side") if c in exe.columns]
        fc_full = fc.join(exe.select(extra_cols), on="liquidation_id", how="left")
    worst_costs = _top(fc_full, "buffer_share", ["liquidation_id", "symbol", "path", "leverage",
                                                 "cost_rate", "equity_lost", "pct_initial_margin",
                                                 "buffer_share", "margin_steps"], n=TOP_N)
    fund, fund_series = _insurance_fund(iff, ifb)
    sensitivity = _sensitivity(sens, exe)

    # history (trend of liquidated notional, today highlighted)
    hist = history if isinstance(history, pl.DataFrame) else pl.DataFrame()
    hist_rows = _rows(hist.sort(["date", "figure"]) if _has(hist, "date", "figure") else hist,
                      ["date", "figure", "value"])
    names = [f["figure"] for f in figures] + [r["figure"] for r in hist_rows]
    trend_fig = _liq_notional_figure(names)
    trend = {r["date"][:10]: r["value"] for r in hist_rows if r["figure"] == trend_fig
             and r["date"][:10] < day}
    today_fig = {f["figure"]: f["value"] for f in figures}.get(trend_fig)
    trend[day] = today_fig if _is_num(today_fig) else liq_notional
    trend_points = [{"date": d, "value": v} for d, v in sorted(trend.items())]

    # page one: a sparkline of the last SPARK_DAYS days per figure, what changed since yesterday,
    # the figures grouped by family; a verdict per section and the table of contents
    from venue_risk.report.charts import sparkline
    from venue_risk.report.page_one import SECTIONS, changes_since_yesterday, group_figures, section_verdicts

    past: dict[str, dict[str, float]] = {}
    for r in hist_rows:
        if r["date"][:10] < day:
            past.setdefault(r["figure"], {})[r["date"][:10]] = r["value"]
    for f in figures:
        days = sorted(past.get(f["figure"], {}))[-(SPARK_DAYS - 1):]
        values = [past[f["figure"]][d] for d in days] + [f["value"] if f["status"] != "not_covered" else None]
        svg = sparkline(values, f["status"])
        f["spark"] = ("data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()) if svg else ""
        f["spark_days"] = len(values)
    changes = changes_since_yesterday(figures, yesterday)
    figure_groups = group_figures(figures_main)
    verdicts = section_verdicts(figures)

    # per-liquidation series for the charts
    liq_series = _rows(exe, ["symbol", "path", "slippage_bps"]) if _has(exe, "path", "slippage_bps") else []
    fc_series = _rows(fc_full, ["path", "leverage", "buffer_share"]) \
        if _has(fc_full, "path", "leverage", "buffer_share") else []

    from venue_risk.report.market import market_context

    def covered(section: str) -> bool:
        return sections[section]["state"] != "absent"

    market = market_context(frames, day, covered)

    from venue_risk.report.account import account_context

    account = account_context(frames, key, covered)
    rebuild = next((f for f in figures if f["figure"] == "position_rebuild_mismatches"), None)
    if rebuild is not None and rebuild["status"] == "skipped":
        # a check that did not run is never reported as passed
        account["order_flow"]["rebuild_sentence"] = (
            "Position rebuild check skipped (" + rebuild["threshold"].removeprefix("skipped: ")
            + "); reduce-only checks, which need the position before each fill, skipped with it.")
    narrative = _narrative(paths, worst, fund["total"], beyond_count, fund["has_flows"])
    if not covered("slippage"):
        narrative = ("Liquidations: not covered. The source does not carry "
                     + ", ".join(sections["slippage"]["missing"]) + ", so this report says nothing about "
                     "liquidations, ADL or the insurance fund (not that there were none).")

    context = {
        "date": day,
        "venue_name": str(venue_name),
        "overall_status": overall,
        "status_counts": status_counts,
        "sections": sections,
        "scope": scope,
        "coverage": coverage or {},
        "figures": figures,
        "figures_main": figures_main,
        "figures_not_covered": not_covered,
        "figures_by_path": figures_by_path,
        "figure_groups": figure_groups,
        "changes": changes,
        "max_changes": MAX_CHANGES,
        "yesterday_reported": yesterday is not None,
        "verdicts": verdicts,
        "contents": [{"anchor": a, "title": t} for a, t, _ in SECTIONS],
        "narrative": narrative,
        "market_narrative": market["market_narrative"],
        "crowding": market["crowding"],
        "index": market["index"],
        "drift": market["drift"],
        "account_narrative": account["account_narrative"],
        "order_flow": account["order_flow"],
        "anomalies": account["anomalies"],
        "cross_margin": account["cross_margin"],
        "bands": account["bands"],
        "api": account["api"],
        "liquidation_count": liq_count,
        "liquidated_notional": liq_notional,
        "beyond_bankruptcy_count": beyond_count,
        "paths": paths,
        "slippage_by_path": sbp_rows,
        "slippage_by_path_total_rows": sbp.height,
        "slippage_by_depth_bin": sdb_rows,
        "depth_comparison": _depth_comparison(sdb_rows),
        "top_liquidations": top_liqs,
        "forced_cost_by_path": fcp_rows,
        "forced_cost_by_path_total_rows": fcp.height,
        "worst_forced_costs": worst_costs,
        "insurance_fund": fund,
        "sensitivity": sensitivity,
        "data_quality": _data_quality(data_quality),
        "methodology": _clean(dict(methodology or {})),
        "run_meta": _run_meta(run_meta),
        "history": {"days": len({r["date"][:10] for r in hist_rows}), "trend_figure": trend_fig,
                    "rows": hist_rows},
        "series": {
            "liquidations": liq_series,
            "forced_costs": fc_series,
            "insurance_fund_balance": fund_series,
            "liquidation_notional_trend": trend_points,
        },
        "pseudonymized": key is not None,
        "pseudonym_note": pseudonym_note,
        "top_n": TOP_N,
    }
    return context


def summary_json(context: dict) -> dict:
    """The machine-readable summary (summary.json): date, overall status, headline figures with
    their display strings, liquidations by path, insurance fund, data quality, run metadata."""
    dq = context["data_quality"]
    return _clean({
        "date": context["date"],
        "venue_name": context["venue_name"],
        "overall_status": context["overall_status"],
        "narrative": context["narrative"],
        "market_narrative": context.get("market_narrative", []),
        "account_narrative": context.get("account_narrative", []),
        "figures": {f["figure"]: {
            "label": f["label"], "value": f["value"], "baseline": f["baseline"],
            "baseline_days": f["baseline_days"], "status": f["status"], "threshold": f["threshold"],
            "n": f.get("n"),
            "unit": f["unit"], "display": f["display"], "baseline_display": f["baseline_display"],
        } for f in context["figures"]},
        "liquidations": {
            "count": context["liquidation_count"],
            "notional": context["liquidated_notional"],
            "beyond_bankruptcy_count": context["beyond_bankruptcy_count"],
            "by_path": {p["path"]: {k: v for k, v in p.items() if k != "path"} for p in context["paths"]},
        },
        "insurance_fund": {"total": context["insurance_fund"]["total"],
                           "pools": context["insurance_fund"]["pools"]},
        "data_quality": {"status": dq["status"], "checks_total": dq["checks_total"],
                         "checks_failed": dq["checks_failed"],
                         "quarantined_total": dq["quarantined_total"],
                         "quarantined": dq["quarantined"]},
        "run": {k: v for k, v in context["run_meta"].items()},
        "tables": context.get("csv") or {},
        "methods": {"version": (context.get("methodology") or {}).get("version"),
                    "files": (context.get("methodology") or {}).get("files") or {}},
        "scope": context.get("scope"),
        "coverage": {d: {k: c.get(k) for k in ("state", "rows", "first_ts", "last_ts", "largest_gap_s",
                                              "window_start", "window_end", "missing_columns")}
                     for d, c in (context.get("coverage") or {}).items()},
        "baseline": context.get("baseline"),
        "baseline_missing_days": (context.get("baseline") or {}).get("missing_days", []),
    })
