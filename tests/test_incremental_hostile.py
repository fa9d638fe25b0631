"""Incremental runs when things go wrong: a flaky store, two runs at once, a run killed between
resolving and publishing, a disk that fills, and malformed files delivered beside a good
follow-up drop.

The scenario is test_incremental_runs' (its module fixture: 2,000 generated people, the Myanmar
police's detainee file split so that its last 60 rows come as a follow-up drop); each test starts
from a copy of the lake after the first run. The yardstick is the same follow-up run on a clean
copy, uninterrupted (``follow_up``): the faulted and the killed runs must end with its resolution
frames and mart tables, compared without the columns that say when or by which run something
happened (test_faults' ``_VOLATILE``). The S3 run goes through tests/faultproxy.py at a 15 %
fault rate (about 150 faults of every kind in one run; test_faults runs a whole first run at
30 %); the concurrent and the killed runs are subprocesses of fusionlake.pipeline.run
(``FUSIONLAKE_KILL_AT`` kills one with SIGKILL at a named point, fusionlake/lake/faults.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
import test_incremental_runs as incremental
from faultproxy import FAULTS
from polars.testing import assert_frame_equal
from test_faults import _VOLATILE, _mart_tables, _without_column
from test_incremental_runs import GROUP, _mode, _pointer, _state_file

from fusionlake.lake import layout, versions, zones
from fusionlake.lake.ledger import Ledger
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import OutOfSpace, open_store
from fusionlake.pipeline import marts
from fusionlake.pipeline.land import deliver
from fusionlake.pipeline.resolve import read_state
from fusionlake.pipeline.run import run

pytestmark = pytest.mark.slow

# test_incremental_runs' module fixtures, computed once for this module too: the generated
# scenario with its lake after the first run, and a fresh copy of that lake for each test
scenario = incremental.scenario
lake = incremental.lake

AUDIENCES = ("all", "cn_mps", "mm_police", "th_imm")


def _copy(source, target) -> None:
    for key in source.list(""):
        target.put(key, source.get(key))


def _resolutions(store) -> dict[tuple[str, str], pl.DataFrame]:
    """Every audience's current resolution frames, without their volatile columns, sorted."""
    out = {}
    for audience in AUDIENCES:
        for name, frame in zones.read_resolution(store, audience).items():
            frame = frame.select([c for c in frame.columns if not _VOLATILE.search(c)])
            out[audience, name] = frame.sort(frame.columns, nulls_last=True)
    return out


def _marts(store) -> dict[str, dict[str, pl.DataFrame]]:
    """Every audience's published mart, table by table, without volatile columns."""
    out = {}
    for audience in AUDIENCES:
        con = marts.open_latest(store, audience)
        try:
            out[audience] = _mart_tables(con)
        finally:
            con.close()
    return out


def _assert_same(mine: dict, theirs: dict) -> None:
    assert mine.keys() == theirs.keys()
    for name, frame in mine.items():
        if isinstance(frame, dict):
            try:
                _assert_same(frame, theirs[name])
            except AssertionError as exc:
                raise AssertionError(f"{name}/{exc}") from None
        else:
            try:
                assert_frame_equal(frame, theirs[name])
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from None


def _states(store) -> dict[str, str]:
    return {e.file_name: str(e.state) for e in Ledger(store).entries()}


@pytest.fixture(scope="module")
def follow_up(scenario, tmp_path_factory):
    """The yardstick: the follow-up drop resolved incrementally on a clean local copy of the
    lake, nothing in its way; (store, run summary)."""
    path = tmp_path_factory.mktemp("follow_up") / "lake"
    shutil.copytree(scenario[3], path)
    store = open_store(str(path))
    deliver(store, "mm_police", "detainees", [scenario[2]])
    summary = run(Settings(lake=str(path)))
    assert not summary.problems, summary.problems
    assert _mode(summary)["mode"] == "incremental", _mode(summary)
    return store, summary


# -- an analyst of another agency ---------------------------------------------------------------


def test_marts_copied_from_an_in_place_update_equal_whole_builds_of_the_same_resolutions(
        follow_up, tmp_path):
    """th_imm's mart is a copy of mm_police's in-place update, cn_mps's of the task force's
    (audiences that see the same rows and show copies of one resolution). An analyst of each
    sees exactly what a whole build of the same resolutions gives that audience: no row more,
    none less. (A whole build flags no cross-agency match as new since the mart it replaces,
    which already showed this resolution: that column is left out.)"""
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.pipeline.publish import publish_marts
    from fusionlake.pipeline.resolve import staged_scans

    clean, summary = follow_up
    assert {a: b["mode"] for a, b in summary.mart_builds.items()} == {
        "all": "updated", "cn_mps": "copied", "mm_police": "updated", "th_imm": "copied"}
    shutil.copytree(clean.root, tmp_path / "lake")
    store = open_store(str(tmp_path / "lake"))
    feeds = load_feeds()
    with staged_scans(store, Ledger(store), feeds) as (scans, _superseded):
        publish_marts(store, Ledger(store), feeds, Settings.mart_retention, scans, full=True)
    assert {a: marts.latest(store, a)["build"]["mode"] for a in AUDIENCES} == {
        "all": "rebuilt", "cn_mps": "copied", "mm_police": "rebuilt", "th_imm": "copied"}
    whole, updated = _marts(store), _marts(clean)
    for tables in (*whole.values(), *updated.values()):
        tables["entity"] = tables["entity"].drop("new_cross_agency_match")
    _assert_same(updated, whole)


# -- a flaky store ------------------------------------------------------------------------------


