"""An HTTP server on 127.0.0.1, served from a daemon thread of this process.

The built-in demo supplier and the self-test's exchange-rates feed are both one of
these: bound to loopback only, started and stopped with the job or check that
needs it.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LocalHTTPServer(ThreadingHTTPServer):
    """``start()`` serves ``handler`` on a free port of 127.0.0.1 until ``stop()``."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, name: str) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=name, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and wait for the serving thread."""
        self.shutdown()
        self.server_close()
        self._thread.join(5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that went away mid-answer is not the server's problem
