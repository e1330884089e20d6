"""
### RecoMart batch layer

Daily batch run for one logical date `ds`:

1. **merge_speed_layer**: merge every Faust speed-zone landing not merged before (recorded by
   file in `speed/clickstream_merged_files`, whatever its mtime) into Delta
   `speed/clickstream_master` (dedup by `event_id`; re-running merges nothing new and says so).
2. **ingest_csv** / **ingest_catalog**: land `<dataset>.csv` from `RECOMART_SOURCE_DIR` and the
   product-catalog API's pages in the raw zone, unchanged, with `_manifest.json` (sha256, rows).
   The catalog URL comes from the Airflow connection `recomart_catalog_api` (its host, or
   `extra.base_url`), else `RECOMART_CATALOG_API_URL`; with neither, products come from CSV only.
   Raw is immutable: identical bytes are a no-op, different bytes for a landed date fail.
3. **validate**: Pandera row rules and Great Expectations suites; every row ends up in
   `curated/<dataset>` or `quarantine/<dataset>` with a reason code; writes
   `reports/ds=<ds>/validation_summary.json` and GX Data Docs (`gx_data_docs/index.html`).
4. **quality_report** / **eda_report**: the PDF reports (they run before the gate so a failing
   run still documents why).
5. **quality_gate**: fails the run when a dataset's bad-row share exceeds
   `RECOMART_BAD_ROW_THRESHOLD`, naming the datasets and their top reasons.
6. **publish_curated**: write-audit-publish. Validation only *stages* new curated versions; this
   task (which runs only after a passing gate) publishes them, and every reader (features,
   training, serving helpers) reads published versions only. A failing run keeps its quarantine,
   summary and PDFs but publishes nothing, skips `build_features` and emits no feature Asset event,
   so training is not triggered.
7. **build_features**: user, item and user–item features as of the end of `ds` into the feature
   store (Delta `features/<table>`, one snapshot per date, point-in-time retrievable); its outlets
   (the feature Assets) trigger the training DAG.

Lineage: every task declares its lake Assets, so Airflow's OpenLineage provider emits its inputs
and outputs (raw files with sha256, Delta versions, schemas, row counts) to the lake's
`lineage/events/events.jsonl` (or Marquez): `recomart lineage features/user_features`.

**Dates.** `ds` is the day whose data the run covers: for a scheduled run (fired at 00:00) the day
that just ended; for a manual run (`recomart run --date D`, `airflow dags test recomart_batch D`,
the UI's trigger form) the logical date itself; `conf={"ds": ...}` always wins. Historic dates work
(the DAG starts in 1970 with `catchup=False`).

**Failures.** Deterministic failures (a different raw file for a landed date, a missing source file,
a failed gate) fail the task at once; transient ones (catalog API 5xx, timeouts) are retried with
exponential back-off.

Every task is idempotent for its date; re-running a date never duplicates rows.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, dag, get_current_context, task
from recomart_tasks import fail_fast, run_ds

from recomart.orchestration import BATCH_DAG_ID, FEATURES_ASSETS, START_DATE, default_args, lake_asset

CURATED = ("users", "products", "orders", "ratings", "clickstream")
CATALOG_CONN_ID = "recomart_catalog_api"
# Lineage: lake Assets on every task, so Airflow's OpenLineage provider (with the extractor in
# plugins/recomart_openlineage.py) reports each task's inputs/outputs with their lake facets.
RAW_CSV = [Asset(**lake_asset("raw", f"csv/{n}")) for n in CURATED]
RAW_CATALOG = Asset(**lake_asset("raw", "catalog_api/products"))
SPEED_MASTER = Asset(**lake_asset("speed", "clickstream_master"))
CURATED_ASSETS = [Asset(**lake_asset("curated", n)) for n in CURATED]
FEATURE_ASSETS = [Asset(**a) for a in FEATURES_ASSETS.values()]


def _catalog_url() -> str | None:
    """Airflow connection ``recomart_catalog_api`` if defined, else the settings (may be None)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from recomart.config import get_settings

    try:
        conn = BaseHook.get_connection(CATALOG_CONN_ID)
    except AirflowNotFoundException:
        return get_settings().catalog_api_url
    base = (conn.extra_dejson or {}).get("base_url")
    if base:
        return str(base)
    host = conn.host or ""
    if "://" in host:
        return host
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.schema or 'http'}://{host}{port}"


def _staged_versions(validation: dict) -> dict[str, int]:
    """The curated versions this run's validation staged (what its reports describe)."""
    return {f"curated/{n}": d["curated_version"] for n, d in validation["datasets"].items()}


