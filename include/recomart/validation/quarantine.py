"""The quarantine zone: rejected rows kept as strings with their reason, replaced per logical date."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from recomart.lake import Lake
from recomart.tables import Dataset

META = ("raw_line", "reason", "detail", "_source", "_ds", "_run_id")


def quarantine_schema(ds: Dataset) -> pa.Schema:
    return pa.schema([(c, pa.string()) for c in (*ds.columns, *META)])


def to_table(frame: pd.DataFrame, ds: Dataset) -> pa.Table:
    schema = quarantine_schema(ds)
    cols = {}
    for f in schema:
        values = frame[f.name] if f.name in frame.columns else pd.Series([None] * len(frame))
        cols[f.name] = pa.array(values.astype("object").where(values.notna(), None).tolist()
                                if len(values) else [], pa.string())
    return pa.table(cols, schema=schema)


def write_quarantine(lake: Lake, ds: Dataset, logical_date: str, rows: pa.Table,
                     run_id: str) -> int:
    """One commit that replaces this date's quarantined rows (re-runs never duplicate them)."""
    meta = {"run_id": run_id, "logical_date": logical_date}
    if lake.table_exists("quarantine", ds.name):
        return lake.write_table("quarantine", ds.name, rows, mode="overwrite",
                                predicate=f"_ds = '{logical_date}'", metadata=meta)
    return lake.write_table("quarantine", ds.name, rows, mode="overwrite", metadata=meta)
