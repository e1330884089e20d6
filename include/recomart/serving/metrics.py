"""Prometheus metrics of the API (prometheus-client).

With several uvicorn workers, ``recomart serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start, so every worker writes its samples there and ``/metrics`` (whichever worker
answers) aggregates them all.
"""

from __future__ import annotations

import os
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


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, cached: ``labels()`` validates and locks on every call, which
    the hot route would otherwise pay three times per request."""
    key = (id(metric), values)
    got = _CHILDREN.get(key)
    if got is None:
        got = _CHILDREN[key] = metric.labels(*values)
    return got


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
