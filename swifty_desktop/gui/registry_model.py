"""The job registry's table model: jobs newest first, paged, filtered in the database.

Rows are immutable :class:`JobRecord` snapshots.  The model pages history in with
``fetchMore`` (keyset paging on the id, so 100,000 jobs open as fast as 100) and
coalesces changes: ids marked dirty by the manager's signals are refreshed at most
20 times a second with per-row ``dataChanged`` — never a reset on a progress tick,
so selection and scroll position survive.  A job this window queued is inserted
at once (that row is the user's acknowledgement); jobs added elsewhere (retries,
other processes, the scheduler) are read in one query per flush and inserted
with one ``beginInsertRows`` per block of adjacent rows.  More new rows than a
page in one flush (e.g. "Retry all failed" on a long history) are a bulk change:
the model then resets to the first page instead of reading them all.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QFont

from swifty_desktop.gui.uitools import fmt_duration, fmt_time, icon
from swifty_desktop.jobs.manager import JobManager
from swifty_desktop.jobs.model import JobRecord, JobStatus
from swifty_desktop.jobs.store import JobQuery
from swifty_desktop.tasks import registry

JOB_ROLE = Qt.ItemDataRole.UserRole + 1  # the JobRecord
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 2  # (fraction or None, message, status)
SORT_ROLE = Qt.ItemDataRole.UserRole + 3
JOB_TEXT_ROLE = Qt.ItemDataRole.UserRole + 4  # (title with attempt, kind title) of the Job cell

COLUMNS = ("Job", "Triggered by", "Status", "Progress", "Started", "Finished", "Duration",
           "Result")
COL_JOB, COL_TRIGGER, COL_STATUS, COL_PROGRESS, COL_STARTED, COL_FINISHED, COL_DURATION, \
    COL_RESULT = range(len(COLUMNS))

STATUS_COLORS = {
    JobStatus.QUEUED: QColor("#546e7a"),
    JobStatus.RUNNING: QColor("#1565c0"),
    JobStatus.COMPLETED: QColor("#2e7d32"),
    JobStatus.FAILED: QColor("#c62828"),
    JobStatus.CANCELLED: QColor("#616161"),
    JobStatus.INTERRUPTED: QColor("#e65100"),
}

FLUSH_MS = 50  # at most 20 refreshes a second
_ROOT = QModelIndex()

_DISPLAY = Qt.ItemDataRole.DisplayRole
_DECORATION = Qt.ItemDataRole.DecorationRole
_FOREGROUND = Qt.ItemDataRole.ForegroundRole
_FONT = Qt.ItemDataRole.FontRole
_TOOLTIP = Qt.ItemDataRole.ToolTipRole
_ROLES = frozenset({_DISPLAY, _DECORATION, _FOREGROUND, _FONT, _TOOLTIP, JOB_ROLE,
                    PROGRESS_ROLE, SORT_ROLE, JOB_TEXT_ROLE})
_BOLD = QFont()
_BOLD.setBold(True)


def kind_title(kind: str) -> str:
    """The kind's human title ("Export", "Import CSV"); the raw name for unknown kinds."""
    spec = registry().get(kind)
    return spec.title if spec is not None else kind


def job_title(job: JobRecord) -> str:
    """The job's title, with the attempt number from the second attempt on."""
    return job.title if job.attempt == 1 else f"{job.title} (attempt {job.attempt})"


def job_kind_text(job: JobRecord) -> str:
    """The kind shown beside the title; empty where the title is the kind's own title
    ("Sales report (PDF)"), so that nothing is said twice."""
    kind = kind_title(job.kind)
    return "" if kind.casefold() == job.title.casefold() else kind


def outcome_text(job: JobRecord) -> str:
    """What a completed job did, in a few words ("1,200 new and 34 updated products"), as
    its kind declares it; "" for any other status, a kind with nothing to say, or a kind
    this version does not know."""
    spec = registry().get(job.kind)
    if job.status is not JobStatus.COMPLETED or spec is None:
        return ""
    return spec.outcome_text(job.result)


