"""The floor for bench_serving.py: a FastAPI endpoint returning a constant JSON body shaped like a
20-item recommendation response, served with exactly the API's uvicorn settings."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.responses import Response

BODY = json.dumps({
    "request_id": "0" * 32, "model": "synthetic", "version": 1, "user_id": 1, "known_user": True,
    "fresh_events": 0,
    "items": [{"product_id": 1000 + i, "score": round(1 - i / 20, 6), "rank": i + 1,
               "reason": "batch"} for i in range(20)]}, separators=(",", ":")).encode()

app = FastAPI()


@app.get("/v1/users/{user_id}/recommendations")
async def constant(user_id: int) -> Response:
    return Response(BODY, media_type="application/json")


@app.get("/readyz")
async def ready() -> Response:
    return Response(b'{"ready":true}', media_type="application/json")
