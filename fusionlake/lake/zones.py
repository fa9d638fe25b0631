"""How frames go in and out of the lake's zones (the keys themselves: fusionlake.lake.layout).

Frames travel as Parquet bytes, which both backends store the same way. Large tables (staged,
resolution) are scanned lazily in place (:func:`scan_objects`): the files of a local lake, the
large objects of an S3 lake through Polars' own S3 reader, which fetches the footer and then
only the byte ranges of the columns and row groups a query reads. The small objects of an S3
lake are fetched whole, once, side by side: read in place, every query would fetch them again.
DuckDB, which has no S3 reader here, gets local copies (:func:`local_files`).
"""

from __future__ import annotations

import io
import json
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from fusionlake.lake import layout, schema, versions
from fusionlake.lake.layout import DECISIONS, QUARANTINE, VALIDATION, staged_key
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import (
    LakeError,
    LocalStore,
    NotFound,
    ObjectInfo,
    ObjectStore,
    TransientLakeError,
    is_transient,
    redact,
    side_by_side,
)

#: How the lake's Parquet is compressed. zstd's lowest level: at a million people it writes the
#: resolution tables a sixth faster than its default (3) for files within 1% of the size.
COMPRESSION = {"compression": "zstd", "compression_level": 1, "statistics": True}


def to_parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, **COMPRESSION)
    return buf.getvalue()


def from_parquet(data: bytes, columns: list[str] | None = None) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data), columns=columns)


def write_frame(store: ObjectStore, key: str, frame: pl.DataFrame | pl.LazyFrame) -> int:
    """Store a frame as Parquet; a lazy one is streamed to a local file first, never held.
    Returns the rows written (of a lazy frame, from the file's footer: no second pass)."""
    if isinstance(frame, pl.DataFrame):
        store.put(key, to_parquet(frame))
        return frame.height
    with tempfile.TemporaryDirectory(prefix="fusionlake-sink-") as tmp:
        path = Path(tmp) / "frame.parquet"
        frame.sink_parquet(path, **COMPRESSION)
        rows = pq.read_metadata(path).num_rows
        store.move_file(key, path)
    return rows


def read_frame(store: ObjectStore, key: str, columns: list[str] | None = None) -> pl.DataFrame:
    """The frame stored at ``key``; with ``columns``, only those."""
    return from_parquet(store.get(key), columns)


def read_frames(store: ObjectStore, keys: list[str]) -> list[pl.DataFrame]:
    """The frames of ``keys``, in order, fetched side by side (a round trip each on S3)."""
    return side_by_side(lambda key: read_frame(store, key), keys)


#: An object to read: its key, or what a listing said of it (its size lets the store choose
#: how to fetch it: :meth:`ObjectStore.scan_source`).
Object = str | ObjectInfo


def _key_size(obj: Object) -> tuple[str, int | None]:
    return (obj, None) if isinstance(obj, str) else (obj.key, obj.size)


def local_files(store: ObjectStore, objects: Sequence[Object], work_dir: Path) -> list[Path]:
    """A local file for each object: the object itself on a local lake, else a download into
    ``work_dir`` (which must outlive whatever reads the files), several side by side."""
    if isinstance(store, LocalStore):
        return [store.path(_key_size(o)[0]) for o in objects]

    def download(obj: Object) -> Path:
        key, size = _key_size(obj)
        path = Path(work_dir) / key
        store.download_file(key, path, size)
        return path

    return side_by_side(download, objects)


