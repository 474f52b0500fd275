"""The scheduler service with the real engine: firing, misfires, back-off, two engines.

Time is a fake clock where waiting would make tests slow; the APScheduler tests use
the real clock with one-second schedules.  Jobs run in real worker processes.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
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


def test_a_clock_set_back_repeats_no_run_and_says_why_the_schedule_waits(
        make_manager, db, qtbot, services) -> None:
    manager = make_manager()
    clock = FakeClock(T0)
    store = ScheduleStore(db, clock=clock)
    service = services(store, manager, clock=clock, monotonic=clock)
    rec = service.add(name="minutely", kind="noop", interval_seconds=60)
    clock.advance(60.5)
    (first,) = service.sync().submitted
    wait_final(qtbot, manager, first)
    clock.now = T0 - 3600  # someone set the clock back by an hour
    for _ in range(2):  # no run is repeated, and the note is written once
        assert service.sync().submitted == ()
    row = store.get(rec.id)
    assert row.last_fire_at == T0 + 60 and row.next_run_at == T0 + 120
    assert row.status_note is not None and "clock" in row.status_note
    assert "set back" in row.status_note and "not repeated" in row.status_note
    clock.now = T0 + 120.5  # the clock passes the last run: on time again, note gone
    (second,) = service.sync().submitted
    assert wait_final(qtbot, manager, second).status is JobStatus.COMPLETED
    assert store.get(rec.id).status_note is None


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


# ------------------------------------------------------------------ secrets at rest
SECRET_FIRST, SECRET_SECOND = "cs_TOPSECRET_first_4711", "cs_TOPSECRET_second_0815"


def where_in_database(db_path: Any, *needles: str) -> list[str]:
    """Every table column (and database file) in which one of ``needles`` appears."""
    found: list[str] = []
    with sqlite3.connect(db_path, timeout=30) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                             "'table'")]
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                found += [f"{table}.{c}" for c, v in zip(columns, row, strict=True)
                          if any(n in str(v) for n in needles)]
    # The raw files are read in another process: closing a file descriptor of the
    # database in this one would drop every POSIX lock this process's SQLite
    # connections hold on it, and another process could then delete the WAL under them.
    script = ("import sys, pathlib\n"
              "needles = [n.encode() for n in sys.argv[2:]]\n"
              "for p in (pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[1] + '-wal')):\n"
              "    if p.exists() and any(n in p.read_bytes() for n in needles):\n"
              "        print(p.name)\n")
    raw = subprocess.run([sys.executable, "-c", script, str(db_path), *needles],
                         capture_output=True, text=True, check=True, timeout=60)
    found += raw.stdout.split()  # even in a page that was overwritten since
    return found


def test_a_schedules_secret_parameter_never_reaches_the_database(
        make_manager, db, data_dir, qtbot, services, monkeypatch, tmp_path) -> None:
    """Added, edited, run now, run from the CLI and fired: the secret stays in the
    keyring, in one entry the schedule's runs share, and every run authenticates."""
    import json

    import keyring
    from helpers import run_cli
    from loopback import WooShop, use_file_keyring, woo_product

    (tmp_path / "keyring").mkdir()
    previous = use_file_keyring(monkeypatch, tmp_path / "keyring")
    try:
        with WooShop([woo_product(1)], secret=SECRET_SECOND) as shop:
            manager = make_manager()  # its workers start with the keyring in place
            clock = FakeClock(time.time())
            store = ScheduleStore(db, clock=clock)
            service = services(store, manager, clock=clock, monotonic=clock)
            params = {"base_url": shop.base_url, "consumer_key": shop.key,
                      "consumer_secret": SECRET_FIRST, "supplier": "Loopback"}
            rec = service.add(name="supplier sync", kind="catalog_sync", params=params,
                              interval_seconds=60)
            assert where_in_database(data_dir.db_path, SECRET_FIRST) == []
            rec = service.update(rec.id, params=dict(params, consumer_secret=SECRET_SECOND))
            ref = rec.params["consumer_secret"]
            assert ref.startswith("keyring:")

            def ran(job_id: int) -> None:
                job = wait_final(qtbot, manager, job_id)
                assert job.status is JobStatus.COMPLETED, (job.error, job.message)  # auth passed
                assert job.params["consumer_secret"] == ref  # one entry for every run

            # all three queued at once (they run one after another: the kind's limit is 1)
            now = service.run_now(rec.id)  # the Schedules view's "Run now"
            proc = run_cli(data_dir.root, "schedules", "run", "supplier sync", "--json")
            assert proc.returncode == 0, proc.stderr
            clock.advance(60.5)
            (fired,) = service.sync().submitted  # a fire
            for job_id in (now, json.loads(proc.stdout)["id"], fired):
                ran(job_id)

            keyring_file = tmp_path / "keyring" / "keyring.json"
            assert list(json.loads(keyring_file.read_text()).values()) == [SECRET_SECOND]
            assert where_in_database(data_dir.db_path, SECRET_FIRST, SECRET_SECOND) == []
    finally:
        keyring.set_keyring(previous)


