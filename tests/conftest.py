"""Shared fixtures: the two store backends every storage test runs on.

The S3 backend is a real S3 protocol endpoint: moto's server mode on 127.0.0.1, started once per
test session; boto3 talks HTTP to it exactly as it would to MinIO or AWS. Nothing is patched.
"""

from __future__ import annotations

import os
import socket
import sys
import unicodedata
import uuid
from pathlib import Path

import pytest

from fusionlake.lake.settings import configure_offline

# Test modules share fixtures' helpers by module name (``from test_severity import ...``): pytest
# puts a test file's folder on sys.path only once it collects that folder, so both test folders
# are put there from the start, whatever order the files are collected in.
for _folder in (Path(__file__).parent, Path(__file__).parent / "transforms"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

configure_offline()

# Every full run of the suite's pipeline tests trains Splink on its small lake: the production
# default of 2M pairs for u took about 3.9 s of each training whatever the lake's size, a third
# of the suite's time; 200,000 take about 1 s and resolve the generated people as precisely
# (fusionlake.lake.settings.u_max_pairs_default). Set here, before any Settings is made, so that
# the runs the suite starts in other processes (CLI, flows, benches) train on it too. The
# resolver's own tests (tests/transforms) use its defaults.
os.environ.setdefault("FUSIONLAKE_U_MAX_PAIRS", "200000")


# Files whose module fixtures are costly (a Spark session, a lake after a 2,000-people run ...):
# each runs on one xdist worker, so those fixtures are made once, not once per worker that draws
# one of its tests. xdist's own ``--dist loadgroup`` would do it by marks, but on pytest 9 it
# silently groups nothing (pytest-dev/pytest-xdist#1386).
ONE_WORKER_FILES = frozenset({
    "tests/test_spark.py", "tests/test_incremental_runs.py", "tests/test_incremental_hostile.py",
    "tests/test_leaks.py", "tests/test_dask.py", "tests/test_marts_incremental.py",
    "tests/test_mart_clients.py", "tests/transforms/test_incremental.py",
})


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its file for ONE_WORKER_FILES, else itself."""
    file = nodeid.split("::", 1)[0]
    return file if file in ONE_WORKER_FILES else nodeid


def pytest_collection_modifyitems(config, items):
    """The longest work first: the files of ONE_WORKER_FILES, then the other tests marked
    slow, then the rest, each in its collection order. xdist hands work out in this order, and
    a test of a minute or two drawn last would end the suite alone on one core."""
    def rank(item) -> int:
        if item.nodeid.split("::", 1)[0] in ONE_WORKER_FILES:
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)


def pytest_xdist_make_scheduler(config, log):
    """xdist's default (``load``) scheduling, except that each file of ONE_WORKER_FILES is one
    unit of work (:func:`work_unit`). Units go out in collection order (see
    :func:`pytest_collection_modifyitems`; not xdist's largest-first, which counts tests, not
    their seconds), one at a time to whichever worker is free (xdist's LoadScopeScheduling)."""
    if config.getoption("dist") != "load":
        return None
    config.option.loadscopereorder = False
    return one_worker_scheduling()(config, log)


def one_worker_scheduling() -> type:
    """The scheduler class of :func:`pytest_xdist_make_scheduler` (made when asked: xdist is
    imported only where it runs)."""
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

        def remove_node(self, node) -> str | None:
            """As LoadScopeScheduling's, except that the test a crashed worker was running
            counts as run. LoadScopeScheduling puts it back with the rest of its unit, so a
            test that ends its worker (a crash in native code, a JVM taking its process down)
            ran again on every replacement worker, up to ``--max-worker-restart`` times;
            xdist's default scheduling reports it failed once and goes on, and so does this."""
            workload = self.assigned_work.pop(node)
            if not self._pending_of(workload):
                return None
            scope, crashed = next((scope, nodeid) for scope, unit in workload.items()
                                  for nodeid, done in unit.items() if not done)
            workload[scope][crashed] = True
            self.workqueue.update((scope, unit) for scope, unit in workload.items()
                                  if not all(unit.values()))
            for other in self.assigned_work:
                self._reschedule(other)
            return crashed

    return OneWorkerScheduling


def deliver_all(store, drops_dir: Path, only: set[str] | None = None) -> None:
    """Deliver every generated feed under ``drops_dir`` (``agency/feed/`` folders) to the lake,
    or only the ``agency/feed`` names in ``only``."""
    from fusionlake.pipeline.land import deliver

    for feed_dir in sorted(p for p in drops_dir.glob("*/*") if p.is_dir()):
        agency, feed = feed_dir.parent.name, feed_dir.name
        if only is None or f"{agency}/{feed}" in only:
            deliver(store, agency, feed, sorted(feed_dir.iterdir()))


def cp1258(text: str) -> bytes:
    """Vietnamese as Windows writes it in CP1258: a letter with a tone (ễ) as the precomposed
    letter the code page has (ê), then the tone as a combining mark (Python's codec does not
    split them itself)."""
    tones = "\u0300\u0301\u0303\u0309\u0323"
    out = bytearray()
    for ch in unicodedata.normalize("NFC", text):
        try:
            out += ch.encode("cp1258")
        except UnicodeEncodeError:
            parts = unicodedata.normalize("NFD", ch)
            rest = "".join(m for m in parts[1:] if m not in tones)
            out += unicodedata.normalize("NFC", parts[0] + rest).encode("cp1258")
            out += "".join(m for m in parts[1:] if m in tones).encode("cp1258")
    return bytes(out)


def assert_held_for_overrun(store, summary, seconds: int, how: str) -> None:
    """After a run over th_imm's two drops whose detentions reader never ends: that drop is
    held for overrunning ``FUSIONLAKE_DROP_SECONDS`` (``how``: which worker was ended), the
    other is published, the run's problems say so, and no staging mark is left."""
    from fusionlake.lake.ledger import Ledger

    states = {e.file_name: e for e in Ledger(store).entries()}
    held = states.pop("detentions.xlsx")
    assert held.state == "held", held
    assert held.reason.startswith(
        f"staging it took longer than {seconds} s (FUSIONLAKE_DROP_SECONDS) and its worker "
        f"process was ended, {how}; a reader stuck on the file, most likely"), held.reason
    assert [e.state for e in states.values()] == ["published"]
    assert summary.problems == [f"drop {held.drop_id} (th_imm/detentions/detentions.xlsx) "
                                f"held: {held.reason}"]
    assert store.list("ledger/attempts/") == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _user_cache_in_the_session_temp(tmp_path_factory):
    """``XDG_CACHE_HOME`` in the session's temp folder, for this process and the CLI processes
    the tests start: a mart read from an S3 lake is cached under it (marts.current_file), and
    the suite makes hundreds of S3 lakes, whose marts would otherwise pile up in ~/.cache."""
    with pytest.MonkeyPatch.context() as env:  # for the session, undone at its end
        env.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _spark_jvms_for_small_data(tmp_path_factory):
    """Spark's JVMs in the tests (in-process sessions, and CLI runs with the Spark backend)
    compile with the quick JIT only and collect with one thread. They live a minute over a few
    thousand records, beside other xdist workers on two cores: C2's compilations and the parallel
    collector's threads took CPU the tests needed (tests/test_spark.py with -n 3: 220 s before,
    157 s after). The product leaves the JVM alone: long runs on real data want C2. A Spark
    configuration of the machine's own (``SPARK_CONF_DIR``, ``PYSPARK_SUBMIT_ARGS``) is left be."""
    if os.environ.get("SPARK_CONF_DIR") or os.environ.get("PYSPARK_SUBMIT_ARGS"):
        yield
        return
    folder = tmp_path_factory.mktemp("spark-conf")
    (folder / "spark-defaults.conf").write_text(
        "spark.driver.extraJavaOptions -XX:TieredStopAtLevel=1 -XX:+UseSerialGC\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPARK_CONF_DIR", str(folder))
        yield


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback, with the standard AWS variables pointing at it."""
    import logging

    from moto.server import ThreadedMotoServer

    # The server's access log (werkzeug, a line per request, from its threads) is not the code
    # under test's: a handler an in-process CLI call left on the root logger, writing to an
    # earlier test's closed capture, put "--- Logging error ---" into a later test's stderr.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in (
        "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "fusionlake-test",
        "AWS_SECRET_ACCESS_KEY": "fusionlake-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh, empty bucket on the moto server."""
    import boto3

    name = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def lake_uri(request, tmp_path):
    """A lake URI on each backend: a temp folder, and a prefix in a fresh S3 bucket."""
    if request.param == "local":
        return str(tmp_path / "lakehouse")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/lake"


@pytest.fixture
def store(lake_uri):
    """An ObjectStore on each backend (tests using it run twice)."""
    from fusionlake.lake.store import open_store

    return open_store(lake_uri)


_SHARED_PREFECT = "FUSIONLAKE_TEST_SHARED_PREFECT"


def pytest_configure(config):
    """In the controller of an xdist run, one temporary Prefect server for every worker: its URL
    is in the environment the workers start with (Prefect reads it at import), so flows run in
    them, and CLI runs they start, report to it. A server per worker cost each worker about 25 s
    of start-up and kept three servers' loops busy on two cores."""
    if getattr(config, "workerinput", None) is not None or not getattr(
            config.option, "numprocesses", None):
        return
    import contextlib

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    stack = contextlib.ExitStack()
    stack.enter_context(prefect_test_harness(server_startup_timeout=180))
    config.add_cleanup(stack.close)
    os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
    os.environ[_SHARED_PREFECT] = "1"


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server (SQLite) for the whole session: flows run as real flows. Under
    xdist it is the one the controller started (:func:`pytest_configure`)."""
    if os.environ.get(_SHARED_PREFECT):
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def fault_proxy(s3_endpoint):
    """A fault proxy (tests/faultproxy.py) in front of the moto server, injecting nothing until
    a test sets its ``rate`` or ``script``; point a client at ``fault_proxy.url``."""
    from faultproxy import FaultProxy

    with FaultProxy(s3_endpoint, rate=0.0, seed=19) as proxy:
        yield proxy


def s3_client(endpoint: str):
    """A boto3 S3 client for ``endpoint`` configured as the lake's own (S3Store's retries)."""
    import boto3
    from botocore.config import Config

    from fusionlake.lake.store import S3Store

    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=Config(
        connect_timeout=5, read_timeout=60,
        retries={"max_attempts": S3Store.BOTO_ATTEMPTS, "mode": "standard"}))
