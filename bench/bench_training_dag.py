"""Benchmark: the whole training DAG through Airflow (`recomart run recomart_training`).

Default shop: 100k users / 10k products / 90 days (issue #15's target: <= 2 minutes, peak
memory <= 3 GB). A fresh lake, MLflow store and Airflow home are made in a work folder; the batch
DAG (`recomart run recomart_batch`) prepares the lake and is timed apart; then the training DAG
runs exactly as a user runs it. Prints wall time and peak RSS of the command's process tree
(sampled) and of its largest process, plus the training task durations from Airflow's log;
never asserts. The timing helper lives in ``bench/dag_timing.py`` for the other DAG benches.

    nice .venv/bin/python bench/bench_training_dag.py [--users N] [--products N] [--days N]
        [--data DIR] [--workdir DIR] [--consumables 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dag_timing import run_dag_timed

END = date(2024, 6, 30)


def dag_env(work: Path, source: Path) -> dict[str, str]:
    """A private lake, MLflow store (inside the lake) and Airflow home for one bench run."""
    env = dict(os.environ)
    env.update({"RECOMART_LAKE_ROOT": str(work / "lake"), "RECOMART_SOURCE_DIR": str(source),
                "AIRFLOW_HOME": str(work / "airflow")})
    env.pop("RECOMART_MLFLOW_TRACKING_URI", None)
    return env


def task_seconds(log_text: str) -> dict[str, float]:
    """Per task duration as Airflow logged it (``... task_id=X ... duration=S``), when present."""
    out: dict[str, float] = {}
    for m in re.finditer(r"task_id=(\w+).*?duration=([0-9.]+)", log_text):
        out[m.group(1)] = round(float(m.group(2)), 2)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--consumables", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data", type=Path, help="reuse (or create) generated CSVs in this folder")
    ap.add_argument("--workdir", type=Path, help="lake, MLflow and Airflow home (default: a temp dir)")
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="recomart-bench-dag-"))
    work.mkdir(parents=True, exist_ok=True)
    source = args.data or work / "source"
    ds = (END - timedelta(days=1)).isoformat()
    if not (source / "clickstream.csv").exists():
        from recomart.sources.generator import generate

        t0 = time.perf_counter()
        generate(source, users=args.users, products=args.products, days=args.days, seed=args.seed,
                 end_date=END, consumables=args.consumables)
        print(f"generate {time.perf_counter() - t0:8.2f} s", file=sys.stderr)
    env = dag_env(work, source)
    result: dict = {"shop": {"users": args.users, "products": args.products, "days": args.days,
                             "consumables": args.consumables, "source": str(source)},
                    "workdir": str(work)}
    for dag_id in ("recomart_batch", "recomart_training"):
        log = work / f"{dag_id}.log"
        timed = run_dag_timed(dag_id, ds, env, log_path=log)
        airflow_log = Path(env["AIRFLOW_HOME"]) / "logs" / f"{dag_id}_{ds}.log"
        if airflow_log.exists():
            timed["tasks_s"] = task_seconds(airflow_log.read_text(encoding="utf-8", errors="replace"))
        result[dag_id] = {k: v for k, v in timed.items() if k != "output_tail"}
        print(f"{dag_id:<18} {timed['wall_s']:>8.2f} s wall  {timed['cpu_s']:>8.2f} s CPU   "
              f"peak tree RSS {timed['peak_tree_rss_mb']:>8.1f} MB   largest process "
              f"{timed['peak_process_rss_mb']} MB   exit {timed['returncode']}   "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)
        if timed["returncode"] != 0:
            print(timed["output_tail"], file=sys.stderr)
            break
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
