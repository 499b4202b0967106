"""Report charts: matplotlib figures rendered to SVG strings (vector, text kept as text), built
from the plain-Python report context (never from frames), so the HTML and the PDF carry crisp
charts and a chart can be re-drawn from a saved context.

Every chart renders with zero rows: it then shows a labelled empty panel ("No liquidations on this
day") instead of raising. Labels coming from data are drawn as plain text (mathtext off), and the
SVG writer escapes them, so a hostile symbol name cannot inject markup.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates  # noqa: E402
import matplotlib.lines  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# One palette for every chart, safe for colour-blind readers (Okabe and Ito's eight colours):
# a path keeps its colour across charts, and every chart also labels what a colour means.
PATH_ORDER = ("incremental", "auction", "market", "backstop", "adl")
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#7d6608", "#000000")
ACCENT = "#d55e00"
#: Status colours (also written as a word wherever they appear): bluish green, orange, vermillion.
STATUS_RAG = {"green": "#009e73", "amber": "#e69f00", "red": "#d55e00"}
MUTED = "#9aa7b3"
INK = "#1d2733"
WIDTH_IN = 6.7   # A4 content width (170 mm) in inches

STYLE = {
    "svg.fonttype": "none",          # text stays text (searchable, crisp)
    "svg.hashsalt": "venue-risk",    # deterministic element ids: same input, same SVG
    "text.parse_math": False,        # a '$' in a symbol name is text, not mathtext
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 8,
    "axes.labelcolor": INK,
    "axes.edgecolor": "#b9c2cc",
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "axes.axisbelow": True,
    "grid.color": "#e3e8ed",
    "grid.linewidth": 0.6,
    "xtick.color": INK,
    "ytick.color": INK,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "figure.dpi": 100,
}

NO_LIQUIDATIONS = "No liquidations on this day"
MAX_POINTS = 400  # points drawn per path; the box and the tables use every liquidation


def _sample(values: list[float], limit: int, keep=lambda v: False) -> list[float]:
    """At most `limit` values, evenly spaced in sorted order (min and max kept), plus every value
    for which keep(v) holds: a readable, deterministic picture of a large day."""
    if len(values) <= limit:
        return list(values)
    ordered = sorted(values)
    step = (len(ordered) - 1) / (limit - 1)
    picked = {round(k * step) for k in range(limit)}
    return [v for i, v in enumerate(ordered) if i in picked or keep(v)]


def path_colors(paths: list[str]) -> dict[str, str]:
    """A stable colour per liquidation path (known paths first, in the venue's order)."""
    known = [p for p in PATH_ORDER]
    extra = sorted(p for p in set(paths) if p not in known)
    return {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(known + extra)}


def order_paths(paths) -> list[str]:
    """Paths in the venue's order (incremental, auction, market, backstop, adl), others after."""
    paths = list(dict.fromkeys(str(p) for p in paths))
    rank = {p: i for i, p in enumerate(PATH_ORDER)}
    return sorted(paths, key=lambda p: (rank.get(p, len(rank)), p))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _figure(height: float = 2.5) -> tuple[Figure, Any]:
    with plt.rc_context(STYLE):
        fig = Figure(figsize=(WIDTH_IN, height))
        ax = fig.add_subplot(1, 1, 1)
    return fig, ax


def _day_timeline_axes(ax, rows: list[str]) -> None:
    """A 24-hour UTC x axis (ticks every 3 h) with one labelled row per entry of `rows`."""
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xticklabels([f"{h:02d}:00" for h in range(0, 25, 3)])
    ax.grid(True, axis="x")
    ax.grid(False, axis="y")


def to_svg(fig: Figure) -> str:
    """The figure as an SVG document (no XML prolog/doctype, no metadata: the same chart
    gives the same bytes), width-responsive."""
    buf = io.StringIO()
    with plt.rc_context(STYLE):
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.04,
                    metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    # Let CSS size the chart: drop the fixed width/height, keep the viewBox.
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="chart"', svg, count=1)
    return svg


def empty_panel(title: str, message: str = NO_LIQUIDATIONS, height: float = 1.2) -> str:
    """A titled panel that says why there is no chart."""
    with plt.rc_context(STYLE):
        fig, ax = _figure(height)
        ax.set_axis_off()
        ax.set_title(title)
        ax.text(0.5, 0.45, message, ha="center", va="center", fontsize=10, color="#5a6877",
                transform=ax.transAxes)
        ax.add_patch(matplotlib.patches.FancyBboxPatch(
            (0.01, 0.05), 0.98, 0.8, boxstyle="round,pad=0.0,rounding_size=0.02",
            transform=ax.transAxes, fill=True, facecolor="#f4f6f8", edgecolor="#d5dce3",
            linewidth=0.6, zorder=-1))
        return to_svg(fig)


def _safe(build: Callable[[], str], title: str) -> str:
    """Charts never stop a report: a chart that fails to draw becomes a panel saying so."""
    try:
        return build()
    except Exception as exc:  # pragma: no cover - defensive
        return empty_panel(title, f"chart unavailable: {type(exc).__name__}")


# -- charts -------------------------------------------------------------------------------------

def slippage_distribution(liquidations: list[dict], p95_by_path: dict[str, float]) -> str:
    """Per-liquidation slippage (bps, positive = adverse) per path: box plus points, p95 marked."""
    title = "Slippage per liquidation, by path"
    rows = [r for r in liquidations if _finite(r.get("slippage_bps"))]
    if not rows:
        return empty_panel(title)

    def build() -> str:
        with plt.rc_context(STYLE):
            paths = order_paths(r["path"] for r in rows)
            colors = path_colors(paths)
            fig, ax = _figure(2.6)
            data = [[r["slippage_bps"] for r in rows if r["path"] == p] for p in paths]
            for i, (p, vals) in enumerate(zip(paths, data)):
                shown = _sample(vals, MAX_POINTS)
                n = len(shown)
                # deterministic jitter (no RNG): spread points evenly across the box width
                xs = [i - 0.2 + 0.4 * ((k * 0.618034) % 1.0) for k in range(n)]
                ax.scatter(xs, shown, s=8 if n < 150 else 3, color=colors[p], alpha=0.55,
                           linewidths=0, zorder=2)
                p95 = p95_by_path.get(p)
                if _finite(p95):
                    ax.plot([i - 0.34, i + 0.34], [p95, p95], color=ACCENT, linewidth=1.6, zorder=5)
            ax.boxplot(data, positions=range(len(paths)), widths=0.5, showfliers=False,
                       whis=(5, 95), patch_artist=True, zorder=4,
                       boxprops={"facecolor": "none", "edgecolor": INK, "linewidth": 0.8},
                       medianprops={"color": INK, "linewidth": 1.3},
                       whiskerprops={"color": INK, "linewidth": 0.7},
                       capprops={"color": INK, "linewidth": 0.7})
            ax.axhline(0, color="#7d8b99", linewidth=0.6)
            ax.set_xticks(range(len(paths)))
            ax.set_xticklabels([f"{p}\nn={len(v)}" + (f", p95 {p95_by_path[p]:,.1f} bps"
                                                          if _finite(p95_by_path.get(p)) else "")
                                for p, v in zip(paths, data)], fontsize=7)
            ax.set_xlim(-0.6, len(paths) - 0.4)
            ax.set_ylabel("slippage vs mark at trigger (bps)")
            ax.set_title(title + "  (box: p25-p75, whiskers p5-p95, red line: p95)")
            return to_svg(fig)

    return _safe(build, title)


DEPTH_BINS = ("<0.1", "0.1-0.5", "0.5-1", "1-2", ">=2")


def slippage_by_depth_bin(rows: list[dict]) -> str:
    """Grouped bars: notional-weighted mean slippage per size-to-depth bin, one bar per path,
    with each group's p95 as a tick above the bar."""
    title = "Slippage by order size relative to book depth within 1%"
    rows = [r for r in rows if _finite(r.get("slippage_bps_wmean")) and (r.get("count") or 0) > 0]
    if not rows:
        return empty_panel(title)

    def build() -> str:
        with plt.rc_context(STYLE):
            paths = order_paths(r["path"] for r in rows)
            colors = path_colors(paths)
            present = {str(r["size_to_depth_bin"]) for r in rows}
            bins = [b for b in DEPTH_BINS if b in present] + sorted(present - set(DEPTH_BINS))
            fig, ax = _figure(2.5)
            width = 0.8 / max(len(paths), 1)
            lookup = {(r["path"], str(r["size_to_depth_bin"])): r for r in rows}
            for j, p in enumerate(paths):
                xs, ys, p95s = [], [], []
                for i, b in enumerate(bins):
                    r = lookup.get((p, b))
                    if r is None:
                        continue
                    x = i - 0.4 + width * (j + 0.5)
                    xs.append(x)
                    ys.append(r["slippage_bps_wmean"])
                    p95s.append(r.get("slippage_bps_p95"))
                ax.bar(xs, ys, width=width * 0.92, color=colors[p], label=p, zorder=2)
                for x, v in zip(xs, p95s):
                    if _finite(v):
                        ax.plot([x - width * 0.4, x + width * 0.4], [v, v], color=INK, linewidth=0.9,
                                zorder=3)
            ax.axhline(0, color="#7d8b99", linewidth=0.6)
            ax.set_xticks(range(len(bins)))
            ax.set_xticklabels(bins)
            ax.set_xlabel("order notional / book notional within 1% of mid (ratio)")
            ax.set_ylabel("slippage, notional-weighted mean (bps)")
            ax.set_title(title + "  (bar: weighted mean, tick: p95)")
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="path", title_fontsize=7.5)
            return to_svg(fig)

    return _safe(build, title)


