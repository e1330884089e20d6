"""Land the product-catalog API's pages in ``raw/catalog_api/products/ds=<ds>/pages.jsonl``.

One JSON line per page exactly as received (``raw_text``) with its fetch status, so bad pages are
kept with their reason and validation can account for them. The catalog is a live API, so the
first successful landing of a date *is* that date's snapshot: re-running the date reuses it
instead of fetching again (idempotent). A fetch that fails leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from recomart.config import get_settings
from recomart.ingestion.landing import MANIFEST, landing_dir, now_iso, read_manifest, relative
from recomart.lake import Lake

log = logging.getLogger(__name__)
SOURCE, DATASET, FILE = "catalog_api", "products", "pages.jsonl"


def _page_record(page: Any) -> dict[str, Any]:
    """A client ``PageResult`` as a JSON-able dict (reason = why the page is unusable)."""
    status = getattr(page, "status", "ok")
    record = {
        "page": getattr(page, "page", None),
        "status": status,
        "http_status": getattr(page, "http_status", None),
        "items": getattr(page, "item_count", getattr(page, "items", None)),
        "raw_text": getattr(page, "raw_text", None),
        "error": getattr(page, "error", None),
    }
    if not isinstance(record["items"], int):
        record["items"] = len(record["items"]) if isinstance(record["items"], list) else None
    if status != "ok":
        record["reason"] = f"{status}_page" if not status.endswith("_page") else status
    return record


def ingest_catalog(lake: Lake, ds: str, base_url: str | None) -> dict[str, Any]:
    """Fetch every catalog page and land them for ``ds``; ``base_url=None`` skips (CSV only)."""
    if not base_url:
        log.info("no catalog API configured: products come from products.csv only")
        return {"logical_date": ds, "status": "skipped", "reason": "no catalog API configured"}
    existing = read_manifest(lake, SOURCE, DATASET, ds)
    if existing is not None:
        log.info("catalog snapshot for %s already landed at %s: reusing it", ds, existing["path"])
        return {**existing, "status": "unchanged"}
    from recomart.sources.catalog_client import fetch_catalog

    settings = get_settings()
    fetch = fetch_catalog(base_url, page_size=settings.catalog_page_size,
                          timeout=settings.http_timeout_s, retries=settings.http_retries)
    records = [_page_record(p) for p in fetch.pages]
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")
    folder = landing_dir(lake, SOURCE, DATASET, ds)
    dest = lake.write_bytes(folder / FILE, data)
    bad = [r for r in records if r["status"] != "ok"]
    manifest = {"source": SOURCE, "dataset": DATASET, "logical_date": ds, "rows": len(fetch.rows),
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                "fetched_at": now_iso(), "path": relative(lake, dest), "origin": base_url,
                "pages": len(records), "bad_pages": [{"page": r["page"], "reason": r["reason"],
                                                       "http_status": r["http_status"]} for r in bad]}
    lake.write_json(folder / MANIFEST, manifest)
    for r in bad:
        log.warning("catalog page %s unusable: %s (HTTP %s)", r["page"], r["reason"], r["http_status"])
    log.info("landed %d catalog rows from %d pages -> %s", len(fetch.rows), len(records),
             manifest["path"])
    return {**manifest, "status": "landed"}
