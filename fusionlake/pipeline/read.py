"""Read one drop (CSV, xlsx, JSON Lines, Parquet) into a frame of strings, as the agency wrote it.

Every value stays a string exactly as in the file (nothing stripped, nothing inferred): typing is
the job of transforms/, judging is the job of expectations/. A file that cannot be read as its
feed says raises :class:`DropReadError` with a message a data steward can act on.

Text is decoded once, as whole bytes, to UTF-8 and then handed to Polars' CSV/NDJSON readers:
a large drop is never turned into Python objects row by row.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable

import polars as pl

from fusionlake.lake.feeds import Feed

#: Largest field accepted by the CSV parser's sanity checks; longer values are read and left to
#: the expectations (a 10 MB "name" is quarantined, not a reason to fail the whole drop).
_SNIFF_BYTES = 64 * 1024

_EXTENSIONS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl",
               ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_CODECS = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "gb18030": "gb18030", "cp874": "cp874",
           "tis-620": "cp874"}  # cp874 is a superset of TIS-620 (adds the euro sign etc.)


class DropReadError(Exception):
    """A drop that cannot be read: names the file (row/field where known) and what to do."""


def _format(file_name: str, feed: Feed) -> str:
    suffix = "." + file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    fmt = _EXTENSIONS.get(suffix)
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
    """Best guess of a text drop's encoding: BOM, then UTF-8, then GB18030 or CP874.

    Thai (CP874) puts nearly all non-ASCII bytes in 0xA1-0xFB, one byte per character, and
    GB18030 pairs a lead byte 0x81-0xFE with a trail byte; charset-normalizer decides between
    the two on a sample, with a plain byte-pair heuristic as fallback.
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
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(sample, cp_isolation=["gb18030", "cp874", "tis_620"]).best()
        if best is not None:
            return "cp874" if best.encoding in ("cp874", "tis_620") else "gb18030"
    except ImportError:  # pragma: no cover - charset-normalizer ships with requests
        pass
    try:
        sample.decode("cp874")
        return "cp874"
    except UnicodeDecodeError:
        return "gb18030"


def _decode(data: bytes, file_name: str, feed: Feed) -> bytes:
    """The drop's text as UTF-8 bytes (without BOM), decoded strictly from the feed's encoding."""
    encoding = feed.encoding
    if encoding == "detect":
        encoding = detect_encoding(data)
    codec = _CODECS[encoding]
    if codec == "utf-8" and data.startswith(b"\xef\xbb\xbf"):
        codec = "utf-8-sig"  # a BOM is harmless: accept it rather than make it part of a header
    if codec in ("utf-8", "utf-8-sig"):
        try:
            data.decode(codec)  # validate only; UTF-8 bytes go to Polars as they are
        except UnicodeDecodeError as exc:
            raise _encoding_error(data, exc, file_name, feed, encoding) from exc
        return data[3:] if codec == "utf-8-sig" else data
    try:
        return data.decode(codec).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise _encoding_error(data, exc, file_name, feed, encoding) from exc


def _encoding_error(data: bytes, exc: UnicodeDecodeError, file_name: str, feed: Feed,
                    encoding: str) -> DropReadError:
    line = data[: exc.start].count(b"\n") + 1
    if b"\x00" in data[:_SNIFF_BYTES]:
        what = "is binary, not text"
    else:
        what = f"is not valid {encoding} (byte 0x{data[exc.start]:02x} at line {line})"
    return DropReadError(
        f"{file_name}: {what}; feed {feed.name} expects {feed.formats[0]} in {encoding}: ask "
        "the agency to re-send the file in that encoding, or set 'encoding: detect' in the feed"
    )


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


