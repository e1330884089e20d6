"""The Faust speed-layer app: ``faust -A recomart.streaming.app worker`` (or ``recomart stream worker``).

Agents:

- ``Lander`` (a Faust-managed service) consumes the clickstream as raw bytes in batches with its
  own confluent-kafka consumer (``streaming.consumer``: librdkafka on a thread of its own, auto
  commit off; aiokafka's Python record decoding was the largest landing cost), validates each
  batch column-wise (``events.decode_batch``), sends bad messages to the dead-letter topic
  (original bytes, reason and source offset in headers) and writes good ones to the lake speed
  zone as one Arrow table (``sink.write_batch``: one write-once object per batch and event date,
  named by its offsets; durable through ``Lake``: fsync + rename locally, one PUT on ``s3://``).
  Only then does it commit that batch's offsets: at-least-once, deduped by ``event_id``.
  Faust's own stream path (``stream.take_events``) was measured at ~3k events/s here and acks a
  batch in a ``finally`` clause even when the body fails, hence the plain consumer. The next
  batch is fetched while the one before is validated and the one before that written (one
  writer thread); commits stay in batch order. A stop waits
  for the batch in flight; any failure ends the process (``os._exit``) without a commit. The
  landing step and its commit ordering live in ``recomart.streaming.landing``.
- ``ExposureLander`` lands the serving API's ``recommendation-exposures`` the same way (own group,
  DLQ ``recommendation-exposures-dlq``, objects in ``speed/exposures``, commit once durable; readers
  dedup by ``request_id``).
- Online store: when ``RECOMART_ONLINE_STORE_URL`` is set, each landed clickstream batch is also
  pushed (after its files are durable, before the commit) to the recent-events lists and the
  trending window of the online store (``recomart.serving.online_store``): the real-time view the
  API merges at request time. A failed push is logged and counted (``/stats/``), never blocks
  landing: the lake stays the source of truth.
- ``trend`` folds per-batch activity summaries into the tumbling-window table ``trending``
  (views / carts / purchases per product per window), served as JSON at ``/trending/``.
- ``decide`` (see ``decisions``) scores active sessions with the champion model off the hot path.

Faust's data directory (table state, version folders) is ``<machine_state_dir>/faust``
(``<lake_root>/state/faust`` for a local lake, ``RECOMART_LOCAL_STATE_DIR`` for an ``s3://`` one),
never the working directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust
import mode
import pyarrow as pa

from recomart.config import get_settings
from recomart.lake import Lake
from recomart.streaming import activity, decisions, landing, metrics
from recomart.streaming.consumer import CommitRejected, LandingConsumer
from recomart.streaming.events import DecodedBatch

log = logging.getLogger(__name__)

settings = get_settings()
BOOTSTRAP = settings.kafka_bootstrap or "127.0.0.1:9092"
ACTIVITY_TOPIC = f"{settings.clickstream_topic}-activity"
DATADIR = settings.stream_datadir or settings.machine_state_dir / "faust"
DLQ_BATCH_BYTES = 512 * 1024  # the worker's producer batches (dead letters, activity, changelog)
PIPELINE_DEPTH = 2  # batches landing at once (one validated while the one before is written)


class SpeedApp(faust.App):
    """``faust.App`` that can start on a fresh lake: Faust creates its data directory without
    parents (``mkdir(exist_ok=True)``), so the lake folders above it are made first."""

    async def on_first_start(self) -> None:
        Path(self.conf.datadir).mkdir(parents=True, exist_ok=True)
        await super().on_first_start()


app = SpeedApp(
    settings.stream_app_id,
    datadir=str(DATADIR),
    broker=[f"kafka://{b.strip()}" for b in BOOTSTRAP.split(",")],
    store="memory://",
    topic_partitions=settings.stream_partitions,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=settings.stream_session_timeout_s,
    broker_heartbeat_interval=min(2.0, settings.stream_session_timeout_s / 4),
    broker_rebalance_timeout=max(30.0, settings.stream_session_timeout_s * 2),
    broker_max_poll_records=settings.stream_batch_max,
    broker_commit_interval=1.0,
    stream_buffer_maxsize=max(4096, settings.stream_batch_max * 2),
    producer_acks=-1,
    # aiokafka makes a send wait for a broker round trip whenever its partition's batch is full:
    # with the 16 KiB default every oversized dead letter (> 16 KiB by definition) filled one,
    # and the dead-letter sends of a 10k batch (~1 % malformed) took most of its landing time
    producer_max_batch_size=DLQ_BATCH_BYTES,
    web_port=settings.stream_web_port,
    web_bind=settings.stream_web_host,
    web_host=socket.gethostname() if settings.stream_web_host in ("0.0.0.0", "::")
    else settings.stream_web_host,
)

dead_letter = app.topic(settings.dead_letter_topic, key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw",
                        partitions=settings.stream_partitions)
activity_topic = app.topic(ACTIVITY_TOPIC, value_serializer="json",
                           partitions=settings.stream_partitions, internal=True)
exposures_dead_letter = app.topic(settings.exposures_dead_letter_topic, key_type=bytes,
                                  value_type=bytes, key_serializer="raw", value_serializer="raw",
                                  partitions=settings.stream_partitions)
recommendations = app.topic(settings.recommendations_topic, key_serializer="raw",
                            value_serializer="json", partitions=settings.stream_partitions)

trending = app.Table("trending", default=list, partitions=settings.stream_partitions).tumbling(
    settings.stream_window_s, expires=timedelta(seconds=settings.stream_window_s * 60),
    key_index=True).relative_to_stream()

STATS: dict[str, int] = {"batches": 0, "valid": 0, "dead_letter": 0, "files": 0,
                         "online_store_events": 0, "online_store_errors": 0}
EXPOSURE_STATS: dict[str, int] = {"batches": 0, "valid": 0, "dead_letter": 0, "files": 0}
_ONLINE: dict[str, Any] = {}


def online_store() -> Any:
    """The online store writer (None when ``RECOMART_ONLINE_STORE_URL`` is unset)."""
    if "store" not in _ONLINE:
        from recomart.serving.online_store import store_from_settings

        _ONLINE["store"] = store_from_settings(settings)
        log.info("online store: %s", _ONLINE["store"].url if _ONLINE["store"] else
                 "off (RECOMART_ONLINE_STORE_URL unset)")
    return _ONLINE["store"]


def push_online(decoded: DecodedBatch) -> None:
    """Recent events per user/session and trending, for the serving API (never raises)."""
    store = online_store()
    if store is None or not len(decoded):
        return
    try:
        STATS["online_store_events"] += store.record(
            decoded.user_id, decoded.session_id, decoded.product_id, decoded.event_type,
            [us / 1e6 for us in decoded.timestamp_us], decoded.event_id)
    except Exception as exc:  # the lake is the truth; the real-time view catches up next batch
        STATS["online_store_errors"] += 1
        log.warning("online store push failed for %d events (%s); landing goes on",
                    len(decoded), exc)
TIMES: dict[str, float] = {"validate_s": 0.0, "dlq_send_s": 0.0, "write_wait_s": 0.0,
                           "dlq_wait_s": 0.0}


class FaustDeadLetter:
    """A Faust dead-letter topic as a ``landing.DeadLetterSender`` (``send`` returns the ack
    future)."""

    def __init__(self, topic: Any) -> None:
        self.topic = topic

    async def send(self, *, key: bytes | None, value: bytes | None,
                   headers: list[tuple[str, bytes]]) -> Any:
        return await self.topic.send(key=key, value=value, headers=headers, force=True)


def _after_clickstream_write(table: pa.Table, decoded: DecodedBatch) -> list[dict[str, Any]]:
    """In the writer thread, once the batch is durable: the online-store push, then the activity
    summaries for trending and decisions."""
    push_online(decoded)
    if settings.stream_trending or settings.stream_decisions:
        return activity.summarize(table, settings.stream_window_s, settings.stream_decisions)
    return []


async def land_batch(parts: landing.Fetched, lake: Lake, writer: Executor | None = None
                     ) -> dict[str, int]:
    """``landing.land_batch`` with the worker's topics and settings; then the activity summaries."""
    t0 = time.perf_counter()
    counts, summaries = await landing.land_batch(
        parts, lake, FaustDeadLetter(dead_letter), topic=settings.clickstream_topic,
        codec=landing.clickstream_codec(settings.stream_max_message_bytes),
        after_write=_after_clickstream_write, times=TIMES, writer=writer)
    metrics.observe_landing(time.perf_counter() - t0)
    for summary in summaries:
        activity_topic.send_soon(value=summary, timestamp=float(summary["window_start"]),
                                 partition=summary["partition"] % settings.stream_partitions)
    return counts


