"""Application settings: declared next to the feature that uses them, stored in the
database (``settings`` table, JSON values) — except secrets, which go to the OS
keyring and never into the database.

A feature declares its settings once::

    register_group("mail", "E-mail", [
        SettingSpec("smtp.host", "SMTP server", help="empty: write .eml files to the outbox"),
        SettingSpec("smtp.password", "Password", type="password"),
    ])

and the GUI's settings dialog shows one page per group.  A group may name a
*check* (``check="module:function"``, see :mod:`swifty_desktop.integrations.checks`)
that tries the values typed in the dialog, before they are saved; the dialog then
shows a *Test connection* button on that page.  No Qt here: worker processes read
settings too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Engine, Table, select

from swifty_desktop.db.models import Setting

log = logging.getLogger(__name__)

KEYRING_SERVICE = "Swifty Desktop"


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """One setting.  ``type``: str, int, float, bool, choice, password (a keyring secret).

    ``enabled_when=(key, value)``: the setting is read only while the setting ``key``
    has that value (the dialog disables its field otherwise; the stored value stays).
    """

    key: str
    label: str
    type: str = "str"
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    enabled_when: tuple[str, str] | None = None

    @property
    def secret(self) -> bool:
        return self.type == "password"


@dataclasses.dataclass(frozen=True)
class SettingsGroup:
    """A page of settings.

    ``check``: ``"package.module:function"``, a function ``(values, stored_secret)``
    returning a ``CheckResult`` (see :mod:`swifty_desktop.integrations.checks`);
    ``values`` maps this group's keys to the values typed (a secret: None for "the
    stored one", "" for none), ``stored_secret(key)`` reads a secret from the keyring.
    A name rather than the function, so that declaring a group imports nothing.
    """

    name: str
    title: str
    specs: tuple[SettingSpec, ...]
    description: str = ""
    check: str = ""


_GROUPS: dict[str, SettingsGroup] = {}


def register_group(name: str, title: str, specs: Sequence[SettingSpec],
                   description: str = "", *, check: str = "") -> SettingsGroup:
    """Declare a page of settings (idempotent for the same declaration)."""
    group = SettingsGroup(name, title, tuple(specs), description, check)
    _GROUPS[name] = group
    return group


def resolve_check(reference: str) -> Any:
    """The function a group's ``check`` names (``"package.module:function"``).

    Imports its module: call it where the import may take time (off the GUI thread).
    """
    import importlib

    module_name, _, function = reference.partition(":")
    if not module_name or not function:
        raise ValueError(f"a settings check is named 'package.module:function', "
                         f"not {reference!r}")
    return getattr(importlib.import_module(module_name), function)


def groups() -> list[SettingsGroup]:
    """Every declared group (import :mod:`swifty_desktop.tasks` first to fill it)."""
    return list(_GROUPS.values())


def spec_for(key: str) -> SettingSpec | None:
    for group in _GROUPS.values():
        for spec in group.specs:
            if spec.key == key:
                return spec
    return None


def read_value(conn: Any, key: str) -> Any:
    """A stored (non-secret) value read on an open connection; None if unset.

    For job bodies that keep a small remembered value in the same transaction as
    the work it describes; no declared default is applied.
    """
    raw = conn.execute(select(Setting.value).where(Setting.key == key)).scalar()
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def write_value(conn: Any, key: str, value: Any) -> None:
    """Store (None: remove) a non-secret value on an open connection, in its transaction."""
    from sqlalchemy import delete, insert

    spec = spec_for(key)
    if spec is not None and spec.secret:
        raise ValueError(f"{key} is a secret: it belongs in the keyring, not the database")
    table = cast(Table, Setting.__table__)
    conn.execute(delete(table).where(table.c.key == key))
    if value is not None:
        conn.execute(insert(table).values(key=key, value=json.dumps(value)))


class SecretStoreError(RuntimeError):
    """The OS keyring is unavailable or refused the operation."""


class Settings:
    """Read and write settings of one data directory."""

    def __init__(self, engine: Engine, *, keyring_namespace: str | None = None) -> None:
        self.engine = engine
        # secrets of different data directories must not collide in one keyring
        self._namespace = keyring_namespace or str(engine.url.database or engine.url)

    # -------------------------------------------------------------- plain values
    def get(self, key: str, default: Any = None) -> Any:
        spec = spec_for(key)
        if spec is not None and spec.secret:
            return self.get_secret(key)
        with self.engine.connect() as conn:
            raw = conn.execute(select(Setting.value).where(Setting.key == key)).scalar()
        if raw is None:
            if default is not None:
                return default
            return spec.default if spec is not None else None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def set(self, key: str, value: Any) -> None:
        spec = spec_for(key)
        if spec is not None and spec.secret:
            self.set_secret(key, value)
            return
        from sqlalchemy import delete, insert

        table = cast(Table, Setting.__table__)
        with self.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.key == key))
            if value is not None:
                conn.execute(insert(table).values(key=key, value=json.dumps(value)))

    def all(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Setting.key, Setting.value)).all()
        out: dict[str, Any] = {}
        for key, raw in rows:
            try:
                out[key] = json.loads(raw)
            except ValueError:
                out[key] = raw
        return out

    # ------------------------------------------------------------------- secrets
    def _keyring_user(self, key: str) -> str:
        return f"{self._namespace}:{key}"

    def get_secret(self, key: str) -> str | None:
        """The secret from the OS keyring (None if unset or no keyring is available)."""
        import keyring
        from keyring.errors import KeyringError

        try:
            return keyring.get_password(KEYRING_SERVICE, self._keyring_user(key))
        except (KeyringError, RuntimeError) as exc:
            log.warning("cannot read %s from the keyring: %s", key, exc)
            return None

    def set_secret(self, key: str, value: str | None) -> None:
        """Store (or with None, delete) a secret in the OS keyring."""
        import keyring
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            if value:
                keyring.set_password(KEYRING_SERVICE, self._keyring_user(key), value)
            else:
                try:
                    keyring.delete_password(KEYRING_SERVICE, self._keyring_user(key))
                except PasswordDeleteError:
                    pass
        except (KeyringError, RuntimeError) as exc:
            raise SecretStoreError(
                f"cannot save '{key}' in the system keyring ({exc}). Install or unlock a "
                "keyring (GNOME Keyring, KWallet, macOS Keychain, Windows Credential "
                "Manager) and try again."
            ) from exc