def buffer_share_vs_leverage(points: list[dict]) -> str:
    """Scatter: share of the maintenance buffer (%) each forced execution consumed vs leverage.
    At 100% the liquidation ended at the bankruptcy price; above it the insurance fund paid."""
    title = "Forced-execution cost: maintenance buffer consumed, by leverage"
    pts = [p for p in points if _finite(p.get("buffer_share")) and _finite(p.get("leverage"))
           and p["leverage"] > 0]
    if not pts:
        return empty_panel(title)

    def build() -> str:
        with plt.rc_context(STYLE):
            paths = order_paths(p["path"] for p in pts)
            colors = path_colors(paths)
            fig, ax = _figure(2.6)
            for i, p in enumerate(paths):
                sel = [q for q in pts if q["path"] == p]
                if len(sel) > MAX_POINTS:  # keep every liquidation beyond bankruptcy
                    keep = {id(q) for q in sel if q["buffer_share"] >= 1.0}
                    step = max(1, len(sel) // MAX_POINTS)
                    sel = [q for k, q in enumerate(sel) if k % step == 0 or id(q) in keep]
                # small deterministic horizontal offset per path so paths at one leverage separate
                off = 1 + 0.04 * (i - (len(paths) - 1) / 2)
                ax.scatter([q["leverage"] * off for q in sel], [q["buffer_share"] * 100 for q in sel],
                           s=14 if len(sel) < 150 else 5, color=colors[p], alpha=0.75, linewidths=0,
                           label=p, zorder=3)
            top = max(q["buffer_share"] for q in pts) * 100
            ax.axhline(100.0, color=ACCENT, linewidth=1.1, linestyle="--", zorder=2)
            ax.axhspan(100.0, max(110.0, top * 1.12), color=ACCENT, alpha=0.06, zorder=0)
            ax.set_ylim(min(0.0, min(q["buffer_share"] for q in pts) * 110), max(125.0, top * 1.12))
            ax.text(0.995, 100.0, "100% = bankruptcy price; above it the insurance fund pays ",
                    transform=ax.get_yaxis_transform(), ha="right", va="bottom", fontsize=7,
                    color=ACCENT)
            levs = sorted({q["leverage"] for q in pts})
            if levs[-1] / max(levs[0], 1e-9) > 8:
                ax.set_xscale("log")
                ticks = [t for t in (1, 2, 3, 5, 10, 20, 50, 100, 125)
                         if levs[0] / 1.5 <= t <= levs[-1] * 1.5]
                ax.set_xticks(ticks)
                ax.set_xticklabels([f"{t}x" for t in ticks])
                ax.minorticks_off()
            ax.set_xlabel("position leverage (x)")
            ax.set_ylabel("maintenance buffer consumed (%)")
            ax.set_title(title)
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="path", title_fontsize=7.5)
            return to_svg(fig)

    return _safe(build, title)


