"""Synthetic shoppers with known true preferences, so an experiment's right answer is known.

Ground truth comes from the generator's latent state (``sources.generator.latent_state``: each
user's category affinities, each product's category, quality and price) plus a per-user
engagement level. A shopper shown a list clicks the item at position k with probability

    P(click) = bias(k) · engagement_u · clip(0.01 + 0.35·affinity(u, category(p)) + 0.03·quality(p))

with the position bias bias(k) = 1 / log2(k + 1); a click becomes an add-to-cart with
probability clip(0.15 + 0.5·affinity) and a cart a purchase with probability 0.5. The expected
CTR of a list (P(at least one click)) is therefore exact, and so is the lift between two policies.

Two drivers share this model:

- ``simulate_experiment``: in memory, fast (the statistics tests, the bench): exposures and events
  in the lake's landed formats, assignment by the real sticky hash;
- ``drive_http``: the real serving API over HTTP (``recomart simulate shoppers``): GET a user's
  recommendations, draw the shopper's reaction, POST the events (with the list's ``request_id``)
  to ``/v1/events``, which produces them to Kafka.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from recomart.experiments.assignment import assign
from recomart.experiments.definitions import Experiment

log = logging.getLogger(__name__)

Policy = Callable[[np.ndarray], Mapping[int, Sequence[int]]]
"""``policy(user_ids) -> {user_id: [product_id, ...] best first}``."""


@dataclass
class Shop:
    """The truth: arrays indexed by ``id - 1``."""

    affinity: np.ndarray
    cat: np.ndarray
    quality: np.ndarray
    price: np.ndarray
    engagement: np.ndarray

    @staticmethod
    def from_generator(users: int, products: int, days: int, seed: int = 42, **kw: Any) -> Shop:
        from recomart.sources.generator import latent_state

        s = latent_state(users=users, products=products, days=days, seed=seed, **kw)
        rng = np.random.default_rng(seed + 1)
        engagement = np.minimum(rng.lognormal(-0.3, 0.8, users), 4.0)
        return Shop(s["affinity"], s["cat"], s["quality"], s["price"], engagement)

    @property
    def n_users(self) -> int:
        return len(self.engagement)

    def base(self, user_ids: np.ndarray, product_ids: np.ndarray) -> np.ndarray:
        aff = self.affinity[user_ids - 1, self.cat[product_ids - 1]]
        return np.clip(0.01 + 0.35 * aff + 0.03 * self.quality[product_ids - 1], 0.001, 0.9)

    def click_probability(self, user_id: int, items: Sequence[int]) -> np.ndarray:
        p = np.asarray(items, dtype=np.int64)
        k = np.arange(1, len(p) + 1)
        u = np.full(len(p), user_id, dtype=np.int64)
        return np.clip(self.base(u, p) * position_bias(k) * self.engagement[user_id - 1], 0, 0.95)

    def expected_ctr(self, user_id: int, items: Sequence[int]) -> float:
        """P(at least one click) on this list: the truth an experiment's CTR estimates."""
        if not len(items):
            return 0.0
        return float(1 - np.prod(1 - self.click_probability(user_id, items)))

    def pre_period_views(self, rng: np.random.Generator) -> np.ndarray:
        """A pre-experiment activity count per user (CUPED's covariate in the simulations)."""
        return rng.poisson(10.0 * self.engagement)

    def react(self, rng: np.random.Generator, user_id: int, items: Sequence[int]
              ) -> list[tuple[int, str]]:
        """The shopper's events on a served list: ``[(product_id, event_type), ...]``."""
        clicks = rng.random(len(items)) < self.click_probability(user_id, items)
        out = []
        for pid in np.asarray(items)[clicks]:
            pid = int(pid)
            out.append((pid, "view"))
            aff = float(self.affinity[user_id - 1, self.cat[pid - 1]])
            if rng.random() < min(0.9, 0.15 + 0.5 * aff):
                out.append((pid, "add_to_cart"))
                if rng.random() < 0.5:
                    out.append((pid, "purchase"))
        return out


def position_bias(k: np.ndarray) -> np.ndarray:
    return 1.0 / np.log2(np.asarray(k, dtype=float) + 1.0)


def recommender_policy(model: Any, n: int = 10) -> Policy:
    """A policy from a fitted ``recomart.models`` recommender (``recommend(user_ids, n)``)."""
    def policy(user_ids: np.ndarray) -> dict[int, list[int]]:
        recs = model.recommend([int(u) for u in user_ids], n)
        return {int(u): g.sort_values("rank")["product_id"].astype(int).tolist()
                for u, g in recs.groupby("user_id")}
    return policy


@dataclass
class Simulated:
    exposures: pd.DataFrame
    events: pd.DataFrame
    truth: dict[str, float]  # expected unit CTR per variant over the whole population
    truth_diff: float  # treatment − control
    covariate: pd.Series  # per user id: pre-period views


