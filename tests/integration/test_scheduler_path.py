"""The real scheduler path: what a user's `make ui` runs, not `dag.test()`.

Airflow's api-server, dag-processor and scheduler (LocalExecutor: every task in its own forked
process) run on a temporary AIRFLOW_HOME (SQLite) against a temporary lake and a tiny shop made
by `recomart generate`. The batch DAG is triggered through the public REST API (v2) with a JWT
from the simple auth manager's token endpoint (``POST /auth/token``); every one of its tasks
must succeed, and so must the Asset-triggered `recomart_training` run its features start.

Because `recomart_batch` is `@daily` with `catchup=False`, unpausing it makes the scheduler create
the latest scheduled run (today's). The test triggers its run for exactly that logical date (read
from the API) before unpausing, so the scheduler finds the run there and creates none of its own;
the shop covers that date and the day before it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.airflow_helpers import assert_no_second_run

from recomart.airflow_env import SQLITE_CONNECT_ARGS_ENV
from recomart.processes import stop_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DS = "2024-06-30"
TERMINAL = {"success", "failed"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiError(Exception):
    """An unexpected HTTP status from the API (retried while waiting for something to appear)."""


class Api:
    """A tiny client for Airflow's public API v2 with a bearer token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token: str | None = None

    def call(self, method: str, path: str, body: Any = None, *, expect: tuple[int, ...] = (200,)) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        if status not in expect:
            raise ApiError(f"{method} {path} -> {status}: {text[:500]}")
        return json.loads(text) if text else None

    def login(self, username: str, password: str) -> None:
        self.token = self.call("POST", "/auth/token", {"username": username, "password": password},
                               expect=(200, 201))["access_token"]


def _wait(what: str, probe, timeout: float, procs: dict[str, subprocess.Popen], logs: Path,
          interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited ({proc.returncode}) while waiting for "
                                     f"{what}:\n{_tail(logs / f'{name}.log')}")
        try:
            got = probe()
        except (OSError, ApiError):
            got = None
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _errors(log: Path) -> list[str]:
    """``exc_type: exc_value`` of each 'Task failed' record in a task's JSON log."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for err in record.get("error_detail") or []:
            out.append(f"{err.get('exc_type')}: {err.get('exc_value')}")
    return out


def _task_failures(home: Path, api: Api, dag_id: str, run_id: str) -> dict[str, Any]:
    """Every task's state, and for the failed ones the errors of their tries (says why)."""
    tis = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    out: dict[str, Any] = {}
    for ti in tis:
        out[ti["task_id"]] = ti["state"]
        if ti["state"] != "success":
            pattern = f"dag_id={dag_id}/run_id={run_id}/task_id={ti['task_id']}/*.log"
            logs = sorted((home / "logs").glob(pattern))
            out[ti["task_id"]] = (ti["state"], sorted({e for f in logs for e in _errors(f)}))
    return out


@pytest.fixture
def airflow_services(tmp_path):
    """api-server, dag-processor and scheduler on a fresh AIRFLOW_HOME; stopped by process group."""

    home, lake, src = tmp_path / "airflow", tmp_path / "lake", tmp_path / "shop"
    home.mkdir()
    port, password = _free_port(), secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({"tester": password}))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "RECOMART_", "OPENLINEAGE"))}
    env.update({
        "AIRFLOW_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "tester:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        **SQLITE_CONNECT_ARGS_ENV,  # as the project's own Airflow processes run on SQLite
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({
            "type": "file", "log_file_path": str(lake / "lineage" / "events" / "events.jsonl"),
            "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "recomart",
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        "RECOMART_LAKE_ROOT": str(lake), "RECOMART_SOURCE_DIR": str(src),
        "RECOMART_RETRY_DELAY_SECONDS": "1",
        "MPLBACKEND": "Agg", "GIT_PYTHON_REFRESH": "quiet",
    })
    (lake / "lineage" / "events").mkdir(parents=True)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True, env=env,
                   cwd=tmp_path)
    logs = tmp_path / "service-logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen] = {}
    handles = []
    try:
        for name, args in (("api-server", ["api-server", "--port", str(port), "--host", "127.0.0.1"]),
                           ("dag-processor", ["dag-processor"]), ("scheduler", ["scheduler"])):
            fh = open(logs / f"{name}.log", "w")  # noqa: SIM115 (closed below)
            handles.append(fh)
            procs[name] = subprocess.Popen([str(BIN / "airflow"), *args], env=env, cwd=tmp_path,
                                           stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        api = Api(f"http://127.0.0.1:{port}")
        _wait("the api-server", lambda: api.call("GET", "/api/v2/monitor/health"), 180, procs, logs)
        api.login("tester", password)
        yield api, home, lake, src, procs, logs
    finally:
        for proc in reversed(list(procs.values())):
            stop_group(proc, signal.SIGTERM, timeout=20)
        for fh in handles:
            fh.close()


def test_batch_then_asset_triggered_training_under_the_real_scheduler(airflow_services, tmp_path):
    api, home, lake, src, procs, logs = airflow_services
    _wait("recomart_training parsed by the dag-processor",
          lambda: api.call("GET", "/api/v2/dags/recomart_training"), 180, procs, logs)
    # Trigger the batch for the logical date the scheduler would run next: it then finds that run
    # already there and creates no scheduled run of its own (catchup=False queues the latest one).
    logical = _wait("recomart_batch parsed, with its next logical date",
                    lambda: api.call("GET", "/api/v2/dags/recomart_batch")["next_dagrun_logical_date"],
                    180, procs, logs)
    day = date.fromisoformat(logical[:10])
    subprocess.run([str(BIN / "recomart"), "generate", "--users", "150", "--products", "40",
                    "--days", "15", "--seed", "3", "--end-date", (day + timedelta(days=1)).isoformat(),
                    "--out", str(src)], check=True, capture_output=True, cwd=tmp_path)
    triggered_at = datetime.now(UTC)
    run = api.call("POST", "/api/v2/dags/recomart_batch/dagRuns",
                   {"logical_date": logical, "conf": {}}, expect=(200,))
    run_id = run["dag_run_id"]
    for dag_id in ("recomart_training", "recomart_batch"):
        assert api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})["is_paused"] is False

    def batch_done():
        state = api.call("GET", f"/api/v2/dags/recomart_batch/dagRuns/{run_id}")["state"]
        return state if state in TERMINAL else None

    state = _wait("the batch run", batch_done, 300, procs, logs, interval=1)
    api.call("PATCH", "/api/v2/dags/recomart_batch", {"is_paused": True})  # no run at the next midnight
    assert state == "success", json.dumps(_task_failures(home, api, "recomart_batch", run_id), indent=1)
    runs = api.call("GET", "/api/v2/dags/recomart_batch/dagRuns")["dag_runs"]
    assert_no_second_run(runs, run_id, triggered_at)
    tasks = {t["task_id"] for t in api.call("GET", "/api/v2/dags/recomart_batch/tasks")["tasks"]}
    tis = api.call("GET", f"/api/v2/dags/recomart_batch/dagRuns/{run_id}/taskInstances")["task_instances"]
    assert {ti["task_id"]: ti["state"] for ti in tis} == dict.fromkeys(tasks, "success")
    assert len({ti["pid"] for ti in tis}) == len(tis)  # each task ran in a process of its own
    from recomart.lake import Lake

    assert Lake(lake).list_tables("curated") == ["clickstream", "orders", "products", "ratings", "users"]

    def training_done():
        runs = api.call("GET", "/api/v2/dags/recomart_training/dagRuns")["dag_runs"]
        triggered = [r for r in runs if r["run_type"] == "asset_triggered"]
        assert len(triggered) <= 1, f"more than one training run: {triggered}"
        return triggered[0] if triggered and triggered[0]["state"] in TERMINAL else None

    training = _wait("the Asset-triggered training run", training_done, 400, procs, logs, interval=2)
    assert training["state"] == "success", json.dumps(
        _task_failures(home, api, "recomart_training", training["dag_run_id"]), indent=1)
    assert not (home.parent / "mlflow.db").exists()  # no MLflow state in the working directory
