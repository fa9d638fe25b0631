"""The feed contract: one YAML file per agency feed (docs/feeds.md), checked completely at load.

The project's own feeds live in ``feeds/<agency>/<feed>.yaml``; folders listed in
``FUSIONLAKE_FEEDS_PATH`` (``:``-separated) and ``extra_paths`` are searched the same way, so a
new agency feed is onboarded with a feed file (and, if a steward wants, a suite override beside
it), no Python.

This module is the only definition of what a feed file may say. :class:`FeedFile` (pydantic)
checks every key, every column target and every option of each target, with the allowed values
listed here (:data:`TARGET_OPTIONS`, :data:`IDENTIFIER_KINDS`, :data:`ACCOUNT_KINDS`, ...);
:func:`parse_feed` then checks the references between keys (source_key, institution_column,
issuing_country_from, one column per single-valued person field). The mapping
(transforms/canonical.py) and the suites (expectations/suites.py) trust a loaded :class:`Feed`;
the transforms' own registries are tested to equal the lists here.

A file with an error is reported (path, offending key, allowed values) in :attr:`FeedSet.errors`
and the other feeds still load, so a typo fails ``fusionlake feeds`` and CI rather than a
scheduled run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
)

from fusionlake.lake.settings import PROJECT_ROOT

FEEDS_DIR = PROJECT_ROOT / "feeds"

# ---------------------------------------------------------------------------------------------
# The allowed values. transforms/ keeps a registry for several of these (the functions that do
# the work); tests/test_feeds.py checks that each registry equals its list here.

Format = Literal["csv", "xlsx", "jsonl", "parquet"]
Encoding = Literal["utf-8", "utf-8-sig", "gb18030", "cp874", "tis-620", "cp1258", "cp1252",
                   "detect"]
RecordKind = Literal["person"]
Supersede = Literal["none", "by_source_key"]
EventType = Literal["wanted", "arrest", "detention", "rescue", "repatriation", "fraud_report"]
#: transforms.identifiers.KINDS
IdentifierKind = Literal["cn_resident_id", "th_national_id", "mm_nrc", "passport", "imei",
                         "iccid", "bank_card", "crypto_wallet", "febrl_ssid"]
#: transforms.accounts.ACCOUNT_KINDS
AccountKind = Literal["bank_account", "bank_card", "crypto_wallet"]
#: transforms.dates.CALENDARS
Calendar = Literal["gregorian", "buddhist"]
#: transforms.names.NAME_ORDERS
NameOrder = Literal["family_first", "given_first", "none"]
#: fusionlake.lake.schema.NAME_ROLES: what one of a record's names is
NameRole = Literal["primary", "latin", "alias"]
Relation = Literal["own", "counterparty"]
Sex = Literal["M", "F"]

FORMATS: tuple[str, ...] = get_args(Format)
ENCODINGS: tuple[str, ...] = get_args(Encoding)
RECORDS: tuple[str, ...] = get_args(RecordKind)
SUPERSEDE: tuple[str, ...] = get_args(Supersede)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
IDENTIFIER_KINDS: tuple[str, ...] = get_args(IdentifierKind)
ACCOUNT_KINDS: tuple[str, ...] = get_args(AccountKind)
CALENDARS: tuple[str, ...] = get_args(Calendar)
NAME_ORDERS: tuple[str, ...] = get_args(NameOrder)
NAME_ROLES: tuple[str, ...] = get_args(NameRole)
RELATIONS: tuple[str, ...] = get_args(Relation)
#: Named date forms a ``formats:`` list may use besides strptime patterns (transforms.dates).
NAMED_DATE_FORMATS: tuple[str, ...] = ("thai_month", "chinese", "iso", "year_only",
                                       "excel_serial")
#: strptime directives a date pattern may use (transforms.dates compiles exactly these).
DATE_DIRECTIVES = "demYybB"
#: Person fields a row has once: two columns mapped to one of them would be ambiguous.
SINGLE_VALUED_TARGETS = ("person.sex", "person.birth_date", "person.nationality",
                         "address.street_number", "address.district", "address.province",
                         "address.postcode", "releasable_to")
#: A sharing agreement beside an agency's feed files (feeds/<agency>/sharing.yaml).
SHARING_FILE = "sharing.yaml"
#: Address parts (the person's home address), mapped to person_record columns of the same name.
ADDRESS_TARGETS = ("address.street_number", "address.street", "address.district",
                   "address.province", "address.postcode")


# ---------------------------------------------------------------------------------------------
# Small value types


def _lower_id(value: str) -> str:
    if not value or value != value.lower() or "/" in value:
        raise ValueError(f"must be a lower-case id without '/', got {value!r}")
    return value


def _date_format(value: str) -> str:
    """A named form or a strptime pattern of the directives transforms.dates understands."""
    if value in NAMED_DATE_FORMATS:
        return value
    codes = re.findall(r"%(.)", value.replace("%%", ""))
    if not codes:
        raise ValueError(f"{value!r} is neither a named form ({', '.join(NAMED_DATE_FORMATS)}) "
                         "nor a strptime pattern")
    for code in codes:
        if code not in DATE_DIRECTIVES:
            raise ValueError(f"{value!r}: %{code} is not supported; use "
                             f"{' '.join('%' + c for c in DATE_DIRECTIVES)}")
    groups = [{"e": "d", "B": "b"}.get(c, c) for c in codes]  # %e is %d, %B is %b
    if len(set(groups)) < len(groups):
        raise ValueError(f"{value!r} gives one part of the date twice")
    return value


def _code(letters: int, standard: str, example: str):
    """A check that a value is an upper-case code of ``letters`` letters."""

    def check(value: str) -> str:
        if not re.fullmatch(rf"[A-Z]{{{letters}}}", value):
            raise ValueError(f"must be an {standard} code such as {example}, got {value!r}")
        return value

    return check


def _plausible_bound(value: Any) -> dt.date | str:
    """An ISO date (YAML may already have read it as one) or ``today``."""
    if isinstance(value, dt.date) or value == "today":
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"must be an ISO date (YYYY-MM-DD) or today, got {value!r}") from None


# YAML reads `1: M` or `2025-01-01` as int / date; source values and column names are text.
Text = Annotated[str, BeforeValidator(lambda v: v if isinstance(v, str) else str(v))]
LowerId = Annotated[str, AfterValidator(_lower_id)]
CountryCode = Annotated[str, AfterValidator(_code(2, "ISO 3166-1 alpha-2", "TH"))]
CurrencyCode = Annotated[str, AfterValidator(_code(3, "ISO 4217", "THB"))]
DateFormat = Annotated[str, AfterValidator(_date_format)]
PlausibleBound = Annotated[Any, AfterValidator(_plausible_bound)]


class _Strict(BaseModel):
    """Unknown keys are errors, and nothing is coerced that a steward did not write."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Columns: one model per target, told apart by ``to:``


