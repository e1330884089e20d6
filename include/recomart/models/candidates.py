"""Candidate generation for the hybrid: several cheap sources, their scores kept as features.

Sources (all fitted on the same training pairs, so matrix rows/columns align):
EASE, BiasedSVD (predicted rating), item-item co-occurrence (cosine, top neighbours per item),
content similarity of the item to the user's recent items (TF-IDF), and popularity. Each user's
candidates are the union of every source's top ``k`` unseen items; every candidate carries every
source's score (and its rank within that source's top ``k``, ``k + 1`` when outside it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recomart.errors import RecomartError
from recomart.models.base import batches, top_n
from recomart.models.baselines import EASERecommender
from recomart.models.content import ContentModel
from recomart.models.data import InteractionMatrix, to_pairs
from recomart.models.sparse_products import dense_product
from recomart.models.svd import SVDRecommender

log = logging.getLogger(__name__)
SOURCES = ("ease", "svd", "cooc", "content", "pop", "buy_again")
#: Sources whose top-k may hold items the user already has (the others rank unseen items only).
REPEAT_SOURCES = ("buy_again",)
DAY_S = 86400.0


#: Above this many items co-occurrence is computed sparse (dense blocks cost O(block x items)).
SPARSE_COOC_ITEMS = 20_000
#: Dense score cells (users x items x sources) one candidate batch may hold (~0.6 GB float32).
CANDIDATE_CELLS = 150_000_000


def _sparse_cooccurrence(xt: sp.csc_matrix, norms: np.ndarray, k: int, block: int) -> sp.csr_matrix:
    n = xt.shape[1]
    rows, cols, vals = [], [], []
    for sl in batches(n, block):
        co = (xt[:, sl].T @ xt).tocoo()
        r, c = co.row.astype(np.int64), co.col.astype(np.int64)
        v = co.data.astype(np.float32) / np.maximum(norms[sl.start + r] * norms[c], 1e-12)
        keep = (sl.start + r != c) & (v > 0)
        r, c, v = r[keep], c[keep], v[keep]
        order = np.lexsort((c, -v, r))  # per row: best first, ties by item index
        r, c, v = r[order], c[order], v[order]
        first = np.r_[0, np.flatnonzero(np.diff(r)) + 1] if len(r) else np.array([], np.int64)
        counts = np.diff(np.r_[first, len(r)])
        rank = np.arange(len(r)) - np.repeat(first, counts)
        top = rank < k
        rows.append(sl.start + r[top])
        cols.append(c[top])
        vals.append(v[top])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n), dtype=np.float32)


def cooccurrence_neighbours(x: sp.csr_matrix, k: int = 100, block: int = 1024) -> sp.csr_matrix:
    """Item x item cosine similarity of the binary matrix, keeping the top ``k`` per item
    (dense blocks for small catalogs, sparse products for large ones)."""
    xt = sp.csc_matrix(x)
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
    n = x.shape[1]
    if n > SPARSE_COOC_ITEMS:
        return _sparse_cooccurrence(xt, norms, k, block)
    rows, cols, vals = [], [], []
    for sl in batches(n, block):
        co = np.asarray((xt[:, sl].T @ xt).todense(), dtype=np.float32)
        co /= np.maximum(norms[sl, None] * norms[None, :], 1e-12)
        co[np.arange(co.shape[0]), np.arange(sl.start, sl.stop)] = 0.0
        idx, sc = top_n(co, min(k, n))
        keep = sc > 0
        rows.append(np.repeat(np.arange(sl.start, sl.stop), idx.shape[1]).reshape(idx.shape)[keep])
        cols.append(idx[keep])
        vals.append(sc[keep])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n), dtype=np.float32)


class CandidateSources:
    """Fits every candidate source on one set of training pairs."""

    def __init__(self, ease_lam: float = 400.0, ease_max_items: int = 4000,
                 svd_params: dict[str, Any] | None = None, cooc_neighbours: int = 100,
                 profile_items: int = 20, seed: int = 42) -> None:
        self.ease_lam = ease_lam
        self.ease_max_items = ease_max_items
        self.svd_params = svd_params
        self.cooc_neighbours = cooc_neighbours
        self.profile_items = profile_items
        self.seed = seed

    def fit(self, interactions: pd.DataFrame, products: pd.DataFrame,
            content: ContentModel | None = None, events: pd.DataFrame | None = None
            ) -> CandidateSources:
        """``events`` (event level, with ``event_type``) feed the buy-again source; without them
        it has nothing to offer."""
        self.timings_: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            self.timings_[stage] = round(now - clock, 3)
            clock = now

        pairs = to_pairs(interactions)
        self.im_ = InteractionMatrix.from_pairs(pairs)
        self._fit_history(pairs)
        lap("pairs")
        # The SVD's SGD is compiled code that releases the GIL: it runs on a second core while
        # EASE, co-occurrence, content and buy-again are fitted here (each result is what a
        # sequential fit gives; only the order of the work changes)
        from concurrent.futures import ThreadPoolExecutor

        from recomart.models.base import worker_threads

        svd = SVDRecommender(self.svd_params, seed=self.seed)
        pool = ThreadPoolExecutor(1) if worker_threads() > 1 else None
        svd_fit = pool.submit(svd.fit, pairs) if pool else None
        try:
            self.ease_ = EASERecommender(self.ease_lam, self.ease_max_items).fit(pairs)
            lap("ease_fit")
            self._fit_rest(pairs, products, content, events, lap)
            self.svd_ = svd_fit.result() if svd_fit else svd.fit(pairs)
            lap("svd_fit (wait)" if svd_fit else "svd_fit")
        finally:
            if pool:
                pool.shutdown(wait=True)
        for model in (self.ease_, self.svd_):
            if not np.array_equal(model.item_ids, self.im_.item_ids):
                raise RecomartError(f"{type(model).__name__} item index differs from the matrix's")
        return self

    def _fit_rest(self, pairs: pd.DataFrame, products: pd.DataFrame, content: ContentModel | None,
                  events: pd.DataFrame | None, lap) -> None:
        self.cooc_ = cooccurrence_neighbours(self.im_.matrix, self.cooc_neighbours)
        self.popularity_ = np.asarray(self.im_.matrix.sum(axis=0)).ravel().astype(np.float64)
        lap("cooc_fit")
        self.content_ = content if content is not None else ContentModel().fit(products)
        # Recent-items profile: each user's last ``profile_items`` items, newer ones weigh more.
        recent = pairs.sort_values(["user_id", "last_timestamp"]).groupby("user_id").tail(
            self.profile_items)
        order = recent.groupby("user_id").cumcount(ascending=False).to_numpy()
        weights = (0.9 ** order).astype(np.float32)
        rows = self.im_.user_index(recent["user_id"].to_numpy())
        cols = self.im_.item_index(recent["product_id"].to_numpy())
        recent_w = sp.csr_matrix((weights, (rows, cols)), shape=self.im_.matrix.shape)
        self.profiles_ = self.content_.profiles(recent_w, self.im_.item_ids)
        self.item_vectors_ = self.content_.vectors(self.im_.item_ids).T.tocsr()
        lap("content_profiles")
        self._fit_buy_again(events)
        lap("buy_again")

    def _fit_history(self, pairs: pd.DataFrame) -> None:
        """The user's own history with each item (events, strongest event, last time), so a
        ranker can tell an item viewed yesterday from one bought twice last month."""
        from recomart.models.data import epoch_seconds

        r = self.im_.user_index(pairs["user_id"].to_numpy())
        c = self.im_.item_index(pairs["product_id"].to_numpy())
        shape = self.im_.matrix.shape
        self.hist_events_ = sp.csr_matrix((pairs["n_events"].to_numpy(np.float32), (r, c)), shape=shape)
        self.hist_strength_ = sp.csr_matrix((pairs["strength"].to_numpy(np.float32), (r, c)),
                                            shape=shape)
        self.hist_last_ = sp.csr_matrix((epoch_seconds(pairs["last_timestamp"]).astype(np.float64),
                                         (r, c)), shape=shape)
        self.hist_ref_ = float(self.hist_last_.data.max()) if self.hist_last_.nnz else 0.0

    def history_features(self, rows: np.ndarray, cols: np.ndarray,
                         at: np.ndarray | None = None) -> dict[str, np.ndarray]:
        n = np.asarray(self.hist_events_[rows, cols]).ravel()
        last = np.asarray(self.hist_last_[rows, cols]).ravel()
        ref = self.hist_ref_ if at is None else at
        return {"ui_events": n.astype(np.float32),
                "ui_strength": np.asarray(self.hist_strength_[rows, cols]).ravel().astype(np.float32),
                "ui_days_since_seen": np.where(n > 0, (ref - last) / DAY_S, np.nan).astype(np.float32)}

    def _fit_buy_again(self, events: pd.DataFrame | None) -> None:
        """Per (user, item) purchase count and last purchase time; per item the median interval
        between one user's consecutive purchases of it (its repurchase cycle, NaN when unseen)."""
        from recomart.models.data import epoch_seconds

        shape = self.im_.matrix.shape
        self.item_cycle_days_ = np.full(shape[1], np.nan)
        if events is None or "event_type" not in events or not len(events):
            self.bought_ = sp.csr_matrix(shape, dtype=np.float32)
            self.last_bought_ = sp.csr_matrix(shape, dtype=np.float64)
            self.ref_time_ = 0.0
            return
        ev = events.loc[events["event_type"].eq("purchase"), ["user_id", "product_id", "timestamp"]]
        rows = self.im_.user_index(ev["user_id"].to_numpy())
        cols = self.im_.item_index(ev["product_id"].to_numpy())
        t = epoch_seconds(pd.to_datetime(ev["timestamp"], utc=True)).astype(np.float64)
        ok = (rows >= 0) & (cols >= 0)
        frame = pd.DataFrame({"r": rows[ok], "c": cols[ok], "t": t[ok]}).drop_duplicates()
        self.ref_time_ = float(epoch_seconds(pd.to_datetime(events["timestamp"], utc=True)).max())
        g = frame.groupby(["r", "c"])["t"]
        agg = pd.DataFrame({"n": g.size(), "last": g.max()})
        r, c = agg.index.get_level_values(0), agg.index.get_level_values(1)
        self.bought_ = sp.csr_matrix((agg["n"].to_numpy(np.float32), (r, c)), shape=shape)
        self.last_bought_ = sp.csr_matrix((agg["last"].to_numpy(np.float64), (r, c)), shape=shape)
        frame = frame.sort_values(["r", "c", "t"])
        gap = frame.groupby(["r", "c"])["t"].diff() / DAY_S
        cycles = gap.groupby(frame["c"].to_numpy()).median().dropna()
        self.item_cycle_days_[cycles.index.to_numpy()] = cycles.to_numpy()

    def buy_again_scores(self, rows: np.ndarray) -> np.ndarray:
        """Times bought + recency in [0, 0.5) (ties broken by the latest purchase); -inf for items
        the user never bought."""
        n = self.bought_[rows].toarray().astype(np.float32)
        last = self.last_bought_[rows].toarray()
        span = max(self.ref_time_ - float(self.last_bought_.data.min()), 1.0) \
            if self.last_bought_.nnz else 1.0
        recency = np.where(n > 0, 0.5 * (1 - (self.ref_time_ - last) / (span * 1.01)), 0.0)
        return np.where(n > 0, n + recency, -np.inf).astype(np.float32)

    def buy_again_features(self, rows: np.ndarray, cols: np.ndarray,
                           at: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Times bought, days since the last purchase (as of ``at`` per row, else the end of the
        training data) and that over the item's typical repurchase interval."""
        n = np.asarray(self.bought_[rows, cols]).ravel().astype(np.float32)
        last = np.asarray(self.last_bought_[rows, cols]).ravel()
        ref = self.ref_time_ if at is None else at
        days = np.where(n > 0, (ref - last) / DAY_S, np.nan).astype(np.float32)
        cycle = self.item_cycle_days_[cols]
        ratio = np.where((n > 0) & (cycle > 0), days / np.where(cycle > 0, cycle, 1.0), np.nan)
        return {"ba_times_bought": n, "ba_days_since_last": days,
                "ba_cycle_ratio": ratio.astype(np.float32),
                "ba_item_cycle_days": cycle.astype(np.float32)}

    def scores(self, rows: np.ndarray, buy_again: bool = True) -> dict[str, np.ndarray]:
        """Dense users x items scores per source for known users' rows."""
        x = self.im_.matrix[rows]
        out = {
            "ease": self.ease_.score(rows, dtype=np.float32),
            "svd": self.svd_.score(rows).astype(np.float32),
            "cooc": np.asarray((x @ self.cooc_).todense(), dtype=np.float32),
            "content": dense_product(self.profiles_[rows], self.item_vectors_).astype(
                np.float32, copy=False),
            "pop": np.broadcast_to(np.log1p(self.popularity_).astype(np.float32),
                                   (len(rows), x.shape[1])),
        }
        if buy_again:
            out["buy_again"] = self.buy_again_scores(rows)
        return out

    def candidates(self, user_ids: np.ndarray, k: int | dict[str, int] = 50,
                   batch_size: int = 1024, at: pd.Series | None = None,
                   repeat: bool = False) -> pd.DataFrame:
        """Union of each source's top-k items (unseen ones, except for ``REPEAT_SOURCES``):
        user_id, product_id, <src>_score/_rank and the buy-again features (as of ``at``, a time
        per user, else the end of the training data). ``repeat``: every source may propose items
        the user already has (repeat-heavy shops: yesterday's viewed item is tomorrow's basket)."""
        user_ids = np.asarray(user_ids, dtype="int64")
        rows_all = self.im_.user_index(user_ids)
        if (rows_all < 0).any():
            raise ValueError("candidates() needs users seen in training (cold start is separate)")
        ks = k if isinstance(k, dict) else dict.fromkeys(SOURCES, k)
        # without repeats the buy-again source and its features are left out entirely, so the
        # explore-mode hybrid sees exactly the features it always had
        repeat_cols = repeat or ks.get("buy_again", 0) > 0
        sources = SOURCES if repeat_cols else tuple(s for s in SOURCES if s not in REPEAT_SOURCES)
        # large catalogs: fewer users per batch, so the dense per-source scores fit in memory
        batch_size = min(batch_size, max(16, CANDIDATE_CELLS // max(
            self.im_.matrix.shape[1] * (len(SOURCES) + 2), 1)))
        # a source is masked in place (its scores are fresh arrays) unless an unmasked source
        # may propose seen items: their other scores are read back below and must stay intact
        in_place = not repeat and not any(ks.get(s, 0) > 0 for s in sources if s in REPEAT_SOURCES)
        frames = []
        for sl in batches(len(rows_all), batch_size):
            rows = rows_all[sl]
            sc = self.scores(rows, buy_again=repeat_cols)
            seen_r, seen_c = self.im_.matrix[rows].nonzero()
            n_items = self.im_.matrix.shape[1]
            mask = np.zeros((len(rows), n_items), dtype=bool)
            # each source's top-k as flat cell keys (row * items + column) and their ranks; only
            # the union's cells get a rank column (no users x items rank array per source)
            tops: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for src in sources:
                kk = ks.get(src, 0)
                if kk <= 0:
                    continue
                s = sc[src]
                if not (in_place and s.flags.writeable and s.dtype == np.float32):
                    s = np.array(s, dtype=np.float32)
                if src not in REPEAT_SOURCES and not repeat:
                    s[seen_r, seen_c] = -np.inf
                idx, top = top_n(s, kk)
                ok = np.isfinite(top)
                rr = np.repeat(np.arange(len(rows)), idx.shape[1]).reshape(idx.shape)
                mask[rr[ok], idx[ok]] = True
                tops[src] = (rr[ok].astype(np.int64) * n_items + idx[ok],
                             np.broadcast_to(np.arange(1, idx.shape[1] + 1, dtype=np.int16),
                                             idx.shape)[ok])
            r, c = mask.nonzero()
            cells = r.astype(np.int64) * n_items + c  # ascending: nonzero() is row-major
            cols: dict[str, np.ndarray] = {"user_id": user_ids[sl][r],
                                           "product_id": self.im_.item_ids[c]}
            for src in sources:
                cols[f"{src}_score"] = np.asarray(sc[src][r, c], dtype=np.float32)
                rank = np.full(len(r), ks.get(src, 0) + 1, dtype=np.int16)
                if src in tops:
                    rank[np.searchsorted(cells, tops[src][0])] = tops[src][1]
                cols[f"{src}_rank"] = rank
            if repeat_cols:
                cols["buy_again_score"] = np.where(np.isfinite(cols["buy_again_score"]),
                                                   cols["buy_again_score"], 0.0).astype(np.float32)
                when = None
                if at is not None:
                    from recomart.models.data import epoch_seconds

                    when = epoch_seconds(pd.to_datetime(
                        at.reindex(cols["user_id"]).fillna(at.max()), utc=True)).astype(np.float64)
                cols.update(self.buy_again_features(rows[r], c, when))
                cols.update(self.history_features(rows[r], c, when))
            frames.append(pd.DataFrame(cols))
        return pd.concat(frames, ignore_index=True)
