"""The drop ledger: the state of every drop, kept in the lake itself.

A new machine picks up where the last one stopped because nothing about drops lives anywhere but
the lake. The ledger is append-only: every change of state is a new small JSON object, created with
:meth:`ObjectStore.put_if_absent`, so two runs can never overwrite each other's entries::

    ledger/drops/<drop_id>/000-received.json     the drop's metadata (agency, feed, file, sha256)
    ledger/drops/<drop_id>/001-validated.json    each later state, with its reason
    ledger/duplicates/<key-hash>.json            the same bytes delivered again under another name
    ledger/seen/<key-and-etag-hash>              landing objects already looked at (skip re-hashing)
    ledger/attempts/<drop_id>.<run_id>           a run is staging the drop (gone once it is done)

The current state of a drop is its newest event. Besides its state and reason an event may
carry ``fingerprint`` (of the feed definition and suite a rejection or hold was decided under,
expectations.suites.suite_fingerprint: the drop is validated again once it changes) and a
steward's ``decision`` (accept, reject, retry) with ``decided_by`` and ``why``.

Reading the ledger is a listing and two small objects per drop (its first and newest events).
A run reads it several times, and a lake keeps every drop it ever had, so on S3 that grew into
thousands of requests per scheduled run. Events are never changed once written, so a process
keeps each one it has read (:class:`_EventCache`, keyed by the listing's etag) and fetches the
rest side by side.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum

import polars as pl

from fusionlake.lake.layout import LEDGER_ATTEMPTS as ATTEMPTS
from fusionlake.lake.layout import LEDGER_DROPS as DROPS
from fusionlake.lake.layout import LEDGER_DUPLICATES as DUPLICATES
from fusionlake.lake.layout import LEDGER_SEEN as SEEN
from fusionlake.lake.layout import ledger_event_key
from fusionlake.lake.lease import check_fence
from fusionlake.lake.store import LakeError, NotFound, ObjectInfo, ObjectStore, side_by_side

log = logging.getLogger("fusionlake")


class DropState(StrEnum):
    """Where a drop is. A StrEnum: stored and printed as its plain value."""

    RECEIVED = "received"  # landed in raw/, not yet validated
    VALIDATED = "validated"  # passed validation; staging pending
    REJECTED = "rejected"  # unusable as sent (unknown feed, unreadable, broken structure)
    STAGED = "staged"  # canonical records in staged/, not yet in a published mart
    PUBLISHED = "published"  # in the published marts
    SUPERSEDED = "superseded"  # every row replaced by a later drop of a by_source_key feed
    DUPLICATE = "duplicate"  # the same bytes delivered again: listed, never ingested again
    HELD = "held"  # an ``on_failure: hold`` expectation failed: waits for a steward's accept


#: States a drop can be recorded in (a duplicate is a delivery, recorded apart).
STATES = tuple(s for s in DropState if s is not DropState.DUPLICATE)
#: The work of a run: drops received or validated but not yet staged or rejected.
PENDING = frozenset({DropState.RECEIVED, DropState.VALIDATED})
#: Drops whose staged records count: the marts are built from them.
LIVE = frozenset({DropState.STAGED, DropState.PUBLISHED})
#: Drops that did not get in, and get another try when their feed or suite changes.
STOPPED = frozenset({DropState.REJECTED, DropState.HELD})


_EVENT = re.compile(r"^(\d{3,})-([a-z_]+)\.json$")


class _EventCache:
    """Ledger objects this process has read, by (lake, key, etag): an event is written once
    (``put_if_absent``) and never changed, and a lake wiped and made again at the same place
    lists other etags, so an entry is never stale. Bounded: the least recently used go first
    (an event is about 1 KiB parsed; 50,000 are 25,000 drops' first and newest events)."""

    def __init__(self, size: int = 50_000):
        self.size = size
        self._items: OrderedDict[tuple[str, str, str], dict] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, store: ObjectStore, infos: list[ObjectInfo]) -> dict[str, dict]:
        """``{key: event}`` for ``infos``, fetching the ones not kept side by side."""
        out: dict[str, dict] = {}
        with self._lock:
            for info in infos:
                item = self._items.get((store.uri, info.key, info.etag))
                if item is not None:
                    self._items.move_to_end((store.uri, info.key, info.etag))
                    out[info.key] = item
        missing = [i for i in infos if i.key not in out]
        fetched = side_by_side(lambda i: _event(store.get(i.key)), missing)
        with self._lock:
            for info, item in zip(missing, fetched, strict=True):
                out[info.key] = item
                self._items[(store.uri, info.key, info.etag)] = item
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return out


_events = _EventCache()


