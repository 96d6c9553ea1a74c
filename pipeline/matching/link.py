"""Link DTKS rows to the civil registry (Dukcapil) by exact NIK.

Dukcapil NIKs are not guaranteed unique, so every Dukcapil row with the NIK is a
candidate; the one whose name fits best is the link. The NIK itself encodes birth date
and sex, so a mistyped NIK that lands on another real person agrees on them almost
always: on an exact-NIK link the name is the evidence of identity. Levels:
  strong      name agrees, birth date exact, sex agrees, and the names are not one vowel
              apart (RINI on her twin RINA's card has RINA's phonetic key): a death here
              may exclude;
  consistent  the shorter name is covered token by token by the other (typos, an added
              or dropped token): Dukcapil facts apply, sent to review;
  mismatch    otherwise: the NIK belongs to someone else (IDENTITY_MISMATCH).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from pipeline.checks import wilayah
from pipeline.contract import CODE, anomaly_frame, anomaly_rules
from pipeline.matching.compare import block_and_compare, evidence_sql, score_pairs
from pipeline.matching.sql import sql_path
from pipeline.matching.standardise import standardise_records

LINK_COLUMNS = [
    "id_dtks", "link_method", "dukcapil_candidates", "dukcapil_source_line", "dukcapil_person", "dukcapil_nik", "name_similarity",
    "dob_agreement", "sex_agreement", "identity", "another_fits", "deceased", "tanggal_meninggal", "kab_dtks", "kab_dukcapil",
    "dukcapil_kode_wilayah",
]
# Of each trusted exact link: the row's NIK, name and birth date, and the KK, name and birth
# date of the record under its NIK (link_exact, another_record_fits).
HOLDER_FACT_COLUMNS = ["id_dtks", "nik", "name_std", "tanggal_lahir", "holder_kk", "holder_name", "holder_born"]
HOLDER_FACTS_TABLE = "holder_facts"  # the DuckDB table link_exact leaves them in
NIK_REPEATS_TABLE = "_nik_repeats"  # NIKs of several civil-registry records (same_person_table)


def _register_reference(con: duckdb.DuckDBPyConnection) -> None:
    con.register("kabupaten_successors", wilayah.kabupaten_successors())


# Jaro-Winkler on standardised names from which two spellings are one name.
SAME_NAME = 0.95

LINK_RECORD_COLUMNS = [
    "rid", "nik", "nik_digits", "nik_format_ok", "nik_valid", "nik_consistent", "name_std", "name_sorted", "name_patronym",
    "key_first", "key_last", "key_name", "tanggal_lahir", "dob_placeholder", "birth_year", "jenis_kelamin", "no_kk",
    "kode_wilayah", "kab",
]
# What the link stage reads of the standardised DTKS records (round.link_civil_registry).
LINK_STAGE_COLUMNS = ["id_dtks", *LINK_RECORD_COLUMNS]
# A fuzzy query row: a record, and whether any civil-registry record holds its NIK
# (dedupe.mark_verified), which tells a number nobody holds from someone else's.
FUZZY_QUERY_COLUMNS = [*LINK_RECORD_COLUMNS, "id_dtks", "nik_found"]
EXACT_LINK_COLUMNS = ["id_dtks", "nik", "name_std", "name_sorted", "key_name", "tanggal_lahir", "jenis_kelamin", "kode_wilayah"]
DUKCAPIL_COLUMNS = ["source_line", "nik", "no_kk", "nama", "jenis_kelamin", "tanggal_lahir", "kode_wilayah", "deceased", "tanggal_meninggal"]


def prepare_dukcapil(dukcapil: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """Staging Dukcapil -> standardised records; rid is the source line (unique, stable)."""
    # Civil-registry NIKs are issued, not typed: well-formed is taken as valid.
    well_formed = pl.col("nik").str.contains(r"^[0-9]{16}$").fill_null(False)
    return standardise_records(dukcapil.select(DUKCAPIL_COLUMNS)).with_columns(
        rid=pl.col("source_line").cast(pl.Int64), nik_format_ok=well_formed, nik_valid=well_formed,
    ).select(LINK_RECORD_COLUMNS + ["deceased", "tanggal_meninggal", "source_line"])


def load_dukcapil(con: duckdb.DuckDBPyConnection, staging_path: str, table: str = "dukcapil_records") -> None:
    """Standardise the Dukcapil staging file and make `table` a view over the result, with
    each record's civil-registry `person`. The records stream from one Parquet file to
    another (polars' streaming engine), so the 2.5 N civil-registry rows are never held in
    Python memory; nor are they copied into DuckDB: every query reads the columns it needs
    from the file. At 10M DTKS rows a 25M-row table loaded (23 s) and rewritten to add the
    person (37 s) spilled past the connection's memory limit, and every later query on it
    read from the spill."""
    records_path = Path(staging_path).with_name("dukcapil_records.parquet")
    prepare_dukcapil(pl.scan_parquet(staging_path)).sink_parquet(records_path)
    source = f"read_parquet({sql_path(records_path)})"
    same_person_table(con, source)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {with_person_sql(source)}")


def mark_unissued_numbers(records: pl.LazyFrame, dukcapil_staging: str, slack: int) -> pl.LazyFrame:
    """nik_unissued: the NIK's serial lies beyond every serial the civil registry issued for
    its kecamatan and birth date (by more than `slack`, room for people Dukcapil lacks).
    Serials are issued in order, so such a number is nobody's: a mistyped one. It is then
    not its holder's own number (nik_consistent false), and the twin veto, which trusts two
    own numbers one serial apart, does not hold it against a duplicate. Estimated from each
    round's Dukcapil extract, not from a constant."""
    digits = pl.col("nik")
    # Grouped on the number, not the text: at 10M rows (22.6M distinct prefixes of 25M NIKs)
    # 4.2 s against 6.9 s. Twelve digits are one number and back, so nothing else changes.
    number = pl.col("number")
    issued = (
        pl.scan_parquet(dukcapil_staging).select("nik")
        .filter(digits.str.contains(r"^[0-9]{16}$").fill_null(False))
        .select(number=digits.cast(pl.Int64))
        .group_by(prefix=number // 10_000).agg(top_serial=(number % 10_000).max().cast(pl.Int32))
        .collect()
    )
    serial = pl.col("nik_digits").str.slice(12, 4).cast(pl.Int32, strict=False)
    unissued = ((pl.col("nik_digits").str.len_chars() == 16) & (serial > pl.col("top_serial") + slack)).fill_null(False)
    return (
        records.join(issued.lazy(), left_on=pl.col("nik_digits").str.slice(0, 12).cast(pl.Int64, strict=False),
                     right_on="prefix", how="left", maintain_order="left")
        .with_columns(nik_unissued=unissued)
        .with_columns(nik_consistent=pl.col("nik_consistent") & ~pl.col("nik_unissued"))
        .drop("prefix", "top_serial")
    )


def same_person_table(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Table _same_person (rid, person) for the records of `source` whose NIK repeats.
    Dukcapil sometimes holds a person twice under one NIK (an older record); records
    sharing a NIK, a birth date and a name are one person, the smallest rid. A NIK
    double-issued to two people stays two persons. Every other record is its own person.
    Table NIK_REPEATS_TABLE (nik, records): the NIKs held by more than one record, which
    link_exact ranks (found here anyway; a few per cent of the NIKs)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {NIK_REPEATS_TABLE} AS
            SELECT nik, count(*) AS records FROM {source} WHERE nik IS NOT NULL GROUP BY nik HAVING count(*) > 1"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _same_person AS
            WITH repeated AS (
              SELECT rid, nik, tanggal_lahir, name_std FROM {source} WHERE nik IN (SELECT nik FROM {NIK_REPEATS_TABLE}))
            SELECT a.rid, min(b.rid) AS person
            FROM repeated a JOIN repeated b ON a.nik = b.nik AND a.tanggal_lahir = b.tanggal_lahir
             AND (a.name_std = b.name_std OR tokens_covered(a.name_std, b.name_std)
                  OR jaro_winkler_similarity(a.name_std, b.name_std) >= {SAME_NAME})
            GROUP BY a.rid"""
    )


def with_person_sql(source: str) -> str:
    """The records of `source` with their `person` (after same_person_table)."""
    return f"SELECT t.*, coalesce(s.person, t.rid) AS person FROM {source} t LEFT JOIN _same_person s USING (rid)"


def identify_persons(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Column `person` on the records of `table` (same_person_table), for a table small
    enough to rewrite: one bucket of a partitioned round."""
    same_person_table(con, table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {with_person_sql(table)}")
    con.execute("DROP TABLE _same_person")


def link_exact(con: duckdb.DuckDBPyConnection, dtks: pl.DataFrame, dukcapil: str = "dukcapil_records",
               holders: str = HOLDER_FACTS_TABLE) -> pl.DataFrame:
    """One row per DTKS row whose NIK has 16 digits and is found in Dukcapil.

    `dtks` holds standardised records (standardise_records); `dukcapil` names the table
    load_dukcapil (or, for a bucket, identify_persons) made, with NIK_REPEATS_TABLE beside
    it. For each link not a mismatch, the row's NIK, name and birth date
    beside the KK, name and birth date of the record under its NIK (HOLDER_FACT_COLUMNS)
    are left in the DuckDB table `holders` for another_record_fits: read in the same join
    (a second join of every link with the civil registry took 11.6 s at 10M rows) and kept
    in DuckDB (fetched into polars with the links, they raised the 10M stage's peak by
    1.8 GB)."""
    _register_reference(con)
    # Only the columns the join reads: the registered frame is copied for DuckDB (at 3M rows
    # the whole standardised record took 2.7 GB more than these).
    con.register("link_dtks", dtks.select(EXACT_LINK_COLUMNS + ["nik_format_ok"]).filter(pl.col("nik_format_ok")))
    con.execute(f"CREATE OR REPLACE TEMP VIEW link_cap AS SELECT * FROM {dukcapil} WHERE nik IN (SELECT nik FROM link_dtks)")
    # Most NIKs are held by one record: only the links of a repeated NIK are ranked (a
    # window over every link, wide rows and all, took 13 of the 30 s of this query at 10M).
    def judged(nik_condition: str) -> str:
        """The judged links of the NIKs `nik_condition` keeps (an SQL condition on `nik`)."""
        return f"""
        WITH pairs AS (
          SELECT d.id_dtks, c.source_line AS dukcapil_source_line, c.person AS dukcapil_person, c.nik AS dukcapil_nik,
                 d.nik AS row_nik, d.name_std AS row_name, d.tanggal_lahir AS row_born,
                 c.no_kk AS holder_kk, c.name_std AS holder_name, c.tanggal_lahir AS holder_born,
                 CASE WHEN d.name_std = c.name_std OR d.name_sorted = c.name_sorted OR d.key_name = c.key_name THEN 1.0
                      ELSE greatest(jaro_winkler_similarity(d.name_std, c.name_std),
                                    jaro_winkler_similarity(d.name_sorted, c.name_sorted)) END AS name_similarity,
                 one_vowel_apart(d.name_std, c.name_std) AS vowel_apart,
                 CASE WHEN d.tanggal_lahir = c.tanggal_lahir THEN 'exact'
                      WHEN (day(d.tanggal_lahir) = day(c.tanggal_lahir))::INT + (month(d.tanggal_lahir) = month(c.tanggal_lahir))::INT
                           + (year(d.tanggal_lahir) = year(c.tanggal_lahir))::INT = 2
                        OR (day(d.tanggal_lahir) = month(c.tanggal_lahir) AND month(d.tanggal_lahir) = day(c.tanggal_lahir))
                      THEN 'close' ELSE 'different' END AS dob_agreement,
                 d.jenis_kelamin = c.jenis_kelamin AS sex_agreement,
                 c.deceased, c.tanggal_meninggal, c.kode_wilayah AS dukcapil_kode_wilayah,
                 coalesce(kd.kode_kabupaten_kini, substr(d.kode_wilayah, 1, 4)) AS kab_dtks,
                 coalesce(kc.kode_kabupaten_kini, substr(c.kode_wilayah, 1, 4)) AS kab_dukcapil
          FROM (SELECT * FROM link_dtks WHERE {nik_condition}) d JOIN (SELECT * FROM link_cap WHERE {nik_condition}) c ON c.nik = d.nik
          LEFT JOIN kabupaten_successors kd ON kd.kode = substr(d.kode_wilayah, 1, 4)
          LEFT JOIN kabupaten_successors kc ON kc.kode = substr(c.kode_wilayah, 1, 4)
        )
        SELECT *,
                 CASE WHEN name_similarity >= {SAME_NAME} AND dob_agreement = 'exact' AND sex_agreement AND NOT vowel_apart
                      THEN 'strong'
                      WHEN name_similarity >= {SAME_NAME} THEN 'consistent'
                      -- Token by token (costly) only the names not close already.
                      WHEN tokens_covered(row_name, holder_name) THEN 'consistent'
                      ELSE 'mismatch' END AS identity
        FROM pairs"""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE exact_judged AS
        SELECT *, 1::BIGINT AS dukcapil_candidates
        FROM ({judged(f"nik NOT IN (SELECT nik FROM {NIK_REPEATS_TABLE})")})
        UNION ALL
        SELECT * FROM (
          SELECT j.*, r.records AS dukcapil_candidates
          FROM ({judged(f"nik IN (SELECT nik FROM {NIK_REPEATS_TABLE})")}) j
          JOIN {NIK_REPEATS_TABLE} r ON r.nik = j.row_nik)
        QUALIFY row_number() OVER (
          PARTITION BY id_dtks
          ORDER BY CASE identity WHEN 'strong' THEN 0 WHEN 'consistent' THEN 1 ELSE 2 END,
                   name_similarity DESC, dukcapil_source_line) = 1
        """
    )
    con.unregister("link_dtks")
    con.execute("DROP VIEW link_cap")
    columns = [c for c in LINK_COLUMNS if c not in ("link_method", "another_fits")]
    exact = con.sql(f"SELECT {', '.join(columns)} FROM exact_judged ORDER BY id_dtks").pl().with_columns(
        link_method=pl.lit("exact_nik"), name_similarity=pl.col("name_similarity").round(3), another_fits=pl.lit(False),
    ).select(LINK_COLUMNS)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {holders} AS
            SELECT id_dtks, row_nik AS nik, row_name AS name_std, row_born AS tanggal_lahir, holder_kk, holder_name, holder_born
            FROM exact_judged WHERE identity <> 'mismatch' ORDER BY id_dtks"""
    )
    con.execute("DROP TABLE exact_judged")
    return exact


def another_record_fits(con: duckdb.DuckDBPyConnection, exact: pl.DataFrame, dukcapil: str = "dukcapil_records",
                        holders: str = HOLDER_FACTS_TABLE) -> pl.DataFrame:
    """`another_fits`: the civil registry holds another person born the same day, in the
    NIK's kecamatan or the holder's KK, under the row's very name: a twin or sibling.
    When the record under the row's NIK has another name or birth date, the row is that
    other person written with the holder's card (RINI on RINA's NIK, a younger brother of
    one name on his elder's): a name close enough to pass the identity check (one letter,
    the same phonetic key), or a birth date a year off, is the other person's, so the link
    is a mismatch, the row goes to review and the fuzzy link suggests its own NIK. When the
    holder has the row's name too (twins given one name), the NIK alone says which of the
    two the row is: resolve() marks the resolution `namesake`. `holders`: the table
    link_exact left, dropped once read. In a partitioned round the same steps run bucket
    by bucket (pipeline/partitioned.py): the holders per NIK bucket,
    records_fitting_another per bucket of (name, birth date)."""
    try:
        return mark_another_fits(exact, records_fitting_another(con, holders, dukcapil))
    finally:
        con.execute(f"DROP TABLE IF EXISTS {holders}")


def records_fitting_another(con: duckdb.DuckDBPyConnection, facts: str, dukcapil: str = "dukcapil_records") -> pl.DataFrame:
    """(id_dtks, holder_differs) of the rows in table `facts` (HOLDER_FACT_COLUMNS) whose name and
    birth date another civil-registry record carries, in the NIK's kecamatan or the
    holder's KK; holder_differs: the record under the row's NIK has another name or birth
    date. Only records of one (name, birth date) meet, so a bucket of both sides hashed by
    them finds what the whole tables would."""
    return con.sql(
        f"""SELECT d.id_dtks, bool_or(d.holder_name <> d.name_std OR d.holder_born IS DISTINCT FROM d.tanggal_lahir) AS holder_differs
            FROM {facts} d JOIN {dukcapil} o
              ON o.name_std = d.name_std AND o.tanggal_lahir = d.tanggal_lahir AND o.nik <> d.nik
             AND (substr(o.nik, 1, 6) = substr(d.nik, 1, 6) OR o.no_kk = d.holder_kk)
            GROUP BY d.id_dtks ORDER BY d.id_dtks"""
    ).pl()


def mark_another_fits(exact: pl.DataFrame, fits: pl.DataFrame) -> pl.DataFrame:
    """The exact links with `another_fits` (records_fitting_another), and identity mismatch
    where the holder's name or birth date differs from the row's."""
    another = pl.col("id_dtks").is_in(fits["id_dtks"].implode())
    holder_differs = pl.col("id_dtks").is_in(fits.filter(pl.col("holder_differs"))["id_dtks"].implode())
    return exact.with_columns(
        identity=pl.when(holder_differs).then(pl.lit("mismatch")).otherwise(pl.col("identity")), another_fits=another,
    )


def link_anomalies(dtks: pl.DataFrame, links: pl.DataFrame, resolution: pl.DataFrame) -> pl.DataFrame:
    """NIK_NOT_FOUND, IDENTITY_MISMATCH, DECEASED, RELOCATED from the exact links.
    `dtks` needs id_dtks, nik, nik_valid; `resolution` is resolve()'s. A mismatch judged on
    the name alone is no IDENTITY_MISMATCH when the whole evidence (birth date, region, KK,
    NIK digits) resolves the row to that very holder: the name is misspelt, the NIK is the
    row's own (on nine generated registries of three kinds, 0 of 1,007 such rows carried
    another person's NIK)."""
    not_found = dtks.filter(pl.col("nik_valid")).join(links, on="id_dtks", how="anti")
    trusted = links.filter(pl.col("identity") != "mismatch")
    holder_after_all = resolution.filter(pl.col("resolution") == "fuzzy").select("id_dtks", "dukcapil_person")
    mismatched = links.filter(pl.col("identity") == "mismatch").join(holder_after_all, on=["id_dtks", "dukcapil_person"], how="anti")
    return pl.concat(
        [
            anomaly_frame(not_found, CODE.NIK_NOT_FOUND, detail=pl.lit("NIK valid tetapi tidak ada di Dukcapil"), related_id=pl.col("nik")),
            anomaly_frame(
                mismatched,
                CODE.IDENTITY_MISMATCH,
                detail=pl.when(pl.col("another_fits"))
                .then(pl.lit("nama dan tanggal lahir cocok dengan orang lain di Dukcapil (kembar atau saudara?); ")).otherwise(pl.lit(""))
                + pl.format("kemiripan nama {}; tanggal lahir {}", pl.col("name_similarity"), pl.col("dob_agreement")),
                related_id=pl.col("dukcapil_nik"),
            ),
            anomaly_frame(
                trusted.filter(pl.col("deceased")),
                CODE.DECEASED,
                detail=pl.format(
                    "meninggal {} menurut Dukcapil; identitas {} (kemiripan nama {}, tanggal lahir {})",
                    pl.col("tanggal_meninggal").cast(pl.String).fill_null("(tanggal tidak terbaca)"),
                    pl.col("identity"), pl.col("name_similarity"), pl.col("dob_agreement"),
                ),
                related_id=pl.col("dukcapil_nik"),
                # Excluding needs a readable death date too: an unreadable entry goes to review;
                # and no namesake born that day nearby (twins given one name, one card).
                strong=(pl.col("identity") == "strong") & ~pl.col("another_fits") & pl.col("tanggal_meninggal").is_not_null(),
            ),
            anomaly_frame(
                trusted.filter(pl.col("kab_dtks") != pl.col("kab_dukcapil")),
                CODE.RELOCATED,
                detail=pl.format("kabupaten DTKS {} -> Dukcapil {}", pl.col("kab_dtks"), pl.col("kab_dukcapil")),
                related_id=pl.col("dukcapil_nik"),
            ),
        ]
    )


FUZZY_COLUMNS = [
    "id_dtks", "link_method", "dukcapil_candidates", "dukcapil_source_line", "dukcapil_person", "dukcapil_nik", "match_probability",
    "match_weight", "margin", "ambiguous", "evidence", "deceased", "tanggal_meninggal", "kab_dtks", "kab_dukcapil",
    "dukcapil_kode_wilayah", "contenders_away",
]


def link_fuzzy(con: duckdb.DuckDBPyConnection, query: pl.DataFrame, model: dict, dukcapil: str = "dukcapil_records",
               vectors: tuple[list[str], list[dict]] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Most likely Dukcapil person for each DTKS record in `query` (rows whose NIK did not
    lead to them). Returns the best candidate per row when its probability reaches the
    model's threshold (`ambiguous` marks a runner-up within `min_margin` bits;
    `contenders_away`: every person within `min_margin` bits of the best is dead or lives in
    another kabupaten than the row, so that much holds whichever of them the row is), and the
    blocking statistics. `vectors`: comparison vectors computed bucket by bucket
    (pipeline/partitioned.py) instead of blocking and comparing here."""
    thresholds = model["thresholds"]
    con.register("_query", query.select(FUZZY_QUERY_COLUMNS))
    con.execute("CREATE OR REPLACE TEMP TABLE link_left AS SELECT * FROM _query")
    con.unregister("_query")
    stats = block_and_compare(con, model, "link_left", dukcapil, vectors)
    # The evidence text is built for each row's best pair only (a tenth of the candidates).
    score_pairs(con, model, "link_left", dukcapil, explain=False)
    best = con.sql(
        f"""
        -- Ranked on the narrow columns only; the evidence of the winners is joined back
        -- (windows carrying every pair's evidence text ran out of memory at 10M rows).
        WITH per_person AS (
          -- The runner-up is the best other person: two records of one person are no doubt.
          SELECT s.rid_l, s.rid_r, s.match_weight,
                 coalesce(c.deceased, FALSE) OR coalesce(c.kab <> l.kab, FALSE) AS away,
                 row_number() OVER (PARTITION BY s.rid_l, c.person ORDER BY s.match_weight DESC, s.rid_r) AS person_rank
          FROM scored_pairs s JOIN {dukcapil} c ON c.rid = s.rid_r JOIN link_left l ON l.rid = s.rid_l
        ), ranked AS (
          SELECT rid_l, rid_r, match_weight, row_number() OVER (PARTITION BY rid_l ORDER BY match_weight DESC, rid_r) AS rank,
                 count(*) OVER (PARTITION BY rid_l) AS dukcapil_candidates,
                 lead(match_weight) OVER (PARTITION BY rid_l ORDER BY match_weight DESC, rid_r) AS runner_up,
                 bool_and(away) OVER (PARTITION BY rid_l ORDER BY match_weight DESC
                                      RANGE BETWEEN UNBOUNDED PRECEDING AND {thresholds['min_margin']!r} FOLLOWING) AS contenders_away
          FROM per_person WHERE person_rank = 1
        )
        SELECT l.id_dtks, 'fuzzy' AS link_method, k.dukcapil_candidates, r.source_line AS dukcapil_source_line,
               r.person AS dukcapil_person,
               r.nik AS dukcapil_nik, round(s.match_probability, 6) AS match_probability,
               round(k.match_weight, 3) AS match_weight,
               round(k.match_weight - coalesce(k.runner_up, -99), 3) AS margin,
               coalesce(k.match_weight - k.runner_up < {thresholds['min_margin']!r}, FALSE) AS ambiguous,
               {evidence_sql(model, 's')} AS evidence, r.deceased, r.tanggal_meninggal, l.kab AS kab_dtks, r.kab AS kab_dukcapil,
               r.kode_wilayah AS dukcapil_kode_wilayah, k.contenders_away
        FROM ranked k JOIN scored_pairs s ON s.rid_l = k.rid_l AND s.rid_r = k.rid_r
        JOIN link_left l ON l.rid = k.rid_l JOIN {dukcapil} r ON r.rid = k.rid_r
        WHERE k.rank = 1 AND s.match_probability >= {thresholds['link_probability']!r}
        ORDER BY l.id_dtks
        """
    ).pl()
    for table in ("link_left", "candidate_pairs", "comparison_vectors", "scored_pairs", "_tf"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return best.select(FUZZY_COLUMNS), stats


def name_and_birth_agree() -> pl.Expr:
    """On an exact-NIK link (LINK_COLUMNS): the record under the row's NIK has its name and
    birth date, so it is the row's person, whatever the sex columns say (identity strong,
    or the sex mistyped on the form: another person with that number, name and birthday
    is not to be had; unless the name is another record's, another_record_fits)."""
    return (pl.col("identity") == "strong") | (
        (pl.col("identity") != "mismatch") & (pl.col("name_similarity") >= SAME_NAME) & (pl.col("dob_agreement") == "exact")
    )


RESOLUTION_COLUMNS = ["id_dtks", "resolution", "dukcapil_person", "dukcapil_nik", "probability", "margin", "namesake",
                      "not_dukcapil_person"]


def resolve(records: pl.DataFrame, exact: pl.DataFrame, fuzzy: pl.DataFrame, min_probability: float) -> pl.DataFrame:
    """Which civil-registry person each DTKS row is, one row per record:
      exact_nik   the NIK is in Dukcapil and the name fits it;
      fuzzy       the most likely person by name, birth date, region and NIK digits, with
                  probability >= min_probability and clear of the runner-up;
      ambiguous   two persons fit about equally;
      unresolved  nobody fits well enough (e.g. the person is missing from Dukcapil).
    Two rows resolved to different persons are different people; a fuzzy resolution is
    never enough on its own to remove anyone."""
    # A name merely covered by the other (a son with his father's NIK shares the family
    # name) resolves only when birth date and sex agree as well.
    same_person = name_and_birth_agree() | (
        (pl.col("identity") == "consistent") & (pl.col("dob_agreement") != "different") & pl.col("sex_agreement")
    )
    # namesake: the civil registry also holds another person of the row's name born that
    # day (another_record_fits, twins given one name): the NIK alone says which of the two
    # the row is, and a card is what twins mix up.
    by_nik = exact.filter(same_person).select(
        "id_dtks", "dukcapil_person", "dukcapil_nik", resolution=pl.lit("exact_nik"),
        probability=pl.lit(None, dtype=pl.Float64), margin=pl.lit(None, dtype=pl.Float64), namesake=pl.col("another_fits"),
    )
    by_fuzzy = fuzzy.join(by_nik, on="id_dtks", how="anti").select(
        "id_dtks", "dukcapil_person", "dukcapil_nik",
        resolution=pl.when(pl.col("ambiguous")).then(pl.lit("ambiguous"))
        .when(pl.col("match_probability") >= min_probability).then(pl.lit("fuzzy"))
        .otherwise(pl.lit("unresolved")),
        probability=pl.col("match_probability"), margin=pl.col("margin"), namesake=pl.lit(False),
    )
    resolved = pl.concat([by_nik, by_fuzzy], how="vertical_relaxed")
    # The person the row's NIK points to, when name or birth date say it is someone else
    # (a relative's card, a mistyped NIK), unless all the evidence resolves the row to
    # that very person after all (a misspelt name).
    rejected = exact.filter((pl.col("identity") == "mismatch") | (pl.col("dob_agreement") == "different")).select(
        "id_dtks", not_dukcapil_person=pl.col("dukcapil_person")
    )
    return (
        records.select("id_dtks").join(resolved, on="id_dtks", how="left").join(rejected, on="id_dtks", how="left")
        .with_columns(not_dukcapil_person=pl.when(pl.col("not_dukcapil_person") != pl.col("dukcapil_person").fill_null(-1))
                      .then(pl.col("not_dukcapil_person")))
        .with_columns(
            resolution=pl.col("resolution").fill_null("unresolved"), namesake=pl.col("namesake").fill_null(False),
            dukcapil_person=pl.when(pl.col("resolution").is_in(["exact_nik", "fuzzy"])).then(pl.col("dukcapil_person")),
            dukcapil_nik=pl.when(pl.col("resolution").is_in(["exact_nik", "fuzzy"])).then(pl.col("dukcapil_nik")),
        )
        .select(RESOLUTION_COLUMNS).sort("id_dtks")
    )


def resolution_columns(resolution: pl.DataFrame) -> pl.DataFrame:
    """id_dtks and, for each record, cr_person / cr_method: the civil-registry person it
    resolves to and how ('exact' or 'fuzzy'), null when unresolved; cr_namesake: another
    civil-registry person of the row's name was born that day nearby (resolve);
    cr_rejected: the person its NIK points to but whose name says it is someone else."""
    method = pl.col("resolution").replace_strict({"exact_nik": "exact", "fuzzy": "fuzzy"}, default=None)
    return resolution.select("id_dtks", cr_person=pl.col("dukcapil_person"), cr_method=method,
                             cr_namesake=pl.col("namesake"), cr_rejected=pl.col("not_dukcapil_person"))


def with_resolution(records: pl.LazyFrame, resolution: pl.DataFrame) -> pl.LazyFrame:
    """The records with their resolution_columns."""
    return records.join(resolution_columns(resolution).lazy(), on="id_dtks", how="left", maintain_order="left")


def fuzzy_anomalies(fuzzy: pl.DataFrame) -> pl.DataFrame:
    """DECEASED and RELOCATED through a fuzzy link: always for review, with the evidence."""
    sure = fuzzy.filter(~pl.col("ambiguous"))
    via = pl.format("lewat tautan fuzzy ke Dukcapil (p={})", pl.col("match_probability").round(4))
    return pl.concat([
        anomaly_frame(
            sure.filter(pl.col("deceased")), CODE.DECEASED,
            detail=pl.format("meninggal {} menurut Dukcapil; {}", pl.col("tanggal_meninggal").cast(pl.String).fill_null("(tanggal tidak terbaca)"), via),
            related_id=pl.col("dukcapil_nik"), action=pl.lit("review"), score=pl.col("match_probability"), evidence=pl.col("evidence"),
        ),
        anomaly_frame(
            sure.filter(pl.col("kab_dtks") != pl.col("kab_dukcapil")), CODE.RELOCATED,
            detail=pl.format("kabupaten DTKS {} -> Dukcapil {}; {}", pl.col("kab_dtks"), pl.col("kab_dukcapil"), via),
            related_id=pl.col("dukcapil_nik"), score=pl.col("match_probability"), evidence=pl.col("evidence"),
        ),
    ])


SUGGESTION_COLUMNS = ["id_dtks", "ambiguous", "dukcapil_nik", "match_probability", "evidence"]


def attach_suggested_nik(anomalies: pl.DataFrame, fuzzy: pl.DataFrame) -> pl.DataFrame:
    """On NIK problems, point related_id at the Dukcapil NIK the fuzzy link suggests, so a
    reviewer can repair the NIK instead of cutting the person off. `fuzzy` needs the
    SUGGESTION_COLUMNS of the fuzzy links."""
    suggestions = fuzzy.filter(~pl.col("ambiguous")).select(
        "id_dtks", suggested=pl.col("dukcapil_nik"), p=pl.col("match_probability"), fuzzy_evidence=pl.col("evidence")
    )
    joined = anomalies.join(suggestions, on="id_dtks", how="left")
    repair_codes = [code for code, rule in anomaly_rules().items() if rule.repair]
    repairable = pl.col("anomaly_code").is_in(repair_codes) & pl.col("suggested").is_not_null()
    return joined.with_columns(
        related_id=pl.when(repairable).then(pl.col("suggested")).otherwise(pl.col("related_id")),
        detail=pl.when(repairable).then(pl.format("{}; NIK usulan dari Dukcapil (p={})", pl.col("detail"), pl.col("p").round(4))).otherwise(pl.col("detail")),
        score=pl.when(repairable).then(pl.col("p")).otherwise(pl.col("score")),
        evidence=pl.when(repairable).then(pl.col("fuzzy_evidence")).otherwise(pl.col("evidence")),
    ).select(anomalies.columns)
