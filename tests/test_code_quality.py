"""The code stays as the project's own tools want it: ruff clean, and mypy strict for
the storage and jobs packages (pyproject.toml says so; this keeps it true)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_ruff_finds_nothing() -> None:
    proc = run("ruff", "check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_the_jobs_and_db_packages_type_check_strictly(tmp_path: Path) -> None:
    proc = run("mypy", "--cache-dir", str(tmp_path / "mypy-cache"), "swifty_desktop/jobs",
               "swifty_desktop/db")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Success: no issues found" in proc.stdout
