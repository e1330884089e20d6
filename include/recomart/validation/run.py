"""``validate_all``: raw landings -> curated + quarantine Delta tables, summary and history.

Order matters: users and products are validated first, their curated keys are the reference sets
for the fact tables' referential-integrity checks. Every input row ends up curated or quarantined
and ``rows_in = curated + quarantined`` is asserted per dataset before anything is written.

Cross-source duplicates: products from the catalog API win over products.csv (the API is the live
catalog, fresher prices); the CSV copy is quarantined as ``superseded_by_api`` (informational, not
counted as bad). Clickstream from CSV wins over the speed layer's copy of the same ``event_id``
(the batch file is the system of record); the speed copy is quarantined as ``duplicate_key``.
Curated tables hold the latest validated snapshot (sources deliver full snapshots); each run is one
new Delta version, so earlier snapshots stay reachable by version. That version is only *staged*:
readers see it once the quality gate has passed and :func:`recomart.validation.gate.publish_validated`
has published it (write-audit-publish, see :mod:`recomart.curated`).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recomart.config import get_settings
from recomart.curated import logical_date_end, unpublish
from recomart.errors import PermanentError, RecomartError
from recomart.ingestion.landing import read_manifest
from recomart.lake import Lake
from recomart.tables import DATASETS, Dataset
from recomart.validation import reasons as R
from recomart.validation.coercion import coerce, dates_as_timestamps, to_pandas
from recomart.validation.gate import summary_path
from recomart.validation.gx_input import gx_tables
from recomart.validation.history import previous_curated_rows, record_run
from recomart.validation.parsing import ParsedInput, parse_catalog_pages, parse_csv, speed_rows
from recomart.validation.quarantine import quarantine_schema, to_table, write_quarantine
from recomart.validation.schemas import DETAILS, RunContext, duplicate_rows, row_failures
from recomart.validation.suite_worker import Suites, open_suites
from recomart.validation.suites import SAMPLE_ROWS

log = logging.getLogger(__name__)
ORDER = ("users", "products", "orders", "ratings", "clickstream")  # of the summary and reports
# Validated in this order: users and products first (the others check their keys against them),
# then the largest, so the GX child runs its slowest suite while this process validates orders and
# ratings, and the clickstream's Delta commit overlaps them too, instead of both being waited for.
VALIDATION_ORDER = ("users", "products", "clickstream", "orders", "ratings")
SPEED_TABLE = "clickstream_master"


class ValidationInputError(PermanentError):
    """A dataset has no raw landing for the logical date (ingestion did not run)."""


class ReconciliationError(RecomartError):
    """Rows in != curated + quarantined: a bug in validation, never a data problem."""


def collect_inputs(lake: Lake, ds: str, ds_end: pd.Timestamp,
                   read_versions: dict[str, int] | None = None) -> dict[str, list[ParsedInput]]:
    """Parse every landing of ``ds``, in precedence order per dataset (first wins on duplicates);
    the Delta versions read are added to ``read_versions`` (the lineage key)."""
    inputs: dict[str, list[ParsedInput]] = {}
    for name in ORDER:
        manifest = read_manifest(lake, "csv", name, ds)
        if manifest is None:
            raise ValidationInputError(f"no raw/csv/{name} landing for {ds}: run ingestion first")
        inputs[name] = [parse_csv(lake.root / manifest["path"], DATASETS[name], source="csv",
                                  rel_path=manifest["path"], sha256=manifest["sha256"])]
    catalog = read_manifest(lake, "catalog_api", "products", ds)
    if catalog is not None:
        api = parse_catalog_pages(lake.root / catalog["path"], DATASETS["products"],
                                  rel_path=catalog["path"], sha256=catalog["sha256"])
        inputs["products"].insert(0, api)  # the API wins
    else:
        log.info("no catalog API landing for %s: products from products.csv only", ds)
    if lake.table_exists("speed", SPEED_TABLE):
        version = lake.table_version("speed", SPEED_TABLE)
        if read_versions is not None:
            read_versions[f"speed/{SPEED_TABLE}"] = version
        speed = speed_rows(lake.read_arrow("speed", SPEED_TABLE, version=version), DATASETS["clickstream"],
                           ds_end.to_pydatetime(), f"speed/{SPEED_TABLE}@v{version}")
        inputs["clickstream"].append(speed)  # CSV wins
    return inputs


def _const(value: str, n: int) -> pa.Array:
    return pa.repeat(value, n).cast(pa.string()) if n else pa.array([], pa.string())


def _with_source(table: pa.Table, source: str) -> pa.Table:
    return table.append_column("_source", _const(source, table.num_rows))


class DatasetResult:
    """Curated rows (Arrow, the curated table's columns), quarantined rows and the summary entry."""

    def __init__(self, curated: pa.Table, quarantine: pa.Table, entry: dict[str, Any]):
        self.curated, self.quarantine, self.entry = curated, quarantine, entry


def validate_dataset(name: str, inputs: list[ParsedInput], ctx: RunContext, ds: str,
                     run_id: str) -> DatasetResult:
    """Coerce in Arrow, row rules in Pandera (on the rows that parsed), keys unique; the curated
    rows are taken from the typed Arrow table (no pandas round trip for the bulk of the data)."""
    dset = DATASETS[name]
    strings = pa.concat_tables([_with_source(i.rows, i.source) for i in inputs])
    typed, codes, labels = coerce(strings.drop_columns(["_source"]), dset)
    reasons = np.array([lbl[0] or None for lbl in labels], dtype=object)[codes]
    details = np.array([lbl[1] or None for lbl in labels], dtype=object)[codes]
    ok_idx = np.flatnonzero(codes == 0)
    parsed = typed if len(ok_idx) == typed.num_rows else typed.take(pa.array(ok_idx))
    frame = to_pandas(dates_as_timestamps(parsed))  # the rows that parsed, for Pandera
    row_reasons, failed, checks_run = row_failures(frame, name, ctx)
    reasons[ok_idx] = row_reasons
    passed = pd.isna(row_reasons)
    survivors = ok_idx[passed]
    keys = frame[list(dset.key)]
    keys = keys if passed.all() else keys.loc[passed].reset_index(drop=True)
    dup_idx = survivors[duplicate_rows(keys, dset.key)]
    del frame, keys
    sources = strings["_source"].to_numpy(zero_copy_only=False)
    reasons[dup_idx] = R.DUPLICATE_KEY
    if name == "products" and len(dup_idx):
        product_ids = typed["product_id"].to_numpy(zero_copy_only=False)
        kept = np.flatnonzero(pd.isna(reasons))
        api_keys = product_ids[kept[sources[kept] == "catalog_api"]]
        superseded = dup_idx[(sources[dup_idx] == "csv") & np.isin(product_ids[dup_idx], api_keys)]
        reasons[superseded] = R.SUPERSEDED_BY_API
    pandera_rows = pd.isna(details) & ~pd.isna(reasons)
    details[pandera_rows] = pd.Series(reasons[pandera_rows]).map(DETAILS).to_numpy()
    bad = ~pd.isna(reasons)

    keep = pa.array(~bad)
    curated = typed.filter(keep).append_column("_source", strings["_source"].filter(keep))
    quarantine = _quarantine_rows(strings, bad, reasons, details, inputs, dset, ds, run_id)
    entry = _entry(name, inputs, curated, quarantine, failed, checks_run, dup_idx, dset)
    return DatasetResult(curated, quarantine, entry)


def _quarantine_rows(strings: pa.Table, bad: np.ndarray, reasons: np.ndarray, details: np.ndarray,
                     inputs: list[ParsedInput], dset: Dataset, ds: str, run_id: str) -> pa.Table:
    rows = strings.filter(pa.array(bad))
    n = rows.num_rows
    cols = {c: rows[c] for c in dset.columns}
    cols.update(raw_line=pa.nulls(n, pa.string()), reason=pa.array(reasons[bad], pa.string()),
                detail=pa.array(details[bad], pa.string()), _source=rows["_source"],
                _ds=_const(ds, n), _run_id=_const(run_id, n))
    parts = [pa.table(cols).cast(quarantine_schema(dset))]
    for inp in inputs:
        if len(inp.rejects):
            rej = inp.rejects.assign(_source=inp.source, _ds=ds, _run_id=run_id)
            parts.append(to_table(rej, dset))
    return pa.concat_tables(parts)


def _entry(name: str, inputs: list[ParsedInput], curated: pa.Table, quarantine: pa.Table,
           failed: list[dict], checks_run: list[tuple[str, str]], dup_idx: np.ndarray,
           dset: Dataset) -> dict[str, Any]:
    reasons = Counter(quarantine["reason"].to_pylist())
    rows_in = sum(i.rows_in for i in inputs)
    quarantined = quarantine.num_rows
    n_curated = curated.num_rows
    if rows_in != n_curated + quarantined:
        raise ReconciliationError(f"{name}: {rows_in} rows in but {n_curated} curated + "
                             f"{quarantined} quarantined")
    defects = quarantined - sum(reasons[r] for r in R.INFORMATIONAL)
    file_errors = [e for i in inputs for e in i.file_errors]
    # no rows at all: a broken delivery (empty file) is all bad, a header-only file is fine
    bad_ratio = defects / rows_in if rows_in else (1.0 if file_errors else 0.0)
    checks: list[dict[str, Any]] = []
    for inp in inputs:
        for err in inp.file_errors:
            checks.append({"suite": "parsing", "check": err["reason"], "column": None,
                           "passed": False, "failed_rows": len(inp.rejects), "detail":
                           f"{inp.path}: {err['detail']}"})
        if inp.extra_columns:
            checks.append({"suite": "parsing", "check": "extra_column", "column": None,
                           "passed": False, "failed_rows": 0,
                           "detail": f"{inp.path}: ignored {inp.extra_columns}"})
        if inp.filled_columns:
            checks.append({"suite": "parsing", "check": "missing_optional_column", "column": None,
                           "passed": False, "failed_rows": 0,
                           "detail": f"{inp.path}: {inp.filled_columns} absent, filled with null"})
    for reason in (R.MALFORMED_ROW, R.INVALID_ENCODING, R.MALFORMED_JSON_PAGE, R.HTTP_ERROR_PAGE,
                   *R.UNPARSEABLE.values()):
        if reasons.get(reason):
            checks.append({"suite": "parsing", "check": reason, "column": None, "passed": False,
                           "failed_rows": reasons[reason], "detail": DETAILS.get(reason, reason)})
    counts = {(f["reason"], f["column"]): f["n"] for f in failed}
    seen = set(checks_run) | set(counts)
    for check, column in sorted(seen, key=lambda kv: (kv[1] or "", kv[0])):
        n = counts.get((check, column), 0)
        checks.append({"suite": "pandera", "check": check, "column": column, "passed": n == 0,
                       "failed_rows": n, "detail": DETAILS.get(check, check)})
    checks.append({"suite": "pandera", "check": "unique_key", "column": ",".join(dset.key),
                   "passed": len(dup_idx) == 0, "failed_rows": len(dup_idx),
                   "detail": f"{list(dset.key)} unique (first occurrence kept)"})
    return {
        "rows_in": rows_in, "curated": n_curated, "quarantined": quarantined,
        "bad_ratio": round(bad_ratio, 6), "reasons": dict(sorted(reasons.items())),
        "informational": {r: reasons[r] for r in R.INFORMATIONAL if reasons.get(r)},
        "null_rates": {c: round(curated[c].null_count / n_curated, 6) if n_curated else 0.0
                       for c in dset.columns if c in dset.nullable},
        "checks": checks,
        "inputs": [{"source": i.source, "path": i.path, "sha256": i.sha256, "rows": i.rows_in,
                    "file_errors": i.file_errors} for i in inputs],
    }


def _curated_table(curated: pa.Table, dset: Dataset, ds: str) -> pa.Table:
    types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(),
             "timestamp": pa.timestamp("us", "UTC"), "date": pa.date32()}
    cols = {c: curated[c].cast(types[kind]) for c, kind in dset.columns.items()}
    cols["_source"] = curated["_source"].cast(pa.string())
    cols["_ds"] = _const(ds, curated.num_rows)
    return pa.table(cols)


