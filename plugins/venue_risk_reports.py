"""Airflow UI plugin: a "Risk reports" page listing every venue risk report with its status and
links. Thin: the page is built by `venue_risk.reports_page` from the files under reports/."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from airflow.plugins_manager import AirflowPlugin

from venue_risk.config import Paths
from venue_risk.reports_page import render_index, report_file

app = FastAPI(title="venue-risk reports")


@app.get("/", response_class=HTMLResponse)
def index() -> str:
    return render_index(Paths.from_env().reports)


@app.get("/files/{day}/{name}")
def file(day: str, name: str) -> FileResponse:
    path = report_file(Paths.from_env().reports, day, name)
    if path is None:
        raise HTTPException(status_code=404, detail=f"no report file {day}/{name}")
    return FileResponse(path)


class VenueRiskReportsPlugin(AirflowPlugin):
    name = "venue_risk_reports"
    fastapi_apps = [{"app": app, "url_prefix": "/venue-risk", "name": "Venue risk reports"}]
    external_views = [{"name": "Risk reports", "href": "venue-risk/", "destination": "nav",
                       "url_route": "venue-risk-reports", "category": "browse"}]