def result_summary(job: JobRecord) -> str:
    """One line: what came out of the job, or why it did not.  A completed job reads as
    its kind declares ("5,000 products, 3,000 customers and 40,000 orders loaded"), else
    by the file it wrote, else by the first few values of its result."""
    if job.status is JobStatus.QUEUED:
        if job.not_before:
            return f"Retry at {fmt_time(job.not_before)}"
        return "Waiting for a free worker"
    if job.status is JobStatus.RUNNING:
        return ""  # the progress column shows the current message
    if job.error is not None and job.status is not JobStatus.COMPLETED:
        first = job.error.message.strip().splitlines()[0] if job.error.message else ""
        return first if job.error.type in ("Interrupted", "TaskError", "TimeoutError",
                                           "WorkerCrashed") else f"{job.error.type}: {first}"
    if job.status is JobStatus.CANCELLED:
        return job.message or "Cancelled"
    did = outcome_text(job)
    if did:
        return did  # the output file, if any, is in the cell's tooltip
    if job.output_path:
        return job.output_path.replace("\\", "/").rsplit("/", 1)[-1]
    if isinstance(job.result, dict):
        parts = []
        for key, value in job.result.items():
            if isinstance(value, (int, float, str, bool)) and key not in ("pid", "ok", "path"):
                parts.append(f"{key.replace('_', ' ')} {value:,}" if isinstance(value, int)
                             and not isinstance(value, bool) else f"{key.replace('_', ' ')} "
                             f"{value}")
            if len(parts) == 3:
                break
        return ", ".join(parts) or "Done"
    return "Done" if job.status is JobStatus.COMPLETED else ""


