"""Batch-side merge of speed landings into the Delta table ``speed/clickstream_master``.

The batch DAG calls ``merge_speed_events`` first. It reads the speed-zone files landed since the
watermark in ``state/speed_watermark.json`` (file modification time, minus a safety margin so a
file finished during the previous merge is never skipped), dedups them by ``event_id`` and merges
them insert-if-absent on ``event_id``. Re-reading a file is harmless, so re-running is idempotent:
no duplicates, same table content.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recomart.lake import Lake
from recomart.streaming.sink import SCHEMA, list_files, read_landed

log = logging.getLogger(__name__)

MASTER_ZONE, MASTER_TABLE = "speed", "clickstream_master"
MARGIN_NS = 5_000_000_000  # files landed within 5 s before the watermark are read again


def watermark_path(lake: Lake):
    return lake.path("state", "speed_watermark.json")


def dedup_by_event_id(table: pa.Table) -> pa.Table:
    """Keep the first row per event_id (overlapping files after a crash hold identical copies)."""
    if table.num_rows == 0:
        return table
    idx = pa.array(range(table.num_rows), pa.int64())
    first = table.append_column("_i", idx).group_by("event_id").aggregate([("_i", "min")])
    keep = pc.sort_indices(first["_i_min"])
    return table.take(pc.take(first["_i_min"], keep))


def master_row_count(lake: Lake) -> int:
    if not lake.table_exists(MASTER_ZONE, MASTER_TABLE):
        return 0
    return lake.read_arrow(MASTER_ZONE, MASTER_TABLE, columns=["event_id"]).num_rows


def merge_speed_events(lake: Lake, ds: str) -> dict[str, Any]:
    """Merge new speed landings into the master table; returns {files, read, new, duplicates,
    watermark} (``watermark``: ISO time of the newest file merged)."""
    state = lake.read_json(watermark_path(lake), default={"mtime_ns": 0})
    since = int(state.get("mtime_ns", 0))
    files = [(p, p.stat().st_mtime_ns) for p in list_files(lake)]
    fresh = [(p, m) for p, m in files if m >= since - MARGIN_NS]
    newest = max([since, *(m for _, m in fresh)])
    summary: dict[str, Any] = {"ds": ds, "files": len(fresh), "read": 0, "new": 0, "duplicates": 0,
                               "watermark": datetime.fromtimestamp(newest / 1e9, UTC).isoformat()
                               if newest else None}
    if not fresh:
        return summary
    table = pa.concat_tables([read_landed(p) for p, _ in fresh])
    unique = dedup_by_event_id(table)
    before = master_row_count(lake)
    version = lake.merge_table(MASTER_ZONE, MASTER_TABLE, unique, keys=["event_id"])
    after = master_row_count(lake)
    summary.update(read=table.num_rows, new=after - before, duplicates=table.num_rows - (after - before),
                   table_version=version)
    lake.write_json(watermark_path(lake), {"mtime_ns": newest, "watermark": summary["watermark"],
                                           "ds": ds, "merged_at": datetime.now(UTC).isoformat()})
    log.info("speed merge %s", summary)
    return summary


def read_speed_zone(lake: Lake) -> pa.Table:
    """Every landed event once (deduped across overlapping files): for checks and tests."""
    files = list_files(lake)
    if not files:
        return SCHEMA.empty_table()
    return dedup_by_event_id(pa.concat_tables([read_landed(p) for p in files]))
