"""The batch DAG through Airflow (dag.test) emits OpenLineage events that link raw → curated → features.

Airflow's OpenLineage provider writes the events (file transport); nothing here writes lineage by
hand. The transport must be configured before the provider's plugin first loads in this process,
and the provider caches its client for the process, so the test session shares one event file
(set here at collection unless the environment already configures OpenLineage); each run is told
apart by its Airflow run id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from recomart.config import reset_settings

pytestmark = pytest.mark.slow

DS = "2024-06-30"


def _events_file() -> Path:
    """The file transport tests/conftest.py configures for the whole session."""
    transport = json.loads(os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    return Path(transport["log_file_path"])


def _land_speed_files(lake) -> None:
    """Two landed speed files for ``DS`` (as the Faust worker writes them), merged by the run."""
    from datetime import UTC, datetime

    from recomart.streaming.sink import Landed, write_batch

    ts = datetime.fromisoformat(f"{DS}T12:00:00+00:00").astimezone(UTC)
    for partition in (0, 1):
        rows = [Landed({"event_id": f"speed-{partition}-{i}", "user_id": 1 + i, "product_id": 1 + i,
                        "event_type": "view", "session_id": f"s{partition}", "timestamp": ts,
                        "price": None}, partition, i, None) for i in range(5)]
        write_batch(lake, "clickstream", rows, {partition: (0, 4)})


@pytest.fixture(scope="module")
def batch_run(airflow_db, tmp_path_factory):
    """One real batch run on a small generated shop, shared by this module's tests."""
    from tests.airflow_helpers import run_dag

    from recomart.lake import Lake
    from recomart.sources.generator import generate

    tmp = tmp_path_factory.mktemp("lineage")
    generate(tmp / "src", users=200, products=60, days=10, seed=5)
    _land_speed_files(Lake(tmp / "lake"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECOMART_SOURCE_DIR", str(tmp / "src"))
        mp.setenv("RECOMART_LAKE_ROOT", str(tmp / "lake"))
        mp.delenv("RECOMART_CATALOG_API_URL", raising=False)
        reset_settings()
        dagrun = run_dag("recomart_batch", DS)
        yield Lake(tmp / "lake"), dagrun.run_id
    reset_settings()


def test_batch_lineage_links_raw_files_to_curated_to_features(batch_run):
    from recomart.features.store import FeatureStore
    from recomart.ingestion.landing import read_manifest
    from recomart.lake import sha256_file
    from recomart.lineage import FACET, LineageGraph, leaves, read_events

    lake, run_id = batch_run
    events = [e for e in read_events(_events_file())
              if (e.get("run", {}).get("facets", {}).get("airflow", {}).get("dagRun", {})
                  .get("run_id")) == run_id]
    graph = LineageGraph(events)
    by_task = {r.job.split(".", 1)[1]: r for r in graph.runs if r.job.startswith("recomart_batch.")}
    # every task of the run reported a finished run; tasks with lake Assets name their datasets
    assert set(by_task) >= {"merge_speed_layer", "ingest_csv", "ingest_catalog", "validate",
                            "quality_gate", "build_features"}
    assert {o.name for o in by_task["ingest_csv"].outputs} >= {
        f"/raw/csv/users/ds={DS}/users.csv", f"/raw/csv/clickstream/ds={DS}/clickstream.csv"}

    tree = graph.upstream(graph.resolve("features/user_features"))
    assert tree["run"]["job"] == "recomart_batch.build_features"
    assert tree["run"]["airflow_run_id"] == run_id
    store = FeatureStore(lake)
    snapshot = store.registry()["tables"]["user_features"]["snapshots"][DS]
    assert tree["facets"][FACET]["version"] == snapshot["version"]
    assert tree["facets"]["outputStatistics"]["rowCount"] == snapshot["rows"]
    assert {f["name"] for f in tree["facets"]["schema"]["fields"]} >= {"user_id", "recency_days",
                                                                     "feature_timestamp"}

    curated = {c["name"]: c for c in tree["inputs"]}
    assert set(curated) == {f"/curated/{n}" for n in
                            ("users", "products", "orders", "ratings", "clickstream")}
    for name, node in curated.items():
        assert node["run"]["job"] == "recomart_batch.validate"
        assert node["run"]["airflow_run_id"] == run_id
        assert node["facets"][FACET]["version"] == lake.table_version("curated", name.split("/")[-1])

    raw = {leaf["name"]: leaf for leaf in leaves(curated["/curated/users"])}
    raw_users = f"/raw/csv/users/ds={DS}/users.csv"
    assert raw_users in raw
    assert raw[raw_users]["run"]["job"] == "recomart_batch.ingest_csv"
    manifest = read_manifest(lake, "csv", "users", DS)
    facts = raw[raw_users]["facets"][FACET]
    assert facts["sha256"] == manifest["sha256"] == sha256_file(lake.root / manifest["path"])
    assert facts["rows"] == manifest["rows"]


def test_speed_lineage_reaches_the_landed_files_with_checksums(batch_run):
    from recomart.lake import sha256_file
    from recomart.lineage import FACET, LineageGraph, read_events, walk
    from recomart.streaming.sink import list_files

    lake, run_id = batch_run
    landed = {f"/{p.relative_to(lake.root).as_posix()}": sha256_file(p) for p in list_files(lake)}
    assert len(landed) == 2
    events = [e for e in read_events(_events_file())
              if (e.get("run", {}).get("facets", {}).get("airflow", {}).get("dagRun", {})
                  .get("run_id")) == run_id]
    graph = LineageGraph(events)
    merge = next(r for r in graph.runs if r.job == "recomart_batch.merge_speed_layer")
    assert {i.name: i.lake.get("sha256") for i in merge.inputs} == landed
    assert all(i.lake["kind"] == "speed_file" and i.lake["rows"] == 5 for i in merge.inputs)
    (master,) = merge.outputs
    assert master.lake["version"] == lake.table_version("speed", "clickstream_master")
    assert master.lake["extra"]["version_source"] == "task"

    tree = graph.upstream(graph.resolve("curated/clickstream"), airflow_run_id=run_id)
    reached = {n["name"]: (n["facets"].get(FACET) or {}).get("sha256") for n in walk(tree)
               if n["name"].startswith("/speed/clickstream/")}
    assert reached == landed


def test_lineage_cli_prints_the_tree_with_checksums(batch_run):
    from typer.testing import CliRunner

    from recomart.cli import app
    from recomart.ingestion.landing import read_manifest

    lake, run_id = batch_run
    target = lake.path("lineage", "events", "events.jsonl")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_events_file().read_text(encoding="utf-8"), encoding="utf-8")
    result = CliRunner().invoke(app, ["lineage", "features/item_features", "--run-id", run_id],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "/features/item_features" in text and "recomart_batch.build_features" in text
    assert read_manifest(lake, "csv", "products", DS)["sha256"] in text
    assert run_id in text
