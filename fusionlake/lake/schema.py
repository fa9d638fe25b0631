"""The canonical model of the staged zone, as data.

Every staged table is one Polars schema below. Feed mappings (transforms/canonical.py) produce
frames with exactly these columns in this order; entity resolution and the marts read them.
Changing a column here is a change of the lake's format: say why in the commit.

Provenance columns come first in every table so that any row can be traced to agency, feed,
drop and source row (docs/architecture.md, "Nothing is lost").
"""

from __future__ import annotations

from typing import TypeVar

import polars as pl

PROVENANCE: dict[str, pl.DataType] = {
    "record_id": pl.String(),  # stable id of the source row: see record_id_expr
    "agency": pl.String(),
    "feed": pl.String(),
    "drop_id": pl.String(),
    "source_row": pl.Int64(),  # 1-based data row number in the raw file (header not counted)
    "source_key": pl.String(),  # value of the feed's key column
    "releasable_to": pl.List(pl.String()),  # agencies that may see this row
}

PERSON_RECORD: dict[str, pl.DataType] = {
    **PROVENANCE,
    "role": pl.String(),  # suspect | victim | detainee | returnee | ...
    "name_original": pl.String(),  # as written (after Zawgyi->Unicode conversion)
    "name_original_raw": pl.String(),  # as received, when it differs (Zawgyi); else null
    "name_script": pl.String(),  # Han | Thai | Lao | Myanmar | Latin | Other
    "name_latin": pl.String(),  # transliterated, upper case, titles stripped, "FAMILY GIVEN"
    "family_name": pl.String(),  # Latin; null where the culture has none (Burmese)
    "given_name": pl.String(),  # Latin
    "name_key_sorted": pl.String(),  # tokens sorted and joined: survives order swaps
    "name_key_phonetic": pl.String(),  # phonetic key of the sorted tokens: survives spelling
    "sex": pl.String(),  # M | F | null
    "birth_date": pl.Date(),  # first day of the known period when precision < day
    "birth_date_precision": pl.String(),  # day | month | year | null
    "nationality": pl.String(),  # ISO 3166-1 alpha-2
    # Home address, where a feed maps one (address.* targets); the resolver compares postcode
    # and street number.
    "street_number": pl.String(),
    "street": pl.String(),
    "district": pl.String(),  # township (MM), amphoe/district (TH), suburb (AU), ...
    "province": pl.String(),  # state, region or province
    "postcode": pl.String(),  # ASCII digits and letters, no spaces
    "normalise_notes": pl.String(),  # why any field of this row could not be normalised
}

#: What one of a record's names is: the name it goes by, the same name in Latin letters (a
#: second column of a register that writes both), or another name (alias, former name).
NAME_ROLES: tuple[str, ...] = ("primary", "latin", "alias")

# Every name of a person record, one row each: the primary name (also in person_record) and any
# Latin or alias columns of the feed. Entity resolution compares records across all their names.
PERSON_NAME: dict[str, pl.DataType] = {
    **PROVENANCE,
    "role": pl.String(),  # primary | latin | alias (NAME_ROLES)
    "name_original": pl.String(),  # as written (after Zawgyi->Unicode conversion)
    "name_script": pl.String(),  # Han | Thai | Lao | Myanmar | Latin | Other
    "name_latin": pl.String(),  # transliterated, upper case, "FAMILY GIVEN"
    "family_name": pl.String(),
    "given_name": pl.String(),
    "name_key_sorted": pl.String(),
    "name_key_phonetic": pl.String(),
}

IDENTIFIER: dict[str, pl.DataType] = {
    **PROVENANCE,
    "kind": pl.String(),  # cn_resident_id | th_national_id | mm_nrc | passport | imei | iccid
    "value_original": pl.String(),
    "value_normalised": pl.String(),  # canonical form; null when it could not be parsed
    "issuing_country": pl.String(),  # ISO alpha-2
    "check_valid": pl.Boolean(),  # check digit / format holds; null when kind has none
    "implied_birth_date": pl.Date(),  # e.g. from a CN resident ID
    "implied_sex": pl.String(),
    "reason": pl.String(),  # why value_normalised is null or check_valid is false
}

PHONE: dict[str, pl.DataType] = {
    **PROVENANCE,
    "relation": pl.String(),  # own | counterparty (e.g. the number that called a victim)
    "phone_original": pl.String(),
    "e164": pl.String(),
    "country": pl.String(),
    "line_type": pl.String(),  # mobile | fixed_line | ... | null
    "reason": pl.String(),
}

