"""One HTTP session for a job: timeouts, request-level retries, a count of retries.

Transient failures — connection errors and resets, timeouts, 429 (honouring
``Retry-After``), 500, 502, 503 and 504 — are retried by urllib3 with exponential
back-off before a caller ever sees them.  What still fails after that is the
caller's to report (usually as a :class:`~swifty_desktop.tasks.TransientError`, so
that the engine retries the whole job later).

A ``Retry-After`` longer than :data:`RETRY_AFTER_MAX_S` is not slept through: the
request stops retrying at once and the caller gets that answer, reads the wait
with :func:`retry_after_of` and raises ``TransientError(..., retry_after=S)``, so
the engine retries the job no earlier than the server asked while the worker
process is free for other jobs.
"""

from __future__ import annotations

import dataclasses
import email.utils
import re
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from swifty_desktop import __version__ as _version

USER_AGENT = f"SwiftyDesktop/{_version}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A server asking us to come back much later is better served by the engine's own
# (non-blocking) job retry than by a worker process sleeping for it.
RETRY_AFTER_MAX_S = 60
RETRY_AFTER_STATUSES = frozenset({429, 503})  # the answers whose Retry-After callers honour


@dataclasses.dataclass(frozen=True)
class HttpPolicy:
    """Timeouts and retries for one job's requests."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 5  # retries per request (not counting the first try)
    backoff: float = 0.5  # seconds; doubles per consecutive failure, capped below
    backoff_max: float = 10.0

    @property
    def timeout(self) -> tuple[float, float]:
        return (min(self.connect_timeout, self.read_timeout), self.read_timeout)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` value (delta-seconds or an HTTP date) asks to wait.

    None when there is no value or it cannot be read.
    """
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):
        return float(int(value))
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed)) - time.time())


def retry_after_of(response: Any) -> float | None:
    """The ``Retry-After`` of a response (requests or urllib3) in seconds, if any."""
    headers = getattr(response, "headers", None) or {}
    return retry_after_seconds(headers.get("Retry-After"))


class _Retry(Retry):
    """urllib3's Retry that gives up at once on a ``Retry-After`` above the cap.

    Sleeping through a long wait would hold the worker process; the caller turns
    the answer into a job-level retry that waits (see the module doc).
    """

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None,
                  _pool: Any = None, _stacktrace: Any = None) -> Retry:
        wait = None
        if response is not None and error is None and \
                getattr(response, "status", None) in RETRY_AFTER_STATUSES:
            wait = retry_after_of(response)
        if wait is not None and wait > RETRY_AFTER_MAX_S:
            from urllib3.exceptions import MaxRetryError, ResponseError

            # MaxRetryError is urllib3's "stop retrying"; with raise_on_status=False
            # the caller receives this very response
            raise MaxRetryError(_pool, url or "", ResponseError(  # type: ignore[arg-type]
                f"Retry-After {wait:.0f} s is longer than {RETRY_AFTER_MAX_S} s"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def parse_retry_after(self, retry_after: str) -> float:
        return float(min(super().parse_retry_after(retry_after), RETRY_AFTER_MAX_S))


def make_retry(policy: HttpPolicy) -> Retry:
    import inspect

    accepted = inspect.signature(Retry.__init__).parameters
    extra: dict[str, Any] = {}
    if "backoff_max" in accepted:  # urllib3 >= 2.0; 1.26 caps at 120 s by itself
        extra["backoff_max"] = policy.backoff_max
    return _Retry(
        total=policy.retries,
        connect=policy.retries,
        read=policy.retries,
        status=policy.retries,
        other=0,
        redirect=5,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=policy.backoff,
        respect_retry_after_header=True,
        raise_on_status=False,  # the caller gets the last answer and explains it
        raise_on_redirect=True,
        **extra,
    )


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this computer (the demo supplier, a local test feed)."""
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Session(requests.Session):
    """A Session that never sends loopback requests through a proxy.

    With ``HTTP_PROXY`` set and no ``NO_PROXY``, requests would hand 127.0.0.1 to
    the proxy, which cannot reach this computer's own servers (the built-in demo
    supplier among them).
    """

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert)
        if url and is_loopback(str(url)):
            settings["proxies"] = {}
        return settings


def make_session(policy: HttpPolicy, *, auth: tuple[str, str] | None = None,
                 accept: str = "application/json") -> requests.Session:
    """A Session whose every request retries transient failures (see module doc)."""
    session = _Session()
    adapter = HTTPAdapter(max_retries=make_retry(policy), pool_connections=2, pool_maxsize=2)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = accept
    if auth is not None:
        session.auth = auth
    return session


def retries_of(response: requests.Response) -> int:
    """How many times urllib3 retried to get this response."""
    raw: Any = getattr(response, "raw", None)
    history = getattr(getattr(raw, "retries", None), "history", None) or ()
    return len(history)


def describe_exception(exc: BaseException) -> str:
    """A short human reason for a requests/urllib3 failure (no stack, no repr soup)."""
    import urllib3.exceptions as u3

    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    reasons: list[BaseException] = []
    while todo:  # every exception this one wraps: reason, args, cause, context
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        reasons.append(cur)
        inner = [getattr(cur, "reason", None), *cur.args, cur.__cause__, cur.__context__]
        todo.extend(e for e in inner if isinstance(e, BaseException))
    for r in reasons:  # the operating system's own reasons say the most
        if isinstance(r, ConnectionRefusedError):
            return "connection refused (nothing is listening there)"
        if isinstance(r, ConnectionResetError):
            return "the connection was reset"
        if isinstance(r, u3.NameResolutionError):
            return "the host name could not be resolved"
    for r in reasons:
        if isinstance(r, (u3.ReadTimeoutError, requests.exceptions.ReadTimeout)):
            return "no answer within the read timeout"
        # (urllib3's NewConnectionError subclasses ConnectTimeoutError: not a timeout)
        if isinstance(r, (u3.ConnectTimeoutError, requests.exceptions.ConnectTimeout)) and \
                not isinstance(r, u3.NewConnectionError):
            return "could not connect within the connect timeout"
    for r in reasons:
        if isinstance(r, u3.ResponseError):
            return str(r)
    root = reasons[-1]
    text = str(root) or type(root).__name__
    return text if len(text) < 200 else text[:197] + "…"
