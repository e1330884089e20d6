"""`recomart report quality|eda --date`: regenerate the analysts' PDFs from what the lake holds."""

from __future__ import annotations

from datetime import datetime

import typer

from recomart.cli.app import app, console

report_app = typer.Typer(help="Rebuild the PDF reports (data quality, EDA) for a logical date from the lake.",
                         no_args_is_help=True)
app.add_typer(report_app, name="report")


def _check_date(value: str) -> str:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
    except ValueError as exc:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from exc


DATE = typer.Option(..., "--date", callback=_check_date, help="Logical date YYYY-MM-DD of the run")


@report_app.command("quality")
def quality(date: str = DATE) -> None:
    """Data-quality PDF: reconciliation, quarantine reasons, checks, trends, lineage."""
    from recomart.lake import Lake, LakeError
    from recomart.reports.quality import build_quality_report

    with console.status(f"building the data-quality report for {date} ..."):
        try:
            path = build_quality_report(Lake(), date)
        except LakeError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(1) from exc
    print(path)


@report_app.command("eda")
def eda(date: str = DATE) -> None:
    """Exploratory-analysis PDF from the curated tables as of that date."""
    from recomart.lake import Lake
    from recomart.reports.eda import build_eda_report

    with console.status(f"building the EDA report for {date} ..."):
        path = build_eda_report(Lake(), date)
    print(path)
