"""Read one drop (CSV, xlsx, JSON Lines, Parquet) into a frame of strings, as the agency wrote it.

Every value stays a string exactly as in the file (nothing stripped, nothing inferred): typing is
the job of transforms/, judging is the job of expectations/. A file that cannot be read as its
feed says raises :class:`DropReadError` with a message a data steward can act on.

One bad line never costs the rest of the drop (:func:`read_drop_isolated`): a CSV record with
too many or too few fields or broken quoting, a JSON line that is not a JSON object, a field
holding a NUL byte, or a cell longer than its column's ``max_length`` goes to quarantine with
its line number in the file (1-based, physical: the header is line 1) and the reason; every
other row is read. ``source_row`` numbers the data records as they stand in the file, bad ones
included, so a good row's number does not depend on its neighbours.

Text is decoded once, as whole bytes, to UTF-8 and handed to Polars: lines are split, quotes
counted and records checked as vectorised string expressions, and the good records parsed by
Polars' CSV/NDJSON readers; a large drop is never turned into Python objects row by row (only a
JSON Lines file that Polars refuses is looked at line by line, to find the bad lines).
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from expectations.suites import MAX_LENGTH
from fusionlake.lake.feeds import Feed
from fusionlake.pipeline.workbook import check_extent

_SNIFF_BYTES = 64 * 1024
#: Share of NUL bytes above which a "text" file is binary (UTF-16, a zip, an image), rejected
#: whole; below it, the lines holding NUL bytes are quarantined and the rest is read.
_BINARY_NUL_SHARE = 0.1

#: What a quarantined line or cell records (the source columns come first where they parsed).
BAD_SCHEMA = {"source_row": pl.Int64, "line": pl.Int64, "expectation": pl.String,
              "column": pl.String, "reason": pl.String, "raw_line": pl.String}


@dataclass
class DropRead:
    """A drop as read, with the lines that could not be.

    Attributes:
        frame: the good rows: source columns as pl.String, plus ``source_row``.
        lines: ``source_row`` -> ``line`` (1-based physical line of the record's start; null
            where a format has no lines, as in Parquet), for every good row.
        bad: one row per quarantined line or cell: the source columns where the line parsed,
            then BAD_SCHEMA (``raw_line`` holds the text of a line that did not parse).
    """

    frame: pl.DataFrame
    lines: pl.DataFrame
    bad: pl.DataFrame

_EXTENSIONS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl",
               ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_CODECS = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "gb18030": "gb18030", "cp874": "cp874",
           "tis-620": "cp874",  # cp874 is a superset of TIS-620 (adds the euro sign etc.)
           "cp1258": "cp1258", "cp1252": "cp1252"}  # Windows' Vietnamese and Western


class DropReadError(Exception):
    """A drop that cannot be read: names the file (row/field where known) and what to do."""


def file_format(file_name: str) -> str | None:
    """The format a file's extension names (csv, xlsx, jsonl, parquet), or None."""
    suffix = "." + file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    return _EXTENSIONS.get(suffix)


def _format(file_name: str, feed: Feed) -> str:
    fmt = file_format(file_name)
    if fmt is None:
        if len(feed.formats) == 1:
            return feed.formats[0]
        raise DropReadError(f"{file_name}: cannot tell the format from the file name; feed "
                            f"{feed.name} accepts {', '.join(feed.formats)}: rename the file")
    if fmt not in feed.formats:
        raise DropReadError(f"{file_name}: a {fmt} file, but feed {feed.name} accepts "
                            f"{', '.join(feed.formats)}: ask the agency for the agreed format")
    return fmt


