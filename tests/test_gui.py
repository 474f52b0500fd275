"""The real window, offscreen, driven with pytest-qt: real engine, real worker processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_final, wait_until
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon

from swifty_desktop.gui.forms import ParamDialog
from swifty_desktop.gui.main_window import MainWindow
from swifty_desktop.gui.notifier import BannerStrategy, Notifier, TrayStrategy
from swifty_desktop.gui.registry_model import COL_STATUS, JobTableModel
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.jobs.store import JobQuery, JobStore
from swifty_desktop.tasks import get_kind


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
    action = window.kind_actions["Export products to Excel"]
    assert action in window.mainToolBar.actions() and action in window.menuData.actions()
    rows_before = model.rowCount()
    seen_during_click: list[Any] = []
    # what the registry shows the moment the action's own handler has returned
    action.triggered.connect(lambda _c=False: seen_during_click.append(
        model.rowCount() and model.job_at(0)))
    action.trigger()  # what a toolbar click or Ctrl+E does
    # no event processing in between: the row is there when the click returns
    assert model.rowCount() == rows_before + 1
    job = model.job_at(0)
    assert seen_during_click == [job]
    assert job.kind == "export" and job.status is JobStatus.QUEUED
    assert job.trigger == Trigger.user("Export products to Excel")
    assert window.statusBar().currentMessage()  # acknowledged at once
    wait_until(qtbot, lambda: row_status(model, job.id) is JobStatus.COMPLETED, timeout=60)
    index = model.index(model.row_of(job.id), COL_STATUS)
    assert index.data() == "Completed"
    assert Path(window.manager.store.get(job.id).output_path).exists()


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
    panel.jobsView.clearSelection()
    panel.jobsView.selectRow(model.row_of(job_id))
    assert panel.actCopy.isEnabled()  # it follows the selection, no menu needed
    panel.actCopy.trigger()
    assert "supplier said 401" in QGuiApplication.clipboard().text()


def _click_row(qtbot, view, row: int) -> None:
    rect = view.visualRect(view.model().index(row, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_registry_shortcuts_act_on_the_current_selection(window, qtbot) -> None:
    model, panel = window.registry.model, window.registry
    view = panel.jobsView
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    done = window.manager.submit("noop")
    failed = window.manager.submit("fail", {"message": "boom"})
    for job_id in (done, failed):
        wait_final(qtbot, window.manager, job_id)
    wait_until(qtbot, lambda: row_status(model, failed) is JobStatus.FAILED)
    # right-click a completed job: its menu has Retry disabled...
    _click_row(qtbot, view, model.row_of(done))
    panel._context_menu(view.visualRect(model.index(model.row_of(done), 0)).center())
    assert not panel.actRetry.isEnabled()
    panel._menu.close()
    # (a desktop gives the window back its activation when a menu closes; offscreen
    # needs asking, or the closed menu stays the "active window" shortcuts look at)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    # ...then click the failed job and press Ctrl+R: it is retried at once
    _click_row(qtbot, view, model.row_of(failed))
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert model.job_at(0).retry_of == failed
    # a selected row that changes (running -> cancelled) updates the actions too
    sleeper = window.manager.submit("sleep", {"seconds": 30})
    wait_until(qtbot, lambda: row_status(model, sleeper) is JobStatus.RUNNING)
    _click_row(qtbot, view, model.row_of(sleeper))
    assert panel.actCancel.isEnabled() and not panel.actRetry.isEnabled()
    window.manager.cancel(sleeper)  # not through the panel: e.g. the CLI or the details
    wait_until(qtbot, lambda: row_status(model, sleeper) is JobStatus.CANCELLED)
    wait_until(qtbot, lambda: panel.actRetry.isEnabled(), message="Retry to follow the row")
    qtbot.keyClick(view, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert model.job_at(0).retry_of == sleeper


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


def test_job_details_cut_a_long_error_in_the_subtitle_after_a_whole_word(window,
                                                                        qtbot) -> None:
    reason = "the supplier answered " + " ".join(f"part{i}" for i in range(60))
    job_id = window.manager.submit("fail", {"message": reason})
    wait_final(qtbot, window.manager, job_id)
    dialog = window.show_details(job_id)
    subtitle = dialog.subtitleLabel.text()
    assert subtitle.endswith("…") and "the supplier answered part0" in subtitle
    last_word = subtitle[:-1].rsplit(" ", 1)[-1]
    assert last_word in reason.split()  # "part17", never "par"
    assert reason in dialog.errorSummary.text()  # the whole text is on the Error tab
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


# ------------------------------------------------------------------ audit fixes (issue 3)
def _failed_history(store: JobStore, n: int) -> list[int]:
    """``n`` failed jobs, as a long history leaves them (written without running them;
    no event is processed in between, so the window's engine never claims them)."""
    ids = store.insert_many([("fail", f"Failed job {i}", {"message": f"boom {i}"},
                              Trigger("api")) for i in range(n)])
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE jobs SET status = 'failed', started_at = created_at, finished_at = "
            "created_at, error_type = 'TaskError', error_message = 'boom' "
            "WHERE id BETWEEN ? AND ?", (ids[0], ids[-1]))
    return ids


