"""Importers of public formats: Binance public data (data.binance.vision) and Tardis.dev CSVs.

Real samples are read in place from shared/realdata (never downloaded); formats without a sample
are written here as a few hand-made rows in the exact public layout and checked by hand."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import os
import zipfile
from pathlib import Path

import polars as pl
import pytest

from venue_risk.errors import InputError
from venue_risk.importers import importer
from venue_risk.importers import binance_public, tardis
from venue_risk.sources.files import FilesSource

REAL = Path(os.environ.get("VENUE_RISK_REALDATA") or Path(__file__).resolve().parents[2].parent / "shared" / "realdata")
if not REAL.is_dir():  # a clone elsewhere on this machine: its copy of the shared samples
    REAL = Path("/work/shared/realdata")
FUNDING_SAMPLE = REAL / "trading-tools/tests/fixtures/BTCUSDT-fundingRate-2026-08.csv"
TARDIS_SAMPLE = REAL / "nautilus_trader/tests/test_data/tardis/binance-futures_book_snapshot_5_BTCUSDT.csv"
UTC = dt.timezone.utc
DAY = dt.date(2024, 8, 8)
T0 = dt.datetime(2024, 8, 8, tzinfo=UTC)  # 00:00 UTC


def ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def us(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def manifest(root: Path) -> dict:
    return json.loads((root / "_coverage.json").read_text())


def check_readable(root: Path, summary: dict) -> None:
    """Every dataset and day the summary names reads through FilesSource, and the manifest names
    exactly those datasets and days."""
    m = manifest(root)
    assert sorted(m["datasets"]) == sorted(summary["datasets"])
    for name, item in summary["datasets"].items():
        assert sorted(m["datasets"][name]["dates"]) == item["days"]
        rows = 0
        for d in item["days"]:
            frame = FilesSource(root).read(name, dt.date.fromisoformat(d))
            assert frame.height == m["datasets"][name]["dates"][d]["rows"] > 0
            rows += frame.height
        assert rows == item["rows"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- Binance public data: the real monthly fundingRate file -------------------------------------

@pytest.mark.skipif(not FUNDING_SAMPLE.exists(), reason="shared realdata sample not present")
def test_funding_rate_month_real_sample(tmp_path):
    with open(FUNDING_SAMPLE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected: dict[dt.date, list[float]] = {}
    for r in rows:  # settlement = calc_time to the nearest hour, computed independently here
        t = dt.datetime.fromtimestamp(int(r["calc_time"]) / 1000, UTC)
        expected.setdefault(t.date(), []).append(float(r["last_funding_rate"]))

    summary = importer("binance-public")([FUNDING_SAMPLE], tmp_path, None, None)

    assert summary["datasets"]["funding"] == {
        "rows": 93, "days": [dt.date(2026, 8, d).isoformat() for d in range(1, 32)]}
    check_readable(tmp_path, summary)
    total = 0
    for d in range(1, 32):
        day = dt.date(2026, 8, d)
        f = FilesSource(tmp_path).read("funding", day)
        total += f.height
        assert f.height == 3
        assert [(t.hour, t.minute, t.second, t.microsecond) for t in f["ts"]] == [
            (0, 0, 0, 0), (8, 0, 0, 0), (16, 0, 0, 0)]
        assert all(t.date() == day for t in f["ts"])
        assert f["funding_rate"].to_list() == expected[day]
        assert f["symbol"].to_list() == ["BTCUSDT"] * 3
        # not in the file: null, and declared missing
        assert f["premium_index"].null_count() == f["mark_price"].null_count() == 3
    assert total == len(rows) == 93
    entry = manifest(tmp_path)["datasets"]["funding"]["dates"]["2026-08-01"]
    assert set(entry["missing_columns"]) == {"premium_index", "interest_rate", "mark_price", "index_price"}
    assert entry["inputs"] == [FUNDING_SAMPLE.name]
    assert manifest(tmp_path)["venue"] == "Binance USD-M futures"
    inst = FilesSource(tmp_path).read("instruments", dt.date(2026, 8, 15))
    assert inst["symbol"].to_list() == ["BTCUSDT"]
    assert FilesSource(tmp_path).read("risk_tiers", dt.date(2026, 8, 15)).height >= 1


@pytest.mark.skipif(not FUNDING_SAMPLE.exists(), reason="shared realdata sample not present")
def test_funding_rate_one_day_only(tmp_path):
    summary = binance_public.import_files([FUNDING_SAMPLE], tmp_path, dt.date(2026, 8, 9), None)
    assert {n: item["days"] for n, item in summary["datasets"].items()} == {
        n: ["2026-08-09"] for n in ("funding", "instruments", "risk_tiers")}
    assert summary["datasets"]["funding"]["rows"] == 3
    assert not (tmp_path / "funding" / "date=2026-08-10").exists()
    with pytest.raises(ValueError, match="no rows written for 2026-09-01"):
        binance_public.import_files([FUNDING_SAMPLE], tmp_path / "x", dt.date(2026, 9, 1), None)


# --- Binance public data: hand-written files in the public layout --------------------------------

AGG_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"


def test_agg_trades_with_header_ms(tmp_path):
    t1, t2 = T0 + dt.timedelta(seconds=1, milliseconds=250), T0 + dt.timedelta(hours=23, minutes=59)
    src = write(tmp_path / "in" / "BTCUSDT-aggTrades-2024-08-08.csv", AGG_HEADER
                + f"101,61590.3,0.004,201,203,{ms(t1)},true\n"
                + f"102,61591.0,1.250,204,204,{ms(t2)},false\n")
    out = tmp_path / "out"
    summary = binance_public.import_files([src], out, None, None)
    check_readable(out, summary)
    t = FilesSource(out).read("trades", DAY)
    assert t["trade_id"].to_list() == [101, 102]
    assert t["ts"].to_list() == [t1, t2]
    assert t["price"].to_list() == [61590.3, 61591.0]
    assert t["qty"].to_list() == [0.004, 1.25]
    assert t["taker_side"].to_list() == ["sell", "buy"]  # buyer was maker -> the taker sold
    entry = manifest(out)["datasets"]["trades"]["dates"]["2024-08-08"]
    assert "taker_account" in entry["missing_columns"] and "price" not in entry["missing_columns"]


def test_trades_headerless_microseconds_in_zip(tmp_path):
    """Older files have no header; newer ones carry microseconds: told apart by magnitude."""
    t1 = T0 + dt.timedelta(hours=5, microseconds=123_456)
    body = f"7,2680.5,0.5,1340.25,{us(t1)},false\n8,2680.4,2.0,5360.8,{us(t1) + 10},True\n"
    src = tmp_path / "ETHUSDT-trades-2024-08-08.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("ETHUSDT-trades-2024-08-08.csv", body)
    out = tmp_path / "out"
    summary = binance_public.import_files([src], out, None, None)
    assert summary["symbols"] == ["ETHUSDT"]
    t = FilesSource(out).read("trades", DAY)
    assert t["ts"].to_list() == [t1, t1 + dt.timedelta(microseconds=10)]
    assert t["taker_side"].to_list() == ["buy", "sell"]
    assert t["qty"].to_list() == [0.5, 2.0]


def test_ambiguous_timestamp_is_an_error(tmp_path):
    src = write(tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv", AGG_HEADER
                + f"1,1.0,1.0,1,1,{ms(T0)},true\n2,1.0,1.0,2,2,{int(T0.timestamp())},true\n")
    with pytest.raises(InputError, match=r"line 3: timestamp 1723075200 is ambiguous") as err:
        binance_public.import_files([src], tmp_path / "out", None, None)
    assert "BTCUSDT-aggTrades-2024-08-08.csv" in str(err.value) and "transact_time" in str(err.value)


def test_truncated_line_names_file_and_line(tmp_path):
    src = write(tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv", AGG_HEADER
                + f"1,61590.3,0.004,1,1,{ms(T0)},true\n2,61590.3,0.0")
    with pytest.raises(InputError, match=r"line 3 has 3 field\(s\), expected 7 - the file ends there") as err:
        binance_public.import_files([src], tmp_path / "out", None, None)
    assert str(src) in str(err.value)


def test_malformed_value_names_line_and_column(tmp_path):
    src = write(tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv", AGG_HEADER
                + f"1,61590.3,0.004,1,1,{ms(T0)},true\n2,6159O.3,0.004,2,2,{ms(T0)},true\n")
    with pytest.raises(InputError, match=r"column 'price'.*line 3: value '6159O.3' is not a number"):
        binance_public.import_files([src], tmp_path / "out", None, None)


def test_book_depth_and_metrics(tmp_path):
    depth = write(tmp_path / "BTCUSDT-bookDepth-2024-08-08.csv",
                  "timestamp,percentage,depth,notional\n"
                  "2024-08-08 00:00:08,-1.00,2609.349,159716151.5291\n"
                  "2024-08-08 00:00:08,-0.20,357.526,21976597.9125\n"
                  "2024-08-08 00:00:08,0.20,355.953,21928612.513\n"
                  "2024-08-08 00:00:08,1.00,2073.682,128307608.1287\n")
    metrics = write(tmp_path / "BTCUSDT-metrics-2024-08-08.csv",
                    ",".join(binance_public.METRICS) + "\n"
                    "2024-08-08 00:05:00,BTCUSDT,80000.5,4.9e9,1.5,1.8,1.2,0.9\n"
                    "2024-08-08 00:00:00,BTCUSDT,79990.0,4.8e9,1.4,1.7,1.1,\n"
                    "2024-08-08 00:05:00,BTCUSDT,80001.0,4.91e9,1.5,1.8,1.25,0.95\n")
    out = tmp_path / "out"
    summary = binance_public.import_files([depth, metrics], out, None, None)
    check_readable(out, summary)
    b = FilesSource(out).read("book_depth", DAY)
    assert b["ts"].to_list() == [T0 + dt.timedelta(seconds=8)] * 4
    assert b["percentage"].to_list() == [-1.0, -0.2, 0.2, 1.0]
    assert b["depth"].to_list() == [2609.349, 357.526, 355.953, 2073.682]
    assert b["notional"][2] == 21928612.513
    m = FilesSource(out).read("market_metrics", DAY)
    # rows in time order; the restated 00:05 row replaces the earlier one
    assert m["ts"].to_list() == [T0, T0 + dt.timedelta(minutes=5)]
    assert m["open_interest"].to_list() == [79990.0, 80001.0]
    assert m["open_interest_value"].to_list() == [4.8e9, 4.91e9]
    assert m["long_short_account_ratio"].to_list() == [1.1, 1.25]  # count_long_short_ratio
    assert m["taker_buy_sell_ratio"].to_list() == [None, 0.95]
    entry = manifest(out)["datasets"]["market_metrics"]["dates"]["2024-08-08"]
    assert entry["duplicate_keys_dropped"] == 1


def _kline(open_t: dt.datetime, close: float, step=dt.timedelta(minutes=1)) -> str:
    close_t = open_t + step - dt.timedelta(milliseconds=1)
    return f"{ms(open_t)},{close},{close},{close},{close},0,{ms(close_t)},0,60,0,0,0\n"


def test_klines_mark_index_and_funding_enrichment(tmp_path):
    settle = T0 + dt.timedelta(hours=8)
    last_minute = settle - dt.timedelta(minutes=1)
    root = tmp_path / "data" / "futures" / "um" / "daily"
    mark = write(root / "markPriceKlines" / "BTCUSDT" / "1m" / "BTCUSDT-1m-2024-08-08.csv",
                 ",".join(binance_public.KLINES) + "\n"
                 + _kline(last_minute - dt.timedelta(minutes=1), 61000.0) + _kline(last_minute, 61010.5))
    index = write(root / "indexPriceKlines" / "BTCUSDT" / "1m" / "BTCUSDT-1m-2024-08-08.csv",
                  _kline(last_minute, 61005.0))  # headerless, as older files are
    premium = write(tmp_path / "BTCUSDT-premiumIndexKlines-1m-2024-08-08.csv",
                    _kline(last_minute, 0.00007))
    funding = write(tmp_path / "BTCUSDT-fundingRate-2024-08.csv",
                    "calc_time,funding_interval_hours,last_funding_rate\n"
                    f"{ms(settle) + 3},8,0.00010000\n{ms(settle + dt.timedelta(hours=8)) + 1},8,0.00005\n")
    out = tmp_path / "out"
    summary = binance_public.import_files([mark, index, premium, funding], out, None, None)
    check_readable(out, summary)
    mi = FilesSource(out).read("mark_index", DAY)
    close_t = [last_minute - dt.timedelta(milliseconds=1), settle - dt.timedelta(milliseconds=1)]
    assert mi["ts"].to_list() == close_t  # one row per kline, at its close_time
    assert mi["mark_price"].to_list() == [61000.0, 61010.5]
    assert mi["index_price"].to_list() == [None, 61005.0]
    assert mi["last_price"].null_count() == 2
    f = FilesSource(out).read("funding", DAY)
    assert f["ts"].to_list() == [settle, settle + dt.timedelta(hours=8)]
    assert f["funding_rate"].to_list() == [0.0001, 0.00005]
    assert f["premium_index"].to_list() == [0.00007, None]  # the kline closing at the settlement
    assert f["mark_price"].to_list() == [61010.5, None]
    assert f["index_price"].to_list() == [61005.0, None]
    assert manifest(out)["datasets"]["funding"]["dates"]["2024-08-08"]["calc_time_max_offset_ms"] == 3


def test_binance_file_names(tmp_path):
    assert binance_public.classify(Path("BTCUSDT-fundingRate-2026-08.csv")).kind == "fundingRate"
    f = binance_public.classify(Path("x/markPriceKlines/ETHUSDT/1m/ETHUSDT-1m-2024-08-08.zip"))
    assert (f.kind, f.symbol, f.interval, f.period) == ("markPriceKlines", "ETHUSDT", "1m", "2024-08-08")
    with pytest.raises(InputError, match="which klines"):
        binance_public.classify(tmp_path / "BTCUSDT-1m-2024-08-08.csv")
    with pytest.raises(InputError, match="unknown Binance public-data kind 'bookTicker'"):
        binance_public.classify(Path("BTCUSDT-bookTicker-2024-03-01.csv"))
    with pytest.raises(InputError, match="not a Binance public-data file name"):
        binance_public.classify(Path("trades.csv"))
    a = write(tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv", AGG_HEADER + f"1,1,1,1,1,{ms(T0)},true\n")
    t = write(tmp_path / "BTCUSDT-trades-2024-08-08.csv", f"1,1,1,1,{ms(T0)},true\n")
    with pytest.raises(InputError, match="both trades and aggTrades"):
        binance_public.import_files([a, t], tmp_path / "out", None, None)


# --- Tardis.dev: the real book_snapshot_5 sample --------------------------------------------------

def _band(row: dict[str, str], pct: float, levels: int = 5) -> tuple[float, float, float, float]:
    """(ask depth, ask notional, bid depth, bid notional) within pct % of the row's mid."""
    ask = [(float(row[f"asks[{i}].price"]), float(row[f"asks[{i}].amount"])) for i in range(levels)]
    bid = [(float(row[f"bids[{i}].price"]), float(row[f"bids[{i}].amount"])) for i in range(levels)]
    mid = (ask[0][0] + bid[0][0]) / 2
    a = [(p, q) for p, q in ask if p <= mid * (1 + pct / 100)]
    b = [(p, q) for p, q in bid if p >= mid * (1 - pct / 100)]
    return (sum(q for _, q in a), sum(p * q for p, q in a), sum(q for _, q in b), sum(p * q for p, q in b))


