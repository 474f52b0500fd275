"""The crash dialog: an unexpected error, a copyable report, where it was saved."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox, QWidget

_open: list[QMessageBox] = []


def show_crash_dialog(report: str, saved_to: Path | None, parent: QWidget | None) -> QMessageBox:
    """Tell the user, offer the report to copy, and keep the app running."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle("Something went wrong")
    last = report.strip().splitlines()[-1] if report.strip() else "unknown error"
    box.setText(f"Swifty Desktop hit an unexpected error:\n{last}")
    where = f"A report was saved to {saved_to}." if saved_to else "The report could not be saved."
    box.setInformativeText(f"{where} Your jobs keep running. If this happens again, send the "
                           "report to support.")
    box.setDetailedText(report)
    copy = box.addButton("Copy report", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Close)
    copy.clicked.disconnect()
    copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(report))
    box.finished.connect(lambda _r: _open.remove(box) if box in _open else None)
    _open.append(box)
    box.show()
    return box
