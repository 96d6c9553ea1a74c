"""The reviewers' workbooks, as they are distributed: one per kabupaten/kota (the folder
and the national summary's name are the catalogue's [workbook]). Each holds the cases of
its kabupaten's DTKS rows: one sheet per anomaly group, each case a row with three columns
to fill in (keputusan, catatan, pemeriksa), after a summary sheet that says what each
decision means for each group. The national summary holds aggregates only.

Writer: xlsxwriter writes each workbook's summary sheet, and once per process each case
sheet's frame (header, widths, drop-down, frozen pane, autofilter), which every workbook
reuses with its own last row; the case rows are worksheet XML built by polars for many
kabupaten at once and spliced into the package as it is saved (sheetxml.py).
benchmarks/workbook_writers.py measures it against a Rust-based writer (rvgsrust-xlsxwriter
0.3.5, not used: a 0.3 native package first released 2026-09 that cannot set the
document's creation date). The files are written by batches in parallel
processes.

Decisions are matched back to cases later on the key columns id_dtks, kode_anomali and
id_terkait (for duplicates: the pair id_dtks + id_dtks of the row kept). Reviewers must
not edit those columns.

Formula injection: names, addresses and free text come from the input files, so any of
them may be crafted to run as an Excel formula (=HYPERLINK(...), @SUM(...)). Three
layers stop that: every text cell is a string cell, never a formula (the case rows are
inline strings; xlsxwriter's own cells are written with write_string and
strings_to_formulas=False), and a text value starting with =, +, -, @, tab or carriage
return gets a literal leading apostrophe (so it stays inert even after a reviewer copies it or saves the
sheet as CSV) and the quotePrefix cell style (Excel's own "typed with an apostrophe"
marker, so editing the cell does not turn it into a formula). Key columns keep their
exact value (they are matched on) and only get the quotePrefix style.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import itertools
import json
import multiprocessing
import os
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import xlsxwriter

from pipeline.contract import (
    CODE, DECISION_VALUES, OUTCOME, ROW_OUTCOMES, anomaly_rules, codes_where, outcome_rules, sheets, workbook_settings,
)
from pipeline.lookup.objections import is_objection_id
from pipeline.report.html import (
    ACTION_LABELS,
    ACTIONS,
    LINK_METHOD_LABELS,
    SEVERITY_LABELS,
    linked_dukcapil,
    load_anomalies,
    load_records,
    ranked,
    rows_with_ids,
    scan,
    with_region,
)
from pipeline.report.mask import mask_digit_runs, mask_nik
from pipeline.report.sheetxml import CellStyle, SheetBody, row_xml, write_spliced

DECISIONS = DECISION_VALUES
KEY_COLUMNS = ("id_dtks", "kode_anomali", "id_terkait")
DECISION_COLUMNS = ("keputusan", "catatan", "pemeriksa")
RISKY_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Sheet -> the anomaly codes it holds, and what each decision means on it (the catalogue).
GROUPS: dict[str, tuple[str, ...]] = {
    name: tuple(code for code, rule in anomaly_rules().items() if rule.sheet == name) for name in sheets()
}
MEANINGS: dict[str, dict[str, str]] = {name: sheet.meanings for name, sheet in sheets().items()}

OUTCOME_LABELS = {name: outcome_rules()[name].label for name in ROW_OUTCOMES}
OUTCOME_FILES = {name: outcome_rules()[name].file for name in ROW_OUTCOMES}
EXCEL_MAX_ROWS = 1_048_576
# Shared strings (constant_memory off) write each repeated label once instead of escaping
# it in every cell: at 1M rows 35 s and 1.5 GB peak against 41 s and 0.9 GB streamed.
CONSTANT_MEMORY = False


@dataclass(frozen=True)
class Column:
    header: str
    source: str  # column of the prepared frame
    width: float
    kind: str = "text"  # key | decision | text | date | number | probability


def group_of(code: str) -> str:
    return anomaly_rules()[code].sheet


# --------------------------------------------------------------------------- the rows


def nik_column(name: str, full_nik: bool) -> pl.Expr:
    return pl.col(name) if full_nik else mask_nik(pl.col(name))


def shown_anomalies(work_dir: Path) -> pl.DataFrame:
    """The anomalies the workbooks show, each with its sheet (`_sheet`). Warnings leave the
    row paid: nothing to decide. That covers the canonical row of a duplicate cluster and
    every finding a reviewer already decided (TOLAK -> warn). A household code is shown
    once per household, on its representative's row."""
    sheet_of = {code: rule.sheet for code, rule in anomaly_rules().items()}
    return (
        load_anomalies(work_dir).filter(pl.col("action") != "warn").filter(shown_once())
        .with_columns(_sheet=pl.col("anomaly_code").replace_strict(sheet_of, default=None))
        .filter(pl.col("_sheet").is_not_null())
        .collect()
    )


def case_frame(work_dir: Path, full_nik: bool, shown: pl.DataFrame) -> pl.LazyFrame:
    """Each anomaly of `shown` (shown_anomalies) with the DTKS row it concerns, its region,
    and for link codes the Dukcapil record; for duplicates the row it duplicates (t_*
    columns); in no order (kab_jobs ranks them). The records and clusters are read by the
    ids the anomalies name: joined whole, at 10M rows planning the workbooks took 36.3 s
    and 7.9 GB, read so 33.0 s and 7.2 GB."""
    records = load_records(work_dir)
    anomalies = shown.lazy()
    # related_id is an id_dtks (duplicates, shared NIK) or a Dukcapil NIK (link codes).
    related_row = rows_with_ids(records, shown["related_id"]).select(
        related_id=pl.col("id_dtks"), _related_is_row=pl.lit(True), t_nama=pl.col("nama"), t_nik=pl.col("nik"),
        t_lahir=pl.col("tanggal_lahir"), t_wilayah=pl.col("kode_wilayah"),
    )
    frame = (
        anomalies.join(rows_with_ids(records, shown["id_dtks"]), on="id_dtks", how="left")
        .pipe(with_region)
        .join(related_row, on="related_id", how="left")
        .join(dukcapil_columns(work_dir, anomalies), on=["id_dtks", "anomaly_code"], how="left")
        .join(rows_with_ids(clusters_frame(work_dir), shown["id_dtks"]), on="id_dtks", how="left")
        .with_columns(
            # A related id without digits (a list type, a program) is no personal number.
            id_terkait=pl.when(pl.col("_related_is_row").fill_null(False) | is_objection_id(pl.col("related_id"))
                               | ~pl.col("related_id").str.contains(r"[0-9]").fill_null(True))
            .then(pl.col("related_id")).otherwise(nik_column("related_id", full_nik)),
            nik_tampil=nik_column("nik", full_nik),
            nik_raw_tampil=nik_column("nik_raw", full_nik),
            kk_tampil=nik_column("no_kk", full_nik),
            t_nik=nik_column("t_nik", full_nik),
            d_nik=nik_column("d_nik", full_nik),
            detail=pl.col("detail") if full_nik else mask_digit_runs(pl.col("detail")),
            label=pl.col("anomaly_code").replace_strict({c: r.label_id for c, r in anomaly_rules().items()}, default=None),
            tingkat=pl.col("severity").replace_strict(SEVERITY_LABELS, default=pl.col("severity")),
            tindakan=pl.col("action").replace_strict(ACTION_LABELS, default=pl.col("action")),
            hasil=pl.col("outcome").replace_strict(OUTCOME_LABELS, default=pl.col("outcome")),
        )
        .join(list_columns(work_dir, full_nik), on=["id_dtks", "anomaly_code", "related_id"], how="left")
        .join(household_columns(work_dir, anomalies, full_nik), on=["id_dtks", "anomaly_code"], how="left")
    )
    return frame


