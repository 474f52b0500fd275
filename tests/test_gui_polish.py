"""What a person saw and we mended: the settings dialog's size and fields, the wait
dialog's way back, the registry footer, the status bar's acknowledgement, schedule times.

Real dialogs and windows offscreen, a real engine with real worker processes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import wait_final, wait_until
from PySide6.QtCore import QPoint, QRect, Qt, QTimer
from PySide6.QtWidgets import QLabel, QPushButton, QScrollArea
from test_gui import _answer_quit_box, window  # noqa: F401  (window: a fixture)

from swifty_desktop.gui.forms import SecretField, SettingsDialog
from swifty_desktop.gui.registry_dock import RegistryPanel
from swifty_desktop.gui.schedules_view import COL_LAST, COL_NEXT, ScheduleRow, SchedulesModel
from swifty_desktop.integrations.mailer import SmtpConfig
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.settings import Settings

# what only the custom (WooCommerce) supplier reads (tasks/catalog_sync.py)
CUSTOM_SUPPLIER_ONLY = ("supplier.base_url", "supplier.consumer_key",
                        "supplier.consumer_secret", "supplier.name")


@pytest.fixture
def settings_store(db: Any, monkeypatch: Any, tmp_path: Any) -> Any:
    """Settings on the test's database with a file keyring (secrets can be stored)."""
    import keyring
    from loopback import use_file_keyring

    (tmp_path / "keyring").mkdir()
    previous = use_file_keyring(monkeypatch, tmp_path / "keyring")
    yield Settings(db)
    keyring.set_keyring(previous)


def _dialog(qtbot: Any, store: Settings) -> SettingsDialog:
    dialog = SettingsDialog(store)
    qtbot.addWidget(dialog)
    return dialog


# ------------------------------------------------------------------ 1. dialog size
def test_every_settings_page_fits_without_scrolling_at_the_default_size(
        qtbot: Any, settings_store: Settings) -> None:
    dialog = _dialog(qtbot, settings_store)
    dialog.show()
    qtbot.waitExposed(dialog)
    screen = dialog.screen().availableGeometry()
    assert dialog.width() <= screen.width() and dialog.height() <= screen.height()
    checked = set()
    for i in range(dialog.pages.count()):
        dialog.pages.setCurrentIndex(i)
        qtbot.wait(20)
        tab = dialog.pages.widget(i)  # its fields scroll; a Test connection row stays below
        scroll = tab if isinstance(tab, QScrollArea) else tab.findChild(QScrollArea)
        assert isinstance(scroll, QScrollArea)  # small screens still scroll
        name = dialog.pages.tabText(i)
        assert scroll.verticalScrollBar().maximum() == 0, f"the {name} page scrolls"
        assert scroll.horizontalScrollBar().maximum() == 0, f"the {name} page scrolls"
        viewport = scroll.viewport()
        for key, (_spec, field) in dialog.fields.items():
            if not scroll.widget().isAncestorOf(field):
                continue
            top_left = field.mapTo(viewport, QPoint(0, 0))
            rect = QRect(top_left, field.size())
            assert viewport.rect().contains(rect), f"{key} is cut off on the {name} page"
            checked.add(key)
    # the fields the screenshots showed cut off
    assert {"supplier.currency", "mail.from_address", "mail.per_minute"} <= checked
    assert checked == set(dialog.fields)


# ----------------------------------------------------------------- 2. SMTP port
def test_smtp_port_zero_reads_automatic_and_follows_the_security_choice(
        qtbot: Any, settings_store: Settings) -> None:
    dialog = _dialog(qtbot, settings_store)
    port = dialog.fields["mail.smtp_port"][1]
    security = dialog.fields["mail.smtp_security"][1]
    assert port.value() == 0
    for choice in ("starttls", "ssl", "none"):
        security.setCurrentText(choice)
        usual = SmtpConfig(host="smtp.example.com", security=choice).effective_port
        assert port.text() == f"Automatic ({usual})"  # what the mailer will really use
    hints = [label.text() for label in dialog.findChildren(QLabel)]
    assert not any(text.startswith("0:") for text in hints)
    assert any(text.startswith("Automatic: the usual port") for text in hints)
    dialog.accept()
    assert settings_store.get("mail.smtp_port") == 0  # still stored as 0
    dialog = _dialog(qtbot, settings_store)
    port = dialog.fields["mail.smtp_port"][1]
    port.setValue(2525)
    assert port.text() == "2525"
    dialog.accept()
    assert settings_store.get("mail.smtp_port") == 2525