ACCOUNT: dict[str, pl.DataType] = {
    **PROVENANCE,
    "relation": pl.String(),  # own | counterparty (e.g. the account a victim paid into)
    "kind": pl.String(),  # bank_account | bank_card | crypto_wallet
    "institution": pl.String(),  # bank name, or chain (TRC20) for wallets
    "value_original": pl.String(),
    "value_normalised": pl.String(),
    "check_valid": pl.Boolean(),  # Luhn / base58check; null when kind has none
    "reason": pl.String(),
}

EVENT: dict[str, pl.DataType] = {
    **PROVENANCE,
    "event_type": pl.String(),  # wanted | arrest | detention | rescue | repatriation | fraud_report
    "event_date": pl.Date(),
    "place": pl.String(),  # canonical name (gazetteer), else as written, transliterated
    "place_id": pl.String(),  # gazetteer id (transforms/data/places.yaml); null when unknown
    "place_original": pl.String(),  # as written
    "country": pl.String(),  # ISO alpha-2
    "compound": pl.String(),  # canonical compound name (KK Park, Shwe Kokko, ...)
    "compound_id": pl.String(),  # gazetteer id; null when the compound is not in it
    "compound_original": pl.String(),  # as written
    "case_ref": pl.String(),
    "amount": pl.Float64(),
    "currency": pl.String(),  # ISO 4217
    "flight": pl.String(),
}

# ---------------------------------------------------------------------------------------------
# Entity resolution output (transforms/resolve.py produces these; the marts read them).

ENTITY_RECORD: dict[str, pl.DataType] = {
    "entity_id": pl.String(),  # stable across runs: see transforms/resolve.py
    "record_id": pl.String(),
}

RECORD_LINK: dict[str, pl.DataType] = {
    "record_id_l": pl.String(),
    "record_id_r": pl.String(),
    "rule": pl.String(),  # identifier | probabilistic | steward
    "match_probability": pl.Float64(),
    "match_weight": pl.Float64(),
    "agreed": pl.List(pl.String()),  # fields that agreed
    "disagreed": pl.List(pl.String()),  # fields that disagreed
    # JSON {"identifiers": ..., "weights": {...}}: the identifier values shared and each
    # comparison's weight. The values compared (each record's RECORD_FACT) are not repeated
    # here, in every link of a record: the marts join them in (sql/mart/40_links.sql).
    "evidence": pl.String(),
}

# Per record: the values its links are explained with (what the resolver compared, with the
# drop each came from). Kept once per record instead of in each of its links' evidence: at a
# million people that JSON was most of the resolution's bytes, written again by every run.
RECORD_FACT: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "agency": pl.String(),
    "feed": pl.String(),
    "drop_id": pl.String(),
    "source_row": pl.Int64(),
    "name_original": pl.String(),
    "name_latin": pl.String(),
    "birth_date": pl.Date(),  # the effective one (a valid identifier's where it tells more)
    "birth_date_precision": pl.String(),
    "sex": pl.String(),
    "nationality": pl.String(),
    "national_id": pl.String(),
    "passport_no": pl.String(),
    "other_id": pl.String(),
}

ENTITY_LINK: dict[str, pl.DataType] = {
    "entity_id_l": pl.String(),
    "entity_id_r": pl.String(),
    "via": pl.String(),  # phone | account | wallet | compound | case
    "value": pl.String(),  # the shared normalised value
    "weight": pl.Float64(),  # lowered for hubs (values shared by many records)
    "is_hub": pl.Boolean(),
    # (no evidence: each mart lists the records on each side that its audience may see)
}

ENTITY_HISTORY: dict[str, pl.DataType] = {
    "old_entity_id": pl.String(),
    "new_entity_id": pl.String(),
    "change": pl.String(),  # merge | split | new
    "reason": pl.String(),
    "changed_at": pl.Datetime("us", "UTC"),
}

REVIEW_PAIR: dict[str, pl.DataType] = {
    "record_id_l": pl.String(),
    "record_id_r": pl.String(),
    "match_probability": pl.Float64(),
    "priority": pl.Float64(),  # most informative first
    "reason": pl.String(),
    "evidence": pl.String(),
}

# Written beside the complete tables by an incremental resolution only (none after a full one):
# every record whose entity, record links, review pairs or history may differ from the
# previous version. A record absent keeps its entity id, and its entity its records, record
# links, review pairs and history rows; entity_link rows differ only for the association values
# a record listed here holds. Consumers (the marts) update from it instead of rebuilding.
RESOLUTION_DELTA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "entity_id_before": pl.String(),  # null: a record new to this audience
    "entity_id_after": pl.String(),
}

