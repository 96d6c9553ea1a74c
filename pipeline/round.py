"""One verification round as file-level stages. Each stage reads Parquet from the run's
work folder, calls the table functions of its module, and writes Parquet back; the
Prefect flow (pipeline/flows/verval.py) only wires these together.

Outputs are built in a work folder and published by one atomic switch of the --out link
(pipeline/outdir.py) only when complete, so a failed or killed run leaves the previous
outputs untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import duckdb
import polars as pl

from pipeline import __version__, contract, decisions, outdir, partitioned
from pipeline.checks.nik import NIK_CHECK_INPUT, check_counts, check_niks
from pipeline.errors import InputError, StageError, UsageError, VervalError
from pipeline.contract import OUTCOME
from pipeline.decide import check_paid_once, decide_rows, reconcile_counts
from pipeline.rowgroups import RowGroupWriter, write_row_groups
from pipeline.ingest import ingest_extract, stages_in_chunks
from pipeline.matching import dedupe, link
from pipeline.matching.estimate import drift_table
from pipeline.matching.sql import register_macros
from pipeline.matching.model import DEFAULT_MODEL_PATH, LINK_MODEL_PATH, load_model, save_model, with_weights
from pipeline.progress import StageClock

JAKARTA = dt.timezone(dt.timedelta(hours=7))
PACKAGES = ("polars", "duckdb", "pyarrow", "prefect", "great-expectations", "rapidfuzz", "jellyfish", "rich")


# DuckDB's memory limit. The stages of a single-process round run one at a time, so each
# may use a good share of the machine: at 10M DTKS rows the duplicate search took 174 s
# with 3 GB (its 20M candidate pairs and the records they join spilled to disk) and
# 116 s with 10 GB. A partition task's working set is set by the partition's size, so
# side by side on one host each keeps to a few gigabytes.
MAIN_PROCESS_MEMORY_SHARE = 0.4
PARTITION_TASK_MEMORY = "3GB"
# The civil-registry link holds the records and their exact links in polars beside DuckDB
# (about 6 GB at 10M rows): with DuckDB at 40 % of this 24 GB machine the fuzzy link took
# the process to 12.1 GB at a province's density, at 25 % to 11.3 GB in the same time.
LINK_MEMORY_SHARE = 0.25


def machine_memory_share(share: float) -> str:
    """`share` of this machine's physical memory, as a DuckDB memory limit; never below 1 GB."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(1024, int(total * share) // 2**20)}MiB"


