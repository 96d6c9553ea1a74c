"""Side-by-side benchmark: verval's matching engine against Splink, on the same data.

    .venv/bin/python benchmarks/splink_vs_verval.py --datasets febrl3,febrl4,gen100k,gen1m

For each dataset both engines run in a child process of their own (ours from this
virtualenv, Splink from the benchmark environment, see README.md); the parent measures
each child's wall time and peak resident memory (ru_maxrss from wait4) and scores both
outputs with the same pair definitions:

  febrl3   deduplication of FEBRL3 (5,000 records): pairs inside predicted clusters
           (ours at the model's link probability 0.5; Splink clustered at 0.95) against
           the true pairs; and, for information, scored pairs with p >= 0.5.
  febrl4   linkage FEBRL4 A -> B (5,000 + 5,000): predicted pairs with p >= 0.5 against
           the 5,000 true links.
  gen100k  deduplication of a generated DTKS extract (pipeline.sample, 100,000 rows;
  gen1m    1,000,000 rows): clusters against person_id. Ours is the whole registry round
           (`verval run --no-prefect`: ingest, checks, civil-registry link, duplicates,
           decisions, report) on DTKS and Dukcapil; the time of the stages up to and
           including find-duplicates is reported too. Splink deduplicates the DTKS extract
           only, after a peer's light cleaning.

Results go to stdout as a table and to --out as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from pipeline.bench import machine  # noqa: E402  (the project's virtualenv runs this script)

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))

RULES_DIR = PROJECT_DIR / "pipeline" / "rules"
DATASETS = ("febrl3", "febrl4", "gen100k", "gen1m")
GENERATED_ROWS = {"gen100k": 100_000, "gen1m": 1_000_000}
FEBRL_COLUMNS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
                 "date_of_birth", "soc_sec_id"]
PAIR_THRESHOLD = 0.5


# ============================================================================ FEBRL standardisation


def soundex(text: pl.Expr) -> pl.Expr:
    """American Soundex as polars expressions (no loop over records): first letter, then
    the digit classes of the following consonants, adjacent repeats collapsed (H and W do
    not separate a repeat, vowels do), padded with zeros to four characters."""
    letters = text.str.to_lowercase().str.replace_all(r"[^a-z]", "")
    codes = letters.str.replace_all(r"[hw]", "")
    for pattern, digit in (("[aeiouy]", "0"), ("[bfpv]", "1"), ("[cgjkqsxz]", "2"), ("[dt]", "3"), ("l", "4"),
                           ("[mn]", "5"), ("r", "6")):
        codes = codes.str.replace_all(pattern, digit)
    for digit in "0123456":
        codes = codes.str.replace_all(digit + "+", digit)
    # The first letter stands for itself; when it is H or W its code was never in `codes`.
    first_is_hw = letters.str.slice(0, 1).is_in(["h", "w"])
    tail = pl.when(first_is_hw).then(codes).otherwise(codes.str.slice(1)).str.replace_all("0", "")
    key = (letters.str.slice(0, 1) + tail + "000").str.slice(0, 4)
    return pl.when(letters.str.len_chars() > 0).then(key)


def standardise_febrl(frame: pl.DataFrame) -> pl.DataFrame:
    """FEBRL records -> compared values and blocking keys. Text lower case, trimmed, single
    spaces, empty as null; numbers digits only; addresses also compared without spaces
    (FEBRL merges and splits words); Soundex keys for names, birth year, completeness."""

    def clean(column: str) -> pl.Expr:
        value = pl.col(column).cast(pl.String).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
        return pl.when(value.str.len_chars() > 0).then(value)

    def digits(column: str) -> pl.Expr:
        value = pl.col(column).cast(pl.String).str.replace_all(r"\D", "")
        return pl.when(value.str.len_chars() > 0).then(value)

    def squeezed(column: str) -> pl.Expr:
        value = pl.col(column).str.replace_all(r"[^a-z0-9]", "")
        return pl.when(value.str.len_chars() > 0).then(value)

    frame = frame.with_columns(
        *[clean(c) for c in ("given_name", "surname", "address_1", "address_2", "suburb", "state")],
        *[digits(c) for c in ("street_number", "postcode", "date_of_birth", "soc_sec_id")],
    )
    frame = frame.with_columns(
        given_name=pl.col("given_name").str.replace_all(r"[^a-z ]", ""),
        surname=pl.col("surname").str.replace_all(r"[^a-z ]", ""),
        address_1_key=squeezed("address_1"),
        address_2_key=squeezed("address_2"),
        suburb_key=squeezed("suburb"),
        given_sdx=soundex(pl.col("given_name")),
        surname_sdx=soundex(pl.col("surname")),
        birth_year=pl.col("date_of_birth").str.slice(0, 4),
        completeness=pl.sum_horizontal([pl.col(c).is_not_null().cast(pl.Int16) for c in FEBRL_COLUMNS]),
    )
    # Both name keys in sorted order: a given name and surname swapped still block together.
    return frame.with_columns(
        names_sdx=pl.when(pl.col("given_sdx").is_not_null() & pl.col("surname_sdx").is_not_null()).then(
            pl.concat_list("given_sdx", "surname_sdx").list.sort().list.join("|")
        )
    )


def verval_febrl(dataset: str, work: Path, result_path: Path, dedupe_model: Path, link_model: Path) -> None:
    """Child process: our engine on FEBRL3 (deduplicate) or FEBRL4 (link)."""
    from pipeline.matching import engine
    from pipeline.matching.model import load_model

    started = time.perf_counter()
    out_dir = work / "verval" / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {"engine": "verval", "dataset": dataset}
    if dataset == "febrl3":
        model = load_model(dedupe_model)
        records = pl.read_parquet(work / "febrl3" / "records.parquet")
        # The engine's cluster query names the id column id_dtks, so the record id is
        # mapped onto that name (target: source).
        found = engine.deduplicate(records, model, id_column="id_dtks", mapping={"id_dtks": "rec_id"},
                                   standardise=standardise_febrl)
        clusters_path, pairs_path = out_dir / "clusters.parquet", out_dir / "pairs.parquet"
        found["clusters"].select(id="id_dtks", cluster_id="cluster_id").write_parquet(clusters_path)
        found["pairs"].select(id_l="id_dtks_l", id_r="id_dtks_r", match_weight="match_weight",
                              match_probability="match_probability").write_parquet(pairs_path)
        result.update(records=records.height, clusters_path=str(clusters_path), pairs_path=str(pairs_path),
                      blocking=found["blocking"].to_dicts(), model_path=str(dedupe_model))
    else:
        model = load_model(link_model)
        left = pl.read_parquet(work / "febrl4" / "a.parquet")
        right = pl.read_parquet(work / "febrl4" / "b.parquet")
        pairs, blocking = engine.link(left, right, model, "rec_id", "rec_id", standardise=standardise_febrl)
        pairs_path = out_dir / "pairs.parquet"
        pairs.select("id_l", "id_r", "match_weight", "match_probability").write_parquet(pairs_path)
        result.update(records=left.height + right.height, pairs_path=str(pairs_path), blocking=blocking.to_dicts(),
                      model_path=str(link_model))
    result["engine_seconds"] = round(time.perf_counter() - started, 3)
    result["self_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result_path.write_text(json.dumps(result, indent=2, default=str) + "\n")


# ============================================================================ measuring a child


def _cpu_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(limit_seconds: float, window: float = 5.0, max_cores: float = 0.25) -> float:
    """Wait (at most `limit_seconds`) until other processes use less than `max_cores` over a
    `window`, so a child is not timed while someone else holds a core. Returns the wait."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_seconds:
        before = _cpu_busy_seconds()
        time.sleep(window)
        if (_cpu_busy_seconds() - before) / window < max_cores:
            break
    return round(time.perf_counter() - started, 1)


