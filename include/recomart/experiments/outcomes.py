"""Outcomes: which served lists led to a click, an add-to-cart or a purchase.

Exposures (one row per served list, with the experiment, variant and assignment probability)
first pass their own Pandera schema; rows that fail are quarantined with a reason:

- ``null_request_id`` / ``missing_unit`` (no user id for a user experiment, no session id for a
  session experiment) / ``bad_probability`` (assignment probability not in (0, 1]);
- ``unknown_variant``: the variant is not one of the experiment's revision;
- ``duplicate_request_id``: a second, *different* message with a request id already seen (a
  replay of the same Kafka message after a crash is not a duplicate: it is dropped and counted);
- ``before_experiment_start`` / ``after_experiment_stop``.

Attribution: an event on a product of a served list counts for that list when it happens within
the attribution window after it, matched by ``request_id`` when the event carries one, else by the
same user (or session) and product, to the most recent list that showed the product. Each event
counts for one list at most. ``view`` is a click, then ``add_to_cart`` and ``purchase``.

Counts reconcile: exposures in = not in this experiment + quarantined + attributed-to-units.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from recomart.experiments.definitions import Experiment
from recomart.experiments.statistics import StatisticsError

log = logging.getLogger(__name__)

NULL_REQUEST_ID = "null_request_id"
MISSING_UNIT = "missing_unit"
BAD_PROBABILITY = "bad_probability"
UNKNOWN_VARIANT = "unknown_variant"
DUPLICATE_REQUEST_ID = "duplicate_request_id"
BEFORE_START = "before_experiment_start"
AFTER_STOP = "after_experiment_stop"
PRIORITY = [NULL_REQUEST_ID, MISSING_UNIT, UNKNOWN_VARIANT, BAD_PROBABILITY, BEFORE_START,
            AFTER_STOP, DUPLICATE_REQUEST_ID]
EXPOSURE_COLUMNS = ["request_id", "ts", "route", "user_id", "session_id", "model", "version",
                    "experiment", "variant", "assignment_probability", "items"]
EVENT_COLUMNS = ["event_id", "user_id", "product_id", "event_type", "session_id", "timestamp",
                 "price", "request_id"]
UNIT_COLUMNS = ["unit", "variant", "exposures", "clicked", "carted", "clicks", "purchases",
                "revenue"]


@dataclass
class Reconciliation:
    landed: int = 0
    replays_dropped: int = 0
    not_in_experiment: int = 0
    in_experiment: int = 0
    quarantined: int = 0
    valid: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    units: int = 0
    units_in_several_variants: int = 0
    exposures_of_dropped_units: int = 0
    events_considered: int = 0
    events_attributed: int = 0
    attributed_by_request_id: int = 0
    attributed_by_window: int = 0

    def check(self) -> None:
        """The books balance, or the run fails (nothing may be lost silently)."""
        if self.landed != self.replays_dropped + self.not_in_experiment + self.in_experiment:
            raise StatisticsError(f"exposure counts do not reconcile: {asdict(self)}")
        if self.in_experiment != self.quarantined + self.valid:
            raise StatisticsError(f"experiment exposures do not reconcile: {asdict(self)}")
        if sum(self.reasons.values()) != self.quarantined:
            raise StatisticsError(f"quarantine reasons do not add up: {asdict(self)}")

    def as_dict(self) -> dict:
        return asdict(self)


def exposure_schema(exp: Experiment) -> pa.DataFrameSchema:
    """Each check is named after the quarantine reason it produces."""
    start = pd.Timestamp(exp.started())
    stop = pd.Timestamp(datetime.fromisoformat(exp.stopped_at)) if exp.stopped_at else None
    unit_col = "user_id" if exp.unit == "user" else "session_id"
    variants = [v.name for v in exp.variants]
    columns = {
        "request_id": pa.Column(str, nullable=True, checks=pa.Check(
            lambda s: s.notna(), ignore_na=False, name=NULL_REQUEST_ID)),
        "ts": pa.Column("datetime64[us, UTC]", nullable=False, checks=[
            pa.Check(lambda s: s >= start, name=BEFORE_START),
            pa.Check((lambda s: s <= stop) if stop is not None else (lambda s: s == s),
                     name=AFTER_STOP)]),
        "variant": pa.Column(str, nullable=True, checks=pa.Check(
            lambda s: s.isin(variants), ignore_na=False, name=UNKNOWN_VARIANT)),
        "assignment_probability": pa.Column(float, nullable=True, checks=pa.Check(
            lambda s: s.gt(0) & s.le(1), ignore_na=False, name=BAD_PROBABILITY)),
        unit_col: pa.Column(nullable=True, checks=pa.Check(lambda s: s.notna(), ignore_na=False,
                                                              name=MISSING_UNIT)),
    }
    return pa.DataFrameSchema(columns, strict=False, coerce=False)


def _dedup_replays(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop re-landings of the same Kafka message (same request id and partition/offset)."""
    keys = ["request_id", "_kafka_partition", "_kafka_offset"]
    if not set(keys) <= set(frame.columns):
        return frame, 0
    dup = frame.duplicated(subset=keys, keep="first") & frame["request_id"].notna()
    return frame.loc[~dup], int(dup.sum())


