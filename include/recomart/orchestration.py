"""Defaults shared by the DAG files (plain data, so this module stays free of Airflow imports)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

OWNER = "recomart"
START_DATE = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_ARGS: dict = {
    "owner": OWNER,
    "retries": 2,
    # RECOMART_RETRY_DELAY_SECONDS shortens the wait between retries (the tests set 1 s).
    "retry_delay": timedelta(seconds=float(os.environ.get("RECOMART_RETRY_DELAY_SECONDS", "30"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
BATCH_DAG_ID = "recomart_batch"
TRAINING_DAG_ID = "recomart_training"

# ---- Assets (plain strings here; DAG files build ``airflow.sdk.Asset(name=..., uri=...)``) -------
# URIs use the ``file`` scheme because Airflow's OpenLineage provider translates only schemes it has
# a converter for, and ``file`` is the one that ships with it. The host names the lake, not a
# machine, so the URIs stay static whatever RECOMART_LAKE_ROOT is: ``file://recomart-lake/<zone>/<n>``
# becomes the OpenLineage dataset (namespace ``file://recomart-lake``, name ``/<zone>/<n>``).
LAKE_ASSET_HOST = "recomart-lake"
FEATURE_TABLES = ("user_features", "item_features", "user_item_features")


def asset_uri(zone: str, name: str) -> str:
    """Static URI of a lake table or folder, e.g. ``file://recomart-lake/curated/users``."""
    return f"file://{LAKE_ASSET_HOST}/{zone}/{name}"


def asset_name(zone: str, name: str) -> str:
    """Asset name shown in the Airflow UI, e.g. ``curated.users`` or ``raw.csv.users``."""
    return f"{zone}.{name.replace('/', '.')}"


def lake_asset(zone: str, name: str) -> dict[str, str]:
    """Keyword arguments for ``Asset(**lake_asset(zone, name))``."""
    return {"name": asset_name(zone, name), "uri": asset_uri(zone, name)}


FEATURES_ASSETS: dict[str, dict[str, str]] = {t: lake_asset("features", t) for t in FEATURE_TABLES}
"""The feature tables the batch DAG's ``build_features`` task updates; the training DAG schedules
on all of them: ``schedule=[Asset(**a) for a in FEATURES_ASSETS.values()]``."""
