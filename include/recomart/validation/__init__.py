"""Validation: parse raw landings, check them (Pandera rows, Great Expectations distributions),
write curated and quarantine tables, the run summary and history; the quality gate.

Heavy libraries (pandas, pyarrow, pandera, GX) load on first use, not on ``import recomart.validation``;
the gate (and with it the lake and the settings) loads on first use of its names too, so the GX
child process (``suite_worker``), which imports this package, loads none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recomart.validation.gate import DataQualityError, publish_validated, quality_gate

__all__ = ["DataQualityError", "publish_validated", "quality_gate", "validate_all"]
_GATE = ("DataQualityError", "publish_validated", "quality_gate")


def __getattr__(name: str) -> Any:
    if name in _GATE:
        from recomart.validation import gate

        return getattr(gate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_all(lake: Any, ds: str, run_id: str, threshold: float | None = None,
                 gx_sample_rows: int | None = None, *, gx_in_process: bool = False) -> dict[str, Any]:
    """See :func:`recomart.validation.run.validate_all`. The GX child process starts here, before
    this process imports pandas and Pandera, so its own (longer) imports overlap ours."""
    from recomart.validation.suite_worker import open_suites

    suites = open_suites(gx_in_process)
    try:
        from recomart.validation.run import validate_all as _validate_all

        return _validate_all(lake, ds, run_id, threshold, gx_sample_rows, suites=suites)
    finally:
        suites.close()