class _Column(_Strict):
    """Options every column takes. The first four drive the feed's suite (expectations/)."""

    required: bool = Field(False, description="a value in every row (else quarantined)")
    unique: bool = Field(False, description="no value repeats within a drop (else quarantined)")
    optional: bool = Field(False, description="the column may be absent from a drop")
    max_length: PositiveInt | None = Field(None, description="longest value (default 4096)")
    description: str | None = Field(None, description="what the column holds, for people")
    note: str | None = Field(None, description="a steward's remark, for people")


class _DateColumn(_Column):
    calendar: Calendar = Field("gregorian", description="buddhist: years are Buddhist Era")
    formats: list[DateFormat] = Field(["iso"], min_length=1, description="tried in order")
    plausible: tuple[PlausibleBound, PlausibleBound] | None = Field(
        None, description="[earliest, latest] accepted, ISO dates or today")

    @field_validator("plausible")
    @classmethod
    def _ordered(cls, value):
        if value and all(isinstance(b, dt.date) for b in value) and value[0] > value[1]:
            raise ValueError(f"earliest {value[0]} is after latest {value[1]}")
        return value


class SourceKeyColumn(_Column):
    to: Literal["source_key"]


class IgnoreColumn(_Column):
    to: Literal["ignore"]


class NameColumn(_Column):
    to: Literal["person.name"]
    name_order: NameOrder = Field("none", description="none: Burmese names have no family name")
    name_role: NameRole = Field("primary", description="primary: the name the record goes by; "
                                "latin: the same name in Latin letters; alias: another name")


class NamePartColumn(_Column):
    to: Literal["person.family_name", "person.given_name"]


class SexColumn(_Column):
    to: Literal["person.sex"]
    values: dict[Text, Sex] | None = Field(None, description="source value -> M or F")


class BirthDateColumn(_DateColumn):
    to: Literal["person.birth_date"]


class NationalityColumn(_Column):
    to: Literal["person.nationality"]
    values: dict[Text, Text] | None = Field(None, description="source value -> country name or "
                                                              "code")


