"""SchedulerService: APScheduler says *when*; the job manager runs *what*.

APScheduler 3 (``QtScheduler`` in the app, ``BackgroundScheduler`` in the headless
``worker``) holds one job per enabled schedule, with a trigger built from the
schedule's rule.  Its callbacks run on APScheduler's executor thread and do one
thing: emit a queued signal.  Everything else happens on the job manager's thread:

1. :func:`~swifty_desktop.scheduling.planner.plan_fire` decides from the database
   row what is due (on time, catch-up, skip);
2. ``JobManager.submit_claimed(kind, params, Trigger.schedule(name, id), claim)``
   queues an ordinary job, retried and notified like any other, and claims its fire
   time (:meth:`ScheduleStore.claim_fire`) in the same transaction: two engines on
   one data directory never fire the same run twice, and an engine killed half-way
   neither loses nor doubles it.  A run that cannot start (unknown kind, stale
   parameters) is claimed with a note in one UPDATE; a database error leaves the
   run due, and the next sync tries again.

The periodic *sync* (every ``sync_s`` seconds) runs on a monotonic timer — a QTimer
in the app, a thread in the worker — not on APScheduler, whose timers count wall
time: setting the clock back must not stall it.  A sync reloads the schedules
(others may have edited them), re-arms APScheduler after the wall clock jumped (a
clock change, or resume from sleep: the wall clock moved more than the monotonic
one, or, where the monotonic clock counts sleep as on Windows, the sync itself came
late) and settles failure streaks: a schedule whose runs keep failing backs off
exponentially, capped, says so in its status note, and starts afresh after a
success.  Time is injectable (``clock``, ``monotonic``) so tests need not wait.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, QTimer, Signal, Slot
from sqlalchemy.exc import SQLAlchemyError

from swifty_desktop.jobs.model import Trigger
from swifty_desktop.jobs.store import JobNotFound
from swifty_desktop.scheduling.planner import ON_TIME_S, plan_fire
from swifty_desktop.scheduling.rules import LOCAL, Rule, RuleError, format_instant
from swifty_desktop.scheduling.store import (
    ScheduleError,
    ScheduleNotFound,
    ScheduleRecord,
    ScheduleStore,
    available_kinds,
    validate_input,
)

log = logging.getLogger(__name__)

MODES = ("qt", "background", "manual")


@dataclasses.dataclass(frozen=True)
class SyncReport:
    """What one :meth:`SchedulerService.sync` did."""

    jump_s: float | None  # how far the clock jumped (or how late the sync was), when it did
    submitted: tuple[int, ...]  # job ids started
    claimed: int  # fire times claimed (run or skipped)


def rule_trigger(rule: Rule) -> Any:
    """An APScheduler trigger that fires at the rule's (DST-safe) fire times."""
    from apscheduler.triggers.base import BaseTrigger

    class RuleTrigger(BaseTrigger):  # type: ignore[misc]
        __slots__ = ("rule",)

        def __init__(self, rule: Rule) -> None:
            self.rule = rule

        def get_next_fire_time(self, previous_fire_time: dt.datetime | None,
                               now: dt.datetime) -> dt.datetime | None:
            # Strictly after now (and after the previous fire time, in datetime's
            # microseconds): APScheduler loops "while next <= now", and after a long
            # sleep it should wake us once — the database decides about missed runs.
            floor = now if previous_fire_time is None else max(now, previous_fire_time)
            after = floor.timestamp()
            while True:
                t = self.rule.next_after(after)
                if t is None:
                    return None
                moment = dt.datetime.fromtimestamp(t, dt.UTC)
                if moment > floor:
                    return moment
                after = t

        def __str__(self) -> str:
            return f"rule[{self.rule.describe()}]"

    return RuleTrigger(rule)


class _SyncTicker(threading.Thread):
    """Calls ``wake()`` every ``interval`` seconds of the monotonic clock (the headless
    worker's periodic sync; ``Event.wait`` does not follow the wall clock)."""

    def __init__(self, interval: float, wake: Callable[[], None]) -> None:
        super().__init__(name="schedule-sync", daemon=True)
        self._interval, self._wake = interval, wake
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            self._wake()

    def stop(self) -> None:
        self._stop_event.set()


