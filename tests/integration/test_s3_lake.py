"""The lake on object storage, end to end against a real S3 API (moto in server mode).

With ``RECOMART_LAKE_ROOT=s3://…``, ``recomart run recomart_batch --date D`` (a subprocess, as a
user runs it) lands, validates, reports and builds features entirely in the bucket;
``recomart run recomart_training --date D`` publishes there (models and their artifacts in the
bucket too); the serving batch view loads from it; and nothing is written to a local lake folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from recomart.tables import DATASETS

pytestmark = pytest.mark.slow
DS = "2024-06-30"
PROJECT_LAKE = Path(__file__).resolve().parents[2] / "recomart_lake"


def _local_files(*folders: Path) -> set[str]:
    return {str(p) for f in folders if f.exists() for p in f.rglob("*") if p.is_file()}


def _bucket_keys(s3_server, lake) -> set[str]:
    prefix = lake.root.path.split("/", 1)[1]
    return {k.split(prefix + "/", 1)[1] for k in lake.fs.find(lake.root.path)}


@pytest.fixture
def shop(tmp_path, monkeypatch):
    from recomart.config import reset_settings
    from recomart.sources.generator import generate

    src = tmp_path / "src"
    counts = generate(src, users=250, products=60, days=20, seed=5, end_date=date(2024, 6, 30))
    monkeypatch.setenv("RECOMART_SOURCE_DIR", str(src))
    monkeypatch.delenv("RECOMART_CATALOG_API_URL", raising=False)
    monkeypatch.delenv("RECOMART_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    return counts


def recomart_run(dag_id: str) -> None:
    """`recomart run <dag> --date DS` as a user runs it (the env points at the bucket); the CLI
    itself fails when a task did not run, and names every task that did."""
    proc = subprocess.run([str(Path(sys.executable).parent / "recomart"), "run", dag_id, "--date", DS],
                          env={**os.environ, "COLUMNS": "400"}, capture_output=True, text=True,
                          timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    ran = re.search(r"all (\d+) tasks ran and succeeded", out)
    assert ran and int(ran.group(1)) >= 5, out[-3000:]


def test_batch_and_training_dags_and_the_serving_view_on_s3(airflow_db, s3_lake, s3_server, shop,
                                                            tmp_path):
    from recomart import publishing, registry
    from recomart.config import get_settings
    from recomart.serving.batch_view import load_view

    lake = s3_lake
    before = _local_files(PROJECT_LAKE)
    recomart_run("recomart_batch")

    summary = lake.read_json(lake.path("reports", f"ds={DS}", "validation_summary.json"))
    assert summary["status"] == "pass"
    for name in DATASETS:  # every source row curated, in the bucket's Delta tables
        assert summary["datasets"][name]["curated"] == shop[name], name
        assert len(lake.read_table("curated", name)) == shop[name], name
    keys = _bucket_keys(s3_server, lake)
    for name in DATASETS:
        assert f"raw/csv/{name}/ds={DS}/_manifest.json" in keys
        assert f"raw/csv/{name}/ds={DS}/{name}.csv" in keys
    for report in ("data_quality.pdf", "eda.pdf", "validation_summary.json", "gx_data_docs/index.html"):
        assert f"reports/ds={DS}/{report}" in keys, report
    assert lake.read_bytes(lake.path("reports", f"ds={DS}", "data_quality.pdf"))[:4] == b"%PDF"
    assert f"curated/_published/ds={DS}.json" in keys
    assert set(lake.list_tables("features")) >= {"user_features", "item_features"}
    assert lake.table_stats("features", "user_features")["rows"] == shop["users"]
    assert any(k.startswith("features/") and k.endswith(".json") for k in keys)  # the registry

    recomart_run("recomart_training")
    latest = publishing.read_latest(lake)
    assert latest is not None and latest["version"] == 1
    keys = _bucket_keys(s3_server, lake)
    for output in publishing.OUTPUTS:
        assert latest["outputs"][output] in keys
    assert "serving/latest.json" in keys and f"reports/ds={DS}/model.pdf" in keys
    champion, _ = registry.get_champion(latest["model"])
    run = registry.client().get_run(champion.run_id)
    assert run.info.artifact_uri.startswith(f"{get_settings().lake_root}/mlflow/artifacts/")
    assert any(k.startswith("mlflow/artifacts/") and k.endswith("model.pdf") for k in keys)

    view = load_view(lake)  # what a serving replica on another machine loads
    assert (view.model, view.version) == (latest["model"], 1)
    assert len(view.user_recs) == shop["users"] and len(view.similar) > 0

    # nothing in a local lake: not in the project's folder, not in the working directory
    assert _local_files(PROJECT_LAKE) == before
    local = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*") if p.is_file()}
    assert local <= {"src", "state"}, local
    state = {p.relative_to(tmp_path / "state").as_posix() for p in (tmp_path / "state").rglob("*")
             if p.is_file()}
    assert state <= {"mlflow/mlflow.db"}, state  # the MLflow DB is machine-local (documented)