def test_a_follow_up_run_at_15_percent_faults_ends_as_on_a_clean_store(
        scenario, follow_up, s3_endpoint, s3_bucket, fault_proxy, monkeypatch):
    clean, clean_summary = follow_up
    uri = f"s3://{s3_bucket}/lake"
    store = open_store(uri)
    _copy(open_store(str(scenario[3])), store)
    deliver(store, "mm_police", "detainees", [scenario[2]])

    monkeypatch.setenv("AWS_ENDPOINT_URL", fault_proxy.url)  # every client of the run
    fault_proxy.rate = 0.15
    summary = run(Settings(lake=uri))
    injected = dict(fault_proxy.counts)
    fault_proxy.rate = 0.0
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # straight to moto from here on
    assert all(injected.get(f, 0) > 5 for f in FAULTS), injected

    assert not summary.problems, summary.problems
    modes = summary.resolution_stats["resolve mode"]
    assert {g: m["mode"] for g, m in modes.items()} == {
        "all+cn_mps": "incremental", "mm_police+th_imm": "incremental"}
    assert modes == clean_summary.resolution_stats["resolve mode"]
    assert {a: b["mode"] for a, b in summary.mart_builds.items()} == {
        a: b["mode"] for a, b in clean_summary.mart_builds.items()}
    assert summary.mart_builds["all"]["mode"] == "updated"
    assert _states(store) == _states(clean)
    _assert_same(_resolutions(store), _resolutions(clean))
    _assert_same(_marts(store), _marts(clean))


def test_a_drop_only_its_sender_may_see_leaves_the_other_marts_through_15_percent_faults(
        scenario, s3_endpoint, s3_bucket, fault_proxy, monkeypatch, tmp_path):
    """The flaky store and the curious analyst at once: fraud reports only China's police may
    see, run on an S3 lake through 15% faults. Thailand's and Myanmar's resolutions and marts
    stay as they were (a new version would tell their analysts, by its time, that something
    arrived); China's and the task force's show the new reports."""
    uri = f"s3://{s3_bucket}/lake"
    store = open_store(uri)
    _copy(open_store(str(scenario[3])), store)
    [source] = (scenario[0] / "cn_mps" / "fraud_reports").iterdir()
    header, *rows = source.read_bytes().split(b"\n")
    hidden = tmp_path / "fraud_reports_more.csv"  # five new cases (other case numbers)
    hidden.write_bytes(b"\n".join([header, *(r.replace(b"BA", b"BZ", 1) for r in rows[:5])])
                       + b"\n")
    others = ("th_imm", "mm_police")
    before = {a: (marts.latest(store, a), _pointer(store, a)) for a in others}
    deliver(store, "cn_mps", "fraud_reports", [hidden])

    monkeypatch.setenv("AWS_ENDPOINT_URL", fault_proxy.url)  # every client of the run
    fault_proxy.rate = 0.15
    summary = run(Settings(lake=uri))
    injected = sum(fault_proxy.counts.values())
    fault_proxy.rate = 0.0
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # straight to moto from here on
    assert injected > 5, fault_proxy.counts

    assert not summary.problems, summary.problems
    assert sorted(summary.marts_kept) == sorted(others)
    assert {a: (marts.latest(store, a), _pointer(store, a)) for a in others} == before
    for audience, seen in (("cn_mps", 5), ("all", 5), ("th_imm", 0)):
        con = marts.open_latest(store, audience)
        try:
            [(n,)] = con.execute("SELECT count(*) FROM entity_record WHERE feed = "
                                 "'fraud_reports' AND source_key LIKE 'BZ%'").fetchall()
        finally:
            con.close()
        assert n == seen, (audience, n)


def _steward_strings(store, audience: str) -> set[str]:
    """The texts of an audience's stewards' tables (quarantined rows and their reasons, drop
    file names and reasons, the audit trail), as its mart's SQL shows them."""
    con = marts.open_latest(store, audience)
    try:
        rows = con.execute("""
            SELECT row_json FROM quarantine UNION SELECT reason FROM quarantine
            UNION SELECT file_name FROM drop_ledger UNION SELECT reason FROM drop_ledger
            UNION SELECT summary FROM audit_log UNION SELECT detail FROM audit_log""").fetchall()
    finally:
        con.close()
    return {text for (text,) in rows if text and len(text) >= 12}


def _assert_no_mart_file_holds_what_its_audience_may_not_see(store) -> None:
    """No byte of any published version of an audience's mart file spells a text of the
    stewards' tables that its SQL does not show. Reading the file, not querying it: DuckDB
    leaves the bytes of replaced rows in a file's free blocks, out of SQL's sight."""
    everything = _steward_strings(store, "all")
    found = {a: b"".join(store.get(k) for k in store.list(f"marts/{a}/")
                         if k.endswith(marts.MART_FILE)) for a in AUDIENCES}
    # the texts are stored as written: the task force's own files spell them
    assert sum(text.encode() in found["all"] for text in everything) >= 3
    for audience in AUDIENCES[1:]:
        hidden = everything - _steward_strings(store, audience)
        assert hidden, audience  # another agency's quarantine, the audit trail
        leaked = [text for text in hidden if text.encode() in found[audience]]
        assert not leaked, (audience, leaked[:3])


