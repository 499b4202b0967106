"""Delivery of the daily report: one email per date to the risk committee, PDF attached, subject
with the date and the overall RAG status.

Airflow-free: the caller passes a `send(EmailMessage)` callable (the DAG wraps the Airflow SMTP
connection; tests use smtplib against a local server). Without one (no SMTP connection
configured) the message is written to the local outbox as an .eml file.

"No connection" and "a broken connection" are different things (`smtp_connection_state`): no
connection configured -> the outbox; a connection that is configured but cannot be parsed or read
-> a clear error (the task fails and alerts), never a silent fall-back to the outbox.

Sent once per date and headline: a JSON ledger (updated atomically, under a file lock) records
date -> {state, via, recorded_at, sent_at (sent only), recipients, subject, headline,
sent_headline, revision, ...} with state `sent` (mailed through SMTP) or `outbox` (written to the
outbox, not mailed). A `sent` day whose headline (`headline`: overall status and every figure's
value to 9 significant digits, display and status) is unchanged is not mailed again; a changed
headline is mailed again marked REVISED (subject suffix, `X-Venue-Risk-Revised` header, the
changed figures listed before -> after) and `revision` counts it. A day that went to the outbox
is mailed by the first run that has a connection. Forced runs resend. A dry run builds the
message but neither sends nor records it.

Failure alerts go to the operations list (`settings.alert_recipients`), never to the committee;
an alert that cannot be mailed is written to the outbox with the reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import os
import re
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from venue_risk.atomic import write_atomic, write_json_atomic

SUBJECT_PREFIX = "[venue-risk]"
DEFAULT_SENDER = "venue-risk@example.com"
STATUS_COLORS = {"green": "#00785a", "amber": "#e69f00", "red": "#b34700"}
SENT, OUTBOX = "sent", "outbox"  # ledger states
ALERT_RECIPIENTS_ENV = "VENUE_RISK_ALERT_RECIPIENTS"


def _day(date: str | dt.date) -> str:
    return date.isoformat() if isinstance(date, dt.date) else str(date)[:10]


def pdf_name(date: str | dt.date) -> str:
    return f"venue-risk-{_day(date)}.pdf"


def subject_for(date: str | dt.date, status: str, revised: bool = False) -> str:
    """'[venue-risk] 2026-11-05 risk report: RED' ('[venue-risk] REVISED 2026-11-05 ...' for a
    revision of a mailed report)."""
    return f"{SUBJECT_PREFIX} {'REVISED ' if revised else ''}{_day(date)} risk report: {str(status).upper()}"


def _significant(value: Any) -> Any:
    """A figure's value for comparison: floats to 9 significant digits (a rerun's sums may differ
    in the last bits), everything else as is."""
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return float(f"{value:.9g}")
    return value


def headline(summary: dict) -> dict:
    """The headline a committee reads, from summary.json: the overall status and, per figure,
    [value (9 significant digits), display, status, label]. Two reports with equal headlines
    need no new mail."""
    out: dict[str, Any] = {"overall_status": summary.get("overall_status")}
    for name, f in (summary.get("figures") or {}).items():
        out[name] = [_significant(f.get("value")), f.get("display"), f.get("status"), f.get("label", name)]
    return out


def changed_figures(before: dict, after: dict) -> list[dict]:
    """The headline entries that differ: [{figure, label, before, after}] with display strings
    (the status word included), in the order of `after`."""
    def shown(entry: Any) -> str:
        if isinstance(entry, list):
            return f"{entry[1]} ({str(entry[2]).upper()})"
        return str(entry).upper() if entry is not None else "(none)"

    out = []
    for name in list(after) + [n for n in before if n not in after]:
        old, new = before.get(name), after.get(name)
        if (old[:3] if isinstance(old, list) else old) == (new[:3] if isinstance(new, list) else new):
            continue
        label = (new or old)[3] if isinstance(new or old, list) else "Overall status"
        out.append({"figure": name, "label": label, "before": shown(old), "after": shown(new)})
    return out


def _summary(report_dir: Path) -> dict:
    path = Path(report_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def build_message(report_dir: Path, date: str | dt.date, status: str | None, recipients: list[str],
                  sender_address: str | None = None, revision: dict | None = None,
                  attachments: list[Path] | None = None, not_attached: list[Path] | None = None) -> EmailMessage:
    """The report email: subject with date and status, a short text body and an HTML body with
    the headline figures (from summary.json beside the PDF), the PDF attached, then each file of
    `attachments` (the long tables as CSV; the methods PDF on request), its type from its suffix;
    a missing one is an error naming it. `not_attached`: files left out of the mail (over its size
    budget), named in the body with their size and where they are.

    status None -> the overall status recorded in summary.json. revision {sent_at, changes}: the
    mail revises one already sent: subject marked REVISED, the changed figures listed first."""
    report_dir = Path(report_dir)
    day = _day(date)
    pdf = report_dir / pdf_name(day)
    if not pdf.is_file():
        raise FileNotFoundError(f"report {pdf} not found: build the report for {day} before delivering it")
    if not recipients:
        raise ValueError(f"no recipients for the {day} report (set VENUE_RISK_RECIPIENTS or pass recipients)")
    extra = [Path(p) for p in attachments or []]
    for path in extra:
        if not path.is_file():
            raise FileNotFoundError(f"attachment {path} of the {day} report not found")
    summary = _summary(report_dir)
    status = str(status or summary.get("overall_status") or "unknown").lower()
    sender = sender_address or os.environ.get("VENUE_RISK_MAIL_FROM") or DEFAULT_SENDER
    venue = summary.get("venue_name") or "venue"
    figures = summary.get("figures") or {}
    narrative = summary.get("narrative") or ""

    msg = EmailMessage()
    msg["Subject"] = subject_for(day, status, revised=revision is not None)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=f"venue-risk.{day}", domain=sender.rpartition("@")[2] or None)
    msg["X-Venue-Risk-Date"] = day
    msg["X-Venue-Risk-Status"] = status

    lines = [f"{venue}: daily risk report for {day} (UTC).", f"Overall status: {status.upper()}", ""]
    revised_html = ""
    if revision is not None:
        changes = revision.get("changes", [])
        lines += [f"REVISED: this report replaces the one mailed at {revision.get('sent_at') or 'an earlier run'}; "
                  f"the day was recomputed and {len(changes)} headline figure(s) changed:"]
        lines += [f"  {c['label']}: {c['before']} -> {c['after']}" for c in changes]
        lines.append("")
        revised_html = (
            f"<p style='background:#fff6e5;border-left:4px solid #b36b00;padding:6px 10px'><b>REVISED</b>: "
            f"this report replaces the one mailed at {html.escape(str(revision.get('sent_at') or 'an earlier run'))}; "
            f"the day was recomputed and {len(changes)} headline figure(s) changed:</p><ul>"
            + "".join(f"<li>{html.escape(str(c['label']))}: {html.escape(c['before'])} &rarr; "
                      f"<b>{html.escape(c['after'])}</b></li>" for c in changes) + "</ul>")
        msg["X-Venue-Risk-Revised"] = "yes"
    if narrative:
        lines += [narrative, ""]
    if figures:
        lines.append("Headline figures (today | baseline | status):")
        for name, f in figures.items():
            lines.append(f"  {f.get('label', name)}: {f.get('display', f.get('value'))} | "
                         f"{f.get('baseline_display', f.get('baseline'))} | {str(f.get('status', '')).upper()}")
        lines.append("")
    lines.append(f"The full report is attached ({pdf.name})"
                 + (f", with {len(extra)} more file(s): {', '.join(p.name for p in extra)}." if extra else "."))
    left_out = [f"{p.name} ({p.stat().st_size / 1e6:.1f} MB)" for p in not_attached or []]
    if left_out:
        lines.append(f"Not attached (over the mail's size budget), in {report_dir} and on the reports page: "
                     + ", ".join(left_out) + ".")
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
        + revised_html
        + (f"<p>{e(narrative)}</p>" if narrative else "")
        + (f"<table style='border-collapse:collapse;font-size:13px'><tr>"
           f"<th style='text-align:left;padding:3px 8px'>Figure</th><th style='padding:3px 8px'>Today</th>"
           f"<th style='padding:3px 8px'>Baseline</th><th style='padding:3px 8px'>Status</th>"
           f"<th style='text-align:left;padding:3px 8px'>Threshold</th></tr>{rows}</table>" if figures else "")
        + f"<p>The full report is attached ({e(pdf.name)})"
        + (f", with {len(extra)} more file(s): {e(', '.join(p.name for p in extra))}." if extra else ".")
        + "</p>"
        + (f"<p>Not attached (over the mail's size budget), in {e(str(report_dir))} and on the reports page: "
           f"{e(', '.join(left_out))}.</p>" if left_out else "")
        + "</body></html>"
    )
    msg.add_alternative(body, subtype="html")
    msg.add_attachment(pdf.read_bytes(), maintype="application", subtype="pdf", filename=pdf.name)
    for path in extra:
        if path.suffix == ".csv":
            msg.add_attachment(path.read_bytes(), maintype="text", subtype="csv", filename=path.name)
        else:
            msg.add_attachment(path.read_bytes(), maintype="application", subtype="pdf", filename=path.name)
    return msg


# -- the SMTP connection: absent, configured, or unusable ---------------------------------------

ConnectionState = Literal["absent", "configured"]
URI_HINT = ("percent-encode special characters in the login and password "
            "(# as %23, / as %2F, ? as %3F, @ as %40, : as %3A)")


class SmtpConnectionError(Exception):
    """The SMTP connection is configured but cannot be used. Messages never contain a password."""


class SmtpConfigError(SmtpConnectionError, ValueError):
    """The connection is configured but malformed (a retry cannot fix it)."""


class SmtpLookupError(SmtpConnectionError, RuntimeError):
    """Reading the connection failed (secrets backend or API error; a retry may fix it)."""


def conn_env_var(conn_id: str) -> str:
    """The environment variable Airflow reads a connection from: AIRFLOW_CONN_<CONN_ID>."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def redact_uri_credentials(text: str) -> str:
    """`text` with the user-info of any URI in it (`scheme://user:password@`) replaced by `***`."""
    return re.sub(r"://\S*@", "://***@", str(text))


