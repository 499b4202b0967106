"""Quarantine limits: the largest share of a dataset's landed rows the gate may quarantine before
the day is critical (DESIGN 5: a report of zeros built from an emptied dataset is worse than no
report).

share_quarantined(dataset) = quarantined rows / landed rows; the day fails when
share_quarantined > limit(dataset) and more than MIN_ROWS rows are quarantined (so one bad
row of a 17-row liquidation file does not stop the day; a limit of 0 admits no row at all), or whenever every row of a non-empty
dataset is quarantined (an emptied dataset, whatever its size), unless the dataset's limit is 1
(a venue that explicitly accepts losing all of it). The defaults are strict for the datasets every headline
figure reads (trades, liquidations, prices) and looser for the request log, where a few
unattributable rows are normal. A venue overrides them with VENUE_RISK_QUARANTINE_LIMITS
(`dataset=share,...`).
"""

from __future__ import annotations

from venue_risk.schema import DATASET_NAMES

#: Up to this many quarantined rows never exceed a limit (unless they are all the rows).
MIN_ROWS = 3

#: Default largest quarantined share per dataset.
DEFAULT_QUARANTINE_LIMITS: dict[str, float] = {
    "instruments": 0.0,  # a missing instrument removes a whole symbol: never silently
    "risk_tiers": 0.0,
    "trades": 0.01,
    "order_events": 0.01,
    "mark_index": 0.01,
    "index_components": 0.02,
    "funding": 0.05,
    "market_metrics": 0.05,
    "book_depth": 0.05,
    "liquidations": 0.05,
    "positions_eod": 0.01,
    "accounts_eod": 0.01,
    "leverage_changes": 0.05,
    "api_keys": 0.05,
    "api_requests": 0.05,
    "insurance_fund": 0.05,
}


def parse_quarantine_limits(text: str) -> dict[str, float]:
    """The limits in force: the defaults, overridden by `dataset=share,...` (share in [0, 1]).
    Raises ValueError naming the entry on an unknown dataset or a share that is not a number
    in [0, 1]."""
    limits = dict(DEFAULT_QUARANTINE_LIMITS)
    for item in (p.strip() for p in (text or "").split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in DATASET_NAMES:
            raise ValueError(f"VENUE_RISK_QUARANTINE_LIMITS entry {item!r}: expected dataset=share "
                             f"with a dataset among {list(DATASET_NAMES)}")
        try:
            share = float(value)
        except ValueError:
            share = float("nan")
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"VENUE_RISK_QUARANTINE_LIMITS entry {item!r}: the share must be a "
                             f"number in [0, 1] (0.01 = 1 % of the dataset's rows)")
        limits[name] = share
    return limits


def limit_checks(row_counts: dict[str, int], quarantined_rows: dict[str, int],
                 limits: dict[str, float]) -> list[dict]:
    """One critical gate check per dataset with quarantined rows: failed when
    quarantined / landed > limit and quarantined > MIN_ROWS, or quarantined = landed. The example
    says what share was lost and the limit."""
    checks = []
    for dataset, n in sorted(quarantined_rows.items()):
        if not n:
            continue
        landed = max(int(row_counts.get(dataset, 0)), 1)
        limit = float(limits.get(dataset, DEFAULT_QUARANTINE_LIMITS.get(dataset, 0.0)))
        share = n / landed
        over = (share > limit and (n > MIN_ROWS or limit == 0.0)) or (n >= int(row_counts.get(dataset, 0)) and limit < 1.0)
        checks.append({
            "dataset": dataset,
            "check": f"quarantined share <= {limit:.2%} (quarantine limit; at least {MIN_ROWS + 1} rows)",
            "severity": "critical", "expectation": "quarantine limit (venue_risk.quality.limits)",
            "failed_count": n if over else 0, "quarantine": False,
            "example": (f"{n} of {landed} rows ({share:.2%}) would be quarantined, "
                        + ("every row of the dataset" if n >= landed else f"above the limit of {limit:.2%}")
                        if over else ""),
        })
    return checks