def detect_encoding(data: bytes) -> str:
    """Best guess of a text drop's encoding: BOM, then UTF-8, then GB18030 or CP874, then
    Windows' Vietnamese (CP1258) or Western (CP1252).

    Thai (CP874) puts nearly all non-ASCII bytes in 0xA1-0xFB, one byte per character, and
    GB18030 pairs a lead byte 0x81-0xFE with a trail byte; charset-normalizer decides between
    the two on a sample, with a plain byte-pair heuristic as fallback. GB18030 decodes almost
    any Latin-1 letter followed by another letter too (``Bùi`` in CP1258 reads ``B鵬``), so a
    GB18030 guess is checked by its byte pairs (:func:`_latin_as_gb18030`), and a CP874 guess by
    whether its Thai letters stand glued to Latin ones inside words; a refused guess means
    Latin-script text: CP1258 when it reads as Vietnamese, else CP1252.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    sample = data[:_SNIFF_BYTES]
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # a multibyte character cut at the sample's end is still UTF-8
        if exc.start >= len(sample) - 3 and len(data) > len(sample):
            return "utf-8"
    guess = _gb18030_or_cp874(sample)
    doubtful = (_latin_as_gb18030(sample) if guess == "gb18030"
                else _glued_to_latin(sample.decode("cp874", errors="replace"))
                if guess == "cp874" else True)
    return (doubtful and _latin_script(sample)) or guess or "gb18030"


def _gb18030_or_cp874(sample: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(sample, cp_isolation=["gb18030", "cp874", "tis_620"]).best()
        if best is not None:
            return "cp874" if best.encoding in ("cp874", "tis_620") else "gb18030"
    except ImportError:  # pragma: no cover - charset-normalizer ships with requests
        pass
    for codec in ("cp874", "gb18030"):
        try:
            sample.decode(codec)
            return codec
        except UnicodeDecodeError:
            continue
    return None


def _latin_as_gb18030(sample: bytes) -> bool:
    """Whether the sample's two-byte GB18030 characters are mostly ones Chinese text hardly
    uses: Chinese writes GB2312's characters (both bytes 0xA1 and up, the lead at most 0xF7),
    while a Latin-1 letter followed by an ASCII letter makes a pair whose second byte is that
    letter (GBK's rare extension), and one followed by another Latin-1 letter often one with a
    lead byte 0xF8-0xFE (user-defined, private use). Licence plates (京A12345), rooms (A栋) and
    addresses are GB2312 characters beside Latin letters: still Chinese."""
    common = rare = 0
    i, n = 0, len(sample)
    while i < n - 1:
        lead = sample[i]
        if lead < 0x81:
            i += 1
            continue
        trail = sample[i + 1]
        if 0x30 <= trail <= 0x39:  # a four-byte sequence: GB18030's own, not Latin-1's
            i += 4
            continue
        if 0xA1 <= lead <= 0xF7 and trail >= 0xA1 and not 0xAA <= lead <= 0xAF:
            common += 1
        else:
            rare += 1
        i += 2
    return rare > common


#: A Thai letter, and a Latin one (ASCII or Latin-1's) beside it in the same word.
_THAI = re.compile(r"[\u0e00-\u0e7f]")
_THAI_BY_LATIN = re.compile(r"(?<=[A-Za-z\u00c0-\u024f])[\u0e00-\u0e7f]"
                            r"|[\u0e00-\u0e7f](?=[A-Za-z\u00c0-\u024f])")


def _glued_to_latin(text: str) -> bool:
    """Whether most of the text's Thai letters touch a Latin letter: Latin-script text decoded
    as CP874 (José as Jos้). Thai writes the odd ซอย5A; names and places are Thai among Thai."""
    thai = len(_THAI.findall(text))
    return thai > 0 and len(_THAI_BY_LATIN.findall(text)) > thai / 2


#: A Vietnamese tone mark, as CP1258 writes it (a combining character), after the vowel it
#: sits on. The same bytes are Ì ì Ò ò Þ in CP1252, which follow consonants (Niccolò, Forlì).
_TONE = re.compile("[\u0300\u0301\u0303\u0309\u0323]")
_TONE_ON_VOWEL = re.compile("(?i)[aăâeêioôơuưy][\u0300\u0301\u0303\u0309\u0323]")
#: Vowel clusters of Vietnamese words without a tone (Trương, Dương): ýõ, ýa in CP1252, which no
#: Western language writes.
_UNTONED = re.compile("(?i)ư[ơau]")


def _latin_script(sample: bytes) -> str | None:
    """CP1258 when the sample reads as Vietnamese there (tone marks, nearly all on vowels; or,
    without a tone, Vietnamese vowel clusters), else CP1252, whichever decodes it; None if
    neither. A letter such as ã or õ does not tell: Portuguese writes them (São, Leões), and
    CP1258 reads those bytes as ă and ơ."""
    decoded = {}
    for codec in ("cp1258", "cp1252"):
        try:
            decoded[codec] = sample.decode(codec)
        except UnicodeDecodeError:
            continue
    # Latin-script text's other characters are letters and marks (Traditional Chinese in
    # GB18030, 陳國華, would read as ‡ ø and other symbols): else it is no Latin text at all
    decoded = {codec: text for codec, text in decoded.items() if _mostly_letters(text)}
    text = decoded.get("cp1258")
    if text is not None:
        tones = len(_TONE.findall(text))
        if tones and len(_TONE_ON_VOWEL.findall(text)) >= 0.9 * tones:
            return "cp1258"
        if not tones and _UNTONED.search(text):
            return "cp1258"
    return "cp1252" if "cp1252" in decoded else next(iter(decoded), None)


def _mostly_letters(text: str) -> bool:
    """Whether nine in ten of the text's characters beyond ASCII are letters or marks."""
    beyond = [ch for ch in text if ord(ch) > 0x7F]
    letters = sum(unicodedata.category(ch)[0] in "LM" for ch in beyond)
    return letters >= 0.9 * len(beyond)


#: Share of a file's non-blank lines that may hold bytes its encoding cannot decode: each such
#: line is quarantined with its number and the rest is read. Above it, or in the header, the
#: file as a whole is in another encoding, and it is rejected with a message saying so.
BAD_ENCODING_SHARE = 0.2
#: What stands for an undecodable byte in a quarantined line's ``raw_line``.
_REPLACED = "\ufffd"


def _may_be_decomposed(data: bytes) -> bool:
    """Whether UTF-8 text may hold combining diacritics (U+0300-U+036F, lead bytes 0xCC and
    0xCD): text written decomposed (Nữ as u, horn, tilde, as macOS and some keyboards save it).
    Such text is composed (NFC) as it is read, so that a feed's ``values:`` map, a suite's value
    set and every comparison see one form of each letter. Two byte searches: 30 ms for 140 MB;
    a file without those bytes is passed on as it is."""
    return b"\xcc" in data or b"\xcd" in data


def _decode(data: bytes, file_name: str, feed: Feed) -> tuple[bytes, bool]:
    """The drop's text as UTF-8 bytes (without BOM), decoded strictly from the feed's encoding;
    and whether some lines held bytes that encoding cannot decode (:func:`_decode_lines`)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) and not data.startswith(b"\xff\xfe\0\0"):
        # a UTF-16 byte order mark (Excel's "Unicode Text"): as unambiguous as UTF-8's, where
        # the file was refused as "binary, not text" for its NUL bytes
        try:
            return data.decode("utf-16").encode("utf-8"), False
        except UnicodeDecodeError as exc:
            raise DropReadError(f"{file_name}: starts as UTF-16 text but is not valid UTF-16 "
                                f"(at byte {exc.start + 2:,}); ask the agency to re-send it"
                                ) from exc
    encoding = feed.encoding
    if encoding == "detect":
        encoding = detect_encoding(data)
    codec = _CODECS[encoding]
    if codec == "utf-8" and data.startswith(b"\xef\xbb\xbf"):
        codec = "utf-8-sig"  # a BOM is harmless: accept it rather than make it part of a header
    try:
        if codec in ("utf-8", "utf-8-sig"):
            text = data.decode(codec)  # UTF-8 bytes go to Polars as they are ...
            if not _may_be_decomposed(data):
                # the BOM off, where there is one: a utf-8-sig feed's file may come without
                return (data[3:] if data.startswith(b"\xef\xbb\xbf") else data), False
            return unicodedata.normalize("NFC", text).encode("utf-8"), False  # ... but these
        text = data.decode(codec)
        if codec == "cp1258":  # Vietnamese tone marks come as combining characters: composed
            text = unicodedata.normalize("NFC", text)
        return text.encode("utf-8"), False
    except UnicodeDecodeError as exc:
        return _decode_lines(data, codec, exc, file_name, feed, encoding), True


def _decode_lines(data: bytes, codec: str, exc: UnicodeDecodeError, file_name: str, feed: Feed,
                  encoding: str) -> bytes:
    """A file with bytes its encoding cannot decode, line by line: each undecodable byte becomes
    U+FFFD, and the lines holding one are quarantined by the readers. Before, a single bad byte
    rejected the whole drop. A file whose header or more than :data:`BAD_ENCODING_SHARE` of
    whose lines are undecodable is in another encoding: the whole-file error, as before.
    (Splitting at newline bytes is safe in every supported encoding: none uses 0x0A inside a
    character.)"""
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise _encoding_error(data, exc, file_name, feed, encoding)
    text, bad, lines_read, header = [], 0, 0, None
    for i, raw in enumerate(data.split(b"\n")):
        line_codec = codec if i == 0 else codec.removesuffix("-sig")  # a BOM begins line 1 only
        lines_read += bool(raw.strip())
        try:
            text.append(raw.decode(line_codec))
        except UnicodeDecodeError:
            text.append(raw.decode(line_codec, errors="replace"))
            bad += 1
            if header is None:
                header = False
        if header is None and raw.strip():
            header = True  # the first non-blank line decoded
    if header is False or bad > BAD_ENCODING_SHARE * lines_read:
        raise _encoding_error(data, exc, file_name, feed, encoding)
    joined = "\n".join(text)
    if codec == "cp1258" or _may_be_decomposed(data):  # as in _decode
        joined = unicodedata.normalize("NFC", joined)
    return joined.encode("utf-8")


def _encoding_error(data: bytes, exc: UnicodeDecodeError, file_name: str, feed: Feed,
                    encoding: str) -> DropReadError:
    # utf-8-sig reports positions after the BOM it skipped
    start = exc.start + (3 if encoding in ("utf-8", "utf-8-sig", "detect")
                         and data.startswith(b"\xef\xbb\xbf") else 0)
    line = data[:start].count(b"\n") + 1
    if b"\x00" in data[:_SNIFF_BYTES]:
        return DropReadError(f"{file_name}: is binary, not text; feed {feed.name} expects "
                             f"{feed.formats[0]}: ask the agency to re-send the file")
    where = f"byte 0x{data[start]:02x} at line {line}"
    if feed.encoding == "detect":
        return DropReadError(
            f"{file_name}: its encoding could not be detected: the best guess, {encoding}, "
            f"fails at {where} (feed {feed.name} detects among UTF-8, GB18030, CP874, CP1258 "
            "and CP1252): set the feed's 'encoding:' if you know it, or ask the agency to "
            "re-send the file in UTF-8")
    return DropReadError(
        f"{file_name}: is not valid {encoding} ({where}); feed {feed.name} expects "
        f"{feed.formats[0]} in {encoding}: ask the agency to re-send the file in that "
        "encoding, or set 'encoding: detect' in the feed"
    )


def lf_lines(text: bytes) -> bytes:
    """Lines ended by CR alone (classic Mac OS; Excel for Mac wrote CSV so until 2016) ended by
    LF: read as one line, such a file was one header of every row's fields, and refused for a
    repeated column name."""
    if b"\r" in text and b"\n" not in text:
        return text.replace(b"\r", b"\n")
    return text


def _bad_encoding_reason(feed: Feed) -> pl.Expr:
    return pl.format(f"line {{}}: bytes that are not valid {feed.encoding} (each shown as "
                     f"{_REPLACED} in raw_line); the other lines were read", "line")


def _check_header(columns: list[str], file_name: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(columns):
        if name in seen:
            raise DropReadError(f"{file_name}: column {name!r} appears twice (positions "
                                f"{seen[name] + 1} and {i + 1}); every column needs its own name")
        seen[name] = i


def _csv_header(text: bytes, separator: str, quote: str) -> list[str]:
    """The header row, parsed by Polars itself so quoting rules match the body's."""
    head = pl.read_csv(io.BytesIO(text), separator=separator, quote_char=quote, has_header=False,
                       n_rows=1, infer_schema=False, truncate_ragged_lines=True)
    return ["" if v is None else v for v in head.row(0)] if head.height else []


_LINE = "source_line"  # the line column while a frame is read (an agency may have a "line")


def _check_reserved(columns: list[str], file_name: str) -> None:
    for name in ("source_row", _LINE):
        if name in columns:
            raise DropReadError(f"{file_name}: has a column named {name!r}, which the lake "
                                "reserves for row numbers; ask the agency to rename it")


def _check_binary(text: bytes, file_name: str, what: str) -> None:
    sample = text[:_SNIFF_BYTES]
    if sample and sample.count(b"\x00") > _BINARY_NUL_SHARE * len(sample):
        raise DropReadError(f"{file_name}: is binary, not a {what} text file; ask the agency to "
                            f"export the data again as {what}")


def _physical_lines(text: bytes) -> pl.DataFrame:
    """``line`` (1-based) and ``text`` of every physical line, without its line break."""
    lines = pl.Series("text", [text]).cast(pl.String).str.split("\n").explode()
    return (pl.DataFrame([lines]).with_row_index("line", offset=1)
            .with_columns(pl.col("line").cast(pl.Int64),
                          pl.col("text").str.strip_suffix("\r")))


def _hex(char: str) -> str:
    return f"\\x{{{ord(char):X}}}"  # a regex escape that is safe inside and outside a class


def csv_records(text: bytes, separator: str, quote: str, damaged: bool = False
                ) -> pl.DataFrame:
    """The CSV's records: ``line`` of their start, ``text`` (lines joined), ``fields``
    counted outside quotes, ``problem`` for a record that cannot be parsed, and ``blank``.

    A record spans lines while a quoted field is open (an odd count of quote chars so far). A
    stray quote char would make it swallow the lines after it, so a multi-line record that is
    not well-formed is judged again line by line: only the line at fault is lost. In a
    ``damaged`` text (:func:`_decode_lines`) a record holding U+FFFD held undecodable bytes.
    """
    q, sep = _hex(quote), _hex(separator)
    quoted = f"{q}(?:[^{q}]|{q}{q})*{q}"
    field = f"(?:{quoted}|[^{q}{sep}]*)"
    t = pl.col("text")
    judged = [
        (t.str.strip_chars().str.len_chars() == 0).alias("blank"),
        (t.str.replace_all(quoted, "").str.count_matches(separator, literal=True) + 1)
        .cast(pl.Int64).alias("fields"),
        pl.when(~t.str.contains(f"^{field}(?:{sep}{field})*$"))
        .then(pl.when(t.str.count_matches(quote, literal=True) % 2 == 1)
              .then(pl.lit("read_unclosed_quote")).otherwise(pl.lit("read_malformed_quoting")))
        .when(t.str.contains("\x00", literal=True)).then(pl.lit("read_nul_byte"))
        .when(pl.lit(damaged) & t.str.contains(_REPLACED, literal=True))
        .then(pl.lit("read_bad_encoding"))
        .alias("problem"),
    ]
    lines = _physical_lines(text).with_columns(
        t.str.count_matches(quote, literal=True).alias("quotes"))
    starts = (pl.col("quotes").cum_sum() - pl.col("quotes")) % 2 == 0
    lines = lines.with_columns(starts.cum_sum().alias("record"))
    if lines.height == lines["record"].n_unique():  # no quoted line breaks: lines are records
        return lines.select("record", "line", "text").with_columns(judged).drop("record")
    records = (lines.group_by("record", maintain_order=True)
               .agg(pl.col("line").first(), t.str.join("\n"), pl.len().alias("n_lines"))
               .with_columns(judged))
    broken = records.filter(pl.col("problem").is_not_null() & (pl.col("n_lines") > 1))
    if broken.height:
        alone = (lines.join(broken.select("record"), on="record", how="semi")
                 .select("record", "line", "text").with_columns(judged))
        records = pl.concat([records.join(broken.select("record"), on="record", how="anti")
                             .drop("n_lines"), alone]).sort("line")
    return records.select("line", "text", "blank", "fields", "problem")


def _read_csv(data: bytes, file_name: str, feed: Feed) -> tuple[pl.DataFrame, pl.DataFrame]:
    text, damaged = _decode(data, file_name, feed)
    text = lf_lines(text)
    _check_binary(text, file_name, "CSV")
    if not text.strip():
        raise DropReadError(f"{file_name}: is empty; ask the agency to re-send it")
    separator = feed.csv.get("delimiter", ",")
    quote = feed.csv.get("quote_char", '"')
    records = csv_records(text, separator, quote, damaged).filter(~pl.col("blank"))
    header = _csv_header(records["text"][0].encode(), separator, quote)
    _check_header(header, file_name)
    # A delimiter at the end of each data line whose header has none (some exporters write
    # one): the empty field after it is no column. Every line was quarantined for its count.
    # Only where that is the file's habit (most data lines): elsewhere a line with one field
    # too many and an empty last one is a value with an unquoted delimiter, shifted.
    lines = records.slice(1).filter(pl.col("problem").is_null())
    ending = lines.filter((pl.col("fields") == len(header) + 1)
                          & pl.col("text").str.ends_with(separator)).height
    habit = ending > lines.height / 2
    records = records.with_columns(pl.col("text").alias("written"),
                                   pl.col("fields").alias("fields_written"))
    if habit:
        trailing = (pl.int_range(pl.len()) > 0) & pl.col("text").str.ends_with(separator)
        records = records.with_columns(
            pl.when(trailing).then(pl.col("text").str.strip_suffix(separator))
            .otherwise(pl.col("text")).alias("text"),
            pl.when(trailing).then(pl.col("fields") - 1).otherwise(pl.col("fields"))
            .alias("fields"))
    body = records.slice(1).with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("source_row"),
        pl.when(pl.col("problem").is_null() & (pl.col("fields") != len(header)))
        .then(pl.lit("read_field_count")).otherwise(pl.col("problem")).alias("problem"))
    reasons = {
        "read_unclosed_quote": pl.format(f"line {{}}: an odd number of {quote} (a quoted field "
                                         "that never closes, or a stray quote)", "line"),
        "read_malformed_quoting": pl.format(f"line {{}}: a {quote} inside a field that is not "
                                            "quoted, or text after a closing quote", "line"),
        "read_nul_byte": pl.format("line {}: a NUL byte inside a field", "line"),
        "read_bad_encoding": _bad_encoding_reason(feed),
        "read_field_count": pl.format(f"line {{}}: {{}} fields, the header has {len(header)}; "
                                      f"check the delimiter {separator!r} and the quoting",
                                      "line", "fields_written"),
    }
    reason = pl.lit(None, pl.String)
    for problem, text_expr in reasons.items():
        reason = pl.when(pl.col("problem") == problem).then(text_expr).otherwise(reason)
    bad = body.filter(pl.col("problem").is_not_null()).select(
        "source_row", "line", pl.col("problem").alias("expectation"),
        pl.lit(None, pl.String).alias("column"), reason.alias("reason"),
        pl.col("written").alias("raw_line"))
    good = body.filter(pl.col("problem").is_null())
    if good.height == 0:  # header only, or nothing readable: validation names the problem
        frame = pl.DataFrame(schema={c: pl.String for c in header})
    else:
        joined = good["text"].str.join("\n").cast(pl.Binary).item() + b"\n"
        try:
            # every value stays a string (infer_schema=False); quoted newlines are Polars' job
            frame = pl.read_csv(io.BytesIO(joined), separator=separator, quote_char=quote,
                                has_header=False, infer_schema=False, new_columns=header,
                                raise_if_empty=False)
        except pl.exceptions.ComputeError as exc:
            raise DropReadError(f"{file_name}: not a well-formed CSV ({_first_line(exc)}); "
                                f"check the delimiter {separator!r} and the quoting") from exc
        if frame.height != good.height:  # our record split and Polars' must agree
            raise DropReadError(f"{file_name}: {good.height:,} records but Polars read "
                                f"{frame.height:,} rows; check the quoting")
    _check_reserved(header, file_name)
    # a header ending with the delimiter (``id,name,`` over lines ``1,SOK DARA,``) names its last
    # column "": with no value in any row it is no column, as a workbook's (_sheet_rows); a feed
    # file cannot declare it, so it would be warned of in every drop
    frame = frame.drop([c for c in frame.columns if not c.strip() and frame[c].str.strip_chars()
                        .replace("", None).null_count() == frame.height])
    frame = frame.with_columns(good["source_row"], good["line"].alias(_LINE))
    return frame, bad


