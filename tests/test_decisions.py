"""Reviewers' decisions carried into the next round: never merged again, alive overrides
a death, a confirmed NIK repair applied, malformed and stale decisions reported, and the
append-only log carrying decisions into rounds that are not given the file again."""

import json

import polars as pl
import pytest

from pipeline.progress import StageClock
from pipeline.round import RoundContext, run_round

JOKO_NIK = "320101" + "010770" + "0007"
BOGOR = "3201-kabupaten-bogor.xlsx"


def run(extracts, out, **kwargs):
    ctx = RoundContext(dtks=str(extracts["dtks"]), dukcapil=str(extracts["dukcapil"]), out=str(out),
                       as_of="2026-11-21", **kwargs)
    return run_round(ctx, StageClock(quiet=True))


def anomaly(out, id_dtks, code):
    frame = pl.read_parquet(out / "anomalies.parquet").filter((pl.col("id_dtks") == id_dtks) & (pl.col("anomaly_code") == code))
    return frame.row(0, named=True) if frame.height else None


def outcome(out, id_dtks):
    for name in ("verified_recipients", "review", "excluded"):
        if id_dtks in pl.read_parquet(out / f"{name}.parquet")["id_dtks"].to_list():
            return name
    return None


@pytest.fixture
def first_round(small_extracts):
    out = small_extracts["dir"] / "round1"
    run(small_extracts, out)
    return out


def write_decisions(path, rows):
    header = "id_dtks,kode_anomali,id_terkait,keputusan,catatan,pemeriksa"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_first_round_raises_what_the_reviewers_decide_on(first_round):
    assert anomaly(first_round, "D002", "DUPLICATE_PERSON")["action"] == "exclude"
    assert anomaly(first_round, "D006", "DECEASED")["action"] == "exclude"
    nik = anomaly(first_round, "D004", "NIK_INVALID_FORMAT")
    assert nik["related_id"] == JOKO_NIK and "NIK usulan" in nik["detail"]


def test_decisions_are_applied_logged_and_carried_forward(small_extracts, first_round):
    log = small_extracts["dir"] / "decisions.jsonl"
    masked = JOKO_NIK[:4] + "*" * 8 + JOKO_NIK[-4:]
    decisions = write_decisions(small_extracts["dir"] / "keputusan.csv", [
        "D002,DUPLICATE_PERSON,D001,TOLAK,beda orang (ibu dan anak),Rina",
        f"D006,DECEASED,{'320101' + '050560' + '0001'},TOLAK,masih hidup; dicek ke desa,Rina",
        f"D004,NIK_INVALID_FORMAT,{masked},SETUJU,NIK sesuai KTP,Budi",
        "D999,DECEASED,,SETUJU,baris sudah dihapus,Budi",
        "D003,RELOCATED,,MUNGKIN,,Budi",
    ])
    out = small_extracts["dir"] / "round2"
    summary = run(small_extracts, out, decisions=str(decisions), decision_log=str(log))

    clusters = pl.read_parquet(out / "duplicate_clusters.parquet")
    ids = dict(zip(clusters["id_dtks"], clusters["cluster_id"]))
    assert ids["D001"] != ids["D002"]  # never merged again
    assert anomaly(out, "D002", "NIK_SHARED") is not None  # two people, one NIK
    assert anomaly(out, "D006", "DECEASED")["action"] == "warn"
    assert "TOLAK oleh Rina" in anomaly(out, "D006", "DECEASED")["detail"]
    assert outcome(out, "D006") == "verified_recipients"
    repaired = pl.read_parquet(out / "verified_recipients.parquet").filter(pl.col("id_dtks") == "D004").row(0, named=True)
    assert repaired["nik"] == JOKO_NIK and repaired["nik_asli"] == "3.20101E+15"

    rejected = pl.read_parquet(out / "decisions_rejected.parquet")
    assert rejected.height == 1 and rejected["row"].to_list() == [6] and "MUNGKIN" in rejected["reason"][0]
    status = pl.read_parquet(out / "decisions_applied.parquet")
    # Stale because the row has left the extract, not because its anomaly is gone.
    assert status.filter(pl.col("id_dtks") == "D999")["status"].item().startswith("stale: baris tidak ada lagi")
    assert summary["decisions"]["applied"] == 3 and summary["decisions"]["stale"] == 1
    assert summary["decisions"]["nik_repairs"] == 1

    assert log.stat().st_mode & 0o777 == 0o600  # it names reviewers and rows: owner only
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(logged) == 4 and {r["pemeriksa"] for r in logged} == {"Rina", "Budi"}
    assert all(r["source_file"] == "keputusan.csv" and r["recorded_at"] for r in logged)
    assert not any(JOKO_NIK in line for line in log.read_text().splitlines())  # masked keys only

    # The next workbook does not ask again about what was decided.
    import openpyxl

    book = openpyxl.load_workbook(out / "anomalies" / BOGOR, read_only=True)
    asked = {row[0] for name in ("Meninggal", "Duplikat") for row in book[name].iter_rows(min_row=2, values_only=True)}
    assert "D006" not in asked and "D002" not in asked

    # Next round, no decision file given: the log carries the decisions; nothing re-logged.
    again = small_extracts["dir"] / "round3"
    run(small_extracts, again, decision_log=str(log))
    assert anomaly(again, "D006", "DECEASED")["action"] == "warn"
    assert pl.read_parquet(again / "duplicate_clusters.parquet").filter(pl.col("id_dtks").is_in(["D001", "D002"]))["cluster_id"].n_unique() == 2
    run(small_extracts, small_extracts["dir"] / "round4", decisions=str(decisions), decision_log=str(log))
    assert len(log.read_text().splitlines()) == 4  # append-only, idempotent