@pytest.mark.skipif(not TARDIS_SAMPLE.exists(), reason="shared realdata sample not present")
@pytest.mark.parametrize("keep", [10, 9])
def test_tardis_book_snapshot_real_sample(tmp_path, keep):
    lines = TARDIS_SAMPLE.read_text().splitlines(keepends=True)
    src = TARDIS_SAMPLE if keep == 10 else write(tmp_path / TARDIS_SAMPLE.name, "".join(lines[: keep + 1]))
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == keep
    out = tmp_path / "out"
    summary = importer("tardis")([src], out, None, None)
    check_readable(out, summary)
    assert [r["rows"] for r in summary["files"]] == [keep]
    entry = manifest(out)["datasets"]["book_depth"]["dates"]["2020-09-01"]
    assert entry["snapshots_read"] == keep  # every row read, all in one minute
    assert entry["snapshots_used"] == 1
    b = FilesSource(out).read("book_depth", dt.date(2020, 9, 1))
    last = rows[-1]  # the minute's last snapshot
    assert set(b["ts"].to_list()) == {dt.datetime.fromtimestamp(int(last["timestamp"]) / 1e6, UTC)}
    a_depth, a_notional, b_depth, b_notional = _band(last, 0.2)
    plus = b.filter(pl.col("percentage") == 0.2)
    minus = b.filter(pl.col("percentage") == -0.2)
    assert plus["depth"][0] == pytest.approx(a_depth, rel=1e-12)
    assert plus["notional"][0] == pytest.approx(a_notional, rel=1e-12)
    assert minus["depth"][0] == pytest.approx(b_depth, rel=1e-12)
    assert minus["notional"][0] == pytest.approx(b_notional, rel=1e-12)
    # five levels span < 0.2 % of the mid here: the 0.2 % band is the farthest written
    assert sorted(b["percentage"].to_list()) == [-0.2, 0.2]
    assert manifest(out)["venue"] == "Binance USD-M futures"


