"""Order-flow integrity (DESIGN 4.6): position rebuild and violations, on hand-worked frames, and
on the tiny simulated venue (rebuild equals positions_eod; a clean day has no violation).

Fixture day 2024-03-01, symbol BTCUSDT, market maker account 9 on the other side of every fill
(except the self-trade). Orders and what must be found:
  101  account 1 (long 2) reduce-only sell qty 3: fill 2 @ 100 (2 -> 0, fine, partial), then
       fill 1 @ 99 (0 -> -1): reduce_only_grew inside a partial fill.
  301  account 3 (long 1) reduce-only sell qty 3, one fill 3 @ 101: 1 -> -2, reduce_only_flipped.
  401  account 4 (short 1) reduce-only sell 0.5 @ 100: -1 -> -1.5, reduce_only_grew (not partial).
  501  account 5 post-only buy 1 @ 100 that appears as taker: post_only_took_liquidity.
  905  maker quote of 9 cancelled at 12:00:00, filled at 12:00:00.001: fill_after_cancel.
  906  maker quote of 9 cancelled at 13:00:00 and filled at the same ts: not flagged (the fill
       wins a same-microsecond tie).
  701  account 7 buys 1 @ 100 from its own maker order 702: self_trade.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from venue_risk.errors import InputError
from venue_risk.metrics import order_flow as of

sys.path.insert(0, str(Path(__file__).parent))
from test_slippage import frame  # noqa: E402  (the shared canonical-frame builder)

DAY = dt.date(2024, 3, 1)
SYM = "BTCUSDT"


def ts(h: int, m: int = 0, s: int = 0, us: int = 0) -> dt.datetime:
    return dt.datetime(2024, 3, 1, h, m, s, us, tzinfo=dt.timezone.utc)



def positions(rows: list[tuple[int, float, float]]) -> pl.DataFrame:
    return frame("positions_eod", [dict(date=DAY - dt.timedelta(days=1), account=a, symbol=SYM, size=q,
                                        entry_price=e, margin_mode="cross", leverage=10.0,
                                        isolated_margin=0.0) for a, q, e in rows])


def trade(tid: int, t: dt.datetime, price: float, qty: float, side: str, taker: tuple[int, int],
          maker: tuple[int, int]) -> dict:
    return dict(ts=t, symbol=SYM, trade_id=tid, price=price, qty=qty, taker_side=side,
                taker_account=taker[0], taker_order_id=taker[1], maker_account=maker[0],
                maker_order_id=maker[1], taker_fee=0.0, maker_fee=0.0)


def event(t: dt.datetime, oid: int, account: int, ev: str, side: str, qty: float, cum: float = 0.0,
          reduce_only: bool = False, post_only: bool = False) -> dict:
    return dict(ts=t, symbol=SYM, order_id=oid, account=account, event=ev, side=side,
                order_type="limit", tif="GTX" if post_only else "GTC", price=100.0, qty=qty,
                cum_filled_qty=cum, reduce_only=reduce_only, post_only=post_only)


# --- rebuild --------------------------------------------------------------------------------------

def test_rebuild_three_fills_with_a_flip_equals_hand_numbers():
    # account 1 long 2 @ 100; maker 9 flat.
    start = positions([(1, 2.0, 100.0)])
    trades = frame("trades", [  # given out of order: exchange order is (ts, trade_id)
        trade(3, ts(10, 0, 2), 90.0, 1.0, "buy", (1, 13), (9, 93)),
        trade(2, ts(10, 0, 1), 100.0, 5.0, "sell", (1, 12), (9, 92)),
        trade(1, ts(10, 0, 1), 130.0, 1.0, "buy", (1, 11), (9, 91)),
    ])
    rows = of.rebuild_positions(start, trades)
    assert rows.columns == list(of.FILLS_SCHEMA)
    got = rows.select("trade_id", "role", "account", "order_id", "qty_signed", "size_before",
                      "size_after").rows()
    assert got == [
        (1, "taker", 1, 11, 1.0, 2.0, 3.0),     # 2 @ 100 + 1 @ 130 -> 3 @ 110
        (1, "maker", 9, 91, -1.0, 0.0, -1.0),   # -1 @ 130
        (2, "taker", 1, 12, -5.0, 3.0, -2.0),   # flip: -2 @ 100
        (2, "maker", 9, 92, 5.0, -1.0, 4.0),    # flip: 4 @ 100
        (3, "taker", 1, 13, 1.0, -2.0, -1.0),   # reduce: -1 @ 100
        (3, "maker", 9, 93, -1.0, 4.0, 3.0),    # reduce: 3 @ 100
    ]
    assert rows["entry_price_after"].to_list() == pytest.approx([110.0, 130.0, 100.0, 100.0, 100.0, 100.0])
    assert (rows["date"] == DAY).all()
    eod = of.end_of_day_positions(start, trades)
    assert eod.columns == ["date", "account", "symbol", "size", "entry_price"]
    assert eod.select("account", "size", "entry_price").rows() == [(1, -1.0, 100.0), (9, 3.0, 100.0)]
    assert eod["date"].to_list() == [DAY, DAY]


def test_rebuild_flat_positions_dropped_and_empty_day():
    start = positions([(1, 1.0, 100.0)])
    t = frame("trades", [trade(1, ts(1), 90.0, 1.0, "sell", (1, 11), (9, 91))])
    assert of.end_of_day_positions(start, t).select("account", "size").rows() == [(9, 1.0)]
    empty = of.end_of_day_positions(start, frame("trades", []))
    assert empty.select("account", "size", "entry_price").rows() == [(1, 1.0, 100.0)]
    assert empty["date"][0] == DAY  # start date + 1
    assert of.rebuild_positions(start, frame("trades", [])).height == 0


def test_bad_inputs_name_dataset_and_column():
    start = positions([(1, 1.0, 100.0)])
    with pytest.raises(InputError, match="trades.*taker_side"):
        of.rebuild_positions(start, frame("trades", [trade(1, ts(1), 90.0, 1.0, "short", (1, 11), (9, 91))]))
    with pytest.raises(InputError, match="trades.*trade_id"):
        t = trade(1, ts(1), 90.0, 1.0, "sell", (1, 11), (9, 91))
        of.rebuild_positions(start, frame("trades", [t, t]))
    with pytest.raises(InputError, match="positions_eod.*entry_price"):
        of.rebuild_positions(start.drop("entry_price"), frame("trades", []))


# --- violations -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_day():
    start = positions([(1, 2.0, 100.0), (3, 1.0, 100.0), (4, -1.0, 100.0)])
    trades = frame("trades", [
        trade(1, ts(9), 100.0, 2.0, "sell", (1, 101), (9, 901)),
        trade(2, ts(9, 0, 5), 99.0, 1.0, "sell", (1, 101), (9, 902)),
        trade(3, ts(10), 101.0, 3.0, "sell", (3, 301), (9, 903)),
        trade(4, ts(10, 30), 100.0, 0.5, "sell", (4, 401), (9, 907)),
        trade(5, ts(11), 100.0, 1.0, "buy", (5, 501), (9, 904)),
        trade(6, ts(12, 0, 0, 1000), 100.0, 1.0, "buy", (6, 601), (9, 905)),
        trade(7, ts(13), 100.0, 1.0, "buy", (6, 602), (9, 906)),
        trade(8, ts(14), 100.0, 1.0, "buy", (7, 701), (7, 702)),
    ])
    ev = [
        event(ts(8, 59), 101, 1, "new", "sell", 3.0, reduce_only=True),
        event(ts(9), 101, 1, "partial_fill", "sell", 3.0, 2.0, reduce_only=True),
        event(ts(9, 0, 5), 101, 1, "fill", "sell", 3.0, 3.0, reduce_only=True),
        event(ts(10), 301, 3, "new", "sell", 3.0, reduce_only=True),
        event(ts(10), 301, 3, "fill", "sell", 3.0, 3.0, reduce_only=True),
        event(ts(10, 30), 401, 4, "new", "sell", 0.5, reduce_only=True),
        event(ts(10, 30), 401, 4, "fill", "sell", 0.5, 0.5, reduce_only=True),
        event(ts(11), 501, 5, "new", "buy", 1.0, post_only=True),
        event(ts(11), 501, 5, "fill", "buy", 1.0, 1.0, post_only=True),
        event(ts(12), 601, 6, "new", "buy", 1.0),
        event(ts(13), 602, 6, "new", "buy", 1.0),
        event(ts(14), 701, 7, "new", "buy", 1.0),
        event(ts(13, 59), 702, 7, "new", "sell", 1.0),
    ]
    for oid, side, q in [(901, "buy", 2.0), (902, "buy", 1.0), (903, "buy", 3.0), (904, "sell", 1.0),
                         (905, "sell", 1.0), (906, "sell", 1.0), (907, "buy", 0.5)]:
        ev.append(event(ts(8), oid, 9, "new", side, q, post_only=True))
    ev.append(event(ts(11, 59, 59, 800_000), 905, 9, "new", "sell", 1.0, post_only=True))  # re-quote noise
    ev = [e for e in ev if not (e["order_id"] == 905 and e["ts"] == ts(8))]  # 905 rests 0.2 s
    ev.append(event(ts(12), 905, 9, "cancel", "sell", 1.0, post_only=True))
    ev.append(event(ts(13), 906, 9, "cancel", "sell", 1.0, post_only=True))
    events = frame("order_events", ev)
    fills = of.rebuild_positions(start, trades)
    return start, trades, events, fills, of.violations(events, trades, fills)


def test_every_violation_found_with_its_order(fixture_day):
    *_, v = fixture_day
    assert v.columns == list(of.VIOLATIONS_SCHEMA)
    assert v.select("kind", "trade_id", "order_id", "account", "role", "in_partial_fill").rows() == [
        ("reduce_only_grew", 2, 101, 1, "taker", True),
        ("reduce_only_flipped", 3, 301, 3, "taker", False),
        ("reduce_only_grew", 4, 401, 4, "taker", False),
        ("post_only_took_liquidity", 5, 501, 5, "taker", False),
        ("fill_after_cancel", 6, 905, 9, "maker", False),
        ("self_trade", 8, 701, 7, "taker", False),
    ]
    assert (v["date"] == DAY).all() and (v["symbol"] == SYM).all()


def test_violation_details(fixture_day):
    *_, v = fixture_day
    d = dict(zip(v["trade_id"].to_list(), v["details"].to_list()))
    assert "position 0 -> -1" in d[2] and "opened from flat" in d[2]
    assert "inside a partial fill: 1 earlier fill(s) today, 2 filled before" in d[2]
    assert "position 1 -> -2 (flipped and |size| grew)" in d[3]
    assert "position -1 -> -1.5 (|size| grew)" in d[4] and "not inside a partial fill" in d[4]
    assert "post-only order (tif GTX) was the taker" in d[5]
    assert "1 ms after the cancel at 12:00:00.000000" in d[6]
    assert "order lived 0.2 s from new to cancel (rapid cancel)" in d[6]
    assert "maker order 702" in d[8]


def test_fill_at_the_same_ts_as_the_cancel_is_not_flagged(fixture_day):
    *_, v = fixture_day
    assert 7 not in v["trade_id"].to_list()


def test_reduce_only_fill_that_only_reduces_is_clean(fixture_day):
    *_, fills, v = fixture_day
    first = fills.filter((pl.col("trade_id") == 1) & (pl.col("role") == "taker"))
    assert first.select("size_before", "size_after").row(0) == (2.0, 0.0)
    assert 1 not in v["trade_id"].to_list()


def test_violation_counts_with_zero_rows(fixture_day):
    *_, v = fixture_day
    c = of.violation_counts(v, [SYM, "ETHUSDT"], day=DAY)
    assert c.columns == list(of.COUNTS_SCHEMA)
    assert c.height == 2 * len(of.KINDS)
    btc = dict(zip(c.filter(pl.col("symbol") == SYM)["kind"], c.filter(pl.col("symbol") == SYM)["count"]))
    assert btc == {"reduce_only_grew": 2, "reduce_only_flipped": 1, "post_only_took_liquidity": 1,
                   "fill_after_cancel": 1, "self_trade": 1}
    assert c.filter(pl.col("symbol") == "ETHUSDT")["count"].sum() == 0
    clean = of.violation_counts(v.clear(), [SYM], day=DAY)
    assert clean.height == len(of.KINDS) and clean["count"].sum() == 0


# --- the tiny simulated venue ---------------------------------------------------------------------

def simulated(tmp_path_factory, name: str, **kw):
    """Two tiny days (2026-11-01, 02) read through the files source."""
    from venue_risk.simulate import simulate
    from venue_risk.sources import FilesSource
    out = tmp_path_factory.mktemp(name)
    simulate("tiny", dt.date(2026, 11, 1), 2, out, **kw)
    return FilesSource(out)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The default incident plan (day 2 has a BTC shock with liquidations)."""
    return simulated(tmp_path_factory, "of-tiny")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """No incident at all."""
    return simulated(tmp_path_factory, "of-clean", incidents=[])


