"""One landing step of the speed layer, with its consumer and dead-letter producer passed in.

The ordering contract lives here, apart from Faust and aiokafka, so it can be tested on its own:
a batch's offsets are committed only after its valid events are durable in the lake **and**
every dead-letter send of the batch is acknowledged by the broker. "Durable" is the lake's atomic
write of a write-once object named by the batch's offsets (``sink.write_batch``): on a local lake
a fsynced file renamed into a fsynced folder, on an object store one PUT that returned (S3 has no
rename and no fsync; a PUT is all-or-nothing and acknowledged once stored). One code path: the
backend difference lives in ``recomart.lake.Lake``. A failed lake write or a failed (or
unacknowledged) dead-letter send raises, and nothing is committed: the batch is replayed after a
restart, rewrites the same object names, and readers dedup by ``event_id`` (exposures: by
``request_id``); a replayed dead-letter message is an exact copy with the same source partition
and offset headers.

The worker (``recomart.streaming.app.Lander``) passes its aiokafka consumer and an adapter over
the Faust dead-letter topic; anything with the same two methods works (see the protocols).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from recomart.lake import Lake
from recomart.streaming.events import decode_batch
from recomart.streaming.sink import SPEED_DIR, batch_table, write_batch


class DeadLetterSender(Protocol):
    """Sends one dead-letter message; the awaitable it returns resolves on the broker's ack."""

    async def send(self, *, key: bytes | None, value: bytes | None,
                   headers: list[tuple[str, bytes]]) -> Awaitable[Any]: ...


class OffsetCommitter(Protocol):
    """The consumer side: commits ``{topic-partition: next offset}`` (aiokafka's ``commit``)."""

    async def commit(self, offsets: Mapping[Any, int]) -> Any: ...


Summarize = Callable[[pa.Table], list[dict[str, Any]]]
AfterWrite = Callable[[pa.Table, Any], list[dict[str, Any]]]
"""Runs in the writer thread once a batch's files are durable: ``(table, decoded) -> summaries``
(the worker pushes the batch to the online store and summarises activity here)."""


@dataclass(frozen=True)
class Codec:
    """How one topic's messages become a landed table: the clickstream's, or the exposures'.

    ``decode(values)`` returns an object with ``len()`` (valid records) and ``bad`` (``[(index,
    reason)]``); ``to_table(decoded, partitions, offsets, kafka_ts)`` the table written under
    ``speed/<subdir>/date=<day of ts_column>/``.
    """

    decode: Callable[[list[bytes | None]], Any]
    to_table: Callable[..., pa.Table] = batch_table
    subdir: str = SPEED_DIR
    ts_column: str = "timestamp"


def clickstream_codec(max_message_bytes: int) -> Codec:
    return Codec(decode=lambda values: decode_batch(values, max_message_bytes))


def exposures_codec() -> Codec:
    """The serving API's exposure records, landed in ``speed/exposures`` by their ``ts``."""
    from recomart.streaming import exposures

    return Codec(decode=exposures.decode_exposures, to_table=exposures.exposures_table,
                 subdir=exposures.SPEED_DIR, ts_column="ts")


def dlq_headers(reason: str, topic: str, partition: int, offset: int,
                timestamp: float | None) -> list[tuple[str, bytes]]:
    ts_ms = int(timestamp * 1000) if timestamp is not None else -1
    return [("reason", reason.encode()), ("source_topic", topic.encode()),
            ("source_partition", str(partition).encode()), ("source_offset", str(offset).encode()),
            ("source_timestamp_ms", str(ts_ms).encode())]