def library_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a Rust library's panic (Polars, calamine's fastexcel), which pyo3
    raises as a ``PanicException`` deriving from BaseException, not Exception: ``except
    Exception`` lets it through, and it ended the run (and, the drop staying pending, every
    later one). A fuzzed Parquet file made Polars panic ("called `Option::unwrap()` on a
    `None` value")."""
    return type(exc).__name__ == "PanicException"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _read_xlsx(data: bytes, file_name: str, feed: Feed) -> pl.DataFrame:
    if not data.startswith(b"PK") or not zipfile.is_zipfile(io.BytesIO(data)):
        raise DropReadError(f"{file_name}: not an Excel .xlsx file (truncated or another "
                            "format); ask the agency to save it again as .xlsx and re-send")
    sheet = feed.sheet
    sheet_arg = {"sheet_id": sheet + 1} if isinstance(sheet, int) else {"sheet_name": sheet}
    too_large = check_extent(data, file_name, sheet)  # calamine would abort the process
    if too_large:
        raise DropReadError(too_large)
    try:
        # One parse of the sheet, its header row as data: the header is checked as written
        # (calamine would rename a repeated name), then the rows are the frame. calamine parses
        # the whole sheet even for one row: a separate header read doubled the cost (1.9 s of
        # 4.4 s for the 1M-people workbook).
        raw = pl.read_excel(io.BytesIO(data), engine="calamine", has_header=False,
                            infer_schema_length=0, drop_empty_rows=False,
                            drop_empty_cols=False, **sheet_arg)
    except (ValueError, IndexError) as exc:
        raise DropReadError(f"{file_name}: sheet {sheet!r} not found ({_first_line(exc)}); "
                            "fix 'sheet:' in the feed or ask the agency") from exc
    except Exception as exc:  # calamine raises its own error types for broken workbooks
        raise DropReadError(f"{file_name}: the Excel workbook cannot be read "
                            f"({_first_line(exc)}); ask the agency to save it again as .xlsx "
                            "and re-send") from exc
    header = [v if v is not None else "" for v in raw.row(0)] if raw.height else []
    _check_header(header, file_name)
    return _sheet_rows(raw, header)


def _sheet_rows(raw: pl.DataFrame, header: list[str]) -> pl.DataFrame:
    """The rows under the header row, as ``pl.read_excel`` with a header reads them: a blank
    header cell names its column ``__UNNAMED__<i>``, and such a column when it holds nothing
    is dropped, as is every row that holds nothing."""
    names = [name or f"__UNNAMED__{i}" for i, name in enumerate(header)]
    frame = raw.slice(1).rename(dict(zip(raw.columns, names, strict=True)))
    empty = [c for i, c in enumerate(frame.columns)
             if not header[i] and frame[c].null_count() == frame.height]
    frame = frame.drop(empty)
    if frame.width == 0:
        return frame
    return frame.filter(~pl.all_horizontal(pl.all().is_null()))


def _json_object(line: str) -> str | None:
    """Why one JSON line is not a JSON object, or None when it is."""
    if "\x00" in line:
        return "a NUL byte inside a field"
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc})"
    except RecursionError:  # arrays in arrays, thousands deep: Python's parser gives up
        return "JSON nested too deeply to read"
    except ValueError as exc:  # a number of more than 4,300 digits
        return f"a value that cannot be read ({str(exc).split(';')[0]})"
    return None if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"


