"""One versioned-publish helper (fusionlake/lake/versions.py) for the resolution and the marts:
version names, the pointer, retention and stale unfinished versions, on both store backends."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from fusionlake.lake import layout, versions, zones
from fusionlake.lake.settings import Settings

NAME = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")
T0 = datetime(2026, 12, 2, 13, 39, 39, 123456, tzinfo=UTC)


def _tables(run: int) -> dict[str, pl.DataFrame]:
    return {"entity_record": pl.DataFrame({"entity_id": [f"E{run}"], "record_id": ["r1"]})}


def _resolution_versions(store) -> list[str]:
    return sorted({k.split("/")[1] for k in store.list(zones.RESOLUTION) if k.count("/") == 2})


def test_version_names_sort_by_time_and_read_back():
    name = versions.new_version(now=T0)
    assert NAME.match(name) and name.startswith("20261202T133939123456Z-")
    assert versions.version_time(name) == T0
    assert versions.new_version(now=T0 + timedelta(microseconds=1)) > name
    # the marts' earlier names still parse and sort before any later name
    assert versions.version_time("20261202T133939.123Z-0a1b2c3d") == T0.replace(microsecond=123000)
    assert versions.new_version(now=T0.replace(microsecond=0)) > "20261202T133939.123Z-0a1b2c3d"
    assert versions.version_time("LATEST") is None


def test_a_clock_behind_the_current_version_still_names_a_later_one():
    current = versions.new_version(now=T0)
    behind = versions.new_version(after=current, now=T0 - timedelta(hours=2))
    assert behind > current
    assert versions.version_time(behind) == T0 + timedelta(microseconds=1)


def test_resolution_keeps_the_newest_versions_and_the_current_one(store):
    written = [zones.write_resolution(store, _tables(i), run_id=f"run{i}", retention=2)
               for i in range(4)]
    assert written == sorted(written)
    assert _resolution_versions(store) == written[-2:]
    pointer = json.loads(store.get("resolution/LATEST"))
    assert pointer == {"version": written[-1], "run_id": "run3", "tables": ["entity_record"]}
    assert zones.resolution_keys(store) == {
        "entity_record": f"resolution/{written[-1]}/entity_record.parquet"}
    assert zones.read_resolution(store)["entity_record"]["entity_id"].to_list() == ["E3"]


def test_resolved_as_names_the_resolution_a_copy_was_made_from_until_retention_removes_it(
        store):
    """Marts of two audiences share a build when the versions they show are copies of one
    (fusionlake.pipeline.marts.build_and_publish): what each version is a copy of is in its
    manifest, and a version no longer kept is only itself."""
    assert zones.resolved_as(store, "cn_mps") is None  # before the audience's first
    first = zones.write_resolution(store, _tables(0), run_id="run0", retention=1)
    copy = zones.copy_resolution(store, "all", first, "run0", retention=1, audience="cn_mps")
    assert zones.resolved_as(store, "all") == zones.resolved_as(store, "cn_mps") == f"all/{first}"
    assert zones.resolved_as(store, "cn_mps", copy) == f"all/{first}"
    own = zones.write_resolution(store, _tables(1), run_id="run1", retention=1,
                                 audience="cn_mps")
    assert zones.resolved_as(store, "cn_mps") == f"cn_mps/{own}"
    assert zones.resolved_as(store, "cn_mps", copy) == f"cn_mps/{copy}"  # removed: only itself


def test_resolution_retention_defaults_to_the_setting(store):
    written = [zones.write_resolution(store, _tables(i), run_id=f"run{i}")
               for i in range(Settings.resolution_retention + 2)]
    assert _resolution_versions(store) == written[-Settings.resolution_retention:]


def test_retention_keeps_the_resolution_the_published_mart_shows_until_a_newer_mart(store):
    """Runs that stop before publishing (a full disk, a kill) may resolve several times while
    the mart still shows an old version; the next mart flags as new the matches made since
    that version, so it must outlive the others (marts._previous_resolution reads it)."""
    shown = zones.write_resolution(store, _tables(0), run_id="run0")
    versions.move_pointer(store, layout.mart_prefix("all"), {"version": "m0",
                                                             "resolution_version": shown})
    written = [zones.write_resolution(store, _tables(i), run_id=f"run{i}") for i in range(1, 6)]
    assert _resolution_versions(store) == [shown, *written[-Settings.resolution_retention:]]
    versions.move_pointer(store, layout.mart_prefix("all"), {"version": "m1",
                                                             "resolution_version": written[-1]})
    newest = zones.write_resolution(store, _tables(6), run_id="run6")
    assert _resolution_versions(store) == [*written[-2:], newest]  # the old one may go now


class _Watching:
    """A real store that, when a resolution's manifest is written (its tables all are, the
    pointer not yet), records what a reader of the lake sees at that moment."""

    def __init__(self, store):
        self._store = store
        self.seen: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self._store, name)

    def put(self, key, data):
        if key.startswith("resolution/") and key.endswith("/manifest.json"):
            self.seen.append(zones.read_resolution(self._store)["entity_record"]["entity_id"]
                             .to_list())
        self._store.put(key, data)


def test_the_previous_resolution_stays_readable_while_a_new_one_is_written(store):
    zones.write_resolution(store, _tables(1), run_id="run1", retention=1)
    watching = _Watching(store)
    zones.write_resolution(watching, _tables(2), run_id="run2", retention=1)
    assert watching.seen == [["E1"]]  # the resolver's previous entity_record, still current
    assert zones.read_resolution(store)["entity_record"]["entity_id"].to_list() == ["E2"]


def test_retention_removes_stale_unfinished_versions_only(store):
    now = datetime.now(UTC)
    crashed = versions.new_version(now=now - versions.STALE_UNFINISHED - timedelta(minutes=1))
    in_progress = versions.new_version(now=now - timedelta(minutes=5))
    store.put(f"resolution/{crashed}/entity_record.parquet", b"half")
    store.put(f"resolution/{in_progress}/entity_record.parquet", b"half")
    store.put("resolution/notes/readme.txt", b"not a version: left alone")
    current = zones.write_resolution(store, _tables(1), run_id="run1", retention=1)
    assert _resolution_versions(store) == sorted([in_progress, current, "notes"])


def test_the_current_version_is_kept_even_when_not_among_the_newest(store):
    # a newer complete version that never became current (its writer died before the pointer)
    old = versions.new_version(now=T0)
    newer = versions.new_version(now=T0 + timedelta(seconds=1))
    for version in (old, newer):
        store.put(f"p/{version}/data", b"x")
        versions.finish(store, "p", version, {"version": version})
    assert versions.move_pointer(store, "p", {"version": old}) is True
    assert versions.move_pointer(store, "p", {"version": old}) is False  # never backwards
    assert versions.apply_retention(store, "p", keep=1) == []
    assert versions.complete_versions(store, "p") == [newer, old]
    with pytest.raises(ValueError, match="at least 1"):
        versions.apply_retention(store, "p", keep=0)


def test_a_pointer_overwritten_or_naming_a_missing_version_is_pointed_again(store):
    """A hostile walk of 2026-12-07: a LATEST written over with garbage gave tracebacks in
    `sql` and `run`; one naming a version that is not there left `sql` failing while every run
    said "nothing new". Reading one is one line naming it; the run's clean start points it
    again at the newest complete version (whose manifest is the pointer it was published with),
    or removes it when none is complete."""
    from fusionlake.lake.store import LakeError

    for run in (1, 2):
        zones.write_resolution(store, _tables(run), run_id=f"r{run}", retention=5)
    prefix, newest = zones.RESOLUTION, versions.read_pointer(store, zones.RESOLUTION)
    assert versions.repair_pointer(store, prefix) is None  # sound: left alone

    store.put(f"{prefix}/LATEST", b"{not json")
    with pytest.raises(LakeError) as caught:
        versions.read_pointer(store, prefix)
    assert str(caught.value) == (
        f"{store.uri}/{prefix}/LATEST is not a pointer (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1)): the next `fusionlake run` points it again "
        "at the newest complete version")
    assert versions.repair_pointer(store, prefix) == (
        f"{prefix}/LATEST was not a pointer: pointed again at {newest['version']}")
    assert versions.read_pointer(store, prefix) == newest

    store.put(f"{prefix}/LATEST", json.dumps({**newest, "version": "29991231T000000000000Z-"
                                                                   "abcdef"}).encode())
    assert versions.repair_pointer(store, prefix) == (
        f"{prefix}/LATEST named version 29991231T000000000000Z-abcdef, which is not complete: "
        f"pointed again at {newest['version']}")
    assert versions.read_pointer(store, prefix) == newest
    assert zones.read_resolution(store)["entity_record"]["entity_id"].to_list() == ["E2"]

    # gone (deleted by hand): `sql` said there was no mart until some new input came
    store.delete(f"{prefix}/LATEST")
    assert versions.repair_pointer(store, prefix) == (
        f"{prefix}/LATEST was gone: pointed again at {newest['version']}")
    assert versions.read_pointer(store, prefix) == newest

    for version in versions.complete_versions(store, prefix):
        versions.remove_version(store, prefix, version)
    assert versions.repair_pointer(store, prefix) == (
        f"{prefix}/LATEST named version {newest['version']}, which is not complete, and no "
        "version is complete: removed")
    assert versions.read_pointer(store, prefix) is None
    assert versions.repair_pointer(store, prefix) is None  # nothing to point at