def _event(data: bytes) -> dict:
    """An event as stored; ``{}`` for one that is not an event (written over, cut short):
    its drop is then left out of :meth:`Ledger.entries`, which says so, not every command."""
    try:
        event = json.loads(data)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}

LEDGER_SCHEMA = {
    "drop_id": pl.String,
    "agency": pl.String,
    "feed": pl.String,
    "file_name": pl.String,
    "sha256": pl.String,
    "size": pl.Int64,
    "state": pl.String,
    "reason": pl.String,
    "received_at": pl.Datetime("us", "UTC"),
    "updated_at": pl.Datetime("us", "UTC"),
    "raw_key": pl.String,
    "landing_key": pl.String,
}


def now_utc() -> datetime:
    return datetime.now(UTC)


def drop_id_for(agency: str, feed: str, sha256: str) -> str:
    """A drop's identity: its agency, feed and content (20 hex digits of a sha256 over them).

    The same bytes sent to a feed are the same drop whenever and under whatever name they are
    sent; sent to another feed, they are another drop, listed under that feed.

    Lakes from before this rule named a drop by its content alone (:func:`legacy_drop_id`, the
    first 20 hex digits of the file's sha256). Those ids are never rewritten: a drop's id is
    read from the ledger, and landing looks a delivery up under both ids (``land``), so bytes
    already landed in a feed are still recognised there; only new drops get the new id.
    """
    return hashlib.sha256(f"{agency}/{feed}/{sha256}".encode()).hexdigest()[:20]


def legacy_drop_id(sha256: str) -> str:
    """The id a drop got before identity included its feed: the content hash alone."""
    return sha256[:20]


def _hash(text: str, n: int = 24) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class DropEntry:
    """One row of the ledger as users see it (``fusionlake drops``)."""

    drop_id: str
    agency: str
    feed: str
    file_name: str
    sha256: str
    size: int
    state: DropState
    reason: str | None
    received_at: str
    updated_at: str
    raw_key: str | None
    landing_key: str | None
    fingerprint: str | None = None  # of the feed+suite the last rejection or hold was under
    decision: str | None = None  # a steward's, when the newest event is one: accept|reject|retry

    @property
    def label(self) -> str:
        """``agency/feed/file_name``: how messages name the drop."""
        return f"{self.agency}/{self.feed}/{self.file_name}"


def _mark_key(drop_id: str, run_id: str) -> str:
    """The staging mark of a drop by a run (:meth:`Ledger.begin_staging`)."""
    return f"{ATTEMPTS}/{drop_id}.{run_id}"


class StewardError(Exception):
    """A steward's command that does not fit the drop (unknown, or in the wrong state)."""


