"""Bring a database to the schema this version understands, or refuse it.

Alembic owns the schema.  To keep start-up fast, the current revision is read
with one query and Alembic is only loaded when an upgrade is due.  A database
whose revision this version does not know was written by a newer version: it is
refused with a message saying what to do, never "upgraded" or damaged.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Every revision this version knows, oldest first.  tests/test_db.py checks that
# this list matches the scripts in migrations/versions.
KNOWN_REVISIONS: tuple[str, ...] = ("0001_engine", "0002_business", "0003_schedule_rule")
HEAD = KNOWN_REVISIONS[-1]


class SchemaError(RuntimeError):
    """The database cannot be used by this version (newer, or damaged)."""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def alembic_config(engine: Engine | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine, target: str = "head", *, lock_path: Path | None = None) -> str | None:
    """Upgrade ``engine``'s database to ``target``; return the revision found before.

    Several processes may start at once on one data directory; a file lock next
    to the database makes the check-and-upgrade happen once.
    """
    from filelock import FileLock

    before = current_revision(engine)
    if before == HEAD and target == "head":
        return before
    if before is not None and before not in KNOWN_REVISIONS:
        db = engine.url.database or str(engine.url)
        raise SchemaError(
            f"The database {db} was written by a newer version of Swifty Desktop "
            f"(schema '{before}'; this version knows up to '{HEAD}'). Install the newer "
            f"version, or choose another data directory with --data-dir."
        )
    lock = FileLock(str(lock_path or Path(engine.url.database or "swifty.db")
                        .with_suffix(".migrate.lock")))
    with lock.acquire(timeout=60):
        before = current_revision(engine)  # another process may have done it meanwhile
        if before == HEAD and target == "head":
            return before
        from alembic import command

        cfg = alembic_config(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)
    return before
