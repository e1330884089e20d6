"""The serving API (FastAPI): batch view (+) real-time view, merged at request time.

``create_app(settings)`` builds the app; ``recomart serve`` runs it on uvicorn. Start-up loads the
batch view (``serving/latest.json``), connects the online store and the Kafka producer, and starts
the hot-swap loop. See ``blend`` for the merge rule and the README for every route.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from recomart.config import Settings, get_settings
from recomart.experiments.routing import ExperimentRouter, Routed
from recomart.lake import Lake
from recomart.serving import blend, metrics
from recomart.serving.batch_view import BatchView, ViewHolder
from recomart.serving.kafka_out import KafkaOut
from recomart.serving.online_store import AsyncOnlineReader, RecentEvent
from recomart.streaming.events import encode_event, parse_event

log = logging.getLogger(__name__)

MAX_ID = (1 << 63) - 1
UserId = Annotated[int, PathParam(ge=0, le=MAX_ID, description="Customer id (integer)")]
ProductId = Annotated[int, PathParam(ge=0, le=MAX_ID, description="Product id (integer)")]
N = Annotated[int, Query(ge=1, le=100, description="How many items (1..100)")]
_encode = msgspec.json.Encoder().encode


class _Item(msgspec.Struct):
    """One served item as it goes on the wire (encodes like the ``Item`` model, field order kept)."""

    product_id: int
    score: float
    rank: int
    reason: str


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def uuid4_hex(raw: bytes) -> str:
    """``uuid.UUID(bytes=raw, version=4).hex`` without building a UUID object."""
    return f"{(int.from_bytes(raw, 'big') & _UUID4_CLEAR) | _UUID4_SET:032x}"


def _request_id() -> str:
    """A random UUID4 hex like ``uuid.uuid4().hex``; the OS randomness is drawn 4 KB at a time."""
    global _random_pool, _random_at
    if _random_at >= len(_random_pool):
        _random_pool, _random_at = os.urandom(4096), 0
    raw = _random_pool[_random_at:_random_at + 16]
    _random_at += 16
    return uuid4_hex(raw)


def _reset_random_pool() -> None:
    global _random_pool, _random_at
    _random_pool, _random_at = b"", 0


_random_pool, _random_at = b"", 0
os.register_at_fork(after_in_child=_reset_random_pool)  # a forked worker never repeats ids


def _observe_latency(route: str, method: str, status: str, seconds: float) -> None:
    metrics.child(metrics.REQUEST_LATENCY, route, method, status).observe(seconds)


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


def _error(status: int, message: str, **extra: Any) -> JSON:
    return JSON({"error": message, **extra}, status_code=status)


class Item(BaseModel):
    product_id: int
    score: float
    rank: int
    reason: str


class RecsResponse(BaseModel):
    request_id: str
    model: str | None
    version: int | None
    user_id: int | None = None
    session_id: str | None = None
    fresh_events: int = Field(description="Recent events from the online store used by the merge")
    items: list[Item]


class SessionRequest(BaseModel):
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    product_ids: list[Annotated[int, Field(ge=0, le=MAX_ID)]] = Field(default_factory=list,
                                                                      max_length=100)
    n: int = Field(default=10, ge=1, le=100)


class BodyTooLarge(Exception):
    pass


class LimitsAndMetrics:
    """Pure ASGI middleware: rejects oversized bodies (413) and times every request per route."""

    def __init__(self, app: Any, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]
        started = [False]
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _send_json(send, 413, {"error": f"request body larger than {self.max_body} "
                                                  "bytes (RECOMART_SERVING_MAX_BODY_BYTES)"})
            _observe_latency("oversized", scope["method"], "413", time.perf_counter() - t0)
            return
        seen = [0]

        async def limited_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started[0]:
                status[0] = 413
                await _send_json(send, 413, {"error": f"request body larger than "
                                                      f"{self.max_body} bytes"})
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            _observe_latency(name, scope["method"], str(status[0]), time.perf_counter() - t0)


async def _send_json(send: Any, status: int, body: dict) -> None:
    data = _encode(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


HOT_ROUTE = "/v1/users/{user_id}/recommendations"
INTERNAL_ERROR = "internal error (logged on the server)"  # a 500's whole answer: no stack trace
_HOT_PATH = re.compile(r"/v1/users/([^/]+)/recommendations")  # Starlette's ``{user_id}`` match


def _hot_asgi(body: Any) -> Any:
    """The per-user route as a bare ASGI handler: what ``LimitsAndMetrics``, the exception
    handlers and the route would do for it (latency metric under the route's name, the same
    JSON errors, a logged 500), without the five middleware layers, the router's matching, a
    ``Request``, a ``Response`` and three wrapped ``send``s: ~20 % of the API worker's CPU
    per request here (py-spy)."""

    async def hot(scope: dict, user_raw: str, send: Any) -> None:
        t0 = time.perf_counter()
        try:
            status, answer = 200, await body(user_raw, scope["query_string"])
        except StarletteHTTPException as exc:
            status, answer = exc.status_code, {"error": str(exc.detail)}
        except Exception:
            log.exception("unhandled error on %s", scope["path"])
            status, answer = 500, {"error": INTERNAL_ERROR}
        try:
            await _send_json(send, status, answer)
        finally:
            _observe_latency(HOT_ROUTE, "GET", str(status), time.perf_counter() - t0)

    return hot


class _ServingApp(FastAPI):
    """FastAPI with one shortcut: a plain ``GET`` of the per-user route (no body, no root path)
    goes to ``hot`` before Starlette's middleware stack; everything else, and every request
    when ``hot`` is None, takes the usual way. ``test_serving_fast_paths`` compares the two."""

    hot: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        hot = self.hot
        if hot is not None and scope["type"] == "http" and scope["method"] == "GET" \
                and not scope.get("root_path"):
            found = _HOT_PATH.fullmatch(scope["path"])
            if found is not None and not any(k == b"content-length" or k == b"transfer-encoding"
                                             for k, _ in scope["headers"]):
                await hot(scope, found.group(1), send)
                return
        await super().__call__(scope, receive, send)


class Serving:
    """Per-process state: the view holder, the online store reader, the Kafka producer."""

    def __init__(self, settings: Settings, lake: Lake) -> None:
        self.settings = settings
        self.lake = lake
        self.holder = ViewHolder(lake, settings.serving_reload_poll_s, on_swap=self._swapped)
        self.store: AsyncOnlineReader | None = None
        if settings.online_store_url:
            self.store = AsyncOnlineReader(settings.online_store_url,
                                           max_events=settings.online_store_max_events,
                                           window_s=settings.serving_trending_window_s)
        self.kafka = KafkaOut(settings.kafka_bootstrap, settings.exposures_topic,
                              settings.clickstream_topic, settings.serving_exposure_queue)
        self.rules = blend.MergeRules()
        self.router = ExperimentRouter(lake, settings.experiment_refresh_s)
        self.started_at = time.time()
        self._online_errors = 0
        self._online_warned = 0.0

    @staticmethod
    def _swapped(old: BatchView | None, new: BatchView) -> None:
        if old is not None:
            metrics.MODEL_INFO.labels(old.model, str(old.version)).set(0)
        metrics.MODEL_INFO.labels(new.model, str(new.version)).set(1)
        metrics.SWAPS.inc()

    def _online_failed(self, exc: Exception) -> None:
        """Count every failed read; log at most one line per 10 s (a dead store must not flood)."""
        metrics.ONLINE_ERRORS.inc()
        self._online_errors += 1
        now = time.monotonic()
        if now - self._online_warned > 10:
            self._online_warned = now
            log.warning("online store read failed (%s: %s); serving without the real-time view "
                        "(%d failed reads so far)", type(exc).__name__, exc, self._online_errors)

    async def recent(self, op: str, ident: Any) -> tuple[list[RecentEvent], bool]:
        """Recent events, and whether the online store answered."""
        if self.store is None or ident is None:
            return [], True
        t0 = time.perf_counter()
        try:
            events = await (self.store.recent_user(ident) if op == "user"
                            else self.store.recent_session(ident))
        except Exception as exc:
            self._online_failed(exc)
            return [], False
        metrics.child(metrics.ONLINE_READ, op).observe(time.perf_counter() - t0)
        return events, True

    async def trending(self, n: int) -> list[int]:
        if self.store is None:
            return []
        t0 = time.perf_counter()
        try:
            top = await self.store.trending(n)
        except Exception as exc:
            self._online_failed(exc)
            return []
        metrics.child(metrics.ONLINE_READ, "trending").observe(time.perf_counter() - t0)
        return [pid for pid, _ in top]

    def expose(self, route: str, request_id: str, view: BatchView | None,
               items: list[dict] | msgspec.Raw,
               user_id: int | None = None, session_id: str | None = None,
               routed: Routed | None = None) -> None:
        """Log the served list (the response's own items) to the exposures topic, async; in an
        experiment, with its name, revision, variant and the unit's assignment probability."""
        a = routed.assignment if routed is not None else None
        self.kafka.log_exposure(request_id, _encode({
            "request_id": request_id, "ts": datetime.now(UTC).isoformat(), "route": route,
            "user_id": user_id, "session_id": session_id,
            "model": view.model if view else None, "version": view.version if view else None,
            "variant": a.variant if a else None, "experiment": a.experiment if a else None,
            "experiment_revision": a.revision if a else None,
            "assignment_probability": a.probability if a else None, "items": items}))


async def _flush_metrics_every(seconds: float) -> None:
    """Buffered metric children (multiprocess mode) reach the shared files once a second."""
    while True:
        await asyncio.sleep(seconds)
        try:
            metrics.flush()
        except Exception:  # a metrics file problem must not end the loop (or fail requests)
            log.exception("metrics flush failed")


def _int_param(raw: str, where: str, lo: int, hi: int) -> int:
    """An integer parameter with the typed routes' 422 messages."""
    digits = raw[1:] if raw[:1] == "-" else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        raise HTTPException(422, f"invalid request: {where}: Input should be a valid integer, "
                                 "unable to parse string as an integer")
    value = int(raw)
    if value < lo:
        raise HTTPException(422, f"invalid request: {where}: Input should be greater than or "
                                 f"equal to {lo}")
    if value > hi:
        raise HTTPException(422, f"invalid request: {where}: Input should be less than or "
                                 f"equal to {hi}")
    return value


_PLAIN_QUERY = re.compile(rb"[A-Za-z0-9_.~=&-]*")  # nothing to unquote in it


def _query_param(query_string: bytes, name: str, default: str) -> str:
    """``QueryParams(query_string).get(name, default)`` (Starlette: last value wins, ``a`` alone is
    ``a=""``). A query without percent-escapes or ``+`` is split here: building the multidict
    through ``parse_qsl`` cost ~8 % of the hot route; any other query goes to Starlette."""
    if not query_string:
        return default
    if _PLAIN_QUERY.fullmatch(query_string) is None:
        return QueryParams(query_string).get(name, default)
    value = default
    for pair in query_string.decode("latin-1").split("&"):
        key, _, got = pair.partition("=")
        if key == name:
            value = got
    return value


def _experiment_fields(routed: Routed | None) -> dict[str, Any]:
    if routed is None:
        return {}
    a = routed.assignment
    return {"experiment": a.experiment, "variant": a.variant}


_ROUNDED: dict[float, float] = {}


def _round6(score: float) -> float:
    """``round(score, 6)``, remembered: a merge's scores come from a few hundred distinct floats
    (rank scores times a handful of weights) and ``round`` with digits costs ~0.8 us a call."""
    got = _ROUNDED.get(score)
    if got is None:
        if len(_ROUNDED) >= 100_000:  # bounded: a rule with unusual weights cannot grow it
            _ROUNDED.clear()
        got = round(score, 6)
        if score == score and score != 0.0:  # neither NaN (never equal) nor -0.0 (== 0.0)
            _ROUNDED[score] = got
    return got


def _items(scored: Sequence[tuple[int, float, str]]) -> msgspec.Raw:
    """The served list (``blend.Row``s or ``Scored``s) as JSON, encoded once for both the
    response and the exposure record."""
    get = _ROUNDED.get
    return msgspec.Raw(_encode([_Item(pid, get(score) or _round6(score), i, reason)
                                for i, (pid, score, reason) in enumerate(scored, start=1)]))


def create_app(settings: Settings | None = None, lake: Lake | None = None,
               freeze_gc: bool = False, fast_route: bool = True) -> FastAPI:
    """``freeze_gc``: after start-up, move every live object to the permanent GC generation (what a
    serving worker wants; an app made in a test process leaves it off). ``fast_route``: serve
    the per-user route through a plain Starlette route (see ``user_recommendations``); off, the
    FastAPI route serves it (the tests compare the two)."""
    settings = settings or get_settings()
    lake = lake or Lake(settings.lake_root, settings=settings)
    state: dict[str, Serving] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        serving = Serving(settings, lake)
        await asyncio.to_thread(serving.holder.start)
        await asyncio.to_thread(serving.router.start)
        state["s"] = serving
        if serving.holder.view is None:
            log.warning("no batch view loaded yet: %s", serving.holder.last_error)
        if freeze_gc:
            # everything alive now (modules, the view) lives as long as the worker: out of the
            # collector's sight, a full collection no longer scans it (~30-100 ms here, a p99 spike)
            gc.collect()
            gc.freeze()
        flusher = asyncio.create_task(_flush_metrics_every(1.0))
        try:
            yield
        finally:
            flusher.cancel()
            metrics.flush()  # what the last second served
            serving.holder.stop()
            serving.router.stop()
            await asyncio.to_thread(serving.kafka.close)
            if serving.store is not None:
                await serving.store.close()

    app = _ServingApp(title="RecoMart serving API", version="1",
                  description="Batch view (the champion's published lists) merged at request time "
                              "with the real-time view (recent events from the online store).",
                  lifespan=lifespan)

    def view_or_503() -> BatchView:
        view = state["s"].holder.view
        if view is None:
            raise HTTPException(503, f"no batch view loaded: {state['s'].holder.last_error}")
        return view

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSON:
        details = [{"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
                   for e in exc.errors()]
        text = "; ".join(f"{d['where']}: {d['message']}" for d in details)
        return _error(422, f"invalid request: {text}", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSON:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSON:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, INTERNAL_ERROR)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/explorer")

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSON:
        """Liveness: the process answers."""
        return JSON({"status": "ok"})

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSON:
        """Readiness: a batch view is loaded and the online store (if configured) answers."""
        s = state["s"]
        view = s.holder.view
        online = "disabled" if s.store is None else ("ok" if await s.store.ping() else "unreachable")
        problems = []
        if view is None:
            problems.append(f"batch view: {s.holder.last_error}")
        if online == "unreachable":
            problems.append(f"online store {s.store.url} unreachable")  # type: ignore[union-attr]
        body = {"ready": not problems, "pid": os.getpid(), "model": view.model if view else None,
                "version": view.version if view else None, "online_store": online,
                "exposure_log": "on" if s.kafka.producer is not None else "off (no broker)",
                "swaps": s.holder.swaps, "problems": problems,
                "experiments": s.router.describe(),
                "view": view.describe() if view else None}
        return JSON(body, status_code=200 if not problems else 503)

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        data, ctype = metrics.render()
        return Response(data, media_type=ctype)

    @app.get(HOT_ROUTE, tags=["recommendations"],
             responses={200: {"model": RecsResponse}}, openapi_extra={"parameters": [
                 {"name": "user_id", "in": "path", "required": True,
                  "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID}},
                 {"name": "n", "in": "query", "required": False,
                  "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}}]})
    async def user_recommendations(request: Request) -> JSON:
        """The champion's list for the user merged with their recent events (see the merge rule).

        The hot route reads its two parameters itself (same rules and messages as the typed
        routes): FastAPI's per-request parameter machinery cost ~0.2 ms here (cProfile)."""
        return JSON(await user_recs_body(request.path_params["user_id"],
                                         request.scope["query_string"]))

    async def user_recs_body(user_raw: str, query_string: bytes) -> dict[str, Any]:
        """The per-user answer as a dict (raises ``HTTPException`` for the 4xx/503 answers)."""
        user_id = _int_param(user_raw, "path.user_id", 0, MAX_ID)
        n = _int_param(_query_param(query_string, "n", "10"), "query.n", 1, 100)
        s = state["s"]
        routed = s.router.route("user", user_id)
        view = routed.view if routed is not None else view_or_503()
        recent, online_ok = await s.recent("user", user_id)
        batch = view.user_recs.get(user_id)
        if batch is None:
            metrics.child(metrics.FALLBACKS, "unknown_user").inc()
        if not online_ok:
            metrics.child(metrics.FALLBACKS, "online_store_down").inc()
        need_trending = batch is None or len(batch[0]) < n
        trending = await s.trending(n) if need_trending else []
        scored = blend.merge_rows(batch, recent, view.similar_items, trending,
                                  view.popular_ids[: n * 2], n, s.rules)
        items = _items(scored)
        rid = _request_id()
        metrics.child(metrics.ITEMS_SERVED, "user").inc(len(scored))
        s.expose("user", rid, view, items, user_id=user_id, routed=routed)
        return {"request_id": rid, "model": view.model, "version": view.version,
                **_experiment_fields(routed),
                "user_id": user_id, "known_user": batch is not None,
                "fresh_events": len(recent), "items": items}

    if fast_route:
        # The hot route also as a plain Starlette route, first in the table: the same endpoint,
        # middleware, exception handlers and metrics label, without FastAPI's per-request
        # dependency machinery (an exit stack, solve_dependencies and its throw-away Response:
        # ~60-100 us a request here) and without matching the routes listed before it. The
        # FastAPI route above stays for the OpenAPI docs (and serves when fast_route is off).
        hot = Route(HOT_ROUTE, user_recommendations, methods=["GET"])
        hot.methods = {"GET"}  # like the FastAPI route (Starlette would add HEAD)
        app.router.routes.insert(0, hot)
        # ... and, one step further out, answered before Starlette's middleware stack (see
        # ``_ServingApp``); a request it does not take goes through the stack to the route above
        app.hot = _hot_asgi(user_recs_body)

    @app.post("/v1/sessions/recommendations", tags=["recommendations"],
              responses={200: {"model": RecsResponse}})
    async def session_recommendations(body: SessionRequest) -> JSON:
        """Anonymous shoppers: a session id (its recent events) and/or the product ids seen so
        far (oldest first) -> items similar to them, then what is trending."""
        if body.session_id is None and not body.product_ids:
            raise HTTPException(422, "give a session_id and/or product_ids")
        s = state["s"]
        routed = s.router.route("session", body.session_id)
        view = routed.view if routed is not None else view_or_503()
        recent, _ = await s.recent("session", body.session_id)
        now = time.time()
        given = [RecentEvent(p, "view", now) for p in reversed(body.product_ids)]
        events = given + recent
        trending = await s.trending(body.n)
        scored = blend.merge_rows(None, events, view.similar_items, trending,
                                  view.popular_ids[: body.n * 2], body.n, s.rules)
        items = _items(scored)
        rid = _request_id()
        metrics.child(metrics.ITEMS_SERVED, "session").inc(len(scored))
        s.expose("session", rid, view, items, session_id=body.session_id, routed=routed)
        return JSON({"request_id": rid, "model": view.model, "version": view.version,
                     **_experiment_fields(routed),
                     "session_id": body.session_id, "fresh_events": len(events), "items": items})

    def _per_product(view: Any, lists: Any, product_id: int, n: int) -> tuple[list, list]:
        """A product's list from the batch view; a known product without one gets an empty
        list, an unknown product a 404 that names the view."""
        got = lists.get(product_id, n)
        if got is not None:
            return got
        if not view.knows_product(product_id):
            raise HTTPException(404, f"unknown product {product_id}: not in the batch view "
                                     f"{view.model} v{view.version}")
        return [], []

    @app.get("/v1/products/{product_id}/similar", tags=["products"])
    async def similar(product_id: ProductId, n: N = 10) -> JSON:
        """Item-to-item neighbours from the batch view."""
        s = state["s"]
        view = view_or_503()
        got = _per_product(view, view.similar, product_id, n)
        items = [{"product_id": p, "score": round(sc, 6), "rank": i, "reason": "similar"}
                 for i, (p, sc) in enumerate(zip(*got, strict=True), start=1)]
        rid = _request_id()
        metrics.child(metrics.ITEMS_SERVED, "similar").inc(len(items))
        s.expose("similar", rid, view, items)
        return JSON({"request_id": rid, "model": view.model, "version": view.version,
                     "product_id": product_id, "items": items})

    @app.get("/v1/products/{product_id}/audience", tags=["products"])
    async def audience(product_id: ProductId, n: N = 10) -> JSON:
        """The users most likely to engage with the product (for marketing)."""
        view = view_or_503()
        got = _per_product(view, view.audience, product_id, n)
        users = [{"user_id": u, "score": round(sc, 6), "rank": i}
                 for i, (u, sc) in enumerate(zip(*got, strict=True), start=1)]
        metrics.ITEMS_SERVED.labels("audience").inc(len(users))
        return JSON({"model": view.model, "version": view.version, "product_id": product_id,
                     "users": users})

    @app.get("/v1/trending", tags=["products"])
    async def trending(n: N = 10) -> JSON:
        """What is hot in the online store's trailing window; batch-wide popular items fill."""
        s = state["s"]
        view = s.holder.view
        top = await s.trending(n)
        items = [{"product_id": p, "rank": i, "reason": "trending"} for i, p in enumerate(top, 1)]
        if len(items) < n and view is not None:
            listed = set(top)
            metrics.FALLBACKS.labels("trending_filled_with_popular").inc()
            for p, _ in view.popular:
                if len(items) >= n:
                    break
                if p not in listed:
                    items.append({"product_id": p, "rank": len(items) + 1, "reason": "popular"})
        for it in items:
            it["score"] = round(1.0 - (it["rank"] - 1) / max(1, len(items)), 6)
        metrics.ITEMS_SERVED.labels("trending").inc(len(items))
        return JSON({"window_s": settings.serving_trending_window_s, "items": items})

    @app.get("/v1/users/{user_id}/history", tags=["recommendations"])
    async def history(user_id: UserId) -> JSON:
        """The user's recent events as the online store holds them (newest first)."""
        recent, ok = await state["s"].recent("user", user_id)
        return JSON({"user_id": user_id, "online_store": ok, "events": [
            {"product_id": e.product_id, "event_type": e.event_type,
             "timestamp": datetime.fromtimestamp(e.ts, UTC).isoformat()} for e in recent]})

    @app.post("/v1/events", tags=["feedback"], status_code=202)
    async def events(request: Request) -> JSON:
        """Feedback: one event object, a list, or ``{"events": [...]}``, validated with the speed
        layer's own rules and produced to the clickstream topic. ``event_id`` (a new UUID) and
        ``timestamp`` (now) may be left out. 202 with what was accepted and why the rest was not."""
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise HTTPException(422, "body is not JSON: send an event object, a list of events or "
                                     '{"events": [...]}') from None
        batch = body.get("events") if isinstance(body, dict) and "events" in body else body
        batch = [batch] if isinstance(batch, dict) else batch
        if not isinstance(batch, list) or not batch:
            raise HTTPException(422, 'send an event object, a non-empty list of events or '
                                     '{"events": [...]}')
        limit = settings.serving_max_events_per_request
        if len(batch) > limit:
            raise HTTPException(413, f"{len(batch)} events in one request; at most {limit} "
                                     "(RECOMART_SERVING_MAX_EVENTS_PER_REQUEST)")
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        rejected, payloads, index = [], [], []
        for i, obj in enumerate(batch):
            if isinstance(obj, dict):
                obj = {"event_id": uuid.uuid4().hex, "timestamp": now, **obj}
            raw_one = json.dumps(obj, separators=(",", ":")).encode()
            event, reason = parse_event(raw_one, settings.stream_max_message_bytes)
            if event is None:
                rejected.append({"index": i, "reason": reason})
                continue
            payloads.append((str(event["user_id"]).encode(), encode_event(event)))
            index.append((i, event["event_id"]))
        s = state["s"]
        failures = await asyncio.to_thread(s.kafka.send_events, payloads) if payloads else []
        accepted, failed = [], []
        for (i, eid), err in zip(index, failures, strict=True):
            (accepted if err is None else failed).append(
                {"index": i, "event_id": eid} if err is None else {"index": i, "reason": err})
        metrics.EVENTS.labels("accepted").inc(len(accepted))
        metrics.EVENTS.labels("rejected").inc(len(rejected))
        metrics.EVENTS.labels("failed").inc(len(failed))
        body_out = {"accepted": len(accepted), "rejected": len(rejected), "failed": len(failed),
                    "event_ids": [a["event_id"] for a in accepted], "errors": rejected,
                    "failures": failed}
        if failed:
            body_out["error"] = "the broker did not acknowledge some events: send them again"
            return JSON(body_out, status_code=503)
        return JSON(body_out, status_code=202)

    @app.post("/v1/admin/reload", tags=["ops"])
    async def reload(request: Request) -> JSON:
        """Reload the batch view now. Needs ``Authorization: Bearer <RECOMART_SERVING_ADMIN_TOKEN>``."""
        token = settings.serving_admin_token
        if not token:
            raise HTTPException(403, "reload disabled: RECOMART_SERVING_ADMIN_TOKEN is not set")
        if request.headers.get("authorization", "") != f"Bearer {token}":
            raise HTTPException(401, "missing or wrong bearer token")
        s = state["s"]
        swapped = await asyncio.to_thread(s.holder.refresh, True)
        view = s.holder.view
        return JSON({"swapped": swapped, "model": view.model if view else None,
                     "version": view.version if view else None, "error": s.holder.last_error})

    @app.get("/explorer", include_in_schema=False)
    async def explorer() -> HTMLResponse:
        return HTMLResponse((Path(__file__).parent / "explorer.html").read_text(encoding="utf-8"))

    app.add_middleware(LimitsAndMetrics, max_body=settings.serving_max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``recomart serve``): settings from the environment of each worker."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app(get_settings(), freeze_gc=True)
