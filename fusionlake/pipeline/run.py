"""The order of the stages: :func:`run` is the whole pipeline once over a lake's new drops.

    clean start -> land -> validate+stage (per drop, concurrently) -> data docs
         -> (only when the drops or decisions changed) load staged -> resolve -> publish
         -> run summary

(A run of small drops, staged by threads, renders the Data Docs in a thread beside load staged,
resolve and publish, and waits for them before its summary.)

Each stage is a function of this package, tested without Prefect. *How* a stage is executed is
the :class:`Executor`'s business: this one calls the steps in this process (drops in a pool of
threads, or of processes when they are big); flows/pipeline.py supplies one that makes every
call a Prefect task with retries. The benchmark (bench/bench_pipeline.py) supplies one that
measures each stage. So the flow, the benchmark and the tests run the same stages in the same
order.

What a run promises whatever goes wrong:

* **One drop's failure stops no other.** A drop that fails reading, validation or staging is
  recorded in the ledger with its reason (rejected) and the run goes on; a drop that failed for
  a storage error stays pending for the next run. Data Docs are built page by page and their
  errors never fail a run. A run publishes only marts that hold every drop it staged.
* **It holds the lake.** The lease is renewed by a heartbeat while the run works, and checked
  before every stage, ledger transition and pointer move (fusionlake.lake.lease, "Fencing"):
  a run that lost it raises LeaseLost and writes nothing more.
* **It starts clean.** Before landing it sweeps what crashed runs left (:func:`clean_start`):
  temporary folders of dead processes (every run works in its own,
  ``fusionlake-run-<run_id>-<pid>``), writes that never finished, unfinished versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import Executor as PoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import polars as pl

from expectations.suites import suite_fingerprint
from fusionlake.lake import layout, schema, versions, zones
from fusionlake.lake.faults import hang_point, kill_point, pause_point
from fusionlake.lake.feeds import FeedSet, load_feeds
from fusionlake.lake.lease import (
    Fence,
    Lease,
    LeaseLost,
    acquire,
    current_fence,
    install,
    pid_alive,
    uninstall,
)
from fusionlake.lake.ledger import LIVE, STOPPED, DropEntry, DropState, Ledger
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import (
    LakeError,
    LocalStore,
    ObjectInfo,
    ObjectStore,
    OutOfSpace,
    TransientLakeError,
    causes,
    first_line,
    host_tag,
    is_transient,
    no_space,
    open_store,
    out_of_space,
    redact,
    retrying,
    temp_owner,
)
from fusionlake.pipeline import marts, publish, resolve, stage
from fusionlake.pipeline.land import discover, land
from fusionlake.pipeline.progress import stage_progress
from fusionlake.pipeline.summary import RunSummary, read_before

#: One line per finished stage, with its counts and seconds, for whoever watches a run.
progress = logging.getLogger("fusionlake.progress")


def _stage_counts(name: str, summary: RunSummary) -> str:
    if name == "land":
        return f"{len(summary.landed)} deliveries"
    if name == "validate+stage":
        drops = summary.drops
        return (f"{len(drops)} drops, {sum(d.rows for d in drops):,} rows, "
                f"{sum(d.quarantined for d in drops):,} quarantined, "
                f"{sum(d.flagged for d in drops):,} flagged")
    if name == "publish":
        return f"{len(summary.marts)} marts"
    return ""


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

    def start(self, name: str, fn: Callable, **kwargs) -> Any:
        """``fn(**kwargs)`` in a thread of this process, while the stages after it run; what
        it returns (or raises) comes from ``.result()`` of the future handed back."""
        pool = ThreadPoolExecutor(1, thread_name_prefix=f"fusionlake-{name.replace(' ', '-')}")
        try:
            return pool.submit(fn, **kwargs)
        finally:
            pool.shutdown(wait=False)  # the thread ends with the call

    @contextlib.contextmanager
    def stage(self, name: str, summary: RunSummary) -> Iterator[None]:
        """Around each stage: its seconds go into the run summary, and a progress line with
        its counts to the ``fusionlake.progress`` logger (the command line prints it)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            summary.stage(name, t0)
            counts = _stage_counts(name, summary)
            progress.info("%s: done in %.1f s%s", name, time.perf_counter() - t0,
                          f" ({counts})" if counts else "")

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
    lease: Lease | None = None
    staged: set[str] = field(default_factory=set)  # drops this run staged
    # what the marts are built from (:func:`fingerprint`), taken before resolving reads it
    inputs: str | None = None
    data_docs: Any = None  # the Data Docs being rendered beside resolve and publish (a future)

    @property
    def fence(self) -> Fence | None:
        return self.lease.fence if self.lease is not None else None

    def check_lease(self) -> None:
        """Before each stage: stop (LeaseLost) if another run has the lake now."""
        if self.lease is not None:
            self.lease.check()


