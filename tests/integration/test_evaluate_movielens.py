"""The evaluation protocol end to end on MovieLens ml-latest-small (skips when it is absent).

Asserts the targets the models honestly reach on this data (see README, "Models"); the CLI's
default is 5-fold rating CV, the test uses 3 folds to keep CI time modest.
"""

from __future__ import annotations

import pytest

from recomart.models.evaluate import evaluate_movielens


@pytest.mark.slow
@pytest.mark.movielens
def test_protocol_on_ml_latest_small(movielens_dir):
    result = evaluate_movielens(movielens_dir, folds=3, seed=42)
    m = result["models"]
    assert set(m) == {"random", "toppop", "ease", "svd", "hybrid"}
    assert result["split"]["eval_users"] > 500
    ndcg = {name: v["ndcg@10"] for name, v in m.items()}
    assert ndcg["hybrid"] > ndcg["ease"] > ndcg["toppop"] > ndcg["random"]
    assert ndcg["hybrid"] > 1.1 * ndcg["ease"]
    assert m["hybrid"]["recall@20"] > m["ease"]["recall@20"]
    assert all(v["user_coverage"] == 1.0 for v in m.values())
    assert m["svd"]["rmse"] < m["svd"]["rmse_surprise_default"]
    assert m["svd"]["rmse"] < 0.86