@dataclass
class RoundContext:
    dtks: str
    dukcapil: str
    out: str
    model_path: str | None = None
    link_model_path: str | None = None
    decisions: str | list[str] | None = None  # files and folders of filled workbooks / CSVs
    decision_log: str | None = None
    objections: str | None = None
    full_nik: bool = False
    as_of: str = field(default_factory=lambda: dt.datetime.now(JAKARTA).date().isoformat())
    duckdb_memory_limit: str = ""  # empty: MAIN_PROCESS_MEMORY_SHARE of the machine, PARTITION_TASK_MEMORY per task
    threads: int = 2
    allow_partial_dukcapil: bool = False
    ineligible: list[str] = field(default_factory=list)
    # Partitioned round (pipeline/partitioned.py): buckets per heavy step (0 = one process,
    # unless workers or a cluster are given: then chosen from the row count), local Dask
    # workers, an existing scheduler's address, DuckDB threads per partition task.
    partitions: int = 0
    workers: int = 0
    cluster: str | None = None
    worker_threads: int = 1
    work: str = ""
    round_id: str = ""
    started_at: str = field(default_factory=lambda: dt.datetime.now(JAKARTA).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        self.out = str(outdir.out_path(self.out))
        if not self.round_id:
            self.round_id = outdir.new_round_id()
        if not self.work:
            self.work = str(outdir.rounds_dir(Path(self.out)) / f"{self.round_id}.tmp")

    @property
    def work_dir(self) -> Path:
        return Path(self.work)

    @property
    def staging_dir(self) -> Path:
        return self.work_dir / "staging"

    def path(self, name: str) -> Path:
        return self.work_dir / name

    def extract_path(self, kind: str) -> Path:
        """The --dtks or --dukcapil extract."""
        return Path(self.dtks if kind == "dtks" else self.dukcapil)

    def link_model(self) -> dict:
        """The civil-registry link model: --link-model, else the declared one."""
        return load_model(Path(self.link_model_path) if self.link_model_path else LINK_MODEL_PATH)

    def duplicate_model(self) -> dict:
        """The duplicate model: --model, else the declared one."""
        return load_model(Path(self.model_path) if self.model_path else None)

    @property
    def on_cluster(self) -> bool:
        return self.workers > 0 or bool(self.cluster)

    @property
    def partitioned(self) -> bool:
        return self.partitions != 0 or self.on_cluster

    def connect(self, threads: int | None = None, temp: str | None = None, share: float = MAIN_PROCESS_MEMORY_SHARE) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection allowed `share` of the machine's memory; partition tasks
        running side by side each spill to a folder of their own (`temp`)."""
        limit = self.duckdb_memory_limit or (PARTITION_TASK_MEMORY if temp else machine_memory_share(share))
        con = duckdb.connect(config={"memory_limit": limit, "threads": threads or self.threads})
        spill = self.work_dir / "duckdb_tmp" / temp if temp else self.work_dir / "duckdb_tmp"
        con.execute(f"SET temp_directory = '{spill}'")
        return register_macros(con)

    def parameters(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("work", "round_id", "started_at")}


# --------------------------------------------------------------------------- stages


def prepare(ctx: RoundContext) -> dict:
    """Fail before any work if an input or --out cannot be used; remove what killed runs
    left; create the work folder. Runs under the --out lock (run_round)."""
    from pipeline.ingest import check_input_file

    for label, value in (("--dtks", ctx.dtks), ("--dukcapil", ctx.dukcapil), *(("--ineligible", f) for f in ctx.ineligible)):
        check_input_file(Path(value), label)
    try:
        if len(ctx.as_of) != 10:  # fromisoformat also takes 20261121, which the stages do not
            raise ValueError
        dt.date.fromisoformat(ctx.as_of)
    except (TypeError, ValueError):
        raise UsageError(f"--as-of {ctx.as_of}: not a date; give the round's date as YYYY-MM-DD, e.g. 2026-11-21.") from None
    # A model file that cannot be used fails here, not minutes later in the stage that reads it.
    for label, path in (("--model", ctx.model_path), ("--link-model", ctx.link_model_path)):
        if path:
            check_model_file(Path(path), label)
    _, notes = outdir.prepare_out(Path(ctx.out), ctx.round_id)  # creates ctx.work_dir
    ctx.staging_dir.mkdir(mode=0o700)
    return {"work": ctx.work, "notes": notes}


def check_model_file(path: Path, label: str) -> None:
    """UsageError naming the option, the file and what is wrong, when `path` is no
    matching model load_model accepts."""
    what = None
    try:
        load_model(path)
    except FileNotFoundError:
        what = "file not found"
    except IsADirectoryError:
        what = "a folder, not a file"
    except UnicodeDecodeError:
        what = "not UTF-8 text"
    except json.JSONDecodeError as error:
        what = f"not valid JSON (line {error.lineno}, column {error.colno})"
    except ValueError as error:  # validate_model's, which says what the file lacks
        what = str(error).removeprefix(f"{path}: ")
    if what:
        declared = DEFAULT_MODEL_PATH if label == "--model" else LINK_MODEL_PATH
        raise UsageError(f"{label} {path}: {what}. Fix the file, or leave {label} out to use the declared model "
                         f"(pipeline/rules/{declared.name}).")


def ingest(ctx: RoundContext, kind: str) -> dict:
    return ingest_extract(ctx.extract_path(kind), kind, ctx.staging_dir, ctx.as_of).to_dict()


def expectations(ctx: RoundContext, kind: str) -> dict:
    from pipeline.checks.expectations import validate_extract  # Great Expectations takes seconds to import

    return validate_extract(str(ctx.staging_dir / f"{kind}.parquet"), kind)


def _import_great_expectations() -> None:
    import pipeline.checks.expectations  # noqa: F401


class SideThread:
    """A thread for the stages whose results no later stage reads (the Great Expectations
    suites, whose import alone takes 5-10 s): it imports them while ingest runs and
    validates the staged extracts while the main line links and deduplicates, which
    spend their time in DuckDB and polars outside the GIL."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verval-side")
        self._pool.submit(_import_great_expectations)

    def submit(self, function, *args):
        return self._pool.submit(function, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def wait_for(pending) -> dict:
    return pending.result()


def gather_decisions(ctx: RoundContext) -> dict:
    found = decisions.gather(ctx.decisions, ctx.decision_log, recorded_at=ctx.started_at)
    found["effective"].write_parquet(ctx.staging_dir / "decisions.parquet")
    found["to_log"].write_parquet(ctx.staging_dir / "decisions_new.parquet")
    found["malformed"].write_parquet(ctx.path("decisions_rejected.parquet"))
    malformed = found["malformed"].height
    warnings = found["warnings"] + ([f"--decisions: {malformed} decision row(s) could not be used; see "
                                     "decisions_rejected.parquet (file, sheet, row, reason)"] if malformed else [])
    return {"new_rows": found["new"], "effective": found["effective"].height, "malformed": malformed,
            "log": ctx.decision_log, "warnings": warnings}


def log_decisions(ctx: RoundContext, round_dir: str) -> int:
    """After publish: append the decisions this round read for the first time to the log."""
    if not ctx.decision_log:
        return 0
    return decisions.append_to_log(Path(ctx.decision_log), pl.read_parquet(Path(round_dir) / "staging" / "decisions_new.parquet"))


def check_extracts(ctx: RoundContext, ingested: dict[str, dict]) -> dict:
    """Stop before matching when the extracts cannot support a fair round: no DTKS rows, or
    a Dukcapil extract that is empty, has no death column, or is far smaller than DTKS (every
    person it misses would go to review as NIK_NOT_FOUND, and no death could be found)."""
    dtks, dukcapil = ingested["dtks"], ingested["dukcapil"]
    if dtks["rows_staged"] == 0:
        raise InputError(
            f"--dtks {dtks['source']}: no usable data rows ({dtks['rows_in']} read, {dtks['rows_quarantined']} quarantined). "
            "Check that this is the DTKS extract and that it has rows below the header."
        )
    rule = contract.dukcapil_coverage()
    problems = []
    if "tanggal_meninggal" not in dukcapil["column_mapping"]:
        aliases = next(s.aliases for s in contract.columns("dukcapil") if s.name == "tanggal_meninggal")
        problems.append(f"it has no death-date column (tanggal_meninggal; accepted headers: {', '.join(aliases)}), so no death can be found")
    if dukcapil["rows_staged"] < rule["min_rows_per_dtks_row"] * dtks["rows_staged"]:
        problems.append(
            f"it has {dukcapil['rows_staged']:,} usable rows for {dtks['rows_staged']:,} DTKS rows (expected at least "
            f"{rule['min_rows_per_dtks_row']:g} per DTKS row), so most DTKS people would not be found"
        )
    if problems and not ctx.allow_partial_dukcapil:
        raise InputError(
            f"--dukcapil {dukcapil['source']}: " + "; and ".join(problems) + ". Use the full Dukcapil extract for the "
            "region of the DTKS extract, or run again with --allow-partial-dukcapil if this is intended."
        )
    return {"warnings": [f"--dukcapil {Path(dukcapil['source']).name} (allowed by --allow-partial-dukcapil): {p}" for p in problems]}


def gather_objections(ctx: RoundContext) -> dict:
    """Objections filed on the status page: CITIZEN_OBJECTION cases for reviewers, and the
    state of each objection (objections.parquet)."""
    from pipeline.lookup import objections

    dtks_ids = pl.read_parquet(ctx.staging_dir / "dtks.parquet", columns=["id_dtks"])["id_dtks"]
    queue, skipped = objections.read_queue(Path(ctx.objections) if ctx.objections else None)
    anomalies, state = objections.objection_cases(queue, pl.read_parquet(ctx.staging_dir / "decisions.parquet"), dtks_ids)
    anomalies.write_parquet(ctx.staging_dir / "anomalies_obj.parquet")
    state.write_parquet(ctx.path("objections.parquet"))
    counts = dict(state.group_by("state").len().iter_rows())
    # A line cut short by a crash is expected at the end; any other means a citizen's
    # objection may be lost, so the round says where to look.
    shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
    warnings = [f"--objections {ctx.objections}: {len(skipped)} line(s) are no complete objection and were skipped "
                f"(line {shown}); a write cut short leaves only the last line so: check the file"] if skipped else []
    return {"queue": ctx.objections, "objections": state.height, "warnings": warnings,
            **{key: counts.get(key, 0) for key in ("open", "accepted", "rejected", "stale")}}


def nik_checks(ctx: RoundContext) -> dict:
    dtks = pl.read_parquet(ctx.staging_dir / "dtks.parquet", columns=NIK_CHECK_INPUT)
    facts, anomalies = check_niks(dtks)
    facts.write_parquet(ctx.staging_dir / "nik_checks.parquet")
    anomalies.write_parquet(ctx.staging_dir / "anomalies_nik.parquet")
    return check_counts(facts, anomalies)


def link_records(ctx: RoundContext, model: dict) -> pl.LazyFrame:
    """Standardised DTKS records with their NIK facts, the input of both matching stages
    (a lazy query); `model` the link model (its threshold for serials the civil
    registry never issued)."""
    records = dedupe.prepare_records(pl.scan_parquet(ctx.staging_dir / "dtks.parquet"),
                                     pl.scan_parquet(ctx.staging_dir / "nik_checks.parquet"))
    slack = model["thresholds"].get("unissued_serial_slack")  # a model without it trusts every well-formed number
    if slack is None:
        return records
    return link.mark_unissued_numbers(records, str(ctx.staging_dir / "dukcapil.parquet"), slack)


def link_civil_registry(ctx: RoundContext) -> dict:
    model = ctx.link_model()
    # The whole records go to a file and only the columns the link reads stay: holding every
    # column (addresses, places of birth, NIK facts) through the stage set its peak (at 10M
    # rows a 2.4 GB frame). Collected, then written: at 3M rows (under load) 17.7 s against
    # 21.1 s for sinking the query, with the same peak.
    standardised = ctx.staging_dir / "link_records.parquet"
    whole = link_records(ctx, model).collect(engine="streaming")
    whole.write_parquet(standardised)
    records = whole.select(link.LINK_STAGE_COLUMNS)
    del whole
    con = ctx.connect(share=LINK_MEMORY_SHARE)
    try:
        link.load_dukcapil(con, str(ctx.staging_dir / "dukcapil.parquet"))
        exact = link.another_record_fits(con, link.link_exact(con, records))
        records = dedupe.mark_verified(records, exact)
        fuzzy, blocking = link.link_fuzzy(con, records.filter(~pl.col("nik_verified")), model)
    finally:
        con.close()
    written = write_links(ctx, records, exact, fuzzy, blocking, model, standardised)
    standardised.unlink()  # all of it is in records.parquet now
    return written


# Records per range of ids in which the link stage's outputs are made (write_links): a
# partition's size. Ranges of a million records raised the 1M round's link stage by 0.3 GB.
LINK_OUTPUT_RANGE = 250_000


def _rows_between(frame: pl.DataFrame, first: str, last: str, ids_sorted: bool) -> pl.DataFrame:
    """frame's rows whose id_dtks lies in [first, last]: a slice when frame is sorted by id."""
    if not ids_sorted:
        return frame.filter(pl.col("id_dtks").is_between(pl.lit(first), pl.lit(last), closed="both"))
    ids = frame["id_dtks"]
    begin, end = ids.search_sorted(first, side="left"), ids.search_sorted(last, side="right")
    return frame.slice(begin, end - begin)


def link_output_ranges(rows: int, size: int | None = None) -> list[tuple[int, int]]:
    """(offset, length) of each range of `size` sorted records (LINK_OUTPUT_RANGE) in which
    the link's outputs are made, in one process (link_ranges) or a task each
    (partitioned.link_range); no records: one empty range."""
    size = size or LINK_OUTPUT_RANGE
    return [(offset, min(size, rows - offset)) for offset in range(0, rows, size)] or [(0, 0)]


def link_ranges(records: pl.DataFrame, exact: pl.DataFrame, fuzzy: pl.DataFrame, size: int | None = None):
    """(records, exact links, fuzzy links) of each of link_output_ranges; `records` sorted
    by id_dtks."""
    if not records["id_dtks"].is_sorted():
        raise RuntimeError("link stage: the records are not sorted by id_dtks")
    if not records.height:
        yield records, exact.clear(), fuzzy.clear()
        return
    ids = records["id_dtks"]
    exact_sorted, fuzzy_sorted = exact["id_dtks"].is_sorted(), fuzzy["id_dtks"].is_sorted()
    for start, length in link_output_ranges(records.height, size):
        first, last = ids[start], ids[start + length - 1]
        yield (records.slice(start, length), _rows_between(exact, first, last, exact_sorted),
               _rows_between(fuzzy, first, last, fuzzy_sorted))


# The link stage's outputs, in the order range_link_outputs makes them: name, and whether
# the file stays in staging (the link findings, which decide reads) or is an output.
LINK_OUTPUTS = (("resolution", False), ("anomalies_link", True), ("dukcapil_links", False))
LINK_OUTPUT_FILES = tuple(name for name, _ in LINK_OUTPUTS)


def link_output_paths(ctx: RoundContext) -> list[Path]:
    return [ctx.staging_dir / f"{name}.parquet" if staged else ctx.path(f"{name}.parquet") for name, staged in LINK_OUTPUTS]


def range_link_outputs(records: pl.DataFrame, exact: pl.DataFrame, fuzzy: pl.DataFrame, threshold: float) -> tuple[pl.DataFrame, ...]:
    """The resolution, link findings and links (LINK_OUTPUT_FILES) of a range of ids, from
    that range's records and links: every output row depends on its own row's links only."""
    resolution = link.resolve(records, exact, fuzzy, threshold)
    anomalies = pl.concat([link.link_anomalies(records, exact, resolution), link.fuzzy_anomalies(fuzzy)])
    links = pl.concat([exact, fuzzy], how="diagonal_relaxed").sort("id_dtks", "link_method")
    return resolution, anomalies, links


def write_link_outputs(ctx: RoundContext, empty: tuple[pl.DataFrame, ...], threshold: float, ranges) -> tuple[int, int, int]:
    """The link stage's outputs streamed from `ranges` (an iterable of the three frames of
    each range of ids, in id order), in row groups that depend on the rows only
    (pipeline/rowgroups.py); `empty`: the records, exact and fuzzy links without rows, whose
    outputs give the files' schemas. Returns the rows written to each."""
    schemas = [frame.schema for frame in range_link_outputs(*empty, threshold)]
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(RowGroupWriter(path, schema)) for path, schema in zip(link_output_paths(ctx), schemas)]
        for frames in ranges:
            for writer, frame in zip(writers, frames):
                writer.write(frame)
        return tuple(writer.close() for writer in writers)