class IdentifierColumn(_Column):
    to: Literal["identifier"]
    kind: IdentifierKind | Annotated[list[IdentifierKind], Field(min_length=1)] = Field(
        description="a kind, or a list: each value takes the first kind whose check holds")
    issuing_country: CountryCode | None = None
    issuing_country_from: Literal["person.nationality"] | None = Field(
        None, description="take each row's issuing country from its nationality")


class PhoneColumn(_Column):
    to: Literal["phone"]
    relation: Relation = "own"
    split: str | None = Field(None, min_length=1, description="separator of several numbers")
    region: CountryCode | None = Field(None, description="overrides defaults.phone_region")


class AccountColumn(_Column):
    to: Literal["account"]
    kind: AccountKind
    relation: Relation = "own"
    institution_column: Text | None = Field(None, description="the column naming the bank")
    institution: str | None = Field(None, description="the bank, when the feed has one")
    chain: str | None = Field(None, description="the chain of a crypto wallet, e.g. TRC20")


class EventDateColumn(_DateColumn):
    to: Literal["event.date"]


class AddressColumn(_Column):
    to: Literal["address.street_number", "address.street", "address.district",
                "address.province", "address.postcode"]


class ReleasableToColumn(_Column):
    to: Literal["releasable_to"]
    split: str = Field(",", min_length=1, description="separator of the agency ids in a cell")


class EventFieldColumn(_Column):
    to: Literal["event.place", "event.compound", "event.case_ref", "event.amount",
                "event.currency", "event.flight"]


_COLUMN_MODELS: tuple[type[_Column], ...] = (
    SourceKeyColumn, IgnoreColumn, NameColumn, NamePartColumn, SexColumn, BirthDateColumn,
    NationalityColumn, IdentifierColumn, PhoneColumn, AccountColumn, AddressColumn,
    EventDateColumn, EventFieldColumn, ReleasableToColumn,
)
Column = Annotated[
    SourceKeyColumn | IgnoreColumn | NameColumn | NamePartColumn | SexColumn | BirthDateColumn
    | NationalityColumn | IdentifierColumn | PhoneColumn | AccountColumn | AddressColumn
    | EventDateColumn | EventFieldColumn | ReleasableToColumn,
    Field(discriminator="to"),
]

#: The model of each target, by the ``to:`` value that selects it.
_TARGET_MODELS: dict[str, type[_Column]] = {
    target: model
    for model in _COLUMN_MODELS
    for target in get_args(model.model_fields["to"].annotation)
}
#: Column targets (``to:``) and every option each accepts besides ``to``.
TARGET_OPTIONS: dict[str, frozenset[str]] = {
    target: frozenset(model.model_fields) - {"to"} for target, model in _TARGET_MODELS.items()
}
TARGETS: tuple[str, ...] = tuple(TARGET_OPTIONS)


# ---------------------------------------------------------------------------------------------
# The feed file


class CsvOptions(_Strict):
    delimiter: str = Field(",", min_length=1, max_length=1)
    quote_char: str = Field('"', min_length=1, max_length=1)


class Defaults(_Strict):
    nationality: CountryCode | None = None
    phone_region: CountryCode | None = None
    currency: CurrencyCode | None = None


class EventSpec(_Strict):
    type: EventType
    country: CountryCode | None = None


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


class FeedFile(_Strict):
    """A feed file as written: every key, with the type and allowed values of each."""

    agency: LowerId
    feed: LowerId
    title: str | None = None
    format: Annotated[list[Format], BeforeValidator(_as_list), Field(min_length=1)]
    encoding: Annotated[Encoding, BeforeValidator(lambda v: str(v).lower())] = "utf-8"
    csv: CsvOptions | None = None
    sheet: int | str = 0
    source_key: Text
    record: RecordKind
    role: str | None = None
    releasable_to: list[LowerId] | None = None
    supersede: Supersede = "none"
    defaults: Defaults | None = None
    event: EventSpec | None = None
    columns: Annotated[dict[Text, Column], Field(min_length=1)]
    suite: str | None = Field(None, description="suite override file, relative to the feed file")


class SharingAgreement(_Strict):
    """What an agency agrees to share (feeds/<agency>/sharing.yaml): per feed, the most its rows
    may be released to. It narrows the feed's ``releasable_to`` and any per-row
    ``releasable_to`` column; it never widens them. The agency always sees its own rows."""

    agency: LowerId
    default: list[LowerId] | None = Field(None, description="the limit of feeds not listed")
    feeds: dict[LowerId, list[LowerId]] = Field({}, description="feed -> its limit")

    def limit(self, feed: str | None) -> list[str] | None:
        """The cap of ``feed`` (None: of the feeds it does not name), the agency included."""
        limit = self.default if feed is None else self.feeds.get(feed, self.default)
        return None if limit is None else sorted({*limit, self.agency})