def run(settings: Settings, run_id: str | None = None, lease_wait: float = 0.0,
        executor: Executor | None = None) -> RunSummary:
    """The whole pipeline once over all new drops of ``settings.lake``; the run's summary."""
    run_id = run_id or new_run_id()
    store = open_store(settings.lake)
    summary = RunSummary(run_id=run_id, lake=store.uri)
    try:
        pause_point("before-lease")  # concurrency test: two runs let go at the same moment
        lease = acquire(store, run_id, seconds=settings.lease_seconds, wait=lease_wait)
        with lease, run_folder(run_id), fenced(lease):
            lease.start_heartbeat()
            feedset = load_feeds(settings.feeds_path)
            summary.problems += [f"feed definition error: {err}" for err in feedset.errors]
            r = Run(settings, store, Ledger(store), feedset, run_id, summary,
                    executor or Executor(), lease)
            clean_start(r)
            new = land_new(r)
            pause_point("before-stage")  # lease tests: a run frozen past its lease
            r.check_lease()
            pending = validate_and_stage(r)
            try:
                r.check_lease()
                if inputs_changed(r) or settings.full:
                    with _unreadable_staged_held(r), \
                            load_staged(r) as (scans, superseded, release):
                        resolve_entities(r, scans, superseded, release)
                        r.check_lease()
                        publish_marts(r, scans, superseded, release)
                else:
                    summary.noop = not new and not pending
                    r.executor.log.info("nothing new since the last published marts")
            finally:  # never left rendering after the run (and its lease) ended
                data_docs_rendered(r)
            data_docs_restated(r)
            r.check_lease()
            leave_summary(r)
    except Exception as exc:
        if out_of_space(exc) and not isinstance(exc, OutOfSpace):
            raise OutOfSpace(_out_of_space(exc, store)) from exc
        raise
    return summary


def _out_of_space(exc: BaseException, store: ObjectStore) -> str:
    """What a run that filled a disk says: the error, the free space where the run writes (the
    lake's folder, and the temp folder its work goes to), and that nothing was lost."""
    detail = first_line(exc)
    places = [("the lake", store.root)] if isinstance(store, LocalStore) else []
    places.append(("the run's temp folder", Path(tempfile.gettempdir())))
    free = []
    for what, path in places:
        with contextlib.suppress(OSError):
            free.append(f"{path} ({what}) has {shutil.disk_usage(path).free / 2**20:,.1f} MiB free")
    return redact(
        f"out of disk space ({no_space(exc)}): {detail[:500]}. {'; '.join(free)}. Free some space "
        "and run again: the drops not yet staged stay pending (none is rejected for this), "
        "and each mart is its previous version or its new one, whole")


# -- a run's own folder, its lease in every process, and the clean start -----------------------

#: Every run works in ``<tmp>/fusionlake-run-<run_id>-<pid>``: Splink's spill files, the kept
#: match frames downloaded from S3 (for DuckDB), marts being built. A crash leaves the folder;
#: the next run on this machine removes it when the pid is gone.
_RUN_FOLDER = re.compile(r"^fusionlake-run-[0-9A-Za-z_.-]+-(\d+)$")
#: ``fusionlake docs --serve``'s copy of an S3 lake's site: ``fusionlake-docs-<pid>-<random>``
_DOCS_COPY = re.compile(r"^fusionlake-docs-(\d+)-[0-9a-z_]+$")


@contextlib.contextmanager
def run_folder(run_id: str) -> Iterator[Path]:
    """This run's temporary folder, made the process's (and its workers') temp folder, and
    removed at the end."""
    base = Path(tempfile.gettempdir())
    folder = base / f"fusionlake-run-{re.sub(r'[^0-9A-Za-z_.-]', '_', run_id)}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    saved_dir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(folder)
    os.environ["TMPDIR"] = str(folder)  # worker processes start with it
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def fenced(lease: Lease) -> Iterator[None]:
    """Ledger transitions and pointer moves of this process check the run's lease."""
    install(lease.fence, lease.store.uri)
    try:
        yield
    finally:
        uninstall(lease.fence, lease.store.uri)


def stale_run_folders(base: Path | None = None) -> list[Path]:
    """Temporary folders of processes of this machine that no longer exist: run folders
    (``fusionlake-run-<run_id>-<pid>``) and the copies served by ``fusionlake docs --serve``
    (``fusionlake-docs-<pid>-<random>``), which a SIGKILL leaves behind."""
    base = Path(base or tempfile.gettempdir())
    out = []
    with contextlib.suppress(OSError):
        for path in base.iterdir():
            m = _RUN_FOLDER.match(path.name) or _DOCS_COPY.match(path.name)
            if m and path.is_dir() and not pid_alive(int(m.group(1))):
                out.append(path)
    return sorted(out)


