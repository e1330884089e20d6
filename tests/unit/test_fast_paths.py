"""Faster paths of the training and publishing code, each checked against the slow reference it
replaced on the same input (the references are kept here, small and obviously right)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recomart.models.data import _utc, normalize_events


def _normalize_events_reference(df: pd.DataFrame) -> pd.DataFrame:
    """The former ``normalize_events``: timestamps through a numpy object array (one Timestamp per
    row), event types through an object array."""
    out = pd.DataFrame({
        "user_id": df["user_id"].astype("int64").to_numpy(),
        "product_id": df["product_id"].astype("int64").to_numpy(),
        "timestamp": _utc(df["timestamp"]).to_numpy(),
        "rating": (df["rating"].astype("float64").to_numpy() if "rating" in df
                   else np.full(len(df), np.nan)),
    })
    out["timestamp"] = _utc(out["timestamp"])
    if "event_type" in df:
        out["event_type"] = df["event_type"].astype(str).to_numpy()
    else:
        out["event_type"] = np.where(out["rating"].notna(), "rating", "view")
    return out


@pytest.mark.parametrize("timestamps", [
    pd.date_range("2024-01-01", periods=6, freq="7h", tz="UTC").as_unit("us"),
    pd.date_range("2024-01-01", periods=6, freq="7h", tz="UTC").as_unit("ns"),
    pd.date_range("2024-01-01", periods=6, freq="7h"),  # naive: read as UTC
    pd.date_range("2024-01-01", periods=6, freq="7h", tz="Europe/Berlin"),
    [f"2024-01-0{d}T10:00:00Z" for d in range(1, 7)],
])
@pytest.mark.parametrize("with_types", [True, False])
def test_normalize_events_matches_the_object_array_reference(timestamps, with_types):
    df = pd.DataFrame({"user_id": [3, 1, 2, 1, 3, 2], "product_id": [10, 11, 10, 12, 13, 10],
                       "timestamp": list(timestamps) if isinstance(timestamps, list) else timestamps,
                       "rating": [4.0, None, 5.0, None, None, 2.0]},
                      index=[5, 9, 2, 7, 1, 0])  # a non-default index must not misalign columns
    if with_types:
        df["event_type"] = ["rating", "view", "rating", "purchase", "add_to_cart", "rating"]
    pd.testing.assert_frame_equal(normalize_events(df), _normalize_events_reference(df))


# ---- top-n over threads ---------------------------------------------------------------------
def test_threaded_top_n_equals_the_single_threaded_selection(monkeypatch):
    from recomart.models import base

    rng = np.random.default_rng(3)
    scores = np.round(rng.standard_normal((37, 500)), 1)  # many ties
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    expected = base._top_n(scores, 20)
    monkeypatch.setattr(base, "PARALLEL_TOP_N_CELLS", 1)
    monkeypatch.setattr(base, "worker_threads", lambda: 3)
    got = base.top_n(scores, 20)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def _top_n_argpartition(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The former selection: argpartition of the negated scores, then a stable sort of the part
    (which tied columns it keeps depends on how introselect split the row)."""
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def _top_n_stable_sort(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 30, 60, 499, 500])
def test_compiled_top_n_is_the_stable_sort_of_the_negated_row(dtype, n):
    from recomart.models.selection import top_n_rows

    rng = np.random.default_rng(n)
    scores = np.round(rng.standard_normal((41, 500)), 1).astype(dtype)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[rng.random(scores.shape) < 0.05] = np.nan
    scores[3] = 0.0  # a row of ties only
    scores[4, :] = -np.inf
    scores[4, 17] = 2.0  # one finite score
    scores[5] = np.arange(500)  # ascending: every column replaces the heap's worst
    got_c, got_v = top_n_rows(scores, n)
    want_c, want_v = _top_n_stable_sort(scores, n)
    np.testing.assert_array_equal(got_c, want_c)
    np.testing.assert_array_equal(got_v, want_v)
    assert got_v.dtype == scores.dtype and got_c.dtype == np.int64


def test_compiled_top_n_equals_the_former_argpartition_without_ties():
    from recomart.models import base

    rng = np.random.default_rng(11)
    scores = rng.standard_normal((300, 2000))
    scores[rng.random(scores.shape) < 0.3] = -np.inf  # seen items; fewer than n finite below
    scores[7, 5:] = -np.inf
    for n in (20, 100):
        got, want = base._top_n(scores, n), _top_n_argpartition(scores, n)
        finite = np.isfinite(want[1])  # the -inf tail is a tie too: its columns may differ
        np.testing.assert_array_equal(got[0][finite], want[0][finite])
        np.testing.assert_array_equal(got[1], want[1])


