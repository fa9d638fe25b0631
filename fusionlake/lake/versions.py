"""Versioned publishing: write under a new version, then move one small pointer.

Whatever the lake publishes whole and replaces whole (the resolution, each audience's mart) is
kept under one prefix like this::

    <prefix>/<version>/...              the version's objects, written first
    <prefix>/<version>/manifest.json    written last: the version is complete
    <prefix>/LATEST                     the pointer readers follow, moved after the manifest

Readers never see half a write (docs/architecture.md, property 3): they follow ``LATEST``,
which only ever names a complete version, and the version it named before stays in place until
retention removes it, after the pointer has moved.

Version names are ``<UTC time to the microsecond>Z-<6 random hex digits>``, e.g.
``20261202T133939123456Z-4f0c2a``: they sort by time as strings, and two machines writing in
the same microsecond still pick different names.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from fusionlake.lake.faults import kill_point
from fusionlake.lake.layout import LATEST
from fusionlake.lake.lease import check_fence
from fusionlake.lake.store import LakeError, NotFound, ObjectStore

POINTER = LATEST
MANIFEST = "manifest.json"
#: A version without its manifest older than this is a crashed write, not one in progress.
STALE_UNFINISHED = timedelta(hours=1)

# Also matches the marts' earlier names (``20261202T133939.123Z-<8 hex>``), which sort before
# any later name of this format, so lakes published before keep their order and retention.
_NAME = re.compile(r"^(\d{8}T\d{6})\.?(\d{1,6})Z-[0-9a-f]+$")


def new_version(after: str | None = None, now: datetime | None = None) -> str:
    """A new version name, later than ``after`` (the current version), if given.

    A machine whose clock is behind the one that wrote ``after`` still names a later version,
    so the pointer always moves forward.
    """
    now = now or datetime.now(UTC)
    previous = version_time(after) if after else None
    if previous is not None and previous >= now:
        now = previous + timedelta(microseconds=1)
    return f"{now:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:6]}"


def is_version(name: str) -> bool:
    """Whether a folder name is a version name."""
    return _NAME.match(name) is not None


def version_time(name: str) -> datetime | None:
    """When a version was started, from its name (None for a name that is not a version)."""
    m = _NAME.match(name)
    if m is None:
        return None
    # %f reads "123" as 0.123 s: the earlier millisecond names parse as they should
    return datetime.strptime(m.group(1) + m.group(2), "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)


def version_prefix(prefix: str, version: str) -> str:
    """The folder of one version's objects."""
    return f"{prefix}/{version}"


class UnreadablePointer(LakeError):
    """A LATEST that is not a pointer (overwritten, cut short): one line naming it."""


def read_pointer(store: ObjectStore, prefix: str) -> dict | None:
    """The current pointer (at least ``version``), or None before the first version;
    :class:`UnreadablePointer` when the object is there but no pointer."""
    try:
        data = store.get(f"{prefix}/{POINTER}")
    except NotFound:
        return None
    try:
        pointer = json.loads(data)
        if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), str):
            raise ValueError("no version in it")
    except ValueError as exc:
        raise UnreadablePointer(
            f"{store.uri}/{prefix}/{POINTER} is not a pointer ({str(exc)[:80]}): the next "
            "`fusionlake run` points it again at the newest complete version") from None
    return pointer