def clean_start(r: Run) -> None:
    """Sweep what crashed runs left, before this run writes anything.

    * run folders, and copies served by ``docs --serve``, of dead processes on this machine;
    * writes that never finished (temp files on disk, incomplete multipart uploads on S3):
      those of dead processes of this machine at once, the others once older than the lease
      by the store's clock (``fusionlake drop`` and ``land`` write without the lease and may be
      at work now, on a host whose clock is not this one's);
    * unfinished versions of the resolution and of every mart: only the lease holder writes
      them, and this run holds the lease, so whoever started them is gone.
    """
    with r.executor.stage("clean start", r.summary):
        swept = {"temporary folders": 0, "unfinished writes": 0, "unfinished versions": 0}
        for folder in stale_run_folders(Path(tempfile.tempdir).parent
                                        if tempfile.tempdir else None):
            shutil.rmtree(folder, ignore_errors=True)
            swept["temporary folders"] += 1
        host = host_tag()
        for partial in r.store.partial_writes(""):
            owner = temp_owner(partial.key)
            dead = owner is not None and owner[0] == host and not pid_alive(owner[1])
            # its age by the store's clock: a host whose clock runs ahead must not take an
            # upload in progress elsewhere for an abandoned one
            if dead or partial.age > r.settings.lease_seconds:
                r.store.discard_partial(partial)
                swept["unfinished writes"] += 1
        repaired = []
        for prefix in versioned_prefixes(r.store):
            for version in versions.unfinished_versions(r.store, prefix):
                versions.remove_version(r.store, prefix, version)
                swept["unfinished versions"] += 1
            # a pointer overwritten or naming a version gone (by hand, a restore, a bad copy)
            # left readers failing and every run saying "nothing new"
            if (done := versions.repair_pointer(r.store, prefix)) is not None:
                repaired.append(done)
        if any(swept.values()):
            r.summary.notes.append("clean start removed what crashed runs left: " + ", ".join(
                f"{n} {what}" for what, n in swept.items() if n))
        r.summary.notes += [f"clean start: {done}" for done in repaired]
        if repaired:  # an older version may be current again (a mart from before an agreement
            # narrowed): the marts are made again from what counts now, whatever changed
            r.store.delete(layout.MARTS_FINGERPRINT)


def versioned_prefixes(store: ObjectStore) -> list[str]:
    """The resolutions' prefixes (the task force's, each agency's) and each audience's mart
    prefix."""
    audiences = {k.split("/")[1] for k in store.list(layout.MARTS) if k.count("/") >= 2}
    return [layout.RESOLUTION, *(layout.resolution_prefix(a)
                                 for a in zones.resolved_audiences(store)),
            *(layout.mart_prefix(a) for a in sorted(audiences))]





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


@contextlib.contextmanager
def _fence_in_worker(fence: Fence | None, lake: str) -> Iterator[ObjectStore]:
    """In a worker (thread or process): the lake's store, with the run's fence installed when
    this process does not have it yet (a worker process)."""
    store = open_store(lake)
    mine = fence is not None and current_fence(store) != fence
    if mine:
        install(fence, store.uri)
    try:
        yield store
    finally:
        if mine:
            uninstall(fence, store.uri)


def land_one(lake: str, info: ObjectInfo, run_id: str, fence: Fence | None = None):
    """Land one delivery (a worker's call: plain arguments)."""
    with _fence_in_worker(fence, lake) as store:
        return land(store, Ledger(store), info, run_id)


def _stop_if_lost(out: Any) -> None:
    """A worker that found the lease lost: the whole run stops, not only that drop."""
    if isinstance(out, LeaseLost):
        raise out


def land_new(r: Run) -> list[ObjectInfo]:
    """Copy every new delivery to raw/ and record it; a delivery that fails is left unmarked in
    the ledger, so the next run tries it again."""
    with r.executor.stage("land", r.summary):
        new = discover(r.store, r.ledger)
        calls = [{"lake": r.settings.lake, "info": i, "run_id": r.run_id, "fence": r.fence}
                 for i in new]
        with stage_progress("land", len(new), r.executor.log) as advance:
            for info, out in zip(new, r.executor.each("land", land_one, calls), strict=True):
                _stop_if_lost(out)
                if isinstance(out, Exception):
                    r.summary.problems.append(f"could not land {info.key}: {redact(out)}")
                    advance(f"{info.key}: failed")
                else:
                    r.summary.landed.append(out)
                    advance(f"{info.key}: {out.status}")
                    if out.status == "misplaced":  # the agency's file waits for a person
                        r.summary.problems.append(f"{info.key}: {out.message}")
                    elif out.status == "skipped":
                        r.summary.notes.append(f"{info.key} is not a delivery: {out.message}")
                    elif out.status == "waiting":
                        r.summary.notes.append(f"{info.key} is left for a later run: "
                                               f"{out.message}")
    kill_point("after-land")
    return new


def stage_one(lake: str, feeds_path: list[str], entry: DropEntry, run_id: str,
              fence: Fence | None = None, limit: float = 0):
    """Validate and stage one drop (a worker's call: plain arguments), under the run's fence.
    The drop is marked as being staged by this run first (:func:`_staged_apart`), and its
    process ends if it takes longer than ``limit`` seconds (:func:`staging_deadline`)."""
    import expectations  # noqa: F401  GX loads in seconds, under load more: not the drop's time

    with _fence_in_worker(fence, lake) as store:
        Ledger(store).begin_staging([entry.drop_id], run_id)
        with staging_deadline(store, entry, run_id, limit):
            hang_point("staging", entry.file_name)  # tests: a reader stuck on the file
            return stage.stage_drop(lake, feeds_path, entry, run_id)


