"""Experiments in the serving API (TestClient runs the real app): each user gets its sticky arm's
published lists, the response and the exposure name the experiment, variant and probability, a
one-armed experiment is never served, and the exposure wire form carries the new fields."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from recomart.config import Settings
from recomart.experiments import assignment, definitions
from recomart.serving.app import create_app
from recomart.serving.synthetic import SyntheticModel, publish_synthetic


def _experiment(lake, treatment_version=2, name="arms"):
    return definitions.create(lake, {
        "name": name, "started_at": "2024-01-01T00:00:00+00:00",
        "variants": [{"name": "control", "model": "models:/synthetic/1", "weight": 1},
                     {"name": "treatment", "model": f"models:/synthetic/{treatment_version}",
                      "weight": 1}]})


def test_each_user_gets_its_arms_lists(lake):
    publish_synthetic(lake, users=200, products=50, n=5, version=1)
    publish_synthetic(lake, users=200, products=50, n=5, version=2, offset=3, point=False)
    exp = _experiment(lake)
    arms = {1: SyntheticModel(50, 200, 0), 2: SyntheticModel(50, 200, 3)}
    with TestClient(create_app(Settings(lake_root=lake.root))) as client:
        ready = client.get("/readyz").json()
        assert [e["name"] for e in ready["experiments"]["active"]] == ["arms"]
        seen = set()
        for user in range(1, 61):
            body = client.get(f"/v1/users/{user}/recommendations?n=5").json()
            a = assignment.assign(exp, user)
            assert (body["experiment"], body["variant"]) == ("arms", a.variant)
            version = 1 if a.variant == "control" else 2
            assert body["version"] == version
            expected = arms[version].recommend([user], 5)["product_id"].tolist()
            assert [i["product_id"] for i in body["items"]] == expected
            seen.add(a.variant)
        assert seen == {"control", "treatment"}


def test_one_armed_experiment_is_not_served(lake):
    publish_synthetic(lake, users=50, products=20, n=5, version=1)
    _experiment(lake, treatment_version=9, name="broken")  # v9 was never published
    with TestClient(create_app(Settings(lake_root=lake.root))) as client:
        ready = client.get("/readyz").json()
        assert ready["experiments"]["active"] == []
        assert "variant treatment (models:/synthetic/9) not served" in ready["experiments"]["problems"][0]
        body = client.get("/v1/users/3/recommendations").json()
        assert "experiment" not in body and body["version"] == 1


def test_stopping_an_experiment_stops_routing(lake):
    publish_synthetic(lake, users=50, products=20, n=5, version=1)
    publish_synthetic(lake, users=50, products=20, n=5, version=2, offset=3, point=False)
    _experiment(lake)
    settings = Settings(lake_root=lake.root, experiment_refresh_s=0.2)
    with TestClient(create_app(settings)) as client:
        assert "experiment" in client.get("/v1/users/3/recommendations").json()
        definitions.stop(lake, "arms")
        deadline = time.monotonic() + 10
        while "experiment" in client.get("/v1/users/3/recommendations").json():
            assert time.monotonic() < deadline, "router kept routing a stopped experiment"
            time.sleep(0.1)


def test_exposure_wire_form_carries_the_experiment_fields(lake):
    from recomart.streaming.exposures import decode_exposures, exposures_table

    raw = json.dumps({"request_id": "r1", "ts": "2024-06-01T10:00:00+00:00", "route": "user",
                      "user_id": 4, "experiment": "arms", "experiment_revision": 2,
                      "variant": "treatment", "assignment_probability": 0.5,
                      "items": [{"product_id": 7, "rank": 1, "score": 0.9, "reason": "batch"}]})
    bad = raw.replace('"assignment_probability": 0.5', '"assignment_probability": 1.5')
    decoded = decode_exposures([raw.encode(), bad.encode()])
    assert len(decoded) == 1 and decoded.bad[0][1].startswith("invalid_exposure")
    row = exposures_table(decoded, [0, 0], [0, 1], [None, None]).to_pylist()[0]
    assert (row["experiment"], row["experiment_revision"], row["variant"],
            row["assignment_probability"]) == ("arms", 2, "treatment", 0.5)
