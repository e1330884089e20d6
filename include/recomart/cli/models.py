"""Model commands: `recomart evaluate` runs the offline evaluation protocol and prints JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from recomart.cli.app import app, console


@app.command("evaluate")
def evaluate(
    movielens: Path = typer.Option(..., "--movielens", exists=True, file_okay=False,
                                   help="MovieLens folder (ml-latest-small, ml-100k, ml-1m layout)"),
    folds: int = typer.Option(5, "--folds", min=0, help="k for SVD RMSE/MAE cross-validation "
                                                        "(0 = skip)"),
    models: str = typer.Option("random,toppop,ease,svd,hybrid", "--models",
                               help="Comma-separated subset of random,toppop,ease,svd,hybrid"),
    seed: int = typer.Option(42, "--seed"),
    out: Path | None = typer.Option(None, "--out", help="Also write the JSON result here"),
) -> None:
    """Evaluate the models on MovieLens with the time-holdout protocol; one JSON object on stdout."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from recomart.models.evaluate import MODEL_NAMES, evaluate_movielens

    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(MODEL_NAMES))
    if unknown:
        raise typer.BadParameter(f"unknown models {unknown}; choose from {', '.join(MODEL_NAMES)}")
    logging.getLogger("recomart").setLevel(logging.WARNING)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("loading MovieLens", total=None)

        def progress(msg: str) -> None:
            console.log(msg)
            bar.update(task, description=msg)

        result = evaluate_movielens(movielens, folds=folds, seed=seed, models=names,
                                    progress=progress)
    text = json.dumps(result, indent=2, default=float)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    typer.echo(text)
