"""``duplicate_rows``' sorted-key shortcut agrees with Pandera's ``unique`` check on the same input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from recomart.validation.schemas import _strictly_increasing, duplicate_rows


def pandera_duplicates(frame: pd.DataFrame, key: tuple[str, ...]) -> np.ndarray:
    schema = pa.DataFrameSchema(unique=list(key), report_duplicates="exclude_first")
    try:
        schema.validate(frame[list(key)], lazy=True)
    except pa.errors.SchemaErrors as exc:
        return np.sort(exc.failure_cases["index"].dropna().astype(int).unique())
    return np.array([], dtype=int)


CASES = {
    "sorted strings": pd.Series([f"e{i:05d}" for i in range(500)], dtype="str"),
    "sorted ints": pd.Series(np.arange(1, 400) * 3, dtype="Int64"),
    "strings with a repeat": pd.Series(["a", "b", "b", "c"], dtype="str"),
    "sorted but equal neighbours": pd.Series([1, 2, 2, 3, 3, 3], dtype="Int64"),
    "unsorted, unique": pd.Series(["c", "a", "b"], dtype="str"),
    "unsorted with repeats": pd.Series([5, 1, 5, 2, 1], dtype="Int64"),
    "one row": pd.Series(["x"], dtype="str"),
    "empty": pd.Series([], dtype="str"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_duplicates_as_pandera(name):
    frame = pd.DataFrame({"k": CASES[name]})
    np.testing.assert_array_equal(duplicate_rows(frame, ("k",)), pandera_duplicates(frame, ("k",)))


def test_shortcut_only_for_strictly_increasing_keys():
    assert _strictly_increasing(CASES["sorted strings"]) and _strictly_increasing(CASES["sorted ints"])
    assert not _strictly_increasing(CASES["sorted but equal neighbours"])
    assert not _strictly_increasing(CASES["unsorted, unique"])
    assert not _strictly_increasing(pd.Series(["a", None, "b"], dtype="str"))


def test_multi_column_keys_still_use_pandera():
    frame = pd.DataFrame({"a": [1, 1, 2, 1], "b": [1, 2, 1, 1]}).astype("Int64")
    np.testing.assert_array_equal(duplicate_rows(frame, ("a", "b")), [3])
