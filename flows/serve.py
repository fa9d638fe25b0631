"""``fusionlake serve``: the pipeline on a schedule, with Prefect's ``serve``.

A schedule needs a Prefect server. With ``PREFECT_API_URL`` set we use that server (production:
Prefect server on PostgreSQL, see infra/). Without it we start a local one (SQLite, loopback
only) and say where its UI is, so that a single machine needs nothing else.

Either server may go away while serve runs. The local one is started again when it exits
(:class:`_Watch`), up to a limit past which serve ends with status 1 (:func:`end_serve`). When
Prefect's runner gives up on a server that stopped answering, serve waits for it and serves
again (:func:`wait_for_server`). Each time it starts serving, the scheduled runs that fell due
while it was not running are cancelled, all but the latest (:func:`cancel_missed_runs`). A serve
whose deployment another runner serves now (a second serve on the same server) refuses to
start (:func:`served_elsewhere`).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.pipeline import pipeline
from flows.server import ServerProcess, answers, die_with_parent, healthy, wait_healthy
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import first_line

DEPLOYMENT = "fusionlake-pipeline"


#: How often ``serve`` looks at the local server it started, and how many times it starts the
#: server again within RESTART_WINDOW seconds before it gives up.
WATCH_SECONDS = 5.0
MAX_RESTARTS = 3
RESTART_WINDOW = 600.0
#: How many times in a row serve registers its deployment again with a server that answers
#: 503 Service Unavailable (one that has just started), WATCH_SECONDS apart.
NOT_READY_TRIES = 12
#: The most due runs :func:`cancel_missed_runs` reads: the server's page limit
#: (PREFECT_API_DEFAULT_LIMIT), twice as many as it makes of a schedule's runs ahead of time
#: (PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS).
MISSED_LIMIT = 200


class _Watch:
    """Starts the local server again whenever it exits (the OOM killer, a crash).

    Without it ``serve`` went on without a server: alive to any supervisor, it scheduled
    nothing, for ever, and said nothing. The server keeps its deployments and schedules in its
    database (``PREFECT_HOME``), and Prefect's runner polls the same URL, so a server started
    again on the same port takes the schedule up where it was: the runs missed meanwhile start
    at once (a scheduled run that finds the lake busy ends Skipped). Past ``max_restarts`` in
    ``window`` seconds, or when the server does not come back, it calls ``give_up`` with why
    (by default :func:`end_serve`).
    """

    def __init__(self, start: Callable[[], ServerProcess], url: str, timeout: float,
                 every: float, max_restarts: int, window: float,
                 give_up: Callable[[str], None]) -> None:
        self.server = start()
        self._start, self._url, self._timeout = start, url, timeout
        self._every, self._max, self._window = every, max_restarts, window
        self._give_up = give_up
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._restarts: collections.deque[float] = collections.deque()
        self._thread = threading.Thread(target=self._run, name="prefect server watch",
                                        daemon=True)

    def watch(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._stop.set()
        if self._thread.is_alive():  # if it is starting a server, stopping it ends the wait
            self._thread.join(timeout=self._every + 1)
        self.server.stop()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            status = self.server.poll()
            if status is None:
                continue
            dead = self.server
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > self._window:
                self._restarts.popleft()
            said = _last_line(dead.last_output())
            if len(self._restarts) >= self._max:
                exits = len(self._restarts) + 1
                return self._lose(
                    f"the local Prefect server exited (pid {dead.pid}, status {status}){said}: "
                    f"{exits} exit{'s' if exits > 1 else ''} within {self._window:.0f} s, and "
                    f"it is started again at most {self._max} times; serve ends, so that "
                    "whatever supervises it sees the failure")
            self._restarts.append(now)
            print(f"fusionlake serve: the local Prefect server exited (pid {dead.pid}, status "
                  f"{status}){said}; starting it again on {self._url} (restart "
                  f"{len(self._restarts)} of at most {self._max} within "
                  f"{self._window:.0f} s)", file=sys.stderr, flush=True)
            try:
                with self._lock:
                    if self._stop.is_set():  # serve is ending: close() stops the server
                        return
                    self.server = self._start()
                wait_healthy(self.server, self._url, self._timeout, "the local Prefect server")
            except (OSError, RuntimeError) as exc:
                return self._lose(f"the local Prefect server exited (pid {dead.pid}, status "
                                  f"{status}) and could not be started again: {exc}")
            print(f"fusionlake serve: the local Prefect server answers again (pid "
                  f"{self.server.pid}); the runs missed while it was down start now",
                  file=sys.stderr, flush=True)

    def _lose(self, why: str) -> None:
        with self._lock:
            if not self._stop.is_set():  # not when serve is ending anyway
                self._give_up(why)


def end_serve(why: str) -> None:
    """Say why on stderr and end the process with status 1, its flow runs first.

    Not Prefect's own shutdown: without its server the runner retries the API for minutes
    before it lets go (pausing its deployments, and each flow run reporting its state). A
    flow run killed here loses nothing the next run does not take up: its drops stay pending,
    and the lake's lease it held lapses (README, "The lake").
    """
    print(f"fusionlake serve: {why}", file=sys.stderr, flush=True)
    children = multiprocessing.active_children()  # the runner's flow runs
    for child in children:
        child.terminate()
    deadline = time.monotonic() + 10
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
    os._exit(1)


def wait_for_server(api: str, exc: BaseException, every: float = WATCH_SECONDS) -> None:
    """After Prefect's runner gave up on a server that stopped answering (three failed polls
    in a row, minutes with the client's retries), wait until it answers again.

    Before, ``serve`` ended there with a page of ExceptionGroup traceback, so a server of one's
    own (``PREFECT_API_URL``) down for a few minutes, for an upgrade say, ended the schedule.
    """
    exc = next(_leaves(exc), exc)  # the first error of the runner's task groups
    print(f"fusionlake serve: the Prefect server at {api} stopped answering, and Prefect's "
          f"runner gave up on it ({type(exc).__name__}: {first_line(exc)}); serve waits for "
          "it, and serves again when it answers", file=sys.stderr, flush=True)
    while not answers(api):
        time.sleep(every)
    print(f"fusionlake serve: the Prefect server at {api} answers again", file=sys.stderr,
          flush=True)


def _deployment(client: Any, name: str) -> Any:
    """The deployment ``flow/name`` as the server has it, or None before it is first served."""
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None


def cancel_missed_runs(deployment: str = f"pipeline/{DEPLOYMENT}",
                       now: datetime | None = None) -> list[str]:
    """Cancel the runs the schedule made that were due while no serve ran, all but the latest;
    the names of those cancelled.

    The server makes a schedule's runs ahead of time (an hour of them at least). When serve
    ends with a crash or a power cut, not Ctrl-C (which pauses the schedule and drops its runs),
    those runs stay, and when serve starts again Prefect's runner starts every one that is due
    at once: a burst of processes on a small machine, all but one ending Skipped, and a SQLite
    server busy with "database is locked". The latest one is enough to take up every drop
    delivered meanwhile. Runs a person asked for (not made by the schedule) are left alone.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Cancelled

    now = now or datetime.now(UTC)
    with get_client(sync_client=True) as client:
        found = _deployment(client, deployment)
        if found is None:
            return []
        due = FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[found.id]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            expected_start_time=FlowRunFilterExpectedStartTime(before_=now))
        runs = [r for r in client.read_flow_runs(
            flow_run_filter=due, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=MISSED_LIMIT)
            if r.auto_scheduled]
        if len(runs) < 2:
            return []
        latest = runs[0]
        taken_up = (f"the latest missed run, {latest.name} (due at "
                    f"{latest.expected_start_time:%H:%M:%S}), takes up the drops delivered "
                    "meanwhile")
        for run in runs[1:]:
            due_at = f"{run.expected_start_time:%Y-%m-%d %H:%M:%S}"
            client.set_flow_run_state(run.id, Cancelled(
                message=f"missed: due at {due_at} while fusionlake serve was not running; "
                        f"{taken_up}"), force=True)
    return [r.name for r in runs[1:]]


