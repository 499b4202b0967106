"""The production-like stack, for real: a metadata DB on this machine's PostgreSQL, the
api-server, scheduler, dag-processor, triggerer and a Celery worker on Redis, started by
deploy/native-stack.sh (what `make stack` runs) with the project's settings, and a real SMTP
server. Six tiny days of venue exports (the `files` source) go through `airflow backfill create`:

1. days 1-4 in one backfill (the backfill's default max-active-runs, so all four runs start at
   once): every run succeeds, compute_metrics starts in date order, day n's baseline holds n
   days, one mail per day reaches the committee; unpausing the DAG reported nothing for the past
   day it scheduled (a notice to operations instead);
2. days 5-6 with day 5's trades corrupted: day 5 fails and the alert reaches operations; day 6
   is reported and names day 5 as missing from its baseline (summary.json and page one);
3. the reports page in Chromium: anonymous callers are refused; after signing in through
   Airflow's login form the page lists the failed day with its error, a missing day, the
   delivery states, and a PDF opens;
4. day 2 rerun with changed trades: its report is mailed again marked REVISED with the changed
   figures, and the later reports are marked as computed on a stale baseline;
5. day 5 fixed, `venue-risk reprocess --from` day 2: every stale mark and the baseline gap are
   gone, and day 2's identical recomputation mails nothing.

Skipped, with the reason, when PostgreSQL or Redis is not reachable on localhost."""

from __future__ import annotations

import datetime as dt
import email
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email import policy
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import CHROMIUM, Browser, free_port  # noqa: E402

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]
STACK = PROJECT / "deploy" / "native-stack.sh"
BIN = Path(sys.executable).parent
DAG_ID = "venue_risk_daily"
DAYS = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(6)]
D = [d.isoformat() for d in DAYS]
COMMITTEE, OPS = "risk-committee@example.com", "risk-ops@example.com"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _redis(db: int, *command: str) -> bytes:
    """One Redis command over RESP (no client library needed)."""
    payload = f"*2\r\n$6\r\nSELECT\r\n${len(str(db))}\r\n{db}\r\n".encode()
    payload += f"*{len(command)}\r\n".encode() + b"".join(f"${len(c)}\r\n{c}\r\n".encode() for c in command)
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as s:
        s.sendall(payload)
        time.sleep(0.2)
        return s.recv(4096)


class Mailbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content,
                                                      policy=policy.default))
        return "250 OK"

    def subjects(self, to: str) -> list[str]:
        return [str(m["Subject"]) for m in self.messages if to in str(m.get("To", ""))]

    def reports(self, day: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if COMMITTEE in str(m.get("To", ""))
                and f" {day} risk report" in str(m["Subject"])]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The running stack: {env, airflow(*args), sql(query), home, exports, mail, base_url, passwords}."""
    if not (_reachable(5432) and shutil.which("psql")):
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (or psql is missing): the native stack needs it")
    if not _reachable(6379):
        pytest.skip("Redis is not reachable on 127.0.0.1:6379: the Celery broker needs it")
    from aiosmtpd.controller import Controller

    from venue_risk.simulate import simulate

    root = tmp_path_factory.mktemp("native-stack")
    exports, home = root / "exports", root / "home"
    simulate("tiny", DAYS[0], len(DAYS), exports)
    mail = Mailbox()
    smtp = Controller(mail, hostname="127.0.0.1", port=free_port())
    smtp.start()
    redis_db = next((n for n in range(15, 0, -1) if _redis(n, "DBSIZE").endswith(b":0\r\n")), None)
    if redis_db is None:
        pytest.skip("no empty Redis database (1-15) to use as the Celery broker")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VENUE_RISK"))}
    env.update({
        "STACK_HOME": str(root / "airflow"), "STACK_DB": f"venue_risk_test_{secrets.token_hex(4)}",
        "STACK_REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}", "STACK_API_PORT": str(free_port()),
        "STACK_WORKER_LOG_PORT": str(free_port()), "STACK_TRIGGER_LOG_PORT": str(free_port()),
        "STACK_BIN": str(BIN),
        "VENUE_RISK_HOME": str(home), "VENUE_RISK_SOURCE": "files", "VENUE_RISK_FILES_ROOT": str(exports),
        "VENUE_RISK_START_DATE": D[0], "VENUE_RISK_RECIPIENTS": COMMITTEE, "VENUE_RISK_ALERT_RECIPIENTS": OPS,
        # every scheduled run is "late": unpausing must report nothing for the past day it schedules
        "VENUE_RISK_SCHEDULE_GRACE_HOURS": "0",
        "AIRFLOW_CONN_SMTP_DEFAULT": (f"smtp://127.0.0.1:{smtp.port}?disable_ssl=true&disable_tls=true"
                                      f"&from_email=venue-risk%40example.com&timeout=10"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    })
    started = subprocess.run([str(STACK), "start"], env=env, capture_output=True, text=True, timeout=300)
    stack_env = dict(env)
    for line in subprocess.run([str(STACK), "env"], env=env, capture_output=True, text=True,
                               check=True).stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        stack_env[key] = subprocess.run(["bash", "-c", f"printf %s {value}"], capture_output=True,
                                        text=True).stdout

    def airflow(*args: str, check: bool = True) -> str:
        done = subprocess.run([str(BIN / "airflow"), *args], env=stack_env, capture_output=True, text=True,
                              timeout=300)
        if check and done.returncode:
            raise AssertionError(f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done.stdout

    import psycopg2

    def sql(query: str, *params) -> list[tuple]:
        with psycopg2.connect(dbname=env["STACK_DB"], **PG) as con, con.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    logs = Path(env["STACK_HOME"]) / "logs"
    try:
        assert started.returncode == 0, f"native-stack.sh start failed:\n{started.stdout}\n{started.stderr}"
        yield {"env": stack_env, "airflow": airflow, "sql": sql, "home": home, "exports": exports, "mail": mail,
               "base_url": f"http://127.0.0.1:{env['STACK_API_PORT']}", "logs": logs,
               "passwords": Path(env["STACK_HOME"]) / "simple_auth_manager_passwords.json.generated"}
    finally:
        stopped = subprocess.run([str(STACK), "stop"], env=env, capture_output=True, text=True, timeout=300)
        pids = list((Path(env["STACK_HOME"]) / "run").glob("*.pid"))
        subprocess.run([str(STACK), "drop-db"], env=env, capture_output=True, text=True, timeout=120)
        _redis(redis_db, "FLUSHDB")
        smtp.stop()
        assert stopped.returncode == 0 and not pids, f"stack did not stop cleanly: {stopped.stdout}{stopped.stderr}"


def _runs(stack, days: list[str]) -> dict[str, str]:
    """{day: state of its latest run}."""
    rows = stack["sql"]("SELECT logical_date, state FROM dag_run WHERE dag_id = %s ORDER BY id", DAG_ID)
    states = {ld.date().isoformat(): state for ld, state in rows if ld is not None}
    return {d: states.get(d) for d in days}


def _wait_finished(stack, days: list[str], seconds: float = 900) -> dict[str, str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states = _runs(stack, days)
        open_backfills = stack["sql"]("SELECT count(*) FROM backfill WHERE completed_at IS NULL")[0][0]
        if all(s in ("success", "failed") for s in states.values()) and not open_backfills:
            return states  # runs done and the backfill closed (Airflow allows one open backfill per DAG)
        time.sleep(5)
    tail = "\n".join((stack["logs"] / f"{p}.log").read_text()[-1500:] for p in ("scheduler", "celery-worker"))
    raise AssertionError(f"runs not finished within {seconds} s: {_runs(stack, days)}\n{tail}")


def _backfill(stack, first: str, last: str, *flags: str) -> float:
    started = time.monotonic()
    stack["airflow"]("backfill", "create", "--dag-id", DAG_ID, "--from-date", first, "--to-date", last, *flags)
    return started


def _summary(stack, day: str) -> dict:
    return json.loads((stack["home"] / "reports" / day / "summary.json").read_text())


def _trades(stack, day: str) -> Path:
    return stack["exports"] / "trades" / f"date={day}" / "data.parquet"


@pytest.fixture(scope="module")
def first_backfill(stack):
    deadline = time.monotonic() + 180
    while not stack["sql"]("SELECT 1 FROM serialized_dag WHERE dag_id = %s", DAG_ID):
        assert time.monotonic() < deadline, "the dag-processor did not parse venue_risk_daily within 180 s"
        time.sleep(2)
    stack["airflow"]("dags", "unpause", DAG_ID)
    started = _backfill(stack, D[0], D[3])
    states = _wait_finished(stack, D[:4])
    return {"states": states, "seconds": time.monotonic() - started}


def test_backfill_runs_in_date_order_with_growing_baselines(stack, first_backfill):
    assert first_backfill["states"] == dict.fromkeys(D[:4], "success")
    print(f"backfill of 4 tiny days: {first_backfill['seconds']:.0f} s")
    rows = stack["sql"](
        "SELECT dr.logical_date, ti.start_date FROM task_instance ti JOIN dag_run dr "
        "ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
        "WHERE ti.dag_id = %s AND ti.task_id = 'compute_metrics' AND dr.run_type = 'backfill' "
        "ORDER BY ti.start_date", DAG_ID)
    assert [ld.date().isoformat() for ld, _ in rows] == D[:4]
    assert [_summary(stack, d)["run"]["baseline_days"] for d in D[:4]] == [0, 1, 2, 3]
    assert all(_summary(stack, d)["baseline_missing_days"] == [] for d in D[:4])
    assert [len(stack["mail"].reports(d)) for d in D[:4]] == [1, 1, 1, 1]


def test_unpausing_reports_nothing_for_the_past_day_it_schedules(stack, first_backfill):
    scheduled = stack["sql"]("SELECT logical_date, state FROM dag_run WHERE dag_id = %s AND run_type = 'scheduled'",
                             DAG_ID)
    assert scheduled, "unpausing created no scheduled run"
    yesterday = scheduled[0][0].date().isoformat()
    deadline = time.monotonic() + 120
    while not any(yesterday in s for s in stack["mail"].subjects(OPS)) and time.monotonic() < deadline:
        time.sleep(2)
    assert f"[venue-risk] NOTICE {yesterday}: run skipped, nothing reported" in stack["mail"].subjects(OPS)
    assert not (stack["home"] / "reports" / yesterday).exists()
    assert not stack["mail"].reports(yesterday)


@pytest.fixture(scope="module")
def corrupted_day(stack, first_backfill):
    clean = _trades(stack, D[4]).read_bytes()
    frame = pl.read_parquet(_trades(stack, D[4]))
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.col("trade_id").first())
                       .otherwise(pl.col("trade_id")).alias("trade_id")).write_parquet(_trades(stack, D[4]))
    started = _backfill(stack, D[4], D[5])
    states = _wait_finished(stack, D[4:])
    return {"states": states, "clean": clean, "seconds": time.monotonic() - started}


def test_failed_day_alerts_operations_and_the_next_report_names_it(stack, corrupted_day):
    assert corrupted_day["states"] == {D[4]: "failed", D[5]: "success"}
    alerts = [m for m in stack["mail"].messages if OPS in str(m.get("To", "")) and D[4] in str(m["Subject"])]
    assert [str(m["Subject"]) for m in alerts] == [f"[venue-risk] ALERT {D[4]}: task validate failed"]
    assert "trade_id" in alerts[0].get_body(("plain", "html")).get_content()
    assert not stack["mail"].reports(D[4])
    summary = _summary(stack, D[5])
    assert summary["baseline_missing_days"] == [D[4]] and summary["run"]["baseline_days"] == 4
    page_one = (stack["home"] / "reports" / D[5] / f"venue-risk-{D[5]}.html").read_text()
    assert "Baseline gap" in page_one and D[4] in page_one
    assert len(stack["mail"].reports(D[5])) == 1


@pytest.fixture(scope="module")
def rerun_day_two(stack, corrupted_day):
    before = _summary(stack, D[1])
    frame = pl.read_parquet(_trades(stack, D[1]))
    frame.filter(pl.col("liquidation_id").is_not_null() | (pl.int_range(pl.len()) % 10 != 3)) \
         .write_parquet(_trades(stack, D[1]))
    _backfill(stack, D[1], D[1], "--reprocess-behavior", "completed")
    deadline = time.monotonic() + 600
    while len(stack["mail"].reports(D[1])) < 2 and time.monotonic() < deadline:
        time.sleep(5)
    return {"states": _wait_finished(stack, [D[1]]), "before": before}


def test_rerun_with_changed_input_mails_revised_and_marks_later_days_stale(stack, rerun_day_two):
    assert rerun_day_two["states"] == {D[1]: "success"}
    mails = stack["mail"].reports(D[1])
    assert len(mails) == 2 and "REVISED" in str(mails[1]["Subject"]) and "REVISED" not in str(mails[0]["Subject"])
    body = mails[1].get_body(("plain", "html")).get_content()
    assert "REVISED" in body and "Volume" in body  # the changed figures are listed
    after = _summary(stack, D[1])
    assert after["figures"] != rerun_day_two["before"]["figures"]
    assert [d for d in D if "stale_baseline_days" in _summary_or_empty(stack, d)] == [D[2], D[3], D[5]]
    assert all(_summary(stack, d)["stale_baseline_days"] == [D[1]] for d in (D[2], D[3], D[5]))


def _summary_or_empty(stack, day: str) -> dict:
    path = stack["home"] / "reports" / day / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_reports_page_behind_login_shows_failed_missing_and_stale_days(stack, rerun_day_two):
    base = stack["base_url"]
    pdf = f"{base}/venue-risk/files/{D[5]}/venue-risk-{D[5]}.pdf"
    for url in (f"{base}/venue-risk/", pdf, f"{base}/venue-risk/files/{D[5]}/summary.json"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401, url
    password = json.loads(stack["passwords"].read_text())["risk"]
    with Browser() as browser:
        browser.goto(f"{base}/venue-risk/")
        assert "/auth/login" in browser.url()  # an anonymous browser is sent to the login form
        assert "Venue risk reports" not in browser.html()
        browser.login(base, f"{base}/venue-risk/", "risk", password)
        rows = browser.evaluate("""Array.from(document.querySelectorAll('tr[data-day]')).map(r =>
            [r.dataset.day, r.dataset.run, r.dataset.delivery, r.innerText])""")
        by_day = {day: (run, delivery, text) for day, run, delivery, text in rows}
        assert by_day[D[4]][:2] == ("failed", "not sent")
        assert "trade_id" in by_day[D[4]][2]
        assert by_day[D[1]][:2] == ("succeeded", "revised")
        assert by_day[D[0]][:2] == ("succeeded", "sent")
        assert "stale" in by_day[D[2]][2] and D[1] in by_day[D[2]][2]
        assert "missing from baseline" in by_day[D[5]][2]
        later = (DAYS[-1] + dt.timedelta(days=1)).isoformat()
        assert by_day[later][0] == "missing"  # never run
        assert str(stack["home"]) not in browser.html()
        browser.goto(pdf)
        assert browser.evaluate("document.contentType") == "application/pdf"
        head = browser.evaluate(f"fetch({json.dumps(pdf)}).then(r => r.text()).then(t => t.slice(0, 5))")
        assert head == "%PDF-"


def test_reprocess_clears_stale_marks_and_gaps(stack, corrupted_day, rerun_day_two):
    _trades(stack, D[4]).write_bytes(corrupted_day["clean"])  # the venue fixes day 5's export
    mails_before = len(stack["mail"].reports(D[1]))
    done = subprocess.run([str(BIN / "venue-risk"), "reprocess", "--from", D[1]], env=stack["env"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [d for d in D if _summary(stack, d).get("stale_baseline_days")]
    assert _summary(stack, D[5])["baseline_missing_days"] == [] and _summary(stack, D[5])["run"]["baseline_days"] == 5
    assert len(stack["mail"].reports(D[1])) == mails_before  # an identical recomputation mails nothing
    assert len(stack["mail"].reports(D[4])) == 1  # the fixed day is reported once
