"""The main window: business data tabs, job actions, the job registry dock.

It renders and forwards intent: every action validates its parameters here (in
the GUI thread, cheaply), submits to the JobManager and acknowledges at once in
the status bar.  Nothing here waits for a job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from swifty_desktop import APP_NAME, __version__
from swifty_desktop.gui.data_models import (
    CUSTOMERS,
    ORDERS,
    PRODUCTS,
    SqlTableModel,
    tables_changed_by,
)
from swifty_desktop.gui.forms import ParamDialog, SettingsDialog
from swifty_desktop.gui.job_details import JobDetailsDialog
from swifty_desktop.gui.registry_dock import RegistryDock
from swifty_desktop.gui.uitools import icon, load_form
from swifty_desktop.jobs.manager import JobManager
from swifty_desktop.jobs.model import Trigger
from swifty_desktop.paths import DataDir
from swifty_desktop.settings import Settings
from swifty_desktop.tasks import Action, KindSpec, ParamError, all_kinds

MENU_ORDER = ("File", "Data", "Reports", "Sync", "Mail", "Tools", "View", "Help")
FAILED_WINDOW_S = 24 * 3600  # the status bar counts failures of the last 24 hours
TABLE_REFRESH_MS = 300  # finished jobs that changed the same tab refresh it once


class StatusSummary(QToolButton):
    """"2 running · 3 queued · 1 failed" in the status bar; a click opens the registry."""

    def __init__(self, manager: JobManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.manager = manager
        self.setAutoRaise(True)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.setIcon(icon("jobs"))
        self.setToolTip("Open the job registry")
        self.clock = time.time  # tests move it
        self.counts: dict[str, int] = {}
        manager.countsChanged.connect(self.refresh)
        # failures leave the 24-hour window even when nothing else happens
        self._timer = QTimer(self, interval=60_000)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Re-count: running and queued jobs, failures of the last 24 hours."""
        since = self.clock() - FAILED_WINDOW_S
        self.counts = self.manager.store.summary_counts(since)
        parts = []
        for status, word in (("running", "running"), ("queued", "queued"),
                             ("failed", "failed"), ("interrupted", "interrupted")):
            if self.counts.get(status):
                parts.append(f"{self.counts[status]:,} {word}")
        self.setText(" · ".join(parts) if parts else "No jobs running")


