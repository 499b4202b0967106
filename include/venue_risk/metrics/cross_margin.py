"""Cross-margin correlation stress (DESIGN 4.8): a cross-margin account is a correlated
portfolio, shocked under the day's empirical correlation and under correlations at one.

- Returns: the last mark of each minute per symbol; r = ln(mark_m / mark_(m-1)). vol_1m = sample
  standard deviation of the day's 1-minute returns; corr = Pearson correlation of two symbols'
  returns over the minutes both have.
- Horizon volatility sigma_s = vol_1m_s x sqrt(horizon_min) (default one day, 1,440 minutes:
  a k-sigma day for the account).
- Account (margin_mode cross positions only): w_s = size_s x mark_s (signed notional at the
  day's last mark); equity = wallet - isolated margins of the account's isolated positions +
  sum size x (mark - entry); MM = sum of margin.maintenance_margin(tiers_s, |size_s| x mark_s).
- (a) empirical: Sigma_ab = sigma_a sigma_b rho_ab; portfolio sigma = sqrt(w' Sigma w); the k-sigma
  loss is k x sqrt(w' Sigma w), reached by the most likely move of that size, the return vector
  r = -k Sigma w / sqrt(w' Sigma w) (so w . r = -k sqrt(w' Sigma w)).
- (b) correlations at one: a common-factor move, every symbol by r_s = +k sigma_s
  (corr_one_up) or -k sigma_s (corr_one_down).
- After the move: marks P'_s = mark_s x (1 + r_s); equity_after = equity + sum w_s r_s;
  mm_after = sum MM at |size_s| x P'_s; breach when equity_after <= mm_after;
  liquidation_notional_at_risk = sum |size_s| x P'_s of the account when it breaches, else 0.
- Trigger position, under the same moves: if the account breaches, the positions whose removal
  (their P&L and MM taken out) would avoid the breach; the trigger is the smallest of them by
  notional (the least change that saves the account: a small hedge that turns into added exposure
  when correlations jump to one is named here), reason 'removal_avoids_breach'. Otherwise
  (no breach, or no single removal avoids it) the position with the largest loss -w_s r_s,
  reason 'largest_loss'.

Known limits: Volatilities and correlations come from one day's 1-minute returns: noisy for thin
symbols, and scaled to the horizon by the square root of time (independent returns assumed).
Positions are static through the shock: no liquidation during the move, no funding, no hedging;
the shocked notional sets the tier. Only the account's cross positions are shocked; its isolated
positions are left out, the margin they hold taken off the wallet.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import polars as pl

from venue_risk import margin
from venue_risk.errors import InputError
from venue_risk.metrics.frames import conform as _conform, require_columns as _need

METHOD = __doc__

F64, I64, STR = pl.Float64, pl.Int64, pl.String

HORIZON_MIN = 1440
K_SIGMA: tuple[float, ...] = (1.0, 2.0, 3.0)
SCENARIOS: tuple[str, ...] = ("empirical", "corr_one_up", "corr_one_down")

VOLS_SCHEMA: dict[str, pl.DataType] = {"date": pl.Date, "symbol": STR, "vol_1m": F64,
                                       "n_returns": I64, "last_mark": F64}
CORR_SCHEMA: dict[str, pl.DataType] = {"date": pl.Date, "symbol_a": STR, "symbol_b": STR,
                                       "corr": F64, "n": I64}
STRESS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "account": I64, "scenario": STR, "k_sigma": F64, "n_positions": I64,
    "gross_notional": F64, "equity": F64, "mm": F64, "portfolio_sigma": F64, "pnl": F64,
    "equity_after": F64, "mm_after": F64, "breach": pl.Boolean,
    "liquidation_notional_at_risk": F64, "trigger_symbol": STR, "trigger_reason": STR,
    "trigger_notional": F64, "largest_loss_symbol": STR,
}
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "scenario": STR, "k_sigma": F64, "accounts": I64, "accounts_breaching": I64,
    "equity_at_risk": F64, "loss": F64, "liquidation_notional_at_risk": F64,
    "trigger_symbols": pl.List(STR),
}




def _minute_marks(mark_index: pl.DataFrame) -> pl.DataFrame:
    return (mark_index.lazy().filter(pl.col("mark_price") > 0)
            .sort("ts").group_by("symbol", pl.col("ts").dt.truncate("1m").alias("minute"))
            .agg(pl.col("mark_price").last()).sort("symbol", "minute").collect())


def return_stats(mark_index: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(vols, corr) of one day's 1-minute mark log returns.

    Minute mark = last mark_price of the minute; r_m = ln(mark_m / mark_(m-1)) over consecutive
    minutes present. vols: date, symbol, vol_1m = sample standard deviation of r (ddof 1),
    n_returns, last_mark = the day's last mark. corr (long, every ordered pair including a
    symbol with itself): date, symbol_a, symbol_b, corr = Pearson correlation over the minutes
    where both have a return, n = those minutes; null with fewer than 3 or a zero variance.
    """
    _need(mark_index, "mark_index", ("ts", "symbol", "mark_price"))
    mm = _minute_marks(mark_index)
    if mm.height == 0:
        return pl.DataFrame(schema=VOLS_SCHEMA), pl.DataFrame(schema=CORR_SCHEMA)
    day = mark_index["ts"].dt.date().min()
    rets = (mm.with_columns((pl.col("mark_price").log() - pl.col("mark_price").log().shift(1))
                            .over("symbol").alias("r"),
                            (pl.col("minute") - pl.col("minute").shift(1)).over("symbol").alias("_gap"))
            .filter(pl.col("_gap") == pl.duration(minutes=1)))
    last = mm.group_by("symbol").agg(pl.col("mark_price").last().alias("last_mark"))
    vols = (rets.group_by("symbol").agg(pl.col("r").std(ddof=1).alias("vol_1m"),
                                        pl.len().cast(I64).alias("n_returns"))
            .join(last, on="symbol", how="full", coalesce=True)
            .with_columns(pl.lit(day).alias("date"), pl.col("n_returns").fill_null(0)))
    vols = _conform(vols, VOLS_SCHEMA).sort("symbol")
    wide = rets.pivot("symbol", index="minute", values="r").sort("minute")
    syms = sorted(c for c in wide.columns if c != "minute")
    rows = []
    for a in syms:
        for b in syms:
            both = wide.select(a, b).drop_nulls() if a != b else wide.select(a).drop_nulls()
            n = both.height
            c = None
            if n >= 3:
                x = both[a].to_numpy()
                y = both[b].to_numpy() if a != b else x
                if x.std() > 0 and y.std() > 0:
                    c = float(np.corrcoef(x, y)[0, 1])
            rows.append({"date": day, "symbol_a": a, "symbol_b": b, "corr": c, "n": n})
    corr = _conform(pl.DataFrame(rows, schema=CORR_SCHEMA), CORR_SCHEMA)
    return vols, corr.sort("symbol_a", "symbol_b")


