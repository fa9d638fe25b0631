"""Feed mapping: one validated drop, as read, to the canonical staged tables.

Public surface: :func:`to_canonical` and :data:`TARGETS`.

The feed definition (feeds/<agency>/<feed>.yaml, docs/feeds.md) is data, checked completely by
the feed contract (fusionlake.lake.feeds) when it is loaded; this module is the one piece of code
that compiles it into work: each column is passed, with its options, to the normaliser of its
``to:`` target (names, sex, dates, countries, identifiers, phones, accounts, event fields). Every
normaliser keeps the value as written beside the normalised one and says why a value failed;
those reasons are gathered per source row into ``person_record.normalise_notes``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl

from fusionlake.lake import schema
from fusionlake.lake.feeds import TARGET_OPTIONS
from transforms.accounts import normalise_accounts
from transforms.countries import country_reason, to_iso2
from transforms.dates import parse_dates
from transforms.identifiers import normalise_identifiers, normalise_mixed_identifiers
from transforms.names import normalise_names
from transforms.phones import normalise_phones
from transforms.places import canonical_places
from transforms.scripts import ascii_digits


class FeedLike(Protocol):
    """The attributes of fusionlake.lake.feeds.Feed that the mapping reads."""

    agency: str
    feed: str
    source_key: str
    record: str
    role: str | None
    releasable_to: list[str]
    defaults: dict
    event: dict | None
    columns: dict[str, dict]


#: Column targets (``to:``) and the options each accepts, as the feed contract declares them.
TARGETS: dict[str, frozenset[str]] = TARGET_OPTIONS

#: Sex values every feed understands, on top of its own ``values:`` map (keys lower-cased).
SEX_VALUES: dict[str, str] = {
    "m": "M", "male": "M", "f": "F", "female": "F",
    "男": "M", "女": "F", "ชาย": "M", "หญิง": "F", "ကျား": "M", "မ": "F",
    "က်ား": "M",  # ကျား typed in Zawgyi (ya-pin as U+103A)
    # the agencies that join later: Khmer, Lao, Vietnamese (a Khmer export had ប្រុស/ស្រី
    # beside M/F, and `feeds draft` left the column out as "46% known sex forms")
    "ប្រុស": "M", "ស្រី": "F", "ຊາຍ": "M", "ຍິງ": "F", "nam": "M", "nữ": "F",
}  # fmt: skip

_DEFAULT_DATE_FORMATS = ["iso"]


@dataclass
class _Plan:
    """A feed's columns grouped by target, checked against the drop before any data is touched."""

    by_target: dict[str, list[tuple[str, dict]]] = field(default_factory=lambda: defaultdict(list))

    def one(self, target: str) -> tuple[str, dict] | None:
        cols = self.by_target.get(target, [])
        return cols[0] if cols else None


def _plan(feed: FeedLike, frame: pl.DataFrame) -> _Plan:
    """Group the feed's columns by target; raise naming a declared column the drop lacks.

    The feed contract (fusionlake.lake.feeds) has already checked targets, options and kinds
    when the feed was loaded; only what needs the drop itself is checked here.
    """
    plan = _Plan()
    where = f"feed {feed.agency}/{feed.feed}"
    for column, options in feed.columns.items():
        target = options["to"]
        if target != "ignore" and column not in frame.columns:
            raise ValueError(f"{where}: column {column!r} ({target}) is missing from the drop")
        plan.by_target[target].append((column, options))
    if feed.source_key not in frame.columns:
        raise ValueError(f"{where}: source_key column {feed.source_key!r} is missing from the drop")
    return plan


def _with_absent_optional_columns(frame: pl.DataFrame, feed: FeedLike) -> pl.DataFrame:
    """The drop with each ``optional`` column it lacks added as nulls: no value, not an error."""
    absent = [c for c, opts in feed.columns.items()
              if opts.get("optional") and c not in frame.columns]
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in absent)


