"""What the API sends to Kafka: exposure records (fire and forget, bounded) and feedback events
(acknowledged before the API answers 202).

Two confluent-kafka producers per worker process, because the two streams want opposite
batching: exposures linger ``EXPOSURE_LINGER_MS`` so each produce request carries many of them
(at 5 ms the embedded broker spent ~125 us of CPU per exposure on the 2 shared cores, at 100 ms
~30-40 us), while feedback events go out at once (``EVENT_LINGER_MS``) because the freshness of
the real-time view waits on them. The exposure producer reports failed deliveries only
(``delivery.report.only.error``): a report per acknowledged exposure was a Python callback per
request, run in the poll thread under the GIL in bursts of a linger's worth (hundreds), which
held up the event loop. Acknowledged exposures are counted as queued - failed - still in
librdkafka's queue. A daemon thread polls the exposure producer (its failure reports);
``send_events`` polls its own producer while it waits for the acks.

librdkafka's own queue (``serving_exposure_queue`` messages) is the bound: when the broker is
down, exposures wait there until ``message.timeout.ms`` and are then counted as lost (metric
``recomart_exposures_total{outcome="lost"}`` and a rate-limited log line); when it is full,
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

EXPOSURE_LINGER_MS = 100
# a served list's JSON repeats its field names 20 times: lz4 shrinks a lingered batch ~4x, and the
# broker on the same cores spent ~6.5 us of CPU per uncompressed exposure vs ~0.7 us (librdkafka
# compresses in its own thread; the landing consumer, librdkafka too, decompresses)
EXPOSURE_COMPRESSION = "lz4"
EVENT_LINGER_MS = 1


class KafkaOut:
    def __init__(self, bootstrap: str | None, exposures_topic: str, clickstream_topic: str,
                 queue_max: int = 100_000, timeout_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.exposures_topic, self.clickstream_topic = exposures_topic, clickstream_topic
        self.timeout_s = timeout_s
        self.queued = 0  # exposures librdkafka accepted
        self.failed = 0  # ... and then reported undeliverable
        self.lost = 0
        self._last_warn = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost_metric = EXPOSURES.labels("lost")
        self._count_lock = threading.Lock()
        self.producer = None  # exposures
        self.events_producer = None  # feedback events
        if bootstrap:
            from confluent_kafka import Producer

            def config(linger_ms: int, queue: int, **more: Any) -> dict[str, Any]:
                return {"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": "all",
                        "queue.buffering.max.messages": queue,
                        "message.timeout.ms": int(timeout_s * 1000),
                        "enable.idempotence": False,  # Tansu rejects idempotent producers
                        "log_level": 2,  # connection errors show as counted losses (metric + log)
                        **more}

            self.producer = Producer(config(EXPOSURE_LINGER_MS, queue_max,
                                            **{"delivery.report.only.error": True,
                                               "compression.type": EXPOSURE_COMPRESSION,
                                               "on_delivery": self._undelivered}))
            self.events_producer = Producer(config(EVENT_LINGER_MS, 100_000))
            self._thread = threading.Thread(target=self._poll, name="kafka-out", daemon=True)
            self._thread.start()

    @property
    def sent(self) -> int:
        """Exposures the broker acknowledged: queued, neither failed nor still in the queue
        (``queued`` is read first, so a concurrent produce can only make this lower, never
        higher than the truth)."""
        if self.producer is None:
            return 0
        queued = self.queued
        # len() is librdkafka's out-queue: messages, and also requests and events (e.g. the
        # connection errors of an unreachable broker) waiting to be served: never below 0
        return max(0, queued - self.failed - len(self.producer))

    def _poll(self) -> None:
        sent = EXPOSURES.labels("sent")
        reported = 0
        while not self._stop.is_set():
            self.producer.poll(0.2)
            # acknowledged exposures reach the metric in one step per poll (never backwards)
            now = self.sent
            if now > reported:
                sent.inc(now - reported)
                reported = now
        if self.sent > reported:
            sent.inc(self.sent - reported)

    def _lose(self, n: int, why: str) -> None:
        self.lost += n
        self._lost_metric.inc(n)
        now = time.monotonic()
        if now - self._last_warn > 10:
            self._last_warn = now
            log.warning("exposure log: %d record(s) lost (%s); %d lost so far, serving goes on",
                        n, why, self.lost)

    def _undelivered(self, err: Any, msg: Any) -> None:
        """The exposure producer's delivery report: failures only (``delivery.report.only.error``)."""
        if err is None:  # not configured to happen; ``sent`` counts it anyway
            return
        with self._count_lock:  # reports run in the poll thread and in close()'s flush
            self.failed += 1
        self._lose(1, f"broker: {err}")

    def log_exposure(self, request_id: str, payload: bytes) -> bool:
        """Queue one exposure record (JSON bytes); False (and counted lost) when it cannot be
        queued."""
        if self.producer is None:
            self._lose(1, "no broker configured (RECOMART_KAFKA_BOOTSTRAP unset)")
            return False
        try:
            self.producer.produce(self.exposures_topic, value=payload, key=request_id.encode())
            self.queued += 1
            return True
        except BufferError:
            self._lose(1, "local queue full")
        except Exception as exc:  # a producer error must never fail a request
            self._lose(1, f"{type(exc).__name__}: {exc}")
        return False

    def send_events(self, payloads: Sequence[tuple[bytes, bytes]]) -> list[str | None]:
        """Produce ``(key, value)`` clickstream messages and wait for the broker's acks (blocking:
        call in a thread). Returns an error text per message, None when acknowledged."""
        producer = self.events_producer
        if producer is None:
            return ["no broker configured (RECOMART_KAFKA_BOOTSTRAP unset)"] * len(payloads)
        results: list[str | None] = ["not acknowledged in time"] * len(payloads)
        left = [len(payloads)]
        lock = threading.Lock()

        def callback(i: int):
            def cb(err: Any, msg: Any) -> None:
                results[i] = None if err is None else str(err)
                with lock:
                    left[0] -= 1
            return cb

        for i, (key, value) in enumerate(payloads):
            try:
                producer.produce(self.clickstream_topic, key=key, value=value,
                                 on_delivery=callback(i))
            except (BufferError, Exception) as exc:
                results[i] = f"{type(exc).__name__}: {exc}"
                with lock:
                    left[0] -= 1
        deadline = time.monotonic() + self.timeout_s + 1
        while left[0] > 0 and time.monotonic() < deadline:  # serve the delivery reports here
            producer.poll(0.01)  # short: a concurrent call may serve (and so take) our reports
        return results

    def close(self, timeout: float = 2.0) -> None:
        for producer in (self.producer, self.events_producer):
            if producer is not None and producer.flush(timeout):
                # undeliverable (broker down): drop them; their callbacks count them as lost
                producer.purge()
                producer.poll(0)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
