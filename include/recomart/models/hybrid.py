"""The hybrid recommender: multi-source candidates re-ranked by XGBoost, with cold-start paths.

Training has two stages. (1) A per-user time split of the training data (same rule as the
evaluation protocol) gives a validation period: candidate sources are fitted on the earlier part,
candidates for the validation users are labelled by what they engaged with later, and the
XGBoost ranker learns from those. (2) The sources and feature statistics are refitted on all
training data and the ranker scores their candidates.

Cold start: unknown users get recency-weighted popular items of their segment (region, gender,
age band: the finest segment with enough users), else global; items without interactions are
reachable through content similarity (``similar_items``, ``audience`` and ``new_item_slots``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from recomart.models.base import Recommender, batches, empty_recs, map_blocks, top_n
from recomart.models.candidates import CandidateSources
from recomart.models.cold_start import SegmentPopularity
from recomart.models.content import ContentModel
from recomart.models.data import normalize_events, to_pairs
from recomart.models.ranker import Ranker
from recomart.models.ranker_features import FeatureBuilder
from recomart.models.split import Relevance, resolve_relevance, temporal_split

log = logging.getLogger(__name__)
#: ``features_at(per-user cut-off times) -> (user_features, item_features)`` as of those times.
FeaturesAt = Callable[[pd.Series], tuple[pd.DataFrame | None, pd.DataFrame | None]]

DEFAULT_HYBRID_PARAMS: dict[str, Any] = {
    "candidates": {"ease": 100, "svd": 30, "cooc": 50, "content": 30, "pop": 30},
    "ease_lam": 400.0, "ease_max_items": 4000, "svd": None, "ranker": None, "ranker_grid": None,
    "max_ranker_users": 10000, "holdout": 0.2, "cooc_neighbours": 100,
    "cold_half_life_days": 30.0, "min_segment_users": 20, "similar_content_weight": 0.3,
    "repeat": False,
}
#: Repeat mode (repeat-heavy shops): a buy-again candidate source, the ranker learns from each
#: user's next basket (repeats included), and its fallback may be the buy-again ordering.
REPEAT_CANDIDATES = {"buy_again": 30}


def repeat_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` switched to repeat mode (keeps an explicit ``buy_again`` candidate count)."""
    cands = {**params.get("candidates", DEFAULT_HYBRID_PARAMS["candidates"])}
    cands.setdefault("buy_again", REPEAT_CANDIDATES["buy_again"])
    return {**params, "repeat": True, "candidates": cands}



def _products_or_ids(products: pd.DataFrame | None, events: pd.DataFrame) -> pd.DataFrame:
    if products is not None and len(products):
        return products
    ids = np.unique(events["product_id"].to_numpy())
    return pd.DataFrame({"product_id": ids, "title": ids.astype(str), "category": "?"})


#: The ``reason`` a list row shows: the candidate source that ranked the item highest.
SOURCE_REASONS = {"ease": "similar_users", "svd": "similar_users", "cooc": "similar_to_recent",
                  "content": "similar_to_recent", "pop": "popular", "buy_again": "buy_again"}


def source_reasons(cands: pd.DataFrame, ks: dict[str, int] | int) -> np.ndarray:
    """Per candidate: the reason of the source that put it highest in its own top-k."""
    ks = ks if isinstance(ks, dict) else dict.fromkeys(SOURCE_REASONS, ks)
    sources = [s for s in SOURCE_REASONS if f"{s}_rank" in cands.columns and ks.get(s, 0) > 0]
    if not sources or not len(cands):
        return np.full(len(cands), "batch", dtype=object)
    outside = np.iinfo(np.int64).max
    ranks = np.column_stack([np.where(r <= ks[s], r, outside) for s in sources
                             for r in [cands[f"{s}_rank"].to_numpy().astype(np.int64)]])
    best = np.argmin(ranks, axis=1)
    return np.array([SOURCE_REASONS[s] for s in sources], dtype=object)[best]


