"""Gated promotion and the readout in MLflow, on a real SQLite-backed MLflow registry."""

from __future__ import annotations

import pandas as pd
import pytest

from recomart import registry
from recomart.experiments import definitions, promotion

NAME = "recomart_hybrid"


class Fixed:
    """A tiny real, picklable recommender (the same list for everyone)."""

    def __init__(self, items: list[int]) -> None:
        self.items = items

    def recommend(self, user_ids, n: int) -> pd.DataFrame:
        rows = [(int(u), p, 1.0 / r, r) for u in user_ids for r, p in enumerate(self.items[:n], 1)]
        return pd.DataFrame(rows, columns=["user_id", "product_id", "score", "rank"])


@pytest.fixture
def versions(lake):
    out = []
    for items in ([1, 2, 3], [3, 2, 1]):
        with registry.start_run("test_exp"):
            out.append(int(registry.log_model(Fixed(items), NAME, pd.DataFrame({"user_id": [1]}),
                                              metrics={"ndcg_at_10": 0.1}).version))
    registry.set_alias(NAME, "champion", out[0])
    registry.set_alias(NAME, "challenger", out[1])
    return out


def _exp(lake):
    return definitions.create(lake, {
        "name": "gate", "started_at": "2024-07-01T00:00:00+00:00",
        "variants": [{"name": "control", "model": f"models:/{NAME}@champion", "weight": 1},
                     {"name": "treatment", "model": f"models:/{NAME}@challenger", "weight": 1}]})


def _readout(decision="treatment_better", mismatch=False):
    return {"experiment": "gate", "revision": 1, "ds": "2024-07-14", "decision": decision,
            "reason": "always-valid interval excludes 0", "primary_metric": "ctr",
            "secondary_metrics": [], "primary": [],
            "srm": {"mismatch": mismatch, "p_value": 1e-6 if mismatch else 0.6, "threshold": 0.001},
            "variants": [{"variant": "control", "units": 10, "exposures": 20, "ctr": 0.1},
                         {"variant": "treatment", "units": 11, "exposures": 21, "ctr": 0.2}]}


def test_gate_off_records_but_does_not_move(lake, versions):
    champion, challenger = versions
    result = promotion.gate(_exp(lake), _readout(), enabled=False)
    assert not result["promoted"] and "gated promotion is off" in result["reason"]
    assert registry.version_for_alias(NAME, "champion") == champion
    tags = registry.client().get_model_version(NAME, str(challenger)).tags
    assert tags["experiment.decision"] == "treatment_better" and tags["experiment.promoted"] == "False"


def test_gate_on_moves_champion_only_on_a_clean_win(lake, versions):
    champion, challenger = versions
    exp = _exp(lake)
    blocked = promotion.gate(exp, _readout(decision="blocked_srm", mismatch=True), enabled=True)
    assert not blocked["promoted"] and "not a clean win" in blocked["reason"]
    assert registry.version_for_alias(NAME, "champion") == champion
    won = promotion.gate(exp, _readout(), enabled=True)
    assert won["promoted"] and won["treatment_version"] == challenger
    assert registry.version_for_alias(NAME, "champion") == challenger
    assert registry.version_for_alias(NAME, "challenger") is None
    tags = registry.client().get_model_version(NAME, str(challenger)).tags
    assert tags["experiment.promoted"] == "True" and tags["experiment.name"] == "gate"


def test_readout_logged_to_mlflow_once_per_date(lake, tmp_path):
    pdf = tmp_path / "readout.pdf"
    pdf.write_bytes(b"%PDF-1.4 test")
    first = promotion.log_readout(_readout(), pdf)
    assert promotion.log_readout(_readout(), pdf) == first  # a re-run logs into the same run
    run = registry.get_run(first)
    assert run["tags"]["decision"] == "treatment_better"
    assert run["metrics"]["treatment.ctr"] == pytest.approx(0.2)
    files = {p.name for p in registry.run_artifact_dir(first).iterdir()}
    assert {"readout.json", "readout.pdf"} <= files
