"""Delivering files to ``landing/`` and landing them, byte for byte, in ``raw/``.

Plain functions over an :class:`ObjectStore`; flows/land.py only orchestrates them.

* :func:`deliver` is what ``fusionlake drop`` does: put an agency's files under
  ``landing/<agency>/<feed>/``. It never replaces a delivered file.
* :func:`discover` lists the landing objects not looked at yet.
* :func:`land` copies one landing object to ``raw/<agency>/<feed>/<drop_id>/<file>`` with a
  ``manifest.json`` and claims it in the ledger. A drop is its agency, feed and content
  (ledger.drop_id_for): the same bytes under any name in one feed are one drop, and a second
  delivery is recorded as a duplicate and not ingested again; the same bytes in another feed
  are another drop.

A landing area is often a shared folder, and what people's tools leave in one is not a
delivery: a ``.DS_Store``, Excel's ``~$book.xlsx`` lock, an upload still under its temporary
name (``book.xlsx.part``, rsync's hidden ``.book.xlsx.Xa81f``), a file one folder too deep.
:func:`land` leaves such an object where it is and says why, once (until it changes): it is
not landed as a drop that would be rejected with advice meant for a data file, and a
misplaced file does not fail every later run.

A landing folder on a disk (not S3, where an object appears only once its upload is complete)
also holds files that an SFTP or SMB client is still writing in place, under their final name.
A text file whose last line has no line end yet and which was written to within
:data:`SETTLE_SECONDS` (by the folder's clock) is left for a later run (``waiting``, not marked
seen): landed half-way, it was staged and published with its last row cut short, until the
whole file superseded it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from fusionlake.lake import layout
from fusionlake.lake.layout import LANDING
from fusionlake.lake.ledger import DropEntry, Ledger, drop_id_for, legacy_drop_id, now_utc
from fusionlake.lake.store import LocalStore, ObjectInfo, ObjectStore, safe_part

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


#: Seconds a text file in a landing folder on disk must have been left alone, when its last
#: line has no line end yet, before it is landed as it is (some exports end without one).
SETTLE_SECONDS = 60


class DeliveryError(Exception):
    """A file that cannot be delivered; the message names it and says what to do."""


@dataclass(frozen=True)
class Delivered:
    path: Path
    key: str
    sha256: str = ""  # of the bytes delivered


@dataclass(frozen=True)
class Landed:
    """What landing did with one landing object."""

    landing_key: str
    # landed | duplicate | already (landed earlier or by a concurrent run) | skipped (not a
    # delivery: a system, lock or in-progress file) | misplaced (not landing/<agency>/<feed>/<file>)
    # | waiting (still being written in place, most likely: looked at again by the next run)
    status: str
    drop_id: str
    agency: str
    feed: str
    file_name: str
    raw_key: str | None
    message: str


#: Files that operating systems and desktop tools leave in a folder: never data.
_SYSTEM_FILES = {".ds_store": "a macOS folder settings file", "thumbs.db":
                 "a Windows thumbnail cache", "desktop.ini": "a Windows folder settings file"}
#: Endings of files that a browser, an upload tool or an editor is still writing.
_IN_PROGRESS = (".part", ".partial", ".crdownload", ".download", ".filepart", ".tmp", ".temp",
                ".swp", ".swx")


def not_a_delivery(file_name: str, hidden: bool = True) -> str | None:
    """Why a file of this name is not an agency's data file, or None if it may be one.
    ``hidden=False`` lets a hidden name pass (a file someone names to ``fusionlake drop`` is
    complete, and is delivered under its name without the dot).

    >>> not_a_delivery("~$detentions.xlsx")
    'an Office lock file (Excel writes one beside a workbook while it is open), not data'
    >>> not_a_delivery("detentions.xlsx") is None
    True
    """
    lower = file_name.lower()
    if lower in _SYSTEM_FILES:
        return f"{_SYSTEM_FILES[lower]}, not data"
    if file_name.startswith("~$"):
        return "an Office lock file (Excel writes one beside a workbook while it is open), not data"
    if file_name.startswith(".~lock."):
        return "a LibreOffice lock file (written while the file is open), not data"
    if file_name.startswith("._"):
        return "macOS metadata of another file (an AppleDouble file), not data"
    if file_name.startswith(".") and hidden:
        return ("a hidden file: upload tools (rsync, scp and SFTP clients) write a file under a "
                "hidden name and rename it when it is complete, so it is landed once renamed")
    if lower.endswith(_IN_PROGRESS):
        return ("a file still being written (its name ends as an upload, download or editor "
                "writes one in progress), so it is landed once renamed to its final name")
    if file_name.endswith("~"):
        return "an editor's backup copy, not a delivery"
    return None


def check_files(paths: list[Path]) -> list[Path]:
    """Refuse, before anything is written, any path that is not a readable non-empty file, or
    that is not a data file at all (:func:`not_a_delivery`)."""
    out = []
    for path in map(Path, paths):
        if not path.exists():
            raise DeliveryError(f"{path}: no such file")
        if path.is_dir():
            raise DeliveryError(f"{path}: is a directory; name the files in it instead")
        if not os.access(path, os.R_OK):
            raise DeliveryError(f"{path}: cannot be read (permission denied)")
        if path.stat().st_size == 0:
            raise DeliveryError(f"{path}: is empty; there is nothing to deliver")
        why = not_a_delivery(path.name, hidden=False)
        if why is not None:
            raise DeliveryError(f"{path}: {why}; leave it out")
        out.append(path)
    return out


def deliver(store: ObjectStore, agency: str, feed: str, paths: list[Path]) -> list[Delivered]:
    """Put files under ``landing/<agency>/<feed>/``, never replacing a delivered file.

    All paths are checked first. A name already delivered with other bytes gets the content
    hash appended, so a corrected file sent under the same name is not lost either.
    """
    paths = check_files(paths)
    try:
        prefix = layout.landing_prefix(safe_part(agency), safe_part(feed))
    except ValueError as exc:
        raise DeliveryError(f"agency or feed name unusable: {exc}") from None
    done = []
    for path in paths:
        data = path.read_bytes()
        name = safe_part(path.name)
        key = f"{prefix}/{name}"
        sha = hashlib.sha256(data).hexdigest()
        if not store.put_if_absent(key, data) and store.get(key) != data:
            stem, suffix = os.path.splitext(name)
            key = f"{prefix}/{stem}.{sha[:8]}{suffix}"
            store.put_if_absent(key, data)
        done.append(Delivered(path, key, sha))
    return done


def discover(store: ObjectStore, ledger: Ledger) -> list[ObjectInfo]:
    """Landing objects that no run has looked at yet (new names or changed content)."""
    seen = ledger.seen_names()
    return [i for i in store.list_info(LANDING) if not ledger.is_seen(i, seen)]


def left_in_landing(info: ObjectInfo) -> Landed | None:
    """What landing does with an object that is not a delivery it can land: leave it in
    landing, and say why (``skipped``: not data; ``misplaced``: not where a feed's files go).
    None for an object to land."""
    parts = PurePosixPath(info.key).parts
    agency, feed, name = (*parts[1:4], "", "", "")[:3]
    if info.key.endswith("/"):
        status, why = "skipped", "a folder marker (what S3 consoles write for a new folder)"
    elif (why := not_a_delivery(parts[-1])) is not None:
        status = "skipped"
    elif len(parts) != 4 or parts[0] != LANDING:
        status, why = "misplaced", ("not where a delivery goes (landing/<agency>/<feed>/"
                                    "<file>): move it there and the next run lands it")
    else:
        return None
    return Landed(info.key, status, "", agency, feed, name, None, f"{why}; left in landing")


#: How a text file's last line ends, in the encodings feeds use (UTF-16 and UTF-32 little-endian
#: put NULs after the line end; big-endian ones end with it).
LINE_ENDS = (b"\n", b"\r", b"\n\x00", b"\r\x00", b"\n\x00\x00\x00", b"\r\x00\x00\x00")


def being_written(file_name: str, data: bytes, age: float) -> str | None:
    """Why a text file in a landing folder looks half-written (its last line has no line end,
    and it was written to ``age`` seconds ago, under :data:`SETTLE_SECONDS`), or None.

    >>> being_written("detainees.jsonl", b'{"id": 1}\\n{"id": 2, "na', 5.0) is not None
    True
    >>> being_written("detainees.jsonl", b'{"id": 1}\\n', 5.0) is None
    True
    >>> being_written("list.csv", "id\\n1\\n".encode("utf-16"), 5.0) is None  # ends in \\n\\0
    True
    >>> why = being_written("list.csv", b"id\\n1,", 59.6)
    >>> "written to 59 s ago" in why, why.endswith("by the first run 1 s from now or later")
    (True, True)
    """
    text = FORMATS.get(os.path.splitext(file_name)[1].lower()) in ("csv", "jsonl")
    if not text or not data or data.endswith(LINE_ENDS) or age >= SETTLE_SECONDS:
        return None
    # whole seconds down: 59.6 s read "written to 60 s ago" beside "left alone for 60 s"
    return (f"its last line has no line end yet and it was written to {int(max(age, 0))} s ago: "
            "a transfer still writing it in place, most likely (SFTP and SMB clients write "
            "under the final name); it is landed once it ends with a line end, or once it has "
            f"been left alone for {SETTLE_SECONDS} s: by the first run "
            f"{math.ceil(SETTLE_SECONDS - max(age, 0))} s from now or later")


def sniff_encoding(data: bytes) -> str:
    """A first guess for the manifest; the reader decides with the feed definition."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if data[:4] == b"PK\x03\x04":
        return "binary (zip container)"
    try:
        data[: 1 << 16].decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the sample's end is still UTF-8
        return "utf-8" if exc.start > (1 << 16) - 4 else "not utf-8"


def known_drop(ledger: Ledger, agency: str, feed: str, sha: str) -> DropEntry | None:
    """The drop these bytes already are in this feed: under its id, or under the content-only
    id that lakes from before feed-aware ids gave it (ledger.drop_id_for)."""
    found = ledger.get(drop_id_for(agency, feed, sha))
    if found is not None:
        return found
    legacy = ledger.get(legacy_drop_id(sha))
    if legacy is not None and (legacy.agency, legacy.feed) == (agency, feed):
        return legacy
    return None


def delivered_at(info: ObjectInfo) -> datetime:
    """When a landing object was delivered: when it was last written, as the store lists it
    (never later than now). A drop's ``received_at``, which orders the drops of a feed
    (``supersede: by_source_key``: the later row wins), so it must follow the deliveries, not
    the order a run happens to land them in (side by side, or by name: ``drop`` names a second
    file of the same name ``<name>.<sha8>.<ext>``, which sorts first)."""
    now = now_utc()
    if info.modified is None:
        return now
    return min(datetime.fromtimestamp(info.modified, tz=UTC), now)


def land(store: ObjectStore, ledger: Ledger, info: ObjectInfo, run_id: str) -> Landed:
    """Copy one landing object to raw/ with its manifest, and claim it in the ledger.

    Idempotent and safe between concurrent runs: raw objects and the ledger claim are created
    with conditional writes, so a second run landing the same bytes ends with ``already``.
    An object that is not a delivery (:func:`left_in_landing`) stays where it is; it is marked
    seen, so it is reported once, and again only if it changes.
    """
    left = left_in_landing(info)
    if left is not None:
        ledger.mark_seen(info, left.status)
        return left
    _, agency, feed, file_name = PurePosixPath(info.key).parts
    if isinstance(store, LocalStore):
        data, age = store.get_aged(info.key)
        why = being_written(file_name, data, age)
        if why is not None:  # not marked seen: the next run looks at it again
            return Landed(info.key, "waiting", "", agency, feed, file_name, None, why)
    else:  # an S3 object is whole once it can be listed
        data = store.get(info.key)
    sha = hashlib.sha256(data).hexdigest()
    existing = known_drop(ledger, agency, feed, sha)
    drop_id = existing.drop_id if existing is not None else drop_id_for(agency, feed, sha)
    if existing is not None:
        ledger.mark_seen(info, drop_id)
        if existing.landing_key == info.key:
            return Landed(info.key, "already", drop_id, agency, feed, file_name,
                          existing.raw_key, "landed earlier")
        ledger.record_duplicate(drop_id, info.key, file_name, sha, run_id)
        return Landed(info.key, "duplicate", drop_id, agency, feed, file_name, existing.raw_key,
                      f"same bytes as {existing.file_name} (drop {drop_id}); not ingested again")

    raw_key = layout.raw_key(agency, feed, drop_id, file_name)
    received_at = delivered_at(info).isoformat()
    manifest = {
        "drop_id": drop_id,
        "agency": agency,
        "feed": feed,
        "file_name": file_name,
        "sha256": sha,
        "size": len(data),
        "received_at": received_at,
        "landing_key": info.key,
        "raw_key": raw_key,
        "format": FORMATS.get(os.path.splitext(file_name)[1].lower(), "unknown"),
        "encoding": sniff_encoding(data),
    }
    # raw first, ledger claim last: a crash in between leaves an unclaimed raw copy that the
    # next run completes (the raw writes are conditional and idempotent).
    store.put_if_absent(raw_key, data)
    store.put_if_absent(layout.raw_manifest_key(agency, feed, drop_id),
                        json.dumps(manifest, ensure_ascii=False, indent=1).encode())
    if not ledger.receive(manifest, run_id):
        # Another run (or another name for the same bytes in this run) claimed it first.
        ledger.mark_seen(info, drop_id)
        winner = ledger.get(drop_id)
        if winner is not None and winner.landing_key != info.key:
            ledger.record_duplicate(drop_id, info.key, file_name, sha, run_id)
            return Landed(info.key, "duplicate", drop_id, agency, feed, file_name,
                          winner.raw_key, f"same bytes as {winner.file_name} (drop {drop_id});"
                          " not ingested again")
        return Landed(info.key, "already", drop_id, agency, feed, file_name, raw_key,
                      "landed by a concurrent run")
    ledger.mark_seen(info, drop_id)
    return Landed(info.key, "landed", drop_id, agency, feed, file_name, raw_key,
                  f"{len(data):,} bytes, sha256 {sha[:12]}")
