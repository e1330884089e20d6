"""Merging speed landings: dedup across overlapping files, insert-if-absent, idempotent reruns."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from recomart.streaming.merge import MASTER_TABLE, MASTER_ZONE, merge_speed_events, read_speed_zone
from recomart.streaming.sink import Landed, list_files, write_batch


def _rows(ids, partition=0, start=0):
    ts = datetime(2024, 5, 1, 10, tzinfo=UTC)
    return [Landed({"event_id": f"e{i}", "user_id": 1, "product_id": i, "event_type": "view",
                    "session_id": "s", "timestamp": ts, "price": None}, partition, start + n, 0)
            for n, i in enumerate(ids)]


def _master_ids(lake):
    return lake.read_arrow(MASTER_ZONE, MASTER_TABLE, columns=["event_id"])["event_id"].to_pylist()


def test_merge_dedups_overlaps_and_is_idempotent(lake):
    write_batch(lake, "clickstream", _rows(range(0, 10)), {0: (0, 9)})
    write_batch(lake, "clickstream", _rows(range(5, 15), start=5), {0: (5, 14)})  # a replay overlap
    assert len(list_files(lake)) == 2 and read_speed_zone(lake).num_rows == 15

    first = merge_speed_events(lake, "2024-05-01")
    assert (first["files"], first["read"], first["new"], first["duplicates"]) == (2, 20, 15, 5)
    again = merge_speed_events(lake, "2024-05-01")
    assert again["new"] == 0
    assert sorted(_master_ids(lake)) == sorted(f"e{i}" for i in range(15))


def test_merge_reads_only_files_after_the_watermark(lake):
    old = write_batch(lake, "clickstream", _rows(range(3)), {0: (0, 2)})[0]
    merge_speed_events(lake, "2024-05-01")
    os.utime(old, ns=(0, 0))  # far before the watermark: not read again
    write_batch(lake, "clickstream", _rows(range(3, 6), start=3), {0: (3, 5)})
    second = merge_speed_events(lake, "2024-05-02")
    assert second["files"] == 1 and second["new"] == 3
    assert len(_master_ids(lake)) == 6


def test_same_batch_written_twice_lands_one_file(lake):
    rows = _rows(range(4))
    assert write_batch(lake, "clickstream", rows, {0: (0, 3)}) == \
        write_batch(lake, "clickstream", rows, {0: (0, 3)})
    assert len(list_files(lake)) == 1