def dukcapil_columns(work_dir: Path, anomalies: pl.LazyFrame) -> pl.LazyFrame:
    """(id_dtks, anomaly_code) -> the Dukcapil record the anomaly is about (d_* columns)
    and the link's facts; see html.linked_dukcapil for which link that is."""
    return linked_dukcapil(work_dir, anomalies).select(
        "id_dtks", "anomaly_code", d_nik=pl.col("dukcapil_nik"), d_nama=pl.col("d_nama"), d_jk=pl.col("d_jk"),
        d_lahir=pl.col("d_lahir"), d_alamat=pl.col("d_alamat"), d_wilayah=pl.col("dukcapil_kode_wilayah"),
        d_meninggal=pl.col("tanggal_meninggal"), d_kab=pl.col("d_kab"),
        tautan=pl.col("link_method").replace_strict(LINK_METHOD_LABELS, default=pl.col("link_method")),
        peluang_tautan=pl.col("match_probability"), bukti_tautan=pl.col("evidence"),
        kemiripan_nama=pl.col("name_similarity"), tgl_lahir_cocok=pl.col("dob_agreement"), identitas=pl.col("identity"),
    )


LIST_SCHEMA = {
    "id_dtks": pl.String, "anomaly_code": pl.String, "related_id": pl.String, "daftar_jenis": pl.String, "daftar_cara": pl.String,
    "daftar_sumber": pl.String, "daftar_tanggal": pl.String, "daftar_nik": pl.String, "daftar_nama": pl.String,
    "daftar_lahir": pl.Date, "daftar_kemiripan": pl.Float64, "daftar_peluang": pl.Float64, "daftar_bukti": pl.String,
}


def list_columns(work_dir: Path, full_nik: bool) -> pl.LazyFrame:
    """(id_dtks, NOT_ELIGIBLE, list type) -> the list entry the row matched (daftar_* columns)."""
    from pipeline.contract import eligibility_rules
    from pipeline.findings.ineligible import METHOD_LABELS

    matches = scan(work_dir, "staging/list_matches.parquet")
    if matches is None:
        return pl.LazyFrame(schema=LIST_SCHEMA)
    labels = {name: f"{name}: {spec['label']}" for name, spec in eligibility_rules()["ineligible"].items()}
    return matches.select(
        "id_dtks", anomaly_code=pl.lit(CODE.NOT_ELIGIBLE), related_id=pl.col("jenis"),
        daftar_jenis=pl.col("jenis").replace_strict(labels, default=pl.col("jenis")),
        daftar_cara=pl.col("method").replace_strict(METHOD_LABELS, default=pl.col("method")),
        daftar_sumber=pl.col("sumber"), daftar_tanggal=pl.col("tanggal"), daftar_nik=nik_column("list_nik", full_nik),
        daftar_nama=pl.col("list_nama"), daftar_lahir=pl.col("list_lahir"), daftar_kemiripan=pl.col("name_similarity"),
        daftar_peluang=pl.col("probability"), daftar_bukti=pl.col("evidence"),
    ).cast(LIST_SCHEMA)


def household_columns(work_dir: Path, anomalies: pl.LazyFrame, full_nik: bool) -> pl.LazyFrame:
    """(id_dtks, household code) -> the household's members and their Dukcapil KK numbers."""
    schema = {"id_dtks": pl.String, "anomaly_code": pl.String, "anggota": pl.String, "kk_dukcapil": pl.String}
    shown = scan(work_dir, "staging/households.parquet")
    if shown is None:
        return pl.LazyFrame(schema=schema)
    household = list(codes_where(lambda rule: rule.scope == "household"))
    return anomalies.filter(pl.col("anomaly_code").is_in(household)).select("id_dtks", "anomaly_code").join(
        shown.select("id_dtks", anggota=pl.col("members"),
                     kk_dukcapil=pl.col("kk_dukcapil") if full_nik else mask_digit_runs(pl.col("kk_dukcapil"))),
        on="id_dtks", how="left",
    ).select(list(schema)).cast(schema)


def clusters_frame(work_dir: Path) -> pl.LazyFrame:
    clusters = scan(work_dir, "duplicate_clusters.parquet")
    if clusters is None:
        return pl.LazyFrame(schema={"id_dtks": pl.String, "klaster": pl.String})
    return clusters.select("id_dtks", klaster=pl.col("cluster_id"))


# --------------------------------------------------------------------------- the columns


