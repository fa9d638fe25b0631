"""The pipeline end to end, as a Prefect flow, on both backends.

One scenario per backend walks through what a lake lives through: a first full run, a run with
nothing new, an incremental drop, a re-sent drop, and a corrected drop that supersedes an earlier
one. Concurrency and crash-restart have their own tests below.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import polars as pl
import pytest
from conftest import assert_held_for_overrun, deliver_all

from fusionlake.lake import layout, schema, zones
from fusionlake.lake.feeds import load_feeds
from fusionlake.lake.ledger import Ledger
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import open_store
from fusionlake.pipeline.land import deliver
from fusionlake.pipeline.marts import open_latest
from fusionlake.pipeline.stage import expected_work

# Every test here runs the pipeline end to end (a flow, a CLI run, a Prefect server).
pytestmark = pytest.mark.slow

PEOPLE = 300


@pytest.fixture(scope="module")
def drops(tmp_path_factory):
    from fusionlake.synth import generate

    out = tmp_path_factory.mktemp("drops")
    generate(PEOPLE, 11, out)
    return out


@pytest.fixture(scope="module")
def two_drops(drops, tmp_path_factory):
    """A local lake after one run over th_imm's repatriations and mm_police's detainees, for
    the tests below to copy (:func:`_copy`): each spent a run making it."""
    from fusionlake.pipeline.run import run

    lake = tmp_path_factory.mktemp("two_drops") / "lake"
    deliver_all(open_store(str(lake)), drops,
                only={"th_imm/repatriations", "mm_police/detainees"})
    assert not run(Settings(lake=str(lake), drop_workers=0)).problems
    return lake


def _copy(lake: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(lake, tmp_path / "lake"))


def mart_count(store, sql: str, audience: str = "all"):
    con = open_latest(store, audience)
    try:
        return con.execute(sql).fetchall()[0][0]
    finally:
        con.close()


def test_pipeline_lifecycle(prefect_harness, lake_uri, drops, tmp_path, capsys):
    from flows.pipeline import pipeline
    from fusionlake import cli

    store = open_store(lake_uri)
    # 1. a first run over four feeds
    deliver_all(store, drops, only={"cn_mps/suspects", "cn_mps/fraud_reports",
                                    "th_imm/detentions", "th_imm/repatriations"})
    first = pipeline(lake=lake_uri, run_id="run-1")
    assert not first.problems, first.problems
    assert {d.state for d in first.drops} == {"staged"}
    assert first.marts["all"]
    records_1 = mart_count(store, "select count(*) from entity_record")
    staged_1 = sum(d.staged["person_record"] for d in first.drops)
    assert records_1 == staged_1 > 0
    assert mart_count(store, "select count(*) from drop_ledger") == 4
    # the marts show the drops they publish as published (they said staged, the state the
    # ledger had while they were built, until the next marts)
    assert mart_count(store, "select count(*) from drop_ledger where state = 'published' "
                             "and reason = 'in this mart'") == 4
    assert store.exists("reports/runs/run-1.md")
    assert first.resolution_stats["new cross-agency matches"] > 0
    # transliterations are remembered in the lake for the next run (hanzi and Thai names)
    cache = pl.read_parquet(store.get(layout.TRANSLIT_CACHE))
    assert cache.height > 100 and {"script", "token", "latin"} <= set(cache.columns)
    report = store.get("reports/runs/run-1.md").decode()
    assert "new cross-agency matches" in report and "| drops staged | 4 |" in report
    steps = re.search(r"Resolve, by step .*: (.*)", report)
    assert steps and "splink_predict" in steps.group(1) and "explain" in steps.group(1)
    ids_1 = _entity_ids(store)
    # the published entities scored against the generator's truth, as `make demo` does
    capsys.readouterr()
    assert cli.main(["evaluate", "--lake", lake_uri, "--truth", str(drops / "truth.csv")]) == 0
    f1 = re.search(r"\bf1\s*\S\s*([0-9.]+)", capsys.readouterr().out)
    assert f1 and float(f1.group(1)) > 0.95
    # a truth file of other drops has nothing to miss: it is refused, not scored a perfect 1.0
    other = tmp_path / "other-truth.csv"
    other.write_text("agency,feed,source_key,person_id\nzz,zz,1,P1\n", encoding="utf-8")
    assert cli.main(["evaluate", "--lake", lake_uri, "--truth", str(other)]) == 2
    assert "names none of the" in capsys.readouterr().err

    # 2. nothing new: a fast no-op that publishes nothing and leaves no report to wade through
    second = pipeline(lake=lake_uri, run_id="run-2")
    assert second.noop
    assert not store.exists("reports/runs/run-2.md")
    assert "run-1" in store.get("reports/runs/LATEST.md").decode()
    assert second.marts == {}
    assert _entity_ids(store) == ids_1

    # 3. an incremental drop: the Myanmar feed arrives; earlier entity ids are kept
    deliver_all(store, drops, only={"mm_police/detainees"})
    third = pipeline(lake=lake_uri, run_id="run-3")
    assert [d.state for d in third.drops] == ["staged"]
    assert mart_count(store, "select count(*) from entity_record") > records_1
    ids_3 = _entity_ids(store)
    assert third.resolution_stats["new cross-agency matches"] > 0  # Myanmar meets the others
    kept = sum(1 for rec, ent in ids_1.items() if ids_3.get(rec) == ent)
    assert kept / len(ids_1) > 0.95

    # 4. the same file re-sent under another name: recorded as a duplicate, nothing changes
    src = next((drops / "th_imm" / "repatriations").iterdir())
    resent = tmp_path / "repatriations-resent.csv"
    resent.write_bytes(src.read_bytes())
    deliver(store, "th_imm", "repatriations", [resent])
    fourth = pipeline(lake=lake_uri, run_id="run-4")
    assert [x.status for x in fourth.landed] == ["duplicate"]
    assert fourth.noop is False and fourth.marts == {}
    states = [e.state for e in Ledger(store).entries()]
    assert states.count("duplicate") == 1

    # 5. a corrected repatriation manifest: same keys, one passenger's name fixed
    rows = list(csv.reader(src.read_text(encoding="utf-8-sig").splitlines()))
    header, body = rows[0], rows[1:]
    name_col = header.index("passenger_name")
    body[0][name_col] = "CORRECTED NAME"
    corrected = tmp_path / "repatriations-corrected.csv"
    with corrected.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows([header, *body])
    deliver(store, "th_imm", "repatriations", [corrected])
    fifth = pipeline(lake=lake_uri, run_id="run-5")
    assert [d.state for d in fifth.drops] == ["staged"]
    key = body[0][header.index("manifest_id")]
    names = _names_for(store, "th_imm", "repatriations", key)
    assert names == ["CORRECTED NAME"]
    by_state = {e.file_name: e.state for e in Ledger(store).entries()}
    assert by_state[src.name] == "superseded"
    # every repatriation record has a new id now, but the people were matched across agencies
    # before through the rows it replaced: none of them is a new cross-agency match
    crossed = mart_count(store, "select count(*) from entity where agency_count >= 2")
    assert crossed > 0
    assert fifth.resolution_stats["new cross-agency matches"] == 0
    assert mart_count(store, "select count(*) from entity where new_cross_agency_match") == 0


def _entity_ids(store) -> dict[str, str]:
    con = open_latest(store, "all")
    try:
        return dict(con.execute("select record_id, entity_id from entity_record").fetchall())
    finally:
        con.close()


def _people(store) -> set[frozenset[str]]:
    """The entities as sets of record ids, whatever their ids."""
    people: dict[str, set[str]] = {}
    for record, entity in _entity_ids(store).items():
        people.setdefault(entity, set()).add(record)
    return {frozenset(p) for p in people.values()}


def _names_for(store, agency, feed, key) -> list[str]:
    con = open_latest(store, "all")
    try:
        return [r[0] for r in con.execute(
            "select name_original from entity_record where agency=? and feed=? and source_key=?",
            [agency, feed, key]).fetchall()]
    finally:
        con.close()


@pytest.fixture(scope="module")
def api_url(prefect_harness):
    """The test Prefect server's API: CLI runs in subprocesses report to it (as in production),
    instead of each starting an ephemeral server of its own, which a SIGKILL would orphan."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _cli(api_url: str, lake: str, *args: str, env: dict | None = None,
         output: int = subprocess.PIPE) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("fusionlake"))
    return subprocess.Popen([exe, *args, "--lake", lake], stdout=output,
                            stderr=output, text=True, start_new_session=True,
                            env={**os.environ, "PREFECT_API_URL": api_url, **(env or {})})


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:  # a stuck run: where it is stuck, then gone
        _stacks(proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the command did not end in 600 s; its threads then:\n{out}{err[-30000:]}")
    finally:  # nothing a killed run started may outlive the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _stacks(proc: subprocess.Popen) -> None:
    """Have a `fusionlake` command print every thread's stack to its stderr (SIGUSR1)."""
    import time

    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)


