"""Per-drop work on a Dask cluster (FUSIONLAKE_TASK_RUNNER=dask, flows/tasks.py).

The pipeline flow runs through Prefect's test harness with prefect-dask's task runner on a
LocalCluster of two single-threaded worker processes, over a lake on S3 (the moto server of
tests/conftest.py): the workers read raw drops from S3 and write staged files, quarantine,
validation results, ledger entries and the Data Docs there, and report their task runs to the
run's Prefect API. What they stage must equal what the default runner stages from the same drops.
A lake folder of this host with a scheduler elsewhere is refused before anything runs.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from conftest import assert_held_for_overrun, deliver_all
from polars.testing import assert_frame_equal

from fusionlake.lake import layout, schema
from fusionlake.lake.ledger import Ledger
from fusionlake.lake.settings import Settings, SettingsError
from fusionlake.lake.store import open_store

PEOPLE = 300
REMOTE = "tcp://10.20.30.40:8786"  # a scheduler on another machine (never contacted)
HANG_GUARD_SECONDS = 600  # a run that should have ended its stuck drop's workers long before


@pytest.fixture(scope="module")
def drops(tmp_path_factory) -> Path:
    from fusionlake.synth import generate

    out = tmp_path_factory.mktemp("drops")
    generate(PEOPLE, 11, out)
    return out


def staged_tables(store) -> dict[str, pl.DataFrame]:
    return {key.removeprefix("staged/"): pl.read_parquet(store.get(key)).sort("record_id")
            for key in store.list("staged")}


def task_runs(flow_run_id) -> list[tuple[str, str]]:
    """(task name, final state) of every task run the flow run's API recorded."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as client:
            return await client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[flow_run_id])))

    return sorted((r.name.rsplit("-", 1)[0], r.state.type.value) for r in asyncio.run(read()))


@pytest.mark.slow
def test_a_flow_run_on_dask_stages_from_s3_what_the_default_runner_stages(
        prefect_harness, s3_bucket, drops, monkeypatch):
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from flows import tasks
    from flows.pipeline import pipeline
    from fusionlake.pipeline import stage

    default, on_dask = (open_store(f"s3://{s3_bucket}/{name}") for name in ("default", "dask"))
    for store in (default, on_dask):
        deliver_all(store, drops)
    assert not pipeline(lake=default.uri, run_id="default").problems
    assert default.uri in stage._seeded  # the default runner staged in this process (threads)

    monkeypatch.setenv("FUSIONLAKE_TASK_RUNNER", "dask")
    monkeypatch.delenv("FUSIONLAKE_DASK_ADDRESS", raising=False)
    monkeypatch.setenv("FUSIONLAKE_DROP_WORKERS", "2")  # a LocalCluster of 2 processes
    runners, real = [], tasks.dask_runner  # the task runners the run made, to look at after

    def recorded(settings, api_url):
        runners.append(real(settings, api_url))
        return runners[-1]

    monkeypatch.setattr("flows.tasks.dask_runner", recorded)
    state = pipeline(lake=on_dask.uri, run_id="dask", return_state=True)
    summary = state.result()

    assert not summary.problems, summary.problems
    assert sorted(d.state for d in summary.drops) == ["staged"] * 5
    # ... by the processes of one LocalCluster (2 workers, a thread each), not by this process
    (runner,) = runners
    assert isinstance(runner, DaskTaskRunner) and isinstance(runner._cluster, LocalCluster)
    assert {k: runner.cluster_kwargs[k] for k in ("n_workers", "threads_per_worker")} == {
        "n_workers": 2, "threads_per_worker": 1}
    assert on_dask.uri not in stage._seeded
    # every worker reported its task run to the run's own API, and each ended well
    runs = task_runs(state.state_details.flow_run_id)
    assert [r for r in runs if r[0] in ("validate+stage", "data docs")] == [
        ("data docs", "COMPLETED"), *[("validate+stage", "COMPLETED")] * 5]
    # the Data Docs were built on a worker, into the lake on S3
    assert summary.data_docs == f"{on_dask.uri}/{layout.DATA_DOCS}/index.html"
    assert on_dask.exists(f"{layout.DATA_DOCS}/index.html")
    assert not [n for n in summary.notes if "Data Docs" in n]

    # the same ledger and the same staged records as the default runner
    def ledger(store):
        return sorted((e.drop_id, e.agency, e.feed, e.file_name, e.sha256, e.state)
                      for e in Ledger(store).entries())

    assert ledger(on_dask) == ledger(default)
    assert {e[5] for e in ledger(on_dask)} == {"published"}
    ours, theirs = staged_tables(on_dask), staged_tables(default)
    assert ours.keys() == theirs.keys() and len(ours) == 5 * len(schema.TABLES)
    for key, frame in ours.items():
        assert_frame_equal(frame, theirs[key])
    # the workers' transliterations came back to the run and into the lake's cache
    cache = [pl.read_parquet(s.get(layout.TRANSLIT_CACHE)).sort("script", "token")
             for s in (on_dask, default)]
    assert_frame_equal(*cache)


