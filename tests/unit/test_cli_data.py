"""`recomart generate` / `recomart catalog-api` through the real Typer app."""

from __future__ import annotations

from datetime import date

from typer.testing import CliRunner

from recomart.cli import app
from recomart.sources.generator import generate
from recomart.tables import DATASETS

runner = CliRunner()


def test_help_lists_the_data_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "generate" in result.output and "catalog-api" in result.output


def test_generate_writes_the_same_files_as_the_library(tmp_path):
    args = ["generate", "--users", "40", "--products", "25", "--days", "5", "--seed", "9",
            "--end-date", "2024-03-01", "--out", str(tmp_path / "cli")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    counts = generate(tmp_path / "lib", users=40, products=25, days=5, seed=9,
                      end_date=date(2024, 3, 1))
    for name in DATASETS:
        cli_file = tmp_path / "cli" / f"{name}.csv"
        assert cli_file.read_bytes() == (tmp_path / "lib" / f"{name}.csv").read_bytes()
        assert f"{counts[name]:,}" in result.output


def test_generate_rejects_a_bad_end_date(tmp_path):
    result = runner.invoke(app, ["generate", "--users", "5", "--products", "20", "--days", "1",
                                 "--end-date", "30/06/2024", "--out", str(tmp_path)])
    assert result.exit_code == 2  # a usage error, reported by Typer
    assert "expected YYYY-MM-DD, got '30/06/2024'" in " ".join(result.output.split())
    assert not (tmp_path / "users.csv").exists()


def test_catalog_api_needs_products_csv(tmp_path):
    result = runner.invoke(app, ["catalog-api", "--source-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "products.csv" in result.output


def test_catalog_api_rejects_unknown_faults(tmp_path):
    generate(tmp_path, users=5, products=20, days=1)
    result = runner.invoke(app, ["catalog-api", "--source-dir", str(tmp_path),
                                 "--faults", '{"nope": [1]}'])
    assert result.exit_code == 2
    assert "nope" in result.output