class SchedulerService(QObject):
    """Fires schedules as ordinary jobs; lives on (and works on) the job manager's thread.

    ``mode``: ``qt`` (QtScheduler, for the app), ``background`` (BackgroundScheduler,
    for the headless worker) or ``manual`` (no APScheduler: call :meth:`sync` or
    :meth:`run_due` yourself — tests with a fake clock do).
    """

    schedulesChanged = Signal()  # rows changed: added, edited, fired, backed off
    scheduleFired = Signal(int, int)  # schedule id, job id
    # seconds the wall clock moved beyond the monotonic one, or how late a periodic
    # sync came (resume from sleep where the monotonic clock counts sleep)
    clockJumped = Signal(float)
    _wake = Signal(object)  # from any thread: a schedule id, or None for a full sync

    def __init__(self, store: ScheduleStore, manager: Any, *, mode: str = "qt",
                 clock: Callable[[], float] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 sync_s: float = 15.0, on_time_s: float = ON_TIME_S, jump_s: float = 10.0,
                 backoff_after: int = 3, backoff_base_s: float = 60.0,
                 backoff_max_s: float = 3600.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        # made before moveToThread so that it moves along; started on the service's thread
        self._sync_timer = QTimer(self)
        self._sync_timer.setTimerType(Qt.TimerType.CoarseTimer)
        self._sync_timer.timeout.connect(self.request_sync)
        self._ticker: _SyncTicker | None = None
        if parent is None and manager.thread() is not self.thread():
            self.moveToThread(manager.thread())
        self.store = store
        self.manager = manager
        self.mode = mode
        self.clock = clock or store.clock
        self._monotonic = monotonic
        self.sync_s, self.on_time_s, self.jump_s = sync_s, on_time_s, jump_s
        self.backoff_after = max(1, int(backoff_after))
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self._scheduler: Any = None
        self._aps_jobs: dict[int, tuple[Any, ...]] = {}  # schedule id -> rule signature
        self._accounted: set[int] = set()  # job ids whose outcome was settled
        self._signature: tuple[Any, ...] = ()  # the rows as of the last sync
        self._sync_timer.setInterval(max(50, int(sync_s * 1000)))
        self._last_wall = self.clock()
        self._last_mono = monotonic()
        self._started = False
        self._wake.connect(self._on_wake, Qt.ConnectionType.QueuedConnection)
        manager.jobFinished.connect(self._on_job_finished)
        self._listening = True

    # ---------------------------------------------------------------- lifecycle
    def start(self, *, seed_defaults: bool = True) -> None:
        """Seed the default schedules (once per data directory) and start firing.

        The first sync (catch-up of missed runs) happens on the next turn of the
        manager thread's event loop; then one every ``sync_s`` seconds of the
        monotonic clock (not in ``manual`` mode).
        """
        if self._started:
            return
        if seed_defaults:
            added = self.store.ensure_defaults()
            if added:
                log.info("added default schedules: %s", ", ".join(r.name for r in added))
        self._last_wall, self._last_mono = self.clock(), self._monotonic()
        self._started = True
        if self.mode != "manual":
            self._scheduler = self._make_scheduler()
            self._scheduler.start()
        if self.mode == "background":
            self._ticker = _SyncTicker(max(0.05, self.sync_s), self.request_sync)
            self._ticker.start()
        self.request_sync()  # in "qt" mode the first sync also starts the sync timer

    def _make_scheduler(self) -> Any:
        from apscheduler.executors.pool import ThreadPoolExecutor

        logging.getLogger("apscheduler").setLevel(
            max(logging.WARNING, logging.getLogger("apscheduler").getEffectiveLevel()))
        options: dict[str, Any] = {
            "executors": {"default": ThreadPoolExecutor(1)},
            "job_defaults": {"coalesce": True, "misfire_grace_time": None,
                             "max_instances": 1},
            "timezone": dt.UTC,
        }
        if self.mode == "qt":
            from apscheduler.schedulers.qt import QtScheduler

            return QtScheduler(**options)
        from apscheduler.schedulers.background import BackgroundScheduler

        return BackgroundScheduler(daemon=True, **options)

    def shutdown(self) -> None:
        """Stop firing (jobs already queued run on).  Safe to call twice."""
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        if QThread.currentThread() is self.thread():
            self._sync_timer.stop()
        else:
            QMetaObject.invokeMethod(self._sync_timer, "stop",
                                     Qt.ConnectionType.QueuedConnection)
        if self._scheduler is not None:
            try:
                self._scheduler.remove_all_jobs()
                self._scheduler.shutdown(wait=False)
            except Exception:  # already stopped
                log.debug("scheduler shutdown", exc_info=True)
            self._scheduler = None
        self._aps_jobs.clear()
        if self._listening:
            self._listening = False
            try:
                self.manager.jobFinished.disconnect(self._on_job_finished)
            except (RuntimeError, TypeError):  # the manager is gone already
                pass
        self._started = False

    @property
    def is_running(self) -> bool:
        return self._started

    # ------------------------------------------------------- from APScheduler
    def _wake_from_scheduler(self, schedule_id: int | None) -> None:
        """Runs on APScheduler's executor thread: hand over to the manager's thread."""
        self._wake.emit(schedule_id)

    def request_sync(self) -> None:
        """Ask for a sync on the manager's thread soon (safe from any thread)."""
        self._wake.emit(None)

    @Slot(object)
    def _on_wake(self, schedule_id: int | None) -> None:
        if not self._started:
            return
        if self.mode == "qt" and not self._sync_timer.isActive():
            self._sync_timer.start()  # here: a QTimer starts on its own thread only
        try:
            if schedule_id is None:
                self.sync()
            else:
                self.run_due([schedule_id])
        except Exception:  # e.g. the database is locked longer than its timeout
            log.warning("processing schedules failed; the next sync tries again",
                        exc_info=True)

    # ------------------------------------------------------------------- firing
    def sync(self) -> SyncReport:
        """Reload schedules, re-arm APScheduler, fire what is due, settle failures.

        Call on the manager's thread.  After a wall-clock jump (resume from sleep,
        a clock change) APScheduler's timers are rebuilt from the new time.  A jump
        is the wall clock moving ``jump_s`` more (or less) than the monotonic one,
        or — with a periodic sync — a sync coming ``jump_s`` later than ``sync_s``
        (after sleep, where the monotonic clock counts the sleep, as on Windows).
        """
        self._check_thread()
        now, mono = self.clock(), self._monotonic()
        elapsed = mono - self._last_mono
        drift = (now - self._last_wall) - elapsed
        self._last_wall, self._last_mono = now, mono
        late = elapsed - self.sync_s if self.mode != "manual" else 0.0
        jump: float | None = None
        if abs(drift) > self.jump_s:
            jump = drift
            log.info("the wall clock jumped by %+.0f s (resume from sleep or a clock change); "
                     "re-syncing schedules", drift)
        elif late > self.jump_s:
            jump = late
            log.info("the schedules' sync came %.0f s late (resume from sleep, or a busy "
                     "process); re-syncing schedules", late)
        jumped = jump is not None
        records = self.store.list()
        self._arm(records, rebuild=jumped)
        submitted, claimed = self._fire_due(records, now)
        settled = self._settle(records)
        current = self._refresh_next_runs(now)
        if jump is not None:
            self.clockJumped.emit(jump)
        # other processes (the CLI, a worker) change rows too: tell views when anything did
        signature = tuple((r.id, r.name, r.updated_at, r.enabled, r.last_fire_at, r.last_job_id,
                           r.missed, r.failure_streak, r.status_note) for r in current)
        if claimed or settled or signature != self._signature:
            self._signature = signature
            self.schedulesChanged.emit()
        return SyncReport(jump, tuple(submitted), claimed)

    def run_due(self, schedule_ids: Iterable[int] | None = None) -> list[int]:
        """Fire what is due now (all schedules, or these); return the job ids started."""
        self._check_thread()
        if schedule_ids is None:
            records = self.store.list()
        else:
            records = []
            for sid in schedule_ids:
                try:
                    records.append(self.store.get(sid))
                except ScheduleNotFound:
                    continue
        submitted, claimed = self._fire_due(records, self.clock())
        if claimed:
            self.schedulesChanged.emit()
        return submitted

    def _fire_due(self, records: Iterable[ScheduleRecord], now: float) -> tuple[list[int], int]:
        submitted: list[int] = []
        claimed = 0
        for record in records:
            self._note_clock_behind(record, now)
            try:
                plan = plan_fire(record, now, on_time_s=self.on_time_s)
            except RuleError as exc:  # a time zone this computer lacks, a hand-edited row
                note = (f"This schedule cannot fire: {exc}. Edit the schedule to fix its "
                        "rule or time zone.")
                if self.store.set_note(record.id, note):  # sync() tells the views
                    log.warning("schedule %r: %s", record.name, note)
                continue
            if plan is None:
                continue
            claim = functools.partial(
                self.store.claim_fire, record, plan.fire_at, missed=plan.missed,
                note=plan.note, keep_note=plan.keep_note,
                next_run_at=self._next_run_after(record, plan.fire_at))
            try:
                won, job_id = self._submit(record, plan.fire_at, claim) if plan.run else (
                    claim(), None)
            except Exception as exc:  # e.g. "database is locked" past the busy timeout
                # nothing was claimed: the run stays due and the next sync tries again
                level = logging.WARNING if isinstance(exc, SQLAlchemyError) else logging.ERROR
                log.log(level, "schedule %r: the run due %s could not be queued (%s); the "
                        "next sync tries again", record.name, format_instant(plan.fire_at),
                        exc, exc_info=level == logging.ERROR)
                continue
            if not won:
                continue  # another engine claimed it, or the schedule changed meanwhile
            claimed += 1
            log.log(logging.DEBUG if plan.reason == "on time" and not plan.missed
                    else logging.INFO, "schedule %r: %s, run due %s (%d due, %d missed)",
                    record.name, plan.reason, format_instant(plan.fire_at), plan.due,
                    plan.missed)
            if job_id is not None:
                submitted.append(job_id)
                self.scheduleFired.emit(record.id, job_id)
        return submitted, claimed

    def _note_clock_behind(self, record: ScheduleRecord, now: float) -> None:
        """Say so when the clock was set back behind a schedule's last run (or edit).

        Each fire time runs at most once, so the runs up to that instant are not
        repeated and the schedule waits for the clock to pass it; without a word, an
        every-minute schedule would look broken for as long as the clock went back.
        The next claim (a run on time) replaces the note.
        """
        if not record.enabled or record.since - now <= self.on_time_s:
            return
        what = "last run" if record.since == record.last_fire_at else "last change"
        when = format_instant(record.since, LOCAL)
        upcoming = record.next_run(now)
        nxt = f"the next run is {format_instant(upcoming, LOCAL)}" if upcoming else \
            "it has no next run"
        note = (f"The computer's clock is behind this schedule's {what} ({when}): it was "
                f"set back. Runs up to {when} are not repeated; {nxt}. Use Run now if a "
                "run is needed sooner.")
        if self.store.set_note(record.id, note):  # sync() tells the views
            log.warning("schedule %r: the clock is %.0f s behind its %s; it waits for the "
                        "clock to pass %s", record.name, record.since - now, what, when)

    def _next_run_after(self, record: ScheduleRecord, fire_at: float) -> float | None:
        after = fire_at
        if record.backoff_until is not None and record.backoff_until > after:
            after = record.backoff_until - 1e-6
        try:
            return record.rule.next_after(after)
        except RuleError:
            return None

    def _submit(self, record: ScheduleRecord, fire_at: float,
                claim: Callable[..., bool]) -> tuple[bool, int | None]:
        """Claim the run and queue its job in one transaction: (claimed, job id).

        A run that cannot start — its kind is gone or its parameters are stale
        (ParamError) — is still claimed, with a note saying why, in one UPDATE, so the
        schedule moves on to its next run instead of retrying this one in a loop.
        Anything else (a locked database) propagates with nothing claimed.
        """
        from swifty_desktop.tasks import ParamError

        try:
            record = self.store.secure_params(record)  # a row from before the keyring
            job_id = self.manager.submit_claimed(
                record.kind, record.params, Trigger.schedule(record.name, record.id),
                lambda conn, job_id: claim(job_id=job_id, conn=conn))
            return job_id is not None, job_id
        except ParamError as exc:
            note = (f"The run due {format_instant(fire_at, LOCAL)} did not start: {exc}. "
                    "Edit the schedule's kind and parameters, or update the app; the next "
                    "run is tried as planned.")
        if not claim(not_started=note):
            return False, None
        log.warning("schedule %r: %s", record.name, note)
        return True, None

    def _check_thread(self) -> None:
        if QThread.currentThread() is not self.thread():
            raise RuntimeError("SchedulerService works on the job manager's thread; "
                               "call request_sync() from other threads")

    # ---------------------------------------------------------------- APScheduler
    def _arm(self, records: Iterable[ScheduleRecord], *, rebuild: bool = False) -> None:
        """One APScheduler job per enabled schedule, with the schedule's rule."""
        if self._scheduler is None:
            return
        wanted: dict[int, tuple[Any, ...]] = {}
        rules: dict[int, Rule] = {}
        for record in records:
            if record.enabled:
                rule = record.rule
                wanted[record.id] = (rule.cron, rule.interval, rule.timezone, rule.anchor)
                rules[record.id] = rule
        for sid in list(self._aps_jobs):
            if sid not in wanted or rebuild or self._aps_jobs[sid] != wanted[sid]:
                try:
                    self._scheduler.remove_job(f"schedule-{sid}")
                except Exception:  # JobLookupError: already gone
                    pass
                del self._aps_jobs[sid]
        for sid, signature in wanted.items():
            if sid in self._aps_jobs:
                continue
            try:
                self._scheduler.add_job(self._wake_from_scheduler, rule_trigger(rules[sid]),
                                        args=[sid], id=f"schedule-{sid}",
                                        name=f"schedule {sid}", replace_existing=True)
            except RuleError as exc:  # e.g. a time zone this computer does not know
                log.warning("schedule #%s cannot be armed: %s", sid, exc)
                continue
            self._aps_jobs[sid] = signature

    # ------------------------------------------------------------ back-off
    @Slot(int, str)
    def _on_job_finished(self, job_id: int, status: str) -> None:
        if status not in ("completed", "failed"):
            return  # cancelled or interrupted runs neither break nor extend a streak
        try:
            job = self.manager.job(job_id)
        except JobNotFound:
            return
        if job.schedule_id is None:
            return
        if status == "failed" and job.superseded_by is not None:
            return  # an automatic retry follows; its outcome counts
        try:
            record = self.store.get(job.schedule_id)
        except ScheduleNotFound:
            return
        self._accounted.add(job_id)
        if self._account(record):
            self.schedulesChanged.emit()

    def _settle(self, records: list[ScheduleRecord]) -> bool:
        """Settle outcomes of last runs this engine did not see finish (other engines)."""
        changed = False
        for sid, last in self.store.last_runs(records).items():
            if last.status not in ("completed", "failed") or last.job_id in self._accounted:
                continue
            self._accounted.add(last.job_id)
            record = next(r for r in records if r.id == sid)
            changed |= self._account(record)
        return changed

    def _account(self, record: ScheduleRecord) -> bool:
        """Recount the failure streak from the registry; back off or reset.  Idempotent."""
        streak, failed_at, error = self.store.failure_streak_from_jobs(record)
        until: float | None = None
        note = record.status_note
        if streak >= self.backoff_after:
            delay = min(self.backoff_max_s,
                        self.backoff_base_s * 2 ** (streak - self.backoff_after))
            until = (failed_at if failed_at is not None else self.clock()) + delay
            cause = f" (last error: {error})" if error else ""
            note = (f"Backing off: the last {streak} runs failed{cause}. Runs due before "
                    f"{format_instant(until, LOCAL)} are skipped so that a failing service "
                    "is not hammered. Fix the cause and use Run now; a successful run ends "
                    "the back-off.")
        elif record.backoff_until is not None or record.failure_streak >= self.backoff_after:
            note = None  # the back-off is over; other notes (a catch-up) stay
        next_run = dataclasses.replace(record, backoff_until=until).next_run(self.clock())
        return self.store.set_failure_state(record.id, streak, until, note, next_run)

    def _refresh_next_runs(self, now: float) -> list[ScheduleRecord]:
        """Keep ``next_run_at`` current for other readers; return the fresh rows."""
        current = self.store.list()
        for record in current:
            expected = record.next_run(now)
            if record.next_run_at != expected:
                self.store.set_next_run(record.id, expected)
        return current

    # ------------------------------------------------------- actions (GUI, API)
    def kinds(self) -> list[Any]:
        """Every job kind (KindSpec), for editors that build a parameter form."""
        return available_kinds()

    def validate(self, **values: Any) -> Any:
        """Check schedule values without writing; raise ScheduleError."""
        return validate_input(**values)

    def add(self, **values: Any) -> ScheduleRecord:
        """Create a schedule (see ScheduleStore.add); it is armed at once."""
        record = self.store.add(**values)
        self._changed()
        return record

    def update(self, schedule_id: int, **changes: Any) -> ScheduleRecord:
        """Change a schedule (see ScheduleStore.update); it is re-armed at once."""
        record = self.store.update(schedule_id, **changes)
        self._changed()
        return record

    def set_enabled(self, schedule_id: int, enabled: bool) -> ScheduleRecord:
        """Pause (False) or resume (True)."""
        record = self.store.set_enabled(schedule_id, enabled)
        self._changed()
        return record

    def remove(self, schedule_id: int) -> bool:
        """Delete a schedule (its past jobs stay); False if it was gone already."""
        removed = self.store.remove(schedule_id)
        self._changed()
        return removed

    def run_now(self, schedule_id: int) -> int:
        """Queue a run now, outside the rule (it does not move the next fire time)."""
        from swifty_desktop.tasks import ParamError

        record = self.store.get(schedule_id)
        try:
            record = self.store.secure_params(record)  # a row from before the keyring
            job_id = int(self.manager.submit(record.kind, record.params,
                                              trigger=Trigger.schedule(record.name, record.id)))
        except ParamError as exc:
            raise ScheduleError(f"schedule '{record.name}' cannot run: {exc}. Edit its kind "
                                "and parameters.") from None
        self.store.record_job(record.id, job_id)
        self.scheduleFired.emit(record.id, job_id)
        self.schedulesChanged.emit()
        return job_id

    def _changed(self) -> None:
        self.schedulesChanged.emit()
        if self._started:
            self.request_sync()


def start_qt_scheduler(services: Any, manager: Any, parent: QObject | None = None
                       ) -> SchedulerService:
    """The app's scheduler: QtScheduler on the GUI thread's event loop.

    ``services`` is the bootstrap's Services (its ``engine`` is used).  Seeds the
    default schedules once per data directory; call ``shutdown()`` on exit.
    """
    service = SchedulerService(ScheduleStore(services.engine), manager, mode="qt", parent=parent)
    service.start()
    return service


def __getattr__(name: str) -> Any:
    if name == "start_background_scheduler":  # defined with the CLI hook, kept light there
        from swifty_desktop.scheduling.cli import start_background_scheduler

        return start_background_scheduler
    raise AttributeError(name)


__all__ = ["SchedulerService", "SyncReport", "rule_trigger", "start_qt_scheduler"]
