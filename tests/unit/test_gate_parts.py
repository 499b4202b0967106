"""The gate split by symbol group (quality.gate: gate_parts, validate_part, combine_parts) gives
the day's result whatever the number of groups: the same validation.json (timings and part file
names aside), the same validated rows per dataset, the same quarantine, on clean days and on days
with bad rows that cross symbols (an order of another symbol, a fill that moved symbol, an
unlisted or null symbol, a removed instrument, a quarantined wallet, a duplicate key across two
symbols, a quarantine above its limit, the volume band and the series' end on day totals)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from venue_risk.quality import DataQualityError
from venue_risk.quality.gate import (VENUE, combine_parts, gate_parts, run_gate, sort_columns,
                                     validate_part)
from venue_risk.schema import DATASET_NAMES, DATASETS

PREV = dt.date(2026, 11, 1)
DAY = dt.date(2026, 11, 2)
LOOSE = {d: 0.9 for d in DATASET_NAMES}  # the limits are tested by their own case
TIMINGS = ("seconds", "gx_import_seconds", "validated", "quarantine")


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    from venue_risk.simulate import simulate

    root = tmp_path_factory.mktemp("gate-parts")
    simulate("tiny", DAY, 1, root)
    return root


def _landed(exports: Path, target: Path) -> dict[str, str]:
    landed = {}
    for name in DATASET_NAMES:
        path = target / name / "data.parquet"
        path.parent.mkdir(parents=True)
        shutil.copy(exports / name / f"date={DAY}" / "data.parquet", path)
        landed[name] = str(path)
    return landed


def _edit(landed: dict, dataset: str, fn) -> None:
    fn(pl.read_parquet(landed[dataset])).write_parquet(landed[dataset])


def _set(frame: pl.DataFrame, rows, **values) -> pl.DataFrame:
    hit = pl.int_range(pl.len()).is_in(list(rows) if not isinstance(rows, int) else [rows])
    return frame.with_columns([pl.when(hit).then(pl.lit(v, dtype=frame.schema[c])).otherwise(pl.col(c)).alias(c)
                               for c, v in values.items()])


def _symbol_rows(landed: dict, dataset: str, symbol: str, n: int = 1, extra=None) -> list[int]:
    frame = pl.read_parquet(landed[dataset]).with_row_index("i")
    cond = pl.col("symbol") == symbol
    if extra is not None:
        cond = cond & extra
    return frame.filter(cond)["i"].head(n).to_list()


# -- corruptions -----------------------------------------------------------------------------------

def _bad_trades(landed: dict) -> None:
    """Bad rows in trades across both symbols, a trade naming an order of the other symbol (a
    known order: not bad), a fill that trades another symbol than its liquidation, a fill of an
    unknown liquidation."""
    btc = _symbol_rows(landed, "trades", "BTCUSDT", 3, pl.col("liquidation_id").is_null())
    eth = _symbol_rows(landed, "trades", "ETHUSDT", 3, pl.col("liquidation_id").is_null())
    eth_order = pl.read_parquet(landed["order_events"]).filter(pl.col("symbol") == "ETHUSDT")["order_id"][0]
    fills = pl.read_parquet(landed["trades"]).with_row_index("i").filter(pl.col("liquidation_id").is_not_null())
    moved = int(fills["i"][0])
    other = "ETHUSDT" if fills["symbol"][0] == "BTCUSDT" else "BTCUSDT"

    def fn(f):
        f = _set(f, [btc[0], eth[0]], taker_side=None)
        f = _set(f, eth[1], taker_fee=-1.0)
        f = _set(f, btc[1], taker_order_id=int(eth_order))
        f = _set(f, moved, symbol=other)
        return _set(f, eth[2], liquidation_id=10**12)
    _edit(landed, "trades", fn)


def _bad_instrument(landed: dict) -> None:
    _edit(landed, "instruments", lambda f: _set(f, 0, tick_size=-1.0))


def _bad_wallet(landed: dict) -> None:
    pos = pl.read_parquet(landed["positions_eod"])
    account = int(pos.filter(pl.col("margin_mode") == "cross")["account"][0])
    _edit(landed, "accounts_eod", lambda f: f.with_columns(
        pl.when(pl.col("account") == account).then(None).otherwise(pl.col("wallet_balance")).alias("wallet_balance")))


def _unlisted(landed: dict) -> None:
    """Rows of an unlisted symbol (mark_index, risk_tiers), a lower-case and a null symbol (trades)."""
    _edit(landed, "mark_index", lambda f: pl.concat([f, f.filter(pl.col("symbol") == "BTCUSDT").tail(5)
                                                     .with_columns(pl.lit("DOGEUSDT").alias("symbol"))]))
    rows = _symbol_rows(landed, "trades", "ETHUSDT", 2, pl.col("liquidation_id").is_null())
    _edit(landed, "trades", lambda f: _set(_set(f, rows[0], symbol="ethusdt"), rows[1], symbol=None))
    _edit(landed, "risk_tiers", lambda f: pl.concat([f, f.head(1).with_columns(pl.lit("DOGEUSDT").alias("symbol"))]))


def _duplicate_key_across_symbols(landed: dict) -> None:
    btc = _symbol_rows(landed, "trades", "BTCUSDT", 1, pl.col("liquidation_id").is_null())[0]
    eth = _symbol_rows(landed, "trades", "ETHUSDT", 1, pl.col("liquidation_id").is_null())[0]
    _edit(landed, "trades", lambda f: _set(f, eth, trade_id=int(f["trade_id"][btc])))


def _above_limit(landed: dict) -> None:
    _edit(landed, "trades", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) % 20 == 0).then(None).otherwise(pl.col("taker_side")).alias("taker_side")))


def _stale_series(landed: dict) -> None:
    """One symbol's mark_index stops 10 minutes early: the per-symbol freshness rule (critical)."""
    end = dt.datetime.combine(DAY, dt.time(23, 50), tzinfo=dt.timezone.utc)
    _edit(landed, "mark_index", lambda f: f.filter((pl.col("symbol") != "ETHUSDT") | (pl.col("ts") < end)))