@dataclass
class Fetched:
    """One landing batch, column-wise: every message the consumer fetched, in offset order within
    each partition (valid and malformed alike). The worker's confluent-kafka source builds it
    straight from librdkafka's messages (no per-message Python record objects); ``from_records``
    takes aiokafka ``getmany`` output (``{TopicPartition: [ConsumerRecord]}``)."""

    topic: str
    values: list[bytes | None]
    keys: Sequence[bytes | None]  # read only for dead-lettered messages (may be lazy)
    partitions: list[int]
    offsets: list[int]
    timestamps: list[int | None]  # ms since epoch (None: the broker has none)
    _ranges: dict[int, tuple[int, int]] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def from_records(cls, parts: Mapping[Any, Sequence[Any]]) -> Fetched:
        flat = [m for records in parts.values() for m in records]
        topic = flat[0].topic if flat else ""
        return cls(topic, [m.value for m in flat], [m.key for m in flat],
                   [m.partition for m in flat], [m.offset for m in flat],
                   [m.timestamp for m in flat])

    def ranges(self) -> dict[int, tuple[int, int]]:
        """``{partition: (first, last offset)}`` of the batch (the object name's key)."""
        if self._ranges is None:
            import numpy as np

            parts = np.asarray(self.partitions, dtype=np.int64)
            offs = np.asarray(self.offsets, dtype=np.int64)
            self._ranges = {int(p): (int(offs[sel].min()), int(offs[sel].max()))
                            for p in np.unique(parts) for sel in [parts == p]}
        return dict(self._ranges)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """``{(topic, partition): last offset + 1}``: what to commit once the batch is landed."""
        return {(self.topic, p): last + 1 for p, (_, last) in self.ranges().items()}


def next_offsets(parts: Mapping[Any, Sequence[Any]] | Fetched) -> dict[Any, int]:
    """The offsets to commit for a batch: one past its last record, per topic-partition."""
    if isinstance(parts, Fetched):
        return parts.next_offsets()
    return {tp: records[-1].offset + 1 for tp, records in parts.items() if records}


