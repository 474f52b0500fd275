"""Notifications when jobs end: a small service with two strategies.

``TrayStrategy`` shows a system-tray message; clicking it opens the finished file
with the desktop's default application; a job that changed business data without
writing a file (an import without rejected rows, an archive run, a sync) opens
the data tab it changed instead, and a failed job's message opens its details (or
the file it kept on purpose, such as a strict import's rejected rows).  What a job
did is said the way its kind declares it (``KindSpec.outcome_text``): nothing here
knows one kind from another.
Where the desktop has no system tray, ``BannerStrategy`` shows the same
notification as a banner inside the window, with Open / Details buttons, so
nothing is lost.  The Notifier decides *what* to say; strategies only show it,
and can be tested without a desktop.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSystemTrayIcon,
    QWidget,
)

from swifty_desktop.gui.data_models import tables_changed_by
from swifty_desktop.gui.registry_model import outcome_text
from swifty_desktop.gui.uitools import icon
from swifty_desktop.jobs.manager import JobManager
from swifty_desktop.jobs.model import JobRecord, JobStatus
from swifty_desktop.tasks import registry

COALESCE_MS = 400
TOOLTIP_REFRESH_MS = 1500  # the tray tooltip follows running jobs' progress this often


@dataclasses.dataclass(frozen=True)
class Notification:
    """What to tell the user about a job (or several) that ended."""

    title: str
    text: str
    status: str  # completed | failed | interrupted | summary
    job_id: int | None = None
    target: str | None = None  # a file or folder to open on click
    tab: str | None = None  # else a data tab to show on click (products, customers, orders)

    @property
    def ok(self) -> bool:
        return self.status == JobStatus.COMPLETED.value


def open_target(job: JobRecord) -> str | None:
    """The file (or folder) a click on the job's notification opens: what the job
    wrote — never one of its inputs (an import's ``path`` is the user's source file)."""
    if job.output_path:
        return job.output_path
    if isinstance(job.result, dict):
        for key in ("folder", "outbox"):  # folders a job wrote its files into
            value = job.result.get(key)
            if isinstance(value, str) and value and Path(value).exists():
                return value
    return None


REASON_CHARS = 180  # a failure's first line in a notification; the rest is in its details


def clip(text: str, limit: int = REASON_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters (with the "…" that marks the cut) at
    a word boundary; a word longer than half the limit is cut inside it."""
    if len(text) <= limit:
        return text
    space = text.rfind(" ", 0, limit)  # text[:space] ends a word and leaves room for "…"
    head = text[:space] if space > limit // 2 else text[:limit - 1]
    return head.rstrip(" ,;:—–-") + "…"


def _output_label(job: JobRecord) -> str:
    """What the kind calls its output file ("the rejected rows"); "" for a bare name."""
    spec = registry().get(job.kind)
    return spec.output_label if spec is not None else ""


def describe(job: JobRecord) -> Notification:
    """The notification for a job that ended."""
    if job.status is JobStatus.COMPLETED:
        target = open_target(job)
        did = outcome_text(job)
        lead = f"{did}. " if did else ""
        tabs = tables_changed_by(job.kind, job.params)
        tab = tabs[0] if tabs and not target else None
        label = _output_label(job) if target and target == job.output_path else ""
        spec = registry().get(job.kind)
        if target and target == job.output_path and spec is not None and spec.reveal_output:
            folder = Path(target).parent
            return Notification(f"{job.title} finished",
                                f"{lead}{Path(target).name} is in the {folder.name} folder. "
                                "Click to show it.", job.status.value, job.id, str(folder))
        if target and label:
            text = f"{lead}Click to open {label} ({Path(target).name})."
        elif target:
            text = f"{lead}{Path(target).name} is ready. Click to open it."
        elif tab:
            text = f"{lead}Click to show the {tab.capitalize()} tab."
        else:
            text = f"{lead}Click for details." if did else "Finished. Click for details."
        return Notification(f"{job.title} finished", text, job.status.value, job.id, target,
                            tab)
    message = job.error.message if job.error and job.error.message else ""
    reason = next(iter(message.strip().splitlines()), "")
    verb = "was interrupted" if job.status is JobStatus.INTERRUPTED else "failed"
    # a job that failed may still have kept a file on purpose (a strict import's rejected
    # rows): the click opens that file; otherwise it shows what went wrong
    target = job.output_path or None
    if target:
        name, label = Path(target).name, _output_label(job)
        action = f"Click to open {label} ({name})." if label else f"Click to open {name}."
    else:
        action = "Click for details."
    return Notification(f"{job.title} {verb}", (f"{clip(reason)} — " if reason else "")
                        + action, job.status.value, job.id, target)


