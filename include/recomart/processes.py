"""Child processes in their own process group (broker, Faust worker, Airflow, MLflow UI).

A service we start must stop with everything it spawned, whether the user presses Ctrl-C, a
service manager sends SIGTERM, or a test kills it: so each runs in a new session and is signalled
as a group, escalating to SIGKILL when it does not stop in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def stop_group(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Send ``sig`` to the process group of ``proc`` and wait; SIGKILL the group after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def interrupt_on_signals() -> None:
    """Turn SIGTERM (and SIGINT, even where a shell started us with it ignored) into
    KeyboardInterrupt, so ``with``/``finally`` clean-up runs on every way a user stops us."""

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)


def run_foreground(cmd: Sequence[str], env: Mapping[str, str] | None = None,
                   on_stop: Callable[[], None] | None = None, timeout: float = 30.0) -> int:
    """Run a long-lived service until it exits or we get Ctrl-C / SIGTERM, then stop its group."""
    proc = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None,
                            start_new_session=True)
    interrupt_on_signals()
    try:
        return proc.wait()
    except KeyboardInterrupt:
        if on_stop:
            on_stop()
        stop_group(proc, signal.SIGINT, timeout)
        return proc.returncode or 0


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in process group ``pgid`` (Linux ``/proc``)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def stop_pgid(pgid: int, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Like ``stop_group`` for a group we know only by id (a detached service started by another
    command): ``sig`` to the group, SIGKILL to what is left after ``timeout``, until none is left."""
    def _wait(limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and group_members(pgid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pgid, os.WNOHANG)  # our own child (same Python process): reap it
            time.sleep(0.1)

    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
        _wait(timeout)
        if group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)
            _wait(10.0)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
