"""Batch front-half benchmark: ingestion + validation beside the raw-IO floor, then the reports.

    python bench/bench_batch.py            # 100k users, 10k products, 90 days (2.2M rows)
    python bench/bench_batch.py --small    # a quick run
    python bench/bench_batch.py --profile out.prof   # cProfile of ingestion + validation
    python bench/bench_batch.py --small --lake s3          # + the same stages on a local moto S3
    python bench/bench_batch.py --lake s3://bucket/prefix  # + on that store (AWS_* settings)

The floor is what any pipeline must at least do with these files: read every source CSV with
pyarrow (multi-threaded, types inferred) and write it as Parquet. It is measured in the same run,
before and after the front half (their mean is the floor; the machine is shared, so both are
printed). The front half runs cold, as in a DAG task: its first call imports pandas, Pandera,
Great Expectations and deltalake. Prints figures and the ratio; never asserts.

With ``--lake s3…`` the same stages then run again on an object-store lake and a second table
shows both lakes side by side (s3/local per stage). A bare ``--lake s3`` starts moto's S3 server
on a free loopback port for the run (``recomart.local_s3``, what the tests use); an ``s3://`` URI
uses the store the AWS_* settings name (e.g. MinIO), below a fresh prefix.
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
from pathlib import Path


def cpu_seconds() -> float:
    """User + system CPU so far of this process (all threads) and of its finished child processes
    (validation's GX suites child): less sensitive to a busy machine than wall time."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def raw_io_floor(src: Path, out: Path) -> tuple[float, float]:
    """Seconds to read every ``<dataset>.csv`` with pyarrow and write it as Parquet."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), cpu_seconds()
    for csv in sorted(src.glob("*.csv")):
        pq.write_table(pacsv.read_csv(csv), out / f"{csv.stem}.parquet")
    return time.perf_counter() - t0, cpu_seconds() - c0


def front_half(lake, src: Path, ds: str) -> tuple[list[tuple[str, float]], dict]:
    """Ingestion and validation on ``lake``: [(stage, seconds)] and the validation summary."""
    from recomart.ingestion import ingest_csv_sources
    from recomart.validation import validate_all

    stages: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    ingest_csv_sources(lake, ds, src)
    stages.append(("ingestion", time.perf_counter() - t0))
    t0 = time.perf_counter()
    summary = validate_all(lake, ds, "bench")
    stages.append(("validation", time.perf_counter() - t0))
    return stages, summary


def reports(lake, ds: str) -> list[tuple[str, float]]:
    """Both PDF reports on ``lake``: [(stage, seconds)]."""
    stages: list[tuple[str, float]] = []
    for module, fn in (("recomart.reports.quality", "build_quality_report"),
                       ("recomart.reports.eda", "build_eda_report")):
        if importlib.util.find_spec(module):
            t0 = time.perf_counter()
            getattr(importlib.import_module(module), fn)(lake, ds)
            stages.append((fn, time.perf_counter() - t0))
    return stages


def run_stages(lake, src: Path, ds: str) -> tuple[list[tuple[str, float]], dict]:
    stages, summary = front_half(lake, src, ds)
    return stages + reports(lake, ds), summary


def object_store_side_by_side(lake_arg: str, src: Path, ds: str, tmp: Path, rows: int) -> None:
    """The same stages on an object-store lake (imports are warm by now, as they were not for
    the first local run, so the local run is repeated warm first) and the two side by side."""
    from recomart.config import reset_settings
    from recomart.lake import Lake

    local, local_summary = run_stages(Lake(tmp / "lake_side_by_side"), src, ds)
    with contextlib.ExitStack() as stack:
        if lake_arg == "s3":
            from recomart.local_s3 import local_s3

            os.environ.update(stack.enter_context(local_s3("bench")))
            uri, label = "s3://bench/lake", "s3 (moto)"
        else:
            uri, label = f"{lake_arg.rstrip('/')}/bench-{uuid.uuid4().hex[:8]}", "s3"
        os.environ["RECOMART_LOCAL_STATE_DIR"] = str(tmp / "state")
        reset_settings()
        remote, summary = run_stages(Lake(uri), src, ds)
    print(f"\nobject-store lake {uri} (endpoint {os.environ.get('AWS_ENDPOINT_URL', 'AWS')}), "
          "both runs with warm imports:")
    if {n: d["curated"] for n, d in summary["datasets"].items()} != \
            {n: d["curated"] for n, d in local_summary["datasets"].items()}:
        print("WARNING: the object-store run curated different counts than the local run")
    print(f"{'stage':22s}  {'local':>12s} {'rows/s':>11s}  {label:>12s} {'rows/s':>11s}  s3/local")
    pairs = [(n, t, dict(remote)[n]) for n, t in local]
    front = [p for p in pairs if p[0] in ("ingestion", "validation")]
    pairs += [("ingestion+validation", sum(p[1] for p in front), sum(p[2] for p in front)),
              ("total", sum(p[1] for p in pairs), sum(p[2] for p in pairs))]
    for name, a, b in pairs:
        print(f"{name:22s}  {a:11.2f}s {rows / a:11,.0f}  {b:11.2f}s {rows / b:11,.0f}  {b / a:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5k users, 1k products, 14 days")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "recomart-bench-batch",
                        help="generated shops are cached here between runs")
    parser.add_argument("--profile", type=Path, help="write a cProfile of ingestion + validation here")
    parser.add_argument("--lake", default=None,
                        help="also run on an object store: `s3` (a local moto server) or s3://bucket/prefix")
    parser.add_argument("--warm", action="store_true",
                        help="run the front half a second time on a fresh lake (imports warm) and "
                             "print it too: separates one-off import cost from per-row work")
    args = parser.parse_args()
    if args.small:
        args.users, args.products, args.days = 5_000, 1_000, 14
    logging.basicConfig(level=logging.WARNING)
    # one line per run: how long validation waited for the GX child and when each of its steps ended
    logging.getLogger("recomart.validation.suite_worker").setLevel(logging.INFO)

    from recomart.ingestion.landing import count_lines
    from recomart.lake import Lake
    from recomart.sources.generator import generate

    ds = "2024-06-30"
    src = args.data_dir / f"u{args.users}_p{args.products}_d{args.days}"
    if not (src / "clickstream.csv").exists():
        t0 = time.perf_counter()
        generate(src, users=args.users, products=args.products, days=args.days, seed=7)
        print(f"generated {src} in {time.perf_counter() - t0:.1f}s")
    rows = sum(count_lines(p) for p in src.glob("*.csv"))
    print(f"shop {src.name}: {rows:,} rows in {len(list(src.glob('*.csv')))} CSV files")

    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        lake = Lake(Path(tmp) / "lake")
        floors = [raw_io_floor(src, Path(tmp) / "floor0")]
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        c0 = cpu_seconds()
        stages, summary = front_half(lake, src, ds)
        front_cpu = cpu_seconds() - c0
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        floors.append(raw_io_floor(src, Path(tmp) / "floor1"))
        stages += reports(lake, ds)
        for name, secs in stages:
            print(f"{name:22s} {secs:7.2f}s  {rows / secs:12,.0f} rows/s")
        front = sum(s for n, s in stages if n in ("ingestion", "validation"))
        floor = sum(f[0] for f in floors) / len(floors)
        floor_cpu = sum(f[1] for f in floors) / len(floors)
        print(f"{'ingestion+validation':22s} {front:7.2f}s  {rows / front:12,.0f} rows/s  "
              f"(CPU {front_cpu:.2f}s)")
        print(f"{'raw-IO floor':22s} {floor:7.2f}s  {rows / floor:12,.0f} rows/s  "
              f"(CPU {floor_cpu:.2f}s; pyarrow CSV -> Parquet; before {floors[0][0]:.2f}s, "
              f"after {floors[1][0]:.2f}s)")
        print(f"ingestion+validation / floor = {front / floor:.1f}x wall, "
              f"{front_cpu / floor_cpu:.1f}x CPU  (target <= 5x)")
        total = sum(s for _, s in stages)
        print(f"{'total with reports':22s} {total:7.2f}s  {rows / total:12,.0f} rows/s")
        if args.warm:
            lake2 = Lake(Path(tmp) / "lake_warm")
            t0, c0 = time.perf_counter(), cpu_seconds()
            front_half(lake2, src, ds)
            warm, warm_cpu = time.perf_counter() - t0, cpu_seconds() - c0
            print(f"{'front half, warm':22s} {warm:7.2f}s  {rows / warm:12,.0f} rows/s  (CPU {warm_cpu:.2f}s;"
                  f" {warm / floor:.1f}x wall, {warm_cpu / floor_cpu:.1f}x CPU of the floor)")
        print("status", summary["status"], {n: (d["curated"], d["quarantined"])
                                             for n, d in summary["datasets"].items()})
        if args.lake:
            object_store_side_by_side(args.lake, src, ds, Path(tmp), rows)
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
