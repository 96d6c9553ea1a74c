"""Ingest failure modes and formats: every row is staged or quarantined with its line."""

import polars as pl
import pytest

from pipeline.errors import InputError
from pipeline.ingest import ingest_extract, map_columns

TODAY = "2026-11-21"
NIK_A = "320101" + "450190" + "0012"
NIK_B = "320101" + "030285" + "0001"
HEADER = "id_dtks,nik,no_kk,nama,jenis_kelamin,tempat_lahir,tanggal_lahir,alamat,kode_wilayah,program"


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def ingest(tmp_path, path, kind="dtks"):
    result = ingest_extract(path, kind, tmp_path / "staging", TODAY)
    return result, pl.read_parquet(result.staging_path), pl.read_parquet(result.quarantine_path)


def test_missing_required_columns_stop_before_work_and_name_them(tmp_path):
    path = write(tmp_path / "dtks.csv", "id_dtks,nama,jenis_kelamin\nD1,SITI,P\n")
    with pytest.raises(InputError) as error:
        ingest(tmp_path, path)
    message = str(error.value)
    for column in ("nik", "tanggal_lahir", "kode_wilayah"):
        assert column in message
    assert "dtks.csv" in message and "columns.toml" in message
    assert not (tmp_path / "staging" / "dtks.parquet").exists()


def test_aliases_are_matched_case_insensitively(tmp_path):
    path = write(
        tmp_path / "siks.csv",
        "IDARTBDT,Nik,Nama_Lgkp,JNS_KEL,Tgl. Lahir,KODE_DESA\n" f"A1,{NIK_A},siti aminah,2,05/01/1990,32.01.01.1001\n",
    )
    result, staged, quarantine = ingest(tmp_path, path)
    assert result.column_mapping["id_dtks"] == "IDARTBDT"
    assert result.column_mapping["tanggal_lahir"] == "Tgl. Lahir"
    row = staged.row(0, named=True)
    assert (row["nik"], row["jenis_kelamin"], str(row["tanggal_lahir"]), row["kode_wilayah"]) == (
        NIK_A, "P", "1990-01-05", "3201011001")
    assert row["nama"] == "SITI AMINAH"
    assert quarantine.height == 0


def test_split_region_columns_are_assembled(tmp_path):
    path = write(
        tmp_path / "dtks.csv",
        "ID_DTKS,NIK,NAMA,JK,TGL_LAHIR,KDPROP,KDKAB,KDKEC,KDDESA\n" f"A1,{NIK_A},SITI,P,1990-01-05,32,01,01,1001\n",
    )
    _, staged, _ = ingest(tmp_path, path)
    assert staged["kode_wilayah"].to_list() == ["3201011001"]


def test_bad_rows_are_quarantined_with_line_and_reason(tmp_path):
    lines = [
        HEADER,
        f"D1,{NIK_A},,SITI,P,,1990-01-05,,3201011001,PKH",  # line 2: good
        f"D2,{NIK_B},,BUDI,L,,1985-02-03,,3201011001,PKH,EXTRA",  # line 3: too many fields
        f"D3,{NIK_B},,,L,,1985-02-03,,3201011001,PKH",  # line 4: empty nama
        f"D4,{NIK_B},,BUDI,X,,1985-02-03,,3201011001,PKH",  # line 5: unknown sex
        f"D5,{NIK_B},,BUDI,L,,31-02-1985,,3201011001,PKH",  # line 6: impossible date
        f"D6,{NIK_B},,BUDI,L,,TIDAK TAHU,,3201011001,PKH",  # line 7: unreadable date
        f"D1,{NIK_B},,BUDI,L,,1985-02-03,,3201011001,PKH",  # line 8: duplicate id
        f"D7,{NIK_B},,BUDI,L,,1985-02-03,,32010110,PKH",  # line 9: short region code
        "D8,,,BUDI,L,,1985-02-03,,3201011001,PKH",  # line 10: empty NIK is an anomaly, not quarantine
    ]
    result, staged, quarantine = ingest(tmp_path, write(tmp_path / "dtks.csv", "\n".join(lines) + "\n"))
    assert result.rows_in == 9
    assert result.rows_staged + result.rows_quarantined == result.rows_in
    assert staged["id_dtks"].to_list() == ["D1", "D8"]
    assert staged["source_line"].to_list() == [2, 10]
    reasons = dict(zip(quarantine["line"].to_list(), quarantine["reason"].to_list()))
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9]
    assert "11 kolom" in reasons[3]
    assert "nama kosong" in reasons[4]
    assert "jenis_kelamin" in reasons[5]
    assert "tanggal_lahir" in reasons[6] and "tanggal_lahir" in reasons[7]
    assert "id_dtks ganda (baris 2 yang dipakai)" in reasons[8]
    assert "kode_wilayah" in reasons[9]


