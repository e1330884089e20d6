"""The analysts' PDF reports: the quality report from a real ``validate_all`` run on a small lake,
the EDA report from curated tables written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

DS = "2024-05-01"
RUN_ID = "manual__2024-05-01T00:00:00+00:00"


def _utc(days: np.ndarray, base: str = "2024-03-01") -> pd.Series:
    return pd.Series(pd.Timestamp(base, tz="UTC") + pd.to_timedelta(days, unit="s"))


def make_curated(seed: int = 7, users: int = 120, products: int = 60, clicks: int = 2500,
                 ratings: int = 500, orders: int = 300) -> dict[str, pd.DataFrame]:
    """Small but realistic curated tables: skewed popularity, tz-aware UTC timestamps."""
    rng = np.random.default_rng(seed)
    span = 60 * 86400
    pop = 1.0 / np.arange(1, products + 1) ** 1.1
    pop /= pop.sum()
    frames = {
        "users": pd.DataFrame({
            "user_id": np.arange(1, users + 1),
            "age": rng.integers(18, 70, users),
            "gender": rng.choice(["F", "M", "U"], users),
            "region": rng.choice(["north", "south", "east", "west"], users),
            "signup_date": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, users), "D"),
        }),
        "products": pd.DataFrame({
            "product_id": np.arange(1, products + 1),
            "title": [f"Product {i}" for i in range(1, products + 1)],
            "category": rng.choice(["Electronics", "Books", "Home & Kitchen", "Toys"], products),
            "subcategory": "misc",
            "brand": rng.choice(["Acme", "Globex", None], products),
            "price": np.round(rng.lognormal(3.0, 0.8, products), 2),
            "description": "A thing",
        }),
        "clickstream": pd.DataFrame({
            "event_id": [f"e{i}" for i in range(clicks)],
            "user_id": rng.integers(1, users + 1, clicks),
            "product_id": rng.choice(np.arange(1, products + 1), clicks, p=pop),
            "event_type": rng.choice(["view", "add_to_cart", "purchase"], clicks, p=[0.8, 0.15, 0.05]),
            "session_id": [f"s{i // 5}" for i in range(clicks)],
            "timestamp": _utc(rng.integers(0, span, clicks)),
            "price": rng.uniform(5, 100, clicks).round(2),
            "request_id": None,  # events served by the API carry one; batch exports do not
        }),
        "ratings": pd.DataFrame({
            "user_id": rng.integers(1, users + 1, ratings),
            "product_id": rng.choice(np.arange(1, products + 1), ratings, p=pop),
            "rating": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], ratings, p=[0.05, 0.1, 0.2, 0.35, 0.3]),
            "review": rng.choice(["great", None, "meh"], ratings),
            "timestamp": _utc(rng.integers(0, span, ratings)),
        }),
        "orders": pd.DataFrame({
            "order_id": rng.integers(1, orders // 2, orders),
            "user_id": rng.integers(1, users + 1, orders),
            "product_id": rng.choice(np.arange(1, products + 1), orders, p=pop),
            "quantity": rng.integers(1, 4, orders),
            "unit_price": rng.uniform(5, 100, orders).round(2),
            "timestamp": _utc(rng.integers(0, span, orders)),
        }),
    }
    for name, df in frames.items():
        df["_source"] = "csv"
        df["_ds"] = DS
        frames[name] = df
    return frames


QUARANTINE = {
    "ratings": [("rating_out_of_range", "rating 7.0 not in [0.5, 5]", {"rating": "7"}),
                ("rating_out_of_range", "rating -1 not in [0.5, 5]", {"rating": "-1"}),
                ("rating_out_of_range", "rating 9 not in [0.5, 5]", {"rating": "9"}),
                ("dangling_user_id", "user_id 99999 not in users", {"user_id": "99999"}),
                ("dangling_user_id", "user_id 88888 not in users", {"user_id": "88888"})],
    "clickstream": [("bad_timestamp", "cannot parse 'yesterday'", {"timestamp": "yesterday"}),
                    ("unknown_event_type", "event_type 'hover' not allowed", {"event_type": "hover"})],
}


def populate(lake, frames: dict[str, pd.DataFrame], *, history_runs: int = 3) -> dict:
    """Write curated/quarantine tables, raw files, a summary and a run history (for the EDA report,
    which reads curated tables at the summary's versions; the quality-report tests use a real
    ``validate_all`` summary instead, see ``validated_lake``)."""
    from recomart.lake import sha256_file
    from recomart.tables import DATASETS

    datasets = {}
    for name, df in frames.items():
        version = lake.write_table("curated", name, df)
        bad = QUARANTINE.get(name, [])
        if bad:
            cols = [c for c in DATASETS[name].columns]
            qrows = []
            for reason, detail, override in bad:
                row = {c: "x" * 80 if c == "review" else "1" for c in cols}
                row.update(override)
                row.update(reason=reason, detail=detail, _source="csv", _ds=DS, _run_id=RUN_ID)
                qrows.append(row)
            lake.write_table("quarantine", name, pd.DataFrame(qrows))
        reasons: dict[str, int] = {}
        for reason, _, _ in bad:
            reasons[reason] = reasons.get(reason, 0) + 1
        rows_in = len(df) + len(bad)
        raw = f"raw/csv/{name}/ds={DS}/{name}.csv"
        (lake.root / raw).parent.mkdir(parents=True, exist_ok=True)
        (lake.root / raw).write_text("header\n")
        sha = sha256_file(lake.root / raw)
        inputs = [{"source": "csv", "path": raw, "sha256": sha, "rows": rows_in}]
        if name == "clickstream":
            inputs.append({"source": "speed", "path": "speed/clickstream_master", "sha256": "",
                           "rows": 0})
        checks = [{"suite": "pandera", "check": "schema", "column": None, "passed": True,
                   "failed_rows": 0, "detail": "columns and types"}]
        if name == "ratings":
            checks.append({"suite": "pandera", "check": "rating_range", "column": "rating", "passed": False,
                           "failed_rows": 3, "detail": "rating not in [0.5, 5]"})
            checks.append({"suite": "great_expectations", "check": "expect_column_values_to_not_be_null",
                           "column": "user_id", "passed": True, "failed_rows": 0, "detail": ""})
        null_rates = {c: float(df[c].isna().mean()) for c in DATASETS[name].columns}
        datasets[name] = {"rows_in": rows_in, "curated": len(df), "quarantined": len(bad),
                          "bad_ratio": len(bad) / rows_in if rows_in else 0.0,
                          "status": "pass" if (len(bad) / max(rows_in, 1)) <= 0.05 else "fail",
                          "reasons": reasons, "null_rates": null_rates, "checks": checks,
                          "inputs": inputs, "curated_version": version}
    summary = {"run_id": RUN_ID, "logical_date": DS, "generated_at": "2024-05-02T00:10:00+00:00",
               "threshold": 0.05, "status": "pass" if all(d["status"] == "pass" for d in datasets.values())
               else "fail", "datasets": datasets,
               "gx_data_docs": f"reports/ds={DS}/gx_data_docs/index.html"}
    lake.write_json(lake.path("reports", f"ds={DS}", "validation_summary.json"), summary)
    lines = []
    for k in range(history_runs - 1, 0, -1):
        day = (pd.Timestamp(DS) - pd.Timedelta(days=k)).date().isoformat()
        past = {n: {"rows_in": d["rows_in"] - 10 * k, "bad_ratio": d["bad_ratio"] * (1 + 0.3 * k)}
                for n, d in datasets.items()}
        lines.append({"run_id": f"scheduled__{day}", "logical_date": day, "datasets": past})
    if history_runs:
        lines.append(summary)
    hist = lake.path("state", "validation_history.jsonl")
    hist.parent.mkdir(parents=True, exist_ok=True)
    hist.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return summary


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bad_input"


def validated_lake(root: Path, source: Path, run_id: str = RUN_ID):
    """A small real lake: the sources landed raw, then ``validate_all`` (the real summary, real
    raw-file checksums in its manifests, real curated/quarantine versions and run history)."""
    from recomart.config import reset_settings
    from recomart.ingestion import ingest_csv_sources
    from recomart.lake import Lake
    from recomart.validation import validate_all

    lake = Lake(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECOMART_LAKE_ROOT", str(root))
        reset_settings()
        ingest_csv_sources(lake, DS, source)
        summary = validate_all(lake, DS, run_id, threshold=0.05, gx_sample_rows=1000)
    reset_settings()
    return lake, summary


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """The bad-input rows: every dataset has quarantined rows with several reasons."""
    return validated_lake(tmp_path_factory.mktemp("validated"), FIXTURES / "rows")


def test_quality_report_shows_reconciliation_reasons_checks_and_lineage(validated):
    from recomart.ingestion.landing import read_manifest
    from recomart.lake import sha256_file
    from recomart.reports.quality import build_quality_report
    from recomart.tables import DATASETS

    lake, summary = validated
    path = build_quality_report(lake, DS)
    assert path == lake.path("reports", f"ds={DS}", "data_quality.pdf")
    assert lake.path("reports", "latest", "data_quality.pdf").read_bytes() == path.read_bytes()
    text = pdf_text(path)
    flat = " ".join(text.split())
    for name in DATASETS:
        d = summary["datasets"][name]
        assert d["quarantined"] > 0 and d["rows_in"] == d["curated"] + d["quarantined"]
        assert f"{d['rows_in']:,} = {d['curated']:,} + {d['quarantined']:,}" in flat
        for reason in lake.read_table("quarantine", name)["reason"].unique():
            assert reason in flat, (name, reason)
        manifest = read_manifest(lake, "csv", name, DS)
        sha = manifest["sha256"]
        assert sha == sha256_file(lake.root / manifest["path"])  # a real checksum of a real file
        assert sha[:12] in text and sha[:20] not in text  # shortened, not dumped whole
        assert f"curated/{name} v{d['curated_version']}" in flat
        assert d["curated_version"] == lake.table_version("curated", name)
    failed = [c["check"] for d in summary["datasets"].values() for c in d["checks"] if not c["passed"]]
    missing = [check for check in failed if check not in flat]
    assert failed and not missing, missing
    assert summary["status"] == "fail" and "FAIL" in text
    assert "great_expectations" in text and "Lineage" in text and "gx_data_docs" in flat
    assert RUN_ID in flat  # header + footer
    assert "Page 1 / " in text
    assert "Only this run is in the validation history" in flat


def test_quality_report_flags_a_dataset_that_does_not_reconcile(validated, tmp_path):
    import shutil

    from recomart.lake import Lake
    from recomart.reports.quality import build_quality_report

    lake = Lake(shutil.copytree(validated[0].root, tmp_path / "lake"))
    summary = lake.read_json(lake.path("reports", f"ds={DS}", "validation_summary.json"))
    assert summary == validated[1]
    summary["datasets"]["orders"]["rows_in"] += 4  # four rows vanished between landing and curated
    lake.write_json(lake.path("reports", f"ds={DS}", "validation_summary.json"), summary)
    flat = " ".join(pdf_text(build_quality_report(lake, DS)).split())
    assert "MISMATCH" in flat and "+4 unaccounted" in flat


def test_quality_report_with_an_empty_dataset_and_file_faults(tmp_path):
    """The file-level faults: an empty orders.csv still gets a balanced row; file problems shown."""
    from recomart.reports.quality import build_quality_report

    lake, summary = validated_lake(tmp_path / "lake", FIXTURES / "files")
    orders = summary["datasets"]["orders"]
    assert (orders["rows_in"], orders["curated"], orders["quarantined"]) == (0, 0, 0)
    text = " ".join(pdf_text(build_quality_report(lake, DS)).split())
    assert "Only this run is in the validation history" in text
    assert "orders 0 0 0 " in text and "0 = 0 + 0" in text
    assert "File problem: orders" in text and "empty_file" in text
    assert "wrong_delimiter" in text and "missing_column" in text


def _one_time_share(frames: dict[str, pd.DataFrame]) -> float:
    """Independent computation: users active on exactly one UTC day over clicks, ratings, orders."""
    days = pd.concat([frames[n][["user_id", "timestamp"]] for n in ("clickstream", "ratings", "orders")
                      if len(frames[n])])
    per_user = days.assign(day=days["timestamp"].dt.date).groupby("user_id")["day"].nunique()
    return float((per_user == 1).mean())


EDA_SECTIONS = ["Interactions over time", "Weekday pattern", "Long tail of popularity",
                "Sparsity of the user", "User activity", "Retention by cohort", "Category mix",
                "Price distribution", "Rating distribution"]


def test_eda_report_sections_and_figures(lake):
    from recomart.reports.eda import build_eda_report

    frames = make_curated()
    # a handful of one-day users so the share is not trivially zero
    extra = pd.DataFrame({"user_id": [1001, 1002, 1003], "product_id": [1, 2, 3], "rating": [4.0, 5.0, 3.0],
                          "review": None, "timestamp": _utc(np.array([100, 200, 300])),
                          "_source": "csv", "_ds": DS})
    frames["ratings"] = pd.concat([frames["ratings"], extra], ignore_index=True)
    populate(lake, frames)
    lake.write_table("curated", "ratings", frames["ratings"].iloc[:10])  # a later run: not this report's
    path = build_eda_report(lake, DS)
    assert path == lake.path("reports", f"ds={DS}", "eda.pdf")
    assert lake.path("reports", "latest", "eda.pdf").exists()
    flat = " ".join(pdf_text(path).split())
    for title in EDA_SECTIONS:
        assert title in flat, title
    share = _one_time_share(frames)
    assert 0 < share < 1
    assert f"One-time users (active on a single day): {100 * share:.1f}%" in flat
    counts = pd.concat([frames[n]["product_id"] for n in ("clickstream", "ratings", "orders")]).value_counts()
    counts = counts.reindex(frames["products"]["product_id"], fill_value=0).sort_values(ascending=False)
    top = counts.iloc[: int(np.ceil(0.2 * len(counts)))].sum() / counts.sum()
    assert f"top 20% of products take {100 * top:.1f}% of interactions" in flat
    from recomart.models.protocols import repeat_share

    rep = repeat_share(frames["orders"])
    assert rep["order_lines"] == len(frames["orders"])
    assert "Repeat purchases" in flat
    assert f"{100 * rep['repeat_share']:.1f}% of order lines are repeats" in flat


def test_eda_report_movielens_shape_without_orders_or_clicks(lake):
    """MovieLens-like lake: no orders, no clickstream, no users table; interactions = ratings."""
    from recomart.reports.eda import build_eda_report

    frames = make_curated()
    keep = {"products": frames["products"], "ratings": frames["ratings"],
            "orders": frames["orders"].iloc[0:0], "clickstream": frames["clickstream"].iloc[0:0]}
    for name, df in keep.items():
        lake.write_table("curated", name, df)
    flat = " ".join(pdf_text(build_eda_report(lake, DS)).split())
    assert "Interactions over time" in flat
    assert "no orders" in flat.lower()
    assert "Rating distribution" in flat
    # the headline figures come from the ratings alone
    ratings = frames["ratings"]
    share = _one_time_share({"ratings": ratings, "orders": keep["orders"],
                             "clickstream": keep["clickstream"]})
    assert 0 < share < 1
    assert f"One-time users (active on a single day): {100 * share:.1f}% of " \
           f"{ratings['user_id'].nunique():,} active users" in flat
    counts = ratings["product_id"].value_counts()
    counts = counts.reindex(frames["products"]["product_id"], fill_value=0).sort_values(ascending=False)
    top = counts.iloc[: int(np.ceil(0.2 * len(counts)))].sum() / counts.sum()
    assert f"top 20% of products take {100 * top:.1f}% of interactions" in flat
    assert f"Interactions {len(ratings):,} (clickstream events + ratings + order lines)" in flat


def test_reports_fail_clearly_without_a_summary(lake):
    from recomart.lake import LakeError
    from recomart.reports.quality import build_quality_report

    with pytest.raises(LakeError, match="validation summary"):
        build_quality_report(lake, DS)


def test_cli_builds_eda_on_a_lake_without_interactions(lake):
    """`recomart report eda --date` on a lake holding only a catalog: prints the path, says why."""
    from typer.testing import CliRunner

    from recomart.cli import app

    lake.write_table("curated", "products", make_curated()["products"])
    result = CliRunner().invoke(app, ["report", "eda", "--date", DS])
    assert result.exit_code == 0, result.output
    path = lake.path("reports", f"ds={DS}", "eda.pdf")
    assert str(path) in result.output
    flat = " ".join(pdf_text(path).split())
    assert "No interactions" in flat and "Category mix" in flat
    bad = CliRunner().invoke(app, ["report", "quality", "--date", DS])  # no validation summary yet
    assert bad.exit_code == 1
    said = " ".join(bad.output.split())
    assert f"no validation summary for {DS} at" in said and "run the validation stage first" in said


def test_regenerating_an_older_date_keeps_latest_on_the_newest(lake):
    from recomart.reports.pdf import publish

    publish(lake, "2024-05-02", "x.pdf", b"new")
    publish(lake, "2024-05-01", "x.pdf", b"old")
    assert lake.path("reports", "latest", "x.pdf").read_bytes() == b"new"
    assert lake.path("reports", "ds=2024-05-01", "x.pdf").read_bytes() == b"old"
    publish(lake, "2024-05-03", "x.pdf", b"newest")
    assert lake.path("reports", "latest", "x.pdf").read_bytes() == b"newest"
