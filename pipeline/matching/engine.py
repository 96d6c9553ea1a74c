"""The matching engine on any person table: a column mapping plus a model JSON.

The registry round uses the stages directly; this entry point is for other data (for
example the FEBRL benchmark sets) and for notebooks. Records are given a deterministic
rid (rank of the id column) and standardised by the caller's choice of function."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import polars as pl

from pipeline.matching.compare import block_and_compare, score_pairs
from pipeline.matching.dedupe import find_duplicates
from pipeline.matching.sql import register_macros


def _records(frame: pl.DataFrame, id_column: str, mapping: dict[str, str] | None, standardise: Callable | None) -> pl.DataFrame:
    if mapping:
        frame = frame.rename({source: target for target, source in mapping.items() if source in frame.columns})
    frame = frame.sort(id_column).with_row_index("rid").with_columns(pl.col("rid").cast(pl.Int64))
    return standardise(frame) if standardise else frame


def connect(memory_limit: str = "3GB", threads: int = 2) -> duckdb.DuckDBPyConnection:
    return register_macros(duckdb.connect(config={"memory_limit": memory_limit, "threads": threads}))


def deduplicate(frame: pl.DataFrame, model: dict, id_column: str, mapping: dict[str, str] | None = None,
                standardise: Callable | None = None, con: duckdb.DuckDBPyConnection | None = None) -> dict:
    """Clusters (id, cluster_id, ...), scored pairs and blocking statistics."""
    con = con or connect()
    records = _records(frame, id_column, mapping, standardise)
    return find_duplicates(con, records, model, id_column=id_column, columns=None)


def link(left: pl.DataFrame, right: pl.DataFrame, model: dict, left_id: str, right_id: str,
         mapping: dict[str, str] | None = None, standardise: Callable | None = None,
         con: duckdb.DuckDBPyConnection | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scored pairs (left id, right id, probability, evidence) at or above the model's
    link probability, and blocking statistics."""
    con = con or connect()
    con.register("_left", _records(left, left_id, mapping, standardise))
    con.register("_right", _records(right, right_id, mapping, standardise))
    con.execute("CREATE OR REPLACE TEMP TABLE engine_left AS SELECT * FROM _left")
    con.execute("CREATE OR REPLACE TEMP TABLE engine_right AS SELECT * FROM _right")
    stats = block_and_compare(con, model, "engine_left", "engine_right")
    score_pairs(con, model, "engine_left", "engine_right")
    pairs = con.sql(
        f"""SELECT l.{left_id} AS id_l, r.{right_id} AS id_r, s.match_weight, s.match_probability, s.evidence
            FROM scored_pairs s JOIN engine_left l ON l.rid = s.rid_l JOIN engine_right r ON r.rid = s.rid_r
            WHERE s.match_probability >= {model['thresholds']['link_probability']!r}
            ORDER BY id_l, id_r"""
    ).pl()
    return pairs, stats
