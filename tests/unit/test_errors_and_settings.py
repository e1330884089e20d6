"""The error hierarchy's contract with the DAG layer, and settings that follow the demo's lake."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from recomart.config import LOCAL_SOURCES, Settings
from recomart.errors import PermanentError, TransientError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))


def test_permanent_errors_fail_the_task_at_once_and_transient_ones_keep_their_retries():
    from airflow.sdk.exceptions import AirflowFailException
    from recomart_tasks import fail_fast

    from recomart.ingestion.landing import RawLandingConflict, SourceChangedError

    @fail_fast
    def stage(exc: Exception) -> None:
        raise exc

    with pytest.raises(AirflowFailException, match=r"RawLandingConflict: same date.*not retried"):
        stage(RawLandingConflict("same date, other bytes"))
    with pytest.raises(SourceChangedError):  # not mapped: Airflow retries it
        stage(SourceChangedError("file changed while copying"))
    assert issubclass(SourceChangedError, TransientError)
    for name in ("recomart.ingestion.csv_sources:SourceMissingError",
                 "recomart.validation.gate:DataQualityError",
                 "recomart.curated:NothingPublishedError"):
        module, cls = name.split(":")
        assert issubclass(getattr(__import__(module, fromlist=[cls]), cls), PermanentError), name


def test_settings_follow_the_source_folder_the_demo_left_in_the_lake(tmp_path, monkeypatch):
    lake, shop = tmp_path / "lake", tmp_path / "shop"
    shop.mkdir()
    monkeypatch.setenv("RECOMART_LAKE_ROOT", str(lake))
    monkeypatch.delenv("RECOMART_SOURCE_DIR", raising=False)
    default = Settings().source_dir
    (lake / "state").mkdir(parents=True)
    (lake / "state" / LOCAL_SOURCES).write_text(json.dumps({"source_dir": str(shop)}))
    assert Settings().source_dir == shop.resolve() != default
    monkeypatch.setenv("RECOMART_SOURCE_DIR", str(tmp_path))  # an explicit setting still wins
    assert Settings().source_dir == tmp_path.resolve()


def test_relative_lake_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECOMART_LAKE_ROOT", "relative/lake")
    assert Settings().lake_root == tmp_path / "relative" / "lake"