def _tiers(risk_tiers: pl.DataFrame) -> dict[str, list[margin.Tier]]:
    _need(risk_tiers, "risk_tiers", ("symbol", "tier", "notional_floor", "notional_cap",
                                     "max_leverage", "maintenance_margin_rate", "maintenance_amount"))
    out: dict[str, list] = {}
    for r in risk_tiers.to_dicts():
        out.setdefault(r["symbol"], []).append(r)
    return {s: margin.tiers_from_rows(rows) for s, rows in out.items()}


def _evaluate(wallet_equity: float, syms: list[str], size: np.ndarray, mark: np.ndarray,
              r: np.ndarray, tiers: dict[str, list[margin.Tier]], keep: np.ndarray) -> tuple[float, float]:
    """(equity_after, mm_after) of the positions in `keep` after the return vector r."""
    w = size * mark
    eq = wallet_equity + float((w * r)[keep].sum())
    mm = sum(margin.maintenance_margin(tiers[s], abs(size[i]) * mark[i] * (1 + r[i]))
             for i, s in enumerate(syms) if keep[i])
    return eq, mm


def stress_cross_accounts(positions_eod: pl.DataFrame, accounts_eod: pl.DataFrame,
                          mark_index: pl.DataFrame, risk_tiers: pl.DataFrame,
                          vols: pl.DataFrame, corr: pl.DataFrame,
                          k_sigma: Sequence[float] = K_SIGMA,
                          horizon_min: float = HORIZON_MIN) -> pl.DataFrame:
    """One row per cross-margin account x scenario (empirical, corr_one_up, corr_one_down) x k.

    With w_s = size_s x mark_s (mark = the day's last mark_price), sigma_s = vol_1m_s x
    sqrt(horizon_min), Sigma_ab = sigma_a sigma_b corr_ab: equity = wallet - isolated margins +
    sum size x (mark - entry) over the account's cross positions; mm = sum MM(|size| x mark);
    portfolio_sigma = sqrt(w' Sigma w) (empirical) or sum w_s sigma_s (correlations at one, the
    P&L of a +1 sigma common move); move r = -k Sigma w / sqrt(w' Sigma w) (empirical), +k sigma
    (corr_one_up), -k sigma (corr_one_down); pnl = sum w_s r_s; equity_after = equity + pnl;
    mm_after = sum MM(|size_s| x mark_s (1 + r_s)); breach = equity_after <= mm_after;
    liquidation_notional_at_risk = sum |size_s| x mark_s (1 + r_s) if breach else 0;
    gross_notional = sum |w_s|. trigger_symbol / trigger_reason / trigger_notional: on a breach the
    smallest-notional position whose removal (its P&L and MM out) avoids it
    ('removal_avoids_breach'), else the position with the largest loss -w_s r_s
    ('largest_loss'); largest_loss_symbol is always the latter. Raises InputError when a position's
    symbol lacks a mark, a volatility, tiers or (empirical) a correlation, or an account has no
    accounts_eod row.
    """
    _need(positions_eod, "positions_eod", ("date", "account", "symbol", "size", "entry_price",
                                           "margin_mode", "isolated_margin"))
    _need(accounts_eod, "accounts_eod", ("account", "wallet_balance"))
    _need(vols, "vols", ("symbol", "vol_1m"))
    _need(corr, "corr", ("symbol_a", "symbol_b", "corr"))
    tiers = _tiers(risk_tiers)
    marks = dict(_minute_marks(mark_index).group_by("symbol").agg(pl.col("mark_price").last()).iter_rows())
    vol = {s: v for s, v in vols.select("symbol", "vol_1m").iter_rows()}
    rho = {(a, b): c for a, b, c in corr.select("symbol_a", "symbol_b", "corr").iter_rows()}
    wallets = dict(accounts_eod.select("account", "wallet_balance").iter_rows())
    pos = positions_eod.filter(pl.col("size") != 0)
    iso_margin = dict(pos.filter(pl.col("margin_mode") == "isolated").group_by("account")
                      .agg(pl.col("isolated_margin").fill_null(0.0).sum()).iter_rows())
    cross = pos.filter(pl.col("margin_mode") == "cross").sort("account", "symbol")
    scale = math.sqrt(horizon_min)
    rows = []
    for (acct,), g in cross.group_by(["account"], maintain_order=True):
        date = g["date"][0]
        syms = g["symbol"].to_list()
        for s in syms:
            if s not in marks:
                raise InputError("mark_index", f"no mark for {s!r} (account {acct} holds it)",
                                 column="symbol", expected="a mark for every position's symbol")
            if vol.get(s) is None or not math.isfinite(vol[s]):
                raise InputError("vols", f"no volatility for {s!r} (account {acct} holds it)",
                                 column="vol_1m", expected="a finite vol_1m per position symbol")
            if s not in tiers:
                raise InputError("risk_tiers", f"no tiers for {s!r}", column="symbol",
                                 expected="tiers for every position's symbol")
        if acct not in wallets:
            raise InputError("accounts_eod", f"account {acct} has cross positions but no row",
                             column="account", expected="one row per account with positions")
        size = g["size"].to_numpy().astype(float)
        entry = g["entry_price"].to_numpy().astype(float)
        mark = np.array([marks[s] for s in syms], dtype=float)
        sig = np.array([vol[s] for s in syms], dtype=float) * scale
        w = size * mark
        equity = float(wallets[acct]) - float(iso_margin.get(acct, 0.0)) + float((size * (mark - entry)).sum())
        mm = sum(margin.maintenance_margin(tiers[s], abs(w[i])) for i, s in enumerate(syms))
        n = len(syms)
        R = np.eye(n)
        for i in range(n):
            for j in range(n):
                if i != j:
                    c = rho.get((syms[i], syms[j]), rho.get((syms[j], syms[i])))
                    if c is None or not math.isfinite(c):
                        raise InputError("corr", f"no correlation for {syms[i]!r} x {syms[j]!r}",
                                         column="corr", expected="a correlation per symbol pair")
                    R[i, j] = c
        cov = np.outer(sig, sig) * R
        sw = cov @ w
        psig = math.sqrt(max(float(w @ sw), 0.0))
        for k in k_sigma:
            for scen in SCENARIOS:
                if scen == "empirical":
                    r = -k * sw / psig if psig > 0 else np.zeros(n)
                    ps = psig
                else:
                    d = 1.0 if scen == "corr_one_up" else -1.0
                    r = d * k * sig
                    ps = float((w * sig).sum())
                keep = np.ones(n, dtype=bool)
                eq_a, mm_a = _evaluate(equity, syms, size, mark, r, tiers, keep)
                breach = eq_a <= mm_a
                loss = -(w * r)
                li = int(np.argmax(loss))
                trig, reason = syms[li], "largest_loss"
                tnot = abs(w[li])
                if breach:
                    saviours = []
                    for i in range(n):
                        keep_i = keep.copy()
                        keep_i[i] = False
                        e_i, m_i = _evaluate(equity, syms, size, mark, r, tiers, keep_i)
                        if e_i > m_i:
                            saviours.append((abs(w[i]), syms[i]))
                    if saviours:
                        tnot, trig = min(saviours)
                        reason = "removal_avoids_breach"
                rows.append({
                    "date": date, "account": acct, "scenario": scen, "k_sigma": float(k),
                    "n_positions": n, "gross_notional": float(np.abs(w).sum()), "equity": equity,
                    "mm": mm, "portfolio_sigma": ps, "pnl": float((w * r).sum()),
                    "equity_after": eq_a, "mm_after": mm_a, "breach": breach,
                    "liquidation_notional_at_risk":
                        float((np.abs(size) * mark * (1 + r)).sum()) if breach else 0.0,
                    "trigger_symbol": trig, "trigger_reason": reason, "trigger_notional": float(tnot),
                    "largest_loss_symbol": syms[li]})
    out = pl.DataFrame(rows, schema=STRESS_SCHEMA)
    order = {s: i for i, s in enumerate(SCENARIOS)}
    return (_conform(out, STRESS_SCHEMA)
            .with_columns(pl.col("scenario").replace_strict(order, return_dtype=I64).alias("_o"))
            .sort("date", "_o", "k_sigma", "account").drop("_o"))


