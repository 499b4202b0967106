"""`venue-risk import binance-ws` on the real hftbacktest Binance captures, checked against facts
computed here from the raw gz files with plain gzip + json (not the importer's code), plus the
reference file, the CLI and the book's gap handling."""

from __future__ import annotations

import bisect
import datetime as dt
import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from venue_risk import cli
from venue_risk.importers import importer
from venue_risk.importers.binance_ws import COINM, SPOT, USDM, read_capture
from venue_risk.importers.layout import read_manifest
from venue_risk.importers.reference import SHIPPED, reference_tables
from venue_risk.sources.files import FilesSource

def _realdata() -> Path:
    """The shared public samples: VENUE_RISK_REALDATA, else the folder beside the project, else
    this machine's copy (read in place, never downloaded)."""
    for root in (os.environ.get("VENUE_RISK_REALDATA"), Path(__file__).resolve().parents[2].parent / "shared"
                 / "realdata", "/work/shared/realdata"):
        if root and Path(root).is_dir():
            return Path(root)
    return Path("/work/shared/realdata")


DATA = _realdata() / "hftbacktest" / "examples"
DAY = dt.date(2024, 8, 8)
DAY_START = dt.datetime(2024, 8, 8, tzinfo=dt.timezone.utc)
WRITTEN = {"instruments", "risk_tiers", "trades", "mark_index", "index_components", "book_depth"}

needs_data = pytest.mark.skipif(not (DATA / "usdm" / "btcusdt_20240808.gz").exists(),
                                reason=f"real Binance captures not found under {DATA} (hftbacktest examples)")


def _inputs() -> list[Path]:
    return sorted(DATA.glob("usdm/*.gz")) + sorted(DATA.glob("cm/*.gz")) + sorted(DATA.glob("spot/*.gz"))


def _raw_messages(path: Path, stream_suffix: str):
    """(recv_ns, data) of the messages of one stream, read with plain gzip + json."""
    with gzip.open(path, "rt") as fh:
        for line in fh:
            ns, body = line.split(" ", 1)
            msg = json.loads(body)
            if msg.get("stream", "").endswith(stream_suffix):
                yield int(ns), msg["data"]


def _ms_on_day(ms: int) -> bool:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).date() == DAY


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    if not (DATA / "usdm" / "btcusdt_20240808.gz").exists():
        pytest.skip(f"real Binance captures not found under {DATA}")
    out = tmp_path_factory.mktemp("binance_ws")
    summary = importer("binance-ws")(_inputs(), out, DAY, None)
    return out, summary


@needs_data
def test_markets_are_classified_from_the_messages():
    assert read_capture(DATA / "usdm/btcusdt_20240808.gz").market == USDM
    assert read_capture(DATA / "spot/btcusdt_20240808.gz").market == SPOT
    assert read_capture(DATA / "cm/ethusd_perp_20240809.gz").market == COINM


@needs_data
def test_folder_contradicting_the_messages_is_an_error(tmp_path):
    (tmp_path / "usdm").mkdir()
    fake = tmp_path / "usdm" / "btcusdt_20240809.gz"
    shutil.copy(DATA / "spot/btcusdt_20240809.gz", fake)
    with pytest.raises(ValueError, match="says usdm"):
        read_capture(fake)


@needs_data
def test_trades_match_the_raw_stream(imported):
    out, summary = imported
    raw = [d for _, d in _raw_messages(DATA / "usdm/btcusdt_20240808.gz", "@trade") if _ms_on_day(d["T"])]
    trades = FilesSource(out).read("trades", DAY).filter(pl.col("symbol") == "BTCUSDT")
    assert trades.height == len(raw) > 20_000
    prices = [float(d["p"]) for d in raw]
    assert (min(prices), max(prices)) == (61590.3, 61839.9)
    assert (trades["price"].min(), trades["price"].max()) == (61590.3, 61839.9)
    sells = sum(1 for d in raw if d["m"])
    assert trades.filter(pl.col("taker_side") == "sell").height == sells
    assert trades["taker_account"].null_count() == trades.height  # the public stream has no accounts
    assert trades["ts"].is_sorted()