@pytest.mark.slow
def test_a_drop_whose_staging_never_ends_on_dask_is_held_and_the_lake_is_not_kept(
        prefect_harness, s3_bucket, drops, monkeypatch):
    """The staging time limit on the Dask path. A reader stuck on a file
    (``FUSIONLAKE_HANG_AT`` blocks the call staging it for good) ends the worker process it
    runs in once it takes longer than ``FUSIONLAKE_DROP_SECONDS``; Dask gives the call to
    another worker, which ends the same way, and gives up (KilledWorker) after
    ``allowed-failures`` (1 here, to keep the test short). The drop is held with the reason,
    the other drop is published in the same run, and the run gives the lake's lease back: the
    next run is a no-op, not a lake taken for good."""
    import dask
    import distributed  # noqa: F401  its config defaults, before one of them is set

    from flows.pipeline import pipeline

    store = open_store(f"s3://{s3_bucket}/hung")
    deliver_all(store, drops, only={"th_imm/detentions", "th_imm/repatriations"})
    monkeypatch.setenv("FUSIONLAKE_TASK_RUNNER", "dask")
    monkeypatch.delenv("FUSIONLAKE_DASK_ADDRESS", raising=False)
    monkeypatch.setenv("FUSIONLAKE_DROP_WORKERS", "2")
    monkeypatch.setenv("FUSIONLAKE_HANG_AT", "staging:detentions")  # the workers inherit it
    monkeypatch.setenv("FUSIONLAKE_DROP_SECONDS", "8")
    # Without the limit the run would wait for the drop for good: it runs in a thread of its
    # own, and the test fails, saying so, rather than the suite hang (the thread is left
    # behind, a daemon: it ends with the process, and its cluster's workers with it).
    outcome = {}

    def run_it() -> None:
        try:
            with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
                outcome["summary"] = pipeline(lake=store.uri, run_id="hung")
        except BaseException as exc:  # re-raised in the test's thread below
            outcome["error"] = exc

    runner = threading.Thread(target=run_it, name="hung-drop-run", daemon=True)
    runner.start()
    runner.join(HANG_GUARD_SECONDS)
    if runner.is_alive():
        pytest.fail(f"the run still waits for the stuck drop after {HANG_GUARD_SECONDS} s: "
                    "its staging time limit did not end the workers")
    if "error" in outcome:
        raise outcome["error"]
    summary = outcome["summary"]

    assert_held_for_overrun(store, summary, 8, "on each of the 2 Dask workers that took it "
                                               "(KilledWorker)")

    monkeypatch.delenv("FUSIONLAKE_HANG_AT")
    after = pipeline(lake=store.uri, run_id="after")
    assert (after.noop, after.problems) == (True, [])


def test_a_scheduler_elsewhere_with_a_lake_folder_is_refused_by_the_command_line(
        tmp_path, monkeypatch, capsys):
    from fusionlake import cli

    lake = tmp_path / "lake"
    monkeypatch.setenv("FUSIONLAKE_TASK_RUNNER", "dask")
    monkeypatch.setenv("FUSIONLAKE_DASK_ADDRESS", REMOTE)
    assert cli.main(["run", "--lake", str(lake)]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err == (
        f"fusionlake run: the Dask scheduler at {REMOTE} (FUSIONLAKE_DASK_ADDRESS) has workers "
        f"that cannot read this host's lake folder {lake}: give an s3:// lake, or unset "
        "FUSIONLAKE_DASK_ADDRESS for a cluster on this host\n")
    assert not lake.exists()  # refused before anything ran
    # and `serve` likewise, before any server starts
    assert cli.main(["serve", "--lake", str(lake)]) == cli.EXIT_USER_ERROR
    assert capsys.readouterr().err.startswith("fusionlake serve: the Dask scheduler at ")


def test_an_unknown_task_runner_is_refused(tmp_path, monkeypatch, capsys):
    from fusionlake import cli

    monkeypatch.setenv("FUSIONLAKE_TASK_RUNNER", "spark")
    assert cli.main(["run", "--lake", str(tmp_path / "lake")]) == cli.EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        "fusionlake run: FUSIONLAKE_TASK_RUNNER='spark' is not one of local, dask\n")


