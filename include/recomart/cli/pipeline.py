"""Commands that run the pipeline through Airflow: `run`, `ui`, `demo`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from recomart.cli.app import app, console


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


@app.command("run")
def run(dag_id: str = typer.Argument("recomart_batch", help="recomart_batch or recomart_training"),
        date: str = typer.Option(None, "--date", help="Logical date YYYY-MM-DD (default: today, UTC)"),
        ) -> None:
    """Run one DAG end to end through Airflow (`airflow dags test`) on the embedded default."""
    from recomart.airflow_env import run_dag
    from recomart.errors import RecomartError

    date = date or _today()
    with console.status(f"running {dag_id} for {date} through Airflow ..."):
        try:
            states = run_dag(dag_id, date)
        except RecomartError as exc:  # a failed run, or a lake that cannot be used (bucket, keys)
            console.print(f"[red]{exc}")
            raise typer.Exit(1) from exc
    console.print(f"[green]{dag_id} {date}: all {len(states)} tasks ran and succeeded:[/] "
                  + ", ".join(s["task_id"] for s in states))


@app.command("ui")
def ui(port: int = typer.Option(8080, help="Web server port")) -> None:
    """Start the Airflow UI (`airflow standalone`); Ctrl-C stops every Airflow process cleanly."""
    from recomart.airflow_env import airflow_env, ensure_db, venv_bin
    from recomart.processes import run_foreground

    env = airflow_env({"AIRFLOW__API__PORT": str(port), "AIRFLOW__CORE__PARALLELISM": "2"})
    ensure_db(env)
    console.print(f"Airflow UI on http://localhost:{port} — login and password are printed by "
                  f"Airflow below and saved in {env['AIRFLOW_HOME']}/simple_auth_manager_passwords"
                  ".json.generated. Ctrl-C to stop.")
    run_foreground([str(venv_bin() / "airflow"), "standalone"], env,
                   on_stop=lambda: console.print("stopping Airflow (SIGINT to its process group) ..."))


@app.command("demo")
def demo(users: int = typer.Option(3000, help="Generated users"),
         products: int = typer.Option(600, help="Generated products"),
         days: int = typer.Option(60, help="Days of history"),
         stream_events: int = typer.Option(5000, help="Clickstream events sent through Kafka"),
         consumables: float = typer.Option(0.3, help="Share of categories re-bought on cycles "
                                                     "(a repeat-heavy shop exercises buy-again)"),
         date: str = typer.Option(None, "--date", help="Logical date (default: today, UTC)"),
         no_stream: bool = typer.Option(False, "--no-stream", help="Skip the speed layer"),
         no_serving: bool = typer.Option(False, "--no-serving",
                                         help="Skip the serving API before/after step"),
         no_experiment: bool = typer.Option(False, "--no-experiment",
                                            help="Skip the simulated A/B experiment"),
         experiment_visits: int = typer.Option(1500, "--experiment-visits",
                                               help="Simulated shopper visits in the experiment"),
         source_dir: Path = typer.Option(None, "--source-dir",
                                         help="Where to write the generated shop (default .demo/)"),
         ) -> None:
    """Run the whole pipeline end to end on the embedded default and print where outputs are."""
    import time

    from rich.table import Table

    from recomart.airflow_env import AirflowRunError
    from recomart.demo import DemoOptions, run_demo
    from recomart.errors import RecomartError
    from recomart.processes import interrupt_on_signals

    opts = DemoOptions(users=users, products=products, days=days, stream_events=stream_events,
                       consumables=consumables,
                       with_stream=not no_stream, with_serving=not no_serving,
                       with_experiment=not no_experiment, experiment_visits=experiment_visits,
                       source_dir=source_dir)
    if date:
        opts.ds = date
    started = time.monotonic()

    def step(message: str) -> None:
        console.print(f"[bold cyan]▶[/] [{time.monotonic() - started:6.1f}s] {message}")

    interrupt_on_signals()  # the broker, worker and catalog API are stopped on Ctrl-C / SIGTERM
    try:
        result = run_demo(opts, step)
    except (AirflowRunError, TimeoutError, FileNotFoundError, RecomartError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt as exc:
        console.print("[yellow]demo interrupted; its services were stopped")
        raise typer.Exit(130) from exc
    console.print(_validation_table(result))
    table = Table(title=f"RecoMart demo outputs for {result['ds']}", show_lines=False)
    table.add_column("output", no_wrap=True)
    table.add_column("where", overflow="fold")
    for name, path in result["outputs"].items():
        table.add_row(name, path)
    console.print(table)
    if "stream" in result:
        s = result["stream"]
        console.print(f"speed layer: {s.get('valid')} valid events landed, "
                      f"{s.get('malformed')} malformed sent to the dead-letter topic")
    if champion := result.get("champion"):
        console.print(f"champion: {champion['model']} v{champion['version']} "
                      f"({champion['champion_metric']} = {champion['champion_value']:.4f})")
    if serving := result.get("serving"):
        console.print(_serving_table(serving))
        events = ", ".join(f"{kind} {pid}" for pid, kind in serving["events"])
        console.print(f"streamed through Kafka: {events}; visible in the API "
                      f"{serving['seconds_to_fresh']}s after the broker acknowledged them. "
                      "The API was stopped after this call.")
    if experiment := result.get("experiment"):
        from recomart.cli.experiments import print_readout

        d = experiment["drive"]
        console.print(f"simulated shoppers: {d['requests']:,} requests, {d['events_sent']:,} "
                      f"events through POST /v1/events; lists per variant {d['by_variant']}")
        print_readout(experiment["readout"])
    console.print(f"[green]done in {time.monotonic() - started:.0f}s.[/] Next: `make ui` for the "
                  "Airflow UI, `.venv/bin/recomart mlflow-ui` for MLflow.")


def _serving_table(serving: dict):
    """The real-time effect: one user's list before and after the streamed events."""
    from rich.table import Table

    before, after = serving["before"], serving["after"]
    table = Table(title=f"serving API ({serving['url']}): user {serving['user']}, "
                        f"{after['model']} v{after['version']}")
    for col in ("rank", "before (batch view)", f"after {after['fresh_events']} fresh events"):
        table.add_column(col)
    for i in range(max(len(before["items"]), len(after["items"]))):
        cells = [f"{x['items'][i]['product_id']} ({x['items'][i]['reason']})"
                 if i < len(x["items"]) else "" for x in (before, after)]
        table.add_row(str(i + 1), *cells)
    return table


def _validation_table(result: dict):
    """Rows in / curated / quarantined per dataset: the reconciliation a user checks first."""
    from rich.table import Table

    table = Table(title=f"validation ({result.get('validation', {}).get('status', '?')})")
    for col in ("dataset", "rows in", "curated", "quarantined", "bad ratio", "top reasons"):
        table.add_column(col, justify="left" if col in ("dataset", "top reasons") else "right")
    for name, d in sorted(result.get("validation", {}).get("datasets", {}).items()):
        info = d.get("informational", {})
        top = sorted(d["reasons"].items(), key=lambda x: -x[1])[:3]
        reasons = ", ".join(f"{r} {n}" + (" (not bad)" if r in info else "") for r, n in top)
        table.add_row(name, f"{d['rows_in']:,}", f"{d['curated']:,}", f"{d['quarantined']:,}",
                      f"{d['bad_ratio']:.1%}", reasons)
    table.caption = "rows in = curated + quarantined for every dataset; 'not bad' = a duplicate resolved"
    return table