@needs_data
def test_spread_index_and_mark(imported):
    out, _ = imported
    mi = FilesSource(out).read("mark_index", DAY).filter(pl.col("symbol") == "BTCUSDT").sort("ts")
    secs_ms = [int(t.timestamp() * 1000) for t in mi["ts"].to_list()]
    # independent: last bookTicker (by T) at or before each second
    ticks = sorted((d["T"], d["u"], float(d["a"]) - float(d["b"]))
                   for _, d in _raw_messages(DATA / "usdm/btcusdt_20240808.gz", "@bookTicker"))
    keys = [(t, u) for t, u, _ in ticks]
    spreads = [ticks[bisect.bisect_right(keys, (s, float("inf"))) - 1][2] for s in secs_ms]
    expected = float(np.mean(spreads))
    got = float((mi["best_ask"] - mi["best_bid"]).mean())
    assert abs(got - expected) < 1e-9
    assert 0.05 < got < 0.2
    # one row per second from 23:54:17 to 23:59:59
    assert mi.height == 343 and mi["ts"].diff().drop_nulls().dt.total_seconds().max() == 1
    # index within a few bps of the spot price (last spot trade at or before the second)
    spot = sorted((d["T"], float(d["p"])) for _, d in _raw_messages(DATA / "spot/btcusdt_20240808.gz", "@trade"))
    spot_t = [t for t, _ in spot]
    spot_px = np.array([spot[bisect.bisect_right(spot_t, s) - 1][1] for s in secs_ms])
    gap_bps = np.abs(mi["index_price"].to_numpy() / spot_px - 1) * 1e4
    assert np.nanmedian(gap_bps) < 5 and np.nanmax(gap_bps) < 25
    # mark between the lowest and highest of index and last price (a median of three)
    m = mi.drop_nulls(["mark_price", "index_price", "last_price"])
    lo = np.minimum(m["index_price"], m["last_price"]) - 1e-6
    hi = np.maximum(m["index_price"], m["last_price"]) + 1e-6
    assert ((m["mark_price"] >= lo) & (m["mark_price"] <= hi)).all()


@needs_data
def test_index_components_and_book_depth(imported):
    out, _ = imported
    src = FilesSource(out)
    comp = src.read("index_components", DAY)
    assert set(comp["source"]) == {"binance-spot", "binance-coinm"}
    assert set(comp["symbol"]) == {"BTCUSDT", "ETHUSDT"}
    assert comp.group_by("symbol", "source").agg(pl.col("weight").first())["weight"].to_list() == [0.5] * 4
    depth = src.read("book_depth", DAY)
    assert depth.height > 0 and (depth["depth"] > 0).all() and (depth["notional"] > 0).all()
    for (_ts, _sym, _side), g in depth.with_columns(side=pl.col("percentage").sign()).group_by(
            "ts", "symbol", "side"):
        g = g.with_columns(band=pl.col("percentage").abs()).sort("band")
        assert g["depth"].is_sorted() and g["notional"].is_sorted()  # cumulative from the mid
    # every minute written has both sides in the same bands
    sides = depth.group_by("ts", "symbol", pl.col("percentage").abs()).agg(pl.len())
    assert (sides["len"] == 2).all()
    assert depth["ts"].dt.second().max() == 0


