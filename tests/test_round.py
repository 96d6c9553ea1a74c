"""The round without Prefect: outcomes on a hand-made case, reconciliation, atomic
outputs, manifest, and a failed run leaving previous outputs untouched."""

import json
import os

import polars as pl
import pytest

from pipeline.decide import check_paid_once, reconcile, split_outcomes
from pipeline.errors import InputError, ReconciliationError
from pipeline.progress import StageClock
from pipeline.round import RoundContext, run_round


def run(extracts, out, **kwargs):
    ctx = RoundContext(dtks=str(extracts["dtks"]), dukcapil=str(extracts["dukcapil"]), out=str(out), as_of="2026-11-21", **kwargs)
    return run_round(ctx, StageClock(quiet=True))


@pytest.fixture
def round_out(small_extracts):
    out = small_extracts["dir"] / "out"
    summary = run(small_extracts, out)
    return out, summary


def codes(out):
    frame = pl.read_parquet(out / "anomalies.parquet")
    return {(r["id_dtks"], r["anomaly_code"]): r for r in frame.to_dicts()}


def test_outcomes_of_each_situation(round_out):
    out, summary = round_out
    found = codes(out)
    assert found[("D002", "DUPLICATE_PERSON")]["related_id"] == "D001"
    assert found[("D002", "DUPLICATE_PERSON")]["action"] == "exclude"
    assert found[("D001", "DUPLICATE_PERSON")]["action"] == "warn"
    assert ("D001", "NIK_SHARED") not in found  # same person twice is a duplicate, not a shared NIK
    assert found[("D003", "RELOCATED")]["detail"].endswith("3273")
    assert found[("D004", "NIK_INVALID_FORMAT")]["action"] == "review"
    # Retired Mimika codes: valid NIK prefix, and 9109 -> 9404 is not a move.
    assert not any(key[0] == "D005" for key in found)
    # Dukcapil holds the NIK twice; the matching record is the deceased one.
    assert found[("D006", "DECEASED")]["action"] == "exclude"
    assert found[("D007", "IDENTITY_MISMATCH")]["action"] == "review"
    assert ("D007", "DECEASED") not in found
    assert found[("D008", "NIK_NOT_FOUND")]["action"] == "review"

    verified = pl.read_parquet(out / "verified_recipients.parquet")["id_dtks"].to_list()
    excluded = pl.read_parquet(out / "excluded.parquet")["id_dtks"].to_list()
    review = pl.read_parquet(out / "review.parquet")["id_dtks"].to_list()
    quarantine = pl.read_parquet(out / "quarantine.parquet")
    assert verified == ["D001", "D005"]
    assert excluded == ["D002", "D006"]
    assert review == ["D003", "D004", "D007", "D008"]
    assert quarantine.filter(pl.col("source") == "dtks")["line"].to_list() == [10]
    assert summary["reconciliation"] == {
        "rows_in": 9, "verified": 2, "review": 4, "excluded": 2, "quarantined": 1, "sum": 9, "balanced": True}


def test_outputs_contract_and_manifest(round_out):
    from pipeline.contract import ANOMALY_SCHEMA, OUTPUT_FILES

    out, _ = round_out
    assert sorted(name for name in OUTPUT_FILES if not (out / name).is_file()) == []
    assert dict(pl.read_parquet(out / "anomalies.parquet").schema) == ANOMALY_SCHEMA
    clusters = pl.read_parquet(out / "duplicate_clusters.parquet")
    assert clusters.height == 8  # every parsed row, singletons included
    assert clusters.filter(pl.col("id_dtks") == "D002")["cluster_id"].item() == clusters.filter(
        pl.col("id_dtks") == "D001")["cluster_id"].item()
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["inputs"]["dtks"]["sha256"]) == 64
    assert {"anomalies.parquet", "verified_recipients.parquet", "summary.json", "report.html", "model.json"} <= set(manifest["outputs"])
    assert manifest["packages"]["duckdb"].startswith("2.")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reconciliation"]["balanced"] is True
    assert set(summary["data_quality"]) == {"dtks", "dukcapil"}
    assert (out / "anomalies.parquet").stat().st_mode & 0o077 == 0  # owner only


def test_same_input_same_output(small_extracts, round_out):
    out, _ = round_out
    again = small_extracts["dir"] / "again"
    run(small_extracts, again)
    for name in ("anomalies.parquet", "duplicate_clusters.parquet", "verified_recipients.parquet", "dukcapil_links.parquet"):
        assert pl.read_parquet(out / name).equals(pl.read_parquet(again / name)), name


