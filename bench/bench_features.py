"""Benchmark: feature build time on a generated shop, then online and point-in-time lookups.

    python bench/bench_features.py            # 100k users, 10k products, 90 days (~2M events)
    python bench/bench_features.py --small    # 5k users, 1k products, 30 days

Generates the shop with ``recomart.sources.generator`` (cached in --data-dir), loads it as curated
Delta tables (typed like validation's output) into a temporary lake, then times
``recomart.features.build_features`` and the feature store's reads. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def curate_csv_dir(lake, src: Path, ds: str) -> dict[str, int]:
    """Curated Delta tables straight from the generator's CSVs (typed, with _source/_ds)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from recomart.tables import DATASETS

    types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(),
             "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32()}
    rows = {}
    for name, spec in DATASETS.items():
        table = pacsv.read_csv(src / f"{name}.csv", convert_options=pacsv.ConvertOptions(
            column_types={c: types[k] for c, k in spec.columns.items()}, strings_can_be_null=True))
        n = table.num_rows
        table = table.append_column("_source", pa.array(["csv"] * n)).append_column(
            "_ds", pa.array([ds] * n))
        lake.write_table("curated", name, table)
        rows[name] = n
    return rows


def percentiles(samples: list[float]) -> str:
    arr = np.array(samples) * 1e6
    return (f"p50 {np.percentile(arr, 50):8.1f} µs   p99 {np.percentile(arr, 99):8.1f} µs   "
            f"mean {statistics.fmean(arr):8.1f} µs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true", help="5k users, 1k products, 30 days")
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "recomart-bench-features",
                    help="where generated CSVs are cached between runs")
    ap.add_argument("--lookups", type=int, default=2000, help="single-id lookups to time")
    args = ap.parse_args()
    users, products, days = (5_000, 1_000, 30) if args.small else (100_000, 10_000, 90)

    from recomart.features.engineering import build_features, compute_features, load_inputs
    from recomart.features.store import FeatureStore
    from recomart.lake import Lake
    from recomart.sources.generator import generate

    src = args.data_dir / f"u{users}_p{products}_d{days}"
    if not (src / "clickstream.csv").exists():
        t = time.perf_counter()
        generate(src, users=users, products=products, days=days, seed=42)
        print(f"generated {src} in {time.perf_counter() - t:.1f} s")
    ds = "2024-06-29"  # the generator's default window ends 2024-06-30 (exclusive)

    with tempfile.TemporaryDirectory(prefix="recomart-bench-lake-") as tmp:
        lake = Lake(tmp)
        t = time.perf_counter()
        counts = curate_csv_dir(lake, src, ds)
        print(f"curated tables loaded in {time.perf_counter() - t:.1f} s: {counts}")
        interactions = counts["clickstream"] + counts["orders"] + counts["ratings"]

        t = time.perf_counter()
        summary = build_features(lake, ds, "bench")  # first: includes imports, like a DAG task
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        inp = load_inputs(lake, ds)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        tables = compute_features(inp)
        t_compute = time.perf_counter() - t
        del inp, tables
        print(f"\nfeature build on {interactions:,} interactions ({counts['clickstream']:,} events, "
              f"{users:,} users, {products:,} products, {days} days):")
        print("  (read and compute timed again after the build, imports warm)")
        print(f"  read curated   {t_load:6.2f} s")
        print(f"  compute        {t_compute:6.2f} s   "
              f"({interactions / t_compute:,.0f} interactions/s)")
        print(f"  build_features {t_build:6.2f} s end to end (read + compute + 3 Delta writes + "
              f"registry + online copies)")
        for name, info in summary["tables"].items():
            print(f"    {name:20s} {info['rows']:>9,} rows  {info['features']} features  v{info['version']}")

        store = FeatureStore(lake)
        rng = np.random.default_rng(0)
        user_ids = store.get_snapshot("user_features", features=[])["user_id"].to_numpy()
        t = time.perf_counter()
        store.get_online_features("user_features", [int(user_ids[0])])
        print(f"\nonline index load (first lookup) {1e3 * (time.perf_counter() - t):.1f} ms")
        single, batch = [], []
        for uid in rng.choice(user_ids, args.lookups):
            t = time.perf_counter()
            store.get_online_features("user_features", [int(uid)])
            single.append(time.perf_counter() - t)
        for _ in range(max(args.lookups // 4, 50)):
            ids = [int(i) for i in rng.choice(user_ids, 100)]
            t = time.perf_counter()
            store.get_online_features("user_features", ids)
            batch.append(time.perf_counter() - t)
        rows = []
        for uid in rng.choice(user_ids, args.lookups):
            t = time.perf_counter()
            store.get_online_row("user_features", int(uid))
            rows.append(time.perf_counter() - t)
        print(f"online get_online_row user_features (dict): {percentiles(rows)}")
        print(f"online lookup user_features, 1 id   : {percentiles(single)}")
        print(f"online lookup user_features, 100 ids: {percentiles(batch)}")
        pairs = store.get_snapshot("user_item_features", features=[])[["user_id", "product_id"]]
        pair_ids = list(pairs.itertuples(index=False, name=None))
        store.get_online_features("user_item_features", [pair_ids[0]])
        pair_single = []
        for j in rng.integers(0, len(pair_ids), args.lookups):
            t = time.perf_counter()
            store.get_online_features("user_item_features", [pair_ids[int(j)]])
            pair_single.append(time.perf_counter() - t)
        print(f"online lookup user_item_features, 1 pair: {percentiles(pair_single)}")

        import pandas as pd

        n = min(100_000, len(pairs))
        sample = pairs.sample(n, random_state=0).reset_index(drop=True)
        sample["event_timestamp"] = pd.Timestamp("2024-06-30T12:00:00Z")
        t = time.perf_counter()
        out = store.get_historical_features(sample, [
            "user_features:recency_days", "user_features:category_affinity",
            "item_features:popularity_7d", "item_features:content_vector",
            "user_item_features:interaction_weight"], full_feature_names=True)
        t_pit = time.perf_counter() - t
        print(f"point-in-time join of {n:,} entity rows × 3 tables: {t_pit:.2f} s "
              f"({n / t_pit:,.0f} rows/s, {out.notna().all(axis=1).mean():.0%} rows fully matched)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
