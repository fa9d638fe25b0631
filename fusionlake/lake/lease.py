"""One pipeline run at a time per lake, with a lease kept in the lake itself.

Two runs started together on the same lake (two machines, two shells) must not both process and
publish. The lease is a numbered series of objects, each created with a conditional write::

    leases/<name>/000041.json           held by a run: run id, host, pid, expiry
    leases/<name>/000041.released       that run let go

To take the lease, a run reads the newest generation; if it is released, expired, or held by a
process of this host that no longer exists (a crash), the run creates the next generation with
``put_if_absent``. Of two runs racing for the same generation exactly one succeeds. Only the
holder ever rewrites its own generation (to renew it), so the retry trap of conditional writes
is handled by the store's read-back.

**Heartbeat.** While a run works, a thread renews its generation every third of the lease
(``expires_at`` moves forward), so a long run keeps the lake however long it takes, and a run
that stops renewing (killed, frozen, cut off from the store) frees it after one lease time.

**Clocks.** Another run judges a lease by the store's clock: the age of the holder's generation
(the store's time now minus the time it stamped on the last renewal; ``ObjectStore.get_aged``),
never by its own clock against the expiry the holder wrote by its clock. Hosts' clocks drift
apart where nothing keeps them in time: one ten minutes ahead would otherwise take the lake from
every run at work, and one behind would wait for a crashed run ten minutes past its lease. The
holder checks its own expiry by its own clock, which errs towards stopping first.

**Fencing.** The generation number is the run's fencing token. Before every ledger transition
and before moving a LATEST pointer, :func:`check_fence` makes sure the newest generation is
still the run's own and has not expired; if not, it raises :class:`LeaseLost` and the run stops
instead of writing over the run that took the lake over. Worker processes check the same way:
a run hands them its :class:`Fence` (a few plain fields) and they :func:`install` it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fusionlake.lake.layout import LEASES as PREFIX
from fusionlake.lake.store import NotFound, ObjectStore, open_store

_GEN = re.compile(r"/(\d{6})\.(?:json|released)$")
log = logging.getLogger("fusionlake")


class LeaseHeld(Exception):
    """Another run holds the lease; the message says which and until when."""


class LeaseLost(Exception):
    """This run no longer holds the lease (it expired, or another run took the lake over):
    it must stop before its next write. The message says what happened."""


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has this pid (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _key(name: str, generation: int, suffix: str = "json") -> str:
    return f"{PREFIX}/{name}/{generation:06d}.{suffix}"


def _current(store: ObjectStore, name: str,
             aged: bool = True) -> tuple[int, dict | None, bool, float]:
    """The newest generation: its number, its holder's body, whether it was released, and the
    seconds since the holder last wrote it, by the store's clock (0 unless ``aged``)."""
    keys = store.list(f"{PREFIX}/{name}")
    gens = sorted({int(m.group(1)) for k in keys if (m := _GEN.search(k))})
    if not gens:
        return 0, None, True, 0.0
    gen = gens[-1]
    released = _key(name, gen, "released") in keys
    try:
        data, age = store.get_aged(_key(name, gen)) if aged else (store.get(_key(name, gen)), 0.0)
        holder = json.loads(data)
    except NotFound:
        holder, age = None, 0.0
    return gen, holder, released, age


def _lease_seconds(holder: dict) -> float:
    """How long the holder's lease lasts from its last renewal (older holders wrote only
    their expiry: it is counted from their last renewal)."""
    if "seconds" in holder:
        return float(holder["seconds"])
    since = datetime.fromisoformat(holder.get("renewed_at") or holder["acquired_at"])
    return (datetime.fromisoformat(holder["expires_at"]) - since).total_seconds()


def _left(holder: dict, age: float) -> float:
    """Seconds until another run may take the holder's lease if it stops renewing it.

    Judged by the store's clock (the holder's generation's age), never by comparing this
    host's clock with the expiry the holder wrote by its own: a host whose clock runs ahead
    would take the lake from a run at work, and one behind would wait for a crashed run long
    after its lease ended. The store's times are whole seconds: one more is waited.
    """
    return _lease_seconds(holder) + STORE_CLOCK_SLACK - age


#: Seconds another run waits past a lease's time: the store stamps times in whole seconds.
STORE_CLOCK_SLACK = 1.0


def _free(holder: dict | None, released: bool, age: float) -> bool:
    if released or holder is None:
        return True
    if _left(holder, age) <= 0:
        return True
    # A run that crashed on this very host frees the lease at once instead of after expiry.
    return holder.get("host") == socket.gethostname() and not pid_alive(int(holder["pid"]))


@dataclass(frozen=True)
class Fence:
    """A run's claim on the lake, checkable from any process: the lease's name, the run's
    generation (the fencing token) and run id."""

    lake: str
    name: str
    generation: int
    run_id: str

    def check(self, store: ObjectStore) -> None:
        """Raise :class:`LeaseLost` unless this run's generation is still the newest, not
        released, and not expired."""
        gen, holder, released, _ = _current(store, self.name, aged=False)
        if gen != self.generation or holder is None or holder.get("run_id") != self.run_id:
            taker = f"run {holder['run_id']} on {holder['host']}" if holder else "another run"
            raise LeaseLost(
                f"run {self.run_id} lost the lease on {store.uri}: {taker} took it over "
                f"(generation {gen}, this run held {self.generation}); this run stops without "
                "writing, the lake is the other run's")
        if released:
            raise LeaseLost(f"run {self.run_id} released its lease on {store.uri} already")
        # the holder's own expiry, by its own clock: it stops no later than other runs,
        # which judge by the store's clock with a second's slack, would take over
        expires = datetime.fromisoformat(holder["expires_at"])
        if expires <= datetime.now(UTC):
            raise LeaseLost(
                f"run {self.run_id}'s lease on {store.uri} expired at {expires:%H:%M:%S} UTC "
                "without being renewed (the process was stalled or cut off from the store); "
                "this run stops without writing, another run may have the lake now")


