"""Recommendations for users without history: recency-weighted popularity of their segment.

Segments come from demographics (region, gender, 10-year age band). A new user gets the popular
items of the finest segment level they belong to that had at least ``min_segment_users`` training
users, falling back to coarser levels and finally to global popularity; recent interactions weigh
more (half-life ``half_life_days``), so the lists follow what is selling now.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recomart.models.base import top_n
from recomart.models.data import InteractionMatrix, epoch_seconds

SEGMENT_LEVELS: tuple[tuple[str, ...], ...] = (("region", "gender", "age_band"), ("region",),
                                               ("gender", "age_band"))
GLOBAL = ((), "")


def segments(users: pd.DataFrame | None) -> pd.DataFrame | None:
    """user_id-indexed region / gender / age_band (None when unknown; gender 'U' is unknown)."""
    if users is None or len(users) == 0:
        return None
    seg = pd.DataFrame({"user_id": users["user_id"].astype("int64").to_numpy()})
    for col in ("region", "gender"):
        seg[col] = users[col].astype("object").to_numpy() if col in users else None
    if "age" in users:
        age = pd.to_numeric(users["age"], errors="coerce").to_numpy(dtype="float64")
        seg["age_band"] = np.where(np.isnan(age), None,
                                   (np.nan_to_num(age) // 10 * 10).astype(int).astype(str))
    else:
        seg["age_band"] = None
    seg = seg.replace({"U": None, "": None})
    return seg.drop_duplicates("user_id", keep="last").set_index("user_id")


def _labels(frame: pd.DataFrame, level: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row mask where every column of ``level`` is known, and the joined label of those rows."""
    keys = frame[list(level)]
    ok = keys.notna().all(axis=1).to_numpy()
    parts = [keys.loc[ok, c].astype(str).to_numpy(dtype=object) for c in level]
    label = parts[0]
    for part in parts[1:]:
        label = label + "|" + part
    return ok, label


class SegmentPopularity:
    """Fitted per-segment, recency-weighted item popularity over the training catalog."""

    def __init__(self, half_life_days: float = 30.0, min_segment_users: int = 20) -> None:
        self.half_life_days = half_life_days
        self.min_segment_users = min_segment_users

    def fit(self, pairs: pd.DataFrame, users: pd.DataFrame | None,
            im: InteractionMatrix) -> SegmentPopularity:
        self.item_ids_ = im.item_ids
        last = epoch_seconds(pairs["last_timestamp"]).astype(np.float64)
        w = 0.5 ** ((last.max() - last) / 86400.0 / self.half_life_days)
        items = im.item_index(pairs["product_id"].to_numpy())
        n_items = len(im.item_ids)
        self.pop_: dict[tuple[tuple[str, ...], str], np.ndarray] = {
            GLOBAL: np.bincount(items, weights=w, minlength=n_items)}
        self.segments_ = segments(users)
        if self.segments_ is None:
            return self
        seg = self.segments_.reindex(pairs["user_id"].to_numpy())
        for level in SEGMENT_LEVELS:
            ok, label = _labels(seg, level)
            if not ok.any():
                continue
            frame = pd.DataFrame({"label": label, "user": pairs["user_id"].to_numpy()[ok],
                                  "item": items[ok], "w": w[ok]})
            n_users = frame.groupby("label")["user"].nunique()
            big = n_users.index[n_users >= self.min_segment_users]
            sums = frame.loc[frame["label"].isin(big)].groupby(["label", "item"])["w"].sum()
            for lab, part in sums.groupby(level="label"):
                pop = np.zeros(n_items)
                pop[part.index.get_level_values("item").to_numpy()] = part.to_numpy()
                self.pop_[(level, str(lab))] = pop
        return self

    def segment_of(self, user_ids: np.ndarray, users: pd.DataFrame | None = None) -> list[tuple]:
        """The fitted segment key used for each user (``GLOBAL`` when none applies)."""
        frames = [f for f in (segments(users), self.segments_) if f is not None]
        keys = [GLOBAL] * len(user_ids)
        if not frames:
            return keys
        seg = pd.concat(frames)
        seg = seg.loc[~seg.index.duplicated()].reindex(user_ids)
        done = np.zeros(len(user_ids), dtype=bool)
        for level in SEGMENT_LEVELS:
            ok, label = _labels(seg, level)
            for pos, lab in zip(np.flatnonzero(ok), label, strict=True):
                if not done[pos] and (level, str(lab)) in self.pop_:
                    keys[pos] = (level, str(lab))
                    done[pos] = True
        return keys

    def recommend(self, user_ids: np.ndarray, n: int,
                  users: pd.DataFrame | None = None) -> pd.DataFrame:
        """Top-n per user: segment popularity (+10% of global to break ties), else global."""
        user_ids = np.asarray(user_ids, dtype="int64")
        keys = self.segment_of(user_ids, users)
        glob = self.pop_[GLOBAL] / max(self.pop_[GLOBAL].max(), 1e-12)
        frames = []
        for key in dict.fromkeys(keys):
            members = user_ids[[k == key for k in keys]]
            pop = self.pop_[key]
            score = glob if key == GLOBAL else pop / max(pop.max(), 1e-12) + 0.1 * glob
            idx, sc = top_n(score[None, :], n)
            m = idx.shape[1]
            frames.append(pd.DataFrame({
                "user_id": np.repeat(members, m), "product_id": np.tile(self.item_ids_[idx[0]], len(members)),
                "score": np.tile(sc[0], len(members)),
                "rank": np.tile(np.arange(1, m + 1), len(members))}))
        out = pd.concat(frames, ignore_index=True)
        return out.astype({"user_id": "int64", "product_id": "int64", "rank": "int64"})
