"""Serving-layer figures beside a floor measured in the same run.

    nice .venv/bin/python bench/bench_serving.py [--users 100000] [--duration 10] [--runs 3]
        [--workers 2] [--small]

Publishes a synthetic batch view (``--users`` x 20 recommendations, 10k products) into
``bench/out/serving/lake``, starts the embedded broker, a redis-server (online store) and the
Faust worker (after the load runs), fills the online store with 5 recent events for every user,
then starts two servers
with the same uvicorn settings (``--workers`` workers, uvloop + httptools, no access log):

- ``recomart serve`` (the API: batch view + online store read + merge + exposure produced), and
- the floor: a constant-JSON FastAPI endpoint of the same response size (``bench/floor_app.py``).

wrk (Debian's ``wrk``) then loads them alternately, ``--runs`` times each: RPS at 64 connections
and p99 at 16 connections, random user ids for the API. Printed: medians, ratios to the floor,
per-run paired ratios, CPU
per request (user+sys of the server workers, and of the broker and redis-server the API uses: the
load average of a shared machine moves wall-clock figures far more than CPU time), start-up to
ready (and its CPU seconds), per-worker RSS, and freshness (POST /v1/events -> Kafka -> Faust -> online
store -> the next response shows it) p50/p99 over 40 events. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from recomart.lake import Lake
from recomart.processes import interrupt_on_signals, stop_group
from recomart.serving.online_store import EmbeddedRedis, OnlineStore
from recomart.serving.synthetic import publish_synthetic
from recomart.streaming.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "serving"
BIN = Path(sys.executable).parent
WRK = shutil.which("wrk")


def get(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def wait_ready(base: str, proc: subprocess.Popen, log: Path, workers: int = 1,
               timeout: float = 120) -> float:
    """Seconds until ``workers`` distinct worker processes have answered /readyz 200."""
    t0 = time.monotonic()
    ready: set[int] = set()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"{base} exited:\n{log.read_text()[-3000:]}")
        try:
            status, body = get(f"{base}/readyz", 1)
            if status == 200:
                ready.add(body.get("pid", 0))
                if len(ready) >= workers:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.02)
    sys.exit(f"{base} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def wrk(url: str, connections: int, duration: float, script: Path | None) -> dict[str, float]:
    cmd = [WRK, "-t", "2", "-c", str(connections), "-d", f"{max(1, round(duration))}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    out = proc.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        sys.exit(f"wrk failed ({' '.join(cmd)}):\n{out}\n{proc.stderr}")
    rps = float(found.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def ms(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rps, "p50_ms": ms("50"), "p99_ms": ms("99"),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else ""}


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    parent = psutil.Process(proc.pid)
    kids = [p for p in parent.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    return kids or [parent]


def worker_rss_mb(proc: subprocess.Popen) -> list[float]:
    """RSS of the uvicorn worker processes (children doing the serving) in MB."""
    return [round(p.memory_info().rss / 1e6, 1) for p in _workers(proc)]


def cpu_s(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of these processes (their threads included)."""
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def tree_cpu_s(proc: subprocess.Popen) -> float:
    parent = psutil.Process(proc.pid)
    return cpu_s([parent, *parent.children(recursive=True)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="10k users, 3 s runs, 1 run (smoke)")
    args = ap.parse_args()
    interrupt_on_signals()  # Ctrl-C / SIGTERM still stop every server below
    if args.small:
        args.users, args.duration, args.runs = 10_000, 3.0, 1
    if WRK is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    lake = Lake(OUT / "lake")
    t0 = time.perf_counter()
    publish_synthetic(lake, users=args.users, products=args.products, n=20)
    print(f"published {args.users:,} users x 20 recs, {args.products:,} products "
          f"in {time.perf_counter() - t0:.1f}s")
    script = OUT / "users.lua"
    script.write_text(f'math.randomseed(42)\nrequest = function()\n  return wrk.format("GET", '
                      f'"/v1/users/" .. math.random(1, {args.users}) .. "/recommendations?n=20")\n'
                      'end\n')
    procs: list[subprocess.Popen] = []
    with EmbeddedBroker(log_path=OUT / "tansu.log", embedded=True) as broker, \
            EmbeddedRedis(log_path=OUT / "redis.log") as redis:
        store = OnlineStore(redis.url)
        t0 = time.perf_counter()
        rng = random.Random(7)
        now = time.time() - 600
        for start in range(1, args.users + 1, 5000):
            users = [u for u in range(start, min(start + 5000, args.users + 1)) for _ in range(5)]
            store.record(users, [f"s{u}" for u in users],
                         [rng.randint(1, args.products) for _ in users],
                         [rng.choice(("view", "view", "view", "add_to_cart")) for _ in users],
                         [now] * len(users), [f"e{i}-{start}" for i in range(len(users))])
        print(f"online store: 5 recent events for each of {args.users:,} users "
              f"in {time.perf_counter() - t0:.1f}s")
        env = dict(os.environ, RECOMART_LAKE_ROOT=str(lake.root),
                   RECOMART_KAFKA_BOOTSTRAP=broker.bootstrap, RECOMART_ONLINE_STORE_URL=redis.url,
                   RECOMART_STREAM_DECISIONS="false", RECOMART_STREAM_BATCH_WITHIN_S="0.2")
        try:
            api_port, floor_port = free_port(), free_port()
            alog, flog = OUT / "api.log", OUT / "floor.log"
            started = time.monotonic()
            with open(alog, "ab") as fh:
                api = subprocess.Popen([str(BIN / "recomart"), "serve", "--port", str(api_port),
                                        "--workers", str(args.workers)], env=env, stdout=fh,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(api)
            api_base = f"http://127.0.0.1:{api_port}"
            wait_ready(api_base, api, alog, args.workers)
            startup = time.monotonic() - started  # from spawning the CLI: every worker ready
            startup_cpu = tree_cpu_s(api)  # CPU the CLI and its workers spent getting there
            with open(flog, "ab") as fh:
                floor = subprocess.Popen(
                    [str(BIN / "uvicorn"), "floor_app:app", "--app-dir", str(ROOT / "bench"),
                     "--host", "127.0.0.1", "--port", str(floor_port), "--workers",
                     str(args.workers), "--loop", "uvloop", "--http", "httptools",
                     "--log-level", "warning", "--no-access-log"], env=env, stdout=fh,
                    stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(floor)
            floor_base = f"http://127.0.0.1:{floor_port}"
            wait_ready(floor_base, floor, flog)
            for base in (api_base, floor_base):  # warm up both
                wrk(f"{base}/v1/users/1/recommendations?n=20", 16, 2, script)
            results: dict[str, dict[str, list]] = {"floor": {}, "api": {}}
            # CPU per request at 64 connections: the servers' own CPU (workers) and, for the API,
            # what its exposures and reads cost the broker and the redis-server on the same cores
            servers = {"floor": _workers(floor), "api": _workers(api)}
            helpers = [psutil.Process(broker.proc.pid), psutil.Process(redis.proc.pid)] \
                if broker.proc is not None and redis.proc is not None else []
            for run in range(args.runs):
                for name, base in (("floor", floor_base), ("api", api_base)):
                    url = f"{base}/v1/users/1/recommendations?n=20"
                    c0, h0 = cpu_s(servers[name]), cpu_s(helpers)
                    hi = wrk(url, 64, args.duration, script)
                    served = max(1.0, hi["rps"] * max(1, round(args.duration)))
                    c1, h1 = cpu_s(servers[name]), cpu_s(helpers)
                    lo = wrk(url, 16, args.duration, script)
                    r = results[name]
                    r.setdefault("cpu_us", []).append((c1 - c0) / served * 1e6)
                    r.setdefault("helper_cpu_us", []).append((h1 - h0) / served * 1e6)
                    r.setdefault("rps64", []).append(hi["rps"])
                    r.setdefault("p99_16", []).append(lo["p99_ms"])
                    r.setdefault("p50_16", []).append(lo["p50_ms"])
                    r.setdefault("non2xx", []).append(hi["non2xx"] + lo["non2xx"])
                    print(f"run {run + 1} {name:5s}: {hi['rps']:8.0f} RPS @64, p50 "
                          f"{lo['p50_ms']:.2f} ms p99 {lo['p99_ms']:.2f} ms @16, non-2xx "
                          f"{hi['non2xx'] + lo['non2xx']} {hi['socket_errors']}; CPU "
                          f"{r['cpu_us'][-1]:.0f} us/request (+ broker/redis "
                          f"{r['helper_cpu_us'][-1]:.0f})", flush=True)
            rss = worker_rss_mb(api)
            # the Faust worker starts only now: on 2 shared cores its landing of the exposures
            # logged above would otherwise compete with the API for CPU during the load runs
            wlog = OUT / "worker.log"
            with open(wlog, "ab") as fh:
                procs.insert(0, subprocess.Popen(
                    [str(BIN / "faust"), "-A", "recomart.streaming.app", "worker", "-l", "warn",
                     "--web-port", str(free_port())], env=env, cwd=OUT, stdout=fh,
                    stderr=subprocess.STDOUT, start_new_session=True))
            # freshness: POST /v1/events -> Kafka -> Faust -> online store -> next response
            lags = []
            for i in range(40):
                user = 1 + (i * 7919) % args.users
                before = get(f"{api_base}/v1/users/{user}/recommendations?n=5")[1]["fresh_events"]
                body = json.dumps({"user_id": user, "product_id": 1 + i, "event_type": "view",
                                   "session_id": f"fresh-{i}"}).encode()
                req = urllib.request.Request(f"{api_base}/v1/events", data=body, method="POST",
                                             headers={"content-type": "application/json"})
                sent = time.monotonic()
                with urllib.request.urlopen(req, timeout=15) as r:
                    if r.status != 202:
                        sys.exit(f"POST /v1/events answered {r.status}")
                while time.monotonic() - sent < 60:
                    if procs[0].poll() is not None:
                        sys.exit(f"the Faust worker died:\n{wlog.read_text()[-3000:]}")
                    fresh = get(f"{api_base}/v1/users/{user}/recommendations?n=5")[1]
                    if fresh["fresh_events"] > before or (before == 50 and fresh["items"]):
                        break
                    time.sleep(0.01)
                lags.append(time.monotonic() - sent)
                if i == 0:
                    lags.clear()  # the first one waits for the worker's group join
        finally:
            for p in reversed(procs):
                stop_group(p, signal.SIGTERM, 20)
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    lags.sort()
    print()
    print(f"== bench_serving: {args.users:,} users x 20 recs, online store live, {args.workers} "
          f"uvicorn workers (uvloop/httptools), wrk -t2, {args.duration:.0f}s x {args.runs} "
          "alternating runs (median)")
    print(f"floor (constant JSON): {med['floor']['rps64']:8.0f} RPS @64   p50 "
          f"{med['floor']['p50_16']:.2f} ms  p99 {med['floor']['p99_16']:.2f} ms @16")
    print(f"API /v1/users/{{id}}:   {med['api']['rps64']:8.0f} RPS @64   p50 "
          f"{med['api']['p50_16']:.2f} ms  p99 {med['api']['p99_16']:.2f} ms @16")
    print(f"ratio RPS {med['api']['rps64'] / med['floor']['rps64']:.2f}x floor (target >= 0.6), "
          f"p99 {med['api']['p99_16'] / med['floor']['p99_16']:.2f}x floor (target <= 2)")
    paired = [a / f for a, f in zip(results["api"]["rps64"], results["floor"]["rps64"], strict=True)]
    paired99 = [a / f for a, f in zip(results["api"]["p99_16"], results["floor"]["p99_16"],
                                      strict=True)]
    print(f"per-run ratios (each API run next to its floor run): RPS "
          f"{', '.join(f'{x:.2f}' for x in paired)} (median {statistics.median(paired):.2f}); "
          f"p99 {', '.join(f'{x:.2f}' for x in paired99)} (median {statistics.median(paired99):.2f})")
    print(f"CPU per request @64 (user+sys of the server workers): floor "
          f"{med['floor']['cpu_us']:.0f} us, API {med['api']['cpu_us']:.0f} us "
          f"(+ {med['api']['helper_cpu_us']:.0f} us in the broker and redis-server); "
          f"floor/API {med['floor']['cpu_us'] / med['api']['cpu_us']:.2f}")
    print(f"non-2xx responses: api {sum(results['api']['non2xx'])}, "
          f"floor {sum(results['floor']['non2xx'])}")
    print(f"start-up to ready: {startup:.2f} s (target <= 5; {startup_cpu:.1f} CPU s in the CLI and "
          f"its workers); worker RSS MB: {rss} (target <= 500)")
    if lags:
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        print(f"freshness (POST /v1/events -> visible in the next response), {len(lags)} events: "
              f"p50 {statistics.median(lags):.2f} s, p99 {p99:.2f} s (target <= 2)")


if __name__ == "__main__":
    main()
