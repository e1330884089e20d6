"""The merge rule: batch view (+) real-time view, at request time. Pure functions, no IO.

For a user (or a session) with a batch list B (best first), recent events R (newest first, from
the online store) and the batch view's item-to-item lists:

1. **Scores on one scale.** A batch item at 0-based rank r of a list of length L scores
   ``1 - r / L`` (reason ``batch``). Scores of different models are not comparable, ranks are.
2. **Bought since the batch run -> dropped.** Every product purchased in R is removed from every
   candidate source, unless it was bought at least ``buy_again_min`` times in R (a repeat
   purchase: kept with reason ``buy_again`` and score ``buy_again_score``).
3. **Viewed often without buying -> demoted.** A product viewed ``demote_views`` or more times in R
   with no add-to-cart or purchase gets its score multiplied by ``demote_factor``.
4. **Similar to recent views -> blended in.** For the ``anchors`` most recent distinct products
   viewed or carted in R, their similar items (rank-scored like 1.) are weighted by
   ``similar_weight * recency_decay ** j`` (j = 0 for the newest anchor, an add-to-cart anchor
   counts ``cart_boost`` times more). A candidate keeps its best contribution and that reason
   (``similar_to_recent``). Anchors themselves are not recommended by this step.
5. **Fill.** If fewer than n remain: trending (reason ``trending``), then batch-wide popular items
   (reason ``popular``), skipping anything bought or already listed.

Ties break by product id, so a response is deterministic for a given state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat as _repeat
from typing import NamedTuple

from recomart.serving.online_store import RecentEvent

BATCH, BUY_AGAIN, SIMILAR, TRENDING, POPULAR = ("batch", "buy_again", "similar_to_recent",
                                               "trending", "popular")


@dataclass(frozen=True)
class MergeRules:
    buy_again_min: int = 2
    buy_again_score: float = 1.05
    demote_views: int = 3
    demote_factor: float = 0.3
    anchors: int = 5
    similar_per_anchor: int = 10
    similar_weight: float = 1.0
    recency_decay: float = 0.7
    cart_boost: float = 1.2


class Scored(NamedTuple):
    """A ranked candidate. ``merge_rows`` gives the same rows as plain tuples (one is built ~5x
    faster than a named tuple, and the hot route builds n of them per request)."""

    product_id: int
    score: float
    reason: str


@lru_cache(maxsize=256)
def _rank_scores(n: int) -> tuple[float, ...]:
    """``1 - r / n`` for r < n (the same floats as computing each one in place)."""
    return tuple(1.0 - r / n for r in range(n))


@lru_cache(maxsize=1024)
def _weighted_rank_scores(n: int, weight: float) -> tuple[float, ...]:
    """``weight * (1 - r / n)`` for r < n (a rule has few distinct anchor weights)."""
    return tuple(weight * base for base in _rank_scores(n))


def merge(batch: tuple[Sequence[int], Sequence[float]] | None, recent: Sequence[RecentEvent],
          similar: Callable[[int, int], Sequence[int] | None], trending: Sequence[int],
          popular: Sequence[int], n: int, rules: MergeRules = MergeRules()) -> list[Scored]:
    """The top ``n`` for one user/session (see the module docstring for the rule)."""
    return list(map(Scored._make, merge_rows(batch, recent, similar, trending, popular, n, rules)))


Row = tuple[int, float, str]  # (product_id, score, reason): a Scored as a plain tuple


def merge_rows(batch: tuple[Sequence[int], Sequence[float]] | None, recent: Sequence[RecentEvent],
               similar: Callable[[int, int], Sequence[int] | None], trending: Sequence[int],
               popular: Sequence[int], n: int, rules: MergeRules = MergeRules()) -> list[Row]:
    """``merge`` with plain ``(product_id, score, reason)`` tuples (equal to its ``Scored``s)."""
    items = list(batch[0]) if batch is not None else []
    if not recent:  # the common case needs none of the real-time machinery
        ranked = list(zip(items[:n], _rank_scores(len(items)), _repeat(BATCH)))
        return _fill(ranked, n, trending, popular, frozenset())
    bought: dict[int, int] = {}
    views: dict[int, int] = {}
    engaged: set[int] = set()
    for e in recent:
        kind, pid = e.event_type, e.product_id
        if kind == "view":
            views[pid] = views.get(pid, 0) + 1
        else:
            engaged.add(pid)
            if kind == "purchase":
                bought[pid] = bought.get(pid, 0) + 1
    repeat = {p for p, c in bought.items() if c >= rules.buy_again_min}
    excluded = set(bought) - repeat

    # scores, and the reason wherever it is not BATCH (two flat dicts: no tuple per candidate)
    score: dict[int, float] = {}
    reason: dict[int, str] = {}
    for pid, base in zip(items, _rank_scores(len(items)), strict=True):
        if pid not in excluded:
            score[pid] = base
    anchors: list[tuple[int, bool]] = []  # (product, carted), newest first, distinct, not bought
    seen_anchor: set[int] = set()
    for e in recent:
        if len(anchors) >= rules.anchors:
            break
        pid = e.product_id
        if e.event_type == "purchase" or pid in bought:
            continue
        if pid in seen_anchor:
            if e.event_type == "add_to_cart":  # a cart anywhere in the window marks the anchor
                anchors = [(a, c or a == pid) for a, c in anchors]
            continue
        seen_anchor.add(pid)
        anchors.append((pid, e.event_type == "add_to_cart"))
    skip = seen_anchor | excluded
    get = score.get
    for j, (anchor, carted) in enumerate(anchors):
        sims = similar(anchor, rules.similar_per_anchor)
        if not sims:
            continue
        weight = rules.similar_weight * rules.recency_decay ** j * (rules.cart_boost if carted else 1.0)
        for pid, s in zip(sims, _weighted_rank_scores(len(sims), weight), strict=True):
            if pid in skip:
                continue
            cur = get(pid)
            if cur is None or s > cur:
                score[pid] = s
                reason[pid] = SIMILAR
    for pid in repeat:
        score[pid] = rules.buy_again_score
        reason[pid] = BUY_AGAIN
    for pid, c in views.items():
        if c >= rules.demote_views and pid not in engaged and pid in score:
            score[pid] *= rules.demote_factor
    # best score first, ties by product id: sort by id, then a stable sort by score (C-level keys)
    top = sorted(score)
    top.sort(key=score.__getitem__, reverse=True)
    del top[n:]
    ranked = list(zip(top, map(score.__getitem__, top), map(reason.get, top, _repeat(BATCH)),
                      strict=True))
    return _fill(ranked, n, trending, popular, frozenset(bought))


def _fill(ranked: list, n: int, trending: Sequence[int], popular: Sequence[int],
          bought: frozenset[int]) -> list:
    """Step 5: trending, then popular items below the last score, skipping bought/listed ones
    (appends plain ``Row`` tuples)."""
    if len(ranked) >= n:
        return ranked
    listed = {s[0] for s in ranked}
    floor = ranked[-1][1] if ranked else 1.0
    for source, reason in ((trending, TRENDING), (popular, POPULAR)):
        for pid in source:
            if len(ranked) >= n:
                return ranked
            if pid in listed or pid in bought:
                continue
            floor *= 0.99
            ranked.append((int(pid), floor, reason))
            listed.add(pid)
    return ranked
