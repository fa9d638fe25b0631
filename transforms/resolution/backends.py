"""The engines Splink scores on: DuckDB in this process (the default) or Spark.

``score_pairs`` (splink.py) trains and predicts through Splink's own API, which is the same on
every backend; what differs is how a frame gets in and out, and the dialect of the SQL
(dialect.py). A :class:`Backend` holds those few differences:

- ``register``: a Polars frame as a table Splink reads;
- ``frame``: a Splink table (filtered, some columns) back as a Polars frame;
- ``write_parquet``: a Splink table (filtered, some columns) to Parquet on local disk, for
  DuckDB to read later (``Scored.against``);
- ``render``: a settings dictionary or model with its SQL in the engine's dialect.

Spark: the session is the one already active in the process (a deployment that runs on a
cluster starts it, with Splink's jar: ``splink.backends.spark.similarity_jar_location()``), or
else one started here from Spark's own configuration (``spark-defaults.conf``,
``PYSPARK_SUBMIT_ARGS``; ``local[*]`` when nothing says otherwise) with Splink's jar added.
Splink breaks Spark's lineage by writing each intermediate table as Parquet to the session's
checkpoint directory; it is set here to the scoring call's own folder, unless the session has
one (on a cluster it must be storage every executor reaches).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from fusionlake.lake.settings import memory_share
from transforms.resolution.dialect import BACKENDS, rendered


class Backend:
    """One engine for one scoring call (see module docstring)."""

    name = "duckdb"

    def __init__(self, db_api: Any, con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.db_api = db_api
        self.con = con

    def render(self, model: dict[str, Any]) -> dict[str, Any]:
        return rendered(model, self.name)

    def register(self, frame: pl.DataFrame, table_name: str) -> Any:
        return self.db_api.register(frame.to_arrow(compat_level=pl.CompatLevel.newest()),
                                    table_name=table_name)

    def frame(self, table: Any, columns: list[str] | None = None,
              where: str | None = None) -> pl.DataFrame:
        """``table`` (filtered by ``where``; ``columns`` or all) as a Polars frame."""
        rel = table.as_duckdbpyrelation()
        if where:
            rel = rel.filter(where)
        if columns:
            rel = rel.select(*[f'"{c}"' for c in columns])
        return pl.from_arrow(rel.to_arrow_table())

    def columns(self, table: Any) -> list[str]:
        return list(table.as_duckdbpyrelation().columns)

    def write_parquet(self, table: Any, columns: list[str], where: str, path: Path) -> None:
        cols = ", ".join(f'"{c}"' for c in columns)
        self.con.execute(
            f"COPY (SELECT {cols} FROM {table.physical_name} WHERE {where}) "
            f"TO '{path}' (FORMAT parquet)")


# checkpoint folders set here (each scoring call's own); one set by the deployment is kept
_OWN_CHECKPOINTS: set[str] = set()


class SparkBackend(Backend):
    name = "spark"

    def __init__(self, workdir: Path, memory_fraction: float) -> None:
        from splink import SparkAPI

        mib = memory_share(memory_fraction).removesuffix("MiB")
        self.spark = spark_session(f"{mib}m")  # Spark's way of writing MiB
        context = self.spark.sparkContext
        if context.getCheckpointDir() in (None, *_OWN_CHECKPOINTS):
            context.setCheckpointDir(str(workdir / "spark-checkpoints"))
            _OWN_CHECKPOINTS.add(context.getCheckpointDir())
        super().__init__(SparkAPI(spark_session=self.spark))

    def register(self, frame: pl.DataFrame, table_name: str) -> Any:
        # Spark reads no string views: the oldest Arrow layout (large strings)
        table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
        return self.db_api.register(self.spark.createDataFrame(table), table_name=table_name)

    def frame(self, table: Any, columns: list[str] | None = None,
              where: str | None = None) -> pl.DataFrame:
        df = table.as_spark_dataframe()
        if where:
            df = df.filter(where)
        return pl.from_arrow((df.select(*columns) if columns else df).toArrow())

    def columns(self, table: Any) -> list[str]:
        return list(table.as_spark_dataframe().columns)

    def write_parquet(self, table: Any, columns: list[str], where: str, path: Path) -> None:
        # a folder of part files: DuckDB reads it as f"{path}/*.parquet"
        table.as_spark_dataframe().filter(where).select(*columns).write.parquet(str(path))


def spark_session(driver_memory: str = "1g") -> Any:
    """The active Spark session, or one started with Splink's similarity jar.

    A session started here runs its executors in the driver's JVM (local mode), so
    ``driver_memory`` is all the memory Spark has: at 20,000 generated people Spark's default
    of 1g ran out of heap while scoring. Spark's own configuration wins: a master or driver
    memory in ``spark-defaults.conf`` (``SPARK_CONF_DIR``) or ``PYSPARK_SUBMIT_ARGS`` is used
    as it is.
    """
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    warehouse = tempfile.mkdtemp(prefix="fusionlake-spark-warehouse-")
    atexit.register(shutil.rmtree, warehouse, ignore_errors=True)
    builder = (SparkSession.builder.appName("fusionlake-resolve")
               .config("spark.jars", similarity_jar_location())
               .config("spark.ui.enabled", "false")
               # Splink asks for the current database, which makes the warehouse folder: not
               # in the working directory
               .config("spark.sql.warehouse.dir", warehouse))
    said = _spark_configuration()
    if "spark.driver.memory" not in said and "--driver-memory" not in said:
        builder = builder.config("spark.driver.memory", driver_memory)
    spark = builder.getOrCreate()
    # Splink runs a hundred small queries; Spark's default of 200 shuffle partitions is for a
    # cluster (on 2 cores, resolving 700 generated people took 83 s with it, 65 s with 4)
    if (spark.conf.get("spark.master").startswith("local")
            and spark.conf.get("spark.sql.shuffle.partitions") == "200"):
        spark.conf.set("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 1)))
    return spark


def _spark_configuration() -> str:
    """What Spark's launcher will read besides this code: ``PYSPARK_SUBMIT_ARGS`` and the
    ``spark-defaults.conf`` of ``SPARK_CONF_DIR`` (or ``SPARK_HOME/conf``)."""
    folder = os.environ.get("SPARK_CONF_DIR") or os.path.join(os.environ.get("SPARK_HOME", ""),
                                                              "conf")
    defaults = Path(folder) / "spark-defaults.conf"
    text = defaults.read_text(errors="replace") if defaults.is_file() else ""
    return f"{os.environ.get('PYSPARK_SUBMIT_ARGS', '')}\n{text}"


def backend(name: str, con: duckdb.DuckDBPyConnection, tables: Path,
            spark_memory_fraction: float) -> Backend:
    """The engine ``name`` (``ResolveSettings.backend``). DuckDB runs in ``con`` and
    materialises Splink's tables as Parquet under ``tables``; Spark checkpoints there, and a
    session started here gets ``spark_memory_fraction`` of the machine's memory."""
    if name == "duckdb":
        from splink import DuckDBAPI

        return Backend(DuckDBAPI(connection=con, materialisation="parquet",
                                 materialisation_dir=tables), con)
    if name == "spark":
        return SparkBackend(tables, spark_memory_fraction)
    raise ValueError(f"unknown resolution backend {name!r}: one of {', '.join(BACKENDS)}")
