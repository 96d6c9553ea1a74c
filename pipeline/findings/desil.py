"""DESIL_NOT_ELIGIBLE: a row receiving a program its desil does not allow.

The programs, their spellings and desil ranges are declared in pipeline/rules/eligibility.toml
[programs]. A `program` cell may name several programs (separated by , ; | / or +). A row
without a desil, and a program absent from the table (BLT-DD, say), is not flagged."""

from __future__ import annotations

import polars as pl

from pipeline.contract import CODE, action_rules, alias_key_expr, anomaly_frame, eligibility_rules, program_keys

PROGRAM_SEPARATORS = r"[,;|/+]"


def program_table() -> pl.DataFrame:
    programs = eligibility_rules()["programs"]
    return pl.DataFrame({
        "program_name": list(programs),
        "desil_low": [spec["desil"][0] for spec in programs.values()],
        "desil_high": [spec["desil"][1] for spec in programs.values()],
        "program_action": [spec.get("action", "review") for spec in programs.values()],
    }, schema_overrides={"desil_low": pl.Int8, "desil_high": pl.Int8})


def desil_anomalies(dtks: pl.DataFrame) -> pl.DataFrame:
    """`dtks` needs id_dtks, program, desil (Int8, null when absent or unusable)."""
    rows = dtks.select("id_dtks", "program", "desil").filter(pl.col("desil").is_not_null() & pl.col("program").is_not_null())
    # A registry spells its programs a few hundred ways: each spelling is read once, not once per row.
    spellings = (
        rows.select("program").unique()
        .with_columns(program_name=pl.col("program").str.replace_all(PROGRAM_SEPARATORS, ",").str.split(","))
        .explode("program_name")
        .with_columns(program_name=alias_key_expr(pl.col("program_name")).replace_strict(program_keys(), default=None))
        .filter(pl.col("program_name").is_not_null())
        .unique()
    )
    received = (
        rows.join(spellings, on="program")
        .join(program_table(), on="program_name")
        .filter(~pl.col("desil").is_between(pl.col("desil_low"), pl.col("desil_high")))
    )
    rank = {name: action.rank for name, action in action_rules().items()}
    per_row = (
        received.sort("id_dtks", "program_name")
        .group_by("id_dtks", maintain_order=True)
        .agg(
            pl.col("desil").first(),
            programs=pl.col("program_name").str.join("+"),
            ranges=pl.format("{} untuk desil {}-{}", pl.col("program_name"), pl.col("desil_low"), pl.col("desil_high")).str.join(", "),
            action=pl.col("program_action").sort_by(pl.col("program_action").replace_strict(rank, return_dtype=pl.Int8), descending=True).first(),
        )
    )
    return anomaly_frame(per_row, CODE.DESIL_NOT_ELIGIBLE, detail=pl.format("desil {}; {}", pl.col("desil"), pl.col("ranges")),
                         related_id=pl.col("programs"), action=pl.col("action"))
