"""`verval bench`: the speed instrument. For each size, generate N DTKS rows (Dukcapil
about 2.5 N; kept and reused per size, seed and mix), run the whole round in a child
process of its own, and print per-stage wall time and peak memory; with several sizes,
each stage's growth exponent and the candidate pairs per row of every blocking rule;
with `--vs-splink`, Splink's deduplication of the same DTKS rows in the same run.
Results go to benchmarks/results/ with the machine's description."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from pipeline.paths import PROJECT_DIR
from pipeline.progress import console

RESULTS_DIR = PROJECT_DIR / "benchmarks" / "results"
SPLINK_RUNNER = PROJECT_DIR / "benchmarks" / "splink_runner.py"


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(memory / 2**20, 1), "python": platform.python_version(),
            "system": platform.platform()}


def measure(command: list[str], log: Path, env: dict | None = None) -> dict:
    """Run `command` as a child; its wall time, peak RSS and CPU seconds (from wait4)."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=PROJECT_DIR, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{Path(command[1]).name} exited with {code}; see {log}")
    return {"wall_seconds": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2)}


def generated(base: Path, n: int, seed: int, mix: str, fmt: str, extent: str = "national") -> Path:
    """The generated registry of this size, seed, mix and extent (generated once, then reused)."""
    data = base / (f"data-{n}-seed{seed}-{mix}-{fmt}" + ("" if extent == "national" else f"-{extent}"))
    if not (data / "complete").exists():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.sample", "--n", str(n), "--seed", str(seed), "--out", str(data),
                        "--format", fmt, "--mix", mix, "--extent", extent], check=True, stdout=subprocess.DEVNULL)
        (data / "complete").write_text("")
        console.print(f"generated {n:,} DTKS rows in {time.perf_counter() - started:.1f} s -> {data}")
    return data


def run_size(base: Path, n: int, seed: int, mix: str, fmt: str, through_prefect: bool, extent: str = "national") -> dict:
    data = generated(base, n, seed, mix, fmt, extent)
    suffix = ".parquet" if fmt == "parquet" else ".csv"
    out = base / f"out-{n}"
    command = [sys.executable, "-m", "pipeline.cli", "run", "--dtks", str(data / f"dtks{suffix}"),
               "--dukcapil", str(data / f"dukcapil{suffix}"), "--out", str(out), "--as-of", "2026-11-21",
               "--decision-log", str(base / "decisions.jsonl"), "--objections", str(base / "objections.jsonl")]
    lists = data / f"ineligible{suffix}"
    if lists.exists():  # the generator's ineligibility list, so NOT_ELIGIBLE is measured too
        command += ["--ineligible", str(lists)]
    if not through_prefect:
        command.append("--no-prefect")
    logs = base / "logs"
    logs.mkdir(exist_ok=True)
    log = logs / f"round-{n}.log"
    measured = measure(command, log)
    summary = json.loads((out / "summary.json").read_text())
    return {
        "rows": n, "round": measured, "stages": logged_stages(log) or summary["stage_timings"], "data": str(data), "out": str(out),
        "duplicate_pairs_per_rule": {b["rule"]: b["pairs"] for b in summary["duplicates"]["blocking"]},
        "link_pairs_per_rule": {b["rule"]: b["pairs"] for b in summary["civil_registry_link"]["fuzzy_blocking"]},
    }


STAGE_LINE = re.compile(r"✓ (\S+)\s+([\d.]+) s\s+peak\s+([\d,]+) MiB(?:\s+cpu\s+([\d.]+) s)?")


def logged_stages(log: Path) -> list[dict]:
    """Every stage's time and peak from the round's progress lines: summary.json is
    written by the report stage, before the workbooks and the status index run."""
    return [{"stage": m[1], "seconds": float(m[2]), "peak_rss_mib": float(m[3].replace(",", "")),
             **({"cpu_seconds": float(m[4])} if m[4] else {})}
            for m in STAGE_LINE.finditer(log.read_text(errors="replace"))]


def run_splink(base: Path, result: dict, python: str) -> dict:
    dtks = Path(result["data"]) / "dtks.parquet"
    out = base / "splink"
    out.mkdir(exist_ok=True)
    result_path = out / f"splink-{result['rows']}.json"
    command = [python, str(SPLINK_RUNNER), "run", "--dataset", "registry", "--dtks", str(dtks), "--work", str(out),
               "--result", str(result_path)]
    measured = measure(command, base / "logs" / f"splink-{result['rows']}.log")
    return {**measured, "phases": json.loads(result_path.read_text())["phases"]}


