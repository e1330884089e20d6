"""`recomart` command line. Each sub-module registers its commands on the shared app."""

from __future__ import annotations

from recomart.cli import data, features, models, pipeline, stream  # noqa: F401  (registers commands)
from recomart.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
