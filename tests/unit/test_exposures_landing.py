"""Exposure records land like the clickstream, on both backends (local folder and ``s3://`` on a
moto S3 server): bad records to the dead-letter sender, offsets committed after the write-once
object, a replay cut into other batches deduped by ``request_id``.

The consumer and the dead-letter producer are the recording fakes of ``test_landing`` (the
contract is the order of effects); the real broker path is the SIGKILL test in
tests/integration/test_serving.py.
"""

from __future__ import annotations

import asyncio
import json

from aiokafka.structs import ConsumerRecord, TopicPartition
from tests.unit.test_landing import FakeConsumer, FakeDeadLetter

from recomart.streaming.exposures import count_landed_exposures, list_exposure_files, read_exposures
from recomart.streaming.landing import commit_when_landed, exposures_codec, land_batch

TOPIC = "recommendation-exposures"
TP = TopicPartition(TOPIC, 0)


def _exposure(rid: str) -> bytes:
    return json.dumps({"request_id": rid, "ts": "2026-12-01T10:00:00+00:00", "route": "user",
                       "user_id": 3, "model": "hybrid", "version": 2,
                       "items": [{"product_id": 5, "score": 0.5, "rank": 1, "reason": "batch"}]}
                      ).encode()


def _records(first: int, last: int) -> dict[TopicPartition, list[ConsumerRecord]]:
    """Offsets ``first..last``; every fifth message is not JSON."""
    out = []
    for off in range(first, last + 1):
        value = b"{broken" if off % 5 == 4 else _exposure(f"r{off}")
        out.append(ConsumerRecord(topic=TOPIC, partition=0, offset=off, timestamp=1796112000000,
                                  timestamp_type=0, key=None, value=value, checksum=None,
                                  serialized_key_size=0, serialized_value_size=len(value),
                                  headers=()))
    return {TP: out}


def _land(lake, parts):
    consumer, dlq = FakeConsumer(), FakeDeadLetter()

    async def scenario():
        step = asyncio.ensure_future(commit_when_landed(
            consumer, land_batch(parts, lake, dlq, topic=TOPIC, codec=exposures_codec()), parts))
        for _ in range(500):
            if step.done() or len(dlq.futures) == sum(1 for r in parts[TP] if r.offset % 5 == 4):
                break
            await asyncio.sleep(0.01)
        assert consumer.commits == []  # nothing committed before the dead-letter acks
        dlq.ack()
        return await step

    counts, _ = asyncio.run(scenario())
    return counts, consumer.commits, dlq.sent


def test_exposures_land_once_per_request_id_across_a_replay(any_lake):
    lake = any_lake
    counts, commits, sent = _land(lake, _records(0, 9))
    assert counts == {"valid": 8, "dead_letter": 2, "files": 1}
    assert commits == [{TP: 10}]
    assert [h["source_offset"] for _, _, h in sent] == [b"4", b"9"]
    # a crash before that commit, and the replay is cut into other batches: 0-5 and 6-12
    _land(lake, _records(0, 5))
    counts, commits, _ = _land(lake, _records(6, 12))
    assert commits == [{TP: 13}] and counts["valid"] == 6
    files = list_exposure_files(lake)
    assert [lake.rel(p) for p in files] == [
        f"speed/exposures/date=2026-12-01/{TOPIC}-p000-o{a:012d}-{b:012d}.parquet"
        for a, b in [(0, 5), (0, 9), (6, 12)]]
    landed = read_exposures(lake)
    expected = {f"r{o}" for o in range(13) if o % 5 != 4}
    ids = landed["request_id"].to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert count_landed_exposures(lake) == len(expected)
    assert landed["items"][0].as_py() == [{"product_id": 5, "position": 1, "score": 0.5,
                                          "reason": "batch"}]
