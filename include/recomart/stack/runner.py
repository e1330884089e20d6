"""Start, check and stop the stack: real processes, one folder, process groups.

``up`` allocates free loopback ports, prepares the stores (PostgreSQL cluster and databases,
Airflow metadata, Kafka topics), starts each phase of ``topology.services()`` and waits until
every service of a phase is healthy before the next. ``state.json`` records each process (pid,
its start time so a recycled pid is never signalled, URL, log). ``down`` stops the groups in
reverse order (SIGTERM, then SIGKILL) and checks that none is left.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from recomart.config import Settings
from recomart.errors import PermanentError, TransientError
from recomart.processes import group_members, stop_pgid
from recomart.stack.topology import (
    AIRFLOW_USER,
    PG_USER,
    Layout,
    Ports,
    Service,
    bin_path,
    scrape_targets,
    services,
    stack_env,
)

log = logging.getLogger(__name__)
Step = Callable[[str], None]


class StackError(TransientError):
    """A service did not start or become healthy; the message names it and its log."""


class StackRunning(PermanentError):
    """``stack up`` while a stack is already running in that folder."""


@dataclass
class Proc:
    name: str
    pid: int
    start_time: int
    url: str
    log: str
    argv: list[str]


def _start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19]) if fields[0] != "Z" else None


def alive(p: Proc) -> bool:
    return _start_time(p.pid) == p.start_time


def stop_proc(p: Proc, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Stop the process group led by ``p`` (it was started in its own session). A recycled pid
    (start time differs) is never signalled."""
    if alive(p) or group_members(p.pid):
        stop_pgid(p.pid, sig, timeout)


# ---- health ---------------------------------------------------------------------------------

