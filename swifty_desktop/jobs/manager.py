"""JobManager: the engine's face to the rest of the app (GUI, CLI, scheduler).

``submit`` writes one ``queued`` row and returns.  When a worker slot is free the
manager claims due jobs atomically in the database (within the worker count and
per-kind limits) and starts a :class:`JobRunner` on its QThreadPool for each; a
runner supervises its job in a worker process, persists the job's transitions
off the GUI thread, and takes the next due job for its slot when it is done.
The manager re-emits what runners report as its own signals.  It works under
QCoreApplication (CLI, headless worker) and under the GUI alike.

Several engines (the app, ``worker``, ``jobs submit --wait``) may share one data
directory: claims are atomic, running jobs carry a lease renewed by a heartbeat
thread, and jobs of a dead engine are declared ``interrupted`` (and re-queued when
their kind is safe to re-run).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThreadPool, QTimer, Signal, Slot
from sqlalchemy import Connection, Engine

from swifty_desktop.db.engine import BUSY_TIMEOUT_S, checkpoint_wal
from swifty_desktop.jobs import secrets
from swifty_desktop.jobs.dispatch import Dispatcher
from swifty_desktop.jobs.inuse import EngineUse
from swifty_desktop.jobs.model import FINAL_STATES, JobError, JobRecord, JobStatus, Trigger
from swifty_desktop.jobs.pool import WorkerPool
from swifty_desktop.jobs.runner import EngineServices, JobRunner, RunnerSignals
from swifty_desktop.jobs.store import JobStateError, JobStore, new_engine_id
from swifty_desktop.jobs.worker import TEMP_MARK
from swifty_desktop.paths import DataDir
from swifty_desktop.tasks import get_kind, registry

log = logging.getLogger(__name__)


class _Heartbeat(threading.Thread):
    """Renews this engine's leases off the GUI thread, so a busy window never loses them.

    A job this engine runs whose row is no longer ours (another engine declared it
    interrupted) is reported to ``on_lost`` after two beats in a row, so that it stops
    here instead of running twice.
    """

    def __init__(self, store: JobStore, engine_id: str, interval: float, lease_s: float,
                 running: Callable[[], Iterable[int]],
                 on_lost: Callable[[set[int]], None]) -> None:
        super().__init__(name="engine-heartbeat", daemon=True)
        self._store, self._engine_id = store, engine_id
        self._interval, self._lease_s = interval, lease_s
        self._running, self._on_lost = running, on_lost
        self._stop_event = threading.Event()

    def run(self) -> None:
        beats = 0
        suspects: set[int] = set()
        while not self._stop_event.wait(self._interval):
            beats += 1
            try:
                before = set(self._running())
                renewed = self._store.heartbeat(self._engine_id, self._lease_s)
                missing = (before & set(self._running())) - renewed
                lost, suspects = missing & suspects, missing
                if lost:
                    self._on_lost(lost)
                if beats % 2 == 0:  # the WAL is checkpointed here, never in a commit
                    checkpoint_wal(self._store.engine)
            except Exception:  # the database may be busy; the next beat tries again
                log.warning("heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()


class JobManager(QObject):
    """Submits, runs, retries and cancels jobs; tells listeners through signals.

    Signals carry job ids; read the row with :meth:`job` (jobs running here are
    served from memory, without a query).  ``timeouts`` and ``concurrency`` override
    the kinds' own time limits and per-kind limits (settings, tests).
    """

    jobAdded = Signal(int)
    jobChanged = Signal(int)
    jobProgress = Signal(int, object, str)  # id, fraction or None, message
    jobLog = Signal(int, str)
    jobFinished = Signal(int, str)  # id, final status value
    countsChanged = Signal()

    def __init__(
        self,
        engine: Engine,
        data_dir: DataDir,
        *,
        workers: int | None = None,
        role: str = "app",
        roots: Iterable[int] | None = None,
        lease_s: float = 2 * BUSY_TIMEOUT_S,  # a beat may wait out one busy timeout
        heartbeat_s: float = 2.0,
        poll_s: float = 0.5,
        grace_s: float = 5.0,
        watch_external: bool = True,
        timeouts: Mapping[str, float] | None = None,
        concurrency: Mapping[str, int] | None = None,
        rand: random.Random | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = JobStore(engine)
        self.data_dir = data_dir
        self._use = EngineUse(data_dir.root)  # held while started: see jobs/inuse.py
        self.engine_id = new_engine_id(role)
        self.role = role
        self.max_workers = max(1, int(workers or os.cpu_count() or 1))
        self._lease_s, self._heartbeat_s = lease_s, heartbeat_s
        self._watch_external = watch_external

        self.pool = WorkerPool(self.max_workers)
        self._threads = QThreadPool(self)
        self._threads.setMaxThreadCount(self.max_workers)
        self._dispatcher = Dispatcher(self.store, self.engine_id, self.max_workers, lease_s,
                                      roots, concurrency)
        self._signals = RunnerSignals(self)
        self._signals.progress.connect(self._on_progress)
        self._signals.log.connect(self._on_log)
        self._signals.finished.connect(self._on_finished)
        self._signals.unknown.connect(self._fail_unknown)
        self._stopping_event = threading.Event()
        self._svc = EngineServices(
            store=self.store, dispatcher=self._dispatcher, pool=self.pool,
            signals=self._signals, data_dir=str(data_dir.root), db_url=self._worker_db_url(),
            grace_s=grace_s, stopping=self._stopping_event, running={},
            rand=rand or random.Random(), timeouts=dict(timeouts or {}),
        )
        self._runners: list[JobRunner] = []  # alive runners, kept referenced until done
        self._snapshots: dict[int, JobRecord] = {}
        self._added: dict[int, JobRecord] = {}  # queued here a moment ago; see snapshot()
        self._finished: OrderedDict[int, JobRecord] = OrderedDict()  # see snapshot()
        self._observed: OrderedDict[int, tuple[float, str]] = OrderedDict()
        self._known_max_id = 0
        self._last_external_poll = time.time()
        self._started = False
        self._stopping = False
        self._heartbeat: _Heartbeat | None = None
        self._ticks = 0

        self._dispatch_timer = QTimer(self, singleShot=True, interval=0)
        self._dispatch_timer.timeout.connect(self._dispatch)
        self._poll_timer = QTimer(self, interval=max(10, int(poll_s * 1000)))
        self._poll_timer.timeout.connect(self._poll)
        self._retry_timer = QTimer(self, singleShot=True)
        self._retry_timer.timeout.connect(self.schedule_dispatch)
        self._counts_timer = QTimer(self, singleShot=True, interval=100)
        self._counts_timer.timeout.connect(self.countsChanged)

    def _worker_db_url(self) -> str:
        return self.store.engine.url.render_as_string(hide_password=False)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> list[JobRecord]:
        """Recover jobs of dead engines, warm the worker pool and begin dispatching.

        Returns the jobs found interrupted (those of kinds safe to re-run are re-queued).
        """
        if self._started:
            return []
        self._started = True
        if not self._use.acquire():  # a restore of this data directory is under way
            log.error("the data directory %s stayed locked by a restore for a minute; "
                      "starting anyway", self.data_dir.root)
        self.store.register_engine(self.engine_id, self.role)
        recovered = self._recover()
        self.pool.start()
        self._heartbeat = _Heartbeat(self.store, self.engine_id, self._heartbeat_s,
                                     self._lease_s, self.running_ids, self._stop_lost)
        self._heartbeat.start()
        latest = self.store.list(limit=1)
        self._known_max_id = latest[0].id if latest else 0
        for job_id in self.store.active_ids():
            self._observe(job_id, 0.0, "active")
        self._last_external_poll = time.time()
        self._poll_timer.start()
        self._arm_retry_timer()
        self.schedule_dispatch()
        return recovered

    def drain(self, timeout: float) -> bool:
        """Stop taking new jobs and wait up to ``timeout`` s for running ones to end.

        Returns True when nothing runs any more.  Call :meth:`stop` afterwards.
        """
        self._stopping_event.set()
        self._dispatch_timer.stop()
        deadline = time.monotonic() + timeout
        while self._alive_runners() and time.monotonic() < deadline:
            self._threads.waitForDone(50)
            QCoreApplication.sendPostedEvents(self)
            QCoreApplication.processEvents()
        return not self._alive_runners()

    def resume_dispatch(self) -> None:
        """Take jobs again after :meth:`drain` (the user decided not to quit after all).

        Queued jobs start again as slots allow; running jobs were never touched.
        Does nothing once :meth:`stop` has begun: a stopping engine stays stopped.
        """
        if self._stopping:
            return
        self._stopping_event.clear()
        self.schedule_dispatch()

    def stop(self, *, cancel_running: bool = True, interrupt: bool = False,
             timeout: float = 10.0) -> None:
        """Stop taking jobs; stop the running ones; stop the workers.

        Running jobs are asked to stop (cooperatively, then killed after the grace
        period) and end ``cancelled`` — or ``interrupted`` with ``interrupt=True``
        (an engine shutting down rather than a user cancelling: kinds safe to re-run
        are queued again).  With ``cancel_running=False`` they may finish for up to
        ``timeout`` seconds.  Jobs still running after that are killed and marked
        interrupted.
        """
        if not self._started or self._stopping:
            return
        self._stopping = True
        self._stopping_event.set()
        for timer in (self._dispatch_timer, self._poll_timer, self._retry_timer):
            timer.stop()
        if interrupt:
            self._svc.shutdown_status = JobStatus.INTERRUPTED.value
        if cancel_running or interrupt:
            for runner in self._alive_runners():
                runner.request_cancel("shutdown")
        deadline = time.monotonic() + timeout
        while self._alive_runners() and time.monotonic() < deadline:
            self._threads.waitForDone(20)
            QCoreApplication.sendPostedEvents(self)
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self.pool.shutdown(timeout=1.0)
        self._threads.waitForDone(5000)
        QCoreApplication.sendPostedEvents(self)
        with self._dispatcher.lock:
            leftover = list(self._svc.running)
        if leftover:
            self.store.recover_own(self.engine_id, leftover)
            for job_id in leftover:
                self.jobChanged.emit(job_id)
                self.jobFinished.emit(job_id, JobStatus.INTERRUPTED.value)
        self.store.unregister_engine(self.engine_id)
        self._use.release()
        self._started = False

    @property
    def is_running(self) -> bool:
        return self._started and not self._stopping

    def _alive_runners(self) -> list[JobRunner]:
        self._runners = [r for r in self._runners if not r.done.is_set()]
        return self._runners

    # ------------------------------------------------------------------- public API
    def submit(self, kind: str, params: Mapping[str, Any] | None = None,
               trigger: Trigger | None = None, *, title: str | None = None) -> int:
        """Validate and queue a job; return its id after one short transaction.

        Raises ParamError (unknown kind, bad parameter) before anything is written.
        """
        title, clean, trigger = self._prepare(kind, params, trigger, title)
        job_id = self.store.insert(kind, title, clean, trigger)
        self._queued(job_id, kind, title, clean, trigger)
        return job_id

    def submit_claimed(self, kind: str, params: Mapping[str, Any] | None,
                       trigger: Trigger, claim: Callable[[Connection, int], bool], *,
                       title: str | None = None) -> int | None:
        """Like :meth:`submit`, with ``claim(conn, job_id)`` run in the insert's
        transaction: None (and nothing queued) when it returns False.  A schedule
        claims its run this way, so a crash cannot separate the claim from the job.
        """
        title, clean, trigger = self._prepare(kind, params, trigger, title)
        job_id = self.store.insert_claimed(kind, title, clean, trigger, claim)
        if job_id is not None:
            self._queued(job_id, kind, title, clean, trigger)
        return job_id

    def _prepare(self, kind: str, params: Mapping[str, Any] | None, trigger: Trigger | None,
                 title: str | None) -> tuple[str, dict[str, Any], Trigger]:
        """Validate (ParamError before anything is written), secrets to the keyring:
        (title, parameters to store, trigger)."""
        spec = get_kind(kind)
        clean = secrets.stash(spec, spec.validate(params), self.store.engine)
        return title or spec.make_title(clean), clean, trigger or Trigger("api")

    def _queued(self, job_id: int, kind: str, title: str, clean: dict[str, Any],
                trigger: Trigger) -> None:
        # the row as written, so listeners can show it without reading it back
        now = time.time()
        self._added[job_id] = JobRecord(
            id=job_id, kind=kind, title=title[:300], status=JobStatus.QUEUED, trigger=trigger,
            params=clean, attempt=1, retry_of=None, root_id=None, superseded_by=None,
            schedule_id=trigger.ref if trigger.type == "schedule" else None, created_at=now,
            started_at=None, finished_at=None, updated_at=now, not_before=None, progress=None,
            message=None, output_path=None, result=None, error=None, checkpoint=None,
            engine_id=None, lease_until=None, cancel_requested=False)
        while len(self._added) > 64:
            self._added.pop(next(iter(self._added)))
        self._announce_added(job_id)
        self.schedule_dispatch()

    def retry(self, job_id: int) -> int:
        """Queue a new attempt of a failed, cancelled or interrupted job; return its id."""
        latest = self.store.retry_target(job_id)
        new_id = self.store.create_retry(latest, automatic=False)
        self.jobChanged.emit(latest.id)
        self._announce_added(new_id)
        self.schedule_dispatch()
        return new_id

    def retry_many(self, ids: Sequence[int]) -> list[int]:
        """Retry many jobs at once (one transaction); return the new attempts' ids.

        Each id stands for its chain: the latest attempt is retried if it failed,
        was cancelled or interrupted; the others are skipped.
        """
        pairs = self.store.create_retries(ids)
        for old, _new_id in pairs:
            self.jobChanged.emit(old.id)
        for _old, new_id in pairs:
            self._announce_added(new_id)
        if pairs:
            self.schedule_dispatch()
        return [new_id for _old, new_id in pairs]

    def cancel(self, job_id: int) -> str:
        """Cancel a queued job now, or ask a running one to stop.

        Returns ``"cancelled"`` (it was queued), ``"stopping"`` (running here) or
        ``"requested"`` (running in another engine, which will stop it).
        """
        job = self.store.get(job_id)
        JobStore.check_cancellable(job)
        if job.status is JobStatus.QUEUED and self.store.cancel_queued(job_id):
            self._observe(job_id, time.time(), JobStatus.CANCELLED.value)
            self.jobChanged.emit(job_id)
            self.jobFinished.emit(job_id, JobStatus.CANCELLED.value)
            self._counts_changed()
            return "cancelled"
        with self._dispatcher.lock:
            runner = self._svc.running.get(job_id)
        if runner is not None:
            runner.request_cancel(job_id=job_id)
            snap = self._snapshots.get(job_id)
            if snap is not None:
                self._on_progress(job_id, snap.progress, "Cancelling…")
            return "stopping"
        if self.store.request_cancel(job_id):
            return "requested"
        JobStore.check_cancellable(self.store.get(job_id))  # it ended meanwhile: say so
        return "requested"

    def job(self, job_id: int) -> JobRecord:
        """The job's current snapshot (from memory while it runs here)."""
        snap = self._snapshots.get(job_id)
        return snap if snap is not None else self.store.get(job_id)

    def snapshot(self, job_id: int) -> JobRecord | None:
        """The job as this manager knows it, from memory only (never a query).

        Known: jobs queued, running or recently finished here (with their final
        status, output and result); None for anything else.
        """
        snap = self._snapshots.get(job_id)
        if snap is None:
            snap = self._finished.get(job_id)
        return snap if snap is not None else self._added.get(job_id)

    def running_ids(self) -> list[int]:
        with self._dispatcher.lock:
            return list(self._svc.running)

    def _stop_lost(self, ids: set[int]) -> None:
        """Jobs running here that another engine took over: stop them (any thread)."""
        with self._dispatcher.lock:
            runners = {i: self._svc.running.get(i) for i in ids}
        for job_id, runner in runners.items():
            if runner is not None:
                log.warning("job #%s is no longer this engine's (another engine declared it "
                            "interrupted); stopping it here", job_id)
                runner.request_cancel(job_id=job_id)

    def schedule_dispatch(self) -> None:
        """Ask for a dispatch pass on the next event-loop turn (calls coalesce)."""
        if self._started and not self._stopping and not self._stopping_event.is_set() \
                and not self._dispatch_timer.isActive():  # drain(): no new jobs
            self._dispatch_timer.start()

    # -------------------------------------------------------------------- dispatch
    @Slot()
    def _dispatch(self) -> None:
        """Fill free worker slots with due jobs (runners then keep their slot busy)."""
        if not self._started or self._stopping:
            return
        disp = self._dispatcher
        if self.max_workers - disp.slots_in_use <= 0:  # racy read; the lock decides
            return
        with disp.lock:
            free = self.max_workers - disp.slots_in_use
            if free <= 0:
                return
            try:
                claimed, unknown = disp.claim_locked(free)
            except Exception:  # e.g. the database is locked for longer than its timeout
                log.warning("could not claim jobs; will try again", exc_info=True)
                QTimer.singleShot(1000, self.schedule_dispatch)
                return
            disp.slots_in_use += len(claimed)
            runners = [JobRunner([job], self._svc) for job in claimed]
            for runner, job in zip(runners, claimed, strict=True):
                self._svc.running[job.id] = runner
        for runner, job in zip(runners, claimed, strict=True):
            self._runners.append(runner)
            self._on_started(job)
            self._threads.start(runner)
        if unknown:
            self._fail_unknown(unknown)
        if disp.skipped and len(claimed) < free:
            QTimer.singleShot(250, self.schedule_dispatch)  # lost a race, or kinds were full

    @Slot(object)
    def _fail_unknown(self, claimed: list[JobRecord]) -> None:
        outcomes = [{"id": j.id, "status": JobStatus.FAILED.value, "error": {
            "type": "UnknownKind",
            "message": (f"this version of Swifty Desktop has no job kind '{j.kind}' (the job "
                        "may come from a newer version); update the app to run it"),
            "traceback": "", "transient": False}} for j in claimed]
        for job_id in self.store.finish_many(self.engine_id, outcomes):
            self.jobChanged.emit(job_id)
            self.jobFinished.emit(job_id, JobStatus.FAILED.value)

    def _arm_retry_timer(self, due: float | None = None) -> None:
        """Dispatch again when the next delayed retry becomes due."""
        if due is None:
            due = self.store.soonest_retry()
        if due is None:
            return
        delay_ms = max(0, int((due - time.time()) * 1000) + 5)
        if not self._retry_timer.isActive() or self._retry_timer.remainingTime() > delay_ms:
            self._retry_timer.start(delay_ms)

    def _counts_changed(self) -> None:
        """Coalesce: listeners re-count at most ten times a second."""
        if not self._counts_timer.isActive():
            self._counts_timer.start()

    # --------------------------------------------------------------- from runners
    def _on_started(self, job: JobRecord) -> None:
        self._added.pop(job.id, None)
        self._snapshots[job.id] = job
        self._observe(job.id, job.updated_at, "active")
        self.jobChanged.emit(job.id)
        self._counts_changed()

    @Slot(int, object, str)
    def _on_progress(self, job_id: int, fraction: float | None, message: str) -> None:
        snap = self._snapshots.get(job_id)
        if snap is not None:
            self._snapshots[job_id] = dataclasses.replace(snap, progress=fraction,
                                                          message=message)
        self.jobProgress.emit(job_id, fraction, message)

    @Slot(int, str)
    def _on_log(self, job_id: int, line: str) -> None:
        self.jobLog.emit(job_id, line)

    @Slot(object)
    def _on_finished(self, report: dict[str, Any]) -> None:
        """A runner finished a batch: announce outcomes, retries and its next jobs."""
        for outcome in report["outcomes"]:
            job_id = int(outcome["id"])
            snap = self._snapshots.pop(job_id, None)
            if outcome.get("persisted"):
                if snap is not None:
                    self._remember_finished(snap, outcome)
                self._observe(job_id, time.time(), outcome["status"])
                self.jobChanged.emit(job_id)
                self.jobFinished.emit(job_id, outcome["status"])
            retry = outcome.get("retry")
            if retry:
                new_id, due = retry
                self._announce_added(new_id)
                self._arm_retry_timer(due)
        for job_id in report["requeued"]:
            self._snapshots.pop(job_id, None)
            self._observe(job_id, time.time(), "active")
            self.jobChanged.emit(job_id)
        for job in report["next"]:
            self._on_started(job)
        self._counts_changed()
        self.schedule_dispatch()

    def _remember_finished(self, snap: JobRecord, outcome: Mapping[str, Any]) -> None:
        err = outcome.get("error")
        retry = outcome.get("retry")
        self._finished[snap.id] = dataclasses.replace(
            snap, status=JobStatus(outcome["status"]), finished_at=time.time(),
            updated_at=time.time(), output_path=outcome.get("output_path"),
            result=outcome.get("result"),
            progress=outcome.get("progress", 1.0 if outcome["status"] == "completed" else None),
            message=outcome.get("message", snap.message),
            superseded_by=retry[0] if retry else None,
            error=JobError(type=err.get("type") or "Error", message=err.get("message") or "",
                           traceback=err.get("traceback") or "",
                           transient=bool(err.get("transient"))) if err else None)
        while len(self._finished) > 2000:
            self._finished.popitem(last=False)

    # -------------------------------------------------------------------- polling
    @Slot()
    def _poll(self) -> None:
        """Pick up work and changes from other processes; honour remote cancels."""
        if not self._started or self._stopping:
            return
        self._ticks += 1
        try:
            with self._dispatcher.lock:
                running = dict(self._svc.running)
            if running:
                for job_id in self.store.cancel_requests(self.engine_id):
                    runner = running.get(job_id)
                    if runner is not None:
                        runner.request_cancel(job_id=job_id)
            if self._ticks % 10 == 0:
                self._recover()
            if self._watch_external:
                self._poll_external(running)
        except Exception:
            log.warning("polling the job table failed; will try again", exc_info=True)
        self.schedule_dispatch()

    def _poll_external(self, running: Mapping[int, JobRunner]) -> None:
        """Re-emit changes other processes made (the CLI, a headless worker)."""
        started = time.time()
        rows = self.store.changed_since(self._last_external_poll - 2.0)
        self._last_external_poll = started
        added: list[int] = []
        for job in rows:
            if job.id in running or job.id in self._snapshots:
                continue
            prev = self._observed.get(job.id)
            if prev is not None and prev[0] >= job.updated_at:
                continue
            state = "active" if job.status in (JobStatus.QUEUED, JobStatus.RUNNING) else \
                job.status.value
            self._observe(job.id, job.updated_at, state)
            if job.id > self._known_max_id:
                added.append(job.id)
                continue
            if prev is not None and prev[1] == state and state != "active":
                continue
            self.jobChanged.emit(job.id)
            if job.status is JobStatus.RUNNING:
                self.jobProgress.emit(job.id, job.progress, job.message or "")
            if prev is not None and prev[1] == "active" and job.status in FINAL_STATES:
                self.jobFinished.emit(job.id, job.status.value)
        for job_id in sorted(added):
            self._announce_added(job_id)
        if rows:
            self._counts_changed()

    def _observe(self, job_id: int, updated_at: float, state: str) -> None:
        self._observed[job_id] = (updated_at, state)
        self._observed.move_to_end(job_id)
        if len(self._observed) > 20000:
            self._observed.popitem(last=False)

    def _announce_added(self, job_id: int) -> None:
        self._known_max_id = max(self._known_max_id, job_id)
        self._observe(job_id, time.time(), "active")
        self.jobAdded.emit(job_id)
        self._counts_changed()

    # ------------------------------------------------------------------- recovery
    def _recover(self) -> list[JobRecord]:
        recovered = self.store.recover(self.engine_id)
        for job in recovered:
            self._remove_partial_files(job)
            spec = registry().get(job.kind)
            log.warning("job #%s (%s) was interrupted", job.id, job.kind)
            self._observe(job.id, job.updated_at, JobStatus.INTERRUPTED.value)
            self.jobChanged.emit(job.id)
            self.jobFinished.emit(job.id, JobStatus.INTERRUPTED.value)
            if spec is not None and spec.rerun_safe:
                try:
                    new_id = self.store.create_retry(job, automatic=True,
                                                     trigger=Trigger.recovery(job.id))
                except JobStateError:
                    continue
                self._announce_added(new_id)
        if recovered:
            self._counts_changed()
            self.schedule_dispatch()
        return recovered

    def _remove_partial_files(self, job: JobRecord) -> None:
        """Delete what an interrupted job was writing (``.name.part-<id>`` files)."""
        folders = {self.data_dir.outputs}
        for value in job.params.values():
            if isinstance(value, str) and os.path.isabs(value):
                folders.add(Path(value).parent)
        suffix = f"{TEMP_MARK}{job.id}"
        for folder in folders:
            try:  # outputs/ may have sub-folders (relative output names keep theirs)
                found = (folder.rglob(f".*{suffix}") if folder == self.data_dir.outputs
                         else folder.glob(f".*{suffix}"))
                for path in found:
                    if path.name.endswith(suffix):
                        path.unlink(missing_ok=True)
            except OSError:
                continue