@dag(
    dag_id=BATCH_DAG_ID,
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["recomart", "batch", "ingestion", "validation"],
    doc_md=__doc__,
)
def recomart_batch() -> None:
    @task(inlets=[Asset(**lake_asset("speed", "clickstream"))], outlets=[SPEED_MASTER])
    @fail_fast
    def merge_speed_layer() -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.streaming.merge import merge_speed_events

        return merge_speed_events(Lake(), run_ds())

    @task(retries=3, outlets=RAW_CSV)
    @fail_fast
    def ingest_csv() -> dict[str, Any]:
        from recomart.config import get_settings
        from recomart.ingestion import ingest_csv_sources
        from recomart.lake import Lake

        out = ingest_csv_sources(Lake(), run_ds(), get_settings().source_dir)
        return {"rows": out["rows"], "datasets": {n: {"rows": m["rows"], "sha256": m["sha256"],
                                                      "path": m["path"], "status": m["status"]}
                                                  for n, m in out["datasets"].items()}}

    @task(retries=3, outlets=[RAW_CATALOG])
    @fail_fast
    def ingest_catalog() -> dict[str, Any]:
        from recomart.ingestion import ingest_catalog as stage
        from recomart.lake import Lake

        out = stage(Lake(), run_ds(), _catalog_url())
        return {k: out.get(k) for k in ("status", "path", "rows", "sha256", "bad_pages", "reason")}

    @task(inlets=[*RAW_CSV, RAW_CATALOG, SPEED_MASTER], outlets=CURATED_ASSETS)
    @fail_fast
    def validate(speed: dict, csv: dict, catalog: dict) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.validation import validate_all

        summary = validate_all(Lake(), run_ds(), str(get_current_context()["run_id"]))
        return {"status": summary["status"], "datasets": {
            n: {k: d[k] for k in ("rows_in", "curated", "quarantined", "bad_ratio", "status",
                                  "curated_version")} for n, d in summary["datasets"].items()},
                **{k: summary[k] for k in ("read_versions", "written_versions")}}

    @task(inlets=CURATED_ASSETS, outlets=[Asset(**lake_asset("reports", "latest/data_quality.pdf"))])
    @fail_fast
    def quality_report(validation: dict) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.reports.quality import build_quality_report

        return {"path": str(build_quality_report(Lake(), run_ds())),
                "read_versions": _staged_versions(validation)}

    @task(inlets=CURATED_ASSETS, outlets=[Asset(**lake_asset("reports", "latest/eda.pdf"))])
    @fail_fast
    def eda_report(validation: dict) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.reports.eda import build_eda_report

        return {"path": str(build_eda_report(Lake(), run_ds())),
                "read_versions": _staged_versions(validation)}

    @task(retries=1, inlets=CURATED_ASSETS)
    @fail_fast
    def quality_gate(validation: dict) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.validation import quality_gate as gate

        return gate(Lake(), run_ds())

    speed = merge_speed_layer()
    csv = ingest_csv()
    catalog = ingest_catalog()
    speed >> [csv, catalog]
    validation = validate(speed, csv, catalog)
    reports = [quality_report(validation), eda_report(validation)]
    gate_result = quality_gate(validation)
    reports >> gate_result

    @task(inlets=CURATED_ASSETS)
    @fail_fast
    def publish_curated(gate: dict) -> dict[str, Any]:
        """Publish the staged curated versions (runs only after a passing gate)."""
        from recomart.lake import Lake
        from recomart.validation import publish_validated

        return publish_validated(Lake(), run_ds(), str(get_current_context()["run_id"]))

    published = publish_curated(gate_result)

    @task(inlets=CURATED_ASSETS, outlets=FEATURE_ASSETS)
    @fail_fast
    def build_features(published: dict) -> dict[str, Any]:
        """Feature tables as of the end of ds (point-in-time snapshots in the feature store)."""
        from recomart.features import build_features as stage
        from recomart.lake import Lake

        ctx = get_current_context()
        out = stage(Lake(), run_ds(), str(ctx["run_id"]))
        for asset in FEATURE_ASSETS:  # the training DAG reads ds from the Asset event
            table = out["tables"][asset.uri.rsplit("/", 1)[-1]]
            ctx["outlet_events"][asset].extra = {"ds": out["ds"], "version": table["version"],
                                                 "rows": table["rows"]}
        return {k: out[k] for k in ("ds", "as_of", "tables", "seconds", "read_versions",
                                    "written_versions")}

    build_features(published)


recomart_batch()
