"""venue_risk.split: the symbol groups of a split day."""

import pytest

from venue_risk.split import group_name, symbol_groups


def test_round_robin_over_sorted_distinct_symbols():
    syms = ["XRPUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT", "BTCUSDT", "ADAUSDT"]
    assert symbol_groups(syms, 2) == [["ADAUSDT", "ETHUSDT", "XRPUSDT"], ["BTCUSDT", "SOLUSDT"]]
    assert symbol_groups(syms, 1) == [["ADAUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]]
    # never an empty group: more groups than symbols gives one symbol per group
    assert symbol_groups(syms, 9) == [[s] for s in sorted(set(syms))]
    assert symbol_groups([], 4) == []


def test_every_symbol_in_exactly_one_group():
    syms = [f"ALT{i:02d}USDT" for i in range(40)]
    for n in (1, 3, 4, 7, 40):
        groups = symbol_groups(syms, n)
        assert len(groups) == n and sorted(s for g in groups for s in g) == sorted(syms)
        assert max(map(len, groups)) - min(map(len, groups)) <= 1


def test_bad_group_count_and_names():
    with pytest.raises(ValueError, match=">= 1"):
        symbol_groups(["BTCUSDT"], 0)
    assert [group_name(i) for i in (0, 1, 12)] == ["g00", "g01", "g12"]


def test_packed_groups_first_fit_decreasing_by_rows():
    from venue_risk.split import packed_groups

    # worked by hand, cap 10, in the order BTC 25, ETH 7, SOL 4, ADA 3, DOGE 3, XRP 3, TRX 1,
    # LINK 0 (rows down, then name): BTC -> g0 (25, above the cap: nothing joins it); ETH -> g1
    # (7); SOL does not fit g1 (11) -> g2 (4); ADA -> g1 (10); DOGE -> g2 (7); XRP -> g2 (10);
    # TRX fits nowhere -> g3 (1); LINK (0 rows) -> g1 (10, still within the cap)
    rows = {"ADAUSDT": 3, "BTCUSDT": 25, "DOGEUSDT": 3, "ETHUSDT": 7, "LINKUSDT": 0,
            "SOLUSDT": 4, "TRXUSDT": 1, "XRPUSDT": 3}
    assert packed_groups(rows, cap=10) == [["BTCUSDT"], ["ADAUSDT", "ETHUSDT", "LINKUSDT"],
                                           ["DOGEUSDT", "SOLUSDT", "XRPUSDT"], ["TRXUSDT"]]
    assert packed_groups(rows, cap=100) == [sorted(rows)]
    assert packed_groups({}, cap=10) == []
    # the order of the input does not matter
    assert packed_groups(dict(reversed(list(rows.items()))), cap=10) == packed_groups(rows, cap=10)
    with pytest.raises(ValueError, match=">= 1"):
        packed_groups(rows, cap=0)


def test_packed_groups_stay_within_the_cap_with_fewer_groups_than_round_robin():
    """A large day's shape: one symbol about 30 % of the rows, one about 12 %, the rest small:
    every group within the cap unless it is one symbol above it, each symbol once, and fewer
    groups than ceil(rows / cap) round-robin groups need."""
    from venue_risk.split import groups_for_rows, packed_groups

    rows = {"BTCUSDT": 24_000_000, "ETHUSDT": 9_500_000}
    rows |= {f"ALT{i:02d}USDT": 3_000_000 - i * 60_000 for i in range(38)}
    groups = packed_groups(rows, cap=4_000_000)
    assert sorted(s for g in groups for s in g) == sorted(rows)
    assert all(sum(rows[s] for s in g) <= 4_000_000 or len(g) == 1 for g in groups)
    assert len(groups) < groups_for_rows(sum(rows.values()))
