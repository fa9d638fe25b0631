"""Resolve step: the staged records that count now, and entity resolution over them.

Entity resolution runs once per *visibility group*: the audiences (``all`` and each agency)
that may see exactly the same staged rows (fusionlake.pipeline.marts.visibility_groups). Each
group is resolved from its visible rows alone, and each audience keeps its own resolution in the
lake (layout.resolution_prefix) with its own stable ids and history. So an agency's entities,
links, history and review queue are exactly those of a lake that only ever received the rows it
may see (DESIGN.md, property 4), and N audiences cost as many resolutions as there are distinct
views, not N.

Why the Splink model is trained per group and not once on every row: its m and u parameters
are estimated by EM from the pairs of the rows it is given, so one hidden record moves them, and
with them the match probability and weight of the visible pairs an agency's mart shows
(record_link, review_queue). Those probabilities would then differ from the ones of a lake that
never received the hidden rows, and on small groups could betray that the hidden rows exist.
Training on each group's rows is what the rule requires; it costs one training per group.

The staged files are opened once per run (:func:`staged_scans`): resolution reads the columns
it uses from them, each table when a step needs it, and publishing (fusionlake.pipeline.publish)
builds the marts from the same files. An S3 lake's staged objects are read in place (the byte
ranges a step needs), never copied to the local disk.

Splink (and its DuckDB) take seconds to import and drop workers import this package without ever
resolving, so transforms.resolution is imported where it is used.

Each model trained on the data is kept in the lake (``models/splink_model.json``); a run whose
training fails resolves with it instead of failing (transforms/resolution/splink.py), and its
run summary says so.

**Incremental runs.** A scheduled run over a small drop does not resolve the lake again. Each
resolution version keeps, beside the model, what the next run needs
(``models/<audience>/state/<version>/``: the scoring model with its term-frequency tables,
every record's match frame as Parquet parts, each record's component of the candidate-edge
graph, the steward decisions applied). When records were only added, the next run scores the
new ones against the kept match frames with the kept model and re-resolves only the
components they touch (transforms/resolution/incremental.py): it reads the new records' rows,
the affected records' rows and the holders of their identifier and association values, never
every staged table. The version it writes holds the complete tables plus ``resolution_delta``
(the records whose entity may differ), and its pointer says ``incremental_of``.

It resolves in full instead (and says why in the run summary) on the first run, when a record
resolved before is no longer staged (superseded or withdrawn), when the new records are more
than ``FUSIONLAKE_INCREMENTAL_MAX_SHARE`` (default 0.1) of the audience's records, every
``FUSIONLAKE_FULL_EVERY`` runs (default 96, a day of 15-minute runs: the model is retrained),
on ``fusionlake run --full``, when the kept state of the current version is missing or
unreadable (a run killed between the two writes leaves a version without ``state.json``, which
is never trusted), when the resolution settings changed since the state was kept (their
fingerprint is kept with it), when a new record pushes an identifier over identifier_max_group
holders, or when the new records fill a column the kept model does not compare. Changed
steward decisions do not force a full run: their records' components are re-resolved.

With the same model an incremental run gives exactly what a full run gives. The one difference
is the model itself: it is not retrained, and its term frequencies (how common a name is)
stay those of the records it was trained on until the next full run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from fusionlake.lake import layout, versions, zones
from fusionlake.lake.faults import kill_point
from fusionlake.lake.feeds import FeedSet
from fusionlake.lake.ledger import LIVE, DropEntry, DropState, Ledger
from fusionlake.lake.schema import TABLES, rows_of
from fusionlake.lake.settings import Settings, u_max_pairs_default
from fusionlake.lake.store import NotFound, ObjectStore
from fusionlake.pipeline import marts
from fusionlake.pipeline.slots import ALONE, Slots, each
from transforms.canonical import cap_releasable_to

#: Progress lines a person watching a long resolve reads (the command line shows them).
progress = logging.getLogger("fusionlake.progress")

ALL = marts.ALL


@contextlib.contextmanager
def staged_scans(store: ObjectStore, ledger: Ledger,
                 feedset: FeedSet) -> Iterator[tuple[dict[str, pl.LazyFrame], set[str]]]:
    """Every staged table as a lazy scan of the lake's files, and the drops wholly superseded.

    Only the records that count now are in the scans: a feed with ``supersede: by_source_key``
    keeps, per source key, the row of the newest drop (a corrected re-send replaces the earlier
    row); a drop none of whose rows survive is superseded. Each row's ``releasable_to`` is
    capped by its agency's sharing agreement as it is now (canonical.cap_releasable_to).
    The scans read the lake's objects in place (fusionlake.lake.zones.scan_objects) and are
    valid inside the ``with`` block (a store that cannot be read in place has its files
    downloaded to a temporary folder for it).
    """
    entries = ledger.entries()  # a listing, and the events this process has not read yet
    live = {e.drop_id for e in entries if e.state in LIVE}
    with tempfile.TemporaryDirectory(prefix="fusionlake-staged-") as tmp:
        scans = {t: zones.scan_objects(store, zones.staged_objects(store, t, live), t, Path(tmp))
                 for t in TABLES}
        # a function of its own: as this generator's locals, its frames (half a gigabyte at a
        # million people) would live as long as the scans are used, through resolve and publish
        superseded, gone = _superseded(scans["person_record"], entries, feedset)
        if superseded.len():
            scans = {t: f.filter(~pl.col("record_id").is_in(superseded.implode()))
                     for t, f in scans.items()}
        # the agreements as they are now, also over rows staged before they narrowed
        caps = feedset.share_caps()
        scans = {t: cap_releasable_to(f, caps) for t, f in scans.items()}
        scans["person_record"] = _sender_only(scans["person_record"],
                                              pending_replacements(store, entries, feedset))
        yield scans, gone


def pending_replacements(store: ObjectStore, entries: list[DropEntry], feedset: FeedSet
                         ) -> dict[tuple[str, str], list[str] | None]:
    """(agency, feed) -> the source keys that a drop of a ``supersede: by_source_key`` feed
    may replace but is not staged to (held, or its ledger events lost), or None for every row
    of the feed when its keys cannot be read. Such a drop may narrow who sees those rows: until
    it counts, the rows it may replace are shown to their sender alone (:func:`staged_scans`),
    not to those the earlier, wider rows named (a hostile walk of 2026-12-07)."""
    by_key = {name for name, f in feedset.feeds.items() if f.supersede == "by_source_key"}
    waiting = [(e.agency, e.feed, e.drop_id) for e in entries if e.state == DropState.HELD]
    waiting += unknown_staged(store, {e.drop_id for e in entries})
    waiting = [w for w in waiting if f"{w[0]}/{w[1]}" in by_key]
    out: dict[tuple[str, str], list[str] | None] = {}
    for agency, feed, drop_id in waiting:
        try:
            keys = zones.read_frame(store, layout.staged_key("person_record", agency, feed,
                                                             drop_id), columns=["source_key"])
        except NotFound:  # held before it was staged (for a steward): it replaces nothing yet
            continue
        except Exception:  # unreadable: any row of the feed may be one it replaces
            out[(agency, feed)] = None
            continue
        if (agency, feed) not in out or out[(agency, feed)] is not None:
            out[(agency, feed)] = [*(out.get((agency, feed)) or []),
                                   *keys["source_key"].drop_nulls().to_list()]
    return out


def unknown_staged(store: ObjectStore, known: set[str]) -> list[tuple[str, str, str]]:
    """(agency, feed, drop id) of each staged drop whose id is not in ``known`` (the ledger's):
    its ledger events removed or written over."""
    out = []
    for key in zones.staged_keys(store, "person_record"):  # staged/person_record/<a>/<f>/<id>
        _, _, agency, feed, _ = key.split("/")
        if (drop_id := layout.drop_id_of_staged(key)) not in known:
            out.append((agency, feed, drop_id))
    return out


def _sender_only(person: pl.LazyFrame, withheld: dict[tuple[str, str], list[str] | None]
                 ) -> pl.LazyFrame:
    """``person`` with the rows ``withheld`` names (:func:`pending_replacements`) released to
    their sending agency alone."""
    if not withheld:
        return person
    feed = pl.concat_str("agency", "feed", separator="/")
    whole = [f"{a}/{f}" for (a, f), keys in withheld.items() if keys is None]
    some = [f"{a}/{f}/{k}" for (a, f), keys in withheld.items() if keys for k in keys]
    where = feed.is_in(whole) | pl.concat_str(feed, pl.col("source_key"),
                                              separator="/").is_in(some)
    return person.with_columns(
        pl.when(where).then(pl.concat_list(pl.col("agency")))
        .otherwise(pl.col("releasable_to")).alias("releasable_to"))


def superseded_records(store: ObjectStore, ledger: Ledger, feedset: FeedSet,
                       work_dir: Path) -> pl.Series:
    """The record ids a newer drop supersedes now, as :func:`staged_scans` leaves them out
    (for the stewards' report; ``work_dir`` holds what an S3 lake's read downloads)."""
    entries = ledger.entries()
    live = {e.drop_id for e in entries if e.state in LIVE}
    scan = zones.scan_objects(store, zones.staged_objects(store, "person_record", live),
                              "person_record", work_dir)
    return _superseded(scan, entries, feedset)[0]


def _superseded(person_scan: pl.LazyFrame, entries: list, feedset: FeedSet
                ) -> tuple[pl.Series, set[str]]:
    """The record ids a newer drop supersedes (``supersede: by_source_key``), and the drops
    none of whose rows survive.

    A row is superseded only by a row of the same feed and source key in a drop received
    later. A row without a source key (null or blank) is never superseded: it names nothing a
    later row could correct. Two rows of one drop with the same key both stay; ``required:
    true`` and ``unique: true`` on the key column quarantine such rows, with a reason.
    """
    person = person_scan.select("record_id", "drop_id", "agency", "feed", "source_key").collect()
    by_key = [name for name, f in feedset.feeds.items() if f.supersede == "by_source_key"]
    none = pl.Series("record_id", [], pl.String)
    if not person.height or not by_key:
        return none, set()
    # a duplicate (known bytes sent again) has its drop's id and the time it was seen: it must
    # not re-date the drop, or an old file sent again would supersede its own correction
    received = {e.drop_id: e.received_at for e in entries if e.state != DropState.DUPLICATE}
    ranked = person.with_columns(
        pl.col("drop_id").replace_strict(received, default="").alias("_received"),
        (pl.col("agency") + "/" + pl.col("feed")).alias("_feed"),
    ).filter(pl.col("_feed").is_in(by_key) & pl.col("source_key").is_not_null()
             & (pl.col("source_key") != ""))
    newest = ranked.group_by("_feed", "source_key").agg(pl.col("_received").max().alias("_newest"))
    superseded = ranked.join(newest, on=["_feed", "source_key"]).filter(
        pl.col("_received") < pl.col("_newest"))["record_id"]
    if not superseded.len():
        return none, set()
    before = set(person["drop_id"].unique().to_list())
    after = set(person.join(superseded.to_frame(), on="record_id", how="anti")["drop_id"]
                .unique().to_list())
    return superseded, before - after


def load_staged(store: ObjectStore, ledger: Ledger, feedset: FeedSet,
                columns: dict[str, tuple[str, ...]] | None = None,
                ) -> tuple[dict[str, pl.DataFrame], set[str]]:
    """All canonical records that count now (see :func:`staged_scans`), and the drops wholly
    superseded; with ``columns``, only those columns of the tables it names."""
    with staged_scans(store, ledger, feedset) as (scans, superseded):
        tables = {t: (f.select(columns[t]) if columns and t in columns else f).collect()
                  for t, f in scans.items()}
    return tables, superseded


def input_scans(scans: dict[str, pl.LazyFrame]) -> dict[str, pl.LazyFrame]:
    """The staged tables as resolution reads them: only the columns it uses (less memory)."""
    from transforms.resolution.resolve import input_columns

    columns = input_columns()
    return {t: (f.select(columns[t]) if t in columns else f) for t, f in scans.items()}


@dataclass(frozen=True)
class Options:
    """How a run resolves (fusionlake.lake.settings.Settings): see the module doc."""

    full: bool = False  # `fusionlake run --full`
    full_every: int = Settings.full_every
    max_share: float = Settings.incremental_max_share
    workers: int = 1  # groups resolved side by side when incremental (fusionlake.pipeline.slots)
    backend: str = Settings.resolve_backend  # where a full resolution scores (RESOLVE_BACKENDS)
    # pairs sampled to estimate u when a full resolution trains
    u_max_pairs: int = field(default_factory=u_max_pairs_default)

    @classmethod
    def of(cls, settings: Settings) -> Options:
        return cls(settings.full, settings.full_every, settings.incremental_max_share,
                   settings.group_workers, settings.resolve_backend, settings.u_max_pairs)


def resolve_audiences(store: ObjectStore, scans: dict[str, pl.LazyFrame], run_id: str,
                      retention: int = Settings.resolution_retention,
                      audiences: list[str] | None = None,
                      options: Options | None = None,
                      release: pl.DataFrame | None = None) -> dict:
    """Resolve each visibility group over its own rows; every audience's resolution is stored.

    Returns the statistics of the ``all`` group's resolution (what the run summary reports),
    with ``audience groups`` (who shared a resolution), ``seconds per group`` and
    ``resolve mode`` (per group: incremental or full, and why).

    An audience of a group gets the group's resolution as it is when its previous resolution
    is the leader's (the usual case: the same audiences shared a view last run too); one whose
    previous differs (the views changed since) is resolved on its own, so that its ids stay
    the ones it had.

    Groups resolve side by side (``options.workers`` at a time) while their resolutions are
    incremental; a full one runs alone (fusionlake.pipeline.slots). If one group fails, the
    others still finish, and then the first failure is raised. ``release`` is
    marts.release_values of ``scans`` when the caller has it already.
    """
    options = options or Options()
    # and every audience resolved before, which may see no row now (an agreement narrowed):
    # its resolution must become empty, or its mart would go on showing what it resolved
    names = audiences or list(dict.fromkeys([*marts.audiences(scans),
                                              *zones.resolved_audiences(store)]))
    release = marts.release_values(scans) if release is None else release
    # read once: a decision a steward makes meanwhile reaches every group in the next run,
    # never one group now and the others later
    decisions = zones.read_decisions(store)
    groups = marts.visibility_groups(scans, names, release=release)

    def one_group(group: list[str], slots: Slots) -> tuple[dict, float, dict]:
        t0 = time.perf_counter()
        visible = marts.visible_rows(scans, group[0], release=release)
        # an audience whose current resolution is the leader's (a copy of the same version,
        # the usual case) gets a copy again; one whose pointer says otherwise is compared by
        # content, which reads both resolutions' ids and history
        was = zones.resolved_as(store, group[0])
        differ = [other for other in group[1:] if zones.resolved_as(store, other) != was]
        leader_previous = _previous(store, group[0]) if differ else {}
        copies = {other for other in group[1:] if other not in differ
                  or _same_frames(_previous(store, other), leader_previous)}
        del leader_previous
        resolution, _frames, version, mode = resolve_lake(
            store, visible, run_id, retention, audience=group[0], options=options, slots=slots,
            decisions=decisions)
        for other in group[1:]:
            if mode["mode"] == "unchanged" and other not in differ:
                continue  # a copy of the leader's resolution, which stands
            if other in copies:
                zones.copy_resolution(store, group[0], version, run_id, retention,
                                      audience=other)
            else:
                resolve_lake(store, visible, run_id, retention, audience=other,
                             options=options, slots=slots, decisions=decisions)
        seconds = round(time.perf_counter() - t0, 3)
        progress.info("resolve: audiences %s done in %.1f s (%s)", "+".join(group), seconds,
                      mode["mode"])
        return resolution.stats if ALL in group else {}, seconds, mode

    done = each(groups, one_group, Slots(options.workers))
    stats: dict = next((s for s, _seconds, _mode in done if s), {})
    stats["audience groups"] = groups
    stats["seconds per group"] = {"+".join(g): d[1] for g, d in zip(groups, done, strict=True)}
    stats["resolve mode"] = {"+".join(g): d[2] for g, d in zip(groups, done, strict=True)}
    return stats


def _previous(store: ObjectStore, audience: str) -> dict[str, pl.DataFrame]:
    """The audience's current entity_record and entity_history (none before its first run)."""
    keys = zones.resolution_keys(store, audience) or {}
    return {name: zones.read_frame(store, keys[name])
            for name in ("entity_record", "entity_history") if name in keys}


def _same_frames(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> bool:
    return a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


# -- the kept state of a resolution -----------------------------------------------------------


@dataclass
class Kept:
    """The kept state of an audience's current resolution version, as read from the lake."""

    version: str  # the resolution version it belongs to
    info: dict  # state.json
    model: Any  # transforms.resolution.splink.KeptModel
    match_files: list[Path]  # local Parquet files of every record's match frame
    components: pl.DataFrame
    decisions: pl.DataFrame


class StateError(Exception):
    """The kept state is missing or cannot be used (the run resolves in full instead)."""


def read_state(store: ObjectStore, audience: str, version: str, work_dir: Path) -> Kept:
    """The kept state of one resolution version; StateError when it is missing or unreadable.

    A run killed after writing a resolution but before its state leaves a version without
    ``state.json``: no state is trusted that does not name the version it belongs to.
    """
    from transforms.resolution.splink import KeptModel

    try:
        data = store.get(layout.resolution_state_key(audience, version, STATE_FILE))
    except NotFound:
        raise StateError(f"no kept state for resolution version {version}") from None
    try:
        info = json.loads(data)
        if info.get("resolution_version") != version:
            raise StateError(f"the kept state names resolution version "
                             f"{info.get('resolution_version')}, not {version}")
        tf = {col: zones.read_frame(store, key) for col, key in info["tf_tables"].items()}
        files = zones.local_files(store, info["match_parts"], work_dir)
        schema = dict(pl.read_parquet_schema(files[0]))
        largest = info.get("block_largest")  # absent from states kept before it existed
        identical = info.get("identical")  # as block_largest
        model = KeptModel(info["model"], tf, schema,
                          [tuple(pair) for pair in largest] if largest else None,
                          tuple(identical) if identical else None)
        components = zones.read_frame(store, info["components"])
        decisions = (pl.DataFrame(info["decisions"], schema=list(DECISION_COLUMNS), orient="row")
                     if info["decisions"] else pl.DataFrame(schema=list(DECISION_COLUMNS)))
    except StateError:
        raise
    except Exception as exc:  # unreadable, half-written, from another version of the code
        raise StateError(f"the kept state of resolution version {version} is unreadable "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    return Kept(version, info, model, files, components, decisions)


STATE_FILE = "state.json"
#: Why an audience keeps its resolution (plan: "unchanged").
UNCHANGED = "no record it sees was added, removed or decided on since: its resolution stands"
DECISION_COLUMNS = {"record_id_l": pl.String, "record_id_r": pl.String,
                    "decision": pl.String}


def _standing(decisions: pl.DataFrame | None, known: pl.Series) -> pl.DataFrame:
    """The steward decisions a resolution over ``known`` records applies, as stored."""
    from transforms.resolution.resolve import latest_decisions, pairs_among

    return (pairs_among(latest_decisions(decisions), known)
            .select(list(DECISION_COLUMNS)).sort("record_id_l", "record_id_r"))


def write_state(store: ObjectStore, audience: str, version: str, *, model: Any = None,
                components: pl.DataFrame, match: pl.DataFrame, decisions: pl.DataFrame,
                previous: Kept | None = None,
                block_largest: list[tuple[int, int]] | None = None,
                identical: tuple[int, int] | None = None) -> None:
    """Keep what the next incremental run needs, for resolution ``version`` (state.json last).

    After a full resolution (``previous`` None): the model, its term-frequency tables, every
    record's match frame. After an incremental one: the new records' match frames as one more
    part, the model and earlier parts named where they are, and the largest blocking keys and
    the copies' pairs with the new records counted (``block_largest``, ``identical``;
    KeptModel.block_largest, KeptModel.identical).
    """
    key = functools.partial(layout.resolution_state_key, audience, version)
    zones.write_frame(store, key("match.parquet"), match)
    zones.write_frame(store, key("components.parquet"), components)
    if previous is None:
        tf = {}
        for col, frame in model.tf_tables.items():
            zones.write_frame(store, key(f"tf_{col}.parquet"), frame)
            tf[col] = key(f"tf_{col}.parquet")
        info = {"model": model.model_json, "tf_tables": tf, "trained_in": version,
                "incremental_runs": 0, "match_parts": [key("match.parquet")],
                "block_largest": model.block_largest, "identical": model.identical}
    else:
        info = {**previous.info, "incremental_runs": previous.info["incremental_runs"] + 1,
                "match_parts": [*previous.info["match_parts"], key("match.parquet")],
                "block_largest": block_largest, "identical": identical}
    info.update(resolution_version=version, components=key("components.parquet"),
                decisions=decisions.rows(), settings=settings_fingerprint())
    kill_point("before-resolution-state", audience)  # crash tests: a resolution without state
    store.put(key(STATE_FILE), json.dumps(info).encode())
    _prune_states(store, audience)


def _prune_states(store: ObjectStore, audience: str) -> None:
    """Remove the kept state of resolution versions gone, but no object a kept one names."""
    prefix = layout.resolution_state_prefix(audience)
    live = set(versions.complete_versions(store, layout.resolution_prefix(audience)))
    keys = store.list(prefix)
    named: set[str] = set()
    for k in keys:
        version = k[len(prefix) + 1:].split("/", 1)[0]
        if k.endswith("/" + STATE_FILE) and version in live:
            try:
                info = json.loads(store.get(k))
                named |= {*info["match_parts"], *info["tf_tables"].values(), info["components"]}
            except (ValueError, KeyError, TypeError):  # unusable anyway (read_state says why)
                continue
    for k in keys:
        version = k[len(prefix) + 1:].split("/", 1)[0]
        if version not in live and k not in named:
            store.delete(k)


#: The tables of a resolution an incremental run continues from (merged, and written again).
INCREMENTAL_TABLES = ("entity_record", "record_link", "entity_link", "entity_history",
                      "review_pair", "record_fact")


def settings_fingerprint() -> str:
    """The fingerprint of the resolution settings this code resolves with (kept with the
    state: a run under other settings resolves in full)."""
    from transforms.resolution.settings import ResolveSettings

    return ResolveSettings().fingerprint()


# -- one audience ------------------------------------------------------------------------------


def plan(store: ObjectStore, visible: dict[str, pl.LazyFrame], audience: str,
         options: Options, work_dir: Path, decisions: pl.DataFrame | None = None,
         ) -> tuple[str, Any]:
    """Unchanged, incremental or full, and why: ``("unchanged", version)``,
    ``("incremental", (kept, new_ids))`` or ``("full", reason)``.

    Unchanged when the audience sees exactly the records its current resolution resolved, the
    steward ``decisions`` on them are the ones it applied, under the same resolution settings,
    and ``--full`` was not asked for: another agency's drop it may not see must not make it a
    new resolution (or a new mart, whose time would tell it that something arrived).
    Incremental when a previous resolution of this audience has its kept state, kept under the
    same resolution settings, no record was
    removed since (a superseded or withdrawn row changes old pairs), the new records are at
    most ``max_share`` of all, fewer than ``full_every`` runs went by since the model was
    trained, and ``--full`` was not asked for.
    """
    if options.full:
        return "full", "asked for (--full): the model is trained again"
    pointer = versions.read_pointer(store, layout.resolution_prefix(audience))
    if pointer is None:
        return "full", "the first resolution of this audience"
    keys = zones.resolution_objects(store, audience) or {}

    @functools.cache
    def ids() -> tuple[pl.DataFrame, pl.DataFrame]:
        """The records visible now, and those the current resolution resolved: read once."""
        staged = visible["person_record"].select("record_id").collect()
        before = zones.scan_objects(store, [keys["entity_record"]], "entity_record",
                                    work_dir).select("record_id").collect()
        return staged, before

    if (decisions is not None and "entity_record" in keys
            and (_unchanged(store, audience, pointer, decisions, *ids())
                 or _too_few_to_compare(*ids()))):
        # (an audience that sees one record or none, as before: such a resolution keeps no
        # state, and a new one would make a new mart, whose time tells it something arrived)
        return "unchanged", pointer["version"]
    try:
        kept = read_state(store, *_state_of(audience, pointer), work_dir)
    except StateError as exc:
        return "full", f"{exc}: resolved in full, and the state kept anew"
    if kept.info.get("settings") != settings_fingerprint():
        return "full", ("the resolution settings changed since the state was kept "
                        "(transforms/resolution/settings.py): the model is trained again")
    runs = kept.info["incremental_runs"] + 1
    if runs >= options.full_every:
        return "full", (f"{runs} runs since the model was trained "
                        f"(FUSIONLAKE_FULL_EVERY={options.full_every}): trained again")
    lacking = [t for t in INCREMENTAL_TABLES if t not in keys]
    if lacking:
        return "full", (f"the previous resolution has no {', '.join(lacking)} (written by an "
                        "older fusionlake): resolved in full once")
    staged, before = ids()
    # anti joins: hashing millions of ids for is_in costs several times more
    removed = before.join(staged, on="record_id", how="anti").height
    if removed:
        return "full", (f"{removed:,} records resolved before are no longer staged, or no "
                        "longer visible to it")
    new_ids = staged.join(before, on="record_id", how="anti")["record_id"]
    share = new_ids.len() / max(staged.height, 1)
    if share > options.max_share:
        return "full", (f"{new_ids.len():,} new records are {share:.1%} of {staged.height:,}, "
                        f"more than FUSIONLAKE_INCREMENTAL_MAX_SHARE={options.max_share:g}")
    return "incremental", (kept, new_ids)


def _state_of(audience: str, pointer: dict) -> tuple[str, str]:
    """Whose kept state an audience's current resolution has: its own, or, for a copy of the
    resolution of an audience that saw the same rows (resolve_audiences), that one's."""
    origin, version = (pointer.get("resolved_as")
                       or f"{audience}/{pointer['version']}").rsplit("/", 1)
    return origin, version


def _too_few_to_compare(staged: pl.DataFrame, before: pl.DataFrame) -> bool:
    """Whether the audience sees the one record (or none) its current resolution resolved:
    nothing to pair, so no model, setting or steward decision can change what it was."""
    return staged.height <= 1 and before.height == staged.height and (
        staged.join(before, on="record_id", how="anti").height == 0)


def _unchanged(store: ObjectStore, audience: str, pointer: dict, decisions: pl.DataFrame,
               staged: pl.DataFrame, before: pl.DataFrame) -> bool:
    """Whether the current resolution of ``audience`` (its ``pointer``), which resolved the
    records ``before``, resolved exactly the ``staged`` ones visible now, with the standing
    ``decisions`` on them, under today's resolution settings (the kept state of the resolution
    it is, or is a copy of, says which it applied).
    """
    origin, version = _state_of(audience, pointer)
    try:
        info = json.loads(store.get(layout.resolution_state_key(origin, version, STATE_FILE)))
    except (NotFound, ValueError):
        return False
    if info.get("resolution_version") != version or info.get("settings") != settings_fingerprint():
        return False
    if staged.height != before.height or staged.join(before, on="record_id", how="anti").height:
        return False
    applied = pl.DataFrame(info.get("decisions") or [], schema=DECISION_COLUMNS, orient="row")
    return _standing(decisions, staged["record_id"]).equals(applied)


def resolve_lake(store: ObjectStore, tables: dict[str, pl.DataFrame | pl.LazyFrame],
                 run_id: str, retention: int = Settings.resolution_retention,
                 audience: str = ALL, options: Options | None = None, slots: Slots = ALONE,
                 decisions: pl.DataFrame | None = None):
    """Entity resolution of one audience's records, with steward decisions and stable ids.

    ``decisions`` are the steward decisions in force (:func:`zones.read_decisions`; read now
    when not given).

    ``tables`` must hold only the rows ``audience`` may see (:func:`resolve_audiences`), as
    frames or lazy scans: the ids are inherited from this audience's previous resolution, or
    derived from its own records. Incremental when :func:`plan` allows it, else full.

    Returns:
        (resolution stats holder, frames written, version, {"mode", "why"}).
    """
    options = options or Options()
    scans = {t: f.lazy() for t, f in tables.items()}
    if decisions is None:
        decisions = zones.read_decisions(store)
    with tempfile.TemporaryDirectory(prefix="fusionlake-state-") as tmp:
        with slots.one():  # planning and an incremental resolution are small work
            mode, detail = plan(store, scans, audience, options, Path(tmp), decisions)
            if mode == "unchanged":
                _log("unchanged", f"{audience}: {UNCHANGED}")
                return (_Stats({"new cross-agency matches": 0}), None, detail,
                        {"mode": "unchanged", "why": UNCHANGED})
            if mode == "incremental":
                kept, new_ids = detail
                try:
                    return _incremental(store, scans, run_id, retention, audience, kept,
                                        new_ids, Path(tmp), decisions)
                except Exception as exc:  # a full resolution is always right: no failed run
                    from transforms.resolution.incremental import Declined

                    why = (str(exc) if isinstance(exc, Declined) else
                           f"the incremental resolution failed ({type(exc).__name__}: "
                           f"{str(exc)[:300]})")
                    detail = f"{why}: resolved in full"
        with slots.every():  # a full resolution holds gigabytes: alone
            return _full(store, scans, run_id, retention, audience, detail, decisions, options)


def _log(step: str, line: str) -> None:
    progress.info("resolve: %s", f"{step}: {line}" if line else step)


def _full(store: ObjectStore, scans: dict[str, pl.LazyFrame], run_id: str, retention: int,
          audience: str, why: str, decisions: pl.DataFrame, options: Options):
    from transforms.resolution.ids import forget_withdrawn
    from transforms.resolution.resolve import resolve  # Splink: seconds to import; see above
    from transforms.resolution.settings import ResolveSettings

    backend = options.backend
    if backend != "duckdb":  # said in the run summary too
        why = f"{why} (scored on {backend})"
    _log("full", f"{audience}: {why}")
    try:  # the fallback should training fail: this audience's last good model
        last_model = store.get(layout.splink_model_key(audience)).decode()
    except NotFound:
        last_model = None
    # The previous history is read only once the resolution is made: resolve, near its highest
    # point of memory, does not need it (65 MB at a million people after one run, and it grows
    # with every run).
    keys = zones.resolution_keys(store, audience) or {}
    previous = (zones.read_frame(store, keys["entity_record"]) if "entity_record" in keys
                else None)
    resolution = resolve(
        input_scans(scans),  # each table read when resolve needs it, and let go after
        decisions=decisions,
        previous=previous,
        settings=ResolveSettings(fallback_model=last_model, backend=backend,
                                 u_max_pairs=options.u_max_pairs),
        progress=_log,
    )
    trained = resolution.stats.pop("model_json", None)
    state = resolution.stats.pop("state", None)
    facts = None
    if previous is not None:  # read before retention may remove the version it is from
        facts = (zones.read_frame(store, keys["record_fact"],
                                  ["record_id", "agency", "feed", "drop_id"])
                 if "record_fact" in keys else None)
        previous = marts.with_entity_agencies(
            previous, resolution.record_fact if facts is None else facts)
    frames = {
        "entity_record": resolution.entity_record,
        "record_link": resolution.record_link,
        "entity_link": resolution.entity_link,
        "entity_history": resolution.entity_history,
        "review_pair": resolution.review_pair,
        "record_fact": resolution.record_fact,
    }
    if "entity_history" in keys:
        # the history of entities made only of records it no longer sees is forgotten: its
        # mart must not tell the audience that entities it may not see exist, or merged
        kept = zones.read_frame(store, keys["entity_history"])
        if previous is not None:
            kept = forget_withdrawn(kept, previous, no_longer_seen(
                store, previous, facts, scans["person_record"],
                resolution.entity_record["record_id"]))
        frames["entity_history"] = pl.concat([kept, resolution.entity_history],
                                             how="vertical_relaxed")
    t0 = time.perf_counter()
    version = zones.write_resolution(store, frames, run_id, retention=retention,
                                     audience=audience)
    if trained is not None:  # kept once the resolution it made is stored
        store.put(layout.splink_model_key(audience), trained.encode())
    if state is not None:
        write_state(store, audience, version, model=state.model, components=state.components,
                    match=state.match,
                    decisions=_standing(decisions, resolution.record_fact["record_id"]))
    _log("writing", f"resolution {version} and its kept state in "
         f"{time.perf_counter() - t0:.1f} s")
    resolution.stats["new cross-agency matches"] = new_cross_agency_matches(
        resolution.record_fact, resolution.entity_record, previous)
    return resolution, frames, version, {"mode": "full", "why": why}


def no_longer_seen(store: ObjectStore, previous: pl.DataFrame, facts: pl.DataFrame | None,
                   person: pl.LazyFrame, resolved: pl.Series) -> pl.Series:
    """The records of an audience's ``previous`` resolution (its entity_record; ``facts`` its
    record_fact's record_id, agency, feed and drop_id) withdrawn from it: not ``resolved``
    now though their drop still counts (:data:`LIVE`), and not superseded by a correction it
    sees in their place (a row of ``person``, its visible rows, of the same feed and source
    key). Its agreement narrowed, that is, or the row re-sent for others alone, or shown to its
    sender alone while a re-send that may replace it does not count
    (:func:`pending_replacements`).

    A record of a drop that no longer counts (held, for one, because a staged file of it cannot
    be read; rejected; or no longer known to the ledger) is gone for every audience, not
    withdrawn from this one: its entities' history stays, for when the drop counts again. So
    does every record when the previous resolution keeps no record_fact (from before it did),
    which says nothing of their drops.
    """
    gone = previous.select("record_id").unique().join(resolved.to_frame("record_id"),
                                                       on="record_id", how="anti")
    if not gone.height or facts is None:
        return gone["record_id"].clear()
    live = {e.drop_id for e in Ledger(store).entries() if e.state in LIVE}
    facts = (facts.join(gone, on="record_id", how="semi")
             .filter(pl.col("drop_id").is_in(list(live))))
    gone = gone.join(facts.select("record_id"), on="record_id", how="semi")
    rows = []
    for agency, feed, drop_id in facts.select("agency", "feed", "drop_id").unique().iter_rows():
        # gone, or damaged after its drop counted: its records count as withdrawn (a store
        # that fails transiently raises, and the run is retried rather than history lost)
        with contextlib.suppress(NotFound, pl.exceptions.PolarsError):
            rows.append(zones.read_frame(
                store, layout.staged_key("person_record", agency, feed, drop_id),
                columns=["record_id", "agency", "feed", "source_key"]))
    if not rows:
        return gone["record_id"]
    keyed = (pl.concat(rows, how="vertical_relaxed").join(gone, on="record_id", how="semi")
             .filter(pl.col("source_key").is_not_null() & (pl.col("source_key") != "")))
    corrected = keyed.join(person.select("agency", "feed", "source_key").collect(),
                           on=["agency", "feed", "source_key"], how="semi")
    return gone.join(corrected, on="record_id", how="anti")["record_id"]


@dataclass
class _Stats:
    """What resolve_audiences reads of a resolution: its statistics."""

    stats: dict


def _incremental(store: ObjectStore, scans: dict[str, pl.LazyFrame], run_id: str,
                 retention: int, audience: str, kept: Kept, new_ids: pl.Series,
                 work_dir: Path, decisions: pl.DataFrame):
    from transforms.resolution.incremental import resolve_incremental
    from transforms.resolution.resolve import input_columns
    from transforms.resolution.settings import ResolveSettings

    why = (f"{new_ids.len():,} new records scored with the model trained in resolution "
           f"{kept.info['trained_in']} (incremental run {kept.info['incremental_runs'] + 1} since)")
    _log("incremental", f"{audience}: {why}")
    t0 = time.perf_counter()
    keys = zones.resolution_objects(store, audience)
    # entity_record is read; the other tables are scanned, merged and written as streams
    # (at a million people the record links alone are a gigabyte in memory)
    previous = {name: (zones.read_frame(store, keys[name].key) if name == "entity_record" else
                       zones.scan_objects(store, [keys[name]], name, work_dir))
                for name in INCREMENTAL_TABLES}
    _log("previous", f"{previous['entity_record'].height:,} records' resolution read in "
         f"{time.perf_counter() - t0:.1f} s")
    settings = ResolveSettings()
    out = resolve_incremental(
        scans, new_ids, kept.model, kept.match_files, kept.components, previous,
        kept.decisions, decisions, settings, datetime.now(UTC), columns=input_columns(settings),
        progress=lambda line: _log(line, ""))
    # the previous entities of the changed records, whole, with their agencies: read before
    # retention may remove the version they are from
    changed = out.delta["record_id"].implode()
    before = marts.with_entity_agencies(previous["entity_record"], previous["record_fact"],
                                        holding=pl.col("record_id").is_in(changed))
    t0 = time.perf_counter()
    frames = {**out.frames, "resolution_delta": out.delta}
    rows: dict[str, int] = {}
    version = zones.write_resolution(store, frames, run_id, retention=retention,
                                     audience=audience, rows=rows)
    # the lazy tables were counted as they were written
    out.stats["counts"].update(entity_links=rows["entity_link"], review_pairs=rows["review_pair"])
    known = out.frames["entity_record"]["record_id"]
    write_state(store, audience, version, components=out.components, match=out.new_match,
                decisions=_standing(decisions, known), previous=kept,
                block_largest=out.block_largest, identical=out.identical)
    _log("writing", f"resolution {version} (incremental of {kept.version}, "
         f"{out.delta.height:,} records in its delta) in {time.perf_counter() - t0:.1f} s")
    person = rows_of(scans["person_record"], out.delta["record_id"]).select(
        "record_id", "agency").collect()
    stats = {**out.stats, "model": "the kept model",
             "new cross-agency matches": new_cross_agency_matches(
                 person, out.frames["entity_record"].filter(pl.col("record_id").is_in(changed)),
                 before)}
    return _Stats(stats), frames, version, {"mode": "incremental", "why": why}


def new_cross_agency_matches(person: pl.DataFrame, entity_record: pl.DataFrame,
                             previous: pl.DataFrame | None) -> int:
    """Entities that now join records of two or more agencies, and did not in the last run.

    An entity counts unless an entity of the previous resolution that held one of its records
    held records of two of its agencies already; on the first run every cross-agency entity is
    new. ``previous`` is the previous resolution's marts.with_entity_agencies: the agencies of
    all the records a previous entity held, superseded ones too (an agency's corrected rows do
    not make a known match new). The mart's rule, entity.new_cross_agency_match, is the same.
    """
    if not entity_record.height or not person.height:
        return 0
    cur = entity_record.join(person.select("record_id", "agency"), on="record_id")
    cross = (cur.group_by("entity_id").agg(pl.col("agency").unique().alias("agencies"))
             .filter(pl.col("agencies").list.len() >= 2))
    if previous is None or not previous.height:
        return cross.height
    before = (
        cur.select("entity_id", "record_id").join(cross, on="entity_id")
        .join(previous.select("record_id", "entity_agencies"), on="record_id")
        .filter(pl.col("agencies").list.set_intersection("entity_agencies").list.len() >= 2)
        .select("entity_id").unique()
    )
    return cross.join(before, on="entity_id", how="anti").height
