"""Prometheus metrics of the API (prometheus-client).

With several uvicorn workers, ``recomart serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start, so every worker writes its samples there and ``/metrics`` (whichever worker
answers) aggregates them all.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUEST_LATENCY = Histogram("recomart_http_request_duration_seconds", "Request latency per route",
                            ["route", "method", "status"], buckets=LATENCY_BUCKETS)
ITEMS_SERVED = Counter("recomart_items_served_total", "Items returned in lists", ["route"])
FALLBACKS = Counter("recomart_fallbacks_total", "Answers not (only) from the batch view",
                    ["reason"])
MODEL_INFO = Gauge("recomart_model_info", "The batch view in use (1) per model and version",
                   ["model", "version"], multiprocess_mode="liveall")
ONLINE_READ = Histogram("recomart_online_store_read_seconds", "Online store read latency",
                        ["op"], buckets=LATENCY_BUCKETS)
ONLINE_ERRORS = Counter("recomart_online_store_errors_total",
                        "Online store reads that failed (served without the real-time view)")
EVENTS = Counter("recomart_events_total", "POST /v1/events per outcome", ["outcome"])
EXPOSURES = Counter("recomart_exposures_total",
                    "Exposure records: sent (acknowledged), lost (queue full, broker down, "
                    "no broker configured)", ["outcome"])
SWAPS = Counter("recomart_batch_view_swaps_total", "Batch views loaded and switched to")


class Buffered:
    """A labelled counter or histogram child whose increments are kept in this process and
    added to the child in one step by ``flush``.

    In multiprocess mode every ``inc`` of prometheus-client writes this worker's mmap file under
    a process-wide lock after a pid check (~1.5 us; a histogram observation is two of them, and
    the hot route made five per request). Buffered, a request adds to two floats; ``flush``
    (``render`` first, and the app every second) writes the sums. Exposition is therefore at
    most a second behind, per worker. Used from the event loop's thread only (no lock)."""

    __slots__ = ("bounds", "child", "counts", "pending", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.pending = 0.0  # counter
        self.bounds: list[float] = list(getattr(child, "_upper_bounds", ()))  # histogram
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.pending += amount

    def observe(self, amount: float) -> None:
        """``Histogram.observe``: the first bucket whose upper bound is >= amount (NaN: none)."""
        self.total += amount
        if amount == amount:
            self.counts[bisect_left(self.bounds, amount)] += 1

    def flush(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self.child.inc(amount)
        if self.bounds and (self.total or any(self.counts)):
            total, self.total = self.total, 0.0
            counts, self.counts = self.counts, [0] * len(self.bounds)
            self.child._sum.inc(total)  # what Histogram.observe writes, summed
            for bucket, n in zip(self.child._buckets, counts, strict=True):
                if n:
                    bucket.inc(n)


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}
_BUFFERED: list[Buffered] = []


def child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, cached: ``labels()`` validates and locks on every call, which
    the hot route would otherwise pay three times per request. In multiprocess mode the child
    comes ``Buffered`` (see there); call it from the event loop's thread."""
    key = (id(metric), values)
    got = _CHILDREN.get(key)
    if got is None:
        got = metric.labels(*values)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            got = Buffered(got)
            _BUFFERED.append(got)
        _CHILDREN[key] = got
    return got


def flush() -> None:
    """Write every buffered child's counts (the app calls this every second and at shutdown)."""
    for b in _BUFFERED:
        b.flush()


def render() -> tuple[bytes, str]:
    flush()  # this worker's own counts are current; the others' at most a second behind
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
