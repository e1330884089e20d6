"""Item content vectors: TF-IDF over title, description, category, subcategory and brand.

They make items without interactions reachable (similar items, user profiles built from what the
user touched) and give the hybrid a content-similarity candidate source and feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def item_text(products: pd.DataFrame) -> pd.Series:
    def col(name: str) -> pd.Series:
        if name not in products:
            return pd.Series("", index=products.index)
        return products[name].fillna("").astype(str)

    cats = (col("category") + " " + col("subcategory").str.replace("|", " ")).str.strip()
    # Category tokens are prefixed so a genre word and the same word in a title stay distinct.
    cat_tokens = cats.str.split().map(lambda ws: " ".join(f"cat_{w.lower()}" for w in ws))
    brand = col("brand").map(lambda b: f"brand_{b.lower().replace(' ', '_')}" if b else "")
    return col("title") + " " + col("description") + " " + cat_tokens + " " + brand


class ContentModel:
    """L2-normalised TF-IDF vectors per product id, with cosine neighbours and user profiles."""

    def __init__(self, max_features: int = 20000, min_df: int = 1) -> None:
        self.max_features = max_features
        self.min_df = min_df

    def fit(self, products: pd.DataFrame) -> ContentModel:
        from sklearn.feature_extraction.text import TfidfVectorizer

        products = products.drop_duplicates("product_id").sort_values("product_id")
        self.product_ids_ = products["product_id"].astype("int64").to_numpy()
        vec = TfidfVectorizer(max_features=self.max_features, min_df=self.min_df,
                              sublinear_tf=True, stop_words="english", dtype=np.float32,
                              token_pattern=r"(?u)\b\w[\w_]+\b")
        self.vectors_ = sp.csr_matrix(vec.fit_transform(item_text(products)), dtype=np.float32)
        return self

    def index(self, product_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(product_ids, dtype="int64")
        pos = np.clip(np.searchsorted(self.product_ids_, ids), 0, len(self.product_ids_) - 1)
        return np.where(self.product_ids_[pos] == ids, pos, -1)

    def vectors(self, product_ids: np.ndarray) -> sp.csr_matrix:
        """Rows for the given ids (zero rows for unknown ids)."""
        idx = self.index(product_ids)
        out = self.vectors_[np.clip(idx, 0, None)].tocsr()
        out = sp.diags((idx >= 0).astype(np.float32)) @ out
        return sp.csr_matrix(out)

    def profiles(self, user_item_weights: sp.csr_matrix, item_ids: np.ndarray) -> sp.csr_matrix:
        """L2-normalised user profiles: weighted sums of item vectors (users x terms)."""
        prof = sp.csr_matrix(user_item_weights @ self.vectors(item_ids))
        norms = np.sqrt(np.asarray(prof.multiply(prof).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ prof)

    def similarity(self, left: sp.csr_matrix, item_ids: np.ndarray) -> np.ndarray:
        """Dense cosine similarity of row vectors in ``left`` to the given items."""
        from recomart.models.sparse_products import dense_product

        return dense_product(left, self.vectors(item_ids).T).astype(np.float32, copy=False)

    def similar_items(self, product_ids: np.ndarray, n: int = 10,
                      among: np.ndarray | None = None) -> pd.DataFrame:
        """Top-n content neighbours for each product (itself excluded)."""
        from recomart.models.base import top_n

        product_ids = np.asarray(product_ids, dtype="int64")
        pool = self.product_ids_ if among is None else np.asarray(among, dtype="int64")
        sims = self.similarity(self.vectors(product_ids), pool).astype(np.float64)
        sims[pool[None, :] == product_ids[:, None]] = -np.inf
        sims[sims <= 0] = -np.inf
        idx, sc = top_n(sims, n)
        valid = np.isfinite(sc)
        src = np.repeat(product_ids, idx.shape[1]).reshape(idx.shape)
        return pd.DataFrame({"product_id": src[valid], "similar_product_id": pool[idx[valid]],
                             "score": sc[valid],
                             "rank": np.cumsum(valid, axis=1)[valid].astype("int64")})
