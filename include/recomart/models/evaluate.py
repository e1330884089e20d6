"""Offline evaluation: every model on the same per-user time holdout, plus rating CV for SVD.

Protocol (see ``recomart.models.split`` for the split rules): per user, the latest 20% of items
are held out; relevant = held-out items rated >= 4 (or purchased on shop data); each model ranks
every training item except the user's own training items; metrics (``recomart.models.metrics``)
average over users with >= 1 relevant held-out item. Tuning (EASE lambda, SVD hyper-parameters)
only sees the training part. RMSE/MAE come from k-fold CV over all explicit ratings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recomart.errors import PermanentError
from recomart.models.base import Recommender
from recomart.models.split import Relevance, resolve_relevance, temporal_split

log = logging.getLogger(__name__)
MODEL_NAMES = ("random", "toppop", "ease", "svd", "hybrid")
Progress = Callable[[str], None]

PROTOCOL = {
    "split": "per user by time: latest max(1, floor(0.2 * n_items)) items held out (users with >= 2 "
             "items); training keeps the user's events up to the first held-out item",
    "relevance": "held-out items rated >= 4 (explicit) or purchased (shop data); binary",
    "candidates": "all training items except the user's own training items",
    "users": "users with >= 1 relevant held-out item",
    "metrics": "NDCG@10 (ideal over min(10, #relevant)), Recall@20, HR@10, MAP@10 "
               "(AP over min(10, #relevant)), user coverage, catalog coverage (top-10)",
    "rating_metrics": "RMSE/MAE of BiasedSVD from Surprise cross_validate, KFold",
    "tuning": "EASE lambda by NDCG@10 on a per-user time split of the training part; SVD by RMSE "
              "(GridSearchCV, one 20% random validation split of the training part); on shops "
              "with more users than RECOMART_MODELS_TUNE_USERS both search on a seeded sample of "
              "that many users",
}


def make_model(name: str, params: dict[str, Any], seed: int) -> Recommender:
    from recomart.models.baselines import EASERecommender, RandomRecommender, TopPopRecommender
    from recomart.models.hybrid import HybridRecommender
    from recomart.models.svd import SVDRecommender

    if name == "random":
        return RandomRecommender(seed)
    if name == "toppop":
        return TopPopRecommender()
    if name == "ease":
        return EASERecommender(params["ease_lam"], params["ease_max_items"])
    if name == "svd":
        return SVDRecommender(params["svd"], seed=seed)
    if name == "hybrid":
        return HybridRecommender(params, seed=seed)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


def tune(train: pd.DataFrame, relevance: Relevance, seed: int = 42,
         ease_lambdas: Sequence[float] = (50, 150, 400, 1000), ease_max_items: int = 4000,
         svd_grid: dict | None = None, tune_svd_params: bool = True) -> dict[str, Any]:
    """Hyper-parameters from the training part only: ``{"params": ..., "report": ...}``."""
    from recomart.models.baselines import tune_ease
    from recomart.models.hybrid import DEFAULT_HYBRID_PARAMS
    from recomart.models.svd import DEFAULT_SVD_PARAMS, tune_svd

    ease = tune_ease(train, ease_lambdas, ease_max_items, relevance=relevance, seed=seed)
    report: dict[str, Any] = {"ease": ease}
    svd_params = dict(DEFAULT_SVD_PARAMS)
    if tune_svd_params:
        svd = tune_svd(train, svd_grid, seed=seed)
        svd_params = svd["params"]
        report["svd"] = svd
    params = {**DEFAULT_HYBRID_PARAMS, "ease_lam": ease["lam"], "ease_max_items": ease_max_items,
              "svd": svd_params}
    return {"params": params, "report": report}


def evaluate_models(interactions: pd.DataFrame, products: pd.DataFrame | None = None,
                    users: pd.DataFrame | None = None, relevance: Relevance = "auto",
                    models: Sequence[str] | None = None, params: dict[str, Any] | None = None,
                    seed: int = 42, rating_folds: int = 0, progress: Progress | None = None,
                    user_features: pd.DataFrame | None = None,
                    item_features: pd.DataFrame | None = None) -> dict[str, Any]:
    """Fit and score ``models`` on one time holdout of ``interactions`` (event frame).

    Returns ``{"models": {name: {metric: value, "fit_seconds", "eval_seconds"}}, "params":
    hybrid/EASE/SVD params (tuned unless given; pass to ``train_hybrid``), "tuning": report,
    "split": sizes}``. ``rating_folds > 0`` adds SVD RMSE/MAE by k-fold CV (explicit ratings only).
    """
    from recomart.models.metrics import ranking_metrics

    say = progress or (lambda msg: log.info(msg))
    names = list(models or MODEL_NAMES)
    relevance = resolve_relevance(interactions, relevance)
    say("splitting by time")
    split = temporal_split(interactions, relevance=relevance)
    relevant = split.test.loc[split.test["relevant"]]
    eval_users = np.unique(relevant["user_id"].to_numpy())
    tuning: dict[str, Any] = {}
    if params is None:
        say("tuning EASE lambda and SVD hyper-parameters on the training part")
        t0 = time.perf_counter()
        tuned = tune(split.train, relevance, seed=seed,
                     tune_svd_params=any(n in names for n in ("svd", "hybrid")))
        params, tuning = tuned["params"], {**tuned["report"],
                                           "seconds": time.perf_counter() - t0}
    else:
        from recomart.models.hybrid import DEFAULT_HYBRID_PARAMS

        params = {**DEFAULT_HYBRID_PARAMS, **params}
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        say(f"fitting {name}")
        model = make_model(name, params, seed)
        t0 = time.perf_counter()
        if name == "hybrid":
            model.fit(split.train, products, users, user_features=user_features,
                      item_features=item_features, relevance=relevance)
        else:
            model.fit(split.train, products, users)
        fit_s = time.perf_counter() - t0
        say(f"evaluating {name}")
        t0 = time.perf_counter()
        recs = model.recommend(eval_users, n=20)
        eval_s = time.perf_counter() - t0
        metrics = ranking_metrics(recs, relevant, n_catalog=len(model.item_ids))
        results[name] = {**metrics, "fit_seconds": round(fit_s, 3), "eval_seconds": round(eval_s, 3)}
        if name == "hybrid":
            results[name]["training"] = model.training_info_
        log.info("%s: %s", name, results[name])
    events = interactions
    has_ratings = "rating" in events and events["rating"].notna().any()
    if rating_folds > 0 and has_ratings and "svd" in results:
        from recomart.models.svd import DEFAULT_SVD_PARAMS, rating_cv

        rated = events.loc[events["rating"].notna()]
        say(f"SVD rating {rating_folds}-fold CV (tuned and Surprise default)")
        t0 = time.perf_counter()
        cv = rating_cv(rated, params["svd"] or DEFAULT_SVD_PARAMS, folds=rating_folds, seed=seed)
        default = rating_cv(rated, {"n_factors": 100, "n_epochs": 20, "lr_all": 0.005,
                                    "reg_all": 0.02}, folds=rating_folds, seed=seed)
        results["svd"].update({"rmse": cv["rmse"], "mae": cv["mae"], "cv_folds": rating_folds,
                               "rmse_surprise_default": default["rmse"],
                               "mae_surprise_default": default["mae"],
                               "cv_seconds": round(time.perf_counter() - t0, 3)})
    return {"models": results, "params": params, "tuning": tuning,
            "split": {"train_events": len(split.train), "test_pairs": len(split.test),
                      "relevant_pairs": len(relevant), "eval_users": len(eval_users),
                      "relevance": relevance if isinstance(relevance, str) else "custom"}}


def evaluate_interactions(interactions: pd.DataFrame, products: pd.DataFrame | None = None,
                          users: pd.DataFrame | None = None, relevance: Relevance = "auto",
                          **kwargs: Any) -> dict[str, dict[str, Any]]:
    """``{model_name: {metric: value, ..., "fit_seconds", "eval_seconds"}}`` on the protocol."""
    return evaluate_models(interactions, products, users, relevance=relevance, **kwargs)["models"]


def evaluate_movielens(path: Path | str, folds: int = 5, seed: int = 42,
                       models: Sequence[str] | None = None,
                       progress: Progress | None = None) -> dict[str, Any]:
    """The protocol on a MovieLens folder: ``{"dataset", "protocol", "models", "params", ...}``."""
    from recomart.models.data import interactions_from_tables
    from recomart.sources.movielens import load_movielens

    tables = load_movielens(path)
    events = interactions_from_tables(tables)
    out = evaluate_models(events, tables["products"], tables["users"], relevance="rating",
                          models=models, seed=seed, rating_folds=folds, progress=progress)
    return {"dataset": {"path": str(path), "name": Path(path).name, "events": len(events),
                        "users": int(events["user_id"].nunique()),
                        "items": int(events["product_id"].nunique())},
            "protocol": {**PROTOCOL, "seed": seed, "rating_cv_folds": folds},
            **out}


# ---- the two protocols (explore with a global cut, repeat-aware next basket) -----------------
BASELINES = ("random", "toppop", "ease", "svd", "buy_again")
#: Models whose ``fit`` only reads per-(user, item) pairs (``data.to_pairs``), so pairs made once
#: can stand for the events (buy_again and the hybrid need the events themselves).
PAIR_MODELS = ("random", "toppop", "ease", "svd")
PROTOCOL_MODELS = (*BASELINES, "hybrid")


def make_any_model(name: str, params: dict[str, Any], seed: int) -> Recommender:
    """``make_model`` plus the ``buy_again`` baseline."""
    if name == "buy_again":
        from recomart.models.baselines import BuyAgainRecommender

        return BuyAgainRecommender()
    return make_model(name, params, seed)


def fit_model(name: str, params: dict[str, Any], seed: int, train: pd.DataFrame,
              products: pd.DataFrame | None, users: pd.DataFrame | None, *,
              user_features: pd.DataFrame | None = None,
              item_features: pd.DataFrame | None = None, relevance: Relevance = "auto",
              protocol: str = "explore", features_at: Any = None) -> Recommender:
    """A fitted model; on the next-basket protocol the hybrid runs in repeat mode."""
    if name == "hybrid" and protocol == "next_basket":
        from recomart.models.hybrid import repeat_params

        params = repeat_params(params)
    model = make_any_model(name, params, seed)
    if name == "hybrid":
        return model.fit(train, products, users, user_features=user_features,
                         item_features=item_features, relevance=relevance, features_at=features_at)
    return model.fit(train, products, users)


def score_model(model: Recommender, split) -> dict[str, Any]:
    """Protocol metrics of a fitted model on ``split`` (a ``protocols.ProtocolSplit``)."""
    from recomart.models.metrics import ranking_metrics

    t0 = time.perf_counter()
    recs = model.recommend(split.users, n=20, exclude_seen=split.exclude_seen)
    eval_s = time.perf_counter() - t0
    metrics = ranking_metrics(recs, split.relevant, n_catalog=len(model.item_ids))
    return {**metrics, "eval_seconds": round(eval_s, 3)}


#: Models whose fit is compiled code that releases the GIL (the SVD's SGD): ``evaluate_split``
#: fits them on a thread while the others are fitted and scored, since their fits are
#: deterministic and independent of the rest (same models, same metrics; only the wall time
#: changes).
BACKGROUND_FITS = ("svd",)


def evaluate_split(split, models: Sequence[str], params: dict[str, Any], *, seed: int = 42,
                   products: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
                   user_features: pd.DataFrame | None = None,
                   item_features: pd.DataFrame | None = None,
                   progress: Progress | None = None, features_at: Any = None,
                   background: Sequence[str] = BACKGROUND_FITS) -> dict[str, dict[str, Any]]:
    """Fit every model on ``split.train`` and score it on the split: ``{model: metrics}``.
    ``features_at`` (see ``HybridRecommender.fit``) keeps the hybrid's ranker point in time.

    The ``background`` models (with at least one other model to overlap) are fitted on a thread
    from the start and scored once the other models (but the hybrid) are; the hybrid, which may
    reuse their fits (``recomart.models.memo``), comes last. The result keeps the order of
    ``models``. ``background=()`` fits one model after another. An error raised meanwhile is
    raised once the running background fit ends (compiled code cannot be interrupted)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from recomart.models.data import to_pairs

    say = progress or (lambda msg: log.info(msg))
    relevance = split.info.get("relevance", "auto")
    relevance = relevance if relevance in ("rating", "purchase", "any") else "auto"
    done: dict[str, dict[str, Any]] = {}
    names = list(models)
    pairs = to_pairs(split.train) if any(n in PAIR_MODELS for n in names) else None

    def fit(name: str) -> tuple[Recommender, float]:
        t0 = time.perf_counter()
        model = fit_model(name, params, seed, pairs if name in PAIR_MODELS else split.train,
                          products, users,
                          user_features=user_features, item_features=item_features,
                          relevance=relevance, protocol=split.name, features_at=features_at)
        return model, time.perf_counter() - t0

    early = [n for n in names if n in background] if len(names) > 1 else []
    pool = ThreadPoolExecutor(1, thread_name_prefix="fit") if early else None
    pending: dict[str, Future[tuple[Recommender, float]]] = {}
    rest = [n for n in names if n not in early]
    order = [n for n in rest if n != "hybrid"] + early + [n for n in rest if n == "hybrid"]
    try:
        for name in early:
            say(f"{split.name}: fitting {name} (on a thread, beside the other models)")
            pending[name] = pool.submit(fit, name)  # type: ignore[union-attr]
        for name in order:
            if name in pending:
                model, fit_s = pending.pop(name).result()
            else:
                say(f"{split.name}: fitting {name}")
                model, fit_s = fit(name)
            say(f"{split.name}: evaluating {name}")
            done[name] = {**score_model(model, split), "fit_seconds": round(fit_s, 3)}
            if name == "hybrid":
                done[name]["training"] = model.training_info_
            log.info("%s %s: %s", split.name, name, done[name])
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return {name: done[name] for name in names}


