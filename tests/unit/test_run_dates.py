"""Which day a run covers (``recomart.orchestration.resolve_ds``), checked against Airflow's own
timetable for ``@daily`` so the rule cannot drift from what the scheduler really does."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from recomart.orchestration import context_ds, resolve_ds


def test_a_scheduled_daily_run_covers_the_day_that_just_ended(airflow_db):
    from airflow.serialization.encoders import coerce_to_core_timetable
    from tests.airflow_helpers import load_dag

    # what the scheduler does with the DAG's schedule: the next run after 2024-05-01 13:00
    timetable = coerce_to_core_timetable(load_dag("recomart_batch").timetable)
    info = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=_restriction(datetime(2024, 5, 1, 13, tzinfo=UTC)))
    assert info.logical_date == datetime(2024, 5, 2, tzinfo=UTC)  # the fire time, not the day
    ds = resolve_ds(run_type="scheduled", logical_date=info.logical_date,
                    data_interval_end=info.data_interval.end, run_after=info.run_after)
    assert ds == "2024-05-01"


def _restriction(earliest: datetime):
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=earliest, latest=None, catchup=True)


def test_a_manual_run_covers_its_logical_date():
    assert resolve_ds(run_type="manual", logical_date=datetime(2017, 6, 30, tzinfo=UTC),
                      data_interval_end=datetime(2017, 6, 30, tzinfo=UTC)) == "2017-06-30"
    assert resolve_ds(run_type="DagRunType.MANUAL", logical_date=None,
                      run_after=datetime(2024, 5, 3, 9, tzinfo=UTC)) == "2024-05-03"


def test_an_asset_triggered_run_takes_the_latest_event_date():
    extras = [{"ds": "2024-05-01", "version": 3}, {"ds": "2024-05-02"}, {"ds": "2024-04-30"}, {}]
    assert resolve_ds(run_type="asset_triggered", event_extras=extras,
                      run_after=datetime(2024, 5, 9, tzinfo=UTC)) == "2024-05-02"


def test_conf_ds_wins_over_everything():
    assert resolve_ds(run_type="scheduled", logical_date=datetime(2024, 5, 2, tzinfo=UTC),
                      conf={"ds": "2020-01-31T00:00:00"}) == "2020-01-31"


def test_context_ds_reads_an_airflow_context_and_its_asset_events():
    event = lambda ds: SimpleNamespace(extra={"ds": ds})  # noqa: E731
    ctx = {"dag_run": SimpleNamespace(run_type="asset_triggered", conf={}, run_after=None,
                                      logical_date=None, data_interval_end=None),
           "params": {"ds": None}, "logical_date": None,
           "triggering_asset_events": {"a": [event("2024-05-01")], "b": [event("2024-05-02")]}}
    assert context_ds(ctx) == "2024-05-02"
    ctx["params"] = {"ds": "2024-04-01"}
    assert context_ds(ctx) == "2024-04-01"


def test_no_date_at_all_is_an_error():
    with pytest.raises(ValueError, match="cannot tell which day"):
        resolve_ds(run_type="manual")