#: Lines per block when a JSON Lines file has bad lines: each block is read by Polars, and only
#: the lines of a block it cannot read are looked at one by one in Python. At 433,348 lines with
#: 2 bad ones, reading them all in Python took 2.9 s (bench/RESULTS.md, "2026-12-04").
_JSON_BLOCK = 4096


def _ndjson(lines: pl.Series, names: list[str]) -> pl.DataFrame:
    """``lines`` (one JSON object each) read as a frame of string columns ``names``."""
    return pl.read_ndjson(io.BytesIO(lines.str.join("\n").cast(pl.Binary).item()),
                          schema={c: pl.String for c in names})


def _json_reasons(lines: pl.Series) -> pl.Series:
    """Why each line is not a JSON object (:func:`_json_object`), null where it is one.

    Polars refuses a block holding any line that is not a JSON object (malformed, a NUL byte,
    an array or a scalar), so a block it reads whole, one row per line, holds none; the lines of
    the other blocks are judged one by one. (It parses the lines only for the columns it is
    asked for, and with none it parses nothing: one it never finds is asked for.)
    """
    reasons: list[str | None] = [None] * lines.len()
    for start in range(0, lines.len(), _JSON_BLOCK):
        block = lines.slice(start, _JSON_BLOCK)
        if _polars_reads(block):
            continue
        for i, text in enumerate(block):
            reasons[start + i] = _json_object(text)
        # Python's parser takes what Polars' refuses (NaN, Infinity, 1e999999): one such line
        # made Polars refuse the good lines too, and the whole drop was rejected
        passed = [i for i, why in enumerate(reasons[start:start + block.len()]) if why is None]
        for i in _refused(block.gather(passed)):
            reasons[start + passed[i]] = ("a value the JSON reader refuses (NaN, Infinity or a "
                                          "number out of range)")
    return pl.Series(reasons, dtype=pl.String)


