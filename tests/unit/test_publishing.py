"""Publishing writes the three serving outputs with the right shapes and points latest.json."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recomart import publishing

N_USERS, N_PRODUCTS, TOP = 8, 15, 4


class CooccurrenceStandIn:
    """A real, tiny recommender: popularity for users, co-occurrence for items and audiences."""

    def __init__(self, interactions: pd.DataFrame) -> None:
        m = pd.crosstab(interactions["user_id"], interactions["product_id"]).clip(upper=1)
        self.users, self.items = m.index.to_numpy(), m.columns.to_numpy()
        self.m = m.to_numpy(dtype=float)
        self.pop = self.m.sum(axis=0)

    @staticmethod
    def _top(keys, scores: np.ndarray, ids: np.ndarray, n: int, key: str, other: str) -> pd.DataFrame:
        rows = []
        for k, s in zip(keys, scores, strict=True):
            order = np.argsort(-s, kind="stable")[:n]
            rows += [(int(k), int(ids[j]), float(s[j]), r) for r, j in enumerate(order, 1)
                     if np.isfinite(s[j])]
        return pd.DataFrame(rows, columns=[key, other, "score", "rank"])

    def recommend(self, user_ids, n):
        scores = []
        for u in user_ids:
            s = self.pop.copy()
            if u in self.users:
                s[self.m[list(self.users).index(u)] > 0] = -np.inf
            scores.append(s)
        return self._top(user_ids, scores, self.items, n, "user_id", "product_id")

    def similar_items(self, product_ids, n):
        co = self.m.T @ self.m
        scores = []
        for p in product_ids:
            j = list(self.items).index(p)
            s = co[j].copy()
            s[j] = -np.inf
            scores.append(s)
        return self._top(product_ids, scores, self.items, n, "product_id", "similar_product_id")

    def audience(self, product_ids, n):
        scores = [self.m[:, list(self.items).index(p)] + self.m.sum(axis=1) / 100 for p in product_ids]
        return self._top(product_ids, scores, self.users, n, "product_id", "user_id")


@pytest.fixture
def model() -> CooccurrenceStandIn:
    rng = np.random.default_rng(7)
    pairs = {(int(u), int(p)) for u, p in zip(rng.integers(1, N_USERS, 60),
                                              rng.integers(1, N_PRODUCTS - 4, 60), strict=True)}
    pairs |= {(1, p) for p in range(1, 9)} | {(2, p) for p in range(8, N_PRODUCTS + 1)}
    return CooccurrenceStandIn(pd.DataFrame(sorted(pairs), columns=["user_id", "product_id"]))


def test_publish_writes_three_outputs_with_right_shapes(lake, model):
    users = list(range(1, N_USERS + 2))  # user N_USERS and N_USERS+1 never interacted: cold start
    products = list(range(1, N_PRODUCTS + 1))
    manifest = publishing.publish_model_outputs(lake, model, "m", 3, user_ids=users,
                                                product_ids=products, n=TOP, ds="2024-05-01")
    out = publishing.serving_dir(lake, "m", 3)
    assert out == lake.root / "serving" / "m" / "v3"
    recs = pd.read_parquet(out / "user_recs.parquet")
    sims = pd.read_parquet(out / "similar_items.parquet")
    aud = pd.read_parquet(out / "audience.parquet")

    assert list(recs.columns[:4]) == ["user_id", "product_id", "score", "rank"]
    assert set(recs["user_id"]) == set(users)  # cold-start users are served too
    per_user = recs.groupby("user_id").size()
    assert per_user.loc[N_USERS + 1] == TOP and per_user.max() <= TOP
    assert not recs.duplicated(["user_id", "product_id"]).any()
    assert recs.groupby("user_id")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()

    assert list(sims.columns[:4]) == ["product_id", "similar_product_id", "score", "rank"]
    assert set(sims["product_id"]) == set(products)
    assert (sims.groupby("product_id").size() == TOP).all()
    assert not (sims["product_id"] == sims["similar_product_id"]).any()

    assert list(aud.columns[:4]) == ["product_id", "user_id", "score", "rank"]
    assert (aud.groupby("product_id").size() == TOP).all()

    assert manifest["outputs"]["user_recs"]["rows"] == len(recs)
    assert manifest["outputs"]["similar_items"]["distinct_product_ids"] == N_PRODUCTS
    assert publishing.is_published(lake, "m", 3)


def test_republish_is_idempotent_and_latest_points_at_version(lake, model):
    kwargs = {"user_ids": [1, 2, 3], "product_ids": [1, 2, 3], "n": TOP}
    publishing.publish_model_outputs(lake, model, "m", 1, **kwargs)
    first = pd.read_parquet(publishing.serving_dir(lake, "m", 1) / "user_recs.parquet")
    publishing.publish_model_outputs(lake, model, "m", 1, **kwargs)
    again = pd.read_parquet(publishing.serving_dir(lake, "m", 1) / "user_recs.parquet")
    pd.testing.assert_frame_equal(first, again)

    assert publishing.read_latest(lake) is None
    with pytest.raises(FileNotFoundError):
        publishing.point_latest(lake, "m", 2)
    latest = publishing.point_latest(lake, "m", 1, champion_metric=0.3)
    assert latest["path"] == "serving/m/v1" and latest["champion_metric"] == 0.3
    assert publishing.read_latest(lake)["version"] == 1
    one = publishing.read_output(lake, "user_recs", 2)
    pd.testing.assert_frame_equal(one.reset_index(drop=True),
                                  first[first["user_id"] == 2].reset_index(drop=True),
                                  check_dtype=False)


def test_output_missing_columns_is_rejected(lake, model):
    class Broken(CooccurrenceStandIn):
        def audience(self, product_ids, n):
            return super().audience(product_ids, n).rename(columns={"user_id": "customer"})

    broken = Broken.__new__(Broken)
    broken.__dict__.update(model.__dict__)
    with pytest.raises(ValueError, match="audience"):
        publishing.publish_model_outputs(lake, broken, "m", 1, user_ids=[1], product_ids=[1], n=2)
    assert not publishing.is_published(lake, "m", 1)