def link_summary(exact: pl.LazyFrame, fuzzy: pl.DataFrame, fuzzy_queries: int, resolution: pl.LazyFrame,
                 blocking: list[dict], anomalies: int) -> dict:
    """What summary.json says of the link stage (the links read lazily: a partitioned
    round's driver does not hold them)."""
    return {
        "exact_links": exact.select(pl.len()).collect().item(),
        "identity": dict(exact.group_by("identity").len().sort("identity").collect().iter_rows()),
        "dukcapil_nik_repeats": exact.select((pl.col("dukcapil_candidates") > 1).sum()).collect().item(),
        "fuzzy_queries": fuzzy_queries,
        "fuzzy_links": fuzzy.height,
        "fuzzy_ambiguous": int(fuzzy["ambiguous"].sum()),
        "resolution": dict(resolution.group_by("resolution").len().sort("resolution").collect().iter_rows()),
        "fuzzy_blocking": blocking,
        "anomalies": anomalies,
    }


def write_links(ctx: RoundContext, records: pl.DataFrame, exact: pl.DataFrame, fuzzy: pl.DataFrame, blocking: pl.DataFrame,
                model: dict, standardised: Path) -> dict:
    """The link stage's outputs from its exact and fuzzy links, in one process.
    `standardised`: the file of the whole records, `records` holding only the link's columns
    (and nik_verified). Every output row depends on its own row's links only, so they are
    made a range of ids at a time: made at once, at 10M rows, they took the process from
    its 4.6 GB of links to 10.7 GB (by ranges: 6.8 GB). A partitioned round makes the ranges
    in its tasks (partitioned.link_range)."""
    threshold = model["thresholds"]["resolve_probability"]
    ranges = (range_link_outputs(*ranged, threshold) for ranged in link_ranges(records, exact, fuzzy))
    _, anomalies_written, links_written = write_link_outputs(ctx, (records.clear(), exact.clear(), fuzzy.clear()), threshold, ranges)
    if links_written != exact.height + fuzzy.height:
        raise RuntimeError(f"link stage: {exact.height + fuzzy.height} links but {links_written} in the ranges of the records' ids")
    resolution = pl.read_parquet(link_output_paths(ctx)[0])
    # The file holds the records in the order of `records` and of the resolution (by
    # id_dtks): their columns are set beside it, not joined (at 10M rows 14.5 s and a
    # 2.2 GB peak against 28.7 s and 5.1 GB), and streamed to the file: a joined copy of
    # the records held whole set the stage's peak.
    if not resolution["id_dtks"].equals(records["id_dtks"]):
        raise RuntimeError("link stage: the records and their resolution are not in one order")
    whole = pl.concat([pl.scan_parquet(standardised), records.lazy().select("nik_verified"),
                       link.resolution_columns(resolution).drop("id_dtks").lazy()], how="horizontal")
    whole.sink_parquet(ctx.staging_dir / "records.parquet")
    save_model(with_weights(model), ctx.path("link_model.json"))
    return link_summary(exact.lazy(), fuzzy, int((~records["nik_verified"]).sum()), resolution.lazy(), blocking.to_dicts(),
                        anomalies_written)


