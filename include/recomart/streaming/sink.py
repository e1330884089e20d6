"""The idempotent lake sink for landing batches: columnar files with deterministic names.

A batch of valid events becomes one parquet file per (topic-partition, event date) at
``speed/clickstream/date=<event date>/<topic>-p<partition>-o<first>-<last>.parquet``, where the
offset range is the batch's range in that partition. Files are written through ``Lake`` (temp
file, fsync, rename) and the folder is fsynced too, so the rename survives a power cut before the
worker commits offsets. A replay of the same range overwrites the same file; a replay cut into
different batches overlaps earlier files, which readers dedup by ``event_id``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from recomart.lake import Lake

SPEED_DIR = "clickstream"
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("event_id", pa.string()), ("user_id", pa.int64()), ("product_id", pa.int64()),
    ("event_type", pa.string()), ("session_id", pa.string()), ("timestamp", TS),
    ("price", pa.float64()),
    ("_kafka_partition", pa.int32()), ("_kafka_offset", pa.int64()), ("_kafka_ts", TS),
])


@dataclass(frozen=True)
class Landed:
    """One valid event with where it came from (partition, offset, broker timestamp)."""

    event: dict[str, Any]
    partition: int
    offset: int
    kafka_ts_ms: int | None  # broker/producer timestamp, ms since epoch


def file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}-p{partition:03d}-o{first:012d}-{last:012d}.parquet"


def speed_root(lake: Lake) -> Path:
    return lake.path("speed", SPEED_DIR)


def to_table(rows: Sequence[Landed]) -> pa.Table:
    """Columnar batch in the speed-zone schema (one pass per column, no pandas)."""
    ev = [r.event for r in rows]
    return pa.Table.from_arrays([
        pa.array([e["event_id"] for e in ev], pa.string()),
        pa.array([e["user_id"] for e in ev], pa.int64()),
        pa.array([e["product_id"] for e in ev], pa.int64()),
        pa.array([e["event_type"] for e in ev], pa.string()),
        pa.array([e["session_id"] for e in ev], pa.string()),
        pa.array([e["timestamp"] for e in ev], TS),
        pa.array([e["price"] for e in ev], pa.float64()),
        pa.array([r.partition for r in rows], pa.int32()),
        pa.array([r.offset for r in rows], pa.int64()),
        pa.array([r.kafka_ts_ms for r in rows], pa.timestamp("ms", tz="UTC")).cast(TS),
    ], schema=SCHEMA)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_batch(lake: Lake, topic: str, rows: Sequence[Landed],
                offset_ranges: dict[int, tuple[int, int]]) -> list[Path]:
    """Durably write ``rows``; ``offset_ranges`` maps partition -> (first, last) offset of the batch.

    Returns the files written. Safe to call again with the same input (same names, same content).
    """
    groups: dict[tuple[int, str], list[Landed]] = defaultdict(list)
    for r in rows:
        groups[(r.partition, r.event["timestamp"].date().isoformat())].append(r)
    written: list[Path] = []
    for (partition, day), group in sorted(groups.items()):
        first, last = offset_ranges[partition]
        path = speed_root(lake) / f"date={day}" / file_name(topic, partition, first, last)
        lake.write_parquet(path, to_table(group))
        written.append(path)
    for folder in {p.parent for p in written}:
        _fsync_dir(folder)
    return written


def list_files(lake: Lake) -> list[Path]:
    """Every landed file (readers must dedup overlapping files by event_id)."""
    root = speed_root(lake)
    return sorted(root.glob("date=*/*.parquet")) if root.is_dir() else []
