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


def run_dag_states(dag_id: str, logical_date: datetime | str, conf: dict | None = None):
    """Run the DAG with ``dag.test()``; returns the DagRun and ``{task_id: (state, try_number)}``."""
    if isinstance(logical_date, str):
        logical_date = datetime.fromisoformat(logical_date)
    if logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=UTC)
    dag = load_dag(dag_id)
    dagrun = dag.test(logical_date=logical_date, run_conf=conf)
    states = {ti.task_id: (str(ti.state), ti.try_number) for ti in dagrun.get_task_instances()}
    return dagrun, states


def run_dag(dag_id: str, logical_date: datetime | str, conf: dict | None = None):
    """Returns the finished DagRun; fails the test unless every task of the DAG ran and succeeded
    (a run with no task instances is "successful" to Airflow, and proves nothing)."""
    dagrun, states = run_dag_states(dag_id, logical_date, conf)
    expected = set(load_dag(dag_id).task_ids)
    failed = {t: s for t, (s, _) in states.items() if s != "success"}
    missing = expected - set(states)
    assert dagrun.state == "success" and not failed and not missing, \
        f"{dag_id}: tasks not successful {failed}, never created {sorted(missing)}"
    return dagrun


def assert_no_second_run(runs: list[dict], run_id: str, triggered_at: datetime) -> None:
    """The run we triggered (at ``triggered_at``) for the date the schedule would run next is the
    DAG's only run: the scheduler made no run of its own for a date already due. The one run
    allowed besides it is a scheduled one for a date after the trigger: midnight UTC passed
    while the test ran, and the daily schedule rightly started the next day."""
    ours = [r for r in runs if r["dag_run_id"] == run_id]
    assert ours, f"run {run_id} is not among {[r['dag_run_id'] for r in runs]}"
    late = [r for r in runs if r["dag_run_id"] != run_id and not (
        r["run_type"] == "scheduled" and datetime.fromisoformat(r["logical_date"]) > triggered_at)]
    assert not late, (f"runs besides {run_id} ({ours[0]['logical_date']}): "
                      f"{[(r['dag_run_id'], r['run_type'], r['logical_date']) for r in late]}")