def test_no_mart_file_holds_what_its_audience_may_not_see_in_its_free_blocks(
        lake, scenario, tmp_path):
    """An agency's analyst has the mart file (`fusionlake mart-path`), not only its SQL. The
    marts of audiences that see the same rows share their work, but none of their files may
    start as the other's: the all-agencies mart's audit trail must not be in the bytes of
    China's, nor a line Myanmar's police had quarantined in those of Thailand's immigration,
    after a full build (the first run) or an in-place update."""
    store = open_store(lake)
    _assert_no_mart_file_holds_what_its_audience_may_not_see(store)
    marts.run_query(store, "SELECT 'OPERATION NIGHTJAR, task force only'", who="taskforce_lead")
    follow_up = tmp_path / "detainees_2.jsonl"
    follow_up.write_text(scenario[2].read_text(encoding="utf-8")
                         + '{"detainee_no": "ZZQX-informant-handler-KHIN-MAR\n', encoding="utf-8")
    deliver(store, "mm_police", "detainees", [follow_up])
    summary = run(Settings(lake=lake))
    assert not summary.problems, summary.problems
    assert {a: b["mode"] for a, b in summary.mart_builds.items()} == {
        "all": "updated", "cn_mps": "copied", "mm_police": "updated", "th_imm": "copied"}
    assert "ZZQX-informant" in incremental._mart_rows(
        store, "SELECT string_agg(row_json, ' ') FROM quarantine", "mm_police")[0][0]
    _assert_no_mart_file_holds_what_its_audience_may_not_see(store)


# -- two runs at once, and a run killed before it published ---------------------------------

_RUN = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from fusionlake.lake.settings import Settings
    from fusionlake.pipeline.run import run
    lake, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    ready.touch()
    while not go.exists():  # the test starts every process's run at the same moment
        time.sleep(0.005)
    summary = run(Settings(lake=lake), lease_wait=float(sys.argv[4]))
    print(json.dumps(summary.as_json()))
