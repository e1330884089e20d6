"""Training on a lake built by the real upstream stages: what it pins is what it reads, and the
promotion rule compares the candidate with the champion re-scored on the candidate's holdout.

- A feature rebuild and a new curated version between ``load_training_data`` and
  ``train_and_evaluate`` change nothing that training reads (it reads the pinned versions), while a
  fresh ``load_training_data`` does see them (so the test can fail).
- A backfill for an older ``ds`` reads the curated version published for that ``ds``, not a newer
  run's.
- A champion whose *logged* figure is low (it was scored on an older, harder holdout) but whose
  recipe is better than the candidate's keeps ``@champion``: it is re-scored on the candidate's
  holdout, and both figures are on the candidate's run.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

DS = "2024-05-01"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from recomart.sources.generator import generate

    src = tmp_path_factory.mktemp("shop")
    generate(src, users=400, products=80, days=40, seed=5, end_date=date(2024, 5, 2))
    return src


@pytest.fixture
def prepared(lake, shop):
    from recomart.features import build_features
    from recomart.ingestion import ingest_csv_sources
    from recomart.validation import publish_validated, validate_all

    ingest_csv_sources(lake, DS, shop)
    assert validate_all(lake, DS, "test-prep")["status"] == "pass"
    publish_validated(lake, DS, "test-prep")
    build_features(lake, DS, "test-prep")
    return lake


def _what_training_reads(lake, data):
    """Exactly the frames ``train_and_evaluate`` reads for ``data`` (inputs and features)."""
    from recomart import training

    inputs = training.read_inputs(lake, data)
    ids = {"user_id": np.sort(inputs.users["user_id"].to_numpy()),
           "product_id": np.sort(inputs.products["product_id"].to_numpy())}
    feats = training.point_in_time_features(lake, inputs.feature_refs, pd.Timestamp(data["as_of"]),
                                            ids, inputs.feature_versions)
    return inputs, feats


def _tamper(lake, ds_meta: str) -> int:
    """A new curated users version (one extra customer), published for ``ds_meta`` as a passing
    batch run would, and a rebuilt user-feature snapshot with different values for ``DS``;
    returns the extra user's id."""
    from recomart.curated import publish, published_pointer
    from recomart.features import FeatureStore

    users = lake.read_table("curated", "users")
    extra = users.iloc[[0]].copy()
    new_id = int(users["user_id"].max()) + 1
    extra["user_id"] = new_id
    version = lake.write_table("curated", "users", pd.concat([users, extra], ignore_index=True),
                               metadata={"run_id": "later", "logical_date": ds_meta})
    publish(lake, ds_meta, {**published_pointer(lake, DS)["versions"], "users": version}, "later")
    store = FeatureStore(lake)
    snap = store.get_snapshot("user_features", DS)
    numeric = [c for c in snap.columns if c not in ("user_id", "feature_timestamp", "_ds", "_run_id")
               and pd.api.types.is_numeric_dtype(snap[c])]
    changed = snap.drop(columns=["feature_timestamp", "_ds", "_run_id"])
    changed[numeric] = changed[numeric] + 1000
    store.write("user_features", changed, ["user_id"], DS, "rebuild",
                {c: "rebuilt" for c in changed.columns if c != "user_id"})
    return new_id


@pytest.mark.slow
def test_training_reads_the_versions_it_pinned(prepared):
    from recomart import training

    lake = prepared
    data = training.load_training_data(lake, DS)
    before_inputs, before_feats = _what_training_reads(lake, data)
    new_id = _tamper(lake, DS)

    after_inputs, after_feats = _what_training_reads(lake, data)
    pd.testing.assert_frame_equal(after_inputs.users, before_inputs.users)
    pd.testing.assert_frame_equal(after_inputs.events, before_inputs.events)
    pd.testing.assert_frame_equal(after_feats["user_features"], before_feats["user_features"])
    # a new load for the same date does see both changes: the test above could have failed
    fresh = training.load_training_data(lake, DS)
    assert fresh["fingerprint"] != data["fingerprint"]
    fresh_inputs, fresh_feats = _what_training_reads(lake, fresh)
    assert new_id in set(fresh_inputs.users["user_id"])
    assert not fresh_feats["user_features"].equals(before_feats["user_features"])
    # and re-loading again pins the same versions: same fingerprint, same reads
    assert training.load_training_data(lake, DS) == fresh


@pytest.mark.slow
def test_backfill_reads_the_curated_version_published_for_its_date(prepared):
    from recomart import training
    from recomart.curated import published_version

    lake = prepared
    pinned = training.load_training_data(lake, DS)
    users_v = pinned["tables"]["users"]["version"]
    new_id = _tamper(lake, "2024-05-02")  # a later date's batch run
    assert published_version(lake, "users", DS) == users_v
    assert published_version(lake, "users", "2024-05-02") > users_v
    backfill = training.load_training_data(lake, DS)
    assert backfill["tables"] == pinned["tables"]
    assert new_id not in set(training.read_inputs(lake, backfill).users["user_id"])


