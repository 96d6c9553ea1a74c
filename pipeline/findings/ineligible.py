"""NOT_ELIGIBLE: DTKS rows whose person is on an ineligibility list (`--ineligible`).

A list row is linked to DTKS four ways, strongest first:
  exact     the same 16-digit NIK on a DTKS row and the names agree;
  dukcapil  the list's NIK is the civil-registry NIK a DTKS row with a damaged NIK was
            resolved to, and the names agree;
  fuzzy     for a list NIK the civil registry does not hold under an agreeing name (a
            damaged number): the matching engine's civil-registry link model
            (pipeline/rules/link_model.json, without the comparisons the list cannot
            answer) finds one DTKS person clearly ahead of every other, whose name
            agrees and whose NIK is unreadable or within `fuzzy_max_nik_edits` of the list's
            (`fuzzy_max_nik_edits_without_birth_date` when the list has no birth date);
  cluster   another row of a duplicate cluster one of the above reached.
Only `exact` can exclude, and only when the list type's exact_action says so, the birth
dates agree (or, when the list has none, the whole name agrees, patronym included), and the
civil registry confirms the DTKS row holds that NIK (pipeline/rules/eligibility.toml).
Everything else goes to review. A NIK shared with a list row whose name disagrees is no
match: another person's number is no evidence.

The engine knows nothing of codes: this module turns its scored pairs into findings.
"""

from __future__ import annotations

import copy

import duckdb
import polars as pl

from pipeline.checks.nik import placeholder_birth_date
from pipeline.contract import CODE, anomaly_frame, eligibility_rules
from pipeline.matching.compare import block_and_compare, score_pairs
from pipeline.matching.link import prepare_dukcapil
from pipeline.matching.sql import sql_path
from pipeline.matching.standardise import nik_is_own_number, standardise_records

METHODS = ("exact", "dukcapil", "fuzzy", "cluster")  # strongest first
METHOD_LABELS = {"exact": "NIK sama, nama cocok", "dukcapil": "NIK Dukcapil hasil tautan", "fuzzy": "fuzzy (NIK rusak)",
                 "cluster": "baris lain klaster duplikat"}
MATCH_SCHEMA = {
    "id_dtks": pl.String, "jenis": pl.String, "method": pl.String, "action": pl.String, "list_file": pl.String,
    "list_line": pl.Int64, "list_nik": pl.String, "list_nama": pl.String, "list_lahir": pl.Date, "sumber": pl.String,
    "tanggal": pl.String, "name_similarity": pl.Float64, "probability": pl.Float64, "evidence": pl.String,
}
RIGHT_COLUMNS = [
    "rid", "id_dtks", "nik", "nik_digits", "nik_format_ok", "nik_valid", "nik_consistent", "name_std", "name_sorted",
    "name_patronym", "key_first", "key_last", "key_name", "tanggal_lahir", "dob_placeholder", "birth_year", "jenis_kelamin",
    "no_kk", "kode_wilayah", "kab",
]


def list_model(link_model: dict) -> dict:
    """The civil-registry link model without the comparisons a list cannot answer (it
    has no address or KK): those would count as disagreement; without the levels of DTKS
    facts a list row lacks; and with the blocking rules a list needs besides
    (eligibility.toml)."""
    settings = eligibility_rules()["ineligible_link"]
    ignored = set(settings.get("ignore_comparisons", ()))
    model = copy.deepcopy(link_model)
    model["comparisons"] = [c for c in model["comparisons"] if c["name"] not in ignored]
    ignored_levels = settings.get("ignore_levels", {})
    for comparison in model["comparisons"]:
        comparison["levels"] = [lv for lv in comparison["levels"] if lv["label"] not in ignored_levels.get(comparison["name"], ())]
        if comparison["name"] == "dob":
            # A birth date read from the list's own NIK repeats the NIK's date digits: the
            # NIK comparison already weighs them, so it may find candidates but not count twice.
            comparison["levels"].insert(0, {"label": "read_from_nik", "when": "l.dob_from_nik", "m": 1.0, "u": 1.0})
    model["blocking_rules"] = model["blocking_rules"] + list(settings.get("blocking_rules", ()))
    return model