""")


def _start(lake: str, work: Path, n: int, wait: float = 600) -> list[subprocess.Popen]:
    """``n`` runs in processes of their own, released together once all have started."""
    work.mkdir(parents=True, exist_ok=True)
    go = work / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RUN, lake, str(work / f"ready-{i}"),
                               str(go), str(wait)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    deadline = time.monotonic() + 300
    while not all((work / f"ready-{i}").exists() for i in range(n)):
        assert time.monotonic() < deadline, "the runs did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    go.touch()
    return procs


def _race(lake: str, work: Path) -> tuple[list[dict], list[dict]]:
    """Two runs released together: the summaries of the one that published marts and of the
    one that did not (one each)."""
    procs = _start(lake, work, 2)
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    worked = [s for s in summaries if s["marts"]]
    waited = [s for s in summaries if not s["marts"]]
    assert len(worked) == 1 and len(waited) == 1, summaries
    return worked, waited


def _halves(follow_up_file: Path, folder: Path) -> tuple[Path, Path]:
    lines = follow_up_file.read_text(encoding="utf-8").splitlines(keepends=True)
    a, b = folder / "detainees_2a.jsonl", folder / "detainees_2b.jsonl"
    a.write_text("".join(lines[:30]), encoding="utf-8")
    b.write_text("".join(lines[30:]), encoding="utf-8")
    return a, b


def _mart_records(store, audience: str = "all") -> pl.DataFrame:
    con = marts.open_latest(store, audience)
    try:
        return con.sql("SELECT record_id, entity_id FROM entity_record").pl().sort("record_id")
    finally:
        con.close()


def _mart_resolution_version(store, audience: str = "all") -> str:
    con = marts.open_latest(store, audience)
    try:
        return con.execute("SELECT resolution_version FROM mart_info").fetchone()[0]
    finally:
        con.close()


def _staged_ids(store, drop_ids: list[str]) -> set[str]:
    person = zones.read_staged(store, "person_record", set(drop_ids))
    return set(person["record_id"])


def test_two_runs_started_together_resolve_a_drop_once_and_the_next_incrementally(
        lake, scenario, tmp_path):
    store = open_store(lake)
    first_version = _pointer(store)["version"]
    half, rest = _halves(scenario[2], tmp_path)
    deliver(store, "mm_police", "detainees", [half])

    # one run did the work; the other waited for the lease and found nothing new
    worked, waited = _race(lake, tmp_path / "race")
    assert worked[0]["resolve_mode"][GROUP]["mode"] == "incremental"
    assert "30 new records" in worked[0]["resolve_mode"][GROUP]["why"]
    assert waited[0]["noop"] and not waited[0]["resolve_mode"] and not waited[0]["drops"]

    # one resolution version more, incremental of the first run's, with its own kept state
    pointer = _pointer(store)
    assert versions.complete_versions(store, layout.RESOLUTION)[:2] == [pointer["version"],
                                                                        first_version]
    assert pointer["incremental_of"] == first_version
    assert pointer["run_id"] == worked[0]["run_id"]
    resolution = zones.read_resolution(store)
    kept = read_state(store, "all", pointer["version"], tmp_path / "state")
    assert kept.info["incremental_runs"] == 1
    kept_ids = pl.scan_parquet(kept.match_files).select("record_id").collect()["record_id"]
    assert kept_ids.sort().equals(resolution["entity_record"]["record_id"].sort())
    # the mart holds exactly that resolution
    assert _mart_resolution_version(store) == pointer["version"]
    assert _mart_records(store).equals(
        resolution["entity_record"].select("record_id", "entity_id").sort("record_id"))
    # the drop was staged and published once, by the run that did the work
    drop = next(e for e in Ledger(store).entries() if e.file_name == half.name)
    assert str(drop.state) == "published"
    events = Ledger(store).events(drop.drop_id)
    assert [e["state"] for e in events] == ["received", "validated", "staged", "published"]
    assert {e["run_id"] for e in events} == {worked[0]["run_id"]}
    # the other run had the lake only once the marts were published, and let it go too
    leases = {body["run_id"]: body for body in (
        json.loads(store.get(k)) for k in store.list(layout.lease_prefix("pipeline"))
        if k.endswith(".json"))}
    published_at = datetime.fromisoformat(marts.latest(store, "all")["published_at"])
    assert datetime.fromisoformat(leases[waited[0]["run_id"]]["acquired_at"]) > published_at
    assert sorted(store.list(layout.lease_prefix("pipeline")))[-1].endswith(".released")

    deliver(store, "mm_police", "detainees", [rest])
    summary = run(Settings(lake=lake))
    assert not summary.problems, summary.problems
    assert _mode(summary)["mode"] == "incremental", _mode(summary)
    assert "30 new records" in _mode(summary)["why"]
    assert _pointer(store)["incremental_of"] == pointer["version"]
    assert summary.mart_builds["all"]["mode"] == "updated"
    new = _staged_ids(store, [e.drop_id for e in Ledger(store).entries()
                              if e.file_name in (half.name, rest.name)])
    assert len(new) == 60
    assert new <= set(_mart_records(store)["record_id"])


_KILLED_RUN = ("import sys; from fusionlake.lake.settings import Settings; "
               "from fusionlake.pipeline.run import run; run(Settings(lake=sys.argv[1]))")


def test_a_run_killed_between_resolving_and_publishing_is_completed_by_the_next(
        lake, scenario, follow_up, tmp_path):
    # (a run killed in the middle of the mart update: test_marts_incremental)
    store = open_store(lake)
    first_version = _pointer(store)["version"]
    published = {a: marts.latest(store, a) for a in AUDIENCES}
    records = _mart_records(store)
    deliver(store, "mm_police", "detainees", [scenario[2]])
    # killed as the first mart's version is being finished: uploaded, not yet complete
    env = {**os.environ, "FUSIONLAKE_KILL_AT": "before-manifest:marts/"}
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, lake], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == -9, proc.stderr[-2000:]

    # the resolution was written, incremental, with its kept state ...
    pointer = _pointer(store)
    assert pointer["incremental_of"] == first_version
    assert store.exists(_state_file(store))
    # ... but no mart moved: each is the one published before, readable, without the new rows
    assert {a: marts.latest(store, a) for a in AUDIENCES} == published
    assert _mart_resolution_version(store) == first_version
    assert _mart_records(store).equals(records)
    # the first mart to finish (the groups' updates run side by side: either group's)
    assert any(versions.unfinished_versions(store, layout.mart_prefix(a)) for a in AUDIENCES)
    drop = next(e for e in Ledger(store).entries() if e.file_name == scenario[2].name)
    assert str(drop.state) == "staged"

    summary = run(Settings(lake=lake))  # the lease of a dead process on this host is free
    assert not summary.problems, summary.problems
    assert any("unfinished versions" in n for n in summary.notes), summary.notes
    assert not any(versions.unfinished_versions(store, layout.mart_prefix(a))
                   for a in AUDIENCES)
    # the next run found no record new since the killed run's resolution, which stands (no
    # resolution again), and updated each mart in place from the version published before
    # with that resolution's delta; the lake ends as if the run had never been killed
    assert _pointer(store) == pointer
    assert {m["mode"] for m in summary.resolution_stats["resolve mode"].values()} == {
        "unchanged"}
    build = summary.mart_builds["all"]
    assert (build["mode"], build["why"]) == (
        "updated", f"in place from version {published['all']['version']}")
    assert str(Ledger(store).get(drop.drop_id).state) == "published"
    assert _mart_resolution_version(store) == _pointer(store)["version"]
    clean, _ = follow_up
    assert _states(store) == _states(clean)
    _assert_same({k: f for k, f in _resolutions(store).items() if k[1] != "resolution_delta"},
                 {k: f for k, f in _resolutions(clean).items() if k[1] != "resolution_delta"})
    _assert_same(_marts(store), _marts(clean))


@pytest.fixture(scope="module")
def correction(scenario, tmp_path_factory):
    """A second yardstick: Myanmar's police re-send one detainee (test_incremental_runs'
    ``corrected_row``: the row supersedes its first record by its key, so the run resolves in
    full), run on a clean local copy of the lake; (store, the person's entity id, the file,
    the run's summary)."""
    folder = tmp_path_factory.mktemp("correction")
    shutil.copytree(scenario[3], folder / "lake")
    store = open_store(str(folder / "lake"))
    entity, fix = incremental.corrected_row(store, scenario, folder)
    deliver(store, "mm_police", "detainees", [fix])
    summary = run(Settings(lake=store.uri))
    assert not summary.problems, summary.problems
    assert _mode(summary)["mode"] == "full"
    return store, entity, fix, summary


def test_a_corrected_row_does_not_make_a_known_cross_agency_match_new(correction):
    """An agency re-sends the row of a person it already shares with another agency: the row's
    record is new, the match is not. The mart's rule (entity.new_cross_agency_match), in every
    audience that sees the person, and the run summary's count must both say so. Before, both
    counted the match as new: only the records still staged linked the entity to its previous
    self, and they were of one agency."""
    store, entity, fix, summary = correction
    for audience in ("all", "mm_police"):
        [(now, new, cross, news)] = incremental._mart_rows(store, f"""
            SELECT e.entity_id, e.new_cross_agency_match, e.agency_count,
                   (SELECT count(*) FILTER (new_cross_agency_match) FROM entity)
            FROM entity AS e JOIN entity_record AS r USING (entity_id)
            WHERE r.agency = 'mm_police' AND r.drop_id = (
                SELECT drop_id FROM drop_ledger WHERE file_name = '{fix.name}')""", audience)
        assert cross == 2 and not new, (audience, now, new, cross)
        assert now == entity  # the same person keeps the id
        if audience == "all":  # the summary counts the task force's resolution
            assert summary.resolution_stats["new cross-agency matches"] == news


def _end_as_the_clean_correction(store, correction) -> None:
    """The lake as after the clean correction: the same drop states, resolutions (but the
    delta of a run that found nothing new since a killed run's resolution) and marts, the
    corrected person's match new in none of them."""
    clean, entity, _fix, _summary = correction
    assert _states(store) == _states(clean)
    _assert_same({k: f for k, f in _resolutions(store).items() if k[1] != "resolution_delta"},
                 {k: f for k, f in _resolutions(clean).items() if k[1] != "resolution_delta"})
    mine = _marts(store)
    _assert_same(mine, _marts(clean))
    for audience in ("all", "mm_police"):
        entities = mine[audience]["entity"]
        assert entities.filter(pl.col("entity_id") == entity)[
            "new_cross_agency_match"].to_list() == [False]
    assert not store.partial_writes("")
    assert not any(versions.unfinished_versions(store, layout.mart_prefix(a))
                   for a in AUDIENCES)


def test_a_run_killed_after_resolving_a_correction_is_completed_by_the_next(lake, correction):
    """A correction makes a full resolution. Killed as its first mart is being finished, the
    run leaves every mart as it was; the next run publishes them, and the lake ends as the
    clean run's over the same correction."""
    store = open_store(lake)
    published = {a: marts.latest(store, a) for a in AUDIENCES}
    deliver(store, "mm_police", "detainees", [correction[2]])
    env = {**os.environ, "FUSIONLAKE_KILL_AT": "before-manifest:marts/"}
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, lake], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert {a: marts.latest(store, a) for a in AUDIENCES} == published
    assert "resolution_delta" not in zones.read_resolution(store)  # it resolved in full

    again = run(Settings(lake=lake))
    assert not again.problems, again.problems
    _end_as_the_clean_correction(store, correction)


