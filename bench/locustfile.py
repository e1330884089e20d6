"""Locust load profile for the serving API (for users who prefer Locust to wrk; Locust is not a
pinned dependency: `pip install locust` in your own environment).

    locust -f bench/locustfile.py --host http://127.0.0.1:8000 --headless -u 64 -r 16 -t 60s

Mix: mostly per-user recommendations (random ids up to $RECOMART_BENCH_USERS, default 100000),
some similar items, sessions, trending, and feedback events carrying the served request id.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, between, task

USERS = int(os.environ.get("RECOMART_BENCH_USERS", "100000"))
PRODUCTS = int(os.environ.get("RECOMART_BENCH_PRODUCTS", "10000"))


class Shopper(FastHttpUser):
    wait_time = between(0, 0.01)

    @task(20)
    def recommendations(self) -> None:
        user = random.randint(1, USERS)
        with self.client.get(f"/v1/users/{user}/recommendations?n=20",
                             name="/v1/users/{id}/recommendations", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
            elif random.random() < 0.05:  # a click on the first item, attributed to the list
                body = r.json()
                item = body["items"][0]["product_id"] if body["items"] else 1
                self.client.post("/v1/events", json={
                    "user_id": user, "product_id": item, "event_type": "view",
                    "session_id": f"locust-{user}", "request_id": body["request_id"]},
                    name="/v1/events")

    @task(4)
    def similar(self) -> None:
        self.client.get(f"/v1/products/{random.randint(1, PRODUCTS)}/similar?n=10",
                        name="/v1/products/{id}/similar")

    @task(2)
    def session(self) -> None:
        self.client.post("/v1/sessions/recommendations",
                         json={"product_ids": random.sample(range(1, PRODUCTS), 3), "n": 10},
                         name="/v1/sessions/recommendations")

    @task(1)
    def trending(self) -> None:
        self.client.get("/v1/trending?n=10", name="/v1/trending")