def _write(lake: Lake, topic: str, table: pa.Table, ranges: dict[int, tuple[int, int]],
           codec: Codec, decoded: Any, after_write: AfterWrite | None,
           spent: dict[str, float]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Runs in a worker thread: the durable write, then ``after_write`` beside it (their CPU
    seconds in this thread go to ``spent``)."""
    c0 = time.thread_time()
    files = write_batch(lake, topic, table, ranges, codec.subdir, codec.ts_column)
    c1 = time.thread_time()
    summaries = after_write(table, decoded) if after_write is not None else []
    spent["lake_cpu_s"] = c1 - c0
    spent["after_write_cpu_s"] = time.thread_time() - c1
    return files, summaries


def _add_times(times: MutableMapping[str, float], spent: Mapping[str, float]) -> None:
    for key, value in spent.items():
        times[key] = times.get(key, 0.0) + value


async def land_batch(parts: Mapping[Any, Sequence[Any]] | Fetched, lake: Lake,
                     dead_letter: DeadLetterSender, *, topic: str, max_message_bytes: int = 16 * 1024,
                     summarize: Summarize | None = None, codec: Codec | None = None,
                     after_write: AfterWrite | None = None,
                     times: MutableMapping[str, float] | None = None,
                     writer: Executor | None = None
                     ) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Validate, dead-letter and durably write one batch: a ``Fetched`` batch, or
    ``ConsumerRecord``s per topic-partition in offset order (as aiokafka's ``getmany`` returns).

    ``codec`` defaults to the clickstream's; ``summarize`` (clickstream activity) is shorthand for
    an ``after_write`` that ignores the decoded batch. Returns ``(counts, summaries)`` once the
    files are durable and every dead-letter send is acknowledged; raises when the lake write or a
    dead-letter send fails.

    The write goes to ``writer`` (default: the loop's default executor) before the first
    ``await``, so batches started in order reach a one-thread ``writer`` in order (their
    ``after_write`` effects too); the dead-letter sends go out while the file is written.
    """
    codec = codec or clickstream_codec(max_message_bytes)
    if after_write is None and summarize is not None:
        after_write = lambda table, _decoded: summarize(table)  # noqa: E731
    t0, c0 = time.perf_counter(), time.thread_time()
    batch = parts if isinstance(parts, Fetched) else Fetched.from_records(parts)
    decoded = codec.decode(batch.values)
    partitions, offsets, kafka_ts = batch.partitions, batch.offsets, batch.timestamps
    ranges = batch.ranges()
    t1, c1 = time.perf_counter(), time.thread_time()
    spent: dict[str, float] = {"decode_cpu_s": c1 - c0}
    written: asyncio.Future[tuple[list[Any], list[dict[str, Any]]]] | None = None
    if len(decoded):
        table = codec.to_table(decoded, partitions, offsets, kafka_ts)
        spent["table_cpu_s"] = time.thread_time() - c1
        written = asyncio.get_running_loop().run_in_executor(
            writer, _write, lake, topic, table, ranges, codec, decoded, after_write, spent)
    pending: list[Any] = []
    try:
        if decoded.bad:  # all handed to the producer at once, not one event-loop turn each
            sent = await asyncio.gather(*(dead_letter.send(
                key=batch.keys[i], value=batch.values[i],
                headers=dlq_headers(reason, batch.topic or topic, partitions[i], offsets[i],
                                    None if kafka_ts[i] is None else kafka_ts[i] / 1000))
                for i, reason in decoded.bad), return_exceptions=True)
            pending = [f for f in sent if not isinstance(f, BaseException)]
            failed = [f for f in sent if isinstance(f, BaseException)]
            if failed:
                raise failed[0]
        files: list[Any] = []
        summaries: list[dict[str, Any]] = []
        t2 = time.perf_counter()
        if written is not None:
            files, summaries = await written
    except BaseException:
        for fut in pending:  # a failed batch: do not leave unobserved send futures behind
            if isinstance(fut, asyncio.Future) and not fut.done():
                fut.cancel()
        if written is not None and not written.done():  # a failed send: the write goes on
            written.add_done_callback(lambda f: f.cancelled() or f.exception())  # uncommitted
        raise
    t3 = time.perf_counter()
    if pending:
        await asyncio.gather(*pending)  # DLQ messages acknowledged by the broker (acks=all)
    if times is not None:
        times["validate_s"] = times.get("validate_s", 0.0) + t1 - t0
        times["dlq_send_s"] = times.get("dlq_send_s", 0.0) + t2 - t1
        times["write_wait_s"] = times.get("write_wait_s", 0.0) + t3 - t2
        times["dlq_wait_s"] = times.get("dlq_wait_s", 0.0) + time.perf_counter() - t3
        _add_times(times, spent)
    return {"valid": len(decoded), "dead_letter": len(decoded.bad), "files": len(files)}, summaries


B = TypeVar("B")
R = TypeVar("R")


async def land_in_order(fetch: Callable[[], Awaitable[B]], land: Callable[[B], Awaitable[R]],
                        finish: Callable[[asyncio.Future[R], B], Awaitable[None]],
                        should_stop: Callable[[], bool], depth: int = 2) -> None:
    """The landing loop: fetch the next batch while up to ``depth`` earlier ones land (decode of
    one batch beside the durable write of the one before it), and ``finish`` them (await the
    landing, then commit its offsets) strictly in fetch order. So a batch's offsets are never
    committed before every earlier batch is durable: a crash replays from the first batch not
    yet finished. ``depth=1``: one batch lands while the next is fetched. A stop (or a failed
    fetch) finishes every batch in flight, in order; a failed ``finish`` commits no later batch.
    Empty batches are skipped.
    """
    inflight: deque[tuple[asyncio.Future[R], B]] = deque()

    async def finish_ready(every: bool) -> None:
        while inflight and (every or inflight[0][0].done() or len(inflight) >= depth):
            task, batch = inflight.popleft()
            try:
                await finish(task, batch)
            except BaseException:  # batch k failed: nothing after it is ever committed
                inflight.clear()
                raise

    try:
        while not should_stop():
            batch = await fetch()
            await finish_ready(False)
            if len(batch):  # type: ignore[arg-type]
                inflight.append((asyncio.ensure_future(land(batch)), batch))
    finally:
        await finish_ready(True)


async def commit_when_landed(consumer: OffsetCommitter, landing: Awaitable[Any],
                             parts: Mapping[Any, Sequence[Any]] | Fetched) -> Any:
    """Await a batch's landing, then commit exactly its offsets; a failed landing raises before
    anything is committed. Returns what the landing returned."""
    result = await landing
    await consumer.commit(next_offsets(parts))
    return result
