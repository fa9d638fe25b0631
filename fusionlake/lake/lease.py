"""One pipeline run at a time per lake, with a lease kept in the lake itself.

Two runs started together on the same lake (two machines, two shells) must not both process and
publish. The lease is a numbered series of objects, each created with a conditional write::

    leases/<name>/000041.json           held by a run: run id, host, pid, expiry
    leases/<name>/000041.released       that run let go

To take the lease, a run reads the newest generation; if it is released, expired, or held by a
process of this host that no longer exists (a crash), the run creates the next generation with
``put_if_absent``. Of two runs racing for the same generation exactly one succeeds. No object is
ever overwritten, so the retry trap of conditional writes is handled by the store's read-back.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fusionlake.lake.layout import LEASES as PREFIX
from fusionlake.lake.store import NotFound, ObjectStore

_GEN = re.compile(r"/(\d{6})\.json$")


class LeaseHeld(Exception):
    """Another run holds the lease; the message says which and until when."""


@dataclass(frozen=True)
class Lease:
    store: ObjectStore
    name: str
    generation: int
    run_id: str

    def release(self) -> None:
        key = f"{PREFIX}/{self.name}/{self.generation:06d}.released"
        self.store.put_if_absent(key, self.run_id.encode())

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _current(store: ObjectStore, name: str) -> tuple[int, dict | None, bool]:
    keys = store.list(f"{PREFIX}/{name}")
    gens = sorted(int(m.group(1)) for k in keys if (m := _GEN.search(k)))
    if not gens:
        return 0, None, True
    gen = gens[-1]
    released = f"{PREFIX}/{name}/{gen:06d}.released" in keys
    try:
        holder = json.loads(store.get(f"{PREFIX}/{name}/{gen:06d}.json"))
    except NotFound:
        holder = None
    return gen, holder, released


def _free(holder: dict | None, released: bool, now: datetime) -> bool:
    if released or holder is None:
        return True
    if datetime.fromisoformat(holder["expires_at"]) <= now:
        return True
    # A run that crashed on this very host frees the lease at once instead of after expiry.
    return holder.get("host") == socket.gethostname() and not _pid_alive(int(holder["pid"]))


def acquire(store: ObjectStore, run_id: str, name: str = "pipeline", seconds: int = 900,
            wait: float = 0.0, poll: float = 2.0) -> Lease:
    """Take the lease or raise :class:`LeaseHeld`; ``wait`` seconds to keep trying."""
    deadline = time.monotonic() + wait
    while True:
        now = datetime.now(UTC)
        gen, holder, released = _current(store, name)
        if _free(holder, released, now):
            body = {
                "run_id": run_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired_at": now.isoformat(),
                "expires_at": (now + timedelta(seconds=seconds)).isoformat(),
            }
            key = f"{PREFIX}/{name}/{gen + 1:06d}.json"
            if store.put_if_absent(key, json.dumps(body).encode()):
                return Lease(store, name, gen + 1, run_id)
            continue  # someone took this generation first: look again
        if time.monotonic() >= deadline:
            raise LeaseHeld(
                f"another run ({holder['run_id']} on {holder['host']}, pid {holder['pid']}) is "
                f"working on this lake until {holder['expires_at'][:19]} UTC at the latest; "
                "wait for it to finish, or try again later"
            )
        time.sleep(poll)
