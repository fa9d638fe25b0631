"""Expectation suites: compiled from the feed contract when a feed is loaded, plus overrides.

:func:`suite_for_feed` turns a feed's column options (``required``, ``unique``, ``max_length``,
targets, ``values:`` maps, date ``formats`` and ``plausible`` ranges, identifier kinds, phone
regions) into a GX suite; nothing generated is stored, so a suite cannot drift from its feed.
A steward who wants more, or less strictness, writes an override file beside the feed file
(``feeds/<agency>/<feed>.suite.yaml``, ``.yml`` or ``.json``, or the file ``suite:`` names)::

    change:     # generated expectations, found by type and column; kwargs/meta merged in
      - {type: expect_column_values_to_be_valid_phone_numbers, column: phone,
         kwargs: {mostly: 0.8}}
    add:        # expectations of the steward's own
      - type: expect_column_values_to_match_regex
        kwargs: {column: case_no, regex: "^MP-"}
        meta: {on_failure: flag, reason: case_no does not start with MP-}

:func:`load_suite` applies it and checks every added or changed expectation with GX, so a typo
in an override fails ``fusionlake feeds`` with the file and entry at fault.
``python -m expectations.suites AGENCY/FEED`` prints a feed's suite, override applied, for review.

Every expectation's ``meta`` says what its failure means (``on_failure``), by level, as in
GX and dbt (docs/feeds.md, "Severity"):

* ``flag``: a bad *value* (identifier check digit or format, phone, date parse or plausibility,
  country, sex, spreadsheet formula). The row goes on; standardisation keeps the value as
  written, leaves the normalised one null or marked invalid, and notes why; the flag is counted.
* ``quarantine``: an unusable *row* (no source key, a duplicate key, no name, a cell over the
  size limit). Those rows go to quarantine with the reason; the others go on.
* ``reject``: a broken *structure* (no rows, missing declared columns). The drop is rejected.
* ``hold`` (only by a steward's override): rows are treated as before the override (``rows``
  keeps that: flag or quarantine), and when fewer than ``mostly`` pass, the drop waits in the
  ledger as ``held`` for ``fusionlake accept`` or ``fusionlake reject``.

A ``mostly`` that is not met fails the expectation in the results and Data Docs and warns in
the run summary; it never rejects a drop by itself.

``reason`` is the sentence a steward reads in the quarantine, the flags and the summary.
:func:`suite_fingerprint` says when a feed's definition or compiled suite has changed, so that
the drops it rejected or held are validated again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fusionlake.lake.feeds import Feed, load_feeds, load_yaml
from transforms.canonical import SEX_VALUES

MAX_LENGTH = 4096  # longest plausible cell; a 10 MB "name" is an export accident or an attack
BIRTH_RANGE = ("1900-01-01", "today")
EVENT_RANGE = ("2000-01-01", "today")
_NAME_TARGETS = ("person.name", "person.family_name", "person.given_name")
_CHECKED_ACCOUNTS = ("bank_card", "crypto_wallet")

#: How much of a drop may fail each kind of rule before the expectation fails (a warning in the
#: run summary and a failed expectation in Data Docs; a drop is held only by ``on_failure: hold``).
MOSTLY = {"required": 0.95, "unique": 0.95, "dates": 0.95, "formula": 0.99, "length": 0.99,
          "identifier": 0.90, "phone": 0.90, "sex": 0.95, "country": 0.95}


def _sex_values(opts: dict) -> list[str]:
    values = set(opts.get("values", {})) | set(SEX_VALUES)
    values |= {v.upper() for v in values} | {v.capitalize() for v in values}
    return sorted(values)


def _e(etype: str, on_failure: str, reason: str, mostly: float | None = None, **kwargs) -> dict:
    if mostly is not None:
        kwargs["mostly"] = mostly
    return {"type": etype, "kwargs": kwargs, "meta": {"on_failure": on_failure, "reason": reason}}


def suite_for_feed(feed: Feed) -> dict:
    """The suite compiled from a feed's contract, before any steward override."""
    exps = [
        _e("expect_table_columns_to_match_set", "reject",
           "the file lacks columns the feed definition declares",
           column_set=feed.required_columns, exact_match=False),
        _e("expect_table_row_count_to_be_between", "reject", "the file has no data rows",
           min_value=1),
    ]
    for col, opts in feed.columns.items():
        target = opts["to"]
        if opts.get("required"):
            exps.append(_e("expect_column_values_to_not_be_null", "quarantine",
                           f"{col} is empty, but every row needs it", MOSTLY["required"],
                           column=col))
        if opts.get("unique"):
            exps.append(_e("expect_column_values_to_be_unique", "quarantine",
                           f"{col} repeats a value of an earlier row of this drop (duplicate row)",
                           MOSTLY["unique"], column=col))
        exps.append(_e("expect_column_value_lengths_to_be_between", "quarantine",
                       f"{col} is longer than {opts.get('max_length', MAX_LENGTH)} characters",
                       MOSTLY["length"], column=col,
                       max_value=opts.get("max_length", MAX_LENGTH)))
        if target in _NAME_TARGETS:
            exps.append(_e("expect_column_values_to_not_be_spreadsheet_formulas", "flag",
                           f"{col} holds a spreadsheet formula (=, +, -, @ first): possible "
                           "formula injection", MOSTLY["formula"], column=col))
        if target == "person.sex":
            exps.append(_e("expect_column_values_to_be_in_set", "flag",
                           f"{col} is not a known sex value", MOSTLY["sex"], column=col,
                           value_set=_sex_values(opts)))
        if target == "person.nationality":
            exps.append(_e("expect_column_values_to_be_known_countries", "flag",
                           f"{col} names no known country", MOSTLY["country"], column=col,
                           extra_values=sorted(opts.get("values", {}))))
        if target in ("person.birth_date", "event.date"):
            lo, hi = opts.get("plausible") or (BIRTH_RANGE if target == "person.birth_date"
                                               else EVENT_RANGE)
            exps.append(_e("expect_column_values_to_be_plausible_dates", "flag",
                           f"{col} is not a date in {', '.join(opts.get('formats', ['iso']))} "
                           f"between {lo} and {hi}", MOSTLY["dates"], column=col,
                           formats=list(opts.get("formats", ["iso"])),
                           calendar=opts.get("calendar", "gregorian"),
                           min_date=str(lo), max_date=str(hi)))
        kind = opts.get("kind")
        if (target == "identifier" and kind) or (target == "account"
                                                 and kind in _CHECKED_ACCOUNTS):
            exps.append(_e("expect_column_values_to_be_valid_identifier", "flag",
                           f"{col} fails the {kind} check digit or format", MOSTLY["identifier"],
                           column=col, kind=kind))
        if target == "phone":
            region = opts.get("region") or feed.defaults.get("phone_region")
            exps.append(_e("expect_column_values_to_be_valid_phone_numbers", "flag",
                           f"{col} holds a number that is not a valid phone number",
                           MOSTLY["phone"], column=col, region=region, split=opts.get("split")))
    return {
        "name": f"{feed.agency}.{feed.feed}",
        "expectations": exps,
        "meta": {"feed": feed.name, "generated_from": f"{feed.path.parent.name}/{feed.path.name}",
                 "note": "compiled from the feed file when it is loaded (expectations/suites.py)"},
    }