COMMON_HEAD = [
    Column("id_dtks", "id_dtks", 14, "key"),
    Column("kode_anomali", "anomaly_code", 22, "key"),
    Column("id_terkait", "id_terkait", 20, "key"),
    Column("keputusan", "", 22, "decision"),
    Column("catatan", "", 30, "decision"),
    Column("pemeriksa", "", 16, "decision"),
    Column("Tingkat", "tingkat", 9),
    Column("Tindakan", "tindakan", 15),
    Column("Arti kode", "label", 40),
    Column("Keterangan", "detail", 40),
]
PERSON = [
    Column("NIK", "nik_tampil", 19),
    Column("Nama", "nama", 26),
    Column("Jenis kelamin", "jenis_kelamin", 8),
    Column("Tanggal lahir", "tanggal_lahir", 12, "date"),
    Column("Tempat lahir", "tempat_lahir", 14),
    Column("Nomor KK", "kk_tampil", 19),
    Column("Alamat", "alamat", 28),
    Column("Kode wilayah (desa)", "kode_wilayah", 12),
    Column("Kabupaten/kota", "nama_kabupaten", 24),
    Column("Provinsi", "nama_provinsi", 18),
    Column("Program", "program", 9),
    Column("Desil", "desil", 6),
    Column("Hubungan keluarga", "hubungan_keluarga", 12),
    Column("Hasil putaran", "hasil", 15),
]
# The civil-registry fields a code may show (catalogue: registry_fields), in this order.
REGISTRY: dict[str, Column] = {
    "tautan": Column("Tautan ke Dukcapil", "tautan", 14),
    "nik": Column("NIK Dukcapil", "d_nik", 19),
    "nama": Column("Nama Dukcapil", "d_nama", 26),
    "jenis_kelamin": Column("Jenis kelamin Dukcapil", "d_jk", 8),
    "tanggal_lahir": Column("Tanggal lahir Dukcapil", "d_lahir", 12, "date"),
    "alamat": Column("Alamat Dukcapil", "d_alamat", 28),
    "kode_wilayah": Column("Kode wilayah Dukcapil", "d_wilayah", 12),
    "kabupaten": Column("Kabupaten/kota Dukcapil", "d_kab", 24),
    "tanggal_meninggal": Column("Tanggal meninggal", "d_meninggal", 12, "date"),
    "peluang": Column("Peluang tautan (fuzzy)", "peluang_tautan", 11, "probability"),
    "bukti": Column("Bukti tautan (fuzzy)", "bukti_tautan", 60),
    "kemiripan_nama": Column("Kemiripan nama", "kemiripan_nama", 10, "number"),
    "tanggal_lahir_cocok": Column("Tanggal lahir cocok", "tgl_lahir_cocok", 12),
    "identitas": Column("Kekuatan identitas", "identitas", 12),
}
DUPLICATE = [
    Column("Peluang sama orang", "score", 11, "probability"),
    Column("Bukti per kolom", "evidence", 60),
    Column("Klaster", "klaster", 12),
    Column("Nama baris utama", "t_nama", 26),
    Column("NIK baris utama", "t_nik", 19),
    Column("Tanggal lahir baris utama", "t_lahir", 12, "date"),
    Column("Kode wilayah baris utama", "t_wilayah", 12),
]



def registry_columns(sheet: str) -> list[Column]:
    """The civil-registry fields any code of the sheet declares, in REGISTRY's order."""
    wanted = {field for code in GROUPS[sheet] for field in anomaly_rules()[code].registry_fields}
    return [column for field, column in REGISTRY.items() if field in wanted]


LIST = [
    Column("Daftar", "daftar_jenis", 14),
    Column("Cara cocok", "daftar_cara", 16),
    Column("Sumber daftar", "daftar_sumber", 18),
    Column("Tanggal data", "daftar_tanggal", 12),
    Column("NIK di daftar", "daftar_nik", 19),
    Column("Nama di daftar", "daftar_nama", 26),
    Column("Tanggal lahir di daftar", "daftar_lahir", 12, "date"),
    Column("Kemiripan nama", "daftar_kemiripan", 10, "number"),
    Column("Peluang (fuzzy)", "daftar_peluang", 11, "probability"),
    Column("Bukti (fuzzy)", "daftar_bukti", 60),
]
HOUSEHOLD = [
    Column("Anggota rumah tangga (id_dtks)", "anggota", 40),
    Column("KK anggota di Dukcapil", "kk_dukcapil", 30),
]

BLOCKS = {
    # The NIK sheet shows the Dukcapil record too: the one a fuzzy link suggests for a
    # broken NIK (related_id), else the record of the same NIK.
    "nik_raw": lambda sheet: [Column("NIK seperti tertulis", "nik_raw_tampil", 19)],
    "person": lambda sheet: PERSON,
    "registry": registry_columns,
    "duplicate": lambda sheet: DUPLICATE,
    "list": lambda sheet: LIST,
    "household": lambda sheet: HOUSEHOLD,
}


def sheet_columns(sheet: str) -> list[Column]:
    return COMMON_HEAD + [column for block in sheets()[sheet].blocks for column in BLOCKS[block](sheet)]


SHEET_COLUMNS: dict[str, list[Column]] = {name: sheet_columns(name) for name in sheets()}


def shown_once() -> pl.Expr:
    """A household code is shown once per household: on its representative's row."""
    household = list(codes_where(lambda rule: rule.scope == "household"))
    return ~pl.col("anomaly_code").is_in(household) | (pl.col("id_dtks") == pl.col("related_id"))


PER_TYPE = [name for name, sheet in sheets().items() if sheet.per_type]


def sheet_part() -> pl.Expr:
    """The sheet a case goes to: its group's, or for a per_type group (NOT_ELIGIBLE) its
    list type's, "<group> <type>" (Excel allows 31 characters)."""
    typed = pl.concat_str(pl.col("_sheet"), pl.lit(" "), pl.col("id_terkait")).str.slice(0, 31)
    return pl.when(pl.col("_sheet").is_in(PER_TYPE)).then(typed).otherwise(pl.col("_sheet"))


# --------------------------------------------------------------------------- writing


class Formats:
    def __init__(self, book: xlsxwriter.Workbook) -> None:
        header = {"bold": True, "text_wrap": True, "valign": "top", "border": 1}
        self.header = book.add_format(header | {"bg_color": "#DCE6F1"})
        self.header_decision = book.add_format(header | {"bg_color": "#FFE699"})  # the columns to fill in
        self.decision = book.add_format({"bg_color": "#FFF2CC", "border": 1, "border_color": "#BFBFBF"})
        self.text = book.add_format({})
        self.quoted = book.add_format({"quote_prefix": True})
        self.date = book.add_format({"num_format": "yyyy-mm-dd"})
        self.number = book.add_format({"num_format": "0.000"})
        self.probability = book.add_format({"num_format": "0.0000"})
        self.title = book.add_format({"bold": True, "font_size": 14})
        self.bold = book.add_format({"bold": True})
        self.wrap = book.add_format({"text_wrap": True, "valign": "top"})
        self.ok = book.add_format({"bold": True, "font_color": "#1F7A3D"})
        self.bad = book.add_format({"bold": True, "font_color": "#B42318"})
        # Every format registered now, in this order, the way writing a cell with it does:
        # the spliced case rows and the case sheet frame (written in a workbook of its own)
        # refer to their xf indices, which must be the same in every workbook.
        for value in vars(self).values():
            if isinstance(value, xlsxwriter.format.Format):
                value._get_xf_index()
        self.cells = CellStyle(text=self.text._get_xf_index(), quoted=self.quoted._get_xf_index(),
                               date=self.date._get_xf_index(), number=self.number._get_xf_index(),
                               probability=self.probability._get_xf_index())