def validate_exposures(exposures: pd.DataFrame, exp: Experiment
                       ) -> tuple[pd.DataFrame, pd.DataFrame, Reconciliation]:
    """``(valid, quarantined_with_reason, reconciliation)`` for one experiment revision."""
    rec = Reconciliation(landed=len(exposures))
    frame, rec.replays_dropped = _dedup_replays(exposures)
    mine = frame["experiment"] == exp.name
    if "experiment_revision" in frame.columns:
        mine &= frame["experiment_revision"].fillna(exp.revision) == exp.revision
    rec.not_in_experiment = int((~mine).sum())
    frame = frame.loc[mine].copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
    frame["assignment_probability"] = frame["assignment_probability"].astype(float)
    rec.in_experiment = len(frame)
    reason = pd.Series(pd.NA, index=frame.index, dtype="object")
    try:
        exposure_schema(exp).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        cases = cases[cases["index"].notna() & cases["check"].isin(PRIORITY)]
        rank = {r: i for i, r in enumerate(PRIORITY)}
        for idx, check in sorted(zip(cases["index"], cases["check"], strict=True),
                                 key=lambda t: -rank[t[1]]):
            reason.loc[idx] = check  # the highest-priority reason wins (written last)
    ok = reason.isna()
    dup = frame["request_id"].duplicated(keep="first") & frame["request_id"].notna() & ok
    reason.loc[dup[dup].index] = DUPLICATE_REQUEST_ID
    quarantined = frame.loc[reason.notna()].assign(reason=reason[reason.notna()])
    valid = frame.loc[reason.isna()]
    rec.quarantined, rec.valid = len(quarantined), len(valid)
    rec.reasons = {k: int(v) for k, v in quarantined["reason"].value_counts().items()}
    return valid, quarantined, rec


def _explode(valid: pd.DataFrame, unit_codes: np.ndarray, item_products: np.ndarray | None = None
             ) -> pd.DataFrame:
    """One row per (served list, product) as integers: ``req`` (the list's row in ``valid``),
    ``unit`` (unit code), ``ts`` (µs) and ``product_id``. Exposures read from the lake carry
    ``_item_start`` / ``_item_len`` into one flat ``item_products`` array; hand-made ones may carry
    ``items`` (the wire form's list of objects)."""
    if item_products is not None and "_item_start" in valid.columns:
        lens = valid["_item_len"].to_numpy(np.int64)
        starts = valid["_item_start"].to_numpy(np.int64)
        first = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens)
        products = item_products[first + np.arange(int(lens.sum()))]
    else:
        lens = valid["items"].map(len).to_numpy()
        products = np.fromiter((it["product_id"] for items in valid["items"] for it in items),
                               np.int64, int(lens.sum()))
    rows = np.repeat(np.arange(len(valid)), lens)
    return pd.DataFrame({"req": rows, "unit": unit_codes[rows],
                         "ts": _micros(valid["ts"])[rows], "product_id": products})


def _micros(values: pd.Series) -> np.ndarray:
    return _naive_utc(values).astype(np.int64)


ATTRIBUTED_COLUMNS = ["request_id", "req", "unit", "event_id", "event_type", "price", "timestamp",
                      "how"]