def _polars_reads(lines: pl.Series) -> bool:
    """Whether Polars reads every one of ``lines`` as a JSON object."""
    try:
        return _ndjson(lines, ["\x00 no such key"]).height == lines.len()
    except (pl.exceptions.PolarsError, ValueError, TypeError):
        return False


def _refused(lines: pl.Series) -> list[int]:
    """The positions of the lines Polars refuses, found by halving: a few reads per line."""
    if lines.is_empty() or _polars_reads(lines):
        return []
    if lines.len() == 1:
        return [0]
    half = lines.len() // 2
    return _refused(lines.head(half)) + [half + i for i in _refused(lines.slice(half))]


def _read_jsonl(data: bytes, file_name: str, feed: Feed) -> tuple[pl.DataFrame, pl.DataFrame]:
    text, damaged = _decode(data, file_name, feed)
    text = lf_lines(text)
    _check_binary(text, file_name, "JSON Lines")
    if not text.strip():
        raise DropReadError(f"{file_name}: is empty; ask the agency to re-send it")
    lines = (_physical_lines(text).filter(pl.col("text").str.strip_chars().str.len_chars() > 0)
             .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("source_row")))
    bad = pl.DataFrame(schema=BAD_SCHEMA)
    if damaged:  # the lines that held undecodable bytes go to quarantine; the rest is read
        undecodable = pl.col("text").str.contains(_REPLACED, literal=True)
        bad = lines.filter(undecodable).select(
            "source_row", "line", pl.lit("read_bad_encoding").alias("expectation"),
            pl.lit(None, pl.String).alias("column"), _bad_encoding_reason(feed).alias("reason"),
            pl.col("text").alias("raw_line"))
        lines = lines.filter(~undecodable)
    good, frame = lines, None
    try:
        first = json.loads(lines["text"][0])
        names = list(dict.fromkeys([*feed.columns, *first]))
        frame = _ndjson(lines["text"], names)
        if frame.height != lines.height:
            raise ValueError("not one JSON object per line")
    except (pl.exceptions.PolarsError, ValueError, TypeError, RecursionError, IndexError):
        # the file has bad lines: find them (Python per line, only in the blocks that hold one)
        lines = lines.with_columns(_json_reasons(lines["text"]).alias("why"))
        bad = pl.concat([bad, lines.filter(pl.col("why").is_not_null()).select(
            "source_row", "line",
            pl.when(pl.col("why").str.starts_with("a NUL")).then(pl.lit("read_nul_byte"))
            .otherwise(pl.lit("read_malformed_json")).alias("expectation"),
            pl.lit(None, pl.String).alias("column"),
            pl.format("line {}: {}", "line", "why").alias("reason"),
            pl.col("text").alias("raw_line"))]).sort("source_row")
        good, frame = lines.filter(pl.col("why").is_null()), None
    if good.height == 0:
        raise DropReadError(f"{file_name}: no line is a JSON object (line 1: "
                            f"{_json_object(lines['text'][0])}); expected JSON Lines (one "
                            "object per line)")
    first = json.loads(good["text"][0])
    names = list(dict.fromkeys([*feed.columns, *first]))
    if frame is None:
        try:
            frame = _ndjson(good["text"], names)
        except pl.exceptions.PolarsError as exc:
            raise DropReadError(f"{file_name}: not valid JSON Lines ({_first_line(exc)}); "
                                "expected one JSON object per line") from exc
    # Columns the file never mentions stay absent, so a drop missing a column is rejected.
    present = set(first) | {c for c in names if frame[c].null_count() < frame.height}
    frame = frame.select([c for c in names if c in present])
    _check_reserved(frame.columns, file_name)
    return frame.with_columns(good["source_row"], good["line"].alias(_LINE)), bad


