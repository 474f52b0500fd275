"""The scheduler service with the real engine: firing, misfires, back-off, two engines.

Time is a fake clock where waiting would make tests slow; the APScheduler tests use
the real clock with one-second schedules.  Jobs run in real worker processes.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from itertools import pairwise
from typing import Any

import pytest
from conftest import wait_final, wait_until

from swifty_desktop.db import make_engine
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.scheduling.rules import Rule
from swifty_desktop.scheduling.service import SchedulerService, rule_trigger
from swifty_desktop.scheduling.store import ScheduleStore

T0 = 1_780_000_000.0  # Thu 2026-05-28 20:26:40 UTC
SEVEN = 1_780_038_000.0  # Fri 2026-05-29 07:00 UTC, the first 07:00 after T0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def schedule_jobs(data_dir: Any, schedule_id: int) -> list[tuple[int, str, float, str]]:
    with sqlite3.connect(data_dir.db_path, timeout=30) as conn:
        return conn.execute("SELECT id, status, created_at, trigger_type FROM jobs WHERE "
                            "schedule_id = ? ORDER BY id", (schedule_id,)).fetchall()


@pytest.mark.parametrize("rule", [
    Rule(interval=1, anchor=T0 + 0.1234567),  # fire times between two microseconds
    Rule.build("*/30 * * * *", None, "Europe/Berlin"),
])
def test_the_apscheduler_trigger_always_moves_forward(rule: Rule) -> None:
    """APScheduler loops `while next_run_time <= now`: a trigger must never stall it."""
    trigger = rule_trigger(rule)
    start = rule.next_after(1_729_980_000.0 if rule.cron else T0)  # 2024-10-26 22:00 UTC
    now = dt.datetime.fromtimestamp(start, dt.UTC)  # exactly at a fire time
    for _ in range(60):
        run_times, next_run = [], now
        while next_run is not None and next_run <= now:  # APScheduler's Job._get_run_times
            run_times.append(next_run)
            next_run = trigger.get_next_fire_time(next_run, now)
            assert len(run_times) < 3, run_times
        assert next_run is not None and next_run > now
        now = next_run


@pytest.fixture
def services(qapp):  # type: ignore[no-untyped-def]
    made: list[SchedulerService] = []

    def make(store: ScheduleStore, manager: Any, **kwargs: Any) -> SchedulerService:
        kwargs.setdefault("mode", "manual")
        service = SchedulerService(store, manager, **kwargs)
        service.start(seed_defaults=False)
        made.append(service)
        return service

    yield make
    for service in made:
        service.shutdown()


def test_a_due_schedule_queues_an_ordinary_job_triggered_by_the_schedule(
        make_manager, db, data_dir, qtbot, services) -> None:
    manager = make_manager()
    clock = FakeClock(T0)
    store = ScheduleStore(db, clock=clock)
    service = services(store, manager, clock=clock, monotonic=clock)
    rec = service.add(name="tick", kind="noop", interval_seconds=60)
    fired: list[tuple[int, int]] = []
    service.scheduleFired.connect(lambda s, j: fired.append((s, j)))

    assert service.sync().submitted == ()  # not due yet
    clock.advance(60.5)
    report = service.sync()
    assert len(report.submitted) == 1 and report.claimed == 1
    job = wait_final(qtbot, manager, report.submitted[0])
    assert job.status is JobStatus.COMPLETED and job.kind == "noop"
    assert (job.trigger.type, job.trigger.label, job.trigger.ref) == ("schedule", "tick", rec.id)
    assert job.schedule_id == rec.id and job.trigger.describe() == "Schedule · tick"
    assert fired == [(rec.id, job.id)]
    row = store.get(rec.id)
    assert (row.last_fire_at, row.last_job_id, row.missed) == (T0 + 60, job.id, 0)
    assert row.next_run_at == T0 + 120
    assert service.sync().submitted == ()  # that run is claimed; the next is not due
    (summary,) = store.summaries()
    assert (summary.last_status, summary.last_job_id, summary.next_run) == \
        ("completed", job.id, T0 + 120)


def test_runs_missed_while_closed_are_coalesced_or_skipped_by_policy(
        make_manager, db, data_dir, qtbot, services) -> None:
    manager = make_manager()
    clock = FakeClock(T0)
    store = ScheduleStore(db, clock=clock)
    daily = store.add(name="daily", kind="noop", cron="0 7 * * *", timezone="UTC")
    skipper = store.add(name="skipper", kind="noop", cron="0 7 * * *", timezone="UTC",
                        misfire_policy="skip")
    strict = store.add(name="strict", kind="noop", cron="0 7 * * *", timezone="UTC",
                       grace_seconds=1800)
    clock.now = SEVEN + 2 * 86400 + 3600  # the app was closed for three mornings
    service = services(store, manager, clock=clock, monotonic=clock)
    report = service.sync()
    assert len(report.submitted) == 1 and report.claimed == 3
    assert wait_final(qtbot, manager, report.submitted[0]).status is JobStatus.COMPLETED

    d, s, g = store.get(daily.id), store.get(skipper.id), store.get(strict.id)
    assert (d.missed, d.last_job_id, d.last_fire_at) == (3, report.submitted[0],
                                                         SEVEN + 2 * 86400)
    assert d.status_note.startswith("Caught up: 3 runs missed while the app was not running")
    assert (s.missed, s.last_job_id) == (3, None)
    assert "Skipped 3 runs" in s.status_note and "'skip'" in s.status_note
    assert (g.missed, g.last_job_id) == (3, None)
    assert "older than the grace period of 30 min" in g.status_note
    assert service.sync().submitted == ()  # a restart right after does not catch up again

    clock.now = SEVEN + 3 * 86400 + 2  # the next morning: all three on time
    report = service.sync()
    assert len(report.submitted) == 3
    for sid in (daily.id, skipper.id, strict.id):
        row = store.get(sid)
        assert row.missed == 3 and row.status_note is None and row.last_job_id is not None
    assert len(schedule_jobs(data_dir, daily.id)) == 2


def test_a_wall_clock_jump_after_sleep_resyncs_and_catches_up(
        make_manager, db, qtbot, services) -> None:
    manager = make_manager()
    wall, mono = FakeClock(T0), FakeClock(5000.0)
    store = ScheduleStore(db, clock=wall)
    rec = store.add(name="half-hourly", kind="noop", interval_seconds=1800)
    service = services(store, manager, clock=wall, monotonic=mono, jump_s=10)
    jumps: list[float] = []
    service.clockJumped.connect(jumps.append)
    wall.advance(20)
    mono.advance(20)
    assert service.sync().jump_s is None and jumps == []
    wall.advance(2 * 3600 + 600)  # asleep for 2 h 10 min: the monotonic clock stood still
    mono.advance(15)
    report = service.sync()
    assert report.jump_s == pytest.approx(2 * 3600 + 585)
    assert jumps == [pytest.approx(2 * 3600 + 585)]
    assert len(report.submitted) == 1
    row = store.get(rec.id)
    assert row.missed == 4 and row.last_fire_at == T0 + 4 * 1800
    assert row.status_note.startswith("Caught up: 4 runs missed")
    wait_final(qtbot, manager, report.submitted[0])


def test_repeated_failures_back_off_exponentially_and_a_success_resets(
        make_manager, db, data_dir, qtbot, services) -> None:
    manager = make_manager()
    clock = FakeClock(time.time())  # back-off counts from when the last failure finished
    start = clock.now
    store = ScheduleStore(db, clock=clock)
    rec = store.add(name="flaky supplier", kind="fail", interval_seconds=60,
                    params={"message": "supplier down (503)"})
    service = services(store, manager, clock=clock, monotonic=clock, backoff_after=2,
                       backoff_base_s=300, backoff_max_s=500)

    def tick() -> tuple[int, ...]:
        clock.advance(60)
        submitted = service.sync().submitted
        for job_id in submitted:
            assert wait_final(qtbot, manager, job_id).status is JobStatus.FAILED
        return submitted

    assert len(tick()) == 1
    wait_until(qtbot, lambda: store.get(rec.id).failure_streak == 1)
    assert store.get(rec.id).backoff_until is None and store.get(rec.id).status_note is None
    assert len(tick()) == 1
    wait_until(qtbot, lambda: store.get(rec.id).failure_streak == 2)
    row = store.get(rec.id)
    last_failure = schedule_jobs(data_dir, rec.id)[-1]
    assert row.backoff_until is not None
    assert start < row.backoff_until - 300 <= time.time()  # 300 s after the last failure
    assert row.status_note.startswith(
        "Backing off: the last 2 runs failed (last error: supplier down (503))")
    assert "a successful run ends the back-off" in row.status_note
    assert row.next_run(clock()) >= row.backoff_until
    assert last_failure[1] == "failed"

    assert tick() == () and tick() == ()  # due, claimed, not run: backing off
    assert len(schedule_jobs(data_dir, rec.id)) == 2
    assert store.get(rec.id).last_fire_at == start + 240
    assert tick() == ()
    assert len(tick()) == 1  # start + 360 s: past the back-off; it fails again
    wait_until(qtbot, lambda: store.get(rec.id).failure_streak == 3)
    third = store.get(rec.id)
    assert third.backoff_until - 500 == pytest.approx(
        schedule_jobs_finished(data_dir, rec.id), abs=0.01)  # 300 * 2, capped at 500

    # a run of the schedule that succeeds ends the back-off
    ok = manager.submit("fail", {"succeed_on_attempt": 1},
                        trigger=Trigger.schedule(rec.name, rec.id))
    assert wait_final(qtbot, manager, ok).status is JobStatus.COMPLETED
    wait_until(qtbot, lambda: store.get(rec.id).failure_streak == 0)
    row = store.get(rec.id)
    assert row.backoff_until is None and row.status_note is None


def schedule_jobs_finished(data_dir: Any, schedule_id: int) -> float:
    with sqlite3.connect(data_dir.db_path, timeout=30) as conn:
        return conn.execute("SELECT max(finished_at) FROM jobs WHERE schedule_id = ? AND "
                            "status = 'failed'", (schedule_id,)).fetchone()[0]


def test_a_schedule_of_an_unknown_kind_records_a_clear_failure_and_others_still_fire(
        make_manager, db, qtbot, services) -> None:
    manager = make_manager()
    clock = FakeClock(T0)
    store = ScheduleStore(db, clock=clock)
    future = store.add(name="Weekly PDF", kind="report_pdf_v9", interval_seconds=60,
                       check_kind=False)
    tick = store.add(name="tick", kind="noop", interval_seconds=60)
    service = services(store, manager, clock=clock, monotonic=clock)
    clock.advance(61)
    report = service.sync()
    assert report.claimed == 2 and len(report.submitted) == 1
    assert manager.store.get(report.submitted[0]).schedule_id == tick.id
    row = store.get(future.id)
    assert row.last_fire_at == T0 + 60 and row.last_job_id is None
    assert "did not start: unknown job kind 'report_pdf_v9'" in row.status_note
    assert "update the app" in row.status_note
    summary = next(s for s in store.summaries() if s.record.id == future.id)
    assert (summary.last_status, summary.last_run) == ("not started", T0 + 60)
    assert manager.store.count() == 1  # nothing was queued for it
    wait_final(qtbot, manager, report.submitted[0])

    # a row whose time zone this computer does not know (edited by hand, another OS)
    with sqlite3.connect(db.url.database) as conn:
        conn.execute("UPDATE schedules SET cron = '0 7 * * *', interval_seconds = NULL, "
                     "timezone = 'Mars/Olympus' WHERE id = ?", (future.id,))
    changed: list[bool] = []
    service.schedulesChanged.connect(lambda: changed.append(True))
    clock.advance(86400)
    report = service.sync()
    assert len(report.submitted) == 1  # the healthy schedule goes on
    note = store.get(future.id).status_note
    assert note.startswith("This schedule cannot fire: unknown time zone 'Mars/Olympus'")
    assert "Edit the schedule" in note and changed


def test_two_services_on_one_database_never_fire_the_same_run_twice(
        make_manager, db, data_dir, qtbot, services) -> None:
    manager = make_manager()
    clock = FakeClock(T0)
    rec = ScheduleStore(db, clock=clock).add(name="shared", kind="noop", interval_seconds=60)
    engines = [make_engine(data_dir.db_path), make_engine(data_dir.db_path)]
    first, second = (services(ScheduleStore(e, clock=clock), manager, clock=clock,
                              monotonic=clock) for e in engines)
    for n in range(12):
        clock.advance(60)
        runners = (first, second) if n % 2 else (second, first)
        submitted = [j for s in runners for j in s.run_due()]
        assert len(submitted) == 1, f"tick {n}: {submitted}"
    # the race: one service read the schedules, then the other claimed the run
    clock.advance(60)
    stale = first.store.list()
    assert len(second.run_due()) == 1
    assert first._fire_due(stale, clock()) == ([], 0)  # its claim loses; nothing submitted
    jobs = schedule_jobs(data_dir, rec.id)
    assert len(jobs) == 13
    assert ScheduleStore(db).get(rec.id).last_fire_at == T0 + 13 * 60
    for job_id, *_ in jobs:
        wait_final(qtbot, manager, job_id)
    for e in engines:
        e.dispose()


@pytest.mark.parametrize("mode", ["qt", "background"])
def test_apscheduler_fires_every_second_on_the_managers_thread(
        make_manager, db, data_dir, qtbot, services, mode) -> None:
    manager = make_manager()
    store = ScheduleStore(db)
    rec = store.add(name="every second", kind="noop", interval_seconds=1)
    on_main: list[bool] = []
    manager.jobAdded.connect(
        lambda _j: on_main.append(threading.current_thread() is threading.main_thread()))
    service = services(store, manager, mode=mode, sync_s=0.5)
    wait_until(qtbot, lambda: len(schedule_jobs(data_dir, rec.id)) >= 3, 15,
               "three runs of a one-second schedule")
    service.shutdown()
    jobs = schedule_jobs(data_dir, rec.id)
    qtbot.wait(1200)
    assert len(schedule_jobs(data_dir, rec.id)) == len(jobs)  # nothing fires after shutdown
    gaps = [b[2] - a[2] for a, b in pairwise(jobs)]
    assert all(g > 0.5 for g in gaps), gaps  # one job per fire time
    assert {j[3] for j in jobs} == {"schedule"}
    assert on_main and all(on_main)  # submit ran on the manager's thread
    for job_id, *_ in jobs:
        assert wait_final(qtbot, manager, job_id).status is JobStatus.COMPLETED


def test_the_app_scheduler_catches_up_missed_runs_once_at_start(
        make_manager, db, data_dir, qtbot, services) -> None:
    manager = make_manager()
    past = time.time() - 2.5 * 3600  # created 2.5 h ago; nothing ran since
    rec = ScheduleStore(db, clock=lambda: past).add(name="hourly", kind="noop",
                                                    interval_seconds=3600)
    store = ScheduleStore(db)
    services(store, manager, mode="qt", sync_s=0.3)
    wait_until(qtbot, lambda: store.get(rec.id).last_job_id is not None, 10, "the catch-up")
    qtbot.wait(900)  # a few more syncs: no second catch-up
    jobs = schedule_jobs(data_dir, rec.id)
    assert len(jobs) == 1
    row = store.get(rec.id)
    assert row.missed == 2 and row.last_fire_at == pytest.approx(past + 7200)
    assert row.status_note.startswith("Caught up: 2 runs missed")
    assert row.next_run_at == pytest.approx(past + 3 * 3600)
    assert wait_final(qtbot, manager, jobs[0][0]).status is JobStatus.COMPLETED


CRASH_IN_CLAIM = """
import os, sys
from sqlalchemy import Engine, event