def simulate_experiment(shop: Shop, exp: Experiment, policies: Mapping[str, Policy], *,
                        users: int, days: int, visits_per_day: float = 0.3, seed: int = 0,
                        request_id_share: float = 0.8, start: datetime | None = None
                        ) -> Simulated:
    """``users`` shoppers over ``days`` days; each visits ~Poisson(visits_per_day) times a day,
    gets its variant's list and reacts. ``request_id_share`` of the events carry the list's
    request id (the rest are matched by the attribution window)."""
    rng = np.random.default_rng(seed)
    start = start or exp.started()
    user_ids = rng.choice(np.arange(1, shop.n_users + 1), size=min(users, shop.n_users), replace=False)
    lists = {name: policy(user_ids) for name, policy in policies.items()}
    variant_of = {int(u): assign(exp, int(u)) for u in user_ids}
    truth = {name: float(np.mean([shop.expected_ctr(int(u), lists[name].get(int(u), []))
                                  for u in user_ids])) for name in policies}
    ex_rows: list[dict[str, Any]] = []
    ev_rows: list[dict[str, Any]] = []
    offset = 0
    for day in range(days):
        visits = rng.poisson(visits_per_day, len(user_ids))
        for u, nv in zip(user_ids, visits, strict=True):
            a = variant_of[int(u)]
            items = lists[a.variant].get(int(u), [])
            for _ in range(nv):
                ts = start + timedelta(days=day, seconds=int(rng.integers(0, 86_000)))
                rid = uuid.UUID(int=int(rng.integers(0, 2 ** 63)) << 64 | offset).hex
                ex_rows.append({"request_id": rid, "ts": ts, "route": "user", "user_id": int(u),
                                "session_id": None, "model": a.model, "version": None,
                                "experiment": exp.name, "variant": a.variant,
                                "assignment_probability": a.probability,
                                "items": [{"product_id": int(p), "position": i + 1, "score": None,
                                           "reason": "batch"} for i, p in enumerate(items)],
                                "_kafka_partition": 0, "_kafka_offset": offset})
                offset += 1
                for j, (pid, kind) in enumerate(shop.react(rng, int(u), items)):
                    with_rid = rng.random() < request_id_share
                    ev_rows.append({"event_id": f"sim-{rid}-{j}", "user_id": int(u), "product_id": pid,
                                    "event_type": kind, "session_id": f"sim-{u}-{day}",
                                    "timestamp": ts + timedelta(seconds=30 + 20 * j),
                                    "price": float(shop.price[pid - 1]) if kind == "purchase" else None,
                                    "request_id": rid if with_rid else None})
    exposures = pd.DataFrame(ex_rows)
    events = pd.DataFrame(ev_rows, columns=["event_id", "user_id", "product_id", "event_type",
                                            "session_id", "timestamp", "price", "request_id"])
    for frame, col in ((exposures, "ts"), (events, "timestamp")):
        if len(frame):
            frame[col] = pd.to_datetime(frame[col], utc=True)
    names = [v.name for v in exp.variants]
    cov = pd.Series(shop.pre_period_views(rng)[user_ids - 1], index=user_ids.astype(np.int64))
    return Simulated(exposures, events, truth, truth[names[1]] - truth[names[0]], cov)


# ---- the real serving API over HTTP ------------------------------------------------------------
@dataclass
class DriveSummary:
    requests: int = 0
    lists_with_items: int = 0
    events_sent: int = 0
    events_rejected: int = 0
    failures: int = 0
    by_variant: dict[str, int] | None = None


def drive_http(base_url: str, shop: Shop, *, users: Sequence[int], visits: int, seed: int = 0,
               n: int = 10, timeout: float = 10.0,
               progress: Callable[[int, int], None] | None = None) -> DriveSummary:
    """Each of ``visits`` visits: a random user GETs recommendations, reacts per the truth model,
    and POSTs the events (with ``request_id``) to ``/v1/events``."""
    import httpx

    rng = np.random.default_rng(seed)
    out = DriveSummary(by_variant={})
    with httpx.Client(base_url=base_url, timeout=timeout) as http:
        for i in range(visits):
            user = int(rng.choice(users))
            resp = http.get(f"/v1/users/{user}/recommendations", params={"n": n})
            out.requests += 1
            if resp.status_code != 200:
                out.failures += 1
                log.warning("GET recommendations for %d: %s %s", user, resp.status_code, resp.text[:200])
                continue
            body = resp.json()
            variant = body.get("variant") or "none"
            out.by_variant[variant] = out.by_variant.get(variant, 0) + 1  # type: ignore[index]
            items = [int(it["product_id"]) for it in body["items"]]
            out.lists_with_items += bool(items)
            reaction = shop.react(rng, user, items)
            if reaction:
                now = datetime.now(UTC)
                events = [{"user_id": user, "product_id": pid, "event_type": kind,
                           "session_id": f"sim-{user}-{now:%Y%m%d}",
                           "timestamp": (now + timedelta(milliseconds=10 * j)).isoformat(),
                           "request_id": body["request_id"],
                           **({"price": float(shop.price[pid - 1])} if kind == "purchase" else {})}
                          for j, (pid, kind) in enumerate(reaction)]
                posted = http.post("/v1/events", json={"events": events})
                if posted.status_code not in (200, 202):
                    out.failures += 1
                    log.warning("POST /v1/events: %s %s", posted.status_code, posted.text[:200])
                    continue
                got = posted.json()
                out.events_sent += int(got["accepted"])
                out.events_rejected += int(got["rejected"])
            if progress:
                progress(i + 1, visits)
    return out
