"""An S3 endpoint for the benches: moto on loopback, its requests and bytes counted.

The benches that read or run a lake on S3 (bench_s3_reads.py, bench_s3_run.py) start a moto
server in a process of its own, so that its Python does not share the bench's interpreter, and
put the tests' fault proxy (tests/faultproxy.py, injecting nothing) in front of it to count the
requests and bytes that reach it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fault proxy

#: Credentials moto accepts; a child process that reaches the endpoint needs them too.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def counted_endpoint(bucket: str) -> Iterator[tuple[object, dict[str, str]]]:
    """A moto server with ``bucket`` in it, behind a counting proxy; yields the proxy (its
    ``counts["requests"]`` and ``counts["bytes-relayed"]``) and the environment a child process
    needs to reach it, which this process is given as well."""
    import boto3
    from faultproxy import FaultProxy

    port = _free_port()
    env = {**os.environ, **CREDENTIALS}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        with FaultProxy(f"http://127.0.0.1:{port}", rate=0.0) as proxy:
            env["AWS_ENDPOINT_URL"] = proxy.url
            os.environ.update(env)
            boto3.client("s3").create_bucket(Bucket=bucket)
            yield proxy, env
    finally:
        server.terminate()
        server.wait()