# the lease by a conditional PUT on S3, by link(2) on disk
@pytest.mark.parametrize("lake_uri", ["local", "s3"], indirect=True)
def test_concurrent_runs_do_not_corrupt_the_lake(api_url, lake_uri, drops):
    store = open_store(lake_uri)
    deliver_all(store, drops, only={"th_imm/repatriations", "cn_mps/suspects"})
    # Both runs stop just before they take the lease and are let go together: on a loaded
    # machine one started 16 s after the other, found the work done and said "nothing new"
    # (CI, 2026-12-07), so the two never met.
    procs = [_cli(api_url, lake_uri, "run", env={"FUSIONLAKE_PAUSE_AT": "before-lease"})
             for _ in range(2)]
    try:
        if not _wait(lambda: all(p.poll() is not None or _stopped(p.pid) for p in procs), 300) \
                or any(p.poll() is not None for p in procs):
            for p in procs:  # a stopped run would never answer communicate()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            said = ["".join(_finish(p)) for p in procs]
            pytest.fail("a run never reached its pause: " + "\n".join(
                f"exit {p.returncode}:\n{out}" for p, out in zip(procs, said, strict=True)))
        for p in procs:
            os.kill(p.pid, signal.SIGCONT)
        outs = [_finish(p) for p in procs]
    finally:
        for p in procs:
            _finish(p)
    codes = sorted(p.returncode for p in procs)
    # one ran, the other said another run holds the lake (a message is shown whole, a repr not)
    assert codes == [0, 2], "\n".join(f"exit {p.returncode}:\n{out}\n{err}"
                                       for p, (out, err) in zip(procs, outs, strict=True))
    loser = outs[[p.returncode for p in procs].index(2)][1]
    assert "another run" in loser
    entries = Ledger(store).entries()
    assert sorted(e.state for e in entries) == ["published", "published"]
    assert mart_count(store, "select count(*) from drop_ledger") == 2


