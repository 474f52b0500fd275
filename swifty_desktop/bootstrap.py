"""Start-up steps shared by the window, the CLI and the headless worker.

paths -> logging (one file per role) -> database and migrations.  Each step raises a
:class:`StartupError` whose message says what happened and what to do.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from swifty_desktop import paths
from swifty_desktop.paths import DataDir


class StartupError(RuntimeError):
    """The app cannot start; the message is meant for the user."""


@dataclass
class Services:
    """What every front end needs: where data lives and the database."""

    data_dir: DataDir
    engine: Engine

    def dispose(self) -> None:
        self.engine.dispose()


# One log file per role: the app, the headless ``worker`` and the other commands run
# as separate processes, often side by side on one data directory, and each holds its
# log file open.  Several processes of one role (two scripts calling ``jobs submit
# --wait``) still share a file, which SharedRotatingFileHandler allows.
LOG_FILES = {"app": "swifty.log", "worker": "worker.log", "cli": "cli.log"}
LOG_MAX_BYTES = 2_000_000
LOG_BACKUPS = 5

_LOGGING_READY: set[Path] = set()


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotated log file that other processes may write to at the same time.

    The standard handler keeps writing to the file it opened, so after another
    process rotated the log it writes into the renamed backup (and then rotates
    that again).  This one checks before each record that the file it holds is
    still the one at its path and reopens it if not; rotation runs under a file
    lock and is skipped when another process has just rotated.  A record written
    between another process's rename and this one's next check can still land at
    the end of the newest backup.
    """

    def __init__(self, filename: Path, *, max_bytes: int = LOG_MAX_BYTES,
                 backups: int = LOG_BACKUPS) -> None:
        from filelock import FileLock

        super().__init__(filename, maxBytes=max_bytes, backupCount=backups,
                         encoding="utf-8", delay=True)
        self._rotation_lock = FileLock(str(Path(filename).with_name(f".{Path(filename).name}"
                                                                    ".lock")), timeout=5)
        self._opened: tuple[int, int] | None = None
        self._rotating = False

    def _open(self) -> io.TextIOWrapper:
        stream = super()._open()
        info = os.fstat(stream.fileno())
        self._opened = (info.st_dev, info.st_ino)
        return stream

    def _holds_current_file(self) -> bool:
        try:
            info = os.stat(self.baseFilename)
        except OSError:  # rotated away and not created again yet
            return False
        return (info.st_dev, info.st_ino) == self._opened

    def _reopen_if_rotated(self) -> bool:
        if self.stream is None or self._holds_current_file():
            return False
        self.stream.close()
        self.stream = self._open()
        return True

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - logging's name
        if self._rotating:  # a record the lock library logs while this handler rotates
            return False
        self._reopen_if_rotated()
        return bool(super().shouldRollover(record))

    def doRollover(self) -> None:  # noqa: N802 - logging's name
        from filelock import Timeout

        self._rotating = True
        try:
            with self._rotation_lock:
                if self._reopen_if_rotated():  # another process rotated while we decided
                    return
                try:
                    super().doRollover()
                except OSError:  # e.g. Windows: another process holds the file open
                    if self.stream is None:
                        self.stream = self._open()  # go on in the same file; retry later
        except Timeout:  # a stuck lock must not stop logging: rotate at a later record
            pass
        finally:
            self._rotating = False


def log_file_for(data_dir: DataDir, role: str) -> Path:
    """The log file of a role (``app``, ``worker``, ``cli``) in the data directory."""
    return data_dir.logs / LOG_FILES[role]


def close_logs(under: Path) -> None:
    """Detach and close the log handlers writing into ``under`` (a data directory
    about to be deleted, or a test's), so that a later :func:`init_logging` for the
    same file opens it afresh."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        name = getattr(handler, "baseFilename", None)
        if name and Path(name).is_relative_to(under):
            root.removeHandler(handler)
            handler.close()
            _LOGGING_READY.discard(Path(name))


def init_logging(data_dir: DataDir, *, verbose: bool = False, console: bool = False,
                 role: str = "cli", max_bytes: int = LOG_MAX_BYTES,
                 backups: int = LOG_BACKUPS) -> Path:
    """Log to the role's file in ``logs/`` (rotating, 5 x 2 MB by default): ``swifty.log``
    for the app, ``worker.log`` for ``swifty-desktop worker``, ``cli.log`` for the
    other commands."""
    log_file = log_file_for(data_dir, role)
    root = logging.getLogger()
    if log_file not in _LOGGING_READY:
        handler = SharedRotatingFileHandler(log_file, max_bytes=max_bytes, backups=backups)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        _LOGGING_READY.add(log_file)
    if console and not any(isinstance(h, logging.StreamHandler) and
                           getattr(h, "stream", None) is sys.stderr for h in root.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        stream.setLevel(logging.DEBUG if verbose else logging.WARNING)
        root.addHandler(stream)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return log_file


def open_data_dir(data_dir: str | os.PathLike[str] | None) -> DataDir:
    """Resolve and create the data directory, or explain why it cannot be used."""
    resolved = paths.resolve(data_dir)
    try:
        return resolved.ensure()
    except OSError as exc:
        raise StartupError(
            f"cannot use the data directory {resolved.root}: {exc.strerror or exc}. "
            "Choose another one with --data-dir or SWIFTY_DATA_DIR."
        ) from exc


def open_database(data_dir: DataDir) -> Engine:
    """Open ``swifty.db`` and bring its schema up to date (refusing newer ones)."""
    from sqlalchemy.exc import SQLAlchemyError

    from swifty_desktop.db import SchemaError, make_engine, upgrade

    engine = make_engine(data_dir.db_path)
    try:
        upgrade(engine, lock_path=data_dir.root / ".migrate.lock")
    except SchemaError as exc:
        engine.dispose()
        raise StartupError(str(exc)) from exc
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StartupError(
            f"cannot open the database {data_dir.db_path}: {getattr(exc, 'orig', exc)}. "
            "If the file is damaged, move it aside (the app starts with an empty one) or "
            "choose another data directory with --data-dir."
        ) from exc
    return engine


def start(data_dir: str | os.PathLike[str] | None, *, console_log: bool = False,
          verbose: bool = False, role: str = "cli") -> Services:
    """paths -> logging -> database: everything a front end needs before its services.

    ``role`` (``app``, ``worker`` or ``cli``) chooses the log file."""
    folder = open_data_dir(data_dir)
    init_logging(folder, verbose=verbose, console=console_log, role=role)
    engine = open_database(folder)
    logging.getLogger(__name__).info("started with data directory %s", folder.root)
    return Services(folder, engine)
