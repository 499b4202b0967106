"""Airflow UI plugin: the "Risk reports" page, one row per day from the venue's start date with
its run state, report status, delivery state and links. Behind Airflow's authentication: every
route checks the caller through Airflow's auth manager, as the REST API does (read access to the
runs of venue_risk_daily); without a valid session or token the page redirects a browser to the
login page and everything else answers 401. Thin: the page is built by `venue_risk.reports_page`."""

from __future__ import annotations

import datetime as dt

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin

DAG_ID = "venue_risk_daily"

app = FastAPI(title="venue-risk reports",
              dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))])


@app.exception_handler(HTTPException)
async def _refused(request: Request, exc: HTTPException):
    """401 for a browser asking for a page: to the login page, back here afterwards."""
    if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _airflow_states() -> dict[str, str]:
    """{day: state of the latest run of that logical date} from Airflow's metadata DB."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(select(DagRun.logical_date, DagRun.state)
                               .where(DagRun.dag_id == DAG_ID, DagRun.logical_date.is_not(None))
                               .order_by(DagRun.id)).all()
    return {logical_date.date().isoformat(): str(state) for logical_date, state in rows}


@app.get("/", response_class=HTMLResponse)
def index() -> str:
    from venue_risk.reports_page import render_index
    from venue_risk.settings import Settings

    settings = Settings.from_env()
    yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    return render_index(settings.first_day, yesterday, settings.paths.reports, settings.paths.data,
                        _airflow_states())


@app.get("/files/{day}/{name:path}")  # (a report's tables/*.csv; the methods under files/methods/)
def file(day: str, name: str) -> FileResponse:
    from venue_risk.config import Paths
    from venue_risk.reports_page import report_file

    path = report_file(Paths.from_env().reports, day, name)
    if path is None:
        raise HTTPException(status_code=404, detail=f"no report file {day}/{name}")
    return FileResponse(path)


class VenueRiskReportsPlugin(AirflowPlugin):
    name = "venue_risk_reports"
    fastapi_apps = [{"app": app, "url_prefix": "/venue-risk", "name": "Venue risk reports"}]
    external_views = [{"name": "Risk reports", "href": "venue-risk/", "destination": "nav",
                       "url_route": "venue-risk-reports", "category": "browse"}]
