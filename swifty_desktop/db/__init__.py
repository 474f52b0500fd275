"""Storage: engine factory, typed models and Alembic migrations."""

from swifty_desktop.db.engine import is_sqlite, make_engine, write_transaction
from swifty_desktop.db.migrate import HEAD, SchemaError, upgrade

__all__ = ["HEAD", "SchemaError", "is_sqlite", "make_engine", "upgrade", "write_transaction"]
