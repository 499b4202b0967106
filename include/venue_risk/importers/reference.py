"""Reference data of a real venue for importers: `instruments` and `risk_tiers` in canonical
columns, from a dated reference file shipped with the package (or a user's file of the same format).

Shipped: `reference/binance-usdm-2024-08.json`, Binance USD-M BTCUSDT and ETHUSDT as published
(exchangeInfo filters, VIP-0 fees, clearance fee, 8 h funding and its cap, 2021 leverage
brackets); every figure's source is named in the file's `sources`.

File format (JSON):

    {"reference": "binance-usdm", "as_of": "2024-08-01", "sources": {...},
     "defaults": {<instrument column>: value, ...},           # applies to every symbol
     "instruments": {"BTCUSDT": {<instrument column>: value, ...,
                                 "tiers": [{"notional_floor", "notional_cap", "max_leverage",
                                            "maintenance_margin_rate",
                                            ["maintenance_amount"]}, ...]}}}

Per symbol the instrument row is `defaults` overlaid with the symbol's entry. `max_leverage`
defaults to tier 1's. Tier k's maintenance amount is derived so that maintenance margin
MM = notional x MMR - amount is continuous at every boundary:

    amount_1 = 0,  amount_k = amount_(k-1) + floor_k x (MMR_k - MMR_(k-1))

A `maintenance_amount` given in the file (Binance's published `cum`) must equal the derived one
(within 1e-6 x floor) or the file is rejected. Tiers must be contiguous (floor_k = cap_(k-1),
floor_1 = 0). The index columns that depend on the import (`index_sources`,
`index_min_sources` = min(number of sources, 3)) come from the caller.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from venue_risk.schema import DATASETS

#: The shipped reference file (Binance USD-M, as published for August 2024).
SHIPPED = Path(__file__).with_name("reference") / "binance-usdm-2024-08.json"

#: At most this many index sources count towards `index_min_sources`.
MAX_MIN_SOURCES = 3

_TIER_FIELDS = ("notional_floor", "notional_cap", "max_leverage", "maintenance_margin_rate")
_IMPORT_SET = ("symbol", "index_sources", "index_min_sources", "max_leverage")


def load_reference(path: Path | None = None) -> dict:
    """The parsed reference file (`path`, default the shipped one); a clear error names the file
    when it is missing or not JSON of the expected shape."""
    path = Path(path) if path is not None else SHIPPED
    if not path.exists():
        raise FileNotFoundError(f"reference file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"reference file {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("instruments"), dict):
        raise ValueError(f"reference file {path}: expected an object with an 'instruments' object")
    data["_path"] = str(path)
    return data


def reference_label(path: Path | None = None) -> str:
    """`<reference> <as_of>` of a reference file, e.g. 'binance-usdm 2024-08-01' (for manifests)."""
    data = load_reference(path)
    return f"{data.get('reference', Path(data['_path']).stem)} {data.get('as_of', '?')}"


def tier_amounts(floors: list[float], rates: list[float]) -> list[float]:
    """Maintenance amounts making MM continuous: a_1 = 0, a_k = a_(k-1) + floor_k (r_k - r_(k-1))."""
    out: list[float] = []
    for k, (floor, rate) in enumerate(zip(floors, rates)):
        out.append(0.0 if k == 0 else out[-1] + floor * (rate - rates[k - 1]))
    return out


def _tier_rows(symbol: str, tiers: list[dict], where: str) -> list[dict]:
    """Canonical risk_tiers rows of one symbol, validated (contiguous, amounts continuous)."""
    if not tiers:
        raise ValueError(f"{where}: symbol {symbol!r} has no tiers")
    for i, t in enumerate(tiers, start=1):
        missing = [f for f in _TIER_FIELDS if f not in t]
        if missing:
            raise ValueError(f"{where}: {symbol} tier {i} lacks {missing}")
    floors = [float(t["notional_floor"]) for t in tiers]
    caps = [float(t["notional_cap"]) for t in tiers]
    rates = [float(t["maintenance_margin_rate"]) for t in tiers]
    if floors[0] != 0.0:
        raise ValueError(f"{where}: {symbol} tier 1 notional_floor is {floors[0]}, expected 0")
    for k in range(1, len(tiers)):
        if floors[k] != caps[k - 1]:
            raise ValueError(f"{where}: {symbol} tier {k + 1} notional_floor {floors[k]} != tier {k} "
                             f"notional_cap {caps[k - 1]} (tiers must be contiguous)")
    amounts = tier_amounts(floors, rates)
    rows = []
    for k, t in enumerate(tiers):
        given = t.get("maintenance_amount")
        if given is not None and abs(float(given) - amounts[k]) > 1e-6 * max(floors[k], 1.0):
            raise ValueError(f"{where}: {symbol} tier {k + 1} maintenance_amount {given} is not "
                             f"continuous with the tiers below (expected {amounts[k]})")
        rows.append({"symbol": symbol, "tier": k + 1, "notional_floor": floors[k], "notional_cap": caps[k],
                     "max_leverage": float(t["max_leverage"]), "maintenance_margin_rate": rates[k],
                     "maintenance_amount": amounts[k]})
    return rows


def reference_tables(symbols: list[str], sources_by_symbol: dict[str, list[str]],
                     override: Path | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(instruments, risk_tiers) of `symbols` in canonical columns, from `override` (a file of the
    shipped format replacing it) or the shipped file.

    `sources_by_symbol[symbol]` are the index sources the import has for the symbol:
    index_sources = those names, index_min_sources = min(len, 3) (at least 1). An unknown symbol
    or a missing instrument column is a ValueError naming the symbol and the file.
    """
    data = load_reference(override)
    where = f"reference file {data['_path']}"
    inst_cols = DATASETS["instruments"].columns
    inst_rows, tier_rows = [], []
    for symbol in symbols:
        entry = data["instruments"].get(symbol)
        if entry is None:
            raise ValueError(f"{where}: unknown symbol {symbol!r} (it lists {sorted(data['instruments'])}); "
                             "give --reference FILE with the symbol's parameters")
        tiers = _tier_rows(symbol, entry.get("tiers", []), where)
        sources = list(sources_by_symbol.get(symbol, []))
        row = {**data.get("defaults", {}), **{k: v for k, v in entry.items() if k != "tiers"}}
        row |= {"symbol": symbol, "index_sources": sources,
                "index_min_sources": max(1, min(len(sources), MAX_MIN_SOURCES))}
        row.setdefault("max_leverage", tiers[0]["max_leverage"])
        unknown = sorted(set(row) - set(inst_cols))
        if unknown:
            raise ValueError(f"{where}: {symbol} has unknown instrument field(s) {unknown}; "
                             f"expected among {inst_cols}")
        missing = [c for c in inst_cols if c not in row]
        if missing:
            raise ValueError(f"{where}: {symbol} lacks instrument field(s) {missing}")
        inst_rows.append(row)
        tier_rows += tiers
    instruments = pl.DataFrame(inst_rows, schema=DATASETS["instruments"].polars_schema()) if inst_rows \
        else pl.DataFrame(schema=DATASETS["instruments"].polars_schema())
    risk_tiers = pl.DataFrame(tier_rows, schema=DATASETS["risk_tiers"].polars_schema()) if tier_rows \
        else pl.DataFrame(schema=DATASETS["risk_tiers"].polars_schema())
    return instruments, risk_tiers
