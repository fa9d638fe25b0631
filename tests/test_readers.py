"""Reading drops: formats, encodings, and files a steward must be told about."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import re
import unicodedata

import polars as pl
import pytest
from conftest import cp1258

from fusionlake.lake.feeds import load_feeds
from fusionlake.pipeline.read import (
    DropReadError,
    detect_encoding,
    read_drop,
    read_drop_isolated,
)

FEEDS = load_feeds().feeds
SUSPECTS = FEEDS["cn_mps/suspects"]
DETENTIONS = FEEDS["th_imm/detentions"]
DETAINEES = FEEDS["mm_police/detainees"]


def _feed(base, **changes):
    return dataclasses.replace(base, **changes)


def _values(frame: pl.DataFrame) -> list[tuple]:
    return frame.rows()


def test_csv_gb18030_keeps_rare_name_characters():
    # 𬌗 (U+2C317) is outside GBK: only GB18030 encodes it
    text = "编号,姓名,性别\nXS01,王𬌗,男\nXS02,李娜,女\n"
    frame = read_drop(text.encode("gb18030"), "suspects.csv", SUSPECTS)
    assert frame.columns == ["编号", "姓名", "性别", "source_row"]
    assert frame.schema["source_row"] == pl.Int64
    assert _values(frame) == [("XS01", "王𬌗", "男", 1), ("XS02", "李娜", "女", 2)]


def test_csv_values_stay_strings_as_written():
    text = 'id;amount;note\n007;12,345.00;" padded "\n'
    feed = _feed(SUSPECTS, encoding="utf-8", csv={"delimiter": ";"})
    assert _values(read_drop(text.encode(), "x.csv", feed)) == [
        ("007", "12,345.00", " padded ", 1)]


def test_a_blank_cell_is_no_value_in_every_format():
    """Empty, spaces, a full-width space: null, as an empty CSV field (``required`` then
    quarantines the row); a value with spaces around it stays as written."""
    text = 'id,name\n1,""\n2,   \n3,\u3000\n4, Wang \n5,\n'
    frame = read_drop(text.encode(), "x.csv", _feed(SUSPECTS, encoding="utf-8"))
    assert frame["name"].to_list() == [None, None, None, " Wang ", None]
    lines = [{"detainee_no": "D1", "name": ""}, {"detainee_no": "D2", "name": " \t "},
             {"detainee_no": "D3", "name": "Aung"}]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    assert read_drop(data, "x.jsonl", DETAINEES)["name"].to_list() == [None, None, "Aung"]


def test_csv_quoted_newlines_make_one_row():
    text = 'id,address\n1,"line one\nline two"\n2,plain\n'
    frame = read_drop(text.encode(), "x.csv", _feed(SUSPECTS, encoding="utf-8"))
    assert _values(frame) == [("1", "line one\nline two", 1), ("2", "plain", 2)]


def test_utf8_bom_is_not_part_of_the_first_header():
    data = "\ufeffmanifest_id,sex\nTG1-001,M\n".encode()
    frame = read_drop(data, "r.csv", FEEDS["th_imm/repatriations"])
    assert frame.columns == ["manifest_id", "sex", "source_row"]


def test_a_utf8_sig_feed_reads_a_file_saved_without_its_bom_whole():
    """th_imm/repatriations is ``utf-8-sig``: an export saved without the BOM lost its first
    three bytes (header ``ifest_id``) and was rejected for lacking manifest_id."""
    feed = FEEDS["th_imm/repatriations"]
    assert feed.encoding == "utf-8-sig"
    for text in ("manifest_id,sex\nTG1-001,M\n", "manifest_id,sex\nTG1-001,N\u01b0\u0303\n"):
        frame = read_drop(text.encode(), "r.csv", feed)  # the second: decomposed-text path too
        assert frame.columns == ["manifest_id", "sex", "source_row"]
        assert frame["manifest_id"].to_list() == ["TG1-001"]


def test_cp874_thai_csv():
    text = "ลำดับที่,เพศ\n1,ชาย\n2,หญิง\n"
    feed = _feed(DETENTIONS, formats=["csv"], encoding="cp874")
    assert _values(read_drop(text.encode("cp874"), "d.csv", feed)) == [
        ("1", "ชาย", 1), ("2", "หญิง", 2)]


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("编号,姓名\nXS01,王小明\nXS02,张伟\n" * 5, "gb18030", "gb18030"),
        ("ลำดับที่,ชื่อ\n1,สมชาย ใจดี\n2,สมหญิง รักไทย\n" * 5, "cp874", "cp874"),
        ("name\nAung Aung\n", "utf-8", "utf-8"),
        ("name\nအောင်အောင်\n", "utf-8-sig", "utf-8-sig"),
    ],
)
def test_detect_encoding(text, encoding, expected):
    data = text.encode(encoding)
    assert detect_encoding(data) == expected
    frame = read_drop(data, "x.csv", _feed(SUSPECTS, encoding="detect"))
    assert frame.columns[0] == text.split(",")[0].split("\n")[0]


@pytest.mark.parametrize(("text", "encode", "expected"), [
    # GB18030 decodes these too, as B鵬 L鈓 and M黮ler: the guess that was taken before
    ("STT,Ho va ten\nVG-1,Bùi Lâm\nVG-2,Lâm Hùng\nVG-3,Nguyễn Văn Đức\n", cp1258, "cp1258"),
    ("id,name\n1,Müller Jürgen\n2,José Peña\n", lambda t: t.encode("cp1252"), "cp1252"),
    ("id,ho\n1,Trương\n2,Dương\n3,Phương\n", cp1258, "cp1258"),  # no tone at all
    # Portuguese and Italian: ã õ ì ò are ă ơ and tone marks in CP1258, on no vowel
    ("name,city\nJoão Silva,São Paulo\nNiccolò Rossi,Forlì\nConceição Leões,Lisboa\n",
     lambda t: t.encode("cp1252"), "cp1252"),
    # Han beside Latin letters (an address's building A, licence plates, rooms) is still
    # Chinese, and so is Traditional Chinese, whose characters GB2312 lacks
    ("编号,姓名,地址\nXS01,王小明,3号楼A座\nXS02,张伟,B栋2单元\n",
     lambda t: t.encode("gb18030"), "gb18030"),
    ("id,plate\n1,京A12345\n2,沪B88888\n3,粤AD1234\n", lambda t: t.encode("gb18030"),
     "gb18030"),
    ("id,room\n1,A栋\n2,B栋\n3,C栋\n", lambda t: t.encode("gb18030"), "gb18030"),
    ("編號,姓名\n1,陳國華\n2,林志偉\n3,黃淑芬\n", lambda t: t.encode("gb18030"), "gb18030"),
])  # fmt: skip
def test_latin_script_text_in_a_windows_code_page_is_not_read_as_chinese(text, encode, expected):
    data = encode(text)
    assert detect_encoding(data) == expected
    frame = read_drop(data, "x.csv", _feed(SUSPECTS, encoding="detect"))
    header, *rows = text.splitlines()
    assert frame.columns[:-1] == header.split(",")
    assert [",".join(r[:-1]) for r in frame.rows()] == rows  # composed (NFC), as written


def test_a_delimiter_ending_each_data_line_is_no_column():
    """Some exporters end every data line with the delimiter and the header without: each line
    had one field more than the header, and the whole file was quarantined, line by line. A
    line with a real extra value still is."""
    text = ("id,name,phone\nA1,PHAN VAN AN,0912345678,\nA2,BUI DUC ANH,0912345679,\n"
            "A3,X,1,2,\n")
    read = read_drop_isolated(text.encode(), "t.csv", _feed(SUSPECTS, encoding="utf-8"))
    assert [r[:3] for r in read.frame.rows()] == [("A1", "PHAN VAN AN", "0912345678"),
                                                  ("A2", "BUI DUC ANH", "0912345679")]
    assert read.bad["reason"].to_list() == [
        "line 4: 5 fields, the header has 3; check the delimiter ',' and the quoting"]
    # where it is not the file's habit, a line with one field too many and an empty last one
    # is a value with an unquoted delimiter: shifted, so quarantined
    text = "name,dob,remark\nLi Na,1990-01-01,\nZhang, Wei,1985-02-03,\n"
    read = read_drop_isolated(text.encode(), "t.csv", _feed(SUSPECTS, encoding="utf-8"))
    assert [r[:3] for r in read.frame.rows()] == [("Li Na", "1990-01-01", None)]
    assert read.bad["line"].to_list() == [3]


def test_a_header_and_lines_ending_with_the_delimiter_give_no_unnamed_column():
    """``id,name,`` over ``1,SOK DARA,``: the header's last field is empty, so the reader made
    a column named "" that no feed file can declare (and validation warns of every column the
    feed does not declare). Empty in every row, it is no column, as in a workbook; a nameless
    column that holds a value stays, for validation to name."""
    text = "id,name,\r\n1,SOK DARA,\r\n2,CHAN VANNA, \r\n"
    read = read_drop_isolated(text.encode(), "t.csv", _feed(SUSPECTS, encoding="utf-8"))
    assert [c for c in read.frame.columns if c != "source_row"] == ["id", "name"]
    assert read.frame.select("id", "name").rows() == [("1", "SOK DARA"), ("2", "CHAN VANNA")]
    text = "id,name,\n1,SOK DARA,x\n"
    read = read_drop_isolated(text.encode(), "t.csv", _feed(SUSPECTS, encoding="utf-8"))
    assert [c for c in read.frame.columns if c != "source_row"] == ["id", "name", ""]


def test_text_written_decomposed_is_read_composed():
    """Nữ typed on a Mac is u, a combining horn and a combining tilde: read as it was, it missed
    the feed's values: map (``Nữ: F``), and every woman's sex was null."""
    text = "id,name,sex\n1,Nguyễn Thị Hoa,Nữ\n2,Trần Văn Nam,Nam\n"
    decomposed = unicodedata.normalize("NFD", text).encode()
    assert decomposed != text.encode()
    frame = read_drop(decomposed, "x.csv", _feed(SUSPECTS, encoding="utf-8"))
    assert [r[:-1] for r in frame.rows()] == [tuple(line.split(","))
                                              for line in text.splitlines()[1:]]


def test_a_file_whose_encoding_cannot_be_detected_says_so():
    data = "编号,姓名\nXS01,王小明\n".encode("gb18030") + b"XS02,\x81\x20\x81\x20\x81\n" * 3
    with pytest.raises(DropReadError) as err:
        read_drop(data, "x.csv", _feed(SUSPECTS, encoding="detect"))
    assert str(err.value).startswith("x.csv: its encoding could not be detected: the best "
                                     "guess, gb18030, fails at byte 0x81 at line 3")


def test_xlsx_reads_every_cell_as_string():
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    sheet = book.add_worksheet("ผู้ถูกควบคุมตัว")
    sheet.write_row(0, 0, ["ลำดับที่", "ชื่อ-นามสกุล", "วันเกิด"])
    sheet.write_row(1, 0, [1, "LIU ZIBO", "12/03/2528"])
    sheet.write_row(2, 0, [2, "LI NA", "12 มี.ค. 2528"])
    book.close()
    frame = read_drop(buf.getvalue(), "detentions.xlsx", DETENTIONS)
    assert frame.schema["ลำดับที่"] == pl.String
    assert _values(frame) == [("1", "LIU ZIBO", "12/03/2528", 1),
                              ("2", "LI NA", "12 มี.ค. 2528", 2)]


def test_jsonl_and_parquet():
    data = ('{"case_no": "M-1", "name": "အောင်", "date_of_birth": "၁၉၉၀-၀၁-၀၂"}\n'
            '{"case_no": "M-2", "name": null, "date_of_birth": "1985"}\n').encode()
    frame = read_drop(data, "detainees.jsonl", DETAINEES)
    assert frame.columns == ["case_no", "name", "date_of_birth", "source_row"]
    assert _values(frame) == [("M-1", "အောင်", "၁၉၉၀-၀၁-၀၂", 1), ("M-2", None, "1985", 2)]
    buf = io.BytesIO()
    pl.DataFrame({"case_no": ["M-9"], "n": [3]}).write_parquet(buf)
    feed = _feed(DETAINEES, formats=["parquet"])
    assert _values(read_drop(buf.getvalue(), "d.parquet", feed)) == [("M-9", "3", 1)]


# --- files a steward must be told about -------------------------------------------------------


@pytest.mark.parametrize(("values", "dtype", "text"), [
    ([["Aung", "Ko Aung"], None], None, ['["Aung","Ko Aung"]', None]),  # aliases
    ([{"a": 1, "b": "ก"}, None], None, ['{"a":1,"b":"ก"}', None]),
    ([[1, 2], [3, 4]], pl.Array(pl.Int64, 2), ["[1,2]", "[3,4]"]),
    ([b"\x89PNG\r\n", None], None, ["0x89504e470d0a", None]),  # a photo
    (["ไทย".encode(), b"x"], None, ["ไทย", "x"]),  # text stored as bytes
])
def test_a_parquet_column_of_nested_values_or_bytes_is_read_as_text(values, dtype, text):
    """Polars refuses to cast a list or a column of bytes to String: one such column, even one
    the feed does not map, rejected the whole drop ("could not be processed")."""
    frame = pl.DataFrame({"编号": ["GA-1", "GA-2"], "extra": pl.Series(values, dtype=dtype)})
    buf = io.BytesIO()
    frame.write_parquet(buf)
    read = read_drop(buf.getvalue(), "s.parquet", _feed(SUSPECTS, formats=["parquet"]))
    assert read["extra"].to_list() == text


def test_binary_garbage_named_csv():
    garbage = bytes(range(256)) * 50
    with pytest.raises(DropReadError, match=r"^suspects\.csv: .*(binary|not valid gb18030)"):
        read_drop(garbage, "suspects.csv", SUSPECTS)


_SHEETS = {  # rows of a sheet, the header first; None is a cell left empty
    "plain": [["a", "b"], ["1", "x"], ["2", "y"]],
    "numbers and booleans": [["a", "b"], [1, 2.5], [3, 1e20], [True, -0.0]],
    "a date": [["a", "b"], [dt.datetime(2025, 1, 2), "x"]],
    "a blank header cell over values": [["a", None, "c"], ["1", "2", "3"], ["4", None, "6"]],
    "a blank header cell over nothing": [["a", None, "c"], ["1", None, "3"]],
    "empty rows": [["a", "b"], ["1", "2"], [None, None], ["3", "4"], [None, None]],
    "a named column with nothing": [["a", "b", "c"], ["1", None, "3"]],
    "the header alone": [["a", "b"]],
    "a numeric header": [[2024, "b"], ["1", "2"]],
    "spaces": [[" a ", "b"], [" 1 ", ""]],
}


@pytest.mark.parametrize("name", sorted(_SHEETS))
def test_xlsx_rows_are_those_polars_reads_under_the_header(name):
    """The sheet is parsed once, its header row as data (calamine parses a whole sheet even
    for one row); the rows are what Polars' own read with a header gives, cell for cell."""
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    sheet, dates = book.add_worksheet(), book.add_format({"num_format": "dd/mm/yyyy"})
    for i, row in enumerate(_SHEETS[name]):
        for j, value in enumerate(row):
            if isinstance(value, dt.datetime):
                sheet.write_datetime(i, j, value, dates)
            elif value is not None:
                sheet.write(i, j, value)
    book.close()
    polars_own = pl.read_excel(io.BytesIO(buf.getvalue()), engine="calamine",
                               infer_schema_length=0).select(pl.all().cast(pl.String))
    frame = read_drop(buf.getvalue(), "detentions.xlsx", DETENTIONS).drop("source_row")
    assert frame.columns == polars_own.columns
    assert frame.rows() == polars_own.rows()


