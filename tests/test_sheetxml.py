"""The case rows' XML against xlsxwriter's own cells for the same values: text (escapes,
control characters, white space), dates (Excel's 1900 system) and numbers."""

import datetime as dt
import io
import math
import re
import zipfile

import polars as pl
import xlsxwriter

from pipeline.report.sheetxml import CellStyle, SheetBody, row_xml, write_spliced

STYLE = CellStyle(text=0, quoted=1, date=2, number=3, probability=4)
TEXTS = ["plain", "a & b <c> d", " leading", "trailing ", "tab\tinside", "line\nbreak", "bell\x07",
         "cr\r", "_x0041_ literal", "=HYPERLINK(\"x\")", "@SUM(A1)", "-2+3", "", "ünïcødé 日本", "odd\ufffe"]
DATES = [dt.date(1899, 12, 30), dt.date(1900, 1, 1), dt.date(1900, 2, 28), dt.date(1900, 3, 1),
         dt.date(1960, 5, 5), dt.date(2026, 11, 21)]
NUMBERS = [0.5, 1.0, 0.1234567890123456789, 1e-10, 123456789.25, float("nan"), float("inf")]


def cells(xml: str) -> list[str]:
    return re.findall(r"<c [^>]*?(?:/>|>.*?</c>)", xml)


def xlsxwriter_sheet(write) -> str:
    """Sheet 1's XML as xlsxwriter writes it with inline strings (constant_memory), with the
    formats in STYLE's order."""
    package = io.BytesIO()
    book = xlsxwriter.Workbook(package, {"constant_memory": True})
    formats = {"quoted": book.add_format({"quote_prefix": True}), "date": book.add_format({"num_format": "yyyy-mm-dd"}),
               "number": book.add_format({"num_format": "0.000"})}
    assert [f._get_xf_index() for f in formats.values()] == [STYLE.quoted, STYLE.date, STYLE.number]
    write(book.add_worksheet(), formats)
    book.close()
    return zipfile.ZipFile(package).read("xl/worksheets/sheet1.xml").decode()


def ours(frame: pl.DataFrame, kind: str) -> str:
    rows = frame.select(row_xml(frame, [(0, "value", kind)], STYLE, ("=", "+", "-", "@", "\t", "\r"),
                                pl.int_range(2, frame.height + 2).cast(pl.String)).str.join(""))
    return rows.item()


def test_text_cells_are_xlsxwriters():
    def write(sheet, formats):
        for row, text in enumerate(TEXTS, start=1):
            sheet.write_string(row, 0, text, formats["quoted"] if text.startswith(("=", "+", "-", "@", "\t", "\r")) else None)
    # A key column: the value as it is, the quotePrefix style on risky text.
    assert cells(ours(pl.DataFrame({"value": TEXTS}), "key")) == cells(xlsxwriter_sheet(write))


def test_risky_text_gets_an_apostrophe_unless_key():
    frame = pl.DataFrame({"value": ["=1+1", "ok", None]})
    text = ours(frame, "text")
    assert cells(text) == ['<c r="A2" s="1" t="inlineStr"><is><t>\'=1+1</t></is></c>',
                           '<c r="A3" t="inlineStr"><is><t>ok</t></is></c>']  # nothing for a null
    assert "'=1+1" not in ours(frame, "key")


def test_date_cells_are_xlsxwriters():
    def write(sheet, formats):
        for row, day in enumerate(DATES, start=1):
            sheet.write_datetime(row, 0, day, formats["date"])
    assert cells(ours(pl.DataFrame({"value": DATES}), "date")) == cells(xlsxwriter_sheet(write))


def test_number_cells_read_back_as_the_same_doubles():
    """Exactly the doubles written (xlsxwriter's %.16G keeps 16 digits, so it may not)."""
    def write(sheet, formats):
        for row, number in enumerate(NUMBERS, start=1):
            if math.isfinite(number):
                sheet.write_number(row, 0, number, formats["number"])
    value = re.compile(r'<c r="(A\d+)" s="3"><v>([^<]*)</v></c>')
    expected = {ref: float(v) for ref, v in value.findall(xlsxwriter_sheet(write))}
    found = {ref: float(v) for ref, v in value.findall(ours(pl.DataFrame({"value": NUMBERS}), "number"))}
    assert found == {f"A{row}": n for row, n in enumerate(NUMBERS, start=2) if math.isfinite(n)}  # NaN, inf: empty
    assert found.keys() == expected.keys() and all(math.isclose(found[k], expected[k], rel_tol=1e-15) for k in found)


def test_splice_fills_the_sheet_and_its_dimension(tmp_path):
    package = io.BytesIO()
    book = xlsxwriter.Workbook(package)
    book.add_worksheet("Ringkasan").write_string(0, 0, "judul")
    book.add_worksheet("Kasus").write_string(0, 1, "header")
    book.close()
    frame = pl.DataFrame({"value": ["x", "y"]})
    body = SheetBody(index=2, xml=ours(frame, "text").encode(), last_row=2, last_col=1)
    write_spliced(package.getvalue(), [body], tmp_path / "book.xlsx")
    sheets = pl.read_excel(tmp_path / "book.xlsx", sheet_id=0, engine="calamine", has_header=False)
    assert sheets["Kasus"].rows() == [(None, "header"), ("x", None), ("y", None)]
    assert '<dimension ref="A1:B3"/>' in zipfile.ZipFile(tmp_path / "book.xlsx").read("xl/worksheets/sheet2.xml").decode()
