"""The real window, offscreen, driven with pytest-qt: real engine, real worker processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_final, wait_until
from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QMessageBox, QSystemTrayIcon

from swifty_desktop.gui.forms import ParamDialog
from swifty_desktop.gui.main_window import MainWindow
from swifty_desktop.gui.notifier import BannerStrategy, Notifier, TrayStrategy
from swifty_desktop.gui.registry_model import COL_STATUS, JobTableModel
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.jobs.store import JobQuery, JobStore
from swifty_desktop.tasks import Action, get_kind


class UrlCatcher(QObject):
    """Stands in for the desktop: records what QDesktopServices would have opened."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def handle(self, url: QUrl) -> None:
        self.urls.append(url)


@pytest.fixture
def url_catcher() -> Any:
    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "handle")
    yield catcher
    QDesktopServices.unsetUrlHandler("file")


@pytest.fixture
def window(qtbot, make_manager, data_dir) -> Any:
    manager = make_manager()
    win = MainWindow(manager, data_dir)
    win.show()
    yield win
    win.really_quit = True  # closing now must not ask "jobs are running…"
    win.close()
    win.deleteLater()


def row_status(model: JobTableModel, job_id: int) -> JobStatus | None:
    row = model.row_of(job_id)
    return None if row < 0 else model.job_at(row).status


def test_title_tabs_and_registry_dock(window) -> None:
    assert "Swifty" in window.windowTitle()
    assert [window.dataTabs.tabText(i) for i in range(3)] == ["Products", "Customers", "Orders"]
    assert window.dock.isVisible() and window.dock.windowTitle() == "Job registry"
    assert window.dockWidgetArea(window.dock) == Qt.DockWidgetArea.BottomDockWidgetArea


def test_an_action_creates_a_queued_row_at_once(window, qtbot) -> None:
    model = window.registry.model
    job_id = window.run_action(get_kind("sleep"), Action("Nap", params={"seconds": 0.5}))
    # no event processing in between: the row is there when the click returns
    assert model.row_of(job_id) == 0
    assert model.job_at(0).trigger == Trigger.user("Nap")
    assert "queued as job #" in window.statusBar().currentMessage()
    wait_until(qtbot, lambda: row_status(model, job_id) is JobStatus.COMPLETED)
    index = model.index(model.row_of(job_id), COL_STATUS)
    assert index.data() == "Completed"


def test_progress_updates_rows_without_resets(window, qtbot) -> None:
    model = window.registry.model
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    changed: list[int] = []
    model.dataChanged.connect(lambda a, b: changed.append(a.row()))
    other = window.manager.submit("noop")
    job_id = window.manager.submit("sleep", {"seconds": 1.0})
    wait_until(qtbot, lambda: row_status(model, other) is JobStatus.COMPLETED)
    window.registry.jobsView.selectRow(model.row_of(other))
    wait_until(qtbot, lambda: row_status(model, job_id) is JobStatus.COMPLETED)
    assert resets == []
    assert len(changed) >= 5  # progress ticks arrived as per-row changes
    assert model.flushes < 60  # ...coalesced (the sleep reports 20 times a second)
    selected = window.registry.selected_jobs()
    assert [j.id for j in selected] == [other]  # the selection survived the updates


def test_right_click_retry_creates_a_new_attempt(window, qtbot) -> None:
    model, panel = window.registry.model, window.registry
    job_id = window.manager.submit("fail", {"message": "supplier said 401"})
    wait_until(qtbot, lambda: row_status(model, job_id) is JobStatus.FAILED)
    panel.jobsView.selectRow(model.row_of(job_id))
    rect = panel.jobsView.visualRect(model.index(model.row_of(job_id), 0))
    panel._context_menu(rect.center())
    menu = panel._menu
    labels = {a.text(): a.isEnabled() for a in menu.actions() if a.text()}
    assert labels["Retry"] and labels["Copy error"] and labels["Show details"]
    assert not labels["Cancel"] and not labels["Open output"]
    menu.close()
    panel.actRetry.trigger()
    new = wait_until(qtbot, lambda: model.rowCount() and model.job_at(0).retry_of == job_id
                     and model.job_at(0))
    assert new.attempt == 2 and new.trigger.type == "retry" and not new.trigger.automatic
    assert model.row_of(job_id) == -1  # the superseded attempt is folded away...
    panel.allAttempts.setChecked(True)
    assert model.row_of(job_id) >= 0  # ...and shown with "All attempts"
    panel.actCopy.setEnabled(True)
    panel.jobsView.clearSelection()
    panel.jobsView.selectRow(model.row_of(job_id))
    panel.copy_selected()
    assert "supplier said 401" in QGuiApplication.clipboard().text()


