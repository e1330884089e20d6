"""The bad-input fixture: every corrupted row is accounted for with its reason, nothing crashes,
and the quality gate names the datasets over the threshold."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from recomart.config import reset_settings
from recomart.ingestion import ingest_catalog, ingest_csv_sources
from recomart.lake import Lake
from recomart.tables import DATASETS
from recomart.validation import DataQualityError, quality_gate, validate_all

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bad_input"
DS = "2024-05-01"
FAULTS = {"http_500_pages": {2: 1}, "malformed_pages": [3], "always_500_pages": [4]}
API_ITEMS_OK, API_BAD_PAGES = 4, 2  # pages 1-2 arrive (2 after a retry), 3 malformed, 4 always 500

EXPECTED_ROW_REASONS = {
    "users": {"unparseable_int", "age_out_of_range", "unknown_gender", "duplicate_key", "null_key",
              "unparseable_date", "future_timestamp", "invalid_encoding", "malformed_row"},
    "products": {"negative_price", "unparseable_float", "duplicate_key", "null_value",
                 "malformed_row", "superseded_by_api", "malformed_json_page", "http_error_page"},
    "orders": {"dangling_user_id", "dangling_product_id", "quantity_not_positive", "negative_price",
               "unparseable_timestamp", "duplicate_key", "unparseable_int"},
    "ratings": {"rating_out_of_range", "duplicate_key", "future_timestamp", "dangling_user_id",
                "dangling_product_id", "null_key", "unparseable_timestamp"},
    "clickstream": {"unknown_event_type", "duplicate_key", "future_timestamp", "null_key",
                    "null_value", "negative_price", "dangling_user_id", "malformed_row"},
}


def data_lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines()[1:] if line.strip())


def _run(root: Path, src: Path, with_api: bool) -> tuple[Lake, dict]:
    lake = Lake(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECOMART_LAKE_ROOT", str(root))
        mp.setenv("RECOMART_CATALOG_PAGE_SIZE", "2")
        mp.setenv("RECOMART_HTTP_RETRIES", "1")
        reset_settings()
        ingest_csv_sources(lake, DS, src)
        if with_api:
            from recomart.sources.catalog_api import create_app, serve_in_background

            products = pd.read_csv(src / "catalog_api_products.csv")
            with serve_in_background(create_app(products, faults=FAULTS)) as url:
                ingest_catalog(lake, DS, url)
        summary = validate_all(lake, DS, "test__1", threshold=0.05, gx_sample_rows=1000)
        reset_settings()
    return lake, summary


@pytest.fixture(scope="module")
def rows_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("rows_lake"), FIXTURES / "rows", with_api=True)


@pytest.fixture(scope="module")
def files_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("files_lake"), FIXTURES / "files", with_api=False)


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_row_accounted_for(rows_run, name):
    lake, summary = rows_run
    d = summary["datasets"][name]
    expected_in = data_lines(FIXTURES / "rows" / f"{name}.csv")
    if name == "products":
        expected_in += API_ITEMS_OK + API_BAD_PAGES
    assert d["rows_in"] == expected_in
    assert d["rows_in"] == d["curated"] + d["quarantined"]
    assert len(lake.read_table("curated", name)) == d["curated"]
    quarantine = lake.read_table("quarantine", name)
    assert len(quarantine[quarantine["_ds"] == DS]) == d["quarantined"]
    assert sum(d["reasons"].values()) == d["quarantined"]


@pytest.mark.parametrize("name", list(DATASETS))
def test_each_expected_reason_present(rows_run, name):
    _, summary = rows_run
    assert set(summary["datasets"][name]["reasons"]) == EXPECTED_ROW_REASONS[name]


def test_curated_rows_are_the_clean_ones(rows_run):
    lake, _ = rows_run
    assert sorted(lake.read_table("curated", "users")["user_id"]) == [1, 2, 3, 4, 12, 13]
    products = lake.read_table("curated", "products").set_index("product_id")
    assert sorted(products.index) == [101, 102, 106, 107, 201, 203]
    assert products.loc[106, "_source"] == "catalog_api"  # the API wins over products.csv
    assert products.loc[101, "title"] == "Lamp"  # first occurrence kept
    clicks = lake.read_table("curated", "clickstream")
    assert sorted(clicks["event_id"]) == ["e1", "e10", "e2", "e3"]
    assert str(clicks["timestamp"].dtype) == "datetime64[us, UTC]"


def test_extra_column_and_checks_reported(rows_run):
    _, summary = rows_run
    checks = summary["datasets"]["products"]["checks"]
    assert any(c["check"] == "extra_column" and "color" in c["detail"] for c in checks)
    pandera = {(c["check"], c["column"]): c for c in checks if c["suite"] == "pandera"}
    assert pandera[("negative_price", "price")]["failed_rows"] == 2
    assert pandera[("negative_price", "price")]["passed"] is False
    assert any(c["suite"].startswith("great_expectations") for c in checks)


def test_superseded_rows_are_not_counted_as_bad(rows_run):
    _, summary = rows_run
    d = summary["datasets"]["products"]
    defects = d["quarantined"] - d["reasons"]["superseded_by_api"]
    assert d["bad_ratio"] == pytest.approx(defects / d["rows_in"], abs=1e-6)


def test_summary_history_and_docs_written(rows_run):
    lake, summary = rows_run
    saved = lake.read_json(lake.path("reports", f"ds={DS}", "validation_summary.json"))
    assert saved["datasets"].keys() == summary["datasets"].keys()
    assert saved["status"] == "fail"
    assert (lake.root / saved["gx_data_docs"]).is_file()
    history = lake.path("state", "validation_history.jsonl").read_text().splitlines()
    assert len(history) == 1


def test_gate_names_failing_datasets(rows_run):
    """Each failing dataset gets its own line naming its most frequent reasons with their counts.

    The gate lists the top three reasons of a dataset (ties in any order), so the expectation is
    derived from the quarantine table: every listed reason is one of the dataset's expected reasons
    with its true row count, and no unlisted reason is more frequent than a listed one.
    """
    lake, _ = rows_run
    with pytest.raises(DataQualityError) as err:
        quality_gate(lake, DS)
    lines = str(err.value).splitlines()[1:]
    by_name = dict(line.split(": ", 1) for line in lines)
    assert set(by_name) == set(DATASETS)  # every dataset of the fixture is over the threshold
    for name in DATASETS:
        quarantine = lake.read_table("quarantine", name)
        counts = quarantine.loc[quarantine["_ds"] == DS, "reason"].value_counts()
        listed = {r: int(n) for r, n in re.findall(r"(\w+) \((\d+)\)",
                                                   by_name[name].split("top reasons: ", 1)[1])}
        assert len(listed) == min(3, len(counts)), by_name[name]
        assert set(listed) <= EXPECTED_ROW_REASONS[name], name
        for reason, n in listed.items():
            assert counts[reason] == n, (name, reason)
        assert min(listed.values()) >= counts.drop(list(listed)).max(), name
    # where one reason clearly dominates, it is named
    assert "negative_price (2)" in by_name["products"]
    assert "rating_out_of_range (2)" in by_name["ratings"]


def test_rerun_is_idempotent(rows_run):
    lake, first = rows_run
    curated_before = {n: lake.read_table("curated", n) for n in DATASETS}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECOMART_LAKE_ROOT", str(lake.root))
        reset_settings()
        second = validate_all(lake, DS, "test__2", threshold=0.05, gx_sample_rows=1000)
        reset_settings()
    for name in DATASETS:  # a table is a set of rows: compare in key order
        key = list(DATASETS[name].key)
        after = lake.read_table("curated", name).sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(after, curated_before[name].sort_values(key, ignore_index=True))
        quarantine = lake.read_table("quarantine", name)
        assert len(quarantine) == first["datasets"][name]["quarantined"]
        assert set(quarantine["_run_id"]) == {"test__2"}
        assert second["datasets"][name]["reasons"] == first["datasets"][name]["reasons"]
    assert len(lake.path("state", "validation_history.jsonl").read_text().splitlines()) == 1


def test_file_level_faults_quarantine_whole_files(files_run):
    lake, summary = files_run
    d = summary["datasets"]
    assert d["orders"]["rows_in"] == 0 and d["orders"]["reasons"] == {}
    assert d["orders"]["inputs"][0]["file_errors"][0]["reason"] == "empty_file"
    assert d["orders"]["bad_ratio"] == 1.0
    for name, reason in (("ratings", "wrong_delimiter"), ("clickstream", "missing_column")):
        assert d[name]["rows_in"] == data_lines(FIXTURES / "files" / f"{name}.csv")
        assert d[name]["reasons"] == {reason: d[name]["rows_in"]}
        assert d[name]["curated"] == 0
        assert lake.read_table("quarantine", name)["raw_line"].notna().all()
    # users.csv is the one clean file: 3 rows, none quarantined (bad_ratio 0 <= 0.05), and every
    # check holds: region is null in 1 of 3 rows, within its GX `mostly` of 0.5, and a first run has
    # no volume baseline (row count >= 0). So exactly "pass"; a "warn" would be a GX regression.
    assert (d["users"]["status"], d["users"]["curated"], d["users"]["quarantined"]) == ("pass", 3, 0)
    assert [c["check"] for c in d["users"]["checks"] if not c["passed"]] == []
    with pytest.raises(DataQualityError) as err:
        quality_gate(lake, DS)
    msg = str(err.value)
    assert "orders:" in msg and "ratings:" in msg and "clickstream:" in msg
    assert "users:" not in msg and "products:" not in msg


def test_validation_order_changes_no_result(rows_run, tmp_path, monkeypatch):
    """The clickstream is validated third (its GX suite and Delta commit then overlap orders and
    ratings); in the summary's order, as before, every count, reason, check and row is the same."""
    from recomart.validation import run

    assert run.VALIDATION_ORDER != run.ORDER and set(run.VALIDATION_ORDER) == set(run.ORDER)
    lake, summary = rows_run
    monkeypatch.setattr(run, "VALIDATION_ORDER", run.ORDER)
    plain_lake, plain = _run(tmp_path / "summary_order", FIXTURES / "rows", with_api=True)
    assert list(summary["datasets"]) == list(plain["datasets"]) == list(run.ORDER)
    assert summary["datasets"] == plain["datasets"]
    for name in DATASETS:
        key = list(DATASETS[name].key)
        for zone in ("curated", "quarantine"):
            got, want = (x.read_table(zone, name).drop(columns=["_run_id"], errors="ignore")
                         for x in (lake, plain_lake))
            cols = key if zone == "curated" else sorted(got.columns, key=str)
            pd.testing.assert_frame_equal(got.sort_values(cols, ignore_index=True),
                                          want.sort_values(cols, ignore_index=True))
