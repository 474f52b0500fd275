"""Several engine processes on one data directory; engines killed the hard way."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest
from conftest import wait_final
from helpers import alive, children, cmdline, rows, start_worker, stop, wait_for

from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.jobs.store import JobStore

pytestmark = pytest.mark.slow


def test_two_engines_run_200_jobs_each_exactly_once(data_dir, db) -> None:
    store = JobStore(db)
    first, second = start_worker(data_dir.root), start_worker(data_dir.root)
    try:
        # 20 ms each: long enough that both engines get a share, whoever polls first
        ids = store.insert_many([("sleep", "Sleep", {"seconds": 0.02}, Trigger("api"))] * 200)
        wait_for(lambda: rows(data_dir.root, "SELECT count(*) FROM jobs WHERE status = "
                              "'completed'")[0][0] == 200, 120, "200 completed jobs")
    finally:
        assert stop(first) == 0 and stop(second) == 0
    runs = dict(rows(data_dir.root, "SELECT job_id, count(*) FROM job_logs WHERE line LIKE "
                          "'slept%' GROUP BY job_id"))
    assert sorted(runs) == ids and set(runs.values()) == {1}  # each body ran once
    assert rows(data_dir.root, "SELECT count(*) FROM jobs")[0][0] == 200  # no retries
    engines = {e for (e,) in rows(data_dir.root, "SELECT DISTINCT engine_id FROM jobs")}
    assert len(engines) == 2, "both engines should have taken part"
    store.close()


def test_kill_9_of_the_engine_leaves_no_orphans_and_a_restart_resumes(data_dir, db, qtbot,
                                                                      make_manager) -> None:
    store = JobStore(db)
    engine = start_worker(data_dir.root, "--workers", "1")
    job_id = store.insert("sleep", "Sleep 20 s", {"seconds": 20, "checkpoints": True},
                          Trigger("api"))
    wait_for(lambda: (store.get(job_id).checkpoint or {}).get("step", 0) >= 4, 60,
             "the job to run and save checkpoints")
    workers = [c for c in children(engine.pid) if "resource_tracker" not in cmdline(c)]
    assert workers and all(alive(w) for w in workers)
    os.kill(engine.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    engine.wait(10)  # reap the engine only: its pipes may stay open while workers live
    wait_for(lambda: not any(alive(w) for w in workers), 5, "the workers to exit")
    assert time.monotonic() - killed_at < 2.0, "orphaned workers must exit within 2 s"
    stop(engine)
    step_at_kill = store.get(job_id).checkpoint["step"]
    time.sleep(0.5)
    assert store.get(job_id).checkpoint["step"] == step_at_kill  # nobody kept writing
    assert store.get(job_id).status is JobStatus.RUNNING  # until an engine starts again

    manager = make_manager()  # restart: recovery runs first
    old = store.get(job_id)
    assert old.status is JobStatus.INTERRUPTED and old.superseded_by is not None
    rerun = wait_final(qtbot, manager, old.superseded_by, timeout=40)
    assert rerun.status is JobStatus.COMPLETED
    assert rerun.result["resumed_from_step"] == step_at_kill
    assert store.count() == 2
    assert not rows(data_dir.root, "SELECT id FROM jobs WHERE status = 'running'")
    store.close()


def test_worker_stops_gracefully_on_sigterm(data_dir, db) -> None:
    store = JobStore(db)
    engine = start_worker(data_dir.root, "--workers", "1")
    job_id = store.insert("sleep", "Sleep", {"seconds": 1.5}, Trigger("api"))
    wait_for(lambda: store.get(job_id).status is JobStatus.RUNNING, 30)
    assert stop(engine, signal.SIGTERM) == 0
    assert store.get(job_id).status is JobStatus.COMPLETED  # it was let finish
    assert not rows(data_dir.root, "SELECT id FROM engines")
    store.close()


def test_worker_interrupts_jobs_that_outlive_the_grace_period(data_dir, db) -> None:
    store = JobStore(db)
    engine = start_worker(data_dir.root, "--workers", "1", "--grace", "0.2")
    job_id = store.insert("sleep", "Sleep", {"seconds": 60}, Trigger("api"))
    wait_for(lambda: (store.get(job_id).progress or 0) > 0, 30)
    assert stop(engine, signal.SIGINT) == 0
    job = store.get(job_id)
    assert job.status is JobStatus.INTERRUPTED and "shut down" in job.error.message
    requeued = store.get(job.superseded_by)  # sleep is safe to re-run
    assert requeued.status is JobStatus.QUEUED and requeued.trigger.type == "recovery"
    store.close()


def test_cancel_from_the_command_line_stops_a_job_running_in_a_worker(data_dir, db) -> None:
    from helpers import run_cli

    store = JobStore(db)
    engine = start_worker(data_dir.root, "--workers", "1")
    try:
        job_id = store.insert("sleep", "Sleep", {"seconds": 60}, Trigger("api"))
        wait_for(lambda: (store.get(job_id).progress or 0) > 0, 30, "the job to run")
        asked = time.monotonic()
        proc = run_cli(data_dir.root, "jobs", "cancel", str(job_id))
        assert proc.returncode == 0 and "will cancel it within a second or two" in proc.stdout
        wait_for(lambda: store.get(job_id).status is JobStatus.CANCELLED, 10, "the cancel")
        assert time.monotonic() - asked < 8
        assert store.get(job_id).progress < 0.5
    finally:
        assert stop(engine) == 0
    store.close()


def test_a_worker_signalled_while_starting_still_stops(data_dir) -> None:
    """SIGTERM before the worker's event loop runs must not be lost."""
    import subprocess
    import sys

    from helpers import cli_env

    proc = subprocess.Popen(
        [sys.executable, "-m", "swifty_desktop", "--data-dir", str(data_dir.root), "worker",
         "--workers", "1", "--no-scheduler"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env())
    # the engine registers itself in manager.start(), after the signal handlers are in
    # place and before the event loop runs: signal it then
    def registered() -> bool:
        try:
            return bool(rows(data_dir.root, "SELECT id FROM engines"))
        except sqlite3.OperationalError:  # not migrated yet
            return False

    try:
        wait_for(registered, 60, "the engine to register")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker ignored a SIGTERM sent as it started")
    finally:  # whatever failed, no worker outlives the test
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Worker stopped." in err
