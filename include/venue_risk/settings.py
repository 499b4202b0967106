"""Run settings from the environment (all optional; defaults run the embedded simulated venue).

| variable | meaning | default |
|---|---|---|
| VENUE_RISK_SOURCE | `simulated`, `files` or `postgres` | simulated |
| VENUE_RISK_FILES_ROOT | root folder of the `files` source | (required for files) |
| AIRFLOW_CONN_VENUE_DB | the `postgres` source's database: a URI `postgresql://USER:PASSWORD@HOST:5432/DB` or an Airflow connection's JSON; Airflow's environment form of the connection `venue_db`, so the same variable serves the CLI and Airflow. Connect as a SELECT-only role (`sources/postgres_readonly_role.sql`): the source refuses one that can write | (required for postgres) |
| VENUE_RISK_PG_MAPPING | JSON file of the `postgres` source: one SQL per carried dataset, with :day_start / :day_end (timestamptz) and :day (date) | the reference schema's mapping, `sources/postgres_reference.json` |
| VENUE_RISK_SIM_SCALE / _SEED / _GENESIS | simulated venue scale, seed, first day | demo / 7 / 2026-11-01 |
| VENUE_RISK_VENUE_NAME | name on the report | Simulated Perp Venue |
| VENUE_RISK_RECIPIENTS | comma-separated risk committee addresses | risk-committee@example.com |
| VENUE_RISK_ALERT_RECIPIENTS | comma-separated operations addresses for failure alerts (never the committee); empty: alerts are written to the outbox only | (none) |
| VENUE_RISK_MAIL_FROM | sender address | venue-risk@example.com |
| VENUE_RISK_BASELINE_DAYS | trailing baseline window, days | 30 |
| VENUE_RISK_START_DATE | first day of the venue's history: a run for an earlier day fails loudly; baseline windows never reach before it | 2026-11-01 (the demo's first day) |
| VENUE_RISK_SCHEDULE_GRACE_HOURS | a *scheduled* run that starts more than this long after its day closed (the run Airflow creates when the DAG is unpaused late) reports nothing and alerts operations; ask for past days with a backfill | 6 |
| VENUE_RISK_ENGINE_LATENCY_S | the liquidation engine's round time in the cascade model, seconds | 1.0 |
| VENUE_RISK_WAREHOUSE_WAIT_S | how long an open of the DuckDB warehouse waits while another process holds it, before failing and naming the holder | 900 |
| VENUE_RISK_DUCKDB_MEMORY | DuckDB's memory limit per warehouse connection (past it a load spills to disk) | 3GB |
| VENUE_RISK_PSEUDONYM_KEY | secret HMAC key of the account pseudonyms, for the CLI (under Airflow: the variable `venue_risk_pseudonym_key`); set but empty: pseudonyms off | none: accounts shown as recorded, and the report says so |
| VENUE_RISK_SYMBOL_GROUPS | symbol groups of a day: the gate and the per-symbol metric families run as one Airflow mapped task per group (spread over Celery workers in production; the CLI runs the gate's groups one after the other); the figures do not depend on it | the symbols packed by their landed rows into groups of at most 4M rows with a symbol, a busier symbol alone (demo: 1; large: 16) |
| VENUE_RISK_QUARANTINE_LIMITS | per-dataset quarantine limits, `dataset=share,...` (e.g. `trades=0.01`); above a dataset's limit the day is critical | `quality.limits.DEFAULT_QUARANTINE_LIMITS` |
| VENUE_RISK_HOME | the project home every default path is under | the current directory |
| VENUE_RISK_DATA / _LANDING / _WAREHOUSE / _SIMULATED | data folder; landed inputs; the DuckDB file; the simulated venue's cache | `<home>/data`, `<data>/landing`, `<data>/warehouse.duckdb`, `<data>/simulated` |
| VENUE_RISK_REPORTS / _OUTBOX | reports folder; mail outbox (no SMTP connection) | `<home>/reports`, `<home>/outbox` |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from venue_risk.config import Paths


def _quarantine_limits(text: str) -> dict:
    """`dataset=share,...` -> {dataset: share}, on top of the defaults of quality.limits;
    an unknown dataset or a share outside [0, 1] is a clear error."""
    from venue_risk.quality.limits import parse_quarantine_limits

    return parse_quarantine_limits(text)


def _iso_date(text: str, name: str) -> str:
    """A YYYY-MM-DD setting, checked; a clear error names the variable otherwise."""
    import datetime as dt

    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a date YYYY-MM-DD") from None


def _positive_int(text: str, name: str) -> int | None:
    if not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={text!r}: expected a whole number >= 1")
    return value


@dataclass(frozen=True)
class Settings:
    paths: Paths
    source_kind: str = "simulated"
    files_root: str = ""
    pg_mapping: str = ""  # postgres source mapping file; "" = the shipped reference mapping
    sim_scale: str = "demo"
    sim_seed: int = 7
    sim_genesis: str = "2026-11-01"
    venue_name: str = "Simulated Perp Venue"
    recipients: tuple[str, ...] = ("risk-committee@example.com",)
    mail_from: str = "venue-risk@example.com"
    alert_recipients: tuple[str, ...] = ()  # operations addresses of failure alerts
    baseline_days: int = 30
    start_date: str = "2026-11-01"  # first day of the venue's history (ISO)
    schedule_grace_hours: float = 6.0
    engine_latency_s: float = 1.0  # the liquidation engine's round time in the cascade model
    quarantine_limits: dict = field(default_factory=dict)  # dataset -> largest share quarantined
    symbol_groups: int | None = None  # groups per day for the gate and per-symbol metrics; None: by size
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ.get
        recipients = tuple(a.strip() for a in env("VENUE_RISK_RECIPIENTS",
                                                  "risk-committee@example.com").split(",") if a.strip())
        return cls(
            paths=Paths.from_env(),
            source_kind=env("VENUE_RISK_SOURCE", "simulated"),
            files_root=env("VENUE_RISK_FILES_ROOT", ""),
            pg_mapping=env("VENUE_RISK_PG_MAPPING", ""),
            sim_scale=env("VENUE_RISK_SIM_SCALE", "demo"),
            sim_seed=int(env("VENUE_RISK_SIM_SEED", "7")),
            sim_genesis=env("VENUE_RISK_SIM_GENESIS", "2026-11-01"),
            venue_name=env("VENUE_RISK_VENUE_NAME", "Simulated Perp Venue"),
            recipients=recipients,
            mail_from=env("VENUE_RISK_MAIL_FROM", "venue-risk@example.com"),
            alert_recipients=tuple(a.strip() for a in env("VENUE_RISK_ALERT_RECIPIENTS", "").split(",")
                                   if a.strip()),
            baseline_days=int(env("VENUE_RISK_BASELINE_DAYS", "30")),
            start_date=_iso_date(env("VENUE_RISK_START_DATE", "2026-11-01"), "VENUE_RISK_START_DATE"),
            schedule_grace_hours=float(env("VENUE_RISK_SCHEDULE_GRACE_HOURS", "6")),
            engine_latency_s=float(env("VENUE_RISK_ENGINE_LATENCY_S", "1.0")),
            quarantine_limits=_quarantine_limits(env("VENUE_RISK_QUARANTINE_LIMITS", "")),
            symbol_groups=_positive_int(env("VENUE_RISK_SYMBOL_GROUPS", ""), "VENUE_RISK_SYMBOL_GROUPS"),
        )

    @property
    def first_day(self):
        """The start date as a date."""
        import datetime as dt

        return dt.date.fromisoformat(self.start_date)

    def source(self):
        """The configured source adapter. The postgres source's connection is read from
        AIRFLOW_CONN_VENUE_DB here, never kept in the settings (it holds the password)."""
        from venue_risk.sources import FilesSource, SimulatedSource

        if self.source_kind == "files":
            if not self.files_root:
                raise ValueError("VENUE_RISK_SOURCE=files needs VENUE_RISK_FILES_ROOT (the folder "
                                 "holding <dataset>/date=YYYY-MM-DD/*.parquet|.csv)")
            return FilesSource(self.files_root)
        if self.source_kind == "simulated":
            return SimulatedSource(self.paths.simulated, scale=self.sim_scale, seed=self.sim_seed,
                                   genesis=self.sim_genesis)
        if self.source_kind == "postgres":
            from venue_risk.sources.postgres import PostgresSource

            return PostgresSource.from_env(self.pg_mapping or None)
        raise ValueError(f"VENUE_RISK_SOURCE={self.source_kind!r}: expected 'simulated', 'files' "
                         "or 'postgres'")
