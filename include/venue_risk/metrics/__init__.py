"""Metric families (DESIGN section 4): one module per family, each a set of small pure
functions from Polars frames (the canonical datasets of one date, see `venue_risk.schema`) to
Polars frames with a leading `date` column, so every metric is stored per date in DuckDB and
compared against a trailing baseline.

Every module's docstring (also exported as its `METHOD`) and every public function's docstring
state the method and its formulas in plain text: the report's methodology appendix is generated
from them.

- `slippage`: slippage of liquidation executions per liquidation path (DESIGN 4.1).
- `forced_cost`: forced-execution cost, insurance-fund flows, margin sensitivity (DESIGN 4.2).
- `crowding`: funding-volatility crowding (DESIGN 4.3).
- `index_integrity`: index recomputation, source exclusions, single-source sensitivity, mark
  basis and lag (DESIGN 4.4).
- `drift`: feature drift (PSI, KS) and fill quality by volatility bucket (DESIGN 4.5).
- `order_flow`: position rebuild and reduce-only / post-only / cancel / self-trade checks (4.6).
- `anomalies`: per-minute features, robust z, correlated incidents, rules vs model (4.7).
- `cross_margin`: cross-margin accounts under empirical and unit correlation (4.8).
- `liquidation_bands`, `cascade`: liquidation bands, liquidations at risk, cascades (4.9).
- `api_scoping`: API key permission checklist (4.10).
- `summary`: the venue's headline figures with baseline and RAG status (DESIGN 4.11).
"""