def scan_objects(store: ObjectStore, objects: Sequence[Object], table: str,
                 work_dir: Path) -> pl.LazyFrame:
    """Objects of one staged or resolution table, scanned lazily in its schema: in place where
    the store allows it (:meth:`ObjectStore.scan_source`: large objects of an S3 lake), else
    downloaded once into ``work_dir`` (small objects, whose listed size came with them, and
    every object of a store that cannot be read in place); ``work_dir`` must then outlive
    whatever reads the scan."""
    sources = [store.scan_source(*_key_size(obj)) for obj in objects]
    fetch = [obj for obj, source in zip(objects, sources, strict=True) if source is None]
    fetched = iter(local_files(store, fetch, work_dir))
    scans = []
    for obj, source in zip(objects, sources, strict=True):
        if source is None:  # a copy in work_dir: a damaged one is named by its lake address
            where, options = str(next(fetched)), {}
            shown = None if isinstance(store, LocalStore) else _address(store, obj)
        else:
            (where, options), shown = source, None
        try:
            scans.append(_conformed_scan(where, options, table, shown))
        except UnreadableFile as exc:
            exc.key = _key_size(obj)[0]  # which object of the lake, for the caller to act on
            raise
    if not scans:
        return schema.empty(table).lazy()
    # one scan per file: files written before a column was added lack it, conform fills it in
    return pl.concat(scans, how="vertical")


def _address(store: ObjectStore, obj: Object) -> str:
    return f"{store.uri.rstrip('/')}/{_key_size(obj)[0]}"


class UnreadableFile(LakeError):
    """A file of the lake that cannot be read as Parquet (damaged on disk, cut short, gone);
    ``key``: the object's key in the lake, when known."""

    key: str | None = None


def _conformed_scan(where: str, options: dict, table: str,
                    shown: str | None = None) -> pl.LazyFrame:
    try:  # conforming reads the file's footer: a damaged file fails here, and is named
        return schema.conform(pl.scan_parquet(where, glob=False, **options), table)
    except (pl.exceptions.PolarsError, FileNotFoundError) as exc:
        named = where if shown is None else f"{shown} (fetched to {where})"
        raise UnreadableFile(redact(f"{table}: cannot read {named}: {exc}")) from exc
    except OSError as exc:  # Polars' S3 reader gave up after its retries (S3Store.scan_source)
        if not is_transient(exc):  # refused (403): a person must act
            raise LakeError(redact(f"{table}: cannot read {where}: {exc}")) from exc
        raise TransientLakeError(redact(
            f"{table}: reading {where} in place failed ({exc}); the object store may be "
            "overloaded or unreachable: the run can be retried")) from exc


# -- staged ------------------------------------------------------------------------------------


