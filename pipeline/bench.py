"""`verval bench`: generate N DTKS rows (Dukcapil about 2.5 N), run the round, print
per-stage wall time and peak memory, and optionally the accuracy per anomaly code."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from pipeline.progress import StageClock, console


def run_benchmark(n: int, seed: int, work: str | None, fmt: str, through_prefect: bool, score: bool, mix: str = "standard") -> int:
    base = Path(work) if work else Path(tempfile.mkdtemp(prefix="verval-bench-"))
    data = base / "data"
    started = time.perf_counter()
    # A child process, so the round's peak memory is not the generator's.
    subprocess.run(
        [sys.executable, "-m", "pipeline.sample", "--n", str(n), "--seed", str(seed), "--out", str(data), "--format", fmt,
         "--mix", mix],
        check=True, stdout=subprocess.DEVNULL,
    )
    generation = time.perf_counter() - started
    console.print(f"generated {n:,} DTKS rows in {generation:.1f} s -> {data}")
    suffix = ".parquet" if fmt == "parquet" else ".csv"
    args = dict(dtks=str(data / f"dtks{suffix}"), dukcapil=str(data / f"dukcapil{suffix}"), out=str(base / "out"))
    started = time.perf_counter()
    if through_prefect:
        from pipeline.flows.verval import verval_round

        summary = verval_round(**args, quiet=True)
        timings = summary["stage_timings"]
    else:
        from pipeline.round import RoundContext, run_round

        clock = StageClock(quiet=True)
        summary = run_round(RoundContext(**args), clock)
        timings = clock.timings
    wall = time.perf_counter() - started
    console.print(StageClock(timings=timings).table())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rec = summary["reconciliation"]
    console.print(
        f"round: {rec['rows_in']:,} DTKS rows, wall {wall:.1f} s (stages {sum(t['seconds'] for t in timings):.1f} s), "
        f"process peak RSS {peak_mib:,.0f} MiB"
    )
    if score:
        print_scores(base / "out", data)
    return 0


def print_scores(out_dir: Path, truth_dir: Path) -> dict:
    """Accuracy per anomaly code, duplicate pairs, and the harm figures of a round."""
    from pipeline.evaluate import evaluate_round

    result = evaluate_round(out_dir, truth_dir)
    with pl.Config(tbl_rows=20, float_precision=4):
        console.print(str(result["per_code"]))
    console.print(f"duplicate pairs: {result['duplicate_pairs']}")
    console.print(f"quarantine: {result['quarantine']}")
    console.print(f"DECEASED per person (exact and fuzzy links): {result['deceased_per_person']}")
    console.print(f"fuzzy links to Dukcapil: {result['fuzzy_links']}")
    console.print(f"hard negatives merged: {result['hard_negatives']}")
    console.print(f"harm: {result['harm']}")
    console.print(f"NOT_ELIGIBLE exclusions of people on no list: {result['not_eligible_exclusions_of_people_not_listed']}")
    return result
