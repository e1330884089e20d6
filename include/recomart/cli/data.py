"""Source-data commands: `generate` (synthetic shop CSVs) and `catalog-api` (the catalog HTTP API)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer

from recomart.cli.app import app, console


def _parse_date(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from exc


@app.command("generate")
def generate(
    users: int = typer.Option(10_000, "--users", min=1, help="Number of customers"),
    products: int = typer.Option(1_000, "--products", min=10, help="Catalog size (>= 10)"),
    days: int = typer.Option(30, "--days", min=1, help="Days of activity ending at --end-date"),
    seed: int = typer.Option(42, "--seed", help="Random seed (same seed = byte-identical files)"),
    end_date: str = typer.Option("2024-06-30", "--end-date",
                                 help="Exclusive end of the activity window (YYYY-MM-DD, UTC)"),
    out: Path = typer.Option(..., "--out", help="Folder for the <dataset>.csv files (created)"),
    consumables: float = typer.Option(
        0.0, "--consumables", min=0.0, max=1.0,
        help="Share of categories that are consumable (re-bought on per-product cycles: a "
             "repeat-heavy shop); Grocery first, then Pet Supplies, Beauty, ..."),
) -> None:
    """Generate a synthetic shop (users, products, orders, ratings, clickstream) as CSV files."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from recomart.sources.generator import generate as run_generator

    end = _parse_date(end_date)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("generating", total=None)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, description=step, completed=done, total=total)

        try:
            counts = run_generator(out, users=users, products=products, days=days, seed=seed,
                                   end_date=end, progress=progress, consumables=consumables)
        except ValueError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(2) from exc
    console.print(_counts_table(f"generated into {out} (seed {seed}, {days} days to {end})", counts, out))


@app.command("catalog-api")
def catalog_api(
    source_dir: Path = typer.Option(None, "--source-dir",
                                    help="Folder holding products.csv (default: settings source_dir)"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port"),
    faults: str = typer.Option(None, "--faults",
                               help='Inject failures, JSON like \'{"http_500_pages": {"2": 1}, '
                                    '"malformed_pages": [3], "always_500_pages": [4]}\''),
) -> None:
    """Serve the product catalog over HTTP (paginated /products); Ctrl-C stops it."""
    import json

    import uvicorn

    from recomart.config import get_settings
    from recomart.sources.catalog_api import create_app

    products = (source_dir or get_settings().source_dir) / "products.csv"
    if not products.exists():
        console.print(f"[red]{products} not found: run `recomart generate` or pass --source-dir")
        raise typer.Exit(2)
    try:
        app_ = create_app(products, faults=json.loads(faults) if faults else None)
    except (ValueError, AttributeError) as exc:  # bad JSON or unknown fault kind
        console.print(f"[red]--faults: {exc}")
        raise typer.Exit(2) from exc
    console.print(f"catalog API on http://{host}:{port}/products (from {products}); Ctrl-C to stop")
    uvicorn.run(app_, host=host, port=port, log_level="info")


@app.command("movielens")
def movielens(
    path: Path = typer.Argument(..., help="A MovieLens folder (ratings.csv+movies.csv, u.data+u.item, "
                                          "or ratings.dat+movies.dat)"),
    out: Path = typer.Option(..., "--out", help="Folder to write the canonical <dataset>.csv files to"),
) -> None:
    """Convert a MovieLens folder into the pipeline's source CSVs (then point RECOMART_SOURCE_DIR at it)."""
    from recomart.sources.movielens import MovieLensFormatError, write_movielens_sources

    try:
        counts = write_movielens_sources(path, out)
    except MovieLensFormatError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    console.print(_counts_table(f"MovieLens {path} -> {out}", counts, out))
    console.print(f"next: RECOMART_SOURCE_DIR={out} .venv/bin/recomart run recomart_batch "
                  "--date <YYYY-MM-DD>")


def _counts_table(title: str, counts: dict[str, int], out: Path):
    """Rows written per dataset, with the file each went to."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("dataset")
    table.add_column("rows", justify="right")
    table.add_column("file")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}", str(out / f"{name}.csv"))
    return table
