"""Feed definitions: one YAML file per agency feed (docs/feeds.md), checked when loaded.

The project's own feeds live in ``feeds/<agency>/<feed>.yaml``; folders listed in
``FUSIONLAKE_FEEDS_PATH`` (``:``-separated) and ``extra_paths`` are searched the same way, so a
new agency feed is onboarded with a feed file and a suite, no Python. A file with an error is
reported (path and offending key) in :attr:`FeedSet.errors` and the other feeds still load, so a
typo fails ``fusionlake feeds`` and CI rather than a scheduled run.

Additions to the format of docs/feeds.md (all optional):

* ``suite:`` path of the expectation suite, relative to the feed file (default: see
  :attr:`Feed.suite_path`).
* per column ``max_length:`` longest value accepted (default 4096 characters).
* per column ``plausible: [min, max]`` for date columns, ISO dates or ``today``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fusionlake.lake.settings import PROJECT_ROOT

FEEDS_DIR = PROJECT_ROOT / "feeds"
SUITES_DIR = PROJECT_ROOT / "expectations" / "suites"

FORMATS = ("csv", "xlsx", "jsonl", "parquet")
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030", "cp874", "tis-620", "detect")
RECORDS = ("person",)
SUPERSEDE = ("none", "by_source_key")
EVENT_TYPES = ("wanted", "arrest", "detention", "rescue", "repatriation", "fraud_report")

_REQUIRED_KEYS = ("agency", "feed", "format", "source_key", "record", "columns")
_KNOWN_KEYS = frozenset({
    "agency", "feed", "title", "format", "encoding", "csv", "sheet", "source_key", "record",
    "role", "releasable_to", "supersede", "defaults", "event", "columns", "suite",
})  # fmt: skip
_CSV_KEYS = frozenset({"delimiter", "quote_char"})
_DEFAULT_KEYS = frozenset({"nationality", "phone_region", "currency"})
_EVENT_KEYS = frozenset({"type", "country"})

# Column targets and their options are transforms.canonical's (it owns the mapping); the feed
# file may add validation options that only the expectation suites read.
_VALIDATION_OPTIONS: dict[str, frozenset[str]] = {
    "person.birth_date": frozenset({"plausible"}),
    "event.date": frozenset({"plausible"}),
}
_COMMON_OPTIONS = frozenset({"to", "required", "unique", "description", "note", "max_length"})


def _targets() -> dict[str, frozenset[str]]:
    from transforms.canonical import TARGETS

    return {t: opts | _VALIDATION_OPTIONS.get(t, frozenset()) for t, opts in TARGETS.items()}


class FeedError(Exception):
    """A feed file that cannot be used; the message names the file and the offending key."""

    def __init__(self, path: Path | str, key: str | None, message: str) -> None:
        self.path = Path(path)
        self.key = key
        where = f"{self.path}" + (f": key '{key}'" if key else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Feed:
    """One agency feed, as its YAML file declares it (docs/feeds.md)."""

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

    @property
    def suite_path(self) -> Path:
        """The expectation suite of this feed.

        ``suite:`` in the feed file (relative to it), else ``<feed>.suite.json`` next to the feed
        file, else ``expectations/suites/<agency>.<feed>.json``.
        """
        if self.suite:
            return (self.path.parent / self.suite).resolve()
        beside = self.path.parent / f"{self.feed}.suite.json"
        if beside.exists():
            return beside
        return SUITES_DIR / f"{self.agency}.{self.feed}.json"


@dataclass
class FeedSet:
    """The feeds found, keyed ``agency/feed``, and the files that could not be loaded."""

    feeds: dict[str, Feed] = field(default_factory=dict)
    errors: list[FeedError] = field(default_factory=list)

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


def _check_ident(path: Path, key: str, value) -> str:
    if not isinstance(value, str) or not value or value != value.lower() or "/" in value:
        raise FeedError(path, key, f"must be a lower-case id without '/', got {value!r}")
    return value


def _check_column(path: Path, name: str, opts, targets: dict[str, frozenset[str]]) -> dict:
    key = f"columns.{name}"
    if not isinstance(opts, dict) or "to" not in opts:
        raise FeedError(path, key, "must be a mapping with a 'to:' target, e.g. {to: ignore}")
    target = opts["to"]
    if target not in targets:
        raise FeedError(path, f"{key}.to",
                        f"unknown target {target!r}; known: {', '.join(sorted(targets))}")
    allowed = _COMMON_OPTIONS | {"optional"} | targets[target]
    for option in opts:
        if option not in allowed:
            raise FeedError(path, f"{key}.{option}",
                            f"unknown option for target {target}; allowed: "
                            f"{', '.join(sorted(allowed))}")
    if "values" in opts and not isinstance(opts["values"], dict):
        raise FeedError(path, f"{key}.values", "must map source values to canonical ones")
    if "formats" in opts and not (isinstance(opts["formats"], list) and opts["formats"]):
        raise FeedError(path, f"{key}.formats", "must be a non-empty list of date formats")
    if opts.get("calendar", "gregorian") not in ("gregorian", "buddhist"):
        raise FeedError(path, f"{key}.calendar", "must be gregorian or buddhist")
    return dict(opts)


def parse_feed(path: Path, text: str | None = None) -> Feed:
    """Check and load one feed file; raises FeedError naming the file and key at fault."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8") if text is None else text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FeedError(path, None, f"not valid YAML{where}: {problem}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedError(path, None, f"cannot be read: {exc}") from exc
    if not isinstance(doc, dict):
        raise FeedError(path, None, "must be a YAML mapping (agency:, feed:, columns:, ...)")
    for key in doc:
        if key not in _KNOWN_KEYS:
            raise FeedError(path, str(key),
                            f"unknown key; known keys: {', '.join(sorted(_KNOWN_KEYS))}")
    for key in _REQUIRED_KEYS:
        if key not in doc:
            raise FeedError(path, key, "is required")
    agency = _check_ident(path, "agency", doc["agency"])
    feed = _check_ident(path, "feed", doc["feed"])
    formats = doc["format"] if isinstance(doc["format"], list) else [doc["format"]]
    for fmt in formats:
        if fmt not in FORMATS:
            raise FeedError(path, "format", f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    encoding = str(doc.get("encoding", "utf-8")).lower()
    if encoding not in ENCODINGS:
        raise FeedError(path, "encoding",
                        f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    csv_opts = doc.get("csv") or {}
    if not isinstance(csv_opts, dict) or set(csv_opts) - _CSV_KEYS:
        raise FeedError(path, "csv", f"csv options allowed: {', '.join(sorted(_CSV_KEYS))}")
    if doc["record"] not in RECORDS:
        raise FeedError(path, "record", f"must be one of {', '.join(RECORDS)}")
    supersede = doc.get("supersede", "none")
    if supersede not in SUPERSEDE:
        raise FeedError(path, "supersede", f"must be one of {', '.join(SUPERSEDE)}")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - _DEFAULT_KEYS:
        raise FeedError(path, "defaults",
                        f"defaults allowed: {', '.join(sorted(_DEFAULT_KEYS))}")
    event = doc.get("event")
    if event is not None:
        if not isinstance(event, dict) or set(event) - _EVENT_KEYS or "type" not in event:
            raise FeedError(path, "event", "must be {type: ..., country: ...}")
        if event["type"] not in EVENT_TYPES:
            raise FeedError(path, "event.type", f"must be one of {', '.join(EVENT_TYPES)}")
    releasable = doc.get("releasable_to") or [agency]
    if not isinstance(releasable, list) or not all(isinstance(a, str) for a in releasable):
        raise FeedError(path, "releasable_to", "must be a list of agency ids")
    columns = doc["columns"]
    if not isinstance(columns, dict) or not columns:
        raise FeedError(path, "columns", "must map each source column to {to: target}")
    targets = _targets()
    checked = {str(name): _check_column(path, str(name), opts, targets)
               for name, opts in columns.items()}
    source_key = str(doc["source_key"])
    if source_key not in checked:
        raise FeedError(path, "source_key",
                        f"names column {source_key!r}, which is not under columns:")
    for name, opts in checked.items():
        ref = opts.get("institution_column")
        if ref is not None and ref not in checked:
            raise FeedError(path, f"columns.{name}.institution_column",
                            f"names column {ref!r}, which is not under columns:")
    return Feed(
        agency=agency, feed=feed, title=str(doc.get("title") or f"{agency}/{feed}"),
        formats=formats, encoding=encoding, csv=dict(csv_opts), sheet=doc.get("sheet", 0),
        source_key=source_key, record=doc["record"], role=doc.get("role"),
        releasable_to=list(releasable), supersede=supersede, defaults=dict(defaults),
        event=dict(event) if event else None, columns=checked, path=path.resolve(),
        suite=doc.get("suite"),
    )


def _feed_files(folder: Path) -> list[Path]:
    # <agency>/<feed>.yaml (and .yml); suites beside them are not feed files.
    return sorted(p for p in folder.glob("*/*.y*ml") if p.suffix in (".yaml", ".yml"))


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
            if feed.name in out.feeds:
                out.errors.append(FeedError(path, "feed", f"{feed.name} is already defined in "
                                            f"{out.feeds[feed.name].path}"))
                continue
            out.feeds[feed.name] = feed
    return out


__all__ = ["Feed", "FeedError", "FeedSet", "load_feeds", "parse_feed"]
