"""Metric families (DESIGN section 4): one module per family, each a set of small pure
functions from Polars frames (the canonical datasets of one date, see `venue_risk.schema`) to
Polars frames with a leading `date` column, so every metric is stored per date in DuckDB and
compared against a trailing baseline.

Every module's docstring (also exported as its `METHOD`) and every public function's docstring
state the method and its formulas in plain text: the report's methodology appendix is generated
from them.

- `slippage`: slippage of liquidation executions per liquidation path (DESIGN 4.1).
- `forced_cost`: forced-execution cost, insurance-fund flows, margin sensitivity (DESIGN 4.2).
- `summary`: the venue's headline figures with baseline and RAG status (DESIGN 4.11).
"""
