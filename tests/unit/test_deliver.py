"""Delivery: a real SMTP server (aiosmtpd on localhost, a free port), a send callable through
smtplib, the once-per-date ledger, force, dry run and the outbox."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import socket
import types
from pathlib import Path

import pytest

from venue_risk.deliver import build_message, deliver, read_ledger, send_alert

DAY = "2026-11-05"
PDF = b"%PDF-1.7\n% fake report bytes \x00\x01\x02\xff\n%%EOF\n"


class Collector:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
                              or envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    handler = Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield handler, controller.hostname, controller.port
    finally:
        controller.stop()


@pytest.fixture
def report_dir(tmp_path) -> Path:
    d = tmp_path / "reports" / DAY
    d.mkdir(parents=True)
    (d / f"venue-risk-{DAY}.pdf").write_bytes(PDF)
    (d / "summary.json").write_text(json.dumps({
        "date": DAY, "overall_status": "red", "venue_name": "Test <Venue>",
        "narrative": "7 liquidations, 4.37M USDT filled.",
        "figures": {
            "liquidation_notional": {"label": "Liquidated notional", "value": 4369600.0, "display": "4.37M USDT",
                                     "baseline": 1.5e6, "baseline_display": "1.50M USDT", "status": "amber",
                                     "threshold": "amber above 2x"},
            "slippage_p95_bps": {"label": "Slippage p95", "value": 49.4, "display": "49.4 bps",
                                 "baseline": 12.0, "baseline_display": "12.0 bps", "status": "red",
                                 "threshold": "red above 40 bps <b>"},
        },
    }))
    return d


def smtp_sender(host: str, port: int):
    def send(message) -> None:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.send_message(message)
    return send


def _parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_build_message(report_dir):
    msg = build_message(report_dir, DAY, "red", ["a@example.com", "b@example.com"], "risk@example.com")
    assert msg["Subject"] == "[venue-risk] 2026-11-05 risk report: RED"
    assert msg["To"] == "a@example.com, b@example.com"
    assert msg["From"] == "risk@example.com"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "4.37M USDT" in text and "49.4 bps" in text and "RED" in text
    assert "4.37M USDT" in html and "Test &lt;Venue&gt;" in html and "above 40 bps &lt;b&gt;" in html
    [att] = list(msg.iter_attachments())
    assert att.get_content_type() == "application/pdf"
    assert att.get_filename() == f"venue-risk-{DAY}.pdf"
    assert att.get_content() == PDF
    # status defaults to the one recorded in summary.json
    assert build_message(report_dir, DAY, None, ["a@example.com"], "x@example.com")["Subject"].endswith("RED")


def test_build_message_needs_the_pdf(tmp_path):
    with pytest.raises(FileNotFoundError, match="venue-risk-2026-11-05.pdf"):
        build_message(tmp_path, DAY, "green", ["a@example.com"], "x@example.com")


def test_deliver_over_smtp_once_per_date(smtp_server, report_dir, tmp_path):
    handler, host, port = smtp_server
    send = smtp_sender(host, port)
    ledger, outbox = tmp_path / "ledger.json", tmp_path / "outbox"
    recipients = ["risk-committee@example.com", "cro@example.com"]

    first = deliver(report_dir, DAY, recipients, send, outbox, ledger, status="red",
                    sender_address="venue-risk@example.com")
    assert first["status"] == "sent" and first["via"] == "smtp"
    json.dumps(first)
    assert len(handler.messages) == 1
    mail_from, rcpt, raw = handler.messages[0]
    assert mail_from == "venue-risk@example.com"
    assert sorted(rcpt) == sorted(recipients)
    msg = _parse(raw)
    assert msg["Subject"] == "[venue-risk] 2026-11-05 risk report: RED"
    [att] = list(msg.iter_attachments())
    assert att.get_content_type() == "application/pdf"
    assert att.get_filename() == f"venue-risk-{DAY}.pdf"
    assert att.get_content() == (report_dir / f"venue-risk-{DAY}.pdf").read_bytes()
    entry = read_ledger(ledger)[DAY]
    assert entry["recipients"] == recipients and entry["via"] == "smtp"
    assert entry["subject"] == msg["Subject"] and entry["sent_at"]

    # the same date again: nothing sent
    second = deliver(report_dir, DAY, recipients, send, outbox, ledger, status="red")
    assert second["status"] == "skipped"
    assert len(handler.messages) == 1

    # forced: sent again, and the ledger keeps the earlier send
    third = deliver(report_dir, DAY, recipients, send, outbox, ledger, force=True, status="red")
    assert third["status"] == "sent" and third["forced"] is True
    assert len(handler.messages) == 2
    assert read_ledger(ledger)[DAY]["previous"][0]["sent_at"] == entry["sent_at"]
    assert not outbox.exists()


def test_dry_run_sends_and_records_nothing(smtp_server, report_dir, tmp_path):
    handler, host, port = smtp_server
    ledger = tmp_path / "ledger.json"
    out = deliver(report_dir, DAY, ["a@example.com"], smtp_sender(host, port), tmp_path / "outbox",
                  ledger, dry_run=True)
    assert out["status"] == "dry_run"
    assert out["subject"] == "[venue-risk] 2026-11-05 risk report: RED"
    assert handler.messages == []
    assert not ledger.exists()


def test_failed_send_is_not_recorded(report_dir, tmp_path):
    def broken(message):
        raise smtplib.SMTPServerDisconnected("connection lost")

    ledger = tmp_path / "ledger.json"
    with pytest.raises(smtplib.SMTPServerDisconnected):
        deliver(report_dir, DAY, ["a@example.com"], broken, tmp_path / "outbox", ledger)
    assert read_ledger(ledger) == {}


def test_outbox_when_no_smtp(report_dir, tmp_path):
    ledger, outbox = tmp_path / "ledger.json", tmp_path / "outbox"
    out = deliver(report_dir, DAY, ["a@example.com"], None, outbox, ledger, status="amber")
    assert out["status"] == "outbox" and out["via"] == "outbox"
    eml = outbox / f"{DAY}-venue-risk.eml"
    assert out["path"] == str(eml)
    msg = _parse(eml.read_bytes())
    assert msg["Subject"] == "[venue-risk] 2026-11-05 risk report: AMBER"
    assert msg["To"] == "a@example.com"
    [att] = list(msg.iter_attachments())
    assert att.get_content() == PDF
    assert read_ledger(ledger)[DAY]["via"] == "outbox"
    assert [p.name for p in outbox.iterdir()] == [eml.name]  # no temp files left
    # once per date holds for the outbox too
    assert deliver(report_dir, DAY, ["a@example.com"], None, outbox, ledger)["status"] == "skipped"


def test_send_alert_falls_back_to_outbox(tmp_path):
    settings = types.SimpleNamespace(recipients=("ops@example.com",), mail_from="venue-risk@example.com",
                                     paths=types.SimpleNamespace(outbox=tmp_path / "outbox"))

    def broken(message):
        raise OSError("no route")

    out = send_alert(DAY, "compute_metrics", "ValueError: boom", "manual__x", settings, broken)
    assert out["status"] == "outbox" and "no route" in out["send_error"]
    msg = _parse(Path(out["path"]).read_bytes())
    assert msg["Subject"] == "[venue-risk] ALERT 2026-11-05: task compute_metrics failed"
    assert "ValueError: boom" in msg.get_content()


def test_send_alert_over_smtp(smtp_server, tmp_path):
    handler, host, port = smtp_server
    settings = types.SimpleNamespace(recipients=("ops@example.com",), mail_from="venue-risk@example.com",
                                     paths=types.SimpleNamespace(outbox=tmp_path / "outbox"))
    out = send_alert(DAY, "load", "disk full", "r1", settings, smtp_sender(host, port))
    assert out["status"] == "sent"
    assert _parse(handler.messages[0][2])["Subject"].startswith("[venue-risk] ALERT 2026-11-05")
