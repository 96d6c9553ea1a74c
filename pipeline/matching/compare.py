"""Compare and score candidate pairs with the Fellegi-Sunter model: each comparison puts
a pair in one level; the level's weight log2(m/u) is the evidence; the sum plus the prior
gives the match probability. Everything compiles to one DuckDB query from model.json."""

from __future__ import annotations

import math

import duckdb
import polars as pl

from pipeline.matching.blocking import candidate_pairs, gather_vectors
from pipeline.matching.model import level_weight, probability_sql


def _level_case(comparison: dict) -> str:
    whens = " ".join(f"WHEN {level['when']} THEN {i}" for i, level in enumerate(comparison["levels"]))
    return f"CASE {whens} END"


def _weight_case(comparison: dict, column: str) -> str:
    whens = " ".join(f"WHEN {i} THEN {level_weight(level)!r}" for i, level in enumerate(comparison["levels"]))
    return f"CASE {column} {whens} END"


def _label_case(comparison: dict, column: str) -> str:
    whens = " ".join(f"WHEN {i} THEN '{level['label']}'" for i, level in enumerate(comparison["levels"]))
    return f"CASE {column} {whens} END"


def strong_evidence_sql(model: dict) -> str:
    """The name of the first declared kind of strong evidence a pair shows (model key
    `exclusion.evidence`: SQL over one column per comparison holding its level label,
    see score_pairs), else NULL. Which evidence may remove a record is the model's
    business, not the engine's: the engine only evaluates it."""
    rules = model.get("exclusion", {}).get("evidence", [])
    if not rules:
        return "NULL::VARCHAR"
    return "CASE " + " ".join(f"WHEN {rule['when']} THEN '{rule['name']}'" for rule in rules) + " END"


def block_and_compare(con: duckdb.DuckDBPyConnection, model: dict, left: str, right: str | None = None,
                      vectors: tuple[list[str], list[dict]] | None = None) -> pl.DataFrame:
    """Table comparison_vectors of `left` against `right` (itself when None): blocked and
    compared here, or gathered from `vectors`, the Parquet files of vectors computed bucket
    by bucket with their per-bucket statistics (pipeline/partitioned.py). Returns the
    blocking statistics."""
    if vectors is not None:
        return gather_vectors(con, model, *vectors)
    stats = candidate_pairs(con, model, left, right)
    compare_pairs(con, model, left, right)
    return stats


def compare_pairs(con: duckdb.DuckDBPyConnection, model: dict, left: str, right: str | None = None, pairs: str = "candidate_pairs") -> None:
    """Create table comparison_vectors: rid_l, rid_r, rule, g_<comparison> level indexes.
    `right` None compares `left` with itself (deduplication)."""
    if not con.execute(f"SELECT EXISTS (SELECT 1 FROM {pairs})").fetchall()[0][0]:
        # No pair (a bucket of a small registry): the empty table, without planning every
        # level's condition, which costs about 40 ms a call whatever the rows.
        levels = ", ".join(f"NULL::TINYINT AS g_{c['name']}" for c in model["comparisons"])
        con.execute(f"CREATE OR REPLACE TEMP TABLE comparison_vectors AS SELECT rid_l, rid_r, rule, {levels} FROM {pairs}")
        return
    gammas = ",\n".join(f"{_level_case(c)}::TINYINT AS g_{c['name']}" for c in model["comparisons"])
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE comparison_vectors AS
        SELECT p.rid_l, p.rid_r, p.rule, {gammas}
        FROM {pairs} p JOIN {left} l ON l.rid = p.rid_l JOIN {right or left} r ON r.rid = p.rid_r
        """
    )


def effective_prior(con: duckdb.DuckDBPyConnection, model: dict, population: str, population_size: int | None = None) -> float:
    """The prior log2 odds for this run. Strangers who share a name and a birth date grow
    with the square of the registry while each person's duplicates do not, so the odds
    that a candidate pair is one person fall as 1/N: a model calibrated at
    `prior_reference_records` records is shifted by log2(reference / N)."""
    reference = model.get("prior_reference_records")
    if not reference:
        return float(model["prior_log2_odds"])
    records = population_size if population_size is not None else con.execute(f"SELECT count(*) FROM {population}").fetchall()[0][0]
    return float(model["prior_log2_odds"]) - math.log2(max(records, 1) / reference)


def term_frequency_level(model: dict) -> tuple[dict, int]:
    """The comparison the model's term_frequency adjusts, and the index of its level."""
    tf = model["term_frequency"]
    comparison = next(c for c in model["comparisons"] if c["name"] == tf["comparison"])
    return comparison, [level["label"] for level in comparison["levels"]].index(tf["level"])