@pytest.fixture
def say_yes(monkeypatch) -> None:
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)


def test_retry_all_failed_inserts_the_new_attempts_in_one_block(window, say_yes) -> None:
    ids = _failed_history(window.manager.store, 30)
    panel, model = window.registry, window.registry.model
    model.reload()
    assert model.rowCount() == 30
    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    new_ids = panel.retry_all_failed()
    # shown when the click returns, as one block (not 30 inserts, each with a query)
    assert len(new_ids) == 30 and inserted == [(0, 29)] and resets == []
    assert {model.job_at(r).retry_of for r in range(30)} == set(ids)
    assert model.rowCount() == 30  # the superseded attempts left the (latest-only) view


def test_retry_all_failed_of_more_than_a_page_resets_to_the_first_page(window, say_yes) -> None:
    _failed_history(window.manager.store, 250)
    panel, model = window.registry, window.registry.model
    model.reload()
    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    new_ids = panel.retry_all_failed()
    assert len(new_ids) == 250
    assert resets == [1] and inserted == []  # a bulk change: one page, not 250 reads
    assert model.rowCount() == 200 and model.job_at(0).id == max(new_ids)


def test_jobs_added_elsewhere_are_inserted_on_the_next_flush(window, qtbot, db) -> None:
    model = window.registry.model
    other = JobStore(db)  # another process queues jobs: the window reads them once
    flushes = model.flushes
    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))
    ids = other.insert_many([("noop", f"From the CLI {i}", {}, Trigger.cli()) for i in range(5)])
    for job_id in ids:  # what the engine's poll announces, in one burst
        window.manager.jobAdded.emit(job_id)
    assert all(model.row_of(i) == -1 for i in ids)  # not one query (and flush) per signal
    wait_until(qtbot, lambda: all(model.row_of(i) >= 0 for i in ids))
    assert inserted[0] == (0, 4)  # one query, one insert for the burst
    assert model.flushes - flushes <= 3
    other.close()


def _count_queries(engine: Any) -> Any:
    """Statements this (the GUI) thread sends to the database, from now on."""
    import threading

    from sqlalchemy import event

    gui = threading.get_ident()
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if threading.get_ident() == gui:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    return seen, lambda: event.remove(engine, "before_cursor_execute", count)


def test_a_finished_import_refreshes_its_tab_in_place_and_no_other(window, qtbot, db,
                                                                   tmp_path) -> None:
    from swifty_desktop.demo.seed import seed

    seed(db, size="small")
    window.refresh_tables()
    products, view = window.tables["products"], window.productsView
    changes = {name: [] for name in window.tables}
    for name, model in window.tables.items():
        model.modelReset.connect(lambda n=name: changes[n].append("reset"))
        model.layoutChanged.connect(lambda *_a, n=name: changes[n].append("layout"))
    view.resize(800, 300)
    view.selectRow(150)
    view.scrollTo(products.index(150, 0))
    scroll = view.verticalScrollBar().value()
    assert scroll > 0
    sku = products.index(150, 0).data()
    source = tmp_path / "update.csv"
    source.write_text(f"sku,name,price\n{sku},Renamed by the import,9.99\n", encoding="utf-8")
    job_id = window.manager.submit("import_csv", {"path": str(source), "table": "products"})
    exported = window.manager.submit("export", {"table": "customers", "format": "csv"})
    for done in (job_id, exported):
        assert wait_final(qtbot, window.manager, done).status is JobStatus.COMPLETED
    wait_until(qtbot, lambda: products.index(150, 1).data() == "Renamed by the import")
    assert view.verticalScrollBar().value() == scroll  # the view stayed where it was
    assert [i.row() for i in view.selectionModel().selectedRows()] == [150]
    assert changes == {"products": ["layout"], "customers": [], "orders": []}
    # the finished slot reads the job from memory: no query for a job that ran here
    seen, stop = _count_queries(db)
    window._on_job_finished(job_id, "completed")
    stop()
    assert seen == []