def standardise_list(entries: pl.DataFrame, as_of_year: int) -> pl.DataFrame:
    """List rows as engine records: names standardised, NIK digits, no region and no KK.
    Sex and, where the list gives none, the birth date are read from the NIK (DDMMYY, DD + 40
    for women; a two-digit year is 20YY when that makes the person at least 15): a read
    date (`dob_from_nik`) lets blocking find candidates but is not weighed on top of the
    NIK's digits (list_model). `stated_lahir` keeps the list's own birth date, the one an
    exact match must agree with; the NIK counts as its holder's own only against that date."""
    nik = pl.col("nik")
    day, month, year = (nik.str.slice(start, 2).cast(pl.Int32, strict=False) for start in (6, 8, 10))
    century = pl.when(2000 + year <= as_of_year - 15).then(2000).otherwise(1900)
    from_nik = pl.concat_str([
        (century + year).cast(pl.String), month.cast(pl.String).str.zfill(2),
        pl.when(day > 40).then(day - 40).otherwise(day).cast(pl.String).str.zfill(2),
    ], separator="-").str.to_date("%Y-%m-%d", strict=False)
    frame = entries.with_columns(
        rid=pl.int_range(pl.len(), dtype=pl.Int64),
        jenis_kelamin=pl.when(day > 40).then(pl.lit("P")).when(day.is_between(1, 31)).then(pl.lit("L")),
        kode_wilayah=pl.lit(None, dtype=pl.String), no_kk=pl.lit(None, dtype=pl.String),
        stated_lahir=pl.col("tanggal_lahir"),
    )
    frame = frame.with_columns(
        tanggal_lahir=pl.coalesce("tanggal_lahir", pl.when(nik.str.contains(r"^[0-9]{16}$")).then(from_nik)),
    ).with_columns(dob_from_nik=pl.col("stated_lahir").is_null() & pl.col("tanggal_lahir").is_not_null())
    records = standardise_records(frame)
    return records.with_columns(
        nik_format_ok=pl.col("nik").str.contains(r"^[0-9]{16}$").fill_null(False),
        nik_consistent=nik_is_own_number(pl.col("nik_digits"), pl.col("stated_lahir"), pl.col("jenis_kelamin")),
        dob_placeholder=placeholder_birth_date(pl.col("tanggal_lahir")),
    )


def _name_agrees(threshold: float) -> str:
    return f"""(l.name_std = r.name_std OR l.name_sorted = r.name_sorted OR l.key_name = r.key_name
               OR jaro_winkler_similarity(l.name_std, r.name_std) >= {threshold!r}
               OR jaro_winkler_similarity(l.name_sorted, r.name_sorted) >= {threshold!r})"""


def _similarity() -> str:
    return "greatest(jaro_winkler_similarity(l.name_std, r.name_std), jaro_winkler_similarity(l.name_sorted, r.name_sorted))"


