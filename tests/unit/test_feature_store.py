"""Feature store: point-in-time correctness, idempotent snapshots, versions, online lookups, CLI."""

from __future__ import annotations

import pandas as pd
import pytest

from recomart.features.definitions import FeatureTableSpec, _defs
from recomart.features.store import FeatureStore, FeatureStoreError

SPEC = FeatureTableSpec("user_stats", ("user_id",), "test table",
                        _defs(("score", "a number"), ("label", "a string")))
PAIR_SPEC = FeatureTableSpec("pair_stats", ("user_id", "product_id"), "pairs",
                             _defs(("clicks", "clicks of the pair")))


def _frame(scores: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": list(scores), "score": list(scores.values()),
                         "label": [f"s{v:g}" if v is not None else None for v in scores.values()]})


@pytest.fixture
def store(lake) -> FeatureStore:
    return FeatureStore(lake)


def _write(store: FeatureStore, ds: str, scores: dict[int, float], run: str | None = None) -> dict:
    return store.write("user_stats", _frame(scores), entity=["user_id"], ds=ds,
                       run_id=run or f"run-{ds}", definitions=SPEC)


def test_point_in_time_never_returns_a_later_snapshot(store):
    _write(store, "2024-05-01", {1: 10.0, 2: 20.0})   # as of 2024-05-02T00:00Z
    _write(store, "2024-05-10", {1: 11.0, 2: 21.0})   # as of 2024-05-11T00:00Z
    rows = pd.DataFrame({
        "user_id": [1, 1, 1, 2, 1, 2, 3],
        "event_timestamp": pd.to_datetime([
            "2024-05-01T12:00Z",   # before the first snapshot exists -> nothing
            "2024-05-02T00:00Z",   # exactly at the first as-of time -> first
            "2024-05-10T23:59Z",   # between the two -> first (second is later than the row)
            "2024-05-05T00:00Z",   # between -> first
            "2024-05-11T00:00Z",   # at the second as-of -> second
            "2024-06-01T00:00Z",   # after both -> second
            "2024-06-01T00:00Z",   # unknown entity -> nothing
        ], utc=True),
        "label_in": list("abcdefg"),
    })
    got = store.get_historical_features(rows, ["user_stats:score", "user_stats:label"])
    assert list(got["label_in"]) == list("abcdefg")        # order and extra columns kept
    assert got["score"].isna().tolist() == [True, False, False, False, False, False, True]
    assert got["score"].tolist()[1:6] == [10.0, 10.0, 20.0, 11.0, 21.0]
    assert got["label"].tolist()[1:6] == ["s10", "s10", "s20", "s11", "s21"]

    # the invariant, row by row: the snapshot used is never later than the row's own time
    snaps = store.snapshots("user_stats").set_index("_ds")["feature_timestamp"]
    for row in got.dropna(subset=["score"]).itertuples():
        ds = "2024-05-01" if row.score in (10.0, 20.0) else "2024-05-10"
        assert snaps[ds] <= row.event_timestamp


def test_point_in_time_accepts_naive_timestamps_as_utc_and_full_names(store):
    _write(store, "2024-05-01", {1: 10.0})
    rows = pd.DataFrame({"user_id": [1], "event_timestamp": [pd.Timestamp("2024-05-03")],
                         "score": [0.0]})
    with pytest.raises(FeatureStoreError, match="full_feature_names"):
        store.get_historical_features(rows, ["user_stats:score"])
    got = store.get_historical_features(rows, ["user_stats:score"], full_feature_names=True)
    assert got.loc[0, "user_stats__score"] == 10.0 and got.loc[0, "score"] == 0.0