def test_registry_search_waits_for_typing_to_pause(window, qtbot) -> None:
    panel, model = window.registry, window.registry.model
    resets: list[float] = []
    model.modelReset.connect(lambda: resets.append(time.monotonic()))
    qtbot.keyClicks(panel.searchEdit, "no such job anywhere")
    typed = time.monotonic()
    qtbot.wait(120)
    assert resets == []  # no query per keystroke
    wait_until(qtbot, lambda: resets, message="the search to run")
    qtbot.wait(300)
    assert len(resets) == 1 and resets[0] - typed >= 0.2  # once, after the pause
    assert model.rowCount() == 0


def test_the_job_column_shows_title_and_kind(window, qtbot) -> None:
    from swifty_desktop.gui.registry_dock import JobDelegate
    from swifty_desktop.gui.registry_model import COL_JOB, JOB_TEXT_ROLE

    model, view = window.registry.model, window.registry.jobsView
    job_id = window.kind_actions["Export products to Excel"].trigger() or model.job_at(0).id
    index = model.index(model.row_of(job_id), COL_JOB)
    assert index.data() == "Export products to Excel · Export"
    assert index.data(JOB_TEXT_ROLE) == ("Export products to Excel", "Export")
    report = window.manager.submit("report_pdf")  # titled as its kind: said once
    assert model.index(model.row_of(report), COL_JOB).data() == "Sales report (PDF)"
    assert isinstance(view.itemDelegateForColumn(COL_JOB), JobDelegate)
    assert not view.grab().isNull()  # the delegate paints without errors
    wait_final(qtbot, window.manager, job_id, timeout=60)


def test_the_failed_count_covers_the_last_24_hours_at_each_refresh(window) -> None:
    store = window.manager.store
    [job_id] = _failed_history(store, 1)
    with store.engine.begin() as conn:  # failed 23 h 50 min ago
        conn.exec_driver_sql("UPDATE jobs SET finished_at = ? WHERE id = ?",
                             (time.time() - 23 * 3600 - 50 * 60, job_id))
    summary = window.summary
    summary.refresh()
    assert summary.text() == "1 failed"
    now = time.time()
    summary.clock = lambda: now + 20 * 60  # twenty minutes later, the window has moved
    summary.refresh()
    assert summary.text() == "No jobs running"


def test_the_tray_tooltip_follows_running_jobs(window, qtbot) -> None:
    from swifty_desktop.gui.notifier import Tray

    tray = Tray(window.manager)
    job_id = window.manager.submit("sleep", {"seconds": 3.0})
    wait_until(qtbot, lambda: "Sleep" in tray.icon.toolTip())
    assert tray._tooltip_timer.isActive()

    def percent() -> int:
        line = tray.icon.toolTip().splitlines()[-1]
        return int(line.rsplit("—", 1)[1].strip().rstrip("%")) if "—" in line else -1

    first = percent()
    wait_until(qtbot, lambda: percent() > first + 10, message="the tooltip's progress to move")
    wait_final(qtbot, window.manager, job_id)
    wait_until(qtbot, lambda: tray.icon.toolTip() == "Swifty Desktop — no jobs running")
    assert not tray._tooltip_timer.isActive()  # idle: no timer


def test_details_of_a_removed_job_say_so(window, qtbot) -> None:
    job_id = window.manager.submit("noop")
    wait_final(qtbot, window.manager, job_id)
    open_before = window.show_details(job_id)
    assert not open_before.removed
    assert window.manager.store.delete([job_id]) == 1
    open_before.refresh()  # e.g. a change signal arrives for it
    assert open_before.removed
    open_before.close()
    dialog = window.show_details(job_id)  # e.g. an old notification is clicked
    assert dialog.removed
    assert f"Job #{job_id} was removed from history" in dialog.titleLabel.text()
    assert not dialog.retryButton.isEnabled() and not dialog.openButton.isEnabled()
    dialog.close()


