"""The experiment readout PDF: what was compared, the decision and why, per-variant figures, lift
with intervals, cumulative lift by day, the SRM check, sample size reached and the reconciliation
of exposures. Built from ``readout.json`` only (``recomart.experiments.analysis``), so the PDF,
the CLI and the promotion gate read the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recomart.lake import Lake
from recomart.reports.pdf import BAD, GOOD, GREY, WARN, ReportPDF, Styled, fmt_int, fmt_pct

log = logging.getLogger(__name__)

DECISION_COLOURS = {"treatment_better": GOOD, "control_better": BAD, "blocked_srm": BAD,
                    "no_difference": GREY, "keep_running": WARN}
SECTIONS = ("Decision", "Per-variant results", "Lift of the primary metric", "Secondary metrics",
            "Cumulative lift by day", "Sample-ratio mismatch check", "Sample size",
            "Exposure reconciliation")


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}g}"


def _interval(lo: float | None, hi: float | None, pct: bool = False) -> str:
    if lo is None or hi is None:
        return "n/a"
    if pct:
        return f"[{100 * lo:+.2f}%, {100 * hi:+.2f}%]"
    return f"[{lo:+.4g}, {hi:+.4g}]"


def lift_chart(daily: list[Mapping[str, Any]], metric: str) -> bytes | None:
    """Cumulative difference by day with the fixed (Welch) and always-valid intervals."""
    rows = [d for d in daily if "diff" in d]
    if not rows:
        return None
    from recomart.reports.charts import PALETTE, _figure, _png

    days = [d["day"] for d in rows]
    with _figure(2.8) as (fig, axes):
        ax = axes[0][0]
        x = range(len(days))
        ax.fill_between(x, [d["seq_low"] for d in rows], [d["seq_high"] for d in rows],
                        color=PALETTE[1], alpha=0.18, label="always-valid interval")
        ax.fill_between(x, [d["ci_low"] for d in rows], [d["ci_high"] for d in rows],
                        color=PALETTE[0], alpha=0.25, label="fixed-horizon 95% interval")
        ax.plot(x, [d["diff"] for d in rows], color=PALETTE[0], marker="o", ms=3,
                label="cumulative difference")
        ax.axhline(0, color="black", lw=0.8)
        step = max(1, -(-len(days) // 8))
        ax.set_xticks(list(x)[::step], [d[5:] for d in days[::step]])
        ax.set_xlabel(f"day (month-day, {days[0][:4]})")
        ax.set_title(f"Treatment − control, {metric}, cumulative by day", loc="left")
        ax.legend(loc="upper left", ncols=3)
        return _png(fig)


def build_pdf(readout: Mapping[str, Any]) -> bytes:
    r = readout
    decision = r["decision"]
    pdf = ReportPDF("experiment readout", r.get("ds", ""), r.get("run_id"))
    pdf.alias_nb_pages()
    variants = r["variants"]
    pdf.title_block(f"Experiment {r['experiment']}",
                    f"revision {r['revision']} · unit {r['unit']} · primary metric "
                    f"{r['primary_metric']}", [
                        ("Decision", Styled(decision.replace("_", " ").upper(),
                                            DECISION_COLOURS.get(decision), bold=True)),
                        ("Started", r.get("started_at") or "n/a"),
                        ("Status", f"{r['status']}" + (f" (stopped {r['stopped_at']})"
                                                       if r.get("stopped_at") else "")),
                        ("Variants", ", ".join(f"{v['variant']} = {v['model']} ({v['weight']:g})"
                                               for v in variants)),
                        ("α / power / MDE", f"{r['alpha']} / {r['power']} / {r['mde']:.1%} relative"),
                        ("Attribution", f"{r['attribution_window_hours']:g} h after the served list"),
                    ])
    pdf.section("Decision")
    pdf.para(r["reason"], style="B")
    pdf.note("Rule: an SRM mismatch blocks every decision; the always-valid interval may stop the "
             "experiment at any daily look; otherwise the fixed-horizon test decides once every "
             "arm has the planned sample size.")

    pdf.section("Per-variant results")
    metrics = [r["primary_metric"], *r["secondary_metrics"]]
    headers = ["variant", "units", "exposures", "clicks", "purchases", "revenue", *metrics]
    rows = [[v["variant"], fmt_int(v["units"]), fmt_int(v["exposures"]), fmt_int(v["clicks"]),
             fmt_int(v["purchases"]), f"{v['revenue']:,.2f}", *(_num(v.get(m)) for m in metrics)]
            for v in variants]
    pdf.data_table(headers, rows, align=["L"] + ["R"] * (len(headers) - 1))

    pdf.section("Lift of the primary metric")
    lift_rows = []
    for c in r["primary"]:
        if c is None or "welch" not in c:
            continue
        w, s, cu = c["welch"], c["sequential"], c.get("cuped")
        lift_rows.append([f"{c['treatment']}: Welch", _num(w["diff"]), _interval(w["ci_low"], w["ci_high"]),
                          fmt_pct(w["rel_lift"], 2), _interval(w["rel_ci_low"], w["rel_ci_high"], True),
                          f"{w['p_value']:.3g}"])
        if cu:
            lift_rows.append([f"{c['treatment']}: CUPED", _num(cu["diff"]),
                              _interval(cu["ci_low"], cu["ci_high"]), fmt_pct(cu["rel_lift"], 2),
                              _interval(cu["rel_ci_low"], cu["rel_ci_high"], True),
                              f"{cu['p_value']:.3g}"])
        lift_rows.append([f"{c['treatment']}: sequential", _num(s["diff"]),
                          _interval(s["ci_low"], s["ci_high"]), "", "", f"{s['p_value']:.3g}"])
    if lift_rows:
        pdf.data_table(["test", "difference", "interval", "relative lift", "relative interval",
                        "p"], lift_rows, align=["L", "R", "R", "R", "R", "R"])
        cuped = next((c.get("cuped") for c in r["primary"] if c and c.get("cuped")), None)
        if cuped:
            pdf.note(f"CUPED covariate {r.get('cuped_covariate')}: θ = {cuped['theta']:.4g}, variance "
                     f"reduced by {cuped['variance_reduction']:.1%}.")
        else:
            pdf.note(f"CUPED not applied: {r.get('cuped_covariate') or 'no covariate'}.")
    else:
        pdf.note("No comparison yet: an arm has fewer than 2 units.")

    pdf.section("Secondary metrics")
    sec = [c for c in r["secondary"] if "welch" in c]
    if sec:
        pdf.data_table(["metric", "treatment", "difference", "relative lift", "p", "Holm p",
                        "significant"],
                       [[c["metric"], c["treatment"], _num(c["welch"]["diff"]),
                         fmt_pct(c["welch"]["rel_lift"], 2), f"{c['welch']['p_value']:.3g}",
                         f"{c['holm_p_value']:.3g}", "yes" if c["holm_significant"] else "no"]
                        for c in sec], align=["L", "L", "R", "R", "R", "R", "C"])
        pdf.note("Holm–Bonferroni across the secondary metrics; they inform, the primary decides.")
    else:
        pdf.note("No secondary metrics configured (or not enough units).")

    chart = lift_chart(r.get("daily", []), r["primary_metric"])
    pdf.section("Cumulative lift by day", min_space=(pdf.figure_height(chart) + 20) if chart else 40)
    if chart:
        pdf.figure(chart)
        last = [d for d in r["daily"] if "diff" in d][-1]
        pdf.takeaway(f"on {last['day']} the cumulative difference is {last['diff']:+.4g}, "
                     f"always-valid interval {_interval(last['seq_low'], last['seq_high'])}.")
    else:
        pdf.note("Not enough days with both arms yet.")

    pdf.section("Sample-ratio mismatch check")
    srm = r.get("srm")
    if srm:
        pdf.data_table(["variant", "observed units", "expected units"],
                       [[k, fmt_int(srm["observed"][k]), f"{srm['expected'][k]:,.1f}"]
                        for k in srm["observed"]], align=["L", "R", "R"])
        status = Styled("MISMATCH: decisions blocked" if srm["mismatch"] else "clean",
                        BAD if srm["mismatch"] else GOOD, bold=True)
        pdf.data_table(["χ²", "p-value", "threshold", "status"],
                       [[f"{srm['chi2']:.3f}", f"{srm['p_value']:.3g}", str(srm["threshold"]), status]],
                       align=["R", "R", "R", "L"])
    else:
        pdf.note("No units yet.")

    pdf.section("Sample size")
    ss = r["sample_size"]
    pdf.data_table(["required per group", "smallest group", "reached", "expected days left",
                    "units per day"],
                   [[fmt_int(ss["required_per_group"]), fmt_int(ss["smallest_group"]),
                     Styled("yes", GOOD, True) if ss["reached"] else Styled("no", WARN, True),
                     _num(ss["expected_days_left"], 3), _num(ss["units_per_day"], 4)]],
                   align=["R", "R", "C", "R", "R"])
    pdf.note(f"For an MDE of {r['mde']:.1%} relative on {r['primary_metric']} at the control's "
             f"observed mean and spread, α = {r['alpha']}, power {r['power']}.")

    pdf.section("Exposure reconciliation", min_space=95)
    rec = r.get("reconciliation") or {}
    if rec:
        pdf.data_table(["count", "value"], [[k.replace("_", " "), fmt_int(rec[k])] for k in (
            "landed", "replays_dropped", "not_in_experiment", "in_experiment", "quarantined", "valid",
            "units", "units_in_several_variants", "events_considered", "events_attributed",
            "attributed_by_request_id", "attributed_by_window") if k in rec], align=["L", "R"])
        pdf.note("landed = replays dropped + not in this experiment + in it; in it = quarantined + "
                 "valid (checked before the readout is written).")
        if rec.get("reasons"):
            pdf.data_table(["quarantine reason", "exposures"],
                           [[k, fmt_int(v)] for k, v in sorted(rec["reasons"].items())],
                           align=["L", "R"])
    return pdf.to_bytes()


def write_report(lake: Lake, readout: Mapping[str, Any], folder: Path) -> Path:
    path = lake.write_bytes(folder / "readout.pdf", build_pdf(readout))
    log.info("wrote %s", path)
    return path
