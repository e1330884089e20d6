"""Batch-side merge of speed landings into the Delta table ``speed/clickstream_master``.

The batch DAG calls ``merge_speed_events`` first. Which landed files are merged is decided by file
identity, never by modification time: every file merged is recorded in the Delta table
``speed/clickstream_merged_files`` (its lake path, size, sha256, rows, the merge that read it and
the master version it went into). A run merges every landed file whose path is not in that record
(or whose size changed), whatever its mtime, so a file that becomes visible late (slow rename, a
second worker, a clock step, a restore from backup) is merged by the next run, exactly once.
The same holds on an object store: the landed files are found by one listing through the lake
(sizes included, no request per file), each is read with one GET, and its sha256 is computed
from exactly the bytes merged (an S3 ETag is not a content hash for multipart uploads, so it is
not the identity).

Crash safety: the master merge (insert-if-absent on ``event_id``) commits first and the names are
recorded after it. A crash between the two leaves the files unrecorded; the next run reads them
again, the merge inserts nothing for them (their ``event_id``s are there) and records them. So a
crash neither loses nor duplicates rows, and re-running a date merges nothing new and says so.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recomart.lake import Lake, LakePath
from recomart.streaming.sink import SCHEMA, conform, landed_files, list_files, read_landed

log = logging.getLogger(__name__)

MASTER_ZONE, MASTER_TABLE = "speed", "clickstream_master"
MERGED_ZONE, MERGED_TABLE = "speed", "clickstream_merged_files"
SPEED_FILES_DATASET = "speed/clickstream"
"""The lineage dataset (lake path) of the landed files a merge reads."""
MERGED_SCHEMA = pa.schema([
    ("path", pa.string()),  # relative to the lake root: speed/clickstream/date=<d>/<name>.parquet
    ("bytes", pa.int64()), ("sha256", pa.string()), ("rows", pa.int64()),
    ("merge_id", pa.string()), ("ds", pa.string()), ("master_version", pa.int64()),
    ("merged_at", pa.timestamp("us", tz="UTC")),
])


@dataclass(frozen=True)
class LandedFile:
    """A landed speed file read for a merge."""

    path: str
    bytes: int
    sha256: str
    table: pa.Table


def dedup_by_event_id(table: pa.Table) -> pa.Table:
    """Keep the first row per event_id (overlapping files after a crash hold identical copies)."""
    if table.num_rows == 0:
        return table
    idx = pa.array(range(table.num_rows), pa.int64())
    first = table.append_column("_i", idx).group_by("event_id").aggregate([("_i", "min")])
    keep = pc.sort_indices(first["_i_min"])
    return table.take(pc.take(first["_i_min"], keep))


def master_row_count(lake: Lake, version: int | None = None) -> int:
    if not lake.table_exists(MASTER_ZONE, MASTER_TABLE):
        return 0
    return lake.table_stats(MASTER_ZONE, MASTER_TABLE, version)["rows"]


def merged_files(lake: Lake, merge_id: str | None = None) -> pa.Table:
    """The merged-files record (all of it, or the files one merge read)."""
    if not lake.table_exists(MERGED_ZONE, MERGED_TABLE):
        return MERGED_SCHEMA.empty_table()
    table = lake.read_arrow(MERGED_ZONE, MERGED_TABLE)
    if merge_id is not None:
        table = table.filter(pc.equal(table["merge_id"], merge_id))
    return table


def _known_sizes(lake: Lake) -> dict[str, int]:
    """``{path: size}`` of every file merged so far (the latest record per path)."""
    if not lake.table_exists(MERGED_ZONE, MERGED_TABLE):
        return {}
    table = lake.read_arrow(MERGED_ZONE, MERGED_TABLE, columns=["path", "bytes"])
    return dict(zip(table["path"].to_pylist(), table["bytes"].to_pylist(), strict=True))


def _read_landed(lake: Lake, path: LakePath) -> LandedFile:
    data = lake.read_bytes(path)  # one read: the checksum and the rows come from the same bytes
    table = conform(pq.read_table(pa.BufferReader(data)))  # later columns (request_id) read as null
    return LandedFile(path=lake.rel(path), bytes=len(data),
                      sha256=hashlib.sha256(data).hexdigest(), table=table)


def pending_files(lake: Lake) -> tuple[list[LakePath], int]:
    """Landed files not merged yet (new path, or a known path whose size changed), and how many
    landed files are already merged."""
    known = _known_sizes(lake)
    pending, done = [], 0
    for path, now in landed_files(lake):
        rel = lake.rel(path)
        size = known.get(rel)
        if size is not None and size == now:
            done += 1
            continue
        if size is not None:
            log.warning("speed file %s changed size since it was merged (%s -> %s bytes): merging "
                        "it again (rows dedup by event_id)", rel, size, now)
        pending.append(path)
    return pending, done


def _record(lake: Lake, files: list[LandedFile], merge_id: str, ds: str, master_version: int) -> int:
    now = datetime.now(UTC)
    rows = pa.Table.from_pylist([
        {"path": f.path, "bytes": f.bytes, "sha256": f.sha256, "rows": f.table.num_rows,
         "merge_id": merge_id, "ds": ds, "master_version": master_version, "merged_at": now}
        for f in files], schema=MERGED_SCHEMA)
    # update on a path match: a file merged again after a size change keeps one (current) record
    return lake.merge_table(MERGED_ZONE, MERGED_TABLE, rows, keys=["path"], update=True)


def merge_speed_events(lake: Lake, ds: str) -> dict[str, Any]:
    """Merge every landed file not merged yet into the master table.

    Returns small JSON for the DAG: ``files`` (merged now), ``already_merged``, ``read``, ``new``,
    ``duplicates``, ``table_version``, ``merge_id`` (its files in the merged-files record),
    ``read_versions`` (``{"speed/clickstream_master": version merged into}``), ``written_versions``
    (the version committed, when something was merged) and ``message``. ``merge_id``,
    ``read_versions`` and ``written_versions`` are the lineage keys of ``recomart.lineage``.
    """
    pending, done = pending_files(lake)
    merge_id = f"{ds}-{uuid.uuid4().hex[:12]}"
    summary: dict[str, Any] = {"ds": ds, "files": 0, "already_merged": done, "read": 0, "new": 0,
                               "duplicates": 0, "merge_id": merge_id}
    before = lake.table_version(MASTER_ZONE, MASTER_TABLE) \
        if lake.table_exists(MASTER_ZONE, MASTER_TABLE) else None
    if before is not None:
        summary.update(table_version=before, read_versions={f"{MASTER_ZONE}/{MASTER_TABLE}": before})
    if not pending:
        summary["message"] = (f"no new speed-zone files to merge ({done} landed files already "
                              "merged)" if done else "no speed-zone files landed yet")
        log.info("speed merge: %s", summary["message"])
        return summary
    files = [_read_landed(lake, p) for p in pending]
    table = pa.concat_tables([f.table for f in files])
    unique = dedup_by_event_id(table)
    rows_before = master_row_count(lake, before)
    version = lake.merge_table(MASTER_ZONE, MASTER_TABLE, unique, keys=["event_id"])
    new = master_row_count(lake, version) - rows_before
    _record(lake, files, merge_id, ds, version)  # after the merge: a crash here re-reads, dedups
    summary.update(files=len(files), read=table.num_rows, new=new, duplicates=table.num_rows - new,
                   table_version=version,
                   written_versions={f"{MASTER_ZONE}/{MASTER_TABLE}": version},
                   message=f"merged {len(files)} new speed-zone files: {new} new events, "
                           f"{table.num_rows - new} duplicates ({done} files merged before)")
    log.info("speed merge: %s", summary["message"])
    return summary


def read_speed_zone(lake: Lake) -> pa.Table:
    """Every landed event once (deduped across overlapping files): for checks and tests."""
    files = list_files(lake)
    if not files:
        return SCHEMA.empty_table()
    return dedup_by_event_id(pa.concat_tables([read_landed(lake, p) for p in files]))
