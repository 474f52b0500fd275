"""Start-up steps shared by the window, the CLI and the headless worker.

paths -> logging -> database and migrations.  Each step raises a
:class:`StartupError` whose message says what happened and what to do.
"""

from __future__ import annotations

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


_LOGGING_READY: set[Path] = set()


def init_logging(data_dir: DataDir, *, verbose: bool = False, console: bool = False) -> Path:
    """Log to ``logs/swifty.log`` (rotating, 5 x 2 MB) in the data directory."""
    log_file = data_dir.logs / "swifty.log"
    root = logging.getLogger()
    if log_file not in _LOGGING_READY:
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=2_000_000, backupCount=5, encoding="utf-8", delay=True)
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
          verbose: bool = False) -> Services:
    """paths -> logging -> database: everything a front end needs before its services."""
    folder = open_data_dir(data_dir)
    init_logging(folder, verbose=verbose, console=console_log)
    engine = open_database(folder)
    logging.getLogger(__name__).info("started with data directory %s", folder.root)
    return Services(folder, engine)
