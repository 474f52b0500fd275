"""Helpers for tests that run the real command line and real engine processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(data_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swifty_desktop", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=timeout, env=cli_env())


def run_json(data_dir: Path, *args: str) -> Any:
    proc = run_cli(data_dir, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def start_worker(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "swifty_desktop", "--data-dir", str(data_dir), "worker", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline:  # wait for its "running" line on stderr
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "running on" in line or not line:
            break
    assert "running on" in line, f"worker did not start: {line!r}"
    return proc


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    """Signal the process, wait for it and close its pipes; return its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    return proc.returncode


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rows(data_dir: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Run a query on a data directory's database with plain sqlite3 (another client)."""
    if not (data_dir / "swifty.db").exists():
        return []
    with sqlite3.connect(data_dir / "swifty.db", timeout=30) as conn:
        return conn.execute(sql, args).fetchall()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, message: str = "") -> Any:
    """Poll (without a Qt event loop) until ``predicate()`` is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {message or predicate}")


def job_record(**changes: Any) -> Any:
    """A completed JobRecord as a finished row reads (``changes`` replace fields): for
    code that only reads records (notifications, the registry's texts)."""
    import dataclasses

    from swifty_desktop.jobs.model import JobRecord, JobStatus, Trigger

    base = JobRecord(id=1, kind="noop", title="Job", status=JobStatus.COMPLETED,
                     trigger=Trigger("api"), params={}, attempt=1, retry_of=None, root_id=None,
                     superseded_by=None, schedule_id=None, created_at=0, started_at=0,
                     finished_at=1, updated_at=1, not_before=None, progress=1.0, message="",
                     output_path=None, result=None, error=None, checkpoint=None,
                     engine_id=None, lease_until=None, cancel_requested=False)
    return dataclasses.replace(base, **changes)