def _http_ok(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300, f"HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, type(exc).__name__


def _tcp_ok(target: str) -> tuple[bool, str]:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True, "accepting"
    except OSError as exc:
        return False, type(exc).__name__


def check(service: Service, env: dict[str, str]) -> tuple[bool, str]:
    """(healthy, detail) for one service, by its ``Health``."""
    h = service.health
    if h.kind == "http":
        return _http_ok(h.target)
    if h.kind == "tcp":
        return _tcp_ok(h.target)
    if h.kind == "kafka":
        from recomart.streaming.broker import BrokerError, wait_ready

        try:
            wait_ready(h.target, timeout=2.0)
            return True, "metadata answers"
        except BrokerError as exc:
            return False, str(exc)[:80]
    if h.kind == "airflow":
        try:
            with urllib.request.urlopen(env["AIRFLOW__API__BASE_URL"] + "/api/v2/monitor/health",
                                        timeout=2.0) as r:
                body = json.loads(r.read())
        except (OSError, ValueError) as exc:
            return False, f"api-server: {type(exc).__name__}"
        status = (body.get(h.target) or {}).get("status")
        return status == "healthy", f"{h.target}: {status}"
    if h.kind == "celery":
        return celery_ping(env["AIRFLOW__CELERY__BROKER_URL"], h.target)
    return False, f"unknown health check {h.kind}"  # pragma: no cover


def celery_ping(broker_url: str, worker: str, timeout: float = 2.0) -> tuple[bool, str]:
    """Ping one Celery worker (``worker@host``) over the broker."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(timeout=timeout)
    except Exception as exc:  # the broker is down: report, do not crash `status`
        return False, f"broker: {type(exc).__name__}"
    finally:
        app.close()
    names = {n for r in replies for n in r}
    hit = any(n.split("@", 1)[0] == worker for n in names)
    return hit, "pong" if hit else "no reply"


# ---- preparation ------------------------------------------------------------------------------

def _run(cmd: list[str], env: dict[str, str], log_path: Path, what: str, user: str | None = None,
         timeout: float = 600) -> None:
    with open(log_path, "ab") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, user=user, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise StackError(f"{what} failed (exit {proc.returncode}); log {log_path}:\n{tail}")


def _init_postgres(layout: Layout, svc: Service, env: dict[str, str]) -> None:
    import shutil

    from recomart.stack.topology import postgres_bin, world_traversable

    if svc.user and not world_traversable(layout.root):
        raise StackError(f"PostgreSQL runs as {svc.user!r} (we are root) and cannot reach "
                         f"{layout.root}: set RECOMART_STACK_DIR (or --dir) to a folder every user "
                         "can traverse, e.g. under /tmp or /srv")
    pgbin = Path(svc.argv[0]).parent
    if not pgbin.exists():  # the wheel's copy sits where `nobody` cannot reach: copy it once,
        src = postgres_bin().parent  # with pgserver.libs where the binaries' RPATH looks
        shutil.copytree(src, pgbin.parent, symlinks=True)
        libs = src.parent.parent / "pgserver.libs"
        if libs.is_dir():
            shutil.copytree(libs, pgbin.parents[2] / "pgserver.libs", symlinks=True)
    if (layout.pgdata / "PG_VERSION").exists():
        return
    layout.pgdata.mkdir(parents=True, exist_ok=True)
    if svc.user:
        shutil.chown(layout.pgdata, user=svc.user)
        os.chmod(layout.pgdata, 0o700)
    initdb = str(Path(svc.argv[0]).parent / "initdb")
    _run([initdb, "-D", str(layout.pgdata), "-U", PG_USER, "--auth=trust", "-E", "UTF8"],
         {**env, "HOME": str(layout.pgdata)}, layout.logs / "postgres-initdb.log", "initdb",
         user=svc.user)


def _create_databases(port: int) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for db in ("airflow", "mlflow"):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')
    finally:
        conn.close()


def _write_prometheus_config(layout: Layout, svcs: list[Service], ports: Ports) -> None:
    import yaml

    jobs = [{"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in scrape_targets(svcs, ports).items()]
    cfg = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"}, "scrape_configs": jobs}
    layout.prometheus.mkdir(parents=True, exist_ok=True)
    (layout.prometheus / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))


# ---- the stack --------------------------------------------------------------------------------

class Stack:
    """The stack rooted at ``settings.stack_dir`` (or ``root``)."""

    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.settings = settings
        self.layout = Layout(Path(root or settings.stack_dir).resolve())

    # state
    def read_state(self) -> dict[str, Any] | None:
        f = self.layout.state_file
        return json.loads(f.read_text()) if f.exists() else None

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.chmod(0o600)  # it holds the Fernet key and the JWT secret (as the env)
        tmp.replace(self.layout.state_file)

    def procs(self, state: dict[str, Any] | None = None) -> list[Proc]:
        state = state if state is not None else (self.read_state() or {})
        return [Proc(**p) for p in state.get("procs", [])]

    def env(self) -> dict[str, str]:
        state = self.read_state()
        if not state:
            raise StackError(f"no stack in {self.layout.root} (run `recomart stack up`)")
        return dict(state["env"])

    def _services(self, state: dict[str, Any]) -> list[Service]:
        ports = Ports(**state["ports"])
        svcs = services(self.layout, ports, self.settings, check_optional=False)
        skipped = state.get("skipped", {})
        return [replace(s, skip=skipped.get(s.name, "")) for s in svcs]

    # up
    def up(self, step: Step = log.info) -> dict[str, Any]:
        old = self.read_state()
        if old and any(alive(p) for p in self.procs(old)):
            raise StackRunning(f"a stack is already running in {self.layout.root}: "
                               "`recomart stack status` shows it, `recomart stack down` stops it")
        s = self.settings
        for d in (self.layout.logs, self.layout.redis, self.layout.lake, self.layout.faust,
                  self.layout.airflow_home):
            d.mkdir(parents=True, exist_ok=True)
        ports = Ports.allocate(s)
        secrets_file = self.layout.root / "secrets.json"
        if secrets_file.exists():
            sec = json.loads(secrets_file.read_text())
        else:
            from cryptography.fernet import Fernet

            sec = {"fernet_key": Fernet.generate_key().decode(), "jwt_secret": secrets.token_urlsafe(32),
                   "admin_password": secrets.token_urlsafe(12)}
            secrets_file.write_text(json.dumps(sec))
            secrets_file.chmod(0o600)
        env = {**os.environ, **stack_env(self.layout, ports, s, sec)}
        env["PATH"] = f"{Path(bin_path('airflow')).parent}{os.pathsep}{env.get('PATH', '')}"
        Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).write_text(
            json.dumps({AIRFLOW_USER: sec["admin_password"]}))
        svcs = services(self.layout, ports, s)
        state: dict[str, Any] = {"root": str(self.layout.root), "ports": asdict(ports), "env": {
            k: v for k, v in env.items() if k.startswith(("RECOMART_", "AIRFLOW", "MLFLOW_"))},
            "skipped": {sv.name: sv.skip for sv in svcs if sv.skip}, "procs": [],
            "airflow_user": AIRFLOW_USER, "started_at": time.time()}
        self._write_state(state)
        for name, why in state["skipped"].items():
            step(f"{name}: not started: {why}")
        try:
            for phase in sorted({sv.phase for sv in svcs}):
                group = [sv for sv in svcs if sv.phase == phase and not sv.skip]
                self._before_phase(phase, svcs, ports, env, step)
                for sv in group:
                    state["procs"].append(asdict(self._spawn(sv, env)))
                    self._write_state(state)
                if phase == 1:  # Airflow's schema while MLflow and the Faust workers boot
                    step("migrating the Airflow metadata DB on PostgreSQL (airflow db migrate)")
                    _run([bin_path("airflow"), "db", "migrate"], env,
                         self.layout.logs / "airflow-db-migrate.log", "airflow db migrate")
                for sv in group:
                    self._wait_healthy(sv, env, state, step)
                if phase == 0:
                    self._after_infra(ports, env, step)
        except BaseException:
            step("start-up failed: stopping what was started")
            self.down(step=lambda m: None)
            raise
        step(f"stack up in {time.time() - state['started_at']:.0f}s; logs in {self.layout.logs}")
        return state

    def _before_phase(self, phase: int, svcs: list[Service], ports: Ports, env: dict[str, str],
                      step: Step) -> None:
        if phase == 0:
            pg = next(sv for sv in svcs if sv.name == "postgres")
            if pg.skip:
                raise StackError(f"PostgreSQL cannot start: {pg.skip}")
            step("initialising PostgreSQL cluster")
            _init_postgres(self.layout, pg, env)
        if phase == 3:
            _write_prometheus_config(self.layout, svcs, ports)

    def _after_infra(self, ports: Ports, env: dict[str, str], step: Step) -> None:
        from recomart.streaming.broker import create_topics, default_topics

        _create_databases(ports.postgres)
        create_topics(env["RECOMART_KAFKA_BOOTSTRAP"], default_topics(self.settings.stream_partitions))

    def _spawn(self, sv: Service, env: dict[str, str]) -> Proc:
        from recomart.streaming.broker import tansu_binary

        argv = [a.replace("{tansu}", tansu_binary() if a == "{tansu}" else a)
                .replace("{source_dir}", env["RECOMART_SOURCE_DIR"]) for a in sv.argv]
        argv[0] = bin_path(argv[0]) if "/" not in argv[0] else argv[0]
        log_path = self.layout.logs / f"{sv.name}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(argv, env={**env, **sv.env}, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=str(self.layout.root), user=sv.user)
        started = _start_time(proc.pid) or 0
        return Proc(sv.name, proc.pid, started, sv.url, str(log_path), argv)

    def _wait_healthy(self, sv: Service, env: dict[str, str], state: dict[str, Any], step: Step) -> None:
        proc = next(Proc(**p) for p in state["procs"] if p["name"] == sv.name)
        deadline = time.monotonic() + self.settings.stack_start_timeout_s
        detail = ""
        while time.monotonic() < deadline:
            if not alive(proc):
                break
            ok, detail = check(sv, env)
            if ok:
                step(f"{sv.name}: healthy ({sv.url})")
                return
            time.sleep(0.5)
        tail = "\n".join(Path(proc.log).read_text(errors="replace").splitlines()[-25:])
        why = "exited" if not alive(proc) else f"not healthy after {self.settings.stack_start_timeout_s:.0f}s"
        raise StackError(f"{sv.name} {why} ({detail}); log {proc.log}:\n{tail}")

    # status
    def status(self) -> list[dict[str, Any]]:
        """One row per service: name, url, state (healthy / unhealthy / stopped / skipped), detail."""
        state = self.read_state()
        if not state:
            return []
        env = dict(state["env"])
        procs = {p.name: p for p in self.procs(state)}
        rows = []
        for sv in self._services(state):
            if sv.skip:
                rows.append({"service": sv.name, "url": "", "state": "skipped", "detail": sv.skip})
                continue
            p = procs.get(sv.name)
            if p is None or not alive(p):
                why = ("not running" if p else
                       "stopped by `stack down`" if state.get("stopped_at") else "never started")
                rows.append({"service": sv.name, "url": sv.url, "state": "stopped", "detail": why})
                continue
            ok, detail = check(sv, env)
            if not ok:  # one slow answer on a busy machine is not an outage: ask once more
                time.sleep(1.0)
                ok, detail = check(sv, env)
            rows.append({"service": sv.name, "url": sv.url, "state": "healthy" if ok else "unhealthy",
                         "detail": f"pid {p.pid}; {detail}"})
        return rows

    # down
    def down(self, step: Step = log.info, timeout: float = 30.0) -> list[str]:
        """Stop every process group, newest first; returns the names stopped. Raises when a
        process survives."""
        state = self.read_state()
        if not state:
            return []
        stopped = []
        grace = {sv.name: sv.stop_timeout_s for sv in self._services(state)}
        for p in reversed(self.procs(state)):
            if alive(p) or group_members(p.pid):
                # Celery workers finish running tasks on SIGTERM (warm shutdown): be patient but bounded
                t0 = time.monotonic()
                stop_proc(p, signal.SIGTERM, min(timeout, grace.get(p.name, timeout)))
                stopped.append(p.name)
                step(f"{p.name}: stopped ({time.monotonic() - t0:.1f}s)")
        left = [p.name for p in self.procs(state) if alive(p) or group_members(p.pid)]
        if left:
            raise StackError(f"still running after stop: {left}")
        state["procs"] = []
        state["stopped_at"] = time.time()
        self._write_state(state)
        return stopped

    def kill(self, name: str, sig: int = signal.SIGKILL) -> Proc:
        """Signal one service's whole process group (used to test fail-over)."""
        p = next((p for p in self.procs() if p.name == name), None)
        if p is None or not alive(p):
            raise StackError(f"{name} is not running")
        stop_proc(p, sig, timeout=30)
        return p

    def airflow_token(self) -> str:
        """A JWT for Airflow's public API (simple auth manager's token endpoint)."""
        state = self.read_state() or {}
        sec = json.loads((self.layout.root / "secrets.json").read_text())
        body = json.dumps({"username": state.get("airflow_user", AIRFLOW_USER),
                           "password": sec["admin_password"]}).encode()
        req = urllib.request.Request(self.env()["AIRFLOW__API__BASE_URL"] + "/auth/token", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["access_token"]
