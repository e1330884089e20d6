"""Catalog API + client over a real uvicorn server on a free loopback port, faults included."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import httpx
import pandas as pd
import pytest

from recomart.sources.catalog_api import create_app, serve_in_background
from recomart.sources.catalog_client import CatalogUnavailable, fetch_catalog
from recomart.sources.generator import generate

FAST = {"timeout": 5.0, "retries": 3, "backoff": 0.01}


@pytest.fixture(scope="module")
def products_csv(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("catalog")
    generate(out, users=20, products=120, days=2, seed=3)
    return out / "products.csv"


@pytest.fixture(scope="module")
def products(products_csv) -> pd.DataFrame:
    return pd.read_csv(products_csv)


def serve(products_csv: Path, faults: dict | None = None):
    return serve_in_background(create_app(products_csv, faults=faults))


def test_pagination_returns_every_product_once(products_csv, products):
    with serve(products_csv) as url:
        fetched = fetch_catalog(url, page_size=7, **FAST)
    assert fetched.complete and fetched.total == len(products)
    assert [p.page for p in fetched.pages] == list(range(1, math.ceil(len(products) / 7) + 1))
    assert all(p.status == "ok" and p.http_status == 200 and p.attempts == 1 for p in fetched.pages)
    assert sum(p.items for p in fetched.pages) == len(products)
    got = pd.DataFrame(fetched.rows)
    assert list(got.columns) == list(products.columns)
    pd.testing.assert_frame_equal(got.sort_values("product_id").reset_index(drop=True),
                                  products.sort_values("product_id").reset_index(drop=True),
                                  check_dtype=False)
    assert all(p.raw_text and p.raw_text.startswith("{") for p in fetched.pages)


def test_page_shape_and_single_product(products):
    app = create_app(products)
    with serve_in_background(app) as url:
        first = httpx.get(f"{url}/products", params={"page": 1, "page_size": 50}).json()
        last = httpx.get(f"{url}/products", params={"page": 3, "page_size": 50}).json()
        one = httpx.get(f"{url}/products/{int(products.product_id.iloc[5])}")
        missing = httpx.get(f"{url}/products/999999")
        health = httpx.get(f"{url}/health").json()
    assert (first["page"], first["page_size"], first["total"], first["next_page"]) == (1, 50, 120, 2)
    assert len(first["items"]) == 50
    assert last["next_page"] is None and len(last["items"]) == 20
    assert one.status_code == 200 and one.json()["title"] == products.title.iloc[5]
    assert missing.status_code == 404
    assert health == {"status": "ok", "products": 120}


def test_nulls_are_json_null(products_csv, products):
    with serve(products_csv) as url:
        rows = fetch_catalog(url, page_size=500, **FAST).rows
    no_brand = products.brand.isna().sum()
    assert sum(r["brand"] is None for r in rows) == no_brand


def test_transient_500_is_retried_and_recovers(products_csv, products):
    with serve(products_csv, {"http_500_pages": {2: 2}}) as url:
        fetched = fetch_catalog(url, page_size=50, **FAST)
    page2 = fetched.pages[1]
    assert (page2.status, page2.attempts, page2.items) == ("ok", 3, 50)
    assert fetched.complete and len(fetched.rows) == len(products)


def test_500_beyond_retries_is_recorded_and_later_pages_still_fetched(products_csv, products):
    with serve(products_csv, {"always_500_pages": [2]}) as url:
        fetched = fetch_catalog(url, page_size=50, **FAST)
    statuses = [(p.page, p.status, p.http_status) for p in fetched.pages]
    assert statuses == [(1, "ok", 200), (2, "http_error", 500), (3, "ok", 200)]
    bad = fetched.bad_pages[0]
    assert bad.attempts == FAST["retries"] + 1 and "injected failure" in bad.raw_text
    assert len(fetched.rows) == len(products) - 50 and not fetched.complete


def test_malformed_page_retried_once_then_recorded(products_csv, products):
    with serve(products_csv, {"malformed_pages": [3]}) as url:
        fetched = fetch_catalog(url, page_size=25, **{**FAST, "retries": 5})
    bad = fetched.bad_pages
    assert [(p.page, p.status, p.attempts) for p in bad] == [(3, "malformed_json", 2)]
    with pytest.raises(ValueError):
        import json

        json.loads(bad[0].raw_text)
    assert len(fetched.rows) == len(products) - 25
    assert [p.page for p in fetched.pages] == [1, 2, 3, 4, 5]


def test_first_page_failing_does_not_stop_pagination(products_csv, products):
    with serve(products_csv, {"always_500_pages": [1]}) as url:
        fetched = fetch_catalog(url, page_size=50, **{**FAST, "retries": 1})
    assert [p.status for p in fetched.pages] == ["http_error", "ok", "ok"]
    assert fetched.total == len(products) and len(fetched.rows) == len(products) - 50


def test_timeout_is_retried(products_csv, products):
    faults = {"slow_pages": {1: 1}, "slow_seconds": 3.0}
    with serve(products_csv, faults) as url:
        fetched = fetch_catalog(url, page_size=500, timeout=1.0, retries=3, backoff=0.01)
    assert fetched.pages[0].status == "ok" and fetched.pages[0].attempts >= 2
    assert len(fetched.rows) == len(products)


def test_progress_reports_each_page(products_csv):
    seen: list[tuple[str, int, int | None]] = []
    with serve(products_csv) as url:
        fetch_catalog(url, page_size=40, progress=lambda *a: seen.append(a), **FAST)
    assert [done for _, done, _ in seen] == [1, 2, 3]
    assert seen[-1][2] == 3


def test_unreachable_api_raises_catalog_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(CatalogUnavailable, match=f"127.0.0.1:{port}"):
        fetch_catalog(url, page_size=10, timeout=1.0, retries=1, backoff=0.01)


def test_server_stops_on_exit(products_csv):
    with serve(products_csv) as url:
        assert httpx.get(f"{url}/health").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)


def test_unknown_fault_kind_is_rejected(products):
    with pytest.raises(ValueError, match="fault"):
        create_app(products, faults={"explode_pages": [1]})
