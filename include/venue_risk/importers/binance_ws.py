"""`venue-risk import binance-ws`: raw Binance WebSocket captures (hftbacktest format) into the
canonical `files` layout.

Input lines are `<local_recv_ns> <json>`; the JSON is the combined-stream envelope
`{"stream": "<sym>@trade|@bookTicker|@depth@0ms|@depth@100ms", "data": {...}}`, or a REST depth
snapshot `{"lastUpdateId": .., "bids": .., "asks": ..}` (anywhere in the file, usually near the top
of the first day's file).

Market of each input (`classify`): decided from the messages, checked against the folder name.
- COIN-M when the symbol ends in `_PERP` (or the messages carry the pair field `ps`);
- else USD-M when trade messages carry the order-type field `X` or depth events carry `pu`
  (futures only); spot when trade messages carry `M` (spot only) or depth events lack `pu`;
- a parent folder named `usdm`/`um`/`futures`, `cm`/`coinm` or `spot` decides when the messages do
  not (no trade or depth message); a folder contradicting the messages is an error.
USD-M perps are the report's instruments; spot and COIN-M captures of the same base asset are
the index sources `binance-spot` and `binance-coinm` of the USD-M symbol `<BASE>USDT`
(COIN-M prices are in USD, spot and USD-M in USDT; the USD/USDT basis is left in).

Datasets written (per UTC day; `day` keeps one day):
- trades (USD-M): ts = trade time T, trade_id t, price p, qty q, taker_side = "sell" if m (the
  buyer is the maker) else "buy"; order ids, accounts, fees and liquidation_id are null (the
  public stream has none; the manifest declares the account columns missing).
- index_components: each source's trades: ts = event time E, received_ts = the capture's local
  receive time, price = trade price p (last-trade prices, as Binance's own index uses the
  constituents' last prices; a trade carries an exchange time, spot bookTicker does not), weight
  1/n over the n sources of the symbol. Rows sharing a received microsecond keep the last.
- mark_index, one row per whole second t of the covered window, each value the last one at or
  before t: best_bid/best_ask = last bookTicker (by its transaction time T), last_price = last
  trade; index_price = the project's index rule (`venue_risk.index_rule`, the instrument's
  outlier/stale/min-sources settings) on the components by receive time; mark_price =
  Binance's published rule as far as the capture allows:
      mark = median(P1, P2, last_price),
      P1 = index x (1 + funding_rate x time_to_funding / 8 h)  = index (no funding stream: 0),
      P2 = index + MA_300s(mid - index),   mid = (best_bid + best_ask) / 2,
  the moving average over the seconds of the last 5 minutes present in the capture (fewer at
  its start); the median is over the available prices (no trade yet: the mean of P1 and P2).
- book_depth, every whole minute: the USD-M book from the REST snapshot + depth diff events
  (Binance futures rules: drop events with u < lastUpdateId; the first applied event has
  U <= lastUpdateId <= u; afterwards each event's pu equals the previous event's u; a break is a
  gap: no depth is emitted after it, as the capture holds no new snapshot). The book at minute t
  applies every event with E <= t. Per band b of BANDS (% from mid = (best bid + best ask) / 2):
  depth = sum of quantities of the levels between the mid and mid x (1 -/+ b / 100), notional =
  sum of price x quantity over them; bids signed negative. A 1000-level snapshot spans only a
  fraction of a percent: levels beyond its deepest bid / ask are unknown, so a band is written
  only when both of its edges lie inside the snapshot's range (else the depth would be
  understated); the manifest note says which bands were written.
- instruments, risk_tiers from the reference file (`importers.reference`) for every day written.
Window of every dataset on a day: the exchange-time span (E) of the captures behind it, clipped
to that UTC day.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from venue_risk.index_rule import compute_index, source_matrix
from venue_risk.importers.layout import set_venue, write_dataset
from venue_risk.importers.reference import reference_label, reference_tables
from venue_risk.simulate.config import BANDS

FORMAT = "binance-ws"
VENUE = "Binance USD-M futures (public WebSocket capture)"
USDM, COINM, SPOT = "usdm", "coinm", "spot"
SOURCE_NAMES = {SPOT: "binance-spot", COINM: "binance-coinm"}
FOLDER_HINTS = {"usdm": USDM, "um": USDM, "futures": USDM, "cm": COINM, "coinm": COINM, "spot": SPOT}
MARK_MA_S = 300  # Binance: 5-minute moving average of the basis
TS_US = pl.Datetime("us", "UTC")
_E_RE = re.compile(rb"\"E\":\s*(\d+)")

#: Columns of trades the public stream cannot fill (declared missing in the manifest).
TRADES_MISSING = ["taker_order_id", "maker_order_id", "taker_account", "maker_account",
                  "taker_fee", "maker_fee"]


# ---------------------------------------------------------------------------------------------
# parsing

@dataclass
class Capture:
    """One input file: its market, symbol and the messages the import needs (plain lists)."""

    path: Path
    market: str = ""
    symbol: str = ""
    e_min: int | None = None  # exchange-time span (E, ms)
    e_max: int | None = None
    trades: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    tickers: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    depth: list[tuple] = field(default_factory=list)  # (E, U, u, pu, bids, asks)
    snapshot: dict | None = None

    @property
    def base(self) -> str:
        """Base asset: BTCUSDT -> BTC, BTCUSD_PERP -> BTC."""
        s = self.symbol.upper()
        for suffix in ("USD_PERP", "USDT"):
            if s.endswith(suffix):
                return s[: -len(suffix)]
        return s


def _open_lines(path: Path):
    """Lines (bytes) of a capture, gzip or plain."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _fail(path: Path, lineno: int, why: str) -> ValueError:
    return ValueError(f"{path}: line {lineno}: {why} (expected '<local_recv_ns> <json>' with a "
                      "Binance combined-stream envelope or a REST depth snapshot)")