# ---------------------------------------------------------------------------------------------
# Steward overrides


class SuiteError(Exception):
    """A suite override that cannot be applied; the message names the file and the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


OnFailure = Literal["reject", "quarantine", "flag", "hold"]


class _Meta(BaseModel):
    """An expectation's meta: what its failure means, and why, for the steward."""

    model_config = ConfigDict(extra="allow")  # GX keeps any other notes a steward adds

    on_failure: OnFailure = "quarantine"
    reason: str | None = None
    rows: Literal["flag", "quarantine"] | None = Field(
        None, description="with hold: what happens to the failing rows (default: as compiled, "
                          "else flag)")


class _ChangeMeta(_Meta):
    on_failure: OnFailure | None = None


class _Change(_Strict):
    """A generated expectation, found by type and column, with kwargs and meta to merge in."""

    type: str
    column: str | None = Field(None, description="omit for table-level expectations")
    kwargs: dict[str, Any] = {}
    meta: _ChangeMeta = _ChangeMeta()


class _Add(_Strict):
    """An expectation of the steward's own, in the suite's JSON form."""

    type: str
    kwargs: dict[str, Any]
    meta: _Meta


class SuiteOverride(_Strict):
    """A steward's override file: changes to generated expectations, and additions."""

    description: str | None = None
    change: list[_Change] = []
    add: list[_Add] = []


def _read_override(path: Path) -> SuiteOverride:
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except FileNotFoundError as exc:
        raise SuiteError(f"{path}: suite override not found") from exc
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise SuiteError(f"{path}: not a readable suite override: {exc}") from exc
    try:
        return SuiteOverride.model_validate(doc or {})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = _entry_name(err["loc"])
        raise SuiteError(f"{path}: {where}: {err['msg']}"
                         + (" (allowed: change, add, description)"
                            if err["type"] == "extra_forbidden" and len(err["loc"]) == 1
                            else "")) from None