def write_text(sheet, row: int, col: int, value: object, formats: Formats, exact: bool = False) -> None:
    """A text cell that Excel can never evaluate (see the module docstring)."""
    if value is None:
        return
    text = str(value)
    if text.startswith(RISKY_PREFIXES):
        sheet.write_string(row, col, text if exact else "'" + text, formats.quoted)
    else:
        sheet.write_string(row, col, text, formats.text)


def decision_message(group: str) -> str:
    """The drop-down's input message: the first sentence of each meaning (Excel allows
    255 characters; the full text is on the summary sheet)."""
    meaning = MEANINGS[group]
    text = " ".join(f"{d}: {meaning[d].split('. ')[0].rstrip('.')}." for d in DECISIONS)
    more = f" Lengkapnya: lembar {workbook_settings()['summary_sheet']}."
    if len(text) + len(more) <= 255:
        return text + more
    return text if len(text) <= 255 else text[:252] + "..."


def write_case_sheet(book: xlsxwriter.Workbook, name: str, group: str, rows: int, xml: bytes, formats: Formats) -> SheetBody:
    """A case sheet: its frame (header, widths, drop-down, frozen pane, autofilter), the
    same in every workbook but for its last row (case_sheet_frame), and its rows as XML,
    both put in when the book is closed (close_book). In the workbook itself only the
    autofilter, whose hidden name xlsxwriter writes into the workbook's part."""
    sheet = book.add_worksheet(name)
    last, last_col = max(rows, 1), len(SHEET_COLUMNS[group]) - 1
    sheet.autofilter(0, 0, last, last_col)
    return SheetBody(index=sheet.index + 1, xml=xml, last_row=rows, last_col=last_col, frame=case_sheet_frame(group, last))


# The last row, 1-based, of the case sheet frames: a number found nowhere else in a frame.
FRAME_LAST_ROW = b"777777"


def case_sheet_frame(group: str, last: int) -> bytes:
    """The XML of a case sheet of `group` without its rows, whose last row is `last`
    (0-based): a frame written once, that row put into its ranges. A sheet of one row has
    a frame of its own: xlsxwriter writes the drop-down's range D2:D2 as D2."""
    if last == 1:
        return _written_frame(group, 1)
    return _written_frame(group, int(FRAME_LAST_ROW) - 1).replace(FRAME_LAST_ROW, str(last + 1).encode())


