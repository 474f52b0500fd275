"""The schedule editor: name, job kind and parameters, cron or interval, time zone, misfires.

The cron expression is validated as you type and the next five fire times are
previewed; OK stays disabled while anything is invalid and the error line says what
is wrong.  The dialog saves through the scheduler service (which validates again)
and stays open if saving fails, showing why.

A secret parameter (an API secret) is saved to the OS keyring, not the database.
Editing a schedule shows its field empty: left empty it keeps the saved secret,
typed into it replaces it (as in Settings).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QWidget,
)

from swifty_desktop.gui.forms import field_value, make_field
from swifty_desktop.gui.uitools import icon, load_form
from swifty_desktop.jobs.secrets import is_ref
from swifty_desktop.scheduling.rules import LOCAL, Rule, RuleError, format_instant
from swifty_desktop.scheduling.store import (
    DEFAULT_GRACE_S,
    ScheduleError,
    ScheduleRecord,
)

PREVIEW_COUNT = 5
_UNITS = (("seconds", 1), ("minutes", 60), ("hours", 3600), ("days", 86400))


@cache
def time_zone_names() -> tuple[str, ...]:
    """``local`` and every IANA zone this computer knows, sorted."""
    from zoneinfo import available_timezones

    names = sorted(n for n in available_timezones() if "/" in n or n == "UTC")
    return (LOCAL, *names)


class ScheduleEditor(QDialog):
    """Create (``record=None``) or edit a schedule.  Emits ``saved(id)`` after saving.

    ``scheduler`` is the SchedulerService (``kinds``, ``validate``, ``add``, ``update``).
    """

    saved = Signal(int)

    def __init__(self, scheduler: Any, record: ScheduleRecord | None = None,
                 parent: QWidget | None = None, *,
                 clock: Callable[[], float] = time.time,
                 include_diagnostic: bool = False) -> None:
        super().__init__(parent)
        self.scheduler = scheduler
        self.record = record
        self._clock = clock
        # diagnostic kinds (noop, sleep...) are for tests and benchmarks, not for people
        self._kinds = {k.name: k for k in scheduler.kinds()
                       if include_diagnostic or not getattr(k, "diagnostic", False)}
        if record is not None and record.kind not in self._kinds:
            spec = next((k for k in scheduler.kinds() if k.name == record.kind), None)
            if spec is not None:  # a diagnostic kind chosen elsewhere (CLI): keep it
                self._kinds[spec.name] = spec
        self._param_fields: dict[str, QWidget] = {}
        self._kept_secrets: dict[str, str] = {}  # parameter -> keyring reference
        self.saved_id: int | None = None
        self._build()
        self.setWindowTitle("Edit schedule" if record else "New schedule")
        self.setWindowIcon(icon("schedule"))
        self._load(record)
        self._connect()
        self.validate()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        """The form from ``ui/schedule_editor.ui``; the lists it offers are filled here."""
        load_form("schedule_editor.ui", self)
        self.setMinimumWidth(520)
        for name in sorted(self._kinds, key=lambda n: self._kinds[n].title.lower()):
            self.kindCombo.addItem(f"{self._kinds[name].title} ({name})", name)
        for label, seconds in _UNITS:
            self.intervalUnit.addItem(label, seconds)
        self.modeGroup = QButtonGroup(self)
        self.modeGroup.addButton(self.cronRadio)
        self.modeGroup.addButton(self.intervalRadio)
        zones = list(time_zone_names())
        self.tzCombo.addItems(zones)
        completer = QCompleter(zones, self.tzCombo)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.tzCombo.setCompleter(completer)
        self.misfireCombo.addItem("Catch up with one run", "coalesce")
        self.misfireCombo.addItem("Skip them", "skip")
        self.previewLabel.setText(f"Next {PREVIEW_COUNT} runs:")
        # room for a three-line message, so that the form does not jump while typing
        self.errorLabel.setMinimumHeight(self.errorLabel.fontMetrics().lineSpacing() * 3 + 4)
        self.ok_button().setText("Save" if self.record else "Add schedule")

    def ok_button(self) -> Any:
        return self.buttonBox.button(QDialogButtonBox.StandardButton.Ok)

    def _load(self, record: ScheduleRecord | None) -> None:
        if record is None:
            self.cronRadio.setChecked(True)
            self.cronEdit.setText("0 7 * * *")
            self.intervalSpin.setValue(15)
            self.intervalUnit.setCurrentIndex(1)
            self.tzCombo.setCurrentText(LOCAL)
            self.graceSpin.setValue(DEFAULT_GRACE_S / 3600)
            self.enabledCheck.setChecked(True)
            if self.kindCombo.count():
                self.kindCombo.setCurrentIndex(0)
            self._build_params(self.current_kind(), {})
            return
        self.nameEdit.setText(record.name)
        index = self.kindCombo.findData(record.kind)
        if index < 0:
            self.kindCombo.addItem(f"{record.kind} (not available in this version)", record.kind)
            index = self.kindCombo.count() - 1
        self.kindCombo.setCurrentIndex(index)
        if record.cron:
            self.cronRadio.setChecked(True)
            self.cronEdit.setText(record.cron)
        else:
            self.intervalRadio.setChecked(True)
            seconds = int(record.interval_seconds or 60)
            for i in reversed(range(len(_UNITS))):
                if seconds % _UNITS[i][1] == 0:
                    self.intervalUnit.setCurrentIndex(i)
                    self.intervalSpin.setValue(seconds // _UNITS[i][1])
                    break
        self.tzCombo.setCurrentText(record.timezone)
        self.misfireCombo.setCurrentIndex(max(0, self.misfireCombo.findData(
            record.misfire_policy)))
        self.graceSpin.setValue(record.grace_seconds / 3600)
        self.enabledCheck.setChecked(record.enabled)
        self._build_params(record.kind, record.params)

    def _connect(self) -> None:
        for signal in (self.nameEdit.textChanged, self.cronEdit.textChanged,
                       self.tzCombo.currentTextChanged, self.intervalSpin.valueChanged,
                       self.intervalUnit.currentIndexChanged, self.modeGroup.buttonToggled,
                       self.misfireCombo.currentIndexChanged, self.graceSpin.valueChanged):
            signal.connect(self.validate)
        self.kindCombo.currentIndexChanged.connect(self._kind_changed)
        self.buttonBox.accepted.connect(self.accept)
        self.buttonBox.rejected.connect(self.reject)

    # ------------------------------------------------------------- parameters
    def current_kind(self) -> str:
        return str(self.kindCombo.currentData() or "")

    def _kind_changed(self) -> None:
        self._build_params(self.current_kind(), {})
        self.validate()

    def _build_params(self, kind: str, values: dict[str, Any]) -> None:
        while self.paramsForm.rowCount():
            self.paramsForm.removeRow(0)
        self._param_fields.clear()
        self._kept_secrets.clear()
        spec = self._kinds.get(kind)
        if spec is None:
            text = ("This job kind is not available in this version of the app; the "
                    "schedule keeps its parameters: "
                    + (", ".join(f"{k}={v}" for k, v in values.items()) or "none") + ".")
            note = QLabel(text, self.paramsBox)
            note.setWordWrap(True)
            self.paramsForm.addRow(note)
            return
        if not spec.params:
            self.paramsForm.addRow(QLabel("This job kind takes no parameters.", self.paramsBox))
            return
        for param in spec.params:
            value = values.get(param.name, param.default)
            kept = param.secret and is_ref(value)
            if kept:  # the reference is not the secret: never show or edit it
                self._kept_secrets[param.name] = str(value)
                value = ""
            widget = make_field(param.type, value, choices=param.choices,
                                minimum=param.minimum, maximum=param.maximum,
                                path_mode=param.path_mode, file_filter=param.file_filter,
                                password=param.secret)
            if kept and isinstance(widget, QLineEdit):
                widget.setPlaceholderText("Saved in the system keyring; type to replace it")
            widget.setParent(self.paramsBox)
            widget.setObjectName(f"param_{param.name}")
            widget.setToolTip(param.help)
            label = QLabel((param.label or param.name.replace("_", " ").capitalize())
                           + (" *" if param.required else ""), self.paramsBox)
            label.setToolTip(param.help)
            self.paramsForm.addRow(label, widget)
            self._param_fields[param.name] = widget
            for signal_name in ("textChanged", "valueChanged", "toggled",
                                "currentIndexChanged"):
                signal = getattr(widget, signal_name, None)
                if signal is not None:
                    signal.connect(self.validate)
            if hasattr(widget, "edit"):  # PathField
                widget.edit.textChanged.connect(self.validate)

    def param_values(self) -> dict[str, Any]:
        """The parameters as typed (empty optional fields left out)."""
        spec = self._kinds.get(self.current_kind())
        if spec is None:
            return dict(self.record.params) if self.record is not None else {}
        values: dict[str, Any] = {}
        for param in spec.params:
            widget = self._param_fields.get(param.name)
            if widget is None:
                continue
            value = field_value(widget)
            if value == "" and param.name in self._kept_secrets:
                value = self._kept_secrets[param.name]  # empty keeps the saved secret
            if value == "" and not param.required:
                continue
            values[param.name] = value
        return values

    # ------------------------------------------------------------- validation
    def interval_seconds(self) -> int:
        return int(self.intervalSpin.value()) * int(self.intervalUnit.currentData())

    def values(self) -> dict[str, Any]:
        """What would be saved: keyword arguments for ScheduleStore.add/update."""
        cron_mode = self.cronRadio.isChecked()
        return {
            "name": self.nameEdit.text(),
            "kind": self.current_kind(),
            "params": self.param_values(),
            "cron": self.cronEdit.text() if cron_mode else None,
            "interval_seconds": None if cron_mode else self.interval_seconds(),
            "timezone": self.tzCombo.currentText().strip() or LOCAL,
            "misfire_policy": str(self.misfireCombo.currentData()),
            "grace_seconds": int(round(self.graceSpin.value() * 3600)),
            "enabled": self.enabledCheck.isChecked(),
        }

    def _kind_checked(self) -> bool:
        """An unavailable kind may stay on an existing schedule (it may come with an update)."""
        return not (self.record is not None and self.current_kind() == self.record.kind
                    and self.current_kind() not in self._kinds)

    def validate(self, *_: Any) -> bool:
        """Check everything, update the rule text and the preview; enable OK if all is well."""
        cron_mode = self.cronRadio.isChecked()
        self.cronEdit.setEnabled(cron_mode)
        self.intervalSpin.setEnabled(not cron_mode)
        self.intervalUnit.setEnabled(not cron_mode)
        values = self.values()
        error = ""
        self.previewList.clear()
        try:
            rule = Rule.build(values["cron"], values["interval_seconds"], values["timezone"],
                              anchor=self._clock())
        except RuleError as exc:
            error = str(exc)
            self.ruleLabel.setText("")
        else:
            self.ruleLabel.setText(rule.describe())
            for t in rule.preview(PREVIEW_COUNT, self._clock()):
                text = format_instant(t, rule.timezone)
                if rule.timezone != LOCAL:
                    text += f"  ({format_instant(t, LOCAL)} here)"
                self.previewList.addItem(text)
        if not error:
            try:
                self.scheduler.validate(**values, check_kind=self._kind_checked())
            except ScheduleError as exc:
                error = str(exc)
        self._show_error(error)
        return not error

    def _show_error(self, error: str) -> None:
        text = error[:1].upper() + error[1:] if error else ""
        if text and not text.endswith("."):
            text += "."
        self.errorLabel.setText(text)
        self.ok_button().setEnabled(not text)

    def error_text(self) -> str:
        """What is wrong right now ("" when the schedule can be saved)."""
        return self.errorLabel.text()

    # ------------------------------------------------------------------- save
    def accept(self) -> None:
        """Save through the service; on error keep the dialog open and say why."""
        if not self.validate():
            return
        values = self.values()
        try:
            if self.record is None:
                saved = self.scheduler.add(**values)
            else:
                if not self._kind_checked():
                    values.pop("kind")
                    values.pop("params")
                saved = self.scheduler.update(self.record.id, **values)
        except ScheduleError as exc:
            self._show_error(f"could not save the schedule: {exc}")
            return
        self.saved_id = saved.id
        self.saved.emit(saved.id)
        super().accept()
