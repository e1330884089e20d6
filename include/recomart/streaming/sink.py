"""The idempotent lake sink for landing batches: write-once objects whose names are their keys.

A landing batch becomes one parquet object per event date at
``speed/clickstream/date=<event date>/<topic>-<batch key>.parquet``. The batch key names the
batch's offset range in every partition it covers (``p<partition>-o<first>-<last>`` for one
partition, else a digest of all the ranges, which the file also carries in its metadata under
``recomart.offsets``), so the name is the batch's idempotency key: Kafka offsets never change
content, and a replay of the same ranges rewrites the same name with the same rows.

Durable-then-commit, one code path for both backends (the difference lives in ``Lake``):
``Lake.write_parquet`` is atomic and durable when it returns (a local lake: temp file, fsync,
rename, then ``Lake.fsync_dir``; an object store: one PUT, which S3 makes visible only whole and
acknowledges only once stored; ``fsync_dir`` is a no-op there). Only then are offsets committed.
A replay cut into different batches overlaps earlier files; readers and the merge dedup by
``event_id``. Listing goes through the lake's filesystem (one LIST per call on S3, sizes included).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recomart.lake import Lake, LakePath
from recomart.streaming.events import DecodedBatch

SPEED_DIR = "clickstream"
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("event_id", pa.string()), ("user_id", pa.int64()), ("product_id", pa.int64()),
    ("event_type", pa.string()), ("session_id", pa.string()), ("timestamp", TS),
    ("price", pa.float64()), ("request_id", pa.string()),
    ("_kafka_partition", pa.int32()), ("_kafka_offset", pa.int64()), ("_kafka_ts", TS),
])
OFFSETS_KEY = b"recomart.offsets"


@dataclass(frozen=True)
class Landed:
    """One valid event with where it came from (partition, offset, broker timestamp)."""

    event: dict[str, Any]
    partition: int
    offset: int
    kafka_ts_ms: int | None  # broker/producer timestamp, ms since epoch


def batch_key(offset_ranges: Mapping[int, tuple[int, int]]) -> str:
    """Deterministic name part for a batch's ``{partition: (first, last)}`` offsets."""
    if len(offset_ranges) == 1:
        ((partition, (first, last)),) = offset_ranges.items()
        return f"p{partition:03d}-o{first:012d}-{last:012d}"
    text = ",".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(offset_ranges.items()))
    return "b" + hashlib.sha256(text.encode()).hexdigest()[:24]


def file_name(topic: str, offset_ranges: Mapping[int, tuple[int, int]]) -> str:
    return f"{topic}-{batch_key(offset_ranges)}.parquet"


def speed_root(lake: Lake, subdir: str = SPEED_DIR) -> LakePath:
    return lake.path("speed", subdir)


def to_table(rows: Sequence[Landed]) -> pa.Table:
    """Row objects to the speed-zone schema (convenience for tests and small callers)."""
    ev = [r.event for r in rows]
    return pa.Table.from_arrays([
        pa.array([e["event_id"] for e in ev], pa.string()),
        pa.array([e["user_id"] for e in ev], pa.int64()),
        pa.array([e["product_id"] for e in ev], pa.int64()),
        pa.array([e["event_type"] for e in ev], pa.string()),
        pa.array([e["session_id"] for e in ev], pa.string()),
        pa.array([e["timestamp"] for e in ev], TS),
        pa.array([e["price"] for e in ev], pa.float64()),
        pa.array([e.get("request_id") for e in ev], pa.string()),
        pa.array([r.partition for r in rows], pa.int32()),
        pa.array([r.offset for r in rows], pa.int64()),
        pa.array([r.kafka_ts_ms for r in rows], pa.timestamp("ms", tz="UTC")).cast(TS),
    ], schema=SCHEMA)


def split_by_date(table: pa.Table, ts_column: str = "timestamp") -> list[tuple[str, pa.Table]]:
    """``[(event date ISO, rows of that date)]``, vectorised (usually one date per batch)."""
    days = pc.cast(table[ts_column], pa.date32())
    unique = pc.unique(days)
    if len(unique) == 1:
        return [(unique[0].as_py().isoformat(), table)]
    return [(d.isoformat(), table.filter(pc.equal(days, pa.scalar(d, pa.date32()))))
            for d in sorted(unique.to_pylist())]


