"""The status page as people use it, in headless Chromium against a real server: region
pickers, a name query, a NIK query, an objection; then the next round hands the objection
to reviewers in the workbook and holds the automatic exclusion it contests."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import polars as pl
import pytest
import uvicorn

from pipeline.lookup.server import Settings, create_app
from pipeline.progress import StageClock
from pipeline.round import RoundContext, run_round
from tests.conftest import make_nik
from tests.test_report_html import Chromium


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(small_extracts, tmp_path):
    out = tmp_path / "out"
    run_round(RoundContext(dtks=str(small_extracts["dtks"]), dukcapil=str(small_extracts["dukcapil"]), out=str(out),
                           as_of="2026-11-21"), StageClock(quiet=True))
    queue = tmp_path / "objections.jsonl"
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(round_path=out, objections_path=queue)),
                                           host="127.0.0.1", port=port, access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}/", "queue": queue, "out": out, "extracts": small_extracts}
    server.should_exit = True
    thread.join(timeout=10)


def wait_until(browser: Chromium, expression: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.evaluate(expression)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {expression}")


def pick(browser: Chromium, level: str, code: str, next_level: str | None) -> None:
    wait_until(browser, f"!document.getElementById('{level}').disabled && "
                        f"!!document.querySelector('#{level} option[value=\"{code}\"]')")
    browser.evaluate(f"(() => {{ const s = document.getElementById('{level}'); s.value = '{code}';"
                     " s.dispatchEvent(new Event('change')); })()")


def ask(browser: Chromium, fields: dict, done: int) -> list[str]:
    setters = "".join(f"document.getElementById('{k}').value = {json.dumps(v)};" for k, v in fields.items())
    browser.evaluate(f"(() => {{ {setters} document.getElementById('ask').requestSubmit(); }})()")
    wait_until(browser, f"document.getElementById('hasil').dataset.done === '{done}'")
    return browser.evaluate(
        "[...document.querySelectorAll('#hasil .answer')].map(a => a.dataset.status + '|' + a.querySelector('.label').textContent"
        " + '|' + (a.querySelector('.who') || {textContent: ''}).textContent)")


def test_status_page_in_headless_chromium_and_objection_reaches_next_workbook(served, tmp_path, caplog, capfd):
    import logging

    # The server's loggers at their most verbose (the test's own DevTools traffic, which
    # carries what it types, logs under websockets and stays out of this).
    for name in ("uvicorn", "uvicorn.error", "verval"):
        caplog.set_level(logging.DEBUG, logger=name)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed: `make test` installs Debian's chromium (apt-get install -y chromium)"
    browser = Chromium(binary)
    try:
        browser.events.clear()
        browser.call("Page.navigate", session=True, url=served["url"])
        browser.wait_for("Page.loadEventFired")
        pick(browser, "provinsi", "32", "kabupaten")
        pick(browser, "kabupaten", "3201", "kecamatan")
        pick(browser, "kecamatan", "320101", "desa")
        pick(browser, "desa", "3201011001", None)
        by_region = ask(browser, {"nama": "Suparman"}, done=1)
        # The objection: from the answer, a category and a short reason.
        browser.evaluate(
            "(() => { const f = document.querySelector('#hasil .answer details form'); f.kategori.value = 'masih_hidup';"
            " f.alasan.value = 'Saya masih hidup, silakan cek ke desa'; f.requestSubmit(); })()")
        receipt = wait_until(browser, "document.querySelector('#hasil .answer details form').dataset.sent")
        shown_receipt = browser.evaluate("document.querySelector('#hasil .receipt').textContent")
        browser.evaluate("(() => { const r = document.querySelector('input[name=cara][value=nik]'); r.checked = true;"
                         " r.dispatchEvent(new Event('change')); })()")
        nik_hidden = browser.evaluate("document.getElementById('by-nik').hidden")
        siti = make_nik("320101", "1990-01-05", True, 12)
        by_nik = ask(browser, {"nik": siti, "nama": "St. Aminah"}, done=2)
        wrong_name = ask(browser, {"nik": siti, "nama": "Budi Santoso"}, done=3)
        requests = [e["request"]["url"] for e in browser.of("Network.requestWillBeSent")]
        exceptions = browser.of("Runtime.exceptionThrown")
        errors = [e["entry"] for e in browser.of("Log.entryAdded") if e["entry"]["level"] == "error"]
    finally:
        browser.close()

    assert by_region == ["tidak_memenuhi_syarat|Tidak memenuhi syarat: tercatat meninggal|Nama: S*******"]
    assert receipt.startswith("TGP-") and shown_receipt == receipt
    assert nik_hidden is False
    assert by_nik == ["terverifikasi|Terverifikasi|Nama: S*** A*****"]
    assert wrong_name == ["tidak_terdaftar|Tidak terdaftar|"]  # a NIK with another name: as if unknown
    assert requests and all(url.startswith(served["url"]) for url in requests), requests
    assert not any(siti in url or "Aminah" in url for url in requests)  # queries are POSTed, never in a URL
    assert exceptions == [] and errors == []
    # A real uvicorn served all that: nothing anyone typed is in its logs.
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    for typed in (siti, "Suparman", "Aminah", "Budi Santoso", "masih hidup"):
        assert typed not in logs

    # The next round reads the queue: a case on the reviewers' sheet, keyed by the receipt,
    # and D006's automatic DECEASED exclusion held for review.
    nxt = tmp_path / "next"
    extracts = served["extracts"]
    run_round(RoundContext(dtks=str(extracts["dtks"]), dukcapil=str(extracts["dukcapil"]), out=str(nxt), as_of="2027-05-21",
                           objections=str(served["queue"])), StageClock(quiet=True))
    sheet = pl.read_excel(next((nxt / "anomalies").glob("3201-*.xlsx")), sheet_name="Tanggapan", infer_schema_length=0)
    assert sheet.select("id_dtks", "kode_anomali", "id_terkait").rows() == [("D006", "CITIZEN_OBJECTION", receipt)]
    assert "Saya masih hidup" in sheet["Keterangan"][0]
    assert pl.read_parquet(nxt / "review.parquet").filter(pl.col("id_dtks") == "D006").height == 1
    assert pl.read_parquet(nxt / "excluded.parquet").filter(pl.col("id_dtks") == "D006").height == 0
