"""Models and the split protocol on small synthetic data with planted structure."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from recomart.models.baselines import (
    EASERecommender,
    RandomRecommender,
    TopPopRecommender,
    ease_weights,
)
from recomart.models.data import InteractionMatrix, to_pairs
from recomart.models.evaluate import evaluate_models
from recomart.models.hybrid import HybridRecommender
from recomart.models.split import temporal_split
from recomart.models.svd import SVDRecommender, rating_cv, tune_svd

FAST_SVD = {"n_factors": 8, "n_epochs": 60, "lr_all": 0.02, "reg_all": 0.02}
FAST_HYBRID = {"svd": FAST_SVD, "ease_lam": 20.0, "ranker": {"n_estimators": 60},
               "ranker_grid": [{}],
               "candidates": {"ease": 15, "svd": 5, "cooc": 10, "content": 5, "pop": 5},
               "min_segment_users": 5}
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def planted(n_users: int = 90, n_items: int = 48, seed: int = 0):
    """Two taste groups: users in region north like items 0..23 (Action), south 24..47 (Romance).

    Within a group, popularity is skewed; each user also touches two items of the other group,
    rated low. Returns (events, products, users).
    """
    rng = np.random.default_rng(seed)
    half = n_items // 2
    weights = 1.0 / np.arange(1, half + 1) ** 0.7
    weights /= weights.sum()
    rows = []
    for u in range(n_users):
        group = u % 2
        own = rng.choice(half, size=14, replace=False, p=weights) + group * half
        other = rng.choice(half, size=2, replace=False) + (1 - group) * half
        days = np.sort(rng.uniform(0, 100, size=16))
        items = np.concatenate([own, other])[rng.permutation(16)]
        for item, day in zip(items, days, strict=True):
            rating = 5.0 if (item >= half) == bool(group) else 2.0
            rows.append((u, int(item), T0 + pd.Timedelta(days=float(day)), rating))
    events = pd.DataFrame(rows, columns=["user_id", "product_id", "timestamp", "rating"])
    products = pd.DataFrame({
        "product_id": np.arange(n_items + 1),
        "title": [f"space laser robot {i}" if i < half or i == n_items else f"love letter paris {i}"
                  for i in range(n_items + 1)],
        "category": ["Action" if i < half or i == n_items else "Romance"
                     for i in range(n_items + 1)],
        "subcategory": ["Action|Sci-Fi" if i < half or i == n_items else "Romance|Drama"
                        for i in range(n_items + 1)],
        "description": None,
    })  # item n_items is a new Action item nobody has touched
    users = pd.DataFrame({"user_id": np.arange(n_users),
                          "region": ["north" if u % 2 == 0 else "south" for u in range(n_users)],
                          "gender": "U", "age": pd.array([pd.NA] * n_users, dtype="Int64")})
    return events, products, users


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def hybrid(data):
    events, products, users = data
    return HybridRecommender(FAST_HYBRID).fit(events, products, users)


def test_split_has_no_future_leakage_and_holds_out_20_percent(data):
    events = data[0]
    single = pd.DataFrame({"user_id": [999], "product_id": [1], "timestamp": [T0], "rating": [5.0]})
    split = temporal_split(pd.concat([events, single]))
    last_train = split.train.groupby("user_id")["timestamp"].max()
    first_test = split.test.groupby("user_id")["timestamp"].min()
    assert (first_test >= last_train.reindex(first_test.index)).all()
    assert (split.test.groupby("user_id").size() == 3).all()  # floor(0.2 * 16)
    assert 999 in set(split.train["user_id"]) and 999 not in set(split.test["user_id"])
    train_keys = set(zip(split.train["user_id"], split.train["product_id"], strict=True))
    assert not train_keys & set(zip(split.test["user_id"], split.test["product_id"], strict=True))
    assert split.test["relevant"].equals(split.test["rating"].ge(4))


def test_split_on_shop_events_uses_purchases_and_drops_later_events_of_train_items():
    ev = pd.DataFrame({
        "user_id": [1] * 6,
        "product_id": [10, 11, 12, 13, 14, 10],
        "event_type": ["view", "view", "view", "view", "purchase", "purchase"],
        "timestamp": [T0 + pd.Timedelta(hours=h) for h in range(6)]})
    split = temporal_split(ev)
    assert list(split.test["product_id"]) == [14]  # floor(0.2 * 5) = 1 pair held out
    assert split.test["relevant"].tolist() == [True]
    # the purchase of item 10 happened after the cutoff: it must not leak into training
    assert split.train["timestamp"].max() <= split.cutoff[1]
    assert to_pairs(split.train).set_index("product_id").loc[10, "purchased"] == np.False_


@pytest.mark.parametrize("model", [RandomRecommender(1), TopPopRecommender(),
                                   EASERecommender(lam=10.0), SVDRecommender(FAST_SVD)],
                         ids=lambda m: m.name)
def test_models_fit_and_recommend_unseen_items(data, model):
    events = data[0]
    model.fit(events)
    recs = model.recommend([0, 1, 2, 12345], n=5)
    assert list(recs.columns) == ["user_id", "product_id", "score", "rank"]
    assert sorted(recs["user_id"].unique()) == [0, 1, 2, 12345]  # 12345 is a cold-start user
    assert (recs.groupby("user_id")["rank"].apply(list) == pd.Series([[1, 2, 3, 4, 5]] * 4,
                                                                     index=[0, 1, 2, 12345])).all()
    seen = set(zip(events["user_id"], events["product_id"], strict=True))
    assert not seen & set(zip(recs["user_id"], recs["product_id"], strict=True))
    assert recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing).all()


def test_ease_weights_match_the_closed_form():
    x = InteractionMatrix.from_pairs(to_pairs(planted(20, 36)[0])).matrix
    p = np.linalg.inv((x.T @ x).toarray() + 5.0 * np.eye(x.shape[1]))
    expected = np.eye(x.shape[1]) - p / np.diag(p)
    np.testing.assert_allclose(ease_weights(x, 5.0), expected, atol=1e-4)


def test_svd_learns_ratings_and_tuning_picks_from_the_grid(data):
    events = data[0]
    cv = rating_cv(events, FAST_SVD, folds=3)
    spread = events["rating"].std()
    assert cv["rmse"] < 0.7 * spread  # clearly better than predicting the mean rating
    tuned = tune_svd(events, {"n_factors": [4, 8], "n_epochs": [10], "lr_all": [0.01],
                              "reg_all": [0.05]})
    assert tuned["params"]["n_factors"] in (4, 8) and len(tuned["grid"]) == 2
    model = SVDRecommender(FAST_SVD).fit(events)
    pred = model.predict(np.array([0, 0]), np.array([1, 30]))  # user 0 is north (Action 0..23)
    assert pred[0] > pred[1]


def test_hybrid_beats_random_and_toppop_on_planted_structure(data):
    events, products, users = data
    res = evaluate_models(events, products, users, models=["random", "toppop", "hybrid"],
                          params=FAST_HYBRID)["models"]
    assert res["hybrid"]["ndcg@10"] > res["random"]["ndcg@10"]
    assert res["hybrid"]["ndcg@10"] > res["toppop"]["ndcg@10"]
    assert res["hybrid"]["user_coverage"] == 1.0


def test_hybrid_recommends_the_users_own_taste(hybrid):
    recs = hybrid.recommend([0, 1], n=5)
    north = recs.loc[recs["user_id"] == 0, "product_id"]
    south = recs.loc[recs["user_id"] == 1, "product_id"]
    assert (north < 24).mean() >= 0.8 and (south >= 24).mean() >= 0.8


def test_cold_start_user_gets_segment_popular_items(hybrid):
    new_users = pd.DataFrame({"user_id": [5000, 5001], "region": ["north", "south"],
                              "gender": ["U", "U"], "age": [None, None]})
    recs = hybrid.recommend([5000, 5001, 5002], n=5, users=new_users)
    assert recs.groupby("user_id").size().to_dict() == {5000: 5, 5001: 5, 5002: 5}
    assert (recs.loc[recs["user_id"] == 5000, "product_id"] < 24).all()
    assert (recs.loc[recs["user_id"] == 5001, "product_id"] >= 24).all()


def test_cold_start_item_is_reachable_through_content(hybrid):
    new_item = 48
    assert new_item in hybrid.new_items_
    sims = hybrid.similar_items([new_item], n=5)
    assert len(sims) == 5 and (sims["similar_product_id"] < 24).all()
    aud = hybrid.audience([new_item, 30], n=10)
    assert (aud.loc[aud["product_id"] == new_item, "user_id"] % 2 == 0).mean() >= 0.8
    assert (aud.loc[aud["product_id"] == 30, "user_id"] % 2 == 1).mean() >= 0.8
    recs = hybrid.recommend([0], n=5, new_item_slots=1)
    assert recs["product_id"].tolist()[-1] == new_item and len(recs) == 5


def test_hybrid_survives_pickling(hybrid):
    clone = pickle.loads(pickle.dumps(hybrid))
    pd.testing.assert_frame_equal(clone.recommend([0, 3, 7], n=5), hybrid.recommend([0, 3, 7], n=5))


def test_hybrid_accepts_external_feature_frames(data):
    events, products, users = data
    uf = pd.DataFrame({"user_id": np.arange(90), "clicks_7d": np.arange(90) % 5})
    itf = pd.DataFrame({"product_id": np.arange(48), "views_7d": np.arange(48) * 2.0})
    model = HybridRecommender(FAST_HYBRID).fit(events, products, users, user_features=uf,
                                               item_features=itf)
    assert {"ext_u_clicks_7d", "ext_i_views_7d"} <= set(model.ranker_.feature_names_)
    assert len(model.recommend([0], n=3)) == 3


def test_time_features_use_seconds_whatever_the_timestamp_resolution():
    from recomart.models.data import epoch_seconds
    from recomart.models.ranker_features import FeatureBuilder

    day = pd.Timedelta(days=1)
    rows = [(1, 10, T0), (1, 11, T0 + 200 * day), (2, 12, T0 + 150 * day), (3, 12, T0 + 160 * day),
            (2, 13, T0 + 10 * day), (3, 13, T0 + 20 * day)]
    events = pd.DataFrame(rows, columns=["user_id", "product_id", "timestamp"])
    for unit in ("ns", "us", "s"):
        ev = events.assign(timestamp=events["timestamp"].dt.as_unit(unit))
        assert epoch_seconds(ev["timestamp"])[0] == int(T0.timestamp())
        pairs = to_pairs(ev)
        fb = FeatureBuilder().fit(pairs, pd.DataFrame({"product_id": [10, 11, 12, 13]}),
                                  InteractionMatrix.from_pairs(pairs))
        feats = fb.transform(pd.DataFrame({"user_id": [1, 1], "product_id": [12, 13]}))
        # item 12 was touched twice in the 90 days before user 1's last activity, item 13 never
        np.testing.assert_allclose(feats["ui_local_pop"], [np.log1p(2), 0.0], rtol=1e-6)
        np.testing.assert_allclose(feats["ui_item_age_at_user"], [50.0, 190.0], rtol=1e-6)


def test_segment_popularity_falls_back_to_global_for_small_or_unknown_segments():
    from recomart.models.cold_start import SegmentPopularity

    rows = ([(u, 1) for u in range(30)] + [(u, 2) for u in range(30, 33)]
            + [(u, 3) for u in range(33, 83)])
    events = pd.DataFrame(rows, columns=["user_id", "product_id"]).assign(timestamp=T0)
    users = pd.DataFrame({"user_id": range(83),
                          "region": ["north"] * 30 + ["tiny"] * 3 + [None] * 50})
    pairs = to_pairs(events)
    pop = SegmentPopularity(min_segment_users=20).fit(pairs, users, InteractionMatrix.from_pairs(pairs))
    new = pd.DataFrame({"user_id": [900, 901], "region": ["north", "tiny"]})
    recs = pop.recommend(np.array([900, 901, 902]), n=2, users=new)
    first = recs.loc[recs["rank"] == 1].set_index("user_id")["product_id"].to_dict()
    assert first == {900: 1, 901: 3, 902: 3}  # tiny has 3 users (< 20): global, like unknowns


def test_planted_label_leak_in_external_features_does_not_reach_the_ranker(data):
    """An item feature that counts the ranker's own labels (relevant pairs of its validation
    period) once they have happened. As of the ranker's cut-off it is all zeros, so with
    ``features_at`` the ranker never learns from it and the offline score equals a hybrid without
    the feature; handed the end-of-training frame for its rows (the old way) it does learn it."""
    from recomart.models.evaluate import score_model
    from recomart.models.protocols import explore_split

    events, products, users = data
    outer = explore_split(events)
    params = {**FAST_HYBRID, "ranker": {"n_estimators": 60, "subsample": 1.0,
                                        "colsample_bytree": 1.0}}
    inner = temporal_split(outer.train, holdout=params.get("holdout", 0.2))
    labels = inner.test.loc[inner.test["relevant"], ["product_id", "timestamp"]]

    def leak(at) -> pd.DataFrame:
        t = at.min() if isinstance(at, pd.Series) else at
        seen = labels.loc[labels["timestamp"] < t, "product_id"].value_counts()
        return pd.DataFrame({"product_id": np.arange(48),
                             "leak": seen.reindex(np.arange(48), fill_value=0).to_numpy(float)})

    end = leak(outer.train["timestamp"].max() + pd.Timedelta(seconds=1))
    assert end["leak"].sum() == len(labels) > 0  # the frame at the end does hold the labels
    point_in_time = HybridRecommender(params).fit(outer.train, products, users, item_features=end,
                                                  features_at=lambda at: (None, leak(at)))
    without = HybridRecommender(params).fit(outer.train, products, users)
    leaky = HybridRecommender(params).fit(outer.train, products, users, item_features=end)

    assert "ext_i_leak" in leaky.ranker_.importances()  # the planted leak is learnable
    assert "ext_i_leak" not in point_in_time.ranker_.importances()
    assert score_model(point_in_time, outer)["ndcg@10"] == pytest.approx(
        score_model(without, outer)["ndcg@10"], abs=1e-12)
