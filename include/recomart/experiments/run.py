"""The daily experiments stage: landed exposures ⋈ clickstream → unit outcomes → readout.

``analyse_experiments(lake, ds)`` is what the ``recomart_experiments`` DAG and
``recomart experiment report`` call. Per experiment it writes (idempotent for ``ds``):

- ``experiments/<name>/r<revision>/ds=<ds>/units.parquet``: one row per unit with its variant,
  exposures, attributed outcomes and metrics;
- ``experiments/<name>/r<revision>/ds=<ds>/readout.json`` and ``.../latest.json``: the readout;
- Delta ``quarantine/exposures``: the quarantined exposures with their reason, replaced per
  (``_ds``, experiment).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recomart.errors import PermanentError
from recomart.experiments import analysis, definitions, outcomes
from recomart.experiments.definitions import Experiment
from recomart.lake import Lake

log = logging.getLogger(__name__)

EXPOSURES_DIR = "exposures"
CLICKSTREAM_DIR = "clickstream"
QUARANTINE_TABLE = "exposures"


class NothingToAnalyse(PermanentError):
    """No experiment runs on this date, or it has no landed exposures."""


class NoActiveExperiment(NothingToAnalyse):
    """No experiment is active on the date (the DAG skips: there is nothing to measure)."""


def _item_columns(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """``items`` (list of structs) → ``_item_start``/``_item_len`` per row and one flat array of
    product ids: converting a million lists of structs to Python objects is what would make the
    stage slow, and only the product ids are needed."""
    if "items" not in table.column_names:
        return table, np.empty(0, np.int64)
    items = table["items"].combine_chunks()
    flat = pc.struct_field(pc.list_flatten(items), "product_id").to_numpy(zero_copy_only=False)
    offsets = items.offsets.to_numpy()
    lens = np.diff(offsets)
    if items.null_count:
        lens = np.where(items.is_null().to_numpy(zero_copy_only=False), 0, lens)
    table = table.drop_columns(["items"]).append_column("_item_start", pa.array(offsets[:-1]))
    return table.append_column("_item_len", pa.array(lens)), flat.astype(np.int64)


def _landed(lake: Lake, subdir: str, columns: list[str]) -> pd.DataFrame:
    root = lake.path("speed", subdir)
    files = sorted(root.glob("date=*/*.parquet")) if root.is_dir() else []
    flat = None
    if subdir == EXPOSURES_DIR:
        columns = [c for c in columns if c != "items"] + ["_item_start", "_item_len"]
        tables, flats, base = [], [], 0
        for p in files:
            t, f = _item_columns(lake.read_arrow_file(p))
            if "_item_start" in t.column_names:
                t = t.set_column(t.column_names.index("_item_start"), "_item_start",
                                 pc.add(t["_item_start"], base))
            tables.append(t)
            flats.append(f)
            base += len(f)
        frames = [t.to_pandas() for t in tables]
        flat = np.concatenate(flats) if flats else np.empty(0, np.int64)
    else:
        frames = [lake.read_parquet(p) for p in files]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    frame = pd.concat(frames, ignore_index=True)
    for c in columns:
        if c not in frame.columns:  # files landed before a column joined the contract
            frame[c] = None
    if flat is not None:
        frame.attrs["item_products"] = flat
    return frame


def read_exposures(lake: Lake) -> pd.DataFrame:
    """Every landed exposure row, replays included (validation tells replays from duplicates)."""
    return _landed(lake, EXPOSURES_DIR, [*outcomes.EXPOSURE_COLUMNS, "_kafka_partition",
                                         "_kafka_offset"])


def read_events(lake: Lake, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Clickstream in [start, end): speed-layer landings and the published curated table,
    deduplicated by event id (an event in both is one event)."""
    from recomart.curated import read_published

    parts = [_landed(lake, CLICKSTREAM_DIR, outcomes.EVENT_COLUMNS)[outcomes.EVENT_COLUMNS]]
    try:
        curated = read_published(lake, "clickstream")
        for c in outcomes.EVENT_COLUMNS:
            if c not in curated.columns:
                curated[c] = None
        parts.append(curated[outcomes.EVENT_COLUMNS])
    except Exception as exc:  # no curated clickstream yet: the speed layer alone
        log.info("no published curated clickstream (%s): using speed-layer landings only", exc)
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in outcomes.EVENT_COLUMNS})
    events = pd.concat(parts, ignore_index=True)
    events["timestamp"] = pd.to_datetime(events["timestamp"], utc=True)
    events = events[(events["timestamp"] >= start) & (events["timestamp"] < end)]
    return events.drop_duplicates("event_id", keep="first").reset_index(drop=True)


