"""Defaults shared by the DAG files (plain data, so this module stays free of Airflow imports)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

OWNER = "recomart"
START_DATE = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_ARGS: dict = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
BATCH_DAG_ID = "recomart_batch"
TRAINING_DAG_ID = "recomart_training"
