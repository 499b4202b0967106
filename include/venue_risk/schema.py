"""The canonical datasets (DESIGN section 2) as Polars schemas and DuckDB DDL.

Every source adapter produces exactly these columns and types, one partition per UTC date.
`ts` columns are timestamp[us, UTC]; money is in the quote currency; rates are decimals.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from venue_risk.names import DATASET_NAMES as _NAMES

TS = pl.Datetime("us", "UTC")
I64 = pl.Int64
F64 = pl.Float64
STR = pl.String
BOOL = pl.Boolean
LIST_STR = pl.List(pl.String)


@dataclass(frozen=True)
class Dataset:
    """One canonical dataset: its columns, the column that places a row in a day, its keys."""

    name: str
    schema: dict[str, pl.DataType]
    day_column: str | None  # timestamp (or date) column that must fall inside the partition's day
    keys: tuple[str, ...]  # columns that must be non-null and together unique
    reference: bool = False  # a daily snapshot of reference data (no per-row timestamp)

    @property
    def columns(self) -> list[str]:
        return list(self.schema)

    def polars_schema(self) -> pl.Schema:
        return pl.Schema(self.schema)


_DATASETS: list[Dataset] = [
    Dataset(
        "instruments",
        {
            "symbol": STR,
            "base": STR,
            "quote": STR,
            "tick_size": F64,
            "lot_size": F64,
            "max_leverage": F64,
            "taker_fee_rate": F64,
            "maker_fee_rate": F64,
            "liquidation_fee_rate": F64,
            "funding_interval_hours": I64,
            "funding_cap": F64,
            "index_sources": LIST_STR,
            "index_outlier_pct": F64,  # decimal: 0.05 = 5 % from the basket median
            "index_stale_s": F64,
            "index_min_sources": I64,
            # Liquidation path settings (DESIGN 3a: "which path a venue uses for which size is
            # an instrument setting"): positions at or above this notional are reduced
            # incrementally; smaller ones go to auction at this discount to mark.
            "liquidation_incremental_notional": F64,
            "liquidation_auction_discount": F64,
        },
        None,
        ("symbol",),
        reference=True,
    ),
    Dataset(
        "risk_tiers",
        {
            "symbol": STR,
            "tier": I64,
            "notional_floor": F64,
            "notional_cap": F64,
            "max_leverage": F64,
            "maintenance_margin_rate": F64,
            "maintenance_amount": F64,
        },
        None,
        ("symbol", "tier"),
        reference=True,
    ),
    Dataset(
        "trades",
        {
            "ts": TS,
            "symbol": STR,
            "trade_id": I64,
            "price": F64,
            "qty": F64,
            "taker_side": STR,
            "taker_order_id": I64,
            "maker_order_id": I64,
            "taker_account": I64,
            "maker_account": I64,
            "taker_fee": F64,
            "maker_fee": F64,
            "liquidation_id": I64,
        },
        "ts",
        ("trade_id",),
    ),
    Dataset(
        "order_events",
        {
            "ts": TS,
            "symbol": STR,
            "order_id": I64,
            "account": I64,
            "api_key_id": I64,
            "event": STR,
            "side": STR,
            "order_type": STR,
            "tif": STR,
            "price": F64,
            "qty": F64,
            "cum_filled_qty": F64,
            "reduce_only": BOOL,
            "post_only": BOOL,
            "reject_reason": STR,
        },
        "ts",
        ("order_id", "ts", "event"),
    ),
    Dataset(
        "mark_index",
        {
            "ts": TS,
            "symbol": STR,
            "mark_price": F64,
            "index_price": F64,
            "last_price": F64,
            "best_bid": F64,
            "best_ask": F64,
        },
        "ts",
        ("ts", "symbol"),
    ),
    Dataset(
        "index_components",
        {
            "ts": TS,
            "received_ts": TS,
            "symbol": STR,
            "source": STR,
            "price": F64,
            "weight": F64,
        },
        "received_ts",
        ("received_ts", "symbol", "source"),
    ),
    Dataset(
        "funding",
        {
            "ts": TS,
            "symbol": STR,
            "funding_rate": F64,
            "premium_index": F64,
            "interest_rate": F64,
            "mark_price": F64,
            "index_price": F64,
        },
        "ts",
        ("ts", "symbol"),
    ),
    Dataset(
        "market_metrics",
        {
            "ts": TS,
            "symbol": STR,
            "open_interest": F64,
            "open_interest_value": F64,
            "long_short_account_ratio": F64,
            "taker_buy_sell_ratio": F64,
        },
        "ts",
        ("ts", "symbol"),
    ),
    Dataset(
        "book_depth",
        {
            "ts": TS,
            "symbol": STR,
            "percentage": F64,  # signed band in percent: -5 ... -0.2 (bids), 0.2 ... 5 (asks)
            "depth": F64,  # base quantity, cumulative from the mid to the band
            "notional": F64,
        },
        "ts",
        ("ts", "symbol", "percentage"),
    ),
    Dataset(
        "liquidations",
        {
            "liquidation_id": I64,
            "ts_trigger": TS,
            "ts_done": TS,
            "account": I64,
            "symbol": STR,
            "side": STR,  # side of the liquidation order: sell closes a long
            "qty": F64,
            "filled_qty": F64,
            "mark_price": F64,
            "liquidation_price": F64,
            "bankruptcy_price": F64,
            "path": STR,
            "margin_mode": STR,
            "leverage": F64,
            "maintenance_margin_rate": F64,
            "fee": F64,
            "insurance_fund_delta": F64,
        },
        "ts_trigger",
        ("liquidation_id",),
    ),
    Dataset(
        "positions_eod",
        {
            "date": pl.Date,
            "account": I64,
            "symbol": STR,
            "size": F64,
            "entry_price": F64,
            "margin_mode": STR,
            "leverage": F64,
            "isolated_margin": F64,
        },
        "date",
        ("account", "symbol"),
    ),
    Dataset(
        "accounts_eod",
        {"date": pl.Date, "account": I64, "wallet_balance": F64, "is_market_maker": BOOL},
        "date",
        ("account",),
    ),
    Dataset(
        "leverage_changes",
        {"ts": TS, "account": I64, "symbol": STR, "old_leverage": F64, "new_leverage": F64},
        "ts",
        ("ts", "account", "symbol"),
    ),
    Dataset(
        "api_keys",
        {
            "key_id": I64,
            "account": I64,
            "scopes": LIST_STR,
            "ip_allowlist": LIST_STR,
            "created_at": TS,
            "last_used_at": TS,
            "expires_at": TS,
            "cancel_on_disconnect": BOOL,
            "status": STR,
        },
        None,
        ("key_id",),
        reference=True,
    ),
    Dataset(
        "api_requests",
        {
            "ts": TS,
            "key_id": I64,
            "account": I64,
            "endpoint": STR,
            "method": STR,
            "status": I64,
            "latency_ms": F64,
            "source_ip": STR,
            "scope_used": STR,
        },
        "ts",
        (),
    ),
    Dataset("insurance_fund", {"ts": TS, "pool": STR, "balance": F64}, "ts", ("ts", "pool")),
]

DATASETS: dict[str, Dataset] = {d.name: d for d in _DATASETS}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
assert DATASET_NAMES == _NAMES, "venue_risk.names.DATASET_NAMES must list the canonical datasets in order"

SIDES = ("buy", "sell")
LIQUIDATION_PATHS = ("incremental", "auction", "market", "backstop", "adl")
MARGIN_MODES = ("cross", "isolated")


def empty_frame(name: str) -> pl.DataFrame:
    """An empty frame with the canonical schema of dataset `name`."""
    return pl.DataFrame(schema=DATASETS[name].polars_schema())


def conform(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Select the canonical columns of `name` in order and cast them to the canonical types.

    Used by writers that build frames from numpy arrays; it never drops a row. A missing column
    raises with the dataset and column named.
    """
    spec = DATASETS[name]
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"dataset {name!r}: missing column(s) {missing}; expected {spec.columns}")
    return frame.select([pl.col(c).cast(t, strict=True) for c, t in spec.schema.items()])


_DUCK_TYPES = {
    pl.Int64: "BIGINT",
    pl.Float64: "DOUBLE",
    pl.String: "VARCHAR",
    pl.Boolean: "BOOLEAN",
    pl.Date: "DATE",
}


def duckdb_type(dtype: pl.DataType) -> str:
    """DuckDB column type for a canonical Polars type."""
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ"
    if isinstance(dtype, pl.List):
        return duckdb_type(dtype.inner) + "[]"
    for pl_type, duck in _DUCK_TYPES.items():
        if dtype == pl_type:
            return duck
    raise TypeError(f"no DuckDB type for {dtype}")


def duckdb_ddl(name: str) -> str:
    """CREATE TABLE for dataset `name`, with a leading `date` partition column for reference and
    timestamped datasets (the datasets that already carry `date` keep theirs)."""
    spec = DATASETS[name]
    cols = []
    if "date" not in spec.schema:
        cols.append("date DATE NOT NULL")
    cols += [f"{c} {duckdb_type(t)}" for c, t in spec.schema.items()]
    return f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(cols)})"
