"""Dialogs built from declarations: a kind's parameters, the settings groups, welcome.

A kind declares its parameters (name, type, default, help, choices...); the
parameter dialog shows one field per parameter and validates with the kind's own
``validate`` before anything is queued.  Settings pages are generated the same
way from ``swifty_desktop.settings`` groups, with a *Test connection* button on a
page whose group declares a check (run off the GUI thread by a
:class:`~swifty_desktop.gui.background.BackgroundCall`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from swifty_desktop import settings as settings_mod
from swifty_desktop.gui import background
from swifty_desktop.gui.background import BackgroundCall
from swifty_desktop.gui.registry_model import STATUS_COLORS
from swifty_desktop.gui.uitools import icon, load_form
from swifty_desktop.jobs.model import JobStatus
from swifty_desktop.tasks import KindSpec, Param, ParamError

log = logging.getLogger(__name__)


class PathField(QWidget):
    """A line edit with a Browse… button (open, save or folder)."""

    def __init__(self, mode: str, file_filter: str, start_dir: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit(self)
        self.button = QPushButton("Browse…", self)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)
        self._mode, self._filter, self._start = mode, file_filter, start_dir
        self.button.clicked.connect(self.browse)

    def browse(self) -> None:
        start = self.edit.text() or self._start
        if self._mode == "dir":
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        elif self._mode == "save":
            path, _ = QFileDialog.getSaveFileName(self, "Save as", start, self._filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", start, self._filter)
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text()

    def setText(self, text: str) -> None:
        self.edit.setText(text)


class SecretField(QWidget):
    """A password field that never shows the stored secret.

    Empty with a placeholder saying whether a secret is stored; typing replaces it,
    "Remove" deletes it when the dialog is saved.  :attr:`change` tells the dialog
    what to do: ``None`` (keep), ``""`` (remove) or the new secret.
    """

    STORED = "Stored in the keyring — type to replace it"
    NOT_SET = "Not set"
    REMOVING = "Will be removed from the keyring when you save"

    def __init__(self, stored: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit(self)
        self.edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.edit.setPlaceholderText(self.STORED if stored else self.NOT_SET)
        self.removeButton = QPushButton(icon("delete"), "Remove", self)
        self.removeButton.setToolTip("Delete the stored secret from the keyring on Save")
        self.removeButton.setEnabled(stored)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.removeButton)
        self._stored = stored
        self._remove = False
        self.removeButton.clicked.connect(self.mark_removed)
        self.edit.textEdited.connect(self._typed)

    def mark_removed(self) -> None:
        self.edit.clear()
        self._remove = True
        self.edit.setPlaceholderText(self.REMOVING)
        self.removeButton.setEnabled(False)

    def _typed(self, text: str) -> None:
        if text and self._remove:
            self._remove = False
            self.removeButton.setEnabled(self._stored)
            self.edit.setPlaceholderText(self.STORED if self._stored else self.NOT_SET)

    @property
    def change(self) -> str | None:
        if self.edit.text():
            return self.edit.text()
        return "" if self._remove else None

    def text(self) -> str:
        return self.edit.text()


def make_field(kind: str, value: Any, *, choices: Sequence[str] = (),
               minimum: float | None = None, maximum: float | None = None,
               path_mode: str = "open", file_filter: str = "", start_dir: str = "",
               password: bool = False) -> QWidget:
    """An input widget for a value of ``kind`` (str, int, float, bool, choice, path)."""
    if kind == "bool":
        box = QCheckBox()
        box.setChecked(bool(value))
        return box
    if kind == "choice":
        combo = QComboBox()
        combo.addItems(list(choices))
        if value is not None and str(value) in choices:
            combo.setCurrentText(str(value))
        return combo
    if kind == "int":
        spin = QSpinBox()
        spin.setRange(int(minimum) if minimum is not None else -2_000_000_000,
                      int(maximum) if maximum is not None else 2_000_000_000)
        spin.setGroupSeparatorShown(True)
        spin.setValue(int(value) if value is not None else 0)
        return spin
    if kind == "float":
        dspin = QDoubleSpinBox()
        dspin.setDecimals(2)
        dspin.setRange(float(minimum) if minimum is not None else -1e12,
                       float(maximum) if maximum is not None else 1e12)
        dspin.setValue(float(value) if value is not None else 0.0)
        return dspin
    if kind == "path":
        field = PathField(path_mode, file_filter, start_dir)
        field.setText("" if value is None else str(value))
        return field
    edit = QLineEdit("" if value is None else str(value))
    if password:
        edit.setEchoMode(QLineEdit.EchoMode.Password)
    return edit


def field_value(widget: QWidget) -> Any:
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.value()
    if isinstance(widget, (PathField, QLineEdit)):
        return widget.text()
    raise TypeError(f"no value for {widget!r}")


def hint_label(text: str) -> QLabel:
    """The grey line under a field that says what to put in it (visible, not only a
    tooltip: nobody hovers to find out what a form wants)."""
    hint = QLabel(text)
    hint.setWordWrap(True)
    # under its field: QFormLayout gives a wrapped label a line more than it needs, and
    # centred text would float between two rows
    hint.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    # greyer when its field is disabled (a plain colour would hide that)
    hint.setStyleSheet("QLabel { color: #607d8b; } QLabel:disabled { color: #b0bec5; }")
    return hint


PARAM_DIALOG_WIDTH = 520  # room for a path and a two-line hint


class ParamDialog(QDialog):
    """Asks for a kind's parameters and validates them before anything is queued."""

    def __init__(self, spec: KindSpec, *, title: str, fixed: Mapping[str, Any] | None = None,
                 ask: Sequence[str] | None = None, start_dir: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        load_form("param_dialog.ui", self)
        self.spec = spec
        self.fixed = dict(fixed or {})
        self.setWindowTitle(title)
        if spec.icon:
            self.setWindowIcon(icon(spec.icon))
        self.introLabel.setText(spec.description or spec.title)
        self.errorLabel.hide()
        names = list(ask) if ask else [p.name for p in spec.params if p.name not in self.fixed]
        self.fields: dict[str, QWidget] = {}
        form: QFormLayout = self.form
        for param in spec.params:
            if param.name not in names:
                continue
            value = self.fixed.get(param.name, param.default)
            widget = make_field(param.type, value, choices=param.choices,
                                minimum=param.minimum, maximum=param.maximum,
                                path_mode=param.path_mode, file_filter=param.file_filter,
                                start_dir=start_dir, password=param.secret)
            widget.setToolTip(param.help)
            widget.setObjectName(f"param_{param.name}")
            label = QLabel((param.label or param.name.replace("_", " ").capitalize())
                           + ("" if not param.required else " *"))
            label.setToolTip(param.help)
            form.addRow(label, widget)
            if param.help:
                form.addRow("", hint_label(param.help))
            self.fields[param.name] = widget
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.buttonBox.button(QDialogButtonBox.StandardButton.Ok).setText("Queue job")
        self.buttonBox.accepted.connect(self.accept)
        self.buttonBox.rejected.connect(self.reject)
        self.params: dict[str, Any] = {}
        self.setMinimumWidth(PARAM_DIALOG_WIDTH)  # adjustSize alone shrinks to the labels
        self.adjustSize()

    def raw_values(self) -> dict[str, Any]:
        values = dict(self.fixed)
        for name, widget in self.fields.items():
            value = field_value(widget)
            param = next(p for p in self.spec.params if p.name == name)
            if value == "" and not param.required:
                continue
            values[name] = value
        return values

    def accept(self) -> None:
        """Validate in the GUI thread with the kind's own rules; keep the dialog on error."""
        try:
            params = self.spec.validate(self.raw_values())
            _check_paths(self.spec.params, params)
        except ParamError as exc:
            self.errorLabel.setText(str(exc).capitalize())
            self.errorLabel.show()
            return
        self.params = params
        super().accept()


def _check_paths(params: Sequence[Param], values: Mapping[str, Any]) -> None:
    """An input file must exist before we queue a job that reads it."""
    for p in params:
        if p.type == "path" and p.path_mode == "open" and p.name in values:
            path = Path(str(values[p.name])).expanduser()
            if not path.is_file():
                raise ParamError(f"the file {path} does not exist; choose an existing file")


SCREEN_SHARE = 0.9  # the dialog opens at most this share of the screen (its frame, the rest)
CHECK_BUTTON = "Test connection"
CHECK_BUSY = "Testing…"
CHECK_TIP = ("Try the values on this page now, as typed (before you save), with one quick "
             "request; nothing is sent or stored")
# a check's result: the registry's colours for a finished and a failed job; the hint
# colour when there was nothing to contact (the demo supplier, no mail server)
CHECK_COLORS = {"ok": STATUS_COLORS[JobStatus.COMPLETED].name(),
                "failed": STATUS_COLORS[JobStatus.FAILED].name(), "neutral": "#607d8b"}

def run_settings_check(token: int, reference: str, values: Mapping[str, Any],
                       stored_secret: Callable[[str], str | None]
                       ) -> tuple[int, bool, str, bool]:
    """A settings group's check (``module:function``) with these values: (token, ok,
    message, contacted).  Runs on a pool thread (see :class:`SettingsDialog`)."""
    try:
        result = settings_mod.resolve_check(reference)(dict(values), stored_secret)
        return (token, bool(result.ok), str(result.message),
                bool(getattr(result, "contacted", True)))
    except Exception as exc:  # a fault in the check itself, not in the settings
        log.exception("the settings check %s failed", reference)
        return (token, False, f"The test itself failed ({type(exc).__name__}: {exc}). That "
                "is a fault in Swifty Desktop, not in your settings; the log file has the "
                "details for a bug report.", True)


def running_checks() -> int:
    """How many settings checks (and other background calls) are still running."""
    return background.running()


class SettingsDialog(QDialog):
    """One page per declared settings group; secrets go to the OS keyring.

    A stored secret is never read into the dialog: its field only says that one is
    stored, and offers to replace or remove it.  The dialog opens as large as its
    longest page needs (within the screen); a page scrolls only on a small screen.
    A group that declares a check gets a *Test connection* button: it tries the
    values in the form, saved or not, off the GUI thread (:func:`run_settings_check`);
    a result that arrives after the dialog closed is dropped.
    """

    def __init__(self, store: settings_mod.Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        load_form("settings_dialog.ui", self)
        self.store = store
        self.errorLabel.hide()
        self.fields: dict[str, tuple[settings_mod.SettingSpec, QWidget]] = {}
        self._row_labels: dict[str, list[QLabel]] = {}  # a field's label and hint
        self._scrolls: list[QScrollArea] = []
        self._footers: list[QWidget | None] = []  # a page's Test connection row, if any
        self._groups: dict[str, settings_mod.SettingsGroup] = {}
        # a group's Test connection button and its result label
        self.checks: dict[str, tuple[QPushButton, QLabel]] = {}
        self._pending: dict[int, str] = {}  # token of a running check -> its group
        self._tokens = 0
        for group in settings_mod.groups():
            self._groups[group.name] = group
            page = QWidget()
            form = QFormLayout(page)
            # hints wrap across the whole field column, not in a narrow strip
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            if group.description:
                intro = QLabel(group.description)
                intro.setWordWrap(True)
                form.addRow(intro)
            for spec in group.specs:
                widget: QWidget
                if spec.secret:
                    widget = SecretField(bool(store.get_secret(spec.key)))
                else:
                    current = store.get(spec.key)
                    widget = make_field(spec.type,
                                        current if current is not None else spec.default,
                                        choices=spec.choices, minimum=spec.minimum,
                                        maximum=spec.maximum)
                help_text = spec.help
                widget.setObjectName(f"setting_{spec.key}")
                widget.setToolTip(help_text)
                label = QLabel(spec.label)
                label.setToolTip(help_text)
                form.addRow(label, widget)
                self._row_labels[spec.key] = [label]
                if help_text:
                    hint = hint_label(help_text)
                    form.addRow("", hint)
                    self._row_labels[spec.key].append(hint)
                self.fields[spec.key] = (spec, widget)
            # a long page scrolls (small screens) instead of squeezing its wrapped hints
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(page)
            tab: QWidget = scroll
            footer = None
            if group.check:
                # under the scrolling fields, so that a result never hides below them
                footer = self._check_footer(group, form)
                tab = QWidget()
                box = QVBoxLayout(tab)
                box.setContentsMargins(0, 0, 0, 0)
                box.setSpacing(0)
                box.addWidget(scroll, 1)
                box.addWidget(footer)
            self.pages.addTab(tab, group.title)
            self._scrolls.append(scroll)
            self._footers.append(footer)
        if not self.fields:
            empty = QLabel("Nothing to set up yet.")
            empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.pages.addTab(empty, "General")
        self._link_fields()
        self.buttonBox.accepted.connect(self.accept)
        self.buttonBox.rejected.connect(self.reject)
        self.fit_to_pages()

    # ------------------------------------------------------------ test connection
    def _check_footer(self, group: settings_mod.SettingsGroup, form: QFormLayout) -> QWidget:
        """A line, the Test connection button and its result label, margins as the form's."""
        footer = QWidget()
        footer.setObjectName(f"checkFooter_{group.name}")
        layout = QVBoxLayout(footer)
        margins = form.contentsMargins()
        margins.setTop(0)
        layout.setContentsMargins(margins)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        layout.addWidget(line)
        button = QPushButton(CHECK_BUTTON)
        button.setObjectName(f"check_{group.name}")
        button.setToolTip(CHECK_TIP)
        layout.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft)
        result = QLabel()
        result.setObjectName(f"checkResult_{group.name}")
        result.setWordWrap(True)
        result.setTextFormat(Qt.TextFormat.PlainText)  # messages may quote "<html>" bodies
        result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        result.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        result.hide()
        layout.addWidget(result)
        self.checks[group.name] = (button, result)
        button.clicked.connect(lambda: self.run_check(group.name))
        for spec in group.specs:  # a result speaks of the values tested: edited, it goes
            changed = _changed_signal(self.fields[spec.key][1])
            if changed is not None:
                changed.connect(result.hide)
        return footer

    def group_values(self, name: str) -> dict[str, Any]:
        """The values on group ``name``'s page as typed; a secret as ``SecretField.change``
        (None: the stored one, "": none, else the secret typed)."""
        values: dict[str, Any] = {}
        for spec in self._groups[name].specs:
            widget = self.fields[spec.key][1]
            values[spec.key] = widget.change if isinstance(widget, SecretField) \
                else field_value(widget)
        return values

    def run_check(self, name: str) -> None:
        """Start group ``name``'s check with the values in the form (off the GUI thread)."""
        button, result = self.checks[name]
        if not button.isEnabled():
            return  # one at a time per page
        self._tokens += 1
        check = BackgroundCall(functools.partial(
            run_settings_check, self._tokens, self._groups[name].check,
            self.group_values(name), self.store.get_secret), name=f"check of {name}")
        check.done.connect(self._check_finished, Qt.ConnectionType.QueuedConnection)
        self._pending[self._tokens] = name
        button.setEnabled(False)
        button.setText(CHECK_BUSY)
        result.hide()
        check.start()

    @Slot(object)
    def _check_finished(self, answer: tuple[int, bool, str, bool]) -> None:
        token, ok, message, contacted = answer
        name = self._pending.pop(token, None)
        if name is None:  # the dialog was closed meanwhile: nobody is waiting for it
            return
        button, result = self.checks[name]
        button.setEnabled(True)
        button.setText(CHECK_BUTTON)
        colour = CHECK_COLORS["neutral" if not contacted else "ok" if ok else "failed"]
        result.setStyleSheet(f"QLabel {{ color: {colour}; }}")
        result.setText(message)
        result.show()

    def done(self, r: int) -> None:
        """Closing drops the results still to come (their checks end by themselves)."""
        self._pending.clear()
        for button, _result in self.checks.values():
            button.setEnabled(True)
            button.setText(CHECK_BUTTON)
        super().done(r)

    # ------------------------------------------------------------- linked fields
    def _link_fields(self) -> None:
        """Fields that follow another: ``enabled_when`` declarations, the automatic port."""
        self._dependents: dict[str, list[str]] = {}
        for key, (spec, _widget) in self.fields.items():
            if spec.enabled_when is not None and spec.enabled_when[0] in self.fields:
                self._dependents.setdefault(spec.enabled_when[0], []).append(key)
        for controller_key in self._dependents:
            changed = _changed_signal(self.fields[controller_key][1])
            if changed is not None:
                changed.connect(lambda *_args, k=controller_key: self._follow(k))
            self._follow(controller_key)
        port = self.fields.get("mail.smtp_port", (None, None))[1]
        security = self.fields.get("mail.smtp_security", (None, None))[1]
        if isinstance(port, QSpinBox):
            port.setGroupSeparatorShown(False)  # "2525", not "2,525"
            if isinstance(security, QComboBox):
                security.currentTextChanged.connect(self._security_changed)
                self._security_changed(security.currentText())
            else:
                port.setSpecialValueText("Automatic")

    def _follow(self, controller_key: str) -> None:
        """Enable what reads only under the controller's current value; stored values
        stay as they are."""
        value = field_value(self.fields[controller_key][1])
        current = str(value).lower() if isinstance(value, bool) else str(value)
        for key in self._dependents.get(controller_key, []):
            spec, widget = self.fields[key]
            assert spec.enabled_when is not None
            enabled = current == spec.enabled_when[1]
            widget.setEnabled(enabled)
            for label in self._row_labels.get(key, []):
                label.setEnabled(enabled)

    def _security_changed(self, security: str) -> None:
        from swifty_desktop.integrations.mailer import SmtpConfig

        port = self.fields["mail.smtp_port"][1]
        if not isinstance(port, QSpinBox):
            return
        # the stored value stays 0: "Automatic" follows the security choice when sending,
        # and the port shown is the one the mailer will use
        usual = SmtpConfig(host="", security=security).effective_port
        port.setSpecialValueText(f"Automatic ({usual})")

    def fit_to_pages(self) -> None:
        """Open as large as the longest page needs, so that no page scrolls; at most
        :data:`SCREEN_SHARE` of the screen (a page scrolls there only on a small one)."""
        if not self._scrolls:
            return
        # before the first show only the dialog's own layout can be measured: around
        # the tab widget (margins, buttons), and the tab widget around its pages
        self.layout().activate()
        outer = self.size() - self.pages.size()
        page_hint = QSize(0, 0)
        for i in range(self.pages.count()):
            page_hint = page_hint.expandedTo(self.pages.widget(i).sizeHint())
        tabs = self.pages.sizeHint() - page_hint
        chrome_w, chrome_h = outer.width() + tabs.width(), outer.height() + tabs.height()
        window = self.parentWidget().window() if self.parentWidget() is not None else self
        screen = window.screen().availableGeometry()
        # a page: its scrolling fields, and the Test connection row under them (if any)
        pages = [(scroll.widget(), footer.sizeHint() if footer is not None else QSize(0, 0))
                 for scroll, footer in zip(self._scrolls, self._footers, strict=True)]
        width = max([self.width()] + [max(p.sizeHint().width(), f.width()) + chrome_w
                                      for p, f in pages])
        width = min(width, int(screen.width() * SCREEN_SHARE))
        inner = width - chrome_w
        height = max([self.height()] + [
            (p.heightForWidth(inner) if p.hasHeightForWidth() else p.sizeHint().height())
            + f.height() + chrome_h for p, f in pages])
        self.resize(width, min(height, int(screen.height() * SCREEN_SHARE)))

    def accept(self) -> None:
        try:
            for key, (_spec, widget) in self.fields.items():
                if isinstance(widget, SecretField):
                    change = widget.change  # None: keep the stored secret as it is
                    if change is not None:
                        self.store.set_secret(key, change or None)
                else:
                    self.store.set(key, field_value(widget))
        except settings_mod.SecretStoreError as exc:
            self.errorLabel.setText(str(exc))
            self.errorLabel.show()
            return
        super().accept()


def _changed_signal(widget: QWidget) -> Any:
    """The signal a settings field emits when its value changes (None: none known)."""
    if isinstance(widget, QComboBox):
        return widget.currentTextChanged
    if isinstance(widget, QCheckBox):
        return widget.toggled
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.valueChanged
    if isinstance(widget, QLineEdit):
        return widget.textChanged
    if isinstance(widget, (PathField, SecretField)):
        return widget.edit.textChanged
    return None


class WelcomeDialog(QDialog):
    """First run on an empty data directory: load sample data, or start empty."""

    def __init__(self, data_dir: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        load_form("welcome.ui", self)
        self.logoLabel.setPixmap(icon("swifty").pixmap(64, 64))
        self.sampleButton.setIcon(icon("sample-data"))
        self.emptyButton.setIcon(icon("run"))
        self.dataDirLabel.setText(f"Data folder: {data_dir}")
        self.choice = "empty"
        self.sampleButton.clicked.connect(lambda: self._choose("sample"))
        self.emptyButton.clicked.connect(lambda: self._choose("empty"))

    def _choose(self, choice: str) -> None:
        self.choice = choice
        self.accept()
