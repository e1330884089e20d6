"""Lake facts for lineage: the versions a task reported, and speed files with their checksums."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from recomart.lake import sha256_file
from recomart.lineage import lake_facts, reported_lineage
from recomart.orchestration import asset_uri
from recomart.streaming.merge import merge_speed_events
from recomart.streaming.sink import Landed, write_batch


def test_a_reported_read_version_describes_the_table_as_it_was_read(lake):
    lake.write_table("curated", "users", pd.DataFrame({"user_id": [1, 2]}))
    lake.write_table("curated", "users", pd.DataFrame({"user_id": [3, 4, 5], "age": [30, 40, 50]}),
                     metadata={"recomart.run_id": "second"})
    uri = asset_uri("curated", "users")

    (read,) = lake_facts(lake, uri, "2024-05-01", {"read_versions": {"curated/users": 0}})
    assert (read.version, read.rows, [n for n, _ in read.schema]) == (0, 2, ["user_id"])
    assert read.extra["version_source"] == "task" and "run_id" not in read.extra  # v0's commit
    (latest,) = lake_facts(lake, uri, "2024-05-01")
    assert (latest.version, latest.rows, [n for n, _ in latest.schema]) == (1, 3, ["user_id", "age"])
    assert latest.extra["version_source"] == "latest_at_completion" and latest.extra["run_id"] == "second"
    (written,) = lake_facts(lake, uri, None, {"written_versions": {"curated/users": 0}}, output=True)
    assert written.version == 0  # outputs use written_versions, not read_versions


def test_reported_lineage_keeps_only_well_formed_keys():
    assert reported_lineage({"read_versions": {"/curated/users/": 3, "curated/x": "3", "curated/y": True},
                             "merge_id": "m1", "rows": 5}) == {
        "read_versions": {"curated/users": 3}, "merge_id": "m1"}
    assert reported_lineage("a path") == {} and reported_lineage(None) == {}


def _land(lake, day: str, partition: int) -> None:
    ts = datetime.fromisoformat(f"{day}T10:00:00+00:00").astimezone(UTC)
    rows = [Landed({"event_id": f"{day}-{partition}-{i}", "user_id": 1, "product_id": i,
                    "event_type": "view", "session_id": "s", "timestamp": ts, "price": None},
                   partition, i, None) for i in range(3)]
    write_batch(lake, "clickstream", rows, {partition: (0, 2)})


def test_speed_files_are_traced_with_their_checksums(lake):
    uri = asset_uri("speed", "clickstream")
    _land(lake, "2024-05-01", 0)
    _land(lake, "2024-05-02", 1)
    first = merge_speed_events(lake, "2024-05-02")
    facts = lake_facts(lake, uri, "2024-05-02", {"merge_id": first["merge_id"]})
    assert sorted(f.path for f in facts) == [
        "speed/clickstream/date=2024-05-01/clickstream-p000-o000000000000-000000000002.parquet",
        "speed/clickstream/date=2024-05-02/clickstream-p001-o000000000000-000000000002.parquet"]
    assert all(f.kind == "speed_file" and f.rows == 3 and f.sha256 == sha256_file(lake.root / f.path)
               for f in facts)

    again = merge_speed_events(lake, "2024-05-02")  # nothing new: the task read no files
    (none,) = lake_facts(lake, uri, "2024-05-02", {"merge_id": again["merge_id"]})
    assert (none.kind, none.extra["files_read"]) == ("folder", 0)

    by_date = lake_facts(lake, uri, "2024-05-01")  # no merge reported: the event date's files
    assert [f.path.split("/")[2] for f in by_date] == ["date=2024-05-01"]
    assert by_date[0].sha256 == sha256_file(lake.root / by_date[0].path)
