"""The root Typer app; command modules attach themselves to it (imports stay lazy inside commands)."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="recomart",
    help="RecoMart: lambda-architecture recommendation pipeline (Airflow batch + Faust speed layer).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)
