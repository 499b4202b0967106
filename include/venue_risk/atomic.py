"""Atomic file writes: write a temporary file beside the target, then rename it over."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import polars as pl


def write_atomic(path: Path, writer: Callable[[Path], None]) -> Path:
    """Call writer(tmp) then os.replace(tmp, path); the target is never half written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> Path:
    """Parquet (zstd, statistics on) written atomically."""
    return write_atomic(path, lambda tmp: frame.write_parquet(tmp, compression="zstd"))


def write_json_atomic(obj: Any, path: Path) -> Path:
    """JSON (sorted keys, indented, ISO dates via str) written atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    return write_atomic(path, lambda tmp: tmp.write_text(text + "\n"))
