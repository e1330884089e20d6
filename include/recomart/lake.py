"""The data lake: the only module that reads or writes lake files.

Zones (see recomart_lake/README.md): raw (immutable landings + manifests), speed (Faust landings),
quarantine, curated and features (Delta tables), reports (PDF/HTML), serving (published
recommendations), lineage (OpenLineage events), state (run history, stage state), mlflow,
experiments (A/B definitions, attributed outcomes, readouts).

Every write is atomic: files are written to a temporary name in the same folder and renamed into
place; tables are Delta Lake commits. A crash therefore leaves either the old or the new content.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from recomart.config import get_settings
from recomart.errors import RecomartError

if TYPE_CHECKING:  # only annotations name pandas (pyarrow imports it when a frame is made):
    import pandas as pd  # the serving workers, which never build frames, skip its ~1-2 s import

ZONES = ("raw", "speed", "quarantine", "curated", "features", "reports", "serving", "lineage",
         "state", "mlflow", "experiments")


class LakeError(RecomartError):
    """A lake read or write that cannot succeed (missing table, bad zone)."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, writer) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_arrow(data: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pandas(data, preserve_index=False)


class Lake:
    """A lake rooted at one folder; cheap to construct, holds no open handles."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else get_settings().lake_root

    # ---- paths -------------------------------------------------------------------------------
    def path(self, zone: str, *parts: str) -> Path:
        if zone not in ZONES:
            raise LakeError(f"unknown lake zone {zone!r}; zones are {', '.join(ZONES)}")
        return self.root.joinpath(zone, *parts)

    # ---- files -------------------------------------------------------------------------------
    def write_bytes(self, path: Path, data: bytes) -> Path:
        return _atomic_write(path, lambda fh: fh.write(data))

    def copy_file(self, src: Path, dest: Path) -> Path:
        def _copy(fh) -> None:
            with open(src, "rb") as s:
                while block := s.read(1 << 20):
                    fh.write(block)
        return _atomic_write(dest, _copy)

    def write_text(self, path: Path, text: str) -> Path:
        return self.write_bytes(path, text.encode("utf-8"))

    def write_json(self, path: Path, obj: Any) -> Path:
        return self.write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    def read_json(self, path: Path, default: Any = None) -> Any:
        if not path.exists():
            if default is not None:
                return default
            raise LakeError(f"missing lake file {path}")
        return json.loads(path.read_text(encoding="utf-8"))

    def write_parquet(self, path: Path, data: pd.DataFrame | pa.Table) -> Path:
        table = to_arrow(data)
        return _atomic_write(path, lambda fh: pq.write_table(table, fh, compression="zstd"))

    def read_arrow_file(self, path: Path, columns: Sequence[str] | None = None) -> pa.Table:
        return pq.read_table(path, columns=list(columns) if columns else None)

    def read_parquet(self, path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()

    # ---- Delta tables ------------------------------------------------------------------------
    def table_path(self, zone: str, name: str) -> Path:
        return self.path(zone, name)

    def table_exists(self, zone: str, name: str) -> bool:
        return (self.table_path(zone, name) / "_delta_log").is_dir()

    def _delta(self, zone: str, name: str, version: int | None = None):
        from deltalake import DeltaTable

        path = self.table_path(zone, name)
        if not self.table_exists(zone, name):
            raise LakeError(f"no table {zone}/{name} in lake {self.root}")
        return DeltaTable(str(path), version=version)

    def write_table(self, zone: str, name: str, data: pd.DataFrame | pa.Table, *,
                    mode: str = "overwrite", partition_by: Sequence[str] | None = None,
                    predicate: str | None = None, schema_mode: str | None = "overwrite",
                    metadata: dict[str, str] | None = None) -> int:
        """Commit ``data`` as one Delta version and return it.

        ``predicate`` with ``mode="overwrite"`` replaces only the matching rows (e.g. one logical
        date), which is what makes per-date tasks idempotent.
        """
        from deltalake import CommitProperties, write_deltalake

        path = self.table_path(zone, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"mode": mode}
        if partition_by:
            kwargs["partition_by"] = list(partition_by)
        if predicate:
            kwargs["predicate"] = predicate
        elif mode == "overwrite" and schema_mode:
            kwargs["schema_mode"] = schema_mode
        if metadata:
            kwargs["commit_properties"] = CommitProperties(custom_metadata=metadata)
        write_deltalake(str(path), to_arrow(data), **kwargs)
        return self.table_version(zone, name)

    def merge_table(self, zone: str, name: str, data: pd.DataFrame | pa.Table, keys: Iterable[str],
                    *, update: bool = False, partition_by: Sequence[str] | None = None) -> int:
        """Insert rows whose ``keys`` are not in the table yet (and update matches if asked).

        Merging the same rows twice leaves the table unchanged: the idempotent sink for
        at-least-once delivery.
        """
        source = to_arrow(data)
        if not self.table_exists(zone, name):
            return self.write_table(zone, name, source, mode="overwrite", partition_by=partition_by)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        merger = self._delta(zone, name).merge(source=source, predicate=predicate,
                                               source_alias="s", target_alias="t")
        if update:
            merger = merger.when_matched_update_all()
        merger.when_not_matched_insert_all().execute()
        return self.table_version(zone, name)

    def read_table(self, zone: str, name: str, *, version: int | None = None,
                   columns: Sequence[str] | None = None, filters: Any = None) -> pd.DataFrame:
        dt = self._delta(zone, name, version)
        table = dt.to_pyarrow_table(columns=list(columns) if columns else None, filters=filters)
        return table.to_pandas()

    def read_arrow(self, zone: str, name: str, *, version: int | None = None,
                   columns: Sequence[str] | None = None) -> pa.Table:
        return self._delta(zone, name, version).to_pyarrow_table(
            columns=list(columns) if columns else None)

    def table_version(self, zone: str, name: str) -> int:
        return int(self._delta(zone, name).version())

    def table_history(self, zone: str, name: str) -> list[dict[str, Any]]:
        return list(self._delta(zone, name).history())

    def table_schema(self, zone: str, name: str, version: int | None = None) -> list[tuple[str, str]]:
        schema = pa.schema(self._delta(zone, name, version).schema().to_arrow())
        return [(f.name, str(f.type)) for f in schema]

    def table_stats(self, zone: str, name: str, version: int | None = None) -> dict[str, int]:
        """Version, rows, bytes and files of a table version, from the Delta log (no data read)."""
        dt = self._delta(zone, name, version)
        adds = pa.table(dt.get_add_actions(flatten=True))
        rows = adds["num_records"].to_pylist() if "num_records" in adds.column_names else []
        return {"version": int(dt.version()), "rows": int(sum(r or 0 for r in rows)),
                "bytes": int(sum(adds["size_bytes"].to_pylist())), "files": adds.num_rows}

    def list_tables(self, zone: str) -> list[str]:
        base = self.path(zone)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "_delta_log").is_dir())
