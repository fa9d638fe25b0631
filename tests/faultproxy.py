"""An HTTP proxy that injects S3 faults in front of a real endpoint (the tests' moto server).

Standard library only. Clients talk to the proxy as if it were the endpoint
(``AWS_ENDPOINT_URL=http://127.0.0.1:<port>``); each request is, with probability ``rate`` and
a seeded random generator, answered with one of four faults instead of being passed through:

* ``slowdown``: 503 SlowDown, as S3 throttles (the endpoint never sees the request);
* ``internal``: 500 InternalError (the endpoint never sees it);
* ``drop-before``: the connection is closed without an answer, the request not forwarded;
* ``drop-after``: the request is forwarded and the endpoint acts on it, then the connection is
  closed without an answer -- so a retried conditional write meets its own object (412).

It listens on loopback only, serves at most ``max_connections`` connections at once (more wait
in the listen queue), streams bodies in both directions (memory bounded by a chunk) and keeps
a count of every fault it injected (``counts``), so a test can show the faults happened, and
of the response body bytes it relayed (``counts["bytes-relayed"]``), so a test can show what a
client fetched.
``script`` lists faults (or None for a pass) for the first requests, before the random ones:
``script=["drop-after"]`` loses the answer to the very next request and no other.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

FAULTS = ("slowdown", "internal", "drop-before", "drop-after")
_CHUNK = 1 << 16
# hop-by-hop headers are the proxy's own business (RFC 9110 7.6.1)
# (and Expect: the proxy has answered 100-continue itself and holds the body)
_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "expect"}

_ERROR_BODY = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
               "<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>")


class FaultProxy:
    """``with FaultProxy(upstream, rate=0.3, seed=1) as proxy:`` then use ``proxy.url``."""

    def __init__(self, upstream: str, rate: float = 0.3, seed: int = 0,
                 faults: tuple[str, ...] = FAULTS, max_connections: int = 32,
                 script: list[str | None] = ()):
        parsed = urlparse(upstream)
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the fault proxy only fronts a loopback endpoint, not {upstream}")
        unknown = (set(faults) | set(script)) - set(FAULTS) - {None}
        if unknown or not 0 <= rate <= 1:
            raise ValueError(f"faults must be among {FAULTS} and 0 <= rate <= 1")
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.rate = rate
        self.faults = faults
        self.counts: Counter[str] = Counter()
        self.script = list(script)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        proxy = self

        class Handler(_Handler):
            owner = proxy

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64

            def process_request(self, request, client_address):
                proxy._slots.acquire()  # at most max_connections handler threads
                try:
                    super().process_request(request, client_address)
                except BaseException:
                    proxy._slots.release()
                    raise

            def process_request_thread(self, request, client_address):
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    proxy._slots.release()

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy",
                                        daemon=True)

    def pick(self) -> str | None:
        """The fault for the next request, or None to pass it through."""
        with self._lock:
            self.counts["requests"] += 1
            if self.script:
                fault = self.script.pop(0)
                if fault:
                    self.counts[fault] += 1
                return fault
            if self._rng.random() >= self.rate:
                return None
            fault = self._rng.choice(self.faults)
            self.counts[fault] += 1
            return fault

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as clients use S3
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format, *args) -> None:  # quiet: tests read counts, not logs
        pass

    def do_GET(self) -> None:
        self._proxy()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def finish(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        super().finish()

    # -- faults --------------------------------------------------------------------------
    def _drop(self) -> None:
        """Close the connection without a word, as a crashed peer or a broken link does."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _error(self, status: int, code: str, message: str) -> None:
        body = _ERROR_BODY.format(code=code, message=message).encode()
        self._drain_body()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- forwarding ----------------------------------------------------------------------
    def _proxy(self) -> None:
        fault = self.owner.pick()
        if fault == "slowdown":
            return self._error(503, "SlowDown", "Please reduce your request rate.")
        if fault == "internal":
            return self._error(500, "InternalError", "We encountered an internal error.")
        if fault == "drop-before":
            self._drain_body()
            return self._drop()
        try:
            response = self._forward()
        except (OSError, http.client.HTTPException):
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None
            return self._drop()
        if fault == "drop-after":  # the endpoint acted; its answer is lost
            response.read()
            return self._drop()
        self._relay(response)

    def _conn(self) -> http.client.HTTPConnection:
        if self._upstream is None:
            self._upstream = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        return self._upstream

    def _forward(self) -> http.client.HTTPResponse:
        conn = self._conn()
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        for name, value in self.headers.items():
            if name.lower() not in _HOP:
                conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        if chunked:
            for chunk in self._chunks():
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                chunk = self.rfile.read(min(_CHUNK, left))
                if not chunk:
                    raise ConnectionError("client closed the connection mid-body")
                conn.send(chunk)
                left -= len(chunk)
        return conn.getresponse()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response(response.status, response.reason)
        length = response.getheader("Content-Length")
        for name, value in response.getheaders():
            if name.lower() not in _HOP and name.lower() not in ("date", "server"):
                self.send_header(name, value)
        if length is None and self.command != "HEAD" and response.status not in (204, 304):
            body = response.read()  # an upstream answer without a length: sized here
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.owner.count("bytes-relayed", len(body))
            return
        self.end_headers()
        while chunk := response.read(_CHUNK):
            self.wfile.write(chunk)
            self.owner.count("bytes-relayed", len(chunk))
        if response.will_close and self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _chunks(self):
        """The chunks of a ``Transfer-Encoding: chunked`` request body (trailers skipped)."""
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            data = self.rfile.read(size)
            self.rfile.readline()
            yield data

    def _drain_body(self) -> None:
        """Read and discard the request's body, so the connection stays in step."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            for _ in self._chunks():
                pass
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            chunk = self.rfile.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
