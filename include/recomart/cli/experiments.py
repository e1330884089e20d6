"""`recomart experiment create|list|show|stop|report|sample-size`: online A/B experiments.

Heavy imports (pandas, scipy, mlflow) stay inside the commands so `recomart --help` stays fast.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from recomart.cli.app import app, console

experiment_app = typer.Typer(help="Online A/B experiments between model versions: define, read out, "
                                  "size.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


def _fail(exc: Exception) -> None:
    console.print(f"[red]{exc}")
    raise typer.Exit(1) from exc


@experiment_app.command("create")
def create(
    name: str = typer.Argument(..., help="Experiment name (a-z 0-9 _ -)"),
    control: str = typer.Option("models:/recomart_hybrid@champion", help="Control model reference"),
    treatment: str = typer.Option("models:/recomart_hybrid@challenger",
                                  help="Treatment model reference (@alias or /version)"),
    weights: str = typer.Option("50,50", help="Traffic weights control,treatment"),
    unit: str = typer.Option("user", help="Randomisation unit: user, or session (anonymous traffic)"),
    metric: str = typer.Option("ctr", "--metric", help="Primary metric: ctr, conversion, "
                                                       "revenue_per_user, add_to_cart_rate, "
                                                       "clicks_per_user"),
    secondary: str = typer.Option("conversion,revenue_per_user", help="Secondary metrics, comma "
                                                                      "separated ('' for none)"),
    mde: float = typer.Option(0.05, help="Minimum detectable effect, relative (0.05 = +5%)"),
    alpha: float = typer.Option(0.05, help="Significance level (two-sided)"),
    power: float = typer.Option(0.8, help="Power"),
    window_hours: float = typer.Option(24.0, "--window-hours", help="Attribution window"),
    sequential_n: int = typer.Option(5000, "--sequential-n",
                                     help="Total units at which the always-valid interval is "
                                          "tightest (about the planned sample size)"),
    start: str | None = typer.Option(None, help="Start time ISO-8601 UTC (default: now)"),
    description: str = typer.Option("", help="What the experiment tests"),
) -> None:
    """Define and start an experiment. A running one cannot change: stop it and create it again
    (a new revision with a new salt re-shuffles assignment)."""
    from recomart.experiments import definitions
    from recomart.lake import Lake

    try:
        w = [float(x) for x in weights.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"weights must be numbers like 50,50, got {weights!r}") from exc
    if len(w) != 2:
        raise typer.BadParameter(f"give two weights (control,treatment), got {weights!r}")
    spec = {"name": name, "unit": unit, "primary_metric": metric,
            "secondary_metrics": [m for m in secondary.split(",") if m],
            "variants": [{"name": "control", "model": control, "weight": w[0]},
                         {"name": "treatment", "model": treatment, "weight": w[1]}],
            "mde": mde, "alpha": alpha, "power": power, "attribution_window_hours": window_hours,
            "sequential_tuning_n": sequential_n, "description": description}
    if start:
        spec["started_at"] = datetime.fromisoformat(start).astimezone(UTC).isoformat()
    try:
        exp = definitions.create(Lake(), spec)
    except definitions.ExperimentError as exc:
        _fail(exc)
    console.print(f"[green]created[/] {exp.name} revision {exp.revision} (salt {exp.salt}), "
                  f"started {exp.started_at}")
    _show(exp)


def _show(exp) -> None:
    from rich.table import Table

    table = Table(title=f"{exp.name} r{exp.revision} [{exp.status}]")
    for col in ("variant", "model", "weight", "share"):
        table.add_column(col)
    for v in exp.variants:
        table.add_row(v.name, v.model, f"{v.weight:g}", f"{exp.probability(v.name):.1%}")
    console.print(table)
    console.print(f"unit {exp.unit} · primary {exp.primary_metric} · secondary "
                  f"{', '.join(exp.secondary_metrics) or '-'} · MDE {exp.mde:.1%} · α {exp.alpha} · "
                  f"power {exp.power} · window {exp.attribution_window_hours:g} h")


@experiment_app.command("list")
def list_() -> None:
    """Every experiment with its status and latest decision."""
    from rich.table import Table

    from recomart.experiments import definitions, run
    from recomart.lake import Lake

    lake = Lake()
    exps = definitions.list_all(lake)
    if not exps:
        console.print("no experiments yet: `recomart experiment create NAME`")
        raise typer.Exit(0)
    table = Table(title="experiments")
    for col in ("name", "rev", "status", "started", "unit", "metric", "control", "treatment",
                "latest decision"):
        table.add_column(col)
    for e in exps:
        try:
            r = run.latest_readout(lake, e.name)
            decision = f"{r['decision']} ({r['ds']})"
        except run.NothingToAnalyse:
            decision = "-"
        table.add_row(e.name, str(e.revision), e.status, e.started_at, e.unit, e.primary_metric,
                      e.variants[0].model, e.variants[1].model, decision)
    console.print(table)


@experiment_app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print the definition JSON")
         ) -> None:
    """The definition (and the latest readout's decision)."""
    from recomart.experiments import definitions, run
    from recomart.lake import Lake

    try:
        exp = definitions.load(Lake(), name)
    except definitions.ExperimentError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(exp.model_dump(mode="json"), indent=2))
        return
    _show(exp)
    try:
        r = run.latest_readout(Lake(), name)
        console.print(f"latest readout {r['ds']}: [bold]{r['decision']}[/] — {r['reason']}")
    except run.NothingToAnalyse:
        console.print("no readout yet")


