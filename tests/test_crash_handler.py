"""The crash path a user can act on: an error in the GUI is saved, shown, and survived.

A real :class:`SwiftyApp` (database, engine with worker processes, window,
scheduler) in a temporary data directory; an exception raised inside a Qt slot,
in a QThreadPool runnable or in a plain thread must reach the app's hooks, which
write ``logs/crash-*.txt``, log it to ``logs/swifty.log`` and show a dialog
holding the report -- built on the GUI thread, one at a time, and with a limit on
the reports written per minute -- while the app keeps running.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from PySide6.QtCore import QRunnable, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from swifty_desktop import bootstrap
from swifty_desktop.app import SwiftyApp
from swifty_desktop.gui import crash


@dataclass
class Shown:
    """One call of the crash dialog: on which thread, with what."""

    thread: int
    report: str
    saved_to: Path | None
    box: QMessageBox


@dataclass
class DialogSpy:
    """The app's crash dialog, recording where and how often it is built."""

    shown: list[Shown] = field(default_factory=list)

    def __call__(self, report: str, saved_to: Path | None, parent: QWidget | None
                 ) -> QMessageBox:
        box = crash.show_crash_dialog(report, saved_to, parent)
        self.shown.append(Shown(threading.get_ident(), report, saved_to, box))
        return box


@pytest.fixture
def dialogs() -> DialogSpy:
    return DialogSpy()


@pytest.fixture
def swifty_app(qapp: Any, tmp_path: Path, dialogs: DialogSpy) -> Iterator[SwiftyApp]:
    style, quit_on_close = qapp.style().name(), qapp.quitOnLastWindowClosed()
    app = SwiftyApp(str(tmp_path / "data"), show_welcome=False, crash_dialog=dialogs)
    hook_before, thread_hook_before = sys.excepthook, threading.excepthook
    app.start()
    yield app
    for box in _crash_dialogs():
        box.close()
    app.window.really_quit = True  # closing must not ask about running jobs
    app.window.close()
    app.shutdown()
    assert sys.excepthook is hook_before, "shutdown did not restore the previous excepthook"
    assert threading.excepthook is thread_hook_before, \
        "shutdown did not restore the previous threading.excepthook"
    app.window.deleteLater()
    # leave the shared QApplication and the root logger as other tests expect them
    qapp.setStyle(style)
    qapp.setQuitOnLastWindowClosed(quit_on_close)
    bootstrap.close_logs(tmp_path)


def _crash_dialogs() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.isVisible()
            and w.windowTitle() == "Something went wrong"]


class Boom(RuntimeError):
    """The error the test raises inside a slot."""


def _raise_in_a_slot(message: str) -> None:
    def slot() -> None:
        raise Boom(message)

    QTimer.singleShot(0, slot)


# pytest-qt would catch the slot's exception itself; here the app's own hook must see it
@pytest.mark.qt_no_exception_capture
def test_an_error_in_a_slot_is_saved_shown_and_survived(qtbot: Any, swifty_app: SwiftyApp,
                                                         dialogs: DialogSpy) -> None:
    logs = swifty_app.services.data_dir.logs
    assert sys.excepthook == swifty_app._excepthook

    _raise_in_a_slot("the totals do not add up")
    reports = wait_until(qtbot, lambda: sorted(logs.glob("crash-*.txt")), 10,
                         "a crash report in logs/")
    assert len(reports) == 1
    text = reports[0].read_text(encoding="utf-8")
    assert text.startswith("Swifty Desktop ")
    assert "Traceback (most recent call last)" in text
    assert "in slot" in text and "Boom: the totals do not add up" in text

    (box,) = wait_until(qtbot, _crash_dialogs, 10, "the crash dialog")
    assert "Boom: the totals do not add up" in box.text()
    assert box.detailedText().strip() and box.detailedText() in text  # the whole report
    assert str(reports[0]) in box.informativeText()
    assert any(b.text() == "Copy report" for b in box.buttons())
    assert "unexpected error" in (logs / "swifty.log").read_text(encoding="utf-8")

    # the app goes on: the window is there and the engine still runs jobs
    assert swifty_app.window.isVisible()
    job_id = swifty_app.manager.submit("noop")
    wait_until(qtbot, lambda: swifty_app.manager.store.get(job_id).status.value == "completed",
               30, "a job after the crash")

    # a second error in the same second gets its own report, not the first one's file
    box.close()
    _raise_in_a_slot("and again")
    _raise_in_a_slot("and a third time")
    reports = wait_until(qtbot, lambda: (r := sorted(logs.glob("crash-*.txt"))) and
                         len(r) >= 3 and r, 10, "three crash reports")
    last_lines = [r.read_text(encoding="utf-8").strip().splitlines()[-1] for r in reports]
    assert sorted(line.partition("Boom: ")[2] for line in last_lines) == [
        "and a third time", "and again", "the totals do not add up"]
    # one dialog at a time: the third error is counted in the second one's dialog
    (box,) = wait_until(qtbot, lambda: (b := _crash_dialogs()) and
                        "1 more unexpected error" in b[0].informativeText() and b, 10,
                        "the third error counted in the open dialog")
    assert "Boom: and again" in box.text()
    assert len(dialogs.shown) == 2
    assert {s.thread for s in dialogs.shown} == {threading.main_thread().ident}


