"""The batch DAG end to end through Airflow (dag.test): generated shop + catalog API, then MovieLens."""

from __future__ import annotations

import pytest

from recomart.config import reset_settings
from recomart.lake import Lake
from recomart.tables import DATASETS

pytestmark = pytest.mark.slow


@pytest.fixture
def point_settings(monkeypatch):
    """Points the settings at a source folder, a lake and (optionally) the catalog API.

    The environment goes through ``monkeypatch`` and the cached settings are dropped before and
    after the test, so a failing test never leaves stale settings behind for the next one.
    """
    monkeypatch.setenv("RECOMART_CATALOG_PAGE_SIZE", "25")
    monkeypatch.setenv("RECOMART_HTTP_RETRIES", "1")
    monkeypatch.delenv("RECOMART_CATALOG_API_URL", raising=False)
    reset_settings()

    def point(src, lake_root, api_url=None) -> None:
        monkeypatch.setenv("RECOMART_SOURCE_DIR", str(src))
        monkeypatch.setenv("RECOMART_LAKE_ROOT", str(lake_root))
        if api_url:
            monkeypatch.setenv("RECOMART_CATALOG_API_URL", api_url)
        else:
            monkeypatch.delenv("RECOMART_CATALOG_API_URL", raising=False)
        reset_settings()

    yield point
    reset_settings()


def _assert_reconciled(lake: Lake, ds: str) -> dict:
    summary = lake.read_json(lake.path("reports", f"ds={ds}", "validation_summary.json"))
    for name, d in summary["datasets"].items():
        assert d["rows_in"] == d["curated"] + d["quarantined"], name
        assert len(lake.read_table("curated", name)) == d["curated"], name
    assert set(summary["datasets"]) == set(DATASETS)
    return summary


def test_batch_dag_on_generated_data(airflow_db, tmp_path, point_settings):
    from tests.airflow_helpers import run_dag

    from recomart.sources.catalog_api import create_app, serve_in_background
    from recomart.sources.generator import generate

    src = tmp_path / "src"
    counts = generate(src, users=300, products=100, days=10, seed=3)
    app = create_app(src / "products.csv", faults={"http_500_pages": {2: 1}})
    with serve_in_background(app) as url:
        point_settings(src, tmp_path / "lake", url)
        run_dag("recomart_batch", "2024-06-30")
    lake = Lake(tmp_path / "lake")
    summary = _assert_reconciled(lake, "2024-06-30")
    products = summary["datasets"]["products"]
    assert products["curated"] == counts["products"]
    assert {i["source"] for i in products["inputs"]} == {"csv", "catalog_api"}
    assert products["reasons"] == {"superseded_by_api": counts["products"]}
    assert summary["datasets"]["clickstream"]["curated"] == counts["clickstream"]
    assert (lake.root / summary["gx_data_docs"]).is_file()


def test_batch_dag_on_movielens(airflow_db, movielens_dir, tmp_path, point_settings):
    from tests.airflow_helpers import run_dag

    from recomart.sources.movielens import write_movielens_sources

    src = tmp_path / "src"
    counts = write_movielens_sources(movielens_dir, src)
    point_settings(src, tmp_path / "lake")
    run_dag("recomart_batch", "2024-05-01")
    summary = _assert_reconciled(Lake(tmp_path / "lake"), "2024-05-01")
    assert summary["datasets"]["ratings"]["rows_in"] == counts["ratings"]
    assert summary["datasets"]["ratings"]["curated"] == counts["ratings"]
