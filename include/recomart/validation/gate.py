"""The quality gate: the only place a run fails for data quality (after its reports are written),
and the only way staged curated versions become visible to readers (:func:`publish_validated`)."""

from __future__ import annotations

from typing import Any

from recomart.errors import PermanentError
from recomart.lake import Lake


class DataQualityError(PermanentError):
    """One or more datasets quarantined more than the allowed share of their rows."""


def summary_path(lake: Lake, ds: str):
    return lake.path("reports", f"ds={ds}", "validation_summary.json")


def quality_gate(lake: Lake, ds: str) -> dict[str, Any]:
    """Raise :class:`DataQualityError` naming each dataset over the threshold and its top reasons."""
    summary = lake.read_json(summary_path(lake, ds))
    threshold = summary["threshold"]
    failing = {name: d for name, d in summary["datasets"].items() if d["bad_ratio"] > threshold}
    if failing:
        lines = []
        for name, d in sorted(failing.items()):
            top = sorted(d["reasons"].items(), key=lambda kv: -kv[1])[:3]
            reasons = ", ".join(f"{r} ({n})" for r, n in top) or "no rows arrived"
            lines.append(f"{name}: {d['bad_ratio']:.1%} bad of {d['rows_in']} rows "
                         f"(threshold {threshold:.1%}); top reasons: {reasons}")
        raise DataQualityError(f"data quality gate failed for {ds}:\n" + "\n".join(lines))
    return {"logical_date": ds, "status": "pass", "threshold": threshold,
            "bad_ratios": {n: d["bad_ratio"] for n, d in summary["datasets"].items()}}


def publish_validated(lake: Lake, ds: str, run_id: str) -> dict[str, Any]:
    """Publish the curated versions the validation of ``ds`` staged, after re-checking its gate.

    Re-checking here (not trusting task order alone) means a caller that skips the gate still
    cannot publish a rejected snapshot.
    """
    from recomart.curated import publish

    quality_gate(lake, ds)
    summary = lake.read_json(summary_path(lake, ds))
    versions = {name: int(d["curated_version"]) for name, d in summary["datasets"].items()}
    pointer = publish(lake, ds, versions, run_id)
    return {"logical_date": ds, "status": "published", "versions": pointer["versions"],
            "validation_run_id": summary["run_id"],
            "read_versions": {f"curated/{n}": v for n, v in pointer["versions"].items()}}