# The fences of this process, by store URI: what check_fence checks.
_fences: dict[str, Fence] = {}
_fences_lock = threading.Lock()


def install(fence: Fence, uri: str | None = None) -> None:
    """Make every later :func:`check_fence` of this process on ``fence.lake`` check ``fence``
    (a worker process calls this with the fence its run handed it)."""
    with _fences_lock:
        _fences[uri or open_store(fence.lake).uri] = fence


def uninstall(fence: Fence, uri: str | None = None) -> None:
    with _fences_lock:
        key = uri or open_store(fence.lake).uri
        if _fences.get(key) == fence:
            del _fences[key]


def current_fence(store: ObjectStore) -> Fence | None:
    """The fence installed for this store's lake, if any."""
    return _fences.get(store.uri)


def check_fence(store: ObjectStore) -> None:
    """Before a write that only the lease holder may make: raise :class:`LeaseLost` if this
    process works for a run that no longer holds the lease. No fence installed (``fusionlake
    drop``, ``land``, tests of single steps): nothing to check."""
    fence = _fences.get(store.uri)
    if fence is not None:
        fence.check(store)


@dataclass
class Lease:
    """A held lease: renew it with :meth:`start_heartbeat`, check it with :meth:`check`."""

    store: ObjectStore
    name: str
    generation: int
    run_id: str
    seconds: float = 900.0
    body: dict = field(default_factory=dict)
    lost: str | None = None  # why the heartbeat found the lease gone
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def fence(self) -> Fence:
        return Fence(self.store.uri, self.name, self.generation, self.run_id)

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless this run still holds the lease."""
        if self.lost:
            raise LeaseLost(self.lost)
        self.fence.check(self.store)

    def renew(self) -> None:
        """Move the expiry one lease time forward; :class:`LeaseLost` if the lease is gone."""
        self.check()
        now = datetime.now(UTC)
        body = {**self.body, "seconds": self.seconds, "renewed_at": now.isoformat(),
                "expires_at": (now + timedelta(seconds=self.seconds)).isoformat()}
        self.store.put(_key(self.name, self.generation), json.dumps(body).encode())
        self.body = body

    def start_heartbeat(self) -> Lease:
        """Renew the lease every third of its time in a thread, until :meth:`release`."""

        def beat() -> None:
            while not self._stop.wait(max(0.2, self.seconds / 3)):
                try:
                    self.renew()
                except LeaseLost as exc:
                    self.lost = str(exc)
                    log.error("%s", exc)
                    return
                except Exception as exc:  # a store hiccup: the next beat tries again
                    log.warning("could not renew the lease of run %s: %s", self.run_id, exc)

        self._thread = threading.Thread(target=beat, name=f"lease-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def release(self) -> None:
        """Let go (after stopping the heartbeat). A lease already lost is not ours to release."""
        self.stop_heartbeat()
        if self.lost:
            return
        self.store.put_if_absent(_key(self.name, self.generation, "released"),
                                 self.run_id.encode())

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(store: ObjectStore, run_id: str, name: str = "pipeline", seconds: float = 900,
            wait: float = 0.0, poll: float = 2.0) -> Lease:
    """Take the lease or raise :class:`LeaseHeld`; ``wait`` seconds to keep trying."""
    deadline = time.monotonic() + wait
    while True:
        now = datetime.now(UTC)
        gen, holder, released, age = _current(store, name)
        if _free(holder, released, age):
            body = {
                "run_id": run_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "seconds": seconds,
                "acquired_at": now.isoformat(),
                "expires_at": (now + timedelta(seconds=seconds)).isoformat(),
            }
            if store.put_if_absent(_key(name, gen + 1), json.dumps(body).encode()):
                _prune(store, name, gen + 1)
                return Lease(store, name, gen + 1, run_id, seconds, body)
            continue  # someone took this generation first: look again
        if time.monotonic() >= deadline:
            until = now + timedelta(seconds=max(0.0, _left(holder, age)))
            raise LeaseHeld(
                f"another run ({holder['run_id']} on {holder['host']}, pid {holder['pid']}) is "
                f"working on this lake; if it stops renewing its lease, the lake is free at "
                f"{until:%Y-%m-%dT%H:%M:%S} UTC (by this machine's clock); wait for it to "
                "finish, or try again later"
            )
        time.sleep(poll)


def _prune(store: ObjectStore, name: str, generation: int, keep: int = 10) -> None:
    """Remove generations older than the last ``keep``: every look at the lease lists them,
    and a lake run every 15 minutes adds 35,000 a year."""
    for key in store.list(f"{PREFIX}/{name}"):
        m = _GEN.search(key)
        if m and int(m.group(1)) <= generation - keep:
            store.delete(key)