def cap_releasable_to(frame: pl.LazyFrame,
                      caps: dict[str, tuple[list[str] | None, dict[str, list[str]]]]
                      ) -> pl.LazyFrame:
    """Rows staged earlier under the sharing agreements as they are now: each row of an agency
    in ``caps`` (agency -> (the cap of feeds not named, {feed: its cap}), the agency itself in
    each) loses the audiences beyond its feed's cap, in the order they were. An agreement
    narrowed after rows were shared withdraws them from the next marts; it cannot widen what a
    narrower one capped at staging.

    >>> frame = pl.LazyFrame({"agency": ["th_imm"] * 3, "feed": ["detentions", "visas", "x"],
    ...                       "releasable_to": [["th_imm", "cn_mps", "mm_police"], ["th_imm"],
    ...                                         ["th_imm", "cn_mps"]]})
    >>> caps = {"th_imm": (["th_imm"], {"detentions": ["mm_police", "th_imm"]})}
    >>> cap_releasable_to(frame, caps).collect()["releasable_to"].to_list()
    [['th_imm', 'mm_police'], ['th_imm'], ['th_imm']]
    """
    column = pl.col("releasable_to")
    capped = None

    def keep(cap: list[str]) -> pl.Expr:
        return column.list.eval(pl.element().filter(pl.element().is_in(list(cap))))

    for agency, (default, feeds) in sorted(caps.items()):
        rules = [((pl.col("agency") == agency) & (pl.col("feed") == feed), cap)
                 for feed, cap in sorted(feeds.items())]
        if default is not None:  # after the feeds it names: theirs come first
            rules.append((pl.col("agency") == agency, default))
        for where, cap in rules:
            capped = (pl.when(where) if capped is None else capped.when(where)).then(keep(cap))
    if capped is None:
        return frame
    return frame.with_columns(capped.otherwise(column).alias("releasable_to"))


def _releasable_to(feed: FeedLike, spec: tuple[str, dict] | None) -> pl.Expr:
    """Who may see each row: the feed's ``releasable_to``, or the row's own list where the feed
    maps a column to it (blank: the feed's); always the sending agency, and never beyond the
    agency's sharing agreement (``share_limit``)."""
    default = pl.lit(list(feed.releasable_to), dtype=pl.List(pl.String))
    if spec is None:
        return default
    column, options = spec
    ids = _releasable_ids(column, options)
    chosen = pl.when(ids.list.len() > 0).then(ids).otherwise(default)
    chosen = chosen.list.concat(pl.lit([feed.agency], dtype=pl.List(pl.String)))
    limit = getattr(feed, "share_limit", None)
    if limit is not None:
        chosen = chosen.list.set_intersection(pl.lit(list(limit), dtype=pl.List(pl.String)))
    known = getattr(feed, "agencies", None)
    if known is not None:  # an id no feed set knows is a typo: withheld, not a new audience
        chosen = chosen.list.set_intersection(pl.lit(sorted(known), dtype=pl.List(pl.String)))
    return chosen.list.unique().list.sort()


def _releasable_ids(column: str, options: dict) -> pl.Expr:
    """The agency ids a row's own ``releasable_to`` cell names (lower case, blanks left out)."""
    return (pl.col(column).cast(pl.String).str.to_lowercase()
            .str.split(options.get("split", ","))
            .list.eval(pl.element().str.strip_chars())
            .list.eval(pl.element().filter(pl.element().str.len_chars() > 0)))


def _releasable_note(frame: pl.DataFrame, feed: FeedLike,
                     spec: tuple[str, dict] | None) -> pl.Series | None:
    """Per row, the agency ids its ``releasable_to`` cell names that no feed or sharing
    agreement declares, which :func:`_releasable_to` left out: for the steward to see."""
    known = getattr(feed, "agencies", None)
    if spec is None or known is None:
        return None
    column, options = spec
    unknown = _releasable_ids(column, options).list.set_difference(
        pl.lit(sorted(known), dtype=pl.List(pl.String))).list.unique().list.sort()
    return frame.select(
        pl.when(unknown.list.len() > 0)
        .then(pl.lit(f"{column}: not released to ") + unknown.list.join(", ")
              + pl.lit(", no agency of these feeds"))
        .alias("note")).to_series()


