"""The contract between the engine and a job body.

A *kind* is a plain Python function ``run(params, ctx) -> dict | None`` plus the
metadata declared next to it with :func:`task`.  Nothing in this module (or in any
task module) imports Qt: job bodies run in worker processes that know nothing of
the GUI.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

_log = logging.getLogger(__name__)


class TaskError(Exception):
    """A permanent failure a task reports on purpose: retrying will not help."""


class TransientError(Exception):
    """A failure that may go away by itself (a supplier is down, a 503, a reset).

    The engine retries the job automatically with exponential back-off, up to the
    kind's ``RetryPolicy.max_attempts``.  ``retry_after`` (seconds) is the least
    the engine waits before that retry, e.g. a server's ``Retry-After``.
    """

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = None if retry_after is None else max(0.0, float(retry_after))


class JobCancelled(Exception):
    """Raised by ``ctx.check_cancelled()`` once the user asked to cancel."""


class ParamError(ValueError):
    """A job parameter is missing, unknown or of the wrong type."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One declared parameter of a kind.

    ``type`` is one of ``str``, ``int``, ``float``, ``bool``, ``choice``, ``path``.
    """

    name: str
    type: str = "str"
    required: bool = False
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    secret: bool = False
    label: str = ""  # shown in the GUI's parameter form; defaults to the name
    # for type "path": "open" (an existing file), "save" (a new file), "dir"
    path_mode: str = "open"
    file_filter: str = ""  # e.g. "CSV files (*.csv *.txt)"

    def coerce(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type or raise ParamError."""
        kind = self.type
        try:
            if kind in ("str", "path"):
                if not isinstance(value, str):
                    value = str(value)
                if kind == "path" and not value.strip():
                    raise ValueError("empty path")
                out: Any = value
                if kind == "path" and self.path_mode in ("open", "dir"):
                    # an existing file is named from where the user is (a shell's folder),
                    # not from wherever the worker process that reads it runs
                    out = os.path.abspath(os.path.expanduser(value))
            elif kind == "int":
                if isinstance(value, bool):
                    raise ValueError
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                out = int(str(value).strip()) if isinstance(value, str) else int(value)
            elif kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                out = float(value)
                if not math.isfinite(out):
                    raise ValueError
            elif kind == "bool":
                if isinstance(value, bool):
                    out = value
                elif str(value).strip().lower() in ("1", "true", "yes", "on"):
                    out = True
                elif str(value).strip().lower() in ("0", "false", "no", "off"):
                    out = False
                else:
                    raise ValueError
            elif kind == "choice":
                out = str(value)
                if out not in self.choices:
                    raise ParamError(
                        f"parameter '{self.name}' must be one of "
                        f"{', '.join(self.choices)}; got '{out}'"
                    )
            else:  # pragma: no cover - a programming error in a kind declaration
                raise ParamError(f"parameter '{self.name}' has unknown type {kind!r}")
        except ParamError:
            raise
        except (TypeError, ValueError):
            article = {"int": "a whole number", "float": "a number", "bool": "true or false",
                       "path": "a file path"}.get(kind, "text")
            raise ParamError(
                f"parameter '{self.name}' must be {article}; got {value!r}"
            ) from None
        if self.minimum is not None and isinstance(out, (int, float)) and out < self.minimum:
            raise ParamError(
                f"parameter '{self.name}' must be at least {self.minimum:g}; got {out}")
        if self.maximum is not None and isinstance(out, (int, float)) and out > self.maximum:
            raise ParamError(
                f"parameter '{self.name}' must be at most {self.maximum:g}; got {out}")
        return out

    def describe(self) -> dict[str, Any]:
        """The parameter as shown by ``kinds --json``."""
        data: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": self.default,
            "help": self.help,
        }
        if self.choices:
            data["choices"] = list(self.choices)
        return data


