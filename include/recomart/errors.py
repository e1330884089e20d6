"""One error hierarchy for the library, so callers (CLI, DAGs, Faust worker) can tell apart a
fault worth retrying from one that a retry cannot fix.

``PermanentError``: the same input gives the same failure (a conflicting raw landing, a missing
source file, a failed quality gate). The DAG layer turns these into ``AirflowFailException`` so the
task fails at once instead of burning its retries. ``TransientError``: the outside world may heal
(an HTTP 5xx, a broker timeout); retries with back-off are the right answer.
"""

from __future__ import annotations


class RecomartError(Exception):
    """Base class of every error the library raises on purpose."""


class PermanentError(RecomartError):
    """Retrying cannot help: the task should fail at once with this message."""


class TransientError(RecomartError):
    """The operation may succeed if tried again later."""