def _group_ends(pgid: int, seconds: float) -> bool:
    """Whether every process of a process group has ended within ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _leftovers(store, tmp: Path) -> list[str]:
    """What crashed runs can leave: temp folders, unfinished writes, unfinished versions."""
    from fusionlake.lake import versions
    from fusionlake.pipeline.run import versioned_prefixes

    found = [f"folder {p.name}" for p in tmp.iterdir() if p.name.startswith("fusionlake-")]
    found += [f"partial write {p.key}" for p in store.partial_writes("")]
    found += [f"unfinished version {prefix}/{v}" for prefix in versioned_prefixes(store)
              for v in versions.unfinished_versions(store, prefix)]
    return found


# Each point on one backend, the pointer on both (it is the write that differs most); then
# the points that leave something behind: a temp file in raw/ and in ledger/, a version
# without its manifest.
@pytest.mark.parametrize(("lake_uri", "crash_at"), [
    ("local", "after-land"), ("s3", "after-stage"),
    ("local", "before-pointer"), ("s3", "before-pointer"),
    ("local", "temp-written:raw/"), ("local", "temp-written:ledger/drops/"),
    ("s3", "before-manifest:marts/"), ("local", "before-manifest:resolution"),
    # killed while Spark holds the scored pairs: its JVM (a child) must go too
    pytest.param("local", "engine-scored:spark", marks=pytest.mark.slow),
], indirect=["lake_uri"])
def test_killed_run_completes_on_restart_and_leaves_nothing(api_url, lake_uri, drops, crash_at,
                                                            tmp_path, monkeypatch):
    store = open_store(lake_uri)
    deliver_all(store, drops, only={"th_imm/repatriations", "mm_police/detainees"})
    tmp = tmp_path / "tmp"  # the runs' temporary folders go here, to be looked at
    tmp.mkdir()
    env = {"FUSIONLAKE_KILL_AT": crash_at, "TMPDIR": str(tmp)}
    if crash_at == "after-stage":  # killed while its drop workers (processes) wait for work
        env |= {"FUSIONLAKE_DROP_PROCESS_MIN_BYTES": "1", "FUSIONLAKE_DROP_WORKERS": "2"}
    if crash_at == "engine-scored:spark":  # resolved on Spark; the next run on DuckDB
        env |= {"FUSIONLAKE_RESOLVE_BACKEND": "spark"}
    # no pipes: a process the killed run left behind would hold them open; a file does not,
    # and says why when the run ends before its kill point (exit 1 once in CI, under Spark)
    log = tmp_path / "killed-run.log"
    with open(log, "wb") as out:
        proc = _cli(api_url, lake_uri, "run", env=env, output=out)
        proc.wait(timeout=600)
    assert proc.returncode == -signal.SIGKILL, log.read_text(errors="replace")[-4000:]
    assert _group_ends(proc.pid, seconds=30), "the killed run's worker processes live on"
    _finish(proc)
    if crash_at == "before-pointer":  # a mart was uploaded, but no reader may see it yet
        assert not store.exists("marts/all/LATEST")
    left = _leftovers(store, tmp)
    assert any(f"-{proc.pid}" in x for x in left), left  # its own run folder at least
    if crash_at.startswith(("temp-written", "before-manifest")):
        assert len(left) >= 2, left  # and what the point leaves in the lake
    # the restart in this process (no Prefect, no second start-up): the lake is what is tested
    from fusionlake.pipeline.run import run

    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    again = run(Settings.from_env(lake_uri))
    assert not again.problems, again.problems
    assert _leftovers(store, tmp) == []
    assert "clean start removed" in store.get("reports/runs/LATEST.md").decode()
    entries = Ledger(store).entries()
    assert sorted(e.state for e in entries) == ["published", "published"]
    staged = store.list("staged/person_record")
    assert len(staged) == 2  # no duplicates
    records = mart_count(store, "select count(*) from entity_record")
    assert records == mart_count(store, "select count(distinct record_id) from entity_record")
    live = {e.drop_id for e in entries}
    assert records == zones.read_staged(store, "person_record", live).height > 0


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def _wait(condition, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("lake_uri", ["local", "s3"], indirect=True)
def test_run_that_lost_its_lease_stops_before_its_next_write(api_url, lake_uri, drops):
    store = open_store(lake_uri)
    deliver_all(store, drops, only={"th_imm/repatriations", "mm_police/detainees"})
    # A lease shorter than a loaded 2-core machine's stalls is lost by a run at work (CI,
    # 2026-12-04); on 2026-12-07 the first run, with 2 s, never reached its pause in 300 s,
    # most likely the same. So 8 s, and the wait below stops at once if the run exits.
    short = {"FUSIONLAKE_LEASE_SECONDS": "8"}
    # the first run lands the drops, then freezes (SIGSTOP: its heartbeat stops too)
    first = _cli(api_url, lake_uri, "run", env=short | {"FUSIONLAKE_PAUSE_AT": "before-stage"})
    try:
        _wait(lambda: first.poll() is not None or _stopped(first.pid), 300)
        if first.poll() is not None or not _stopped(first.pid):
            out, err = _finish(first)
            pytest.fail(f"the first run never reached its pause (exit {first.returncode}):"
                        f"\n{out}{err}")
        # the second run waits for the frozen run's lease to end, and takes the lake over
        second = _cli(api_url, lake_uri, "run", "--wait", "300")
        out, err = _finish(second)
        assert second.returncode == 0, out + err
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    finally:
        _finish(first)
    assert first.returncode == 2, out + err
    assert "lost the lease" in err and "took it over" in err
    # no drop was staged twice, and the first run wrote nothing after it woke up
    ledger = Ledger(store)
    for entry in ledger.entries():
        events = [e["state"] for e in ledger.events(entry.drop_id)]
        assert events == ["received", "validated", "staged", "published"], events
    assert len(store.list("reports/runs")) == 2  # the second run's report and LATEST.md


def test_killed_run_leaves_no_prefect_server(drops, tmp_path):
    """Without PREFECT_API_URL a run starts its own temporary Prefect server: a SIGKILL of the
    run must not leave it behind."""
    lake = str(tmp_path / "lake")
    deliver_all(open_store(lake), drops, only={"th_imm/repatriations"})
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(FUSIONLAKE_KILL_AT="after-land", PREFECT_HOME=str(tmp_path / "prefect"))
    exe = str(Path(sys.executable).with_name("fusionlake"))
    log = tmp_path / "stderr.txt"
    with log.open("w") as fh:
        proc = subprocess.Popen([exe, "run", "--lake", lake], env=env, stdout=subprocess.DEVNULL,
                                stderr=fh, start_new_session=True)
        proc.wait(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    started = re.search(r"temporary Prefect server on \S+ \(pid (\d+)\)", log.read_text())
    assert started, log.read_text()
    server = int(started.group(1))
    try:
        assert _wait(lambda: not _alive(server), 30), "the run's Prefect server lives on"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _staged_tables(store) -> dict[str, pl.DataFrame]:
    return {key.removeprefix("staged/"): pl.read_parquet(store.get(key)).sort("record_id")
            for key in store.list("staged")}


# On S3 only: worker processes on a local lake stage in the killed-worker test below (whose
# people are compared with a threads run's) and in the CLI run of
# test_drop_workers_report_to_the_run_s_own_prefect_server. A second lake of threads made here
# for a local variant cost the suite 35-45 s of two cores for no path not run elsewhere.
@pytest.mark.parametrize("lake_uri", ["s3"], indirect=True)
def test_drops_in_worker_processes_stage_what_threads_stage(prefect_harness, lake_uri, drops,
                                                            tmp_path, monkeypatch):
    from polars.testing import assert_frame_equal

    from flows.pipeline import pipeline

    threads = open_store(str(tmp_path / "threads"))  # the test drops are small: threads
    deliver_all(threads, drops)
    assert not pipeline(lake=threads.uri, run_id="threads").problems

    monkeypatch.setenv("FUSIONLAKE_DROP_PROCESS_MIN_BYTES", "1")  # now worker processes
    # the run checks that Prefect answers while it waits for a worker (every 5 s, stopping
    # after 3 misses: flows/tasks.py): here every 0.1 s, stopping at the first miss, so that a
    # check that took a live server for a dead one would stop this run
    import flows.tasks

    monkeypatch.setattr(flows.tasks, "PREFECT_CHECK_SECONDS", 0.1)
    monkeypatch.setattr(flows.tasks, "PREFECT_CHECKS_MISSED", 1)
    store = open_store(lake_uri)
    deliver_all(store, drops)
    summary = pipeline(lake=lake_uri, run_id="processes")
    assert not summary.problems, summary.problems
    assert sorted(d.state for d in summary.drops) == ["staged"] * 5
    # the most work first (bytes weighed by format), so that no worker waits alone at the end
    work = {e.drop_id: expected_work(e) for e in Ledger(store).entries()}
    assert [work[d.drop_id] for d in summary.drops] == sorted(work.values(), reverse=True)
    assert all(d.transliterations is None for d in summary.drops)  # taken into the cache
    ours, theirs = _staged_tables(store), _staged_tables(threads)
    # every table of every drop
    assert ours.keys() == theirs.keys() and len(ours) == 5 * len(schema.TABLES)
    for key, frame in ours.items():
        assert_frame_equal(frame, theirs[key])
    # the workers' transliterations reached the lake's cache: all of them
    cache = [pl.read_parquet(s.get(layout.TRANSLIT_CACHE)).sort("script", "token")
             for s in (store, threads)]
    assert_frame_equal(*cache)
    assert _entity_ids(store) == _entity_ids(threads)


def test_a_drop_whose_worker_process_is_killed_is_held_and_the_others_of_its_pool_staged(
        prefect_harness, drops, tmp_path, monkeypatch):
    """A worker process killed (the OOM killer, say) fails every drop its pool still holds.
    None of them may be rejected for it: they are staged again one at a time, and the one
    that kills its worker alone too is held for a person, not rejected for good."""
    from flows.pipeline import pipeline
    from fusionlake.lake.lease import LeaseHeld, acquire
    from fusionlake.pipeline import run as run_module

    clean = open_store(str(tmp_path / "clean"))
    deliver_all(clean, drops)
    assert not pipeline(lake=clean.uri, run_id="clean").problems

    monkeypatch.setenv("FUSIONLAKE_DROP_PROCESS_MIN_BYTES", "1")  # worker processes
    # SIGKILL for a worker as it writes a staged file of the detentions workbook
    monkeypatch.setenv("FUSIONLAKE_KILL_AT", "temp-written:staged/person_record/th_imm/detentions")
    # the schedule's next run starts while the dead worker's drops go round again, one at a
    # time in new worker processes: the lake is still this run's, and it is refused
    refused, one_at_a_time = [], run_module._one_at_a_time

    def with_a_concurrent_run(r, killed, **how):
        for entry, out in one_at_a_time(r, killed, **how):
            with pytest.raises(LeaseHeld, match=r"another run \(killed on "):
                acquire(r.store, "the next scheduled run")
            refused.append(entry.file_name)
            yield entry, out

    monkeypatch.setattr(run_module, "_one_at_a_time", with_a_concurrent_run)
    store = open_store(str(tmp_path / "lake"))
    deliver_all(store, drops)
    summary = pipeline(lake=store.uri, run_id="killed")
    assert "detentions.xlsx" in refused, refused
    states = {e.file_name: e for e in Ledger(store).entries()}
    held = states.pop("detentions.xlsx")
    assert held.state == "held", held
    assert held.reason.startswith("its worker process died while staging it, twice, the "
                                  "second time alone (BrokenProcessPool); the kernel's OOM "
                                  "killer, most likely: held"), held.reason
    assert f"`fusionlake retry {held.drop_id}`" in held.reason
    assert summary.problems == [f"drop {held.drop_id} (th_imm/detentions/detentions.xlsx) "
                                f"held: {held.reason}"]
    assert {e.state for e in states.values()} == {"published"}, states
    assert store.get(held.raw_key) == (drops / "th_imm/detentions/detentions.xlsx").read_bytes()

    monkeypatch.delenv("FUSIONLAKE_KILL_AT")  # more memory, say: a steward sends it again
    Ledger(store).decide(held.drop_id, "retry", "steward", "the machine has more memory now")
    assert not pipeline(lake=store.uri, run_id="again").problems
    assert {e.state for e in Ledger(store).entries()} == {"published"}
    # the same people as a run that never lost a worker (the ids differ: the detainees came
    # one run later, and an entity's id is that of its records first resolved)
    assert _people(store) == _people(clean)


def test_drop_workers_report_to_the_run_s_own_prefect_server(drops, tmp_path):
    """`fusionlake run` with no Prefect server configured starts a temporary one; its drop
    workers must report to it, not each start another on the same database."""
    lake = str(tmp_path / "lake")
    deliver_all(open_store(lake), drops)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(FUSIONLAKE_DROP_PROCESS_MIN_BYTES="1", PREFECT_LOGGING_LEVEL="INFO",
               PREFECT_HOME=str(tmp_path / "prefect"))
    exe = str(Path(sys.executable).with_name("fusionlake"))
    done = subprocess.run([exe, "run", "--lake", lake], env=env, capture_output=True, text=True,
                          timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert log.count("started a temporary Prefect server") == 1, log
    assert "Starting temporary server" not in log  # Prefect's own: no worker started one
    assert "database is locked" not in log
    assert sorted(e.state for e in Ledger(open_store(lake)).entries()) == ["published"] * 5


def test_a_run_reporting_to_a_prefect_server_behind_a_login_runs_as_usual(
        prefect_harness, drops, tmp_path):
    """`fusionlake run` against a Prefect server behind a login (Prefect Cloud, or a login proxy
    in front of a self-hosted server), its drops staged in worker processes. The Prefect client
    sends the credentials (PREFECT_API_AUTH_STRING); the run's own checks that the server
    answers (at start, while the workers stage, before posting the summary) do not, and meet
    the login's 401. A 401 is an answer: the run ends as usual and its summary is posted to
    the server as the flow run's artifact (before, the post was skipped as if the server were
    down, and with slow drops the run stopped after three checks)."""
    import httpx
    from loginproxy import LoginProxy
    from prefect.settings import PREFECT_API_URL

    server = PREFECT_API_URL.value()
    api_path = urlparse(server).path
    lake = str(tmp_path / "lake")
    store = open_store(lake)
    deliver_all(store, drops, only={"th_imm/detentions", "th_imm/repatriations"})
    with LoginProxy(server, "analyst:s3cret") as proxy:
        env = {**os.environ, "PREFECT_API_URL": f"{proxy.url}{api_path}",
               "PREFECT_API_AUTH_STRING": "analyst:s3cret",
               "FUSIONLAKE_DROP_PROCESS_MIN_BYTES": "1"}
        exe = str(Path(sys.executable).with_name("fusionlake"))
        done = subprocess.run([exe, "run", "--lake", lake], env=env, capture_output=True,
                              text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert sorted(e.state for e in Ledger(store).entries()) == ["published"] * 2
    assert "does not answer" not in log and "stopped answering" not in log, log
    # the run's checks met the login; everything the Prefect client sent passed it
    assert f"{api_path.rstrip('/')}/health" in proxy.refused, proxy.refused
    assert all(path.endswith("/health") for path in proxy.refused), proxy.refused
    # (a connection is checked on its first request: the flow's, and the events websocket's)
    assert any(path.startswith(f"{api_path.rstrip('/')}/flows/") for path in proxy.admitted)
    assert f"{api_path.rstrip('/')}/events/in" in proxy.admitted, proxy.admitted
    reports = [k.rsplit("/", 1)[-1].removesuffix(".md") for k in store.list(layout.RUN_REPORTS)
               if not k.endswith("/LATEST.md")]
    assert len(reports) == 1, reports
    found = httpx.post(f"{server.rstrip('/')}/artifacts/filter", json={
        "artifacts": {"key": {"any_": ["pipeline-run-summary"]}}, "limit": 200,
        "sort": "CREATED_DESC"}, timeout=30).raise_for_status().json()
    posted = [a for a in found if a.get("description") == f"fusionlake run {reports[0]}"]
    assert len(posted) == 1, [a.get("description") for a in found]
    assert posted[0]["data"] == store.get(layout.run_report_key(reports[0])).decode()


@pytest.mark.parametrize("workers", ["threads", "processes", "dask"])
def test_a_run_whose_prefect_server_dies_says_so_and_loses_nothing(drops, tmp_path, workers):
    """The temporary Prefect server of `fusionlake run` is killed as the run starts staging (the
    OOM killer takes it, say). Prefect cannot record how the run ends, so the command says so
    and exits 1, never hangs, and the next run ends as usual.

    Drops staged by threads: the pipeline's work does not depend on the server. Every drop is
    published and the summary written to the lake (its artifact skipped, not retried into a dead
    server); the command prints it from there. Drops staged in worker processes: Prefect's
    process pool cannot end a task without its server (the task's engine exits in the worker,
    and the pool's future never resolves: the run waited for ever), so the run stops within
    seconds, ends the workers and leaves the drops pending for the next run. On a Dask cluster
    (a LocalCluster of 2 workers) each drop's task fails, unable to reach the API: each drop is
    a problem of the run's summary, pending for the next run.
    (``PREFECT_CLIENT_MAX_RETRIES=1``: the flow's last report to the dead server is retried once,
    not Prefect's five times over a minute.)"""
    lake = str(tmp_path / "lake")
    store = open_store(lake)
    deliver_all(store, drops)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_CLIENT_MAX_RETRIES="1",
               FUSIONLAKE_DROP_PROCESS_MIN_BYTES="1" if workers == "processes" else str(2**40))
    if workers == "dask":
        env.update(FUSIONLAKE_TASK_RUNNER="dask", FUSIONLAKE_DROP_WORKERS="2")
    exe = str(Path(sys.executable).with_name("fusionlake"))
    out = tmp_path / "stdout.txt"
    lines: list[str] = []
    landed = threading.Event()

    def read(stream) -> None:  # the command's stderr, as it comes
        for line in stream:
            lines.append(line)
            if " land: done" in line:
                landed.set()

    with out.open("w") as stdout:
        proc = subprocess.Popen([exe, "run", "--lake", lake], env=env, stdout=stdout,
                                stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
        reader.start()
        try:
            assert landed.wait(300), "".join(lines)
            server = re.search(r"Prefect server on \S+ \(pid (\d+)\)", "".join(lines))
            os.kill(int(server.group(1)), signal.SIGKILL)
            try:
                proc.wait(timeout=300)  # a command that hangs fails here
            except subprocess.TimeoutExpired:
                _stacks(proc)
                pytest.fail("the run did not end in 300 s after its Prefect server died; its "
                            "threads then:\n" + "".join(lines)[-30000:])
        finally:
            proc.kill()
            reader.join(30)
    err = "".join(lines)
    assert proc.returncode == 1, err
    run_id = re.search(r"stopped answering during run (\w+) \(", err).group(1)
    if workers == "threads":
        assert "the run summary was not posted to Prefect, whose API at " in err
        assert ("The pipeline finished its work all the same; its summary "
                f"({layout.run_report_key(run_id)} in the lake) follows.") in err
        assert out.read_text() == store.get(layout.run_report_key(run_id)).decode()
        assert sorted(e.state for e in Ledger(store).entries()) == ["published"] * 5
        assert mart_count(store, "SELECT count(*) FROM entity_record") > 0
    elif workers == "processes":
        assert "stopped answering while worker processes ran the run's validate+stage tasks" in err
        assert "The run left no summary in the lake" in err
        assert "published" not in {e.state for e in Ledger(store).entries()}
    else:  # each drop failed on its worker, and the summary says so
        summary = out.read_text()
        assert summary == store.get(layout.run_report_key(run_id)).decode()
        assert summary.count("failed and will be retried next run: Failed to reach API at "
                             "http://127.0.0.1:") == 5, summary
        assert {e.state for e in Ledger(store).entries()} == {"received"}

    again = subprocess.run([exe, "run", "--lake", lake], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(e.state for e in Ledger(store).entries()) == ["published"] * 5
    if workers == "threads":
        assert "nothing new" in again.stderr


def test_small_drops_get_their_data_docs_while_the_run_resolves(drops, tmp_path, monkeypatch):
    """Drops staged by threads: the Data Docs render in a thread beside resolve and publish
    (GX takes seconds to load), and the run waits for them before its summary. The renderer
    here waits until resolution has started: run one after the other, it would time out."""
    from fusionlake.lake.settings import Settings
    from fusionlake.pipeline import resolve, stage
    from fusionlake.pipeline.run import run

    resolving = threading.Event()
    render, resolve_all = stage.data_docs_of, resolve.resolve_audiences

    def docs_once_resolving(lake):
        assert resolving.wait(120), "the Data Docs were rendered before resolution started"
        return render(lake)

    def resolving_audiences(*args, **kwargs):
        resolving.set()
        return resolve_all(*args, **kwargs)

    monkeypatch.setattr(stage, "data_docs_of", docs_once_resolving)
    monkeypatch.setattr(resolve, "resolve_audiences", resolving_audiences)
    lake = tmp_path / "lake"
    deliver_all(open_store(str(lake)), drops)
    summary = run(Settings(lake=str(lake), drop_workers=0))
    assert summary.data_docs.endswith(f"{layout.DATA_DOCS}/index.html")
    assert (lake / layout.DATA_DOCS / "index.html").is_file()
    assert not any("Data Docs were not rebuilt" in n for n in summary.notes)
    names = [name for name, _seconds in summary.stages]
    assert names.index("publish") < names.index("data docs")  # waited for at the end
    # built while its drops were staged, the index shows them published once they are (it
    # said "staged" until some later run built it again)
    index = (lake / layout.DATA_DOCS / "index.html").read_text()
    states = re.findall(r'<tr data-drop="[^"]+">(?:<td>.*?</td>){4}<td><span class="\w+">(\w+)'
                        r"</span>", index)
    assert states and set(states) == {"published"}, states
    assert run(Settings(lake=str(lake), drop_workers=0)).noop
    assert (lake / layout.DATA_DOCS / "index.html").read_text() == index


def test_data_docs_failing_beside_the_run_leave_a_note_and_the_marts_published(drops, tmp_path,
                                                                                monkeypatch):
    """The renderer in its thread raises (a broken result, a full disk): the run still
    resolves and publishes, and says in its summary why the stewards' site was not rebuilt."""
    from fusionlake.lake.settings import Settings
    from fusionlake.pipeline import stage
    from fusionlake.pipeline.run import run

    def broken(lake):
        raise OSError("No space left on device")

    monkeypatch.setattr(stage, "data_docs_of", broken)
    lake = tmp_path / "lake"
    store = open_store(str(lake))
    deliver_all(store, drops, only={"th_imm/repatriations"})
    summary = run(Settings(lake=str(lake), drop_workers=0))
    assert summary.data_docs is None
    assert any("Data Docs were not rebuilt (out of disk space: No space left on device)" in n
               for n in summary.notes), summary.notes
    assert [e.state for e in Ledger(store).entries()] == ["published"]
    assert mart_count(store, "select count(*) from entity_record") > 0
    assert "Data Docs were not rebuilt" in store.get("reports/runs/LATEST.md").decode()


def test_a_workbook_with_a_stray_far_cell_is_rejected_and_the_run_goes_on(drops, tmp_path):
    """A 6 KB workbook with a value in cell XFD1048576 aborted the whole run in calamine (a
    512 GiB allocation), and every later run, since the drop stayed pending. Now it is rejected
    with the cell named, and the other drops of the run are staged and published."""
    import xlsxwriter

    from fusionlake.lake.settings import Settings
    from fusionlake.pipeline.run import run

    bad = tmp_path / "detentions-stray.xlsx"
    book = xlsxwriter.Workbook(str(bad))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["ลำดับที่", "ชื่อ"])
    sheet.write(1048575, 16383, "x")
    book.close()
    lake = tmp_path / "lake"
    store = open_store(str(lake))
    deliver_all(store, drops, only={"th_imm/repatriations"})
    deliver(store, "th_imm", "detentions", [bad])
    summary = run(Settings(lake=str(lake), drop_workers=0))
    [rejected] = [d for d in summary.drops if d.state == "rejected"]
    assert rejected.name == "th_imm/detentions/detentions-stray.xlsx"
    assert "has values as far as cell XFD1048576" in rejected.reason
    assert sorted(e.state for e in Ledger(store).entries()) == ["published", "rejected"]
    assert mart_count(store, "select count(*) from entity_record") > 0


#: A run in a process of its own, as `fusionlake run` makes one, without the Prefect server
#: and flow around it (10 s of start-up that these tests do not look at); the lake's path last.
_RUN_IN_A_PROCESS = [sys.executable, "-c", "import sys; from fusionlake.lake.settings import "
                     "Settings; from fusionlake.pipeline.run import run; "
                     "run(Settings.from_env(sys.argv[1]))"]


def test_a_drop_that_ends_the_run_s_process_costs_one_run_not_every_later_one(drops, tmp_path,
                                                                             monkeypatch):
    """Small drops are staged in threads of the run's own process. A drop that ends whatever
    process stages it (here SIGKILL as its staged file is written, as the OOM killer or a
    reader's abort would) ended every later run too, since it stayed pending. Now the run after
    stages it alone in a worker process: that worker dies, the drop is held for a person with
    the reason, and the other drops are staged and published."""
    from fusionlake.lake.settings import Settings
    from fusionlake.pipeline.run import run

    lake = str(tmp_path / "lake")
    store = open_store(lake)
    deliver_all(store, drops, only={"th_imm/detentions", "th_imm/repatriations"})
    monkeypatch.setenv("FUSIONLAKE_KILL_AT", "temp-written:staged/person_record/th_imm/detentions")
    first = subprocess.run([*_RUN_IN_A_PROCESS, lake], capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    marks = store.list("ledger/attempts/")  # the drops it was staging when it ended
    marked = {key.rsplit("/", 1)[-1].split(".")[0] for key in marks}
    # those of them still pending are staged apart: the repatriations drop too when the run
    # died before it was staged (under load), not when it was staged and not yet collected
    apart = {f"{e.agency}/{e.feed}/{e.file_name}" for e in Ledger(store).entries()
             if e.drop_id in marked and e.state in ("received", "validated")}
    assert "th_imm/detentions/detentions.xlsx" in apart

    second = run(Settings(lake=lake))  # the drop still ends whatever process stages it
    states = {e.file_name: e for e in Ledger(store).entries()}
    held = states.pop("detentions.xlsx")
    assert any(held.drop_id in m for m in marks) and held.state == "held", (held, marks)
    assert held.reason.startswith("its worker process died while staging it, alone, after an "
                                  "earlier run ended while staging it (BrokenProcessPool)")
    assert [e.state for e in states.values()] == ["published"]
    assert second.problems == [f"drop {held.drop_id} (th_imm/detentions/detentions.xlsx) "
                               f"held: {held.reason}"]
    [note] = [n for n in second.notes if "were being staged when run(s)" in n]
    assert note.startswith(f"{len(apart)} drop(s) were being staged when") and "apart" in note
    assert set(note.rsplit(": ", 1)[-1].split(", ")) == apart
    assert note in store.get("reports/runs/LATEST.md").decode()
    assert store.list("ledger/attempts/") == []
    third = run(Settings(lake=lake))
    assert (third.noop, third.problems) == (True, [])


def test_a_drop_whose_staging_never_ends_costs_one_run_and_is_held(drops, tmp_path,
                                                                   monkeypatch):
    """A reader stuck on a file (here ``FUSIONLAKE_HANG_AT`` blocks the thread staging it for
    good) kept its run waiting, and with it the lake's lease, which the run's heartbeat renews:
    every later run found the lake taken, for good. Now the process staging a drop ends once
    that takes longer than ``FUSIONLAKE_DROP_SECONDS``: the run's own, since small drops are
    staged in its threads; the next run stages the drop apart in a worker process, which ends
    the same way, and holds it with the reason; the other drop is published."""
    from fusionlake.lake.settings import Settings
    from fusionlake.pipeline.run import OVERRAN_EXIT, run

    lake = str(tmp_path / "lake")
    store = open_store(lake)
    deliver_all(store, drops, only={"th_imm/detentions", "th_imm/repatriations"})
    monkeypatch.setenv("FUSIONLAKE_HANG_AT", "staging:detentions")
    monkeypatch.setenv("FUSIONLAKE_DROP_SECONDS", "8")
    first = subprocess.run([*_RUN_IN_A_PROCESS, lake], capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == OVERRAN_EXIT, first.stdout + first.stderr
    [stuck] = [e for e in Ledger(store).entries() if e.file_name == "detentions.xlsx"]
    assert (f"drop {stuck.drop_id} (th_imm/detentions/detentions.xlsx) is still being "
            "validated and staged after 8 s (FUSIONLAKE_DROP_SECONDS)") in first.stderr
    assert any(key.rsplit("/", 1)[-1].startswith(stuck.drop_id)
               for key in store.list("ledger/attempts/"))

    second = run(Settings(lake=lake, drop_seconds=8))  # the drop still never finishes
    assert_held_for_overrun(store, second, 8, "alone, after an earlier run ended while staging "
                                              "it (BrokenProcessPool)")
    third = run(Settings(lake=lake, drop_seconds=8))
    assert (third.noop, third.problems) == (True, [])


def test_a_library_panic_while_staging_rejects_that_drop_and_the_run_goes_on(drops, tmp_path,
                                                                             monkeypatch):
    """A Rust library's panic reaches Python as PanicException, a BaseException: it went past
    every `except Exception` and ended the run, and every later run, the drop staying pending.
    Now it rejects the drop it happened in, with the panic's message, and the run goes on."""
    import polars as pl

    from fusionlake.lake.settings import Settings
    from fusionlake.pipeline import stage
    from fusionlake.pipeline.run import run

    canonical = stage.to_canonical

    def panicking(frame, feed, *args, **kwargs):
        if feed.name == "th_imm/detentions":
            # over two lines, as pydantic's and Rust's messages often are: the ledger keeps one
            raise pl.exceptions.PanicException("index out of bounds: the len is 3\n  but the "
                                               "index is 7")
        return canonical(frame, feed, *args, **kwargs)

    monkeypatch.setattr(stage, "to_canonical", panicking)
    lake = str(tmp_path / "lake")
    store = open_store(lake)
    deliver_all(store, drops, only={"th_imm/detentions", "th_imm/repatriations"})
    summary = run(Settings(lake=lake, drop_workers=0))
    states = {e.file_name: e for e in Ledger(store).entries()}
    rejected = states.pop("detentions.xlsx")
    assert rejected.state == "rejected"
    assert rejected.reason == ("could not be processed: LibraryPanic: detentions.xlsx: a library "
                               "panicked while staging it: index out of bounds: the len is 3 "
                               "but the index is 7")
    assert [e.state for e in states.values()] == ["published"]
    assert summary.problems == [f"drop {rejected.drop_id} (th_imm/detentions/detentions.xlsx) "
                                f"{rejected.reason}"]
    assert store.list("ledger/attempts/") == []
    # rejected under its feed's fingerprint, as any other rejection: the same feed leaves it
    # be, a changed one (the fix of a column it broke on) validates it again, no retry needed
    feeds = load_feeds()
    assert stage.pending_drops(Ledger(store), feeds) == []
    feed = feeds.feeds["th_imm/detentions"]
    column = next(c for c, o in feed.columns.items() if not o.get("required"))
    feeds.feeds[feed.name] = replace(
        feed, columns={**feed.columns, column: {**feed.columns[column], "required": True}})
    assert [e.drop_id for e in stage.pending_drops(Ledger(store), feeds)] == [rejected.drop_id]


def test_a_run_whose_only_news_is_a_rejected_drop_shows_it_to_the_stewards(two_drops, tmp_path):
    """A binary file sent as th_imm's repatriations is rejected. The run found the marts'
    inputs unchanged (only the live drops and decisions counted) and published nothing, so no
    mart's drop_ledger showed the rejection until some other drop came. Now the task force's
    and th_imm's marts show it, republished with their stewards' tables alone; Myanmar's, which
    sees nothing of it, is kept; and the next run has nothing to do."""
    from fusionlake.pipeline import marts
    from fusionlake.pipeline.run import run

    lake = _copy(two_drops, tmp_path)
    store = open_store(str(lake))
    before = {a: marts.latest(store, a)["version"] for a in ("all", "th_imm", "mm_police")}
    broken = tmp_path / "repatriations_2.csv"
    broken.write_bytes(b"\x00\x01PK\x03\x04" * 200 + b"\n")  # whole: it ends with a line end
    deliver(store, "th_imm", "repatriations", [broken])
    summary = run(Settings(lake=str(lake), drop_workers=0))
    assert [d.state for d in summary.drops] == ["rejected"], (summary.landed, summary.notes)
    after = {a: marts.latest(store, a) for a in before}
    assert after["mm_police"]["version"] == before["mm_police"]
    for audience in ("all", "th_imm"):
        assert after[audience]["version"] != before[audience]
        assert after[audience]["build"]["why"].startswith("its stewards' tables only")
        assert mart_count(store, "select count(*) from drop_ledger where state = 'rejected' "
                                 "and file_name = 'repatriations_2.csv'", audience) == 1
    assert run(Settings(lake=str(lake), drop_workers=0)).noop


@pytest.mark.parametrize("crash_at", ["before-pointer", "before-manifest:marts/"])
def test_a_run_killed_while_showing_a_rejection_to_the_stewards_completes_on_restart(
        api_url, two_drops, crash_at, tmp_path, monkeypatch):
    """The republish of the stewards' tables alone (a run whose only news is a rejected drop)
    killed before its first mart is in place: the readers keep the marts they had, the drop's
    rejection stands in the ledger, and the next run, seeing nothing new to stage, still puts
    the rejection into the marts and leaves nothing behind."""
    from fusionlake.pipeline import marts
    from fusionlake.pipeline.run import run

    lake = str(_copy(two_drops, tmp_path))
    store = open_store(lake)
    before = {a: marts.latest(store, a)["version"] for a in ("all", "th_imm")}
    broken = tmp_path / "repatriations_2.csv"
    broken.write_bytes(b"\x00\x01PK\x03\x04" * 200 + b"\n")
    deliver(store, "th_imm", "repatriations", [broken])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "killed-run.log"
    with open(log, "wb") as out:
        proc = _cli(api_url, lake, "run", output=out,
                    env={"FUSIONLAKE_KILL_AT": crash_at, "TMPDIR": str(tmp)})
        proc.wait(timeout=600)
    assert proc.returncode == -signal.SIGKILL, log.read_text(errors="replace")[-4000:]
    _finish(proc)
    assert {a: marts.latest(store, a)["version"] for a in before} == before
    [rejected] = [e for e in Ledger(store).entries() if e.file_name == broken.name]
    assert rejected.state == "rejected"

    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    again = run(Settings(lake=lake, drop_workers=0))
    assert not again.problems, again.problems
    assert _leftovers(store, tmp) == []
    for audience in before:
        after = marts.latest(store, audience)
        assert after["version"] != before[audience]
        assert after["build"]["why"].startswith("its stewards' tables only"), after["build"]
        assert mart_count(store, "select count(*) from drop_ledger where state = 'rejected' "
                                 f"and file_name = '{broken.name}'", audience) == 1
    assert run(Settings(lake=lake, drop_workers=0)).noop


def test_a_run_points_again_a_latest_written_over_or_naming_a_missing_version(two_drops,
                                                                              tmp_path):
    """The task force's LATEST written over, Thailand's naming a version not there: `sql`
    failed and every run said "nothing new" until someone mended them by hand. The next run's
    clean start points each at its newest complete version and says so; nothing else changes."""
    import json

    from fusionlake.lake import versions
    from fusionlake.pipeline import marts
    from fusionlake.pipeline.run import run

    lake = _copy(two_drops, tmp_path)
    store = open_store(str(lake))
    before = {a: marts.latest(store, a) for a in ("all", "th_imm")}
    for audience, text in (("all", b"{not json"), ("th_imm", json.dumps(
            {**before["th_imm"], "version": "29991231T000000000000Z-abcdef"}).encode())):
        path = store.path(f"marts/{audience}/LATEST")
        path.chmod(0o600)
        path.write_bytes(text)
    with pytest.raises(versions.UnreadablePointer):
        marts.latest(store, "all")
    summary = run(Settings(lake=str(lake), drop_workers=0))
    assert not summary.problems, summary.problems
    assert sorted(n for n in summary.notes if n.startswith("clean start: ")) == [
        f"clean start: marts/all/LATEST was not a pointer: pointed again at "
        f"{before['all']['version']}",
        "clean start: marts/th_imm/LATEST named version 29991231T000000000000Z-abcdef, which is "
        f"not complete: pointed again at {before['th_imm']['version']}"]
    assert {a: marts.latest(store, a) for a in before} == before
    assert mart_count(store, "select count(*) from entity_record", "th_imm") > 0
    assert run(Settings(lake=str(lake), drop_workers=0)).noop


def test_staged_records_of_a_drop_the_ledger_lost_are_a_problem_not_a_silent_loss(two_drops,
                                                                                    tmp_path):
    """Every event of a published drop deleted from the ledger: the next run republished the
    marts without its 130 records and exited 0 (a hostile walk of 2026-12-07). The records are
    still left out (the ledger says what counts), but the run names the drop as a problem."""
    from fusionlake.pipeline.run import run

    lake = _copy(two_drops, tmp_path)
    store = open_store(str(lake))
    [lost] = [e for e in Ledger(store).entries() if e.feed == "detainees"]
    for key in store.list(f"ledger/drops/{lost.drop_id}/"):
        store.delete(key)
    summary = run(Settings(lake=str(lake), drop_workers=0))
    assert summary.problems == [
        f"staged records of 1 drop(s) have no usable entry in the drop ledger ({lost.drop_id}; "
        "ledger/drops/<drop id>/ removed or written over?): they are left out of the marts. "
        "Restore those objects of the ledger, or remove the drop's staged files if it is meant "
        "to be gone"]
    assert mart_count(store, "select count(*) from entity_record where feed = 'detainees'") == 0


def test_a_staged_file_written_over_holds_its_drop_and_retry_stages_it_again(two_drops, drops,
                                                                             tmp_path):
    """A staged Parquet file written over with garbage: every later run ended in a traceback
    of 151 lines, and the new drops stayed behind it (a hostile walk of 2026-12-07). Now its
    drop is held, saying why and what to do, the other drops are published, and `retry`
    stages it again from its raw file."""
    from fusionlake.pipeline.run import run

    lake = _copy(two_drops, tmp_path)
    store = open_store(str(lake))
    [first] = [e for e in Ledger(store).entries() if e.feed == "repatriations"]
    records = mart_count(store, "select count(*) from entity_record where feed = "
                                "'repatriations'")
    key = layout.staged_key("person_record", "th_imm", "repatriations", first.drop_id)
    path = store.path(key)
    path.chmod(0o600)
    path.write_bytes(b"PAR1 not parquet at all")
    deliver_all(store, drops, only={"cn_mps/suspects"})
    summary = run(Settings(lake=str(lake), drop_workers=0))
    why = (f"its staged file {key} cannot be read (person_record: cannot read ")
    assert [p.startswith(f"drop {first.drop_id} held: {why}") for p in summary.problems] == [
        True], summary.problems
    states = {e.feed: e for e in Ledger(store).entries()}
    assert states["repatriations"].state == "held"
    assert states["repatriations"].reason.endswith(
        f"`fusionlake retry {first.drop_id}` stages it again from its raw file")
    assert states["suspects"].state == "published"
    assert mart_count(store, "select count(*) from entity_record where feed = 'suspects'") > 0

    Ledger(store).decide(first.drop_id, "retry", "steward", "staged file damaged")
    summary = run(Settings(lake=str(lake), drop_workers=0))
    assert not summary.problems, summary.problems
    assert {e.feed: str(e.state) for e in Ledger(store).entries()} == {
        "repatriations": "published", "detainees": "published", "suspects": "published"}
    assert mart_count(store, "select count(*) from entity_record where feed = "
                             "'repatriations'") == records


def test_a_staged_file_damaged_inside_ends_one_run_naming_it_and_the_next_goes_on(
        two_drops, drops, tmp_path):
    """Bytes written over inside a staged file, its footer whole: every run ended in Polars'
    "Invalid thrift" with no file named, the new drops stuck behind it, and `retry` refused the
    drop as published (a hostile walk of 2026-12-07). Now that run ends with one line naming
    the file, its drop is held, the next run publishes the others, and `retry` mends it."""
    from fusionlake.lake.store import LakeError
    from fusionlake.pipeline.run import run

    lake = _copy(two_drops, tmp_path)
    store = open_store(str(lake))
    [damaged] = [e for e in Ledger(store).entries() if e.feed == "detainees"]
    key = layout.staged_key("person_record", "mm_police", "detainees", damaged.drop_id)
    path = store.path(key)
    data = bytearray(path.read_bytes())
    data[8:len(data) // 2] = b"\xff" * (len(data) // 2 - 8)  # pages gone, the footer whole
    path.chmod(0o600)
    path.write_bytes(bytes(data))
    deliver_all(store, drops, only={"cn_mps/suspects"})
    with pytest.raises(LakeError) as caught:
        run(Settings(lake=str(lake), drop_workers=0, full=True))
    assert str(caught.value).startswith(f"staged file(s) {key} cannot be read (")
    assert "\n" not in str(caught.value)
    summary = run(Settings(lake=str(lake), drop_workers=0))
    assert not summary.problems, summary.problems
    states = {e.feed: str(e.state) for e in Ledger(store).entries()}
    assert states == {"repatriations": "published", "detainees": "held",
                      "suspects": "published"}
    Ledger(store).decide(damaged.drop_id, "retry", "steward", "damaged staged file")
    assert not run(Settings(lake=str(lake), drop_workers=0)).problems
    assert {e.feed: str(e.state) for e in Ledger(store).entries()}["detainees"] == "published"


def test_a_damaged_record_of_the_data_docs_leaves_the_index_and_the_run_alone(two_drops,
                                                                              tmp_path):
    """The index's rows kept beside it (index.json) cut short, or written over with JSON that
    is no list of rows (a TypeError, found by this test): the index is left as it was."""
    from fusionlake.pipeline import stage

    lake = _copy(two_drops, tmp_path)
    store = open_store(str(lake))
    index = store.get(f"{layout.DATA_DOCS}/index.html")
    store.put(f"{layout.DATA_DOCS}/index.json", b'[{"drop_id": "x", "sta')
    assert stage.restate_data_docs(store) is False
    assert store.get(f"{layout.DATA_DOCS}/index.html") == index
    store.put(f"{layout.DATA_DOCS}/index.json", b'{"not": "rows"}')
    assert stage.restate_data_docs(store) is False
    assert store.get(f"{layout.DATA_DOCS}/index.html") == index