def test_rebuild_equals_simulated_positions_eod(tiny):
    d1, d2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    start, trades = tiny.read("positions_eod", d1), tiny.read("trades", d2)
    expected = tiny.read("positions_eod", d2)
    got = of.end_of_day_positions(start, trades)
    j = expected.join(got, on=["account", "symbol"], how="full", suffix="_got", coalesce=True)
    assert j.height == expected.height == got.height > 0
    assert (j["size"] - j["size_got"]).abs().max() <= 1e-9
    assert ((j["entry_price"] - j["entry_price_got"]).abs() / j["entry_price"].abs()).max() <= 1e-9
    assert (got["date"] == d2).all()
    # the last size_after of each account x symbol is its end-of-day size
    last = (of.rebuild_positions(start, trades).group_by("account", "symbol").agg(pl.col("size_after").last())
            .join(got, on=["account", "symbol"], how="left").with_columns(pl.col("size").fill_null(0.0)))
    assert (last["size_after"] - last["size"]).abs().max() <= 1e-9


def test_clean_simulated_day_has_no_violation(clean):
    tiny = clean
    d1, d2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    trades = tiny.read("trades", d2)
    fills = of.rebuild_positions(tiny.read("positions_eod", d1), trades)
    assert fills.height == 2 * trades.height
    v = of.violations(tiny.read("order_events", d2), trades, fills)
    assert v.height == 0
    c = of.violation_counts(v, tiny.read("instruments", d2), day=d2)
    assert c.height == tiny.read("instruments", d2).height * len(of.KINDS) and c["count"].sum() == 0


