"""From unit outcomes to a readout: per-variant figures, the SRM check, the primary metric's
fixed-horizon (Welch, and CUPED when a covariate is there) and always-valid sequential tests,
Holm-adjusted secondary metrics, the sample size reached, and the decision with its reason.

Decision rule (written down because the issue leaves it open):

1. SRM mismatch (p < 0.001) → ``blocked_srm``: nothing else is trusted.
2. The always-valid sequence of the primary metric excludes 0 → ``treatment_better`` /
   ``control_better`` at any look (peeking is safe).
3. Else, once every arm has the planned sample size, the fixed-horizon test (CUPED when
   available, else Welch) decides: significant → better/worse; not significant →
   ``no_difference`` (no lift as large as the MDE was found).
4. Else ``keep_running`` (with the expected days left at the observed traffic).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from recomart.experiments import statistics as st
from recomart.experiments.definitions import Experiment

BINARY_METRICS = ("conversion",)
TREATMENT_BETTER, CONTROL_BETTER = "treatment_better", "control_better"
BLOCKED, NO_DIFFERENCE, KEEP_RUNNING = "blocked_srm", "no_difference", "keep_running"


def _arm(values: pd.Series) -> st.ArmSummary | None:
    x = values.to_numpy(dtype=float)
    return st.ArmSummary.from_values(x) if len(x) >= 2 else None


def required_sample_size(exp: Experiment, control: pd.Series) -> int | None:
    """Per-group size for the MDE (relative) at the control's observed mean and spread."""
    x = control.to_numpy(dtype=float)
    if len(x) < 2:
        return None
    mean = float(x.mean())
    try:
        if exp.primary_metric in BINARY_METRICS:
            return st.sample_size_proportions(mean, exp.mde, exp.alpha, exp.power)
        sd = float(x.std(ddof=1))
        if mean == 0 or sd == 0:
            return None
        return st.sample_size_means(sd, exp.mde * mean, exp.alpha, exp.power)
    except st.StatisticsError:
        return None


def _per_variant(exp: Experiment, units: pd.DataFrame, metrics: list[str]) -> list[dict[str, Any]]:
    rows = []
    for v in exp.variants:
        u = units[units["variant"] == v.name]
        row = {"variant": v.name, "model": v.model, "weight": v.weight,
               "probability": exp.probability(v.name), "units": len(u),
               "exposures": int(u["exposures"].sum()), "clicks": int(u["clicks"].sum()),
               "carted_lists": int(u["carted"].sum()), "purchases": int(u["purchases"].sum()),
               "revenue": float(u["revenue"].sum())}
        for m in metrics:
            row[m] = float(u[m].mean()) if len(u) else None
        rows.append(row)
    return rows


def _compare(exp: Experiment, units: pd.DataFrame, metric: str, treatment: str,
             with_cuped: bool) -> dict[str, Any] | None:
    c = units[units["variant"] == exp.control.name]
    t = units[units["variant"] == treatment]
    ca, ta = _arm(c[metric]), _arm(t[metric])
    if ca is None or ta is None:
        return None
    try:
        welch = st.welch_test(ca, ta, exp.alpha)
        seq = st.sequential_test(ca, ta, exp.alpha, tuning_n=exp.sequential_tuning_n)
    except st.StatisticsError as exc:
        return {"metric": metric, "treatment": treatment, "error": str(exc)}
    out: dict[str, Any] = {"metric": metric, "treatment": treatment, "welch": welch.as_dict(),
                           "sequential": seq.as_dict(), "cuped": None}
    if with_cuped and "covariate" in units.columns:
        cc, tc = c["covariate"].astype(float), t["covariate"].astype(float)
        if cc.notna().all() and tc.notna().all() and np.nanvar(np.r_[cc, tc]) > 0:
            try:
                cup = st.cuped_test(c[metric].to_numpy(float), cc.to_numpy(), t[metric].to_numpy(float),
                                    tc.to_numpy(), exp.alpha)
                out["cuped"] = {**cup.comparison.as_dict(), "theta": cup.theta,
                                "variance_reduction": cup.variance_reduction}
            except st.StatisticsError as exc:
                out["cuped_error"] = str(exc)
    return out