@dataclasses.dataclass(frozen=True)
class Action:
    """A ready-made GUI action for a kind: a menu/toolbar entry with fixed parameters.

    ``ask`` names parameters the GUI asks for before submitting (a file to import);
    the other parameters come from ``params`` and the kind's defaults.  ``menu`` is
    the main-window menu it goes in (File, Data, Reports, Sync, Mail, Tools).
    """

    label: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ask: tuple[str, ...] = ()
    shortcut: str = ""
    icon: str = ""  # a name from resources/icons (without .svg)
    menu: str = "Tools"
    toolbar: bool = False
    tooltip: str = ""
    ack: str = ""  # status-bar text once queued; "{title}" is the job's title


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How the engine retries a kind after a *transient* error.

    ``max_attempts`` counts the first run: 1 means never retry automatically.
    The delay before attempt n+1 is ``min(backoff_max, backoff_base * 2**(n-1))``
    spread by +/- ``jitter`` (a fraction) so that many jobs do not retry in step.
    ``transient`` names exception types (``"module:Name"`` or a class) that count
    as transient for this kind in addition to :class:`TransientError`.
    """

    max_attempts: int = 1
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    jitter: float = 0.25
    transient: tuple[str, ...] = ()

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        ``rand`` is a number in [0, 1) supplied by the caller (tests pass fixed ones).
        """
        raw = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        return float(max(0.0, raw * (1.0 + self.jitter * (2.0 * rand - 1.0))))


class Context(Protocol):
    """What a task body may ask of the engine.  Implemented in the worker process."""

    job_id: int
    attempt: int
    data_dir: Path
    resume_state: Any
    time_limit: float  # seconds this job may run (the kind's timeout, or its override)

    def progress(self, fraction: float | None, message: str = "") -> None: ...
    def log(self, line: str) -> None: ...
    def check_cancelled(self) -> None: ...
    def checkpoint(self, state: Any) -> None: ...
    def output_path(self, name: str, *, primary: bool | None = None,
                    keep_on_failure: bool = False) -> Path: ...
    def mark_output_complete(self, path: Path | str) -> None: ...
    def database_url(self) -> str: ...


TaskFunc = Callable[[Mapping[str, Any], Context], "dict[str, Any] | None"]

# A kind's sentence for what a completed job did, from its result ("" if nothing to say).
Outcome = Callable[[Mapping[str, Any]], str]


