"""Backing up the database while the app works: a whole, consistent, single-file copy."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_final
from helpers import run_json

from swifty_desktop.db.backup import copy_database
from swifty_desktop.demo.seed import seed
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.tasks import get_kind
from swifty_desktop.tasks.backup import sqlite_path
from swifty_desktop.tasks.base import TaskError


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_backup_job_writes_a_checked_single_file_copy(make_manager, db, data_dir,
                                                        qtbot) -> None:
    seed(db, "small")
    manager = make_manager()
    job_id = manager.submit("backup", {}, Trigger.user("Back up database"))
    job = wait_final(qtbot, manager, job_id)
    assert job.status is JobStatus.COMPLETED, job.error
    copy = Path(job.output_path)
    assert copy.parent == data_dir.root / "outputs" / "backups"
    assert copy.name.startswith("swifty-backup_") and copy.suffix == ".db"
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no temp, -wal or journal
    assert query(copy, "PRAGMA quick_check") == [("ok",)]
    assert query(copy, "PRAGMA journal_mode") == [("delete",)]
    live = {t: query(data_dir.db_path, f"SELECT count(*) FROM {t}")[0][0]
            for t in ("products", "customers", "orders")}
    assert job.result["counts"] == {**job.result["counts"], **live} and live["orders"] == 600
    for table, n in live.items():
        assert query(copy, f"SELECT count(*) FROM {table}") == [(n,)]
    # in the copy this very job reads as done and no engine is registered, so a
    # restored copy starts clean instead of "recovering" the backup job
    assert query(copy, f"SELECT status FROM jobs WHERE id = {job_id}") == [("completed",)]
    (stored,) = query(copy, f"SELECT result FROM jobs WHERE id = {job_id}")[0]
    in_copy = json.loads(stored)  # so a restored registry says what this backup held
    assert in_copy["counts"]["orders"] == 600 and in_copy["bytes"] == copy.stat().st_size
    assert query(copy, "SELECT count(*) FROM engines") == [(0,)]
    spec = get_kind("backup")
    assert spec.outcome_text(job.result).endswith(
        "MB: 200 products, 120 customers, 600 orders, 1 job")


def test_a_backup_keeps_the_newest_copies_and_nothing_it_did_not_make(make_manager, db,
                                                                       data_dir, qtbot) -> None:
    folder = data_dir.root / "outputs" / "backups"
    folder.mkdir(parents=True)
    old = [folder / f"swifty-backup_2026-11-{day:02d}_030000.db" for day in range(1, 13)]
    for path in old:
        path.write_bytes(b"an old copy")
    mine = folder / "before-the-migration.db"  # the user's own file, kept whatever happens
    mine.write_bytes(b"keep me")
    manager = make_manager()
    job = wait_final(qtbot, manager, manager.submit("backup", {"keep": 3}))
    assert job.status is JobStatus.COMPLETED, job.error
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted([mine.name, old[-1].name, old[-2].name, Path(job.output_path).name])
    assert job.result["removed"] == 10
    assert get_kind("backup").outcome_text(job.result).endswith("; 10 older backups deleted")
    again = wait_final(qtbot, manager, manager.submit("backup", {"keep": 0}))  # 0: keep all
    assert again.result["removed"] == 0 and len(list(folder.iterdir())) == 5


def test_the_notification_of_a_backup_shows_its_folder(make_manager, db, data_dir, qtbot,
                                                       url_catcher) -> None:
    """A database copy is nothing a desktop program opens usefully: the click shows the
    folder that holds it."""
    from PySide6.QtWidgets import QSystemTrayIcon

    from swifty_desktop.gui.notifier import Notifier, TrayStrategy

    manager = make_manager()
    strategy = TrayStrategy(QSystemTrayIcon())
    notifier = Notifier(manager, strategy)
    job = wait_final(qtbot, manager, manager.submit("backup", {}))
    qtbot.waitUntil(lambda: strategy.last is not None, timeout=10_000)
    note = strategy.last
    name = Path(job.output_path).name
    assert note.title == "Back up the database finished"
    assert note.text.endswith(f"{name} is in the backups folder. Click to show it.")
    strategy.tray.messageClicked.emit()
    assert [Path(u.toLocalFile()) for u in url_catcher.urls] == [data_dir.root / "outputs" /
                                                                  "backups"]
    del notifier


def test_the_copy_holds_whole_transactions_while_another_process_writes(data_dir, db,
                                                                        tmp_path) -> None:
    """Writers go on during the copy; the copy has each of their transactions whole or not at
    all (rows go in pairs, so an odd count would be half a transaction)."""
    source = data_dir.db_path
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE pairs (n INTEGER)")
        conn.executemany("INSERT INTO pairs VALUES (?)", [(i,) for i in range(200_000)])
    stop = threading.Event()
    written = [0]

    def write() -> None:
        conn = sqlite3.connect(source, timeout=30)
        try:
            while not stop.is_set():
                with conn:
                    conn.execute("INSERT INTO pairs VALUES (1)")
                    conn.execute("INSERT INTO pairs VALUES (2)")
                written[0] += 1
        finally:
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    copies = []
    try:
        for i in range(5):
            target = tmp_path / f"copy{i}.db"
            copy_database(source, target)
            copies.append(target)
    finally:
        stop.set()
        writer.join()
    assert written[0] > 0  # the writer did get its transactions in meanwhile
    counts = [query(c, "SELECT count(*) FROM pairs")[0][0] for c in copies]
    assert all(n % 2 == 0 for n in counts), counts
    assert counts == sorted(counts) and counts[-1] <= 200_000 + 2 * written[0]


def test_a_restored_copy_opens_as_a_data_directory(make_manager, db, data_dir, qtbot,
                                                   tmp_path) -> None:
    seed(db, "small")
    manager = make_manager()
    job = wait_final(qtbot, manager, manager.submit("backup", {"path": "mine.db"}))
    assert job.status is JobStatus.COMPLETED, job.error
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copyfile(job.output_path, restored / "swifty.db")  # the app of `restored` is closed
    jobs = run_json(restored, "jobs", "list", "--json")
    mine = next(j for j in jobs if j["id"] == job.id)
    assert mine["status"] == "completed" and mine["kind"] == "backup"
    assert query(restored / "swifty.db", "SELECT count(*) FROM customers") == [(120,)]


def test_only_a_sqlite_file_can_be_backed_up_this_way() -> None:
    assert sqlite_path("sqlite:////srv/shop/swifty.db") == Path("/srv/shop/swifty.db")
    with pytest.raises(TaskError, match="uses postgresql. Use that database's own backup"):
        sqlite_path("postgresql://shop@db/swifty")
    with pytest.raises(TaskError, match="in memory only: there is no file"):
        sqlite_path("sqlite://")  # in memory: no file to copy
