"""Features for the re-ranker, computed from training interactions (or supplied externally).

User: activity, mean/std rating, recency, span, mainstreamness (mean item popularity), purchase
rate. Item: popularity, mean rating, trend (last 30 days), age. User-item: category and genre
(subcategory) affinity, item popularity in the 90 days before the user's latest activity and the
item's age at that time. Externally supplied frames keyed by ``user_id`` / ``product_id`` (the
feature store) add their numeric columns as ``ext_u_*`` / ``ext_i_*``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recomart.models.data import InteractionMatrix, epoch_seconds

DAY = 86400.0
LOCAL_WINDOW_DAYS = 90.0
TREND_DAYS = 30.0


def _numeric(frame: pd.DataFrame | None, key: str, prefix: str) -> pd.DataFrame | None:
    if frame is None or len(frame) == 0:
        return None
    num = frame.drop_duplicates(key, keep="last").set_index(key)
    num = num.select_dtypes(include=["number", "bool"]).astype("float32")
    return num.add_prefix(prefix) if len(num.columns) else None


def _genres(products: pd.DataFrame, item_ids: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Items x genres multi-hot (rows normalised) and each item's category code."""
    prod = products.drop_duplicates("product_id").set_index("product_id").reindex(item_ids)
    cats = prod["category"].fillna("?").astype(str) if "category" in prod else pd.Series(
        "?", index=prod.index)
    sub = prod["subcategory"].fillna("") if "subcategory" in prod else pd.Series("", index=prod.index)
    tokens = (cats + "|" + sub.astype(str)).str.split("|").map(lambda ts: sorted({t for t in ts if t}))
    vocab = {g: j for j, g in enumerate(sorted({g for ts in tokens for g in ts}))}
    rows = np.repeat(np.arange(len(tokens)), tokens.map(len).to_numpy())
    cols = np.array([vocab[g] for ts in tokens for g in ts], dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(tokens), len(vocab)))
    norm = np.asarray(m.sum(axis=1)).ravel()
    m = sp.csr_matrix(sp.diags(1.0 / np.maximum(norm, 1)) @ m)
    cat_codes = pd.Categorical(cats).codes.astype(np.int64)
    return m, cat_codes


