"""Per-batch activity summaries: what the trending table and the decision agent need, small.

The landing agent sends one summary per (source partition, window) after a batch is durable,
instead of fanning every event out to more agents: this keeps per-event Python work on the hot
path to the validation and the columnar write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recomart.tables import EVENT_TYPES

TYPE_INDEX = {t: i for i, t in enumerate(EVENT_TYPES)}  # view=0, add_to_cart=1, purchase=2


def summarize(table: pa.Table, window_s: int, sessions: bool = True) -> list[dict[str, Any]]:
    """A landed batch (``sink.SCHEMA``) -> one summary per (source partition, window start).

    Summary: ``{"partition", "window_start" (epoch s), "counts": {product_id: [views, carts,
    purchases]}, "sessions": {session_id: [user_id, last_ts, last_product_id, last_type]}}``.
    ``sessions=False`` leaves "sessions" empty (only the decision agent reads them). Grouping
    runs in Arrow; Python only touches the grouped rows.
    """
    if table.num_rows == 0:
        return []
    us = table["timestamp"].cast(pa.int64())
    t = pa.table({"p": table["_kafka_partition"], "w": pc.multiply(
        pc.divide(us, window_s * 1_000_000), window_s), "product": table["product_id"],
        "type": table["event_type"], "sid": table["session_id"], "uid": table["user_id"],
        "us": us})
    out: dict[tuple[int, int], dict[str, Any]] = {}

    def summary(p: int, w: int) -> dict[str, Any]:
        s = out.get((p, w))
        if s is None:
            s = out[(p, w)] = {"partition": p, "window_start": w, "counts": {}, "sessions": {}}
        return s

    counts = t.group_by(["p", "w", "product", "type"], use_threads=False).aggregate(
        [([], "count_all")])
    for p, w, product, kind, n in zip(*(counts[c].to_pylist() for c in
                                        ("p", "w", "product", "type", "count_all")), strict=True):
        row = summary(p, w)["counts"].setdefault(str(product), [0] * len(EVENT_TYPES))
        row[TYPE_INDEX[kind]] += n
    if not sessions:
        return [out[k] for k in sorted(out)]
    # the last event of each session (by time; ties: the later one in the batch)
    ordered = t.take(pc.sort_indices(t, [("us", "ascending")]))  # stable
    last = ordered.group_by(["p", "w", "sid"], use_threads=False).aggregate(
        [("uid", "last"), ("us", "last"), ("product", "last"), ("type", "last")])
    for p, w, sid, uid, ts, product, kind in zip(*(last[c].to_pylist() for c in (
            "p", "w", "sid", "uid_last", "us_last", "product_last", "type_last")), strict=True):
        summary(p, w)["sessions"][sid] = [uid, ts / 1e6, product, kind]
    return [out[k] for k in sorted(out)]


def add_counts(current: list[int] | None, delta: list[int]) -> list[int]:
    base = list(current) if current else [0] * len(EVENT_TYPES)
    return [a + b for a, b in zip(base, delta, strict=True)]


def top_products(items: Iterable[tuple[Any, list[int]]], limit: int = 20) -> list[dict[str, int]]:
    """Trending rows sorted by purchases, then carts, then views."""
    rows = [{"product_id": int(k), "views": v[0], "add_to_cart": v[1], "purchases": v[2]}
            for k, v in items if v]
    rows.sort(key=lambda r: (-r["purchases"], -r["add_to_cart"], -r["views"], r["product_id"]))
    return rows[:limit]
