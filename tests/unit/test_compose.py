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
    assert serving["RECOMART_ONLINE_STORE_URL"] == "redis://redis:6379/1"  # db 0: Celery
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
    if cmd[0] == "serve" and "serve" not in typer.main.get_command(app).commands:
        pytest.skip("`recomart serve` (the serving layer) is not in this build; the stack guards "
                    "its serving replicas the same way")
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
    if shutil.which("docker-compose"):
        cmd = [shutil.which("docker-compose")]
    elif shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                   capture_output=True).returncode == 0:
        cmd = [shutil.which("docker"), "compose"]
    else:
        pytest.skip("no Docker CLI with compose here (the structural tests above still ran)")
    proc = subprocess.run([*cmd, "-f", str(ROOT / "docker-compose.yaml"), "config", "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---- the compose file describes exactly the topology `recomart stack up` starts ----------------

def _stack_services():
    from recomart.config import Settings
    from recomart.stack.topology import Layout, Ports, services

    s = Settings()
    ports = Ports(**{k: (1000 + i if not isinstance(v, list) else [2000 + 10 * i + j for j in range(len(v))])
                     for i, (k, v) in enumerate(vars(Ports.allocate(s)).items())})
    return services(Layout(Path("/tmp/stack")), ports, s, check_optional=False)


def _shape(token: str) -> str:
    """A command word with its instance values (hosts, ports, paths, replica numbers) blanked:
    the stack and compose differ there and nowhere else."""
    import re

    if token.startswith(("/", "{", "s3://")):  # a folder or a bucket: where the lake is
        return "<path>"
    token = re.sub(r"//[^/\s]*", "//<host>", token)  # URLs: keep scheme and path
    token = re.sub(r"\b(127\.0\.0\.1|0\.0\.0\.0)\b", "<host>", token)
    return re.sub(r"\d+", "", token)


@pytest.mark.parametrize("svc", _stack_services(), ids=lambda s: s.name)
def test_every_stack_service_has_its_compose_twin(svc):
    assert svc.compose in SERVICES, f"{svc.name}: no compose service {svc.compose!r}"
    twin = SERVICES[svc.compose]
    env = twin.get("environment") or {}
    missing = [k for k in svc.env_names if k not in env]
    assert not missing, f"{svc.compose} lacks env vars the stack sets for {svc.name}: {missing}"
    if svc.image_twin:  # a stock image (postgres, redis, kafka, prometheus): its own command
        assert "image" in twin and "build" not in twin, svc.compose
        return
    stack_cmd = [Path(svc.argv[0]).name, *svc.argv[1:]]
    assert [_shape(t) for t in stack_cmd] == [_shape(t) for t in _command(twin)], (
        f"{svc.name}: stack runs {stack_cmd}, compose {svc.compose} runs {_command(twin)}")


def test_stack_env_names_are_all_declared():
    """Every setting the stack hands its services is in a group the compose twins are checked for."""
    from recomart.config import Settings
    from recomart.stack.topology import AIRFLOW_ENV, RECOMART_ENV, Layout, Ports, stack_env

    s = Settings()
    env = stack_env(Layout(Path("/tmp/stack")), Ports.allocate(s), s,
                    {"fernet_key": "k", "jwt_secret": "j"})
    assert set(env) == set(RECOMART_ENV) | set(AIRFLOW_ENV)


def test_replicas_match_the_stack():
    from recomart.config import Settings

    s = Settings()
    assert SERVICES["airflow-worker"]["deploy"]["replicas"] == s.stack_celery_workers == 2
    assert SERVICES["faust-worker"]["deploy"]["replicas"] == s.stack_faust_workers == 2
    assert SERVICES["serving"]["deploy"]["replicas"] == s.stack_serving_replicas == 2
    env = SERVICES["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")


def test_grafana_dashboard_is_provisioned_and_queries_real_series():
    import json

    from recomart.streaming import metrics

    dash = json.loads((ROOT / "docker" / "grafana" / "dashboards" / "recomart.json").read_text())
    provider = yaml.safe_load((ROOT / "docker" / "grafana" / "provisioning" / "dashboards"
                               / "recomart.yml").read_text())
    mounts = " ".join(SERVICES["grafana"]["volumes"])
    assert provider["providers"][0]["options"]["path"] in mounts
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for words in ("serving requests", "serving latency", "lag", "dead-letter", "dag run durations",
                  "failures"):
        assert words in titles, words
    faust_series = {m.name for m in metrics.REGISTRY.collect()}
    used = {w for w in exprs.replace("(", " ").replace(")", " ").replace("[", " ").split()
            if w.startswith("recomart_stream_")}
    assert used, "no Faust series on the dashboard"
    for series in used:
        base = series.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
        assert base in faust_series, f"dashboard queries {series}, the worker exports {faust_series}"
    import prometheus_client

    import recomart.serving.metrics  # noqa: F401  (registers the serving series)

    serving_series = {m.name for m in prometheus_client.REGISTRY.collect()}
    used = {w for w in exprs.replace("(", " ").replace(")", " ").replace("[", " ").split()
            if w.startswith("recomart_") and not w.startswith("recomart_stream_")}
    assert used, "no serving series on the dashboard"
    for series in used:
        base = series.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
        assert base in serving_series, f"dashboard queries {series}, serving exports {serving_series}"
    assert "airflow_dagrun_duration_success_recomart_batch" in exprs
    prom = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    assert {j["job_name"] for j in prom["scrape_configs"]} == {"faust", "airflow", "serving"}


def test_the_lake_and_mlflow_artifacts_live_in_the_minio_bucket():
    """No two services share a disk: the lake is s3://recomart/lake on MinIO, the bucket exists
    before anything uses it, MLflow's artifacts are in the same bucket."""
    assert {"minio", "minio-init"} <= set(SERVICES)
    init = " ".join(_command(SERVICES["minio-init"]))
    assert "mc mb --ignore-existing lake/recomart" in init
    assert SERVICES["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    users = ["airflow-scheduler", "airflow-worker", "faust-worker", "serving", "mlflow"]
    for name in users:
        env = SERVICES[name]["environment"]
        assert env["RECOMART_LAKE_ROOT"] == "s3://recomart/lake", name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(env), name
        assert SERVICES[name]["depends_on"]["minio-init"]["condition"] == \
            "service_completed_successfully", name
        mounts = " ".join(SERVICES[name].get("volumes", []))
        assert "recomart_lake" not in mounts, f"{name} still mounts a shared lake volume"
    assert SERVICES["minio"]["environment"]["MINIO_ROOT_USER"] == \
        SERVICES["serving"]["environment"]["AWS_ACCESS_KEY_ID"]
    mlflow = " ".join(_command(SERVICES["mlflow"]))
    assert "--artifacts-destination s3://recomart/lake/mlflow/artifacts" in mlflow
    assert SERVICES["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    import json

    transport = json.loads(SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport["log_file_path"].startswith("s3://recomart/lake/lineage/events/")
    assert transport["append"] is False  # object stores cannot append: one object per event
