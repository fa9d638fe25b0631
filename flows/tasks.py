"""Prefect's side of the stages: each call a task with the one retry policy.

:class:`PrefectExecutor` is the fusionlake.pipeline.run.Executor that flows hand to the stages:
each call becomes a task of the current flow run (visible in the UI, retried on transient storage
errors, never on bad data), per-drop work runs on a Prefect task runner, and the run summary
becomes a markdown artifact.

Where per-drop work (validate+stage of each drop, then the Data Docs) runs is a setting
(Settings.task_runner, ``FUSIONLAKE_TASK_RUNNER``):

* ``local`` (the default): threads of the flow's process, or worker processes of this host
  for big drops (fusionlake.pipeline.stage.drop_workers);
* ``dask``: a Dask cluster through prefect-dask (the ``dask`` extra). Without
  ``FUSIONLAKE_DASK_ADDRESS`` the run starts a LocalCluster of ``drop_workers`` processes on
  this host and stops it with the stage; with one, it hands the drops to that scheduler's
  workers, on other machines. Each call carries plain arguments (lake URI, feed folders, the
  ledger entry, the run's lease fence), and the workers read and write the lake themselves, so
  that lake must be on object storage (Settings.check_task_runner). docs/scale.md says what runs
  where.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any
from urllib.parse import urlparse

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from flows.server import answers
from fusionlake.lake import layout
from fusionlake.lake.settings import Settings, SettingsError
from fusionlake.lake.store import TransientLakeError, first_line, is_transient, redact
from fusionlake.pipeline import stage
from fusionlake.pipeline.run import Executor, WorkerDied

# One retry policy for every stage (land, validate+stage, data docs, resolve, publish): storage
# failures that pass (fusionlake.lake.store.is_transient: 5xx, throttling, dropped connections,
# timeouts, and the store's own TransientLakeError once its retries ran out) are retried with
# backoff; nothing else is -- bad data does not improve by trying again, and a run that lost
# its lease (LeaseLost) must stop.
RETRIES = {"retries": 3, "retry_delay_seconds": [2, 8, 30]}


def retry_transient(task, task_run, state) -> bool:
    """Prefect's retry condition: retry when the task failed for a passing reason."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


@cache
def as_task(name: str, fn: Callable) -> Task:
    """``fn`` as a Prefect task named for its stage, with the one retry policy."""
    return task(fn, name=name, retry_condition_fn=retry_transient, cache_policy=NO_CACHE,
                persist_result=False, **RETRIES)


#: How long a run waits for the first worker of a Dask scheduler given by address (a fleet
#: that is scaled to zero, or still starting) before it stops, its drops left pending.
DASK_WORKER_WAIT_SECONDS = 120


def _loopback(url: str) -> bool:
    host = urlparse(url if "://" in url else f"tcp://{url}").hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def dask_runner(settings: Settings, api_url: str) -> TaskRunner:
    """prefect-dask's task runner for per-drop work: the scheduler at ``settings.dask_address``,
    or a LocalCluster of ``drop_workers`` single-threaded processes on this host."""
    # Dask's own lines (scheduler and nanny start, connections, retirement) at WARNING unless
    # the user configured its logging: a run's progress lines are what an operator reads.
    # Set before Dask is imported, which reads it; the cluster's processes inherit it.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    from prefect_dask import DaskTaskRunner  # the optional `dask` extra (check_task_runner)

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    # One thread per process: validate+stage is mostly single-threaded Python (GX, translit.),
    # so a drop per core. The cluster listens on loopback only (its diagnostics page on a free
    # port: several runs or users on one host do not collide). Its processes start with this
    # process's environment (the lake's AWS_* variables) and the run's Prefect settings, its
    # API above all.
    env = get_current_settings().to_environment_variables(exclude_unset=True)
    env["PREFECT_API_URL"] = api_url
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": settings.drop_workers, "threads_per_worker": 1, "processes": True,
        "host": "127.0.0.1", "dashboard_address": ":0", "env": env})