def find_duplicates(ctx: RoundContext, scored: dedupe.ScoredBuckets | None = None) -> dict:
    """`scored`: the pairs scored bucket by bucket (pipeline/partitioned.py)."""
    model = ctx.duplicate_model()
    records_path = ctx.staging_dir / "records.parquet"
    cannot_link = decisions.cannot_link_pairs(pl.read_parquet(ctx.staging_dir / "decisions.parquet"))
    con = ctx.connect()
    try:
        found = dedupe.find_duplicates(con, str(records_path), model, cannot_link=cannot_link, scored=scored)
    finally:
        con.close()
    clusters = found["clusters"]
    records = pl.read_parquet(records_path, columns=["id_dtks", "nik", "nik_format_ok"])
    anomalies = pl.concat([dedupe.duplicate_anomalies(clusters, model), dedupe.shared_nik_anomalies(records, clusters)])
    clusters.select("id_dtks", "cluster_id", "cluster_size", "is_canonical", "canonical_id_dtks", "match_probability", "evidence",
                    "exclusion_evidence").write_parquet(
        ctx.path("duplicate_clusters.parquet")
    )
    found["pairs"].write_parquet(ctx.path("duplicate_pairs.parquet"))
    anomalies.write_parquet(ctx.staging_dir / "anomalies_dup.parquet")
    save_model(with_weights(found["model"]), ctx.path("model.json"))
    return {
        "clusters_gt1": int(clusters.filter(pl.col("cluster_size") > 1)["cluster_id"].n_unique()),
        "rows_in_clusters_gt1": int((clusters["cluster_size"] > 1).sum()),
        "pairs_scored_reported": found["pairs"].height,
        "model_fit": found["model"].get("fit"),
        "model_drift": drift_table(found["model"]),
        "blocking": found["blocking"].to_dicts(),
    }


