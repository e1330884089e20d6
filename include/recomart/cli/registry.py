"""Model registry and serving commands: `models`, `champion`, `recommend`, `similar`, `audience`,
`mlflow-ui`. Heavy imports (mlflow, pandas) stay inside the commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from recomart.cli.app import app, console

HYBRID = "recomart_hybrid"


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@app.command("models")
def models(name: str = typer.Option(HYBRID, "--name", help="Registered model name"),
           limit: int = typer.Option(10, help="Versions to show, newest first")) -> None:
    """List registered models and the versions of one, with aliases and headline metrics."""
    from rich.table import Table

    from recomart import registry

    names = registry.list_models()
    if not names:
        console.print(f"no registered models in {registry.tracking_uri()} — run the training DAG "
                      "(`recomart run recomart_training`)")
        raise typer.Exit(1)
    console.print(f"registered models: {', '.join(names)}")
    if name not in names:
        raise typer.Exit(0)
    table = Table(title=f"{name} (store {registry.tracking_uri()})")
    for col in ("version", "aliases", "ds", "ndcg@10", "recall@20", "promotion", "run id"):
        table.add_column(col)
    for v in registry.list_versions(name)[:limit]:
        m, t = v["metrics"], v["tags"]
        table.add_row(str(v["version"]), ",".join(v["aliases"]), t.get("ds", ""),
                      _fmt(m.get("ndcg_at_10", "")), _fmt(m.get("recall_at_20", "")),
                      t.get("promotion.decision", ""), v["run_id"] or "")
    console.print(table)


@app.command("champion")
def champion(name: str = typer.Option(HYBRID, "--name", help="Registered model name")) -> None:
    """Show the @champion version, its metrics, why it won, and what is published."""
    from recomart import publishing, registry
    from recomart.lake import Lake

    current = registry.get_champion(name)
    if current is None:
        console.print(f"{name} has no @champion yet in {registry.tracking_uri()}")
        raise typer.Exit(1)
    version, metrics = current
    console.print(f"[bold]{name}@champion = version {version.version}[/] (run {version.run_id})")
    for key in sorted(metrics):
        console.print(f"  {key:<22} {metrics[key]:.4f}")
    for key in ("promotion.decision", "promotion.reason", "ds"):
        if key in version.tags:
            console.print(f"  {key:<22} {version.tags[key]}")
    latest = publishing.read_latest(Lake())
    if latest:
        console.print(f"published: {latest['path']} (serving/latest.json, updated {latest['updated_at']})")


def _print_frame(frame, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col))
    for row in frame.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


@app.command("recommend")
def recommend(user: int = typer.Option(..., "--user", help="User id"),
              n: int = typer.Option(10, "-n", help="How many items"),
              live: bool = typer.Option(False, "--live",
                                        help="Score with the @champion model instead of the "
                                             "published table"),
              name: str = typer.Option(HYBRID, "--name")) -> None:
    """Top-n products for a user (published table; the @champion model for new users)."""
    import pandas as pd

    from recomart import publishing, registry
    from recomart.lake import Lake

    lake = Lake()
    frame = pd.DataFrame()
    source = ""
    if not live and publishing.read_latest(lake):
        frame = publishing.read_output(lake, "user_recs", user).head(n)
        source = f"published {publishing.read_latest(lake)['path']}"
    if frame.empty:
        try:
            model = registry.load_champion(name)
        except LookupError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(1) from exc
        frame = model.predict(pd.DataFrame({"user_id": [user]}), params={"n": n})
        source = f"live models:/{name}@champion"
    _print_frame(_with_titles(lake, frame, "product_id"), f"user {user} ({source})")


@app.command("similar")
def similar(product: int = typer.Option(..., "--product", help="Product id"),
            n: int = typer.Option(10, "-n")) -> None:
    """Products similar to one product (published by the last champion)."""
    from recomart import publishing
    from recomart.lake import Lake

    lake = Lake()
    frame = publishing.read_output(lake, "similar_items", product).head(n)
    _print_frame(_with_titles(lake, frame, "similar_product_id"), f"similar to product {product}")


@app.command("audience")
def audience(product: int = typer.Option(..., "--product", help="Product id"),
             n: int = typer.Option(20, "-n")) -> None:
    """Users most likely to engage with a product (published by the last champion)."""
    from recomart import publishing
    from recomart.lake import Lake

    frame = publishing.read_output(Lake(), "audience", product).head(n)
    _print_frame(frame, f"audience of product {product}")


def _with_titles(lake, frame, column: str):
    """Add the product title when the curated catalog is there (nice to read, never required)."""
    from recomart.curated import read_published

    if frame.empty:
        return frame
    products = read_published(lake, "products")[["product_id", "title"]]
    titles = products.rename(
        columns={"product_id": column})
    return frame.merge(titles, on=column, how="left")


@app.command("mlflow-ui")
def mlflow_ui(port: int = typer.Option(5000, help="Port"),
              host: str = typer.Option("127.0.0.1", help="Interface to listen on")) -> None:
    """Start the MLflow UI on the project's tracking store (SQLite in the lake by default)."""
    from recomart.config import get_settings
    from recomart.processes import run_foreground

    settings = get_settings()
    uri = settings.resolved_mlflow_uri
    cmd = [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", uri,
           "--default-artifact-root", settings.mlflow_artifact_uri(), "--host", host,
           "--port", str(port)]
    console.print(f"MLflow UI on http://{host}:{port} (store {uri}). Ctrl-C to stop.")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true")}
    run_foreground(cmd, env, on_stop=lambda: console.print("stopping the MLflow UI ..."), timeout=20)