def test_truncated_xlsx():
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    book.add_worksheet().write_row(0, 0, ["ลำดับที่"])
    book.close()
    with pytest.raises(DropReadError, match=r"^detentions\.xlsx: .*save it again as \.xlsx"):
        read_drop(buf.getvalue()[:300], "detentions.xlsx", DETENTIONS)


def _workbook(*sheets: tuple[str, dict[tuple[int, int], str]]) -> bytes:
    """An .xlsx of named sheets, each a {(row, column): value} of its cells (0-based)."""
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"constant_memory": False})
    for name, cells in sheets:
        sheet = book.add_worksheet(name)
        for (row, col), value in cells.items():
            sheet.write(row, col, value)
    book.close()
    return buf.getvalue()


HEADER = {(0, 0): "ลำดับที่", (0, 1): "ชื่อ", (1, 0): "1", (1, 1): "Aung"}


@pytest.mark.parametrize("stray", [
    {(1048575, 16383): "x"},  # XFD1048576: one cell, both extremes
    {(0, 16383): "x", (1048575, 0): "y"},  # XFD1 and A1048576: the grid spans both
    {(1048575, 100): "x"},  # CW1048576: 101 columns of every row
])
def test_a_stray_cell_far_from_the_data_is_refused_before_it_aborts_the_process(stray):
    """calamine makes one grid from the first cell to the last: a 6 KB workbook with a value
    in XFD1048576 asked for 512 GiB, and the failed allocation aborted the process (the run,
    and every later run that tried the drop again). Now the drop is refused, naming the cell."""
    data = _workbook(("Sheet1", HEADER | stray))
    assert len(data) < 10_000
    with pytest.raises(DropReadError, match=r"^detentions\.xlsx: sheet 1 has values as far as "
                                            r"cell .*1048576.* delete what lies beyond"):
        read_drop(data, "detentions.xlsx", DETENTIONS)