# ---- fits reused by content digest ----------------------------------------------------------
def _events(n_users: int = 60, n_items: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(u, int(i), pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=int(h)),
             float(rng.integers(1, 6)))
            for u in range(n_users)
            for i, h in zip(rng.choice(n_items, 8, replace=False), rng.integers(0, 2000, 8),
                            strict=True)]
    return pd.DataFrame(rows, columns=["user_id", "product_id", "timestamp", "rating"])


def test_svd_fit_reused_only_for_identical_ratings_and_params():
    from recomart.models.svd import SVD_FITS, SVDRecommender

    params = {"n_factors": 4, "n_epochs": 5}
    events = _events()
    SVD_FITS.clear()
    fresh = SVDRecommender(params, seed=1).fit(events)
    hits = SVD_FITS.hits
    again = SVDRecommender(params, seed=1).fit(events.sample(frac=1.0, random_state=2))
    assert SVD_FITS.hits == hits + 1  # same ratings in another row order: the same pairs
    for attr in ("bu_", "pu_", "bi_", "qi_"):
        np.testing.assert_array_equal(getattr(again, attr), getattr(fresh, attr))
    SVD_FITS.clear()  # the reference: Surprise fitted again from scratch
    ref = SVDRecommender(params, seed=1).fit(events)
    np.testing.assert_array_equal(ref.pu_, fresh.pu_)
    misses = SVD_FITS.misses
    SVDRecommender({**params, "n_epochs": 6}, seed=1).fit(events)
    SVDRecommender(params, seed=2).fit(events)
    changed = events.assign(rating=events["rating"].where(events.index != 0, 1.0 if
                                                          events.loc[0, "rating"] != 1 else 2.0))
    SVDRecommender(params, seed=1).fit(changed)
    assert SVD_FITS.misses == misses + 3  # other params, seed or ratings: fitted anew


def test_ease_weights_reused_only_for_the_same_matrix_and_lambda():
    from recomart.models.baselines import EASE_FITS, EASERecommender, ease_weights

    events = _events()
    EASE_FITS.clear()
    a = EASERecommender(lam=10.0).fit(events)
    b = EASERecommender(lam=10.0).fit(events)
    assert EASE_FITS.hits == 1
    np.testing.assert_array_equal(b.weights_, ease_weights(a.im_.matrix[:, a.cols_], 10.0))
    c = EASERecommender(lam=11.0).fit(events)
    d = EASERecommender(lam=10.0).fit(events.loc[events["user_id"] != 0])
    assert EASE_FITS.misses == 3
    assert not np.array_equal(c.weights_, a.weights_) and d.weights_.shape == a.weights_.shape


def test_parallel_svd_grid_search_gives_the_sequential_result():
    from recomart.models.svd import tune_svd

    grid = {"n_factors": [2, 4], "n_epochs": [5], "lr_all": [0.01], "reg_all": [0.05, 0.1]}
    events = _events(80, 40)
    seq = tune_svd(events, grid, seed=3, n_jobs=1)
    par = tune_svd(events, grid, seed=3, n_jobs=2)
    assert par == seq


def test_listed_ratings_svd_learns_exactly_what_surprise_svd_learns():
    from surprise import SVD

    from recomart.models.data import to_pairs
    from recomart.models.surprise_svd import ListedRatingsSVD
    from recomart.models.svd import surprise_dataset

    trainset = surprise_dataset(to_pairs(_events(70, 35, seed=5))).build_full_trainset()
    ref = SVD(biased=True, random_state=4, n_factors=6, n_epochs=7).fit(trainset)
    fast = ListedRatingsSVD(biased=True, random_state=4, n_factors=6, n_epochs=7).fit(trainset)
    for attr in ("bu", "bi", "pu", "qi"):
        np.testing.assert_array_equal(getattr(fast, attr), getattr(ref, attr))
    assert fast.predict(trainset.to_raw_uid(0), trainset.to_raw_iid(0)).est == \
        ref.predict(trainset.to_raw_uid(0), trainset.to_raw_iid(0)).est
    assert "all_ratings" not in vars(trainset)  # the trainset is left as it was