def written_frame(group: str, last: int) -> bytes:
    """The XML of a case sheet of `group` without its rows, its last row `last`, as
    xlsxwriter writes it in a workbook of its own that streams its cells, so the header's
    text is inline, not in its shared strings. For the frame of most sheets FRAME_LAST_ROW
    ends the drop-down's, autofilter's and ignored errors' ranges."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.xlsx"
        book = xlsxwriter.Workbook(str(path), {**BOOK_OPTIONS, "constant_memory": True, "in_memory": False})
        formats = Formats(book)
        book.add_worksheet("first")  # the selected sheet, as the summary is in a workbook
        write_case_frame(book.add_worksheet("frame"), group, last, formats)
        book.close()
        with zipfile.ZipFile(path) as package:
            xml = package.read("xl/worksheets/sheet2.xml")
    if last == int(FRAME_LAST_ROW) - 1 and xml.count(FRAME_LAST_ROW) != 3:
        raise RuntimeError("workbooks: the case sheet frame does not end its three ranges at its last row (xlsxwriter changed?)")
    return xml


# Once per process: writing the same header, widths and drop-down into every sheet of every
# workbook took a third of each workbook's time (422 workbooks of a 20,000-row round:
# 10.2-11.1 s, now 6.9 s).
_written_frame = functools.cache(written_frame)


def write_case_frame(sheet, group: str, last: int, formats: Formats) -> None:
    """Header, widths, drop-down, frozen pane and autofilter of a case sheet of `group`
    whose last row is `last` (0-based)."""
    columns = SHEET_COLUMNS[group]
    for col, column in enumerate(columns):
        sheet.set_column(col, col, column.width, formats.decision if column.kind == "decision" else None)
        sheet.write_string(0, col, column.header, formats.header_decision if column.kind == "decision" else formats.header)
    sheet.set_row(0, 30)
    decision_col = next(i for i, c in enumerate(columns) if c.header == "keputusan")
    sheet.data_validation(1, decision_col, last, decision_col, {
        "validate": "list",
        "source": list(DECISIONS),
        "input_title": "Keputusan pemeriksa",
        "input_message": decision_message(group),
        "error_title": "Keputusan tidak dikenal",
        "error_message": "Pilih salah satu: " + ", ".join(DECISIONS) + ".",
        "error_type": "stop",
    })
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, last, len(columns) - 1)
    # NIK, KK and codes are text on purpose; hide Excel's "number stored as text" marks.
    sheet.ignore_errors({"number_stored_as_text": f"A1:XFD{last + 1}"})


def reconciliation_facts(work_dir: Path) -> dict:
    """as_of and reconciliation from summary.json; without it, counted from the files."""
    summary_path = work_dir / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        return {"as_of": summary.get("as_of"), **summary.get("reconciliation", {})}

    def rows(frame: pl.LazyFrame | None) -> int:
        return frame.select(pl.len()).collect().item() if frame is not None else 0

    counts = {key: rows(scan(work_dir, name)) for key, name in OUTCOME_FILES.items()}
    quarantine = scan(work_dir, "quarantine.parquet")
    counts[OUTCOME.quarantined] = rows(quarantine.filter(pl.col("source") == "dtks") if quarantine is not None else None)
    return {"as_of": None, "rows_in": None, **counts, "sum": sum(counts.values()), "balanced": None}


class Lines:
    """Writes a sheet top to bottom, one line at a time (constant_memory needs row order)."""

    def __init__(self, sheet, formats: Formats) -> None:
        self.sheet, self.formats, self.row = sheet, formats, 0

    def write(self, *cells: object, fmt=None) -> None:
        for col, value in enumerate(cells):
            if value is None:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.sheet.write_number(self.row, col, value, fmt)
            elif fmt is not None:
                self.sheet.write_string(self.row, col, str(value), fmt)
            else:
                write_text(self.sheet, self.row, col, value, self.formats)
        self.row += 1

    def skip(self) -> None:
        self.row += 1


def reconciliation_lines(lines: Lines, facts: dict) -> None:
    lines.write("Rekonsiliasi", fmt=lines.formats.bold)
    rows = [("Baris masuk", "rows_in"), *((o.label.capitalize(), name) for name, o in outcome_rules().items()), ("Jumlah", "sum")]
    for label, key in rows:
        lines.write(label, facts.get(key))
    balanced = facts.get("balanced")
    status = "SEIMBANG" if balanced else "TIDAK SEIMBANG" if balanced is False else "tidak diketahui (summary.json tidak ada)"
    lines.sheet.write_string(lines.row, 0, "Status")
    lines.write(None, status, fmt=lines.formats.ok if balanced else lines.formats.bad)


def instruction_lines(lines: Lines, canonical_rows: int) -> None:
    lines.write("Cara mengisi", fmt=lines.formats.bold)
    for text in (
        "Isi kolom keputusan (pilih dari daftar: SETUJU, TOLAK, PERLU_CEK_LAPANGAN), catatan, dan pemeriksa "
        "(nama/NIP pemeriksa).",
        "Jangan mengubah kolom id_dtks, kode_anomali, id_terkait: keputusan dicocokkan kembali dengan kunci ini. "
        "Untuk duplikat, pasangan yang diputuskan adalah id_dtks + id_terkait (baris utama yang dipertahankan).",
        f"Baris utama klaster duplikat ({canonical_rows} baris) tidak dicantumkan: baris itu yang dipertahankan.",
        "Temuan berstatus peringatan (misalnya NIK_DOB_MISMATCH, atau yang sudah diputuskan pada putaran "
        "sebelumnya) tidak dicantumkan: baris tetap dibayar, tidak ada yang perlu diputuskan. "
        "Daftar lengkap ada di report.html dan anomalies.parquet.",
        "Teks yang diawali =, +, -, @, tab atau CR ditulis sebagai teks dengan tanda petik (') di depan "
        "agar Excel tidak menjalankannya sebagai rumus.",
    ):
        lines.write(None, text, fmt=lines.formats.wrap)


def meaning_lines(lines: Lines, groups: list[str]) -> None:
    """What SETUJU, TOLAK and PERLU_CEK_LAPANGAN mean on each sheet."""
    lines.write("Arti keputusan per lembar", fmt=lines.formats.bold)
    lines.write("Lembar", "Kode", *DECISIONS, fmt=lines.formats.header)
    for group in groups:
        codes = ", ".join(GROUPS.get(group, ("kode lain",)))
        lines.write(group, codes, *(MEANINGS[group][d] for d in DECISIONS), fmt=lines.formats.wrap)


def count_lines(lines: Lines, counts: dict[str, dict[str, int]], sheets: dict[str, int]) -> None:
    lines.write("Jumlah anomali per kode", fmt=lines.formats.bold)
    lines.write("Kode", "Arti", "Tingkat", "Dikeluarkan", "Perlu diperiksa", "Peringatan", "Jumlah", "Lembar",
                fmt=lines.formats.header)
    for code, rule in anomaly_rules().items():
        values = [counts.get(code, {}).get(a, 0) for a in ACTIONS]
        lines.write(code, rule.label_id, SEVERITY_LABELS.get(rule.severity, rule.severity), *values, sum(values), group_of(code))
    lines.skip()
    lines.write("Lembar", "Baris", fmt=lines.formats.header)
    for name, n in sheets.items():
        lines.write(name, n)


def write_summary_sheet(book: xlsxwriter.Workbook, job: "KabJob", sheets: dict[str, int], formats: Formats) -> None:
    """The kabupaten's first sheet: its rows per outcome, how to fill in, what each decision
    means, and its anomalies per code."""
    sheet = book.add_worksheet(workbook_settings()["summary_sheet"])
    sheet.set_column(0, 0, 24)
    sheet.set_column(1, 1, 60)
    sheet.set_column(2, 7, 16)
    lines = Lines(sheet, formats)
    lines.write(f"Lembar kerja pemeriksaan verval DTKS: {job.nama} ({job.kode})", fmt=formats.title)
    lines.write("Provinsi", job.provinsi)
    lines.write("Putaran per", job.as_of or "-")
    lines.write("NIK", "LENGKAP (full_nik): simpan dan bagikan sesuai UU 27/2022" if job.full_nik
                else "disamarkan (4 digit awal + 4 digit akhir)")
    lines.skip()
    lines.write("Baris DTKS di kabupaten/kota ini", fmt=formats.bold)
    for outcome, label in OUTCOME_LABELS.items():
        lines.write(label.capitalize(), job.outcomes.get(outcome, 0))
    lines.write(f"Rekonsiliasi nasional: {workbook_settings()['national_file']}")
    lines.skip()
    instruction_lines(lines, job.canonical_rows)
    lines.skip()
    meaning_lines(lines, list(GROUPS))
    lines.skip()
    count_lines(lines, job.counts, sheets)




def split_names(group: str, height: int, max_rows: int) -> list[tuple[str, int, int]]:
    """(sheet name, first row, row count): a group larger than max_rows continues on
    "Duplikat (2)", "Duplikat (3)", ..."""
    if height <= max_rows:
        return [(group, 0, height)]
    parts = []
    for i, start in enumerate(range(0, height, max_rows), start=1):
        parts.append((group if i == 1 else f"{group} ({i})", start, min(max_rows, height - start)))
    return parts


BOOK_OPTIONS = {
    "constant_memory": CONSTANT_MEMORY,
    "strings_to_formulas": False,  # never turn "=..." into a formula
    "strings_to_urls": False,
    "strings_to_numbers": False,   # NIK and codes stay text
    "in_memory": True,             # no temporary file per part: 0.1 s less per workbook
}


def open_book(as_of: str | None) -> tuple[xlsxwriter.Workbook, io.BytesIO]:
    """A workbook written in memory; close_book saves it with its case rows."""
    package = io.BytesIO()
    book = xlsxwriter.Workbook(package, BOOK_OPTIONS)
    # The document's creation time is the round's date, so the same round writes the same bytes.
    book.set_properties({"created": dt.datetime.combine(dt.date.fromisoformat(as_of), dt.time()) if as_of else FIXED_CREATED})
    return book, package


def close_book(book: xlsxwriter.Workbook, package: io.BytesIO, path: Path, bodies: list[SheetBody]) -> None:
    book.close()
    # Personal data (UU 27/2022): owner only, like the other outputs, from the first byte.
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as target:
        write_spliced(package.getvalue(), bodies, target)
    os.chmod(path, 0o600)


# --------------------------------------------------------------------------- one workbook per kabupaten/kota

UNKNOWN_KAB = "0000"  # a case whose row has no kabupaten code (region codes are checked at ingest)
FIXED_CREATED = dt.datetime(2000, 1, 1)  # a workbook of a round without a date (no summary.json)
# Below this many cases (and unless workers are asked for), starting worker processes, which
# import polars and the catalogue again, costs more than it saves. At 1M rows (242,325
# cases) one process wrote the files in 14.9 s, two in 11.3 s; each start costs about 3 s.
PARALLEL_MIN_CASES = 100_000
# Cases whose rows are turned into XML together: one query per group for all of them,
# while their XML (about 1.2 KB a case) stays a few hundred MB.
BATCH_CASES = 200_000


@dataclass(frozen=True)
class KabJob:
    """Everything one kabupaten/kota's workbook is written from (sent to a worker process)."""
    kode: str
    nama: str
    provinsi: str
    file: str
    cases: pl.DataFrame  # the kab's cases: `_sheet` and every sheet's columns, in the fixed order
    counts: dict[str, dict[str, int]]  # code -> action -> anomalies of the kab (warnings too)
    canonical_rows: int
    outcomes: dict[str, int]  # the kab's DTKS rows per outcome
    as_of: str | None
    full_nik: bool
    max_rows: int


