"""Writers of the generated drops: byte-identical output for the same frame.

The xlsx writer produces the SpreadsheetML parts itself with Polars string expressions (inline
strings, one sheet) instead of xlsxwriter: at a million people the detentions sheet has about
350,000 rows, which xlsxwriter writes cell by cell in Python (tens of seconds), while building the
XML column-wise takes a few. Zip entries carry a fixed timestamp, and the core properties a fixed
creation date, so the file depends on the data only.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl

_ZIP_TIME = (2025, 1, 1, 0, 0, 0)
_CHUNK_ROWS = 50_000

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/docProps/core.xml" '
    'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="xl/workbook.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/'
    'relationships/metadata/core-properties" Target="docProps/core.xml"/>'
    "</Relationships>"
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="{sheet}" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
)
_CORE = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/'
    'core-properties" xmlns:dcterms="http://purl.org/dc/terms/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    '<dcterms:created xsi:type="dcterms:W3CDTF">2025-01-01T00:00:00Z</dcterms:created>'
    "</cp:coreProperties>"
)
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)
_SHEET_TAIL = "</sheetData></worksheet>"


def _col_letter(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _xml_escape(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_many(["&", "<", ">"], ["&amp;", "&lt;", "&gt;"])


def _cells(frame: pl.DataFrame, first_row: int) -> str:
    """The <row> elements of ``frame`` (all values as inline strings; nulls are left out)."""
    row_no = (pl.int_range(pl.len(), dtype=pl.Int64) + first_row).cast(pl.String)
    parts = [pl.format('<row r="{}">', row_no)]
    for i, name in enumerate(frame.columns):
        letter = _col_letter(i)
        cell = pl.format(
            '<c r="{}{}" t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>',
            pl.lit(letter),
            row_no,
            _xml_escape(pl.col(name).cast(pl.String)),
        )
        parts.append(cell.fill_null(""))
    parts.append(pl.lit("</row>"))
    rows = frame.select(pl.concat_str(parts).alias("r"))["r"]
    return "".join(rows.to_list())


def _zinfo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_xlsx(frame: pl.DataFrame, path: Path, sheet: str = "Sheet1") -> None:
    """Write ``frame`` as a one-sheet xlsx: header row, then every value as text."""
    header = pl.DataFrame({c: [c] for c in frame.columns})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(_zinfo("[Content_Types].xml"), _CONTENT_TYPES)
        zf.writestr(_zinfo("_rels/.rels"), _RELS)
        zf.writestr(_zinfo("docProps/core.xml"), _CORE)
        zf.writestr(_zinfo("xl/workbook.xml"), _WORKBOOK.format(sheet=sheet))
        zf.writestr(_zinfo("xl/_rels/workbook.xml.rels"), _WORKBOOK_RELS)
        with zf.open(_zinfo("xl/worksheets/sheet1.xml"), "w", force_zip64=True) as fh:
            fh.write(_SHEET_HEAD.encode())
            fh.write(_cells(header, 1).encode())
            for start in range(0, frame.height, _CHUNK_ROWS):
                chunk = frame.slice(start, _CHUNK_ROWS)
                fh.write(_cells(chunk, start + 2).encode())
            fh.write(_SHEET_TAIL.encode())


def write_csv(frame: pl.DataFrame, path: Path, encoding: str) -> None:
    """CSV in ``encoding`` (gb18030, or utf-8-sig for a byte-order mark)."""
    path.write_bytes(frame.write_csv().encode(encoding))


def write_jsonl(frame: pl.DataFrame, path: Path) -> None:
    """JSON Lines, UTF-8, one object per row (null fields written as null)."""
    path.write_bytes(frame.write_ndjson().encode("utf-8"))
