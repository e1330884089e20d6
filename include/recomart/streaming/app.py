"""The Faust speed-layer app: ``faust -A recomart.streaming.app worker`` (or ``recomart stream worker``).

Agents:

- ``Lander`` (a Faust-managed service) consumes the clickstream as raw bytes in batches with its
  own aiokafka consumer (auto-commit off), validates each batch (``events.split_batch``), sends bad
  messages to the dead-letter topic (original bytes, reason and source offset in headers) and
  writes good ones to the lake speed zone (``sink.write_batch``: deterministic names, fsync +
  rename). Only then does it commit that batch's offsets: at-least-once, deduped by ``event_id``.
  Faust's own stream path (``stream.take_events``) was measured at ~3k events/s here and acks a
  batch in a ``finally`` clause even when the body fails, hence the plain consumer. A stop waits
  for the batch in flight; any failure ends the process (``os._exit``) without a commit.
- ``trend`` folds per-batch activity summaries into the tumbling-window table ``trending``
  (views / carts / purchases per product per window), served as JSON at ``/trending/``.
- ``decide`` (see ``decisions``) scores active sessions with the champion model off the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from typing import Any

import faust
import mode

from recomart.config import get_settings
from recomart.lake import Lake
from recomart.streaming import activity, decisions
from recomart.streaming.events import split_batch
from recomart.streaming.settings import get_stream_settings
from recomart.streaming.sink import Landed, write_batch

log = logging.getLogger(__name__)

settings = get_settings()
ss = get_stream_settings()
BOOTSTRAP = settings.kafka_bootstrap or "127.0.0.1:9092"
ACTIVITY_TOPIC = f"{settings.clickstream_topic}-activity"

app = faust.App(
    ss.app_id,
    broker=[f"kafka://{b.strip()}" for b in BOOTSTRAP.split(",")],
    store="memory://",
    topic_partitions=ss.partitions,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=ss.session_timeout_s,
    broker_heartbeat_interval=min(2.0, ss.session_timeout_s / 4),
    broker_rebalance_timeout=max(30.0, ss.session_timeout_s * 2),
    broker_max_poll_records=ss.batch_max,
    broker_commit_interval=1.0,
    stream_buffer_maxsize=max(4096, ss.batch_max * 2),
    producer_acks=-1,
    web_port=ss.web_port,
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
)

dead_letter = app.topic(settings.dead_letter_topic, key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw", partitions=ss.partitions)
activity_topic = app.topic(ACTIVITY_TOPIC, value_serializer="json", partitions=ss.partitions,
                           internal=True)
recommendations = app.topic(settings.recommendations_topic, key_serializer="raw",
                            value_serializer="json", partitions=ss.partitions)

trending = app.Table("trending", default=list, partitions=ss.partitions).tumbling(
    ss.window_s, expires=timedelta(seconds=ss.window_s * 60), key_index=True).relative_to_stream()

STATS: dict[str, int] = {"batches": 0, "valid": 0, "dead_letter": 0, "files": 0}
TIMES: dict[str, float] = {"validate_s": 0.0, "write_s": 0.0, "dlq_wait_s": 0.0}


def dlq_headers(reason: str, topic: str, partition: int, offset: int,
                timestamp: float | None) -> list[tuple[str, bytes]]:
    ts_ms = int(timestamp * 1000) if timestamp is not None else -1
    return [("reason", reason.encode()), ("source_topic", topic.encode()),
            ("source_partition", str(partition).encode()), ("source_offset", str(offset).encode()),
            ("source_timestamp_ms", str(ts_ms).encode())]


async def land_batch(records: Sequence[Any], lake: Lake) -> dict[str, int]:
    """Validate, dead-letter and durably write one batch of aiokafka ``ConsumerRecord``s.

    Returns counts; raises when the lake write or a dead-letter send fails.
    """
    t0 = time.perf_counter()
    good, bad = split_batch([m.value for m in records], ss.max_message_bytes)
    t1 = time.perf_counter()
    ranges: dict[int, tuple[int, int]] = {}
    for m in records:
        r = ranges.get(m.partition)
        ranges[m.partition] = (m.offset, m.offset) if r is None else (min(r[0], m.offset),
                                                                      max(r[1], m.offset))
    pending = []
    for i, reason in bad:
        m = records[i]
        ts = m.timestamp / 1000 if m.timestamp is not None else None
        pending.append(await dead_letter.send(
            key=m.key, value=m.value, force=True,
            headers=dlq_headers(reason, m.topic, m.partition, m.offset, ts)))
    rows = [Landed(ev, records[i].partition, records[i].offset, records[i].timestamp)
            for i, ev in good]
    files: list = []
    if rows:
        files = await asyncio.to_thread(write_batch, lake, settings.clickstream_topic, rows, ranges)
    t2 = time.perf_counter()
    if pending:
        await asyncio.gather(*pending)  # DLQ messages acknowledged by the broker (acks=all)
    TIMES["validate_s"] += t1 - t0
    TIMES["write_s"] += t2 - t1
    TIMES["dlq_wait_s"] += time.perf_counter() - t2
    if rows and (ss.trending or ss.decisions):
        for summary in activity.summarize(((r.partition, r.event) for r in rows), ss.window_s):
            activity_topic.send_soon(value=summary, timestamp=float(summary["window_start"]),
                                     partition=summary["partition"] % ss.partitions)
    return {"valid": len(rows), "dead_letter": len(bad), "files": len(files)}


async def _run_to_completion(work: Awaitable[dict[str, int]]) -> dict[str, int]:
    """Finish the batch even when the service is being stopped."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


