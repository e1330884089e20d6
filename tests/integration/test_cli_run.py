"""`recomart run` through Airflow (`airflow dags test`): historic dates run every task, and a run in
which Airflow schedules nothing is an error, not "all tasks succeeded"."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from recomart.lake import Lake
from recomart.tables import DATASETS

pytestmark = pytest.mark.slow
EXE = Path(sys.executable).parent / "recomart"


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), "run", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_historic_date_runs_every_task_and_an_empty_run_fails(airflow_db, tmp_path):
    from recomart.sources.generator import generate

    src, lake_root = tmp_path / "src", tmp_path / "lake"
    counts = generate(src, users=150, products=40, days=20, seed=9, end_date=date(2017, 6, 30))
    env = {**os.environ, "RECOMART_SOURCE_DIR": str(src), "RECOMART_LAKE_ROOT": str(lake_root),
           "COLUMNS": "400"}
    env.pop("RECOMART_CATALOG_API_URL", None)

    proc = _run(env, "recomart_batch", "--date", "2017-06-30")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "all 9 tasks ran and succeeded" in out and "build_features" in out
    lake = Lake(lake_root)
    summary = lake.read_json(lake.path("reports", "ds=2017-06-30", "validation_summary.json"))
    assert summary["status"] == "pass"
    for name in DATASETS:
        assert summary["datasets"][name]["curated"] == counts[name], name
        assert len(lake.read_table("curated", name)) == counts[name], name

    # before the DAG's start date (1970-01-01) Airflow creates the run but no task instance
    proc = _run(env, "recomart_batch", "--date", "1969-12-31")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "has no task instances" in out and "no work was done" in out
    assert not lake.path("raw", "csv", "users", "ds=1969-12-31").exists()
