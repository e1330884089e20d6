"""The batch view: the champion's published lists in compact arrays, hot-swapped atomically.

Each output (``user_recs``, ``similar_items``, ``audience``) becomes a CSR-like ``Lists``: sorted
key ids, offsets, and flat item / score arrays, so a lookup is one binary search and two slices
(100k users x 20 items is ~2.4M items: about 30 MB). ``ViewHolder`` polls
``serving/latest.json``; when it names another folder (or was rewritten), the new version is
loaded in a background thread and swapped in with one reference assignment: requests in flight
keep the view they started with, and none ever sees a half-loaded view.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np

from recomart.errors import RecomartError
from recomart.lake import Lake
from recomart.publishing import LATEST, MANIFEST, OUTPUT_KEYS, read_latest
from recomart.serving.refresh import BackgroundRefresh

log = logging.getLogger(__name__)


class BatchViewError(RecomartError):
    """A published folder cannot be loaded (missing manifest or output, wrong columns)."""


#: A dense index (row per key, int32) is built when it costs at most this many slots per key.
DENSE_SLOTS_PER_KEY = 4


@dataclass(frozen=True)
class Lists:
    """``key -> (items, scores)`` best first, in flat arrays.

    Lookups go through memoryviews of the arrays (a Python int per element access, no numpy
    scalar or ufunc dispatch: ~0.3 us instead of ~3-10 us for ``np.searchsorted`` here), and,
    when the keys are dense enough (ids 0..max with max < 4 x keys + 65536), through a
    row-per-id index instead of a binary search."""

    keys: np.ndarray  # int64, sorted, unique
    offsets: np.ndarray  # int64, len(keys) + 1
    items: np.ndarray  # int64
    scores: np.ndarray  # float32

    def __post_init__(self) -> None:
        keys = np.ascontiguousarray(self.keys, dtype=np.int64)
        dense = None
        if len(keys) and keys[0] >= 0 and keys[-1] < DENSE_SLOTS_PER_KEY * len(keys) + 65536:
            index = np.full(int(keys[-1]) + 1, -1, np.int32)
            index[keys] = np.arange(len(keys), dtype=np.int32)
            dense = memoryview(index)
        fast = object.__setattr__
        fast(self, "_dense", dense)
        fast(self, "_keys", memoryview(keys))
        fast(self, "_offsets", memoryview(np.ascontiguousarray(self.offsets, dtype=np.int64)))
        fast(self, "_items", memoryview(np.ascontiguousarray(self.items, dtype=np.int64)))
        fast(self, "_scores", memoryview(np.ascontiguousarray(self.scores, dtype=np.float32)))

    @staticmethod
    def empty() -> Lists:
        return Lists(np.empty(0, np.int64), np.zeros(1, np.int64), np.empty(0, np.int64),
                     np.empty(0, np.float32))

    @staticmethod
    def from_columns(keys: np.ndarray, items: np.ndarray, scores: np.ndarray,
                     ranks: np.ndarray) -> Lists:
        if not len(keys):
            return Lists.empty()
        same = keys[1:] == keys[:-1]
        in_order = bool(np.all(keys[1:] >= keys[:-1]) and np.all(ranks[1:][same] > ranks[:-1][same]))
        if not in_order:  # publications come in (key, rank) order: the sort is then skipped
            order = np.lexsort((ranks, keys))
            keys, items, scores = keys[order], items[order], scores[order]
            same = keys[1:] == keys[:-1]
        starts = np.flatnonzero(np.concatenate(([True], ~same)))  # first row of every key
        offsets = np.append(starts, len(keys)).astype(np.int64)
        return Lists(keys[starts].astype(np.int64), offsets, items.astype(np.int64),
                     scores.astype(np.float32))

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: int) -> bool:
        return self.row(key) >= 0

    def row(self, key: int) -> int:
        dense: memoryview | None = self._dense  # type: ignore[attr-defined]
        if dense is not None:
            return dense[key] if 0 <= key < len(dense) else -1
        keys: memoryview = self._keys  # type: ignore[attr-defined]
        i = bisect_left(keys, key)
        return i if i < len(keys) and keys[i] == key else -1

    def get(self, key: int, n: int | None = None) -> tuple[list[int], list[float]] | None:
        i = self.row(key)
        if i < 0:
            return None
        offsets: memoryview = self._offsets  # type: ignore[attr-defined]
        a, b = offsets[i], offsets[i + 1]
        if n is not None and a + n < b:
            b = a + n
        return self._items[a:b].tolist(), self._scores[a:b].tolist()  # type: ignore[attr-defined]

    def get_items(self, key: int, n: int) -> list[int] | None:
        """Only the items (the merge's item-to-item lookups need no scores)."""
        i = self.row(key)
        if i < 0:
            return None
        offsets: memoryview = self._offsets  # type: ignore[attr-defined]
        a, b = offsets[i], offsets[i + 1]
        return self._items[a:min(b, a + n)].tolist()  # type: ignore[attr-defined]

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.offsets.nbytes + self.items.nbytes + self.scores.nbytes


SIMILAR_MEMO_MAX = 50_000  # (product, n) lists per view and worker: ~30 MB at 10 items each


@dataclass(frozen=True)
class BatchView:
    model: str
    version: int
    path: str
    computed_at: float  # epoch seconds of the publication (events after it are "fresh")
    signature: str
    user_recs: Lists
    similar: Lists
    audience: Lists
    popular: list[tuple[int, float]] = field(default_factory=list)  # by appearances in user_recs

    @cached_property
    def popular_ids(self) -> list[int]:
        return [p for p, _ in self.popular]

    @cached_property
    def _similar_memo(self) -> dict[tuple[int, int], tuple[int, ...]]:
        return {}

    def similar_items(self, product_id: int, n: int) -> Sequence[int] | None:
        """``similar.get_items``, remembered per (product, n) as a tuple: every request with
        recent events looks up a few anchors' lists, and popular products are everyone's anchors.
        Tuples of ints: shared safely between requests, and the garbage collector stops tracking
        them (the memo fills after the worker froze its start-up heap). Unknown products are not
        remembered (any id can be asked for). Bounded: cleared when full."""
        memo = self._similar_memo
        got = memo.get((product_id, n))
        if got is None:
            items = self.similar.get_items(product_id, n)
            if items is None:
                return None
            if len(memo) >= SIMILAR_MEMO_MAX:
                memo.clear()
            got = memo[(product_id, n)] = tuple(items)
        return got

    def knows_product(self, product_id: int) -> bool:
        return product_id in self.similar or product_id in self.audience

    @property
    def nbytes(self) -> int:
        return self.user_recs.nbytes + self.similar.nbytes + self.audience.nbytes

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "path": self.path,
                "users": len(self.user_recs), "products": len(self.similar),
                "computed_at": datetime.fromtimestamp(self.computed_at, UTC).isoformat(),
                "bytes": self.nbytes}


