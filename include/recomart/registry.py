"""All MLflow access: tracking, model registry, the ``@champion`` alias and the promotion rule.

Nothing else in RecoMart imports ``mlflow``. With no settings the tracking and registry store is a
SQLite file in the lake (``<lake>/mlflow/mlflow.db``) and artifacts live in
``<lake>/mlflow/artifacts``; ``RECOMART_MLFLOW_TRACKING_URI`` points the same code at a server.

Models are registered as MLflow *pyfunc* models wrapping a pickled recommender (any object with
``recommend(user_ids, n) -> DataFrame[user_id, product_id, score, rank]``). The serving model is
the version carrying the alias ``champion`` (aliases, not the deprecated stages); a candidate takes
the alias only when it beats the champion by more than ``settings.champion_margin``.

Speed layer: ``champion_recommender(name)`` returns the unwrapped recommender of ``@champion``,
cached per version, so calling it per event batch costs one small registry query.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recomart.config import get_settings

if TYPE_CHECKING:
    import mlflow
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"
TRAINING_EXPERIMENT = "recomart_training"
HYBRID_MODEL = "recomart_hybrid"
CHALLENGER = "challenger"
PROMOTION_METRIC = "ndcg_at_10"
RECOMMENDATION_COLUMNS = ("user_id", "product_id", "score", "rank")
_METRIC_NAME_OK = re.compile(r"[^\w.\- /:]")


def metric_key(name: str) -> str:
    """MLflow metric names allow ``[\\w.- /:]`` only: ``ndcg@10`` becomes ``ndcg_at_10``."""
    return _METRIC_NAME_OK.sub("_", name.replace("@", "_at_"))


# ---- connection ------------------------------------------------------------------------------
def tracking_uri() -> str:
    return get_settings().resolved_mlflow_uri


def _configured(fn):
    """Every public function points MLflow at the configured store first: under the real
    scheduler each Airflow task is its own process, so no task may rely on another's set-up
    (MLflow's default is an ``mlflow.db`` in the working directory)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        configure()
        return fn(*args, **kwargs)
    return wrapper


def configure() -> str:
    """Point MLflow (tracking and registry) at the configured store; returns the URI. Cheap."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def client() -> mlflow.MlflowClient:
    from mlflow import MlflowClient

    uri = configure()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@_configured
def ensure_experiment(name: str) -> str:
    """The experiment id for ``name``, created with its artifacts under the lake if new."""
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return c.create_experiment(name, artifact_location=get_settings().mlflow_artifact_uri(name))


# ---- runs and logging ------------------------------------------------------------------------
@contextmanager
@_configured
def start_run(experiment: str, run_name: str | None = None,
              tags: Mapping[str, Any] | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run in ``experiment`` (created on first use); ends the run on exit."""
    import mlflow

    exp_id = ensure_experiment(experiment)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name,
                          tags={k: str(v) for k, v in (tags or {}).items()}) as run:
        yield run


@_configured
def log_params(params: Mapping[str, Any], prefix: str = "", run_id: str | None = None) -> None:
    """Params as strings (MLflow caps a value at 6000 chars); nested dicts become JSON."""
    import mlflow

    clean = {f"{prefix}{k}": (json.dumps(v, sort_keys=True, default=str)
                              if isinstance(v, dict | list) else str(v))[:6000]
             for k, v in params.items()}
    if run_id is None:
        mlflow.log_params(clean)  # one batch call on the active run
        return
    c = client()
    for key, value in clean.items():
        c.log_param(run_id, key, value)


@_configured
def log_metrics(metrics: Mapping[str, Any], prefix: str = "", run_id: str | None = None) -> None:
    """Numeric metrics only (others are skipped); names are made MLflow-safe via ``metric_key``."""
    import mlflow

    clean = {metric_key(f"{prefix}{k}"): float(v) for k, v in metrics.items()
             if isinstance(v, int | float) and not isinstance(v, bool) and v == v}
    if not clean:
        return
    if run_id is None:
        mlflow.log_metrics(clean)
    else:
        c = client()
        for k, v in clean.items():
            c.log_metric(run_id, k, v)


