"""The two offline protocols every model (and the champion) is scored on, on any canonical source.

- ``explore``: one **global** time cut (every user cut at the same instant: the last 20 % of the
  time span, or a given ``cut``). Models train on every event before the cut, so no model sees any
  user's future (TopPop and co-occurrence included). Evaluated: users with a training history and
  >= 1 relevant item after the cut; relevant = items the user had not touched before the cut and
  rated >= 4 (explicit) or purchased (shop) after it; the user's earlier items are not rankable.
- ``next_basket`` (repeat-aware): per user with >= 2 orders, the last order (by time) is held out;
  relevant = its items; every item is rankable, including ones bought before. Training keeps the
  user's events up to 2 hours before the held-out order (its checkout session is not training
  data), plus other users' events before the latest held-out order's time (the usual next-basket
  protocol, Li et al. TOIS 2023).

Both give a ``ProtocolSplit``: training events, relevant (user, item) pairs, the evaluated users,
whether seen items are excluded, and the cut-off per user (for point-in-time features).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recomart.errors import PermanentError
from recomart.models.data import normalize_events
from recomart.models.split import Relevance, resolve_relevance

log = logging.getLogger(__name__)
PROTOCOLS = ("explore", "next_basket")


class ProtocolError(PermanentError):
    """The data cannot support a protocol (too few users, no orders): says which and why."""


@dataclass
class ProtocolSplit:
    name: str
    train: pd.DataFrame          # normalised events the models are fitted on
    relevant: pd.DataFrame       # user_id, product_id: what counts as a hit
    users: np.ndarray            # evaluated users (sorted)
    exclude_seen: bool           # explore: True; next basket: False
    cutoff: pd.Series            # per evaluated user: time their held-out period starts
    info: dict[str, Any] = field(default_factory=dict)


def explore_split(interactions: pd.DataFrame, cut: pd.Timestamp | str | None = None,
                  test_share: float = 0.2, relevance: Relevance = "auto") -> ProtocolSplit:
    """Global time cut; relevant = new items rated >= 4 or purchased after the cut."""
    events = normalize_events(interactions)
    if events.empty:
        raise ProtocolError("explore: no interactions")
    relevance = resolve_relevance(events, relevance)
    t0, t1 = events["timestamp"].min(), events["timestamp"].max()
    if cut is None:
        cut = t0 + (t1 - t0) * (1 - test_share)
    cut = pd.Timestamp(cut)
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    before = events["timestamp"] < cut
    train, after = events.loc[before].reset_index(drop=True), events.loc[~before]
    seen = pd.MultiIndex.from_frame(train[["user_id", "product_id"]])
    known = after["user_id"].isin(train["user_id"].unique())
    new = ~pd.MultiIndex.from_frame(after[["user_id", "product_id"]]).isin(seen)
    if callable(relevance):
        rel_mask = relevance(after).astype(bool).to_numpy()
    elif relevance == "rating":
        rel_mask = after["rating"].fillna(0).ge(4.0).to_numpy()
    elif relevance == "purchase":
        rel_mask = after["event_type"].eq("purchase").to_numpy()
    elif relevance == "any":
        rel_mask = np.ones(len(after), bool)
    else:
        raise ProtocolError(f"unknown relevance {relevance!r}")
    rel = after.loc[known.to_numpy() & new & rel_mask, ["user_id", "product_id"]].drop_duplicates()
    if rel.empty:
        raise ProtocolError(f"explore: no user has a relevant new item after the cut {cut}")
    users = np.unique(rel["user_id"].to_numpy())
    info = {"cut": cut.isoformat(), "train_events": len(train), "test_events": int((~before).sum()),
            "relevant_pairs": len(rel), "eval_users": len(users),
            "relevance": relevance if isinstance(relevance, str) else "custom"}
    return ProtocolSplit("explore", train, rel.reset_index(drop=True), users, True,
                         pd.Series(cut, index=users), info)


def baskets(orders: pd.DataFrame) -> pd.DataFrame:
    """One row per order: order_id, user_id, timestamp (first line's time)."""
    return (orders.groupby("order_id", sort=False)
            .agg(user_id=("user_id", "first"), timestamp=("timestamp", "min")).reset_index())


SESSION_GAP = pd.Timedelta(hours=2)


def next_basket_split(interactions: pd.DataFrame, orders: pd.DataFrame,
                      min_users: int = 5, session_gap: pd.Timedelta = SESSION_GAP) -> ProtocolSplit:
    """Per user with >= 2 orders the last order is held out; every item is rankable. The user's
    events in the ``session_gap`` before the held-out order (the browsing and cart events of the
    checkout session) are dropped too, so the basket is predicted, not read off the cart."""
    if orders is None or orders.empty:
        raise ProtocolError("next_basket: the source has no orders")
    orders = orders.assign(timestamp=pd.to_datetime(orders["timestamp"], utc=True))
    b = baskets(orders).sort_values(["user_id", "timestamp", "order_id"], kind="stable")
    n_orders = b.groupby("user_id")["order_id"].transform("size")
    last = b.loc[n_orders.ge(2)].groupby("user_id").tail(1)
    if len(last) < min_users:
        raise ProtocolError(f"next_basket: only {len(last)} users have >= 2 orders "
                            f"(need {min_users})")
    held = orders.loc[orders["order_id"].isin(last["order_id"]), ["user_id", "product_id"]]
    rel = held.drop_duplicates().reset_index(drop=True)
    cutoff = last.set_index("user_id")["timestamp"].sort_index()
    events = normalize_events(interactions)
    user_cut = events["user_id"].map(cutoff)
    # the evaluated user's own events stop before the held-out order; others' before the last cut
    global_cut = cutoff.max()
    keep = np.where(user_cut.notna(), events["timestamp"] < user_cut - session_gap,
                    events["timestamp"] < global_cut)
    train = events.loc[np.asarray(keep, bool)].reset_index(drop=True)
    users = np.intersect1d(cutoff.index.to_numpy(), train["user_id"].unique())
    rel = rel.loc[rel["user_id"].isin(users)].reset_index(drop=True)
    prior = train.loc[train["event_type"].eq("purchase") & train["user_id"].isin(users)]
    prior_keys = pd.MultiIndex.from_frame(prior[["user_id", "product_id"]])
    repeat = pd.MultiIndex.from_frame(rel[["user_id", "product_id"]]).isin(prior_keys)
    info = {"train_events": len(train), "held_out_orders": len(last), "relevant_pairs": len(rel),
            "eval_users": len(users), "repeat_share_of_held_out": round(float(repeat.mean()), 4)
            if len(rel) else 0.0, "relevance": "items of the held-out order"}
    return ProtocolSplit("next_basket", train, rel, users, False, cutoff.loc[users], info)


def repeat_share(orders: pd.DataFrame) -> dict[str, Any]:
    """How repeat-heavy a shop is: the share of order lines whose product the same user bought
    in an earlier order, and the share of users with a repeat purchase."""
    if orders is None or orders.empty:
        return {"order_lines": 0, "repeat_lines": 0, "repeat_share": 0.0, "repeat_users_share": 0.0}
    o = orders.assign(timestamp=pd.to_datetime(orders["timestamp"], utc=True))
    o = o.sort_values(["timestamp", "order_id"], kind="stable")
    first_order = o.groupby(["user_id", "product_id"])["order_id"].transform("first")
    repeat = o["order_id"].ne(first_order)
    users = o.groupby("user_id")["order_id"].nunique()
    rep_users = o.loc[repeat, "user_id"].nunique()
    return {"order_lines": len(o), "repeat_lines": int(repeat.sum()),
            "repeat_share": round(float(repeat.mean()), 4),
            "repeat_users_share": round(rep_users / max(int((users >= 2).sum()), 1), 4)}
