"""The matching engine: each standardisation rule, blocking recall, hard negatives kept
apart, no chaining, stable cluster ids, evidence present."""

import math

import duckdb
import polars as pl
import pytest

from pipeline.matching.blocking import blocking_recall
from pipeline.matching.cluster import cluster_records
from pipeline.matching.diagnostics import blocking_report
from pipeline.matching.model import load_model
from pipeline.matching.sql import register_macros
from pipeline.matching.standardise import nik_digits, standardise_names

SAME_NAME = [
    ("case and spacing", "siti   aminah", "SITI AMINAH"),
    ("honorific Hj.", "Hj. Siti Aminah", "SITI AMINAH"),
    ("degree after comma", "Siti Aminah, S.Pd.", "SITI AMINAH"),
    ("dotted degree", "BUDI SANTOSO S.E.", "BUDI SANTOSO"),
    ("Drs. and H.", "Drs. H. Ahmad Fauzi", "AHMAD FAUZI"),
    ("Bapak", "Bapak Sutrisno", "SUTRISNO"),
    ("Almarhumah", "Almh. Sri Wahyuni", "SRI WAHYUNI"),
    ("Moch.", "MOCH. RIZKI", "MUHAMMAD RIZKI"),
    ("M.", "M. Rizki", "MUHAMMAD RIZKI"),
    ("Muhamad", "MUHAMAD RIZKI", "MUHAMMAD RIZKI"),
    ("Mohammad", "MOHAMMAD RIZKI", "MUHAMMAD RIZKI"),
    ("St.", "St. Aminah", "SITI AMINAH"),
    ("Abd.", "Abd. Rahman", "ABDUL RAHMAN"),
    ("Noer (oe -> u)", "NOER HIDAYAH", "NUR HIDAYAH"),
    ("Soeharto", "SOEHARTO", "SUHARTO"),
    ("Djoko (dj -> j)", "DJOKO", "JOKO"),
    ("Tjahjo (tj -> c)", "TJAHJO", "CAHJO"),
    ("Njoman (nj -> ny)", "NJOMAN", "NYOMAN"),
    ("Sjamsul (sj -> sy)", "SJAMSUL", "SYAMSUL"),
    ("Achmad", "ACHMAD FAUZI", "AHMAD FAUZI"),
]


@pytest.mark.parametrize("label,variant,canonical", SAME_NAME, ids=[c[0] for c in SAME_NAME])
def test_standardisation_rules(label, variant, canonical):
    frame = standardise_names(pl.DataFrame({"nama": [variant, canonical]}))
    assert frame["name_std"][0] == frame["name_std"][1], frame["name_std"].to_list()


def test_patronym_is_kept_as_evidence_not_noise():
    frame = standardise_names(pl.DataFrame({"nama": ["St. Aminah binti Salim", "SITI AMINAH"]}))
    assert frame["name_std"].to_list() == ["SITI AMINAH", "SITI AMINAH"]
    assert frame["name_patronym"].to_list() == ["SALIM", None]


@pytest.mark.parametrize(
    "a,b",
    [("FATIMAH", "FATIMA"), ("RAHMAT", "RACHMAT"), ("SUPARMI", "SOEPARMIE"), ("YUSUF", "JUSUF"), ("ZAINAL", "JAINAL"),
     ("KHAIRUL", "HAIRUL"), ("MUHAMMAD", "MUHAMAD")],
)
def test_phonetic_key_folds_indonesian_variants(a, b):
    frame = standardise_names(pl.DataFrame({"nama": [a, b]}))
    assert frame["key_first"][0] == frame["key_first"][1]


def test_token_order_swap_and_mononym():
    frame = standardise_names(pl.DataFrame({"nama": ["AMINAH SITI", "SITI AMINAH", "SUTRISNO"]}))
    assert frame["name_sorted"][0] == frame["name_sorted"][1]
    assert frame["name_first"][2] == frame["name_last"][2] == "SUTRISNO"


@pytest.mark.parametrize(
    "nik,digits",
    [("3201014501900012.0", "3201014501900012"), ("3.20101E+15", None), ("32010145019000", "32010145019000"), ("", None)],
)
def test_digits_of_damaged_niks(nik, digits):
    assert pl.select(nik_digits(pl.lit(nik))).item() == digits