class AlreadyServed(RuntimeError):
    """Another runner (a second ``fusionlake serve``, say) serves the deployment right now."""


def served_elsewhere(deployment: str = f"pipeline/{DEPLOYMENT}", every: float | None = None,
                     lake: str | None = None) -> str | None:
    """Why this serve must not serve ``deployment``: another runner serves it now; None when
    none does.

    A runner polls the server for its deployment's runs every ``every`` seconds (Prefect's
    PREFECT_RUNNER_POLL_FREQUENCY), and the server notes the time (``last_polled``). A second
    serve on the same server (the same port on one machine, or the same PREFECT_API_URL)
    would register the deployment again, with its own lake in the parameters: the first
    serve's scheduled runs would then work on the second's lake, and whichever runner polled
    first would start each run. So a deployment polled within three periods is watched for
    up to two more: a poll meanwhile means a runner lives; none, that its serve has ended (a
    serve killed and started again at once) and this one may take over.
    """
    from prefect import get_client
    from prefect.settings import PREFECT_RUNNER_POLL_FREQUENCY

    every = float(every or PREFECT_RUNNER_POLL_FREQUENCY.value())

    def read() -> Any:  # the deployment as the server has it now, or None
        with get_client(sync_client=True) as client:
            return _deployment(client, deployment)

    first = read()
    if first is None or first.last_polled is None:
        return None
    since = (datetime.now(UTC) - first.last_polled).total_seconds()
    if since > 3 * every:
        return None
    print(f"fusionlake serve: {deployment} was polled by a runner {since:.0f} s ago; waiting "
          f"up to {2 * every:.0f} s to see whether that serve still runs", flush=True)
    deadline = time.monotonic() + 2 * every
    while time.monotonic() < deadline:
        time.sleep(min(1.0, every / 2))
        seen = read()
        if seen is not None and seen.last_polled and seen.last_polled > first.last_polled:
            theirs = (seen.parameters or {}).get("lake")
            other = (f"; it works on the lake {theirs}" if theirs and theirs != lake
                     else f"; it works on the same lake, {theirs}" if theirs else "")
            ago = (datetime.now(UTC) - seen.last_polled).total_seconds()
            return (f"another runner serves {deployment} on {PREFECT_API_URL.value()} now (it "
                    f"polled for runs {ago:.0f} s ago{other}): a second serve would take its "
                    "schedule over. Stop that serve first, or serve on another --port (with "
                    "another PREFECT_HOME)")
    return None


