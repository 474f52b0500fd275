"""``swifty-desktop restore FILE``: a backup put back, checked first, the old one kept."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from conftest import wait_final
from helpers import run_cli, run_json

from swifty_desktop.db.backup import copy_database
from swifty_desktop.jobs.model import JobStatus


def count(db: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def seeded_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A data directory with the small sample data, and a backup of it made by the job."""
    data = tmp_path / "shop"
    assert run_cli(data, "demo", "seed", "--size", "small").returncode == 0
    job = run_json(data, "jobs", "submit", "backup", "--wait", "--json")
    assert job["status"] == "completed", job
    return data, Path(job["output_path"])


def test_a_backup_is_restored_and_the_database_it_replaced_is_kept(tmp_path: Path) -> None:
    data, backup = seeded_dir(tmp_path)
    db = data / "swifty.db"
    with sqlite3.connect(db) as conn:  # a mistake made after the backup
        conn.execute("DELETE FROM order_lines")
        conn.execute("DELETE FROM orders")
    conn.close()
    assert count(db, "orders") == 0
    result = run_json(data, "restore", str(backup), "--json")
    assert count(db, "orders") == 600 == result["counts"]["orders"]
    kept = Path(result["kept"])
    assert kept.parent == data / "outputs" / "backups" and kept.name.startswith(
        "swifty-before-restore_")
    assert count(kept, "orders") == 0  # the state it replaced, to undo the restore
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    jobs = run_json(data, "jobs", "list", "--json")  # the app's own commands work on it
    assert [j["status"] for j in jobs if j["kind"] == "backup"] == ["completed"]
    # and undoing is the same command with the kept file
    undo = run_cli(data, "restore", str(kept))
    assert undo.returncode == 0, undo.stderr
    assert undo.stdout.startswith(f"Restored {kept} into {db}: ")
    assert count(db, "orders") == 0


def test_restore_refuses_while_an_engine_uses_the_data_directory(make_manager, db, data_dir,
                                                                 qtbot, tmp_path) -> None:
    manager = make_manager()  # an engine of this (live) process is registered
    job = wait_final(qtbot, manager, manager.submit("backup", {}))
    assert job.status is JobStatus.COMPLETED, job.error
    before = data_dir.db_path.stat().st_mtime_ns
    proc = run_cli(data_dir.root, "restore", job.output_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"swifty-desktop: error: the data directory {data_dir.root} "
                                  "is in use by ")
    assert "close the app and stop any `swifty-desktop worker` on it" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert data_dir.db_path.stat().st_mtime_ns == before
    assert [p.name for p in (data_dir.outputs / "backups").iterdir()] == \
        [Path(job.output_path).name]  # nothing else was written


