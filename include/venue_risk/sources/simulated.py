"""The `simulated` source: the embedded synthetic venue (DESIGN section 3), the default.

Days are simulated in date order from the venue's genesis date and cached as canonical files
under `<cache>/<scale>-seed<seed>/`; a day already in the cache is read as it is, a later day
continues from the last cached day's saved state. Reading goes through the `files` source, so
the simulated venue obeys exactly the contract a venue's export jobs do.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from venue_risk.errors import InputError
from venue_risk.sources.files import FilesSource

DEFAULT_GENESIS = dt.date(2026, 11, 1)


class SimulatedSource:
    """The synthetic venue at one scale and seed, cached on disk."""

    kind = "simulated"

    def __init__(self, cache: str | Path, scale: str = "demo", seed: int | str = 7,
                 genesis: str | dt.date = DEFAULT_GENESIS):
        self.scale = scale
        self.seed = int(seed)
        self.genesis = dt.date.fromisoformat(genesis) if isinstance(genesis, str) else genesis
        self.root = Path(cache) / f"{scale}-seed{self.seed}"
        self._files = FilesSource(self.root)

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "scale": self.scale, "seed": str(self.seed),
                "genesis": self.genesis.isoformat(), "root": str(self.root)}

    def cached_days(self) -> list[dt.date]:
        """Days whose simulation finished (their saved state exists)."""
        state = self.root / "_state"
        if not state.is_dir():
            return []
        return sorted(dt.date.fromisoformat(p.name.removeprefix("date="))
                      for p in state.iterdir() if p.name.startswith("date="))

    def prepare(self, day: dt.date) -> None:
        """Simulate every day from the last cached one (or genesis) through `day`. Under an
        exclusive file lock on the cache: the days of a backfill prepare at the same time, and
        each must find the days another one simulated, never half-written files."""
        import fcntl

        from venue_risk.simulate import simulate

        if day < self.genesis:
            raise InputError("*", f"the simulated venue starts on {self.genesis}; {day} is before it",
                             expected=f"a date on or after {self.genesis} (VENUE_RISK_SIM_GENESIS)")
        if day in self.cached_days():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / f".{self.root.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cached = self.cached_days()
            if day in cached:
                return
            earlier = [d for d in cached if d < day]
            start = earlier[-1] + dt.timedelta(days=1) if earlier else self.genesis
            simulate(self.scale, start, (day - start).days + 1, self.root, seed=self.seed)

    def files(self, dataset: str, day: dt.date) -> list[Path]:
        return self._files.files(dataset, day)

    def land(self, dataset: str, day: dt.date, target: Path) -> int | None:
        return self._files.land(dataset, day, target)

    def read(self, dataset: str, day: dt.date) -> pl.DataFrame:
        return self._files.read(dataset, day)

    def truth_dir(self, day: dt.date) -> Path:
        """The simulator's ground truth for `day` (incidents, liquidation bookkeeping)."""
        return self.root / "_truth" / f"date={day.isoformat()}"