def write_staged(store: ObjectStore, agency: str, feed: str, drop_id: str,
                 tables: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Write a drop's canonical tables; a drop staged before is not rewritten.

    The person table is written last: its presence marks the drop as completely staged. Of a
    drop staged before, only the files that cannot be read are written again (a drop held for
    an unreadable staged file, then sent back by `fusionlake retry`).
    """
    order = [t for t in schema.TABLES if t != "person_record"] + ["person_record"]
    again = store.exists(staged_key("person_record", agency, feed, drop_id))
    counts = {}
    for table in order:
        if again and readable(store, staged_key(table, agency, feed, drop_id)):
            counts[table] = -1
            continue
        frame = schema.conform(tables.get(table, schema.empty(table)), table)
        write_frame(store, staged_key(table, agency, feed, drop_id), frame)
        counts[table] = frame.height
    return counts


def readable(store: ObjectStore, key: str) -> bool:
    """Whether an object of the lake reads as Parquet, every page of it."""
    try:
        from_parquet(store.get(key))  # the whole file: a damaged page is unreadable too
    except (NotFound, pl.exceptions.PolarsError, OSError):
        return False
    return True


def staged_objects(store: ObjectStore, table: str,
                   drop_ids: set[str] | None = None) -> list[ObjectInfo]:
    """The staged files of a table (of the given drops only, when given), as listed."""
    return [i for i in store.list_info(layout.staged_prefix(table))
            if drop_ids is None or layout.drop_id_of_staged(i.key) in drop_ids]


def staged_keys(store: ObjectStore, table: str, drop_ids: set[str] | None = None) -> list[str]:
    """The staged files of a table (of the given drops only, when given)."""
    return [i.key for i in staged_objects(store, table, drop_ids)]


def read_staged(store: ObjectStore, table: str, drop_ids: set[str] | None = None) -> pl.DataFrame:
    """Every staged frame of a table (of the given drops only, when given)."""
    frames = [schema.conform(f, table)
              for f in read_frames(store, staged_keys(store, table, drop_ids))]
    return pl.concat(frames, how="vertical") if frames else schema.empty(table)


# -- validation and quarantine -----------------------------------------------------------------


def write_validation(store: ObjectStore, agency: str, feed: str, drop_id: str,
                     results: pl.DataFrame, quarantine: pl.DataFrame,
                     gx_result: dict | None) -> None:
    write_frame(store, layout.validation_results_key(agency, feed, drop_id), results)
    if gx_result:  # a drop rejected before its suite ran has none (not an empty one)
        store.put(layout.gx_result_key(agency, feed, drop_id),
                  json.dumps(gx_result, ensure_ascii=False, default=str).encode())
    write_frame(store, layout.quarantine_key(agency, feed, drop_id), quarantine)


def read_validation_results(store: ObjectStore) -> pl.DataFrame:
    keys = [k for k in store.list(VALIDATION) if k.endswith("/results.parquet")]
    frames = read_frames(store, keys)
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def read_gx_results(store: ObjectStore) -> list[tuple[str, dict]]:
    """(drop_id, GX validation result) of every drop validated so far."""
    keys = [k for k in store.list(VALIDATION) if k.endswith("/gx_result.json")]
    return side_by_side(lambda key: (key.split("/")[3], json.loads(store.get(key))), keys)


def read_quarantine(store: ObjectStore) -> pl.DataFrame:
    """All quarantined rows, the source columns folded into a JSON ``row_json`` column."""
    frames = []
    keys = [k for k in store.list(QUARANTINE) if k.endswith("/rows.parquet")]
    for key, frame in zip(keys, read_frames(store, keys), strict=True):
        _, agency, feed, drop_id, _ = key.split("/")
        if frame.is_empty():
            continue
        keep = [c for c in ("source_row", "line", "expectation", "column", "reason")
                if c in frame.columns]
        source_cols = [c for c in frame.columns if c not in keep]
        frames.append(frame.select(
            pl.lit(drop_id).alias("drop_id"), pl.lit(agency).alias("agency"),
            pl.lit(feed).alias("feed"), *[pl.col(c) for c in keep],
            pl.struct(source_cols).struct.json_encode().alias("row_json")
            if source_cols else pl.lit("{}").alias("row_json"),
        ))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


RESOLUTION = layout.RESOLUTION  # the task force's resolution prefix (older callers import it here)


# -- resolution state --------------------------------------------------------------------------


def write_resolution(store: ObjectStore, tables: dict[str, pl.DataFrame | pl.LazyFrame],
                     run_id: str, retention: int = Settings.resolution_retention,
                     audience: str = "all", origin: str | None = None,
                     rows: dict[str, int] | None = None) -> str:
    """Store an audience's resolution under a new version, move its LATEST, prune old ones.

    Each audience has its own (layout.resolution_prefix): an agency's is resolved from the rows
    it may see alone, so its ids and history never derive from another agency's rows.

    Versioned like the marts (fusionlake.lake.versions): the previous resolution, which the
    resolver read its stable ids from, stays current and readable until the new one is
    complete, and only the versions beyond the newest ``retention`` are removed afterwards,
    never the one the audience's published mart shows.
    The pointer's ``resolved_as`` names the resolution these tables are a copy of (``origin``,
    ``<audience>/<version>``; the version itself when they are not a copy): audiences with the
    same one may share a mart build.

    Tables holding a ``resolution_delta`` are an incremental resolution: the pointer's
    ``incremental_of`` names the version the delta is relative to, the audience's current one.
    ``rows``, when given, receives each table's rows as written (lazy tables included).
    """
    def write(base: str) -> None:
        for name, frame in tables.items():
            written = write_frame(store, f"{base}/{name}.parquet", frame)
            if rows is not None:
                rows[name] = written

    return _new_resolution(store, sorted(tables), write, run_id, retention, audience, origin)


def copy_resolution(store: ObjectStore, source: str, version: str, run_id: str,
                    retention: int = Settings.resolution_retention,
                    audience: str = "all") -> str:
    """Store another audience's resolution ``version`` (``source``'s) as ``audience``'s new
    one, as :func:`write_resolution` would store the same tables with ``origin``
    ``<source>/<version>``, but copied inside the store: at a million people the five tables
    cost seconds to encode again and nothing to copy."""
    prefix = versions.version_prefix(layout.resolution_prefix(source), version)
    keys = {key.rsplit("/", 1)[-1].removesuffix(".parquet"): key
            for key in store.list(prefix) if key.endswith(".parquet")}
    if not keys:
        raise NotFound(f"no resolution version {version} of audience {source} to copy")

    def write(base: str) -> None:
        for name, key in keys.items():
            store.copy(key, f"{base}/{name}.parquet")

    return _new_resolution(store, sorted(keys), write, run_id, retention, audience,
                           f"{source}/{version}")


def _new_resolution(store: ObjectStore, tables: list[str], write, run_id: str, retention: int,
                    audience: str, origin: str | None) -> str:
    """A new resolution version of ``audience``: ``write(base)`` stores its tables under
    ``base``; then its manifest, LATEST and retention (see :func:`write_resolution`)."""
    if retention < 1:  # checked before writing: the new resolution must survive its own pruning
        raise ValueError(f"resolution retention must be at least 1, not {retention}")
    prefix = layout.resolution_prefix(audience)
    current = versions.read_pointer(store, prefix)
    version = versions.new_version(after=current["version"] if current else None)
    write(versions.version_prefix(prefix, version))
    pointer = {"version": version, "run_id": run_id, "tables": tables}
    if audience != "all" or origin:
        pointer["resolved_as"] = origin or f"{audience}/{version}"
    if "resolution_delta" in tables:
        if current is None:
            raise ValueError("an incremental resolution needs a previous one")
        pointer["incremental_of"] = current["version"]
    versions.finish(store, prefix, version, pointer)
    versions.move_pointer(store, prefix, pointer)
    # the version the audience's published mart shows stays until a newer mart replaces it:
    # the next mart flags as new the matches made since (runs that stopped before publishing
    # may have resolved several times in between)
    shown = (versions.read_pointer(store, layout.mart_prefix(audience)) or {}).get(
        "resolution_version")
    versions.apply_retention(store, prefix, retention, also_keep=[shown] if shown else [])
    return version


def resolved_as(store: ObjectStore, audience: str, version: str | None = None) -> str | None:
    """Which resolution an audience's resolution ``version`` (default: its current one) is:
    ``<audience>/<version>`` of the one it was copied from, or its own (``resolved_as`` in
    :func:`write_resolution`); None before the audience's first. A version no longer kept
    (retention) is taken as its own: never the same as another's."""
    prefix = layout.resolution_prefix(audience)
    if version is None:
        pointer = versions.read_pointer(store, prefix)
    else:
        try:
            pointer = json.loads(store.get(
                f"{versions.version_prefix(prefix, version)}/{versions.MANIFEST}"))
        except NotFound:
            pointer = {"version": version}
    if pointer is None:
        return None
    return pointer.get("resolved_as") or f"{audience}/{pointer['version']}"


