"""The product-catalog HTTP API (FastAPI): a second, flaky-by-choice source for the products table.

Real catalog services paginate, fail now and then and occasionally return garbage, so the API can
inject those faults on purpose (``faults``), letting tests and demos prove the ingestion stage
retries, lands raw pages and quarantines bad ones instead of losing them.

Fault kinds (page numbers as int or str keys):

- ``{"http_500_pages": {2: 1}}``: page 2 answers 500 the first 1 time(s), then succeeds;
- ``{"always_500_pages": [4]}``: page 4 always answers 500;
- ``{"malformed_pages": [3]}``: page 3 always answers 200 with invalid JSON;
- ``{"slow_pages": {5: 1}, "slow_seconds": 2.0}``: page 5 stalls 2 s the first 1 time(s).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, Response

MALFORMED_BODY = '{"items": [{"product_id": 1, "title": "truncated'


def _load_rows(products: pd.DataFrame | Path) -> list[dict[str, Any]]:
    if isinstance(products, pd.DataFrame):
        table = pa.Table.from_pandas(products, preserve_index=False)
    else:
        table = pacsv.read_csv(Path(products), convert_options=pacsv.ConvertOptions(
            column_types={"product_id": pa.int64(), "price": pa.float64()},
            strings_can_be_null=True))
    return table.to_pylist()


def _page_set(value: Any) -> set[int]:
    return {int(p) for p in (value or [])}


def _page_counts(value: Any) -> dict[int, int]:
    return {int(p): int(n) for p, n in (value or {}).items()}


class _Faults:
    """Fault plan plus how often each page has been asked for (thread-safe counters)."""

    def __init__(self, faults: dict | None) -> None:
        faults = faults or {}
        unknown = set(faults) - {"http_500_pages", "always_500_pages", "malformed_pages",
                                 "slow_pages", "slow_seconds"}
        if unknown:
            raise ValueError(f"unknown catalog API fault kind(s): {sorted(unknown)}")
        self.flaky = _page_counts(faults.get("http_500_pages"))
        self.always_500 = _page_set(faults.get("always_500_pages"))
        self.malformed = _page_set(faults.get("malformed_pages"))
        self.slow = _page_counts(faults.get("slow_pages"))
        self.slow_seconds = float(faults.get("slow_seconds", 2.0))
        self.hits: dict[int, int] = {}
        self._lock = threading.Lock()

    def hit(self, page: int) -> int:
        with self._lock:
            self.hits[page] = self.hits.get(page, 0) + 1
            return self.hits[page]


def create_app(products: pd.DataFrame | Path, faults: dict | None = None) -> FastAPI:
    """Build the API over a products table (DataFrame) or a products.csv path."""
    rows = _load_rows(products)
    by_id = {int(r["product_id"]): r for r in rows}
    plan = _Faults(faults)
    app = FastAPI(title="RecoMart catalog API", version="1.0",
                  description="Paginated product catalog (a source for the products table).")
    app.state.faults = plan

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "products": len(rows)}

    @app.get("/products", response_model=None)
    async def list_products(page: int = Query(1, ge=1),
                            page_size: int = Query(500, ge=1, le=10_000)) -> Response | dict:
        n = plan.hit(page)
        if page in plan.slow and n <= plan.slow[page]:
            await asyncio.sleep(plan.slow_seconds)
        if page in plan.always_500 or (page in plan.flaky and n <= plan.flaky[page]):
            return JSONResponse({"detail": f"injected failure on page {page}"}, status_code=500)
        if page in plan.malformed:
            return Response(MALFORMED_BODY, media_type="application/json")
        start = (page - 1) * page_size
        items = rows[start:start + page_size]
        more = start + page_size < len(rows)
        return {"items": items, "page": page, "page_size": page_size, "total": len(rows),
                "next_page": page + 1 if more else None}

    @app.get("/products/{product_id}")
    def get_product(product_id: int) -> dict[str, Any]:
        if product_id not in by_id:
            raise HTTPException(status_code=404, detail=f"product {product_id} not found")
        return by_id[product_id]

    return app


@contextmanager
def serve_in_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                        startup_timeout: float = 15.0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a daemon thread; yields the base URL, stops cleanly on exit.

    ``port=0`` picks a free port (the real one is read back from the listening socket).
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="catalog-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            raise RuntimeError(f"catalog API did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
