"""Benchmark the synthetic shop generator: wall time, peak RSS, rows per table and rows/s.

    python bench/bench_generate.py            # 100k users, 10k products, 90 days
    python bench/bench_generate.py --small    # 10k users, 1k products, 30 days

The generator runs in a child process so its peak RSS is measured on its own
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys
from pathlib import Path
from recomart.sources.generator import generate
out, users, products, days, seed = sys.argv[1], *map(int, sys.argv[2:6])
print(json.dumps(generate(Path(out), users=users, products=products, days=days, seed=seed)))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10k users / 1k products / 30 days")
    parser.add_argument("--users", type=int)
    parser.add_argument("--products", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    users, products, days = (10_000, 1_000, 30) if args.small else (100_000, 10_000, 90)
    users, products, days = args.users or users, args.products or products, args.days or days

    with tempfile.TemporaryDirectory(prefix="recomart-bench-gen-") as tmp:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, tmp, str(users), str(products),
                               str(days), str(args.seed)], check=True, capture_output=True, text=True)
        wall = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        counts = json.loads(done.stdout.strip().splitlines()[-1])
        size_mb = sum(f.stat().st_size for f in Path(tmp).glob("*.csv")) / 1e6

    total = sum(counts.values())
    print(f"generator: users={users:,} products={products:,} days={days} seed={args.seed}")
    print(f"wall time      {wall:8.2f} s   (child process incl. interpreter start and imports)")
    print(f"peak RSS       {peak_mb:8.0f} MB")
    print(f"CSV written    {size_mb:8.1f} MB")
    for name, rows in counts.items():
        print(f"  {name:<12} {rows:>12,} rows")
    print(f"total          {total:>12,} rows   {total / wall:,.0f} rows/s")


if __name__ == "__main__":
    main()
