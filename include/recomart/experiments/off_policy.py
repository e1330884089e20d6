"""Off-policy estimates: a candidate's online CTR from logged exposures, before it gets traffic.

Logging scheme (what makes it possible): a small exploration share ε of requests is served by a
policy drawn uniformly from the candidates, and every exposure logs which policy served it and
with what probability (``propensity``: (1 − ε) + ε/K for the default policy's own list, ε/K for
a candidate's). For a deterministic target policy π, each logged list either is π's list or is not:

    IPS   = (1/N) Σ 1[policy_i = π] · r_i / p_i
    SNIPS = Σ 1[policy_i = π] · r_i / p_i  /  Σ 1[policy_i = π] / p_i

with r_i = 1 when the list got a click. IPS is unbiased; SNIPS trades a little bias for much less
variance. Standard errors: the sample standard deviation of the IPS terms over √N, and the delta
method for the SNIPS ratio; ``effective_n`` = (Σw)²/Σw² says how many logged lists the estimate
is really worth.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from recomart.experiments.statistics import StatisticsError


@dataclass(frozen=True)
class OffPolicyEstimate:
    target: str
    logged: int
    matched: int
    ips: float
    ips_se: float
    snips: float
    snips_se: float
    effective_n: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def exploration_propensity(policy: str, default: str, candidates: list[str], epsilon: float) -> float:
    """P(the logged list was produced by ``policy``) under ε-uniform exploration."""
    share = epsilon / len(candidates)
    return (1 - epsilon) * (policy == default) + share * (policy in candidates)


def estimate(logged: pd.DataFrame, target: str) -> OffPolicyEstimate:
    """``logged``: one row per served list with ``policy``, ``propensity`` and ``reward`` (0/1)."""
    missing = {"policy", "propensity", "reward"} - set(logged.columns)
    if missing:
        raise StatisticsError(f"logged exposures lack {sorted(missing)}")
    p = logged["propensity"].to_numpy(float)
    if len(p) == 0 or (p <= 0).any() or (p > 1).any():
        raise StatisticsError("every logged list needs a propensity in (0, 1]")
    match = (logged["policy"] == target).to_numpy()
    if not match.any():
        raise StatisticsError(f"no logged list was served by {target!r}: explore first")
    r = logged["reward"].to_numpy(float)
    w = match / p
    terms = w * r
    n = len(p)
    ips = float(terms.mean())
    ips_se = float(terms.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    snips = float(terms.sum() / w.sum())
    # delta method for a ratio of means: Var(ȳ/x̄) ≈ Var(y − R x)/(n x̄²)
    resid = terms - snips * w
    snips_se = float(resid.std(ddof=1) / (math.sqrt(n) * w.mean())) if n > 1 else float("nan")
    return OffPolicyEstimate(target, n, int(match.sum()), ips, ips_se, snips, snips_se,
                             float(w.sum() ** 2 / (w ** 2).sum()))


def logged_rewards(exposures: pd.DataFrame, attributed: pd.DataFrame) -> pd.DataFrame:
    """Served lists with their logged policy/propensity and a click reward, from the lake's
    exposures (``variant`` = serving policy, ``assignment_probability`` = propensity)."""
    clicked = set(attributed.loc[attributed["event_type"] == "view", "request_id"])
    return pd.DataFrame({"policy": exposures["variant"].to_numpy(),
                         "propensity": exposures["assignment_probability"].to_numpy(float),
                         "reward": exposures["request_id"].isin(clicked).to_numpy(float)})


def simulate_logging(rng: np.random.Generator, shop: Any, user_ids: np.ndarray,
                     lists: dict[str, dict[int, list[int]]], default: str, epsilon: float,
                     visits: int) -> pd.DataFrame:
    """ε-uniform exploration on the shopper simulator: which policy served each visit, its
    propensity and whether the shopper clicked (for tests and the bench)."""
    candidates = sorted(lists)
    users = rng.choice(user_ids, visits)
    explore = rng.random(visits) < epsilon
    drawn = np.array(candidates)[rng.integers(0, len(candidates), visits)]
    policy = np.where(explore, drawn, default)
    reward = np.empty(visits)
    for i, (u, pol) in enumerate(zip(users, policy, strict=True)):
        probs = shop.click_probability(int(u), lists[pol].get(int(u), []))
        reward[i] = float((rng.random(len(probs)) < probs).any())
    prop = np.array([exploration_propensity(p, default, candidates, epsilon) for p in policy])
    return pd.DataFrame({"user_id": users, "policy": policy, "propensity": prop, "reward": reward})
