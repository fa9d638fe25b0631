"""Every setting of fusionlake in one place, read at the edge (command line or environment).

Library code receives a :class:`Settings`; nothing below the command line reads the
environment for its own configuration.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

#: Repository root (feeds/, sql/, expectations/ live here in a checkout or editable install).
PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_LAKE = "./lakehouse"

#: Where a run's per-drop work (validate+stage, Data Docs) executes: ``local`` is this host
#: (threads, or worker processes for big drops); ``dask`` a Dask cluster, a LocalCluster of
#: ``drop_workers`` processes or the scheduler at ``FUSIONLAKE_DASK_ADDRESS``.
TASK_RUNNERS = ("local", "dask")

#: The engine Splink trains and scores on in a full resolution (ResolveSettings.backend):
#: DuckDB in the run's process, or Spark (the active session, else a local one).
RESOLVE_BACKENDS = ("duckdb", "spark")

# Agencies run this on closed networks: nothing may phone home, and Prefect's ephemeral server
# needs more than its default 20 s to start the first time on a fresh machine (migrations).
OFFLINE_ENVIRONMENT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PYTHAINLP_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
}


class SettingsError(ValueError):
    """Settings that cannot work together; the message says which and what to change."""


def u_max_pairs_default() -> int:
    """Pairs Splink samples to estimate the u probabilities when a full run trains the model
    (``FUSIONLAKE_U_MAX_PAIRS``, default 2,000,000: ResolveSettings.u_max_pairs).

    More pairs give more precise estimates and take longer: 2M take about 3.9 s of a training
    whatever the lake's size, 200,000 about 1 s. A changed value applies from the next
    training (a full run); the model kept until then stays. Read by the field's default, not
    only by :meth:`Settings.from_env`, so that every Settings made in a process where it is set
    trains on that sample: the test suite trains its many small lakes on 200,000
    (tests/conftest.py), where the default's 2M made a third of its time.
    """
    text = os.environ.get("FUSIONLAKE_U_MAX_PAIRS") or "2000000"
    try:
        value = int(float(text))
    except (ValueError, OverflowError):  # not a number; inf
        value = 0
    if value < 1:
        raise SettingsError(f"FUSIONLAKE_U_MAX_PAIRS must be a number of pairs above 0, "
                            f"not {text!r}")
    return value


def is_local_path(lake: str) -> bool:
    """Whether a lake URI is a folder of this host (a path or ``file://``), not object storage."""
    return "://" not in lake or lake.startswith("file://")


def configure_offline() -> None:
    """Set the no-telemetry, no-download environment unless the user set it otherwise."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class Settings:
    """Where the lake is and where feed definitions come from."""

    lake: str = DEFAULT_LAKE
    feeds_path: list[str] = field(default_factory=list)
    mart_retention: int = 5  # published mart versions kept per audience
    # Resolution versions kept (the current one always is): more than one, so that a run still
    # reading the version that was current when it started finds it after a new one is written.
    resolution_retention: int = 3
    lease_seconds: int = 900  # a crashed run stops blocking others after this long
    # A drop whose validate+stage takes longer has its process ended and is held (0: no limit):
    # a reader stuck on a file would otherwise keep the run, and the lake's lease, for good.
    # All the drops of 1M generated people take 25 s together (bench/RESULTS.md).
    drop_seconds: int = 1800
    drop_workers: int = os.cpu_count() or 1  # processes for drops
    # A run's drops go to worker processes when together they are at least this large, else to
    # threads: a worker takes seconds to start (imports), which small drops do not earn back.
    drop_process_min_bytes: int = 32 * 2**20
    # Incremental resolution (fusionlake/pipeline/resolve.py): a scheduled run over a small drop
    # scores the new records with the kept model instead of resolving everything again. A full
    # resolution (retraining the model) every this many runs of an audience: 96 is a day of
    # 15-minute runs.
    full_every: int = 96
    # New records above this share of the audience's records: a full resolution instead.
    incremental_max_share: float = 0.1
    # `fusionlake run --full`: resolve everything again and retrain, and rebuild every mart.
    full: bool = False
    # Visibility groups resolved and their marts updated side by side when the work is
    # incremental (a full resolution or mart build runs alone: fusionlake.pipeline.slots). More
    # than two rarely pays: each holds the lake's ids and the previous mart's copy.
    group_workers: int = min(2, os.cpu_count() or 1)
    task_runner: str = "local"  # TASK_RUNNERS: where per-drop work runs
    # A running Dask scheduler (``tcp://host:8786``) whose workers take the per-drop work; none:
    # the run starts a LocalCluster of drop_workers processes on this host and stops it after.
    dask_address: str | None = None
    # RESOLVE_BACKENDS: the engine Splink trains and scores on in a full resolution
    # (transforms.resolution.backends; Spark needs the `spark` extra and a Java runtime)
    resolve_backend: str = "duckdb"
    # Pairs sampled to estimate u when the model is trained (u_max_pairs_default)
    u_max_pairs: int = field(default_factory=u_max_pairs_default)

    def check_resolve_backend(self) -> None:
        """Raise :class:`SettingsError` if full resolutions cannot run on the engine named."""
        if self.resolve_backend not in RESOLVE_BACKENDS:
            raise SettingsError(f"FUSIONLAKE_RESOLVE_BACKEND={self.resolve_backend!r} is not "
                                f"one of {', '.join(RESOLVE_BACKENDS)}")
        if self.resolve_backend == "spark":
            if importlib.util.find_spec("pyspark") is None:
                raise SettingsError("FUSIONLAKE_RESOLVE_BACKEND=spark needs PySpark: install "
                                    "fusionlake with its `spark` extra "
                                    "(pip install 'fusionlake[spark]')")
            if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
                raise SettingsError("FUSIONLAKE_RESOLVE_BACKEND=spark needs a Java runtime "
                                    "(java on PATH or JAVA_HOME; Debian: "
                                    "openjdk-17-jre-headless)")

    def check_task_runner(self) -> None:
        """Raise :class:`SettingsError` if per-drop work cannot run where the settings say.

        A Dask scheduler at an address has workers on other machines (or in other containers):
        they cannot see this host's lake folder, and a drop they staged into their own would be
        lost to the run. Such a cluster needs a lake on object storage (``s3://``).
        """
        if self.task_runner not in TASK_RUNNERS:
            raise SettingsError(f"FUSIONLAKE_TASK_RUNNER={self.task_runner!r} is not one of "
                                f"{', '.join(TASK_RUNNERS)}")
        if self.task_runner == "dask" and importlib.util.find_spec("prefect_dask") is None:
            raise SettingsError("FUSIONLAKE_TASK_RUNNER=dask needs prefect-dask: install "
                                "fusionlake with its `dask` extra (pip install 'fusionlake[dask]')")
        if self.task_runner == "dask" and self.dask_address and is_local_path(self.lake):
            raise SettingsError(
                f"the Dask scheduler at {self.dask_address} (FUSIONLAKE_DASK_ADDRESS) has "
                f"workers that cannot read this host's lake folder {self.lake}: give an "
                "s3:// lake, or unset FUSIONLAKE_DASK_ADDRESS for a cluster on this host")

    @classmethod
    def from_env(cls, lake: str | None = None, feeds_path: list[str] | None = None) -> Settings:
        """Settings from ``--lake`` and feed folders (if given) and the ``FUSIONLAKE_*``
        variables."""
        feeds = (feeds_path if feeds_path is not None else
                 [p for p in os.environ.get("FUSIONLAKE_FEEDS_PATH", "").split(":") if p])
        group_workers = int(os.environ.get("FUSIONLAKE_GROUP_WORKERS") or cls.group_workers)
        if group_workers < 1:
            raise SettingsError(f"FUSIONLAKE_GROUP_WORKERS must be at least 1, not {group_workers}")
        return cls(
            lake=lake or os.environ.get("FUSIONLAKE_LAKE") or DEFAULT_LAKE,
            feeds_path=feeds,
            mart_retention=int(os.environ.get("FUSIONLAKE_MART_RETENTION", "5")),
            resolution_retention=int(os.environ.get("FUSIONLAKE_RESOLUTION_RETENTION", "3")),
            lease_seconds=int(os.environ.get("FUSIONLAKE_LEASE_SECONDS", "900")),
            drop_seconds=int(os.environ.get("FUSIONLAKE_DROP_SECONDS") or cls.drop_seconds),
            drop_workers=int(os.environ.get("FUSIONLAKE_DROP_WORKERS") or cls.drop_workers),
            drop_process_min_bytes=int(os.environ.get("FUSIONLAKE_DROP_PROCESS_MIN_BYTES")
                                       or cls.drop_process_min_bytes),
            full_every=int(os.environ.get("FUSIONLAKE_FULL_EVERY") or cls.full_every),
            group_workers=group_workers,
            incremental_max_share=float(os.environ.get("FUSIONLAKE_INCREMENTAL_MAX_SHARE")
                                        or cls.incremental_max_share),
            # an address alone says dask: nobody names a scheduler to leave it unused
            task_runner=(os.environ.get("FUSIONLAKE_TASK_RUNNER")
                         or ("dask" if os.environ.get("FUSIONLAKE_DASK_ADDRESS") else "local")
                         ).strip().lower(),
            dask_address=os.environ.get("FUSIONLAKE_DASK_ADDRESS") or None,
            resolve_backend=(os.environ.get("FUSIONLAKE_RESOLVE_BACKEND")
                             or cls.resolve_backend).strip().lower(),
        )


def memory_share(fraction: float, floor_mib: int = 256) -> str:
    """A DuckDB memory limit of ``fraction`` of this machine's memory, e.g. ``"9830MiB"``.

    DuckDB's default (80%) assumes it is alone; in the pipeline it shares the process with the
    Polars frames it was handed, and past its limit it spills to disk instead of being killed.
    """
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(floor_mib, int(total * fraction) // 2**20)}MiB"
