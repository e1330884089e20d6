"""What the API sends to Kafka: exposure records (fire and forget, bounded) and feedback events
(acknowledged before the API answers 202).

Both use one confluent-kafka producer per worker process; a daemon thread polls its delivery
callbacks. librdkafka's own queue (``serving_exposure_queue`` messages) is the bound: when the
broker is down, exposures wait there until ``message.timeout.ms`` and are then counted as lost
(metric ``recomart_exposures_total{outcome="lost"}`` and a rate-limited log line); when it is full,
``produce`` refuses at once and the exposure is counted as lost the same way. Serving never waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from recomart.serving.metrics import EXPOSURES

log = logging.getLogger(__name__)


class KafkaOut:
    def __init__(self, bootstrap: str | None, exposures_topic: str, clickstream_topic: str,
                 queue_max: int = 100_000, timeout_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.exposures_topic, self.clickstream_topic = exposures_topic, clickstream_topic
        self.timeout_s = timeout_s
        self.sent = 0
        self.lost = 0
        self._last_warn = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.producer = None
        if bootstrap:
            from confluent_kafka import Producer

            self.producer = Producer({
                "bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                "queue.buffering.max.messages": queue_max,
                "message.timeout.ms": int(timeout_s * 1000),
                "enable.idempotence": False,  # Tansu rejects idempotent producers
                "log_level": 2})  # connection errors show as counted losses (metric + log)
            self._thread = threading.Thread(target=self._poll, name="kafka-out", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.2)

    def _lose(self, n: int, why: str) -> None:
        self.lost += n
        EXPOSURES.labels("lost").inc(n)
        now = time.monotonic()
        if now - self._last_warn > 10:
            self._last_warn = now
            log.warning("exposure log: %d record(s) lost (%s); %d lost so far, serving goes on",
                        n, why, self.lost)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._lose(1, f"broker: {err}")
        else:
            self.sent += 1
            EXPOSURES.labels("sent").inc()

    def log_exposure(self, request_id: str, payload: bytes) -> bool:
        """Queue one exposure record (JSON bytes); False (and counted lost) when it cannot be
        queued."""
        if self.producer is None:
            self._lose(1, "no broker configured (RECOMART_KAFKA_BOOTSTRAP unset)")
            return False
        try:
            self.producer.produce(self.exposures_topic, key=request_id.encode(), value=payload,
                                  on_delivery=self._delivered)
            return True
        except BufferError:
            self._lose(1, "local queue full")
        except Exception as exc:  # a producer error must never fail a request
            self._lose(1, f"{type(exc).__name__}: {exc}")
        return False

    def send_events(self, payloads: Sequence[tuple[bytes, bytes]]) -> list[str | None]:
        """Produce ``(key, value)`` clickstream messages and wait for the broker's acks (blocking:
        call in a thread). Returns an error text per message, None when acknowledged."""
        if self.producer is None:
            return ["no broker configured (RECOMART_KAFKA_BOOTSTRAP unset)"] * len(payloads)
        results: list[str | None] = ["not acknowledged in time"] * len(payloads)
        done = threading.Event()
        left = [len(payloads)]
        lock = threading.Lock()

        def callback(i: int):
            def cb(err: Any, msg: Any) -> None:
                results[i] = None if err is None else str(err)
                with lock:
                    left[0] -= 1
                    if left[0] == 0:
                        done.set()
            return cb

        for i, (key, value) in enumerate(payloads):
            try:
                self.producer.produce(self.clickstream_topic, key=key, value=value,
                                      on_delivery=callback(i))
            except (BufferError, Exception) as exc:
                results[i] = f"{type(exc).__name__}: {exc}"
                with lock:
                    left[0] -= 1
        if left[0] <= 0:
            return results
        self.producer.flush(0)
        done.wait(self.timeout_s + 1)
        return results

    def close(self, timeout: float = 2.0) -> None:
        if self.producer is not None and self.producer.flush(timeout):
            # undeliverable (broker down): drop them; their callbacks count them as lost
            self.producer.purge()
            self.producer.poll(0)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