#: Exit status of a process that ended because a drop it staged overran its time.
OVERRAN_EXIT = 3


@contextlib.contextmanager
def staging_deadline(store: ObjectStore, entry: DropEntry, run_id: str,
                     seconds: float) -> Iterator[None]:
    """End this process if the block takes longer than ``seconds`` (0: no limit).

    A reader stuck on a file, in native code, cannot be interrupted from Python, and a run
    waiting for it would keep the lake's lease, renewed by its heartbeat, for good: every later
    run would find the lake taken. So the process staging the drop ends, after writing the
    overrun in the drop's staging mark. A worker process: its pool's drops are staged again,
    one at a time, and this one, stuck again alone, is held with the reason. The run's own
    process, when the drop was staged in one of its threads (small drops): the run ends
    (exit status :data:`OVERRAN_EXIT`), and the next run stages the drop apart in a worker
    process (:func:`_staged_apart`), where it is held if it overruns again.
    """
    if not seconds:
        yield
        return

    def overran() -> None:
        name = entry.label
        with contextlib.suppress(Exception):
            Ledger(store).overran_staging(entry.drop_id, run_id, seconds)
        print(f"fusionlake: drop {entry.drop_id} ({name}) is still being validated and staged "
              f"after {seconds:g} s (FUSIONLAKE_DROP_SECONDS): process {os.getpid()} ends so "
              "that the lake does not wait for it; the drop is staged again alone, and held "
              "if it takes as long again", file=sys.stderr, flush=True)
        os._exit(OVERRAN_EXIT)

    timer = threading.Timer(seconds, overran)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _failed_drop(r: Run, entry: DropEntry, exc: Exception) -> stage.DropResult | None:
    """What a drop whose processing raised becomes.

    A storage error or a full disk leaves it pending (the next run tries again). Anything
    else is about this drop (a file no reader or normaliser copes with): it is rejected with
    the error as its reason, so that it never blocks a later run, and the run goes on.
    """
    name = entry.label
    if out_of_space(exc):  # the machine's fault, not the drop's
        r.summary.problems.append(f"drop {entry.drop_id} ({name}) stays pending: out of disk "
                                  f"space ({redact(exc).splitlines()[0][:300]})")
        return None
    if isinstance(exc, LakeError) or is_transient(exc):
        r.summary.problems.append(f"drop {entry.drop_id} ({name}) failed and will be retried "
                                  f"next run: {redact(exc)}")
        return None
    # one line: a library's message over several (pydantic's) broke the ledger's tables
    reason = " ".join(redact(f"could not be processed: {type(exc).__name__}: {exc}").split())
    reason = reason[:2000]
    # with its feed's fingerprint, as every other rejection: a feed the drop broke on (a column
    # GX cannot check, say) validates it again once fixed, without a `fusionlake retry`
    fingerprint = suite_fingerprint(r.feedset.feeds.get(f"{entry.agency}/{entry.feed}"))
    r.ledger.record(entry.drop_id, DropState.REJECTED, reason, r.run_id, fingerprint=fingerprint)
    r.summary.problems.append(f"drop {entry.drop_id} ({name}) {reason}")
    return stage.DropResult(entry.drop_id, name, DropState.REJECTED, reason)


class WorkerDied(Exception):
    """A drop's worker died while staging it and nowhere else (Dask's KilledWorker: on every
    worker that took it): it is held for a person (:func:`_held_for_a_killed_worker`)."""


def _worker_killed(out: Any) -> bool:
    """Whether a drop's call failed because a worker process of the pool died (the kernel's
    OOM killer, a kill): the pool then fails every call it still holds, whoever's the worker
    was, so the failure says nothing about this drop."""
    return isinstance(out, BaseException) and any(isinstance(e, BrokenExecutor)
                                                  for e in causes(out))


def _one_at_a_time(r: Run, killed: list[tuple[DropEntry, dict]],
                   why: str = "a worker process died; the %d drop(s) of its pool are staged "
                              "again, one at a time",
                   how: str = "twice, the second time alone") -> Iterator[tuple]:
    """The drops of a pool whose worker died, staged again in a new pool of one process, in
    turn; yields (entry, result or exception) for each.

    In that pool a worker that dies fails the drop it was staging and every drop after it: the
    first is the one that kills its worker (twice now, the second time alone), and it comes
    back as :class:`WorkerDied` (held for a person); the drops after it go round again. So a
    drop too big for the machine stops itself, never the others, and never a later run.
    ``why`` (the log line) and ``how`` (in the held drop's reason) say how the drops got here.
    """
    say = why
    while killed:
        r.executor.log.warning(f"validate+stage: {say}, in a new worker", len(killed))
        say = "the %d drop(s) after the one held are staged again, one at a time"
        with r.executor.workers(1):
            outs = list(r.executor.each("validate+stage", stage_one, [c for _, c in killed]))
        first = next((i for i, out in enumerate(outs) if _worker_killed(out)), len(outs))
        yield from ((entry, out) for (entry, _), out in zip(killed[:first], outs[:first],
                                                          strict=True))
        if first < len(killed):
            yield killed[first][0], WorkerDied(f"{how} ({type(outs[first]).__name__})")
        killed = killed[first + 1:]


