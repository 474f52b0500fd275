"""Job states, triggers and the immutable job snapshot everything else reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Mapping
from typing import Any


class JobStatus(str, enum.Enum):  # noqa: UP042 - str() of a member stays as it was
    """Where a job is in its life.  ``interrupted``: it was running when its engine died."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def label(self) -> str:
        return self.value.capitalize()


FINAL_STATES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}
)
RETRYABLE_STATES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED})
CANCELLABLE_STATES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


@dataclasses.dataclass(frozen=True)
class Trigger:
    """Who or what started a job.

    ``type`` is one of ``user`` (a GUI action, ``label`` names it), ``schedule``
    (``label`` is the schedule's name, ``ref`` its id), ``cli``, ``retry``
    (``ref`` is the job retried, ``automatic`` says whether the engine did it),
    ``recovery`` (re-queued after an engine crash) or ``api``.
    """

    type: str
    label: str = ""
    ref: int | None = None
    automatic: bool = False

    @classmethod
    def user(cls, action: str) -> Trigger:
        return cls("user", action)

    @classmethod
    def schedule(cls, name: str, schedule_id: int | None = None) -> Trigger:
        return cls("schedule", name, schedule_id)

    @classmethod
    def cli(cls, command: str = "jobs submit") -> Trigger:
        return cls("cli", command)

    @classmethod
    def retry(cls, job_id: int, automatic: bool) -> Trigger:
        return cls("retry", "", job_id, automatic)

    @classmethod
    def recovery(cls, job_id: int) -> Trigger:
        return cls("recovery", "", job_id, True)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.label:
            data["label"] = self.label
        if self.ref is not None:
            data["ref"] = self.ref
        if self.automatic:
            data["automatic"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Trigger:
        data = data or {}
        ref = data.get("ref")
        return cls(
            type=str(data.get("type", "api")),
            label=str(data.get("label", "")),
            ref=int(ref) if ref is not None else None,
            automatic=bool(data.get("automatic", False)),
        )

    def describe(self) -> str:
        """One line for people: "Button · Export products", "Retry of #12 (automatic)"."""
        if self.type == "user":
            return f"You · {self.label}" if self.label else "You"
        if self.type == "schedule":
            return f"Schedule · {self.label}" if self.label else "Schedule"
        if self.type == "cli":
            return f"Command line · {self.label}" if self.label else "Command line"
        if self.type == "retry":
            how = "automatic" if self.automatic else "manual"
            return f"Retry of #{self.ref} ({how})"
        if self.type == "recovery":
            return f"Re-run of #{self.ref} after a crash"
        return self.label or self.type


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC string (None stays None)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _loads(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclasses.dataclass(frozen=True)
class JobError:
    type: str
    message: str
    traceback: str = ""
    transient: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback,
                "transient": self.transient}


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """An immutable snapshot of one job row.  Models and the CLI read these."""

    id: int
    kind: str
    title: str
    status: JobStatus
    trigger: Trigger
    params: dict[str, Any]
    attempt: int
    retry_of: int | None
    root_id: int | None
    superseded_by: int | None
    schedule_id: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    not_before: float | None
    progress: float | None
    message: str | None
    output_path: str | None
    result: Any
    error: JobError | None
    checkpoint: Any
    engine_id: str | None
    lease_until: float | None
    cancel_requested: bool

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> JobRecord:
        error = None
        if row["error_type"] or row["error_message"]:
            error = JobError(
                type=row["error_type"] or "Error",
                message=row["error_message"] or "",
                traceback=row["error_traceback"] or "",
                transient=bool(row["error_transient"]),
            )
        params = _loads(row["params"])
        return cls(
            id=row["id"],
            kind=row["kind"],
            title=row["title"],
            status=JobStatus(row["status"]),
            trigger=Trigger.from_dict(_loads(row["trigger"])),
            params=params if isinstance(params, dict) else {},
            attempt=row["attempt"],
            retry_of=row["retry_of"],
            root_id=row["root_id"],
            superseded_by=row["superseded_by"],
            schedule_id=row["schedule_id"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"],
            not_before=row["not_before"],
            progress=row["progress"],
            message=row["message"],
            output_path=row["output_path"],
            result=_loads(row["result"]),
            error=error,
            checkpoint=_loads(row["checkpoint"]),
            engine_id=row["engine_id"],
            lease_until=row["lease_until"],
            cancel_requested=bool(row["cancel_requested"]),
        )

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            import time

            end = time.time()
        return max(0.0, end - self.started_at)

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape of a job (``--json``): a contract scripts rely on."""
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "status": self.status.value,
            "trigger": {**self.trigger.to_dict(), "description": self.trigger.describe()},
            "params": self.params,
            "attempt": self.attempt,
            "retry_of": self.retry_of,
            "root_id": self.root_id,
            "superseded_by": self.superseded_by,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "retry_at": iso(self.not_before) if self.status is JobStatus.QUEUED else None,
            "progress": self.progress,
            "message": self.message,
            "output_path": self.output_path,
            "result": self.result,
            "error": self.error.to_dict() if self.error else None,
        }
