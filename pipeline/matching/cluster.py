"""Cluster linked pairs into people without chaining strangers together.

Connected components alone chain: A~B and B~C put A and C together though they never
matched. Here a row joins a cluster only through a direct link to the cluster's
canonical row (valid NIK confirmed by Dukcapil first, then the most complete row, then
the smallest id_dtks). Rows left over form clusters among themselves in the next round.
The loop runs over rounds, never over records."""

from __future__ import annotations

import duckdb

MAX_ROUNDS = 10


def _components(con: duckdb.DuckDBPyConnection, edges: str) -> None:
    """Table _cc(rid, comp): connected components of `edges` by min-label propagation."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cc AS
            SELECT rid, min(rid) AS comp FROM (
              SELECT rid_l AS rid FROM {edges} UNION SELECT rid_r FROM {edges}) GROUP BY rid"""
    )
    while True:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _cc_next AS
                SELECT c.rid, least(c.comp, min(n.comp)) AS comp
                FROM _cc c
                JOIN (SELECT rid_l AS a, rid_r AS b FROM {edges} UNION ALL SELECT rid_r, rid_l FROM {edges}) e ON e.a = c.rid
                JOIN _cc n ON n.rid = e.b
                GROUP BY c.rid, c.comp"""
        )
        changed = con.execute(
            "SELECT count(*) FROM _cc_next x JOIN _cc c USING (rid) WHERE x.comp <> c.comp"
        ).fetchall()[0][0]
        con.execute("CREATE OR REPLACE TEMP TABLE _cc AS SELECT * FROM _cc_next")
        if changed == 0:
            break
    con.execute("DROP TABLE _cc_next")


DEFAULT_CANONICAL_ORDER = ["NOT r.nik_verified", "-r.completeness", "r.id_dtks"]


def cluster_records(
    con: duckdb.DuckDBPyConnection, records: str, link_probability: float, canonical_order: list[str] | None = None
) -> None:
    """Create table clusters(rid, canonical_rid, match_probability, evidence,
    strong_evidence) for every record; a singleton is its own canonical row with null
    probability; the other columns describe each row's link to its canonical row. The canonical
    row is the first by `canonical_order` (SQL over r.*, smallest first)."""
    order = ", ".join(canonical_order or DEFAULT_CANONICAL_ORDER)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _edges AS
            SELECT rid_l, rid_r, match_probability, evidence, strong_evidence FROM scored_pairs
            WHERE match_probability >= {link_probability!r}"""
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _assigned (rid BIGINT, canonical_rid BIGINT, match_probability DOUBLE, evidence VARCHAR, "
        "strong_evidence VARCHAR)"
    )
    for _ in range(MAX_ROUNDS):
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _open_edges AS
               SELECT e.* FROM _edges e
               WHERE e.rid_l NOT IN (SELECT rid FROM _assigned) AND e.rid_r NOT IN (SELECT rid FROM _assigned)"""
        )
        if con.execute("SELECT count(*) FROM _open_edges").fetchall()[0][0] == 0:
            break
        _components(con, "_open_edges")
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _canonical AS
                SELECT comp, arg_min(c.rid, ({order}, c.rid)) AS canonical_rid
                FROM _cc c JOIN {records} r USING (rid) GROUP BY comp"""
        )
        # Each open edge seen from both ends, so that the canonical row's links are one
        # hash join: the canonical row itself, and every row linked to it directly.
        con.execute(
            """INSERT INTO _assigned
               WITH ends AS (
                 SELECT rid_l AS rid, rid_r AS other, match_probability, evidence, strong_evidence FROM _open_edges
                 UNION ALL
                 SELECT rid_r, rid_l, match_probability, evidence, strong_evidence FROM _open_edges),
               linked AS (SELECT k.canonical_rid, e.* FROM _canonical k JOIN ends e ON e.rid = k.canonical_rid)
               SELECT DISTINCT canonical_rid, canonical_rid, NULL::DOUBLE, NULL::VARCHAR, NULL::VARCHAR FROM linked
               UNION ALL
               SELECT other, canonical_rid, match_probability, evidence, strong_evidence FROM linked"""
        )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE clusters AS
            SELECT r.rid, coalesce(a.canonical_rid, r.rid) AS canonical_rid, a.match_probability, a.evidence,
                   a.strong_evidence
            FROM {records} r LEFT JOIN _assigned a USING (rid)"""
    )
    for table in ("_edges", "_assigned", "_open_edges", "_canonical", "_cc"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
