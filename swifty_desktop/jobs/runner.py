"""The runner: a QRunnable that supervises jobs running in a worker process.

A runner occupies one worker slot.  It hands jobs to a warm worker, relays
progress and log lines as Qt signals (queued to the manager's thread), enforces
each kind's timeout, turns a cancel request into the worker's cancel value and,
after a grace period, a hard kill.  It persists its jobs' transitions itself
(progress coalesced, outcomes, automatic retries) so that the GUI thread never
waits on the database for a running job, then claims the next due jobs for its
slot, and ends when there are none.  It holds no reference to widgets.

Short jobs are pipelined: while the worker runs one, the next is already in its
pipe, and a runner whose jobs all finish within milliseconds claims them in
growing batches (outcomes and the next claim share one transaction).  A worker
still runs one job at a time; a job sent but not started when its worker dies or
the app quits goes back to the queue untouched.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import threading
import time
import traceback
from multiprocessing.connection import wait
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Signal

from swifty_desktop.jobs.dispatch import Dispatcher
from swifty_desktop.jobs.model import JobRecord, JobStatus, Trigger
from swifty_desktop.jobs.pool import WorkerHandle, WorkerPool, WorkerStartError
from swifty_desktop.jobs.store import JobStateError, JobStore
from swifty_desktop.tasks import registry

log = logging.getLogger(__name__)

POLL_S = 0.1
PROGRESS_WRITE_S = 0.5
QUICK_JOB_S = 0.02  # jobs this short are claimed in batches
MAX_BATCH = 32
UNSTARTED = "unstarted"  # outcome of a job sent to a worker that never began it


class RunnerSignals(QObject):
    """Signals runners emit from pool threads; the manager receives them queued.

    One object per manager, shared by its runners: every signal carries the job id,
    and a QObject created and connected per job would cost more than a small job.
    """

    progress = Signal(int, object, str)  # job id, fraction (float or None), message
    log = Signal(int, str)
    # {"outcomes": [outcome...], "next": [JobRecord...], "requeued": [id...]}: one
    # cross-thread signal per batch of jobs
    finished = Signal(object)
    unknown = Signal(object)  # list of claimed JobRecords of kinds this version lacks


@dataclasses.dataclass
class EngineServices:
    """What runners share with their manager."""

    store: JobStore
    dispatcher: Dispatcher
    pool: WorkerPool
    signals: RunnerSignals
    data_dir: str
    db_url: str
    grace_s: float
    stopping: threading.Event
    running: dict[int, JobRunner]  # guarded by dispatcher.lock
    rand: random.Random
    # what a job stopped by shutdown becomes: "cancelled" (the user chose to cancel
    # and quit) or "interrupted" (the engine stopped; re-runnable kinds re-queue)
    shutdown_status: str = JobStatus.CANCELLED.value
    timeouts: dict[str, float] = dataclasses.field(default_factory=dict)  # per-kind overrides

    def timeout_for(self, kind: str) -> float:
        return self.timeouts.get(kind, registry()[kind].timeout)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def describe_exit(exitcode: int | None) -> str:
    """A sentence fragment about how a worker process ended."""
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        name = _signal_name(-exitcode)
        extra = ""
        if name == "SIGKILL":
            extra = " (the system may have run out of memory)"
        elif name == "SIGSEGV":
            extra = " (a crash in native code)"
        return f"was killed by {name}{extra}"
    return f"exited with code {exitcode}"


def _error(type_: str, message: str, transient: bool = False, tb: str = "") -> dict[str, Any]:
    return {"type": type_, "message": message, "traceback": tb, "transient": transient}


class JobRunner(QRunnable):
    """Runs jobs, one at a time, in one worker slot; see the module docstring."""

    def __init__(self, first_jobs: list[JobRecord], services: EngineServices) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the manager keeps a reference until the runner ends
        self.first_jobs = first_jobs
        self._svc = services
        self._lock = threading.Lock()
        self._cancel_ids: set[int] = set()
        self._shutdown = False
        self._batch_size = 1
        self._handle: WorkerHandle | None = None
        self.done = threading.Event()
        # progress and log lines of the batch in hand, written in bulk (see _flush_io)
        self._logs: list[tuple[int, float, str]] = []
        self._last_progress: dict[int, tuple[float | None, str]] = {}
        self._dirty: set[int] = set()
        self._last_write = time.monotonic()

    # ------------------------------------------------------------- thread-safe API
    def request_cancel(self, reason: str = "cancel", job_id: int | None = None) -> None:
        """Ask job ``job_id`` to stop; ``reason="shutdown"`` stops everything here."""
        with self._lock:
            if reason == "shutdown":
                self._shutdown = True
            elif job_id is not None:
                self._cancel_ids.add(job_id)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:  # on a QThreadPool thread
        batch = self.first_jobs
        try:
            while batch:
                try:
                    outcomes = self._run_batch(batch)
                except Exception as exc:  # the supervisor failed: report, never raise
                    self._drop_worker()
                    outcomes = [{"status": "failed", "error": _error(
                        type(exc).__name__, f"the engine could not run this job: {exc}",
                        tb=traceback.format_exc())} for _ in batch]
                batch = self._finish(batch, outcomes)
        finally:
            if self._handle is not None:
                self._svc.pool.release(self._handle)
                self._handle = None
            self.done.set()

    def _drop_worker(self) -> None:
        if self._handle is not None:
            self._svc.pool.discard(self._handle)
            self._handle = None

    # --------------------------------------------------------------- persistence
    def _finish(self, batch: list[JobRecord], outcomes: list[dict[str, Any]]
                ) -> list[JobRecord]:
        """Persist outcomes, queue automatic retries, claim this slot's next jobs."""
        svc = self._svc
        engine_id = svc.dispatcher.engine_id
        self._flush_io(force=True)
        quick = True
        finished: list[dict[str, Any]] = []
        requeue: list[int] = []
        rare: list[tuple[JobRecord, dict[str, Any]]] = []
        for job, outcome in zip(batch, outcomes, strict=True):
            outcome["id"] = job.id
            status = outcome["status"]
            if status == UNSTARTED:
                requeue.append(job.id)
                continue
            outcome.setdefault("finished_at", time.time())
            if status == JobStatus.CANCELLED.value:
                outcome.setdefault("message", "Cancelled")
            if status != JobStatus.COMPLETED.value:
                last = self._last_progress.get(job.id, (0.0, ""))
                outcome.setdefault("progress", last[0])
                outcome.setdefault("message", last[1])
            if outcome.pop("duration", 1.0) > QUICK_JOB_S:
                quick = False
            if status == JobStatus.FAILED.value and outcome.get("error"):
                quick = False
                tail = svc.store.log_tail(job.id, 15)
                if tail:
                    err = outcome["error"]
                    err["traceback"] = ((err.get("traceback") or "") + "\nLast log lines:\n"
                                        + "\n".join(f"  {line}" for line in tail)).lstrip("\n")
                if err_transient(outcome):
                    rare.append((job, outcome))
                    continue
            if status == JobStatus.INTERRUPTED.value:
                rare.append((job, outcome))
                continue
            finished.append(outcome)
        for job, outcome in rare:  # persist, then queue the automatic retry or re-run
            outcome["persisted"] = job.id in svc.store.finish_many(engine_id, [outcome])
            if not outcome["persisted"]:
                continue
            if outcome["status"] == JobStatus.INTERRUPTED.value:
                outcome["retry"] = self._rerun_after_shutdown(job)
            else:  # also while stopping: the delayed attempt is a row the next engine runs
                outcome["retry"] = self._auto_retry(
                    job, (outcome.get("error") or {}).get("retry_after"))
        self._batch_size = min(MAX_BATCH, self._batch_size * 2) if quick else 1
        next_jobs: list[JobRecord] = []
        unknown: list[JobRecord] = []
        with svc.store.hot_transaction() as cur:  # takes the dispatcher's lock too
            done = svc.store.finish_many(engine_id, finished, cur) if finished else set()
            if requeue:
                svc.store.unclaim(engine_id, requeue, cur)
            for job in batch:
                svc.dispatcher.done_locked(job)
                svc.running.pop(job.id, None)
            if not svc.stopping.is_set() and not self._shutdown:
                try:
                    next_jobs, unknown = svc.dispatcher.claim_locked(self._batch_size, cur)
                except Exception:
                    log.warning("could not claim the next job", exc_info=True)
                for job in next_jobs:
                    svc.running[job.id] = self
            if not next_jobs:
                svc.dispatcher.slots_in_use -= 1
        for outcome in finished:
            outcome["persisted"] = outcome["id"] in done
        svc.signals.finished.emit({"outcomes": finished + [o for _, o in rare],
                                   "next": next_jobs, "requeued": requeue})
        if unknown:
            svc.signals.unknown.emit(unknown)
        return next_jobs

    def _auto_retry(self, job: JobRecord,
                    retry_after: float | None = None) -> tuple[int, float] | None:
        """Queue the next attempt after a transient error, due after the back-off
        (and no sooner than the task's ``retry_after``, e.g. a server's Retry-After)."""
        spec = registry().get(job.kind)
        if spec is None or job.attempt >= spec.retry.max_attempts:
            return None
        delay = spec.retry.delay(job.attempt, self._svc.rand.random())
        due = time.time() + max(delay, float(retry_after or 0.0))
        try:
            return self._svc.store.create_retry(job, automatic=True, not_before=due), due
        except JobStateError:
            return None

    def _rerun_after_shutdown(self, job: JobRecord) -> tuple[int, float] | None:
        spec = registry().get(job.kind)
        if spec is None or not spec.rerun_safe:
            return None
        try:
            new_id = self._svc.store.create_retry(job, automatic=True,
                                                  trigger=Trigger.recovery(job.id))
        except JobStateError:
            return None
        return new_id, time.time()

    # -------------------------------------------------------- progress and logs
    def _flush_io(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_WRITE_S:
            return
        self._last_write = now
        try:
            if self._logs:
                lines, self._logs = self._logs, []
                self._svc.store.add_logs(lines)
            if self._dirty:
                dirty, self._dirty = self._dirty, set()
                self._svc.store.update_progress_many(
                    {j: self._last_progress[j] for j in dirty})
        except Exception:
            log.warning("could not save job progress; will try again", exc_info=True)

    # --------------------------------------------------------------- supervision
    def _run_batch(self, batch: list[JobRecord]) -> list[dict[str, Any]]:
        """Run ``batch`` in order in one worker; one outcome per job, in order."""
        svc = self._svc
        self._logs = []
        self._last_progress = {}
        self._dirty = set()
        self._last_write = time.monotonic()
        outcomes: dict[int, dict[str, Any]] = {}
        if self._handle is None:
            try:
                self._handle = svc.pool.acquire()
            except WorkerStartError as exc:
                return [{"status": "failed", "error": _error("WorkerStartError", str(exc), True)}
                        for _ in batch]
        handle = self._handle
        conn, sentinel = handle.conn, handle.process.sentinel
        pending = list(batch)
        inflight: list[JobRecord] = []
        temp_files: list[str] = []

        def send_next() -> bool:
            job = pending.pop(0)
            try:
                conn.send({"job": {
                    "id": job.id, "kind": job.kind, "params": job.params,
                    "attempt": job.attempt, "checkpoint": job.checkpoint,
                    "data_dir": svc.data_dir, "db_url": svc.db_url,
                    "engine_id": svc.dispatcher.engine_id,
                    "timeout": svc.timeout_for(job.kind)}})
            except (OSError, ValueError):
                pending.insert(0, job)
                return False
            inflight.append(job)
            return True

        def abandon(first: dict[str, Any] | None) -> list[dict[str, Any]]:
            """The worker is gone: ``first`` ends the running job; the rest go back."""
            self._drop_worker()
            for path in temp_files:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            if first is not None and inflight:
                outcomes[inflight[0].id] = first
            return [outcomes.get(j.id, {"status": UNSTARTED}) for j in batch]

        while len(inflight) < 2 and pending:  # the next job waits in the worker's pipe
            if not send_next():
                return abandon(None)
        started = time.monotonic()
        stop_sent_at: float | None = None
        why_stop = ""
        while inflight:
            current = inflight[0]
            with self._lock:
                shutdown = self._shutdown
                cancels = set(self._cancel_ids)
            for job in list(pending):  # not sent yet: cancel without running, or give back
                if job.id in cancels:
                    pending.remove(job)
                    outcomes[job.id] = {"status": JobStatus.CANCELLED.value,
                                        "message": "Cancelled before it started"}
            if shutdown:
                for job in pending:
                    outcomes[job.id] = {"status": UNSTARTED}
                pending.clear()
            flag = next((j.id for j in inflight if j.id in cancels or shutdown), 0)
            if why_stop == "timeout":  # the stop asked for at the time limit stays asked
                flag = current.id
            if handle.cancel_flag.value != flag:
                handle.cancel_flag.value = flag
            now = time.monotonic()
            if stop_sent_at is None:
                if shutdown or current.id in cancels:
                    why_stop = "shutdown" if shutdown else "cancel"
                elif now - started > svc.timeout_for(current.kind):
                    why_stop = "timeout"
                    handle.cancel_flag.value = current.id
                if why_stop:
                    stop_sent_at = now
            elif now - stop_sent_at > svc.grace_s:
                # the cooperative stop did not happen in time: kill and replace the worker
                return abandon(self._stopped(why_stop, current, killed=True))

            ready = wait([conn, sentinel], POLL_S)
            if conn in ready:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is not None:
                    tag = msg[0]
                    if tag == "done":
                        outcome: dict[str, Any] = msg[1]
                        outcome["duration"] = time.monotonic() - started
                        if outcome.pop("skipped", False):
                            outcome = {"status": UNSTARTED} if shutdown else {
                                "status": JobStatus.CANCELLED.value,
                                "message": "Cancelled before it started"}
                        elif outcome["status"] == JobStatus.CANCELLED.value and why_stop:
                            # a task's own note on a cancel says what it kept: keep it
                            note = outcome.get("message") if why_stop == "cancel" else None
                            outcome = self._stopped(why_stop, current, killed=False)
                            if note:
                                outcome["message"] = note
                        outcomes[current.id] = outcome
                        inflight.pop(0)
                        temp_files.clear()
                        started = time.monotonic()
                        stop_sent_at, why_stop = None, ""
                        if pending and not send_next():
                            return abandon(None)
                        continue
                    if tag == "progress":
                        self._last_progress[current.id] = (msg[1], msg[2])
                        self._dirty.add(current.id)
                        svc.signals.progress.emit(current.id, msg[1], msg[2])
                    elif tag == "log":
                        self._logs.append((current.id, time.time(), msg[1]))
                        svc.signals.log.emit(current.id, msg[1])
                    elif tag == "temp":
                        temp_files.append(msg[1])
                    self._flush_io()
                    continue
            if sentinel in ready or (conn in ready and not handle.alive()):
                handle.process.join(1)
                if stop_sent_at is not None:
                    return abandon(self._stopped(why_stop, current, killed=False))
                return abandon({"status": "failed", "error": _error(
                    "WorkerCrashed",
                    f"The worker process running this job {describe_exit(handle.process.exitcode)}"
                    ", so the job did not finish and nothing it was writing was kept. The app "
                    "and other jobs are unaffected; retry the job, and if it happens again, "
                    "check its log for what it was doing.")})
            self._flush_io()
        handle.cancel_flag.value = 0
        return [outcomes[j.id] for j in batch]

    def _stopped(self, why: str, job: JobRecord, killed: bool) -> dict[str, Any]:
        if why == "timeout":
            timeout = self._svc.timeout_for(job.kind)
            how = "; its worker process was killed" if killed else " and was stopped"
            return {"status": "failed", "error": _error(
                "TimeoutError",
                f"The job took longer than its time limit of {timeout:g} s{how}. Nothing it "
                "was writing was kept. If the work is simply large, retry it when the "
                "computer is less busy.")}
        if why == "shutdown" and self._svc.shutdown_status == JobStatus.INTERRUPTED.value:
            return {"status": JobStatus.INTERRUPTED.value, "error": _error(
                "Interrupted", "The engine running this job was shut down before the job "
                "finished. Nothing it was writing was kept; "
                + ("it was queued again." if registry()[job.kind].rerun_safe
                   else "retry it to run it again."))}
        message = "Cancelled because the app quit" if why == "shutdown" else "Cancelled"
        if killed:
            message += (f"; the job did not stop within {self._svc.grace_s:g} s, so its "
                        "worker process was stopped")
        return {"status": "cancelled", "message": message}


def err_transient(outcome: dict[str, Any]) -> bool:
    return bool((outcome.get("error") or {}).get("transient"))