def link_lists(con: duckdb.DuckDBPyConnection, entries: pl.DataFrame, records_path: str, resolution: pl.DataFrame,
               clusters: pl.DataFrame, link_model: dict, as_of_year: int,
               dukcapil_staging: str | None = None) -> tuple[pl.DataFrame, dict]:
    """One row per (DTKS row, list entry) linked (MATCH_SCHEMA, `action` per the rules), and
    counts per way of linking. `dukcapil_staging`: the civil registry, which tells the list
    rows whose NIK names a known person apart from those the fuzzy path is for."""
    rules = eligibility_rules()
    settings = rules["ineligible_link"]
    actions = pl.DataFrame({"jenis": list(rules["ineligible"]),
                            "exact_action": [spec["exact_action"] for spec in rules["ineligible"].values()]})
    left = standardise_list(entries, as_of_year)
    con.register("_elig_left", left)
    con.execute("CREATE OR REPLACE TEMP TABLE elig_left AS SELECT * FROM _elig_left")
    con.unregister("_elig_left")
    # A view: each query reads only what it needs of the records file. Copied into a table
    # first, at 10M rows the stage held 3.1 GB more and took 22.5 s instead of 17.7 s.
    con.execute(f"CREATE OR REPLACE TEMP VIEW elig_right AS SELECT {', '.join(RIGHT_COLUMNS)} FROM read_parquet({sql_path(records_path)})")
    con.register("elig_resolution", resolution.select("id_dtks", "resolution", "dukcapil_nik", "namesake"))
    agrees = _name_agrees(settings["name_agrees"])
    exact = con.sql(
        f"""SELECT l.rid AS list_rid, r.id_dtks, 'exact' AS method, {_similarity()} AS name_similarity,
                   -- Without a birth date on the list, only the whole name (patronym too)
                   -- stands in for it: the NIK alone encodes the date it would be checked by.
                   (l.stated_lahir = r.tanggal_lahir OR (l.stated_lahir IS NULL AND l.name_std = r.name_std
                    AND l.name_patronym IS NOT DISTINCT FROM r.name_patronym)) AS dob_agrees,
                   -- The civil registry confirms the row holds the NIK, and no namesake born
                   -- that day nearby could hold it instead (twins given one name, one card).
                   coalesce(s.resolution = 'exact_nik' AND s.dukcapil_nik = r.nik AND NOT s.namesake, FALSE) AS confirmed,
                   -- RINI on her twin RINA's card agrees by the phonetic key: never enough to exclude.
                   one_vowel_apart(l.name_std, r.name_std) AS vowel_apart
            FROM elig_left l JOIN elig_right r ON r.nik = l.nik AND l.nik_format_ok
            LEFT JOIN elig_resolution s ON s.id_dtks = r.id_dtks
            WHERE {agrees}"""
    ).pl()
    # The list rows and the DTKS rows their NIK resolves are paired first (MATERIALIZED):
    # left to order the joins, DuckDB paired every list row with every DTKS row by the
    # name conditions when the registry was small beside its list (20,000 rows and 478
    # list rows: a nested loop of 2.9 s, now 0.01 s).
    via_registry = con.sql(
        f"""WITH resolved AS MATERIALIZED (
              SELECT l.*, s.id_dtks AS resolved_id
              FROM elig_left l JOIN elig_resolution s ON s.dukcapil_nik = l.nik AND l.nik_format_ok
              WHERE s.resolution IN ('exact_nik', 'fuzzy'))
            SELECT l.rid AS list_rid, r.id_dtks, 'dukcapil' AS method, {_similarity()} AS name_similarity
            FROM resolved l JOIN elig_right r ON r.id_dtks = l.resolved_id
            WHERE r.nik IS DISTINCT FROM l.nik AND {agrees}"""
    ).pl()
    con.unregister("elig_resolution")
    found = pl.concat([exact["list_rid"], via_registry["list_rid"]]).unique()
    # A list NIK the civil registry holds under an agreeing name is that person's: the
    # exact and dukcapil ways above reach them if DTKS has them at all. Scoring such a row
    # against DTKS by name and birth date finds only namesakes born the same day.
    identified = _identified_in_registry(con, left, dukcapil_staging, agrees) if dukcapil_staging else pl.Series(dtype=pl.Int64)
    found = pl.concat([found, identified]).unique()
    fuzzy = _link_fuzzy(con, left.filter(~pl.col("rid").is_in(found.implode())), clusters, list_model(link_model), settings, agrees)
    con.execute("DROP TABLE IF EXISTS elig_left")
    con.execute("DROP VIEW IF EXISTS elig_right")

    direct = pl.concat([
        exact.with_columns(strong=pl.col("dob_agrees") & pl.col("confirmed") & ~pl.col("vowel_apart"))
        .drop("dob_agrees", "confirmed", "vowel_apart"),
        via_registry.with_columns(strong=pl.lit(False)),
        fuzzy.with_columns(strong=pl.lit(False)),
    ], how="diagonal_relaxed")
    # Every other row of a reached duplicate cluster is the same person: for review.
    cluster_of = clusters.select("id_dtks", "cluster_id")
    members = (
        direct.join(cluster_of, on="id_dtks").select("list_rid", "cluster_id").unique()
        .join(cluster_of, on="cluster_id").drop("cluster_id")
        .join(direct.select("list_rid", "id_dtks"), on=["list_rid", "id_dtks"], how="anti")
        .with_columns(method=pl.lit("cluster"), strong=pl.lit(False))
    )
    linked = pl.concat([direct, members], how="diagonal_relaxed")
    order = {m: i for i, m in enumerate(METHODS)}
    matches = (
        linked.join(left.select(list_rid="rid", list_file="file", list_line="source_line", list_nik="nik",
                                list_nama="nama", list_lahir="stated_lahir", jenis="jenis", sumber="sumber", tanggal="tanggal"),
                    on="list_rid")
        .join(actions, on="jenis", how="left")
        .with_columns(action=pl.when(pl.col("strong") & (pl.col("exact_action") == "exclude")).then(pl.lit("exclude"))
                      .otherwise(pl.lit("review")),
                      _order=pl.col("method").replace_strict(order, return_dtype=pl.Int8))
        # One entry per (row, list type): the strongest link, then the first list line.
        .sort("id_dtks", "jenis", "_order", "list_file", "list_line")
        .unique(["id_dtks", "jenis"], keep="first", maintain_order=True)
    )
    for column, dtype in MATCH_SCHEMA.items():
        if column not in matches.columns:
            matches = matches.with_columns(pl.lit(None, dtype=dtype).alias(column))
    counts = {method: int((matches["method"] == method).sum()) for method in METHODS}
    return matches.select(list(MATCH_SCHEMA)).cast(MATCH_SCHEMA), counts


