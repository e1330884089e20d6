"""Reuse of deterministic fits within one process.

One training run fits the same component on the same data several times: the SVD baseline and
the hybrid's final SVD source both fit on the holdout's training part with the same parameters,
EASE's lambda search fits on exactly the per-user split the hybrid's ranker later uses, and so on.
Those fits are deterministic (fixed seed, closed form), so the second one is looked up by a digest
of its exact inputs instead of recomputed. The memo is small (a few entries, least recently used
dropped first) and only holds what the fit returns; callers must not modify what they get back.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)
T = TypeVar("T")


def digest(*arrays: np.ndarray, extra: Any = None) -> str:
    """A content digest of arrays (values, dtype and shape) plus any repr-able ``extra``."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.asarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(pd.util.hash_array(a.ravel()).tobytes() if a.dtype != object
                 else pd.util.hash_array(a.ravel().astype(str)).tobytes())
    h.update(repr(extra).encode())
    return h.hexdigest()


class FitMemo:
    """``get_or_fit(key, fit)``: the stored result for ``key``, else ``fit()`` stored."""

    def __init__(self, name: str, maxsize: int = 4) -> None:
        self.name = name
        self.maxsize = maxsize
        self._items: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def get_or_fit(self, key: str, fit: Callable[[], T]) -> T:
        with self._lock:  # fits may run on threads (``evaluate.BACKGROUND_FITS``)
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                log.info("%s: reusing an identical earlier fit", self.name)
                return self._items[key]
            self.misses += 1
        value = fit()  # outside the lock: two threads with one key may both fit (same result)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every stored fit and reset the hit/miss counts."""
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


def clear_fit_memos() -> None:
    """Drop every stored fit (the end of a training run: a long-lived worker keeps no factors)."""
    from recomart.models.baselines import EASE_FITS
    from recomart.models.svd import SVD_FITS

    for memo in (SVD_FITS, EASE_FITS):
        memo.clear()
