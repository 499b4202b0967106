"""Where things live. Everything defaults to folders under the project home (VENUE_RISK_HOME, or
the current directory); each path can be moved with its own environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).resolve() if value else default


@dataclass(frozen=True)
class Paths:
    home: Path
    data: Path
    landing: Path
    warehouse: Path
    reports: Path
    outbox: Path
    simulated: Path

    @classmethod
    def from_env(cls) -> "Paths":
        home = _path("VENUE_RISK_HOME", Path.cwd().resolve())
        data = _path("VENUE_RISK_DATA", home / "data")
        return cls(
            home=home,
            data=data,
            landing=_path("VENUE_RISK_LANDING", data / "landing"),
            warehouse=_path("VENUE_RISK_WAREHOUSE", data / "warehouse.duckdb"),
            reports=_path("VENUE_RISK_REPORTS", home / "reports"),
            outbox=_path("VENUE_RISK_OUTBOX", home / "outbox"),
            simulated=_path("VENUE_RISK_SIMULATED", data / "simulated"),
        )