# --- the compiled replay is the Python step loop, bit for bit ------------------------------------

def _python_replay(start: pl.DataFrame, trades: pl.DataFrame) -> tuple[list, dict]:
    """The reference: positions.step applied fill by fill in a Python loop (taker, then maker)."""
    from venue_risk.positions import step

    book = {(a, s): (q, e) for a, s, q, e in start.select("account", "symbol", "size", "entry_price").iter_rows()
            if q != 0.0}
    rows = []
    for price, qty, side, tk, mk, sym in trades.sort("ts", "trade_id").select(
            "price", "qty", "taker_side", "taker_account", "maker_account", "symbol").iter_rows():
        d = qty if side == "buy" else -qty
        for acct, dd in ((tk, d), (mk, -d)):
            q0, e0 = book.get((acct, sym), (0.0, 0.0))
            q1, e1, _ = step(q0, e0, dd, price)
            book[(acct, sym)] = (q1, e1)
            rows.append((dd, q0, q1, e1))
    return rows, book


# quantities that leave float residues (0.1 + 0.2 - 0.3 is not 0): the flat rule |size| < 1e-9
QTYS = (0.1, 0.2, 0.3, 1.0, 2.5, 1 / 3, 7.0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["BTCUSDT", "ETHUSDT"]),
                                st.sampled_from([-2.0, -0.3, 0.0, 0.1, 1.0])), max_size=6,
                      unique_by=lambda r: r[:2]),
       fills=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4), st.sampled_from(["BTCUSDT", "ETHUSDT"]),
                                st.sampled_from(QTYS), st.sampled_from([99.5, 100.0, 101.25, 137.0]),
                                st.booleans(), st.integers(0, 5)), max_size=40))