def test_decision_file_missing_a_key_column_stops_the_round(small_extracts, first_round):
    from pipeline.errors import InputError

    decisions = small_extracts["dir"] / "bad.csv"
    decisions.write_text("id_dtks,keputusan\nD001,SETUJU\n")
    log = small_extracts["dir"] / "log.jsonl"
    before = (first_round / "summary.json").read_bytes()
    with pytest.raises(InputError, match="bad.csv: lacks column\\(s\\) kode_anomali"):
        run(small_extracts, first_round, decisions=str(decisions), decision_log=str(log))
    assert (first_round / "summary.json").read_bytes() == before
    assert not log.exists()


def fill(path, id_dtks: str, keputusan: str, pemeriksa: str, to):
    """Fill keputusan / pemeriksa of id_dtks's case in a kabupaten workbook, as a reviewer would."""
    import openpyxl

    book = openpyxl.load_workbook(path)
    for sheet in book.worksheets[1:]:
        headers = [cell.value for cell in sheet[1]]
        for row in range(2, sheet.max_row + 1):
            if sheet.cell(row, headers.index("id_dtks") + 1).value == id_dtks:
                sheet.cell(row, headers.index("keputusan") + 1).value = keputusan
                sheet.cell(row, headers.index("pemeriksa") + 1).value = pemeriksa
                book.save(to)
                return to
    raise AssertionError(f"{id_dtks} not in {path}")


def test_filled_kabupaten_workbooks_are_read_back(small_extracts):
    """Two kabupaten offices return their workbooks: both are read, given as files or as
    the folder they came in (whose national summary is not a decision file)."""
    from pipeline.decisions import read_decision_files

    with open(small_extracts["dtks"], "a", encoding="utf-8") as handle:
        handle.write("D013,777,,ASEP,L,BANDUNG,1981-01-01,JL B,3273011001,PKH\n")  # Kota Bandung
    first = small_extracts["dir"] / "round1"
    run(small_extracts, first)
    bandung = next((first / "anomalies").glob("3273-*.xlsx"))
    returned = small_extracts["dir"] / "kembali"
    returned.mkdir()
    files = [fill(first / "anomalies" / BOGOR, "D002", "TOLAK", "Sari", returned / BOGOR),
             fill(bandung, "D013", "TOLAK", "Ujang", returned / bandung.name)]

    out = small_extracts["dir"] / "round-xlsx"
    summary = run(small_extracts, out, decisions=[str(f) for f in files])
    clusters = pl.read_parquet(out / "duplicate_clusters.parquet")
    assert clusters.filter(pl.col("id_dtks").is_in(["D001", "D002"]))["cluster_id"].n_unique() == 2
    status = {r["id_dtks"]: r for r in pl.read_parquet(out / "decisions_applied.parquet").iter_rows(named=True)}
    assert (status["D002"]["sheet"], status["D002"]["pemeriksa"], status["D002"]["status"]) == ("Duplikat", "Sari", "applied: pasangan tidak digabung")
    assert (status["D013"]["source_file"], status["D013"]["sheet"], status["D013"]["status"]) == (bandung.name, "NIK", "applied")
    assert anomaly(out, "D013", "NIK_INVALID_FORMAT")["action"] == "warn" and outcome(out, "D013") == "verified_recipients"
    assert summary["decisions"]["malformed"] == 0

    # The round's folder as it was handed back, national summary and all: the same decisions.
    import shutil

    shutil.copy(first / "anomalies" / "ringkasan-nasional.xlsx", returned)
    from_folder, malformed, _ = read_decision_files(str(returned), "2026-11-21T00:00:00+07:00")
    assert sorted(from_folder["id_dtks"].to_list()) == ["D002", "D013"] and malformed.height == 0