def _volume_history(data: Path, landed: dict, factor: float) -> None:
    """A passed previous day whose row counts are `factor` x today's (the volume band)."""
    counts = {d: int(pl.scan_parquet(p).select(pl.len()).collect().item() * factor) for d, p in landed.items()}
    path = data / "quality" / f"date={PREV}" / "validation.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"status": "passed", "row_counts": counts}))


#: name -> (corruption, quarantine limits, volume history factor, expected status)
CASES = {
    "clean": (None, None, 1.0, "passed"),
    "bad-trade-rows": (_bad_trades, LOOSE, 1.0, "warnings"),
    "quarantined-instrument": (_bad_instrument, {d: 1.0 for d in DATASET_NAMES}, 1.0, "warnings"),
    "quarantined-wallet": (_bad_wallet, LOOSE, 1.0, "warnings"),
    "unlisted-and-null-symbols": (_unlisted, LOOSE, 1.0, "warnings"),
    "volume-band-on-day-totals": (None, None, 3.0, "warnings"),
    "duplicate-trade-id-across-symbols": (_duplicate_key_across_symbols, None, 1.0, "failed"),
    "quarantine-above-a-limit": (_above_limit, None, 1.0, "failed"),
    "one-symbol-series-stale": (_stale_series, None, 1.0, "failed"),
}


def _run(landed: dict, data: Path, groups: int, limits, factor: float) -> tuple[dict, dict, pl.DataFrame | None]:
    _volume_history(data, landed, factor)
    try:
        result = run_gate(DAY, landed, data, quarantine_limits=limits, groups=groups)
    except DataQualityError as err:
        leftovers = [p for p in (data / "validated").rglob("*.parquet")] if (data / "validated").exists() else []
        assert not leftovers, f"a failed gate left validated partitions: {leftovers}"
        return err.result, {}, None
    rows = {}
    for dataset, files in result["validated"].items():
        assert isinstance(files, list) and files
        frame = pl.concat([pl.read_parquet(f) for f in files])
        rows[dataset] = frame.sort(sort_columns(dataset) + DATASETS[dataset].columns, nulls_last=True)
    quarantine = pl.read_parquet(result["quarantine"]).sort("dataset", "source_row")
    return result, rows, quarantine