def write_batch(lake: Lake, topic: str, rows: pa.Table | Sequence[Landed],
                offset_ranges: Mapping[int, tuple[int, int]], subdir: str = SPEED_DIR,
                ts_column: str = "timestamp") -> list[LakePath]:
    """Durably write one batch; ``offset_ranges`` maps partition -> (first, last) offset of the
    whole batch (valid and dead-lettered messages alike).

    ``rows`` is a table in ``SCHEMA`` (the landing loop) or ``Landed`` rows; ``subdir`` and
    ``ts_column`` place other landed streams (``exposures``, by ``ts``) the same way. Returns the files
    written once every one is durable (local: fsynced file and folder; object store: the PUT
    returned). Safe to call again with the same input: it rewrites the same names.
    """
    table = rows if isinstance(rows, pa.Table) else to_table(rows)
    if table.num_rows == 0:
        return []
    meta = {OFFSETS_KEY: json.dumps({str(p): list(r) for p, r in sorted(offset_ranges.items())})}
    name = file_name(topic, offset_ranges)
    written: list[LakePath] = []
    for day, part in split_by_date(table, ts_column):
        path = speed_root(lake, subdir) / f"date={day}" / name
        lake.write_parquet(path, part.replace_schema_metadata(meta))
        written.append(path)
    for folder in {str(p.parent): p.parent for p in written}.values():
        lake.fsync_dir(folder)
    return written


def conform(table: pa.Table, schema: pa.Schema = SCHEMA) -> pa.Table:
    """A landed table in ``schema``; columns added to the contract later (``request_id``) are
    null in files written before them."""
    for name in schema.names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    return table.select(schema.names).cast(schema)


def read_landed(lake: Lake, path: LakePath, schema: pa.Schema = SCHEMA) -> pa.Table:
    """One landed file in ``schema`` (see ``conform``)."""
    return conform(lake.read_arrow_file(path), schema)


def landed_files(lake: Lake, subdir: str = SPEED_DIR) -> list[tuple[LakePath, int]]:
    """``[(path, size in bytes)]`` of every landed file below ``speed/<subdir>``, sorted by path,
    from one listing of the lake's filesystem (no request per file on an object store)."""
    base = speed_root(lake, subdir)
    found = lake.fs.glob(f"{lake.uri(base)}/date=*/*.parquet", detail=True)
    out = [(lake.resolve(lake.rel(name)), int(info["size"])) for name, info in found.items()
           if info.get("type", "file") == "file"]
    return sorted(out, key=lambda item: str(item[0]))


def list_files(lake: Lake, subdir: str = SPEED_DIR) -> list[LakePath]:
    """Every landed file (readers must dedup overlapping files by event_id)."""
    return [path for path, _ in landed_files(lake, subdir)]


def count_distinct(lake: Lake, column: str, subdir: str = SPEED_DIR) -> int:
    """Distinct values of ``column`` over the landed files (reads only that column)."""
    chunks = [chunk for p in list_files(lake, subdir)
              for chunk in lake.read_arrow_file(p, columns=[column])[column].chunks]
    return len(pc.unique(pa.concat_arrays(chunks))) if chunks else 0


def count_landed_events(lake: Lake) -> int:
    """Distinct ``event_id``s in the speed zone (overlaps count once)."""
    return count_distinct(lake, "event_id")


def landed_rows(lake: Lake, subdir: str = SPEED_DIR) -> int:
    """Rows in the landed files (a replayed batch may count twice): footers only."""
    total = 0
    for p in list_files(lake, subdir):
        with lake.open(p) as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


def batch_table(decoded: DecodedBatch, partitions: Sequence[int], offsets: Sequence[int],
                kafka_ts_ms: Sequence[int | None]) -> pa.Table:
    """The valid events of a decoded batch in ``SCHEMA``, built column-wise.

    ``partitions``, ``offsets`` and ``kafka_ts_ms`` describe every input message of the batch
    (valid or not); the rows of the valid ones (``decoded.index``) are taken in Arrow.
    """
    take = None if len(decoded.index) == len(offsets) else pa.array(decoded.index, pa.int64())

    def source(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
        arr = pa.array(values, typ)
        return arr if take is None else arr.take(take)

    return pa.Table.from_arrays([
        pa.array(decoded.event_id, pa.string()),
        pa.array(decoded.user_id, pa.int64()),
        pa.array(decoded.product_id, pa.int64()),
        pa.array(decoded.event_type, pa.string()),
        pa.array(decoded.session_id, pa.string()),
        pa.array(decoded.timestamp_us, TS),
        pa.array(decoded.price, pa.float64()),
        pa.array(decoded.request_id, pa.string()),
        source(partitions, pa.int32()),
        source(offsets, pa.int64()),
        source(kafka_ts_ms, pa.timestamp("ms", tz="UTC")).cast(TS),
    ], schema=SCHEMA)