class JobTableModel(QAbstractTableModel):
    """Jobs newest first; see the module docstring."""

    countChanged = Signal()

    def __init__(self, manager: JobManager, *, page_size: int = 200,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._manager = manager
        self._store = manager.store
        self._page = page_size
        self._query = JobQuery(latest_only=True)
        self._ids: list[int] = []  # descending
        self._jobs: dict[int, JobRecord] = {}
        self._texts: dict[int, tuple[JobRecord, tuple[str, ...]]] = {}  # display cache
        self._exhausted = False
        self._dirty: set[int] = set()  # ids to re-read (status or anything else changed)
        self._progress: dict[int, tuple[Any, str]] = {}  # pending progress ticks
        self._flush_timer = QTimer(self, singleShot=True, interval=FLUSH_MS)
        self._flush_timer.timeout.connect(self.flush)
        self.flushes = 0  # for tests and benchmarks: how often rows were refreshed
        manager.jobAdded.connect(self._on_added)
        manager.jobChanged.connect(self._mark_dirty)
        manager.jobProgress.connect(self._on_progress)
        manager.jobFinished.connect(self._on_finished)
        self._load_first_page()

    # ------------------------------------------------------------------ queries
    @property
    def query(self) -> JobQuery:
        return self._query

    def set_query(self, query: JobQuery) -> None:
        """Filter in the database; a new filter is a bulk change, so the model resets."""
        if query == self._query:
            return
        self._query = query
        self.beginResetModel()
        self._ids, self._jobs, self._exhausted = [], {}, False
        self._texts.clear()
        self._dirty.clear()
        self._progress.clear()
        self._load_first_page(reset=False)
        self.endResetModel()
        self.countChanged.emit()

    def reload(self) -> None:
        query, self._query = self._query, JobQuery(text="\0never")
        self.set_query(query)

    def _load_first_page(self, reset: bool = True) -> None:
        jobs = self._store.list(self._query, limit=self._page)
        self._ids = [j.id for j in jobs]
        self._jobs = {j.id: j for j in jobs}
        self._exhausted = len(jobs) < self._page

    # -------------------------------------------------------------- Qt model API
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> bool:
        return not parent.isValid() and not self._exhausted

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> None:
        if parent.isValid() or self._exhausted:
            return
        before = self._ids[-1] if self._ids else None
        jobs = self._store.list(self._query, limit=self._page, before_id=before)
        self._exhausted = len(jobs) < self._page
        jobs = [j for j in jobs if j.id not in self._jobs]
        if not jobs:
            return
        first = len(self._ids)
        self.beginInsertRows(QModelIndex(), first, first + len(jobs) - 1)
        self._ids.extend(j.id for j in jobs)
        self._jobs.update((j.id, j) for j in jobs)
        self.endInsertRows()
        self.countChanged.emit()

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # Called hundreds of times per repaint: unhandled roles leave first, and the
        # display texts of a snapshot are computed once (snapshots are immutable).
        if role not in _ROLES or not index.isValid():
            return None
        job = self._jobs[self._ids[index.row()]]
        col = index.column()
        if role == _DISPLAY:
            if col == COL_DURATION and job.finished_at is None:
                return fmt_duration(job.duration)  # still growing: never cached
            cached = self._texts.get(job.id)
            if cached is None or cached[0] is not job:
                cached = (job, tuple(self._display(job, c) for c in range(len(COLUMNS))))
                self._texts[job.id] = cached
            return cached[1][col]
        if role == JOB_ROLE:
            return job
        if role == JOB_TEXT_ROLE:
            return job_title(job), job_kind_text(job)
        if role == PROGRESS_ROLE:
            return (job.progress, job.message or "", job.status)
        if role == _DECORATION:
            return icon(f"status-{job.status.value}") if col == COL_STATUS else None
        if role == _FOREGROUND:
            if col == COL_STATUS:
                return STATUS_COLORS[job.status]
            if col == COL_RESULT and job.status in (JobStatus.FAILED, JobStatus.INTERRUPTED):
                return STATUS_COLORS[job.status]
            return None
        if role == _FONT:
            return _BOLD if col == COL_STATUS and job.status is JobStatus.FAILED else None
        if role == _TOOLTIP:
            return self._tooltip(job, col)
        if role == SORT_ROLE:
            return job.id
        return None

    @staticmethod
    def _display(job: JobRecord, col: int) -> str:
        if col == COL_JOB:  # the delegate paints the kind smaller and dimmer
            kind = job_kind_text(job)
            return f"{job_title(job)} · {kind}" if kind else job_title(job)
        if col == COL_TRIGGER:
            return job.trigger.describe()
        if col == COL_STATUS:
            return job.status.label
        if col == COL_PROGRESS:
            return ""
        if col == COL_STARTED:
            return fmt_time(job.started_at)
        if col == COL_FINISHED:
            return fmt_time(job.finished_at)
        if col == COL_DURATION:
            return fmt_duration(job.duration)
        if col == COL_RESULT:
            return result_summary(job)
        return ""

    @staticmethod
    def _tooltip(job: JobRecord, col: int) -> str:
        if col == COL_JOB:
            params = json.dumps(job.params, ensure_ascii=False) if job.params else "none"
            return (f"#{job.id} · {kind_title(job.kind)} ({job.kind}) · attempt {job.attempt}\n"
                    f"Parameters: {params}")
        if col == COL_RESULT:
            # the whole of what the cell may cut short, and the file the job wrote (or a
            # failed job kept) by its full path
            said = f"{job.error.type}: {job.error.message}" if job.error is not None else \
                outcome_text(job)
            return "\n".join(t for t in (said, job.output_path or "") if t)
        if col in (COL_STARTED, COL_FINISHED):
            ts = job.started_at if col == COL_STARTED else job.finished_at
            return fmt_time(ts, with_date=True)
        return ""

    # ------------------------------------------------------------------ lookups
    def row_of(self, job_id: int) -> int:
        """The row showing ``job_id``, or -1."""
        pos = bisect.bisect_left(self._ids, -job_id, key=lambda x: -x)
        return pos if pos < len(self._ids) and self._ids[pos] == job_id else -1

    def job_at(self, row: int) -> JobRecord:
        return self._jobs[self._ids[row]]

    def job(self, job_id: int) -> JobRecord | None:
        return self._jobs.get(job_id)

    # ---------------------------------------------------------------- updates
    @Slot(int)
    def _on_added(self, job_id: int) -> None:
        """A job this window queued is shown at once (the acknowledgement must not
        wait for a tick); any other new job waits for the next coalesced flush."""
        job = self._manager.snapshot(job_id)  # memory only: no query per added job
        if job is None:
            self._mark_dirty(job_id)
            return
        if self.row_of(job_id) >= 0 or not self._query.matches(job):
            return
        if self._ids and job_id < self._ids[-1] and not self._exhausted:
            return  # older than the loaded page: it arrives with fetchMore
        pos = bisect.bisect_left(self._ids, -job_id, key=lambda x: -x)
        self.beginInsertRows(QModelIndex(), pos, pos)
        self._ids.insert(pos, job_id)
        self._jobs[job_id] = job
        self.endInsertRows()
        self.countChanged.emit()

    @Slot(int, object, str)
    def _on_progress(self, job_id: int, fraction: Any, message: str) -> None:
        # a progress tick carries everything it changes: no database read for it
        if job_id in self._jobs:
            self._progress[job_id] = (fraction, message)
            if not self._flush_timer.isActive():
                self._flush_timer.start()

    @Slot(int, str)
    def _on_finished(self, job_id: int, _status: str) -> None:
        self._mark_dirty(job_id)

    @Slot(int)
    def _mark_dirty(self, job_id: int) -> None:
        self._dirty.add(job_id)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    @Slot()
    def flush(self) -> None:
        """Apply every change that arrived since the last flush (one pass, per row)."""
        if not self._dirty and not self._progress:
            return
        dirty, self._dirty = self._dirty, set()
        progress, self._progress = self._progress, {}
        self.flushes += 1
        ticked: list[int] = []
        for job_id, (fraction, message) in progress.items():
            job = self._jobs.get(job_id)
            if job is not None and job_id not in dirty and job.status is JobStatus.RUNNING:
                new = dataclasses.replace(job, progress=fraction, message=message)
                self._jobs[job_id] = new
                cached = self._texts.get(job_id)
                if cached is not None and cached[0] is job:  # the texts do not change
                    self._texts[job_id] = (new, cached[1])
                ticked.append(job_id)
            elif job is not None:
                dirty.add(job_id)
        # a job that is not shown and is older than the last loaded row cannot appear
        # here before fetchMore reaches it (and then it is read anyway): skip its read
        if self._ids and not self._exhausted:
            floor = self._ids[-1]
            dirty = {i for i in dirty if i in self._jobs or i > floor}
        if sum(1 for i in dirty if i not in self._jobs) > self._page:
            self.reload()  # rows added in bulk: one page, not thousands of reads
            return
        changed_ids, inserted, removed = self._apply(self._read(dirty)) if dirty else \
            ([], False, False)
        # rows may have moved while inserting/removing: look them up at the end
        rows = sorted(r for r in (self.row_of(i) for i in changed_ids) if r >= 0)
        last = len(COLUMNS) - 1
        for start, end in _ranges(rows):
            self.dataChanged.emit(self.index(start, 0), self.index(end, last))
        # a progress tick changes only the progress and duration cells: repaint those
        ticks = sorted(r for r in (self.row_of(i) for i in ticked if i not in changed_ids)
                       if r >= 0)
        for start, end in _ranges(ticks):
            self.dataChanged.emit(self.index(start, COL_PROGRESS),
                                  self.index(end, COL_PROGRESS))
            self.dataChanged.emit(self.index(start, COL_DURATION),
                                  self.index(end, COL_DURATION))
        if inserted or removed:
            self.countChanged.emit()

    def _read(self, ids: set[int]) -> dict[int, JobRecord]:
        """Current records: jobs running here from memory, the others in one query."""
        fresh: dict[int, JobRecord] = {}
        missing = []
        running = set(self._manager.running_ids())
        for job_id in ids:
            if job_id in running:
                try:
                    fresh[job_id] = self._manager.job(job_id)
                    continue
                except LookupError:
                    pass
            missing.append(job_id)
        if missing:
            fresh.update(self._store.get_many(missing))
        return fresh

    def _apply(self, fresh: dict[int, JobRecord]) -> tuple[list[int], bool, bool]:
        """Update, remove and insert rows; return (updated ids, inserted?, removed?)."""
        changed_ids: list[int] = []
        gone: list[int] = []
        new: list[JobRecord] = []
        for job_id in sorted(fresh, reverse=True):
            job = fresh[job_id]
            shown = job_id in self._jobs
            keep = self._query.matches(job)
            if shown and keep:
                self._jobs[job_id] = job
                changed_ids.append(job_id)
            elif shown:
                gone.append(job_id)
            elif keep and (self._exhausted or not self._ids or job_id > self._ids[-1]):
                new.append(job)
        # adjacent rows go in one begin/end pair each, the lowest block first, so
        # that the positions of the blocks above stay valid
        for start, end in reversed(_ranges(sorted(self.row_of(i) for i in gone))):
            self.beginRemoveRows(QModelIndex(), start, end)
            for job_id in self._ids[start:end + 1]:
                del self._jobs[job_id]
                self._texts.pop(job_id, None)
            del self._ids[start:end + 1]
            self.endRemoveRows()
        blocks: dict[int, list[JobRecord]] = {}
        for job in new:  # newest first, so each block is in row order already
            pos = bisect.bisect_left(self._ids, -job.id, key=lambda x: -x)
            blocks.setdefault(pos, []).append(job)
        for pos in sorted(blocks, reverse=True):
            block = blocks[pos]
            self.beginInsertRows(QModelIndex(), pos, pos + len(block) - 1)
            self._ids[pos:pos] = [j.id for j in block]
            self._jobs.update((j.id, j) for j in block)
            self.endInsertRows()
        return changed_ids, bool(new), bool(gone)


def _ranges(rows: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    out: list[tuple[int, int]] = []
    for row in rows:
        if out and row == out[-1][1] + 1:
            out[-1] = (out[-1][0], row)
        else:
            out.append((row, row))
    return out