def test_a_wide_sheet_within_bounds_and_a_far_cell_on_another_sheet_are_read():
    """The bound is on the grid calamine would make of the sheet the feed reads: 30 columns
    over a few rows are read, and a stray cell on a sheet the feed does not read is no bar."""
    wide = HEADER | {(0, c): f"extra{c}" for c in range(2, 30)} | {(5, 29): "z"}
    data = _workbook(("Notes", {(1048575, 16383): "x"}), ("Data", wide))
    frame = read_drop(data, "detentions.xlsx", _feed(DETENTIONS, sheet="Data"))
    assert frame.height == 2 and frame.columns[29] == "extra29"  # the empty rows go
    with pytest.raises(DropReadError, match="sheet 1 has values as far as cell XFD1048576"):
        read_drop(data, "detentions.xlsx", _feed(DETENTIONS, sheet=0))


def test_a_sheet_that_unpacks_past_the_bound_is_refused(monkeypatch):
    """A zip bomb: XML that deflates 100:1 and more. The bound is lowered here to keep the test
    fast; the file is read in blocks, never held whole."""
    from fusionlake.pipeline import workbook

    monkeypatch.setattr(workbook, "MAX_XML_BYTES", 2**20)
    monkeypatch.setattr(workbook, "_BLOCK", 2**16)
    rows = {(r, 0): "a" * 40 for r in range(1, 40_000)}
    data = _workbook(("Sheet1", HEADER | rows))
    with pytest.raises(DropReadError, match=r"sheet 1 unpacks to more than 0 GiB of XML \(from a "
                                            r"[0-9,]+-byte file\).*split it or send CSV"):
        read_drop(data, "detentions.xlsx", DETENTIONS)


