"""Validate+stage step: one drop from raw/ to staged/, and what the drops share.

* :func:`process_drop` -- read one received drop from raw/ (lines that cannot be read go to
  quarantine), validate it with its feed's suite, quarantine unusable rows, flag bad values,
  map the rows to the canonical model and stage them.
* :func:`stage_drop` -- the same from plain arguments, as a run's worker (thread or process)
  calls it; :func:`save_translit_cache` then keeps what the workers transliterated.
* :func:`publish_data_docs` -- the stewards' Data Docs site from every stored GX result.

A drop's failures (unknown feed, unreadable file, broken structure) are data problems: they end
in the ledger as ``rejected`` with a reason (or ``held`` for a steward, when an ``on_failure:
hold`` expectation fails), and never stop the other drops. Each rejection or hold records the
fingerprint of the feed definition and suite it was decided under; :func:`pending_drops` hands
the drop to the next run once that fingerprint changes (the feed was onboarded or fixed).

GX takes seconds to import and a run's own process need not load it when its drops go to worker
processes, so the GX runner is imported where it is used (expectations.suites, which compiles
suites without GX, is imported at the top).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from expectations.suites import suite_fingerprint
from fusionlake.lake import layout, zones
from fusionlake.lake.feeds import FeedSet, load_feeds
from fusionlake.lake.ledger import PENDING, STOPPED, DropEntry, DropState, Ledger
from fusionlake.lake.settings import configure_offline
from fusionlake.lake.store import NotFound, ObjectStore, open_store
from fusionlake.pipeline.read import (
    DropRead,
    DropReadError,
    file_format,
    library_panic,
    read_drop_isolated,
)
from fusionlake.pipeline.report import drop_reports, quarantine_rows
from transforms.canonical import to_canonical
from transforms.translit_cache import CACHE_SCHEMA, export_cache, import_cache, take_new


@dataclass
class DropResult:
    """What happened to one drop in this run (for the run summary)."""

    drop_id: str
    name: str  # agency/feed/file
    state: DropState
    reason: str | None = None
    rows: int = 0
    quarantined: int = 0
    flagged: int = 0  # rows staged with at least one value flagged (kept, not normalised)
    warnings: list[str] = field(default_factory=list)  # expectations short of their mostly
    staged: dict[str, int] = field(default_factory=dict)
    rows_staged: int = 0  # rows of every canonical table; 0 when every row was quarantined
    seconds: float = 0.0
    # Name tokens transliterated while processing this drop (script, token, latin), for the run
    # to add to the lake's cache (save_translit_cache); the run takes them off the result.
    transliterations: pl.DataFrame | None = None


def pending_drops(ledger: Ledger, feedset: FeedSet | None = None) -> list[DropEntry]:
    """The work of this run: drops received (or validated, or accepted by a steward) but not
    yet staged or rejected; and, given the run's feeds, every drop rejected or held under a
    feed definition or suite that has changed since (not those a steward rejected).
    """
    out, prints = [], {}
    for e in ledger.entries():
        if e.state in PENDING:
            out.append(e)
        elif (feedset is not None and e.state in STOPPED and e.fingerprint is not None
              and e.decision != "reject"):
            name = f"{e.agency}/{e.feed}"
            if name not in prints:
                prints[name] = suite_fingerprint(feedset.feeds.get(name))
            if prints[name] != e.fingerprint:
                out.append(e)
    return out


def process_drop(store: ObjectStore, feedset: FeedSet, entry: DropEntry,
                 run_id: str) -> DropResult:
    """Read, validate, standardise and stage one drop; record the outcome in the ledger."""
    from expectations import validate_drop  # GX: see the module's docstring

    started = time.perf_counter()
    ledger = Ledger(store)
    name = entry.label
    result = DropResult(entry.drop_id, name, DropState.REJECTED)
    feed = feedset.feeds.get(f"{entry.agency}/{entry.feed}")
    fingerprint = suite_fingerprint(feed)

    def stop(reason: str, state: DropState = DropState.REJECTED) -> DropResult:
        # the fingerprint lets a later run try again once the feed or its suite changes
        ledger.record(entry.drop_id, state, reason, run_id, fingerprint=fingerprint)
        result.state, result.reason = state, reason
        result.seconds = time.perf_counter() - started
        return result

    if feed is None:
        broken = feedset.error_for(entry.agency, entry.feed)
        if broken is not None:  # the engineer wrote one: say what is wrong with it
            return stop(f"the feed definition of {entry.agency}/{entry.feed} does not load: "
                        f"{broken}; the next run after it is mended validates this drop again")
        return stop(f"no feed definition for {entry.agency}/{entry.feed}: onboard it with a "
                    "feed file (docs/feeds.md); the next run validates this drop again")
    data = store.get(entry.raw_key)
    try:
        read = read_drop_isolated(data, entry.file_name, feed)
    except DropReadError as exc:
        return stop(str(exc))
    result.rows = read.frame.height + read.bad["source_row"].n_unique()

    outcome = validate_drop(read.frame, feed, entry.drop_id,
                            accept_holds=entry.decision == "accept")
    quarantine = _quarantine(read, outcome.quarantine)
    flags = outcome.flags.join(read.lines, on="source_row", how="left")
    zones.write_validation(store, entry.agency, entry.feed, entry.drop_id,
                           pl.concat([_read_results(read, entry.drop_id, result.rows),
                                      outcome.results], how="vertical_relaxed"),
                           quarantine, outcome.gx_result_json)
    zones.write_frame(store, layout.flags_key(entry.agency, entry.feed, entry.drop_id), flags)
    result.quarantined = quarantine["source_row"].n_unique() if quarantine.height else 0
    result.flagged = outcome.flagged
    result.warnings = list(outcome.warnings)
    if outcome.held:
        return stop(outcome.reason or "held for a steward", DropState.HELD)
    if not outcome.accepted:
        return stop(outcome.reason or "failed validation")
    if outcome.valid.height == 0:  # staged empty, a fixed feed would never look at it again
        return stop(f"every row was quarantined ({result.quarantined:,} of {result.rows:,}): "
                    "nothing to stage; the quarantine says why, row by row (`fusionlake "
                    "report`), and the drop is validated again once its feed changes")
    if entry.state == DropState.RECEIVED:
        ledger.record(entry.drop_id, DropState.VALIDATED,
                      f"{outcome.valid.height} rows valid ({result.flagged} flagged), "
                      f"{result.quarantined} quarantined", run_id)

    tables = apply_flags(to_canonical(outcome.valid, feed, entry.drop_id), outcome.flags, feed)
    result.rows_staged = sum(frame.height for frame in tables.values())
    result.staged = zones.write_staged(store, entry.agency, entry.feed, entry.drop_id, tables)
    warned = (f"; {len(result.warnings)} warning{'s' if len(result.warnings) > 1 else ''}"
              if result.warnings else "")
    ledger.record(entry.drop_id, DropState.STAGED,
                  f"{tables['person_record'].height} person records, {result.flagged} rows "
                  f"flagged, {result.quarantined} quarantined{warned}", run_id)
    result.state = DropState.STAGED
    result.seconds = time.perf_counter() - started
    return result


def _quarantine(read: DropRead, validated: pl.DataFrame) -> pl.DataFrame:
    """The drop's quarantine: lines the reader could not use, then rows validation refused,
    each with its line in the file."""
    rows = validated.join(read.lines, on="source_row", how="left")
    if not read.bad.height:
        return rows
    return pl.concat([read.bad, rows], how="diagonal_relaxed").sort("source_row",
                                                                     maintain_order=True)


def _read_results(read: DropRead, drop_id: str, rows: int) -> pl.DataFrame:
    """One result row per kind of line the reader quarantined, beside GX's results."""
    from expectations.runner import RESULTS_SCHEMA

    if not read.bad.height:
        return pl.DataFrame(schema=RESULTS_SCHEMA)
    return (read.bad.group_by("expectation", "column", maintain_order=True)
            .agg(pl.len().alias("unexpected_count"), pl.col("reason").first())
            .select(pl.lit(drop_id).alias("drop_id"), "expectation", "column",
                    pl.lit(False).alias("success"),
                    pl.col("unexpected_count").cast(pl.Int64),
                    (pl.col("unexpected_count") * 100.0 / max(rows, 1)).alias(
                        "unexpected_percent"),
                    pl.lit(None, pl.Float64).alias("mostly"),
                    pl.format("{} lines quarantined; the first: {}", "unexpected_count",
                              "reason").alias("details"))
            .cast(RESULTS_SCHEMA))


