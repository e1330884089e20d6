"""Sticky assignment: hash(salt, unit) → bucket → variant. A pure function: the serving layer,
the simulator and the tests all call it, and the same unit always lands in the same arm of a
revision (no state to store, nothing to look up)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from recomart.experiments.definitions import Experiment

BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: str
    revision: int
    variant: str
    model: str
    bucket: int
    probability: float


def bucket(salt: str, unit_id: object) -> int:
    """A uniform bucket in [0, BUCKETS) from the first 8 bytes of sha256(salt:unit)."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def bucket_bounds(weights: list[float]) -> list[int]:
    """Upper bucket bound of each variant (cumulative weights, the last one is BUCKETS)."""
    total = sum(weights)
    bounds, acc = [], 0.0
    for w in weights:
        acc += w
        bounds.append(round(BUCKETS * acc / total))
    bounds[-1] = BUCKETS
    return bounds


def assign(experiment: Experiment, unit_id: object) -> Assignment:
    b = bucket(experiment.salt, unit_id)
    bounds = bucket_bounds([v.weight for v in experiment.variants])
    index = next(i for i, hi in enumerate(bounds) if b < hi)
    v = experiment.variants[index]
    lo = bounds[index - 1] if index else 0
    return Assignment(experiment.name, experiment.revision, v.name, v.model, b,
                      (bounds[index] - lo) / BUCKETS)