def _answer_quit_box(window, button_text: str) -> None:
    box = window._quit_box
    for button in box.buttons():
        if button.text() == button_text:
            button.click()
            return
    raise AssertionError(f"no button {button_text!r} in {[b.text() for b in box.buttons()]}")


def test_close_can_keep_jobs_running_in_the_tray(window, qtbot) -> None:
    window.tray_available = True  # as the app sets it when a tray icon is shown
    job_id = window.manager.submit("sleep", {"seconds": 1.0})
    wait_until(qtbot, lambda: window.manager.running_ids())
    quits: list[int] = []
    window.quitRequested.connect(lambda: quits.append(1))
    QTimer.singleShot(200, lambda: _answer_quit_box(window, "Keep running in the tray"))
    window.close()
    assert not window.isVisible() and quits == []
    assert wait_final(qtbot, window.manager, job_id).status is JobStatus.COMPLETED
    assert quits == []  # still running in the tray


def test_wait_then_quit_waits_for_running_jobs_only(window, qtbot) -> None:
    manager = window.manager  # two worker slots: two run, the third waits
    running = [manager.submit("sleep", {"seconds": 1.0}) for _ in range(2)]
    queued = manager.submit("sleep", {"seconds": 1.0})
    wait_until(qtbot, lambda: set(manager.running_ids()) == set(running))
    quits: list[float] = []
    window.quitRequested.connect(lambda: quits.append(time.monotonic()))
    shown: list[tuple[int, int]] = []

    def watch_dialog() -> None:
        dialog = getattr(window, "_wait_dialog", None)
        if dialog is not None and dialog.isVisible():
            shown.append((dialog.maximum(), dialog.value()))

    watcher = QTimer(interval=50)
    watcher.timeout.connect(watch_dialog)
    watcher.start()
    QTimer.singleShot(200, lambda: _answer_quit_box(window, "Wait, then quit"))
    window.close()
    watcher.stop()
    assert len(quits) == 1
    assert all(manager.store.get(i).status is JobStatus.COMPLETED for i in running)
    # the queued job did not start meanwhile, and the wait did not include it
    assert manager.store.get(queued).status is JobStatus.QUEUED
    assert shown and all(maximum == 2 for maximum, _value in shown)


def test_an_import_notification_opens_its_tab_not_the_source_file(window, qtbot, url_catcher,
                                                                   tmp_path) -> None:
    strategy = TrayStrategy(QSystemTrayIcon())
    notifier = Notifier(window.manager, strategy)
    notifier.tabRequested.connect(window.show_data_tab)
    source = tmp_path / "customers.csv"
    source.write_text("email,name,country\nana@example.com,Ana,DE\nbo@example.com,Bo,SE\n",
                      encoding="utf-8")
    window.manager.submit("import_csv", {"path": str(source), "table": "customers"})
    wait_until(qtbot, lambda: strategy.last is not None, timeout=60, message="a tray message")
    note = strategy.last
    assert "2 new and 0 updated customers" in note.text and note.target is None
    assert note.tab == "customers"
    strategy.tray.messageClicked.emit()
    assert url_catcher.urls == []  # never the user's own CSV, as if it were the output
    assert window.dataTabs.currentWidget() is window.customersTab
    window.manager.submit("archive", {"older_than_days": 365})
    wait_until(qtbot, lambda: strategy.last is not note, timeout=60)
    assert strategy.last.tab == "orders" and "0 orders archived" in strategy.last.text


