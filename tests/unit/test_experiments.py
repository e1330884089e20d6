"""Experiment definitions, sticky assignment, exposure quarantine, attribution and the readout,
on hand-made exposures and events whose every row is accounted for."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recomart.experiments import assignment, definitions, outcomes, run
from recomart.experiments.definitions import ExperimentError

START = datetime(2024, 6, 1, tzinfo=UTC)


def spec(**over):
    base = {"name": "hybrid-vs-pop", "unit": "user", "primary_metric": "ctr",
            "secondary_metrics": ["conversion", "revenue_per_user"],
            "variants": [{"name": "control", "model": "models:/recomart_hybrid@champion", "weight": 50},
                         {"name": "treatment", "model": "models:/recomart_hybrid@challenger",
                          "weight": 50}],
            "started_at": START.isoformat(), "attribution_window_hours": 24}
    return {**base, **over}


# ---- definitions ---------------------------------------------------------------------------------
def test_create_list_stop_recreate_resalts(lake):
    exp = definitions.create(lake, spec(), now=START)
    assert exp.revision == 1 and exp.status == "running" and len(exp.salt) == 16
    assert [e.name for e in definitions.list_all(lake)] == ["hybrid-vs-pop"]
    assert definitions.load(lake, "hybrid-vs-pop") == exp
    with pytest.raises(ExperimentError, match="stop hybrid-vs-pop"):
        definitions.create(lake, spec(), now=START)
    definitions.stop(lake, "hybrid-vs-pop", "weights change")
    with pytest.raises(ExperimentError, match="already stopped"):
        definitions.stop(lake, "hybrid-vs-pop")
    weights = spec()["variants"]
    weights[1]["weight"] = 20
    again = definitions.create(lake, spec(variants=weights), now=START)
    assert again.revision == 2 and again.salt != exp.salt and again.weights["treatment"] == 20
    history = lake.path("experiments", "definitions", "_history", "hybrid-vs-pop.r1.json")
    assert lake.read_json(history)["status"] == "stopped"


@pytest.mark.parametrize("bad, message", [
    ({"name": "Bad Name"}, "name"),
    ({"primary_metric": "nps"}, "unknown metric"),
    ({"variants": [{"name": "control", "model": "hybrid@champion", "weight": 1},
                   {"name": "t", "model": "models:/x/3", "weight": 1}]}, "model reference"),
    ({"variants": [{"name": "a", "model": "models:/x/1", "weight": 1}]}, "at least 2"),
    ({"alpha": 1.5}, "alpha"),
])
def test_invalid_definitions_are_clear_errors(lake, bad, message):
    with pytest.raises(ExperimentError, match=message):
        definitions.create(lake, spec(**bad))
    assert definitions.list_all(lake) == []


def test_missing_experiment_names_the_known_ones(lake):
    definitions.create(lake, spec())
    with pytest.raises(ExperimentError, match="known: hybrid-vs-pop"):
        definitions.load(lake, "nope")


def test_model_reference_parts():
    v = definitions.Variant(name="t", model="models:/recomart_hybrid/7", weight=1)
    assert (v.registered_name, v.version, v.alias) == ("recomart_hybrid", 7, None)
    c = definitions.Variant(name="c", model="models:/recomart_hybrid@champion", weight=1)
    assert (c.registered_name, c.version, c.alias) == ("recomart_hybrid", None, "champion")


# ---- assignment ----------------------------------------------------------------------------------
def test_assignment_is_sticky_and_follows_the_weights(lake):
    w = spec()["variants"]
    w[0]["weight"], w[1]["weight"] = 80, 20
    exp = definitions.create(lake, spec(variants=w), now=START)  # a fixed salt: a fixed split
    first = [assignment.assign(exp, u) for u in range(20_000)]
    assert first == [assignment.assign(exp, u) for u in range(20_000)]  # pure and sticky
    counts = pd.Series([a.variant for a in first]).value_counts()
    _, p = stats.chisquare([counts["control"], counts["treatment"]], [16_000, 4_000])
    assert p > 0.001
    assert {a.probability for a in first if a.variant == "treatment"} == {0.2}
    assert {a.model for a in first if a.variant == "control"} == {"models:/recomart_hybrid@champion"}
    # a new salt reshuffles about half of the units (independent hashes)
    other = exp.model_copy(update={"salt": "0123456789abcdef"})
    moved = np.mean([assignment.assign(other, u).variant != a.variant
                     for u, a in zip(range(5000), first, strict=False)])
    assert 0.25 < moved < 0.40  # 2 * 0.8 * 0.2 = 0.32 expected


# ---- exposures and attribution -------------------------------------------------------------------
def _exposure(rid, user, variant, ts, items, offset, experiment="hybrid-vs-pop", prob=0.5):
    return {"request_id": rid, "ts": pd.Timestamp(ts, tz="UTC"), "route": "user", "user_id": user,
            "session_id": None, "model": "recomart_hybrid", "version": 1,
            "experiment": experiment, "variant": variant, "assignment_probability": prob,
            "items": [{"product_id": p, "position": i + 1, "score": 1.0, "reason": "batch"}
                      for i, p in enumerate(items)],
            "_kafka_partition": 0, "_kafka_offset": offset}


def _event(eid, user, product, kind, ts, rid=None, price=None):
    return {"event_id": eid, "user_id": user, "product_id": product, "event_type": kind,
            "session_id": f"s{user}", "timestamp": pd.Timestamp(ts, tz="UTC"), "price": price,
            "request_id": rid}


def _fixture():
    ex = pd.DataFrame([
        _exposure("r1", 1, "control", "2024-06-01 10:00", [11, 12, 13], 0),
        _exposure("r1", 1, "control", "2024-06-01 10:00", [11, 12, 13], 0),   # replay: dropped
        _exposure("r2", 2, "treatment", "2024-06-01 11:00", [21, 22], 1),
        _exposure("r2", 3, "treatment", "2024-06-01 11:05", [31], 2),          # duplicate rid
        _exposure("r3", 4, "bogus", "2024-06-01 12:00", [41], 3),              # unknown variant
        _exposure("r4", 5, "control", "2024-05-31 23:00", [51], 4),            # before start
        _exposure("r5", None, "control", "2024-06-01 13:00", [61], 5),         # no unit
        _exposure("r6", 6, "control", "2024-06-01 14:00", [61], 6, experiment=None),  # not ours
        _exposure("r7", 7, "treatment", "2024-06-02 09:00", [71, 72], 7),
        _exposure("r8", 1, "control", "2024-06-02 09:00", [12], 8),
    ])
    ev = pd.DataFrame([
        _event("e1", 1, 12, "view", "2024-06-01 10:01", rid="r1"),             # by request id
        _event("e2", 1, 12, "add_to_cart", "2024-06-01 10:02", rid="r1"),
        _event("e3", 1, 12, "purchase", "2024-06-01 10:05", rid="r1", price=20.0),
        _event("e3", 1, 12, "purchase", "2024-06-01 10:05", rid="r1", price=20.0),  # dup event
        _event("e4", 2, 21, "view", "2024-06-01 12:00"),                       # by window
        _event("e5", 2, 22, "view", "2024-06-03 12:00"),                       # window passed
        _event("e6", 7, 99, "view", "2024-06-02 09:30"),                       # not shown
        _event("e7", 7, 71, "view", "2024-06-02 08:00"),                       # before the list
        _event("e8", 1, 12, "view", "2024-06-02 10:00"),                       # newest list r8
    ])
    return ex, ev


def test_quarantine_reasons_and_reconciliation(lake):
    exp = definitions.create(lake, spec())
    ex, _ = _fixture()
    valid, bad, rec = outcomes.validate_exposures(ex, exp)
    assert sorted(valid["request_id"]) == ["r1", "r2", "r7", "r8"]
    assert dict(zip(bad["request_id"] + "/" + bad["user_id"].astype("Int64").astype("string").fillna("-"),
                    bad["reason"], strict=True)) == {
        "r2/3": "duplicate_request_id", "r3/4": "unknown_variant",
        "r4/5": "before_experiment_start", "r5/-": "missing_unit"}
    assert (rec.landed, rec.replays_dropped, rec.not_in_experiment, rec.in_experiment,
            rec.valid, rec.quarantined) == (10, 1, 1, 8, 4, 4)
    rec.check()


def test_attribution_by_request_id_then_window(lake):
    exp = definitions.create(lake, spec())
    ex, ev = _fixture()
    valid, _, rec = outcomes.validate_exposures(ex, exp)
    got = outcomes.attribute(valid, ev, exp, rec)
    assert dict(zip(got["event_id"], got["request_id"], strict=True)) == {
        "e1": "r1", "e2": "r1", "e3": "r1", "e4": "r2", "e8": "r8"}
    assert (rec.attributed_by_request_id, rec.attributed_by_window) == (3, 2)
    units = outcomes.unit_outcomes(valid, got, exp, rec).set_index("unit")
    assert units.loc[1, ["exposures", "clicked", "purchases", "revenue"]].tolist() == [2, 2, 1, 20.0]
    assert units.loc[1, "ctr"] == 1.0 and units.loc[7, "ctr"] == 0.0
    assert units.loc[2, "conversion"] == 0.0 and units.loc[1, "conversion"] == 1.0
    assert rec.units == 3


def _land(lake, ex, ev):
    import pyarrow as pa

    lake.write_parquet(lake.path("speed", "exposures", "date=2024-06-01", "x.parquet"),
                       pa.Table.from_pandas(ex, preserve_index=False))
    lake.write_parquet(lake.path("speed", "clickstream", "date=2024-06-01", "c.parquet"),
                       pa.Table.from_pandas(ev, preserve_index=False))


def test_analyse_experiments_writes_readout_and_quarantine(lake):
    definitions.create(lake, spec())
    ex, ev = _fixture()
    _land(lake, ex, ev)
    summary = run.analyse_experiments(lake, "2024-06-02", run_id="t1")
    s = summary["experiments"]["hybrid-vs-pop"]
    assert s["units"] == 3 and s["quarantined"] == 4
    readout = run.latest_readout(lake, "hybrid-vs-pop")
    assert readout["decision"] == "keep_running"
    assert {v["variant"]: v["exposures"] for v in readout["variants"]} == {"control": 2, "treatment": 2}
    q = lake.read_table("quarantine", "exposures")
    assert sorted(q["reason"]) == sorted(["duplicate_request_id", "unknown_variant",
                                          "before_experiment_start", "missing_unit"])
    run.analyse_experiments(lake, "2024-06-02", run_id="t2")  # re-run replaces, never duplicates
    assert len(lake.read_table("quarantine", "exposures")) == 4
    assert [d["day"] for d in readout["daily"]] == ["2024-06-01", "2024-06-02"]


def test_nothing_to_analyse_says_so(lake):
    with pytest.raises(run.NothingToAnalyse, match="no experiment is active"):
        run.analyse_experiments(lake, "2024-06-02")
    definitions.create(lake, spec())
    with pytest.raises(run.NothingToAnalyse, match="no exposures landed"):
        run.analyse_experiments(lake, "2024-06-02")


def test_session_experiment_and_exposures_after_stop(lake):
    exp = definitions.create(lake, spec(name="by-session", unit="session"))
    exp = definitions.stop(lake, "by-session", now=datetime(2024, 6, 2, tzinfo=UTC))
    ex = pd.DataFrame([
        {**_exposure("s1", None, "control", "2024-06-01 10:00", [5], 0, experiment="by-session"),
         "session_id": "sess-a"},
        {**_exposure("s2", 9, "treatment", "2024-06-01 11:00", [6], 1, experiment="by-session"),
         "session_id": None},                                                  # no session
        {**_exposure("s3", None, "control", "2024-06-03 10:00", [5], 2, experiment="by-session"),
         "session_id": "sess-b"},                                              # after the stop
    ])
    valid, bad, rec = outcomes.validate_exposures(ex, exp)
    assert list(valid["request_id"]) == ["s1"]
    assert dict(zip(bad["request_id"], bad["reason"], strict=True)) == {
        "s2": "missing_unit", "s3": "after_experiment_stop"}
    ev = pd.DataFrame([{**_event("x1", 0, 5, "view", "2024-06-01 10:10"), "session_id": "sess-a"}])
    got = outcomes.attribute(valid, ev, exp, rec)
    assert list(got["request_id"]) == ["s1"] and rec.attributed_by_window == 1


def test_logged_rewards_feed_the_off_policy_estimate(lake):
    from recomart.experiments import off_policy

    exp = definitions.create(lake, spec())
    ex, ev = _fixture()
    valid, _, rec = outcomes.validate_exposures(ex, exp)
    logged = off_policy.logged_rewards(valid, outcomes.attribute(valid, ev, exp, rec))
    assert logged["reward"].tolist() == [1.0, 1.0, 0.0, 1.0]  # r1, r2, r7, r8
    est = off_policy.estimate(logged, "control")
    # control lists r1, r8 clicked; propensity 0.5 each over 4 logged lists
    assert est.matched == 2 and est.ips == pytest.approx((1 / 0.5 + 1 / 0.5) / 4)
    assert est.snips == pytest.approx(1.0)
    with pytest.raises(Exception, match="explore first"):
        off_policy.estimate(logged, "nobody")