class Ledger:
    """Reads and appends ledger events in one store."""

    def __init__(self, store: ObjectStore):
        self.store = store
        #: drops the last :meth:`entries` left out: an event of theirs removed or written over
        self.damaged: list[str] = []

    # -- writing ---------------------------------------------------------------------------
    def receive(self, meta: dict, run_id: str) -> bool:
        """Record a new drop (state ``received``). False if the drop was already received.

        This is the claim that makes landing safe between concurrent runs: only the run whose
        write creates ``000-received.json`` goes on with the drop.
        """
        event = {**meta, "state": DropState.RECEIVED, "reason": None,
                 "at": meta["received_at"], "run_id": run_id}
        check_fence(self.store)  # a run that lost its lease stops here (lease.py, "Fencing")
        return self.store.put_if_absent(self._event_key(meta["drop_id"], 0, DropState.RECEIVED),
                                        _dump(event))

    def record(self, drop_id: str, state: DropState, reason: str | None, run_id: str,
               **extra) -> None:
        """Append a state change for a drop that has been received."""
        if state not in STATES:
            raise ValueError(f"unknown drop state {state!r}; known: {', '.join(STATES)}")
        state = DropState(state)
        for _attempt in range(20):
            events = self._event_names(drop_id)
            if not events:
                raise NotFound(f"drop {drop_id} is not in the ledger")
            seq = max(n for n, _ in events) + 1
            event = {"drop_id": drop_id, "state": state, "reason": reason,
                     "at": now_utc().isoformat(), "run_id": run_id, **extra}
            check_fence(self.store)  # a run that lost its lease stops here (lease.py)
            if self.store.put_if_absent(self._event_key(drop_id, seq, state), _dump(event)):
                return
        raise RuntimeError(f"could not append to the ledger of drop {drop_id}: too much contention")

    def record_duplicate(self, drop_id: str, landing_key: str, file_name: str, sha256: str,
                         run_id: str) -> bool:
        """Record that known bytes arrived again under ``landing_key``; False if known already."""
        event = {"drop_id": drop_id, "landing_key": landing_key, "file_name": file_name,
                 "sha256": sha256, "at": now_utc().isoformat(), "run_id": run_id}
        return self.store.put_if_absent(f"{DUPLICATES}/{_hash(landing_key)}.json", _dump(event))

    def decide(self, drop_id: str, decision: str, by: str, why: str,
               run_id: str = "steward") -> DropEntry:
        """A steward's decision on a drop, recorded with who and why; the entry before it.

        ``accept`` (a held drop): validated, staged by the next run with its holds waived.
        ``reject`` (a held drop): rejected for good; only ``retry`` brings it back.
        ``retry`` (a rejected or held drop): received again, validated by the next run.
        """
        entry = self.get(drop_id)
        if entry is None:
            raise StewardError(f"no drop {drop_id} in the ledger; see `fusionlake drops`")
        allowed = {"accept": {DropState.HELD}, "reject": {DropState.HELD},
                   "retry": set(STOPPED)}[decision]
        if entry.state not in allowed:
            raise StewardError(
                f"drop {drop_id} ({entry.agency}/{entry.feed}/{entry.file_name}) is "
                f"{entry.state}; {decision} applies to "
                f"{' or '.join(sorted(allowed))} drops only")
        state = {"accept": DropState.VALIDATED, "reject": DropState.REJECTED,
                 "retry": DropState.RECEIVED}[decision]
        verb = {"accept": "accepted", "reject": "rejected", "retry": "sent to be validated again"}
        self.record(drop_id, state, f"{verb[decision]} by {by}: {why}", run_id,
                    decision=decision, decided_by=by, why=why)
        return entry

    def find(self, prefix: str) -> list[DropEntry]:
        """Drops whose id, or file sha256, starts with ``prefix`` (as `fusionlake drops` shows)."""
        prefix = prefix.strip().lower()
        if not prefix:
            return []
        return [e for e in self.entries() if e.state != DropState.DUPLICATE
                and (e.drop_id.startswith(prefix) or e.sha256.startswith(prefix))]

    # -- staging attempts: which drops a run was staging when its process ended ---------------
    def begin_staging(self, drop_ids: list[str], run_id: str) -> None:
        """Mark that ``run_id`` starts staging these drops (a worker, as it takes each drop).
        :meth:`end_staging` removes each mark once the run is done with the drop, whatever came
        of it; a mark another run left means its process ended while staging the drop
        (:meth:`interrupted_staging`)."""
        side_by_side(lambda d: self.store.put(_mark_key(d, run_id), b""), drop_ids)

    def end_staging(self, drop_id: str, run_ids: list[str]) -> None:
        """Clear the marks; best effort: a mark the store failed to delete only makes the next
        run stage the drop apart, or clear it if the drop is done by then."""
        for run_id in run_ids:  # one object per mark: no folder left behind in a local lake
            try:
                self.store.delete(_mark_key(drop_id, run_id))
            except (LakeError, OSError) as exc:
                log.warning("staging mark of drop %s not cleared: %s", drop_id, exc)

    def overran_staging(self, drop_id: str, run_id: str, seconds: float) -> None:
        """Write in the mark that staging the drop took longer than ``seconds`` and its
        process is being ended (:func:`fusionlake.pipeline.run.staging_deadline`)."""
        self.store.put(_mark_key(drop_id, run_id),
                       json.dumps({"overran_seconds": seconds}).encode())

    def staging_overran(self, drop_id: str, run_ids: list[str]) -> float | None:
        """The seconds a staging of the drop by one of ``run_ids`` overran, if one did."""
        for run_id in run_ids:
            try:
                body = self.store.get(_mark_key(drop_id, run_id))
            except (LakeError, OSError):
                continue
            with contextlib.suppress(ValueError, TypeError, KeyError):
                return float(json.loads(body)["overran_seconds"])
        return None

    def interrupted_staging(self, run_id: str) -> dict[str, list[str]]:
        """Drops that runs other than ``run_id`` began staging and never finished: each with
        those runs (the lease holder asks, so they have all ended)."""
        out: dict[str, list[str]] = {}
        for key in self.store.list(ATTEMPTS):
            drop_id, other = key.rsplit("/", 1)[-1].split(".", 1)
            if other != run_id:
                out.setdefault(drop_id, []).append(other)
        return out

    def mark_seen(self, info: ObjectInfo, drop_id: str) -> None:
        self.store.put_if_absent(f"{SEEN}/{self._seen_name(info)}", drop_id.encode())

    # -- reading ---------------------------------------------------------------------------
    def seen_names(self) -> set[str]:
        return {k.rsplit("/", 1)[-1] for k in self.store.list(SEEN)}

    @staticmethod
    def _seen_name(info: ObjectInfo) -> str:
        return _hash(f"{info.key}\0{info.etag}\0{info.size}", 32)

    def is_seen(self, info: ObjectInfo, seen: set[str]) -> bool:
        return self._seen_name(info) in seen

    def events(self, drop_id: str) -> list[dict]:
        """Every event of a drop, oldest first."""
        infos = self._event_infos(drop_id)
        read = _events.read(self.store, infos)
        return [read[i.key] for i in infos]

    def get(self, drop_id: str) -> DropEntry | None:
        infos = self._event_infos(drop_id)
        if not infos:
            return None
        read = _events.read(self.store, [infos[0], infos[-1]])
        return _entry(drop_id, read[infos[0].key], read[infos[-1].key])

    def entries(self) -> list[DropEntry]:
        """Current state of every drop, then every duplicate delivery, oldest first."""
        by_drop: dict[str, list[ObjectInfo]] = {}
        for info in self.store.list_info(DROPS):
            _, _, drop_id, name = info.key.split("/", 3)
            if _EVENT.match(name):
                by_drop.setdefault(drop_id, []).append(info)
        ends = {d: (min(ev, key=_event_name), max(ev, key=_event_name))
                for d, ev in by_drop.items()}  # the first event and the newest
        duplicates = self.store.list_info(DUPLICATES)
        read = _events.read(self.store, [*{i.key: i for pair in ends.values() for i in pair}
                                         .values(), *duplicates])
        out = []
        self.damaged = []
        for d, (first, last) in ends.items():
            try:
                out.append(_entry(d, read[first.key], read[last.key]))
            except (KeyError, ValueError, TypeError):  # an event removed or written over
                self.damaged.append(d)
        first_of = {e.drop_id: e for e in out}
        for info in duplicates:
            dup = read[info.key]
            first = first_of.get(dup["drop_id"])
            # the delivery is the sender's (landing/<agency>/<feed>/...), not the first drop's
            _, agency, feed = [*dup["landing_key"].split("/", 3), "", "", ""][:3]
            same_sender = first is not None and (first.agency, first.feed) == (agency, feed)
            out.append(DropEntry(
                drop_id=dup["drop_id"],
                agency=agency,
                feed=feed,
                file_name=dup["file_name"],
                sha256=dup["sha256"],
                size=first.size if first else 0,
                state=DropState.DUPLICATE,
                reason=f"same bytes as {first.file_name if same_sender else 'an earlier drop'}"
                       f" (drop {dup['drop_id']}); not ingested again",
                received_at=dup["at"],
                updated_at=dup["at"],
                raw_key=None,
                landing_key=dup["landing_key"],
            ))
        out.sort(key=lambda e: (e.received_at, e.file_name))
        return out

    def frame(self) -> pl.DataFrame:
        """The ledger as a Polars frame (LEDGER_SCHEMA), for the marts."""
        rows = [asdict(e) for e in self.entries()]
        if not rows:
            return pl.DataFrame(schema=LEDGER_SCHEMA)
        return pl.DataFrame(rows).with_columns(
            pl.col("received_at", "updated_at").str.to_datetime(time_zone="UTC", time_unit="us"),
            pl.col("size").cast(pl.Int64),
        ).select(list(LEDGER_SCHEMA))

    # -- internals -------------------------------------------------------------------------
    def _event_key(self, drop_id: str, seq: int, state: str) -> str:
        return ledger_event_key(drop_id, seq, state)

    def _event_names(self, drop_id: str) -> list[tuple[int, str]]:
        return [_event_name(i) for i in self._event_infos(drop_id)]

    def _event_infos(self, drop_id: str) -> list[ObjectInfo]:
        """The drop's event objects, oldest first."""
        infos = [i for i in self.store.list_info(f"{DROPS}/{drop_id}")
                 if _EVENT.match(i.key.rsplit("/", 1)[-1])]
        return sorted(infos, key=_event_name)


def _event_name(info: ObjectInfo) -> tuple[int, str]:
    m = _EVENT.match(info.key.rsplit("/", 1)[-1])
    return int(m.group(1)), m.group(2)


def _entry(drop_id: str, first: dict, last: dict) -> DropEntry:
    """A drop as its first event (what was sent) and its newest (where it is) say."""
    return DropEntry(
        drop_id=drop_id,
        agency=first["agency"],
        feed=first["feed"],
        file_name=first["file_name"],
        sha256=first["sha256"],
        size=first["size"],
        state=DropState(last["state"]),
        reason=last.get("reason"),
        received_at=first["received_at"],
        updated_at=last["at"],
        raw_key=first.get("raw_key"),
        landing_key=first.get("landing_key"),
        fingerprint=last.get("fingerprint"),
        decision=last.get("decision"),
    )


def _dump(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1).encode()