@pytest.mark.parametrize("biased", [True, False])
def test_compiled_svd_learns_exactly_what_surprise_svd_learns(biased):
    """The Numba transcription of Surprise's SGD: same initial factors, same walk, same updates."""
    from surprise import SVD

    from recomart.models.data import to_pairs
    from recomart.models.surprise_svd import CompiledSVD
    from recomart.models.svd import surprise_dataset

    trainset = surprise_dataset(to_pairs(_events(90, 40, seed=6))).build_full_trainset()
    kw = {"biased": biased, "random_state": 9, "n_factors": 5, "n_epochs": 6, "lr_all": 0.01,
          "reg_bu": 0.03, "reg_qi": 0.07}
    ref = SVD(**kw).fit(trainset)
    fast = CompiledSVD(**kw).fit(trainset)
    for attr in ("bu", "bi", "pu", "qi"):
        np.testing.assert_array_equal(getattr(fast, attr), getattr(ref, attr))
    uid, iid = trainset.to_raw_uid(3), trainset.to_raw_iid(2)
    assert fast.predict(uid, iid).est == ref.predict(uid, iid).est


def test_svd_recommender_compiled_fit_equals_the_surprise_trainset_fit(monkeypatch):
    """``fit_arrays`` (no Surprise dataset/trainset) gives the factors Surprise's fit gives."""
    from recomart.config import reset_settings
    from recomart.models.svd import SVD_FITS, SVDRecommender

    events = _events(70, 30, seed=8).sample(frac=1.0, random_state=2)  # ids in no sorted order
    params = {"n_factors": 4, "n_epochs": 6, "reg_all": 0.05}
    fitted = {}
    for engine in ("surprise", "compiled"):
        monkeypatch.setenv("RECOMART_MODELS_SVD_ENGINE", engine)
        reset_settings()
        SVD_FITS.clear()  # the memo must not hand one engine's factors to the other
        fitted[engine] = SVDRecommender(params, seed=5).fit(events)
    reset_settings()
    ref, fast = fitted["surprise"], fitted["compiled"]
    assert fast.mu_ == ref.mu_ and fast.rating_scale_ == ref.rating_scale_
    for attr in ("bu_", "bi_", "pu_", "qi_"):
        np.testing.assert_array_equal(getattr(fast, attr), getattr(ref, attr))
    users = ref.im_.user_ids[:5]
    pd.testing.assert_frame_equal(fast.recommend(users, n=5), ref.recommend(users, n=5))


def test_svd_engine_setting_picks_the_class(monkeypatch):
    from surprise import SVD

    from recomart.config import reset_settings
    from recomart.errors import PermanentError
    from recomart.models.surprise_svd import CompiledSVD, ListedRatingsSVD, svd_class

    monkeypatch.delenv("RECOMART_MODELS_SVD_ENGINE", raising=False)
    reset_settings()
    assert svd_class() is CompiledSVD  # the default
    monkeypatch.setenv("RECOMART_MODELS_SVD_ENGINE", "surprise")
    reset_settings()
    try:
        assert svd_class() is SVD
        assert svd_class("listed") is ListedRatingsSVD
        with pytest.raises(PermanentError, match="unknown SVD engine"):
            svd_class("gpu")
    finally:
        monkeypatch.delenv("RECOMART_MODELS_SVD_ENGINE")
        reset_settings()


def test_svd_grid_search_on_a_user_sample_uses_only_sampled_users_ratings(monkeypatch):
    from recomart.models import svd
    from recomart.models.data import to_pairs
    from recomart.models.svd import tune_svd, tune_users

    events = _events(80, 40)
    pairs = to_pairs(events)
    sample = tune_users(pairs, 30, seed=3)
    assert sample["user_id"].nunique() == 30
    # every rating of a sampled user is kept, nobody else's
    kept = pairs.loc[pairs["user_id"].isin(sample["user_id"].unique())]
    assert len(sample) == len(kept)
    assert tune_users(pairs, 0, seed=3) is pairs and tune_users(pairs, 500, seed=3) is pairs
    grid = {"n_factors": [2, 4], "n_epochs": [5], "lr_all": [0.01], "reg_all": [0.1]}
    searched: list[set[int]] = []  # the users of the ratings the grid search was given
    real_dataset = svd.surprise_dataset
    monkeypatch.setattr(svd, "surprise_dataset",
                        lambda p: searched.append(set(p["user_id"])) or real_dataset(p))
    sampled = tune_svd(events, grid, seed=3, n_jobs=1, max_users=30)
    assert searched == [set(sample["user_id"])]
    assert sampled["sample"] == {"users": 30, "ratings": len(sample), "of_users": 80,
                                 "of_ratings": len(pairs), "max_users": 30}
    full = tune_svd(events, grid, seed=3, n_jobs=1, max_users=0)
    assert full["sample"]["ratings"] == len(pairs)
    assert sampled["grid"] != full["grid"]  # the sample really is a different (smaller) search


