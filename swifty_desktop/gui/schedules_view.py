"""The Schedules tab beside the job registry: what fires when, and how it went.

Rows are immutable :class:`ScheduleRow` snapshots read in two small queries
(schedules, and the status of each one's last job).  Refreshes are coalesced and
update rows in place (``dataChanged`` per row; inserts and removals for added and
deleted schedules), so selection survives.  The view forwards intent to the
scheduler service — run now, pause/resume, edit, delete, new — and asks the main
window to open a job through :attr:`SchedulesView.showJobRequested`.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QTableView,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from swifty_desktop.gui.schedule_editor import ScheduleEditor
from swifty_desktop.gui.uitools import icon
from swifty_desktop.scheduling.store import ScheduleError, ScheduleSummary
from swifty_desktop.tasks import registry

COLUMNS = ("Name", "Kind", "Rule", "Enabled", "Last run", "Next run", "Missed")
COL_NAME, COL_KIND, COL_RULE, COL_ENABLED, COL_LAST, COL_NEXT, COL_MISSED = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
SCHEDULE_ID_ROLE = Qt.ItemDataRole.UserRole + 2
JOB_ID_ROLE = Qt.ItemDataRole.UserRole + 3

_ROOT = QModelIndex()
REFRESH_MS = 150  # coalesce bursts of job events into one refresh
TICK_MS = 30_000  # "next run" and back-off move on with time
MESSAGE_MS = 10_000  # how long news under the table stays

_STATUS_COLORS = {
    "queued": QColor("#546e7a"), "running": QColor("#1565c0"),
    "completed": QColor("#2e7d32"), "failed": QColor("#c62828"),
    "cancelled": QColor("#616161"), "interrupted": QColor("#e65100"),
    "not started": QColor("#c62828"),
}
_PAUSED_COLOR = QColor("#9e9e9e")


def _fmt(ts: float | None, now: float) -> str:
    """Local time, never ambiguous: "Today 07:00", "Tomorrow 07:00" (or "Yesterday"),
    "Sun 6 Dec 02:00" within six days either way, else "12 Jan 2027 02:00"."""
    if ts is None:
        return ""
    local = time.localtime(ts)
    days = _calendar_days(ts, now)
    clock = time.strftime("%H:%M", local)
    named = {0: "Today", 1: "Tomorrow", -1: "Yesterday"}.get(days)
    if named is not None:
        return f"{named} {clock}"
    if abs(days) <= 6:
        return f"{time.strftime('%a', local)} {local.tm_mday} {time.strftime('%b', local)} {clock}"
    return f"{local.tm_mday} {time.strftime('%b %Y', local)} {clock}"


def _fmt_full(ts: float) -> str:
    """The whole local time for a tooltip, as the schedule editor's preview writes it."""
    return time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def _calendar_days(ts: float, now: float) -> int:
    """Local calendar days from ``now``'s date to ``ts``'s (0: the same day)."""
    return (datetime.date(*time.localtime(ts)[:3]) - datetime.date(*time.localtime(now)[:3])).days


@dataclasses.dataclass(frozen=True)
class ScheduleRow:
    """What one row shows; compared as a whole to decide whether the row changed."""

    id: int
    name: str
    kind: str
    rule: str
    enabled: bool
    last_run: float | None
    last_status: str | None
    last_job_id: int | None
    next_run: float | None
    missed: int
    note: str | None
    backing_off: bool

    @classmethod
    def from_summary(cls, s: ScheduleSummary) -> ScheduleRow:
        r = s.record
        return cls(r.id, r.name, r.kind, s.rule, r.enabled, s.last_run, s.last_status,
                   s.last_job_id, s.next_run, r.missed, r.status_note,
                   r.backoff_until is not None)


