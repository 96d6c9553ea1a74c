"""Fit the model's m and u from pairs the data labels itself.

A model declared once, by looking at one generator, does not travel: twins, naming
habits and the number of strangers who share a name and a birth date differ from one
registry to the next and grow with its size. So each run fits m and u on its own
candidate pairs, using labels that cost nothing: the model file declares SQL conditions
(`estimation.match`, `estimation.non_match`) over the two records of a pair. For the
registry these say "both rows resolved by exact NIK and name to the same civil-registry
person" and "... to different persons".

  m(level) = share of labelled matches at that level, u(level) = share of labelled
  non-matches, each smoothed towards the declared value, which counts as
  `prior_strength` pairs (so a level with few labels stays near what was declared);
  prior odds = labelled matches / labelled non-matches among candidate pairs.

What labels cannot teach stays declared: a comparison marked "estimate": "fixed" (the
labels themselves, or structural rules), a level marked "fixed": true, and m of a
comparison marked "estimate": "u_only" (labelled matches all share the NIK, so they say
nothing about how NIKs of one person differ). Null levels (m = u = 1) stay neutral. With
fewer labels than `min_labelled`, the declared model is used unchanged.

Counting runs over the distinct (label, level pattern) combinations, never over records.
The fitted model keeps the declared m and u of every level beside the fitted ones, the
label counts and the drift in weight, so a reviewer can see what the data changed.
"""

from __future__ import annotations

import copy
import math

import duckdb
import numpy as np

from pipeline.matching.compare import term_frequency_level, value_shares_sql

FLOOR = 1e-9


def _is_null_level(level: dict) -> bool:
    return level["m"] == 1.0 and level["u"] == 1.0