def test_a_workbook_whose_sheet_is_damaged_inside_the_zip_is_refused_before_calamine():
    """A byte changed inside the compressed sheet (its CRC no longer matches): what the sheet
    holds cannot be known, so it is not handed to calamine, and the message says so."""
    import zipfile

    data = bytearray(_workbook(("Sheet1", HEADER)))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    with pytest.raises(DropReadError, match=r"^detentions\.xlsx: the Excel workbook is damaged "
                                            r"\((BadZipFile|error): .*save it again as \.xlsx"):
        read_drop(bytes(data), "detentions.xlsx", DETENTIONS)


def test_a_reader_s_panic_is_an_error_about_the_file(monkeypatch):
    """Polars panicked on a fuzzed Parquet file (one byte changed: "called `Option::unwrap()`
    on a `None` value"). pyo3 raises a panic as PanicException, a BaseException that `except
    Exception` lets through: it ended the run, and every later run. The file is now refused."""
    def panics(*args, **kwargs):
        raise pl.exceptions.PanicException("called `Option::unwrap()` on a `None` value")

    monkeypatch.setattr(pl, "read_parquet", panics)
    with pytest.raises(DropReadError, match=r"^x\.parquet: the parquet reader failed on this "
                                            r"file \(called `Option::unwrap\(\)`.*re-send"):
        read_drop(b"PAR1 whatever PAR1", "x.parquet", _feed(SUSPECTS, formats=["parquet"]))


