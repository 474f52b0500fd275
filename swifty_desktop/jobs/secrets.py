"""Secret job parameters (an API secret given on the command line) never reach the
database: the job row stores a reference, the value goes to the OS keyring, and
the worker process resolves the reference just before the job body runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from swifty_desktop.tasks import KindSpec, ParamError, TaskError

REF_PREFIX = "keyring:"


def is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(REF_PREFIX)


def stash(spec: KindSpec, params: Mapping[str, Any], engine: Engine) -> dict[str, Any]:
    """Move the values of secret parameters into the keyring; return the params to store."""
    from swifty_desktop.settings import SecretStoreError, Settings

    out = dict(params)
    for param in spec.params:
        value = out.get(param.name)
        if not param.secret or value in (None, "") or is_ref(value):
            continue
        key = f"job-param.{spec.name}.{param.name}.{secrets.token_hex(8)}"
        try:
            Settings(engine).set_secret(key, str(value))
        except SecretStoreError as exc:
            raise ParamError(
                f"parameter '{param.name}' is a secret and no system keyring is available "
                "to keep it out of the database; save it in the app's Settings instead (it "
                f"is used when the parameter is left out). ({exc})") from None
        out[param.name] = REF_PREFIX + key
    return out


def stash_new(spec: KindSpec, params: Mapping[str, Any], engine: Engine
              ) -> tuple[dict[str, Any], list[str]]:
    """:func:`stash`, also returning the references it made now (to :func:`forget`
    again if what was to store them fails)."""
    out = stash(spec, params, engine)
    return out, [v for k, v in out.items() if is_ref(v) and params.get(k) != v]


def reveal(spec: KindSpec, params: Mapping[str, Any], engine: Engine) -> dict[str, Any]:
    """The parameters with secret references replaced by their values (worker side)."""
    from swifty_desktop.settings import Settings

    out = dict(params)
    for param in spec.params:
        value = out.get(param.name)
        if param.secret and isinstance(value, str) and is_ref(value):
            secret = Settings(engine).get_secret(value[len(REF_PREFIX):])
            if secret is None:
                raise TaskError(
                    f"the secret parameter '{param.name}' of this job is no longer in the "
                    "system keyring; queue the job again with the secret, or save it in "
                    "Settings")
            out[param.name] = secret
    return out


def forget(value: Any, engine: Engine) -> bool:
    """Delete the keyring entry behind a reference :func:`stash` made; True if it was one.

    Anything else (plain text, a reference to one of Settings' own secrets) is left
    alone.  Raises SecretStoreError when the keyring refuses.
    """
    from swifty_desktop.settings import Settings

    if not is_ref(value) or not value.startswith(REF_PREFIX + "job-param."):
        return False
    Settings(engine).set_secret(value[len(REF_PREFIX):], None)
    return True
