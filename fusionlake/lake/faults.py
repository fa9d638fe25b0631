"""Fault injection for the crash tests: kill or pause the process at a named point of a run.

``FUSIONLAKE_KILL_AT=<point>`` makes :func:`kill_point` send SIGKILL to this process when a run
reaches that point, exactly like a power cut or an OOM kill: no cleanup, no ``finally``. A point
may be narrowed to the keys it is reached with: ``temp-written:raw/`` kills the first time a
temporary file under ``raw/`` has been written and not yet renamed.

``FUSIONLAKE_PAUSE_AT=<point>`` makes :func:`pause_point` stop this process (SIGSTOP) there,
like a frozen VM or a long stall: every thread stops, the lease's heartbeat too, until someone
sends SIGCONT. ``FUSIONLAKE_HANG_AT=<point>`` makes :func:`hang_point` block the calling thread
there for good, like a reader stuck in native code on a file, while the process's other threads
run on. Unset (always, in production) they do nothing.
"""

from __future__ import annotations

import os
import signal
import threading


def _matches(variable: str, name: str, detail: str) -> bool:
    wanted = os.environ.get(variable)
    if not wanted:
        return False
    point, _, prefix = wanted.partition(":")
    return point == name and detail.startswith(prefix)


def kill_point(name: str, detail: str = "") -> None:
    if _matches("FUSIONLAKE_KILL_AT", name, detail):
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str, detail: str = "") -> None:
    if _matches("FUSIONLAKE_PAUSE_AT", name, detail):
        os.kill(os.getpid(), signal.SIGSTOP)


def hang_point(name: str, detail: str = "") -> None:
    if _matches("FUSIONLAKE_HANG_AT", name, detail):
        threading.Event().wait()
