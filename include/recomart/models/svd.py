"""Biased matrix factorisation (Surprise ``SVD(biased=True)``): rating prediction and top-N.

Surprise trains the model; the learned biases and factors are then copied into arrays aligned
with the training catalog so scoring every item for a batch of users is one matrix product, and
the pickled model does not depend on Surprise internals. Hyper-parameters are tuned with Surprise's
``GridSearchCV`` on one random validation split of the ratings (``ShuffleSplit``); RMSE/MAE are
reported from Surprise ``cross_validate`` with ``KFold``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from recomart.models.base import Recommender
from recomart.models.data import model_ratings, to_pairs
from recomart.models.memo import FitMemo, digest

log = logging.getLogger(__name__)

#: Surprise defaults are n_factors=100, n_epochs=20, lr_all=0.005, reg_all=0.02.
DEFAULT_SVD_PARAMS: dict[str, Any] = {"n_factors": 150, "n_epochs": 40, "lr_all": 0.01,
                                      "reg_all": 0.1}
#: Small but effective grid (6 fits on one validation split); see README "Models".
SVD_GRID: dict[str, list] = {"n_factors": [50, 150], "n_epochs": [40], "lr_all": [0.01],
                             "reg_all": [0.05, 0.1, 0.15]}


def surprise_dataset(pairs: pd.DataFrame):
    from surprise import Dataset, Reader

    df = pd.DataFrame({"user": pairs["user_id"].to_numpy(), "item": pairs["product_id"].to_numpy(),
                       "rating": model_ratings(pairs).to_numpy()})
    lo, hi = float(df["rating"].min()), float(df["rating"].max())
    return Dataset.load_from_df(df, Reader(rating_scale=(min(lo, 0.5), max(hi, 5.0))))


#: Fitted factors by a digest of (ratings, parameters, seed): see ``recomart.models.memo``.
SVD_FITS = FitMemo("svd", maxsize=2)


class SVDRecommender(Recommender):
    """Surprise BiasedSVD; ``score`` = predicted rating, so top-N ranks by predicted rating."""

    name = "svd"

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 42) -> None:
        self.params = {**DEFAULT_SVD_PARAMS, **(params or {})}
        self.seed = seed

    def _fit(self, pairs, products, users) -> None:
        # Surprise's SGD is deterministic for a seed: the same ratings and parameters (e.g. the
        # SVD baseline and the hybrid's final SVD source on one training part) are fitted once
        ratings = model_ratings(pairs).to_numpy(dtype=np.float64)
        key = digest(pairs["user_id"].to_numpy(), pairs["product_id"].to_numpy(), ratings,
                     extra=(sorted(self.params.items()), self.seed))
        fitted = SVD_FITS.get_or_fit(key, lambda: self._surprise_fit(pairs))
        self.mu_, self.bu_, self.pu_, self.bi_, self.qi_, self.rating_scale_ = fitted

    def _surprise_fit(self, pairs: pd.DataFrame) -> tuple:
        from recomart.models.surprise_svd import CompiledSVD, svd_class

        SVD = svd_class()
        if SVD is CompiledSVD:
            return self._compiled_fit(pairs)
        data = surprise_dataset(pairs)
        trainset = data.build_full_trainset()
        algo = SVD(biased=True, random_state=self.seed, **self.params)
        algo.fit(trainset)
        u_inner = np.array([trainset.to_inner_uid(u) for u in self.im_.user_ids])
        i_inner = np.array([trainset.to_inner_iid(i) for i in self.item_ids])
        return (float(trainset.global_mean), np.asarray(algo.bu)[u_inner].astype(np.float32),
                np.asarray(algo.pu)[u_inner].astype(np.float32),
                np.asarray(algo.bi)[i_inner].astype(np.float32),
                np.asarray(algo.qi)[i_inner].astype(np.float32), data.reader.rating_scale)

    def _compiled_fit(self, pairs: pd.DataFrame) -> tuple:
        """The same fit as Surprise's on ``surprise_dataset(pairs)``, from the arrays directly."""
        from recomart.models.surprise_svd import fit_arrays

        ratings = model_ratings(pairs).to_numpy(dtype=np.float64)
        fit = fit_arrays(pairs["user_id"].to_numpy(), pairs["product_id"].to_numpy(), ratings,
                         seed=self.seed, biased=True, **self.params)
        u_inner = pd.Index(fit["users"]).get_indexer(self.im_.user_ids)
        i_inner = pd.Index(fit["items"]).get_indexer(self.item_ids)
        scale = (min(float(ratings.min()), 0.5), max(float(ratings.max()), 5.0))
        return (float(fit["global_mean"]), fit["bu"][u_inner].astype(np.float32),
                fit["pu"][u_inner].astype(np.float32), fit["bi"][i_inner].astype(np.float32),
                fit["qi"][i_inner].astype(np.float32), scale)

    def score(self, rows: np.ndarray) -> np.ndarray:
        return self.mu_ + self.bu_[rows, None] + self.bi_[None, :] + self.pu_[rows] @ self.qi_.T

    def predict(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Predicted ratings for pairs (biases only when the user or item is unknown), clipped."""
        u = self.im_.user_index(np.asarray(user_ids))
        i = self.im_.item_index(np.asarray(item_ids))
        ku, ki = u >= 0, i >= 0
        est = np.full(len(u), self.mu_, dtype=np.float64)
        est[ku] += self.bu_[u[ku]]
        est[ki] += self.bi_[i[ki]]
        both = ku & ki
        est[both] += np.einsum("ij,ij->i", self.pu_[u[both]], self.qi_[i[both]])
        return np.clip(est, *self.rating_scale_)


def tune_users(pairs: pd.DataFrame, max_users: int | None, seed: int) -> pd.DataFrame:
    """The pairs of at most ``max_users`` users drawn with ``seed`` (all of them when fewer or
    ``max_users`` is 0): a grid search's ranking of parameters needs far fewer ratings than the
    final fit, and SGD cost is linear in the ratings."""
    users = np.unique(pairs["user_id"].to_numpy())
    if not max_users or len(users) <= max_users:
        return pairs
    keep = np.random.default_rng(seed).choice(users, max_users, replace=False)
    return pairs.loc[pairs["user_id"].isin(keep)].reset_index(drop=True)


def tune_svd(interactions: pd.DataFrame, grid: dict[str, list] | None = None, seed: int = 42,
             validation: float = 0.2, n_jobs: int | None = None,
             max_users: int | None = None) -> dict[str, Any]:
    """Grid-search SVD hyper-parameters by RMSE on one random validation split of the ratings of
    at most ``max_users`` users drawn with the seed (default: the ``models_tune_users``
    setting; the chosen parameters are then fitted on all data by the caller).

    The grid points are independent seeded fits, so they run in ``n_jobs`` processes (default:
    one per core, at most 4 or the grid size); the result does not depend on it."""
    from surprise.model_selection import GridSearchCV, ShuffleSplit

    from recomart.models.base import worker_threads
    from recomart.models.surprise_svd import svd_class

    if max_users is None:
        from recomart.config import get_settings

        max_users = get_settings().models_tune_users
    pairs = to_pairs(interactions)
    sample = tune_users(pairs, max_users, seed)
    grid = {**(grid or SVD_GRID), "random_state": [seed]}
    points = int(np.prod([len(v) for v in grid.values()]))
    # each process holds a copy of the ratings; the compiled SGD is fast enough that process
    # start-up outweighs the parallelism on a sample
    n_jobs = n_jobs or min(worker_threads(), points, 4)
    search = GridSearchCV(svd_class(), grid, measures=["rmse", "mae"], n_jobs=n_jobs,
                          cv=ShuffleSplit(n_splits=1, test_size=validation, random_state=seed))
    search.fit(surprise_dataset(sample))
    best = {k: v for k, v in search.best_params["rmse"].items() if k != "random_state"}
    log.info("SVD tuned on %d of %d ratings: %s validation RMSE %.4f", len(sample), len(pairs),
             best, search.best_score["rmse"])
    table = [{**{k: v for k, v in p.items() if k != "random_state"}, "rmse": float(r)}
             for p, r in zip(search.cv_results["params"], search.cv_results["mean_test_rmse"],
                             strict=True)]
    return {"params": best, "validation_rmse": float(search.best_score["rmse"]), "grid": table,
            "sample": {"users": int(sample["user_id"].nunique()), "ratings": len(sample),
                       "of_users": int(pairs["user_id"].nunique()), "of_ratings": len(pairs),
                       "max_users": max_users}}


def rating_cv(interactions: pd.DataFrame, params: dict[str, Any] | None = None, folds: int = 5,
              seed: int = 42) -> dict[str, float]:
    """RMSE/MAE of BiasedSVD from Surprise ``cross_validate`` with ``KFold(folds)``."""
    from surprise.model_selection import KFold, cross_validate

    from recomart.models.surprise_svd import svd_class

    SVD = svd_class()
    params = {**DEFAULT_SVD_PARAMS, **(params or {})}
    res = cross_validate(SVD(biased=True, random_state=seed, **params),
                         surprise_dataset(to_pairs(interactions)), measures=["rmse", "mae"],
                         cv=KFold(n_splits=folds, random_state=seed, shuffle=True))
    return {"rmse": float(np.mean(res["test_rmse"])), "mae": float(np.mean(res["test_mae"])),
            "folds": folds}


def nested_rating_cv(interactions: pd.DataFrame, folds: int = 5, seed: int = 42,
                     grid: dict[str, list] | None = None) -> dict[str, Any]:
    """RMSE/MAE of BiasedSVD by **nested** k-fold CV: the grid search runs inside each outer fold
    (on that fold's training part only), so the figure is not optimistic; Surprise's default SVD
    is scored on the same outer folds."""
    from surprise import accuracy
    from surprise.model_selection import GridSearchCV, KFold, ShuffleSplit

    from recomart.models.surprise_svd import svd_class

    SVD = svd_class()
    data = surprise_dataset(to_pairs(interactions))
    grid = {**(grid or SVD_GRID), "random_state": [seed]}
    rows: list[dict[str, Any]] = []
    for k, (trainset, testset) in enumerate(KFold(n_splits=folds, random_state=seed,
                                                  shuffle=True).split(data)):
        # the inner search sees only this outer fold's training ratings
        raw = [(trainset.to_raw_uid(u), trainset.to_raw_iid(i), r) for u, i, r in trainset.all_ratings()]
        inner = surprise_dataset(pd.DataFrame({"user_id": [r[0] for r in raw],
                                               "product_id": [r[1] for r in raw],
                                               "rating": [r[2] for r in raw],
                                               "strength": 2.0}))
        search = GridSearchCV(SVD, grid, measures=["rmse"], n_jobs=1,
                              cv=ShuffleSplit(n_splits=1, test_size=0.2, random_state=seed))
        search.fit(inner)
        best = {p: v for p, v in search.best_params["rmse"].items() if p != "random_state"}
        tuned = SVD(biased=True, random_state=seed, **best).fit(trainset).test(testset)
        default = SVD(biased=True, random_state=seed).fit(trainset).test(testset)
        rows.append({"fold": k, "params": best,
                     "rmse": accuracy.rmse(tuned, verbose=False), "mae": accuracy.mae(tuned, verbose=False),
                     "rmse_surprise_default": accuracy.rmse(default, verbose=False),
                     "mae_surprise_default": accuracy.mae(default, verbose=False)})
    mean = {m: float(np.mean([r[m] for r in rows]))
            for m in ("rmse", "mae", "rmse_surprise_default", "mae_surprise_default")}
    return {**mean, "folds": folds, "per_fold": rows, "method": "nested k-fold (grid inside each fold)"}
