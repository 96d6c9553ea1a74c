"""Decide: anomalies -> each DTKS row verified, review or excluded; quarantined rows
stay quarantined. The reconciliation proves every input row is in exactly one outcome.

The rule (also in the README): a row is excluded only when some anomaly on it carries
action "exclude" (strong evidence: a Dukcapil death with a strong identity match, or a
strong duplicate of a row that is kept). Otherwise any "review" anomaly sends it to a
reviewer. "warn" anomalies leave it verified. Never drop a living, eligible person on
weak evidence.
"""

from __future__ import annotations

import functools

import polars as pl

from pipeline.contract import OUTCOME, OUTCOMES, ROW_OUTCOMES, action_rules, anomaly_rules
from pipeline.errors import ReconciliationError



def sort_anomalies(anomalies: pl.DataFrame) -> pl.DataFrame:
    """Deterministic order: by id_dtks, then the order codes are declared in."""
    order = {code: i for i, code in enumerate(anomaly_rules())}
    return (
        anomalies.with_columns(_order=pl.col("anomaly_code").replace_strict(order, return_dtype=pl.Int32))
        .sort("id_dtks", "_order", "related_id", nulls_last=True)
        .drop("_order")
        .unique(["id_dtks", "anomaly_code"], keep="first", maintain_order=True)
    )


def row_outcomes(dtks: pl.DataFrame, anomalies: pl.DataFrame) -> pl.DataFrame:
    """id_dtks, outcome, anomaly_codes (list), reasons for every staged DTKS row. Codes
    declared with holds_row = false (a citizen's objection) never set the outcome."""
    holding = [code for code, rule in anomaly_rules().items() if rule.holds_row]
    rank = {name: action.rank for name, action in action_rules().items()}
    per_row = anomalies.group_by("id_dtks").agg(
        worst=pl.col("action").replace_strict(rank, return_dtype=pl.Int8)
        .filter(pl.col("anomaly_code").is_in(holding)).max(),
        anomaly_codes=pl.col("anomaly_code"),
        review_codes=pl.col("anomaly_code").filter(pl.col("action") == "review"),
        exclude_codes=pl.col("anomaly_code").filter(pl.col("action") == "exclude"),
    )
    return (
        dtks.select("id_dtks")
        .join(per_row, on="id_dtks", how="left")
        .with_columns(
            # The strongest action decides: exclude -> excluded, review -> review, else verified.
            outcome=pl.when(pl.col("worst") == rank["exclude"]).then(pl.lit(OUTCOME.excluded))
            .when(pl.col("worst") == rank["review"]).then(pl.lit(OUTCOME.review))
            .otherwise(pl.lit(OUTCOME.verified)),
            anomaly_codes=pl.col("anomaly_codes").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        )
        .drop("worst")
    )


def reconcile(rows_in: int, outcomes: pl.DataFrame, quarantined_rows: int) -> dict:
    """Counts per outcome; raises ReconciliationError if they do not add up."""
    counts = {outcome: 0 for outcome in OUTCOMES}
    for outcome, count in outcomes.group_by("outcome").len().iter_rows():
        counts[outcome] = count
    counts[OUTCOME.quarantined] = quarantined_rows
    total = sum(counts.values())
    duplicates_of_ids = outcomes.height - outcomes["id_dtks"].n_unique()
    result = {"rows_in": rows_in, **counts, "sum": total, "balanced": total == rows_in and duplicates_of_ids == 0}
    if not result["balanced"]:
        raise ReconciliationError(
            f"reconciliation failed: {rows_in} DTKS input rows but "
            + " + ".join(f"{outcome} {counts[outcome]}" for outcome in OUTCOMES) + f" = {total}"
            f" ({duplicates_of_ids} id_dtks in more than one outcome). No outputs were published."
        )
    return result


def split_outcomes(dtks: pl.DataFrame, outcomes: pl.DataFrame, clusters: pl.DataFrame) -> dict[str, pl.LazyFrame]:
    """verified_recipients, review and excluded tables, each the staged row with its
    cluster and anomaly codes, sorted by id_dtks, as queries: collected and written one at
    a time, only one table is held (at 10M rows all three beside the joined whole set the
    stage's peak). The joins and the sort run once, on the narrow columns; each table
    gathers its staged rows by position (joining the whole staged table for each of the
    three took 30 s at 10M rows)."""
    narrow = (
        dtks.select("id_dtks").with_row_index("_row")
        .join(outcomes, on="id_dtks", how="left")
        .join(clusters.select("id_dtks", "cluster_id"), on="id_dtks", how="left")
        .sort("id_dtks")
    )
    added = narrow.drop("_row", "id_dtks", "outcome")
    schema = {**dtks.schema, **added.schema}

    def table(name: str) -> pl.DataFrame:
        part = narrow.filter(pl.col("outcome") == name)
        return pl.concat([dtks[part["_row"]], part.drop("_row", "id_dtks", "outcome")], how="horizontal")

    return {name: pl.defer(functools.partial(table, name), schema=schema) for name in ROW_OUTCOMES}


def check_paid_once(verified: pl.DataFrame) -> None:
    """Verified holds at most one row per duplicate cluster."""
    per_cluster = verified.group_by("cluster_id").len().filter(pl.col("len") > 1)
    if per_cluster.height:
        raise ReconciliationError(
            f"{per_cluster.height} duplicate clusters have more than one verified row; a person must be paid once."
        )
