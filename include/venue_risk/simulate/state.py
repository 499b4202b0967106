"""Saved end-of-day state: `<out>/_state/date=YYYY-MM-DD/` (positions.npz-like parquet of every
account x symbol, wallets, and state.json with market states, insurance fund, id counters, key
last use, genesis date). `<out>/_state/genesis/` holds the genesis state (the venue before its
first day). Floats round-trip exactly (parquet float64, JSON repr)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl

ARRAYS = ("size", "entry", "margin", "lev")


def state_dir(out: Path, day: dt.date | None) -> Path:
    return Path(out) / "_state" / ("genesis" if day is None else f"date={day.isoformat()}")


def save(out: Path, day: dt.date | None, st: dict) -> None:
    """Write the state atomically (a temporary folder renamed into place)."""
    target = state_dir(out, day)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    n, s = st["size"].shape
    pl.DataFrame({
        "account": np.repeat(np.arange(n, dtype=np.int64), s),
        "symbol_idx": np.tile(np.arange(s, dtype=np.int64), n),
        **{k: st[k].reshape(-1) for k in ARRAYS},
    }).write_parquet(tmp / "positions.parquet")
    pl.DataFrame({"account": np.arange(n, dtype=np.int64), "wallet": st["wallet"]}).write_parquet(tmp / "wallets.parquet")
    rest = {k: v for k, v in st.items() if k not in ARRAYS + ("wallet",)}
    (tmp / "state.json").write_text(json.dumps(rest, indent=1, sort_keys=True))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def load(out: Path, day: dt.date | None) -> dict | None:
    d = state_dir(out, day)
    if not (d / "state.json").exists():
        return None
    st = json.loads((d / "state.json").read_text())
    pos = pl.read_parquet(d / "positions.parquet")
    n = int(pos["account"].max()) + 1
    s = int(pos["symbol_idx"].max()) + 1
    for k in ARRAYS:
        st[k] = pos[k].to_numpy().reshape(n, s).copy()
    st["wallet"] = pl.read_parquet(d / "wallets.parquet")["wallet"].to_numpy().copy()
    return st
