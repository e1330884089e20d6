"""The demo's last act: the serving API before and after a few real-time events.

Starts (on the embedded default) a broker, a redis-server and the Faust worker, then
``recomart serve``; asks for one user's recommendations, streams a purchase of their top item and
two views of another product through Kafka, asks again until the worker has pushed the events to
the online store, and stops everything. Returns both lists, so the caller can print them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recomart.config import get_settings
from recomart.errors import TransientError
from recomart.lake import Lake
from recomart.processes import stop_group, wait_until


class DemoServingError(TransientError):
    """The API or the worker did not come up, or the events never showed."""


def _get(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait(cond: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None,
          log: Path | None = None) -> None:
    wait_until(cond, timeout, what, proc=proc, log=log, error=DemoServingError)


@dataclass(frozen=True)
class LiveStack:
    """The running speed + serving processes of one demo act (see :func:`live_stack`)."""

    base: str
    worker_port: int
    bootstrap: str
    redis_url: str
    procs: list[subprocess.Popen]
    logs: Path
    label: str

    def log(self, which: str) -> Path:
        return self.logs / f"{'faust_worker' if which == 'worker' else 'serving_api'}_{self.label}.log"


@contextmanager
def live_stack(env: dict[str, str], logs: Path, label: str) -> Iterator[LiveStack]:
    """Broker (embedded unless RECOMART_KAFKA_BOOTSTRAP), online store (embedded unless
    RECOMART_ONLINE_STORE_URL), one Faust worker and ``recomart serve`` on free ports; every
    process is stopped (its whole group) on exit. ``procs`` is ``[worker, api]``."""
    from recomart.serving.online_store import EmbeddedRedis
    from recomart.streaming.broker import EmbeddedBroker, free_port

    settings = get_settings()
    exe = Path(sys.executable).parent / "recomart"
    with ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap or stack.enter_context(EmbeddedBroker()).bootstrap
        redis_url = settings.online_store_url or stack.enter_context(
            EmbeddedRedis(log_path=logs / f"redis_{label}.log")).url
        env = {**env, "RECOMART_KAFKA_BOOTSTRAP": bootstrap, "RECOMART_ONLINE_STORE_URL": redis_url,
               "RECOMART_STREAM_DECISIONS": "false", "RECOMART_STREAM_BATCH_WITHIN_S": "0.3"}
        port, worker_port = free_port(), free_port()
        procs = []
        for name, cmd in ((f"faust_worker_{label}", [str(exe), "stream", "worker", "--web-port",
                                                     str(worker_port)]),
                          (f"serving_api_{label}", [str(exe), "serve", "--port", str(port)])):
            fh = stack.enter_context(open(logs / f"{name}.log", "ab"))
            proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            stack.callback(stop_group, proc)
            procs.append(proc)
        yield LiveStack(f"http://127.0.0.1:{port}", worker_port, bootstrap, redis_url, procs, logs,
                        label)


def serving_demo(env: dict[str, str], logs: Path, step: Callable[[str], None]) -> dict[str, Any]:
    from confluent_kafka import Producer

    from recomart.serving.batch_view import load_view
    from recomart.streaming.events import encode_event

    settings = get_settings()
    view = load_view(Lake())
    user = int(view.user_recs.keys[len(view.user_recs.keys) // 2])
    with live_stack(env, logs, "serving") as live:
        step(f"starting the Faust worker and the serving API on {live.base} "
             f"(online store {live.redis_url})")
        base, procs, worker_port, bootstrap = live.base, live.procs, live.worker_port, live.bootstrap
        _wait(lambda: _get(f"{base}/readyz")[0] == 200, 60, "the API to be ready", procs[1],
              live.log("api"))
        step(f"explorer: {base}/explorer?user={user} (open it while the demo runs; docs at /docs)")
        _, before = _get(f"{base}/v1/users/{user}/recommendations?n=5")
        # the worker has joined its consumer groups once it has landed that first exposure
        _wait(lambda: _get(f"http://127.0.0.1:{worker_port}/stats/")[1]["exposures"]["valid"] > 0,
              90, "the Faust worker to land the first exposure", procs[0],
              live.log("worker"))
        top = before["items"][0]["product_id"]
        listed = {i["product_id"] for i in before["items"]}
        anchor = next(int(p) for p in view.similar.keys if int(p) not in listed
                      and view.similar.get(int(p)))
        now = datetime.now(UTC)
        session = f"demo-{uuid.uuid4().hex[:8]}"
        events = [{"event_id": uuid.uuid4().hex, "user_id": user, "product_id": pid,
                   "event_type": kind, "session_id": session, "timestamp": now, "price": None}
                  for pid, kind in ((top, "purchase"), (anchor, "view"), (anchor, "view"))]
        step(f"user {user}: streaming a purchase of product {top} (their top pick) and two views "
             f"of product {anchor} through Kafka")
        producer = Producer({"bootstrap.servers": bootstrap, "log_level": 2})
        for e in events:
            producer.produce(settings.clickstream_topic, key=str(user).encode(), value=encode_event(e))
        if producer.flush(15):
            raise DemoServingError("the broker did not acknowledge the demo events")
        sent_at = time.monotonic()
        after: dict[str, Any] = {}

        def changed() -> bool:
            nonlocal after
            _, after = _get(f"{base}/v1/users/{user}/recommendations?n=5")
            return after.get("fresh_events", 0) >= len(events)

        _wait(changed, 90, "the worker to push the events to the online store", procs[0],
              live.log("worker"))
        return {"user": user, "url": base, "before": before, "after": after,
                "seconds_to_fresh": round(time.monotonic() - sent_at, 2),
                "events": [(e["product_id"], e["event_type"]) for e in events]}