@pytest.mark.parametrize(("feed", "name", "encode", "row"), [
    (SUSPECTS, "s.csv", lambda t: t.encode("gb18030"), lambda i: f"GA-{i},王小明{i}"),
    (_feed(SUSPECTS, encoding="utf-8"), "s.csv", str.encode, lambda i: f"GA-{i},王小明{i}"),
    (_feed(SUSPECTS, encoding="utf-8-sig"), "s.csv", lambda t: b"\xef\xbb\xbf" + t.encode(),
     lambda i: f"GA-{i},王小明{i}"),
    (DETAINEES, "d.jsonl", str.encode, lambda i: json.dumps({"case_no": f"M-{i}"})),
])
def test_a_few_lines_of_undecodable_bytes_are_quarantined_not_the_drop(feed, name, encode, row):
    """Two bytes no encoding can read, in one line of 20, rejected the whole drop ("is not
    valid utf-8 ... ask the agency to re-send"). That line is now quarantined with its number
    and the others are read; a file in another encoding altogether is still refused whole."""
    header = "编号,姓名" if name.endswith(".csv") else None
    lines = ([header] if header else []) + [row(i) for i in range(20)]
    data = encode("\n".join(lines) + "\n")
    at = data.index(encode(row(7)).removeprefix(b"\xef\xbb\xbf")) + 4
    data = data[:at] + b"\xff\xfe" + data[at:]
    read = read_drop_isolated(data, name, feed)
    assert read.frame.height == 19
    line = 9 if header else 8
    [(source_row, at_line, expectation, reason)] = _bad(read)
    assert (source_row, at_line, expectation) == (8, line, "read_bad_encoding")
    assert reason == (f"line {line}: bytes that are not valid {feed.encoding} (each shown as "
                      "\ufffd in raw_line); the other lines were read")
    assert "\ufffd" in read.bad["raw_line"][0]
    many = b"\n".join(part[:4] + b"\xff" + part[4:] if i % 4 == 3 else part
                      for i, part in enumerate(data.split(b"\n")))  # a quarter of the lines
    with pytest.raises(DropReadError, match=rf"^{re.escape(name)}: is not valid "
                                            rf"{feed.encoding} \(byte 0x.. at line"):
        read_drop_isolated(many, name, feed)


