"""Land each ``<dataset>.csv`` of a source folder in ``raw/csv/<dataset>/ds=<ds>/`` unchanged.

Idempotency: the same bytes for a landed date are a no-op (files and manifest untouched). Different
bytes for a landed date raise :class:`RawLandingConflict`: raw is the immutable record of what was
received for that date, and silently keeping either version would hide a re-delivery that someone
must look at (delete the landing folder on purpose to re-land it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from recomart.errors import PermanentError
from recomart.ingestion.landing import (
    MANIFEST,
    RawLandingConflict,
    SourceChangedError,
    landing_dir,
    now_iso,
    read_manifest,
    relative,
    scan_file,
)
from recomart.lake import Lake, sha256_file
from recomart.tables import DATASETS

log = logging.getLogger(__name__)
SOURCE = "csv"


class SourceMissingError(PermanentError, FileNotFoundError):
    """A source folder or one of its ``<dataset>.csv`` files does not exist."""


def _check_sources(source_dir: Path, datasets: list[str]) -> dict[str, Path]:
    if not source_dir.is_dir():
        raise SourceMissingError(f"source folder {source_dir} does not exist")
    files = {name: source_dir / f"{name}.csv" for name in datasets}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise SourceMissingError(f"missing source file(s): {', '.join(missing)}")
    return files


def _conflict(lake: Lake, dataset: str, src: Path, ds: str, digest: str) -> dict[str, Any] | None:
    """The existing manifest when ``digest`` is already landed; raises when other bytes are."""
    existing = read_manifest(lake, SOURCE, dataset, ds)
    if existing is not None and existing["sha256"] != digest:
        folder = landing_dir(lake, SOURCE, dataset, ds)
        origin = existing.get("origin")
        hint = (f" If you meant the files that were landed, point RECOMART_SOURCE_DIR at "
                f"{Path(origin).parent}." if origin and Path(origin).parent != src.parent else "")
        raise RawLandingConflict(
            f"{relative(lake, folder)} already holds {existing['path']} from {origin or 'unknown'} "
            f"(sha256 {existing['sha256']}, landed {existing['fetched_at']}) but {src} has sha256 "
            f"{digest}. Raw landings are immutable.{hint} To land the new file for {ds} on purpose, "
            f"delete {lake.uri(folder)}; or run another date.")
    return existing


def _land_one(lake: Lake, dataset: str, src: Path, ds: str, digest: str) -> dict[str, Any]:
    folder = landing_dir(lake, SOURCE, dataset, ds)
    existing = _conflict(lake, dataset, src, ds, digest)
    if existing is not None:
        log.info("raw/csv/%s ds=%s already landed with the same bytes: no-op", dataset, ds)
        return {**existing, "status": "unchanged"}
    # An interrupted landing (no manifest) leaves at most stray files: start clean.
    lake.remove_tree(folder)
    dest = folder / src.name
    lake.copy_file(src, dest)
    landed_sha, rows = scan_file(dest)  # one read of what landed: checksum and row count
    if landed_sha != digest:  # the source changed while we copied
        lake.remove_tree(folder)
        raise SourceChangedError(f"{src} changed while it was being copied; retry the landing")
    manifest = {"source": SOURCE, "dataset": dataset, "logical_date": ds, "rows": rows,
                "sha256": digest, "bytes": lake.size(dest), "fetched_at": now_iso(),
                "path": relative(lake, dest), "origin": str(src)}
    lake.write_json(folder / MANIFEST, manifest)
    log.info("landed %s -> %s (%d rows, %d bytes)", src, manifest["path"], manifest["rows"],
             manifest["bytes"])
    return {**manifest, "status": "landed"}


def ingest_csv_sources(lake: Lake, ds: str, source_dir: Path | str,
                       datasets: list[str] | None = None) -> dict[str, Any]:
    """Land every canonical dataset's CSV for ``ds``; all files are checked before any is copied."""
    names = datasets or list(DATASETS)
    files = _check_sources(Path(source_dir), names)
    digests = {name: sha256_file(path) for name, path in files.items()}
    for name, path in files.items():  # refuse before landing anything
        _conflict(lake, name, path, ds, digests[name])
    landed = {name: _land_one(lake, name, path, ds, digests[name]) for name, path in files.items()}
    return {"logical_date": ds, "source_dir": str(source_dir), "datasets": landed,
            "rows": sum(m["rows"] for m in landed.values())}
