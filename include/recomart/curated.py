"""Reading curated tables as of a logical date: one cut-off rule for validation, features, training.

Logical date ``ds`` covers events strictly before midnight UTC after it. Curated tables keep one
row per key (the latest ``_ds`` wins), and an absent table reads as an empty, correctly typed frame.
"""

from __future__ import annotations

import pandas as pd

from recomart.lake import Lake
from recomart.tables import DATASETS

DAY = pd.Timedelta(days=1)
TS = "datetime64[us, UTC]"
_DTYPES = {"int": "int64", "float": "float64", "str": "object", "timestamp": TS, "date": TS}


def logical_date_end(ds: str) -> pd.Timestamp:
    """The exclusive cut-off of logical date ``ds``: midnight UTC after it."""
    return pd.Timestamp(ds, tz="UTC") + DAY


def empty_frame(dataset: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES[k])
                         for c, k in DATASETS[dataset].columns.items()})


def read_curated(lake: Lake, dataset: str, version: int | None, cut: pd.Timestamp) -> pd.DataFrame:
    """Canonical columns of ``curated/<dataset>`` at ``version``, latest row per key, events
    strictly before ``cut``; ``version=None`` (no table yet) gives an empty frame."""
    if version is None:
        return empty_frame(dataset)
    spec = DATASETS[dataset]
    df = lake.read_table("curated", dataset, version=version)
    if "_ds" in df.columns and len(df):
        df = df.sort_values("_ds", kind="stable").drop_duplicates(list(spec.key), keep="last")
    if "timestamp" in spec.columns:
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True).astype(TS)
        df = df[df["timestamp"] < cut]
    return df[list(spec.columns)].reset_index(drop=True)


def published_version(lake: Lake, dataset: str, ds: str) -> int | None:
    """Which version of ``curated/<dataset>`` to read for logical date ``ds``: the one function
    every reader calls, so a backfill for an older ``ds`` never reads a newer run's data.

    Today: the newest version whose commit metadata ``logical_date`` is <= ``ds``. None when the
    table is missing or no version qualifies (the reader gets an empty frame).
    """
    if not lake.table_exists("curated", dataset):
        return None
    versions = [int(h["version"]) for h in lake.table_history("curated", dataset)
                if h.get("version") is not None and h.get("logical_date")
                and str(h["logical_date"])[:10] <= ds]
    return max(versions) if versions else None
