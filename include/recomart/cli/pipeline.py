"""Commands that run the pipeline through Airflow: `run`, `ui`, `demo`."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime

import typer

from recomart.cli.app import app, console


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


@app.command("run")
def run(dag_id: str = typer.Argument("recomart_batch", help="recomart_batch or recomart_training"),
        date: str = typer.Option(None, "--date", help="Logical date YYYY-MM-DD (default: today, UTC)"),
        ) -> None:
    """Run one DAG end to end through Airflow (`airflow dags test`) on the embedded default."""
    from recomart.airflow_env import AirflowRunError, run_dag

    date = date or _today()
    with console.status(f"running {dag_id} for {date} through Airflow ..."):
        try:
            run_dag(dag_id, date)
        except AirflowRunError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(1) from exc
    console.print(f"[green]{dag_id} {date}: all tasks succeeded")


@app.command("ui")
def ui(port: int = typer.Option(8080, help="Web server port")) -> None:
    """Start the Airflow UI (`airflow standalone`); Ctrl-C stops every Airflow process cleanly."""
    from recomart.airflow_env import airflow_env, ensure_db, venv_bin

    env = airflow_env({"AIRFLOW__API__PORT": str(port), "AIRFLOW__CORE__PARALLELISM": "2"})
    ensure_db(env)
    console.print(f"Airflow UI on http://localhost:{port} — login and password are printed by "
                  f"Airflow below and saved in {env['AIRFLOW_HOME']}/simple_auth_manager_passwords"
                  ".json.generated. Ctrl-C to stop.")
    proc = subprocess.Popen([str(venv_bin() / "airflow"), "standalone"], env=env,
                            start_new_session=True)
    try:
        proc.wait()
    except KeyboardInterrupt:
        console.print("stopping Airflow (SIGINT to its process group) ...")
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