def test_tokens_covered_macro():
    con = register_macros(duckdb.connect())
    rows = con.sql(
        "SELECT tokens_covered(a, b) FROM (VALUES ('AMINAH', 'SITI AMINAH'), ('MUHAMMAD RISKI', 'MUHAMMAD RIZKI'), "
        "('SITI JUBAIDAH', 'SITI KHADIJAH'), ('DEDI SETIADI', 'ENGKOS SETIADI')) t(a, b)"
    ).fetchall()
    assert [r[0] for r in rows] == [True, True, False, False]


def test_two_names_as_long_cover_each_other_both_ways():
    """Both tokens of AHMAD AHMADI have a partner in AHMAD YANI, but YANI has none in
    AHMAD AHMADI: of two names of as many tokens, neither covers the other, whichever is
    written first. A changed order or a typo still covers."""
    con = register_macros(duckdb.connect())
    rows = con.sql(
        "SELECT tokens_covered(a, b), tokens_covered(b, a) FROM (VALUES ('AHMAD AHMADI', 'AHMAD YANI'), "
        "('MUHAMMAD MUHAMM', 'MUHAMMAD HAKIM'), ('SITI AMINAH', 'AMINA SITI')) t(a, b)"
    ).fetchall()
    assert rows == [(False, False), (False, False), (True, True)]


def test_clustering_does_not_chain_strangers():
    """A~B and B~C link, A and C never matched: C must not join A's cluster."""
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE recs AS SELECT * FROM (VALUES (0, 'A', TRUE, 5), (1, 'B', FALSE, 5), (2, 'C', FALSE, 5)) t(rid, id_dtks, nik_verified, completeness)")
    con.execute("CREATE TEMP TABLE scored_pairs AS SELECT * FROM (VALUES (0, 1, 0.99, 'e1', NULL), (1, 2, 0.99, 'e2', NULL)) "
                "t(rid_l, rid_r, match_probability, evidence, strong_evidence)")
    cluster_records(con, "recs", 0.5)
    clusters = dict(con.execute("SELECT rid, canonical_rid FROM clusters ORDER BY rid").fetchall())
    assert clusters[0] == clusters[1] == 0
    assert clusters[2] == 2


@pytest.fixture(scope="module")
def records(generated_round):
    return pl.read_parquet(generated_round["out"] / "staging" / "records.parquet")


@pytest.fixture(scope="module")
def truth_rows(generated_round):
    return pl.read_csv(generated_round["data"] / "truth_rows.csv", infer_schema=False)


def test_blocking_recall_on_generated_registry(records, truth_rows):
    report = blocking_report(records, load_model(), truth_rows)
    union = report.filter(pl.col("rule") == "(union)").row(0, named=True)
    assert union["recall"] >= 0.99, report
    # No single rule is enough: each reaches well under the union.
    singles = report.filter(pl.col("rule") != "(union)")
    assert singles["recall"].max() < union["recall"]
    assert union["pairs"] < 10 * records.height  # blocking stays far from all pairs
    # A rule's own true pairs are among those it reaches, and together they are the true
    # pairs that exactly one rule reaches.
    assert (singles["true_pairs_only_here"] <= singles["true_pairs_reached"]).all()
    assert singles["true_pairs_only_here"].sum() < union["true_pairs_reached"]


def test_blocking_recall_counts_the_true_pairs_each_rule_alone_reaches():
    pairs = pl.DataFrame({"rid_l": [1, 1, 2, 5], "rid_r": [2, 3, 3, 6], "rules": [[0, 1], [1], [0], [2]]})
    truth = pl.DataFrame({"rid_l": [1, 1, 2, 7], "rid_r": [2, 3, 3, 8]})
    report = blocking_recall(pairs, truth, ["a", "b", "c"])
    assert report.select("rule", "pairs", "true_pairs_reached", "true_pairs_only_here").rows() == [
        ("a", 2, 2, 1), ("b", 2, 2, 1), ("c", 1, 0, 0), ("(union)", 4, 3, None)]
    assert report["recall"].to_list() == [0.5, 0.5, 0.0, 0.75]


def test_hard_negatives_stay_apart(generated_round):
    from pipeline.evaluate import evaluate_round

    hard = evaluate_round(generated_round["out"], generated_round["data"])["hard_negatives"]
    for relation in ("twin", "father_son", "shared_nik"):
        assert hard[relation]["pairs"] > 20, hard
        assert hard[relation]["merged"] <= 0.005 * hard[relation]["pairs"], hard
    # Unrelated people sharing a very common name are not merged either.
    common = hard["common_name"]
    assert common["rows_merged_with_another_person"] / common["rows"] < 0.02, hard


