"""The training stages the training DAG calls: load → train and evaluate → register and promote →
publish (+ model report). Each is ``stage(lake, ds, ...) -> dict`` (small JSON) and idempotent:

- ``load_training_data`` pins the curated and feature table versions it saw;
- ``train_and_evaluate`` re-reads exactly those versions, evaluates every model on one time-based
  holdout, fits the hybrid on everything and logs it all to MLflow; a re-run with the same inputs
  and parameters reuses the finished MLflow run instead of training again;
- ``register_and_promote`` registers that run's model once and applies the promotion rule;
- ``publish`` rewrites the candidate's serving folder and points ``serving/latest.json`` at the
  champion's.

Point in time: interactions are cut at the end of ``ds``; external features for the final model
come from the snapshot as of the end of ``ds``, and for the evaluation from snapshots older than
each user's holdout cut-off (so offline metrics never see holdout-period features).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recomart import registry
from recomart.config import get_settings
from recomart.curated import NothingPublishedError, logical_date_end, published_version, read_curated
from recomart.lake import Lake, LakeError

log = logging.getLogger(__name__)

MODEL_NAME = registry.HYBRID_MODEL
EXPERIMENT = registry.TRAINING_EXPERIMENT
INTERACTION_TABLES = ("ratings", "clickstream", "orders")
ENTITY_TABLES = ("users", "products")
FEATURE_TABLES = {"user_features": "user_id", "item_features": "product_id"}


# ---- inputs ----------------------------------------------------------------------------------
def feature_version(lake: Lake, table: str, ds: str) -> int | None:
    """The feature-table version to read for ``ds``: the newest one whose build was for a date
    <= ``ds`` (commit metadata ``recomart.ds``), so a later date's build never leaks in."""
    try:
        history = lake.table_history("features", table)
    except LakeError:
        return None
    versions = [int(h["version"]) for h in history if h.get("version") is not None
                and h.get("recomart.ds") and str(h["recomart.ds"])[:10] <= ds]
    return max(versions) if versions else None


def _numeric_features(lake: Lake, table: str, key: str, version: int) -> list[str]:
    skip = {key, "feature_timestamp", "_ds", "_run_id"}
    numeric = ("int", "float", "double", "bool", "decimal")
    return [n for n, t in lake.table_schema("features", table, version=version)
            if n not in skip and t.startswith(numeric)]


@dataclass
class TrainingInputs:
    """Everything the models are fitted on, read back at the pinned versions."""

    events: pd.DataFrame
    users: pd.DataFrame
    products: pd.DataFrame
    feature_refs: dict[str, list[str]]
    feature_versions: dict[str, int]


def read_inputs(lake: Lake, data: dict[str, Any]) -> TrainingInputs:
    from recomart.models.data import interactions_from_tables

    cut = pd.Timestamp(data["as_of"])
    frames = {t: read_curated(lake, t, data["tables"][t]["version"], cut)
              for t in (*INTERACTION_TABLES, *ENTITY_TABLES)}
    users = frames["users"]
    if len(users):
        signup = pd.to_datetime(users["signup_date"], utc=True)
        users = users[signup.isna() | (signup < cut)].reset_index(drop=True)
    events = interactions_from_tables({t: frames[t] for t in INTERACTION_TABLES})
    refs = {t: info["columns"] for t, info in data.get("features", {}).items()}
    versions = {t: int(info["version"]) for t, info in data.get("features", {}).items()}
    return TrainingInputs(events, users, frames["products"], refs, versions)


def point_in_time_features(lake: Lake, refs: dict[str, list[str]],
                           at: pd.Series | pd.Timestamp, ids: dict[str, np.ndarray],
                           versions: dict[str, int] | None = None
                           ) -> dict[str, pd.DataFrame | None]:
    """``{"user_features": frame, "item_features": frame}`` from the feature store, each entity
    row joined to the latest snapshot at or before its time ``at`` (a per-user Series or one time),
    read at the pinned Delta ``versions`` (``{table: version}``)."""
    from recomart.features import FeatureStore

    store = FeatureStore(lake)
    out: dict[str, pd.DataFrame | None] = {t: None for t in FEATURE_TABLES}
    for table, columns in refs.items():
        key = FEATURE_TABLES[table]
        if not columns or len(ids[key]) == 0:
            continue
        entity = pd.DataFrame({key: ids[key]})
        if isinstance(at, pd.Series) and key == "user_id":
            entity["event_timestamp"] = entity[key].map(at).fillna(at.max())
        else:
            entity["event_timestamp"] = at.min() if isinstance(at, pd.Series) else at
        frame = store.get_historical_features(entity, [f"{table}:{c}" for c in columns],
                                              versions=versions)
        out[table] = frame.drop(columns="event_timestamp")
    return out


