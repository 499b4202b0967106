"""Data-quality gate between landing and the warehouse.

`run_gate` (quality.gate) checks the canonical schema (quality.basic) and runs the Great
Expectations suite of every dataset (quality.suites); critical failures raise `DataQualityError`
(nothing is loaded), warnings quarantine the failing rows with the expectation as the reason.
The gate runs in parts by symbol group (quality.gate: gate_parts, validate_part, combine_parts;
run_gate runs them in sequence), with the same result whatever the number of groups.
Importing this package does not import Great Expectations (it is imported when the gate runs).
"""

from __future__ import annotations

from venue_risk.quality.basic import DataQualityError
from venue_risk.quality.gate import run_gate

__all__ = ["DataQualityError", "run_gate"]