def value_shares_sql(column: str, population: str) -> str:
    """(value, records, share): each value of `column`, the number of `population`'s
    records carrying it and their share, the term frequencies."""
    return f"""SELECT {column} AS value, count(*) AS records, count(*)::DOUBLE / (SELECT count(*) FROM {population}) AS share
               FROM {population} GROUP BY {column}"""


def evidence_sql(model: dict, pair: str = "", labelled: bool = False) -> str:
    """A pair's readable evidence, per comparison its level label and weight, from the
    g_ and w_ columns of scored_pairs (`pair`: the table alias in the query); `labelled`:
    the labels are already columns named after the comparisons."""
    prefix = f"{pair}." if pair else ""

    def label(c: dict) -> str:
        return prefix + c["name"] if labelled else _label_case(c, prefix + "g_" + c["name"])

    return " || '; ' || ".join(
        f"'{c['name']}=' || {label(c)} || ' (' || printf('%+.1f', {prefix}w_{c['name']}) || ')'" for c in model["comparisons"]
    )


def score_pairs(con: duckdb.DuckDBPyConnection, model: dict, left: str, right: str | None = None,
                min_probability: float | None = None, explain: bool = True, tf_table: str | None = None,
                population_size: int | None = None) -> None:
    """Create table scored_pairs from comparison_vectors: per-comparison weights, the
    total, the probability and a readable evidence string. Term frequencies come from
    `right` (the population searched: Dukcapil when linking) or `left` when deduplicating.
    `min_probability`: keep only the pairs scoring at least that; the evidence strings,
    the dearest part, are then built for those alone (at 10M rows, 20M candidate pairs of
    which 0.4M are kept). `explain` False leaves out the evidence strings (evidence_sql
    then builds them for the pairs a query picks). `tf_table` (value, records, share) and
    `population_size`: the term frequencies and size of the whole population, when the
    tables hold one bucket of it (pipeline/partitioned.py)."""
    population = right or left
    weights = []
    for comparison in model["comparisons"]:
        weights.append(f"{_weight_case(comparison, 'g_' + comparison['name'])} AS w_{comparison['name']}")
    tf = model.get("term_frequency")
    tf_join = ""
    if tf:
        comparison, index = term_frequency_level(model)
        labels = [level["label"] for level in comparison["levels"]]
        level = comparison["levels"][index]
        # The looser levels of one name written two ways (order, a vowel, spelling) also
        # agree by chance more often for a common name: adjusted alike, an exact agreement
        # never weighs less than a looser one.
        adjusted = [index] + [labels.index(label) for label in tf.get("also", [])]
        column = tf["column"]
        if tf_table is None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _tf AS {value_shares_sql(column, population)}")
        # A value shared by more records than an ordinary one agrees by chance more often:
        # its exact level loses log2(share / reference) bits. The reference is the declared
        # u, or for a model fitted on this round's pairs the share of the values its fitted
        # u was measured on (estimate.term_frequency_reference).
        reference = tf.get("reference_u", level.get("declared", level)["u"])
        gamma = "g_" + comparison["name"]
        weights[model["comparisons"].index(comparison)] = (
            f"{_weight_case(comparison, gamma)} - CASE WHEN {gamma} IN ({', '.join(map(str, adjusted))}) "
            f"THEN greatest(0.0, log2(greatest(tf.share, 1e-12) / {reference!r})) ELSE 0.0 END AS w_{comparison['name']}"
        )
        tf_join = f"JOIN {left} lr ON lr.rid = v.rid_l LEFT JOIN {tf_table or '_tf'} tf ON tf.value = lr.{column}"
    names = [c["name"] for c in model["comparisons"]]
    # One column per comparison with its level label, for the declared evidence rules.
    labels = ", ".join(f"{_label_case(c, 'g_' + c['name'])} AS {c['name']}" for c in model["comparisons"])
    total = " + ".join(f"w_{n}" for n in names)
    prior = effective_prior(con, model, population, population_size)
    kept = "TRUE" if min_probability is None else f"match_probability >= {min_probability!r}"
    explained = (f"""SELECT * EXCLUDE ({", ".join(names)}), {evidence_sql(model, labelled=True)} AS evidence,
                            {strong_evidence_sql(model)} AS strong_evidence
                     FROM (SELECT *, {labels} FROM totalled WHERE {kept})"""
                 if explain else f"SELECT * FROM totalled WHERE {kept}")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE scored_pairs AS
        WITH weighted AS (SELECT v.*, {", ".join(weights)} FROM comparison_vectors v {tf_join}),
        totalled AS (SELECT *, {prior!r} + {total} AS match_weight,
                            {probability_sql(f"{prior!r} + {total}")} AS match_probability FROM weighted)
        {explained}
        """
    )
