"""The batch DAG end to end through Airflow (dag.test): generated shop + catalog API, then MovieLens."""

from __future__ import annotations

import pytest

from recomart.config import reset_settings
from recomart.lake import Lake
from recomart.tables import DATASETS

pytestmark = pytest.mark.slow


def _point_settings(monkeypatch, src, lake_root, api_url=None) -> None:
    monkeypatch.setenv("RECOMART_SOURCE_DIR", str(src))
    monkeypatch.setenv("RECOMART_LAKE_ROOT", str(lake_root))
    if api_url:
        monkeypatch.setenv("RECOMART_CATALOG_API_URL", api_url)
    else:
        monkeypatch.delenv("RECOMART_CATALOG_API_URL", raising=False)
    monkeypatch.setenv("RECOMART_CATALOG_PAGE_SIZE", "25")
    monkeypatch.setenv("RECOMART_HTTP_RETRIES", "1")
    reset_settings()


def _assert_reconciled(lake: Lake, ds: str) -> dict:
    summary = lake.read_json(lake.path("reports", f"ds={ds}", "validation_summary.json"))
    for name, d in summary["datasets"].items():
        assert d["rows_in"] == d["curated"] + d["quarantined"], name
        assert len(lake.read_table("curated", name)) == d["curated"], name
    assert set(summary["datasets"]) == set(DATASETS)
    return summary


def test_batch_dag_on_generated_data(airflow_db, tmp_path, monkeypatch):
    from tests.airflow_helpers import run_dag

    from recomart.sources.catalog_api import create_app, serve_in_background
    from recomart.sources.generator import generate

    src = tmp_path / "src"
    counts = generate(src, users=300, products=100, days=10, seed=3)
    app = create_app(src / "products.csv", faults={"http_500_pages": {2: 1}})
    with serve_in_background(app) as url:
        _point_settings(monkeypatch, src, tmp_path / "lake", url)
        run_dag("recomart_batch", "2024-06-30")
    lake = Lake(tmp_path / "lake")
    summary = _assert_reconciled(lake, "2024-06-30")
    products = summary["datasets"]["products"]
    assert products["curated"] == counts["products"]
    assert {i["source"] for i in products["inputs"]} == {"csv", "catalog_api"}
    assert products["reasons"] == {"superseded_by_api": counts["products"]}
    assert summary["datasets"]["clickstream"]["curated"] == counts["clickstream"]
    assert (lake.root / summary["gx_data_docs"]).is_file()
    reset_settings()


def test_batch_dag_on_movielens(airflow_db, movielens_dir, tmp_path, monkeypatch):
    from tests.airflow_helpers import run_dag

    from recomart.sources.movielens import write_movielens_sources

    src = tmp_path / "src"
    counts = write_movielens_sources(movielens_dir, src)
    _point_settings(monkeypatch, src, tmp_path / "lake")
    run_dag("recomart_batch", "2024-05-01")
    summary = _assert_reconciled(Lake(tmp_path / "lake"), "2024-05-01")
    assert summary["datasets"]["ratings"]["rows_in"] == counts["ratings"]
    assert summary["datasets"]["ratings"]["curated"] == counts["ratings"]
    reset_settings()
