"""What a workbook's sheet would cost to read, found before calamine reads it.

calamine (the reader behind ``pl.read_excel``) makes one grid of 32-byte cells spanning every
cell that has a value, from the top-left one to the bottom-right one. One stray value far from
the data (cell XFD1048576, typed by accident, or written on purpose) makes that grid 16,384
columns by 1,048,576 rows: a 1.6 KB file asks for 512 GiB, and the allocation failure aborts the
whole process, the run with it and every later run that tries the drop again. A sheet whose
XML inflates to gigabytes (a zip bomb) is the other way a small file fills the memory.

:func:`check_extent` reads the sheet's XML, streamed and decompressed in blocks, and says why
such a sheet cannot be read, naming the cell or the size (the reader refuses the drop with
it). A sheet of at most 26 columns (all the project's feeds) costs one search per block for a
two-letter column reference; only a wider sheet has its references read one by one. At 100k
generated people the detentions sheet (30 MB of XML) takes 0.09 s, a third of it the search.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from xml.etree import ElementTree

#: Cells calamine may hold for one sheet: 2 GiB of its grid (32 bytes a cell). Excel's own
#: limit is 1,048,576 rows, so a sheet that fills every row may have up to 64 columns.
MAX_CELLS = 64 * 2**20
#: Largest sheet XML read: a sheet of Excel's 1,048,576 rows and 40 columns of 40-byte cells
#: is about 1.7 GB of XML.
MAX_XML_BYTES = 2 * 2**30
_BLOCK = 16 * 2**20
_OVERLAP = 32  # a cell reference cut by a block's end is found in the next block
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
#: A cell reference whose column has two or three letters, in any attribute order or quoting
#: (the literal ``r=`` first lets the search skip ahead: 10x faster than a leading ``\s``).
_WIDE = re.compile(rb"""r=["'][A-Z]{2}""")
_CELL = re.compile(rb"""r=["']([A-Z]{1,3})([0-9]{1,7})["']""")


def sheet_part(archive: zipfile.ZipFile, sheet: int | str) -> str | None:
    """The archive member holding ``sheet`` (0-based position or name), as calamine finds it
    from the workbook's sheet list and its relationships; None when there is no such sheet
    (calamine then says so itself)."""
    try:
        book = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return None
    sheets = book.findall(f"{_MAIN}sheets/{_MAIN}sheet")
    chosen = ([s for s in sheets if s.get("name") == sheet] if isinstance(sheet, str)
              else sheets[sheet:sheet + 1])
    if not chosen:
        return None
    targets = {r.get("Id"): r.get("Target", "") for r in rels.iter(f"{_RELS}Relationship")}
    target = targets.get(chosen[0].get(_REL))
    if not target:
        return None
    return target.lstrip("/") if target.startswith("/") else posixpath.normpath(
        posixpath.join("xl", target))


def _blocks(archive: zipfile.ZipFile, part: str) -> Iterator[tuple[bytes, int]]:
    """The member's bytes in blocks, each beginning with the last bytes of the one before;
    with each, how many bytes in all were read so far."""
    tail, size = b"", 0
    with archive.open(part) as stream:
        while block := stream.read(_BLOCK):
            size += len(block)
            yield tail + block, size
            tail = block[-_OVERLAP:]


def _column_number(letters: bytes) -> int:
    number = 0
    for ch in letters:
        number = number * 26 + ch - 64
    return number


def check_extent(data: bytes, file_name: str, sheet: int | str) -> str | None:
    """Why calamine could not read ``sheet`` of this workbook without exhausting the memory,
    or None when it can."""
    label = f"sheet {sheet + 1}" if isinstance(sheet, int) else f"sheet {sheet!r}"
    try:
        return _too_large(data, file_name, sheet, label)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        # a member cut short or altered (its CRC), or a compression Excel never writes: what
        # is in it cannot be known, so it is not handed to calamine either
        return (f"{file_name}: the Excel workbook is damaged ({type(exc).__name__}: "
                f"{str(exc)[:200]}); ask the agency to save it again as .xlsx and re-send")


def _too_large(data: bytes, file_name: str, sheet: int | str, label: str) -> str | None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        part = sheet_part(archive, sheet)
        if part is None or part not in archive.namelist():
            return None
        wide = False
        for block, size in _blocks(archive, part):
            if size > MAX_XML_BYTES:
                return (f"{file_name}: {label} unpacks to more than "
                        f"{MAX_XML_BYTES / 2**30:.0f} GiB of XML (from a {len(data):,}-byte "
                        "file), more than a worksheet of Excel's size holds; ask the agency to "
                        "split it or send CSV")
            wide = wide or _WIDE.search(block) is not None
        if not wide:  # at most 26 columns: at most 27M cells in Excel's 1,048,576 rows
            return None
        columns, rows = (0, b""), (0, b"")  # the largest of each, with its cell
        for block, _ in _blocks(archive, part):
            for letters, row in _CELL.findall(block):
                columns = max(columns, (_column_number(letters), letters + row))
                rows = max(rows, (int(row), letters + row))
    if columns[0] * rows[0] <= MAX_CELLS:
        return None
    cells = " and ".join(sorted({columns[1].decode(), rows[1].decode()}))
    return (f"{file_name}: {label} has values as far as cell {cells}, so reading it means a "
            f"grid of {columns[0]:,} columns by {rows[0]:,} rows ({columns[0] * rows[0]:,} "
            f"cells; at most {MAX_CELLS:,} cells are read); ask the agency to delete what lies "
            "beyond the data (a stray value, often typed by accident) and re-send")
