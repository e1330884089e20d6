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
    if not Path("/proc").is_dir():  # no procfs: a zombie and a live member look alike; assume live
        return True
    return bool(group_members(pgid))


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


def wait_until(cond: Callable[[], bool], timeout: float, what: str, *,
               proc: subprocess.Popen | None = None, log: Path | None = None,
               error: type[Exception] = TimeoutError, poll: float = 0.3) -> None:
    """Poll ``cond`` until it holds; raise ``error`` naming ``what`` after ``timeout``, or at once
    (with the tail of ``log``) when the process we wait on has exited. ``OSError`` from ``cond``
    (a server not listening yet) counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise error(f"{what}: process exited ({proc.returncode})\n{tail}")
        time.sleep(poll)
    raise error(f"timed out after {timeout:.0f}s waiting for {what}")