def insurance_fund_balance(series: dict[str, list[list]]) -> str:
    """Insurance-fund balance through the day, one line per pool ({pool: [[time, balance]]})."""
    title = "Insurance fund balance through the day"
    series = {k: [pt for pt in v if _finite(pt[1])] for k, v in (series or {}).items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return empty_panel(title, "No insurance-fund balance series for this day")

    def build() -> str:
        import datetime as dt

        with plt.rc_context(STYLE):
            fig, ax = _figure(2.2)
            for i, (pool, pts) in enumerate(sorted(series.items())):
                xs = [dt.datetime.fromisoformat(t) for t, _ in pts]
                ax.plot(xs, [b for _, b in pts], color=PALETTE[i % len(PALETTE)], linewidth=1.2,
                        label=str(pool))
            ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%H:%M"))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.set_xlabel("time (UTC)")
            ax.set_ylabel("balance (USDT)")
            ax.set_title(title)
            if len(series) > 1:
                ax.legend(loc="best")
            return to_svg(fig)

    return _safe(build, title)


def liquidation_notional_trend(points: list[dict], today: str) -> str:
    """Bars of liquidated notional per day over the history, today highlighted."""
    title = "Liquidated notional per day (USDT), today highlighted"
    pts = sorted((p for p in points if _finite(p.get("value"))), key=lambda p: p["date"])
    if not pts:
        return empty_panel(title, "No history yet")
    if not any(p["value"] for p in pts):  # all zero: axes of a zero range would read "0 0 -0"
        return empty_panel(title, f"No liquidated notional on any of the {len(pts)} day(s)", height=1.0)

    def build() -> str:
        with plt.rc_context(STYLE):
            fig, ax = _figure(2.0)
            xs = list(range(len(pts)))
            colors = [ACCENT if p["date"] == today else MUTED for p in pts]
            ax.bar(xs, [p["value"] for p in pts], color=colors, width=0.7, zorder=2)
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: _compact(v)))
            every = max(1, math.ceil(len(pts) / 12))
            ticks = [i for i in xs if (len(pts) - 1 - i) % every == 0]  # counted back from today
            ax.set_xticks(ticks)
            ax.set_xticklabels([pts[i]["date"][5:] for i in ticks])
            ax.set_xlim(-0.6, len(pts) - 0.4)
            ax.set_ylabel("liquidated notional (USDT)")
            ax.set_xlabel(f"date (UTC, MM-DD): {len(pts)} day(s), today {today} in red")
            ax.set_title(title)
            return to_svg(fig)

    return _safe(build, title)