def test_clusters_are_stable_across_reruns_and_input_order(records):
    from pipeline.matching.dedupe import find_duplicates

    model = load_model()
    first = find_duplicates(register_macros(duckdb.connect()), records, model)["clusters"]
    shuffled = records.sample(fraction=1.0, shuffle=True, seed=3)
    second = find_duplicates(register_macros(duckdb.connect()), shuffled, model)["clusters"]
    assert first.select("id_dtks", "cluster_id").equals(second.select("id_dtks", "cluster_id"))


def test_every_duplicate_explains_itself(generated_round):
    anomalies = pl.read_parquet(generated_round["out"] / "anomalies.parquet")
    linked = anomalies.filter((pl.col("anomaly_code") == "DUPLICATE_PERSON") & pl.col("related_id").is_not_null())
    assert linked.height > 0
    names = [c["name"] for c in load_model()["comparisons"]]
    for evidence in linked["evidence"].to_list():
        for name in names:
            assert f"{name}=" in evidence
    assert linked["score"].min() >= load_model()["thresholds"]["link_probability"]
    fuzzy = pl.read_parquet(generated_round["out"] / "dukcapil_links.parquet").filter(pl.col("link_method") == "fuzzy")
    assert fuzzy.height > 0 and fuzzy["evidence"].str.contains("name=").all()


def test_engine_runs_on_other_person_data_with_its_own_id_column():
    from pipeline.matching.engine import deduplicate

    frame = pl.DataFrame({
        "rec_id": ["a-0", "a-1", "b-0"],
        "given_name": ["john", "jon", "mary"],
        "surname": ["smith", "smith", "jones"],
        "dob": ["19800101", "19800101", "19900505"],
    })
    model = {
        "prior_log2_odds": -2.0,
        "thresholds": {"link_probability": 0.5},
        "blocking_rules": [{"name": "dob", "keys": ["dob"], "max_block_size": 10}],
        "comparisons": [
            {"name": "given", "levels": [
                {"label": "jw90", "when": "jaro_winkler_similarity(l.given_name, r.given_name) >= 0.9", "m": 0.9, "u": 0.05},
                {"label": "different", "when": "TRUE", "m": 0.1, "u": 0.95}]},
            {"name": "surname", "levels": [
                {"label": "exact", "when": "l.surname = r.surname", "m": 0.9, "u": 0.01},
                {"label": "different", "when": "TRUE", "m": 0.1, "u": 0.99}]},
        ],
        "cluster": {"canonical_order": ["r.rec_id"]},
    }
    clusters = deduplicate(frame, model, id_column="rec_id")["clusters"]
    ids = dict(zip(clusters["id_dtks"], clusters["cluster_id"]))
    assert ids["a-0"] == ids["a-1"] == "K-a-0" and ids["b-0"] == "K-b-0"


def test_fit_from_labels_is_deterministic_and_keeps_what_labels_cannot_teach(records):
    from pipeline.matching.dedupe import find_duplicates

    model = load_model()
    first = find_duplicates(register_macros(duckdb.connect()), records, model)
    second = find_duplicates(register_macros(duckdb.connect()), records, model)
    assert first["model"] == second["model"]
    assert first["clusters"].equals(second["clusters"])
    fitted = first["model"]
    assert fitted["fit"]["status"] == "fitted" and fitted["fit"]["labelled_matches"] > 0
    comparisons = {c["name"]: c for c in fitted["comparisons"]}
    for name in ("civil_registry", "nik"):  # declared: the labels are made of them
        for level in comparisons[name]["levels"]:
            assert (level["m"], level["u"]) == (level["declared"]["m"], level["declared"]["u"])
    veto = next(lv for lv in comparisons["household"]["levels"] if lv["label"] == "same_kk_given_names_differ")
    assert veto["m"] == veto["declared"]["m"] and veto["u"] == veto["declared"]["u"]
    # Fitted levels are distributions again: the free levels' m sum to what the fixed ones leave.
    names = [lv for lv in comparisons["name"]["levels"] if lv["label"] != "null"]
    assert abs(sum(lv["m"] for lv in names) - 1.0) < 1e-6
    assert any(abs(lv.get("drift", 0)) > 0.5 for lv in names)


def test_fit_falls_back_to_the_declared_model_when_labels_are_few(records):
    from pipeline.matching.dedupe import find_duplicates

    model = load_model()
    model["estimation"] = {**model["estimation"], "min_labelled": {"match": 10**9, "non_match": 1}}
    result = find_duplicates(register_macros(duckdb.connect()), records, model)["model"]
    assert result["fit"]["status"].startswith("declared")
    assert [lv["m"] for c in result["comparisons"] for lv in c["levels"]] == [lv["m"] for c in model["comparisons"] for lv in c["levels"]]


