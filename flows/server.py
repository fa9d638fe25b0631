"""A Prefect server owned by one command: it ends when the command ends, however it ends.

Without ``PREFECT_API_URL`` Prefect starts a temporary server (about 200 MB) in a child process
and stops it at exit -- but not when the process is killed (SIGKILL, the OOM killer), and then
it lives on. :func:`owned_server` starts the same server (uvicorn running Prefect's app on
loopback, no UI) itself, so that:

* it runs in its own process group (a Ctrl-C in the terminal reaches the command, which stops
  the server in order);
* the kernel sends it SIGTERM when the command's process dies (``PR_SET_PDEATHSIG``, Linux);
* it watches its parent itself and exits when the parent is gone (any POSIX system; the
  backstop when the parent-death signal is not available).

``python -m flows.server --port P --parent PID`` is the server process.

Enter :func:`owned_server` before Prefect is imported: Prefect reads ``PREFECT_API_URL`` into
its root settings when it is imported, and threads it starts later (the flow's heartbeat, the
events worker) see only those; a URL set afterwards reaches the flow but not them, and they
would start a temporary server of their own.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(url: str) -> int | None:
    """The HTTP status a server answers its API URL's ``/health`` with (a trailing slash or
    none: the client's own ``api_url`` has one, and ``.../api//health`` is not found); None
    when nothing answers."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def healthy(url: str) -> bool:
    """Whether a Prefect server answers at its API URL with 200: the test of a server this
    process started itself."""
    return _health(url) == 200


def answers(url: str) -> bool:
    """Whether a server answers at its API URL: with 200, or refusing the request (401, 403,
    404: a server behind a login, Prefect Cloud or a proxy, refuses this request made without
    the credentials the Prefect client sends, and is there all the same). A 5xx counts as no
    answer: a proxy answers 502, 503 or 504 for a server behind it that is down."""
    status = _health(url)
    return status is not None and status < 500


class ServerProcess:
    """A server started as a child process, its error output read as it comes.

    A pipe nobody reads holds 64 KiB: a server that logs more (Prefect's logs every failed
    database write with its traceback, and a burst of runs on SQLite fails many) then blocks at
    its next log line and stops answering. A reader thread keeps the last lines instead, for the
    message when the server exits.
    """

    def __init__(self, args: list[str], env: dict[str, str], **popen) -> None:
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, **popen)
        self.pid = self.proc.pid
        self._lines: collections.deque[bytes] = collections.deque(maxlen=200)
        self._reader = threading.Thread(target=self._read, name=f"stderr of {self.pid}",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self._lines.append(line)

    def poll(self) -> int | None:
        return self.proc.poll()

    def last_output(self, chars: int = 2000) -> str:
        """The end of what it wrote to stderr (all of it once it has exited)."""
        if self.proc.poll() is not None:
            self._reader.join(timeout=5)
        return b"".join(self._lines).decode(errors="replace")[-chars:]

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_healthy(server: ServerProcess, url: str, timeout: float, what: str) -> None:
    """Wait until ``server`` answers at ``url``; raise, naming it and quoting its last error
    output, if it exits or stays silent for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if server.poll() is not None:
            raise RuntimeError(f"{what} exited at start-up:\n{server.last_output()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer on {url} within {timeout:.0f} s")
        time.sleep(0.2)


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent process dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@contextlib.contextmanager
def owned_server(timeout: float = 180.0) -> Iterator[str | None]:
    """A temporary Prefect server for this process, its API URL set for the block (and for
    worker processes); the server configured by ``PREFECT_API_URL`` instead when there is
    one (yields None then)."""
    if os.environ.get("PREFECT_API_URL"):
        yield None
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT__SERVER_FINAL": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = ServerProcess(
        [sys.executable, "-m", "flows.server", "--port", str(port), "--parent",
         str(os.getpid())],
        env, start_new_session=True, preexec_fn=die_with_parent)
    print(f"started a temporary Prefect server on {url.removesuffix('/api')} (pid {proc.pid}); "
          "it ends with this command", file=sys.stderr, flush=True)
    saved = os.environ.get("PREFECT_API_URL")
    try:
        wait_healthy(proc, url, timeout, "the temporary Prefect server")
        os.environ["PREFECT_API_URL"] = url  # before Prefect is imported: see the docstring
        if "prefect" in sys.modules:  # imported already (a test): the settings of this block
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: url}):
                try:
                    yield url
                finally:
                    if proc.poll() is None:  # a server that died takes nothing more
                        _drain_prefect_workers()
        else:
            try:
                yield url
            finally:
                # the command imported Prefect inside the block: its workers hold logs for this
                # server, and flushing them at exit to a stopped server took a minute of retries
                # (and to a server that died during the command, ten seconds each for nothing)
                if "prefect" in sys.modules and proc.poll() is None:
                    _drain_prefect_workers()
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved
        proc.stop()


def _drain_prefect_workers(timeout: float = 10.0) -> None:
    """Send what Prefect's log and event workers still hold to this server before it stops.

    They are per process and keep the address they started with: left running, they retry the
    stopped server until whoever drains them next (Prefect's test harness at its exit) waits
    for them for ever.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # never fail the command over its logs
            worker.drain_all(timeout=timeout)


def _watch_parent(parent: int) -> None:
    """Exit as soon as the process that started this server is gone."""
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    import uvicorn

    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1",
                port=args.port, log_level="error", lifespan="on")


if __name__ == "__main__":
    main()
