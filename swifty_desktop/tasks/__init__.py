"""Job kinds: one module per kind, plain Python, no Qt.

Importing this package registers every kind; heavy libraries (openpyxl, reportlab,
requests) are imported inside the job bodies so that listing kinds stays cheap.
"""

from __future__ import annotations

import importlib

from swifty_desktop.tasks.base import (
    Action,
    Context,
    JobCancelled,
    KindSpec,
    Outcome,
    Param,
    ParamError,
    RetryPolicy,
    TaskError,
    TransientError,
    counted,
    registry,
    result_count,
    task,
)


def _discover() -> tuple[str, ...]:
    """Every module of this package declares kinds (``base`` only defines the contract)."""
    import pkgutil

    names = sorted(m.name for m in pkgutil.iter_modules(__path__)
                   if not m.name.startswith("_") and m.name not in ("base",))
    return tuple(f"{__name__}.{n}" for n in names)


KIND_MODULES: tuple[str, ...] = _discover()

for _module in KIND_MODULES:
    importlib.import_module(_module)


def get_kind(name: str) -> KindSpec:
    """The kind called ``name``, or ParamError listing the kinds that exist."""
    try:
        return registry()[name]
    except KeyError:
        known = ", ".join(sorted(registry()))
        raise ParamError(f"unknown job kind '{name}'; known kinds: {known}") from None


def all_kinds() -> list[KindSpec]:
    """Every kind, sorted by name."""
    return [registry()[k] for k in sorted(registry())]


__all__ = [
    "Action", "Context", "JobCancelled", "KindSpec", "Outcome", "Param", "ParamError",
    "RetryPolicy", "TaskError", "TransientError", "all_kinds", "counted", "get_kind",
    "registry", "result_count", "task",
]