def _staged_apart(r: Run, pending: list[DropEntry]) -> tuple[set[str], dict[str, list[str]]]:
    """The pending drops to stage apart, each alone in a worker process, because an earlier
    run's process ended while staging them; and, for every drop, the runs whose marks to clear.

    A drop that kills the process staging it (a reader's crash, the OOM killer) would otherwise
    kill every later run that stages it in threads beside the others, for good. Now it costs
    one run: the next stages it alone, and holds it if its worker dies too. Marks of drops no
    longer pending (rejected or accepted by a steward meanwhile) are cleared here.
    """
    left = r.ledger.interrupted_staging(r.run_id)
    pending_ids = {e.drop_id for e in pending}
    for drop_id in sorted(set(left) - pending_ids):
        r.ledger.end_staging(drop_id, left.pop(drop_id))
    if r.settings.task_runner == "dask":  # the workers are other processes already
        return set(), left
    apart = [e for e in pending if e.drop_id in left]
    if apart:
        runs = sorted({run for e in apart for run in left[e.drop_id]})
        r.summary.notes.append(
            f"{len(apart)} drop(s) were being staged when run(s) {', '.join(runs)} ended "
            "without finishing: staged apart this time, each alone in a worker process, so that "
            "one that ends its process stops only itself: "
            + ", ".join(e.label for e in apart))
    return {e.drop_id for e in apart}, left


def _held_for_a_killed_worker(r: Run, entry: DropEntry, how: str,
                              overran: float | None = None) -> stage.DropResult:
    """A drop whose worker died while staging it, ``how`` (twice, the second time alone; on
    every Dask worker that took it): held, not rejected (it may well be sound, and the machine
    short of memory or time), until a steward sends it to be validated again (``fusionlake
    retry``) or rejects it. ``overran``: the worker was ended because staging the drop took
    longer than that many seconds (:func:`staging_deadline`)."""
    name = entry.label
    if overran is not None:
        cause, need = (f"staging it took longer than {overran:g} s (FUSIONLAKE_DROP_SECONDS) "
                       f"and its worker process was ended, {how}; a reader stuck on the file",
                       "time")
    else:
        cause, need = (f"its worker process died while staging it, {how}; the kernel's OOM "
                       "killer", "memory")
    reason = (f"{cause}, most likely: held so that it does not stop the other drops at every "
              f"run. `fusionlake retry {entry.drop_id}` sends it to the next run again (give "
              f"that run more {need}), `fusionlake reject` gives it up")
    r.ledger.record(entry.drop_id, DropState.HELD, reason, r.run_id)
    r.summary.problems.append(f"drop {entry.drop_id} ({name}) held: {reason}")
    return stage.DropResult(entry.drop_id, name, DropState.HELD, reason)


def validate_and_stage(r: Run) -> list:
    """Read, validate and stage every pending drop, the most work first; then the Data Docs.

    Drops go to worker processes when they are big (stage.drop_workers), else to threads; the
    workers end with the stage, so resolution starts with their memory given back.
    """
    s = r.settings
    pending = stage.most_work_first(stage.pending_drops(r.ledger, r.feedset))
    r.summary.read_before = read_before(r.store, pending)  # rows counted by an earlier run
    apart, left = _staged_apart(r, pending) if pending else (set(), {})
    together = [e for e in pending if e.drop_id not in apart]
    workers = stage.drop_workers(together, s.drop_workers, s.drop_process_min_bytes)
    unfinished = {e.drop_id for e in pending}  # marked as each starts (stage_one)
    try:
        _stage_pending(r, pending, together, left, workers, unfinished)
    except BaseException:  # this process lives on: none of its drops ended it (a mark never
        # written is deleted all the same: a no-op)
        with contextlib.suppress(Exception):
            for drop_id in unfinished:
                r.ledger.end_staging(drop_id, [r.run_id])
        raise
    if pending and not workers:
        # Small drops (a scheduled run's): rendered in a thread while the run resolves and
        # publishes, not before; loading GX costs seconds, as much as the rest of such a run.
        # What GX and the resolver both import is imported first, here: imported by the two
        # threads at once, scipy's linear algebra deadlocked the import system once
        # (_DeadlockError on scipy.linalg.cython_lapack), and the run failed.
        import pandas  # noqa: F401
        import scipy.linalg  # noqa: F401
        r.data_docs = r.executor.start("data docs", stage.data_docs_of, lake=s.lake)
    return pending


