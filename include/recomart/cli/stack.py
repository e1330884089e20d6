"""`recomart stack up|status|down|env`: the production topology as local processes (no Docker)."""

from __future__ import annotations

from pathlib import Path

import typer

from recomart.cli.app import app, console

stack_app = typer.Typer(help="The production topology (PostgreSQL, Redis, Airflow with Celery, MLflow "
                             "server, Kafka-protocol broker, Faust workers, serving, Prometheus) "
                             "as real local processes.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")

DirOpt = typer.Option(None, "--dir", help="Stack folder (logs, state, data); default "
                                          "RECOMART_STACK_DIR or <checkout>/.stack")


def _stack(root: Path | None):
    from recomart.config import get_settings
    from recomart.stack.runner import Stack

    return Stack(get_settings(), root)


def _print_status(rows: list[dict]) -> bool:
    import shutil

    from rich.console import Console
    from rich.table import Table

    table = Table("service", "url", "state", "detail")
    colour = {"healthy": "green", "unhealthy": "red", "stopped": "red", "skipped": "yellow"}
    for r in rows:
        table.add_row(r["service"], r["url"], f"[{colour[r['state']]}]{r['state']}", r["detail"])
    Console(width=max(150, shutil.get_terminal_size().columns)).print(table)
    return all(r["state"] in ("healthy", "skipped") for r in rows)


@stack_app.command("up")
def up(root: Path = DirOpt) -> None:
    """Start every service on free loopback ports and wait until each is healthy."""
    from recomart.errors import RecomartError

    stack = _stack(root)
    try:
        stack.up(step=lambda m: console.print(m))
    except RecomartError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    _print_status(stack.status())
    console.print(f"environment for clients: `recomart stack env --dir {stack.layout.root}`; "
                  f"Airflow login: admin / password in {stack.layout.root}/secrets.json")


@stack_app.command("status")
def status(root: Path = DirOpt) -> None:
    """Each service, its URL and health; exits 1 when a started service is not healthy."""
    stack = _stack(root)
    rows = stack.status()
    if not rows:
        console.print(f"no stack in {stack.layout.root} (`recomart stack up` starts one)")
        raise typer.Exit(1)
    if not _print_status(rows):
        raise typer.Exit(1)


@stack_app.command("down")
def down(root: Path = DirOpt) -> None:
    """Stop every service (process groups, newest first); data and logs stay in the folder."""
    from recomart.errors import RecomartError

    stack = _stack(root)
    try:
        stopped = stack.down(step=lambda m: console.print(m))
    except RecomartError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    console.print(f"stopped {len(stopped)} services" if stopped else "nothing was running")


@stack_app.command("env")
def env(root: Path = DirOpt) -> None:
    """Print `export` lines that point a shell (producer, CLI, tests) at the running stack."""
    import shlex

    from recomart.errors import RecomartError

    try:
        values = _stack(root).env()
    except RecomartError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    for k, v in sorted(values.items()):
        print(f"export {k}={shlex.quote(v)}")
