"""Experiments DAG logic at full size: 1M landed exposures (10 items each) + 5M clickstream events
through ``recomart.experiments.run.analyse_experiments`` (read, Pandera validation + quarantine,
attribution by request id and by window, unit outcomes, 14 daily cumulative snapshots, SRM, Welch,
CUPED, sequential, Holm, readout JSON). Prints time and peak memory; never asserts.

    python bench/bench_experiments.py            # 1M exposures, 5M events
    python bench/bench_experiments.py --small    # 50k / 250k (seconds)

The analysis runs in a child process so its peak RSS is its own (not the data generation's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ITEM = pa.struct([("product_id", pa.int64()), ("position", pa.int32()), ("score", pa.float64()),
                  ("reason", pa.string())])
TS = pa.timestamp("us", tz="UTC")
START_US = 1_719_792_000_000_000  # 2024-07-01T00:00:00Z
DAY_US = 86_400_000_000


def make_data(root: Path, n_exposures: int, n_events: int, seed: int = 7) -> None:
    from recomart.experiments import assignment, definitions
    from recomart.lake import Lake

    rng = np.random.default_rng(seed)
    lake = Lake(root)
    exp = definitions.create(lake, {
        "name": "bench", "started_at": "2024-07-01T00:00:00+00:00",
        "secondary_metrics": ["conversion", "revenue_per_user"],
        "variants": [{"name": "control", "model": "models:/recomart_hybrid@champion", "weight": 1},
                     {"name": "treatment", "model": "models:/recomart_hybrid@challenger", "weight": 1}]})
    n_users, n_products, k, days = max(1000, n_exposures // 5), 5000, 10, 14
    users = rng.integers(1, n_users + 1, n_exposures)
    variant_of = np.array(["control", "treatment"])[
        np.array([assignment.bucket(exp.salt, u) >= assignment.BUCKETS // 2
                  for u in range(n_users + 1)], dtype=int)]
    variants = variant_of[users]
    ts = START_US + rng.integers(0, days * DAY_US, n_exposures)
    products = rng.integers(1, n_products + 1, (n_exposures, k))
    rid = np.char.add("r", np.arange(n_exposures).astype(str))
    items = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n_exposures * k + 1, k, dtype=np.int32)),
        pa.StructArray.from_arrays([pa.array(products.ravel()),
                                    pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), n_exposures)),
                                    pa.array(np.zeros(n_exposures * k)),
                                    pa.nulls(n_exposures * k, pa.string())],
                                   fields=list(ITEM)))
    exposures = pa.table({
        "request_id": pa.array(rid), "ts": pa.array(ts, TS), "route": pa.array(["user"] * n_exposures),
        "user_id": pa.array(users), "session_id": pa.nulls(n_exposures, pa.string()),
        "model": pa.array(["recomart_hybrid"] * n_exposures),
        "version": pa.array(np.ones(n_exposures, np.int64)),
        "experiment": pa.array(["bench"] * n_exposures), "variant": pa.array(variants),
        "assignment_probability": pa.array(np.full(n_exposures, 0.5)), "items": items,
        "_kafka_partition": pa.array(np.zeros(n_exposures, np.int32)),
        "_kafka_offset": pa.array(np.arange(n_exposures, dtype=np.int64))})
    for i, chunk in enumerate(range(0, n_exposures, 200_000)):
        lake.write_parquet(lake.path("speed", "exposures", "date=2024-07-01", f"x{i}.parquet"),
                           exposures.slice(chunk, 200_000))
    # 60 % of the events follow a served list (80 % of those carry its request id), 40 % are noise
    m = int(n_events * 0.6)
    src = rng.integers(0, n_exposures, m)
    pos = rng.integers(0, k, m)
    e_users = np.r_[users[src], rng.integers(1, n_users + 1, n_events - m)]
    e_products = np.r_[products[src, pos], rng.integers(1, n_products + 1, n_events - m)]
    e_ts = np.r_[ts[src] + rng.integers(1, 3600_000_000, m),
                 START_US + rng.integers(0, days * DAY_US, n_events - m)]
    kinds = rng.choice(np.array(["view", "add_to_cart", "purchase"]), n_events, p=[0.8, 0.15, 0.05])
    e_rid = np.where((np.arange(n_events) < m) & (rng.random(n_events) < 0.8),
                     np.r_[rid[src], np.full(n_events - m, "")], "")
    events = pa.table({
        "event_id": pa.array(np.char.add("e", np.arange(n_events).astype(str))),
        "user_id": pa.array(e_users), "product_id": pa.array(e_products),
        "event_type": pa.array(kinds), "session_id": pa.array(np.char.add("s", (e_users % 997).astype(str))),
        "timestamp": pa.array(e_ts, TS),
        "price": pa.array(np.where(kinds == "purchase", 25.0, np.nan)),
        "request_id": pa.array(e_rid, mask=e_rid == "")})
    for i, chunk in enumerate(range(0, n_events, 1_000_000)):
        lake.write_parquet(lake.path("speed", "clickstream", "date=2024-07-01", f"c{i}.parquet"),
                           events.slice(chunk, 1_000_000))


CHILD = """
import json, resource, sys, time
from recomart.lake import Lake
from recomart.experiments.run import analyse_experiments
t0 = time.perf_counter()
summary = analyse_experiments(Lake(sys.argv[1]), "2024-07-14", run_id="bench")
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak, "summary": summary}, default=str))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="50k exposures, 250k events")
    ap.add_argument("--exposures", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=5_000_000)
    args = ap.parse_args()
    n_ex, n_ev = (50_000, 250_000) if args.small else (args.exposures, args.events)
    with tempfile.TemporaryDirectory(prefix="recomart-bench-exp-") as tmp:
        t0 = time.perf_counter()
        make_data(Path(tmp), n_ex, n_ev)
        print(f"generated {n_ex:,} exposures x 10 items + {n_ev:,} events in "
              f"{time.perf_counter() - t0:.1f} s")
        out = subprocess.run([sys.executable, "-c", CHILD, tmp], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:])
            raise SystemExit(out.returncode)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        s = res["summary"]["experiments"]["bench"]
        readout = json.loads(Path(s["readout"]).read_text())
        rec = readout["reconciliation"]
        print(f"analyse_experiments: {res['seconds']:.1f} s, peak RSS {res['peak_rss_mb']:,.0f} MB "
              f"({n_ex / res['seconds']:,.0f} exposures/s)")
        print(f"  units {s['units']:,}; events attributed {rec['events_attributed']:,} "
              f"(by request id {rec['attributed_by_request_id']:,}, by window "
              f"{rec['attributed_by_window']:,}) of {rec['events_considered']:,}; decision "
              f"{s['decision']}")


if __name__ == "__main__":
    main()
