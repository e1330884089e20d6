"""The experiments DAG through Airflow (``dag.test``) on a lake built by the real upstream stages:
a generated shop goes through ingestion, validation and the feature store (CUPED's covariate), two
real recommenders are registered in MLflow (TopPop @champion, EASE @challenger), a week of
simulated shoppers is landed as exposures and clickstream, and the DAG reads it out, writes the
PDF, logs it to MLflow and — with gated promotion on — moves @champion to the winner."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

pytestmark = pytest.mark.slow
DS, READOUT = "2024-05-01", "2024-05-08"
USERS, PRODUCTS, DAYS, SEED = 1500, 150, 45, 11


@pytest.fixture
def prepared(lake, tmp_path, airflow_db, monkeypatch):
    from recomart import registry
    from recomart.config import reset_settings
    from recomart.experiments import definitions, simulator
    from recomart.features import build_features
    from recomart.ingestion import ingest_csv_sources
    from recomart.models.baselines import EASERecommender, TopPopRecommender
    from recomart.models.data import interactions_from_tables
    from recomart.sources.generator import generate
    from recomart.validation import publish_validated, validate_all

    src = tmp_path / "source"
    end = date(2024, 5, 2)
    generate(src, users=USERS, products=PRODUCTS, days=DAYS, seed=SEED, end_date=end)
    ingest_csv_sources(lake, DS, src)
    assert validate_all(lake, DS, "test-prep")["status"] == "pass"
    publish_validated(lake, DS, "test-prep")
    build_features(lake, DS, "test-prep")

    inter = interactions_from_tables({"clickstream": pd.read_csv(src / "clickstream.csv")})
    top, ease = TopPopRecommender().fit(inter), EASERecommender().fit(inter)
    versions = []
    for model in (top, ease):
        with registry.start_run("test_models"):
            versions.append(int(registry.log_model(model, "recomart_hybrid",
                                                   pd.DataFrame({"user_id": [1, 2]}),
                                                   metrics={"ndcg_at_10": 0.1}).version))
    registry.set_alias("recomart_hybrid", "champion", versions[0])
    registry.set_alias("recomart_hybrid", "challenger", versions[1])

    exp = definitions.create(lake, {
        "name": "toppop-vs-ease", "started_at": "2024-05-02T00:00:00+00:00",
        "secondary_metrics": ["conversion", "revenue_per_user"],
        "variants": [{"name": "control", "model": "models:/recomart_hybrid@champion", "weight": 1},
                     {"name": "treatment", "model": "models:/recomart_hybrid@challenger",
                      "weight": 1}]},
        now=datetime(2024, 5, 2, tzinfo=UTC))  # a fixed salt, so the split and its interval are fixed
    shop = simulator.Shop.from_generator(USERS, PRODUCTS, DAYS, seed=SEED, end_date=end)
    sim = simulator.simulate_experiment(
        shop, exp, {"control": simulator.recommender_policy(top),
                    "treatment": simulator.recommender_policy(ease)}, users=1200, days=7, seed=3)
    lake.write_parquet(lake.path("speed", "exposures", "date=2024-05-02", "sim.parquet"), sim.exposures)
    lake.write_parquet(lake.path("speed", "clickstream", "date=2024-05-02", "sim.parquet"), sim.events)
    monkeypatch.setenv("RECOMART_EXPERIMENT_GATED_PROMOTION", "true")
    reset_settings()
    return lake, versions, sim


def test_experiments_dag_reads_out_reports_and_promotes(prepared):
    from tests.airflow_helpers import run_dag

    from recomart import registry
    from recomart.experiments import run

    lake, (_champion, challenger), sim = prepared
    run_dag("recomart_experiments", READOUT)
    readout = run.latest_readout(lake, "toppop-vs-ease")
    assert readout["ds"] == READOUT and readout["decision"] == "treatment_better"
    assert readout["cuped_covariate"] == "user_features:n_views"
    primary = readout["primary"][0]
    assert primary["cuped"] is not None
    assert primary["welch"]["ci_low"] <= sim.truth_diff <= primary["welch"]["ci_high"]
    rec = readout["reconciliation"]
    assert rec["landed"] == len(sim.exposures) == rec["valid"]
    folder = lake.path("experiments", "toppop-vs-ease", "r1", f"ds={READOUT}")
    assert (folder / "readout.pdf").exists() and (folder / "units.parquet").exists()
    assert lake.path("reports", f"ds={READOUT}", "experiment_toppop-vs-ease.pdf").exists()
    run_id = registry.find_run(registry.EXPERIMENTS_EXPERIMENT,
                               {"experiment": "toppop-vs-ease", "ds": READOUT})
    assert run_id and registry.get_run(run_id)["tags"]["decision"] == "treatment_better"
    assert registry.version_for_alias("recomart_hybrid", "champion") == challenger
    tags = registry.client().get_model_version("recomart_hybrid", str(challenger)).tags
    assert tags["experiment.promoted"] == "True"

    run_dag("recomart_experiments", READOUT)  # a re-run: same MLflow run, no duplicate rows
    assert registry.find_run(registry.EXPERIMENTS_EXPERIMENT,
                             {"experiment": "toppop-vs-ease", "ds": READOUT}) == run_id


def test_no_active_experiment_skips_with_the_reason(lake, airflow_db):
    from tests.airflow_helpers import run_dag_states

    _, states = run_dag_states("recomart_experiments", "2024-05-08")
    assert states["analyse_outcomes"][0] == "skipped"
    assert states["readout_reports"][0] == "skipped"
