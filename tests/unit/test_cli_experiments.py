"""`recomart experiment ...` as a user types it (Typer's CliRunner, a fresh lake)."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from recomart.cli import app

runner = CliRunner()


def test_sample_size_prints_the_worked_example():
    out = runner.invoke(app, ["experiment", "sample-size", "--sigma", "15", "--effect", "0.7",
                              "--alpha", "0.05", "--power", "0.8", "--one-sided"])
    assert out.exit_code == 0 and out.stdout.strip().splitlines()[-1] == "5678"
    prop = runner.invoke(app, ["experiment", "sample-size", "--baseline-rate", "0.05",
                               "--relative-lift", "0.1"])
    assert prop.exit_code == 0 and prop.stdout.strip().splitlines()[-1] == "31231"
    bad = runner.invoke(app, ["experiment", "sample-size", "--sigma", "15"])
    assert bad.exit_code != 0


def test_create_show_stop_and_report(lake):
    created = runner.invoke(app, ["experiment", "create", "cli-test", "--weights", "70,30",
                                  "--start", "2024-06-01T00:00:00+00:00"])
    assert created.exit_code == 0, created.output
    again = runner.invoke(app, ["experiment", "create", "cli-test"])
    assert again.exit_code == 1 and "stop" in again.output
    shown = runner.invoke(app, ["experiment", "show", "cli-test", "--json"])
    assert '"weight": 70.0' in shown.stdout
    # no exposures yet: the report says where it looked and fails
    empty = runner.invoke(app, ["experiment", "report", "cli-test", "--date", "2024-06-02",
                                "--no-mlflow"])
    assert empty.exit_code == 1 and "no exposures landed" in empty.output
    from tests.unit.test_experiments import _exposure

    from recomart.experiments import definitions

    exp = definitions.load(lake, "cli-test")
    rows = [_exposure(f"r{i}", i, ("control" if i % 10 < 7 else "treatment"), "2024-06-01 10:00",
                      [1, 2], i, experiment="cli-test") for i in range(40)]
    lake.write_parquet(lake.path("speed", "exposures", "date=2024-06-01", "x.parquet"),
                       pd.DataFrame(rows))
    report = runner.invoke(app, ["experiment", "report", exp.name, "--date", "2024-06-02",
                                 "--no-mlflow"])
    assert report.exit_code == 0, report.output
    assert "decision: keep_running" in report.output and "SRM" in report.output
    stopped = runner.invoke(app, ["experiment", "stop", "cli-test"])
    assert stopped.exit_code == 0
    listed = runner.invoke(app, ["experiment", "list"], env={"COLUMNS": "250"})
    assert "stopped" in listed.output
