"""The speed layer's commit ordering, with a fake consumer and dead-letter producer.

This is the one place a fake is right: the contract under test is the order of three effects
(lake write, dead-letter acks, offset commit), not Kafka. The lake is real, on both backends (a
local folder and ``s3://`` on a moto S3 server); its write failures are real ones (locally the
speed folder's place is taken by a file; on the object store the bucket does not exist). The real
broker path is covered by tests/integration/test_speed_layer.py (SIGKILLs mid-stream, exact sets
in the lake and the DLQ, on both backends).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from recomart.lake import Lake, LakeError
from recomart.streaming.landing import Fetched, commit_when_landed, land_batch
from recomart.streaming.merge import read_speed_zone
from recomart.streaming.sink import batch_key, list_files

TOPIC = "clickstream"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def _event(i: int) -> bytes:
    return json.dumps({"event_id": f"e{i}", "user_id": 1, "product_id": i, "event_type": "view",
                       "session_id": "s", "timestamp": datetime(2024, 5, 1, 10, tzinfo=UTC).isoformat(),
                       "price": None}).encode()


def _record(tp: TopicPartition, offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(topic=tp.topic, partition=tp.partition, offset=offset, timestamp=1714557600000,
                          timestamp_type=0, key=f"k{offset}".encode(), value=value, checksum=None,
                          serialized_key_size=3, serialized_value_size=len(value), headers=())


def _batch() -> dict[TopicPartition, list[ConsumerRecord]]:
    """Partition 0: three valid events and one malformed message; partition 1: two valid."""
    return {TP0: [_record(TP0, 10 + i, _event(i)) for i in range(3)] + [_record(TP0, 13, b"not json")],
            TP1: [_record(TP1, i, _event(10 + i)) for i in range(2)]}


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets):
        self.commits.append(dict(offsets))


class FakeDeadLetter:
    """Records sends; acks only when told (``ack``), or fails the send or the ack."""

    def __init__(self, *, fail_send: bool = False) -> None:
        self.fail_send = fail_send
        self.sent: list[tuple[bytes, bytes, dict[str, bytes]]] = []
        self.futures: list[asyncio.Future] = []

    async def send(self, *, key, value, headers):
        if self.fail_send:
            raise ConnectionError("broker unreachable")
        self.sent.append((key, value, dict(headers)))
        fut = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut

    def ack(self, error: Exception | None = None) -> None:
        for fut in self.futures:
            fut.set_exception(error) if error else fut.set_result(None)


def _land(lake, dlq):
    return land_batch(_batch(), lake, dlq, topic=TOPIC, max_message_bytes=10_000)


async def _until(predicate, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"never happened: {what}")


def test_offsets_are_committed_only_after_the_files_and_the_dead_letter_acks(any_lake):
    lake = any_lake
    consumer, dlq = FakeConsumer(), FakeDeadLetter()

    async def scenario():
        step = asyncio.ensure_future(commit_when_landed(consumer, _land(lake, dlq), _batch()))
        await _until(lambda: list_files(lake) and dlq.sent, "file written and DLQ message sent")
        await asyncio.sleep(0.05)
        assert not step.done() and consumer.commits == []  # the DLQ has not acknowledged yet
        dlq.ack()
        return await step

    counts, _ = asyncio.run(scenario())
    assert counts == {"valid": 5, "dead_letter": 1, "files": 1}
    assert consumer.commits == [{TP0: 14, TP1: 2}]  # one past the last offset, malformed included
    assert sorted(read_speed_zone(lake)["event_id"].to_pylist()) == ["e0", "e1", "e10", "e11", "e2"]
    # the object's name is the batch's idempotency key: both partitions' whole offset ranges
    (landed,) = list_files(lake)
    assert landed.name == f"{TOPIC}-{batch_key({0: (10, 13), 1: (0, 1)})}.parquet"
    assert lake.rel(landed) == f"speed/clickstream/date=2024-05-01/{landed.name}"
    ((key, value, headers),) = dlq.sent
    assert (key, value) == (b"k13", b"not json")
    assert headers["reason"] == b"not_json" and headers["source_offset"] == b"13"


def _broken_lake(any_lake) -> Lake:
    """The same backend as ``any_lake``, where every landing write fails for real."""
    if any_lake.is_local:
        blocker = any_lake.path("speed", "clickstream")
        blocker.parent.mkdir(parents=True)
        blocker.write_text("a file where the speed folder should be")
        return any_lake
    bucket = any_lake.root.path.split("/", 1)[0]
    return Lake(f"s3://{bucket}-missing/lake")  # same server and credentials, no such bucket


def test_a_failed_lake_write_commits_nothing(any_lake):
    lake = _broken_lake(any_lake)
    consumer, dlq = FakeConsumer(), FakeDeadLetter()

    async def scenario():
        landing = _land(lake, dlq)
        return await commit_when_landed(consumer, landing, _batch())

    with pytest.raises((OSError, LakeError)):
        asyncio.run(scenario())
    assert consumer.commits == []
    assert list_files(any_lake) == []


def test_a_failed_dead_letter_send_commits_nothing(lake):
    consumer, dlq = FakeConsumer(), FakeDeadLetter(fail_send=True)
    with pytest.raises(ConnectionError, match="broker unreachable"):
        asyncio.run(commit_when_landed(consumer, _land(lake, dlq), _batch()))
    assert consumer.commits == []


def test_a_rejected_dead_letter_ack_commits_nothing(any_lake):
    lake = any_lake
    consumer, dlq = FakeConsumer(), FakeDeadLetter()

    async def scenario():
        step = asyncio.ensure_future(commit_when_landed(consumer, _land(lake, dlq), _batch()))
        await _until(lambda: list_files(lake) and dlq.sent, "file written and DLQ message sent")
        dlq.ack(TimeoutError("no ack from the broker"))
        return await step

    with pytest.raises(TimeoutError, match="no ack"):
        asyncio.run(scenario())
    assert consumer.commits == []
    # the file is durable but uncommitted: the replay rewrites the same name, readers dedup
    (first,) = list_files(lake)
    written = lake.read_bytes(first)
    consumer, dlq = FakeConsumer(), FakeDeadLetter()

    async def replay():
        step = asyncio.ensure_future(commit_when_landed(consumer, _land(lake, dlq), _batch()))
        await _until(lambda: dlq.sent, "DLQ message sent again")
        dlq.ack()
        return await step

    counts, _ = asyncio.run(replay())
    assert counts["valid"] == 5 and consumer.commits == [{TP0: 14, TP1: 2}]
    assert list_files(lake) == [first] and lake.read_bytes(first) == written  # same bytes, one object
    assert read_speed_zone(lake).num_rows == 5


def test_a_column_wise_batch_lands_and_commits_like_the_records_it_holds(any_lake):
    """``Fetched`` (what the worker's confluent-kafka consumer builds, partitions interleaved)
    names the same object and commits the same offsets as the per-partition records."""
    from recomart.streaming.landing import Fetched, next_offsets

    lake = any_lake
    parts = _batch()
    flat = [m for records in parts.values() for m in records]
    order = [0, 4, 1, 5, 2, 3]  # as librdkafka may hand them out: partitions interleaved
    fetched = Fetched(TOPIC, [flat[i].value for i in order], [flat[i].key for i in order],
                      [flat[i].partition for i in order], [flat[i].offset for i in order],
                      [flat[i].timestamp for i in order])
    assert fetched.ranges() == Fetched.from_records(parts).ranges() == {0: (10, 13), 1: (0, 1)}
    assert next_offsets(fetched) == {(TOPIC, 0): 14, (TOPIC, 1): 2} == next_offsets(parts)
    consumer, dlq = FakeConsumer(), FakeDeadLetter()

    async def scenario():
        step = asyncio.ensure_future(commit_when_landed(
            consumer, land_batch(fetched, lake, dlq, topic=TOPIC), fetched))
        await _until(lambda: dlq.sent, "DLQ message sent")
        dlq.ack()
        return await step

    counts, _ = asyncio.run(scenario())
    assert counts == {"valid": 5, "dead_letter": 1, "files": 1}
    assert consumer.commits == [{TP0: 14, TP1: 2}]
    (landed,) = list_files(lake)
    assert landed.name == f"{TOPIC}-{batch_key({0: (10, 13), 1: (0, 1)})}.parquet"
    ((key, value, headers),) = dlq.sent
    assert (key, value, headers["source_partition"], headers["source_offset"]) == (
        b"k13", b"not json", b"0", b"13")
    assert sorted(read_speed_zone(lake)["event_id"].to_pylist()) == ["e0", "e1", "e10", "e11", "e2"]


def _fetched(partition: int, first: int, n: int, bad: int | None = None) -> Fetched:
    offsets = list(range(first, first + n))
    values = [b"not json" if o == bad else _event(1000 * partition + o) for o in offsets]
    return Fetched(TOPIC, values, [f"k{o}".encode() for o in offsets], [partition] * n, offsets,
                   [1714557600000] * n)


def test_batches_in_flight_commit_in_fetch_order_even_when_a_later_one_lands_first():
    """``land_in_order``: batch 2 of 3 lands first, yet batch 1 is committed first, batch 2 only
    after batch 1 is durable; never more than ``depth`` batches land at once; a stop finishes
    every batch in flight."""
    from recomart.streaming.landing import land_in_order

    batches = [_fetched(0, 0, 3), _fetched(0, 3, 2), _fetched(0, 5, 4)]
    empty = _fetched(0, 0, 0)
    log: list[str] = []
    gates: dict[int, asyncio.Event] = {}
    landing_now, most = set(), [0]

    async def scenario():
        queue = list(batches)

        async def fetch():
            await asyncio.sleep(0.01)
            return queue.pop(0) if queue else empty

        async def land(batch):
            k = batch.offsets[0]
            gates[k] = asyncio.Event()
            landing_now.add(k)
            most[0] = max(most[0], len(landing_now))
            await gates[k].wait()
            landing_now.discard(k)
            log.append(f"durable {k}")
            return k

        async def finish(task, batch):
            log.append(f"commit {await task}")

        async def driver():
            await _until(lambda: 3 in gates, "batch 2 landing")
            gates[3].set()  # the later batch is durable first
            await _until(lambda: "durable 3" in log, "batch 2 durable")
            await asyncio.sleep(0.05)
            assert not any(e.startswith("commit") for e in log)  # batch 1 is not durable yet
            gates[0].set()
            await _until(lambda: 5 in gates, "batch 3 landing")
            gates[5].set()

        stop = asyncio.Event()
        drive = asyncio.ensure_future(driver())
        drive.add_done_callback(lambda _: stop.set())
        await land_in_order(fetch, land, finish, stop.is_set, depth=2)
        await drive

    asyncio.run(scenario())
    assert [e for e in log if e.startswith("commit")] == ["commit 0", "commit 3", "commit 5"]
    assert log.index("commit 3") > log.index("durable 0")  # 2 after 1 is durable
    assert most[0] == 2


def test_a_failed_batch_leaves_the_durable_batch_after_it_uncommitted(lake):
    """Two batches land two deep on one writer thread; the first one's dead-letter ack fails
    after the second is durable: nothing is committed (a restart replays both), and the second
    batch's file is there for the replay to rewrite."""
    from concurrent.futures import ThreadPoolExecutor

    from recomart.streaming.landing import land_in_order

    first, second = _fetched(0, 0, 4, bad=2), _fetched(0, 4, 3)
    consumer, dlq = FakeConsumer(), FakeDeadLetter()
    order: list[int] = []
    writer = ThreadPoolExecutor(1)

    def after_write(table, _decoded):
        order.append(table["_kafka_offset"][0].as_py())
        return []

    async def scenario():
        queue = [first, second]

        async def fetch():
            if not queue:
                await _until(lambda: len(order) == 2 and dlq.futures, "both written, DLQ sent")
                dlq.ack(TimeoutError("no ack from the broker"))
                await asyncio.sleep(0.05)
                return _fetched(0, 0, 0)
            return queue.pop(0)

        def land(batch):
            return land_batch(batch, lake, dlq, topic=TOPIC, after_write=after_write,
                              writer=writer)

        await land_in_order(fetch, land, lambda task, batch: commit_when_landed(
            consumer, task, batch), lambda: False, depth=2)

    try:
        with pytest.raises(TimeoutError, match="no ack"):
            asyncio.run(scenario())
    finally:
        writer.shutdown()
    assert consumer.commits == []
    assert order == [0, 4]  # written in batch order on the one writer thread
    assert sorted(p.name for p in list_files(lake)) == sorted(
        f"{TOPIC}-{batch_key({0: r})}.parquet" for r in [(0, 3), (4, 6)])


def test_landing_consumer_refetches_without_librdkafkas_one_second_backoff():
    """librdkafka pauses a partition's prefetch for ``fetch.queue.backoff.ms`` (1000 ms by
    default) once 100k messages are queued; a lander that decodes between fetches drains those
    in well under a second and then waits out the rest (measured: 158k vs 445k messages/s in a
    fetch-then-decode loop). The consumer's own config must override it."""
    from confluent_kafka import Consumer

    from recomart.streaming.consumer import LandingConsumer

    consumer = LandingConsumer(TOPIC, "g", "127.0.0.1:1", session_timeout_s=10)
    try:
        assert 0 < consumer.conf["fetch.queue.backoff.ms"] <= 100
        assert consumer.conf["enable.auto.commit"] is False
        Consumer(consumer.conf).close()  # librdkafka knows every key (no broker needed)
    finally:
        consumer._pool.shutdown(wait=False)
