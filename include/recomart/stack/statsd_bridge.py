"""A small StatsD -> Prometheus bridge for Airflow's metrics on one machine.

Why this exists: Airflow emits metrics over StatsD or OpenTelemetry. Prometheus 2.42 (Debian's)
cannot receive OTLP, and neither ``statsd_exporter`` nor an OpenTelemetry collector is packaged in
the registries this project installs from; docker-compose runs the real ``prom/statsd-exporter``.
This bridge speaks the same subset Airflow sends (counters ``c``, gauges ``g`` with ``+``/``-``
deltas, timers ``ms``) and exposes them with prometheus-client, named like statsd_exporter's
default mapping (dots become underscores; counters get ``_total``; timers become summaries in
seconds).

    python -m recomart.stack.statsd_bridge --udp-port 8125 --http-port 9102
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

_NAME = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(statsd_name: str) -> str:
    name = _NAME.sub("_", statsd_name)
    return name if not name[:1].isdigit() else f"_{name}"


class StatsdCollector:
    """Holds the folded StatsD samples; prometheus-client reads them on each scrape."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.timers: dict[str, tuple[int, float]] = {}
        self.bad_lines = 0

    def feed(self, packet: bytes) -> None:
        for line in packet.decode("utf-8", "replace").splitlines():
            try:
                self._line(line.strip())
            except (ValueError, IndexError):
                self.bad_lines += 1

    def _line(self, line: str) -> None:
        if not line:
            return
        name, rest = line.split(":", 1)
        fields = rest.split("|")
        value, kind = fields[0], fields[1]
        rate = 1.0
        for extra in fields[2:]:
            if extra.startswith("@"):
                rate = float(extra[1:]) or 1.0
        key = metric_name(name)
        with self.lock:
            if kind == "c":
                self.counters[key] = self.counters.get(key, 0.0) + float(value) / rate
            elif kind == "g":
                if value[:1] in "+-":
                    self.gauges[key] = self.gauges.get(key, 0.0) + float(value)
                else:
                    self.gauges[key] = float(value)
            elif kind in ("ms", "h", "d"):
                n, total = self.timers.get(key, (0, 0.0))
                self.timers[key] = (n + 1, total + float(value) / 1000.0)
            elif kind != "s":
                raise ValueError(kind)

    def collect(self) -> Iterator:
        with self.lock:
            counters, gauges, timers = dict(self.counters), dict(self.gauges), dict(self.timers)
        for key, v in counters.items():
            yield CounterMetricFamily(key, f"StatsD counter {key}", value=v)
        for key, v in gauges.items():
            yield GaugeMetricFamily(key, f"StatsD gauge {key}", value=v)
        for key, (n, total) in timers.items():
            yield SummaryMetricFamily(key, f"StatsD timer {key} (seconds)", count_value=n, sum_value=total)
        yield CounterMetricFamily("statsd_bridge_bad_lines", "Lines that did not parse",
                                  value=self.bad_lines)


def serve(udp_port: int, http_port: int, host: str = "127.0.0.1") -> None:
    collector = StatsdCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    # UDP first: a caller takes the HTTP endpoint answering as "ready", and a datagram sent
    # before the socket is bound would be dropped without a trace
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, udp_port))
    start_http_server(http_port, addr=host, registry=registry)
    while True:
        data, _ = sock.recvfrom(65535)
        collector.feed(data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--udp-port", type=int, default=8125)
    p.add_argument("--http-port", type=int, default=9102)
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        serve(a.udp_port, a.http_port, a.host)


if __name__ == "__main__":
    main()