EXPOSURES_CODEC = landing.exposures_codec()


async def land_exposures(parts: landing.Fetched, lake: Lake, writer: Executor | None = None
                         ) -> dict[str, int]:
    """``landing.land_batch`` for exposure records: the same durability and commit contract."""
    counts, _ = await landing.land_batch(parts, lake, FaustDeadLetter(exposures_dead_letter),
                                         topic=settings.exposures_topic, codec=EXPOSURES_CODEC,
                                         writer=writer)
    return counts


@app.service
class Lander(mode.Service):
    """Lands the clickstream: its own consumer (group ``<app id>-land``), manual commits.

    One loop (``landing.land_in_order``): fetch up to ``stream_batch_max`` records or for
    ``stream_batch_within_s`` -> ``land_batch`` (files durable, DLQ acknowledged) ->
    ``consumer.commit(next offsets of exactly this batch)``. Up to ``PIPELINE_DEPTH`` batches are
    in flight: batch N+2 is fetched while N+1 is validated and N is written (pyarrow's encode and
    the fsyncs release the GIL), on one writer thread so files and their after-write effects
    stay in batch order; N is committed before N+1, and N+1 only once N is durable. Auto commit
    is off, so nothing else ever commits; a crash replays from the last committed batch.
    """

    topic = settings.clickstream_topic
    group = f"{settings.stream_app_id}-land"
    stats = STATS
    land = staticmethod(land_batch)
    observe = True  # the Prometheus series count clickstream events

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lake = Lake()
        self.writer: ThreadPoolExecutor | None = None

    def _consumer(self) -> LandingConsumer:
        return LandingConsumer(self.topic, self.group, BOOTSTRAP,
                               session_timeout_s=settings.stream_session_timeout_s)

    async def _fetch(self, consumer: LandingConsumer) -> landing.Fetched:
        """Up to ``stream_batch_max`` records or ``stream_batch_within_s`` (column-wise)."""
        return await consumer.fetch(settings.stream_batch_max, settings.stream_batch_within_s,
                                    lambda: self.should_stop)

    async def _finish(self, consumer: LandingConsumer, task: asyncio.Future[dict[str, int]],
                      parts: landing.Fetched) -> None:
        """Wait for a batch's landing (files durable, DLQ acknowledged), then commit exactly its
        offsets. A failed landing ends the process without a commit."""
        try:
            counts = await landing.commit_when_landed(consumer, asyncio.shield(task), parts)
        except asyncio.CancelledError:
            raise
        except CommitRejected as exc:
            log.warning("commit after a rebalance failed (%s): the batch will be "
                        "replayed and deduped by event_id", exc)
            counts = task.result()
        except BaseException:
            log.critical("landing batch failed (lake write, dead-letter ack or commit): exiting; "
                         "its uncommitted offsets are replayed after a restart",
                         exc_info=True)
            logging.shutdown()
            os._exit(70)
        if self.observe:
            metrics.observe_commit(consumer, parts, counts)
        self.stats["batches"] += 1
        for k, v in counts.items():
            self.stats[k] += v
        if self.stats["batches"] % 50 == 1:
            log.info("landed %s: %s", self.topic, self.stats)

    @mode.Service.task
    async def _landing(self) -> None:
        """Fetch batch N+2 while N+1 is validated and N written; commit each once it and every
        batch before it are durable, in order."""
        try:  # an unusable lake (missing bucket, rejected credentials) fails before consuming
            await asyncio.to_thread(self.lake.check)
        except Exception as exc:
            log.critical("lake %s cannot be used: %s; exiting before consuming %s",
                         self.lake.uri(self.lake.root), exc, self.topic)
            logging.shutdown()
            os._exit(78)  # EX_CONFIG
        consumer = self._consumer()
        self.writer = ThreadPoolExecutor(1, thread_name_prefix=f"writer-{self.topic}")
        try:
            await consumer.start()
            await landing.land_in_order(
                lambda: self._fetch(consumer), lambda parts: self.land(parts, self.lake, self.writer),
                lambda task, parts: self._finish(consumer, task, parts), lambda: self.should_stop,
                depth=PIPELINE_DEPTH)
        finally:
            try:
                await consumer.stop()
            finally:
                self.writer.shutdown(wait=False)


