"""Quarantine limits and timestamp unit sanity, on hand-worked cases."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from venue_risk.quality.basic import guess_unit, timestamp_unit_check
from venue_risk.quality.limits import DEFAULT_QUARANTINE_LIMITS, limit_checks, parse_quarantine_limits

DAY = dt.date(2026, 11, 2)


def test_limits_parse_and_override():
    limits = parse_quarantine_limits("trades=0.02, liquidations=0.1")
    assert limits["trades"] == 0.02 and limits["liquidations"] == 0.1
    assert limits["order_events"] == DEFAULT_QUARANTINE_LIMITS["order_events"]
    assert parse_quarantine_limits("") == DEFAULT_QUARANTINE_LIMITS


@pytest.mark.parametrize("text, words", [
    ("trade=0.1", ["'trade=0.1'", "dataset among"]),
    ("trades=5", ["'trades=5'", "[0, 1]"]),
    ("trades=much", ["'trades=much'", "a number"]),
    ("trades", ["'trades'", "dataset=share"]),
])
def test_limits_bad_settings_are_named(text, words):
    with pytest.raises(ValueError) as err:
        parse_quarantine_limits(text)
    for w in words:
        assert w in str(err.value)


def _failed(rows: dict, quarantined: dict, limits: dict) -> dict:
    return {c["dataset"]: c["example"] for c in limit_checks(rows, quarantined, limits) if c["failed_count"]}


def test_limit_is_a_share_with_a_small_allowance():
    limits = {"trades": 0.01, "liquidations": 0.05, "instruments": 0.0, "funding": 1.0}
    # 10 of 1,000 trades = 1.00 % (at the limit, passes); 11 = 1.1 % (fails)
    assert _failed({"trades": 1000}, {"trades": 10}, limits) == {}
    assert "11 of 1000 rows (1.10%)" in _failed({"trades": 1000}, {"trades": 11}, limits)["trades"]
    # 1 of 17 liquidations is 5.9 % but only one row: allowed; 4 of 17 is not
    assert _failed({"liquidations": 17}, {"liquidations": 1}, limits) == {}
    assert "liquidations" in _failed({"liquidations": 17}, {"liquidations": 4}, limits)
    # a limit of 0 admits no row; an emptied dataset always fails unless its limit is 1
    assert "instruments" in _failed({"instruments": 40}, {"instruments": 1}, limits)
    assert "every row" in _failed({"liquidations": 2}, {"liquidations": 2}, limits)["liquidations"]
    assert _failed({"funding": 6}, {"funding": 6}, limits) == {}


@pytest.mark.parametrize("epoch_us, unit", [
    (1_762_041_600, "seconds"), (1_762_041_600_000, "milliseconds"),
    (1_762_041_600_000_000_000, "nanoseconds"), (1_762_041_600_000_000, None), (5, None)])
def test_guess_unit(epoch_us, unit):
    if unit is None and epoch_us > 10**15:
        assert guess_unit(epoch_us, DAY) is None or guess_unit(epoch_us, DAY) == "microseconds"
    else:
        assert guess_unit(epoch_us, DAY) == unit


def test_timestamp_unit_check_names_the_unit():
    seconds = pl.DataFrame({"ts": [1_762_041_600, 1_762_041_601]}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")))
    frame = pl.DataFrame({"ts": seconds["ts"], "pool": ["USDT", "USDT"], "balance": [1.0, 2.0]})
    (check,) = timestamp_unit_check("insurance_fund", frame, DAY)
    assert check["failed_count"] == 2 and check["severity"] == "critical"
    assert "look like seconds" in check["example"] and "row 0: 1762041600" in check["example"]
    good = frame.with_columns((pl.col("ts").dt.epoch("us") * 1_000_000).cast(pl.Datetime("us", "UTC")))
    assert timestamp_unit_check("insurance_fund", good, DAY)[0]["failed_count"] == 0