def find_eligibility(ctx: RoundContext) -> dict:
    """NOT_ELIGIBLE (the --ineligible lists), DESIL_NOT_ELIGIBLE and the household codes
    (pipeline/findings/), after the civil-registry link and the duplicate clusters."""
    from pipeline.findings import desil, household, ineligible

    records_path = ctx.staging_dir / "records.parquet"
    records = pl.read_parquet(records_path, columns=["id_dtks", "no_kk", "hubungan_keluarga", "tanggal_lahir", "program", "desil",
                                                    "nik_consistent", "kab"])
    # Only the columns and links the findings read: at 10M rows the whole files held 4.3 GB
    # before any finding.
    resolution = pl.read_parquet(ctx.path("resolution.parquet"),
                                 columns=["id_dtks", "resolution", "dukcapil_person", "dukcapil_nik", "namesake"])
    links = pl.scan_parquet(ctx.path("dukcapil_links.parquet"))
    exact_identity = links.filter(pl.col("link_method") == "exact_nik").select(
        "id_dtks", "identity", "name_similarity", "dob_agreement").unique("id_dtks", keep="first").collect()
    away_whoever = links.filter((pl.col("link_method") == "fuzzy") & pl.col("ambiguous") & pl.col("contenders_away")).select(
        "id_dtks").collect()
    clusters = pl.read_parquet(ctx.path("duplicate_clusters.parquet"), columns=["id_dtks", "cluster_id"])
    parts = [desil.desil_anomalies(records)]
    # A death or move a reviewer dismissed (TOLAK) no longer counts for the household.
    link_findings = decisions.applied_decisions(pl.read_parquet(ctx.staging_dir / "anomalies_link.parquet"),
                                                pl.read_parquet(ctx.staging_dir / "decisions.parquet"))
    found_households, shown = household.household_findings(
        records, link_findings.filter(pl.col("action") != "warn"), resolution.join(exact_identity, on="id_dtks", how="left"),
        pl.scan_parquet(ctx.staging_dir / "dukcapil.parquet").select("source_line", "no_kk"),
        clusters, away_whoever,
    )
    parts.append(found_households)
    shown.write_parquet(ctx.staging_dir / "households.parquet")
    lists, warnings, matches, linked_by = [], [], pl.DataFrame(schema=ineligible.MATCH_SCHEMA), {}
    for index, source in enumerate(ctx.ineligible):
        result = ingest_extract(Path(source), "ineligible", ctx.staging_dir, ctx.as_of, name=f"ineligible_{index}")
        lists.append(result.to_dict())
        warnings += result.warnings
    if lists:
        entries = pl.concat([
            pl.read_parquet(item["staging_path"]).with_columns(file=pl.lit(Path(item["source"]).name)) for item in lists
        ])
        con = ctx.connect()
        try:
            matches, linked_by = ineligible.link_lists(con, entries, str(records_path), resolution,
                                                       clusters, ctx.link_model(),
                                                       as_of_year=int(ctx.as_of[:4]),
                                                       dukcapil_staging=str(ctx.staging_dir / "dukcapil.parquet"))
        finally:
            con.close()
        parts.append(ineligible.not_eligible_anomalies(matches))
    matches.write_parquet(ctx.staging_dir / "list_matches.parquet")
    anomalies = pl.concat(parts)
    anomalies.write_parquet(ctx.staging_dir / "anomalies_elig.parquet")
    by_type = matches.group_by("jenis", "action").len().sort("jenis", "action")
    return {
        "ineligible_lists": [{k: item[k] for k in ("source", "file_format", "rows_in", "rows_staged", "rows_quarantined")} for item in lists],
        "not_eligible_links": linked_by,
        "not_eligible_by_type": {jenis: {action: n for j, action, n in by_type.iter_rows() if j == jenis}
                                 for jenis in by_type["jenis"].unique().sort()},
        "anomalies": dict(anomalies.group_by("anomaly_code").len().sort("anomaly_code").iter_rows()),
        "households_flagged": shown["representative"].n_unique(),
        "warnings": warnings,
    }


