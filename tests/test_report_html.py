"""report.html: self-contained, masked, reconciled, with the previous-round diff; and in
a real headless Chromium: no request leaves the file, no script error, search filters."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.progress import StageClock
from pipeline.report.html import build_history, parse_evidence, render_report
from pipeline.report.pages import json_for_script
from pipeline.report.mask import birth_year, mask_name, mask_nik, scrub_text
from pipeline.round import RoundContext, run_round

# Extra DTKS rows on top of the shared hand-made case: an id that is markup, and a
# second row with a bad NIK so a list has more than one entry of a code.
EXTRA_DTKS = [
    "X<b>1,12345,,MARKUP,L,BOGOR,1975-03-04,JL A,3201011001,PKH",
    "D011,99999,,DEWI,P,BOGOR,1982-11-12,JL B,3201011001,PKH",
]


def run(extracts: dict, out: Path) -> dict:
    ctx = RoundContext(dtks=str(extracts["dtks"]), dukcapil=str(extracts["dukcapil"]), out=str(out), as_of="2026-11-21")
    return run_round(ctx, StageClock(quiet=True))


@pytest.fixture
def round_out(small_extracts):
    with open(small_extracts["dtks"], "a", encoding="utf-8") as handle:
        handle.write("\n".join(EXTRA_DTKS) + "\n")
    out = small_extracts["dir"] / "out"
    summary = run(small_extracts, out)
    return out, summary, small_extracts


def input_niks(extracts: dict) -> set[str]:
    """Every 16-digit number in the inputs: NIKs and KK numbers."""
    text = extracts["dtks"].read_text() + extracts["dukcapil"].read_text()
    return set(re.findall(r"\d{16}", text))


def input_birth_dates(extracts: dict) -> set[str]:
    """Birth dates of both inputs, as written and in ISO and DD-MM-YYYY form."""
    dates = set()
    for path, column in ((extracts["dtks"], 6), (extracts["dukcapil"], 5)):
        for line in path.read_text().splitlines()[1:]:
            value = line.split(",")[column]
            dates.add(value)
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                y, m, d = value.split("-")
                dates.update({f"{d}-{m}-{y}", f"{d}/{m}/{y}"})
    return {d for d in dates if d}


# --------------------------------------------------------------------------- masking


def test_masks():
    frame = pl.DataFrame({
        "nik": ["3201014501900012", "3.20101E+15", "5", None],
        "nama": ["SITI AMINAH", "St. Aminah binti Salim", "=X", None],
    })
    out = frame.select(mask_nik(pl.col("nik")), mask_name(pl.col("nama")))
    assert out["nik"].to_list() == ["3201********0012", "*********15", "**", None]
    assert out["nama"].to_list() == ["S*** A*****", "S*. A***** b**** S****", "=X", None]
    dates = pl.DataFrame({"d": ["1990-01-05"]}).select(pl.col("d").str.to_date()).select(birth_year(pl.col("d")))
    assert dates.item() == 1990
    text = pl.DataFrame({"t": ["NIK 3201014501900012 lahir 1990-01-05 / 05-01-90"]}).select(scrub_text(pl.col("t"))).item()
    assert text == "NIK 3201********0012 lahir 1990-**-** / **-**-90"


def test_json_cannot_close_its_script_element():
    assert "</script>" not in json_for_script({"x": "</script><script>alert(1)</script>"})


def test_parse_evidence():
    items = parse_evidence("name=exact (+9.1); patronym=null (+0.0); nik=different (-2.0)")
    assert items == [("name", "exact", 9.1), ("patronym", "null", 0.0), ("nik", "different", -2.0)]


# --------------------------------------------------------------------------- the page


def test_report_is_self_contained_masked_and_reconciled(round_out):
    out, summary, extracts = round_out
    page = render_report(out, summary)

    lowered = page.lower()
    for forbidden in ("http://", "https://", "//cdn", "<link", "<script src", "@import", "url("):
        assert forbidden not in lowered, forbidden
    for nik in input_niks(extracts):
        assert nik not in page, f"full NIK/KK {nik} in report"
    for date in input_birth_dates(extracts):
        assert date not in page, f"birth date {date} in report"
    # Names only as initials (the Dukcapil name of the stranger holding D007's NIK included).
    for name in ("SITI AMINAH", "SUPARMAN", "WAWAN", "SETIAWAN", "Aminah"):
        assert name not in page
    assert "X<b>1" not in page  # ids are data, never markup

    rec = summary["reconciliation"]
    equation = re.search(r'id="reconciliation-equation">(.*?)</p>', page).group(1)
    numbers = [int(n.replace(".", "")) for n in re.findall(r"<b>([\d.]+)</b>", equation)]
    assert numbers == [rec["rows_in"], rec["verified"], rec["review"], rec["excluded"], rec["quarantined"], rec["sum"]]
    assert rec["rows_in"] == 11 and "SEIMBANG" in page and "TIDAK SEIMBANG" not in page

    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    anomalies = data["lists"]["anomalies"]
    ids = {row[anomalies["fields"].index("id")] for row in anomalies["rows"]}
    assert {"D002", "D003", "D006", "D007", "D008"} <= ids
    assert "Kabupaten Bogor" in page and "Jawa Barat" in page
    related = {row[anomalies["fields"].index("rel")] for row in anomalies["rows"]}
    assert "D001" in related  # a duplicate's related id_dtks stays readable
    assert data["lists"]["clusters"]["rows"][0]["members"] == ["D001 (utama)", "D002"]
    assert {row[0] for row in data["lists"]["dukcapil"]["rows"]} >= {"D003", "D006", "D007"}


def test_lists_are_capped_with_a_note(round_out):
    out, summary, _ = round_out
    page = render_report(out, summary, max_cases=1)
    assert "Menampilkan 1 dari 3 kasus; daftar lengkap di anomalies.parquet / lembar kerja di folder anomalies/" in page


def make_previous_round(out: Path, tmp_path: Path) -> Path:
    """The same round as 'previous', except that D007's anomaly did not exist yet and one
    anomaly (D900) existed that is gone now: 1 new, 1 resolved."""
    previous = tmp_path / "previous"
    shutil.copytree(out, previous)
    anomalies = pl.read_parquet(previous / "anomalies.parquet")
    gone = anomalies.filter(pl.col("id_dtks") == "D003").with_columns(id_dtks=pl.lit("D900"))
    anomalies.filter(pl.col("id_dtks") != "D007").vstack(gone).write_parquet(previous / "anomalies.parquet")
    summary = json.loads((previous / "summary.json").read_text())
    summary["as_of"] = "2026-08-21"
    (previous / "summary.json").write_text(json.dumps(summary))
    # A round from before history.json existed: its own summary stands for its history.
    (previous / "history.json").unlink(missing_ok=True)
    return previous


def test_previous_round_diff_and_history(round_out, tmp_path):
    out, summary, _ = round_out
    previous = make_previous_round(out, tmp_path)
    page = render_report(out, summary, previous_dir=previous)
    assert re.search(r'id="changes-new">1<', page)
    assert re.search(r'id="changes-resolved">1<', page)
    assert "2026-08-21" in page
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    assert [row[0] for row in data["lists"]["new"]["rows"]] == ["D007"]
    assert [row[0] for row in data["lists"]["resolved"]["rows"]] == ["D900"]

    history = build_history(previous, summary)
    assert [h["as_of"] for h in history] == ["2026-08-21", "2026-11-21"]
    (previous / "history.json").write_text(json.dumps([{"as_of": "2026-05-21", "anomalies_by_code": {}}, history[0]]))
    history = build_history(previous, summary)
    assert [h["as_of"] for h in history] == ["2026-05-21", "2026-08-21", "2026-11-21"]
    assert "2026-05-21" in render_report(out, summary, previous_dir=previous)  # trend over three rounds
    assert build_history(None, summary) == [history[-1]]


def test_without_previous_round_says_so(round_out):
    out, summary, _ = round_out
    assert "Tidak ada putaran sebelumnya" in render_report(out, summary)


# --------------------------------------------------------------------------- in a browser


class Chromium:
    """Headless Chromium driven over the DevTools protocol (one page, flat session)."""

    FLAGS = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--remote-debugging-port=0",
    ]

    def __init__(self, binary: str) -> None:
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="verval-chromium-")
        self.process = subprocess.Popen(
            [binary, *self.FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not start")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.socket = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30)
        self.next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Network", "Runtime", "Page", "Log"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method: str, session: bool = False, timeout: float = 30, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.1))))

    def open(self, path: Path) -> None:
        self.call("Page.navigate", session=True, url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def of(self, method: str) -> list[dict]:
        return [e["params"] for e in self.events if e.get("method") == method]

    def close(self) -> None:
        try:
            if getattr(self, "socket", None):
                self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


VISIBLE_ROWS = "document.querySelectorAll('[data-list=anomalies] tbody tr:not([hidden])').length"


def type_into_search(text: str) -> str:
    return (
        "(() => { const box = document.querySelector('[data-list=anomalies] input[type=search]');"
        f" box.value = {json.dumps(text)}; box.dispatchEvent(new Event('input', {{bubbles: true}}));"
        f" return {VISIBLE_ROWS}; }})()"
    )


def choose(facet: str, value: str) -> str:
    return (
        f"(() => {{ const s = document.querySelector('[data-list=anomalies] select[data-facet={facet}]');"
        f" s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); return {VISIBLE_ROWS}; }})()"
    )


def test_in_headless_chromium(round_out, tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed: `make test` installs Debian's chromium (apt-get install -y chromium)"
    out, summary, _ = round_out
    report = tmp_path / "report.html"
    page = render_report(out, summary, previous_dir=make_previous_round(out, tmp_path))
    report.write_text(page, encoding="utf-8")
    embedded = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))["lists"]["anomalies"]["rows"]

    browser = Chromium(binary)
    try:
        browser.open(report)
        total = browser.evaluate(VISIBLE_ROWS)
        one_row = browser.evaluate(type_into_search("D007"))
        nothing = browser.evaluate(type_into_search("tidak-ada-yang-cocok"))
        cleared = browser.evaluate(type_into_search(""))
        bad_format = browser.evaluate(choose("code", "NIK_INVALID_FORMAT"))
        clusters = browser.evaluate("document.querySelectorAll('[data-list=clusters] .cluster').length")
        highlighted = browser.evaluate("document.querySelectorAll('[data-list=clusters] td.diff').length")
        requests = [r["request"]["url"] for r in browser.of("Network.requestWillBeSent")]
        exceptions = browser.of("Runtime.exceptionThrown")
        errors = [e["entry"] for e in browser.of("Log.entryAdded") if e["entry"]["level"] == "error"]
    finally:
        browser.close()

    assert requests and all(url.startswith(("file://", "data:")) for url in requests), requests
    assert exceptions == []
    assert errors == []  # a Content-Security-Policy violation would be logged here
    assert total == len(embedded) > 5 and one_row == 1 and nothing == 0 and cleared == total
    assert bad_format == 3  # D004, D011 and X<b>1
    assert clusters == 1 and highlighted >= 1  # D002 spells the name differently from D001


def test_listed_cases_and_clusters_carry_their_own_rows_and_related_rows(generated_round):
    """The lists read only the rows they show (by id): each shown case still carries its own
    row's fields and, when its related id is a DTKS row, that id in clear; each cluster
    member its record and its resolution; each death its civil-registry record."""
    from pipeline.report.html import MAX_CASES, RoundData, cluster_members, dukcapil_rows, load_records, masked_case_rows

    out = generated_round["out"]
    data = RoundData.load(out, generated_round["summary"], MAX_CASES)
    records = load_records(out).select("id_dtks", "nama").collect()
    ids = set(records["id_dtks"])
    rows = masked_case_rows(data.cases, data.records)
    assert rows.height == data.cases.height > 1000
    related = data.cases.select("id_dtks", "anomaly_code", "related_id").join(
        rows.select(id_dtks="id", anomaly_code="code", rel="rel"), on=["id_dtks", "anomaly_code"])
    to_rows = related.filter(pl.col("related_id").is_in(list(ids)))
    assert to_rows.height > 100 and to_rows["rel"].equals(to_rows["related_id"])
    named = set(records.filter(pl.col("nama").is_not_null())["id_dtks"])
    assert rows.filter(pl.col("id").is_in(list(named)))["nama"].null_count() == 0
    members, total = cluster_members(data)
    assert total > 0 and members.height > 100
    assert members["outcome"].null_count() == 0 and members["resolusi_m"].null_count() == 0
    linked = dukcapil_rows(data).filter(pl.col("code") == "DECEASED")
    assert linked.height > 50 and linked.select("d_nik", "d_nama", "d_jk", "d_kab").null_count().sum_horizontal().item() == 0