def test_compiled_replay_equals_the_python_step_loop(start, fills):
    start_frame = frame("positions_eod", [
        dict(date=DAY - dt.timedelta(days=1), account=a, symbol=s, size=q, entry_price=100.0 if q else 0.0,
             margin_mode="cross", leverage=10.0, isolated_margin=0.0) for a, s, q in start])
    trades = frame("trades", [
        dict(ts=ts(9, 0, sec), symbol=s, trade_id=i, price=p, qty=q, taker_side="buy" if buy else "sell",
             taker_account=tk, taker_order_id=1000 + i, maker_account=mk, maker_order_id=2000 + i,
             taker_fee=0.0, maker_fee=0.0)
        for i, (tk, mk, s, q, p, buy, sec) in enumerate(fills)])
    expected_rows, expected_book = _python_replay(start_frame, trades)
    rows = of.rebuild_positions(start_frame, trades)
    # exact equality: the same float operations in the same order
    assert rows.select("qty_signed", "size_before", "size_after", "entry_price_after").rows() == expected_rows
    eod = of.end_of_day_positions(start_frame, trades, DAY)
    assert sorted(eod.select("account", "symbol", "size", "entry_price").rows()) == sorted(
        (a, s, q, e) for (a, s), (q, e) in expected_book.items() if q != 0.0)
