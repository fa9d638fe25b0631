"""A login in front of a real server: the tests' stand-in for Prefect Cloud, or for a login
proxy in front of a self-hosted Prefect server.

Standard library only. A connection whose first request carries the expected
``Authorization: Basic ...`` header (what the Prefect client sends when
``PREFECT_API_AUTH_STRING`` is set, on HTTP requests and on the events websocket's upgrade alike)
is joined to the upstream server byte for byte, so keep-alive and websockets pass as they are;
any other is answered ``401 Unauthorized`` and closed. ``refused`` and ``admitted`` list the
paths of the first requests of each, so a test can show which requests met the login.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from urllib.parse import urlparse

_UNAUTHORIZED = (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"prefect\"\r\n"
                 b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
                 b"log in first\n")


class LoginProxy:
    """``with LoginProxy("http://127.0.0.1:4200", "user:secret") as proxy:`` then use
    ``proxy.url`` (``http://127.0.0.1:<port>``) in place of the upstream's."""

    def __init__(self, upstream: str, auth_string: str):
        parsed = urlparse(upstream)
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the login proxy only fronts a loopback server, not {upstream}")
        self.upstream = (parsed.hostname, parsed.port or 80)
        token = base64.b64encode(auth_string.encode()).decode()
        self.expected = f"basic {token}".lower()
        self.refused: list[str] = []
        self.admitted: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._stopped = False

    def __enter__(self) -> LoginProxy:
        threading.Thread(target=self._accept, name="login-proxy", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by __exit__
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 2 else lines[0]
            auth = next((line.split(":", 1)[1].strip().lower() for line in lines[1:]
                         if line.lower().startswith("authorization:")), None)
            if auth != self.expected:
                with self._lock:
                    self.refused.append(path)
                with contextlib.suppress(OSError):
                    client.sendall(_UNAUTHORIZED)
                return
            with self._lock:
                self.admitted.append(path)
            upstream = stack.enter_context(socket.create_connection(self.upstream, timeout=30))
            upstream.settimeout(None)
            upstream.sendall(head)
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes until ``source`` ends; then tell ``target`` nothing more comes."""
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)
