"""Real-time decisions: score active sessions with the champion model, off the landing hot path.

The champion (``recomart.registry.champion_recommender("recomart_hybrid")``: ``recommend(user_ids,
n) -> DataFrame[user_id, product_id, score, rank]``) is loaded lazily in a thread and refreshed
periodically. Until a champion exists (or for users it knows nothing about) the decision falls
back to what is trending now, and says so in the record's ``source``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

MODEL_NAME = "recomart_hybrid"


def _load_registry_champion(name: str) -> Any:
    from recomart.registry import champion_recommender

    return champion_recommender(name)


def recs_by_user(frame: Any, n: int) -> dict[int, list[int]]:
    """A recommender's long DataFrame (user_id, product_id, rank|score) -> {user: [products]}."""
    if frame is None or len(frame) == 0:
        return {}
    order = "rank" if "rank" in frame.columns else None
    df = frame.sort_values(["user_id", order]) if order else frame
    out: dict[int, list[int]] = {}
    for uid, pid in zip(df["user_id"].tolist(), df["product_id"].tolist(), strict=True):
        items = out.setdefault(int(uid), [])
        if len(items) < n:
            items.append(int(pid))
    return out


class ChampionCache:
    """Lazily loaded, periodically refreshed champion; ``None`` while there is none."""

    def __init__(self, name: str = MODEL_NAME, refresh_s: float = 120.0,
                 loader: Callable[[str], Any] = _load_registry_champion) -> None:
        self.name, self.refresh_s, self.loader = name, refresh_s, loader
        self.model: Any = None
        self.loaded_at = float("-inf")
        self._warned = False

    def get(self) -> Any:
        if time.monotonic() - self.loaded_at < self.refresh_s:
            return self.model
        self.loaded_at = time.monotonic()
        try:
            self.model = self.loader(self.name)
            self._warned = False
        except Exception as exc:  # LookupError: no champion yet; anything else: registry trouble
            self.model = None
            if not self._warned:
                log.warning("no champion %s (%s): falling back to trending popularity",
                            self.name, exc)
                self._warned = True
        return self.model

    def recommend(self, user_ids: Sequence[int], n: int) -> dict[int, list[int]]:
        model = self.get()
        if model is None or not user_ids:
            return {}
        try:
            return recs_by_user(model.recommend(list(user_ids), n), n)
        except Exception:
            log.exception("champion %s failed to score %d users", self.name, len(user_ids))
            return {}


class Decider:
    """Tracks active sessions and turns the due ones into recommendation records."""

    def __init__(self, *, top_n: int = 20, interval_s: float = 10.0, idle_s: float = 1800.0,
                 refresh_s: float = 120.0, champion: ChampionCache | None = None) -> None:
        self.top_n, self.interval_s, self.idle_s = top_n, interval_s, idle_s
        self.champion = champion or ChampionCache(refresh_s=refresh_s)
        self.sessions: dict[str, list[Any]] = {}  # sid -> [user_id, last_seen, last_decided]
        self.dirty: set[str] = set()
        self.stats = {"decisions": 0, "champion": 0, "popularity": 0, "active_sessions": 0}

    def observe(self, sessions: Mapping[str, Sequence[Any]]) -> None:
        """Record activity: ``{session_id: [user_id, ts, ...]}`` from an activity summary."""
        now = time.monotonic()
        for sid, info in sessions.items():
            cur = self.sessions.get(sid)
            if cur is None:
                self.sessions[sid] = [int(info[0]), now, float("-inf")]
            else:
                cur[1] = now
            self.dirty.add(sid)

    def due(self) -> list[tuple[str, int]]:
        """Sessions with activity since their last decision and not decided within the interval."""
        now = time.monotonic()
        for sid in [s for s, v in self.sessions.items() if now - v[1] > self.idle_s]:
            del self.sessions[sid]
            self.dirty.discard(sid)
        ready = [sid for sid in self.dirty if now - self.sessions[sid][2] >= self.interval_s]
        for sid in ready:
            self.sessions[sid][2] = now
            self.dirty.discard(sid)
        self.stats["active_sessions"] = len(self.sessions)
        return [(sid, self.sessions[sid][0]) for sid in ready]

    def records(self, due: Sequence[tuple[str, int]], popular: Sequence[int],
                recs: Mapping[int, list[int]]) -> list[dict[str, Any]]:
        now = datetime.now(UTC).isoformat()
        out = []
        for sid, uid in due:
            items, source = recs.get(uid) or [], "champion"
            if not items:
                items, source = list(popular[: self.top_n]), "popularity"
            if not items:
                continue
            self.stats[source] += 1
            out.append({"session_id": sid, "user_id": uid, "product_ids": items, "source": source,
                        "model": self.champion.name if source == "champion" else None,
                        "generated_at": now})
        self.stats["decisions"] += len(out)
        return out

    async def decide(self, popular: Sequence[int]) -> list[dict[str, Any]]:
        due = self.due()
        if not due:
            return []
        users = sorted({uid for _, uid in due})
        recs = await asyncio.to_thread(self.champion.recommend, users, self.top_n)
        return self.records(due, popular, recs)