# ---------------------------------------------------------------------------------------------
# What loading gives the rest of the code


class FeedError(Exception):
    """A feed file that cannot be used; the message names the file and the offending key."""

    def __init__(self, path: Path | str, key: str | None, message: str,
                 feed: str | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.feed = feed  # ``agency/feed`` when the file was read that far
        where = f"{self.path}" + (f": key '{key}'" if key else "")
        super().__init__(f"{where}: {message}")

    @property
    def meant_for(self) -> tuple[str, str]:
        """(agency, feed) of the feed the broken file was meant to define: as read, or else
        by its place, ``<agency>/<feed>.yaml``."""
        if self.feed:
            agency, _, feed = self.feed.partition("/")
            return agency, feed
        return self.path.parent.name, self.path.name.split(".")[0]


#: Suite override files a feed may have beside it, tried in this order (expectations/suites.py).
SUITE_OVERRIDE_SUFFIXES = (".suite.yaml", ".suite.yml", ".suite.json")


@dataclass(frozen=True)
class Feed:
    """One agency feed, as its checked YAML file declares it (docs/feeds.md).

    ``columns`` maps each source column to its options exactly as written (``to`` included),
    after :class:`FeedFile` has checked them.
    """

    agency: str
    feed: str
    title: str
    formats: list[str]
    encoding: str
    csv: dict
    sheet: int | str
    source_key: str
    record: str
    role: str | None
    releasable_to: list[str]
    supersede: str
    defaults: dict
    event: dict | None
    columns: dict[str, dict]
    path: Path
    suite: str | None = field(default=None)
    #: The most any row of the feed may be released to (the agency's sharing agreement, with
    #: the agency itself); None when no agreement narrows the feed.
    share_limit: list[str] | None = field(default=None)
    #: Every agency of the feed set it was loaded with (a feed or a sharing agreement): a row's
    #: own ``releasable_to`` naming any other is not released to it (canonical._releasable_to).
    agencies: frozenset[str] | None = field(default=None)

    @property
    def name(self) -> str:
        """``agency/feed``."""
        return f"{self.agency}/{self.feed}"

    @property
    def required_columns(self) -> list[str]:
        """Source columns a drop must have: every declared column not marked ``optional``.

        All declared columns are structural (the mapping reads each), so a drop missing any of
        them is rejected; ``required: true`` is the stronger, row-level rule (a value in every
        row).
        """
        return [c for c, opts in self.columns.items() if not opts.get("optional", False)]

    def absent_optional_columns(self, present: list[str]) -> list[str]:
        """The ``optional`` columns missing from a drop with columns ``present``."""
        return [c for c, opts in self.columns.items()
                if opts.get("optional", False) and c not in present]

    @property
    def suite_path(self) -> Path | None:
        """The steward's override of this feed's compiled suite, or None when there is none.

        ``suite:`` in the feed file (relative to it), else ``<feed>.suite.yaml`` (``.yml``,
        ``.json``) beside the feed file.
        """
        if self.suite:
            return (self.path.parent / self.suite).resolve()
        for suffix in SUITE_OVERRIDE_SUFFIXES:
            beside = self.path.parent / f"{self.feed}{suffix}"
            if beside.exists():
                return beside
        return None


@dataclass
class FeedSet:
    """The feeds found, keyed ``agency/feed``, and the files that could not be loaded."""

    feeds: dict[str, Feed] = field(default_factory=dict)
    errors: list[FeedError] = field(default_factory=list)
    #: the sharing agreements that apply, by agency; and the agencies whose agreement cannot
    #: be applied (unreadable, doubled, misspelt): their rows are shown to them alone
    agreements: dict[str, SharingAgreement] = field(default_factory=dict)
    broken_agreements: set[str] = field(default_factory=set)

    def get(self, agency: str, feed: str) -> Feed:
        """The feed ``agency/feed``; KeyError naming the known feeds when there is none."""
        name = f"{agency}/{feed}"
        if name not in self.feeds:
            known = ", ".join(sorted(self.feeds)) or "none"
            raise KeyError(
                f"no feed definition for {name} (known feeds: {known}); onboard it with "
                "feeds/<agency>/<feed>.yaml or a folder in FUSIONLAKE_FEEDS_PATH (docs/feeds.md)"
            )
        return self.feeds[name]

    def share_caps(self) -> dict[str, tuple[list[str] | None, dict[str, list[str]]]]:
        """agency -> (the cap of its feeds not named, {feed: its cap}) by its sharing agreement,
        the agency itself in each: applied to every staged row at each run, whether or not the
        feed still loads (a feed file broken or retired must not uncap its rows). An agency
        whose agreement cannot be applied has its rows capped to itself alone."""
        caps = {agency: (agreement.limit(None), {f: agreement.limit(f) for f in agreement.feeds})
                for agency, agreement in self.agreements.items()}
        caps.update({a: ([a], {}) for a in self.broken_agreements})
        return {a: (default, feeds) for a, (default, feeds) in caps.items()
                if default is not None or feeds}

    def error_for(self, agency: str, feed: str) -> FeedError | None:
        """Why the feed ``agency/feed`` did not load, when a file meant for it is broken: the
        error that names it, or else one of ``<agency>/<feed>.yaml`` (a file that could not be
        read far enough to say which feed it is)."""
        meant = [e for e in self.errors if e.meant_for == (agency, feed)]
        return next(iter(sorted(meant, key=lambda e: e.feed is None)), None)


# ---------------------------------------------------------------------------------------------
# Loading


def _error_from_pydantic(path: Path, doc: dict, exc: ValidationError) -> FeedError:
    """The first problem pydantic found, as a FeedError with a dotted key and allowed values."""
    errors = exc.errors(include_url=False)
    # a list where one value or a list may stand (identifier kind): the list member's error
    # names the bad element
    err = next((e for e in errors if not isinstance(e.get("input"), list)), errors[0])
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]  # list positions: value is quoted
    # a union (one kind or a list of kinds) names its member in the path; the file does not
    loc = [p for p in loc if not p.startswith(("literal[", "list["))]
    options = None  # the options of the column at fault, as written
    if loc[:1] == ["columns"] and len(loc) >= 2:
        options = _column_options(doc, loc[1])
        if len(loc) >= 3 and loc[2] in _TARGET_MODELS:
            del loc[2]  # pydantic names the union member by its tag; the file does not
    key = ".".join(loc)

    if kind == "union_tag_invalid":
        return FeedError(path, f"{key}.to",
                         f"unknown target {ctx.get('tag')!r}; allowed: {', '.join(TARGETS)}")
    if kind in ("union_tag_not_found", "model_attributes_type") and loc[:1] == ["columns"] \
            and len(loc) == 2:
        return FeedError(path, key, "must be a mapping with a 'to:' target, e.g. {to: ignore}")
    if kind == "extra_forbidden" and len(loc) == 3 and isinstance(options, dict):
        target = options.get("to")
        if loc[2] == "values":
            takers = [t for t, allowed in TARGET_OPTIONS.items() if "values" in allowed]
            return FeedError(path, key, f"target {target} takes no values: map; only "
                                        f"{', '.join(takers)} do")
        allowed = sorted(TARGET_OPTIONS[target] | {"to"})
        return FeedError(path, key, f"unknown option for target {target}; allowed: "
                                    f"{', '.join(allowed)}")
    if kind == "extra_forbidden":
        known = _model_at(loc[:-1]).model_fields
        return FeedError(path, key, f"unknown key; allowed: {', '.join(known)}")
    if kind == "missing":
        return FeedError(path, key, "is required")
    if kind == "literal_error":
        what = "value" if loc[-2:-1] == ["values"] else loc[-1]  # a value of a values: map
        allowed = ctx.get("expected", "").replace("'", "")
        return FeedError(path, key, f"unknown {what} {value!r}; allowed: {allowed}")
    if kind == "value_error":  # the checks above: their message quotes the value
        return FeedError(path, key, str(ctx["error"]))
    return FeedError(path, key, f"{err['msg']} (got {value!r})")


