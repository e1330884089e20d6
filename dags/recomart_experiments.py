"""
### RecoMart online experiments

Daily readout of every A/B experiment active on the logical date `ds`
(`recomart experiment create ...`; definitions in the lake, `experiments/definitions/`):

1. **analyse_outcomes**: reads every exposure the serving API logged (Kafka
   `recommendation-exposures` → Faust → `speed/exposures`), validates them with their own Pandera
   schema (quarantine `quarantine/exposures` with a reason: unknown variant, duplicate request id,
   exposure before the start / after the stop, no unit id, bad assignment probability), joins the
   clickstream (speed landings + published curated table): a click, add-to-cart or purchase on a
   recommended product within the attribution window counts for that list (by `request_id`, else
   user/session + product + window). Per experiment it writes one row per unit
   (`experiments/<name>/r<rev>/ds=<ds>/units.parquet`) and the readout JSON: SRM χ² against the
   configured weights, Welch t-test, CUPED, the always-valid sequential interval, Holm-adjusted
   secondary metrics, sample size reached, decision and why. Counts reconcile or the task fails.
2. **readout_reports**: the readout PDF (beside the JSON and in `reports/ds=<ds>/`), logged to
   MLflow (experiment `recomart_experiments`, one run per experiment, revision and date).
3. **gated_promotion**: with `RECOMART_EXPERIMENT_GATED_PROMOTION=true`, `@champion` moves to
   the challenger only when the experiment concludes it is better with a clean SRM check; the
   decision is written on the challenger's model version either way.

**Schedule**: `@daily` (the readout of the day that just ended; see `resolve_ds`). Manual:
`recomart run recomart_experiments --date YYYY-MM-DD`. **Params**: `ds`, `experiments` (names;
default every active one). No active experiment: the analysis task is *skipped* (nothing to
measure); active experiments without landed exposures fail the run with the folder it read.
Re-running a date replaces its outputs (quarantine rows, readout, MLflow run) and never duplicates.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, Param, dag, get_current_context, task
from recomart_tasks import fail_fast, run_ds

from recomart.orchestration import START_DATE, default_args, lake_asset

EXPERIMENTS_DAG_ID = "recomart_experiments"
EXPOSURES = Asset(**lake_asset("speed", "exposures"))
CLICKSTREAM = [Asset(**lake_asset("speed", "clickstream")), Asset(**lake_asset("curated", "clickstream"))]
QUARANTINE = Asset(**lake_asset("quarantine", "exposures"))
READOUTS = Asset(**lake_asset("experiments", "readouts"))
MLFLOW = Asset(**lake_asset("mlflow", "recomart_experiments"))
MODEL = Asset(**lake_asset("mlflow", "recomart_hybrid"))


@dag(
    dag_id=EXPERIMENTS_DAG_ID,
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["recomart", "experiments", "ab-test"],
    doc_md=__doc__,
    params={
        "ds": Param(None, type=["null", "string"], description="Readout date YYYY-MM-DD"),
        "experiments": Param([], type="array", description="Experiment names (default: all active)"),
    },
)
def recomart_experiments() -> None:
    @task(inlets=[EXPOSURES, *CLICKSTREAM], outlets=[QUARANTINE, READOUTS])
    @fail_fast
    def analyse_outcomes() -> dict[str, Any]:
        """Exposures ⋈ clickstream → unit outcomes and the readout JSON of each active
        experiment. Skipped when no experiment is active; fails when counts do not reconcile or
        no exposure has landed."""
        from airflow.sdk.exceptions import AirflowSkipException

        from recomart.config import get_settings
        from recomart.experiments.run import NoActiveExperiment, analyse_experiments
        from recomart.lake import Lake

        ctx = get_current_context()
        try:
            return analyse_experiments(Lake(), run_ds(), run_id=str(ctx["run_id"]),
                                       names=list(ctx["params"].get("experiments") or []) or None,
                                       cuped_feature=get_settings().experiment_cuped_feature)
        except NoActiveExperiment as exc:
            raise AirflowSkipException(str(exc)) from exc

    @task(inlets=[READOUTS], outlets=[MLFLOW])
    @fail_fast
    def readout_reports(summary: dict[str, Any]) -> dict[str, Any]:
        """The readout PDF per experiment, published to reports/ and logged to MLflow."""
        from recomart.config import get_settings
        from recomart.experiments.run import publish_readouts
        from recomart.lake import Lake

        return publish_readouts(Lake(), run_ds(), summary,
                                log_mlflow=get_settings().experiment_log_mlflow)

    @task(inlets=[READOUTS], outlets=[MODEL])
    @fail_fast
    def gated_promotion(summary: dict[str, Any], reports: dict[str, Any]) -> dict[str, Any]:
        """Move @champion only on a clean win (setting off by default); record the decision on
        the challenger's model version."""
        from recomart.config import get_settings
        from recomart.experiments.run import gated_promotion as stage
        from recomart.lake import Lake

        return stage(Lake(), run_ds(), summary, get_settings().experiment_gated_promotion)

    summary = analyse_outcomes()
    reports = readout_reports(summary)
    gated_promotion(summary, reports)


recomart_experiments()