def attribute(valid: pd.DataFrame, events: pd.DataFrame, exp: Experiment, rec: Reconciliation,
              until: pd.Timestamp | None = None, item_products: np.ndarray | None = None
              ) -> pd.DataFrame:
    """Attributed events: ``[request_id, req, unit, event_id, event_type, price, timestamp,
    how]`` (``req``: the list's row in ``valid``; ``how``: ``request_id`` or ``window``).

    Joins run on integer codes (list row, unit code, product id, µs timestamps): string keys
    would dominate the cost at a million lists."""
    window_us = int(exp.attribution_window_hours * 3600 * 1e6)
    unit_col = "user_id" if exp.unit == "user" else "session_id"
    if valid.empty or events.empty:
        return pd.DataFrame(columns=ATTRIBUTED_COLUMNS)
    unit_codes, unit_index = pd.factorize(valid[unit_col])
    shown = _explode(valid, unit_codes, item_products)
    ev = events.drop_duplicates("event_id")
    ev = ev[ev["timestamp"] >= pd.Timestamp(exp.started())]
    if until is not None:
        ev = ev[ev["timestamp"] <= until]
    rec.events_considered = len(ev)
    ev_us = _micros(ev["timestamp"])
    ev_req = (pd.Index(valid["request_id"]).get_indexer(ev["request_id"])
              if "request_id" in ev.columns else np.full(len(ev), -1))
    has_rid = (ev["request_id"].notna().to_numpy() if "request_id" in ev.columns
               else np.zeros(len(ev), bool))
    base = pd.DataFrame({"ev": np.arange(len(ev)), "product_id": ev["product_id"].to_numpy(np.int64),
                         "t": ev_us})

    left = base[has_rid & (ev_req >= 0)].assign(req=ev_req[has_rid & (ev_req >= 0)])
    by_rid = left.merge(shown[["req", "product_id", "ts"]], on=["req", "product_id"])
    by_rid = by_rid[(by_rid["t"] >= by_rid["ts"]) & (by_rid["t"] <= by_rid["ts"] + window_us)]
    by_rid = by_rid.drop_duplicates("ev")

    ev_unit = pd.Index(unit_index).get_indexer(ev[unit_col].astype(valid[unit_col].dtype)) \
        if len(ev) else np.empty(0, np.int64)
    rest = base[~has_rid & (ev_unit >= 0)].assign(unit=ev_unit[~has_rid & (ev_unit >= 0)])
    if len(rest):
        by_win = pd.merge_asof(rest.sort_values("t", kind="stable"),
                               shown.sort_values("ts", kind="stable"), left_on="t", right_on="ts",
                               by=["unit", "product_id"], direction="backward",
                               tolerance=window_us)
        by_win = by_win.dropna(subset=["req"])
    else:
        by_win = pd.DataFrame(columns=["ev", "req"])
    idx = np.r_[by_rid["ev"].to_numpy(np.int64), by_win["ev"].to_numpy(np.int64)]
    req = np.r_[by_rid["req"].to_numpy(np.int64), by_win["req"].to_numpy(np.int64)]
    picked = ev.iloc[idx]
    out = pd.DataFrame({
        "request_id": valid["request_id"].to_numpy()[req] if len(req) else [],
        "req": req, "unit": unit_codes[req] if len(req) else [],
        "event_id": picked["event_id"].to_numpy(), "event_type": picked["event_type"].to_numpy(),
        "price": picked["price"].to_numpy(),
        "timestamp": picked["timestamp"].reset_index(drop=True),  # tz-aware, no per-row objects
        "how": np.r_[np.full(len(by_rid), "request_id"), np.full(len(by_win), "window")]})
    rec.attributed_by_request_id = len(by_rid)
    rec.attributed_by_window = len(by_win)
    rec.events_attributed = len(out)
    return out


def _naive_utc(values: pd.Series) -> np.ndarray:
    return pd.to_datetime(values, utc=True).dt.tz_localize(None).to_numpy("datetime64[us]")


