"""Real servers on loopback that tests start themselves: HTTP (a WooCommerce-style shop
and a static file server) with injected faults, and SMTP (aiosmtpd) with scripted
4xx/5xx answers and dropped connections.  Nothing here mocks a client library.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import socket
import struct
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------ HTTP
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that timed out and left is expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:  # noqa: N802
        self.server.owner.handle(self)

    # helpers for owners
    def reply(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def reset(self) -> None:
        """Abort the connection with a TCP RST, without any answer."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


class LoopbackHTTP:
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread; subclasses answer."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackHTTP:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, h: _Handler) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class StaticServer(LoopbackHTTP):
    """Serves fixed answers by path: ``routes[path] = (status, content type, body)``.

    ``fail(path, *faults)`` queues faults for the next requests of that path, one per
    request: an HTTP status such as ``"503"`` (with ``"503:N"``: Retry-After N) or
    ``"stall:S"`` (no answer for S seconds).  ``hits`` lists every request's path,
    ``log`` every ``(time, path, what was answered)``.
    """

    def __init__(self, routes: dict[str, tuple[int, str, bytes]]) -> None:
        super().__init__()
        self.routes = routes
        self.hits: list[str] = []
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.log: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def fail(self, path: str, *faults: str) -> None:
        with self._lock:
            self.faults[path].extend(faults)

    def handle(self, h: _Handler) -> None:
        path = urlsplit(h.path).path
        with self._lock:
            self.hits.append(path)
            fault = self.faults[path].pop(0) if self.faults[path] else None
            self.log.append((time.time(), path, fault or "ok"))
        if fault is not None:
            name, _, arg = fault.partition(":")
            if name == "stall":
                time.sleep(float(arg))
                h.close_connection = True
                return
            h.reply(int(name), b"temporarily unavailable", "text/plain",
                    {"Retry-After": arg} if arg else None)
            return
        status, ctype, body = self.routes.get(path, (404, "text/plain", b"not found"))
        h.reply(status, body, ctype)


def woo_product(i: int, *, price: str | None = None, stock: int | None = 7,
                status: str = "publish", category: str = "Gadgets") -> dict[str, Any]:
    """A product in WooCommerce's JSON shape."""
    return {
        "id": 500 + i, "name": f"Test product {i} &amp; co", "type": "simple",
        "status": status, "sku": f"TP-{i:03d}",
        "price": price if price is not None else f"{i}.{i % 100:02d}",
        "regular_price": price if price is not None else f"{i}.{i % 100:02d}",
        "stock_quantity": stock, "manage_stock": stock is not None,
        "stock_status": "instock" if stock else "outofstock",
        "categories": [{"id": 3, "name": category, "slug": category.lower()}],
    }