ANOMALY_PARTS = ("nik", "link", "dup", "elig", "obj")


def reviewed_decisions(ctx: RoundContext) -> pl.DataFrame:
    """The reviewers' decisions read by this round, numbered (decisions.DECISION_INDEX)."""
    return pl.read_parquet(ctx.staging_dir / "decisions.parquet").with_row_index(decisions.DECISION_INDEX)


def held_rows(ctx: RoundContext) -> pl.Series:
    from pipeline.lookup import objections

    return objections.held_rows(pl.read_parquet(ctx.path("objections.parquet")))


def decide(ctx: RoundContext, ingest_results: dict[str, dict]) -> dict:
    dtks = pl.read_parquet(ctx.staging_dir / "dtks.parquet")
    # Only the fuzzy links and what a suggested NIK shows: the whole file held 9.9M exact links at 10M rows (5 s).
    fuzzy = (pl.scan_parquet(ctx.path("dukcapil_links.parquet")).filter(pl.col("link_method") == "fuzzy")
             .select(link.SUGGESTION_COLUMNS).collect())
    reviewed = reviewed_decisions(ctx)
    decided = decide_rows(
        dtks, pl.concat([pl.read_parquet(ctx.staging_dir / f"anomalies_{part}.parquet") for part in ANOMALY_PARTS]), fuzzy,
        held_rows(ctx), reviewed, pl.read_parquet(ctx.path("duplicate_clusters.parquet"), columns=["id_dtks", "cluster_id"]),
    )
    del dtks
    write_decided(ctx, ([decided.anomalies], decided.anomalies.schema),
                  {outcome: (collected_when_written(query), query.collect_schema()) for outcome, query in decided.tables.items()})
    return decide_summary(ctx, ingest_results, decided.counts, decided.repeated_ids, decided.repairs,
                          decisions.decision_status(reviewed, decided.flags), decided.anomalies.lazy())


def collected_when_written(query: pl.LazyFrame):
    """The query's table as the one piece of a file, collected only when the writer asks
    for it: the outcome tables are then held one at a time."""
    yield query.collect()


def write_decided(ctx: RoundContext, anomalies: tuple, tables: dict[str, tuple]) -> None:
    """anomalies.parquet and the row outcome tables, each (pieces, schema): the whole table
    in one process, the ranges' files in a partitioned round; the anomalies are encoded on
    the other core meanwhile. Then at most one verified row per duplicate cluster, checked
    on the written file (a cluster's rows may lie in two ranges)."""
    frames, schema = anomalies
    with ThreadPoolExecutor(max_workers=1) as beside:
        anomalies_written = beside.submit(write_row_groups, frames, ctx.path("anomalies.parquet"), schema)
        for outcome, (pieces, schema) in tables.items():
            write_row_groups(pieces, ctx.path(contract.outcome_rules()[outcome].file), schema)
        anomalies_written.result()
    check_paid_once(pl.scan_parquet(ctx.path(contract.outcome_rules()[OUTCOME.verified].file)).select("cluster_id"))


