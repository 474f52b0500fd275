"""A small stand-in for the worker's ``ctx``, for unit tests of task bodies.

It records progress, log lines and checkpoints in memory and writes outputs
straight to their final place (no temporary file, no rename: tests of the
no-half-file rule run the real engine).  The database is real (the test's SQLite file);
tests that claim to test the engine use the engine instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swifty_desktop.tasks.base import JobCancelled


class FakeContext:
    def __init__(self, engine: Any, data_dir: Any, resume_state: Any = None,
                 cancel_after: int | None = None) -> None:
        self._engine = engine
        self.data_dir = Path(data_dir.root if hasattr(data_dir, "root") else data_dir)
        self.job_id = 1
        self.attempt = 1
        self.resume_state = resume_state
        self.progress_calls: list[tuple[float | None, str]] = []
        self.lines: list[str] = []
        self.checkpoints: list[Any] = []
        self.outputs: list[Path] = []
        self.completed: list[Path] = []  # outputs the task marked complete
        self.checks = 0
        self.cancel_after = cancel_after

    def progress(self, fraction: float | None, message: str = "") -> None:
        self.progress_calls.append((fraction, message))

    def log(self, line: str) -> None:
        self.lines.append(str(line))

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            raise JobCancelled("cancelled")

    def checkpoint(self, state: Any, conn: Any = None) -> None:
        self.checkpoints.append(state)
        self.resume_state = state

    def output_path(self, name: str, *, primary: bool | None = None,
                    keep_on_failure: bool = False) -> Path:
        p = Path(name)
        # as the engine does: a relative name keeps its folders, inside outputs/
        inside = Path(*[part for part in p.parts if part not in ("", ".", "..")] or ["output"])
        final = p if p.is_absolute() else self.data_dir / "outputs" / inside
        final.parent.mkdir(parents=True, exist_ok=True)
        self.outputs.append(final)
        return final

    def mark_output_complete(self, path: Path | str) -> None:
        assert Path(path) in self.outputs, f"{path} is not an output of this job"
        self.completed.append(Path(path))

    def engine(self) -> Any:
        return self._engine

    def database_url(self) -> str:
        return str(self._engine.url)