def _stage_pending(r: Run, pending: list[DropEntry], together: list[DropEntry],
                   left: dict[str, list[str]], workers: int, unfinished: set[str]) -> None:
    """The body of :func:`validate_and_stage`: the drops staged ``together``, then those whose
    worker died and the rest of ``pending`` (staged apart), one at a time; each drop's staging
    mark and the ``left`` marks of earlier runs are cleared as its outcome is recorded."""
    s = r.settings
    with r.executor.workers(workers):
        with r.executor.stage("validate+stage", r.summary):
            learnt = []  # transliterations the drops made, for the lake's cache
            calls = {e.drop_id: {"lake": s.lake, "feeds_path": s.feeds_path, "entry": e,
                                 "run_id": r.run_id, "fence": r.fence,
                                 "limit": s.drop_seconds} for e in pending}
            with stage_progress("validate+stage", len(pending), r.executor.log) as advance:

                def record(entry: DropEntry, out: Any) -> None:
                    name = entry.label
                    runs = [r.run_id, *left.get(entry.drop_id, [])]
                    overran = (r.ledger.staging_overran(entry.drop_id, runs)
                               if isinstance(out, WorkerDied) else None)
                    r.ledger.end_staging(entry.drop_id, runs)
                    unfinished.discard(entry.drop_id)
                    _stop_if_lost(out)
                    if isinstance(out, WorkerDied):
                        out = _held_for_a_killed_worker(r, entry, str(out), overran)
                    if isinstance(out, Exception):
                        out = _failed_drop(r, entry, out)
                        if out is None:
                            advance(f"{name}: failed")
                            return
                    if out.transliterations is not None:
                        learnt.append(out.transliterations)
                    out.transliterations = None
                    r.summary.drops.append(out)
                    if out.state == DropState.STAGED and out.rows_staged:
                        # a drop whose every row was quarantined stages no row: there is
                        # nothing of it to read back (load_staged), and the run goes on
                        r.staged.add(out.drop_id)
                    advance(f"{name}: {out.state}")

                results = r.executor.each("validate+stage", stage_one,
                                          [calls[e.drop_id] for e in together])
                killed = []  # (entry, call) whose worker process died under them
                for entry, out in zip(together, results, strict=True):
                    if _worker_killed(out):
                        killed.append((entry, calls[entry.drop_id]))
                    else:
                        record(entry, out)
                for entry, out in _one_at_a_time(r, killed):
                    record(entry, out)
                apart = set(calls) - {e.drop_id for e in together}
                alone = [(e, calls[e.drop_id]) for e in pending if e.drop_id in apart]
                for entry, out in _one_at_a_time(
                        r, alone, why="%d drop(s) an earlier run stopped while staging are "
                                      "staged apart, one at a time",
                        how="alone, after an earlier run ended while staging it"):
                    record(entry, out)
            if pending:
                stage.save_translit_cache(r.store, learnt)
        kill_point("after-stage")
        if pending and workers:  # by a drop worker: GX is loaded there already, and its
            with r.executor.stage("data docs", r.summary):  # memory goes with the worker
                try:
                    r.summary.data_docs = r.executor.once("data docs", stage.data_docs_of,
                                                          lake=s.lake)
                except Exception as exc:
                    _no_data_docs(r, exc)


def data_docs_rendered(r: Run) -> None:
    """Wait for Data Docs rendered beside the later stages (:func:`validate_and_stage`); the
    "data docs" stage's seconds are those the run waited for them at its end."""
    if r.data_docs is None:
        return
    with r.executor.stage("data docs", r.summary):
        try:
            r.summary.data_docs = r.data_docs.result()
        except Exception as exc:
            _no_data_docs(r, exc)
        finally:
            r.data_docs = None


def data_docs_restated(r: Run) -> None:
    """The Data Docs index shows the drops this run published as published: it was built
    while they were still staged (:func:`stage.restate_data_docs`)."""
    if not r.summary.marts:
        return
    try:
        stage.restate_data_docs(r.store)
    except Exception as exc:
        _no_data_docs(r, exc)


def _no_data_docs(r: Run, exc: Exception) -> None:
    """The stewards' site never fails a run: a note says why it was not rebuilt."""
    # (shutil's error from a full disk lists every file it could not copy: not that)
    why = f"out of disk space: {no_space(exc)}" if out_of_space(exc) else redact(exc)
    r.summary.notes.append(
        f"Data Docs were not rebuilt ({why}); the drops' validation results are in "
        "the ledger, `fusionlake report` and the marts")