def test_failed_run_leaves_previous_outputs_untouched(small_extracts, round_out):
    out, _ = round_out
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    small_extracts["dukcapil"].write_text("nik,nama\n1,X\n")
    with pytest.raises(InputError, match="tanggal_lahir"):
        run(small_extracts, out)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert before == after
    rounds = out.parent / ".out.rounds"
    assert sorted(p.name for p in rounds.iterdir() if p.name != ".lock") == [out.resolve().name]  # no work folder left


def test_reconciliation_fails_loudly_when_rows_go_missing():
    outcomes = pl.DataFrame({"id_dtks": ["a", "b"], "outcome": ["verified", "review"]})
    assert reconcile(3, outcomes, 1)["balanced"] is True
    with pytest.raises(ReconciliationError, match="reconciliation failed: 4 DTKS input rows"):
        reconcile(4, outcomes, 1)
    with pytest.raises(ReconciliationError):
        reconcile(3, pl.DataFrame({"id_dtks": ["a", "a"], "outcome": ["verified", "review"]}), 1)


def test_outcome_tables_and_one_verified_row_per_cluster():
    dtks = pl.DataFrame({"id_dtks": ["D3", "D1", "D2", "D4"], "nama": ["C", "A", "B", "D"]})
    outcomes = pl.DataFrame({"id_dtks": ["D1", "D2", "D3", "D4"],
                             "outcome": ["verified", "excluded", "verified", "review"]})
    clusters = pl.DataFrame({"id_dtks": ["D1", "D2", "D3", "D4"], "cluster_id": ["K-D1", "K-D1", "K-D3", "K-D4"]})
    tables = {name: query.collect() for name, query in split_outcomes(dtks, outcomes, clusters).items()}
    assert tables["verified"]["id_dtks"].to_list() == ["D1", "D3"]  # sorted by id_dtks
    assert tables["excluded"]["id_dtks"].to_list() == ["D2"] and tables["review"]["id_dtks"].to_list() == ["D4"]
    assert "outcome" not in tables["verified"].columns and "cluster_id" in tables["verified"].columns
    check_paid_once(tables["verified"])
    twice = split_outcomes(dtks, outcomes.with_columns(outcome=pl.lit("verified")), clusters)["verified"].collect()
    with pytest.raises(ReconciliationError, match="1 duplicate clusters have more than one verified row"):
        check_paid_once(twice)


def test_duckdb_memory_limit_a_share_of_the_machine_unless_a_partition_task_or_given(tmp_path):
    def limit(ctx, **kwargs):
        con = ctx.connect(**kwargs)
        try:
            return con.execute("SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'").fetchall()[0][0]
        finally:
            con.close()

    def gib(text):
        number, unit = text.split()
        return float(number) * {"MiB": 1 / 1024, "GiB": 1.0, "TiB": 1024.0}[unit]

    ctx = RoundContext(dtks="d", dukcapil="c", out=str(tmp_path / "out"), work=str(tmp_path / "work"))
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert gib(limit(ctx)) == pytest.approx(0.4 * machine, rel=0.05)
    assert gib(limit(ctx, temp="bucket-0")) == pytest.approx(3e9 / 2**30, rel=0.05)
    given = RoundContext(dtks="d", dukcapil="c", out=str(tmp_path / "out"), work=str(tmp_path / "work"), duckdb_memory_limit="1GB")
    assert gib(limit(given)) == gib(limit(given, temp="bucket-0")) == pytest.approx(1e9 / 2**30, rel=0.05)


