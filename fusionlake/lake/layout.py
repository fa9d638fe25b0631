"""Every object key of the lake, in one place (docs/architecture.md, "The lake").

No other module builds a key by hand: each zone has a prefix constant here and a function for
each kind of object in it::

    landing/<agency>/<feed>/<file>                       where agencies deliver
    raw/<agency>/<feed>/<drop_id>/<file>, manifest.json  immutable copy of each drop
    ledger/drops/<drop_id>/NNN-<state>.json              the drop ledger, append-only
    ledger/duplicates/<hash>.json, ledger/seen/<hash>    repeated deliveries; objects looked at
    leases/<name>/NNNNNN.json, .released                 one pipeline run per lake at a time
    validation/<agency>/<feed>/<drop_id>/results.parquet one row per expectation
    validation/<agency>/<feed>/<drop_id>/gx_result.json  the GX result, for Data Docs
    validation/<agency>/<feed>/<drop_id>/flags.parquet   values flagged in rows that went on
    quarantine/<agency>/<feed>/<drop_id>/rows.parquet    bad rows with expectation and reason
    staged/<table>/<agency>/<feed>/<drop_id>.parquet     canonical records of an accepted drop
    resolution/<version>/<table>.parquet, LATEST         entity resolution of the task force (all)
    resolution/audience/<agency>/<version>/..., LATEST   each agency's own resolution
    decisions/<time>-<id>.json                           steward decisions, append-only
    audit/<kind>/<time>-<id>.json                        who queried or decided what, append-only
    marts/<audience>/<version>/fusion.duckdb, LATEST     published marts
    marts/<audience>/current.duckdb                      the current one, a stable path (local)
    marts/FINGERPRINT                                    what the current marts were built from
    reports/data_docs/, reports/runs/<run_id>.md         for stewards and operators
    reports/dictionary/index.html                        the marts' data dictionary, for analysts
    cache/translit.parquet                               transliterations across runs
    models/splink_model.json, models/<audience>/...      the last model trained on each
                                                         audience's data (the task force's first)
    models/<audience>/state/<version>/state.json, ...    what an incremental resolution needs
                                                         (model, term frequencies, match frames,
                                                         components), per resolution version
"""

from __future__ import annotations

LANDING = "landing"
RAW = "raw"
LEDGER_DROPS = "ledger/drops"
LEDGER_DUPLICATES = "ledger/duplicates"
LEDGER_SEEN = "ledger/seen"
LEDGER_ATTEMPTS = "ledger/attempts"
LEASES = "leases"
VALIDATION = "validation"
QUARANTINE = "quarantine"
STAGED = "staged"
RESOLUTION = "resolution"
DECISIONS = "decisions"
AUDIT = "audit"
MARTS = "marts"
REPORTS = "reports"
DATA_DOCS = f"{REPORTS}/data_docs"
RUN_REPORTS = f"{REPORTS}/runs"
DICTIONARY = f"{REPORTS}/dictionary"
DICTIONARY_PAGE = f"{DICTIONARY}/index.html"  # one for every audience: schema only, no data
TRANSLIT_CACHE = "cache/translit.parquet"
# The Splink model the last successful training produced: a run whose training fails uses it.
SPLINK_MODEL = "models/splink_model.json"


def splink_model_key(audience: str) -> str:
    """The last good model of an audience's resolution: the task force's at SPLINK_MODEL."""
    return SPLINK_MODEL if audience == "all" else f"models/{audience}/splink_model.json"


def resolution_state_prefix(audience: str) -> str:
    """``models/<audience>/state``: the kept resolution state of each resolution version."""
    return f"models/{audience}/state"


def resolution_state_key(audience: str, version: str, name: str) -> str:
    """An object of the kept state of one resolution version (``state.json`` is written last:
    a version without it has no state an incremental run may trust)."""
    return f"{resolution_state_prefix(audience)}/{version}/{name}"


MARTS_FINGERPRINT = f"{MARTS}/FINGERPRINT"
LATEST = "LATEST"  # the pointer object beside a zone's versions

# -- drops ----------------------------------------------------------------------------------


def landing_prefix(agency: str, feed: str) -> str:
    return f"{LANDING}/{agency}/{feed}"


def raw_key(agency: str, feed: str, drop_id: str, file_name: str) -> str:
    return f"{RAW}/{agency}/{feed}/{drop_id}/{file_name}"


def raw_manifest_key(agency: str, feed: str, drop_id: str) -> str:
    return raw_key(agency, feed, drop_id, "manifest.json")


def ledger_event_key(drop_id: str, seq: int, state: str) -> str:
    return f"{LEDGER_DROPS}/{drop_id}/{seq:03d}-{state}.json"


def drop_base(agency: str, feed: str, drop_id: str) -> str:
    """``<agency>/<feed>/<drop_id>``: a drop's folder in the validation and quarantine zones."""
    return f"{agency}/{feed}/{drop_id}"


def validation_results_key(agency: str, feed: str, drop_id: str) -> str:
    return f"{VALIDATION}/{drop_base(agency, feed, drop_id)}/results.parquet"


def gx_result_key(agency: str, feed: str, drop_id: str) -> str:
    return f"{VALIDATION}/{drop_base(agency, feed, drop_id)}/gx_result.json"


def flags_key(agency: str, feed: str, drop_id: str) -> str:
    return f"{VALIDATION}/{drop_base(agency, feed, drop_id)}/flags.parquet"


def quarantine_key(agency: str, feed: str, drop_id: str) -> str:
    return f"{QUARANTINE}/{drop_base(agency, feed, drop_id)}/rows.parquet"


def staged_prefix(table: str) -> str:
    return f"{STAGED}/{table}"


def staged_key(table: str, agency: str, feed: str, drop_id: str) -> str:
    return f"{STAGED}/{table}/{agency}/{feed}/{drop_id}.parquet"


def drop_id_of_staged(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".parquet")


# -- leases, marts, reports -----------------------------------------------------------------


def lease_prefix(name: str) -> str:
    return f"{LEASES}/{name}"


def mart_prefix(audience: str) -> str:
    """``marts/<audience>``: the audience's versions and its LATEST pointer."""
    return f"{MARTS}/{audience}"


def mart_current_key(audience: str) -> str:
    """``marts/<audience>/current.duckdb``: on a local lake, the current version's file under a
    path that never changes (a hard link, replaced whenever LATEST moves), for DuckDB clients."""
    return f"{MARTS}/{audience}/current.duckdb"


def resolution_prefix(audience: str) -> str:
    """Where an audience's resolution is versioned.

    The task force's (``all``) stays at ``resolution/`` where lakes have always kept it; each
    agency's is resolved from its own rows alone (fusionlake.pipeline.resolve) and kept apart, so
    its ids and history are derived from nothing it may not see.
    """
    return RESOLUTION if audience == "all" else f"{RESOLUTION}/audience/{audience}"


def audit_key(kind: str, stamp: str, writer: str) -> str:
    """``audit/<kind>/<UTC time>-<writer>.json``: names sort by time within a kind."""
    return f"{AUDIT}/{kind}/{stamp}-{writer}.json"


def run_report_key(run_id: str) -> str:
    return f"{RUN_REPORTS}/{run_id}.md"


LATEST_RUN_REPORT = f"{RUN_REPORTS}/LATEST.md"