class FeatureBuilder:
    """Learns user/item statistics from training pairs and builds candidate feature matrices."""

    def fit(self, pairs: pd.DataFrame, products: pd.DataFrame, im: InteractionMatrix,
            user_features: pd.DataFrame | None = None,
            item_features: pd.DataFrame | None = None) -> FeatureBuilder:
        self.im_ = im
        ts = epoch_seconds(pairs["timestamp"])
        last = epoch_seconds(pairs["last_timestamp"])
        self.t0_ = int(ts.min())
        self.ref_ = float(last.max())
        u = im.user_index(pairs["user_id"].to_numpy())
        i = im.item_index(pairs["product_id"].to_numpy())
        nu, ni = len(im.user_ids), len(im.item_ids)
        rating = pairs["rating"].to_numpy(dtype=np.float64)
        has_r = ~np.isnan(rating)
        r0 = np.where(has_r, rating, 0.0)

        def per(idx, n, w):
            return np.bincount(idx, weights=w, minlength=n)

        item_n = per(i, ni, np.ones(len(i)))
        item_rn = per(i, ni, has_r.astype(float))
        item_first = np.full(ni, np.inf)
        np.minimum.at(item_first, i, ts.astype(float))
        item_recent = per(i, ni, (ts >= self.ref_ - TREND_DAYS * DAY).astype(float))
        self.item_ = pd.DataFrame({
            "i_pop": np.log1p(item_n),
            "i_mean_rating": np.where(item_rn > 0, per(i, ni, r0) / np.maximum(item_rn, 1), np.nan),
            "i_n_ratings": np.log1p(item_rn),
            "i_trend": np.log1p(item_recent),
            "i_age_days": (self.ref_ - item_first) / DAY,
        }).astype("float32")
        user_n = per(u, nu, np.ones(len(u)))
        user_rn = per(u, nu, has_r.astype(float))
        mean_r = np.where(user_rn > 0, per(u, nu, r0) / np.maximum(user_rn, 1), np.nan)
        sq = per(u, nu, r0**2)
        user_last = np.zeros(nu)
        np.maximum.at(user_last, u, last.astype(float))
        user_first = np.full(nu, np.inf)
        np.minimum.at(user_first, u, ts.astype(float))
        purchased = pairs["purchased"].to_numpy(dtype=float) if "purchased" in pairs else np.zeros(len(u))
        self.user_last_ = user_last
        self.user_ = pd.DataFrame({
            "u_items": np.log1p(user_n),
            "u_mean_rating": mean_r,
            "u_std_rating": np.sqrt(np.maximum(sq / np.maximum(user_rn, 1) - mean_r**2, 0)),
            "u_days_since_last": (self.ref_ - user_last) / DAY,
            "u_span_days": (user_last - user_first) / DAY,
            "u_mainstream": per(u, nu, np.log1p(item_n)[i]) / np.maximum(user_n, 1),
            "u_purchase_rate": per(u, nu, purchased) / np.maximum(user_n, 1),
        }).astype("float32")
        # Time-local popularity: sorted keys item * 2^34 + seconds since t0.
        self.keys_ = np.sort(i.astype(np.int64) * (1 << 34) + (ts - self.t0_))
        genres, cat_codes = _genres(products, im.item_ids)
        self.item_genres_ = genres
        self.item_cat_ = cat_codes
        x = im.matrix
        self.user_genres_ = sp.csr_matrix(sp.diags(1.0 / np.maximum(user_n, 1)) @ (x @ genres))
        n_cat = int(cat_codes.max()) + 1 if len(cat_codes) else 1
        onehot = sp.csr_matrix((np.ones(ni, np.float32), (np.arange(ni), cat_codes)), shape=(ni, n_cat))
        self.user_cats_ = sp.csr_matrix(sp.diags(1.0 / np.maximum(user_n, 1)) @ (x @ onehot))
        self.ext_user_ = _numeric(user_features, "user_id", "ext_u_")
        self.ext_item_ = _numeric(item_features, "product_id", "ext_i_")
        return self

    def transform(self, cands: pd.DataFrame) -> pd.DataFrame:
        """Feature frame aligned with ``cands`` (which holds user_id, product_id and source cols)."""
        u = self.im_.user_index(cands["user_id"].to_numpy())
        i = self.im_.item_index(cands["product_id"].to_numpy())
        feats = [cands.drop(columns=["user_id", "product_id"]).reset_index(drop=True)
                 .astype("float32"),
                 self.user_.iloc[u].reset_index(drop=True), self.item_.iloc[i].reset_index(drop=True)]
        t_u = self.user_last_[u].astype(np.int64) - self.t0_
        base = i.astype(np.int64) * (1 << 34)
        hi = np.searchsorted(self.keys_, base + t_u, side="right")
        lo = np.searchsorted(self.keys_, base + np.maximum(t_u - int(LOCAL_WINDOW_DAYS * DAY), 0),
                             side="left")
        item_first = self.ref_ - self.item_["i_age_days"].to_numpy()[i] * DAY
        genre_aff = np.asarray(self.user_genres_[u].multiply(self.item_genres_[i]).sum(axis=1)).ravel()
        cat_aff = np.asarray(self.user_cats_[u, self.item_cat_[i]]).ravel()
        cross = pd.DataFrame({
            "ui_local_pop": np.log1p(np.maximum(hi - lo, 0)),
            "ui_item_age_at_user": (self.user_last_[u] - item_first) / DAY,
            "ui_genre_affinity": genre_aff,
            "ui_category_affinity": cat_aff,
            "ui_pop_gap": self.item_["i_pop"].to_numpy()[i] - self.user_["u_mainstream"].to_numpy()[u],
        }).astype("float32")
        feats.append(cross)
        for ext, key in ((self.ext_user_, "user_id"), (self.ext_item_, "product_id")):
            if ext is not None:
                feats.append(ext.reindex(cands[key].to_numpy()).reset_index(drop=True))
        return pd.concat(feats, axis=1)
