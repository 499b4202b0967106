"""Delivery: a real SMTP server (aiosmtpd on localhost, a free port), a send callable through
smtplib, the once-per-date ledger (states sent / outbox), force, dry run, the outbox, the SMTP
connection state (absent / configured / unusable) and failure alerts to the operations list."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import socket
import types
from pathlib import Path

import pytest

from venue_risk.deliver import (
    SmtpConfigError,
    SmtpLookupError,
    build_message,
    deliver,
    entry_state,
    read_ledger,
    send_alert,
    smtp_connection_state,
)

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


def test_methods_attached_on_request_through_smtp(smtp_server, report_dir, tmp_path, monkeypatch):
    """pipeline.deliver(attach_methods=True) attaches the methods PDF summary.json names (its link
    relative to the report's folder), beside the report; without the request only the report."""
    from venue_risk import pipeline
    from venue_risk.settings import Settings

    handler, host, port = smtp_server
    methods = report_dir.parent / "methods" / "venue-risk-methods-1.2.3.pdf"
    methods.parent.mkdir()
    methods.write_bytes(b"%PDF-1.7\n% methods\n%%EOF\n")
    summary = json.loads((report_dir / "summary.json").read_text())
    summary["methods"] = {"version": "1.2.3", "files": {"pdf": {"name": methods.name,
                                                               "link": "../methods/" + methods.name}}}
    (report_dir / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setenv("VENUE_RISK_HOME", str(tmp_path))
    settings = Settings.from_env()
    result = pipeline.deliver(DAY, settings, smtp_sender(host, port), attach_methods=True)
    assert result["status"] == "sent"
    msg = _parse(handler.messages[-1][2])
    assert [a.get_filename() for a in msg.iter_attachments()] == [f"venue-risk-{DAY}.pdf", methods.name]
    assert list(msg.iter_attachments())[1].get_content() == methods.read_bytes()
    assert methods.name in msg.get_body(("plain",)).get_content()
    # not requested: the report alone (forced, the day was sent)
    pipeline.deliver(DAY, settings, smtp_sender(host, port), force=True)
    assert [a.get_filename() for a in _parse(handler.messages[-1][2]).iter_attachments()] == [
        f"venue-risk-{DAY}.pdf"]
    # requested but gone: an error naming the file, nothing sent
    methods.unlink()
    with pytest.raises(FileNotFoundError, match="venue-risk-methods-1.2.3.pdf"):
        pipeline.deliver(DAY, settings, smtp_sender(host, port), force=True, attach_methods=True)
    assert len(handler.messages) == 2


def test_csv_tables_attached_within_the_mail_budget(smtp_server, report_dir, tmp_path, monkeypatch):
    """The report's tables/*.csv go out with the mail, smallest first, within the size budget; a
    table over it stays beside the report and the mail names it with its size (never dropped
    silently)."""
    from venue_risk import pipeline
    from venue_risk.settings import Settings

    handler, host, port = smtp_server
    tables = report_dir / "tables"
    tables.mkdir()
    (tables / "small.csv").write_text("a,b\n1,2\n")
    (tables / "medium.csv").write_text("a,b\n" + "1,2\n" * 20)
    (tables / "huge.csv").write_text("a,b\n" + "1,2\n" * 400)
    monkeypatch.setattr(pipeline, "MAIL_CSV_BUDGET_BYTES", 200)  # small + medium fit, huge does not
    monkeypatch.setenv("VENUE_RISK_HOME", str(tmp_path))
    pipeline.deliver(DAY, Settings.from_env(), smtp_sender(host, port))
    msg = _parse(handler.messages[-1][2])
    atts = {a.get_filename(): a for a in msg.iter_attachments()}
    assert list(atts) == [f"venue-risk-{DAY}.pdf", "small.csv", "medium.csv"]
    assert atts["medium.csv"].get_content_type() == "text/csv"
    assert atts["medium.csv"].get_payload(decode=True) == (tables / "medium.csv").read_bytes()
    body = msg.get_body(("plain",)).get_content()
    assert "Not attached (over the mail's size budget)" in body and "huge.csv (0.0 MB)" in body
    assert "huge.csv" in msg.get_body(("html",)).get_content()


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


def alert_settings(tmp_path, alert_recipients=("ops@example.com",)):
    return types.SimpleNamespace(recipients=("risk-committee@example.com", "cro@example.com"),
                                 alert_recipients=alert_recipients, mail_from="venue-risk@example.com",
                                 paths=types.SimpleNamespace(outbox=tmp_path / "outbox"))


def test_send_alert_falls_back_to_outbox(tmp_path):
    settings = alert_settings(tmp_path)

    def broken(message):
        raise OSError("no route")

    out = send_alert(DAY, "compute_metrics", "ValueError: boom", "manual__x", settings, broken)
    assert out["status"] == "outbox" and "no route" in out["send_error"]
    assert out["reason"] == "sending through the SMTP connection failed"
    msg = _parse(Path(out["path"]).read_bytes())
    assert msg["Subject"] == "[venue-risk] ALERT 2026-11-05: task compute_metrics failed"
    assert "ValueError: boom" in msg.get_content()


def test_send_alert_over_smtp(smtp_server, tmp_path):
    handler, host, port = smtp_server
    settings = alert_settings(tmp_path)
    out = send_alert(DAY, "load", "disk full", "r1", settings, smtp_sender(host, port))
    assert out["status"] == "sent"
    assert _parse(handler.messages[0][2])["Subject"].startswith("[venue-risk] ALERT 2026-11-05")



# -- alerts go to the operations list, never the committee --------------------------------------

def test_alert_goes_to_operations_never_to_the_committee(smtp_server, tmp_path):
    handler, host, port = smtp_server
    settings = alert_settings(tmp_path, alert_recipients=("ops@example.com", "oncall@example.com"))
    out = send_alert(DAY, "deliver", "SMTPServerDisconnected", "r1", settings, smtp_sender(host, port))
    assert out["status"] == "sent" and out["recipients"] == ["ops@example.com", "oncall@example.com"]
    [(_, rcpt, raw)] = handler.messages
    assert sorted(rcpt) == ["oncall@example.com", "ops@example.com"]
    assert "risk-committee@example.com" not in raw.decode() and "cro@example.com" not in raw.decode()
    assert not (tmp_path / "outbox").exists()


def test_alert_without_alert_recipients_goes_to_outbox_with_reason(smtp_server, tmp_path):
    """Unset VENUE_RISK_ALERT_RECIPIENTS: nothing is mailed (least of all to the committee)."""
    handler, host, port = smtp_server
    out = send_alert(DAY, "extract", "boom", "r1", alert_settings(tmp_path, alert_recipients=()),
                     smtp_sender(host, port))
    assert handler.messages == []
    assert out["status"] == "outbox" and "VENUE_RISK_ALERT_RECIPIENTS" in out["reason"]
    msg = _parse(Path(out["path"]).read_bytes())
    assert msg["To"] is None and "boom" in msg.get_content()


def test_alert_with_unusable_connection_goes_to_outbox_with_the_error(tmp_path):
    error = "SmtpConfigError: AIRFLOW_CONN_SMTP_DEFAULT cannot be parsed as a URI: ..."
    out = send_alert(DAY, "deliver", "boom", "r1", alert_settings(tmp_path), None, connection_error=error)
    assert out["status"] == "outbox" and out["send_error"] == error
    assert out["reason"] == "the SMTP connection is configured but unusable"
    no_conn = send_alert(DAY, "deliver", "boom", "r1", alert_settings(tmp_path), None)
    assert no_conn["status"] == "outbox" and no_conn["reason"] == "no SMTP connection configured"


def test_settings_alert_recipients_from_env(monkeypatch):
    from venue_risk.settings import Settings

    monkeypatch.delenv("VENUE_RISK_ALERT_RECIPIENTS", raising=False)
    assert Settings.from_env().alert_recipients == ()
    monkeypatch.setenv("VENUE_RISK_ALERT_RECIPIENTS", " ops@example.com, ,oncall@example.com ")
    assert Settings.from_env().alert_recipients == ("ops@example.com", "oncall@example.com")


# -- the SMTP connection: absent / configured / unusable ----------------------------------------

class Conn:
    def __init__(self, host="127.0.0.1"):
        self.host = host


def _absent(conn_id):
    return None


def test_connection_absent_only_when_defined_nowhere():
    assert smtp_connection_state(None, _absent) == "absent"
    assert smtp_connection_state("", _absent) == "absent"
    assert smtp_connection_state("  ", _absent) == "absent"
    assert smtp_connection_state(None, lambda c: Conn()) == "configured"  # metadata DB / secrets backend
    assert smtp_connection_state("smtp://user:pa%23ss@127.0.0.1:2525?disable_ssl=true&from_email=a@b.c",
                                 lambda c: Conn()) == "configured"
    # a ':' in the password is fine (the login ends at the first ':')
    assert smtp_connection_state("smtp://user:pa:ss@127.0.0.1:2525", lambda c: Conn()) == "configured"
    assert smtp_connection_state('{"conn_type": "smtp", "host": "mail", "port": 25}',
                                 lambda c: Conn("mail")) == "configured"


@pytest.mark.parametrize("uri, what", [
    ("smtp://user:pa#ss@127.0.0.1:2525", "unencoded '#'"),
    ("smtp://user:pa/ss@127.0.0.1:2525", "malformed"),
    ("smtp://user:pa?ss@127.0.0.1:2525", "malformed"),
    ("smtp://user:?ss@127.0.0.1:2525", "'@' follows the host part"),
    ("smtp://user:/ss@127.0.0.1:2525", "'@' follows the host part"),
    ("user:hunter2@127.0.0.1:2525", "no scheme"),
    ("smtp://:2525", "no host"),
    ('{"conn_type": "smtp", "host": ', "not valid JSON"),
])
def test_configured_but_unparsable_connection_is_a_clear_error(uri, what):
    """Whatever Airflow would make of it (it reports such a URI as undefined): a clear error naming
    the variable and the fix, never the password, and never "absent"."""
    with pytest.raises(SmtpConfigError) as err:
        smtp_connection_state(uri, _absent)
    text = str(err.value)
    assert "AIRFLOW_CONN_SMTP_DEFAULT" in text and what in text
    secret = uri.split("user:", 1)[1].rsplit("@", 1)[0] if "user:" in uri else None
    assert uri not in text and "ss@" not in text and (secret is None or secret not in text)
    # no chained exception (urlsplit's message quotes the bad "port", i.e. part of the password)
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)
    if uri.startswith("smtp://user"):
        assert "%23" in text


def test_env_set_but_airflow_reports_undefined_is_an_error():
    with pytest.raises(SmtpConfigError, match="AIRFLOW_CONN_SMTP_DEFAULT is set but Airflow cannot read"):
        smtp_connection_state("smtp://127.0.0.1:2525", _absent)


def test_connection_lookup_error_is_not_absent():
    def broken(conn_id):
        raise ConnectionError("secrets backend timed out for smtp://user:hunter2@mail:25")

    with pytest.raises(SmtpLookupError, match="'smtp_default' could not be read: ConnectionError") as err:
        smtp_connection_state(None, broken)
    assert "hunter2" not in str(err.value)
    with pytest.raises(SmtpConfigError, match="has no host"):
        smtp_connection_state(None, lambda c: Conn(host=""))


# -- ledger states: only `sent` stops a resend --------------------------------------------------

def test_outbox_then_connection_sends_exactly_once(smtp_server, report_dir, tmp_path):
    handler, host, port = smtp_server
    ledger, outbox = tmp_path / "ledger.json", tmp_path / "outbox"
    first = deliver(report_dir, DAY, ["a@example.com"], None, outbox, ledger)
    assert first["status"] == first["state"] == "outbox"
    entry = read_ledger(ledger)[DAY]
    assert entry["state"] == "outbox" and "sent_at" not in entry

    # a later run with a connection: the day is sent, not skipped
    second = deliver(report_dir, DAY, ["a@example.com"], smtp_sender(host, port), outbox, ledger)
    assert second["status"] == "sent" and second["previous_state"] == "outbox"
    assert len(handler.messages) == 1
    entry = read_ledger(ledger)[DAY]
    assert entry["state"] == "sent" and entry["sent_at"] and entry["previous"][0]["state"] == "outbox"

    # sent: reruns (with or without a connection) skip; force resends
    assert deliver(report_dir, DAY, ["a@example.com"], smtp_sender(host, port), outbox, ledger)["status"] == "skipped"
    assert deliver(report_dir, DAY, ["a@example.com"], None, outbox, ledger)["status"] == "skipped"
    assert len(handler.messages) == 1
    forced = deliver(report_dir, DAY, ["a@example.com"], smtp_sender(host, port), outbox, ledger, force=True)
    assert forced["status"] == "sent" and forced["forced"] is True
    assert len(handler.messages) == 2


def test_outbox_entry_rewritten_when_its_file_is_gone(report_dir, tmp_path):
    ledger, outbox = tmp_path / "ledger.json", tmp_path / "outbox"
    path = Path(deliver(report_dir, DAY, ["a@example.com"], None, outbox, ledger)["path"])
    skipped = deliver(report_dir, DAY, ["a@example.com"], None, outbox, ledger)
    assert skipped["status"] == "skipped" and "not mailed" in skipped["reason"]
    path.unlink()
    assert deliver(report_dir, DAY, ["a@example.com"], None, outbox, ledger)["status"] == "outbox"
    assert path.is_file()


def test_old_ledger_entries_keep_their_meaning(smtp_server, report_dir, tmp_path):
    """Entries written before states existed: via smtp counts as sent, via outbox as outbox."""
    handler, host, port = smtp_server
    assert entry_state({"via": "smtp", "sent_at": "x"}) == "sent"
    assert entry_state({"via": "outbox", "sent_at": "x"}) == "outbox"
    assert entry_state(None) is None
    ledger = tmp_path / "ledger.json"
    old = {"sent_at": "2026-11-06T00:10:00+00:00", "recipients": ["a@example.com"], "subject": "s",
           "message_id": "<m>"}
    ledger.write_text(json.dumps({DAY: old | {"via": "smtp"}, "2026-11-04": old | {"via": "outbox"}}))
    send = smtp_sender(host, port)
    assert deliver(report_dir, DAY, ["a@example.com"], send, tmp_path / "outbox", ledger)["status"] == "skipped"
    day4 = report_dir.parent / "2026-11-04"
    day4.mkdir()
    (day4 / "venue-risk-2026-11-04.pdf").write_bytes(PDF)
    assert deliver(day4, "2026-11-04", ["a@example.com"], send, tmp_path / "outbox", ledger)["status"] == "sent"
    assert len(handler.messages) == 1


def _rewrite_summary(report_dir: Path, **changes) -> None:
    summary = json.loads((report_dir / "summary.json").read_text())
    for name, (value, display, status) in changes.items():
        summary["figures"][name].update(value=value, display=display, status=status)
    (report_dir / "summary.json").write_text(json.dumps(summary))


def test_rerun_with_changed_headline_mails_revised_identical_rerun_mails_nothing(smtp_server, report_dir,
                                                                                  tmp_path):
    """A mailed day recomputed with other headline figures is mailed again, subject marked
    REVISED, the changed figures listed (before -> after); an identical rerun mails nothing,
    and neither does a rerun that only moves a figure in its last float bits."""
    handler, host, port = smtp_server
    send = smtp_sender(host, port)
    ledger, outbox = tmp_path / "ledger.json", tmp_path / "outbox"
    args = (report_dir, DAY, ["risk-committee@example.com"], send, outbox, ledger)
    assert deliver(*args)["status"] == "sent"
    assert deliver(*args)["status"] == "skipped"
    _rewrite_summary(report_dir, liquidation_notional=(4369600.0 * (1 + 1e-13), "4.37M USDT", "amber"))
    assert deliver(*args)["status"] == "skipped"
    assert len(handler.messages) == 1

    _rewrite_summary(report_dir, liquidation_notional=(5100000.0, "5.10M USDT", "red"))
    revised = deliver(*args)
    assert revised["status"] == "sent" and revised["revised"] is True
    assert revised["changed_figures"] == [{"figure": "liquidation_notional", "label": "Liquidated notional",
                                           "before": "4.37M USDT (AMBER)", "after": "5.10M USDT (RED)"}]
    assert len(handler.messages) == 2
    msg = _parse(handler.messages[1][2])
    assert msg["Subject"] == "[venue-risk] REVISED 2026-11-05 risk report: RED"
    text = msg.get_body(("plain",)).get_content()
    assert "REVISED" in text and "Liquidated notional: 4.37M USDT (AMBER) -> 5.10M USDT (RED)" in text
    assert "Slippage p95" not in text.split("Headline figures")[0]  # only the changed figure is listed
    entry = read_ledger(ledger)[DAY]
    assert entry["revision"] == 1 and entry["state"] == "sent"
    # the revision is now what the committee has: the same report again mails nothing
    assert deliver(*args)["status"] == "skipped"
    assert len(handler.messages) == 2


def test_revision_found_while_without_connection_goes_to_outbox_then_mails_as_revised(
        smtp_server, report_dir, tmp_path):
    handler, host, port = smtp_server
    ledger, outbox = tmp_path / "ledger.json", tmp_path / "outbox"
    rec = ["risk-committee@example.com"]
    assert deliver(report_dir, DAY, rec, smtp_sender(host, port), outbox, ledger)["status"] == "sent"
    _rewrite_summary(report_dir, slippage_p95_bps=(61.0, "61.0 bps", "red"))
    parked = deliver(report_dir, DAY, rec, None, outbox, ledger)
    assert parked["status"] == "outbox" and parked["revised"] is True
    assert entry_state(read_ledger(ledger)[DAY]) == "outbox"
    sent = deliver(report_dir, DAY, rec, smtp_sender(host, port), outbox, ledger)
    assert sent["status"] == "sent" and sent["revised"] is True
    assert _parse(handler.messages[-1][2])["Subject"].startswith("[venue-risk] REVISED ")
    assert deliver(report_dir, DAY, rec, smtp_sender(host, port), outbox, ledger)["status"] == "skipped"