# ----------------------------------------------------------- 3. supplier fields
def test_custom_supplier_fields_are_disabled_for_the_demo_supplier(
        qtbot: Any, settings_store: Settings) -> None:
    settings_store.set("supplier.base_url", "https://shop.example.com")
    settings_store.set("supplier.consumer_key", "ck_123")
    settings_store.set_secret("supplier.consumer_secret", "cs_456")
    dialog = _dialog(qtbot, settings_store)
    mode = dialog.fields["supplier.mode"][1]
    assert mode.currentText() == "demo"

    def enabled() -> dict[str, bool]:
        return {key: dialog.fields[key][1].isEnabled() for key in CUSTOM_SUPPLIER_ONLY}

    secret = dialog.fields["supplier.consumer_secret"][1]
    assert isinstance(secret, SecretField)
    assert not any(enabled().values()) and not secret.removeButton.isEnabled()
    # the demo supplier uses the price currency too
    assert dialog.fields["supplier.currency"][1].isEnabled() and mode.isEnabled()
    mode.setCurrentText("custom")
    assert all(enabled().values()) and secret.removeButton.isEnabled()
    mode.setCurrentText("demo")
    assert not any(enabled().values())
    dialog.accept()
    assert settings_store.get("supplier.mode") == "demo"
    assert settings_store.get("supplier.base_url") == "https://shop.example.com"
    assert settings_store.get("supplier.consumer_key") == "ck_123"
    assert settings_store.get_secret("supplier.consumer_secret") == "cs_456"
    settings_store.set("supplier.mode", "custom")
    dialog = _dialog(qtbot, settings_store)
    assert all(dialog.fields[key][1].isEnabled() for key in CUSTOM_SUPPLIER_ONLY)


# --------------------------------------------------------- 4. wait, then keep working
def test_resume_dispatch_undoes_a_drain(qtbot: Any, make_manager: Any) -> None:
    manager = make_manager()
    assert manager.drain(0)
    job_id = manager.submit("noop")
    qtbot.wait(500)  # several poll and dispatch turns
    assert manager.store.get(job_id).status is JobStatus.QUEUED
    manager.resume_dispatch()
    assert wait_final(qtbot, manager, job_id).status is JobStatus.COMPLETED
    manager.stop(timeout=5)
    manager.resume_dispatch()  # a stopped engine stays stopped
    assert not manager.is_running


def _click_wait_dialog_button(win: Any, text: str, seen: list[tuple[int, int]]) -> bool:
    dialog = getattr(win, "_wait_dialog", None)
    if dialog is None or not dialog.isVisible():
        return False
    seen.append((dialog.maximum(), dialog.value()))
    buttons = {b.text(): b for b in dialog.findChildren(QPushButton)}
    assert text in buttons, f"no {text!r} in {list(buttons)}"
    buttons[text].click()
    return True


def test_keep_working_while_waiting_to_quit_quits_nothing(window: Any, qtbot: Any) -> None:  # noqa: F811
    manager = window.manager  # two worker slots: two run, the third waits
    running = [manager.submit("sleep", {"seconds": 3.0}) for _ in range(2)]
    queued = manager.submit("sleep", {"seconds": 0.2})
    wait_until(qtbot, lambda: set(manager.running_ids()) == set(running))
    quits: list[int] = []
    window.quitRequested.connect(lambda: quits.append(1))
    seen: list[tuple[int, int]] = []
    clicked: list[bool] = []
    watcher = QTimer(interval=50)
    watcher.timeout.connect(lambda: clicked or (
        _click_wait_dialog_button(window, "Keep working", seen) and clicked.append(True)))
    watcher.start()
    QTimer.singleShot(200, lambda: _answer_quit_box(window, "Wait, then quit"))
    window.close()
    watcher.stop()
    assert clicked and seen[0] == (2, 0)
    assert quits == [] and window.isVisible() and not window.really_quit
    assert all(manager.store.get(i).status is JobStatus.RUNNING for i in running)
    # the engine takes jobs again: the queued one starts when a slot frees
    assert wait_final(qtbot, manager, queued).status is JobStatus.COMPLETED
    assert all(wait_final(qtbot, manager, i).status is JobStatus.COMPLETED for i in running)
    assert quits == []


