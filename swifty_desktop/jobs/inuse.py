"""Who uses a data directory: a shared lock every running engine holds, which a restore
takes exclusively.

The engines table says which engines run (and names them in messages), but between
reading it and replacing the database an app could start.  A lock closes that gap:
each engine holds a shared ``flock`` on ``.in-use.lock`` in the data directory while
it runs (the OS drops it when the process dies, however it dies), and a restore holds
it exclusively while it works, so an engine starting meanwhile waits for it.

POSIX only (``fcntl.flock``); elsewhere the engines table is the only guard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".in-use.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class InUse(RuntimeError):
    """The data directory is in use by a running engine."""


class EngineUse:
    """An engine's shared hold on its data directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, timeout: float = 60.0) -> bool:
        """Hold the shared lock, waiting up to ``timeout`` s for a restore to finish.

        Returns False (and holds nothing) if it could not; the caller goes on, as
        the engine did before this lock existed, and logs why.
        """
        if fcntl is None or self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
                continue
            self._fd = fd
            return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock


@contextlib.contextmanager
def exclusive_use(root: Path) -> Iterator[None]:
    """Hold the data directory alone for the block; InUse at once if an engine runs."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InUse(f"an engine (the app, a `swifty-desktop worker` or a command "
                        f"waiting for a job) is running on {root}") from None
        yield
    finally:
        os.close(fd)