@experiment_app.command("stop")
def stop(name: str, reason: str = typer.Option("stopped by hand", help="Why")) -> None:
    """Stop an experiment (its exposures after now are quarantined as after_experiment_stop)."""
    from recomart.experiments import definitions
    from recomart.lake import Lake

    try:
        exp = definitions.stop(Lake(), name, reason)
    except definitions.ExperimentError as exc:
        _fail(exc)
    console.print(f"stopped {exp.name} r{exp.revision} at {exp.stopped_at}")


def print_readout(readout: dict) -> None:
    """The readout in the terminal: per-variant table, lift with its interval, SRM, decision."""
    from rich.table import Table

    r = readout
    metric = r["primary_metric"]
    table = Table(title=f"{r['experiment']} r{r['revision']} readout {r['ds']} ({metric})")
    for col in ("variant", "model", "units", "exposures", "clicks", "purchases", "revenue", metric):
        table.add_column(col, justify="right" if col not in ("variant", "model") else "left")
    for v in r["variants"]:
        table.add_row(v["variant"], v["model"], f"{v['units']:,}", f"{v['exposures']:,}",
                      f"{v['clicks']:,}", f"{v['purchases']:,}", f"{v['revenue']:,.2f}",
                      "n/a" if v.get(metric) is None else f"{v[metric]:.4f}")
    console.print(table)
    for c in r["primary"]:
        if not c or "welch" not in c:
            continue
        w, s, cu = c["welch"], c["sequential"], c.get("cuped")
        console.print(f"lift {c['treatment']} vs control: {w['rel_lift']:+.2%} "
                      f"(95% CI {w['rel_ci_low']:+.2%} .. {w['rel_ci_high']:+.2%}), difference "
                      f"{w['diff']:+.4f} [{w['ci_low']:+.4f}, {w['ci_high']:+.4f}], Welch p = "
                      f"{w['p_value']:.3g}")
        if cu:
            console.print(f"  CUPED: {cu['rel_lift']:+.2%} ({cu['rel_ci_low']:+.2%} .. "
                          f"{cu['rel_ci_high']:+.2%}), variance −{cu['variance_reduction']:.0%}")
        console.print(f"  always-valid interval of the difference [{s['ci_low']:+.4f}, "
                      f"{s['ci_high']:+.4f}]")
    srm = r.get("srm")
    if srm:
        console.print(f"SRM: χ² = {srm['chi2']:.2f}, p = {srm['p_value']:.3g} → "
                      + ("[red]MISMATCH (decisions blocked)[/]" if srm["mismatch"] else "[green]clean[/]"))
    rec = r.get("reconciliation") or {}
    if rec:
        console.print(f"exposures: {rec['landed']:,} landed = {rec['replays_dropped']:,} replays + "
                      f"{rec['not_in_experiment']:,} other + {rec['quarantined']:,} quarantined "
                      f"{rec.get('reasons') or ''} + {rec['valid']:,} valid; events attributed "
                      f"{rec['events_attributed']:,}")
    ss = r["sample_size"]
    console.print(f"sample size: {ss['smallest_group']:,} of {ss['required_per_group'] or 'n/a'} "
                  f"per group ({'reached' if ss['reached'] else 'not reached'})")
    console.print(f"[bold]decision: {r['decision']}[/] — {r['reason']}")


@experiment_app.command("report")
def report(name: str,
           date: str | None = typer.Option(None, "--date", help="Readout date YYYY-MM-DD (default: "
                                                                "today UTC)"),
           no_mlflow: bool = typer.Option(False, "--no-mlflow", help="Do not log to MLflow")) -> None:
    """Compute the readout from the lake now, write its PDF, log it to MLflow and print it."""
    from recomart.config import get_settings
    from recomart.experiments import definitions, run
    from recomart.lake import Lake

    lake = Lake()
    ds = date or datetime.now(UTC).date().isoformat()
    settings = get_settings()
    try:
        with console.status(f"reading exposures and clickstream for {name} as of {ds} ..."):
            summary = run.analyse_experiments(lake, ds, names=[name],
                                              cuped_feature=settings.experiment_cuped_feature)
            published = run.publish_readouts(lake, ds, summary,
                                             log_mlflow=settings.experiment_log_mlflow and not no_mlflow)
    except (definitions.ExperimentError, run.NothingToAnalyse) as exc:
        _fail(exc)
    print_readout(run.latest_readout(lake, name))
    info = published[name]
    console.print(f"PDF: {info['pdf']}" + (f" · MLflow run {info['mlflow_run_id']}"
                                          if info["mlflow_run_id"] else ""))


