"""The job engine end to end: real SQLite, real worker processes, real signals."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from conftest import wait_final, wait_until

from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.jobs.store import JobStateError, JobStore
from swifty_desktop.tasks import ParamError


def test_submit_runs_job_in_a_worker_process_and_stores_result(make_manager, qtbot) -> None:
    manager = make_manager()
    events: list[tuple[str, int]] = []
    manager.jobAdded.connect(lambda i: events.append(("added", i)))
    manager.jobFinished.connect(lambda i, s: events.append((s, i)))
    job_id = manager.submit("noop", {}, Trigger.user("Test button"))
    assert events[0] == ("added", job_id)  # acknowledged before submit returns
    queued = manager.store.get(job_id)
    assert queued.status is JobStatus.QUEUED
    assert queued.trigger.describe() == "You · Test button"
    job = wait_final(qtbot, manager, job_id)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.result["ok"] is True
    assert job.result["pid"] != os.getpid()  # the body ran in another process
    assert job.result["pid"] in manager.pool.pids()  # ...a warm worker that is still there
    assert job.started_at is not None and job.finished_at >= job.started_at
    assert job.progress == 1.0
    wait_until(qtbot, lambda: ("completed", job_id) in events)


def test_bad_parameters_are_rejected_before_anything_is_written(make_manager) -> None:
    manager = make_manager()
    with pytest.raises(ParamError, match="unknown job kind 'nope'"):
        manager.submit("nope")
    with pytest.raises(ParamError, match="parameter 'seconds' must be a number"):
        manager.submit("sleep", {"seconds": "soon"})
    with pytest.raises(ParamError, match="has no parameter 'color'"):
        manager.submit("sleep", {"color": "red"})
    assert manager.store.count() == 0


def test_progress_and_log_lines_reach_signals_and_database(make_manager, qtbot) -> None:
    manager = make_manager()
    progress: list[tuple[int, Any, str]] = []
    manager.jobProgress.connect(lambda i, f, m: progress.append((i, f, m)))
    logs: list[str] = []
    manager.jobLog.connect(lambda i, line: logs.append(line))
    job_id = manager.submit("write", {"size": 2000, "seconds": 0.4})
    job = wait_final(qtbot, manager, job_id)
    assert job.status is JobStatus.COMPLETED
    fractions = [f for i, f, _ in progress if i == job_id]
    assert len(fractions) >= 3 and fractions == sorted(fractions)
    assert any("2,000 of 2,000 bytes" in m for _, _, m in progress)
    fail_id = manager.submit("fail", {"message": "boom"})  # logs "attempt 1", then fails
    failed = wait_final(qtbot, manager, fail_id)
    assert "attempt 1" in logs
    assert [line for _, _, line in manager.store.logs(fail_id)] == ["attempt 1"]
    assert "Last log lines" in failed.error.traceback


def test_output_is_renamed_into_place_only_on_success(make_manager, qtbot, data_dir) -> None:
    manager = make_manager()
    ok = wait_final(qtbot, manager, manager.submit("write", {"name": "good.bin", "size": 5000}))
    assert ok.output_path == str(data_dir.outputs / "good.bin")
    assert os.path.getsize(ok.output_path) == 5000
    assert ok.result["path"] == ok.output_path  # the temp path in the result was rewritten
    bad = wait_final(qtbot, manager, manager.submit(
        "write", {"name": "bad.bin", "size": 5000, "fail_at": 0.5}))
    assert bad.status is JobStatus.FAILED
    assert "after writing" in bad.error.message
    assert sorted(p.name for p in data_dir.outputs.iterdir()) == ["good.bin"]
    again = wait_final(qtbot, manager, manager.submit("write", {"name": "good.bin",
                                                                 "size": 10}))
    assert again.output_path == str(data_dir.outputs / "good (2).bin")  # never overwritten
    assert os.path.getsize(data_dir.outputs / "good.bin") == 5000


def test_manual_retry_creates_a_new_attempt_and_keeps_history(make_manager, qtbot) -> None:
    manager = make_manager()
    first = wait_final(qtbot, manager, manager.submit("fail", {"succeed_on_attempt": 2}))
    assert first.status is JobStatus.FAILED and first.error.type == "TaskError"
    assert first.superseded_by is None  # permanent errors are never retried automatically
    second_id = manager.retry(first.id)
    second = wait_final(qtbot, manager, second_id)
    assert second.status is JobStatus.COMPLETED
    assert (second.attempt, second.retry_of, second.root_id) == (2, first.id, first.id)
    assert second.trigger == Trigger.retry(first.id, automatic=False)
    old = manager.store.get(first.id)
    assert old.status is JobStatus.FAILED and old.error.message == first.error.message
    assert old.superseded_by == second_id
    assert [j.id for j in manager.store.chain(second_id)] == [first.id, second_id]
    with pytest.raises(JobStateError, match="already retried"):
        manager.retry(first.id)
    with pytest.raises(JobStateError, match="only failed, cancelled or interrupted"):
        manager.retry(second_id)


def test_transient_errors_retry_automatically_with_backoff(make_manager, qtbot) -> None:
    manager = make_manager()
    first_id = manager.submit("fail", {"transient": True, "succeed_on_attempt": 3})
    chain = wait_until(qtbot, lambda: (c := manager.store.chain(first_id))[-1].status
                       is JobStatus.COMPLETED and c, message="the third attempt")
    assert [j.status for j in chain] == [JobStatus.FAILED, JobStatus.FAILED, JobStatus.COMPLETED]
    assert [j.attempt for j in chain] == [1, 2, 3]
    assert all(j.trigger.type == "retry" and j.trigger.automatic for j in chain[1:])
    assert chain[0].error.transient
    # each automatic retry waited (backoff 0.2 s, 0.4 s with +/-25 % jitter)
    assert chain[1].started_at - chain[0].finished_at >= 0.14
    assert chain[2].started_at - chain[1].finished_at >= 0.29


def test_transient_retries_stop_at_the_kinds_limit(make_manager, qtbot) -> None:
    manager = make_manager()
    first_id = manager.submit("fail", {"transient": True})
    chain = wait_until(qtbot, lambda: len(c := manager.store.chain(first_id)) == 3
                       and c[-1].status is JobStatus.FAILED and c)
    qtbot.wait(800)  # longer than any further backoff would be
    assert len(manager.store.chain(first_id)) == 3
    assert chain[-1].superseded_by is None


def test_delayed_retry_shows_as_queued_with_retry_time(make_manager, qtbot, db) -> None:
    manager = make_manager()
    store = JobStore(db)
    job_id = store.insert("noop", "No-op", {}, Trigger("api"), not_before=time.time() + 1.0)
    manager.schedule_dispatch()
    qtbot.wait(300)
    job = store.get(job_id)
    assert job.status is JobStatus.QUEUED and job.to_json()["retry_at"] is not None
    assert wait_final(qtbot, manager, job_id).status is JobStatus.COMPLETED


def test_cancel_queued_and_running_jobs(make_manager, qtbot) -> None:
    manager = make_manager(workers=1)
    running = manager.submit("sleep", {"seconds": 30})
    queued = manager.submit("sleep", {"seconds": 30})
    # wait until the body runs (it reports progress), not only until it is claimed
    wait_until(qtbot, lambda: (manager.job(running).progress or 0) > 0)
    assert manager.cancel(queued) == "cancelled"
    assert manager.store.get(queued).status is JobStatus.CANCELLED
    started = time.monotonic()
    assert manager.cancel(running) == "stopping"
    job = wait_final(qtbot, manager, running)
    assert job.status is JobStatus.CANCELLED and job.message == "Cancelled"
    assert time.monotonic() - started < 1.0  # cooperative: the body checks every 50 ms
    with pytest.raises(JobStateError, match="already cancelled"):
        manager.cancel(running)
    # the worker was reused, not killed
    assert manager.pool.replaced == 0


def test_a_job_that_ignores_cancel_is_killed_after_the_grace_period(make_manager, qtbot,
                                                                    data_dir) -> None:
    manager = make_manager(workers=1, grace_s=0.5)
    job_id = manager.submit("sleep", {"seconds": 60, "ignore_cancel": True})
    wait_until(qtbot, lambda: (manager.job(job_id).progress or 0) > 0)
    pids_before = set(manager.pool.pids())
    manager.cancel(job_id)
    job = wait_final(qtbot, manager, job_id, timeout=10)
    assert job.status is JobStatus.CANCELLED
    assert "did not stop within 0.5 s" in job.message
    wait_until(qtbot, lambda: manager.pool.replaced == 1 and manager.pool.pids()
               and set(manager.pool.pids()).isdisjoint(pids_before), message="a new worker")
    # the replacement runs the next job
    assert wait_final(qtbot, manager, manager.submit("noop")).status is JobStatus.COMPLETED


def test_each_kind_has_a_timeout(make_manager, qtbot) -> None:
    manager = make_manager(timeouts={"sleep": 0.3}, grace_s=5.0)
    # progress every 50 ms, a cancellation check only every 0.5 s: the stop asked for at
    # the time limit must stay asked for until the body looks
    job = wait_final(qtbot, manager, manager.submit("sleep", {"seconds": 20,
                                                               "check_every": 10}))
    assert job.status is JobStatus.FAILED
    assert job.error.type == "TimeoutError"
    assert "time limit of 0.3 s and was stopped" in job.error.message  # cooperatively
    assert job.finished_at - job.started_at < 3
    assert manager.pool.replaced == 0  # the worker was not killed


def test_a_job_that_ignores_its_timeout_is_killed(make_manager, qtbot) -> None:
    manager = make_manager(workers=1, timeouts={"sleep": 0.3}, grace_s=0.5)
    job_id = manager.submit("sleep", {"seconds": 60, "ignore_cancel": True})
    job = wait_final(qtbot, manager, job_id, timeout=15)
    assert job.status is JobStatus.FAILED and job.error.type == "TimeoutError"
    assert "its worker process was killed" in job.error.message
    assert job.finished_at - job.started_at < 5
    wait_until(qtbot, lambda: manager.pool.replaced == 1, message="a replacement worker")
    assert wait_final(qtbot, manager, manager.submit("noop")).status is JobStatus.COMPLETED


@pytest.mark.parametrize("how,needle", [("sigkill", "SIGKILL"), ("segv", "SIGSEGV"),
                                        ("exit", "exited with code 3")])
def test_a_crashing_job_fails_alone(make_manager, qtbot, how, needle) -> None:
    manager = make_manager(workers=2)
    slow = manager.submit("sleep", {"seconds": 1.0})
    crash = manager.submit("crash", {"how": how, "after": 0.2})
    job = wait_final(qtbot, manager, crash)
    assert job.status is JobStatus.FAILED and job.error.type == "WorkerCrashed"
    assert needle in job.error.message and "retry the job" in job.error.message
    assert wait_final(qtbot, manager, slow).status is JobStatus.COMPLETED
    assert wait_final(qtbot, manager, manager.submit("noop")).status is JobStatus.COMPLETED


def test_per_kind_concurrency_limit(make_manager, qtbot) -> None:
    manager = make_manager(workers=2, concurrency={"sleep": 1})
    sleeps = [manager.submit("sleep", {"seconds": 0.3}) for _ in range(3)]
    noop = manager.submit("noop")
    jobs = [wait_final(qtbot, manager, i) for i in sleeps]
    spans = sorted((j.started_at, j.finished_at) for j in jobs)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 0.01  # never two sleeps at once
    # the other kind did not wait behind the limited one
    assert manager.store.get(noop).finished_at < spans[-1][0]


def test_claim_is_atomic_across_threads(db) -> None:
    store_a, store_b = JobStore(db), JobStore(db)
    store_a.insert_many([("noop", "No-op", {}, Trigger("api"))] * 300)
    got: dict[str, list[int]] = {"a": [], "b": []}

    def claim(name: str, store: JobStore) -> None:
        while True:
            jobs = store.claim_next(3, f"engine-{name}", 15)
            if not jobs:
                return
            got[name].extend(j.id for j in jobs)

    threads = [threading.Thread(target=claim, args=(n, s))
               for n, s in (("a", store_a), ("b", store_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got["a"]) + len(got["b"]) == 300
    assert set(got["a"]).isdisjoint(got["b"])
    store_a.close()
    store_b.close()


def test_unknown_kind_in_the_queue_fails_clearly(make_manager, qtbot, db) -> None:
    manager = make_manager()
    job_id = JobStore(db).insert("teleport", "From the future", {}, Trigger("api"))
    manager.schedule_dispatch()
    job = wait_final(qtbot, manager, job_id)
    assert job.status is JobStatus.FAILED and job.error.type == "UnknownKind"
    assert "no job kind 'teleport'" in job.error.message


def test_heartbeat_renews_the_lease_of_running_jobs(make_manager, qtbot) -> None:
    manager = make_manager(lease_s=1.0, heartbeat_s=0.2)
    job_id = manager.submit("sleep", {"seconds": 2})
    first = wait_until(qtbot, lambda: (j := manager.store.get(job_id)).lease_until and j)
    assert first.engine_id == manager.engine_id
    qtbot.wait(600)
    later = manager.store.get(job_id)
    assert later.lease_until > first.lease_until
    assert wait_final(qtbot, manager, job_id).status is JobStatus.COMPLETED


def test_crash_recovery_marks_orphans_interrupted_and_reruns_safe_kinds(qapp, db, data_dir,
                                                                        make_manager, qtbot):
    store = JobStore(db)
    safe = store.insert("sleep", "Sleep", {"seconds": 0.1, "checkpoints": True}, Trigger("api"))
    unsafe = store.insert("write", "Write", {"name": "x.bin"}, Trigger("api"))
    dead_engine = "ghost-host:999999:app:abc"
    store.claim([safe, unsafe], dead_engine, lease_s=-1)  # lease already expired
    (data_dir.outputs / f".x.bin.part-{unsafe}").write_bytes(b"half")
    # the dead run had saved a checkpoint half-way
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET checkpoint = '{\"step\": 1}' WHERE id = ?",
                             (safe,))
    manager = make_manager()
    assert store.get(unsafe).status is JobStatus.INTERRUPTED
    assert "did not finish" in store.get(unsafe).error.message
    assert not (data_dir.outputs / f".x.bin.part-{unsafe}").exists()
    rerun = store.get(safe).superseded_by
    assert rerun is not None and store.get(unsafe).superseded_by is None
    job = wait_final(qtbot, manager, rerun)
    assert job.status is JobStatus.COMPLETED
    assert job.trigger.type == "recovery"
    assert job.result["resumed_from_step"] == 1  # resumed from the checkpoint


def test_same_host_dead_pid_is_recovered_without_waiting_for_the_lease(db, make_manager) -> None:
    import socket

    store = JobStore(db)
    job_id = store.insert("noop", "No-op", {}, Trigger("api"))
    store.claim([job_id], f"{socket.gethostname()}:999999:app:abc", lease_s=3600)
    make_manager()
    job = store.get(job_id)
    assert job.status is JobStatus.INTERRUPTED
    assert "pid 999999" in job.error.message


def test_a_transient_error_waits_at_least_its_retry_after(make_manager, qtbot) -> None:
    """A task that says "not before S seconds" (a server's Retry-After) is retried no
    sooner, even though the kind's own back-off is 0.2 s."""
    manager = make_manager()
    first_id = manager.submit("fail", {"transient": True, "retry_after": 1.5,
                                       "succeed_on_attempt": 2})
    chain = wait_until(qtbot, lambda: (c := manager.store.chain(first_id))[-1].status
                       is JobStatus.COMPLETED and c, message="the second attempt")
    first, second = chain
    assert second.created_at - first.finished_at < 1.0  # queued at once...
    assert second.started_at - first.finished_at >= 1.5  # ...run after Retry-After


def test_a_live_engine_of_this_machine_keeps_its_jobs_when_its_lease_runs_out(
        db, make_manager) -> None:
    """A suspended or busy engine renews its lease late; while its process lives, its
    jobs are its own (declaring them interrupted would run them twice)."""
    import socket
    import subprocess
    import sys

    store = JobStore(db)
    host = socket.gethostname()
    alive_engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        job_id = store.insert("sleep", "Sleep", {"seconds": 1}, Trigger("api"))
        store.claim([job_id], f"{host}:{alive_engine.pid}:worker:abc", lease_s=-1)
        manager = make_manager()  # recovery runs at start
        assert store.get(job_id).status is JobStatus.RUNNING  # lease expired, owner alive
        assert manager.store.recover(manager.engine_id) == []
    finally:
        alive_engine.kill()
        alive_engine.wait()
    (recovered,) = manager.store.recover(manager.engine_id)  # now its process is gone
    assert recovered.id == job_id and recovered.status is JobStatus.INTERRUPTED
    assert f"pid {alive_engine.pid}" in recovered.error.message
    assert "It was queued again" in recovered.error.message  # sleep is safe to re-run


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc (Linux)")
def test_a_reused_pid_does_not_keep_a_dead_engines_jobs(db) -> None:
    """The dead engine's pid now belongs to a process that started after the job did:
    that is not the engine, so the job is recovered."""
    import socket
    import subprocess
    import sys

    store = JobStore(db)
    job_id = store.insert("noop", "No-op", {}, Trigger("api"))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store.claim([job_id], f"{socket.gethostname()}:{other.pid}:app:abc", lease_s=3600)
        with db.begin() as conn:  # the job started long before that process
            conn.exec_driver_sql("UPDATE jobs SET started_at = started_at - 600 WHERE id = ?",
                                 (job_id,))
        (recovered,) = store.recover("someone-else")
        assert recovered.id == job_id and "no longer running" in recovered.error.message
    finally:
        other.kill()
        other.wait()


def test_an_engine_stops_a_job_that_another_engine_took_over(make_manager, qtbot) -> None:
    """If another engine declared a job of ours interrupted (and may re-run it), we
    stop running it instead of finishing it twice."""
    manager = make_manager(heartbeat_s=0.1)
    job_id = manager.submit("sleep", {"seconds": 30})
    wait_until(qtbot, lambda: (manager.job(job_id).progress or 0) > 0)
    with manager.store.engine.begin() as conn:  # what recovery elsewhere would write
        conn.exec_driver_sql("UPDATE jobs SET status = 'interrupted', engine_id = NULL "
                             "WHERE id = ?", (job_id,))
    wait_until(qtbot, lambda: not manager.running_ids(), timeout=10,
               message="the job to stop here")
    job = manager.store.get(job_id)
    assert job.status is JobStatus.INTERRUPTED  # our outcome did not overwrite theirs
    assert job.progress < 0.5


def test_per_kind_limits_hold_across_engines(make_manager, qtbot, db) -> None:
    """Two engines on one database: a kind limited to one job at a time runs one at a
    time in all of them together."""
    first = make_manager(workers=2, concurrency={"sleep": 1})
    make_manager(workers=2, concurrency={"sleep": 1})  # a second engine, same database
    ids = [first.submit("sleep", {"seconds": 0.4}) for _ in range(4)]
    jobs = [wait_final(qtbot, first, i) for i in ids]
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    spans = sorted((j.started_at, j.finished_at) for j in jobs)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 0.05, f"two sleeps overlapped: {spans}"


def test_retry_many_retries_each_chain_once_in_one_go(make_manager, qtbot) -> None:
    manager = make_manager()
    failed = [wait_final(qtbot, manager, manager.submit("fail", {"succeed_on_attempt": 2}))
              for _ in range(3)]
    ok = wait_final(qtbot, manager, manager.submit("noop"))
    added: list[int] = []
    manager.jobAdded.connect(added.append)
    # an id twice, a completed job: each failed chain is retried once, the rest skipped
    new_ids = manager.retry_many([failed[0].id, failed[0].id, failed[1].id, failed[2].id,
                                  ok.id])
    assert len(new_ids) == 3 and added == new_ids
    for old, new_id in zip(failed, new_ids, strict=True):
        new = wait_final(qtbot, manager, new_id)
        assert new.status is JobStatus.COMPLETED
        assert (new.retry_of, new.attempt) == (old.id, 2)
        assert manager.store.get(old.id).superseded_by == new_id
    assert manager.retry_many([failed[0].id]) == []  # its latest attempt completed


def test_snapshot_serves_finished_jobs_from_memory(make_manager, qtbot, data_dir) -> None:
    manager = make_manager()
    job_id = manager.submit("write", {"name": "s.bin", "size": 10})
    assert manager.snapshot(job_id).status is JobStatus.QUEUED
    finished: list[Any] = []
    manager.jobFinished.connect(lambda i, s: finished.append(manager.snapshot(i)))
    wait_until(qtbot, lambda: finished)
    snap = finished[0]
    assert snap.status is JobStatus.COMPLETED and snap.kind == "write"
    assert snap.output_path == str(data_dir.outputs / "s.bin")
    assert manager.snapshot(999999) is None


def test_removing_a_job_removes_its_whole_chain(make_manager, qtbot) -> None:
    manager = make_manager()
    first = wait_final(qtbot, manager, manager.submit("fail", {}))
    second = wait_final(qtbot, manager, manager.retry(first.id))
    keep = wait_final(qtbot, manager, manager.submit("noop"))
    running = manager.submit("sleep", {"seconds": 30})
    wait_until(qtbot, lambda: manager.store.get(running).status is JobStatus.RUNNING)
    store = manager.store
    store.add_logs([(first.id, time.time(), "old attempt's line")])
    assert store.delete([second.id, running]) == 1  # the running job is kept
    for gone in (first.id, second.id):
        with pytest.raises(LookupError):
            store.get(gone)
    assert store.logs(first.id) == []
    assert store.get(keep.id).status is JobStatus.COMPLETED
    assert store.get(running).status is JobStatus.RUNNING


def test_the_worker_pool_recovers_once_workers_can_start_again() -> None:
    """Workers that cannot start fail jobs fast with the reason; once the cause is gone
    (here: the interpreter path), the pool starts workers again by itself."""
    import multiprocessing
    import sys

    from swifty_desktop.jobs.pool import WorkerPool, WorkerStartError

    multiprocessing.set_executable("/bin/false")  # every spawned worker exits at once
    pool = WorkerPool(1)
    try:
        pool.start()
        deadline = time.monotonic() + 30
        reason = ""
        while time.monotonic() < deadline and "fail to start" not in reason:
            try:
                pool.acquire(timeout=2)
            except WorkerStartError as exc:
                reason = str(exc)
        assert "fail to start" in reason and "exited while starting" in reason, reason
        multiprocessing.set_executable(sys.executable)
        deadline = time.monotonic() + 40
        handle = None
        while handle is None and time.monotonic() < deadline:
            try:
                handle = pool.acquire(timeout=2)
            except WorkerStartError:
                time.sleep(0.5)
        assert handle is not None and handle.alive(), "the pool did not recover"
        pool.release(handle)
    finally:
        multiprocessing.set_executable(sys.executable)
        pool.shutdown()


def test_a_relative_output_name_keeps_its_folders_inside_outputs(make_manager, qtbot,
                                                                 data_dir) -> None:
    manager = make_manager()
    nested = wait_final(qtbot, manager, manager.submit("write", {"name": "q4/shop/x.bin",
                                                                  "size": 10}))
    assert nested.output_path == str(data_dir.outputs / "q4" / "shop" / "x.bin")
    escaping = wait_final(qtbot, manager, manager.submit("write", {"name": "../../x.bin",
                                                                    "size": 10}))
    assert escaping.output_path == str(data_dir.outputs / "x.bin")  # never above outputs/


def test_outputs_are_all_promoted_or_none(tmp_path) -> None:
    """If moving the second output into place fails, the first goes back too."""
    from swifty_desktop.jobs.worker import WorkerContext, _promote

    class Pipe:
        def send(self, _msg: Any) -> None:
            pass

    ctx = WorkerContext(Pipe(), type("Flag", (), {"value": 0})(),  # type: ignore[arg-type]
                        {"id": 7, "kind": "write", "data_dir": str(tmp_path), "db_url": ""})
    first = ctx.output_path("a.txt")
    first.write_text("a")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    second = ctx.output_path(str(blocked / "b.txt"))
    second.write_text("b")
    (blocked / "b.txt").mkdir()  # a directory where the file must go: the rename fails
    with pytest.raises(OSError):
        _promote(ctx, {})
    assert not (tmp_path / "outputs" / "a.txt").exists()
    assert first.exists()  # back under its temporary name, for the cleanup to remove


def test_a_checkpoint_is_refused_once_the_job_is_no_longer_ours(make_manager, qtbot) -> None:
    """Checkpoints are fenced by the engine that runs the job: a body whose job was
    taken over cannot save (nor, with it, apply) work."""
    manager = make_manager(heartbeat_s=30)  # the heartbeat must not stop it first
    job_id = manager.submit("sleep", {"seconds": 30, "checkpoints": True})
    wait_until(qtbot, lambda: (manager.store.get(job_id).checkpoint or {}).get("step", 0) >= 2)
    with manager.store.engine.begin() as conn:  # another engine's recovery took it
        conn.exec_driver_sql("UPDATE jobs SET engine_id = 'elsewhere:1:app:x' WHERE id = ?",
                             (job_id,))
    step = manager.store.get(job_id).checkpoint["step"]
    wait_until(qtbot, lambda: not manager.running_ids(), timeout=10,
               message="the body to stop at its next checkpoint")
    job = manager.store.get(job_id)
    assert job.checkpoint["step"] == step and job.engine_id == "elsewhere:1:app:x"
    assert job.status is JobStatus.RUNNING  # our outcome did not overwrite the new owner's


def test_the_text_search_ignores_case_and_takes_wildcards_literally(db) -> None:
    from swifty_desktop.jobs.store import JobQuery

    store = JobStore(db)
    a = store.insert("noop", "Export Products to Excel", {}, Trigger("api"))
    b = store.insert("noop", "Report 50% done", {}, Trigger("api"))
    c = store.insert("noop", "Report 50 x done", {"note": "under_score"}, Trigger("api"))

    def found(text: str) -> list[int]:
        return sorted(j.id for j in store.list(JobQuery(text=text, include_diagnostic=True)))

    assert found("export products") == [a]
    assert found("EXPORT") == [a]
    assert found("50%") == [b]  # not "50 anything"
    assert found("50_x") == []  # "_" is not a wildcard (it would match "50 x")
    assert found("under_score") == [c]  # parameters are searched too
    assert found("nothing like it") == []


def test_a_job_that_runs_out_of_memory_fails_alone_and_says_so(make_manager, qtbot) -> None:
    manager = make_manager(workers=1)
    job = wait_final(qtbot, manager, manager.submit("crash", {"how": "memory"}))
    assert job.status is JobStatus.FAILED
    assert job.error.type == "MemoryError" and job.error.message == "the job ran out of memory"
    assert wait_final(qtbot, manager, manager.submit("noop")).status is JobStatus.COMPLETED


def test_workers_run_at_a_lower_priority_and_default_to_one_per_cpu(make_manager,
                                                                    qtbot) -> None:
    manager = make_manager(workers=None)
    assert manager.max_workers == (os.cpu_count() or 1)
    job = wait_final(qtbot, manager, manager.submit("noop"))
    worker_nice = os.getpriority(os.PRIO_PROCESS, job.result["pid"])
    assert worker_nice >= os.getpriority(os.PRIO_PROCESS, 0) + 10 or worker_nice == 19


def test_a_job_killed_mid_write_leaves_no_file_behind(make_manager, qtbot, data_dir) -> None:
    """Cancelled, it does not stop in time (it checks once a second) and is killed:
    the half-written temporary file goes with it."""
    manager = make_manager(workers=1, grace_s=0.2)
    job_id = manager.submit("write", {"name": "big.bin", "size": 2_000_000, "seconds": 20})
    wait_until(qtbot, lambda: any(data_dir.outputs.glob(".big.bin.part-*")),
               message="the temporary file")
    wait_until(qtbot, lambda: (manager.job(job_id).progress or 0) > 0)
    manager.cancel(job_id)
    job = wait_final(qtbot, manager, job_id, timeout=15)
    assert job.status is JobStatus.CANCELLED and "did not stop within 0.2 s" in job.message
    assert list(data_dir.outputs.iterdir()) == []
