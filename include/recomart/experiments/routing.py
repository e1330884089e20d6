"""Experiments in the serving layer: which batch view serves a unit, and what its exposure records.

``ExperimentRouter`` (one per API process) keeps the running experiments and, for each variant,
the published batch view of the model version its reference resolves to
(``serving/<name>/v<version>/``, what training publishes for every registered version). A
request's unit (user id, or session id for session experiments) is assigned by the pure
``assignment.assign``; the variant's view serves it, and the exposure records the experiment,
revision, variant and assignment probability.

Rules (decided here, the issue is silent):

- An experiment is served only when *every* arm's view is loaded; otherwise none of its traffic
  is routed (serving a fallback to one arm would bias the comparison) and ``problems`` says why
  (``/readyz`` shows it).
- Experiments on the same unit type do not overlap: the one started first takes the unit.
- A refresh (every ``poll_s``) re-reads the definitions; a stopped experiment stops routing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from recomart.experiments import definitions
from recomart.experiments.assignment import Assignment, assign
from recomart.experiments.definitions import Experiment, Variant
from recomart.lake import Lake
from recomart.serving.refresh import BackgroundRefresh

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Routed:
    assignment: Assignment
    view: Any  # recomart.serving.batch_view.BatchView


def resolve_version(variant: Variant) -> int | None:
    """The registered version a ``models:/`` reference points to now (aliases move)."""
    if variant.version is not None:
        return variant.version
    from recomart import registry

    return registry.version_for_alias(variant.registered_name, variant.alias or "")


def load_variant_view(lake: Lake, variant: Variant, version: int):
    from recomart.publishing import serving_dir
    from recomart.serving.batch_view import load_view

    folder = serving_dir(lake, variant.registered_name, version)
    rel = folder.relative_to(lake.root).as_posix()
    return load_view(lake, {"path": rel, "model": variant.registered_name, "version": version,
                            "updated_at": f"experiment:{variant.model}"})


class ExperimentRouter(BackgroundRefresh):
    """Which experiment arm serves a unit, re-read from the lake every ``poll_s``."""

    thread_name = "experiments-refresh"

    def __init__(self, lake: Lake, poll_s: float = 30.0) -> None:
        self.lake, self.poll_s = lake, poll_s
        self.active: list[tuple[Experiment, dict[str, Any]]] = []
        self.problems: list[str] = []
        self._views: dict[tuple[str, int], Any] = {}
        self._init_refresh()
        self.refreshed_at = 0.0

    def refresh(self) -> None:
        """Reload definitions and views; on any failure keep serving the previous routing."""
        try:
            running = sorted(definitions.running(self.lake), key=lambda e: e.started_at)
        except Exception as exc:
            self.problems = [f"experiment definitions unreadable: {exc}"]
            log.warning("experiments not refreshed: %s", exc)
            return
        active, problems, used = [], [], {}
        for exp in running:
            views: dict[str, Any] = {}
            for v in exp.variants:
                try:
                    version = resolve_version(v)
                    if version is None:
                        raise LookupError(f"{v.model} resolves to no registered version")
                    key = (v.registered_name, version)
                    if key not in self._views:
                        self._views[key] = load_variant_view(self.lake, v, version)
                    views[v.name] = self._views[key]
                    used[key] = self._views[key]
                except Exception as exc:
                    problems.append(f"experiment {exp.name}: variant {v.name} ({v.model}) not "
                                    f"served: {type(exc).__name__}: {exc}")
            if len(views) == len(exp.variants):
                active.append((exp, views))
        self._views = used  # drop views no running experiment needs
        self.active, self.problems, self.refreshed_at = active, problems, time.time()
        if problems:
            log.warning("experiments: %s", "; ".join(problems))

    def route(self, unit: str, unit_id: Any) -> Routed | None:
        if unit_id is None:
            return None
        for exp, views in self.active:
            if exp.unit == unit and exp.started().timestamp() <= time.time():
                a = assign(exp, unit_id)
                return Routed(a, views[a.variant])
        return None

    def describe(self) -> dict[str, Any]:
        return {"active": [{"name": e.name, "revision": e.revision, "unit": e.unit,
                            "variants": {n: f"{v.model} v{v.version}" for n, v in views.items()}}
                           for e, views in self.active], "problems": self.problems}

