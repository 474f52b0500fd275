"""Small Qt helpers: Designer forms loaded into our own classes, icons, formatting."""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from PySide6.QtCore import QFile, QIODevice
from PySide6.QtGui import QIcon
from PySide6.QtUiTools import QUiLoader
from PySide6.QtWidgets import QWidget

from swifty_desktop.resources import icon_path, ui_file


class _IntoLoader(QUiLoader):
    """Builds a form's widgets onto an existing instance (the ``loadUi`` recipe).

    The form's top-level widget *is* ``base``; every named child becomes an
    attribute of ``base``, so a class can subclass QMainWindow/QDialog, keep its
    own behaviour (closeEvent...) and still take its layout from Designer.
    """

    def __init__(self, base: QWidget) -> None:
        super().__init__(base)
        self._base = base

    def createWidget(self, class_name: str, parent: QWidget | None = None,
                     name: str = "") -> QWidget:
        if parent is None and self._base is not None:
            return self._base
        widget = super().createWidget(class_name, parent, name)
        if name:
            setattr(self._base, name, widget)
        return widget

    def createAction(self, parent: Any = None, name: str = "") -> Any:
        action = super().createAction(parent, name)
        if name:
            setattr(self._base, name, action)
        return action

    def createLayout(self, class_name: str, parent: Any = None, name: str = "") -> Any:
        layout = super().createLayout(class_name, parent, name)
        if name:
            setattr(self._base, name, layout)
        return layout


def load_form(name: str, base: QWidget) -> QWidget:
    """Load ``ui/<name>`` onto ``base`` (which must be of the form's top-level class)."""
    path = ui_file(name)
    file = QFile(str(path))
    if not file.open(QIODevice.OpenModeFlag.ReadOnly):
        raise FileNotFoundError(f"cannot open the form {path}: {file.errorString()}")
    try:
        loader = _IntoLoader(base)
        widget = loader.load(file, None)
    finally:
        file.close()
    if widget is None:
        raise RuntimeError(f"cannot load the form {path}: {loader.errorString()}")
    return widget


@cache
def icon(name: str) -> QIcon:
    """An icon from resources/icons (empty icon if the name is unknown)."""
    path = icon_path(name) if name else None
    return QIcon(str(path)) if path is not None and path.exists() else QIcon()


def fmt_time(ts: float | None, *, with_date: bool | None = None) -> str:
    """Local time; today's times without the date."""
    if ts is None:
        return ""
    local = time.localtime(ts)
    today = time.localtime()
    if with_date is None:
        with_date = local[:3] != today[:3]
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", local)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
