"""Per-batch activity summaries: what the trending table and the decision agent need, small.

The landing agent sends one summary per (source partition, window) after a batch is durable,
instead of fanning every event out to more agents: this keeps per-event Python work on the hot
path to the validation and the columnar write.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from recomart.tables import EVENT_TYPES

TYPE_INDEX = {t: i for i, t in enumerate(EVENT_TYPES)}  # view=0, add_to_cart=1, purchase=2


def summarize(rows: Iterable[tuple[int, dict[str, Any]]], window_s: int) -> list[dict[str, Any]]:
    """``[(partition, event)]`` -> one summary per (partition, window start).

    Summary: ``{"partition", "window_start" (epoch s), "counts": {product_id: [views, carts,
    purchases]}, "sessions": {session_id: [user_id, last_ts, last_product_id, last_type]}}``.
    """
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for partition, ev in rows:
        ts = ev["timestamp"].timestamp()
        start = int(ts // window_s * window_s)
        s = out.get((partition, start))
        if s is None:
            s = out[(partition, start)] = {"partition": partition, "window_start": start,
                                           "counts": defaultdict(lambda: [0, 0, 0]), "sessions": {}}
        s["counts"][str(ev["product_id"])][TYPE_INDEX[ev["event_type"]]] += 1
        last = s["sessions"].get(ev["session_id"])
        if last is None or last[1] <= ts:
            s["sessions"][ev["session_id"]] = [ev["user_id"], ts, ev["product_id"], ev["event_type"]]
    result = []
    for key in sorted(out):
        s = out[key]
        s["counts"] = dict(s["counts"])
        result.append(s)
    return result


def add_counts(current: list[int] | None, delta: list[int]) -> list[int]:
    base = list(current) if current else [0] * len(EVENT_TYPES)
    return [a + b for a, b in zip(base, delta, strict=True)]


def top_products(items: Iterable[tuple[Any, list[int]]], limit: int = 20) -> list[dict[str, int]]:
    """Trending rows sorted by purchases, then carts, then views."""
    rows = [{"product_id": int(k), "views": v[0], "add_to_cart": v[1], "purchases": v[2]}
            for k, v in items if v]
    rows.sort(key=lambda r: (-r["purchases"], -r["add_to_cart"], -r["views"], r["product_id"]))
    return rows[:limit]