def splink_python() -> str | None:
    for candidate in (os.environ.get("SPLINK_PYTHON"), "/tmp/splinkenv/bin/python"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def exponent(small: float, large: float, n_small: int, n_large: int) -> float | None:
    """b in time ~ N^b between two sizes (None when a time is too small to tell)."""
    if small < 0.05 or large <= 0:
        return None
    return round(math.log(large / small) / math.log(n_large / n_small), 2)


def scaling_table(results: list[dict]) -> pl.DataFrame:
    """Seconds and peak MiB per stage and size; the growth exponent from the smallest to
    the largest size."""
    rows = []
    first, last = results[0], results[-1]
    stages = [s["stage"] for s in last["stages"]]
    for stage in stages + ["round (whole process)"]:
        row = {"stage": stage}
        for result in results:
            if stage.startswith("round"):
                seconds, peak, cpu = (result["round"]["wall_seconds"], result["round"]["peak_rss_mib"],
                                      result["round"].get("cpu_seconds"))
            else:
                found = next((s for s in result["stages"] if s["stage"] == stage), {})
                seconds, peak, cpu = found.get("seconds"), found.get("peak_rss_mib"), found.get("cpu_seconds")
            row[f"s@{result['rows']:,}"] = seconds
            row[f"MiB@{result['rows']:,}"] = peak
            # Cores kept busy: where another stage could run beside this one.
            row[f"cores@{result['rows']:,}"] = round(cpu / seconds, 2) if cpu is not None and seconds else None
        if len(results) > 1:
            small, large = row[f"s@{first['rows']:,}"], row[f"s@{last['rows']:,}"]
            row["exponent"] = exponent(small or 0, large or 0, first["rows"], last["rows"]) if small and large else None
        rows.append(row)
    return pl.DataFrame(rows)


def pairs_table(results: list[dict], key: str) -> pl.DataFrame:
    """Candidate pairs per DTKS row of each blocking rule at each size: flat when blocks
    keep a constant expected size."""
    def per_row(result: dict, rule: str | None) -> float:
        pairs = result[key].get(rule, 0) if rule else sum(result[key].values())
        return round(pairs / result["rows"], 4)

    rules: list[str | None] = [*results[-1][key], None]
    return pl.DataFrame([{"rule": rule or "(all rules)", **{f"pairs/row@{r['rows']:,}": per_row(r, rule) for r in results}}
                         for rule in rules])


def run_benchmark(sizes: list[int], seed: int, work: str | None, fmt: str, through_prefect: bool, score: bool,
                  mix: str = "standard", vs_splink: bool = False, results_dir: Path | None = RESULTS_DIR,
                  extent: str = "national") -> int:
    base = Path(work) if work else Path(tempfile.mkdtemp(prefix="verval-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    python = splink_python() if vs_splink else None
    if vs_splink and not python:
        console.print("--vs-splink needs Splink in a virtualenv of its own (see benchmarks/README.md); "
                      "set SPLINK_PYTHON to its python")
        return 2
    results = []
    for n in sorted(sizes):
        result = run_size(base, n, seed, mix, fmt, through_prefect, extent)
        console.print(f"{n:,} rows: round wall {result['round']['wall_seconds']:.1f} s, peak {result['round']['peak_rss_mib']:,.0f} MiB "
                      f"({'through Prefect' if through_prefect else 'without Prefect'})")
        if python:
            result["splink"] = run_splink(base, result, python)
            ratio = result["round"]["wall_seconds"] / result["splink"]["wall_seconds"]
            console.print(f"{n:,} rows: Splink dedupe of the same DTKS rows wall {result['splink']['wall_seconds']:.1f} s, "
                          f"peak {result['splink']['peak_rss_mib']:,.0f} MiB; verval round / Splink = {ratio:.2f}")
            result["splink"]["ratio_round_over_splink"] = round(ratio, 3)
        if score:
            result["score"] = json.loads(json.dumps(print_scores(Path(result["out"]), Path(result["data"])), default=str))
        results.append(result)
    with pl.Config(tbl_rows=60, tbl_cols=20, tbl_width_chars=200):
        console.print(str(scaling_table(results)))
        console.print("duplicate search, candidate pairs per DTKS row:")
        console.print(str(pairs_table(results, "duplicate_pairs_per_rule")))
        console.print("civil-registry link (fuzzy), candidate pairs per DTKS row:")
        console.print(str(pairs_table(results, "link_pairs_per_rule")))
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = results_dir / f"bench-{stamp}-{'-'.join(str(n) for n in sorted(sizes))}.json"
        path.write_text(json.dumps({"machine": machine(), "seed": seed, "mix": mix, "extent": extent, "format": fmt, "through_prefect": through_prefect,
                                    "commit": _commit(), "results": results}, indent=2, default=str) + "\n")
        console.print(f"results -> {path}")
    return 0


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


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
    console.print(f"rows resolved through a fuzzy link: {result['fuzzy_resolutions']}")
    console.print(f"hard negatives merged: {result['hard_negatives']}")
    console.print(f"harm: {result['harm']}")
    console.print(f"NOT_ELIGIBLE exclusions of people on no list: {result['not_eligible_exclusions_of_people_not_listed']}")
    return result
