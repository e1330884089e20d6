"""`recomart stack` pieces that need no running services: process groups, the StatsD bridge,
the Faust metrics, the service list and the CLI on an empty folder."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from recomart.processes import group_members
from recomart.stack.runner import Proc, _start_time, alive, stop_proc


def test_stop_proc_stops_the_whole_group_and_never_a_recycled_pid(tmp_path):
    # a parent that spawns a child in the same group and ignores SIGTERM: SIGKILL escalation
    script = "import signal,subprocess,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
             "subprocess.Popen(['sleep','300']); time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(group_members(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    p = Proc("t", proc.pid, _start_time(proc.pid) or 0, "", "", [])
    assert alive(p) and len(group_members(proc.pid)) == 2
    stop_proc(p, timeout=1.0)
    assert not group_members(proc.pid) and not alive(p)
    proc.wait(timeout=5)
    # a state entry whose start time does not match the live pid is never signalled
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    stale = Proc("stale", other.pid, (_start_time(other.pid) or 0) + 1, "", "", [])
    assert not alive(stale)
    try:
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_statsd_bridge_exposes_airflow_lines_as_prometheus_series():
    from recomart.streaming.broker import free_port

    udp, http = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recomart.stack.statsd_bridge", "--udp-port",
                             str(udp), "--http-port", str(http)], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        lines = [b"airflow.scheduler_heartbeat:1|c", b"airflow.scheduler_heartbeat:1|c",
                 b"airflow.pool.open_slots.default_pool:128|g",
                 b"airflow.dagrun.duration.success.recomart_batch:1500|ms", b"garbage",
                 b"airflow.ti_failures:2|c|@0.5"]
        for line in lines:
            sock.sendto(line, ("127.0.0.1", udp))
        deadline = time.monotonic() + 10
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=2).read().decode()
            if "statsd_bridge_bad_lines_total 1.0" in text and "ti_failures" in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert "airflow_scheduler_heartbeat_total 2.0" in text
        assert "airflow_pool_open_slots_default_pool 128.0" in text
        assert "airflow_dagrun_duration_success_recomart_batch_count 1.0" in text
        assert "airflow_dagrun_duration_success_recomart_batch_sum 1.5" in text
        assert "airflow_ti_failures_total 4.0" in text  # sample rate 0.5 counts double
    finally:
        proc.kill()
        proc.wait()


def test_faust_metrics_after_a_commit():
    from collections import namedtuple

    from recomart.streaming import metrics

    TP = namedtuple("TP", "topic partition")
    Rec = namedtuple("Rec", "offset")

    class Consumer:
        def highwater(self, tp):
            return {0: 120, 1: None}[tp.partition]

    before = metrics.EVENTS_LANDED._value.get()
    metrics.observe_landing(0.2)
    metrics.observe_commit(Consumer(), {TP("clickstream", 0): [Rec(98), Rec(99)],
                                        TP("clickstream", 1): [Rec(5)]},
                           {"valid": 3, "dead_letter": 1})
    body, ctype = metrics.render()
    text = body.decode()
    assert "charset" not in ctype and ctype.startswith("text/plain")
    assert metrics.EVENTS_LANDED._value.get() == before + 3
    assert 'recomart_stream_consumer_lag{partition="0",topic="clickstream"} 20.0' in text
    assert 'partition="1"' not in text  # no high-water mark known: no made-up lag
    assert "recomart_stream_batch_seconds_count" in text
    assert "recomart_stream_last_commit_timestamp_seconds" in text


def test_service_list_guards_serving_and_keeps_instances_apart(tmp_path):
    from recomart.config import Settings
    from recomart.stack.topology import Layout, Ports, services, serving_available

    s = Settings()
    ports = Ports.allocate(s)
    svcs = services(Layout(tmp_path), ports, s)
    names = [sv.name for sv in svcs]
    assert len(names) == len(set(names))
    serving = [sv for sv in svcs if sv.compose == "serving"]
    assert len(serving) == 2 and {sv.skip for sv in serving} == {serving_available()}
    faust = [sv for sv in svcs if sv.compose == "faust-worker"]
    assert len({sv.env["RECOMART_STREAM_DATADIR"] for sv in faust}) == 2
    every_port = [p for v in vars(ports).values() for p in (v if isinstance(v, list) else [v])]
    assert len(every_port) == len(set(every_port))


def test_cli_on_a_folder_without_a_stack(tmp_path):
    from typer.testing import CliRunner

    from recomart.cli import app

    runner = CliRunner()
    status = runner.invoke(app, ["stack", "status", "--dir", str(tmp_path)])
    assert status.exit_code == 1 and "no stack in" in status.output
    down = runner.invoke(app, ["stack", "down", "--dir", str(tmp_path)])
    assert down.exit_code == 0 and "nothing was running" in down.output
    env = runner.invoke(app, ["stack", "env", "--dir", str(tmp_path)])
    assert env.exit_code == 1 and "recomart stack up" in env.output


def test_up_fails_clearly_without_postgres_binaries(tmp_path, monkeypatch):
    from recomart.config import Settings
    from recomart.stack.runner import Stack, StackError

    monkeypatch.setenv("RECOMART_PG_BIN", str(tmp_path / "nope"))
    st = Stack(Settings(), tmp_path / "stack")
    with pytest.raises(StackError, match="PostgreSQL cannot start"):
        st.up(step=lambda m: None)
    assert st.procs() == [] and not any(Path(tmp_path / "stack" / "logs").glob("redis*"))


def test_world_traversable(tmp_path):
    from recomart.stack.topology import world_traversable

    locked = tmp_path / "locked"
    (locked / "inside").mkdir(parents=True)
    locked.chmod(0o700)
    open_dir = Path(tempfile.mkdtemp())
    try:
        open_dir.chmod(0o755)
        assert not world_traversable(locked / "inside")
        assert world_traversable(open_dir)
    finally:
        locked.chmod(0o755)
        open_dir.rmdir()
