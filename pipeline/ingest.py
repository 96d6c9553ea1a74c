"""Ingest: read an extract (CSV, Parquet, XLSX) as text, map its columns, normalise,
quarantine what cannot be parsed, and write staging Parquet.

Every column is read as text: a NIK must never pass through a float. Each input row
ends up either in the staging table or in the quarantine table with its line number
and reason, never dropped.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline import contract, csvread
from pipeline.csvread import REJECT_SCHEMA, CsvPlan, CsvRead, column_names, plan_csv, read_csv_chunk, read_csv_records
from pipeline.errors import InputError, ReconciliationError

CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
XLSX_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
PARQUET_SUFFIXES = {".parquet", ".pq"}

EARLIEST_BIRTH = "1900-01-01"


@dataclass
class IngestResult:
    kind: str
    source: str
    file_format: str
    encoding: str | None
    delimiter: str | None
    column_mapping: dict[str, str]
    rows_in: int  # input records, counted independently of the parser
    rows_staged: int
    rows_quarantined: int
    counts: dict  # the independent count: physical lines (CSV) or rows (Parquet, XLSX) and how they add up
    warnings: list[str]
    staging_path: str
    quarantine_path: str

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- reading


def check_input_file(path: Path, label: str) -> None:
    """Stop before any work when an extract cannot be opened as a file of a known type."""
    if not path.exists():
        raise InputError(f"{label} {path}: file not found; check the path.")
    if path.is_dir():
        raise InputError(f"{label} {path}: is a folder; give the extract file itself (CSV, Parquet or XLSX).")
    if path.suffix.lower() not in CSV_SUFFIXES | PARQUET_SUFFIXES | XLSX_SUFFIXES:
        raise InputError(
            f"{label} {path}: unsupported file type {path.suffix!r}; use CSV (.csv), Parquet (.parquet) or Excel (.xlsx)."
        )
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise InputError(f"{label} {path}: cannot be opened ({error.strerror}); check its permissions.") from None
    if path.stat().st_size == 0:
        raise InputError(f"{label} {path}: the file is empty (0 bytes); it needs a header line and data rows. Check that the export finished.")


def _numbered(frame: pl.DataFrame, first_line: int) -> pl.DataFrame:
    """_line: where a user finds the row (sheet row, Parquet row); _lines: lines it spans."""
    return frame.with_columns(
        _line=pl.int_range(first_line, first_line + pl.len(), dtype=pl.Int64), _lines=pl.lit(1, dtype=pl.Int64)
    )


def _reject_frame(lines: list[int] | pl.Series, reason: str) -> pl.DataFrame:
    return pl.DataFrame({"line": lines}, schema={"line": pl.Int64}).with_columns(
        lines=pl.lit(1, dtype=pl.Int64), reason=pl.lit(reason), raw=pl.lit(None, dtype=pl.String)
    )


def alias_is_nik(name: str) -> bool:
    nik_aliases = {contract.alias_key(a) for spec in contract.columns("dtks") if spec.name == "nik" for a in spec.aliases}
    return contract.alias_key(name) in nik_aliases | {"NIK"}


def alias_of(name: str, canonical: str) -> bool:
    return any(contract.alias_key(name) in {contract.alias_key(a) for a in (spec.name, *spec.aliases)}
               for kind in contract.EXTRACT_KINDS for spec in contract.columns(kind) if spec.name == canonical)


def _read_csv(path: Path, kind: str, label: str, work_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    read = read_csv_records(path, label, work_dir)
    refuse_repeated_headers(read.header, kind, path, label)
    rows, rejects = _without_repeated_header(read)
    info = {"file_format": "csv", "encoding": read.encoding, "delimiter": read.delimiter, "counts": read.counts,
            "warnings": read.warnings}
    return rows, rejects, info


def _without_repeated_header(read: CsvRead) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows and rejects of a CSV reading, less the header repeated below itself."""
    rows = read.rows
    # The header repeated below itself (two exports pasted together) is not a person.
    names = [c for c in rows.columns if not c.startswith("_")]
    repeated = pl.all_horizontal([pl.col(c).str.strip_chars().fill_null("") == h.strip() for c, h in zip(names, read.header)])
    header_again = rows.filter(repeated)
    rejects = read.rejects
    if header_again.height:
        rows = rows.filter(~repeated)
        rejects = pl.concat([rejects, header_again.select(
            line=pl.col("_line"), lines=pl.col("_lines"), reason=pl.lit("baris judul kolom terulang (dua berkas digabung?)"),
            raw=pl.lit(None, dtype=pl.String),
        )]).sort("line")
    return rows, rejects


def _parquet_as_text(frame: pl.DataFrame, path: Path, label: str) -> tuple[pl.DataFrame, dict[str, int]]:
    """Every column of a Parquet extract (or a chunk of one) as text, and per column of KK
    numbers stored as floats the values dropped (they may have lost digits)."""
    dropped: dict[str, int] = {}
    columns = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype.is_float():
            if alias_is_nik(name):
                raise InputError(
                    f"{label} {path}: column {name!r} stores NIKs as floating-point numbers, which have already "
                    "lost digits. Export the extract again with NIK as text."
                )
            if alias_of(name, "no_kk"):
                # 16 digits do not survive float64 above 2^53: a KK number read from a float cannot be trusted.
                dropped[name] = int(frame[name].is_not_null().sum())
                column = pl.lit(None, dtype=pl.String)
            else:
                # Whole numbers (a 10-digit desa code is exact in float64) lose the ".0" a cast would add.
                integral = column.is_finite() & (column == column.round(0)) & (column.abs() < 2**53)
                column = pl.when(integral).then(column.cast(pl.Int64).cast(pl.String)).otherwise(column.cast(pl.String))
        elif dtype != pl.String:
            column = column.cast(pl.String)
        columns.append(column.alias(name))
    return frame.select(columns), dropped