def _read_parquet(data: bytes, file_name: str, feed: Feed) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow/polars raise several types for a broken file
        raise DropReadError(f"{file_name}: not a readable Parquet file ({_first_line(exc)}); "
                            "ask the agency to re-send it") from exc
    return frame.select(_as_text(frame, name) for name in frame.columns)


def _as_text(frame: pl.DataFrame, name: str) -> pl.Expr:
    """One Parquet column as the text a reader of the file would see. A list, array or struct
    becomes its JSON, and bytes their UTF-8 text, or ``0x`` and hex when the column is not all
    text: Polars' cast to String refuses both, and one such column (a photo, a list of aliases)
    rejected the whole drop even where the feed does not map it."""
    column, dtype = pl.col(name), frame.schema[name]
    if dtype.is_nested():
        as_json = pl.struct(column.alias("v")).struct.json_encode().str.slice(5).str.head(-1)
        return pl.when(column.is_not_null()).then(as_json).alias(name)
    if dtype == pl.Binary:
        try:
            frame.select(column.cast(pl.String))
        except pl.exceptions.PolarsError:  # not UTF-8 text
            return (pl.lit("0x") + column.bin.encode("hex")).alias(name)
    return column.cast(pl.String)


def _xlsx(data: bytes, file_name: str, feed: Feed) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = _read_xlsx(data, file_name, feed)
    _check_reserved(frame.columns, file_name)
    rows = pl.int_range(1, frame.height + 1, dtype=pl.Int64, eager=True)
    # the sheet's row: the header is row 1
    return frame.with_columns(rows.alias("source_row"), (rows + 1).alias(_LINE)), \
        pl.DataFrame(schema=BAD_SCHEMA)


