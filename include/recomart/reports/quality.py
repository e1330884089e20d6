"""The data-quality PDF: what validation let through, what it quarantined and why, and from what.

Built only from the lake (validation summary, run history, curated and quarantine tables), so it
can be regenerated for any logical date with ``recomart report quality --date``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recomart.lake import Lake
from recomart.reports import charts, read_curated, read_history, read_quarantine, read_summary
from recomart.reports.pdf import (
    BAD,
    GOOD,
    GREY,
    ReportPDF,
    Styled,
    fmt_int,
    fmt_pct,
    publish,
    status_cell,
)
from recomart.tables import DATASETS

log = logging.getLogger(__name__)

META_COLUMNS = {"reason", "detail", "_source", "_ds", "_run_id"}


def build_quality_report(lake: Lake, ds: str, *, history_runs: int = 12, samples_per_reason: int = 3
                         ) -> Path:
    """Write ``reports/ds=<ds>/data_quality.pdf`` (and the ``reports/latest`` copy); return its path."""
    summary = read_summary(lake, ds)
    datasets = ordered_datasets(summary)
    pdf = ReportPDF("Data-quality report", ds, summary.get("run_id"))
    _title(pdf, lake, ds, summary)
    _reconciliation(pdf, summary, datasets)
    _reasons(pdf, summary, datasets)
    _checks(pdf, summary, datasets)
    _null_rates(pdf, summary, datasets)
    _distributions(pdf, lake, ds, summary)
    _trends(pdf, summary, read_history(lake), ds, history_runs)
    _lineage(pdf, lake, summary, datasets)
    _samples(pdf, lake, ds, datasets, summary, samples_per_reason)
    return publish(lake, ds, "data_quality.pdf", pdf.to_bytes())


def ordered_datasets(summary: dict[str, Any]) -> list[str]:
    """Canonical dataset order first, then anything else the summary holds."""
    present = summary.get("datasets", {}) or {}
    return [d for d in DATASETS if d in present] + sorted(d for d in present if d not in DATASETS)


def reconciliation(entry: dict[str, Any]) -> tuple[bool, str]:
    """Whether rows in = curated + quarantined, and the equation as text."""
    rows_in, cur, quar = (int(entry.get(k) or 0) for k in ("rows_in", "curated", "quarantined"))
    if rows_in == cur + quar:
        return True, f"{rows_in:,} = {cur:,} + {quar:,}"
    return False, f"{rows_in:,} ≠ {cur:,} + {quar:,} ({rows_in - cur - quar:+,} unaccounted)"


# ---- sections ---------------------------------------------------------------------------------
def _title(pdf: ReportPDF, lake: Lake, ds: str, summary: dict[str, Any]) -> None:
    entries = summary.get("datasets", {}) or {}
    total_in = sum(int(e.get("rows_in") or 0) for e in entries.values())
    total_q = sum(int(e.get("quarantined") or 0) for e in entries.values())
    docs = summary.get("gx_data_docs")
    docs_abs = (lake.root / docs) if docs else None
    pdf.title_block(
        "RecoMart · Data-quality report",
        f"Validation of the batch run for logical date {ds}",
        [("Logical date", summary.get("logical_date", ds)),
         ("Run id", summary.get("run_id", "n/a")),
         ("Generated at", summary.get("generated_at", "n/a")),
         ("Overall status", status_cell(summary.get("status"))),
         ("Bad-row threshold", f"{fmt_pct(summary.get('threshold'))} quarantined rows per dataset"),
         ("Rows validated", f"{total_in:,} in, {total_q:,} quarantined "
                            f"({fmt_pct(total_q / total_in if total_in else 0)})"),
         ("GX Data Docs", str(docs_abs) if docs_abs else "not produced for this run")],
    )
    if docs_abs is not None:
        exists = docs_abs.exists()
        pdf.link_line("Open the Great Expectations Data Docs: ", docs_abs.as_uri() if exists else docs,
                      docs_abs.as_uri() if exists else None)
        if not exists:
            pdf.note("(the Data Docs folder is not in this lake any more)")
    pdf.note("A dataset fails when its quarantined share exceeds the threshold. Every input row is either "
             "curated or quarantined with a reason code, so rows in = curated + quarantined.")


def _reconciliation(pdf: ReportPDF, summary: dict[str, Any], datasets: list[str]) -> None:
    pdf.section("Summary and reconciliation", min_space=40)
    rows = []
    totals = np.zeros(3, dtype=np.int64)
    all_ok = True
    for name in datasets:
        e = summary["datasets"][name]
        ok, equation = reconciliation(e)
        all_ok &= ok
        totals += [int(e.get(k) or 0) for k in ("rows_in", "curated", "quarantined")]
        rows.append([name, fmt_int(e.get("rows_in")), fmt_int(e.get("curated")),
                     fmt_int(e.get("quarantined")),
                     Styled(f"OK  {equation}" if ok else f"MISMATCH  {equation}", GOOD if ok else BAD,
                            bold=not ok),
                     fmt_pct(e.get("bad_ratio"), 2), status_cell(e.get("status"))])
    if not rows:
        pdf.note("The validation summary lists no datasets.")
        return
    bad_total = totals[2] / totals[0] if totals[0] else 0.0
    balanced = totals[0] == totals[1] + totals[2]
    rows.append([Styled("all datasets", bold=True), fmt_int(totals[0]), fmt_int(totals[1]),
                 fmt_int(totals[2]),
                 Styled(f"{totals[0]:,} = {totals[1]:,} + {totals[2]:,}" if balanced else "see rows above",
                        bold=True), fmt_pct(bad_total, 2),
                 status_cell(summary.get("status"))])
    pdf.data_table(["Dataset", "Rows in", "Curated", "Quarantined", "Reconciliation (in = curated + quar.)",
                    "Bad ratio", "Status"], rows, widths=[17, 13, 13, 14, 40, 11, 10],
                   align=["L", "R", "R", "R", "L", "R", "C"], wrap=[4])
    if all_ok:
        pdf.para("Every dataset reconciles: no row was lost between landing and the curated/quarantine "
                 "zones.")
    else:
        pdf.para("Some datasets do not reconcile: rows went missing between landing and the curated/"
                 "quarantine zones. Investigate before using this run.", style="B", color=BAD)


def _reasons(pdf: ReportPDF, summary: dict[str, Any], datasets: list[str]) -> None:
    pdf.section("Quarantine reasons")
    pdf.note("Reason codes assigned by validation to every quarantined row; share is of the dataset's "
             "rows in.")
    clean = [n for n in datasets if not any(int(v) for v in (summary["datasets"][n].get("reasons") or {})
                                            .values())]
    if clean:
        pdf.para(f"No rows quarantined in: {', '.join(clean)}.")
    for name in datasets:
        if name in clean:
            continue
        e = summary["datasets"][name]
        reasons = {k: int(v) for k, v in (e.get("reasons") or {}).items() if int(v) > 0}
        info = set(e.get("informational") or {})
        pdf.subsection(f"{name}: {fmt_int(e.get('quarantined'))} quarantined of {fmt_int(e.get('rows_in'))}",
                       min_space=30 + 6 * len(reasons))
        ordered = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        rows_in = int(e.get("rows_in") or 0)
        pdf.data_table(["Reason code", "Rows", "Share of rows in", "Counts as bad"],
                       [[r, f"{n:,}", fmt_pct(n / rows_in if rows_in else None, 2),
                         Styled("no (informational)", GREY) if r in info else "yes"] for r, n in ordered],
                       widths=[52, 16, 18, 26], align=["L", "R", "R", "L"], max_width=140)
        pdf.figure(charts.hbar([r for r, _ in ordered], [n for _, n in ordered],
                               title=f"{name}: quarantined rows by reason", xlabel="rows",
                               width_in=5.5), width=140)


def _checks(pdf: ReportPDF, summary: dict[str, Any], datasets: list[str]) -> None:
    pdf.section("Checks")
    rows = []
    n_fail = n_all = 0
    for name in datasets:
        checks = summary["datasets"][name].get("checks") or []
        for c in sorted(checks, key=lambda c: (bool(c.get("passed")), str(c.get("suite")))):
            n_all += 1
            passed = bool(c.get("passed"))
            n_fail += not passed
            rows.append([name, suite_label(str(c.get("suite", "")), name), c.get("check", ""),
                         (c.get("column") or "(table)").replace(",", ", "),
                         Styled("PASS", GOOD, bold=True) if passed else Styled("FAIL", BAD, bold=True),
                         fmt_int(c.get("failed_rows") or 0), _clip(c.get("detail") or "", 140)])
    if not rows:
        pdf.note("The summary holds no check results.")
        return
    pdf.para(f"{n_all} checks ran (Pandera schemas and Great Expectations suites); {n_fail} failed. "
             "Failed checks are listed first for each dataset.")
    pdf.data_table(["Dataset", "Suite", "Check", "Column", "Result", "Failed rows", "Detail"], rows,
                   widths=[17, 27, 36, 18, 10, 10, 42], align=["L", "L", "L", "L", "C", "R", "L"],
                   size=7.5, wrap=[1, 2, 3, 6])


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def suite_label(suite: str, dataset: str) -> str:
    """``great_expectations:ratings.sample`` -> ``great_expectations (sample)`` (dataset has its column)."""
    family, _, name = suite.partition(":")
    if not name:
        return family
    name = name.removeprefix(f"{dataset}.")
    return f"{family} ({name})"


def _null_rates(pdf: ReportPDF, summary: dict[str, Any], datasets: list[str]) -> None:
    specs = []
    clean = []
    for name in datasets:
        rates = summary["datasets"][name].get("null_rates") or {}
        if not rates:
            continue
        if not any(float(v or 0) > 0 for v in rates.values()):
            clean.append(name)
            continue
        ordered = sorted(rates.items(), key=lambda kv: (-float(kv[1] or 0), kv[0]))[:12]
        specs.append({"kind": "hbar", "title": f"{name}: null rate per column",
                      "labels": [k for k, _ in ordered], "values": [float(v or 0) for _, v in ordered],
                      "percent": True, "xlabel": "null rate (curated rows)"})
    png = charts.panels(specs, ncols=2, panel_height_in=2.0) if specs else None
    pdf.section("Null rates", min_space=(pdf.figure_height(png) if png else 0) + 35)
    pdf.note("Nulls in curated rows (only nullable columns may hold them; others are quarantined).")
    if clean:
        pdf.para(f"No nulls at all in: {', '.join(clean)}.")
    if png:
        pdf.figure(png)
    elif not clean:
        pdf.note("No null rates recorded in the validation summary.")


def _distributions(pdf: ReportPDF, lake: Lake, ds: str, summary: dict[str, Any]) -> None:
    entries = summary.get("datasets", {}) or {}

    def version(name: str) -> int | None:
        v = (entries.get(name) or {}).get("curated_version")
        return int(v) if v is not None else None

    specs = []
    notes = []
    def column(name: str, col: str) -> pd.Series:
        return read_curated(lake, name, ds, [col], version=version(name))[col]

    price = pd.to_numeric(column("products", "price"), errors="coerce").dropna()
    if len(price):
        cap = float(price.quantile(0.99)) if len(price) > 100 else float(price.max())
        counts, edges = np.histogram(price.clip(upper=cap), bins=30)
        specs.append({"kind": "hist", "title": f"products.price (n={len(price):,})", "edges": edges,
                      "counts": counts, "xlabel": "price" + (" (capped at p99)" if cap < price.max() else ""),
                      "ylabel": "products"})
        notes.append(f"price median {price.median():,.2f}, p99 {price.quantile(0.99):,.2f}")
    rating = pd.to_numeric(column("ratings", "rating"), errors="coerce").dropna()
    if len(rating):
        vc = (rating * 2).round().div(2).value_counts().sort_index()
        specs.append({"kind": "bar", "title": f"ratings.rating (n={len(rating):,})",
                      "labels": [f"{v:g}" for v in vc.index], "values": vc.to_numpy(),
                      "xlabel": "rating", "ylabel": "ratings"})
        notes.append(f"mean rating {rating.mean():.2f}")
    events = read_curated(lake, "clickstream", ds, ["event_type"], version=version("clickstream"))
    if len(events):
        vc = events["event_type"].astype(str).value_counts()
        specs.append({"kind": "bar", "title": f"clickstream events per type (n={len(events):,})",
                      "labels": list(vc.index), "values": vc.to_numpy(), "xlabel": "event type",
                      "ylabel": "events"})
    qty = pd.to_numeric(column("orders", "quantity"), errors="coerce").dropna()
    if len(qty):
        vc = qty.clip(upper=10).astype(int).value_counts().sort_index()
        specs.append({"kind": "bar", "title": f"orders.quantity (n={len(qty):,})",
                      "labels": [f"{v}" if v < 10 else "10+" for v in vc.index], "values": vc.to_numpy(),
                      "xlabel": "quantity per order line", "ylabel": "order lines"})
    if not specs:
        pdf.section("Distributions of key curated columns")
        pdf.note("No curated rows to chart for this run.")
        return
    png = charts.panels(specs, ncols=2, panel_height_in=2.3)
    pdf.section("Distributions of key curated columns", min_space=pdf.figure_height(png) + 25)
    pdf.figure(png)
    if notes:
        pdf.takeaway("; ".join(notes) + ".")


def history_window(summary: dict[str, Any], history: list[dict[str, Any]], ds: str, n: int
                   ) -> list[dict[str, Any]]:
    """The last ``n`` runs up to and including this one (one entry per run id, in run order)."""
    runs: dict[str, dict[str, Any]] = {}
    for i, h in enumerate(history):
        if str(h.get("logical_date", ""))[:10] <= ds:
            runs[str(h.get("run_id") or f"#{i}")] = h
    key = str(summary.get("run_id") or "current")
    runs.pop(key, None)
    runs[key] = summary  # this run last, even if its history line is missing
    return list(runs.values())[-n:]


def _trends(pdf: ReportPDF, summary: dict[str, Any], history: list[dict[str, Any]], ds: str, n: int) -> None:
    runs = history_window(summary, history, ds, n)
    labels: list[str] = []
    for h in runs:
        base = str(h.get("logical_date", "?"))[:10]
        label, k = base, 2
        while label in labels:
            label, k = f"{base} #{k}", k + 1
        labels.append(label)
    names = [d for d in ordered_datasets(summary)]
    for h in runs:
        names += [d for d in (h.get("datasets") or {}) if d not in names]
    rows_in = {d: [_num((h.get("datasets") or {}).get(d, {}).get("rows_in")) for h in runs] for d in names}
    bad = {d: [_num((h.get("datasets") or {}).get(d, {}).get("bad_ratio")) for h in runs] for d in names}
    threshold = summary.get("threshold")
    png_rows = charts.lines(labels, rows_in, title="Rows in per dataset", xlabel="run (logical date)",
                            ylabel="rows in", markers=True, height_in=2.6)
    png_bad = charts.lines(labels, bad, title="Bad-row ratio per dataset", xlabel="run (logical date)",
                           ylabel="bad-row ratio", percent=True, markers=True, height_in=2.6,
                           hline=(float(threshold), "threshold") if threshold is not None else None)
    pdf.section("Trends over recent runs", min_space=pdf.figure_height(png_rows) + 30)
    if len(runs) == 1:
        pdf.note("Only this run is in the validation history so far; the charts below show a single point "
                 "and become trends as more runs are recorded.")
    else:
        pdf.note(f"The last {len(runs)} runs up to this logical date (state/validation_history.jsonl).")
    pdf.figure(png_rows)
    pdf.figure(png_bad)
    if len(runs) > 1:
        prev, cur = runs[-2].get("datasets") or {}, runs[-1].get("datasets") or {}
        moves = []
        for d in names:
            a, b = _num(prev.get(d, {}).get("bad_ratio")), _num(cur.get(d, {}).get("bad_ratio"))
            if not (np.isnan(a) or np.isnan(b)):
                moves.append((b - a, d, a, b))
        if moves and max(abs(m[0]) for m in moves) == 0:
            pdf.takeaway("bad-row ratios are unchanged since the previous run.")
        elif moves:
            _, d, a, b = max(moves, key=lambda m: abs(m[0]))
            pdf.takeaway(f"largest change since the previous run: {d} bad ratio {fmt_pct(a, 2)} → "
                         f"{fmt_pct(b, 2)}.")


def _num(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _lineage(pdf: ReportPDF, lake: Lake, summary: dict[str, Any], datasets: list[str]) -> None:
    pdf.section("Lineage")
    pdf.para("Which raw landings produced this run's curated tables. The sha256 is the landed file's "
             "checksum from its _manifest.json (first 12 hex digits shown); the curated version is the "
             "Delta table version this run committed, so the exact inputs and outputs can be re-read.")
    rows = []
    file_errors: list[str] = []
    for name in datasets:
        e = summary["datasets"][name]
        version = e.get("curated_version")
        target = f"curated/{name} v{version}" if version is not None else f"curated/{name} (no version)"
        inputs = e.get("inputs") or []
        if not inputs:
            rows.append([name, "n/a", Styled("no inputs recorded", GREY), "", "", target])
        for inp in inputs:
            path = str(inp.get("path") or "")
            present = bool(path) and (lake.root / path.split("@")[0]).exists()
            sha = str(inp.get("sha256") or "")
            rows.append([name, inp.get("source", ""),
                         Styled(path, None if present else GREY), sha[:12] if sha else "n/a",
                         fmt_int(inp.get("rows")), target])
            file_errors += [f"{name} ({path}): {err.get('reason', '')} {err.get('detail', '')}".strip()
                            for err in inp.get("file_errors") or []]
    if not rows:
        pdf.note("No inputs recorded in the validation summary.")
        return
    pdf.data_table(["Dataset", "Source", "Raw path", "sha256", "Rows", "→ Curated table"], rows,
                   widths=[15, 10, 48, 19, 10, 24], align=["L", "L", "L", "L", "R", "L"], wrap=[2],
                   size=7.5)
    for err in file_errors:
        pdf.para(f"File problem: {err}", color=BAD)
    pdf.note("Greyed paths are no longer present in the lake. Task-level lineage (OpenLineage run events "
             "of the Airflow tasks) is in lineage/events/events.jsonl.")


def _row_text(row: pd.Series) -> str:
    parts = []
    for col, val in row.items():
        if col in META_COLUMNS:
            continue
        text = "" if val is None or (isinstance(val, float) and np.isnan(val)) else str(val)
        parts.append(f"{col}={text if text else '∅'}")
    return "; ".join(parts)


def _samples(pdf: ReportPDF, lake: Lake, ds: str, datasets: list[str], summary: dict[str, Any],
             per_reason: int) -> None:
    pdf.section("Samples of quarantined rows")
    pdf.note(f"Up to {per_reason} rows per reason code, as landed (strings); long values are cut (…), "
             "∅ marks an empty cell.")
    any_rows = False
    for name in datasets:
        if not int(summary["datasets"][name].get("quarantined") or 0):
            continue
        q = read_quarantine(lake, name, ds)
        if q.empty or "reason" not in q.columns:
            pdf.subsection(name, min_space=20)
            pdf.note("Quarantine table holds no rows for this date.")
            continue
        any_rows = True
        sample = (q.sort_values("reason", kind="stable").groupby("reason", sort=True, observed=True)
                  .head(per_reason))
        rows = [[r["reason"], r.get("detail", ""), _row_text(r)] for _, r in sample.iterrows()]
        pdf.subsection(f"{name} ({len(q):,} quarantined rows)", min_space=30)
        pdf.data_table(["Reason", "Detail", "Row"], rows, widths=[22, 30, 48], size=7)
    if not any_rows:
        pdf.note("No quarantined rows in this run.")
