"""Feature store and lineage commands: `features list|describe|diff`, `lineage`.

Heavy imports (pandas, deltalake) stay inside the commands so `recomart --help` stays fast.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

from recomart.cli.app import app, console

features_app = typer.Typer(help="Inspect the feature store: tables, versions, definitions, drift.",
                           no_args_is_help=True)
app.add_typer(features_app, name="features")
out = Console()


def _store():
    from recomart.features.store import FeatureStore

    return FeatureStore()


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]{exc}")
    return typer.Exit(1)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items() if k != "count")
    return "" if value is None else str(value)


@features_app.command("list")
def list_tables() -> None:
    """Feature tables with their entity, feature count, snapshots and current Delta version."""
    from rich.table import Table

    from recomart.lake import LakeError

    try:
        rows = _store().list_tables()
    except LakeError as exc:
        raise _fail(exc) from exc
    if not rows:
        console.print("no feature tables yet — run the batch DAG (`recomart run recomart_batch`)")
        raise typer.Exit(0)
    table = Table(title="feature tables")
    for col in ("table", "entity", "features", "snapshots", "latest ds", "latest rows", "version"):
        table.add_column(col, overflow="fold", no_wrap=col == "table")
    for r in rows:
        table.add_row(r["table"], ", ".join(r["entity"]), str(r["features"]), str(r["snapshots"]),
                      str(r["latest_ds"]), str(r["latest_rows"]), str(r["version"]))
    out.print(table)


@features_app.command("describe")
def describe(table: str = typer.Argument(..., help="Feature table, e.g. user_features"),
             version: int = typer.Option(None, "--version", help="Delta version (default: latest)"),
             as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables")) -> None:
    """Schema, snapshots and every feature's definition and summary stats at one version."""
    from rich.table import Table

    from recomart.lake import LakeError

    try:
        desc = _store().describe(table, version)
    except LakeError as exc:
        raise _fail(exc) from exc
    if as_json:
        out.print_json(json.dumps(desc, default=str))
        return
    out.print(f"[bold]{table}[/] version {desc['version']} · entity {', '.join(desc['entity'])} · "
              f"{desc['rows']} rows in {len(desc['snapshots'])} snapshot(s)")
    snaps = Table(title="snapshots")
    for col in ("ds", "as of", "run id", "rows"):
        snaps.add_column(col, overflow="fold")
    for s in desc["snapshots"]:
        snaps.add_row(s["ds"], s["as_of"], s["run_id"], str(s["rows"]))
    out.print(snaps)
    feats = Table(title=f"features (stats of snapshot {desc['latest_ds']})")
    for col in ("feature", "dtype", "description", "stats"):
        feats.add_column(col, overflow="fold", no_wrap=col == "feature")
    for f in desc["features"]:
        feats.add_row(f["name"], f["dtype"], f["description"], _fmt(f["stats"]))
    out.print(feats)


@features_app.command("diff")
def diff(table: str = typer.Argument(..., help="Feature table"),
         v1: int = typer.Argument(..., help="Older Delta version"),
         v2: int = typer.Argument(..., help="Newer Delta version")) -> None:
    """What changed between two versions: schema, rows, snapshots and feature statistics."""
    from rich.table import Table

    from recomart.lake import LakeError

    try:
        d = _store().diff(table, v1, v2)
    except LakeError as exc:
        raise _fail(exc) from exc
    out.print(f"[bold]{table}[/] v{v1} → v{v2}: rows {d['rows'][0]} → {d['rows'][1]}, latest snapshot "
              f"{d['latest_ds'][0]} ({d['latest_rows'][0]} rows) → {d['latest_ds'][1]} "
              f"({d['latest_rows'][1]} rows)")
    for label, key in (("snapshots added", "snapshots_added"), ("snapshots removed", "snapshots_removed"),
                       ("columns added", "added"), ("columns removed", "removed")):
        if d[key]:
            out.print(f"{label}: {', '.join(d[key])}")
    for col, (a, b) in d["retyped"].items():
        out.print(f"column {col}: {a} → {b}")
    if not d["feature_changes"]:
        out.print("feature statistics unchanged")
        return
    stats = Table(title="feature statistics (newest snapshot of each version)")
    for col in ("feature", "stat", f"v{v1}", f"v{v2}"):
        stats.add_column(col, overflow="fold", no_wrap=col == "feature")
    for change in d["feature_changes"]:
        for stat, (a, b) in change["changes"].items():
            stats.add_row(change["feature"], stat, _fmt(a), _fmt(b))
    out.print(stats)


# ---- lineage ---------------------------------------------------------------------------------
def _label(node: dict[str, Any]) -> str:
    from recomart.lineage import FACET

    lake = node["facets"].get(FACET) or {}
    parts = [f"[bold]{node['name']}[/]"]
    if lake.get("kind") == "delta" and lake.get("version") is not None:
        parts.append(f"v{lake['version']}")
    if lake.get("rows") is not None:
        parts.append(f"{lake['rows']} rows")
    if lake.get("sha256"):
        parts.append(f"sha256 {lake['sha256']}")
    if node["namespace"] != "file://recomart-lake":
        parts.append(f"({node['namespace']})")
    run = node.get("run")
    if run:
        parts.append(f"[dim]← {run['job']} run {run['airflow_run_id']}[/]")
    elif node["name"].lstrip("/").startswith("raw/"):
        parts.append("[dim](raw file)[/]")
    return " · ".join(parts)


def _add(tree, node: dict[str, Any], expanded: set[str]) -> None:
    """Children of ``node``; a task run's inputs are listed once, later mentions point up."""
    run = (node.get("run") or {}).get("ol_run_id")
    if run in expanded:
        return
    if run:
        expanded.add(run)
    for child in node["inputs"]:
        child_run = (child.get("run") or {}).get("ol_run_id")
        shown = child_run in expanded and child["inputs"]
        branch = tree.add(_label(child) + (" [dim](its inputs: see above)[/]" if shown else ""))
        _add(branch, child, expanded)


@app.command("lineage")
def lineage(name: str = typer.Argument(..., help="Dataset or model, e.g. features/user_features, "
                                                 "curated/orders or recomart_hybrid"),
            run_id: str = typer.Option(None, "--run-id", help="Airflow run id (default: latest)"),
            as_json: bool = typer.Option(False, "--json", help="Print the tree as JSON")) -> None:
    """Upstream lineage of a dataset from the OpenLineage events: tasks, run ids, raw files + sha256."""
    from rich.tree import Tree

    from recomart.lake import Lake, LakeError
    from recomart.lineage import events_path, upstream_of

    lake = Lake()
    try:
        tree = upstream_of(lake, name, airflow_run_id=run_id)
    except LakeError as exc:
        console.print(f"[red]{exc}[/] (events: {events_path(lake)})")
        raise typer.Exit(1) from exc
    if as_json:
        out.print_json(json.dumps(tree, default=str))
        return
    root = Tree(_label(tree))
    _add(root, tree, set())
    out.print(root)
