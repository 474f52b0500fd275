"""E-mail for batches: templates with placeholders, MIME messages, SMTP and the outbox.

Templates use ``{placeholder}`` (``{{`` and ``}}`` for literal braces).  Each
message has a plain-text and an HTML part; in the HTML part every value is
escaped and ``{orders}`` becomes a table.

:class:`SmtpTransport` speaks SMTP step by step (MAIL, RCPT, DATA) instead of
``sendmail`` so that it knows exactly when a message may have been accepted: the
caller's ``before_data`` hook runs after the server said 354 and before the
message is transmitted (the batch records the recipient as ``sending`` there);
the message then goes out without its final ``<CRLF>.<CRLF>``, the caller's
``before_dot`` hook runs (the batch records ``dot_pending``), and only then the
final dot, at which the server accepts the message.  A failure is reported as
:class:`Deferred` with ``ambiguous=True`` only when the final dot went out and no
answer came back — the one case where the server may have accepted a message we
could not confirm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.policy
import email.utils
import html
import os
import re
import secrets
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from swifty_desktop.tasks.base import TaskError

SETTINGS_HINT = "Settings › E-mail"

# ------------------------------------------------------------------- templates
PLACEHOLDERS: dict[str, str] = {
    "name": "the customer's full name",
    "first_name": "the customer's first name",
    "email": "the customer's e-mail address",
    "country": "the customer's country code",
    "customer_id": "the customer's number",
    "shop_name": "your shop's name (the From name in Settings › E-mail)",
    "orders": "the customer's open orders (a table in the HTML part)",
    "order_count": "how many open orders the customer has",
    "open_total": "the total of the customer's open orders",
    "today": "today's date",
}

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclasses.dataclass(frozen=True)
class Template:
    name: str
    subject: str
    text: str
    html: str | None = None  # None: made from the text

    def placeholders(self) -> set[str]:
        found: set[str] = set()
        for part in (self.subject, self.text, self.html or ""):
            found.update(m.group(1) for m in _TOKEN.finditer(part) if m.group(1))
        return found

    def check(self) -> None:
        unknown = sorted(self.placeholders() - set(PLACEHOLDERS))
        if unknown:
            raise TaskError(
                f"the e-mail template {self.name!r} uses the placeholder "
                f"{{{unknown[0]}}}, which does not exist; the placeholders are "
                + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                + ". Correct the template and run the batch again.")


BUILTIN_TEMPLATES: dict[str, Template] = {
    "order_status": Template(
        "order_status",
        "Your open orders at {shop_name}",
        "Hello {first_name},\n\n"
        "here is an update on your open orders with {shop_name}:\n\n"
        "{orders}\n\n"
        "Open total: {open_total}\n\n"
        "We will let you know as soon as they ship. Questions? Just reply to this message.\n\n"
        "Best regards,\n{shop_name}\n",
    ),
    "newsletter": Template(
        "newsletter",
        "News from {shop_name}",
        "Hello {first_name},\n\n"
        "thank you for staying in touch with {shop_name}! Our catalog has just been updated "
        "with new products and prices from our suppliers: have a look at what is new.\n\n"
        "You receive this message because you asked for news from {shop_name}. Reply to "
        "this message if you would rather not receive it any more.\n\n"
        "Best regards,\n{shop_name}\n",
    ),
}


def load_template(name: str, path: str | None = None) -> Template:
    """A built-in template, or one from a file (first line ``Subject: ...``).

    A file ``x.txt`` may have an ``x.html`` beside it for the HTML part.
    """
    if path:
        file = Path(path).expanduser()
        try:
            raw = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TaskError(f"cannot read the e-mail template {file}: "
                            f"{getattr(exc, 'strerror', None) or exc}. Choose a UTF-8 text "
                            "file whose first line is 'Subject: …'.") from exc
        first, _, body = raw.partition("\n")
        if not first.lower().startswith("subject:"):
            raise TaskError(f"the e-mail template {file} does not start with a 'Subject: …' "
                            "line; add one (then a blank line, then the message text)")
        html_file = file.with_suffix(".html")
        html_part = html_file.read_text(encoding="utf-8") if html_file.is_file() and \
            html_file != file else None
        template = Template(file.name, first[8:].strip(), body.lstrip("\r\n"), html_part)
    else:
        try:
            template = BUILTIN_TEMPLATES[name]
        except KeyError:
            raise TaskError(f"there is no e-mail template {name!r}; the built-in ones are "
                            + ", ".join(sorted(BUILTIN_TEMPLATES))) from None
    template.check()
    return template


def render(template: str, values: Mapping[str, str],
           escape: Callable[[str], str] = lambda s: s) -> str:
    """Fill ``{placeholders}``; literal text goes through ``escape``, values do not."""
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(template):
        out.append(escape(template[pos:m.start()]))
        token = m.group(0)
        out.append(escape(token[0]) if token in ("{{", "}}") else values[m.group(1)])
        pos = m.end()
    out.append(escape(template[pos:]))
    return "".join(out)


def _text_to_html(template: str, values: Mapping[str, str]) -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", template.strip()) if p.strip()]
    body = "\n".join(
        '<div style="margin:0 0 1em 0">'
        + render(p.strip(), values, html.escape).replace("\n", "<br>\n") + "</div>"
        for p in paragraphs)
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
            '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222">\n'
            f"{body}\n</body></html>\n")


def money(cents: int, currency: str) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}{cents // 100:,}.{cents % 100:02d} {currency}"


@dataclasses.dataclass(frozen=True)
class OrderInfo:
    number: str
    order_date: str
    total_cents: int
    currency: str
    status: str


def placeholder_values(customer: Mapping[str, Any], orders: Sequence[OrderInfo],
                       shop_name: str, today: str) -> tuple[dict[str, str], dict[str, str]]:
    """(text values, HTML values) for one recipient."""
    name = str(customer.get("name") or "").strip()
    first = name.split()[0] if name else "customer"
    totals: dict[str, int] = {}
    for o in orders:
        totals[o.currency] = totals.get(o.currency, 0) + o.total_cents
    open_total = " + ".join(money(v, k) for k, v in sorted(totals.items())) or money(0, "EUR")
    if orders:
        orders_text = "\n".join(f"  Order {o.number} of {o.order_date}: "
                                f"{money(o.total_cents, o.currency)} ({o.status})" for o in orders)
        rows = "".join(
            f"<tr><td style=\"padding:2px 12px 2px 0\">{html.escape(o.number)}</td>"
            f"<td style=\"padding:2px 12px 2px 0\">{html.escape(o.order_date)}</td>"
            f"<td style=\"padding:2px 12px 2px 0;text-align:right\">"
            f"{html.escape(money(o.total_cents, o.currency))}</td>"
            f"<td>{html.escape(o.status)}</td></tr>" for o in orders)
        orders_html = ('<table style="border-collapse:collapse"><tr><th align="left">Order</th>'
                       '<th align="left">Date</th><th align="right">Total</th>'
                       f'<th align="left">Status</th></tr>{rows}</table>')
    else:
        orders_text = "  (no open orders)"
        orders_html = "<em>(no open orders)</em>"
    text = {
        "name": name, "first_name": first, "email": str(customer.get("email") or ""),
        "country": str(customer.get("country") or ""),
        "customer_id": str(customer.get("id") or ""), "shop_name": shop_name,
        "orders": orders_text, "order_count": str(len(orders)), "open_total": open_total,
        "today": today,
    }
    html_values = {k: html.escape(v) for k, v in text.items()}
    html_values["orders"] = orders_html
    return text, html_values


# -------------------------------------------------------------------- messages
def new_message_id(batch_key: str, domain: str) -> str:
    """A globally unique Message-ID (kept in the ledger, reused if the message is re-sent).

    Short enough that the header is never folded (some parsers mishandle that).
    """
    return f"<{secrets.token_hex(12)}.{batch_key}@{domain or 'localhost'}>"


def build_message(template: Template, text_values: Mapping[str, str],
                  html_values: Mapping[str, str], *, from_addr: str, to_name: str,
                  to_addr: str, message_id: str, batch_key: str) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = " ".join(render(template.subject, text_values).split())
    msg["From"] = from_addr
    msg["To"] = email.utils.formataddr((to_name, to_addr)) if to_name else to_addr
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = message_id
    msg["X-Swifty-Batch"] = batch_key
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render(template.text, text_values))
    if template.html is not None:
        html_body = render(template.html, html_values, lambda s: s)
    else:
        html_body = _text_to_html(template.text, html_values)
    msg.add_alternative(html_body, subtype="html")
    return msg


# ------------------------------------------------------------------ transports
class Deferred(Exception):
    """Not delivered now, may work later (4xx, dropped connection, server down).

    ``ambiguous``: the whole message went out and no answer came back, so the server
    may have accepted it.  ``recipient_only``: the server deferred this one
    recipient (a 45x to RCPT, e.g. a full mailbox or greylisting) and the
    connection is fine for the others.
    """

    def __init__(self, reason: str, *, ambiguous: bool = False,
                 recipient_only: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ambiguous = ambiguous
        self.recipient_only = recipient_only


class Rejected(Exception):
    """The server refused this recipient or message for good (5xx)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 0  # 0: the usual port for the security mode
    security: str = "starttls"  # none | starttls | ssl
    user: str = ""
    password: str = ""
    from_addr: str = ""
    timeout: float = 30.0

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return {"ssl": 465, "starttls": 587}.get(self.security, 25)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.effective_port}"


