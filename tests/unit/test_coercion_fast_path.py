"""Coercion's fast paths (plain digits, plain decimals, ``YYYY-MM-DDTHH:MM:SSZ``) give exactly what
the general trim + regex + strptime/pandas path gives, on clean columns and on columns with every
kind of odd value (which must fall back to the general path)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recomart.tables import DATASETS
from recomart.validation import coercion as C

INTS = [
    ["1", "22", "333", None, "007", "999999999999999999"],  # clean: fast path
    ["1", " 2", "+3", "-4", "x", "1.0", "", "1234567890123456789", None, "٣"],  # odd: general path
    [None, None], [],
]
FLOATS = [
    ["1.5", "20", "3.", ".25", None, "0004.50"],  # clean
    ["1.5", "-2", "1e3", ".", "1..2", " 3.5 ", "nan", "inf", "abc", None, "1.2.3"],  # odd
    [None], [],
]
TIMESTAMPS = [
    ["2024-06-20T04:37:23Z", "2024-01-01T00:00:00Z", None],  # clean
    ["2024-06-20T04:37:23Z", " 2024-06-20T04:37:23Z", "2024-06-20 04:37:23Z", "2024-02-30T00:00:00Z",
     "2024-06-20T04:37:60Z", "2024-06-20T04:37:23+02:00", "2024-06-20T04:37:23.5Z", "yesterday",
     "2024-06-20", None],  # odd
    ["2024-02-30T00:00:00Z"],  # the right shape, but no such day: the general path rejects it
    [None], [],
]


def _chunked(values: list) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, pa.string())])


def _same(fast: tuple, general: tuple) -> None:
    assert fast[0].combine_chunks().equals(general[0].combine_chunks())
    np.testing.assert_array_equal(fast[1], general[1])


@pytest.mark.parametrize("values", INTS)
def test_int_fast_path_matches_general(values):
    col = _chunked(values)
    _same(C._numeric(col, C.INT_RE, pa.int64()), C._numeric_general(col, C.INT_RE, pa.int64()))


@pytest.mark.parametrize("values", FLOATS)
def test_float_fast_path_matches_general(values):
    col = _chunked(values)
    _same(C._numeric(col, C.FLOAT_RE, pa.float64()),
          C._numeric_general(col, C.FLOAT_RE, pa.float64()))


@pytest.mark.parametrize("values", TIMESTAMPS)
def test_timestamp_fast_path_matches_general(values):
    col = _chunked(values)
    _same(C._timestamp(col), C._timestamp_general(col))


def test_fast_paths_are_taken_on_clean_columns_only():
    assert C._plain_ints(_chunked(INTS[0])) and not C._plain_ints(_chunked(INTS[1]))
    assert C._plain_decimals(_chunked(FLOATS[0])) and not C._plain_decimals(_chunked(FLOATS[1]))
    assert C._timestamp_fast(_chunked(TIMESTAMPS[0])) is not None
    assert C._timestamp_fast(_chunked(TIMESTAMPS[1])) is None
    assert C._timestamp_fast(_chunked(TIMESTAMPS[2])) is None


def test_generated_clickstream_takes_fast_paths_with_the_same_result():
    rng = np.random.default_rng(0)
    n = 5000
    secs = rng.integers(1_700_000_000, 1_720_000_000, n).astype("datetime64[s]")
    rows = pa.table({
        "event_id": [f"e{i:010d}" for i in range(n)],
        "user_id": [str(v) for v in rng.integers(1, 10**6, n)],
        "product_id": [str(v) for v in rng.integers(1, 10**4, n)],
        "event_type": ["view"] * n, "session_id": ["s1"] * n,
        "timestamp": [f"{s}Z" for s in np.datetime_as_string(secs, unit="s")],
        "price": [f"{v:.2f}" if v > 0.1 else None for v in rng.random(n) * 100],
        "request_id": [None] * n,
    })
    typed, codes, _ = C.coerce(rows, DATASETS["clickstream"])
    assert not codes.any()
    for col, kind in DATASETS["clickstream"].columns.items():
        if kind == "int":
            general = C._numeric_general(rows[col], C.INT_RE, pa.int64())
        elif kind == "float":
            general = C._numeric_general(rows[col], C.FLOAT_RE, pa.float64())
        elif kind == "timestamp":
            general = C._timestamp_general(rows[col])
        else:
            continue
        assert typed[col].combine_chunks().equals(general[0].combine_chunks()), col


def test_leading_plus_int_parses_instead_of_crashing():
    """INT_RE allows '+7' but Arrow's int cast refused it and validation raised on such a file."""
    typed, bad = C._numeric(_chunked(["+7", "-7", "7"]), C.INT_RE, pa.int64())
    assert typed.to_pylist() == [7, -7, 7] and not bad.any()
