"""File → Restore from backup…: check a copy off the GUI thread, ask, then hand over.

The database cannot be replaced under a running app (its engine, worker processes
and scheduler hold it open), so the app hands the restore to a new process of
itself — ``swifty-desktop restore FILE --wait-for-exit PID --then-start`` — and
quits.  That process waits for this one to end, restores (``cli.cmd_restore``:
checked, the current database kept in ``outputs/backups``, refused while anything
else uses the data directory) and opens the app again, which says how it went.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox

from swifty_desktop.gui.background import BackgroundCall

log = logging.getLogger(__name__)

def relaunch_command(data_dir: Path, *args: str) -> list[str]:
    """How to start this very installation again (a frozen bundle, or Python)."""
    base = [sys.executable] if getattr(sys, "frozen", False) else \
        [sys.executable, "-m", "swifty_desktop"]
    return [*base, "--data-dir", str(data_dir), *args]


def spawn_detached(argv: Sequence[str]) -> None:
    """Start ``argv`` in its own session: it outlives this process."""
    subprocess.Popen(list(argv), start_new_session=True, close_fds=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)


def inspect(path: Path) -> tuple[Path, Any]:
    """(path, its CopyInfo) or (path, what is wrong with it); on a pool thread."""
    from swifty_desktop.db.backup import BackupError, inspect_copy

    try:
        return path, inspect_copy(path)
    except BackupError as exc:
        return path, str(exc)
    except Exception as exc:  # a fault here must not leave the user waiting
        log.exception("checking the backup %s failed", path)
        return path, f"{path} could not be checked ({exc})"


class RestoreFlow(QObject):
    """Choose a backup, check it, confirm, hand over and quit (see the module docstring).

    ``spawn`` starts the hand-over process (tests pass their own to see the command).
    """

    checked = Signal(object)  # CopyInfo or an error message: the check's answer arrived

    def __init__(self, window: Any, spawn: Callable[[Sequence[str]], None] = spawn_detached
                 ) -> None:
        super().__init__(window)
        self.window = window
        self.spawn = spawn
        self.box: QMessageBox | None = None

    def choose(self) -> None:
        folder = self.window.data_dir.outputs / "backups"
        path, _filter = QFileDialog.getOpenFileName(
            self.window, "Restore from backup",
            str(folder if folder.is_dir() else self.window.data_dir.outputs),
            "Swifty Desktop backups (*.db);;All files (*)")
        if path:
            self.check(Path(path))

    def check(self, path: Path) -> None:
        """Check ``path`` in the background; then ask (or say what is wrong with it)."""
        self.window.statusBar().showMessage(f"Checking {path.name}…", 10_000)
        call = BackgroundCall(functools.partial(inspect, path), name=f"check of {path}")
        call.done.connect(self._checked, Qt.ConnectionType.QueuedConnection)
        call.start()

    @Slot(object)
    def _checked(self, answer: tuple[Path, Any]) -> None:
        path, info = answer
        if isinstance(info, str):
            self._refuse(info)
        else:
            self._confirm(path, info)

    def _refuse(self, message: str) -> None:
        self.window.statusBar().clearMessage()  # "Checking …" is answered
        self.checked.emit(message)
        self._ask(QMessageBox.Icon.Warning, "This file cannot be restored",
                  f"{message[0].upper()}{message[1:]}.\n\nChoose a backup made by File → "
                  "Back up database (they are in outputs/backups).", restore=False)

    def _confirm(self, path: Path, info: Any) -> None:
        from swifty_desktop.db.migrate import HEAD, KNOWN_REVISIONS

        self.window.statusBar().clearMessage()
        self.checked.emit(info)
        if info.revision not in KNOWN_REVISIONS:
            self._refuse(f"{path.name} was written by a newer version of Swifty Desktop "
                         f"(schema '{info.revision}'; this version knows up to '{HEAD}'); "
                         "install the newer version to restore it")
            return
        from swifty_desktop.db.backup import describe_counts

        nouns = {"products": "products", "customers": "customers", "orders": "orders",
                 "jobs": "jobs in the registry"}
        holds = describe_counts({n: info.counts[t] for t, n in nouns.items()
                                 if t in info.counts}, zeros=True)
        self._ask(QMessageBox.Icon.Question, "Restore from backup?",
                  f"{path.name} holds {holds}.\n\nSwifty Desktop closes, puts this copy in "
                  "place of the current database, and opens again. The current database is "
                  "kept in outputs/backups first, so you can go back to it the same way.",
                  restore=True, path=path)

    def _ask(self, level: QMessageBox.Icon, title: str, text: str, *, restore: bool,
             path: Path | None = None) -> None:
        box = QMessageBox(level, title, text, QMessageBox.StandardButton.NoButton, self.window)
        if restore:
            go = box.addButton("Restore and restart", QMessageBox.ButtonRole.AcceptRole)
            cancel = box.addButton(QMessageBox.StandardButton.Cancel)
            box.setDefaultButton(cancel)
            box.setEscapeButton(cancel)
        else:
            go = None
            box.addButton(QMessageBox.StandardButton.Ok)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(button: Any) -> None:
            self.box = None
            if go is not None and button is go and path is not None:
                self.hand_over(path)

        box.buttonClicked.connect(answered)
        self.box = box
        box.open()  # window-modal, without a nested event loop: the check's answer
        # arrives in a slot, and the app (its engine, its timers) goes on meanwhile

    def hand_over(self, path: Path) -> None:
        """Start the restoring process and quit (asking first if jobs run)."""
        window = self.window
        if not window.confirm_quit():
            return  # "Don't quit", or "Keep working" while waiting for jobs
        argv = relaunch_command(window.data_dir.root, "restore", str(path),
                                "--wait-for-exit", str(os.getpid()), "--then-start")
        log.info("handing the restore of %s over to: %s", path, " ".join(argv))
        self.spawn(argv)
        window.really_quit = True
        window.save_layout()
        window.quitRequested.emit()
