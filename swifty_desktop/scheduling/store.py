"""The ``schedules`` table: recurring jobs a person can see, trust and change.  No Qt here.

Every read and write of schedule rows goes through :class:`ScheduleStore`.  Writes a
user makes (add, edit, pause, resume) bump ``updated_at``: runs due before it are not
made up.  ``rule_changed_at`` moves only when the rule itself (cron, interval, time
zone) changes: an interval's runs count from it, so renaming or pausing a schedule
does not shift its fire times.  The bookkeeping the scheduler does (claims, last
job, back-off) moves neither.

Parameters a job kind declares secret never reach this table: saving a schedule
moves them to the OS keyring (:func:`swifty_desktop.jobs.secrets.stash`) once, and
the row keeps ``keyring:`` references that every run of the schedule shares.

Several engines (the app, a headless ``worker``) may share one database.  A fire time
is *claimed* in the same transaction that queues its job (``JobManager.submit_claimed``
runs :meth:`ScheduleStore.claim_fire` on the insert's connection): one conditional
UPDATE moves ``last_fire_at`` from the value the engine read to the new fire time, so
exactly one engine wins each run, and a crash loses or doubles none.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from swifty_desktop.db.engine import write_transaction
from swifty_desktop.db.models import Job, JobLog, Schedule, Setting
from swifty_desktop.scheduling.rules import LOCAL, Rule, RuleError, format_instant

schedules: Table = Schedule.__table__  # type: ignore[assignment]
jobs: Table = Job.__table__  # type: ignore[assignment]
job_logs: Table = JobLog.__table__  # type: ignore[assignment]
settings: Table = Setting.__table__  # type: ignore[assignment]

MISFIRE_POLICIES = ("coalesce", "skip")
DEFAULT_GRACE_S = 86400
NAME_MAX = 120
SEEDED_KEY = "scheduling.defaults_seeded"
NOT_STARTED_MARK = "did not start"  # in the status note of a run that could not start

Clock = Callable[[], float]

log = logging.getLogger(__name__)
RUN_LOG_PREFIX = "Run of schedule"  # the first log line of every job a schedule queues


def run_log_line(record: ScheduleRecord, fire_at: float, missed: int = 0) -> str:
    """The log line a schedule's job starts with: which fire time it stands for.

    ``Run of schedule 'Nightly' due 2026-05-29T07:00:00.000000+00:00 (Fri 09:00 CEST)``,
    then how many missed runs it stands in for; the ISO time is exact, for scripts.
    """
    moment = dt.datetime.fromtimestamp(fire_at, dt.UTC).isoformat(timespec="microseconds")
    try:
        here = format_instant(fire_at, record.timezone)
    except RuleError:
        here = format_instant(fire_at, LOCAL)
    line = f"{RUN_LOG_PREFIX} '{record.name}' due {moment} ({here})"
    if missed:
        line += f"; it stands in for {missed} missed run{'s' if missed != 1 else ''}"
    return line


class ScheduleError(ValueError):
    """Bad schedule input or a schedule that does not exist; the message is for people."""


class ScheduleNotFound(ScheduleError, LookupError):
    """No schedule by that name or id."""


@dataclasses.dataclass(frozen=True)
class DefaultSchedule:
    name: str
    kind: str
    cron: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# Seeded once per data directory, in local time.  Their kinds may not exist yet in a
# given build: they are stored anyway, and a firing of a missing kind says so.
DEFAULT_SCHEDULES: tuple[DefaultSchedule, ...] = (
    DefaultSchedule("Exchange rates", "exchange_rates", "0 7 * * *"),
    DefaultSchedule("Archive completed orders", "archive", "0 2 * * 0", {"older_than_days": 90}),
    DefaultSchedule("Weekly sales report", "report_pdf", "0 6 * * 1"),
)


@dataclasses.dataclass(frozen=True)
class ScheduleRecord:
    """An immutable snapshot of one schedule row."""

    id: int
    name: str
    kind: str
    params: dict[str, Any]
    cron: str | None
    interval_seconds: int | None
    timezone: str
    enabled: bool
    misfire_policy: str
    grace_seconds: int
    created_at: float
    updated_at: float
    rule_changed_at: float
    last_fire_at: float | None
    last_job_id: int | None
    next_run_at: float | None
    missed: int
    failure_streak: int
    backoff_until: float | None
    status_note: str | None

    @classmethod
    def from_row(cls, row: Any) -> ScheduleRecord:
        """From a result row mapping (``.mappings()``)."""
        try:
            params = json.loads(row["params"] or "{}")
        except ValueError:
            params = {}
        return cls(
            id=int(row["id"]), name=row["name"], kind=row["kind"],
            params=params if isinstance(params, dict) else {},
            cron=row["cron"], interval_seconds=row["interval_seconds"],
            timezone=row["timezone"] or LOCAL, enabled=bool(row["enabled"]),
            misfire_policy=row["misfire_policy"] or "coalesce",
            grace_seconds=int(row["grace_seconds"] if row["grace_seconds"] is not None
                              else DEFAULT_GRACE_S),
            created_at=row["created_at"], updated_at=row["updated_at"],
            rule_changed_at=(row["rule_changed_at"] if row["rule_changed_at"] is not None
                             else row["created_at"]),
            last_fire_at=row["last_fire_at"], last_job_id=row["last_job_id"],
            next_run_at=row["next_run_at"], missed=int(row["missed"] or 0),
            failure_streak=int(row["failure_streak"] or 0),
            backoff_until=row["backoff_until"], status_note=row["status_note"],
        )

    @property
    def rule(self) -> Rule:
        """The firing rule; an interval counts from when the rule came into force
        (a rename or a pause does not move its fire times)."""
        return Rule(cron=self.cron, interval=self.interval_seconds, timezone=self.timezone,
                    anchor=self.rule_changed_at)

    @property
    def since(self) -> float:
        """Fire times after this instant are due: the last claim or the last edit."""
        if self.last_fire_at is not None and self.last_fire_at > self.updated_at:
            return self.last_fire_at
        return self.updated_at

    def describe_rule(self) -> str:
        try:
            return self.rule.describe()
        except RuleError:
            return f"Cron {self.cron}" if self.cron else f"Every {self.interval_seconds} s"

    def next_run(self, now: float) -> float | None:
        """When it fires next as things stand (None when paused); honours back-off."""
        if not self.enabled:
            return None
        try:
            rule = self.rule
            after = max(now, self.since)
            if self.backoff_until is not None and self.backoff_until > after:
                after = self.backoff_until - 1e-6
            return rule.next_after(after)
        except RuleError:
            return None


@dataclasses.dataclass(frozen=True)
class LastRun:
    """The newest attempt of a schedule's last job."""

    job_id: int  # the newest attempt (a retry, if the run was retried)
    status: str  # of the newest attempt
    at: float  # when the run was queued (its first attempt)
    finished_at: float | None  # of the newest attempt


