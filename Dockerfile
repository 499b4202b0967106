# The venue-risk image for docker-compose.yml: Airflow 3.3.2 on Python 3.11 with this project's
# pinned dependencies, its library, DAG and plugins. Build context: the project folder
# (.dockerignore keeps the venv, data, outputs, tests and secrets out).
#
# Base: the *slim* Airflow image (Airflow core and its few default providers, no bundle of
# extra providers), so the Python packages beyond it are exactly those pinned in
# requirements.lock, Celery and Postgres providers included. The tag must match the lock's
# apache-airflow pin and Python 3.11 (tests/unit/test_compose.py checks both).
FROM apache/airflow:slim-3.3.2-python3.11

# WeasyPrint (the PDF report) needs Pango and HarfBuzz, and a font; curl is for the healthchecks.
# /opt/venue-risk: the project home (pip builds the library there; compose mounts data/ etc. in it).
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core curl \
 && apt-get autoremove -yqq --purge \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /opt/venue-risk \
 && chown airflow:root /opt/venue-risk
USER airflow

# requirements.lock pins the test suite's packages too; they stay out of the image. The list:
# each test-only package and what only they pull in (the lock's "# via" notes):
#   pytest, iniconfig (only pytest), aiosmtpd (the test SMTP server), atpublic (only aiosmtpd),
#   hypothesis, sortedcontainers (only hypothesis), pypdf (reads the reports in tests).
# tests/unit/test_compose.py checks this list against the lock and runs the filter below.
ARG TEST_ONLY_PACKAGES="pytest iniconfig aiosmtpd atpublic hypothesis sortedcontainers pypdf"

COPY --chown=airflow:root requirements.lock pyproject.toml /opt/venue-risk/
# requirements.image.txt: the lock less the test-only pins (the build fails if one is missing from
# the lock, so the list cannot drift silently).
RUN lock=/opt/venue-risk/requirements.lock; image_reqs=/opt/venue-risk/requirements.image.txt; \
    cp "$lock" "$image_reqs"; \
    for package in ${TEST_ONLY_PACKAGES}; do \
      grep -qiE "^${package}==" "$image_reqs" \
        || { echo "test-only package ${package} is not pinned in requirements.lock" >&2; exit 1; }; \
      grep -viE "^${package}==" "$image_reqs" > "$image_reqs.tmp"; \
      mv "$image_reqs.tmp" "$image_reqs"; \
    done
# Only the lock's versions: every package from the filtered lock, and the lock as constraints.
RUN pip install --no-cache-dir \
      -r /opt/venue-risk/requirements.image.txt \
      --constraint /opt/venue-risk/requirements.lock

# The library itself (its dependencies are all installed above).
COPY --chown=airflow:root include /opt/venue-risk/include
RUN pip install --no-cache-dir --no-deps --constraint /opt/venue-risk/requirements.lock /opt/venue-risk
# The two numba-compiled loops (venue_risk.fill_replay, venue_risk.corrupt_search), compiled once
# into the image's cache beside the installed sources.
RUN python -m venue_risk.preload

# DAG and plugins (docker-compose.yml mounts the working copies over them), and the local settings:
# Airflow reads $AIRFLOW_HOME/config/airflow_local_settings.py, which makes the scheduler and the
# Celery worker warm the imports their task processes need (include/venue_risk/preload.py).
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root deploy/airflow_local_settings.py /opt/airflow/config/airflow_local_settings.py
ENV VENUE_RISK_HOME=/opt/venue-risk
