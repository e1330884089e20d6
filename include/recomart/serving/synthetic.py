"""A synthetic publication (deterministic lists for N users and M products) for benchmarks and
tests of the serving layer: written through ``publishing`` exactly like a trained model's, so
the API loads it by the same path. Not a model: scores are arbitrary but deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recomart.lake import Lake
from recomart.publishing import point_latest, publish_model_outputs


class SyntheticModel:
    """User u gets products ``(u * 7 + k * step) % products`` for k < n (step coprime to M);
    product p's neighbours are ``p + 1 .. p + n`` (mod M); its audience users ``p, p+1, ...``.
    ``offset`` shifts every list, so two versions answer differently."""

    def __init__(self, n_products: int, n_users: int, offset: int = 0, first_product: int = 1,
                 first_user: int = 1) -> None:
        self.m, self.u, self.offset = n_products, n_users, offset
        self.p0, self.u0 = first_product, first_user

    def _pid(self, idx: np.ndarray) -> np.ndarray:
        return self.p0 + (idx % self.m)

    def recommend(self, user_ids: Sequence[int], n: int) -> pd.DataFrame:
        users = np.asarray(user_ids, dtype=np.int64)
        k = np.arange(n, dtype=np.int64)
        idx = (users[:, None] * 7 + self.offset + k[None, :] * 13)
        return pd.DataFrame({"user_id": np.repeat(users, n),
                             "product_id": self._pid(idx).ravel(),
                             "score": np.tile(1.0 - k / n, len(users)),
                             "rank": np.tile(k + 1, len(users))})

    def similar_items(self, product_ids: Sequence[int], n: int) -> pd.DataFrame:
        pids = np.asarray(product_ids, dtype=np.int64)
        k = np.arange(1, n + 1, dtype=np.int64)
        idx = (pids[:, None] - self.p0 + self.offset + k[None, :])
        return pd.DataFrame({"product_id": np.repeat(pids, n),
                             "similar_product_id": self._pid(idx).ravel(),
                             "score": np.tile(1.0 - (k - 1) / n, len(pids)),
                             "rank": np.tile(k, len(pids))})

    def audience(self, product_ids: Sequence[int], n: int) -> pd.DataFrame:
        pids = np.asarray(product_ids, dtype=np.int64)
        k = np.arange(n, dtype=np.int64)
        users = self.u0 + (pids[:, None] + self.offset + k[None, :]) % self.u
        return pd.DataFrame({"product_id": np.repeat(pids, n), "user_id": users.ravel(),
                             "score": np.tile(1.0 - k / n, len(pids)),
                             "rank": np.tile(k + 1, len(pids))})


def publish_synthetic(lake: Lake, *, users: int, products: int, n: int = 20, version: int = 1,
                      name: str = "synthetic", offset: int = 0, point: bool = True) -> dict:
    """Publish ``name`` v``version`` for users 1..users and products 1..products; optionally make
    it the one ``serving/latest.json`` names. Returns the manifest."""
    model = SyntheticModel(products, users, offset)
    manifest = publish_model_outputs(lake, model, name, version, user_ids=range(1, users + 1),
                                     product_ids=range(1, products + 1), n=n,
                                     batch_size=max(5000, users))
    if point:
        point_latest(lake, name, version)
    return manifest