def _reply(code: int, msg: bytes | str) -> str:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    return f"{code} {' '.join(text.split())}".strip()


class SmtpTransport:
    """One SMTP connection, reused for many messages; reconnects after failures."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._conn: smtplib.SMTP | None = None

    # -- connection ---------------------------------------------------------
    def connect(self) -> smtplib.SMTP:
        """A connection ready to send: connected, EHLO, STARTTLS or SSL as configured,
        logged in if a user is set.  TaskError (fix the settings) or Deferred (try
        later) otherwise — and then no socket is left open."""
        opened: list[smtplib.SMTP] = []
        try:
            return self._connect(opened)
        except BaseException:
            for conn in opened:
                with contextlib.suppress(Exception):
                    conn.close()
            raise

    def _connect(self, opened: list[smtplib.SMTP]) -> smtplib.SMTP:
        cfg = self.config
        where = cfg.where
        try:
            if cfg.security == "ssl":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.effective_port, timeout=cfg.timeout,
                    context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(cfg.host, cfg.effective_port, timeout=cfg.timeout)
            opened.append(conn)  # closed by connect() if a later step fails
            conn.ehlo_or_helo_if_needed()
            if cfg.security == "starttls":
                if not conn.has_extn("starttls"):
                    conn.close()
                    raise TaskError(
                        f"the mail server {where} does not offer STARTTLS, so the password "
                        f"and messages would travel unencrypted. In {SETTINGS_HINT} choose "
                        "security 'ssl' (usually port 465) or, only for a server on your "
                        "own network, 'none'.")
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if cfg.user:
                if not cfg.password:
                    conn.close()
                    raise TaskError(
                        f"no password is stored for the mail user {cfg.user!r}; enter it in "
                        f"{SETTINGS_HINT} (it is kept in the system keyring)")
                conn.login(cfg.user, cfg.password)
        except smtplib.SMTPAuthenticationError as exc:
            if exc.smtp_code < 500:  # e.g. 454: the server's password check is down
                raise Deferred(
                    f"the mail server {where} could not check the login of {cfg.user!r} "
                    f"just now ({_reply(exc.smtp_code, exc.smtp_error)})") from exc
            raise TaskError(
                f"the mail server {where} refused the user {cfg.user!r} and its password "
                f"({_reply(exc.smtp_code, exc.smtp_error)}); check them in {SETTINGS_HINT}"
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise TaskError(f"the mail server {where} does not support logging in ({exc}); "
                            f"clear the user in {SETTINGS_HINT} or use another server") from exc
        except ssl.SSLCertVerificationError as exc:
            raise TaskError(f"the mail server {where} presented a certificate that cannot be "
                            f"trusted ({exc.verify_message}); check the server name in "
                            f"{SETTINGS_HINT}") from exc
        except smtplib.SMTPConnectError as exc:
            if exc.smtp_code >= 500:  # a 554 greeting: this server will not serve us
                raise TaskError(
                    f"the mail server {where} refuses to take mail from this computer "
                    f"({_reply(exc.smtp_code, exc.smtp_error)}). Check the server and port "
                    f"in {SETTINGS_HINT}, or ask the mail provider whether this address "
                    "may send through it.") from exc
            raise Deferred(f"the mail server {where} would not take a connection "
                           f"({_reply(exc.smtp_code, exc.smtp_error)})") from exc
        except ssl.SSLError as exc:
            if isinstance(exc, ssl.SSLEOFError):  # dropped during the handshake
                raise Deferred(f"the connection to the mail server {where} broke during "
                               f"the encryption handshake ({exc})") from exc
            raise TaskError(
                f"a secure connection to the mail server {where} failed ({exc.reason or exc})."
                f" Check the security setting and port in {SETTINGS_HINT}: 'ssl' is usually "
                "port 465, 'starttls' port 587.") from exc
        except socket.gaierror as exc:
            raise Deferred(f"the mail server name {cfg.host!r} could not be resolved "
                           f"({exc.strerror or exc})") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise Deferred(f"cannot reach the mail server {where} "
                           f"({getattr(exc, 'strerror', None) or exc or type(exc).__name__})"
                           ) from exc
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    # -- one message ---------------------------------------------------------
    def send(self, msg: EmailMessage, from_addr: str, to_addr: str,
             before_data: Callable[[], None], before_dot: Callable[[], None]) -> str:
        """Send one message; return the server's reply.  Raises Deferred or Rejected.

        ``before_data`` runs after the server accepted MAIL, RCPT and DATA (354) and
        before the message is transmitted; ``before_dot`` after the message went out
        and before the final ``<CRLF>.<CRLF>``.  If either raises, the connection is
        closed without the final dot, so the server discards the message.
        """
        where = self.config.where
        if self._conn is None:
            self._conn = self.connect()
        conn = self._conn
        payload = msg.as_bytes(policy=email.policy.SMTP)
        payload = re.sub(rb"(?m)^\.", b"..", payload)
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        end = b"\r\n.\r\n"
        try:
            code, resp = conn.mail(from_addr)
            if code >= 500:
                self._reset()
                raise TaskError(
                    f"the mail server {where} refused the sender address {from_addr!r} "
                    f"({_reply(code, resp)}); use an address this server may send from, in "
                    f"{SETTINGS_HINT}")
            if code >= 400:
                self._drop()
                raise Deferred(f"the mail server {where} answered MAIL with {_reply(code, resp)}")
            code, resp = conn.rcpt(to_addr)
            if code >= 500:
                self._reset()
                raise Rejected(f"the mail server refused the recipient: {_reply(code, resp)}")
            if 450 <= code < 460:  # this mailbox, not the server: the others can go on
                self._reset()
                raise Deferred(f"the mail server {where} deferred this recipient: "
                               f"{_reply(code, resp)}", recipient_only=True)
            if code >= 400:
                self._drop()
                raise Deferred(f"the mail server {where} answered RCPT with {_reply(code, resp)}")
            code, resp = conn.docmd("DATA")
            if code != 354:
                if code >= 500:
                    self._reset()
                    raise Rejected(f"the mail server refused the message: {_reply(code, resp)}")
                self._drop()
                raise Deferred(f"the mail server {where} answered DATA with {_reply(code, resp)}")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise Deferred(f"the connection to the mail server {where} broke "
                           f"({exc or type(exc).__name__})") from exc
        try:
            before_data()
        except BaseException:
            self._drop()  # closing without the final dot: the server discards the message
            raise
        try:
            conn.send(payload)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()  # the final dot did not go out: nothing was accepted
            raise Deferred(f"the connection to the mail server {where} broke while sending "
                           f"({exc or type(exc).__name__})") from exc
        try:
            before_dot()
        except BaseException:
            self._drop()
            raise
        try:
            conn.send(end)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # a failed write queued nothing: the server never saw the final dot
            self._drop()
            raise Deferred(f"the connection to the mail server {where} broke before the end "
                           f"of the message went out ({exc or type(exc).__name__})") from exc
        try:
            code, resp = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            why = exc or type(exc).__name__
            raise Deferred(f"the connection to the mail server {where} broke after the message "
                           f"was sent, before the server confirmed it ({why})",
                           ambiguous=True) from exc
        if code == 250:
            return _reply(code, resp)
        if code >= 500:
            raise Rejected(f"the mail server refused the message: {_reply(code, resp)}")
        self._drop()
        raise Deferred(f"the mail server {where} did not take the message: {_reply(code, resp)}")

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()


class OutboxTransport:
    """Writes each message as an ``.eml`` file: temp file, fsync, then rename into place."""

    TEMP_MARK = ".part-"
    LEFTOVER_AGE_S = 600.0  # a temp file this old is no write in progress (they take ms)

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def remove_leftovers(self) -> list[Path]:
        """Delete temp files a killed batch left behind; return them.

        A temp file is ``.<name>.part-<pid>``; it is left over when its process is
        gone, or (where that cannot be checked) when it is older than any write.
        """
        removed = []
        now = time.time()
        for temp in self.folder.glob(f".*.eml{self.TEMP_MARK}*"):
            pid_text = temp.name.rsplit(self.TEMP_MARK, 1)[1]
            try:
                pid = int(pid_text)
                age = now - temp.stat().st_mtime
            except (ValueError, OSError):
                continue
            if pid == os.getpid() or (_process_alive(pid) and age < self.LEFTOVER_AGE_S):
                continue
            try:
                temp.unlink()
            except OSError:
                continue
            removed.append(temp)
        return removed

    def path_for(self, name: str) -> Path:
        return self.folder / name

    def exists(self, name: str) -> bool:
        return self.path_for(name).exists()

    def send(self, msg: EmailMessage, name: str, before_write: Callable[[], None]) -> Path:
        final = self.path_for(name)
        if final.exists():
            return final
        before_write()
        temp = self.folder / f".{name}{self.TEMP_MARK}{os.getpid()}"
        try:
            with open(temp, "wb") as fh:
                fh.write(msg.as_bytes(policy=email.policy.SMTP))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, final)
        except OSError as exc:
            try:
                temp.unlink()
            except OSError:
                pass
            raise TaskError(f"cannot write {final}: {exc.strerror or exc}; check that the "
                            "data folder's outbox is writable and the disk is not full") from exc
        return final


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs (True where that cannot be told)."""
    if os.name != "posix":
        return True  # the age rule alone decides there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def eml_name(batch_key: str, ledger_id: int, recipient: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", recipient)[:80]
    return f"{batch_key}-{ledger_id:06d}-{safe}.eml"


class Pacer:
    """At most ``per_minute`` messages a minute (evenly spaced); 0: no limit."""

    def __init__(self, per_minute: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 60.0 / per_minute if per_minute and per_minute > 0 else 0.0
        self._next = 0.0
        self._sleep = sleep

    def wait(self, check: Callable[[], None] | None = None) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        while now < self._next:
            if check is not None:
                check()
            self._sleep(min(0.2, self._next - now))
            now = time.monotonic()
        self._next = max(now, self._next) + self.interval
