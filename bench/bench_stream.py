"""Speed-layer figures: landing events/s per worker (topic -> durable lake), freshness p50/p99
(produce -> readable in the lake), beside the raw consume rate of plain consumers on the same broker.

    nice .venv/bin/python bench/bench_stream.py [--small] [--events N] [--profile | --py-spy]
        [--batch-max N] [--batch-within-s S] [--lake s3://bucket/prefix | --lake moto]

``--lake`` puts the worker's lake on an object store: an ``s3://`` URI uses the ``AWS_*``
settings (MinIO, S3); ``moto`` starts a moto S3 server on a free loopback port inside this
process (it shares the bench's CPU, so it is a pessimistic figure) and lands in a fresh bucket.

Phase 1 pre-loads the clickstream topic (1% malformed), measures a plain confluent-kafka and a
plain aiokafka consumer reading it, then starts one Faust worker and times it from its first
landed file to the last valid event (so group joins and start-up are not counted); the worker
runs with the trending table on and the decision agent off (RECOMART_STREAM_DECISIONS=0). Phase 2
produces at a steady rate and records, per event, broker/producer timestamp -> the moment its file
was first seen in the speed zone (polled every 20 ms). Everything (lake, worker log, profile) stays
in ``bench/out/stream/``; a worker that dies or stalls ends the run with its log tail. Prints
figures, asserts nothing.

``--py-spy`` samples the worker (every thread, idle samples left out) with py-spy (``pip install
py-spy``; not a project dependency) from its first landed file to the end of phase 1 only (no
start-up, no freshness phase) and prints the top functions by own and by total samples; the raw
folded stacks stay in ``bench/out/stream/worker.pyspy.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from recomart.config import get_settings
from recomart.lake import Lake
from recomart.processes import stop_group
from recomart.streaming.broker import EmbeddedBroker, free_port
from recomart.streaming.producer import produce
from recomart.streaming.sink import landed_rows, list_files

ROOT = Path(__file__).resolve().parents[1]
FAUST = Path(sys.executable).parent / "faust"
POLL_S = 0.02


class BenchFailure(RuntimeError):
    pass


def plain_confluent_rate(bootstrap: str, topic: str, partitions: int, expected: int,
                         cap_s: float = 60) -> float:
    """Messages/s of a bare confluent-kafka consumer (C client, no processing), partitions
    assigned directly (no group join), from the first message to the last."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-ck-{time.time_ns()}",
                  "enable.auto.commit": False, "log_level": 3})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    n, start, last = 0, None, time.monotonic()
    deadline = time.monotonic() + cap_s
    try:
        while n < expected and time.monotonic() < deadline:
            msgs = c.consume(5000, timeout=0.5)
            got = sum(1 for m in msgs if m.error() is None)
            if got:
                start, last = start or time.monotonic(), time.monotonic()
            n += got
    finally:
        c.close()
    elapsed = last - (start or last)
    return n / elapsed if elapsed and n >= expected else float("nan")


