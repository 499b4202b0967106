"""venue_risk_daily: the nightly venue risk report for the UTC day that just closed.

One run per day D with data interval [D 00:00, D+1 00:00) UTC; `airflow dags test
venue_risk_daily D` reports day D. Date order is enforced by the DAG itself, whatever a backfill's
flags (a backfill carries its own max-active-runs and ignores the DAG's): a day's gate, load,
metrics, report and delivery start only when no earlier day of its baseline window is still queued
or running (`wait_for_earlier_days`), so each baseline sees the days before it. Extraction runs
in parallel. A day before VENUE_RISK_START_DATE fails loudly; a *scheduled* run that starts long
after its day closed (the run Airflow creates when the DAG is unpaused) runs nothing and alerts.

Split by symbol (DESIGN 8): the gate and the per-symbol metric families run as mapped tasks,
one per symbol group (VENUE_RISK_SYMBOL_GROUPS; Celery spreads them over its workers):
`validate_part` per group (plus one part for the symbol-less datasets; a day of one group is one
part), then `validate` rules on
the day's totals; `compute_symbol_metrics` per group, then `compute_metrics` computes the
cross-symbol families once on the combined result. Each mapped task writes its own Parquet files
(temp file + rename) and none writes the warehouse.

Thin by design: every task calls one stage of `venue_risk.pipeline` (imported inside the task,
so parsing this file imports neither polars, duckdb, great_expectations nor weasyprint). Tasks
hand each other paths and small dicts. The warehouse writers (load, store_metrics) share a
one-slot pool, so only one process ever holds the DuckDB file for writing.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from venue_risk.names import DATASET_NAMES, WAREHOUSE_POOL

SMTP_CONN_ID = "smtp_default"
PSEUDONYM_KEY_VARIABLE = "venue_risk_pseudonym_key"  # the pseudonym key: a deployment secret
IO_RETRIES = {"retries": 2, "retry_delay": dt.timedelta(seconds=30), "retry_exponential_backoff": 2.0}
# A task annotated `-> dict` would push every key of its result as an XCom of its own besides
# the whole result (TaskFlow infers multiple_outputs from the annotation): one XCom per task here,
# which is all the downstream tasks read (a demo day pushed 221 XComs instead of 31).
ONE_XCOM = {"multiple_outputs": False}


def _day() -> str:
    """The report day D: the run's logical date. Scheduled and backfill runs have logical date =
    data interval start = D; `airflow dags test venue_risk_daily D` sets logical date D too (its
    inferred manual interval would be the day before, so the interval is not used)."""
    return get_current_context()["logical_date"].date().isoformat()


def _as_list(mapped) -> list:
    """A mapped task's results as a list in map-index order, in one request for all of them (a
    slice of the lazy XCom sequence; indexing asks once per item, and iterating probes one past
    the end, which the API logs as an error)."""
    return list(mapped[:])


def _input_errors_fail_fast(stage):
    """Run a stage; bad input (InputError, DataQualityError) fails the task at once, since a
    retry cannot fix it. Other errors (I/O) are left to the task's retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from venue_risk.errors import BeforeStartDate, InputError
    from venue_risk.quality import DataQualityError

    try:
        return stage()
    except (InputError, DataQualityError, BeforeStartDate) as exc:
        raise AirflowFailException(str(exc)) from exc


def _check_run() -> None:
    """A scheduled run that starts more than VENUE_RISK_SCHEDULE_GRACE_HOURS after its day closed
    is the run Airflow creates for the latest past day when the DAG is unpaused (or after a long
    outage): it reports nothing (skipped, and an alert tells operations how to ask for the day).
    Manual runs, `airflow dags test` and backfills always run."""
    from airflow.sdk.exceptions import AirflowSkipException

    context = get_current_context()
    run = context["dag_run"]
    if str(getattr(run.run_type, "value", run.run_type)) != "scheduled" or not run.data_interval_end:
        return
    started = run.start_date or dt.datetime.now(dt.timezone.utc)
    late_h = (started - run.data_interval_end).total_seconds() / 3600
    grace = _settings().schedule_grace_hours
    if late_h > grace:
        message = (f"scheduled run for {_day()} started {late_h:.1f} h after the day closed "
                   f"(VENUE_RISK_SCHEDULE_GRACE_HOURS={grace:g}): nothing reported, as unpausing runs "
                   f"nothing for past days; to report the day, trigger it or backfill it "
                   f"(airflow backfill create --dag-id venue_risk_daily --from-date {_day()} "
                   f"--to-date {_day()})")
        _notify_skipped(context, message)
        raise AirflowSkipException(message)


def _settings():
    from venue_risk.settings import Settings

    settings = Settings.from_env()
    if settings.source_kind == "postgres" and not os.environ.get("AIRFLOW_CONN_VENUE_DB"):
        # the library reads the connection from Airflow's env convention; a `venue_db` kept in
        # the metadata DB or a secrets backend is handed to it the same way, in this task only
        conn = _lookup_connection("venue_db")
        if conn is not None:
            os.environ["AIRFLOW_CONN_VENUE_DB"] = conn.get_uri()
    return settings


