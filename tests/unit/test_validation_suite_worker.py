"""The GX suites in a child process (``recomart.validation.suite_worker``): the same checks and
Data Docs as in-process on the same input, on both lake backends; a child that crashes, fails or
hangs fails the validation with a clear error, loses nothing and is never left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from recomart.ingestion import ingest_csv_sources
from recomart.lake import Lake
from recomart.processes import group_members
from recomart.validation import validate_all
from recomart.validation.gate import summary_path
from recomart.validation.history import read_history
from recomart.validation.suite_worker import ChildSuites, SuiteWorkerError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bad_input" / "rows"
DS = "2024-05-01"
SUITES = {f"great_expectations:{n}.{p}" for n in ("users", "products", "orders", "ratings", "clickstream")
          for p in ("sample", "volume")}


def _validate(lake: Lake, **kwargs) -> dict:
    ingest_csv_sources(lake, DS, FIXTURE)
    return validate_all(lake, DS, "t1", threshold=0.5, gx_sample_rows=3, **kwargs)


def _gx_checks(summary: dict) -> list[dict]:
    return [c for d in summary["datasets"].values() for c in d["checks"]
            if c["suite"].startswith("great_expectations")]


def _docs(lake: Lake) -> tuple[list[str], list[str]]:
    """The Data Docs' suite pages and validation-result pages (their folders hold run times)."""
    base = lake.path("reports", f"ds={DS}", "gx_data_docs")
    pages = lake.glob(base / "expectations", "**/*.html")
    suites = sorted(str(p).rsplit("/expectations/", 1)[1] for p in pages)
    return suites, sorted(p.name for p in lake.glob(base / "validations", "**/*.html"))


def test_child_process_gives_the_in_process_result(any_lake, tmp_path):
    reference = Lake(tmp_path / "in_process")
    expected = _validate(reference, gx_in_process=True)
    summary = _validate(any_lake)

    checks = _gx_checks(summary)
    assert {c["suite"] for c in checks} == SUITES
    assert any(c["passed"] for c in checks) and not all(c["passed"] for c in checks)  # a real mix
    assert summary["datasets"] == expected["datasets"]  # every check, count, status and version
    assert summary["status"] == expected["status"]
    assert summary["gx_data_docs"] == expected["gx_data_docs"]
    suites, results = _docs(any_lake)
    assert (suites, results) == _docs(reference)
    assert suites == sorted(f"{s.split(':')[1].replace('.', '/')}.html" for s in SUITES)
    assert results == sorted(f"recomart-{s.split(':')[1]}.html" for s in SUITES)
    # the child writes the pages dataset by dataset and the index last: it links every result
    index = any_lake.read_text(any_lake.path("reports", f"ds={DS}", "gx_data_docs", "index.html"))
    for suite in SUITES:
        assert f"{suite.split(':')[1].replace('.', '/')}.html" in index, suite
    assert index.count("recomart-") == reference.read_text(reference.path(
        "reports", f"ds={DS}", "gx_data_docs", "index.html")).count("recomart-") >= len(SUITES)


class _KilledOnOrders(ChildSuites):
    """A child that dies (as under the OOM killer) while the parent still validates."""

    def add(self, name, inp):
        if name == "orders":
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        super().add(name, inp)


def test_a_killed_child_fails_the_validation_and_loses_nothing(lake):
    from recomart.validation.run import validate_all as run_validate_all

    ingest_csv_sources(lake, DS, FIXTURE)
    suites = _KilledOnOrders()
    with pytest.raises(SuiteWorkerError, match=r"GX suites child process exited before 'dataset' "
                                               r"\(killed by SIGKILL\)"):
        run_validate_all(lake, DS, "t1", threshold=0.5, gx_sample_rows=3, suites=suites)
    assert suites.proc.poll() is not None and not group_members(suites.proc.pid)
    assert not suites.work.exists()
    assert not summary_path(lake, DS).exists() and read_history(lake) == []
    reports = lake.path("reports", f"ds={DS}")
    assert not lake.iterdir(reports)  # no Data Docs, no half-built docs folder
    # the raw landing is untouched: the same validation then succeeds
    summary = validate_all(lake, DS, "t2", threshold=0.5, gx_sample_rows=3)
    assert {c["suite"] for c in _gx_checks(summary)} == SUITES


def test_an_error_in_the_child_carries_its_traceback(tmp_path):
    with ChildSuites() as suites:
        suites.begin({"users": frozenset()}, {}, pd.Timestamp("2024-05-02", tz="UTC"), tmp_path / "docs")
        suites._send({"op": "dataset", "name": "users", "rows": 1, "volume": None,
                      "sample": str(tmp_path / "missing.arrow")})
        with pytest.raises(SuiteWorkerError) as err:
            suites.finish()
            suites.checks()
        proc = suites.proc
    message = str(err.value)
    assert "exit status 1" in message and "missing.arrow" in message, message
    assert "Traceback" in message
    assert proc.poll() is not None and not group_members(proc.pid)


def test_a_child_that_gives_no_result_in_time_is_stopped(tmp_path):
    with ChildSuites(timeout=0.2) as suites:
        suites.begin({}, {}, pd.Timestamp("2024-05-02", tz="UTC"), tmp_path / "docs")
        suites.finish()
        with pytest.raises(SuiteWorkerError, match=r"gave no result within 0s and was stopped"):
            suites.checks()
        assert suites.proc.poll() is not None and not group_members(suites.proc.pid)


PARENT = """
import os, signal, sys
import pandas as pd
from recomart.validation.suite_worker import ChildSuites
suites = ChildSuites()
suites.begin({}, {}, pd.Timestamp("2024-05-02", tz="UTC"), sys.argv[1])
print(suites.proc.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no finally, no clean-up: only the closed pipe tells the child
"""


def test_the_child_exits_when_the_validating_process_dies(tmp_path):
    out = subprocess.run([sys.executable, "-c", PARENT, str(tmp_path / "docs")], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert out.returncode == -signal.SIGKILL, out.stderr
    child = int(out.stdout.split()[0])
    deadline = time.monotonic() + 120  # it finishes importing GX first, then reads EOF
    while group_members(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = group_members(child)
    if alive:  # do not leave it behind whatever the outcome
        os.killpg(child, signal.SIGKILL)
    assert not alive
