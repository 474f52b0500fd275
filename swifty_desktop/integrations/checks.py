"""Connection checks: try the settings a user typed before a job depends on them.

The Settings dialog's *Test connection* buttons call these (off the GUI thread) with
the values in the form, saved or not.  Each check makes the smallest real contact
that proves the settings work, with the same client and parser the job uses, and a
short timeout:

- :func:`check_supplier` — one authenticated request for one product of the
  WooCommerce shop (:mod:`.woocommerce`);
- :func:`check_smtp` — connect, EHLO, STARTTLS or SSL as chosen, log in when a user
  is set, QUIT (:mod:`.mailer`); never a message;
- :func:`check_rates` — fetch the rates address and parse it (:mod:`.ecb`).

A check never raises for what can go wrong out there: it returns a
:class:`CheckResult` whose message says what happened, to what, and what to do.

``values`` maps setting keys (``"mail.smtp_host"``…) to the values typed.  A secret
is the secret typed, ``None`` for "the one stored in the keyring" (read with
``stored_secret(key)``, on the caller's thread) or ``""`` for none.

Heavy imports (requests, smtplib) happen inside the functions: importing this module
is cheap.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

CHECK_TIMEOUT_S = 10.0  # per connect and per answer: a test is a quick look, not a job

SecretLookup = Callable[[str], str | None]


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What a check found.  ``contacted`` is False when there was nothing to contact
    (the demo supplier, no mail server): ``ok`` then means "nothing is wrong"."""

    ok: bool
    message: str
    contacted: bool = True


def _failed(message: str) -> CheckResult:
    return CheckResult(False, _sentence(message))


def _sentence(text: str) -> str:
    """An error written for a log line ("the supplier at …") as a sentence on screen."""
    text = " ".join(str(text).split())
    if not text:
        return text
    if "://" not in text.split(" ", 1)[0]:  # an address keeps its lower-case scheme
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _text(values: Mapping[str, Any], key: str) -> str:
    value = values.get(key)
    return "" if value is None else str(value).strip()


def _secret(values: Mapping[str, Any], key: str, stored_secret: SecretLookup | None) -> str:
    value = values.get(key)
    if value is None:  # the field was left empty: the secret in the keyring, if any
        return (stored_secret(key) or "") if stored_secret is not None else ""
    return str(value)