statement = sys.argv[2]
seen = []

@event.listens_for(Engine, "connect")
def _trace(dbapi_conn, _record):  # the engine dies as it queues the schedule's job
    def trace(sql):
        if sql.startswith(statement):
            sys.stderr.write(f"dying at {statement!r} after {seen}\\n")
            sys.stderr.flush()
            os._exit(9)
        if sql.startswith("INSERT INTO jobs ("):
            seen.append("insert")
    dbapi_conn.set_trace_callback(trace)

from swifty_desktop.cli import main
sys.exit(main(["--data-dir", sys.argv[1], "worker", "--workers", "1"]))
"""


@pytest.mark.parametrize("statement, seen", [
    ("INSERT INTO jobs (", "[]"),  # before anything of the run was written
    ("UPDATE schedules", "['insert']"),  # the job row is written, the claim is next
])
def test_an_engine_killed_while_queuing_a_run_neither_loses_nor_doubles_it(
        make_manager, db, data_dir, qtbot, services, statement, seen) -> None:
    """The claim of a run and its job are one transaction: killed in between, the
    engine leaves the run due, and the next engine catches it up exactly once."""
    import subprocess
    import sys

    from helpers import cli_env

    past = time.time() - 1.5 * 3600
    rec = ScheduleStore(db, clock=lambda: past).add(name="hourly", kind="noop",
                                                    interval_seconds=3600)
    crashed = subprocess.run([sys.executable, "-c", CRASH_IN_CLAIM, str(data_dir.root),
                              statement], env=cli_env(), capture_output=True, text=True,
                             timeout=120)
    assert crashed.returncode == 9, crashed.stderr  # it died at that statement
    assert f"dying at {statement!r} after {seen}" in crashed.stderr
    store = ScheduleStore(db)
    row = store.get(rec.id)
    assert row.last_fire_at is None and row.last_job_id is None  # the claim went with it
    assert schedule_jobs(data_dir, rec.id) == []  # and so did the job row
    with sqlite3.connect(data_dir.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)

    manager = make_manager()
    service = services(store, manager)
    assert len(service.sync().submitted) == 1  # the next engine catches the run up
    assert len(service.sync().submitted) == 0
    (job,) = schedule_jobs(data_dir, rec.id)
    row = store.get(rec.id)
    assert row.last_job_id == job[0] and row.last_fire_at == pytest.approx(past + 3600)
    assert wait_final(qtbot, manager, job[0]).status is JobStatus.COMPLETED