def decide_summary(ctx: RoundContext, ingest_results: dict[str, dict], counts: dict[str, int], repeated_ids: int, repairs: int,
                   decision_status: pl.DataFrame, anomalies: pl.LazyFrame) -> dict:
    """What decide writes beside the row outcomes (every decision's status, the quarantine)
    and says in summary.json; `counts` etc. over every row."""
    decision_status.write_parquet(ctx.path("decisions_applied.parquet"))
    quarantine = pl.concat(
        [pl.read_parquet(ctx.staging_dir / f"{kind}_quarantine.parquet") for kind in contract.EXTRACT_KINDS]
        + [pl.read_parquet(path) for path in sorted(ctx.staging_dir.glob("ineligible_*_quarantine.parquet"))]
    )
    quarantine.write_parquet(ctx.path("quarantine.parquet"))
    reconciliation = reconcile_counts(ingest_results["dtks"]["rows_in"], counts, repeated_ids,
                                      ingest_results["dtks"]["rows_quarantined"])
    by_code = (
        anomalies.group_by("anomaly_code", "action").len().collect().sort("anomaly_code", "action")
        .pivot(on="action", index="anomaly_code", values="len").fill_null(0)
    )
    codes = {row["anomaly_code"]: {k: v for k, v in row.items() if k != "anomaly_code"} for row in by_code.to_dicts()}
    return {
        "decisions": {
            "applied": int(decision_status["status"].str.starts_with("applied").sum()),
            "stale": int(decision_status["status"].str.starts_with("stale").sum()),
            "nik_repairs": repairs,
            "by_status": dict(decision_status.group_by("status").len().sort("status").iter_rows()),
        },
        "reconciliation": reconciliation,
        "anomalies_by_code": {code: codes.get(code, {}) for code in contract.ANOMALY_CODES},
        "dukcapil_quarantined": ingest_results["dukcapil"]["rows_quarantined"],
    }


