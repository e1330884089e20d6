"""Ingestion lands sources unchanged with a manifest, idempotently, and never leaves partial landings."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from recomart.ingestion import (
    RawLandingConflict,
    SourceMissingError,
    ingest_catalog,
    ingest_csv_sources,
    read_manifest,
)
from recomart.tables import DATASETS

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bad_input" / "rows"
DS = "2024-05-01"


@pytest.fixture
def source(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in DATASETS:
        shutil.copy(FIXTURE / f"{name}.csv", src / f"{name}.csv")
    return src


def _data_lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines()[1:] if line.strip())


def test_lands_each_dataset_unchanged_with_manifest(lake, source):
    out = ingest_csv_sources(lake, DS, source)
    for name in DATASETS:
        src = source / f"{name}.csv"
        manifest = read_manifest(lake, "csv", name, DS)
        landed = lake.root / manifest["path"]
        assert manifest["path"] == f"raw/csv/{name}/ds={DS}/{name}.csv"
        assert landed.read_bytes() == src.read_bytes()
        assert manifest["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert manifest["bytes"] == src.stat().st_size
        assert manifest["rows"] == _data_lines(src)
        assert (manifest["source"], manifest["dataset"], manifest["logical_date"]) == ("csv", name, DS)
        assert manifest["fetched_at"]
        assert out["datasets"][name]["status"] == "landed"


def test_rerun_same_bytes_is_a_noop(lake, source):
    ingest_csv_sources(lake, DS, source)
    folder = lake.path("raw", "csv", "ratings", f"ds={DS}")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    out = ingest_csv_sources(lake, DS, source)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert before == after
    assert {d["status"] for d in out["datasets"].values()} == {"unchanged"}


def test_changed_bytes_for_a_landed_date_fail_and_change_nothing(lake, source):
    ingest_csv_sources(lake, DS, source)
    manifest_before = read_manifest(lake, "csv", "orders", DS)
    with open(source / "orders.csv", "a") as fh:
        fh.write("9,1,101,1,1.00,2024-04-30T10:00:00Z\n")
    with pytest.raises(RawLandingConflict, match=r"raw/csv/orders/ds=2024-05-01"):
        ingest_csv_sources(lake, DS, source)
    assert read_manifest(lake, "csv", "orders", DS) == manifest_before
    # another date is a new landing
    assert ingest_csv_sources(lake, "2024-05-02", source)["datasets"]["orders"]["status"] == "landed"


def test_missing_source_file_names_it_and_lands_nothing(lake, source):
    (source / "ratings.csv").unlink()
    with pytest.raises(SourceMissingError, match=r"ratings\.csv"):
        ingest_csv_sources(lake, DS, source)
    assert not lake.path("raw").exists()


def test_missing_source_folder(lake, tmp_path):
    with pytest.raises(SourceMissingError, match="nowhere"):
        ingest_csv_sources(lake, DS, tmp_path / "nowhere")


def test_interrupted_landing_is_replaced(lake, source):
    folder = lake.path("raw", "csv", "users", f"ds={DS}")
    folder.mkdir(parents=True)
    (folder / "users.csv").write_bytes(b"half a fi")  # crash before the manifest was written
    ingest_csv_sources(lake, DS, source)
    assert (folder / "users.csv").read_bytes() == (source / "users.csv").read_bytes()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_catalog_skipped_without_url(lake):
    assert ingest_catalog(lake, DS, None)["status"] == "skipped"
    assert not lake.path("raw").exists()


def test_catalog_pages_landed_with_bad_pages_and_reused(lake, monkeypatch):
    import pandas as pd

    from recomart.config import reset_settings
    from recomart.sources.catalog_api import create_app, serve_in_background

    monkeypatch.setenv("RECOMART_CATALOG_PAGE_SIZE", "2")
    monkeypatch.setenv("RECOMART_HTTP_RETRIES", "1")
    reset_settings()
    products = pd.read_csv(FIXTURE / "catalog_api_products.csv")
    app = create_app(products, faults={"http_500_pages": {2: 1}, "malformed_pages": [3],
                                       "always_500_pages": [4]})
    with serve_in_background(app) as url:
        out = ingest_catalog(lake, DS, url)
        again = ingest_catalog(lake, DS, url)
    assert out["status"] == "landed" and again["status"] == "unchanged"
    assert out["rows"] == 4  # pages 1 and 2 (2 after one retry)
    lines = [json.loads(x) for x in (lake.root / out["path"]).read_text().splitlines()]
    status = {p["page"]: p["status"] for p in lines}
    assert status == {1: "ok", 2: "ok", 3: "malformed_json", 4: "http_error"}
    assert {b["reason"] for b in out["bad_pages"]} == {"malformed_json_page", "http_error_page"}
    assert out["sha256"] == hashlib.sha256((lake.root / out["path"]).read_bytes()).hexdigest()
