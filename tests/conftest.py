"""Shared fixtures. NIKs are assembled from parts (kecamatan + DDMMYY + serial)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

DTKS_HEADER = "id_dtks,nik,no_kk,nama,jenis_kelamin,tempat_lahir,tanggal_lahir,alamat,kode_wilayah,program"
DUKCAPIL_HEADER = "nik,no_kk,nama,jenis_kelamin,tempat_lahir,tanggal_lahir,alamat,kode_wilayah,tanggal_meninggal"


def run_csv_round(base, dtks: list[str], dukcapil: list[str], **settings):
    """A round over DTKS and Dukcapil CSV lines (without headers) in `base`; returns its
    --out. `settings`: more RoundContext fields (partitions=3 ...)."""
    from pipeline.progress import StageClock
    from pipeline.round import RoundContext, run_round

    (base / "dtks.csv").write_text(DTKS_HEADER + "\n" + "\n".join(dtks) + "\n", encoding="utf-8")
    (base / "dukcapil.csv").write_text(DUKCAPIL_HEADER + "\n" + "\n".join(dukcapil) + "\n", encoding="utf-8")
    ctx = RoundContext(dtks=str(base / "dtks.csv"), dukcapil=str(base / "dukcapil.csv"), out=str(base / "out"),
                       as_of="2026-11-21", decision_log=str(base / "decisions.jsonl"), **settings)
    run_round(ctx, StageClock(quiet=True))
    return base / "out"


def make_nik(kec: str, dob: str, female: bool, serial: int) -> str:
    """dob as YYYY-MM-DD."""
    year, month, day = dob.split("-")
    return f"{kec}{int(day) + (40 if female else 0):02d}{month}{year[2:]}{serial:04d}"


@pytest.fixture
def small_extracts(tmp_path: Path) -> dict[str, Path]:
    """A hand-made round: one of each situation the first slice must recognise."""
    siti = make_nik("320101", "1990-01-05", True, 12)
    budi = make_nik("320101", "1985-02-03", False, 1)
    yohanes = make_nik("910901", "1980-01-02", False, 3)  # retired Papua prefix (Mimika)
    suparman = make_nik("320101", "1960-05-05", False, 1)
    andi = make_nik("320101", "1977-07-07", False, 1)
    rina = make_nik("320101", "1988-08-08", True, 1)
    kk = "3201010101150001"
    dtks = [
        f"D001,{siti},{kk},SITI AMINAH,P,BOGOR,1990-01-05,JL MAWAR 1,3201011001,PKH",
        f"D002,{siti},{kk},St. Aminah binti Salim,P,BOGOR,05-01-1990,JL MAWAR 1,3201011001,PKH",
        f"D003,{budi},,BUDI SANTOSO,L,BOGOR,1985-02-03,JL MELATI,3201011001,BPNT",
        "D004,3.20101E+15,,JOKO,L,BOGOR,1970-07-01,JL X,3201011001,PKH",
        f"D005,{yohanes},,YOHANES,L,TIMIKA,1980-01-02,JL Y,9109012001,PKH",
        f"D006,{suparman},,SUPARMAN,L,BOGOR,1960-05-05,JL Z,3201011001,PKH",
        f"D007,{andi},,ANDI,L,BOGOR,1977-07-07,JL Z,3201011001,PKH",
        f"D008,{rina},,RINA,P,BOGOR,1988-08-08,JL Z,3201011001,PKH",
        f"D009,{make_nik('320101', '1988-08-08', False, 2)},,,X,BOGOR,1988-08-08,JL Z,3201011001,PKH",
    ]
    dukcapil = [
        f"{siti},{kk},SITI AMINAH,P,BOGOR,1990-01-05,JL MAWAR 1,3201011001,",
        f"{budi},,BUDI SANTOSO,L,BOGOR,1985-02-03,JL MELATI,3273011001,",
        f"{yohanes},,YOHANES,L,TIMIKA,1980-01-02,JL Y,9404011002,",
        # The same NIK twice in Dukcapil: a stranger, then the person himself, deceased.
        f"{suparman},,WAGIMAN,L,SOLO,1960-05-05,JL Q,3372011001,",
        f"{suparman},,SUPARMAN,L,BOGOR,1960-05-05,JL Z,3201011001,2024-03-01",
        f"{andi},,WAWAN SETIAWAN,L,BOGOR,1950-02-02,JL Z,3201011001,",
        # JOKO's real NIK, which the Excel-damaged DTKS value no longer shows.
        f"{make_nik('320101', '1970-07-01', False, 7)},,JOKO,L,BOGOR,1970-07-01,JL X,3201011001,",
    ]
    dtks_path = tmp_path / "dtks.csv"
    dukcapil_path = tmp_path / "dukcapil.csv"
    dtks_path.write_text(DTKS_HEADER + "\n" + "\n".join(dtks) + "\n", encoding="utf-8")
    dukcapil_path.write_text(DUKCAPIL_HEADER + "\n" + "\n".join(dukcapil) + "\n", encoding="utf-8")
    return {"dtks": dtks_path, "dukcapil": dukcapil_path, "dir": tmp_path}


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect API for the whole session (starting one costs seconds), with
    its own result storage; yields where Prefect keeps things, for personal-data checks."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, get_current_settings, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-storage")
    # 30 s (Prefect's default) is not always enough on a shared 2-core machine under load.
    with prefect_test_harness(server_startup_timeout=120), temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        url = get_current_settings().server.database.connection_url.get_secret_value()
        yield {"storage": storage, "database": Path(url.split(":///", 1)[1])}


@pytest.fixture(scope="session")
def generated_round(tmp_path_factory):
    """A 20,000-row generated registry with its ineligibility list, run once through the
    round (no Prefect)."""
    from pipeline.progress import StageClock
    from pipeline.round import RoundContext, run_round
    from pipeline.sample import generate_sample

    base = tmp_path_factory.mktemp("generated")
    generate_sample(20_000, 11, base / "data")
    ctx = RoundContext(dtks=str(base / "data" / "dtks.csv"), dukcapil=str(base / "data" / "dukcapil.csv"),
                       out=str(base / "out"), as_of="2026-11-21", ineligible=[str(base / "data" / "ineligible.csv")])
    summary = run_round(ctx, StageClock(quiet=True))
    return {"data": base / "data", "out": base / "out", "summary": summary}