def test_depth_bands_stop_at_the_deepest_level():
    import numpy as np
    ap = np.array([[100.05, 100.3, 100.9]])  # deepest ask 0.9 % above the mid of 100
    aa = np.array([[1.0, 2.0, 4.0]])
    bp = np.array([[99.95, 99.5, np.nan]])  # a missing level
    ba = np.array([[3.0, 5.0, np.nan]])
    rows = dict((p, (d, n)) for p, d, n in tardis.depth_bands(ap, aa, bp, ba)[0])
    assert sorted(rows) == [-1.0, -0.8, -0.6, -0.4, -0.2, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert rows[0.2] == (1.0, 100.05)
    assert rows[0.4] == (3.0, 100.05 + 2 * 100.3)
    assert rows[1.0] == (7.0, 100.05 + 2 * 100.3 + 4 * 100.9)
    assert rows[-0.2] == (3.0, 3 * 99.95)
    assert rows[-0.6] == (8.0, 3 * 99.95 + 5 * 99.5)


# --- Tardis.dev: hand-written files in the public layout -----------------------------------------

def _gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_tardis_trades_gz(tmp_path):
    t1 = T0 + dt.timedelta(hours=1, microseconds=5)
    src = _gz(tmp_path / "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz",
              ",".join(tardis.TRADES) + "\n"
              f"binance-futures,BTCUSDT,{us(t1)},{us(t1) + 900},5001,buy,61590.3,0.004\n"
              f"binance-futures,BTCUSDT,{us(t1) + 1},{us(t1) + 901},5002,sell,61590.2,1.5\n")
    out = tmp_path / "out"
    summary = tardis.import_files([src], out, None, None)
    check_readable(out, summary)
    t = FilesSource(out).read("trades", DAY)
    assert t["ts"].to_list() == [t1, t1 + dt.timedelta(microseconds=1)]  # exchange time, not local
    assert t["trade_id"].to_list() == [5001, 5002]
    assert t["taker_side"].to_list() == ["buy", "sell"]  # Tardis' side is the taker's
    assert t["qty"].to_list() == [0.004, 1.5]


def test_tardis_milliseconds_are_rejected(tmp_path):
    src = write(tmp_path / "binance-futures_trades_2024-08-08_BTCUSDT.csv",
                ",".join(tardis.TRADES) + f"\nbinance-futures,BTCUSDT,{ms(T0)},{ms(T0)},1,buy,1,1\n")
    with pytest.raises(InputError, match=r"line 2: timestamp .* is ambiguous.*epoch us"):
        tardis.import_files([src], tmp_path / "out", None, None)


def test_tardis_liquidations(tmp_path):
    t1 = T0 + dt.timedelta(hours=3)
    src = write(tmp_path / "binance-futures_liquidations_2024-08-08_BTCUSDT.csv",
                ",".join(tardis.TRADES) + "\n"
                f"binance-futures,BTCUSDT,{us(t1)},{us(t1) + 50},,sell,61000.1,0.5\n"
                f"binance-futures,BTCUSDT,{us(t1)},{us(t1) + 60},,buy,61100.0,0.25\n")
    out = tmp_path / "out"
    summary = tardis.import_files([src], out, None, None)
    check_readable(out, summary)
    liq = FilesSource(out).read("liquidations", DAY)
    assert liq["ts_trigger"].to_list() == liq["ts_done"].to_list() == [t1, t1]
    assert liq["side"].to_list() == ["sell", "buy"]
    assert liq["qty"].to_list() == liq["filled_qty"].to_list() == [0.5, 0.25]
    assert liq["liquidation_id"].to_list() == [us(t1) * 1000, us(t1) * 1000 + 1]
    for col in ("account", "path", "bankruptcy_price", "liquidation_price", "mark_price", "fee"):
        assert liq[col].null_count() == 2
    entry = manifest(out)["datasets"]["liquidations"]["dates"]["2024-08-08"]
    assert {"account", "path", "bankruptcy_price", "insurance_fund_delta"} <= set(entry["missing_columns"])
    assert not {"liquidation_id", "side", "qty", "filled_qty"} & set(entry["missing_columns"])
    assert entry["liquidation_id"].startswith("synthesized")


def test_tardis_derivative_ticker_and_book(tmp_path):
    settle = T0 + dt.timedelta(hours=8)
    nxt = settle + dt.timedelta(hours=8)
    s0 = settle - dt.timedelta(seconds=3)
    rows = [  # timestamp, funding_timestamp, funding_rate, open_interest, last, index, mark
        (s0, settle, 0.0001, 80000.0, 61000.0, 60990.0, 61001.0),
        (s0 + dt.timedelta(milliseconds=400), settle, 0.00011, None, 61002.0, 60991.0, 61003.0),
        (s0 + dt.timedelta(seconds=1, milliseconds=10), settle, 0.00012, 80010.0, None, 60992.0, 61004.0),
        (settle + dt.timedelta(seconds=1), nxt, 0.00002, 80020.0, 61006.0, 60995.0, 61007.0),
    ]
    fmt = lambda v: "" if v is None else str(v)  # noqa: E731
    ticker = write(tmp_path / "binance-futures_derivative_ticker_2024-08-08_BTCUSDT.csv",
                   ",".join(tardis.TICKER) + "\n" + "".join(
                       f"binance-futures,BTCUSDT,{us(t)},{us(t) + 7},{us(ft)},{fr},,{fmt(oi)},{fmt(lp)},{ix},{mk}\n"
                       for t, ft, fr, oi, lp, ix, mk in rows))
    book = write(tmp_path / "binance-futures_book_snapshot_5_2024-08-08_BTCUSDT.csv",
                 ",".join(tardis.BASE + tardis.snapshot_columns(5)) + "\n"
                 + f"binance-futures,BTCUSDT,{us(s0 + dt.timedelta(milliseconds=500))},0,"
                 + "61003.0,1,61002.0,2" + ",,,," * 4 + "\n")
    out = tmp_path / "out"
    summary = tardis.import_files([ticker, book], out, None, None)
    check_readable(out, summary)
    mi = FilesSource(out).read("mark_index", DAY)
    sec = s0.replace(microsecond=0)
    assert mi["ts"].to_list() == [sec, sec + dt.timedelta(seconds=1), settle + dt.timedelta(seconds=1)]
    assert mi["mark_price"].to_list() == [61003.0, 61004.0, 61007.0]  # last in each second
    assert mi["last_price"].to_list() == [61002.0, None, 61006.0]
    assert mi["best_bid"].to_list() == [61002.0, None, None]  # the second's last snapshot
    assert mi["best_ask"].to_list() == [61003.0, None, None]
    mm = FilesSource(out).read("market_metrics", DAY)
    assert mm["ts"].to_list() == [settle - dt.timedelta(minutes=5), settle]
    assert mm["open_interest"].to_list() == [80010.0, 80020.0]
    assert mm["open_interest_value"].to_list() == [80010.0 * 61004.0, 80020.0 * 61007.0]
    f = FilesSource(out).read("funding", DAY)
    assert f["ts"].to_list() == [settle]  # the next settlement (nxt) is not seen passing
    assert f["funding_rate"].to_list() == [0.00012]
    assert f["mark_price"].to_list() == [61004.0] and f["index_price"].to_list() == [60992.0]
    assert f["premium_index"].null_count() == 1
    bd = FilesSource(out).read("book_depth", DAY)
    assert bd.filter(pl.col("percentage") == 0.2)["depth"].to_list() == [1.0]


def test_tardis_kind_from_header_and_unsupported(tmp_path):
    t = T0 + dt.timedelta(hours=1)
    plain = write(tmp_path / "ticker.csv", ",".join(tardis.TICKER)
                  + f"\nbinance-futures,BTCUSDT,{us(t)},{us(t)},,,,,,,61000.0\n")
    summary = tardis.import_files([plain], tmp_path / "out", None, None)
    assert summary["datasets"]["mark_index"] == {"rows": 1, "days": ["2024-08-08"]}
    same = write(tmp_path / "mystery.csv", ",".join(tardis.TRADES) + "\n")
    with pytest.raises(InputError, match="must say which"):
        tardis.import_files([same], tmp_path / "out2", None, None)
    with pytest.raises(InputError, match="'quotes' is not imported"):
        tardis.import_files([tmp_path / "binance-futures_quotes_2024-08-08_BTCUSDT.csv"], tmp_path / "o", None, None)