def _signature(latest: dict[str, Any]) -> str:
    return f"{latest.get('path')}@{latest.get('updated_at')}"


def _read_lists(lake: Lake, rel: str, output: str) -> Lists:
    key, item, score, rank = OUTPUT_KEYS[output]
    path = lake.root / rel
    if not path.exists():
        raise BatchViewError(f"published output {path} is missing")
    try:
        t = lake.read_arrow_file(path, columns=[key, item, score, rank])
    except (KeyError, ValueError) as exc:
        raise BatchViewError(f"{path}: cannot read columns {key, item, score, rank}: {exc}") from exc
    return Lists.from_columns(t[key].to_numpy(), t[item].to_numpy(),
                              t[score].to_numpy().astype(np.float32, copy=False), t[rank].to_numpy())


def popular_items(items: np.ndarray, top: int = 200) -> list[tuple[int, float]]:
    """The ``top`` most listed items with their share of all list entries, most listed first
    (ties by id). Non-negative ids up to 4x the entries are counted with ``bincount`` (one pass)
    rather than ``np.unique`` (a sort of every entry)."""
    if items.min() >= 0 and items.max() < 4 * len(items) + 65536:
        counts = np.bincount(items)
        ids = np.flatnonzero(counts)
        counts = counts[ids]
    else:
        ids, counts = np.unique(items, return_counts=True)
    best = np.argsort(-counts, kind="stable")[:top]
    total = float(counts.sum())
    return [(int(ids[i]), float(counts[i]) / total) for i in best]


def load_view(lake: Lake, latest: dict[str, Any] | None = None) -> BatchView:
    """Load the folder ``serving/latest.json`` names (or ``latest``)."""
    latest = latest if latest is not None else read_latest(lake)
    if latest is None:
        raise BatchViewError(f"nothing published yet: {lake.path('serving', LATEST)} is missing "
                             "(run the training DAG, or `recomart demo`)")
    folder = lake.root / latest["path"]
    if not (folder / MANIFEST).exists():
        raise BatchViewError(f"{folder} has no {MANIFEST}: publication incomplete")
    manifest = lake.read_json(folder / MANIFEST)
    outputs = latest.get("outputs") or {k: v["path"] for k, v in manifest["outputs"].items()}
    user_recs = _read_lists(lake, outputs["user_recs"], "user_recs")
    similar = _read_lists(lake, outputs["similar_items"], "similar_items")
    audience = _read_lists(lake, outputs["audience"], "audience")
    popular: list[tuple[int, float]] = []
    if len(user_recs.items):
        popular = popular_items(user_recs.items)
    published = manifest.get("published_at") or latest.get("updated_at")
    try:
        computed_at = datetime.fromisoformat(published).timestamp() if published else 0.0
    except ValueError:
        computed_at = 0.0
    return BatchView(model=str(latest["model"]), version=int(latest["version"]),
                     path=str(latest["path"]), computed_at=computed_at,
                     signature=_signature(latest), user_recs=user_recs, similar=similar,
                     audience=audience, popular=popular)


class ViewHolder(BackgroundRefresh):
    """The view in use, and a background loop that swaps in a new one when latest.json changes."""

    thread_name = "batch-view-reload"

    def __init__(self, lake: Lake, poll_s: float = 5.0,
                 on_swap: Callable[[BatchView | None, BatchView], None] | None = None) -> None:
        self.lake, self.poll_s, self.on_swap = lake, poll_s, on_swap
        self.view: BatchView | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self._lock = threading.Lock()  # one loader at a time (poll loop vs. reload endpoint)
        self._init_refresh()

    def refresh(self, force: bool = False) -> bool:
        """Load and switch if latest.json names something new; True when a swap happened.
        A failed load keeps the current view and records the error."""
        with self._lock:
            try:
                latest = read_latest(self.lake)
                if latest is None:
                    self.last_error = f"nothing published yet ({self.lake.path('serving', LATEST)})"
                    return False
                current = self.view
                if not force and current is not None and current.signature == _signature(latest):
                    return False
                new = load_view(self.lake, latest)
            except Exception as exc:  # keep serving the old view; readiness shows the error
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("batch view not (re)loaded: %s", self.last_error)
                return False
            self.view = new  # the atomic switch
            self.last_error = None
            self.swaps += 1
        log.info("batch view now %s v%s (%d users, %d products, %.1f MB)", new.model, new.version,
                 len(new.user_recs), len(new.similar), new.nbytes / 1e6)
        if self.on_swap:
            self.on_swap(current, new)
        return True

