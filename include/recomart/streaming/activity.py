"""Per-batch activity summaries: what the trending table and the decision agent need, small.

The landing agent sends one summary per (source partition, window) after a batch is durable,
instead of fanning every event out to more agents: this keeps per-event Python work on the hot
path to the validation and the columnar write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
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

    # one row per (partition, window, product) with a count column per event type, in Arrow;
    # Python then fills each (partition, window) summary with one dict update per run
    names = [f"n{i}" for i in range(len(EVENT_TYPES))]
    for name, kind in zip(names, EVENT_TYPES, strict=True):
        t = t.append_column(name, pc.cast(pc.equal(t["type"], kind), pa.int64()))
    counts = t.group_by(["p", "w", "product"], use_threads=False).aggregate(
        [(name, "sum") for name in names]).sort_by([("p", "ascending"), ("w", "ascending")])
    products = pc.cast(counts["product"], pa.string()).to_pylist()
    rows = list(map(list, zip(*(counts[f"{x}_sum"].to_pylist() for x in names), strict=True)))
    for p, w, a, b in _runs(counts):
        summary(p, w)["counts"].update(zip(products[a:b], rows[a:b], strict=True))
    if not sessions:
        return [out[k] for k in sorted(out)]
    # the last event of each session (by time; ties: the later one in the batch)
    ordered = t.take(pc.sort_indices(t, [("us", "ascending")]))  # stable
    last = ordered.group_by(["p", "w", "sid"], use_threads=False).aggregate(
        [("uid", "last"), ("us", "last"), ("product", "last"), ("type", "last")]).sort_by(
        [("p", "ascending"), ("w", "ascending")])
    seconds = pc.divide(pc.cast(last["us_last"], pa.float64()), 1e6)
    sids = last["sid"].to_pylist()
    rows = list(map(list, zip(last["uid_last"].to_pylist(), seconds.to_pylist(),
                              last["product_last"].to_pylist(), last["type_last"].to_pylist(),
                              strict=True)))
    for p, w, a, b in _runs(last):
        summary(p, w)["sessions"].update(zip(sids[a:b], rows[a:b], strict=True))
    return [out[k] for k in sorted(out)]


def _runs(grouped: pa.Table) -> list[tuple[int, int, int, int]]:
    """``(partition, window, start, stop)`` of each run of equal (p, w) in a table sorted by them."""
    p, w = grouped["p"].to_numpy(), grouped["w"].to_numpy()
    cut = np.flatnonzero((np.diff(p) != 0) | (np.diff(w) != 0)) + 1
    starts, stops = np.concatenate([[0], cut]), np.concatenate([cut, [len(p)]])
    return [(int(p[a]), int(w[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def add_counts(current: list[int] | None, delta: list[int]) -> list[int]:
    base = list(current) if current else [0] * len(EVENT_TYPES)
    return [a + b for a, b in zip(base, delta, strict=True)]


def top_products(items: Iterable[tuple[Any, list[int]]], limit: int = 20) -> list[dict[str, int]]:
    """Trending rows sorted by purchases, then carts, then views."""
    rows = [{"product_id": int(k), "views": v[0], "add_to_cart": v[1], "purchases": v[2]}
            for k, v in items if v]
    rows.sort(key=lambda r: (-r["purchases"], -r["add_to_cart"], -r["views"], r["product_id"]))
    return rows[:limit]
