"""The speed layer end to end: real Tansu broker, real Faust worker processes, real SIGKILLs.

100k events (1% malformed) are produced; the worker is SIGKILLed twice mid-stream and restarted.
Afterwards the lake holds exactly the valid event_ids (after dedup) and the dead-letter topic
exactly the malformed messages; the trending view and the decision agent answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recomart.processes import stop_group

pytestmark = pytest.mark.slow

N_EVENTS = 100_000
FAUST = Path(sys.executable).parent / "faust"


@pytest.fixture
def broker(tmp_path):
    from recomart.streaming.broker import BrokerError, EmbeddedBroker, tansu_binary

    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(f"Tansu broker binary unavailable: {exc}")
    with EmbeddedBroker(embedded=True, log_path=tmp_path / "tansu.log") as b:
        yield b


def _landed_rows(lake) -> int:
    from recomart.streaming.sink import list_files

    return sum(pq.ParquetFile(p).metadata.num_rows for p in list_files(lake))


class Worker:
    """One `faust worker` process in its own process group."""

    def __init__(self, env: dict[str, str], log: Path, port: int) -> None:
        self.env, self.log, self.port = env, log, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(FAUST), "-A", "recomart.streaming.app", "worker", "-l", "info",
                 "--web-port", str(self.port)], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 60) -> None:
        proc, self.proc = self.proc, None
        stop_group(proc, sig, timeout)


def _wait_for(cond, timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        assert worker.proc is not None and worker.proc.poll() is None, \
            f"worker died while waiting for {what}; log:\n{worker.log.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; log:\n{worker.log.read_text()[-3000:]}")


def _drain(bootstrap: str, topic: str, idle_s: float = 8.0, cap_s: float = 120.0,
           first_s: float = 0.0) -> list:
    """Every message of ``topic``, read until nothing arrives for ``idle_s`` (end offsets lie);
    waits up to ``first_s`` for a first message."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"drain-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 8000, "log_level": 3})
    c.subscribe([topic])
    out, last, start = [], time.monotonic(), time.monotonic()
    try:
        while time.monotonic() - start < cap_s and (
                time.monotonic() - last < idle_s or (not out and time.monotonic() - start < first_s)):
            msgs = c.consume(1000, timeout=0.5)
            for m in msgs:
                if m.error() is None:
                    out.append(m)
            if msgs:
                last = time.monotonic()
    finally:
        c.close()
    return out