def covariates(lake: Lake, exp: Experiment, units: pd.Series,
               feature: str = "user_features:n_views") -> tuple[pd.Series | None, str]:
    """CUPED's pre-experiment covariate per unit from the feature store (point-in-time just
    before the start), or None and why not."""
    if exp.unit != "user":
        return None, "session experiments have no pre-experiment history per unit"
    from recomart.features.store import FeatureStore

    try:
        store = FeatureStore(lake)
        when = pd.Timestamp(exp.started())  # snapshots stamped at or before the start only
        frame = pd.DataFrame({"user_id": units.astype("int64").to_numpy(), "event_timestamp": when})
        got = store.get_historical_features(frame, [feature])
    except Exception as exc:
        return None, f"no {feature} before the start ({type(exc).__name__}: {exc})"
    col = feature.split(":")[1]
    if got[col].isna().all():
        return None, f"no {feature} snapshot at or before the start {exp.started_at}"
    values = pd.to_numeric(got[col], errors="coerce").fillna(0.0)  # no snapshot row: no activity
    return pd.Series(values.to_numpy(), index=units.index), feature


def folder(lake: Lake, exp: Experiment, ds: str) -> Path:
    return lake.path("experiments", exp.name, f"r{exp.revision}", f"ds={ds}")


def _write_quarantine(lake: Lake, exp: Experiment, ds: str, rows: pd.DataFrame, run_id: str) -> int:
    rows = rows.drop(columns=[c for c in ("_item_start", "_item_len") if c in rows.columns])
    table = pd.DataFrame({
        "request_id": rows["request_id"].astype("string"),
        "ts": rows["ts"].astype("string"),
        "experiment": exp.name, "revision": exp.revision,
        "variant": rows["variant"].astype("string"),
        "user_id": pd.to_numeric(rows["user_id"], errors="coerce").astype("Int64"),
        "session_id": rows["session_id"].astype("string"),
        "reason": rows["reason"].astype("string"),
        "raw": [json.dumps(r, default=str) for r in rows.drop(columns=["reason"]).to_dict("records")],
        "_ds": ds, "_run_id": run_id,
    })
    predicate = f"_ds = '{ds}' AND experiment = '{exp.name}'"
    if lake.table_exists("quarantine", QUARANTINE_TABLE):
        return lake.write_table("quarantine", QUARANTINE_TABLE, table, mode="overwrite",
                                predicate=predicate)
    return lake.write_table("quarantine", QUARANTINE_TABLE, table, mode="overwrite")


def analyse_one(lake: Lake, exp: Experiment, ds: str, exposures: pd.DataFrame,
                events: pd.DataFrame, run_id: str = "manual",
                covariate: pd.Series | None = None,
                cuped_feature: str = "user_features:n_views") -> dict[str, Any]:
    end = pd.Timestamp(ds, tz="UTC") + pd.Timedelta(days=1)
    flat = exposures.attrs.get("item_products")
    exposures = exposures[pd.to_datetime(exposures["ts"], utc=True) < end]
    exposures.attrs = {}  # the flat item array travels as an argument, not through pandas
    valid, quarantined, rec = outcomes.validate_exposures(exposures, exp)
    if len(quarantined) or lake.table_exists("quarantine", QUARANTINE_TABLE):
        _write_quarantine(lake, exp, ds, quarantined, run_id)
    attributed = outcomes.attribute(valid, events, exp, rec, until=end, item_products=flat)
    units = outcomes.unit_outcomes(valid, attributed, exp, rec)
    rec.check()
    cov_source = "given"
    if covariate is None and len(units):
        covariate, cov_source = covariates(lake, exp, units["unit"], cuped_feature)
    if covariate is not None:
        units["covariate"] = covariate.to_numpy() if len(covariate) == len(units) else None
    days = outcomes.experiment_days(exp, ds)
    daily = outcomes.daily_units(valid, attributed, exp, days)
    first_day = valid.groupby(valid["user_id" if exp.unit == "user" else "session_id"])["ts"].min()
    active_days = max(1, first_day.dt.date.nunique()) if len(first_day) else 1
    readout = analysis.analyse(exp, units, daily=daily, reconciliation=rec.as_dict(),
                               units_per_day=len(units) / active_days if len(units) else None)
    readout.update(ds=ds, run_id=run_id, cuped_covariate=cov_source,
                   generated_at=datetime.now().astimezone().isoformat(timespec="seconds"))
    out = folder(lake, exp, ds)
    lake.write_parquet(out / "units.parquet", units)
    lake.write_json(out / "readout.json", readout)
    lake.write_json(lake.path("experiments", exp.name, "latest.json"),
                    {"ds": ds, "revision": exp.revision, "readout": lake.rel(out / "readout.json")})
    log.info("%s r%d %s: %s (%s)", exp.name, exp.revision, ds, readout["decision"], readout["reason"])
    return readout