def test_cancel_from_the_registry(window, qtbot) -> None:
    model, panel = window.registry.model, window.registry
    job_id = window.manager.submit("sleep", {"seconds": 30})
    wait_until(qtbot, lambda: row_status(model, job_id) is JobStatus.RUNNING)
    panel.jobsView.selectRow(model.row_of(job_id))
    assert panel.cancel_selected() == 1
    wait_until(qtbot, lambda: row_status(model, job_id) is JobStatus.CANCELLED)


def test_filters_and_search_run_in_the_database(window, qtbot) -> None:
    store = window.manager.store
    store.insert("noop", "Export products to Excel", {"table": "products"}, Trigger("api"))
    store.insert("noop", "Import customers", {"path": "/tmp/clients.csv"}, Trigger("api"))
    window.registry.model.reload()
    panel = window.registry
    panel.searchEdit.setText("clients.csv")  # a parameter value
    wait_until(qtbot, lambda: panel.model.rowCount() == 1)
    assert panel.model.job_at(0).title == "Import customers"
    panel.searchEdit.setText("")
    panel.show_status(("failed",))
    wait_until(qtbot, lambda: panel.model.rowCount() == 0)


def test_jobs_from_another_process_show_up_within_a_second(window, qtbot, db) -> None:
    other = JobStore(db)  # what the CLI does: a row written by someone else
    job_id = other.insert("sleep", "Sleep from the CLI", {"seconds": 0.3},
                          Trigger.cli("jobs submit"))
    started = time.monotonic()
    wait_until(qtbot, lambda: window.registry.model.row_of(job_id) >= 0, timeout=5)
    assert time.monotonic() - started < 1.5
    wait_until(qtbot, lambda: row_status(window.registry.model, job_id) is JobStatus.COMPLETED)
    other.close()


def test_job_details_show_attempts_log_and_error(window, qtbot) -> None:
    first = window.manager.submit("fail", {"message": "disk full on /exports"})
    wait_final(qtbot, window.manager, first)
    second = window.manager.retry(first)
    wait_final(qtbot, window.manager, second)
    dialog = window.show_details(second)
    assert dialog.attemptsTable.rowCount() == 2
    assert dialog.attemptsTable.item(0, 0).text() == f"#{first}"
    assert "disk full on /exports" in dialog.errorSummary.text()
    assert "Traceback" in dialog.errorView.toPlainText()
    assert "attempt 2" in dialog.logView.toPlainText()
    assert dialog.tabs.currentWidget() is dialog.errorTab
    dialog.copyErrorButton.click()
    assert "disk full on /exports" in QGuiApplication.clipboard().text()
    assert dialog.retryButton.isEnabled() and not dialog.cancelJobButton.isEnabled()
    dialog.close()


def test_parameter_dialog_validates_before_queueing(qtbot, tmp_path: Path) -> None:
    dialog = ParamDialog(get_kind("sleep"), title="Nap")
    qtbot.addWidget(dialog)
    dialog.fields["seconds"].setValue(2.5)
    dialog.accept()
    assert dialog.result() == dialog.DialogCode.Accepted
    assert dialog.params["seconds"] == 2.5
    write = ParamDialog(get_kind("write"), title="Write", ask=("name", "size"))
    qtbot.addWidget(write)
    write.fields["name"].setText("")
    write.fields["size"].setValue(10)
    write.accept()
    assert write.params == {"name": "diagnostic.bin", "size": 10, "seconds": 0.0,
                            "fail_at": -1.0}


def test_tray_message_click_opens_the_finished_file(window, qtbot, url_catcher) -> None:
    tray = QSystemTrayIcon()
    strategy = TrayStrategy(tray)
    notifier = Notifier(window.manager, strategy, include_diagnostic=True)
    job_id = window.manager.submit("write", {"name": "sales.xlsx", "size": 100})
    wait_until(qtbot, lambda: strategy.last is not None, message="a tray message")
    assert strategy.last.title == "Write sales.xlsx finished"
    assert "sales.xlsx is ready" in strategy.last.text
    tray.messageClicked.emit()  # what the desktop does when the message is clicked
    assert len(url_catcher.urls) == 1
    opened = Path(url_catcher.urls[0].toLocalFile())
    assert opened == Path(window.manager.store.get(job_id).output_path) and opened.exists()
    del notifier


