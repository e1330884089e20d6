"""Model commands: `recomart evaluate` runs the offline evaluation protocols and prints JSON."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer

from recomart.cli.app import app, console


@app.command("evaluate")
def evaluate(
    movielens: Path | None = typer.Option(None, "--movielens", exists=True, file_okay=False,
                                          help="MovieLens folder (ml-latest-small, ml-100k, ml-1m)"),
    source_dir: Path | None = typer.Option(None, "--source-dir", exists=True, file_okay=False,
                                           help="Folder of canonical source CSVs (generator output, "
                                                "a shop's export)"),
    date: str | None = typer.Option(None, "--date", help="Use events up to the end of this day "
                                                        "(YYYY-MM-DD; default: everything)"),
    cut: str | None = typer.Option(None, "--cut", help="Explore protocol: global cut instant "
                                                      "(default: last 20% of the time span)"),
    protocols: str = typer.Option("explore,next_basket", "--protocols",
                                  help="Comma-separated subset of explore,next_basket"),
    folds: int = typer.Option(5, "--folds", min=0, help="k of the nested SVD RMSE/MAE CV (0 = skip)"),
    models: str = typer.Option("random,toppop,ease,svd,buy_again,hybrid", "--models",
                               help="Comma-separated subset of random,toppop,ease,svd,buy_again,hybrid"),
    seed: int = typer.Option(42, "--seed"),
    out: Path | None = typer.Option(None, "--out", help="Also write the JSON result here"),
) -> None:
    """Evaluate every model on both protocols (explore: global time cut; next basket: repeat-aware)
    on MovieLens or any canonical source folder; one JSON object on stdout."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from recomart.models.evaluate import (
        PROTOCOL_MODELS,
        ProtocolInputError,
        evaluate_source,
        read_source_dir,
    )
    from recomart.models.protocols import PROTOCOLS, ProtocolError

    if (movielens is None) == (source_dir is None):
        raise typer.BadParameter("give exactly one of --movielens DIR or --source-dir DIR")
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(PROTOCOL_MODELS))
    if unknown:
        raise typer.BadParameter(f"unknown models {unknown}; choose from {', '.join(PROTOCOL_MODELS)}")
    chosen = [p.strip() for p in protocols.split(",") if p.strip()]
    if not chosen or set(chosen) - set(PROTOCOLS):
        raise typer.BadParameter(f"--protocols must be a subset of {', '.join(PROTOCOLS)}")
    logging.getLogger("recomart").setLevel(logging.WARNING)
    started = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("loading the source", total=None)

        def progress(msg: str) -> None:
            console.log(msg)
            bar.update(task, description=msg)

        if movielens is not None:
            from recomart.sources.movielens import load_movielens

            tables, read = load_movielens(movielens), {"path": str(movielens)}
        else:
            try:
                tables, read = read_source_dir(source_dir, date)
            except ProtocolInputError as exc:
                console.print(f"[red]evaluate: {exc}[/red]")
                raise typer.Exit(2) from exc
            read["path"] = str(source_dir)
        try:
            result = evaluate_source(tables, protocols=chosen, models=names, cut=cut, seed=seed,
                                     rating_folds=folds, progress=progress)
        except ProtocolError as exc:
            console.print(f"[red]evaluate: {exc}[/red]")
            raise typer.Exit(1) from exc
    result = {"source": read, **result, "seed": seed,
              "seconds": round(time.perf_counter() - started, 2)}
    text = json.dumps(result, indent=2, default=float)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    typer.echo(text)
