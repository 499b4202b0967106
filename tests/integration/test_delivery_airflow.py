"""Delivery through the DAG's own code: `_smtp_sender` (Airflow's connection lookup + SmtpHook, the
connection from AIRFLOW_CONN_SMTP_DEFAULT) against a real SMTP server on 127.0.0.1, the failure
callback `_alert_on_failure`, the pseudonym key from the Airflow variable, and one real pipeline
day whose report write fails (disk full) and is then built and mailed once."""

from __future__ import annotations

import datetime as dt
import errno
import importlib.util
import json
import smtplib
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_delivery_faults import ScriptedServer, _disk_full_on, context, parse, pdf_attachment  # noqa: E402

from venue_risk.deliver import SmtpConfigError, deliver, read_ledger  # noqa: E402
from venue_risk.report import render_report  # noqa: E402

PROJECT = Path(__file__).resolve().parents[2]
DAY = "2026-11-05"
COMMITTEE = ["risk-committee@example.com", "cro@example.com"]


@pytest.fixture(scope="module")
def dag_module():
    """dags/venue_risk_daily.py, imported as Airflow parses it (tests/conftest.py set Airflow up)."""
    spec = importlib.util.spec_from_file_location("venue_risk_daily_under_test",
                                                  PROJECT / "dags" / "venue_risk_daily.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smtp_uri(server: ScriptedServer, userinfo: str = "", extra: str = "") -> str:
    return (f"smtp://{userinfo}{server.host}:{server.port}?disable_ssl=true&disable_tls=true"
            f"&from_email=venue-risk%40example.com&timeout=10{extra}")


@pytest.fixture
def report_dir(tmp_path) -> Path:
    out = tmp_path / "reports" / DAY
    render_report(context("red"), out)
    return out


def _deliver(report_dir: Path, tmp_path: Path, send, **kw) -> dict:
    return deliver(report_dir, DAY, COMMITTEE, send, tmp_path / "outbox", tmp_path / "ledger.json",
                   sender_address="venue-risk@example.com", **kw)


# -- absent vs configured-but-unusable, through Airflow -----------------------------------------

def test_no_connection_anywhere_is_the_outbox(dag_module, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    assert dag_module._smtp_sender() is None


def test_hash_in_password_fails_clearly_instead_of_the_outbox(dag_module, monkeypatch, report_dir, tmp_path):
    """The reported bug: Airflow calls this connection undefined, the old _smtp_sender returned
    None and the day went to the outbox, recorded as delivered."""
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", "smtp://user:pa#ss@127.0.0.1:2525")
    with pytest.raises(SmtpConfigError) as err:
        dag_module._smtp_sender()
    text = str(err.value)
    assert "AIRFLOW_CONN_SMTP_DEFAULT cannot be parsed as a URI" in text and "%23" in text
    assert "pa#ss" not in text
    assert read_ledger(tmp_path / "ledger.json") == {} and not (tmp_path / "outbox").exists()


def test_percent_encoded_password_authenticates_and_delivers(dag_module, monkeypatch, report_dir, tmp_path):
    """'#' as %23: Airflow decodes it, SmtpHook logs in (AUTH without TLS on the test server) with
    the real password 'pa#ss', and the report arrives with its PDF."""
    with ScriptedServer(login=("user", "pa#ss")) as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_uri(server, "user:pa%23ss@"))
        send = dag_module._smtp_sender()
        assert send is not None
        result = _deliver(report_dir, tmp_path, send)
    assert result["status"] == "sent"
    assert server.handler.logins == [(b"user", b"pa#ss")]
    [(_, rcpt, raw)] = server.handler.messages
    assert sorted(rcpt) == sorted(COMMITTEE)
    assert pdf_attachment(raw) == (report_dir / f"venue-risk-{DAY}.pdf").read_bytes()


def test_wrong_password_is_a_failure_not_the_outbox(dag_module, monkeypatch, report_dir, tmp_path):
    with ScriptedServer(login=("user", "pa#ss")) as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_uri(server, "user:wrong@", "&retry_limit=0"))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            _deliver(report_dir, tmp_path, dag_module._smtp_sender())
    assert server.handler.messages == []
    assert read_ledger(tmp_path / "ledger.json") == {} and not (tmp_path / "outbox").exists()


