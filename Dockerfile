# One image for every RecoMart service: Airflow (api-server, scheduler, dag-processor, triggerer),
# the Faust worker, the catalog API and the MLflow server.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/opt/airflow RECOMART_HOME=/opt/recomart
RUN apt-get update && apt-get install -y --no-install-recommends build-essential curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/recomart
COPY requirements.txt constraints.txt ./
COPY docker/requirements-prod.txt docker/
RUN pip install -r requirements.txt -r docker/requirements-prod.txt -c constraints.txt
COPY pyproject.toml README.md ./
COPY include include
RUN pip install --no-deps -e .
COPY dags dags
COPY plugins plugins
COPY source_data source_data
RUN mkdir -p /opt/airflow recomart_lake && useradd -m -u 50000 recomart \
    && chown -R recomart /opt/airflow /opt/recomart
USER recomart
