"""Position rebuild from fills: weighted-average entry on increase, unchanged on reduction,
reset on flip; maker takes the opposite side; exchange order (ts, trade_id)."""

import datetime as dt

import polars as pl
import pytest

from venue_risk.positions import apply_fills, step

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def test_step_cases():
    assert step(0.0, 0.0, 2.0, 100.0) == (2.0, 100.0, 0.0)
    q, e, r = step(2.0, 100.0, 1.0, 130.0)
    assert (q, r) == (3.0, 0.0) and e == pytest.approx(110.0)
    assert step(3.0, 110.0, -1.0, 120.0) == (2.0, 110.0, pytest.approx(10.0))
    assert step(2.0, 110.0, -5.0, 100.0) == (-3.0, 100.0, pytest.approx(-20.0))
    assert step(-3.0, 100.0, 3.0, 90.0) == (0.0, 0.0, pytest.approx(30.0))
    # float residue below FLAT_EPS is flat
    assert step(0.3, 100.0, -(0.1 + 0.2), 100.0)[0] == 0.0


def fills(rows):
    return pl.DataFrame(rows, schema={"ts": pl.Datetime("us", "UTC"), "trade_id": pl.Int64, "symbol": pl.String,
                                      "price": pl.Float64, "qty": pl.Float64, "taker_side": pl.String,
                                      "taker_account": pl.Int64, "maker_account": pl.Int64}, orient="row")


def test_apply_fills_taker_and_maker_in_exchange_order():
    start = pl.DataFrame({"account": [7], "symbol": ["BTCUSDT"], "size": [1.0], "entry_price": [100.0]})
    f = fills([
        (T0 + dt.timedelta(seconds=2), 3, "BTCUSDT", 90.0, 3.0, "sell", 7, 2),  # flip 7 to -1 @ 90
        (T0 + dt.timedelta(seconds=1), 2, "BTCUSDT", 120.0, 1.0, "buy", 7, 2),  # 7: 2 @ 110
        (T0 + dt.timedelta(seconds=1), 1, "ETHUSDT", 10.0, 5.0, "buy", 9, 2),
    ])
    out = apply_fills(start, f)
    rows = {(a, s): (q, e) for a, s, q, e in out.iter_rows()}
    assert rows[(7, "BTCUSDT")] == (-1.0, 90.0)
    # maker 2: -1 @ 120, then +3 @ 90 -> flip to +2 @ 90
    assert rows[(2, "BTCUSDT")] == (2.0, 90.0)
    assert rows[(9, "ETHUSDT")] == (5.0, 10.0)
    assert rows[(2, "ETHUSDT")] == (-5.0, 10.0)
    assert out.columns == ["account", "symbol", "size", "entry_price"]


def test_flat_positions_omitted_and_empty_inputs():
    start = pl.DataFrame({"account": [7], "symbol": ["BTCUSDT"], "size": [1.0], "entry_price": [100.0]})
    f = fills([(T0, 1, "BTCUSDT", 90.0, 1.0, "sell", 7, 2)])
    out = apply_fills(start, f)
    assert out.filter(pl.col("account") == 7).height == 0
    assert apply_fills(start, f.clear()).rows() == [(7, "BTCUSDT", 1.0, 100.0)]
