"""Parsing edge cases and the speed-layer input: nothing crashes, nothing is lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recomart.ingestion import ingest_csv_sources
from recomart.tables import DATASETS
from recomart.validation import reasons as R
from recomart.validation.parsing import parse_csv

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bad_input" / "rows"
HEADER = "event_id,user_id,product_id,event_type,session_id,timestamp,price\n"


def _parse(tmp_path: Path, text: bytes, name: str = "clickstream"):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(text)
    return parse_csv(path, DATASETS[name])


def test_unclosed_quote_on_truncated_last_line_falls_back(tmp_path):
    parsed = _parse(tmp_path, (HEADER + 'e1,1,2,view,s1,2024-04-30T10:00:00Z,1.0\n'
                               'e2,1,2,"vie').encode())
    assert parsed.rows.num_rows == 1
    assert list(parsed.rejects["reason"]) == [R.MALFORMED_ROW]
    assert parsed.rows_in == 2


def test_bom_header_only_and_blank_lines(tmp_path):
    parsed = _parse(tmp_path, ("\ufeff" + HEADER + "\n").encode())
    assert parsed.rows_in == 0 and parsed.file_errors == []


def test_optional_column_missing_is_filled(tmp_path):
    parsed = _parse(tmp_path, b"event_id,user_id,product_id,event_type,session_id,timestamp\n"
                              b"e1,1,2,view,s1,2024-04-30T10:00:00Z\n")
    assert parsed.filled_columns == ["price", "request_id"]
    assert parsed.rows.column("price").null_count == 1


@pytest.mark.parametrize("value,reason,expected", [
    ("12", None, 12), (" 7 ", None, 7), ("-3", None, -3), ("1.5", "unparseable_int", None),
    ("1e3", "unparseable_int", None), ("", None, None)])
def test_int_coercion(value, reason, expected):
    import pyarrow as pa

    from recomart.validation.coercion import coerce

    rows = pa.table({c: pa.array(["1"], pa.string()) for c in DATASETS["orders"].columns})
    rows = rows.set_column(rows.column_names.index("quantity"), "quantity",
                           pa.array([value or None], pa.string()))
    rows = rows.set_column(rows.column_names.index("timestamp"), "timestamp",
                           pa.array(["2024-04-30T10:00:00+02:00"], pa.string()))
    typed, codes, labels = coerce(rows, DATASETS["orders"])
    assert (labels[codes[0]][0] or None) == reason
    assert typed.schema.field("quantity").type == pa.int64()
    assert typed["quantity"][0].as_py() == expected  # bad or missing -> null, never a guess
    assert typed["order_id"][0].as_py() == 1  # the other int columns are untouched
    assert typed["timestamp"][0].as_py() == pd.Timestamp("2024-04-30T08:00:00Z")


def test_speed_events_merge_with_csv_and_cross_source_duplicates(lake, tmp_path):
    from recomart.validation import validate_all

    src = tmp_path / "src"
    src.mkdir()
    for name in DATASETS:
        (src / f"{name}.csv").write_bytes((FIXTURE / f"{name}.csv").read_bytes())
    ds = "2024-05-01"
    ingest_csv_sources(lake, ds, src)
    speed = pd.DataFrame({
        "event_id": ["e1", "s100", "s101"],  # e1 is also in the CSV; s101 is after the date
        "user_id": [1, 2, 1], "product_id": [101, 102, 101],
        "event_type": ["view", "purchase", "view"], "session_id": ["x", "y", "z"],
        "timestamp": pd.to_datetime(["2024-04-30T09:00:00Z", "2024-05-01T23:00:00Z",
                                     "2024-05-03T00:00:00Z"], utc=True).astype("datetime64[us, UTC]"),
        "price": [1.0, 2.0, 3.0]})
    lake.write_table("speed", "clickstream_master", speed)
    summary = validate_all(lake, ds, "t1", gx_sample_rows=500)
    click = summary["datasets"]["clickstream"]
    speed_input = [i for i in click["inputs"] if i["source"] == "speed"]
    assert speed_input and speed_input[0]["rows"] == 2  # s101 belongs to a later date
    curated = lake.read_table("curated", "clickstream")
    assert curated.loc[curated["event_id"] == "s100", "_source"].item() == "speed"
    assert curated.loc[curated["event_id"] == "e1", "_source"].item() == "csv"
    quarantine = lake.read_table("quarantine", "clickstream")
    dup = quarantine[(quarantine["_source"] == "speed")]
    assert list(dup["reason"]) == [R.DUPLICATE_KEY] and list(dup["event_id"]) == ["e1"]
    assert click["rows_in"] == click["curated"] + click["quarantined"]


def test_row_checks_leave_the_frame_as_it_was():
    """Pandera validates in place (no copy of 2M rows); the key check reads the frame afterwards,
    so the checks must not change it, whether rows fail or not."""
    from recomart.validation.schemas import RunContext, row_failures

    frame = pd.DataFrame({
        "event_id": ["e1", "e2", "e3"], "user_id": pd.array([1, 2, 9], "Int64"),
        "product_id": pd.array([1, None, 1], "Int64"), "event_type": ["view", "zap", "view"],
        "session_id": ["s", "s", "s"],
        "timestamp": pd.to_datetime(["2024-05-01", "2024-05-01", "2030-01-01"], utc=True),
        "price": [1.0, -2.0, None], "request_id": [None, None, None]})
    before = frame.copy()
    ctx = RunContext(ds_end=pd.Timestamp("2024-05-02", tz="UTC"), user_ids=np.array([1, 2]),
                     product_ids=np.array([1]))
    reasons, failed, _ = row_failures(frame, "clickstream", ctx)
    assert reasons[0] is None and reasons[1] is not None and reasons[2] is not None
    assert failed
    pd.testing.assert_frame_equal(frame, before)
    clean = frame.iloc[:1].copy()
    reasons, failed, _ = row_failures(clean, "clickstream", ctx)  # every row passes
    assert reasons.tolist() == [None] and not failed
    pd.testing.assert_frame_equal(clean, before.iloc[:1])
    # what in-place validation relies on, for every dataset: nothing may write to the frame
    from recomart.validation.schemas import MODELS, schema_for

    for name in MODELS:
        schema = schema_for(name, ctx)
        assert not (schema.coerce or schema.add_missing_columns or schema.drop_invalid_rows), name
        assert not [c for c, col in schema.columns.items() if col.coerce or col.default is not None]
