"""Top-N ranking metrics with binary relevance, vectorised over users in numpy.

Definitions (per evaluated user, then averaged over users with >= 1 relevant held-out item):

- NDCG@k: DCG of the top k (gain 1 per hit, discount 1/log2(rank+1)) over the ideal DCG of
  min(k, #relevant) hits;
- Recall@k: hits in the top k / #relevant;
- HR@k: 1 when the top k holds at least one hit;
- MAP@k: sum over hit ranks r <= k of precision@r, divided by min(k, #relevant);
- user coverage: share of evaluated users who got at least one recommendation;
- catalog coverage: share of the training catalog shown to someone in a top 10.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k from a users x ranks boolean hit matrix (rank 1 in column 0)."""
    h = hits[:, :k].astype(np.float64)
    disc = discounts(k)[: h.shape[1]]
    dcg = h @ disc
    ideal = np.cumsum(discounts(k))[np.clip(np.minimum(k, n_relevant), 1, None) - 1]
    return np.where(n_relevant > 0, dcg / ideal, 0.0)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    found = hits[:, :k].sum(axis=1)
    return np.where(n_relevant > 0, found / np.maximum(n_relevant, 1), 0.0)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(np.float64)


def average_precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k].astype(np.float64)
    precision = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    denom = np.maximum(np.minimum(k, n_relevant), 1)
    return np.where(n_relevant > 0, (precision * h).sum(axis=1) / denom, 0.0)


def hit_matrix(recs: pd.DataFrame, relevant: pd.DataFrame, users: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean users x k hit matrix and the per-user count of recommendations (<= k).

    ``recs`` has user_id, product_id, rank (1-based); ``relevant`` has user_id, product_id.
    """
    recs = recs.loc[recs["rank"].le(k) & recs["user_id"].isin(users)]
    row = np.searchsorted(users, recs["user_id"].to_numpy())
    col = recs["rank"].to_numpy().astype(np.int64) - 1
    rel_keys = pd.MultiIndex.from_frame(relevant[["user_id", "product_id"]])
    is_hit = pd.MultiIndex.from_frame(recs[["user_id", "product_id"]]).isin(rel_keys)
    hits = np.zeros((len(users), k), dtype=bool)
    hits[row[is_hit], col[is_hit]] = True
    n_recs = np.bincount(row, minlength=len(users))
    return hits, n_recs


def ranking_metrics(recs: pd.DataFrame, relevant: pd.DataFrame, n_catalog: int,
                    k: int = 10, recall_k: int = 20) -> dict[str, float]:
    """Protocol metrics for recommendations against the relevant held-out pairs."""
    rel = relevant[["user_id", "product_id"]].drop_duplicates()
    users = np.unique(rel["user_id"].to_numpy())
    if len(users) == 0:
        raise ValueError("no user has a relevant held-out item")
    n_rel = np.bincount(np.searchsorted(users, rel["user_id"].to_numpy()), minlength=len(users))
    depth = max(k, recall_k)
    hits, n_recs = hit_matrix(recs, rel, users, depth)
    top_k = recs.loc[recs["rank"].le(k) & recs["user_id"].isin(users), "product_id"]
    return {
        f"ndcg@{k}": float(ndcg_at_k(hits, n_rel, k).mean()),
        f"recall@{k}": float(recall_at_k(hits, n_rel, k).mean()),
        f"recall@{recall_k}": float(recall_at_k(hits, n_rel, recall_k).mean()),
        f"hr@{k}": float(hit_rate_at_k(hits, k).mean()),
        f"map@{k}": float(average_precision_at_k(hits, n_rel, k).mean()),
        "user_coverage": float((n_recs > 0).mean()),
        "catalog_coverage": float(top_k.nunique() / max(n_catalog, 1)),
        "eval_users": len(users),
    }