class _Coded:
    """Served lists and attributed events as integer codes, so unit tables (one per day for the
    daily path) are a few ``bincount``s instead of string joins."""

    def __init__(self, valid: pd.DataFrame, attributed: pd.DataFrame, exp: Experiment) -> None:
        unit_col = "user_id" if exp.unit == "user" else "session_id"
        self.n = len(valid)
        self.unit_codes, self.units = pd.factorize(valid[unit_col], sort=True)
        self.variant_codes, self.variants = pd.factorize(valid["variant"])
        self.list_ts = _naive_utc(valid["ts"])
        if len(attributed):
            self.req = (attributed["req"].to_numpy(np.int64) if "req" in attributed.columns
                        else pd.Index(valid["request_id"]).get_indexer(attributed["request_id"]))
            kind = attributed["event_type"].to_numpy()
            self.click, self.cart, self.buy = kind == "view", kind == "add_to_cart", kind == "purchase"
            price = pd.to_numeric(attributed["price"], errors="coerce").fillna(0.0).to_numpy(float)
            self.rev = np.where(self.buy, price, 0.0)
            self.event_ts = _naive_utc(attributed["timestamp"])
        else:
            self.req = np.empty(0, np.int64)
            self.click = self.cart = self.buy = np.empty(0, bool)
            self.rev = np.empty(0)
            self.event_ts = np.empty(0, "datetime64[us]")

    def table(self, rec: Reconciliation, until: Any = None) -> pd.DataFrame:
        lists = np.ones(self.n, bool) if until is None else self.list_ts < until
        ev = np.ones(len(self.req), bool) if until is None else self.event_ts < until
        n = self.n
        clicks = np.bincount(self.req[ev & self.click], minlength=n)
        carts = np.bincount(self.req[ev & self.cart], minlength=n)
        buys = np.bincount(self.req[ev & self.buy], minlength=n)
        revenue = np.bincount(self.req[ev], weights=self.rev[ev], minlength=n)
        k = len(self.units)
        u = self.unit_codes
        per_unit = np.bincount(u[lists], minlength=k)
        vmin = np.full(k, np.iinfo(np.int64).max)
        vmax = np.full(k, -1)
        np.minimum.at(vmin, u[lists], self.variant_codes[lists])
        np.maximum.at(vmax, u[lists], self.variant_codes[lists])
        seen = per_unit > 0
        mixed = seen & (vmin != vmax)
        rec.units_in_several_variants = int(mixed.sum())
        if mixed.any():
            log.warning("%d units were served by several variants (excluded)", int(mixed.sum()))
            rec.exposures_of_dropped_units = int(per_unit[mixed].sum())
        keep = seen & ~mixed

        def per(values: np.ndarray) -> np.ndarray:
            return np.bincount(u[lists], weights=values[lists], minlength=k)[keep]

        units = pd.DataFrame({
            "unit": np.asarray(self.units)[keep],
            "variant": np.asarray(self.variants)[vmin[keep]],
            "exposures": per_unit[keep].astype(np.int64),
            "clicked": per((clicks > 0).astype(float)).astype(np.int64),
            "carted": per((carts > 0).astype(float)).astype(np.int64),
            "clicks": per(clicks.astype(float)).astype(np.int64),
            "purchases": per(buys.astype(float)).astype(np.int64),
            "revenue": per(revenue)})
        rec.units = len(units)
        return add_metrics(units)


def unit_outcomes(valid: pd.DataFrame, attributed: pd.DataFrame, exp: Experiment,
                  rec: Reconciliation) -> pd.DataFrame:
    """One row per unit: its variant, exposures and attributed outcomes, plus the metrics. A unit
    served by several variants (broken stickiness) is excluded and counted."""
    return _Coded(valid, attributed, exp).table(rec)


def add_metrics(units: pd.DataFrame) -> pd.DataFrame:
    e = units["exposures"].astype(float)
    return units.assign(
        ctr=units["clicked"] / e, add_to_cart_rate=units["carted"] / e,
        conversion=(units["purchases"] > 0).astype(float),
        revenue_per_user=units["revenue"].astype(float),
        clicks_per_user=units["clicks"].astype(float))


def daily_units(valid: pd.DataFrame, attributed: pd.DataFrame, exp: Experiment,
                days: list[str]) -> dict[str, pd.DataFrame]:
    """Cumulative unit tables at the end of each day, using only what was known then (lists
    served and events that happened before midnight): the sequential path and the chart."""
    coded = _Coded(valid, attributed, exp)
    out = {}
    for day in days:
        end = np.datetime64(pd.Timestamp(day) + pd.Timedelta(days=1), "us")
        units = coded.table(Reconciliation(), until=end)
        if len(units):
            out[day] = units
    return out


def experiment_days(exp: Experiment, ds: str) -> list[str]:
    start = exp.started().date()
    end = datetime.fromisoformat(ds).date()
    if exp.stopped_at:
        end = min(end, datetime.fromisoformat(exp.stopped_at).date())
    n = (end - start).days + 1
    return [(start + timedelta(days=i)).isoformat() for i in range(max(n, 0))]