def test_rerun_of_same_ds_is_idempotent_and_new_ds_adds_a_version(store):
    first = _write(store, "2024-05-01", {1: 10.0, 2: 20.0}, run="a")
    snap_a = store.get_snapshot("user_stats")
    again = _write(store, "2024-05-01", {1: 10.0, 2: 20.0}, run="a")
    snap_b = store.get_snapshot("user_stats")
    pd.testing.assert_frame_equal(snap_a.sort_values("user_id", ignore_index=True),
                                  snap_b.sort_values("user_id", ignore_index=True))
    snaps = store.snapshots("user_stats")
    assert list(snaps["_ds"]) == ["2024-05-01"] and list(snaps["rows"]) == [2]
    assert again["version"] == first["version"] + 1             # a commit, but no duplicate rows

    new = _write(store, "2024-05-02", {1: 12.0, 2: 22.0, 3: 32.0})
    assert new["version"] == again["version"] + 1
    assert list(store.snapshots("user_stats")["_ds"]) == ["2024-05-01", "2024-05-02"]
    # the old version is still readable: it has only the first snapshot
    old = store.snapshots("user_stats", version=first["version"])
    assert list(old["_ds"]) == ["2024-05-01"]
    latest_then = store.get_snapshot("user_stats", version=first["version"])
    assert sorted(latest_then["score"]) == [10.0, 20.0]
    reg = store.registry()["tables"]["user_stats"]
    assert sorted(reg["snapshots"]) == ["2024-05-01", "2024-05-02"]
    assert reg["features"]["score"]["version"] == new["version"]
    assert reg["features"]["score"]["source_run"] == "run-2024-05-02"
    assert reg["features"]["score"]["dtype"] == "double"


def test_rerun_with_changed_values_replaces_only_that_snapshot(store):
    _write(store, "2024-05-01", {1: 10.0})
    _write(store, "2024-05-02", {1: 11.0})
    _write(store, "2024-05-01", {1: 99.0}, run="fix")
    by_ds = {ds: store.get_snapshot("user_stats", ds) for ds in ("2024-05-01", "2024-05-02")}
    assert by_ds["2024-05-01"]["score"].tolist() == [99.0]
    assert by_ds["2024-05-01"]["_run_id"].tolist() == ["fix"]
    assert by_ds["2024-05-02"]["score"].tolist() == [11.0]


def test_online_lookup_returns_latest_values_even_after_a_backfill(store):
    _write(store, "2024-05-02", {1: 12.0, 2: 22.0})
    got = store.get_online_features("user_stats", [2, 1, 7])
    assert got["user_id"].tolist() == [2, 1, 7]
    assert got["score"].tolist()[:2] == [22.0, 12.0] and pd.isna(got["score"].iloc[2])
    _write(store, "2024-05-01", {1: 1.0, 2: 2.0})          # backfilling an older date
    assert store.get_online_features("user_stats", [1])["score"].tolist() == [12.0]
    _write(store, "2024-05-03", {1: 13.0})                 # a newer build replaces the online copy
    got = store.get_online_features("user_stats", [1, 2], features=["score"])
    assert got["score"].iloc[0] == 13.0 and pd.isna(got["score"].iloc[1])
    assert list(got.columns) == ["user_id", "score"]
    assert store.get_online_row("user_stats", 1, ["score"]) == {"user_id": 1, "score": 13.0}
    assert store.get_online_row("user_stats", 2) is None


def test_online_lookup_with_composite_keys(store):
    df = pd.DataFrame({"user_id": [1, 1, 2], "product_id": [5, 6, 5], "clicks": [3, 4, 5]})
    store.write("pair_stats", df, entity=["user_id", "product_id"], ds="2024-05-01", run_id="r",
                definitions=PAIR_SPEC)
    got = store.get_online_features("pair_stats", [(2, 5), (1, 6)])
    assert got["clicks"].tolist() == [5, 4]
    assert store.get_online_row("pair_stats", (1, 5))["clicks"] == 3
    rows = pd.DataFrame({"user_id": [1, 2], "product_id": [6, 6],
                         "event_timestamp": pd.to_datetime(["2024-05-03", "2024-05-03"], utc=True)})
    pit = store.get_historical_features(rows, ["pair_stats:clicks"])
    assert pit["clicks"].iloc[0] == 4 and pd.isna(pit["clicks"].iloc[1])


