"""Feature engineering: user, item and user–item features from the curated tables, as of a date.

Everything is computed as of the end of the logical date ``ds`` (``as_of = ds + 1 day``, UTC): rows
with a timestamp at or after ``as_of`` are dropped first, so a snapshot never sees its own future
and point-in-time retrieval stays honest. The code is vectorised pandas/numpy (group-bys on integer
keys, ``bincount`` for the category matrix); TF-IDF + truncated SVD gives the item content vector.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recomart.curated import (
    DAY,
    TS,
    NothingPublishedError,
    logical_date_end,
    published_pointer,
    published_version,
    read_curated,
)
from recomart.features.definitions import (
    CONTENT_DIM,
    EVENT_WEIGHTS,
    ITEM_FEATURES,
    RATING_WEIGHT,
    USER_FEATURES,
    USER_ITEM_FEATURES,
)
from recomart.lake import Lake

log = logging.getLogger(__name__)



@dataclass
class CuratedInputs:
    """The curated tables, cut at ``as_of`` and de-duplicated by their keys."""

    as_of: pd.Timestamp
    users: pd.DataFrame
    products: pd.DataFrame
    orders: pd.DataFrame
    ratings: pd.DataFrame
    clickstream: pd.DataFrame
    versions: dict[str, int | None]

    @property
    def interactions(self) -> pd.DataFrame:
        """Implicit + explicit feedback as weighted events: clickstream (view 1, cart 3,
        purchase 5) and ratings (RATING_WEIGHT), so rating-only sources (MovieLens) get signal."""
        cs, r = self.clickstream, self.ratings
        return pd.DataFrame({
            "user_id": np.concatenate([cs["user_id"].to_numpy("int64"), r["user_id"].to_numpy("int64")]),
            "product_id": np.concatenate([cs["product_id"].to_numpy("int64"),
                                          r["product_id"].to_numpy("int64")]),
            "timestamp": pd.concat([cs["timestamp"], r["timestamp"]], ignore_index=True).astype(TS),
            "weight": np.concatenate([cs["_weight"].to_numpy("float64"),
                                      np.full(len(r), RATING_WEIGHT)]),
        })


def _read_curated(lake: Lake, dataset: str, ds: str, as_of: pd.Timestamp
                  ) -> tuple[pd.DataFrame, int | None]:
    version = published_version(lake, dataset, ds)
    if version is None:
        log.warning("curated/%s has no published version for %s: its features use no rows", dataset, ds)
    return read_curated(lake, dataset, version, as_of), version


def load_inputs(lake: Lake, ds: str) -> CuratedInputs:
    as_of = logical_date_end(ds)
    if published_pointer(lake, ds) is None:
        raise NothingPublishedError(
            f"no curated data published on or before {ds} in {lake.root}: run the batch DAG for "
            f"{ds} first (its quality gate must pass before features can be built)")
    frames: dict[str, pd.DataFrame] = {}
    versions: dict[str, int | None] = {}
    for name in ("users", "products", "orders", "ratings", "clickstream"):
        frames[name], versions[name] = _read_curated(lake, name, ds, as_of)
    users = frames["users"]
    if len(users):
        signup = pd.to_datetime(users["signup_date"], utc=True)
        frames["users"] = users[signup.isna() | (signup < as_of)].reset_index(drop=True)
    frames["clickstream"] = _with_event_codes(frames["clickstream"])
    return CuratedInputs(as_of=as_of, versions=versions, **frames)


def _with_event_codes(cs: pd.DataFrame) -> pd.DataFrame:
    """Adds ``_etype`` (index into EVENT_WEIGHTS, -1 unknown), ``_weight`` and ``_session``
    (factorised session id) once, so the group-bys below work on integers, not strings."""
    types = list(EVENT_WEIGHTS)
    codes = pd.Categorical(cs["event_type"], categories=types).codes.astype("int64")
    weights = np.append(np.array([EVENT_WEIGHTS[t] for t in types]), 0.0)
    return cs.assign(_etype=codes, _weight=weights[codes],
                     _session=pd.factorize(cs["session_id"])[0])


# ---- helpers ---------------------------------------------------------------------------------
def _days(delta: pd.Series) -> pd.Series:
    return delta.dt.total_seconds() / 86400.0


COUNT_COLUMNS = ("n_views", "n_add_to_cart", "n_purchases")  # in EVENT_WEIGHTS order


def _event_counts(key: pd.Series, etype: pd.Series) -> pd.DataFrame:
    """Counts per key value and event type (columns n_views/n_add_to_cart/n_purchases)."""
    codes, uniques = pd.factorize(key, sort=True)
    k = len(COUNT_COLUMNS)
    e = etype.to_numpy()
    ok = e >= 0
    flat = np.bincount(codes[ok] * k + e[ok], minlength=len(uniques) * k).reshape(len(uniques), k)
    return pd.DataFrame(flat.astype("int64"), index=pd.Index(uniques, name=key.name),
                        columns=list(COUNT_COLUMNS))


def _pair_key(df: pd.DataFrame, width: int) -> pd.Series:
    """One int64 key per (user_id, product_id): user_id * width + product_id."""
    return df["user_id"].astype("int64") * width + df["product_id"].astype("int64")


def _safe_div(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a / b.where(b > 0)).astype("float64")


# ---- user features -----------------------------------------------------------------------------
def user_features(inp: CuratedInputs) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per user; returns the frame and table metadata (the category vocabulary)."""
    as_of, cs = inp.as_of, inp.clickstream
    users = inp.users.drop_duplicates("user_id")
    out = pd.DataFrame({"user_id": users["user_id"].astype("int64").to_numpy()})
    out["age"] = users["age"].astype("float64").to_numpy()
    out["gender"] = users["gender"].astype("object").to_numpy()
    out["region"] = users["region"].astype("object").to_numpy()
    signup = pd.to_datetime(users["signup_date"], utc=True).reset_index(drop=True)
    out["tenure_days"] = _days(as_of - signup).to_numpy()
    out = out.set_index("user_id")

    last = pd.concat([
        cs.groupby("user_id")["timestamp"].max(),
        inp.orders.groupby("user_id")["timestamp"].max(),
        inp.ratings.groupby("user_id")["timestamp"].max(),
    ]).groupby(level=0).max()
    out["recency_days"] = _days(as_of - last.reindex(out.index))

    o = inp.orders
    value = o["quantity"].astype("float64") * o["unit_price"].astype("float64")
    agg = pd.DataFrame({"user_id": o["user_id"], "order_id": o["order_id"], "value": value})
    by_user = agg.groupby("user_id")
    out["frequency"] = by_user["order_id"].nunique().reindex(out.index, fill_value=0).astype("int64")
    out["monetary"] = by_user["value"].sum().reindex(out.index, fill_value=0.0).astype("float64")
    out["avg_order_value"] = _safe_div(out["monetary"], out["frequency"])

    counts = _event_counts(cs["user_id"], cs["_etype"]).reindex(out.index, fill_value=0)
    out[counts.columns] = counts
    out["view_to_purchase"] = _safe_div(out["n_purchases"], out["n_views"])

    sess = cs.groupby("_session").agg(user_id=("user_id", "first"), n=("user_id", "size"),
                                      t0=("timestamp", "min"), t1=("timestamp", "max"))
    sess["secs"] = (sess["t1"] - sess["t0"]).dt.total_seconds()
    s_user = sess.groupby("user_id")
    out["n_sessions"] = s_user.size().reindex(out.index, fill_value=0).astype("int64")
    out["events_per_session"] = s_user["n"].mean().reindex(out.index).astype("float64")
    out["avg_session_seconds"] = s_user["secs"].mean().reindex(out.index).astype("float64")
    recent = cs[cs["timestamp"] >= as_of - 30 * DAY]
    active = recent.assign(day=recent["timestamp"].dt.floor("D")).groupby("user_id")["day"].nunique()
    out["active_days_30d"] = active.reindex(out.index, fill_value=0).astype("int64")

    r = inp.ratings.groupby("user_id")["rating"]
    out["avg_rating"] = r.mean().reindex(out.index).astype("float64")
    out["n_ratings"] = r.size().reindex(out.index, fill_value=0).astype("int64")

    vocab, shares = _category_shares(inp, out.index.to_numpy())
    top = np.argsort(-shares, axis=1, kind="stable")[:, :3]
    top_share = np.take_along_axis(shares, top, axis=1)
    names = np.array(vocab, dtype=object)[top] if len(vocab) else np.empty(top.shape, dtype=object)
    keep = top_share > 0
    out["top_category"] = np.where(keep[:, 0], names[:, 0] if len(vocab) else None, None) \
        if top.shape[1] else None
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype("int32")
    out["top_categories"] = pa.ListArray.from_arrays(
        offsets, pa.array(names[keep].tolist(), pa.string())).to_numpy(zero_copy_only=False)
    out["category_affinity"] = list(shares.astype("float32"))
    return out.reset_index(), {"category_vocabulary": vocab}