def resolved_audiences(store: ObjectStore) -> list[str]:
    """The agencies that have a resolution of their own (one LIST of their pointers)."""
    prefix = f"{layout.RESOLUTION}/audience/"
    return sorted({key[len(prefix):].split("/")[0] for key in store.list(prefix)
                   if key.endswith(f"/{layout.LATEST}") and key[len(prefix):].count("/") == 1})


def resolution_objects(store: ObjectStore,
                       audience: str = "all") -> dict[str, ObjectInfo] | None:
    """Table name -> file of an audience's latest resolution, as listed, or None before the
    first."""
    prefix = layout.resolution_prefix(audience)
    pointer = versions.read_pointer(store, prefix)
    if pointer is None:
        return None
    return {info.key.rsplit("/", 1)[-1].removesuffix(".parquet"): info
            for info in store.list_info(versions.version_prefix(prefix, pointer["version"]))
            if info.key.endswith(".parquet")}


def resolution_keys(store: ObjectStore, audience: str = "all") -> dict[str, str] | None:
    """Table name -> file of an audience's latest resolution, or None before the first."""
    objects = resolution_objects(store, audience)
    return None if objects is None else {name: i.key for name, i in objects.items()}


def read_resolution(store: ObjectStore, audience: str = "all") -> dict[str, pl.DataFrame] | None:
    """An audience's latest resolution tables, or None before the first."""
    keys = resolution_keys(store, audience)
    if keys is None:
        return None
    return {name: read_frame(store, key) for name, key in keys.items()}