@needs_data
def test_manifest_lists_exactly_the_written_datasets(imported):
    out, summary = imported
    manifest = read_manifest(out)
    assert set(manifest["datasets"]) == WRITTEN == set(summary["datasets"])
    assert manifest["venue"].startswith("Binance USD-M")
    lo, hi = DAY_START.replace(hour=23, minute=54), DAY_START + dt.timedelta(days=1)
    for name, item in manifest["datasets"].items():
        assert list(item["dates"]) == ["2024-08-08"], name
        entry = item["dates"]["2024-08-08"]
        if name in ("instruments", "risk_tiers"):
            assert entry["reference"].startswith("binance-usdm")
            continue
        f = dt.datetime.fromisoformat(entry["from"].replace("Z", "+00:00"))
        t = dt.datetime.fromisoformat(entry["to"].replace("Z", "+00:00"))
        assert lo <= f < t <= hi, name
    assert "GAP" not in manifest["datasets"]["book_depth"]["note"]
    assert manifest["datasets"]["trades"]["dates"]["2024-08-08"]["missing_columns"]
    src = FilesSource(out)
    for name in WRITTEN:
        assert src.read(name, DAY).height > 0
    assert not (out / "liquidations").exists() and not (out / "funding").exists()


@needs_data
def test_instruments_from_the_reference(imported):
    out, _ = imported
    inst = FilesSource(out).read("instruments", DAY).sort("symbol")
    assert inst["symbol"].to_list() == ["BTCUSDT", "ETHUSDT"]
    assert inst["index_min_sources"].to_list() == [2, 2]
    assert sorted(inst["index_sources"][0].to_list()) == ["binance-coinm", "binance-spot"]
    assert inst["taker_fee_rate"].to_list() == [0.0005, 0.0005]


def test_btc_maintenance_margin_is_continuous_across_tiers():
    _, tiers = reference_tables(["BTCUSDT", "ETHUSDT"], {}, None)
    btc = tiers.filter(pl.col("symbol") == "BTCUSDT").sort("tier")
    assert btc.height == 10 and btc["max_leverage"][0] == 125 and btc["maintenance_margin_rate"][-1] == 0.5
    mm = lambda row, n: n * row["maintenance_margin_rate"] - row["maintenance_amount"]  # noqa: E731
    rows = btc.to_dicts()
    # hand check at 250,000 (tier 2 -> 3): 250,000 x 0.5% - 50 = 250,000 x 1% - 1,300 = 1,200
    assert mm(rows[1], 250_000) == pytest.approx(1_200) == mm(rows[2], 250_000)
    for below, above in zip(rows, rows[1:]):
        assert above["notional_floor"] == below["notional_cap"]
        assert mm(below, above["notional_floor"]) == pytest.approx(mm(above, above["notional_floor"]))


def test_reference_override_and_unknown_symbol(tmp_path):
    data = json.loads(SHIPPED.read_text())
    data["instruments"]["BTCUSDT"]["liquidation_fee_rate"] = 0.01
    override = tmp_path / "mine.json"
    override.write_text(json.dumps(data))
    inst, _ = reference_tables(["BTCUSDT"], {"BTCUSDT": ["a", "b", "c", "d"]}, override)
    assert inst["liquidation_fee_rate"][0] == 0.01 and inst["index_min_sources"][0] == 3
    with pytest.raises(ValueError, match=r"SOLUSDT.*|mine\.json") as err:
        reference_tables(["SOLUSDT"], {}, override)
    assert "SOLUSDT" in str(err.value) and "mine.json" in str(err.value)
    data["instruments"]["BTCUSDT"]["tiers"][2]["maintenance_amount"] = 1000
    override.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not continuous"):
        reference_tables(["BTCUSDT"], {}, override)