# ---- publishing outputs of the hybrid ---------------------------------------------------------
FAST_HYBRID = {"svd": {"n_factors": 4, "n_epochs": 10}, "ease_lam": 20.0,
               "ranker": {"n_estimators": 20}, "ranker_grid": [{}], "min_segment_users": 5,
               "candidates": {"ease": 10, "svd": 5, "cooc": 8, "content": 5, "pop": 5}}


@pytest.fixture(scope="module")
def small_hybrid():
    from recomart.models.hybrid import HybridRecommender

    events = _events(120, 40, seed=9)
    products = pd.DataFrame({"product_id": np.arange(45),  # 40..44: nobody touched them
                             "title": [f"item {i % 7} word{i % 5}" for i in range(45)],
                             "category": [["A", "B", "C"][i % 3] for i in range(45)]})
    return HybridRecommender(FAST_HYBRID).fit(events, products)


def _scipy_similarity(content, left, item_ids) -> np.ndarray:
    """The former ``ContentModel.similarity``: scipy's sparse product, then densified."""
    return np.asarray((left @ content.vectors(item_ids).T).todense(), dtype=np.float32)


def _audience_reference(model, product_ids, n: int = 100, batch_size: int = 256) -> pd.DataFrame:
    """The former ``HybridRecommender.audience``: float64 scores filled with -inf per batch."""
    from recomart.models.base import _top_n, batches

    product_ids = np.asarray(product_ids, dtype="int64")
    ease = model.sources_.ease_
    x = model.im_.matrix
    x_ease = x[:, ease.cols_].tocsr()
    xt = x.T.tocsr()
    cols = model.im_.item_index(product_ids)
    ease_pos = np.minimum(np.searchsorted(ease.cols_, np.maximum(cols, 0)), len(ease.cols_) - 1)
    in_ease = (cols >= 0) & (ease.cols_[ease_pos] == cols)
    frames = []
    for sl in batches(len(product_ids), batch_size):
        pids, col, pos, ok = product_ids[sl], cols[sl], ease_pos[sl], in_ease[sl]
        score = np.full((len(pids), x.shape[0]), -np.inf)
        if ok.any():
            score[ok] = np.asarray(x_ease @ ease.weights_[:, pos[ok]]).T
        if (~ok).any():
            sim = _scipy_similarity(model.content_, model.sources_.profiles_, pids[~ok]).T
            score[~ok] = np.where(sim > 0, sim, -np.inf)
        known = np.flatnonzero(col >= 0)
        if len(known):
            r, c = xt[col[known]].nonzero()
            score[known[r], c] = -np.inf
        idx, sc = _top_n(score, n)
        valid = np.isfinite(sc)
        frames.append(pd.DataFrame({
            "product_id": np.repeat(pids, idx.shape[1]).reshape(idx.shape)[valid],
            "user_id": model.im_.user_ids[idx[valid]], "score": sc[valid],
            "rank": np.cumsum(valid, axis=1)[valid].astype("int64")}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("threads", [1, 3])
def test_audience_equals_the_float64_reference(small_hybrid, monkeypatch, threads):
    from recomart.models import base

    monkeypatch.setattr(base, "worker_threads", lambda: threads)
    products = np.arange(45)
    for n, batch in ((100, 256), (7, 4)):
        got = small_hybrid.audience(products, n=n, batch_size=batch)
        ref = _audience_reference(small_hybrid, products, n=n, batch_size=batch)
        pd.testing.assert_frame_equal(got, ref)
        assert set(got["product_id"]) >= set(range(40, 45))  # new items reach users by content


def _candidates_reference(src, user_ids, k, repeat=False):
    """The former ``CandidateSources.candidates`` core (no ``at``): one users x items rank array
    per source, ranks gathered from them."""
    from recomart.models.base import _top_n
    from recomart.models.candidates import REPEAT_SOURCES, SOURCES

    user_ids = np.asarray(user_ids, dtype="int64")
    rows = src.im_.user_index(user_ids)
    ks = k if isinstance(k, dict) else dict.fromkeys(SOURCES, k)
    repeat_cols = repeat or ks.get("buy_again", 0) > 0
    sources = SOURCES if repeat_cols else tuple(s for s in SOURCES if s not in REPEAT_SOURCES)
    sc = src.scores(rows, buy_again=repeat_cols)
    sc["ease"] = src.ease_.score(rows).astype(np.float32)  # the float64 path, cast
    sc["content"] = np.asarray((src.profiles_[rows] @ src.item_vectors_).todense(),
                               dtype=np.float32)  # scipy's sparse product
    seen_r, seen_c = src.im_.matrix[rows].nonzero()
    mask = np.zeros((len(rows), src.im_.matrix.shape[1]), dtype=bool)
    ranks = {}
    for name in sources:
        s = np.array(sc[name], dtype=np.float32)
        if name not in REPEAT_SOURCES and not repeat:
            s[seen_r, seen_c] = -np.inf
        kk = ks.get(name, 0)
        rank = np.full(s.shape, kk + 1, dtype=np.int16)
        if kk > 0:
            idx, top = _top_n(s, kk)
            ok = np.isfinite(top)
            rr = np.repeat(np.arange(len(rows)), idx.shape[1]).reshape(idx.shape)
            rank[rr[ok], idx[ok]] = np.arange(1, idx.shape[1] + 1)[None, :].repeat(len(rows), 0)[ok]
            mask[rr[ok], idx[ok]] = True
        ranks[name] = rank
    r, c = mask.nonzero()
    cols = {"user_id": user_ids[r], "product_id": src.im_.item_ids[c]}
    for name in sources:
        cols[f"{name}_score"] = np.asarray(sc[name][r, c], dtype=np.float32)
        cols[f"{name}_rank"] = ranks[name][r, c]
    if repeat_cols:
        cols["buy_again_score"] = np.where(np.isfinite(cols["buy_again_score"]),
                                           cols["buy_again_score"], 0.0).astype(np.float32)
        cols.update(src.buy_again_features(rows[r], c, None))
        cols.update(src.history_features(rows[r], c, None))
    return pd.DataFrame(cols)


@pytest.mark.parametrize(("k", "repeat"), [
    ({"ease": 10, "svd": 5, "cooc": 8, "content": 5, "pop": 5}, False),
    ({"ease": 10, "svd": 0, "cooc": 8, "content": 5, "pop": 5, "buy_again": 6}, True),
    # buy-again proposes seen items without repeat mode: the other scores must stay unmasked
    ({"ease": 10, "svd": 5, "cooc": 8, "content": 5, "pop": 5, "buy_again": 6}, False),
    (7, False),
])
def test_candidates_equal_the_rank_array_reference(small_hybrid, k, repeat):
    src = small_hybrid.sources_
    users = src.im_.user_ids[::2]
    got = src.candidates(users, k, repeat=repeat)
    ref = _candidates_reference(src, users, k, repeat=repeat)
    pd.testing.assert_frame_equal(got[ref.columns], ref)
    assert small_hybrid.sources_.ease_.score(np.arange(3), dtype=np.float32).dtype == np.float32


def test_clear_fit_memos_empties_both_memos():
    from recomart.models.baselines import EASE_FITS, EASERecommender
    from recomart.models.memo import clear_fit_memos
    from recomart.models.svd import SVD_FITS, SVDRecommender

    events = _events(30, 20, seed=1)
    EASERecommender(lam=5.0).fit(events)
    SVDRecommender({"n_factors": 2, "n_epochs": 2}).fit(events)
    assert len(EASE_FITS) and len(SVD_FITS)
    clear_fit_memos()
    assert len(EASE_FITS) == len(SVD_FITS) == 0


def _similar_reference(model, product_ids, n: int = 10, batch_size: int = 512) -> pd.DataFrame:
    """The former ``HybridRecommender.similar_items``: float64 scores, boolean masks, one thread."""
    from recomart.models.base import _top_n, batches

    product_ids = np.asarray(product_ids, dtype="int64")
    frames = []
    for sl in batches(len(product_ids), batch_size):
        pids = product_ids[sl]
        content = model.content_.similarity(model.content_.vectors(pids), model.item_ids)
        scores = model.params["similar_content_weight"] * content.astype(np.float64)
        rows = model.im_.item_index(pids)
        known = rows >= 0
        if known.any():
            scores[known] += model.sources_.cooc_[rows[known]].toarray()
        scores[model.item_ids[None, :] == pids[:, None]] = -np.inf
        scores[scores <= 0] = -np.inf
        idx, sc = _top_n(scores, n)
        valid = np.isfinite(sc)
        src = np.repeat(pids, idx.shape[1]).reshape(idx.shape)
        frames.append(pd.DataFrame({
            "product_id": src[valid], "similar_product_id": model.item_ids[idx[valid]],
            "score": sc[valid], "rank": np.cumsum(valid, axis=1)[valid].astype("int64")}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("threads", [1, 3])
def test_similar_items_equal_the_float64_reference(small_hybrid, monkeypatch, threads):
    from recomart.models import base

    monkeypatch.setattr(base, "worker_threads", lambda: threads)
    products = np.arange(45)
    for n, batch in ((10, 512), (4, 3)):
        got = small_hybrid.similar_items(products, n=n, batch_size=batch)
        ref = _similar_reference(small_hybrid, products, n=n, batch_size=batch)
        # scores are summed in float32 now: equal to float32 precision; ties keep their order
        pd.testing.assert_frame_equal(got.drop(columns="score"), ref.drop(columns="score"))
        np.testing.assert_allclose(got["score"], ref["score"], rtol=1e-6)
        assert set(got["product_id"]) >= set(range(40, 45))  # new items get content neighbours


# ---- the final hybrid reuses the evaluated hybrid's ranker choice ------------------------------
def _ranker_data(n_users: int = 120, per_user: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    x = pd.DataFrame({"a": rng.random(len(users)), "b": rng.random(len(users)),
                      "ease_score": rng.random(len(users))})
    y = np.where(x["a"] + 0.3 * rng.random(len(users)) > 0.9, 2.0,
                 np.where(x["b"] > 0.8, 1.0, 0.0)).astype(np.float32)
    return x, y, users


def test_ranker_trained_on_the_chosen_variant_equals_the_full_search():
    """What ``final_hybrid_params`` does on all data is exactly the full search's refit whenever
    the search would choose that variant: same folds, same early stopping, same model."""
    from recomart.models.ranker import RANKER_GRID, Ranker

    x, y, users = _ranker_data()
    base = {"n_estimators": 30, "early_stopping_rounds": 5}
    full = Ranker(base, seed=1, grid=RANKER_GRID, fallback=()).fit(x, y, users)
    variant = full.best_["variant"]
    reused = Ranker({**base, **variant}, seed=1, grid=[{}], fallback=()).fit(x, y, users)
    assert len(reused.search_) == 1 and len(full.search_) == len(RANKER_GRID)
    assert reused.best_["n_estimators"] == full.best_["n_estimators"]
    assert reused.best_["validation_ndcg@10"] == full.best_["validation_ndcg@10"]
    np.testing.assert_array_equal(reused.predict(x), full.predict(x))


def test_final_hybrid_params_reuse_the_ranker_choice_unless_told_otherwise(monkeypatch):
    from recomart.config import reset_settings
    from recomart.training import final_hybrid_params

    params = {"ranker": {"n_estimators": 50}, "ranker_grid": None, "ease_lam": 10.0}
    info = {"ranker_choice": {"variant": {"max_depth": 4}, "n_estimators": 12}}
    monkeypatch.delenv("RECOMART_MODELS_RANKER_REUSE", raising=False)
    reset_settings()
    got = final_hybrid_params(params, info, {})
    assert got == {**params, "ranker": {"n_estimators": 50, "max_depth": 4}, "ranker_grid": [{}]}
    # a fallback ordering won, an explicit ranker override, no evaluated hybrid: search as before
    assert final_hybrid_params(params, {"ranker_choice": {"variant": {"fallback": "ease_score"}}},
                               {}) is params
    assert final_hybrid_params(params, info, {"ranker_grid": [{}]}) is params
    assert final_hybrid_params(params, None, {}) is params
    monkeypatch.setenv("RECOMART_MODELS_RANKER_REUSE", "false")
    reset_settings()
    try:
        assert final_hybrid_params(params, info, {}) is params
    finally:
        monkeypatch.delenv("RECOMART_MODELS_RANKER_REUSE")
        reset_settings()


def test_hybrid_recommend_in_parallel_blocks_equals_one_block_at_a_time(small_hybrid, monkeypatch):
    from recomart.models import base

    users = np.r_[small_hybrid.im_.user_ids, 10_000, 10_001]  # two unknown: cold start
    monkeypatch.setattr(small_hybrid, "batch_size", 16)  # several blocks
    monkeypatch.setattr(base, "worker_threads", lambda: 3)
    monkeypatch.setattr(small_hybrid, "parallel_batches", 3)
    threaded = small_hybrid.recommend(users, n=8)
    monkeypatch.setattr(small_hybrid, "parallel_batches", 1)
    sequential = small_hybrid.recommend(users, n=8)
    assert len(threaded) > 8 * 100
    pd.testing.assert_frame_equal(threaded, sequential)


def test_ranker_search_on_a_user_sample_then_one_fit_on_every_user():
    """The sampled search is the full search run on the sampled users' rows; the final model is
    the winner fitted on every row (not only the sample's)."""
    from xgboost import XGBRanker

    from recomart.models.ranker import RANKER_GRID, Ranker

    x, y, users = _ranker_data(n_users=150)
    base = {"n_estimators": 25, "early_stopping_rounds": 5}
    sampled = Ranker(base, seed=2, grid=RANKER_GRID, search_users=60).fit(x, y, users)
    assert sampled.search_sample_ == {"users": 60, "of_users": 150}
    keep = np.isin(users, np.random.default_rng(2).choice(np.unique(users), 60, replace=False))
    on_sample = Ranker(base, seed=2, grid=RANKER_GRID).fit(x.loc[keep].reset_index(drop=True),
                                                         y[keep], users[keep])
    assert sampled.search_ == on_sample.search_
    full = Ranker(base, seed=2, grid=RANKER_GRID, search_users=0).fit(x, y, users)
    assert full.search_sample_ == {"users": 150, "of_users": 150}
    assert sampled.model_ is not None  # a trained variant won (ease_score here is noise)
    # refitted on all 150 users' rows
    params = {**sampled.params, **sampled.best_["variant"],
              "n_estimators": sampled.best_["n_estimators"], "early_stopping_rounds": None}
    yy = (y >= y.max()).astype(np.float32) if params.pop("labels", "graded") == "binary" else y
    ref = XGBRanker(random_state=2, n_jobs=1, **params).fit(x, yy, qid=users, verbose=False)
    np.testing.assert_array_equal(sampled.predict(x), ref.predict(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_product_is_scipys_product_densified_bit_for_bit(dtype):
    import scipy.sparse as sp

    from recomart.models.sparse_products import dense_product

    rng = np.random.default_rng(5)
    a = sp.random(300, 80, density=0.2, format="csr", random_state=rng, dtype=dtype)
    b = sp.random(80, 500, density=0.1, format="csr", random_state=rng, dtype=dtype)
    a.data[a.indptr[7]:a.indptr[8]] = 0  # an empty row
    a.eliminate_zeros()
    # unsorted column indices within rows (user profiles are built that way)
    shuffled = sp.csr_matrix(a)
    for i in range(shuffled.shape[0]):
        lo, hi = shuffled.indptr[i], shuffled.indptr[i + 1]
        order = rng.permutation(hi - lo) + lo
        shuffled.indices[lo:hi] = shuffled.indices[order]
        shuffled.data[lo:hi] = shuffled.data[order]
    shuffled.has_sorted_indices = False
    for left in (a, shuffled):
        ref = (left @ b).toarray()
        got = dense_product(left, b)
        assert got.dtype == ref.dtype and got.flags.c_contiguous
        assert got.tobytes() == ref.tobytes()
    mixed = dense_product(a.astype(np.float32), b.astype(np.float64))
    assert mixed.dtype == np.float64
    assert not dense_product(sp.csr_matrix((4, 80), dtype=dtype), b).any()
    with pytest.raises(ValueError, match="do not align"):
        dense_product(b, a)


def test_content_similarity_equals_scipys_product(small_hybrid):
    content, profiles = small_hybrid.content_, small_hybrid.sources_.profiles_
    items = np.arange(45)
    np.testing.assert_array_equal(content.similarity(profiles, items),
                                  _scipy_similarity(content, profiles, items))


def test_ranker_search_with_plain_eval_matrices_equals_the_binned_ones():
    """Plain ``DMatrix`` evaluation sets (cheap to score each round) give exactly the search
    that XGBoost's default ``QuantileDMatrix`` ones give: same early stopping, same model."""
    from recomart.models.ranker import RANKER_GRID, Ranker

    x, y, users = _ranker_data(n_users=150)
    base = {"n_estimators": 40, "early_stopping_rounds": 5}
    plain = Ranker(base, seed=3, grid=RANKER_GRID, plain_eval=True).fit(x, y, users)
    binned = Ranker(base, seed=3, grid=RANKER_GRID, plain_eval=False).fit(x, y, users)
    assert plain.search_ == binned.search_
    assert any(r.get("n_estimators", 0) < 40 for r in plain.search_)  # early stopping acted
    np.testing.assert_array_equal(plain.predict(x), binned.predict(x))


def test_ranker_on_rows_already_grouped_by_user_equals_the_shuffled_input():
    """Rows grouped by user (the hybrid's candidates) skip the reordering copy; the same users'
    rows in another user order train the same model."""
    from recomart.models.ranker import RANKER_GRID, Ranker

    x, y, users = _ranker_data(n_users=100)
    # whole users moved (each user's rows keep their order: the stable sort restores it)
    blocks = np.random.default_rng(4).permutation(np.unique(users))
    shuffle = np.concatenate([np.flatnonzero(users == u) for u in blocks])
    x_shuffled = x.iloc[shuffle].set_axis(np.arange(len(users))[::-1])  # and an unusual index
    base = {"n_estimators": 20, "early_stopping_rounds": 5}
    grouped = Ranker(base, seed=5, grid=RANKER_GRID).fit(x, y, users)
    shuffled = Ranker(base, seed=5, grid=RANKER_GRID).fit(x_shuffled, y[shuffle], users[shuffle])
    assert grouped.search_ == shuffled.search_
    np.testing.assert_array_equal(grouped.predict(x), shuffled.predict(x))


def _without_timings(value):
    """Metrics with every ``*_seconds`` entry dropped, recursively (they are wall times)."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not str(k).endswith("seconds")}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_svd_fitted_on_a_thread_beside_the_other_models_gives_the_sequential_results(monkeypatch):
    """``evaluate_split`` fits the SVD baseline on a thread while the other models are fitted and
    scored; every model's metrics (and the hybrid's training record) equal the one-after-another
    run on the same split, and the SVD really was fitted off the main thread."""
    import threading
    import time

    from recomart.models import evaluate
    from recomart.models.hybrid import DEFAULT_HYBRID_PARAMS
    from recomart.models.memo import clear_fit_memos
    from recomart.models.protocols import explore_split
    from recomart.models.svd import SVD_FITS

    params = {**DEFAULT_HYBRID_PARAMS, **FAST_HYBRID}
    events = _events(80, 40, seed=4)
    events["event_type"] = "rating"
    products = pd.DataFrame({"product_id": np.arange(40),
                             "title": [f"item {i % 7} word{i % 5}" for i in range(40)],
                             "category": [["A", "B", "C"][i % 3] for i in range(40)]})
    split = explore_split(events)
    real_fit_model = evaluate.fit_model
    steps: list[tuple[str, str, str]] = []  # (model, "start" | "end", thread name)

    def recording_fit_model(name, *args, **kwargs):
        thread = threading.current_thread()
        steps.append((name, "start", thread.name))
        if thread is not threading.main_thread():
            time.sleep(1.0)  # a slow background fit, so a hybrid that does not wait overtakes it
        model = real_fit_model(name, *args, **kwargs)
        steps.append((name, "end", thread.name))
        return model

    monkeypatch.setattr(evaluate, "fit_model", recording_fit_model)
    runs = {}
    for label, background in (("sequential", ()), ("background", ("svd",))):
        clear_fit_memos()  # each run fits for real
        steps.clear()
        runs[label] = evaluate.evaluate_split(split, evaluate.PROTOCOL_MODELS, params,
                                              seed=3, products=products, background=background)
        runs[f"{label} threads"] = {m: t for m, step, t in steps if step == "start"}
        runs[f"{label} steps"] = [(m, step) for m, step, _ in steps]
        runs[f"{label} svd memo"] = (SVD_FITS.hits, SVD_FITS.misses)
    clear_fit_memos()

    assert list(runs["background"]) == list(evaluate.PROTOCOL_MODELS)
    assert _without_timings(runs["background"]) == _without_timings(runs["sequential"])
    assert runs["background"]["svd"]["ndcg@10"] >= 0 and "training" in runs["background"]["hybrid"]
    main = threading.main_thread().name
    assert runs["sequential threads"]["svd"] == main
    assert runs["background threads"]["svd"].startswith("fit")
    assert {runs["background threads"][m] for m in evaluate.PROTOCOL_MODELS if m != "svd"} == {main}
    # the hybrid waited for the background fit and reused it, as it reuses the sequential one
    order = runs["background steps"]
    assert order.index(("svd", "end")) < order.index(("hybrid", "start"))
    assert runs["background svd memo"] == runs["sequential svd memo"]
    assert runs["background svd memo"][0] >= 1
