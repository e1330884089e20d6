"""Ranking metrics on tiny cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recomart.models.metrics import average_precision_at_k, ndcg_at_k, ranking_metrics


def recs_frame(lists: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(u, item, 1.0 / r, r) for u, items in lists.items() for r, item in enumerate(items, 1)]
    return pd.DataFrame(rows, columns=["user_id", "product_id", "score", "rank"])


def rel_frame(sets: dict[int, list[int]]) -> pd.DataFrame:
    return pd.DataFrame([(u, i) for u, items in sets.items() for i in items],
                        columns=["user_id", "product_id"])


def test_three_users_by_hand():
    recs = recs_frame({1: [1, 3, 2], 2: [6, 7], 99: [1, 2, 3]})  # user 99 is not evaluated
    relevant = rel_frame({1: [1, 2], 2: [5], 3: [9]})           # user 3 got nothing
    m = ranking_metrics(recs, relevant, n_catalog=10)
    ndcg_1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx(ndcg_1 / 3)
    assert m["recall@20"] == pytest.approx(1 / 3)
    assert m["hr@10"] == pytest.approx(1 / 3)
    assert m["map@10"] == pytest.approx((1 + 2 / 3) / 2 / 3)
    assert m["user_coverage"] == pytest.approx(2 / 3)
    assert m["catalog_coverage"] == pytest.approx(5 / 10)
    assert m["eval_users"] == 3


def test_hit_beyond_k_counts_for_recall_only():
    recs = recs_frame({1: [*range(100, 110), 4]})  # item 4 at rank 11
    m = ranking_metrics(recs, rel_frame({1: [4]}), n_catalog=20)
    assert m["ndcg@10"] == 0.0
    assert m["hr@10"] == 0.0
    assert m["map@10"] == 0.0
    assert m["recall@20"] == 1.0


def test_ideal_dcg_uses_min_of_k_and_relevant():
    recs = recs_frame({1: list(range(10))})
    m = ranking_metrics(recs, rel_frame({1: list(range(12))}), n_catalog=12)
    assert m["ndcg@10"] == pytest.approx(1.0)
    assert m["map@10"] == pytest.approx(1.0)
    assert m["recall@20"] == pytest.approx(10 / 12)


def test_vectorised_kernels_match_hand_values():
    hits = np.array([[0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=bool)
    n_rel = np.array([1, 3, 2])
    expected_ndcg = [(1 / math.log2(3)) / 1.0, 1.0, 0.0]
    np.testing.assert_allclose(ndcg_at_k(hits, n_rel, 3), expected_ndcg)
    np.testing.assert_allclose(average_precision_at_k(hits, n_rel, 3), [0.5, 1.0, 0.0])


def test_no_relevant_users_is_an_error():
    with pytest.raises(ValueError):
        ranking_metrics(recs_frame({1: [1]}), rel_frame({}), n_catalog=1)


def test_ranker_validation_ndcg_matches_the_protocol_definition():
    from recomart.models.ranker import validation_ndcg

    users = np.array([1, 1, 1, 2, 2])
    relevant = np.array([True, False, True, False, False])  # user 2 has nothing relevant
    score = np.array([0.9, 0.8, 0.1, 0.5, 0.4])
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert validation_ndcg(users, relevant, score) == pytest.approx(expected)
