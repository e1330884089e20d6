"""Lineage records the Delta version a task read, not the latest one when it finished.

A probe DAG (built here, run through Airflow's own ``dag.test()`` with the OpenLineage provider and
the RecoMart extractor) reads ``curated/users`` at one version while another writer commits a new
version during the task. The COMPLETE event must name the version read. A task that reports no
versions is described at the latest version, and its facet says so.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from recomart.config import reset_settings

pytestmark = pytest.mark.slow


def _events(run_id: str) -> list[dict]:
    from recomart.lineage import read_events

    path = Path(json.loads(os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"])["log_file_path"])
    return [e for e in read_events(path) if e.get("eventType") == "COMPLETE"
            and e["run"]["facets"].get("airflow", {}).get("dagRun", {}).get("run_id") == run_id]


PROBE_DAG = '''
from datetime import UTC, datetime

import pandas as pd
from airflow.sdk import Asset, dag, task

from recomart.orchestration import lake_asset

USERS = Asset(**lake_asset("curated", "users"))


@dag(dag_id="recomart_lineage_probe", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC),
     catchup=False, tags=["test"])
def recomart_lineage_probe():
    @task(inlets=[USERS])
    def read_while_another_writer_commits() -> dict:
        from recomart.lake import Lake

        lake = Lake()
        version = lake.table_version("curated", "users")
        rows = len(lake.read_table("curated", "users", version=version))
        lake.write_table("curated", "users", pd.DataFrame({"user_id": [99], "name": ["late"]}),
                         mode="append")  # a commit by someone else while this task runs
        return {"rows": rows, "read_versions": {"curated/users": version}}

    @task(inlets=[USERS])
    def reports_no_versions() -> dict:
        return {"rows": 0}

    read_while_another_writer_commits() >> reports_no_versions()


recomart_lineage_probe()
'''


def _probe_dag(folder: Path, monkeypatch):
    """The probe DAG as a file in its own bundle (``dag.test()`` loads DAGs from bundles)."""
    from airflow.dag_processing.dagbag import DagBag
    from tests.airflow_helpers import ROOT

    folder.mkdir()
    (folder / "recomart_lineage_probe.py").write_text(PROBE_DAG, encoding="utf-8")
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([
        {"name": "dags-folder", "classpath": local, "kwargs": {"path": str(ROOT / "dags")}},
        {"name": "lineage-probe", "classpath": local, "kwargs": {"path": str(folder)}}]))
    bag = DagBag(dag_folder=str(folder))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["recomart_lineage_probe"]


def test_a_commit_during_a_task_does_not_change_the_recorded_input_version(airflow_db, tmp_path,
                                                                            monkeypatch):
    from recomart.lake import Lake
    from recomart.lineage import FACET

    monkeypatch.setenv("RECOMART_LAKE_ROOT", str(tmp_path / "lake"))
    reset_settings()
    lake = Lake(tmp_path / "lake")
    lake.write_table("curated", "users", pd.DataFrame({"user_id": [1, 2], "name": ["a", "b"]}))
    lake.write_table("curated", "users", pd.DataFrame({"user_id": [3], "name": ["c"]}), mode="append")
    assert lake.table_version("curated", "users") == 1

    dagrun = _probe_dag(tmp_path / "dags", monkeypatch).test(logical_date=datetime(2024, 6, 30, tzinfo=UTC))
    reset_settings()
    assert dagrun.state == "success"
    assert lake.table_version("curated", "users") == 2  # the other writer did commit

    by_task = {e["job"]["name"].split(".", 1)[1]: e for e in _events(dagrun.run_id)}
    (read,) = by_task["read_while_another_writer_commits"]["inputs"]
    assert read["name"] == "/curated/users"
    assert read["facets"]["version"]["datasetVersion"] == "1"
    assert read["facets"][FACET]["version"] == 1
    assert read["facets"][FACET]["extra"]["version_source"] == "task"
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == 3  # rows of version 1, not 4

    (latest,) = by_task["reports_no_versions"]["inputs"]
    assert latest["facets"][FACET]["version"] == 2
    assert latest["facets"][FACET]["extra"]["version_source"] == "latest_at_completion"