def _clean(s: pl.Series) -> pl.Series:
    """Strip surrounding whitespace; blank means no value."""
    s = s.cast(pl.String).str.strip_chars()
    return pl.select(pl.when(s.str.len_chars() > 0).then(s)).to_series().alias(s.name)


def _dates(frame: pl.DataFrame, column: str, options: dict) -> tuple[pl.DataFrame, pl.Series]:
    """A date column parsed with its feed options (formats, calendar), and its notes."""
    parsed = parse_dates(
        frame[column],
        options.get("formats") or _DEFAULT_DATE_FORMATS,
        options.get("calendar", "gregorian"),
    )
    return parsed, _note(column, parsed["reason"])


def _note(column: str, reason: pl.Series) -> pl.Series:
    """A per-row note "column: reason" (null where there is no reason)."""
    return pl.select(pl.lit(f"{column}: ") + reason.cast(pl.String)).to_series()


# ---------------------------------------------------------------------------------------------
# Person fields


def _sex(values: pl.Series, column: str, options: dict) -> tuple[pl.Series, pl.Series]:
    """Map sex values through the feed's ``values:`` map, then the common M/F forms."""
    mapping = {str(k).strip().lower(): v for k, v in SEX_VALUES.items()}
    mapping.update({str(k).strip().lower(): v for k, v in (options.get("values") or {}).items()})
    key = _clean(values).str.to_lowercase()
    sex = key.replace_strict(mapping, default=None, return_dtype=pl.String)
    reason = pl.select(
        pl.when(key.is_not_null() & sex.is_null()).then(
            pl.format("'{}' is not a known sex value", values)
        )
    ).to_series()
    return sex, _note(column, reason)


def _nationality(values: pl.Series, column: str, options: dict, default: str | None):
    """Nationality in any language or code -> ISO alpha-2 (transforms.countries.to_iso2)."""
    cleaned = _clean(values)
    mapping = options.get("values")
    if mapping:
        cleaned = cleaned.replace(mapping)
    iso = to_iso2(cleaned).cast(pl.String)
    reason = country_reason(cleaned)
    if default:
        iso = iso.fill_null(default)
    return iso, _note(column, reason)


_NAME_COLUMNS = ("name_original", "name_script", "name_latin", "family_name", "given_name",
                 "name_key_sorted", "name_key_phonetic")


def _names(plan: _Plan, frame: pl.DataFrame, nationality: pl.Series) -> tuple[pl.DataFrame, list]:
    """The primary name of each row: the ``person.name`` column whose role is primary, else the
    name parts joined."""
    name = next(((c, o) for c, o in plan.by_target.get("person.name", [])
                 if o.get("name_role", "primary") == "primary"), None)
    family = plan.one("person.family_name")
    given = plan.one("person.given_name")
    if name:
        column, options = name
        values = frame[column]
        order = options.get("name_order", "none")
    elif family or given:
        # Name parts apart: join them family first so the name normaliser splits them back.
        parts = [frame[c] for c, _ in (family, given) if c]
        values = pl.select(
            pl.concat_str([_clean(p) for p in parts], separator=" ", ignore_nulls=True)
        ).to_series()
        column = "/".join(c for c, _ in (family, given) if c)
        order = "family_first" if family and given else "none"
    else:
        return pl.DataFrame(), []
    names = normalise_names(values.cast(pl.String), order, nationality)
    notes = [_note(column, names["reason"])] if "reason" in names.columns else []
    return names.drop("reason", strict=False), notes


def _other_names(plan: _Plan, frame: pl.DataFrame, nationality: pl.Series):
    """The Latin and alias names of each row (``person.name`` columns with another role): one
    frame per column with ``row`` and ``role``, blanks left out, and their notes."""
    tables, notes = [], []
    for column, options in plan.by_target.get("person.name", []):
        role = options.get("name_role", "primary")
        if role == "primary":
            continue
        names = normalise_names(frame[column].cast(pl.String), options.get("name_order", "none"),
                                nationality)
        present = _clean(frame[column]).is_not_null()
        # a blank alias is no name, not a name that failed
        notes.append(_note(column, names["reason"].set(~present, None)))
        tables.append(names.select(_NAME_COLUMNS).with_columns(
            pl.Series("row", range(frame.height), dtype=pl.Int64), pl.lit(role).alias("role"),
        ).filter(present))
    return tables, notes


