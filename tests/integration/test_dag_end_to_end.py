"""venue_risk_daily end to end: a real Airflow run of the DAG (dag.test, in process) for a
simulated day, a real PDF read back, a real SMTP server receiving the report through the Airflow
SMTP connection, and a rerun of the same day that changes nothing and mails nothing."""

from __future__ import annotations

import datetime as dt
import email
import json
import re
import socket
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from pypdf import PdfReader

PROJECT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 11, 2)
pytestmark = pytest.mark.integration


class _Inbox:
    def __init__(self):
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        f"smtp://127.0.0.1:{port}?disable_ssl=true&disable_tls=true&from_email=venue-risk%40example.com",
    )
    try:
        yield inbox
    finally:
        controller.stop()


def _run_dag(day: dt.date):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["venue_risk_daily"]
    return dag.test(logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc))


def _xcom_keys(run_id: str) -> set[str]:
    """The XCom keys the run's task instances pushed (metadata DB)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return set(session.scalars(select(XComModel.key).where(XComModel.run_id == run_id)))


def _pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def test_daily_run_reports_mails_once_and_is_idempotent(airflow_db, venue_home, smtp_server, monkeypatch):
    from venue_risk.report import format_figure
    from venue_risk.warehouse import day_digest

    monkeypatch.setenv("VENUE_RISK_RECIPIENTS", "risk-committee@venue.test,cro@venue.test")
    run = _run_dag(DAY)
    assert run.state == "success"
    # each task instance pushed its result as one XCom (no key-by-key copies of dict results)
    assert _xcom_keys(run.run_id) == {"return_value"}

    report = venue_home / "reports" / DAY.isoformat()
    pdf = report / f"venue-risk-{DAY.isoformat()}.pdf"
    summary = json.loads((report / "summary.json").read_text())
    assert pdf.exists() and (report / f"venue-risk-{DAY.isoformat()}.html").exists()
    assert len(PdfReader(pdf).pages) >= 4
    text = _pdf_text(pdf)
    assert DAY.isoformat() in text
    assert summary["overall_status"].upper() in text
    for figure, entry in summary["figures"].items():
        shown = format_figure(figure, entry["value"])
        assert shown in text, f"headline figure {figure} = {shown!r} not in the PDF"
    # the methods page names every family, account side included, and the versioned methods
    # document it links to was rendered beside the reports, its text the code's
    from venue_risk.methods import FAMILIES

    squash = lambda t: "".join(t.split())  # noqa: E731  (PDF text wraps lines anywhere)
    for family in FAMILIES:
        assert squash(family.title) in squash(text), f"methods page lacks {family.title!r}"
    methods_pdfs = list((venue_home / "reports" / "methods").glob("venue-risk-methods-*.pdf"))
    assert len(methods_pdfs) == 1 and methods_pdfs[0].name in squash(text)
    methods_text = _pdf_text(methods_pdfs[0])
    assert all(squash(f.title) in squash(methods_text) for f in FAMILIES)

    # Mailed once, through the Airflow SMTP connection, to the configured recipients.
    assert len(smtp_server.messages) == 1
    rcpts, msg = smtp_server.messages[0]
    assert sorted(rcpts) == ["cro@venue.test", "risk-committee@venue.test"]
    assert DAY.isoformat() in msg["Subject"]
    assert summary["overall_status"].upper() in msg["Subject"].upper()
    attachments = [p for p in msg.iter_attachments() if p.get_filename() == pdf.name]
    assert len(attachments) == 1 and attachments[0].get_content() == pdf.read_bytes()
    # the long tables went out too, through the Airflow SMTP connection, byte for byte
    csvs = {p.get_filename(): p.get_payload(decode=True) for p in msg.iter_attachments()
            if p.get_filename().endswith(".csv")}
    assert csvs and csvs == {f.name: f.read_bytes() for f in (report / "tables").glob("*.csv")}

    warehouse_before = day_digest(venue_home / "data" / "warehouse.duckdb", DAY)
    assert {"trades", "liquidations", "slippage_by_path", "venue_figures"} <= set(warehouse_before)

    # The same day again: identical warehouse contents and figures, and no second email.
    rerun = _run_dag(DAY)
    assert rerun.state == "success"
    assert day_digest(venue_home / "data" / "warehouse.duckdb", DAY) == warehouse_before
    summary_again = json.loads((report / "summary.json").read_text())
    strip = lambda s: {k: v for k, v in s.items() if k not in ("run", "run_meta", "generated_at")}
    assert strip(summary_again) == strip(summary)
    assert len(smtp_server.messages) == 1


def test_failed_day_alerts_and_loads_nothing(airflow_db, venue_home, monkeypatch):
    """A files source whose trades partition is missing: the run fails at prepare_source (which
    names every missing partition at once, before anything is extracted), the failure callback
    writes an alert naming the task and the problem, and no report or warehouse exists."""
    from venue_risk.simulate import simulate

    root = venue_home / "exports"
    simulate("tiny", DAY, 1, root)
    for f in (root / "trades" / f"date={DAY.isoformat()}").iterdir():
        f.unlink()
    monkeypatch.setenv("VENUE_RISK_SOURCE", "files")
    monkeypatch.setenv("VENUE_RISK_FILES_ROOT", str(root))
    run = _run_dag(DAY)
    assert run.state == "failed"
    alerts = sorted((venue_home / "outbox").glob(f"{DAY.isoformat()}-alert-*.eml"))
    assert alerts, "the failure callback wrote no alert"
    alert = email.message_from_bytes(alerts[0].read_bytes(), policy=policy.default)
    body = alert.get_body(("plain",)).get_content()
    assert DAY.isoformat() in alert["Subject"] and "prepare_source" in body
    assert "'trades'" in body and f"no partition for {DAY.isoformat()} of 1 carried dataset(s)" in body
    assert not (venue_home / "reports" / DAY.isoformat()).exists()
    assert not (venue_home / "data" / "warehouse.duckdb").exists()
