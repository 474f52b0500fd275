"""Where Swifty Desktop keeps its data.

One data directory holds everything: ``swifty.db`` (SQLite, WAL), ``outputs/``
(finished files), ``outbox/`` (e-mail written as .eml when no SMTP server is set)
and ``logs/``.  It is chosen by ``--data-dir``, else ``SWIFTY_DATA_DIR``, else the
platform's per-user data folder (platformdirs).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

ENV_VAR = "SWIFTY_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class DataDir:
    """The folders and files inside one data directory."""

    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / "swifty.db"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def ensure(self) -> DataDir:
        """Create the folders; raise OSError with the path in it if that is impossible."""
        for folder in (self.root, self.outputs, self.outbox, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def default_root() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("SwiftyDesktop", "Swifty"))


def resolve(data_dir: str | os.PathLike[str] | None = None) -> DataDir:
    """The data directory to use: the argument, then $SWIFTY_DATA_DIR, then the default."""
    if data_dir:
        return DataDir(Path(data_dir).expanduser().resolve())
    env = os.environ.get(ENV_VAR)
    if env:
        return DataDir(Path(env).expanduser().resolve())
    return DataDir(default_root())