def _entry_name(loc: tuple) -> str:
    """``change[2].kwargs`` from pydantic's ('change', 2, 'kwargs')."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the file"


def _column_of(exp: dict) -> str | None:
    return exp["kwargs"].get("column")


def _check_with_gx(path: Path, where: str, exp: dict) -> None:
    """Build the expectation as GX will, so a wrong type or kwarg fails here, not in a run."""
    # GX takes seconds to import; only suites with an override pay for it outside a run.
    import great_expectations.expectations.registry as registry
    from great_expectations.exceptions import ExpectationNotFoundError

    import expectations.custom  # noqa: F401 - registers the lake's own expectations

    try:
        registry.get_expectation_impl(exp["type"])(**exp["kwargs"])
    except ExpectationNotFoundError:
        raise SuiteError(f"{path}: {where}: {exp['type']!r} is not a GX expectation") from None
    except (ValueError, TypeError) as exc:  # GX's own pydantic (v1) errors are ValueErrors
        errors = exc.errors() if callable(getattr(exc, "errors", None)) else []
        detail = (f"{'.'.join(map(str, errors[0]['loc']))}: {errors[0]['msg']}" if errors
                  else " ".join(str(exc).split()))
        raise SuiteError(f"{path}: {where}: {exp['type']}: {detail}") from None


def apply_override(suite: dict, override: SuiteOverride, path: Path) -> dict:
    """The suite with the override's changes and additions; SuiteError names the entry."""
    out = copy.deepcopy(suite)
    exps = out["expectations"]
    for i, change in enumerate(override.change):
        where = f"change[{i}] ({change.type} on {change.column or 'the table'})"
        if "column" in change.kwargs:
            raise SuiteError(f"{path}: {where}: kwargs may not change the column; add a new "
                             "expectation instead")
        found = [e for e in exps if e["type"] == change.type and _column_of(e) == change.column]
        if not found:
            generated = sorted({f"{e['type']} on {_column_of(e) or 'the table'}" for e in exps})
            raise SuiteError(f"{path}: {where}: the compiled suite has no such expectation; it "
                             f"has: {'; '.join(generated)}")
        for exp in found:
            before = exp["meta"].get("on_failure")
            exp["kwargs"].update(change.kwargs)
            exp["meta"].update(change.meta.model_dump(exclude_none=True))
            if exp["meta"].get("on_failure") == "hold":
                # a hold waits for a steward on the whole drop; its rows keep their own level
                exp["meta"].setdefault("rows", before if before in ("flag", "quarantine")
                                       else "flag")
            _check_with_gx(path, where, exp)
    for i, added in enumerate(override.add):
        exp = {"type": added.type, "kwargs": dict(added.kwargs),
               "meta": added.meta.model_dump(exclude_none=True)}
        if exp["meta"]["on_failure"] == "hold":
            exp["meta"].setdefault("rows", "flag")
        _check_with_gx(path, f"add[{i}] ({added.type})", exp)
        exps.append(exp)
    out["meta"]["override"] = path.name
    return out


def load_suite(feed: Feed) -> dict:
    """The suite of a feed: compiled from its contract, with the steward's override applied."""
    suite = suite_for_feed(feed)
    path = feed.suite_path
    if path is None:
        return suite
    return apply_override(suite, _read_override(path), path)


def suite_fingerprint(feed: Feed | None) -> str:
    """What a drop's validation depended on: the feed file, its override file, and the suite
    compiled from them (which changes with this module too). A drop rejected or held under one
    fingerprint is validated again once the fingerprint changes; ``none`` when there was no feed.

    No GX is needed: the override is hashed as a file, not compiled.
    """
    if feed is None:
        return "none"
    digest = hashlib.sha256()
    digest.update(json.dumps(suite_for_feed(feed), sort_keys=True, ensure_ascii=False,
                             default=str).encode())
    for path in (feed.path, feed.suite_path):
        try:
            digest.update(b"\0" + (path.read_bytes() if path is not None else b""))
        except OSError:  # a file gone since the feed loaded: the next load reports it
            digest.update(b"\0?")
    return digest.hexdigest()[:16]


def main(argv: list[str]) -> int:
    """Print the suite of each named feed (``agency/feed``; all feeds when none), as JSON."""
    feedset = load_feeds()
    names = argv or sorted(feedset.feeds)
    for name in names:
        agency, _, feed = name.partition("/")
        suite = load_suite(feedset.get(agency, feed))
        sys.stdout.write(json.dumps(suite, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover - a review command
    sys.exit(main(sys.argv[1:]))