def active_on(exp: Experiment, ds: str) -> bool:
    day = datetime.fromisoformat(ds).date()
    if exp.started().date() > day:
        return False
    return exp.stopped_at is None or datetime.fromisoformat(exp.stopped_at).date() >= day


def analyse_experiments(lake: Lake, ds: str, run_id: str = "manual",
                        names: list[str] | None = None, cuped_feature: str = "user_features:n_views"
                        ) -> dict[str, Any]:
    """Every experiment active on ``ds`` (or the named ones): readouts written, summary returned."""
    exps = [definitions.load(lake, n) for n in names] if names else \
        [e for e in definitions.list_all(lake) if active_on(e, ds)]
    if not exps:
        raise NoActiveExperiment(f"no experiment is active on {ds} (create one with "
                               "`recomart experiment create`)")
    exposures = read_exposures(lake)
    if exposures.empty:
        raise NothingToAnalyse(f"no exposures landed in {lake.path('speed', EXPOSURES_DIR)}: is "
                               "the serving API logging to Kafka and the Faust worker running?")
    start = min(pd.Timestamp(e.started()) for e in exps)
    end = pd.Timestamp(ds, tz="UTC") + pd.Timedelta(days=1)
    events = read_events(lake, start, end)
    summary = {"ds": ds, "exposures_landed": len(exposures), "events": len(events),
               "experiments": {}}
    for exp in exps:
        r = analyse_one(lake, exp, ds, exposures, events, run_id, cuped_feature=cuped_feature)
        summary["experiments"][exp.name] = {
            "revision": exp.revision, "decision": r["decision"], "reason": r["reason"],
            "units": sum(v["units"] for v in r["variants"]),
            "quarantined": r["reconciliation"]["quarantined"],
            "readout": lake.rel(folder(lake, exp, ds) / "readout.json")}
    return summary


def latest_readout(lake: Lake, name: str) -> dict[str, Any]:
    pointer = lake.read_json(lake.path("experiments", name, "latest.json"), default={})
    if not pointer:
        raise NothingToAnalyse(f"experiment {name!r} has no readout yet: run the "
                               "recomart_experiments DAG or `recomart experiment report`")
    return lake.read_json(lake.resolve(pointer["readout"]))


def publish_readouts(lake: Lake, ds: str, summary: dict[str, Any], *, log_mlflow: bool = True
                     ) -> dict[str, Any]:
    """The PDF beside each readout (and a copy in ``reports/ds=<ds>/``), logged to MLflow."""
    from recomart.reports.experiment import write_report
    from recomart.reports.pdf import publish

    out = {}
    for name, s in summary["experiments"].items():
        readout = lake.read_json(lake.resolve(s["readout"]))
        pdf = write_report(lake, readout, lake.resolve(s["readout"]).parent)
        publish(lake, ds, f"experiment_{name}.pdf", pdf.read_bytes())
        run_id = None
        if log_mlflow:
            from recomart.experiments.promotion import log_readout

            run_id = log_readout(readout, pdf)
        out[name] = {"pdf": str(pdf), "mlflow_run_id": run_id, "decision": readout["decision"]}
    return out


def gated_promotion(lake: Lake, ds: str, summary: dict[str, Any], enabled: bool) -> dict[str, Any]:
    from recomart.experiments.promotion import gate

    out = {}
    for name, s in summary["experiments"].items():
        exp = definitions.load(lake, name)
        out[name] = gate(exp, lake.read_json(lake.resolve(s["readout"])), enabled)
    return out