def _address(plan: _Plan, frame: pl.DataFrame) -> dict[str, pl.Series]:
    """Address parts (``address.*`` targets) as person_record columns.

    Street lines from several columns are joined with ", "; postcodes and street numbers get
    ASCII digits and upper case, postcodes lose their spaces (``10 110`` and ``10110`` agree).
    """
    out: dict[str, pl.Series] = {}
    for target in ("address.street_number", "address.street", "address.district",
                   "address.province", "address.postcode"):
        specs = plan.by_target.get(target, [])
        if not specs:
            continue
        parts = [_clean(frame[c]).str.replace_all(r"\s+", " ") for c, _ in specs]
        value = pl.select(pl.concat_str(parts, separator=", ", ignore_nulls=True)).to_series()
        if target in ("address.postcode", "address.street_number"):
            value = ascii_digits(value.str.normalize("NFKC")).str.to_uppercase()
        if target == "address.postcode":
            value = value.str.replace_all(r"[\s\-]", "")
        out[target.split(".", 1)[1]] = pl.select(
            pl.when(value.str.len_chars() > 0).then(value)).to_series()
    return out


# ---------------------------------------------------------------------------------------------
# Child tables


def _identifiers(plan: _Plan, frame: pl.DataFrame, nationality: pl.Series | None):
    tables, notes = [], []
    for column, options in plan.by_target.get("identifier", []):
        # the contract allows only person.nationality here
        if options.get("issuing_country_from"):
            country: pl.Series | str | None = nationality
        else:
            country = options.get("issuing_country")
        kind = options["kind"]
        if isinstance(kind, str):
            ids = normalise_identifiers(frame[column], kind, country).with_columns(
                pl.lit(kind).alias("kind"))
        else:  # a column of several kinds: decided per value (format and check digit)
            ids = normalise_mixed_identifiers(frame[column], list(kind), country)
        notes.append(_note(column, ids["reason"]))
        present = _clean(frame[column]).is_not_null()
        tables.append(ids.with_columns(pl.Series("row", range(len(ids)))).filter(present))
    return tables, notes


def _phones(plan: _Plan, frame: pl.DataFrame, feed: FeedLike):
    tables, notes = [], []
    for column, options in plan.by_target.get("phone", []):
        region = options.get("region") or (feed.defaults or {}).get("phone_region")
        phones = normalise_phones(frame[column], region, options.get("split"))
        tables.append(phones.with_columns(pl.lit(options.get("relation", "own")).alias("relation")))
        per_row = (
            phones.filter(pl.col("reason").is_not_null())
            .group_by("row", maintain_order=True)
            .agg(pl.col("reason").str.join("; "))
        )
        notes.append(
            pl.DataFrame({"row": range(frame.height)}, schema={"row": pl.Int64})
            .join(per_row, on="row", how="left", maintain_order="left")
            .select(pl.lit(f"{column}: ") + pl.col("reason"))
            .to_series()
        )
    return tables, notes


def _accounts(plan: _Plan, frame: pl.DataFrame):
    tables, notes = [], []
    for column, options in plan.by_target.get("account", []):
        inst_col = options.get("institution_column")
        if inst_col and inst_col not in frame.columns:
            raise ValueError(
                f"column {column!r}: institution_column {inst_col!r} is not in the drop"
            )
        institution = (
            _clean(frame[inst_col])
            if inst_col
            else options.get("institution") or options.get("chain")
        )
        acc = normalise_accounts(frame[column], options["kind"], institution)
        notes.append(_note(column, acc["reason"]))
        present = _clean(frame[column]).is_not_null()
        tables.append(
            acc.with_columns(
                pl.lit(options.get("relation", "own")).alias("relation"),
                pl.Series("row", range(len(acc))),
            ).filter(present)
        )
    return tables, notes