@pytest.mark.slow
def test_champion_is_rescored_and_a_worse_candidate_with_a_higher_logged_figure_is_kept(prepared):
    """v1 = EASE registered with a low logged NDCG (its old holdout); the candidate is TopPop,
    whose NDCG on today's holdout beats that old figure but not EASE re-scored on the same one."""
    from recomart import registry, training
    from recomart.models.evaluate import fit_model
    from recomart.models.hybrid import DEFAULT_HYBRID_PARAMS
    from recomart.models.selected import SelectedRecommender

    lake = prepared
    name = registry.HYBRID_MODEL
    data = training.load_training_data(lake, DS)
    inputs = training.read_inputs(lake, data)
    params = dict(DEFAULT_HYBRID_PARAMS)
    ease = fit_model("ease", params, 42, inputs.events, inputs.products, inputs.users)
    hybrid = fit_model("hybrid", params, 42, inputs.events, inputs.products, inputs.users)
    ease = SelectedRecommender(ease, hybrid)  # publishable: similar items etc. from the hybrid
    logged = 0.01
    with registry.start_run(registry.TRAINING_EXPERIMENT, run_name="old champion"):
        registry.log_params({"recipe": {"model": "ease", "params": params, "protocol": "explore"}})
        v1 = registry.log_model(ease, name, pd.DataFrame({"user_id": [1, 2]}),
                                metrics={"ndcg_at_10": logged})
    assert registry.promote_if_better(name, v1.version)["decision"] == "promoted"

    trained = training.train_and_evaluate(lake, DS, data, model_params={
        "tune": False, "select": ["toppop"]})
    assert trained["selected"] == "toppop"
    assert trained["champion"]["version"] == 1
    run = registry.get_run(trained["run_id"])
    candidate = run["metrics"]["ndcg_at_10"]
    rescored = run["metrics"]["champion.ndcg_at_10"]
    assert candidate == pytest.approx(run["metrics"]["toppop.ndcg_at_10"])
    # the champion's recipe on the candidate's holdout = EASE's score in this very run
    assert rescored == pytest.approx(run["metrics"]["ease.ndcg_at_10"])
    assert logged < candidate < rescored  # the old rule would have promoted the candidate

    decision = training.register_and_promote(lake, DS, trained)
    assert decision["decision"] == "kept"
    assert decision["previous_champion_value"] == pytest.approx(rescored)
    assert decision["previous_champion_logged_value"] == pytest.approx(logged)
    assert int(registry.get_champion(name)[0].version) == 1
    run = registry.get_run(trained["run_id"])
    assert run["metrics"]["promotion.champion_value"] == pytest.approx(rescored)
    assert run["metrics"]["promotion.champion_logged_value"] == pytest.approx(logged)
    assert run["tags"]["promotion.decision"] == "kept"
    # the loser is still published for inspection, with a reason on every row
    from recomart import publishing

    published = training.publish(lake, DS, data, decision)
    assert published["champion_version"] == 1
    recs = pd.read_parquet(publishing.serving_dir(lake, name, decision["candidate_version"])
                           / "user_recs.parquet")
    assert recs["reason"].notna().all()
    assert set(recs["reason"]) <= {"popular", "popular_in_segment"}  # TopPop + hybrid cold start
    assert publishing.read_latest(lake)["version"] == 1


@pytest.mark.slow
def test_repeat_heavy_shop_selects_on_next_basket_and_publishes_buy_again(lake, tmp_path):
    """Half the categories consumable: the measured repeat share makes the shop repeat-heavy, the
    training selects on the next-basket holdout, and the published lists re-offer bought items."""
    from recomart import publishing, registry, training
    from recomart.features import build_features
    from recomart.ingestion import ingest_csv_sources
    from recomart.sources.generator import generate
    from recomart.validation import publish_validated, validate_all

    src = tmp_path / "grocer"
    generate(src, users=400, products=80, days=60, seed=5, end_date=date(2024, 5, 2),
             consumables=0.5)
    ingest_csv_sources(lake, DS, src)
    assert validate_all(lake, DS, "test-prep")["status"] == "pass"
    publish_validated(lake, DS, "test-prep")
    build_features(lake, DS, "test-prep")
    data = training.load_training_data(lake, DS)
    trained = training.train_and_evaluate(lake, DS, data, model_params={"tune": False})
    assert trained["protocol"] == "next_basket"
    run = registry.get_run(trained["run_id"])
    assert run["params"]["repeat_heavy"] == "True" and float(run["params"]["repeat_share"]) >= 0.2
    assert "other_protocol.buy_again.ndcg_at_10" in run["metrics"]  # explore baselines reported
    scores = {m: run["metrics"][f"{m}.ndcg_at_10"] for m in ("random", "toppop", "ease", "svd",
                                                              "buy_again", "hybrid")}
    assert scores[trained["selected"]] == max(scores.values())
    decision = training.register_and_promote(lake, DS, trained)
    training.publish(lake, DS, data, decision)
    recs = pd.read_parquet(publishing.serving_dir(lake, registry.HYBRID_MODEL, 1) / "user_recs.parquet")
    assert (recs["reason"] == "buy_again").any()
    orders = lake.read_table("curated", "orders")
    bought = set(zip(orders["user_id"], orders["product_id"], strict=True))
    again = recs.loc[recs["reason"] == "buy_again"]
    assert all(pair in bought for pair in zip(again["user_id"], again["product_id"], strict=True))
