"""PDF reports for analysts: data quality (``quality``) and exploratory analysis (``eda``).

Builders read only the lake (the validation summary, run history, curated and quarantine tables),
so a report can be regenerated for any past logical date. This module holds the small shared
readers; the builders live in ``quality`` and ``eda`` (imported lazily: they pull matplotlib/fpdf).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recomart.lake import Lake, LakeError

log = logging.getLogger(__name__)


def summary_path(lake: Lake, ds: str) -> Path:
    return lake.path("reports", f"ds={ds}", "validation_summary.json")


def read_summary(lake: Lake, ds: str) -> dict[str, Any]:
    """The validation summary of ``ds``; a clear error when validation has not run for that date."""
    path = summary_path(lake, ds)
    if not path.exists():
        raise LakeError(f"no validation summary for {ds} at {path}: run the validation stage first")
    return lake.read_json(path)


def read_history(lake: Lake) -> list[dict[str, Any]]:
    """All lines of ``state/validation_history.jsonl`` in run order (bad lines are skipped)."""
    path = lake.path("state", "validation_history.jsonl")
    if not path.exists():
        return []
    runs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("skipping unreadable line %d of %s", n, path)
    return runs


def read_curated(lake: Lake, dataset: str, ds: str, columns: Sequence[str], *,
                 version: int | None = None) -> pd.DataFrame:
    """Curated rows as of ``ds``: the table at the run's version (if known) with ``_ds <= ds``.

    Missing tables, missing versions and missing columns degrade to what exists (an empty frame
    with the asked columns when nothing does), so reports work on partial lakes.
    """
    if not lake.table_exists("curated", dataset):
        return pd.DataFrame(columns=list(columns))
    available = {name for name, _ in lake.table_schema("curated", dataset)}
    wanted = [c for c in columns if c in available]
    with_ds = [*wanted, "_ds"] if "_ds" in available and "_ds" not in wanted else wanted
    try:
        df = lake.read_table("curated", dataset, version=version, columns=with_ds)
    except Exception as exc:  # version vacuumed or never written: fall back to the latest
        if version is None:
            raise
        log.warning("curated/%s version %s unreadable (%s); using the latest", dataset, version, exc)
        df = lake.read_table("curated", dataset, columns=with_ds)
    if "_ds" in df.columns:
        keep = df["_ds"].astype(str).str[:10] <= ds
        if not keep.all():
            df = df.loc[keep]
        if "_ds" not in columns:
            df = df.drop(columns="_ds")
    for c in columns:
        if c not in df.columns:
            df[c] = pd.Series(dtype="object")
    return df.reset_index(drop=True)


def read_quarantine(lake: Lake, dataset: str, ds: str) -> pd.DataFrame:
    """This date's quarantined rows of ``dataset`` (empty frame when none)."""
    if not lake.table_exists("quarantine", dataset):
        return pd.DataFrame(columns=["reason", "detail"])
    df = lake.read_table("quarantine", dataset)
    if "_ds" in df.columns:
        df = df.loc[df["_ds"].astype(str).str[:10] == ds]
    return df.reset_index(drop=True)


def build_quality_report(lake: Lake, ds: str, **kwargs: Any) -> Path:
    from recomart.reports.quality import build_quality_report as build

    return build(lake, ds, **kwargs)


def build_eda_report(lake: Lake, ds: str, **kwargs: Any) -> Path:
    from recomart.reports.eda import build_eda_report as build

    return build(lake, ds, **kwargs)


__all__ = ["build_eda_report", "build_quality_report", "read_curated", "read_history",
           "read_quarantine", "read_summary"]
