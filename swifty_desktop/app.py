"""Bootstrap of the desktop app, in ordered steps, each with its clean-up.

paths -> logging -> Qt -> crash handler -> database and migrations -> engine
(crash recovery runs in its start) -> scheduler -> window -> tray/notifier ->
first-run welcome.  Clean-ups run in reverse order on the way out.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from swifty_desktop import APP_ID, APP_NAME, __version__, bootstrap

log = logging.getLogger(__name__)

Notice = tuple[str, str, str]  # ("information" | "warning", title, text)


class SwiftyApp:
    """Owns the app's lifetime; not a god object: it wires services and widgets, then
    gets out of the way."""

    def __init__(self, data_dir: str | None, *, verbose: bool = False,
                 show_welcome: bool = True, argv: list[str] | None = None,
                 crash_dialog: Callable[..., Any] | None = None,
                 notice: Notice | None = None) -> None:
        """``crash_dialog(report, saved_to, parent)`` replaces the crash dialog (tests);
        ``notice`` is shown once the window is (how a restore that reopens the app says
        how it went)."""
        self._notice = notice
        self.notice_box: Any = None
        self._data_dir_arg = data_dir
        self._verbose = verbose
        self._show_welcome = show_welcome
        self._argv = argv if argv is not None else sys.argv[:1]
        self._cleanups: list[tuple[str, Callable[[], Any]]] = []
        self.qapp: Any = None
        self.services: bootstrap.Services | None = None
        self.manager: Any = None
        self.scheduler: Any = None
        self.window: Any = None
        self.tray: Any = None
        self.notifier: Any = None
        self.crash_reporter: Any = None
        self._crash_dialog = crash_dialog
        self.started_at = time.perf_counter()
        self._stopped = False

    # ------------------------------------------------------------------ steps
    def _on_cleanup(self, name: str, func: Callable[[], Any]) -> None:
        self._cleanups.append((name, func))

    def _init_qt(self) -> None:
        from PySide6.QtWidgets import QApplication

        from swifty_desktop.gui.uitools import icon

        app = QApplication.instance() or QApplication(self._argv)
        if not os.environ.get("SWIFTY_NATIVE_STYLE"):
            app.setStyle("Fusion")  # one consistent look on every desktop
        app.setApplicationName(APP_NAME)
        app.setApplicationDisplayName(APP_NAME)
        app.setApplicationVersion(__version__)
        app.setOrganizationName("Swifty")
        app.setDesktopFileName(APP_ID)
        app.setWindowIcon(icon("swifty"))
        app.setQuitOnLastWindowClosed(False)  # the window decides (tray, running jobs)
        self.qapp = app

    def _init_services(self) -> None:
        self.services = bootstrap.start(self._data_dir_arg, console_log=self._verbose,
                                        verbose=self._verbose, role="app")
        self._on_cleanup("database", self.services.dispose)

    def _init_crash_handler(self) -> None:
        from swifty_desktop.gui.crash import CrashReporter

        assert self.services is not None
        logs = self.services.data_dir.logs
        fault_file = open(logs / "faulthandler.log", "a", encoding="utf-8")  # noqa: SIM115
        faulthandler.enable(fault_file)
        self._on_cleanup("faulthandler", lambda: (faulthandler.disable(), fault_file.close()))
        # created here, on the GUI thread: its dialogs are built on the thread it lives on
        self.crash_reporter = CrashReporter(logs, parent_widget=lambda: self.window,
                                            dialog_factory=self._crash_dialog,
                                            parent=self.qapp)

        def stop_reporting() -> None:
            self.crash_reporter.close()
            self.crash_reporter.deleteLater()
            self.crash_reporter = None

        self._on_cleanup("crash reports", stop_reporting)
        previous, previous_thread_hook = sys.excepthook, threading.excepthook
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook

        def restore() -> None:
            sys.excepthook, threading.excepthook = previous, previous_thread_hook

        self._on_cleanup("excepthook", restore)

    def _excepthook(self, etype: type[BaseException], value: BaseException,
                    tb: TracebackType | None) -> None:
        """An unexpected error in a slot, a Qt virtual or a QThreadPool runnable (any
        thread): log it, save a report, show it on the GUI thread, keep going."""
        if issubclass(etype, KeyboardInterrupt):  # Ctrl-C in the terminal: quit, no report
            if self.qapp is not None:
                self.quit()
            return
        reporter = self.crash_reporter  # once: shutdown may clear it on another thread
        if reporter is not None:
            reporter.report(etype, value, tb)

    def _thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        """The same for an exception that ends a plain ``threading.Thread``."""
        if args.exc_type is SystemExit:  # what threading's own hook ignores too
            return
        reporter = self.crash_reporter
        if reporter is not None and args.exc_value is not None:
            reporter.report(args.exc_type, args.exc_value, args.exc_traceback, args.thread)

    def _init_engine(self) -> None:
        from swifty_desktop.jobs.manager import JobManager

        assert self.services is not None
        self.manager = JobManager(self.services.engine, self.services.data_dir, role="app")

        def stop_engine() -> None:
            self.manager.stop(cancel_running=True, timeout=10)
            self.manager.store.close()

        self._on_cleanup("engine", stop_engine)

    def _init_scheduler(self) -> None:
        from swifty_desktop.gui import integration

        assert self.services is not None
        self.scheduler = integration.start_scheduler(self.services, self.manager)
        if self.scheduler is not None:
            self._on_cleanup("scheduler", self.scheduler.shutdown)
            if self.window is not None:
                self.window.attach_scheduler(self.scheduler)

    def _init_window(self) -> None:
        from swifty_desktop.gui.main_window import MainWindow

        assert self.services is not None
        self.window = MainWindow(self.manager, self.services.data_dir, scheduler=self.scheduler)
        self.window.quitRequested.connect(self.quit)
        self._on_cleanup("window", self.window.save_layout)

    def _init_notifications(self) -> None:
        from PySide6.QtWidgets import QSystemTrayIcon

        from swifty_desktop.gui.notifier import BannerStrategy, Notifier, Tray, TrayStrategy

        window = self.window
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = Tray(self.manager, self.qapp)
            self.tray.showRequested.connect(window.show_window)
            self.tray.registryRequested.connect(lambda: window.show_registry())
            self.tray.quitRequested.connect(window.request_quit)
            self.tray.show()
            strategy: Any = TrayStrategy(self.tray.icon, self.qapp)
            window.tray_available = True
            self._on_cleanup("tray", self.tray.icon.hide)
        else:
            strategy = BannerStrategy(window.bannerArea, self.qapp)
        self.notifier = Notifier(self.manager, strategy, parent=self.qapp)
        self.notifier.detailsRequested.connect(window.show_details)
        self.notifier.registryRequested.connect(lambda: window.show_registry())
        self.notifier.tabRequested.connect(window.show_data_tab)

    def _first_run(self) -> None:
        from PySide6.QtCore import QTimer

        from swifty_desktop.gui import integration

        if self._show_welcome and integration.is_first_run(self.manager.store.engine):
            QTimer.singleShot(0, lambda: integration.welcome(self.window))

    # --------------------------------------------------------------- lifetime
    def start(self) -> None:
        """Run every start-up step.  The window is painted first; the engine (crash
        recovery, worker processes) and the scheduler start on the next event-loop
        turn, so they never delay the first paint."""
        from PySide6.QtCore import QTimer

        self._init_qt()
        self._init_services()
        self._init_crash_handler()
        self._init_engine()
        self._init_window()
        self._init_notifications()
        self.window.show()
        if self._notice is not None:
            QTimer.singleShot(0, self._show_notice)
        log.info("window shown %.0f ms after start",
                 (time.perf_counter() - self.started_at) * 1000)
        if os.environ.get("SWIFTY_STARTUP_PROBE"):  # bench/startup.py
            self._probe_first_paint()
        QTimer.singleShot(0, self._start_background)

    def _show_notice(self) -> None:
        """A message box over the window, not blocking the event loop (``open``)."""
        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QMessageBox

        if self._notice is None or self.window is None:
            return
        level, title, text = self._notice
        log.log(logging.WARNING if level == "warning" else logging.INFO, "notice: %s: %s",
                title, text)
        box = QMessageBox(QMessageBox.Icon.Warning if level == "warning"
                          else QMessageBox.Icon.Information, title, text,
                          QMessageBox.StandardButton.Ok, self.window)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice_box = box
        box.open()

    def _start_background(self) -> None:
        if self.manager is None or self._stopped:
            return
        self.manager.start()
        self._init_scheduler()
        self._first_run()

    def _probe_first_paint(self) -> None:
        """Print when the first event-loop turn after show() ran (the window is painted
        by then), then quit: how bench/startup.py times a cold start."""
        from PySide6.QtCore import QTimer

        def shown() -> None:
            print(f"WINDOW_SHOWN {time.time():.6f}", flush=True)
            QTimer.singleShot(0, self.quit)

        QTimer.singleShot(0, shown)

    def quit(self) -> None:
        self.qapp.quit()

    def shutdown(self) -> None:
        """Run clean-ups in reverse order; one failing does not stop the others."""
        self._stopped = True
        while self._cleanups:
            name, func = self._cleanups.pop()
            try:
                func()
            except Exception:
                log.exception("clean-up step %r failed", name)

    def exec(self) -> int:
        try:
            return int(self.qapp.exec())
        finally:
            self.shutdown()


def run_app(data_dir: str | None, *, verbose: bool = False,
            notice: Notice | None = None) -> int:
    """Entry point for ``swifty-desktop`` without a command (``notice``: see SwiftyApp)."""
    app = SwiftyApp(data_dir, verbose=verbose, notice=notice)
    try:
        app.start()
    except bootstrap.StartupError as exc:
        _startup_failed(str(exc))
        app.shutdown()
        return 2
    return app.exec()


def _startup_failed(message: str) -> None:
    print(f"swifty-desktop: error: {message}", file=sys.stderr)
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return
    try:
        from PySide6.QtWidgets import QApplication, QMessageBox

        _app = QApplication.instance() or QApplication(sys.argv[:1])
        QMessageBox.critical(None, f"{APP_NAME} cannot start", message)
    except Exception:
        pass
