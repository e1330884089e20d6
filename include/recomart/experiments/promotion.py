"""The readout in MLflow, and gated promotion: ``@champion`` moves to the challenger only when its
experiment concludes the challenger is better with a clean SRM check (setting
``RECOMART_EXPERIMENT_GATED_PROMOTION``, off by default). Every decision is written on the
challenger's model version as tags (``experiment.decision``, ``experiment.reason``, ...), promoted
or not, so the registry UI shows why a model did or did not become the champion.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recomart import registry
from recomart.experiments import analysis
from recomart.experiments.definitions import Experiment

log = logging.getLogger(__name__)


def log_readout(readout: Mapping[str, Any], pdf: Path | None) -> str:
    """One MLflow run per (experiment, revision, ds) in ``recomart_experiments``; a re-run of the
    same date logs into the same run. Returns the run id."""
    tags = {"experiment": readout["experiment"], "revision": str(readout["revision"]),
            "ds": readout["ds"]}
    run_id = registry.find_run(registry.EXPERIMENTS_EXPERIMENT, tags)
    if run_id is None:
        with registry.start_run(registry.EXPERIMENTS_EXPERIMENT,
                                run_name=f"{readout['experiment']}-r{readout['revision']}-{readout['ds']}",
                                tags=tags) as run:
            run_id = run.info.run_id
    metrics: dict[str, float] = {}
    for v in readout["variants"]:
        metrics[f"{v['variant']}.units"] = v["units"]
        metrics[f"{v['variant']}.exposures"] = v["exposures"]
        for m in [readout["primary_metric"], *readout["secondary_metrics"]]:
            if v.get(m) is not None:
                metrics[f"{v['variant']}.{m}"] = v[m]
    for c in readout["primary"]:
        if c and "welch" in c:
            metrics[f"{c['treatment']}.rel_lift"] = c["welch"]["rel_lift"]
            metrics[f"{c['treatment']}.p_value"] = c["welch"]["p_value"]
            metrics[f"{c['treatment']}.seq_low"] = c["sequential"]["ci_low"]
            metrics[f"{c['treatment']}.seq_high"] = c["sequential"]["ci_high"]
    if readout.get("srm"):
        metrics["srm.p_value"] = readout["srm"]["p_value"]
    registry.log_metrics(metrics, run_id=run_id)
    registry.set_tags({"decision": readout["decision"], "reason": readout["reason"][:5000]},
                      run_id=run_id)
    registry.log_dict(dict(readout), "readout.json", run_id=run_id)
    if pdf is not None:
        registry.log_artifact(pdf, run_id=run_id)
    return run_id


def _resolve(ref_name: str, alias: str | None, version: int | None) -> int | None:
    return version if version is not None else registry.version_for_alias(ref_name, alias or "")


def gate(exp: Experiment, readout: Mapping[str, Any], enabled: bool) -> dict[str, Any]:
    """Apply (or only record) the promotion decision for a two-arm champion/challenger test."""
    control, treatment = exp.variants[0], exp.variants[1]
    name = treatment.registered_name
    result: dict[str, Any] = {"experiment": exp.name, "revision": exp.revision, "enabled": enabled,
                              "model": name, "promoted": False}
    if control.registered_name != name:
        result["reason"] = "arms are different registered models: nothing to promote"
        return result
    try:
        t_version = _resolve(name, treatment.alias, treatment.version)
        c_version = _resolve(name, control.alias, control.version)
    except Exception as exc:  # registry unreachable or model unknown: record, never guess
        result["reason"] = f"registry lookup failed: {type(exc).__name__}: {exc}"
        return result
    result.update(treatment_version=t_version, control_version=c_version)
    if t_version is None:
        result["reason"] = f"{treatment.model} resolves to no version"
        return result
    win = analysis.is_clean_win(readout)
    if not win:
        result["reason"] = f"not a clean win: {readout['decision']} ({readout['reason']})"
    elif not enabled:
        result["reason"] = ("challenger won with a clean SRM check, but gated promotion is off "
                            "(RECOMART_EXPERIMENT_GATED_PROMOTION)")
    elif registry.version_for_alias(name, registry.CHAMPION) == t_version:
        result["reason"] = f"v{t_version} already holds @champion"
    else:
        registry.set_alias(name, registry.CHAMPION, t_version)
        if treatment.alias and treatment.alias != registry.CHAMPION:
            registry.delete_alias(name, treatment.alias)
        result.update(promoted=True, reason=f"{readout['reason']}; SRM clean")
    registry.set_version_tags(name, t_version, {
        "experiment.name": exp.name, "experiment.revision": exp.revision,
        "experiment.ds": readout["ds"], "experiment.decision": readout["decision"],
        "experiment.promoted": result["promoted"], "experiment.reason": result["reason"][:5000],
        "experiment.decided_at": datetime.now(UTC).isoformat(timespec="seconds")})
    log.info("gated promotion %s v%s: %s", name, t_version, result["reason"])
    return result
