"""Features: engineering from curated tables and a versioned, point-in-time feature store."""

from __future__ import annotations

from recomart.features.engineering import build_features
from recomart.features.store import FeatureStore, FeatureStoreError

__all__ = ["FeatureStore", "FeatureStoreError", "build_features"]