QUIET_WAIT = 0.0  # set from --quiet-wait


def measure(command: list[str], log: Path, cwd: Path = PROJECT_DIR, env: dict | None = None) -> dict:
    """Run `command`, return wall seconds, the child's peak RSS and CPU seconds, and the
    CPU seconds other processes on the machine used meanwhile (the owner's work)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    waited = wait_for_quiet(QUIET_WAIT) if QUIET_WAIT > 0 else 0.0
    busy_before = _cpu_busy_seconds()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    child_cpu = usage.ru_utime + usage.ru_stime
    others = _cpu_busy_seconds() - busy_before - child_cpu
    if process.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}; log {log}:\n" + "\n".join(tail))
    return {
        "wall_seconds": round(wall, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "cpu_seconds": round(child_cpu, 2),
        "other_processes_cpu_seconds": round(max(others, 0.0), 2),
        "load_average_before": round(load_before, 2),
        "waited_for_quiet_seconds": waited,
        "log": str(log),
    }


def git_state() -> dict:
    """The commit our engine ran from, and uncommitted changes under pipeline/ (the
    working tree is shared with whoever develops it)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_pipeline_files": [line[3:] for line in git("status", "--porcelain", "--", "pipeline").splitlines()]}


# ============================================================================ data


def ensure_febrl(work: Path, bench_python: str) -> None:
    if (work / "febrl3" / "records.parquet").exists() and (work / "febrl4" / "b.parquet").exists():
        return
    subprocess.run([bench_python, str(BENCH_DIR / "splink_runner.py"), "febrl-data", "--work", str(work)], check=True)


