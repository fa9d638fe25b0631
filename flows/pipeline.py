"""The ``pipeline`` flow: the main job (DESIGN.md, "The flow").

discover new drops -> per drop, concurrently: land, then read, validate, standardise ->
once: resolve entities -> publish one mart per audience -> leave a run summary.

Orchestration only. Each step is a function of fusionlake.pipeline.stage / fusionlake.pipeline.land,
tested without Prefect; here we say what runs when, what is retried (object-store calls) and
what is not (bad data: it is recorded as rejected and the run goes on).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Iterator

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from fusionlake.lake import zones
from fusionlake.lake.faults import kill_point
from fusionlake.lake.lease import acquire
from fusionlake.lake.ledger import DropEntry, Ledger
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import LakeError, ObjectInfo, ObjectStore, open_store
from fusionlake.pipeline import stage as processing
from fusionlake.pipeline.land import Landed, discover, land
from fusionlake.pipeline.progress import stage_progress
from fusionlake.pipeline.summary import RunSummary

# Passing storage failures are retried with backoff; nothing else is (bad data does not improve).
RETRY = {"retries": 3, "retry_delay_seconds": [2, 8, 30]}
TASK = {"cache_policy": NO_CACHE, "persist_result": False}


def _transient(task, run, state) -> bool:
    try:
        state.result()
    except (LakeError, OSError, ConnectionError):
        return True
    except Exception:
        return False
    return False


@task(name="land", retry_condition_fn=_transient, **RETRY, **TASK)
def land_task(lake: str, info: ObjectInfo, run_id: str) -> Landed:
    store = open_store(lake)
    return land(store, Ledger(store), info, run_id)


@task(name="process-drop", retry_condition_fn=_transient, **RETRY, **TASK)
def process_task(lake: str, feeds_path: list[str], entry: DropEntry,
                 run_id: str) -> processing.DropResult:
    return processing.stage_drop(lake, feeds_path, entry, run_id)


@contextlib.contextmanager
def _drop_runner(workers: int) -> Iterator[TaskRunner]:
    """Worker processes for big drops (they use every core), threads for small ones."""
    if not workers:
        with ThreadPoolTaskRunner() as runner:
            yield runner
        return
    # The workers report to this run's API. Without PREFECT_API_URL that is a temporary server
    # of this process, and each worker would otherwise start one of its own on the same SQLite
    # database: 8-10 s per worker, and "database is locked" errors.
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    with (temporary_settings({PREFECT_API_URL: api_url}),
          ProcessPoolTaskRunner(max_workers=workers,
                                initializer=processing.exit_with_parent) as runner):
        yield runner


@task(name="build-data-docs", retry_condition_fn=_transient, **RETRY, **TASK)
def data_docs_task(lake: str) -> str | None:
    return processing.publish_data_docs(open_store(lake))


def _fingerprint(store: ObjectStore, ledger: Ledger) -> str:
    """What the marts are built from: live drops and steward decisions."""
    live = sorted(e.drop_id for e in ledger.entries() if e.state in ("staged", "published"))
    decisions = store.list(zones.DECISIONS)
    return hashlib.sha256(json.dumps([live, decisions]).encode()).hexdigest()[:16]


@flow(name="pipeline", log_prints=True)
def pipeline(lake: str | None = None, feeds_path: list[str] | None = None,
             run_id: str | None = None, lease_wait: float = 0.0) -> RunSummary:
    """Run the whole pipeline once over all new drops of a lake."""
    from fusionlake.lake.feeds import load_feeds

    settings = Settings.from_env(lake)
    lake = settings.lake
    feeds_path = settings.feeds_path if feeds_path is None else feeds_path
    run_id = run_id or uuid.uuid4().hex[:12]
    log = get_run_logger()
    store = open_store(lake)
    summary = RunSummary(run_id=run_id, lake=store.uri)

    with acquire(store, run_id, seconds=settings.lease_seconds, wait=lease_wait):
        ledger = Ledger(store)
        feedset = load_feeds(feeds_path)
        for err in feedset.errors:
            summary.problems.append(f"feed definition error: {err}")

        # 1. land every new delivery, concurrently
        t0 = time.perf_counter()
        new = discover(store, ledger)
        futures = [land_task.submit(lake, i, run_id) for i in new]
        with stage_progress("land", len(new), log) as advance:
            for info, fut in zip(new, futures, strict=True):
                try:
                    summary.landed.append(fut.result())
                    advance(f"{info.key}: {summary.landed[-1].status}")
                except Exception as exc:  # left unmarked in the ledger: the next run retries it
                    summary.problems.append(f"could not land {info.key}: {exc}")
                    advance(f"{info.key}: failed")
        summary.stage("land", t0)
        kill_point("after-land")

        # 2. per drop: read, validate, standardise (a broken drop fails only itself); the
        # workers end with the stage, so resolution starts with their memory given back
        t0 = time.perf_counter()
        pending = processing.largest_first(processing.pending_drops(ledger))
        workers = processing.drop_workers(pending, settings.drop_workers,
                                          settings.drop_process_min_bytes)
        learnt = []  # transliterations the drops made, for the lake's cache
        with _drop_runner(workers) as runner:
            with stage_progress("validate+stage", len(pending), log) as advance:
                futures = [runner.submit(process_task, {"lake": lake, "feeds_path": feeds_path,
                                                        "entry": e, "run_id": run_id})
                           for e in pending]
                for entry, fut in zip(pending, futures, strict=True):
                    name = f"{entry.agency}/{entry.feed}/{entry.file_name}"
                    try:
                        result = fut.result()
                        learnt.append(result.transliterations)
                        result.transliterations = None
                        summary.drops.append(result)
                        advance(f"{name}: {result.state}")
                    except Exception as exc:
                        summary.problems.append(
                            f"drop {entry.drop_id} ({name}) failed and will be retried next "
                            f"run: {exc}")
                        advance(f"{name}: failed")
            if pending:
                processing.save_translit_cache(store, learnt)
            summary.stage("validate+stage", t0)
            kill_point("after-stage")
            if pending:  # by a drop worker: GX is loaded there, and need not be in this process
                t0 = time.perf_counter()
                summary.data_docs = runner.submit(data_docs_task, {"lake": lake}).result()
                summary.stage("data docs", t0)

        # 3. resolve and publish, unless nothing they depend on changed
        fingerprint = _fingerprint(store, ledger)
        built = zones.read_json(store, "marts/FINGERPRINT")
        if built and built.get("fingerprint") == fingerprint:
            summary.noop = not new and not pending
            log.info("nothing new since the last published marts")
        else:
            t0 = time.perf_counter()
            from transforms.resolution.resolve import input_columns

            tables, superseded = processing.load_staged(store, ledger, feedset,
                                                        columns=input_columns())
            for drop_id in superseded:
                ledger.record(drop_id, "superseded", "every row replaced by a later drop", run_id)
            summary.stage("load staged", t0)

            t0 = time.perf_counter()
            summary.resolution_stats = processing.resolve_lake(store, tables, run_id)[0].stats
            del tables  # publishing reads the lake: the frames would only take memory
            summary.stage("resolve", t0)

            t0 = time.perf_counter()
            summary.marts = processing.publish_marts(store, ledger, feedset,
                                                     settings.mart_retention)
            for e in ledger.entries():
                if e.state == "staged" and e.drop_id not in superseded:
                    ledger.record(e.drop_id, "published", f"in marts {summary.marts['all']}",
                                  run_id)
            store.put("marts/FINGERPRINT", json.dumps(
                {"fingerprint": _fingerprint(store, ledger), "run_id": run_id}).encode())
            summary.fill_from_marts(store)
            summary.stage("publish", t0)

        text = summary.markdown()
        store.put(f"{zones.REPORTS}/runs/{run_id}.md", text.encode())
        store.put(f"{zones.REPORTS}/runs/LATEST.md", text.encode())
        create_markdown_artifact(markdown=text, key="pipeline-run-summary",
                                 description=f"fusionlake run {run_id}")
    return summary
