"""The evaluation protocols, the buy-again baseline and `recomart evaluate --source-dir`, on small
hand-made histories whose right answers are known."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from recomart.models.baselines import BuyAgainRecommender
from recomart.models.protocols import (
    ProtocolError,
    explore_split,
    next_basket_split,
    repeat_share,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _events(rows):
    """rows: (user, product, day, event_type)."""
    return pd.DataFrame({"user_id": [r[0] for r in rows], "product_id": [r[1] for r in rows],
                         "timestamp": [T0 + pd.Timedelta(days=r[2]) for r in rows],
                         "rating": np.nan, "event_type": [r[3] for r in rows]})


def test_explore_cuts_every_user_at_the_same_instant():
    # user 1 is active early, user 2 late: a per-user split would let user 1's training see day 9
    ev = _events([(1, 10, 0, "purchase"), (1, 11, 1, "purchase"), (1, 12, 9, "purchase"),
                  (2, 10, 7, "purchase"), (2, 13, 8, "purchase"), (2, 10, 9, "purchase"),
                  (3, 14, 9, "purchase")])
    split = explore_split(ev, cut="2024-01-08T12:00")
    assert split.train["timestamp"].max() < pd.Timestamp("2024-01-08T12:00", tz="UTC")
    assert set(zip(split.train["user_id"], split.train["product_id"], strict=True)) == {
        (1, 10), (1, 11), (2, 10)}
    # relevant: new items after the cut, for users with a training history (user 3 is cold)
    assert set(zip(split.relevant["user_id"], split.relevant["product_id"], strict=True)) == {
        (1, 12), (2, 13)}
    assert list(split.users) == [1, 2] and split.exclude_seen
    default = explore_split(ev)  # last 20 % of the span: cut at day 7.2
    assert default.info["cut"].startswith("2024-01-08T04:48")


def test_next_basket_holds_out_each_users_last_order_and_keeps_repeats_rankable():
    ev = _events([(1, 10, 0, "view"), (1, 10, 1, "purchase"), (1, 11, 1, "purchase"),
                  (1, 10, 5, "purchase"), (1, 12, 5, "purchase"),
                  (2, 20, 2, "purchase"), (2, 20, 6, "purchase"),
                  (3, 30, 3, "purchase")])
    orders = pd.DataFrame({"order_id": [1, 1, 2, 2, 3, 4, 5], "user_id": [1, 1, 1, 1, 2, 2, 3],
                           "product_id": [10, 11, 10, 12, 20, 20, 30],
                           "timestamp": [T0 + pd.Timedelta(days=d) for d in (1, 1, 5, 5, 2, 6, 3)]})
    split = next_basket_split(ev, orders, min_users=2)
    assert list(split.users) == [1, 2] and not split.exclude_seen
    assert set(zip(split.relevant["user_id"], split.relevant["product_id"], strict=True)) == {
        (1, 10), (1, 12), (2, 20)}
    # every evaluated user's training stops before their held-out order; user 3 stays in training
    per_user = split.train.groupby("user_id")["timestamp"].max()
    assert per_user[1] < T0 + pd.Timedelta(days=5) and per_user[2] < T0 + pd.Timedelta(days=6)
    assert 3 in set(split.train["user_id"])
    assert split.info["repeat_share_of_held_out"] == pytest.approx(2 / 3, abs=1e-4)
    with pytest.raises(ProtocolError, match="only 2 users have >= 2 orders"):
        next_basket_split(ev, orders, min_users=5)
    assert repeat_share(orders)["repeat_lines"] == 2  # (1, 10) and (2, 20) bought again


def test_buy_again_ranks_own_frequency_then_recency_then_popularity():
    ev = _events([(1, 10, 0, "purchase"), (1, 10, 3, "purchase"), (1, 11, 1, "purchase"),
                  (1, 12, 4, "purchase"), (2, 13, 0, "purchase"), (3, 13, 1, "purchase"),
                  (2, 14, 2, "view")])
    model = BuyAgainRecommender().fit(ev)
    recs = model.recommend([1], n=5, exclude_seen=False)
    # 10 bought twice; 12 and 11 once each, 12 more recently; then TopPop fill (13, then 14)
    assert recs["product_id"].tolist() == [10, 12, 11, 13, 14]
    assert model.reasons(recs).tolist() == ["buy_again"] * 3 + ["popular"] * 2


def test_evaluate_source_dir_prints_both_protocols_with_every_baseline(tmp_path):
    from typer.testing import CliRunner

    from recomart.cli import app
    from recomart.sources.generator import generate

    src = tmp_path / "shop"
    generate(src, users=300, products=40, days=60, seed=3, end_date=date(2024, 5, 2),
             consumables=0.5)
    result = CliRunner().invoke(app, ["evaluate", "--source-dir", str(src), "--date", "2024-05-01",
                                      "--folds", "0", "--models", "random,toppop,ease,buy_again"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{"):])
    assert out["repeat"]["repeat_share"] > 0.15  # consumables make it repeat-heavy
    for name in ("explore", "next_basket"):
        models = out["protocols"][name]["models"]
        assert set(models) == {"random", "toppop", "ease", "buy_again"}
        for m in models.values():
            assert {"ndcg@10", "recall@10", "recall@20", "hr@10", "map@10", "user_coverage",
                    "catalog_coverage", "fit_seconds", "eval_seconds"} <= set(m)
    nb = out["protocols"]["next_basket"]["models"]
    assert nb["buy_again"]["ndcg@10"] > nb["toppop"]["ndcg@10"] > nb["random"]["ndcg@10"]


def test_evaluate_rejects_a_folder_without_interactions(tmp_path):
    from typer.testing import CliRunner

    from recomart.cli import app

    (tmp_path / "users.csv").write_text("user_id,age,gender,region,signup_date\n1,30,F,West,2024-01-01\n")
    result = CliRunner().invoke(app, ["evaluate", "--source-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no ratings.csv, clickstream.csv or orders.csv" in " ".join(result.output.split())


def test_reason_is_the_source_that_ranked_the_item_highest_within_its_own_top_k():
    from recomart.models.hybrid import source_reasons

    # int16 ranks as the candidate sources emit them; k + 1 means "outside that source's top k"
    cands = pd.DataFrame({"ease_rank": np.array([3, 101, 7], np.int16),
                          "cooc_rank": np.array([2, 51, 51], np.int16),
                          "content_rank": np.array([1, 31, 31], np.int16),
                          "buy_again_rank": np.array([31, 1, 31], np.int16)})
    ks = {"ease": 100, "cooc": 50, "content": 30, "buy_again": 30}
    assert source_reasons(cands, ks).tolist() == ["similar_to_recent", "buy_again", "similar_users"]
