"""Surprise's ``SVD`` with a faster SGD: the same updates, in the same order, on the same arrays.

Surprise's SGD (``SVD.sgd``, Cython) loops ``for u, i, r in trainset.all_ratings()`` once per
epoch, and ``all_ratings`` is a Python generator over the trainset's dict of lists: a Python
object per rating per epoch (py-spy on the 100k-user shop: the SVD grid search and fits were most
of the training run's CPU). Two replacements, both checked against ``surprise.SVD`` in
``tests/unit/test_fast_paths.py``:

- ``ListedRatingsSVD`` materialises the ratings once per fit (2.4x per fit);
- ``CompiledSVD`` (the default, ``RECOMART_MODELS_SVD_ENGINE=compiled``) runs Surprise's update
  loop, transcribed line for line, as a Numba-compiled function over flat rating arrays: the
  initial factors come from the same seeded generator, the ratings are walked in
  ``all_ratings()`` order and every update is the same double-precision expression (no fast-math,
  so no reordering), hence the same factors.

Import this module inside functions only: it imports Surprise (and Numba on first use).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from surprise import SVD
from surprise.utils import get_rng


class ListedRatingsSVD(SVD):
    """``surprise.SVD`` fitted over a materialised list of the trainset's ratings."""

    def fit(self, trainset):
        ratings = list(trainset.all_ratings())
        trainset.all_ratings = lambda: ratings  # shadows the generator method for this fit only
        try:
            return super().fit(trainset)
        finally:
            del trainset.all_ratings


_KERNEL = None


def _kernel():
    """The compiled SGD loop (compiled once per process; cached on disk by Numba)."""
    global _KERNEL
    if _KERNEL is None:
        from numba import njit

        @njit(cache=True, nogil=True)
        def sgd_epochs(users, items, ratings, bu, bi, pu, qi, n_epochs, global_mean, biased,
                       lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi):  # pragma: no cover
            n_factors = pu.shape[1]
            for _ in range(n_epochs):
                for k in range(users.shape[0]):
                    u = users[k]
                    i = items[k]
                    r = ratings[k]
                    dot = 0.0
                    for f in range(n_factors):
                        dot += qi[i, f] * pu[u, f]
                    err = r - (global_mean + bu[u] + bi[i] + dot)
                    if biased:
                        bu[u] += lr_bu * (err - reg_bu * bu[u])
                        bi[i] += lr_bi * (err - reg_bi * bi[i])
                    for f in range(n_factors):
                        puf = pu[u, f]
                        qif = qi[i, f]
                        pu[u, f] += lr_pu * (err * qif - reg_pu * puf)
                        qi[i, f] += lr_qi * (err * puf - reg_qi * qif)

        _KERNEL = sgd_epochs
    return _KERNEL


def rating_arrays(trainset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trainset's (inner user, inner item, rating) triples in ``all_ratings()`` order."""
    lengths = [len(v) for v in trainset.ur.values()]
    users = np.repeat(np.fromiter(trainset.ur.keys(), dtype=np.int64, count=len(lengths)),
                      lengths)
    flat = [pair for v in trainset.ur.values() for pair in v]
    items = np.fromiter((p[0] for p in flat), dtype=np.int64, count=len(flat))
    ratings = np.fromiter((p[1] for p in flat), dtype=np.float64, count=len(flat))
    return users, items, ratings


class CompiledSVD(SVD):
    """``surprise.SVD`` whose ``sgd`` is the compiled transcription of Surprise's loop."""

    def sgd(self, trainset):
        rng = get_rng(self.random_state)
        bu = np.zeros(trainset.n_users, dtype=np.double)
        bi = np.zeros(trainset.n_items, dtype=np.double)
        pu = rng.normal(self.init_mean, self.init_std_dev, size=(trainset.n_users, self.n_factors))
        qi = rng.normal(self.init_mean, self.init_std_dev, size=(trainset.n_items, self.n_factors))
        users, items, ratings = rating_arrays(trainset)
        global_mean = float(self.trainset.global_mean) if self.biased else 0.0
        _kernel()(users, items, ratings, bu, bi, pu, qi, int(self.n_epochs), global_mean,
                  bool(self.biased), float(self.lr_bu), float(self.lr_bi), float(self.lr_pu),
                  float(self.lr_qi), float(self.reg_bu), float(self.reg_bi), float(self.reg_pu),
                  float(self.reg_qi))
        self.bu, self.bi, self.pu, self.qi = bu, bi, pu, qi


def fit_arrays(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, *, seed: int,
               **params) -> dict[str, np.ndarray | float]:
    """``CompiledSVD`` fitted on rating arrays directly, without building Surprise's dataset and
    trainset (a Python tuple and dict entries per rating): inner ids are given in order of first
    appearance and the ratings walked grouped by user in their given order, exactly as
    ``Dataset.load_from_df(...).build_full_trainset()`` and ``all_ratings()`` do, so the result
    equals ``CompiledSVD(**params).fit(trainset)`` (and ``surprise.SVD``'s) on the same rows.
    Returns ``{"users", "items" (raw ids by inner id), "global_mean", "bu", "bi", "pu", "qi"}``."""
    algo = CompiledSVD(random_state=seed, **params)  # Surprise's own parameter defaults
    u_codes, u_raw = pd.factorize(np.asarray(users), sort=False)
    i_codes, i_raw = pd.factorize(np.asarray(items), sort=False)
    order = np.argsort(u_codes, kind="stable")
    u = u_codes[order].astype(np.int64)
    i = i_codes[order].astype(np.int64)
    r = np.asarray(ratings, dtype=np.float64)[order]
    rng = get_rng(algo.random_state)
    bu = np.zeros(len(u_raw), dtype=np.double)
    bi = np.zeros(len(i_raw), dtype=np.double)
    pu = rng.normal(algo.init_mean, algo.init_std_dev, size=(len(u_raw), algo.n_factors))
    qi = rng.normal(algo.init_mean, algo.init_std_dev, size=(len(i_raw), algo.n_factors))
    global_mean = float(np.mean(r))
    _kernel()(u, i, r, bu, bi, pu, qi, int(algo.n_epochs), global_mean if algo.biased else 0.0,
              bool(algo.biased), float(algo.lr_bu), float(algo.lr_bi), float(algo.lr_pu),
              float(algo.lr_qi), float(algo.reg_bu), float(algo.reg_bi), float(algo.reg_pu),
              float(algo.reg_qi))
    return {"users": np.asarray(u_raw), "items": np.asarray(i_raw), "global_mean": global_mean,
            "bu": bu, "bi": bi, "pu": pu, "qi": qi}


ENGINES = {"compiled": CompiledSVD, "listed": ListedRatingsSVD, "surprise": SVD}


def svd_class(engine: str | None = None) -> type[SVD]:
    """The SVD class for ``engine`` (default: the ``models_svd_engine`` setting)."""
    if engine is None:
        from recomart.config import get_settings

        engine = get_settings().models_svd_engine
    try:
        return ENGINES[engine]
    except KeyError:
        from recomart.errors import PermanentError

        raise PermanentError(f"unknown SVD engine {engine!r}; choose from {', '.join(ENGINES)}") from None
