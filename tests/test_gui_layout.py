"""What the window remembers and lets go of: column widths, passing news."""

from __future__ import annotations

from typing import Any

from conftest import wait_until

import swifty_desktop.gui.schedules_view as schedules_view
from swifty_desktop.gui.main_window import MainWindow
from swifty_desktop.gui.registry_model import COL_JOB, COL_RESULT, COL_TRIGGER
from swifty_desktop.scheduling.service import SchedulerService
from swifty_desktop.scheduling.store import ScheduleStore


def test_registry_and_schedules_columns_come_back_as_the_user_left_them(
        qtbot: Any, make_manager: Any, data_dir: Any, db: Any) -> None:
    manager = make_manager(workers=1)
    service = SchedulerService(ScheduleStore(db), manager, mode="manual")
    service.start()
    try:
        first = MainWindow(manager, data_dir)
        first.resize(1280, 800)
        first.attach_scheduler(service)
        first.show()
        jobs = first.registry.jobsView
        assert jobs.columnWidth(COL_JOB) == 260  # the defaults leave room for the result
        assert jobs.columnWidth(COL_RESULT) >= 280
        jobs.setColumnWidth(COL_TRIGGER, 333)
        first.schedules_view.table.setColumnWidth(0, 222)
        first.save_layout()
        first.really_quit = True
        first.close()

        second = MainWindow(manager, data_dir)
        second.attach_scheduler(service)
        second.show()
        assert second.registry.jobsView.columnWidth(COL_TRIGGER) == 333
        assert second.schedules_view.table.columnWidth(0) == 222
        second.really_quit = True
        second.close()
    finally:
        service.shutdown()


def test_news_under_the_schedules_goes_and_an_error_stays(qtbot: Any, make_manager: Any,
                                                          db: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(schedules_view, "MESSAGE_MS", 50)
    manager = make_manager(workers=1)
    service = SchedulerService(ScheduleStore(db), manager, mode="manual")
    service.start()
    try:
        view = schedules_view.SchedulesView(service, manager)
        qtbot.addWidget(view)
        view.show()
        view.show_message("Queued job #11 for schedule 'Weekly sales report'.")
        assert view.messageLabel.isVisible()
        wait_until(qtbot, lambda: not view.messageLabel.isVisible(), timeout=5)
        view.show_message("first news")
        view.show_message("The schedule could not be saved: the name is taken.", error=True)
        qtbot.wait(200)  # past both timers: the error is not cleared by the news's timer
        assert view.messageLabel.isVisible()
        assert view.messageLabel.text().startswith("The schedule could not be saved")
    finally:
        service.shutdown()


def _click_in(flow: Any, text: str) -> None:
    box = flow.box
    assert box is not None, "no question is showing"
    for button in box.buttons():
        if button.text().replace("&", "") == text:
            button.click()
            return
    raise AssertionError(f"no button {text!r} in {[b.text() for b in box.buttons()]}")


def test_restore_from_backup_checks_asks_and_hands_over_to_a_new_process(
        qtbot: Any, make_manager: Any, data_dir: Any, db: Any, tmp_path: Any) -> None:
    import os

    from swifty_desktop.db.backup import copy_database
    from swifty_desktop.gui.restore import RestoreFlow, relaunch_command

    manager = make_manager(workers=1)
    window = MainWindow(manager, data_dir)
    window.show()
    spawned: list[list[str]] = []
    window.restore_flow = RestoreFlow(window, spawn=lambda argv: spawned.append(list(argv)))
    quits: list[int] = []
    window.quitRequested.connect(lambda: quits.append(1))
    labels = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert "&Restore from backup…" in labels

    # not a backup: said so, nothing handed over
    bad = tmp_path / "notes.db"
    bad.write_text("hello", encoding="utf-8")
    answers: list[Any] = []
    window.restore_flow.checked.connect(answers.append)
    window.restore_from_backup(bad)
    wait_until(qtbot, lambda: answers, timeout=10)  # checked off the GUI thread
    wait_until(qtbot, lambda: window.restore_flow.box is not None, timeout=5)
    assert "is not an SQLite database" in window.restore_flow.box.text()
    _click_in(window.restore_flow, "OK")
    assert spawned == [] and quits == []

    # a real backup: the question names what it holds; "Restore and restart" hands over
    copy = tmp_path / "swifty-backup_2026-12-04_120000.db"
    copy_database(data_dir.db_path, copy)
    window.restore_from_backup(copy)
    wait_until(qtbot, lambda: window.restore_flow.box is not None, timeout=10)
    assert "jobs in the registry" in window.restore_flow.box.text()
    _click_in(window.restore_flow, "Restore and restart")
    assert spawned == [relaunch_command(data_dir.root, "restore", str(copy), "--wait-for-exit",
                                        str(os.getpid()), "--then-start")]
    assert quits == [1] and window.really_quit
    window.close()


def test_a_parameter_form_shows_each_fields_help_under_it(qtbot: Any) -> None:
    from PySide6.QtWidgets import QLabel

    from swifty_desktop.gui.forms import PARAM_DIALOG_WIDTH, ParamDialog
    from swifty_desktop.tasks import get_kind

    spec = get_kind("email_batch")
    dialog = ParamDialog(spec, title="Send newsletter", ask=("template_file",))
    qtbot.addWidget(dialog)
    dialog.show()
    help_text = next(p.help for p in spec.params if p.name == "template_file")
    hints = [w for w in dialog.findChildren(QLabel) if w.text() == help_text]
    assert len(hints) == 1 and hints[0].isVisible()  # not only a tooltip
    assert dialog.width() >= PARAM_DIALOG_WIDTH  # a path fits; the hint wraps in two lines
    field = dialog.fields["template_file"]
    assert field.width() >= 300
