"""Benchmark: training and batch scoring of the hybrid on generated shop data.

Default: ~1M interactions from the generator (100k users, 10k products, 90 days); ``--small``
runs 5k users / 1k products / 30 days. Prints seconds per stage and peak RSS; never asserts.

    nice .venv/bin/python bench/bench_training.py [--small] [--data DIR] [--ease-items N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true", help="5k users, 1k products, 30 days")
    ap.add_argument("--data", type=Path, help="reuse (or create) generated CSVs in this folder")
    ap.add_argument("--ease-items", type=int, default=4000,
                    help="EASE models the N most popular items (cubic cost; default 4000)")
    ap.add_argument("--max-ranker-users", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd

    from recomart.models.baselines import EASERecommender, TopPopRecommender
    from recomart.models.data import interactions_from_tables, to_pairs
    from recomart.models.hybrid import DEFAULT_HYBRID_PARAMS, HybridRecommender
    from recomart.models.metrics import ranking_metrics
    from recomart.models.split import temporal_split
    from recomart.sources.generator import generate

    size = ({"users": 5_000, "products": 1_000, "days": 30} if args.small
            else {"users": 100_000, "products": 10_000, "days": 90})
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}
    cpu_at = [time.process_time()]

    def stage(name: str, t0: float) -> float:
        # CPU seconds (all threads of this process; the SVD grid's worker processes are not in
        # it) beside wall time: on a shared, busy machine the wall time alone misleads
        now, used = time.perf_counter(), time.process_time()
        stages[name] = round(now - t0, 2)
        cpu[name] = round(used - cpu_at[0], 2)
        cpu_at[0] = used
        rss[name] = round(peak_rss_mb(), 1)
        print(f"{name:<28} {stages[name]:>9.2f} s   CPU {cpu[name]:>9.2f} s   peak RSS "
              f"{rss[name]:>8.1f} MB   load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        return now

    data_dir = args.data or Path(tempfile.mkdtemp(prefix="recomart-bench-"))
    t = time.perf_counter()
    if not (data_dir / "clickstream.csv").exists():
        generate(data_dir, seed=args.seed, **size)
        t = stage("generate", t)
    tables = {name: pd.read_csv(data_dir / f"{name}.csv")
              for name in ("users", "products", "orders", "ratings", "clickstream")}
    events = interactions_from_tables(tables)
    t = stage("load_interactions", t)
    split = temporal_split(events)
    t = stage("split", t)
    pairs = to_pairs(split.train)
    params = {**DEFAULT_HYBRID_PARAMS, "ease_max_items": args.ease_items,
              "max_ranker_users": args.max_ranker_users}
    model = HybridRecommender(params, seed=args.seed).fit(split.train, tables["products"],
                                                          tables["users"])
    t = stage("hybrid_fit_total", t)
    all_users = np.unique(events["user_id"].to_numpy())
    recs = model.recommend(all_users, n=20)
    t = stage("recommend_all_users", t)
    relevant = split.test.loc[split.test["relevant"]]
    metrics = ranking_metrics(recs, relevant, n_catalog=len(model.item_ids))
    t = stage("metrics", t)
    sims = model.similar_items(model.item_ids, n=20)
    t = stage("similar_items_all", t)
    audience = model.audience(model.item_ids, n=100)
    t = stage("audience_all_items", t)
    eval_users = np.unique(relevant["user_id"].to_numpy())
    baselines = {}
    for base in (TopPopRecommender(), EASERecommender(params["ease_lam"], args.ease_items)):
        base.fit(split.train)
        t = stage(f"{base.name}_fit", t)
        baselines[base.name] = ranking_metrics(base.recommend(eval_users, n=20), relevant,
                                               n_catalog=len(base.item_ids))
        t = stage(f"{base.name}_recommend_eval_users", t)
    report = {
        "size": size, "events": len(events), "train_events": len(split.train),
        "train_pairs": len(pairs), "users": len(all_users),
        "items": len(model.item_ids), "ease_items": min(args.ease_items, len(model.item_ids)),
        "stages_s": stages, "stages_cpu_s": cpu, "hybrid_stages_s": model.timings_, "peak_rss_mb": rss,
        "recommend_users_per_s": round(len(all_users) / max(stages["recommend_all_users"], 1e-9)),
        "similar_items_rows": len(sims), "audience_rows": len(audience),
        "training_info": model.training_info_,
        "holdout_metrics": {"hybrid": metrics, **baselines},
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
