"""Commands for this area (filled in by its issue)."""

from __future__ import annotations

from recomart.cli.app import app  # noqa: F401