class SchedulesModel(QAbstractTableModel):
    """Schedules in creation order; raw values in SORT_ROLE for the proxy."""

    def __init__(self, parent: QObject | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(parent)
        self._rows: list[ScheduleRow] = []
        self._clock = clock

    # ------------------------------------------------------------------ updates
    def set_rows(self, rows: list[ScheduleRow]) -> None:
        """Apply a fresh snapshot: remove, update in place, append — never a reset."""
        new_by_id = {r.id: r for r in rows}
        for i in reversed(range(len(self._rows))):
            if self._rows[i].id not in new_by_id:
                self.beginRemoveRows(QModelIndex(), i, i)
                del self._rows[i]
                self.endRemoveRows()
        last_col = len(COLUMNS) - 1
        for i, old in enumerate(self._rows):
            new = new_by_id[old.id]
            if new != old:
                self._rows[i] = new
                self.dataChanged.emit(self.index(i, 0), self.index(i, last_col))
        known = {r.id for r in self._rows}
        added = [r for r in rows if r.id not in known]
        if added:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(added) - 1)
            self._rows.extend(added)
            self.endInsertRows()

    def row_at(self, row: int) -> ScheduleRow:
        return self._rows[row]

    def row_of(self, schedule_id: int) -> int:
        return next((i for i, r in enumerate(self._rows) if r.id == schedule_id), -1)

    def rows(self) -> list[ScheduleRow]:
        return list(self._rows)

    def job_ids(self) -> set[int]:
        return {r.last_job_id for r in self._rows if r.last_job_id is not None}

    # ------------------------------------------------------------------ model API
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, col = self._rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == SORT_ROLE:
            return self._sort_key(row, col)
        if role == SCHEDULE_ID_ROLE:
            return row.id
        if role == JOB_ID_ROLE:
            return row.last_job_id
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == COL_LAST and row.last_status:
                return _STATUS_COLORS.get(row.last_status)
            if not row.enabled:
                return _PAUSED_COLOR
            if col == COL_NEXT and row.backing_off:
                return _STATUS_COLORS["interrupted"]
        if role == Qt.ItemDataRole.FontRole and col == COL_LAST and row.last_job_id:
            font = QFont()
            font.setUnderline(True)  # a link: activating it opens the job
            return font
        if role == Qt.ItemDataRole.DecorationRole:
            if col == COL_LAST and row.last_status in _STATUS_COLORS and \
                    row.last_status != "not started":
                return icon(f"status-{row.last_status}")
            if col == COL_NAME:
                return icon("schedule")
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_MISSED:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, row: ScheduleRow, col: int) -> str:
        now = self._clock()
        if col == COL_NAME:
            return row.name
        if col == COL_KIND:  # what it does, as the menus say it (the name is in the tooltip)
            spec = registry().get(row.kind)
            return spec.title if spec is not None else row.kind
        if col == COL_RULE:
            return row.rule
        if col == COL_ENABLED:
            return "Yes" if row.enabled else "Paused"
        if col == COL_LAST:
            if row.last_run is None:
                return "Never"
            status = (row.last_status or "").capitalize()
            job = f" · #{row.last_job_id}" if row.last_job_id else ""
            return f"{_fmt(row.last_run, now)} · {status}{job}"
        if col == COL_NEXT:
            if not row.enabled:
                return "Paused"
            text = _fmt(row.next_run, now) if row.next_run else "Never"
            return text + (" (backing off)" if row.backing_off else "")
        if col == COL_MISSED:
            return str(row.missed) if row.missed else ""
        return ""

    @staticmethod
    def _sort_key(row: ScheduleRow, col: int) -> Any:
        return {
            COL_NAME: row.name.lower(), COL_KIND: row.kind, COL_RULE: row.rule.lower(),
            COL_ENABLED: int(row.enabled), COL_LAST: row.last_run or 0.0,
            COL_NEXT: row.next_run if row.next_run is not None else float("inf"),
            COL_MISSED: row.missed,
        }.get(col)

    @staticmethod
    def _tooltip(row: ScheduleRow, col: int) -> str | None:
        if col == COL_KIND:
            return f"Job kind: {row.kind}" if row.kind in registry() else (
                f"Job kind '{row.kind}' is unknown to this version of the app")
        if col == COL_NEXT and row.next_run is not None and row.enabled \
                and not row.backing_off:  # backing off, the note says why it is then
            tip: str | None = f"Next run: {_fmt_full(row.next_run)}"
        elif col == COL_LAST and row.last_run is not None:
            tip = f"Last run: {_fmt_full(row.last_run)}"
            if row.last_job_id:
                tip += f"\nJob #{row.last_job_id}: {row.last_status}. Double-click to open it."
        elif col == COL_MISSED and row.missed:
            tip = (f"{row.missed} run(s) fell due while the app was not running (or the "
                   "computer was asleep).")
        else:
            tip = None
        if row.note:
            tip = f"{tip}\n\n{row.note}" if tip else row.note
        return tip