def fingerprint(store: ObjectStore, ledger: Ledger, feedset: FeedSet | None = None) -> str:
    """What the marts are built from: the live drops, the steward decisions, and the drops
    rejected or held, which the stewards' tables show (a run whose only news was a rejected drop
    left it out of every mart's drop_ledger and quarantine until some other drop came). A
    duplicate (known bytes sent again, which a scheduled export does every day) is not: it
    changes no record, and would republish the marts each time; the marts show it from their
    next change on. And the caps of the sharing agreements (``feedset``), which every run
    applies to the rows staged before: a narrowed agreement withdraws rows from the marts."""
    entries = ledger.entries()
    live = sorted(e.drop_id for e in entries if e.state in LIVE)
    stopped = sorted((e.drop_id, str(e.state)) for e in entries if e.state in STOPPED)
    decisions = store.list(layout.DECISIONS)
    inputs: list = [live, decisions, stopped]
    caps = sorted([a, default, sorted(feeds.items())] for a, (default, feeds) in (
        feedset.share_caps() if feedset is not None else {}).items())
    if caps:  # (none: the fingerprint the marts of a lake without agreements have)
        inputs.append(caps)
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:16]


def inputs_changed(r: Run) -> bool:
    built = zones.read_json(r.store, layout.MARTS_FINGERPRINT)
    return not built or built.get("fingerprint") != fingerprint(r.store, r.ledger, r.feedset)


@contextlib.contextmanager
def load_staged(r: Run) -> Iterator[tuple[dict, set[str], pl.DataFrame]]:
    """The staged records that count now (resolve.staged_scans), loaded again from the start
    while it fails transiently; and a check that every drop this run staged is among them, so
    that no mart is published without one. Also yields their releasable_to values
    (marts.release_values), which resolve and publish both group the audiences by: read once
    (at a million people, half a second to a second each time)."""
    with contextlib.ExitStack() as stack:
        with r.executor.stage("load staged", r.summary):
            scans, superseded = _staged_scans(r, stack)
            present: set[str] = set()
            for frame in scans.values():
                present |= set(frame.select("drop_id").unique().collect()["drop_id"].to_list())
            missing = sorted(r.staged - superseded - present)
            if missing:
                raise TransientLakeError(
                    f"drop(s) {', '.join(missing)} staged by this run are not among the staged "
                    "records read back: nothing is published without them; run again")
            release = marts.release_values(scans)
            _orphans(r)
        yield scans, superseded, release


def _staged_scans(r: Run, stack: contextlib.ExitStack, tries: int = 10) -> tuple[dict, set]:
    """resolve.staged_scans, loaded again while it fails transiently. A staged file that
    cannot be read (written over, cut short) holds its drop, which `fusionlake retry` stages
    again from its raw file, and the others are loaded without it: it ended every run with a
    traceback, the new drops stuck behind it."""
    for _ in range(tries):
        try:
            return retrying(lambda: stack.enter_context(
                resolve.staged_scans(r.store, r.ledger, r.feedset)), "loading the staged records")
        except zones.UnreadableFile as exc:
            if not (exc.key or "").startswith(f"{layout.STAGED}/"):
                raise
            drop_id = layout.drop_id_of_staged(exc.key)
            why = _hold_unreadable(r, drop_id,
                                   f"file {exc.key} cannot be read ({str(exc)[:200]})")
            r.summary.problems.append(f"drop {drop_id} held: {why}")
            r.staged.discard(drop_id)
    raise LakeError(f"more than {tries} staged files cannot be read: see the run's problems")


@contextlib.contextmanager
def _unreadable_staged_held(r: Run) -> Iterator[None]:
    """A staged file whose footer reads but whose pages do not (bytes written over inside it)
    fails resolve or publish with Polars' error, which names no file: every run ended so, the
    new drops stuck behind it. On such an error each staged file of the live drops is read
    whole, the drops of those that cannot be are held (as :func:`_staged_scans` holds them),
    and the run ends with one line naming them; the next publishes the others."""
    try:
        yield
    except Exception as exc:
        if not any(isinstance(c, pl.exceptions.PolarsError) for c in causes(exc)):
            raise
        live = {e.drop_id for e in r.ledger.entries() if e.state in LIVE}
        bad = [key for table in schema.TABLES for key in zones.staged_keys(r.store, table, live)
               if not zones.readable(r.store, key)]
        if not bad:
            raise
        for drop_id in sorted({layout.drop_id_of_staged(key) for key in bad}):
            files = [k for k in bad if layout.drop_id_of_staged(k) == drop_id]
            _hold_unreadable(r, drop_id, f"file(s) {', '.join(files)} cannot be read")
        raise LakeError(
            f"staged file(s) {', '.join(bad)} cannot be read ({first_line(exc)[:200]}): their "
            "drops are held (`fusionlake retry` stages them again from raw/), and the next run "
            "publishes the others") from exc


def _hold_unreadable(r: Run, drop_id: str, what: str) -> str:
    """Hold a drop whose staged file(s) ``what`` (named, and why); the reason recorded."""
    why = f"its staged {what}: `fusionlake retry {drop_id}` stages it again from its raw file"
    r.ledger.record(drop_id, DropState.HELD, why, r.run_id)
    return why


