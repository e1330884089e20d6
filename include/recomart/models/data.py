"""Interactions: one event-level frame from the canonical tables, and its per-(user, item) pairs.

Every model and the evaluation protocol see the same shapes, whatever the source: MovieLens gives
explicit ratings; a shop gives clickstream events, order lines and ratings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

EVENT_COLUMNS = ["user_id", "product_id", "timestamp", "rating", "event_type"]
#: Strength of one event for implicit models (a rating counts like an add-to-cart).
EVENT_STRENGTH = {"view": 1.0, "add_to_cart": 2.0, "rating": 2.0, "purchase": 3.0}
#: Pseudo-rating (1-5 scale) for the rating model when a pair has no explicit rating.
IMPLICIT_RATING = {1.0: 3.0, 2.0: 4.0, 3.0: 5.0}


def _utc(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, utc=True)


def epoch_seconds(ts: pd.Series) -> np.ndarray:
    """Whole seconds since 1970 for tz-aware timestamps of any resolution (ns, us, s)."""
    return ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def interactions_from_tables(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Event-level interactions from canonical frames (ratings, clickstream, orders as purchases)."""
    parts: list[pd.DataFrame] = []
    ratings = tables.get("ratings")
    if ratings is not None and len(ratings):
        parts.append(pd.DataFrame({
            "user_id": ratings["user_id"].astype("int64"),
            "product_id": ratings["product_id"].astype("int64"),
            "timestamp": _utc(ratings["timestamp"]),
            "rating": ratings["rating"].astype("float64"), "event_type": "rating"}))
    clicks = tables.get("clickstream")
    if clicks is not None and len(clicks):
        parts.append(pd.DataFrame({
            "user_id": clicks["user_id"].astype("int64"),
            "product_id": clicks["product_id"].astype("int64"),
            "timestamp": _utc(clicks["timestamp"]), "rating": np.nan,
            "event_type": clicks["event_type"].astype(str)}))
    orders = tables.get("orders")
    if orders is not None and len(orders):
        parts.append(pd.DataFrame({
            "user_id": orders["user_id"].astype("int64"),
            "product_id": orders["product_id"].astype("int64"),
            "timestamp": _utc(orders["timestamp"]), "rating": np.nan, "event_type": "purchase"}))
    if not parts:
        raise ValueError("no interactions: ratings, clickstream and orders are all empty")
    events = pd.concat(parts, ignore_index=True)
    return events.sort_values(["timestamp", "user_id", "product_id"], kind="stable",
                              ignore_index=True)


def normalize_events(interactions: pd.DataFrame) -> pd.DataFrame:
    """Accept any frame with user_id, product_id, timestamp (+ rating / event_type) as events."""
    df = interactions
    missing = {"user_id", "product_id", "timestamp"} - set(df.columns)
    if missing:
        raise ValueError(f"interactions lack columns {sorted(missing)}")
    # ``.array`` keeps tz-aware timestamps and strings columnar: ``to_numpy()`` on them builds
    # one Python object per row (a Timestamp each), which cost seconds per million events
    out = pd.DataFrame({
        "user_id": df["user_id"].astype("int64").to_numpy(),
        "product_id": df["product_id"].astype("int64").to_numpy(),
        "timestamp": _utc(df["timestamp"]).array,
        "rating": (df["rating"].astype("float64").to_numpy() if "rating" in df
                   else np.full(len(df), np.nan)),
    })
    if "event_type" in df:
        out["event_type"] = df["event_type"].astype(str).array
    else:
        out["event_type"] = np.where(out["rating"].notna(), "rating", "view")
    return out


def to_pairs(interactions: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, item): first/last time, last rating, max strength, purchased, events.

    A frame that already is pairs (has ``strength`` and no duplicate pair) is returned as is.
    """
    if "strength" in interactions.columns and not interactions.duplicated(
            ["user_id", "product_id"]).any():
        return interactions
    ev = normalize_events(interactions)
    ev["strength"] = ev["event_type"].map(EVENT_STRENGTH).fillna(1.0)
    ev["purchased"] = ev["event_type"].eq("purchase")
    ev = ev.sort_values("timestamp", kind="stable")
    g = ev.groupby(["user_id", "product_id"], sort=False)
    pairs = pd.DataFrame({
        "timestamp": g["timestamp"].min(), "last_timestamp": g["timestamp"].max(),
        "rating": g["rating"].last(), "strength": g["strength"].max(),
        "purchased": g["purchased"].any(), "n_events": g.size(),
    }).reset_index()
    return pairs.sort_values(["user_id", "timestamp", "product_id"], ignore_index=True)


def model_ratings(pairs: pd.DataFrame) -> pd.Series:
    """Explicit rating where known, else a pseudo-rating from the strongest event (for SVD)."""
    return pairs["rating"].fillna(pairs["strength"].map(IMPLICIT_RATING).fillna(3.0))


@dataclass
class InteractionMatrix:
    """Users x items CSR matrix of training pairs with the id <-> index maps."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    matrix: sp.csr_matrix  # binary (1 per seen pair), float32

    @classmethod
    def from_pairs(cls, pairs: pd.DataFrame) -> InteractionMatrix:
        user_ids = np.unique(pairs["user_id"].to_numpy())
        item_ids = np.unique(pairs["product_id"].to_numpy())
        rows = np.searchsorted(user_ids, pairs["user_id"].to_numpy())
        cols = np.searchsorted(item_ids, pairs["product_id"].to_numpy())
        m = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (rows, cols)),
                          shape=(len(user_ids), len(item_ids)))
        m.data[:] = 1.0
        return cls(user_ids, item_ids, m)

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        """Row per user id, -1 for users not in training."""
        return _lookup(self.user_ids, np.asarray(user_ids, dtype="int64"))

    def item_index(self, item_ids: np.ndarray) -> np.ndarray:
        return _lookup(self.item_ids, np.asarray(item_ids, dtype="int64"))


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.clip(pos, 0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1).astype(np.int64)