def lost_by_cluster(exc: Exception) -> Exception:
    """A per-drop call's error as the run should judge it.

    A call the Dask cluster lost (a connection to the scheduler or a worker closed, the call
    cancelled because the cluster went away) is no fault of the drop: it becomes a transient
    error, which leaves the drop pending for the next run instead of rejecting it
    (fusionlake.pipeline.run, "_failed_drop"). A drop whose workers died under it on every
    worker that took it (Dask's KilledWorker: Dask gives the call to another worker when one
    dies, and gives up after three) is held for a person, as a drop that kills its process
    worker alone (fusionlake.pipeline.run.WorkerDied).
    """
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    if isinstance(exc, CommClosedError | FutureCancelledError):
        return TransientLakeError(
            f"the Dask cluster lost the call ({type(exc).__name__}: {exc}); it runs again next run")
    if isinstance(exc, KilledWorker):
        return WorkerDied(f"on each of the {exc.allowed_failures + 1} Dask workers that took "
                          "it (KilledWorker)")
    return exc


#: How often a run waiting for a drop worker checks that its Prefect server answers, and how
#: many checks in a row it may miss before the run stops (:func:`_wait_while_prefect_answers`).
PREFECT_CHECK_SECONDS = 5.0
PREFECT_CHECKS_MISSED = 3


class PrefectUnreachable(RuntimeError):
    """The run's Prefect server stopped answering while worker processes ran its tasks, which
    cannot end without it: the run stops, and the drops not staged stay pending."""


def _wait_while_prefect_answers(fut: Any, runner: ProcessPoolTaskRunner, name: str) -> None:
    """Wait until a task of the process pool ``runner`` is done, checking that the Prefect API
    answers; when it stops answering, end the pool's processes and raise PrefectUnreachable.

    A task's engine in a worker process that cannot reach the API ends with ``exit(1)``, and
    Prefect's process pool then never resolves the task's future: the SystemExit it gets back
    escapes the pool's callbacks (prefect 3.9, ``_ChainedFuture``). Without this check a run
    whose server died (killed, restarted) waited for ever, its lease renewed all along.
    """
    api = PREFECT_API_URL.value()
    missed = 0
    while not fut.wrapped_future.done():
        try:
            fut.wrapped_future.result(timeout=PREFECT_CHECK_SECONDS)
        except TimeoutError:
            pass
        except Exception:  # the task's own failure: the caller has it from fut.result()
            return
        if fut.wrapped_future.done() or not api:
            continue
        missed = 0 if answers(api) else missed + 1
        if missed >= PREFECT_CHECKS_MISSED:
            _end_pool_processes(runner)
            raise PrefectUnreachable(
                f"the Prefect server at {api} stopped answering while worker processes ran "
                f"the run's {name} tasks, which cannot end without it: the run stops, and the "
                "drops not staged stay pending for the next run")


def _end_pool_processes(runner: ProcessPoolTaskRunner) -> None:
    """Kill the worker processes of a process pool whose Prefect server is gone. The pool's own
    shutdown cannot end them then: the SystemExit that hangs its futures
    (:func:`_wait_while_prefect_answers`) has also ended the thread that would tell them to
    stop, and Python waits for them at exit, so the command never ended."""
    executor = getattr(runner, "_executor", None)
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.kill()