def apply_flags(tables: dict[str, pl.DataFrame], flags: pl.DataFrame,
                feed) -> dict[str, pl.DataFrame]:
    """Staged tables with the flagged values marked: the note ``column: reason`` on the
    person's ``normalise_notes`` (unless standardisation noted that column already), and a
    date that failed its plausibility check set to null, as a date that does not parse is.

    The original value stays in raw/ and in the identifier/phone tables' value as written.
    """
    if not flags.height:
        return tables
    out = dict(tables)
    person = out["person_record"]
    if person.height:
        notes = (flags.join(person.select("source_row", "normalise_notes"), on="source_row")
                 .filter(~pl.col("normalise_notes").fill_null("")
                         .str.contains(pl.col("column") + ": ", literal=True))
                 .group_by("source_row", maintain_order=True)
                 .agg(pl.format("{}: {}", "column", "reason").str.join("; ").alias("_flag")))
        out["person_record"] = person.join(notes, on="source_row", how="left").with_columns(
            pl.concat_str("normalise_notes", "_flag", separator="; ", ignore_nulls=True)
            .alias("normalise_notes")).drop("_flag").with_columns(
            pl.when(pl.col("normalise_notes").str.len_chars() > 0)
            .then(pl.col("normalise_notes")).alias("normalise_notes"))
    dates = flags.filter(pl.col("expectation") == "expect_column_values_to_be_plausible_dates")
    for column, rows in dates.group_by("column"):
        # a steward's own date rule may watch a column the feed does not map
        target = (feed.columns.get(column[0]) or {}).get("to")
        bad = pl.col("source_row").is_in(rows["source_row"].implode())
        if target == "person.birth_date" and person.height:
            out["person_record"] = out["person_record"].with_columns(
                pl.when(~bad).then(pl.col(c)).alias(c)
                for c in ("birth_date", "birth_date_precision"))
        elif target == "event.date" and out["event"].height:
            out["event"] = out["event"].with_columns(
                pl.when(~bad).then(pl.col("event_date")).alias("event_date"))
    return out


