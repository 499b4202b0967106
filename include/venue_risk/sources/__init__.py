"""Source adapters: each turns one kind of venue data into the canonical datasets of
`venue_risk.schema`, one UTC day at a time.

- `files`: a landing folder of canonical Parquet or CSV, `<root>/<dataset>/date=YYYY-MM-DD/*`,
  the contract for a venue's own export jobs.
- `simulated`: the embedded synthetic venue; simulates the days it has not cached yet and then
  reads them exactly like the `files` source.
- `postgres`: the venue's operational PostgreSQL database, one SQL query per carried dataset
  (a JSON mapping), read through ADBC as a read-only role. Its driver is imported only when a
  connection is opened.
"""

from __future__ import annotations

from venue_risk.sources.files import FilesSource
from venue_risk.sources.postgres import PostgresSource
from venue_risk.sources.simulated import SimulatedSource

__all__ = ["FilesSource", "PostgresSource", "SimulatedSource"]