def _category_shares(inp: CuratedInputs, user_ids: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Users × categories matrix of weighted-interaction shares (rows sum to 1, or 0 when idle)."""
    cats = inp.products.drop_duplicates("product_id").set_index("product_id")["category"]
    vocab = sorted(str(c) for c in cats.dropna().unique())
    if not vocab or not len(user_ids):
        return vocab, np.zeros((len(user_ids), len(vocab)))
    cat_code = pd.Categorical(cats.astype("object"), categories=vocab).codes
    code_of = pd.Series(cat_code, index=cats.index)
    ia = inp.interactions
    c = code_of.reindex(ia["product_id"]).to_numpy(dtype="float64", na_value=np.nan)
    u = pd.Index(user_ids).get_indexer(ia["user_id"])
    ok = (u >= 0) & ~np.isnan(c) & (c >= 0)
    idx = u[ok] * len(vocab) + c[ok].astype("int64")
    mat = np.bincount(idx, weights=ia["weight"].to_numpy()[ok],
                      minlength=len(user_ids) * len(vocab)).astype("float64")
    mat = mat.reshape(len(user_ids), len(vocab))
    totals = mat.sum(axis=1, keepdims=True)
    return vocab, np.divide(mat, totals, out=np.zeros_like(mat), where=totals > 0)


# ---- item features -----------------------------------------------------------------------------
def item_features(inp: CuratedInputs, seed: int = 42) -> tuple[pd.DataFrame, dict[str, Any]]:
    as_of, cs = inp.as_of, inp.clickstream
    prods = inp.products.drop_duplicates("product_id").reset_index(drop=True)
    out = pd.DataFrame({"product_id": prods["product_id"].astype("int64")})
    for col in ("category", "subcategory", "brand"):
        out[col] = prods[col].astype("object")
    out["price"] = prods["price"].astype("float64")
    pct = out.groupby("category", dropna=False)["price"].rank(method="average", pct=True)
    out["price_band"] = np.clip(np.ceil(pct.fillna(0.5) * 5), 1, 5).astype("int64")
    out = out.set_index("product_id")

    counts = _event_counts(cs["product_id"], cs["_etype"]).reindex(out.index, fill_value=0)
    out[counts.columns] = counts
    ia = inp.interactions
    out["unique_users"] = ia.groupby("product_id")["user_id"].nunique().reindex(
        out.index, fill_value=0).astype("int64")
    out["conversion_rate"] = _safe_div(out["n_purchases"], out["n_views"])

    o = inp.orders
    sold = pd.DataFrame({"product_id": o["product_id"], "q": o["quantity"].astype("int64"),
                         "v": o["quantity"].astype("float64") * o["unit_price"].astype("float64")})
    g = sold.groupby("product_id")
    out["units_sold"] = g["q"].sum().reindex(out.index, fill_value=0).astype("int64")
    out["revenue"] = g["v"].sum().reindex(out.index, fill_value=0.0).astype("float64")

    w = ia["weight"]
    for name, lo, hi in (("popularity_7d", 7, 0), ("popularity_prev_7d", 14, 7),
                         ("popularity_30d", 30, 0)):
        m = (ia["timestamp"] >= as_of - lo * DAY) & (ia["timestamp"] < as_of - hi * DAY)
        out[name] = w[m].groupby(ia.loc[m, "product_id"]).sum().reindex(
            out.index, fill_value=0.0).astype("float64")
    out["popularity_trend"] = np.log1p(out["popularity_7d"]) - np.log1p(out["popularity_prev_7d"])
    first = ia.groupby("product_id")["timestamp"].min().reindex(out.index)
    out["days_since_first_event"] = _days(as_of - first)

    r = inp.ratings.groupby("product_id")["rating"]
    out["avg_rating"] = r.mean().reindex(out.index).astype("float64")
    out["n_ratings"] = r.size().reindex(out.index, fill_value=0).astype("int64")
    prior = float(inp.ratings["rating"].mean()) if len(inp.ratings) else 3.0
    out["bayes_rating"] = ((out["avg_rating"].fillna(0.0) * out["n_ratings"] + 5 * prior)
                           / (out["n_ratings"] + 5))
    vectors, explained = content_vectors(prods, seed=seed)
    out["content_vector"] = list(vectors)
    return out.reset_index(), {"content_dim": CONTENT_DIM, "content_explained_variance": explained}


def content_vectors(products: pd.DataFrame, dim: int = CONTENT_DIM,
                    seed: int = 42) -> tuple[np.ndarray, float]:
    """TF-IDF of each item's text → truncated SVD → L2-normalised float32 rows (zero-padded to dim)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    n = len(products)
    out = np.zeros((n, dim), dtype="float32")
    if n < 2:
        return out, 0.0
    parts = [products[c].fillna("").astype(str) for c in
             ("title", "description", "category", "subcategory", "brand")]
    text = parts[0].str.cat(parts[1:], sep=" ")
    try:
        tfidf = TfidfVectorizer(min_df=1, max_features=20_000, sublinear_tf=True,
                                dtype=np.float32).fit_transform(text)
    except ValueError:  # empty vocabulary (no text at all)
        return out, 0.0
    k = min(dim, tfidf.shape[1] - 1, n - 1)
    if k < 1:
        return out, 0.0
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)
    reduced = svd.fit_transform(tfidf).astype("float32")
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    out[:, :k] = np.divide(reduced, norms, out=np.zeros_like(reduced), where=norms > 0)
    return out, round(float(svd.explained_variance_ratio_.sum()), 4)


