"""Scaling curve: the batch front half, the feature build and training on generated shops of
growing size, time and peak RSS per stage and size, so a reader sees how cost grows.

    python bench/bench_scaling.py                        # 10k, 100k, 300k users (10k products, 90 days)
    python bench/bench_scaling.py --users 10000,100000   # other sizes
    python bench/bench_scaling.py --stages front,features --train-max-users 10000

Events grow with users (the generator draws sessions per user). Each stage runs in its own child
process on the shop's lake, like a DAG task (cold imports), and reports its wall time and its peak
RSS (``ru_maxrss`` of the child and anything it started) and CPU seconds (user + system,
includes imports: on a shared machine CPU time shows the growth better than wall time). Stages:

- ``front``: ingestion + validation (Pandera, GX, Data Docs, curated/quarantine commits) + gate and
  publish (``recomart.validation``), the batch DAG's front half without the PDF reports;
- ``features``: ``recomart.features.build_features``;
- ``training``: the training DAG's stages in order (load, train and evaluate, register, publish,
  model report) through ``recomart.training``.

A stage that runs out of memory or time is printed as such (with the reason) and the sizes above
it skip that stage. CPU seconds per million source rows: flat = linear. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, logging
logging.basicConfig(level=logging.WARNING)
stage, lake_root, src, ds = sys.argv[1:5]
from recomart.lake import Lake
lake = Lake(lake_root)
t0 = time.perf_counter()
info = {}
if stage == "front":
    from recomart.ingestion import ingest_csv_sources
    from recomart.validation import publish_validated, validate_all
    ingest_csv_sources(lake, ds, src)
    info["ingest_s"] = round(time.perf_counter() - t0, 2)
    summary = validate_all(lake, ds, "scaling")
    publish_validated(lake, ds, "scaling")
    info["status"] = summary["status"]
elif stage == "features":
    from recomart.features import build_features
    out = build_features(lake, ds, "scaling")
    info["rows"] = {k: v["rows"] for k, v in out["tables"].items()}
elif stage == "training":
    from recomart import training as T
    data = T.load_training_data(lake, ds)
    info["load_s"] = round(time.perf_counter() - t0, 2)
    trained = T.train_and_evaluate(lake, ds, data)
    info["train_s"] = round(time.perf_counter() - t0 - info["load_s"], 2)
    decision = T.register_and_promote(lake, ds, trained)
    T.publish(lake, ds, data, decision)
    T.model_report(lake, ds, trained, decision)
wall = time.perf_counter() - t0
cpu = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
          for f in ("ru_utime", "ru_stime"))
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
print("RESULT " + json.dumps({"seconds": round(wall, 2), "cpu_s": round(cpu, 1), "peak_mb": round(peak),
                            **info}))
"""


def run_stage(stage: str, lake: Path, src: Path, ds: str, env: dict[str, str],
              timeout: float) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, stage, str(lake), str(src), ds], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f}s (--timeout)"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1].removeprefix("RESULT "))
    if proc.returncode in (-9, 137):
        return {"error": "killed by SIGKILL: out of memory (the kernel's OOM killer) most likely"}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", default="10000,100000,300000", help="comma-separated shop sizes")
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--stages", default="front,features,training")
    ap.add_argument("--train-max-users", type=int, default=0,
                    help="skip training above this many users (0 = no limit)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per stage")
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "recomart-bench-batch",
                    help="generated shops are cached here between runs")
    args = ap.parse_args()
    stages = args.stages.split(",")

    from recomart.ingestion.landing import count_lines
    from recomart.sources.generator import generate

    ds = "2024-06-29"  # the generated window ends 2024-06-30 (exclusive)
    table: list[tuple[int, int, str, dict]] = []
    failed: set[str] = set()
    for users in (int(u) for u in args.users.split(",")):
        src = args.data_dir / f"u{users}_p{args.products}_d{args.days}"
        if not (src / "clickstream.csv").exists():
            t0 = time.perf_counter()
            generate(src, users=users, products=args.products, days=args.days, seed=7)
            print(f"generated {src.name} in {time.perf_counter() - t0:.1f}s", flush=True)
        rows = sum(count_lines(p) for p in src.glob("*.csv"))
        with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
            env = {**os.environ, "RECOMART_LAKE_ROOT": f"{tmp}/lake", "RECOMART_SOURCE_DIR": str(src)}
            for key in ("RECOMART_CATALOG_API_URL", "RECOMART_MLFLOW_TRACKING_URI"):
                env.pop(key, None)
            for stage in stages:
                if stage in failed:
                    res = {"error": "skipped: failed at a smaller size"}
                elif stage == "training" and args.train_max_users and users > args.train_max_users:
                    res = {"error": f"skipped (--train-max-users {args.train_max_users})"}
                else:
                    res = run_stage(stage, Path(tmp) / "lake", src, ds, env, args.timeout)
                    if "error" in res:
                        failed.add(stage)
                table.append((users, rows, stage, res))
                shown = (f"{res['seconds']:8.1f}s  CPU {res['cpu_s']:7.1f}s  {res['peak_mb']:7,} MB"
                         if "error" not in res
                         else res["error"])
                print(f"{users:>8,} users {rows:>11,} rows  {stage:9s} {shown}", flush=True)

    print("\n| users | source rows | stage | wall s | CPU s | peak RSS | CPU s per M rows | detail |")
    print("|---:|---:|---|---:|---:|---:|---:|---|")
    for users, rows, stage, res in table:
        if "error" in res:
            print(f"| {users:,} | {rows:,} | {stage} | — | — | — | — | {res['error']} |")
            continue
        extra = {k: v for k, v in res.items() if k not in ("seconds", "cpu_s", "peak_mb")}
        print(f"| {users:,} | {rows:,} | {stage} | {res['seconds']:.1f} | {res['cpu_s']:.1f} | "
              f"{res['peak_mb']:,} MB | {res['cpu_s'] / rows * 1e6:.2f} | "
              f"{json.dumps(extra) if extra else ''} |")


if __name__ == "__main__":
    main()
