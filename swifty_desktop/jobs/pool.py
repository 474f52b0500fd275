"""A warm pool of worker processes, one job per worker at a time.

Workers are spawned (never forked: the engine process has Qt threads) once at
start and reused.  A worker that crashed, timed out or was killed on cancel is
discarded and replaced in the background.  Thread-safe: runners on the
QThreadPool acquire and release workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from swifty_desktop.jobs.worker import worker_main

log = logging.getLogger(__name__)

SPAWN_TIMEOUT_S = 60.0


class WorkerStartError(RuntimeError):
    """A worker process could not be started."""


class WorkerHandle:
    """The engine's end of one worker process."""

    def __init__(self, ctx: Any, nice: int) -> None:
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.cancel_flag = ctx.RawValue("q", 0)  # id of the job to cancel, 0: none
        self.process = ctx.Process(
            target=worker_main,
            args=(child_conn, self.cancel_flag, nice),
            name="swifty-worker",
            daemon=True,
        )
        self.conn: Connection = parent_conn
        self.process.start()
        child_conn.close()
        self.pid: int | None = self.process.pid
        self.jobs_run = 0
        self._ready = False

    def wait_ready(self, timeout: float = SPAWN_TIMEOUT_S) -> None:
        """Block until the worker says it is ready (its imports are done)."""
        if self._ready:
            return
        if not self.conn.poll(timeout):
            self.kill()
            raise WorkerStartError(f"a worker process did not start within {timeout:.0f} s")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerStartError(
                f"a worker process exited while starting (exit code {self.process.exitcode})"
            ) from exc
        if not (isinstance(msg, tuple) and msg[0] == "ready"):
            raise WorkerStartError(f"a worker process sent {msg!r} instead of 'ready'")
        self._ready = True

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def kill(self) -> None:
        """Stop the process now (SIGKILL); used after a cancel grace period or a crash."""
        try:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(5)
        except (OSError, ValueError, AssertionError):
            pass
        self.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to exit after its current job, then make sure it did."""
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()
        self.close()

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


class WorkerPool:
    """Keeps ``size`` warm workers; hands each to one runner at a time."""

    def __init__(self, size: int, *, nice: int = 10, start_method: str = "spawn") -> None:
        self.size = max(1, int(size))
        self.nice = nice
        self._ctx = multiprocessing.get_context(start_method)
        self._cond = threading.Condition()
        self._idle: list[WorkerHandle] = []
        self._busy: set[WorkerHandle] = set()
        self._starting = 0
        self._closed = False
        self.spawned = 0
        self.replaced = 0
        # consecutive start failures: spawning backs off, and after a few of them
        # acquire() fails fast with the reason instead of waiting forever
        self._failures = 0
        self._last_error = ""

    # -- lifecycle ---------------------------------------------------------------
    def start(self, block: bool = False) -> None:
        """Spawn the warm workers (in the background unless ``block``)."""
        with self._cond:
            missing = self.size - len(self._idle) - len(self._busy) - self._starting
            self._starting += max(0, missing)
        for _ in range(max(0, missing)):
            if block:
                self._spawn_one()
            else:
                threading.Thread(target=self._spawn_one, name="worker-spawn", daemon=True).start()

    def _spawn_one(self) -> None:
        with self._cond:
            failures = self._failures
        if failures:
            time.sleep(min(10.0, 0.25 * 2 ** failures))
        handle: WorkerHandle | None = None
        error = ""
        try:
            handle = WorkerHandle(self._ctx, self.nice)
            handle.wait_ready()
        except Exception as exc:
            if not self._closed:  # a start cut short by shutdown is not news
                log.warning("could not start a worker process: %s", exc)
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if handle is not None:
                handle.kill()
            handle = None
        late: WorkerHandle | None = None
        with self._cond:
            self._starting -= 1
            if handle is None:
                self._failures += 1
                self._last_error = error
            else:
                self._failures = 0
                self.spawned += 1
                if self._closed:
                    late = handle  # the pool shut down while this one started
                else:
                    self._idle.append(handle)
            self._cond.notify_all()
        if late is not None:
            late.stop()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker (busy ones are killed after ``timeout``)."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
            self._cond.notify_all()
        for handle in idle:
            handle.stop(timeout=2.0)
        deadline = time.monotonic() + timeout
        for handle in busy:
            handle.process.join(max(0.0, deadline - time.monotonic()))
            handle.kill()

    # -- use -------------------------------------------------------------------
    def acquire(self, timeout: float = SPAWN_TIMEOUT_S) -> WorkerHandle:
        """An idle, ready worker (spawning one if the pool is short)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerStartError("the engine is shutting down")
                if self._failures >= 3:
                    # fail fast, but keep trying in the background (spawns back off), so
                    # the pool recovers once the cause is gone, without a restart
                    if self._starting == 0 and len(self._busy) + len(self._idle) < self.size:
                        self._starting += 1
                        threading.Thread(target=self._spawn_one, name="worker-spawn",
                                         daemon=True).start()
                    raise WorkerStartError(
                        f"worker processes fail to start ({self._last_error}); "
                        "check the log in the data directory's logs/ folder")
                while self._idle:
                    handle = self._idle.pop()
                    if handle.alive():
                        self._busy.add(handle)
                        return handle
                    handle.close()
                if len(self._busy) + self._starting < self.size:
                    self._starting += 1
                    threading.Thread(target=self._spawn_one, name="worker-spawn",
                                     daemon=True).start()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerStartError(
                        f"no worker process became free within {timeout:.0f} s"
                    )
                self._cond.wait(remaining)

    def release(self, handle: WorkerHandle) -> None:
        """Give a healthy worker back after its job."""
        handle.jobs_run += 1
        handle.cancel_flag.value = 0
        with self._cond:
            self._busy.discard(handle)
            closed = self._closed
            if not closed:
                self._idle.append(handle)
            self._cond.notify_all()
        if closed:
            handle.stop()

    def discard(self, handle: WorkerHandle) -> None:
        """Kill a worker that crashed or would not stop, and start a replacement."""
        handle.kill()
        with self._cond:
            self._busy.discard(handle)
            self.replaced += 1
            closed = self._closed
            self._cond.notify_all()
        if not closed:
            self.start()

    def wait_ready(self, timeout: float = SPAWN_TIMEOUT_S) -> bool:
        """Block until all ``size`` workers are started (or ``timeout``); True if so."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._idle) + len(self._busy) < self.size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._starting == 0 and self._failures):
                    return False
                if self._starting == 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
            return len(self._idle) + len(self._busy) >= self.size

    def pids(self) -> list[int]:
        with self._cond:
            return [h.pid for h in [*self._idle, *self._busy] if h.pid is not None]
