"""The demo's experiment act: a short A/B test through the real loop.

After the batch and training runs, a second training run (content-only candidates, no tuning:
a deliberately different hybrid) registers v2 as ``@challenger``; that run has gated promotion
on, so the champion cannot move before the experiment has been read. An experiment splits users
50/50 between ``@champion`` and ``@challenger``; the serving API (with the broker, the online
store and the Faust worker) serves each user its arm's published lists and logs every exposure
to Kafka; simulated shoppers whose true preferences are the generator's latent affinities click
and buy and POST their events (with ``request_id``); once everything has landed the
``recomart_experiments`` DAG runs through Airflow and the readout is returned for printing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recomart.errors import TransientError
from recomart.lake import Lake
from recomart.processes import wait_until

NAME = "demo-champion-vs-challenger"
CHALLENGER_PARAMS = {"tune": False, "candidates": {"content": 5}}


class ExperimentDemoError(TransientError):
    """The serving stack did not come up, or the simulated traffic never landed."""


def _wait(cond: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None,
          log: Path | None = None) -> None:
    wait_until(cond, timeout, what, proc=proc, log=log, error=ExperimentDemoError)


def make_challenger(ds: str, env: dict[str, str], step: Callable[[str], None]) -> int:
    """Train a second, different hybrid for ``ds`` and give it ``@challenger``.

    The run has gated promotion on (``RECOMART_EXPERIMENT_GATED_PROMOTION``): on a small shop the
    content-only model can beat the champion offline, and an ungated run would then make it the
    champion, leaving the experiment nothing to compare. Gated, an offline win only earns
    ``@challenger``; ``@champion`` and ``serving/latest.json`` stay until the experiment decides.
    """
    from recomart import registry
    from recomart.airflow_env import run_dag
    from recomart.orchestration import TRAINING_DAG_ID

    step(f"training a challenger (content-only hybrid) through {TRAINING_DAG_ID}")
    before = registry.version_for_alias(registry.HYBRID_MODEL, registry.CHAMPION)
    run_dag(TRAINING_DAG_ID, ds, env={**env, "RECOMART_EXPERIMENT_GATED_PROMOTION": "true"},
            conf={"force_model_params": CHALLENGER_PARAMS})
    champion = registry.version_for_alias(registry.HYBRID_MODEL, registry.CHAMPION)
    if champion != before:  # gated promotion never moves an existing champion
        raise ExperimentDemoError(f"the challenger run moved @champion from v{before} to "
                                  f"v{champion}")
    versions = [v["version"] for v in registry.list_versions(registry.HYBRID_MODEL)]
    challenger = max(v for v in versions if v != champion)
    registry.set_alias(registry.HYBRID_MODEL, "challenger", challenger)
    return challenger


def start_experiment(lake: Lake) -> Any:
    from recomart.experiments import definitions

    try:
        current = definitions.load(lake, NAME)
        if current.status == "running":
            definitions.stop(lake, NAME, "demo re-run")
    except definitions.ExperimentError:
        pass
    return definitions.create(lake, {
        "name": NAME, "unit": "user", "primary_metric": "ctr",
        "secondary_metrics": ["conversion", "revenue_per_user"], "mde": 0.1,
        "attribution_window_hours": 1,
        "description": "make demo: the champion against a content-only challenger",
        "variants": [{"name": "control", "model": "models:/recomart_hybrid@champion", "weight": 1},
                     {"name": "treatment", "model": "models:/recomart_hybrid@challenger",
                      "weight": 1}]})


@contextmanager
def serving_stack(env: dict[str, str], logs: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """The serving demo's live stack, labelled ``experiment``; yields the API's base URL and
    ``[worker, api]``."""
    from recomart.serving.demo import live_stack

    with live_stack(env, logs, "experiment") as live:
        yield live.base, live.procs


def drive_and_land(lake: Lake, base: str, shop: Any, experiment: str, procs: list[subprocess.Popen],
                   logs: Path, step: Callable[[str], None], *, visits: int, users: list[int],
                   seed: int) -> dict[str, Any]:
    """Wait until the API serves ``experiment``, run the shoppers, wait until their exposures and
    events have landed in the lake. Returns the driver's counts."""
    import httpx

    from recomart.experiments import run, simulator

    def ready() -> bool:
        try:
            body = httpx.get(f"{base}/readyz", timeout=5).json()
        except httpx.HTTPError:  # not listening yet
            return False
        return bool(body.get("ready")) and any(
            e["name"] == experiment for e in (body.get("experiments") or {}).get("active", []))

    _wait(ready, 90, "the API to serve the experiment", procs[1], logs / "serving_api_experiment.log")
    before_ex = len(run.read_exposures(lake))
    before_ev = _landed_events_with_request_id(lake)
    step(f"{visits} simulated shopper visits against {base} (events via POST /v1/events)")
    drive = simulator.drive_http(base, shop, users=users, visits=visits, seed=seed)
    if drive.failures:
        raise ExperimentDemoError(f"{drive.failures} simulated requests failed")
    step(f"waiting for the worker to land {drive.requests} exposures and {drive.events_sent} events")
    _wait(lambda: len(run.read_exposures(lake)) - before_ex >= drive.requests, 120,
          "the exposures to land", procs[0], logs / "faust_worker_experiment.log")
    _wait(lambda: _landed_events_with_request_id(lake) - before_ev >= drive.events_sent, 120,
          "the shoppers' events to land", procs[0], logs / "faust_worker_experiment.log")
    return dict(drive.__dict__)


def experiment_demo(ds: str, env: dict[str, str], logs: Path, step: Callable[[str], None], *,
                    shop_users: int, shop_products: int, shop_days: int, seed: int,
                    end_date: Any, visits: int = 1500) -> dict[str, Any]:
    from recomart.airflow_env import run_dag
    from recomart.experiments import run, simulator

    lake = Lake()
    challenger = make_challenger(ds, env, step)
    exp = start_experiment(lake)
    step(f"experiment {exp.name} r{exp.revision}: @champion vs @challenger (v{challenger}), 50/50 "
         "by user")
    shop = simulator.Shop.from_generator(shop_users, shop_products, shop_days, seed=seed,
                                         end_date=end_date)
    with serving_stack(env, logs) as (base, procs):
        drive = drive_and_land(lake, base, shop, NAME, procs, logs, step, visits=visits,
                               users=list(range(1, shop_users + 1)), seed=seed)
    # The shoppers came now: their exposures carry today's date (UTC), whatever date the batch
    # ran for (`--date` in the past, or midnight passed during the demo), and a readout counts
    # exposures up to the end of its date only.
    readout_ds = datetime.now(UTC).date().isoformat()
    if readout_ds != ds:
        step(f"the shoppers came on {readout_ds} (UTC), not on the batch's {ds}: the experiment "
             f"is read out for {readout_ds}")
    step(f"running DAG recomart_experiments for {readout_ds} through Airflow")
    run_dag("recomart_experiments", readout_ds, env=env, conf={"experiments": [NAME]})
    return {"drive": drive, "readout": run.latest_readout(lake, NAME)}


def _landed_events_with_request_id(lake: Lake) -> int:
    import pandas as pd

    from recomart.experiments.run import read_events

    events = read_events(lake, pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC"))
    return int(events["request_id"].notna().sum()) if "request_id" in events.columns else 0
