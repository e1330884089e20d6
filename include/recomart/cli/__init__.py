"""`recomart` command line. Each sub-module registers its commands on the shared app."""

from __future__ import annotations

from recomart.cli import (  # noqa: F401  (importing registers the commands)
    data,
    experiments,
    features,
    models,
    pipeline,
    registry,
    reports,
    serve,
    stack,
    stream,
)
from recomart.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