@needs_data
def test_cli_import(tmp_path, capsys):
    out = tmp_path / "root"
    rc = cli.main(["import", "binance-ws", "--input", str(DATA / "usdm/ethusdt_20240808.gz"),
                   str(DATA / "spot/ethusdt_20240808.gz"), "--out", str(out), "--date", "2024-08-08"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("trades") and "14" in line for line in lines)
    assert set(read_manifest(out)["datasets"]) == WRITTEN
    inst = FilesSource(out).read("instruments", DAY)
    assert inst["index_sources"][0].to_list() == ["binance-spot"] and inst["index_min_sources"][0] == 1


def test_cli_errors(tmp_path, capsys):
    assert cli.main(["import", "binance-ws", "--input", str(tmp_path / "nope.gz"), "--out", str(tmp_path)]) == 2
    assert "nope.gz" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text('1 {"stream":"btcusdt@trade","data":{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":1,'
                   '"p":"1","q":"1","X":"MARKET","m":false}}\n2 {"stream": broken\n')
    assert cli.main(["import", "binance-ws", "--input", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.txt" in err and "line 2" in err


def _line(recv: int, stream: str | None, data: dict) -> str:
    return f"{recv} {json.dumps({'stream': stream, 'data': data} if stream else data)}\n"


def test_depth_gap_stops_the_book(tmp_path):
    """A synthetic USD-M capture: snapshot, two chained events over 23:55, a pu break, more events:
    depth is written for the minute before the break only, and the manifest says GAP."""
    folder = tmp_path / "usdm"
    folder.mkdir()
    e0 = int(dt.datetime(2024, 8, 8, 23, 54, 30, tzinfo=dt.timezone.utc).timestamp() * 1000)
    bids = [[f"{100 - i * 0.01:.2f}", "1"] for i in range(100)]
    asks = [[f"{100.01 + i * 0.01:.2f}", "1"] for i in range(100)]
    lines = [_line(e0, None, {"lastUpdateId": 10, "E": e0, "T": e0, "bids": bids, "asks": asks})]
    ev = lambda e, first, u, pu: {"e": "depthUpdate", "E": e, "T": e, "s": "XUSDT", "U": first, "u": u,  # noqa: E731
                                  "pu": pu, "b": [["99.99", "2"]], "a": []}
    lines.append(_line(e0 + 1, "xusdt@depth@0ms", ev(e0 + 1, 9, 12, 8)))  # straddles lastUpdateId
    lines.append(_line(e0 + 40_000, "xusdt@depth@0ms", ev(e0 + 40_000, 13, 15, 12)))  # 23:55:10
    lines.append(_line(e0 + 100_000, "xusdt@depth@0ms", ev(e0 + 100_000, 20, 22, 17)))  # break
    lines.append(_line(e0 + 200_000, "xusdt@depth@0ms", ev(e0 + 200_000, 23, 25, 22)))
    for k, e in enumerate(range(e0, e0 + 200_001, 1000)):
        lines.append(_line(e, "xusdt@trade", {"e": "trade", "E": e, "T": e, "s": "XUSDT", "t": k, "p": "100.00",
                                               "q": "1", "X": "MARKET", "m": k % 2 == 0}))
        lines.append(_line(e, "xusdt@bookTicker", {"e": "bookTicker", "u": 1, "s": "XUSDT", "b": "100.00",
                                                    "B": "1", "a": "100.01", "A": "1", "T": e, "E": e}))
    cap = folder / "xusdt_20240808.gz"
    with gzip.open(cap, "wt") as fh:
        fh.writelines(lines)
    ref = json.loads(SHIPPED.read_text())
    ref["instruments"]["XUSDT"] = ref["instruments"]["ETHUSDT"] | {"base": "X"}
    ref_path = tmp_path / "ref.json"
    ref_path.write_text(json.dumps(ref))
    out = tmp_path / "out"
    summary = importer("binance-ws")([cap], out, None, ref_path)
    depth = FilesSource(out).read("book_depth", DAY)
    assert depth["ts"].unique().to_list() == [dt.datetime(2024, 8, 8, 23, 55, tzinfo=dt.timezone.utc)]
    # 0.2 % band at mid 100.005: bids >= 99.805 -> 20 levels, 99.99 updated to 2 -> depth 21
    bid = depth.filter(pl.col("percentage") == -0.2)
    assert bid["depth"][0] == pytest.approx(21.0)
    assert "GAP" in read_manifest(out)["datasets"]["book_depth"]["note"]
    assert summary["book"]["XUSDT"]["gap"] and summary["book"]["XUSDT"]["events_applied"] == 2