def file_slug(name: pl.Expr) -> pl.Expr:
    return name.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "-").str.strip_chars("-")


def kab_tallies(work_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kab, code, action) -> anomalies and canonical duplicate rows; (kab, outcome) -> DTKS rows."""
    records = load_records(work_dir)
    kab = pl.coalesce(pl.col("kode_kabupaten"), pl.lit(UNKNOWN_KAB)).alias("_kab")
    canonical = (pl.col("anomaly_code") == CODE.DUPLICATE_PERSON) & pl.col("related_id").is_null()
    anomalies = (
        load_anomalies(work_dir).join(records.select("id_dtks", "kode_kabupaten"), on="id_dtks", how="left")
        .group_by(kab, "anomaly_code", "action")
        .agg(n=pl.len(), canonical=canonical.sum(), shown=((pl.col("action") != "warn") & shown_once()).sum())
        .sort("_kab", "anomaly_code", "action").collect()
    )
    outcomes = records.group_by(kab, "outcome").len().sort("_kab", "outcome").collect()
    return anomalies, outcomes


def kab_jobs(work_dir: Path, anomalies: pl.DataFrame, outcomes: pl.DataFrame, full_nik: bool, max_rows: int) -> list[KabJob]:
    """One job per kabupaten/kota with at least one case, in code order (tallies: kab_tallies)."""
    as_of = reconciliation_facts(work_dir).get("as_of")
    sources = sorted({c.source for columns in SHEET_COLUMNS.values() for c in columns if c.source})
    cases = (
        case_frame(work_dir, full_nik, shown_anomalies(work_dir))
        .with_columns(_kab=pl.coalesce(pl.col("kode_kabupaten"), pl.lit(UNKNOWN_KAB)))
        # Each kabupaten's cases in one run, in the lists' order, so that the jobs take
        # slices of one frame: split by partition_by they were copied (planning the
        # workbooks at 10M rows: +7.2 GB, with slices +5.5 GB).
        .pipe(ranked, within=("_kab",))
        .select("_kab", "_sheet", *sources)
        .collect()  # once for every sheet and kabupaten: the joins are the costly part
    )
    expected = anomalies["shown"].sum()
    if cases.height != expected:
        raise RuntimeError(f"workbooks: {cases.height} cases but {expected} anomalies to decide (a join repeated rows)")
    names = cases.group_by("_kab").agg(pl.col("nama_kabupaten").first(), pl.col("nama_provinsi").first())
    names = names.with_columns(file=pl.format("{}-{}.xlsx", pl.col("_kab"), file_slug(pl.col("nama_kabupaten"))))
    jobs, offset = [], 0
    for kode, length in cases.group_by("_kab", maintain_order=True).len().iter_rows():
        part, offset = cases.slice(offset, length).drop("_kab"), offset + length
        name = names.row(by_predicate=pl.col("_kab") == kode, named=True)
        tallied = anomalies.filter(pl.col("_kab") == kode)
        counts: dict[str, dict[str, int]] = {}
        for code, action, n in tallied.select("anomaly_code", "action", "n").iter_rows():
            counts.setdefault(code, {})[action] = n
        jobs.append(KabJob(
            kode=kode, nama=name["nama_kabupaten"], provinsi=name["nama_provinsi"], file=name["file"], cases=part,
            counts=counts, canonical_rows=int(tallied["canonical"].sum()),
            outcomes=dict(outcomes.filter(pl.col("_kab") == kode).select("outcome", "len").iter_rows()),
            as_of=as_of, full_nik=full_nik, max_rows=max_rows,
        ))
    return jobs


def case_rows_xml(jobs: list[KabJob], style: CellStyle) -> pl.DataFrame:
    """The cases of several workbooks as worksheet rows, a query per group for all of them:
    (_job, _sheet, _part, _chunk) -> rows, xml, where _part is the sheet (sheet_part) and
    _chunk numbers the sheets it continues on when it is longer than max_rows (split_names)."""
    cases = pl.concat([job.cases.with_columns(_job=pl.lit(i, pl.UInt32)) for i, job in enumerate(jobs)])
    cases = cases.with_columns(_part=sheet_part()).with_columns(_pos=pl.int_range(pl.len()).over("_job", "_part"))
    max_rows = jobs[0].max_rows
    row_number = (pl.col("_pos") % max_rows + 2).cast(pl.String)
    pieces = [pl.DataFrame(schema={"_job": pl.UInt32, "_sheet": pl.String, "_part": pl.String, "_chunk": pl.Int64, "_xml": pl.String})]
    for group in GROUPS:
        frame = cases.filter(pl.col("_sheet") == group)
        sources = [(col, column.source, column.kind) for col, column in enumerate(SHEET_COLUMNS[group]) if column.source]
        pieces.append(frame.select("_job", "_sheet", "_part", _chunk=pl.col("_pos") // max_rows,
                                   _xml=row_xml(frame, sources, style, RISKY_PREFIXES, row_number)))
    return (pl.concat(pieces).group_by("_job", "_sheet", "_part", "_chunk", maintain_order=True)
            .agg(rows=pl.len(), xml=pl.col("_xml").str.join("")))


def job_sheets(job: KabJob, rows: list[tuple[str, str, int, int, str]]) -> list[tuple[str, str, int, bytes]]:
    """(group, sheet name, rows, xml) of one workbook's case sheets, in order: every group,
    empty when the kab has no case of it; a per_type group's sheets by list type.
    rows: the job's (_sheet, _part, _chunk, rows, xml) from case_rows_xml."""
    found = []
    for group in GROUPS:
        mine = sorted((part, chunk, count, xml) for sheet, part, chunk, count, xml in rows if sheet == group)
        if not mine:
            found.append((group, group, 0, b""))
        for part, chunks in itertools.groupby(mine, key=lambda row: row[0]):
            chunks = list(chunks)
            names = split_names(part, sum(count for _, _, count, _ in chunks), job.max_rows)
            found += [(group, name, count, xml.encode()) for (name, _, count), (_, _, _, xml) in zip(names, chunks, strict=True)]
    return found


