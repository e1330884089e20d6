"""Reading curated tables as of a logical date: one cut-off rule for validation, features, training.

Logical date ``ds`` covers events strictly before midnight UTC after it. Curated tables keep one
row per key (the latest ``_ds`` wins), and an absent table reads as an empty, correctly typed frame.
"""

from __future__ import annotations

import pandas as pd

from recomart.errors import PermanentError
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


# ---- write-audit-publish ----------------------------------------------------------------------
# Validation commits each curated table as a *staged* Delta version; only a passing quality gate
# publishes it, by writing ``curated/_published/ds=<ds>.json`` ({dataset: version}). Every reader
# of curated data asks :func:`published_version`, so a rejected snapshot is never read downstream
# even though it is the newest Delta version.
PUBLISHED_DIR = "_published"


class NothingPublishedError(PermanentError):
    """A stage needs published curated data and no passing batch run has published any."""


def _pointer_path(lake: Lake, ds: str):
    return lake.path("curated", PUBLISHED_DIR, f"ds={ds}.json")


def publish(lake: Lake, ds: str, versions: dict[str, int], run_id: str) -> dict[str, object]:
    """Publish the staged curated versions validation wrote for ``ds`` (idempotent per ``ds``)."""
    from datetime import UTC, datetime

    pointer = {"logical_date": ds, "run_id": run_id, "versions": dict(sorted(versions.items())),
               "published_at": datetime.now(UTC).isoformat(timespec="seconds")}
    lake.write_json(_pointer_path(lake, ds), pointer)
    return pointer


def unpublish(lake: Lake, ds: str) -> bool:
    """Withdraw ``ds``'s publication (a re-run whose gate fails must not leave the old one)."""
    path = _pointer_path(lake, ds)
    if path.exists():
        lake.remove(path)
        return True
    return False


def published_dates(lake: Lake) -> list[str]:
    base = lake.path("curated", PUBLISHED_DIR)
    if not base.is_dir():
        return []
    return sorted(p.name[3:13] for p in base.glob("ds=*.json"))


def published_pointer(lake: Lake, ds: str | None = None) -> dict | None:
    """The publication that a reader as of ``ds`` sees: the newest one dated on or before ``ds``
    (``None``: the newest of all); ``None`` when nothing was published yet."""
    dates = [d for d in published_dates(lake) if ds is None or d <= ds]
    if not dates:
        return None
    return lake.read_json(_pointer_path(lake, dates[-1]))


def published_version(lake: Lake, dataset: str, ds: str | None = None) -> int | None:
    """The curated version of ``dataset`` that readers as of ``ds`` must read; ``None`` when no
    passing run has published it (an empty frame for :func:`read_curated`)."""
    pointer = published_pointer(lake, ds)
    if pointer is None:
        return None
    version = pointer["versions"].get(dataset)
    return int(version) if version is not None else None


def read_published(lake: Lake, dataset: str, ds: str | None = None) -> pd.DataFrame:
    """Published curated rows as seen on ``ds`` (all of them, no event-time cut)."""
    version = published_version(lake, dataset, ds)
    cut = logical_date_end(ds) if ds else pd.Timestamp.max.tz_localize("UTC")
    return read_curated(lake, dataset, version, cut)
