"""The Lake on both backends: a local folder and an s3:// lake on a real S3 API (moto server)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from recomart.config import Settings
from recomart.lake import Lake, LakeError, LakeUnavailableError, sha256_file


def test_local_root_stays_a_plain_path(lake):
    assert lake.is_local and type(lake.path("raw")) is type(Path("/"))
    assert lake.storage_options is None


def test_s3_root_is_an_object_store_path(s3_lake, s3_server):
    assert not s3_lake.is_local
    p = s3_lake.path("raw", "csv", "x.json")
    assert s3_lake.uri(p).startswith(f"s3://{s3_server['bucket']}/lake-")
    opts = s3_lake.storage_options
    assert opts["AWS_ENDPOINT_URL"] == s3_server["endpoint"] and opts["AWS_ALLOW_HTTP"] == "true"
    assert opts["conditional_put"] == "etag" and opts["AWS_REGION"] == "us-east-1"


def test_atomic_write_json_text_and_listing(any_lake):
    lake = any_lake
    p = lake.path("state", "a", "one.json")
    assert not lake.exists(p) and lake.read_json(p, default={"none": 1}) == {"none": 1}
    with pytest.raises(LakeError, match="missing lake file"):
        lake.read_json(p)
    assert lake.read_json_or_none(p) is None
    lake.write_json(p, {"b": 2, "a": [1, 2]})
    lake.write_json(p, {"b": 3})  # replaces the whole content
    assert lake.read_json(p) == {"b": 3} == lake.read_json_or_none(p)
    lake.write_text(lake.path("state", "a", "two.txt"), "héllo\n")
    lake.write_bytes(lake.path("state", "b", "c", "three.bin"), b"\x00\x01")
    assert lake.read_text(lake.path("state", "a", "two.txt")) == "héllo\n"
    assert lake.size(lake.path("state", "b", "c", "three.bin")) == 2
    names = [lake.rel(x) for x in lake.glob(lake.path("state"), "*/*.*")]
    assert names == ["state/a/one.json", "state/a/two.txt"]
    assert [lake.rel(x) for x in lake.glob(lake.path("state"), "**/*.bin")] == ["state/b/c/three.bin"]
    assert [x.name for x in lake.iterdir(lake.path("state"))] == ["a", "b"]
    assert lake.glob(lake.path("state", "nothing"), "*") == [] and lake.iterdir(lake.path("raw")) == []
    assert lake.resolve("state/a/one.json") == p and lake.rel(lake.root) == ""
    # no temp files are left beside the written ones
    assert sorted(x.name for x in lake.path("state", "a").iterdir()) == ["one.json", "two.txt"]
    lake.remove(p)
    lake.remove(p)  # absent: fine
    assert not lake.exists(p)
    lake.remove_tree(lake.path("state", "b"))
    assert not lake.exists(lake.path("state", "b", "c", "three.bin"))


def test_copy_download_and_local_copy(any_lake, tmp_path):
    lake = any_lake
    src = tmp_path / "src.csv"
    src.write_bytes(b"a,b\n1,2\n")
    dest = lake.copy_file(src, lake.path("raw", "csv", "t", "ds=2024-01-01", "t.csv"))
    assert lake.read_bytes(dest) == src.read_bytes() and sha256_file(dest) == sha256_file(src)
    again = lake.copy_file(dest, lake.path("reports", "latest", "t.csv"))  # lake -> lake
    assert lake.read_bytes(again) == src.read_bytes()
    with lake.local_copy(dest) as local:
        assert isinstance(local, Path) and local.read_bytes() == src.read_bytes()
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "index.html").write_text("<h1>x</h1>")
    (docs / "sub" / "page.html").write_text("<p>y</p>")
    out = lake.upload_tree(docs, lake.path("reports", "ds=2024-01-01", "gx_data_docs"))
    assert [lake.rel(p) for p in out] == ["reports/ds=2024-01-01/gx_data_docs/index.html",
                                          "reports/ds=2024-01-01/gx_data_docs/sub/page.html"]
    with lake.open(out[1]) as fh:
        assert fh.read() == b"<p>y</p>"
    with pytest.raises(LakeError, match="reading only"):
        lake.open(out[1], "wb")


def test_parquet_roundtrip_with_columns_and_filters(any_lake):
    lake = any_lake
    frame = pd.DataFrame({"user_id": [1, 2, 3], "score": [0.5, 0.25, 0.125]})
    p = lake.write_parquet(lake.path("serving", "m", "v1", "user_recs.parquet"), frame)
    pd.testing.assert_frame_equal(lake.read_parquet(p), frame)
    got = lake.read_arrow_file(p, columns=["user_id"], filters=[("user_id", ">", 1)])
    assert got.column_names == ["user_id"] and got["user_id"].to_pylist() == [2, 3]
    assert lake.read_parquet_schema(p).names == ["user_id", "score"]


def test_delta_write_merge_read_version_stats(any_lake):
    lake = any_lake
    assert not lake.table_exists("curated", "events") and lake.list_tables("curated") == []
    v0 = lake.write_table("curated", "events", pd.DataFrame({"id": [1, 2], "ds": ["d1", "d1"]}))
    v1 = lake.write_table("curated", "events", pd.DataFrame({"id": [3], "ds": ["d2"]}), mode="append")
    v2 = lake.merge_table("curated", "events", pd.DataFrame({"id": [3, 4], "ds": ["d2", "d2"]}),
                          keys=["id"])
    assert (v0, v1, v2) == (0, 1, 2)
    assert sorted(lake.read_table("curated", "events")["id"]) == [1, 2, 3, 4]
    assert sorted(lake.read_table("curated", "events", version=0)["id"]) == [1, 2]
    # predicate overwrite: replaces one date only (how per-date tasks stay idempotent)
    lake.write_table("curated", "events", pd.DataFrame({"id": [9], "ds": ["d2"]}), predicate="ds = 'd2'")
    assert sorted(lake.read_table("curated", "events")["id"]) == [1, 2, 9]
    stats = lake.table_stats("curated", "events")
    assert stats["version"] == 3 and stats["rows"] == 3 and stats["files"] >= 1 and stats["bytes"] > 0
    assert lake.table_schema("curated", "events") == [("id", "int64"), ("ds", "string")]
    assert len(lake.table_history("curated", "events")) == 4
    lake.write_table("curated", "users", pa.table({"user_id": [1]}))
    assert lake.list_tables("curated") == ["events", "users"]
    assert lake.read_arrow("curated", "users").num_rows == 1
    with pytest.raises(LakeError, match="no table curated/nope"):
        lake.read_table("curated", "nope")


def test_unknown_zone(any_lake):
    with pytest.raises(LakeError, match="unknown lake zone"):
        any_lake.path("nowhere")


def test_s3_lake_writes_nothing_locally(s3_lake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s3_lake.write_json(s3_lake.path("state", "x.json"), {"a": 1})
    s3_lake.write_table("curated", "t", pd.DataFrame({"a": [1]}))
    assert not any(p.name in ("state", "curated") for p in tmp_path.rglob("*")), \
        sorted(map(str, tmp_path.rglob("*")))


def test_missing_bucket_is_a_permanent_error_with_the_fix(s3_server, monkeypatch, tmp_path):
    env = s3_server["env"]
    settings = Settings(lake_root="s3://no-such-bucket-here/lake", local_state_dir=tmp_path,
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        aws_region=env["AWS_REGION"], aws_endpoint_url=s3_server["endpoint"])
    lake = Lake(settings=settings)
    with pytest.raises(LakeUnavailableError, match=r"bucket .no-such-bucket-here. does not exist.*mb"):
        lake.path("raw")


def test_recomart_run_on_a_missing_bucket_stops_before_airflow_and_creates_nothing(s3_server, tmp_path):
    """Without the check in ``airflow_env`` the OpenLineage file transport's fsspec makedirs
    created the missing bucket on the first task's event and the run "succeeded" into it."""
    import subprocess
    import sys

    import boto3

    env = {**os.environ, **s3_server["env"], "RECOMART_LAKE_ROOT": "s3://typo-bucket/lake",
           "RECOMART_LOCAL_STATE_DIR": str(tmp_path / "state"), "AIRFLOW_HOME": str(tmp_path / "af"),
           "COLUMNS": "300"}
    proc = subprocess.run([str(Path(sys.executable).parent / "recomart"), "run", "recomart_batch",
                           "--date", "2024-06-30"], env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-2000:]
    assert "bucket 'typo-bucket' does not exist" in out and "Traceback" not in out, out[-2000:]
    assert not (tmp_path / "af").exists()  # Airflow never started
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name=s3_server["env"]["AWS_REGION"],
                      aws_access_key_id=s3_server["env"]["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=s3_server["env"]["AWS_SECRET_ACCESS_KEY"])
    assert "typo-bucket" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_unreachable_endpoint_says_so(tmp_path):
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(lake_root="s3://bucket/lake", local_state_dir=tmp_path,
                        aws_access_key_id="k", aws_secret_access_key="s", aws_region="us-east-1",
                        aws_endpoint_url=f"http://127.0.0.1:{port}")
    from recomart.errors import RecomartError

    with pytest.raises(RecomartError, match=r"did not answer.*AWS_ENDPOINT_URL"):
        Lake(settings=settings).path("raw")


def test_settings_lake_root_forms(tmp_path):
    assert Settings(lake_root="s3://b/p/").lake_root == "s3://b/p"
    assert not Settings(lake_root="s3://b/p").lake_is_local
    assert Settings(lake_root=str(tmp_path)).lake_root == tmp_path
    with pytest.raises(ValueError, match="unsupported scheme"):
        Settings(lake_root="gs://b/p")
    with pytest.raises(ValueError, match="names no bucket"):
        Settings(lake_root="s3:///p")
    s3 = Settings(lake_root="s3://b/p", local_state_dir=tmp_path / "st")
    assert s3.machine_state_dir == tmp_path / "st"
    assert s3.resolved_mlflow_uri == f"sqlite:///{tmp_path / 'st' / 'mlflow' / 'mlflow.db'}"
    assert s3.mlflow_artifact_uri("exp") == "s3://b/p/mlflow/artifacts/exp"
    local = Settings(lake_root=str(tmp_path / "lake"))
    assert local.machine_state_dir == tmp_path / "lake" / "state"


def test_build_tree_replaces_a_whole_folder(any_lake):
    lake = any_lake
    dest = lake.path("reports", "ds=2024-01-01", "gx_data_docs")
    with lake.build_tree(dest) as tmp:
        (tmp / "index.html").write_text("one")
        (tmp / "old").mkdir()
        (tmp / "old" / "page.html").write_text("stale soon")
    with lake.build_tree(dest) as tmp:
        (tmp / "index.html").write_text("two")
        (tmp / "new.html").write_text("new")
    files = sorted(lake.rel(p) for p in lake.glob(dest, "**/*.html"))
    assert files == ["reports/ds=2024-01-01/gx_data_docs/index.html",
                     "reports/ds=2024-01-01/gx_data_docs/new.html"]
    assert lake.read_text(dest / "index.html") == "two"
    with pytest.raises(RuntimeError), lake.build_tree(dest) as tmp:
        (tmp / "index.html").write_text("half-built")
        raise RuntimeError("the tool failed")
    assert lake.read_text(dest / "index.html") == "two"  # a failed build leaves the old folder


def test_change_token_sees_a_rewrite_within_one_clock_tick(lake):
    """A file system with a coarse clock can give two quick rewrites the same mtime; the token
    still changes (the rewrite is a new file), even at the same size."""
    import os

    p = lake.write_bytes(lake.path("features", "online", "t.parquet"), b"11")
    stamp = os.stat(p).st_mtime_ns
    first = lake.change_token(p)
    lake.write_bytes(p, b"22")
    os.utime(p, ns=(stamp, stamp))  # what a coarse clock would have stamped
    assert os.stat(p).st_mtime_ns == stamp and lake.change_token(p) != first


def test_change_token_and_read_many(any_lake):
    lake = any_lake
    p = lake.write_bytes(lake.path("features", "online", "t.parquet"), b"1")
    first = lake.change_token(p)
    lake.write_bytes(p, b"22")
    assert lake.change_token(p) != first
    with pytest.raises(FileNotFoundError):
        lake.change_token(lake.path("features", "online", "none.parquet"))
    q = lake.write_bytes(lake.path("lineage", "events", "event-2.json"), b"{}")
    assert lake.read_many([q, p]) == [b"{}", b"22"] and lake.read_many([]) == []


def test_a_lake_from_another_lakes_root(any_lake):
    again = Lake(any_lake.root)
    assert again.is_local == any_lake.is_local and again.uri(again.root) == any_lake.uri(any_lake.root)


def test_rejected_credentials_are_a_permanent_error_with_the_fix(tmp_path):
    """A moto server that enforces authentication (its own process): unknown keys are refused."""
    import socket
    import subprocess
    import sys
    import urllib.request

    from recomart.processes import stop_group, wait_until

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "moto_server"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def up() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return True
        except OSError:
            return proc.poll() is not None  # exited: reported below
    try:
        wait_until(up, 60, "moto_server to answer")
        if proc.poll() is not None:
            pytest.skip(f"moto_server cannot start here (exit {proc.returncode})")
        settings = Settings(lake_root="s3://recomart/lake", local_state_dir=tmp_path,
                            aws_access_key_id="not-a-key", aws_secret_access_key="nope",
                            aws_region="us-east-1", aws_endpoint_url=f"http://127.0.0.1:{port}")
        with pytest.raises(LakeUnavailableError, match=r"refused access.*AWS_ACCESS_KEY_ID"):
            Lake(settings=settings).path("raw")
    finally:
        stop_group(proc, timeout=10)


def test_concurrent_appends_lose_no_commit(any_lake):
    """Writers racing for the same table version: with conditional put on S3 (and atomic
    renames locally) each commit lands once; none overwrites another."""
    from concurrent.futures import ThreadPoolExecutor

    lake = any_lake
    lake.write_table("speed", "race", pd.DataFrame({"w": [-1]}))

    def append(i: int) -> int:
        return lake.write_table("speed", "race", pd.DataFrame({"w": [i] * 10}), mode="append")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(append, range(4)))
    frame = lake.read_table("speed", "race")
    assert sorted(frame["w"].value_counts().to_dict().items()) == [(-1, 1)] + [(i, 10) for i in range(4)]
    assert lake.table_version("speed", "race") == 4