def ensure_generated(dataset: str, work: Path, seed: int) -> Path:
    """generate_sample(n, seed) as Parquet into work/<dataset>, reused when present."""
    folder = work / dataset
    stamp = folder / "generated.json"
    wanted = {"n": GENERATED_ROWS[dataset], "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return folder
    started = time.perf_counter()
    script = ("import sys; from pathlib import Path; from pipeline.sample import generate_sample; "
              "generate_sample(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), fmt='parquet')")
    subprocess.run([sys.executable, "-c", script, str(wanted["n"]), str(seed), str(folder)], check=True, cwd=PROJECT_DIR)
    stamp.write_text(json.dumps(wanted))
    print(f"  generated {dataset} ({wanted['n']:,} DTKS rows, seed {seed}) in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def truth_for(dataset: str, work: Path) -> dict:
    """ids (the scored universe with the true entity) and, for linkage, the true pairs."""
    if dataset == "febrl3":
        ids = pl.read_parquet(work / "febrl3" / "records.parquet").select(
            id="rec_id", entity=pl.col("rec_id").str.extract(r"^rec-(\d+)")
        )
        return {"ids": ids, "pairs": unordered(pl.read_parquet(work / "febrl3" / "truth_pairs.parquet"))}
    if dataset == "febrl4":
        return {"pairs": unordered(pl.read_parquet(work / "febrl4" / "truth_pairs.parquet"))}
    # Rows the generator writes malformed on purpose (expect_quarantine) are left out of
    # the scoring for both engines; every other DTKS row counts, found or not.
    rows = pl.read_parquet(work / dataset / "truth_rows.parquet")
    ids = rows.filter(pl.col("expect_quarantine") != "1").select(id="id_dtks", entity="person_id")
    return {"ids": ids, "pairs": entity_pairs(ids)}


# ============================================================================ scoring


def unordered(pairs: pl.DataFrame) -> pl.DataFrame:
    return pairs.select(
        a=pl.min_horizontal(pl.col("id_l").cast(pl.String), pl.col("id_r").cast(pl.String)),
        b=pl.max_horizontal(pl.col("id_l").cast(pl.String), pl.col("id_r").cast(pl.String)),
    ).unique()


def entity_pairs(ids: pl.DataFrame) -> pl.DataFrame:
    grouped = ids.filter(pl.len().over("entity") > 1)
    return unordered(
        grouped.join(grouped, on="entity", suffix="_r").filter(pl.col("id") < pl.col("id_r")).select(id_l="id", id_r="id_r")
    )


def scores(tp: int, predicted: int, true: int) -> dict:
    precision = tp / predicted if predicted else 0.0
    recall = tp / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"true_pairs": true, "predicted_pairs": predicted, "tp": tp,
            "precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5)}


def cluster_scores(clusters: pl.DataFrame, ids: pl.DataFrame) -> dict:
    """Pairwise scores of clusters (id, cluster_id) on the universe `ids` (id, entity):
    every pair of rows in one predicted cluster is a predicted pair; a row the engine did
    not return is a singleton."""
    joined = ids.join(clusters.select(pl.col("id").cast(pl.String), pl.col("cluster_id").cast(pl.String)),
                      on="id", how="left").with_columns(cluster_id=pl.coalesce("cluster_id", "_single_" + pl.col("id")))

    def pairs(*keys: str) -> int:
        sizes = joined.group_by(*keys).len()["len"].cast(pl.Int64)
        return int((sizes * (sizes - 1) // 2).sum())

    return scores(pairs("cluster_id", "entity"), pairs("cluster_id"), pairs("entity"))


def pair_scores(predicted: pl.DataFrame, true_pairs: pl.DataFrame, ids: pl.DataFrame | None = None) -> dict:
    predicted = unordered(predicted.filter(pl.col("match_probability") >= PAIR_THRESHOLD))
    if ids is not None:
        universe = ids.select("id")
        predicted = predicted.join(universe, left_on="a", right_on="id", how="semi").join(universe, left_on="b", right_on="id", how="semi")
    tp = predicted.join(true_pairs, on=["a", "b"], how="semi").height
    return scores(tp, predicted.height, true_pairs.height)


# ============================================================================ the two engines


def run_verval(dataset: str, work: Path, args: argparse.Namespace) -> dict:
    result_path = work / "verval" / f"{dataset}.json"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    log = work / "logs" / f"verval-{dataset}.log"
    code_before = git_state()
    result = _run_verval(dataset, work, args, result_path, log)
    return result | {"code": code_before, "code_changed_during_run": git_state() != code_before}


def _run_verval(dataset: str, work: Path, args: argparse.Namespace, result_path: Path, log: Path) -> dict:
    if dataset in ("febrl3", "febrl4"):
        command = [sys.executable, str(Path(__file__).resolve()), "_verval-febrl", "--dataset", dataset, "--work", str(work),
                   "--result", str(result_path), "--dedupe-model", str(args.dedupe_model), "--link-model", str(args.link_model)]
        measured = measure(command, log)
        result = json.loads(result_path.read_text())
        result.update(measured)
        result["timed"] = "child process: read Parquet, standardise, block, compare, score" + (
            ", cluster" if dataset == "febrl3" else "")
        return result
    folder = work / dataset
    out = work / "verval" / f"{dataset}-round"
    command = [sys.executable, "-m", "pipeline.cli", "run", "--dtks", str(folder / "dtks.parquet"),
               "--dukcapil", str(folder / "dukcapil.parquet"), "--out", str(out), "--no-prefect", "--quiet"]
    measured = measure(command, log)
    summary = json.loads((out / "summary.json").read_text())
    stages = {t["stage"]: t["seconds"] for t in summary["stage_timings"]}
    names = list(stages)
    through = names[: names.index("find-duplicates") + 1]
    result = {
        "engine": "verval", "dataset": dataset, "records": summary["reconciliation"]["rows_in"],
        "clusters_path": str(out / "duplicate_clusters.parquet"), "pairs_path": str(out / "duplicate_pairs.parquet"),
        "stages": stages,
        "engine_seconds": round(sum(stages[s] for s in through), 3),
        "find_duplicates_seconds": stages["find-duplicates"],
        "timed": "whole `verval run --no-prefect` (DTKS + Dukcapil) as the process wall time; engine_seconds = stages "
                 "up to and including find-duplicates (" + ", ".join(through) + ")",
        "duplicates": summary.get("duplicates", {}),
        **measured,
    }
    return result


def run_splink(dataset: str, work: Path, args: argparse.Namespace) -> dict:
    result_path = work / "splink" / f"{dataset}.json"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    command = [args.bench_python, str(BENCH_DIR / "splink_runner.py"), "run", "--dataset", dataset, "--work", str(work),
               "--result", str(result_path)]
    measured = measure(command, work / "logs" / f"splink-{dataset}.log")
    result = json.loads(result_path.read_text())
    result.update(measured)
    result["timed"] = "child process: load" + (" and clean" if dataset.startswith("gen") else "") + \
        ", estimate prior, u (1e7 random pairs), EM on two blocking rules, predict" + (
        ", cluster" if dataset != "febrl4" else "")
    return result


def score(dataset: str, result: dict, truth: dict) -> None:
    pairs = pl.read_parquet(result["pairs_path"])
    if result["engine"] == "verval" and "id_dtks_l" in pairs.columns:
        pairs = pairs.rename({"id_dtks_l": "id_l", "id_dtks_r": "id_r"})
    if dataset == "febrl4":
        result["metrics"] = pair_scores(pairs, truth["pairs"])
        result["metrics_definition"] = f"predicted pairs with p >= {PAIR_THRESHOLD} against the true links"
        return
    clusters = pl.read_parquet(result["clusters_path"])
    if "id_dtks" in clusters.columns:
        clusters = clusters.select(id="id_dtks", cluster_id="cluster_id")
    result["metrics"] = cluster_scores(clusters, truth["ids"])
    result["metrics_definition"] = "all pairs inside predicted clusters against all pairs of the same true entity"
    result["pair_metrics"] = pair_scores(pairs, truth["pairs"], truth["ids"])


# ============================================================================ report


def ratios(ours: dict, splink: dict) -> dict:
    def ratio(a, b):
        return round(a / b, 3) if a is not None and b else None

    return {
        "wall_time_ours_over_splink": ratio(ours["wall_seconds"], splink["wall_seconds"]),
        "engine_time_ours_over_splink": ratio(ours["engine_seconds"], splink["engine_seconds"]),
        "peak_memory_ours_over_splink": ratio(ours["peak_rss_mib"], splink["peak_rss_mib"]),
        "f1_ours_minus_splink": round(ours["metrics"]["f1"] - splink["metrics"]["f1"], 5),
    }


def table(report: dict) -> str:
    header = (f"{'dataset':<8} {'engine':<7} {'precision':>9} {'recall':>7} {'F1':>7} {'wall s':>8} {'engine s':>9} "
              f"{'peak MiB':>9} {'others CPU s':>12}")
    lines = [header, "-" * len(header)]
    for name, entry in report["datasets"].items():
        for engine in ("verval", "splink"):
            r = entry.get(engine)
            if not r:
                continue
            m = r["metrics"]
            lines.append(f"{name:<8} {engine:<7} {m['precision']:>9.4f} {m['recall']:>7.4f} {m['f1']:>7.4f} "
                         f"{r['wall_seconds']:>8.1f} {r['engine_seconds']:>9.1f} {r['peak_rss_mib']:>9.0f} "
                         f"{r['other_processes_cpu_seconds']:>12.1f}")
        if entry.get("ratios"):
            q = entry["ratios"]
            lines.append(f"{'':<8} {'ratio':<7} ours/Splink wall {q['wall_time_ours_over_splink']}, engine time "
                         f"{q['engine_time_ours_over_splink']}, peak memory {q['peak_memory_ours_over_splink']}; "
                         f"F1 ours - Splink {q['f1_ours_minus_splink']:+.4f}")
        for engine in ("verval", "splink"):
            r = entry.get(engine)
            if r and r.get("pair_metrics"):
                p = r["pair_metrics"]
                lines.append(f"{'':<8} {engine:<7} (pairs p>=0.5: P {p['precision']:.4f} R {p['recall']:.4f} F1 {p['f1']:.4f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_verval-febrl":
        child = argparse.ArgumentParser()
        for flag in ("--dataset", "--work", "--result", "--dedupe-model", "--link-model"):
            child.add_argument(flag, required=True)
        a = child.parse_args(argv[1:])
        verval_febrl(a.dataset, Path(a.work), Path(a.result), Path(a.dedupe_model), Path(a.link_model))
        return 0

    default_bench = os.environ.get("SPLINK_PYTHON") or ("/tmp/splinkenv/bin/python" if Path("/tmp/splinkenv/bin/python").exists() else sys.executable)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="febrl3,febrl4,gen100k", help=f"comma-separated, of {','.join(DATASETS)}")
    parser.add_argument("--skip-splink", action="store_true", help="run our engine only")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "latest.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/verval-splink-bench"), help="data and outputs (large for gen1m)")
    parser.add_argument("--bench-python", default=default_bench,
                        help="python with the bench extra (splink, recordlinkage); default $SPLINK_PYTHON or /tmp/splinkenv/bin/python")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                        help="before each engine, wait up to SECONDS for other processes to leave the CPU idle")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated registries")
    parser.add_argument("--dedupe-model", type=Path, default=RULES_DIR / "febrl_dedupe.json")
    parser.add_argument("--link-model", type=Path, default=RULES_DIR / "febrl_link.json")
    args = parser.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {', '.join(DATASETS)}")
    global QUIET_WAIT
    QUIET_WAIT = args.quiet_wait
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    report = {
        "date": dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "benchmarks/splink_vs_verval.py", *argv]),
        "machine": machine(),
        "code": git_state(),
        "models": {"febrl_dedupe": str(args.dedupe_model), "febrl_link": str(args.link_model)},
        "datasets": {},
    }
    if any(d.startswith("febrl") for d in datasets):
        ensure_febrl(work, args.bench_python)
    for dataset in datasets:
        print(f"[{dataset}]", flush=True)
        if dataset in GENERATED_ROWS:
            ensure_generated(dataset, work, args.seed)
        truth = truth_for(dataset, work)
        entry: dict = {}
        for engine, runner in (("verval", run_verval), ("splink", run_splink)):
            if engine == "splink" and args.skip_splink:
                continue
            result = runner(dataset, work, args)
            score(dataset, result, truth)
            entry[engine] = result
            m = result["metrics"]
            print(f"  {engine:<7} P {m['precision']:.4f} R {m['recall']:.4f} F1 {m['f1']:.4f}  wall {result['wall_seconds']:.1f} s"
                  f"  peak {result['peak_rss_mib']:.0f} MiB  (others used {result['other_processes_cpu_seconds']:.0f} CPU s)", flush=True)
        if "verval" in entry and "splink" in entry:
            entry["ratios"] = ratios(entry["verval"], entry["splink"])
        report["datasets"][dataset] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")  # after every dataset
    print()
    print(table(report))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
