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