# -------------------------------------------------------------- 5. registry footer
def test_the_registry_footer_counts_jobs_in_good_english(qtbot: Any, make_manager: Any,
                                                         db: Any) -> None:
    manager = make_manager()
    panel = RegistryPanel(manager)
    qtbot.addWidget(panel)

    def footer() -> str:
        return panel.footerLabel.text().split(" · ")[0]

    assert footer() == "0 jobs shown"
    first = manager.submit("noop")
    wait_until(qtbot, lambda: footer() == "1 job shown", message="one job in the footer")
    wait_final(qtbot, manager, first)
    for _ in range(2):
        manager.submit("noop")
    wait_until(qtbot, lambda: footer() == "3 jobs shown", message="three jobs in the footer")
    # a long history (finished already, so that nothing runs them): one page of 200
    manager.store.insert_many([("noop", f"Job {i}", {}, Trigger("api")) for i in range(250)])
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET status = 'completed', finished_at = created_at "
                             "WHERE status = 'queued'")
    panel = RegistryPanel(manager)
    qtbot.addWidget(panel)
    assert panel.model.canFetchMore() and footer() == "200+ jobs shown"


# ------------------------------------------------------- 6. status bar acknowledgement
def test_the_acknowledgement_goes_when_its_job_finishes(window: Any, qtbot: Any) -> None:  # noqa: F811
    bar = window.statusBar()
    started = time.monotonic()
    window.kind_actions["Export products to Excel"].trigger()
    ack = bar.currentMessage()
    assert "background" in ack
    job_id = window.manager.store.list(limit=1)[0].id
    assert wait_final(qtbot, window.manager, job_id, timeout=60).status is JobStatus.COMPLETED
    wait_until(qtbot, lambda: bar.currentMessage() == "", timeout=2,
               message="the acknowledgement to go")
    assert time.monotonic() - started < 7.5  # not the message's own 8 s timeout

    window.kind_actions["Export products to Excel"].trigger()
    job_id = window.manager.store.list(limit=1)[0].id
    bar.showMessage("Something newer", 30_000)
    wait_final(qtbot, window.manager, job_id, timeout=60)
    qtbot.wait(100)
    assert bar.currentMessage() == "Something newer"  # not ours to erase


# ---------------------------------------------------------------- 7. schedule times
def _local(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return time.mktime((year, month, day, hour, minute, 0, 0, 0, -1))


def _row(next_run: float | None = None, last_run: float | None = None) -> ScheduleRow:
    return ScheduleRow(id=1, name="nightly", kind="noop", rule="every day", enabled=True,
                       last_run=last_run, last_status="completed" if last_run else None,
                       last_job_id=5 if last_run else None, next_run=next_run, missed=0,
                       note=None, backing_off=False)


@pytest.mark.skipif(time.strftime("%a %b", time.localtime(_local(2026, 12, 6, 2)))
                    != "Sun Dec", reason="day and month names follow the locale")
def test_schedule_times_say_which_day(qapp: Any) -> None:
    now = _local(2026, 12, 3, 10)  # a Thursday morning
    model = SchedulesModel(clock=lambda: now)

    def shown(col: int, **times: float) -> str:
        model.set_rows([_row(**times)])
        return str(model.data(model.index(0, col)))

    assert shown(COL_NEXT, next_run=_local(2026, 12, 3, 23)) == "Today 23:00"
    assert shown(COL_NEXT, next_run=_local(2026, 12, 4, 7)) == "Tomorrow 07:00"
    assert shown(COL_NEXT, next_run=_local(2026, 12, 6, 2)) == "Sun 6 Dec 02:00"
    assert shown(COL_NEXT, next_run=_local(2026, 12, 9, 2)) == "Wed 9 Dec 02:00"
    assert shown(COL_NEXT, next_run=_local(2026, 12, 10, 2)) == "10 Dec 2026 02:00"
    assert shown(COL_NEXT, next_run=_local(2027, 1, 12, 2)) == "12 Jan 2027 02:00"
    tip = model.data(model.index(0, COL_NEXT), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Next run: Tue 2027-01-12 02:00:00")
    # the last run reads the same way, looking back
    assert shown(COL_LAST, last_run=_local(2026, 12, 3, 7)) == "Today 07:00 · Completed · #5"
    assert shown(COL_LAST, last_run=_local(2026, 12, 2, 7)).startswith("Yesterday 07:00 ·")
    assert shown(COL_LAST, last_run=_local(2026, 11, 30, 2)).startswith("Mon 30 Nov 02:00 ·")
    assert shown(COL_LAST, last_run=_local(2025, 11, 30, 2)).startswith("30 Nov 2025 02:00 ·")
    tip = model.data(model.index(0, COL_LAST), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Last run: Sun 2025-11-30 02:00:00") and "Job #5" in tip
