"""Prefect's side of the stages: each call a task with the one retry policy.

:class:`PrefectExecutor` is the fusionlake.pipeline.run.Executor that flows hand to the stages:
each call becomes a task of the current flow run (visible in the UI, retried on transient storage
errors, never on bad data), per-drop work runs on a Prefect task runner (threads, or worker
processes for big drops), and the run summary becomes a markdown artifact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from fusionlake.lake.store import is_transient
from fusionlake.pipeline import stage
from fusionlake.pipeline.run import Executor

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


class PrefectExecutor(Executor):
    """Runs the stages as Prefect tasks of the current flow run."""

    def __init__(self) -> None:
        super().__init__()
        self.log = get_run_logger()
        self._runner: TaskRunner | None = None

    @contextlib.contextmanager
    def workers(self, processes: int) -> Iterator[None]:
        if not processes:
            with ThreadPoolTaskRunner() as runner:
                self._runner = runner
                yield
            self._runner = None
            return
        # The workers report to this run's API. Without PREFECT_API_URL that is a temporary
        # server of this process, and each worker would otherwise start one of its own on the
        # same SQLite database (seconds per worker, and "database is locked" errors).
        with get_client(sync_client=True) as client:
            api_url = str(client.api_url)
        with (temporary_settings({PREFECT_API_URL: api_url}),
              ProcessPoolTaskRunner(max_workers=processes,
                                    initializer=stage.exit_with_parent) as runner):
            self._runner = runner
            yield
        self._runner = None

    def each(self, name: str, fn: Callable, calls: list[dict]) -> Iterator[Any]:
        t = as_task(name, fn)
        futures = [self._runner.submit(t, kwargs) if self._runner else t.submit(**kwargs)
                   for kwargs in calls]
        for fut in futures:
            try:
                yield fut.result()
            except Exception as exc:
                yield exc

    def once(self, name: str, fn: Callable, **kwargs) -> Any:
        t = as_task(name, fn)
        if self._runner is not None:
            return self._runner.submit(t, kwargs).result()
        return t(**kwargs)

    def report(self, markdown: str, run_id: str) -> None:
        create_markdown_artifact(markdown=markdown, key="pipeline-run-summary",
                                 description=f"fusionlake run {run_id}")