def _read_csv(data: bytes, file_name: str, feed: Feed) -> pl.DataFrame:
    text = _decode(data, file_name, feed)
    if b"\x00" in text[:_SNIFF_BYTES]:
        raise DropReadError(f"{file_name}: is binary, not a CSV text file; ask the agency to "
                            "export the data again as CSV")
    if not text.strip():
        raise DropReadError(f"{file_name}: is empty; ask the agency to re-send it")
    separator = feed.csv.get("delimiter", ",")
    quote = feed.csv.get("quote_char", '"')
    header = _csv_header(text, separator, quote)
    _check_header(header, file_name)
    try:
        # Parse without a header so duplicate names are ours to report, and every value stays
        # a string (infer_schema=False); quoted newlines are handled by Polars.
        frame = pl.read_csv(io.BytesIO(text), separator=separator, quote_char=quote,
                            has_header=False, skip_rows=1, infer_schema=False,
                            new_columns=header,
                            raise_if_empty=False)
    except pl.exceptions.ComputeError as exc:
        raise DropReadError(f"{file_name}: not a well-formed CSV ({_first_line(exc)}); check "
                            f"the delimiter {separator!r} and the quoting") from exc
    if frame.height == 0:  # header only: keep the columns so validation can name the problem
        return pl.DataFrame(schema={c: pl.String for c in header})
    if frame.width != len(header):
        raise DropReadError(f"{file_name}: rows have {frame.width} fields, the header "
                            f"{len(header)}; check the delimiter {separator!r}")
    return frame


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _read_xlsx(data: bytes, file_name: str, feed: Feed) -> pl.DataFrame:
    if not data.startswith(b"PK") or not zipfile.is_zipfile(io.BytesIO(data)):
        raise DropReadError(f"{file_name}: not an Excel .xlsx file (truncated or another "
                            "format); ask the agency to save it again as .xlsx and re-send")
    sheet = feed.sheet
    sheet_arg = {"sheet_id": sheet + 1} if isinstance(sheet, int) else {"sheet_name": sheet}
    try:
        import fastexcel

        reader = fastexcel.read_excel(data)
        names = reader.sheet_names
        idx = sheet if isinstance(sheet, int) else names.index(sheet)
        raw = reader.load_sheet(idx, header_row=None, dtypes="string", n_rows=1)
        header = [str(v) if v is not None else "" for v in raw.to_polars().row(0)] \
            if raw.height else []
        _check_header(header, file_name)
        frame = pl.read_excel(io.BytesIO(data), engine="calamine", infer_schema_length=0,
                              **sheet_arg)
    except DropReadError:
        raise
    except (ValueError, IndexError) as exc:
        raise DropReadError(f"{file_name}: sheet {sheet!r} not found ({_first_line(exc)}); "
                            "fix 'sheet:' in the feed or ask the agency") from exc
    except Exception as exc:  # calamine raises its own error types for broken workbooks
        raise DropReadError(f"{file_name}: the Excel workbook cannot be read "
                            f"({_first_line(exc)}); ask the agency to save it again as .xlsx "
                            "and re-send") from exc
    return frame.select(pl.all().cast(pl.String))


def _read_jsonl(data: bytes, file_name: str, feed: Feed) -> pl.DataFrame:
    text = _decode(data, file_name, feed)
    if not text.strip():
        raise DropReadError(f"{file_name}: is empty; ask the agency to re-send it")
    first = text.lstrip().split(b"\n", 1)[0]
    try:
        keys = list(json.loads(first))
    except (json.JSONDecodeError, TypeError) as exc:
        raise DropReadError(f"{file_name}: line 1 is not a JSON object ({exc}); expected JSON "
                            "Lines (one object per line)") from exc
    names = list(dict.fromkeys([*feed.columns, *keys]))
    try:
        frame = pl.read_ndjson(io.BytesIO(text), schema={c: pl.String for c in names},
                               ignore_errors=False)
    except pl.exceptions.PolarsError as exc:
        raise DropReadError(f"{file_name}: not valid JSON Lines ({_first_line(exc)}); expected "
                            "one JSON object per line") from exc
    # Columns the file never mentions stay absent, so a drop missing a column is rejected.
    present = set(keys) | {c for c in names if frame[c].null_count() < frame.height}
    return frame.select([c for c in names if c in present])


def _read_parquet(data: bytes, file_name: str, feed: Feed) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow/polars raise several types for a broken file
        raise DropReadError(f"{file_name}: not a readable Parquet file ({_first_line(exc)}); "
                            "ask the agency to re-send it") from exc
    return frame.select(pl.all().cast(pl.String))


#: Readers by format: a feed file's ``format:`` string picks one (STYLE.md #4).
READERS: dict[str, Callable[[bytes, str, Feed], pl.DataFrame]] = {
    "csv": _read_csv,
    "xlsx": _read_xlsx,
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
}


def read_drop(data: bytes, file_name: str, feed: Feed) -> pl.DataFrame:
    """Read one drop of ``feed``: source columns as pl.String, plus ``source_row``.

    Args:
        data: the file's bytes (as landed in raw/).
        file_name: its name (format from the extension; used in messages).
        feed: its feed definition.

    Returns:
        The file's columns in file order, values exactly as written, and ``source_row``
        (pl.Int64, 1-based data row, header not counted).

    Raises:
        DropReadError: binary or empty file, wrong encoding, broken workbook, duplicate column
            names, ... with the file name and what to do.
    """
    if not data:
        raise DropReadError(f"{file_name}: is empty (0 bytes); ask the agency to re-send it")
    fmt = _format(file_name, feed)
    frame = READERS[fmt](data, file_name, feed)
    if "source_row" in frame.columns:
        raise DropReadError(f"{file_name}: has a column named 'source_row', which the lake "
                            "reserves for row numbers; ask the agency to rename it")
    return frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64)
                              .alias("source_row"))


__all__ = ["READERS", "DropReadError", "detect_encoding", "read_drop"]
