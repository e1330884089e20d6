"""Experiment definitions: what is compared, on which unit, for which metric, and how sure.

One JSON file per experiment in the lake (``experiments/definitions/<name>.json``, written
atomically). A definition is immutable while it runs: to change it (weights, models, metrics),
stop it and create it again. Each creation is a new *revision* with a new salt, so changing the
weights re-shuffles assignment instead of silently moving some units between arms. Stopped
revisions are kept in ``experiments/definitions/_history/<name>.r<revision>.json``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from recomart.errors import PermanentError
from recomart.lake import Lake

METRICS = ("ctr", "conversion", "revenue_per_user", "add_to_cart_rate", "clicks_per_user")
METRIC_HELP = {
    "ctr": "per unit: share of the unit's served lists with at least one attributed click",
    "conversion": "per unit: 1 when the unit bought a recommended item in the window, else 0",
    "revenue_per_user": "per unit: revenue of attributed purchases",
    "add_to_cart_rate": "per unit: share of served lists with an attributed add-to-cart",
    "clicks_per_user": "per unit: attributed clicks",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MODEL_REF = re.compile(r"^models:/[A-Za-z0-9_.-]+(@[A-Za-z0-9_-]+|/\d+)$")
FOLDER = "definitions"


class ExperimentError(PermanentError):
    """A definition that cannot be created, found or changed."""


class Variant(BaseModel):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")
    model: str = Field(description="models:/<name>@<alias> or models:/<name>/<version>")
    weight: float = Field(gt=0)

    @field_validator("model")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not _MODEL_REF.match(value):
            raise ValueError(f"model reference {value!r} is not models:/<name>@<alias> or "
                             "models:/<name>/<version>")
        return value

    @property
    def registered_name(self) -> str:
        return self.model.removeprefix("models:/").split("@")[0].split("/")[0]

    @property
    def alias(self) -> str | None:
        return self.model.split("@", 1)[1] if "@" in self.model else None

    @property
    def version(self) -> int | None:
        tail = self.model.removeprefix("models:/")
        return int(tail.split("/")[1]) if "/" in tail else None


class Experiment(BaseModel):
    name: str
    variants: list[Variant] = Field(min_length=2, max_length=8,
                                    description="first variant is the control")
    unit: Literal["user", "session"] = "user"
    primary_metric: str = "ctr"
    secondary_metrics: list[str] = Field(default_factory=list)
    mde: float = Field(default=0.05, gt=0, description="minimum detectable relative lift")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    attribution_window_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    sequential_tuning_n: int = Field(
        default=5000, ge=10, description="total units at which the always-valid interval is "
                                         "tightest (fixed in advance: it must not follow the data)")
    description: str = ""
    revision: int = 1
    salt: str = ""
    status: Literal["running", "stopped"] = "running"
    created_at: str = ""
    started_at: str = ""
    stopped_at: str | None = None
    stop_reason: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"name {value!r}: use 1-64 of a-z 0-9 _ - (starting with a letter or digit)")
        return value

    @field_validator("primary_metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; metrics are {', '.join(METRICS)}")
        return value

    @field_validator("secondary_metrics")
    @classmethod
    def _metrics(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if v not in METRICS]
        if bad:
            raise ValueError(f"unknown metrics {bad}; metrics are {', '.join(METRICS)}")
        return values

    @model_validator(mode="after")
    def _distinct(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must differ, got {names}")
        if self.primary_metric in self.secondary_metrics:
            raise ValueError("the primary metric cannot also be a secondary metric")
        return self

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @property
    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self.variants}

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def probability(self, name: str) -> float:
        total = sum(v.weight for v in self.variants)
        v = self.variant(name)
        return 0.0 if v is None else v.weight / total

    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)


def make_salt(name: str, revision: int, variants: list[Variant], created_at: str) -> str:
    """A salt that changes with the revision and the weights (assignment re-shuffles)."""
    spec = ";".join(f"{v.name}={v.weight:g}" for v in variants)
    return hashlib.sha256(f"{name}|r{revision}|{spec}|{created_at}".encode()).hexdigest()[:16]


def _path(lake: Lake, name: str):
    return lake.path("experiments", FOLDER, f"{name}.json")


def load(lake: Lake, name: str) -> Experiment:
    path = _path(lake, name)
    if not path.exists():
        known = ", ".join(e.name for e in list_all(lake)) or "none yet"
        raise ExperimentError(f"no experiment {name!r} in {path.parent} (known: {known})")
    return Experiment.model_validate(lake.read_json(path))


def list_all(lake: Lake) -> list[Experiment]:
    folder = lake.path("experiments", FOLDER)
    if not folder.is_dir():
        return []
    return [Experiment.model_validate(lake.read_json(p)) for p in sorted(folder.glob("*.json"))]


def running(lake: Lake) -> list[Experiment]:
    return [e for e in list_all(lake) if e.status == "running"]


def create(lake: Lake, spec: dict[str, Any], now: datetime | None = None) -> Experiment:
    """Validate and store a new experiment (or a new revision of a stopped one)."""
    now = now or datetime.now(UTC)
    name = spec.get("name", "")
    path = _path(lake, str(name))
    revision = 1
    if _NAME.match(str(name)) and path.exists():
        current = Experiment.model_validate(lake.read_json(path))
        if current.status == "running":
            raise ExperimentError(
                f"experiment {name!r} is running (revision {current.revision}); a running "
                f"experiment cannot change: `recomart experiment stop {name}` first, then create "
                "it again (a new revision gets a new salt)")
        revision = current.revision + 1
    stamp = now.astimezone(UTC).isoformat(timespec="seconds")
    data = {**spec, "revision": revision, "status": "running", "created_at": stamp,
            "started_at": spec.get("started_at") or stamp, "stopped_at": None, "stop_reason": None}
    try:
        exp = Experiment.model_validate({**data, "salt": "pending"})
    except ValueError as exc:
        raise ExperimentError(f"invalid experiment: {exc}") from exc
    exp = exp.model_copy(update={"salt": make_salt(exp.name, revision, exp.variants, stamp)})
    if revision > 1:
        lake.write_json(lake.path("experiments", FOLDER, "_history",
                                  f"{name}.r{revision - 1}.json"), lake.read_json(path))
    lake.write_json(path, exp.model_dump(mode="json"))
    return exp


def stop(lake: Lake, name: str, reason: str = "stopped by hand", now: datetime | None = None
         ) -> Experiment:
    exp = load(lake, name)
    if exp.status == "stopped":
        raise ExperimentError(f"experiment {name!r} is already stopped (at {exp.stopped_at})")
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    exp = exp.model_copy(update={"status": "stopped", "stopped_at": stamp, "stop_reason": reason})
    lake.write_json(_path(lake, name), exp.model_dump(mode="json"))
    return exp