# ------------------------------------------------------------- database trouble
def test_a_locked_database_leaves_the_run_due_for_the_next_sync(
        make_manager, db, data_dir, qtbot, services, caplog) -> None:
    """"database is locked" past the busy timeout is not a run that "did not start":
    nothing is claimed, and the next sync queues the run."""
    from sqlalchemy import event

    impatient = make_engine(data_dir.db_path)

    @event.listens_for(impatient, "connect")
    def _give_up_soon(dbapi_conn: Any, _record: Any) -> None:  # after the app's own pragmas
        dbapi_conn.execute("PRAGMA busy_timeout = 200")

    manager = make_manager(engine=impatient)  # its job inserts give up after 0.2 s
    clock = FakeClock(T0)
    store = ScheduleStore(db, clock=clock)  # the schedules' own writes would wait 30 s
    service = services(store, manager, clock=clock, monotonic=clock)
    rec = service.add(name="tick", kind="noop", interval_seconds=60)
    clock.advance(61)

    other = sqlite3.connect(data_dir.db_path, timeout=30, isolation_level=None,
                            check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for a second
    release = threading.Timer(1.0, lambda: other.execute("ROLLBACK"))
    release.start()
    try:
        assert service.run_due() == []
        assert "could not be queued (" in caplog.text and "database is locked" in caplog.text
        assert "the next sync tries again" in caplog.text
    finally:
        release.join()
        other.close()
    row = store.get(rec.id)
    assert (row.last_fire_at, row.last_job_id, row.status_note) == (None, None, None)
    assert schedule_jobs(data_dir, rec.id) == []

    (job_id,) = service.run_due()  # the lock is gone: the same run is queued now
    row = store.get(rec.id)
    assert (row.last_fire_at, row.last_job_id, row.status_note) == (T0 + 60, job_id, None)
    assert wait_final(qtbot, manager, job_id).status is JobStatus.COMPLETED
    impatient.dispose()


def test_a_run_that_cannot_start_is_recorded_in_one_update(
        make_manager, db, services) -> None:
    from sqlalchemy import event

    manager = make_manager()
    clock = FakeClock(T0)
    store = ScheduleStore(db, clock=clock)
    rec = store.add(name="Weekly PDF", kind="report_pdf_v9", interval_seconds=60,
                    check_kind=False)
    service = services(store, manager, clock=clock, monotonic=clock)
    clock.advance(61)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(db, "before_cursor_execute", record)
    try:
        assert service.run_due() == []
    finally:
        event.remove(db, "before_cursor_execute", record)
    writes = [s for s in statements if not s.lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1 and writes[0].startswith("UPDATE schedules"), writes
    row = store.get(rec.id)
    assert row.last_fire_at == T0 + 60 and row.last_job_id is None
    assert "did not start: unknown job kind 'report_pdf_v9'" in row.status_note


# ------------------------------------------------------------------ clock changes
@pytest.mark.parametrize("mode", ["qt", "background"])
def test_setting_the_clock_back_does_not_stall_the_sync(
        make_manager, db, data_dir, qtbot, services, monkeypatch, mode) -> None:
    """APScheduler's timers count wall time; the periodic sync must not.  No test may
    set the machine's clock, so APScheduler's clock and the service's are set back by
    an hour together."""
    import apscheduler.schedulers.base as aps_base

    class WallClock(dt.datetime):
        back = 0.0

        @classmethod
        def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
            return dt.datetime.now(tz) - dt.timedelta(seconds=WallClock.back)

    def wall() -> float:
        return time.time() - WallClock.back

    monkeypatch.setattr(aps_base, "datetime", WallClock)
    manager = make_manager()
    service = services(ScheduleStore(db, clock=wall), manager, mode=mode, clock=wall,
                       sync_s=0.2)
    jumps: list[float] = []
    service.clockJumped.connect(jumps.append)
    qtbot.wait(700)  # a few syncs on the true time
    assert jumps == []

    WallClock.back = 3600.0
    wait_until(qtbot, lambda: jumps, 10, "a sync after the clock was set back by an hour")
    assert jumps[0] == pytest.approx(-3600, abs=30)
    # and APScheduler fires in the new time: a schedule added now (as the CLI does) runs
    rec = ScheduleStore(db, clock=wall).add(name="every second", kind="noop",
                                            interval_seconds=1)
    wait_until(qtbot, lambda: len(schedule_jobs(data_dir, rec.id)) >= 2, 20,
               "two runs of a schedule added after the clock was set back")
    service.shutdown()
    for job_id, *_ in schedule_jobs(data_dir, rec.id):
        wait_final(qtbot, manager, job_id)


def test_a_late_sync_counts_as_a_jump_where_the_monotonic_clock_counts_sleep(
        make_manager, db, qtbot, services) -> None:
    """On Windows the monotonic clock goes on while the computer sleeps, so wall and
    monotonic agree after resume: the sync coming two hours late gives it away."""
    manager = make_manager()
    wall, mono = FakeClock(T0), FakeClock(5000.0)
    service = services(ScheduleStore(db, clock=wall), manager, mode="qt", clock=wall,
                       monotonic=mono, sync_s=0.2, jump_s=10)
    jumps: list[float] = []
    service.clockJumped.connect(jumps.append)
    qtbot.wait(600)  # syncs on time
    assert jumps == []
    wall.advance(2 * 3600)  # asleep for two hours, counted by both clocks
    mono.advance(2 * 3600)
    wait_until(qtbot, lambda: jumps, 10, "the late sync to count as a jump")
    assert jumps == [pytest.approx(2 * 3600 - 0.2)]
    qtbot.wait(600)
    assert len(jumps) == 1  # the syncs after it are on time again


# ---------------------------------------------------------------------------- DST
BERLIN = "Europe/Berlin"


def berlin(*wall: int, fold: int = 0) -> float:
    from zoneinfo import ZoneInfo

    return dt.datetime(*wall, tzinfo=ZoneInfo(BERLIN), fold=fold).timestamp()


def utc(*wall: int) -> float:
    return dt.datetime(*wall, tzinfo=dt.UTC).timestamp()


def test_an_hourly_schedule_runs_once_per_real_hour_through_both_dst_nights(
        make_manager, db, data_dir, qtbot, services) -> None:
    """Berlin, 2026: the clocks skip 02:00-03:00 on 29 March and repeat 02:00-03:00 on
    25 October.  An hourly run is due once per hour of real time, each run on time."""
    manager = make_manager()
    clock = FakeClock(berlin(2026, 3, 29, 0, 30))
    store = ScheduleStore(db, clock=clock)
    service = services(store, manager, clock=clock, monotonic=clock)
    spring = service.add(name="hourly spring", kind="noop", cron="0 * * * *", timezone=BERLIN)
    # 01:00 CET, then 03:00 CEST (02:00 does not exist), 04:00 CEST, 05:00 CEST
    for fire in (utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2),
                 utc(2026, 3, 29, 3)):
        clock.now = fire + 2
        assert len(service.sync().submitted) == 1
        row = store.get(spring.id)
        assert (row.last_fire_at, row.missed) == (fire, 0)
    service.set_enabled(spring.id, False)

    clock.now = berlin(2026, 10, 25, 0, 30)
    autumn = service.add(name="hourly autumn", kind="noop", cron="0 * * * *", timezone=BERLIN)
    fires = [berlin(2026, 10, 25, 1), berlin(2026, 10, 25, 2),  # 01:00, 02:00 CEST
             berlin(2026, 10, 25, 2, fold=1),  # 02:00 CET: the hour again, an hour later
             berlin(2026, 10, 25, 3), berlin(2026, 10, 25, 4)]
    assert [b - a for a, b in pairwise(fires)] == [3600.0] * 4
    for fire in fires:
        clock.now = fire + 2
        assert len(service.sync().submitted) == 1
        row = store.get(autumn.id)
        assert (row.last_fire_at, row.missed) == (fire, 0)
    assert service.sync().submitted == ()
    jobs = schedule_jobs(data_dir, spring.id) + schedule_jobs(data_dir, autumn.id)
    assert len(jobs) == 9
    for job_id, *_ in jobs:
        wait_final(qtbot, manager, job_id)


@pytest.mark.parametrize("cron, closed, opened, missed, latest", [
    # spring forward: 02:30 does not exist on 29 March; it runs as 03:30 CEST
    ("30 2 * * *", (2026, 3, 28, 12, 0), (2026, 3, 29, 9, 0), 1, (2026, 3, 29, 1, 30)),
    ("0 * * * *", (2026, 3, 29, 0, 30), (2026, 3, 29, 5, 30), 4, (2026, 3, 29, 3, 0)),
    # fall back: 02:30 happens twice on 25 October; a daily run counts once
    ("30 2 * * *", (2026, 10, 24, 12, 0), (2026, 10, 25, 9, 0), 1, (2026, 10, 25, 0, 30)),
    ("0 * * * *", (2026, 10, 25, 0, 30), (2026, 10, 25, 4, 30), 5, (2026, 10, 25, 3, 0)),
])
def test_runs_missed_over_a_dst_night_are_counted_in_real_time_and_caught_up_once(
        make_manager, db, data_dir, qtbot, services, cron, closed, opened, missed,
        latest) -> None:
    """The app is closed over the night the clocks change (Berlin wall times in, UTC
    instants out): the missed count is what fell due in real time; one catch-up."""
    manager = make_manager()
    clock = FakeClock(berlin(*closed))
    store = ScheduleStore(db, clock=clock)
    rec = store.add(name="nightly", kind="noop", cron=cron, timezone=BERLIN)
    clock.now = berlin(*opened)
    service = services(store, manager, clock=clock, monotonic=clock)
    report = service.sync()
    assert len(report.submitted) == 1
    row = store.get(rec.id)
    assert (row.missed, row.last_fire_at) == (missed, utc(*latest))
    runs = f"{missed} run" + ("s" if missed > 1 else "")
    assert row.status_note.startswith(f"Caught up: {runs} missed while the app was not running")
    assert service.sync().submitted == ()  # caught up once
    assert wait_final(qtbot, manager, report.submitted[0]).status is JobStatus.COMPLETED


@pytest.fixture
def berlin_is_local(monkeypatch) -> Any:  # type: ignore[no-untyped-def]
    """This computer's zone becomes Europe/Berlin, after the process looked it up once."""
    from swifty_desktop.scheduling.rules import resolve_timezone

    first = resolve_timezone("local")  # what the process found at start (tzlocal caches it)
    monkeypatch.setenv("TZ", BERLIN)
    time.tzset()
    yield first
    monkeypatch.undo()
    time.tzset()


def test_the_local_zone_follows_the_computers_zone_across_spring_forward(
        make_manager, db, qtbot, services, berlin_is_local) -> None:
    manager = make_manager()
    clock = FakeClock(berlin(2026, 3, 28, 12, 0))
    store = ScheduleStore(db, clock=clock)
    rec = store.add(name="nightly", kind="noop", cron="30 2 * * *")  # local time
    assert rec.timezone == "local" and rec.describe_rule() == "Every day at 02:30"
    assert rec.next_run(clock()) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST, 02:30 is skipped
    clock.now = berlin(2026, 3, 30, 9, 0)  # closed for two nights
    service = services(store, manager, clock=clock, monotonic=clock)
    report = service.sync()
    row = store.get(rec.id)
    assert (row.missed, row.last_fire_at) == (2, utc(2026, 3, 30, 0, 30))  # 02:30 CEST
    assert "(latest due Mon 2026-03-30 02:30 CEST)" in row.status_note
    assert wait_final(qtbot, manager, report.submitted[0]).status is JobStatus.COMPLETED
