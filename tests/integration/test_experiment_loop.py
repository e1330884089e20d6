"""The experiment loop over the real serving stack: embedded broker, redis, the Faust worker and
`recomart serve` as processes; simulated shoppers with known preferences request lists over HTTP
and POST their events; every exposure and event lands through Kafka, and the readout accounts
for all of them (each event attributed by its request_id)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

pytestmark = pytest.mark.slow
USERS, PRODUCTS = 300, 60


def test_shoppers_through_the_serving_stack_are_read_out(lake, tmp_path):
    from recomart.experiments import definitions, run, simulator
    from recomart.experiments.demo import drive_and_land, serving_stack
    from recomart.serving.synthetic import publish_synthetic

    publish_synthetic(lake, users=USERS, products=PRODUCTS, n=10, version=1)
    publish_synthetic(lake, users=USERS, products=PRODUCTS, n=10, version=2, offset=5, point=False)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    exp = definitions.create(lake, {
        "name": "loop", "attribution_window_hours": 1, "started_at": today.isoformat(),
        "variants": [{"name": "control", "model": "models:/synthetic/1", "weight": 1},
                     {"name": "treatment", "model": "models:/synthetic/2", "weight": 1}]},
        now=datetime(2026, 1, 1, tzinfo=UTC))  # a fixed salt: the same split (and SRM test) each run
    shop = simulator.Shop.from_generator(USERS, PRODUCTS, 30, seed=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOMART_")}
    env.update({"RECOMART_LAKE_ROOT": str(lake.root), "RECOMART_EXPERIMENT_REFRESH_S": "1"})
    logs = tmp_path / "logs"
    logs.mkdir()
    with serving_stack(env, logs) as (base, procs):
        drive = drive_and_land(lake, base, shop, "loop", procs, logs, print, visits=300,
                               users=list(range(1, USERS + 1)), seed=4)
    assert drive["requests"] == 300 and drive["events_sent"] > 0
    assert set(drive["by_variant"]) == {"control", "treatment"}
    ds = datetime.now(UTC).date().isoformat()
    summary = run.analyse_experiments(lake, ds, names=["loop"])
    readout = run.latest_readout(lake, "loop")
    rec = readout["reconciliation"]
    assert rec["valid"] == rec["in_experiment"] == 300 and rec["quarantined"] == 0
    assert rec["events_attributed"] == rec["attributed_by_request_id"] == drive["events_sent"]
    assert sum(v["exposures"] for v in readout["variants"]) == 300
    assert not readout["srm"]["mismatch"]
    assert summary["experiments"]["loop"]["revision"] == exp.revision
    landed = run.read_exposures(lake)
    assert set(landed["assignment_probability"]) == {0.5}