def _comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in TIMINGS}


@pytest.mark.parametrize("name", list(CASES))
def test_every_grouping_gives_the_same_gate(exports, tmp_path, name):
    corrupt, limits, factor, status = CASES[name]
    landed = _landed(exports, tmp_path / "landing")
    if corrupt:
        corrupt(landed)
    # None: the tiny day packs into one group, so the gate runs it as the whole day's one part
    runs = {g: _run(landed, tmp_path / f"data-{g}", g, limits, factor) for g in (None, 1, 3)}
    one, rows_one, q_one = runs[1]
    assert one["status"] == status, [c for c in one["checks"] if c["failed_count"]]
    for other, rows_other, q_other in (runs[3], runs[None]):
        assert _comparable(one) == _comparable(other)
        assert rows_one.keys() == rows_other.keys()
        for dataset in rows_one:
            assert_frame_equal(rows_one[dataset], rows_other[dataset])
        if q_one is not None:
            assert_frame_equal(q_one, q_other)
    if status != "passed":
        assert any(c["failed_count"] for c in one["checks"])


def test_a_day_of_one_group_is_one_part(exports, tmp_path):
    """Symbols that pack into one group: the day is validated as one part holding every row (no
    venue part validating the reference datasets a second time); a number of groups asked for
    keeps its groups and the venue part."""
    landed = _landed(exports, tmp_path / "landing")
    data = tmp_path / "data"
    assert gate_parts(DAY, landed, None, data) == [{"part": "day", "symbols": None, "whole_day": True}]
    assert [p["part"] for p in gate_parts(DAY, landed, 1, data)] == ["g00", "venue"]
    out = validate_part(DAY, landed, data, gate_parts(DAY, landed, None, data)[0])
    assert out["rows"] == sum(pl.read_parquet(path).height for path in landed.values())


def test_cross_symbol_rows_are_judged_by_the_day(exports, tmp_path):
    """A trade naming another symbol's order is not unknown; a fill that trades another symbol
    than its liquidation takes its liquidation along; an unlisted symbol's rows are quarantined
    by the venue part; a duplicate trade_id across two symbols is found."""
    landed = _landed(exports, tmp_path / "landing")
    _bad_trades(landed)
    result, _, quarantine = _run(landed, tmp_path / "data", 3, LOOSE, 1.0)
    got = {(q["dataset"], q["reason"]): q["rows"] for q in result["quarantined"]}
    assert ("trades", "taker_order_id is an order in order_events") not in got
    assert got[("trades", "a liquidation fill trades the liquidation's symbol")] == 1
    assert got[("liquidations", "fills quarantined in trades")] >= 1
    ids = {json.loads(r)["liquidation_id"] for r in quarantine.filter(pl.col("dataset") == "liquidations")["record"]}
    fills = pl.read_parquet(landed["trades"]).filter(pl.col("liquidation_id").is_in(list(ids))).height
    own = sum(1 for row in quarantine.filter(pl.col("dataset") == "trades").iter_rows(named=True)
              if json.loads(row["record"])["liquidation_id"] in ids and row["reason"] != "liquidation quarantined")
    assert got.get(("trades", "liquidation quarantined"), 0) == fills - own
    assert got[("trades", "liquidation fills point to a known liquidation")] == 1
    # source_row is the row in the landed file
    landed_trades = pl.read_parquet(landed["trades"]).with_row_index("i")
    for row in quarantine.filter(pl.col("dataset") == "trades").iter_rows(named=True):
        record = json.loads(row["record"])
        assert landed_trades["trade_id"][row["source_row"]] == record["trade_id"]

    landed = _landed(exports, tmp_path / "landing-dup")
    _duplicate_key_across_symbols(landed)
    with pytest.raises(DataQualityError, match="trade_id unique"):
        run_gate(DAY, landed, tmp_path / "data-dup", groups=2)