def test_semicolon_csv(tmp_path):
    path = write(tmp_path / "dtks.csv", HEADER.replace(",", ";") + "\n" + f"D1;{NIK_A};;SITI;P;;1990-01-05;;3201011001;PKH\n")
    result, staged, _ = ingest(tmp_path, path)
    assert result.delimiter == ";"
    assert staged["nik"].to_list() == [NIK_A]


def test_windows_1252_names_survive(tmp_path):
    # 0x92 is a right single quote in Windows-1252 but a control code in Latin-1.
    text = HEADER + "\n" + f"D1,{NIK_A},,NUR\u2019AINI,P,,1990-01-05,,3201011001,PKH\n"
    result, staged, _ = ingest(tmp_path, write(tmp_path / "dtks.csv", text, encoding="cp1252"))
    assert result.encoding == "cp1252"
    assert staged["nama"].to_list() == ["NUR\u2019AINI"]


def test_utf8_bom_header(tmp_path):
    text = "\ufeff" + HEADER + "\n" + f"D1,{NIK_A},,SITI,P,,1990-01-05,,3201011001,PKH\n"
    result, staged, _ = ingest(tmp_path, write(tmp_path / "dtks.csv", text))
    assert result.column_mapping["id_dtks"] in ("id_dtks", "\ufeffid_dtks")
    assert staged["id_dtks"].to_list() == ["D1"]


def test_nik_is_never_a_float_and_decorations_are_stripped(tmp_path):
    text = HEADER + "\n" + f"D1,'{NIK_A},,SITI,P,,1990-01-05,,3201011001,PKH\n" + f"D2, {NIK_B} ,,BUDI,L,,1985-02-03,,3201011001,PKH\n"
    _, staged, _ = ingest(tmp_path, write(tmp_path / "dtks.csv", text))
    assert staged["nik"].to_list() == [NIK_A, NIK_B]
    assert staged.schema["nik"] == pl.String


def write_xlsx(path, rows):
    """A workbook with the DTKS header; a row value that is an int is written as a number cell."""
    import xlsxwriter

    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet()
    for col, name in enumerate(HEADER.split(",")):
        sheet.write_string(0, col, name)
    for row, values in enumerate(rows, start=1):
        for col, value in enumerate(values):
            (sheet.write_number if isinstance(value, int) else sheet.write_string)(row, col, value)
    book.close()
    return path


def test_xlsx_is_read_as_text(tmp_path):
    row = ["D1", NIK_A, "", "SITI", "P", "", "05-01-1990", "", "3201011001", "PKH"]
    bad = ["D2", NIK_A, "", "SITI", "P", "", "bukan tanggal", "", "3201011001", "PKH"]
    result, staged, quarantine = ingest(tmp_path, write_xlsx(tmp_path / "dtks.xlsx", [row, bad]))
    assert result.file_format == "xlsx"
    assert staged["nik"].to_list() == [NIK_A]
    assert quarantine["line"].to_list() == [3]


def test_xlsx_with_nik_stored_as_numbers_is_refused(tmp_path):
    # What Excel keeps of a typed 16-digit NIK: 15 significant digits.
    rows = [[f"D{i}", 3201014501900010 + i * 10, "", "SITI", "P", "", "05-01-1990", "", "3201011001", "PKH"] for i in (1, 2)]
    with pytest.raises(InputError, match="holds NIKs as numbers"):
        ingest(tmp_path, write_xlsx(tmp_path / "dtks.xlsx", rows))


def test_parquet_with_float_nik_is_refused(tmp_path):
    path = tmp_path / "dtks.parquet"
    pl.DataFrame({"id_dtks": ["D1"], "nik": [3.201014501900012e15], "nama": ["SITI"], "jenis_kelamin": ["P"],
                  "tanggal_lahir": ["1990-01-05"], "kode_wilayah": ["3201011001"]}).write_parquet(path)
    with pytest.raises(InputError, match="floating-point"):
        ingest(tmp_path, path)


def test_unsupported_file_type(tmp_path):
    with pytest.raises(InputError, match="unsupported file type"):
        ingest(tmp_path, write(tmp_path / "dtks.json", "{}"))


def test_map_columns_reports_headers_found(tmp_path):
    with pytest.raises(InputError, match="Headers found: A, B"):
        map_columns(["A", "B"], "dukcapil", tmp_path / "x.csv")


