"""Exposure records (what the serving API showed, to whom): validation and the lake table.

The API produces one JSON object per served list to ``recommendation-exposures``; the Faust worker
lands them like the clickstream (``sink.write_batch`` into ``speed/exposures``: one write-once
object per batch and date named by its offsets, durable before the offsets are committed: fsync +
rename on a local lake, one PUT on an object store), bad messages go to the exposures dead-letter
topic, and readers dedup by ``request_id`` (a replay after a crash re-lands a batch).

Wire form::

    {"request_id": "9f2c...", "ts": "2026-12-01T22:40:00+00:00", "route": "user",
     "user_id": 42, "session_id": null, "model": "hybrid", "version": 3,
     "experiment": "hybrid-v2", "experiment_revision": 1, "variant": "treatment",
     "assignment_probability": 0.5,
     "items": [{"product_id": 7, "score": 0.93, "rank": 1, "reason": "batch"}, ...]}

(the items exactly as the response listed them; ``rank`` lands as ``position``). The experiment
fields are null outside experiments (``recomart.experiments.routing``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import pyarrow as pa

from recomart.lake import Lake, LakePath
from recomart.streaming.events import DEFAULT_MAX_BYTES, NOT_JSON, OVERSIZED

SPEED_DIR = "exposures"
TS = pa.timestamp("us", tz="UTC")
ITEM = pa.struct([("product_id", pa.int64()), ("position", pa.int32()), ("score", pa.float64()),
                  ("reason", pa.string())])
SCHEMA = pa.schema([
    ("request_id", pa.string()), ("ts", TS), ("route", pa.string()), ("user_id", pa.int64()),
    ("session_id", pa.string()), ("model", pa.string()), ("version", pa.int64()),
    ("variant", pa.string()), ("items", pa.list_(ITEM)),
    ("experiment", pa.string()), ("experiment_revision", pa.int64()),
    ("assignment_probability", pa.float64()),
    ("_kafka_partition", pa.int32()), ("_kafka_offset", pa.int64()), ("_kafka_ts", TS),
])
INVALID = "invalid_exposure"  # dead-letter reason (with the validator's message after a colon)
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_MAX_BYTES = max(DEFAULT_MAX_BYTES, 64 * 1024)


class _Item(msgspec.Struct, gc=False, rename={"position": "rank"}):
    """A served item as the API answered it (``rank`` on the wire, ``position`` in the lake)."""

    product_id: int
    position: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    score: float | None = None
    reason: str | None = None


class _Exposure(msgspec.Struct, gc=False):
    request_id: _Text
    ts: datetime
    items: list[_Item]
    route: str | None = None
    user_id: int | None = None
    session_id: str | None = None
    model: str | None = None
    version: int | None = None
    variant: str | None = None
    experiment: str | None = None
    experiment_revision: int | None = None
    assignment_probability: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None


_decode = msgspec.json.Decoder(_Exposure).decode


@dataclass
class DecodedExposures:
    index: list[int] = field(default_factory=list)
    rows: list[_Exposure] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.index)


def decode_exposures(raws: Sequence[bytes | None], max_bytes: int = _MAX_BYTES) -> DecodedExposures:
    """Validate a batch; never raises. Bad ones get ``not_json``, ``oversized`` or
    ``invalid_exposure:<why>``."""
    out = DecodedExposures()
    for i, raw in enumerate(raws):
        if raw is None:
            out.bad.append((i, NOT_JSON))
            continue
        if len(raw) > max_bytes:
            out.bad.append((i, OVERSIZED))
            continue
        try:
            rec = _decode(raw)
        except msgspec.ValidationError as exc:
            out.bad.append((i, f"{INVALID}:{str(exc)[:200]}"))
            continue
        except msgspec.DecodeError:
            out.bad.append((i, NOT_JSON))
            continue
        out.index.append(i)
        out.rows.append(rec)
    return out


def exposures_table(decoded: DecodedExposures, partitions: Sequence[int], offsets: Sequence[int],
                    kafka_ts_ms: Sequence[int | None]) -> pa.Table:
    take = decoded.index
    rows = decoded.rows

    def ts(t: datetime) -> datetime:
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)

    return pa.Table.from_arrays([
        pa.array([r.request_id for r in rows], pa.string()),
        pa.array([ts(r.ts) for r in rows], TS),
        pa.array([r.route for r in rows], pa.string()),
        pa.array([r.user_id for r in rows], pa.int64()),
        pa.array([r.session_id for r in rows], pa.string()),
        pa.array([r.model for r in rows], pa.string()),
        pa.array([r.version for r in rows], pa.int64()),
        pa.array([r.variant for r in rows], pa.string()),
        pa.array([[{"product_id": it.product_id, "position": it.position, "score": it.score,
                    "reason": it.reason} for it in r.items] for r in rows], pa.list_(ITEM)),
        pa.array([r.experiment for r in rows], pa.string()),
        pa.array([r.experiment_revision for r in rows], pa.int64()),
        pa.array([r.assignment_probability for r in rows], pa.float64()),
        pa.array([partitions[i] for i in take], pa.int32()),
        pa.array([offsets[i] for i in take], pa.int64()),
        pa.array([kafka_ts_ms[i] for i in take], pa.timestamp("ms", tz="UTC")).cast(TS),
    ], schema=SCHEMA)


def list_exposure_files(lake: Lake) -> list[LakePath]:
    from recomart.streaming.sink import list_files

    return list_files(lake, SPEED_DIR)


def read_exposures(lake: Lake) -> pa.Table:
    """Every landed exposure once (deduped by ``request_id``, first landing kept)."""
    import numpy as np

    from recomart.streaming.sink import read_landed  # older files: newer columns read as null

    files = list_exposure_files(lake)
    if not files:
        return SCHEMA.empty_table()
    table = pa.concat_tables([read_landed(lake, p, SCHEMA) for p in files])
    idx = pa.array(range(table.num_rows), pa.int64())
    first = (table.append_column("_i", idx).group_by("request_id")
             .aggregate([("_i", "min")]))["_i_min"]
    return table.take(pa.array(np.sort(first.to_numpy()), pa.int64()))


def count_landed_exposures(lake: Lake) -> int:
    """Distinct ``request_id``s landed (a replayed batch counts once)."""
    from recomart.streaming.sink import count_distinct

    return count_distinct(lake, "request_id", SPEED_DIR)