def _amount(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Money amounts as written (12,345.00, ¥1,000, 1 000) -> Float64."""
    cleaned = _clean(values).str.replace_all(r"[,\s¥￥$฿]|CNY|RMB|THB|USD|MMK|元", "")
    amount = cleaned.cast(pl.Float64, strict=False)
    reason = pl.select(
        pl.when(cleaned.is_not_null() & amount.is_null()).then(
            pl.format("'{}' is not an amount", values)
        )
    ).to_series()
    return amount, reason


def _event(plan: _Plan, frame: pl.DataFrame, feed: FeedLike) -> tuple[pl.DataFrame | None, list]:
    if not feed.event:
        return None, []
    notes = []
    cols: dict[str, Any] = {
        "event_type": pl.Series([feed.event.get("type")] * frame.height, dtype=pl.String),
        "country": pl.Series([feed.event.get("country")] * frame.height, dtype=pl.String),
    }
    date = plan.one("event.date")
    if date:
        parsed, note = _dates(frame, *date)
        cols["event_date"] = parsed["date"]
        notes.append(note)
    for target, out in (("event.place", "place"), ("event.compound", "compound")):
        spec = plan.one(target)
        if spec:  # the gazetteer's id and canonical name; the value as written is kept
            places = canonical_places(frame[spec[0]])
            cols[out] = places["place"]
            cols[f"{out}_id"] = places["place_id"]
            cols[f"{out}_original"] = places["place_original"]
    for target, out in (("event.case_ref", "case_ref"), ("event.flight", "flight")):
        spec = plan.one(target)
        if spec:
            cols[out] = _clean(frame[spec[0]]).str.replace_all(r"\s+", " ")
    amount = plan.one("event.amount")
    if amount:
        cols["amount"], reason = _amount(frame[amount[0]])
        notes.append(_note(amount[0], reason))
    currency = plan.one("event.currency")
    default_currency = (feed.defaults or {}).get("currency")
    if currency:
        cols["currency"] = _clean(frame[currency[0]]).str.to_uppercase()
        if default_currency:
            cols["currency"] = cols["currency"].fill_null(default_currency)
    elif default_currency:
        cols["currency"] = pl.Series([default_currency] * frame.height, dtype=pl.String)
    return pl.DataFrame(cols), notes


# ---------------------------------------------------------------------------------------------


def to_canonical(frame: pl.DataFrame, feed: FeedLike, drop_id: str) -> dict[str, pl.DataFrame]:
    """Map one validated drop to the canonical staged tables.

    Args:
        frame: the drop as read (fusionlake.pipeline.read.read_drop): source columns as
            pl.String, values
            exactly as in the file, plus ``source_row`` (Int64, 1-based).
        feed: its feed definition (fusionlake.lake.feeds.Feed).
        drop_id: the drop's id (content hash); record ids are ``<drop_id>:<source_row>``.

    Returns:
        ``{"person_record", "person_name", "identifier", "phone", "account", "event"}``, each
        conformed to fusionlake.lake.schema. Every row carries provenance and ``releasable_to``
        from the feed.
        person_record has one row per source row (when the feed's ``record`` is ``person``);
        person_name one row per name of a row (its primary name, then its Latin and alias
        names; blanks left out);
        identifier, phone and account one row per non-blank value; event one row per source row
        when the feed names an event.

    Raises:
        ValueError: a mapped column that is not ``optional`` is missing from the drop (the
            message names the feed and the column).
    """
    frame = _with_absent_optional_columns(frame, feed)
    plan = _plan(feed, frame)
    defaults = feed.defaults or {}
    n = frame.height
    base = frame.select(
        schema.record_id_expr(drop_id).alias("record_id"),
        pl.lit(feed.agency).alias("agency"),
        pl.lit(feed.feed).alias("feed"),
        pl.lit(drop_id).alias("drop_id"),
        pl.col("source_row").cast(pl.Int64),
        pl.col(feed.source_key).cast(pl.String).str.strip_chars().alias("source_key"),
        _releasable_to(feed, plan.one("releasable_to")).alias("releasable_to"),
    )
    notes: list[pl.Series] = []
    release_note = _releasable_note(frame, feed, plan.one("releasable_to"))
    if release_note is not None:
        notes.append(release_note)

    nat_spec = plan.one("person.nationality")
    nationality: pl.Series | None
    if nat_spec:
        nationality, note = _nationality(
            frame[nat_spec[0]], nat_spec[0], nat_spec[1], defaults.get("nationality")
        )
        notes.append(note)
    elif defaults.get("nationality"):
        nationality = pl.Series([defaults["nationality"]] * n, dtype=pl.String)
    else:
        nationality = None

    person: dict[str, Any] = {}
    if nationality is not None:
        person["nationality"] = nationality
    sex_spec = plan.one("person.sex")
    if sex_spec:
        person["sex"], note = _sex(frame[sex_spec[0]], *sex_spec)
        notes.append(note)
    birth_spec = plan.one("person.birth_date")
    if birth_spec:
        parsed, note = _dates(frame, *birth_spec)
        person["birth_date"] = parsed["date"]
        person["birth_date_precision"] = parsed["precision"]
        notes.append(note)
    names, name_notes = _names(
        plan,
        frame,
        nationality if nationality is not None else pl.Series([None] * n, dtype=pl.String),
    )
    notes = name_notes + notes

    name_nat = (nationality if nationality is not None
                else pl.Series([None] * n, dtype=pl.String))
    other_names, other_name_notes = _other_names(plan, frame, name_nat)
    notes += other_name_notes
    person.update(_address(plan, frame))

    id_tables, id_notes = _identifiers(plan, frame, nationality)
    phone_tables, phone_notes = _phones(plan, frame, feed)
    account_tables, account_notes = _accounts(plan, frame)
    event, event_notes = _event(plan, frame, feed)
    notes += id_notes + phone_notes + account_notes + event_notes

    indexed = base.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))

    def attach(tables: list[pl.DataFrame], table: str) -> pl.DataFrame:
        if not tables:
            return schema.empty(table)
        rows = pl.concat(
            [t.with_columns(pl.col("row").cast(pl.Int64)) for t in tables], how="diagonal_relaxed"
        )
        joined = rows.join(indexed, on="row", how="left").sort(["row"], maintain_order=True)
        return schema.conform(joined, table)

    if feed.record == "person":
        note_frame = pl.DataFrame(
            [note.alias(f"n{i}") for i, note in enumerate(notes)]
            or [pl.Series("n", [None] * n, dtype=pl.String)]
        )
        combined = note_frame.select(
            pl.concat_str(pl.all(), separator="; ", ignore_nulls=True).alias("normalise_notes")
        ).with_columns(
            pl.when(pl.col("normalise_notes").str.len_chars() > 0).then(pl.col("normalise_notes"))
        )
        parts = [base, names, pl.DataFrame(person), combined]
        person_frame = pl.concat([p for p in parts if p.width], how="horizontal").with_columns(
            pl.lit(feed.role, dtype=pl.String).alias("role")
        )
        person_record = schema.conform(person_frame, "person_record")
        if "name_original" in person_frame.columns:
            primary = person_frame.select(
                [c for c in _NAME_COLUMNS if c in person_frame.columns]).with_columns(
                pl.Series("row", range(n), dtype=pl.Int64), pl.lit("primary").alias("role"))
            other_names = [primary.filter(pl.col("name_original").is_not_null()), *other_names]
        person_name = attach(other_names, "person_name").sort(
            "source_row", pl.col("role").replace_strict(
                {r: i for i, r in enumerate(schema.NAME_ROLES)}, return_dtype=pl.Int8),
            maintain_order=True)
    else:
        person_record = schema.empty("person_record")
        person_name = schema.empty("person_name")

    return {
        "person_record": person_record,
        "person_name": person_name,
        "identifier": attach(id_tables, "identifier"),
        "phone": attach(phone_tables, "phone"),
        "account": attach(account_tables, "account"),
        "event": schema.conform(pl.concat([base, event], how="horizontal"), "event")
        if event is not None
        else schema.empty("event"),
    }


__all__ = ["TARGETS", "to_canonical"]