def drop_workers(entries: list[DropEntry], workers: int, min_bytes: int) -> int:
    """Worker processes for this run's drops: 0 means threads of the calling process.

    Validating and standardising a drop is mostly single-threaded Python (GX's pandas engine,
    transliteration, libphonenumber), so drops in threads share one core; in processes they use
    every core. A process costs seconds to start (imports), so only drops that together have
    ``min_bytes`` or more get them (Settings.drop_process_min_bytes).
    """
    if workers < 2 or len(entries) < 2 or sum(e.size for e in entries) < min_bytes:
        return 0
    return min(workers, len(entries))


def exit_with_parent() -> None:
    """In a worker process (a pool's ``initializer``): end the process when its parent ends.

    A pool's workers wait for work on a queue whose write end each of them holds too, so they
    never see a killed run go (SIGKILL, the OOM killer) and would live on, each with the memory
    its last drop left (1.2 GB after a 1M-people run). A thread waits on the parent's sentinel.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


#: Work per byte of a drop by format, relative to CSV: validate+stage seconds per MB at 1M
#: people were 0.10-0.15 for the CSV drops, 0.07 for JSON Lines (its bytes are mostly repeated
#: keys) and 0.43 for the workbook (zipped XML): bench/RESULTS.md, "2026-12-04". Parquet, also
#: compressed, is taken as a workbook (not measured: no generated feed is Parquet).
WORK_PER_BYTE = {"csv": 1.0, "jsonl": 0.5, "xlsx": 3.5, "parquet": 3.5}


def expected_work(entry: DropEntry) -> float:
    """A drop's validate+stage work, in CSV bytes: its size weighed by its format's
    :data:`WORK_PER_BYTE` (a name without a known extension is taken as CSV)."""
    return entry.size * WORK_PER_BYTE.get(file_format(entry.file_name) or "csv", 1.0)


def most_work_first(entries: list[DropEntry]) -> list[DropEntry]:
    """Drops in the order to start them: the longest first (:func:`expected_work`), so no
    worker is left with one at the end while the others idle. By bytes alone, the 1M-people
    workbook (27 MB), the longest drop, started fourth of five and ran alone through the
    stage's last 5.3 s."""
    return sorted(entries, key=lambda e: (-expected_work(e), e.drop_id))