def analyse(exp: Experiment, units: pd.DataFrame, *, daily: Mapping[str, pd.DataFrame] | None = None,
            reconciliation: Mapping[str, Any] | None = None, units_per_day: float | None = None
            ) -> dict[str, Any]:
    """The readout as plain JSON (the PDF, the CLI and the promotion gate read it)."""
    metrics = [exp.primary_metric, *exp.secondary_metrics]
    per_variant = _per_variant(exp, units, metrics)
    counts = {r["variant"]: r["units"] for r in per_variant}
    srm = st.srm_check(counts, exp.weights).as_dict() if sum(counts.values()) else None
    treatments = [v.name for v in exp.variants[1:]]
    primary = [_compare(exp, units, exp.primary_metric, t, with_cuped=True) for t in treatments]
    secondary = [c for t in treatments for m in exp.secondary_metrics
                 if (c := _compare(exp, units, m, t, with_cuped=False)) is not None]
    ok = [c for c in secondary if "welch" in c]
    adjusted, rejected = st.holm([c["welch"]["p_value"] for c in ok], exp.alpha)
    for c, p, r in zip(ok, adjusted, rejected, strict=True):
        c["holm_p_value"], c["holm_significant"] = p, r
    control_units = units.loc[units["variant"] == exp.control.name, exp.primary_metric]
    needed = required_sample_size(exp, control_units)
    smallest = min(counts.values()) if counts else 0
    days_left = None
    if needed and units_per_day and smallest < needed:
        days_left = st.expected_days(needed - smallest, exp.weights, units_per_day)
    decision, reason = decide(exp, srm, primary[0] if primary else None, needed, smallest)
    return {
        "experiment": exp.name, "revision": exp.revision, "status": exp.status,
        "unit": exp.unit, "primary_metric": exp.primary_metric,
        "secondary_metrics": exp.secondary_metrics, "alpha": exp.alpha, "power": exp.power,
        "mde": exp.mde, "attribution_window_hours": exp.attribution_window_hours,
        "started_at": exp.started_at, "stopped_at": exp.stopped_at,
        "variants": per_variant, "srm": srm, "primary": primary, "secondary": secondary,
        "sample_size": {"required_per_group": needed, "smallest_group": smallest,
                        "reached": bool(needed and smallest >= needed),
                        "expected_days_left": days_left, "units_per_day": units_per_day},
        "daily": daily_path(exp, daily or {}), "reconciliation": dict(reconciliation or {}),
        "decision": decision, "reason": reason,
    }


def decide(exp: Experiment, srm: Mapping[str, Any] | None, primary: Mapping[str, Any] | None,
           needed: int | None, smallest: int) -> tuple[str, str]:
    if srm is None or primary is None or "welch" not in primary:
        why = primary.get("error") if primary else "not enough units in every arm yet"
        return KEEP_RUNNING, f"no comparison possible: {why}"
    if srm["mismatch"]:
        return BLOCKED, (f"sample-ratio mismatch: χ² p = {srm['p_value']:.2g} < {srm['threshold']} "
                         f"for configured weights {exp.weights}; fix assignment/logging before "
                         "reading any result")
    seq = primary["sequential"]
    m = exp.primary_metric
    if seq["significant"]:
        better = seq["diff"] > 0
        return (TREATMENT_BETTER if better else CONTROL_BETTER,
                f"always-valid {1 - exp.alpha:.0%} interval of the {m} difference "
                f"[{seq['ci_low']:+.4g}, {seq['ci_high']:+.4g}] excludes 0 (safe to stop now)")
    fixed = primary["cuped"] or primary["welch"]
    kind = "CUPED" if primary["cuped"] else "Welch"
    if needed and smallest >= needed:
        if fixed["p_value"] < exp.alpha:
            better = fixed["diff"] > 0
            return (TREATMENT_BETTER if better else CONTROL_BETTER,
                    f"planned sample size reached ({smallest:,} ≥ {needed:,} per group) and {kind} "
                    f"p = {fixed['p_value']:.3g} < α = {exp.alpha}")
        return NO_DIFFERENCE, (f"planned sample size reached ({smallest:,} ≥ {needed:,} per group); "
                               f"{kind} p = {fixed['p_value']:.3g} ≥ α: no lift of "
                               f"{exp.mde:.0%} or more")
    need = f"{needed:,}" if needed else "unknown"
    return KEEP_RUNNING, (f"{smallest:,} of {need} units per group; the always-valid interval "
                          f"[{seq['ci_low']:+.4g}, {seq['ci_high']:+.4g}] still contains 0")


def daily_path(exp: Experiment, daily: Mapping[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Cumulative lift of the primary metric at the end of each day, fixed and sequential."""
    out = []
    if len(exp.variants) < 2:
        return out
    treatment = exp.variants[1].name
    for day in sorted(daily):
        units = daily[day]
        cmp_ = _compare(exp, units, exp.primary_metric, treatment, with_cuped=False)
        row: dict[str, Any] = {"day": day, "units": len(units)}
        if cmp_ and "welch" in cmp_:
            w, s = cmp_["welch"], cmp_["sequential"]
            row.update(diff=w["diff"], rel_lift=w["rel_lift"], ci_low=w["ci_low"],
                       ci_high=w["ci_high"], seq_low=s["ci_low"], seq_high=s["ci_high"],
                       seq_significant=s["significant"])
        out.append(row)
    return out


def is_clean_win(readout: Mapping[str, Any]) -> bool:
    """What the promotion gate asks: treatment better and a clean SRM check."""
    srm = readout.get("srm")
    return (readout.get("decision") == TREATMENT_BETTER and srm is not None
            and not srm["mismatch"] and math.isfinite(srm["p_value"]))
