"""The crash path: an unexpected error, a copyable report, where it was saved.

:class:`CrashReporter` takes unexpected exceptions from any thread (the app's
``sys.excepthook`` runs on a QThreadPool thread when a runnable raises, and
``threading.excepthook`` on a plain thread), logs them, saves a report in
``logs/`` and shows :func:`show_crash_dialog` on the GUI thread.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox, QWidget

from swifty_desktop import APP_NAME, __version__

log = logging.getLogger(__name__)

DIALOG_TITLE = "Something went wrong"
REPORTS_PER_MINUTE = 5
REPEAT_LOG_INTERVAL_MS = 60_000

# (report, saved to, parent) -> the dialog shown, or None
DialogFactory = Callable[[str, Path | None, QWidget | None], QWidget | None]

_open: list[QMessageBox] = []


def show_crash_dialog(report: str, saved_to: Path | None, parent: QWidget | None) -> QMessageBox:
    """Tell the user, offer the report to copy, and keep the app running."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle(DIALOG_TITLE)
    last = report.strip().splitlines()[-1] if report.strip() else "unknown error"
    box.setText(f"{APP_NAME} hit an unexpected error:\n{last}")
    box.setInformativeText(_informative(saved_to))
    box.setProperty("savedTo", str(saved_to) if saved_to else "")
    box.setDetailedText(report)
    copy = box.addButton("Copy report", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Close)
    copy.clicked.disconnect()
    copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(report))
    box.finished.connect(lambda _r: _open.remove(box) if box in _open else None)
    _open.append(box)
    box.show()
    return box


def _informative(saved_to: Path | None, more: int = 0, logs: Path | None = None) -> str:
    where = f"A report was saved to {saved_to}." if saved_to else "The report could not be saved."
    text = (f"{where} Your jobs keep running. If this happens again, send the report to "
            "support.")
    if more:
        folder = logs or (saved_to.parent if saved_to else None)
        text += (f"\n\n{more} more unexpected error{'s' if more != 1 else ''} happened while "
                 "this message was open" + (f"; see the log in {folder}." if folder else "."))
    return text


def _summary(etype: type[BaseException], value: BaseException,
             tb: TracebackType | None) -> str:
    """'Boom: the totals do not add up (registry_model.py:120)': what repeats are counted by."""
    what = "".join(traceback.format_exception_only(etype, value)).strip().splitlines()[-1]
    frames = traceback.extract_tb(tb)
    return f"{what} ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else what


class CrashReporter(QObject):
    """Turns unexpected exceptions from any thread into a log entry, a report file in
    ``logs/`` and one dialog on the GUI thread.

    :meth:`report` is safe to call from any thread: the dialog is always built on the
    thread this object lives on (create it on the GUI thread), through a queued
    signal.  At most one dialog is open at a time (later errors are counted in it),
    and at most ``max_reports`` report files are written per minute: further errors
    are counted, not saved, and the counts are written to the log once a minute.
    """

    _dialogRequested = Signal(str, object)
    _errorNotSaved = Signal()

    def __init__(self, logs: Path, *, parent_widget: Callable[[], QWidget | None] = lambda: None,
                 dialog_factory: DialogFactory | None = None,
                 max_reports: int = REPORTS_PER_MINUTE, window_s: float = 60.0,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.logs = logs
        self._parent_widget = parent_widget
        self._factory: DialogFactory = dialog_factory or show_crash_dialog
        self._max_reports = max_reports
        self._window_s = window_s
        self._lock = threading.Lock()
        self._saved_at: collections.deque[float] = collections.deque()
        self._not_saved: collections.Counter[str] = collections.Counter()
        self._dialog: QWidget | None = None
        self._more_in_dialog = 0
        self._dialogRequested.connect(self._show, Qt.ConnectionType.QueuedConnection)
        self._errorNotSaved.connect(self._count_in_dialog, Qt.ConnectionType.QueuedConnection)
        self._repeat_timer = QTimer(self)
        self._repeat_timer.setInterval(REPEAT_LOG_INTERVAL_MS)
        self._repeat_timer.timeout.connect(self.log_repeats)
        self._repeat_timer.start()

    def report(self, etype: type[BaseException], value: BaseException,
               tb: TracebackType | None, thread: threading.Thread | None = None) -> Path | None:
        """Log, save (within the rate limit) and show one unexpected error; the report's
        path, or None when it was not saved.  Never raises."""
        try:
            return self._report(etype, value, tb, thread or threading.current_thread())
        except Exception:  # the crash path itself must never take the app down
            log.exception("could not report an unexpected error")
            return None

    def _report(self, etype: type[BaseException], value: BaseException,
                tb: TracebackType | None, thread: threading.Thread) -> Path | None:
        report = "".join(traceback.format_exception(etype, value, tb))
        now = time.monotonic()
        with self._lock:
            while self._saved_at and now - self._saved_at[0] >= self._window_s:
                self._saved_at.popleft()
            save = len(self._saved_at) < self._max_reports
            if save:
                self._saved_at.append(now)
            else:
                self._not_saved[_summary(etype, value, tb)] += 1
        if not save:  # counted; log_repeats writes the count
            self._errorNotSaved.emit()
            return None
        where = "" if thread is threading.main_thread() else f" in thread {thread.name}"
        log.critical("unexpected error%s:\n%s", where, report)
        path = self._save(report, thread)
        self._dialogRequested.emit(report, path)
        return path

    def _save(self, report: str, thread: threading.Thread) -> Path | None:
        stamp = time.strftime("crash-%Y%m%d-%H%M%S")
        text = (f"{APP_NAME} {__version__}\nPython {sys.version}\nThread {thread.name}\n\n"
                f"{report}")
        for n in range(1, 1000):  # several errors in one second: one report each
            path = self.logs / (f"{stamp}.txt" if n == 1 else f"{stamp}-{n}.txt")
            try:
                with open(path, "x", encoding="utf-8") as fh:
                    fh.write(text)
                return path
            except FileExistsError:
                continue
            except OSError as exc:
                log.error("could not save the crash report %s: %s", path, exc)
                return None
        return None

    def _show(self, report: str, path: Path | None) -> None:
        """On the GUI thread: the dialog, unless one is open already."""
        if self._count_in_dialog():
            return
        self._more_in_dialog = 0
        try:
            self._dialog = self._factory(report, path, self._parent_widget())
        except Exception:  # the crash dialog itself must never take the app down
            self._dialog = None
            log.exception("could not show the crash dialog")

    def _count_in_dialog(self) -> bool:
        """On the GUI thread: count one more error in the open dialog; False if none is."""
        dialog = self._dialog
        if dialog is None or not dialog.isVisible():
            return False
        self._more_in_dialog += 1
        if isinstance(dialog, QMessageBox):
            saved = dialog.property("savedTo")
            dialog.setInformativeText(_informative(Path(saved) if saved else None,
                                                   self._more_in_dialog, self.logs))
        return True

    def log_repeats(self) -> None:
        """Write how many errors were not saved as reports since the last call."""
        with self._lock:
            counts, self._not_saved = self._not_saved, collections.Counter()
        if counts:
            total = sum(counts.values())
            log.error("%d more unexpected error%s not saved as reports (at most %d reports "
                      "a minute): %s", total, "s were" if total != 1 else " was",
                      self._max_reports,
                      "; ".join(f"{n} x {what}" for what, n in counts.most_common()))

    def close(self) -> None:
        """Stop the once-a-minute count and write what is left of it."""
        self._repeat_timer.stop()
        self.log_repeats()