def test_a_bom_file_in_another_encoding_names_the_byte_at_fault():
    data = b"\xef\xbb\xbfid,name\n1,\xff\xfeA\n2,\xe9\n3,\xe9\n"
    with pytest.raises(DropReadError, match=r"is not valid utf-8-sig \(byte 0xff at line 2\)"):
        read_drop(data, "s.csv", _feed(SUSPECTS, encoding="utf-8-sig"))


@pytest.mark.parametrize(("feed", "name", "text"), [
    (SUSPECTS, "s.csv", '编号,姓名\rGA-1,"王小明"\rGA-2,李四\r'),
    (DETAINEES, "d.jsonl", '{"case_no": "M-1"}\r{"case_no": "M-2"}\r'),
])
def test_lines_ended_by_cr_alone_are_lines(feed, name, text):
    """Excel for Mac wrote CSV with CR line ends until 2016: the file was read as one line (a
    header of every row's fields) and refused for a repeated column name."""
    read = read_drop_isolated(text.encode("gb18030" if name == "s.csv" else "utf-8"), name, feed)
    assert read.frame.height == 2 and read.bad.height == 0
    assert read.lines["line"].to_list() == ([2, 3] if name == "s.csv" else [1, 2])


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_a_file_with_a_utf16_byte_order_mark_is_read_as_utf16(codec):
    """Excel's "Unicode Text" is UTF-16 with a byte order mark: the file was refused as
    "binary, not text" (its NUL bytes) whatever the feed's encoding."""
    text = "编号,姓名\nGA-1,王小明\nGA-2,สมชาย\n"
    data = text.encode(codec) if codec == "utf-16" else b"\xfe\xff" + text.encode(codec)
    read = read_drop_isolated(data, "s.csv", SUSPECTS)
    assert read.frame.rows() == [("GA-1", "王小明", 1), ("GA-2", "สมชาย", 2)]
    with pytest.raises(DropReadError, match=r"s\.csv: starts as UTF-16 text but is not valid"):
        # a lone surrogate at the end
        read_drop(data + "\ud800".encode(codec, "surrogatepass")[-2:], "s.csv", SUSPECTS)


def test_wrong_encoding_names_line_and_what_to_do():
    # a GB18030 file delivered to a feed that promised UTF-8
    data = "id,name\n1,Aung\n2,王小明\n".encode("gb18030")
    with pytest.raises(DropReadError, match=r"x\.csv: is not valid utf-8 \(byte 0x.. at line 3\)"
                                            r".*re-send"):
        read_drop(data, "x.csv", _feed(SUSPECTS, encoding="utf-8"))


def test_header_only_file_reads_as_zero_rows():
    frame = read_drop("编号,姓名\n".encode("gb18030"), "s.csv", SUSPECTS)
    assert (frame.columns, frame.height) == (["编号", "姓名", "source_row"], 0)


def test_empty_file():
    with pytest.raises(DropReadError, match=r"s\.csv: is empty"):
        read_drop(b"", "s.csv", SUSPECTS)


def test_duplicate_column_names():
    data = "编号,姓名,姓名\nXS1,王,李\n".encode("gb18030")
    with pytest.raises(DropReadError, match=r"column '姓名' appears twice \(positions 2 and 3\)"):
        read_drop(data, "s.csv", SUSPECTS)


def test_ten_megabytes_in_one_field_quarantines_that_line_only():
    big = "A" * 10_000_000
    data = f"编号,姓名\nXS1,{big}\nXS2,李娜\n".encode("gb18030")
    read = read_drop_isolated(data, "s.csv", SUSPECTS)
    assert read.frame.rows() == [("XS2", "李娜", 2)]
    assert read.bad.select("source_row", "line", "expectation", "column", "reason").rows() == [
        (1, 2, "read_cell_too_long", "姓名",
         "line 2: 姓名 is 10000000 characters long, more than the 4,096 the feed allows")]
    assert read.bad["姓名"].str.len_chars().to_list() == [10_000_000]  # kept whole: nothing lost


