"""The job registry: a dockable panel listing every job, live.

Filter by status and kind, search (database-side), right-click or keyboard actions
on one or many rows (Retry, Cancel, Open output, Show in folder, Copy error, Show
details, Remove from history) and "Retry all failed" for the current filter.
The dock holds tabs: Jobs, and Schedules when the scheduler provides a view.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QItemSelection,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QFont, QKeySequence, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDockWidget,
    QHeaderView,
    QMenu,
    QMessageBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTabWidget,
    QWidget,
)

from swifty_desktop.gui import job_actions
from swifty_desktop.gui.registry_model import (
    COL_DURATION,
    COL_FINISHED,
    COL_JOB,
    COL_PROGRESS,
    COL_RESULT,
    COL_STARTED,
    COL_STATUS,
    COL_TRIGGER,
    JOB_ROLE,
    JOB_TEXT_ROLE,
    PROGRESS_ROLE,
    JobTableModel,
)
from swifty_desktop.gui.uitools import icon, load_form
from swifty_desktop.jobs.manager import JobManager
from swifty_desktop.jobs.model import JobRecord, JobStatus
from swifty_desktop.jobs.store import JobQuery
from swifty_desktop.tasks import all_kinds

SEARCH_DEBOUNCE_MS = 250  # a search runs once typing pauses, not on every key
MAX_RETRY_ALL = 10_000  # "Retry all failed" at most retries this many at once

STATUS_CHOICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("All statuses", ()),
    ("Active (queued or running)", ("queued", "running")),
    ("Queued", ("queued",)),
    ("Running", ("running",)),
    ("Completed", ("completed",)),
    ("Failed", ("failed",)),
    ("Cancelled", ("cancelled",)),
    ("Interrupted", ("interrupted",)),
    ("Needs attention (failed or interrupted)", ("failed", "interrupted")),
)


class ProgressDelegate(QStyledItemDelegate):
    """Paints a progress bar with the current message for running jobs."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        fraction, message, status = index.data(PROGRESS_ROLE)
        if status not in (JobStatus.RUNNING, JobStatus.QUEUED) or \
                (status is JobStatus.QUEUED and not fraction):
            super().paint(painter, option, index)
            return
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        bar = QStyleOptionProgressBar()
        bar.rect = QRect(option.rect.adjusted(3, 3, -3, -3))
        bar.minimum, bar.maximum = 0, 1000
        if fraction is None:
            bar.minimum = bar.maximum = 0  # busy indicator: the amount is unknown
            bar.progress = 0
            text = message or "Working…"
        else:
            bar.progress = int(max(0.0, min(1.0, fraction)) * 1000)
            text = f"{fraction * 100:.0f}%" + (f" · {message}" if message else "")
        bar.textVisible = False  # drawn below, on one line, elided to fit
        bar.state = option.state | QStyle.StateFlag.State_Horizontal
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)
        text_rect = bar.rect.adjusted(6, 0, -6, 0)
        elided = option.fontMetrics.elidedText(text, Qt.TextElideMode.ElideRight,
                                               text_rect.width())
        align = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        filled = QRect(bar.rect)
        filled.setWidth(int(bar.rect.width() * bar.progress / 1000) if bar.maximum else 0)
        painter.save()
        # the text over the filled part in the highlight's text colour, the rest in
        # the normal one, so every letter stays readable
        painter.setClipRect(option.rect)
        painter.setPen(option.palette.color(QPalette.ColorRole.Text))
        painter.drawText(text_rect, align, elided)
        if filled.width() > 0:
            painter.setClipRect(filled)
            painter.setPen(option.palette.color(QPalette.ColorRole.HighlightedText))
            painter.drawText(text_rect, align, elided)
        painter.restore()


