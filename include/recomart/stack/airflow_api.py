"""A small client of Airflow 3's public REST API (v2) for the stack: trigger and watch DAG runs.

Auth is the simple auth manager's token endpoint (``POST /auth/token`` with username and
password returns ``access_token``, a JWT sent as ``Authorization: Bearer``).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from recomart.errors import TransientError

TERMINAL = {"success", "failed"}


class AirflowApiError(TransientError):
    """The api-server refused a request or a run did not finish in time."""


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base = base_url.rstrip("/")
        self._auth = {"username": username, "password": password}
        self.http = httpx.Client(timeout=timeout)
        self._token: str | None = None

    def token(self) -> str:
        r = self.http.post(f"{self.base}/auth/token", json=self._auth)
        if r.status_code not in (200, 201):
            raise AirflowApiError(f"token endpoint answered {r.status_code}: {r.text[:300]}")
        self._token = r.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, **kw: Any) -> Any:
        for attempt in range(2):
            if self._token is None:
                self.token()
            r = self.http.request(method, f"{self.base}/api/v2{path}",
                                  headers={"Authorization": f"Bearer {self._token}"}, **kw)
            if r.status_code == 401 and attempt == 0:  # expired token: get a new one once
                self._token = None
                continue
            if r.status_code >= 400:
                raise AirflowApiError(f"{method} {path} -> {r.status_code}: {r.text[:500]}")
            return r.json() if r.content else None
        raise AirflowApiError(f"{method} {path}: unauthorised")  # pragma: no cover

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> dict[str, Any]:
        """Until the dag-processor has parsed ``dag_id`` into the metadata DB."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.request("GET", f"/dags/{dag_id}")
            except AirflowApiError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        return self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, logical_date: str, conf: dict | None = None) -> dict[str, Any]:
        body = {"logical_date": logical_date, "conf": conf or {}}
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                            params={"limit": 100})["task_instances"]

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
                            )["task_instances"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600.0, poll_s: float = 2.0
                 ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(poll_s)