@_configured
def log_model_metrics(per_model: Mapping[str, Mapping[str, Any]]) -> None:
    """Evaluation results ``{model: {metric: value}}`` as ``<model>.<metric>`` on the active run."""
    for model_name, metrics in per_model.items():
        log_metrics(metrics, prefix=f"{model_name}.")


@_configured
def log_dict(obj: Any, artifact_file: str, run_id: str | None = None) -> None:
    import mlflow

    if run_id is None:
        mlflow.log_dict(obj, artifact_file)
    else:
        client().log_dict(run_id, obj, artifact_file)


@_configured
def log_figure(figure: Any, artifact_file: str) -> None:
    """A matplotlib figure as a PNG (or SVG/PDF by extension) artifact of the active run."""
    import mlflow

    mlflow.log_figure(figure, artifact_file)


@_configured
def log_artifact(path: Path | str, artifact_path: str | None = None, run_id: str | None = None) -> None:
    """Log a local file, or a lake file (an ``s3://`` lake path is fetched to a temp file first:
    MLflow uploads from local files only)."""
    import mlflow

    with _local_file(path) as local:
        if run_id is None:
            mlflow.log_artifact(str(local), artifact_path)
        else:
            client().log_artifact(run_id, str(local), artifact_path)


@contextmanager
def _local_file(path: Any) -> Iterator[Path | str]:
    if getattr(path, "protocol", "") in ("", "file", "local"):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="recomart-artifact-") as tmp:
        local = Path(tmp) / path.name
        local.write_bytes(path.read_bytes())
        yield local


@_configured
def set_tags(tags: Mapping[str, Any], run_id: str | None = None) -> None:
    c = client()
    run_id = run_id or _active_run_id()
    for k, v in tags.items():
        c.set_tag(run_id, k, str(v))


def _active_run_id() -> str:
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run: use registry.start_run(...) or pass run_id")
    return run.info.run_id


@_configured
def get_run(run_id: str) -> dict[str, Any]:
    """A run's params, metrics and tags as plain dicts (what the CLI and the report show)."""
    run = client().get_run(run_id)
    return {"run_id": run_id, "params": dict(run.data.params), "metrics": dict(run.data.metrics),
            "tags": dict(run.data.tags), "experiment_id": run.info.experiment_id,
            "status": run.info.status}


@_configured
def run_artifact_dir(run_id: str) -> Path | None:
    """Local folder of a run's artifacts when the store is file based (the embedded default)."""
    from urllib.parse import urlparse

    uri = client().get_run(run_id).info.artifact_uri
    parsed = urlparse(uri)
    return Path(parsed.path) if parsed.scheme in ("", "file") else None


# ---- pyfunc wrapper --------------------------------------------------------------------------
def _pyfunc_base() -> type:
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel


class RecommenderPyfunc(_pyfunc_base()):  # type: ignore[misc]
    """MLflow pyfunc around a pickled recommender.

    Input: a DataFrame with ``user_id`` (and optionally ``n``, else ``params={"n": ...}``, else
    ``settings.top_n``). Output: ``DataFrame[user_id, product_id, score, rank]``; unknown users
    get the recommender's cold-start answer.
    """

    recommender: Any = None

    def load_context(self, context) -> None:
        with open(context.artifacts["recommender"], "rb") as fh:
            self.recommender = pickle.load(fh)

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        n = int((params or {}).get("n") or 0)
        if not n and "n" in frame.columns and len(frame):
            n = int(frame["n"].iloc[0])
        n = n or get_settings().top_n
        users = [int(u) for u in pd.unique(frame["user_id"])]
        out = self.recommender.recommend(users, n)
        return out[list(RECOMMENDATION_COLUMNS)].reset_index(drop=True)


def _signature(recommender: Any, example: pd.DataFrame):
    from mlflow.models import infer_signature

    output = recommender.recommend([int(u) for u in example["user_id"].unique()], 3)
    output = output[list(RECOMMENDATION_COLUMNS)].reset_index(drop=True)
    return infer_signature(example, output, params={"n": get_settings().top_n})


