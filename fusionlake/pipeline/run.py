"""The order of the stages: :func:`run` is the whole pipeline once over a lake's new drops.

    land -> validate+stage (per drop, concurrently) -> data docs
         -> (only when the drops or decisions changed) resolve -> publish -> run summary

Each stage is a function of this package, tested without Prefect. *How* a stage is executed is
the :class:`Executor`'s business: this one calls the steps in this process (drops in a pool of
threads, or of processes when they are big); flows/pipeline.py supplies one that makes every
call a Prefect task with retries. The benchmark (bench/bench_pipeline.py) supplies one that
measures each stage. So the flow, the benchmark and the tests run the same stages in the same
order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor as PoolExecutor
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from fusionlake.lake import layout, zones
from fusionlake.lake.faults import kill_point
from fusionlake.lake.feeds import FeedSet, load_feeds
from fusionlake.lake.lease import acquire
from fusionlake.lake.ledger import LIVE, DropState, Ledger
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import ObjectInfo, ObjectStore, open_store
from fusionlake.pipeline import publish, resolve, stage
from fusionlake.pipeline.land import discover, land
from fusionlake.pipeline.progress import stage_progress
from fusionlake.pipeline.summary import RunSummary


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class Executor:
    """Runs the stages' calls: in this process, drops in a pool of threads or processes.

    ``each`` runs one call per item concurrently and hands back each item's result or the
    exception it raised (one drop's failure never stops the others); ``once`` runs one call and
    lets its exception through. Calls made inside :meth:`workers` run in that pool.
    """

    def __init__(self) -> None:
        self._pool: PoolExecutor | None = None
        self.log: logging.Logger | logging.LoggerAdapter = logging.getLogger("fusionlake")

    @contextlib.contextmanager
    def workers(self, processes: int) -> Iterator[None]:
        """A pool for per-drop work: ``processes`` worker processes, or threads when 0."""
        pool = (ProcessPoolExecutor(processes, mp_context=get_context("spawn"),
                                    initializer=stage.exit_with_parent)
                if processes else ThreadPoolExecutor())
        self._pool = pool
        try:
            with pool:
                yield
        finally:
            self._pool = None

    def each(self, name: str, fn: Callable, calls: list[dict]) -> Iterator[Any]:
        """``fn(**kwargs)`` for each of ``calls``; yields results or exceptions, in order."""
        pool = self._pool or ThreadPoolExecutor()
        futures = [pool.submit(fn, **kwargs) for kwargs in calls]
        for fut in futures:
            try:
                yield fut.result()
            except Exception as exc:
                yield exc
        if pool is not self._pool:
            pool.shutdown()

    def once(self, name: str, fn: Callable, **kwargs) -> Any:
        """``fn(**kwargs)``, in the worker pool when one is open."""
        if self._pool is not None:
            return self._pool.submit(fn, **kwargs).result()
        return fn(**kwargs)

    @contextlib.contextmanager
    def stage(self, name: str, summary: RunSummary) -> Iterator[None]:
        """Around each stage: its seconds go into the run summary."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            summary.stage(name, t0)

    def report(self, markdown: str, run_id: str) -> None:
        """Hand the run summary to whoever runs the pipeline (the lake has it already)."""


@dataclass
class Run:
    """One run's context, handed from stage to stage."""

    settings: Settings
    store: ObjectStore
    ledger: Ledger
    feedset: FeedSet
    run_id: str
    summary: RunSummary
    executor: Executor


def run(settings: Settings, run_id: str | None = None, lease_wait: float = 0.0,
        executor: Executor | None = None) -> RunSummary:
    """The whole pipeline once over all new drops of ``settings.lake``; the run's summary."""
    run_id = run_id or new_run_id()
    store = open_store(settings.lake)
    summary = RunSummary(run_id=run_id, lake=store.uri)
    with acquire(store, run_id, seconds=settings.lease_seconds, wait=lease_wait):
        feedset = load_feeds(settings.feeds_path)
        summary.problems += [f"feed definition error: {err}" for err in feedset.errors]
        r = Run(settings, store, Ledger(store), feedset, run_id, summary,
                executor or Executor())
        new = land_new(r)
        pending = validate_and_stage(r)
        if inputs_changed(r):
            with resolve.staged_scans(store, r.ledger, feedset) as (scans, superseded):
                resolve_entities(r, scans, superseded)
                publish_marts(r, scans, superseded)
        else:
            summary.noop = not new and not pending
            r.executor.log.info("nothing new since the last published marts")
        leave_summary(r)
    return summary


def land_deliveries(settings: Settings, run_id: str | None = None,
                    executor: Executor | None = None) -> RunSummary:
    """Only the land stage (``fusionlake land``). Landing needs no lease: each drop is claimed
    by a conditional write in the ledger."""
    run_id = run_id or new_run_id()
    store = open_store(settings.lake)
    summary = RunSummary(run_id=run_id, lake=store.uri)
    r = Run(settings, store, Ledger(store), FeedSet(), run_id, summary, executor or Executor())
    land_new(r)
    return summary


# -- the stages ------------------------------------------------------------------------------


def land_one(lake: str, info: ObjectInfo, run_id: str):
    """Land one delivery (a worker's call: plain arguments)."""
    store = open_store(lake)
    return land(store, Ledger(store), info, run_id)


def land_new(r: Run) -> list[ObjectInfo]:
    """Copy every new delivery to raw/ and record it; a delivery that fails is left unmarked in
    the ledger, so the next run tries it again."""
    with r.executor.stage("land", r.summary):
        new = discover(r.store, r.ledger)
        calls = [{"lake": r.settings.lake, "info": i, "run_id": r.run_id} for i in new]
        with stage_progress("land", len(new), r.executor.log) as advance:
            for info, out in zip(new, r.executor.each("land", land_one, calls), strict=True):
                if isinstance(out, Exception):
                    r.summary.problems.append(f"could not land {info.key}: {out}")
                    advance(f"{info.key}: failed")
                else:
                    r.summary.landed.append(out)
                    advance(f"{info.key}: {out.status}")
    kill_point("after-land")
    return new


def validate_and_stage(r: Run) -> list:
    """Read, validate and stage every pending drop, the largest first; then the Data Docs.

    Drops go to worker processes when they are big (stage.drop_workers), else to threads; the
    workers end with the stage, so resolution starts with their memory given back.
    """
    s = r.settings
    pending = stage.largest_first(stage.pending_drops(r.ledger, r.feedset))
    workers = stage.drop_workers(pending, s.drop_workers, s.drop_process_min_bytes)
    with r.executor.workers(workers):
        with r.executor.stage("validate+stage", r.summary):
            learnt = []  # transliterations the drops made, for the lake's cache
            calls = [{"lake": s.lake, "feeds_path": s.feeds_path, "entry": e,
                      "run_id": r.run_id} for e in pending]
            with stage_progress("validate+stage", len(pending), r.executor.log) as advance:
                results = r.executor.each("validate+stage", stage.stage_drop, calls)
                for entry, out in zip(pending, results, strict=True):
                    name = f"{entry.agency}/{entry.feed}/{entry.file_name}"
                    if isinstance(out, Exception):
                        r.summary.problems.append(
                            f"drop {entry.drop_id} ({name}) failed and will be retried next "
                            f"run: {out}")
                        advance(f"{name}: failed")
                        continue
                    learnt.append(out.transliterations)
                    out.transliterations = None
                    r.summary.drops.append(out)
                    advance(f"{name}: {out.state}")
            if pending:
                stage.save_translit_cache(r.store, learnt)
        kill_point("after-stage")
        if pending:  # by a drop worker when there are some: GX is loaded there already
            with r.executor.stage("data docs", r.summary):
                r.summary.data_docs = r.executor.once("data docs", stage.data_docs_of,
                                                      lake=s.lake)
    return pending


def fingerprint(store: ObjectStore, ledger: Ledger) -> str:
    """What the marts are built from: the live drops and the steward decisions."""
    live = sorted(e.drop_id for e in ledger.entries() if e.state in LIVE)
    decisions = store.list(layout.DECISIONS)
    return hashlib.sha256(json.dumps([live, decisions]).encode()).hexdigest()[:16]


def inputs_changed(r: Run) -> bool:
    built = zones.read_json(r.store, layout.MARTS_FINGERPRINT)
    return not built or built.get("fingerprint") != fingerprint(r.store, r.ledger)


def resolve_once(lake: str, scans: dict, run_id: str, retention: int) -> dict:
    """Resolve the staged records that count now, once per visibility group; the statistics
    of the all-agencies resolution."""
    store = open_store(lake)
    return resolve.resolve_audiences(store, scans, run_id, retention)


def resolve_entities(r: Run, scans: dict, superseded: set[str]) -> None:
    for drop_id in superseded:
        r.ledger.record(drop_id, DropState.SUPERSEDED, "every row replaced by a later drop",
                        r.run_id)
    with r.executor.stage("resolve", r.summary):
        r.summary.resolution_stats = r.executor.once(
            "resolve", resolve_once, lake=r.settings.lake, scans=scans, run_id=r.run_id,
            retention=r.settings.resolution_retention)


def publish_once(lake: str, feeds_path: list[str], scans: dict, superseded: set[str],
                 retention: int, run_id: str) -> dict[str, str]:
    """Publish every audience's mart, then mark the drops in them published."""
    store = open_store(lake)
    ledger = Ledger(store)
    marts = publish.publish_marts(store, ledger, load_feeds(feeds_path), retention, scans)
    for e in ledger.entries():
        if e.state == DropState.STAGED and e.drop_id not in superseded:
            ledger.record(e.drop_id, DropState.PUBLISHED, f"in marts {marts['all']}", run_id)
    store.put(layout.MARTS_FINGERPRINT, json.dumps(
        {"fingerprint": fingerprint(store, ledger), "run_id": run_id}).encode())
    return marts


def publish_marts(r: Run, scans: dict, superseded: set[str]) -> None:
    with r.executor.stage("publish", r.summary):
        r.summary.marts = r.executor.once(
            "publish", publish_once, lake=r.settings.lake, feeds_path=r.settings.feeds_path,
            scans=scans, superseded=superseded, retention=r.settings.mart_retention,
            run_id=r.run_id)
        r.summary.fill_from_marts(r.store)


def leave_summary(r: Run) -> None:
    """The run summary, for the person reading it the next morning (reports/runs/)."""
    text = r.summary.markdown()
    r.store.put(layout.run_report_key(r.run_id), text.encode())
    r.store.put(layout.LATEST_RUN_REPORT, text.encode())
    r.executor.report(text, r.run_id)
