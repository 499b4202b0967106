"""The `files` source: the contract a venue's export jobs write to, and clear errors when they
get it wrong."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from venue_risk.errors import InputError
from venue_risk.schema import DATASETS, conform
from venue_risk.sources.files import FilesSource, partition_dir

DAY = dt.date(2026, 11, 3)


def _trades(n: int = 3) -> pl.DataFrame:
    base = dt.datetime(2026, 11, 3, 1, tzinfo=dt.timezone.utc)
    return conform("trades", pl.DataFrame({
        "ts": [base + dt.timedelta(seconds=i) for i in range(n)],
        "symbol": ["BTCUSDT"] * n, "trade_id": list(range(1, n + 1)),
        "price": [90_000.0 + i for i in range(n)], "qty": [0.1] * n,
        "taker_side": ["buy", "sell", "buy"][:n], "taker_order_id": list(range(10, 10 + n)),
        "maker_order_id": list(range(20, 20 + n)), "taker_account": [1] * n,
        "maker_account": [2] * n, "taker_fee": [3.6] * n, "maker_fee": [0.9] * n,
        "liquidation_id": [None] * n,
    }))


def _write(root, frame: pl.DataFrame, name: str = "part.parquet", dataset: str = "trades"):
    folder = partition_dir(root, dataset, DAY)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".csv"):
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return path


def test_parquet_round_trip_keeps_every_row(tmp_path):
    _write(tmp_path, _trades())
    got = FilesSource(tmp_path).read("trades", DAY)
    assert got.equals(_trades())
    assert dict(got.schema) == DATASETS["trades"].schema


def test_csv_is_read_into_canonical_types(tmp_path):
    _write(tmp_path, _trades(), "part.csv")
    got = FilesSource(tmp_path).read("trades", DAY)
    assert dict(got.schema) == DATASETS["trades"].schema
    assert got["price"].to_list() == [90_000.0, 90_001.0, 90_002.0]
    assert got["ts"][0] == dt.datetime(2026, 11, 3, 1, tzinfo=dt.timezone.utc)


def test_naive_and_nanosecond_timestamps_are_read_as_utc_microseconds(tmp_path):
    frame = _trades().with_columns(pl.col("ts").dt.replace_time_zone(None).dt.cast_time_unit("ns"))
    _write(tmp_path, frame)
    got = FilesSource(tmp_path).read("trades", DAY)
    assert got["ts"].dtype == pl.Datetime("us", "UTC")
    assert got["ts"].to_list() == _trades()["ts"].to_list()


def test_missing_column_is_named(tmp_path):
    path = _write(tmp_path, _trades().drop("qty"))
    with pytest.raises(InputError) as err:
        FilesSource(tmp_path).read("trades", DAY)
    msg = str(err.value)
    assert "'trades'" in msg and str(path) in msg and "'qty'" in msg and "missing" in msg


def test_wrong_type_names_column_row_and_value(tmp_path):
    frame = _trades().with_columns(pl.col("price").cast(pl.String))
    frame = frame.with_columns(pl.when(pl.col("trade_id") == 2).then(pl.lit("n/a"))
                               .otherwise(pl.col("price")).alias("price"))
    _write(tmp_path, frame)
    with pytest.raises(InputError) as err:
        FilesSource(tmp_path).read("trades", DAY)
    msg = str(err.value)
    assert "'price'" in msg and "row 1" in msg and "'n/a'" in msg and "Float64" in msg


def test_unknown_column_is_named(tmp_path):
    _write(tmp_path, _trades().with_columns(pl.lit(1).alias("venue_flag")))
    with pytest.raises(InputError, match="unknown column.*venue_flag"):
        FilesSource(tmp_path).read("trades", DAY)


def test_missing_partition_and_empty_folder_are_named(tmp_path):
    with pytest.raises(InputError, match=r"'trades'.*no partition for 2026-11-03"):
        FilesSource(tmp_path).read("trades", DAY)
    partition_dir(tmp_path, "trades", DAY).mkdir(parents=True)
    with pytest.raises(InputError, match="holds no .parquet or .csv"):
        FilesSource(tmp_path).read("trades", DAY)


def test_truncated_parquet_is_named(tmp_path):
    path = _write(tmp_path, _trades())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        FilesSource(tmp_path).read("trades", DAY)
    assert "not a readable Parquet file" in str(err.value) and str(path) in str(err.value)


def test_several_files_are_concatenated_in_name_order(tmp_path):
    frame = _trades()
    _write(tmp_path, frame.slice(0, 2), "a.parquet")
    _write(tmp_path, frame.slice(2, 1), "b.parquet")
    assert FilesSource(tmp_path).read("trades", DAY).equals(frame)


def test_list_columns_from_csv(tmp_path):
    frame = pl.DataFrame({c: [None] for c in DATASETS["api_keys"].columns})
    frame = frame.with_columns(key_id=pl.lit(1), account=pl.lit(7), scopes=pl.lit('["read","trade"]'),
                               ip_allowlist=pl.lit("10.0.0.1|10.0.0.2"), status=pl.lit("active"),
                               cancel_on_disconnect=pl.lit("true"),
                               created_at=pl.lit("2026-10-01T00:00:00Z"))
    _write(tmp_path, frame, "keys.csv", dataset="api_keys")
    got = FilesSource(tmp_path).read("api_keys", DAY)
    assert got["scopes"].to_list() == [["read", "trade"]]
    assert got["ip_allowlist"].to_list() == [["10.0.0.1", "10.0.0.2"]]
    assert got["cancel_on_disconnect"].to_list() == [True]


def test_land_streams_canonical_parquet_and_equals_read(tmp_path):
    """Canonical Parquet files are landed by a streamed copy (no day in memory): same rows, same
    order, same types as `read`, over several files in name order, columns reordered."""
    from venue_risk.landing import land_dataset, landing_path

    first = _trades(3)
    second = _trades(2).with_columns(pl.col("trade_id") + 100)
    _write(tmp_path / "src", first, "a.parquet")
    _write(tmp_path / "src", second.select(list(reversed(second.columns))), "b.parquet")
    source = FilesSource(tmp_path / "src")
    target = landing_path(tmp_path / "landing", "trades", DAY)
    assert source.land("trades", DAY, target) == 5
    landed = pl.read_parquet(target)
    assert landed.equals(source.read("trades", DAY)) and landed.schema == DATASETS["trades"].schema
    assert landed["trade_id"].to_list() == [1, 2, 3, 101, 102]
    out = land_dataset(source, "trades", DAY, tmp_path / "landing2")
    assert out["rows"] == 5 and pl.read_parquet(out["path"]).equals(landed)


def test_land_falls_back_to_read_when_a_file_needs_conforming(tmp_path):
    """A Parquet file with another type (Int32 account) or a CSV is not streamed: land returns
    None and land_dataset conforms it through `read`, or names the bad value as read does."""
    from venue_risk.landing import land_dataset, landing_path

    _write(tmp_path / "src", _trades(3).with_columns(pl.col("taker_account").cast(pl.Int32)))
    source = FilesSource(tmp_path / "src")
    assert source.land("trades", DAY, landing_path(tmp_path / "l", "trades", DAY)) is None
    out = land_dataset(source, "trades", DAY, tmp_path / "l")
    assert out["rows"] == 3 and pl.read_parquet(out["path"]).equals(_trades(3))
    _write(tmp_path / "csv", _trades(3).with_columns(pl.col("taker_account").cast(pl.String)
                                                     .replace("1", "x")), "t.csv")
    with pytest.raises(InputError, match="taker_account"):
        land_dataset(FilesSource(tmp_path / "csv"), "trades", DAY, tmp_path / "l3")
