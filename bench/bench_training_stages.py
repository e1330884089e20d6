"""Benchmark: the training stages on the 100k-user shop, over a lake built by the batch stages.

The lake is prepared once in ``--workdir`` (generate, ingest, validate, publish, features: the
real batch stages, as ``bench_large_catalog.py`` does) and copied for each run, so the training
stages (``load_training_data`` → ``train_and_evaluate`` → ``register_and_promote`` → ``publish``,
as the training DAG runs them) can be re-measured on the same lake with a fresh MLflow store.
Prints wall and CPU seconds (this process; the SVD grid's worker processes are not in it), peak
RSS and the load average per stage; never asserts. Profile with
``py-spy record --format raw --subprocesses -o out.raw -- .venv/bin/python bench/...``.

    nice .venv/bin/python bench/bench_training_stages.py [--workdir DIR] [--users N]
        [--products N] [--days N] [--consumables F]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

DS = "2024-06-29"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def prepare(base: Path, args: argparse.Namespace) -> None:
    """Source CSVs and a published, feature-built lake in ``base`` (skipped when present)."""
    if (base / "lake.done").exists():
        return
    os.environ["RECOMART_LAKE_ROOT"] = str(base / "lake")
    from recomart.features import build_features
    from recomart.ingestion import ingest_csv_sources
    from recomart.lake import Lake
    from recomart.sources.generator import generate
    from recomart.validation import publish_validated, validate_all

    t0 = time.perf_counter()
    generate(base / "source", users=args.users, products=args.products, days=args.days, seed=42,
             end_date=date(2024, 6, 30), consumables=args.consumables)
    lake = Lake()
    ingest_csv_sources(lake, DS, base / "source")
    validate_all(lake, DS, "bench")
    publish_validated(lake, DS, "bench")
    build_features(lake, DS, "bench")
    (base / "lake.done").write_text("ok")
    print(f"prepare lake {time.perf_counter() - t0:8.2f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--consumables", type=float, default=0.0)
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="recomart-bench-stages-"))
    base = work / "base"
    prepare(base, args)
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(base / "lake", run / "lake")
    os.environ["RECOMART_LAKE_ROOT"] = str(run / "lake")
    os.environ.pop("RECOMART_MLFLOW_TRACKING_URI", None)
    from recomart.config import reset_settings

    reset_settings()  # ``prepare`` cached the base lake's settings: train on the copy
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("recomart").setLevel(logging.INFO)

    from recomart import training
    from recomart.lake import Lake

    lake = Lake()
    stages: dict[str, list[float]] = {}

    def timed(name: str, fn):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        stages[name] = [round(time.perf_counter() - t, 1), round(time.process_time() - c, 1)]
        print(f"{name:<22} {stages[name][0]:>8.1f} s   CPU {stages[name][1]:>8.1f} s   peak RSS "
              f"{peak_rss_mb():>8.1f} MB   load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        return out

    data = timed("load_training_data", lambda: training.load_training_data(lake, DS))
    trained = timed("train_and_evaluate", lambda: training.train_and_evaluate(lake, DS, data))
    if trained["reused_run"]:
        raise SystemExit(f"train_and_evaluate reused MLflow run {trained['run_id']}: nothing was "
                         f"trained, so there is nothing to measure (delete {work} and re-run)")
    decision = timed("register_and_promote",
                     lambda: training.register_and_promote(lake, DS, trained))
    timed("publish", lambda: training.publish(lake, DS, data, decision))
    result = {"shop": vars(args) | {"workdir": str(work)}, "stages_wall_cpu_s": stages,
              "total_wall_s": round(sum(v[0] for v in stages.values()), 1),
              "total_cpu_s": round(sum(v[1] for v in stages.values()), 1),
              "peak_rss_mb": round(peak_rss_mb(), 1), "selected": trained["selected"],
              "protocol": trained["protocol"], "metrics": trained["metrics"]}
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