def repair_pointer(store: ObjectStore, prefix: str) -> str | None:
    """Point ``prefix``'s LATEST again at its newest complete version when it is gone,
    unreadable or names a version that is not complete (a version's manifest is the pointer it
    was published with); what was done, or None when the pointer is sound or there is no
    version to point at.
    Only the lease holder may call this: it moves the pointer, backwards if need be."""
    pointer = None
    try:
        pointer = read_pointer(store, prefix)
        if pointer is not None and store.exists(
                f"{version_prefix(prefix, pointer['version'])}/{MANIFEST}"):
            return None
        what = ("was gone" if pointer is None
                else f"named version {pointer['version']}, which is not complete")
    except UnreadablePointer:
        what = "was not a pointer"
    for version in complete_versions(store, prefix):
        try:
            manifest = json.loads(store.get(f"{version_prefix(prefix, version)}/{MANIFEST}"))
        except (NotFound, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("version") == version:
            check_fence(store)
            store.put(f"{prefix}/{POINTER}", json.dumps(manifest, indent=2).encode())
            return f"{prefix}/{POINTER} {what}: pointed again at {version}"
    if what == "was gone":
        return None  # no version yet: nothing to point at
    check_fence(store)
    store.delete(f"{prefix}/{POINTER}")
    return f"{prefix}/{POINTER} {what}, and no version is complete: removed"


def finish(store: ObjectStore, prefix: str, version: str, manifest: dict) -> None:
    """Mark a version complete: every object of it must be written before this."""
    kill_point("before-manifest", prefix)  # crash tests: a version left without its manifest
    store.put(f"{version_prefix(prefix, version)}/{MANIFEST}",
              json.dumps(manifest, indent=2).encode())


def move_pointer(store: ObjectStore, prefix: str, pointer: dict) -> bool:
    """Point readers at ``pointer["version"]``; returns False if a newer version is current.

    The pointer never moves backwards: a slower concurrent writer of an older version must not
    replace a newer one (its version stays stored until retention removes it). The pointer is
    one small object replaced whole (``store.put``), so a reader sees the old or the new one.
    A run that lost its lease raises LeaseLost here instead of moving it (lease.py, "Fencing").
    """
    current = read_pointer(store, prefix)
    if current is not None and current["version"] >= pointer["version"]:
        return False
    check_fence(store)
    store.put(f"{prefix}/{POINTER}", json.dumps(pointer, indent=2).encode())
    return True


def _version_keys(store: ObjectStore, prefix: str) -> dict[str, list[str]]:
    """Every version folder under ``prefix`` with its objects (other folders are left alone).

    Writes that never finished count too (a crashed upload's temp file or multipart upload):
    a version holding only such a write is still a version, unfinished, for retention to see.
    """
    out: dict[str, list[str]] = {}
    partial = [p.key for p in store.partial_writes(prefix)]
    for key in store.list(prefix) + partial:
        rest = key[len(prefix) + 1 :]
        if "/" in rest and is_version(version := rest.split("/", 1)[0]):
            out.setdefault(version, []).append(key)
    return out


def complete_versions(store: ObjectStore, prefix: str) -> list[str]:
    """The versions that have their manifest, newest first."""
    return sorted((v for v, keys in _version_keys(store, prefix).items()
                   if f"{version_prefix(prefix, v)}/{MANIFEST}" in keys), reverse=True)


def remove_version(store: ObjectStore, prefix: str, version: str) -> None:
    """Delete every object of a version (the manifest last, so that it never looks complete
    while some of its objects are already gone), and what unfinished writes left in it."""
    base = version_prefix(prefix, version)
    for partial in store.partial_writes(base):
        store.discard_partial(partial)
    keys = store.list(base)
    for key in sorted(keys, key=lambda k: k.endswith(f"/{MANIFEST}")):
        store.delete(key)


def unfinished_versions(store: ObjectStore, prefix: str) -> list[str]:
    """Versions without their manifest (being written, or left by a crashed run), oldest
    first."""
    return sorted(v for v, keys in _version_keys(store, prefix).items()
                  if f"{version_prefix(prefix, v)}/{MANIFEST}" not in keys)


def apply_retention(store: ObjectStore, prefix: str, keep: int, *,
                    stale_after: timedelta = STALE_UNFINISHED,
                    now: datetime | None = None, also_keep: Collection[str] = ()) -> list[str]:
    """Remove old versions; returns the versions removed.

    Kept: the newest ``keep`` complete versions, the current one (whatever its age), those in
    ``also_keep`` (still in use elsewhere), and unfinished versions younger than
    ``stale_after`` (possibly a write in progress elsewhere).
    Call it after moving the pointer, so the version that was current until then is counted
    among the complete ones, not removed while a reader may still be on it.
    """
    if keep < 1:
        raise ValueError(f"retention must keep at least 1 version, not {keep}")
    now = now or datetime.now(UTC)
    found = _version_keys(store, prefix)
    complete = sorted((v for v, keys in found.items()
                       if f"{version_prefix(prefix, v)}/{MANIFEST}" in keys), reverse=True)
    kept = set(complete[:keep]) | set(also_keep)
    current = read_pointer(store, prefix)
    if current is not None:
        kept.add(current["version"])
    removed = []
    for version in sorted(found):
        if version in kept:
            continue
        if version not in complete and now - version_time(version) < stale_after:
            continue
        remove_version(store, prefix, version)
        removed.append(version)
    return removed
