"""How to call the ``airflow`` command for this project: env vars and subprocess helpers.

The library never imports Airflow; the CLI runs DAGs through Airflow itself by calling
``airflow dags test`` in a subprocess with a project-local AIRFLOW_HOME (SQLite, LocalExecutor).
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recomart.config import get_settings, project_root
from recomart.errors import RecomartError

#: sqlite3's busy timeout (s) for Airflow's SQLite metadata database, the embedded default. SQLite
#: takes one writer at a time and sqlite3 waits 5 s by default: a pause or trigger from the UI or
#: the REST API while the scheduler held the write lock failed with a 500 "database is locked".
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 30}
_CONNECT_ARGS = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"
SQLITE_CONNECT_ARGS_ENV = {_CONNECT_ARGS: f"{__name__}.SQLITE_CONNECT_ARGS"}


def sqlite_connect_args(env: Mapping[str, str]) -> dict[str, str]:
    """``SQLITE_CONNECT_ARGS_ENV`` when the Airflow of ``env`` uses SQLite (its connection, from
    the environment or ``airflow.cfg``, is unset or ``sqlite…``), else nothing: Postgres and
    MySQL drivers refuse a ``timeout`` argument, and connect args the user set stay theirs."""
    if _CONNECT_ARGS in env:
        return {}
    conn = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if conn is None and env.get("AIRFLOW_HOME"):
        cfg = configparser.ConfigParser(interpolation=None)
        with contextlib.suppress(OSError, configparser.Error):  # unreadable: Airflow's default
            cfg.read(Path(env["AIRFLOW_HOME"]) / "airflow.cfg", encoding="utf-8")
        if cfg.has_option("database", "sql_alchemy_connect_args"):
            return {}
        conn = cfg.get("database", "sql_alchemy_conn", fallback=None)
    return dict(SQLITE_CONNECT_ARGS_ENV) if not conn or conn.startswith("sqlite") else {}


class AirflowRunError(RecomartError):
    """An ``airflow`` command failed; the message carries the tail of its output."""


def venv_bin() -> Path:
    return Path(sys.executable).parent


def airflow_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for an ``airflow`` subprocess: project-local home, our DAGs, small parallelism."""
    root = project_root()
    settings = get_settings()
    if not settings.lake_is_local:
        # Fail here, with what to fix, before Airflow starts: the OpenLineage file transport's
        # fsspec makedirs would otherwise create a missing bucket on the first task's event.
        from recomart.lake import Lake

        Lake(settings.lake_root).check()
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(root / ".airflow"))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(root / "dags")
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(root / "plugins")
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "4")
    env.setdefault("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "120")
    # A local install should run what the user triggers, and the Asset-scheduled training DAG
    # only fires when unpaused: start DAGs unpaused (Airflow's default pauses them).
    env.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    env["RECOMART_LAKE_ROOT"] = str(settings.lake_root)
    env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    env.update(lineage_env(settings.lake_root, env))
    if extra:
        env.update(extra)
    env.update(sqlite_connect_args(env))
    return env


EVENT_OBJECT_PREFIX = "event"
"""Name prefix of the one-object-per-event lineage files on an object-store lake."""


def lineage_env(lake_root: Path | str, current: Mapping[str, str]) -> dict[str, str]:
    """OpenLineage: a file transport inside the lake unless the user configured one.

    A local lake gets one appended ``events.jsonl``; an object store cannot append, so an
    ``s3://`` lake gets one object per event (``lineage/events/event-<time>.json``, written by the
    transport through fsspec with the same AWS_* settings). ``recomart.lineage`` reads both."""
    if current.get("OPENLINEAGE_URL") or current.get("AIRFLOW__OPENLINEAGE__TRANSPORT") \
            or current.get("OPENLINEAGE_CONFIG"):
        return {}
    import json

    from recomart.config import is_lake_uri

    transport: dict[str, object]
    if is_lake_uri(lake_root):
        transport = {"type": "file", "append": False,
                     "log_file_path": f"{str(lake_root).rstrip('/')}/lineage/events/{EVENT_OBJECT_PREFIX}"}
        if current.get("AWS_ENDPOINT_URL"):
            transport["storage_options"] = {"endpoint_url": current["AWS_ENDPOINT_URL"]}
    else:
        out_dir = Path(lake_root) / "lineage" / "events"
        out_dir.mkdir(parents=True, exist_ok=True)
        transport = {"type": "file", "log_file_path": str(out_dir / "events.jsonl"), "append": True}
    # deltalake's tokio runtime panics in a forked child: extract lineage in a thread instead.
    return {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "recomart",
            "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True"}


def airflow(*args: str, env: Mapping[str, str] | None = None, check: bool = True,
            capture: bool = False) -> subprocess.CompletedProcess:
    cmd = [str(venv_bin() / "airflow"), *args]
    proc = subprocess.run(cmd, env=dict(env or airflow_env()), text=True,
                          capture_output=capture)
    if check and proc.returncode != 0:
        tail = "\n".join(((proc.stdout or "") + (proc.stderr or "")).splitlines()[-30:])
        raise AirflowRunError(f"`airflow {' '.join(args)}` exited {proc.returncode}\n{tail}")
    return proc


def ensure_db(env: Mapping[str, str] | None = None) -> None:
    """Create or upgrade the Airflow metadata DB (SQLite by default); cheap when current."""
    airflow("db", "migrate", env=env, capture=True)


def run_dag(dag_id: str, logical_date: str, conf: Mapping | None = None,
            env: Mapping[str, str] | None = None) -> list[dict]:
    """Run a whole DAG run through Airflow (``airflow dags test``); raises unless every task of
    the run exists and succeeded. Returns the task instances' states."""
    import json

    env = env or airflow_env()
    ensure_db(env)
    args = ["dags", "test", dag_id, logical_date]
    if conf:
        args += ["--conf", json.dumps(dict(conf))]
    proc = airflow(*args, env=env, check=False, capture=True)
    out = (proc.stdout or "") + (proc.stderr or "")
    log = Path(env["AIRFLOW_HOME"]) / "logs" / f"{dag_id}_{logical_date}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(out, encoding="utf-8")
    finished = re.findall(r"DagRun Finished: dag_id=[^,]+,.*? run_id=([^,]+),.*? state=(\w+)", out)
    if proc.returncode != 0 or not finished or finished[-1][1] != "success":
        errors = [line for line in out.splitlines() if "ERROR" in line or "Error" in line]
        tail = "\n".join(errors[-25:])[-4000:]
        state = finished[-1][1] if finished else "unknown"
        raise AirflowRunError(f"DAG {dag_id} {logical_date} ended {state}; full log: {log}\n{tail}")
    return check_run_tasks(dag_id, finished[-1][0], logical_date, env, log)


def check_run_tasks(dag_id: str, run_id: str, logical_date: str, env: Mapping[str, str],
                    log: Path | None = None) -> list[dict]:
    """Every task instance of the run, all ``success``; a run with none is an error.

    Airflow marks a run successful when it has no task instances at all (a logical date before
    the DAG's ``start_date``), so "the run succeeded" alone proves nothing ran.
    """
    import json

    proc = airflow("tasks", "states-for-dag-run", dag_id, run_id, "-o", "json", env=env,
                   capture=True)
    lines = [ln for ln in (proc.stdout or "").splitlines() if ln.startswith("[")]
    states = json.loads(lines[-1]) if lines else []
    where = f"; full log: {log}" if log else ""
    if not states:
        raise AirflowRunError(
            f"DAG {dag_id} run {run_id} ({logical_date}) has no task instances: Airflow scheduled "
            f"nothing (is {logical_date} before the DAG's start_date?), so no work was done{where}")
    bad = {s["task_id"]: s["state"] for s in states if s.get("state") != "success"}
    if bad:
        raise AirflowRunError(f"DAG {dag_id} run {run_id} ({logical_date}): tasks not successful: "
                              f"{bad}{where}")
    return states
