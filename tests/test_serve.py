"""`fusionlake serve` for real: it starts a local Prefect server on loopback, serves the pipeline
on a short interval, and a scheduled run lands, validates, resolves and publishes a mart.

Nothing here is the test harness: the server is `prefect server start` (SQLite), the run is
created by the server's scheduler and executed by Prefect's runner in its own process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from flows.serve import local_prefect_server
from flows.server import ServerProcess, answers, die_with_parent, healthy, wait_healthy
from fusionlake.lake.ledger import DropState, Ledger
from fusionlake.lake.store import open_store
from fusionlake.pipeline.land import deliver
from fusionlake.pipeline.marts import open_latest

FUSIONLAKE = str(Path(sys.executable).with_name("fusionlake"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flow_runs(api: str) -> list[dict]:
    req = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _stop_serve(proc: subprocess.Popen) -> None:
    """SIGTERM to serve's process group (its runner stops in order), SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _prefect_server_pid(port: int) -> int:
    """The pid of the `prefect server start` listening on ``port`` (serve does not print it)."""
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if b"server" in args and b"start" in args and str(port).encode() in args:
                return int(proc.name)
    raise AssertionError(f"no prefect server start --port {port} running")


@pytest.mark.slow
def test_serve_runs_the_pipeline_on_its_schedule(tmp_path):
    from fusionlake.synth import generate

    drops = tmp_path / "drops"
    generate(300, 11, drops)  # the seed test_pipeline uses: this drop passes its suite
    lake = str(tmp_path / "lake")
    feed_dir = drops / "th_imm" / "repatriations"
    deliver(open_store(lake), "th_imm", "repatriations", sorted(feed_dir.iterdir()))

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"),  # its own SQLite database
               PREFECT_RUNNER_POLL_FREQUENCY="2", PREFECT_UI_ENABLED="false")
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [FUSIONLAKE, "serve", "--lake", lake, "--interval", "20", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 420
        store = open_store(lake)
        while not store.exists("marts/all/LATEST"):
            assert proc.poll() is None, Path(log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, Path(log.name).read_text()[-3000:]
            time.sleep(2)
        served = Path(log.name).read_text()
        assert f"UI at http://127.0.0.1:{port}" in served
        assert "serving fusionlake-pipeline" in served

        # the run was created by the schedule of the served deployment, and completed
        while True:
            runs = _flow_runs(api)
            done = [r for r in runs if r["state_type"] == "COMPLETED"]
            if done or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert done, runs
        assert all(r["deployment_id"] for r in done)
        assert done[0]["auto_scheduled"] is True
        assert done[0]["parameters"]["skip_if_busy"] is True

        con = open_latest(store, "all")
        try:
            records = con.execute("select count(*) from entity_record").fetchall()[0][0]
        finally:
            con.close()
        assert records > 0
        assert store.exists("reports/runs/LATEST.md")

        # The server dies (the OOM killer): serve starts it again on the same port, and the
        # schedule goes on with it; a drop delivered meanwhile is published by a later run.
        # (Before, serve went on without a server: alive, silent, scheduling nothing.) A run
        # in flight when the server died may publish the drop before serve has the server
        # back: wait for both.
        os.kill(_prefect_server_pid(port), signal.SIGKILL)
        second = drops / "mm_police" / "detainees"
        [later] = deliver(store, "mm_police", "detainees", sorted(second.iterdir()))
        later_name = later.path.name
        deadline = time.monotonic() + 300
        while True:
            entry = next((e for e in Ledger(store).entries()
                          if e.file_name == later_name), None)
            back = "the local Prefect server answers again" in Path(log.name).read_text()
            if back and entry is not None and entry.state is DropState.PUBLISHED:
                break
            assert proc.poll() is None, Path(log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, Path(log.name).read_text()[-3000:]
            time.sleep(2)
        served = Path(log.name).read_text()
        assert "fusionlake serve: the local Prefect server exited (pid " in served
        assert "status -9); starting it again on " + api in served
        assert "fusionlake serve: the local Prefect server answers again (pid " in served
    finally:
        _stop_serve(proc)
        log.close()


def test_a_scheduled_run_that_finds_the_lake_busy_ends_skipped_not_failed(prefect_harness,
                                                                          tmp_path):
    """A run that outlasts the schedule's interval meets the next scheduled runs: they have
    nothing to do that it is not doing, and each failed, paging someone every 15 minutes. A
    scheduled run now ends Completed, named Skipped, saying who holds the lake; a run asked
    for by hand still fails."""
    from flows.pipeline import SKIPPED, pipeline
    from fusionlake.lake.lease import LeaseHeld, acquire

    lake = str(tmp_path / "lake")
    holder = acquire(open_store(lake), "long-run", seconds=600)
    try:
        scheduled = pipeline(lake=lake, skip_if_busy=True, return_state=True)
        assert scheduled.is_completed() and scheduled.name == SKIPPED, scheduled
        assert scheduled.message.startswith("skipped: another run (long-run on ")
        by_hand = pipeline(lake=lake, return_state=True)
        assert by_hand.is_failed() and "another run (long-run on " in by_hand.message
        with pytest.raises(LeaseHeld, match=r"another run \(long-run on "):
            pipeline(lake=lake)  # as `fusionlake run` calls it: it prints the one line
        # and no traceback in the run's logs before it: another run at work is no fault here
        logged = _flow_run_logs(by_hand.state_details.flow_run_id)
        assert not any("Traceback" in line or "Encountered exception" in line
                       for line in logged), logged  # (the state's message says who holds it)
    finally:
        holder.release()
    assert not open_store(lake).exists("reports/runs/LATEST.md")  # the holder writes its own


def _flow_run_logs(flow_run_id) -> list[str]:
    """What a flow run logged, as the Prefect server (and its UI) has it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


# A stand-in for `prefect server start` in the tests of serve's watch on its server: it writes
# NOISE lines to stderr before it listens (more than a pipe holds), answers /api/health with its
# pid, and exits at once, saying so, when the file REFUSE exists.
FAKE_SERVER = """
import http.server, os, sys
port, noise, refuse = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if os.path.exists(refuse):
    sys.exit(f"port {port} is taken")
for i in range(noise):
    sys.stderr.write(f"log line {i} " + "x" * 90 + "\\n")
sys.stderr.write(f"fake server {os.getpid()} listening\\n")
sys.stderr.flush()

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        # a login in front of a path refuses with 401; a proxy whose server is down, 502
        self.send_response(200 if self.path == "/api/health" else 401 if "login" in self.path
                           else 502 if "proxy" in self.path else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def _fake_server(port: int, refuse: Path, noise: int = 2_000) -> list[str]:
    return [sys.executable, "-c", FAKE_SERVER, str(port), str(noise), str(refuse)]


def _answering_pid(url: str, other_than: int | None = None, timeout: float = 30) -> int:
    """The pid the server at ``url`` answers with, once it is not ``other_than``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                pid = int(resp.read())
            if pid != other_than:
                return pid
        assert time.monotonic() < deadline, f"no server other than {other_than} at {url}"
        time.sleep(0.1)


def test_serve_starts_its_local_server_again_each_time_it_exits_then_gives_up(tmp_path, capfd):
    """The server writes 200 KB to stderr before it listens: a pipe nobody read (64 KiB)
    stopped it at start-up. Killed, it is started again on the same port, twice; the third
    exit within the window gives up, saying why with the server's last words."""
    port, reasons, err = _free_port(), [], ""

    def wait_for(text: str) -> None:
        nonlocal err
        deadline = time.monotonic() + 30
        while text not in err:
            assert time.monotonic() < deadline, err
            time.sleep(0.1)
            err += capfd.readouterr().err

    with local_prefect_server(port, timeout=30, command=_fake_server(port, tmp_path / "no"),
                              every=0.1, max_restarts=2, window=600,
                              give_up=reasons.append) as url:
        pids = [_answering_pid(url)]
        for _ in range(2):
            os.kill(pids[-1], signal.SIGKILL)
            pids.append(_answering_pid(url, other_than=pids[-1]))
            wait_for(f"answers again (pid {pids[-1]})")  # (killed before: it failed to start)
        os.kill(pids[-1], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not reasons:
            assert time.monotonic() < deadline, err
            time.sleep(0.1)
    assert len(set(pids)) == 3
    assert reasons == [
        f"the local Prefect server exited (pid {pids[2]}, status -9) (its last words: fake "
        f"server {pids[2]} listening): 3 exits within 600 s, and it is started again at most 2 "
        "times; serve ends, so that whatever supervises it sees the failure"]
    for n, (dead, alive) in enumerate(itertools.pairwise(pids), start=1):
        assert (f"fusionlake serve: the local Prefect server exited (pid {dead}, status -9) "
                f"(its last words: fake server {dead} listening); starting it again on {url} "
                f"(restart {n} of at most 2 within 600 s)") in err
        assert (f"fusionlake serve: the local Prefect server answers again (pid {alive}); the "
                "runs missed while it was down start now") in err


def test_a_local_server_that_cannot_start_again_gives_serve_up_and_one_that_lives_is_stopped(
        tmp_path):
    refuse, reasons = tmp_path / "refuse", []
    port = _free_port()
    with local_prefect_server(port, timeout=30, command=_fake_server(port, refuse),
                              every=0.1, give_up=reasons.append) as url:
        first = _answering_pid(url)
        refuse.touch()
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not reasons:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    [why] = reasons
    assert why.startswith(f"the local Prefect server exited (pid {first}, status -9) and could "
                          "not be started again: the local Prefect server exited at start-up:")
    assert why.endswith(f"port {port} is taken\n")

    # the block's end stops the server it started
    refuse.unlink()
    port = _free_port()
    with local_prefect_server(port, timeout=30, command=_fake_server(port, refuse),
                              every=0.1, give_up=reasons.append) as url:
        alive = _answering_pid(url)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/health", timeout=2)
    with pytest.raises(ProcessLookupError):
        os.kill(alive, 0)
    assert len(reasons) == 1


# serve's own process, as `fusionlake serve` runs it: a flow run in a child process (Prefect's
# runner starts them with multiprocessing), the local server watched with the default give-up
SERVE = """
import multiprocessing, sys, time
from flows.serve import local_prefect_server
from flows.server import ServerProcess, answers, die_with_parent, healthy, wait_healthy

if __name__ == "__main__":
    port, command = int(sys.argv[1]), sys.argv[2:]
    flow_run = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(600,))
    flow_run.start()
    with local_prefect_server(port, timeout=30, command=command, every=0.1, max_restarts=0):
        print(flow_run.pid, flush=True)
        time.sleep(600)
"""


def test_serve_that_gives_up_on_its_server_ends_with_its_flow_runs(tmp_path):
    """Prefect's own shutdown, without its server, retried the API for minutes (pausing the
    deployments, each flow run reporting its state): giving up ends the process at once,
    status 1, its flow runs killed."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(port), *_fake_server(port, tmp_path / "no")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        flow_run = int(proc.stdout.readline())
        server = _answering_pid(f"http://127.0.0.1:{port}/api")
        os.kill(server, signal.SIGKILL)
        assert proc.wait(timeout=60) == 1
        err = proc.stderr.read()
    finally:
        proc.kill()
    assert (f"fusionlake serve: the local Prefect server exited (pid {server}, status -9) (its "
            f"last words: fake server {server} listening): 1 exit within 600 s, and it is "
            "started again at most 0 times; serve ends") in err
    with pytest.raises(ProcessLookupError):
        os.kill(flow_run, 0)


@pytest.mark.slow
def test_serve_waits_for_a_server_of_its_own_that_stopped_answering(tmp_path):
    """``PREFECT_API_URL`` names the user's own server, stopped (an upgrade, say) long enough
    for Prefect's runner to give up on it: three failed polls in a row. serve ended there, with
    a page of ExceptionGroup traceback, and the schedule with it. Now it waits, and serves
    again when the server is back: a drop delivered meanwhile is published. (While it serves, a
    second serve on the same server is refused.)"""
    from fusionlake.synth import generate

    drops = tmp_path / "drops"
    generate(300, 11, drops)
    lake = str(tmp_path / "lake")
    store = open_store(lake)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    server_env.update(PREFECT_HOME=str(tmp_path / "server-home"), PREFECT_UI_ENABLED="false")

    def start_server() -> ServerProcess:
        server = ServerProcess([sys.executable, "-m", "prefect", "server", "start", "--host",
                                "127.0.0.1", "--port", str(port)], server_env,
                               start_new_session=True, preexec_fn=die_with_parent)
        wait_healthy(server, api, 180, "the test's Prefect server")
        return server

    server = start_server()
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "serve-home"),
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_CLIENT_MAX_RETRIES": "0"}
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([FUSIONLAKE, "serve", "--lake", lake, "--interval", "20"],
                            stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)

    def wait_for(done, what: str, seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            text = Path(log.name).read_text()
            assert proc.poll() is None, f"serve ended before {what}:\n{text[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} in {seconds} s:\n{text[-3000:]}"
            time.sleep(1)

    try:
        wait_for(lambda: "is being served" in Path(log.name).read_text(), "serving")
        # a second serve on the same server, for another lake, is refused while this one polls
        # (before, it registered the deployment again and every scheduled run went to its lake)
        second = subprocess.run([FUSIONLAKE, "serve", "--lake", str(tmp_path / "other-lake"),
                                 "--interval", "20"], env=env, capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert (f"fusionlake serve: another runner serves pipeline/fusionlake-pipeline on {api} "
                f"now (it polled for runs ") in second.stderr, second.stdout + second.stderr
        assert f"; it works on the lake {lake}): " in second.stderr
        assert "serving fusionlake-pipeline" not in second.stdout
        server.stop()
        wait_for(lambda: "runner gave up on it" in Path(log.name).read_text(), "giving up")
        feed = drops / "th_imm" / "repatriations"
        [drop] = deliver(store, "th_imm", "repatriations", sorted(feed.iterdir()))
        server = start_server()

        def published() -> bool:
            return any(e.file_name == drop.path.name and e.state is DropState.PUBLISHED
                       for e in Ledger(store).entries())

        wait_for(published, "published drop", seconds=300)
        served = Path(log.name).read_text()
        assert re.search(  # the error is the first of the runner's task groups
            f"fusionlake serve: the Prefect server at {re.escape(api)} stopped answering, and "
            r"Prefect's runner gave up on it \(\w+: [^\n]+\); serve waits for it, and serves "
            "again when it answers", served), served
        assert f"fusionlake serve: the Prefect server at {api} answers again" in served
        assert served.count("serving fusionlake-pipeline on ") == 2
    finally:
        _stop_serve(proc)
        server.stop()
        log.close()


def test_a_server_that_answers_with_an_error_answers_all_the_same(tmp_path):
    """`run`, `serve` and `land` refuse a PREFECT_API_URL that nothing answers at; a server that
    refuses the request for /health (a hosted one, without credentials) is not refused. A proxy
    answering 502 for the server behind it is no answer."""
    port = _free_port()
    with local_prefect_server(port, timeout=30, command=_fake_server(port, tmp_path / "no"),
                              give_up=lambda why: None) as url:
        base = url.removesuffix("/api")
        login, missing, proxy = f"{base}/behind-a-login", f"{base}/elsewhere", f"{base}/proxy"
        assert (healthy(url), answers(url)) == (True, True)
        assert (healthy(login), answers(login)) == (False, True)  # 401
        assert (healthy(missing), answers(missing)) == (False, True)  # 404
        assert (healthy(proxy), answers(proxy)) == (False, False)  # 502
    assert (healthy(url), answers(url)) == (False, False)


def test_a_run_waiting_for_its_worker_processes_trusts_a_server_behind_a_login(tmp_path,
                                                                              monkeypatch):
    """While worker processes stage drops, the run checks that its Prefect server answers and
    stops after a few misses (flows/tasks.py). A server behind a login refuses the check's
    request, made without credentials: the run goes on. A proxy answering 502 for its server
    is a miss, and the run stops, its pool's processes ended."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    from prefect.settings import PREFECT_API_URL, temporary_settings

    import flows.tasks

    monkeypatch.setattr(flows.tasks, "PREFECT_CHECK_SECONDS", 0.05)
    monkeypatch.setattr(flows.tasks, "PREFECT_CHECKS_MISSED", 2)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pool = SimpleNamespace(_executor=SimpleNamespace(_processes={worker.pid: worker}))

    def wait(api: str, seconds: float) -> None:
        """Wait for a task that ends after ``seconds``, with the server at ``api``."""
        task = SimpleNamespace(wrapped_future=Future())
        ends = threading.Timer(seconds, task.wrapped_future.set_result, (None,))
        ends.start()
        try:
            with temporary_settings(updates={PREFECT_API_URL: api}):
                flows.tasks._wait_while_prefect_answers(task, pool, "validate+stage")
        finally:
            ends.cancel()

    port = _free_port()
    try:
        with local_prefect_server(port, timeout=30, command=_fake_server(port, tmp_path / "no"),
                                  give_up=lambda why: None) as url:
            base = url.removesuffix("/api")
            wait(f"{base}/behind-a-login", 1.0)  # 20 checks, each refused: the task ends
            assert worker.poll() is None
            with pytest.raises(flows.tasks.PrefectUnreachable, match=f"{base}/proxy stopped"):
                wait(f"{base}/proxy", 30)
            assert worker.wait(10) == -signal.SIGKILL
    finally:
        worker.kill()


def test_serve_registers_again_with_a_server_not_ready_yet(tmp_path, monkeypatch, capsys):
    """A server that has just started (again) may answer 503 Service Unavailable while serve
    registers its deployment (seen in CI: automations, in the test above). serve tries again,
    WATCH_SECONDS apart; any other failure of a server that answers is serve's own, and ends it.
    (Prefect's serve is replaced here: what is tested is serve's loop around it.)"""
    import httpx

    from flows import serve as served
    from fusionlake.lake.settings import Settings

    port = _free_port()
    calls = []

    def failing(status: int) -> httpx.HTTPStatusError:
        request = httpx.Request("DELETE", f"http://127.0.0.1:{port}/api/automations/x")
        return httpx.HTTPStatusError(f"{status}", request=request,
                                     response=httpx.Response(status, request=request))

    def serve_deployment(**kwargs) -> None:
        calls.append(kwargs["name"])
        tries = calls.count(kwargs["name"])
        if tries == 1:
            raise failing(503)
        if tries == 2:  # as Prefect's runner raises, from its task groups
            raise ExceptionGroup("unhandled errors in a TaskGroup", [failing(503)])
        if tries == 3:
            raise failing(500)

    def cancel_missed_runs() -> list[str]:  # before each serve; its failure is only said
        calls.append("missed runs")
        looked = calls.count("missed runs")
        if looked == 2:
            raise failing(503)
        return ["tall-heron", "brave-otter"] if looked == 1 else []

    def served_elsewhere(lake: str) -> str | None:  # once, before the first serve
        calls.append("elsewhere")
        looked = calls.count("elsewhere")
        if looked == 2:
            raise failing(503)
        return "another runner serves it" if looked == 3 else None

    monkeypatch.setattr(served.pipeline, "serve", serve_deployment)
    monkeypatch.setattr(served, "cancel_missed_runs", cancel_missed_runs)
    monkeypatch.setattr(served, "served_elsewhere", served_elsewhere)
    monkeypatch.setattr(served, "WATCH_SECONDS", 0.01)
    with local_prefect_server(port, timeout=30, command=_fake_server(port, tmp_path / "no"),
                              give_up=lambda why: None) as url:
        monkeypatch.setenv("PREFECT_API_URL", url)
        with pytest.raises(httpx.HTTPStatusError, match="500"):
            served.serve(Settings(lake=str(tmp_path / "lake")), interval=60)
        assert calls == ["elsewhere", *["missed runs", served.DEPLOYMENT] * 3]
        # a failed lookup is said, and serve goes on; another runner's serving stops it
        monkeypatch.setattr(served.pipeline, "serve", lambda **kw: calls.append(kw["name"]))
        monkeypatch.setattr(served, "cancel_missed_runs", lambda: [])
        served.serve(Settings(lake=str(tmp_path / "lake")), interval=60)
        with pytest.raises(served.AlreadyServed, match=r"^another runner serves it$"):
            served.serve(Settings(lake=str(tmp_path / "lake")), interval=60)
        assert calls[7:] == ["elsewhere", served.DEPLOYMENT, "elsewhere"]
    out, err = capsys.readouterr()
    assert err.count(f"fusionlake serve: the Prefect server at {url} is not ready yet (503 "
                     "Service Unavailable); serving again in 0 s") == 2
    assert out.count("fusionlake serve: 2 scheduled run(s) were due while serve was not "
                     "running; cancelled all but the latest, which runs now") == 1
    assert err.count("fusionlake serve: could not look for scheduled runs missed while serve "
                     "was not running (HTTPStatusError: 503); any there start now") == 1
    assert err.count("fusionlake serve: could not look whether another runner serves "
                     f"{served.DEPLOYMENT} (HTTPStatusError: 503); serving it") == 1


def test_runs_missed_while_serve_was_down_are_cancelled_all_but_the_latest(prefect_harness):
    """serve killed (a crash, a power cut) leaves its schedule's runs made ahead of time; when it
    starts again, Prefect's runner would start every one that fell due meanwhile at once. All
    but the latest are cancelled, saying why; runs not yet due, runs a person asked for, and
    other deployments' runs are left alone."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
    from prefect.states import Scheduled

    from flows.pipeline import pipeline
    from flows.serve import cancel_missed_runs

    name = f"missed-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    assert cancel_missed_runs(f"pipeline/{name}", now) == []  # never served: nothing to do
    ids = {}
    with get_client(sync_client=True) as client:
        for which in ("served", "other"):
            ids[which] = pipeline.to_deployment(name=f"{name}-{which}", interval=60).apply()
            # the runs the schedule made an hour ahead, ten minutes ago: ten of them are due
            client._client.post(f"/deployments/{ids[which]}/schedule", json={
                "start_time": (now - timedelta(minutes=10)).isoformat(),
                "end_time": (now + timedelta(minutes=50)).isoformat(), "max_runs": 100})
        asked = client.create_flow_run_from_deployment(
            ids["served"], state=Scheduled(scheduled_time=now - timedelta(minutes=5)))

        def runs(which: str) -> dict:
            only = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[ids[which]]))
            return {r.name: r for r in client.read_flow_runs(flow_run_filter=only, limit=200)}

        before = runs("served")
        cancelled = cancel_missed_runs(f"pipeline/{name}-served", now)
        after = runs("served")
        due = sorted((r for r in before.values() if r.auto_scheduled
                      and r.expected_start_time <= now), key=lambda r: r.expected_start_time)
        assert len(due) in (10, 11) and len(before) in (61, 62), before  # the minute's edges
        assert sorted(cancelled) == sorted(r.name for r in due[:-1])
        for run in due[:-1]:
            state = after[run.name].state
            assert state.is_cancelled(), state
            assert state.message == (
                f"missed: due at {run.expected_start_time:%Y-%m-%d %H:%M:%S} while fusionlake "
                f"serve was not running; the latest missed run, {due[-1].name} (due at "
                f"{due[-1].expected_start_time:%H:%M:%S}), takes up the drops delivered "
                "meanwhile")
        untouched = set(before) - set(cancelled)
        assert {after[n].state.type for n in untouched} == {before[asked.name].state.type}
        assert asked.name in untouched and due[-1].name in untouched
        assert not any(r.state.is_cancelled() for r in runs("other").values())
        assert cancel_missed_runs(f"pipeline/{name}-served", now) == []  # once is enough


def test_a_second_serve_of_a_deployment_another_runner_serves_is_refused(prefect_harness):
    """Two `fusionlake serve` on one server (the same port on one machine, or one
    PREFECT_API_URL): the second registered the deployment again with its own lake, so the
    first's scheduled runs worked on the second's lake, and either runner started each run.
    The second now refuses while the first's runner polls, naming that runner's lake; once
    the polls stop (that serve killed), a serve takes over within two poll periods."""
    import uuid

    from prefect import get_client

    from flows.pipeline import pipeline
    from flows.serve import served_elsewhere

    name = f"twice-{uuid.uuid4().hex[:8]}"
    assert served_elsewhere(f"pipeline/{name}", every=1.0) is None  # never served
    deployment = pipeline.to_deployment(name=name, interval=60,
                                        parameters={"lake": "/srv/lake-a"}).apply()
    assert served_elsewhere(f"pipeline/{name}", every=1.0) is None  # registered, never polled
    stop = threading.Event()

    def runner() -> None:  # what a serving runner does: poll for the deployment's runs
        with get_client(sync_client=True) as client:
            while not stop.is_set():
                client.get_scheduled_flow_runs_for_deployments([deployment])
                stop.wait(0.25)

    def last_polled():
        with get_client(sync_client=True) as client:
            return client.read_deployment(deployment).last_polled

    polling = threading.Thread(target=runner, daemon=True)
    polling.start()
    try:
        deadline = time.monotonic() + 30
        while last_polled() is None:  # the server notes a poll in the background
            assert time.monotonic() < deadline, "the server never noted a poll"
            time.sleep(0.2)
        why = served_elsewhere(f"pipeline/{name}", every=1.0, lake="/srv/lake-b")
    finally:
        stop.set()
        polling.join()
    assert why is not None
    assert why.startswith(f"another runner serves pipeline/{name} on ")
    assert "it works on the lake /srv/lake-a" in why
    assert why.endswith("Stop that serve first, or serve on another --port (with another "
                        "PREFECT_HOME)")
    # its serve killed: the last poll is recent, but no other follows
    time.sleep(0.5)  # a poll the server had not noted yet
    started = time.monotonic()
    assert served_elsewhere(f"pipeline/{name}", every=1.0) is None
    assert time.monotonic() - started < 2.0 + 1.5
    assert served_elsewhere(f"pipeline/{name}", every=0.01) is None  # long since: no wait
