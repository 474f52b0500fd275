"""The crash path a user can act on: an error in the GUI is saved, shown, and survived.

A real :class:`SwiftyApp` (database, engine with worker processes, window,
scheduler) in a temporary data directory; an exception raised inside a Qt slot
must reach the app's excepthook, which writes ``logs/crash-*.txt``, logs it to
``logs/swifty.log`` and shows a dialog holding the report, while the app keeps
running.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from swifty_desktop import bootstrap
from swifty_desktop.app import SwiftyApp


@pytest.fixture
def swifty_app(qapp: Any, tmp_path: Path) -> Iterator[SwiftyApp]:
    style, quit_on_close = qapp.style().name(), qapp.quitOnLastWindowClosed()
    app = SwiftyApp(str(tmp_path / "data"), show_welcome=False)
    hook_before = sys.excepthook
    app.start()
    yield app
    for box in _crash_dialogs():
        box.close()
    app.window.really_quit = True  # closing must not ask about running jobs
    app.window.close()
    app.shutdown()
    assert sys.excepthook is hook_before, "shutdown did not restore the previous excepthook"
    app.window.deleteLater()
    # leave the shared QApplication and the root logger as other tests expect them
    qapp.setStyle(style)
    qapp.setQuitOnLastWindowClosed(quit_on_close)
    root = logging.getLogger()
    for handler in list(root.handlers):
        name = getattr(handler, "baseFilename", None)
        if name and Path(name).is_relative_to(tmp_path):
            root.removeHandler(handler)
            handler.close()
            bootstrap._LOGGING_READY.discard(Path(name))


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
def test_an_error_in_a_slot_is_saved_shown_and_survived(qtbot: Any,
                                                         swifty_app: SwiftyApp) -> None:
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
    assert len(_crash_dialogs()) == 2


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
