"""Household (KK) consistency against Dukcapil's family cards.

A DTKS household is the set of rows sharing one valid (16-digit) no_kk. Its
representative is its head (hubungan_keluarga one of eligibility.toml [household]
head_values), else its eldest member. Codes (pipeline/rules/anomalies.toml):
  KK_NOT_FOUND             no Dukcapil row carries the no_kk;
  HOUSEHOLD_HEAD_DECEASED  a head row is recorded dead (DECEASED), other members are not all gone;
  HOUSEHOLD_SPLIT          the members resolve to Dukcapil people on two or more KK numbers;
  HOUSEHOLD_ALL_GONE       every member is recorded dead or living in another kabupaten.
Each stands on every row of the household with related_id = the representative's id_dtks,
so each member's outcome reflects it and a reviewer decides it once for all.
"""

from __future__ import annotations

import polars as pl

from pipeline.contract import CODE, alias_key, alias_key_expr, anomaly_frame, eligibility_rules
from pipeline.matching.link import name_and_birth_agree

VALID_KK = r"^[0-9]{16}$"
HOUSEHOLD_SCHEMA = {"id_dtks": pl.String, "representative": pl.String, "members": pl.String, "kk_dukcapil": pl.String}


def households(records: pl.DataFrame) -> pl.DataFrame:
    """id_dtks, kk, is_head, representative for every row with a valid no_kk.
    `records` needs id_dtks, no_kk, hubungan_keluarga, tanggal_lahir."""
    heads = [alias_key(value) for value in eligibility_rules()["household"]["head_values"]]
    rows = records.select("id_dtks", "tanggal_lahir", kk=pl.col("no_kk"),
                          is_head=alias_key_expr(pl.col("hubungan_keluarga")).is_in(heads).fill_null(False))
    rows = rows.filter(pl.col("kk").str.contains(VALID_KK).fill_null(False))
    # Head first, then the eldest; id_dtks breaks ties (same input, same representative).
    # Sorted within each household, not the whole table by household: 2.8 s against 9 s at 10M rows.
    representative = rows.group_by("kk").agg(
        representative=pl.col("id_dtks").sort_by(pl.col("is_head").not_(), "tanggal_lahir", "id_dtks", nulls_last=True).first(),
        any_head=pl.col("is_head").any(),
    )
    return rows.join(representative, on="kk").with_columns(
        # Without a head column (or no head marked) the eldest stands in as the head.
        is_head=pl.col("is_head") | (~pl.col("any_head") & (pl.col("id_dtks") == pl.col("representative")))
    ).select("id_dtks", "kk", "is_head", "representative")


def _whole_clusters(rows: pl.DataFrame, clusters: pl.DataFrame) -> pl.DataFrame:
    reached = clusters.join(rows, on="id_dtks", how="semi").select("cluster_id").unique()
    return pl.concat([rows, clusters.join(reached, on="cluster_id", how="semi").select("id_dtks")]).unique()


def _same_kabupaten_in_clusters(moved: pl.DataFrame, clusters: pl.DataFrame, kabs: pl.DataFrame) -> pl.DataFrame:
    """A move is a row's address against the civil registry's: the person left kabupaten K
    for every row of theirs written in K, and for no other row (a re-registration at the new
    address is where they live). `kabs`: id_dtks, kab."""
    left = moved.join(clusters, on="id_dtks").join(kabs, on="id_dtks").select("cluster_id", "kab").unique()
    same = clusters.join(kabs, on="id_dtks").join(left, on=["cluster_id", "kab"], how="semi")
    return pl.concat([moved, same.select("id_dtks")]).unique()