@dataclasses.dataclass(frozen=True)
class ScheduleSummary:
    """One schedule as people see it (the CLI's ``schedules list``, the Schedules view)."""

    record: ScheduleRecord
    rule: str  # "Every Monday at 06:00"
    last_run: float | None  # when the last run was queued (or was due, if it did not start)
    last_status: str | None  # the job's status, "not started", or None (never ran)
    last_job_id: int | None  # the newest attempt of the last run
    next_run: float | None

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape of a schedule: a contract scripts rely on."""
        from swifty_desktop.jobs.model import iso

        r = self.record
        return {
            "id": r.id, "name": r.name, "kind": r.kind, "params": r.params,
            "rule": self.rule, "cron": r.cron, "every": r.interval_seconds,
            "timezone": r.timezone, "enabled": r.enabled, "misfire": r.misfire_policy,
            "grace_seconds": r.grace_seconds,
            "last_run": iso(self.last_run), "last_status": self.last_status,
            "last_job_id": self.last_job_id, "next_run": iso(self.next_run),
            "missed": r.missed, "failure_streak": r.failure_streak,
            "backoff_until": iso(r.backoff_until), "note": r.status_note,
            "created_at": iso(r.created_at), "updated_at": iso(r.updated_at),
        }


@dataclasses.dataclass(frozen=True)
class ScheduleInput:
    """Validated values for a new or edited schedule."""

    name: str
    kind: str
    params: dict[str, Any]
    cron: str | None
    interval_seconds: int | None
    timezone: str
    misfire_policy: str
    grace_seconds: int
    enabled: bool


def _kind_registry() -> Any:
    from swifty_desktop import tasks

    return tasks


def available_kinds() -> list[Any]:
    """Every job kind (the tasks' KindSpec objects), sorted by name."""
    return list(_kind_registry().all_kinds())


def find_kind(name: str) -> Any | None:
    """The KindSpec called ``name``, or None when this build has no such kind."""
    return _kind_registry().registry().get(name)


def validate_params(kind: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a kind and its parameters; raise ScheduleError naming the problem."""
    tasks = _kind_registry()
    try:
        spec = tasks.get_kind(kind)
        return dict(spec.validate(params))
    except tasks.ParamError as exc:
        raise ScheduleError(str(exc)) from None


def validate_input(*, name: str, kind: str, params: Mapping[str, Any] | None = None,
                   cron: str | None = None, interval_seconds: Any = None,
                   timezone: str | None = LOCAL, misfire_policy: str = "coalesce",
                   grace_seconds: Any = DEFAULT_GRACE_S, enabled: bool = True,
                   check_kind: bool = True) -> ScheduleInput:
    """Check everything about a schedule that needs no database; raise ScheduleError."""
    name = " ".join(str(name or "").split())
    if not name:
        raise ScheduleError("a schedule needs a name, e.g. 'Nightly export'")
    if len(name) > NAME_MAX:
        raise ScheduleError(f"schedule name '{name[:40]}…' is too long; use at most "
                            f"{NAME_MAX} characters")
    kind = str(kind or "").strip()
    if not kind:
        raise ScheduleError(f"schedule '{name}' needs a job kind (see `swifty-desktop kinds`)")
    clean = validate_params(kind, params) if check_kind else dict(params or {})
    try:
        rule = Rule.build(cron, interval_seconds, timezone)
    except RuleError as exc:
        raise ScheduleError(f"schedule '{name}': {exc}") from None
    policy = str(misfire_policy or "coalesce").strip().lower()
    if policy not in MISFIRE_POLICIES:
        raise ScheduleError(f"misfire policy '{misfire_policy}' is not known; use "
                            "'coalesce' (one catch-up run) or 'skip'")
    try:
        grace = int(grace_seconds)
    except (TypeError, ValueError):
        raise ScheduleError(f"grace period '{grace_seconds}' must be a whole number of "
                            "seconds") from None
    if grace < 0:
        raise ScheduleError(f"grace period {grace} s must not be negative")
    return ScheduleInput(name, kind, clean, rule.cron, rule.interval, rule.timezone, policy,
                         grace, bool(enabled))


class ScheduleStore:
    """Reads and writes schedule rows.  ``clock`` gives "now" (tests pass a fake one)."""

    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self.engine = engine
        self.clock = clock

    # ------------------------------------------------------------------- reads
    def list(self) -> list[ScheduleRecord]:
        """Every schedule, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(schedules).order_by(schedules.c.id)).mappings().all()
        return [ScheduleRecord.from_row(r) for r in rows]

    def get(self, schedule_id: int) -> ScheduleRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(schedules).where(schedules.c.id == schedule_id)
                               ).mappings().first()
        if row is None:
            raise ScheduleNotFound(f"schedule #{schedule_id} does not exist (it may have been "
                                   "removed); refresh the list")
        return ScheduleRecord.from_row(row)

    def find(self, name: str) -> ScheduleRecord | None:
        """The schedule called ``name`` (exact match first, then ignoring case)."""
        name = " ".join(str(name).split())
        with self.engine.connect() as conn:
            row = conn.execute(select(schedules).where(schedules.c.name == name)).mappings().first()
            if row is None:
                row = conn.execute(select(schedules).where(
                    func.lower(schedules.c.name) == name.lower())).mappings().first()
        return ScheduleRecord.from_row(row) if row is not None else None

    def by_name(self, name: str) -> ScheduleRecord:
        found = self.find(name)
        if found is None:
            raise ScheduleNotFound(f"there is no schedule named '{name}'; see "
                                   "`swifty-desktop schedules list` for the names")
        return found

    def last_runs(self, records: Iterable[ScheduleRecord]) -> dict[int, LastRun]:
        """For each schedule with a last job: the newest attempt of that job (one query)."""
        wanted = {r.id: r.last_job_id for r in records if r.last_job_id is not None}
        if not wanted:
            return {}
        ids = sorted(set(wanted.values()))
        id_set = set(ids)
        first: dict[int, float] = {}
        newest: dict[int, tuple[int, str, float | None]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.root_id, jobs.c.status, jobs.c.created_at,
                       jobs.c.finished_at)
                .where(or_(jobs.c.id.in_(ids), jobs.c.root_id.in_(ids)))
            ).all()
        for job_id, root_id, status, created, finished in rows:
            root = root_id if root_id in id_set else job_id
            if job_id == root:
                first[root] = created
            if root not in newest or job_id > newest[root][0]:
                newest[root] = (job_id, status, finished)
        out: dict[int, LastRun] = {}
        for sid, jid in wanted.items():
            if jid in newest and jid in first:
                newest_id, status, finished = newest[jid]
                out[sid] = LastRun(newest_id, status, first[jid], finished)
        return out

    def summaries(self, records: builtins.list[ScheduleRecord] | None = None,
                  now: float | None = None) -> builtins.list[ScheduleSummary]:
        """Schedules with their last run and next run: two small queries in all."""
        records = self.list() if records is None else records
        now = self.clock() if now is None else now
        last = self.last_runs(records)
        out: builtins.list[ScheduleSummary] = []
        for r in records:
            run = last.get(r.id)
            if run is not None:
                at, status, job_id = run.at, run.status, run.job_id
            elif r.last_job_id is None and r.last_fire_at is not None and r.status_note \
                    and NOT_STARTED_MARK in r.status_note:
                at, status, job_id = r.last_fire_at, "not started", None
            else:
                at, status, job_id = None, None, None
            out.append(ScheduleSummary(r, r.describe_rule(), at, status, job_id,
                                       r.next_run(now)))
        return out

    def failure_streak_from_jobs(self, record: ScheduleRecord, cap: int = 50
                                 ) -> tuple[int, float | None, str | None]:
        """Failed runs in a row, newest first, counted from the job registry.

        Only the last attempt of each run counts (a run retried into success is a
        success); cancelled and interrupted runs neither break nor extend a streak;
        runs from before the last edit (or resume) do not count: an edit starts afresh.
        Returns (streak, when the newest failure finished, its error message).
        """
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.status, jobs.c.finished_at, jobs.c.error_message)
                .where(jobs.c.kind == record.kind)  # walks the (kind, id) index
                .where(jobs.c.schedule_id == record.id)
                .where(jobs.c.created_at >= record.updated_at)
                .where(jobs.c.superseded_by.is_(None))
                .where(jobs.c.status.in_(("completed", "failed")))
                .order_by(jobs.c.id.desc()).limit(cap)
            ).all()
        streak = 0
        for status, _, _ in rows:
            if status != "failed":
                break
            streak += 1
        if not streak:
            return 0, None, None
        error = (rows[0][2] or "").strip().splitlines()
        message = error[0][:160] if error else None
        return streak, rows[0][1], message

    # ------------------------------------------------------------------ writes
    def add(self, *, name: str, kind: str, params: Mapping[str, Any] | None = None,
            cron: str | None = None, interval_seconds: Any = None,
            timezone: str | None = LOCAL, misfire_policy: str = "coalesce",
            grace_seconds: Any = DEFAULT_GRACE_S, enabled: bool = True,
            check_kind: bool = True) -> ScheduleRecord:
        """Validate and insert a schedule; raise ScheduleError (nothing written) if bad.

        Secret parameters go to the OS keyring first; the row keeps references.
        """
        data = validate_input(name=name, kind=kind, params=params, cron=cron,
                              interval_seconds=interval_seconds, timezone=timezone,
                              misfire_policy=misfire_policy, grace_seconds=grace_seconds,
                              enabled=enabled, check_kind=check_kind)
        data, made = self._stash_secrets(data)
        now = self.clock()
        try:
            with write_transaction(self.engine) as conn:
                self._check_unique(conn, data.name, None)
                result = conn.execute(insert(schedules).values(
                    **self._values(data), created_at=now, updated_at=now,
                    rule_changed_at=now, missed=0, failure_streak=0))
                new_id = result.inserted_primary_key[0]  # type: ignore[index]
        except IntegrityError:
            self._forget(made)
            raise self._duplicate(data.name) from None
        except BaseException:
            self._forget(made)
            raise
        return self.get(int(new_id))

    def update(self, schedule_id: int, **changes: Any) -> ScheduleRecord:
        """Change a schedule (any of the ``add`` arguments); raise ScheduleError if bad.

        An edit is a fresh start: back-off and notes are cleared, and runs that fell
        due before the edit are not caught up.
        """
        current = self.get(schedule_id)
        merged: dict[str, Any] = {
            "name": current.name, "kind": current.kind, "params": current.params,
            "cron": current.cron, "interval_seconds": current.interval_seconds,
            "timezone": current.timezone, "misfire_policy": current.misfire_policy,
            "grace_seconds": current.grace_seconds, "enabled": current.enabled,
        }
        unknown = sorted(set(changes) - set(merged))
        if unknown:
            raise TypeError(f"unknown schedule field {unknown[0]!r}")
        if "cron" in changes and changes["cron"]:
            merged["interval_seconds"] = None
        if "interval_seconds" in changes and changes["interval_seconds"] not in (None, ""):
            merged["cron"] = None
        merged.update(changes)
        # an unchanged unknown kind may stay (it may arrive with an update of the app)
        check_kind = ("kind" in changes or "params" in changes
                      or find_kind(merged["kind"]) is not None)
        data = validate_input(**merged, check_kind=check_kind)
        data, made = self._stash_secrets(data)
        now = max(self.clock(), current.updated_at + 1e-6)
        values = self._values(data)
        if (data.cron, data.interval_seconds, data.timezone) != \
                (current.cron, current.interval_seconds, current.timezone):
            values["rule_changed_at"] = now  # a new rule: its interval counts from now
        try:
            with write_transaction(self.engine) as conn:
                self._check_unique(conn, data.name, schedule_id)
                result = conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(
                    **values, updated_at=now, failure_streak=0, backoff_until=None,
                    status_note=None, next_run_at=None))
                if not result.rowcount:
                    raise ScheduleNotFound(f"schedule '{current.name}' was removed meanwhile; "
                                           "nothing was changed")
        except IntegrityError:
            self._forget(made)
            raise self._duplicate(data.name) from None
        except BaseException:
            self._forget(made)
            raise
        self._release_secrets(schedule_id, current.params, data.params)
        return self.get(schedule_id)

    def set_enabled(self, schedule_id: int, enabled: bool) -> ScheduleRecord:
        """Pause or resume.  Resuming starts afresh: runs due while paused are not made up."""
        current = self.get(schedule_id)
        if current.enabled == enabled:
            return current
        now = max(self.clock(), current.updated_at + 1e-6)
        values: dict[str, Any] = {"enabled": enabled, "updated_at": now, "next_run_at": None}
        if enabled:
            values.update(backoff_until=None, status_note=None, failure_streak=0)
        with write_transaction(self.engine) as conn:
            conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**values))
        return self.get(schedule_id)

    def remove(self, schedule_id: int) -> bool:
        """Delete a schedule.  Its past jobs stay in the registry; its secrets leave the
        keyring (unless a queued or running job of it still needs them)."""
        try:
            params = self.get(schedule_id).params
        except ScheduleNotFound:
            return False
        with write_transaction(self.engine) as conn:
            removed = bool(conn.execute(delete(schedules).where(schedules.c.id == schedule_id)
                                        ).rowcount)
        if removed:
            self._release_secrets(schedule_id, params, {})
        return removed

    # ----------------------------------------------------------------- secrets
    def _stash_secrets(self, data: ScheduleInput) -> tuple[ScheduleInput, builtins.list[str]]:
        """Move secret parameters to the OS keyring: (the values to store, the new
        references, which are forgotten again if the write fails)."""
        spec = find_kind(data.kind)
        if spec is None or not any(p.secret for p in spec.params):
            return data, []
        from swifty_desktop.jobs import secrets
        from swifty_desktop.tasks import ParamError

        try:
            params, made = secrets.stash_new(spec, data.params, self.engine)
        except ParamError as exc:
            raise ScheduleError(f"schedule '{data.name}': {exc}") from None
        return dataclasses.replace(data, params=params), made

    def secure_params(self, record: ScheduleRecord) -> ScheduleRecord:
        """Move secret parameters still stored in plain text (a row written before
        secrets went to the keyring) to the keyring, once; return the fresh record.

        Raises ParamError when no keyring is available.
        """
        spec = find_kind(record.kind)
        if spec is None:
            return record
        from swifty_desktop.jobs import secrets

        if not any(p.secret and record.params.get(p.name) not in (None, "")
                   and not secrets.is_ref(record.params.get(p.name)) for p in spec.params):
            return record
        params, made = secrets.stash_new(spec, record.params, self.engine)
        with write_transaction(self.engine) as conn:
            raw = conn.execute(select(schedules.c.params).where(schedules.c.id == record.id)
                               ).scalar()
            try:
                still = raw is not None and json.loads(raw) == record.params
            except ValueError:
                still = False
            if still:  # no other engine or edit replaced them meanwhile
                conn.execute(update(schedules).where(schedules.c.id == record.id)
                             .values(params=json.dumps(params, sort_keys=True)))
        if not still:
            self._forget(made)
            return self.get(record.id)
        return dataclasses.replace(record, params=params)

    def _release_secrets(self, schedule_id: int, old: Mapping[str, Any],
                         new: Mapping[str, Any]) -> None:
        """Forget keyring entries the schedule no longer refers to, unless a queued or
        running job of the schedule still needs one (a job failing later for lack of
        it says so)."""
        from swifty_desktop.jobs import secrets

        gone = ({v for v in old.values() if secrets.is_ref(v)}
                - {v for v in new.values() if secrets.is_ref(v)})
        if not gone:
            return
        with self.engine.connect() as conn:
            active = conn.execute(
                select(jobs.c.params).where(jobs.c.status.in_(("queued", "running")))
                .where(jobs.c.schedule_id == schedule_id)).scalars().all()
        self._forget([ref for ref in gone if not any(ref in (p or "") for p in active)])

    def _forget(self, refs: Iterable[str]) -> None:
        from swifty_desktop.jobs import secrets
        from swifty_desktop.settings import SecretStoreError

        for ref in refs:
            try:
                secrets.forget(ref, self.engine)
            except SecretStoreError:  # the entry stays in the keyring; nothing else breaks
                log.warning("could not delete a schedule's secret from the keyring",
                            exc_info=True)

    @staticmethod
    def _values(data: ScheduleInput) -> dict[str, Any]:  # rule_changed_at: by the caller
        return {"name": data.name, "kind": data.kind,
                "params": json.dumps(data.params, sort_keys=True),
                "cron": data.cron, "interval_seconds": data.interval_seconds,
                "timezone": data.timezone, "enabled": data.enabled,
                "misfire_policy": data.misfire_policy, "grace_seconds": data.grace_seconds}

    @staticmethod
    def _check_unique(conn: Any, name: str, own_id: int | None) -> None:
        stmt = select(schedules.c.id).where(func.lower(schedules.c.name) == name.lower())
        if own_id is not None:
            stmt = stmt.where(schedules.c.id != own_id)
        if conn.execute(stmt).first() is not None:
            raise ScheduleStore._duplicate(name)

    @staticmethod
    def _duplicate(name: str) -> ScheduleError:
        return ScheduleError(f"a schedule named '{name}' already exists; choose another name "
                             "or edit that schedule")

    # ------------------------------------------------------------ bookkeeping
    def claim_fire(self, record: ScheduleRecord, fire_at: float, *, missed: int = 0,
                   note: str | None = None, keep_note: bool = False,
                   next_run_at: float | None = None, job_id: int | None = None,
                   not_started: str | None = None, conn: Connection | None = None) -> bool:
        """Claim the fire time ``fire_at`` for this engine; True if it won.

        One conditional UPDATE: it succeeds only while ``last_fire_at`` and
        ``updated_at`` are still what ``record`` saw and the schedule is enabled, so
        of several engines that planned the same run exactly one claims it.  Given
        ``conn`` it runs in that transaction (the one queuing ``job_id``, the run's
        job, which then gets a log line naming the fire time it stands for).
        ``not_started`` claims a run that cannot start, with that note, in the same
        UPDATE (no last job).
        """
        expected = (schedules.c.last_fire_at.is_(None) if record.last_fire_at is None
                    else schedules.c.last_fire_at == record.last_fire_at)
        values: dict[str, Any] = {"last_fire_at": fire_at, "next_run_at": next_run_at,
                                  "missed": schedules.c.missed + int(missed)}
        if not keep_note:
            values["status_note"] = note
        if not_started is not None:
            values.update(status_note=not_started, last_job_id=None)
        elif job_id is not None:
            values["last_job_id"] = job_id
        stmt = (update(schedules)
                .where(and_(schedules.c.id == record.id, expected,
                            schedules.c.updated_at == record.updated_at,
                            schedules.c.enabled.is_(True)))
                .values(**values))
        if conn is None:
            with self.engine.begin() as own:
                return bool(own.execute(stmt).rowcount)
        if not conn.execute(stmt).rowcount:
            return False
        if job_id is not None:
            conn.execute(insert(job_logs).values(
                job_id=job_id, ts=self.clock(), line=run_log_line(record, fire_at, missed)))
        return True

    def record_job(self, schedule_id: int, job_id: int, fire_at: float | None = None) -> None:
        """Remember the job a run started (only if ``fire_at`` is still the latest claim)."""
        stmt = update(schedules).where(schedules.c.id == schedule_id)
        if fire_at is not None:
            stmt = stmt.where(schedules.c.last_fire_at == fire_at)
        with self.engine.begin() as conn:
            conn.execute(stmt.values(last_job_id=job_id))

    def set_failure_state(self, schedule_id: int, streak: int, backoff_until: float | None,
                          note: str | None, next_run_at: float | None) -> bool:
        """Store the failure streak and back-off; True if anything changed."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(schedules).where(schedules.c.id == schedule_id)
                .where(or_(schedules.c.failure_streak != streak,
                           func.coalesce(schedules.c.backoff_until, -1.0)
                           != (backoff_until if backoff_until is not None else -1.0),
                           func.coalesce(schedules.c.status_note, "") != (note or "")))
                .values(failure_streak=streak, backoff_until=backoff_until, status_note=note,
                        next_run_at=next_run_at))
            return bool(result.rowcount)

    def set_note(self, schedule_id: int, note: str | None) -> bool:
        """Set the status note; True if it changed."""
        with self.engine.begin() as conn:
            return bool(conn.execute(
                update(schedules).where(schedules.c.id == schedule_id)
                .where(func.coalesce(schedules.c.status_note, "") != (note or ""))
                .values(status_note=note)).rowcount)

    def set_next_run(self, schedule_id: int, next_run_at: float | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(schedules).where(schedules.c.id == schedule_id)
                         .values(next_run_at=next_run_at))

    # ---------------------------------------------------------------- defaults
    def defaults_seeded(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(settings.c.key).where(settings.c.key == SEEDED_KEY)
                                ).first() is not None

    def ensure_defaults(self) -> builtins.list[ScheduleRecord]:
        """Add the default schedules once per data directory; return those added.

        Atomic across processes (one write transaction also records that it was
        done), so a schedule the user deleted never comes back.  A default whose kind
        this build lacks is stored anyway; firing it records a clear failure.
        """
        if self.defaults_seeded():
            return []
        now = self.clock()
        added: builtins.list[int] = []
        with write_transaction(self.engine) as conn:
            if conn.execute(select(settings.c.key).where(settings.c.key == SEEDED_KEY)).first():
                return []
            for default in DEFAULT_SCHEDULES:
                if conn.execute(select(schedules.c.id).where(
                        func.lower(schedules.c.name) == default.name.lower())).first():
                    continue
                # only the defaults we choose are stored: the kind's own defaults apply
                # when it runs, so they can change with the kind
                params = dict(default.params)
                data = validate_input(name=default.name, kind=default.kind, params=params,
                                      cron=default.cron, check_kind=False)
                result = conn.execute(insert(schedules).values(
                    **self._values(data), created_at=now, updated_at=now,
                    rule_changed_at=now, missed=0, failure_streak=0))
                added.append(int(result.inserted_primary_key[0]))  # type: ignore[index]
            conn.execute(insert(settings).values(key=SEEDED_KEY, value=json.dumps(now)))
        return [self.get(i) for i in added]


__all__ = [
    "DEFAULT_SCHEDULES", "MISFIRE_POLICIES", "RUN_LOG_PREFIX", "LastRun", "ScheduleError",
    "ScheduleInput", "ScheduleNotFound", "ScheduleRecord", "ScheduleStore", "ScheduleSummary",
    "available_kinds", "find_kind", "run_log_line", "validate_input", "validate_params",
]
