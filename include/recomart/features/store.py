"""The feature store: versioned Delta feature tables, a registry, point-in-time and online reads.

Layout (lake zone ``features``):

- ``features/<table>``: Delta table, partitioned by ``_ds``; rows are entity key(s) + features +
  ``feature_timestamp`` (the snapshot's as-of time) + ``_ds`` + ``_run_id``. Each build writes one
  snapshot per logical date; re-running a date replaces its snapshot (idempotent), a new date adds
  one. Every write is a new Delta version, so older states stay readable by version.
- ``features/_registry.json``: the feature definitions (name, entity, dtype, description, table,
  source run, version, created_at) and every snapshot's version, run id and row count.
- ``features/_online/<table>.parquet``: the latest snapshot, replaced atomically after each build;
  loaded once into an index for fast lookups by entity id.

Point-in-time retrieval joins each entity row to the latest snapshot whose ``feature_timestamp`` is
at or before the row's ``event_timestamp`` (``pandas.merge_asof``, backward), so no training row can
see feature values computed from data after its own time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recomart.features.definitions import META_COLUMNS, TIMESTAMP_COLUMN, FeatureTableSpec
from recomart.lake import Lake, LakeError

log = logging.getLogger(__name__)

ZONE = "features"
REGISTRY = "_registry.json"
ONLINE_DIR = "_online"
TS_TYPE = "datetime64[us, UTC]"
ONLINE_RECHECK_S = 1.0
"""How often an online lookup checks whether a build replaced the materialisation."""


class FeatureStoreError(LakeError):
    """A feature-store request that cannot be served (unknown table or feature, bad entity frame)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_feature_refs(features: Sequence[str]) -> dict[str, list[str]]:
    """``["user_features:recency_days", ...]`` → ``{"user_features": ["recency_days"], ...}``."""
    out: dict[str, list[str]] = {}
    for ref in features:
        table, sep, name = ref.partition(":")
        if not sep or not table or not name:
            raise FeatureStoreError(f"feature reference {ref!r} is not 'table:feature'")
        out.setdefault(table, [])
        if name not in out[table]:
            out[table].append(name)
    return out