class Strategy(Protocol):
    """How a notification reaches the user; ``activated`` fires when it is clicked."""

    activated: Any  # Signal(object): the Notification clicked

    def show(self, notification: Notification) -> None: ...


class TrayStrategy(QObject):
    """System-tray messages (QSystemTrayIcon.showMessage); the click opens the target."""

    activated = Signal(object)

    def __init__(self, tray: QSystemTrayIcon, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tray = tray
        self.last: Notification | None = None
        self.shown: list[Notification] = []
        tray.messageClicked.connect(self._clicked)

    def show(self, notification: Notification) -> None:
        self.last = notification
        self.shown.append(notification)
        kind = QSystemTrayIcon.MessageIcon.Information if notification.ok or \
            notification.status == "summary" else QSystemTrayIcon.MessageIcon.Warning
        self.tray.showMessage(notification.title, notification.text, kind, 10_000)

    @Slot()
    def _clicked(self) -> None:
        if self.last is not None:
            self.activated.emit(self.last)


class Banner(QFrame):
    """One in-window notification with Open / Details / dismiss buttons."""

    def __init__(self, notification: Notification, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.notification = notification
        self.setObjectName("notificationBanner")
        color = {"completed": "#e8f5e9", "failed": "#ffebee", "interrupted": "#fff3e0"}.get(
            notification.status, "#e3f2fd")
        border = {"completed": "#a5d6a7", "failed": "#ef9a9a", "interrupted": "#ffcc80"}.get(
            notification.status, "#90caf9")
        self.setStyleSheet(f"#notificationBanner {{ background: {color}; border: 1px solid "
                           f"{border}; border-radius: 4px; }}")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        status_icon = QLabel(self)
        name = "status-completed" if notification.ok else (
            "status-interrupted" if notification.status == "interrupted" else "status-failed")
        if notification.status == "summary":
            name = "jobs"
        status_icon.setPixmap(icon(name).pixmap(18, 18))
        layout.addWidget(status_icon)
        self.label = QLabel(f"<b>{_esc(notification.title)}</b> — {_esc(notification.text)}",
                            self)
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        if notification.target or not notification.tab:
            self.openButton = QPushButton(icon("open"), "Open", self)
        else:
            self.openButton = QPushButton(icon("spreadsheet"),
                                          f"Show {notification.tab.capitalize()}", self)
        self.openButton.setVisible(bool(notification.target or notification.tab))
        self.detailsButton = QPushButton(icon("details"), "Details", self)
        self.detailsButton.setVisible(notification.job_id is not None)
        self.closeButton = QPushButton("✕", self)
        self.closeButton.setFlat(True)
        self.closeButton.setToolTip("Dismiss")
        self.closeButton.setFixedWidth(28)
        for button in (self.openButton, self.detailsButton, self.closeButton):
            layout.addWidget(button)


class BannerStrategy(QObject):
    """In-window banners for desktops without a system tray."""

    activated = Signal(object)
    detailsRequested = Signal(int)
    MAX_BANNERS = 3

    def __init__(self, area: QWidget, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.area = area
        self.banners: list[Banner] = []

    def show(self, notification: Notification) -> None:
        banner = Banner(notification, self.area)
        banner.openButton.clicked.connect(lambda: self._open(banner))
        banner.detailsButton.clicked.connect(lambda: self._details(banner))
        banner.closeButton.clicked.connect(lambda: self.dismiss(banner))
        layout = self.area.layout()
        layout.insertWidget(0, banner)
        self.banners.insert(0, banner)
        while len(self.banners) > self.MAX_BANNERS:
            self.dismiss(self.banners[-1])
        self.area.show()

    def dismiss(self, banner: Banner) -> None:
        if banner in self.banners:
            self.banners.remove(banner)
        banner.hide()
        banner.deleteLater()

    def _open(self, banner: Banner) -> None:
        self.activated.emit(banner.notification)
        self.dismiss(banner)

    def _details(self, banner: Banner) -> None:
        if banner.notification.job_id is not None:
            self.detailsRequested.emit(banner.notification.job_id)
        self.dismiss(banner)


class Notifier(QObject):
    """Listens to the engine and notifies about jobs that ended (coalescing bursts)."""

    detailsRequested = Signal(int)
    registryRequested = Signal()
    tabRequested = Signal(str)  # a data tab: products, customers or orders

    def __init__(self, manager: JobManager, strategy: Any, *, include_diagnostic: bool = False,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.manager = manager
        self.strategy = strategy
        self.enabled = True
        self.include_diagnostic = include_diagnostic  # noop, sleep...: tests only
        self._pending: list[int] = []
        self._timer = QTimer(self, singleShot=True, interval=COALESCE_MS)
        self._timer.timeout.connect(self._flush)
        manager.jobFinished.connect(self._on_finished)
        strategy.activated.connect(self.activate)
        if hasattr(strategy, "detailsRequested"):
            strategy.detailsRequested.connect(self.detailsRequested)

    def set_strategy(self, strategy: Any) -> None:
        self.strategy = strategy
        strategy.activated.connect(self.activate)
        if hasattr(strategy, "detailsRequested"):
            strategy.detailsRequested.connect(self.detailsRequested)

    @Slot(int, str)
    def _on_finished(self, job_id: int, status: str) -> None:
        if status == JobStatus.CANCELLED.value or not self.enabled:
            return  # the user asked for it; nothing to tell
        self._pending.append(job_id)
        if not self._timer.isActive():
            self._timer.start()

    def _flush(self) -> None:
        ids, self._pending = self._pending, []
        # jobs that ran here are known from memory; one query for the others
        jobs = {i: snap for i in ids if (snap := self.manager.snapshot(i)) is not None}
        missing = [i for i in ids if i not in jobs]
        if missing:
            jobs.update(self.manager.store.get_many(missing))
        notes: list[Notification] = []
        for job_id in ids:
            job = jobs.get(job_id)
            if job is None or job.superseded_by is not None:
                continue  # retried automatically: the final attempt will be told
            spec = registry().get(job.kind)
            if spec is None or (spec.diagnostic and not self.include_diagnostic):
                continue
            notes.append(describe(job))
        if not notes:
            return
        if len(notes) == 1:
            self.strategy.show(notes[0])
            return
        failed = sum(1 for n in notes if not n.ok)
        text = f"{len(notes) - failed} finished" + (f", {failed} failed" if failed else "")
        self.strategy.show(Notification(f"{len(notes)} jobs ended", text + ". Click to see "
                                        "them in the job registry.", "summary"))

    @Slot(object)
    def activate(self, notification: Notification) -> None:
        """The user clicked a notification: open the file the job wrote (or kept when
        it failed) or the data tab it changed, or show what went wrong."""
        if notification.status == "summary":
            self.registryRequested.emit()
        elif notification.target:  # a finished file, or one a failed job kept
            QDesktopServices.openUrl(QUrl.fromLocalFile(notification.target))
        elif notification.ok and notification.tab:
            self.tabRequested.emit(notification.tab)
        elif notification.job_id is not None:
            self.detailsRequested.emit(notification.job_id)


class Tray(QObject):
    """The system-tray icon: a menu (Show, Job registry, Quit) and a tooltip of running jobs
    (refreshed every 1.5 s while jobs run, so their progress in it stays current)."""

    showRequested = Signal()
    registryRequested = Signal()
    quitRequested = Signal()

    def __init__(self, manager: JobManager, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.manager = manager
        self.icon = QSystemTrayIcon(icon("swifty"), self)
        menu = QMenu()
        menu.addAction(icon("swifty"), "Show Swifty Desktop", self.showRequested.emit)
        menu.addAction(icon("jobs"), "Job registry", self.registryRequested.emit)
        menu.addSeparator()
        menu.addAction(icon("quit"), "Quit", self.quitRequested.emit)
        self._menu = menu
        self.icon.setContextMenu(menu)
        self.icon.activated.connect(self._activated)
        self._tooltip_timer = QTimer(self, interval=TOOLTIP_REFRESH_MS)
        self._tooltip_timer.timeout.connect(self.update_tooltip)
        manager.countsChanged.connect(self.update_tooltip)
        self.update_tooltip()

    def show(self) -> None:
        self.icon.show()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.showRequested.emit()

    @Slot()
    def update_tooltip(self) -> None:
        """Show the running jobs and their progress (from memory: no query)."""
        ids = self.manager.running_ids()
        running = [j for i in ids[:5] if (j := self.manager.snapshot(i)) is not None]
        if running:
            lines = [f"{j.title} — {(j.progress or 0) * 100:.0f}%" for j in running]
            if len(ids) > len(running):
                lines.append(f"and {len(ids) - len(running)} more")
            self.icon.setToolTip("Swifty Desktop — running:\n" + "\n".join(lines))
            if not self._tooltip_timer.isActive():
                self._tooltip_timer.start()
        else:
            self.icon.setToolTip("Swifty Desktop — no jobs running")
            self._tooltip_timer.stop()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