# ------------------------------------------------------------------- supplier
def check_supplier(values: Mapping[str, Any], stored_secret: SecretLookup | None = None,
                   *, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
    """Ask the WooCommerce shop for one product, with the key and secret given."""
    mode = _text(values, "supplier.mode") or "demo"
    if mode == "demo":
        return CheckResult(True, "The demo supplier is built into Swifty Desktop and needs no "
                           "connection. Choose the 'custom' supplier to test a WooCommerce "
                           "shop.", contacted=False)
    if mode != "custom":
        return _failed(f"the supplier setting is {mode!r}; choose demo or custom")
    base_url = _text(values, "supplier.base_url")
    if not base_url:
        return _failed("there is no shop address to test: enter the supplier's WooCommerce "
                       "shop address (e.g. https://supplier.example.com), then test again")

    import requests

    from swifty_desktop.integrations.http import HttpPolicy, describe_exception
    from swifty_desktop.integrations.woocommerce import (
        SupplierRejected,
        SupplierUnavailable,
        WooCommerceClient,
    )

    key = _text(values, "supplier.consumer_key")
    secret = _secret(values, "supplier.consumer_secret", stored_secret)
    missing = [name for name, value in (("consumer key (ck_…)", key),
                                        ("consumer secret (cs_…)", secret)) if not value]
    if len(missing) == 1:  # the client's own message speaks of both
        return _failed(f"there is no {missing[0]} to test with, typed or stored: enter the "
                       "one the supplier gave you (WooCommerce › Settings › Advanced › REST "
                       "API)")
    # no request-level retries: the test reports what the shop answers now
    policy = HttpPolicy(connect_timeout=timeout, read_timeout=timeout, retries=0)
    try:
        client = WooCommerceClient(base_url, key, secret, policy=policy, per_page=1)
    except SupplierRejected as exc:  # not a web address, no key or secret
        return _failed(str(exc))
    with client:
        try:
            page = client.fetch_page(1)
        except SupplierRejected as exc:  # 401, 403, 404, TLS, not a product list
            return _failed(str(exc))
        except SupplierUnavailable as exc:
            cause = exc.__cause__
            if cause is not None and _read_timed_out(cause):
                return _failed(
                    f"the shop at {client.base_url} took the connection but sent no answer within "
                    f"{timeout:g} s. The shop may be overloaded: try again in a few minutes, "
                    "and check that the address is the shop's")
            if isinstance(cause, requests.exceptions.ChunkedEncodingError):
                return _failed(
                    f"the shop at {client.base_url} broke off its answer "
                    f"({describe_exception(cause)}). "
                    "Try again in a few minutes; if it keeps happening, ask the supplier "
                    "whether their shop is up")
            if isinstance(cause, requests.exceptions.RequestException):
                return _failed(
                    f"cannot reach {client.base_url}: {describe_exception(cause)}. Check the "
                    "shop address (including https:// or http://) and that this computer is "
                    "online")
            status = re.search(r"HTTP \d{3}(?: \([^)]*\))?", str(exc))
            answer = f"answered {status.group(0)}" if status else "answered with an error"
            return _failed(
                f"the shop at {client.base_url} {answer}: it seems to be down or overloaded "
                "just now. Try again in a few minutes; if it keeps failing, ask the supplier "
                "whether their shop is up")
    # one product per page: a shop that gives only the number of pages gives the count
    total = page.total if page.total is not None else page.total_pages
    if total is None:
        return CheckResult(True, f"Connected to {client.base_url}: the products feed answers "
                           "(the shop does not say how many products it has).")
    return CheckResult(True, f"Connected to {client.base_url}: {total:,} "
                       f"product{'' if total == 1 else 's'}.")


def _read_timed_out(exc: BaseException) -> bool:
    """Whether a requests failure is a server that took the connection and then said
    nothing (requests reports that as a ConnectionError once retries are used up)."""
    import requests
    import urllib3.exceptions as u3

    seen: set[int] = set()
    todo = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, (requests.exceptions.ReadTimeout, u3.ReadTimeoutError)):
            return True
        inner = [getattr(cur, "reason", None), *cur.args, cur.__cause__, cur.__context__]
        todo.extend(e for e in inner if isinstance(e, BaseException))
    return False


# ----------------------------------------------------------------------- mail
SECURITY_NAMES = {"starttls": "STARTTLS", "ssl": "SSL/TLS", "none": "unencrypted"}


