"""Splitting a day by symbol (DESIGN 8, scale-out): the symbol groups that the gate and the
per-symbol metric families run on as separate (Airflow mapped) tasks.

    packed_groups(rows_by_symbol) -> list[list[str]]   the default: by each symbol's landed rows
    symbol_groups(symbols, groups) -> list[list[str]]   a set number of groups (VENUE_RISK_SYMBOL_GROUPS)
    group_name(index) -> "g00", "g01", ...
    groups_for_rows(rows) -> ceil(rows / ROWS_PER_GROUP)

Either grouping is a pure function of the day's listed symbols and their landed row counts (or
the number of groups), so every task of a run (and a rerun) agrees on it.
"""

from __future__ import annotations

#: Without VENUE_RISK_SYMBOL_GROUPS, a day's symbols are packed into groups of at most this many
#: landed rows of its datasets with a symbol column (`packed_groups`; a demo day of ~2.6M rows:
#: 1 group), which bounds the memory of each gate and metric task (a group holds at least one
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


def packed_groups(rows_by_symbol: dict[str, int], cap: int | None = None) -> list[list[str]]:
    """The day's symbols packed into groups of at most `cap` (default ROWS_PER_GROUP) landed rows
    (first fit decreasing):
    the symbols by rows, largest first (ties by name), each into the first group it still fits
    in (group rows + its rows <= cap), else into a new group; a symbol of more than `cap` rows
    is a group of its own. Each group's symbols sorted by name; groups in the order they were
    opened (the largest symbol's first). No symbols gives no groups.

    Why not `symbol_groups` over ceil(rows / cap) groups: one symbol holds a large share of a
    day (BTCUSDT about 30 % of a large day), so dealing symbols round-robin into ceil(rows / cap)
    groups gives one group far above `cap` and many far below it, and every group is a task
    with fixed costs (its process, the suites' set-up, a pass over the landed files). Packing
    by size keeps each group within `cap` (except a single symbol above it), with fewer groups."""
    cap = ROWS_PER_GROUP if cap is None else cap
    if cap < 1:
        raise ValueError(f"rows per group must be >= 1, got {cap}")
    order = sorted(rows_by_symbol, key=lambda s: (-int(rows_by_symbol[s]), s))
    groups: list[list[str]] = []
    totals: list[int] = []
    for symbol in order:
        rows = int(rows_by_symbol[symbol])
        for i, total in enumerate(totals):
            if total + rows <= cap:
                groups[i].append(symbol)
                totals[i] += rows
                break
        else:
            groups.append([symbol])
            totals.append(rows)
    return [sorted(g) for g in groups]


def group_name(index: int) -> str:
    """The name of group `index` in file and task names: g00, g01, ..."""
    return f"g{index:02d}"


def groups_for_rows(rows: int) -> int:
    """The default number of symbol groups of a day: ceil(rows / ROWS_PER_GROUP), at least 1."""
    return max(1, -(-int(rows) // ROWS_PER_GROUP))