def load_training_data(lake: Lake, ds: str) -> dict[str, Any]:
    """Pin the curated and feature table versions to train on; fail early when there is no data.

    Curated versions come from ``recomart.curated.published_version`` (the version published for
    ``ds``), feature versions from ``feature_version``: re-running for a date pins the same ones
    and every later task reads exactly these."""
    cut = logical_date_end(ds)
    tables: dict[str, Any] = {}
    for t in (*INTERACTION_TABLES, *ENTITY_TABLES):
        version = published_version(lake, t, ds)
        rows = len(read_curated(lake, t, version, cut)) if version is not None else 0
        tables[t] = {"version": version, "rows": rows}
    if not any(tables[t]["rows"] for t in INTERACTION_TABLES):
        raise NothingPublishedError(f"no published curated interactions before {cut} in {lake.root}: "
                                    "run the batch DAG first (its quality gate must pass)")
    features: dict[str, Any] = {}
    for table, key in FEATURE_TABLES.items():
        version = feature_version(lake, table, ds)
        if version is None:
            log.warning("feature table %s has no build for %s or earlier: the hybrid trains on its "
                        "own features only", table, ds)
            continue
        features[table] = {"version": version,
                           "columns": _numeric_features(lake, table, key, version)}
    data = {"ds": ds, "as_of": cut.isoformat(), "tables": tables, "features": features}
    data["fingerprint"] = _fingerprint(data)
    data["read_versions"] = pinned_versions(data)
    log.info("training data %s: %s", ds, {t: i["rows"] for t, i in tables.items()})
    return data