# -- market-side charts (DESIGN 4.3-4.5) --------------------------------------------------------

FUNDING_COLOR = "#0072b2"
VOL_COLOR = "#e69f00"
STATUS_COLORS = {"stale": "#e69f00", "outlier": ACCENT}
BUCKET_COLORS = {"low": "#a8c5dd", "mid": "#4f8bb8", "high": "#1d3f5e"}
MIN_WINDOW_S = 120.0  # an excluded window is drawn at least this wide (a 3-s window stays visible)


def funding_vs_vol(panels: list[dict], today: str) -> str:
    """Small multiples, one panel per symbol: funding paid per day (bars, bps/day, left axis)
    and realized volatility (line, %, right axis) over the trailing window, today highlighted
    (red bar, ringed point); crowded days' bars outlined."""
    title = "Funding and realized volatility per symbol"
    panels = [p for p in panels if any(_finite(q.get("funding_bps")) or _finite(q.get("realized_vol_pct"))
                                       for q in p.get("points", []))]
    if not panels:
        return empty_panel(title, "No funding or volatility data yet")

    def build() -> str:
        with plt.rc_context(STYLE):
            n = len(panels)
            cols = 2 if n > 1 else 1
            rows = math.ceil(n / cols)
            fig = Figure(figsize=(WIDTH_IN, 0.6 + 2.0 * rows))
            days = sorted({q["date"] for p in panels for q in p["points"]})
            pos = {d: i for i, d in enumerate(days)}
            for k, p in enumerate(panels):
                ax = fig.add_subplot(rows, cols, k + 1)
                pts = p["points"]
                xs = [pos[q["date"]] for q in pts]
                fb = [q.get("funding_bps") if _finite(q.get("funding_bps")) else 0.0 for q in pts]
                colors = [ACCENT if q["date"] == today else FUNDING_COLOR for q in pts]
                ax.bar(xs, fb, width=0.7, color=colors, zorder=2, alpha=0.9)
                ax.axhline(0, color="#7d8b99", linewidth=0.6)
                top = max([abs(v) for v in fb] + [1e-9])
                for x, v, q in zip(xs, fb, pts):
                    if q.get("crowded"):  # a marker above (or below) a crowded day's bar
                        ax.text(x, v + (0.04 * top if v >= 0 else -0.04 * top), "C", ha="center",
                                va="bottom" if v >= 0 else "top", fontsize=6.5, fontweight="bold",
                                color=INK)
                lo_v, hi_v = min(fb + [0.0]), max(fb + [0.0])
                ax.set_ylim(lo_v * 1.2, hi_v * 1.2 if hi_v > 0 else 1e-9)
                ax.set_ylabel("funding (bps/day)", color=FUNDING_COLOR, fontsize=7)
                ax.tick_params(axis="y", colors=FUNDING_COLOR, labelsize=6.5)
                ax2 = ax.twinx()
                vx = [pos[q["date"]] for q in pts if _finite(q.get("realized_vol_pct"))]
                vy = [q["realized_vol_pct"] for q in pts if _finite(q.get("realized_vol_pct"))]
                ax2.plot(vx, vy, color=VOL_COLOR, linewidth=1.4, marker="o", markersize=3, zorder=3)
                for x, y, q in zip(vx, vy, [q for q in pts if _finite(q.get("realized_vol_pct"))]):
                    if q["date"] == today:
                        ax2.plot([x], [y], marker="o", markersize=7, markerfacecolor="none",
                                 markeredgecolor=ACCENT, markeredgewidth=1.4, zorder=4)
                ax2.set_ylim(0, max(vy + [1.0]) * 1.25)
                ax2.set_ylabel("realized vol (%)", color=VOL_COLOR, fontsize=7)
                ax2.tick_params(axis="y", colors=VOL_COLOR, labelsize=6.5)
                ax2.spines["right"].set_visible(True)
                ax2.grid(False)
                every = max(1, math.ceil(len(days) / 6))
                ticks = [i for i in range(len(days)) if (len(days) - 1 - i) % every == 0]
                ax.set_xticks(ticks)
                ax.set_xticklabels([days[i][5:] for i in ticks], fontsize=6.5)
                ax.set_xlim(-0.6, len(days) - 0.4)
                ax.set_title(str(p["symbol"]), fontsize=8)
            fig.suptitle(f"{title}: bars funding paid (bps/day, left), line realized volatility "
                         f"(% annualized, right); today {today} in red; C = crowded day",
                         fontsize=7.5, x=0.01, ha="left", fontweight="bold")
            fig.tight_layout(rect=(0, 0, 1, 0.97 if rows > 1 else 0.93), w_pad=2.5, h_pad=1.0)
            return to_svg(fig)

    return _safe(build, title)


