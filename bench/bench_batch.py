"""Batch front-half benchmark: generate a shop, then time ingestion, validation and reports.

    python bench/bench_batch.py            # ~100k users, 10k products, 90 days (1M+ events)
    python bench/bench_batch.py --small    # a quick run
    python bench/bench_batch.py --small --lake s3              # + the same stages on a local moto S3
    python bench/bench_batch.py --lake s3://bucket/prefix      # + on that store (AWS_* settings)
Prints rows/s per stage and the total; never asserts. With ``--lake s3…`` the same shop runs on a
local-folder lake first, then on the object store, and the table shows both side by side. A bare
``--lake s3`` starts moto's S3 server on a free loopback port for the run (what the tests use);
an ``s3://`` URI uses the store the AWS_* settings name (e.g. MinIO), below a fresh prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free 127.0.0.1 port with bucket ``bench``; yields the lake URI."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
    os.environ.update(env)
    import boto3

    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="bench", aws_secret_access_key="bench").create_bucket(Bucket="bench")
    try:
        yield "s3://bench/lake"
    finally:
        server.stop()


def run_stages(lake, src: Path, ds: str) -> tuple[list[tuple[str, float]], dict]:
    from recomart.ingestion import ingest_csv_sources
    from recomart.validation import validate_all

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
    return stages, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5k users, 1k products, 14 days")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--lake", default=None,
                        help="also run on an object store: `s3` (a local moto server) or s3://bucket/prefix")
    args = parser.parse_args()
    if args.small:
        args.users, args.products, args.days = 5_000, 1_000, 14
    logging.basicConfig(level=logging.WARNING)

    from recomart.config import reset_settings
    from recomart.lake import Lake
    from recomart.sources.generator import generate

    ds = "2024-06-30"
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp, contextlib.ExitStack() as stack:
        src = Path(tmp) / "src"
        t0 = time.perf_counter()
        counts = generate(src, users=args.users, products=args.products, days=args.days, seed=7)
        gen_s = time.perf_counter() - t0
        rows = sum(counts.values())
        print(f"generated {counts} ({rows:,} rows) in {gen_s:.1f}s")

        runs: dict[str, list[tuple[str, float]]] = {}
        if args.lake:  # side by side: the one-off imports (GX, pandera, fpdf2) must not count once
            import fpdf  # noqa: F401
            import great_expectations  # noqa: F401
            import pandera  # noqa: F401

            from recomart.validation import suites

            suites._context()
        runs["local"], summary = run_stages(Lake(Path(tmp) / "lake"), src, ds)
        if args.lake:
            uri = stack.enter_context(moto_s3()) if args.lake == "s3" else \
                f"{args.lake.rstrip('/')}/bench-{uuid.uuid4().hex[:8]}"
            os.environ["RECOMART_LOCAL_STATE_DIR"] = str(Path(tmp) / "state")
            reset_settings()
            label = "s3 (moto)" if args.lake == "s3" else "s3"
            runs[label], s3_summary = run_stages(Lake(uri), src, ds)
            print(f"object-store lake: {uri} (endpoint {os.environ.get('AWS_ENDPOINT_URL', 'AWS')})")
            if {n: d["curated"] for n, d in s3_summary["datasets"].items()} != \
                    {n: d["curated"] for n, d in summary["datasets"].items()}:
                print("WARNING: the object-store run curated different counts than the local run")
        names = [n for n, _ in runs["local"]]
        head = "".join(f"  {label:>12s} {'rows/s':>11s}" for label in runs)
        print(f"{'stage':22s}{head}" + ("  s3/local" if len(runs) > 1 else ""))

        def line(name: str, secs: list[float]) -> None:
            cells = "".join(f"  {t:11.2f}s {rows / t:11,.0f}" for t in secs)
            ratio = f"  {secs[1] / secs[0]:7.2f}x" if len(secs) > 1 else ""
            print(f"{name:22s}{cells}{ratio}")

        for name in names:
            line(name, [dict(r)[name] for r in runs.values()])
        line("ingestion+validation", [sum(s for n, s in r if n in ("ingestion", "validation"))
                                      for r in runs.values()])
        line("total", [sum(s for _, s in r) for r in runs.values()])
        print("status", summary["status"], {n: (d["curated"], d["quarantined"])
                                             for n, d in summary["datasets"].items()})
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