def stress_summary(stress: pl.DataFrame) -> pl.DataFrame:
    """Per date x scenario x k_sigma: accounts (cross-margin accounts stressed),
    accounts_breaching, equity_at_risk = sum of pre-shock equity of the breaching accounts,
    loss = sum over all accounts of max(-pnl, 0), liquidation_notional_at_risk = sum over
    breaching accounts, trigger_symbols = distinct trigger symbols of breaching accounts."""
    b = pl.col("breach")
    out = stress.group_by("date", "scenario", "k_sigma").agg(
        pl.len().cast(I64).alias("accounts"),
        b.sum().cast(I64).alias("accounts_breaching"),
        pl.col("equity").filter(b).sum().alias("equity_at_risk"),
        (-pl.col("pnl")).clip(lower_bound=0.0).sum().alias("loss"),
        pl.col("liquidation_notional_at_risk").sum(),
        pl.col("trigger_symbol").filter(b).unique().sort().alias("trigger_symbols"))
    order = {s: i for i, s in enumerate(SCENARIOS)}
    return (_conform(out, SUMMARY_SCHEMA)
            .with_columns(pl.col("scenario").replace_strict(order, default=99, return_dtype=I64).alias("_o"))
            .sort("date", "_o", "k_sigma").drop("_o"))
