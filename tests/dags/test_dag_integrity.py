"""Every DAG file imports cleanly, is documented and retried (deterministic errors fail fast), and
keeps heavy imports out of parsing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY = ["pandas", "pyarrow", "deltalake", "mlflow", "surprise", "xgboost", "great_expectations",
         "pandera", "matplotlib", "fpdf", "faust", "sklearn", "recomart.lake"]


def test_there_are_dags():
    assert {p.stem for p in DAG_FILES} >= {"recomart_batch"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_conventions(dagbag, path):
    dags = [d for d in dagbag.dags.values() if Path(d.fileloc).resolve() == path.resolve()]
    assert dags, f"{path.name} defines no DAG"
    for dag in dags:
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 80, f"{dag.dag_id} has no useful doc_md"
        assert dag.catchup is False
        for task in dag.tasks:
            assert task.owner == "recomart", f"{dag.dag_id}.{task.task_id} owner {task.owner}"
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"
            # transient faults are retried; PermanentError fails at once (no retries burnt)
            assert getattr(task.python_callable, "recomart_fail_fast", False), \
                f"{dag.dag_id}.{task.task_id} is not wrapped with recomart_tasks.fail_fast"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_has_no_heavy_top_level_imports(path):
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dagfile', {str(path)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{path.name} imports {loaded} at parse time; import them inside tasks"
