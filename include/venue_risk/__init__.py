"""venue-risk: the nightly risk report of a perpetual-futures venue (library, no Airflow imports)."""

__version__ = "0.1.0"