def _lookup_connection(conn_id: str):
    """The Airflow connection, or None when it is defined nowhere (env, secrets backend,
    metadata DB). Any error other than "not found" propagates."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _smtp_sender():
    """A send(EmailMessage) callable through the Airflow SMTP connection, or None when no SMTP
    connection is configured (the message then goes to the local outbox). A connection that is
    configured but unusable raises SmtpConnectionError (`deliver.smtp_connection_state`): never a
    silent fall-back to the outbox."""
    import os

    from venue_risk.deliver import conn_env_var, smtp_connection_state

    state = smtp_connection_state(os.environ.get(conn_env_var(SMTP_CONN_ID)), _lookup_connection,
                                  SMTP_CONN_ID)
    if state == "absent":
        return None

    def send(message) -> None:
        import tempfile
        from pathlib import Path

        from airflow.providers.smtp.hooks.smtp import SmtpHook

        html = message.get_body(("html", "plain")).get_content()
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for part in message.iter_attachments():
                path = Path(tmp) / part.get_filename()
                path.write_bytes(part.get_payload(decode=True))  # bytes for every type (a CSV too)
                files.append(str(path))
            with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
                hook.send_email_smtp(to=[a.strip() for a in message["To"].split(",")],
                                     subject=str(message["Subject"]), html_content=html,
                                     from_email=str(message["From"]), files=files)

    return send


def _sender_or_error():
    """(send, None), or (None, why the configured SMTP connection is unusable): an unusable
    connection must not cost an alert, which then goes to the outbox with the reason."""
    try:
        return _smtp_sender(), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _alert_on_failure(context) -> None:
    """Failure callback: record the failure for the reports page and mail an alert naming the
    failed task and error to the operations list (VENUE_RISK_ALERT_RECIPIENTS, never the
    committee), or write it to the outbox with the reason (no alert recipients, no or an unusable
    SMTP connection, a failed send). Logged either way."""
    import logging

    from venue_risk.pipeline import alert_failure

    log = logging.getLogger("venue_risk.alerts")
    ti = context.get("task_instance") or context.get("ti")
    day = context.get("logical_date")
    send, connection_error = _sender_or_error()
    try:
        result = alert_failure(
            day.date().isoformat() if day else "unknown",
            getattr(ti, "task_id", "unknown"),
            str(context.get("exception") or "see the task log"),
            str(context.get("run_id", "")),
            _settings(),
            send,
            connection_error=connection_error,
        )
    except Exception:
        log.exception("the failure alert could be neither mailed nor written to the outbox")
        return
    if result["status"] == "sent":
        log.info("failure alert mailed to %s", ", ".join(result["recipients"]))
    else:
        log.warning("failure alert NOT mailed (%s%s); written to %s", result["reason"],
                    f": {result['send_error']}" if result.get("send_error") else "", result["path"])


def _notify_skipped(context, why: str) -> None:
    """Tell the operations list that a run reported nothing on purpose (a notice, not a failure:
    no failure record, so the reports page shows the day as skipped)."""
    import logging

    from venue_risk.deliver import send_alert

    send, connection_error = _sender_or_error()
    ti = context.get("task_instance") or context.get("ti")
    result = send_alert(day=_day(), task=getattr(ti, "task_id", "prepare_source"), error=why,
                        run_id=str(context.get("run_id", "")), settings=_settings(), send=send,
                        connection_error=connection_error, skipped=True)
    logging.getLogger("venue_risk.alerts").warning("run skipped, notice %s: %s", result["status"], why)


def _pseudonym_key() -> bytes | None:
    """The pseudonym key from the Airflow variable venue_risk_pseudonym_key (masked in logs);
    None when the variable is not set (build_report then falls back to VENUE_RISK_PSEUDONYM_KEY,
    else shows accounts as recorded and says so in the report)."""
    from airflow.sdk import Variable
    from airflow.sdk.log import mask_secret

    value = Variable.get(PSEUDONYM_KEY_VARIABLE, default=None)
    if value is None:
        return None
    if value:
        mask_secret(str(value), name=PSEUDONYM_KEY_VARIABLE)
    return str(value).encode()


#: Airflow's start date is kept early on purpose: Airflow silently runs no task for a logical date
#: before a DAG's start date, whereas a day before the venue's start date (VENUE_RISK_START_DATE,
#: checked by prepare_source) must fail loudly.
AIRFLOW_START_DATE = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


@dag(
    dag_id="venue_risk_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=AIRFLOW_START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0, "on_failure_callback": _alert_on_failure},
    params={
        "recipients": Param([], type="array", description="Override the configured recipients"),
        "dry_run": Param(False, type="boolean", description="Build the email but send nothing"),
        "force_resend": Param(False, type="boolean", description="Mail even if already sent"),
        "attach_methods": Param(False, type="boolean",
                                description="Attach the methods document (PDF) the report was built with"),
    },
    tags=["venue-risk"],
    doc_md=__doc__,
)
def venue_risk_daily():
    @task(**IO_RETRIES, **ONE_XCOM)
    def prepare_source() -> dict:
        from venue_risk import pipeline

        _check_run()
        return _input_errors_fail_fast(lambda: pipeline.prepare_source(_day(), _settings()))

    @task.sensor(poke_interval=10, timeout=12 * 3600, mode="reschedule")
    def wait_for_earlier_days() -> bool:
        """Done when no earlier day of this day's baseline window is queued or running (any end
        state will do: a failed day is named missing by the reports after it)."""
        import logging

        from venue_risk.baseline import window_days

        settings = _settings()
        context = get_current_context()
        earlier = [dt.datetime.combine(d, dt.time(), tzinfo=dt.timezone.utc)
                   for d in window_days(dt.date.fromisoformat(_day()), settings.first_day, settings.baseline_days)]
        if not earlier:
            return True
        pending = context["ti"].get_dr_count(dag_id=context["dag"].dag_id, logical_dates=earlier,
                                             states=["queued", "running"])
        if pending:
            logging.getLogger("venue_risk.order").info(
                "%d earlier day(s) of the window from %s still queued or running: waiting",
                pending, earlier[0].date())
        return pending == 0

    @task(**IO_RETRIES, **ONE_XCOM)
    def extract(dataset: str) -> dict:
        from venue_risk import pipeline

        return _input_errors_fail_fast(lambda: pipeline.extract(_day(), dataset, _settings()))

    @task
    def gate_parts(extracted) -> list[dict]:
        from venue_risk import pipeline

        return _input_errors_fail_fast(lambda: pipeline.gate_parts(_day(), _as_list(extracted), _settings()))

    @task(**ONE_XCOM)
    def validate_part(part: dict, extracted) -> dict:
        from venue_risk import pipeline

        return _input_errors_fail_fast(
            lambda: pipeline.validate_part(_day(), _as_list(extracted), part, _settings()))

    @task(**ONE_XCOM)
    def validate(extracted, parts) -> dict:
        """The gate's verdict over every part (quarantine limits and volume bands on the day's
        totals): validation.json, or DataQualityError."""
        from venue_risk import pipeline

        return _input_errors_fail_fast(
            lambda: pipeline.combine_gate(_day(), _as_list(extracted), _as_list(parts), _settings()))

    @task(pool=WAREHOUSE_POOL, **IO_RETRIES, **ONE_XCOM)
    def load(extracted, validation: dict) -> dict:
        from venue_risk import pipeline

        return pipeline.load(_day(), _as_list(extracted), _settings())

    @task
    def metric_groups(loaded: dict) -> list[dict]:
        from venue_risk import pipeline

        return pipeline.metric_groups(_day(), _settings())

    @task(**ONE_XCOM)
    def compute_symbol_metrics(group: dict) -> dict:
        from venue_risk import pipeline

        return pipeline.compute_symbol_metrics(_day(), group, _settings())

    @task(**ONE_XCOM)
    def compute_metrics(parts) -> dict:
        from venue_risk import pipeline

        return pipeline.compute_metrics(_day(), _settings(), parts=_as_list(parts))

    @task(pool=WAREHOUSE_POOL, **IO_RETRIES, **ONE_XCOM)
    def store_metrics(tables: dict) -> dict:
        from venue_risk import pipeline

        return pipeline.store_metrics(_day(), tables, _settings())

    @task(**ONE_XCOM)
    def build_report(extracted, stored: dict) -> dict:
        from venue_risk import pipeline

        return pipeline.build_report(_day(), _as_list(extracted), _settings(),
                                     run_id=get_current_context()["run_id"],
                                     pseudonym_key=_pseudonym_key())

    @task(**IO_RETRIES, **ONE_XCOM)
    def deliver(report: dict) -> dict:
        """Mail the report (SMTP connection), or write it to the outbox when none is configured.
        A malformed connection fails at once (a retry cannot fix it); a failed send is retried."""
        from airflow.sdk.exceptions import AirflowFailException

        from venue_risk import pipeline
        from venue_risk.deliver import SmtpConfigError

        params = get_current_context()["params"]
        try:
            send = _smtp_sender()
        except SmtpConfigError as exc:
            raise AirflowFailException(str(exc)) from None
        return pipeline.deliver(_day(), _settings(), send,
                                recipients=params.get("recipients") or None,
                                force=bool(params.get("force_resend")),
                                dry_run=bool(params.get("dry_run")),
                                attach_methods=bool(params.get("attach_methods")))

    ready = prepare_source()
    extracted = extract.expand(dataset=list(DATASET_NAMES))
    ready >> extracted
    parts_of_day = gate_parts(extracted)
    ready >> wait_for_earlier_days() >> parts_of_day
    checked = validate(extracted, validate_part.partial(extracted=extracted).expand(part=parts_of_day))
    loaded = load(extracted, checked)
    parts = compute_symbol_metrics.expand(group=metric_groups(loaded))
    stored = store_metrics(compute_metrics(parts))
    deliver(build_report(extracted, stored))


venue_risk_daily()
