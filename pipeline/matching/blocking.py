"""Blocking: which record pairs are compared at all. Several rules, each an equality on
a few standardised keys, united; giant blocks (placeholder birth dates, very common
names) are skipped per rule and counted, so the other rules must reach those pairs."""

from __future__ import annotations

import duckdb
import polars as pl


def _block_key(rule: dict) -> str:
    return ", ".join(rule["keys"])


def candidate_pairs(con: duckdb.DuckDBPyConnection, records: str, model: dict) -> pl.DataFrame:
    """Create table candidate_pairs (rid_l < rid_r, rule = first rule that found the pair)
    and return per-rule statistics. `records` names a table with a BIGINT rid and the keys."""
    stats = []
    con.execute("CREATE OR REPLACE TEMP TABLE _pairs (rid_l BIGINT, rid_r BIGINT, rule SMALLINT)")
    for index, rule in enumerate(model["blocking_rules"]):
        keys = _block_key(rule)
        where = rule.get("where", "TRUE")
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in rule["keys"])
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _blocks AS
            SELECT rid, {keys}, count(*) OVER (PARTITION BY {keys}) AS block_size
            FROM {records} WHERE ({where}) AND {not_null}
            """
        )
        sizes = con.execute(
            f"""SELECT count(*) FILTER (WHERE block_size > 1 AND block_size <= {int(rule['max_block_size'])}),
                       count(DISTINCT ({keys})) FILTER (WHERE block_size > {int(rule['max_block_size'])}),
                       count(*) FILTER (WHERE block_size > {int(rule['max_block_size'])})
                FROM _blocks"""
        ).fetchall()[0]
        join_on = " AND ".join(f"a.{k} = b.{k}" for k in rule["keys"])
        con.execute(
            f"""
            INSERT INTO _pairs
            SELECT a.rid, b.rid, {index}
            FROM _blocks a JOIN _blocks b ON {join_on} AND a.rid < b.rid
            WHERE a.block_size <= {int(rule['max_block_size'])}
            """
        )
        new_pairs = con.execute(f"SELECT count(*) FROM _pairs WHERE rule = {index}").fetchall()[0][0]
        stats.append(
            {"rule": rule["name"], "records_in_blocks": sizes[0], "pairs": new_pairs,
             "oversized_blocks_skipped": sizes[1], "records_in_skipped_blocks": sizes[2]}
        )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE candidate_pairs AS "
        "SELECT rid_l, rid_r, min(rule) AS rule FROM _pairs GROUP BY rid_l, rid_r"
    )
    con.execute("DROP TABLE _pairs")
    con.execute("DROP TABLE IF EXISTS _blocks")
    return pl.DataFrame(stats)