class JobDelegate(QStyledItemDelegate):
    """The Job cell: the job's title, then its kind in smaller, dimmer text.

    The title keeps priority when the column is narrow: the kind is left out before
    the title is elided (the tooltip always names the kind).
    """

    GAP = 8  # pixels between the title and the kind

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        parts = index.data(JOB_TEXT_ROLE)
        if not parts:
            super().paint(painter, option, index)
            return
        title, kind = parts
        if not kind:
            super().paint(painter, option, index)  # the title alone, as any cell
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""  # background, selection and focus from the style; text below
        widget = opt.widget
        style = widget.style() if widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        margin = style.pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, widget) + 1
        rect = style.subElementRect(QStyle.SubElement.SE_ItemViewItemText, opt, widget) \
            .adjusted(margin, 0, -margin, 0)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        group = QPalette.ColorGroup.Normal if opt.state & QStyle.StateFlag.State_Active \
            else QPalette.ColorGroup.Inactive
        text_color = opt.palette.color(group, QPalette.ColorRole.HighlightedText if selected
                                       else QPalette.ColorRole.Text)
        kind_color = opt.palette.color(group, QPalette.ColorRole.HighlightedText if selected
                                       else QPalette.ColorRole.PlaceholderText)
        small = QFont(opt.font)  # a copy: opt.font itself paints the title
        small.setPointSizeF(max(6.0, opt.font.pointSizeF() - 1))
        painter.save()
        painter.setFont(opt.font)
        metrics = painter.fontMetrics()
        painter.setFont(small)
        small_metrics = painter.fontMetrics()
        title_width = metrics.horizontalAdvance(title)
        kind_room = rect.width() - title_width - self.GAP
        # the title keeps priority: the kind is left out (a clipped kind says little)
        # before the title is elided
        shown_kind = kind if small_metrics.horizontalAdvance(kind) <= kind_room else ""
        shown = metrics.elidedText(title, Qt.TextElideMode.ElideRight, rect.width())
        align = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        painter.setFont(opt.font)
        painter.setPen(text_color)
        painter.drawText(rect, align, shown)
        if shown_kind:
            kind_rect = rect.adjusted(title_width + self.GAP, 0, 0, 0)
            painter.setFont(small)
            painter.setPen(kind_color)
            painter.drawText(kind_rect, align, shown_kind)
        painter.restore()


