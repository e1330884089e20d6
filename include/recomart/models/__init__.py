"""Recommendation models and their offline evaluation (no Airflow, no MLflow in here).

Public API: ``train_hybrid`` / ``HybridRecommender`` (the production model), the baselines
(``RandomRecommender``, ``TopPopRecommender``, ``EASERecommender``, ``SVDRecommender``), and
``evaluate_models`` / ``evaluate_interactions`` / ``evaluate_movielens`` (the protocol).
Submodules import lazily so ``import recomart.models`` stays light.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "interactions_from_tables": "recomart.models.data",
    "to_pairs": "recomart.models.data",
    "temporal_split": "recomart.models.split",
    "ranking_metrics": "recomart.models.metrics",
    "Recommender": "recomart.models.base",
    "RandomRecommender": "recomart.models.baselines",
    "TopPopRecommender": "recomart.models.baselines",
    "EASERecommender": "recomart.models.baselines",
    "SVDRecommender": "recomart.models.svd",
    "ContentModel": "recomart.models.content",
    "HybridRecommender": "recomart.models.hybrid",
    "train_hybrid": "recomart.models.hybrid",
    "evaluate_models": "recomart.models.evaluate",
    "evaluate_interactions": "recomart.models.evaluate",
    "evaluate_movielens": "recomart.models.evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recomart.models' has no attribute {name!r}")
