"""``swifty-desktop schedules ...`` and the headless worker's scheduler, as subprocesses."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from helpers import rows, run_cli, run_json, start_worker, stop, wait_for

SCHEDULE_KEYS = {"name", "kind", "rule", "enabled", "last_run", "last_status", "next_run",
                 "missed"}


def test_a_fresh_data_directory_lists_the_three_default_schedules(tmp_path: Path) -> None:
    listed = run_json(tmp_path, "schedules", "list", "--json")
    assert [s["name"] for s in listed] == ["Exchange rates", "Archive completed orders",
                                           "Weekly sales report"]
    assert all(SCHEDULE_KEYS <= set(s) for s in listed)
    by_name = {s["name"]: s for s in listed}
    assert by_name["Exchange rates"]["rule"] == "Every day at 07:00"
    assert by_name["Archive completed orders"]["rule"] == "Every Sunday at 02:00"
    assert by_name["Archive completed orders"]["params"] == {"older_than_days": 90}
    assert by_name["Weekly sales report"]["rule"] == "Every Monday at 06:00"
    assert all(s["enabled"] and s["missed"] == 0 and s["last_run"] is None
               and s["last_status"] is None and s["timezone"] == "local" for s in listed)
    assert all(s["next_run"].endswith("+00:00") for s in listed)
    text = run_cli(tmp_path, "schedules", "list").stdout
    assert "Every Monday at 06:00" in text and "NEXT RUN" in text
    assert len(run_json(tmp_path, "schedules", "list", "--json")) == 3  # seeded once


def test_add_run_pause_resume_remove(tmp_path: Path) -> None:
    added = run_json(tmp_path, "schedules", "add", "Morning sleep", "sleep", "--cron",
                     "30 6 * * 1-5", "-p", "seconds=0.1", "--tz", "Europe/Berlin",
                     "--misfire", "skip", "--json")
    assert added["rule"] == "Every weekday at 06:30 (Europe/Berlin)"
    assert (added["cron"], added["timezone"], added["misfire"]) == \
        ("30 6 * * 1-5", "Europe/Berlin", "skip")
    assert added["params"] == {"seconds": 0.1, "checkpoints": False, "ignore_cancel": False}
    proc = run_cli(tmp_path, "schedules", "add", "tick", "noop", "--every", "900")
    assert proc.returncode == 0 and "Every 15 minutes" in proc.stdout

    job = run_json(tmp_path, "schedules", "run", "morning sleep", "--wait", "--json")
    assert job["status"] == "completed" and job["kind"] == "sleep"
    assert job["trigger"]["type"] == "schedule" and job["trigger"]["label"] == "Morning sleep"
    listed = {s["name"]: s for s in run_json(tmp_path, "schedules", "list", "--json")}
    assert listed["Morning sleep"]["last_status"] == "completed"
    assert listed["Morning sleep"]["last_job_id"] == job["id"]
    assert listed["Morning sleep"]["last_run"] is not None
    queued = run_cli(tmp_path, "schedules", "run", "tick")
    assert queued.returncode == 0 and "Queued job #2" in queued.stdout
    assert rows(tmp_path, "SELECT trigger_type, schedule_id, status FROM jobs WHERE id = 2") == \
        [("schedule", listed["tick"]["id"], "queued")]

    assert "Paused schedule 'tick'" in run_cli(tmp_path, "schedules", "pause", "tick").stdout
    tick = next(s for s in run_json(tmp_path, "schedules", "list", "--json")
                if s["name"] == "tick")
    assert tick["enabled"] is False and tick["next_run"] is None
    assert "already paused" in run_cli(tmp_path, "schedules", "pause", "tick").stdout
    resumed = run_cli(tmp_path, "schedules", "resume", "tick")
    assert resumed.returncode == 0 and "Resumed schedule 'tick'" in resumed.stdout
    assert "Removed schedule 'tick'" in run_cli(tmp_path, "schedules", "remove", "tick").stdout
    names = [s["name"] for s in run_json(tmp_path, "schedules", "list", "--json")]
    assert "tick" not in names and "Morning sleep" in names
    assert rows(tmp_path, "SELECT count(*) FROM jobs") == [(2,)]  # history stays


BAD_INPUT = [
    (["add", "x", "noop", "--cron", "61 * * * *"],
     "cron expression '61 * * * *' is not valid"),
    (["add", "x", "noop", "--cron", "0 7 * *"], "has 4 fields; use five fields"),
    (["add", "x", "noop"], "give either --cron EXPR"),
    (["add", "x", "noop", "--every", "soon"], "interval 'soon' must be a whole number"),
    (["add", "x", "nope", "--every", "60"], "unknown job kind 'nope'"),
    (["add", "x", "sleep", "--every", "60", "-p", "seconds=soon"],
     "parameter 'seconds' must be a number"),
    (["add", "x", "noop", "--every", "60", "--tz", "Mars/Olympus"],
     "unknown time zone 'Mars/Olympus'"),
    (["add", "x", "noop", "--every", "60", "--misfire", "later"],
     "misfire policy 'later' is not known"),
    (["add", "Exchange rates", "noop", "--every", "60"],
     "a schedule named 'Exchange rates' already exists"),
    (["run", "ghost"], "there is no schedule named 'ghost'"),
]


def test_bad_input_is_one_line_on_stderr_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    run_json(tmp_path, "schedules", "list", "--json")  # the defaults exist already
    before = rows(tmp_path, "SELECT * FROM schedules ORDER BY id")
    for args, message in BAD_INPUT:
        proc = run_cli(tmp_path, "schedules", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("swifty-desktop: error: "), \
            (args, proc.stderr)
        assert message in lines[0], (args, lines[0])
    assert rows(tmp_path, "SELECT * FROM schedules ORDER BY id") == before
    assert rows(tmp_path, "SELECT count(*) FROM jobs") == [(0,)]


def test_running_a_schedule_whose_kind_is_missing_explains(tmp_path: Path) -> None:
    run_json(tmp_path, "schedules", "list", "--json")
    with sqlite3.connect(tmp_path / "swifty.db") as conn:
        conn.execute("UPDATE schedules SET kind = 'kind_of_tomorrow' WHERE name = 'Exchange "
                     "rates'")
    proc = run_cli(tmp_path, "schedules", "run", "Exchange rates")
    assert proc.returncode == 2
    assert "cannot run: unknown job kind 'kind_of_tomorrow'" in proc.stderr
    assert "Update the app" in proc.stderr
    assert rows(tmp_path, "SELECT count(*) FROM jobs") == [(0,)]


def test_worker_fires_an_interval_schedule(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "schedules", "add", "tick", "noop", "--every", "1").returncode == 0
    sid = rows(tmp_path, "SELECT id FROM schedules WHERE name = 'tick'")[0][0]
    worker = start_worker(tmp_path, "--workers", "1")
    try:
        wait_for(lambda: len(rows(tmp_path, "SELECT id FROM jobs WHERE schedule_id = ? AND "
                                  "status = 'completed'", sid)) >= 2, 30,
                 "two completed runs of the schedule")
    finally:
        assert stop(worker) == 0
    jobs = rows(tmp_path, "SELECT trigger, trigger_type FROM jobs WHERE schedule_id = ?", sid)
    assert {t for _, t in jobs} == {"schedule"}
    assert json.loads(jobs[0][0]) == {"type": "schedule", "label": "tick", "ref": sid}
    tick = next(s for s in run_json(tmp_path, "schedules", "list", "--json")
                if s["name"] == "tick")
    assert tick["last_status"] in ("queued", "running", "completed")
    assert tick["last_run"] is not None and tick["last_job_id"] is not None
    listed = run_json(tmp_path, "jobs", "list", "--json")
    assert listed[0]["trigger"]["description"] == "Schedule · tick"


def test_two_workers_on_one_data_directory_fire_each_run_once(tmp_path: Path) -> None:
    """Exactly one job per fire time: each scheduled job logs the fire time it stands
    for; none is fired twice, none after the first is skipped, and the runs before the
    workers were up are the ones counted as missed."""
    import datetime as dt

    from swifty_desktop.scheduling.store import RUN_LOG_PREFIX

    assert run_cli(tmp_path, "schedules", "add", "tick", "noop", "--every", "1").returncode == 0
    sid = rows(tmp_path, "SELECT id FROM schedules WHERE name = 'tick'")[0][0]
    first = start_worker(tmp_path, "--workers", "1")
    second = start_worker(tmp_path, "--workers", "1")
    try:
        time.sleep(3.5)
    finally:
        assert stop(first) == 0 and stop(second) == 0
    (anchor, last_fire, missed), = rows(tmp_path, "SELECT rule_changed_at, last_fire_at, "
                                        "missed FROM schedules WHERE id = ?", sid)
    lines = rows(tmp_path, "SELECT j.id, l.line FROM jobs j JOIN job_logs l ON l.job_id = j.id "
                 "WHERE j.schedule_id = ? AND l.line LIKE ? ORDER BY j.id", sid,
                 f"{RUN_LOG_PREFIX} 'tick' due %")
    jobs = [j for (j,) in rows(tmp_path, "SELECT id FROM jobs WHERE schedule_id = ?", sid)]
    assert sorted(j for j, _ in lines) == sorted(jobs)  # one line per job
    due = [dt.datetime.fromisoformat(line.split(" due ")[1].split(" ")[0]).timestamp()
           for _, line in lines]
    steps = [round(t - anchor) for t in due]  # fire time k is anchor + k seconds
    assert all(abs(t - (anchor + k)) < 1e-3 for t, k in zip(due, steps, strict=True))
    fire_times = round(last_fire - anchor)  # the fire times due up to the last one claimed
    assert fire_times >= 3
    assert len(set(steps)) == len(steps), steps  # no fire time ran twice
    # every fire time from the first run on has exactly one job; the ones before were
    # coalesced into that first run (the workers were starting) and counted as missed
    assert sorted(steps) == list(range(steps[0], fire_times + 1)), (steps, fire_times)
    assert missed == steps[0] - 1 and len(jobs) + missed == fire_times