def _column_options(doc: dict, name: str) -> Any:
    """The options of column ``name`` as written (YAML may have read the name as a number)."""
    columns = doc.get("columns")
    if not isinstance(columns, dict):
        return None
    return next((opts for k, opts in columns.items() if str(k) == name), None)


def _model_at(loc: list[str]) -> type[BaseModel]:
    """The model whose keys are checked at ``loc`` (top level, csv, defaults or event)."""
    nested = {"csv": CsvOptions, "defaults": Defaults, "event": EventSpec}
    return nested.get(loc[0], FeedFile) if loc else FeedFile


def _check_references(path: Path, model: FeedFile) -> None:
    """What one key says about another: each must name something the file declares."""
    columns = model.columns
    if model.source_key not in columns:
        raise FeedError(path, "source_key",
                        f"names column {model.source_key!r}, which is not under columns:")
    by_target: dict[str, list[str]] = {}
    for name, spec in columns.items():
        by_target.setdefault(spec.to, []).append(name)
    for target in SINGLE_VALUED_TARGETS:
        if len(by_target.get(target, [])) > 1:
            names = by_target[target]
            raise FeedError(path, f"columns.{names[1]}.to",
                            f"{target} is already mapped from column {names[0]!r}; a row has "
                            "one, so map only one column to it")
    primaries = [name for name in by_target.get("person.name", [])
                 if columns[name].name_role == "primary"]
    if len(primaries) > 1:
        raise FeedError(path, f"columns.{primaries[1]}.to",
                        f"person.name is already mapped from column {primaries[0]!r}; a record "
                        "has one primary name: give the others name_role: latin or alias")
    if by_target.get("person.name") and not primaries and not (
            by_target.get("person.family_name") or by_target.get("person.given_name")):
        first = by_target["person.name"][0]
        raise FeedError(path, f"columns.{first}.name_role",
                        "no column is the primary name (name_role: primary, the default)")
    for name, spec in columns.items():
        if isinstance(spec, IdentifierColumn) and isinstance(spec.kind, list) \
                and len(set(spec.kind)) < len(spec.kind):
            raise FeedError(path, f"columns.{name}.kind", f"lists a kind twice: {spec.kind}")
    has_nationality = "person.nationality" in by_target or (
        model.defaults is not None and model.defaults.nationality is not None)
    for name, spec in columns.items():
        key = f"columns.{name}"
        if isinstance(spec, AccountColumn) and spec.institution_column is not None:
            ref = spec.institution_column
            if ref not in columns or ref == name:
                raise FeedError(path, f"{key}.institution_column",
                                f"names column {ref!r}, which is not another column under "
                                "columns:")
        if isinstance(spec, IdentifierColumn):
            if spec.issuing_country and spec.issuing_country_from:
                raise FeedError(path, f"{key}.issuing_country_from",
                                "give issuing_country or issuing_country_from, not both")
            if spec.issuing_country_from and not has_nationality:
                raise FeedError(path, f"{key}.issuing_country_from",
                                "no column maps to person.nationality and defaults.nationality "
                                "is not set")
        if spec.optional and (spec.required or spec.to == "source_key"):
            raise FeedError(path, f"{key}.optional",
                            "a column that may be absent cannot be required or the source_key")


