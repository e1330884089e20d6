"""A realistic clickstream producer (confluent-kafka) with injected malformed messages.

Events come from sessions: a user views a few products, may add one to the cart and may buy it;
many sessions are interleaved. Ids come from a source folder (``products.csv`` / ``users.csv`` of
the generator or the committed sample) or MovieLens (its users and the movies they rated), else
they are synthesised. Every event gets a fresh unique ``event_id`` and the current time. A share
of messages is malformed in several ways. The result holds exact counts of what the broker
acknowledged, plus the valid ``event_id``s and malformed message keys, so tests can reconcile.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recomart.streaming.events import DEFAULT_MAX_BYTES

log = logging.getLogger(__name__)

MALFORMED_KINDS = ("not_json", "not_object", "missing_field", "wrong_type", "unknown_event_type",
                   "oversized", "bad_timestamp")


@dataclass
class Catalog:
    """Who can click what: user ids, product ids and prices, and per-user affinities (MovieLens)."""

    users: list[int]
    products: list[int]
    prices: dict[int, float]
    affinity: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class ProduceResult:
    valid: int = 0
    malformed: int = 0
    failed: int = 0
    by_kind: Counter = field(default_factory=Counter)
    valid_ids: set[str] = field(default_factory=set)
    malformed_keys: set[str] = field(default_factory=set)
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        sent = self.valid + self.malformed
        return {"sent": sent, "valid": self.valid, "malformed": self.malformed,
                "failed": self.failed, "by_kind": dict(self.by_kind),
                "elapsed_s": round(self.elapsed_s, 3),
                "rate": round(sent / self.elapsed_s, 1) if self.elapsed_s else None}


def _read_ids(path: Path, column: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row for row in csv.DictReader(fh) if row.get(column)]


def catalog_from_folder(folder: Path | None) -> Catalog | None:
    """Ids from ``products.csv`` and ``users.csv`` in ``folder`` (generator output or sample)."""
    if folder is None or not (folder / "products.csv").exists() or not (folder / "users.csv").exists():
        return None
    products = _read_ids(folder / "products.csv", "product_id")
    users = [int(r["user_id"]) for r in _read_ids(folder / "users.csv", "user_id")]
    prices = {int(r["product_id"]): float(r["price"]) for r in products if r.get("price")}
    if not users or not products:
        return None
    return Catalog(users, [int(r["product_id"]) for r in products], prices)


def catalog_from_movielens(folder: Path) -> Catalog:
    """MovieLens users and movies; each user clicks the movies they rated (their affinity)."""
    from recomart.sources.movielens import load_movielens

    tables = load_movielens(folder)
    ratings = tables["ratings"]
    affinity: dict[int, list[int]] = {}
    for uid, pid in zip(ratings["user_id"].tolist(), ratings["product_id"].tolist(), strict=True):
        affinity.setdefault(int(uid), []).append(int(pid))
    products = sorted(int(p) for p in tables["products"]["product_id"].tolist())
    return Catalog(sorted(affinity), products, {}, affinity)


def synthetic_catalog(rng: random.Random, users: int = 5000, products: int = 1000) -> Catalog:
    prices = {p: round(rng.uniform(2, 300), 2) for p in range(1, products + 1)}
    return Catalog(list(range(1, users + 1)), list(prices), prices)


def load_catalog(source: str, path: Path | None, rng: random.Random) -> Catalog:
    if source == "movielens":
        if path is None:
            raise ValueError("--source movielens needs the MovieLens folder")
        return catalog_from_movielens(path)
    if source != "generated":
        raise ValueError(f"unknown source {source!r}: generated or movielens")
    if path is None:
        from recomart.config import get_settings

        path = get_settings().source_dir
    found = catalog_from_folder(path)
    if found is None:
        log.info("no products.csv/users.csv in %s: synthesising ids", path)
    return found or synthetic_catalog(rng)


class SessionStream:
    """Interleaved sessions emitting view -> add_to_cart -> purchase events."""

    def __init__(self, catalog: Catalog, rng: random.Random, concurrent: int = 200) -> None:
        self.catalog, self.rng = catalog, rng
        self.prefix = uuid.uuid4().hex[:12]
        self.n = 0
        self.sessions: list[list[Any]] = [self._new_session() for _ in range(concurrent)]

    def _new_session(self) -> list[Any]:
        rng, cat = self.rng, self.catalog
        user = rng.choice(cat.users)
        pool = cat.affinity.get(user) or cat.products
        viewed = [rng.choice(pool) for _ in range(rng.randint(1, 6))]
        steps = [("view", p) for p in viewed]
        if rng.random() < 0.35:
            pick = rng.choice(viewed)
            steps.append(("add_to_cart", pick))
            if rng.random() < 0.5:
                steps.append(("purchase", pick))
        self.n += 1
        return [user, f"s-{self.prefix}-{self.n}", steps, 0]

    def next_event(self) -> dict[str, Any]:
        i = self.rng.randrange(len(self.sessions))
        user, sid, steps, pos = s = self.sessions[i]
        event_type, product = steps[pos]
        s[3] += 1
        if s[3] >= len(steps):
            self.sessions[i] = self._new_session()
        self.n += 1
        return {"event_id": f"e-{self.prefix}-{self.n}", "user_id": user, "product_id": product,
                "event_type": event_type, "session_id": sid,
                "timestamp": datetime.now(UTC).isoformat(timespec="microseconds").replace(
                    "+00:00", "Z"),
                "price": self.catalog.prices.get(product)}


def malformed(event: dict[str, Any], kind: str, rng: random.Random,
              max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """One bad message of ``kind`` derived from a good event."""
    bad = dict(event)
    if kind == "not_json":
        return json.dumps(bad).encode()[: rng.randint(5, 40)]
    if kind == "not_object":
        return json.dumps(list(bad.values())).encode()
    if kind == "missing_field":
        del bad[rng.choice(["event_id", "user_id", "product_id", "event_type", "session_id",
                            "timestamp"])]
    elif kind == "wrong_type":
        field_name = rng.choice(["user_id", "product_id", "price"])
        bad[field_name] = "not-a-number"
    elif kind == "unknown_event_type":
        bad["event_type"] = rng.choice(["click", "wishlist", "VIEW"])
    elif kind == "oversized":
        bad["padding"] = "x" * (max_bytes + 1)
    elif kind == "bad_timestamp":
        bad["timestamp"] = rng.choice(["yesterday", "2024-13-45T99:00:00Z", "1970-01-01T00:00:00Z"])
    return json.dumps(bad).encode()


def produce(bootstrap: str, topic: str, rate: float, duration: float, malformed_share: float = 0.01,
            source: str = "generated", seed: int = 42, *, source_path: Path | None = None,
            count: int | None = None, progress: Callable[[int], None] | None = None
            ) -> ProduceResult:
    """Send ``count`` (default ``rate * duration``) messages at about ``rate``/s (0 = flat out)."""
    from confluent_kafka import Producer

    rng = random.Random(seed)
    stream = SessionStream(load_catalog(source, source_path, rng), rng)
    total = count if count is not None else int(rate * duration)
    result = ProduceResult()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "enable.idempotence": False, "queue.buffering.max.messages": 200_000,
                         "message.max.bytes": 1_000_000, "log_level": 3})

    def delivered(err: Any, msg: Any, *, event_id: str | None, key: str, kind: str | None) -> None:
        if err is not None:
            result.failed += 1
            log.warning("delivery failed: %s", err)
        elif kind is None:
            result.valid += 1
            result.valid_ids.add(event_id or "")
        else:
            result.malformed += 1
            result.by_kind[kind] += 1
            result.malformed_keys.add(key)

    start = time.monotonic()
    sent = 0
    while sent < total:
        if rate > 0:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            if due <= sent:
                time.sleep(min(0.01, (sent + 1 - due) / rate + 0.001))
                producer.poll(0)
                continue
        else:
            due = min(total, sent + 1000)
        while sent < due:
            event = stream.next_event()
            if malformed_share > 0 and rng.random() < malformed_share:
                kind = MALFORMED_KINDS[sent % len(MALFORMED_KINDS)]
                key = f"bad-{event['event_id']}"
                value, eid = malformed(event, kind, rng), None
            else:
                kind, key, eid = None, event["session_id"], event["event_id"]
                value = json.dumps(event, separators=(",", ":")).encode()
            while True:
                try:
                    producer.produce(topic, value=value, key=key.encode(),
                                     on_delivery=lambda err, msg, e=eid, k=key, kd=kind:
                                     delivered(err, msg, event_id=e, key=k, kind=kd))
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
        producer.poll(0)
        if progress is not None:
            progress(sent)
    producer.flush(60)
    result.elapsed_s = time.monotonic() - start
    return result