def test_parts_contract_and_rerun_with_other_groups(exports, tmp_path):
    """gate_parts names the groups g00.. then venue (JSON-serializable); validate_part writes only
    its part; combine_parts references only the given parts, and a rerun with fewer groups
    leaves no stale file behind or referenced; the warehouse load of either run is the same."""
    from venue_risk.warehouse import day_digest, load_day

    landed = _landed(exports, tmp_path / "landing")
    parts = gate_parts(DAY, landed, 3)
    assert json.loads(json.dumps(parts)) == parts
    assert [p["part"] for p in parts] == ["g00", "g01", VENUE]
    assert parts[0]["symbols"] == ["BTCUSDT"] and parts[-1]["symbols"] is None
    data = tmp_path / "data"
    summaries = [validate_part(DAY, landed, data, p) for p in parts]
    assert json.loads(json.dumps(summaries)) == summaries
    assert not (data / "quality" / f"date={DAY}" / "validation.json").exists()
    split = combine_parts(DAY, data, parts)
    assert split["validated"]["trades"] == [str(data / "validated" / "trades" / f"date={DAY}" / f"{p}.parquet")
                                            for p in ("g00", "g01", "venue")]
    assert split["validated"]["api_requests"] == [str(data / "validated" / "api_requests" / f"date={DAY}" / "venue.parquet")]
    load_day(tmp_path / "split.duckdb", DAY, split["validated"], quarantine=split["quarantine"])

    one = run_gate(DAY, landed, data, groups=1)
    for dataset, files in one["validated"].items():
        on_disk = sorted(str(p) for p in Path(files[0]).parent.glob("*.parquet"))
        assert on_disk == sorted(files), dataset
        assert all(Path(f).name in ("g00.parquet", "venue.parquet") for f in files)
    load_day(tmp_path / "one.duckdb", DAY, one["validated"], quarantine=one["quarantine"])
    assert day_digest(tmp_path / "split.duckdb", DAY) == day_digest(tmp_path / "one.duckdb", DAY)


def test_demo_day_one_three_and_one_group_per_symbol(tmp_path):
    """A clean demo day (4 symbols): 1 group, 3 groups (2+1+1 symbols) and one group per symbol
    give the same validation.json and the same validated rows and quarantine."""
    from venue_risk.simulate import simulate

    simulate("demo", DAY, 1, tmp_path / "exports")
    landed = {name: str(tmp_path / "exports" / name / f"date={DAY}" / "data.parquet") for name in DATASET_NAMES}
    runs = {g: _run(landed, tmp_path / f"data-{g}", g, None, 1.0) for g in (1, 3, 4)}
    assert [len(v) for v in runs[3][0]["validated"].values()][2] == 4  # trades: g00 g01 g02 venue
    base, rows, quarantine = runs[1]
    assert base["status"] in ("passed", "warnings")
    for g in (3, 4):
        result, other_rows, other_q = runs[g]
        assert _comparable(result) == _comparable(base)
        for dataset in rows:
            assert_frame_equal(rows[dataset], other_rows[dataset])
        assert_frame_equal(quarantine, other_q)


