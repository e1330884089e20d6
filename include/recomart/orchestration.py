"""Defaults shared by the DAG files (plain data, so this module stays free of Airflow imports)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

OWNER = "recomart"
# Far in the past so historic logical dates (backfills of years of shop history) get task
# instances: Airflow marks a run dated before start_date successful without running any task.
# ``catchup=False`` keeps the scheduler from creating the runs in between.
START_DATE = datetime(1970, 1, 1, tzinfo=UTC)


def default_args() -> dict:
    """``default_args`` of every RecoMart DAG, built when a DAG file is parsed (not at import).

    ``RECOMART_RETRY_DELAY_SECONDS`` shortens the first wait between retries (the tests set 1 s).
    Deterministic failures are not retried at all (``PermanentError`` -> ``AirflowFailException``).
    """
    return {
        "owner": OWNER,
        "retries": 2,
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


# ---- which day a run covers --------------------------------------------------------------------
def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def resolve_ds(*, run_type: str | None, logical_date: Any = None, data_interval_end: Any = None,
               run_after: Any = None, conf: Mapping[str, Any] | None = None,
               event_extras: Iterable[Mapping[str, Any]] = ()) -> str:
    """The day (``YYYY-MM-DD``) whose data a run covers; the one rule for both DAGs and lineage.

    - ``conf["ds"]`` always wins (an explicit request).
    - *scheduled*: Airflow 3 maps ``@daily`` to ``CronTriggerTimetable``, whose logical date is the
      fire time (00:00 of the next day) with an empty data interval, so the run covers the day
      that ends at the fire time: the day before ``data_interval_end`` (equal to the logical date
      here; an interval timetable's end gives the same day).
    - *asset_triggered*: the latest ``ds`` among the triggering events, so a run queued by the
      events of D and D+1 trains D+1.
    - *manual* / *backfill* (``airflow dags test DAG 2024-06-30``, ``recomart run --date``, the
      UI's trigger form): the logical date names the day; without one, the day of ``run_after``.
    """
    explicit = (conf or {}).get("ds")
    if explicit:
        return _as_date(explicit).isoformat()
    kind = str(run_type or "").lower().rsplit(".", 1)[-1]
    if kind == "scheduled":
        end = data_interval_end if data_interval_end is not None else logical_date
        if end is not None:
            return (_as_date(end) - timedelta(days=1)).isoformat()
    if kind == "asset_triggered":
        days = [d for e in event_extras if (d := _as_date((e or {}).get("ds"))) is not None]
        if days:
            return max(days).isoformat()
    if logical_date is not None:
        return _as_date(logical_date).isoformat()
    if run_after is not None:
        return _as_date(run_after).isoformat()
    raise ValueError("cannot tell which day this run covers: no conf ds, logical date or run_after")


def context_ds(context: Mapping[str, Any]) -> str:
    """:func:`resolve_ds` from an Airflow task context (read by attribute; no Airflow import)."""
    dag_run = context.get("dag_run")
    conf = dict(getattr(dag_run, "conf", None) or {})
    params = context.get("params") or {}
    if not conf.get("ds") and params.get("ds"):
        conf["ds"] = params["ds"]
    extras = [getattr(event, "extra", None) or {}
              for events in (context.get("triggering_asset_events") or {}).values()
              for event in events]
    return resolve_ds(run_type=getattr(dag_run, "run_type", None),
                      logical_date=context.get("logical_date", getattr(dag_run, "logical_date", None)),
                      data_interval_end=context.get("data_interval_end",
                                                    getattr(dag_run, "data_interval_end", None)),
                      run_after=getattr(dag_run, "run_after", None), conf=conf, event_extras=extras)
