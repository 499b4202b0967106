"""API permission scoping (DESIGN 4.10): a checklist per API key and in total. Scope keys, log
requests, keep a kill switch for automation.

The day's api_keys snapshot is taken as of the end of the day, as_of = day + 1 at 00:00 UTC.
Per key:

- trade_and_withdraw: the key holds both the trade and the withdraw scope.
- trading_without_allowlist: the key holds trade or withdraw and its IP allowlist is empty.
- unused_scopes: scopes the key holds but used by no authorized request (status not 401/403)
  in the scope window, the 30 days ending on the day. needed_scopes, the least-privilege set,
  is the scopes it did use. With only the day's requests the window is that one day; prior
  days' usage (the stored output of `scope_usage`) widens it, and scope_window_start /
  scope_window_days say which window was used (from the earliest day with usage records in the
  30 days, or the day itself). A short window is weak evidence: the report states it.
- automation: peak requests of the key in any 60-second window (rolling, [t, t + 60 s) from each
  request) above automation_rps x 60 (default 0.2 request/s: more than 12 requests in a
  minute). kill_switch = cancel_on_disconnect. automation_without_kill_switch: an automation
  key holding the trade scope (one that can leave orders behind) without the kill switch.
- expired_but_active: status active and expires_at <= as_of.
- unused_but_active: status active, no request today, and its last use (last_used_at, or
  created_at when never used) before as_of - 30 days.
- error_rate = requests with status >= 400 / requests; rate_limited = requests with status
  429; peak_errors_per_minute = most error requests (status >= 400, rate limits included) in
  any 60-second window; error_burst: that peak above error_burst_per_minute (default 10).

flags lists the failed checks (trade_and_withdraw, trading_without_allowlist, unused_scopes,
automation_without_kill_switch, expired_but_active, unused_but_active, error_burst) and ok is
true when there is none. Totals count the keys failing each check. Requests whose key_id is
null or absent from the day's api_keys cannot be attributed to a key: their count, share of all
requests and examples are reported.

Known limits: Scope usage needs history: with fewer stored days the window is shorter and
`unused_scopes` is weak evidence (the window is printed). An IP allowlist is checked for
presence, not breadth: a 0.0.0.0/0 entry counts as an allowlist. Automation is a request-rate
heuristic (AUTOMATION_RPS). Requests without a known key are counted and shown, but no check
applies to them.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from venue_risk.errors import InputError
from venue_risk.schema import TS
from venue_risk.metrics.frames import require_columns as _require, conform as _conform

METHOD = __doc__

#: Automation threshold: peak request rate over any 60-second window, requests per second.
AUTOMATION_RPS = 0.2
#: Error burst threshold: error requests (status >= 400) in any 60-second window.
ERROR_BURST_PER_MINUTE = 10
#: Scope-usage window and the "unused" horizon, days.
WINDOW_DAYS = 30
#: Statuses that mean the request was not authorized: it does not count as using the scope.
UNAUTHORIZED = (401, 403)
#: Rolling window for peaks, microseconds.
_WINDOW_US = 60_000_000

#: The checks, in report order (each a boolean column of the checklist).
CHECKS: tuple[str, ...] = ("trade_and_withdraw", "trading_without_allowlist", "unused_scopes",
                           "automation_without_kill_switch", "expired_but_active",
                           "unused_but_active", "error_burst")

I64, F64, STR, BOOL = pl.Int64, pl.Float64, pl.String, pl.Boolean
LIST_STR = pl.List(pl.String)

CHECKLIST_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "key_id": I64,
    "account": I64,
    "status": STR,
    "scopes": LIST_STR,
    "needed_scopes": LIST_STR,
    "unused_scope_list": LIST_STR,
    "scope_window_start": pl.Date,
    "scope_window_days": I64,
    "requests": I64,
    "peak_requests_per_minute": I64,
    "automation": BOOL,
    "kill_switch": BOOL,
    "errors": I64,
    "error_rate": F64,
    "rate_limited": I64,
    "peak_errors_per_minute": I64,
    "last_used_at": TS,
    "expires_at": TS,
    "trade_and_withdraw": BOOL,
    "trading_without_allowlist": BOOL,
    "unused_scopes": BOOL,
    "automation_without_kill_switch": BOOL,
    "expired_but_active": BOOL,
    "unused_but_active": BOOL,
    "error_burst": BOOL,
    "flags": LIST_STR,
    "ok": BOOL,
}

SCOPE_USAGE_SCHEMA: dict[str, pl.DataType] = {"date": pl.Date, "key_id": I64, "scope": STR, "requests": I64}

TOTALS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "check": STR, "keys_failing": I64, "keys": I64, "share": F64,
    "key_ids": pl.List(I64),
}

UNATTRIBUTED_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date, "requests": I64, "unattributed": I64, "null_key_id": I64,
    "unknown_key_id": I64, "share": F64, "unknown_key_ids": pl.List(I64), "examples": LIST_STR,
}

_KEY_COLS = ("key_id", "account", "scopes", "ip_allowlist", "created_at", "last_used_at",
             "expires_at", "cancel_on_disconnect", "status")
_REQ_COLS = ("ts", "key_id", "status", "scope_used")




def _rolling_peak(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """Per key_id: the most rows of `frame` in any window [t, t + 60 s) starting at a row."""
    if frame.height == 0:
        return pl.DataFrame(schema={"key_id": I64, name: I64})
    f = frame.select("key_id", pl.col("ts").dt.epoch("us").alias("t")).sort("key_id", "t")
    g = f["key_id"].rle_id().to_numpy().astype(np.int64)
    t = f["t"].to_numpy()
    t = t - t.min()
    span = int(t.max()) + 2 * _WINDOW_US + 1
    comp = g * span + t
    count = np.searchsorted(comp, comp + _WINDOW_US, side="left") - np.arange(len(comp))
    return (f.select("key_id").with_columns(pl.Series(name, count, dtype=I64))
            .group_by("key_id").agg(pl.col(name).max()))


def scope_usage(api_requests: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """Scopes used per key on `day`: date, key_id, scope, requests = authorized requests (status
    not 401/403) of the key with that scope_used. Stored per date, it is the history that
    widens `key_checklist`'s scope window."""
    _require(api_requests, "api_requests", _REQ_COLS)
    out = (api_requests.filter(pl.col("key_id").is_not_null() & pl.col("scope_used").is_not_null()
                               & ~pl.col("status").is_in(list(UNAUTHORIZED)))
           .group_by("key_id", pl.col("scope_used").alias("scope")).agg(pl.len().cast(I64).alias("requests"))
           .with_columns(pl.lit(day, dtype=pl.Date).alias("date")))
    return _conform(out, SCOPE_USAGE_SCHEMA).sort("key_id", "scope")


