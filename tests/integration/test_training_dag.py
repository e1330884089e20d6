"""The training DAG through Airflow (``dag.test``) on a lake built by the real upstream stages.

Run 1 trains, registers v1 (the best model on the holdout), makes it ``@champion`` and publishes it.
Run 2 forces a deliberately worse hybrid (content-only candidates, no tuning) and allows only the
hybrid to be selected: v2 is registered and published for inspection, but the champion (re-scored
on run 2's holdout), ``serving/latest.json`` and the decision logged on v2's run all keep v1.
Run 3 repeats run 2: same inputs and parameters, so no new MLflow run or model version (v2 keeps
its run, and the training experiment holds the same runs as before).
"""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

DS = "2024-05-01"
WORSE = {"tune": False, "candidates": {"content": 5}, "select": ["hybrid"]}


@pytest.fixture
def prepared_lake(lake, tmp_path, airflow_db):
    """Generated shop → raw → curated (validation) → feature store, with the real stage functions."""
    from recomart.features import build_features
    from recomart.ingestion import ingest_csv_sources
    from recomart.sources.generator import generate
    from recomart.validation import publish_validated, validate_all

    src = tmp_path / "source"
    generate(src, users=1000, products=150, days=45, seed=11, end_date=date(2024, 5, 2))
    ingest_csv_sources(lake, DS, src)
    assert validate_all(lake, DS, "test-prep")["status"] == "pass"
    publish_validated(lake, DS, "test-prep")
    build_features(lake, DS, "test-prep")
    return lake


def _training_run_ids() -> set[str]:
    """Every run of the training experiment, whatever its state (deleted and failed ones too)."""
    from mlflow.entities import ViewType

    from recomart import registry

    c = registry.client()
    exp = c.get_experiment_by_name(registry.TRAINING_EXPERIMENT)
    assert exp is not None
    runs = c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    return {r.info.run_id for r in runs}


@pytest.mark.slow
def test_training_dag_promotes_then_protects_the_champion(prepared_lake):
    from tests.airflow_helpers import run_dag

    from recomart import publishing, registry, training

    lake = prepared_lake
    name = registry.HYBRID_MODEL

    run_dag("recomart_training", DS)
    champion, metrics = registry.get_champion(name)
    assert int(champion.version) == 1
    first_ndcg = metrics["ndcg_at_10"]
    run1 = registry.get_run(champion.run_id)
    results = training.results_from_run(run1)
    assert set(results) >= {"random", "toppop", "ease", "svd", "hybrid"}
    assert all("ndcg_at_10" in r and "recall_at_20" in r for r in results.values())
    selected = run1["params"]["selected_model"]  # the registered model is the best on the holdout
    assert results[selected]["ndcg_at_10"] == pytest.approx(first_ndcg)
    assert first_ndcg == pytest.approx(max(r["ndcg_at_10"] for r in results.values()))
    assert results["hybrid"]["ndcg_at_10"] > results["random"]["ndcg_at_10"]
    artifacts = registry.run_artifact_dir(champion.run_id)
    assert (artifacts / "plots" / "metrics_by_model.png").stat().st_size > 1000
    assert (artifacts / "reports" / "model.pdf").read_bytes()[:4] == b"%PDF"
    assert json.loads((artifacts / "promotion" / "decision.json").read_text())["decision"] == "promoted"
    assert (lake.root / "reports" / f"ds={DS}" / "model.pdf").exists()

    latest = publishing.read_latest(lake)
    assert latest["version"] == 1 and latest["path"] == f"serving/{name}/v1"
    v1 = publishing.serving_dir(lake, name, 1)
    recs = pd.read_parquet(v1 / "user_recs.parquet")
    users = lake.read_table("curated", "users", columns=["user_id"])["user_id"]
    assert set(recs["user_id"]) == set(users)  # every customer, with or without history
    assert recs.groupby("user_id").size().max() <= 20
    products = lake.read_table("curated", "products", columns=["product_id"])["product_id"]
    assert set(pd.read_parquet(v1 / "similar_items.parquet")["product_id"]) <= set(products)
    assert len(pd.read_parquet(v1 / "audience.parquet")) > 0

    # the champion loads and answers a user it never saw (cold start)
    model = registry.load_champion(name)
    cold = model.predict(pd.DataFrame({"user_id": [10_000_000]}), params={"n": 5})
    assert len(cold) == 5 and cold["product_id"].isin(products).all()

    run_dag("recomart_training", DS, conf={"force_model_params": WORSE})
    versions = {v["version"]: v for v in registry.list_versions(name)}
    assert set(versions) == {1, 2}
    assert int(registry.get_champion(name)[0].version) == 1
    run2 = registry.get_run(versions[2]["run_id"])
    assert run2["metrics"]["ndcg_at_10"] < first_ndcg
    assert run2["tags"]["promotion.decision"] == "kept"
    assert run2["metrics"]["promotion.champion_value"] == pytest.approx(first_ndcg)
    assert run2["metrics"]["promotion.candidate_value"] == pytest.approx(run2["metrics"]["ndcg_at_10"])
    assert json.loads(run2["params"]["forced_params"]) == WORSE
    assert publishing.read_latest(lake)["version"] == 1
    assert publishing.is_published(lake, name, 2)  # the loser is published for inspection only
    runs_before = _training_run_ids()
    assert runs_before == {champion.run_id, versions[2]["run_id"]}  # one MLflow run per training run

    # re-running the same date and configuration reuses the run and version: no duplicates
    run_dag("recomart_training", DS, conf={"force_model_params": WORSE})
    again = {v["version"]: v for v in registry.list_versions(name)}
    assert [v["version"] for v in registry.list_versions(name)] == [2, 1]
    assert again[2]["run_id"] == versions[2]["run_id"]
    assert again[1]["run_id"] == champion.run_id
    assert _training_run_ids() == runs_before
    assert int(registry.get_champion(name)[0].version) == 1
    assert publishing.read_latest(lake)["version"] == 1