class Failing(QRunnable):
    """A pool runnable that raises, as JobRunner.run would if persisting its end failed."""

    def run(self) -> None:
        raise Boom("disk full while saving the job's end")


# the pool thread's error reaches the app's sys.excepthook: pytest-qt must not take it
@pytest.mark.qt_no_exception_capture
def test_errors_on_other_threads_are_shown_on_the_gui_thread(qtbot: Any, swifty_app: SwiftyApp,
                                                            dialogs: DialogSpy) -> None:
    logs = swifty_app.services.data_dir.logs
    gui_thread = threading.get_ident()

    def plain() -> None:
        raise Boom("a plain thread gave up")

    thread = threading.Thread(target=plain, name="exporter-helper")
    thread.start()
    thread.join(10)
    (report,) = wait_until(qtbot, lambda: sorted(logs.glob("crash-*.txt")), 10,
                           "the plain thread's crash report")
    text = report.read_text(encoding="utf-8")
    assert "Thread exporter-helper" in text and "Boom: a plain thread gave up" in text
    wait_until(qtbot, lambda: len(dialogs.shown) == 1, 10, "the plain thread's dialog")
    assert dialogs.shown[0].thread == gui_thread, "the dialog was built off the GUI thread"
    assert dialogs.shown[0].saved_to == report
    dialogs.shown[0].box.close()

    pool = QThreadPool()
    pool.start(Failing())
    assert pool.waitForDone(10_000)
    reports = wait_until(qtbot, lambda: (r := sorted(logs.glob("crash-*.txt"))) and
                         len(r) == 2 and r, 10, "the pool thread's crash report")
    (pooled,) = [r for r in reports if r != report]
    assert "Boom: disk full while saving the job's end" in pooled.read_text(encoding="utf-8")
    wait_until(qtbot, lambda: len(dialogs.shown) == 2, 10, "the pool thread's dialog")
    assert dialogs.shown[1].thread == gui_thread, "the dialog was built off the GUI thread"
    assert dialogs.shown[1].box.isVisible()
    log_text = (logs / "swifty.log").read_text(encoding="utf-8")
    assert "unexpected error in thread exporter-helper" in log_text

    # still running: the event loop turns, the window is there, jobs run
    assert swifty_app.window.isVisible()
    job_id = swifty_app.manager.submit("noop")
    wait_until(qtbot, lambda: swifty_app.manager.store.get(job_id).status.value == "completed",
               30, "a job after the errors")


@pytest.mark.qt_no_exception_capture
def test_a_flood_of_errors_writes_few_reports_and_one_dialog(qtbot: Any, swifty_app: SwiftyApp,
                                                             dialogs: DialogSpy) -> None:
    """An error in paint() or data() repeats on every repaint: a handful of reports a
    minute and one dialog, the rest counted in the log."""
    logs = swifty_app.services.data_dir.logs
    for i in range(40):
        _raise_in_a_slot(f"row {i} cannot be painted")
    threads = [threading.Thread(target=_raise, args=(f"thread {i}",)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    qtbot.wait(500)  # every queued slot and dialog request has run

    reports = sorted(logs.glob("crash-*.txt"))
    assert len(reports) == crash.REPORTS_PER_MINUTE
    assert len(dialogs.shown) == 1 and len(_crash_dialogs()) == 1
    (box,) = _crash_dialogs()
    assert "49 more unexpected errors happened while this message was open" \
        in box.informativeText()

    swifty_app.crash_reporter.log_repeats()  # what its once-a-minute timer does
    log_text = (logs / "swifty.log").read_text(encoding="utf-8")
    left = 50 - crash.REPORTS_PER_MINUTE
    assert f"{left} more unexpected errors were not saved as reports" in log_text
    assert log_text.count("Traceback (most recent call last)") == crash.REPORTS_PER_MINUTE
    assert swifty_app.window.isVisible()


def _raise(message: str) -> None:
    raise Boom(message)


@pytest.mark.qt_no_exception_capture
def test_ctrl_c_in_the_gui_quits_without_a_crash_report(qtbot: Any,
                                                        swifty_app: SwiftyApp) -> None:
    """Ctrl-C in the terminal reaches Python inside some slot: the app quits, quietly."""
    logs = swifty_app.services.data_dir.logs

    def interrupted() -> None:
        raise KeyboardInterrupt

    give_up = QTimer(singleShot=True, interval=10_000)
    give_up.timeout.connect(lambda: swifty_app.qapp.exit(99))
    give_up.start()
    QTimer.singleShot(0, interrupted)
    try:
        code = swifty_app.qapp.exec()  # the app's own event loop, as run_app runs it
    finally:
        give_up.stop()
    assert code == 0, "the app did not quit on Ctrl-C"
    assert not list(logs.glob("crash-*.txt")), "Ctrl-C is not a crash"
    assert not _crash_dialogs()
