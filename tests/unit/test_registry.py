"""The MLflow registry wrapper on a real SQLite-backed MLflow store in a temporary lake.

The recommender is a small, real, picklable popularity model (the registry must work with any
object exposing ``recommend(user_ids, n)``); promotion decisions are driven by the metrics each
candidate is registered with.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recomart import registry

NAME = "test_hybrid"


class PopularityStandIn:
    """Ranks products by interaction count; unknown users get the same list (cold start)."""

    def __init__(self, interactions: pd.DataFrame, reverse: bool = False) -> None:
        counts = interactions.groupby("product_id").size().sort_values(ascending=reverse)
        self.ranking = [(int(p), float(c)) for p, c in counts.items()]
        self.seen = interactions.groupby("user_id")["product_id"].apply(set).to_dict()

    def recommend(self, user_ids, n: int) -> pd.DataFrame:
        rows = []
        for u in user_ids:
            picks = [(p, s) for p, s in self.ranking if p not in self.seen.get(int(u), set())][:n]
            rows += [(int(u), p, s, r) for r, (p, s) in enumerate(picks, start=1)]
        return pd.DataFrame(rows, columns=["user_id", "product_id", "score", "rank"]).astype(
            {"user_id": "int64", "product_id": "int64", "score": "float64", "rank": "int64"})


@pytest.fixture
def interactions() -> pd.DataFrame:
    pairs = [(u, p) for u in range(1, 7) for p in range(1, 21) if (u + p) % 4 == 0 or p <= 3 or p < u]
    return pd.DataFrame(pairs, columns=["user_id", "product_id"])


def _register(model, ndcg: float, ds: str = "2024-05-01"):
    example = pd.DataFrame({"user_id": [1, 2]})
    with registry.start_run("test_exp", run_name=f"ndcg={ndcg}", tags={"ds": ds}):
        return registry.log_model(model, NAME, example, metrics={"ndcg_at_10": ndcg, "hr_at_10": 0.5},
                                  tags={"ds": ds})


def test_store_is_sqlite_inside_the_lake(lake):
    uri = registry.configure()
    assert uri == f"sqlite:///{lake.root / 'mlflow' / 'mlflow.db'}"
    exp_id = registry.ensure_experiment("test_exp")
    assert registry.ensure_experiment("test_exp") == exp_id
    location = registry.client().get_experiment(exp_id).artifact_location
    assert location.startswith((lake.root / "mlflow" / "artifacts").as_uri())


def test_metric_key_is_mlflow_safe():
    assert registry.metric_key("ndcg@10") == "ndcg_at_10"
    assert registry.metric_key("hybrid.recall@20") == "hybrid.recall_at_20"


def test_first_model_becomes_champion_and_predicts(lake, interactions):
    assert registry.get_champion(NAME) is None
    with pytest.raises(LookupError):
        registry.load_champion(NAME)
    model = PopularityStandIn(interactions)
    version = _register(model, 0.30)
    assert int(version.version) == 1 and version.tags["ndcg_at_10"] == "0.3"

    decision = registry.promote_if_better(NAME, version.version)
    assert decision["decision"] == "promoted" and decision["previous_champion_version"] is None
    champ, metrics = registry.get_champion(NAME)
    assert int(champ.version) == 1 and metrics["ndcg_at_10"] == pytest.approx(0.30)

    pyfunc = registry.load_champion(NAME)
    out = pyfunc.predict(pd.DataFrame({"user_id": [1, 999]}), params={"n": 4})
    assert list(out.columns) == ["user_id", "product_id", "score", "rank"]
    assert out.groupby("user_id").size().to_dict() == {1: 4, 999: 4}  # 999: cold start
    expected = model.recommend([1, 999], 4).reset_index(drop=True)
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)
    # the signature carries the input schema and the n parameter
    sig = pyfunc.metadata.get_input_schema()
    assert sig.input_names() == ["user_id"]
    assert pyfunc.metadata.get_params_schema().to_dict()[0]["name"] == "n"
    # the raw recommender is available for the speed layer
    raw = registry.champion_recommender(NAME)
    assert isinstance(raw, PopularityStandIn)
    assert registry.load_champion(NAME) is pyfunc  # cached while the alias does not move


def test_worse_model_leaves_champion_and_logs_both_figures(lake, interactions):
    first = _register(PopularityStandIn(interactions), 0.30)
    registry.promote_if_better(NAME, first.version)
    worse = _register(PopularityStandIn(interactions, reverse=True), 0.10)

    decision = registry.promote_if_better(NAME, worse.version)
    assert decision["decision"] == "kept"
    assert decision["candidate_value"] == pytest.approx(0.10)
    assert decision["previous_champion_value"] == pytest.approx(0.30)
    assert int(registry.get_champion(NAME)[0].version) == int(first.version)

    run = registry.get_run(worse.run_id)
    assert run["tags"]["promotion.decision"] == "kept"
    assert run["metrics"]["promotion.candidate_value"] == pytest.approx(0.10)
    assert run["metrics"]["promotion.champion_value"] == pytest.approx(0.30)
    assert run["params"]["promotion.metric"] == "ndcg_at_10"
    artifact = registry.run_artifact_dir(worse.run_id) / "promotion" / "decision.json"
    assert json.loads(artifact.read_text())["champion_version"] == int(first.version)
    version_tags = registry.client().get_model_version(NAME, worse.version).tags
    assert version_tags["promotion.decision"] == "kept"
    # deciding again gives the same answer and does not fail on immutable params
    assert registry.promote_if_better(NAME, worse.version)["decision"] == "kept"


def test_better_model_takes_over_and_loader_follows(lake, interactions):
    first = _register(PopularityStandIn(interactions, reverse=True), 0.20)
    registry.promote_if_better(NAME, first.version)
    assert isinstance(registry.champion_recommender(NAME), PopularityStandIn)
    before = registry.load_champion(NAME)
    better = _register(PopularityStandIn(interactions), 0.25)

    decision = registry.promote_if_better(NAME, better.version)
    assert decision["decision"] == "promoted" and decision["previous_champion_version"] == 1
    assert int(registry.get_champion(NAME)[0].version) == int(better.version)
    after = registry.load_champion(NAME)
    assert after is not before
    top = after.predict(pd.DataFrame({"user_id": [999]}), params={"n": 1})
    assert top["product_id"].iloc[0] == PopularityStandIn(interactions).ranking[0][0]
    assert registry.promote_if_better(NAME, better.version)["decision"] == "promoted"
    listed = registry.list_versions(NAME)
    assert [v["version"] for v in listed] == [2, 1] and listed[0]["aliases"] == ["champion"]


@pytest.mark.parametrize(("candidate", "promoted"), [(0.305, False), (0.3101, True)])
def test_margin_is_respected(lake, interactions, candidate, promoted):
    first = _register(PopularityStandIn(interactions), 0.30)
    registry.promote_if_better(NAME, first.version, margin=0.01)
    second = _register(PopularityStandIn(interactions), candidate)
    decision = registry.promote_if_better(NAME, second.version, margin=0.01)
    assert (decision["decision"] == "promoted") is promoted
    assert int(registry.get_champion(NAME)[0].version) == int((second if promoted else first).version)


def test_find_version_matches_tags(lake, interactions):
    v1 = _register(PopularityStandIn(interactions), 0.3, ds="2024-05-01")
    _register(PopularityStandIn(interactions), 0.3, ds="2024-05-02")
    assert int(registry.find_version(NAME, {"ds": "2024-05-01"}).version) == int(v1.version)
    assert registry.find_version(NAME, {"ds": "2030-01-01"}) is None
    assert registry.find_version("no_such_model", {"ds": "x"}) is None


def test_find_run_returns_finished_run_with_tags(lake, interactions):
    assert registry.find_run("test_exp", {"ds": "2024-05-01"}) is None
    version = _register(PopularityStandIn(interactions), 0.3, ds="2024-05-01")
    assert registry.find_run("test_exp", {"ds": "2024-05-01"}) == version.run_id
    assert registry.find_run("test_exp", {"ds": "2024-05-09"}) is None
    run = registry.get_run(version.run_id)
    assert run["tags"]["recomart.model_uri"].startswith("models:/")


def test_cli_lists_models_shows_champion_and_recommends_live(lake, interactions):
    from typer.testing import CliRunner

    from recomart.cli import app

    version = _register(PopularityStandIn(interactions), 0.3)
    runner = CliRunner()
    before = runner.invoke(app, ["champion", "--name", NAME])
    assert before.exit_code == 1 and "no @champion" in before.output
    registry.promote_if_better(NAME, version.version)

    listed = runner.invoke(app, ["models", "--name", NAME])
    assert listed.exit_code == 0, listed.output
    assert NAME in listed.output and "champion" in listed.output and "0.3000" in listed.output
    shown = runner.invoke(app, ["champion", "--name", NAME])
    assert shown.exit_code == 0 and "version 1" in shown.output and "ndcg_at_10" in shown.output
    recs = runner.invoke(app, ["recommend", "--user", "999", "-n", "3", "--live", "--name", NAME])
    assert recs.exit_code == 0, recs.output
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in recs.output.splitlines()
            if line.startswith("│")]
    expected = PopularityStandIn(interactions).recommend([999], 3)
    assert [(int(r[1]), int(r[3])) for r in rows if r[0] == "999"] == \
        list(zip(expected["product_id"], expected["rank"], strict=True))
    assert "models:/test_hybrid@champion" in recs.output


FRESH_PROCESS = """
import json, sys
from pathlib import Path
from recomart import registry
name = sys.argv[1]
out = {}
rec = registry.load_version_recommender(name, 1)
out["recs"] = len(rec.recommend([1, 2], 3))
out["champion"] = int(registry.get_champion(name)[0].version)
out["found"] = int(registry.find_version(name, {"ds": "2024-05-01"}).version)
out["cwd_db"] = Path("mlflow.db").exists()
print(json.dumps(out))
"""


def test_every_function_configures_mlflow_itself_in_a_fresh_process(lake, interactions, tmp_path):
    """Under the real scheduler each task is its own process: ``publish`` loads a version with no
    earlier ``configure()`` in that process. Only the environment is shared."""
    import os
    import subprocess
    import sys

    from recomart.models.baselines import TopPopRecommender

    model = TopPopRecommender().fit(interactions.assign(timestamp=pd.Timestamp("2024-05-01", tz="UTC")))
    version = _register(model, 0.3)
    registry.promote_if_better(NAME, version.version)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_",))}
    env["RECOMART_LAKE_ROOT"] = str(lake.root)
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, NAME], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"recs": 6, "champion": 1, "found": 1, "cwd_db": False}
    assert not (workdir / "mlflow.db").exists()


def test_gated_promotion_makes_a_better_model_the_challenger_not_the_champion(lake, interactions):
    first = _register(PopularityStandIn(interactions, reverse=True), 0.20)
    assert registry.promote_if_better(NAME, first.version, gated=True)["decision"] == "promoted"
    better = _register(PopularityStandIn(interactions), 0.25)

    decision = registry.promote_if_better(NAME, better.version, gated=True)
    assert decision["decision"] == "challenger" and "online experiment" in decision["reason"]
    assert decision["champion_version"] == int(first.version)
    assert int(registry.get_champion(NAME)[0].version) == int(first.version)
    assert registry.version_for_alias(NAME, "challenger") == int(better.version)
    worse = _register(PopularityStandIn(interactions, reverse=True), 0.10)
    assert registry.promote_if_better(NAME, worse.version, gated=True)["decision"] == "kept"
    assert registry.version_for_alias(NAME, "challenger") == int(better.version)
