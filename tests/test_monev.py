"""Monev across three rounds at one --out: indicators carried forward per kabupaten,
monev.html self-contained, numbers equal to the rounds' own, no personal data."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from pipeline.cli import main
from pipeline.monev import COUNTS, INDICATORS_FILE, gather, national, round_indicators
from pipeline.progress import StageClock
from pipeline.round import RoundContext, run_round

DATES = ("2026-01-02", "2026-07-01", "2027-01-02")


@pytest.fixture(scope="module")
def three_rounds(tmp_path_factory):
    """The hand-made extracts run three times into one --out; before the last round a
    reviewer rejects D003's move, so the backlog shrinks. Each round is also kept aside."""
    from tests.conftest import DTKS_HEADER, DUKCAPIL_HEADER, make_nik

    base = tmp_path_factory.mktemp("monev")
    siti = make_nik("320101", "1990-01-05", True, 12)
    budi = make_nik("320101", "1985-02-03", False, 1)
    suparman = make_nik("320101", "1960-05-05", False, 1)
    dtks = [
        f"D001,{siti},,SITI AMINAH,P,BOGOR,1990-01-05,JL MAWAR 1,3201011001,PKH",
        f"D002,{siti},,St. Aminah binti Salim,P,BOGOR,05-01-1990,JL MAWAR 1,3201011001,PKH",
        f"D003,{budi},,BUDI SANTOSO,L,BOGOR,1985-02-03,JL MELATI,3201011001,BPNT",
        f"D006,{suparman},,SUPARMAN,L,BOGOR,1960-05-05,JL Z,3273011001,PKH",
        "D004,3.20101E+15,,JOKO,L,BOGOR,1970-07-01,JL X,3273011001,PKH",
    ]
    dukcapil = [
        f"{siti},,SITI AMINAH,P,BOGOR,1990-01-05,JL MAWAR 1,3201011001,",
        f"{budi},,BUDI SANTOSO,L,BOGOR,1985-02-03,JL MELATI,3273011001,",
        f"{suparman},,SUPARMAN,L,BOGOR,1960-05-05,JL Z,3273011001,2024-03-01",
    ]
    (base / "dtks.csv").write_text(DTKS_HEADER + "\n" + "\n".join(dtks) + "\n")
    (base / "dukcapil.csv").write_text(DUKCAPIL_HEADER + "\n" + "\n".join(dukcapil) + "\n")
    out, kept = base / "out", []
    log = base / "decisions.jsonl"
    for i, date in enumerate(DATES):
        decisions = None
        if i == 2:
            (base / "filled.csv").write_text(
                "id_dtks,kode_anomali,id_terkait,keputusan,catatan,pemeriksa\n"
                f"D003,RELOCATED,{budi[:4]}********{budi[-4:]},TOLAK,masih di sini,P01\n")
            decisions = str(base / "filled.csv")
        ctx = RoundContext(dtks=str(base / "dtks.csv"), dukcapil=str(base / "dukcapil.csv"), out=str(out), as_of=date,
                           decisions=decisions, decision_log=str(log))
        run_round(ctx, StageClock(quiet=True))
        kept.append(base / f"round-{i}")
        import shutil

        shutil.copytree(out, kept[-1])
    return {"out": out, "rounds": kept, "inputs": dtks + dukcapil}


def test_indicators_are_carried_across_rounds(three_rounds):
    history = pl.read_parquet(three_rounds["out"] / INDICATORS_FILE)
    assert sorted(history["as_of"].unique()) == list(DATES)
    assert sorted(history["kode_kabupaten"].unique()) == ["3201", "3273"]
    # The history equals the indicators recomputed from each kept round folder.
    recomputed = gather(rounds=list(reversed(three_rounds["rounds"])))
    assert recomputed.equals(gather(out=three_rounds["out"]))
    for folder, date in zip(three_rounds["rounds"], DATES):
        summary = json.loads((folder / "summary.json").read_text())
        rec = summary["reconciliation"]
        row = national(round_indicators(folder)).row(0, named=True)
        assert row["as_of"] == date
        assert (row["terverifikasi"], row["diperiksa"], row["dikeluarkan"]) == (rec["verified"], rec["review"], rec["excluded"])
        assert row["baris"] == rec["rows_in"] - rec["quarantined"]
        assert row["keluar_meninggal"] == 1 and row["keluar_ganda"] == 1  # D006 dead, D002 a strong duplicate
    bogor = history.filter(pl.col("kode_kabupaten") == "3201").sort("as_of")
    assert bogor["diperiksa"].to_list() == [1, 1, 0]  # D003's move rejected by a reviewer in the last round
    assert bogor["keputusan_diambil"].to_list() == [0, 0, 1]


def test_monev_page_is_offline_and_holds_no_personal_data(three_rounds, tmp_path):
    page_path = tmp_path / "monev.html"
    assert main(["monev", "--out", str(three_rounds["out"]), "--html", str(page_path)]) == 0
    page = page_path.read_text()
    lowered = page.lower().replace('"http://www.w3.org/2000/svg"', "")  # a namespace name, not a request
    for forbidden in ("http://", "https://", "<link", "<script src", "@import"):
        assert forbidden not in lowered
    assert not re.search(r"(?<![a-z])url\(", lowered)  # CSS url(); createObjectURL( is the CSV export
    for line in three_rounds["inputs"]:
        for value in line.split(","):
            if len(value) >= 4 and not value.isupper() or re.fullmatch(r"\d{16}", value):
                assert value not in page, value
    for name in ("SITI AMINAH", "SUPARMAN", "BUDI", "D001", "D003"):
        assert name not in page
    national_table = re.search(r'<table id="national-table">(.*?)</table>', page, re.S).group(1)
    assert all(date in national_table for date in DATES)
    data = json.loads(re.search(r'id="monev-data">(.*?)</script>', page, re.S).group(1))
    assert data["rounds"] == list(DATES) and data["counts"] == COUNTS
    assert {k["kode"] for k in data["kabupaten"]} == {"3201", "3273"}
