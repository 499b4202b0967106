# The venue-risk image for docker-compose.yml: Airflow 3.3 with this project's pinned
# dependencies and library installed. Build context: the project folder.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root requirements.lock pyproject.toml /opt/venue-risk/
COPY --chown=airflow:root include /opt/venue-risk/include
RUN pip install --no-cache-dir -r /opt/venue-risk/requirements.lock \
      apache-airflow-providers-celery apache-airflow-providers-postgres \
 && pip install --no-cache-dir --no-deps -e /opt/venue-risk
# Warm imports for the processes that fork task processes (scheduler, Celery worker): see
# include/venue_risk/preload.py. Airflow reads $AIRFLOW_HOME/config/airflow_local_settings.py.
COPY --chown=airflow:root deploy/airflow_local_settings.py /opt/airflow/config/airflow_local_settings.py
