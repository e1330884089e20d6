"""Shared test fixtures.

Airflow reads its configuration when first imported, so a private AIRFLOW_HOME (SQLite) is set
here, before any test module imports Airflow. Each test gets its own lake via ``lake``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_ML = ROOT.parent / "shared" / "datasets" / "ml-latest-small"

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="recomart-airflow-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["RECOMART_RETRY_DELAY_SECONDS"] = "1"
# Lineage: the OpenLineage provider reads its transport once per process, before Airflow loads.
(_AIRFLOW_HOME / "openlineage").mkdir()
os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps({
    "type": "file", "log_file_path": str(_AIRFLOW_HOME / "openlineage" / "events.jsonl"),
    "append": True})
os.environ["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "recomart"
os.environ["AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD"] = "True"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB for this test session (real Airflow, SQLite)."""
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                   check=True, capture_output=True, env=dict(os.environ))
    return _AIRFLOW_HOME


@pytest.fixture
def lake(tmp_path, monkeypatch):
    """A fresh lake in a temporary folder, wired through the settings like production."""
    from recomart.config import reset_settings
    from recomart.lake import Lake

    root = tmp_path / "lake"
    monkeypatch.setenv("RECOMART_LAKE_ROOT", str(root))
    reset_settings()
    yield Lake(root)
    reset_settings()


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    if not (SHARED_ML / "ratings.csv").exists():
        pytest.skip(f"MovieLens ml-latest-small not found at {SHARED_ML} (../shared absent)")
    return SHARED_ML
