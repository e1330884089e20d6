"""
### RecoMart training

Trains every recommender on the *published* curated interactions and the feature store, at the
table versions `load_training_data` pins (every later task reads exactly those). It evaluates
random, top-pop, EASE, SVD, buy-again and the hybrid, and the current champion **re-scored** (its
recipe refitted), on one holdout: next basket on repeat-heavy shops, a global time cut otherwise.
It logs params, metrics, charts and signed models to MLflow (experiment `recomart_training`),
registers the best as `recomart_hybrid` (the hybrid when it wins, else the winner backed by the
hybrid for similar items, audiences and new users) and moves `@champion` only if it beats the
re-scored champion's NDCG@10 by more than `RECOMART_CHAMPION_MARGIN`. It then publishes top-N per
user (with a `reason`), similar items and audiences to `serving/recomart_hybrid/v<version>/` and
points `serving/latest.json` at the champion (the serving API hot-swaps to it).

**Schedule**: whenever the batch DAG updates the feature tables (Asset-triggered); also runnable
by hand (`recomart run recomart_training --date YYYY-MM-DD`). **Params** (trigger conf): `ds`
(as-of date; default: the latest `ds` of the triggering feature-Asset events, so a run queued by
the events of D and D+1 trains D+1; for a manual run, its logical date), `force_model_params`
(hybrid hyper-parameter overrides applied after tuning, e.g. `{"candidates": {"content": 5}}`;
`{"tune": false}` skips tuning; the promotion rule still protects the champion), `top_n`
(items per user to publish).
Re-running a date with the same inputs and params reuses the finished MLflow run and version.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, Param, dag, get_current_context, task
from recomart_tasks import fail_fast, run_ds

from recomart.orchestration import (
    FEATURES_ASSETS,
    START_DATE,
    TRAINING_DAG_ID,
    default_args,
    lake_asset,
)

MODEL_NAME = "recomart_hybrid"
FEATURE_ASSETS = [Asset(**a) for a in FEATURES_ASSETS.values()]
# Lineage (OpenLineage): what the training reads and what it publishes.
TRAINING_INPUTS = [*(Asset(**lake_asset("curated", t))
                     for t in ("ratings", "clickstream", "orders", "users", "products")),
                   *FEATURE_ASSETS]
SERVING_OUTPUTS = [Asset(**lake_asset("serving", MODEL_NAME)), Asset(**lake_asset("serving", "latest.json"))]
MODEL_REPORT = Asset(**lake_asset("reports", "latest/model.pdf"))
EXPERIMENT = Asset(**lake_asset("mlflow", "recomart_training"))  # runs with logged candidate models
MODEL = Asset(**lake_asset("mlflow", MODEL_NAME))  # the registered model's versions and @champion


def _run_id() -> str:
    return str(get_current_context()["run_id"])


@dag(
    dag_id=TRAINING_DAG_ID,
    schedule=FEATURE_ASSETS,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["recomart", "training", "mlflow"],
    doc_md=__doc__,
    params={
        "ds": Param(None, type=["null", "string"], description="As-of date YYYY-MM-DD"),
        "force_model_params": Param({}, type="object",
                                    description="Model hyper-parameter overrides {model: {param: value}}"),
        "top_n": Param(None, type=["null", "integer"], description="Items per user to publish"),
    },
)
def recomart_training() -> None:
    @task(inlets=TRAINING_INPUTS)
    @fail_fast
    def load_training_data() -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.training import load_training_data as stage

        return stage(Lake(), run_ds())

    @task(inlets=TRAINING_INPUTS, outlets=[EXPERIMENT])
    @fail_fast
    def train_and_evaluate(data: dict[str, Any]) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.training import train_and_evaluate as stage

        params = get_current_context()["params"]
        out = stage(Lake(), run_ds(), data, model_params=params.get("force_model_params") or None,
                    airflow_run_id=_run_id())
        return {**out, "read_versions": data.get("read_versions", {})}  # lineage: what it read

    @task(inlets=[EXPERIMENT], outlets=[MODEL])
    @fail_fast
    def register_and_promote(trained: dict[str, Any]) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.training import register_and_promote as stage

        return stage(Lake(), run_ds(), trained)

    @task(inlets=[MODEL], outlets=SERVING_OUTPUTS)
    @fail_fast
    def publish(data: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.training import publish as stage

        out = stage(Lake(), run_ds(), data, decision,
                    top_n=get_current_context()["params"].get("top_n"))
        return {**out, "read_versions": data.get("read_versions", {})}

    @task(outlets=[MODEL_REPORT])
    @fail_fast
    def model_report(trained: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.training import model_report as stage

        return stage(Lake(), run_ds(), trained, decision)

    data = load_training_data()
    trained = train_and_evaluate(data)
    decision = register_and_promote(trained)
    publish(data, decision)
    model_report(trained, decision)


recomart_training()