def test_wrong_format_for_feed():
    with pytest.raises(DropReadError, match=r"a xlsx file, but feed cn_mps/suspects accepts csv"):
        read_drop(b"PK\x03\x04", "s.xlsx", SUSPECTS)


# --- line-level isolation: the bad line goes to quarantine, the rest of the drop is read -------


def _bad(read) -> list[tuple]:
    return read.bad.select("source_row", "line", "expectation", "reason").rows()


def test_ragged_csv_rows_are_quarantined_with_their_physical_line():
    data = ("编号,姓名,性别\n"
            "XS1,王伟,男\n"
            "XS2,李娜\n"  # line 3: a field short
            '"XS3","张\n伟",男\n'  # lines 4-5: one record, a quoted line break
            "XS4,赵六,男,多余\n"  # line 6: a field too many
            "\n"  # line 7: blank, no record
            "XS5,钱七,女\n").encode("gb18030")
    read = read_drop_isolated(data, "s.csv", SUSPECTS)
    assert read.frame.rows() == [("XS1", "王伟", "男", 1), ("XS3", "张\n伟", "男", 3),
                                 ("XS5", "钱七", "女", 5)]
    assert read.lines.rows() == [(1, 2), (3, 4), (5, 8)]
    assert _bad(read) == [
        (2, 3, "read_field_count",
         "line 3: 2 fields, the header has 3; check the delimiter ',' and the quoting"),
        (4, 6, "read_field_count",
         "line 6: 4 fields, the header has 3; check the delimiter ',' and the quoting"),
    ]
    assert read.bad["raw_line"].to_list() == ["XS2,李娜", "XS4,赵六,男,多余"]  # as written


def test_a_stray_quote_costs_its_own_line_only():
    data = ('编号,姓名\nXS1,王伟\nXS2,5"2 tall\nXS3,李娜\nXS4,张伟\n').encode("gb18030")
    read = read_drop_isolated(data, "s.csv", SUSPECTS)
    assert read.frame["编号"].to_list() == ["XS1", "XS3", "XS4"]
    assert _bad(read) == [(2, 3, "read_unclosed_quote",
                           'line 3: an odd number of " (a quoted field that never closes, or '
                           "a stray quote)")]


def test_nul_byte_inside_a_csv_field_quarantines_the_line():
    data = "编号,姓名\nXS1,王\x00伟\nXS2,李娜\n".encode("gb18030")
    read = read_drop_isolated(data, "s.csv", SUSPECTS)
    assert read.frame["编号"].to_list() == ["XS2"]
    assert _bad(read) == [(1, 2, "read_nul_byte", "line 2: a NUL byte inside a field")]


def test_mostly_nul_bytes_is_a_binary_file_rejected_whole():
    data = "id,name\n1,Aung\n".encode("utf-16-le") * 20  # valid UTF-8 bytes, half NULs
    with pytest.raises(DropReadError, match=r"s\.csv: is binary, not a CSV text file"):
        read_drop_isolated(data, "s.csv", _feed(SUSPECTS, encoding="utf-8"))


def test_jsonl_with_two_malformed_lines_among_118_reads_116():
    lines = [json.dumps({"case_no": f"MP-{i:03d}", "name": "Aung Aung"}) for i in range(118)]
    lines[9] = '{"case_no": "MP-009", "name": "Aung'  # line 10: cut off mid-string
    lines[60] = "case_no=MP-060"  # line 61: not JSON at all
    read = read_drop_isolated(("\n".join(lines) + "\n").encode(), "d.jsonl", DETAINEES)
    assert read.frame.height == 116
    assert "MP-009" not in read.frame["case_no"] and "MP-061" in read.frame["case_no"]
    assert read.bad.select("source_row", "line", "expectation").rows() == [
        (10, 10, "read_malformed_json"), (61, 61, "read_malformed_json")]
    assert read.bad["reason"][0].startswith("line 10: not valid JSON (Unterminated string")
    assert read.bad["raw_line"].to_list() == [lines[9], lines[60]]


