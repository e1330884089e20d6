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

# A parent -> child -> grandchild tree (as `airflow standalone` -> scheduler -> task runner):
# the leader prints "<child pid> <grandchild pid>". With IGNORE_TERM the grandchild ignores SIGTERM.
TREE = """
import subprocess, sys, time
GRANDCHILD = "import signal, time; {ignore}print('up', flush=True); time.sleep(600)"
CHILD = (
    "import subprocess, sys, time\\n"
    "g = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdout=subprocess.PIPE, text=True)\\n"
    "g.stdout.readline()\\n"
    "print(g.pid, flush=True)\\n"
    "time.sleep(600)\\n")
child = subprocess.Popen([sys.executable, "-c", CHILD, GRANDCHILD], stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
time.sleep(600)
"""
IGNORE_TERM = "signal.signal(signal.SIGTERM, signal.SIG_IGN); "

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


def _tree(start, ignore: str = "") -> tuple[subprocess.Popen, int, int]:
    proc = start(TREE.replace("{ignore}", ignore))
    child, grandchild = map(int, proc.stdout.readline().split())
    assert _alive(proc.pid) and _alive(child) and _alive(grandchild)
    assert os.getpgid(child) == os.getpgid(grandchild) == proc.pid  # one group, led by proc
    return proc, child, grandchild


def _gone(*pids: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def test_stop_group_stops_children_and_grandchildren(start):
    proc, child, grandchild = _tree(start)
    stop_group(proc, signal.SIGTERM, timeout=10)
    assert proc.returncode == -signal.SIGTERM
    assert _gone(child, grandchild)


def test_stop_group_stops_what_outlived_the_leader(start):
    """Signalling only the leader (what a plain ``proc.terminate()`` does) leaves its descendants
    running; ``stop_group`` then stops them although the leader is already gone."""
    proc, child, grandchild = _tree(start)
    proc.terminate()
    proc.wait(timeout=10)
    time.sleep(0.2)
    assert _alive(child) and _alive(grandchild)  # the leader's death did not stop them
    stop_group(proc, signal.SIGTERM, timeout=10)
    assert _gone(child, grandchild, within=1)
    assert proc.returncode == -signal.SIGTERM  # the leader's own status is left as it was


def test_stop_group_kills_a_grandchild_that_ignores_the_signal(start):
    proc, child, grandchild = _tree(start, IGNORE_TERM)
    stop_group(proc, signal.SIGTERM, timeout=1)
    assert proc.returncode == -signal.SIGTERM and _gone(child, within=1)
    assert _gone(grandchild, within=1)  # escalated to SIGKILL by stop_group, not by the test


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
    """A leader reaped behind Popen's back (``poll()`` cannot tell) and no group left: no error."""
    proc = start("import time; time.sleep(600)")
    os.killpg(proc.pid, signal.SIGKILL)
    os.waitpid(proc.pid, 0)
    stop_group(proc, timeout=1)  # must not raise (ProcessLookupError / ChildProcessError)
    assert proc.returncode is not None