def exclusion_timeline(windows: list[dict], rows: list[str]) -> str:
    """Index sources excluded over the UTC day: one row per symbol / source, a bar per excluded
    window (amber stale, red outlier)."""
    title = "Index sources excluded over the day"
    wins = [w for w in windows if _finite(w.get("start_s")) and _finite(w.get("end_s"))]
    if not wins or not rows:
        return empty_panel(title, "No index source was stale or excluded today", height=1.0)

    def build() -> str:
        with plt.rc_context(STYLE):
            fig, ax = _figure(0.7 + 0.28 * len(rows))
            ypos = {r: i for i, r in enumerate(rows)}
            for status, color in STATUS_COLORS.items():
                bars = {}
                for w in wins:
                    if w["status"] != status:
                        continue
                    key = f"{w['symbol']} / {w['source']}"
                    if key not in ypos:
                        continue
                    width = max(w["end_s"] - w["start_s"], MIN_WINDOW_S)
                    bars.setdefault(key, []).append((w["start_s"] / 3600, width / 3600))
                for key, spans in bars.items():
                    ax.broken_barh(spans, (ypos[key] - 0.35, 0.7), facecolors=color, zorder=3)
                ax.bar([0], [0], color=color, label=status)  # legend handle
            _day_timeline_axes(ax, rows)
            ax.set_xlabel(f"time (UTC); windows shorter than {MIN_WINDOW_S / 60:.0f} min drawn "
                          f"{MIN_WINDOW_S / 60:.0f} min wide")
            ax.set_title(title + " (symbol / source)")
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="status", title_fontsize=7.5)
            return to_svg(fig)

    return _safe(build, title)