def test_parts_read_the_day_facts_gate_parts_stored(exports, tmp_path):
    """gate_parts computes the day's facts (schema, units, row counts, suite coverage of the
    whole landed files) once and stores them under a key of the landed files; a part reads them
    instead of scanning every landed file again (a planted row count shows through), and a file
    landed again (new mtime and size) makes the part recompute and replace them."""
    from venue_risk.quality import gate

    landed = _landed(exports, tmp_path / "landing")
    data = tmp_path / "data"
    parts = gate_parts(DAY, landed, 2, data)
    stored = json.loads(gate.facts_file(data, DAY).read_text())
    gate._CACHE.clear()
    assert stored["facts"] == json.loads(json.dumps(gate.day_facts(DAY, landed, None), default=str))
    true_trades = stored["facts"]["row_counts"]["trades"]

    stored["facts"]["row_counts"]["trades"] = 424242  # what only a read of the stored file can give
    gate.facts_file(data, DAY).write_text(json.dumps(stored))
    gate._CACHE.clear()
    validate_part(DAY, landed, data, parts[0])
    summary = json.loads((data / "quality" / f"date={DAY}" / "parts" / "g00.json").read_text())
    assert summary["row_counts"]["trades"] == 424242

    _edit(landed, "trades", lambda f: f.head(f.height - 1))  # landed again: one row fewer
    gate._CACHE.clear()
    validate_part(DAY, landed, data, parts[0])
    summary = json.loads((data / "quality" / f"date={DAY}" / "parts" / "g00.json").read_text())
    assert summary["row_counts"]["trades"] == true_trades - 1
    assert json.loads(gate.facts_file(data, DAY).read_text())["facts"]["row_counts"]["trades"] == true_trades - 1


def test_duplicate_keys_over_the_whole_file(tmp_path):
    """combine_parts counts a key without a symbol column over the whole landed file, as GX
    counts it: a single key leaves nulls out, a compound key only the rows with every key null;
    every row of a repeated key counts, and the first such landed row is named."""
    from venue_risk.quality.gate import _duplicates

    path = tmp_path / "keys.parquet"
    pl.DataFrame({"a": [5, 1, 2, 1, None, None, 3, 3, 4, 1],
                  "b": ["p", "x", "y", "x", None, None, None, None, "z", "w"]}).write_parquet(path)
    assert _duplicates(str(path), ("a", "b")) == (4, 1)  # rows 1, 3 (1, x) and 6, 7 (3, null)
    assert _duplicates(str(path), ("a",)) == (5, 1)  # 1 three times, 3 twice; the nulls left out
    assert _duplicates(str(path), ("b",)) == (2, 1)  # x twice
    pl.DataFrame({"a": [1, 2, None, None]}).write_parquet(path)
    assert _duplicates(str(path), ("a",)) == (0, None)


def test_default_groups_are_the_symbols_packed_by_their_landed_rows(exports, tmp_path, monkeypatch):
    """Without a number of groups, gate_parts packs the listed symbols by their landed rows
    (split.packed_groups), counted here independently of the gate; validation.json records the
    counts (the metric stage packs its groups from them); the result is the one-group result."""
    from venue_risk import split

    landed = _landed(exports, tmp_path / "landing")
    listed = set(pl.read_parquet(landed["instruments"])["symbol"].drop_nulls().to_list())
    counts = dict.fromkeys(listed, 0)
    for dataset in DATASET_NAMES:
        if "symbol" in DATASETS[dataset].schema:
            for symbol, n in pl.read_parquet(landed[dataset]).group_by("symbol").len().iter_rows():
                if symbol in counts:
                    counts[symbol] += n
    cap = sum(counts.values()) // 3  # a tiny day's "large": more than one group
    monkeypatch.setattr(split, "ROWS_PER_GROUP", cap)
    data = tmp_path / "data"
    parts = gate_parts(DAY, landed, None, data)
    assert [p["symbols"] for p in parts[:-1]] == split.packed_groups(counts, cap) and len(parts) > 2
    assert all(sum(counts[s] for s in p["symbols"]) <= cap or len(p["symbols"]) == 1 for p in parts[:-1])
    packed, rows_packed, q_packed = _run(landed, tmp_path / "data-packed", None, LOOSE, 1.0)
    assert packed["symbol_rows"] == counts
    one, rows_one, q_one = _run(landed, tmp_path / "data-one", 1, LOOSE, 1.0)
    assert _comparable(packed) == _comparable(one)
    for dataset in rows_one:
        assert_frame_equal(rows_packed[dataset], rows_one[dataset])
    assert_frame_equal(q_packed, q_one)