def test_jsonl_non_object_and_nul_lines():
    data = (b'{"case_no": "M-1"}\n\n[1, 2]\n{"case_no": "M-2", "name": "a\\u0000b"}\n'
            b'{"case_no": "M-3"}\n')
    read = read_drop_isolated(data, "d.jsonl", DETAINEES)
    assert read.frame.rows() == [("M-1", None, 1), ("M-3", None, 4)]
    assert read.lines.rows() == [(1, 1), (4, 5)]  # the blank line 2 is no record
    assert _bad(read) == [(2, 3, "read_malformed_json", "line 3: a JSON list, not an object"),
                          (3, 4, "read_nul_byte", "line 4: name holds a NUL byte")]


@pytest.mark.parametrize(("line", "reason"), [
    ('{"id": ' + "[" * 200_000 + "]" * 200_000 + "}", "JSON nested too deeply to read"),
    ('{"id": ' + "9" * 5000 + "}", "a value that cannot be read (Exceeds the limit (4300 digits) "
                                  "for integer string conversion: value has 5000 digits)"),
    ('{"id": NaN}', "a value the JSON reader refuses (NaN, Infinity or a number out of range)"),
    ('{"id": -Infinity}', "a value the JSON reader refuses (NaN, Infinity or a number out of "
                          "range)"),
    ('{"id": 1e999999}', "a value the JSON reader refuses (NaN, Infinity or a number out of "
                         "range)"),
])
def test_one_json_line_either_parser_refuses_is_quarantined_not_the_drop(line, reason):
    """Each of these lines rejected the whole drop: json.loads raises RecursionError or a plain
    ValueError on the first two (only JSONDecodeError was caught), and takes the last three,
    which Polars refuses, so Polars then refused the good lines read with them."""
    lines = [json.dumps({"id": str(i), "name": f"P{i}"}) for i in range(4)]
    lines[2:2] = [line]
    lines.append(line)
    read = read_drop_isolated(("\n".join(lines) + "\n").encode(), "d.jsonl", DETAINEES)
    assert read.frame.height == 4
    assert _bad(read) == [(3, 3, "read_malformed_json", f"line 3: {reason}"),
                          (6, 6, "read_malformed_json", f"line 6: {reason}")]


def test_jsonl_bad_lines_are_found_in_every_block_of_a_large_file():
    """Polars reads a broken file's lines in blocks and Python judges only the lines of a block
    it refuses: every bad line is found wherever it falls (first and last line of a block, two
    in one block, the file's first and last line) with the reason the per-line check gives."""
    from fusionlake.pipeline.read import _JSON_BLOCK, _json_object

    n = 3 * _JSON_BLOCK + 17
    lines = [json.dumps({"case_no": f"MP-{i:05d}", "name": "Aung Aung"}) for i in range(n)]
    planted = {0: "not json", _JSON_BLOCK - 1: "[1, 2]", _JSON_BLOCK: '"a string"',
               _JSON_BLOCK + 5: '{"case_no": "cut', _JSON_BLOCK + 6: "null",
               2 * _JSON_BLOCK + 3: '{"case_no": "MP", "name": "a\u0000b"}', n - 1: "42"}
    for i, text in planted.items():
        lines[i] = text
    read = read_drop_isolated(("\n".join(lines) + "\n").encode(), "d.jsonl", DETAINEES)
    assert read.frame.height == n - len(planted)
    assert read.bad["source_row"].to_list() == [i + 1 for i in sorted(planted)]
    # the NUL is found by the field check once the line reads; every other by the line check
    by_row = dict(zip(read.bad["source_row"], read.bad["reason"], strict=True))
    for i, text in planted.items():
        why = _json_object(text) or "name holds a NUL byte"
        assert by_row[i + 1] == f"line {i + 1}: {why}"
    assert read.frame["case_no"].to_list() == [
        f"MP-{i:05d}" for i in range(n) if i not in planted]


def test_over_long_cell_in_xlsx_names_its_sheet_row():
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["ลำดับที่", "ชื่อ-นามสกุล"])
    sheet.write_row(1, 0, ["1", "LIU ZIBO"])
    sheet.write_row(2, 0, ["2", "B" * 5000])
    book.close()
    read = read_drop_isolated(buf.getvalue(), "detentions.xlsx", DETENTIONS)
    assert read.frame.rows() == [("1", "LIU ZIBO", 1)]
    assert _bad(read) == [(2, 3, "read_cell_too_long", "line 3: ชื่อ-นามสกุล is 5000 characters "
                           "long, more than the 4,096 the feed allows")]


def test_a_column_named_like_the_lakes_row_numbers_is_refused():
    with pytest.raises(DropReadError, match="reserves for row numbers"):
        read_drop(b"id,source_line\n1,2\n", "x.csv", _feed(SUSPECTS, encoding="utf-8"))