@experiment_app.command("sample-size")
def sample_size(
    sigma: float | None = typer.Option(None, help="Standard deviation of the metric (means)"),
    effect: float | None = typer.Option(None, help="Absolute effect to detect (means)"),
    baseline_rate: float | None = typer.Option(None, "--baseline-rate", help="Control rate "
                                                                              "(proportions)"),
    relative_lift: float | None = typer.Option(None, "--relative-lift", help="Relative lift to "
                                                                             "detect (proportions)"),
    alpha: float = typer.Option(0.05, help="Significance level"),
    power: float = typer.Option(0.8, help="Power"),
    one_sided: bool = typer.Option(False, "--one-sided", help="One-sided test"),
    units_per_day: float | None = typer.Option(None, "--units-per-day",
                                               help="Traffic, for the expected duration"),
    weights: str = typer.Option("50,50", help="Weights, for the expected duration"),
) -> None:
    """Units per group: for means (--sigma, --effect) or two proportions (--baseline-rate,
    --relative-lift). Prints the number alone on stdout (details on stderr)."""
    from recomart.experiments import statistics as st

    try:
        if sigma is not None and effect is not None:
            n = st.sample_size_means(sigma, effect, alpha, power, one_sided)
            what = f"means: σ = {sigma:g}, τ = {effect:g}"
        elif baseline_rate is not None and relative_lift is not None:
            n = st.sample_size_proportions(baseline_rate, relative_lift, alpha, power, one_sided)
            what = f"proportions: p₀ = {baseline_rate:g}, lift {relative_lift:+.1%}"
        else:
            raise typer.BadParameter("give --sigma and --effect (means), or --baseline-rate and "
                                     "--relative-lift (proportions)")
    except st.StatisticsError as exc:
        _fail(exc)
    console.print(f"{what}, α = {alpha:g} ({'one' if one_sided else 'two'}-sided), power {power:g}: "
                  f"{n:,} per group")
    if units_per_day:
        w = dict(zip(("control", "treatment"), (float(x) for x in weights.split(",")), strict=True))
        days = st.expected_days(n, w, units_per_day)
        console.print(f"expected duration at {units_per_day:,.0f} units/day: {days:.1f} days")
    print(n)


simulate_app = typer.Typer(help="Simulated traffic with known ground truth.", no_args_is_help=True)
app.add_typer(simulate_app, name="simulate")


@simulate_app.command("shoppers")
def shoppers(
    url: str = typer.Option("http://127.0.0.1:8000", help="Serving API base URL"),
    visits: int = typer.Option(1000, help="Recommendation requests to make"),
    shop_users: int = typer.Option(3000, "--shop-users", help="Users of the generated shop"),
    shop_products: int = typer.Option(600, "--shop-products", help="Products of the generated shop"),
    shop_days: int = typer.Option(60, "--shop-days", help="Days of the generated shop"),
    seed: int = typer.Option(42, help="Generator seed of the shop (the truth) and of the shoppers"),
    n: int = typer.Option(10, "-n", help="Items per list"),
) -> None:
    """Synthetic shoppers whose true preferences are the generator's latent affinities request
    recommendations from the real serving API, click / cart / buy with probabilities from their
    affinity and the position, and send the events (with request_id) to POST /v1/events (Kafka).
    The --shop-* flags and --seed must be those the shop was generated with."""
    from rich.progress import Progress

    from recomart.experiments import simulator

    shop = simulator.Shop.from_generator(shop_users, shop_products, shop_days, seed=seed)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("shoppers", total=visits)
        try:
            out = simulator.drive_http(url, shop, users=list(range(1, shop_users + 1)),
                                       visits=visits, seed=seed, n=n,
                                       progress=lambda i, total: bar.update(task, completed=i))
        except Exception as exc:  # connection refused, timeouts: say where
            _fail(RuntimeError(f"serving API at {url} failed: {type(exc).__name__}: {exc}"))
    console.print(f"{out.requests:,} requests ({out.failures:,} failed), {out.lists_with_items:,} "
                  f"non-empty lists, {out.events_sent:,} events accepted, {out.events_rejected:,} "
                  f"rejected; lists per variant {out.by_variant}")
    if out.requests == out.failures or out.events_sent == 0:
        console.print("[red]no shopper activity reached the API: nothing was simulated")
        raise typer.Exit(1)
