"""XGBoost learning-to-rank re-ranker (``rank:ndcg``), one query group per user.

Early stopping watches NDCG@10 on a share of the training users held aside, so the number of
trees adapts to the data size; a small grid (``RANKER_GRID``: depth, learning rate, leaf size,
objective, graded or binary labels) is searched on the same held-aside users, and the variant with
the best binary-relevance NDCG@10 there (the protocol's metric) wins.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_RANKER_PARAMS: dict[str, Any] = {
    "objective": "rank:ndcg", "eval_metric": "ndcg@10", "n_estimators": 400,
    "learning_rate": 0.05, "max_depth": 6, "min_child_weight": 5.0, "subsample": 0.8,
    "colsample_bytree": 0.8, "reg_lambda": 1.0, "tree_method": "hist",
    "lambdarank_pair_method": "topk", "lambdarank_num_pair_per_sample": 10,
    "early_stopping_rounds": 40,
}

#: Variations on the defaults tried by ``Ranker.fit`` (modest on purpose: the ranker is cheap
#: next to the candidate sources, but its validation set is small).
#: ``"labels": "binary"`` trains on relevant-or-not instead of the graded labels.
RANKER_GRID: list[dict[str, Any]] = [
    {},
    {"labels": "binary"},
    {"max_depth": 4},
    {"learning_rate": 0.1, "min_child_weight": 20.0},
]


def validation_ndcg(users: np.ndarray, relevant: np.ndarray, score: np.ndarray, k: int = 10) -> float:
    """Mean binary NDCG@k over users with a relevant row (ideal over min(k, #relevant rows))."""
    from recomart.models.metrics import discounts

    df = pd.DataFrame({"u": users, "rel": relevant.astype(float), "s": score})
    df = df.sort_values(["u", "s"], ascending=[True, False], kind="stable")
    pos = df.groupby("u").cumcount().to_numpy()
    top = pos < k
    gain = np.zeros(len(df))
    gain[top] = df["rel"].to_numpy()[top] * discounts(k)[pos[top]]
    dcg = pd.Series(gain).groupby(df["u"].to_numpy()).sum()
    n_rel = df.groupby("u")["rel"].sum()
    ideal = np.concatenate([[0.0], np.cumsum(discounts(k))])[np.minimum(n_rel.to_numpy(), k).astype(int)]
    ok = n_rel.to_numpy() > 0
    return float((dcg.reindex(n_rel.index).to_numpy()[ok] / ideal[ok]).mean()) if ok.any() else 0.0


def _plain_eval_ranker():
    """``XGBRanker`` whose evaluation sets are plain ``DMatrix`` objects.

    XGBoost's scikit-learn wrapper builds them as ``QuantileDMatrix`` (binned like the training
    data), and scoring the new tree on those each round cost ~50 ms on 138k rows, as much as the
    round's own boosting; on a plain matrix it costs ~8 ms. The trees only split at the training
    data's bin edges, so both give the same scores, hence the same early stopping."""
    from xgboost import DMatrix, XGBRanker

    class PlainEvalRanker(XGBRanker):
        def _create_ltr_dmatrix(self, ref, data, qid, **kwargs):
            if ref is None:  # the training matrix
                return super()._create_ltr_dmatrix(ref, data, qid, **kwargs)
            return DMatrix(data=data, qid=qid, **kwargs, nthread=self.n_jobs)

    return PlainEvalRanker


class Ranker:
    """Wrapper over ``xgboost.XGBRanker``: query groups, user-fold model selection, fallback.

    Each grid variant is scored by binary NDCG@10 on held-aside users (3 user folds when there
    are fewer than ``cv_below`` users, else one 20% split), early stopping on the same users.
    ``fallback`` columns (e.g. the EASE score) compete as plain orderings: when one of them ranks
    the held-aside users better than every trained variant, ``predict`` returns it, so a ranker
    trained on too little data cannot make the hybrid worse than its best source. The winning
    variant is refitted on all users with the mean early-stopped number of trees. With
    ``search_users`` (> 0) the search runs on that many users drawn with the seed, the refit on
    every user.
    """

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 42, n_jobs: int = 2,
                 valid_users: float = 0.2, grid: list[dict[str, Any]] | None = None,
                 fallback: tuple[str, ...] = ("ease_score",), cv_below: int = 2000,
                 search_users: int = 0, plain_eval: bool = True) -> None:
        self.params = {**DEFAULT_RANKER_PARAMS, **(params or {})}
        self.grid = RANKER_GRID if grid is None else grid
        self.seed = seed
        self.n_jobs = n_jobs
        self.valid_users = valid_users
        self.fallback = fallback
        self.cv_below = cv_below
        self.search_users = search_users
        self.plain_eval = plain_eval

    def _folds(self, q: np.ndarray) -> list[np.ndarray]:
        uniq = np.unique(q)
        rng = np.random.default_rng(self.seed)
        shuffled = rng.permutation(uniq)
        if len(uniq) < self.cv_below and len(uniq) >= 6:
            return [np.isin(q, part) for part in np.array_split(shuffled, 3)]
        n_valid = max(1, int(len(uniq) * self.valid_users))
        return [np.isin(q, shuffled[:n_valid])]

    def fit(self, features: pd.DataFrame, labels: np.ndarray, users: np.ndarray) -> Ranker:
        from xgboost import XGBRanker

        order = np.argsort(users, kind="stable")
        if np.array_equal(order, np.arange(len(order))):  # grouped already (the hybrid's rows)
            plain = features.index.equals(pd.RangeIndex(len(features)))
            x = features if plain else features.reset_index(drop=True)  # read only below
            y, q = np.asarray(labels), np.asarray(users)
        else:
            x, y, q = (features.iloc[order].reset_index(drop=True), np.asarray(labels)[order],
                       users[order])
        relevant = y >= y.max()
        # The search (variants, early stopping, fallbacks) runs on at most ``search_users`` users
        # drawn with the seed; the winner is then fitted once on every user's rows.
        uniq = np.unique(q)
        self.search_sample_ = {"users": len(uniq), "of_users": len(uniq)}
        xs, ys, qs, rs = x, y, q, relevant
        if self.search_users and len(uniq) > self.search_users:
            keep = np.isin(q, np.random.default_rng(self.seed).choice(uniq, self.search_users,
                                                                      replace=False))
            xs, ys, qs, rs = x.loc[keep].reset_index(drop=True), y[keep], q[keep], relevant[keep]
            self.search_sample_["users"] = self.search_users
        folds = self._folds(qs)
        # Threads only pay off on big inputs (small ones just spin-wait on a busy machine).
        n_jobs = self.n_jobs if len(x) >= 50_000 else 1
        self.search_: list[dict[str, Any]] = []
        search_ranker = _plain_eval_ranker() if self.plain_eval else XGBRanker
        for variant in self.grid or [{}]:
            params = {**self.params, **variant}
            binary = params.pop("labels", "graded") == "binary"
            yy = rs.astype(np.float32) if binary else ys
            scores, iters = [], []
            for valid in folds:
                model = search_ranker(random_state=self.seed, n_jobs=n_jobs, **params)
                model.fit(xs[~valid], yy[~valid], qid=qs[~valid],
                          eval_set=[(xs[valid], yy[valid])], eval_qid=[qs[valid]], verbose=False)
                scores.append(validation_ndcg(qs[valid], rs[valid], model.predict(xs[valid])))
                iters.append(int(model.best_iteration) + 1)
            self.search_.append({"variant": variant, "validation_ndcg@10": float(np.mean(scores)),
                                 "n_estimators": max(1, round(float(np.mean(iters))))})
        for col in self.fallback:
            if col in xs:
                score = np.mean([validation_ndcg(qs[v], rs[v], xs.loc[v, col].to_numpy())
                                 for v in folds])
                self.search_.append({"variant": {"fallback": col},
                                     "validation_ndcg@10": float(score)})
        best = max(self.search_, key=lambda r: r["validation_ndcg@10"])
        self.feature_names_ = list(features.columns)
        self.fallback_ = best["variant"].get("fallback")
        self.model_ = None
        if self.fallback_ is None:
            params = {**self.params, **best["variant"], "n_estimators": best["n_estimators"]}
            params.pop("early_stopping_rounds", None)
            yy = relevant.astype(np.float32) if params.pop("labels", "graded") == "binary" else y
            self.model_ = XGBRanker(random_state=self.seed, n_jobs=n_jobs, **params)
            self.model_.fit(x, yy, qid=q, verbose=False)
        self.best_ = best
        log.info("ranker: %d rows, %d users, chose %s", len(x), len(np.unique(q)), best)
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        if self.model_ is None:
            return features[self.fallback_].to_numpy(dtype=np.float64)
        return self.model_.predict(features[self.feature_names_])

    def importances(self) -> dict[str, float]:
        if self.model_ is None:
            return {}
        gain = self.model_.get_booster().get_score(importance_type="gain")
        return dict(sorted(gain.items(), key=lambda kv: -kv[1]))