def labelled_patterns(con: duckdb.DuckDBPyConnection, model: dict, left: str, right: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, level patterns, counts) of the labelled candidate pairs in comparison_vectors."""
    spec = model["estimation"]
    columns = ", ".join(f"v.g_{c['name']}" for c in model["comparisons"])
    rows = con.execute(
        f"""SELECT label, {columns.replace('v.', '')}, count(*) AS pairs FROM (
              SELECT CASE WHEN {spec['match']} THEN 1 WHEN {spec['non_match']} THEN 0 END AS label, {columns}
              FROM comparison_vectors v JOIN {left} l ON l.rid = v.rid_l JOIN {right or left} r ON r.rid = v.rid_r)
            WHERE label IS NOT NULL GROUP BY ALL ORDER BY ALL"""
    ).fetchall()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, len(model["comparisons"])), np.int64), np.zeros(0)
    array = np.array(rows, dtype=np.int64)
    return array[:, 0], array[:, 1:-1], array[:, -1].astype(float)


def _fit_distribution(counts: np.ndarray, declared: np.ndarray, free: np.ndarray, fixed: np.ndarray, strength: float) -> np.ndarray:
    """Smoothed shares over the free levels, keeping the declared mass of the fixed ones
    (null levels, m = u = 1 by convention, are neither)."""
    fitted = declared.copy()
    declared_free = declared[free].sum()
    if declared_free <= 0:
        return fitted
    mass = max(1.0 - declared[fixed].sum(), 0.0)
    prior = declared[free] / declared_free
    fitted[free] = mass * (counts[free] + strength * prior) / (counts[free].sum() + strength)
    return np.maximum(fitted, FLOOR)


def fit_from_labels(con: duckdb.DuckDBPyConnection, model: dict, left: str, right: str | None = None) -> dict:
    """The model with m, u and the prior fitted on labelled candidate pairs (see module
    docstring), or the declared model with the reason when labels are too few."""
    if not model.get("estimation"):
        return model
    return fit_from_patterns(model, *labelled_patterns(con, model, left, right), term_frequency_sums(con, model, left, right))


def fit_from_patterns(model: dict, labels: np.ndarray, patterns: np.ndarray, counts: np.ndarray,
                      tf_sums: tuple[int, int, int] | None) -> dict:
    """fit_from_labels from what it counts in the pairs (labelled_patterns and
    term_frequency_sums), so counts made bucket by bucket and summed give the same model
    (pipeline/partitioned.py)."""
    spec = model.get("estimation")
    if not spec:
        return model
    matches, non_matches = float(counts[labels == 1].sum()), float(counts[labels == 0].sum())
    fitted = copy.deepcopy(model)
    summary = {"labelled_matches": int(matches), "labelled_non_matches": int(non_matches),
               "prior_log2_odds_declared": model["prior_log2_odds"]}
    minimum = spec.get("min_labelled", {})
    if matches < minimum.get("match", 1) or non_matches < minimum.get("non_match", 1):
        fitted["fit"] = {**summary, "status": "declared: too few labelled pairs to fit"}
        return fitted
    strength = float(spec.get("prior_strength", 100))
    for index, comparison in enumerate(fitted["comparisons"]):
        mode = comparison.get("estimate", "m_and_u")
        levels = comparison["levels"]
        for level in levels:
            level["declared"] = {"m": level["m"], "u": level["u"]}
        if mode == "fixed":
            continue
        fixed = np.array([bool(lv.get("fixed")) and not _is_null_level(lv) for lv in levels])
        free = np.array([not (_is_null_level(lv) or lv.get("fixed")) for lv in levels])
        per_level = {}
        for label, key in ((1, "m"), (0, "u")):
            level_counts = np.bincount(patterns[labels == label, index], weights=counts[labels == label], minlength=len(levels))
            per_level[key] = level_counts
            if key == "m" and mode == "u_only":
                continue
            declared = np.array([lv[key] for lv in levels], dtype=float)
            values = _fit_distribution(level_counts, declared, free, fixed, strength)
            for level, value, is_free in zip(levels, values, free):
                if is_free:
                    level[key] = float(value)
        for i, level in enumerate(levels):
            level["labelled"] = {"matches": int(per_level["m"][i]), "non_matches": int(per_level["u"][i])}
            if not _is_null_level(level):
                declared_weight = math.log2(level["declared"]["m"] / level["declared"]["u"])
                level["drift"] = round(math.log2(level["m"] / level["u"]) - declared_weight, 3)
    reference = reference_share(tf_sums)
    if reference is not None:
        fitted["term_frequency"] = {**fitted["term_frequency"], "reference_u": reference}
    # The labelled share of matches among candidate pairs is measured at this registry's
    # size, so it replaces the declared prior and its size shift.
    fitted["prior_log2_odds"] = math.log2(matches / non_matches)
    fitted.pop("prior_reference_records", None)
    fitted["fit"] = {**summary, "status": "fitted", "prior_log2_odds_fitted": round(fitted["prior_log2_odds"], 4)}
    return fitted


def term_frequency_reference(con: duckdb.DuckDBPyConnection, model: dict, left: str, right: str | None = None) -> float | None:
    """The share of its value in the population (`right`, else `left`) of the average
    labelled non-match agreeing at the term-frequency level: the fitted u of that level
    was measured on those very pairs, so a value only as common as theirs is already
    priced in, and only a commoner one loses bits (compare.score_pairs). Against the
    declared u instead (a stranger's chance of one's exact name among all records), a
    common name paid twice: in a registry of few names, exact agreement on a name held by
    2 % of records weighed -6 bits, below no name agreement at all. None without labelled
    non-matches at that level."""
    return reference_share(term_frequency_sums(con, model, left, right))


def reference_share(tf_sums: tuple[int, int, int] | None) -> float | None:
    """term_frequency_reference from term_frequency_sums (summed over buckets or not)."""
    if not tf_sums:
        return None
    records, pairs, total = tf_sums
    return None if not pairs else records / (pairs * total)


def term_frequency_sums(con: duckdb.DuckDBPyConnection, model: dict, left: str, right: str | None = None,
                        tf_table: str | None = None, population_size: int | None = None) -> tuple[int, int, int] | None:
    """(records, pairs, population): over the labelled non-matches agreeing at the
    term-frequency level, the pairs and the sum of their value's records in the
    population, and the population's size (term_frequency_reference). `tf_table` and
    `population_size`: the term frequencies and size of the whole population, when
    `right`/`left` hold only a bucket of it (compare.score_pairs)."""
    tf = model.get("term_frequency")
    if not tf or not model.get("estimation"):
        return None
    comparison, index = term_frequency_level(model)
    population = right or left
    shares = tf_table or f"({value_shares_sql(tf['column'], population)})"
    # Summed as whole numbers and divided once: an average of the shares summed in
    # DuckDB's threads' order differed in the last bit from one run to the next (1M rows).
    records, pairs = con.execute(
        f"""SELECT coalesce(sum(tf.records), 0)::HUGEINT, count(*)
            FROM comparison_vectors v JOIN {left} l ON l.rid = v.rid_l
            JOIN {population} r ON r.rid = v.rid_r JOIN {shares} tf ON tf.value = l.{tf['column']}
            WHERE v.g_{comparison['name']} = {index} AND ({model['estimation']['non_match']})"""
    ).fetchall()[0]
    total = population_size if population_size is not None else con.execute(f"SELECT count(*) FROM {population}").fetchall()[0][0]
    return int(records), int(pairs), int(total)


def drift_table(model: dict) -> list[dict]:
    """Per comparison level: declared and fitted weight and their difference (bits)."""
    rows = []
    for comparison in model["comparisons"]:
        for level in comparison["levels"]:
            if "declared" not in level or _is_null_level(level):
                continue
            declared = math.log2(level["declared"]["m"] / level["declared"]["u"])
            rows.append({
                "comparison": comparison["name"], "level": level["label"],
                "declared_weight": round(declared, 2), "fitted_weight": round(math.log2(level["m"] / level["u"]), 2),
                "drift": level.get("drift", 0.0), **level.get("labelled", {}),
            })
    return rows
