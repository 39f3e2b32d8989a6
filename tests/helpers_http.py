"""A tiny HTTP server on 127.0.0.1 for testing downloads without the internet.

It serves bytes the test hands it, counts requests, and can misbehave on
purpose: answer with an error status, or announce more bytes than it sends
and then hang up (what a dropped connection looks like to the client).
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass


@dataclass
class _Served:
    data: bytes
    status: int = 200
    # Send only this many bytes while announcing len(data), then close.
    cut_after: int | None = None


class LocalFileServer:
    """Serve files from memory at ``http://127.0.0.1:<free port>/<name>``.

    Use as a context manager. ``requests`` lists the paths asked for, in order.
    Names that were not added get a 404.
    """

    def __init__(self) -> None:
        self._files: dict[str, _Served] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.0: the server closes the connection after each answer,
            # which is what makes a short body look truncated to the client.
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
                name = self.path.lstrip("/").split("?", 1)[0]
                with server._lock:
                    server.requests.append(name)
                    served = server._files.get(name)
                if served is None:
                    self.send_error(404, "Not Found")
                    return
                body = served.data
                if served.status != 200:
                    self.send_error(served.status)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                sent = body if served.cut_after is None else body[: served.cut_after]
                self.wfile.write(sent)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, format, *args) -> None:  # keep test output quiet
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval makes shutdown() return quickly after each test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def add(self, name: str, data: bytes, *, status: int = 200, cut_after: int | None = None) -> str:
        """Serve ``data`` under ``name``; returns its URL."""
        with self._lock:
            self._files[name] = _Served(bytes(data), status, cut_after)
        return self.url(name)

    def url(self, name: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def __enter__(self) -> LocalFileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