class HybridRecommender(Recommender):
    """Candidates (EASE, SVD, co-occurrence, content, popularity) + XGBoost re-ranking."""

    name = "hybrid"
    batch_size = 1024
    #: Two user blocks at a time in threads: since the content scores run in compiled code without
    #: the GIL, 20k users' top-20 took 10.5 s instead of 14.1 s (same CPU seconds, +0.47 GB peak
    #: RSS). Before that change two blocks measured worse (publish 248 vs 203 CPU-s).
    parallel_batches = 2

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 42) -> None:
        self.params = {**DEFAULT_HYBRID_PARAMS, **(params or {})}
        self.seed = seed

    # ---- training --------------------------------------------------------------------------
    def _sources(self, content: ContentModel) -> CandidateSources:
        p = self.params
        return CandidateSources(ease_lam=p["ease_lam"], ease_max_items=p["ease_max_items"],
                                svd_params=p["svd"], cooc_neighbours=p["cooc_neighbours"],
                                seed=self.seed)

    def fit(self, interactions: pd.DataFrame, products: pd.DataFrame | None = None,
            users: pd.DataFrame | None = None, user_features: pd.DataFrame | None = None,
            item_features: pd.DataFrame | None = None,
            relevance: Relevance = "auto", features_at: FeaturesAt | None = None
            ) -> HybridRecommender:
        """``user_features`` / ``item_features`` are as of the end of ``interactions``: the final
        ranker scores with them. ``features_at(times)`` returns ``(user_features, item_features)``
        as of earlier times: the ranker's own validation period then gets features as of its
        cut-off, so counts taken later (its labels) never reach its training rows. Without it,
        the given frames are used there too (only honest when they hold no later data)."""
        self.timings_: dict[str, float] = {}
        events = normalize_events(interactions)
        relevance = resolve_relevance(events, relevance)
        products = _products_or_ids(products, events)
        with self._timed("content_fit"):
            self.content_ = ContentModel().fit(products)
        self._fit_ranker(events, products, relevance, user_features, item_features, features_at)
        with self._timed("final_sources_fit"):
            pairs = to_pairs(events)
            self.sources_ = self._sources(self.content_).fit(pairs, products, content=self.content_,
                                                             events=events)
        self.timings_.update({f"final_{k}": v for k, v in self.sources_.timings_.items()})
        self.im_ = self.sources_.im_
        self.popularity_ = self.sources_.popularity_
        with self._timed("final_features_fit"):
            self.features_ = FeatureBuilder().fit(pairs, products, self.im_, user_features,
                                                  item_features)
            self.cold_ = SegmentPopularity(self.params["cold_half_life_days"],
                                           self.params["min_segment_users"]).fit(pairs, users, self.im_)
        self.new_items_ = np.setdiff1d(self.content_.product_ids_, self.im_.item_ids)
        return self

    def _timed(self, stage: str):
        """Context manager adding the wall time of a block to ``timings_`` (for logs/benchmarks)."""
        from contextlib import contextmanager

        @contextmanager
        def block():
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self.timings_[stage] = round(time.perf_counter() - t0, 3)
        return block()

    def _inner_split(self, events: pd.DataFrame, relevance: Relevance):
        """The ranker's validation period. Explore mode: per-user time split (new items).
        Repeat mode: each user's last basket (purchases at one time) after >= 1 earlier one, every
        item a candidate: labels then include repeat purchases. Returns (train events, labelled
        pairs with a boolean ``relevant``, per-user cut-off or None)."""
        if self.params.get("repeat"):
            from recomart.models.protocols import ProtocolError, next_basket_split

            bought = events.loc[events["event_type"].eq("purchase"), ["user_id", "product_id",
                                                                      "timestamp"]]
            orders = bought.assign(order_id=pd.factorize(
                pd.MultiIndex.from_frame(bought[["user_id", "timestamp"]]))[0])
            try:
                inner = next_basket_split(events, orders, min_users=1)
                return inner.train, inner.relevant.assign(relevant=True), inner.cutoff
            except ProtocolError as exc:
                log.warning("repeat-mode ranker: %s; using the per-user time split", exc)
        inner = temporal_split(events, holdout=self.params["holdout"], relevance=relevance)
        return inner.train, inner.test, inner.cutoff

    def _fit_ranker(self, events, products, relevance, user_features, item_features,
                    features_at: FeaturesAt | None = None) -> None:
        with self._timed("ranker_split"):
            inner_train, test, at = self._inner_split(events, relevance)
        if features_at is not None:
            # point in time: the ranker's rows only see features as of its own cut-off
            user_features, item_features = features_at(at)
        inner_pairs = to_pairs(inner_train)  # once: the sources and the features share it
        with self._timed("ranker_sources_fit"):
            src = self._sources(self.content_).fit(inner_pairs, products,
                                                   content=self.content_, events=inner_train)
        self.timings_.update({f"ranker_{k}": v for k, v in src.timings_.items()})
        test = test.loc[src.im_.user_index(test["user_id"].to_numpy()) >= 0]
        users = np.unique(test.loc[test["relevant"], "user_id"].to_numpy())
        if len(users) == 0:
            raise ValueError("no user has a relevant item in the ranker's validation period")
        rng = np.random.default_rng(self.seed)
        if len(users) > self.params["max_ranker_users"]:
            users = np.sort(rng.choice(users, self.params["max_ranker_users"], replace=False))
        with self._timed("ranker_candidates"):
            cands = src.candidates(users, self.params["candidates"], at=at,
                                   repeat=bool(self.params.get("repeat")))
        held = test.set_index(["user_id", "product_id"])["relevant"]
        held = held[~held.index.duplicated()]
        key = pd.MultiIndex.from_frame(cands[["user_id", "product_id"]])
        label = held.reindex(key).to_numpy()
        # Graded: 2 = relevant later, 1 = engaged later but not relevant, 0 = no engagement.
        y = np.where(pd.isna(label), 0, np.where(label == True, 2, 1)).astype(np.float32)  # noqa: E712
        del held, key, label
        has_pos = pd.Series(y >= 2).groupby(cands["user_id"].to_numpy()).transform("any").to_numpy()
        with self._timed("ranker_features"):
            fb = FeatureBuilder().fit(inner_pairs, products, src.im_, user_features,
                                      item_features)
            # only the rows the ranker learns from (users with a relevant candidate): the
            # features are row by row, so these are the same rows as a filter afterwards
            x = fb.transform(cands.loc[has_pos].reset_index(drop=True))
        query = cands["user_id"].to_numpy()[has_pos]
        del cands  # the ranker's rows are in ``x`` now
        with self._timed("ranker_fit"):
            fallback = ("ease_score", "buy_again_score") if self.params.get("repeat") else (
                "ease_score",)
            from recomart.config import get_settings

            self.ranker_ = Ranker(self.params["ranker"], seed=self.seed,
                                  grid=self.params["ranker_grid"], fallback=fallback,
                                  search_users=get_settings().models_ranker_search_users).fit(
                x, y[has_pos], query)
        n_relevant = int(test.loc[test["user_id"].isin(users), "relevant"].sum())
        recall = (y >= 2).sum() / max(n_relevant, 1)
        self.training_info_ = {"ranker_users": len(users), "ranker_rows": int(has_pos.sum()),
                               "candidate_recall": float(recall),
                               "ranker_choice": self.ranker_.best_,
                               "ranker_search_users": self.ranker_.search_sample_,
                               "ranker_search": self.ranker_.search_}
        log.info("hybrid ranker trained: %s", self.training_info_)

    # ---- serving ---------------------------------------------------------------------------
    def _recommend_rows(self, users: np.ndarray, rows: np.ndarray, n: int,
                        exclude_seen: bool) -> pd.DataFrame:
        cands = self.sources_.candidates(users, self.params["candidates"],
                                         repeat=bool(self.params.get("repeat")))
        if len(cands) == 0:
            return empty_recs()
        score = self.ranker_.predict(self.features_.transform(cands))
        out = pd.DataFrame({"user_id": cands["user_id"].to_numpy(),
                            "product_id": cands["product_id"].to_numpy(),
                            "score": score.astype("float64"),
                            "reason": source_reasons(cands, self.params["candidates"])})
        out = out.sort_values(["user_id", "score"], ascending=[True, False], kind="stable")
        out["rank"] = out.groupby("user_id").cumcount() + 1
        return out.loc[out["rank"] <= n].reset_index(drop=True).astype({"rank": "int64"})

    def recommend(self, user_ids, n: int = 10, exclude_seen: bool = True,
                  users: pd.DataFrame | None = None, new_item_slots: int = 0) -> pd.DataFrame:
        """Top-n per user. ``users`` gives demographics of new users for segment popularity;
        ``new_item_slots`` reserves the last slots for items without interactions (content).
        Candidates are unseen items except the buy-again source's (repeat mode), whatever
        ``exclude_seen`` says."""
        self._request_users = users
        try:
            recs = super().recommend(user_ids, n=n, exclude_seen=exclude_seen)
        finally:
            self._request_users = None
        if new_item_slots > 0 and len(self.new_items_) and len(recs):
            recs = self._with_new_items(recs, n, new_item_slots)
        return recs

    def _with_new_items(self, recs: pd.DataFrame, n: int, slots: int) -> pd.DataFrame:
        users = np.unique(recs["user_id"].to_numpy())
        rows = self.im_.user_index(users)
        known = rows >= 0
        if not known.any():
            return recs
        sims = self.content_.similarity(self.sources_.profiles_[rows[known]], self.new_items_)
        idx, sc = top_n(sims.astype(np.float64), slots)
        new = pd.DataFrame({"user_id": np.repeat(users[known], idx.shape[1]),
                            "product_id": self.new_items_[idx.ravel()], "score": sc.ravel()})
        new = new.loc[new["score"] > 0].assign(reason="new_item")
        keep = recs.loc[recs["rank"] <= n - slots]
        out = pd.concat([keep, new.assign(rank=0)], ignore_index=True)
        out["rank"] = out.groupby("user_id").cumcount() + 1
        return out.astype({"rank": "int64"})

    def cold_start(self, user_ids: np.ndarray, n: int) -> pd.DataFrame:
        """Segment-aware, recency-weighted popular items for users without history."""
        recs = self.cold_.recommend(user_ids, n, users=getattr(self, "_request_users", None))
        recs["reason"] = "popular_in_segment"
        return recs

    def similar_items(self, product_ids, n: int = 10, batch_size: int = 512) -> pd.DataFrame:
        """Co-occurrence + content neighbours among trained items (content only for new items).

        Blocks run on the worker threads: the sparse product, the dense copy and the top-n
        selection spend their time in C with the GIL released."""
        product_ids = np.asarray(product_ids, dtype="int64")
        frames = map_blocks(lambda sl: self._similar_block(product_ids[sl], n),
                             list(batches(len(product_ids), batch_size)))
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame({"product_id": pd.Series([], dtype="int64"),
                                 "similar_product_id": pd.Series([], dtype="int64"),
                                 "score": pd.Series([], dtype="float64"),
                                 "rank": pd.Series([], dtype="int64")})
        return pd.concat(frames, ignore_index=True)

    def _similar_block(self, product_ids: np.ndarray, n: int) -> pd.DataFrame:
        # float32 like the content vectors and co-occurrence weights, summed in place; the item
        # itself is knocked out by its one cell, and scores <= 0 are dropped after the selection
        # (they rank below every positive score, so the kept neighbours are the same)
        scores = self.content_.similarity(self.content_.vectors(product_ids), self.item_ids)
        scores *= np.float32(self.params["similar_content_weight"])
        rows = self.im_.item_index(product_ids)
        known = np.flatnonzero(rows >= 0)
        if len(known):
            scores[known] += self.sources_.cooc_[rows[known]].toarray()
            scores[known, rows[known]] = -np.inf
        idx, sc = top_n(scores, n, threads=1)
        valid = sc > 0
        src = np.repeat(product_ids, idx.shape[1]).reshape(idx.shape)
        return pd.DataFrame({"product_id": src[valid], "similar_product_id": self.item_ids[idx[valid]],
                             "score": sc[valid].astype(np.float64),
                             "rank": np.cumsum(valid, axis=1)[valid].astype("int64")})

    def audience(self, product_ids, n: int = 100, batch_size: int = 256) -> pd.DataFrame:
        """Top-n users most likely to engage with each product (who have not yet).

        EASE propensity for modelled items; content similarity of user profiles otherwise.
        Blocks of products run on the worker threads (sparse products and top-n release the GIL).
        """
        product_ids = np.asarray(product_ids, dtype="int64")
        ease = self.sources_.ease_
        x = self.im_.matrix
        x_ease = x[:, ease.cols_].tocsr()
        xt = x.T.tocsr()
        cols = self.im_.item_index(product_ids)
        ease_pos = np.searchsorted(ease.cols_, np.maximum(cols, 0))
        ease_pos = np.minimum(ease_pos, len(ease.cols_) - 1)
        in_ease = (cols >= 0) & (ease.cols_[ease_pos] == cols)

        def block(sl: slice) -> pd.DataFrame:
            pids, col, pos, ok = product_ids[sl], cols[sl], ease_pos[sl], in_ease[sl]
            # float32 like the EASE weights and content vectors: the same values as a float64
            # copy, half the memory traffic (the top-n selection is most of the cost here)
            score = np.empty((len(pids), x.shape[0]), dtype=np.float32)
            if ok.any():
                score[ok] = np.asarray(x_ease @ ease.weights_[:, pos[ok]]).T
            if (~ok).any():
                sim = self.content_.similarity(self.sources_.profiles_, pids[~ok]).T
                score[~ok] = np.where(sim > 0, sim, -np.inf)
            known = np.flatnonzero(col >= 0)
            if len(known):
                seen = xt[col[known]]
                r, c = seen.nonzero()
                score[known[r], c] = -np.inf
            idx, sc = top_n(score, n, threads=1)
            valid = np.isfinite(sc)
            return pd.DataFrame({
                "product_id": np.repeat(pids, idx.shape[1]).reshape(idx.shape)[valid],
                "user_id": self.im_.user_ids[idx[valid]], "score": sc[valid].astype(np.float64),
                "rank": np.cumsum(valid, axis=1)[valid].astype("int64")})

        frames = map_blocks(block, list(batches(len(product_ids), batch_size)))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["product_id", "user_id", "score", "rank"])


def train_hybrid(interactions: pd.DataFrame, products: pd.DataFrame | None = None,
                 users: pd.DataFrame | None = None, user_features: pd.DataFrame | None = None,
                 item_features: pd.DataFrame | None = None, params: dict[str, Any] | None = None,
                 seed: int = 42, relevance: Relevance = "auto",
                 features_at: FeaturesAt | None = None) -> HybridRecommender:
    """Fit the hybrid on all given interactions (``params`` e.g. from ``evaluate_models``)."""
    return HybridRecommender(params, seed=seed).fit(interactions, products, users, user_features,
                                                    item_features, relevance=relevance,
                                                    features_at=features_at)