DECISION: dict[str, pl.DataType] = {
    "record_id_l": pl.String(),
    "record_id_r": pl.String(),
    "decision": pl.String(),  # same | different
    "decided_by": pl.String(),
    "reason": pl.String(),
    "decided_at": pl.Datetime("us", "UTC"),
}

RESOLUTION_TABLES: dict[str, dict[str, pl.DataType]] = {
    "entity_record": ENTITY_RECORD,
    "record_link": RECORD_LINK,
    "entity_link": ENTITY_LINK,
    "entity_history": ENTITY_HISTORY,
    "review_pair": REVIEW_PAIR,
    "record_fact": RECORD_FACT,
    "decision": DECISION,
    "resolution_delta": RESOLUTION_DELTA,
}


TABLES: dict[str, dict[str, pl.DataType]] = {
    "person_record": PERSON_RECORD,
    "person_name": PERSON_NAME,
    "identifier": IDENTIFIER,
    "phone": PHONE,
    "account": ACCOUNT,
    "event": EVENT,
}


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def _schema(table: str) -> dict[str, pl.DataType]:
    return TABLES[table] if table in TABLES else RESOLUTION_TABLES[table]


def empty(table: str) -> pl.DataFrame:
    """An empty frame of a staged or resolution table, with the right schema."""
    return pl.DataFrame(schema=_schema(table))


def conform(frame: Frame, table: str) -> Frame:
    """Select and cast a frame (or a lazy one) to a table's schema; missing columns become
    nulls."""
    return conform_columns(frame, _schema(table))


def conform_columns(frame: Frame, columns: dict[str, pl.DataType]) -> Frame:
    """Select and cast a frame (or a lazy one) to the given columns; missing ones become nulls."""
    present = set(frame.collect_schema().names())
    # A literal alone would make one row of a frame without columns (an empty input); with no
    # column to take the height from, the missing ones repeat for the frame's height instead.
    missing = (lambda dtype: pl.lit(None, dtype)) if present else (
        lambda dtype: pl.repeat(None, pl.len(), dtype=dtype))
    return frame.select(
        [
            (pl.col(name).cast(dtype) if name in present else missing(dtype)).alias(name)
            for name, dtype in columns.items()
        ]
    )


def record_id_expr(drop_id: str) -> pl.Expr:
    """Stable record id, ``<drop_id>:<source_row>``: the same source row always gets the same id.

    drop_id is derived from the drop's content hash, so the id depends only on the bytes
    received and the row's position, never on when or how often the drop was processed.
    """
    return pl.concat_str([pl.lit(drop_id + ":"), pl.col("source_row").cast(pl.String)])


def rows_of(frame: pl.LazyFrame, ids: pl.Series) -> pl.LazyFrame:
    """The rows of ``frame`` that belong to the records ``ids``.

    A record's staged rows all lie in its drop's files, and its id begins with that drop's id
    (:func:`record_id_expr`), so the filter names the drops too when ``frame`` has a
    ``drop_id``: a scan of the lake then skips every other drop's files on their statistics,
    where a filter on ``record_id`` alone reads the ids of every staged row (the 995 records
    of a new drop on a 1M-people lake of large drops: 0.18 s for the six tables against
    0.012 s; on a lake of 150 small drops, 0.19 s against 0.14 s: a file is skipped on the
    statistics in its footer, so every footer is still read). Ids
    of another form (and a frame without ``drop_id``) are matched on ``record_id`` alone, and
    a row without a drop_id is kept whenever its record is named.
    """
    ids = ids.cast(pl.String)
    keep = pl.col("record_id").is_in(ids.implode())
    drops = ids.str.extract(r"^(.+):[0-9]+$")
    if drops.null_count() or "drop_id" not in frame.collect_schema():
        return frame.filter(keep)
    named = pl.col("drop_id").is_in(drops.unique().implode()) | pl.col("drop_id").is_null()
    return frame.filter(named & keep)


__all__ = [
    "ACCOUNT",
    "EVENT",
    "IDENTIFIER",
    "NAME_ROLES",
    "PERSON_NAME",
    "PERSON_RECORD",
    "PHONE",
    "PROVENANCE",
    "RECORD_FACT",
    "RESOLUTION_DELTA",
    "RESOLUTION_TABLES",
    "TABLES",
    "conform",
    "conform_columns",
    "empty",
    "record_id_expr",
    "rows_of",
]