def test_ranges_of_ids_decide_alone_as_the_whole_extract_does():
    """decide_rows on ranges of id_dtks, concatenated, gives the whole extract's outcomes,
    anomalies and decision statuses: a household decision (keyed on no row) applies in
    every range holding its rows, a decision on a row of another range is neither matched
    nor stale there, and a decision on a row gone from the extract is stale."""
    from pipeline.contract import anomaly_frame
    from pipeline.decide import decide_rows
    from pipeline.decisions import DECISION_INDEX, LOG_COLUMNS, decision_status, decisions_bearing_on, related_key
    from pipeline.matching.link import SUGGESTION_COLUMNS
    from pipeline.partitioned import id_ranges

    ids = [f"D{i:02d}" for i in range(1, 11)]
    dtks = pl.DataFrame({"id_dtks": ids[::-1], "nik": [f"32010101019000{i:02d}" for i in range(10)], "no_kk": ["K1"] * 4 + ["K2"] * 6})
    household = anomaly_frame(dtks.filter(pl.col("no_kk") == "K1"), "HOUSEHOLD_HEAD_DECEASED", pl.lit("kepala meninggal"),
                              related_id=pl.lit("D07"))
    rows = pl.concat([
        household,
        anomaly_frame(dtks.filter(pl.col("id_dtks") == "D02"), "DECEASED", pl.lit("meninggal"), related_id=pl.lit("3201010101900001"),
                      strong=pl.lit(True)),
        anomaly_frame(dtks.filter(pl.col("id_dtks") == "D09"), "DECEASED", pl.lit("meninggal"), strong=pl.lit(True)),
        anomaly_frame(dtks.filter(pl.col("id_dtks").is_in(["D04", "D05"])), "DUPLICATE_PERSON", pl.lit("ganda"),
                      related_id=pl.lit("D03"), strong=pl.lit(True)),
    ])
    assert household.height == 4 and {"D07", "D10"} <= set(household["id_dtks"])  # the household spans the ranges below
    decided = [("D07", "HOUSEHOLD_HEAD_DECEASED", "D07", "TOLAK"), ("D02", "DECEASED", "3201010101900001", "TOLAK"),
               ("D04", "DUPLICATE_PERSON", "D03", "SETUJU"), ("D99", "DECEASED", "", "SETUJU"), ("D05", "DECEASED", "", "TOLAK")]
    reviewed = pl.DataFrame(
        [{column: None for column in LOG_COLUMNS} | {"id_dtks": i, "anomaly_code": c, "related_key": r, "keputusan": k,
          "pemeriksa": "Rina", "recorded_at": "2026-11-01T10:00:00+07:00", "source_file": "k.csv", "sheet": "", "row": n}
         for n, (i, c, r, k) in enumerate(decided)],
        schema={c: (pl.Int64 if c == "row" else pl.String) for c in LOG_COLUMNS},
    ).with_columns(related_key=related_key(pl.col("related_key"))).with_row_index(DECISION_INDEX)
    fuzzy = pl.DataFrame(schema={"id_dtks": pl.String, "ambiguous": pl.Boolean, "dukcapil_nik": pl.String,
                                 "match_probability": pl.Float64, "evidence": pl.String}).select(SUGGESTION_COLUMNS)
    clusters = dtks.select("id_dtks", cluster_id=pl.when(pl.col("id_dtks").is_in(["D03", "D04", "D05"])).then(pl.lit("K-D03"))
                           .otherwise(pl.col("id_dtks")))
    held = pl.Series([], dtype=pl.String)

    whole = decide_rows(dtks, rows, fuzzy, held, reviewed, clusters)
    boundaries = ["D04", "D08"]  # D01-D03 | D04-D07 | D08-D10
    parts = []
    for index in range(len(boundaries) + 1):
        def mine(frame: pl.DataFrame) -> pl.DataFrame:
            return frame.filter(id_ranges(boundaries, frame["id_dtks"]) == index)
        parts.append(decide_rows(mine(dtks), mine(rows), fuzzy, held,
                                 decisions_bearing_on(reviewed, id_ranges(boundaries, reviewed["id_dtks"]) == index), mine(clusters)))
    assert pl.concat([part.anomalies for part in parts]).equals(whole.anomalies)
    for outcome, query in whole.tables.items():
        assert pl.concat([part.tables[outcome].collect() for part in parts]).equals(query.collect()), outcome
    assert {o: sum(part.counts[o] for part in parts) for o in whole.counts} == whole.counts
    status = decision_status(reviewed, whole.flags)
    assert decision_status(reviewed, pl.concat([part.flags for part in parts])).equals(status)
    assert status["status"].to_list() == ["applied", "applied", "applied", "stale: baris tidak ada lagi di ekstrak",
                                          "stale: anomali tidak muncul lagi"]
    actions = dict(whole.anomalies.filter(pl.col("anomaly_code") == "HOUSEHOLD_HEAD_DECEASED").select("id_dtks", "action").iter_rows())
    assert set(actions.values()) == {"warn"} and len(actions) == 4  # TOLAK dismissed it on every member
    assert whole.counts == {"verified": 7, "review": 0, "excluded": 3}
