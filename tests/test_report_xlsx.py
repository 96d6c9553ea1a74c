"""The reviewers' workbooks (one per kabupaten/kota, plus the national summary) read back
with openpyxl: drop-down decisions, frozen header, autofilter, stable keys, masked NIKs,
input text that looks like a formula stays text, every case in its kabupaten's file once,
and the same bytes whatever the number of worker processes."""

from __future__ import annotations

import re
import zipfile

import openpyxl
import polars as pl
import pytest

from pipeline.progress import StageClock
from pipeline.contract import workbook_settings
from pipeline.report.xlsx import DECISIONS, GROUPS, write_workbooks
from pipeline.round import RoundContext, run_round

HYPERLINK = '=HYPERLINK("http://x")'
# Names and an address an attacker could type into a registration form. Both rows have a
# malformed NIK, so they land on the NIK sheet.
EXTRA_DTKS = [
    'D010,12345,,"=HYPERLINK(""http://x"")",L,BOGOR,1975-03-04,JL A,3201011001,PKH',
    "D012,54321,,@SUM(A1),P,BOGOR,1970-01-01,-2+3,3201011001,PKH",
    "D013,777,,ASEP,L,BANDUNG,1981-01-01,JL B,3273011001,PKH",  # Kota Bandung: a second workbook
]
BOGOR, BANDUNG = "3201-kabupaten-bogor.xlsx", "3273-kota-bandung.xlsx"
NATIONAL = workbook_settings()["national_file"]


@pytest.fixture
def round_out(small_extracts):
    with open(small_extracts["dtks"], "a", encoding="utf-8") as handle:
        handle.write("\n".join(EXTRA_DTKS) + "\n")
    out = small_extracts["dir"] / "out"
    ctx = RoundContext(dtks=str(small_extracts["dtks"]), dukcapil=str(small_extracts["dukcapil"]), out=str(out), as_of="2026-11-21")
    run_round(ctx, StageClock(quiet=True))
    return out, small_extracts


def rows_of(sheet) -> list[dict]:
    values = list(sheet.iter_rows(values_only=True))
    header = values[0]
    return [dict(zip(header, row)) for row in values[1:] if any(v is not None for v in row)]


def input_niks(extracts: dict) -> set[str]:
    text = extracts["dtks"].read_text() + extracts["dukcapil"].read_text()
    return set(re.findall(r"\d{16}", text))


def all_text(book) -> str:
    return "\n".join(str(v) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for v in row if v is not None)


def case_keys(path) -> set[tuple]:
    book = openpyxl.load_workbook(path, read_only=True)
    return {row[:3] for name in book.sheetnames[1:] for row in book[name].iter_rows(min_row=2, values_only=True) if row[0]}


