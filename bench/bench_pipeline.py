"""The whole pipeline through Airflow, the way a user runs it: ``recomart run recomart_batch`` then
``recomart run recomart_training`` on a generated shop (default 100k users / 10k products / 90 days).

    python bench/bench_pipeline.py             # 100k-user shop
    python bench/bench_pipeline.py --small     # 5k users, 1k products, 30 days
    python bench/bench_pipeline.py --dags recomart_batch   # the batch DAG only

Each DAG runs as a ``recomart run`` subprocess (``airflow dags test``: every task in its own task
process) against a fresh lake and AIRFLOW_HOME. Printed per DAG: wall time, the peak summed RSS of
the whole process tree (sampled every 0.2 s with psutil) and the largest single process, then each
task's duration from Airflow's own task records. Target (issue #15): both DAGs < 3 min in all.
Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


class TreeRSS:
    """Peak RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid, self.every = pid, every
        self.peak_sum = self.peak_one = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += rss
                self.peak_one = max(self.peak_one, rss)
            self.peak_sum = max(self.peak_sum, total)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def task_durations(dag_id: str, env: dict[str, str]) -> list[tuple[str, float]]:
    """(task, seconds) of the DAG's latest run, from Airflow's task instance records."""
    def airflow_json(*args: str) -> list[dict]:
        out = subprocess.run([str(BIN / "airflow"), *args, "-o", "json"], env=env,
                             capture_output=True, text=True).stdout
        lines = [ln for ln in out.splitlines() if ln.startswith("[")]
        return json.loads(lines[-1]) if lines else []

    runs = airflow_json("dags", "list-runs", dag_id)
    if not runs:
        return []
    states = airflow_json("tasks", "states-for-dag-run", dag_id, runs[0]["run_id"])
    out = []
    for s in states:
        if s.get("start_date") and s.get("end_date"):
            secs = (datetime.fromisoformat(s["end_date"]) - datetime.fromisoformat(s["start_date"]))
            out.append((s["task_id"], secs.total_seconds()))
    return sorted(out, key=lambda kv: -kv[1])


def run_dag(dag_id: str, ds: str, env: dict[str, str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "recomart"), "run", dag_id, "--date", ds], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rss = TreeRSS(proc.pid)
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    rss.stop()
    return {"dag": dag_id, "rc": proc.returncode, "wall": wall, "peak_tree_mb": rss.peak_sum / 2**20,
            "peak_one_mb": rss.peak_one / 2**20, "tail": out.strip().splitlines()[-3:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true", help="5k users, 1k products, 30 days")
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--dags", default="recomart_batch,recomart_training")
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "recomart-bench-batch",
                    help="generated shops are cached here between runs")
    args = ap.parse_args()
    if args.small:
        args.users, args.products, args.days = 5_000, 1_000, 30

    from recomart.sources.generator import generate

    src = args.data_dir / f"u{args.users}_p{args.products}_d{args.days}"
    if not (src / "clickstream.csv").exists():
        t0 = time.perf_counter()
        generate(src, users=args.users, products=args.products, days=args.days, seed=7)
        print(f"generated {src} in {time.perf_counter() - t0:.1f}s")
    ds = "2024-06-29"  # the generated window ends 2024-06-30 (exclusive)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        env = {**os.environ, "RECOMART_SOURCE_DIR": str(src), "RECOMART_LAKE_ROOT": f"{tmp}/lake",
               "AIRFLOW_HOME": f"{tmp}/airflow", "COLUMNS": "300"}
        for key in ("RECOMART_CATALOG_API_URL", "RECOMART_MLFLOW_TRACKING_URI"):
            env.pop(key, None)
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env={
            **env, "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[1] / "dags")},
            capture_output=True, check=True)
        print(f"shop {src.name}, ds {ds}; each DAG through `recomart run` (airflow dags test)")
        for dag_id in args.dags.split(","):
            res = run_dag(dag_id, ds, env)
            results.append(res)
            status = "ok" if res["rc"] == 0 else f"FAILED (exit {res['rc']})"
            print(f"\n{dag_id}: {status} wall {res['wall']:.1f}s, peak RSS {res['peak_tree_mb']:,.0f} MB "
                  f"(process tree), largest process {res['peak_one_mb']:,.0f} MB")
            print("   " + "\n   ".join(res["tail"]))
            env_af = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[1] / "dags")}
            for task, secs in task_durations(dag_id, env_af):
                print(f"   {task:28s} {secs:7.1f}s")
            if res["rc"] != 0:
                break
    total = sum(r["wall"] for r in results)
    print(f"\ntotal wall {total:.1f}s ({total / 60:.1f} min) for {', '.join(r['dag'] for r in results)}"
          f"  (target < 3 min)")


if __name__ == "__main__":
    main()
