"""Names that light-weight callers (the DAG file) need without importing Polars."""

DATASET_NAMES: tuple[str, ...] = (
    "instruments", "risk_tiers", "trades", "order_events", "mark_index", "index_components",
    "funding", "market_metrics", "book_depth", "liquidations", "positions_eod", "accounts_eod",
    "leverage_changes", "api_keys", "api_requests", "insurance_fund",
)
WAREHOUSE_POOL = "venue_risk_warehouse"