class WooShop(LoopbackHTTP):
    """A WooCommerce REST v3 products endpoint with Basic auth and injectable faults.

    ``fail(page, *faults)`` queues faults for the next requests of that page, one per
    request: ``"503"``, ``"500"``, ``"502"``, ``"504"``, ``"429:N"`` (Retry-After N),
    ``"403"`` (a key without read permission),
    ``"reset"`` (TCP RST, no answer), ``"stall:S"`` (no answer for S seconds),
    ``"stall_body:S"`` (headers and half the body, then S seconds of silence).
    ``down_pages`` answer 503 for as long as they are listed.
    """

    API = "/wp-json/wc/v3/products"

    def __init__(self, products: list[dict[str, Any]], key: str = "ck_test_key",
                 secret: str = "cs_test_secret", page_delay: float = 0.0,
                 paging: str = "both") -> None:
        super().__init__()
        self.paging = paging  # "both" headers, or only the "link" one
        self.products = products
        self.credentials = f"{key}:{secret}".encode()
        self.key, self.secret = key, secret
        self.page_delay = page_delay
        self.faults: dict[int, list[str]] = defaultdict(list)
        self.down_pages: set[int] = set()
        self.log: list[tuple[float, int, str]] = []  # (time, page, what happened)
        self._lock = threading.Lock()

    def fail(self, page: int, *faults: str) -> None:
        with self._lock:
            self.faults[page].extend(faults)

    def served_pages(self, since: float = 0.0) -> list[int]:
        """Pages answered with 200, in order."""
        with self._lock:
            return [p for t, p, what in self.log if what == "200" and t >= since]

    def handle(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        if parts.path != self.API:
            h.reply(404, json.dumps({"code": "rest_no_route", "message": "No route was found "
                                     "matching the URL and request method.",
                                     "data": {"status": 404}}).encode())
            return
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Basic ") or base64.b64decode(auth[6:]) != self.credentials:
            with self._lock:
                self.log.append((time.time(), 0, "401"))
            h.reply(401, json.dumps({"code": "woocommerce_rest_authentication_error",
                                     "message": "Consumer secret is invalid.",
                                     "data": {"status": 401}}).encode())
            return
        query = parse_qs(parts.query)
        page = int(query.get("page", ["1"])[0])
        per_page = int(query.get("per_page", ["10"])[0])
        with self._lock:
            fault = self.faults[page].pop(0) if self.faults[page] else None
            if fault is None and page in self.down_pages:
                fault = "503"
            self.log.append((time.time(), page, fault or "200"))
        if fault is not None:
            self._inject(h, fault)
            return
        if self.page_delay:
            time.sleep(self.page_delay)
        products = list(self.products)
        pages = max(1, -(-len(products) // per_page))
        chunk = products[(page - 1) * per_page: page * per_page]
        headers = {"X-WP-Total": str(len(products)), "X-WP-TotalPages": str(pages)}
        if self.paging == "link":
            headers = {}
        if page < pages:
            headers["Link"] = (f'<{self.base_url}{self.API}?page={page + 1}&per_page={per_page}>;'
                               ' rel="next"')
        h.reply(200, json.dumps(chunk).encode(), "application/json; charset=UTF-8", headers)

    @staticmethod
    def _inject(h: _Handler, fault: str) -> None:
        name, _, arg = fault.partition(":")
        if name in ("500", "502", "503", "504"):
            h.reply(int(name), b'{"code":"error","message":"temporarily unavailable"}')
        elif name == "429":
            h.reply(429, b'{"code":"too_many_requests","message":"slow down"}',
                    headers={"Retry-After": arg or "1"})
        elif name == "403":
            h.reply(403, json.dumps({"code": "woocommerce_rest_cannot_view",
                                     "message": "Sorry, you cannot list resources.",
                                     "data": {"status": 403}}).encode())
        elif name == "reset":
            h.reset()
        elif name == "stall":
            time.sleep(float(arg))
            h.close_connection = True
        elif name == "stall_body":
            body = b"[" + b" " * 2000 + b"]"
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[:1000])
            h.wfile.flush()
            time.sleep(float(arg))
            h.close_connection = True
        else:  # pragma: no cover - a typo in a test
            raise ValueError(fault)


# ------------------------------------------------------------------------ SMTP
class MailServer:
    """An aiosmtpd server on loopback that records messages and misbehaves on cue.

    ``script[(stage, recipient)]`` is a list of answers used one per occurrence:
    stage ``"rcpt"`` or ``"data"``; answers are SMTP replies (``"421 …"``,
    ``"550 …"``), ``"drop"`` (close the connection without answering) or, for
    ``"data"``, ``"store_then_drop"`` (keep the message, then close without the
    250: the ambiguous case).  ``drop_mail`` holds the numbers (1-based, counted
    over the server's life) of MAIL commands to answer by closing the connection.

    ``auth_reply`` answers every AUTH with that reply (e.g. ``"454 4.7.0 …"``);
    ``greeting`` replaces the ``220`` greeting (e.g. ``"554 5.7.1 …"``); ``tls`` is
    ``(mode, cert file, key file)`` with mode ``"starttls"`` (required before MAIL)
    or ``"ssl"`` (TLS from the first byte).
    """

    def __init__(self, port: int | None = None, *, auth: tuple[str, str] | None = None,
                 delay: float = 0.0, auth_reply: str | None = None,
                 greeting: str | None = None, tls: tuple[str, Any, Any] | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.auth = auth
        self.auth_reply = auth_reply
        self.greeting = greeting
        self.tls = tls
        self.tls_sessions = 0  # MAIL commands that arrived over TLS
        self.delay = delay
        self.script: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.drop_mail: set[int] = set()
        self.mail_count = 0
        self.messages: list[dict[str, Any]] = []
        self.logins: list[str] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    # aiosmtpd handler hooks ------------------------------------------------------
    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # noqa: N802
        with self._lock:
            self.mail_count += 1
            drop = self.mail_count in self.drop_mail
        if drop:
            server.transport.abort()
            return "421 gone"  # never reaches the client
        if self.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if server.transport.get_extra_info("sslcontext") is not None:
            with self._lock:
                self.tls_sessions += 1
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # noqa: N802
        answer = self._next("rcpt", address)
        if answer == "drop":
            server.transport.abort()
            return "421 gone"
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.delay:
            await asyncio.sleep(self.delay)
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        answer = self._next("data", rcpt)
        if answer == "drop":
            server.transport.abort()
            return "421 gone"
        if answer and answer != "store_then_drop":
            return answer
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append({"to": list(envelope.rcpt_tos), "from": envelope.mail_from,
                                  "message_id": msg["Message-ID"], "subject": msg["Subject"],
                                  "msg": msg, "at": time.monotonic()})
        if answer == "store_then_drop":
            server.transport.abort()
            return "421 gone"
        return "250 OK"

    def _next(self, stage: str, recipient: str) -> str | None:
        with self._lock:
            queue = self.script.get((stage, recipient))
            return queue.pop(0) if queue else None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if self.auth_reply:
            return AuthResult(success=False, handled=False, message=self.auth_reply)
        ok = (isinstance(auth_data, LoginPassword) and self.auth is not None and
              (auth_data.login.decode(), auth_data.password.decode()) == self.auth)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    # control -----------------------------------------------------------------------
    def start(self) -> MailServer:
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {}
        if self.auth is not None or self.auth_reply:
            # (aiosmtpd warns about auth_required without TLS; MAIL enforces it instead)
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        if self.tls is not None:
            import ssl

            mode, cert, key = self.tls
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert), str(key))
            if mode == "ssl":
                kwargs["ssl_context"] = context
            else:
                kwargs.update(tls_context=context, require_starttls=True)
        greeting = self.greeting

        class _Controller(Controller):
            def factory(self) -> Any:
                from aiosmtpd.smtp import SMTP

                class _SMTP(SMTP):
                    _greeted = False

                    async def push(self, status: Any) -> None:
                        if greeting and not self._greeted and str(status).startswith("220 "):
                            self._greeted = True
                            status = greeting
                        await super().push(status)

                return _SMTP(self.handler, **self.SMTP_kwargs)

        self._controller = _Controller(self, hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self) -> dict[str, int]:
        """Messages received per recipient."""
        counts: dict[str, int] = defaultdict(int)
        with self._lock:
            for m in self.messages:
                for r in m["to"]:
                    counts[r] += 1
        return dict(counts)


def self_signed_cert(folder: Any, host: str = "127.0.0.1") -> tuple[Any, Any]:
    """A self-signed certificate (its own CA) for ``host``; (cert file, key file).

    Put the cert file in ``SSL_CERT_FILE`` to make a process trust it.
    """
    import datetime as dt
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = Path(folder)
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class SmtpProxy:
    """A TCP proxy on loopback in front of a :class:`MailServer` that breaks the
    transfer of one message on cue — the network faults aiosmtpd cannot script,
    because its hooks run only once a whole message has arrived.

    ``fault(recipient, mode)`` arms one fault for the next message to ``recipient``:

    * ``"reset_body"``: once the first bytes of the message are through, reset the
      client's connection and close the server's (the server never sees the final
      dot, so it discards the message);
    * ``"stall_body"``: pass the first bytes of the message, then stop reading from
      the client (a big message leaves the client blocked mid-body) until
      :meth:`release` of that recipient;
    * ``"reset_after_dot"``: pass the whole message with its final dot (the server
      keeps it), then reset the client's connection before the server's answer;
    * ``"hold_after_dot"``: the same, but hold the answer until :meth:`release`.

    ``events`` records ``(recipient, what)``: ``"body"``, ``"stalled"``,
    ``"reset"``, ``"dot"``, ``"held"``.  Plain SMTP only (no STARTTLS through it).
    """

    def __init__(self, upstream: MailServer) -> None:
        self.upstream = upstream
        self.host = "127.0.0.1"
        self._listener = socket.socket()
        # a small receive window: a stalled client fills it at once and blocks
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._listener.bind((self.host, 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self.events: list[tuple[str, str]] = []
        self._faults: dict[str, str] = {}
        self._lock = threading.Lock()
        self._released: dict[str, threading.Event] = defaultdict(threading.Event)
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []

    def fault(self, recipient: str, mode: str) -> None:
        assert mode in ("reset_body", "stall_body", "reset_after_dot", "hold_after_dot"), mode
        with self._lock:
            self._faults[recipient] = mode

    def seen(self, recipient: str, what: str) -> bool:
        with self._lock:
            return (recipient, what) in self.events

    def release(self, recipient: str) -> None:
        """End the stalled or held connection of ``recipient`` (closing both sides)."""
        with self._lock:
            event = self._released[recipient]
        event.set()

    def _wait_release(self, recipient: str) -> None:
        with self._lock:
            event = self._released[recipient]
        event.wait()

    def start(self) -> SmtpProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            events = list(self._released.values())
        for event in events:
            event.set()
        self._listener.close()
        for sock in list(self._sockets):
            _close(sock)

    def __enter__(self) -> SmtpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _event(self, recipient: str, what: str) -> None:
        with self._lock:
            self.events.append((recipient, what))

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((self.upstream.host, self.upstream.port), 5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            self._sockets += [client, server]
            link = {"phase": "cmd", "rcpt": "", "want_354": False, "mode": None,
                    "after_dot": False}
            threading.Thread(target=self._client_to_server, args=(client, server, link),
                             daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(client, server, link),
                             daemon=True).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket,
                          link: dict[str, Any]) -> None:
        pending = b""  # command bytes not yet split into lines
        tail = b""  # the last bytes of the message, to find <CRLF>.<CRLF> across reads
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if link["phase"] == "cmd":
                    pending += data
                    while b"\r\n" in pending:
                        line, pending = pending.split(b"\r\n", 1)
                        upper = line.upper()
                        if upper.startswith(b"RCPT TO:"):
                            link["rcpt"] = line[8:].strip().strip(b"<>").decode()
                        elif upper.strip() == b"DATA":
                            link["want_354"] = True
                    server.sendall(data)
                    continue
                rcpt, mode = link["rcpt"], link["mode"]
                if mode in ("reset_body", "stall_body") and not link.get("body_seen"):
                    link["body_seen"] = True
                    self._event(rcpt, "body")
                    if mode == "reset_body":
                        server.sendall(data[: len(data) // 2])
                        self._event(rcpt, "reset")
                        _reset(client)
                        _close(server)
                        return
                    server.sendall(data)
                    self._event(rcpt, "stalled")
                    self._wait_release(rcpt)
                    _close(client)
                    _close(server)
                    return
                tail = (tail + data)[-5:]
                server.sendall(data)
                if tail == b"\r\n.\r\n" or (tail.endswith(b"\r\n.\r\n")):
                    link["phase"] = "cmd"
                    if mode in ("reset_after_dot", "hold_after_dot"):
                        link["after_dot"] = True
                    self._event(rcpt, "dot")
                    tail = b""
        except OSError:
            pass
        _close(server)

    def _server_to_client(self, client: socket.socket, server: socket.socket,
                          link: dict[str, Any]) -> None:
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if link["after_dot"]:  # the server's answer to the final dot
                    link["after_dot"] = False
                    rcpt = link["rcpt"]
                    if link["mode"] == "hold_after_dot":
                        self._event(rcpt, "held")
                        self._wait_release(rcpt)
                        _close(client)
                    else:
                        self._event(rcpt, "reset")
                        _reset(client)
                    _close(server)
                    return
                if link["want_354"] and data.startswith(b"354"):
                    link["want_354"] = False
                    with self._lock:
                        link["mode"] = self._faults.pop(link["rcpt"], None)
                    link["body_seen"] = False
                    link["phase"] = "data"  # before the client can answer the 354
                client.sendall(data)
        except OSError:
            pass
        _close(client)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (the peer's next read or write fails at once)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


from helpers import wait_for  # noqa: E402,F401  (re-exported for the tests that use it)


# --------------------------------------------------------------- test plumbing
def use_file_keyring(monkeypatch: Any, folder: Any) -> Any:
    """Point this process and every worker it starts at a file-backed keyring."""
    import os
    from pathlib import Path

    import keyring
    from loopback_keyring import ENV_FILE, FileKeyring

    tests_dir = str(Path(__file__).resolve().parent)
    monkeypatch.setenv(ENV_FILE, str(Path(folder) / "keyring.json"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "loopback_keyring.FileKeyring")
    # `worker` subprocesses must be able to import the backend too
    monkeypatch.setenv("PYTHONPATH", tests_dir + os.pathsep + os.environ.get("PYTHONPATH", ""))
    previous = keyring.get_keyring()
    backend = FileKeyring()
    keyring.set_keyring(backend)
    return previous


def make_due(engine: Any, job_id: int) -> None:
    """Fast-forward an automatic retry's back-off: it is due now."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET not_before = :t WHERE id = :id"),
                     {"t": time.time() - 1, "id": job_id})