def fill_quality(rows: list[dict]) -> str:
    """Grouped bars per symbol x volatility bucket: effective spread (bps) and taker slippage vs
    mark (bps), side by side; fills degrade when the dark (high-vol) bar stands above the light."""
    title = "Fill quality by volatility bucket"
    rows = [r for r in rows if any(_finite((r.get("effective_spread_bps") or {}).get(b))
                                   for b in BUCKET_COLORS)]
    if not rows:
        return empty_panel(title, "No trades to measure fill quality", height=1.0)

    def build() -> str:
        with plt.rc_context(STYLE):
            fig = Figure(figsize=(WIDTH_IN, 2.3))
            syms = [str(r["symbol"]) for r in rows][:8]
            width = 0.8 / len(BUCKET_COLORS)
            for k, (col, label) in enumerate((("effective_spread_bps", "effective spread (bps)"),
                                              ("taker_slippage_bps", "taker slippage vs mark (bps)"))):
                ax = fig.add_subplot(1, 2, k + 1)
                for j, (b, color) in enumerate(BUCKET_COLORS.items()):
                    xs, ys = [], []
                    for i, r in enumerate(rows[:8]):
                        v = (r.get(col) or {}).get(b)
                        if _finite(v):
                            xs.append(i - 0.4 + width * (j + 0.5))
                            ys.append(v)
                    ax.bar(xs, ys, width=width * 0.92, color=color, label=f"{b} vol", zorder=2)
                ax.axhline(0, color="#7d8b99", linewidth=0.6)
                ax.set_xticks(range(len(syms)))
                ax.set_xticklabels(syms, fontsize=7)
                ax.set_title(label, fontsize=8)
                if k == 0:
                    handles, labels = ax.get_legend_handles_labels()
            fig.suptitle(title + " (mean per trade)", fontsize=8, x=0.01, y=0.99, ha="left",
                         fontweight="bold")
            fig.legend(handles, labels, loc="upper right", bbox_to_anchor=(0.995, 1.0), ncols=3,
                       fontsize=7)
            fig.tight_layout(rect=(0, 0, 1, 0.9), w_pad=2.0)
            return to_svg(fig)

    return _safe(build, title)


# -- account-side charts (DESIGN 4.7, 4.9) ------------------------------------------------------

SEVERITY_COLORS = {"high": "#d55e00", "medium": "#e69f00", "low": "#56b4e9"}
MIN_INCIDENT_S = 600.0  # an incident is drawn at least 10 minutes wide


def anomaly_timeline(incidents: list[dict], rows: list[str]) -> str:
    """Early-warning incidents over the UTC day: one row per symbol, a bar per incident on every
    symbol it involves (colour = severity), a multi-symbol incident joined by a vertical line."""
    title = "Early-warning incidents over the day"
    if not rows:
        return empty_panel(title, "No minute features scored today", height=1.0)
    incs = [i for i in incidents if _finite(i.get("start_s")) and _finite(i.get("end_s"))]

    def build() -> str:
        with plt.rc_context(STYLE):
            fig, ax = _figure(0.75 + 0.24 * len(rows))
            ypos = {r: k for k, r in enumerate(rows)}
            order = {"low": 0, "medium": 1, "high": 2}
            for inc in sorted(incs, key=lambda i: order.get(str(i.get("severity")), 0)):
                color = SEVERITY_COLORS.get(str(inc.get("severity")), MUTED)
                a = inc["start_s"] / 3600
                w = max(inc["end_s"] - inc["start_s"], MIN_INCIDENT_S) / 3600
                ys = [ypos[s] for s in inc.get("symbols") or [] if s in ypos]
                for y in ys:
                    ax.broken_barh([(a, w)], (y - 0.32, 0.64), facecolors=color, edgecolor=INK,
                                   linewidth=0.3, zorder=3)
                if len(ys) > 1:
                    ax.plot([a + w / 2] * 2, [min(ys), max(ys)], color=color, linewidth=1.0, zorder=2)
            for sev, color in SEVERITY_COLORS.items():
                ax.bar([0], [0], color=color, label=sev)  # legend handle
            _day_timeline_axes(ax, rows)
            ax.set_xlabel(f"time (UTC); incidents shorter than {MIN_INCIDENT_S / 60:.0f} min drawn "
                          f"{MIN_INCIDENT_S / 60:.0f} min wide" + ("" if incs else "; no incident today"))
            ax.set_title(title + " (colour: severity)")
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="severity", title_fontsize=7.5)
            return to_svg(fig)

    return _safe(build, title)