_seeded: set[str] = set()  # lakes whose transliteration cache this process has loaded


def stage_drop(lake: str, feeds_path: list[str], entry: DropEntry, run_id: str) -> DropResult:
    """:func:`process_drop` as a run's worker (thread or process) does it, from plain arguments.

    The process's transliteration cache is seeded from the lake once; the result carries the
    transliterations this drop added (``transliterations``), for :func:`save_translit_cache`.
    """
    configure_offline()
    store = open_store(lake)
    if store.uri not in _seeded:
        load_translit_cache(store)
        _seeded.add(store.uri)
    try:
        result = process_drop(store, load_feeds(feeds_path), entry, run_id)
    except BaseException as exc:
        if not library_panic(exc):
            raise
        # an Exception from here on: the run rejects the drop with it and goes on
        raise LibraryPanic(f"{entry.file_name}: a library panicked while staging it: "
                           f"{str(exc)[:500]}") from None
    result.transliterations = take_new()
    return result


class LibraryPanic(RuntimeError):
    """A Rust library's panic (:func:`~fusionlake.pipeline.read.library_panic`) while a drop
    was staged, turned into an error about that drop."""


def load_translit_cache(store: ObjectStore) -> int:
    """Seed this process's transliteration cache from the lake; returns the entries loaded.

    Transliteration is the costliest normalisation per value (docs/architecture.md, "Where
    the time goes"); names seen in earlier runs are not transliterated again.
    """
    try:
        return import_cache(pl.read_parquet(store.get(layout.TRANSLIT_CACHE)))
    except NotFound:
        return 0


def save_translit_cache(store: ObjectStore, added: list[pl.DataFrame] = ()) -> int:
    """Store the lake's transliteration cache with what this run learnt (the run holds the
    lease): this process's own cache and the entries worker processes handed back (``added``,
    from :attr:`DropResult.transliterations`). Returns the entries stored."""
    added = [f for f in [export_cache(), *added] if f is not None and f.height]
    if not added:
        return 0
    try:
        parts = [pl.read_parquet(store.get(layout.TRANSLIT_CACHE)), *added]
    except NotFound:
        parts = added
    frame = (pl.concat([p.select(list(CACHE_SCHEMA)).cast(CACHE_SCHEMA) for p in parts])
             .unique(["script", "token"], keep="first", maintain_order=True)
             .sort("script", "token"))
    store.put(layout.TRANSLIT_CACHE, zones.to_parquet(frame))
    return frame.height


