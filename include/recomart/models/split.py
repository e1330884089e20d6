"""The evaluation split: per user, by time, hold out the last 20% of the items they touched.

Rules (so results compare across datasets):

- a user's items are ordered by their first interaction (ties by product id);
- users with >= 2 items hold out ``max(1, floor(holdout * n_items))`` items, the latest ones;
  users with a single item stay whole in training (and are not evaluated);
- training keeps only that user's events up to the first held-out item's time, so no held-out
  item is earlier than any of the user's training events (ties in time are allowed);
- a held-out item is *relevant* when rated >= 4 (explicit data) or purchased (shop data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recomart.models.data import normalize_events, to_pairs

Relevance = str | Callable[[pd.DataFrame], pd.Series]


@dataclass
class TemporalSplit:
    train: pd.DataFrame  # events (normalised, see data.normalize_events)
    test: pd.DataFrame   # held-out pairs (see data.to_pairs) with a boolean ``relevant`` column
    cutoff: pd.Series    # per user: time of the first held-out item


def resolve_relevance(events_or_pairs: pd.DataFrame, relevance: Relevance = "auto") -> Relevance:
    """``auto`` -> ``purchase`` when the data has purchases, else ``rating`` (>= 4)."""
    if relevance != "auto":
        return relevance
    if "event_type" in events_or_pairs and events_or_pairs["event_type"].eq("purchase").any():
        return "purchase"
    if "purchased" in events_or_pairs and events_or_pairs["purchased"].any():
        return "purchase"
    return "rating"


def relevant_mask(pairs: pd.DataFrame, relevance: Relevance) -> pd.Series:
    if callable(relevance):
        return relevance(pairs).astype(bool)
    if relevance == "rating":
        return pairs["rating"].fillna(0.0).ge(4.0)
    if relevance == "purchase":
        return pairs["purchased"].astype(bool)
    if relevance == "any":
        return pd.Series(True, index=pairs.index)
    raise ValueError(f"unknown relevance {relevance!r} (rating, purchase, any, auto or a callable)")


def temporal_split(interactions: pd.DataFrame, holdout: float = 0.2,
                   relevance: Relevance = "auto") -> TemporalSplit:
    """Split events per user by time (see module docstring)."""
    if not 0 < holdout < 1:
        raise ValueError("holdout must be in (0, 1)")
    events = normalize_events(interactions)
    relevance = resolve_relevance(events, relevance)
    pairs = to_pairs(events)  # sorted by user, first time, product id
    n = pairs.groupby("user_id", sort=False)["product_id"].transform("size").to_numpy()
    pos = pairs.groupby("user_id", sort=False).cumcount().to_numpy()
    n_test = np.where(n >= 2, np.maximum(1, np.floor(holdout * n)).astype(int), 0)
    is_test = pos >= n - n_test
    test = pairs.loc[is_test].reset_index(drop=True)
    cutoff = test.groupby("user_id")["timestamp"].min()
    test_keys = pd.MultiIndex.from_frame(test[["user_id", "product_id"]])
    ev_keys = pd.MultiIndex.from_frame(events[["user_id", "product_id"]])
    user_cut = events["user_id"].map(cutoff)
    keep = ~ev_keys.isin(test_keys) & (user_cut.isna() | (events["timestamp"] <= user_cut))
    train = events.loc[keep.to_numpy()].reset_index(drop=True)
    test["relevant"] = relevant_mask(test, relevance).to_numpy()
    return TemporalSplit(train=train, test=test, cutoff=cutoff)