@_configured
def log_model(model: Any, name: str, signature_example: pd.DataFrame, *,
              metrics: Mapping[str, float] | None = None,
              tags: Mapping[str, Any] | None = None) -> ModelVersion:
    """Log ``model`` in the active run as a pyfunc with a signature and register it as ``name``.

    ``metrics`` (the candidate's own evaluation) are logged unprefixed on the run: they are the
    figures ``promote_if_better`` compares. ``tags`` go on the new model version.
    """
    uri = log_model_artifact(model, signature_example, metrics=metrics)
    return register_model(uri, name, run_id=_active_run_id(),
                          tags={"recommender_class": type(model).__qualname__, **(tags or {})})


@_configured
def log_model_artifact(model: Any, signature_example: pd.DataFrame, *,
                       metrics: Mapping[str, float] | None = None, artifact_name: str = "model") -> str:
    """Log ``model`` as a pyfunc (signature + input example) in the active run; returns its URI.

    The training task logs, the registering task registers: the URI is the small JSON between them.
    """
    import mlflow.pyfunc

    signature = _signature(model, signature_example)
    with tempfile.TemporaryDirectory(prefix="recomart-model-") as tmp:
        pkl = Path(tmp) / "recommender.pkl"
        with open(pkl, "wb") as fh:
            pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        info = mlflow.pyfunc.log_model(
            name=artifact_name, python_model=RecommenderPyfunc(),
            artifacts={"recommender": str(pkl)}, signature=signature,
            input_example=signature_example, pip_requirements=_pip_requirements())
    if metrics:
        log_metrics(metrics)
    set_tags({"recomart.model_uri": info.model_uri,
              "recomart.recommender_class": type(model).__qualname__})
    return info.model_uri


@_configured
def register_model(model_uri: str, name: str, *, run_id: str | None = None,
                   tags: Mapping[str, Any] | None = None) -> ModelVersion:
    """Register a logged model as a new version of ``name``; the run's headline metrics and
    ``tags`` become version tags (visible in the registry UI)."""
    import mlflow

    configure()
    c = client()
    all_tags = {k: str(v) for k, v in (tags or {}).items()}
    if run_id:
        all_tags["run_id"] = run_id
        all_tags.update({k: str(v) for k, v in _headline_metrics(run_id).items()})
    version = mlflow.register_model(model_uri, name, tags=all_tags)
    log.info("registered %s version %s from %s", name, version.version, model_uri)
    return c.get_model_version(name, str(version.version))


@_configured
def find_run(experiment: str, tags: Mapping[str, Any]) -> str | None:
    """The newest finished run of ``experiment`` whose tags include ``tags`` (for idempotent re-runs)."""
    c = client()
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return None
    filters = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = c.search_runs([exp.experiment_id], filter_string=f"attributes.status = 'FINISHED' and {filters}",
                         order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def _pip_requirements() -> list[str]:
    """Pinned from the running environment (avoids MLflow's slow import-capturing subprocess)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("mlflow", "pandas", "numpy", "scikit-learn", "scipy", "scikit-surprise", "xgboost"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            continue
    return reqs


# ---- registry queries ------------------------------------------------------------------------
@_configured
def find_version(name: str, tags: Mapping[str, Any]) -> ModelVersion | None:
    """The newest version of ``name`` whose tags include all of ``tags`` (re-runs reuse it)."""
    versions = client().search_model_versions(f"name = '{name}'")
    wanted = {k: str(v) for k, v in tags.items()}
    hits = [v for v in versions if all(v.tags.get(k) == val for k, val in wanted.items())]
    return max(hits, key=lambda v: int(v.version)) if hits else None


@_configured
def list_versions(name: str) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first, with aliases, run id and headline metrics."""
    c = client()
    by_version: dict[int, list[str]] = {}
    for alias, version in c.get_registered_model(name).aliases.items():
        by_version.setdefault(int(version), []).append(alias)  # search results omit aliases
    out = []
    for v in sorted(c.search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version)):
        out.append({"version": int(v.version), "aliases": sorted(by_version.get(int(v.version), [])),
                    "run_id": v.run_id,
                    "created": v.creation_timestamp, "tags": dict(v.tags),
                    "metrics": _headline_metrics(v.run_id)})
    return out


