"""Fault injection for delivery, with real components: the real report renderer (WeasyPrint) and
atomic writer with a full disk simulated at the file write, a real SMTP server (aiosmtpd on
127.0.0.1, a free port) that drops the connection during DATA, and a connection URI with an
unencoded '#' in the password."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import errno
import json
import smtplib
import socket
from pathlib import Path

import polars as pl
import pytest

from venue_risk.deliver import SmtpConfigError, deliver, read_ledger, smtp_connection_state
from venue_risk.report import build_context, render_report

DAY = "2026-11-05"
COMMITTEE = ["risk-committee@example.com"]


# -- a scripted SMTP server (also used by tests/integration/test_delivery_airflow.py) ------------

class ScriptedHandler:
    """aiosmtpd handler: drops the connection in DATA for the first `drops` messages (the client
    never gets a reply, so the message is not delivered), then accepts. Keeps every accepted
    message and counts every DATA attempt."""

    def __init__(self, drops: int = 0):
        self.drops = drops
        self.attempts = 0
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        if self.drops > 0:
            self.drops -= 1
            server.transport.close()  # connection lost during DATA: no reply reaches the client
            return "421 connection dropped"
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content or envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScriptedServer:
    """A running aiosmtpd server on 127.0.0.1; with `login` set, AUTH (PLAIN/LOGIN, no TLS) is
    required and only that login and password are accepted."""

    def __init__(self, drops: int = 0, login: tuple[str, str] | None = None):
        from aiosmtpd.controller import Controller

        self.handler = ScriptedHandler(drops)
        self.host, self.port = "127.0.0.1", free_port()
        kwargs = {}
        if login:
            kwargs = {"authenticator": self._authenticator(login), "auth_required": True,
                      "auth_require_tls": False}
        self.controller = Controller(self.handler, hostname=self.host, port=self.port, **kwargs)

    def _authenticator(self, login: tuple[str, str]):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def check(server, session, envelope, mechanism, auth_data):
            if isinstance(auth_data, LoginPassword):
                self.handler.logins.append((auth_data.login, auth_data.password))
                ok = (auth_data.login.decode(), auth_data.password.decode()) == login
                return AuthResult(success=ok, handled=False)
            return AuthResult(success=False, handled=False)

        return check

    def __enter__(self) -> "ScriptedServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def smtplib_sender(host: str, port: int):
    def send(message) -> None:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.send_message(message)
    return send


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def pdf_attachment(raw: bytes) -> bytes:
    """The one PDF attached (by file name: SmtpHook attaches files as application/octet-stream)."""
    [att] = [p for p in parse(raw).iter_attachments() if (p.get_filename() or "").endswith(".pdf")]
    return att.get_content()


# -- a real report (minimal context, real WeasyPrint) -------------------------------------------

def context(status_figure: str = "green") -> dict:
    rows = pl.DataFrame({"figure": ["liquidation_count"], "label": ["Liquidations"], "value": [3.0],
                         "baseline": [2.0], "baseline_days": [5], "status": [status_figure],
                         "threshold": ["amber above 2x"], "unit": ["count"]})
    return build_context(date=dt.date(2026, 11, 5), venue_name="Fault Venue", frames={}, summary_rows=rows,
                         history=pl.DataFrame(), methodology={}, run_meta={"run_id": "faults"},
                         data_quality={"status": "passed", "checks": []}, pseudonymize_key=b"k")


def _disk_full_on(monkeypatch, name_part: str) -> list[Path]:
    """Path.write_bytes / write_text of a temp file whose name contains `name_part` writes half of
    the data, then fails with ENOSPC, as a full disk does. Returns the temp files hit."""
    hit: list[Path] = []
    real_bytes, real_text = Path.write_bytes, Path.write_text

    def full(path: Path, data, real, *args, **kwargs):
        if name_part in path.name and path.name.endswith(".tmp"):
            hit.append(path)
            real(path, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_bytes", lambda self, data: full(self, data, real_bytes))
    monkeypatch.setattr(Path, "write_text",
                        lambda self, data, *a, **k: full(self, data, real_text, *a, **k))
    return hit


def _deliver(out: Path, tmp_path: Path, send=None) -> dict:
    return deliver(out, DAY, COMMITTEE, send, tmp_path / "outbox", tmp_path / "ledger.json")


# -- a. a report write that fails (disk full) ---------------------------------------------------

def test_disk_full_while_writing_the_pdf_leaves_no_pdf_and_nothing_sent(monkeypatch, tmp_path):
    out = tmp_path / "reports" / DAY
    hit = _disk_full_on(monkeypatch, ".pdf.")
    with pytest.raises(OSError) as err:
        render_report(context(), out)
    assert err.value.errno == errno.ENOSPC and hit  # the fault really hit the PDF write, midway
    assert not (out / f"venue-risk-{DAY}.pdf").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp file left
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match=f"venue-risk-{DAY}.pdf"):
        _deliver(out, tmp_path, send=lambda m: pytest.fail("nothing may be sent"))
    assert read_ledger(tmp_path / "ledger.json") == {}
    assert not (tmp_path / "outbox").exists()


def test_failed_rebuild_never_leaves_a_stale_pdf_beside_a_new_summary(monkeypatch, tmp_path):
    """A good report exists; the day is rebuilt (new status) and the disk fills while writing
    summary.json. The old code wrote the new PDF before summary.json (a new PDF beside a stale
    summary); now the PDF is written last and the stale PDF removed first, so there is no PDF
    and delivery fails instead of mailing a report that does not match its summary."""
    out = tmp_path / "reports" / DAY
    render_report(context("green"), out)
    assert json.loads((out / "summary.json").read_text())["overall_status"] == "green"
    _disk_full_on(monkeypatch, "summary.json")
    with pytest.raises(OSError):
        render_report(context("red"), out)
    monkeypatch.undo()
    assert not (out / f"venue-risk-{DAY}.pdf").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(FileNotFoundError):
        _deliver(out, tmp_path)
    assert read_ledger(tmp_path / "ledger.json") == {}
    # disk freed: the rebuild completes and the report is consistent
    paths = render_report(context("red"), out)
    assert json.loads(paths["summary"].read_text())["overall_status"] == "red"
    assert _deliver(out, tmp_path)["subject"].endswith("RED")


def test_render_failure_before_any_write_keeps_the_previous_report(monkeypatch, tmp_path):
    """The PDF is rendered in memory before anything is written: a render error touches nothing."""
    import venue_risk.report.render as render

    out = tmp_path / "reports" / DAY
    first = render_report(context(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(render, "render_pdf_bytes", lambda html: (_ for _ in ()).throw(RuntimeError("font")))
    with pytest.raises(RuntimeError):
        render_report(context("red"), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert first["pdf"].read_bytes().startswith(b"%PDF")


# -- b. an SMTP server that drops the connection during DATA ------------------------------------

def test_smtp_drop_during_data_records_nothing_and_the_retry_sends_exactly_once(tmp_path):
    out = tmp_path / "reports" / DAY
    render_report(context("amber"), out)
    ledger = tmp_path / "ledger.json"
    with ScriptedServer(drops=1) as server:
        send = smtplib_sender(server.host, server.port)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            _deliver(out, tmp_path, send)
        assert server.handler.attempts == 1 and server.handler.messages == []
        assert read_ledger(ledger) == {}  # no `sent`: the retry must send

        retry = _deliver(out, tmp_path, send)
        assert retry["status"] == "sent" and retry["state"] == "sent"
        assert _deliver(out, tmp_path, send)["status"] == "skipped"  # and only once
    assert server.handler.attempts == 2
    [(_, rcpt, raw)] = server.handler.messages
    assert rcpt == COMMITTEE
    assert parse(raw)["Subject"] == f"[venue-risk] {DAY} risk report: AMBER"
    assert pdf_attachment(raw) == (out / f"venue-risk-{DAY}.pdf").read_bytes()
    assert read_ledger(ledger)[DAY]["state"] == "sent"
    assert not (tmp_path / "outbox").exists()  # never a silent fall-back to the outbox


# -- c. '#' in the password ---------------------------------------------------------------------

def test_hash_in_password_is_a_clear_error_without_the_password():
    """Airflow reports this URI as an undefined connection (the old DAG then used the outbox)."""
    with pytest.raises(SmtpConfigError) as err:
        smtp_connection_state("smtp://user:pa#ss@127.0.0.1:2525", lambda conn_id: None)
    text = str(err.value)
    assert text.startswith("AIRFLOW_CONN_SMTP_DEFAULT cannot be parsed as a URI")
    assert "'#'" in text and "# as %23" in text
    assert "pa#ss" not in text and "ss@127" not in text


def test_percent_encoded_hash_is_a_configured_connection():
    seen = []
    state = smtp_connection_state("smtp://user:pa%23ss@127.0.0.1:2525?disable_ssl=true",
                                  lambda conn_id: seen.append(conn_id) or type("C", (), {"host": "127.0.0.1"})())
    assert state == "configured" and seen == ["smtp_default"]