def write_summary(ctx: RoundContext, summary: dict) -> dict:
    ctx.path("summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    return {"path": str(ctx.path("summary.json"))}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"verval": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_manifest(ctx: RoundContext) -> dict:
    # Every output below the round (lookup/, per-kabupaten workbooks...), not staging/.
    outputs = sorted(
        p for p in ctx.work_dir.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", outdir.MARKER)
        and p.relative_to(ctx.work_dir).parts[0] not in ("staging", "duckdb_tmp")
    )
    manifest = {
        "format": outdir.FORMAT,  # how readers recognise a verval round
        "verval_version": __version__,
        "started_at": ctx.started_at,
        "finished_at": dt.datetime.now(JAKARTA).isoformat(timespec="seconds"),
        "parameters": ctx.parameters(),
        "inputs": {kind: {"path": str(Path(p).resolve()), "sha256": sha256(Path(p)), "bytes": Path(p).stat().st_size}
                   for kind, p in (("dtks", ctx.dtks), ("dukcapil", ctx.dukcapil),
                                   *((f"ineligible_{i}", f) for i, f in enumerate(ctx.ineligible)))},
        "outputs": {p.relative_to(ctx.work_dir).as_posix(): {"sha256": sha256(p), "bytes": p.stat().st_size} for p in outputs},
        "packages": package_versions(),
    }
    ctx.path("manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {"outputs": len(outputs)}


def publish(ctx: RoundContext) -> dict:
    """Switch --out to the finished round (pipeline/outdir.py), then log the reviewers'
    decisions this round read: only a round that succeeded records them."""
    final, notes = outdir.publish(Path(ctx.out), ctx.work_dir, ctx.round_id)
    return {"output_dir": ctx.out, "round_dir": str(final), "notes": notes}


def discard(ctx: RoundContext) -> None:
    shutil.rmtree(ctx.work_dir, ignore_errors=True)


# --------------------------------------------------------------------------- the round


def call_directly(name: str, function, *args):
    return function(*args)


def guarded(name: str, function):
    """The stage, with any unexpected error replaced by one that carries no data: library
    messages (DuckDB, polars, calamine) may quote a row, and Prefect stores a failed task's
    exception in its database. VERVAL_DEBUG=1 lets the original through."""

    @functools.wraps(function)
    def stage(*args):
        try:
            return function(*args)
        except VervalError:
            raise
        except Exception as error:
            if os.environ.get("VERVAL_DEBUG"):
                raise
            raise StageError(
                f"stage {name} failed unexpectedly ({type(error).__name__}); no outputs were published. "
                "Run again with VERVAL_DEBUG=1 to see the details (they may show personal data) and report them."
            ) from None

    return stage


def run_round(ctx: RoundContext, clock: StageClock, run=call_directly, fan_out=None) -> dict:
    """Run every stage in order under the --out lock. `run(name, function, *args)` executes
    one stage: called directly here, wrapped as a Prefect task by the flow. In a
    partitioned round `fan_out(name, function, calls)` runs the partition tasks of the
    heavy stages (pipeline/partitioned.py): in order here by default, on a Dask cluster
    through the flow's task runner or a Dask client. On any failure
    the work folder is removed and the previous outputs stay as they were; decisions read
    by the round reach the decision log only once the round is published."""

    def step(name: str, function, *args):
        with clock.stage(name):
            return run(name, guarded(name, function), *args)

    def fan(name: str, function, calls: list[tuple]) -> list:
        with clock.stage(name):
            return (fan_out or partitioned.sequential)(name, guarded(name, function), calls)

    outdir.check_out(Path(ctx.out))  # refuse a wrong --out before creating anything beside it
    with outdir.OutLock(Path(ctx.out)):
        side = SideThread()
        try:
            prepared = step("prepare", prepare, ctx)
            gathered = step("decisions", gather_decisions, ctx)
            ingested = {kind: partitioned.ingest_extract(ctx, kind, step, fan) if ctx.partitioned and stages_in_chunks(ctx.extract_path(kind))
                        else step(f"ingest-{kind}", ingest, ctx, kind) for kind in contract.EXTRACT_KINDS}
            checked = step("check-extracts", check_extracts, ctx, ingested)
            validating = {kind: side.submit(expectations, ctx, kind) for kind in contract.EXTRACT_KINDS}
            # A DTKS extract staged in chunks had its NIKs checked there too.
            nik = (step("nik-checks-gather", partitioned.nik_checks_gather, ctx, ingested["dtks"].pop("nik_checks"))
                   if "nik_checks" in ingested["dtks"] else step("nik-checks", nik_checks, ctx))
            if ctx.partitioned:
                linked = partitioned.link_civil_registry(ctx, step, fan)
                duplicates = partitioned.find_duplicates(ctx, step, fan)
                partitioned.clean(ctx)
            else:
                linked = step("link-civil-registry", link_civil_registry, ctx)
                duplicates = step("find-duplicates", find_duplicates, ctx)
            eligibility = step("eligibility", find_eligibility, ctx)
            # The stage's time is the wait for the side thread; its own time is in the result.
            quality = {kind: step(f"expectations-{kind}", wait_for, validating[kind]) for kind in contract.EXTRACT_KINDS}
            objected = step("objections", gather_objections, ctx)
            decided = (partitioned.decide(ctx, step, fan, ingested) if ctx.partitioned
                       else step("decide", decide, ctx, ingested))
            decide_partitions = decided.pop("partitions", None)
            decided["decisions"].update({k: v for k, v in gathered.items() if k != "warnings"})
            decided["objections"] = objected
            summary = {
                "verval_version": __version__,
                "as_of": ctx.as_of,
                **decided,
                "warnings": prepared["notes"] + gathered["warnings"] + [w for kind in contract.EXTRACT_KINDS for w in ingested[kind]["warnings"]]
                + checked["warnings"] + eligibility["warnings"] + objected.pop("warnings"),
                "ingest": ingested,
                "data_quality": quality,
                "nik_checks": nik,
                "civil_registry_link": linked,
                "duplicates": duplicates,
                "eligibility": {k: v for k, v in eligibility.items() if k != "warnings"},
                **({"decide": {"partitions": decide_partitions}} if decide_partitions else {}),
                "stage_timings": clock.timings,
            }
            step("report", write_report, ctx, summary)
            step("indicators", write_indicators, ctx)
            if ctx.on_cluster:  # on the cluster's workers; else this machine's cores
                summary["workbooks"] = partitioned.write_workbooks(ctx, step, fan)
                summary["lookup"] = partitioned.write_lookup_index(ctx, step, fan)
            else:
                summary["workbooks"] = step("workbooks", write_workbooks, ctx)
                summary["lookup"] = step("lookup-index", write_lookup_index, ctx)
            step("manifest", write_manifest, ctx)
            published = step("publish", publish, ctx)
        except BaseException:
            side.close()  # before discard: a running validation still reads the work folder
            discard(ctx)
            raise
        side.close()
        summary["output_dir"] = published["output_dir"]
        summary["warnings"] += published["notes"]
        summary["decisions"]["appended_to_log"] = step("log-decisions", log_decisions, ctx, published["round_dir"])
    return summary


def write_report(ctx: RoundContext, summary: dict) -> dict:
    """summary.json, report.html (with the change since the round previously published at
    --out) and history.json."""
    from pipeline.report.html import build_history, render_report

    previous = Path(ctx.out).resolve()
    previous_dir = previous if (previous / "summary.json").exists() else None
    write_summary(ctx, summary)
    ctx.path("history.json").write_text(json.dumps(build_history(previous_dir, summary), indent=2, default=str) + "\n")
    ctx.path("report.html").write_text(render_report(ctx.work_dir, summary, previous_dir), encoding="utf-8")
    return {"report": str(ctx.path("report.html")), "previous_round": str(previous_dir) if previous_dir else None}


def write_workbooks(ctx: RoundContext) -> dict:
    """anomalies/: one reviewers' workbook per kabupaten/kota and the national summary,
    written in parallel processes (xlsxwriter writes cell by cell: the slowest output)."""
    from pipeline.report.xlsx import write_workbooks as write

    return workbook_summary(write(ctx.work_dir, ctx.path(contract.workbook_settings()["folder"]), full_nik=ctx.full_nik))


def workbook_summary(written: dict) -> dict:
    """What summary.json says of the workbooks xlsx.write_workbooks wrote."""
    return {"folder": contract.workbook_settings()["folder"], "national": written["national"], "files": len(written["files"]),
            "workers": written["workers"], "sheets": written["sheets"]}


def write_lookup_index(ctx: RoundContext) -> dict:
    """lookup/: the status index the status page and `verval lookup` answer from, published
    with the round so they switch to it atomically."""
    from pipeline.lookup.index import build_index

    built = build_index(ctx.work_dir, round_date=ctx.as_of, threads=ctx.threads)
    return {"entries": built["entries"], "people": built["people"]}


def write_indicators(ctx: RoundContext) -> dict:
    """indicators.parquet: this round's monev indicators per kabupaten/kota, after those of
    the earlier rounds published at --out (aggregates only)."""
    from pipeline.monev import INDICATORS_FILE, carried_history, round_indicators

    previous = Path(ctx.out).resolve()
    table = carried_history(previous if previous.is_dir() else None, round_indicators(ctx.work_dir))
    table.write_parquet(ctx.path(INDICATORS_FILE))
    return {"rounds": table["as_of"].n_unique(), "kabupaten": table["kode_kabupaten"].n_unique()}