def write_kab_workbook(job: KabJob, rows: list[tuple[str, str, int, int, str]], folder: Path, style: CellStyle) -> dict:
    """One kabupaten/kota's workbook: the summary sheet, then every group's sheet, whose
    rows (case_rows_xml) are spliced in as the book is saved."""
    path = Path(folder) / job.file
    book, package = open_book(job.as_of)
    formats = Formats(book)
    if formats.cells != style:
        raise RuntimeError("workbooks: the cell styles of the rows differ from the workbook's")
    parts = job_sheets(job, rows)
    sheets = {name: count for _, name, count, _ in parts}
    write_summary_sheet(book, job, sheets, formats)  # first: sheets appear in creation order
    bodies = [write_case_sheet(book, name, group, count, xml, formats) for group, name, count, xml in parts]
    close_book(book, package, path, bodies)
    return {"file": job.file, "kode_kabupaten": job.kode, "sheets": sheets}


def write_batch(jobs: list[KabJob], folder: Path) -> list[dict]:
    """Several kabupaten/kota workbooks (run in a worker process): their rows' XML in one
    go, then each file. A file depends on its own cases only, whatever the batch."""
    style = cell_style()
    rows: dict[int, list[tuple[str, str, int, int, str]]] = {}
    for job, *sheet in case_rows_xml(jobs, style).iter_rows():  # a few rows per sheet, not per case
        rows.setdefault(job, []).append(tuple(sheet))
    return [write_kab_workbook(job, rows.get(i, []), folder, style) for i, job in enumerate(jobs)]


def cell_style() -> CellStyle:
    """The case cells' style indices, which every workbook assigns alike (Formats)."""
    book = xlsxwriter.Workbook(io.BytesIO())
    return Formats(book).cells


