"""Logs in the data directory's ``logs/``: one file per role, rotated, also when several
processes write one file.

The app writes ``swifty.log``, ``swifty-desktop worker`` writes ``worker.log`` and the
other commands ``cli.log``; several processes of one role (scripts calling ``jobs
submit --wait`` side by side) share a file, and a rotation by one of them must not
leave the others writing into the renamed (or deleted) backup.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swifty_desktop import bootstrap
from swifty_desktop.paths import DataDir

MAX_BYTES = 20_000
BACKUPS = 3
LINE = "x" * 100


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, given back as it was (handlers added here closed and removed)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
            bootstrap._LOGGING_READY.discard(Path(getattr(handler, "baseFilename", "")))
    root.setLevel(level)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SWIFTY_DATA_DIR",)}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def _backups(log: Path) -> list[Path]:
    return sorted(log.parent.glob(log.name + ".*[0-9]"))


def test_the_log_rotates_and_new_lines_land_in_the_current_file(tmp_path: Path,
                                                                root_logger: logging.Logger
                                                                ) -> None:
    data = DataDir(tmp_path / "data").ensure()
    log_file = bootstrap.init_logging(data, role="cli", max_bytes=MAX_BYTES, backups=BACKUPS)
    assert log_file == data.logs / "cli.log"
    log = logging.getLogger("swifty_desktop.test")
    for i in range(1000):  # ~130 kB: six rotations, three backups kept
        log.info("line %04d %s", i, LINE)
    log.info("the last line")

    backups = _backups(log_file)
    assert [b.name for b in backups] == ["cli.log.1", "cli.log.2", "cli.log.3"]
    for path in [log_file, *backups]:
        assert 0 < path.stat().st_size <= MAX_BYTES, path
    current = log_file.read_text(encoding="utf-8").splitlines()
    assert current[-1].endswith("the last line")
    # the backups hold the lines just before, in order: nothing was lost in between
    newest_backup = backups[0].read_text(encoding="utf-8").splitlines()
    last_in_backup = int(newest_backup[-1].split("line ")[1][:4])
    first_in_current = int(current[0].split("line ")[1][:4])
    assert first_in_current == last_in_backup + 1


def test_a_process_keeps_writing_to_the_current_file_after_another_rotated_it(
        tmp_path: Path) -> None:
    """Two real processes on one log: B rotates it five times while A holds it open;
    A's next line must reach the current file, not a backup (or a deleted file)."""
    data = tmp_path / "data"
    setup = textwrap.dedent(f"""
        import logging, sys
        from pathlib import Path
        from swifty_desktop import bootstrap
        from swifty_desktop.paths import DataDir
        bootstrap.init_logging(DataDir(Path(sys.argv[1])).ensure(), role="cli",
                               max_bytes={MAX_BYTES}, backups={BACKUPS})
        log = logging.getLogger(sys.argv[2])
    """)
    with subprocess.Popen(
            [sys.executable, "-c", setup + textwrap.dedent("""
                log.info("A before")
                print("ready", flush=True)
                sys.stdin.readline()
                log.info("A after the rotation")
            """), str(data), "A"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=_env()) as holder:
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "ready"
            subprocess.run([sys.executable, "-c", setup + textwrap.dedent(f"""
                for i in range(800):
                    log.info("B %04d {LINE}", i)
            """), str(data), "B"], check=True, timeout=60, env=_env())
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert holder.wait(timeout=60) == 0
        finally:
            if holder.poll() is None:
                holder.kill()

    log_file = data / "logs" / "cli.log"
    current = log_file.read_text(encoding="utf-8")
    assert "A after the rotation" in current
    assert current.splitlines()[-1].endswith("A after the rotation")
    backups = _backups(log_file)
    assert [b.name for b in backups] == ["cli.log.1", "cli.log.2", "cli.log.3"]
    for path in [log_file, *backups]:
        assert path.stat().st_size <= MAX_BYTES, f"{path.name} grew past the limit"
    assert not [b.name for b in backups if "A after" in b.read_text(encoding="utf-8")]


@pytest.mark.slow
def test_each_role_writes_its_own_log_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli = [sys.executable, "-m", "swifty_desktop", "--data-dir", str(data)]
    subprocess.run([*cli, "jobs", "submit", "noop"], check=True, capture_output=True,
                   timeout=120, env=_env())
    logs = data / "logs"
    assert "started with data directory" in (logs / "cli.log").read_text(encoding="utf-8")
    assert not (logs / "swifty.log").exists() and not (logs / "worker.log").exists()

    with subprocess.Popen([*cli, "worker", "--workers", "1", "--no-scheduler"],
                          stderr=subprocess.PIPE, text=True, env=_env()) as worker:
        assert worker.stderr is not None
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.extend(worker.stderr), daemon=True)
        reader.start()  # a thread, so that a silent worker cannot block the test
        try:
            deadline = time.monotonic() + 60
            while not any("running on" in line for line in said):
                assert worker.poll() is None, f"the worker exited: {''.join(said)}"
                assert time.monotonic() < deadline, f"the worker did not start: {said}"
                time.sleep(0.1)
            # it prints that just before its event loop runs, and a SIGTERM that comes
            # before the loop is lost (the quit() it triggers does nothing yet)
            time.sleep(1.0)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
                pytest.fail(f"the worker did not stop on SIGTERM: {''.join(said)}")
        reader.join(10)
    assert worker.returncode == 0, "".join(said)
    assert "started with data directory" in (logs / "worker.log").read_text(encoding="utf-8")
    assert not (logs / "swifty.log").exists()