def read_capture(path: Path) -> Capture:
    """Parse one capture: trades and bookTickers as column lists, depth events as tuples, the REST
    snapshot, the E span; the market by `classify`. Only USD-M book messages are decoded fully
    (spot/COIN-M files contribute their trades to the index)."""
    cap = Capture(Path(path))
    hints: dict[str, bool] = {}
    pending_book: list[tuple[int, int, bytes]] = []  # (lineno, recv, json) of book lines
    with _open_lines(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            raw = raw.strip()
            if not raw:
                continue
            head, sep, body = raw.partition(b" ")
            try:
                recv = int(head)
            except ValueError:
                raise _fail(path, lineno, f"first field {head[:40]!r} is not an integer receive time") from None
            if not sep:
                raise _fail(path, lineno, "no JSON after the receive time")
            if b'"stream"' not in body[:80]:
                msg = _loads(path, lineno, body)
                if "lastUpdateId" not in msg:
                    raise _fail(path, lineno, "neither a stream envelope nor a depth snapshot")
                cap.snapshot = {"recv": recv, "L": int(msg["lastUpdateId"]), "E": msg.get("E"),
                                "bids": msg["bids"], "asks": msg["asks"], "line": lineno}
                continue
            m = _E_RE.search(body)
            if m:
                e = int(m.group(1))
                cap.e_min = e if cap.e_min is None or e < cap.e_min else cap.e_min
                cap.e_max = e if cap.e_max is None or e > cap.e_max else cap.e_max
            if b"@trade" in body[:60]:
                msg = _loads(path, lineno, body)
                d = _data(path, lineno, msg)
                try:
                    _note_symbol(cap, d["s"], path, lineno)
                    if "ps" in d or d["s"].endswith("_PERP"):
                        hints.setdefault("coinm", True)
                    if "X" in d:
                        hints.setdefault("futures", True)
                    if "M" in d:
                        hints.setdefault("spot", True)
                    t = cap.trades
                    t["T"].append(int(d["T"]))
                    t["E"].append(int(d["E"]))
                    t["id"].append(int(d["t"]))
                    t["p"].append(float(d["p"]))
                    t["q"].append(float(d["q"]))
                    t["m"].append(bool(d["m"]))
                    t["recv"].append(recv)
                except (KeyError, TypeError, ValueError) as exc:
                    raise _fail(path, lineno, f"trade message lacks or garbles field {exc}") from None
            else:
                pending_book.append((lineno, recv, body))
    # book messages: decode the first depth event to classify, all of them for USD-M
    for lineno, _recv, body in pending_book:
        if b"@depth" in body[:60]:
            d = _data(path, lineno, _loads(path, lineno, body))
            _note_symbol(cap, d.get("s", ""), path, lineno)
            if "ps" in d or d.get("s", "").endswith("_PERP"):
                hints.setdefault("coinm", True)
            hints.setdefault("futures" if "pu" in d else "spot", True)
            break
    cap.market = classify(path, cap.symbol, hints)
    if cap.market == USDM:
        for lineno, recv, body in pending_book:
            d = _data(path, lineno, _loads(path, lineno, body))
            try:
                if b"@bookTicker" in body[:60]:
                    _note_symbol(cap, d["s"], path, lineno)
                    k = cap.tickers
                    k["T"].append(int(d.get("T") or d["E"]))
                    k["u"].append(int(d["u"]))
                    k["b"].append(float(d["b"]))
                    k["a"].append(float(d["a"]))
                elif b"@depth" in body[:60]:
                    cap.depth.append((int(d["E"]), int(d["U"]), int(d["u"]), int(d["pu"]), d["b"], d["a"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise _fail(path, lineno, f"book message lacks or garbles field {exc}") from None
    if not cap.symbol:
        raise ValueError(f"{path}: no trade or depth message: cannot tell the symbol")
    return cap


def _loads(path: Path, lineno: int, body: bytes) -> dict:
    try:
        msg = json.loads(body)
    except ValueError as exc:
        raise _fail(path, lineno, f"unreadable JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise _fail(path, lineno, "JSON is not an object")
    return msg


def _data(path: Path, lineno: int, msg: dict) -> dict:
    d = msg.get("data")
    if not isinstance(d, dict):
        raise _fail(path, lineno, "envelope without a 'data' object")
    return d


def _note_symbol(cap: Capture, symbol: str, path: Path, lineno: int) -> None:
    if not symbol:
        return
    if cap.symbol and symbol != cap.symbol:
        raise _fail(path, lineno, f"symbol {symbol!r} differs from {cap.symbol!r} earlier in the file "
                                  "(one symbol per capture file)")
    cap.symbol = symbol


def classify(path: Path, symbol: str, hints: dict[str, bool]) -> str:
    """Market of a capture from its message fields (module docstring), the folder name as the
    fallback; a folder contradicting the messages is a ValueError."""
    if hints.get("coinm") or symbol.endswith("_PERP"):
        data = COINM
    elif hints.get("futures") and not hints.get("spot"):
        data = USDM
    elif hints.get("spot") and not hints.get("futures"):
        data = SPOT
    else:
        data = None
    folder = FOLDER_HINTS.get(Path(path).parent.name.lower())
    if data and folder and data != folder:
        raise ValueError(f"{path}: the messages are {data} (symbol {symbol}, fields {sorted(hints)}) "
                         f"but the folder {Path(path).parent.name!r} says {folder}")
    market = data or folder
    if market is None:
        raise ValueError(f"{path}: cannot tell USD-M, COIN-M or spot from the messages; put the file "
                         f"in a folder named usdm, cm or spot")
    return market


# ---------------------------------------------------------------------------------------------
# pure helpers

def ms_to_us(ms) -> np.ndarray:
    """Epoch ms -> epoch us (int64)."""
    return np.asarray(ms, dtype=np.int64) * 1000


def day_bounds_us(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in epoch us."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    return start, start + 86_400_000_000


def days_of_span(lo_us: int, hi_us: int) -> list[dt.date]:
    """UTC days touched by [lo, hi]."""
    d0 = dt.datetime.fromtimestamp(lo_us / 1e6, dt.timezone.utc).date()
    d1 = dt.datetime.fromtimestamp(hi_us / 1e6, dt.timezone.utc).date()
    return [d0 + dt.timedelta(days=i) for i in range((d1 - d0).days + 1)]


def clip_window(span_us: tuple[int, int], day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
    """The span clipped to the UTC day [00:00, 24:00], or None when they do not overlap."""
    start, end = day_bounds_us(day)
    lo, hi = max(span_us[0], start), min(span_us[1], end)
    if hi <= lo:
        return None
    to_dt = lambda us: dt.datetime.fromtimestamp(us // 1_000_000, dt.timezone.utc) + dt.timedelta(  # noqa: E731
        microseconds=us % 1_000_000)
    return to_dt(lo), to_dt(hi)


def second_grid(lo_us: int, hi_us: int) -> np.ndarray:
    """Whole seconds t (epoch us) with lo <= t <= hi."""
    first = -(-lo_us // 1_000_000)
    return np.arange(first, hi_us // 1_000_000 + 1, dtype=np.int64) * 1_000_000


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values among the last `window` entries (inclusive); nan when none."""
    ok = np.isfinite(values)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, values, 0.0))])
    cn = np.concatenate([[0], np.cumsum(ok)])
    hi = np.arange(1, len(values) + 1)
    lo = np.maximum(hi - window, 0)
    n = cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (cs[hi] - cs[lo]) / np.maximum(n, 1), np.nan)


def binance_mark(index: np.ndarray, mid: np.ndarray, last: np.ndarray,
                 funding_basis: float = 0.0) -> np.ndarray:
    """mark = median(index x (1 + funding_basis), index + MA_300s(mid - index), last), over the
    available (finite) prices; the inputs are per-second arrays of a contiguous grid."""
    p1 = index * (1.0 + funding_basis)
    p2 = index + trailing_mean(mid - index, MARK_MA_S)
    stack = np.vstack([p1, p2, last])
    out = np.full(len(index), np.nan)
    have = np.isfinite(stack).any(axis=0)
    if have.any():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[have] = np.nanmedian(stack[:, have], axis=0)
    return out


def band_rows(bids: dict[float, float], asks: dict[float, float], known_bid: float, known_ask: float,
              bands: np.ndarray = BANDS) -> list[tuple[float, float, float]]:
    """(signed band %, depth, notional) of one book: per band b, the levels between the mid and
    mid x (1 -/+ b/100): depth = sum qty, notional = sum price x qty. A band is written only when
    both edges lie inside the known range [known_bid, known_ask] (the snapshot's deepest levels)."""
    bp = np.fromiter((p for p, q in bids.items() if q > 0), float)
    ap = np.fromiter((p for p, q in asks.items() if q > 0), float)
    if not len(bp) or not len(ap):
        return []
    best_bid, best_ask = bp.max(), ap.min()
    if best_bid >= best_ask:
        return []
    mid = (best_bid + best_ask) / 2
    bq = np.array([bids[p] for p in bp])
    aq = np.array([asks[p] for p in ap])
    rows: list[tuple[float, float, float]] = []
    for b in bands:
        lo, hi = mid * (1 - b / 100), mid * (1 + b / 100)
        if lo < known_bid or hi > known_ask:
            continue
        sb, sa = bp >= lo, ap <= hi
        rows.append((-float(b), float(bq[sb].sum()), float((bp[sb] * bq[sb]).sum())))
        rows.append((float(b), float(aq[sa].sum()), float((ap[sa] * aq[sa]).sum())))
    return rows


@dataclass
class BookResult:
    rows: list[tuple[int, float, float, float]]  # (minute us, band, depth, notional)
    synced_at_ms: int | None
    gap: str | None  # description of the first sequence break, None when the chain held
    applied: int
    dropped: int


def replay_book(caps: list[Capture]) -> BookResult:
    """Replay the USD-M book of one symbol over its captures (in time order) and sample the bands
    at every whole minute; Binance futures sequencing (module docstring)."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    rows: list[tuple[int, float, float, float]] = []
    synced_at = None
    gap = None
    applied = dropped = 0
    known = (np.inf, -np.inf)
    state = "none"  # none -> waiting (snapshot loaded) -> synced -> broken
    last_u = None
    next_min = None
    for cap in caps:
        if cap.snapshot is not None:
            snap = cap.snapshot
            bids = {float(p): float(q) for p, q in snap["bids"]}
            asks = {float(p): float(q) for p, q in snap["asks"]}
            known = (min(bids) if bids else np.inf, max(asks) if asks else -np.inf)
            state, last_u, snapshot_l = "waiting", None, snap["L"]
        if state in ("none", "broken"):
            if state == "none" and cap.depth:
                gap = gap or f"{cap.path.name}: depth events without a REST snapshot before them"
            continue
        for e_ms, first_u, u, pu, b, a in cap.depth:
            if state == "broken":
                break
            if state == "waiting":
                if u < snapshot_l:
                    dropped += 1
                    continue
                if not (first_u <= snapshot_l <= u):
                    state = "broken"
                    gap = (f"{cap.path.name}: first event after the snapshot (lastUpdateId {snapshot_l}) has "
                           f"U={first_u} > lastUpdateId: events missing")
                    break
                state, synced_at = "synced", e_ms
                next_min = -(-e_ms // 60_000) * 60_000
            elif pu != last_u:
                state = "broken"
                gap = (f"{cap.path.name}: sequence break at E={_iso_ms(e_ms)}: pu={pu} != previous u={last_u}; "
                       "no depth after it (no new snapshot in the capture)")
                break
            while next_min is not None and e_ms > next_min:
                rows += [(next_min * 1000, *r) for r in band_rows(bids, asks, *known)]
                next_min += 60_000
            for side, levels in ((bids, b), (asks, a)):
                for p, q in levels:
                    qf = float(q)
                    if qf == 0.0:
                        side.pop(float(p), None)
                    else:
                        side[float(p)] = qf
            last_u = u
            applied += 1
        if state == "synced" and cap.e_max is not None:
            # the book holds until the capture's last exchange time
            while next_min is not None and next_min <= cap.e_max:
                rows += [(next_min * 1000, *r) for r in band_rows(bids, asks, *known)]
                next_min += 60_000
    return BookResult(rows, synced_at, gap, applied, dropped)


def _iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------
# frames

def trades_frame(symbol: str, caps: list[Capture]) -> pl.DataFrame:
    """Canonical trades of one USD-M symbol (see the module docstring)."""
    parts = [pl.DataFrame({"ts": ms_to_us(c.trades["T"]), "trade_id": c.trades["id"], "price": c.trades["p"],
                           "qty": c.trades["q"], "m": c.trades["m"]},
                          schema={"ts": pl.Int64, "trade_id": pl.Int64, "price": pl.Float64,
                                  "qty": pl.Float64, "m": pl.Boolean}) for c in caps]
    f = pl.concat(parts).unique("trade_id", keep="first", maintain_order=True).sort("ts", "trade_id")
    return f.select(ts=pl.col("ts").cast(TS_US), symbol=pl.lit(symbol), trade_id="trade_id", price="price",
                    qty="qty", taker_side=pl.when(pl.col("m")).then(pl.lit("sell")).otherwise(pl.lit("buy")))


def components_frame(symbol: str, sources: dict[str, list[Capture]]) -> pl.DataFrame:
    """Canonical index_components of one USD-M symbol: each source's trade prices, weight 1/n."""
    n = len(sources)
    parts = []
    for name, caps in sources.items():
        for c in caps:
            parts.append(pl.DataFrame({"ts": ms_to_us(c.trades["E"]),
                                       "received_ts": np.asarray(c.trades["recv"], dtype=np.int64) // 1000,
                                       "price": c.trades["p"]},
                                      schema={"ts": pl.Int64, "received_ts": pl.Int64, "price": pl.Float64})
                         .with_columns(source=pl.lit(name)))
    if not parts:
        return pl.DataFrame(schema={"ts": TS_US, "received_ts": TS_US, "symbol": pl.String,
                                    "source": pl.String, "price": pl.Float64, "weight": pl.Float64})
    f = (pl.concat(parts).with_row_index("_i").sort("source", "received_ts", "_i")
         .unique(["source", "received_ts"], keep="last", maintain_order=True).drop("_i"))
    return f.sort("received_ts", "source").select(
        ts=pl.col("ts").cast(TS_US), received_ts=pl.col("received_ts").cast(TS_US), symbol=pl.lit(symbol),
        source="source", price="price", weight=pl.lit(1.0 / n))


def mark_index_frame(symbol: str, caps: list[Capture], components: pl.DataFrame, inst: dict,
                     span_us: tuple[int, int]) -> pl.DataFrame:
    """Canonical mark_index of one USD-M symbol, one row per whole second of the span."""
    grid = second_grid(*span_us)
    g = pl.DataFrame({"ts": grid})
    tick = pl.concat([pl.DataFrame({"t": ms_to_us(c.tickers["T"]), "u": c.tickers["u"], "b": c.tickers["b"],
                                    "a": c.tickers["a"]},
                                   schema={"t": pl.Int64, "u": pl.Int64, "b": pl.Float64, "a": pl.Float64})
                      for c in caps]).sort("t", "u")
    trd = pl.concat([pl.DataFrame({"t": ms_to_us(c.trades["T"]), "id": c.trades["id"], "p": c.trades["p"]},
                                  schema={"t": pl.Int64, "id": pl.Int64, "p": pl.Float64})
                     for c in caps]).sort("t", "id")
    g = (g.join_asof(tick, left_on="ts", right_on="t", strategy="backward")
          .join_asof(trd.rename({"t": "tt"}), left_on="ts", right_on="tt", strategy="backward"))
    bid, ask = g["b"].to_numpy().astype(float), g["a"].to_numpy().astype(float)
    last = g["p"].to_numpy().astype(float)
    index = index_series(grid, components, inst)
    mark = binance_mark(index, (bid + ask) / 2, last)
    cols = ("mark_price", "index_price", "last_price", "best_bid", "best_ask")
    # the series starts at the first second where every value is known (the first seconds of a
    # capture have a book but no index trade yet): an import artifact, not a gap of the venue's
    return (pl.DataFrame({"ts": grid, "mark_price": mark, "index_price": index, "last_price": last,
                          "best_bid": bid, "best_ask": ask})
            .select(pl.col("ts").cast(TS_US), pl.lit(symbol).alias("symbol"),
                    *[pl.col(c).fill_nan(None) for c in cols])
            .filter(pl.all_horizontal([pl.col(c).is_not_null() for c in cols]).cum_max()))


def index_series(grid_us: np.ndarray, components: pl.DataFrame, inst: dict) -> np.ndarray:
    """The project's index rule on the components by receive time, at each grid second."""
    sources = list(inst["index_sources"] or [])
    if not sources or components.is_empty():
        return np.full(len(grid_us), np.nan)
    rec, px, weights = [], [], []
    for s in sources:
        c = components.filter(pl.col("source") == s).sort("received_ts")
        rec.append(c["received_ts"].dt.epoch("us").to_numpy() / 1e6)
        px.append(c["price"].to_numpy())
        weights.append(float(c["weight"][0]) if c.height else 0.0)
    price, age = source_matrix(grid_us / 1e6, rec, px)
    index, _status = compute_index(price, age, np.asarray(weights), float(inst["index_outlier_pct"]),
                                   float(inst["index_stale_s"]), int(inst["index_min_sources"]))
    return index


def depth_frame(symbol: str, result: BookResult) -> pl.DataFrame:
    """Canonical book_depth rows of one symbol from the replay."""
    if not result.rows:
        return pl.DataFrame(schema={"ts": TS_US, "symbol": pl.String, "percentage": pl.Float64,
                                    "depth": pl.Float64, "notional": pl.Float64})
    ts, band, depth, notional = zip(*result.rows)
    return pl.DataFrame({"ts": np.asarray(ts, dtype=np.int64), "percentage": band, "depth": depth,
                         "notional": notional}).select(
        pl.col("ts").cast(TS_US), pl.lit(symbol).alias("symbol"), "percentage", "depth", "notional"
    ).sort("ts", "percentage")


# ---------------------------------------------------------------------------------------------
# the import

def _span_us(caps: list[Capture]) -> tuple[int, int] | None:
    lo = [c.e_min for c in caps if c.e_min is not None]
    hi = [c.e_max for c in caps if c.e_max is not None]
    return (min(lo) * 1000, max(hi) * 1000) if lo else None


def _windows(span: tuple[int, int] | None, days: list[dt.date]) -> dict:
    out = {}
    for d in days:
        w = clip_window(span, d) if span else None
        if w:
            out[d] = w
    return out


def import_files(inputs: list[Path], out: Path, day: dt.date | None = None,
                 reference: Path | None = None) -> dict:
    """Import Binance WebSocket captures into `out` (canonical partitions + `_coverage.json`);
    returns {format, out, days, datasets: {name: rows}, captures, notes, seconds}."""
    t0 = time.perf_counter()
    out = Path(out)
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"input file {p} does not exist")
    caps = [read_capture(p) for p in paths]
    perps: dict[str, list[Capture]] = defaultdict(list)
    others: list[Capture] = []
    for c in caps:
        (perps[c.symbol] if c.market == USDM else others).append(c)
    if not perps:
        raise ValueError("no USD-M perpetual capture among the inputs "
                         f"({', '.join(f'{c.path.name}: {c.market} {c.symbol}' for c in caps)}); "
                         "spot and COIN-M captures are index sources of a USD-M symbol")
    for sym in perps:
        perps[sym].sort(key=lambda c: c.e_min or 0)
    by_base = {c.base: sym for sym, cs in perps.items() for c in cs}
    sources: dict[str, dict[str, list[Capture]]] = {sym: {} for sym in perps}
    ignored = []
    for c in sorted(others, key=lambda c: (c.market, c.e_min or 0)):
        sym = by_base.get(c.base)
        if sym is None:
            ignored.append(f"{c.path.name} ({c.market} {c.symbol}: no USD-M {c.base} capture)")
            continue
        sources[sym].setdefault(SOURCE_NAMES[c.market], []).append(c)
    symbols = sorted(perps)
    instruments, risk_tiers = reference_tables(symbols, {s: sorted(sources[s]) for s in symbols}, reference)
    inst_by_symbol = {r["symbol"]: r for r in instruments.iter_rows(named=True)}

    perp_span = _span_us([c for cs in perps.values() for c in cs])
    days = days_of_span(*perp_span)
    if day is not None:
        days = [d for d in days if d == day]
    src_caps = [c for s in sources.values() for cs in s.values() for c in cs]
    src_span = _span_us(src_caps)

    trades, marks, comps, depth, notes = [], [], [], [], []
    books: dict[str, BookResult] = {}
    for sym in symbols:
        cs = perps[sym]
        comp = components_frame(sym, sources[sym])
        trades.append(trades_frame(sym, cs))
        comps.append(comp)
        marks.append(mark_index_frame(sym, cs, comp, inst_by_symbol[sym], _span_us(cs)))
        books[sym] = replay_book(cs)
        depth.append(depth_frame(sym, books[sym]))
    depth_f = pl.concat(depth).sort("ts", "symbol", "percentage")
    band_list = sorted({abs(b) for b in depth_f["percentage"].to_list()})

    files = [_label(c.path) for c in caps]
    perp_files = [_label(c.path) for cs in perps.values() for c in cs]
    src_files = [_label(c.path) for c in src_caps]
    w_perp, w_src = _windows(perp_span, days), _windows(src_span, days)
    summary: dict = {"format": FORMAT, "out": str(out), "days": [d.isoformat() for d in days], "datasets": {},
                     "captures": [{"file": str(c.path), "market": c.market, "symbol": c.symbol} for c in caps],
                     "ignored": ignored}
    ref = reference_label(reference)
    mark_note = ("one row per whole second of the capture; best bid/ask = last bookTicker at or before the "
                 "second, last_price = last trade; index_price = the venue index rule (index_rule) on "
                 "index_components; mark_price = Binance's rule as far as the capture allows: "
                 "median(index x (1 + funding basis), index + 5-min MA of (mid - index), last price), "
                 "funding basis 0 (no funding stream in the capture), MA over the capture's seconds")
    comp_note = ("trade prices of Binance spot and COIN-M (USD-quoted) of the same base, by local receive "
                 "time of the capture (its clock runs ~1.27 s behind the exchange's E), weight 1/n")
    gaps = [f"{s}: {b.gap}" for s, b in books.items() if b.gap]
    depth_note = (f"USD-M book from the REST snapshot (1000 levels) + depth@0ms diffs (futures sequencing); "
                  f"bands written: {band_list} % (only bands inside the snapshot's deepest levels on both "
                  "sides; wider bands are not observable in this capture)"
                  + ("; GAP: " + "; ".join(gaps) if gaps else "; sequence held over the capture"))
    trade_note = "public trade stream: order ids, accounts, fees and liquidation ids are not carried (null)"

    def write(name: str, frame: pl.DataFrame, windows: dict, inputs_: list[str], note: str | None,
              extra: dict | None = None, reference_days: bool = False) -> None:
        if reference_days:
            written = write_dataset(out, name, frame, written_by=FORMAT, inputs=inputs_, days=days,
                                    note=note, extra=extra)
        else:
            written = write_dataset(out, name, frame.filter(pl.col(_day_col(name)).dt.date().is_in(days)),
                                    written_by=FORMAT, inputs=inputs_, windows=windows, only_day=day,
                                    note=note, extra=extra)
        if written:
            summary["datasets"][name] = {"rows": int(sum(_rows_on(frame, name, d) for d in written)),
                                         "days": [d.isoformat() for d in written]}

    if days:
        write("instruments", instruments, {}, files, f"from the reference {ref}", {"reference": ref}, True)
        write("risk_tiers", risk_tiers, {}, files, f"from the reference {ref}", {"reference": ref}, True)
        write("trades", pl.concat(trades).sort("ts", "symbol", "trade_id"), w_perp, perp_files, trade_note,
              {"missing_columns": TRADES_MISSING})
        write("mark_index", pl.concat(marks).sort("ts", "symbol"), w_perp, perp_files + src_files, mark_note,
              {"derived_columns": ["index_price", "mark_price"]})
        comp_all = pl.concat(comps).sort("received_ts", "symbol", "source")
        if comp_all.height:
            write("index_components", comp_all, w_src, src_files, comp_note)
        if depth_f.height:
            write("book_depth", depth_f, w_perp, perp_files, depth_note)
        set_venue(out, VENUE)
    notes += gaps
    summary["notes"] = notes + ([f"ignored: {i}" for i in ignored])
    summary["book"] = {s: {"synced_at": _iso_ms(b.synced_at_ms) if b.synced_at_ms else None, "gap": b.gap,
                           "events_applied": b.applied, "events_dropped": b.dropped} for s, b in books.items()}
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def _label(path: Path) -> str:
    """`<folder>/<file>` of an input (spot and USD-M captures share file names)."""
    return f"{path.parent.name}/{path.name}"


def _day_col(name: str) -> str:
    return "received_ts" if name == "index_components" else "ts"


def _rows_on(frame: pl.DataFrame, name: str, d: dt.date) -> int:
    """Rows of `frame` written for day `d` (reference data: all rows each day)."""
    if name in ("instruments", "risk_tiers"):
        return frame.height
    return frame.filter(pl.col(_day_col(name)).dt.date() == d).height
