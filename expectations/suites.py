"""Expectation suites: one JSON file per feed, generated from the feed definition, then reviewed.

``python -m expectations.suites`` (re)writes ``expectations/suites/<agency>.<feed>.json`` for every
feed from its YAML options (``required``, ``unique``, targets, value maps, date formats); a suite
file is data under version control, so a steward may tighten a ``mostly`` or add an expectation
by editing it. :func:`load_suite` reads the file a feed points to.

Every expectation's ``meta`` says what its failure means (``on_failure``):

* ``reject``: the drop's structure is wrong; the whole drop is rejected.
* ``quarantine``: the failing rows go to quarantine, the others go on; the drop is rejected when
  fewer than ``mostly`` of the rows pass.
* ``flag``: recorded in the results and Data Docs, the rows go on (standardisation keeps the
  value with ``check_valid = false``); the drop is rejected when fewer than ``mostly`` pass.

and ``reason``, the sentence a steward reads in the quarantine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fusionlake.lake.feeds import Feed, load_feeds

MAX_LENGTH = 4096  # longest plausible cell; a 10 MB "name" is an export accident or an attack
BIRTH_RANGE = ("1900-01-01", "today")
EVENT_RANGE = ("2000-01-01", "today")
_NAME_TARGETS = ("person.name", "person.family_name", "person.given_name")
_CHECKED_ACCOUNTS = ("bank_card", "crypto_wallet")

#: How much of a drop may fail each kind of rule before the whole drop is rejected.
MOSTLY = {"required": 0.95, "unique": 0.95, "dates": 0.95, "formula": 0.99, "length": 0.99,
          "identifier": 0.90, "phone": 0.90, "sex": 0.95, "country": 0.95}


def _sex_values(opts: dict) -> list[str]:
    try:
        from transforms.canonical import SEX_VALUES
    except ImportError:
        SEX_VALUES = {}
    values = set(opts.get("values", {})) | set(SEX_VALUES)
    values |= {v.upper() for v in values} | {v.capitalize() for v in values}
    return sorted(values)


def _e(etype: str, on_failure: str, reason: str, mostly: float | None = None, **kwargs) -> dict:
    if mostly is not None:
        kwargs["mostly"] = mostly
    return {"type": etype, "kwargs": kwargs, "meta": {"on_failure": on_failure, "reason": reason}}


def suite_for_feed(feed: Feed) -> dict:
    """The generated suite of a feed, as the JSON document stored in expectations/suites/."""
    cols = list(feed.columns)
    exps = [
        _e("expect_table_columns_to_match_set", "reject",
           "the file lacks columns the feed definition declares", column_set=cols,
           exact_match=False),
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
            exps.append(_e("expect_column_values_to_not_be_spreadsheet_formulas", "quarantine",
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
            exps.append(_e("expect_column_values_to_be_plausible_dates", "quarantine",
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
        "meta": {"feed": feed.name, "generated_from": f"feeds/{feed.agency}/{feed.feed}.yaml",
                 "note": "generated by python -m expectations.suites; edit freely, review diffs"},
    }


class SuiteError(Exception):
    """A suite file that is missing or malformed; names the file."""


def load_suite(feed: Feed) -> dict:
    """The suite document of a feed (its suite_path), checked for the keys the runner reads."""
    path = feed.suite_path
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SuiteError(f"{path}: no expectation suite for feed {feed.name}; write one with "
                         "'python -m expectations.suites' (docs/feeds.md)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path}: not a readable JSON suite: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("expectations"), list):
        raise SuiteError(f"{path}: a suite needs 'expectations': [...]")
    for i, exp in enumerate(doc["expectations"]):
        if not isinstance(exp, dict) or "type" not in exp or "kwargs" not in exp:
            raise SuiteError(f"{path}: expectation {i} needs 'type' and 'kwargs'")
        on_failure = exp.get("meta", {}).get("on_failure", "quarantine")
        if on_failure not in ("reject", "quarantine", "flag"):
            raise SuiteError(f"{path}: expectation {i}: meta.on_failure {on_failure!r} is not "
                             "reject, quarantine or flag")
    return doc


def write_suites(feeds: list[Feed] | None = None, folder: Path | None = None) -> list[Path]:
    """Write the generated suite of each feed; returns the files written."""
    from fusionlake.lake.feeds import SUITES_DIR

    folder = Path(folder or SUITES_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for feed in feeds if feeds is not None else load_feeds().feeds.values():
        path = folder / f"{feed.agency}.{feed.feed}.json"
        path.write_text(json.dumps(suite_for_feed(feed), ensure_ascii=False, indent=2) + "\n",
                        encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    names = set(sys.argv[1:])
    chosen = [f for n, f in load_feeds().feeds.items() if not names or n in names]
    for p in write_suites(chosen):
        sys.stdout.write(f"{p}\n")
