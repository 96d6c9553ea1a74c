"""A case sheet's rows as worksheet XML, built by polars a column at a time, and spliced
into the workbook xlsxwriter wrote with the sheet's header, formats, drop-down, frozen
pane and autofilter.

Why: writing the cells one by one through xlsxwriter cost about 8 us per cell, 80 % of
it xlsxwriter's own per-cell code, and the 1M round's workbooks hold 7.25M cells (see
benchmarks/workbook_writers.py). Here a sheet's XML is a few string expressions over its
whole frame.

The cells are what xlsxwriter writes for write_string / write_number / write_datetime,
except that text is an inline string (t="inlineStr", as xlsxwriter's constant_memory mode
writes it) instead of an entry of the shared-strings table:
- text: XML-escaped (&, <, >), control characters as Excel's _xHHHH_ escape (and a
  literal _xHHHH_ protected as _x005F_xHHHH_), xml:space="preserve" when it starts or
  ends with white space;
- numbers: the shortest text that reads back as the same double; NaN and infinities
  are left empty (xlsxwriter refuses them);
- dates: Excel's serial day (1900 system, with Excel's 29 February 1900).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

import polars as pl
from xlsxwriter.utility import xl_col_to_name

# Characters Excel stores as _xHHHH_ (tab and line feed stay as they are).
CONTROL = [chr(c) for c in range(0x20) if chr(c) not in "\t\n"] + ["\ufffe", "\uffff"]
CONTROL_PATTERN = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in CONTROL) + "]|_x[0-9a-fA-F]{4}_"
EDGE_SPACE = r"^\s|\s$"
EXCEL_EPOCH = pl.date(1899, 12, 31)
# Deflate level of the saved package. Measured on 247 MB of case sheets' XML: level 6
# (zipfile's default) 2.06 s and 25.3 MB, level 3 0.98 s and 28.8 MB, level 1 0.84 s and 31.1 MB.
COMPRESS_LEVEL = 3
EXCEL_MAX_TEXT = 32_767  # characters in a cell; xlsxwriter cuts longer text there too


@dataclass(frozen=True)
class CellStyle:
    """The xf index (the `s` attribute) of each kind of cell; 0 is Excel's default."""
    text: int
    quoted: int  # quotePrefix: the formula-injection guard
    date: int
    number: int
    probability: int


def style_attribute(xf: int) -> str:
    return f' s="{xf}"' if xf else ""  # xlsxwriter leaves the default style out


@dataclass(frozen=True)
class TextFacts:
    """What a text column holds anywhere, so its cells pay only for the escapes it needs."""
    markup: bool  # &, < or >
    special: bool  # control characters or a literal _xHHHH_
    edge_space: bool  # a value starting or ending with white space

    @classmethod
    def of(cls, column: pl.Series) -> "TextFacts":
        found = column.to_frame("v").select(
            markup=pl.col("v").str.contains("[&<>]").any(),
            special=pl.col("v").str.contains(CONTROL_PATTERN).any(),
            edge_space=pl.col("v").str.contains(EDGE_SPACE).any(),
        )
        return cls(**found.row(0, named=True))


def escaped_text(value: pl.Expr, found: TextFacts) -> pl.Expr:
    text = value
    if found.markup:
        text = text.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
        text = text.str.replace_all(">", "&gt;", literal=True)
    if found.special:
        text = text.str.replace_all(r"(_x[0-9a-fA-F]{4}_)", "_x005F$1")
        for char in CONTROL:  # a loop over 33 characters, each a vectorized replace
            text = text.str.replace_all(char, f"_x{ord(char):04X}_", literal=True)
    return text


def text_cell(ref: pl.Expr, value: pl.Expr, xf: pl.Expr, found: TextFacts) -> pl.Expr:
    text = escaped_text(value, found)
    preserve = pl.lit("")
    if found.edge_space:  # tested after the escapes, as xlsxwriter does: "a\r" is "a_x000D_" by then
        preserve = pl.when(text.str.contains(EDGE_SPACE)).then(pl.lit(' xml:space="preserve"')).otherwise(pl.lit(""))
    return pl.concat_str(
        [pl.lit('<c r="'), ref, pl.lit('"'), xf, pl.lit(' t="inlineStr"><is><t'), preserve, pl.lit(">"),
         text, pl.lit("</t></is></c>")]
    )


def number_cell(ref: pl.Expr, number: pl.Expr, xf: int) -> pl.Expr:
    return pl.concat_str([pl.lit('<c r="'), ref, pl.lit(f'"{style_attribute(xf)}><v>'), number, pl.lit("</v></c>")])


