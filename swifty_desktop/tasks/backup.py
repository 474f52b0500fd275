"""``backup``: a consistent copy of the database, made while the app keeps working.

The copy (see :mod:`swifty_desktop.db.backup`: SQLite's online backup API, one read
transaction, so no writer waits and no transaction is caught half-way) is one
self-contained file, checked with ``PRAGMA quick_check``; it goes to
``outputs/backups/`` under a temporary name and is renamed into place only when it
is whole.  ``swifty-desktop restore FILE`` puts such a copy back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swifty_desktop.tasks.base import Action, Context, Param, TaskError, task


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
    removed = result_count(result, "removed")
    return (f"{size / 1e6:,.1f} MB" + (f": {', '.join(parts)}" if parts else "")
            + (f"; {counted(removed, 'older backup')} deleted" if removed else ""))


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
        Param("keep", "int", default=10, minimum=0, maximum=10_000, label="Keep",
              help="how many of the backups in outputs/backups to keep, the newest; older "
                   "ones are deleted after a new one is made (0: keep them all; a backup "
                   "saved elsewhere is never deleted)"),
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
    from swifty_desktop.db.backup import BackupError, copy_database, describe_counts

    source = sqlite_path(ctx.database_url())
    name = str(params.get("path") or "") or \
        f"backups/swifty-backup_{dt.datetime.now():%Y-%m-%d_%H%M%S}.db"
    target = ctx.output_path(name)
    ctx.progress(0.0, f"Copying {source.name}")
    ctx.check_cancelled()
    try:
        copy = copy_database(source, target, job_id=ctx.job_id, progress=ctx.progress)
    except BackupError as exc:
        raise TaskError(f"{exc}; nothing was kept. Run the backup again; if it fails again, "
                        "the database itself may be damaged: keep a copy of the data folder "
                        "and contact support.") from exc
    ctx.check_cancelled()
    result = {"counts": copy.counts, "bytes": copy.bytes, "seconds": copy.seconds}
    ctx.log(f"Copied {source.name} ({copy.bytes / 1e6:,.1f} MB) in {copy.seconds:.1f} s: "
            f"{describe_counts(copy.counts, zeros=True)}")
    removed = []
    keep = int(params.get("keep", 10))
    if not params.get("path") and keep > 0:
        removed = prune(target.parent, keep - 1)  # the temporary file sits beside it
        if removed:
            ctx.log(f"Deleted {len(removed)} older backup{'s' if len(removed) != 1 else ''} "
                    f"(keeping the newest {keep}): {', '.join(p.name for p in removed)}")
    ctx.progress(1.0, "Copy checked")
    return {**result, "source": str(source), "removed": len(removed)}


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete this kind's backups in ``folder`` beyond the newest ``keep``; return them.

    Only files named as this kind names them (``swifty-backup_DATE.db``, or ``… (2).db``)
    count; the names sort by their date.  Called before the new copy is renamed into
    place, so it keeps ``keep`` old ones and the new one makes ``keep + 1``.
    """
    ours = sorted((p for p in folder.glob("swifty-backup_*.db") if p.is_file()),
                  key=lambda p: p.name, reverse=True)
    removed = []
    for old in ours[keep:]:
        try:
            old.unlink()
        except OSError:
            continue  # in use or already gone: the next backup tries again
        removed.append(old)
    return removed
