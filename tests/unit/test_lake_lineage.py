"""Lineage events on both backends: the OpenLineage file transport configured by
``recomart.airflow_env.lineage_env`` writes where ``recomart.lineage`` reads them back."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime


def _emit(transport_config: dict, job: str) -> str:
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.transport import get_default_factory

    run_id = str(uuid.uuid4())
    event = RunEvent(eventType=RunState.COMPLETE, eventTime=datetime.now(UTC).isoformat(),
                     run=Run(runId=run_id), job=Job(namespace="recomart", name=job),
                     producer="recomart-test")
    get_default_factory().create(transport_config).emit(event)
    return run_id


def test_events_land_in_the_lake_and_read_back(any_lake):
    from recomart.airflow_env import lineage_env
    from recomart.lineage import read_lake_events

    lake = any_lake
    root = lake.uri(lake.root)
    current = {k: v for k, v in os.environ.items()  # the suite's own transport set aside
               if k not in ("AIRFLOW__OPENLINEAGE__TRANSPORT", "OPENLINEAGE_URL", "OPENLINEAGE_CONFIG")}
    env = lineage_env(root if not lake.is_local else lake.root, current)
    transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    if lake.is_local:
        assert transport["append"] is True and transport["log_file_path"].endswith("events.jsonl")
    else:  # no appends on an object store: one object per event, in the bucket
        assert transport["append"] is False
        assert transport["log_file_path"] == f"{root}/lineage/events/event"
    ids = [_emit(transport, "recomart_batch.validate"), _emit(transport, "recomart_batch.publish")]
    events = read_lake_events(lake)
    assert [e["run"]["runId"] for e in events] == ids
    assert [e["job"]["name"] for e in events] == ["recomart_batch.validate", "recomart_batch.publish"]
    if not lake.is_local:
        assert len(lake.glob(lake.path("lineage", "events"), "event-*.json")) == 2


def test_a_user_configured_transport_is_kept(tmp_path):
    from recomart.airflow_env import lineage_env

    assert lineage_env("s3://b/p", {"OPENLINEAGE_URL": "http://marquez:5000"}) == {}