def _name_weights(also: list[str]) -> dict[str, float]:
    """w_name of a query RAHMI against RAHMI (exact) and RAHMIA (a spelling away), and of a
    query RUSMINAH against RUSMINAH, in a population where every third record is RAHMI."""
    from pipeline.matching.compare import compare_pairs, score_pairs

    model = {
        "prior_log2_odds": -5.0,
        "thresholds": {},
        "blocking_rules": [],
        "term_frequency": {"comparison": "name", "level": "exact", "column": "name_std", "also": also},
        "comparisons": [{"name": "name", "levels": [
            {"label": "exact", "when": "l.name_std = r.name_std", "m": 0.62, "u": 0.0008},
            {"label": "spelling", "when": "jaro_winkler_similarity(l.name_std, r.name_std) >= 0.95", "m": 0.17, "u": 0.002},
            {"label": "different", "when": "TRUE", "m": 0.01, "u": 0.88}]}],
    }
    con = register_macros(duckdb.connect())
    con.execute("""CREATE TABLE population AS SELECT i AS rid, CASE WHEN i % 3 = 0 THEN 'RAHMI' ELSE 'PERSON ' || i END AS name_std
                   FROM range(3000) t(i)""")
    con.execute("INSERT INTO population VALUES (5000, 'RAHMIA'), (5001, 'RUSMINAH')")
    con.execute("CREATE TABLE query AS SELECT * FROM (VALUES (1, 'RAHMI'), (2, 'RUSMINAH')) t(rid, name_std)")
    con.execute("CREATE TABLE candidate_pairs AS SELECT * FROM (VALUES (1, 0, 'x'), (1, 5000, 'x'), (2, 5001, 'x')) t(rid_l, rid_r, rule)")
    compare_pairs(con, model, "query", "population")
    score_pairs(con, model, "query", "population", explain=False)
    weights = dict(con.sql("SELECT rid_l || '-' || rid_r, w_name FROM scored_pairs").fetchall())
    return {"common_exact": weights["1-0"], "common_spelling": weights["1-5000"], "rare_exact": weights["2-5001"]}


def test_a_common_name_exact_never_weighs_less_than_its_misspelling_when_looser_levels_are_adjusted_too():
    declared_exact, declared_spelling = math.log2(0.62 / 0.0008), math.log2(0.17 / 0.002)
    exact_only = _name_weights([])
    # The inversion the adjustment of the exact level alone makes: RAHMI's own record
    # weighs less than her twin RAHMIA's.
    assert exact_only["common_exact"] < exact_only["common_spelling"] == pytest.approx(declared_spelling)
    both = _name_weights(["spelling"])
    assert both["common_exact"] > both["common_spelling"]
    assert both["common_exact"] - both["common_spelling"] == pytest.approx(declared_exact - declared_spelling)
    assert both["rare_exact"] == pytest.approx(declared_exact)  # a rare name keeps its weight


def test_a_fitted_model_prices_a_common_name_against_the_pairs_its_u_was_measured_on():
    """The fitted u of exact name agreement is measured on labelled non-matches among the
    candidate pairs; the term-frequency reference is the share of their names, so a name
    as common as theirs loses nothing more, and only a commoner one loses bits."""
    from pipeline.matching.estimate import term_frequency_reference

    con = register_macros(duckdb.connect())
    # 100 records: 40 RAHMI, 10 JONI, 50 of their own names; persons by rid.
    con.execute("""CREATE TABLE records AS SELECT i AS rid, CASE WHEN i < 40 THEN 'RAHMI' WHEN i < 50 THEN 'JONI'
                   ELSE 'P' || i END AS name_std, 'exact' AS cr_method, i AS cr_person FROM range(100) t(i)""")
    # Labelled non-matches agreeing exactly: three RAHMI pairs and one JONI pair; a pair
    # at another level and a labelled match do not count.
    con.execute("""CREATE TABLE comparison_vectors AS SELECT * FROM (VALUES
                   (0, 1, 0), (2, 3, 0), (4, 5, 0), (40, 41, 0), (42, 60, 1)) t(rid_l, rid_r, g_name)""")
    model = {
        "term_frequency": {"comparison": "name", "level": "exact", "column": "name_std"},
        "estimation": {"non_match": "l.cr_method = 'exact' AND r.cr_method = 'exact' AND l.cr_person <> r.cr_person"},
        "comparisons": [{"name": "name", "levels": [{"label": "exact"}, {"label": "other"}]}],
    }
    assert term_frequency_reference(con, model, "records") == pytest.approx((3 * 0.4 + 0.1) / 4)
    con.execute("DELETE FROM comparison_vectors WHERE g_name = 0")
    assert term_frequency_reference(con, model, "records") is None


