"""Validation: parse raw landings, check them (Pandera rows, Great Expectations distributions),
write curated and quarantine tables, the run summary and history; the quality gate.

Heavy libraries (pandas, pyarrow, pandera, GX) load on first use, not on ``import recomart.validation``.
"""

from __future__ import annotations

from typing import Any

from recomart.validation.gate import DataQualityError, publish_validated, quality_gate

__all__ = ["DataQualityError", "publish_validated", "quality_gate", "validate_all"]


def validate_all(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from recomart.validation.run import validate_all as _validate_all

    return _validate_all(*args, **kwargs)