def _orphans(r: Run) -> None:
    """A problem line for staged records whose drop the ledger does not know (its events
    removed or written over): they are left out of the marts, which must not happen unseen."""
    lost = sorted(drop_id for _agency, _feed, drop_id in resolve.unknown_staged(
        r.store, {e.drop_id for e in r.ledger.entries()}))
    if lost:
        r.summary.problems.append(
            f"staged records of {len(lost)} drop(s) have no usable entry in the drop ledger "
            f"({', '.join(lost)}; ledger/drops/<drop id>/ removed or written over?): they are "
            "left out of the marts. Restore those objects of the ledger, or remove the drop's "
            "staged files if it is meant to be gone")


def resolve_once(lake: str, scans: dict, run_id: str, retention: int,
                 options: resolve.Options | None = None,
                 release: pl.DataFrame | None = None) -> dict:
    """Resolve the staged records that count now, once per visibility group (incrementally
    where resolve.plan allows); the statistics of the all-agencies resolution."""
    store = open_store(lake)
    return resolve.resolve_audiences(store, scans, run_id, retention, options=options,
                                     release=release)


def resolve_entities(r: Run, scans: dict, superseded: set[str],
                     release: pl.DataFrame | None = None) -> None:
    for drop_id in superseded:
        r.ledger.record(drop_id, DropState.SUPERSEDED, "every row replaced by a later drop",
                        r.run_id)
    # Taken before resolving reads the steward decisions: one a steward makes while the run
    # works is then not in the fingerprint the marts are stamped with, and the next run applies
    # it (taken after publishing, it would be, and no run would until the next drop).
    r.inputs = fingerprint(r.store, r.ledger, r.feedset)
    with r.executor.stage("resolve", r.summary):
        r.summary.resolution_stats = r.executor.once(
            "resolve", resolve_once, lake=r.settings.lake, scans=scans, run_id=r.run_id,
            retention=r.settings.resolution_retention, options=resolve.Options.of(r.settings),
            release=release)
    r.summary.notes += r.summary.resolution_stats.get("model_notes", [])
    r.summary.notes += r.summary.resolution_stats.get("block_notes", [])


def publish_once(lake: str, feeds_path: list[str], scans: dict, superseded: set[str],
                 retention: int, run_id: str, inputs: str, full: bool = False,
                 workers: int = 1, release: pl.DataFrame | None = None) -> dict[str, str]:
    """Publish every audience's mart, then mark the drops in them published and stamp the
    marts with ``inputs``, the :func:`fingerprint` of what they were built from, taken before
    resolving (:func:`resolve_entities`)."""
    store = open_store(lake)
    ledger = Ledger(store)
    publishing = [e for e in ledger.entries()
                  if e.state == DropState.STAGED and e.drop_id not in superseded]
    published = publish.publish_marts(store, ledger, load_feeds(feeds_path), retention, scans,
                                      full=full, workers=workers, release=release,
                                      publishing={e.drop_id for e in publishing})
    # the all-agencies mart is kept when nothing in the lake changed but the states of drops
    shown = published.get("all") or (marts.latest(store, "all") or {}).get("version")
    for e in publishing:
        ledger.record(e.drop_id, DropState.PUBLISHED, f"in marts {shown}", run_id)
    store.put(layout.MARTS_FINGERPRINT, json.dumps(
        {"fingerprint": inputs, "run_id": run_id}).encode())
    return published


def publish_marts(r: Run, scans: dict, superseded: set[str],
                  release: pl.DataFrame | None = None) -> None:
    with r.executor.stage("publish", r.summary):
        r.summary.marts = r.executor.once(
            "publish", publish_once, lake=r.settings.lake, feeds_path=r.settings.feeds_path,
            scans=scans, superseded=superseded, retention=r.settings.mart_retention,
            run_id=r.run_id, full=r.settings.full, workers=r.settings.group_workers,
            inputs=r.inputs, release=release)
        # every audience with a published mart: those that see no row have no resolution
        shown = {key.split("/")[1] for key in r.store.list(f"{layout.MARTS}/")
                 if key.endswith(f"/{layout.LATEST}") and key.count("/") == 2}
        r.summary.marts_kept = sorted(shown - set(r.summary.marts))
        known = {a for f in r.feedset.feeds.values() for a in (f.agencies or {f.agency})}
        for gone in sorted(shown - known - {marts.ALL}) if known else []:
            r.summary.notes.append(
                f"the mart of {gone} is still served, but {gone} has no feed and no sharing "
                "agreement any more: retire it by removing "
                f"{layout.mart_prefix(gone)}/ from the lake")
        r.summary.fill_from_marts(r.store)


def leave_summary(r: Run) -> None:
    """The run summary, for the person reading it the next morning (reports/runs/). A run that
    found nothing to do leaves no report: a schedule every 15 minutes would bury the real ones."""
    text = r.summary.markdown()
    if r.summary.noop and not (r.summary.problems or r.summary.notes):
        progress.info("nothing new: no report written")
        return
    r.store.put(layout.run_report_key(r.run_id), text.encode())
    r.store.put(layout.LATEST_RUN_REPORT, text.encode())
    r.executor.report(text, r.run_id)