def batches(jobs: list[KabJob], size: int) -> list[list[KabJob]]:
    """Consecutive jobs in batches of about `size` cases, largest batch first."""
    found: list[list[KabJob]] = []
    held = size  # the first job opens the first batch; no job, no batch
    for job in jobs:
        if held >= size:
            found.append([])
            held = 0
        found[-1].append(job)
        held += job.cases.height
    return sorted(found, key=lambda batch: -sum(job.cases.height for job in batch))


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def write_all(jobs: list[KabJob], folder: Path, workers: int | None) -> tuple[list[dict], int]:
    """Write every job's workbook, in worker processes when there is enough work; returns
    the results in the jobs' order (each file depends on its job only, so the bytes do not
    depend on the number of workers) and the number of processes used."""
    cases = sum(job.cases.height for job in jobs)
    workers_used = max(1, min(workers or default_workers(), len(jobs)))
    if workers is None and cases < PARALLEL_MIN_CASES:
        workers_used = 1
    # With workers, at least two batches each, so the work is shared out.
    work = batches(jobs, BATCH_CASES if workers_used == 1 else min(BATCH_CASES, -(-cases // (2 * workers_used))))
    if workers_used == 1:
        results = [result for batch in work for result in write_batch(batch, folder)]
    else:
        # "spawn": the parent runs polars and DuckDB threads, which a forked child must not inherit.
        pool = ProcessPoolExecutor(max_workers=workers_used, mp_context=multiprocessing.get_context("spawn"))
        try:
            results = [result for done in pool.map(write_batch, work, itertools.repeat(folder)) for result in done]
        finally:  # interrupted or failed: the files not started are not written (the round is discarded)
            pool.shutdown(wait=True, cancel_futures=True)
    return sorted(results, key=lambda r: r["kode_kabupaten"]), workers_used


# --------------------------------------------------------------------------- the national summary


def national_table(work_dir: Path, results: list[dict], anomalies: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """One row per kabupaten/kota with DTKS rows: its file, its rows, its cases per sheet and
    per code (the cases its workbook lists)."""
    files = pl.DataFrame([{"_kab": r["kode_kabupaten"], "file": r["file"]} for r in results],
                         schema={"_kab": pl.String, "file": pl.String})
    sheet_of = {code: rule.sheet for code, rule in anomaly_rules().items()}
    cases = anomalies.with_columns(_sheet=pl.col("anomaly_code").replace_strict(sheet_of))
    per_sheet = [cases.filter(pl.col("_sheet") == g).group_by("_kab").agg(pl.col("shown").sum().alias(f"sheet:{g}")) for g in GROUPS]
    codes = [code for codes in GROUPS.values() for code in codes]
    per_code = [cases.filter(pl.col("anomaly_code") == c).group_by("_kab").agg(pl.col("shown").sum().alias(f"code:{c}")) for c in codes]
    table = outcomes.group_by("_kab").agg(rows=pl.col("len").sum())
    table = table.join(pl.concat([anomalies.select("_kab"), files.select("_kab")]).unique(), on="_kab", how="full", coalesce=True)
    for part in per_sheet + per_code:
        table = table.join(part, on="_kab", how="left")
    table = table.join(files, on="_kab", how="left").with_columns(pl.exclude("_kab", "file").fill_null(0))
    table = table.with_columns(cases=pl.sum_horizontal([f"sheet:{g}" for g in GROUPS]))
    return with_region(table.lazy(), "_kab").sort("_kab").collect()


def write_national_summary(work_dir: Path, path: Path, table: pl.DataFrame, anomalies: pl.DataFrame) -> None:
    """ringkasan-nasional.xlsx: the round's reconciliation and, per kabupaten/kota, its
    workbook and its cases per sheet and per code. Aggregates only: nothing to decide."""
    facts = reconciliation_facts(work_dir)
    book, package = open_book(facts.get("as_of"))
    formats = Formats(book)
    settings = workbook_settings()
    sheet = book.add_worksheet(settings["summary_sheet"])
    sheet.set_column(0, 0, 24)
    sheet.set_column(1, 1, 60)
    sheet.set_column(2, 7, 16)
    lines = Lines(sheet, formats)
    lines.write("Ringkasan nasional verval DTKS", fmt=formats.title)
    lines.write("Putaran per", facts.get("as_of") or "-")
    lines.skip()
    reconciliation_lines(lines, facts)
    lines.skip()
    lines.write("Lembar kerja per kabupaten/kota", fmt=formats.bold)
    written = table.filter(pl.col("file").is_not_null()).height
    for text in (
        f"{written} lembar kerja, satu per kabupaten/kota yang memiliki kasus, di folder {settings['folder']}/ "
        "dengan nama <kode kabupaten>-<nama>.xlsx. Kasus tiap baris DTKS ada di lembar kerja kabupaten/kota baris itu.",
        "Keputusan diisi di lembar kerja kabupaten/kota. Kembalikan file-file itu (atau seluruh folder) untuk putaran "
        f"berikutnya; file ini ({settings['national_file']}) hanya berisi angka dan tidak dibaca sebagai keputusan.",
        f"Lembar '{settings['national_sheet']}': jumlah baris DTKS dan kasus per lembar dan per kode tiap kabupaten/kota.",
    ):
        lines.write(None, text, fmt=formats.wrap)
    lines.skip()
    meaning_lines(lines, list(GROUPS))
    lines.skip()
    counts: dict[str, dict[str, int]] = {}
    for code, action, n in anomalies.group_by("anomaly_code", "action").agg(pl.col("n").sum()).iter_rows():
        counts.setdefault(code, {})[action] = n
    shown = anomalies.with_columns(_sheet=pl.col("anomaly_code").replace_strict({c: r.sheet for c, r in anomaly_rules().items()}))
    count_lines(lines, counts, {group: int(shown.filter(pl.col("_sheet") == group)["shown"].sum()) for group in GROUPS})

    per_kab = book.add_worksheet(settings["national_sheet"])
    codes = [code for codes in GROUPS.values() for code in codes]
    headers = ["Kode", "Kabupaten/kota", "Provinsi", "Lembar kerja", "Baris DTKS", "Kasus", *GROUPS, *codes]
    columns = ["_kab", "nama_kabupaten", "nama_provinsi", "file", "rows", "cases",
               *(f"sheet:{g}" for g in GROUPS), *(f"code:{c}" for c in codes)]
    for col, (header, width) in enumerate(zip(headers, [8, 28, 22, 36] + [11] * (len(headers) - 4))):
        per_kab.set_column(col, col, width)
    lines = Lines(per_kab, formats)
    lines.write(*headers, fmt=formats.header)
    for row in table.select(columns).iter_rows():  # one line per kabupaten/kota: a few hundred
        lines.write(*row)
    per_kab.freeze_panes(1, 0)
    per_kab.autofilter(0, 0, max(table.height, 1), len(headers) - 1)
    per_kab.ignore_errors({"number_stored_as_text": f"A1:A{table.height + 1}"})
    close_book(book, package, path, [])


def plan_workbooks(work_dir: Path, full_nik: bool = False, max_rows_per_sheet: int = 1_000_000,
                   ) -> tuple[pl.DataFrame, pl.DataFrame, list[KabJob]]:
    """The round's tallies per kabupaten/kota and one job per workbook to write."""
    max_rows = max(1, min(max_rows_per_sheet, EXCEL_MAX_ROWS - 1))
    anomalies, outcomes = kab_tallies(work_dir)
    return anomalies, outcomes, kab_jobs(work_dir, anomalies, outcomes, full_nik, max_rows)


def finish_workbooks(work_dir: Path, folder: Path, results: list[dict], anomalies: pl.DataFrame, outcomes: pl.DataFrame,
                     full_nik: bool, workers: int) -> dict:
    """The national summary after every kabupaten/kota file is written (`results`, in
    kabupaten order), and what the round reports about the workbooks."""
    national = workbook_settings()["national_file"]
    write_national_summary(work_dir, folder / national, national_table(work_dir, results, anomalies, outcomes), anomalies)
    sheets: dict[str, int] = {}
    for result in results:
        for name, rows in result["sheets"].items():
            sheets[name] = sheets.get(name, 0) + rows
    return {
        "folder": str(folder),
        "national": national,
        "files": {result["file"]: result["sheets"] for result in results},
        "sheets": sheets,
        "workers": workers,
        "full_nik": full_nik,
        "keys": list(KEY_COLUMNS),
        "decision_columns": list(DECISION_COLUMNS),
        "decisions": list(DECISIONS),
    }


def write_workbooks(work_dir: Path, folder: Path, full_nik: bool = False, workers: int | None = None,
                    max_rows_per_sheet: int = 1_000_000) -> dict:
    """The reviewers' workbooks of the round in work_dir, in folder: one per kabupaten/kota
    of the DTKS row (`<kode>-<nama>.xlsx`, only kabs with a case) and the national summary.
    NIKs (and KK numbers) are masked unless full_nik=True. `workers`: processes writing the
    kab files (default: one per core when the round is large enough)."""
    work_dir, folder = Path(work_dir), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    anomalies, outcomes, jobs = plan_workbooks(work_dir, full_nik, max_rows_per_sheet)
    results, used = write_all(jobs, folder, workers)
    return finish_workbooks(work_dir, folder, results, anomalies, outcomes, full_nik, used)
