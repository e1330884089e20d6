"""Faster paths of the training and publishing code, each checked against the slow reference it
replaced on the same input (the references are kept here, small and obviously right)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recomart.models.data import _utc, normalize_events


def _normalize_events_reference(df: pd.DataFrame) -> pd.DataFrame:
    """The former ``normalize_events``: timestamps through a numpy object array (one Timestamp per
    row), event types through an object array."""
    out = pd.DataFrame({
        "user_id": df["user_id"].astype("int64").to_numpy(),
        "product_id": df["product_id"].astype("int64").to_numpy(),
        "timestamp": _utc(df["timestamp"]).to_numpy(),
        "rating": (df["rating"].astype("float64").to_numpy() if "rating" in df
                   else np.full(len(df), np.nan)),
    })
    out["timestamp"] = _utc(out["timestamp"])
    if "event_type" in df:
        out["event_type"] = df["event_type"].astype(str).to_numpy()
    else:
        out["event_type"] = np.where(out["rating"].notna(), "rating", "view")
    return out


@pytest.mark.parametrize("timestamps", [
    pd.date_range("2024-01-01", periods=6, freq="7h", tz="UTC").as_unit("us"),
    pd.date_range("2024-01-01", periods=6, freq="7h", tz="UTC").as_unit("ns"),
    pd.date_range("2024-01-01", periods=6, freq="7h"),  # naive: read as UTC
    pd.date_range("2024-01-01", periods=6, freq="7h", tz="Europe/Berlin"),
    [f"2024-01-0{d}T10:00:00Z" for d in range(1, 7)],
])
@pytest.mark.parametrize("with_types", [True, False])
def test_normalize_events_matches_the_object_array_reference(timestamps, with_types):
    df = pd.DataFrame({"user_id": [3, 1, 2, 1, 3, 2], "product_id": [10, 11, 10, 12, 13, 10],
                       "timestamp": list(timestamps) if isinstance(timestamps, list) else timestamps,
                       "rating": [4.0, None, 5.0, None, None, 2.0]},
                      index=[5, 9, 2, 7, 1, 0])  # a non-default index must not misalign columns
    if with_types:
        df["event_type"] = ["rating", "view", "rating", "purchase", "add_to_cart", "rating"]
    pd.testing.assert_frame_equal(normalize_events(df), _normalize_events_reference(df))
