"""A daemon thread that calls ``refresh()`` every ``poll_s`` until stopped: the batch view's hot
swap and the experiment router both keep serving what they have while they re-read the lake."""

from __future__ import annotations

import threading


class BackgroundRefresh:
    """Mixin: the subclass sets ``poll_s`` and defines ``refresh()``; call ``_init_refresh()``."""

    poll_s: float
    thread_name = "refresh"

    def _init_refresh(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> object:  # pragma: no cover - the subclass's
        raise NotImplementedError

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
