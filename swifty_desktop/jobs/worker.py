"""The worker-process side of the engine: runs job bodies, one at a time.

A worker is spawned once and reused.  It talks to the runner that supervises it
over a duplex pipe:

parent -> worker   ``{"job": {...}}`` to run a job, ``None`` to exit
worker -> parent   ``("progress", fraction, message)``, ``("log", line)``,
                   ``("temp", temp_path)``, ``("done", outcome)``

Cancellation is a shared value holding the id of the job to stop, set by the
runner; ``ctx.check_cancelled()`` compares it with its own id.  A runner may send
the next short job before the current one ends (so the worker never waits for the
database); the worker still runs one job at a time, in order, and skips a job
whose cancellation arrived before it started.
A watchdog thread ends the process as soon as the engine that spawned it dies,
so no orphan keeps writing.  Nothing here imports Qt.

Outputs are written under temporary names and renamed into place, all or none,
when the job completes.  A failed job keeps only the reports it asked to keep
(``ctx.output_path(name, keep_on_failure=True)``) and finished
(``ctx.mark_output_complete(path)`` after closing the file); a cancelled,
timed-out or killed job keeps nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the worker imports SQLAlchemy only when a job needs it
    from sqlalchemy import Engine

PROGRESS_INTERVAL_S = 0.05
TEMP_MARK = ".part-"


def temp_path_for(final: Path, job_id: int) -> Path:
    """Where a job writes a file before it is renamed into place."""
    return final.parent / f".{final.name}{TEMP_MARK}{job_id}"


@dataclasses.dataclass
class _Output:
    """One file a job writes: where it is written, and where it goes when kept."""

    temp: Path
    final: Path
    primary: bool
    chosen: bool  # an absolute path the user chose: replaced, never renamed aside
    keep_on_failure: bool = False
    # (size, mtime) when the task said the file is complete; None: not (yet) complete
    completed: tuple[int, int] | None = None


def unique_path(path: Path) -> Path:
    """``path`` or, if it exists, ``name (2).ext``, ``name (3).ext``..."""
    if not path.exists():
        return path
    stem, suffix = path.stem, path.suffix
    if stem.endswith(".rejects"):
        stem, suffix = stem[: -len(".rejects")], ".rejects" + suffix
    n = 2
    while True:
        candidate = path.with_name(f"{stem} ({n}){suffix}")
        if not candidate.exists():
            return candidate
        n += 1


class WorkerContext:
    """The ``ctx`` a job body receives (see :class:`swifty_desktop.tasks.Context`)."""

    def __init__(self, conn: Connection, cancel_flag: Any, job: Mapping[str, Any]) -> None:
        self._conn = conn
        self._cancel = cancel_flag
        self.job_id: int = int(job["id"])
        self.attempt: int = int(job.get("attempt", 1))
        self.kind: str = str(job["kind"])
        self.data_dir = Path(job["data_dir"])
        self.resume_state: Any = job.get("checkpoint")
        self._db_url: str = str(job["db_url"])
        self._engine_id: str | None = job.get("engine_id")
        self.time_limit: float = float(job.get("timeout") or 3600.0)
        self._last_progress = 0.0
        self._pending_progress: tuple[float | None, str] | None = None
        self.outputs: list[_Output] = []
        self.log_lines: list[str] = []

    # -- reporting --------------------------------------------------------------
    def progress(self, fraction: float | None, message: str = "") -> None:
        """Report progress (0..1, or None when unknown) and what is happening now."""
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_INTERVAL_S or fraction == 1.0:
            self._last_progress = now
            self._pending_progress = None
            self._conn.send(("progress", fraction, str(message)))
        else:
            self._pending_progress = (fraction, str(message))

    def flush_progress(self) -> None:
        if self._pending_progress is not None:
            fraction, message = self._pending_progress
            self._pending_progress = None
            self._conn.send(("progress", fraction, message))

    def log(self, line: str) -> None:
        """Add a line to the job's log (shown live in the job details).

        An output's temporary path (or name) in it reads as where the file will go.
        """
        line = _final_names(str(line), self, {}) if self.outputs else str(line)
        self.log_lines.append(line)
        del self.log_lines[:-50]
        self._conn.send(("log", line))

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the user (or a timeout) asked the job to stop."""
        if self._cancel.value == self.job_id:
            from swifty_desktop.tasks.base import JobCancelled

            raise JobCancelled("cancelled")

    @property
    def cancelled(self) -> bool:
        return bool(self._cancel.value == self.job_id)

    # -- state -----------------------------------------------------------------
    def engine(self) -> Engine:
        """This process's SQLAlchemy Engine on the app database (created once)."""
        return _shared_engine(self._db_url)

    def database_url(self) -> str:
        return self._db_url

    def checkpoint(self, state: Any, conn: Any = None) -> None:
        """Save ``state`` durably; a re-run of this job gets it as ``ctx.resume_state``.

        Pass ``conn`` (an open SQLAlchemy Connection in a transaction) to save the
        checkpoint atomically with the work it describes.
        """
        from sqlalchemy import text

        # fenced: only while the job is still running in the engine that sent it here.
        # If another engine took it over, the write (and, with ``conn``, the work saved
        # with it) is refused and rolled back, so the work is never applied twice.
        stmt = text("UPDATE jobs SET checkpoint = :cp WHERE id = :id AND status = 'running'"
                    " AND (engine_id = :eid OR :eid IS NULL)")
        args = {"cp": json.dumps(state), "id": self.job_id, "eid": self._engine_id}
        if conn is not None:
            taken = conn.execute(stmt, args).rowcount
        else:
            from swifty_desktop.db.engine import write_transaction

            with write_transaction(self.engine()) as own:
                taken = own.execute(stmt, args).rowcount
        if not taken:
            from swifty_desktop.tasks.base import JobCancelled

            raise JobCancelled("this job is no longer running in this engine; stopping")
        self.resume_state = state

    # -- outputs ---------------------------------------------------------------
    def output_path(self, name: str, *, primary: bool | None = None,
                    keep_on_failure: bool = False) -> Path:
        """A path to write an output to.  It is renamed into place when the job succeeds.

        ``name`` is a file name (placed in the data directory's ``outputs/``; an
        existing file is never overwritten) or an absolute path the user chose.
        Until the job succeeds the file lives under a temporary name next to its
        destination, so a failed or killed job never leaves a half-written file.
        The first output is the primary one (opened by the notification) unless
        ``primary`` says otherwise.

        ``keep_on_failure=True`` makes the output a report worth keeping even when
        the job fails (a strict import's list of invalid rows): if the job body
        raises an error after the task closed the file and called
        :meth:`mark_output_complete` on it, the file is renamed into place like a
        successful job's output and becomes the failed job's ``output_path``.
        Without that call, or when the job is cancelled, times out or its process
        dies, it is deleted like every other output.
        """
        p = Path(name)
        chosen = p.is_absolute()
        # a relative name keeps its folders, inside outputs/ (never above it)
        inside = Path(*[part for part in p.parts if part not in ("", ".", "..")] or ["output"])
        final = p if chosen else unique_path(self.data_dir / "outputs" / inside)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = temp_path_for(final, self.job_id)
        if primary is None:
            primary = not any(o.primary for o in self.outputs)
        self.outputs.append(_Output(temp, final, primary, chosen, keep_on_failure))
        self._conn.send(("temp", str(temp)))
        return temp

    def mark_output_complete(self, path: Path | str) -> None:
        """Say that the output written to ``path`` (from :meth:`output_path`) is whole.

        Call it after closing the file, and write nothing to it afterwards: only a
        ``keep_on_failure`` output marked complete survives a failed job, and only
        if its size and modification time are still those it had at this call (so
        a report the task went on writing, or had not flushed, is not kept).
        """
        out = self._output(path)
        st = os.stat(out.temp)
        out.completed = (st.st_size, st.st_mtime_ns)

    def final_path(self, temp: Path) -> Path:
        """The final path an output written to ``temp`` will have."""
        for out in self.outputs:
            if out.temp == Path(temp):
                return out.final
        return Path(temp)

    def _output(self, temp: Path | str) -> _Output:
        for out in self.outputs:
            if out.temp == Path(temp):
                return out
        raise ValueError(f"{temp} is not a path ctx.output_path() gave this job")


