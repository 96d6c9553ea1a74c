"""Blocking diagnostics: per rule, the candidate pairs it makes and the share of true
duplicate pairs it reaches. True pairs missed by every rule can never be found, so
blocking recall is the first thing to measure."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.matching.blocking import blocking_recall, candidate_pairs
from pipeline.matching.model import load_model
from pipeline.matching.sql import register_macros


def true_pairs(records: pl.DataFrame, truth_rows: pl.DataFrame) -> pl.DataFrame:
    """rid_l < rid_r for every two records of the same person."""
    people = records.select("rid", "id_dtks").join(truth_rows.select("id_dtks", "person_id"), on="id_dtks")
    pairs = people.join(people, on="person_id", suffix="_r").filter(pl.col("rid") < pl.col("rid_r"))
    return pairs.select(rid_l=pl.col("rid"), rid_r=pl.col("rid_r"))


def blocking_report(records: pl.DataFrame, model: dict, truth_rows: pl.DataFrame) -> pl.DataFrame:
    import duckdb

    con = register_macros(duckdb.connect())
    con.register("_records", records)
    con.execute("CREATE TEMP TABLE records AS SELECT * FROM _records")
    candidate_pairs(con, model, "records", every_rule=True)
    pairs = con.sql("SELECT rid_l, rid_r, rules FROM candidate_pairs").pl()
    con.close()
    return blocking_recall(pairs, true_pairs(records, truth_rows), [rule["name"] for rule in model["blocking_rules"]])


def blocking_report_for_round(round_dir: Path, truth_dir: Path, model_path: Path | None = None) -> pl.DataFrame:
    """Uses the round's staging/records.parquet and the generator's truth_rows."""
    from pipeline.evaluate import _read_truth

    records = pl.read_parquet(Path(round_dir) / "staging" / "records.parquet")
    model = load_model(model_path)
    return blocking_report(records, model, _read_truth(Path(truth_dir), "truth_rows"))
