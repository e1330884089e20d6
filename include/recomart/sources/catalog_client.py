"""Paginated client for the catalog HTTP API that never loses a page silently.

Every page ends up in ``CatalogFetch.pages`` with its outcome and the raw response text, so the
ingestion stage can land good pages in the raw zone and quarantine bad ones with a reason:

- 5xx answers, timeouts and connection errors are retried with exponential backoff; a page still
  failing is recorded as ``http_error`` (http_status None when no answer came at all);
- a 200 answer that is not the expected JSON is retried once, then recorded as ``malformed_json``;
- other 4xx answers are recorded as ``http_error`` without retrying.

Pagination follows ``next_page`` until null. After a bad page the next page number is tried, up to
the last page the reported ``total`` implies (or ``max_blind_failures`` bad pages in a row while no
page has said how many there are). An API that cannot even answer ``/health`` raises
``CatalogUnavailable``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from recomart.errors import RecomartError, TransientError

log = logging.getLogger(__name__)

OK, MALFORMED, HTTP_ERROR = "ok", "malformed_json", "http_error"
MALFORMED_ATTEMPTS = 2  # a malformed page is asked for twice, then recorded


class CatalogUnavailable(TransientError):
    """The catalog API cannot be reached at all (connection refused, /health failing)."""


@dataclass
class PageResult:
    page: int
    status: str  # "ok" | "malformed_json" | "http_error"
    http_status: int | None
    items: int
    attempts: int
    url: str
    raw_text: str | None = None  # the exact response body (None when no answer came)
    error: str | None = None  # why the page is bad (None for ok pages)


@dataclass
class CatalogFetch:
    base_url: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    pages: list[PageResult] = field(default_factory=list)
    total: int | None = None  # what the API says it holds

    @property
    def bad_pages(self) -> list[PageResult]:
        return [p for p in self.pages if p.status != OK]

    @property
    def complete(self) -> bool:
        return not self.bad_pages and (self.total is None or len(self.rows) == self.total)


class _ServerError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class _Malformed(Exception):
    def __init__(self, response: httpx.Response, why: str) -> None:
        super().__init__(why)
        self.response = response


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError | _ServerError | _Malformed)


def _retrying(retries: int, backoff: float,
              retryable: Callable[[BaseException], bool] = _retryable) -> Retrying:
    return Retrying(stop=stop_after_attempt(retries + 1),
                    wait=wait_exponential(multiplier=backoff, min=backoff, max=backoff * 16),
                    retry=retry_if_exception(retryable), reraise=True)


def _parse(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.text)
    except json.JSONDecodeError as exc:
        raise _Malformed(response, f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise _Malformed(response, "JSON without an 'items' list")
    return body


def _fetch_page(client: httpx.Client, page: int, page_size: int, retries: int,
                backoff: float) -> tuple[PageResult, dict[str, Any] | None]:
    params = {"page": page, "page_size": page_size}
    url = str(client.build_request("GET", "/products", params=params).url)
    attempts = 0
    malformed_seen = 0

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, _Malformed):
            return malformed_seen < MALFORMED_ATTEMPTS
        return _retryable(exc)

    try:
        for attempt in _retrying(retries, backoff, retryable):
            with attempt:
                attempts += 1
                response = client.get("/products", params=params)
                if response.status_code >= 500:
                    raise _ServerError(response)
                if response.status_code != 200:
                    return PageResult(page, HTTP_ERROR, response.status_code, 0, attempts, url,
                                      response.text, f"HTTP {response.status_code}"), None
                try:
                    body = _parse(response)
                except _Malformed:
                    malformed_seen += 1
                    raise
                return PageResult(page, OK, 200, len(body["items"]), attempts, url,
                                  response.text), body
    except _ServerError as exc:
        return PageResult(page, HTTP_ERROR, exc.response.status_code, 0, attempts, url,
                          exc.response.text, f"HTTP {exc.response.status_code} after "
                          f"{attempts} attempt(s)"), None
    except _Malformed as exc:
        return PageResult(page, MALFORMED, exc.response.status_code, 0, attempts, url,
                          exc.response.text, f"{exc} after {attempts} attempt(s)"), None
    except httpx.TransportError as exc:
        return PageResult(page, HTTP_ERROR, None, 0, attempts, url, None,
                          f"{type(exc).__name__}: {exc} after {attempts} attempt(s)"), None
    raise RecomartError("unreachable: tenacity returned without a result")  # pragma: no cover


def _check_health(client: httpx.Client, base_url: str, retries: int, backoff: float) -> None:
    try:
        for attempt in _retrying(retries, backoff):
            with attempt:
                response = client.get("/health")
                if response.status_code >= 500:
                    raise _ServerError(response)
                response.raise_for_status()
    except (httpx.HTTPError, _ServerError) as exc:
        raise CatalogUnavailable(
            f"catalog API at {base_url} is unavailable after {retries + 1} attempt(s): "
            f"{type(exc).__name__}: {exc}") from exc


def fetch_catalog(base_url: str, *, page_size: int, timeout: float, retries: int,
                  progress: Callable[[str, int, int | None], None] | None = None,
                  backoff: float = 0.5, max_blind_failures: int = 3) -> CatalogFetch:
    """Fetch every page of ``/products``; bad pages are recorded, never dropped."""
    base_url = base_url.rstrip("/")
    result = CatalogFetch(base_url)
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        _check_health(client, base_url, retries, backoff)
        page, last_page, blind_failures = 1, None, 0
        while True:
            outcome, body = _fetch_page(client, page, page_size, retries, backoff)
            result.pages.append(outcome)
            if outcome.status != OK:
                log.warning("catalog page %d: %s (%s)", page, outcome.status, outcome.error)
            if progress:
                progress(f"page {page}: {outcome.status}", len(result.pages), last_page)
            if body is not None:
                blind_failures = 0
                result.rows.extend(body["items"])
                if isinstance(body.get("total"), int):
                    result.total = body["total"]
                    last_page = max(1, math.ceil(result.total / page_size))
                if body.get("next_page") is None or not body["items"]:
                    break
                page = int(body["next_page"])
                continue
            blind_failures += 1
            if last_page is not None and page >= last_page:
                break
            if last_page is None and blind_failures >= max_blind_failures:
                break
            page += 1
    log.info("catalog %s: %d rows, %d pages, %d bad", base_url, len(result.rows),
             len(result.pages), len(result.bad_pages))
    return result
