"""Benchmark: the training stages end to end on a shop with a large catalog.

Default 3k users x 100k products x 60 days (the issue's target: < 2 minutes, peak RSS < 4 GB).
The lake is prepared with the real batch stages (ingest, validate, features; timed apart), then
``load_training_data`` → ``train_and_evaluate`` → ``register_and_promote`` → ``publish`` run as the
training DAG runs them. Prints seconds per stage and peak RSS; never asserts.

    nice .venv/bin/python bench/bench_large_catalog.py [--users N] [--products N] [--days N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=3_000)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--consumables", type=float, default=0.3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="recomart-bench-large-"))
    os.environ["RECOMART_LAKE_ROOT"] = str(work / "lake")

    from recomart import training
    from recomart.features import build_features
    from recomart.ingestion import ingest_csv_sources
    from recomart.lake import Lake
    from recomart.sources.generator import generate
    from recomart.validation import publish_validated, validate_all

    ds = "2024-06-29"
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    cpu_at = [time.process_time()]

    def stage(name: str, t0: float) -> float:
        # CPU seconds of this process beside the wall time (a busy shared machine inflates wall)
        now, used = time.perf_counter(), time.process_time()
        stages[name] = round(now - t0, 2)
        cpu[name] = round(used - cpu_at[0], 2)
        cpu_at[0] = used
        print(f"{name:<22} {stages[name]:>8.2f} s   CPU {cpu[name]:>8.2f} s   peak RSS "
              f"{peak_rss_mb():>8.1f} MB   load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        return now

    t = time.perf_counter()
    counts = generate(work / "source", users=args.users, products=args.products, days=args.days,
                      end_date=date(2024, 6, 30), consumables=args.consumables)
    t = stage("generate", t)
    lake = Lake()
    ingest_csv_sources(lake, ds, work / "source")
    validate_all(lake, ds, "bench")
    publish_validated(lake, ds, "bench")  # write-audit-publish: features read published data only
    build_features(lake, ds, "bench")
    t = stage("batch (prepare lake)", t)
    start = t
    data = training.load_training_data(lake, ds)
    t = stage("load_training_data", t)
    trained = training.train_and_evaluate(lake, ds, data)
    t = stage("train_and_evaluate", t)
    decision = training.register_and_promote(lake, ds, trained)
    t = stage("register_and_promote", t)
    published = training.publish(lake, ds, data, decision)
    t = stage("publish", t)
    result = {"shop": {**vars(args), "rows": counts}, "stages_s": stages, "stages_cpu_s": cpu,
              "training_end_to_end_s": round(t - start, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
              "selected": trained["selected"], "protocol": trained["protocol"],
              "ndcg_at_10": trained["metrics"].get("ndcg_at_10"), "published": published["published"]}
    result["shop"]["workdir"] = str(work)
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