def test_settings_of_the_task_runner(monkeypatch):
    for name in ("FUSIONLAKE_TASK_RUNNER", "FUSIONLAKE_DASK_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    assert (Settings.from_env().task_runner, Settings.from_env().dask_address) == ("local", None)
    monkeypatch.setenv("FUSIONLAKE_DASK_ADDRESS", REMOTE)  # naming a scheduler means using it
    assert (Settings.from_env().task_runner, Settings.from_env().dask_address) == ("dask", REMOTE)
    monkeypatch.setenv("FUSIONLAKE_TASK_RUNNER", "local")  # unless told otherwise
    assert Settings.from_env().task_runner == "local"
    Settings.from_env("./lake").check_task_runner()  # not used: no objection
    # a LocalCluster shares this host's folder; a scheduler elsewhere needs object storage
    Settings(lake="./lake", task_runner="dask").check_task_runner()
    Settings(lake="s3://b/lake", task_runner="dask", dask_address=REMOTE).check_task_runner()
    for lake in ("./lake", "file:///srv/lake"):
        with pytest.raises(SettingsError, match="cannot read this host's lake folder"):
            Settings(lake=lake, task_runner="dask", dask_address=REMOTE).check_task_runner()


def test_the_flow_refuses_before_landing_anything(prefect_harness, tmp_path, s3_bucket, drops,
                                                   monkeypatch):
    from flows.pipeline import pipeline

    monkeypatch.setenv("FUSIONLAKE_TASK_RUNNER", "dask")
    monkeypatch.setenv("FUSIONLAKE_DASK_ADDRESS", REMOTE)
    folder = open_store(str(tmp_path / "lake"))
    deliver_all(folder, drops)
    with pytest.raises(SettingsError, match="cannot read this host's lake folder"):
        pipeline(lake=folder.uri)
    assert Ledger(folder).entries() == []
    # on S3 the lake is fine, but this run's Prefect API is on loopback, out of the workers'
    # reach on other machines
    on_s3 = open_store(f"s3://{s3_bucket}/lake")
    deliver_all(on_s3, drops)
    with pytest.raises(SettingsError, match=r"cannot reach this run's Prefect API at "
                                            r"http://127\.0\.0\.1:\d+/api/?: set PREFECT_API_URL"):
        pipeline(lake=on_s3.uri)
    assert Ledger(on_s3).entries() == []


def test_calls_the_cluster_lost_leave_their_drops_pending_and_a_killer_drop_is_held():
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    from flows.tasks import lost_by_cluster
    from fusionlake.lake.store import TransientLakeError, is_transient
    from fusionlake.pipeline.run import WorkerDied

    for exc in (CommClosedError("in <TCP (closed)>: Stream is closed"),
                FutureCancelledError("stage_one-1f2e", "scheduler-connection-lost")):
        lost = lost_by_cluster(exc)
        assert isinstance(lost, TransientLakeError) and is_transient(lost)
        assert str(lost).startswith(f"the Dask cluster lost the call ({type(exc).__name__}: ")
    # a drop that killed every worker that took it is held for a person, not rejected
    worker = SimpleNamespace(address="tcp://127.0.0.1:4000")  # the scheduler's WorkerState
    died = lost_by_cluster(KilledWorker("stage_one-1f2e", worker, 3))
    assert isinstance(died, WorkerDied) and not is_transient(died)
    assert str(died) == "on each of the 4 Dask workers that took it (KilledWorker)"
    # any error of the drop itself is judged as it is
    exc = ValueError("bad")
    assert lost_by_cluster(exc) is exc