def check_smtp(values: Mapping[str, Any], stored_secret: SecretLookup | None = None,
               *, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
    """Connect to the mail server as a batch would, log in if a user is set, QUIT."""
    host = _text(values, "mail.smtp_host")
    if not host:
        return CheckResult(True, "No SMTP server is set, so nothing is sent: e-mail batches "
                           "write each message as an .eml file to the outbox folder (in the "
                           "data folder), where you can open or forward it. Enter your mail "
                           "provider's SMTP server to send them.", contacted=False)
    security = _text(values, "mail.smtp_security") or "starttls"
    if security not in SECURITY_NAMES:
        return _failed(f"the e-mail security setting is {security!r}; choose starttls, ssl "
                       "or none")
    try:
        port = int(values.get("mail.smtp_port") or 0)
    except (TypeError, ValueError):
        return _failed(f"the SMTP port {values.get('mail.smtp_port')!r} is not a number; "
                       "enter one, or 0 for the usual port")
    user = _text(values, "mail.smtp_user")
    password = _secret(values, "mail.smtp_password", stored_secret) if user else ""

    import smtplib

    from swifty_desktop.integrations.mailer import Deferred, SmtpConfig, SmtpTransport
    from swifty_desktop.tasks.base import TaskError

    config = SmtpConfig(host=host, port=port, security=security, user=user,
                        password=password, timeout=timeout)
    try:
        # the batch's own connection steps (EHLO, STARTTLS/SSL, login) and error wording
        conn = SmtpTransport(config).connect()
    except TaskError as exc:  # what the settings must fix: the mailer says what
        return _failed(str(exc))
    except Deferred as exc:
        return _failed(_smtp_hint(config, exc))
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()
    how = SECURITY_NAMES[security]
    login = f", logged in as {user}" if user else "; no user is set, so no login was tried"
    return CheckResult(True, f"Connected to {config.where} ({how}){login}. No message was "
                       "sent.")


def _smtp_hint(config: Any, exc: Exception) -> str:
    """The mailer's reason for a failure it would retry, with what to do about it now."""
    import smtplib
    import socket
    import ssl

    where = config.where
    reason = str(exc)
    causes: list[BaseException] = []  # smtplib wraps a timeout in SMTPServerDisconnected
    inner = exc.__cause__
    while inner is not None and len(causes) < 5:
        causes.append(inner)
        inner = inner.__cause__ or inner.__context__

    def caused_by(*types: type[BaseException]) -> bool:
        return any(isinstance(c, types) for c in causes)

    if caused_by(TimeoutError):
        return (f"no answer from the mail server {where} within {config.timeout:g} s. Check "
                "the server and port; a server that expects 'ssl' (usually port 465) says "
                "nothing while it waits for encryption, so check the security choice too")
    if caused_by(ConnectionRefusedError):
        return (f"{reason}: nothing accepts connections on port {config.effective_port} "
                f"there. Check the server and port (usually 587 for starttls, 465 for ssl)")
    if caused_by(socket.gaierror):
        return (f"{reason}. Check the server name (e.g. smtp.example.com) and that this "
                "computer is online")
    if caused_by(smtplib.SMTPAuthenticationError):
        return (f"{reason}. Try again in a few minutes; if it keeps happening, ask your mail "
                "provider")
    if caused_by(ssl.SSLError):
        return (f"{reason}. Check the security choice and port: 'ssl' is usually port 465, "
                "'starttls' port 587")
    if caused_by(smtplib.SMTPConnectError):
        return f"{reason}. The server is busy or limits connections: try again later"
    return (f"{reason}. Check the server, port and security choice, and that this computer "
            "is online")


# ---------------------------------------------------------------------- rates
def check_rates(url: str, *, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
    """Fetch the rates address and read it as the exchange_rates job does."""
    import requests

    from swifty_desktop.integrations import ecb
    from swifty_desktop.integrations.http import describe_exception
    from swifty_desktop.tasks.base import TaskError, TransientError

    url = (url or "").strip()
    if not url:  # the job reads the ECB's feed then
        url = ecb.ECB_DAILY_URL
    if not url.startswith(("http://", "https://")):
        return _failed(f"the rates address {url!r} is not a web address; enter one starting "
                       f"with https:// (the ECB's is {ecb.ECB_DAILY_URL})")
    try:
        body, content_type = ecb.fetch(url, timeout=timeout, retries=0)
        days = ecb.parse_rates(body, content_type)
    except requests.exceptions.RequestException as exc:
        return _failed(f"cannot reach {url}: {describe_exception(exc)}. Check the address "
                       "and that this computer is online")
    except ecb.FeedFormatError as exc:
        return _failed(f"the rates address {url} is not an ECB euro reference-rates feed "
                       "(eurofxref XML): "
                       f"{exc}. Check the rates address (the ECB's daily feed is "
                       f"{ecb.ECB_DAILY_URL})")
    except TransientError as exc:  # 429 or 5xx: the job would retry; say so for now
        said = str(exc).split("; the job will retry", 1)[0]
        return _failed(f"{said}: the server seems to be down or busy just now. Try again in "
                       "a few minutes")
    except TaskError as exc:  # another HTTP error: the message names the address to fix
        return _failed(str(exc))
    latest = max(days)
    count = len(days[latest])
    more = f" (the feed holds {len(days):,} days)" if len(days) > 1 else ""
    return CheckResult(True, f"Read {count} exchange rate{'' if count == 1 else 's'} for "
                       f"{latest.isoformat()} from {url}{more}.")


def check_rates_settings(values: Mapping[str, Any],
                         stored_secret: SecretLookup | None = None) -> CheckResult:
    """:func:`check_rates` as the Exchange rates settings page declares it."""
    return check_rates(_text(values, "rates.url"))
