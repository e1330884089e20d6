"""docker-compose.yaml stays valid and only calls CLI commands and flags that exist."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer
import yaml

from recomart.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def _command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def test_stack_has_the_production_parts():
    assert {"postgres", "kafka", "mlflow", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "faust-worker", "catalog-api", "redis",
            "serving"} <= set(SERVICES)
    env = SERVICES["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert env["RECOMART_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["RECOMART_MLFLOW_TRACKING_URI"].startswith("http://mlflow")
    serving = SERVICES["serving"]["environment"]
    assert serving["RECOMART_ONLINE_STORE_URL"] == "redis://redis:6379/0"
    assert serving["RECOMART_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert SERVICES["faust-worker"]["environment"]["RECOMART_ONLINE_STORE_URL"] == \
        serving["RECOMART_ONLINE_STORE_URL"]  # the worker writes what the API reads


def test_dependencies_point_at_services():
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        for dep in service.get("depends_on", {}):
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"


# Typer 0.29 vendors its own click; its usage errors derive from TyperException.
UsageError = typer.exceptions.TyperException


def _parse(args: list[str]) -> typer.Context:
    """Parse a full `recomart ...` command line with the CLI's own parser, without running it."""
    command = typer.main.get_command(app)
    ctx = command.make_context("recomart", list(args), resilient_parsing=False)
    # click keeps a group's sub-command words in `_protected_args` (no public accessor in 8.3)
    while hasattr(command, "get_command") and ctx._protected_args + ctx.args:
        name, *rest = ctx._protected_args + ctx.args
        sub = command.get_command(ctx, name)
        assert sub is not None, f"no command {name!r}"
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return ctx


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items()
                                        if _command(s)[:1] == ["recomart"]))
def test_recomart_commands_parse(name):
    """Every `recomart` command in the compose file exists and accepts exactly those flags."""
    cmd = _command(SERVICES[name])[1:]
    try:
        ctx = _parse(cmd)
    except UsageError as exc:
        pytest.fail(f"{name}: `recomart {' '.join(cmd)}` does not parse: {exc.format_message()}")
    flags = {w.lstrip("-").replace("-", "_") for w in cmd if w.startswith("--")}
    assert flags <= set(ctx.params), f"{name}: flags {flags - set(ctx.params)} not parsed"


def test_parser_rejects_what_the_cli_lacks():
    with pytest.raises(UsageError):
        _parse(["stream", "worker", "--no-such-flag", "1"])
    with pytest.raises(UsageError):
        _parse(["catalog-api", "--port", "not-a-number"])


def test_docker_compose_config_accepts_the_file():
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed here (the structural tests above still ran)")
    proc = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yaml"), "config", "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