def test_restore_refuses_what_is_not_a_usable_backup(tmp_path: Path) -> None:
    data, backup = seeded_dir(tmp_path)
    not_db = tmp_path / "products.csv"
    not_db.write_text("sku,name\nA-1,Widget\n", encoding="utf-8")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (t TEXT)").connection.close()
    newer = tmp_path / "newer.db"
    shutil.copyfile(backup, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    conn.close()
    cases: dict[str, Any] = {
        str(tmp_path / "missing.db"): "does not exist",
        str(not_db): "is not an SQLite database",
        str(other): "not one of Swifty Desktop",
        str(newer): "was written by a newer version of Swifty Desktop (schema '9999_future'",
        str(data / "swifty.db"): "is this data directory's own database",
    }
    before = count(data / "swifty.db", "orders")
    for path, reason in cases.items():
        proc = run_cli(data, "restore", path)
        assert proc.returncode == 2, (path, proc.stdout)
        assert reason in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert count(data / "swifty.db", "orders") == before
    assert sorted(p.name for p in (data / "outputs" / "backups").iterdir()) == [backup.name]


def test_a_copy_of_an_empty_data_directory_restores_into_a_new_one(tmp_path: Path) -> None:
    data, backup = seeded_dir(tmp_path)
    fresh = tmp_path / "fresh"
    proc = run_cli(fresh, "restore", str(backup), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["kept"] is None and count(fresh / "swifty.db", "customers") == 120
    again = tmp_path / "again.db"
    info = copy_database(fresh / "swifty.db", again)
    assert info.counts["customers"] == 120 and info.revision is not None


def test_the_restore_waits_for_the_app_that_handed_it_over(tmp_path: Path) -> None:
    import subprocess
    import sys
    import threading
    import time

    data, backup = seeded_dir(tmp_path)
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    reaper = threading.Thread(target=app.wait)  # an exited child is gone only once reaped
    reaper.start()
    started = time.monotonic()
    proc = run_cli(data, "restore", str(backup), "--wait-for-exit", str(app.pid))
    waited = time.monotonic() - started
    reaper.join()
    assert proc.returncode == 0, proc.stderr
    assert app.returncode == 0 and waited >= 1.0  # it did not restore under the app


def _log(data: Path) -> str:
    return (data / "logs" / "swifty.log").read_text(encoding="utf-8")


def test_then_start_opens_the_app_and_says_how_the_restore_went(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from helpers import cli_env

    data, backup = seeded_dir(tmp_path)
    env = {**cli_env(), "SWIFTY_STARTUP_PROBE": "1"}  # the app quits after its first paint

    def restore_and_start(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "swifty_desktop", "--data-dir", str(data),
                               "restore", str(path), "--then-start"], env=env,
                              capture_output=True, text=True, timeout=120, cwd=os.getcwd())

    done = restore_and_start(backup)
    assert done.returncode == 0, done.stderr
    assert "WINDOW_SHOWN" in done.stdout  # the app opened after the restore
    assert f"notice: Backup restored: {backup.name} is the database now: " in \
        _log(data)
    bad = tmp_path / "notes.txt"
    bad.write_text("not a database", encoding="utf-8")
    refused = restore_and_start(bad)
    assert refused.returncode == 0 and "WINDOW_SHOWN" in refused.stdout  # opens anyway
    assert ("notice: The backup was not restored: Cannot restore: "
            f"{bad} is not an SQLite database") in _log(data)


def test_a_running_engine_holds_the_data_directory_even_without_its_engine_row(
        make_manager, db, data_dir, qtbot) -> None:
    """The engines table can be read before an app registers; the lock cannot be missed."""
    manager = make_manager()
    job = wait_final(qtbot, manager, manager.submit("backup", {}))
    with sqlite3.connect(data_dir.db_path) as conn:
        conn.execute("DELETE FROM engines")  # as if the app had not registered yet
    conn.close()
    proc = run_cli(data_dir.root, "restore", job.output_path)
    assert proc.returncode == 2
    assert "an engine (the app, a `swifty-desktop worker` or a command waiting for a job) " \
        f"is running on {data_dir.root}" in proc.stderr
    manager.stop()  # the engine's hold goes with it
    done = run_cli(data_dir.root, "restore", job.output_path)
    assert done.returncode == 0, done.stderr


def test_an_engine_starting_during_a_restore_waits_for_it(data_dir, tmp_path) -> None:
    import time

    from swifty_desktop.jobs.inuse import EngineUse, InUse, exclusive_use

    engine = EngineUse(data_dir.root)
    with exclusive_use(data_dir.root):  # a restore at work
        started = time.monotonic()
        assert engine.acquire(timeout=0.3) is False  # it waited, and got nothing
        assert time.monotonic() - started >= 0.3
    assert engine.acquire(timeout=0.3) is True  # the restore is done: it starts
    try:
        with exclusive_use(data_dir.root):
            raise AssertionError("a restore must not get the directory from a running engine")
    except InUse:
        pass
    finally:
        engine.release()
    with exclusive_use(data_dir.root):
        pass  # released: free again