def key_checklist(api_keys: pl.DataFrame, api_requests: pl.DataFrame, day: dt.date, *,
                  automation_rps: float = AUTOMATION_RPS,
                  error_burst_per_minute: int = ERROR_BURST_PER_MINUTE,
                  scope_history: pl.DataFrame | None = None,
                  window_days: int = WINDOW_DAYS) -> pl.DataFrame:
    """The checklist, one row per key of the day's api_keys snapshot.

    as_of = day + 1 at 00:00 UTC. trade_and_withdraw = {trade, withdraw} within scopes;
    trading_without_allowlist = (trade or withdraw in scopes) and ip_allowlist empty;
    needed_scopes = sorted distinct scope_used of the key's authorized requests (status not
    401/403) today and in scope_history (date, key_id, scope, requests; the output of
    `scope_usage` for earlier days) within [day - window_days + 1, day]; unused_scope_list =
    scopes - needed_scopes; unused_scopes = that list is non-empty; scope_window_start = the
    earliest history date in the window (or day), scope_window_days = day - start + 1.
    peak_requests_per_minute = max over the key's requests r of #requests in [ts_r, ts_r + 60 s);
    automation = peak_requests_per_minute > automation_rps x 60; kill_switch =
    cancel_on_disconnect; automation_without_kill_switch = automation and trade in scopes and
    not kill_switch. expired_but_active = status active and expires_at <= as_of.
    unused_but_active = status active, requests = 0 and coalesce(last_used_at, created_at) <
    as_of - window_days. errors = requests with status >= 400; error_rate = errors / requests
    (null without requests); rate_limited = status 429 count; peak_errors_per_minute = the same
    rolling peak over error requests; error_burst = peak_errors_per_minute >
    error_burst_per_minute. flags = the failed checks in CHECKS order; ok = no flag.
    Sorted by key_id.
    """
    _require(api_keys, "api_keys", _KEY_COLS)
    _require(api_requests, "api_requests", _REQ_COLS)
    dup = api_keys.filter(pl.col("key_id").is_duplicated() | pl.col("key_id").is_null())
    if dup.height:
        raise InputError("api_keys", f"key_id {dup['key_id'][0]} is null or appears more than once",
                         column="key_id", expected="one row per key")
    as_of = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc)
    horizon = as_of - dt.timedelta(days=window_days)
    start = day - dt.timedelta(days=window_days - 1)

    req = api_requests.filter(pl.col("key_id").is_not_null())
    usage = scope_usage(api_requests, day)
    if scope_history is not None and scope_history.height:
        _require(scope_history, "scope_history", ("date", "key_id", "scope"))
        hist = scope_history.filter(pl.col("date").is_between(start, day - dt.timedelta(days=1)))
        if hist.height:
            start = hist["date"].min()
        else:
            start = day
        usage = pl.concat([usage.select("key_id", "scope"), hist.select(pl.col("key_id").cast(I64),
                                                                       pl.col("scope").cast(STR))])
    else:
        start = day
    needed = (usage.select("key_id", "scope").unique()
              .group_by("key_id").agg(pl.col("scope").sort().alias("needed_scopes")))
    stats = req.group_by("key_id").agg(
        pl.len().cast(I64).alias("requests"),
        (pl.col("status") >= 400).sum().cast(I64).alias("errors"),
        (pl.col("status") == 429).sum().cast(I64).alias("rate_limited"))
    peak = _rolling_peak(req, "peak_requests_per_minute")
    peak_err = _rolling_peak(req.filter(pl.col("status") >= 400), "peak_errors_per_minute")

    scopes = pl.col("scopes").fill_null(pl.lit([], dtype=LIST_STR))
    has = lambda s: scopes.list.contains(s)  # noqa: E731
    active = pl.col("status") == "active"
    k = (api_keys.join(needed, on="key_id", how="left").join(stats, on="key_id", how="left")
         .join(peak, on="key_id", how="left").join(peak_err, on="key_id", how="left")
         .with_columns(
             pl.col("needed_scopes").fill_null(pl.lit([], dtype=LIST_STR)),
             pl.col("requests", "errors", "rate_limited", "peak_requests_per_minute",
                    "peak_errors_per_minute").fill_null(0))
         .with_columns(
             scopes.list.set_difference("needed_scopes").list.sort().alias("unused_scope_list"),
             (pl.col("peak_requests_per_minute") > automation_rps * 60).alias("automation"),
             pl.col("cancel_on_disconnect").fill_null(False).alias("kill_switch"),
             pl.when(pl.col("requests") > 0).then(pl.col("errors") / pl.col("requests")).alias("error_rate"))
         .with_columns(
             (has("trade") & has("withdraw")).alias("trade_and_withdraw"),
             ((has("trade") | has("withdraw"))
              & (pl.col("ip_allowlist").fill_null(pl.lit([], dtype=LIST_STR)).list.len() == 0))
             .alias("trading_without_allowlist"),
             (pl.col("unused_scope_list").list.len() > 0).alias("unused_scopes"),
             (pl.col("automation") & has("trade") & ~pl.col("kill_switch"))
             .alias("automation_without_kill_switch"),
             (active & pl.col("expires_at").is_not_null() & (pl.col("expires_at") <= as_of))
             .alias("expired_but_active"),
             (active & (pl.col("requests") == 0)
              & (pl.coalesce("last_used_at", "created_at") < horizon).fill_null(True))
             .alias("unused_but_active"),
             (pl.col("peak_errors_per_minute") > error_burst_per_minute).alias("error_burst"),
             pl.lit(day, dtype=pl.Date).alias("date"),
             pl.lit(start, dtype=pl.Date).alias("scope_window_start"),
             pl.lit((day - start).days + 1, dtype=I64).alias("scope_window_days"))
         .with_columns(pl.concat_list([pl.when(pl.col(c)).then(pl.lit(c)) for c in CHECKS])
                       .list.drop_nulls().alias("flags"))
         .with_columns((pl.col("flags").list.len() == 0).alias("ok")))
    return _conform(k, CHECKLIST_SCHEMA).sort("key_id")


