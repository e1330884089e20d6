"""The API in-process (FastAPI's TestClient runs the real app and its lifespan): readiness, and
serving on when the online store or the broker is down, with the loss counted."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from recomart.config import Settings
from recomart.serving.app import create_app
from recomart.serving.synthetic import publish_synthetic
from recomart.streaming.broker import free_port


def _settings(lake, **kw) -> Settings:
    return Settings(lake_root=lake.root, **kw)


def test_not_ready_until_something_is_published(lake):
    with TestClient(create_app(_settings(lake, serving_reload_poll_s=0.1))) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and "nothing published yet" in r.json()["problems"][0]
        r = client.get("/v1/users/1/recommendations")
        assert r.status_code == 503 and "no batch view loaded" in r.json()["error"]
        assert client.get("/healthz").json() == {"status": "ok"}
        publish_synthetic(lake, users=20, products=10, n=5)
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        ready = client.get("/readyz").json()
        assert ready["ready"] and ready["version"] == 1 and ready["online_store"] == "disabled"


def test_serves_through_a_dead_online_store_and_a_dead_broker(lake):
    publish_synthetic(lake, users=20, products=10, n=5)
    down = f"127.0.0.1:{free_port()}"  # nobody listens there
    settings = _settings(lake, online_store_url=f"redis://{down}/0", kafka_bootstrap=down,
                         serving_exposure_queue=100)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["online_store"] == "unreachable"
        for _ in range(150):
            r = client.get("/v1/users/3/recommendations?n=5")
            assert r.status_code == 200 and r.json()["fresh_events"] == 0
            assert [i["reason"] for i in r.json()["items"]] == ["batch"] * 5
        metrics = client.get("/metrics").text
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                  if line and not line.startswith("#")}
        # librdkafka's queue holds 100; the rest is counted lost at once, never blocks
        assert values['recomart_exposures_total{outcome="lost"}'] >= 50
        assert values['recomart_fallbacks_total{reason="online_store_down"}'] >= 150
        assert values["recomart_online_store_errors_total"] >= 150
        assert values['recomart_items_served_total{route="user"}'] >= 750
        assert 'recomart_http_request_duration_seconds_count{method="GET",' \
               'route="/v1/users/{user_id}/recommendations",status="200"}' in metrics


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/explorer"])
def test_docs_and_explorer_pages(lake, path):
    publish_synthetic(lake, users=5, products=5, n=2)
    with TestClient(create_app(_settings(lake))) as client:
        r = client.get(path)
        assert r.status_code == 200
        if path == "/openapi.json":
            paths = set(r.json()["paths"])
            assert {"/v1/users/{user_id}/recommendations", "/v1/sessions/recommendations",
                    "/v1/products/{product_id}/similar", "/v1/products/{product_id}/audience",
                    "/v1/trending", "/v1/events", "/healthz", "/readyz", "/metrics"} <= paths