def liquidations_at_risk(curves: list[dict]) -> str:
    """Cumulative liquidation notional against the adverse distance from the end-of-day mark,
    per symbol: longs to the left (price falls), shorts to the right (price rises), +-20 %."""
    title = "Liquidations at risk: cumulative liquidation notional by distance from mark"
    curves = [c for c in curves if any(_finite(p[1]) and p[1] > 0 for p in c.get("points") or [])]
    if not curves:
        return empty_panel(title, "No open position within 20% of its liquidation price", height=1.0)

    def build() -> str:
        with plt.rc_context(STYLE):
            fig, ax = _figure(2.3)
            syms = list(dict.fromkeys(c["symbol"] for c in curves))
            colors = {s: PALETTE[k % len(PALETTE)] for k, s in enumerate(syms)}
            labelled: set[str] = set()
            for c in curves:
                pts = sorted([[0.0, 0.0]] + [p for p in c["points"] if _finite(p[1])], key=lambda p: p[0])
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colors[c["symbol"]], linewidth=1.3,
                        label=None if c["symbol"] in labelled else c["symbol"])
                labelled.add(c["symbol"])
            ax.axvline(0, color="#7d8b99", linewidth=0.8)
            top = ax.get_ylim()[1]
            ax.text(-0.5, top * 0.97, "longs liquidated as price falls", ha="right", va="top", fontsize=6.8,
                    color="#5a6877")
            ax.text(0.5, top * 0.97, "shorts liquidated as price rises", ha="left", va="top", fontsize=6.8,
                    color="#5a6877")
            ax.set_xlim(-20.5, 20.5)
            ax.set_xticks(range(-20, 21, 5))
            ax.set_xticklabels([f"{x:+d}%" if x else "mark" for x in range(-20, 21, 5)])
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: _compact(v)))
            ax.set_xlabel("price move from the end-of-day mark")
            ax.set_ylabel("cumulative liquidation\nnotional (USDT)")
            ax.set_title(title)
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="symbol", title_fontsize=7.5)
            return to_svg(fig)

    return _safe(build, title)


def cascade_amplification(series: list[dict], shocks: list[float]) -> str:
    """Cascade amplification (final move / shock) by shock size, one line per shock symbol, price
    down (left panel) and up (right panel); 1.0 = no cascade."""
    title = "Cascade amplification by shock size"
    series = [s for s in series if any(_finite(p[1]) for p in s.get("points") or [])]
    if series and not any(abs(p[1] - 1.0) > 1e-12 for s in series for p in s["points"] if _finite(p[1])):
        return empty_panel(title, "No cascade: every shock stays at 1.0x (no position it would liquidate)",
                           height=1.0)
    if not series:
        return empty_panel(title, "No cascade computed today (no positions or no book depth)", height=1.0)

    def build() -> str:
        with plt.rc_context(STYLE):
            fig = Figure(figsize=(WIDTH_IN, 2.2))
            syms = list(dict.fromkeys(s["symbol"] for s in series))
            colors = {s: PALETTE[k % len(PALETTE)] for k, s in enumerate(syms)}
            vals = [p[1] for s in series for p in s["points"] if _finite(p[1])]
            lo, hi = min(vals + [1.0]), max(vals + [1.0])
            pad = max((hi - lo) * 0.12, 0.005)
            axes = []
            for k, (direction, label) in enumerate(((-1, "price down"), (1, "price up"))):
                ax = fig.add_subplot(1, 2, k + 1, sharey=axes[0] if axes else None)
                axes.append(ax)
                for s in series:
                    if s["direction"] != direction:
                        continue
                    pts = [p for p in s["points"] if _finite(p[1])]
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                            linewidth=1.3, color=colors[s["symbol"]], label=s["symbol"])
                ax.axhline(1.0, color="#7d8b99", linewidth=0.7, linestyle="--")
                ax.set_xticks([x for x in shocks])
                ax.set_xticklabels([f"{x:g}%" for x in shocks])
                ax.set_xlabel(f"shock to the symbol ({label})")
                ax.set_ylim(lo - pad, hi + pad)
                ax.set_title(label, fontsize=8)
                if k == 0:
                    ax.set_ylabel("amplification\n(final move / shock)")
            handles = [matplotlib.lines.Line2D([], [], color=colors[s], marker="o", markersize=3, label=s)
                       for s in syms]
            fig.suptitle(title + " (1.0 = the shock alone, dashed)", fontsize=8, x=0.01, y=0.99,
                         ha="left", fontweight="bold")
            fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0),
                       ncols=min(len(syms), 6), fontsize=7, title=None, frameon=False)
            fig.tight_layout(rect=(0, 0.08, 1, 0.93), w_pad=2.0)
            return to_svg(fig)

    return _safe(build, title)