@app.service
class Lander(mode.Service):
    """Lands the clickstream: its own consumer (group ``<app id>-land``), manual commits.

    One loop: fetch up to ``batch_max`` records or for ``batch_within_s`` -> ``land_batch`` (files
    durable, DLQ acknowledged) -> ``consumer.commit(next offsets of exactly this batch)``. Auto
    commit is off, so nothing else ever commits; a crash replays from the last committed batch.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lake = Lake()

    def _consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        session_ms = int(ss.session_timeout_s * 1000)
        return AIOKafkaConsumer(
            settings.clickstream_topic, bootstrap_servers=BOOTSTRAP, group_id=f"{ss.app_id}-land",
            enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(2000, session_ms // 4), max_poll_records=ss.batch_max,
            max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20,
            rebalance_timeout_ms=max(30_000, session_ms * 2))

    async def _fetch(self, consumer: Any) -> list[Any]:
        batch: list[Any] = []
        deadline = time.monotonic() + ss.batch_within_s
        while len(batch) < ss.batch_max and not self.should_stop:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = await consumer.getmany(timeout_ms=int(left * 1000),
                                         max_records=ss.batch_max - len(batch))
            for records in got.values():
                batch.extend(records)
        return batch

    @mode.Service.task
    async def _landing(self) -> None:
        from aiokafka import TopicPartition
        from aiokafka.errors import CommitFailedError, IllegalStateError

        consumer = self._consumer()
        await consumer.start()
        try:
            while not self.should_stop:
                records = await self._fetch(consumer)
                if not records:
                    continue
                try:
                    counts = await _run_to_completion(land_batch(records, self.lake))
                except asyncio.CancelledError:
                    raise
                except BaseException:
                    log.critical("landing batch failed: exiting without committing its offsets",
                                 exc_info=True)
                    logging.shutdown()
                    os._exit(70)
                offsets: dict[Any, int] = {}
                for m in records:
                    tp = TopicPartition(m.topic, m.partition)
                    offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
                try:
                    await consumer.commit(offsets)
                except (CommitFailedError, IllegalStateError) as exc:
                    log.warning("commit after a rebalance failed (%s): the batch will be "
                                "replayed and deduped by event_id", exc)
                STATS["batches"] += 1
                for k, v in counts.items():
                    STATS[k] += v
                if STATS["batches"] % 50 == 1:
                    log.info("landed %s", STATS)
        finally:
            await consumer.stop()


@app.agent(activity_topic, name="trend")
async def trend(stream: faust.StreamT) -> None:
    """Fold summaries into the window table, one table write per (window, product) per round."""
    async for events in stream.take_events(1000, within=ss.trend_flush_s):
        # table writes need a current event (changelog partition): the last one of the round
        stream._set_current_event(events[-1])
        merged: dict[int, dict[str, list[int]]] = {}
        sessions: dict[str, Any] = {}
        for summary in (e.value for e in events):
            window = merged.setdefault(int(summary["window_start"]), {})
            for product_id, delta in summary["counts"].items():
                window[product_id] = activity.add_counts(window.get(product_id), delta)
            sessions.update(summary.get("sessions", {}))
        for start, counts in merged.items():
            view = trending.relative_to(float(start))
            for product_id, delta in counts.items():
                view[product_id] = activity.add_counts(view[product_id].value(), delta)
        if ss.decisions:
            decider.observe(sessions)


def trending_now(limit: int = 20) -> dict[str, Any]:
    view = trending.relative_to_now()
    start = int(time.time() // ss.window_s * ss.window_s)
    return {"window_start": start, "window_s": ss.window_s,
            "products": activity.top_products(view.items(), limit)}


@app.page("/trending/")
async def trending_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    limit = int(request.query.get("limit", "20"))
    return web.json(trending_now(limit))


@app.page("/stats/")
async def stats_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    return web.json({"landing": STATS, "seconds": {k: round(v, 3) for k, v in TIMES.items()},
                     "decisions": decider.stats})


decider = decisions.Decider(top_n=settings.top_n, interval_s=ss.decision_interval_s,
                            idle_s=ss.session_idle_s, refresh_s=ss.champion_refresh_s)


@app.timer(interval=max(1.0, ss.decision_interval_s))
async def decide() -> None:
    """Score the sessions that were active since the last round and publish recommendations."""
    if not ss.decisions:
        return
    popular = [r["product_id"] for r in trending_now(settings.top_n)["products"]]
    for record in await decider.decide(popular):
        await recommendations.send(key=record["session_id"].encode(), value=record, force=True)


def main() -> None:
    app.main()


if __name__ == "__main__":
    main()