def test_the_term_frequency_reference_is_the_same_whatever_the_threads():
    """Summed in DuckDB's threads' order, an average of shares differed in its last bit
    from one 1M-row round to the next, and with it model.json and every match weight. The
    reference is the exact mean share, rounded once, with one thread or four."""
    from fractions import Fraction

    from pipeline.matching.estimate import term_frequency_reference

    model = {
        "term_frequency": {"comparison": "name", "level": "exact", "column": "name_std"},
        "estimation": {"non_match": "l.cr_person <> r.cr_person"},
        "comparisons": [{"name": "name", "levels": [{"label": "exact"}, {"label": "other"}]}],
    }
    # Enough pairs for several of DuckDB's row groups; names of uneven, awkward shares.
    records, pairs = 30_011, 600_000
    answers = []
    for threads in (1, 4):
        con = duckdb.connect(config={"threads": threads})
        con.execute(f"""CREATE TABLE records AS SELECT i AS rid, 'N' || (i * i % 997) AS name_std, i AS cr_person
                        FROM range({records}) t(i)""")
        con.execute(f"""CREATE TABLE comparison_vectors AS SELECT i % {records} AS rid_l, (i * 7 + 1) % {records} AS rid_r,
                        0 AS g_name FROM range({pairs}) t(i)""")
        answers.append(term_frequency_reference(con, model, "records"))
        counts = dict(con.execute("SELECT name_std, count(*) FROM records GROUP BY ALL").fetchall())
        names = dict(con.execute("SELECT rid, name_std FROM records").fetchall())
        left = con.execute("SELECT l.rid_l FROM comparison_vectors l JOIN records a ON a.rid = l.rid_l "
                           "JOIN records b ON b.rid = l.rid_r WHERE a.cr_person <> b.cr_person").fetchall()
    exact = Fraction(sum(counts[names[rid]] for (rid,) in left), len(left) * records)
    assert answers[0] == answers[1] == float(exact)


def test_each_rules_pairs_less_those_an_earlier_rule_finds_are_the_candidate_pairs(records):
    """What a bucket does (pipeline/partitioned.py): each rule's pairs, less those an
    earlier rule finds unless that rule skips their giant block, give the candidate pairs
    and the first rule of each, as one grouping over all rules' pairs does."""
    from pipeline.matching.blocking import candidate_pairs, drop_found_earlier, new_pairs_table, rule_pairs, skipped_blocks
    from pipeline.matching.dedupe import RECORD_COLUMNS

    model = load_model()
    # Small blocks for the early rules, so pairs of their giant blocks must stay with a later rule.
    for rule in model["blocking_rules"][:6]:
        rule["max_block_size"] = 2
    con = register_macros(duckdb.connect())
    con.register("_records", records.select(RECORD_COLUMNS))
    con.execute("CREATE TABLE recs AS SELECT * FROM _records")
    candidate_pairs(con, model, "recs")
    expected = con.sql("SELECT rid_l, rid_r, rule::SMALLINT AS rule FROM candidate_pairs ORDER BY ALL").pl()
    skipped = {}
    for index, rule in enumerate(model["blocking_rules"]):
        keys = skipped_blocks(con, rule, "recs")
        con.register(f"_skipped_{index}", keys)
        skipped[index] = f"_skipped_{index}" if keys.height else None
    assert sum(table is not None for table in skipped.values()) >= 3
    found = []
    for index, rule in enumerate(model["blocking_rules"]):
        new_pairs_table(con)
        rule_pairs(con, index, rule, "recs")
        drop_found_earlier(con, model, index, "recs", skipped)
        found.append(con.sql("SELECT * FROM _pairs").pl())
    got = pl.concat(found).sort(pl.all())
    assert got.height == expected.height > 1000
    assert got.equals(expected)
    # Blind to the giant blocks, a later rule would drop pairs no earlier rule finds.
    blind = []
    for index in range(6, len(model["blocking_rules"])):
        new_pairs_table(con)
        rule_pairs(con, index, model["blocking_rules"][index], "recs")
        drop_found_earlier(con, model, index, "recs", {})
        blind.append(con.sql("SELECT count(*) FROM _pairs").fetchall()[0][0])
    assert sum(blind) < expected.filter(pl.col("rule") >= 6).height