def test_a_correction_at_15_percent_faults_ends_as_on_a_clean_store(
        scenario, correction, s3_endpoint, s3_bucket, fault_proxy, monkeypatch):
    """The same correction on S3 through faults of every kind: the superseded record, the full
    resolution that follows and the marts all end as on a clean store."""
    store = open_store(f"s3://{s3_bucket}/lake")
    _copy(open_store(str(scenario[3])), store)
    deliver(store, "mm_police", "detainees", [correction[2]])
    monkeypatch.setenv("AWS_ENDPOINT_URL", fault_proxy.url)  # every client of the run
    fault_proxy.rate = 0.15
    summary = run(Settings(lake=store.uri))
    injected = dict(fault_proxy.counts)
    fault_proxy.rate = 0.0
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # straight to moto from here on
    assert all(injected.get(f, 0) > 5 for f in FAULTS), injected
    assert not summary.problems, summary.problems
    assert _mode(summary)["mode"] == "full"
    _end_as_the_clean_correction(open_store(store.uri), correction)


def test_two_runs_started_together_over_a_correction_apply_it_once(lake, correction, tmp_path):
    """Two scheduled runs start at the same moment over a corrected row: one takes the lease,
    supersedes the record and resolves in full; the other waits, finds nothing new and
    publishes nothing. The lake ends as after one clean run over the same correction: the
    superseded record is gone once, not twice, and no match is new."""
    store = open_store(lake)
    deliver(store, "mm_police", "detainees", [correction[2]])
    resolutions_before = versions.complete_versions(store, layout.RESOLUTION)

    worked, waited = _race(lake, tmp_path / "race")
    assert worked[0]["resolve_mode"][GROUP]["mode"] == "full", worked[0]["resolve_mode"]
    assert waited[0]["noop"] and not waited[0]["drops"], waited[0]
    assert worked[0]["new_cross_agency_matches"] == correction[3].resolution_stats[
        "new cross-agency matches"]
    # one resolution version more, not two
    assert versions.complete_versions(store, layout.RESOLUTION)[1:] == resolutions_before
    drop = next(e for e in Ledger(store).entries() if e.file_name == correction[2].name)
    assert {e["run_id"] for e in Ledger(store).events(drop.drop_id)} == {worked[0]["run_id"]}
    _end_as_the_clean_correction(store, correction)


def _end_as_the_clean_follow_up(store, follow_up) -> None:
    """The lake as after the clean follow-up run.

    A resolution written before the failure stands in the next run, which finds nothing new
    since (resolve.plan: unchanged); a mart published before the failure shows it, and is kept
    as its analysts have it, the new cross-agency matches flagged: the clean run's."""
    clean, _ = follow_up
    assert _states(store) == _states(clean)
    _assert_same(_resolutions(store), _resolutions(clean))
    _assert_same(_marts(store), _marts(clean))
    assert not store.partial_writes("")
    assert not any(versions.unfinished_versions(store, layout.mart_prefix(a))
                   for a in AUDIENCES)


