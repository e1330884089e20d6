"""The common recommender interface: fit on interactions, recommend top-n per user.

Subclasses only implement ``_fit`` and ``score`` (dense scores for a batch of known users over the
training catalog); top-n selection, seen-item exclusion and cold-start users live here once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from recomart.models.data import InteractionMatrix, to_pairs
from recomart.models.selection import top_n_rows as _top_n  # the per-row selection

log = logging.getLogger(__name__)
T = TypeVar("T")
REC_COLUMNS = ["user_id", "product_id", "score", "rank"]


def empty_recs() -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.Series([], dtype="int64"),
                         "product_id": pd.Series([], dtype="int64"),
                         "score": pd.Series([], dtype="float64"),
                         "rank": pd.Series([], dtype="int64")})


#: Score cells above which ``top_n`` splits the rows over threads (numpy's partition and sort
#: release the GIL; each row's result depends on that row only, so the output is the same).
PARALLEL_TOP_N_CELLS = 2_000_000


def worker_threads() -> int:
    """Threads for embarrassingly parallel numpy work: the machine's cores, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


def map_blocks(fn: Callable[[Any], T], blocks: Sequence[Any], threads: int | None = None) -> list[T]:
    """``fn`` over independent blocks on the worker threads (at most ``threads``), results in block
    order, so the outcome is the sequential one (for work that releases the GIL)."""
    cap = worker_threads() if threads is None else min(threads, worker_threads())
    cap = min(cap, len(blocks))
    if cap <= 1:
        return [fn(b) for b in blocks]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(cap) as pool:
        return list(pool.map(fn, blocks))


def top_n(scores: np.ndarray, n: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and scores of the n best scores per row (best first, ties to the lower
    column, ``-inf`` and NaN last: callers keep the finite ones); ``threads=1`` inside work that
    is already spread over the worker threads."""
    n = min(n, scores.shape[1])
    if n <= 0:
        return np.empty((scores.shape[0], 0), int), np.empty((scores.shape[0], 0))
    threads = worker_threads() if threads is None else threads
    if threads > 1 and scores.size >= PARALLEL_TOP_N_CELLS and scores.shape[0] >= 2 * threads:
        from concurrent.futures import ThreadPoolExecutor

        parts = np.array_split(np.arange(scores.shape[0]), threads)
        with ThreadPoolExecutor(threads) as pool:
            done = list(pool.map(lambda rows: _top_n(scores[rows[0]:rows[-1] + 1], n), parts))
        return np.concatenate([d[0] for d in done]), np.concatenate([d[1] for d in done])
    return _top_n(scores, n)


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class Recommender:
    """Base class. ``fit(interactions, products=None, users=None)`` then ``recommend``."""

    name = "base"
    batch_size = 2048
    #: User blocks scored at once in threads (models whose scoring releases the GIL; each block's
    #: memory is held that many times over).
    parallel_batches = 1

    def fit(self, interactions: pd.DataFrame, products: pd.DataFrame | None = None,
            users: pd.DataFrame | None = None) -> Recommender:
        pairs = to_pairs(interactions)
        self.im_ = InteractionMatrix.from_pairs(pairs)
        counts = np.asarray(self.im_.matrix.sum(axis=0)).ravel()
        self.popularity_ = counts.astype(np.float64)
        self._fit(pairs, products, users)
        return self

    def _fit(self, pairs: pd.DataFrame, products: pd.DataFrame | None,
             users: pd.DataFrame | None) -> None:
        """Model-specific training on per-(user, item) pairs."""

    @property
    def item_ids(self) -> np.ndarray:
        return self.im_.item_ids

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Dense float scores (len(rows) x n_items) for known users' matrix rows."""
        raise NotImplementedError

    def cold_start(self, user_ids: np.ndarray, n: int) -> pd.DataFrame:
        """Recommendations for users unseen in training: global popularity by default."""
        idx, sc = top_n(self.popularity_[None, :], n)
        return _frame(np.repeat(user_ids, idx.shape[1]), self.item_ids[np.tile(idx[0], len(user_ids))],
                      np.tile(sc[0], len(user_ids)), len(user_ids), idx.shape[1])

    def recommend(self, user_ids: Sequence[int] | np.ndarray, n: int = 10,
                  exclude_seen: bool = True) -> pd.DataFrame:
        """Top-n items per user: DataFrame[user_id, product_id, score, rank] (rank 1 = best)."""
        user_ids = np.unique(np.asarray(user_ids, dtype="int64"))
        rows = self.im_.user_index(user_ids)
        known = rows >= 0
        frames = []
        k_users, k_rows = user_ids[known], rows[known]
        # dense scores per batch stay under ~250 MB whatever the catalog size
        size = min(self.batch_size, max(16, 30_000_000 // max(len(self.item_ids), 1)))
        parts = list(batches(len(k_rows), size))

        def block(sl: slice) -> pd.DataFrame:
            return self._recommend_rows(k_users[sl], k_rows[sl], n, exclude_seen)

        frames.extend(map_blocks(block, parts, threads=self.parallel_batches))
        if (~known).any():
            frames.append(self.cold_start(user_ids[~known], n))
        frames = [f for f in frames if len(f)]
        if not frames:
            return empty_recs()
        return pd.concat(frames, ignore_index=True)

    def _recommend_rows(self, users: np.ndarray, rows: np.ndarray, n: int,
                        exclude_seen: bool) -> pd.DataFrame:
        scores = np.asarray(self.score(rows), dtype=np.float64)
        if exclude_seen:
            seen = self.im_.matrix[rows]
            r, c = seen.nonzero()
            scores[r, c] = -np.inf
        idx, sc = top_n(scores, n)
        valid = np.isfinite(sc)
        u = np.repeat(users, idx.shape[1]).reshape(idx.shape)
        ranks = np.cumsum(valid, axis=1)
        return pd.DataFrame({"user_id": u[valid], "product_id": self.item_ids[idx[valid]],
                             "score": sc[valid], "rank": ranks[valid].astype("int64")})


def _frame(users: np.ndarray, items: np.ndarray, scores: np.ndarray, n_users: int,
           n: int) -> pd.DataFrame:
    return pd.DataFrame({"user_id": users.astype("int64"), "product_id": items.astype("int64"),
                         "score": scores.astype("float64"),
                         "rank": np.tile(np.arange(1, n + 1), n_users).astype("int64")})
