"""Copy an SQLite database consistently, check a copy, and put one back.

SQLite's online backup API copies a database as it was at one instant, in one read
transaction: in WAL mode no writer is blocked, and the copy never holds half of a
transaction — which copying the file (plus its ``-wal``) by hand while the app runs
cannot promise.  Never read ``swifty.db`` with plain file I/O in a process that
holds connections to it: closing any descriptor of the file drops all of that
process's POSIX locks on it, and another process may then delete the WAL under it.

Plain ``sqlite3`` (no SQLAlchemy, no Qt): the backup job and ``swifty-desktop
restore`` both use it.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

COUNTED = ("products", "customers", "orders", "jobs", "schedules")
SQLITE_MAGIC = b"SQLite format 3\x00"


class BackupError(RuntimeError):
    """A copy cannot be made, or a file is not a usable copy; the message says why."""


@dataclasses.dataclass(frozen=True)
class CopyInfo:
    """What a copy holds: rows per main table, its size, its schema revision."""

    counts: dict[str, int]
    bytes: int
    revision: str | None
    seconds: float = 0.0


def describe_counts(counts: dict[str, int], *, zeros: bool = False) -> str:
    """"5,000 products, 3,000 customers and 40,000 orders" (zero counts left out,
    unless ``zeros``: what a backup holds says "0 jobs" too)."""
    parts = [f"{n:,} {name.replace('_', ' ')}" for name, n in counts.items() if n or zeros]
    if not parts:
        return "no data"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _counts(conn: sqlite3.Connection, tables: set[str]) -> dict[str, int]:
    return {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])
            for t in COUNTED if t in tables}


def _connect_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def inspect_copy(path: Path) -> CopyInfo:
    """Check that ``path`` is a whole SQLite database of this app; BackupError if not."""
    if not path.is_file():
        raise BackupError(f"{path} does not exist (or is not a file)")
    with open(path, "rb") as fh:  # a file no connection of ours has open
        magic = fh.read(16)
    if magic != SQLITE_MAGIC:
        raise BackupError(f"{path} is not an SQLite database (it starts with {magic[:8]!r})")
    conn = _connect_ro(path)
    try:
        check = [r[0] for r in conn.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            raise BackupError(f"{path} is damaged: SQLite's integrity check says "
                              f"{'; '.join(check[:3])}")
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "jobs" not in tables or "alembic_version" not in tables:
            raise BackupError(f"{path} is an SQLite database, but not one of Swifty Desktop "
                              "(it has no jobs table)")
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        counts = _counts(conn, tables)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} cannot be read as a database: {exc}") from exc
    finally:
        conn.close()
    return CopyInfo(counts, path.stat().st_size, revision[0] if revision else None)


def copy_database(source: Path, target: Path, *, job_id: int | None = None,
                  progress: Callable[[float, str], None] | None = None) -> CopyInfo:
    """Copy ``source`` into the new file ``target`` (online, consistent), checked.

    The copy is one self-contained file (rollback journal, no ``-wal`` beside it).
    In it, the job ``job_id`` (the backup job, running at the instant of the copy)
    reads as completed, and no engine is registered, so a restored copy starts clean.
    """
    started = time.perf_counter()
    src = _connect_ro(source)
    try:
        dst = sqlite3.connect(target)
        try:
            # one step (-1): a single read transaction, so writers committing meanwhile
            # cannot make it start over again and again
            src.backup(dst, pages=-1)
            if progress is not None:
                progress(0.7, "Checking the copy")
            dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
            tables = {r[0] for r in dst.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            with dst:
                if "engines" in tables:
                    dst.execute("DELETE FROM engines")
                if job_id is not None and "jobs" in tables:
                    # what the job will report, as far as the copy knows it (its size
                    # once the journal is gone: pages in use times the page size)
                    counts = _counts(dst, tables)
                    pages = dst.execute("PRAGMA page_count").fetchone()[0]
                    size = dst.execute("PRAGMA page_size").fetchone()[0]
                    now = time.time()
                    dst.execute("UPDATE jobs SET status = 'completed', finished_at = ?, "
                                "updated_at = ?, progress = 1.0, engine_id = NULL, "
                                "lease_until = NULL, message = 'This backup', result = ? "
                                "WHERE id = ?",
                                (now, now, json.dumps({"counts": counts,
                                                       "bytes": int(pages) * int(size)}),
                                 job_id))
        finally:
            dst.close()
    finally:
        src.close()
    info = inspect_copy(target)
    return dataclasses.replace(info, seconds=round(time.perf_counter() - started, 3))


def restore_into(backup: Path, database: Path) -> None:
    """Replace the contents of ``database`` with those of ``backup``, in one transaction.

    Through the backup API into the existing file, so its WAL and shared-memory files
    stay consistent (replacing the file by hand next to a stale ``-wal`` would corrupt
    it).  The caller makes sure no other process uses ``database``.
    """
    src = _connect_ro(backup)
    try:
        dst = sqlite3.connect(database, timeout=30)
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=WAL")  # as the app keeps it
            check = [r[0] for r in dst.execute("PRAGMA quick_check")]
        finally:
            dst.close()
    finally:
        src.close()
    if check != ["ok"]:
        raise BackupError(f"the restored {database} fails SQLite's integrity check "
                          f"({'; '.join(check[:3])})")