def pinned_versions(data: dict[str, Any]) -> dict[str, int]:
    """The lineage key ``read_versions`` of every training task: exactly the pinned versions."""
    return {**{f"curated/{t}": i["version"] for t, i in data["tables"].items()
               if i["version"] is not None},
            **{f"features/{t}": i["version"] for t, i in data["features"].items()}}


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- train and evaluate ----------------------------------------------------------------------
def _log_model_results(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    clean = {m: {registry.metric_key(k): float(v) for k, v in r.items()
                 if isinstance(v, int | float) and not isinstance(v, bool)}
             for m, r in results.items()}
    registry.log_model_metrics(clean)
    return clean


def selection_protocol(inputs: TrainingInputs, orders: pd.DataFrame) -> tuple[str, dict[str, Any]]:
    """``next_basket`` for a repeat-heavy shop (share of repeat order lines measured from the data,
    or forced by ``RECOMART_MODELS_REPEAT_HEAVY``), else ``explore``."""
    from recomart.models.protocols import repeat_share

    settings = get_settings()
    repeat = repeat_share(orders)
    forced = settings.models_repeat_heavy
    heavy = forced if forced is not None else repeat["repeat_share"] >= settings.models_repeat_share
    info = {**repeat, "repeat_heavy": bool(heavy), "forced": forced is not None,
            "threshold": settings.models_repeat_share}
    return ("next_basket" if heavy else "explore"), info


def make_split(protocol: str, inputs: TrainingInputs, orders: pd.DataFrame):
    from recomart.models.protocols import ProtocolError, explore_split, next_basket_split

    if protocol == "next_basket":
        try:
            return next_basket_split(inputs.events, orders)
        except ProtocolError as exc:
            log.warning("next-basket protocol impossible (%s): selecting on explore", exc)
    return explore_split(inputs.events)


OTHER = "other_protocol"


def other_protocol(protocol: str, inputs: TrainingInputs, orders: pd.DataFrame,
                   params: dict[str, Any], seed: int) -> dict[str, Any]:
    """The baselines on the protocol not used for selection, for the report (the hybrid is only
    fitted on the selection protocol: it is the expensive one and CI time matters)."""
    from recomart.models.evaluate import BASELINES, evaluate_split
    from recomart.models.protocols import ProtocolError, explore_split, next_basket_split

    name = "explore" if protocol == "next_basket" else "next_basket"
    try:
        split = explore_split(inputs.events) if name == "explore" else next_basket_split(
            inputs.events, orders)
    except ProtocolError as exc:
        return {"name": name, "skipped": str(exc)}
    models = evaluate_split(split, BASELINES, params, seed=seed, products=inputs.products,
                            users=inputs.users)
    return {"name": name, "split": split.info, "models": models}


def rescore_champion(split, inputs: TrainingInputs, feats: dict[str, pd.DataFrame | None],
                     seed: int, features_at: Any = None) -> dict[str, Any] | None:
    """The current ``@champion`` scored on *this* holdout: its recipe (model + hyper-parameters,
    from its run) refitted on this run's training part. Scoring its artefact instead would let a
    champion trained up to a later or equal date see the holdout period."""
    from recomart.models.evaluate import fit_model, score_model

    current = registry.get_champion(MODEL_NAME)
    if current is None:
        return None
    version, logged = current
    params = registry.get_run(version.run_id)["params"] if version.run_id else {}
    recipe = json.loads(params["recipe"]) if "recipe" in params else None
    out: dict[str, Any] = {"version": int(version.version), "logged_metrics": logged}
    if recipe is None:
        out.update(how="not re-scored: the champion's run has no recipe", metrics=None)
        return out
    model = fit_model(recipe["model"], recipe["params"], seed, split.train, inputs.products,
                      inputs.users, user_features=feats["user_features"],
                      item_features=feats["item_features"], protocol=split.name,
                      features_at=features_at)
    out.update(how=f"{recipe['model']} refitted on this holdout's training part",
               recipe=recipe, metrics=score_model(model, split))
    return out


def train_and_evaluate(lake: Lake, ds: str, data: dict[str, Any], *,
                       model_params: dict[str, Any] | None = None, rating_folds: int = 3,
                       airflow_run_id: str | None = None) -> dict[str, Any]:
    """Evaluate every model and the re-scored champion on one holdout, register the best.

    The holdout follows the shop: repeat-heavy shops select on the next-basket protocol, others
    on explore (``recomart.models.protocols``). Hyper-parameters are tuned on its training part,
    then ``model_params`` overrides win (``{"tune": false}`` skips tuning; ``{"select": [...]}``
    limits which models may be chosen). The chosen model is the hybrid when it wins, else the
    winner wrapped with the hybrid's similar items, audiences and cold start. Returns ``{run_id,
    model_uri, metrics, selected, champion, ...}``.
    """
    from recomart.models.evaluate import PROTOCOL_MODELS, evaluate_split
    from recomart.models.evaluate import tune as tune_params
    from recomart.models.split import resolve_relevance
    from recomart.reports.model import metrics_chart

    settings = get_settings()
    overrides = dict(model_params or {})
    tune = bool(overrides.pop("tune", True))
    selectable = list(overrides.pop("select", None) or PROTOCOL_MODELS)
    key = {"recomart.ds": ds, "recomart.fingerprint":
           _fingerprint({"data": data["fingerprint"], "params": model_params or {},
                         "seed": settings.seed, "folds": rating_folds,
                         "repeat": [settings.models_repeat_heavy, settings.models_repeat_share]})}
    reused = registry.find_run(EXPERIMENT, key)
    if reused:
        run = registry.get_run(reused)
        log.info("reusing finished MLflow run %s for %s (same inputs and parameters)", reused, ds)
        return _train_summary(ds, reused, run["tags"]["recomart.model_uri"], run["metrics"],
                              reused=True, run=run)

    inputs = read_inputs(lake, data)
    orders = read_curated(lake, "orders", data["tables"]["orders"]["version"],
                          pd.Timestamp(data["as_of"]))
    started = time.perf_counter()
    protocol, repeat = selection_protocol(inputs, orders)
    split = make_split(protocol, inputs, orders)
    protocol = split.name
    user_ids = inputs.events["user_id"].unique()
    item_ids = inputs.events["product_id"].unique()
    ids = {"user_id": np.union1d(user_ids, inputs.users["user_id"].to_numpy()),
           "product_id": np.union1d(item_ids, inputs.products["product_id"].to_numpy())}
    eval_feats = point_in_time_features(lake, inputs.feature_refs, split.cutoff, ids,
                                        inputs.feature_versions)
    final_feats = point_in_time_features(lake, inputs.feature_refs, pd.Timestamp(data["as_of"]), ids,
                                         inputs.feature_versions)

    def features_at(at: pd.Series) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        f = point_in_time_features(lake, inputs.feature_refs, at, ids, inputs.feature_versions)
        return f["user_features"], f["item_features"]

    tags = {**key, "recomart.airflow_run_id": airflow_run_id or "", "ds": ds}
    with registry.start_run(EXPERIMENT, run_name=f"training-{ds}", tags=tags) as run:
        run_id = run.info.run_id
        tuning: dict[str, Any] = {}
        from recomart.models.hybrid import DEFAULT_HYBRID_PARAMS

        params: dict[str, Any] = {**DEFAULT_HYBRID_PARAMS, **overrides}
        if tune:
            t0 = time.perf_counter()
            tuned = tune_params(split.train, resolve_relevance(split.train), seed=settings.seed)
            params = {**tuned["params"], **overrides}
            tuning = {**tuned["report"], "seconds": round(time.perf_counter() - t0, 2)}
        models = evaluate_split(split, PROTOCOL_MODELS, params, seed=settings.seed,
                                products=inputs.products, users=inputs.users,
                                user_features=eval_feats["user_features"],
                                item_features=eval_feats["item_features"], features_at=features_at)
        champion = rescore_champion(split, inputs, eval_feats, settings.seed, features_at)
        other = other_protocol(protocol, inputs, orders, params, settings.seed)
        ranked = sorted((m for m in selectable if m in models),
                        key=lambda m: (-models[m]["ndcg@10"], m != "hybrid"))
        selected = ranked[0]
        results = _log_model_results(models)
        if champion:
            registry.set_tags({"champion_version": champion["version"], "champion.how": champion["how"]})
            if champion.get("metrics"):
                registry.log_metrics(champion["metrics"], prefix="champion.")
        headline = dict(results[selected])
        recipe = {"model": selected, "params": params, "protocol": protocol}
        best = max(models, key=lambda m: models[m]["ndcg@10"])
        why = (f"{selected} has the best NDCG@10 on the {protocol} holdout "
               f"({models[selected]['ndcg@10']:.4f}; hybrid {models['hybrid']['ndcg@10']:.4f})")
        if set(selectable) != set(PROTOCOL_MODELS):
            why = (f"only {', '.join(selectable)} may be selected (force_model_params select): "
                   f"{selected} scores {models[selected]['ndcg@10']:.4f} on the {protocol} holdout; "
                   f"the best of all is {best} ({models[best]['ndcg@10']:.4f})")
        registry.log_params({
            "ds": ds, "as_of": data["as_of"], "seed": settings.seed, "rating_folds": rating_folds,
            **{f"curated.{t}.version": i["version"] for t, i in data["tables"].items()},
            **{f"features.{t}.version": i["version"] for t, i in data["features"].items()},
            **{f"split.{k}": v for k, v in split.info.items()},
            "protocol": protocol, "selected_model": selected, "recipe": recipe,
            "repeat_heavy": repeat["repeat_heavy"], "repeat_share": repeat["repeat_share"],
            "forced_params": model_params or {},
            **{f"hybrid.{k}": v for k, v in params.items()},
        })
        registry.set_tags({"recomart.selected_model": selected, "recomart.selection": why,
                           "recomart.other_protocol": other["name"]})
        for m, r in other.get("models", {}).items():
            registry.log_metrics(r, prefix=f"{OTHER}.{m}.")
        registry.log_dict({"models": models, "split": split.info, "protocol": protocol,
                           "tuning": tuning, "params": params, "selected": selected, "why": why,
                           "repeat": repeat, "champion": champion, "other_protocol": other},
                          "evaluation/evaluation.json")
        registry.log_dict(data, "evaluation/training_data.json")
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "metrics_by_model.png"
            png.write_bytes(metrics_chart(results))
            registry.log_artifact(png, "plots")

        final_params = final_hybrid_params(params, models["hybrid"].get("training"), overrides)
        if final_params is not params:
            registry.log_params({"final.ranker": final_params["ranker"],
                                 "final.ranker_grid": "reused from the evaluated hybrid"})
        model = fit_final(selected, final_params, settings.seed, inputs, final_feats, protocol,
                          features_at)
        known = [int(u) for u in np.sort(user_ids)[:2]]
        example = pd.DataFrame({"user_id": [*known, int(ids["user_id"].max()) + 1]})
        headline = {**headline, "train_seconds": round(time.perf_counter() - started, 2)}
        model_uri = registry.log_model_artifact(model, example, metrics=headline)
    from recomart.models.memo import clear_fit_memos

    clear_fit_memos()  # the fits reused within this run are not needed after it
    return _train_summary(ds, run_id, model_uri, headline, reused=False,
                          run=registry.get_run(run_id))


def final_hybrid_params(params: dict[str, Any], training_info: dict[str, Any] | None,
                        overrides: dict[str, Any]) -> dict[str, Any]:
    """The final hybrid's parameters: with ``models_ranker_reuse`` its ranker trains the variant
    the evaluated hybrid's grid search chose (on the holdout's training part) instead of searching
    the grid again on all data; early stopping still sizes its trees and the fallback orderings
    still compete. An explicit ``ranker`` / ``ranker_grid`` override is left as given."""
    choice = (training_info or {}).get("ranker_choice") or {}
    variant = choice.get("variant")
    if (not get_settings().models_ranker_reuse or variant is None or "fallback" in variant
            or {"ranker", "ranker_grid"} & set(overrides)):
        return params
    return {**params, "ranker": {**(params.get("ranker") or {}), **variant}, "ranker_grid": [{}]}


def fit_final(selected: str, params: dict[str, Any], seed: int, inputs: TrainingInputs,
              feats: dict[str, pd.DataFrame | None], protocol: str, features_at: Any = None):
    """The model to register, fitted on every interaction up to ``ds``: the hybrid, or the winner
    with the hybrid behind it for similar items, audiences and new users."""
    from recomart.models.evaluate import fit_model
    from recomart.models.selected import SelectedRecommender

    hybrid = fit_model("hybrid", params, seed, inputs.events, inputs.products, inputs.users,
                       user_features=feats["user_features"], item_features=feats["item_features"],
                       protocol=protocol, features_at=features_at)
    if selected == "hybrid":
        return hybrid
    primary = fit_model(selected, params, seed, inputs.events, inputs.products, inputs.users)
    return SelectedRecommender(primary, hybrid, exclude_seen=protocol != "next_basket")


def _train_summary(ds: str, run_id: str, model_uri: str, metrics: dict[str, float], *,
                   reused: bool, run: dict[str, Any]) -> dict[str, Any]:
    """Small JSON for the next tasks: the candidate's figure and the champion's re-scored one."""
    headline = {k: v for k, v in metrics.items() if "." not in k}
    key = registry.metric_key(registry.PROMOTION_METRIC)
    rescored = run["metrics"].get(f"champion.{key}")
    champion = None
    if "champion_version" in run["tags"]:
        champion = {"version": int(run["tags"]["champion_version"]), "value": rescored}
    return {"ds": ds, "run_id": run_id, "model_uri": model_uri, "reused_run": reused,
            "selected": run["params"].get("selected_model"), "protocol": run["params"].get("protocol"),
            "champion": champion,
            "metrics": {k: round(float(v), 6) for k, v in headline.items()}}


# ---- register and promote --------------------------------------------------------------------
def register_and_promote(lake: Lake, ds: str, trained: dict[str, Any], *,
                         margin: float | None = None) -> dict[str, Any]:
    """Register the run's model as ``recomart_hybrid`` (once per run) and apply the promotion rule
    against the champion's figure re-scored on the candidate's holdout (``train_and_evaluate``)."""
    version = registry.find_version(MODEL_NAME, {"run_id": trained["run_id"]})
    if version is None:
        version = registry.register_model(trained["model_uri"], MODEL_NAME, run_id=trained["run_id"],
                                          tags={"ds": ds})
    champion = trained.get("champion") or {}
    decision = registry.promote_if_better(
        MODEL_NAME, version.version, margin=margin, champion_value=champion.get("value"),
        rescored_version=champion.get("version"), rescored=True,
        gated=get_settings().experiment_gated_promotion)
    return {"ds": ds, "run_id": trained["run_id"], **decision}


# ---- publish ---------------------------------------------------------------------------------
def _serving_ids(lake: Lake, data: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Every known user (including ones without interactions: cold start) and every product."""
    inputs = read_inputs(lake, data)
    users = np.union1d(inputs.users["user_id"].to_numpy(), inputs.events["user_id"].to_numpy())
    products = np.union1d(inputs.products["product_id"].to_numpy(),
                          inputs.events["product_id"].to_numpy())
    return [int(u) for u in users], [int(p) for p in products]


def publish(lake: Lake, ds: str, data: dict[str, Any], decision: dict[str, Any], *,
            top_n: int | None = None) -> dict[str, Any]:
    """Publish the candidate's outputs, make sure the champion's exist, point latest.json at them."""
    from recomart import publishing

    users, products = _serving_ids(lake, data)
    n = top_n or get_settings().top_n
    published = []
    candidate = int(decision["candidate_version"])
    champion = decision["champion_version"]
    for version in dict.fromkeys([candidate, champion]):
        if version is None:
            continue
        if version != candidate and publishing.is_published(lake, MODEL_NAME, version):
            continue  # an earlier run published the champion already
        model = registry.load_version_recommender(MODEL_NAME, version)
        manifest = publishing.publish_model_outputs(
            lake, model, MODEL_NAME, version, user_ids=users, product_ids=products, n=n, ds=ds,
            run_id=decision["run_id"] if version == candidate else None)
        published.append({"version": version, "rows": {k: v["rows"]
                                                        for k, v in manifest["outputs"].items()}})
    champion_metrics = registry.get_champion(MODEL_NAME)
    latest = publishing.point_latest(
        lake, MODEL_NAME, champion, champion_metric=decision.get("metric"),
        champion_value=(champion_metrics[1].get(decision["metric"]) if champion_metrics else None))
    return {"ds": ds, "published": published, "latest": latest["path"],
            "champion_version": champion, "users": len(users), "products": len(products)}


# ---- report ----------------------------------------------------------------------------------
def results_from_run(run: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{model: {metric: value}}`` back from a run's ``<model>.<metric>`` metrics."""
    out: dict[str, dict[str, float]] = {}
    for key, value in run["metrics"].items():
        model, sep, metric = key.partition(".")
        if sep and model not in ("promotion", OTHER):
            out.setdefault(model, {})[metric] = value
    return out


def model_report(lake: Lake, ds: str, trained: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """Build the model PDF from the MLflow run and attach it to the run as an artifact."""
    from recomart.reports.model import build_model_report

    run = registry.get_run(trained["run_id"])
    training = {"ds": ds, "model_uri": trained["model_uri"],
                **{k: v for k, v in run["params"].items() if k.startswith(("curated.", "features.",
                                                                             "split."))}}
    other: dict[str, dict[str, float]] = {}
    for key, value in run["metrics"].items():
        if key.startswith(f"{OTHER}."):
            _, model, metric = key.split(".", 2)
            other.setdefault(model, {})[metric] = value
    p, t = run["params"], run["tags"]
    selection = {"protocol": p.get("protocol"), "selected": p.get("selected_model"),
                 "why": t.get("recomart.selection"), "repeat_share": p.get("repeat_share"),
                 "repeat_heavy": p.get("repeat_heavy"), "other_name": t.get("recomart.other_protocol"),
                 "other": other, "champion_how": t.get("champion.how")}
    path = build_model_report(lake, ds, results=results_from_run(run), decision=decision,
                              training=training, run_id=trained["run_id"], selection=selection)
    registry.log_artifact(path, "reports", run_id=trained["run_id"])
    return {"ds": ds, "report": lake.rel(path), "run_id": trained["run_id"]}
