"""Frame helpers shared by the metric modules: declared output schemas and required inputs."""

from __future__ import annotations

from typing import Iterable

import polars as pl

from venue_risk.errors import InputError


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Columns in the declared order and types (so an all-null column still has a real type)."""
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def require_columns(frame: pl.DataFrame, dataset: str, columns: Iterable[str]) -> None:
    """Raise InputError naming the dataset and the first missing column, if any is missing."""
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(dataset, f"missing column(s) {missing}", column=missing[0],
                         expected=f"the columns {columns}")
