"""``backup``: a consistent copy of the database, made while the app keeps working.

SQLite's online backup API copies the database as it was at one instant, in one
read transaction: in WAL mode that blocks no writer (the app, the workers and a
``swifty-desktop worker`` go on), and the copy never holds half of a transaction —
which copying the file (plus its ``-wal``) by hand while the app runs cannot
promise.  Never read ``swifty.db`` with plain file I/O in a process that holds
connections to it: closing any descriptor of the file drops all of that process's
POSIX locks on it, and another process may then delete the WAL under it.

The copy is one self-contained file (rollback journal, no ``-wal`` beside it),
checked with ``PRAGMA quick_check``; it goes to ``outputs/backups/`` under a
temporary name and is renamed into place only when it is whole.  In the copy, this
backup's own job reads as completed (it was running at the instant of the copy),
and no engine is registered, so a restored copy starts clean.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swifty_desktop.tasks.base import Action, Context, Param, TaskError, task

COUNTED = ("products", "customers", "orders", "jobs", "schedules")


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///…`` database URL; TaskError for any other database."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise TaskError(f"Backing up works for the app's SQLite database file; this data "
                        f"directory uses {parsed.get_backend_name()}. Use that database's "
                        "own backup tools.")
    if not parsed.database or parsed.database == ":memory:":
        raise TaskError("This database lives in memory only: there is no file to back up.")
    return Path(parsed.database)


def back_up(source: Path, target: Path, *, job_id: int | None = None,
            progress: Any = None) -> dict[str, Any]:
    """Copy ``source`` into the new file ``target`` (online, consistent); return counts."""
    started = time.perf_counter()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
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
                    now = time.time()
                    dst.execute("UPDATE jobs SET status = 'completed', finished_at = ?, "
                                "updated_at = ?, progress = 1.0, engine_id = NULL, "
                                "lease_until = NULL, message = 'This backup' WHERE id = ?",
                                (now, now, job_id))
            check = [r[0] for r in dst.execute("PRAGMA quick_check")]
            if check != ["ok"]:
                raise TaskError(f"The copy of {source.name} failed its integrity check "
                                f"({'; '.join(check[:3])}); nothing was kept. Run the backup "
                                "again; if it fails again, the database itself may be "
                                "damaged: keep a copy of the data folder and contact support.")
            counts = {t: int(dst.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])
                      for t in COUNTED if t in tables}
        finally:
            dst.close()
    finally:
        src.close()
    return {"counts": counts, "bytes": target.stat().st_size,
            "seconds": round(time.perf_counter() - started, 3)}


def _outcome(result: Mapping[str, Any]) -> str:
    """"12.4 MB: 5,000 products, 3,000 customers, 40,000 orders, 812 jobs"."""
    from swifty_desktop.tasks.base import counted, result_count

    size = result.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool):
        return ""
    counts = result.get("counts") if isinstance(result.get("counts"), dict) else {}
    nouns = (("products", "product"), ("customers", "customer"), ("orders", "order"),
             ("jobs", "job"))
    parts = [counted(result_count(counts, key), noun) for key, noun in nouns if key in counts]
    return f"{size / 1e6:,.1f} MB" + (f": {', '.join(parts)}" if parts else "")


@task(
    "backup",
    title="Back up the database",
    outcome=_outcome,
    reveal_output=True,
    description="Copies the whole database (products, customers, orders, jobs, schedules, "
                "settings) into one file while the app keeps working.",
    params=(
        Param("path", "path", label="Save as", path_mode="save",
              file_filter="SQLite database (*.db)",
              help="where to write the copy: a full path, or a relative one inside the "
                   "outputs folder (default: outputs/backups/, named with the date and "
                   "time)"),
    ),
    concurrency=1,
    timeout=3600,
    rerun_safe=True,  # a copy of a copy: a re-run simply makes a new one
    icon="backup",
    actions=(
        Action("Back up database", icon="backup", menu="File",
               tooltip="Write a consistent copy of the database to outputs/backups, "
                       "while you keep working",
               ack="{title}: copying in the background; you will be told when it is done"),
    ),
)
def backup(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Write a consistent copy of the app database; returns its size and row counts."""
    source = sqlite_path(ctx.database_url())
    name = str(params.get("path") or "") or \
        f"backups/swifty-backup_{dt.datetime.now():%Y-%m-%d_%H%M%S}.db"
    target = ctx.output_path(name)
    ctx.progress(0.0, f"Copying {source.name}")
    ctx.check_cancelled()
    result = back_up(source, target, job_id=ctx.job_id, progress=ctx.progress)
    ctx.check_cancelled()
    counts = result["counts"]
    ctx.log(f"Copied {source.name} ({result['bytes'] / 1e6:,.1f} MB) in "
            f"{result['seconds']:.1f} s: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    ctx.progress(1.0, "Copy checked")
    return {**result, "source": str(source)}
