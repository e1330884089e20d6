"""The batch layer's integrity promises, through Airflow itself (``dag.test()``).

- write-audit-publish: a run whose quality gate fails keeps its quarantine, summary and PDFs,
  publishes nothing, skips the features and emits no feature Asset event (training not triggered);
- deterministic failures fail at once (no retries burnt), transient ones keep their retries;
- a full re-run of a date gives identical curated and feature outputs;
- the catalog URL can come from the Airflow connection ``recomart_catalog_api``.
"""

from __future__ import annotations

import csv
import hashlib
import json

import pyarrow as pa
import pytest

from recomart.config import reset_settings
from recomart.lake import Lake
from recomart.orchestration import FEATURE_TABLES
from recomart.tables import DATASETS

pytestmark = pytest.mark.slow
GOOD, BAD = "2024-06-29", "2024-06-30"


@pytest.fixture
def shop(tmp_path, monkeypatch):
    from recomart.sources.generator import generate

    src = tmp_path / "src"
    generate(src, users=200, products=60, days=10, seed=5)
    monkeypatch.setenv("RECOMART_SOURCE_DIR", str(src))
    monkeypatch.setenv("RECOMART_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.delenv("RECOMART_CATALOG_API_URL", raising=False)
    reset_settings()
    yield src, Lake(tmp_path / "lake")
    reset_settings()


def _spoil_ratings(src, share: float = 0.3) -> int:
    """Give ``share`` of the ratings an out-of-range value; returns how many."""
    path = src / "ratings.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    bad = int(len(rows) * share)
    for row in rows[:bad]:
        row["rating"] = "9.0"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), quoting=csv.QUOTE_NONNUMERIC)
        writer.writeheader()
        writer.writerows(rows)
    return bad


def _feature_events(run_id: str) -> list:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(AssetModel.uri).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
                               .where(AssetEvent.source_run_id == run_id)).all()
    return [r[0] for r in rows if "/features/" in r[0]]


def test_a_failed_gate_publishes_nothing_and_triggers_nothing(airflow_db, shop):
    from tests.airflow_helpers import run_dag, run_dag_states

    from recomart.curated import published_pointer, published_version
    from recomart.features.store import FeatureStore

    src, lake = shop
    good = run_dag("recomart_batch", GOOD)
    assert sorted(_feature_events(good.run_id)) == sorted(
        f"file://recomart-lake/features/{t}" for t in FEATURE_TABLES)
    published = published_pointer(lake, GOOD)["versions"]

    spoiled = _spoil_ratings(src)
    dagrun, states = run_dag_states("recomart_batch", BAD)
    assert dagrun.state == "failed"
    assert states["quality_gate"] == ("failed", 1)  # DataQualityError: failed at once, not retried
    assert states["publish_curated"][0] == states["build_features"][0] == "upstream_failed"
    assert states["validate"][0] == states["quality_report"][0] == states["eda_report"][0] == "success"

    # staged, audited, not published: readers as of BAD still see GOOD's versions
    assert published_pointer(lake, BAD)["logical_date"] == GOOD
    for name in DATASETS:
        assert published_version(lake, name, BAD) == published[name]
        assert lake.table_version("curated", name) > published[name]  # the rejected snapshot exists
    summary = lake.read_json(lake.path("reports", f"ds={BAD}", "validation_summary.json"))
    assert summary["status"] == "fail"
    assert summary["datasets"]["ratings"]["reasons"]["rating_out_of_range"] == spoiled
    quarantine = lake.read_table("quarantine", "ratings")
    assert (quarantine[quarantine["_ds"] == BAD]["reason"] == "rating_out_of_range").sum() == spoiled
    for pdf in ("data_quality.pdf", "eda.pdf"):
        assert lake.path("reports", f"ds={BAD}", pdf).stat().st_size > 10_000
    # no features for BAD, and no Asset event: the training DAG is not triggered
    assert list(FeatureStore(lake).snapshots("user_features")["_ds"]) == [GOOD]
    assert _feature_events(dagrun.run_id) == []


def test_a_conflicting_raw_file_fails_at_once_with_what_to_do(airflow_db, shop):
    from tests.airflow_helpers import run_dag, run_dag_states

    src, _lake = shop
    run_dag("recomart_batch", GOOD)
    with open(src / "users.csv", "a", encoding="utf-8") as fh:
        fh.write('999999,"2024-01-01","F",30,"Late"\n')
    dagrun, states = run_dag_states("recomart_batch", GOOD)
    assert dagrun.state == "failed"
    assert states["ingest_csv"] == ("failed", 1)  # retries=3, but a conflict is not retried


def test_raw_conflict_message_says_what_to_do(lake, tmp_path):
    from recomart.ingestion import ingest_csv_sources
    from recomart.ingestion.landing import RawLandingConflict
    from recomart.sources.generator import generate

    first, second = tmp_path / "a", tmp_path / "b"
    generate(first, users=50, products=20, days=5, seed=1)
    generate(second, users=50, products=20, days=5, seed=2)
    ingest_csv_sources(lake, GOOD, first)
    with pytest.raises(RawLandingConflict) as info:
        ingest_csv_sources(lake, GOOD, second)
    message = str(info.value)
    assert f"point RECOMART_SOURCE_DIR at {first}" in message
    assert "Raw landings are immutable" in message and "delete" in message


def _content_digest(table: pa.Table, keys: list[str]) -> str:
    """sha256 of a table's rows in key order, in Arrow IPC form (byte-level identity of content)."""
    table = table.sort_by([(k, "ascending") for k in keys])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _outputs(lake: Lake, ds: str) -> dict[str, str]:
    from recomart.curated import published_version
    from recomart.features.definitions import TABLES

    out = {}
    for name, spec in DATASETS.items():
        table = lake.read_arrow("curated", name, version=published_version(lake, name, ds))
        out[f"curated/{name}"] = _content_digest(table, list(spec.key))
    for name, spec in TABLES.items():
        table = lake.read_arrow("features", name).drop_columns(["_run_id"])
        out[f"features/{name}"] = _content_digest(table, [*spec.entity, "_ds"])
    return out


def test_a_rerun_gives_identical_outputs_and_the_catalog_comes_from_the_connection(
        airflow_db, shop, monkeypatch):
    from tests.airflow_helpers import run_dag

    from recomart.sources.catalog_api import create_app, serve_in_background

    src, lake = shop
    with serve_in_background(create_app(src / "products.csv")) as url:
        host, port = url.split("://", 1)[1].rstrip("/").split(":")
        monkeypatch.setenv("AIRFLOW_CONN_RECOMART_CATALOG_API", json.dumps(
            {"conn_type": "http", "host": host, "port": int(port)}))
        first_run = run_dag("recomart_batch", GOOD)
        first = _outputs(lake, GOOD)
        manifest = lake.read_json(lake.path("raw", "catalog_api", "products", f"ds={GOOD}",
                                            "_manifest.json"))
        assert manifest["origin"].rstrip("/") == f"http://{host}:{port}"
        run_dag("recomart_batch", GOOD)
    assert _outputs(lake, GOOD) == first
    summary = lake.read_json(lake.path("reports", f"ds={GOOD}", "validation_summary.json"))
    assert summary["run_id"] != first_run.run_id  # the second run really re-validated
    assert {i["source"] for i in summary["datasets"]["products"]["inputs"]} == {"catalog_api", "csv"}