def excel_serial(value: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Date:
        days = (value - EXCEL_EPOCH).dt.total_days()
        return pl.when(days > 59).then(days + 1).otherwise(days).cast(pl.String)
    microseconds = (value.dt.replace_time_zone(None) - EXCEL_EPOCH.cast(pl.Datetime("us"))).dt.total_microseconds()
    serial = microseconds / 86_400_000_000
    return pl.when(serial > 59).then(serial + 1).otherwise(serial).cast(pl.String)


def cell_expression(frame: pl.DataFrame, source: str, kind: str, letter: str, style: CellStyle,
                    row_number: pl.Expr, risky_prefixes: tuple[str, ...]) -> pl.Expr:
    """The <c> element of one column for every row (null where the value is empty)."""
    value = pl.col(source)
    dtype = frame.schema[source]
    ref = pl.lit(letter) + row_number
    if kind == "date" and (dtype == pl.Date or isinstance(dtype, pl.Datetime)):
        return number_cell(ref, excel_serial(value, dtype), style.date)
    if kind in ("number", "probability") and dtype.is_numeric():
        finite = value.is_finite() if dtype.is_float() else pl.lit(True)
        number = pl.when(finite).then(value.cast(pl.String))
        return number_cell(ref, number, style.number if kind == "number" else style.probability)
    text = value.cast(pl.String).str.slice(0, EXCEL_MAX_TEXT)
    found = TextFacts.of(frame.get_column(source).cast(pl.String).str.slice(0, EXCEL_MAX_TEXT))
    risky = text.str.contains("^[" + "".join(re.escape(p) for p in risky_prefixes) + "]")
    # The guard (see xlsx.py): a risky text gets the quotePrefix style, and a leading
    # apostrophe unless it is a key column, which must keep its exact value.
    shown = text if kind == "key" else pl.when(risky).then(pl.lit("'") + text).otherwise(text)
    xf = pl.when(risky).then(pl.lit(style_attribute(style.quoted))).otherwise(pl.lit(style_attribute(style.text)))
    return text_cell(ref, shown, xf, found)


def row_xml(frame: pl.DataFrame, columns: list[tuple[int, str, str]], style: CellStyle,
            risky_prefixes: tuple[str, ...], row_number: pl.Expr) -> pl.Expr:
    """The <row> element of each row of frame, numbered by row_number (1-based, as text).
    columns: (0-based column, source column of frame, kind) for every column with a source."""
    cells = [cell_expression(frame, source, kind, xl_col_to_name(col), style, row_number, risky_prefixes)
             for col, source, kind in columns]
    return pl.concat_str([pl.lit('<row r="'), row_number, pl.lit('">'), *cells, pl.lit("</row>")], ignore_nulls=True)


@dataclass(frozen=True)
class SheetBody:
    """Rows to splice into worksheet number `index` (1-based, the order sheets were added),
    whose last cell is (last_row, last_col), both 0-based."""
    index: int
    xml: bytes
    last_row: int
    last_col: int
    # The sheet's XML without its rows when it is not the one xlsxwriter wrote for this
    # very sheet (a frame written once for every sheet like it: xlsx.case_sheet_frame).
    frame: bytes | None = None


DIMENSION = re.compile(rb'<dimension ref="[^"]*"/>')


def spliced_sheet(xml: bytes, body: SheetBody) -> bytes:
    if xml.count(b"</sheetData>") != 1 or not DIMENSION.search(xml):
        raise RuntimeError(f"workbooks: worksheet {body.index} has no single sheetData to fill (xlsxwriter changed?)")
    dimension = f'<dimension ref="A1:{xl_col_to_name(body.last_col)}{body.last_row + 1}"/>'.encode()
    xml = DIMENSION.sub(dimension, xml, count=1)
    return xml.replace(b"</sheetData>", body.xml + b"</sheetData>")


def write_spliced(package: bytes, bodies: list[SheetBody], target) -> None:
    """Copy the xlsx package to target (a path or a binary file), every entry with the
    same name, time stamp and compression, the worksheets of `bodies` with their rows."""
    by_name = {f"xl/worksheets/sheet{body.index}.xml": body for body in bodies}
    with (zipfile.ZipFile(io.BytesIO(package)) as source,
          zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as out):
        for info in source.infolist():
            data = source.read(info)
            if info.filename in by_name:
                body = by_name.pop(info.filename)
                data = spliced_sheet(body.frame if body.frame is not None else data, body)
            entry = zipfile.ZipInfo(info.filename, info.date_time)
            entry.compress_type, entry.external_attr = info.compress_type, info.external_attr
            out.writestr(entry, data, compresslevel=COMPRESS_LEVEL)
    if by_name:
        raise RuntimeError(f"workbooks: no worksheet {sorted(by_name)} in the package")
