"""Prometheus metrics of the Faust worker, served at ``/metrics`` on its web port.

Kept apart from ``streaming.app`` so the worker only calls two functions: ``observe_landing``
when a batch is durable and ``observe_commit`` once its offsets are committed. Lag is the
partition's high-water mark (as the last fetch response reported it) minus the committed offset;
on the embedded Tansu broker the high-water marks can be wrong (see ARCHITECTURE.md), on Kafka
they are exact.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_LANDED = Counter("recomart_stream_events_landed", "Valid events written to the speed zone "
                        "(a batch replayed after a crash counts again; the lake dedups).",
                        registry=REGISTRY)
DLQ_SENT = Counter("recomart_stream_dead_letter_sent", "Messages sent to the dead-letter topic.",
                   registry=REGISTRY)
BATCHES = Counter("recomart_stream_batches_committed", "Landing batches whose offsets were committed.",
                  registry=REGISTRY)
BATCH_SECONDS = Histogram("recomart_stream_batch_seconds",
                          "Landing time of one batch: validate, dead-letter, durable write.",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                          registry=REGISTRY)
LAG = Gauge("recomart_stream_consumer_lag", "High-water mark minus committed offset, per partition.",
            ["topic", "partition"], registry=REGISTRY)
LAST_COMMIT = Gauge("recomart_stream_last_commit_timestamp_seconds",
                    "Unix time of the last offset commit of the landing consumer.", registry=REGISTRY)


def observe_landing(seconds: float) -> None:
    BATCH_SECONDS.observe(seconds)


def observe_commit(consumer: Any, parts: Any, counts: Mapping[str, int]) -> None:
    """After a commit: counters, commit time, and lag of the partitions in the batch (``parts``:
    a ``landing.Fetched`` batch or ``{topic-partition: records}``; ``consumer.highwater(tp)``)."""
    from recomart.streaming.landing import next_offsets

    EVENTS_LANDED.inc(counts.get("valid", 0))
    DLQ_SENT.inc(counts.get("dead_letter", 0))
    BATCHES.inc()
    LAST_COMMIT.set(time.time())
    for tp, committed in next_offsets(parts).items():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            LAG.labels(tp[0], str(tp[1])).set(max(0, highwater - committed))


def render() -> tuple[bytes, str]:
    """The exposition text and its content type (without the charset, which aiohttp sets)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"
