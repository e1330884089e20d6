"""Batch front-half benchmark: generate a shop, then time ingestion, validation and reports.

    python bench/bench_batch.py            # ~100k users, 10k products, 90 days (1M+ events)
    python bench/bench_batch.py --small    # a quick run
Prints rows/s per stage and the total; never asserts.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5k users, 1k products, 14 days")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    if args.small:
        args.users, args.products, args.days = 5_000, 1_000, 14
    logging.basicConfig(level=logging.WARNING)

    from recomart.ingestion import ingest_csv_sources
    from recomart.lake import Lake
    from recomart.sources.generator import generate
    from recomart.validation import validate_all

    ds = "2024-06-30"
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        src, lake = Path(tmp) / "src", Lake(Path(tmp) / "lake")
        t0 = time.perf_counter()
        counts = generate(src, users=args.users, products=args.products, days=args.days, seed=7)
        gen_s = time.perf_counter() - t0
        rows = sum(counts.values())
        print(f"generated {counts} ({rows:,} rows) in {gen_s:.1f}s")

        stages: list[tuple[str, float]] = []
        t0 = time.perf_counter()
        ingest_csv_sources(lake, ds, src)
        stages.append(("ingestion", time.perf_counter() - t0))
        t0 = time.perf_counter()
        summary = validate_all(lake, ds, "bench")
        stages.append(("validation", time.perf_counter() - t0))
        for module, fn in (("recomart.reports.quality", "build_quality_report"),
                           ("recomart.reports.eda", "build_eda_report")):
            if importlib.util.find_spec(module):
                t0 = time.perf_counter()
                getattr(importlib.import_module(module), fn)(lake, ds)
                stages.append((fn, time.perf_counter() - t0))
        for name, secs in stages:
            print(f"{name:22s} {secs:7.2f}s  {rows / secs:12,.0f} rows/s")
        front = sum(s for n, s in stages if n in ("ingestion", "validation"))
        total = sum(s for _, s in stages)
        print(f"{'ingestion+validation':22s} {front:7.2f}s  {rows / front:12,.0f} rows/s")
        print(f"{'total':22s} {total:7.2f}s  {rows / total:12,.0f} rows/s")
        print("status", summary["status"], {n: (d["curated"], d["quarantined"])
                                             for n, d in summary["datasets"].items()})
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
