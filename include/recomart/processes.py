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


def _group_members(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():  # no procfs: a zombie and a live member look alike; assume live
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop_group(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Send ``sig`` to the process group of ``proc`` and wait; SIGKILL the group after ``timeout``.

    The group is stopped, not only its leader: children and grandchildren that outlive the leader
    (one that ignores ``sig``, or a leader that already exited on its own) are signalled too and
    killed when they are still there after ``timeout``.
    """
    if proc is None:
        return
    deadline = time.monotonic() + timeout
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    elif _group_members(proc.pid):  # the leader is gone, the rest of its group is not
        _signal_group(proc.pid, sig)
    if not _wait_empty(proc.pid, deadline):
        _signal_group(proc.pid, signal.SIGKILL)
        _wait_empty(proc.pid, time.monotonic() + 10)  # SIGKILL cannot be ignored: let it land


def _wait_empty(pgid: int, deadline: float) -> bool:
    while _group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


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
