"""Reference recommenders: Random, TopPop (most-interacted items) and EASE.

EASE (Steck 2019) is a closed-form item-item linear model, B = I - P / diag(P) with
P = (X'X + lambda I)^-1 on the binary user x item matrix. Its cost is cubic in the item count, so it
models the ``max_items`` most popular training items (others score lowest); lambda is tuned by
time on a validation split carved from training (see ``tune_ease``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.linalg import lapack

from recomart.models.base import Recommender
from recomart.models.memo import FitMemo, digest

log = logging.getLogger(__name__)
OUTSIDE_SCORE = -1e6


class RandomRecommender(Recommender):
    """Uniformly random unseen items: the floor every model must clear."""

    name = "random"

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed

    def score(self, rows: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(rows[0]) if len(rows) else 0, len(rows)])
        return rng.random((len(rows), len(self.item_ids)))


class TopPopRecommender(Recommender):
    """Most popular training items (distinct users), the same list for everyone."""

    name = "toppop"

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(rows), len(self.popularity_))).copy()


def ease_weights(x, lam: float) -> np.ndarray:
    """Closed-form EASE item-item weights for a binary sparse user x item matrix (float32)."""
    gram = (x.T @ x).toarray().astype(np.float32)
    gram[np.diag_indices_from(gram)] += np.float32(lam)
    chol, info = lapack.spotrf(gram, lower=0, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix not positive definite (info={info})")
    inv, info = lapack.spotri(chol, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE inversion failed (info={info})")
    p = np.triu(inv) + np.triu(inv, 1).T
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b


#: EASE weights by a digest of (binary matrix, lambda): see ``recomart.models.memo``.
EASE_FITS = FitMemo("ease", maxsize=2)


class EASERecommender(Recommender):
    """EASE on the ``max_items`` most popular items; ``lam`` is the L2 penalty."""

    name = "ease"

    def __init__(self, lam: float = 200.0, max_items: int = 4000) -> None:
        self.lam = lam
        self.max_items = max_items

    def _fit(self, pairs, products, users) -> None:
        n_items = len(self.item_ids)
        if n_items > self.max_items:
            keep = np.sort(np.argsort(-self.popularity_, kind="stable")[: self.max_items])
        else:
            keep = np.arange(n_items)
        self.cols_ = keep
        x = self.im_.matrix[:, keep]
        # closed form: the same matrix and lambda give the same weights (e.g. the EASE baseline and
        # the hybrid's final EASE source, or the lambda search and the hybrid's ranker split)
        key = digest(x.indptr, x.indices, x.data, np.asarray(x.shape), extra=float(self.lam))
        self.weights_ = EASE_FITS.get_or_fit(key, lambda: ease_weights(x, self.lam))
        log.info("EASE fitted on %d items (lambda=%s)", len(keep), self.lam)

    def score(self, rows: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """``dtype=np.float32`` gives the same values (the weights are float32) at half the size."""
        x = self.im_.matrix[rows][:, self.cols_]
        out = np.full((len(rows), len(self.item_ids)), OUTSIDE_SCORE, dtype=dtype)
        out[:, self.cols_] = np.asarray(x @ self.weights_)
        return out


def tune_ease(train_events: pd.DataFrame, lambdas: Sequence[float] = (50, 150, 400, 1000),
              max_items: int = 4000, relevance="auto", holdout: float = 0.2,
              max_users: int | None = None, seed: int = 42) -> dict:
    """Pick lambda by NDCG@10 on a per-user time split of the training events. Each lambda is
    fitted on the whole split; its lists are scored for at most ``max_users`` validation users
    drawn with ``seed`` (default: the ``models_tune_users`` setting; 0 = all of them)."""
    from recomart.models.data import to_pairs
    from recomart.models.metrics import ranking_metrics
    from recomart.models.split import temporal_split

    if max_users is None:
        from recomart.config import get_settings

        max_users = get_settings().models_tune_users
    split = temporal_split(train_events, holdout=holdout, relevance=relevance)
    rel = split.test.loc[split.test["relevant"]]
    users = rel["user_id"].unique()
    n_users = len(users)
    if max_users and n_users > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
        rel = rel.loc[rel["user_id"].isin(users)]
    pairs = to_pairs(split.train)  # once for every lambda (``fit`` takes pairs as they are)
    results = {}
    for lam in lambdas:
        model = EASERecommender(lam=lam, max_items=max_items).fit(pairs)
        recs = model.recommend(users, n=20)
        results[float(lam)] = ranking_metrics(recs, rel, len(model.item_ids))["ndcg@10"]
        log.info("EASE lambda=%s validation NDCG@10=%.4f", lam, results[float(lam)])
    best = max(results, key=results.get)
    return {"lam": best, "validation_ndcg@10": results[best], "grid": results,
            "users": len(users), "of_users": n_users}


class BuyAgainRecommender(Recommender):
    """Personal top frequency (Li et al. 2023's strongest simple next-basket baseline): the user's
    own most often bought items, ties broken by the most recent purchase, the rest of the list
    filled with TopPop. Counts purchases when the data has any, else every interaction."""

    name = "buy_again"

    def fit(self, interactions: pd.DataFrame, products: pd.DataFrame | None = None,
            users: pd.DataFrame | None = None) -> BuyAgainRecommender:
        import scipy.sparse as sp

        from recomart.models.data import epoch_seconds, normalize_events

        super().fit(interactions, products, users)
        ev = normalize_events(interactions)
        bought = ev.loc[ev["event_type"].eq("purchase")]
        ev = bought if len(bought) else ev
        rows = self.im_.user_index(ev["user_id"].to_numpy())
        cols = self.im_.item_index(ev["product_id"].to_numpy())
        ok = (rows >= 0) & (cols >= 0)
        rows, cols = rows[ok], cols[ok]
        t = epoch_seconds(ev["timestamp"])[ok].astype(np.float64)
        span = max(float(t.max() - t.min()), 1.0) if len(t) else 1.0
        recency = (t - (t.min() if len(t) else 0.0)) / span * 0.5  # in [0, 0.5]: below one purchase
        shape = self.im_.matrix.shape
        self.counts_ = sp.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)), shape=shape)
        frame = pd.DataFrame({"r": rows, "c": cols, "t": recency}).groupby(["r", "c"])["t"].max()
        self.recency_ = sp.csr_matrix((frame.to_numpy(), (frame.index.get_level_values(0),
                                                          frame.index.get_level_values(1))),
                                      shape=shape)
        pop = self.popularity_
        self.fill_ = -1.0 + 0.5 * pop / max(float(pop.max()), 1.0)  # always below a bought item
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        own = (self.counts_[rows] + self.recency_[rows]).toarray()
        out = np.broadcast_to(self.fill_, own.shape).copy()
        mask = own > 0
        out[mask] = own[mask]
        return out

    def reasons(self, recs: pd.DataFrame) -> pd.Series:
        """``buy_again`` for the user's own items, ``popular`` for the TopPop fill."""
        return pd.Series(np.where(recs["score"].to_numpy() > 0, "buy_again", "popular"),
                         index=recs.index)
