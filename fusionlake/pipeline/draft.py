"""Draft a feed definition from a sample file, for a data steward to review (``feeds draft``).

Onboarding an agency means writing its feed file (docs/feeds.md). This module writes a first
draft from one sample of the agency's export:

1. :func:`read_sample` -- the file's format (extension, then content), encoding
   (:func:`fusionlake.pipeline.read.detect_encoding`), CSV delimiter (the one whose field count
   holds on nearly every line, as the reader counts fields) and whether the first row is a
   header; then the file is read by the pipeline's own reader (:func:`read_drop_isolated`),
   so the draft sees exactly the frame a drop of this feed will give, and names the lines a
   drop would quarantine as unreadable.
2. :func:`propose` -- a target for each column, from its header (a small vocabulary in Chinese,
   Thai, Burmese and English: ``data/column_names.yaml``) and from its values: date formats and
   calendar, identifier kinds by check digit (a list of kinds for a column that mixes them),
   phone region and separator, sex value maps, nationality, which name column is the primary
   name and which its Latin spelling or an alias, the unique non-empty column that can be the
   source key. Every measure is a
   vectorised Polars expression over the sample (the share of values each candidate accepts),
   computed once per distinct value; the transforms' own rules judge the values.
3. :func:`render` -- the feed YAML, each guess with a comment saying what it rests on and how sure
   it is; the text is loaded through the feed contract (:func:`parse_feed`) before it is
   returned, so a draft never says what the contract rejects.
4. :func:`check_sample` -- the sample is read with the draft and validated with the suite
   compiled from it (GX, as a run would). Bad values are flagged, not rejected, so only
   structure can reject: a column whose check cannot run on its values is set to ``ignore``
   with the reason; a guess whose check fails more of the sample than the suite's ``mostly``
   is kept and marked ``low``; the draft stages the sample with no hand edits.
   :func:`draft_feed` does all four.

A sample that cannot be drafted from (empty, header only, binary, no header row, a column
without a name that holds values) raises :class:`DraftError`, one line naming the file.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import yaml

from fusionlake.lake.feeds import Feed, FeedError, parse_feed
from fusionlake.pipeline.read import (
    DropReadError,
    csv_records,
    detect_encoding,
    lf_lines,
    library_panic,
    read_drop_isolated,
)
from transforms.canonical import SEX_VALUES
from transforms.countries import country_table, to_iso2
from transforms.dates import parse_dates
from transforms.identifiers import KINDS, is_valid
from transforms.phones import normalise_phones
from transforms.scripts import detect_script

if TYPE_CHECKING:
    from expectations import ValidationOutcome

VOCABULARY = Path(__file__).parent / "data" / "column_names.yaml"

#: Rows of a large file the value measures look at (a seeded random sample, so exports sorted
#: by date or region are seen whole); uniqueness of the source key is judged on every row.
SAMPLE_ROWS = 20_000
#: Distinct phone cells parsed per candidate region (libphonenumber is Python per value).
PHONE_SAMPLE = 2_000
#: Share of a column's values a guess must accept to be written as sure ("high") ...
SURE = 0.95
#: ... and to be written at all ("low" below SURE); below it the column is ignored.
AT_LEAST = 0.5
#: Share for a value-only guess (no header word): values alone must speak clearly.
VALUES_ONLY = 0.9
#: Date forms tried on every column, in order of preference when two accept the same values.
DATE_FORMATS = ("iso", "chinese", "thai_month", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y",
                "%d-%m-%Y", "%d %b %Y", "%b %d %Y", "%Y%m%d")
#: Forms tried only where the header names a date: alone they also read counters (1, 2, ...).
LOOSE_DATE_FORMATS = ("year_only", "excel_serial")
#: Day-first and month-first read the same values up to day 12; a draft names one of them.
_EXCLUSIVE_FORMATS = ({"%d/%m/%Y", "%m/%d/%Y"},)
#: Years this large are Buddhist Era (BE 2400 is CE 1857).
BUDDHIST_YEARS = 2400
#: Identifier kinds a column's values are tested for, in order (passports have no check digit:
#: the header must name them).
CHECKED_KINDS = ("cn_resident_id", "th_national_id", "mm_nrc", "imei", "iccid", "crypto_wallet")
#: Share of rows a draft lets be unusable: a source key that repeats or is empty, a primary name
#: that is empty (such rows are quarantined, the rest goes on). A name empty in more rows is not
#: made required: quarantining that many rows is the steward's decision.
KEY_REPEATS = 0.02
#: A kind joins the list of a mixed identifier column (passports for foreigners, national IDs
#: for nationals) when its check accepts this share of the rows no kind before it accepts, and
#: at least MIXED_KIND_ROWS rows: a check digit passing by chance must not add a kind.
MIXED_KIND_SHARE = 0.01
MIXED_KIND_ROWS = 2
#: Words of the feed name (--feed) that say which event each row records and the persons' role.
EVENT_WORDS = {"wanted": ("suspect", "wanted"), "arrest": ("arrest",),
               "detention": ("detention", "detainee", "detained", "custody"),
               "rescue": ("rescue",), "repatriation": ("repatriat", "return", "deport"),
               "fraud_report": ("fraud", "report", "complaint", "victim")}  # fmt: skip
ROLE_WORDS = {"suspect": ("suspect", "wanted"), "detainee": ("detention", "detainee", "custody"),
              "returnee": ("repatriat", "return", "deport"), "victim": ("fraud", "victim"),
              "rescued": ("rescue",), "arrestee": ("arrest",)}  # fmt: skip
#: Targets a row has once (transforms.canonical maps one column to each).
#: (Several person.name columns are one primary name and its Latin spelling or aliases, and
#: several address.street columns are joined: see :func:`_name_roles`.)
_ONE_PER_ROW = ("person.family_name", "person.given_name", "person.sex", "person.birth_date",
                "person.nationality", "address.street_number", "address.district",
                "address.province", "address.postcode", "event.date", "event.place",
                "event.compound", "event.case_ref", "event.amount", "event.currency",
                "event.flight")
#: Targets whose values are kept as written (no check), so an empty sample column keeps them.
_FREE_TEXT = ("event.place", "event.compound", "event.case_ref", "event.flight",
              "address.street_number", "address.street", "address.district", "address.province",
              "address.postcode")
_NATIONAL_ID_COUNTRY = {"cn_resident_id": "CN", "th_national_id": "TH", "mm_nrc": "MM"}
_KEY_DROP = r"[\s_\-\.:/()（）#№]+"
_NUMERICISH = r"^[\d\s.,:/+\-年月日]+$"  # numbers, dates, phones: what a header cell is not
_PHONE_SHAPE = r"^\+?[\d\s\-().]{7,}(?:[;,/|]\s*\+?[\d\s\-().]{7,})*$"
_SPLITS = (";", ",", "/", "|")
_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl",
               ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_DELIMITERS = (",", "\t", ";", "|")
#: Regions a feed's phone numbers are tried in, after the agency's country and nationality.
_PHONE_REGIONS = ("CN", "TH", "MM")
#: Words by which a header names an ID (a header without them whose values look like phone
#: numbers may still be one; see :func:`not_a_phone`) ...
_ID_WORDS = ("id", "ids", "no", "nos", "cccd", "cmnd", "cmt", "cnic", "nic", "nik", "ktp",
             "nrc", "card", "passport", "identity", "identification")
_ID_PHRASES = ("căn cước", "chứng minh", "hộ chiếu", "身份", "证件", "护照", "บัตรประชาชน",
               "หนังสือเดินทาง")
#: ... unless it names a phone too (``Phone No.``).
_PHONE_WORDS = {"phone", "tel", "telephone", "mobile", "cell", "fax", "sđt", "đt", "whatsapp",
                "zalo", "viber", "telegram"}
_PHONE_PHRASES = ("điện thoại", "电话", "手机", "โทร", "ဖုန်း")
#: Plain digits of one length this long are an ID number unless most read as mobile numbers.
ID_DIGITS = 12
_MOBILE_TYPES = ("mobile", "fixed_line_or_mobile")
#: The agency's own country is its phone region unless another reads this much more of the
#: numbers as valid (a register of foreigners' numbers).
PHONE_REGION_MARGIN = 0.05
#: Lines of a CSV sample the delimiter is judged on ...
SNIFF_LINES = 200
#: ... and the share of its data lines whose field count must be the header's: the rest are
#: outliers a drop quarantines (a line with a field too many), not a sign of another delimiter.
DELIMITER_AGREES = 0.9


class DraftError(Exception):
    """A sample no feed can be drafted from; the one-line message names the file and why."""


# ---------------------------------------------------------------------------------------------
# What a draft is made of


@dataclass
class ColumnGuess:
    """The proposed target of one source column, and why."""

    name: str
    options: dict  # to: and its options, as the feed file will say them
    why: list[str] = field(default_factory=list)
    sure: str = "low"  # high: header and values agree; medium: one of them; low: check it

    @property
    def target(self) -> str:
        return self.options["to"]


@dataclass
class Sniffed:
    """How the sample file is written."""

    format: str
    encoding: str | None = None  # csv and jsonl only
    delimiter: str | None = None  # csv only
    sheet_names: list[str] = field(default_factory=list)  # xlsx only
    notes: list[str] = field(default_factory=list)


@dataclass
class Draft:
    """A proposed feed definition: what :func:`render` writes."""

    agency: str
    feed: str
    file_name: str
    rows: int
    sniffed: Sniffed
    source_key: str
    columns: list[ColumnGuess]
    role: str | None = None
    event: dict | None = None
    defaults: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # lines for the header comment


# ---------------------------------------------------------------------------------------------
# Reading the sample


def _provisional_feed(agency: str, feed: str, path: Path, sniffed: Sniffed,
                      columns: list[str] = ()) -> Feed:
    """A feed with only what the readers consult, to read the sample as a drop is read."""
    return Feed(agency=agency, feed=feed, title=f"{agency}/{feed}", formats=[sniffed.format],
                encoding=sniffed.encoding or "utf-8",
                csv={"delimiter": sniffed.delimiter} if sniffed.delimiter else {}, sheet=0,
                source_key="", record="person", role=None, releasable_to=[agency],
                supersede="none", defaults={}, event=None,
                columns={c: {"to": "ignore"} for c in columns}, path=path)


def _sniff_format(data: bytes, path: Path) -> str:
    by_name = _EXTENSIONS.get(path.suffix.lower())
    if by_name:
        return by_name
    if data.startswith(b"PK"):
        return "xlsx"
    if data.startswith(b"PAR1"):
        return "parquet"
    return "jsonl" if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def _utf16(data: bytes) -> bool:
    """UTF-16 text with its byte order mark, as the readers take it (not UTF-32's)."""
    return data.startswith((b"\xff\xfe", b"\xfe\xff")) and not data.startswith(b"\xff\xfe\0\0")


def _sniff_text(data: bytes, path: Path, fmt: str) -> str:
    """The encoding of a text sample; DraftError for binary files."""
    head = data[:65536]
    if b"\x00" in head:
        raise DraftError(f"{path}: is a binary file, not {fmt.upper()} text; drafting reads "
                         "CSV/TSV, xlsx, JSON Lines or Parquet exports")
    return detect_encoding(data)


@dataclass
class _DelimiterFit:
    """How the first lines of a CSV split under one delimiter, counted as the reader counts."""

    delimiter: str
    width: int  # the header's fields: the columns the reader makes
    lines: int  # records looked at, the header among them
    outliers: list[tuple[int, int]]  # (line, fields written) of the data records that disagree
    habit: bool  # a delimiter ends most data lines (not the header): the reader drops it
    unnamed_last: bool  # the header ends with the delimiter: its last field is empty
    whole: bool = True  # the lines looked at are the whole file

    @property
    def share(self) -> float:
        """Share of the data records whose field count is the header's."""
        data = self.lines - 1
        return 1.0 if data <= 0 else (data - len(self.outliers)) / data

    def why(self) -> str:
        fields = f"{self.width} fields" + (" (the last has no name: the header ends with the "
                                           "delimiter)" if self.unnamed_last else "")
        habit = ("; a delimiter ending each data line is no field (the reader drops it)"
                 if self.habit else "")
        lines = (f"its {self.lines:,} line{'s' if self.lines > 1 else ''}" if self.whole
                 else f"the first {self.lines:,} lines")
        if not self.outliers:
            return f"{fields} on {'each of ' if self.lines > 1 else ''}{lines}{habit}"
        k = len(self.outliers)
        shown = ", ".join(f"line {line}: {n} field{'s' if n != 1 else ''}"
                          for line, n in self.outliers[:3]) + (", ..." if k > 3 else "")
        return (f"{fields} on {self.lines - k:,} of {lines}{habit}; "
                f"{k:,} line{'s disagree' if k > 1 else ' disagrees'} ({shown}): a drop "
                f"quarantines {'them' if k > 1 else 'it'}")


def _delimiter_fit(head: bytes, delimiter: str, cut: bool) -> _DelimiterFit | None:
    """The fit of one delimiter to the first lines ``head`` (``cut``: the file goes on, so its
    last record may be cut short); None when the lines cannot be split into records."""
    try:
        records = csv_records(head, delimiter, '"').filter(~pl.col("blank"))
    except pl.exceptions.PolarsError:
        return None
    if records.height == 0:
        return None
    if cut and records.height > 1 and records["problem"][-1] is not None:
        records = records.slice(0, records.height - 1)  # a quoted record the cut broke
    header, data = records.row(0, named=True), records.slice(1)
    width = header["fields"]
    ends = pl.col("text").str.ends_with(delimiter)
    readable = data.filter(pl.col("problem").is_null())
    habit = readable.filter((pl.col("fields") == width + 1) & ends).height \
        > readable.height / 2 and readable.height > 0
    fields = pl.when(pl.lit(habit) & ends).then(pl.col("fields") - 1).otherwise(pl.col("fields"))
    outliers = data.filter(pl.col("problem").is_not_null() | (fields != width))
    return _DelimiterFit(delimiter, width, records.height,
                         list(zip(outliers["line"].to_list(), outliers["fields"].to_list(),
                                  strict=True)),
                         habit, width > 1 and header["text"].endswith(delimiter), not cut)


def _sniff_delimiter(text: bytes) -> tuple[str, str]:
    """The delimiter whose field count, the header's, agrees on the great majority of the
    first lines (the widest such), and why.

    Records and their fields are counted as the pipeline's CSV reader counts them (quoted
    delimiters and line breaks are no breaks; a delimiter ending most data lines whose header
    has none is no field). A few lines that disagree (a field too many or too few) do not
    make the delimiter lose: they are the rows a drop of the feed quarantines, and the reason
    names them. Where no delimiter splits the header and at least half the lines alike, the
    sample has one field per line.
    """
    text = lf_lines(text)
    lines = text.split(b"\n", SNIFF_LINES)
    cut = len(lines) > SNIFF_LINES
    head = b"\n".join(lines[:SNIFF_LINES])
    fits = [f for f in (_delimiter_fit(head, d, cut) for d in _DELIMITERS) if f is not None]
    usable = [f for f in fits if f.width > 1 and f.share >= AT_LEAST]
    if not usable:
        return ",", "one field per line: no delimiter found"
    best = max(usable, key=lambda f: (f.share >= DELIMITER_AGREES,
                                      f.width if f.share >= DELIMITER_AGREES else 0, f.share))
    return best.delimiter, best.why()


def read_sample(path: Path, agency: str, feed: str) -> tuple[pl.DataFrame, Sniffed]:
    """Read a sample file as the pipeline will read a drop of it.

    Returns:
        The frame (source columns as strings, plus ``source_row``) and how the file is written.

    Raises:
        DraftError: missing, empty, binary, undecodable, header-only or header-less file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DraftError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not data.strip():
        raise DraftError(f"{path}: is empty; drafting needs a sample with a header and rows")
    fmt = _sniff_format(data, path)
    sniffed = Sniffed(fmt)
    columns: list[str] = []
    if fmt in ("csv", "jsonl") and _utf16(data):
        # Excel's "Unicode Text": the readers read it by its byte order mark, whatever the
        # feed's encoding says
        sniffed.encoding = "utf-8"
        sniffed.notes.append("encoding utf-8: this sample is UTF-16 with a byte order mark, "
                             "which the readers take by its mark whatever this line says")
        text = data.decode("utf-16", errors="replace").encode("utf-8")
    elif fmt in ("csv", "jsonl"):
        sniffed.encoding = _sniff_text(data, path, fmt)
        sniffed.notes.append(f"encoding {sniffed.encoding}: " + (
            "byte order mark" if sniffed.encoding == "utf-8-sig" else
            "valid UTF-8" if sniffed.encoding == "utf-8" else
            "not UTF-8; its bytes read as " + sniffed.encoding.upper()))
        text = data.decode("utf-8-sig" if sniffed.encoding.startswith("utf-8")
                           else sniffed.encoding, errors="replace").encode("utf-8")
    if fmt in ("csv", "jsonl"):
        if fmt == "csv":
            sniffed.delimiter, why = _sniff_delimiter(text)
            sniffed.notes.append(f"delimiter {sniffed.delimiter!r}: {why}")
        else:
            columns = _jsonl_keys(text)
    elif fmt == "xlsx" and data.startswith(b"PK"):
        try:
            import fastexcel

            sniffed.sheet_names = list(fastexcel.read_excel(data).sheet_names)
        except Exception:  # a broken workbook: the reader names the problem below
            pass
    feed_like = _provisional_feed(agency, feed, path, sniffed, columns)
    try:
        read = read_drop_isolated(data, str(path), feed_like)
    except DropReadError as exc:
        raise DraftError(str(exc).split("; feed ")[0]) from None
    frame = read.frame
    if read.bad.height:  # a drop quarantines them too: the steward should know
        lines = read.bad["line"].drop_nulls().unique().sort().to_list()
        bad = read.bad["source_row"].n_unique()
        first = read.bad["reason"][0].split(": ", 1)[-1]  # without its "line N: "
        sniffed.notes.append(
            f"{bad:,} record{'s' if bad > 1 else ''} cannot be read (line"
            f"{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:5]))}"
            f"{', ...' if len(lines) > 5 else ''}: {first}); a drop "
            "quarantines such lines, with the line as written")
    if frame.height == 0:
        raise DraftError(f"{path}: has a header but no data rows; drafting judges the values, "
                         "so it needs a sample with rows")
    frame = _unnamed_columns(frame, path, sniffed)
    if fmt in ("csv", "xlsx"):
        _check_header_row(frame, path)
    return frame, sniffed


def _unnamed_columns(frame: pl.DataFrame, path: Path, sniffed: Sniffed) -> pl.DataFrame:
    """The frame without its columns that have no name and no values; DraftError for a column
    without a name that holds values.

    The CSV and workbook readers drop a nameless column empty in every row themselves (a
    header ending with the delimiter, ``id,name,``); a JSON key ``""`` is not dropped. A feed
    file cannot name such a column (the suite compiled from one cannot check it), nor needs
    to, so the draft leaves it out. A column without a name that holds values is a header the
    agency must fix: which field is it?
    """
    columns = [c for c in frame.columns if c != "source_row"]
    unnamed = [c for c in columns if not c.strip()]
    if not unnamed:
        return frame
    values = frame.select(pl.col(unnamed).cast(pl.String).str.strip_chars()
                          .replace("", None).drop_nulls().head(3).implode())
    for c in unnamed:
        held = values[c][0].to_list()
        if held:
            i = columns.index(c)
            where = f"after {columns[i - 1]!r}" if i else "the first"
            raise DraftError(
                f"{path}: column {i + 1} of the header ({where}) has no name but holds values "
                f"({', '.join(map(repr, held))}); a feed file names every column it reads: ask "
                "the agency to export with a name for it")
    for c in unnamed:
        i = columns.index(c)
        sniffed.notes.append(
            f"column {i + 1} of the header has no name and no value in any row"
            + (" (the header ends with the delimiter)" if i == len(columns) - 1 else "")
            + ": left out, as a feed file cannot name it; nothing reads a column the feed "
            "does not declare (a drop may warn of it)")
    return frame.drop(unnamed)


def _jsonl_keys(text: bytes) -> list[str]:
    """Keys of the first lines of a JSON Lines sample, in order of first appearance."""
    keys: dict[str, None] = {}
    for line in text.splitlines()[:1000]:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue  # the reader quarantines a malformed line, with its number
        if isinstance(obj, dict):
            keys.update(dict.fromkeys(obj))
    return list(keys)


def _check_header_row(frame: pl.DataFrame, path: Path) -> None:
    """DraftError when the first row looks like data: the feed format needs column names."""
    body = frame.drop("source_row")
    numeric = body.select(pl.all().str.strip_chars().str.contains(_NUMERICISH).mean())
    data_columns = [c for c in body.columns if (numeric[c][0] or 0) >= 0.8]
    looks_like_data = [c for c in data_columns if re.fullmatch(_NUMERICISH, c.strip())]
    if data_columns and len(looks_like_data) * 2 > len(data_columns):
        raise DraftError(f"{path}: the first row ({', '.join(body.columns[:4])}, ...) looks "
                         "like data, not column names; feed files need a header row: ask the "
                         "agency to export with one")


# ---------------------------------------------------------------------------------------------
# Headers: the vocabulary


def header_key(text: str) -> str:
    """A header as the vocabulary compares it: NFKC, lower case, no spaces or _ - . : / ( )."""
    return re.sub(_KEY_DROP, "", unicodedata.normalize("NFKC", str(text)).casefold())


@cache
def vocabulary() -> dict[str, tuple[dict, str]]:
    """Header word (as :func:`header_key`) -> (the entry's target and options, the word as
    the vocabulary writes it).

    Raises:
        ValueError: a word listed under two entries, or an entry without words.
    """
    entries = yaml.safe_load(VOCABULARY.read_text(encoding="utf-8"))
    table: dict[str, tuple[dict, str]] = {}
    for i, entry in enumerate(entries):
        hint = {k: v for k, v in entry.items() if k != "words"}
        if not entry.get("words"):
            raise ValueError(f"{VOCABULARY.name}: entry {i} has no words")
        for word in entry["words"]:
            key = header_key(word)
            if key in table and table[key][0] != hint:
                raise ValueError(f"{VOCABULARY.name}: {word!r} is listed for {table[key][0]} "
                                 f"and {hint}")
            table.setdefault(key, (hint, str(word)))
    return table


def header_hint(column: str) -> tuple[dict | None, str | None, bool]:
    """The vocabulary entry a header matches, the word, and whether it matched the whole header.

    A whole-header match wins; otherwise the longest word the header contains (Latin words of
    fewer than 4 letters only match whole headers).
    """
    key = header_key(column)
    table = vocabulary()
    if key in table:
        return (*table[key], True)
    found = [w for w in table
             if w in key and (len(w) >= 4 or not re.fullmatch(r"[a-z0-9]+", w))]
    if not found:
        return None, None, False
    return (*table[max(found, key=len)], False)


# ---------------------------------------------------------------------------------------------
# Values: each measure is the share of a column's values a candidate accepts


def _clean(values: pl.Series) -> pl.Series:
    v = values.cast(pl.String).str.strip_chars()
    return pl.select(pl.when(v.str.len_chars() > 0).then(v)).to_series().rename("v")


def _distinct(values: pl.Series) -> pl.DataFrame:
    """Distinct non-null values ``v`` with their row counts ``n``: measures run once each."""
    return (values.drop_nulls().rename("v").value_counts(name="n", sort=True)
            .with_columns(pl.col("n").cast(pl.Int64)))


def _share(distinct: pl.DataFrame, accepted: pl.Series) -> float:
    """The share of rows (weighted by ``n``) whose value is accepted."""
    total = distinct["n"].sum()
    return float((distinct["n"] * accepted.fill_null(False).cast(pl.Int64)).sum() / total) \
        if total else 0.0


@dataclass
class DateFit:
    formats: list[str]
    calendar: str
    share: float
    median_year: int | None


def fit_dates(distinct: pl.DataFrame, loose: bool) -> DateFit | None:
    """The date formats (fewest first) and calendar that read most of the values.

    Formats are chosen greedily: the one accepting most rows, then the one adding most rows not
    yet read, while each adds at least 0.5% of the rows. Years of 2400 and more in most dates
    make the calendar Buddhist Era.
    """
    candidates = [*DATE_FORMATS, *(LOOSE_DATE_FORMATS if loose else ())]
    v = distinct["v"]
    accepts = pl.DataFrame({f: parse_dates(v, [f])["date"].is_not_null() for f in candidates})
    rows = distinct["n"]
    total = rows.sum()
    covered = pl.Series([False] * len(v))
    chosen: list[str] = []
    while len(chosen) < 4:
        open_ = [f for f in candidates if f not in chosen and not any(
            f in pair and pair & set(chosen) for pair in _EXCLUSIVE_FORMATS)]
        gains = {f: int((rows * (accepts[f] & ~covered).cast(pl.Int64)).sum()) for f in open_}
        if not gains:
            break
        best = max(open_, key=lambda f: gains[f])  # first of equals: the preferred form
        if gains[best] == 0 or (chosen and gains[best] < 0.005 * total):
            break
        chosen.append(best)
        covered = covered | accepts[best]
    if not chosen:
        return None
    dates = parse_dates(v, chosen)["date"]
    buddhist = _share(distinct, dates.dt.year() >= BUDDHIST_YEARS) >= 0.5 * _share(
        distinct, dates.is_not_null())
    calendar = "buddhist" if buddhist else "gregorian"
    if buddhist:
        dates = parse_dates(v, chosen, calendar)["date"]
    years = pl.DataFrame({"y": dates.dt.year(), "n": rows}).drop_nulls()
    median = None
    if years.height:
        median = int(years.select(pl.col("y").repeat_by("n").explode().median()).item())
    return DateFit(chosen, calendar, _share(distinct, dates.is_not_null()), median)


def identifier_shares(distinct: pl.DataFrame, kinds: tuple[str, ...]) -> dict[str, float]:
    """Share of rows whose value passes each kind's check digit or format (transforms rule)."""
    return {k: _share(distinct, is_valid(k, distinct["v"]).fill_null(True)) for k in kinds}


def identifier_kinds(distinct: pl.DataFrame, kinds: tuple[str, ...],
                     named: str | None = None) -> tuple[list[str], dict[str, float], float]:
    """The kind, or kinds, of an identifier column, each kind's share, and the share of rows
    some chosen kind accepts.

    The kind accepting most rows comes first (the header's kind where it accepts as many); then
    each other kind, in the order of ``kinds``, whose check accepts at least
    :data:`MIXED_KIND_SHARE` of the rows no kind chosen so far accepts (a register that keeps
    passports for foreigners and national IDs for nationals in one column).
    """
    accepts = {k: is_valid(k, distinct["v"]).fill_null(True) for k in kinds}
    shares = {k: _share(distinct, accepts[k]) for k in kinds}
    best = max(kinds, key=lambda k: shares[k])
    if named and shares.get(named, 0) >= shares[best] - 1e-9:
        best = named
    chosen, covered = [best], accepts[best]
    least = max(MIXED_KIND_ROWS, MIXED_KIND_SHARE * distinct["n"].sum())
    for k in kinds:
        gain = (distinct["n"] * (accepts[k] & ~covered).cast(pl.Int64)).sum()
        if k not in chosen and shares[best] > 0 and gain >= least:
            chosen.append(k)
            covered = covered | accepts[k]
    return chosen, shares, _share(distinct, covered)


def luhn_card_share(distinct: pl.DataFrame) -> float:
    """Share of rows that are bank card numbers (16-19 digits passing the card rule)."""
    digits = distinct["v"].str.replace_all(r"[\s\-]", "")
    sized = digits.str.contains(r"^\d{16,19}$")
    return _share(distinct, sized & is_valid("bank_card", distinct["v"]).fill_null(True))


def phone_split(distinct: pl.DataFrame) -> str | None:
    """The separator between several numbers in one cell, if any cell has one."""
    counts = {s: _share(distinct, distinct["v"].str.contains(rf"\d\s*{re.escape(s)}\s*\+?\d",
                                                             literal=False))
              for s in _SPLITS}
    best = max(_SPLITS, key=lambda s: counts[s])
    return best if counts[best] > 0 else None


def phone_share(distinct: pl.DataFrame, region: str | None, split: str | None,
                line_types: tuple[str, ...] | None = None) -> float:
    """Share of rows whose every number is a valid number read in ``region`` (of one of
    ``line_types``, if given).

    Valid is libphonenumber's ``is_valid_number``: the number is in a range the region's
    numbering plan gives out. :func:`normalise_phones` also keeps the E.164 of a number whose
    length is merely possible there (``is_possible_number``: a new range), with a reason and no
    line type; such a number is not counted. China's plan allows national numbers of 7 to 12
    digits, so nearly any number of another country, read in CN, is "possible": counting those
    made CN read a Cambodian register's ``012 192 664`` as well as KH did.
    """
    part = distinct.head(PHONE_SAMPLE)
    numbers = normalise_phones(part["v"], region, split)
    wrong = pl.col("line_type").is_null()
    if line_types is not None:
        wrong = wrong | ~pl.col("line_type").is_in(line_types)
    bad = numbers.filter(wrong)["row"].unique()
    return _share(part, ~pl.int_range(0, part.height, eager=True).is_in(bad.implode()))


def names_an_id(column: str) -> str | None:
    """The word by which a header names an identity document or number (``Số CCCD``, ``ID
    No.``, ``Card number``), None when it names none or names a phone."""
    text = unicodedata.normalize("NFKC", str(column)).casefold()
    words = set(re.findall(r"[^\W_]+", text))
    if words & _PHONE_WORDS or any(w in text for w in _PHONE_PHRASES):
        return None
    return next((w for w in _ID_WORDS if w in words), None) or next(
        (w for w in _ID_PHRASES if w in text), None)


def id_digits(distinct: pl.DataFrame) -> tuple[int, float]:
    """The length of most values written as plain digits, and the share of rows of that
    length (identity numbers are written so; phone numbers keep a +, spaces or dashes, and
    vary in length)."""
    plain = distinct.filter(pl.col("v").str.contains(r"^\d+$"))
    if plain.height == 0:
        return 0, 0.0
    lengths = plain.group_by(pl.col("v").str.len_chars().alias("k")).agg(pl.col("n").sum())
    top = lengths.sort(["n", "k"], descending=True).row(0, named=True)
    return top["k"], top["n"] / distinct["n"].sum()


def not_a_phone(column: str, distinct: pl.DataFrame, regions: tuple[str, ...]) -> str | None:
    """Why a column whose values only look like phone numbers (no header word) is not one, or
    None: its header names an ID, or its values are plain digits of one length of 12 and more
    that few regions read as valid mobile numbers (a Vietnamese CCCD ``030197970808`` reads as
    a valid Chinese fixed-line number: CN area codes and a 12-digit length fit it by chance)."""
    word = names_an_id(column)
    if word:
        return f"header names an ID ({word!r}), not a phone number"
    size, share = id_digits(distinct)
    if size < ID_DIGITS or share < VALUES_ONLY:
        return None
    mobiles = {r: phone_share(distinct, r, None, _MOBILE_TYPES) for r in regions}
    best = max(regions, key=lambda r: mobiles[r])
    if mobiles[best] >= VALUES_ONLY:
        return None
    return (f"{_pct(share)} are {size}-digit numbers, one length, and at most "
            f"{_pct(mobiles[best])} read as valid mobile numbers ({', '.join(regions)}): an "
            "ID number, not a phone number")


def phone_shape_share(distinct: pl.DataFrame) -> float:
    return _share(distinct, distinct["v"].str.contains(_PHONE_SHAPE))


def sex_map(distinct: pl.DataFrame) -> tuple[dict[str, str], float, list[str]]:
    """The values: map of a sex column (its values the common forms know), the share of rows
    it covers, and the values it does not know."""
    known = {k.lower(): v for k, v in SEX_VALUES.items()}
    mapped = distinct["v"].str.to_lowercase().replace_strict(known, default=None,
                                                             return_dtype=pl.String)
    values = dict(zip(distinct["v"].to_list(), mapped.to_list(), strict=True))
    return ({k: v for k, v in values.items() if v},
            _share(distinct, mapped.is_not_null()),
            [k for k, v in values.items() if not v])


def country_share(distinct: pl.DataFrame) -> float:
    return _share(distinct, to_iso2(distinct["v"]).is_not_null())


def script_shares(distinct: pl.DataFrame) -> dict[str, float]:
    """Share of rows per writing system (Han, Thai, Lao, Myanmar, Latin, Other)."""
    scripts = detect_script(distinct["v"])
    return {s: _share(distinct, scripts == s)
            for s in ("Han", "Thai", "Lao", "Myanmar", "Latin", "Other")}


def looks_like_names(distinct: pl.DataFrame) -> float:
    """Share of rows that read as a person's name: letters, no digits, 1-5 words (Han 2-4)."""
    v = distinct["v"]
    han = v.str.contains(r"^\p{Han}{2,4}$")
    words = v.str.contains(r"^[\p{L}\p{M}'·.\-]+(?:\s+[\p{L}\p{M}'·.\-]+){0,4}$")
    return _share(distinct, (han | (words & ~v.str.contains(r"\p{Han}")))
                  & ~v.str.contains(r"\d"))


#: Why name_order guessed what it did, one reason per guess.
_ORDER_REASONS = {
    "burmese": "Burmese names have no family name",
    "han": "Chinese names put the family name first",
    "thai": "Thai names put the given name first",
    "lao": "Lao names put the given name first",
    "khmer": "Khmer names put the family name first",
    "vietnamese": "Vietnamese names (their letters: ă â đ ê ô ơ ư, tone marks) put the family "
                  "name first: Nguyễn Văn An",
    "capitals": "Latin names in capitals, as passports write SURNAME GIVEN",
    "mixed": "Latin names in mixed case, usually Given Surname",
}


#: Letters only Vietnamese writes among the Latin scripts a feed may hold (with tone marks).
_VIETNAMESE = ("[ăâđêôơưĂÂĐÊÔƠƯạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ"
               "ẠẢẤẦẨẪẬẮẰẲẴẶẸẺẼẾỀỂỄỆỈỊỌỎỐỒỔỖỘỚỜỞỠỢỤỦỨỪỬỮỰỲỴỶỸ]")


def name_order(scripts: dict[str, float], distinct: pl.DataFrame) -> tuple[str, str]:
    """The name_order of a name column and why: by its main script (and case, for Latin)."""
    if scripts["Myanmar"] >= 0.05:
        return "none", _ORDER_REASONS["burmese"]
    if scripts["Han"] >= 0.5:
        return "family_first", _ORDER_REASONS["han"]
    if scripts["Thai"] >= 0.5:
        return "given_first", _ORDER_REASONS["thai"]
    if scripts["Lao"] >= 0.5:
        return "given_first", _ORDER_REASONS["lao"]
    if _share(distinct, distinct["v"].str.contains(r"[\u1780-\u17FF]")) >= 0.5:
        return "family_first", _ORDER_REASONS["khmer"]
    latin = distinct.filter(detect_script(distinct["v"]) == "Latin")
    if latin.height and _share(latin, latin["v"].str.contains(_VIETNAMESE)) >= 0.3:
        return "family_first", _ORDER_REASONS["vietnamese"]
    upper = _share(latin, latin["v"] == latin["v"].str.to_uppercase()) if latin.height else 0
    if upper >= 0.9:
        return "family_first", _ORDER_REASONS["capitals"]
    return "given_first", _ORDER_REASONS["mixed"]


# ---------------------------------------------------------------------------------------------
# Proposing a target per column


def _pct(share: float) -> str:
    return f"{share:.0%}" if share < 0.995 or share == 1 else ">99%"


def _sure(share: float, header: bool) -> str:
    if share >= SURE and header:
        return "high"
    return "medium" if share >= SURE or (header and share >= VALUES_ONLY) else "low"


def _guess_column(name: str, values: pl.Series, hint: dict | None, word: str | None,
                  whole: bool, regions: tuple[str, ...] = ("CN", "TH", "MM")) -> ColumnGuess:
    """A first guess for one column, from its header word and its values alone (``regions``:
    the phone regions the feed's numbers may be read in)."""
    distinct = _distinct(values)
    said = f"header {'is' if whole else 'contains'} {word!r}" if word else "no header word"
    an_id = names_an_id(name) if hint is None else None
    target = (hint or {}).get("to")
    if hint and hint.get("institution"):
        return ColumnGuess(name, {"to": "ignore"}, [said + ": names a bank"], "medium")
    if distinct.height == 0:
        opts = {"to": target} if target in _FREE_TEXT else {"to": "ignore"}
        return ColumnGuess(name, opts, [said, "empty in the sample"], "low")

    if target in ("person.birth_date", "event.date") or target is None:
        fit = fit_dates(distinct, loose=target is not None)
        if fit and (fit.share >= AT_LEAST if target else fit.share >= VALUES_ONLY):
            if target is None:
                target = "person.birth_date" if (fit.median_year or 0) <= dt.date.today(
                ).year - 10 else "event.date"
            opts = {"to": target, "calendar": fit.calendar, "formats": fit.formats}
            why = [said, f"{_pct(fit.share)} read as {', '.join(fit.formats)}"]
            if fit.calendar == "buddhist":
                why.append(f"years {BUDDHIST_YEARS}+ are Buddhist Era")
            if "%d/%m/%Y" in fit.formats or "%m/%d/%Y" in fit.formats:
                why.append("day/month order from values past the 12th")
            if word is None:
                why.append(f"median year {fit.median_year}")
            return ColumnGuess(name, opts, why, _sure(fit.share, word is not None))
        if target:
            return ColumnGuess(name, {"to": "ignore"},
                               [said + f" -> {target}", "but the values read as no date form "
                                "(check them)"], "low")

    if target == "identifier" or (target is None and hint is None):
        named = (hint or {}).get("kind")
        kinds = CHECKED_KINDS + (("passport",) if target == "identifier" else ())
        chosen, shares, covered = identifier_kinds(distinct, kinds, named)
        best = chosen[0]
        if target == "identifier" and covered >= AT_LEAST:
            why = [said, ", ".join(f"{_pct(shares[k])} pass the {k} check" for k in chosen)]
            if len(chosen) > 1:
                why.append(f"{_pct(covered)} pass one of them: several kinds in one column, "
                           "each value takes the first kind whose check holds")
            if named and named not in chosen:
                why.append(f"the header suggests {named} ({_pct(shares.get(named, 0))})")
            sure = _sure(covered, named is None or named in chosen)
            kind = best if len(chosen) == 1 else chosen
            return ColumnGuess(name, {"to": "identifier", "kind": kind}, why, sure)
        if target is None and shares[best] >= (AT_LEAST if an_id else VALUES_ONLY):
            why = [said] + ([f"header names an ID ({an_id!r})"] if an_id else [])
            return ColumnGuess(name, {"to": "identifier", "kind": best},
                               [*why, f"{_pct(shares[best])} pass the {best} check digit"],
                               _sure(shares[best], an_id is not None))
        if target == "identifier":
            return ColumnGuess(name, {"to": "ignore"},
                               [said + " -> identifier", "but no kind's check accepts half the "
                                "values (check them)"], "low")

    if target == "account" or (target is None and hint is None):
        kind = (hint or {}).get("kind", "bank_card")
        relation = (hint or {}).get("relation")
        opts = {"to": "account"}
        if kind == "crypto_wallet":
            share = identifier_shares(distinct, ("crypto_wallet",))["crypto_wallet"]
            if share >= VALUES_ONLY:
                opts.update(kind="crypto_wallet", chain="TRC20")
                why = [said, f"{_pct(share)} are TRC20 addresses (base58check)"]
                return ColumnGuess(name, opts | ({"relation": relation} if relation else {}),
                                   why, _sure(share, True))
            return ColumnGuess(name, {"to": "ignore"}, [said + " -> a wallet", f"only "
                               f"{_pct(share)} are TRC20 addresses (check the chain)"], "low")
        cards = luhn_card_share(distinct)
        if target == "account" or cards >= VALUES_ONLY:
            kind = "bank_card" if cards >= VALUES_ONLY else "bank_account"
            opts["kind"] = kind
            if relation:
                opts["relation"] = relation
            why = [said, f"{_pct(cards)} are bank card numbers (16-19 digits, Luhn)"]
            return ColumnGuess(name, opts, why, _sure(max(cards, 1 - cards), target is not None))

    if target == "phone" or (target is None and hint is None
                             and phone_shape_share(distinct) >= VALUES_ONLY):
        why_not = None if target else not_a_phone(name, distinct, regions)
        if why_not:
            return ColumnGuess(name, {"to": "ignore"}, [
                said, f"{_pct(phone_shape_share(distinct))} look like phone numbers, but "
                f"{why_not}; no identifier kind's check accepts most of them (check them)"], "low")
        split = phone_split(distinct)
        opts = {"to": "phone"}
        if (hint or {}).get("relation"):
            opts["relation"] = hint["relation"]
        if split:
            opts["split"] = split
        why = [said] + ([f"several numbers in a cell, split by {split!r}"] if split else [])
        return ColumnGuess(name, opts, why, "medium" if target else "low")

    if target == "person.sex" or (target is None and hint is None and distinct.height <= 6):
        mapping, share, unknown = sex_map(distinct)
        if share >= (AT_LEAST if target else SURE):
            opts = {"to": "person.sex", "values": mapping}
            why = [said, f"{_pct(share)} of the values are known sex forms"]
            if unknown:
                why.append(f"not mapped: {', '.join(unknown[:5])}")
            return ColumnGuess(name, opts, why, _sure(share, target is not None))
        if target:
            return ColumnGuess(name, {"to": "ignore"}, [said + " -> person.sex",
                               f"but only {_pct(share)} of the values are known sex forms"],
                               "low")

    if target == "person.nationality" or (target is None and hint is None):
        share = country_share(distinct)
        if share >= (AT_LEAST if target else VALUES_ONLY):
            return ColumnGuess(name, {"to": "person.nationality"},
                               [said, f"{_pct(share)} name a known country"],
                               _sure(share, target is not None))
        if target:
            return ColumnGuess(name, {"to": "ignore"}, [said + " -> person.nationality",
                               f"but only {_pct(share)} name a known country"], "low")

    if target in ("person.name", "person.family_name", "person.given_name") or (
            target is None and hint is None):
        share = looks_like_names(distinct)
        if target or (share >= VALUES_ONLY and distinct.height >= 0.5 * distinct["n"].sum()):
            opts = {"to": target or "person.name"}
            if (hint or {}).get("name_role"):
                opts["name_role"] = hint["name_role"]
            why = [said, f"{_pct(share)} read as names"]
            if opts["to"] == "person.name":
                scripts = script_shares(distinct)
                order, because = name_order(scripts, distinct)
                opts["name_order"] = order
                main = ", ".join(f"{s} {_pct(x)}" for s, x in scripts.items() if x >= 0.05)
                why += [main, because]
            return ColumnGuess(name, opts, why, _sure(share, target is not None))

    if target:
        return ColumnGuess(name, {"to": target}, [said], "medium")
    return ColumnGuess(name, {"to": "ignore"}, [said, "values fit no target"], "low")


def _event_and_role(feed: str) -> tuple[str | None, str | None]:
    words = feed.lower()
    event = next((e for e, ws in EVENT_WORDS.items() if any(w in words for w in ws)), None)
    role = next((r for r, ws in ROLE_WORDS.items() if any(w in words for w in ws)), None)
    return event, role


def _agency_country(agency: str) -> str | None:
    """The country an agency id starts with (``th_imm`` -> TH), when it is an ISO code."""
    prefix = agency.split("_", 1)[0].upper()
    return prefix if len(prefix) == 2 and prefix in set(country_table().values()) else None


def _choose_source_key(frame: pl.DataFrame, guesses: list[ColumnGuess]) -> tuple[str, str, bool]:
    """The column to use as source key, why, and whether it is sure.

    Candidates have a value in nearly every row and repeat in few (:data:`KEY_REPEATS`: an
    export with one duplicated row still has its key); a header that names a key wins, then a
    case number, then the left-most column no person field needs, fully unique ones first.
    """
    body = frame.drop("source_row")
    n = body.height
    values = body.select(pl.all().str.strip_chars().replace("", None))
    distinct = values.select(pl.all().n_unique())
    empty = values.select(pl.all().null_count())
    rank = {"source_key": 0, "event.case_ref": 1, "ignore": 2, "event.flight": 3}

    def stats(g: ColumnGuess) -> tuple[int, int]:
        return distinct[g.name][0] - (1 if empty[g.name][0] else 0), empty[g.name][0]

    usable = [g for g in guesses if g.target in (*rank, "event.place", "event.compound",
                                                 "identifier")
              and stats(g)[0] >= (1 - KEY_REPEATS) * n and stats(g)[1] <= KEY_REPEATS * n]
    if usable:
        best = min(usable, key=lambda g: (rank.get(g.target, 4), stats(g)[0] < n,
                                          guesses.index(g)))
        unique, blank = stats(best)
        if unique == n:
            return best.name, f"unique and non-empty in all {n:,} rows", True
        return best.name, (f"{unique:,} distinct values in {n:,} rows, {blank:,} empty: the "
                           "repeats and empty rows will be quarantined"), True
    named = [g for g in guesses if g.target == "source_key"] or guesses
    best = max(named, key=lambda g: stats(g)[0])
    return best.name, (f"CHECK: no column is unique in nearly every row; {best.name} has "
                       f"{stats(best)[0]:,} distinct values in {n:,} rows"), False


def propose(frame: pl.DataFrame, agency: str, feed: str, sniffed: Sniffed,
            file_name: str = "sample") -> Draft:
    """A draft feed definition for a sample read by :func:`read_sample`.

    Args:
        frame: the sample's columns as strings, plus ``source_row``.
        agency, feed: the ids the definition will carry.
        sniffed: how the file is written (format, encoding, delimiter).
        file_name: for the draft's comments.
    """
    body = frame.drop("source_row")
    sample = body.sample(SAMPLE_ROWS, seed=0) if body.height > SAMPLE_ROWS else body
    country = _agency_country(agency)
    regions = tuple(dict.fromkeys([c for c in (country, *_PHONE_REGIONS) if c]))
    guesses = []
    for name in body.columns:
        hint, word, whole = header_hint(name)
        guesses.append(_guess_column(name, _clean(sample[name]), hint, word, whole, regions))

    key, key_why, key_sure = _choose_source_key(frame, guesses)
    for i, g in enumerate(guesses):
        if g.name == key:
            was = "" if g.target in ("source_key", "ignore") else f" (rather than {g.target})"
            guesses[i] = ColumnGuess(key, {"to": "source_key", "required": True, "unique": True},
                                     [key_why + was], "high" if key_sure else "low")
        elif g.target == "source_key":
            guesses[i] = replace(g, options={"to": "ignore"},
                                 why=[*g.why, f"a key, but {key} identifies rows"], sure="low")
    _name_roles(guesses, sample)
    _one_column_per_target(guesses)

    event, role = _event_and_role(feed)
    draft = Draft(agency, feed, file_name, body.height, sniffed, key, guesses, role=role)
    if event:
        draft.event = {"type": event} | ({"country": country} if country else {})
    else:
        for i, g in enumerate(guesses):
            if g.target.startswith("event."):
                guesses[i] = replace(g, options={"to": "ignore"}, sure="low", why=[
                    *g.why, f"would be {g.target}: the feed name says no event type; add "
                    "event: {type: ...} and map it"])
    _defaults_and_links(draft, sample)
    _required_values(draft, body)
    return draft


def _name_roles(guesses: list[ColumnGuess], sample: pl.DataFrame) -> None:
    """A record has one primary name; other name columns are its Latin spelling or aliases.

    The primary is the fullest name column whose header names no other role (the fullest of all
    where every header does). Another name column is ``latin`` when its values are Latin letters
    while the primary's, in the rows that have both, mostly are not (a register that writes the
    name in its own script and as the passport spells it), or when its header says so and most
    of its values are Latin; otherwise it is an ``alias``. A Latin spelling takes the primary's
    name_order: it is the same name.
    """
    names = [g for g in guesses if g.target == "person.name"]
    if len(names) < 2:
        for g in names:
            g.options.pop("name_role", None)  # the only name is the primary one
        return
    values = {g.name: _clean(sample[g.name]) for g in names}
    filled = {g.name: values[g.name].is_not_null().sum() for g in names}
    plain = [g for g in names if "name_role" not in g.options] or names
    primary = max(plain, key=lambda g: (filled[g.name], -guesses.index(g)))
    if primary.options.pop("name_role", None):
        primary.why.append("the primary name: the fullest name column")
    main = values[primary.name]
    for g in names:
        if g is primary:
            continue
        said = g.options.pop("name_role", None)
        mine = values[g.name]
        both = mine.is_not_null() & main.is_not_null()
        if not both.any():
            both = mine.is_not_null()
        latin = (detect_script(mine.filter(both)) == "Latin").mean() or 0.0
        latin_primary = (detect_script(main.filter(both)) == "Latin").mean() or 0.0
        order = g.options.pop("name_order", None)
        by_values = latin >= SURE and latin_primary < 0.5
        if said != "alias" and (by_values or (said == "latin" and latin >= AT_LEAST)):
            if primary.options.get("name_order", order) != order:  # its own reason is moot
                g.why = [w for w in g.why if w not in _ORDER_REASONS.values()]
            g.options = {"to": "person.name", "name_role": "latin",
                         "name_order": primary.options.get("name_order", order)}
            g.why.append(f"name_role latin: {_pct(latin)} Latin letters where {primary.name} has "
                         f"{_pct(latin_primary)} in the same rows; name_order of {primary.name}, "
                         "the same name")
            g.sure = "high" if said == "latin" and by_values else "medium"
        else:
            g.options = {"to": "person.name", "name_role": "alias"} | (
                {"name_order": order} if order else {})
            g.why.append(f"name_role alias: a name beside {primary.name}, the primary one"
                         + ("" if said else " (check: another name, or its spelling?)"))
            g.sure = "medium" if said else "low"


def _one_column_per_target(guesses: list[ColumnGuess]) -> None:
    """A row has one name, one birth date, ...: the surest column keeps such a target."""
    order = {"high": 0, "medium": 1, "low": 2}
    for target in _ONE_PER_ROW:
        takers = [g for g in guesses if g.target == target]
        if len(takers) < 2:
            continue
        keep = min(takers, key=lambda g: (order[g.sure], guesses.index(g)))
        for g in takers:
            if g is not keep:
                i = guesses.index(g)
                guesses[i] = replace(g, options={"to": "ignore"}, sure="low", why=[
                    *g.why, f"also looks like {target}, which {keep.name} has (a row has one)"])


def _defaults_and_links(draft: Draft, sample: pl.DataFrame) -> None:
    """Nationality default, passports' issuing country, phone region, banks of accounts."""
    cols = draft.columns
    has_nationality = any(g.target == "person.nationality" for g in cols)
    # a column of one national ID kind; in a list of kinds each ID is issued by its own country
    national = [g for g in cols if g.target == "identifier"
                and isinstance(g.options.get("kind"), str)
                and g.options["kind"] in _NATIONAL_ID_COUNTRY]
    for g in national:
        g.options["issuing_country"] = KINDS[g.options["kind"]][1]
    if not has_nationality and national:
        code = _NATIONAL_ID_COUNTRY[national[0].options["kind"]]
        draft.defaults["nationality"] = code
        draft.notes.append(f"defaults.nationality {code}: {national[0].name} holds "
                           f"{national[0].options['kind']} numbers and no column gives "
                           "nationality (check)")
    for g in cols:
        kinds = g.options.get("kind")
        if g.target != "identifier" or "passport" not in (
                kinds if isinstance(kinds, list) else [kinds]):
            continue
        if has_nationality:
            g.options["issuing_country_from"] = "person.nationality"
            g.why.append("passports issued by each row's nationality")
        elif draft.defaults.get("nationality"):
            code = draft.defaults["nationality"]
            g.options["issuing_country"] = code
            g.why.append(f"passports issued by {code}: no column gives nationality and "
                         f"defaults.nationality is {code}")

    phones = [g for g in cols if g.target == "phone"]
    country = _agency_country(draft.agency)
    regions = list(dict.fromkeys([c for c in (country, draft.defaults.get("nationality"),
                                              *_PHONE_REGIONS) if c]))
    if phones:
        pooled = pl.concat([_distinct(_clean(sample[g.name])) for g in phones
                            if g.options.get("relation", "own") == "own"] or
                           [_distinct(_clean(sample[phones[0].name]))])
        split = next((g.options["split"] for g in phones if "split" in g.options), None)
        shares = {r: phone_share(pooled, r, split) for r in regions}
        region = max(regions, key=lambda r: shares[r])
        # the agency's own country, unless another plan reads clearly more of the numbers
        home = country is not None and (shares[region] - shares[country]
                                        <= PHONE_REGION_MARGIN + 1e-9)
        if home and region != country:
            because = (f"the agency's country, as good as {region} "
                       f"({_pct(shares[region])}) within {PHONE_REGION_MARGIN:.0%}")
            region = country
        elif home:
            because = "the agency's country"
        elif country:
            because = (f"more than the agency's country {country} "
                       f"({_pct(shares[country])}) reads")
        else:
            because = "the most"
        draft.defaults["phone_region"] = region
        draft.notes.append(f"defaults.phone_region {region}: reads {_pct(shares[region])} of the "
                           f"own phone numbers as valid numbers, {because} (" + ", ".join(
                               f"{r} {_pct(s)}" for r, s in shares.items()) + ")")
        for g in phones:
            share = phone_share(_distinct(_clean(sample[g.name])), region,
                                g.options.get("split"))
            g.why.append(f"{_pct(share)} valid numbers read in {region}")
            g.sure = _sure(share, g.sure != "low")
    elif country:
        draft.defaults["phone_region"] = country

    if draft.role == "victim":  # a victim's report names where the money went, and who called
        for g in cols:
            if g.target == "account" and "relation" not in g.options:
                g.options["relation"] = "counterparty"
                g.why.append("counterparty: a victim's report names the receiving account")
    banks = [g for g in cols if g.target == "ignore" and g.why and "names a bank" in g.why[0]]
    for bank in banks:
        pos = cols.index(bank)
        accounts = [g for g in cols[:pos][::-1] if g.target == "account"
                    and g.options.get("kind") in ("bank_card", "bank_account")
                    and "institution_column" not in g.options]
        if accounts:
            accounts[0].options["institution_column"] = bank.name
            bank.why.append(f"read through {accounts[0].name}'s institution_column")


def _required_values(draft: Draft, body: pl.DataFrame) -> None:
    """``required: true`` on the primary name when it is empty in few rows (a row without a
    name is unusable: quarantined, as a row without a key is)."""
    for g in draft.columns:
        if g.target == "person.name" and "name_role" not in g.options:
            empty = body.select((pl.col(g.name).str.strip_chars().str.len_chars() == 0)
                                .fill_null(True).sum()).item()
            if empty <= KEY_REPEATS * body.height:
                g.options["required"] = True
                if empty:
                    g.why.append(f"empty in {empty:,} of {body.height:,} rows, which will be "
                                 "quarantined (a person needs a name)")
            else:
                g.why.append(f"empty in {empty:,} of {body.height:,} rows: too many to "
                             "quarantine, so not required (check)")


# ---------------------------------------------------------------------------------------------
# Writing the feed file


def _scalar(value) -> str:
    """A YAML scalar for a flow mapping: plain where YAML reads it back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_scalar(v)}" for k, v in value.items()) + "}"
    text = str(value)
    plain = (text and not re.search(r"[\s,:\[\]{}#&*!|>'\"%@`?]", text)
             and text[0] not in "-" and _loads_as(text))
    return text if plain else json.dumps(text, ensure_ascii=False)


def _loads_as(text: str) -> bool:
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def _comment(text: str) -> str:
    return " ".join(str(text).split())


def render(draft: Draft) -> str:
    """The draft as a feed file: every key the contract knows, each guess commented."""
    s = draft.sniffed
    out = [
        f"# Feed definition drafted by `fusionlake feeds draft` from {draft.file_name} "
        f"({draft.rows:,} rows).",
        "# Review it before onboarding: each column says what its guess rests on and how sure "
        "it is",
        "# (high: header and values agree; medium: one of them; low: a guess, check it).",
        *(f"# {_comment(n)}" for n in draft.notes),
        f"agency: {draft.agency}",
        f"feed: {draft.feed}",
        f"title: {_scalar(f'{draft.agency}/{draft.feed}, drafted from {draft.file_name}')}",
        f"format: {s.format}",
    ]
    for note in s.notes:
        out.append(f"# {_comment(note)}")
    if s.encoding:
        out.append(f"encoding: {s.encoding}")
    if s.delimiter:
        out.append(f"csv: {{delimiter: {_scalar(s.delimiter)}}}")
    if s.format == "xlsx":
        sheets = (f"  # sheets: {', '.join(s.sheet_names)}; drafted from the first"
                  if len(s.sheet_names) > 1 else "")
        out.append(f"sheet: 0{sheets}")
    out += [f"source_key: {_scalar(draft.source_key)}", "record: person"]
    if draft.role:
        out.append(f"role: {draft.role}  # from the feed name (check)")
    out.append(f"releasable_to: [{draft.agency}]  # the agency alone until a steward widens it")
    if draft.defaults:
        out.append(f"defaults: {_scalar(draft.defaults)}")
    if draft.event:
        out.append(f"event: {_scalar(draft.event)}  # type from the feed name, country from "
                   "the agency id (check)")
    out.append("columns:")
    width = max(len(_scalar(g.name)) for g in draft.columns) + 1
    for g in draft.columns:
        line = f"  {(_scalar(g.name) + ':').ljust(width)} {_scalar(g.options)}"
        out.append(f"{line}  # {g.sure}: {_comment('; '.join(g.why))}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Checking the draft on its sample, and the whole job


@dataclass
class DraftResult:
    """A drafted feed file, loaded through the contract, and how the sample fared under it."""

    text: str
    feed: Feed
    draft: Draft
    check: str | None = None  # one line: what the compiled suite said about the sample


def load_draft(text: str, path: Path) -> Feed:
    """The drafted text loaded through the feed contract; a contract error is a bug here."""
    try:
        return parse_feed(path, text)
    except FeedError as exc:  # pragma: no cover - propose() writes only what the contract takes
        raise AssertionError(f"the draft does not load: {exc}\n{text}") from exc


def check_sample(sample: Path, draft: Draft, path: Path,
                 rounds: int = 3) -> tuple[Draft, Feed, str]:
    """:func:`_check_sample`, whose failure is one line in the draft, never a traceback: the
    draft is still worth a steward's review (a check that cannot run is a bug to report)."""
    try:
        return _check_sample(sample, draft, path, rounds)
    except BaseException as exc:
        if not (isinstance(exc, Exception) or library_panic(exc)):
            raise  # KeyboardInterrupt, SystemExit
        what = (str(exc).strip().splitlines() or [""])[0][:200]
        feed = load_draft(render(draft), path)
        return draft, feed, (f"CHECK: the sample could not be checked with this draft "
                             f"({type(exc).__name__}{': ' + what if what else ''}); review "
                             "it by hand")


def _check_sample(sample: Path, draft: Draft, path: Path,
                  rounds: int = 3) -> tuple[Draft, Feed, str]:
    """Read and validate the sample with the draft, as a run would read and validate a drop.

    Only a drop's structure rejects it (the file unreadable as the draft says, a declared
    column missing, an expectation that cannot run on a column's values) or a steward's override
    that says ``reject``: a column whose check cannot run on its values is set to ``ignore``
    with the reason; any other reject is reported in the line returned. Values that fail a guess's
    check are flagged and the row goes on, so such a guess is kept; where more of the sample
    fail than the suite's ``mostly`` allows (every drop like it would warn), the guess is marked
    ``low`` and says so, for the steward to fix the option or the mapping.

    Args:
        sample: the sample file.
        draft: the draft proposed from it.
        path: where the feed file will be (its folder is where a suite override is looked for).

    Returns:
        The draft, its feed and one line on the outcome.
    """
    from expectations import SuiteError, load_suite, validate_drop  # GX: seconds to import

    data = Path(sample).read_bytes()
    for _ in range(rounds):
        feed = load_draft(render(draft), path)
        try:
            read = read_drop_isolated(data, str(sample), feed)
        except DropReadError as exc:  # the sniffing went wrong: nothing a column can fix
            return draft, feed, f"CHECK: the sample would be rejected: {exc}"
        frame = read.frame
        if frame.height > SAMPLE_ROWS:  # GX's pandas engine is the slow part; a sample tells
            frame = frame.sample(SAMPLE_ROWS, seed=0).sort("source_row")
        try:
            outcome = validate_drop(frame, feed, "draft-sample")
            suite = load_suite(feed)
        except SuiteError as exc:  # a steward's override beside --out that fits no draft
            return draft, feed, f"CHECK: the suite override does not apply to this draft: {exc}"
        if outcome.accepted or outcome.held or not _set_aside(draft, outcome):
            break
    if not (outcome.accepted or outcome.held):
        feed = load_draft(render(draft), path)
        return draft, feed, f"CHECK: the sample would be rejected: {outcome.reason}"

    _note_failed_checks(draft, outcome.results, suite)
    feed = load_draft(render(draft), path)
    lines = read.bad["source_row"].n_unique() if read.bad.height else 0
    quarantined = outcome.quarantine["source_row"].n_unique() if outcome.quarantine.height \
        else 0
    checked = ("the suite compiled from this file" if frame.height == read.frame.height
               else f"the suite compiled from this file, on {frame.height:,} of its rows")
    line = (f"checked on the sample with {checked}: "
            + ("held for a steward by the suite override" if outcome.held else "accepted")
            + f", {outcome.valid.height:,} rows valid, {quarantined + lines:,} quarantined"
            + (f" ({lines:,} unreadable)" if lines else "")
            + f", {outcome.flagged:,} flagged"
            + (f", {len(outcome.warnings):,} warning{'s' if len(outcome.warnings) > 1 else ''}"
               if outcome.warnings else ""))
    return draft, feed, line


def _set_aside(draft: Draft, outcome: ValidationOutcome) -> bool:
    """Set to ``ignore`` each column whose compiled check cannot run on its values (which
    rejects the drop: the guess is wrong for them); whether any was. A reject a steward's
    override asks for is the steward's rule, and is reported, not worked around."""
    changed = False
    for row in outcome.results.filter(~pl.col("success") & pl.col("column").is_not_null()
                                      ).iter_rows(named=True):
        g = next((g for g in draft.columns if g.name == row["column"]), None)
        if g is None or g.target in ("source_key", "ignore") or (
                f"{row['expectation']} on {row['column']} could not run" not in (
                    outcome.reason or "")):
            continue
        g.why.append(f"would be {g.target}, but its check ({row['expectation']}) cannot run "
                     "on the sample's values, which would reject the drop")
        g.options = {"to": "ignore"}
        g.sure = "low"
        changed = True
    return changed


def _note_failed_checks(draft: Draft, results: pl.DataFrame, suite: dict) -> None:
    """A guess whose check fails more of the sample than its ``mostly`` allows is kept but
    marked ``low``: every drop like this one would be staged with a warning."""
    levels = {(e["type"], e["kwargs"].get("column")): e["meta"].get("on_failure")
              for e in suite["expectations"]}
    failed = results.filter(~pl.col("success") & pl.col("column").is_not_null())
    for row in failed.iter_rows(named=True):
        g = next((g for g in draft.columns if g.name == row["column"]), None)
        if g is None or g.target == "ignore":
            continue
        level = levels.get((row["expectation"], row["column"]), "flag")
        what = "flagged" if level == "flag" else "quarantined" if level == "quarantine" \
            else level
        g.why.append(f"{row['unexpected_percent'] or 0:.0f}% of the sample fail its check "
                     f"({row['expectation']}, more than the {1 - (row['mostly'] or 1):.0%} the "
                     f"suite allows): those rows are {what} and every drop like this one warns; "
                     "check the values and this guess")
        g.sure = "low"


def draft_feed(path: Path, agency: str, feed: str, check: bool = True,
               out: Path | None = None) -> DraftResult:
    """Draft the feed ``agency/feed`` from the sample file ``path``.

    Args:
        path: a sample of the agency's export (CSV/TSV, xlsx, JSON Lines or Parquet).
        agency, feed: lower-case ids for the new feed.
        check: read and validate the sample with the draft and its compiled suite (imports
            GX): set aside a column that would reject the drop, mark guesses whose checks fail
            much of the sample.
        out: where the file will be written (its folder is where a suite override is looked
            for); default: beside the sample.

    Raises:
        DraftError: the ids are not lower-case ids, or the sample cannot be drafted from.
    """
    path = Path(path)
    for what, value in (("--agency", agency), ("--feed", feed)):
        if not re.fullmatch(r"[a-z0-9_]+", value or ""):
            raise DraftError(f"{what} {value!r}: use a lower-case id such as th_imm or "
                             "detentions")
    frame, sniffed = read_sample(path, agency, feed)
    draft = propose(frame, agency, feed, sniffed, path.name)
    where = out or path.with_name(f"{feed}.yaml")
    line = None
    if check:
        draft, _, line = check_sample(path, draft, where)
        draft.notes.append(line)
    text = render(draft)
    return DraftResult(text, load_draft(text, where), draft, line)


__all__ = ["Draft", "DraftError", "DraftResult", "draft_feed", "propose", "read_sample",
           "render"]