# -- b. a drop during DATA through SmtpHook, then the retry ------------------------------------

def test_drop_during_data_through_smtp_hook_then_retry_sends_once(dag_module, monkeypatch, report_dir, tmp_path):
    with ScriptedServer(drops=1) as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_uri(server))
        with pytest.raises(smtplib.SMTPServerDisconnected):
            _deliver(report_dir, tmp_path, dag_module._smtp_sender())
        assert server.handler.messages == [] and read_ledger(tmp_path / "ledger.json") == {}
        # the task's retry: a fresh sender, as a new try of the deliver task builds one
        assert _deliver(report_dir, tmp_path, dag_module._smtp_sender())["status"] == "sent"
        assert _deliver(report_dir, tmp_path, dag_module._smtp_sender())["status"] == "skipped"
    assert server.handler.attempts == 2
    [(_, _, raw)] = server.handler.messages
    assert parse(raw)["Subject"] == f"[venue-risk] {DAY} risk report: RED"
    assert pdf_attachment(raw) == (report_dir / f"venue-risk-{DAY}.pdf").read_bytes()
    assert read_ledger(tmp_path / "ledger.json")[DAY]["state"] == "sent"


def test_outbox_day_is_sent_once_the_connection_exists(dag_module, monkeypatch, report_dir, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    assert _deliver(report_dir, tmp_path, dag_module._smtp_sender())["status"] == "outbox"
    with ScriptedServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_uri(server))
        assert _deliver(report_dir, tmp_path, dag_module._smtp_sender())["status"] == "sent"
        assert _deliver(report_dir, tmp_path, dag_module._smtp_sender())["status"] == "skipped"
        assert _deliver(report_dir, tmp_path, dag_module._smtp_sender(), force=True)["status"] == "sent"
    assert len(server.handler.messages) == 2


# -- e. failure alerts through the DAG's callback -----------------------------------------------

def _failure_context(task_id: str = "extract") -> dict:
    return {"task_instance": types.SimpleNamespace(task_id=task_id),
            "logical_date": dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc),
            "exception": ValueError("landing failed: trades missing"), "run_id": "scheduled__x"}


def test_alert_callback_mails_operations_never_the_committee(dag_module, monkeypatch, venue_home):
    monkeypatch.setenv("VENUE_RISK_RECIPIENTS", ",".join(COMMITTEE))
    monkeypatch.setenv("VENUE_RISK_ALERT_RECIPIENTS", "ops@example.com,oncall@example.com")
    with ScriptedServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_uri(server))
        dag_module._alert_on_failure(_failure_context())
    [(_, rcpt, raw)] = server.handler.messages
    assert sorted(rcpt) == ["oncall@example.com", "ops@example.com"]
    assert not any(a in raw.decode() for a in COMMITTEE)
    msg = parse(raw)
    assert msg["Subject"] == f"[venue-risk] ALERT {DAY}: task extract failed"
    assert "trades missing" in msg.get_body(("html", "plain")).get_content()
    assert not (venue_home / "outbox").exists()


def test_alert_callback_without_alert_recipients_writes_outbox(dag_module, monkeypatch, venue_home):
    monkeypatch.delenv("VENUE_RISK_ALERT_RECIPIENTS", raising=False)
    monkeypatch.setenv("VENUE_RISK_RECIPIENTS", ",".join(COMMITTEE))
    with ScriptedServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_uri(server))
        dag_module._alert_on_failure(_failure_context())
    assert server.handler.messages == []  # nothing to the committee
    [alert] = sorted((venue_home / "outbox").glob(f"{DAY}-alert-extract-*.eml"))
    assert "trades missing" in parse(alert.read_bytes()).get_content()