def test_settings_never_show_a_stored_secret_and_can_remove_it(qtbot, db, monkeypatch,
                                                               tmp_path) -> None:
    import keyring
    from loopback import use_file_keyring

    from swifty_desktop.gui.forms import SecretField, SettingsDialog
    from swifty_desktop.settings import Settings

    (tmp_path / "keyring").mkdir()
    previous = use_file_keyring(monkeypatch, tmp_path / "keyring")
    try:
        store = Settings(db)
        store.set_secret("mail.smtp_password", "hunter2")
        dialog = SettingsDialog(store)
        qtbot.addWidget(dialog)
        _spec, field = dialog.fields["mail.smtp_password"]
        assert isinstance(field, SecretField)
        assert field.edit.text() == "" and "hunter2" not in field.edit.placeholderText()
        assert field.edit.placeholderText() == SecretField.STORED
        dialog.accept()  # an untouched field keeps the secret
        assert store.get_secret("mail.smtp_password") == "hunter2"
        dialog = SettingsDialog(store)
        qtbot.addWidget(dialog)
        _spec, field = dialog.fields["mail.smtp_password"]
        field.removeButton.click()
        assert field.edit.placeholderText() == SecretField.REMOVING
        dialog.accept()
        assert store.get_secret("mail.smtp_password") is None
        dialog = SettingsDialog(store)
        qtbot.addWidget(dialog)
        _spec, field = dialog.fields["mail.smtp_password"]
        assert field.edit.placeholderText() == SecretField.NOT_SET
        assert not field.removeButton.isEnabled()
        qtbot.keyClicks(field.edit, "new-secret")
        dialog.accept()
        assert store.get_secret("mail.smtp_password") == "new-secret"
    finally:
        keyring.set_keyring(previous)


def test_the_app_uses_banners_where_the_desktop_has_no_tray(qapp, qtbot, tmp_path,
                                                            url_catcher) -> None:

    from swifty_desktop import bootstrap
    from swifty_desktop.app import SwiftyApp

    style, quit_on_close = qapp.style().name(), qapp.quitOnLastWindowClosed()
    app = SwiftyApp(str(tmp_path / "appdata"), show_welcome=False)
    app.start()
    try:
        assert not QSystemTrayIcon.isSystemTrayAvailable()  # offscreen has none
        assert app.tray is None and not app.window.tray_available
        assert isinstance(app.notifier.strategy, BannerStrategy)
        wait_until(qtbot, lambda: app.manager.is_running)
        app.window.kind_actions["Export customers to Excel"].trigger()
        strategy = app.notifier.strategy
        wait_until(qtbot, lambda: strategy.banners, timeout=60, message="a banner")
        banner = strategy.banners[0]
        assert banner.isVisible() and "Export customers to Excel finished" in banner.label.text()
        banner.openButton.click()
        assert url_catcher.urls[0].toLocalFile().endswith(".xlsx")
    finally:
        app.window.really_quit = True
        app.window.close()
        app.shutdown()
        app.window.deleteLater()
        qapp.setStyle(style)
        qapp.setQuitOnLastWindowClosed(quit_on_close)
        bootstrap.close_logs(tmp_path)


def test_progress_of_another_engines_job_reaches_the_registry(qtbot, make_manager,
                                                              data_dir) -> None:
    # the window's own engine runs nothing here, so the job can only run elsewhere
    win = MainWindow(make_manager(roots=()), data_dir)
    qtbot.addWidget(win)
    win.really_quit = True
    win.show()
    worker = make_manager(watch_external=False)  # a headless worker on the same database
    job_id = worker.submit("sleep", {"seconds": 2.5}, Trigger.cli("jobs submit"))
    model = win.registry.model
    wait_until(qtbot, lambda: row_status(model, job_id) is JobStatus.RUNNING, timeout=5)
    wait_until(qtbot, lambda: 0.2 < (model.job_at(model.row_of(job_id)).progress or 0) < 1,
               message="the other engine's progress in the registry")
    wait_until(qtbot, lambda: row_status(model, job_id) is JobStatus.COMPLETED)
    assert model.job_at(model.row_of(job_id)).engine_id == worker.engine_id


def test_notifications_say_what_a_sync_and_a_batch_left_undecided() -> None:
    """A sync's skipped SKUs and a batch's uncertain recipients are in the message."""
    import dataclasses

    from helpers import job_record

    from swifty_desktop.gui.notifier import outcome_text

    base = job_record(kind="catalog_sync", title="Sync")
    sync = dataclasses.replace(base, result={"inserted": 3, "updated": 1, "conflict_count": 2})
    assert "2 skipped (their SKU belongs to another supplier's product)" in outcome_text(sync)
    batch = dataclasses.replace(base, kind="email_batch", result={
        "sent": 9, "failed": [], "uncertain": [{"recipient": "a@x"}], "transport": "smtp x"})
    assert outcome_text(batch) == ("9 e-mails sent, 1 uncertain (see the job's details before "
                                   "sending again)")
    outbox = dataclasses.replace(batch, result={"sent": 4, "transport": "outbox"})
    assert outcome_text(outbox) == "4 e-mails written to the outbox"
