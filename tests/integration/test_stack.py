"""The production topology, really run: `recomart stack up`, then faults, then `stack down`.

One stack for the module (start-up is the expensive part): PostgreSQL, Redis, Airflow 3 with the
CeleryExecutor and two Celery workers, the MLflow server, Tansu, two Faust workers, the catalog
API and Prometheus, each a process group on a free loopback port under one folder.

1. every started service is healthy, the two serving replicas included;
2. a produce burst while one Faust worker is SIGKILLed: the other takes its partitions and the
   lake holds every valid event exactly once;
3. `recomart_batch` triggered through Airflow's REST API runs on the Celery workers; the worker
   running `validate` is SIGKILLed mid-task, the task is retried on the other worker and the run
   succeeds; its merge task puts each landed event in the speed master exactly once; the Asset
   event triggers `recomart_training`, which registers the champion on the MLflow server, and
   both serving replicas hot-swap to the champion's published lists;
4. Prometheus scrapes the Faust workers' and Airflow's (StatsD) series;
5. `stack down` leaves no process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.airflow_helpers import assert_no_second_run
from tests.integration.test_speed_layer import tansu_or_skip

pytestmark = pytest.mark.slow

DS = "2024-06-29"
ROOT = Path(__file__).resolve().parents[2]
N_EVENTS = 40_000
SENT: dict = {}  # valid event ids of the Faust burst, checked again after the batch merge


def _pg_or_skip() -> None:
    from recomart.stack.topology import postgres_bin

    exe = postgres_bin() / "postgres"
    if not exe.exists():
        pytest.fail(f"pgserver (a pinned dependency) ships no PostgreSQL binary at {exe}")


@pytest.fixture(scope="module")
def stack():
    from recomart.config import Settings, reset_settings
    from recomart.stack.runner import Stack

    tansu_or_skip()
    _pg_or_skip()
    root = Path(tempfile.mkdtemp(prefix="recomart-stack-"))
    root.chmod(0o755)  # PostgreSQL runs as an unprivileged user when we are root
    saved = dict(os.environ)
    os.environ.update({
        "RECOMART_STACK_DIR": str(root),
        "RECOMART_SOURCE_DIR": str(ROOT / "source_data"),
        "RECOMART_STREAM_BATCH_MAX": "2000",
        "RECOMART_STREAM_PARTITIONS": "4",
        "RECOMART_RETRY_DELAY_SECONDS": "1",
        # a SIGKILLed Celery worker's task is declared dead (and retried) after 15 s
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__CORE__PARALLELISM": "4",
        # start paused: the test unpauses after its REST trigger, so the daily schedule adds no
        # second batch run (the scheduler skips a logical date that already has a run)
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    })
    reset_settings()
    s = Settings()
    st = Stack(s)
    try:
        st.up(step=print)
        env = st.env()
        # this test process is a client of the stack, as a user's shell after `stack env`
        os.environ.update({k: v for k, v in env.items() if k.startswith(("RECOMART_", "MLFLOW_"))})
        reset_settings()
        yield st
    finally:
        try:
            st.down(step=print)
            shutil.rmtree(root, ignore_errors=True)  # kept (with its logs) when down fails
        finally:
            os.environ.clear()
            os.environ.update(saved)
            reset_settings()


def _api(st):
    from recomart.stack.airflow_api import AirflowApi

    secrets = json.loads((st.layout.root / "secrets.json").read_text())
    return AirflowApi(st.env()["AIRFLOW__API__BASE_URL"], "admin", secrets["admin_password"])


def _get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def test_every_service_is_healthy(stack):
    rows = {r["service"]: r for r in stack.status()}
    expected = {"postgres", "redis", "kafka", "statsd-exporter", "catalog-api", "mlflow",
                "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                "airflow-triggerer", "airflow-worker-1", "airflow-worker-2", "faust-worker-1",
                "faust-worker-2", "serving-1", "serving-2", "prometheus"}
    assert set(rows) == expected
    for name, row in rows.items():
        if name == "prometheus" and row["state"] == "skipped":
            assert "apt-get install" in row["detail"]  # test_prometheus_... skips with this reason
        else:
            assert row["state"] == "healthy", row
    # services really on separate loopback ports, and the env points clients at them
    env = stack.env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["RECOMART_MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert json.loads(_get(env["RECOMART_CATALOG_API_URL"] + "/openapi.json"))["paths"]


def _faust_partitions(port: int) -> set[str]:
    """Partitions the worker has committed landing batches for (the lag series it exposes)."""
    text = _get(f"http://127.0.0.1:{port}/metrics").decode()
    return {line.split('partition="')[1].split('"')[0] for line in text.splitlines()
            if line.startswith("recomart_stream_consumer_lag{")}


def test_faust_worker_sigkill_during_burst(stack):
    from recomart.config import get_settings
    from recomart.lake import Lake
    from recomart.streaming.merge import read_speed_zone
    from recomart.streaming.producer import produce
    from recomart.streaming.sink import count_landed_events

    s = get_settings()
    lake = Lake(s.lake_root)
    ports = stack.read_state()["ports"]["faust_web"]
    result: dict = {}
    producer = threading.Thread(target=lambda: result.setdefault("sent", produce(
        s.kafka_bootstrap, s.clickstream_topic, rate=4000, duration=0, malformed_share=0.01,
        count=N_EVENTS, seed=13)))
    producer.start()
    deadline = time.monotonic() + 120
    while count_landed_events(lake) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    landed_at_kill = count_landed_events(lake)
    stack.kill("faust-worker-1", signal.SIGKILL)
    producer.join(timeout=300)
    sent = result["sent"]
    assert sent.failed == 0 and sent.valid + sent.malformed == N_EVENTS
    assert 0 < landed_at_kill < sent.valid, "the SIGKILL did not land mid-burst"
    deadline = time.monotonic() + 240
    while count_landed_events(lake) < sent.valid and time.monotonic() < deadline:
        time.sleep(0.5)
    ids = read_speed_zone(lake)["event_id"].to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == sent.valid_ids
    # the survivor took over every partition (it committed batches for all four)
    assert _faust_partitions(ports[1]) == {"0", "1", "2", "3"}
    rows = {r["service"]: r["state"] for r in stack.status()}
    assert rows["faust-worker-1"] == "stopped" and rows["faust-worker-2"] == "healthy"
    SENT["valid_ids"] = sent.valid_ids


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_batch_on_celery_survives_a_worker_kill_and_triggers_training(stack):
    from recomart import registry
    from recomart.config import get_settings
    from recomart.lake import Lake
    from recomart.streaming.merge import MASTER_TABLE, MASTER_ZONE

    api = _api(stack)
    batch = api.wait_for_dag("recomart_batch")
    api.wait_for_dag("recomart_training")
    workers = {p.pid: p.name for p in stack.procs() if p.name.startswith("airflow-worker-")}
    assert len(workers) == 2
    # the run the daily schedule would create next, triggered through the REST API instead
    logical_date = batch.get("next_dagrun_logical_date") or f"{DS}T00:00:00Z"
    triggered_at = datetime.now(UTC)
    run = api.trigger("recomart_batch", logical_date)
    run_id = run["dag_run_id"]
    api.set_paused("recomart_training", False)
    api.set_paused("recomart_batch", False)

    def running(task_id: str, try_number: int) -> dict | None:
        for ti in api.task_instances("recomart_batch", run_id):
            if ti["task_id"] == task_id and ti["state"] == "running" and ti["pid"] \
                    and ti["try_number"] == try_number:
                return ti
        return None

    deadline = time.monotonic() + 300
    while (ti := running("validate", 1)) is None:
        assert time.monotonic() < deadline, "validate never ran"
        assert api.dag_run("recomart_batch", run_id)["state"] in ("queued", "running")
        time.sleep(0.3)
    victim = workers.get(_group_of(ti["pid"]))
    assert victim, f"task pid {ti['pid']} is in no Celery worker's process group"
    stack.kill(victim, signal.SIGKILL)
    survivor = next(n for n in workers.values() if n != victim)

    deadline = time.monotonic() + 300
    while (retry := running("validate", 2)) is None:
        assert time.monotonic() < deadline, "validate was not retried"
        time.sleep(0.5)
    assert workers.get(_group_of(retry["pid"])) == survivor

    final = api.wait_run("recomart_batch", run_id, timeout=600)
    api.set_paused("recomart_batch", True)  # no run of the next day if midnight UTC passes now
    states = {t["task_id"]: t["state"] for t in api.task_instances("recomart_batch", run_id)}
    assert final["state"] == "success", states
    assert set(states.values()) == {"success"} and "build_features" in states
    assert_no_second_run(api.dag_runs("recomart_batch"), run_id, triggered_at)
    tries = api.tries("recomart_batch", run_id, "validate")
    assert [t["try_number"] for t in tries] == [1, 2] and tries[-1]["state"] == "success"

    # the merge task put each event the Faust workers landed in the master exactly once
    lake = Lake(get_settings().lake_root)
    master = lake.read_arrow(MASTER_ZONE, MASTER_TABLE, columns=["event_id"])["event_id"].to_pylist()
    assert len(master) == len(set(master))
    if "valid_ids" in SENT:
        assert set(master) == SENT["valid_ids"]

    # the Asset event scheduled the training DAG; it registers the model on the MLflow server
    deadline = time.monotonic() + 600
    while not (runs := api.dag_runs("recomart_training")):
        assert time.monotonic() < deadline, "recomart_training was not Asset-triggered"
        time.sleep(2)
    assert [r["run_type"] for r in runs] == ["asset_triggered"]
    trained = api.wait_run("recomart_training", runs[0]["dag_run_id"], timeout=600)
    assert trained["state"] == "success"
    assert get_settings().resolved_mlflow_uri.startswith("http://127.0.0.1:")
    champion = registry.get_champion(registry.HYBRID_MODEL)
    assert champion is not None and int(champion[0].version) >= 1
    assert champion[1]["ndcg_at_10"] > 0

    # both serving replicas hot-swap to the published champion (they poll serving/latest.json)
    latest = lake.read_json(lake.path("serving", "latest.json"))
    replicas = [r["url"] for r in stack.status() if r["service"].startswith("serving-")]
    assert len(replicas) == 2
    for url in replicas:
        deadline = time.monotonic() + 120
        while True:
            try:
                ready = json.loads(_get(f"{url}/readyz"))
            except urllib.error.HTTPError as exc:  # 503 until the first view is loaded
                ready = json.loads(exc.read())
            if ready.get("ready") and str(ready.get("version")) == str(latest["version"]):
                break
            assert time.monotonic() < deadline, f"{url} never served v{latest['version']}: {ready}"
            time.sleep(1)
        from recomart.publishing import read_output

        user = int(read_output(lake, "user_recs", latest=latest)["user_id"].iloc[0])
        recs = json.loads(_get(f"{url}/v1/users/{user}/recommendations?n=5"))
        assert recs["known_user"] and str(recs["version"]) == str(latest["version"]) and recs["items"]


def _prometheus_series(base: str, metric: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": metric})
    return json.loads(_get(f"{base}/api/v1/query?{q}"))["data"]["result"]


def test_prometheus_scrapes_faust_and_airflow(stack):
    rows = {r["service"]: r for r in stack.status()}
    if rows["prometheus"]["state"] == "skipped":
        pytest.skip(rows["prometheus"]["detail"])
    base = rows["prometheus"]["url"]
    wanted = ["recomart_stream_events_landed_total", "recomart_stream_dead_letter_sent_total",
              "recomart_stream_batch_seconds_count", "recomart_stream_consumer_lag",
              "recomart_stream_last_commit_timestamp_seconds",
              "airflow_scheduler_heartbeat_total", "airflow_dagrun_duration_success_recomart_batch_count"]
    deadline = time.monotonic() + 60
    missing = wanted
    while missing and time.monotonic() < deadline:
        missing = [m for m in wanted if not _prometheus_series(base, m)]
        time.sleep(2)
    assert not missing, f"series Prometheus does not have: {missing}"
    landed = sum(float(r["value"][1])
                 for r in _prometheus_series(base, "recomart_stream_events_landed_total"))
    assert landed > 0


def test_stack_down_leaves_no_process(stack):
    from recomart.processes import group_members

    procs = stack.procs()
    assert procs
    stack.down(step=print)
    assert all(not group_members(p.pid) for p in procs)
    rows = stack.status()
    assert {r["state"] for r in rows} <= {"stopped", "skipped"}
