"""Every object key of the lake, in one place (DESIGN.md, "The lake").

No other module builds a key by hand: each zone has a prefix constant here and a function for
each kind of object in it::

    landing/<agency>/<feed>/<file>                       where agencies deliver
    raw/<agency>/<feed>/<drop_id>/<file>, manifest.json  immutable copy of each drop
    ledger/drops/<drop_id>/NNN-<state>.json              the drop ledger, append-only
    ledger/duplicates/<hash>.json, ledger/seen/<hash>    repeated deliveries; objects looked at
    leases/<name>/NNNNNN.json, .released                 one pipeline run per lake at a time
    validation/<agency>/<feed>/<drop_id>/results.parquet one row per expectation
    validation/<agency>/<feed>/<drop_id>/gx_result.json  the GX result, for Data Docs
    quarantine/<agency>/<feed>/<drop_id>/rows.parquet    bad rows with expectation and reason
    staged/<table>/<agency>/<feed>/<drop_id>.parquet     canonical records of an accepted drop
    resolution/<version>/<table>.parquet, LATEST         entity resolution output
    decisions/<time>-<id>.json                           steward decisions, append-only
    marts/<audience>/<version>/fusion.duckdb, LATEST     published marts
    marts/FINGERPRINT                                    what the current marts were built from
    reports/data_docs/, reports/runs/<run_id>.md         for stewards and operators
    cache/translit.parquet                               transliterations across runs
    models/splink_model.json                             the last model trained on the data
"""

from __future__ import annotations

LANDING = "landing"
RAW = "raw"
LEDGER_DROPS = "ledger/drops"
LEDGER_DUPLICATES = "ledger/duplicates"
LEDGER_SEEN = "ledger/seen"
LEASES = "leases"
VALIDATION = "validation"
QUARANTINE = "quarantine"
STAGED = "staged"
RESOLUTION = "resolution"
DECISIONS = "decisions"
MARTS = "marts"
REPORTS = "reports"
DATA_DOCS = f"{REPORTS}/data_docs"
RUN_REPORTS = f"{REPORTS}/runs"
TRANSLIT_CACHE = "cache/translit.parquet"
# The Splink model the last successful training produced: a run whose training fails uses it.
SPLINK_MODEL = "models/splink_model.json"
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


def run_report_key(run_id: str) -> str:
    return f"{RUN_REPORTS}/{run_id}.md"


LATEST_RUN_REPORT = f"{RUN_REPORTS}/LATEST.md"