def test_xlsx_count_is_the_same_in_small_blocks(tmp_path, monkeypatch):
    import pipeline.ingest as ingest_module

    rows = [[f"D{i}", NIK_A[:-2] + f"{i:02d}", "", "SITI", "P", "", "05-01-1990", "", "3201011001", "PKH"] for i in range(1, 30)]
    path = write_xlsx(tmp_path / "dtks.xlsx", rows)
    monkeypatch.setattr(ingest_module, "XML_BLOCK", 300)
    result, staged, _ = ingest(tmp_path, path)
    assert result.rows_in == 29 and staged["source_line"].to_list() == list(range(2, 31))


def test_xlsx_cells_without_references_still_catch_numeric_niks(tmp_path):
    import re
    import zipfile

    rows = [[f"D{i}", 3201014501900010 + i * 10, "", "SITI", "P", "", "05-01-1990", "", "3201011001", "PKH"] for i in (1, 2)]
    plain = write_xlsx(tmp_path / "plain.xlsx", rows)
    stripped = tmp_path / "dtks.xlsx"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(stripped, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, re.sub(rb'(<c) r="[A-Z]+\d+"', rb"\1", data) if name.endswith("sheet1.xml") else data)
    with pytest.raises(InputError, match="holds NIKs as numbers"):
        ingest(tmp_path, stripped)


def test_a_parquet_extract_staged_in_chunks_is_the_one_read_whole(tmp_path, monkeypatch):
    import datetime as dt

    import pipeline.ingest as ingest_module

    n = 23
    path = tmp_path / "dukcapil.parquet"
    pl.DataFrame({
        "nik": [NIK_A[:-2] + f"{i:02d}" for i in range(n)],
        "no_kk": [float(3201010101900000 + i) for i in range(n)],  # floats: dropped, with one warning for the file
        "nama": ["" if i % 7 == 3 else f"WARGA {i}" for i in range(n)],  # every 7th from 3 has no name
        "jenis_kelamin": ["P" if i % 2 else "L" for i in range(n)],
        "tanggal_lahir": [dt.date(1990, 1, 1 + i % 28) for i in range(n)],
        "kode_wilayah": [3201011001] * n,  # integers: staged as text
        "tanggal_meninggal": ["2024-01-02" if i == 20 else "" for i in range(n)],
    }).write_parquet(path, row_group_size=5)

    def stage(chunk_rows: int, where: str):
        monkeypatch.setattr(ingest_module, "PARQUET_CHUNK_ROWS", chunk_rows)
        result = ingest_extract(path, "dukcapil", tmp_path / where, "2026-11-21")
        return (result, pl.read_parquet(tmp_path / where / "dukcapil.parquet"),
                pl.read_parquet(tmp_path / where / "dukcapil_quarantine.parquet"))

    whole, staged, quarantine = stage(10**6, "whole")
    chunked, staged_c, quarantine_c = stage(4, "chunks")
    assert staged_c.equals(staged) and quarantine_c.equals(quarantine)
    # ... and what the whole-file reader (DTKS's way) makes of it
    raw, _, _ = ingest_module.read_extract(path, "dukcapil", "--dukcapil", tmp_path)
    rows, _ = ingest_module.normalise(raw, "dukcapil", map_columns(raw.columns[:-2], "dukcapil", path), "2026-11-21")
    assert rows.drop("_lines").equals(staged)
    assert quarantine["line"].to_list() == [4, 11, 18] and staged["source_line"].to_list()[:3] == [1, 2, 3]
    assert (chunked.rows_in, chunked.rows_staged, chunked.rows_quarantined) == (n, n - 3, 3)
    assert chunked.warnings == whole.warnings and len(whole.warnings) == 1 and "23 values" in whole.warnings[0]
    assert staged.filter(pl.col("deceased"))["source_line"].to_list() == [21]
    assert staged["kode_wilayah"].unique().to_list() == ["3201011001"]


