"""A corpus of bad and awkward input, built at test time (no committed binaries).

Each Case writes a small round's files (a clean base of 12 DTKS people and their Dukcapil
records, then one fault) and says what verval must answer: the exit code, what the
message must say (file, column or line, what to do), which input lines must be
quarantined and why, and how many records the generator wrote, which is the
independent count the round's reconciliation is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

DTKS_COLUMNS = ["id_dtks", "nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir", "alamat", "kode_wilayah", "program"]
DUKCAPIL_COLUMNS = ["nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir", "alamat", "kode_wilayah", "tanggal_meninggal"]
DECISION_HEADER = "id_dtks,kode_anomali,id_terkait,keputusan,catatan,pemeriksa"


def make_nik(kec: str, dob: str, female: bool, serial: int) -> str:
    year, month, day = dob.split("-")
    return f"{kec}{int(day) + (40 if female else 0):02d}{month}{year[2:]}{serial:04d}"


@dataclass(frozen=True)
class Person:
    id_dtks: str
    kec: str
    dob: str
    female: bool
    name: str
    died: str = ""

    @property
    def nik(self) -> str:
        return make_nik(self.kec, self.dob, self.female, 1)

    @property
    def kk(self) -> str:
        return f"{self.kec}010115{int(self.id_dtks[1:]):04d}"

    @property
    def desa(self) -> str:
        return f"{self.kec}1001"

    def dtks(self, **change: str) -> dict:
        row = {"id_dtks": self.id_dtks, "nik": self.nik, "no_kk": self.kk, "nama": self.name,
               "jenis_kelamin": "P" if self.female else "L", "tempat_lahir": "BOGOR", "tanggal_lahir": self.dob,
               "alamat": "JL MAWAR 1", "kode_wilayah": self.desa, "program": "PKH"}
        return {**row, **change}

    def dukcapil(self, **change: str) -> dict:
        row = {k: v for k, v in self.dtks().items() if k in DUKCAPIL_COLUMNS}
        return {**row, "tanggal_meninggal": self.died, **change}


PEOPLE = [
    Person("D001", "320101", "1990-01-05", True, "SITI AMINAH"),
    Person("D002", "320101", "1985-02-03", False, "BUDI SANTOSO"),
    Person("D003", "320102", "1977-07-07", False, "ANDI WIJAYA"),
    Person("D004", "320102", "1988-08-08", True, "RINA MARLINA"),
    Person("D005", "327301", "1965-03-12", False, "SUPARMAN HADI"),
    Person("D006", "327301", "1972-11-30", True, "WATI SURYANI"),
    Person("D007", "320103", "1995-06-15", False, "JOKO PRASETYO"),
    Person("D008", "320103", "1959-12-01", True, "SRI WAHYUNI"),
    Person("D009", "320104", "2001-04-20", False, "DEDI KURNIAWAN"),
    Person("D010", "320104", "1983-09-09", True, "NUR HASANAH"),
    Person("D011", "320105", "1950-01-01", False, "KARTO SUWIRYO", died="2024-03-01"),
    Person("D012", "320105", "1948-05-05", True, "PAINEM LESTARI", died="2023-07-17"),
]
# Family members who are only in Dukcapil (the civil registry holds every member).
RELATIVES = [Person(f"R{i:03d}", p.kec, f"20{10 + i:02d}-0{1 + i % 9}-1{i % 9}", i % 2 == 0, f"ANAK KE{i} {p.name.split()[0]}")
             for i, p in enumerate(PEOPLE[:8], start=1)]
STRANGER = Person("D099", "320106", "1979-10-10", False, "YOHANES KAMBUAYA")
DEAD = {"D011", "D012"}


def personal_data() -> list[str]:
    """Every NIK, KK number and name the corpus writes: none may reach a terminal or log."""
    values = []
    for person in [*PEOPLE, *RELATIVES, STRANGER]:
        values += [person.nik, person.kk, person.name, person.name.title()]
    return values


# --------------------------------------------------------------------------- writing


def field_text(value: str, sep: str) -> str:
    if any(c in value for c in (sep, '"', "\n", "\r")):
        return '"' + value.replace('"', '""') + '"'
    return value


def line_of(row: dict, columns: list[str], sep: str = ",") -> str:
    return sep.join(field_text(row.get(c, ""), sep) for c in columns)


def dtks_lines(rows: list[dict] | None = None, columns: list[str] = DTKS_COLUMNS, sep: str = ",") -> list[str]:
    rows = rows if rows is not None else [p.dtks() for p in PEOPLE]
    return [sep.join(columns)] + [line_of(r, columns, sep) for r in rows]


def dukcapil_lines(rows: list[dict] | None = None, columns: list[str] = DUKCAPIL_COLUMNS) -> list[str]:
    rows = rows if rows is not None else [p.dukcapil() for p in [*PEOPLE, *RELATIVES]]
    return [",".join(columns)] + [line_of(r, columns) for r in rows]


def write_lines(path: Path, lines: list[str], newline: str = "\n", encoding: str = "utf-8") -> Path:
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list], blank_rows: tuple[int, ...] = ()) -> Path:
    """A workbook; an int value becomes a number cell; sheet rows in blank_rows stay empty."""
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    for col, name in enumerate(header):
        sheet.write_string(0, col, name)
    sheet_row = 1
    for values in rows:
        while sheet_row + 1 in blank_rows:
            sheet_row += 1
        for col, value in enumerate(values):
            (sheet.write_number if isinstance(value, int) else sheet.write_string)(sheet_row, col, value)
        sheet_row += 1
    book.close()
    return path


# --------------------------------------------------------------------------- cases


@dataclass
class Run:
    """What one case hands to `verval run` and what it must get back."""

    dtks: Path | str
    dukcapil: Path | str
    out: Path
    exit_code: int
    says: tuple[str, ...] = ()  # the message (stderr) names these: file, column or line, what to do
    quarantine: dict[tuple[str, int], str] = field(default_factory=dict)  # (source, line) -> reason fragment
    dtks_records: int | None = None  # records the generator wrote: the independent count
    dtks_lines: int | None = None  # physical lines of a CSV DTKS file
    dukcapil_records: int | None = None
    extra: list[str] = field(default_factory=list)
    decision_log: Path | None = None
    check: Callable[[Path], None] | None = None  # more about the published round
    preexisting: Path | None = None  # something at or in --out that must stay byte-identical

    def argv(self) -> list[str]:
        log = self.decision_log or self.out.parent / "decision-log.jsonl"
        return ["run", "--dtks", str(self.dtks), "--dukcapil", str(self.dukcapil), "--out", str(self.out),
                "--as-of", "2026-11-21", "--quiet", "--decision-log", str(log), *self.extra]


@dataclass
class Case:
    name: str
    build: Callable[[Path], Run]


def base(d: Path, dtks: list[str] | None = None, dukcapil: list[str] | None = None, **run) -> Run:
    """The clean round with DTKS and/or Dukcapil lines replaced; counts from the lines."""
    dtks_path = write_lines(d / "dtks.csv", dtks or dtks_lines())
    dukcapil_path = write_lines(d / "dukcapil.csv", dukcapil or dukcapil_lines())
    lines = dtks or dtks_lines()
    defaults = {"dtks_records": len(lines) - 1, "dtks_lines": len(lines), "dukcapil_records": len(dukcapil or dukcapil_lines()) - 1}
    return Run(dtks=dtks_path, dukcapil=dukcapil_path, out=d / "out", **{"exit_code": 0, **defaults, **run})


def replaced(lines: list[str], line: int, text: str) -> list[str]:
    """lines with physical line `line` (1-based) replaced."""
    return lines[: line - 1] + [text] + lines[line:]


def bad_birth_date(person: Person = STRANGER) -> str:
    return line_of(person.dtks(tanggal_lahir="31-02-1985"), DTKS_COLUMNS)


CASES: list[Case] = []


def case(function: Callable[[Path], Run]) -> Callable[[Path], Run]:
    CASES.append(Case(function.__name__, function))
    return function


# --- DTKS: the file itself


@case
def dtks_empty_file(d):
    run = base(d, exit_code=2, says=("dtks.csv", "is empty", "export finished"))
    (d / "dtks.csv").write_bytes(b"")
    return run


@case
def dtks_blank_lines_only(d):
    run = base(d, exit_code=2, says=("dtks.csv", "only blank lines", "header line"))
    (d / "dtks.csv").write_bytes(b"\n \n\t\n\n")
    return run


@case
def dtks_header_only(d):
    return base(d, dtks=dtks_lines([]), exit_code=2, says=("dtks.csv", "no usable data rows", "rows below the header"))


@case
def dtks_path_is_a_folder(d):
    run = base(d, exit_code=2, says=("dtks.csv", "is a folder", "extract file itself"))
    (d / "dtks.csv").unlink()
    (d / "dtks.csv").mkdir()
    return run


@case
def dtks_file_not_found(d):
    run = base(d, exit_code=2, says=("missing.csv", "file not found", "check the path"))
    run.dtks = d / "missing.csv"
    return run


@case
def dtks_unsupported_suffix(d):
    run = base(d, exit_code=2, says=("dtks.json", "unsupported file type", ".csv"))
    run.dtks = d / "dtks.json"
    run.dtks.write_text("{}")
    return run


@case
def dtks_workbook_saved_as_csv(d):
    run = base(d, exit_code=2, says=("dtks.csv", "Excel workbook", ".xlsx"))
    write_xlsx(d / "book.xlsx", DTKS_COLUMNS, [list(p.dtks().values()) for p in PEOPLE])
    (d / "dtks.csv").write_bytes((d / "book.xlsx").read_bytes())
    return run


@case
def dtks_utf16_without_bom(d):
    run = base(d, exit_code=2, says=("dtks.csv", "UTF-16", "CSV UTF-8"))
    write_lines(d / "dtks.csv", dtks_lines(), encoding="utf-16-le")
    return run


@case
def dtks_utf16_with_bom(d):
    run = base(d, says=("dtks.csv", "UTF-16"))
    write_lines(d / "dtks.csv", dtks_lines(), encoding="utf-16")
    return run


@case
def dtks_windows_1252(d):
    rows = [p.dtks() for p in PEOPLE]
    rows[2] = PEOPLE[2].dtks(tempat_lahir="CIAMIS \u2013 JABAR", alamat="GG. NUR\u2019AINI")
    run = base(d, says=("dtks.csv", "Windows-1252"))
    write_lines(d / "dtks.csv", dtks_lines(rows), encoding="cp1252")

    def check(out: Path) -> None:
        row = pl.read_parquet(out / "verified_recipients.parquet").filter(pl.col("id_dtks") == "D003").row(0, named=True)
        assert (row["tempat_lahir"], row["alamat"]) == ("CIAMIS \u2013 JABAR", "GG. NUR\u2019AINI")

    run.check = check
    return run


@case
def dtks_invalid_utf8_in_one_row(d):
    lines = dtks_lines()
    lines[3] = lines[3].replace("JL MAWAR 1", "JL MELATI \u2019A")  # valid UTF-8 elsewhere in the file
    run = base(d, quarantine={("dtks", 6): "bukan UTF-8"}, says=("dtks.csv", "not UTF-8", "quarantined"))
    data = ("\n".join(lines) + "\n").encode()
    good = lines[5].encode()
    (d / "dtks.csv").write_bytes(data.replace(good, good.replace(b"JL MAWAR 1", b"JL JOS\xc9 1")))
    return run


@case
def dtks_crlf_line_endings(d):
    lines = replaced(dtks_lines(), 7, bad_birth_date())
    run = base(d, dtks=lines, quarantine={("dtks", 7): "tanggal_lahir"})
    write_lines(d / "dtks.csv", lines, newline="\r\n")
    return run


@case
def dtks_cr_line_endings(d):
    lines = replaced(dtks_lines(), 9, bad_birth_date())
    run = base(d, dtks=lines, quarantine={("dtks", 9): "tanggal_lahir"})
    write_lines(d / "dtks.csv", lines, newline="\r")
    return run


@case
def dtks_semicolon_separated(d):
    return base(d, dtks=dtks_lines(sep=";"))


@case
def dtks_blank_lines_inside_and_after(d):
    lines = dtks_lines()
    lines = lines[:2] + [""] + lines[2:5] + ["   "] + lines[5:7] + [bad_birth_date()] + lines[7:] + ["", "", ""]
    # physical lines: header 1, D001 2, blank 3, D002-D004 4-6, blank 7, D005-D006 8-9, bad 10
    return base(d, dtks=lines, quarantine={("dtks", 10): "tanggal_lahir"}, dtks_records=13)


# --- DTKS: one bad record among good ones


@case
def dtks_too_few_fields(d):
    short = line_of(STRANGER.dtks(), DTKS_COLUMNS[:8])
    return base(d, dtks=replaced(dtks_lines(), 5, short), quarantine={("dtks", 5): "8 kolom, padahal judul punya 10"})


@case
def dtks_too_many_fields(d):
    long = line_of(STRANGER.dtks(), DTKS_COLUMNS) + ",EXTRA"
    return base(d, dtks=replaced(dtks_lines(), 6, long), quarantine={("dtks", 6): "11 kolom, padahal judul punya 10"})


@case
def dtks_unterminated_quote(d):
    broken = line_of(STRANGER.dtks(), DTKS_COLUMNS).replace(STRANGER.name, '"' + STRANGER.name)
    return base(d, dtks=replaced(dtks_lines(), 4, broken), quarantine={("dtks", 4): "tidak ditutup"})


@case
def dtks_two_unterminated_quotes(d):
    lines = dtks_lines()
    broken = line_of(STRANGER.dtks(), DTKS_COLUMNS).replace(STRANGER.name, '"' + STRANGER.name)
    lines = replaced(replaced(lines, 4, broken), 9, broken.replace("D099", "D098"))
    return base(d, dtks=lines, quarantine={("dtks", 4): "tidak ditutup", ("dtks", 9): "tidak ditutup"})


@case
def dtks_quoted_line_break_then_bad_row(d):
    rows = [p.dtks() for p in PEOPLE]
    rows[2] = PEOPLE[2].dtks(alamat="JL MELATI 7\nRT 01 RW 02")  # one record on physical lines 4-5
    lines = dtks_lines(rows)
    lines = lines[:9] + [bad_birth_date()] + lines[9:]  # the bad record starts on physical line 11
    return base(d, dtks=lines, quarantine={("dtks", 11): "tanggal_lahir"}, dtks_records=13, dtks_lines=15)


@case
def dtks_carriage_return_in_value(d):
    rows = [p.dtks() for p in PEOPLE]
    rows[1] = PEOPLE[1].dtks(nama=PEOPLE[1].name + "\r=3+4")
    return base(d, dtks=dtks_lines(rows), quarantine={("dtks", 3): "CR (carriage return)"})


@case
def dtks_quote_inside_unquoted_value(d):
    unquoted = ",".join(STRANGER.dtks(alamat='JL "KENANGA" 3').values())
    lines = replaced(dtks_lines(), 8, unquoted)
    return base(d, dtks=lines, quarantine={("dtks", 8): "di tengah nilai"})


@case
def dtks_header_repeated_mid_file(d):
    lines = dtks_lines()
    lines = lines[:7] + [lines[0]] + lines[7:]
    return base(d, dtks=lines, quarantine={("dtks", 8): "judul kolom terulang"}, dtks_records=13)


@case
def dtks_column_named_twice(d):
    lines = [line + "," + (line.split(",")[1] if i else "NIK") for i, line in enumerate(dtks_lines())]
    return base(d, dtks=lines, exit_code=2, says=("dtks.csv", "'nik' 2 times", "columns 2, 11", "remove or rename"))


@case
def dtks_missing_required_column(d):
    columns = [c for c in DTKS_COLUMNS if c != "tanggal_lahir"]
    return base(d, dtks=dtks_lines(columns=columns), exit_code=2,
                says=("dtks.csv", "lacks required column(s): tanggal_lahir", "TGL_LAHIR", "columns.toml"))


@case
def dtks_line_over_2mb(d):
    huge = line_of(STRANGER.dtks(alamat="JL PANJANG " * 250_000, tanggal_lahir="bukan tanggal"), DTKS_COLUMNS)
    return base(d, dtks=replaced(dtks_lines(), 10, huge), quarantine={("dtks", 10): "tanggal_lahir tidak terbaca"})


@case
def dtks_repeated_id_first_row_bad(d):
    rows = [p.dtks() for p in PEOPLE]
    rows[1] = PEOPLE[1].dtks(tanggal_lahir="00-00-0000")
    rows.append(PEOPLE[1].dtks())  # the same id again, sound: this one is used
    return base(d, dtks=dtks_lines(rows), quarantine={("dtks", 3): "id_dtks ganda (baris 14 yang dipakai)"})


@case
def dtks_every_row_unusable(d):
    rows = [p.dtks(jenis_kelamin="X") for p in PEOPLE]
    return base(d, dtks=dtks_lines(rows), exit_code=2, says=("dtks.csv", "no usable data rows", "12 quarantined"))


# --- DTKS as Parquet and XLSX


def dtks_frame(**columns) -> pl.DataFrame:
    frame = pl.DataFrame([p.dtks() for p in PEOPLE])
    return frame.with_columns(**columns) if columns else frame


@case
def dtks_parquet_cut_short(d):
    run = base(d, exit_code=2, says=("dtks.parquet", "not a complete Parquet file", "export it again"))
    run.dtks = d / "dtks.parquet"
    dtks_frame().write_parquet(run.dtks)
    data = run.dtks.read_bytes()
    run.dtks.write_bytes(data[: len(data) // 2])
    return run


@case
def dtks_parquet_nik_as_float(d):
    run = base(d, exit_code=2, says=("dtks.parquet", "'nik'", "floating-point", "NIK as text"))
    run.dtks = d / "dtks.parquet"
    dtks_frame(nik=pl.col("nik").cast(pl.Float64)).write_parquet(run.dtks)
    return run


@case
def dtks_parquet_desa_code_as_float(d):
    run = base(d)
    run.dtks, run.dtks_lines = d / "dtks.parquet", None
    dtks_frame(kode_wilayah=pl.col("kode_wilayah").cast(pl.Float64)).write_parquet(run.dtks)
    return run


@case
def dtks_parquet_kk_as_float(d):
    run = base(d, says=("dtks.parquet", "'no_kk'", "floating-point", "Export no_kk as text"))
    run.dtks, run.dtks_lines = d / "dtks.parquet", None
    dtks_frame(no_kk=pl.col("no_kk").cast(pl.Float64)).write_parquet(run.dtks)
    return run


def xlsx_rows(numeric_nik_at: tuple[int, ...] = ()) -> list[list]:
    rows = [list(p.dtks().values()) for p in PEOPLE]
    for index in numeric_nik_at:
        rows[index][1] = int(rows[index][1])
    return rows


@case
def dtks_xlsx_some_niks_are_numbers(d):
    run = base(d, quarantine={("dtks", 3): "angka di Excel", ("dtks", 6): "angka di Excel"})
    run.dtks, run.dtks_lines = write_xlsx(d / "dtks.xlsx", DTKS_COLUMNS, xlsx_rows((1, 4))), None
    return run


@case
def dtks_xlsx_all_niks_are_numbers(d):
    run = base(d, exit_code=2, says=("dtks.xlsx", "'nik'", "holds NIKs as numbers", "Format the column as Text"))
    run.dtks = write_xlsx(d / "dtks.xlsx", DTKS_COLUMNS, xlsx_rows(tuple(range(len(PEOPLE)))))
    return run


@case
def dtks_xlsx_not_a_workbook(d):
    run = base(d, exit_code=2, says=("dtks.xlsx", "cannot read the workbook", "save it again"))
    run.dtks = d / "dtks.xlsx"
    run.dtks.write_text("\n".join(dtks_lines()))
    return run


@case
def dtks_xlsx_blank_rows_then_bad_row(d):
    rows = xlsx_rows()
    rows[7][6] = "31-02-1985"  # sheet row 11 once rows 4 and 8 stay blank
    run = base(d, quarantine={("dtks", 11): "tanggal_lahir"})
    run.dtks, run.dtks_lines = write_xlsx(d / "dtks.xlsx", DTKS_COLUMNS, rows, blank_rows=(4, 8)), None
    return run


# --- Dukcapil


@case
def dukcapil_no_rows(d):
    return base(d, dukcapil=dukcapil_lines([]), exit_code=2,
                says=("--dukcapil", "dukcapil.csv", "0 usable rows for 12 DTKS rows", "--allow-partial-dukcapil"))


@case
def dukcapil_no_rows_allowed(d):
    def check(out: Path) -> None:
        assert pl.read_parquet(out / "excluded.parquet").height == 0
        assert pl.read_parquet(out / "review.parquet").height == 12  # NIK_NOT_FOUND: a reviewer decides

    return base(d, dukcapil=dukcapil_lines([]), extra=["--allow-partial-dukcapil"], check=check,
                says=("allowed by --allow-partial-dukcapil", "0 usable rows"))


@case
def dukcapil_without_death_column(d):
    columns = [c for c in DUKCAPIL_COLUMNS if c != "tanggal_meninggal"]
    return base(d, dukcapil=dukcapil_lines(columns=columns), exit_code=2,
                says=("dukcapil.csv", "no death-date column", "TGL_MENINGGAL", "--allow-partial-dukcapil"))


@case
def dukcapil_far_smaller_than_dtks(d):
    return base(d, dukcapil=dukcapil_lines([p.dukcapil() for p in PEOPLE[:4]]), exit_code=2,
                says=("dukcapil.csv", "4 usable rows for 12 DTKS rows", "full Dukcapil extract"))


@case
def dukcapil_missing_nik_column(d):
    columns = [c for c in DUKCAPIL_COLUMNS if c != "nik"]
    return base(d, dukcapil=dukcapil_lines(columns=columns), exit_code=2,
                says=("--dukcapil", "dukcapil.csv", "lacks required column(s): nik", "columns.toml"))


def only_the_dead_excluded(out: Path) -> None:
    excluded = pl.read_parquet(out / "excluded.parquet")["id_dtks"].to_list()
    assert sorted(excluded) == sorted(DEAD)
    deceased = pl.read_parquet(out / "anomalies.parquet").filter(pl.col("anomaly_code") == "DECEASED")
    assert sorted(deceased["id_dtks"]) == sorted(DEAD)


@case
def dukcapil_alive_placeholders(d):
    placeholders = ["-", "HIDUP", "NULL", "0000-00-00", "N/A", "TIDAK", "0", " hidup ", "null"]
    rows = [p.dukcapil(tanggal_meninggal=p.died or placeholders[i % len(placeholders)])
            for i, p in enumerate([*PEOPLE, *RELATIVES])]
    return base(d, dukcapil=dukcapil_lines(rows), check=only_the_dead_excluded)


@case
def dukcapil_unreadable_death_entries(d):
    rows = [p.dukcapil() for p in [*PEOPLE, *RELATIVES]]
    rows[10] = PEOPLE[10].dukcapil(tanggal_meninggal="SUDAH MENINGGAL")  # D011: a death, no date
    rows[11] = PEOPLE[11].dukcapil(tanggal_meninggal="2099-01-01")  # D012: a date that cannot be

    def check(out: Path) -> None:
        deceased = pl.read_parquet(out / "anomalies.parquet").filter(pl.col("anomaly_code") == "DECEASED")
        assert dict(zip(deceased["id_dtks"], deceased["action"])) == {"D011": "review", "D012": "review"}
        assert pl.read_parquet(out / "excluded.parquet").height == 0

    return base(d, dukcapil=dukcapil_lines(rows), check=check)


@case
def dukcapil_damaged_records(d):
    lines = dukcapil_lines()
    lines = replaced(lines, 3, lines[2] + ",EXTRA")
    lines = replaced(lines, 15, lines[14].replace(RELATIVES[1].name, '"' + RELATIVES[1].name))
    return base(d, dukcapil=lines, quarantine={("dukcapil", 3): "10 kolom", ("dukcapil", 15): "tidak ditutup"})


# --- reviewers' decisions


def decisions_run(d: Path, text: bytes, name: str = "keputusan.csv", **run) -> Run:
    path = d / name
    path.write_bytes(text)
    result = base(d, **run)
    result.extra = ["--decisions", str(path)]
    return result


def d011_alive(out: Path) -> None:
    assert "D011" in pl.read_parquet(out / "verified_recipients.parquet")["id_dtks"].to_list()


def d011_line(sep: str = ",", reviewer: str = "RINA") -> str:
    return sep.join(["D011", "DECEASED", PEOPLE[10].nik, "TOLAK", "masih hidup", reviewer])


@case
def decisions_workbook_not_a_zip(d):
    return decisions_run(d, b"id_dtks,keputusan\n", name="keputusan.xlsx", exit_code=2,
                         says=("--decisions", "keputusan.xlsx", "cannot be read as an Excel workbook", DECISION_HEADER))


@case
def decisions_empty_csv(d):
    return decisions_run(d, b"", exit_code=2, says=("--decisions", "keputusan.csv", "is empty"))


@case
def decisions_wrong_columns(d):
    return decisions_run(d, b"id,code,decision\nD011,DECEASED,TOLAK\n", exit_code=2,
                         says=("keputusan.csv", "lacks column(s) id_dtks, kode_anomali, keputusan", DECISION_HEADER))


@case
def decisions_semicolon_separated(d):
    text = DECISION_HEADER.replace(",", ";") + "\n" + d011_line(";") + "\n"
    return decisions_run(d, text.encode(), check=d011_alive)


@case
def decisions_windows_1252(d):
    text = DECISION_HEADER + "\n" + d011_line(reviewer="JOS\u00c9 P\u00c9REZ") + "\n"
    return decisions_run(d, text.encode("cp1252"), check=d011_alive, says=("keputusan.csv", "Windows-1252"))


@case
def decisions_ragged_row(d):
    text = DECISION_HEADER + "\n" + d011_line() + "\n" + "D012,DECEASED,,TOLAK,a,b,c,d\n"

    def check(out: Path) -> None:
        d011_alive(out)
        rejected = pl.read_parquet(out / "decisions_rejected.parquet")
        assert rejected["row"].to_list() == [3] and "8 kolom" in rejected["reason"][0]

    return decisions_run(d, text.encode(), check=check, says=("1 decision row(s) could not be used", "decisions_rejected.parquet"))


@case
def decisions_not_logged_when_the_round_fails(d):
    text = DECISION_HEADER + "\n" + d011_line() + "\n"
    columns = [c for c in DTKS_COLUMNS if c != "nama"]
    run = decisions_run(d, text.encode(), dtks=dtks_lines(columns=columns), exit_code=2, says=("lacks required column(s): nama",))
    log = run.out.parent / "decision-log.jsonl"

    def check(_out: Path) -> None:
        assert not log.exists()

    run.check = check
    return run


@case
def decision_log_damaged(d):
    run = base(d, exit_code=2, says=("--decision-log", "line 1", "restore the log"))
    run.decision_log = d / "log.jsonl"
    run.decision_log.write_text("this is not json\n{\"id_dtks\": \"D1\", \"anomaly_code\": \"DECEASED\", \"keputusan\": \"TOLAK\"}\n")
    return run


# --- the --out folder


@case
def out_folder_holds_other_files(d):
    run = base(d, exit_code=2, says=("--out", "a.txt", "verval never replaces them"))
    run.out.mkdir()
    (run.out / "a.txt").write_text("keep me")
    run.preexisting = run.out
    return run


@case
def out_is_a_file(d):
    run = base(d, exit_code=2, says=("--out", "is a file, not a folder"))
    run.out.write_text("keep me")
    run.preexisting = run.out
    return run


@case
def out_is_a_foreign_symlink(d):
    run = base(d, exit_code=2, says=("--out", "symbolic link verval did not create"))
    (d / "elsewhere").mkdir()
    (d / "elsewhere" / "notes.txt").write_text("keep me")
    run.out.symlink_to(d / "elsewhere")
    run.preexisting = d / "elsewhere"
    return run


@case
def out_is_the_current_folder(d):
    run = base(d, exit_code=2, says=("--out", "is the current folder"))
    run.out = Path(".")
    run.preexisting = d  # the test runs in d: nothing in it may change
    return run


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under path (or path itself), by relative name, for byte-identity checks."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}

