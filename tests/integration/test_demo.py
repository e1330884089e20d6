"""The README's main command, `recomart demo`, runs end to end and prints where its outputs are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recomart.processes import stop_group

pytestmark = pytest.mark.slow


def test_demo_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "RECOMART_", "OPENLINEAGE"))}
    env.update({"RECOMART_LAKE_ROOT": str(tmp_path / "lake"),
                "AIRFLOW_HOME": str(tmp_path / "airflow"), "COLUMNS": "200"})
    exe = Path(sys.executable).parent / "recomart"
    proc = subprocess.Popen(
        [str(exe), "demo", "--users", "600", "--products", "120", "--days", "20",
         "--stream-events", "2000", "--source-dir", str(tmp_path / "src")],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:  # below pytest's own timeout, so a hung demo is stopped (with its broker) by us
        out, _ = proc.communicate(timeout=780)
    finally:
        stop_group(proc, signal.SIGTERM, timeout=60)
    assert proc.returncode == 0, out[-4000:]

    lake = tmp_path / "lake"
    # the demo's date, today (UTC); the experiment's readout adds the next date's folder when
    # midnight passes during the demo
    run_dir = min((lake / "reports").glob("ds=*"))
    for path in (run_dir / "data_quality.pdf", run_dir / "eda.pdf", lake / "serving/latest.json",
                 lake / "lineage/events/events.jsonl"):
        assert path.exists(), path
        assert str(path) in out, f"{path} not printed"

    summary = json.loads((run_dir / "validation_summary.json").read_text())
    for name, d in summary["datasets"].items():
        assert d["rows_in"] == d["curated"] + d["quarantined"], name
    # the streamed burst landed and went through the batch merge into curated clickstream
    assert "valid events landed" in out and "dead-letter" in out
    speed_rows = [i for i in summary["datasets"]["clickstream"]["inputs"] if i["source"] == "speed"]
    assert speed_rows and speed_rows[0]["rows"] > 0, summary["datasets"]["clickstream"]["inputs"]
    # the serving API's before/after: the streamed purchase and views changed the user's list
    assert "serving API (http://127.0.0.1:" in out and "fresh events" in out, out[-3000:]
    assert "similar_to_recent" in out and "The API was stopped" in " ".join(out.split())
    latest = json.loads((lake / "serving/latest.json").read_text())
    assert latest["version"] >= 1 and f"champion: recomart_hybrid v{latest['version']}" in out

    # the simulated A/B experiment went through the serving API, Kafka and the experiments DAG
    assert "simulated shoppers:" in out and "SRM:" in out and "decision: " in out
    exp_dir = lake / "experiments" / "demo-champion-vs-challenger"
    (readout,) = exp_dir.glob("r*/ds=*/readout.json")
    rec = json.loads(readout.read_text())["reconciliation"]
    assert rec["valid"] > 0 and rec["events_attributed"] > 0
    assert (readout.parent / "readout.pdf").exists()

    # lineage of what applications read goes all the way back to the raw files and their checksums
    lineage = subprocess.run([str(exe), "lineage", "serving/recomart_hybrid"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert lineage.returncode == 0, lineage.stderr
    tree = " ".join(lineage.stdout.split())
    for task in ("recomart_training.train_and_evaluate", "recomart_batch.build_features",
                 "recomart_batch.validate", "recomart_batch.ingest_csv"):
        assert task in tree, task
    manifest = json.loads(next((lake / "raw/csv/ratings").glob("ds=*/_manifest.json")).read_text())
    assert manifest["sha256"] in tree
