"""Fault injection for the crash tests: kill the process at a named point of a run.

``FUSIONLAKE_KILL_AT=<point>`` makes :func:`kill_point` send SIGKILL to this process when a run
reaches that point, exactly like a power cut or an OOM kill: no cleanup, no ``finally``. The
points are where a half-done write would hurt most. Unset (always, in production) it does nothing.
"""

from __future__ import annotations

import os
import signal


def kill_point(name: str) -> None:
    if os.environ.get("FUSIONLAKE_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