def result_count(result: Mapping[str, Any], key: str) -> int:
    """A count in a job's result: an int as stored, a list by its length, 0 for anything
    else — results stored by older versions may lack keys that newer ones have."""
    value = result.get(key)
    if isinstance(value, list):
        return len(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def counted(n: int, noun: str, plural: str = "") -> str:
    """``n`` and the noun that goes with it: "1 page", "1,261 pages"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


@dataclasses.dataclass(frozen=True)
class KindSpec:
    """Everything the engine needs to know about one kind of job."""

    name: str
    title: str
    run: str  # "module:function", resolved lazily in the worker process
    description: str = ""
    params: tuple[Param, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    concurrency: int | None = None  # at most this many of the kind at once per engine
    timeout: float = 3600.0  # seconds before the job is cancelled, then killed
    rerun_safe: bool = False  # re-queue automatically after an engine crash
    title_fn: Callable[[Mapping[str, Any]], str] | None = None
    diagnostic: bool = False  # shown in `kinds`, hidden from the GUI's menus
    actions: tuple[Action, ...] = ()  # GUI entries; none: a generic "Run <title>…" form
    icon: str = ""
    # the business tables (products, customers, orders) a completed job changed, or a
    # function of its parameters that says so: the app re-reads those tabs
    changes: tuple[str, ...] | Callable[[Mapping[str, Any]], tuple[str, ...]] = ()
    # what a completed job did, from its result: see outcome_text
    outcome: Outcome | None = None
    # what the job's output file is to the user, as in "Click to open the rejected rows
    # (x.rejects.csv)"; empty: the file is named on its own ("x.xlsx is ready")
    output_label: str = ""
    # a click on the job's notification opens the folder holding its output, not the
    # file (a database copy: no desktop program opens it usefully)
    reveal_output: bool = False

    def outcome_text(self, result: Any) -> str:
        """What a completed job of this kind did, in a few words ("5,000 products, 3,000
        customers and 40,000 orders loaded"); "" when the kind has nothing to say.

        ``result`` is the job's stored result.  Rows written by older versions may lack
        keys or hold something else entirely, and the sentence is read while notifying
        and painting: this never raises.  An outcome function that does is a bug in the
        kind, logged, and read as nothing to say.
        """
        if self.outcome is None or not isinstance(result, Mapping) or not result:
            return ""
        try:
            text = self.outcome(result)
        except Exception:  # a sentence must never stop a notification or a repaint
            _log.warning("job kind %r could not describe a result with keys %s", self.name,
                         ", ".join(sorted(map(str, result))), exc_info=True)
            return ""
        return text.strip() if isinstance(text, str) else ""

    def tables_changed(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The business tables a completed job of this kind with ``params`` changed."""
        return tuple(self.changes(params) if callable(self.changes) else self.changes)

    def validate(self, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check and coerce raw parameters; raise :class:`ParamError` naming the problem."""
        raw = dict(raw or {})
        known = {p.name for p in self.params}
        unknown = sorted(set(raw) - known)
        if unknown:
            hint = f"; it takes {', '.join(sorted(known))}" if known else "; it takes none"
            raise ParamError(
                f"kind '{self.name}' has no parameter '{unknown[0]}'{hint}"
            )
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in raw and raw[p.name] is not None and raw[p.name] != "":
                out[p.name] = p.coerce(raw[p.name])
            elif p.required:
                raise ParamError(
                    f"kind '{self.name}' needs parameter '{p.name}' ({p.help or p.type})"
                )
            elif p.default is not None:
                out[p.name] = p.default
        return out

    def make_title(self, params: Mapping[str, Any]) -> str:
        if self.title_fn is not None:
            try:
                return self.title_fn(params)
            except Exception:  # a title must never stop a submit
                return self.title
        return self.title

    def resolve(self) -> TaskFunc:
        module, _, func = self.run.partition(":")
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]

    def transient_types(self) -> tuple[type[BaseException], ...]:
        """The exception types this kind's retry policy names as transient.

        A name that does not resolve is an error in the kind's declaration, not a
        reason to quietly stop retrying: it raises, naming the kind and the name.
        """
        found: list[type[BaseException]] = []
        for ref in self.retry.transient:
            module, _, name = ref.partition(":")
            try:
                found.append(getattr(importlib.import_module(module), name))
            except (ImportError, AttributeError) as exc:
                raise RuntimeError(
                    f"job kind '{self.name}' lists '{ref}' as a transient error type, but "
                    f"it cannot be imported ({exc}); fix the kind's RetryPolicy") from exc
        return tuple(found)

    def describe(self) -> dict[str, Any]:
        """The kind as shown by ``kinds --json``."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "params": [p.describe() for p in self.params],
            "retry": {"max_attempts": self.retry.max_attempts,
                      "backoff_base": self.retry.backoff_base},
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "rerun_safe": self.rerun_safe,
            "diagnostic": self.diagnostic,
        }


_REGISTRY: dict[str, KindSpec] = {}


def task(
    name: str,
    *,
    title: str,
    description: str = "",
    params: Sequence[Param] = (),
    retry: RetryPolicy | None = None,
    concurrency: int | None = None,
    timeout: float = 3600.0,
    rerun_safe: bool = False,
    title_fn: Callable[[Mapping[str, Any]], str] | None = None,
    diagnostic: bool = False,
    actions: Sequence[Action] = (),
    icon: str = "",
    changes: tuple[str, ...] | Callable[[Mapping[str, Any]], tuple[str, ...]] = (),
    outcome: Outcome | None = None,
    output_label: str = "",
    reveal_output: bool = False,
) -> Callable[[TaskFunc], TaskFunc]:
    """Declare a job kind.  The decorated function is the job body.

    ``outcome`` turns a completed job's result into a short sentence for notifications
    and the job registry (see :meth:`KindSpec.outcome_text`); ``output_label`` says what
    the job's output file is, where a bare file name would not ("the rejected rows");
    ``reveal_output`` makes the notification open the output's folder instead of the file.
    """

    def register(func: TaskFunc) -> TaskFunc:
        if name in _REGISTRY and _REGISTRY[name].run != f"{func.__module__}:{func.__qualname__}":
            raise RuntimeError(f"job kind {name!r} is declared twice")
        _REGISTRY[name] = KindSpec(
            name=name,
            title=title,
            description=description or (func.__doc__ or "").strip().split("\n")[0],
            run=f"{func.__module__}:{func.__qualname__}",
            params=tuple(params),
            retry=retry or RetryPolicy(),
            concurrency=concurrency,
            timeout=timeout,
            rerun_safe=rerun_safe,
            title_fn=title_fn,
            diagnostic=diagnostic,
            actions=tuple(actions),
            icon=icon,
            changes=changes,
            outcome=outcome,
            output_label=output_label,
            reveal_output=reveal_output,
        )
        return func

    return register


def registry() -> dict[str, KindSpec]:
    """All declared kinds (importing :mod:`swifty_desktop.tasks` fills it)."""
    return _REGISTRY
