"""Raw-zone landing folders and their ``_manifest.json`` (the contract in CONTRIBUTING.md).

A landing folder holds one data file and its manifest. The manifest is written last, so a folder
without a manifest is an interrupted landing and is treated as absent (it gets replaced).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from recomart.errors import PermanentError, TransientError
from recomart.lake import Lake, LakePath

MANIFEST = "_manifest.json"


class RawLandingConflict(PermanentError):
    """The source changed for a date that is already landed; raw landings are never overwritten."""


class SourceChangedError(TransientError):
    """A source file changed while it was being copied: landing it again later can succeed."""


def landing_dir(lake: Lake, source: str, dataset: str, ds: str) -> LakePath:
    return lake.path("raw", source, dataset, f"ds={ds}")


def read_manifest(lake: Lake, source: str, dataset: str, ds: str) -> dict[str, Any] | None:
    """The manifest of a finished landing, or None when the date was not (fully) landed."""
    path = landing_dir(lake, source, dataset, ds) / MANIFEST
    return lake.read_json_or_none(path)


def count_lines(path: LakePath) -> int:
    """Data rows of a CSV-like file: newline count minus the header, a final unterminated line counts."""
    return scan_file(path)[1]


def scan_file(path: LakePath) -> tuple[str, int]:
    """``(sha256, data rows)`` of a landed file in one read (one GET on an object store)."""
    digest, newlines, last = hashlib.sha256(), 0, b""
    with path.open("rb") as fh:  # a local file or a lake path (Path / UPath)
        while block := fh.read(1 << 22):
            digest.update(block)
            newlines += block.count(b"\n")
            last = block
    if not last:
        return digest.hexdigest(), 0
    lines = newlines + (0 if last.endswith(b"\n") else 1)
    return digest.hexdigest(), max(lines - 1, 0)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def relative(lake: Lake, path: LakePath) -> str:
    return lake.rel(path)