def _parquet(data: bytes, file_name: str, feed: Feed) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = _read_parquet(data, file_name, feed)
    _check_reserved(frame.columns, file_name)
    return frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64)
                              .alias("source_row"), pl.lit(None, pl.Int64).alias(_LINE)), \
        pl.DataFrame(schema=BAD_SCHEMA)


#: Readers by format: a feed file's ``format:`` string picks one. Each returns
#: the rows read (source columns, source_row, source_line) and the lines it quarantined.
READERS: dict[str, Callable[[bytes, str, Feed], tuple[pl.DataFrame, pl.DataFrame]]] = {
    "csv": _read_csv,
    "xlsx": _xlsx,
    "jsonl": _read_jsonl,
    "parquet": _parquet,
}


def _bad_cells(frame: pl.DataFrame, feed: Feed) -> pl.DataFrame:
    """One row per cell longer than its column's ``max_length`` (MAX_LENGTH when the feed
    sets none, or for a column it does not declare) or holding a NUL byte: BAD_SCHEMA, with
    ``row`` (the frame's row) instead of the source columns."""
    found = []
    for column in frame.columns:
        if column in ("source_row", _LINE):
            continue
        limit = (feed.columns.get(column) or {}).get("max_length") or MAX_LENGTH
        values = frame[column]
        # bytes first: a cell of at most ``limit`` bytes has at most ``limit`` characters
        long = values.str.len_bytes() > limit
        if long.any():
            long = long & (values.str.len_chars() > limit)
        nul = values.str.contains("\x00", literal=True)
        if not (long.any() or nul.any()):
            continue
        found.append(frame.select(
            pl.int_range(pl.len()).alias("row"), "source_row", pl.col(_LINE).alias("line"),
            pl.lit(column).alias("column"),
            pl.when(long).then(pl.lit("read_cell_too_long")).when(nul)
            .then(pl.lit("read_nul_byte")).alias("expectation"),
            pl.when(long).then(pl.format(
                f"line {{}}: {column} is {{}} characters long, more than the {limit:,} the "
                "feed allows", pl.col(_LINE).cast(pl.String).fill_null("?"),
                pl.col(column).str.len_chars()))
            .when(nul).then(pl.format(f"line {{}}: {column} holds a NUL byte",
                                      pl.col(_LINE).cast(pl.String).fill_null("?")))
            .alias("reason"),
        ).filter(pl.col("expectation").is_not_null()))
    if not found:
        return pl.DataFrame(schema={"row": pl.UInt32, **BAD_SCHEMA})
    return pl.concat(found).with_columns(pl.lit(None, pl.String).alias("raw_line"))


