"""Services we start stop with their whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from recomart.processes import stop_group

# A parent that spawns a long-lived child of its own: stopping the parent must stop the child.
SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""

# A process that ignores SIGTERM: only the escalation to SIGKILL stops it.
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); it has exited all the same
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:  # reaped between the two checks
        return False


@pytest.fixture
def start():
    """Start a script in its own session; whatever a failing test leaves running is killed."""
    started: list[subprocess.Popen] = []

    def _start(code: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_stop_group_stops_children_too(start):
    proc = start(SPAWNER)
    child = int(proc.stdout.readline())
    assert _alive(child)
    stop_group(proc, signal.SIGTERM, timeout=10)
    assert proc.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_stop_group_escalates_to_sigkill(start):
    proc = start(STUBBORN)
    assert proc.stdout.readline().strip() == "ready"
    stop_group(proc, signal.SIGTERM, timeout=1)
    assert proc.returncode == -signal.SIGKILL


def test_stop_group_leaves_finished_processes_alone(start):
    stop_group(None)  # nothing started: nothing to do
    proc = start("pass")
    proc.wait()
    stop_group(proc)
    assert proc.returncode == 0  # not overwritten by a signal


def test_stop_group_tolerates_a_group_that_vanished(start):
    proc = start("import time; time.sleep(600)")
    os.killpg(proc.pid, signal.SIGKILL)
    os.waitpid(proc.pid, 0)  # reaped behind Popen's back: poll() cannot tell yet
    stop_group(proc, timeout=1)
    assert not _alive(proc.pid)
