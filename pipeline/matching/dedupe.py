"""Find the same person listed more than once in DTKS: prepare records, block, compare,
score, cluster; then DUPLICATE_PERSON for every row of a cluster larger than one and
NIK_SHARED for a NIK carried by rows of different clusters (different people)."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from pipeline.contract import CODE, anomaly_frame
from pipeline.matching.blocking import summed_stats
from pipeline.matching.cluster import cluster_records
from pipeline.matching.compare import block_and_compare, score_pairs
from pipeline.matching.estimate import fit_from_labels
from pipeline.matching.standardise import standardise_records

RECORD_COLUMNS = [
    "rid", "id_dtks", "nik", "nik_format_ok", "nik_valid", "nik_consistent", "nik_verified", "cr_person", "cr_method", "cr_namesake",
    "cr_rejected",
    "name_std", "name_sorted", "name_patronym",
    "name_first", "key_first", "key_last", "key_name", "tanggal_lahir", "dob_placeholder", "jenis_kelamin", "no_kk",
    "kode_wilayah", "kab", "completeness", "nik_digits", "birth_year",
]
OPTIONAL_FIELDS = ("no_kk", "tempat_lahir", "alamat", "program")


@dataclass(frozen=True)
class ScoredBuckets:
    """Candidate pairs scored bucket by bucket (pipeline/partitioned.py): the Parquet files
    of the pairs at or above reported_probability, the per-bucket rule statistics, the
    number of distinct candidate pairs, and the model they were scored with (fitted on
    all buckets' labels)."""
    paths: list[str]
    stats: list[dict]
    candidate_pairs: int
    model: dict


def prepare_records(dtks: pl.DataFrame | pl.LazyFrame, nik_facts: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """Staging DTKS + NIK facts -> standardised records with a deterministic rid
    (the rank of id_dtks), region keys and a completeness score. Lazy in, lazy out."""
    records = (
        dtks.join(nik_facts, on="id_dtks", how="left")
        .sort("id_dtks")
        .with_row_index("rid")
        .with_columns(pl.col("rid").cast(pl.Int64))
    )
    records = standardise_records(records.drop("dob_placeholder"))
    return records.with_columns(
        completeness=(
            pl.sum_horizontal([pl.col(c).is_not_null().cast(pl.Int8) for c in OPTIONAL_FIELDS])
            + pl.col("nik_valid").cast(pl.Int8) * 2
        ).cast(pl.Int16),
    )


def mark_verified(records: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """nik_verified: the NIK is in Dukcapil and its Dukcapil identity fits this row;
    nik_found: some Dukcapil record holds the NIK (`links`: every exact-NIK link)."""
    # One join, links having one row per DTKS row (link_exact): two is_in look-ups of
    # every id took 10.2 s at 10M rows, this 4.1 s.
    flags = links.select("id_dtks", nik_verified=pl.col("identity").is_in(["strong", "consistent"]), nik_found=pl.lit(True))
    return records.join(flags, on="id_dtks", how="left", maintain_order="left").with_columns(
        pl.col("nik_verified").fill_null(False), pl.col("nik_found").fill_null(False))


def find_duplicates(
    con: duckdb.DuckDBPyConnection, records: pl.DataFrame | str, model: dict, id_column: str = "id_dtks",
    columns: list[str] | None = RECORD_COLUMNS, cannot_link: pl.DataFrame | None = None,
    scored: ScoredBuckets | None = None,
) -> dict:
    """Returns clusters (every record), pairs (scored, at or above half the link
    probability, for audit), blocking statistics and the model as used. `scored`: the
    pairs already blocked, compared, fitted and scored bucket by bucket
    (pipeline/partitioned.py) instead of here."""
    if isinstance(records, str):
        # A Parquet path: DuckDB reads it directly, no second copy in Python memory.
        selected = ", ".join(columns) if columns else "*"
        con.execute(f"CREATE OR REPLACE TEMP TABLE records AS SELECT {selected} FROM read_parquet($path)", {"path": records})
    else:
        con.register("_records_frame", records.select(columns) if columns else records)
        con.execute("CREATE OR REPLACE TEMP TABLE records AS SELECT * FROM _records_frame")
        con.unregister("_records_frame")
    if scored is None:
        blocking_stats = block_and_compare(con, model, "records")
        model = fit_from_labels(con, model, "records")
        score_pairs(con, model, "records", min_probability=reported_probability(model))
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE scored_pairs AS SELECT * FROM read_parquet($paths)", {"paths": scored.paths})
        blocking_stats, model = summed_stats(model, scored.stats, scored.candidate_pairs), scored.model
    thresholds = model["thresholds"]
    reported = reported_probability(model)
    if cannot_link is not None and cannot_link.height:
        _apply_cannot_link(con, cannot_link, id_column)
    cluster_records(con, "records", thresholds["link_probability"], model.get("cluster", {}).get("canonical_order"))
    if cannot_link is not None and cannot_link.height:
        _split_cannot_link(con, id_column)
    clusters = con.sql(
        f"""
        SELECT r.{id_column} AS id_dtks, k.{id_column} AS canonical_id_dtks, 'K-' || k.{id_column} AS cluster_id,
               count(*) OVER (PARTITION BY c.canonical_rid) AS cluster_size,
               c.rid = c.canonical_rid AS is_canonical, c.match_probability, c.evidence,
               c.strong_evidence AS exclusion_evidence
        FROM clusters c JOIN records r ON r.rid = c.rid JOIN records k ON k.rid = c.canonical_rid
        ORDER BY r.{id_column}
        """
    ).pl()
    rule_names = pl.DataFrame(
        {"rule": range(len(model["blocking_rules"])), "blocking_rule": [r["name"] for r in model["blocking_rules"]]},
        schema={"rule": pl.Int16, "blocking_rule": pl.String},
    )
    pairs = con.sql(
        f"""
        SELECT l.{id_column} AS id_dtks_l, r.{id_column} AS id_dtks_r, s.rule::SMALLINT AS rule,
               s.match_weight, s.match_probability, s.evidence, s.strong_evidence AS exclusion_evidence
        FROM scored_pairs s JOIN records l ON l.rid = s.rid_l JOIN records r ON r.rid = s.rid_r
        WHERE s.match_probability >= {reported!r}
        ORDER BY id_dtks_l, id_dtks_r
        """
    ).pl().join(rule_names, on="rule", how="left").drop("rule")
    for table in ("candidate_pairs", "comparison_vectors", "scored_pairs", "clusters", "records"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return {"clusters": clusters, "pairs": pairs, "blocking": blocking_stats, "model": model}


def reported_probability(model: dict) -> float:
    """Pairs scoring at least this are kept for audit, beside those that link."""
    return model["thresholds"]["link_probability"] / 2


def _apply_cannot_link(con: duckdb.DuckDBPyConnection, cannot_link: pl.DataFrame, id_column: str) -> None:
    """A reviewer said these are different people: their pair scores zero."""
    con.register("_cannot_link_ids", cannot_link)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE cannot_link AS
            SELECT least(a.rid, b.rid) AS rid_l, greatest(a.rid, b.rid) AS rid_r
            FROM _cannot_link_ids c JOIN records a ON a.{id_column} = c.id_a JOIN records b ON b.{id_column} = c.id_b"""
    )
    con.unregister("_cannot_link_ids")
    con.execute(
        """UPDATE scored_pairs SET match_probability = 0,
               evidence = evidence || '; keputusan pemeriksa: bukan orang yang sama'
           WHERE (rid_l, rid_r) IN (SELECT (rid_l, rid_r) FROM cannot_link)"""
    )


def _split_cannot_link(con: duckdb.DuckDBPyConnection, id_column: str) -> None:
    """Both rows may still reach one canonical row; then the one linked less strongly
    (never the canonical row) leaves the cluster."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _leaving AS
           SELECT CASE WHEN a.rid = a.canonical_rid THEN b.rid
                       WHEN b.rid = b.canonical_rid THEN a.rid
                       WHEN coalesce(a.match_probability, 0) < coalesce(b.match_probability, 0) THEN a.rid
                       ELSE b.rid END AS rid
           FROM cannot_link k JOIN clusters a ON a.rid = k.rid_l JOIN clusters b ON b.rid = k.rid_r
           WHERE a.canonical_rid = b.canonical_rid"""
    )
    con.execute(
        """UPDATE clusters SET canonical_rid = rid, match_probability = NULL, evidence = NULL, strong_evidence = NULL
           WHERE rid IN (SELECT rid FROM _leaving)"""
    )
    con.execute("DROP TABLE _leaving")
    con.execute("DROP TABLE cannot_link")


def duplicate_anomalies(clusters: pl.DataFrame, model: dict) -> pl.DataFrame:
    """DUPLICATE_PERSON on every row of a cluster larger than one. The canonical row is
    the one kept (warn). Another row is excluded only when its link to the canonical row
    reaches the model's exclusion probability and shows a declared kind of strong
    evidence (`exclusion.evidence` in the model, named in the detail); otherwise a
    reviewer decides."""
    rule = model["exclusion"]
    in_clusters = clusters.filter(pl.col("cluster_size") > 1)
    strong = (pl.col("match_probability") >= rule["min_probability"]) & pl.col("exclusion_evidence").is_not_null()
    return anomaly_frame(
        in_clusters,
        CODE.DUPLICATE_PERSON,
        detail=pl.when(pl.col("is_canonical"))
        .then(pl.format("baris utama klaster {} ({} baris)", pl.col("cluster_id"), pl.col("cluster_size")))
        .when(strong)
        .then(pl.format("sama dengan {} (probabilitas {}; bukti kuat: {})", pl.col("canonical_id_dtks"),
                        pl.col("match_probability").round(4), pl.col("exclusion_evidence")))
        .otherwise(pl.format("sama dengan {} (probabilitas {})", pl.col("canonical_id_dtks"), pl.col("match_probability").round(4))),
        related_id=pl.when(pl.col("is_canonical")).then(None).otherwise(pl.col("canonical_id_dtks")),
        action=pl.when(pl.col("is_canonical")).then(pl.lit("warn")).when(strong).then(pl.lit("exclude")).otherwise(pl.lit("review")),
        score=pl.col("match_probability"),
        evidence=pl.col("evidence"),
    )


def shared_nik_anomalies(records: pl.DataFrame, clusters: pl.DataFrame) -> pl.DataFrame:
    """NIK_SHARED: a 16-digit NIK on rows that fall into two or more different clusters
    (different people). The same person twice is a duplicate, not a shared NIK."""
    rows = records.filter(pl.col("nik_format_ok")).select("id_dtks", "nik").join(
        clusters.select("id_dtks", "cluster_id"), on="id_dtks"
    )
    # Per NIK first, then back to the rows of the shared NIKs only: windows over every
    # row took 28 s at 10M rows.
    per_nik = rows.group_by("nik").agg(
        people=pl.col("cluster_id").n_unique(), rows_with_nik=pl.len(),
        first=pl.col("id_dtks").min(), last=pl.col("id_dtks").max(),
    ).filter(pl.col("people") > 1)
    shared = rows.join(per_nik, on="nik").with_columns(
        # Point each row at another row carrying the NIK: the first, or for the first row the last.
        related=pl.when(pl.col("id_dtks") == pl.col("first")).then(pl.col("last")).otherwise(pl.col("first")),
    ).sort("id_dtks")
    return anomaly_frame(
        shared,
        CODE.NIK_SHARED,
        detail=pl.format("NIK dipakai {} orang berbeda pada {} baris", pl.col("people"), pl.col("rows_with_nik")),
        related_id=pl.col("related"),
    )
