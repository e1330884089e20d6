"""The landing consumer of the Faust worker: confluent-kafka (librdkafka) on one thread of its own.

Why not aiokafka (Faust's client): profiling the worker (py-spy, bench/bench_stream.py) showed
aiokafka's pure-Python record decoding and per-record ``ConsumerRecord`` objects as the largest
single cost of landing (~21% of the worker's samples). librdkafka decodes in C, fetches ahead in
its own threads and heartbeats in the background, so a long lake write never costs the group
membership. Each message's fields go straight into the columns of a ``landing.Fetched`` batch.

Auto commit and auto offset store are off: offsets are committed only by ``commit`` (exactly the
landed batch's, after it is durable). Every call into the client runs on one dedicated thread,
so the event loop never blocks on the broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from recomart.errors import TransientError
from recomart.streaming.landing import Fetched

log = logging.getLogger(__name__)


#: librdkafka stops prefetching a partition once its local queue holds ``queued.min.messages``
#: (100k) and, by default, waits 1000 ms before it fetches again. A consumer that lands a batch
#: between fetches drains those 100k in well under a second and then stalls for the rest of the
#: backoff: ~0.75 s per 100k messages here, most of the landing wall time (a fetch-then-decode
#: loop on one partition went from 158k to 445k messages/s with 10 ms). 50 ms keeps the queue
#: topped up without refetching in a tight loop.
FETCH_QUEUE_BACKOFF_MS = 50


class CommitRejected(TransientError):
    """The group moved on (a rebalance): the batch's partitions belong to another member now,
    which replays from the last committed offset (the lake dedups)."""


_REJECTED = ("ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "REBALANCE_IN_PROGRESS",
             "_ASSIGNMENT_LOST", "FENCED_INSTANCE_ID", "_STATE", "NOT_COORDINATOR")


class _Keys(Sequence):
    """Message keys read on demand (only dead-lettered messages need theirs)."""

    def __init__(self, msgs: list[Any]) -> None:
        self._msgs = msgs

    def __len__(self) -> int:
        return len(self._msgs)

    def __getitem__(self, i):  # type: ignore[override]
        return self._msgs[i].key()


class LandingConsumer:
    """One topic, one consumer group, manual commits; ``fetch`` returns ``Fetched`` batches."""

    def __init__(self, topic: str, group: str, bootstrap: str, *, session_timeout_s: float,
                 max_partition_fetch_bytes: int = 8 << 20, fetch_max_bytes: int = 32 << 20) -> None:
        session_ms = int(session_timeout_s * 1000)
        self.topic = topic
        self.conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap, "group.id": group, "client.id": f"{group}-lander",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": min(2000, max(100, session_ms // 4)),
            "max.poll.interval.ms": max(300_000, session_ms * 2),
            "fetch.max.bytes": fetch_max_bytes, "max.partition.fetch.bytes": max_partition_fetch_bytes,
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            "logger": logging.getLogger(f"{__name__}.librdkafka"),
        }
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"lander-{topic}")
        self._consumer: Any = None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        await self._call(self._start)

    def _start(self) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer(self.conf)
        self._consumer.subscribe([self.topic])

    async def fetch(self, limit: int, within_s: float,
                    should_stop: Callable[[], bool] = lambda: False) -> Fetched:
        """Up to ``limit`` messages or whatever arrived within ``within_s`` seconds."""
        return await self._call(self._fetch, limit, within_s, should_stop)

    def _fetch(self, limit: int, within_s: float, should_stop: Callable[[], bool]) -> Fetched:
        from confluent_kafka import KafkaError, KafkaException

        msgs: list[Any] = []
        deadline = time.monotonic() + within_s
        consume = self._consumer.consume
        while len(msgs) < limit and not should_stop():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = consume(limit - len(msgs), min(left, 0.25))
            good = [m for m in got if m.error() is None]
            if len(good) != len(got):
                for m in got:
                    err = m.error()
                    if err is None or err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():
                        raise KafkaException(err)
                    log.warning("consumer error on %s (retried by the client): %s", self.topic, err)
            msgs += good
        # column-wise, one comprehension per field (cheaper than appends per message)
        stamps: list[int | None] = [m.timestamp()[1] for m in msgs]
        if stamps and min(stamps) < 0:  # -1: the broker/producer set no timestamp
            stamps = [t if t >= 0 else None for t in stamps]
        return Fetched(self.topic, [m.value() for m in msgs], _Keys(msgs),
                       [m.partition() for m in msgs], [m.offset() for m in msgs], stamps)

    async def commit(self, offsets: Mapping[Any, int]) -> None:
        """Commit ``{(topic, partition): next offset}`` synchronously (the broker acknowledged it
        when this returns); a rebalance that took the partitions raises ``CommitRejected``."""
        await self._call(self._commit, dict(offsets))

    def _commit(self, offsets: dict[Any, int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        tps = [TopicPartition(tp[0], tp[1], off) for tp, off in offsets.items()]
        try:
            result = self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is not None and hasattr(err, "name") and err.name() in _REJECTED:
                raise CommitRejected(f"commit of {self.topic} rejected: {err}") from exc
            raise
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            names = {tp.error.name() for tp in failed}
            if names <= set(_REJECTED):
                raise CommitRejected(f"commit of {self.topic} rejected: {failed}")
            raise KafkaException(failed[0].error)

    def highwater(self, tp: Any) -> int | None:
        """The partition's high-water mark from the last fetch (no broker round trip)."""
        from confluent_kafka import TopicPartition

        if self._consumer is None:
            return None
        try:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(tp[0], tp[1]),
                                                           cached=True)
        except Exception:  # metrics never fail a landing
            return None
        return high if high is not None and high >= 0 else None

    async def stop(self) -> None:
        try:
            if self._consumer is not None:
                await self._call(self._consumer.close)  # leaves the group; commits nothing
        finally:
            self._pool.shutdown(wait=False)