_ENGINES: dict[str, Engine] = {}


def _shared_engine(url: str) -> Engine:
    if url not in _ENGINES:
        from swifty_desktop.db.engine import make_engine

        _ENGINES[url] = make_engine(url)
    return _ENGINES[url]


def _replace_paths(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, dict):
        return {k: _replace_paths(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_paths(v, mapping) for v in value]
    return value


def _remove_temps(ctx: WorkerContext) -> None:
    for out in ctx.outputs:
        with contextlib.suppress(OSError):  # not there (never written, or moved into place)
            os.unlink(out.temp)


def _place(outputs: list[_Output]) -> list[tuple[_Output, Path]]:
    """Rename each written output into place, all or none; return where each went."""
    done: list[tuple[_Output, Path]] = []
    try:
        for out in outputs:
            if not out.temp.exists():
                continue
            # never overwrite a file of ours; a path the user chose is replaced
            final = out.final if out.chosen else unique_path(out.final)
            os.replace(out.temp, final)
            done.append((out, final))
    except OSError:
        # all outputs or none: a job that fails here must not leave some in place
        for out, final in reversed(done):
            with contextlib.suppress(OSError):
                os.replace(final, out.temp)
        raise
    return done


def _promote(ctx: WorkerContext, result: Any) -> tuple[Any, str | None]:
    """Rename every output into place; return the result with final paths, and the primary."""
    placed = _place(ctx.outputs)
    mapping = {str(out.temp): str(final) for out, final in placed}
    primary = next((str(final) for out, final in placed if out.primary), None)
    return _replace_paths(result, mapping), primary


def _still_as_completed(out: _Output) -> bool:
    try:
        st = os.stat(out.temp)
    except OSError:
        return False
    return out.completed == (st.st_size, st.st_mtime_ns)


def _keep_reports(ctx: WorkerContext) -> tuple[str | None, dict[str, Path], str]:
    """For a failed job: rename its completed keep-on-failure outputs into place.

    Returns the path the job records (the primary among them, else the first), where
    each one went (by temporary path), and a note for the error if they could not be
    kept.  The caller deletes every other temporary file.
    """
    reports = [o for o in ctx.outputs if o.keep_on_failure and o.completed is not None
               and o.temp.exists()]
    changed = [o for o in reports if not _still_as_completed(o)]
    for out in changed:
        ctx.log(f"{out.final.name} changed after the job said it was complete; not kept")
    reports = [o for o in reports if o not in changed]
    if not reports:
        return None, {}, ""
    try:
        placed = _place(reports)
    except OSError as exc:
        names = ", ".join(o.final.name for o in reports)
        ctx.log(f"could not keep {names}: {exc}")
        return None, {}, f" ({names} could not be kept: {exc})"
    if not placed:
        return None, {}, ""
    primary = next((f for o, f in placed if o.primary), placed[0][1])
    return str(primary), {str(o.temp): f for o, f in placed}, ""


def _final_names(text: str, ctx: WorkerContext, placed: Mapping[str, Path]) -> str:
    """``text`` with each output's temporary path (or name) replaced by its final one,
    as a task names its report by the path ``ctx.output_path`` gave it."""
    mapping: dict[str, str] = {}
    for out in ctx.outputs:
        final = placed.get(str(out.temp), out.final)
        mapping[str(out.temp)] = str(final)
        mapping[out.temp.name] = final.name
    if not mapping or not any(k in text for k in mapping):
        return text
    pattern = re.compile("|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)))
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def run_job(conn: Connection, cancel_flag: Any, job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job body and describe how it ended (never raises).

    Completed: every output is renamed into place.  Failed (the body raised an
    error, not KeyboardInterrupt or SystemExit): only the ``keep_on_failure``
    outputs the task marked complete are, the primary among them (else the first)
    is the outcome's ``output_path``, and the error names them by their final
    names.  Cancelled (a timeout too): nothing is kept.
    """
    from swifty_desktop.tasks import get_kind
    from swifty_desktop.tasks.base import JobCancelled, TransientError

    ctx = WorkerContext(conn, cancel_flag, job)
    if cancel_flag.value == ctx.job_id:
        return {"status": "cancelled", "skipped": True}  # cancelled before it began
    try:
        spec = get_kind(ctx.kind)
        func = spec.resolve()
        params = job.get("params") or {}
        if any(p.secret for p in spec.params):
            from swifty_desktop.jobs.secrets import reveal

            params = reveal(spec, params, ctx.engine())
        result = func(params, ctx)
        ctx.flush_progress()
        if result is not None and not isinstance(result, dict):
            result = {"value": result}
        # a result must be JSON; fail here rather than in the engine, and before any
        # output is in place (renaming paths in it does not change that)
        json.dumps(result)
        result, primary = _promote(ctx, result)
        return {"status": "completed", "result": result, "output_path": primary}
    except JobCancelled as exc:
        _remove_temps(ctx)
        note = str(exc)  # a task may say what it kept ("12,000 rows stay imported...")
        return {"status": "cancelled", **({"message": note} if note != "cancelled" else {})}
    except BaseException as exc:  # the job body's failure, reported, never raised
        # an error (not KeyboardInterrupt/SystemExit: the process is being stopped)
        # keeps the reports the task completed; everything else goes
        kept, placed, not_kept = (_keep_reports(ctx) if isinstance(exc, Exception)
                                  else (None, {}, ""))
        _remove_temps(ctx)
        transient = isinstance(exc, TransientError)
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        try:
            transient = transient or isinstance(exc, get_kind(ctx.kind).transient_types())
        except Exception:  # a bad declaration: say so in the log, keep the job's own error
            ctx.log(f"could not check whether this error is transient: "
                    f"{traceback.format_exc(limit=1).strip()}")
        if isinstance(exc, MemoryError):
            message = "the job ran out of memory"
        else:
            message = _final_names(str(exc) or type(exc).__name__, ctx, placed) + not_kept
        etype = type(exc)
        # our own error types read best bare; others keep their module (requests...)
        plain = etype.__module__ in ("builtins", "__main__") or \
            etype.__module__.startswith("swifty_desktop.")
        name = etype.__qualname__ if plain else f"{etype.__module__}.{etype.__qualname__}"
        return {
            "status": "failed",
            "error": {
                "type": name,
                "message": message,
                "traceback": _final_names(traceback.format_exc(), ctx, placed),
                "transient": bool(transient),
                **({"retry_after": retry_after} if transient and retry_after else {}),
            },
            **({"output_path": kept} if kept else {}),
        }


def _watch_parent() -> None:
    """Exit at once when the engine process dies (its end of a pipe closes)."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        from multiprocessing.connection import wait

        wait([sentinel])
        os._exit(70)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _lower_priority(nice: int) -> None:
    """Set this process's priority to ``nice`` (absolute, so calling twice is harmless)."""
    if nice <= 0:
        return
    try:
        if hasattr(os, "setpriority"):
            os.setpriority(os.PRIO_PROCESS, 0, max(nice, os.getpriority(os.PRIO_PROCESS, 0)))
        elif sys.platform == "win32":  # pragma: no cover - Windows only
            import ctypes

            below_normal = 0x00004000
            handle = ctypes.windll.kernel32.GetCurrentProcess()
            ctypes.windll.kernel32.SetPriorityClass(handle, below_normal)
    except OSError:
        pass


DEFAULT_NICE = 10


def worker_main(conn: Connection, cancel_flag: Any, nice: int = DEFAULT_NICE) -> None:
    """Entry point of a worker process."""
    _watch_parent()
    _lower_priority(nice)
    import swifty_desktop.tasks  # noqa: F401  (registers every kind)

    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        started_at = time.time()
        outcome = run_job(conn, cancel_flag, msg["job"])
        if not outcome.get("skipped"):
            outcome["started_at"] = started_at
        try:
            conn.send(("done", outcome))
        except (BrokenPipeError, OSError):
            return


def _lower_priority_early() -> None:
    """A spawned worker imports this module first thing (to find ``worker_main``):
    lower its priority now, before its heavier imports compete with the GUI."""
    import multiprocessing

    if multiprocessing.parent_process() is not None and \
            multiprocessing.current_process().name.startswith("swifty-worker"):
        _lower_priority(DEFAULT_NICE)


_lower_priority_early()