class RegistryPanel(QWidget):
    """The Jobs tab: filters, the table, actions.  Built from ui/registry_panel.ui."""

    showDetailsRequested = Signal(int)
    message = Signal(str)  # a sentence for the status bar

    def __init__(self, manager: JobManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        load_form("registry_panel.ui", self)
        self.manager = manager
        self.model = JobTableModel(manager, parent=self)
        view = self.jobsView
        view.setModel(self.model)
        view.setItemDelegateForColumn(COL_PROGRESS, ProgressDelegate(view))
        view.setItemDelegateForColumn(COL_JOB, JobDelegate(view))
        header = view.horizontalHeader()
        # the Result column takes the rest: on a 1280 px window about 300 px, enough
        # for "1,035 e-mails written to the outbox"
        for col, width in ((COL_JOB, 260), (COL_TRIGGER, 170), (COL_STATUS, 105),
                           (COL_PROGRESS, 200), (COL_STARTED, 72), (COL_FINISHED, 72),
                           (COL_DURATION, 68)):
            view.setColumnWidth(col, width)
        header.setSectionResizeMode(COL_RESULT, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(60)
        view.verticalHeader().setDefaultSectionSize(26)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)

        for label, statuses in STATUS_CHOICES:
            self.statusFilter.addItem(label, statuses)
        self.kindFilter.addItem("All kinds", "")
        for kind in all_kinds():
            if not kind.diagnostic:
                self.kindFilter.addItem(kind.title, kind.name)
        self.kindFilter.addItem("Diagnostic kinds…", "__diagnostic__")
        self._search_timer = QTimer(self, singleShot=True, interval=SEARCH_DEBOUNCE_MS)
        self._search_timer.timeout.connect(self.apply_filter)
        self.searchEdit.textChanged.connect(lambda _t: self._search_timer.start())
        self.statusFilter.currentIndexChanged.connect(self.apply_filter)
        self.kindFilter.currentIndexChanged.connect(self.apply_filter)
        self.allAttempts.toggled.connect(self.apply_filter)
        self.retryFailedButton.clicked.connect(self.retry_all_failed)
        view.customContextMenuRequested.connect(self._context_menu)
        view.doubleClicked.connect(self._activated)
        self.model.countChanged.connect(self._update_footer)
        self.model.rowsInserted.connect(self._keep_scroll_anchor)
        self._create_actions()
        # keyboard shortcuts act on what is selected now, not on what the last context
        # menu saw: the actions follow the selection and the selected rows' changes
        self._state_timer = QTimer(self, singleShot=True, interval=0)
        self._state_timer.timeout.connect(self.update_action_state)
        view.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.model.dataChanged.connect(self._on_rows_changed)
        self.model.modelReset.connect(self._state_timer.start)  # selection cleared silently
        self.model.rowsRemoved.connect(self._state_timer.start)
        self.update_action_state()
        self._update_footer()

    # ------------------------------------------------------------------ actions
    def _create_actions(self) -> None:
        view = self.jobsView

        def make(text: str, icon_name: str, shortcut: Any, slot: Any) -> QAction:
            action = QAction(icon(icon_name), text, self)
            if shortcut:
                action.setShortcut(QKeySequence(shortcut))
                action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(slot)
            view.addAction(action)
            return action

        self.actRetry = make("Retry", "retry", "Ctrl+R", self.retry_selected)
        self.actCancel = make("Cancel", "cancel", "Ctrl+K", self.cancel_selected)
        self.actOpen = make("Open output", "open", "Ctrl+O", self.open_selected)
        self.actFolder = make("Show in folder", "folder", "Ctrl+Shift+O", self.folder_selected)
        self.actCopy = make("Copy error", "copy", QKeySequence.StandardKey.Copy,
                            self.copy_selected)
        self.actDetails = make("Show details", "details", "Return", self.details_selected)
        self.actRemove = make("Remove from history", "delete", QKeySequence.StandardKey.Delete,
                              self.remove_selected)

    def selected_jobs(self) -> list[JobRecord]:
        rows = sorted({i.row() for i in self.jobsView.selectionModel().selectedRows()})
        return [self.model.job_at(r) for r in rows]

    @Slot()
    def update_action_state(self) -> None:
        """Enable each action for what the current selection allows."""
        self._set_action_state(self.selected_jobs())

    def _on_selection_changed(self, _selected: QItemSelection,
                              _deselected: QItemSelection) -> None:
        self.update_action_state()  # at once: a shortcut may follow in the same turn

    def _on_rows_changed(self, top_left: QModelIndex, bottom_right: QModelIndex,
                         _roles: Any = None) -> None:
        if top_left.column() != 0:
            return  # a progress tick: status and outputs are unchanged
        selection = self.jobsView.selectionModel()
        if any(selection.isRowSelected(r, QModelIndex())
               for r in range(top_left.row(), bottom_right.row() + 1)):
            self._state_timer.start()

    def _set_action_state(self, jobs: list[JobRecord]) -> None:
        self.actRetry.setEnabled(any(job_actions.can_retry(j) for j in jobs))
        self.actCancel.setEnabled(any(job_actions.can_cancel(j) for j in jobs))
        single = jobs[0] if len(jobs) == 1 else None
        self.actOpen.setEnabled(single is not None and job_actions.has_output(single))
        self.actFolder.setEnabled(single is not None and bool(single.output_path))
        self.actCopy.setEnabled(single is not None and single.error is not None)
        self.actDetails.setEnabled(single is not None)
        self.actRemove.setEnabled(any(j.status.is_final for j in jobs))

    def _context_menu(self, pos: Any) -> None:
        jobs = self.selected_jobs()
        if not jobs:
            return
        self._set_action_state(jobs)
        menu = QMenu(self)
        for action in (self.actRetry, self.actCancel, None, self.actOpen, self.actFolder,
                       self.actCopy, self.actDetails, None, self.actRemove):
            if action is None:
                menu.addSeparator()
            else:
                menu.addAction(action)
        menu.popup(self.jobsView.viewport().mapToGlobal(pos))
        self._menu = menu  # kept for tests and so it is not collected while open

    @Slot()
    def retry_selected(self) -> list[int]:
        new_ids, problems = job_actions.retry_jobs(self.manager, self.selected_jobs())
        self.model.flush()  # the new attempts are the acknowledgement: show them now
        self._report("Retry", len(new_ids), problems)
        return new_ids

    @Slot()
    def cancel_selected(self) -> int:
        count, problems = job_actions.cancel_jobs(self.manager, self.selected_jobs())
        self._report("Cancel", count, problems)
        return count

    @Slot()
    def open_selected(self) -> None:
        jobs = self.selected_jobs()
        if len(jobs) == 1 and not job_actions.open_output(jobs[0]):
            self.message.emit(f"Job #{jobs[0].id} has no output file to open.")

    @Slot()
    def folder_selected(self) -> None:
        jobs = self.selected_jobs()
        if len(jobs) == 1:
            job_actions.show_in_folder(jobs[0])

    @Slot()
    def copy_selected(self) -> None:
        jobs = self.selected_jobs()
        if len(jobs) == 1 and jobs[0].error is not None:
            job_actions.copy_error(jobs[0])
            self.message.emit(f"Copied the error of job #{jobs[0].id}.")

    @Slot()
    def details_selected(self) -> None:
        jobs = self.selected_jobs()
        if jobs:
            self.showDetailsRequested.emit(jobs[0].id)

    @Slot()
    def remove_selected(self) -> int:
        jobs = [j for j in self.selected_jobs() if j.status.is_final]
        if not jobs:
            return 0
        if len(jobs) > 1 and QMessageBox.question(
                self, "Remove from history",
                f"Remove {len(jobs)} finished jobs from the history? Their output files stay "
                "where they are.") != QMessageBox.StandardButton.Yes:
            return 0
        removed = self.manager.store.delete([j.id for j in jobs])
        self.model.reload()  # rows removed in bulk: a reset is the right signal
        self.message.emit(f"Removed {removed} job{'s' if removed != 1 else ''} from the history.")
        return removed

    @Slot()
    def retry_all_failed(self) -> list[int]:
        """Retry every failed (latest) attempt that the current filter shows."""
        query = self.model.query
        statuses = tuple(s for s in (query.statuses or ("failed",)) if s == "failed")
        if not statuses:
            self.message.emit("The current filter shows no failed jobs.")
            return []
        failed_query = JobQuery(statuses=("failed",), kinds=query.kinds, text=query.text,
                                latest_only=True)
        ids = self.manager.store.list_ids(failed_query, limit=MAX_RETRY_ALL)
        if not ids:
            self.message.emit("No failed jobs to retry.")
            return []
        if len(ids) > 1 and QMessageBox.question(
                self, "Retry all failed",
                f"Queue a new attempt of {len(ids):,} failed jobs?") != \
                QMessageBox.StandardButton.Yes:
            return []
        # one transaction for all of them; the model shows them in one coalesced flush.
        # Thousands still take a moment (0.4 s for 8,000 here): show that it is working.
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            new_ids = self.manager.retry_many(ids)
            self.model.flush()
        finally:
            QApplication.restoreOverrideCursor()
        skipped = len(ids) - len(new_ids)
        self._report("Retry", len(new_ids), [
            f"{skipped:,} of the failed jobs were not retried: they were retried or removed "
            "meanwhile. Refresh the filter to see their current state."] if skipped else [])
        return new_ids

    def _report(self, verb: str, count: int, problems: list[str]) -> None:
        if count:
            done = {"Retry": "queued again", "Cancel": "asked to stop"}[verb]
            self.message.emit(f"{count} job{'s' if count != 1 else ''} {done}.")
        if problems:
            QMessageBox.warning(self, verb, "\n".join(problems[:10]))

    def _activated(self, index: QModelIndex) -> None:
        job = index.data(JOB_ROLE)
        if job is not None:
            self.showDetailsRequested.emit(job.id)

    # ------------------------------------------------------------------ filters
    @Slot()
    def apply_filter(self) -> None:
        statuses = self.statusFilter.currentData() or ()
        kind = self.kindFilter.currentData() or ""
        diagnostic = tuple(k.name for k in all_kinds() if k.diagnostic)
        kinds: tuple[str, ...] = ()
        if kind == "__diagnostic__":
            kinds = diagnostic
        elif kind:
            kinds = (kind,)
        self.model.set_query(JobQuery(
            statuses=tuple(statuses), kinds=kinds, text=self.searchEdit.text(),
            latest_only=not self.allAttempts.isChecked()))

    def show_status(self, statuses: tuple[str, ...]) -> None:
        for i in range(self.statusFilter.count()):
            if tuple(self.statusFilter.itemData(i) or ()) == statuses:
                self.statusFilter.setCurrentIndex(i)
                return

    def _update_footer(self) -> None:
        count, more = self.model.rowCount(), self.model.canFetchMore()
        noun = "job" if count == 1 and not more else "jobs"
        self.footerLabel.setText(f"{count:,}{'+' if more else ''} {noun} shown · double-click "
                                 "a job for details, right-click for actions")

    def _keep_scroll_anchor(self, _parent: QModelIndex, first: int, last: int) -> None:
        """New jobs appear at the top; if the user scrolled down, keep what they look at."""
        bar = self.jobsView.verticalScrollBar()
        if bar.value() > 0 and first == 0:
            bar.setValue(bar.value() + (last - first + 1) *
                         self.jobsView.verticalHeader().defaultSectionSize())

    def select_job(self, job_id: int) -> bool:
        row = self.model.row_of(job_id)
        if row < 0:
            return False
        self.jobsView.selectRow(row)
        self.jobsView.scrollTo(self.model.index(row, 0))
        return True


class RegistryDock(QDockWidget):
    """The dock around the registry (and the schedules view, when there is one)."""

    def __init__(self, manager: JobManager, parent: QWidget | None = None) -> None:
        super().__init__("Job registry", parent)
        self.setObjectName("jobRegistryDock")  # saveState/restoreState need a name
        self.setAllowedAreas(Qt.DockWidgetArea.AllDockWidgetAreas)
        self.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.panel = RegistryPanel(manager, self.tabs)
        self.tabs.addTab(self.panel, icon("jobs"), "Jobs")
        self.setWidget(self.tabs)

    def add_tab(self, widget: QWidget, title: str, icon_name: str) -> None:
        self.tabs.addTab(widget, icon(icon_name), title)