# ---- user–item features ------------------------------------------------------------------------
def user_item_features(inp: CuratedInputs) -> pd.DataFrame:
    as_of, cs, o, r = inp.as_of, inp.clickstream, inp.orders, inp.ratings
    width = int(max([0, *(int(f["product_id"].max()) for f in (cs, o, r) if len(f))])) + 1
    ck, ok, rk = _pair_key(cs, width), _pair_key(o, width), _pair_key(r, width)
    counts = _event_counts(ck.rename("pair"), cs["_etype"])
    weight = pd.concat([cs["_weight"].groupby(ck).sum(),
                        pd.Series(RATING_WEIGHT, index=r.index).groupby(rk).sum()]).groupby(level=0).sum()
    units = o["quantity"].astype("int64").groupby(ok).sum()
    last = pd.concat([cs["timestamp"].groupby(ck).max(), o["timestamp"].groupby(ok).max(),
                      r["timestamp"].groupby(rk).max()]).groupby(level=0).max()
    order = np.argsort(r["timestamp"].to_numpy(), kind="stable")
    latest_rating = r["rating"].iloc[order].groupby(rk.iloc[order].to_numpy()).last()
    out = pd.DataFrame(index=last.index.rename("pair"))
    out[counts.columns] = counts.reindex(out.index, fill_value=0)
    out["units_bought"] = units.reindex(out.index, fill_value=0).astype("int64")
    out["interaction_weight"] = weight.reindex(out.index, fill_value=0.0).astype("float64")
    out["last_interaction"] = last.astype(TS)
    out["days_since_last_interaction"] = _days(as_of - out["last_interaction"])
    out["rating"] = latest_rating.reindex(out.index).astype("float64")
    pair = out.index.to_numpy()
    out.insert(0, "product_id", pair % width)
    out.insert(0, "user_id", pair // width)
    return out.reset_index(drop=True)


# ---- the stage --------------------------------------------------------------------------------
def compute_features(inp: CuratedInputs, seed: int = 42) -> dict[str, tuple[pd.DataFrame, dict]]:
    """All feature tables for one as-of time: ``{table: (frame, table metadata)}``."""
    users, u_meta = user_features(inp)
    items, i_meta = item_features(inp, seed=seed)
    pairs = user_item_features(inp)
    return {USER_FEATURES.name: (users, u_meta), ITEM_FEATURES.name: (items, i_meta),
            USER_ITEM_FEATURES.name: (pairs, {})}


def build_features(lake: Lake, ds: str, run_id: str, seed: int | None = None) -> dict[str, Any]:
    """Compute every feature table as of the end of ``ds`` and write it to the feature store.

    Idempotent per ``ds``: a re-run replaces that date's snapshot. Returns a JSON-able summary with
    each table's Delta version and row count, and the curated versions it read.
    """
    from recomart.config import get_settings
    from recomart.features.definitions import TABLES
    from recomart.features.store import FeatureStore

    seed = get_settings().seed if seed is None else seed
    started = time.perf_counter()
    inp = load_inputs(lake, ds)
    log.info("features %s: as of %s from %d events, %d order lines, %d ratings", ds, inp.as_of,
             len(inp.clickstream), len(inp.orders), len(inp.ratings))
    tables = compute_features(inp, seed=seed)
    store = FeatureStore(lake)
    written: dict[str, Any] = {}
    for name, (frame, meta) in tables.items():
        spec = TABLES[name]
        written[name] = store.write(name, frame, entity=list(spec.entity), ds=ds, run_id=run_id,
                                    definitions=spec, as_of=inp.as_of.to_pydatetime(),
                                    metadata={**meta, "curated_versions": inp.versions})
        log.info("features %s: %s v%s (%d rows)", ds, name, written[name]["version"],
                 written[name]["rows"])
    return {"ds": ds, "run_id": run_id, "as_of": inp.as_of.isoformat(),
            "curated_versions": inp.versions, "tables": written,
            "read_versions": {f"curated/{n}": v for n, v in inp.versions.items() if v is not None},
            "written_versions": {f"features/{n}": t["version"] for n, t in written.items()},
            "seconds": round(time.perf_counter() - started, 2)}
