"""Cost grows linearly: every blocking rule of the duplicate search and of the fuzzy
civil-registry link yields about the same candidate pairs per DTKS row on a registry
three times larger. A rule keyed on one coarse field (a birth date alone, a name alone, a
region alone) yields about three times as many pairs per row and fails here.

What this cannot see: keys that are fine at 60,000 rows but whose blocks fill up as the
registry gets denser (strangers sharing a common name and a birth date). Those show at
1M against 10M rows in `verval bench --sizes` (README, benchmarks)."""

import duckdb
import polars as pl
import pytest

from pipeline.matching.blocking import candidate_pairs
from pipeline.matching.model import load_model
from pipeline.matching.sql import register_macros

GROWTH_ALLOWED = 1.3  # pairs per row may wobble with the generator's draws, not triple
SLACK = 0.005  # pairs per row: rules that find almost nothing are noise at this size


@pytest.fixture(scope="module")
def larger_round(tmp_path_factory, generated_round):
    """The same generator at three times the rows of `generated_round`, taken through
    the stages up to the civil-registry link (the blocking rules' inputs)."""
    from pipeline.round import RoundContext, ingest, link_civil_registry, nik_checks
    from pipeline.sample import generate_sample

    rows = generated_round["summary"]["reconciliation"]["rows_in"] * 3
    base = tmp_path_factory.mktemp("larger")
    generate_sample(rows, 11, base / "data", fmt="parquet")
    ctx = RoundContext(dtks=str(base / "data" / "dtks.parquet"), dukcapil=str(base / "data" / "dukcapil.parquet"),
                       out=str(base / "out"), work=str(base / "work"), as_of="2026-11-21")
    ctx.staging_dir.mkdir(parents=True)
    for kind in ("dtks", "dukcapil"):
        ingest(ctx, kind)
    nik_checks(ctx)
    linked = link_civil_registry(ctx)
    return {"rows": rows, "link": linked["fuzzy_blocking"], "records": pl.read_parquet(ctx.staging_dir / "records.parquet")}


def pairs_per_row(stats: list[dict], rows: int) -> dict[str, float]:
    return {s["rule"]: s["pairs"] / rows for s in stats}


def assert_flat(small: dict[str, float], large: dict[str, float]) -> None:
    assert small.keys() == large.keys()
    grown = {rule: (round(small[rule], 4), round(large[rule], 4)) for rule in small
             if large[rule] > GROWTH_ALLOWED * small[rule] + SLACK}
    assert not grown, f"pairs per row grew with the registry (rule: small, 3x larger): {grown}"
    assert sum(large.values()) <= GROWTH_ALLOWED * sum(small.values())


def test_duplicate_search_pairs_per_row_stay_flat(generated_round, larger_round):
    small = pairs_per_row(generated_round["summary"]["duplicates"]["blocking"],
                          generated_round["summary"]["reconciliation"]["rows_in"])
    con = register_macros(duckdb.connect())
    con.register("_records", larger_round["records"])
    con.execute("CREATE TEMP TABLE records AS SELECT * FROM _records")
    stats = candidate_pairs(con, load_model(), "records").to_dicts()
    con.close()
    assert_flat(small, pairs_per_row(stats, larger_round["rows"]))


def test_civil_registry_link_pairs_per_row_stay_flat(generated_round, larger_round):
    small = pairs_per_row(generated_round["summary"]["civil_registry_link"]["fuzzy_blocking"],
                          generated_round["summary"]["reconciliation"]["rows_in"])
    assert_flat(small, pairs_per_row(larger_round["link"], larger_round["rows"]))
