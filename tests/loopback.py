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
    """

    def __init__(self, port: int | None = None, *, auth: tuple[str, str] | None = None,
                 delay: float = 0.0) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.auth = auth
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

        ok = (isinstance(auth_data, LoginPassword) and self.auth is not None and
              (auth_data.login.decode(), auth_data.password.decode()) == self.auth)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    # control -----------------------------------------------------------------------
    def start(self) -> MailServer:
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            # (aiosmtpd warns about auth_required without TLS; MAIL enforces it instead)
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self._controller = Controller(self, hostname=self.host, port=self.port, **kwargs)
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
