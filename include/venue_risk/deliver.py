"""Delivery of the daily report: one email per date to the risk committee, PDF attached, subject
with the date and the overall RAG status.

Airflow-free: the caller passes a `send(EmailMessage)` callable (the DAG wraps the Airflow SMTP
connection; tests use smtplib against a local server). Without one (no SMTP connection
configured) the message is written to the local outbox as an .eml file.

Sent once per date: a JSON ledger (updated atomically, under a file lock) records
date -> {sent_at, recipients, subject, via}; a date already in the ledger is skipped unless
forced. A dry run builds the message but neither sends nor records it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import os
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Callable, Iterator

from venue_risk.atomic import write_atomic, write_json_atomic

SUBJECT_PREFIX = "[venue-risk]"
DEFAULT_SENDER = "venue-risk@example.com"
STATUS_COLORS = {"green": "#2e7d32", "amber": "#e8a100", "red": "#c62828"}


def _day(date: str | dt.date) -> str:
    return date.isoformat() if isinstance(date, dt.date) else str(date)[:10]


def pdf_name(date: str | dt.date) -> str:
    return f"venue-risk-{_day(date)}.pdf"


def subject_for(date: str | dt.date, status: str) -> str:
    """'[venue-risk] 2026-11-05 risk report: RED'."""
    return f"{SUBJECT_PREFIX} {_day(date)} risk report: {str(status).upper()}"


def _summary(report_dir: Path) -> dict:
    path = Path(report_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def build_message(report_dir: Path, date: str | dt.date, status: str | None, recipients: list[str],
                  sender_address: str | None = None) -> EmailMessage:
    """The report email: subject with date and status, a short text body and an HTML body with
    the headline figures (from summary.json beside the PDF), the PDF attached.

    status None -> the overall status recorded in summary.json."""
    report_dir = Path(report_dir)
    day = _day(date)
    pdf = report_dir / pdf_name(day)
    if not pdf.is_file():
        raise FileNotFoundError(f"report {pdf} not found: build the report for {day} before delivering it")
    if not recipients:
        raise ValueError(f"no recipients for the {day} report (set VENUE_RISK_RECIPIENTS or pass recipients)")
    summary = _summary(report_dir)
    status = str(status or summary.get("overall_status") or "unknown").lower()
    sender = sender_address or os.environ.get("VENUE_RISK_MAIL_FROM") or DEFAULT_SENDER
    venue = summary.get("venue_name") or "venue"
    figures = summary.get("figures") or {}
    narrative = summary.get("narrative") or ""

    msg = EmailMessage()
    msg["Subject"] = subject_for(day, status)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=f"venue-risk.{day}", domain=sender.rpartition("@")[2] or None)
    msg["X-Venue-Risk-Date"] = day
    msg["X-Venue-Risk-Status"] = status

    lines = [f"{venue}: daily risk report for {day} (UTC).", f"Overall status: {status.upper()}", ""]
    if narrative:
        lines += [narrative, ""]
    if figures:
        lines.append("Headline figures (today | baseline | status):")
        for name, f in figures.items():
            lines.append(f"  {f.get('label', name)}: {f.get('display', f.get('value'))} | "
                         f"{f.get('baseline_display', f.get('baseline'))} | {str(f.get('status', '')).upper()}")
        lines.append("")
    lines.append(f"The full report is attached ({pdf.name}).")
    msg.set_content("\n".join(lines) + "\n")

    e = html.escape
    rows = "".join(
        f"<tr><td style='padding:3px 8px'>{e(str(f.get('label', name)))}</td>"
        f"<td style='padding:3px 8px;text-align:right'><b>{e(str(f.get('display', f.get('value'))))}</b></td>"
        f"<td style='padding:3px 8px;text-align:right;color:#5a6877'>{e(str(f.get('baseline_display', '')))}</td>"
        f"<td style='padding:3px 8px'><span style='background:{STATUS_COLORS.get(str(f.get('status')), '#6f7f8f')};"
        f"color:#fff;padding:1px 6px;border-radius:3px;font-size:11px'>{e(str(f.get('status', '')).upper())}</span></td>"
        f"<td style='padding:3px 8px;color:#5a6877;font-size:11px'>{e(str(f.get('threshold', '')))}</td></tr>"
        for name, f in figures.items())
    body = (
        f"<html><body style='font-family:DejaVu Sans,Arial,sans-serif;color:#1d2733'>"
        f"<p style='font-size:15px'><b>{e(venue)}</b>: daily risk report for <b>{e(day)}</b> (UTC)</p>"
        f"<p>Overall status: <span style='background:{STATUS_COLORS.get(status, '#6f7f8f')};color:#fff;"
        f"padding:2px 8px;border-radius:3px;font-weight:bold'>{e(status.upper())}</span></p>"
        + (f"<p>{e(narrative)}</p>" if narrative else "")
        + (f"<table style='border-collapse:collapse;font-size:13px'><tr>"
           f"<th style='text-align:left;padding:3px 8px'>Figure</th><th style='padding:3px 8px'>Today</th>"
           f"<th style='padding:3px 8px'>Baseline</th><th style='padding:3px 8px'>Status</th>"
           f"<th style='text-align:left;padding:3px 8px'>Threshold</th></tr>{rows}</table>" if figures else "")
        + f"<p>The full report is attached ({e(pdf.name)}).</p></body></html>"
    )
    msg.add_alternative(body, subtype="html")
    msg.add_attachment(pdf.read_bytes(), maintype="application", subtype="pdf", filename=pdf.name)
    return msg


# -- ledger -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(ledger: Path) -> Iterator[None]:
    """An exclusive lock beside the ledger, so two deliveries cannot both read 'not sent'."""
    ledger.parent.mkdir(parents=True, exist_ok=True)
    lock = ledger.with_name(ledger.name + ".lock")
    with open(lock, "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        yield


def read_ledger(ledger: Path) -> dict:
    try:
        return json.loads(Path(ledger).read_text())
    except FileNotFoundError:
        return {}


def write_eml(message: EmailMessage, path: Path) -> Path:
    """The message as an .eml file, written atomically."""
    data = bytes(message)
    return write_atomic(Path(path), lambda tmp: tmp.write_bytes(data))


def deliver(report_dir: Path, date: str | dt.date, recipients: list[str],
            send: Callable[[EmailMessage], None] | None, outbox: Path, ledger: Path,
            force: bool = False, dry_run: bool = False, status: str | None = None,
            sender_address: str | None = None) -> dict:
    """Send the date's report once. Returns what happened (JSON-serializable):
    {status: sent | outbox | skipped | dry_run, date, subject, recipients, via, ...}.

    - date already in the ledger and not force -> "skipped", nothing sent;
    - send None -> the message goes to <outbox>/<date>-venue-risk.eml (via "outbox");
    - dry_run -> the message is built (so a broken report still fails) but not sent or recorded.
    The ledger is updated only after a successful send: a failed send is retried by the next run.
    """
    day = _day(date)
    ledger = Path(ledger)
    outbox = Path(outbox)
    recipients = [r.strip() for r in recipients if r and r.strip()]
    with _locked(ledger):
        entries = read_ledger(ledger)
        previous = entries.get(day)
        if previous and not force and not dry_run:
            return {"status": "skipped", "date": day, "reason": "already sent (ledger)",
                    "previous": previous, "subject": previous.get("subject"),
                    "recipients": previous.get("recipients"), "via": previous.get("via"),
                    "ledger": str(ledger)}
        message = build_message(report_dir, day, status, recipients, sender_address)
        result: dict[str, Any] = {"date": day, "subject": str(message["Subject"]),
                                  "recipients": recipients, "message_id": str(message["Message-ID"]),
                                  "forced": bool(force and previous), "ledger": str(ledger)}
        if dry_run:
            return result | {"status": "dry_run", "via": "none", "already_sent": bool(previous)}
        if send is None:
            path = write_eml(message, outbox / f"{day}-venue-risk.eml")
            result |= {"status": "outbox", "via": "outbox", "path": str(path)}
        else:
            send(message)
            result |= {"status": "sent", "via": "smtp"}
        entry = {"sent_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "recipients": recipients, "subject": result["subject"], "via": result["via"],
                 "message_id": result["message_id"]}
        if "path" in result:
            entry["path"] = result["path"]
        if previous:
            entry["previous"] = ([{k: v for k, v in previous.items() if k != "previous"}]
                                 + list(previous.get("previous", [])))[:10]
        entries[day] = entry
        write_json_atomic(entries, ledger)
        result["sent_at"] = entry["sent_at"]
        return result


# -- failure alerts -----------------------------------------------------------------------------

def build_alert(day: str, task: str, error: str, run_id: str, recipients: list[str],
                sender_address: str) -> EmailMessage:
    """A short alert: which day, which task, which error, which run."""
    msg = EmailMessage()
    msg["Subject"] = f"{SUBJECT_PREFIX} ALERT {day}: task {task} failed"
    msg["From"] = sender_address
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=f"venue-risk-alert.{day}")
    msg.set_content(
        f"The venue-risk run for {day} failed.\n\n"
        f"Task:   {task}\nRun id: {run_id}\nError:  {error}\n\n"
        f"The report for {day} was not delivered. Fix the cause and re-run the day "
        f"(airflow dags test venue_risk_daily {day}, or clear the failed task).\n")
    return msg


def send_alert(day: str, task: str, error: str, run_id: str, settings,
               send: Callable[[EmailMessage], None] | None) -> dict:
    """Mail an alert about a failed task (or write it to the outbox). Never raises: an alert
    that cannot be mailed is written to the outbox instead, and the outcome is returned."""
    recipients = list(getattr(settings, "recipients", ()) or ())
    sender = getattr(settings, "mail_from", None) or DEFAULT_SENDER
    outbox = Path(settings.paths.outbox)
    msg = build_alert(day, task, str(error)[:4000], run_id, recipients, sender)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    safe_task = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(task))[:80]
    error_text = None
    if send is not None and recipients:
        try:
            send(msg)
            return {"status": "sent", "via": "smtp", "subject": str(msg["Subject"])}
        except Exception as exc:  # fall back to the outbox
            error_text = f"{type(exc).__name__}: {exc}"
    path = write_eml(msg, outbox / f"{day}-alert-{safe_task}-{stamp}.eml")
    out = {"status": "outbox", "via": "outbox", "path": str(path), "subject": str(msg["Subject"])}
    if error_text:
        out["send_error"] = error_text
    return out