def _blank_as_missing(frame: pl.DataFrame) -> pl.DataFrame:
    """A cell of nothing but whitespace (``""`` in JSON, ``"  "`` or a full-width space in a
    CSV) holds no value, as an empty CSV field: null, so that ``required`` quarantines a row
    without the value (a blank name passed, and staged a person with no name)."""
    text = [c for c, kind in frame.schema.items()
            if kind == pl.String and c not in ("source_row", _LINE)]
    return frame.with_columns(pl.when(pl.col(c).str.contains(r"^\s*$")).then(None)
                              .otherwise(pl.col(c)).alias(c) for c in text)


def read_drop_isolated(data: bytes, file_name: str, feed: Feed) -> DropRead:
    """Read one drop of ``feed``, putting the lines and cells that cannot be read aside.

    Args:
        data: the file's bytes (as landed in raw/).
        file_name: its name (format from the extension; used in messages).
        feed: its feed definition.

    Returns:
        DropRead: the good rows (source columns in file order, values exactly as written
        but a blank cell null, and ``source_row``, the 1-based data record, header not
        counted), each row's line, and the quarantined lines and cells with line number and
        reason.

    Raises:
        DropReadError: the file as a whole cannot be read: binary or empty file, wrong
            encoding, broken workbook, duplicate column names, ... with the file name and
            what to do.
    """
    if not data:
        raise DropReadError(f"{file_name}: is empty (0 bytes); ask the agency to re-send it")
    fmt = _format(file_name, feed)
    try:
        frame, bad_lines = READERS[fmt](data, file_name, feed)
    except BaseException as exc:
        if not library_panic(exc):
            raise
        raise DropReadError(f"{file_name}: the {fmt} reader failed on this file ({exc}): it is "
                            "damaged or not what its name says; ask the agency to re-send it"
                            ) from None
    frame = _blank_as_missing(frame)
    cells = _bad_cells(frame, feed)
    bad = [bad_lines.select(list(BAD_SCHEMA)).cast(BAD_SCHEMA)]
    if cells.height:
        rows = frame.with_row_index("row").join(cells.select("row").unique(), on="row",
                                                how="semi")
        # a row with a bad cell keeps its source columns in quarantine: nothing is lost
        bad.append(rows.drop("source_row", _LINE).join(
            cells.select("row", *BAD_SCHEMA).cast(BAD_SCHEMA), on="row").drop("row")
            .sort("source_row", "column"))
        frame = frame.with_row_index("row").join(cells.select("row").unique(), on="row",
                                                 how="anti").drop("row")
    bad_frame = pl.concat(bad, how="diagonal_relaxed").sort("source_row", maintain_order=True)
    columns = [c for c in bad_frame.columns if c not in BAD_SCHEMA] + list(BAD_SCHEMA)
    return DropRead(frame.drop(_LINE), frame.select("source_row", pl.col(_LINE).alias("line")),
                    bad_frame.select(columns))


def read_drop(data: bytes, file_name: str, feed: Feed) -> pl.DataFrame:
    """The good rows of one drop of ``feed`` (:func:`read_drop_isolated` says which are good;
    use it where the quarantined lines must be kept)."""
    return read_drop_isolated(data, file_name, feed).frame


__all__ = ["BAD_SCHEMA", "READERS", "DropRead", "DropReadError", "csv_records",
           "detect_encoding", "file_format", "lf_lines", "library_panic",
           "read_drop", "read_drop_isolated"]