def sparkline(values: list[float | None], status: str | None = None, width: float = 100.0,
              height: float = 18.0) -> str:
    """A small inline SVG of a figure's recent days (oldest first, today last): a polyline through
    the finite values scaled to their min-max range (a flat series is drawn mid-height), today's
    point as a dot in its status colour (STATUS_RAG; grey when not rated). Fewer than two finite
    values: an empty string (nothing to draw)."""
    points = [(i, float(v)) for i, v in enumerate(values) if _finite(v)]
    if len(points) < 2:
        return ""
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    span_x = max(len(values) - 1, 1)
    pad = 2.0

    def xy(i: int, v: float) -> tuple[float, float]:
        y = height / 2 if hi == lo else pad + (hi - v) / (hi - lo) * (height - 2 * pad)
        return pad + i / span_x * (width - 2 * pad), y

    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in points))
    last_i, last_v = points[-1]
    cx, cy = xy(last_i, last_v)
    colour = STATUS_RAG.get(status or "", "#7d8b99")
    return (f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}" '
            f'width="{width:g}" height="{height:g}" role="img" aria-label="last {len(values)} days">'
            f'<polyline points="{coords}" fill="none" stroke="#5a6877" stroke-width="1.2"/>'
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.4" fill="{colour}"/></svg>')


def _compact(v: float) -> str:
    a = abs(v)
    for div, suf in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:,.1f}{suf}"
    return f"{v:,.0f}"


CHARTS = (
    "slippage_distribution",
    "slippage_by_depth_bin",
    "buffer_share_vs_leverage",
    "insurance_fund_balance",
    "liquidation_notional_trend",
    "funding_vs_vol",
    "exclusion_timeline",
    "fill_quality",
    "anomaly_timeline",
    "liquidations_at_risk",
    "cascade_amplification",
)


def build_charts(context: dict) -> dict[str, str]:
    """Every chart of the report as {name: svg}, from the report context."""
    series = context.get("series", {})
    p95 = {r["path"]: r.get("slippage_bps_p95") for r in context.get("paths", [])}
    return {
        "slippage_distribution": slippage_distribution(series.get("liquidations", []), p95),
        "slippage_by_depth_bin": slippage_by_depth_bin(context.get("slippage_by_depth_bin", [])),
        "buffer_share_vs_leverage": buffer_share_vs_leverage(series.get("forced_costs", [])),
        "insurance_fund_balance": insurance_fund_balance(series.get("insurance_fund_balance", {})),
        "liquidation_notional_trend": liquidation_notional_trend(
            series.get("liquidation_notional_trend", []), context["date"]),
        "funding_vs_vol": funding_vs_vol((context.get("crowding") or {}).get("series", []), context["date"]),
        "exclusion_timeline": exclusion_timeline((context.get("index") or {}).get("timeline", []),
                                                 (context.get("index") or {}).get("timeline_rows", [])),
        "fill_quality": fill_quality((context.get("drift") or {}).get("fill_quality", [])),
        "anomaly_timeline": anomaly_timeline((context.get("anomalies") or {}).get("timeline", []),
                                             (context.get("anomalies") or {}).get("timeline_rows", [])),
        "liquidations_at_risk": liquidations_at_risk((context.get("bands") or {}).get("lar_curves", [])),
        "cascade_amplification": cascade_amplification(
            (context.get("bands") or {}).get("cascade_series", []),
            (context.get("bands") or {}).get("cascade_shocks", [2.0, 5.0, 10.0, 20.0])),
    }
