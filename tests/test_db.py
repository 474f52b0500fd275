"""Schema under Alembic: fresh databases, upgrades that keep data, newer ones refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from swifty_desktop.bootstrap import StartupError, open_database
from swifty_desktop.db import make_engine, upgrade
from swifty_desktop.db.migrate import HEAD, KNOWN_REVISIONS, MIGRATIONS_DIR, current_revision
from swifty_desktop.db.models import Base
from swifty_desktop.paths import DataDir


def test_known_revisions_match_the_migration_scripts() -> None:
    from alembic.script import ScriptDirectory

    from swifty_desktop.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert tuple(chain) == KNOWN_REVISIONS
    assert script.get_current_head() == HEAD
    assert (MIGRATIONS_DIR / "env.py").exists()


def test_fresh_database_is_at_head_in_wal_mode_and_matches_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(tmp_path / "fresh.db")
    assert upgrade(engine) is None
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    engine.dispose()


def test_upgrade_from_the_first_revision_keeps_jobs(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "old.db")
    upgrade(engine, target="0001_engine")
    with engine.begin() as conn:
        assert not inspect(conn).has_table("products")
        conn.execute(text(
            "INSERT INTO jobs (kind, title, params, \"trigger\", trigger_type, status, attempt,"
            " created_at, updated_at, error_transient, cancel_requested) VALUES "
            "('noop', 'old job', '{}', '{}', 'api', 'completed', 1, 1, 1, 0, 0)"))
    assert upgrade(engine) == "0001_engine"
    with engine.connect() as conn:
        assert inspect(conn).has_table("products")
        assert conn.execute(text("SELECT title FROM jobs")).scalar() == "old job"
    engine.dispose()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data").ensure()
    open_database(data).dispose()
    with sqlite3.connect(data.db_path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_future'")
    before = data.db_path.read_bytes()
    with pytest.raises(StartupError) as info:
        open_database(data)
    message = str(info.value)
    assert "newer version of Swifty Desktop" in message and "0099_future" in message
    assert "--data-dir" in message
    assert data.db_path.read_bytes() == before  # untouched


def test_a_file_that_is_not_a_database_gets_a_clear_error(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data").ensure()
    data.db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StartupError, match="cannot open the database .*move it aside"):
        open_database(data)


@pytest.mark.parametrize("how", ["on_conflict", "portable"])
def test_upsert_inserts_new_keys_and_updates_known_ones(tmp_path: Path, how: str) -> None:
    """Both spellings (ON CONFLICT where the database has it, UPDATE-then-INSERT
    elsewhere) leave the same rows."""
    import datetime as dt

    from swifty_desktop.db.engine import upsert, upsert_portably
    from swifty_desktop.db.models import ExchangeRate

    engine = make_engine(tmp_path / "u.db")
    upgrade(engine)
    table = ExchangeRate.__table__
    day, now = dt.date(2026, 12, 4), dt.datetime(2026, 12, 4, 7, 0)
    write = upsert if how == "on_conflict" else upsert_portably

    def rows(**rates: float) -> list[dict[str, object]]:
        return [{"rate_date": day, "currency": c, "rate": r, "fetched_at": now}
                for c, r in rates.items()]

    with engine.begin() as conn:
        write(conn, table, rows(USD=1.05, GBP=0.83), keys=("rate_date", "currency"),
              update=("rate", "fetched_at"))
        write(conn, table, rows(USD=1.06, CHF=0.94), keys=("rate_date", "currency"),
              update=("rate", "fetched_at"))
        stored = dict(conn.execute(text("SELECT currency, rate FROM exchange_rates")).all())
    assert stored == {"USD": 1.06, "GBP": 0.83, "CHF": 0.94}
    engine.dispose()
