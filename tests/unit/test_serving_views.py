"""Batch view arrays, hot swap, the online store on a real redis-server, and the wire formats the
serving layer adds (clickstream request_id, exposures)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recomart.serving.batch_view import BatchViewError, Lists, ViewHolder, load_view
from recomart.serving.synthetic import publish_synthetic


def test_lists_are_sorted_by_key_then_rank():
    lists = Lists.from_columns(np.array([5, 3, 5, 3]), np.array([50, 31, 51, 30]),
                               np.array([0.9, 0.8, 0.7, 0.95], np.float32), np.array([2, 2, 1, 1]))
    assert lists.keys.tolist() == [3, 5]
    assert lists.get(3) == ([30, 31], pytest.approx([0.95, 0.8]))
    assert lists.get(5, 1)[0] == [51]
    assert lists.get(4) is None and 4 not in lists and 5 in lists
    assert Lists.empty().get(1) is None


def test_load_view_and_hot_swap(lake):
    holder = ViewHolder(lake, poll_s=60)
    assert holder.refresh() is False and "nothing published yet" in holder.last_error
    publish_synthetic(lake, users=50, products=30, n=5, version=1)
    swaps = []
    holder.on_swap = lambda old, new: swaps.append((old and old.version, new.version))
    assert holder.refresh() is True and holder.view.version == 1
    assert holder.refresh() is False  # unchanged latest.json: no reload
    view = holder.view
    assert len(view.user_recs) == 50 and view.user_recs.get(1, 3)[0] == [8, 21, 4]  # 1 + (7 + 13k) % 30
    assert view.similar.get(30)[0] == [1, 2, 3, 4, 5]  # wraps around the catalog
    assert view.knows_product(30) and not view.knows_product(31)
    assert view.popular and view.popular[0][1] >= view.popular[-1][1]
    publish_synthetic(lake, users=50, products=30, n=5, version=2, offset=1)
    assert holder.refresh() is True and holder.view.version == 2
    assert view.version == 1  # a request holding the old view keeps it whole
    assert swaps == [(None, 1), (1, 2)]
    # a broken publication keeps the current view and says why
    (lake.root / "serving" / "synthetic" / "v2" / "user_recs.parquet").unlink()
    assert holder.refresh(force=True) is False
    assert holder.view.version == 2 and "user_recs.parquet is missing" in holder.last_error
    with pytest.raises(BatchViewError, match="is missing"):
        load_view(lake)


def test_publication_for_100k_users_fits_in_arrays(lake):
    publish_synthetic(lake, users=20_000, products=2_000, n=20, version=1)
    view = load_view(lake)
    assert view.user_recs.items.dtype == np.int64 and view.user_recs.scores.dtype == np.float32
    assert view.nbytes < 20_000 * 20 * 12 + 2_000 * 20 * 24 + 1_000_000


@pytest.fixture
def redis_url(tmp_path):
    from recomart.serving.online_store import EmbeddedRedis

    with EmbeddedRedis(log_path=tmp_path / "redis.log") as r:
        yield r.url


def test_online_store_keeps_bounded_recent_events_newest_first(redis_url):
    import asyncio

    from recomart.serving.online_store import AsyncOnlineReader, OnlineStore

    store = OnlineStore(redis_url, max_events=3, ttl_s=600, window_s=60)
    assert store.ping()
    now = time.time() // 60 * 60 + 30  # mid-window: the events below share one window
    store.record([1, 1, 2], ["a", "a", "b"], [10, 11, 12], ["view", "add_to_cart", "purchase"],
                 [now - 2, now - 1, now], ["e1", "e2", "e3"])
    store.record([1, 1], ["a", "a"], [13, 14], ["view", "view"], [now, now + 0.001], ["e4", "e5"])
    got = store.recent_user(1)
    assert [(e.product_id, e.event_type) for e in got] == [(14, "view"), (13, "view"),
                                                            (11, "add_to_cart")]
    assert [e.product_id for e in store.recent_session("a")] == [14, 13, 11]
    assert 590 < store.client.ttl("rm:u:1") <= 600
    # a replayed batch pushes identical entries: the reader drops the repeats
    store.record([2], ["b"], [12], ["purchase"], [now], ["e3"])
    assert [e.product_id for e in store.recent_user(2)] == [12]
    # two distinct events in the same millisecond both count
    store.record([3, 3], ["c", "c"], [9, 9], ["view", "view"], [now, now], ["e6", "e7"])
    assert len(store.recent_user(3)) == 2
    # trending is at-least-once too: the replayed purchase counted twice (5 + 5)
    assert store.trending(2, now)[0] == (12, 10.0)

    async def read():
        reader = AsyncOnlineReader(redis_url, window_s=60)
        try:
            return (await reader.recent_user(1), await reader.trending(10, now),
                    await reader.ping())
        finally:
            await reader.close()

    recent, trending, ok = asyncio.run(read())
    assert ok and [e.product_id for e in recent] == [14, 13, 11]
    assert dict(trending) == {12: 10.0, 11: 3.0, 9: 2.0, 10: 1.0, 13: 1.0, 14: 1.0}


def test_clickstream_request_id_is_optional_and_validated(lake):
    from recomart.streaming.events import decode_batch, parse_event, parse_event_fast
    from recomart.streaming.merge import read_speed_zone
    from recomart.streaming.sink import SCHEMA, batch_table, speed_root, write_batch

    base = {"event_id": "e1", "user_id": 1, "product_id": 2, "event_type": "view",
            "session_id": "s", "timestamp": "2024-05-01T10:00:00Z"}
    with_rid = json.dumps({**base, "request_id": "r" * 32}).encode()
    without = json.dumps(base).encode()
    for parse in (parse_event, parse_event_fast):
        assert parse(with_rid)[0]["request_id"] == "r" * 32
        assert parse(without)[0]["request_id"] is None
        assert parse(json.dumps({**base, "request_id": 7}).encode()) == (None,
                                                                         "wrong_type:request_id")
        assert parse(json.dumps({**base, "request_id": "x" * 129}).encode())[1] == \
            "wrong_type:request_id"
    decoded = decode_batch([with_rid, without, json.dumps({**base, "request_id": ""}).encode()])
    assert decoded.request_id == ["r" * 32, None] and decoded.bad == [(2, "wrong_type:request_id")]
    table = batch_table(decoded, [0, 0, 0], [0, 1, 2], [None, None, None])
    write_batch(lake, "clickstream", table, {0: (0, 2)})
    # a file landed before the column existed still reads (request_id null)
    old = table.drop_columns(["request_id"]).slice(0, 1).set_column(
        0, "event_id", pa.array(["e-old"]))
    path = speed_root(lake) / "date=2024-05-01" / "clickstream-old.parquet"
    pq.write_table(old, path)
    landed = read_speed_zone(lake)
    assert landed.schema == SCHEMA
    assert dict(zip(landed["event_id"].to_pylist(), landed["request_id"].to_pylist(),
                    strict=True)) == {"e1": "r" * 32, "e-old": None}


def test_exposures_decode_and_dedup(lake):
    from recomart.streaming.exposures import decode_exposures, exposures_table, read_exposures
    from recomart.streaming.sink import write_batch

    good = {"request_id": "a1", "ts": "2026-12-01T10:00:00+00:00", "route": "user", "user_id": 3,
            "model": "m", "version": 2, "variant": None,
            "items": [{"product_id": 5, "score": 0.5, "rank": 1, "reason": "batch"}]}
    raws = [json.dumps(good).encode(), b"{oops", json.dumps({**good, "items": "x"}).encode(),
            json.dumps({k: v for k, v in good.items() if k != "request_id"}).encode(),
            json.dumps({**good, "request_id": "b2"}).encode()]
    decoded = decode_exposures(raws)
    assert decoded.index == [0, 4]
    assert [(i, r.split(":")[0]) for i, r in decoded.bad] == [
        (1, "not_json"), (2, "invalid_exposure"), (3, "invalid_exposure")]
    table = exposures_table(decoded, [0] * 5, list(range(5)), [None] * 5)
    write_batch(lake, "recommendation-exposures", table, {0: (0, 4)}, "exposures", "ts")
    # a replay cut differently lands request a1 again in another file
    write_batch(lake, "recommendation-exposures", table.slice(0, 1), {0: (0, 0)}, "exposures", "ts")
    landed = read_exposures(lake)
    assert sorted(landed["request_id"].to_pylist()) == ["a1", "b2"]
    assert landed["items"][0].as_py() == [{"product_id": 5, "position": 1, "score": 0.5,
                                          "reason": "batch"}]
    assert landed["ts"][0].as_py() == datetime(2026, 12, 1, 10, tzinfo=UTC)
