"""Relatives the generator never makes (benchmarks/twin_variants.py): on a small registry
with twins of every kind added, the round keeps them apart as often as the evidence
allows, and excludes one of two twins only when their DTKS rows are identical (one name,
one card, one birth date, the other twin missing from Dukcapil: nothing tells them
apart). Guards the twin rules of the matching models against regressions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import polars as pl
import pytest

from pipeline.paths import PROJECT_DIR
from pipeline.progress import StageClock
from pipeline.round import RoundContext, run_round
from pipeline.sample import generate_sample


def _twin_variants():
    spec = importlib.util.spec_from_file_location("twin_variants", PROJECT_DIR / "benchmarks" / "twin_variants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["twin_variants"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def twins_round(tmp_path_factory) -> pl.DataFrame:
    tv = _twin_variants()
    base = tmp_path_factory.mktemp("relatives")
    generate_sample(30_000, 41, base / "base", fmt="parquet")
    pairs = tv.build(base / "base", base / "data", 1_500, seed=4)
    ctx = RoundContext(dtks=str(base / "data" / "dtks.parquet"), dukcapil=str(base / "data" / "dukcapil.parquet"),
                       out=str(base / "out"), as_of="2026-11-21", decision_log=str(base / "decisions.jsonl"),
                       objections=str(base / "objections.jsonl"))
    run_round(ctx, StageClock(quiet=True))
    return tv.score(pairs, base / "out")


def test_twins_are_rarely_merged(twins_round):
    # 12 % on this grid before the twin rules; what is still merged is mostly twins given
    # one name, or one vowel apart on one card with one of them missing from Dukcapil.
    assert twins_round.height > 1_000
    assert twins_round["merged"].mean() < 0.09
    distinct = twins_round.filter(pl.col("name").is_in(["fresh", "shared_first"]) & (pl.col("dtks_nik") != "twins_nik"))
    assert distinct["merged"].mean() < 0.05


def test_a_twin_is_excluded_only_when_the_two_rows_are_identical(twins_round):
    excluded = twins_round.filter(pl.col("excluded"))
    identical_rows = (pl.col("name") == "identical") & (pl.col("dtks_nik") == "twins_nik") & (pl.col("dukcapil") == "missing")
    assert excluded.filter(~identical_rows).height == 0
