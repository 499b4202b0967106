"""API permission scoping (DESIGN 4.10): the per-key checklist, its totals and unattributed
requests, on hand-built keys and request logs, and on a clean tiny simulated day.

Fixture day 2024-03-01 (as_of = 2024-03-02 00:00 UTC). Keys:
  1  read, trade, withdraw; allowlist; kill switch; uses read and trade: trade_and_withdraw and
     unused_scopes [withdraw], needed [read, trade].
  2  read, trade; empty allowlist: trading_without_allowlist.
  3  read, trade; no kill switch; 15 trade requests 2 s apart (09:00:00 ... 09:00:28) and one
     read: peak 15 in a minute > 12 -> automation_without_kill_switch.
  4  as 3 but with the kill switch: automation, ok.
  5  read; expires 2024-03-01 10:00 but status active: expired_but_active.
  6  read; last used 2024-01-01, no request today: unused_but_active (and its read is unused).
  7  read, trade; 11 errors 5 s apart (6 x 429, 5 x 400) from 11:00:00 to 11:00:50, one more at
     11:03:00, one read: peak 11 errors in a minute > 10 -> error_burst; rate_limited 6.
  8  read, trade, used read only today: unused [trade] on a one-day window; trade was used three
     days ago (history), which clears it.
  9  read, clean.
Plus 2 requests with a null key_id and 1 with key 99 (not in api_keys): unattributed.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from venue_risk import schema
from venue_risk.errors import InputError
from venue_risk.metrics import api_scoping as ap

DAY = dt.date(2024, 3, 1)
UTC = dt.timezone.utc


def ts(h: int, m: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(2024, 3, 1, h, m, s, tzinfo=UTC)


def frame(name: str, rows: list[dict]) -> pl.DataFrame:
    spec = schema.DATASETS[name].schema
    if not rows:
        return schema.empty_frame(name)
    return schema.conform(name, pl.DataFrame({c: [r.get(c) for r in rows] for c in spec}, schema=spec))


def key(kid: int, scopes: list[str], allow: list[str] | None = None, cod: bool = True,
        expires: dt.datetime | None = None, last_used: dt.datetime | None = ts(23)) -> dict:
    return dict(key_id=kid, account=kid * 10, scopes=scopes,
                ip_allowlist=["10.0.0.1"] if allow is None else allow,
                created_at=dt.datetime(2023, 1, 1, tzinfo=UTC), last_used_at=last_used,
                expires_at=expires or dt.datetime(2026, 1, 1, tzinfo=UTC), cancel_on_disconnect=cod,
                status="active")


def req(t: dt.datetime, kid: int | None, scope: str = "read", status: int = 200) -> dict:
    return dict(ts=t, key_id=kid, account=None if kid is None else kid * 10, endpoint="/fapi/v1/order"
                if scope == "trade" else "/fapi/v2/account", method="POST" if scope == "trade" else "GET",
                status=status, latency_ms=20.0, source_ip="10.0.0.1", scope_used=scope)


def keys() -> pl.DataFrame:
    return frame("api_keys", [
        key(1, ["read", "trade", "withdraw"]),
        key(2, ["read", "trade"], allow=[]),
        key(3, ["read", "trade"], cod=False),
        key(4, ["read", "trade"]),
        key(5, ["read"], cod=False, expires=ts(10)),
        key(6, ["read"], cod=False, last_used=dt.datetime(2024, 1, 1, tzinfo=UTC)),
        key(7, ["read", "trade"]),
        key(8, ["read", "trade"]),
        key(9, ["read"], cod=False),
    ])


def requests() -> pl.DataFrame:
    rows = [req(ts(8), 1), req(ts(8, 5), 1, "trade"), req(ts(8), 2), req(ts(8, 1), 2, "trade"),
            req(ts(8), 3), req(ts(8), 4), req(ts(12), 5), req(ts(5), 7), req(ts(6), 8), req(ts(6), 9)]
    for kid in (3, 4):
        rows += [req(ts(9, 0, 2 * i), kid, "trade") for i in range(15)]
    rows += [req(ts(11, 0, 5 * i), 7, "trade", 429 if i < 6 else 400) for i in range(11)]
    rows += [req(ts(11, 3), 7, "trade", 503)]
    rows += [req(ts(7), None), req(ts(7, 30), None, "trade"), req(ts(7, 45), 99)]
    return frame("api_requests", rows)


@pytest.fixture(scope="module")
def checklist() -> pl.DataFrame:
    return ap.key_checklist(keys(), requests(), DAY)


def by_key(c: pl.DataFrame) -> dict[int, dict]:
    return {r["key_id"]: r for r in c.iter_rows(named=True)}


def test_flags_per_key(checklist):
    assert checklist.columns == list(ap.CHECKLIST_SCHEMA)
    flags = {k: r["flags"] for k, r in by_key(checklist).items()}
    assert flags == {
        1: ["trade_and_withdraw", "unused_scopes"],
        2: ["trading_without_allowlist"],
        3: ["automation_without_kill_switch"],
        4: [],
        5: ["expired_but_active"],
        6: ["unused_scopes", "unused_but_active"],
        7: ["error_burst"],
        8: ["unused_scopes"],
        9: [],
    }
    assert checklist.filter(pl.col("ok"))["key_id"].to_list() == [4, 9]
    assert (checklist["date"] == DAY).all()


def test_least_privilege_and_unused_scopes_on_one_day(checklist):
    k = by_key(checklist)
    assert k[1]["needed_scopes"] == ["read", "trade"] and k[1]["unused_scope_list"] == ["withdraw"]
    assert k[6]["needed_scopes"] == [] and k[6]["unused_scope_list"] == ["read"]
    assert k[8]["needed_scopes"] == ["read"] and k[8]["unused_scope_list"] == ["trade"]
    assert k[1]["scope_window_start"] == DAY and k[1]["scope_window_days"] == 1


def test_scope_history_widens_the_window():
    hist = pl.concat([
        ap.scope_usage(frame("api_requests", [req(ts(9) - dt.timedelta(days=3), 8, "trade")]),
                       DAY - dt.timedelta(days=3)),
        # withdraw used by key 1 forty days ago: outside the 30-day window, still unused
        ap.scope_usage(frame("api_requests", [req(ts(9) - dt.timedelta(days=40), 1, "withdraw")]),
                       DAY - dt.timedelta(days=40)),
    ])
    assert hist.columns == ["date", "key_id", "scope", "requests"]
    k = by_key(ap.key_checklist(keys(), requests(), DAY, scope_history=hist))
    assert k[8]["needed_scopes"] == ["read", "trade"] and k[8]["flags"] == []
    assert k[1]["unused_scope_list"] == ["withdraw"]
    assert k[8]["scope_window_start"] == DAY - dt.timedelta(days=3) and k[8]["scope_window_days"] == 4


def test_automation_peak_from_hand_timestamps(checklist):
    k = by_key(checklist)
    # 15 requests in [09:00:00, 09:00:28]; the read at 08:00 is not in that minute
    assert k[3]["peak_requests_per_minute"] == 15 and k[3]["automation"] and not k[3]["kill_switch"]
    assert k[4]["automation"] and k[4]["kill_switch"] and not k[4]["automation_without_kill_switch"]
    # 12 requests in a minute is at the threshold (0.2/s x 60), not above it
    assert k[7]["peak_requests_per_minute"] == 11 and not k[7]["automation"]
    lower = by_key(ap.key_checklist(keys(), requests(), DAY, automation_rps=0.1))
    assert lower[7]["automation"] and not lower[7]["automation_without_kill_switch"]  # has the switch
    # a read-only key never needs the kill switch, however busy
    busy = ap.key_checklist(frame("api_keys", [key(10, ["read"], cod=False)]),
                            frame("api_requests", [req(ts(9, 0, i), 10) for i in range(20)]), DAY)
    assert busy["automation"][0] and busy["flags"][0].to_list() == []


def test_errors_rate_limits_and_burst(checklist):
    k = by_key(checklist)[7]
    assert (k["requests"], k["errors"], k["rate_limited"], k["peak_errors_per_minute"]) == (13, 12, 6, 11)
    assert k["error_rate"] == pytest.approx(12 / 13)
    assert by_key(checklist)[9]["error_rate"] == 0.0 and by_key(checklist)[6]["error_rate"] is None
    assert by_key(ap.key_checklist(keys(), requests(), DAY, error_burst_per_minute=11))[7]["flags"] == []


def test_expiry_and_unused_but_active_edges():
    k = frame("api_keys", [key(1, ["read"], expires=dt.datetime(2024, 3, 2, tzinfo=UTC)),  # at as_of
                           key(2, ["read"], expires=dt.datetime(2024, 3, 2, 0, 0, 1, tzinfo=UTC)),
                           key(3, ["read"], last_used=None),  # never used, created 2023: unused
                           key(4, ["read"], last_used=dt.datetime(2024, 2, 15, tzinfo=UTC))])
    c = by_key(ap.key_checklist(k, frame("api_requests", []), DAY))
    assert c[1]["expired_but_active"] and not c[2]["expired_but_active"]
    assert c[3]["unused_but_active"] and not c[4]["unused_but_active"]
    revoked = k.with_columns(pl.lit("revoked").alias("status"))
    assert not ap.key_checklist(revoked, frame("api_requests", []), DAY)["expired_but_active"].any()


def test_totals(checklist):
    t = ap.checklist_totals(checklist)
    assert t["check"].to_list() == list(ap.CHECKS) + ["any"]
    got = {r["check"]: (r["keys_failing"], r["key_ids"]) for r in t.iter_rows(named=True)}
    assert got["unused_scopes"] == (3, [1, 6, 8])
    assert got["trade_and_withdraw"] == (1, [1])
    assert got["automation_without_kill_switch"] == (1, [3])
    assert got["any"] == (7, [1, 2, 3, 5, 6, 7, 8])
    assert (t["keys"] == 9).all() and (t["date"] == DAY).all()


def test_unattributed_requests():
    u = ap.unattributed_requests(requests(), keys()).row(0, named=True)
    assert (u["date"], u["unattributed"], u["null_key_id"], u["unknown_key_id"]) == (DAY, 3, 2, 1)
    assert u["requests"] == requests().height and u["share"] == pytest.approx(3 / requests().height)
    assert u["unknown_key_ids"] == [99]
    assert u["examples"][0].startswith("2024-03-01T07:00:00+00:00 None GET /fapi/v2/account 200")
    assert len(u["examples"]) == 3


def test_bad_input_names_dataset_and_column():
    with pytest.raises(InputError, match="api_keys.*cancel_on_disconnect"):
        ap.key_checklist(keys().drop("cancel_on_disconnect"), requests(), DAY)
    with pytest.raises(InputError, match="api_keys.*key_id"):
        ap.key_checklist(pl.concat([keys(), keys().head(1)]), requests(), DAY)


def test_clean_simulated_day_passes_every_check(tmp_path):
    from venue_risk.simulate import simulate
    from venue_risk.sources import FilesSource
    day = dt.date(2026, 11, 2)
    simulate("tiny", dt.date(2026, 11, 1), 2, tmp_path, incidents=[])
    src = FilesSource(tmp_path)
    k, r = src.read("api_keys", day), src.read("api_requests", day)
    c = ap.key_checklist(k, r, day)
    assert c.height == k.height > 0
    assert c.filter(~pl.col("ok")).select("key_id", "flags").rows() == []
    assert c["automation"].any() or c["peak_requests_per_minute"].max() > 1  # traffic was seen
    assert ap.unattributed_requests(r, k)["unattributed"][0] == 0
