"""The production recipe of infra/, run for real without Docker.

What compose.yaml starts in containers, this test starts as processes on loopback, with the
settings of infra/production.env:
- PostgreSQL: Debian's server binaries, a throwaway cluster (initdb into a temp folder, password
  authentication, a free port), run as the ``postgres`` account because it refuses root;
- S3: a moto server (tests/conftest.py), standing in for MinIO;
- ``prefect server start`` on that database, ``infra/apply.sh`` (the bucket, the ``fusionlake``
  process work pool, ``prefect deploy --all`` of infra/prefect.yaml), ``prefect worker start``;
- the cron schedule of prefect.yaml live on the server: the scheduler's own runs appear, at
  quarter hours; the next one is brought forward to now and the worker executes it: it must
  complete and publish the mart on the S3 lake. No run is started by hand.

Only the addresses, paths and secrets of production.env are replaced, and the test checks that
it needs no setting production.env does not document (beyond them it sets its own PREFECT_HOME
and a scheduler that looks at new deployments every 5 s). Every process it starts is stopped at
the end, also when it fails. Skipped, saying why, only where PostgreSQL is not installed
(.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fusionlake.lake.ledger import DropState, Ledger
from fusionlake.lake.store import open_store
from fusionlake.pipeline.land import deliver
from fusionlake.pipeline.marts import open_latest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRODUCTION_ENV = ROOT / "infra" / "production.env"


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs: on PATH, or Debian's /usr/lib/postgresql."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return versions[-1].parent if versions else None


PG_BIN = postgres_bin()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PG_BIN is None, reason=(
        "PostgreSQL's server programs (initdb, postgres) are not installed; "
        "`apt-get install postgresql` (.ci/run does) to run the production recipe test")),
]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file (compose's format without quotes), comments skipped."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


class Processes:
    """Long-running processes of the test, each in its own session with its log in a file;
    :meth:`stop_all` ends each one's whole process group (the worker's flow runs included)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, **kwargs)
        self.procs[name] = proc
        return proc

    def log(self, name: str, tail: int = 4000) -> str:
        return f"--- {name}.log ---\n" + (self.logs / f"{name}.log").read_text(
            errors="replace")[-tail:]

    def stop_all(self) -> None:
        # Flow runs may be started in sessions of their own: end them by pid as well.
        started = list(self.procs.values())
        pids = {p for proc in started for p in descendants(proc.pid)}
        for proc in reversed(started):  # the worker first, the server last
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (children, theirs, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _as_postgres_account() -> tuple[list[str], int, int]:
    """How to run PostgreSQL's programs: as ourselves, or (as root, which it refuses) as the
    ``postgres`` account Debian's package creates, else ``nobody``."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"], account.pw_uid, account.pw_gid
    raise RuntimeError("running as root and there is no postgres or nobody account")


@contextlib.contextmanager
def throwaway_postgres(user: str, password: str, database: str) -> Iterator[int]:
    """A PostgreSQL cluster in a temp folder on a free loopback port, with ``database`` owned by
    ``user`` (password authentication); yields the port; stopped and deleted after."""
    run_as, uid, gid = _as_postgres_account()
    base = Path(tempfile.mkdtemp(prefix="fusionlake-pg-"))
    os.chown(base, uid, gid)
    data, pwfile = base / "data", base / "password"
    pwfile.write_text(password)
    os.chown(pwfile, uid, gid)
    subprocess.run([*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", user,
                    "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale"],
                   check=True, capture_output=True)
    port = free_port()
    log = (base / "postgres.log").open("wb")
    # fsync off: a throwaway cluster does not need to survive a power cut
    proc = subprocess.Popen(
        [*run_as, str(PG_BIN / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
         "-c", f"port={port}", "-c", f"unix_socket_directories={base}", "-c", "fsync=off"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = {**os.environ, "PGPASSWORD": password}
    try:
        deadline = time.monotonic() + 60
        while True:
            created = subprocess.run(
                [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user,
                 database], env=env, capture_output=True, text=True)
            if created.returncode == 0:
                break
            assert proc.poll() is None, (base / "postgres.log").read_text()[-3000:]
            assert time.monotonic() < deadline, created.stderr
            time.sleep(0.5)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def wait_healthy(api: str, proc: subprocess.Popen, procs: Processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with (contextlib.suppress(OSError),
              urllib.request.urlopen(f"{api}/health", timeout=2) as resp):
            if resp.status == 200:
                return
        assert proc.poll() is None, procs.log("server")
        assert time.monotonic() < deadline, procs.log("server")
        time.sleep(1)


def test_production_recipe_runs_the_pipeline_on_postgres_and_s3(tmp_path, s3_bucket):
    from fusionlake.synth import generate

    production = read_env_file(PRODUCTION_ENV)
    password = secrets.token_hex(16)
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}/api"
    lake = f"s3://{s3_bucket}/lake"

    # The agencies' delivery: one drop in the S3 lake's landing zone.
    drops = tmp_path / "drops"
    generate(300, 11, drops)  # the seed test_pipeline uses: this drop passes its suite
    delivered = sorted((drops / "th_imm" / "repatriations").iterdir())
    store = open_store(lake)
    deliver(store, "th_imm", "repatriations", delivered)
    with delivered[0].open(encoding="utf-8", newline="") as f:
        delivered_rows = sum(1 for _ in csv.DictReader(f))

    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    with throwaway_postgres(production["PREFECT_SERVER_DATABASE_USER"], password,
                            production["PREFECT_SERVER_DATABASE_NAME"]) as pg_port:
        # production.env with this host's addresses and secrets, and nothing else
        here = {
            "FUSIONLAKE_LAKE": lake,
            "FUSIONLAKE_HOME": str(ROOT),
            "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
            "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
            "PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
            "PREFECT_SERVER_DATABASE_PORT": str(pg_port),
            "PREFECT_SERVER_DATABASE_PASSWORD": password,
            "PREFECT_API_URL": api,
            "PREFECT_UI_API_URL": api,  # the browser is on this host too
        }
        assert set(here) <= set(production), set(here) - set(production)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PREFECT_", "FUSIONLAKE_"))}
        env.update(production)
        env.update(here)
        # Where this test's Prefect keeps its files, this checkout's code and programs first,
        # and a scheduler that looks at new deployments every 5 s instead of every 60 s.
        env.update(
            PREFECT_HOME=str(tmp_path / "prefect-home"),
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        )
        try:
            server = procs.start("server", [str(BIN / "prefect"), "server", "start",
                                            "--host", "127.0.0.1", "--port", str(api_port)],
                                 env=env, cwd=tmp_path)
            wait_healthy(api, server, procs, timeout=150)
            # the UI is told to call the API at PREFECT_UI_API_URL
            ui = get_json(f"http://127.0.0.1:{api_port}/ui-settings")
            assert ui["api_url"] == api

            applied = subprocess.run(["sh", str(ROOT / "infra" / "apply.sh")], env=env,
                                     cwd=tmp_path, capture_output=True, text=True, timeout=300)
            assert applied.returncode == 0, applied.stdout + applied.stderr
            deployment = get_json(f"{api}/deployments/name/pipeline/fusionlake-pipeline")
            assert deployment["work_pool_name"] == "fusionlake"
            assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["*/15 * * * *"]
            assert deployment["parameters"] == {"lease_wait": 60, "skip_if_busy": True}

            # Prefect's state is in PostgreSQL, not in a SQLite file of PREFECT_HOME.
            assert _postgres_names(pg_port, password, production) == ["fusionlake-pipeline"]
            assert not list((tmp_path / "prefect-home").glob("*.db"))

            # The worker starts elsewhere: flow runs start in FUSIONLAKE_HOME (the pull step).
            worker_dir = tmp_path / "worker"
            worker_dir.mkdir()
            procs.start("worker", [str(BIN / "prefect"), "worker", "start",
                                   "--pool", "fusionlake", "--type", "process"],
                        env=env, cwd=worker_dir)

            # The cron of prefect.yaml is live: the scheduler puts the next quarter hours' runs
            # on the server by itself.
            runs_filter = {"deployments": {"id": {"any_": [deployment["id"]]}}}
            deadline = time.monotonic() + 60
            while True:
                scheduled = [r for r in get_json(f"{api}/flow_runs/filter", runs_filter)
                             if r["auto_scheduled"]]
                if scheduled or time.monotonic() > deadline:
                    break
                time.sleep(2)
            assert scheduled, procs.log("server")
            assert {r["expected_start_time"][14:19] for r in scheduled} <= {
                "00:00", "15:00", "30:00", "45:00"}
            # (a quarter hour may fall in these seconds: the worker has then taken its run)
            assert all(r["state_type"] in ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED")
                       for r in scheduled), scheduled

            # The next of them is brought forward to now, so that the test need not wait for
            # the quarter hour: the worker must pick up and run a run the scheduler made, as it
            # does at every quarter hour in production. No run is started by hand.
            run = min(scheduled, key=lambda r: r["expected_start_time"])
            if run["state_type"] == "SCHEDULED":
                now = datetime.now(UTC).isoformat()
                moved = get_json(f"{api}/flow_runs/{run['id']}/set_state", {
                    "state": {"type": "SCHEDULED", "name": "Scheduled",
                              "state_details": {"scheduled_time": now}},
                    "force": True})
                assert moved["status"] in ("ACCEPT", "REJECT"), moved  # REJECT: taken meanwhile
            deadline = time.monotonic() + 240
            while run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                assert time.monotonic() < deadline, (run["state_type"], procs.log("worker"))
                time.sleep(2)
                run = get_json(f"{api}/flow_runs/{run['id']}")
            assert run["state_type"] == "COMPLETED", procs.log("worker", 8000)
            assert run["auto_scheduled"] and run["work_queue_name"] == "default"
            by_hand = [r for r in get_json(f"{api}/flow_runs/filter", runs_filter)
                       if not r["auto_scheduled"]]
            assert by_hand == []
        finally:
            procs.stop_all()

    # The run published the marts on the S3 lake.
    assert store.exists("marts/all/LATEST")
    con = open_latest(store, "all")
    try:
        in_mart = con.execute("select agency, feed from drop_ledger").fetchall()
        records = con.execute("select count(*) from entity_record").fetchall()[0][0]
        quarantined = con.execute("select count(drop_id) from quarantine").fetchall()[0][0]
    finally:
        con.close()
    assert in_mart == [("th_imm", "repatriations")]
    assert [(e.agency, e.feed, e.state) for e in Ledger(store).entries()] == [
        ("th_imm", "repatriations", DropState.PUBLISHED)]
    assert (records, quarantined) == (delivered_rows, 0)  # every delivered row, none rejected
    assert store.exists("reports/runs/LATEST.md")


def _postgres_names(port: int, password: str, production: dict[str, str]) -> list[str]:
    """The deployments in Prefect's PostgreSQL database, read with asyncpg (Prefect's driver)."""
    import asyncpg

    async def names() -> list[str]:
        con = await asyncpg.connect(host="127.0.0.1", port=port, password=password,
                                    user=production["PREFECT_SERVER_DATABASE_USER"],
                                    database=production["PREFECT_SERVER_DATABASE_NAME"])
        try:
            return [r["name"] for r in await con.fetch("select name from deployment")]
        finally:
            await con.close()

    return asyncio.run(names())
