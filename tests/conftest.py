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
# the per-user cache (compiled Data Docs templates): the tests' own, empty at every session start
os.environ["RECOMART_CACHE_DIR"] = str(_AIRFLOW_HOME / "cache")
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


# ---- object-storage lake: a real S3 API (moto in server mode) on a free loopback port ---------
S3_BUCKET = "recomart-test"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "recomart-test-key", "AWS_SECRET_ACCESS_KEY": "recomart-test-secret",
                  "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server for the session: ``{"endpoint": url, "bucket": name, "env": AWS_* env}``.

    Skips (with the reason) only when moto cannot start here."""
    from recomart.local_s3 import LocalS3Error, local_s3

    try:
        started = local_s3(S3_BUCKET, S3_CREDENTIALS)
        env = started.__enter__()
    except LocalS3Error as exc:
        pytest.skip(str(exc))
    try:
        yield {"endpoint": env["AWS_ENDPOINT_URL"], "bucket": S3_BUCKET, "env": env}
    finally:
        started.__exit__(None, None, None)


def point_at_s3(monkeypatch, s3_server, prefix: str) -> str:
    """Set the AWS_* env and RECOMART_LAKE_ROOT to ``s3://<bucket>/<prefix>``; returns the URI."""
    from recomart.config import reset_settings

    for name, value in s3_server["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    uri = f"s3://{s3_server['bucket']}/{prefix}"
    monkeypatch.setenv("RECOMART_LAKE_ROOT", uri)
    reset_settings()
    return uri


@pytest.fixture
def s3_lake(s3_server, monkeypatch, tmp_path):
    """A fresh lake under its own prefix of the moto bucket, wired through the settings (the
    machine-local state goes to ``tmp_path/state``)."""
    import uuid

    from recomart.config import reset_settings
    from recomart.lake import Lake

    monkeypatch.setenv("RECOMART_LOCAL_STATE_DIR", str(tmp_path / "state"))
    uri = point_at_s3(monkeypatch, s3_server, f"lake-{uuid.uuid4().hex[:12]}")
    yield Lake(uri)
    reset_settings()


@pytest.fixture(params=["local", "s3"])
def any_lake(request):
    """The same test on a local folder lake and on an ``s3://`` lake (moto)."""
    return request.getfixturevalue("lake" if request.param == "local" else "s3_lake")