def test_dtks_parquet_staged_in_chunks_settles_repeated_ids_across_chunks(tmp_path, monkeypatch):
    """A repeated id_dtks keeps its first sound row even when its rows fall in different
    chunks: the same staging and quarantine, reasons included, as the whole file read at once."""
    import datetime as dt

    import pipeline.ingest as ingest_module

    n = 20
    ids = [f"D{i:03d}" for i in range(n)]
    ids[9] = "D001"     # D001 again, five rows after its sound first row: quarantined, naming line 2
    ids[13] = " D004 "  # D004 again (spaces stripped); its first row (line 5) has no name, so line 14 is kept
    ids[17] = "D016"    # D016 twice, both without a name: no sound row for the id
    path = tmp_path / "dtks.parquet"
    pl.DataFrame({
        "id_dtks": ids,
        "nik": [NIK_A[:-2] + f"{i:02d}" for i in range(n)],
        "nama": ["" if i in (4, 16, 17) else f"WARGA {i}" for i in range(n)],
        "jenis_kelamin": ["P" if i % 2 else "L" for i in range(n)],
        "tanggal_lahir": [dt.date(1990, 1, 1 + i) for i in range(n)],
        "kode_wilayah": ["3201011001"] * n,
    }).write_parquet(path)

    def stage(chunk_rows: int, where: str):
        monkeypatch.setattr(ingest_module, "PARQUET_CHUNK_ROWS", chunk_rows)
        ingest_extract(path, "dtks", tmp_path / where, "2026-11-21")
        return pl.read_parquet(tmp_path / where / "dtks.parquet"), pl.read_parquet(tmp_path / where / "dtks_quarantine.parquet")

    staged, quarantine = stage(10**6, "whole")
    staged_c, quarantine_c = stage(3, "chunks")
    assert staged_c.equals(staged) and quarantine_c.equals(quarantine)
    reasons = dict(zip(quarantine["line"], quarantine["reason"]))
    assert reasons[10].startswith("id_dtks ganda (baris 2 yang dipakai)")
    assert reasons[5].startswith("id_dtks ganda (baris 14 yang dipakai)")
    assert reasons[17].startswith("id_dtks ganda (tidak ada baris yang sah") and reasons[18].startswith("id_dtks ganda (tidak")
    assert sorted(reasons) == [5, 10, 17, 18]
    assert staged.filter(pl.col("id_dtks") == "D004")["source_line"].to_list() == [14]
    # ... and what reading the whole file at once makes of it
    raw, _, _ = ingest_module.read_extract(path, "dtks", "--dtks", tmp_path)
    rows, _ = ingest_module.normalise(raw, "dtks", map_columns(raw.columns[:-2], "dtks", path), "2026-11-21")
    assert rows.drop("_lines").equals(staged)


def test_text_cleaning_turns_every_whitespace_run_into_one_space():
    from pipeline.ingest import _clean_text

    values = ["  SITI   AMINAH ", "A\tB", "A \t B", "A\u00a0B", "A\u3000\u3000B", "A B C", "\t", "", None, "A\n\nB", "ONE"]
    cleaned = pl.DataFrame({"v": values}).select(_clean_text(pl.col("v")).alias("v"))["v"].to_list()
    assert cleaned == ["SITI AMINAH", "A B", "A B", "A B", "A B", "A B C", None, None, None, "A B", "ONE"]
    # The same as replacing every run, the plain way.
    plain = pl.DataFrame({"v": values}).select(pl.col("v").str.strip_chars().str.replace_all(r"\s+", " "))["v"].to_list()
    assert [c or "" for c in cleaned] == [p or "" for p in plain]


def test_dates_are_read_as_registries_write_them():
    """Day before month, any of the declared separators, a compact date, a month's name in
    Bahasa or English; a two-digit year is not guessed (read as year 85, out of range, the
    row is quarantined), nor is an impossible date."""
    import datetime as dt

    from pipeline.ingest import parse_date

    written = ["1985-07-05", "05-07-1985", "5/7/1985", "05.07.1985", "1985/07/05", "19850705", "1985-07-05 00:00:00",
               "5 JULI 1985", "5-Jul-1985", "05 juli 1985", "17 AGUSTUS 1945", "1 Des. 1999", "31 FEB 2001", "05/07/85",
               "HIDUP", "", None]
    read = pl.DataFrame({"d": written}).select(parse_date(pl.col("d")))["d"].to_list()
    july = dt.date(1985, 7, 5)
    assert read == [july] * 10 + [dt.date(1945, 8, 17), dt.date(1999, 12, 1), None, dt.date(85, 7, 5), None, None, None]


def test_every_declared_spelling_of_sex_is_read_and_nothing_else():
    from pipeline.ingest import normalise_sex

    written = ["L", " lk ", "Laki-laki", "PRIA", "M", "male", "P", "Perempuan", "wanita", "F", "2", "1", "X", "-", None]
    read = pl.DataFrame({"s": written}).select(normalise_sex(pl.col("s")))["s"].to_list()
    assert read == ["L"] * 6 + ["P"] * 5 + ["L", None, None, None]
