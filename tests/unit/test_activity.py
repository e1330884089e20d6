"""The vectorised activity summary agrees with a plain per-event Python fold on the same batch."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from recomart.streaming.activity import TYPE_INDEX, summarize
from recomart.streaming.sink import Landed, to_table
from recomart.tables import EVENT_TYPES


def _reference(rows: list[Landed], window_s: int) -> list[dict]:
    """One event at a time: counts per product, and each session's last event by time (ties:
    the later one in the batch)."""
    out: dict[tuple[int, int], dict] = {}
    for r in rows:
        e = r.event
        us = int((e["timestamp"] - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
        w = us // (window_s * 1_000_000) * window_s
        s = out.setdefault((r.partition, w), {"partition": r.partition, "window_start": w,
                                              "counts": {}, "sessions": {}})
        row = s["counts"].setdefault(str(e["product_id"]), [0] * len(EVENT_TYPES))
        row[TYPE_INDEX[e["event_type"]]] += 1
        prev = s["sessions"].get(e["session_id"])
        if prev is None or us / 1e6 >= prev[1]:
            s["sessions"][e["session_id"]] = [e["user_id"], us / 1e6, e["product_id"],
                                              e["event_type"]]
    return [out[k] for k in sorted(out)]


def test_summary_matches_a_per_event_fold():
    rng = random.Random(7)
    t0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
    rows = []
    for i in range(3000):
        ts = t0 + timedelta(seconds=rng.randrange(0, 400), microseconds=rng.choice([0, 250_000]))
        rows.append(Landed({"event_id": f"e{i}", "user_id": rng.randrange(50),
                            "product_id": rng.randrange(200), "event_type": rng.choice(EVENT_TYPES),
                            "session_id": f"s{rng.randrange(300)}", "timestamp": ts, "price": None},
                           rng.randrange(3), i, 0))
    table = to_table(rows)
    expected = _reference(rows, 60)
    assert len(expected) > 10  # several partitions and windows
    assert summarize(table, 60) == expected
    assert summarize(table, 60, sessions=False) == [{**s, "sessions": {}} for s in expected]
