"""Dialogs built from declarations: a kind's parameters, the settings groups, welcome.

A kind declares its parameters (name, type, default, help, choices...); the
parameter dialog shows one field per parameter and validates with the kind's own
``validate`` before anything is queued.  Settings pages are generated the same
way from ``swifty_desktop.settings`` groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt
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
    QWidget,
)

from swifty_desktop import settings as settings_mod
from swifty_desktop.gui.uitools import icon, load_form
from swifty_desktop.tasks import KindSpec, Param, ParamError


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
            self.fields[param.name] = widget
        self.buttonBox.button(QDialogButtonBox.StandardButton.Ok).setText("Queue job")
        self.buttonBox.accepted.connect(self.accept)
        self.buttonBox.rejected.connect(self.reject)
        self.params: dict[str, Any] = {}
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


# What the settings declarations cannot say yet (SettingSpec has no field for it);
# it belongs next to them in tasks/catalog_sync.py and tasks/email_batch.py once it has.
# Settings that only the custom (WooCommerce) supplier reads: the demo supplier
# needs no address or keys and names itself; the price currency applies to both.
CUSTOM_SUPPLIER_ONLY = ("supplier.base_url", "supplier.consumer_key",
                        "supplier.consumer_secret", "supplier.name")
# the SMTP port 0 stands for, by security choice: mailer.SmtpConfig.effective_port
AUTOMATIC_SMTP_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
SMTP_PORT_HELP = ("Automatic: the usual port for the security choice (587 with STARTTLS, "
                  "465 with SSL, 25 without). Enter another port only if your provider asks "
                  "for one; 0 is Automatic again.")
SCREEN_SHARE = 0.9  # the dialog opens at most this share of the screen (its frame, the rest)


class SettingsDialog(QDialog):
    """One page per declared settings group; secrets go to the OS keyring.

    A stored secret is never read into the dialog: its field only says that one is
    stored, and offers to replace or remove it.  The dialog opens as large as its
    longest page needs (within the screen); a page scrolls only on a small screen.
    """

    def __init__(self, store: settings_mod.Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        load_form("settings_dialog.ui", self)
        self.store = store
        self.errorLabel.hide()
        self.fields: dict[str, tuple[settings_mod.SettingSpec, QWidget]] = {}
        self._row_labels: dict[str, list[QLabel]] = {}  # a field's label and hint
        self._scrolls: list[QScrollArea] = []
        for group in settings_mod.groups():
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
                help_text = SMTP_PORT_HELP if spec.key == "mail.smtp_port" else spec.help
                widget.setObjectName(f"setting_{spec.key}")
                widget.setToolTip(help_text)
                label = QLabel(spec.label)
                label.setToolTip(help_text)
                form.addRow(label, widget)
                self._row_labels[spec.key] = [label]
                if help_text:
                    hint = QLabel(help_text)
                    hint.setWordWrap(True)
                    # under its field: QFormLayout gives a wrapped label a line more
                    # than it needs, and centred text would float between two rows
                    hint.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
                    # greyer when its field is disabled (a plain colour would hide that)
                    hint.setStyleSheet("QLabel { color: #607d8b; } "
                                       "QLabel:disabled { color: #b0bec5; }")
                    form.addRow("", hint)
                    self._row_labels[spec.key].append(hint)
                self.fields[spec.key] = (spec, widget)
            # a long page scrolls (small screens) instead of squeezing its wrapped hints
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(page)
            self.pages.addTab(scroll, group.title)
            self._scrolls.append(scroll)
        if not self.fields:
            empty = QLabel("Nothing to set up yet.")
            empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.pages.addTab(empty, "General")
        self._link_fields()
        self.buttonBox.accepted.connect(self.accept)
        self.buttonBox.rejected.connect(self.reject)
        self.fit_to_pages()

    def _link_fields(self) -> None:
        """Fields that follow another: custom-supplier fields, the automatic port."""
        mode = self.fields.get("supplier.mode", (None, None))[1]
        if isinstance(mode, QComboBox):
            mode.currentTextChanged.connect(self._supplier_mode_changed)
            self._supplier_mode_changed(mode.currentText())
        port = self.fields.get("mail.smtp_port", (None, None))[1]
        security = self.fields.get("mail.smtp_security", (None, None))[1]
        if isinstance(port, QSpinBox):
            port.setGroupSeparatorShown(False)  # "2525", not "2,525"
            if isinstance(security, QComboBox):
                security.currentTextChanged.connect(self._security_changed)
                self._security_changed(security.currentText())
            else:
                port.setSpecialValueText("Automatic")

    def _supplier_mode_changed(self, mode: str) -> None:
        """Disable what only a custom supplier reads; stored values stay as they are."""
        custom = mode == "custom"
        for key in CUSTOM_SUPPLIER_ONLY:
            if key not in self.fields:
                continue
            self.fields[key][1].setEnabled(custom)
            for label in self._row_labels.get(key, []):
                label.setEnabled(custom)

    def _security_changed(self, security: str) -> None:
        port = self.fields["mail.smtp_port"][1]
        if not isinstance(port, QSpinBox):
            return
        usual = AUTOMATIC_SMTP_PORTS.get(security)
        # the stored value stays 0: "Automatic" follows the security choice when sending
        port.setSpecialValueText(f"Automatic ({usual})" if usual else "Automatic")

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
        for scroll in self._scrolls:
            page_hint = page_hint.expandedTo(scroll.sizeHint())
        tabs = self.pages.sizeHint() - page_hint
        chrome_w, chrome_h = outer.width() + tabs.width(), outer.height() + tabs.height()
        window = self.parentWidget().window() if self.parentWidget() is not None else self
        screen = window.screen().availableGeometry()
        pages = [scroll.widget() for scroll in self._scrolls]
        width = max([self.width()] + [p.sizeHint().width() + chrome_w for p in pages])
        width = min(width, int(screen.width() * SCREEN_SHARE))
        inner = width - chrome_w
        height = max([self.height()] + [
            (p.heightForWidth(inner) if p.hasHeightForWidth() else p.sizeHint().height())
            + chrome_h for p in pages])
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