def test_failed_job_message_opens_its_details(window, qtbot) -> None:
    strategy = TrayStrategy(QSystemTrayIcon())
    notifier = Notifier(window.manager, strategy, include_diagnostic=True)
    asked: list[int] = []
    notifier.detailsRequested.connect(asked.append)
    job_id = window.manager.submit("fail", {"message": "the supplier is down"})
    wait_until(qtbot, lambda: strategy.last is not None)
    assert "failed" in strategy.last.title and "the supplier is down" in strategy.last.text
    strategy.tray.messageClicked.emit()
    assert asked == [job_id]


def test_without_a_tray_the_window_shows_a_banner(window, qtbot, url_catcher) -> None:
    assert not QSystemTrayIcon.isSystemTrayAvailable()  # offscreen has none
    strategy = BannerStrategy(window.bannerArea)
    notifier = Notifier(window.manager, strategy, include_diagnostic=True)
    details: list[int] = []
    notifier.detailsRequested.connect(details.append)
    window.manager.submit("write", {"name": "customers.csv", "size": 10})
    wait_until(qtbot, lambda: strategy.banners, message="a banner")
    banner = strategy.banners[0]
    assert window.bannerArea.isVisible() and banner.isVisible()
    assert "customers.csv is ready" in banner.label.text()
    banner.openButton.click()
    assert url_catcher.urls and url_catcher.urls[0].toLocalFile().endswith("customers.csv")
    assert strategy.banners == []
    failing = window.manager.submit("fail")
    wait_until(qtbot, lambda: strategy.banners)
    strategy.banners[0].detailsButton.click()
    assert details == [failing]


def test_bursts_of_finished_jobs_become_one_message(window, qtbot) -> None:
    strategy = TrayStrategy(QSystemTrayIcon())
    notifier = Notifier(window.manager, strategy, include_diagnostic=True)
    window.manager.store.insert_many([("noop", "No-op", {}, Trigger("api"))] * 5)
    window.manager.schedule_dispatch()
    wait_until(qtbot, lambda: strategy.shown)
    qtbot.wait(600)
    assert len(strategy.shown) == 1 and strategy.shown[0].title == "5 jobs ended"
    assert notifier.enabled


def test_status_bar_summary_counts_and_opens_the_registry(window, qtbot) -> None:
    window.manager.submit("sleep", {"seconds": 30})
    window.manager.submit("sleep", {"seconds": 30})
    window.manager.submit("sleep", {"seconds": 30})
    wait_until(qtbot, lambda: window.summary.text() == "2 running · 1 queued")
    window.dock.hide()
    window.summary.click()
    assert window.dock.isVisible()


def test_close_with_running_jobs_asks_and_can_cancel(window, qtbot) -> None:
    window.manager.submit("sleep", {"seconds": 30})
    wait_until(qtbot, lambda: window.manager.running_ids())
    quits: list[int] = []
    window.quitRequested.connect(lambda: quits.append(1))

    def answer(button_text: str) -> None:
        box = window._quit_box
        assert "1 job is still running" in box.text()
        for button in box.buttons():
            if button.text() == button_text:
                button.click()

    QTimer.singleShot(200, lambda: answer("Don't quit"))
    window.close()
    assert window.isVisible() and not quits
    QTimer.singleShot(200, lambda: answer("Cancel jobs and quit"))
    window.close()
    assert quits == [1]


def test_layout_persists_across_restarts(qtbot, make_manager, data_dir) -> None:
    manager = make_manager()
    first = MainWindow(manager, data_dir)
    first.really_quit = True
    qtbot.addWidget(first)
    first.show()
    first.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, first.dock)
    first.resize(720, 520)  # within the offscreen screen, so nothing clamps it
    saved_size = first.size()
    first.save_layout()
    second = MainWindow(manager, data_dir)
    second.really_quit = True
    qtbot.addWidget(second)
    second.show()
    assert second.dockWidgetArea(second.dock) == Qt.DockWidgetArea.RightDockWidgetArea
    assert second.size() == saved_size