def test_speed_layer_survives_sigkill(broker, lake, tmp_path):
    from recomart.config import get_settings
    from recomart.streaming.broker import free_port
    from recomart.streaming.merge import MASTER_TABLE, MASTER_ZONE, merge_speed_events, read_speed_zone
    from recomart.streaming.producer import produce

    s = get_settings()
    sent = produce(broker.bootstrap, s.clickstream_topic, rate=0, duration=0, malformed_share=0.01,
                   count=N_EVENTS, seed=7)
    assert sent.failed == 0 and sent.valid + sent.malformed == N_EVENTS
    assert 500 < sent.malformed < 1500 and len(sent.by_kind) == 7

    port = free_port()
    env = dict(os.environ, RECOMART_KAFKA_BOOTSTRAP=broker.bootstrap,
               RECOMART_LAKE_ROOT=str(lake.root), RECOMART_STREAM_BATCH_MAX="5000",
               RECOMART_STREAM_WINDOW_S="3600", RECOMART_STREAM_DECISION_INTERVAL_S="1")
    worker = Worker(env, tmp_path / "worker.log", port)
    try:
        for threshold in (15_000, 45_000):  # two SIGKILLs mid-stream, each followed by a restart
            worker.start()
            _wait_for(lambda t=threshold: _landed_rows(lake) >= t, 180, f"{threshold} rows", worker)
            worker.kill(signal.SIGKILL)
            assert _landed_rows(lake) < sent.valid, "worker finished before it could be killed"
        worker.start()
        _wait_for(lambda: read_speed_zone(lake).num_rows >= sent.valid, 300, "all events", worker)

        landed = read_speed_zone(lake)
        ids = landed["event_id"].to_pylist()
        assert len(ids) == len(set(ids)) and set(ids) == sent.valid_ids

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/trending/?limit=5", timeout=10) as r:
            trending = json.loads(r.read())
        deadline = time.monotonic() + 30
        while not trending["products"] and time.monotonic() < deadline:
            time.sleep(1)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/trending/?limit=5",
                                        timeout=10) as r:
                trending = json.loads(r.read())
        assert trending["products"] and trending["products"][0]["views"] > 0
        assert trending["products"][0]["purchases"] >= trending["products"][-1]["purchases"]

        recs = [json.loads(m.value()) for m in _drain(broker.bootstrap, s.recommendations_topic,
                                                       idle_s=5, cap_s=90, first_s=60)]
        assert recs, "the decision agent published no recommendation"
        assert {r["source"] for r in recs} == {"popularity"}  # no champion in a fresh lake
        assert all(r["product_ids"] for r in recs)
    finally:
        worker.kill(signal.SIGTERM)

    dlq = _drain(broker.bootstrap, s.dead_letter_topic)
    headers = [dict(m.headers() or []) for m in dlq]
    sources = {(h["source_partition"], h["source_offset"]) for h in headers}
    keys = {m.key().decode() for m in dlq}
    assert keys == sent.malformed_keys and len(sources) == sent.malformed
    reasons = Counter(h["reason"].decode().split(":")[0] for h in headers)
    assert set(reasons) == {"not_json", "not_object", "missing_field", "wrong_type",
                            "unknown_event_type", "oversized", "bad_timestamp"}

    first = merge_speed_events(lake, "2024-05-01")
    assert first["new"] == sent.valid and first["read"] >= sent.valid
    again = merge_speed_events(lake, "2024-05-01")
    assert again["new"] == 0
    master = lake.read_arrow(MASTER_ZONE, MASTER_TABLE, columns=["event_id"])["event_id"].to_pylist()
    assert len(master) == len(set(master)) and set(master) == sent.valid_ids


def test_create_topics_cli_is_idempotent(tmp_path, monkeypatch):
    """`recomart stream create-topics` against a real broker: creates, then leaves alone; clear
    errors without a bootstrap or with an unreachable one."""
    from confluent_kafka.admin import AdminClient
    from typer.testing import CliRunner

    from recomart.cli import app
    from recomart.config import get_settings, reset_settings
    from recomart.streaming.broker import BrokerError, EmbeddedBroker, free_port, tansu_binary

    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(f"Tansu broker binary unavailable: {exc}")
    runner = CliRunner()
    monkeypatch.delenv("RECOMART_KAFKA_BOOTSTRAP", raising=False)
    reset_settings()
    unset = runner.invoke(app, ["stream", "create-topics"])
    assert unset.exit_code == 2 and "RECOMART_KAFKA_BOOTSTRAP is not set" in " ".join(
        unset.output.split())

    monkeypatch.setenv("RECOMART_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")  # nobody listens
    reset_settings()
    down = runner.invoke(app, ["stream", "create-topics", "--timeout", "2"])
    assert down.exit_code == 1 and "did not answer" in " ".join(down.output.split())

    monkeypatch.setenv("RECOMART_STREAM_PARTITIONS", "3")
    with EmbeddedBroker(embedded=True, topics={}, log_path=tmp_path / "tansu.log") as b:
        monkeypatch.setenv("RECOMART_KAFKA_BOOTSTRAP", b.bootstrap)
        reset_settings()
        s = get_settings()
        names = [s.clickstream_topic, s.dead_letter_topic, s.recommendations_topic]
        first = runner.invoke(app, ["stream", "create-topics"], terminal_width=200)
        assert first.exit_code == 0, first.output
        assert all(f"{n}: created, 3 partitions" in first.output for n in names)
        again = runner.invoke(app, ["stream", "create-topics", "--partitions", "5"],
                              terminal_width=200)
        assert again.exit_code == 0, again.output
        assert all(f"{n}: exists, 3 partitions (has 3, wanted 5)" in again.output for n in names)
        topics = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10).topics
        assert {n: len(topics[n].partitions) for n in names} == dict.fromkeys(names, 3)
    reset_settings()
