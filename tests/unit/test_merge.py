"""Merging speed landings: dedup across overlapping files, insert-if-absent, idempotent reruns.

The backend-independent contracts run on both a local lake and an ``s3://`` lake (moto S3 server,
``any_lake``): listing through the lake, the identity record, the crash between the master commit
and the record."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from recomart.lake import Lake
from recomart.streaming.merge import MASTER_TABLE, MASTER_ZONE, merge_speed_events, read_speed_zone
from recomart.streaming.sink import Landed, list_files, write_batch


def _rows(ids, partition=0, start=0):
    ts = datetime(2024, 5, 1, 10, tzinfo=UTC)
    return [Landed({"event_id": f"e{i}", "user_id": 1, "product_id": i, "event_type": "view",
                    "session_id": "s", "timestamp": ts, "price": None}, partition, start + n, 0)
            for n, i in enumerate(ids)]


def _master_ids(lake):
    return lake.read_arrow(MASTER_ZONE, MASTER_TABLE, columns=["event_id"])["event_id"].to_pylist()


def test_merge_dedups_overlaps_and_is_idempotent(any_lake):
    lake = any_lake
    write_batch(lake, "clickstream", _rows(range(0, 10)), {0: (0, 9)})
    write_batch(lake, "clickstream", _rows(range(5, 15), start=5), {0: (5, 14)})  # a replay overlap
    assert len(list_files(lake)) == 2 and read_speed_zone(lake).num_rows == 15

    first = merge_speed_events(lake, "2024-05-01")
    assert (first["files"], first["read"], first["new"], first["duplicates"]) == (2, 20, 15, 5)
    again = merge_speed_events(lake, "2024-05-01")
    assert again["new"] == 0
    assert sorted(_master_ids(lake)) == sorted(f"e{i}" for i in range(15))


def test_a_file_older_than_the_last_merge_is_still_merged(lake):
    """Identity, not mtime: a file that becomes visible with an old mtime (slow rename, a second
    worker, a clock step, a restore from backup) is merged by the next run."""
    write_batch(lake, "clickstream", _rows(range(3)), {0: (0, 2)})
    first = merge_speed_events(lake, "2024-05-01")
    assert (first["files"], first["new"]) == (1, 3)
    late = write_batch(lake, "clickstream", _rows(range(3, 6), start=3), {0: (3, 5)})[0]
    os.utime(late, ns=(0, 0))  # mtime 1970: far before anything merged so far
    second = merge_speed_events(lake, "2024-05-02")
    assert sorted(_master_ids(lake)) == sorted(f"e{i}" for i in range(6))
    assert (second["files"], second["new"], second["already_merged"]) == (1, 3, 1)


def test_rerun_merges_nothing_new_and_says_so(any_lake):
    lake = any_lake
    write_batch(lake, "clickstream", _rows(range(4)), {0: (0, 3)})
    merge_speed_events(lake, "2024-05-01")
    version = lake.table_version(MASTER_ZONE, MASTER_TABLE)
    again = merge_speed_events(lake, "2024-05-01")
    assert (again["files"], again["already_merged"], again["read"], again["new"]) == (0, 1, 0, 0)
    assert again["message"] == "no new speed-zone files to merge (1 landed files already merged)"
    assert lake.table_version(MASTER_ZONE, MASTER_TABLE) == version  # no empty commit either
    assert merge_speed_events(Lake(f"{lake.uri(lake.root)}/elsewhere"), "2024-05-01")["message"] == \
        "no speed-zone files landed yet"


def test_files_landing_after_a_merge_are_merged_by_the_next_one(any_lake):
    lake = any_lake
    write_batch(lake, "clickstream", _rows(range(2)), {0: (0, 1)})
    merge_speed_events(lake, "2024-05-01")
    write_batch(lake, "clickstream", _rows(range(2, 5), start=2), {0: (2, 4)})
    write_batch(lake, "clickstream", _rows(range(5, 7), partition=1), {1: (0, 1)})
    second = merge_speed_events(lake, "2024-05-02")
    assert (second["files"], second["new"], second["duplicates"]) == (2, 5, 0)
    assert merge_speed_events(lake, "2024-05-02")["files"] == 0
    assert sorted(_master_ids(lake)) == sorted(f"e{i}" for i in range(7))


def test_merged_files_are_recorded_with_checksums(any_lake):
    import hashlib

    from recomart.streaming.merge import merged_files

    lake = any_lake
    paths = write_batch(lake, "clickstream", _rows(range(3)), {0: (0, 2)})
    out = merge_speed_events(lake, "2024-05-01")
    record = merged_files(lake, out["merge_id"]).to_pylist()
    expected = [(lake.rel(p), len(data := lake.read_bytes(p)), hashlib.sha256(data).hexdigest(), 3,
                 out["table_version"]) for p in paths]
    assert [(r["path"], r["bytes"], r["sha256"], r["rows"], r["master_version"])
            for r in record] == expected
    assert expected[0][0] == ("speed/clickstream/date=2024-05-01/"
                              "clickstream-p000-o000000000000-000000000002.parquet")
    assert lake.size(paths[0]) == expected[0][1]
    assert merged_files(lake, "another-merge").num_rows == 0


def test_a_crash_between_merge_and_record_neither_loses_nor_duplicates(any_lake, monkeypatch):
    lake = any_lake
    from recomart.streaming import merge

    write_batch(lake, "clickstream", _rows(range(5)), {0: (0, 4)})

    def crash(*args, **kwargs):
        raise OSError("power cut after the master commit")

    monkeypatch.setattr(merge, "_record", crash)
    with pytest.raises(OSError, match="power cut"):
        merge_speed_events(lake, "2024-05-01")
    monkeypatch.undo()
    assert sorted(_master_ids(lake)) == sorted(f"e{i}" for i in range(5))  # merged, not recorded
    write_batch(lake, "clickstream", _rows(range(5, 8), start=5), {0: (5, 7)})
    rerun = merge_speed_events(lake, "2024-05-01")
    assert (rerun["files"], rerun["read"], rerun["new"], rerun["duplicates"]) == (2, 8, 3, 5)
    assert sorted(_master_ids(lake)) == sorted(f"e{i}" for i in range(8))
    assert merge_speed_events(lake, "2024-05-01")["files"] == 0


def test_same_batch_written_twice_lands_one_file(any_lake):
    lake = any_lake
    rows = _rows(range(4))
    assert write_batch(lake, "clickstream", rows, {0: (0, 3)}) == \
        write_batch(lake, "clickstream", rows, {0: (0, 3)})
    assert len(list_files(lake)) == 1


def test_one_file_per_batch_and_date_with_offsets_in_metadata(any_lake):
    lake = any_lake
    import json

    from recomart.streaming.sink import OFFSETS_KEY, landed_rows

    day1, day2 = datetime(2024, 5, 1, 23, 59, tzinfo=UTC), datetime(2024, 5, 2, 0, 1, tzinfo=UTC)
    rows = [Landed({"event_id": f"e{i}", "user_id": 1, "product_id": i, "event_type": "view",
                    "session_id": "s", "timestamp": day1 if i % 2 else day2, "price": 1.0},
                   i % 3, 100 + i, 0) for i in range(12)]
    ranges = {0: (100, 109), 1: (101, 110), 2: (102, 111)}
    files = write_batch(lake, "clickstream", rows, ranges)
    assert [p.parent.name for p in files] == ["date=2024-05-01", "date=2024-05-02"]
    assert files[0].name == files[1].name and files == list_files(lake)
    meta = lake.read_parquet_schema(files[0]).metadata[OFFSETS_KEY]
    assert json.loads(meta) == {"0": [100, 109], "1": [101, 110], "2": [102, 111]}
    assert landed_rows(lake) == 12


def test_count_landed_events_counts_distinct_ids(any_lake):
    lake = any_lake
    from recomart.streaming.sink import count_landed_events

    assert count_landed_events(lake) == 0
    write_batch(lake, "clickstream", _rows(range(0, 10)), {0: (0, 9)})
    write_batch(lake, "clickstream", _rows(range(5, 15), start=5), {0: (5, 14)})
    assert count_landed_events(lake) == 15


def test_activity_summary_of_a_landed_batch():
    from recomart.streaming.activity import summarize
    from recomart.streaming.sink import to_table

    ts = datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC)
    later = datetime(2024, 5, 1, 10, 0, 45, tzinfo=UTC)

    def ev(i, t, kind, product, sid="s1"):
        return {"event_id": f"e{i}", "user_id": 7, "product_id": product, "event_type": kind,
                "session_id": sid, "timestamp": t, "price": None}

    rows = [Landed(ev(0, later, "purchase", 5), 1, 0, 0), Landed(ev(1, ts, "view", 5), 1, 1, 0),
            Landed(ev(2, ts, "view", 5), 1, 2, 0), Landed(ev(3, ts, "add_to_cart", 6), 1, 3, 0),
            Landed(ev(4, ts, "view", 9, "s2"), 0, 0, 0)]
    out = summarize(to_table(rows), 60)
    start = int(ts.timestamp()) // 60 * 60
    assert [(s["partition"], s["window_start"]) for s in out] == [(0, start), (1, start)]
    assert out[1]["counts"] == {"5": [2, 0, 1], "6": [0, 1, 0]}
    assert out[1]["sessions"] == {"s1": [7, later.timestamp(), 5, "purchase"]}
    assert out[0]["counts"] == {"9": [1, 0, 0]}