def _stage(lake: Lake, name: str, res: DatasetResult, ds: str, run_id: str) -> tuple[int, int]:
    """Commit one dataset's curated (staged) and quarantine tables: (curated, quarantine) versions."""
    meta = {"run_id": run_id, "logical_date": ds, "stage": "staged"}
    dset = DATASETS[name]
    curated = lake.write_table("curated", name, _curated_table(res.curated, dset, ds),
                               mode="overwrite", metadata=meta)
    return curated, write_quarantine(lake, dset, ds, res.quarantine, run_id)


def validate_all(lake: Lake, ds: str, run_id: str, threshold: float | None = None,
                 gx_sample_rows: int | None = None, *, suites: Suites | None = None,
                 gx_in_process: bool = False) -> dict[str, Any]:
    """Validate every dataset landed for ``ds``; writes tables, summary and history; never raises
    for bad data (that is :func:`quality_gate`'s job).

    The GX suites run in a child process (``suite_worker``), fed each dataset's sample as soon as
    it is validated; ``suites`` is one the caller started earlier (it is closed here), and
    ``gx_in_process`` runs them in this process instead."""
    threshold = get_settings().bad_row_threshold if threshold is None else threshold
    ds_end = logical_date_end(ds)
    sample_rows = gx_sample_rows or SAMPLE_ROWS
    docs_dir = lake.path("reports", f"ds={ds}", "gx_data_docs")
    with contextlib.ExitStack() as stack:
        # Delta commits (Rust, GIL released) run in this thread while the next dataset is validated;
        # staged versions are invisible to readers until the gate publishes them.
        stager = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="recomart-stage"))
        local_docs = stack.enter_context(lake.build_tree(docs_dir))  # GX writes local files only
        suites = suites if suites is not None else open_suites(gx_in_process)
        stack.callback(suites.close)  # runs first: the child is stopped before its docs folder goes
        suites.begin({n: DATASETS[n].nullable for n in VALIDATION_ORDER},
                     previous_curated_rows(lake, ds), ds_end, local_docs)
        read_versions: dict[str, int] = {}
        inputs = collect_inputs(lake, ds, ds_end, read_versions)
        if unpublish(lake, ds):  # until this run's gate passes, readers of ds see the previous publication
            log.info("withdrew the earlier publication of %s while it is re-validated", ds)
        ctx = RunContext(ds_end=ds_end)
        results: dict[str, DatasetResult] = {}
        staged = {}
        for name in VALIDATION_ORDER:
            res = validate_dataset(name, inputs.pop(name), ctx, ds, run_id)  # its rows go after it
            results[name] = res
            staged[name] = stager.submit(_stage, lake, name, res, ds, run_id)
            suites.add(name, gx_tables(res.curated, name, sample_rows))
            if name == "users":
                ctx.user_ids = res.curated["user_id"].to_numpy().astype("int64")
            elif name == "products":
                ctx.product_ids = res.curated["product_id"].to_numpy().astype("int64")
            log.info("%s: %d in, %d curated, %d quarantined %s", name, res.entry["rows_in"],
                     res.entry["curated"], res.entry["quarantined"], res.entry["reasons"])
        del inputs
        suites.finish()
        versions = {name: f.result() for name, f in staged.items()}
        gx_checks = suites.checks()
    docs_index = docs_dir / "index.html"

    datasets: dict[str, Any] = {}
    for name in ORDER:
        entry = results[name].entry
        entry["checks"] += gx_checks.get(name, [])
        gx_failed = any(not c["passed"] for c in entry["checks"]
                        if c["suite"].startswith("great_expectations"))
        entry["status"] = ("fail" if entry["bad_ratio"] > threshold
                           else "warn" if gx_failed else "pass")
        entry["curated_version"], entry["quarantine_version"] = versions[name]
        datasets[name] = entry
    statuses = {d["status"] for d in datasets.values()}
    summary = {"run_id": run_id, "logical_date": ds,
               "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "threshold": threshold,
               "status": "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass",
               "datasets": datasets,
               "gx_data_docs": lake.rel(docs_index),
               "read_versions": read_versions,
               "written_versions": {
                   **{f"curated/{n}": d["curated_version"] for n, d in datasets.items()},
                   **{f"quarantine/{n}": d["quarantine_version"] for n, d in datasets.items()}}}
    lake.write_json(summary_path(lake, ds), summary)
    record_run(lake, summary)
    return summary
