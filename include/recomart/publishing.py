"""Published recommendations: what applications read, written by the training run.

Layout (serving zone): ``serving/<model>/v<version>/{user_recs,similar_items,audience}.parquet``
plus ``_manifest.json`` (written last, so its presence means the folder is complete), and
``serving/latest.json`` naming the folder of the current ``@champion``. Re-publishing a version
rewrites the same files atomically, so the stage is idempotent.

The recommender only needs ``recommend(user_ids, n)``, ``similar_items(product_ids, n)`` and
``audience(product_ids, n)`` returning frames with a ``rank`` column (1 = best).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recomart.config import get_settings
from recomart.lake import Lake

if TYPE_CHECKING:  # pandas is imported where frames are built: serving never needs it
    import pandas as pd

log = logging.getLogger(__name__)

OUTPUTS = ("user_recs", "similar_items", "audience")
#: Required columns per output (extra columns from the model are kept).
OUTPUT_KEYS = {
    "user_recs": ("user_id", "product_id", "score", "rank"),
    "similar_items": ("product_id", "similar_product_id", "score", "rank"),
    "audience": ("product_id", "user_id", "score", "rank"),
}
LATEST = "latest.json"
MANIFEST = "_manifest.json"


def serving_dir(lake: Lake, name: str, version: int | str) -> Path:
    return lake.path("serving", name, f"v{int(version)}")


def is_published(lake: Lake, name: str, version: int | str) -> bool:
    return (serving_dir(lake, name, version) / MANIFEST).exists()


def _batched(fn, ids: Sequence[int], n: int, batch: int) -> pd.DataFrame:
    import pandas as pd

    frames = [fn(list(ids[i:i + batch]), n) for i in range(0, len(ids), batch)]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _check(output: str, frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    missing = [c for c in OUTPUT_KEYS[output] if c not in frame.columns]
    if missing and len(frame):
        raise ValueError(f"{output}: model output lacks columns {missing} (has {list(frame.columns)})")
    if not len(frame):
        return pd.DataFrame({c: pd.Series([], dtype="float64" if c == "score" else "int64")
                             for c in OUTPUT_KEYS[output]})
    lead = list(OUTPUT_KEYS[output])
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    return frame.sort_values([lead[0], "rank"], kind="stable", ignore_index=True)


def publish_model_outputs(lake: Lake, model: Any, name: str, version: int | str, *,
                          user_ids: Sequence[int], product_ids: Sequence[int],
                          n: int | None = None, ds: str | None = None, run_id: str | None = None,
                          batch_size: int = 5000) -> dict[str, Any]:
    """Write the three outputs of ``model`` for every user and product; returns the manifest.

    ``user_ids`` should be every known customer, including ones without interactions (the model
    answers those with its cold-start list).
    """
    n = n or get_settings().top_n
    users = np.unique(np.asarray(list(user_ids), dtype="int64")).tolist()
    products = np.unique(np.asarray(list(product_ids), dtype="int64")).tolist()
    out_dir = serving_dir(lake, name, version)
    lake.remove(out_dir / MANIFEST)  # incomplete until the manifest is rewritten
    frames = {
        "user_recs": _batched(model.recommend, users, n, batch_size),
        "similar_items": _batched(model.similar_items, products, n, batch_size),
        "audience": _batched(model.audience, products, n, batch_size),
    }
    manifest: dict[str, Any] = {
        "model": name, "version": int(version), "ds": ds, "run_id": run_id, "n": n,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"), "outputs": {}}
    for output, frame in frames.items():
        frame = _check(output, frame)
        path = lake.write_parquet(out_dir / f"{output}.parquet", frame)
        key = OUTPUT_KEYS[output][0]
        manifest["outputs"][output] = {
            "path": lake.rel(path), "rows": len(frame),
            f"distinct_{key}s": int(frame[key].nunique())}
        log.info("published %s v%s %s: %d rows", name, version, output, len(frame))
    manifest["users_requested"] = len(users)
    manifest["products_requested"] = len(products)
    lake.write_json(out_dir / MANIFEST, manifest)
    return manifest


def point_latest(lake: Lake, name: str, version: int | str, **extra: Any) -> dict[str, Any]:
    """Make ``serving/latest.json`` name ``<name>/v<version>`` (which must be published)."""
    if not is_published(lake, name, version):
        raise FileNotFoundError(f"{serving_dir(lake, name, version)} is not published")
    manifest = lake.read_json(serving_dir(lake, name, version) / MANIFEST)
    latest = {"model": name, "version": int(version), "alias": "champion",
              "path": lake.rel(serving_dir(lake, name, version)),
              "outputs": {k: v["path"] for k, v in manifest["outputs"].items()},
              "published_ds": manifest.get("ds"), "run_id": manifest.get("run_id"),
              "updated_at": datetime.now(UTC).isoformat(timespec="seconds"), **extra}
    lake.write_json(lake.path("serving", LATEST), latest)
    return latest


def read_latest(lake: Lake) -> dict[str, Any] | None:
    return lake.read_json_or_none(lake.path("serving", LATEST))


def read_output(lake: Lake, output: str, key: int | None = None,
                latest: dict[str, Any] | None = None) -> pd.DataFrame:
    """One published output of the current champion, optionally only rows for one id."""
    latest = latest or read_latest(lake)
    if latest is None:
        raise FileNotFoundError(f"nothing published yet in {lake.path('serving')}")
    column = OUTPUT_KEYS[output][0]
    filters = [(column, "=", int(key))] if key is not None else None
    table = lake.read_arrow_file(lake.resolve(latest["outputs"][output]), filters=filters)
    return table.to_pandas().sort_values("rank", kind="stable", ignore_index=True) \
        if key is not None else table.to_pandas()
