"""
### RecoMart batch layer

Daily batch run for one logical date `ds`:

1. **merge_speed_layer**: merge the Faust speed-zone landings since the last watermark into Delta
   `speed/clickstream_master` (dedup by `event_id`; re-running merges nothing new).
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
6. **build_features**: user, item and user–item features as of the end of `ds` into the feature
   store (Delta `features/<table>`, one snapshot per date, point-in-time retrievable); its outlets
   (the feature Assets) trigger the training DAG.

Lineage: every task declares its lake Assets, so Airflow's OpenLineage provider emits its inputs
and outputs (raw files with sha256, Delta versions, schemas, row counts) to the lake's
`lineage/events/events.jsonl` (or Marquez): `recomart lineage features/user_features`.

Every task is idempotent for its date; re-running a date never duplicates rows.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, dag, get_current_context, task

from recomart.orchestration import BATCH_DAG_ID, DEFAULT_ARGS, FEATURES_ASSETS, START_DATE, lake_asset

CURATED = ("users", "products", "orders", "ratings", "clickstream")
CATALOG_CONN_ID = "recomart_catalog_api"
# Lineage: lake Assets on every task, so Airflow's OpenLineage provider (with the extractor in
# plugins/recomart_openlineage.py) reports each task's inputs/outputs with their lake facets.
RAW_CSV = [Asset(**lake_asset("raw", f"csv/{n}")) for n in CURATED]
RAW_CATALOG = Asset(**lake_asset("raw", "catalog_api/products"))
SPEED_MASTER = Asset(**lake_asset("speed", "clickstream_master"))
CURATED_ASSETS = [Asset(**lake_asset("curated", n)) for n in CURATED]
FEATURE_ASSETS = [Asset(**a) for a in FEATURES_ASSETS.values()]


def _ds() -> str:
    ctx = get_current_context()
    if ctx.get("logical_date") is not None:
        return ctx["logical_date"].date().isoformat()
    return ctx["dag_run"].run_after.date().isoformat()


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


@dag(
    dag_id=BATCH_DAG_ID,
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "batch", "ingestion", "validation"],
    doc_md=__doc__,
)
def recomart_batch() -> None:
    @task(inlets=[Asset(**lake_asset("speed", "clickstream"))], outlets=[SPEED_MASTER])
    def merge_speed_layer() -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.streaming.merge import merge_speed_events

        return merge_speed_events(Lake(), _ds())

    @task(retries=3, outlets=RAW_CSV)
    def ingest_csv() -> dict[str, Any]:
        from recomart.config import get_settings
        from recomart.ingestion import ingest_csv_sources
        from recomart.lake import Lake

        out = ingest_csv_sources(Lake(), _ds(), get_settings().source_dir)
        return {"rows": out["rows"], "datasets": {n: {"rows": m["rows"], "sha256": m["sha256"],
                                                      "path": m["path"], "status": m["status"]}
                                                  for n, m in out["datasets"].items()}}

    @task(retries=3, outlets=[RAW_CATALOG])
    def ingest_catalog() -> dict[str, Any]:
        from recomart.ingestion import ingest_catalog as stage
        from recomart.lake import Lake

        out = stage(Lake(), _ds(), _catalog_url())
        return {k: out.get(k) for k in ("status", "path", "rows", "sha256", "bad_pages", "reason")}

    @task(inlets=[*RAW_CSV, RAW_CATALOG, SPEED_MASTER], outlets=CURATED_ASSETS)
    def validate(speed: dict, csv: dict, catalog: dict) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.validation import validate_all

        summary = validate_all(Lake(), _ds(), str(get_current_context()["run_id"]))
        return {"status": summary["status"], "datasets": {
            n: {k: d[k] for k in ("rows_in", "curated", "quarantined", "bad_ratio", "status",
                                  "curated_version")} for n, d in summary["datasets"].items()}}

    @task(inlets=CURATED_ASSETS, outlets=[Asset(**lake_asset("reports", "latest/data_quality.pdf"))])
    def quality_report(validation: dict) -> str:
        from recomart.lake import Lake
        from recomart.reports.quality import build_quality_report

        return str(build_quality_report(Lake(), _ds()))

    @task(inlets=CURATED_ASSETS, outlets=[Asset(**lake_asset("reports", "latest/eda.pdf"))])
    def eda_report(validation: dict) -> str:
        from recomart.lake import Lake
        from recomart.reports.eda import build_eda_report

        return str(build_eda_report(Lake(), _ds()))

    @task(retries=1, inlets=CURATED_ASSETS)
    def quality_gate(validation: dict) -> dict[str, Any]:
        from recomart.lake import Lake
        from recomart.validation import quality_gate as gate

        return gate(Lake(), _ds())

    speed = merge_speed_layer()
    csv = ingest_csv()
    catalog = ingest_catalog()
    speed >> [csv, catalog]
    validation = validate(speed, csv, catalog)
    reports = [quality_report(validation), eda_report(validation)]
    gate_result = quality_gate(validation)
    reports >> gate_result

    @task(inlets=CURATED_ASSETS, outlets=FEATURE_ASSETS)
    def build_features(gate: dict) -> dict[str, Any]:
        """Feature tables as of the end of ds (point-in-time snapshots in the feature store)."""
        from recomart.features import build_features as stage
        from recomart.lake import Lake

        ctx = get_current_context()
        out = stage(Lake(), _ds(), str(ctx["run_id"]))
        for asset in FEATURE_ASSETS:  # the training DAG reads ds from the Asset event
            table = out["tables"][asset.uri.rsplit("/", 1)[-1]]
            ctx["outlet_events"][asset].extra = {"ds": out["ds"], "version": table["version"],
                                                 "rows": table["rows"]}
        return {k: out[k] for k in ("ds", "as_of", "tables", "seconds")}

    build_features(gate_result)


recomart_batch()
