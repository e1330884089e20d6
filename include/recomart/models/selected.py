"""The registered model when a baseline beats the hybrid on the holdout.

Its per-user lists come from the winner (e.g. ``buy_again`` on a grocery shop, EASE on a small
catalog); similar items, audiences and users the winner has never seen come from the hybrid fitted
on the same data, so the serving outputs stay complete. Every list row carries a ``reason``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recomart.models.base import empty_recs

#: ``reason`` of a winner's list when the model cannot say more.
DEFAULT_REASONS = {"ease": "similar_users", "svd": "similar_users", "toppop": "popular",
                   "random": "random"}


class SelectedRecommender:
    """``recommend`` from ``primary`` (users it knows), everything else from ``hybrid``."""

    def __init__(self, primary: Any, hybrid: Any, exclude_seen: bool = True) -> None:
        self.primary = primary
        self.hybrid = hybrid
        self.exclude_seen = exclude_seen
        self.name = f"{primary.name}+hybrid"

    @property
    def item_ids(self) -> np.ndarray:
        return self.primary.item_ids

    def recommend(self, user_ids, n: int = 10, exclude_seen: bool | None = None,
                  **kwargs: Any) -> pd.DataFrame:
        users = np.unique(np.asarray(user_ids, dtype="int64"))
        known = self.primary.im_.user_index(users) >= 0
        frames = []
        if known.any():
            recs = self.primary.recommend(users[known], n=n, exclude_seen=self.exclude_seen
                                          if exclude_seen is None else exclude_seen)
            if hasattr(self.primary, "reasons"):
                recs["reason"] = self.primary.reasons(recs).to_numpy()
            else:
                recs["reason"] = DEFAULT_REASONS.get(self.primary.name, self.primary.name)
            frames.append(recs)
        if (~known).any():
            frames.append(self.hybrid.recommend(users[~known], n=n, **kwargs))
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else empty_recs()

    def similar_items(self, product_ids, n: int = 10, **kwargs: Any) -> pd.DataFrame:
        return self.hybrid.similar_items(product_ids, n, **kwargs)

    def audience(self, product_ids, n: int = 100, **kwargs: Any) -> pd.DataFrame:
        return self.hybrid.audience(product_ids, n, **kwargs)