# -- steward decisions -------------------------------------------------------------------------


#: What a steward can record about a pair; ``undo`` withdraws the pair's standing decision.
DECISIONS_KINDS = ("same", "different", "undo")


def append_decision(store: ObjectStore, record_l: str, record_r: str, decision: str,
                    decided_by: str, reason: str) -> dict:
    """Record a steward's must-link / must-not-link decision, or its undo (append-only, audited).

    Nothing is ever deleted: an ``undo`` is a decision of its own, later than the one it
    withdraws, and :func:`read_decisions` leaves the withdrawn one out.
    """
    if decision not in DECISIONS_KINDS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS_KINDS)}")
    if record_l == record_r:
        raise ValueError(f"a record is always the same as itself: {record_l}")
    now = datetime.now(UTC)
    left, right = sorted((record_l, record_r))
    body = {"record_id_l": left, "record_id_r": right, "decision": decision,
            "decided_by": decided_by, "reason": reason, "decided_at": now.isoformat()}
    key = f"{DECISIONS}/{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.json"
    store.put_if_absent(key, json.dumps(body, ensure_ascii=False).encode())
    return body


def read_decisions(store: ObjectStore, include_undone: bool = False) -> pl.DataFrame:
    """Steward decisions, oldest first (the latest per pair wins when replayed).

    By default the decisions that still count: an ``undo`` removes its pair's decisions made
    before it (and is left out itself), so a pair whose latest entry is an undo has none.
    ``include_undone`` gives the whole history, undos included, for listing.
    """
    rows = [json.loads(body) for body in side_by_side(store.get, store.list(DECISIONS))]
    if not rows:
        return schema.empty("decision")
    frame = schema.conform(pl.DataFrame(rows).with_columns(
        pl.col("decided_at").str.to_datetime(time_zone="UTC", time_unit="us")),
        "decision").sort("decided_at", maintain_order=True)
    if include_undone:
        return frame
    pair = ["record_id_l", "record_id_r"]
    last_undo = (frame.filter(pl.col("decision") == "undo").group_by(pair)
                 .agg(pl.col("decided_at").max().alias("undone_at")))
    return (frame.join(last_undo, on=pair, how="left", maintain_order="left")
            .filter(pl.col("undone_at").is_null()
                    | (pl.col("decided_at") > pl.col("undone_at")))
            .filter(pl.col("decision") != "undo")
            .drop("undone_at"))


def read_json(store: ObjectStore, key: str) -> dict | None:
    """A small JSON object, or None if there is none."""
    try:
        return json.loads(store.get(key))
    except NotFound:
        return None