def test_a_history_of_100k_jobs_opens_one_page_and_filters_in_the_database(
        qtbot, make_manager, db) -> None:
    store = JobStore(db)
    ids = store.insert_many([("noop", f"Job {i}", {"n": i}, Trigger("api"))
                             for i in range(100_000)])
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET status = CASE WHEN id % 50 = 0 THEN 'failed' "
                             "ELSE 'completed' END, finished_at = created_at")
    manager = make_manager()
    model = JobTableModel(manager)
    assert model.rowCount() == 200 and model.canFetchMore()
    assert model.job_at(0).id == ids[-1]  # newest first
    model.fetchMore()
    assert model.rowCount() == 400 and model.job_at(399).id == ids[-400]
    model.set_query(JobQuery(statuses=("failed",), latest_only=True))
    assert model.rowCount() == 200 and all(model.job_at(r).status is JobStatus.FAILED
                                           for r in range(200))
    model.set_query(JobQuery(text="#12345"))
    assert model.rowCount() == 1 and model.job_at(0).id == 12345
    # live updates keep arriving without a reset
    job_id = manager.submit("noop")
    model.set_query(JobQuery(latest_only=True))
    wait_until(qtbot, lambda: model.row_of(job_id) == 0 and
               model.job_at(0).status is JobStatus.COMPLETED)
    store.close()


def test_crash_dialog_offers_a_copyable_report(qtbot, tmp_path: Path) -> None:
    from swifty_desktop.gui.crash import show_crash_dialog

    report = "Traceback (most recent call last):\nValueError: bad thing"
    box = show_crash_dialog(report, tmp_path / "crash.txt", None)
    qtbot.addWidget(box)
    assert "ValueError: bad thing" in box.text() and str(tmp_path) in box.informativeText()
    copy = next(b for b in box.buttons() if b.text() == "Copy report")
    copy.click()
    assert QGuiApplication.clipboard().text() == report
    box.close()


def test_data_tabs_page_sort_and_search_in_the_database(window, qtbot, db) -> None:
    from swifty_desktop.demo.seed import seed

    seed(db, size="small")
    window.refresh_tables()
    products = window.tables["products"]
    total = products.total()
    assert total > 150 and products.rowCount() == min(200, total)
    first_sku = products.index(0, 0).data()
    products.sort(0, Qt.SortOrder.DescendingOrder)  # by SKU, in the database
    assert products.index(0, 0).data() > first_sku
    window.productsSearch.setText(first_sku)
    wait_until(qtbot, lambda: products.rowCount() == 1)
    assert products.index(0, 0).data() == first_sku
    assert window.productsCount.text() == "1 row"
    orders = window.tables["orders"]
    shown = orders.total()
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE orders SET status = 'archived' WHERE id <= 10")
    orders.refresh()
    assert orders.total() == shown - 10  # archived orders are out of the default view
    window.ordersFlag.setChecked(True)
    assert orders.total() == shown


def test_data_tabs_fetch_more_rows_as_the_view_scrolls(qtbot, db) -> None:
    import datetime as dt

    from swifty_desktop.db.models import Customer
    from swifty_desktop.gui.data_models import CUSTOMERS, SqlTableModel

    with db.begin() as conn:
        conn.execute(Customer.__table__.insert(), [
            {"name": f"Customer {i:04d}", "email": f"c{i}@example.com", "country": "DE",
             "opted_in": False, "created_at": dt.datetime(2026, 1, 1)} for i in range(650)])
    model = SqlTableModel(db, CUSTOMERS, page_size=200)
    assert model.rowCount() == 200 and model.canFetchMore()
    while model.canFetchMore():
        model.fetchMore()
    assert model.rowCount() == 650 and model.total() == 650
    names = [model.index(r, 0).data() for r in range(650)]
    assert names == sorted(names)  # stable order across pages


def test_retry_all_failed_retries_what_the_filter_shows(window, qtbot, monkeypatch) -> None:
    ids = [window.manager.submit("fail", {"message": f"boom {i}"}) for i in range(3)]
    ok = window.manager.submit("noop")
    for job_id in [*ids, ok]:
        wait_final(qtbot, window.manager, job_id)
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Yes)
    window.registry.show_status(("failed",))
    new_ids = window.registry.retry_all_failed()
    assert len(new_ids) == 3
    retried = {window.manager.store.get(i).retry_of for i in new_ids}
    assert retried == set(ids)
    assert window.manager.store.get(ok).superseded_by is None


def test_first_run_offers_sample_data_and_loads_it_in_the_background(window, qtbot) -> None:
    from swifty_desktop.gui import integration

    engine = window.manager.store.engine
    assert integration.is_first_run(engine)

    def choose_sample() -> None:
        window.welcome_dialog.sampleButton.click()

    QTimer.singleShot(300, choose_sample)
    assert integration.welcome(window) == "sample"
    assert not integration.is_first_run(engine)  # asked once, never again
    job = window.registry.model.job_at(0)
    assert job.kind == "demo_seed" and job.trigger.label == "Load sample data"
    wait_until(qtbot, lambda: window.tables["products"].total() > 0, timeout=60,
               message="the sample products in the Products tab")