class FeedLoader(yaml.SafeLoader):
    """YAML as a feed file means it. A plain mapping key is the text written: a column (or a
    ``values:`` entry) named ``on``, ``yes``, ``no``, ``off``, ``null`` or ``010`` is that text,
    not YAML 1.1's True, False, None or 8 (which the contract would take as a column "True"
    that no drop has). And only ``true``/``false`` are booleans (YAML 1.2): ``country: NO`` is
    Norway, ``releasable_to: [no]`` an agency id; a boolean option still takes ``yes``/``no``
    (the model reads them as booleans)."""

    def construct_mapping(self, node, deep=False):
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.style is None \
                    and key.tag != "tag:yaml.org,2002:merge":
                key.tag = "tag:yaml.org,2002:str"
        return super().construct_mapping(node, deep=deep)


FeedLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
FeedLoader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                 re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))


def load_yaml(text: str) -> Any:
    """A feed file, sharing agreement or suite override: :class:`FeedLoader`."""
    return yaml.load(text, Loader=FeedLoader)


def parse_feed(path: Path, text: str | None = None) -> Feed:
    """Check and load one feed file; raises FeedError naming the file and key at fault."""
    path = Path(path)
    try:
        doc = load_yaml(path.read_text(encoding="utf-8") if text is None else text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FeedError(path, None, f"not valid YAML{where}: {problem}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedError(path, None, f"cannot be read: {exc}") from exc
    if not isinstance(doc, dict):
        raise FeedError(path, None, "must be a YAML mapping (agency:, feed:, columns:, ...)")
    try:
        model = FeedFile.model_validate(doc)
    except ValidationError as exc:
        raise _error_from_pydantic(path, doc, exc) from None
    _check_references(path, model)
    if model.suite and not (path.parent / model.suite).is_file():
        raise FeedError(path, "suite", f"names {model.suite!r}, which is not a file beside "
                                       f"{path.name}")
    return Feed(
        agency=model.agency, feed=model.feed, title=model.title or f"{model.agency}/{model.feed}",
        formats=list(model.format), encoding=model.encoding,
        csv=model.csv.model_dump(exclude_unset=True) if model.csv else {},
        sheet=model.sheet, source_key=model.source_key, record=model.record, role=model.role,
        # the sending agency always sees its own rows, whatever the list says
        releasable_to=[model.agency, *[a for a in model.releasable_to or []
                                       if a != model.agency]],
        supersede=model.supersede,
        defaults=model.defaults.model_dump(exclude_unset=True) if model.defaults else {},
        event=model.event.model_dump(exclude_unset=True) if model.event else None,
        # options as written: readers apply their documented defaults
        columns={name: spec.model_dump(exclude_unset=True)
                 for name, spec in model.columns.items()},
        path=path.resolve(), suite=model.suite,
    )


def _feed_files(folder: Path) -> list[Path]:
    # <agency>/<feed>.yaml (and .yml); suite overrides and sharing agreements are not feed files.
    return sorted(p for p in folder.glob("*/*.y*ml")
                  if p.suffix in (".yaml", ".yml") and not p.stem.endswith(".suite")
                  and p.name != SHARING_FILE)


def parse_sharing(path: Path) -> SharingAgreement:
    """Check and load an agency's sharing agreement; FeedError naming the file and key."""
    path = Path(path)
    try:
        doc = load_yaml(path.read_text(encoding="utf-8"))
        agreement = SharingAgreement.model_validate(doc)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FeedError(path, None, f"cannot be read as YAML: {exc}") from exc
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"]) or None
        raise FeedError(path, key, err["msg"]) from None
    if agreement.agency != path.parent.name:
        raise FeedError(path, "agency", f"is {agreement.agency!r}, but the file is in the folder "
                                        f"of {path.parent.name!r}")
    return agreement


def _apply_sharing(feed: Feed, agreement: SharingAgreement) -> Feed:
    limit = agreement.limit(feed.feed)
    if limit is None:
        return feed
    return replace(feed, share_limit=limit,
                   releasable_to=[a for a in feed.releasable_to if a in limit])


def load_feeds(extra_paths: list[str] | None = None) -> FeedSet:
    """Every feed definition: the project's ``feeds/``, ``FUSIONLAKE_FEEDS_PATH``, extra_paths.

    A later folder may not redefine a feed already loaded: that is reported as an error (two
    definitions of one feed would make the result depend on search order).
    """
    env = [p for p in os.environ.get("FUSIONLAKE_FEEDS_PATH", "").split(":") if p]
    folders: list[Path] = []
    for p in [str(FEEDS_DIR), *env, *(extra_paths or [])]:
        resolved = Path(p).resolve()
        if resolved not in folders:
            folders.append(resolved)
    out = FeedSet()
    for folder in folders:
        if not folder.is_dir():
            out.errors.append(FeedError(folder, None, "feeds folder does not exist"))
            continue
        for path in _feed_files(folder):
            try:
                feed = parse_feed(path)
            except FeedError as exc:
                out.errors.append(exc)
                continue
            if feed.agency != path.parent.name:  # as a sharing agreement's (parse_sharing)
                out.errors.append(FeedError(path, "agency", (
                    f"is {feed.agency!r}, but the file is in the folder of "
                    f"{path.parent.name!r}: `fusionlake drop --agency {path.parent.name}` "
                    "would find no feed")))
                continue
            if feed.name in out.feeds:
                out.errors.append(FeedError(path, "feed", f"{feed.name} is already defined in "
                                            f"{out.feeds[feed.name].path}"))
                continue
            out.feeds[feed.name] = feed
    agencies = {feed.agency for feed in out.feeds.values()}
    declared = {name: feed.releasable_to for name, feed in out.feeds.items()}
    agreements, broken = _agreements(folders, out.errors)
    agencies |= set(agreements) | set(broken)
    for agency, (path, agreement) in agreements.items():
        try:
            _check_agreement(path, agreement, out, agencies)
        except FeedError as exc:
            out.errors.append(exc)
            broken[agency] = exc
            continue
        for name, feed in out.feeds.items():  # it narrows its agency's feeds, wherever defined
            if feed.agency == agency:
                out.feeds[name] = _apply_sharing(feed, agreement)
    _refuse_uncapped(out, broken)
    out.agreements = {a: agreement for a, (_path, agreement) in agreements.items()
                      if a not in broken}
    out.broken_agreements = set(broken)
    _refuse_unknown_agencies(out, declared, agencies)
    out.feeds = {name: replace(feed, agencies=frozenset(agencies))
                 for name, feed in out.feeds.items()}
    return out


def _agreements(folders: list[Path], errors: list[FeedError]
                ) -> tuple[dict[str, tuple[Path, SharingAgreement]], dict[str, FeedError]]:
    """Every sharing agreement, by agency, with the agencies whose agreement cannot be applied
    (unreadable, or a second one: which would cap the feeds?), each with why; the errors are
    added to ``errors``."""
    found: dict[str, tuple[Path, SharingAgreement]] = {}
    broken: dict[str, FeedError] = {}
    for folder in folders:
        for path in sorted(folder.glob(f"*/{SHARING_FILE}")) if folder.is_dir() else []:
            agency = path.parent.name
            try:
                agreement = parse_sharing(path)
            except FeedError as exc:
                errors.append(exc)
                broken.setdefault(agency, exc)
                continue
            if agency in found or agency in broken:
                first = found[agency][0] if agency in found else broken[agency].path
                exc = FeedError(path, None, f"{agency} has a sharing agreement already, in "
                                f"{first}: one per agency, or which one caps its feeds?")
                errors.append(exc)
                broken.setdefault(agency, exc)
                continue
            found[agency] = (path, agreement)
    for agency in broken:
        found.pop(agency, None)
    return found, broken


def _check_agreement(path: Path, agreement: SharingAgreement, feedset: FeedSet,
                     agencies: set[str]) -> None:
    """FeedError where an agreement names a feed its agency does not have, or an agency that
    has no feed and no agreement: a typo there would cap nothing (``detention`` for
    ``detentions``), or withhold rows from the agency meant."""
    own = {feed.feed for feed in feedset.feeds.values() if feed.agency == agreement.agency}
    own |= {feed for agency, feed in (e.meant_for for e in feedset.errors)
            if agency == agreement.agency}
    for feed in agreement.feeds:
        if feed not in own:
            raise FeedError(path, f"feeds.{feed}", (
                f"{agreement.agency} has no feed {feed!r} (its feeds: "
                f"{', '.join(sorted(own)) or 'none'}): a typo would cap nothing"))
    for key, names in (("default", agreement.default or []), *(
            (f"feeds.{f}", names) for f, names in agreement.feeds.items())):
        unknown = sorted(set(names) - agencies)
        if unknown:
            raise FeedError(path, key, _unknown(unknown, agencies))


def _refuse_uncapped(feedset: FeedSet, broken: dict[str, FeedError]) -> None:
    """Take out of ``feedset`` the feeds of each agency whose sharing agreement cannot be
    applied: loaded without it, they would release their rows beyond what the agency agreed
    to. Their drops are rejected with the reason until the agreement is mended."""
    for name, feed in list(feedset.feeds.items()):
        if feed.agency in broken:
            del feedset.feeds[name]
            feedset.errors.append(FeedError(feed.path, None, (
                f"not loaded: the sharing agreement of {feed.agency} cannot be applied "
                f"({broken[feed.agency]}), and without it the feed's rows would be released "
                "beyond what the agency agreed to"), feed=name))


def _refuse_unknown_agencies(feedset: FeedSet, declared: dict[str, list[str]],
                             agencies: set[str]) -> None:
    """Take out of ``feedset`` each feed whose ``releasable_to`` (``declared``: as its file
    says, before an agreement narrows it) names an agency that has no feed and no sharing
    agreement: most likely a typo (``cn_msp`` for ``cn_mps``), which would
    withhold the rows from the agency meant and publish a mart for one that does not exist. An
    agency that receives rows but sends none is declared by its agreement,
    ``feeds/<agency>/sharing.yaml`` (docs/feeds.md)."""
    for name, feed in list(feedset.feeds.items()):
        unknown = sorted(set(declared[name]) - agencies)
        if unknown:
            del feedset.feeds[name]
            feedset.errors.append(
                FeedError(feed.path, "releasable_to", _unknown(unknown, agencies), feed=name))


def _unknown(unknown: list[str], agencies: set[str]) -> str:
    names = ", ".join(repr(a) for a in unknown)
    return (f"names {names}, which is no agency of these feeds (the agencies: "
            f"{', '.join(sorted(agencies))}): a typo? An agency that receives rows but sends "
            f"no feed is declared by its sharing agreement, feeds/<agency>/{SHARING_FILE}")


__all__ = [
    "ACCOUNT_KINDS", "ADDRESS_TARGETS", "IDENTIFIER_KINDS", "NAMED_DATE_FORMATS", "NAME_ROLES",
    "TARGETS", "TARGET_OPTIONS",
    "Feed", "FeedError", "FeedFile", "FeedSet", "SharingAgreement", "load_feeds", "parse_feed",
    "parse_sharing",
]  # fmt: skip
