"""The Schedules view and the schedule editor, offscreen, with pytest-qt.

A real database, a real JobManager with worker processes, a real SchedulerService
(``manual`` mode: it fires only when told, so nothing fires behind the test's back).
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import wait_final, wait_until
from PySide6.QtCore import Qt

from swifty_desktop.gui.schedule_editor import ScheduleEditor
from swifty_desktop.gui.schedules_view import (
    COL_ENABLED,
    COL_KIND,
    COL_LAST,
    COL_MISSED,
    COL_NAME,
    COL_NEXT,
    COL_RULE,
    SchedulesView,
)
from swifty_desktop.jobs.model import JobStatus
from swifty_desktop.scheduling.service import SchedulerService
from swifty_desktop.scheduling.store import ScheduleStore
from swifty_desktop.tasks import get_kind


@pytest.fixture
def service(make_manager, db) -> Any:  # type: ignore[no-untyped-def]
    manager = make_manager(workers=1)
    svc = SchedulerService(ScheduleStore(db), manager, mode="manual")
    svc.start()  # seeds the three default schedules
    yield svc
    svc.shutdown()


@pytest.fixture
def view(service, qtbot) -> SchedulesView:  # type: ignore[no-untyped-def]
    service.add(name="tick", kind="noop", interval_seconds=3600)
    widget = SchedulesView(service, service.manager, include_diagnostic=True)
    qtbot.addWidget(widget)
    widget.resize(900, 300)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def cell(view: SchedulesView, name: str, column: int) -> str:
    model = view.model
    row = next(i for i, r in enumerate(model.rows()) if r.name == name)
    return str(model.data(model.index(row, column)))


def select(view: SchedulesView, name: str) -> int:
    sid = next(r.id for r in view.model.rows() if r.name == name)
    assert view.select(sid)
    return sid


def test_rows_show_rule_state_and_runs(view: SchedulesView) -> None:
    assert view.model.rowCount() == 4
    assert cell(view, "Exchange rates", COL_RULE) == "Every day at 07:00"
    assert cell(view, "Weekly sales report", COL_RULE) == "Every Monday at 06:00"
    assert cell(view, "Archive completed orders", COL_RULE) == "Every Sunday at 02:00"
    assert cell(view, "tick", COL_RULE) == "Every hour"
    assert cell(view, "tick", COL_ENABLED) == "Yes" and cell(view, "tick", COL_LAST) == "Never"
    # the kind as the menus name it; its name in the tooltip
    assert cell(view, "Archive completed orders", COL_KIND) == "Archive old orders"
    row = next(i for i, r in enumerate(view.model.rows()) if r.name == "tick")
    assert view.model.data(view.model.index(row, COL_KIND),
                           Qt.ItemDataRole.ToolTipRole) == "Job kind: noop"
    assert cell(view, "tick", COL_NEXT) not in ("", "Never", "Paused")
    names = [view.proxy.data(view.proxy.index(r, COL_NAME)) for r in range(4)]
    assert names == sorted(names, key=str.lower)  # sorted by name in the view
    assert not view.actRunNow.isEnabled()  # nothing selected yet
    select(view, "tick")
    assert view.actRunNow.isEnabled() and view.actDelete.isEnabled()


def test_run_now_queues_a_job_and_the_last_run_opens_it(view: SchedulesView, qtbot) -> None:
    sid = select(view, "tick")
    view.actRunNow.trigger()
    job = view.manager.store.list()[0]
    assert (job.kind, job.trigger.type, job.schedule_id) == ("noop", "schedule", sid)
    assert view.messageLabel.text() == f"Queued job #{job.id} for schedule 'tick'."
    assert wait_final(qtbot, view.manager, job.id).status is JobStatus.COMPLETED
    wait_until(qtbot, lambda: "Completed" in cell(view, "tick", COL_LAST), 10,
               "the row to show the completed run")
    assert cell(view, "tick", COL_LAST).endswith(f"· Completed · #{job.id}")

    row = view.model.row_of(sid)
    index = view.proxy.mapFromSource(view.model.index(row, COL_LAST))
    rect = view.table.visualRect(index)
    assert rect.isValid()
    with qtbot.waitSignal(view.showJobRequested, timeout=2000) as blocker:
        qtbot.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(view.table.viewport(), Qt.MouseButton.LeftButton,
                          pos=rect.center())
    assert blocker.args == [job.id]


def test_pause_and_resume_toggle(view: SchedulesView, qtbot) -> None:
    sid = select(view, "tick")
    store = view.scheduler.store
    assert view.actToggle.text() == "&Pause"
    view.actToggle.trigger()
    assert store.get(sid).enabled is False
    assert cell(view, "tick", COL_ENABLED) == "Paused" and cell(view, "tick", COL_NEXT) == "Paused"
    assert view.actToggle.text() == "Res&ume"
    view.actToggle.trigger()
    assert store.get(sid).enabled is True and cell(view, "tick", COL_ENABLED) == "Yes"
    assert view.actToggle.text() == "&Pause"


def test_delete_asks_first(view: SchedulesView) -> None:
    sid = select(view, "tick")
    asked: list[str] = []
    view.confirm = lambda title, text: asked.append(text) or False
    assert view.delete_selected() is False
    assert "Delete the schedule 'tick' (Every hour)?" in asked[0]
    assert view.scheduler.store.get(sid).name == "tick" and view.model.rowCount() == 4
    view.confirm = lambda title, text: True
    assert view.delete_selected() is True
    assert view.scheduler.store.find("tick") is None and view.model.rowCount() == 3


def test_new_opens_the_editor_and_the_saved_schedule_appears(view: SchedulesView, qtbot) -> None:
    view.actNew.trigger()
    editor = view.editor
    assert isinstance(editor, ScheduleEditor) and editor.isVisible()
    editor.nameEdit.setText("Nightly sleep")
    editor.kindCombo.setCurrentIndex(editor.kindCombo.findData("sleep"))
    assert set(editor._param_fields) == {p.name for p in get_kind("sleep").params}
    assert {"seconds", "checkpoints"} <= set(editor._param_fields)
    editor.cronEdit.setText("0 3 * * *")
    assert editor.ok_button().isEnabled()
    qtbot.mouseClick(editor.ok_button(), Qt.MouseButton.LeftButton)
    saved = view.scheduler.store.find("Nightly sleep")
    assert saved is not None and (saved.kind, saved.cron) == ("sleep", "0 3 * * *")
    assert view.model.rowCount() == 5 and cell(view, "Nightly sleep", COL_RULE) == \
        "Every day at 03:00"
    assert view.selected().id == saved.id
    assert "Saved schedule 'Nightly sleep'" in view.messageLabel.text()

    select(view, "Nightly sleep")
    view.actEdit.trigger()
    editor = view.editor
    assert editor.nameEdit.text() == "Nightly sleep" and editor.cronEdit.text() == "0 3 * * *"
    editor.cronEdit.setText("30 4 * * *")
    editor.accept()
    assert view.scheduler.store.get(saved.id).cron == "30 4 * * *"
    wait_until(qtbot, lambda: cell(view, "Nightly sleep", COL_RULE) == "Every day at 04:30")


def test_changes_made_elsewhere_show_up_after_a_sync(view: SchedulesView, qtbot, db) -> None:
    elsewhere = ScheduleStore(db)  # e.g. `swifty-desktop schedules pause tick` meanwhile
    elsewhere.set_enabled(elsewhere.by_name("tick").id, False)
    assert cell(view, "tick", COL_ENABLED) == "Yes"  # the view does not poll each row
    view.scheduler.sync()
    wait_until(qtbot, lambda: cell(view, "tick", COL_ENABLED) == "Paused", 5,
               "the view to show the pause made elsewhere")


# ----------------------------------------------------------------------------- editor
@pytest.fixture
def editor(service, qtbot) -> ScheduleEditor:  # type: ignore[no-untyped-def]
    dialog = ScheduleEditor(service, None, include_diagnostic=True)
    qtbot.addWidget(dialog)
    dialog.nameEdit.setText("Weekly")
    dialog.kindCombo.setCurrentIndex(dialog.kindCombo.findData("noop"))
    return dialog


def test_an_invalid_cron_shows_why_and_disables_ok(editor: ScheduleEditor) -> None:
    editor.cronEdit.setText("61 * * * *")
    assert editor.error_text() != ""
    assert editor.error_text().startswith("Cron expression '61 * * * *' is not valid")
    assert "higher than the maximum value (59)" in editor.error_text()
    assert not editor.ok_button().isEnabled()
    assert editor.previewList.count() == 0 and editor.ruleLabel.text() == ""
    editor.cronEdit.setText("0 6 * *")  # typing on: still not five fields
    assert "has 4 fields" in editor.error_text() and not editor.ok_button().isEnabled()


def test_a_valid_cron_previews_the_next_five_runs(editor: ScheduleEditor) -> None:
    editor.cronEdit.setText("0 6 * * 1")
    assert editor.error_text() == "" and editor.ok_button().isEnabled()
    assert editor.ruleLabel.text() == "Every Monday at 06:00"
    items = [editor.previewList.item(i).text() for i in range(editor.previewList.count())]
    assert len(items) == 5
    assert all(text.startswith("Mon ") and " 06:00" in text for text in items)
    assert len(set(items)) == 5

    editor.tzCombo.setCurrentText("America/New_York")
    assert editor.ruleLabel.text() == "Every Monday at 06:00 (America/New_York)"
    items = [editor.previewList.item(i).text() for i in range(5)]
    assert all(" 06:00 E" in t and "here)" in t for t in items)  # EST/EDT, and local time
    editor.tzCombo.setCurrentText("Mars/Olympus")
    assert "Unknown time zone 'Mars/Olympus'; use an IANA name" in editor.error_text()
    assert not editor.ok_button().isEnabled()


def test_interval_mode_and_saving(editor: ScheduleEditor, service) -> None:
    editor.intervalRadio.setChecked(True)
    editor.intervalSpin.setValue(15)
    editor.intervalUnit.setCurrentIndex(editor.intervalUnit.findData(60))
    assert not editor.cronEdit.isEnabled() and editor.intervalSpin.isEnabled()
    assert editor.ruleLabel.text() == "Every 15 minutes" and editor.previewList.count() == 5
    editor.misfireCombo.setCurrentIndex(editor.misfireCombo.findData("skip"))
    editor.graceSpin.setValue(2.5)
    saved: list[int] = []
    editor.saved.connect(saved.append)
    editor.accept()
    record = service.store.find("Weekly")
    assert saved == [record.id] and editor.result() == ScheduleEditor.DialogCode.Accepted
    assert (record.interval_seconds, record.cron, record.misfire_policy,
            record.grace_seconds) == (900, None, "skip", 9000)


def test_saving_a_duplicate_name_keeps_the_dialog_open_and_says_why(editor, service) -> None:
    editor.nameEdit.setText("exchange RATES")
    editor.cronEdit.setText("0 8 * * *")
    assert editor.ok_button().isEnabled()  # only the database knows the names
    editor.accept()
    assert editor.result() != ScheduleEditor.DialogCode.Accepted
    assert "a schedule named 'exchange RATES' already exists" in editor.error_text()
    assert [r.name for r in service.store.list()].count("Exchange rates") == 1


def test_parameters_follow_the_kind_and_are_validated(editor: ScheduleEditor, service) -> None:
    editor.kindCombo.setCurrentIndex(editor.kindCombo.findData("sleep"))
    seconds = editor._param_fields["seconds"]
    seconds.setValue(2.5)
    editor.cronEdit.setText("*/15 * * * *")
    editor.accept()
    record = service.store.find("Weekly")
    assert record.kind == "sleep" and record.params["seconds"] == 2.5


def test_editing_a_schedule_of_a_missing_kind_keeps_the_kind(service, qtbot) -> None:
    record = service.store.add(name="Future", kind="kind_of_tomorrow", params={"a": 1},
                               cron="0 5 * * *", check_kind=False)
    dialog = ScheduleEditor(service, record)
    qtbot.addWidget(dialog)
    assert "(not available in this version)" in dialog.kindCombo.currentText()
    assert dialog.ok_button().isEnabled()
    dialog.cronEdit.setText("0 6 * * *")
    dialog.accept()
    saved = service.store.get(record.id)
    assert (saved.kind, saved.params, saved.cron) == ("kind_of_tomorrow", {"a": 1}, "0 6 * * *")


# ------------------------------------------------------------------- the real window
def test_the_app_shows_the_schedules_tab_in_the_registry_dock(qapp, qtbot, tmp_path) -> None:
    """app.py starts the Qt scheduler and hands it to the window, which adds the tab."""

    from swifty_desktop import bootstrap
    from swifty_desktop.app import SwiftyApp

    style, quit_on_close = qapp.style().name(), qapp.quitOnLastWindowClosed()
    app = SwiftyApp(str(tmp_path / "data"), show_welcome=False)
    app.start()
    try:
        window = app.window
        wait_until(qtbot, lambda: getattr(window, "schedules_view", None) is not None, 30,
                   "the scheduler to start and its tab to appear")
        tabs = window.dock.tabs
        titles = [tabs.tabText(i) for i in range(tabs.count())]
        assert titles == ["Jobs", "Schedules"]
        view = tabs.widget(titles.index("Schedules"))
        assert view is window.schedules_view and isinstance(view, SchedulesView)
        assert view.scheduler is app.scheduler and view.manager is app.manager
        assert app.scheduler.mode == "qt" and app.scheduler.is_running
        wait_until(qtbot, lambda: view.model.rowCount() == 3, 10, "the default schedules")
        assert {r.name for r in view.model.rows()} == {
            "Exchange rates", "Archive completed orders", "Weekly sales report"}
        tabs.setCurrentWidget(view)
        assert view.isVisible() and window.dock.isVisible()
    finally:
        window.really_quit = True
        window.close()
        app.shutdown()
        window.deleteLater()
        qapp.setStyle(style)
        qapp.setQuitOnLastWindowClosed(quit_on_close)
        bootstrap.close_logs(tmp_path)


# ------------------------------------------------------ missed runs, back-off, notes
def tooltip(view: SchedulesView, name: str, column: int) -> str:
    model = view.model
    row = next(i for i, r in enumerate(model.rows()) if r.name == name)
    return str(model.data(model.index(row, column), Qt.ItemDataRole.ToolTipRole))


def test_missed_runs_back_off_and_notes_show_in_the_row(view: SchedulesView, qtbot) -> None:
    import time

    store = view.scheduler.store
    rec = store.by_name("tick")
    assert cell(view, "tick", COL_MISSED) == ""  # nothing missed: an empty cell
    note = ("Caught up: 3 runs missed while the app was not running (latest due Mon "
            "07:00); ran once at Mon 09:12.")
    assert store.claim_fire(rec, time.time() - 60, missed=3, note=note)
    view.scheduler.sync()  # as after any sync, the view refreshes
    wait_until(qtbot, lambda: cell(view, "tick", COL_MISSED) == "3", 5, "the missed count")
    tip = tooltip(view, "tick", COL_MISSED)
    assert tip.startswith("3 run(s) fell due while the app was not running") and note in tip
    assert tooltip(view, "tick", COL_NAME) == note  # the note is on every cell of the row
    assert not cell(view, "tick", COL_NEXT).endswith("(backing off)")

    backoff = ("Backing off: the last 3 runs failed (last error: supplier down (503)). "
               "Fix the cause and use Run now; a successful run ends the back-off.")
    until = time.time() + 2 * 3600
    rec = store.get(rec.id)
    assert store.set_failure_state(rec.id, 3, until, backoff, rec.next_run(until))
    view.refresh()
    next_run = cell(view, "tick", COL_NEXT)
    assert next_run.endswith(" (backing off)") and next_run != " (backing off)"
    assert tooltip(view, "tick", COL_NEXT) == backoff
    assert view.model.data(view.model.index(view.model.row_of(rec.id), COL_NEXT),
                           Qt.ItemDataRole.ForegroundRole).name() == "#e65100"


# --------------------------------------------------------------- editor, as you type
def test_the_editor_checks_the_cron_as_you_type_and_previews_five_runs(
        editor: ScheduleEditor, qtbot) -> None:
    import datetime as dt

    editor.show()
    editor.cronEdit.clear()
    assert not editor.ok_button().isEnabled() and editor.previewList.count() == 0
    states: list[tuple[str, bool, int]] = []
    editor.cronEdit.textChanged.connect(lambda text: states.append(
        (text, editor.ok_button().isEnabled(), editor.previewList.count())))
    qtbot.keyClicks(editor.cronEdit, "0 6 * * 1")
    assert [t for t, _, _ in states] == ["0", "0 ", "0 6", "0 6 ", "0 6 *", "0 6 * ",
                                         "0 6 * *", "0 6 * * ", "0 6 * * 1"]
    assert [(ok, n) for _, ok, n in states[:-1]] == [(False, 0)] * 8  # checked per key
    assert states[-1][1:] == (True, 5)
    assert editor.error_text() == "" and editor.ruleLabel.text() == "Every Monday at 06:00"
    items = [editor.previewList.item(i).text() for i in range(5)]
    days = [dt.datetime.strptime(text[:20], "%a %Y-%m-%d %H:%M") for text in items]
    assert all(d.strftime("%a %H:%M") == "Mon 06:00" for d in days)
    assert [(b - a).days for a, b in zip(days, days[1:], strict=False)] == [7, 7, 7, 7]
    assert days[0] > dt.datetime.now() - dt.timedelta(days=1)  # from now on

    qtbot.keyClicks(editor.cronEdit, "0")  # "0 6 * * 10": no such weekday
    assert not editor.ok_button().isEnabled() and editor.error_text() != ""
    assert editor.previewList.count() == 0 and editor.ruleLabel.text() == ""
    qtbot.keyClick(editor.cronEdit, Qt.Key.Key_Backspace)
    assert editor.ok_button().isEnabled() and editor.previewList.count() == 5


# ------------------------------------------------------------------ a secret parameter
def test_the_editor_keeps_a_saved_secret_unless_a_new_one_is_typed(
        service, qtbot, db, monkeypatch, tmp_path) -> None:
    import json

    import keyring
    from loopback import use_file_keyring

    from swifty_desktop.jobs.secrets import is_ref

    previous = use_file_keyring(monkeypatch, tmp_path)
    try:
        record = service.add(name="Supplier", kind="catalog_sync", cron="0 5 * * *",
                             params={"base_url": "http://127.0.0.1:9", "consumer_key": "ck_1",
                                     "consumer_secret": "cs_SAVED_1"})
        ref = record.params["consumer_secret"]
        dialog = ScheduleEditor(service, record)
        qtbot.addWidget(dialog)
        field = dialog._param_fields["consumer_secret"]
        assert field.text() == "" and "system keyring" in field.placeholderText()
        qtbot.keyClicks(dialog.cronEdit, " ")  # any edit; the secret field stays empty
        dialog.accept()
        assert service.store.get(record.id).params["consumer_secret"] == ref

        dialog = ScheduleEditor(service, service.store.get(record.id))
        qtbot.addWidget(dialog)
        qtbot.keyClicks(dialog._param_fields["consumer_secret"], "cs_TYPED_2")
        dialog.accept()
        saved = service.store.get(record.id).params["consumer_secret"]
        assert is_ref(saved) and saved != ref
        entries = json.loads((tmp_path / "keyring.json").read_text())
        assert list(entries.values()) == ["cs_TYPED_2"]  # the old entry is gone
        with db.connect() as conn:
            stored = conn.exec_driver_sql("SELECT params FROM schedules").scalars().all()
        assert not any("cs_SAVED_1" in p or "cs_TYPED_2" in p for p in stored)
    finally:
        keyring.set_keyring(previous)
