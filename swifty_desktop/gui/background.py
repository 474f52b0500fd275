"""Short pieces of work off the GUI thread: one call on a QThreadPool thread, its answer
by a queued signal.

For the few things a dialog must wait for without freezing (a settings check that
contacts a server, reading and checking a backup file); job bodies never run here,
they run in worker processes.  A call keeps no widget: it is referenced in a
module-level set until it ends, so closing the window that started it neither stops
nor breaks it, and a receiver that is gone by then is simply not called (connect a
bound slot of a QObject, which Qt disconnects when the object is deleted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

_RUNNING: set[BackgroundCall] = set()


class _Signals(QObject):
    done = Signal(object)  # what the call returned, or the exception it raised


class BackgroundCall(QRunnable):
    """Runs ``func()`` on a pool thread; :attr:`done` carries its return value (or,
    for a fault the function did not handle itself, the exception, logged)."""

    def __init__(self, func: Callable[[], Any], name: str = "") -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python owns it: _RUNNING keeps it until it ends
        self.func = func
        self.name = name or getattr(func, "__name__", "call")
        self._signals = _Signals()
        self.done = self._signals.done

    def start(self, pool: QThreadPool | None = None) -> None:
        _RUNNING.add(self)
        (pool or QThreadPool.globalInstance()).start(self)

    def run(self) -> None:  # on a pool thread
        try:
            try:
                value = self.func()
            except Exception as exc:
                log.exception("the background call %s failed", self.name)
                value = exc
            self.done.emit(value)
        finally:
            _RUNNING.discard(self)


def running() -> int:
    """How many background calls have not ended yet (for shutdown and tests)."""
    return len(_RUNNING)