def _served_elsewhere(lake: str) -> str | None:
    """:func:`served_elsewhere`; a failure of the lookup is said and lets serve go on."""
    try:
        return served_elsewhere(lake=lake)
    except Exception as exc:
        print(f"fusionlake serve: could not look whether another runner serves {DEPLOYMENT} "
              f"({type(exc).__name__}: {first_line(exc)}); serving it", file=sys.stderr,
              flush=True)
        return None


def _cancel_missed_runs() -> None:
    """:func:`cancel_missed_runs`, said in one line; a failure of it never stops serve."""
    try:
        cancelled = cancel_missed_runs()
    except Exception as exc:
        print(f"fusionlake serve: could not look for scheduled runs missed while serve was not "
              f"running ({type(exc).__name__}: {first_line(exc)}); any there start now",
              file=sys.stderr, flush=True)
        return
    if cancelled:
        print(f"fusionlake serve: {len(cancelled)} scheduled run(s) were due while serve was "
              "not running; cancelled all but the latest, which runs now", flush=True)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The errors in ``exc``: itself, or those of its (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _unavailable(exc: BaseException) -> bool:
    """Whether the runner failed on a 503 Service Unavailable (in any of its task groups)."""
    import httpx

    return any(isinstance(e, httpx.HTTPStatusError) and e.response.status_code == 503
               for e in _leaves(exc))


def _last_line(output: str) -> str:
    line = next((x.strip() for x in reversed(output.splitlines()) if x.strip()), "")
    return f" (its last words: {line[:300]})" if line else ""


@contextmanager
def local_prefect_server(port: int, timeout: float = 180.0, *,
                         command: list[str] | None = None, every: float = WATCH_SECONDS,
                         max_restarts: int = MAX_RESTARTS, window: float = RESTART_WINDOW,
                         give_up: Callable[[str], None] = end_serve):
    """Start ``prefect server start`` on 127.0.0.1:port (or ``command``), start it again
    whenever it exits (:class:`_Watch`), yield its API URL, stop it after."""
    url = f"http://127.0.0.1:{port}/api"
    if healthy(url):  # one is already running there: use it (and leave it to whoever runs it)
        yield url
        return
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true")}
    env.pop("PREFECT_API_URL", None)
    args = command or [sys.executable, "-m", "prefect", "server", "start", "--host",
                       "127.0.0.1", "--port", str(port)]

    def start() -> ServerProcess:
        # its own session: a Ctrl-C reaches serve, which stops the server after the runner
        return ServerProcess(args, env, start_new_session=True, preexec_fn=die_with_parent)

    watch = _Watch(start, url, timeout, every, max_restarts, window, give_up)
    try:
        wait_healthy(watch.server, url, timeout, "the local Prefect server")
        watch.watch()
        yield url
    finally:
        watch.close()


def serve(settings: Settings, cron: str = "*/15 * * * *", interval: float | None = None,
          port: int = 4200) -> None:
    """Serve the pipeline on its schedule until interrupted."""
    schedule = {"interval": interval} if interval else {"cron": cron}
    # a scheduled run that meets a run still at work ends Skipped, not Failed (flows/pipeline.py)
    params = {"lake": settings.lake, "feeds_path": settings.feeds_path, "skip_if_busy": True}

    def run(url: str | None) -> None:
        where = url or os.environ["PREFECT_API_URL"]
        when = f"every {interval} s" if interval else f"cron {cron}"
        not_ready = 0
        # once, before this serve registers anything (later, the last polls are its own)
        why = _served_elsewhere(settings.lake)
        if why:
            raise AlreadyServed(why)
        while True:
            print(f"serving {DEPLOYMENT} on {where} ({when}); lake {settings.lake}", flush=True)
            _cancel_missed_runs()
            try:
                pipeline.serve(name=DEPLOYMENT, parameters=params, **schedule)
                return
            except Exception as exc:
                if not answers(where):
                    wait_for_server(where, exc)
                    not_ready = 0
                elif _unavailable(exc) and not_ready < NOT_READY_TRIES:
                    # just started (again), its services not all up: registering the
                    # deployment failed with 503 Service Unavailable
                    not_ready += 1
                    print(f"fusionlake serve: the Prefect server at {where} is not ready yet "
                          f"(503 Service Unavailable); serving again in {WATCH_SECONDS:.0f} s",
                          file=sys.stderr, flush=True)
                    time.sleep(WATCH_SECONDS)
                else:  # a failure of serve's own, not the server's absence
                    raise

    if os.environ.get("PREFECT_API_URL"):
        run(None)
        return
    # a server that answers on the port already (another serve's, say) is used, not started
    running = healthy(f"http://127.0.0.1:{port}/api")
    with local_prefect_server(port) as url:
        how = "using the local Prefect server already running" if running else \
            "started a local Prefect server"
        print(f"{how}: UI at {url.removesuffix('/api')}", flush=True)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            run(url)