def test_a_run_killed_between_two_marts_of_one_resolution_flags_the_new_matches_in_both(
        lake, scenario, follow_up):
    """cn_mps's resolution is a copy of `all`'s (it may see every row), and their marts are
    built one after the other (one group worker). Killed in between, `all` shows the new
    resolution and cn_mps the old one. The next run must compare each with the resolution its
    own mart shows: were cn_mps built from `all`'s inputs, whose "previous resolution" is
    already the new one, its analysts would never see the new cross-agency matches flagged."""
    store = open_store(lake)
    deliver(store, "mm_police", "detainees", [scenario[2]])
    one_at_a_time = _KILLED_RUN.replace("Settings(lake=sys.argv[1])",
                                        "Settings(lake=sys.argv[1], group_workers=1)")
    env = {**os.environ, "FUSIONLAKE_KILL_AT": "before-manifest:marts/cn_mps"}
    proc = subprocess.run([sys.executable, "-c", one_at_a_time, lake], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == -9, proc.stderr[-2000:]
    shown = {a: (marts.latest(store, a) or {}).get("resolution_version") for a in AUDIENCES}
    assert shown["all"] == _pointer(store, "all")["version"]
    assert shown["cn_mps"] != _pointer(store, "cn_mps")["version"]

    summary = run(Settings(lake=lake, group_workers=1))
    assert not summary.problems, summary.problems
    # `all` shows the resolution, which stands: its mart is kept as its analysts have it, the
    # new matches flagged; cn_mps's is updated from the version before and flags them too
    assert summary.as_json()["marts_kept"] == ["all"]
    _end_as_the_clean_follow_up(store, follow_up)


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 256 MiB tmpfs of the test's own, to fill (mounting needs root: skipped without)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs",
                              str(disk)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs to fill ({mounted.stderr.strip()}); needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """A file taking all of ``disk``'s free space but ``leave`` bytes."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        if (size := shutil.disk_usage(disk).free - leave) > 0:
            os.posix_fallocate(fh.fileno(), 0, size)
    return filler


def _kept_whole(store, delivered: str, source: Path) -> str:
    """How far the follow-up drop got: still in landing, or its ledger state, which must not be
    rejected or held; its bytes are whole wherever it is."""
    drop = next((e for e in Ledger(store).entries() if e.file_name == source.name), None)
    if drop is None:
        assert store.get(delivered) == source.read_bytes()
        return "in landing"
    assert str(drop.state) in ("received", "validated", "staged"), drop
    assert store.get(drop.raw_key) == source.read_bytes()
    return str(drop.state)


def test_a_run_that_fills_the_disk_stops_saying_so_loses_nothing_and_the_next_ends_as_usual(
        scenario, follow_up, small_disk, monkeypatch):
    """The lake and the run's temp folder on one small disk, filled to leave the follow-up run
    from nothing to most of the room it needs (it needs 27-29 MiB above the lake's 53 MiB: with
    30,000 KiB left it ran through), so that the disk fills in a different stage each time.
    Where a given room runs out moves with the machine's load (the Data Docs render beside the
    marts, and a run may fit in 25,000 KiB), so rooms are tried until three stages were
    reached; the groups' marts are built one after the other (with two side by side, on a busy
    machine both ran out together in every room, and CI never saw one published before the
    disk filled)."""
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk / "tmp"))  # the run folder's base
    (small_disk / "tmp").mkdir()
    reached = set()
    for leave_kib in (0, 2_000, 12_000, 16_000, 9_000, 20_000, 6_000, 23_000, 25_000, 21_000,
                      22_000, 24_000, 19_000, 18_000):
        if len(reached) == 3:
            break
        path = small_disk / "lake"
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(scenario[3], path)
        store = open_store(str(path))
        before = (_pointer(store)["version"], {a: marts.latest(store, a) for a in AUDIENCES})
        delivered = deliver(store, "mm_police", "detainees", [scenario[2]])[0].key
        filler = _fill(small_disk, leave_kib * 1024)

        try:  # the groups' marts one after the other: one can be published, the next not
            run(Settings(lake=str(path), group_workers=1))
        except OutOfSpace as exc:
            message = str(exc)
        else:  # room enough after all (the need moves with the machine's load): the next room
            filler.unlink()
            continue
        assert message.startswith("out of disk space (No space left on device): "), message
        assert f"{path} (the lake) has " in message and "MiB free" in message, message
        assert "Free some space and run again" in message, message
        # the drop is kept, whole, and not rejected or held for it; every mart opens and passes
        # its checks, whichever version it is
        state = _kept_whole(store, delivered, scenario[2])
        for audience in AUDIENCES:
            marts.open_latest(store, audience).close()
        moved = [a for a in AUDIENCES if marts.latest(store, a) != before[1][a]]
        reached.add((state, _pointer(store)["version"] != before[0], len(moved)))
        # a mart published before the disk filled is the clean run's
        shown = {a: m for a, m in _marts(store).items() if a in moved}
        _assert_same(shown, {a: m for a, m in _marts(follow_up[0]).items() if a in moved})

        filler.unlink()
        summary = run(Settings(lake=str(path)))
        assert not summary.problems, (leave_kib, summary.problems)
        _end_as_the_clean_follow_up(store, follow_up)
        assert not list((small_disk / "tmp").iterdir())  # the run folders are gone
    # the disk filled at three different points: landing, after resolving, between two marts
    assert len(reached) == 3, reached


def test_a_run_stopped_by_a_full_disk_holds_the_lake_until_it_stops_then_lets_the_next_in(
        scenario, follow_up, small_disk, monkeypatch):
    """A scheduled run that starts while another meets a full disk is turned away (LeaseHeld,
    naming the run). Once the stopped run is out, the next one is let in at once, not after
    the lease's 15 minutes: on a disk still full it says the disk is full, not that the lake
    is busy, and on a freed disk it ends as the clean follow-up."""
    from fusionlake.lake import lease

    monkeypatch.setattr(tempfile, "tempdir", str(small_disk / "tmp"))
    (small_disk / "tmp").mkdir()
    path = small_disk / "lake"
    shutil.copytree(scenario[3], path)
    store = open_store(str(path))
    deliver(store, "mm_police", "detainees", [scenario[2]])
    release, turned_away = lease.Lease.release, []

    def release_after_a_concurrent_try(held):
        with pytest.raises(lease.LeaseHeld, match=rf"another run \({held.run_id} on ") as busy:
            lease.acquire(store, "the next scheduled run")
        turned_away.append(str(busy.value))
        release(held)

    monkeypatch.setattr(lease.Lease, "release", release_after_a_concurrent_try)
    filler = _fill(small_disk, 2_000 * 1024)  # room to take the lease and land, not to finish
    with pytest.raises(OutOfSpace):
        run(Settings(lake=str(path)), run_id="stopped-by-the-disk")
    assert len(turned_away) == 1 and "stopped-by-the-disk" in turned_away[0]

    monkeypatch.setattr(lease.Lease, "release", release)
    with pytest.raises(OutOfSpace, match="out of disk space"):  # not LeaseHeld
        run(Settings(lake=str(path)), run_id="the next scheduled run")
    filler.unlink()
    summary = run(Settings(lake=str(path)))
    assert not summary.problems, summary.problems
    _end_as_the_clean_follow_up(store, follow_up)


def test_an_s3_lake_whose_run_fills_the_local_disk_keeps_every_drop(
        scenario, follow_up, s3_bucket, small_disk, monkeypatch):
    """On S3 the lake cannot fill, but the run's temp folder (marts being built, spill files)
    can; before, a drop whose staging failed for it was rejected for good."""
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk / "tmp"))
    (small_disk / "tmp").mkdir()
    store = open_store(f"s3://{s3_bucket}/lake")
    _copy(open_store(str(scenario[3])), store)
    before = {a: marts.latest(store, a) for a in AUDIENCES}
    delivered = deliver(store, "mm_police", "detainees", [scenario[2]])[0].key
    filler = _fill(small_disk, 0)

    with pytest.raises(OutOfSpace) as failed:
        run(Settings(lake=store.uri))
    message = str(failed.value)
    assert f"{small_disk / 'tmp'} (the run's temp folder) has 0.0 MiB free" in message, message
    assert "(the lake)" not in message  # an S3 lake has no local disk to name
    assert _kept_whole(store, delivered, scenario[2]) in ("received", "validated", "staged")
    assert {a: marts.latest(store, a) for a in AUDIENCES} == before

    filler.unlink()
    summary = run(Settings(lake=store.uri))
    assert not summary.problems, summary.problems
    _end_as_the_clean_follow_up(store, follow_up)


# -- malformed files beside a good follow-up -------------------------------------------------


def test_malformed_files_beside_a_follow_up_stop_only_themselves(lake, scenario, tmp_path):
    store = open_store(lake)
    gen, _d1, d2, _lake = scenario
    rows = d2.read_text(encoding="utf-8").splitlines(keepends=True)
    good = tmp_path / "detainees_2.jsonl"
    good.write_text("".join(rows[:50]), encoding="utf-8")
    # the last 10 rows, with a line cut off in transfer (line 4) and a proxy's error page (9)
    torn = tmp_path / "detainees_3.jsonl"
    cut = '{"case_no":"MWD-2025-999999","name":"Aung Aung","sex":"M","date_of_bi\n'
    html = "<html><body>504 Gateway Timeout</body></html>\n"
    torn_lines = [*rows[50:53], cut, *rows[53:57], html, *rows[57:]]
    torn.write_text("".join(torn_lines), encoding="utf-8")
    # Thai immigration: a manifest saved in TIS-620 for a UTF-8 feed, and one without names
    thai = tmp_path / "repatriations_tis620.csv"
    header = (gen / "th_imm/repatriations/repatriations.csv").read_text(
        encoding="utf-8-sig").splitlines()[0]
    thai.write_bytes((header + "\nTG9999-20260105-001,TG9999,2026-01-05,สมชาย ใจดี,M,"
                      "01/02/1980,THA,AA1234567,Bangkok\n").encode("cp874"))
    nocol = _without_column(gen / "th_imm/repatriations/repatriations.csv",
                            tmp_path / "repatriations_nocol.csv", "passenger_name")
    deliver(store, "mm_police", "detainees", [good, torn])
    deliver(store, "th_imm", "repatriations", [thai, nocol])

    summary = run(Settings(lake=lake))
    assert not summary.problems, summary.problems  # bad data is not a failure of the run
    # the good rows were resolved incrementally, in every audience group
    modes = summary.resolution_stats["resolve mode"]
    assert {g: m["mode"] for g, m in modes.items()} == {
        "all+cn_mps": "incremental", "mm_police+th_imm": "incremental"}, modes
    assert all(m["why"].startswith("60 new records") for m in modes.values()), modes
    entries = {e.file_name: e for e in Ledger(store).entries()}
    assert {n: str(entries[n].state) for n in (good.name, torn.name, thai.name, nocol.name)} == {
        good.name: "published", torn.name: "published", thai.name: "rejected",
        nocol.name: "rejected"}
    new = _staged_ids(store, [entries[good.name].drop_id, entries[torn.name].drop_id])
    assert len(new) == 60
    for audience in AUDIENCES:
        assert new <= set(_mart_records(store, audience)["record_id"]), audience
    assert summary.mart_builds["all"]["mode"] == "updated"

    # each bad file says what is wrong with it, and where
    assert re.fullmatch(r"repatriations_tis620\.csv: is not valid utf-8-sig \(byte 0x[0-9a-f]{2} "
                        r"at line 2\); .*", entries[thai.name].reason), entries[thai.name].reason
    assert "lacks the column(s) 'passenger_name'" in entries[nocol.name].reason
    by_name = {d.name: d for d in summary.drops}
    assert by_name["th_imm/repatriations/repatriations_nocol.csv"].reason == (
        entries[nocol.name].reason)
    torn_drop = by_name[f"mm_police/detainees/{torn.name}"]
    assert (torn_drop.state, torn_drop.rows, torn_drop.quarantined) == ("staged", 12, 2)
    torn_entry = entries[torn.name]
    quarantine = zones.read_frame(store, layout.quarantine_key(
        "mm_police", "detainees", torn_entry.drop_id))
    assert quarantine.select("line", "expectation").rows() == [
        (4, "read_malformed_json"), (9, "read_malformed_json")]
    assert quarantine["reason"].str.slice(0, 8).to_list() == ["line 4: ", "line 9: "]
    assert quarantine["raw_line"].to_list() == [cut.rstrip("\n"), html.rstrip("\n")]
    # the stewards see all of it in the mart
    con = marts.open_latest(store, "all")
    try:
        ledger = dict(con.execute("SELECT file_name, reason FROM drop_ledger WHERE state = "
                                  "'rejected'").fetchall())
        lines = con.execute("SELECT line FROM quarantine WHERE drop_id = ? ORDER BY line",
                            [torn_entry.drop_id]).fetchall()
    finally:
        con.close()
    assert ledger == {thai.name: entries[thai.name].reason,
                      nocol.name: entries[nocol.name].reason}
    assert lines == [(4,), (9,)]
    # and every file, good or bad, stays in raw/ as it was delivered
    for path in (good, torn, thai, nocol):
        assert store.get(entries[path.name].raw_key) == path.read_bytes(), path.name


def _template_drop(path: Path, first: int, n: int) -> Path:
    """n detainee rows that differ only by case number: one template sent again and again."""
    row = {"case_no": None, "name": "Aung Aung", "sex": "M", "date_of_birth": "1990-01-02",
           "nationality": "Myanmar", "nrc": None, "passport_no": None, "phone": "09420012345",
           "compound": "KK Park", "township": "Myawaddy", "detained_on": "2025-01-05"}
    path.write_text("".join(json.dumps({**row, "case_no": f"MP-T-{i:05d}"}) + "\n"
                            for i in range(first, first + n)), encoding="utf-8")
    return path


def test_a_template_row_sent_a_thousand_times_is_reviewed_not_compared(lake, tmp_path):
    """1,050 copies of one row make a block of 1,102,500 candidate pairs, over
    block_max_pairs: before, memory grew with the square of the copies (8,692 were killed at
    24 GB). The follow-up run resolves in full (the copies are a quarter of the lake) without
    comparing the block under the rules it fills, keeps every copy as a record of its own and
    puts the block in the review queue. One more copy the next run declines the increment, from
    the bound the full run kept, and is resolved in full the same way."""
    store = open_store(lake)
    copies = _template_drop(tmp_path / "template.jsonl", 0, 1050)
    deliver(store, "mm_police", "detainees", [copies])
    summary = run(Settings(lake=lake))
    assert not summary.problems, summary.problems
    modes = summary.resolution_stats["resolve mode"]
    assert modes[GROUP]["mode"] == "full", modes  # 1,050 new records: a quarter of the lake
    assert any("holds 1,050 records (1,102,500 candidate pairs, more than "
               "block_max_pairs=1,000,000)" in n for n in summary.notes), summary.notes
    template = _staged_ids(store, [e.drop_id for e in Ledger(store).entries()
                                   if e.file_name == copies.name])
    assert len(template) == 1050
    records = _mart_records(store).filter(pl.col("record_id").is_in(list(template)))
    assert records.height == 1050 and records["entity_id"].n_unique() == 1050
    con = marts.open_latest(store, "all")
    try:
        reviewed = con.sql("SELECT record_id_l, record_id_r, reason FROM review_queue "
                           "WHERE reason LIKE 'blocking rule%'").pl()
    finally:
        con.close()
    assert reviewed.height == 1049
    assert reviewed["reason"][0].startswith("blocking rule 1 puts 1,050 records in one block")
    assert set(reviewed["record_id_l"]) | set(reviewed["record_id_r"]) == template
    largest = _state(store)["block_largest"]
    assert largest and max(a * b for a, b in largest) == 1050 ** 2
    # the copies' pairs kept for the next increment: 550,725 of the template's and the few of
    # the generated people's own identical records, within the budget (max(block_max_pairs,
    # records)); the largest group is the template's
    pairs, group = _state(store)["identical"]
    assert 1050 * 1049 // 2 <= pairs < 1050 * 1049 // 2 + 1000 and group == 1050

    deliver(store, "mm_police", "detainees", [_template_drop(tmp_path / "one.jsonl", 1050, 1)])
    again = run(Settings(lake=lake))
    assert not again.problems, again.problems
    mode = again.resolution_stats["resolve mode"][GROUP]
    assert mode["mode"] == "full", mode
    assert re.search(r"^blocking rule \d+ puts 1,051 records in one block \(birth_date = "
                     r"1990-01-02, sex = M, nationality = MM: 1,104,601 candidate pairs, more "
                     r"than block_max_pairs=1,000,000\) with a new record: resolved in full$",
                     mode["why"]), mode
    template = _staged_ids(store, [e.drop_id for e in Ledger(store).entries()
                                   if e.file_name in (copies.name, "one.jsonl")])
    records = _mart_records(store).filter(pl.col("record_id").is_in(list(template)))
    assert records.height == 1051 and records["entity_id"].n_unique() == 1051


def _state(store) -> dict:
    pointer = _pointer(store)
    return json.loads(store.get(layout.resolution_state_key("all", pointer["version"],
                                                            "state.json")))