def checklist_totals(checklist: pl.DataFrame) -> pl.DataFrame:
    """Per date and check (CHECKS order, plus "any" = keys with at least one flag): keys_failing,
    keys (all keys), share = keys_failing / keys, key_ids = the failing keys (sorted)."""
    _require(checklist, "checklist", ("date", "key_id", "ok") + CHECKS)
    rows = []
    for (d,), g in checklist.group_by(["date"], maintain_order=True):
        for c in CHECKS + ("any",):
            fail = g.filter(~pl.col("ok")) if c == "any" else g.filter(pl.col(c))
            ids = fail["key_id"].sort().to_list()
            rows.append({"date": d, "check": c, "keys_failing": len(ids), "keys": g.height,
                         "share": len(ids) / g.height if g.height else None, "key_ids": ids})
    if not rows:
        return pl.DataFrame(schema=TOTALS_SCHEMA)
    return _conform(pl.DataFrame(rows, schema=TOTALS_SCHEMA), TOTALS_SCHEMA).sort("date")


def unattributed_requests(api_requests: pl.DataFrame, api_keys: pl.DataFrame,
                          day: dt.date | None = None, examples: int = 5) -> pl.DataFrame:
    """Requests that cannot be attributed to a key: key_id null, or absent from the day's
    api_keys. One row: date (`day`, else the requests' first UTC date), requests (all),
    unattributed = null_key_id + unknown_key_id, share = unattributed / requests (null without
    requests), unknown_key_ids (up to 20, sorted), examples (the first `examples` by ts, as
    "ts key_id method endpoint status source_ip")."""
    _require(api_requests, "api_requests", ("ts", "key_id"))
    _require(api_keys, "api_keys", ("key_id",))
    known = api_keys["key_id"].drop_nulls().unique().implode()
    bad = api_requests.filter(pl.col("key_id").is_null() | ~pl.col("key_id").is_in(known)).sort("ts")
    if day is None and api_requests.height:
        day = api_requests["ts"].min().date()
    n_null = int(bad["key_id"].null_count())
    cols = [c for c in ("method", "endpoint", "status", "source_ip") if c in bad.columns]
    ex = [" ".join(str(v) for v in (r["ts"].isoformat() if r["ts"] else None, r["key_id"],
                                    *[r[c] for c in cols]))
          for r in bad.head(examples).iter_rows(named=True)]
    row = {"date": day, "requests": api_requests.height, "unattributed": bad.height,
           "null_key_id": n_null, "unknown_key_id": bad.height - n_null,
           "share": bad.height / api_requests.height if api_requests.height else None,
           "unknown_key_ids": bad["key_id"].drop_nulls().unique().sort().head(20).to_list(),
           "examples": ex}
    return pl.DataFrame([row], schema=UNATTRIBUTED_SCHEMA)