def _check_json_connection(text: str, name: str) -> None:
    """A connection given as JSON must parse and name a host."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise SmtpConfigError(f"{name} is not valid JSON ({getattr(exc, 'msg', 'parse error')} at "
                              f"position {getattr(exc, 'pos', '?')})") from None
    if not isinstance(obj, dict) or not obj.get("host"):
        raise SmtpConfigError(f"{name} (JSON) has no \"host\"")


def check_connection_uri(value: str, name: str) -> None:
    """Raise SmtpConfigError when a connection URI (or JSON) cannot be parsed as intended.

    Catches what Airflow would silently misread or report as "not defined": an unencoded `#`
    (the rest of the URI becomes a fragment and is dropped), a `/`, `?` or `:` in the password
    (the host part ends early: port not a number, an `@` after the host), no scheme, no host.
    The error names `name` (the variable) and what is wrong, never the URI or the password."""
    text = value.strip()
    if text.startswith("{"):
        _check_json_connection(text, name)
        return
    prefix = f"{name} cannot be parsed as a URI"
    if "://" not in text:
        raise SmtpConfigError(f"{prefix}: no scheme (expected smtp://[login:password@]host:port?extras)")
    if "#" in text:
        raise SmtpConfigError(f"{prefix}: it contains an unencoded '#', and everything after it would "
                              f"be dropped; {URI_HINT}")
    try:
        from urllib.parse import urlsplit

        parts = urlsplit(text)
        host, _port = parts.hostname, parts.port
    except ValueError:  # the message may quote part of the password: not echoed
        raise SmtpConfigError(f"{prefix}: the host or port is malformed (is there a ':', '/', '?' or "
                              f"'@' in the password?); {URI_HINT}") from None
    first_query_key = parts.query.split("&", 1)[0].split("=", 1)[0]
    if "@" in parts.path or "@" in first_query_key:
        raise SmtpConfigError(f"{prefix}: an '@' follows the host part (a '/' or '?' in the login or "
                              f"password ends it early); {URI_HINT}")
    if parts.netloc.endswith(":"):
        raise SmtpConfigError(f"{prefix}: the port after ':' is empty; {URI_HINT}")
    if not host:
        raise SmtpConfigError(f"{prefix}: no host")


def smtp_connection_state(env_value: str | None, lookup: Callable[[str], Any | None],
                          conn_id: str = "smtp_default") -> ConnectionState:
    """Whether the SMTP connection `conn_id` is "absent" (-> the outbox) or "configured".

    env_value: the value of AIRFLOW_CONN_<CONN_ID> (os.environ.get); lookup(conn_id): the
    connection from Airflow (env, secrets backend or metadata DB), or None when it is defined
    nowhere (the caller maps Airflow's not-found exception to None); any other exception is a
    lookup failure.

    Set (non-empty) env var -> configured, whatever Airflow makes of it: a value that cannot be
    parsed, or that Airflow then reports as undefined (it does so for a URI it cannot parse),
    raises SmtpConfigError. A lookup error raises SmtpLookupError. A connection without a host
    raises SmtpConfigError. Nothing here ever falls back to the outbox on an error."""
    name = conn_env_var(conn_id)
    from_env = bool(env_value and env_value.strip())
    if from_env:
        check_connection_uri(str(env_value), name)
    try:
        conn = lookup(conn_id)
    except SmtpConnectionError:
        raise
    except Exception as exc:
        raise SmtpLookupError(f"SMTP connection {conn_id!r} could not be read: {type(exc).__name__}: "
                              f"{redact_uri_credentials(exc)}") from None
    if conn is None:
        if from_env:
            raise SmtpConfigError(f"{name} is set but Airflow cannot read connection {conn_id!r} from it "
                                  f"(it reports the connection as undefined); check the URI format and "
                                  f"{URI_HINT}")
        return "absent"
    if not getattr(conn, "host", None):
        source = name if from_env else f"connection {conn_id!r}"
        raise SmtpConfigError(f"SMTP {source} has no host")
    return "configured"


def smtp_sender_from_uri(uri: str, name: str = "AIRFLOW_CONN_SMTP_DEFAULT") -> Callable[[EmailMessage], None]:
    """A send(EmailMessage) callable for the CLI (no Airflow): the same connection URI the DAG
    uses, read as Airflow's SMTP hook reads it: smtp://[login:password@]host:port?extras, with
    SSL unless `disable_ssl=true`, then STARTTLS unless `disable_tls=true`; `from_email` is not
    used here (the message's From is). A malformed URI raises SmtpConfigError naming `name`."""
    import smtplib
    from urllib.parse import parse_qs, unquote, urlsplit

    check_connection_uri(uri, name)
    parts = urlsplit(uri.strip())
    extras = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    use_ssl = extras.get("disable_ssl") != "true"
    use_tls = not use_ssl and extras.get("disable_tls") != "true"
    host, port = parts.hostname, parts.port or (465 if use_ssl else 25)
    login, password = unquote(parts.username or ""), unquote(parts.password or "")

    def send(message: EmailMessage) -> None:
        smtp_class = smtplib.SMTP_SSL if use_ssl else smtplib.SMTP
        with smtp_class(host, port, timeout=30) as smtp:
            if use_tls:
                smtp.starttls()
            if login:
                smtp.login(login, password)
            smtp.send_message(message)

    return send


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


def entry_state(entry: dict | None) -> str | None:
    """The ledger state of a date's entry: "sent", "outbox", or None (no entry). Entries written
    before states existed count by `via`: "outbox" -> outbox, anything else (i.e. "smtp") -> sent."""
    if not entry:
        return None
    state = entry.get("state")
    if state in (SENT, OUTBOX):
        return state
    return OUTBOX if entry.get("via") == OUTBOX else SENT


def _skip_reason(previous: dict | None, send: Callable | None, current: dict) -> str | None:
    """Why a (not forced) delivery is skipped, or None when it must go ahead. A `sent` entry stops
    a resend while the headline is unchanged (a changed headline is mailed as a revision); an
    `outbox` entry stops only a rewrite of the same outbox file (no connection yet, the file still
    there, the headline unchanged): with a connection, the day is sent."""
    state = entry_state(previous)
    if state == SENT:
        before = previous.get("sent_headline", previous.get("headline"))
        if before is None:
            return "already sent (ledger)"
        if not changed_figures(before, current):
            return "already sent (ledger); the report's headline is unchanged"
        return None
    if (state == OUTBOX and send is None and Path(str(previous.get("path") or "")).is_file()
            and previous.get("headline") in (None, current)):
        return ("already in the outbox (ledger), not mailed: no SMTP connection is configured; "
                "the first run with a connection sends it")
    return None


def _revision(previous: dict | None, current: dict) -> dict | None:
    """{sent_at, changes} when a report was mailed before (the ledger's last sent headline) and
    its headline changed since; else None."""
    if not previous:
        return None
    before = previous.get("sent_headline", previous.get("headline") if entry_state(previous) == SENT else None)
    if before is None:
        return None
    changes = changed_figures(before, current)
    return {"sent_at": previous.get("sent_at") or previous.get("last_sent_at"), "changes": changes} if changes else None


def _ledger_entry(result: dict, previous: dict | None, current: dict) -> dict:
    """The ledger entry of a delivery that happened, keeping up to 10 earlier entries. It keeps
    the headline of this delivery and of the last mail actually sent (`sent_headline`), against
    which a rerun decides whether to mail a revision."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    entry = {"state": result["state"], "via": result["via"], "recorded_at": now,
             "recipients": result["recipients"], "subject": result["subject"],
             "message_id": result["message_id"], "headline": current,
             "revision": int((previous or {}).get("revision", 0)) + (1 if result.get("revised") else 0)}
    if result["state"] == SENT:
        entry["sent_at"] = now
        entry["sent_headline"] = current
    elif previous and previous.get("sent_headline", previous.get("headline") if entry_state(previous) == SENT else None):
        entry["sent_headline"] = previous.get("sent_headline", previous.get("headline"))
        entry["last_sent_at"] = previous.get("sent_at") or previous.get("last_sent_at")
    if "path" in result:
        entry["path"] = result["path"]
    if previous:
        entry["previous"] = ([{k: v for k, v in previous.items() if k not in ("previous", "headline", "sent_headline")}]
                             + list(previous.get("previous", [])))[:10]
    return entry


def deliver(report_dir: Path, date: str | dt.date, recipients: list[str],
            send: Callable[[EmailMessage], None] | None, outbox: Path, ledger: Path,
            force: bool = False, dry_run: bool = False, status: str | None = None,
            sender_address: str | None = None, attachments: list[Path] | None = None,
            not_attached: list[Path] | None = None) -> dict:
    """Send the date's report once, and again as REVISED when a rerun changed its headline.
    Returns what happened (JSON-serializable):
    {status: sent | outbox | skipped | dry_run, state, date, subject, recipients, via, revised,
    changed_figures, ...}.

    - date already `sent` (ledger), headline unchanged (`headline`: overall status and every
      headline figure's value, display and status), not force -> "skipped", nothing sent;
    - date already `sent` and the headline changed -> mailed again, subject marked REVISED, the
      changed figures listed (`changed_figures`);
    - date in the `outbox` (ledger): sent now when `send` is given; with no `send` either it is
      "skipped" while its outbox file exists and the headline is unchanged (rewritten otherwise);
    - send None -> the message goes to <outbox>/<date>-venue-risk.eml (state and via "outbox");
    - dry_run -> the message is built (so a broken report still fails) but not sent or recorded.
    `attachments`: more files to attach (the CSV tables; the methods document, on request);
    `not_attached`: files left out for size, named in the mail.
    The ledger is updated only after a successful send or outbox write: a send that raises leaves
    the ledger as it was, and the next run (or the task's retry) sends the day.
    """
    day = _day(date)
    ledger = Path(ledger)
    outbox = Path(outbox)
    recipients = [r.strip() for r in recipients if r and r.strip()]
    current = headline(_summary(report_dir))
    with _locked(ledger):
        entries = read_ledger(ledger)
        previous = entries.get(day)
        previous_state = entry_state(previous)
        reason = None if (force or dry_run) else _skip_reason(previous, send, current)
        if reason:
            return {"status": "skipped", "state": previous_state, "date": day, "reason": reason,
                    "previous": previous, "subject": previous.get("subject"),
                    "recipients": previous.get("recipients"), "via": previous.get("via"),
                    "revised": False, "changed_figures": [], "ledger": str(ledger)}
        revision = _revision(previous, current)
        message = build_message(report_dir, day, status, recipients, sender_address, revision=revision,
                                attachments=attachments, not_attached=not_attached)
        result: dict[str, Any] = {"date": day, "subject": str(message["Subject"]),
                                  "recipients": recipients, "message_id": str(message["Message-ID"]),
                                  "forced": bool(force and previous), "previous_state": previous_state,
                                  "revised": revision is not None,
                                  "changed_figures": revision["changes"] if revision else [],
                                  "ledger": str(ledger)}
        if dry_run:
            return result | {"status": "dry_run", "state": None, "via": "none",
                             "already_sent": previous_state == SENT}
        if send is None:
            path = write_eml(message, outbox / f"{day}-venue-risk.eml")
            result |= {"status": OUTBOX, "state": OUTBOX, "via": "outbox", "path": str(path),
                       "reason": "no SMTP connection configured: written to the outbox, not mailed"}
        else:
            send(message)
            result |= {"status": SENT, "state": SENT, "via": "smtp"}
        entry = _ledger_entry(result, previous, current)
        entries[day] = entry
        write_json_atomic(entries, ledger)
        result["recorded_at"] = entry["recorded_at"]
        if "sent_at" in entry:
            result["sent_at"] = entry["sent_at"]
        return result


# -- failure alerts -----------------------------------------------------------------------------

def build_alert(day: str, task: str, error: str, run_id: str, recipients: list[str],
                sender_address: str, skipped: bool = False) -> EmailMessage:
    """A short alert: which day, which task, which error, which run. No To header when there are
    no recipients (the alert then only goes to the outbox). `skipped`: a notice that the day's
    run reported nothing on purpose (`error` says why and how to ask for the day), not a failure."""
    msg = EmailMessage()
    msg["Subject"] = (f"{SUBJECT_PREFIX} NOTICE {day}: run skipped, nothing reported" if skipped
                      else f"{SUBJECT_PREFIX} ALERT {day}: task {task} failed")
    msg["From"] = sender_address
    if recipients:
        msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=f"venue-risk-alert.{day}")
    if skipped:
        msg.set_content(f"The venue-risk run for {day} reported nothing.\n\nTask:   {task}\n"
                        f"Run id: {run_id}\nWhy:    {error}\n")
        return msg
    msg.set_content(
        f"The venue-risk run for {day} failed.\n\n"
        f"Task:   {task}\nRun id: {run_id}\nError:  {error}\n\n"
        f"The report for {day} was not delivered. Fix the cause and re-run the day "
        f"(airflow dags test venue_risk_daily {day}, or clear the failed task).\n")
    return msg


def alert_recipients(settings) -> list[str]:
    """The operations addresses of failure alerts (`settings.alert_recipients`,
    VENUE_RISK_ALERT_RECIPIENTS). Never the committee's `settings.recipients`."""
    return [a.strip() for a in (getattr(settings, "alert_recipients", ()) or ()) if a and a.strip()]


def send_alert(day: str, task: str, error: str, run_id: str, settings,
               send: Callable[[EmailMessage], None] | None,
               connection_error: str | None = None, skipped: bool = False) -> dict:
    """Mail an alert about a failed task (or, `skipped`, a notice of a run that reported nothing)
    to the operations list, or write it to the outbox.

    Returns {status: sent | outbox, via, subject, recipients, [path, reason, send_error]}. The
    alert goes to the outbox, with the reason, when no alert recipients are configured, when
    there is no SMTP connection (send None), when the connection is unusable
    (`connection_error`, e.g. the SmtpConnectionError raised by `smtp_connection_state`) or when
    the send raises; so an alert is never lost silently. Only writing the outbox file can raise.
    """
    recipients = alert_recipients(settings)
    sender = getattr(settings, "mail_from", None) or DEFAULT_SENDER
    outbox = Path(settings.paths.outbox)
    msg = build_alert(day, task, str(error)[:4000], run_id, recipients, sender, skipped)
    out: dict[str, Any] = {"subject": str(msg["Subject"]), "recipients": recipients}
    send_error = redact_uri_credentials(connection_error) if connection_error else None
    if not recipients:
        reason = f"no alert recipients configured (set {ALERT_RECIPIENTS_ENV} to the operations addresses)"
    elif connection_error:
        reason = "the SMTP connection is configured but unusable"
    elif send is None:
        reason = "no SMTP connection configured"
    else:
        try:
            send(msg)
            return out | {"status": SENT, "via": "smtp"}
        except Exception as exc:  # never lose the alert: the outbox keeps it
            reason = "sending through the SMTP connection failed"
            send_error = redact_uri_credentials(f"{type(exc).__name__}: {exc}")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    safe_task = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(task))[:80]
    path = write_eml(msg, outbox / f"{day}-alert-{safe_task}-{stamp}.eml")
    out |= {"status": OUTBOX, "via": "outbox", "path": str(path), "reason": reason}
    if send_error:
        out["send_error"] = send_error
    return out
