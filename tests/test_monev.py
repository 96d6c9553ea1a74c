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


def test_monev_page_in_headless_chromium(three_rounds, tmp_path):
    import shutil
    import time

    from tests.test_report_html import Chromium

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed: `make test` installs Debian's chromium (apt-get install -y chromium)"
    page = tmp_path / "monev.html"
    assert main(["monev", "--out", str(three_rounds["out"]), "--html", str(page)]) == 0
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    points = "[...document.querySelectorAll('#charts svg.trend')].map(s => s.dataset.key + ':' + s.querySelector('polyline').getAttribute('points').split(' ').length)"
    browser = Chromium(binary)
    try:
        browser.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        browser.open(page)
        national_charts = browser.evaluate(points)
        national_rows = browser.evaluate("document.querySelectorAll('#region-table tbody tr').length")
        browser.evaluate("(() => { const p = document.getElementById('pilih-provinsi'); p.value = '32';"
                         " p.dispatchEvent(new Event('change')); const k = document.getElementById('pilih-kabupaten');"
                         " k.value = '3201'; k.dispatchEvent(new Event('change')); })()")
        label = browser.evaluate("document.getElementById('wilayah-terpilih').textContent")
        backlog = browser.evaluate("document.querySelector('#charts svg.trend[data-key=diperiksa] polyline').getAttribute('points')")
        kab_rows = browser.evaluate("[...document.querySelectorAll('#region-table tbody tr')].map(r => r.cells[0].textContent + ' ' + r.cells[1].textContent)")
        browser.evaluate("document.getElementById('unduh-csv').click()")
        deadline = time.monotonic() + 20
        while not list(downloads.glob("*.csv")) and time.monotonic() < deadline:
            time.sleep(0.1)
        exceptions = browser.of("Runtime.exceptionThrown")
        errors = [e["entry"] for e in browser.of("Log.entryAdded") if e["entry"]["level"] == "error"]
        requests = [r["request"]["url"] for r in browser.of("Network.requestWillBeSent")]
    finally:
        browser.close()

    assert len(national_charts) == 13 and all(c.endswith(":3") for c in national_charts)
    assert national_rows == 6  # 2 kabupaten/kota x 3 rounds
    assert label == "Kabupaten Bogor" and kab_rows == [f"{d} 3201" for d in DATES]
    # The backlog of Bogor over three rounds: 1, 1, 0 -> the last point sits on the axis.
    ys = [float(p.split(",")[1]) for p in backlog.split(" ")]
    assert ys[0] == ys[1] < ys[2]
    csv = (list(downloads.glob("*.csv")) or [None])[0]
    assert csv is not None, "the CSV export did not download"
    lines = csv.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("putaran,kode_kabupaten,kabupaten_kota,provinsi,baris,terverifikasi,diperiksa")
    assert [line.split(",")[:2] for line in lines[1:]] == [[d, "3201"] for d in DATES]
    assert exceptions == [] and errors == []
    assert all(url.startswith(("file://", "data:", "blob:")) for url in requests), requests
