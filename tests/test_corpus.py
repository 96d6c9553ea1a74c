"""The corpus of bad input (tests/corpus), one table-driven test: for every kind, the exit
code, a message naming the file and the column or line and what to do, no traceback,
every input record accounted for against the generator's own count, and no NIK, KK
number or name from the input on the terminal or in the logs. A few kinds also go
through Prefect, whose database and result storage must hold no personal data either."""

import base64
import json
import logging
import re

import polars as pl
import pytest
from corpus import CASES, personal_data, snapshot

from pipeline.cli import main

PERSONAL = personal_data()
THROUGH_PREFECT = ("dtks_line_over_2mb", "dtks_unterminated_quote", "dtks_parquet_cut_short", "decisions_workbook_not_a_zip")


def assert_no_personal_data(text: str, where: str) -> None:
    leaked = [value for value in PERSONAL if value in text]
    assert leaked == [], f"personal data in {where}: {len(leaked)} value(s)"


def run_case(case, d, monkeypatch, capsys, caplog, prefect=False):
    monkeypatch.chdir(d)
    run = case.build(d)
    before = snapshot(run.preexisting) if run.preexisting else None
    with caplog.at_level(logging.INFO):
        code = main(run.argv() + ([] if prefect else ["--no-prefect"]))
    out, err = capsys.readouterr()
    text = out + err + caplog.text
    assert code == run.exit_code, err[-2000:]
    assert "Traceback" not in text
    assert_no_personal_data(text, "terminal output and logs")
    message = re.sub(r"\s+", " ", err)  # rich wraps long lines
    for fragment in run.says:
        assert fragment in message, f"{fragment!r} not in: {message[-1500:]}"
    if before is not None:
        assert snapshot(run.preexisting) == before
    if run.exit_code:
        assert run.preexisting is not None or not run.out.exists(), "a failed run published something"
        assert not any(p.name.endswith(".tmp") for p in d.rglob("*")), "a work folder was left behind"
    else:
        check_round(run)
    if run.check:
        run.check(d / "out")
    return run


def check_round(run) -> None:
    summary = json.loads((run.out / "summary.json").read_text())
    rec = summary["reconciliation"]
    assert rec["balanced"] and rec["rows_in"] == run.dtks_records
    assert rec["verified"] + rec["review"] + rec["excluded"] + rec["quarantined"] == run.dtks_records
    if run.dtks_lines is not None:
        assert summary["ingest"]["dtks"]["counts"]["physical_lines"] == run.dtks_lines
    if run.dukcapil_records is not None:
        assert summary["ingest"]["dukcapil"]["rows_in"] == run.dukcapil_records
    quarantine = pl.read_parquet(run.out / "quarantine.parquet")
    found = {(row["source"], row["line"]): row["reason"] for row in quarantine.to_dicts()}
    assert set(found) == set(run.quarantine), found
    for key, fragment in run.quarantine.items():
        assert fragment in found[key], (key, found[key])
    names = {"dtks": run.dtks.name, "dukcapil": run.dukcapil.name}
    assert all(row["file"] == names[row["source"]] for row in quarantine.to_dicts())


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input(case, tmp_path, monkeypatch, capsys, caplog):
    run_case(case, tmp_path, monkeypatch, capsys, caplog)


def test_corpus_has_at_least_forty_kinds():
    assert len({case.name for case in CASES}) >= 40


def decoded_blobs(data: bytes) -> list[bytes]:
    """The bytes themselves and every base64 run in them decoded (Prefect stores pickles as base64)."""
    blobs = [data]
    for run in re.findall(rb"[A-Za-z0-9+/=\r\n]{40,}", data):
        try:
            blobs.append(base64.b64decode(re.sub(rb"\s", b"", run), validate=False))
        except ValueError:
            continue
    return blobs


def test_prefect_keeps_no_personal_data(prefect_harness, tmp_path, monkeypatch, capsys, caplog):
    cases = {case.name: case for case in CASES}
    for name in THROUGH_PREFECT:
        run_case(cases[name], tmp_path / name, monkeypatch, capsys, caplog, prefect=True) if (tmp_path / name).mkdir() is None else None
    stored = [p for p in prefect_harness["storage"].rglob("*") if p.is_file()]
    database = [p for p in prefect_harness["database"].parent.glob(prefect_harness["database"].name + "*") if p.is_file()]
    assert database, "the test harness database was not found"
    for path in stored + database:
        for blob in decoded_blobs(path.read_bytes()):
            assert_no_personal_data(blob.decode("utf-8", errors="replace"), path.name)