def publish_data_docs(store: ObjectStore) -> str | None:
    """Bring the stewards' Data Docs site in reports/ up to date with the stored GX results.

    The index lists every drop of the ledger with the counts of ``fusionlake report``
    (fusionlake.pipeline.report), and each drop with quarantined rows gets a page of them. Only
    drops whose stored result or quarantine changed since the site's last build (new drops, and
    drops validated again) have their pages rendered; the site's ``rendered.json`` keeps, per
    drop, the pages it has and the versions (etags) of the objects they were rendered from.
    """
    from expectations import build_data_docs  # GX: see the module's docstring
    from expectations.docs import RENDERED

    drops = drop_reports(store)
    results = {key.split("/")[3]: info for info in store.list_info(layout.VALIDATION)
               if (key := info.key).endswith("/gx_result.json")}
    quarantined = {info.key.split("/")[3]: info.etag for info in store.list_info(
        layout.QUARANTINE) if info.key.endswith("/rows.parquet")}
    if not results and not drops:
        return None
    try:
        site = json.loads(store.get(f"{layout.DATA_DOCS}/{RENDERED}"))
    except (NotFound, ValueError):  # no site yet, or one built before it kept this record
        site = {}
    sources = {d: f"{info.etag if (info := results.get(d)) else '-'}/{quarantined.get(d, '-')}"
               for d in {*results, *(d.drop_id for d in drops)}}
    previous = {d: entry for d, entry in site.items()
                if d in sources and entry.get("sources") == sources[d]}
    todo = [d for d in sources if d not in previous]
    quarantine = {d.drop_id: quarantine_rows(store, d.agency, d.feed, d.drop_id).to_dicts()
                  for d in drops if d.quarantined and d.drop_id in todo}
    with tempfile.TemporaryDirectory(prefix="fusionlake-docs-") as tmp:
        root = Path(tmp)
        index = build_data_docs(
            [(d, json.loads(store.get(results[d].key))) for d in sorted(todo) if d in results],
            root, drops=[d.as_json() for d in drops], quarantine=quarantine, previous=previous)
        record = json.loads((root / RENDERED).read_text(encoding="utf-8"))
        (root / RENDERED).write_text(json.dumps(
            {d: {**entry, "sources": sources.get(d)} for d, entry in record.items()},
            ensure_ascii=False), encoding="utf-8")
        # the record last: a build that stops half-way renders the same pages again next time
        for path in sorted((p for p in root.rglob("*") if p.is_file()),
                           key=lambda p: p.name == RENDERED):
            store.put(f"{layout.DATA_DOCS}/{path.relative_to(root).as_posix()}",
                      path.read_bytes())
        rel = Path(index).relative_to(root).as_posix()
    return f"{store.uri}/{layout.DATA_DOCS}/{rel}"


def restate_data_docs(store: ObjectStore) -> bool:
    """The Data Docs index written again with each drop's state as the ledger has it now.

    The site is built while a run resolves and publishes, so it showed the drops that run
    published as "staged" until some later run built it again. Whether anything changed (no
    drop's page is rendered again, no GX is loaded: the index's rows are kept beside it).
    """
    from expectations.docs import INDEX_ROWS, RENDERED, index_page

    try:
        rows = json.loads(store.get(f"{layout.DATA_DOCS}/{INDEX_ROWS}"))
        record = json.loads(store.get(f"{layout.DATA_DOCS}/{RENDERED}"))
    except (NotFound, ValueError):  # no site yet, or one from before the rows were kept
        return False
    if not (isinstance(rows, list) and isinstance(record, dict)
            and all(isinstance(row, dict) and "drop_id" in row for row in rows)):
        return False  # written over: the next build of the site writes it anew
    now = {e.drop_id: e for e in Ledger(store).entries()}
    changed = False
    for row in rows:
        entry = now.get(row["drop_id"])
        if entry is not None and str(entry.state) != row.get("state"):
            row["state"], row["reason"] = str(entry.state), entry.reason
            changed = True
    if changed:
        store.put(f"{layout.DATA_DOCS}/index.html", index_page(rows, record).encode())
        store.put(f"{layout.DATA_DOCS}/{INDEX_ROWS}",
                  json.dumps(rows, ensure_ascii=False, default=str).encode())
    return changed


def data_docs_of(lake: str) -> str | None:
    """:func:`publish_data_docs` from a lake URI, as a run's worker process calls it."""
    return publish_data_docs(open_store(lake))