def household_findings(records: pl.DataFrame, link_anomalies: pl.DataFrame, resolution: pl.DataFrame,
                       dukcapil: pl.LazyFrame, clusters: pl.DataFrame | None = None,
                       away_whoever: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Household anomalies, and per row of a flagged household its members and Dukcapil KKs
    (HOUSEHOLD_SCHEMA, for the workbook). `link_anomalies` holds the DECEASED and RELOCATED
    findings of the civil-registry link; `records` holds id_dtks, no_kk, hubungan_keluarga,
    tanggal_lahir, nik_consistent and kab (the row's current kabupaten); `resolution` the row's
    civil-registry person with the exact link's `identity`, `name_similarity` and
    `dob_agreement`; `dukcapil` the staged extract (source_line, no_kk); `clusters` the
    duplicate clusters (id_dtks, cluster_id), when known;
    `away_whoever` the rows (id_dtks) whose fuzzy link
    could not tell two Dukcapil persons apart but found every contender dead or living in
    another kabupaten: gone whichever they are, for HOUSEHOLD_ALL_GONE only."""
    rows = households(records)
    dead = link_anomalies.filter(pl.col("anomaly_code") == CODE.DECEASED).select("id_dtks").unique()
    moved = link_anomalies.filter(pl.col("anomaly_code") == CODE.RELOCATED).select("id_dtks").unique()
    if clusters is not None:
        # Rows of one duplicate cluster are one person: a death found through one of them (the
        # other's NIK damaged, say) holds for all, a move for those written at the same address.
        dead = _whole_clusters(dead, clusters)
        moved = _same_kabupaten_in_clusters(moved, clusters, records.select("id_dtks", "kab"))
    known_kk = dukcapil.select(kk=pl.col("no_kk")).filter(pl.col("kk").is_in(rows["kk"].unique().implode())).unique().collect()
    # A member's Dukcapil KK counts when the link is sure of the person: an exact NIK whose
    # name and birth date agree (link.name_and_birth_agree), or a fuzzy resolution of a
    # damaged NIK. An exact NIK under a merely close name may be a relative's card; a row
    # carrying its own valid number that Dukcapil lacks is someone Dukcapil lacks, and a
    # fuzzy resolution of it rests on name and birth date alone (a namesake's KK).
    sure = pl.col("dukcapil_person").is_not_null() & pl.when(pl.col("resolution") == "exact_nik").then(
        name_and_birth_agree().fill_null(False)).otherwise(~pl.col("nik_consistent").fill_null(False))
    sure_people = (resolution.join(records.select("id_dtks", "nik_consistent"), on="id_dtks", how="left")
                   .filter(sure).select("id_dtks", "dukcapil_person"))
    # Only the civil-registry records of those people are read (at 10M rows the whole
    # extract's 25M cards were collected for the join).
    cards = dukcapil.select(dukcapil_person=pl.col("source_line").cast(pl.Int64), kk_dukcapil=pl.col("no_kk")).filter(
        pl.col("dukcapil_person").is_in(sure_people["dukcapil_person"].implode())).collect()
    person_kk = sure_people.join(cards, on="dukcapil_person", how="left").select("id_dtks", "kk_dukcapil")
    unsure = away_whoever["id_dtks"] if away_whoever is not None else pl.Series([], dtype=pl.String)
    rows = rows.join(person_kk, on="id_dtks", how="left").with_columns(
        dead=pl.col("id_dtks").is_in(dead["id_dtks"].implode())
    ).with_columns(gone=pl.col("dead") | pl.col("id_dtks").is_in(moved["id_dtks"].implode())).with_columns(
        unsure=~pl.col("gone") & pl.col("id_dtks").is_in(unsure.implode()))
    per_household = rows.group_by("kk").agg(
        members=pl.len(),
        dead_members=pl.col("dead").sum(),
        gone_members=pl.col("gone").sum(),
        unsure_members=pl.col("unsure").sum(),
        head_dead=(pl.col("is_head") & pl.col("dead")).any(),
        kk_count=pl.col("kk_dukcapil").drop_nulls().n_unique(),
    ).with_columns(
        kk_found=pl.col("kk").is_in(known_kk["kk"].implode()),
        all_gone=pl.col("gone_members") + pl.col("unsure_members") == pl.col("members"),
    )
    flagged = rows.select("id_dtks", "kk", "representative").join(per_household, on="kk")
    members = pl.format("{} anggota", pl.col("members"))
    anomalies = pl.concat([
        anomaly_frame(flagged.filter(~pl.col("kk_found")), CODE.KK_NOT_FOUND,
                      detail=pl.format("nomor KK tidak ada di Dukcapil; {}", members), related_id=pl.col("representative")),
        anomaly_frame(flagged.filter(pl.col("head_dead") & ~pl.col("all_gone")), CODE.HOUSEHOLD_HEAD_DECEASED,
                      detail=pl.format("kepala keluarga meninggal menurut Dukcapil; {}, {} meninggal", members, pl.col("dead_members")),
                      related_id=pl.col("representative")),
        anomaly_frame(flagged.filter(pl.col("kk_count") > 1), CODE.HOUSEHOLD_SPLIT,
                      detail=pl.format("anggota tercatat di {} KK berbeda di Dukcapil; {}", pl.col("kk_count"), members),
                      related_id=pl.col("representative")),
        anomaly_frame(flagged.filter(pl.col("all_gone")), CODE.HOUSEHOLD_ALL_GONE,
                      detail=pl.format("seluruh {}: {} meninggal, {} pindah kabupaten/kota", members, pl.col("dead_members"),
                                       pl.col("gone_members") - pl.col("dead_members"))
                      + pl.when(pl.col("unsure_members") > 0).then(pl.format(
                          ", {} meninggal atau pindah (tautan ke Dukcapil tidak pasti)", pl.col("unsure_members"))).otherwise(pl.lit("")),
                      related_id=pl.col("representative")),
    ])
    # The lists of members and KKs are for the flagged households alone: built for every
    # household they took 15 s at 10M rows.
    shown_rows = rows.join(anomalies.select("id_dtks").unique(), on="id_dtks", how="semi").select("kk").unique()
    lists = rows.join(shown_rows, on="kk", how="semi").group_by("kk").agg(
        kk_list=pl.col("kk_dukcapil").drop_nulls().unique().sort().str.join(", "),
        member_ids=pl.col("id_dtks").sort().str.join(", "),
    )
    shown = flagged.join(anomalies.select("id_dtks").unique(), on="id_dtks", how="semi").join(lists, on="kk").select(
        "id_dtks", "representative", members=pl.col("member_ids"), kk_dukcapil=pl.col("kk_list"))
    return anomalies, shown.cast(HOUSEHOLD_SCHEMA).sort("id_dtks")
