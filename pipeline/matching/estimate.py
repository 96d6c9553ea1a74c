"""Estimate the Fellegi-Sunter parameters from the run's own data, without labels.

u (how often a level occurs between two different people) comes from random record
pairs, which are almost all non-matches. m (how often it occurs for the same person)
and the prior come from expectation-maximisation over the candidate pairs' comparison
vectors, with u held fixed. EM runs over the distinct comparison patterns with their
counts (a few thousand rows), never over records.

Levels whose SQL condition already encodes "no information" (m = u = 1) are kept.
"""

from __future__ import annotations

import copy
import math

import duckdb
import numpy as np

from pipeline.matching.compare import compare_pairs

U_SAMPLE_PAIRS = 1_000_000
EM_ITERATIONS = 25
FLOOR = 1e-6


def _is_null_level(level: dict) -> bool:
    return level["m"] == 1.0 and level["u"] == 1.0


def estimate_u(con: duckdb.DuckDBPyConnection, model: dict, left: str, right: str | None, seed: int) -> list[np.ndarray]:
    """Level frequencies among random pairs, per comparison."""
    population = right or left
    con.execute(f"SELECT setseed({(seed % 1000) / 1000.0!r})")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _random_pairs AS
            WITH l AS (SELECT rid, row_number() OVER (ORDER BY random()) AS k FROM {left}),
                 r AS (SELECT rid, row_number() OVER (ORDER BY random()) AS k FROM {population}),
                 n AS (SELECT (SELECT count(*) FROM l) AS nl, (SELECT count(*) FROM r) AS nr)
            SELECT l.rid AS rid_l, r.rid AS rid_r, 0::SMALLINT AS rule
            FROM range({U_SAMPLE_PAIRS}) g(i), n
            JOIN l ON l.k = 1 + (hash(g.i, 1) % n.nl)
            JOIN r ON r.k = 1 + (hash(g.i, 2) % n.nr)
            WHERE l.rid <> r.rid OR {str(right is not None).upper()}"""
    )
    compare_pairs(con, model, left, right, pairs="_random_pairs")
    u = _level_frequencies(con, model)
    con.execute("DROP TABLE _random_pairs")
    con.execute("DROP TABLE comparison_vectors")
    return u


def _patterns(con: duckdb.DuckDBPyConnection, model: dict) -> tuple[np.ndarray, np.ndarray]:
    columns = ", ".join(f"g_{c['name']}" for c in model["comparisons"])
    rows = con.execute(f"SELECT {columns}, count(*) FROM comparison_vectors GROUP BY ALL").fetchall()
    array = np.array(rows, dtype=np.int64)
    return array[:, :-1], array[:, -1].astype(float)


def _level_frequencies(con: duckdb.DuckDBPyConnection, model: dict) -> list[np.ndarray]:
    gammas, counts = _patterns(con, model)
    return [
        np.bincount(gammas[:, k], weights=counts, minlength=len(c["levels"])) / counts.sum()
        for k, c in enumerate(model["comparisons"])
    ]


def _normalise(frequencies: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Probabilities over the informative levels; a null level stays 1 (neutral)."""
    informative = np.where(null, 0.0, frequencies)
    total = informative.sum()
    result = np.maximum(informative / total if total else informative, FLOOR)
    result[null] = 1.0
    return result


def expectation_maximisation(gammas: np.ndarray, counts: np.ndarray, m: list[np.ndarray], u: list[np.ndarray],
                             prior: float, null: list[np.ndarray], iterations: int = EM_ITERATIONS
                             ) -> tuple[list[np.ndarray], float, list[float]]:
    """Update m and the prior; u stays fixed. Returns m, prior, and the log-likelihood trace."""
    trace = []
    for _ in range(iterations):
        log_m = sum(np.log(m[k][gammas[:, k]]) for k in range(len(m)))
        log_u = sum(np.log(u[k][gammas[:, k]]) for k in range(len(u)))
        a = math.log(prior) + log_m
        b = math.log(1 - prior) + log_u
        top = np.maximum(a, b)
        evidence = top + np.log(np.exp(a - top) + np.exp(b - top))
        trace.append(float((counts * evidence).sum()))
        posterior = np.exp(a - evidence)
        matched = counts * posterior
        prior = float(np.clip(matched.sum() / counts.sum(), 1e-6, 0.5))
        m = [
            _normalise(np.bincount(gammas[:, k], weights=matched, minlength=len(m[k])), null[k])
            for k in range(len(m))
        ]
    return m, prior, trace


def estimate_model(con: duckdb.DuckDBPyConnection, model: dict, left: str, right: str | None = None, seed: int = 20251) -> dict:
    """A copy of `model` with m, u and the prior estimated from this run's data. Needs
    table candidate_pairs; leaves table comparison_vectors of the candidate pairs."""
    u_random = estimate_u(con, model, left, right, seed)
    compare_pairs(con, model, left, right)
    gammas, counts = _patterns(con, model)
    comparisons = model["comparisons"]
    null = [np.array([_is_null_level(level) for level in c["levels"]]) for c in comparisons]
    m0 = [_normalise(np.array([level["m"] for level in c["levels"]], dtype=float), null[k]) for k, c in enumerate(comparisons)]
    u0 = [_normalise(u_random[k], null[k]) for k in range(len(comparisons))]
    candidate_pairs = counts.sum()
    prior0 = 1.0 / (1.0 + 2 ** (-model["prior_log2_odds"]))
    m, prior, trace = expectation_maximisation(gammas, counts, m0, u0, prior0, null)
    estimated = copy.deepcopy(model)
    for k, comparison in enumerate(estimated["comparisons"]):
        for i, level in enumerate(comparison["levels"]):
            if _is_null_level(level):
                continue
            level["m"] = round(float(m[k][i]), 8)
            level["u"] = round(float(u0[k][i]), 8)
    estimated["prior_log2_odds"] = round(math.log2(prior / (1 - prior)), 4)
    estimated["estimation"] = {
        "method": "u from random pairs, m and prior by EM over candidate pairs",
        "random_pairs": U_SAMPLE_PAIRS,
        "candidate_pairs": int(candidate_pairs),
        "iterations": len(trace),
        "log_likelihood_first_last": [round(trace[0], 1), round(trace[-1], 1)],
        "seed": seed,
    }
    return estimated
