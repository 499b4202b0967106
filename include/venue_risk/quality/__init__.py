"""Data-quality gate between landing and the warehouse.

`validate_day` runs the checks on the landed partitions and returns a JSON-serializable result
({status, checks}); a failed `critical` check raises `DataQualityError`, which stops the day
before anything is loaded. Today the checks are the schema and type contract plus keys and day
bounds (`quality.basic`); the Great Expectations suites plug in here as further check modules
with the same result shape.
"""

from __future__ import annotations

from venue_risk.quality.basic import DataQualityError, validate_day

__all__ = ["DataQualityError", "validate_day"]