def plain_aiokafka_rate(bootstrap: str, topic: str, partitions: int, expected: int,
                        cap_s: float = 60) -> float:
    """Messages/s of a bare aiokafka consumer (the client the worker uses), ``getmany`` batches."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> float:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20)
        await c.start()
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        n, start, last = 0, None, time.monotonic()
        deadline = time.monotonic() + cap_s
        try:
            while n < expected and time.monotonic() < deadline:
                got = await c.getmany(timeout_ms=500, max_records=10_000)
                k = sum(len(v) for v in got.values())
                if k:
                    start, last = start or time.monotonic(), time.monotonic()
                n += k
        finally:
            await c.stop()
        elapsed = last - (start or last)
        return n / elapsed if elapsed and n >= expected else float("nan")

    return asyncio.run(run())


def median_of(runs: int, fn) -> float:
    return statistics.median(fn() for _ in range(runs))


def file_rows(lake: Lake, path) -> int:
    import pyarrow.parquet as pq

    with lake.open(path) as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def proc_figures(pid: int) -> dict[str, float]:
    """CPU seconds and peak RSS (MiB) of a live process, from /proc."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["peak_rss_mib"] = int(line.split()[1]) / 1024
    return out


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a live process, ``"<name> <tid>"`` -> seconds (librdkafka names
    its threads ``rdk:*``; Python's threads carry the process name)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            head, _, rest = (task / "stat").read_text().partition(" (")
            name, _, fields = rest.rpartition(") ")
            f = fields.split()
            out[f"{name} {head}"] = (int(f[11]) + int(f[12])) / tick
    return out


def cpu_by_thread(before: dict[str, float], after: dict[str, float], top: int = 8) -> str:
    used = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
    return ", ".join(f"{k} {s:.2f}" for s, k in used[:top] if s >= 0.01)


class Worker:
    """One Faust worker process (own process group), its log kept in ``log``."""

    def __init__(self, env: dict[str, str], log: Path, port: int, profile: Path | None) -> None:
        self.log, self.port = log, port
        cmd = [str(FAUST), "-A", "recomart.streaming.app", "worker", "-l", "info",
               "--web-port", str(port)]
        if profile is not None:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), *cmd]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError as exc:
            return f"(no log: {exc})"

    def check_alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            raise BenchFailure(f"worker exited with code {self.proc.returncode} while {what}")

    def stats(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats/", timeout=5) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return {}

    def stop(self, timeout: float = 60) -> None:
        stop_group(self.proc, signal.SIGTERM, timeout)


def wait_until(cond, timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        worker.check_alive(what)
        if time.monotonic() > deadline:
            raise BenchFailure(f"timed out after {timeout:.0f}s {what}")
        time.sleep(POLL_S)


class FileWatcher(threading.Thread):
    """Records when each speed-zone file is first seen (= readable), every ``POLL_S``."""

    def __init__(self, lake: Lake, ignore: set) -> None:
        super().__init__(daemon=True)
        self.lake, self.seen = lake, {p: 0.0 for p in ignore}
        self.first_seen: dict = {}
        self.rows = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            now = time.time()
            for p in list_files(self.lake):
                if p not in self.seen:
                    self.seen[p] = self.first_seen[p] = now
                    self.rows += file_rows(self.lake, p)
            self.halt.wait(POLL_S)


def start_py_spy(pid: int, out: Path, rate: int, gil: bool) -> subprocess.Popen:
    """``py-spy record`` attached to ``pid`` (folded stacks per thread, idle samples left out;
    ``gil``: only samples of the thread holding the GIL), without pausing the worker to sample."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise BenchFailure("--py-spy needs py-spy (pip install py-spy)")
    return subprocess.Popen([spy, "record", "-p", str(pid), "-r", str(rate), "--format", "raw",
                             "--threads", "--nonblocking", *(["--gil"] if gil else []),
                             "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _frame_name(frame: str) -> str:
    """``func (pkg/module.py:123)`` -> ``func (module.py)``: samples summed per function."""
    func, _, where = frame.partition(" (")
    return f"{func} ({where.rsplit('/', 1)[-1].split(':')[0]})" if where else func


def stop_py_spy(proc: subprocess.Popen, out: Path, gil: bool, top: int = 25) -> None:
    """SIGINT (py-spy writes its file then), then the top entries by own and total samples."""
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stop_group(proc, signal.SIGKILL, 10)
        err = b""
    if not out.exists():
        print(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")
        return
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    threads: dict[str, int] = {}
    n = 0
    for line in out.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        n += k
        frames = stack.split(";")
        threads[frames[0]] = threads.get(frames[0], 0) + k
        names = [_frame_name(f) for f in frames[1:]]
        if names:
            own[names[-1]] = own.get(names[-1], 0) + k
        for name in set(names):
            total[name] = total.get(name, 0) + k
    print(f"\npy-spy, phase 1 only: {n:,} samples{' (GIL holder only)' if gil else ''} ({out})")
    print("  per thread: " + ", ".join(f"{t} {c / n:.0%}" for t, c in
                                        sorted(threads.items(), key=lambda x: -x[1])[:6]))
    for title, table in (("own", own), ("total (own + callees)", total)):
        print(f"  top by {title} samples:")
        for name, c in sorted(table.items(), key=lambda x: -x[1])[:top]:
            print(f"    {c / n:6.1%}  {name}")


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def run(args: argparse.Namespace) -> None:
    n = args.events or (50_000 if args.small else 200_000)
    fresh_rate, fresh_s = (2000, 10) if args.small else (5000, 20)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    server = None
    lake_env: dict[str, str] = {}
    if args.lake == "moto":
        from recomart.local_s3 import local_s3

        server = local_s3("bench-stream")
        lake_env = server.__enter__()
        os.environ.update(lake_env)
        root = "s3://bench-stream/lake"
    else:
        root = args.lake or str(out / "lake")
    os.environ["RECOMART_LAKE_ROOT"] = root
    from recomart.config import reset_settings

    reset_settings()
    lake = Lake(root)
    log_path = out / "worker.log"
    profile = out / "worker.prof" if args.profile else None
    topic = get_settings().clickstream_topic
    print(f"bench_stream: {n:,} events, lake {lake.uri(lake.root)}, output in {out} "
          f"(worker log: {log_path})", flush=True)

    with EmbeddedBroker(embedded=True, log_path=out / "tansu.log") as broker:
        sent = produce(broker.bootstrap, topic, 0, 0, 0.01, count=n, seed=1)
        if sent.failed or sent.valid + sent.malformed != n:
            raise BenchFailure(f"producer lost messages: {sent.summary()}")
        print(f"produced {n:,} messages at {sent.summary()['rate']:,.0f}/s "
              f"({sent.malformed} malformed)", flush=True)
        parts = broker.topics[topic]
        raw_ck = median_of(3, lambda: plain_confluent_rate(broker.bootstrap, topic, parts, n))
        raw_aio = median_of(3, lambda: plain_aiokafka_rate(broker.bootstrap, topic, parts, n))
        print(f"plain consumers (median of 3): confluent-kafka {raw_ck:,.0f} msgs/s, "
              f"aiokafka {raw_aio:,.0f} msgs/s", flush=True)

        env = dict(os.environ, RECOMART_KAFKA_BOOTSTRAP=broker.bootstrap,
                   RECOMART_LAKE_ROOT=root, RECOMART_STREAM_DECISIONS="0",
                   RECOMART_LOCAL_STATE_DIR=str(out / "state"))
        if args.batch_max:
            env["RECOMART_STREAM_BATCH_MAX"] = str(args.batch_max)
        if args.batch_within_s:
            env["RECOMART_STREAM_BATCH_WITHIN_S"] = str(args.batch_within_s)
        worker = Worker(env, log_path, free_port(), profile)
        try:
            # -- phase 1: backlog -> lake -------------------------------------------------------
            wait_until(lambda: bool(list_files(lake)), args.start_timeout,
                       "waiting for the worker's first landed file", worker)
            spy = (start_py_spy(worker.proc.pid, out / "worker.pyspy.txt", args.py_spy_rate,
                                 args.py_spy_gil)
                   if args.py_spy else None)
            t0, rows0 = time.monotonic(), landed_rows(lake)
            cpu0 = proc_figures(worker.proc.pid).get("cpu_s", 0.0)
            threads0 = thread_cpu(worker.proc.pid)
            budget = args.land_timeout or max(120.0, n / 1000)
            last_rows, last_change = rows0, time.monotonic()

            def all_landed() -> bool:
                nonlocal last_rows, last_change
                rows = landed_rows(lake)
                if rows != last_rows:
                    last_rows, last_change = rows, time.monotonic()
                elif time.monotonic() - last_change > args.stall_timeout:
                    raise BenchFailure(f"no progress for {args.stall_timeout:.0f}s at {rows:,} "
                                       f"of {sent.valid:,} valid events")
                return rows >= sent.valid

            wait_until(all_landed, budget, f"landing {sent.valid:,} valid events", worker)
            t1 = time.monotonic()
            cpu1 = proc_figures(worker.proc.pid).get("cpu_s", 0.0)
            threads = cpu_by_thread(threads0, thread_cpu(worker.proc.pid))
            if spy is not None:
                stop_py_spy(spy, out / "worker.pyspy.txt", args.py_spy_gil)
            rate = (last_rows - rows0) / (t1 - t0) if t1 > t0 else float("nan")
            per_cpu = (last_rows - rows0) / (cpu1 - cpu0) if cpu1 > cpu0 else float("nan")
            stats = worker.stats()

            # -- phase 2: steady rate -> freshness ---------------------------------------------
            watcher = FileWatcher(lake, set(list_files(lake)))
            watcher.start()
            fresh = produce(broker.bootstrap, topic, fresh_rate, fresh_s, 0.0, seed=2)
            try:
                wait_until(lambda: watcher.rows >= fresh.valid, 120,
                           f"landing the {fresh.valid:,} freshness events", worker)
            finally:
                watcher.halt.set()
                watcher.join()
            lags: list[float] = []
            for p, seen in watcher.first_seen.items():
                kts = lake.read_arrow_file(p, columns=["_kafka_ts"])["_kafka_ts"].cast("int64")
                lags.extend(seen * 1000 - v / 1000 for v in kts.to_pylist())
            lags.sort()
            figures = proc_figures(worker.proc.pid)
        except BaseException:
            print(f"\n--- worker log tail ({log_path}) ---\n{worker.tail()}\n---", file=sys.stderr)
            raise
        finally:
            worker.stop()
            if server is not None:
                server.__exit__(None, None, None)

    print()
    print(f"plain consumer, confluent-kafka (no processing, median of 3): {raw_ck:>10,.0f} msgs/s")
    print(f"plain consumer, aiokafka getmany (no processing, median of 3): {raw_aio:>9,.0f} msgs/s")
    how = "fsync/rename" if lake.is_local else "one PUT"
    print(f"worker landing, 1 worker, lake {lake.uri(lake.root)} (validate + DLQ + parquet {how} + commit): "
          f"{rate:,.0f} valid events/s  ({per_cpu:,.0f} per worker CPU-second)")
    print(f"  ratio landing / plain: {rate / raw_ck:.2f} of confluent-kafka, "
          f"{rate / raw_aio:.2f} of aiokafka")
    print(f"  worker CPU seconds by thread while landing: {threads}")
    if stats:
        print(f"  worker /stats/: {json.dumps(stats.get('landing'))} "
              f"seconds {json.dumps(stats.get('seconds'))}")
    print(f"freshness at {fresh_rate}/s for {fresh_s}s: p50 {pct(lags, 0.5):,.0f} ms, "
          f"p99 {pct(lags, 0.99):,.0f} ms, max {lags[-1] if lags else float('nan'):,.0f} ms "
          f"({len(lags):,} events; producer timestamp -> file first seen in the lake)")
    print(f"worker peak RSS {figures.get('peak_rss_mib', float('nan')):,.0f} MiB; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if profile is not None:
        import pstats

        for _ in range(50):  # cProfile writes its file as the worker exits
            if profile.exists():
                break
            time.sleep(0.1)
        if profile.exists():
            pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="50k events, 2k/s freshness run")
    ap.add_argument("--events", type=int, default=0, help="backlog size (default 200k, 50k small)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "stream"),
                    help="lake, worker log and profile go here (emptied first)")
    ap.add_argument("--start-timeout", type=float, default=180.0,
                    help="seconds to wait for the worker's first landed file")
    ap.add_argument("--land-timeout", type=float, default=0.0,
                    help="seconds to land the backlog (default max(120, events/1000))")
    ap.add_argument("--stall-timeout", type=float, default=60.0,
                    help="fail when nothing lands for this long")
    ap.add_argument("--profile", action="store_true", help="run the worker under cProfile")
    ap.add_argument("--py-spy", action="store_true",
                    help="sample the worker with py-spy during phase 1 and print the top entries")
    ap.add_argument("--py-spy-rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--py-spy-gil", action="store_true",
                    help="with --py-spy: only samples of the thread holding the GIL")
    ap.add_argument("--lake", default="",
                    help="lake root: a folder or s3://bucket/prefix (AWS_* settings), or 'moto' for "
                         "an in-process moto S3 server (default: <out>/lake)")
    ap.add_argument("--batch-max", type=int, default=0,
                    help="worker's RECOMART_STREAM_BATCH_MAX (default: the setting's)")
    ap.add_argument("--batch-within-s", type=float, default=0.0,
                    help="worker's RECOMART_STREAM_BATCH_WITHIN_S (default: the setting's)")
    try:
        run(ap.parse_args())
    except BenchFailure as exc:
        print(f"bench_stream FAILED: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
