"""Objections in the next round: one case per row for reviewers, settled by a decision on
its receipt, reopened by a later objection; automatic exclusions held while open or
accepted; an objection never holds a row by itself."""

from __future__ import annotations

import polars as pl

from pipeline.contract import anomaly_rules
from pipeline.decide import row_outcomes
from pipeline.decisions import EMPTY_LOG
from pipeline.lookup.objections import (
    QUEUE_SCHEMA,
    clean_reason,
    file_objection,
    held_rows,
    hold_contested,
    objection_cases,
    read_queue,
)


def queue(*rows: tuple[str, str, str]) -> pl.DataFrame:
    """(id, id_dtks, filed_at) per objection."""
    return pl.DataFrame(
        [{"id": i, "id_dtks": d, "category": "masih_hidup", "reason": "hidup", "filed_at": t, "round_date": "2026-01-02",
          "status_at_filing": "tidak_memenuhi_syarat", "source": "test"} for i, d, t in rows],
        schema=QUEUE_SCHEMA,
    )


def decision(id_dtks: str, receipt: str, keputusan: str) -> pl.DataFrame:
    return pl.DataFrame([{**{c: None for c in EMPTY_LOG.columns}, "id_dtks": id_dtks, "anomaly_code": "CITIZEN_OBJECTION",
                          "related_key": receipt, "keputusan": keputusan}], schema=EMPTY_LOG.schema)


def test_states_settle_and_reopen():
    objections = queue(("TGP-A", "D1", "2026-02-01T10:00"), ("TGP-B", "D1", "2026-03-01T10:00"),
                       ("TGP-C", "D2", "2026-02-01T10:00"), ("TGP-D", "D9", "2026-02-01T10:00"),
                       ("TGP-E", "D3", "2026-02-01T10:00"))
    decisions = pl.concat([decision("D1", "TGP-A", "TOLAK"), decision("D2", "TGP-C", "SETUJU"),
                           decision("D3", "TGP-E", "PERLU_CEK_LAPANGAN")])
    cases, state = objection_cases(objections, decisions, pl.Series(["D1", "D2", "D3"]))
    assert dict(state.select("id", "state").iter_rows()) == {
        "TGP-A": "rejected", "TGP-B": "open", "TGP-C": "accepted", "TGP-D": "stale", "TGP-E": "open"}
    found = {row["id_dtks"]: row for row in cases.to_dicts()}
    assert (found["D1"]["action"], found["D1"]["related_id"]) == ("review", "TGP-B")  # reopened by a later objection
    assert (found["D2"]["action"], found["D2"]["related_id"]) == ("warn", "TGP-C")
    assert found["D3"]["action"] == "review" and "D9" not in found
    assert sorted(held_rows(state).to_list()) == ["D1", "D2", "D3"]  # open, or accepted


def test_hold_turns_automatic_exclusions_into_review_and_objection_never_holds_alone():
    rules = anomaly_rules()
    assert rules["CITIZEN_OBJECTION"].holds_row is False and rules["CITIZEN_OBJECTION"].action == "review"
    anomalies = pl.DataFrame({
        "id_dtks": ["D1", "D1", "D2", "D3"], "anomaly_code": ["DECEASED", "CITIZEN_OBJECTION", "DECEASED", "CITIZEN_OBJECTION"],
        "action": ["exclude", "review", "exclude", "review"], "detail": ["meninggal", "tanggapan", "meninggal", "tanggapan"],
    })
    held = hold_contested(anomalies, pl.Series(["D1", "D3"]))
    assert held["action"].to_list() == ["review", "review", "exclude", "review"]
    assert "tanggapan warga" in held["detail"][0]
    outcomes = dict(row_outcomes(pl.DataFrame({"id_dtks": ["D1", "D2", "D3"]}), held).select("id_dtks", "outcome").iter_rows())
    assert outcomes == {"D1": "review", "D2": "excluded", "D3": "verified"}


def test_queue_is_append_only_owner_only_and_scrubbed(tmp_path):
    path = tmp_path / "q" / "objections.jsonl"
    first = file_objection(path, "D1", "masih_hidup", "NIK 3201014501900012\nlahir 05-01-1990 " + "x" * 400, "2026-01-02", "diperiksa")
    file_objection(path, "D2", "lainnya", "", "2026-01-02", "terverifikasi")
    assert path.stat().st_mode & 0o077 == 0
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"id": "TGP-CUT')  # a write cut short: skipped, the rest is read
    frame, _ = read_queue(path)
    assert frame["id"].to_list() == [first["id"], frame["id"][1]] and frame["id"][0].startswith("TGP-")
    assert "3201014501900012" not in first["reason"] and "**-**-1990" in first["reason"] and "\n" not in first["reason"]
    assert len(clean_reason("y" * 1000)) == 280


def test_a_damaged_queue_line_is_skipped_and_named(tmp_path):
    """A line cut short by a crash is expected at the end; one in the middle means an
    objection may be lost: the round names the lines (gather_objections' warning)."""
    path = tmp_path / "objections.jsonl"
    first = file_objection(path, "D1", "masih_hidup", "", "2026-01-02", "diperiksa")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("edited by hand {\n\n")
    second = file_objection(path, "D2", "lainnya", "", "2026-01-02", "terverifikasi")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"id": "TGP-CUT')
    frame, skipped = read_queue(path)
    assert frame["id"].to_list() == [first["id"], second["id"]]
    assert skipped == [2, 5]  # the blank line 3 is no objection lost
