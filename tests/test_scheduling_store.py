"""The schedules table: validation, defaults, atomic claims, misfire decisions.

Real SQLite files; several engines on one file stand in for several processes.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from typing import Any

import pytest

from swifty_desktop.db import make_engine
from swifty_desktop.jobs.model import Trigger
from swifty_desktop.jobs.store import JobStore
from swifty_desktop.scheduling import store as store_mod
from swifty_desktop.scheduling.planner import plan_fire
from swifty_desktop.scheduling.store import (
    DEFAULT_SCHEDULES,
    DefaultSchedule,
    ScheduleError,
    ScheduleNotFound,
    ScheduleStore,
)

T0 = 1_780_000_000.0  # a Thursday in 2026, 20:26:40 UTC


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def count_rows(data_dir: Any, table: str = "schedules") -> int:
    with sqlite3.connect(data_dir.db_path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_add_list_update_pause_remove(db, data_dir) -> None:
    clock = FakeClock()
    store = ScheduleStore(db, clock=clock)
    rec = store.add(name="  Nightly   sleep ", kind="sleep", params={"seconds": "0.5"},
                    cron="0 3 * * *", timezone="Europe/Berlin")
    assert rec.name == "Nightly sleep"  # whitespace normalised
    assert rec.params == {"seconds": 0.5, "checkpoints": False, "ignore_cancel": False}
    assert (rec.cron, rec.interval_seconds, rec.timezone) == ("0 3 * * *", None, "Europe/Berlin")
    assert rec.enabled and rec.misfire_policy == "coalesce" and rec.grace_seconds == 86400
    assert rec.created_at == rec.updated_at == T0
    assert rec.describe_rule() == "Every day at 03:00 (Europe/Berlin)"
    assert [r.id for r in store.list()] == [rec.id]
    assert store.find("nightly SLEEP").id == rec.id  # names ignore case when looking up

    clock.advance(10)
    edited = store.update(rec.id, interval_seconds=900, misfire_policy="skip")
    assert (edited.cron, edited.interval_seconds, edited.misfire_policy) == (None, 900, "skip")
    assert edited.updated_at == T0 + 10 and edited.created_at == T0
    assert edited.describe_rule() == "Every 15 minutes"

    paused = store.set_enabled(rec.id, False)
    assert not paused.enabled and paused.next_run(clock()) is None
    resumed = store.set_enabled(rec.id, True)
    # the interval counts from the edit that made it, not from the resume
    assert resumed.enabled and resumed.next_run(clock()) == edited.rule_changed_at + 900
    assert resumed.rule_changed_at == edited.updated_at == T0 + 10
    assert store.remove(rec.id) is True
    assert store.list() == []
    with pytest.raises(ScheduleNotFound, match="does not exist"):
        store.get(rec.id)
    with pytest.raises(ScheduleNotFound, match="no schedule named 'ghost'.*schedules list"):
        store.by_name("ghost")


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "nope"}, "unknown job kind 'nope'; known kinds:"),
    ({"params": {"seconds": "soon"}}, "parameter 'seconds' must be a number"),
    ({"params": {"colour": "red"}}, "kind 'sleep' has no parameter 'colour'"),
    ({"cron": "61 * * * *"}, "schedule 'S': cron expression '61 \\* \\* \\* \\*' is not valid"),
    ({"cron": None, "interval_seconds": None}, "either a cron expression or an interval"),
    ({"interval_seconds": 60}, "either a cron expression or an interval"),
    ({"timezone": "Nowhere/Town"}, "unknown time zone 'Nowhere/Town'"),
    ({"misfire_policy": "later"}, "misfire policy 'later' is not known"),
    ({"grace_seconds": -5}, "must not be negative"),
    ({"name": "   "}, "needs a name"),
])
def test_bad_input_is_refused_and_nothing_is_written(db, data_dir, kwargs, message) -> None:
    store = ScheduleStore(db)
    values: dict[str, Any] = {"name": "S", "kind": "sleep", "cron": "0 7 * * *"}
    values.update(kwargs)
    with pytest.raises(ScheduleError, match=message):
        store.add(**values)
    assert count_rows(data_dir) == 0


def test_names_are_unique_ignoring_case(db, data_dir) -> None:
    store = ScheduleStore(db)
    first = store.add(name="Report", kind="noop", interval_seconds=60)
    with pytest.raises(ScheduleError, match="a schedule named 'REPORT' already exists"):
        store.add(name="REPORT", kind="noop", interval_seconds=60)
    other = store.add(name="Other", kind="noop", interval_seconds=60)
    with pytest.raises(ScheduleError, match="already exists"):
        store.update(other.id, name="report")
    assert store.get(other.id).name == "Other" and store.get(first.id).name == "Report"
    assert count_rows(data_dir) == 2


def test_defaults_are_seeded_once_even_when_their_kinds_do_not_exist_yet(db, monkeypatch) -> None:
    store = ScheduleStore(db)
    added = store.ensure_defaults()
    by_name = {r.name: r for r in added}
    assert set(by_name) == {"Exchange rates", "Archive completed orders", "Weekly sales report"}
    assert (by_name["Exchange rates"].kind, by_name["Exchange rates"].cron) == \
        ("exchange_rates", "0 7 * * *")
    assert by_name["Exchange rates"].describe_rule() == "Every day at 07:00"
    archive = by_name["Archive completed orders"]
    assert (archive.kind, archive.params) == ("archive", {"older_than_days": 90})
    assert archive.describe_rule() == "Every Sunday at 02:00"
    report = by_name["Weekly sales report"]
    assert (report.kind, report.describe_rule()) == ("report_pdf", "Every Monday at 06:00")
    assert {r.timezone for r in added} == {"local"} and all(r.enabled for r in added)

    assert store.ensure_defaults() == []  # once
    store.remove(report.id)
    assert store.ensure_defaults() == [] and store.find("Weekly sales report") is None

    # a fresh data directory whose default kind this build does not have: stored anyway
    other = make_engine(db.url.database.replace("swifty.db", "other.db"))
    from swifty_desktop.db import upgrade

    upgrade(other)
    monkeypatch.setattr(store_mod, "DEFAULT_SCHEDULES", DEFAULT_SCHEDULES + (
        DefaultSchedule("Future thing", "kind_from_a_later_version", "0 5 * * *", {"x": 1}),))
    seeded = ScheduleStore(other).ensure_defaults()
    future = next(r for r in seeded if r.name == "Future thing")
    assert future.kind == "kind_from_a_later_version" and future.params == {"x": 1}
    other.dispose()


def test_defaults_are_seeded_once_by_concurrent_processes(db, data_dir) -> None:
    engines = [make_engine(data_dir.db_path) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    results: list[int] = []

    def seed(engine: Any) -> None:
        barrier.wait()
        results.append(len(ScheduleStore(engine).ensure_defaults()))

    threads = [threading.Thread(target=seed, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 0, 3]
    assert count_rows(data_dir) == 3
    for e in engines:
        e.dispose()


def test_each_fire_time_is_claimed_by_exactly_one_engine(db, data_dir) -> None:
    """Four 'processes' (own engines, own connections) race for 25 fire times."""
    sid = ScheduleStore(db, clock=FakeClock()).add(name="race", kind="noop",
                                                   interval_seconds=60).id
    stores = [ScheduleStore(make_engine(data_dir.db_path)) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    wins: dict[int, list[int]] = {k: [] for k in range(25)}

    def engine(n: int) -> None:
        for k in range(25):
            barrier.wait()  # everybody reads the same row, then everybody claims
            record = stores[n].get(sid)
            barrier.wait()
            if stores[n].claim_fire(record, T0 + 60 * (k + 1)):
                wins[k].append(n)

    threads = [threading.Thread(target=engine, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(w) == 1 for w in wins.values()), wins
    assert len({w[0] for w in wins.values()}) > 1  # more than one engine won some
    assert ScheduleStore(db).get(sid).last_fire_at == T0 + 60 * 25
    for s in stores:
        s.engine.dispose()


def test_a_claim_fails_when_the_schedule_changed_or_was_paused(db) -> None:
    clock = FakeClock()
    store = ScheduleStore(db, clock=clock)
    rec = store.add(name="x", kind="noop", interval_seconds=60)
    clock.advance(5)
    store.update(rec.id, interval_seconds=120)  # edited after `rec` was read
    assert not store.claim_fire(rec, T0 + 60)
    fresh = store.set_enabled(rec.id, False)
    assert not store.claim_fire(fresh, T0 + 120)
    assert store.get(rec.id).last_fire_at is None


def test_last_runs_show_the_newest_attempt_of_the_last_job(db) -> None:
    store, jobs = ScheduleStore(db), JobStore(db)
    rec = store.add(name="x", kind="fail", interval_seconds=60)
    first = jobs.insert("fail", "Fail", {}, Trigger.schedule("x", rec.id))
    assert jobs.get(first).schedule_id == rec.id
    store.record_job(rec.id, first)
    retry = jobs.create_retry(jobs.get(first), automatic=True)
    (summary,) = store.summaries()
    assert (summary.last_job_id, summary.last_status) == (retry, "queued")
    assert summary.last_run == jobs.get(first).created_at
    assert summary.to_json()["last_status"] == "queued"
    jobs.close()


# ------------------------------------------------------------------ misfire rules
def _record(db: Any, **changes: Any) -> Any:
    store = ScheduleStore(db, clock=FakeClock(T0))
    rec = store.add(name="daily", kind="noop", cron="0 7 * * *", timezone="UTC")
    return dataclasses.replace(rec, **changes)


def test_on_time_run_fires_and_late_wakeups_within_a_minute_are_not_misfires(db) -> None:
    rec = _record(db)
    seven = 1_780_038_000.0  # Fri 2026-05-29 07:00 UTC, the first run after T0
    assert plan_fire(rec, seven - 1) is None
    plan = plan_fire(rec, seven + 3)
    assert (plan.fire_at, plan.run, plan.missed, plan.catch_up) == (seven, True, 0, False)


def test_missed_runs_coalesce_into_one_catch_up_or_are_skipped(db) -> None:
    seven = 1_780_038_000.0
    three_days_later = seven + 2 * 86400 + 3600  # 08:00 two days after the first 07:00
    rec = _record(db)
    plan = plan_fire(rec, three_days_later)
    assert (plan.run, plan.catch_up, plan.due, plan.missed) == (True, True, 3, 3)
    assert plan.fire_at == seven + 2 * 86400  # the newest missed run is claimed
    assert plan.note.startswith("Caught up: 3 runs missed while the app was not running")

    skip = plan_fire(dataclasses.replace(rec, misfire_policy="skip"), three_days_later)
    assert (skip.run, skip.missed) == (False, 3)
    assert "misfire policy is 'skip'" in skip.note

    stale = plan_fire(dataclasses.replace(rec, grace_seconds=1800), three_days_later)
    assert (stale.run, stale.missed) == (False, 3)
    assert "older than the grace period of 30 min" in stale.note

    paused = dataclasses.replace(rec, enabled=False)
    assert plan_fire(paused, three_days_later) is None


def test_backing_off_skips_runs_until_the_backoff_ends(db) -> None:
    seven = 1_780_038_000.0
    rec = _record(db, backoff_until=seven + 10, failure_streak=3, status_note="Backing off")
    plan = plan_fire(rec, seven + 1)
    assert (plan.run, plan.keep_note, plan.reason) == (False, True, "backing off")
    later = dataclasses.replace(rec, last_fire_at=seven)
    plan = plan_fire(later, seven + 86400 + 1)
    assert (plan.run, plan.keep_note) == (True, True)  # the back-off note stays until success


# ------------------------------------------------------------- interval anchors
def test_renaming_or_pausing_an_interval_schedule_keeps_its_fire_times(db) -> None:
    """Intervals count from when the rule came into force; other edits do not move it."""
    clock = FakeClock()
    store = ScheduleStore(db, clock=clock)
    rec = store.add(name="quarter-hourly", kind="noop", interval_seconds=900)
    assert rec.rule_changed_at == T0 and rec.next_run(clock()) == T0 + 900
    clock.advance(100)
    renamed = store.update(rec.id, name="every quarter hour")
    assert renamed.updated_at == T0 + 100 and renamed.rule_changed_at == T0
    assert renamed.next_run(clock()) == T0 + 900
    clock.advance(100)
    store.set_enabled(rec.id, False)
    clock.advance(100)
    resumed = store.set_enabled(rec.id, True)
    assert resumed.rule_changed_at == T0 and resumed.next_run(clock()) == T0 + 900
    assert store.update(rec.id, misfire_policy="skip", grace_seconds=60).next_run(clock()) \
        == T0 + 900
    assert store.update(rec.id, interval_seconds=900).rule_changed_at == T0  # same rule

    clock.advance(100)  # T0 + 400: a new interval counts from now
    changed = store.update(rec.id, interval_seconds=600)
    assert changed.rule_changed_at == T0 + 400 and changed.next_run(clock()) == T0 + 1000
    clock.advance(10)
    zoned = store.update(rec.id, timezone="Europe/Berlin")  # the time zone is part of the rule
    assert zoned.rule_changed_at == T0 + 410


def test_the_migration_keeps_the_fire_times_of_existing_interval_schedules(tmp_path) -> None:
    """A database from before ``rule_changed_at``: its intervals keep counting from
    ``updated_at``, as they did."""
    from swifty_desktop.db import upgrade
    from swifty_desktop.db.migrate import current_revision

    engine = make_engine(tmp_path / "old.db")
    upgrade(engine, "0002_business")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO schedules (name, kind, params, interval_seconds, timezone, enabled, "
            "misfire_policy, grace_seconds, created_at, updated_at, missed, failure_streak) "
            f"VALUES ('old', 'noop', '{{}}', 3600, 'local', 1, 'coalesce', 86400, {T0}, "
            f"{T0 + 123}, 0, 0)")
    upgrade(engine)
    assert current_revision(engine) == "0003_schedule_rule"
    (rec,) = ScheduleStore(engine).list()
    assert rec.rule_changed_at == T0 + 123
    assert rec.next_run(T0 + 200) == T0 + 123 + 3600
    engine.dispose()


# --------------------------------------------------------------- secrets at rest
@pytest.fixture
def file_keyring(monkeypatch: Any, tmp_path: Any) -> Any:
    import keyring
    from loopback import use_file_keyring

    previous = use_file_keyring(monkeypatch, tmp_path)
    yield tmp_path / "keyring.json"
    keyring.set_keyring(previous)


def keyring_entries(path: Any) -> dict[str, str]:
    import json

    return json.loads(path.read_text()) if path.exists() else {}


def test_a_schedules_secret_goes_to_the_keyring_once_and_leaves_with_it(
        db, file_keyring) -> None:
    store = ScheduleStore(db)
    params = {"base_url": "http://127.0.0.1:9", "consumer_key": "ck_1",
              "consumer_secret": "cs_first"}
    rec = store.add(name="supplier", kind="catalog_sync", params=params, cron="0 5 * * *")
    ref = rec.params["consumer_secret"]
    assert ref.startswith("keyring:job-param.catalog_sync.consumer_secret.")
    assert list(keyring_entries(file_keyring).values()) == ["cs_first"]
    # an edit that leaves the secret alone keeps the same reference (the editor sends it back)
    assert store.update(rec.id, cron="0 6 * * *").params["consumer_secret"] == ref
    assert store.update(rec.id, params=rec.params).params["consumer_secret"] == ref
    assert list(keyring_entries(file_keyring).values()) == ["cs_first"]
    # a new secret replaces the entry; the old one is deleted
    edited = store.update(rec.id, params=dict(params, consumer_secret="cs_second"))
    assert edited.params["consumer_secret"] != ref
    assert list(keyring_entries(file_keyring).values()) == ["cs_second"]
    # a name clash writes nothing, and leaves nothing in the keyring either
    with pytest.raises(ScheduleError, match="already exists"):
        store.add(name="SUPPLIER", kind="catalog_sync",
                  params=dict(params, consumer_secret="cs_clash"), cron="0 5 * * *")
    assert list(keyring_entries(file_keyring).values()) == ["cs_second"]
    # a queued job of the schedule still needs the secret: removing keeps it for that job
    jobs = JobStore(db)
    job_id = jobs.insert("catalog_sync", "Sync", edited.params,
                         Trigger.schedule(edited.name, edited.id))
    assert store.remove(edited.id)
    assert list(keyring_entries(file_keyring).values()) == ["cs_second"]
    jobs.cancel_queued(job_id)
    jobs.close()
    other = store.add(name="other", kind="catalog_sync", params=params, cron="0 5 * * *")
    assert store.remove(other.id)
    assert "cs_first" not in keyring_entries(file_keyring).values()


def test_a_secret_stored_in_plain_text_by_an_older_version_moves_to_the_keyring(
        db, file_keyring) -> None:
    store = ScheduleStore(db)
    rec = store.add(name="old", kind="catalog_sync", cron="0 5 * * *",
                    params={"base_url": "http://127.0.0.1:9", "consumer_key": "ck_1"})
    with db.begin() as conn:  # as the previous version wrote it
        conn.exec_driver_sql(
            "UPDATE schedules SET params = '{\"base_url\": \"http://127.0.0.1:9\", "
            "\"consumer_key\": \"ck_1\", \"consumer_secret\": \"cs_plain\"}'")
    secured = store.secure_params(store.get(rec.id))
    assert secured.params["consumer_secret"].startswith("keyring:")
    assert store.get(rec.id).params == secured.params
    assert list(keyring_entries(file_keyring).values()) == ["cs_plain"]
    assert store.secure_params(store.get(rec.id)) == store.get(rec.id)  # once only
    assert len(keyring_entries(file_keyring)) == 1


def test_a_secret_without_a_keyring_is_refused_and_nothing_is_written(db, data_dir) -> None:
    import keyring
    from keyring.backends.fail import Keyring as NoKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    try:
        with pytest.raises(ScheduleError, match="parameter 'consumer_secret' is a secret "
                                                "and no system keyring is available"):
            ScheduleStore(db).add(name="s", kind="catalog_sync", cron="0 5 * * *",
                                  params={"consumer_secret": "cs_1"})
    finally:
        keyring.set_keyring(previous)
    assert count_rows(data_dir) == 0