@_configured
def list_models() -> list[str]:
    return sorted(m.name for m in client().search_registered_models())


def _headline_metrics(run_id: str | None) -> dict[str, float]:
    if not run_id:
        return {}
    metrics = client().get_run(run_id).data.metrics
    return {k: v for k, v in metrics.items() if "." not in k}


@_configured
def get_champion(name: str) -> tuple[ModelVersion, dict[str, float]] | None:
    """The ``@champion`` version of ``name`` and its headline metrics, or None if there is none."""
    from mlflow.exceptions import MlflowException

    try:
        version = client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        # no such model, or no such alias; anything else (store down) must surface
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return version, _headline_metrics(version.run_id)


@_configured
def promote_if_better(name: str, candidate_version: int | str, metric: str = PROMOTION_METRIC,
                      margin: float | None = None, *, champion_value: float | None = None,
                      rescored_version: int | None = None, rescored: bool = False,
                      gated: bool = False) -> dict[str, Any]:
    """Give ``candidate_version`` the ``@champion`` alias iff it beats the champion by > margin.

    No champion yet: the candidate wins. The decision and both figures are written to the
    candidate's run (params ``promotion.*``, metrics ``promotion.candidate_*``/``champion_*``, tag
    ``promotion.decision``, artifact ``promotion/decision.json``) and to the version's tags.
    Calling it twice for the same candidate gives the same decision (idempotent).

    ``rescored=True`` (the training run): the champion's figure is ``champion_value``, its score
    on the candidate's own holdout, not the figure it logged on its older holdout. It must be the
    champion that was re-scored (``rescored_version``), else the candidate is kept: comparing
    with a champion no one scored on this holdout would be guessing.

    ``gated=True`` (``RECOMART_EXPERIMENT_GATED_PROMOTION``): a winner that would replace an
    existing champion gets ``@challenger`` instead (decision ``challenger``); ``@champion`` then
    moves only when its online experiment concludes it is better (``recomart.experiments``). The
    very first model still becomes the champion: something must be served.
    """
    from datetime import UTC, datetime

    margin = get_settings().champion_margin if margin is None else float(margin)
    key = metric_key(metric)
    c = client()
    candidate = c.get_model_version(name, str(candidate_version))
    cand_value = _headline_metrics(candidate.run_id).get(key)
    if cand_value is None:
        raise ValueError(f"{name} v{candidate.version}: run {candidate.run_id} has no metric {key}")
    current = get_champion(name)
    champ_version = int(current[0].version) if current else None
    champ_logged = current[1].get(key) if current else None
    champ_value = champ_logged
    if rescored and current is not None:
        champ_value = None if champion_value is None else float(champion_value)

    if champ_version == int(candidate.version):
        prior = candidate.tags.get("promotion.decision", "promoted")
        decision, reason = prior, "candidate already holds @champion"
    elif current is None:
        decision, reason = "promoted", "no champion yet"
    elif rescored and rescored_version != champ_version:
        decision, reason = "kept", (f"champion is v{champ_version} but v{rescored_version} was "
                                    "re-scored on this holdout: re-run the training")
    elif rescored and champ_value is None:
        decision, reason = "kept", f"champion v{champ_version} could not be re-scored (no recipe)"
    elif champ_value is None:
        decision, reason = "promoted", f"champion v{champ_version} has no {key}"
    elif cand_value > champ_value + margin:
        decision, reason = "promoted", f"{cand_value:.6f} > {champ_value:.6f} + margin {margin}"
    else:
        decision, reason = "kept", f"{cand_value:.6f} <= {champ_value:.6f} + margin {margin}"

    if decision == "promoted" and gated and current is not None \
            and champ_version != int(candidate.version):
        decision = "challenger"
        reason += "; gated promotion: @challenger until an online experiment concludes"
        c.set_registered_model_alias(name, CHALLENGER, str(candidate.version))
    if decision == "promoted" and champ_version != int(candidate.version):
        c.set_registered_model_alias(name, CHAMPION, str(candidate.version))
    result = {
        "model": name, "metric": key, "margin": margin, "decision": decision, "reason": reason,
        "candidate_version": int(candidate.version), "candidate_value": cand_value,
        "previous_champion_version": champ_version, "previous_champion_value": champ_value,
        "previous_champion_logged_value": champ_logged,
        "champion_figure": "re-scored on this holdout" if rescored else "logged",
        "champion_version": int(candidate.version) if decision == "promoted" else champ_version,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _record_decision(candidate.run_id, name, candidate.version, result)
    log.info("promotion %s v%s: %s (%s)", name, candidate.version, decision, reason)
    return result


def _record_decision(run_id: str | None, name: str, version: str, result: Mapping[str, Any]) -> None:
    c = client()
    for k, v in {"decision": result["decision"], "reason": result["reason"],
                 "champion_version": result["champion_version"]}.items():
        c.set_model_version_tag(name, version, f"promotion.{k}", str(v))
    if not run_id:
        return
    existing = c.get_run(run_id).data.params
    for k in ("metric", "margin"):
        # params are immutable in MLflow: a re-decision with the same figures is fine, a
        # different value would raise, so only log once.
        if f"promotion.{k}" not in existing:
            c.log_param(run_id, f"promotion.{k}", str(result[k]))
    c.log_metric(run_id, "promotion.candidate_value", float(result["candidate_value"]))
    if result["previous_champion_value"] is not None:
        c.log_metric(run_id, "promotion.champion_value", float(result["previous_champion_value"]))
    if result.get("previous_champion_logged_value") is not None:
        c.log_metric(run_id, "promotion.champion_logged_value",
                     float(result["previous_champion_logged_value"]))
    c.log_metric(run_id, "promotion.promoted", 1.0 if result["decision"] == "promoted" else 0.0)
    for k in ("decision", "reason", "previous_champion_version"):
        c.set_tag(run_id, f"promotion.{k}", str(result[k]))
    c.log_dict(run_id, dict(result), "promotion/decision.json")


# ---- loading ---------------------------------------------------------------------------------
_LOADED: dict[tuple[str, str, str], Any] = {}


def champion_uri(name: str) -> str:
    return f"models:/{name}@{CHAMPION}"


@_configured
def load_champion(name: str = HYBRID_MODEL):
    """The ``models:/<name>@champion`` pyfunc model, cached per (store, name, version).

    One registry query per call (alias -> version); the model is only re-loaded when the alias
    moved. Raises ``LookupError`` when no champion exists yet.
    """
    import mlflow.pyfunc

    current = get_champion(name)
    if current is None:
        raise LookupError(f"registered model {name!r} has no @{CHAMPION} in {tracking_uri()}")
    key = (tracking_uri(), name, str(current[0].version))
    if key not in _LOADED:
        _LOADED.clear()  # keep at most one model per process in memory
        _LOADED[key] = mlflow.pyfunc.load_model(f"models:/{name}/{current[0].version}")
    return _LOADED[key]


@_configured
def champion_recommender(name: str = HYBRID_MODEL) -> Any:
    """The raw recommender behind ``@champion`` (``recommend``, ``similar_items``, ``audience``)."""
    return load_champion(name).unwrap_python_model().recommender


@_configured
def load_version_recommender(name: str, version: int | str) -> Any:
    """The raw recommender of one version (the publisher re-creates a champion's outputs)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().recommender


# ---- experiments (online A/B readouts and gated promotion) ------------------------------------
EXPERIMENTS_EXPERIMENT = "recomart_experiments"


def version_for_alias(name: str, alias: str) -> int | None:
    """The version number ``models:/<name>@<alias>`` points to, or None (no model / no alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return int(client().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def set_alias(name: str, alias: str, version: int | str) -> None:
    client().set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str) -> None:
    client().delete_registered_model_alias(name, alias)


def set_version_tags(name: str, version: int | str, tags: Mapping[str, Any]) -> None:
    c = client()
    for k, v in tags.items():
        c.set_model_version_tag(name, str(version), k, str(v))
