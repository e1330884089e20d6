"""Serving from an s3:// lake: a replica on any machine loads the published batch view from the
bucket and hot-swaps when a new champion is published there (the real app, in-process)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from recomart.config import Settings
from recomart.serving.app import create_app
from recomart.serving.batch_view import ViewHolder
from recomart.serving.synthetic import publish_synthetic
from recomart.streaming.broker import free_port


def test_view_holder_hot_swaps_from_the_bucket(s3_lake):
    lake = s3_lake
    holder = ViewHolder(lake, poll_s=60)
    assert holder.refresh() is False and "nothing published yet" in holder.last_error
    publish_synthetic(lake, users=40, products=20, n=5, version=1)
    assert holder.refresh() is True and holder.view.version == 1
    assert holder.refresh() is False  # unchanged latest.json: no reload
    publish_synthetic(lake, users=40, products=20, n=5, version=2, offset=1)
    assert holder.refresh() is True and holder.view.version == 2
    lake.remove(lake.path("serving", "synthetic", "v2", "user_recs.parquet"))
    assert holder.refresh(force=True) is False and "user_recs.parquet is missing" in holder.last_error
    assert holder.view.version == 2  # a broken publication keeps the current view


def test_api_serves_recommendations_from_the_bucket(s3_lake, s3_server):
    lake = s3_lake
    publish_synthetic(lake, users=20, products=10, n=5)
    down = f"127.0.0.1:{free_port()}"  # no broker: exposures are counted as lost, serving goes on
    settings = Settings(lake_root=lake.uri(lake.root), kafka_bootstrap=down,
                        serving_reload_poll_s=0.2, serving_exposure_queue=100)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 20
        while client.get("/readyz").json().get("version") != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        r = client.get("/v1/users/3/recommendations?n=5")
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) == 5
