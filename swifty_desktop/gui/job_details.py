"""Job details: parameters, trigger, every attempt, the live log, the full error."""

from __future__ import annotations

import json
import time

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QDialog, QMessageBox, QTableWidgetItem, QWidget

from swifty_desktop.gui import job_actions
from swifty_desktop.gui.notifier import clip
from swifty_desktop.gui.registry_model import STATUS_COLORS, kind_title, result_summary
from swifty_desktop.gui.uitools import fmt_duration, fmt_time, icon, load_form
from swifty_desktop.jobs.manager import JobManager
from swifty_desktop.jobs.model import JobRecord, JobStatus

ATTEMPT_COLUMNS = ("Job", "Attempt", "Started", "Finished", "Status", "Outcome")


class JobDetailsDialog(QDialog):
    """Everything about one job; follows the job live while it runs.

    A job removed from history (before the dialog opened or while it is open) is
    shown as such, with every action disabled, instead of failing.
    """

    def __init__(self, manager: JobManager, job_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        load_form("job_details.ui", self)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.manager = manager
        self.job_id = job_id
        self._log_after = 0
        self._live = False
        self.attemptsTable.setColumnCount(len(ATTEMPT_COLUMNS))
        self.attemptsTable.setHorizontalHeaderLabels(list(ATTEMPT_COLUMNS))
        self.retryButton.setIcon(icon("retry"))
        self.cancelJobButton.setIcon(icon("cancel"))
        self.openButton.setIcon(icon("open"))
        self.folderButton.setIcon(icon("folder"))
        self.copyErrorButton.setIcon(icon("copy"))
        self.closeButton.clicked.connect(self.close)
        self.copyErrorButton.clicked.connect(self._copy_error)
        self.retryButton.clicked.connect(self._retry)
        self.cancelJobButton.clicked.connect(self._cancel)
        self.openButton.clicked.connect(lambda: self.job and job_actions.open_output(self.job))
        self.folderButton.clicked.connect(
            lambda: self.job and job_actions.show_in_folder(self.job))
        self.attemptsTable.cellDoubleClicked.connect(self._open_attempt)
        manager.jobLog.connect(self._on_log)
        manager.jobProgress.connect(self._on_progress)
        manager.jobChanged.connect(self._on_changed)
        self._refresh_timer = QTimer(self, singleShot=True, interval=100)
        self._refresh_timer.timeout.connect(self.refresh)
        self.job: JobRecord | None = None
        self.refresh()
        if self.job is not None and self.job.error is not None and \
                self.job.status is not JobStatus.COMPLETED:
            self.tabs.setCurrentWidget(self.errorTab)

    @property
    def removed(self) -> bool:
        """True when the job is no longer in the history."""
        return self.job is None

    @Slot()
    def refresh(self) -> None:
        """Re-read the job (and its attempts and log) and show it."""
        try:
            job = self.job = self.manager.job(self.job_id)
        except LookupError:
            self.job = None
            self._show_removed()
            return
        self.tabs.show()
        self.setWindowTitle(f"Job #{job.id}: {job.title}")
        self.statusIcon.setPixmap(icon(f"status-{job.status.value}").pixmap(32, 32))
        self.titleLabel.setText(f"<b style='font-size: 14pt'>{_esc(job.title)}</b>")
        color = STATUS_COLORS[job.status].name()
        extra = f" — retried as #{job.superseded_by}" if job.superseded_by else ""
        summary = clip(result_summary(job), 110)  # the whole text is on the Error tab
        self.subtitleLabel.setText(
            f"<span style='color:{color}'><b>{job.status.label}</b></span> · #{job.id} · "
            f"attempt {job.attempt}{extra} · {_esc(summary)}")
        running = job.status is JobStatus.RUNNING
        self.progressBar.setVisible(running)
        if running:
            self._show_progress(job.progress, job.message or "")
        self.kindValue.setText(f"{kind_title(job.kind)} ({job.kind})")
        self.triggerValue.setText(job.trigger.describe())
        self.timesValue.setText(
            f"created {fmt_time(job.created_at, with_date=True)}"
            + (f" · started {fmt_time(job.started_at, with_date=True)}" if job.started_at else "")
            + (f" · finished {fmt_time(job.finished_at, with_date=True)}"
               if job.finished_at else "")
            + (f" · took {fmt_duration(job.duration)}" if job.finished_at else ""))
        self.outputValue.setText(job.output_path or "—")
        self.paramsView.setPlainText(json.dumps(job.params, indent=2, ensure_ascii=False)
                                     if job.params else "(none)")
        self.resultView.setPlainText(json.dumps(job.result, indent=2, ensure_ascii=False)
                                     if job.result is not None else "")
        self._fill_attempts()
        self._append_log()
        if job.error is not None:
            self.errorSummary.setText(f"<b>{_esc(job.error.type)}</b>: {_esc(job.error.message)}")
            self.errorView.setPlainText(job.error.traceback or "(no traceback)")
        else:
            self.errorSummary.setText("This attempt has no error.")
            self.errorView.setPlainText("")
        self.tabs.setTabEnabled(self.tabs.indexOf(self.errorTab), job.error is not None)
        self.copyErrorButton.setEnabled(job.error is not None)
        self.retryButton.setEnabled(job_actions.can_retry(job))
        self.cancelJobButton.setEnabled(job_actions.can_cancel(job))
        self.openButton.setEnabled(job_actions.has_output(job))
        self.folderButton.setEnabled(bool(job.output_path))

    def _show_removed(self) -> None:
        self.setWindowTitle(f"Job #{self.job_id}: removed")
        self.statusIcon.setPixmap(icon("delete").pixmap(32, 32))
        self.titleLabel.setText(
            f"<b style='font-size: 14pt'>Job #{self.job_id} was removed from history</b>")
        self.subtitleLabel.setText(
            "It was removed from the job history (here, in another window or with the "
            "command line), so its details are gone. Output files it wrote stay where they "
            "were; look for them in the outputs folder. Close this window.")
        self.progressBar.hide()
        self.tabs.hide()  # empty tabs would look like a broken dialog
        layout = self.layout()
        height = layout.totalHeightForWidth(self.width()) if layout.hasHeightForWidth() \
            else layout.sizeHint().height()
        self.resize(self.width(), max(height, 160))
        for button in (self.retryButton, self.cancelJobButton, self.openButton,
                       self.folderButton, self.copyErrorButton):
            button.setEnabled(False)

    def _fill_attempts(self) -> None:
        chain = self.manager.store.chain(self.job_id)
        table = self.attemptsTable
        table.setRowCount(len(chain))
        for row, attempt in enumerate(chain):
            outcome = result_summary(attempt)
            cells = (f"#{attempt.id}", str(attempt.attempt), fmt_time(attempt.started_at),
                     fmt_time(attempt.finished_at), attempt.status.label, outcome)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, attempt.id)
                if col == 4:
                    item.setIcon(icon(f"status-{attempt.status.value}"))
                    item.setForeground(STATUS_COLORS[attempt.status])
                if attempt.id == self.job_id:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(row, col, item)
        table.resizeColumnsToContents()

    def _append_log(self) -> None:
        if self._live:
            return
        lines = self.manager.store.logs(self.job_id, after_id=self._log_after)
        if lines:
            self._log_after = lines[-1][0]
            self.logView.appendPlainText("\n".join(
                f"{fmt_time(ts, with_date=False)}  {line}" for _, ts, line in lines))
        elif not self.logView.toPlainText():
            self.logView.setPlaceholderText("This job has not written to its log.")

    @Slot(int, str)
    def _on_log(self, job_id: int, line: str) -> None:
        if job_id == self.job_id:
            # live, before the line reaches the database; from now on the log follows
            # the signal only, so lines are never shown twice
            self._live = True
            self.logView.appendPlainText(f"{fmt_time(time.time(), with_date=False)}  {line}")

    @Slot(int, object, str)
    def _on_progress(self, job_id: int, fraction: float | None, message: str) -> None:
        if job_id == self.job_id:
            self._show_progress(fraction, message)

    def _show_progress(self, fraction: float | None, message: str) -> None:
        if fraction is None:
            self.progressBar.setRange(0, 0)
        else:
            self.progressBar.setRange(0, 1000)
            self.progressBar.setValue(int(fraction * 1000))
        self.progressBar.setFormat(f"%p% · {message}" if message else "%p%")

    @Slot(int)
    def _on_changed(self, job_id: int) -> None:
        if job_id == self.job_id or (self.job is not None and job_id == self.job.superseded_by):
            self._refresh_timer.start()

    def _copy_error(self) -> None:
        if self.job is None:
            return
        job_actions.copy_error(self.job)
        self.copyErrorButton.setText("Copied")
        QTimer.singleShot(1500, self.copyErrorButton,  # dropped if the dialog closes first
                          lambda: self.copyErrorButton.setText("&Copy error"))

    def _retry(self) -> None:
        if self.job is None:
            return
        new_ids, problems = job_actions.retry_jobs(self.manager, [self.job])
        if problems:
            QMessageBox.warning(self, "Retry", "\n".join(problems))
        if new_ids:
            self.job_id = new_ids[0]
            self._log_after, self._live = 0, False
            self.logView.clear()
            self.refresh()

    def _cancel(self) -> None:
        if self.job is None:
            return
        job_actions.cancel_jobs(self.manager, [self.job])
        self._refresh_timer.start()

    def _open_attempt(self, row: int, _col: int) -> None:
        item = self.attemptsTable.item(row, 0)
        if item is not None:
            self.job_id = int(item.data(Qt.ItemDataRole.UserRole))
            self._log_after, self._live = 0, False
            self.logView.clear()
            self.refresh()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