def evaluate_source(tables: dict[str, pd.DataFrame], *, protocols: Sequence[str] = ("explore",
                    "next_basket"), models: Sequence[str] | None = None, cut: str | None = None,
                    seed: int = 42, rating_folds: int = 0, params: dict[str, Any] | None = None,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Both protocols on canonical tables (any source): ``{"protocols": {name: {"split", "models"}
    | {"skipped": reason}}, "rating_cv", "params", "repeat", "dataset"}``."""
    from recomart.models.data import interactions_from_tables
    from recomart.models.protocols import (
        ProtocolError,
        explore_split,
        next_basket_split,
        repeat_share,
    )

    say = progress or (lambda msg: log.info(msg))
    names = list(models or PROTOCOL_MODELS)
    events = interactions_from_tables(tables)
    orders = tables.get("orders")
    out: dict[str, Any] = {"dataset": {"events": len(events),
                                       "users": int(events["user_id"].nunique()),
                                       "items": int(events["product_id"].nunique())},
                           "repeat": repeat_share(orders), "protocols": {}}
    tuned_params = params
    for name in protocols:
        try:
            split = (explore_split(events, cut=cut) if name == "explore"
                     else next_basket_split(events, orders))
        except ProtocolError as exc:
            out["protocols"][name] = {"skipped": str(exc)}
            say(f"{name}: skipped ({exc})")
            continue
        if tuned_params is None:
            say(f"{name}: tuning EASE lambda and SVD on the training part")
            t0 = time.perf_counter()
            tuned = tune(split.train, resolve_relevance(split.train), seed=seed,
                         tune_svd_params=any(n in names for n in ("svd", "hybrid")))
            tuned_params = tuned["params"]
            out["tuning"] = {**tuned["report"], "seconds": round(time.perf_counter() - t0, 2)}
        results = evaluate_split(split, names, tuned_params, seed=seed,
                                 products=tables.get("products"), users=tables.get("users"),
                                 progress=say)
        out["protocols"][name] = {"split": split.info, "models": results,
                                  "best": max(results, key=lambda m: results[m]["ndcg@10"])}
    if not any("models" in p for p in out["protocols"].values()):
        raise ProtocolError("no protocol could run on this source: "
                            + "; ".join(p["skipped"] for p in out["protocols"].values()))
    out["params"] = tuned_params
    has_ratings = "rating" in events and events["rating"].notna().any()
    if rating_folds > 0 and has_ratings and "svd" in names:
        from recomart.models.svd import nested_rating_cv

        say(f"SVD rating RMSE by nested {rating_folds}-fold CV")
        t0 = time.perf_counter()
        out["rating_cv"] = {**nested_rating_cv(events.loc[events["rating"].notna()],
                                               folds=rating_folds, seed=seed),
                            "seconds": round(time.perf_counter() - t0, 2)}
    return out


def read_source_dir(path: Path | str, ds: str | None = None) -> tuple[dict[str, pd.DataFrame],
                                                                    dict[str, Any]]:
    """Canonical CSVs of a source folder (generator output, MovieLens adapter output, a shop's
    export) as typed frames, events before the end of ``ds``. Rows whose ids or timestamps do not
    parse are dropped and counted (the batch pipeline quarantines them; evaluation only reports).
    Returns ``(tables, {"rows", "dropped", "cut"})``."""
    from recomart.curated import empty_frame, logical_date_end
    from recomart.tables import DATASETS

    folder = Path(path)
    found = [n for n in DATASETS if (folder / f"{n}.csv").exists()]
    if not {"ratings", "clickstream", "orders"} & set(found):
        raise ProtocolInputError(f"{folder}: no ratings.csv, clickstream.csv or orders.csv "
                                 f"(canonical source CSVs, see CONTRIBUTING.md)")
    cut = logical_date_end(ds) if ds else None
    tables: dict[str, pd.DataFrame] = {}
    report: dict[str, Any] = {"rows": {}, "dropped": {}, "cut": cut.isoformat() if cut else None}
    for name, spec in DATASETS.items():
        if name not in found:
            tables[name] = empty_frame(name)
            continue
        raw = pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)
        missing = [c for c in spec.columns if c not in raw.columns]
        if missing:
            raise ProtocolInputError(f"{folder / (name + '.csv')}: missing columns {missing}")
        df = pd.DataFrame(index=raw.index)
        bad = pd.Series(False, index=raw.index)
        for col, kind in spec.columns.items():
            text = raw[col].replace("", None)
            if kind == "int":
                val = pd.to_numeric(text, errors="coerce")
                df[col] = val.astype("Int64")
            elif kind == "float":
                val = pd.to_numeric(text, errors="coerce")
                df[col] = val.astype("float64")
            elif kind in ("timestamp", "date"):
                val = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
                df[col] = val
            else:
                val = text
                df[col] = text.astype(object)
            if col not in spec.nullable and kind != "str":
                bad |= val.isna() & True
        if cut is not None and "timestamp" in spec.columns:
            bad |= df["timestamp"].ge(cut).fillna(False)
        keep = ~bad
        n_bad = int(bad.sum())
        df = df.loc[keep].reset_index(drop=True)
        for col, kind in spec.columns.items():
            if kind == "int" and col not in spec.nullable:
                df[col] = df[col].astype("int64")
        tables[name] = df
        report["rows"][name] = len(df)
        if n_bad:
            report["dropped"][name] = n_bad
    return tables, report


class ProtocolInputError(PermanentError, ValueError):
    """A source folder the evaluation cannot read (says which file and why)."""