def test_alert_callback_with_unusable_connection_still_writes_the_alert(dag_module, monkeypatch, venue_home,
                                                                        caplog):
    monkeypatch.setenv("VENUE_RISK_ALERT_RECIPIENTS", "ops@example.com")
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", "smtp://user:pa#ss@127.0.0.1:2525")
    with caplog.at_level("WARNING", logger="venue_risk.alerts"):
        dag_module._alert_on_failure(_failure_context("deliver"))
    [alert] = sorted((venue_home / "outbox").glob(f"{DAY}-alert-deliver-*.eml"))
    assert parse(alert.read_bytes())["To"] == "ops@example.com"
    assert "AIRFLOW_CONN_SMTP_DEFAULT cannot be parsed" in caplog.text and "pa#ss" not in caplog.text


# -- the pseudonym key: an Airflow variable, no constant in the code -----------------------------

def test_pseudonym_key_from_the_airflow_variable(dag_module, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_VENUE_RISK_PSEUDONYM_KEY", raising=False)
    assert dag_module._pseudonym_key() is None
    monkeypatch.setenv("AIRFLOW_VAR_VENUE_RISK_PSEUDONYM_KEY", "deployment-secret")
    assert dag_module._pseudonym_key() == b"deployment-secret"


# -- a real day: disk full while building the report, then built, pseudonym note, mailed once ----

@pytest.mark.integration
def test_pipeline_day_disk_full_then_rebuilt_and_mailed_once(dag_module, venue_home, monkeypatch):
    from pypdf import PdfReader

    from venue_risk import pipeline
    from venue_risk.schema import DATASET_NAMES
    from venue_risk.settings import Settings

    monkeypatch.delenv("VENUE_RISK_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("VENUE_RISK_RECIPIENTS", ",".join(COMMITTEE))
    day = "2026-11-01"
    settings = Settings.from_env()
    pipeline.prepare_source(day, settings)
    extracted = [pipeline.extract(day, name, settings) for name in DATASET_NAMES]
    pipeline.validate(day, extracted, settings)
    pipeline.load(day, extracted, settings)
    pipeline.store_metrics(day, pipeline.compute_metrics(day, settings), settings)
    out = venue_home / "reports" / day
    ledger = settings.paths.data / "delivery-ledger.json"

    with ScriptedServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_uri(server))
        _disk_full_on(monkeypatch, f"venue-risk-{day}.pdf.")  # the day's PDF (the methods PDF is written before it)
        with pytest.raises(OSError) as err:
            pipeline.build_report(day, extracted, settings, run_id="faults", pseudonym_key=None)
        assert err.value.errno == errno.ENOSPC
        monkeypatch.undo()  # (undoes the env too: set it again)
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_uri(server))
        monkeypatch.setenv("VENUE_RISK_RECIPIENTS", ",".join(COMMITTEE))
        monkeypatch.setenv("VENUE_RISK_HOME", str(venue_home))
        monkeypatch.delenv("VENUE_RISK_PSEUDONYM_KEY", raising=False)
        assert not (out / f"venue-risk-{day}.pdf").exists()
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
        with pytest.raises(FileNotFoundError):
            pipeline.deliver(day, settings, dag_module._smtp_sender())
        assert "sent" not in json.dumps(read_ledger(ledger))
        assert server.handler.messages == []

        report = pipeline.build_report(day, extracted, settings, run_id="faults", pseudonym_key=None)
        first = pipeline.deliver(day, settings, dag_module._smtp_sender())
        again = pipeline.deliver(day, settings, dag_module._smtp_sender())
    assert first["status"] == "sent" and again["status"] == "skipped"
    [(_, rcpt, raw)] = server.handler.messages
    assert sorted(rcpt) == sorted(COMMITTEE)
    assert pdf_attachment(raw) == Path(report["pdf"]).read_bytes()
    text = " ".join("\n".join(p.extract_text() or "" for p in PdfReader(report["pdf"]).pages).split())
    assert "no pseudonym key is configured" in text