class FeatureStore:
    """Feature tables in one lake. Cheap to construct; caches the online index per table."""

    def __init__(self, lake: Lake | None = None) -> None:
        self.lake = lake or Lake()
        self._online: dict[str, OnlineTable] = {}

    # ---- paths and registry -------------------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        return self.lake.path(ZONE, REGISTRY)

    def online_path(self, table: str) -> Path:
        return self.lake.path(ZONE, ONLINE_DIR, f"{table}.parquet")

    def registry(self) -> dict[str, Any]:
        return self.lake.read_json(self.registry_path, default={"tables": {}})

    def _entry(self, table: str) -> dict[str, Any]:
        entry = self.registry()["tables"].get(table)
        if entry is None or not self.lake.table_exists(ZONE, table):
            raise FeatureStoreError(f"no feature table {table!r}; tables: {self.table_names()}")
        return entry

    def entity(self, table: str) -> list[str]:
        return list(self._entry(table)["entity"])

    def table_names(self) -> list[str]:
        return [t for t in self.lake.list_tables(ZONE) if t in self.registry()["tables"]]

    # ---- write ---------------------------------------------------------------------------------
    def write(self, table: str, df: pd.DataFrame, entity: Sequence[str], ds: str, run_id: str,
              definitions: FeatureTableSpec | Mapping[str, str], *, as_of: datetime | None = None,
              metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write ``df`` as the snapshot of ``ds`` (replacing an earlier one of the same ``ds``).

        ``definitions`` describes every feature column (a spec or ``{feature: description}``).
        ``as_of`` defaults to the end of ``ds``. Returns ``{version, rows, as_of, features}``.
        """
        from recomart.curated import logical_date_end

        entity = list(entity)
        describe = definitions.describe if isinstance(definitions, FeatureTableSpec) \
            else lambda n: dict(definitions).get(n, "")
        feats = [c for c in df.columns if c not in entity and c not in META_COLUMNS]
        missing = [c for c in entity if c not in df.columns]
        if missing:
            raise FeatureStoreError(f"{table}: entity column(s) {missing} not in the frame")
        undocumented = [f for f in feats if not describe(f)]
        if undocumented:
            raise FeatureStoreError(f"{table}: no definition for feature(s) {undocumented}")
        if df.duplicated(entity).any():
            raise FeatureStoreError(f"{table}: duplicate entity keys {entity} in one snapshot")
        as_of_ts = pd.Timestamp(as_of if as_of is not None else logical_date_end(ds))
        as_of_ts = as_of_ts.tz_localize("UTC") if as_of_ts.tzinfo is None else as_of_ts.tz_convert("UTC")

        frame = df[entity + feats].copy()
        frame[TIMESTAMP_COLUMN] = pd.Series(as_of_ts, index=frame.index).astype(TS_TYPE)
        frame["_ds"] = ds
        frame["_run_id"] = run_id
        data = pa.Table.from_pandas(frame, preserve_index=False)
        commit = {"recomart.ds": ds, "recomart.run_id": run_id,
                  "recomart.as_of": as_of_ts.isoformat()}
        version = self._commit(table, data, ds, commit)

        self._register(table, data, entity, feats, describe, ds, run_id, version, as_of_ts,
                       metadata or {})
        if ds >= max(self.registry()["tables"][table]["snapshots"]):
            self.lake.write_parquet(self.online_path(table), data)
            self._online.pop(table, None)  # this process sees its own new build at once
        log.info("feature table %s: snapshot %s (%d rows) at version %d", table, ds, len(frame),
                 version)
        return {"table": table, "version": version, "rows": len(frame), "as_of": as_of_ts.isoformat(),
                "features": len(feats)}

    def _commit(self, table: str, data: pa.Table, ds: str, commit: dict[str, str]) -> int:
        if not self.lake.table_exists(ZONE, table):
            return self.lake.write_table(ZONE, table, data, mode="overwrite", partition_by=["_ds"],
                                         metadata=commit)
        current = pa.schema(self.lake._delta(ZONE, table).schema().to_arrow())
        if current.names == data.schema.names and all(
                _same_type(a.type, b.type) for a, b in zip(current, data.schema, strict=True)):
            return self.lake.write_table(ZONE, table, data.cast(current), mode="overwrite",
                                         partition_by=["_ds"], predicate=f"_ds = '{ds}'",
                                         metadata=commit)
        # Features were added, dropped or retyped: rewrite the table with the new schema (older
        # snapshots get nulls for new features); earlier versions stay readable by version.
        log.warning("feature table %s: schema changed, rewriting it with the new schema", table)
        others = self.lake.read_arrow(ZONE, table).to_pandas()
        others = others[others["_ds"] != ds]
        merged = pa.Table.from_pandas(pd.concat([others, data.to_pandas()], ignore_index=True),
                                      preserve_index=False)
        return self.lake.write_table(ZONE, table, merged.cast(_merge_schema(data.schema, merged)),
                                     mode="overwrite", partition_by=["_ds"], metadata=commit)

    def _register(self, table: str, data: pa.Table, entity: list[str], feats: list[str], describe,
                  ds: str, run_id: str, version: int, as_of: pd.Timestamp,
                  metadata: Mapping[str, Any]) -> None:
        reg = self.registry()
        entry = reg["tables"].setdefault(table, {"entity": entity, "features": {}, "snapshots": {},
                                                 "created_at": _now()})
        entry["entity"] = entity
        entry["metadata"] = dict(metadata)
        now = _now()
        old = entry["features"]
        entry["features"] = {
            f: {"name": f, "entity": entity, "dtype": str(data.schema.field(f).type),
                "description": describe(f), "table": table, "source_run": run_id, "ds": ds,
                "version": version, "created_at": old.get(f, {}).get("created_at", now),
                "updated_at": now}
            for f in feats
        }
        entry["snapshots"][ds] = {"version": version, "run_id": run_id, "as_of": as_of.isoformat(),
                                  "rows": data.num_rows, "written_at": now}
        entry["latest_version"] = version
        self.lake.write_json(self.registry_path, reg)

    # ---- offline reads -------------------------------------------------------------------------
    def snapshots(self, table: str, version: int | None = None) -> pd.DataFrame:
        """One row per snapshot in the table (at ``version``): ``_ds``, as-of time, run id, rows."""
        df = self.lake.read_table(ZONE, table, version=version,
                                  columns=["_ds", TIMESTAMP_COLUMN, "_run_id"])
        if df.empty:
            return pd.DataFrame(columns=["_ds", TIMESTAMP_COLUMN, "_run_id", "rows"])
        return (df.groupby(["_ds", TIMESTAMP_COLUMN, "_run_id"]).size().rename("rows")
                .reset_index().sort_values("_ds", ignore_index=True))

    def get_snapshot(self, table: str, ds: str | None = None, *, version: int | None = None,
                     features: Sequence[str] | None = None) -> pd.DataFrame:
        """The snapshot of ``ds`` (default: the newest) as it was at Delta ``version``."""
        keys = self.entity(table)
        if ds is None:
            snaps = self.snapshots(table, version)
            if snaps.empty:
                raise FeatureStoreError(f"{table} has no snapshots")
            ds = str(snaps["_ds"].iloc[-1])
        cols = None if features is None else [*keys, *features, *META_COLUMNS]
        return self.lake.read_table(ZONE, table, version=version, columns=cols,
                                    filters=[("_ds", "=", ds)])

    def get_historical_features(self, entity_df: pd.DataFrame, features: Sequence[str], *,
                                timestamp_column: str = "event_timestamp",
                                full_feature_names: bool = False,
                                versions: Mapping[str, int] | None = None) -> pd.DataFrame:
        """Point-in-time join: ``entity_df`` (entity keys + ``event_timestamp``) plus the features.

        Each row gets values from the latest snapshot with ``feature_timestamp <= event_timestamp``
        (null when none is that old). Rows keep their order. Columns are named after the feature,
        or ``<table>__<feature>`` with ``full_feature_names`` (required when two tables share a name).
        ``versions`` (``{table: Delta version}``) reads tables as pinned, not at the latest version.
        """
        if timestamp_column not in entity_df.columns:
            raise FeatureStoreError(f"entity frame has no {timestamp_column!r} column")
        refs = parse_feature_refs(features)
        out = entity_df.copy()
        ts = pd.to_datetime(out[timestamp_column], utc=True)
        if ts.isna().any():
            raise FeatureStoreError(f"{int(ts.isna().sum())} entity rows have no {timestamp_column}")
        out["__row"] = np.arange(len(out))
        out["__ts"] = ts.astype(TS_TYPE)
        taken = set(out.columns)
        for table, names in refs.items():
            keys = self.entity(table)
            absent = [k for k in keys if k not in out.columns]
            if absent:
                raise FeatureStoreError(f"{table} needs entity column(s) {absent} in the entity frame")
            version = (versions or {}).get(table)
            schema = dict(self.lake.table_schema(ZONE, table, version=version))
            unknown = [n for n in names if n not in schema or n in keys or n in META_COLUMNS]
            if unknown:
                raise FeatureStoreError(f"{table} has no feature(s) {unknown}")
            renamed = {n: f"{table}__{n}" if full_feature_names else n for n in names}
            clash = [c for c in renamed.values() if c in taken]
            if clash:
                raise FeatureStoreError(f"feature name(s) {clash} clash with other columns; "
                                        "pass full_feature_names=True")
            taken.update(renamed.values())
            max_ds = out["__ts"].max().date().isoformat()  # prune snapshots; merge_asof decides
            snap = self.lake.read_table(ZONE, table, columns=[*keys, TIMESTAMP_COLUMN, *names],
                                        filters=[("_ds", "<=", max_ds)], version=version)
            snap[TIMESTAMP_COLUMN] = pd.to_datetime(snap[TIMESTAMP_COLUMN], utc=True).astype(TS_TYPE)
            for k in keys:
                out[k] = out[k].astype(snap[k].dtype) if len(snap) else out[k]
            snap = snap.rename(columns=renamed).sort_values(TIMESTAMP_COLUMN, kind="stable")
            out = pd.merge_asof(out.sort_values("__ts", kind="stable"), snap, left_on="__ts",
                                right_on=TIMESTAMP_COLUMN, by=keys, direction="backward",
                                allow_exact_matches=True).drop(columns=[TIMESTAMP_COLUMN])
        return out.sort_values("__row").drop(columns=["__row", "__ts"]).reset_index(drop=True)

    # ---- online reads --------------------------------------------------------------------------
    def _online_table(self, table: str) -> OnlineTable:
        cached = self._online.get(table)
        now = time.monotonic()
        if cached is not None and now - cached.checked < ONLINE_RECHECK_S:
            return cached
        path = self.online_path(table)
        try:
            mtime = self.lake.change_token(path)
        except FileNotFoundError:
            self.entity(table)  # unknown table → says so
            raise FeatureStoreError(f"no online materialisation of {table!r} (build features first)"
                                    ) from None
        if cached is None or cached.mtime != mtime:
            cached = OnlineTable.load(self.lake.read_parquet(path), self.entity(table), mtime)
            self._online[table] = cached
        cached.checked = now
        return cached

    def get_online_features(self, table: str, entity_ids: Sequence[Any],
                            features: Sequence[str] | None = None) -> pd.DataFrame:
        """Latest feature values for ``entity_ids`` (ids, or tuples for multi-key tables), in order.

        Unknown ids come back as rows of nulls. Served from an in-memory index of the online
        materialisation; another process's new build is picked up within ONLINE_RECHECK_S.
        """
        online = self._online_table(table)
        cols = online.columns(features, table)
        pos = online.positions(entity_ids)
        if (pos >= 0).all():
            return pd.DataFrame({c: online.arrays[c][pos] for c in cols})
        index = online.frame.set_index(online.keys if len(online.keys) > 1 else online.keys[0])
        wanted = (pd.MultiIndex.from_tuples([tuple(i) for i in entity_ids], names=online.keys)
                  if len(online.keys) > 1 else pd.Index(list(entity_ids), name=online.keys[0]))
        return index.reindex(wanted).reset_index()[cols]

    def get_online_row(self, table: str, entity_id: Any,
                       features: Sequence[str] | None = None) -> dict[str, Any] | None:
        """One entity's latest values as a dict (None when unknown): the serving fast path."""
        online = self._online_table(table)
        pos = online.index.get(tuple(entity_id) if len(online.keys) > 1 else entity_id)
        if pos is None:
            return None
        return {c: online.arrays[c][pos] for c in online.columns(features, table)}

    # ---- catalogue -----------------------------------------------------------------------------
    def list_tables(self) -> list[dict[str, Any]]:
        reg = self.registry()["tables"]
        rows = []
        for name in self.table_names():
            entry = reg[name]
            latest = max(entry["snapshots"]) if entry["snapshots"] else None
            rows.append({"table": name, "entity": entry["entity"], "features": len(entry["features"]),
                         "snapshots": len(entry["snapshots"]), "latest_ds": latest,
                         "latest_rows": entry["snapshots"][latest]["rows"] if latest else 0,
                         "version": self.lake.table_version(ZONE, name)})
        return rows

    def history(self, table: str) -> list[dict[str, Any]]:
        """Delta commits of the table, newest first, with the ds and run id of each build."""
        out = []
        for h in self.lake.table_history(ZONE, table):
            out.append({"version": h.get("version"), "timestamp": h.get("timestamp"),
                        "operation": h.get("operation"), "ds": h.get("recomart.ds"),
                        "run_id": h.get("recomart.run_id"), "as_of": h.get("recomart.as_of")})
        return out

    def describe(self, table: str, version: int | None = None) -> dict[str, Any]:
        """Schema, snapshots, definitions and summary stats of the newest snapshot at ``version``."""
        entry = self._entry(table)
        version = self.lake.table_version(ZONE, table) if version is None else int(version)
        try:
            schema = pa.schema(self.lake._delta(ZONE, table, version).schema().to_arrow())
        except Exception as exc:  # deltalake raises its own error types for a bad version
            raise FeatureStoreError(f"{table} has no version {version}: {exc}") from exc
        snaps = self.snapshots(table, version)
        latest = str(snaps["_ds"].iloc[-1]) if len(snaps) else None
        frame = self.get_snapshot(table, latest, version=version) if latest else pd.DataFrame()
        keys = entry["entity"]
        feats = [f.name for f in schema if f.name not in keys and f.name not in META_COLUMNS]
        defs = entry["features"]
        return {
            "table": table, "version": version, "entity": keys,
            "schema": [(f.name, str(f.type)) for f in schema],
            "rows": int(snaps["rows"].sum()) if len(snaps) else 0,
            "snapshots": [{"ds": r["_ds"], "as_of": str(r[TIMESTAMP_COLUMN]), "run_id": r["_run_id"],
                           "rows": int(r["rows"])} for r in snaps.to_dict("records")],
            "latest_ds": latest, "latest_rows": len(frame),
            "features": [{"name": f, "dtype": str(schema.field(f).type),
                          "description": defs.get(f, {}).get("description", ""),
                          "stats": feature_stats(frame[f]) if f in frame else {}} for f in feats],
            "metadata": entry.get("metadata", {}),
        }

    def diff(self, table: str, v1: int, v2: int) -> dict[str, Any]:
        """What changed between two versions: schema, rows, snapshots and per-feature stats."""
        a, b = self.describe(table, v1), self.describe(table, v2)
        sa, sb = dict(a["schema"]), dict(b["schema"])
        fa = {f["name"]: f["stats"] for f in a["features"]}
        fb = {f["name"]: f["stats"] for f in b["features"]}
        changes = []
        for name in sorted(set(fa) & set(fb)):
            delta = {k: (fa[name].get(k), fb[name].get(k)) for k in sorted(set(fa[name]) | set(fb[name]))
                     if fa[name].get(k) != fb[name].get(k)}
            if delta:
                changes.append({"feature": name, "changes": delta})
        ds_a = {s["ds"] for s in a["snapshots"]}
        ds_b = {s["ds"] for s in b["snapshots"]}
        return {
            "table": table, "v1": v1, "v2": v2,
            "added": sorted(set(sb) - set(sa)), "removed": sorted(set(sa) - set(sb)),
            "retyped": {c: (sa[c], sb[c]) for c in sorted(set(sa) & set(sb)) if sa[c] != sb[c]},
            "rows": (a["rows"], b["rows"]), "latest_ds": (a["latest_ds"], b["latest_ds"]),
            "latest_rows": (a["latest_rows"], b["latest_rows"]),
            "snapshots_added": sorted(ds_b - ds_a), "snapshots_removed": sorted(ds_a - ds_b),
            "feature_changes": changes,
        }


@dataclass
class OnlineTable:
    """The latest snapshot in memory: the frame, entity key → row position, column arrays."""

    mtime: str  # Lake.change_token of the file it was loaded from
    keys: list[str]
    frame: pd.DataFrame
    index: dict[Any, int]
    arrays: dict[str, np.ndarray]
    checked: float = 0.0

    @classmethod
    def load(cls, frame: pd.DataFrame, keys: list[str], mtime: str) -> OnlineTable:
        key_values = (zip(*(frame[k].tolist() for k in keys), strict=True) if len(keys) > 1
                      else frame[keys[0]].tolist())
        index = {k: i for i, k in enumerate(key_values)}
        return cls(mtime, keys, frame, index, {c: frame[c].to_numpy() for c in frame.columns})

    def columns(self, features: Sequence[str] | None, table: str) -> list[str]:
        if features is None:
            return list(self.frame.columns)
        unknown = [f for f in features if f not in self.frame.columns]
        if unknown:
            raise FeatureStoreError(f"{table} has no feature(s) {unknown}")
        return [*self.keys, *[f for f in features if f not in self.keys]]

    def positions(self, entity_ids: Sequence[Any]) -> np.ndarray:
        get = self.index.get
        if len(self.keys) > 1:
            return np.fromiter((get(tuple(i), -1) for i in entity_ids), dtype=np.int64)
        return np.fromiter((get(i, -1) for i in entity_ids), dtype=np.int64)


def feature_stats(values: pd.Series) -> dict[str, Any]:
    """Small JSON-able summary of one feature column (numbers, strings, timestamps or vectors)."""
    n = len(values)
    nulls = int(values.isna().sum())
    stats: dict[str, Any] = {"count": n, "null_rate": round(nulls / n, 4) if n else 0.0}
    present = values.dropna()
    if present.empty:
        return stats
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        num = present.astype("float64")
        stats.update(mean=round(float(num.mean()), 4), std=round(float(num.std(ddof=0)), 4),
                     min=round(float(num.min()), 4), max=round(float(num.max()), 4))
    elif pd.api.types.is_datetime64_any_dtype(values):
        stats.update(min=str(present.min()), max=str(present.max()))
    elif isinstance(present.iloc[0], list | tuple | np.ndarray):
        lengths = present.map(len)
        stats.update(mean_length=round(float(lengths.mean()), 2))
    else:
        counts = present.astype(str).value_counts()
        stats.update(distinct=len(counts), top=str(counts.index[0]))
    return stats


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Equal up to string/list flavours (pandas writes large_string, Delta reads back string)."""
    text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    if any(t(a) for t in text) and any(t(b) for t in text):
        return True
    if any(t(a) for t in lists) and any(t(b) for t in lists):
        return _same_type(a.value_type, b.value_type)
    return a == b


def _merge_schema(preferred: pa.Schema, merged: pa.Table) -> pa.Schema:
    """Schema of ``merged`` with the types of the newest snapshot where both have a column."""
    fields = [preferred.field(f.name) if f.name in preferred.names else f for f in merged.schema]
    return pa.schema(fields)