def _float_kk_warnings(dropped: dict[str, int], path: Path, label: str) -> list[str]:
    return [
        f"{label} {path.name}: column {name!r} stores KK numbers as floating-point numbers; its {present:,} "
        "values were ignored (they may have lost digits). Export no_kk as text to use them."
        for name, present in dropped.items()
    ]


def _damaged_parquet(path: Path, label: str) -> InputError:
    # pyarrow and polars raise their own types; their text is not passed on
    return InputError(f"{label} {path}: is not a complete Parquet file (cut short or damaged); copy or export it again.")


def _open_parquet(path: Path, label: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception:
        raise _damaged_parquet(path, label) from None


def _parquet_info(path: Path, label: str, rows_read: int, row_count: int, dropped: dict[str, int]) -> dict:
    """The file's facts once every row is read; refuses a file whose rows do not add up to
    its footer's count (the independent count)."""
    if rows_read != row_count:
        raise ReconciliationError(f"{label} {path}: {rows_read} rows read but the file's footer says {row_count}; copy it again.")
    return {"file_format": "parquet", "encoding": None, "delimiter": None, "warnings": _float_kk_warnings(dropped, path, label),
            "counts": {"rows_in_footer": row_count, "records": row_count}}


def _read_parquet(path: Path, label: str) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    row_count = _open_parquet(path, label).metadata.num_rows
    try:
        frame = pl.read_parquet(path)
    except Exception:
        raise _damaged_parquet(path, label) from None
    frame, dropped = _parquet_as_text(frame, path, label)
    info = _parquet_info(path, label, frame.height, row_count, dropped)
    return _numbered(frame, first_line=1), pl.DataFrame(schema=REJECT_SCHEMA), info


def _first_sheet_xml(path: Path) -> bytes:
    """The XML of the workbook's first sheet, located through workbook.xml and its relations."""
    import zipfile

    with zipfile.ZipFile(path) as book:
        names = set(book.namelist())
        target = "xl/worksheets/sheet1.xml"
        if "xl/workbook.xml" in names and "xl/_rels/workbook.xml.rels" in names:
            sheet = re.search(rb"<(?:\w+:)?sheet\b[^>]*?\br:id=\"([^\"]+)\"", book.read("xl/workbook.xml"))
            if sheet:
                for rel in re.finditer(rb"<Relationship\b[^>]*>", book.read("xl/_rels/workbook.xml.rels")):
                    if b'Id="' + sheet.group(1) + b'"' in rel.group(0):
                        found = re.search(rb'Target="([^"]+)"', rel.group(0))
                        if found:
                            relative = found.group(1).decode()
                            target = relative.lstrip("/") if relative.startswith("/") else "xl/" + relative
        return book.read(target)


XML_BLOCK = 1 << 24


def _rows_with_values(xml: bytes) -> tuple[int, int]:
    """How many <row> elements hold a value (<v> or inline <is>), and the number of the
    first: numpy over the XML's bytes, in blocks that start at a <row> tag."""
    count, first_row, start = 0, 1, 0
    while start < len(xml):
        end = xml.find(b"<row", start + XML_BLOCK)
        end = len(xml) if end < 0 else end
        buf = np.frombuffer(xml, dtype=np.uint8, count=end - start, offset=start)
        tags = np.flatnonzero(buf == ord("<"))
        tags = tags[tags + 4 < len(buf)]
        after = [buf[tags + k] for k in range(1, 5)]
        rows = tags[(after[0] == ord("r")) & (after[1] == ord("o")) & (after[2] == ord("w"))
                    & np.isin(after[3], (32, ord(">"), ord("/")))]
        values = tags[((after[0] == ord("v")) & (after[1] == ord(">")))
                      | ((after[0] == ord("i")) & (after[1] == ord("s")) & (after[2] == ord(">")))]
        holding = np.unique(np.searchsorted(rows, values, side="right") - 1)
        holding = holding[holding >= 0]
        if count == 0 and len(holding):
            number = re.search(rb'\br="(\d+)"', xml[start + rows[holding[0]]: start + rows[holding[0]] + 200])
            first_row = int(number.group(1)) if number else 1
        count += len(holding)
        start = end
    return count, first_row


def _xlsx_facts(path: Path, nik_letters: list[str]) -> dict:
    """From the sheet's XML, independently of calamine: the rows holding a value, and the
    rows whose NIK cell is a number (Excel keeps 15 digits of a number; None when the
    cells carry no reference to look them up by)."""
    xml = _first_sheet_xml(path)
    if b"<sheetData" not in xml:  # tags written with a namespace prefix (<x:row>): drop it
        xml = re.sub(rb"<(/?)[A-Za-z_][\w.-]*:", rb"<\1", xml)
    rows_with_values, first_row = _rows_with_values(xml)
    numeric_nik: set[int] | None = set()
    for letter in nik_letters:
        cells = re.findall(rb'<c r="' + letter.encode() + rb'(\d+)"([^>]*?)>(?:<f>[^<]*</f>)?<v>', xml)
        if not cells and rows_with_values > 1:
            numeric_nik = None
            break
        numeric_nik |= {int(row) for row, attrs in cells if b't="' not in attrs or b't="n"' in attrs}
    return {"rows_with_values": rows_with_values, "first_row": first_row,
            "numeric_nik_rows": sorted(numeric_nik) if numeric_nik is not None else None}


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _read_xlsx(path: Path, kind: str, label: str) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    import fastexcel

    try:
        sheet = fastexcel.read_excel(str(path)).load_sheet(0, dtypes="string")
        frame = sheet.to_polars()
        nik_columns = [c for c in sheet.available_columns() if alias_is_nik(c.name)]
        nik_letters = [_column_letter(c.absolute_index) for c in nik_columns]
        facts = _xlsx_facts(path, nik_letters)
        if facts["numeric_nik_rows"] is None:
            # Cells without references: fall back to the column's type in the first 1,000 rows.
            guessed = fastexcel.read_excel(str(path)).load_sheet(0, n_rows=1000).available_columns()
            numeric_column = any(c.dtype in ("float", "int") for c in guessed if alias_is_nik(c.name))
            facts["numeric_nik_rows"] = list(range(facts["first_row"] + 1, facts["first_row"] + 1 + frame.height)) if numeric_column else []
    except Exception:  # calamine/fastexcel/zipfile raise their own types; their text may quote a cell
        raise InputError(
            f"{label} {path}: cannot read the workbook's first sheet (not an .xlsx workbook, damaged, or "
            "password-protected). Open it in Excel and save it again as .xlsx, or export CSV."
        ) from None
    # fastexcel names a repeated header "nik_1": seen as the repeat it is.
    names = [re.sub(r"_\d+$", "", c) if re.sub(r"_\d+$", "", c) in frame.columns else c for c in frame.columns]
    refuse_repeated_headers(names, kind, path, label)
    frame = _numbered(frame.select(pl.all().cast(pl.String)), first_line=facts["first_row"] + 1)
    blank = pl.all_horizontal([pl.col(c).is_null() for c in frame.columns if not c.startswith("_")])
    blank_rows = int(frame.select(blank.sum()).item()) if frame.width > 2 else 0
    frame = frame.filter(~blank)
    numeric = facts["numeric_nik_rows"]
    nik_rows = frame.filter(pl.any_horizontal([pl.col(c).is_not_null() for c in frame.columns if alias_is_nik(c)] or [pl.lit(False)]))
    if numeric and len(numeric) >= nik_rows.height:
        raise InputError(
            f"{label} {path}: column {nik_columns[0].name!r} holds NIKs as numbers; Excel keeps only 15 digits of a number, "
            "so the 16th digit is already lost. Format the column as Text in Excel (or export it as CSV "
            "from the source system) and run again."
        )
    rejects = _reject_frame(numeric, "NIK tersimpan sebagai angka di Excel (digit ke-16 sudah hilang); format kolom NIK sebagai Teks lalu isi ulang NIK baris ini")
    frame = frame.filter(~pl.col("_line").is_in(numeric))
    counts = {"rows_with_values": facts["rows_with_values"], "header_lines": 1, "blank_rows": blank_rows,
              "records": frame.height + rejects.height}
    if facts["rows_with_values"] != 1 + counts["records"]:
        raise ReconciliationError(
            f"{label} {path}: the sheet has {facts['rows_with_values'] - 1} rows with values below the header but "
            f"{counts['records']} were read; no outputs were published. Save the workbook again and run again."
        )
    info = {"file_format": "xlsx", "encoding": None, "delimiter": None, "counts": counts, "warnings": []}
    return frame, rejects, info


def read_extract(path: Path, kind: str, label: str, work_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Any supported extract as all-text rows (+ _line, _lines), the records rejected while
    reading (REJECT_SCHEMA), and facts about the file (format, encoding, counts, warnings)."""
    check_input_file(path, label)
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, kind, label, work_dir)
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path, label)
    return _read_xlsx(path, kind, label)


# --------------------------------------------------------------------------- columns


def refuse_repeated_headers(headers: list[str], kind: str, path: Path, label: str) -> None:
    """Two columns with one contract name (NIK twice) leave verval guessing which is meant."""
    keys = [contract.alias_key(h) for h in headers]
    known = {contract.alias_key(a): spec.name for spec in contract.columns(kind) for a in (spec.name, *spec.aliases)}
    for key in dict.fromkeys(keys):
        positions = [i + 1 for i, k in enumerate(keys) if k == key]
        if len(positions) > 1 and key in known:
            raise InputError(
                f"{label} {path}: the header names column {known[key]!r} {len(positions)} times (columns "
                f"{', '.join(map(str, positions))}); remove or rename the extra column(s) so verval knows which one to read."
            )


def map_columns(headers: list[str], kind: str, path: Path, label: str = "") -> dict[str, str]:
    """Canonical column -> header in the file. Raises InputError naming every missing
    required column before any work is done."""
    by_key: dict[str, str] = {}
    for header in headers:
        by_key.setdefault(contract.alias_key(header), header)
    mapping: dict[str, str] = {}
    for spec in contract.columns(kind):
        for candidate in (spec.name, *spec.aliases):
            header = by_key.get(contract.alias_key(candidate))
            if header is not None and header not in mapping.values():
                mapping[spec.name] = header
                break
    if "kode_wilayah" not in mapping and any(spec.name == "kode_wilayah" for spec in contract.columns(kind)):
        parts, _ = contract.split_region_parts()
        found = [next((by_key[contract.alias_key(a)] for a in aliases if contract.alias_key(a) in by_key), None) for aliases in parts]
        if all(found):
            mapping["kode_wilayah"] = "+".join(found)
    missing = [spec for spec in contract.columns(kind) if spec.required and spec.name not in mapping]
    if missing:
        wanted = "; ".join(f"{spec.name} (accepted headers: {', '.join(spec.aliases)})" for spec in missing)
        raise InputError(
            f"{label + ' ' if label else ''}{path}: the {kind} extract lacks required column(s): {wanted}. "
            f"Headers found: {', '.join(h for h in headers if not h.startswith('_'))}. "
            "Rename the column, or add its header as an alias in pipeline/rules/columns.toml."
        )
    return mapping


def _column_expr(mapping: dict[str, str], name: str) -> pl.Expr:
    source = mapping.get(name)
    if source is None:
        return pl.lit(None, dtype=pl.String).alias(name)
    if name == "kode_wilayah" and "+" in source:
        _, widths = contract.split_region_parts()
        digits = [
            pl.col(part).str.replace_all(r"\D", "").str.zfill(width).str.slice(-width)
            for part, width in zip(source.split("+"), widths)
        ]
        return pl.concat_str(digits).alias(name)
    return pl.col(source).alias(name)


# --------------------------------------------------------------------------- normalising


# A run of whitespace becomes one space. Only runs that differ from one space are matched:
# replacing every single space by itself (r"\s+") took 4 times as long (0.75 s against
# 0.18 s for 2.5M addresses).
IRREGULAR_WHITESPACE = r"\s{2,}|[\s&&[^ ]]"


def _clean_text(expr: pl.Expr) -> pl.Expr:
    cleaned = expr.str.strip_chars().str.replace_all(IRREGULAR_WHITESPACE, " ")
    return pl.when(cleaned == "").then(None).otherwise(cleaned)


def parse_date(expr: pl.Expr) -> pl.Expr:
    """A date as extracts write it (columns.toml [dates]), null when unreadable."""
    separators, formats, months = contract.date_formats()
    text = expr.str.strip_chars()
    head = text.str.slice(0, 10).str.replace_all("[" + re.escape("".join(separators)) + "]", "-")
    spelled = text.map_batches(lambda values: _spelled_dates(values, months), return_dtype=pl.Date)
    return pl.coalesce([head.str.to_date(fmt, strict=False) for fmt in formats] + [spelled])


def _spelled_dates(values: pl.Series, months: dict[str, int]) -> pl.Series:
    """5 JULI 1985, 17-Agu-1945: day, the month's name, year. Only the values holding a
    letter are parsed (a regex over every date of a registry cost as much as the rest)."""
    spelled = values.str.contains("[A-Za-z]").fill_null(False)
    result = pl.repeat(None, len(values), dtype=pl.Date, eager=True)
    if not spelled.any():
        return result
    parts = values.filter(spelled).str.extract_groups(r"^(\d{1,2})[ ./-]+([A-Za-z]+)\.?[ ./-]+(\d{4})$").struct.unnest()
    month = parts["2"].str.to_uppercase().replace_strict(months, default=None, return_dtype=pl.String)
    dates = pl.DataFrame({"d": parts["1"], "m": month, "y": parts["3"]}).select(
        pl.concat_str(["d", "m", "y"], separator="-").str.to_date("%d-%m-%Y", strict=False)).to_series()
    return result.scatter(spelled.arg_true(), dates)


def normalise_sex(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().str.to_uppercase().replace_strict(contract.sex_codes(), default=None)


def _reasons(reasons: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """Every reason that holds, joined; null when none does. The conditions make a bit mask
    and each mask its text: joining strings on every row, nearly all of them sound, took
    0.5 s per million rows."""
    mask = pl.sum_horizontal([cond.fill_null(False).cast(pl.UInt16) * (1 << i) for i, (cond, _) in enumerate(reasons)])
    texts = {m: "; ".join(text for i, (_, text) in enumerate(reasons) if m >> i & 1) for m in range(1, 1 << len(reasons))}
    return mask.replace_strict(texts, default=None, return_dtype=pl.String)


def _repeat_reasons(rows: pl.DataFrame) -> pl.DataFrame:
    """(_line, _repeat): a repeated id_dtks keeps its first row that is otherwise sound; the
    others get a reason naming the row kept. `rows` (id_dtks, _line, _reason) must hold
    every row of each repeated id (the whole file, or all the rows of its repeated ids)."""
    repeated = rows.select("id_dtks", "_line", "_reason").filter(pl.col("id_dtks").is_duplicated() & pl.col("id_dtks").is_not_null())
    kept = pl.col("_line").filter(pl.col("_reason").is_null()).min().over("id_dtks")
    return repeated.select(
        "_line",
        _repeat=pl.when(kept.is_null()).then(pl.lit("id_dtks ganda (tidak ada baris yang sah untuk id ini)"))
        .when(pl.col("_line") != kept).then(pl.format("id_dtks ganda (baris {} yang dipakai)", kept)),
    ).filter(pl.col("_repeat").is_not_null())


def _with_repeat_reasons(frame: pl.DataFrame, repeats: pl.DataFrame) -> pl.DataFrame:
    if repeats.height == 0:
        return frame
    return frame.join(repeats, on="_line", how="left", maintain_order="left").with_columns(
        _reason=pl.concat_str([pl.col("_repeat"), pl.col("_reason")], separator="; ", ignore_nulls=True).replace("", None)
    ).drop("_repeat")


def normalise_desil(expr: pl.Expr) -> pl.Expr:
    """1..10 as a small integer ("03", "3.0" and "Desil 3" read as 3); anything else is null
    (a row without a usable desil is not judged on it)."""
    number = expr.str.strip_chars().str.to_uppercase().str.replace(r"^DESIL\s*", "").str.replace(r"\.0+$", "")
    value = number.cast(pl.Int16, strict=False)
    return pl.when(value.is_between(1, 10)).then(value).cast(pl.Int8)


def normalise_list(raw: pl.DataFrame, mapping: dict[str, str], today: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """An ineligibility list: staging rows (nik, nama, tanggal_lahir, jenis as a declared
    type, sumber, tanggal) and quarantined rows with reasons."""
    names = [spec.name for spec in contract.columns("ineligible")]
    frame = raw.select(pl.col("_line"), pl.col("_lines"), *[_column_expr(mapping, n) for n in names])
    types = contract.ineligible_type_keys()
    born = parse_date(pl.col("tanggal_lahir"))
    frame = frame.with_columns(
        nik_raw=pl.col("nik"),
        nik=_clean_text(pl.col("nik").str.strip_chars().str.strip_prefix("'")),
        nama=_clean_text(pl.col("nama")).str.to_uppercase(),
        jenis_raw=_clean_text(pl.col("jenis")),
        jenis=contract.alias_key_expr(pl.col("jenis")).replace_strict(types, default=None),
        tanggal_lahir=born,
        sumber=_clean_text(pl.col("sumber")),
        tanggal=_clean_text(pl.col("tanggal")),
        _born_unreadable=pl.col("tanggal_lahir").str.strip_chars().ne("").fill_null(False)
        & ~born.is_between(pl.lit(EARLIEST_BIRTH).str.to_date(), pl.lit(today).str.to_date()).fill_null(False),
    )
    reasons = [
        (pl.col("nik").is_null(), "nik kosong"),
        (pl.col("nama").is_null(), "nama kosong"),
        (pl.col("jenis").is_null(), "jenis daftar tidak dikenal (jenis yang dikenal dan ejaannya ada di pipeline/rules/eligibility.toml)"),
        (pl.col("_born_unreadable"), "tanggal_lahir tidak terbaca atau di luar 1900-01-01 sampai hari ini (kosongkan atau pakai YYYY-MM-DD)"),
    ]
    frame = frame.with_columns(_reason=_reasons(reasons))
    staged = frame.filter(pl.col("_reason").is_null()).rename({"_line": "source_line"}).select(
        "source_line", "nik_raw", "nik", "nama", "tanggal_lahir", "jenis", "sumber", "tanggal", "_lines")
    quarantined = frame.filter(pl.col("_reason").is_not_null()).select(
        line=pl.col("_line"), lines=pl.col("_lines"), id_dtks=pl.lit(None, dtype=pl.String), reason=pl.col("_reason"),
        raw=pl.concat_str([pl.col(c).fill_null("") for c in ("nik_raw", "nama", "jenis_raw")], separator="|"),
    )
    return staged, quarantined


def normalise(raw: pl.DataFrame, kind: str, mapping: dict[str, str], today: str,
              repeats: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Staging rows and quarantined rows (with reasons) from the all-text input. DTKS:
    `repeats` are the repeated ids' reasons (_repeat_reasons) when raw is a chunk of the
    file; without them raw is the whole file and they are found in it."""
    if kind in contract.LIST_KINDS:
        return normalise_list(raw, mapping, today)
    frame = _normalised_rows(raw, kind, mapping, today)
    if kind == "dtks":
        frame = _with_repeat_reasons(frame, _repeat_reasons(frame) if repeats is None else repeats)
    return _split_rows(frame, kind)


def _normalised_rows(raw: pl.DataFrame, kind: str, mapping: dict[str, str], today: str) -> pl.DataFrame:
    """Every row normalised, with `_reason` (null when sound) but not yet the repeated ids'."""
    names = [spec.name for spec in contract.columns(kind)]
    frame = raw.select(pl.col("_line"), pl.col("_lines"), *[_column_expr(mapping, n) for n in names])
    frame = frame.with_columns(
        nik_raw=pl.col("nik"),
        # A leading apostrophe is how spreadsheets are told to keep a number as text.
        nik=pl.col("nik").str.strip_chars().str.strip_prefix("'").str.strip_chars(),
        no_kk=_clean_text(pl.col("no_kk").str.strip_chars().str.strip_prefix("'")),
        nama=_clean_text(pl.col("nama")).str.to_uppercase(),
        jenis_kelamin_raw=pl.col("jenis_kelamin"),
        jenis_kelamin=normalise_sex(pl.col("jenis_kelamin")),
        tanggal_lahir_raw=pl.col("tanggal_lahir"),
        tanggal_lahir=parse_date(pl.col("tanggal_lahir")),
        kode_wilayah=pl.col("kode_wilayah").str.replace_all(r"[\s.]", ""),
        tempat_lahir=_clean_text(pl.col("tempat_lahir")),
        alamat=_clean_text(pl.col("alamat")),
        hubungan_keluarga=_clean_text(pl.col("hubungan_keluarga")).str.to_uppercase(),
    )
    if kind == "dtks":
        frame = frame.with_columns(id_dtks=pl.col("id_dtks").str.strip_chars(), program=_clean_text(pl.col("program")),
                                   desil=normalise_desil(pl.col("desil")))
    earliest = pl.lit(EARLIEST_BIRTH).str.to_date()
    latest = pl.lit(today).str.to_date()
    if kind == "dukcapil":
        entry = _clean_text(pl.col("tanggal_meninggal")).str.to_uppercase()
        died = parse_date(pl.col("tanggal_meninggal"))
        frame = frame.with_columns(
            # Empty or a declared "alive" placeholder (HIDUP, -, 0000-00-00 ...) means alive. Any
            # other entry records a death; one that is not a plausible date keeps no date, and a
            # death without a readable date can only send the row to review (pipeline/matching/link.py).
            deceased=entry.is_not_null() & ~entry.is_in(contract.alive_placeholders()),
            tanggal_meninggal=pl.when(died.is_between(earliest, latest)).then(died),
        )
    reasons = [
        (pl.col("nama").is_null(), "nama kosong"),
        (pl.col("jenis_kelamin").is_null(), "jenis_kelamin tidak dikenal (pakai L/P, 1/2, LAKI-LAKI/PEREMPUAN)"),
        (pl.col("tanggal_lahir").is_null(), "tanggal_lahir tidak terbaca (pakai YYYY-MM-DD, DD-MM-YYYY atau DD/MM/YYYY)"),
        (~pl.col("tanggal_lahir").is_between(earliest, latest), "tanggal_lahir di luar 1900-01-01 sampai hari ini"),
        (~pl.col("kode_wilayah").str.contains(r"^\d{10}$").fill_null(False), "kode_wilayah bukan kode desa 10 digit"),
    ]
    if kind == "dtks":
        reasons.insert(0, (pl.col("id_dtks").is_null() | (pl.col("id_dtks") == ""), "id_dtks kosong"))
    return frame.with_columns(_reason=_reasons(reasons))


def _split_rows(frame: pl.DataFrame, kind: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(staged, quarantined) by `_reason`."""
    bad = frame.filter(pl.col("_reason").is_not_null())
    staged_cols = ["source_line", "id_dtks"] if kind == "dtks" else ["source_line"]
    staged_cols += ["nik_raw", "nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir", "alamat", "kode_wilayah"]
    staged_cols += ["program", "desil", "hubungan_keluarga"] if kind == "dtks" else ["tanggal_meninggal", "deceased", "hubungan_keluarga"]
    staged = (
        frame.filter(pl.col("_reason").is_null())
        .rename({"_line": "source_line"})
        .select(*staged_cols, "_lines")
    )
    quarantined = bad.select(
        line=pl.col("_line"),
        lines=pl.col("_lines"),
        id_dtks=pl.col("id_dtks") if kind == "dtks" else pl.lit(None, dtype=pl.String),
        reason=pl.col("_reason"),
        raw=pl.concat_str(
            [pl.col(c).fill_null("") for c in ("nik_raw", "nama", "jenis_kelamin_raw", "tanggal_lahir_raw", "kode_wilayah")],
            separator="|",
        ),
    )
    return staged, quarantined


# --------------------------------------------------------------------------- stage


# Rows per chunk when a Parquet extract is staged chunk by chunk: memory is then set by the
# chunk, not by the extract (25 million Dukcapil rows read whole held 16 GB).
PARQUET_CHUNK_ROWS = 1_000_000


def ingest_extract(path: Path, kind: str, staging_dir: Path, today: str, name: str | None = None) -> IngestResult:
    """Read, map, normalise and write one extract (to staging `name`.parquet, default the
    kind). Returns counts and file paths, and fails loudly if the rows staged and
    quarantined do not add up to the independent count."""
    path = Path(path)
    name = name or kind
    label = f"--{kind}"
    staging_dir.mkdir(parents=True, exist_ok=True)
    staging_path = staging_dir / f"{name}.parquet"
    # A Parquet extract is staged chunk by chunk (DTKS's rule for a repeated id_dtks, which
    # looks at the whole file, is settled first from the id column: _dtks_repeats).
    if is_parquet(path):
        plan = plan_parquet(path, kind, today)
        chunks = (stage_parquet_chunk(plan, offset, length) for offset, length in parquet_chunks(plan.row_count))
        return write_parquet_staging(plan, chunks, staging_dir, name)
    csv_plan = plan_csv_extract(path, kind, today)
    if csv_plan is not None:
        indexes = range(len(csv_plan.csv.chunks))
        if kind != "dtks":  # no settling across chunks: each chunk goes straight to the staging file
            return write_csv_staging(csv_plan, (read_csv_chunk_rows(csv_plan, i) for i in indexes), staging_dir, name)
        folder = csv_chunk_folder(staging_dir, name)
        results = [stage_csv_chunk(csv_plan, i, folder) for i in indexes]
        staged = write_csv_staging(csv_plan, csv_chunks_settled(csv_plan, folder, results), staging_dir, name)
        shutil.rmtree(folder)
        return staged
    raw, rejects, info = read_extract(path, kind, label, staging_dir)
    mapping = map_columns([c for c in raw.columns if not c.startswith("_")], kind, path, label)
    staged, quarantined = normalise(raw, kind, mapping, today)
    quarantined = pl.concat([quarantined, rejects.select(
        "line", "lines", id_dtks=pl.lit(None, dtype=pl.String), reason=pl.col("reason"), raw=pl.col("raw"))])
    staged_rows, staged_lines = staged.height, int(staged["_lines"].sum() or 0)
    staged.drop("_lines").sort("source_line").write_parquet(staging_path)
    return _staged_result(path, kind, staging_dir, name, staged_rows, staged_lines, quarantined, info, mapping)


def _staged_result(path: Path, kind: str, staging_dir: Path, name: str, staged_rows: int, staged_lines: int | None,
                   quarantined: pl.DataFrame, info: dict, mapping: dict[str, str]) -> IngestResult:
    """The quarantine written and the rows reconciled with the independent count."""
    label = f"--{kind}"
    staging_path, quarantine_path = staging_dir / f"{name}.parquet", staging_dir / f"{name}_quarantine.parquet"
    quarantine = quarantined.sort("line").with_columns(
        source=pl.lit(kind), file=pl.lit(path.name)
    ).select("source", "file", "line", "lines", "id_dtks", "reason", "raw")
    counts = reconcile_extract(info["counts"], staged_rows, staged_lines, quarantine, f"{label} {path}")
    quarantine.write_parquet(quarantine_path)
    return IngestResult(
        kind=kind,
        source=str(path),
        file_format=info["file_format"],
        encoding=info.get("encoding"),
        delimiter=info.get("delimiter"),
        column_mapping=mapping,
        rows_in=counts["records"],
        rows_staged=staged_rows,
        rows_quarantined=quarantine.height,
        counts=counts,
        warnings=info["warnings"],
        staging_path=str(staging_path),
        quarantine_path=str(quarantine_path),
    )


def stages_in_chunks(path: Path) -> bool:
    """An extract staged a chunk at a time (a chunk per partition task in a partitioned
    round): any Parquet file, and a CSV file larger than a chunk."""
    path = Path(path)
    return is_parquet(path) or (path.suffix.lower() in CSV_SUFFIXES and path.is_file()
                                and path.stat().st_size > csvread.CSV_CHUNK_BYTES)


def is_parquet(path: Path) -> bool:
    """A Parquet extract, staged chunk by chunk (one process) or a chunk per partition task."""
    return path.suffix.lower() in PARQUET_SUFFIXES


@dataclass
class ParquetPlan:
    """What every chunk of a Parquet extract is staged with: its footer's row count (the
    independent count), the column mapping and, for DTKS, the repeated ids' reasons."""
    path: Path
    kind: str
    today: str
    row_count: int
    mapping: dict[str, str]
    repeats: pl.DataFrame | None

    @property
    def label(self) -> str:
        return f"--{self.kind}"


def plan_parquet(path: Path, kind: str, today: str) -> ParquetPlan:
    label = f"--{kind}"
    check_input_file(path, label)
    source = _open_parquet(path, label)
    mapping = map_columns([c for c in source.schema_arrow.names if not c.startswith("_")], kind, path, label)
    repeats = _dtks_repeats(path, label, source, mapping, today) if kind == "dtks" else None
    return ParquetPlan(path=path, kind=kind, today=today, row_count=source.metadata.num_rows, mapping=mapping, repeats=repeats)


def parquet_chunks(row_count: int) -> list[tuple[int, int]]:
    """(offset, length) of each PARQUET_CHUNK_ROWS rows of an extract: what one process
    stages at a time and what a partition task stages (an empty file: one empty chunk)."""
    return [(offset, min(PARQUET_CHUNK_ROWS, row_count - offset)) for offset in range(0, row_count, PARQUET_CHUNK_ROWS)] or [(0, 0)]


def _parquet_rows(plan: ParquetPlan, offset: int, length: int):
    """Rows [offset, offset + length) of the extract as one Arrow chunk, read from the row
    groups that hold them."""
    source = _open_parquet(plan.path, plan.label)
    if length == 0:
        return source.schema_arrow.empty_table()
    groups, start, first = [], 0, None
    for index in range(source.metadata.num_row_groups):
        rows = source.metadata.row_group(index).num_rows
        if start < offset + length and start + rows > offset:
            groups.append(index)
            first = start if first is None else first
        start += rows
    try:
        table = source.read_row_groups(groups).slice(offset - (first or 0), length)
    except Exception:
        raise _damaged_parquet(plan.path, plan.label) from None
    if table.num_rows != length:
        raise ReconciliationError(f"{plan.label} {plan.path}: rows {offset + 1}-{offset + length} are missing although the "
                                  "file's footer counts them; copy it again.")
    return table.combine_chunks()


def stage_parquet_chunk(plan: ParquetPlan, offset: int, length: int) -> tuple:
    """One chunk of a Parquet extract normalised: (staged rows as Arrow, quarantined rows,
    values of float KK columns dropped, rows read)."""
    frame, dropped = _parquet_as_text(pl.from_arrow(_parquet_rows(plan, offset, length)), plan.path, plan.label)
    staged, bad = normalise(_numbered(frame, offset + 1), plan.kind, plan.mapping, plan.today, plan.repeats)
    return staged.drop("_lines").to_arrow(), bad, dropped, frame.height


def write_parquet_staging(plan: ParquetPlan, chunks, staging_dir: Path, name: str) -> IngestResult:
    """The staged chunks (stage_parquet_chunk, in order) written as one staging file, the
    same bytes whoever staged them; then the quarantine and the reconciliation."""
    import pyarrow.parquet as pq

    writer, staged_rows, rows_read, quarantined, dropped = None, 0, 0, [], {}
    try:
        for table, bad, chunk_dropped, rows in chunks:
            for column, n in chunk_dropped.items():
                dropped[column] = dropped.get(column, 0) + n
            if writer is None:
                writer = pq.ParquetWriter(staging_dir / f"{name}.parquet", table.schema, compression="zstd")
            writer.write_table(table.cast(writer.schema))
            staged_rows += table.num_rows
            rows_read += rows
            quarantined.append(bad)
    finally:
        if writer is not None:
            writer.close()
    info = _parquet_info(plan.path, plan.label, rows_read, plan.row_count, dropped)
    return _staged_result(plan.path, plan.kind, staging_dir, name, staged_rows, None, pl.concat(quarantined), info, plan.mapping)


def _parquet_batches(source, path: Path, label: str):
    """The file's rows PARQUET_CHUNK_ROWS at a time (an empty file: its empty columns once)."""
    if not source.metadata.num_rows:
        yield source.schema_arrow.empty_table()
        return
    batches = source.iter_batches(batch_size=PARQUET_CHUNK_ROWS)
    while True:
        try:
            batch = next(batches, None)
        except Exception:
            raise _damaged_parquet(path, label) from None
        if batch is None:
            return
        yield batch


def _dtks_repeats(path: Path, label: str, source, mapping: dict[str, str], today: str) -> pl.DataFrame:
    """The repeated ids' reasons (_repeat_reasons) of a DTKS Parquet file, chunk by chunk:
    the id column read alone finds the rows whose id repeats; only those rows are
    normalised to learn which of them are sound."""
    no_repeats = pl.DataFrame(schema={"_line": pl.Int64, "_repeat": pl.String})
    if mapping.get("id_dtks") is None:
        return no_repeats
    try:
        ids = pl.read_parquet(path, columns=[mapping["id_dtks"]])
    except Exception:
        raise _damaged_parquet(path, label) from None
    ids = _numbered(_parquet_as_text(ids, path, label)[0], first_line=1).select(
        "_line", id_dtks=pl.col(mapping["id_dtks"]).str.strip_chars())
    lines = ids.filter(pl.col("id_dtks").is_duplicated() & pl.col("id_dtks").is_not_null())["_line"]
    if lines.len() == 0:
        return no_repeats
    rows, first_line = [], 1
    for batch in _parquet_batches(source, path, label):
        frame = _numbered(_parquet_as_text(pl.from_arrow(batch), path, label)[0], first_line)
        first_line += frame.height
        repeated = frame.filter(pl.col("_line").is_in(lines.implode()))
        if repeated.height:
            rows.append(_normalised_rows(repeated, "dtks", mapping, today).select("id_dtks", "_line", "_reason"))
    return _repeat_reasons(pl.concat(rows))


@dataclass
class CsvExtractPlan:
    """What every chunk of a large CSV extract is staged with: where its chunks are cut
    (csvread.plan_csv) and the column mapping."""
    csv: CsvPlan
    kind: str
    today: str
    mapping: dict[str, str]


def plan_csv_extract(path: Path, kind: str, today: str) -> CsvExtractPlan | None:
    """A CSV extract's chunks, or None when it is read whole (csvread.plan_csv)."""
    label = f"--{kind}"
    if path.suffix.lower() not in CSV_SUFFIXES:
        return None
    check_input_file(path, label)
    plan = plan_csv(path, label)
    if plan is None:
        return None
    refuse_repeated_headers(plan.header, kind, path, label)
    mapping = map_columns([c for c in column_names(plan.header) if not c.startswith("_")], kind, path, label)
    return CsvExtractPlan(csv=plan, kind=kind, today=today, mapping=mapping)


def csv_chunk_folder(staging_dir: Path, name: str) -> Path:
    return staging_dir / f"{name}-chunks"


def read_csv_chunk_rows(plan: CsvExtractPlan, index: int) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame, dict]:
    """One chunk of a CSV extract read and normalised: (rows, quarantined, rejected
    records, counts). DTKS rows come unsplit (quarantined None): the repeated ids' reasons
    need every chunk (csv_chunks_settled)."""
    read = read_csv_chunk(plan.csv, index)
    rows, rejects = _without_repeated_header(read)
    if plan.kind == "dtks":
        return _normalised_rows(rows, plan.kind, plan.mapping, plan.today), None, rejects, read.counts
    staged, bad = normalise(rows, plan.kind, plan.mapping, plan.today)
    return staged, bad, rejects, read.counts


def stage_csv_chunk(plan: CsvExtractPlan, index: int, folder: Path) -> dict:
    """One chunk of a CSV extract (read_csv_chunk_rows) as Arrow IPC files in `folder`,
    for csv_chunks_settled; returns the chunk's counts and the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, bad, rejects, counts = read_csv_chunk_rows(plan, index)
    rows.write_ipc(folder / f"s{index:05d}.arrow", compression="zstd")
    if bad is not None:
        bad.write_ipc(folder / f"q{index:05d}.arrow", compression="zstd")
    rejects.write_ipc(folder / f"r{index:05d}.arrow", compression="zstd")
    return {"counts": counts, "bytes": sum(f.stat().st_size for f in folder.glob(f"?{index:05d}.arrow"))}


def csv_chunks_settled(plan: CsvExtractPlan, folder: Path, results: list[dict]):
    """The chunks of `folder` (stage_csv_chunk) in order as (staged, quarantined, rejects,
    counts), DTKS's repeated ids settled over every chunk first."""
    repeats = None
    if plan.kind == "dtks":
        ids = pl.concat([pl.read_ipc(folder / f"s{i:05d}.arrow", columns=["id_dtks", "_line", "_reason"])
                         for i in range(len(results))])
        repeats = _repeat_reasons(ids)
        del ids
    for i, result in enumerate(results):
        rows, rejects = pl.read_ipc(folder / f"s{i:05d}.arrow"), pl.read_ipc(folder / f"r{i:05d}.arrow")
        if repeats is not None:
            yield *_split_rows(_with_repeat_reasons(rows, repeats), plan.kind), rejects, result["counts"]
        else:
            yield rows, pl.read_ipc(folder / f"q{i:05d}.arrow"), rejects, result["counts"]


def write_csv_staging(plan: CsvExtractPlan, chunks, staging_dir: Path, name: str) -> IngestResult:
    """The staged chunks ((staged, quarantined, rejects, counts), in order) written as one
    staging file; then the quarantine and the reconciliation with the lines counted."""
    import pyarrow.parquet as pq

    writer, staged_rows, staged_lines, quarantined, counts = None, 0, 0, [], {}
    try:
        for staged, bad, rejects, chunk_counts in chunks:
            staged_rows += staged.height
            staged_lines += int(staged["_lines"].sum() or 0)
            table = staged.drop("_lines").to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(staging_dir / f"{name}.parquet", table.schema, compression="zstd")
            writer.write_table(table.cast(writer.schema))
            quarantined += [bad, rejects.select("line", "lines", id_dtks=pl.lit(None, dtype=pl.String),
                                                reason=pl.col("reason"), raw=pl.col("raw"))]
            counts = {key: counts.get(key, 0) + value for key, value in chunk_counts.items()}
    finally:
        if writer is not None:
            writer.close()
    info = {"file_format": "csv", "encoding": plan.csv.encoding, "delimiter": plan.csv.delimiter, "counts": counts,
            "warnings": plan.csv.warnings}
    return _staged_result(plan.csv.path, plan.kind, staging_dir, name, staged_rows, staged_lines, pl.concat(quarantined),
                          info, plan.mapping)


def reconcile_extract(counts: dict, staged_rows: int, staged_lines: int | None, quarantine: pl.DataFrame, where: str) -> dict:
    """Staged + quarantined records = the records counted independently of the parser, and
    for CSV: header + blank lines + the lines of those records (`staged_lines` for the staged
    ones) = the file's physical lines."""
    counts = dict(counts, staged=staged_rows, quarantined=quarantine.height)
    problems = []
    if staged_rows + quarantine.height != counts["records"]:
        problems.append(f"{counts['records']} records counted but {staged_rows} staged + {quarantine.height} quarantined")
    if quarantine["line"].n_unique() != quarantine.height:
        problems.append("a record is quarantined twice")
    if "physical_lines" in counts:
        spanned = (staged_lines or 0) + int(quarantine["lines"].sum() or 0)
        if counts["header_lines"] + counts["blank_lines"] + spanned != counts["physical_lines"]:
            problems.append(
                f"{counts['physical_lines']} physical lines but header {counts['header_lines']} + blank "
                f"{counts['blank_lines']} + record lines {spanned}"
            )
    if problems:
        raise ReconciliationError(f"{where}: rows do not add up ({'; '.join(problems)}); no outputs were published. Please report this.")
    return counts