def test_workbook_for_reviewers(round_out, tmp_path):
    out, extracts = round_out
    folder = tmp_path / "anomalies"
    result = write_workbooks(out, folder)
    assert sorted(p.name for p in folder.iterdir()) == [BOGOR, BANDUNG, NATIONAL]
    assert sorted(result["files"]) == [BOGOR, BANDUNG] and result["workers"] == 1  # a small round: no processes
    path = folder / BOGOR
    book = openpyxl.load_workbook(path)

    assert book.sheetnames[0] == "Ringkasan"
    assert set(GROUPS) <= set(book.sheetnames)
    summary_text = "\n".join(str(v) for row in book["Ringkasan"].iter_rows(values_only=True) for v in row if v is not None)
    assert "memang orang yang sama" in summary_text.lower() and "masih hidup" in summary_text.lower()
    assert "Kabupaten Bogor (3201)" in summary_text

    # Every case the round asks about is in exactly one file: the one of its row's kabupaten.
    anomalies = pl.read_parquet(out / "anomalies.parquet")
    to_decide = anomalies.filter(pl.col("action") != "warn")
    bogor, bandung = case_keys(folder / BOGOR), case_keys(folder / BANDUNG)
    assert {k[0] for k in bandung} == {"D013"} and "D013" not in {k[0] for k in bogor}
    assert len(bogor) + len(bandung) == to_decide.height == sum(result["sheets"].values())  # no join fan-out

    national = openpyxl.load_workbook(folder / NATIONAL)
    assert national.sheetnames == ["Ringkasan", workbook_settings()["national_sheet"]]
    national_text = "\n".join(str(v) for row in national["Ringkasan"].iter_rows(values_only=True) for v in row if v is not None)
    assert "SEIMBANG" in national_text
    per_kab = rows_of(national[workbook_settings()["national_sheet"]])
    # Every kabupaten with DTKS rows is listed; one without a case (Mimika) has no file.
    assert {(r["Kode"], r["Lembar kerja"], r["Kasus"]) for r in per_kab} == {
        ("3201", BOGOR, len(bogor)), ("3273", BANDUNG, 1), ("9404", None, 0)}
    assert next(r for r in per_kab if r["Kode"] == "3273")["NIK_INVALID_FORMAT"] == 1

    for name in GROUPS:
        sheet = book[name]
        header = [c.value for c in sheet[1]]
        assert header[:6] == ["id_dtks", "kode_anomali", "id_terkait", "keputusan", "catatan", "pemeriksa"]
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith("A1:")
        validations = sheet.data_validations.dataValidation
        assert len(validations) == 1
        validation = validations[0]
        assert validation.type == "list"
        assert validation.formula1 == '"' + ",".join(DECISIONS) + '"'
        assert str(validation.sqref).startswith("D2")
        assert validation.prompt  # the input message says what each decision means

    duplicates = rows_of(book["Duplikat"])
    assert [(r["id_dtks"], r["id_terkait"]) for r in duplicates] == [("D002", "D001")]

    nik_rows = {r["id_dtks"]: r for r in rows_of(book["NIK"])}
    assert nik_rows["D010"]["Nama"] == "'" + HYPERLINK.upper()  # ingest upper-cases names
    assert nik_rows["D012"]["Nama"] == "'@SUM(A1)"
    assert nik_rows["D012"]["Alamat"] == "'-2+3"
    for row in book["NIK"].iter_rows(min_row=2):
        for cell in row:
            assert cell.data_type != "f", cell.coordinate
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/"):
                assert "<f>" not in archive.read(name).decode(), f"formula in {name}"

    text = all_text(book)
    assert not input_niks(extracts) & set(re.findall(r"\d{16}", text)), "a full NIK in the masked workbook"
    assert "3201********0012" in text  # Siti's NIK, masked
    identity = {(r["id_dtks"], r["kode_anomali"]): r for r in rows_of(book["Identitas"])}
    assert identity[("D007", "IDENTITY_MISMATCH")]["Nama Dukcapil"] == "WAWAN SETIAWAN"
    assert identity[("D007", "IDENTITY_MISMATCH")]["id_terkait"].startswith("3201********")


def test_full_nik_on_request(round_out, tmp_path):
    out, extracts = round_out
    write_workbooks(out, tmp_path, full_nik=True)
    book = openpyxl.load_workbook(tmp_path / BOGOR)
    moved = {r["id_dtks"]: r for r in rows_of(book["Pindah"])}
    nik = pl.read_parquet(out / "review.parquet").filter(pl.col("id_dtks") == "D003")["nik"].item()
    assert moved["D003"]["NIK"] == nik and moved["D003"]["id_terkait"] == nik
    assert input_niks(extracts) & set(re.findall(r"\d{16}", all_text(book)))


def test_large_group_continues_on_next_sheet(round_out, tmp_path):
    out, _ = round_out
    result = write_workbooks(out, tmp_path, max_rows_per_sheet=2)
    book = openpyxl.load_workbook(tmp_path / BOGOR)
    nik_sheets = [name for name in book.sheetnames if name == "NIK" or name.startswith("NIK (")]
    assert len(nik_sheets) >= 2
    assert sum(result["files"][BOGOR][name] for name in nik_sheets) == len(
        [r for name in nik_sheets for r in rows_of(book[name])]
    )
    assert all(book[name].freeze_panes == "A2" for name in nik_sheets)


def test_same_bytes_whatever_the_number_of_workers(round_out, tmp_path):
    """Each file depends on its kabupaten only, and carries the round's date as its creation
    time: two processes write what one writes, and a rerun writes the same bytes."""
    out, _ = round_out
    write_workbooks(out, tmp_path / "one", workers=1)
    assert write_workbooks(out, tmp_path / "two", workers=2)["workers"] == 2
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted([BOGOR, BANDUNG, NATIONAL])
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    with zipfile.ZipFile(tmp_path / "one" / BOGOR) as archive:
        assert "2026-11-21T00:00:00Z" in archive.read("docProps/core.xml").decode()


@pytest.mark.parametrize("last", [1, 2, 7, 777_776, 1_048_575])
def test_a_case_sheet_frame_is_what_xlsxwriter_writes_for_its_last_row(last):
    """Every workbook reuses a case sheet's frame written once, with its own last row put
    in: the result is what xlsxwriter writes for a sheet ending on that row, and no case
    sheet is selected (Excel would group the selected sheets, and an edit would go to all)."""
    from pipeline.report import xlsx

    for group in GROUPS:
        reused = xlsx.case_sheet_frame(group, last)
        assert reused == xlsx.written_frame(group, last), group
        assert b"tabSelected" not in reused
