"""Run a DAG through Airflow's own ``dag.test()`` from a test and check every task succeeded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    assert dag_id in bag.dags, f"no DAG {dag_id} in {sorted(bag.dags)}"
    return bag.dags[dag_id]


def run_dag(dag_id: str, logical_date: datetime | str, conf: dict | None = None):
    """Returns the finished DagRun; fails the test with each failed task's id when any fails."""
    if isinstance(logical_date, str):
        logical_date = datetime.fromisoformat(logical_date)
    if logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=UTC)
    dag = load_dag(dag_id)
    dagrun = dag.test(logical_date=logical_date, run_conf=conf)
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    failed = {t: s for t, s in states.items() if s != "success"}
    assert dagrun.state == "success" and not failed, f"{dag_id} tasks not successful: {failed}"
    return dagrun
