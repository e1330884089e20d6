"""The model report: how the trained hybrid compares with the baselines and why it was (not)
promoted. Written by the training DAG to ``reports/ds=<ds>/model.pdf`` and attached to the MLflow
run, so analysts and ML engineers read the same figures.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recomart.lake import Lake

log = logging.getLogger(__name__)

REPORT_FILE = "model.pdf"
#: Ranking metrics shown in the chart (MLflow-safe names, see ``registry.metric_key``).
CHART_METRICS = ("ndcg_at_10", "recall_at_20", "hr_at_10", "map_at_10")
TABLE_METRICS = (*CHART_METRICS, "user_coverage", "catalog_coverage", "rmse", "fit_seconds")
MODEL_ORDER = ("random", "toppop", "ease", "svd", "buy_again", "hybrid", "champion")
PROTOCOL_TEXT = {
    "explore": "explore protocol: one global time cut (the last 20% of the time span), every model "
               "trained on all events before it; relevant = items new to the user, purchased or "
               "rated >= 4 after the cut; the user's earlier items are not recommended.",
    "next_basket": "repeat-aware next-basket protocol: per user with >= 2 orders the last order is "
                   "held out and its items are relevant; every item is rankable, including ones "
                   "bought before.",
}
LABELS = {"ndcg_at_10": "NDCG@10", "recall_at_20": "Recall@20", "hr_at_10": "HR@10",
          "map_at_10": "MAP@10", "user_coverage": "User cov.", "catalog_coverage": "Catalog cov.",
          "rmse": "RMSE", "fit_seconds": "Fit s"}


def ordered_models(results: Mapping[str, Any]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in results]
    return known + sorted(m for m in results if m not in known)


def metrics_chart(results: Mapping[str, Mapping[str, float]],
                  metrics: Sequence[str] = CHART_METRICS) -> bytes:
    """Grouped bars: one group per ranking metric, one bar per model (PNG bytes)."""
    import matplotlib
    from matplotlib.figure import Figure

    from recomart.reports.charts import PALETTE, STYLE

    models = ordered_models(results)
    metrics = [m for m in metrics if any(m in results[x] for x in models)]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7.0, 2.8), dpi=150, layout="constrained")
        ax = fig.subplots()
        width = 0.8 / max(len(models), 1)
        for i, model in enumerate(models):
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(metrics))]
            ys = [float(results[model].get(m, 0.0) or 0.0) for m in metrics]
            ax.bar(xs, ys, width=width * 0.95, label=model, color=PALETTE[i % len(PALETTE)])
        ax.set_xticks(range(len(metrics)), [LABELS.get(m, m) for m in metrics])
        ax.set_title("Ranking quality on the time-based holdout (higher is better)", loc="left")
        ax.grid(axis="x", visible=False)
        ax.legend(ncols=min(len(models), 5), loc="upper left")
        top = max([float(results[m].get(k, 0.0) or 0.0) for m in models for k in metrics] + [0.01])
        ax.set_ylim(0, top * 1.25)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=150, facecolor="white")
    return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def lift_rows(results: Mapping[str, Mapping[str, float]], model: str = "hybrid",
              baseline: str = "toppop", metrics: Sequence[str] = CHART_METRICS) -> list[list[str]]:
    """``model`` relative to ``baseline`` per metric (the one comparison a reader wants)."""
    rows = []
    if model not in results or baseline not in results:
        return rows
    for m in metrics:
        a, b = results[model].get(m), results[baseline].get(m)
        if a is None or b is None:
            continue
        lift = f"{(a / b - 1) * 100:+.1f}%" if b else "n/a"
        rows.append([LABELS.get(m, m), _cell(float(a)), _cell(float(b)), lift])
    return rows


def build_model_report(lake: Lake, ds: str, *, results: Mapping[str, Mapping[str, float]],
                       decision: Mapping[str, Any], training: Mapping[str, Any],
                       run_id: str | None = None, selection: Mapping[str, Any] | None = None) -> Path:
    """Write ``reports/ds=<ds>/model.pdf`` (and ``reports/latest/model.pdf``); returns its path."""
    from recomart.reports.pdf import GOOD, WARN, ReportPDF, Styled, publish

    pdf = ReportPDF("Model report", ds, run_id)
    promoted = decision.get("decision") == "promoted"
    pdf.title_block(
        "Model report", f"{decision.get('model', 'recomart_hybrid')} trained on data up to {ds}",
        [("Candidate version", str(decision.get("candidate_version", "–"))),
         ("Decision", Styled(str(decision.get("decision", "–")).upper(), GOOD if promoted else WARN,
                             bold=True)),
         ("Champion now", f"v{decision.get('champion_version', '–')}"),
         ("Promotion metric", f"{decision.get('metric', '')} (margin {decision.get('margin', '')})"),
         ("MLflow run", run_id or "–")])

    selection = selection or {}
    protocol = selection.get("protocol") or "explore"
    selected = selection.get("selected") or "hybrid"
    pdf.section("Metrics against the baselines")
    pdf.para(f"All models (and the current champion, re-scored: its recipe refitted on the same "
             f"training part) are evaluated on one holdout, the {PROTOCOL_TEXT.get(protocol, protocol)}"
             + (f" Repeat share of order lines: {selection.get('repeat_share')} (repeat-heavy: "
                f"{selection.get('repeat_heavy')})." if selection.get("repeat_share") else ""))
    models = ordered_models(results)
    cols = [m for m in TABLE_METRICS if any(m in results[x] for x in models)]
    rows = [[Styled(m + (" (re-scored)" if m == "champion" else ""), None, bold=(m == selected)),
             *(_cell(results[m].get(c)) for c in cols)] for m in models]
    pdf.data_table(["model", *(LABELS.get(c, c) for c in cols)], rows)
    if models:
        pdf.figure(metrics_chart(results))
    lifts = lift_rows(results)
    if lifts:
        pdf.subsection("Hybrid vs most-popular")
        pdf.data_table(["metric", "hybrid", "toppop", "lift"], lifts)
    if selection.get("why"):
        pdf.takeaway(f"Registered: {selected}. Why: {selection['why']}.")
    other = selection.get("other") or {}
    if other:
        name = selection.get("other_name") or "other protocol"
        pdf.subsection(f"Baselines on the {name} protocol (reported, not used for selection)")
        pdf.para(PROTOCOL_TEXT.get(name, name))
        ocols = [m for m in TABLE_METRICS if any(m in other[x] for x in other)]
        pdf.data_table(["model", *(LABELS.get(c, c) for c in ocols)],
                       [[m, *(_cell(other[m].get(c)) for c in ocols)] for m in ordered_models(other)])

    pdf.section("Promotion decision")
    pdf.data_table(["", "value"], [
        ["candidate", f"v{decision.get('candidate_version')}: {_cell(decision.get('candidate_value'))}"],
        ["champion re-scored on this holdout", f"v{decision.get('previous_champion_version')}: "
                                               f"{_cell(decision.get('previous_champion_value'))}"],
        ["champion's logged figure (its own holdout)",
         _cell(decision.get("previous_champion_logged_value"))],
        ["how the champion was re-scored", selection.get("champion_how") or "–"],
        ["rule", f"promote iff candidate > champion + {decision.get('margin')}"],
        ["decision", f"{decision.get('decision')} — {decision.get('reason')}"],
    ])

    pdf.section("Training data")
    facts = [[k, _cell(v)] for k, v in training.items() if not isinstance(v, dict | list)]
    tables = training.get("tables") or {}
    facts += [[f"curated/{t}", f"v{i.get('version')} ({i.get('rows', '–')} rows)"]
              for t, i in tables.items() if isinstance(i, dict)]
    features = training.get("features") or {}
    facts += [[f"features/{t}", f"v{i.get('version')} ({i.get('rows', '–')} rows)"]
              for t, i in features.items() if isinstance(i, dict)]
    if facts:
        pdf.data_table(["input", "value"], facts)
    path = publish(lake, ds, REPORT_FILE, pdf.to_bytes())
    log.info("model report written to %s", path)
    return path
