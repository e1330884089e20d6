"""Airflow glue shared by RecoMart's DAG files (importable: Airflow puts ``plugins/`` on sys.path).

- :func:`run_ds`: the day a run covers, by the one rule in ``recomart.orchestration.resolve_ds``
  (the OpenLineage plugin uses the same rule).
- :func:`fail_fast`: a library ``PermanentError`` (conflicting raw landing, missing source file,
  failed quality gate, nothing published) becomes ``AirflowFailException``, so Airflow fails the
  task at once instead of retrying what cannot change; every other error keeps the task's retries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def run_ds() -> str:
    from airflow.sdk import get_current_context

    from recomart.orchestration import context_ds

    return context_ds(get_current_context())


def fail_fast(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from recomart.errors import PermanentError

        try:
            return fn(*args, **kwargs)
        except PermanentError as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {exc} (not retried: a retry cannot "
                                       "change this outcome)") from exc

    wrapper.recomart_fail_fast = True  # type: ignore[attr-defined]  # checked by the DAG tests
    return wrapper  # type: ignore[return-value]