@app.service
class ExposureLander(Lander):
    """Lands ``recommendation-exposures`` (group ``<app id>-land-exposures``), same loop."""

    topic = settings.exposures_topic
    group = f"{settings.stream_app_id}-land-exposures"
    stats = EXPOSURE_STATS
    land = staticmethod(land_exposures)
    observe = False


@app.agent(activity_topic, name="trend")
async def trend(stream: faust.StreamT) -> None:
    """Fold summaries into the window table, one table write per (window, product) per round."""
    async for events in stream.take_events(1000, within=settings.stream_trend_flush_s):
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
        if settings.stream_decisions:
            decider.observe(sessions)


def trending_now(limit: int = 20) -> dict[str, Any]:
    view = trending.relative_to_now()
    start = int(time.time() // settings.stream_window_s * settings.stream_window_s)
    return {"window_start": start, "window_s": settings.stream_window_s,
            "products": activity.top_products(view.items(), limit)}


@app.page("/trending/")
async def trending_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    limit = int(request.query.get("limit", "20"))
    return web.json(trending_now(limit))


@app.page("/stats/")
async def stats_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    return web.json({"landing": STATS, "exposures": EXPOSURE_STATS,
                     "seconds": {k: round(v, 3) for k, v in TIMES.items()},
                     "decisions": decider.stats})


@app.page("/metrics")
async def metrics_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    body, content_type = metrics.render()
    return web.bytes(body, content_type=content_type)


decider = decisions.Decider(top_n=settings.top_n, interval_s=settings.stream_decision_interval_s,
                            idle_s=settings.stream_session_idle_s,
                            refresh_s=settings.stream_champion_refresh_s)


@app.timer(interval=max(1.0, settings.stream_decision_interval_s))
async def decide() -> None:
    """Score the sessions that were active since the last round and publish recommendations."""
    if not settings.stream_decisions:
        return
    popular = [r["product_id"] for r in trending_now(settings.top_n)["products"]]
    for record in await decider.decide(popular):
        await recommendations.send(key=record["session_id"].encode(), value=record, force=True)


def main() -> None:
    app.main()


if __name__ == "__main__":
    main()
