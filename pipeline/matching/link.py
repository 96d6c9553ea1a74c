"""Link DTKS rows to the civil registry (Dukcapil) by exact NIK.

Dukcapil NIKs are not guaranteed unique, so every Dukcapil row with the NIK is a
candidate; the one whose name and birth date fit best is the link. The identity
level of that link decides how much a Dukcapil fact (death, move) may do:
  strong      name agrees, birth date exact, sex agrees: a death here may exclude;
  consistent  name or birth date agrees: facts apply, sent to review;
  weak        only the birth date (which the NIK itself encodes) agrees;
  mismatch    name and birth date both differ: the NIK belongs to someone else.
"""

from __future__ import annotations

import duckdb
import polars as pl

from pipeline.checks import wilayah
from pipeline.contract import anomaly_frame
from pipeline.matching.standardise import standardise_names

IDENTITY_RANK = {"strong": 0, "consistent": 1, "weak": 2, "mismatch": 3}

LINK_COLUMNS = [
    "id_dtks", "link_method", "dukcapil_candidates", "dukcapil_source_line", "dukcapil_nik", "name_similarity",
    "dob_agreement", "sex_agreement", "identity", "deceased", "tanggal_meninggal", "kab_dtks", "kab_dukcapil",
    "dukcapil_kode_wilayah",
]


def _register_reference(con: duckdb.DuckDBPyConnection) -> None:
    con.register("kabupaten_successors", wilayah.kabupaten_successors())


def link_exact(con: duckdb.DuckDBPyConnection, dtks: pl.DataFrame, dukcapil: pl.DataFrame) -> pl.DataFrame:
    """One row per DTKS row whose NIK has 16 digits and is found in Dukcapil.

    `dtks` needs id_dtks, nik, nik_format_ok, name_std, name_sorted, key_name, key_first,
    key_last, tanggal_lahir, jenis_kelamin, kode_wilayah; `dukcapil` is the staging table."""
    _register_reference(con)
    wanted = dtks.filter(pl.col("nik_format_ok")).select("nik").unique()
    candidates = standardise_names(dukcapil.join(wanted, on="nik", how="semi"))
    con.register("link_dtks", dtks.filter(pl.col("nik_format_ok")))
    con.register("link_cap", candidates)
    scored = con.sql(
        """
        WITH pairs AS (
          SELECT d.id_dtks, c.source_line AS dukcapil_source_line, c.nik AS dukcapil_nik,
                 CASE WHEN d.name_std = c.name_std OR d.name_sorted = c.name_sorted OR d.key_name = c.key_name THEN 1.0
                      ELSE greatest(jaro_winkler_similarity(d.name_std, c.name_std),
                                    jaro_winkler_similarity(d.name_sorted, c.name_sorted)) END AS name_similarity,
                 (d.key_first IN (c.key_first, c.key_last) OR d.key_last IN (c.key_first, c.key_last)) AS shares_name_token,
                 CASE WHEN d.tanggal_lahir = c.tanggal_lahir THEN 'exact'
                      WHEN (day(d.tanggal_lahir) = day(c.tanggal_lahir))::INT + (month(d.tanggal_lahir) = month(c.tanggal_lahir))::INT
                           + (year(d.tanggal_lahir) = year(c.tanggal_lahir))::INT = 2
                        OR (day(d.tanggal_lahir) = month(c.tanggal_lahir) AND month(d.tanggal_lahir) = day(c.tanggal_lahir))
                      THEN 'close' ELSE 'different' END AS dob_agreement,
                 d.jenis_kelamin = c.jenis_kelamin AS sex_agreement,
                 c.deceased, c.tanggal_meninggal, c.kode_wilayah AS dukcapil_kode_wilayah,
                 coalesce(kd.kode_kabupaten_kini, substr(d.kode_wilayah, 1, 4)) AS kab_dtks,
                 coalesce(kc.kode_kabupaten_kini, substr(c.kode_wilayah, 1, 4)) AS kab_dukcapil
          FROM link_dtks d JOIN link_cap c ON c.nik = d.nik
          LEFT JOIN kabupaten_successors kd ON kd.kode = substr(d.kode_wilayah, 1, 4)
          LEFT JOIN kabupaten_successors kc ON kc.kode = substr(c.kode_wilayah, 1, 4)
        ), judged AS (
          SELECT *,
                 CASE WHEN name_similarity >= 0.90 AND dob_agreement = 'exact' AND sex_agreement THEN 'strong'
                      WHEN name_similarity >= 0.80 OR shares_name_token THEN 'consistent'
                      WHEN dob_agreement <> 'different' AND sex_agreement THEN 'weak'
                      ELSE 'mismatch' END AS identity,
                 count(*) OVER (PARTITION BY id_dtks) AS dukcapil_candidates
          FROM pairs
        )
        SELECT * FROM judged
        QUALIFY row_number() OVER (
          PARTITION BY id_dtks
          ORDER BY CASE identity WHEN 'strong' THEN 0 WHEN 'consistent' THEN 1 WHEN 'weak' THEN 2 ELSE 3 END,
                   name_similarity DESC, dukcapil_source_line) = 1
        ORDER BY id_dtks
        """
    ).pl()
    con.unregister("link_dtks")
    con.unregister("link_cap")
    return scored.with_columns(link_method=pl.lit("exact_nik"), name_similarity=pl.col("name_similarity").round(3)).select(
        LINK_COLUMNS
    )


def link_anomalies(dtks: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """NIK_NOT_FOUND, IDENTITY_MISMATCH, DECEASED, RELOCATED from the exact links.
    `dtks` needs id_dtks, nik, nik_valid."""
    not_found = dtks.filter(pl.col("nik_valid")).join(links, on="id_dtks", how="anti")
    trusted = links.filter(pl.col("identity") != "mismatch")
    return pl.concat(
        [
            anomaly_frame(not_found, "NIK_NOT_FOUND", detail=pl.lit("NIK valid tetapi tidak ada di Dukcapil"), related_id=pl.col("nik")),
            anomaly_frame(
                links.filter(pl.col("identity") == "mismatch"),
                "IDENTITY_MISMATCH",
                detail=pl.format("kemiripan nama {}; tanggal lahir {}", pl.col("name_similarity"), pl.col("dob_agreement")),
                related_id=pl.col("dukcapil_nik"),
            ),
            anomaly_frame(
                trusted.filter(pl.col("deceased")),
                "DECEASED",
                detail=pl.format(
                    "meninggal {} menurut Dukcapil; identitas {} (kemiripan nama {}, tanggal lahir {})",
                    pl.col("tanggal_meninggal").cast(pl.String).fill_null("(tanggal tidak terbaca)"),
                    pl.col("identity"), pl.col("name_similarity"), pl.col("dob_agreement"),
                ),
                related_id=pl.col("dukcapil_nik"),
                strong=pl.col("identity") == "strong",
            ),
            anomaly_frame(
                trusted.filter(pl.col("kab_dtks") != pl.col("kab_dukcapil")),
                "RELOCATED",
                detail=pl.format("kabupaten DTKS {} -> Dukcapil {}", pl.col("kab_dtks"), pl.col("kab_dukcapil")),
                related_id=pl.col("dukcapil_nik"),
            ),
        ]
    )