class WaitForJobsDialog(QDialog):
    """"Waiting for N running jobs to finish" with a bar and the user's way out.

    "Keep working" (also Esc, or closing the dialog) sets :attr:`keep_working`: the
    app does not quit.  "Cancel them and quit now" sets :attr:`quit_now`.  The owner
    accepts the dialog when every job has finished.
    """

    def __init__(self, total: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Waiting for jobs")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.setMinimumWidth(440)  # three job titles wrap onto a few lines, not many
        layout = QVBoxLayout(self)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.bar.setFormat("%v of %m finished")
        self.bar.setRange(0, total)
        self.bar.setValue(0)
        buttons = QDialogButtonBox(self)
        # the safe choice is the default: Enter or Esc never cancels anybody's work
        self.keepButton = buttons.addButton("Keep working", QDialogButtonBox.ButtonRole.RejectRole)
        self.keepButton.setToolTip("Don't quit: the jobs go on and queued jobs start again")
        self.keepButton.setDefault(True)
        self.quitNowButton = buttons.addButton("Cancel them and quit now",
                                               QDialogButtonBox.ButtonRole.DestructiveRole)
        self.quitNowButton.setToolTip("Cancel the running jobs and quit at once")
        buttons.rejected.connect(self.reject)
        self.quitNowButton.clicked.connect(self._quit_now)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(buttons)
        self.keep_working = False
        self.quit_now = False

    def reject(self) -> None:
        self.keep_working = True
        super().reject()

    def _quit_now(self) -> None:
        self.quit_now = True
        self.accept()

    def setLabelText(self, text: str) -> None:
        self.label.setText(text)

    def setValue(self, value: int) -> None:
        self.bar.setValue(value)

    def value(self) -> int:
        return self.bar.value()

    def maximum(self) -> int:
        return self.bar.maximum()


class MainWindow(QMainWindow):
    """See the module docstring."""

    quitRequested = Signal()

    def __init__(self, manager: JobManager, data_dir: DataDir, *, scheduler: Any = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        load_form("main_window.ui", self)
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(icon("swifty"))
        self.manager = manager
        self.data_dir = data_dir
        self.scheduler = scheduler
        self.settings_store = Settings(manager.store.engine)
        self.ui_settings = QSettings(str(data_dir.root / "ui.ini"), QSettings.Format.IniFormat)
        self.tray_available = False  # set by the app when a tray icon is shown
        self.really_quit = False
        self._details: dict[int, JobDetailsDialog] = {}
        self.kind_actions: dict[str, QAction] = {}
        self._stale_tables: set[str] = set()
        self._finished_elsewhere: set[int] = set()
        self._ack: tuple[int, str] | None = None  # (job, message) the status bar acknowledged
        self.restore_flow: Any = None
        self._table_timer = QTimer(self, singleShot=True, interval=TABLE_REFRESH_MS)
        self._table_timer.timeout.connect(self._refresh_stale_tables)

        self._init_data_tabs()
        self.dock = RegistryDock(manager, self)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.registry = self.dock.panel
        self.registry.showDetailsRequested.connect(self.show_details)
        self.registry.message.connect(lambda text: self.statusBar().showMessage(text, 6000))
        if scheduler is not None:
            self.attach_scheduler(scheduler)
        self.bannerArea.hide()
        self._init_menus()
        self.summary = StatusSummary(manager, self)
        self.summary.clicked.connect(lambda _checked=False: self.show_registry())
        self.statusBar().addPermanentWidget(self.summary)
        manager.jobFinished.connect(self._on_job_finished)
        self.resize(1280, 800)
        self.restore_layout()

    # ------------------------------------------------------------------ data tabs
    def _init_data_tabs(self) -> None:
        engine = self.manager.store.engine
        self.tables: dict[str, SqlTableModel] = {}
        for spec, prefix in ((PRODUCTS, "products"), (CUSTOMERS, "customers"),
                             (ORDERS, "orders")):
            model = SqlTableModel(engine, spec, parent=self)
            view = getattr(self, f"{prefix}View")
            view.setModel(model)
            view.verticalHeader().setDefaultSectionSize(24)
            view.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
            view.horizontalHeader().setSectionsMovable(True)
            for col, column in enumerate(spec.columns):
                view.setColumnWidth(col, column.width)
            search = getattr(self, f"{prefix}Search")
            timer = QTimer(self, singleShot=True, interval=250)
            timer.timeout.connect(lambda m=model, s=search: m.set_search(s.text()))
            search.textChanged.connect(lambda _t, t=timer: t.start())
            flag = getattr(self, f"{prefix}Flag", None)
            if flag is not None:
                flag.toggled.connect(model.set_flag)
            label = getattr(self, f"{prefix}Count")
            model.countChanged.connect(lambda m=model, lab=label: self._update_count(m, lab))
            model.modelReset.connect(lambda m=model, lab=label: self._update_count(m, lab))
            # counting rows (a join over all orders) waits until the window is painted
            QTimer.singleShot(0, lambda m=model, lab=label: self._update_count(m, lab))
            self.tables[spec.name] = model
        self.dataTabs.setTabIcon(0, icon("spreadsheet"))
        self.dataTabs.setTabIcon(1, icon("mail"))
        self.dataTabs.setTabIcon(2, icon("report"))

    @staticmethod
    def _update_count(model: SqlTableModel, label: Any) -> None:
        total = model.total()
        shown = model.rowCount()
        noun = "row" if total == 1 else "rows"
        label.setText(f"{total:,} {noun}" if shown >= total else
                      f"{shown:,} of {total:,} {noun}")

    def refresh_tables(self, names: Any = None) -> None:
        """Re-read the data tabs (all, or those named), keeping scroll and selection."""
        for name, model in self.tables.items():
            if names is None or name in names:
                model.refresh()

    def show_data_tab(self, name: str) -> None:
        """Bring the window and the tab of table ``name`` (products, ...) to the front."""
        self.show_window()
        tab = getattr(self, f"{name}Tab", None)
        if tab is not None:
            self.dataTabs.setCurrentWidget(tab)

    # ---------------------------------------------------------------- menus etc.
    def _menu(self, name: str) -> QMenu:
        return getattr(self, f"menu{name}")  # type: ignore[no-any-return]

    def _init_menus(self) -> None:
        toolbar = self.mainToolBar
        for spec in all_kinds():
            if spec.diagnostic:
                continue
            actions = spec.actions or (Action(label=f"{spec.title}…", menu="Tools",
                                              ask=tuple(p.name for p in spec.params),
                                              icon=spec.icon),)
            for decl in actions:
                action = QAction(icon(decl.icon or spec.icon), decl.label, self)
                if decl.shortcut:
                    action.setShortcut(QKeySequence(decl.shortcut))
                action.setToolTip(decl.tooltip or spec.description or decl.label)
                action.setStatusTip(decl.tooltip or spec.description or decl.label)
                action.triggered.connect(lambda _c=False, s=spec, d=decl: self.run_action(s, d))
                menu_name = decl.menu if decl.menu in MENU_ORDER else "Tools"
                self._menu(menu_name).addAction(action)
                if decl.toolbar:
                    toolbar.addAction(action)
                self.kind_actions[decl.label] = action

        file_menu = self._menu("File")
        restore = file_menu.addAction(icon("restore"), "&Restore from backup…",
                                      self.restore_from_backup)
        restore.setStatusTip("Put a backup of the database back (the app closes and opens "
                             "again)")
        file_menu.addSeparator()
        settings = file_menu.addAction(icon("settings"), "&Settings…", self.open_settings)
        preferences = QKeySequence(QKeySequence.StandardKey.Preferences)
        # some desktops define no Preferences key: Ctrl+, is the common choice there
        settings.setShortcut(preferences if not preferences.isEmpty() else QKeySequence("Ctrl+,"))
        file_menu.addAction(icon("folder"), "Open &data folder",
                            lambda: QDesktopServices.openUrl(
                                QUrl.fromLocalFile(str(self.data_dir.root))))
        file_menu.addAction(icon("folder"), "Open &outputs folder",
                            lambda: QDesktopServices.openUrl(
                                QUrl.fromLocalFile(str(self.data_dir.outputs))))
        file_menu.addSeparator()
        quit_action = file_menu.addAction(icon("quit"), "&Quit", self.request_quit)
        quit_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Quit))
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)

        view_menu = self._menu("View")
        toggle = self.dock.toggleViewAction()
        toggle.setText("&Job registry")
        toggle.setIcon(icon("jobs"))
        toggle.setShortcut(QKeySequence("Ctrl+J"))
        view_menu.addAction(toggle)
        failed = view_menu.addAction(icon("status-failed"), "&Failed jobs",
                                     lambda: self.show_registry(("failed", "interrupted")))
        failed.setShortcut(QKeySequence("Ctrl+Shift+J"))
        view_menu.addAction(icon("status-running"), "&Active jobs",
                            lambda: self.show_registry(("queued", "running")))
        view_menu.addSeparator()
        view_menu.addAction("&Refresh data", self.refresh_tables).setShortcut(
            QKeySequence(QKeySequence.StandardKey.Refresh))

        help_menu = self._menu("Help")
        help_menu.addAction(icon("folder"), "Open &log folder",
                            lambda: QDesktopServices.openUrl(
                                QUrl.fromLocalFile(str(self.data_dir.logs))))
        help_menu.addAction(icon("swifty"), f"&About {APP_NAME}", self.show_about)
        for name in MENU_ORDER:  # hide menus nobody filled
            menu = self._menu(name)
            menu.menuAction().setVisible(bool(menu.actions()))
        toolbar.addSeparator()
        toolbar.addAction(toggle)

    def attach_scheduler(self, scheduler: Any) -> None:
        """Show the Schedules tab beside the registry (the scheduler starts after the
        window, so that the first paint does not wait for it)."""
        from swifty_desktop.gui.schedules_view import SchedulesView

        self.scheduler = scheduler
        view = SchedulesView(scheduler, self.manager, self.dock.tabs)
        if hasattr(view, "showJobRequested"):
            view.showJobRequested.connect(self.show_details)
        self.dock.add_tab(view, "Schedules", "schedule")
        self.schedules_view = view
        self._restore_columns("schedules/columns", view.table)

    # ------------------------------------------------------------------- actions
    def run_action(self, spec: KindSpec, decl: Action, *, params: dict[str, Any] | None = None
                   ) -> int | None:
        """Validate, submit, acknowledge.  ``params`` skips the dialog (tests, scripts)."""
        if params is None:
            if decl.ask:
                dialog = ParamDialog(spec, title=decl.label.rstrip("…"), fixed=decl.params,
                                     ask=decl.ask, start_dir=str(self.data_dir.root),
                                     parent=self)
                if dialog.exec() != QDialog.DialogCode.Accepted:
                    return None
                params = dialog.params
            else:
                params = dict(decl.params)
        try:
            clean = spec.validate(params)
            job_id = self.manager.submit(spec.name, clean, Trigger.user(decl.label.rstrip("…")))
        except ParamError as exc:
            QMessageBox.warning(self, decl.label.rstrip("…"), str(exc).capitalize())
            return None
        title = spec.make_title(clean)
        ack = decl.ack.format(title=title) if decl.ack else \
            f"{title}: queued as job #{job_id} — it runs in the background."
        self.statusBar().showMessage(ack, 8000)
        self._ack = (job_id, ack)  # cleared when that job finishes (see _on_job_finished)
        return job_id

    def restore_from_backup(self, path: Path | None = None) -> Any:
        """File → Restore from backup…: choose (or take ``path``), check, confirm, hand
        over to a restoring process and quit.  Returns the flow (tests drive it)."""
        from swifty_desktop.gui.restore import RestoreFlow

        if self.restore_flow is None:
            self.restore_flow = RestoreFlow(self)
        if path is None:
            self.restore_flow.choose()
        else:
            self.restore_flow.check(Path(path))
        return self.restore_flow

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings_store, self)
        try:
            dialog.exec()
        finally:
            dialog.deleteLater()  # not one dialog per opening kept until the window goes

    def show_about(self) -> None:
        QMessageBox.about(
            self, f"About {APP_NAME}",
            f"<h3>{APP_NAME} {__version__}</h3><p>Heavy business jobs in the background: "
            "exports, imports, reports, supplier syncs and e-mail, with a job registry that "
            f"shows every one of them.</p><p>Data folder: <code>{self.data_dir.root}</code></p>")

    def show_registry(self, statuses: tuple[str, ...] | None = None) -> None:
        self.show_window()
        self.dock.show()
        self.dock.raise_()
        self.dock.tabs.setCurrentWidget(self.registry)
        if statuses is not None:
            self.registry.show_status(tuple(statuses))
        self.registry.jobsView.setFocus()

    @Slot(int)
    def show_details(self, job_id: int) -> JobDetailsDialog:
        self.show_window()
        dialog = self._details.get(job_id)
        if dialog is None:
            dialog = JobDetailsDialog(self.manager, job_id, self)
            dialog.destroyed.connect(lambda _o=None, j=job_id: self._details.pop(j, None))
            self._details[job_id] = dialog
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    def show_window(self) -> None:
        if self.isMinimized():
            self.showNormal()
        self.show()
        self.raise_()
        self.activateWindow()

    @Slot(int, str)
    def _on_job_finished(self, job_id: int, status: str) -> None:
        """Refresh the tabs a completed job changed — coalesced, and never a query per job.

        The status bar's "working in the background" for this job goes: it is done
        (a newer message stays).
        """
        if self._ack is not None and self._ack[0] == job_id:
            if self.statusBar().currentMessage() == self._ack[1]:
                self.statusBar().clearMessage()
            self._ack = None
        if status != "completed":
            return
        job = self.manager.snapshot(job_id)
        if job is not None:
            self._stale_tables.update(tables_changed_by(job.kind, job.params))
        else:  # it ran in another process: its kind is read with the others, once
            self._finished_elsewhere.add(job_id)
        if (self._stale_tables or self._finished_elsewhere) and not self._table_timer.isActive():
            self._table_timer.start()

    def _refresh_stale_tables(self) -> None:
        elsewhere, self._finished_elsewhere = self._finished_elsewhere, set()
        if elsewhere:
            for job in self.manager.store.get_many(elsewhere).values():
                self._stale_tables.update(tables_changed_by(job.kind, job.params))
        stale, self._stale_tables = self._stale_tables, set()
        if stale:
            self.refresh_tables(stale)

    # -------------------------------------------------------- layout & closing
    def restore_layout(self) -> None:
        geometry = self.ui_settings.value("window/geometry")
        state = self.ui_settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        else:
            self.resizeDocks([self.dock], [300], Qt.Orientation.Vertical)
        self._restore_columns("registry/columns", self.registry.jobsView)

    def save_layout(self) -> None:
        self.ui_settings.setValue("window/geometry", self.saveGeometry())
        self.ui_settings.setValue("window/state", self.saveState())
        # column widths the user dragged (and the schedules' sort column) come back too
        self.ui_settings.setValue("registry/columns",
                                  self.registry.jobsView.horizontalHeader().saveState())
        view = getattr(self, "schedules_view", None)
        if view is not None:
            self.ui_settings.setValue("schedules/columns",
                                      view.table.horizontalHeader().saveState())
        self.ui_settings.sync()

    def _restore_columns(self, key: str, table: Any) -> None:
        state = self.ui_settings.value(key)
        if state is not None:
            table.horizontalHeader().restoreState(state)

    @Slot()
    def request_quit(self) -> None:
        """Quit from the menu or the tray: ask first if jobs are running."""
        if self.confirm_quit():
            self.really_quit = True
            self.save_layout()
            self.quitRequested.emit()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.really_quit:
            event.accept()
            return
        self.save_layout()
        running = self.manager.running_ids()
        if running and self.tray_available:
            choice = self.ask_about_running_jobs(len(running), tray=True)
            if choice == "tray":
                event.ignore()
                self.hide()
                return
            if choice == "stay":
                event.ignore()
                return
            self._quit_with(choice)
            event.ignore()
            return
        if self.confirm_quit():
            self.really_quit = True
            event.accept()
            self.quitRequested.emit()
        else:
            event.ignore()

    def confirm_quit(self) -> bool:
        """Whether to quit now: asks when jobs are running (and may wait for them)."""
        running = self.manager.running_ids()
        if not running:
            return True
        choice = self.ask_about_running_jobs(len(running), tray=False)
        if choice == "stay":
            return False
        if choice == "wait":
            return self.wait_for_jobs()
        return True  # "cancel": the app cancels running jobs as it stops the engine

    def _quit_with(self, choice: str) -> None:
        if choice == "wait" and not self.wait_for_jobs():
            return  # "Keep working"
        self.really_quit = True
        self.quitRequested.emit()

    def ask_about_running_jobs(self, count: int, *, tray: bool) -> str:
        """"tray" (keep running), "cancel" (cancel and quit), "wait", or "stay"."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Jobs are running")
        plural = "s are" if count != 1 else " is"
        box.setText(f"{count} job{plural} still running.")
        box.setInformativeText("Keep them running in the background, cancel them and quit, "
                               "or wait for them to finish and then quit?")
        buttons: dict[Any, str] = {}
        if tray:
            buttons[box.addButton("Keep running in the tray",
                                  QMessageBox.ButtonRole.AcceptRole)] = "tray"
        buttons[box.addButton("Cancel jobs and quit",
                              QMessageBox.ButtonRole.DestructiveRole)] = "cancel"
        buttons[box.addButton("Wait, then quit", QMessageBox.ButtonRole.ActionRole)] = "wait"
        stay = box.addButton("Don't quit", QMessageBox.ButtonRole.RejectRole)
        buttons[stay] = "stay"
        box.setDefaultButton(stay)
        box.setEscapeButton(stay)
        self._quit_box = box
        box.exec()
        return buttons.get(box.clickedButton(), "stay")

    def wait_for_jobs(self) -> bool:
        """Let the running jobs finish; return whether to quit then.

        The engine takes no new job meanwhile (queued ones stay queued).  The dialog
        follows ``jobFinished``: when every job it waits for has ended, True.  Its
        "Cancel them and quit now" is True at once (the running jobs are then
        cancelled as the engine stops); "Keep working" is False, and the engine
        takes jobs again, nothing cancelled.
        """
        waiting = set(self.manager.running_ids())
        if not waiting:
            return True
        self.manager.drain(0)  # no new dispatch; returns at once
        total = len(waiting)
        dialog = WaitForJobsDialog(total, self)
        loop = QEventLoop(self)

        def update(_job_id: int = 0, _status: str = "") -> None:
            # a finished signal, or (for a job whose end was not announced here,
            # e.g. taken over by another engine) the engine's own list
            waiting.intersection_update(self.manager.running_ids())
            dialog.setValue(total - len(waiting))
            names = [self._job_title(i) for i in sorted(waiting)[:3]]
            more = f" and {len(waiting) - 3} more" if len(waiting) > 3 else ""
            dialog.setLabelText(
                f"Waiting for {len(waiting)} running job{'s' if len(waiting) != 1 else ''} "
                f"to finish: {', '.join(names)}{more}.\nQueued jobs stay queued for the next "
                "start.")
            if not waiting:
                dialog.accept()

        self.manager.jobFinished.connect(update)
        recheck = QTimer(self, interval=500)
        recheck.timeout.connect(update)
        dialog.finished.connect(loop.quit)
        update()
        if waiting:
            self._wait_dialog = dialog  # for tests
            dialog.show()
            recheck.start()
            loop.exec()
        recheck.stop()
        self.manager.jobFinished.disconnect(update)
        keep_working = dialog.keep_working and not dialog.quit_now
        dialog.close()
        dialog.deleteLater()
        if keep_working:
            self.manager.resume_dispatch()
            return False
        return True

    def _job_title(self, job_id: int) -> str:
        job = self.manager.snapshot(job_id)
        return f"{job.title} (#{job_id})" if job is not None else f"job #{job_id}"