class PrefectExecutor(Executor):
    """Runs the stages as Prefect tasks of the current flow run; per-drop work where
    ``settings.task_runner`` says (see the module's docstring)."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.log = get_run_logger()
        # No settings (the land flow): no per-drop stage, so nothing runs on a cluster.
        self.settings = settings or Settings()
        # Refused before the run lands anything: a lake the cluster cannot reach, a missing
        # extra, or a Prefect API that the cluster's workers cannot reach.
        self.settings.check_task_runner()
        self.settings.check_resolve_backend()
        if self.settings.task_runner == "dask" and self.settings.dask_address:
            api = self._api_url()
            if _loopback(api) and not _loopback(self.settings.dask_address):
                raise SettingsError(
                    f"the Dask scheduler at {self.settings.dask_address} has workers on other "
                    f"machines, which cannot reach this run's Prefect API at {api}: set "
                    "PREFECT_API_URL to a Prefect server they can reach")
        self._runner: TaskRunner | None = None

    @staticmethod
    def _api_url() -> str:
        # Without PREFECT_API_URL this run's API is a temporary server of this process, and each
        # worker would otherwise start one of its own on the same SQLite database (seconds per
        # worker, and "database is locked" errors): workers are pointed at this one.
        with get_client(sync_client=True) as client:
            return str(client.api_url)

    @contextlib.contextmanager
    def workers(self, processes: int) -> Iterator[None]:
        if self.settings.task_runner == "dask":
            with self._on_dask():
                yield
            return
        if not processes:
            with ThreadPoolTaskRunner() as runner:
                self._runner = runner
                yield
            self._runner = None
            return
        with (temporary_settings({PREFECT_API_URL: self._api_url()}),
              ProcessPoolTaskRunner(max_workers=processes,
                                    initializer=stage.exit_with_parent) as runner):
            self._runner = runner
            try:
                yield
            finally:
                self._runner = None

    @contextlib.contextmanager
    def _on_dask(self) -> Iterator[None]:
        """Per-drop work on a Dask cluster, for as long as the stage lasts."""
        api_url = self._api_url()
        # The settings in force when a call is submitted travel with it (prefect-dask serialises
        # the context), so each task run reports to this run's API from any worker.
        with (temporary_settings({PREFECT_API_URL: api_url}),
              dask_runner(self.settings, api_url) as runner):
            client = runner.client  # starts the LocalCluster, or connects to the scheduler
            try:
                client.wait_for_workers(1, timeout=DASK_WORKER_WAIT_SECONDS)
            except TimeoutError:
                raise SettingsError(
                    f"no Dask worker joined the scheduler at {client.scheduler.address} within "
                    f"{DASK_WORKER_WAIT_SECONDS} s; start workers (`dask worker ADDRESS`) and "
                    "run again: the drops stay pending") from None
            self.log.info("per-drop work on Dask: scheduler %s, %d worker(s)",
                          client.scheduler.address, len(client.nthreads()))
            self._runner = runner
            try:
                yield
            finally:
                self._runner = None

    def each(self, name: str, fn: Callable, calls: list[dict]) -> Iterator[Any]:
        t = as_task(name, fn)
        futures = [self._runner.submit(t, kwargs) if self._runner else t.submit(**kwargs)
                   for kwargs in calls]
        on_dask = self.settings.task_runner == "dask" and self._runner is not None
        in_processes = isinstance(self._runner, ProcessPoolTaskRunner)
        for fut in futures:
            if in_processes:
                _wait_while_prefect_answers(fut, self._runner, name)
            try:
                yield fut.result()
            except Exception as exc:
                yield lost_by_cluster(exc) if on_dask else exc

    def once(self, name: str, fn: Callable, **kwargs) -> Any:
        t = as_task(name, fn)
        if self._runner is not None:
            fut = self._runner.submit(t, kwargs)
            if isinstance(self._runner, ProcessPoolTaskRunner):
                _wait_while_prefect_answers(fut, self._runner, name)
            return fut.result()
        return t(**kwargs)

    def start(self, name: str, fn: Callable, **kwargs) -> Any:
        # a task run of this flow run, on the flow's own thread pool (not the drop workers)
        return as_task(name, fn).submit(**kwargs)

    def report(self, markdown: str, run_id: str) -> None:
        """The summary as the flow run's artifact too. It is in the lake already: a Prefect
        server that stopped answering during the run (killed, restarting) costs the copy, not
        the run, and not a minute of the client's retries first."""
        where = f"{layout.run_report_key(run_id)} in the lake"
        api = PREFECT_API_URL.value()
        if api and not answers(api):
            self.log.warning("the run summary was not posted to Prefect, whose API at %s does "
                             "not answer; it is at %s", api, where)
            return
        try:
            create_markdown_artifact(markdown=markdown, key="pipeline-run-summary",
                                     description=f"fusionlake run {run_id}")
        except Exception as exc:  # a copy of what the lake holds: never the run's failure
            self.log.warning("the run summary was not posted to Prefect (%s); it is at %s",
                             redact(first_line(exc)), where)