def test_write_rejects_undocumented_features_and_duplicate_keys(store):
    with pytest.raises(FeatureStoreError, match="no definition"):
        store.write("user_stats", _frame({1: 1.0}).assign(mystery=1), entity=["user_id"],
                    ds="2024-05-01", run_id="r", definitions=SPEC)
    with pytest.raises(FeatureStoreError, match="duplicate"):
        store.write("user_stats", pd.concat([_frame({1: 1.0})] * 2), entity=["user_id"],
                    ds="2024-05-01", run_id="r", definitions=SPEC)
    with pytest.raises(FeatureStoreError, match="no feature table"):
        store.get_online_features("nope", [1])


def test_schema_change_keeps_old_snapshots_and_versions(store):
    _write(store, "2024-05-01", {1: 10.0})
    spec2 = FeatureTableSpec("user_stats", ("user_id",), "t",
                             (*SPEC.features, *_defs(("extra", "a new feature"))))
    v = store.write("user_stats", _frame({1: 11.0}).assign(extra=5), entity=["user_id"],
                    ds="2024-05-02", run_id="r2", definitions=spec2)["version"]
    assert store.get_snapshot("user_stats", "2024-05-01")["score"].tolist() == [10.0]
    assert "extra" not in store.get_snapshot("user_stats", "2024-05-01", version=v - 1).columns
    d = store.diff("user_stats", v - 1, v)
    assert d["added"] == ["extra"] and d["snapshots_added"] == ["2024-05-02"]


def test_describe_and_diff_report_stats_changes(store):
    v0 = _write(store, "2024-05-01", {1: 10.0, 2: 20.0})["version"]
    v1 = _write(store, "2024-05-02", {1: 30.0, 2: 50.0, 3: None})["version"]
    desc = store.describe("user_stats", v0)
    score = next(f for f in desc["features"] if f["name"] == "score")
    assert score["stats"]["mean"] == 15.0 and score["description"] == "a number"
    assert desc["latest_ds"] == "2024-05-01" and desc["rows"] == 2
    d = store.diff("user_stats", v0, v1)
    assert d["rows"] == (2, 5) and d["latest_rows"] == (2, 3)
    change = next(c for c in d["feature_changes"] if c["feature"] == "score")["changes"]
    assert change["mean"] == (15.0, 40.0) and change["null_rate"] == (0.0, round(1 / 3, 4))
    assert store.list_tables()[0]["snapshots"] == 2


def test_cli_list_describe_diff(store):
    from typer.testing import CliRunner

    from recomart.cli import app

    _write(store, "2024-05-01", {1: 10.0})
    _write(store, "2024-05-02", {1: 12.0})
    runner = CliRunner()
    listed = runner.invoke(app, ["features", "list"])
    assert listed.exit_code == 0, listed.output
    assert "user_stats" in listed.output
    described = runner.invoke(app, ["features", "describe", "user_stats", "--version", "0"])
    assert described.exit_code == 0, described.output
    assert "a number" in described.output and "2024-05-01" in described.output
    diffed = runner.invoke(app, ["features", "diff", "user_stats", "0", "1"])
    assert diffed.exit_code == 0, diffed.output
    assert "2024-05-02" in diffed.output and "score" in diffed.output
    missing = runner.invoke(app, ["features", "describe", "nope"])
    assert missing.exit_code == 1
    assert "no feature table 'nope'; tables: " in missing.output and "user_stats" in missing.output


def test_point_in_time_before_any_snapshot_gives_nulls(store):
    _write(store, "2024-05-10", {1: 10.0})
    times = pd.to_datetime(["2024-05-01T00:00", "2024-05-10T23:00"], utc=True)
    rows = pd.DataFrame({"user_id": [1, 1], "event_timestamp": times})
    got = store.get_historical_features(rows, ["user_stats:score", "user_stats:label"])
    assert got["score"].isna().all() and got["label"].isna().all()
    assert list(got["user_id"]) == [1, 1]
