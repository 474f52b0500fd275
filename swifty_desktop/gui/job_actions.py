"""What a person can do to a job from anywhere in the GUI (menus, details, notifications).

Widgets call these; they decide nothing about jobs themselves: retry and cancel
go to the JobManager, files open with the desktop's default application.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication

from swifty_desktop.jobs.manager import JobManager
from swifty_desktop.jobs.model import CANCELLABLE_STATES, RETRYABLE_STATES, JobRecord
from swifty_desktop.jobs.store import JobNotFound, JobStateError


def can_retry(job: JobRecord) -> bool:
    return job.status in RETRYABLE_STATES and job.superseded_by is None


def can_cancel(job: JobRecord) -> bool:
    return job.status in CANCELLABLE_STATES


def has_output(job: JobRecord) -> bool:
    return bool(job.output_path) and Path(str(job.output_path)).exists()


def open_output(job: JobRecord) -> bool:
    """Open the job's output file with the desktop's default application."""
    if not job.output_path:
        return False
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(job.output_path)))


def show_in_folder(job: JobRecord) -> bool:
    """Open the folder that holds the job's output."""
    if not job.output_path:
        return False
    folder = os.path.dirname(str(job.output_path))
    return QDesktopServices.openUrl(QUrl.fromLocalFile(folder))


def error_report(job: JobRecord) -> str:
    """The text "Copy error" puts on the clipboard: enough to diagnose."""
    if job.error is None:
        return ""
    lines = [
        f"Job #{job.id}: {job.title} ({job.kind}), attempt {job.attempt}",
        f"Status: {job.status.value}",
        f"Triggered by: {job.trigger.describe()}",
        f"Parameters: {job.params}",
        f"Error: {job.error.type}: {job.error.message}",
    ]
    if job.error.traceback:
        lines += ["", job.error.traceback.rstrip()]
    return "\n".join(lines)


def copy_error(job: JobRecord) -> None:
    QGuiApplication.clipboard().setText(error_report(job))


def retry_jobs(manager: JobManager, jobs: Sequence[JobRecord]) -> tuple[list[int], list[str]]:
    """Retry the retryable jobs in one transaction; return (new ids, problems as sentences).

    A job that was retryable when shown but not any more (retried or removed
    meanwhile, e.g. from another window or the CLI) is counted in the problems.
    """
    wanted = [job for job in jobs if can_retry(job)]
    if not wanted:
        return [], []
    new_ids = manager.retry_many([job.id for job in wanted])
    problems: list[str] = []
    missed = len(wanted) - len(new_ids)
    if missed:
        problems.append(
            f"{missed} of {len(wanted)} jobs {'were' if missed != 1 else 'was'} not retried: "
            "already retried or removed meanwhile (perhaps from another window or the CLI). "
            "The registry shows their current state.")
    return new_ids, problems


def cancel_jobs(manager: JobManager, jobs: Sequence[JobRecord]) -> tuple[int, list[str]]:
    count = 0
    problems: list[str] = []
    for job in jobs:
        if not can_cancel(job):
            continue
        try:
            manager.cancel(job.id)
            count += 1
        except (JobStateError, JobNotFound) as exc:
            problems.append(str(exc))
    return count, problems