def _identified_in_registry(con: duckdb.DuckDBPyConnection, left: pl.DataFrame, dukcapil_staging: str, agrees: str) -> pl.Series:
    """List rows whose NIK the civil registry holds for a person whose name agrees."""
    niks = left.filter(pl.col("nik_format_ok"))["nik"].unique()
    registry = prepare_dukcapil(pl.scan_parquet(dukcapil_staging).filter(pl.col("nik").is_in(niks.implode()))).collect()
    con.register("_elig_registry", registry)
    try:
        return con.sql(f"""SELECT DISTINCT l.rid FROM elig_left l JOIN _elig_registry r ON r.nik = l.nik WHERE {agrees}""").pl()["rid"]
    finally:
        con.unregister("_elig_registry")


def _link_fuzzy(con: duckdb.DuckDBPyConnection, query: pl.DataFrame, clusters: pl.DataFrame, model: dict,
                settings: dict, agrees: str) -> pl.DataFrame:
    """List rows the NIK did not reach, linked by the engine: the best DTKS duplicate
    cluster when its probability reaches `fuzzy_probability` and no other cluster comes
    within `min_margin` bits; its rows scored at that probability are linked."""
    empty = pl.DataFrame(schema={"list_rid": pl.Int64, "id_dtks": pl.String, "method": pl.String,
                                 "name_similarity": pl.Float64, "probability": pl.Float64, "evidence": pl.String})
    if query.height == 0:
        return empty
    con.register("_elig_query", query)
    con.execute("CREATE OR REPLACE TEMP TABLE elig_query AS SELECT * FROM _elig_query")
    con.unregister("_elig_query")
    con.register("elig_clusters", clusters.select("id_dtks", "cluster_id"))
    block_and_compare(con, model, "elig_query", "elig_right")
    score_pairs(con, model, "elig_query", "elig_right")
    linked = con.sql(
        f"""WITH per_cluster AS (
              SELECT s.rid_l, k.cluster_id, max(s.match_weight) AS weight
              FROM scored_pairs s JOIN elig_right r ON r.rid = s.rid_r JOIN elig_clusters k ON k.id_dtks = r.id_dtks
              GROUP BY s.rid_l, k.cluster_id
            ), ranked AS (
              SELECT *, row_number() OVER (PARTITION BY rid_l ORDER BY weight DESC, cluster_id) AS rank,
                     lead(weight) OVER (PARTITION BY rid_l ORDER BY weight DESC, cluster_id) AS runner_up
              FROM per_cluster
            )
            SELECT s.rid_l AS list_rid, r.id_dtks, 'fuzzy' AS method,
                   greatest(jaro_winkler_similarity(l.name_std, r.name_std),
                            jaro_winkler_similarity(l.name_sorted, r.name_sorted)) AS name_similarity,
                   round(s.match_probability, 6) AS probability, s.evidence
            FROM ranked k
            JOIN scored_pairs s ON s.rid_l = k.rid_l
            JOIN elig_right r ON r.rid = s.rid_r
            JOIN elig_clusters c ON c.id_dtks = r.id_dtks AND c.cluster_id = k.cluster_id
            JOIN elig_query l ON l.rid = s.rid_l
            WHERE k.rank = 1 AND k.weight - coalesce(k.runner_up, -99) >= {settings['min_margin']!r}
              AND s.match_probability >= {settings['fuzzy_probability']!r}
              -- As on the other ways: a list row names its person, and a row whose name
              -- disagrees is someone else, however close number and birth date come.
              AND {agrees}
              AND NOT (l.nik_format_ok AND r.nik_format_ok
                       AND damerau_levenshtein(l.nik_digits, r.nik_digits) > CASE WHEN l.dob_from_nik
                           THEN {int(settings['fuzzy_max_nik_edits_without_birth_date'])}
                           ELSE {int(settings['fuzzy_max_nik_edits'])} END)
            ORDER BY list_rid, r.id_dtks"""
    ).pl()
    con.unregister("elig_clusters")
    for table in ("elig_query", "candidate_pairs", "comparison_vectors", "scored_pairs", "_tf"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return linked.cast({c: empty.schema[c] for c in linked.columns})


def not_eligible_anomalies(matches: pl.DataFrame) -> pl.DataFrame:
    """One NOT_ELIGIBLE per DTKS row: the list type with the strongest action (then the
    order types are declared in) is its related_id and leads the detail; other types
    the row is on follow in the detail."""
    types = list(eligibility_rules()["ineligible"])
    labels = {name: spec["label"] for name, spec in eligibility_rules()["ineligible"].items()}
    ranked = matches.with_columns(
        _strength=(pl.col("action") != "exclude").cast(pl.Int8),
        _type=pl.col("jenis").replace_strict({t: i for i, t in enumerate(types)}, return_dtype=pl.Int16),
    ).sort("id_dtks", "_strength", "_type")
    per_row = ranked.group_by("id_dtks", maintain_order=True).agg(
        pl.col("jenis").first(), pl.col("action").first(), pl.col("method").first(),
        pl.col("probability").first(), pl.col("evidence").first(), pl.col("name_similarity").first(),
        others=pl.col("jenis").slice(1).str.join(", "),
    )
    detail = pl.format(
        "{} ({}): {}; kemiripan nama {}", pl.col("jenis"), pl.col("jenis").replace_strict(labels, default=None),
        pl.col("method").replace_strict(METHOD_LABELS, default=None), pl.col("name_similarity").round(3).fill_null(-1),
    )
    detail = pl.when(pl.col("others") != "").then(pl.format("{}; juga di daftar {}", detail, pl.col("others"))).otherwise(detail)
    return anomaly_frame(per_row, CODE.NOT_ELIGIBLE, detail=detail, related_id=pl.col("jenis"), action=pl.col("action"),
                         score=pl.col("probability"), evidence=pl.col("evidence"))
