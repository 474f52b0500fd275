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
    COL_LAST,
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