class SchedulesView(QWidget):
    """Schedules with their last and next run; actions go to the scheduler service.

    ``scheduler`` is the :class:`~swifty_desktop.scheduling.service.SchedulerService`
    (its ``store`` is read for the rows); ``manager`` is the JobManager, whose signals
    tell when a schedule's last job changed.  ``include_diagnostic`` offers the
    diagnostic job kinds (noop, sleep...) in the editor.
    """

    showJobRequested = Signal(int)

    def __init__(self, scheduler: Any, manager: Any, parent: QWidget | None = None, *,
                 clock: Callable[[], float] = time.time,
                 include_diagnostic: bool = False) -> None:
        super().__init__(parent)
        self.scheduler = scheduler
        self.manager = manager
        self._clock = clock
        self._include_diagnostic = include_diagnostic  # offer noop, sleep... in the editor
        self.editor: ScheduleEditor | None = None
        # replaced in tests; returns True when the user confirms
        self.confirm: Callable[[str, str], bool] = self._ask

        self.model = SchedulesModel(self, clock=clock)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self._build()
        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self._refresh_timer.timeout.connect(self.refresh)
        self._tick_timer = QTimer(self, interval=TICK_MS)
        self._tick_timer.timeout.connect(self.refresh)
        self._tick_timer.start()
        scheduler.schedulesChanged.connect(self.schedule_refresh)
        manager.jobChanged.connect(self._on_job_event)
        manager.jobFinished.connect(self._on_job_event)
        self.refresh()

    # ------------------------------------------------------------------- layout
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)  # as the Jobs tab's form
        layout.setSpacing(2)
        self.toolbar = QToolBar("Schedules", self)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.actNew = self._action("&New…", "schedule", "Add a schedule", self.new_schedule)
        self.actRunNow = self._action("&Run now", "run",
                                      "Queue a run of the selected schedule now",
                                      self.run_selected)
        self.actToggle = self._action("&Pause", "cancel",
                                      "Pause or resume the selected schedule",
                                      self.toggle_selected)
        self.actEdit = self._action("&Edit…", "settings", "Change the selected schedule",
                                    self.edit_selected)
        self.actDelete = self._action("&Delete", "delete", "Delete the selected schedule",
                                      self.delete_selected)
        for action in (self.actNew, self.actRunNow, self.actToggle, self.actEdit,
                       self.actDelete):
            self.toolbar.addAction(action)
        layout.addWidget(self.toolbar)

        self.table = QTableView(self)
        self.table.setObjectName("schedulesTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_NAME, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(COL_RULE, QHeaderView.ResizeMode.Stretch)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.activated.connect(self._activated)
        self.table.selectionModel().selectionChanged.connect(self._update_actions)
        layout.addWidget(self.table, 1)

        self.messageLabel = QLabel(self)
        self.messageLabel.setObjectName("messageLabel")
        self.messageLabel.setWordWrap(True)
        self.messageLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.messageLabel.hide()
        layout.addWidget(self.messageLabel)
        self._update_actions()

    def _action(self, text: str, icon_name: str, tip: str, slot: Callable[[], Any]) -> QAction:
        action = QAction(icon(icon_name), text, self)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    # ------------------------------------------------------------------ refresh
    @Slot()
    def schedule_refresh(self) -> None:
        """Refresh soon (bursts of events cost one refresh)."""
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _on_job_event(self, job_id: int, *_: Any) -> None:
        if job_id in self.model.job_ids():
            self.schedule_refresh()

    @Slot()
    def refresh(self) -> None:
        """Re-read the schedules (two small queries) and update changed rows."""
        try:
            summaries = self.scheduler.store.summaries(now=self._clock())
        except Exception as exc:  # the database is busy or gone: say so, keep the rows
            self.show_message(f"Could not read the schedules ({exc}); the list may be out "
                              "of date. It is read again in a moment.", error=True)
            return
        first = self.model.rowCount() == 0
        self.model.set_rows([ScheduleRow.from_summary(s) for s in summaries])
        if first and self.model.rowCount():
            self._fit_columns()
        self._update_actions()

    def _fit_columns(self) -> None:
        """Columns as wide as their contents once; the rule takes the remaining width."""
        metrics = self.table.fontMetrics()
        room = {COL_LAST: metrics.horizontalAdvance("Wed 30 Sep 00:00 · Completed · #0000")
                + 28, COL_NEXT: metrics.horizontalAdvance("Wed 30 Sep 00:00 (backing off)") + 12}
        for col in range(len(COLUMNS)):
            if col != COL_RULE:
                self.table.resizeColumnToContents(col)
                if col in room:
                    self.table.setColumnWidth(col, max(self.table.columnWidth(col), room[col]))

    # ---------------------------------------------------------------- selection
    def selected(self) -> ScheduleRow | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.model.row_at(self.proxy.mapToSource(rows[0]).row())

    def select(self, schedule_id: int) -> bool:
        row = self.model.row_of(schedule_id)
        if row < 0:
            return False
        self.table.selectRow(self.proxy.mapFromSource(self.model.index(row, 0)).row())
        return True

    @Slot()
    def _update_actions(self, *_: Any) -> None:
        row = self.selected()
        for action in (self.actRunNow, self.actToggle, self.actEdit, self.actDelete):
            action.setEnabled(row is not None)
        paused = row is not None and not row.enabled
        self.actToggle.setText("Res&ume" if paused else "&Pause")
        self.actToggle.setIcon(icon("run" if paused else "cancel"))

    def _context_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if index.isValid():
            self.table.selectRow(index.row())
        menu = QMenu(self)
        row = self.selected()
        if row is not None:
            menu.addAction(self.actRunNow)
            menu.addAction(self.actToggle)
            menu.addAction(self.actEdit)
            if row.last_job_id:
                menu.addAction(icon("details"), f"Open last job (#{row.last_job_id})",
                               lambda j=row.last_job_id: self.showJobRequested.emit(j))
            menu.addSeparator()
            menu.addAction(self.actDelete)
            menu.addSeparator()
        menu.addAction(self.actNew)
        menu.popup(self.table.viewport().mapToGlobal(pos))

    @Slot(QModelIndex)
    def _activated(self, index: QModelIndex) -> None:
        """Enter or double-click: the last-run cell opens that job, other cells edit."""
        source = self.proxy.mapToSource(index)
        row = self.model.row_at(source.row())
        if source.column() == COL_LAST and row.last_job_id:
            self.showJobRequested.emit(row.last_job_id)
        else:
            self.edit_selected()

    # ------------------------------------------------------------------ actions
    def show_message(self, text: str, *, error: bool = False) -> None:
        """A line under the table; news ("Queued job #11 …") goes after a while, an
        error stays until the next message."""
        self.messageLabel.setStyleSheet("color: #c62828;" if error else "")
        self.messageLabel.setText(text)
        self.messageLabel.setVisible(bool(text))
        if text and not error:
            QTimer.singleShot(MESSAGE_MS, self, lambda: self._expire_message(text))

    def _expire_message(self, text: str) -> None:
        if self.messageLabel.text() == text:  # a newer message stays
            self.show_message("")

    @Slot()
    def run_selected(self) -> int | None:
        """Queue a run of the selected schedule now; return the job id."""
        row = self.selected()
        if row is None:
            return None
        try:
            job_id = int(self.scheduler.run_now(row.id))
        except ScheduleError as exc:
            self.show_message(str(exc), error=True)
            return None
        self.show_message(f"Queued job #{job_id} for schedule '{row.name}'.")
        self.refresh()
        return job_id

    @Slot()
    def toggle_selected(self) -> None:
        """Pause an active schedule, resume a paused one."""
        row = self.selected()
        if row is None:
            return
        try:
            record = self.scheduler.set_enabled(row.id, not row.enabled)
        except ScheduleError as exc:
            self.show_message(str(exc), error=True)
            return
        self.show_message(f"Schedule '{record.name}' "
                          + ("resumed; runs due while it was paused are not made up."
                             if record.enabled else "paused; it will not fire until resumed."))
        self.refresh()

    @Slot()
    def delete_selected(self) -> bool:
        row = self.selected()
        if row is None:
            return False
        if not self.confirm("Delete schedule",
                            f"Delete the schedule '{row.name}' ({row.rule})? Its past jobs "
                            "stay in the registry."):
            return False
        try:
            self.scheduler.remove(row.id)
        except ScheduleError as exc:
            self.show_message(str(exc), error=True)
            return False
        self.show_message(f"Deleted schedule '{row.name}'.")
        self.refresh()
        return True

    @Slot()
    def new_schedule(self) -> ScheduleEditor:
        return self._open_editor(None)

    @Slot()
    def edit_selected(self) -> ScheduleEditor | None:
        row = self.selected()
        if row is None:
            return None
        try:
            record = self.scheduler.store.get(row.id)
        except ScheduleError as exc:
            self.show_message(str(exc), error=True)
            self.refresh()
            return None
        return self._open_editor(record)

    def _open_editor(self, record: Any) -> ScheduleEditor:
        if self.editor is not None:
            self.editor.close()
        editor = ScheduleEditor(self.scheduler, record, self, clock=self._clock,
                                include_diagnostic=self._include_diagnostic)
        editor.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        editor.saved.connect(self._saved)
        editor.destroyed.connect(lambda *_, e=editor: self._editor_closed(e))
        self.editor = editor
        editor.open()  # window-modal, does not block the event loop
        return editor

    def _editor_closed(self, editor: ScheduleEditor) -> None:
        if self.editor is editor:
            self.editor = None

    @Slot(int)
    def _saved(self, schedule_id: int) -> None:
        self.refresh()
        self.select(schedule_id)
        row = self.selected()
        if row is not None:
            self.show_message(f"Saved schedule '{row.name}' ({row.rule}).")

    def _ask(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text,
                                      QMessageBox.StandardButton.Yes
                                      | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes
