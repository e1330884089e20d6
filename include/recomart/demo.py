"""`recomart demo`: the whole pipeline end to end on the embedded default.

Generates a shop, serves its catalog over HTTP, starts the embedded Kafka-protocol broker and the
Faust worker, streams a burst of clickstream (with some malformed messages) into the speed zone,
then runs the batch DAG and the training DAG through Airflow itself (`airflow dags test`), and
ends with the serving API: one user's recommendations before and after a few events streamed
through Kafka (``recomart.serving.demo``). Prints where every output is. Re-running it is safe:
every stage is idempotent for its date.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from recomart.airflow_env import airflow_env, run_dag
from recomart.config import get_settings, project_root
from recomart.lake import Lake
from recomart.orchestration import BATCH_DAG_ID, TRAINING_DAG_ID
from recomart.processes import stop_group, wait_until

log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    users: int = 3000
    products: int = 600
    days: int = 60
    stream_events: int = 5000
    malformed_share: float = 0.01
    consumables: float = 0.3  # a share of re-bought categories, so the buy-again path is exercised
    ds: str = field(default_factory=lambda: datetime.now(UTC).date().isoformat())
    source_dir: Path | None = None
    with_stream: bool = True
    with_serving: bool = True
    with_experiment: bool = True
    experiment_visits: int = 1500


Step = Callable[[str], None]


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.5) -> None:
    wait_until(predicate, timeout, what, poll=poll)


def _stream_burst(opts: DemoOptions, src: Path, env: dict[str, str], step: Step) -> dict:
    """Broker + Faust worker + producer; returns the producer's counts once all have landed."""
    from recomart.streaming.broker import EmbeddedBroker
    from recomart.streaming.producer import produce
    from recomart.streaming.sink import count_landed_events

    settings = get_settings()
    lake = Lake()
    with ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap
        if not bootstrap:
            step("starting the embedded Kafka-protocol broker")
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap
        env = {**env, "RECOMART_KAFKA_BOOTSTRAP": bootstrap}
        worker_log = src.parent / "faust_worker.log"
        step(f"starting the Faust worker (bootstrap {bootstrap}, log {worker_log})")
        log_fh = stack.enter_context(open(worker_log, "ab"))
        worker = subprocess.Popen([str(Path(sys.executable).parent / "recomart"), "stream", "worker"],
                                  env=env, start_new_session=True, stdout=log_fh,
                                  stderr=subprocess.STDOUT)
        stack.callback(stop_group, worker)
        before = count_landed_events(lake)
        rate = max(1000, opts.stream_events // 5)
        step(f"producing {opts.stream_events} clickstream events ({opts.malformed_share:.0%} malformed)")
        sent = produce(bootstrap, settings.clickstream_topic, rate=rate,
                       duration=opts.stream_events / rate, malformed_share=opts.malformed_share,
                       source="generated", seed=settings.seed, source_path=src,
                       count=opts.stream_events)
        step(f"waiting for the worker to land {sent.valid} valid events in the speed zone")
        _wait_for(lambda: count_landed_events(lake) - before >= sent.valid, 180,
                  "the Faust worker to land the burst")
        counts = sent.summary()
        return {"bootstrap": bootstrap, **counts}


def run_demo(opts: DemoOptions, step: Step = log.info) -> dict:
    from recomart.sources.catalog_api import create_app, serve_in_background
    from recomart.sources.generator import generate

    lake = Lake()
    src = opts.source_dir or project_root() / ".demo" / "source_data"
    end = date.fromisoformat(opts.ds)
    step(f"generating a shop: {opts.users} users, {opts.products} products, {opts.days} days -> {src}")
    generated = generate(src, users=opts.users, products=opts.products, days=opts.days,
                         seed=get_settings().seed, end_date=end, consumables=opts.consumables)
    result: dict = {"ds": opts.ds, "source_dir": str(src), "generated": generated}
    remember_source_dir(lake, src)
    with serve_in_background(create_app(src / "products.csv")) as catalog_url:
        step(f"catalog API serving {opts.products} products at {catalog_url}")
        env = airflow_env({"RECOMART_SOURCE_DIR": str(src), "RECOMART_CATALOG_API_URL": catalog_url})
        if opts.with_stream:
            result["stream"] = _stream_burst(opts, src, env, step)
        step(f"running DAG {BATCH_DAG_ID} for {opts.ds} through Airflow")
        run_dag(BATCH_DAG_ID, opts.ds, env=env)
    step(f"running DAG {TRAINING_DAG_ID} for {opts.ds} through Airflow")
    run_dag(TRAINING_DAG_ID, opts.ds, env=env)
    result["outputs"] = outputs(lake, opts.ds)
    result["validation"] = lake.read_json(lake.path("reports", f"ds={opts.ds}", "validation_summary.json"))
    latest = lake.path("serving", "latest.json")
    result["champion"] = lake.read_json(latest) if latest.exists() else None
    if opts.with_serving and result["champion"]:
        from recomart.serving.demo import serving_demo

        result["serving"] = serving_demo(env, src.parent, step)
    if opts.with_experiment and result["champion"]:
        from recomart.experiments.demo import experiment_demo

        result["experiment"] = experiment_demo(
            opts.ds, env, src.parent, step, shop_users=opts.users, shop_products=opts.products,
            shop_days=opts.days, seed=get_settings().seed, end_date=end,
            visits=opts.experiment_visits)
    return result


def remember_source_dir(lake: Lake, src: Path) -> None:
    """Make the demo's shop this lake's default source folder (see ``Settings``), so a later
    `make ui` or `recomart run` without RECOMART_SOURCE_DIR ingests the same files."""
    from recomart.config import LOCAL_SOURCES, reset_settings

    lake.write_json(lake.path("state", LOCAL_SOURCES),
                    {"source_dir": str(Path(src).resolve()), "written_by": "recomart demo",
                     "at": datetime.now(UTC).isoformat(timespec="seconds")})
    reset_settings()


def outputs(lake: Lake, ds: str) -> dict[str, str]:
    """Where a user finds each output of the run for ``ds`` (only those that exist)."""
    candidates = {
        "data-quality report (PDF)": lake.path("reports", f"ds={ds}", "data_quality.pdf"),
        "EDA report (PDF)": lake.path("reports", f"ds={ds}", "eda.pdf"),
        "Great Expectations Data Docs": lake.path("reports", f"ds={ds}", "gx_data_docs", "index.html"),
        "validation summary": lake.path("reports", f"ds={ds}", "validation_summary.json"),
        "raw zone": lake.path("raw"),
        "curated tables (Delta)": lake.path("curated"),
        "quarantine (Delta)": lake.path("quarantine"),
        "speed zone": lake.path("speed"),
        "feature store": lake.path("features"),
        "lineage events (OpenLineage)": lake.path("lineage", "events", "events.jsonl"),
        "published recommendations": lake.path("serving", "latest.json"),
        "MLflow store": lake.path("mlflow"),
    }
    return {name: str(path) for name, path in candidates.items() if path.exists()}
