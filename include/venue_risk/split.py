"""Splitting a day by symbol (DESIGN 8, scale-out): the symbol groups that the gate and the
per-symbol metric families run on as separate (Airflow mapped) tasks.

    symbol_groups(symbols, groups) -> list[list[str]]
    group_name(index) -> "g00", "g01", ...
    groups_for_rows(rows) -> the default number of groups of a day of `rows` rows

The grouping is a pure function of the day's listed symbols and the number of groups, so every
task of a run (and a rerun) agrees on it.
"""

from __future__ import annotations

#: Without VENUE_RISK_SYMBOL_GROUPS, a day gets one symbol group per this many landed rows of
#: its datasets with a symbol column (a demo day of ~2.8M rows: 1 group; a large day of ~81M
#: rows: 21), which bounds the memory of each gate and metric task (a group holds at least one
#: symbol: the busiest symbol sets the floor).
ROWS_PER_GROUP = 4_000_000


def symbol_groups(symbols: list[str], groups: int) -> list[list[str]]:
    """The sorted distinct `symbols` dealt round-robin into at most `groups` non-empty groups:
    symbol i (in sorted order) goes to group i mod groups. Round-robin rather than contiguous
    blocks, so that the busiest symbols (which sort anywhere) spread over the groups as evenly as
    a name-only rule can. groups < 1 is an error; no symbols gives no groups."""
    if groups < 1:
        raise ValueError(f"symbol groups must be >= 1, got {groups}")
    names = sorted(set(symbols))
    n = min(groups, len(names))
    return [names[i::n] for i in range(n)]


def group_name(index: int) -> str:
    """The name of group `index` in file and task names: g00, g01, ..."""
    return f"g{index:02d}"


def groups_for_rows(rows: int) -> int:
    """The default number of symbol groups of a day: ceil(rows / ROWS_PER_GROUP), at least 1."""
    return max(1, -(-int(rows) // ROWS_PER_GROUP))
