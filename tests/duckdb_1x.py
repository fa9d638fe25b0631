"""A separate Python environment with the newest DuckDB 1.x release: the client analysts install.

The marts are written by the project's DuckDB (2.x) in a storage format that 1.x clients read
(fusionlake.pipeline.marts.STORAGE_VERSION). Only a real 1.x client proves that, and it cannot
live in the project's environment beside 2.x, so this module builds a venv of its own with
``python3 -m venv`` and ``pip install 'duckdb>=1,<2'`` from PyPI.

The venv is cached (``$FUSIONLAKE_TEST_CACHE`` or ``~/.cache/fusionlake-tests``) so that reruns
take no network and no time; it is rebuilt when it is older than a week, so "newest 1.x" stays
true. Used by tests/test_mart_clients.py and bench/bench_mart_format.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: The client release line the marts must open with, and pytz, which the 1.x Python client needs
#: to return TIMESTAMP WITH TIME ZONE values (mart_info.built_at, drop_ledger.received_at, ...).
REQUIREMENTS = ("duckdb>=1,<2", "pytz")
MAX_AGE_SECONDS = 7 * 24 * 3600


def cache_root() -> Path:
    base = os.environ.get("FUSIONLAKE_TEST_CACHE") or str(Path.home() / ".cache"
                                                          / "fusionlake-tests")
    return Path(base)


def client_python() -> tuple[Path, str]:
    """The python of the cached 1.x venv (built when missing or stale) and its duckdb version.

    Test workers (pytest-xdist) may ask at the same time: one builds, the others wait for it."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / "duckdb-1x.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _client_python()


def _client_python() -> tuple[Path, str]:
    venv = cache_root() / "duckdb-1x"
    python = venv / "bin" / "python"
    stamp = venv / "fusionlake-client.json"
    if stamp.exists() and python.exists():
        info = json.loads(stamp.read_text())
        if time.time() - info["installed_at"] < MAX_AGE_SECONDS:
            return python, info["version"]
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", *REQUIREMENTS], check=True)
    version = subprocess.run([str(python), "-c", "import duckdb; print(duckdb.__version__)"],
                             check=True, capture_output=True, text=True).stdout.strip()
    stamp.write_text(json.dumps({"version": version, "installed_at": time.time()}))
    return python, version


def run(code: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run Python ``code`` with the 1.x client (arguments in sys.argv[1:])."""
    python, _ = client_python()
    return subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout)
