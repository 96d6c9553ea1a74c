"""The staging of Parquet extracts, the civil-registry link, the duplicate search and
decide as many partition tasks, for a round on a Dask cluster (`verval run --workers N`, `--cluster
ADDRESS`) or in bounded memory on one machine (`--partitions P`).

A Parquet extract is staged a chunk of rows per task (ingest.stage_parquet_chunk, the code
one process runs chunk by chunk); the chunks are written in order into the one staging
file, with the bytes of one process. A DTKS chunk's NIKs are checked in the same task.

Each heavy step is split by hashing a key into P buckets. A bucket holds whole blocks
(every record with a given key lands in the same bucket), so inside it the SAME code as
the single-process round (blocking.rule_pairs, compare.compare_pairs, link.link_exact)
finds exactly the pairs, block sizes and comparison levels the whole table would:

  exact link      DTKS and Dukcapil rows hashed by NIK; each bucket identifies the
                  civil-registry persons (records sharing a NIK) and links its DTKS rows;
  fuzzy link      per blocking rule, the DTKS rows the NIK did not resolve and the
                  Dukcapil rows of their blocks hashed by the rule's keys; each bucket
                  computes the comparison vectors of its candidate pairs;
  duplicates      per blocking rule, every record hashed by the rule's keys (a person
                  listed in two provinces still meets himself: no rule is split by region
                  alone), with the number of records sharing its name (term frequency).
                  Each bucket first lists its giant blocks per rule (blocking.skipped_blocks);
                  then, per rule, its candidate pairs less those an earlier rule finds
                  (blocking.drop_found_earlier: a pair keeps its first rule, as in one
                  process), their comparison vectors, and what the fit counts in them
                  (labelled level patterns, term-frequency sums). The driver fits m and u
                  on the summed counts (estimate.fit_from_patterns); each bucket scores
                  its pairs with that model and keeps those at or above half the link
                  probability; only those reach the driver, for the global clustering.

Decide is split by ranges of id_dtks instead (decide_split): every step of it is per row,
and its outputs are sorted by id, so each range decides alone with the code of one process
(decide.decide_rows) and the ranges' outputs, streamed one after the other, are the
whole round's files.

For the fuzzy link the comparison vectors (small integers per pair) are gathered; a pair
found by several rules keeps its first rule; scoring and the best link per row run once,
on all pairs (blocking.gather_vectors). Outputs are sorted, so they are identical for any
P and any number of workers.

On a cluster (not with --partitions alone) the reviewers' workbooks and the status index
are partition tasks too: batches of whole kabupaten/kota, each written by
xlsx.write_batch on a worker, then the national summary once; slices of whole duplicate
clusters, each keyed and hashed by lookup.index.slice_entries, then sorted into one index.

Partition data moves as Parquet files under the round's work folder (staging/partitions),
never through the scheduler: the workers must see that folder at the same path (a local
folder for a LocalCluster; a shared mount on a real cluster). Tasks are plain functions
of (context, partition); `fan_out(name, function, calls)` runs them: in order in this
process, on a Dask client, or as Prefect tasks on the flow's task runner.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from pipeline import ingest
from pipeline.checks.nik import NIK_CHECK_INPUT, check_counts, check_niks
from pipeline.matching import blocking, dedupe, estimate, link
from pipeline.matching.blocking import new_pairs_table, rule_pairs
from pipeline.matching.compare import compare_pairs, score_pairs
from pipeline.matching.sql import sql_path

# Records per bucket when --partitions is not given: a duplicate-search bucket of 250k
# records holds a few hundred MB in DuckDB, whatever the registry's size.
ROWS_PER_PARTITION = 250_000
# Rows per scatter task of a whole table (scatter_chunks). A task of 1M rows peaked at
# 1.7 GB for the duplicate records (13 rules) and 1.1 GB for Dukcapil rows standardised
# on the way: within a worker's 4 GB.
SCATTER_ROWS = 1_000_000
NIK_SPEC = {"name": "nik", "keys": ["nik"], "all_rows": True}
# Another civil-registry person of a row's name and birth date (link.records_fitting_another).
NAME_DOB_SPEC = {"name": "name_dob", "keys": ["name_std", "tanggal_lahir"]}
# The duplicate records' column with the number of records sharing their term-frequency value.
TF_RECORDS = "_tf_records"

FanOut = Callable[[str, Callable, list[tuple]], list]
Step = Callable[..., object]


def measured(function: Callable) -> Callable:
    """The task's result with the worker process (pid) and its peak resident memory so far,
    for the round's per-worker memory figures."""

    def task(*args):
        import os
        import resource

        result = function(*args)
        return {"result": result, "worker": os.getpid(), "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "polars_threads": pl.thread_pool_size()}

    task.__name__ = function.__name__
    return task


def worker_peaks(runs: list[list[dict]]) -> dict[str, int]:
    peaks: dict[str, int] = {}
    for run in runs:
        for task in run:
            peaks[str(task["worker"])] = max(peaks.get(str(task["worker"]), 0), task["peak_mib"])
    return dict(sorted(peaks.items()))


def sequential(name: str, function: Callable, calls: list[tuple]) -> list:
    return [function(*args) for args in calls]


def dask_fan_out(client) -> FanOut:
    """Each call a task on the Dask client's cluster; results in call order."""

    def fan_out(name: str, function: Callable, calls: list[tuple]) -> list:
        futures = [client.submit(function, *args, key=f"{name}-{i}", pure=False) for i, args in enumerate(calls)]
        return client.gather(futures)

    return fan_out


def scheduler_address(cluster: str | None) -> str | None:
    """--cluster ADDRESS, or --cluster alone: the DASK_SCHEDULER_ADDRESS environment variable."""
    import os

    from pipeline.errors import UsageError

    if cluster != "env":
        return cluster
    address = os.environ.get("DASK_SCHEDULER_ADDRESS")
    if not address:
        raise UsageError("--cluster without an address needs DASK_SCHEDULER_ADDRESS (e.g. tcp://host:8786); "
                         "give the scheduler's address or set the variable.")
    return address


def require_dask() -> None:
    from pipeline.errors import UsageError

    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError("--workers and --cluster need Dask: install the cluster extra (pip install '.[cluster]'), "
                         "or run without them.") from None


# What keeps a worker process on its one core: polars sizes its thread pool once, at
# import, from this variable (by default one thread per core of the host, so two workers
# on two cores each ran polars on both and a second worker hardly helped: the Dukcapil
# standardisation in link-scatter-nik took 31 s with one worker and 30 s with two).
WORKER_ENVIRONMENT = {"POLARS_MAX_THREADS": "1"}


def local_cluster_kwargs(workers: int) -> dict:
    """One thread per worker process: DuckDB and polars in each task use one thread as
    well, so N workers use N cores and each worker's memory is that of one partition task.
    The environment is set before the worker process starts (Dask's `env` is applied
    after, once polars may already be imported)."""
    import dask

    dask.config.set({"distributed.nanny.pre-spawn-environ": {**dask.config.get("distributed.nanny.pre-spawn-environ", {}),
                                                             **WORKER_ENVIRONMENT}})
    return {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}  # any free port


class DaskCluster:
    """A Dask client for a run without Prefect: a LocalCluster of `workers` processes, or
    the scheduler at `address`."""

    def __init__(self, workers: int, address: str | None):
        require_dask()
        self.workers, self.address = workers, address

    def __enter__(self) -> FanOut:
        from distributed import Client, LocalCluster

        self.cluster = None if self.address else LocalCluster(**local_cluster_kwargs(self.workers))
        self.client = Client(self.address or self.cluster)
        return dask_fan_out(self.client)

    def __exit__(self, *exc) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def partition_count(ctx, rows: int) -> int:
    if ctx.partitions > 0:
        return ctx.partitions
    return max(2 * max(ctx.workers, 1), math.ceil(rows / ROWS_PER_PARTITION))


def scatter_chunks(ctx, rows: int) -> list[tuple[int, int]]:
    """The row chunks of a scatter of a whole table: each chunk writes a file per key (a
    blocking rule, the NIK) and bucket, so the files grow as chunks x buckets (at 10M rows,
    40 chunks of a bucket's size wrote 20,800 files for the duplicate search's 13 rules);
    chunks of SCATTER_ROWS write a quarter of them. At least two per worker, to keep a
    cluster busy."""
    return row_chunks(rows, max(2 * ctx.workers, math.ceil(rows / SCATTER_ROWS), 1))


def row_chunks(rows: int, count: int) -> list[tuple[int, int]]:
    size = max(math.ceil(rows / max(count, 1)), 1)
    return [(offset, size) for offset in range(0, max(rows, 1), size)]


def _parts(ctx) -> Path:
    return ctx.staging_dir / "partitions"


def _bucket_sql(keys: list[str], partitions: int) -> str:
    return f"hash({', '.join(f'({key})' for key in keys)}) % {partitions}"


def _bucket_files(folder: Path, bucket: int) -> list[str]:
    return sorted(str(p) for p in (folder / f"b{bucket:05d}").glob("*.parquet"))


def _task_connection(ctx, name: str):
    # On a cluster each task gets worker_threads (one core per worker); in one process
    # the tasks run one after another and may use every thread.
    threads = ctx.worker_threads if ctx.on_cluster else ctx.threads
    return ctx.connect(threads=threads, temp=name)


def scatter(ctx, source: str, offset: int, length: int | None, specs: list[dict], folder: str, chunk: int,
            prepare: str | None = None, only_in: str | None = None, columns: list[str] | None = None) -> int:
    """Rows [offset, offset + length) of the Parquet file `source`, hashed into buckets
    once per spec (a blocking rule: name, keys, where) and written as
    folder/<spec>/b<bucket>/c<chunk>.parquet. `prepare="dukcapil"` standardises Dukcapil
    staging rows first. `only_in`: a folder of <spec>.parquet files with the key tuples
    (k0, k1 ...) a rule needs; rows whose keys are not among them are dropped (linking
    needs only the Dukcapil blocks some DTKS row falls into). Chunk 0 also writes an
    empty file into every bucket, so each bucket has a schema. Returns bytes written."""
    frame = pl.scan_parquet(source)
    frame = frame.select(columns) if columns else frame
    frame = frame.slice(offset, length) if length is not None else frame
    if prepare == "dukcapil":
        frame = link.prepare_dukcapil(frame)
    table = frame.collect()
    written = 0
    con = _task_connection(ctx, f"scatter-{Path(folder).name}-{chunk}")
    try:
        con.register("_chunk", table.with_row_index("_row"))
        for spec in specs:
            keys = spec["keys"]
            filters = ["TRUE"] if spec.get("all_rows") else [f"({spec.get('where', 'TRUE')})"] + [f"({key}) IS NOT NULL" for key in keys]
            if only_in:
                aliases = ", ".join(f"k{i}" for i in range(len(keys)))
                filters.append(
                    f"({', '.join(f'({key})' for key in keys)}) IN (SELECT ({aliases}) FROM read_parquet({sql_path(Path(only_in) / (spec['name'] + '.parquet'))}))"
                )
            # DuckDB returns only each kept row's bucket; polars splits the rows in chunk
            # order. Handing every column through DuckDB and back took a quarter of the task.
            kept = con.sql(
                f"SELECT _row, ({_bucket_sql(keys, ctx.partitions)})::INTEGER AS _bucket FROM _chunk WHERE {' AND '.join(filters)}"
            ).pl()
            bucket_of_row = pl.repeat(None, table.height, dtype=pl.Int32, eager=True).alias("_bucket").scatter(kept["_row"], kept["_bucket"])
            groups = {key[0]: group for key, group in table.with_columns(bucket_of_row).partition_by(
                "_bucket", as_dict=True, include_key=False).items() if key[0] is not None}
            written += _write_buckets(table, groups, Path(folder) / spec["name"], ctx.partitions, chunk)
    finally:
        con.close()
    return written


def _write_buckets(table: pl.DataFrame, groups: dict[int, pl.DataFrame], target: Path, buckets: int, chunk: int) -> int:
    """A scatter chunk's rows of each bucket (`groups`, of `table`) as
    target/b<bucket>/c<chunk>.parquet; chunk 0 also writes an empty file into every other
    bucket, so each bucket has a schema. Returns bytes written."""
    written = 0
    for bucket in range(buckets):
        group = groups.get(bucket)
        if group is None and chunk != 0:
            continue
        path = target / f"b{bucket:05d}" / f"c{chunk:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        (group if group is not None else table.clear()).write_parquet(path)
        written += path.stat().st_size
    return written


def _spec_names(rules: list[dict]) -> list[dict]:
    return [{**rule, "name": f"r{index:02d}"} for index, rule in enumerate(rules)]


# --------------------------------------------------------------------------- ingest


def _ingest_folder(ctx, kind: str) -> Path:
    return _parts(ctx) / f"ingest-{kind}"


def _ingest_plan(ctx, kind: str, facts: dict):
    repeats = _ingest_folder(ctx, kind) / "repeats.parquet"
    return ingest.ParquetPlan(path=ctx.extract_path(kind), kind=kind, today=ctx.as_of, row_count=facts["row_count"],
                              mapping=facts["mapping"], repeats=pl.read_parquet(repeats) if repeats.exists() else None)


def ingest_split(ctx, kind: str) -> dict:
    """An extract's staging plan. Parquet: its row count, column mapping and (DTKS) the
    repeated ids' reasons, which need the whole id column, and its chunks. CSV: where its
    chunks are cut (ingest.plan_csv_extract); a CSV file read whole (UTF-16, classic Mac
    line endings) is staged here, in one process."""
    path = ctx.extract_path(kind)
    folder = _ingest_folder(ctx, kind)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if not ingest.is_parquet(path):
        plan = ingest.plan_csv_extract(path, kind, ctx.as_of)
        if plan is None:
            return {"staged": ingest.ingest_extract(path, kind, ctx.staging_dir, ctx.as_of).to_dict()}
        return {"csv": plan}
    plan = ingest.plan_parquet(path, kind, ctx.as_of)
    if plan.repeats is not None:
        plan.repeats.write_parquet(folder / "repeats.parquet")
    return {"row_count": plan.row_count, "mapping": plan.mapping, "chunks": ingest.parquet_chunks(plan.row_count)}


def ingest_chunk(ctx, kind: str, facts: dict, index: int, offset: int, length: int) -> dict:
    """One chunk of a Parquet extract normalised (ingest.stage_parquet_chunk): its staged
    rows and quarantined rows as Arrow IPC files, which keep every type and chunk as is."""
    import pyarrow as pa

    table, bad, dropped, rows = ingest.stage_parquet_chunk(_ingest_plan(ctx, kind, facts), offset, length)
    folder = _ingest_folder(ctx, kind)
    # Compressed for the storage every worker shares: a million staged DTKS rows are 230 MiB
    # of Arrow as they are, 49 MiB with zstd (0.6 s to write, 0.4 s to read).
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.OSFile(str(folder / f"c{index:05d}.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    bad.write_ipc(folder / f"q{index:05d}.arrow", compression="zstd")
    result = {"dropped": dropped, "rows": rows, "bytes": (folder / f"c{index:05d}.arrow").stat().st_size}
    if kind == "dtks":
        result["nik_checks"] = nik_checks_chunk(ctx, index, table)
    return result


def _nik_folder(ctx) -> Path:
    return _parts(ctx) / "nik-checks"


def nik_checks_chunk(ctx, index: int, staged) -> dict:
    """The NIK checks of one staged DTKS chunk (Arrow), while it is in hand: each row is
    judged on its own, so the chunks' facts and anomalies are those of the whole table."""
    facts, anomalies = check_niks(pl.from_arrow(staged.select(NIK_CHECK_INPUT)))
    folder = _nik_folder(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    facts.write_ipc(folder / f"f{index:05d}.arrow", compression="zstd")
    anomalies.write_ipc(folder / f"a{index:05d}.arrow", compression="zstd")
    return check_counts(facts, anomalies)


def nik_checks_slice(ctx, index: int, offset: int, length: int) -> dict:
    """The NIK checks of staged DTKS rows [offset, offset + length): a CSV extract's rows
    are final only once its gather has settled the repeated ids over every chunk."""
    rows = pl.scan_parquet(ctx.staging_dir / "dtks.parquet").select(NIK_CHECK_INPUT).slice(offset, length).collect()
    return nik_checks_chunk(ctx, index, rows.to_arrow())


def nik_checks_gather(ctx, chunks: list[dict]) -> dict:
    """The chunks' NIK facts and anomalies streamed, chunk after chunk, into the stage's
    two staging files. One process lists the anomalies code by code; nothing downstream
    depends on that (the link joins the facts by id_dtks, decide sorts the anomalies)."""
    folder = _nik_folder(ctx)
    for prefix, name in (("f", "nik_checks"), ("a", "anomalies_nik")):
        pieces = [pl.scan_ipc(folder / f"{prefix}{index:05d}.arrow") for index in range(len(chunks))]
        pl.concat(pieces).sink_parquet(ctx.staging_dir / f"{name}.parquet")
    shutil.rmtree(folder)
    return {key: sum(chunk[key] for chunk in chunks) for key in chunks[0]}


def ingest_gather(ctx, kind: str, facts: dict, results: list[dict]) -> dict:
    """The chunks written in order as the one staging file (the bytes one process writes),
    then the quarantine and the reconciliation with the footer's count."""
    import pyarrow as pa

    folder = _ingest_folder(ctx, kind)

    def chunks():
        for index, result in enumerate(results):
            with pa.memory_map(str(folder / f"c{index:05d}.arrow")) as source:
                table = pa.ipc.open_file(source).read_all()
            yield table, pl.read_ipc(folder / f"q{index:05d}.arrow"), result["dropped"], result["rows"]

    staged = ingest.write_parquet_staging(_ingest_plan(ctx, kind, facts), chunks(), ctx.staging_dir, kind).to_dict()
    shutil.rmtree(folder)
    return staged


def ingest_csv_chunk(ctx, kind: str, plan, index: int) -> dict:
    """One chunk of a CSV extract read and normalised (ingest.stage_csv_chunk), as Arrow
    IPC files on the shared storage."""
    return ingest.stage_csv_chunk(plan, index, _ingest_folder(ctx, kind))


def ingest_csv_gather(ctx, kind: str, plan, results: list[dict]) -> dict:
    """The chunks in order into the one staging file, DTKS's repeated ids settled over
    every chunk first; then the quarantine and the reconciliation with the lines counted."""
    folder = _ingest_folder(ctx, kind)
    staged = ingest.write_csv_staging(plan, ingest.csv_chunks_settled(plan, folder, results), ctx.staging_dir, kind).to_dict()
    shutil.rmtree(folder)
    return staged


def ingest_extract(ctx, kind: str, step: Step, fan_out: FanOut) -> dict:
    """An extract staged as partition tasks, a chunk each (wiring only). A DTKS extract in
    Parquet has its NIKs checked in the same tasks; in CSV its rows are settled only in
    the gather (a repeated id may quarantine a row), so the checks are tasks after it, a
    slice of the staged rows each: the driver never holds the whole column."""
    facts = step(f"ingest-{kind}-split", ingest_split, ctx, kind)
    if "staged" in facts:
        return facts["staged"]
    if "csv" in facts:
        runs = fan_out(f"ingest-{kind}-chunks", measured(ingest_csv_chunk),
                       [(ctx, kind, facts["csv"], index) for index in range(len(facts["csv"].csv.chunks))])
        results = [task["result"] for task in runs]
        staged = step(f"ingest-{kind}-gather", ingest_csv_gather, ctx, kind, facts["csv"], results)
        if kind == "dtks" and staged["rows_staged"]:
            checked = fan_out("nik-checks-chunks", measured(nik_checks_slice),
                              [(ctx, index, offset, length) for index, (offset, length) in enumerate(ingest.parquet_chunks(staged["rows_staged"]))])
            staged["nik_checks"] = [task["result"] for task in checked]
    else:
        runs = fan_out(f"ingest-{kind}-chunks", measured(ingest_chunk),
                       [(ctx, kind, facts, index, offset, length) for index, (offset, length) in enumerate(facts["chunks"])])
        results = [task["result"] for task in runs]
        staged = step(f"ingest-{kind}-gather", ingest_gather, ctx, kind, facts, results)
        if kind == "dtks":
            staged["nik_checks"] = [result["nik_checks"] for result in results]
    staged["partitions"] = _partition_summary(len(runs), [runs], tasks=len(runs),
                                              bytes_shuffled=sum(task["result"]["bytes"] for task in runs))
    return staged


# --------------------------------------------------------------------------- link


def link_split(ctx) -> dict:
    """The standardised DTKS records (as in one process) and the partition count."""
    from pipeline.round import link_records

    shutil.rmtree(_parts(ctx), ignore_errors=True)
    _parts(ctx).mkdir(parents=True)
    link_records(ctx, ctx.link_model()).sink_parquet(_parts(ctx) / "link_records.parquet")
    rows = pl.scan_parquet(_parts(ctx) / "link_records.parquet").select(pl.len()).collect().item()
    dukcapil_rows = pl.scan_parquet(ctx.staging_dir / "dukcapil.parquet").select(pl.len()).collect().item()
    return {"rows": rows, "dukcapil_rows": dukcapil_rows, "partitions": partition_count(ctx, rows)}


def exact_bucket(ctx, bucket: int) -> dict:
    """Civil-registry persons and exact-NIK links of one NIK bucket."""
    parts = _parts(ctx)
    con = _task_connection(ctx, f"exact-{bucket}")
    try:
        con.execute("CREATE TEMP TABLE dukcapil_records AS SELECT * FROM read_parquet($paths)",
                    {"paths": _bucket_files(parts / "dukcapil_nik" / "nik", bucket)})
        link.identify_persons(con, "dukcapil_records")
        (parts / "dukcapil_records").mkdir(exist_ok=True)
        con.execute(f"COPY dukcapil_records TO {sql_path(parts / 'dukcapil_records' / f'b{bucket:05d}.parquet')} (FORMAT parquet)")
        exact = link.link_exact(con, pl.read_parquet(_bucket_files(parts / "dtks_nik" / "nik", bucket)))
        (parts / "holders").mkdir(exist_ok=True)
        con.execute(f"COPY {link.HOLDER_FACTS_TABLE} TO {sql_path(parts / 'holders' / f'b{bucket:05d}.parquet')} (FORMAT parquet)")
    finally:
        con.close()
    (parts / "exact").mkdir(exist_ok=True)
    exact.write_parquet(parts / "exact" / f"b{bucket:05d}.parquet")
    return {"links": exact.height}


def namesake_bucket(ctx, bucket: int) -> dict:
    """Rows of one (name, birth date) bucket whose name and birth date another
    civil-registry record carries (link.records_fitting_another)."""
    parts = _parts(ctx)
    con = _task_connection(ctx, f"namesakes-{bucket}")
    try:
        for table, folder in (("facts", "names_rows"), ("others", "names_dukcapil")):
            con.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM read_parquet($paths)",
                        {"paths": _bucket_files(parts / folder / NAME_DOB_SPEC["name"], bucket)})
        fits = link.records_fitting_another(con, "facts", "others")
    finally:
        con.close()
    (parts / "namesakes").mkdir(exist_ok=True)
    fits.write_parquet(parts / "namesakes" / f"b{bucket:05d}.parquet")
    return {"rows": fits.height}


# Rows per row group of a bucket's marked exact links, sorted by id: a range task reads
# the row groups of every bucket whose ids fall in its range, by their statistics.
MARKED_ROW_GROUP = 16_384


def _marked_files(ctx) -> list[str]:
    return sorted(str(p) for p in (_parts(ctx) / "exact_marked").glob("*.parquet"))


def namesakes_gather(ctx) -> dict:
    """The namesake buckets' rows in one file, which every link-mark task reads (a file per
    bucket would be read by every task: P x P small reads)."""
    parts = _parts(ctx)
    pl.scan_parquet(sorted((parts / "namesakes").glob("*.parquet"))).sink_parquet(parts / "namesakes.parquet")
    return {"rows": pl.scan_parquet(parts / "namesakes.parquet").select(pl.len()).collect().item()}


def mark_exact_bucket(ctx, bucket: int) -> dict:
    """One NIK bucket's exact links marked with the rows another civil-registry record
    fits (link.mark_another_fits; those rows are few: every bucket reads them all), sorted
    by id_dtks, so that a range of ids is a few row groups of each bucket's file."""
    parts = _parts(ctx)
    fits = pl.read_parquet(parts / "namesakes.parquet")
    exact = link.mark_another_fits(pl.read_parquet(parts / "exact" / f"b{bucket:05d}.parquet"), fits).sort("id_dtks")
    (parts / "exact_marked").mkdir(exist_ok=True)
    exact.write_parquet(parts / "exact_marked" / f"b{bucket:05d}.parquet", row_group_size=MARKED_ROW_GROUP)
    return {"links": exact.height}


def link_query(ctx) -> dict:
    """After the exact link: the rows it did not verify (streamed: the driver holds the
    ids of the links, not the records), and per fuzzy rule the key tuples they need from
    Dukcapil."""
    parts = _parts(ctx)
    verified = dedupe.mark_verified(pl.scan_parquet(parts / "link_records.parquet"), pl.scan_parquet(_marked_files(ctx)))
    verified.filter(~pl.col("nik_verified")).select(link.FUZZY_QUERY_COLUMNS).sink_parquet(parts / "query.parquet")
    model = ctx.link_model()
    con = ctx.connect()
    try:
        con.execute(f"CREATE TEMP VIEW _query AS SELECT * FROM read_parquet({sql_path(parts / 'query.parquet')})")
        (parts / "query_keys").mkdir(exist_ok=True)
        for spec in _spec_names(model["blocking_rules"]):
            keys = ", ".join(f"({key}) AS k{i}" for i, key in enumerate(spec["keys"]))
            not_null = " AND ".join(f"({key}) IS NOT NULL" for key in spec["keys"])
            con.execute(
                f"""COPY (SELECT DISTINCT {keys} FROM _query WHERE ({spec.get('where', 'TRUE')}) AND {not_null})
                    TO {sql_path(parts / 'query_keys' / (spec['name'] + '.parquet'))} (FORMAT parquet)"""
            )
    finally:
        con.close()
    return {"fuzzy_queries": pl.scan_parquet(parts / "query.parquet").select(pl.len()).collect().item()}


def fuzzy_bucket(ctx, bucket: int) -> list[dict]:
    """Comparison vectors of every fuzzy-link rule inside bucket `bucket` (one rule's
    bucket in memory at a time; one task per bucket keeps the scheduler's load at P tasks)."""
    return _rule_vectors(ctx, ctx.link_model(), bucket, "fuzzy", {"link_left": "fuzzy_dtks", "link_right": "fuzzy_dukcapil"},
                         "fuzzy_vectors")


def _rule_vectors(ctx, model: dict, bucket: int, task: str, tables: dict[str, str], out: str) -> list[dict]:
    """For each blocking rule of `model`: load its bucket `bucket` of each table (name ->
    partition folder; two tables link left to right, one is deduplicated), write the
    comparison vectors to <out>/<rule>-b<bucket>.parquet and return the rule's statistics."""
    parts = _parts(ctx)
    names = list(tables)
    stats = []
    # One connection for every rule, each rule's tables replacing the last's (a connection
    # with its macros costs about 45 ms; the duplicate buckets do the same).
    con = _task_connection(ctx, f"{task}-{bucket}")
    try:
        for index in range(len(model["blocking_rules"])):
            name = f"r{index:02d}"
            for table, folder in tables.items():
                con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_parquet($paths)",
                            {"paths": _bucket_files(parts / folder / name, bucket)})
            stats.append(_bucket_vectors(con, model, index, names[0], names[1] if len(names) > 1 else None,
                                         parts / out / f"{name}-b{bucket:05d}.parquet"))
    finally:
        con.close()
    return stats


def _bucket_vectors(con, model: dict, index: int, left: str, right: str | None, path: Path) -> dict:
    new_pairs_table(con)
    stats = rule_pairs(con, index, model["blocking_rules"][index], left, right)
    compare_pairs(con, model, left, right, pairs="_pairs")
    path.parent.mkdir(exist_ok=True)
    con.execute(f"COPY comparison_vectors TO {sql_path(path)} (FORMAT parquet)")
    return stats


def link_gather(ctx, bucket_stats: list[dict], rows: int) -> dict:
    """Gathered vectors -> the best fuzzy link of each queried row (fuzzy.parquet), and the
    ranges of the records in which the link's outputs are made (round.link_output_ranges)."""
    from pipeline.round import link_output_ranges

    parts = _parts(ctx)
    con = ctx.connect()
    try:
        con.execute(f"CREATE TEMP VIEW dukcapil_records AS SELECT * FROM read_parquet({sql_path(parts / 'dukcapil_records' / '*.parquet')})")
        vectors = sorted(str(p) for p in (parts / "fuzzy_vectors").glob("*.parquet"))
        fuzzy, blocking = link.link_fuzzy(con, pl.read_parquet(parts / "query.parquet"), ctx.link_model(), vectors=(vectors, bucket_stats))
    finally:
        con.close()
    fuzzy.write_parquet(parts / "fuzzy.parquet")
    return {"blocking": blocking.to_dicts(), "ranges": link_output_ranges(rows)}


def _link_range_path(ctx, name: str, index: int) -> Path:
    return _parts(ctx) / "link_outputs" / name / f"r{index:05d}.parquet"


def link_range(ctx, index: int, offset: int, length: int) -> dict:
    """The link stage's outputs of one range of the (sorted) records: the range's rows of
    the records file, and its exact and fuzzy links read by id from theirs."""
    from pipeline.round import LINK_OUTPUT_FILES, range_link_outputs

    parts = _parts(ctx)
    records = pl.scan_parquet(parts / "link_records.parquet").slice(offset, length).collect()
    if not records["id_dtks"].is_sorted():
        raise RuntimeError("link stage: the records are not sorted by id_dtks")
    if records.height:
        first, last = records["id_dtks"][0], records["id_dtks"][-1]
        within = pl.col("id_dtks").is_between(pl.lit(first), pl.lit(last), closed="both")
    else:
        first = last = None
        within = pl.lit(False)
    exact = pl.scan_parquet(_marked_files(ctx)).filter(within).collect().sort("id_dtks")
    fuzzy = pl.scan_parquet(parts / "fuzzy.parquet").filter(within).collect()
    records = dedupe.mark_verified(records, exact)
    outputs = range_link_outputs(records, exact, fuzzy, ctx.link_model()["thresholds"]["resolve_probability"])
    for name, frame in zip(LINK_OUTPUT_FILES, outputs):
        _link_range_path(ctx, name, index).parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(_link_range_path(ctx, name, index))
    _link_range_path(ctx, "records", index).parent.mkdir(parents=True, exist_ok=True)
    link.with_resolution(records.lazy(), outputs[0]).sink_parquet(_link_range_path(ctx, "records", index))
    return {"index": index, "first": first, "last": last, "links": exact.height + fuzzy.height}


def link_finish(ctx, gathered: dict, ranges: list[dict], fuzzy_queries: int) -> dict:
    """The ranges' outputs streamed, in id order, into the stage's files (the bytes of one
    process), the records with their resolution, and what the round reports; the driver
    holds a range at a time, never the links."""
    from pipeline.matching.model import save_model, with_weights
    from pipeline.round import LINK_OUTPUT_FILES, link_output_paths, link_summary, write_link_outputs

    parts = _parts(ctx)
    ranges = sorted(ranges, key=lambda r: r["index"])
    bounds = [(r["first"], r["last"]) for r in ranges if r["first"] is not None]
    if any(last >= first for (_, last), (first, _) in zip(bounds, bounds[1:])):
        raise RuntimeError("link stage: the records are not sorted by id_dtks")
    exact, fuzzy = pl.scan_parquet(_marked_files(ctx)), pl.read_parquet(parts / "fuzzy.parquet")
    links = exact.select(pl.len()).collect().item() + fuzzy.height
    if sum(r["links"] for r in ranges) != links:
        raise RuntimeError(f"link stage: {links} links but {sum(r['links'] for r in ranges)} in the ranges of the records' ids")
    model = ctx.link_model()
    empty_exact = pl.DataFrame(schema=exact.collect_schema())
    empty_records = dedupe.mark_verified(pl.DataFrame(schema=pl.scan_parquet(parts / "link_records.parquet").collect_schema()), empty_exact)
    empty = (empty_records, empty_exact, fuzzy.clear())
    pieces = (tuple(pl.read_parquet(_link_range_path(ctx, name, r["index"])) for name in LINK_OUTPUT_FILES) for r in ranges)
    _, anomalies_written, _ = write_link_outputs(ctx, empty, model["thresholds"]["resolve_probability"], pieces)
    pl.scan_parquet([_link_range_path(ctx, "records", r["index"]) for r in ranges]).sink_parquet(ctx.staging_dir / "records.parquet")
    save_model(with_weights(model), ctx.path("link_model.json"))
    shutil.rmtree(parts / "link_outputs")
    return link_summary(exact, fuzzy, fuzzy_queries, pl.scan_parquet(link_output_paths(ctx)[0]), gathered["blocking"],
                        anomalies_written)


def link_civil_registry(ctx, step: Step, fan_out: FanOut) -> dict:
    """The link stage as partition tasks (wiring only)."""
    plan = step("link-split", link_split, ctx)
    ctx.partitions = plan["partitions"]
    parts = _parts(ctx)
    nik_scatter = fan_out("link-scatter-nik", measured(scatter), [
        *[(ctx, str(parts / "link_records.parquet"), offset, size, [{**NIK_SPEC, "where": "nik_format_ok"}],
           str(parts / "dtks_nik"), i) for i, (offset, size) in enumerate(scatter_chunks(ctx, plan["rows"]))],
        *[(ctx, str(ctx.staging_dir / "dukcapil.parquet"), offset, size, [NIK_SPEC], str(parts / "dukcapil_nik"), i, "dukcapil")
          for i, (offset, size) in enumerate(scatter_chunks(ctx, plan["dukcapil_rows"]))],
    ])
    runs = [nik_scatter]
    runs.append(fan_out("link-exact", measured(exact_bucket), [(ctx, b) for b in range(ctx.partitions)]))
    names_scatter = fan_out("link-scatter-names", measured(scatter), [
        *[(ctx, str(parts / "holders" / f"b{b:05d}.parquet"), 0, None, [NAME_DOB_SPEC], str(parts / "names_rows"), b)
          for b in range(ctx.partitions)],
        *[(ctx, str(parts / "dukcapil_records" / f"b{b:05d}.parquet"), 0, None, [NAME_DOB_SPEC], str(parts / "names_dukcapil"), b,
           None, None, ["nik", "name_std", "tanggal_lahir", "no_kk"]) for b in range(ctx.partitions)],
    ])
    runs.append(names_scatter)
    runs.append(fan_out("link-namesakes", measured(namesake_bucket), [(ctx, b) for b in range(ctx.partitions)]))
    step("link-namesakes-gather", namesakes_gather, ctx)
    runs.append(fan_out("link-mark", measured(mark_exact_bucket), [(ctx, b) for b in range(ctx.partitions)]))
    queried = step("link-query", link_query, ctx)
    specs = _spec_names(ctx.link_model()["blocking_rules"])
    fuzzy_scatter = fan_out("link-scatter-fuzzy", measured(scatter), [
        (ctx, str(parts / "query.parquet"), 0, None, specs, str(parts / "fuzzy_dtks"), 0),
        *[(ctx, str(parts / "dukcapil_records" / f"b{b:05d}.parquet"), 0, None, specs, str(parts / "fuzzy_dukcapil"), b, None,
           str(parts / "query_keys")) for b in range(ctx.partitions)],
    ])
    runs.append(fuzzy_scatter)
    runs.append(fan_out("link-fuzzy", measured(fuzzy_bucket), [(ctx, b) for b in range(ctx.partitions)]))
    stats = [row for task in runs[-1] for row in task["result"]]
    gathered = step("link-gather", link_gather, ctx, stats, plan["rows"])
    runs.append(fan_out("link-ranges", measured(link_range), [(ctx, i, offset, length)
                                                               for i, (offset, length) in enumerate(gathered["ranges"])]))
    linked = step("link-finish", link_finish, ctx, gathered, [task["result"] for task in runs[-1]], queried["fuzzy_queries"])
    linked["partitions"] = _shuffle_summary(ctx, runs, [nik_scatter, names_scatter, fuzzy_scatter], fuzzy_queries=queried["fuzzy_queries"],
                                            output_ranges=len(gathered["ranges"]))
    return linked


def _partition_summary(count: int, runs: list[list[dict]], **extra) -> dict:
    """What summary.json says of a partitioned stage: its partitions, the peak memory of
    each worker process and the polars threads its tasks had (`runs`: measured tasks)."""
    return {"count": count, **extra, "worker_peak_mib": worker_peaks(runs),
            "polars_threads_per_task": sorted({task["polars_threads"] for run in runs for task in run})}


def _shuffle_summary(ctx, runs: list[list[dict]], scatters: list[list[dict]], **extra) -> dict:
    """_partition_summary of a stage whose scatters (tasks returning the bytes they wrote)
    move its rows into ctx.partitions buckets."""
    return _partition_summary(ctx.partitions, runs, tasks=sum(len(run) for run in runs),
                              bytes_shuffled=sum(task["result"] for run in scatters for task in run), **extra)


# --------------------------------------------------------------------------- duplicates


def dedupe_split(ctx) -> dict:
    """The records of the duplicate search, each with the number of records sharing its
    term-frequency value (a name), which a bucket cannot count."""
    shutil.rmtree(_parts(ctx), ignore_errors=True)
    _parts(ctx).mkdir(parents=True)
    source = ctx.staging_dir / "records.parquet"
    records = pl.scan_parquet(source).select(dedupe.RECORD_COLUMNS)
    tf = ctx.duplicate_model().get("term_frequency")
    if tf:
        # Counted per value, then joined back as the records stream to the file: a window
        # over every record held 3.5 GB at 10M rows, this 0.9 GB (same frame).
        counts = pl.scan_parquet(source).group_by(tf["column"]).agg(pl.len().cast(pl.Int64).alias(TF_RECORDS)).collect()
        records = records.join(counts.lazy(), on=tf["column"], how="left", nulls_equal=True, maintain_order="left")
    records.sink_parquet(_parts(ctx) / "dup_records.parquet")
    rows = pl.scan_parquet(_parts(ctx) / "dup_records.parquet").select(pl.len()).collect().item()
    return {"rows": rows}


def _load_bucket(con, ctx, rule: int, bucket: int, columns: str = "*", view: bool = False) -> None:
    """Table (or view: read where used, only the columns a query needs) `records`: rule
    number `rule`'s bucket `bucket` of the duplicate records."""
    paths = ", ".join(sql_path(Path(p)) for p in _bucket_files(_parts(ctx) / "dup" / f"r{rule:02d}", bucket))
    kind = "VIEW" if view else "TABLE"
    con.execute(f"CREATE OR REPLACE TEMP {kind} records AS SELECT {columns} FROM read_parquet([{paths}])")


def dedupe_skipped(ctx, bucket: int) -> int:
    """The giant blocks of every duplicate rule inside bucket `bucket` (their keys)."""
    model = ctx.duplicate_model()
    found = 0
    con = _task_connection(ctx, f"dup-skipped-{bucket}")
    try:
        for index, rule in enumerate(model["blocking_rules"]):
            _load_bucket(con, ctx, index, bucket, view=True)
            keys = blocking.skipped_blocks(con, rule, "records")
            path = _parts(ctx) / "dup_skipped" / f"r{index:02d}" / f"b{bucket:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            keys.write_parquet(path)
            found += keys.height
    finally:
        con.close()
    return found


def dedupe_skipped_gather(ctx) -> dict:
    """Each rule's giant blocks of every bucket in one file, which every bucket reads."""
    found = {}
    for index in range(len(ctx.duplicate_model()["blocking_rules"])):
        folder = _parts(ctx) / "dup_skipped" / f"r{index:02d}"
        keys = pl.read_parquet(sorted(folder.glob("*.parquet")))
        keys.write_parquet(folder.with_suffix(".parquet"))
        found[f"r{index:02d}"] = keys.height
    return found


def _skipped_tables(con, ctx, rules: int) -> dict[int, str | None]:
    """Each rule's giant blocks (dedupe_skipped_gather) as a table, None for a rule without."""
    tables: dict[int, str | None] = {}
    for index in range(rules):
        path = _parts(ctx) / "dup_skipped" / f"r{index:02d}.parquet"
        con.execute(f"CREATE OR REPLACE TEMP TABLE _skipped_{index} AS SELECT * FROM read_parquet({sql_path(path)})")
        tables[index] = f"_skipped_{index}" if con.execute(f"SELECT count(*) FROM _skipped_{index}").fetchall()[0][0] else None
    return tables


def _tf_table(con, model: dict, population: int) -> str | None:
    """Table _tf (value, records, share) of the values in this bucket's records, counted
    over the whole population (dedupe_split)."""
    tf = model.get("term_frequency")
    if not tf:
        return None
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _tf AS
                    SELECT DISTINCT {tf['column']} AS value, {TF_RECORDS} AS records, {TF_RECORDS}::DOUBLE / {population} AS share
                    FROM records""")
    return "_tf"


def dedupe_bucket(ctx, bucket: int, population: int) -> dict:
    """Inside bucket `bucket`, per duplicate rule: candidate pairs, comparison vectors, less
    the pairs an earlier rule finds; what the fit counts in them (labelled level patterns,
    term-frequency sums). The vectors stay in the partition folder for dedupe_score."""
    model = ctx.duplicate_model()
    stats, patterns, tf_records, tf_pairs = [], [], 0, 0
    con = _task_connection(ctx, f"dup-{bucket}")
    try:
        skipped = _skipped_tables(con, ctx, len(model["blocking_rules"]))
        for index, rule in enumerate(model["blocking_rules"]):
            _load_bucket(con, ctx, index, bucket)
            new_pairs_table(con)
            stats.append(rule_pairs(con, index, rule, "records"))
            blocking.drop_found_earlier(con, model, index, "records", skipped)
            stats[-1]["distinct_pairs"] = con.execute("SELECT count(*) FROM _pairs").fetchall()[0][0]
            compare_pairs(con, model, "records", pairs="_pairs")
            if model.get("estimation"):
                labels, levels, counts = estimate.labelled_patterns(con, model, "records")
                patterns += [(int(label), *map(int, pattern), int(count)) for label, pattern, count in zip(labels, levels, counts)]
                sums = estimate.term_frequency_sums(con, model, "records", tf_table=_tf_table(con, model, population),
                                                    population_size=population)
                if sums:
                    tf_records, tf_pairs = tf_records + sums[0], tf_pairs + sums[1]
            path = _parts(ctx) / "dup_vectors" / f"r{index:02d}-b{bucket:05d}.parquet"
            path.parent.mkdir(exist_ok=True)
            con.execute(f"COPY comparison_vectors TO {sql_path(path)} (FORMAT parquet)")
    finally:
        con.close()
    return {"stats": stats, "patterns": patterns, "tf_sums": (tf_records, tf_pairs)}


def dedupe_fit(ctx, buckets: list[dict], population: int) -> dict:
    """The duplicate model fitted on the labels of every bucket (what one process fits on
    all candidate pairs), as a JSON-ready dict."""
    model = ctx.duplicate_model()
    width = len(model["comparisons"])
    rows = np.array([row for result in buckets for row in result["patterns"]], dtype=np.int64).reshape(-1, width + 2)
    tf_sums = None
    if model.get("term_frequency") and model.get("estimation"):
        tf_sums = (sum(r["tf_sums"][0] for r in buckets), sum(r["tf_sums"][1] for r in buckets), population)
    return estimate.fit_from_patterns(model, rows[:, 0], rows[:, 1:-1], rows[:, -1].astype(float), tf_sums)


def dedupe_score(ctx, bucket: int, model: dict, population: int) -> int:
    """Inside bucket `bucket`, per rule: its candidate pairs scored with the fitted model;
    those at or above the reported probability are written for the clustering."""
    kept = 0
    tf = model.get("term_frequency")
    columns = ", ".join(["rid", *([tf["column"], TF_RECORDS] if tf else [])])
    con = _task_connection(ctx, f"dup-score-{bucket}")
    try:
        for index in range(len(model["blocking_rules"])):
            _load_bucket(con, ctx, index, bucket, columns)
            con.execute("CREATE OR REPLACE TEMP TABLE comparison_vectors AS SELECT * FROM read_parquet($path)",
                        {"path": str(_parts(ctx) / "dup_vectors" / f"r{index:02d}-b{bucket:05d}.parquet")})
            score_pairs(con, model, "records", min_probability=dedupe.reported_probability(model),
                        tf_table=_tf_table(con, model, population), population_size=population)
            path = _parts(ctx) / "dup_scored" / f"r{index:02d}-b{bucket:05d}.parquet"
            path.parent.mkdir(exist_ok=True)
            con.execute(f"COPY scored_pairs TO {sql_path(path)} (FORMAT parquet)")
            kept += con.execute("SELECT count(*) FROM scored_pairs").fetchall()[0][0]
    finally:
        con.close()
    return kept


def dedupe_finish(ctx, buckets: list[dict], model: dict) -> dict:
    """The kept pairs of every bucket -> clusters and the stage's outputs, as in one process."""
    from pipeline.round import find_duplicates

    stats = [row for result in buckets for row in result["stats"]]
    scored = dedupe.ScoredBuckets(
        paths=sorted(str(p) for p in (_parts(ctx) / "dup_scored").glob("*.parquet")),
        stats=stats, candidate_pairs=sum(row["distinct_pairs"] for row in stats), model=model)
    return find_duplicates(ctx, scored=scored)


def find_duplicates(ctx, step: Step, fan_out: FanOut) -> dict:
    """The duplicate search as partition tasks (wiring only)."""
    plan = step("duplicates-split", dedupe_split, ctx)
    if ctx.partitions <= 0:
        ctx.partitions = partition_count(ctx, plan["rows"])
    chunks = scatter_chunks(ctx, plan["rows"])
    specs = _spec_names(ctx.duplicate_model()["blocking_rules"])
    columns = pl.scan_parquet(_parts(ctx) / "dup_records.parquet").collect_schema().names()
    runs = [fan_out("duplicates-scatter", measured(scatter), [
        (ctx, str(_parts(ctx) / "dup_records.parquet"), offset, size, specs, str(_parts(ctx) / "dup"), i, None, None, columns)
        for i, (offset, size) in enumerate(chunks)])]
    buckets = range(ctx.partitions)
    runs.append(fan_out("duplicates-skipped", measured(dedupe_skipped), [(ctx, b) for b in buckets]))
    step("duplicates-skipped-gather", dedupe_skipped_gather, ctx)
    runs.append(fan_out("duplicates-buckets", measured(dedupe_bucket), [(ctx, b, plan["rows"]) for b in buckets]))
    counted = [task["result"] for task in runs[-1]]
    model = step("duplicates-fit", dedupe_fit, ctx, counted, plan["rows"])
    runs.append(fan_out("duplicates-score", measured(dedupe_score), [(ctx, b, model, plan["rows"]) for b in buckets]))
    found = step("duplicates-gather", dedupe_finish, ctx, counted, model)
    found["partitions"] = _shuffle_summary(ctx, runs, runs[:1], pairs_to_driver=sum(task["result"] for task in runs[-1]))
    return found


# --------------------------------------------------------------------------- decide


def _decide_folder(ctx) -> Path:
    return _parts(ctx) / "decide"


def _decide_sources(ctx) -> list[tuple[str, str, list[str] | None, bool]]:
    """(name, file, columns, fuzzy links only) of each table decide reads per row."""
    from pipeline.round import ANOMALY_PARTS

    return [
        ("dtks", str(ctx.staging_dir / "dtks.parquet"), None, False),
        *[(f"anomalies_{part}", str(ctx.staging_dir / f"anomalies_{part}.parquet"), None, False) for part in ANOMALY_PARTS],
        ("fuzzy", str(ctx.path("dukcapil_links.parquet")), link.SUGGESTION_COLUMNS, True),
        ("clusters", str(ctx.path("duplicate_clusters.parquet")), ["id_dtks", "cluster_id"], False),
    ]


def id_ranges(boundaries: list[str], ids: pl.Series) -> pl.Series:
    """Each id's range: i for boundaries[i-1] <= id < boundaries[i] (a missing id in the
    last range, where the sort by id puts it)."""
    ranges = pl.Series(boundaries, dtype=pl.String).search_sorted(ids, side="right").cast(pl.Int32)
    return pl.select(pl.when(ids.is_null()).then(len(boundaries)).otherwise(ranges)).to_series().alias("_range")


def decide_split(ctx) -> dict:
    """Ranges of id_dtks of about equal rows, from every k-th DTKS row's id: decide's
    outputs are sorted by id_dtks, so the ranges' outputs streamed one after the other
    are the whole round's. The reviewers' decisions numbered once for every range."""
    from pipeline.round import reviewed_decisions

    folder = _decide_folder(ctx)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = ctx.staging_dir / "dtks.parquet"
    rows = pl.scan_parquet(source).select(pl.len()).collect().item()
    wanted = partition_count(ctx, rows)
    every = max(1, rows // (wanted * 64))
    con = ctx.connect()
    try:
        sample = con.sql(f"SELECT id_dtks FROM read_parquet({sql_path(source)}, file_row_number = true) "
                         f"WHERE file_row_number % {every} = 0 AND id_dtks IS NOT NULL").pl()["id_dtks"].sort()
    finally:
        con.close()
    boundaries = sorted({sample[len(sample) * i // wanted] for i in range(1, wanted)}) if len(sample) else []
    reviewed_decisions(ctx).write_parquet(folder / "decisions.parquet")
    sources = [(name, path, columns, fuzzy_only, pl.scan_parquet(path).select(pl.len()).collect().item())
               for name, path, columns, fuzzy_only in _decide_sources(ctx)]
    return {"boundaries": boundaries, "sources": sources}


def decide_scatter(ctx, name: str, source: str, columns: list[str] | None, fuzzy_only: bool, offset: int, length: int,
                   boundaries: list[str], chunk: int) -> int:
    """Rows [offset, offset + length) of `source` into their id ranges, written as
    decide/<name>/b<range>/c<chunk>.parquet (chunk 0 writes every range, for the schema).
    Returns bytes written."""
    frame = pl.scan_parquet(source).slice(offset, length)
    if fuzzy_only:
        frame = frame.filter(pl.col("link_method") == "fuzzy")
    table = (frame.select(columns) if columns else frame).collect()
    groups = {key[0]: group for key, group in table.with_columns(id_ranges(boundaries, table["id_dtks"])).partition_by(
        "_range", as_dict=True, include_key=False, maintain_order=True).items()}
    return _write_buckets(table, groups, _decide_folder(ctx) / name, len(boundaries) + 1, chunk)


def decide_bucket(ctx, bucket: int, boundaries: list[str]) -> dict:
    """One range of ids decided (decide.decide_rows, the code of one process); its row
    outcomes, anomalies and decision flags written as decide/out/<table>/b<range>.parquet."""
    from pipeline.decide import decide_rows
    from pipeline.decisions import decisions_bearing_on
    from pipeline.round import ANOMALY_PARTS, held_rows

    folder = _decide_folder(ctx)

    def read(name: str) -> pl.DataFrame:
        return pl.read_parquet(_bucket_files(folder / name, bucket))

    reviewed = pl.read_parquet(folder / "decisions.parquet")
    reviewed = decisions_bearing_on(reviewed, id_ranges(boundaries, reviewed["id_dtks"]) == bucket)
    decided = decide_rows(read("dtks"), pl.concat([read(f"anomalies_{part}") for part in ANOMALY_PARTS]), read("fuzzy"),
                          held_rows(ctx), reviewed, read("clusters"))
    out = folder / "out"
    tables = {**{outcome: query.collect() for outcome, query in decided.tables.items()},
              "anomalies": decided.anomalies, "flags": decided.flags}
    for name, table in tables.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        table.write_parquet(out / name / f"b{bucket:05d}.parquet")
    return {"counts": decided.counts, "repeated_ids": decided.repeated_ids, "repairs": decided.repairs}


def decide_finish(ctx, ingest_results: dict, buckets: int, results: list[dict]) -> dict:
    """The ranges' outputs streamed, in the order of their ids, into the round's files;
    each decision's status from every range's flags; the reconciliation over all rows."""
    from pipeline import contract
    from pipeline.decisions import decision_status
    from pipeline.round import decide_summary, write_decided

    out = _decide_folder(ctx) / "out"

    def files(name: str) -> list[Path]:
        return [out / name / f"b{bucket:05d}.parquet" for bucket in range(buckets)]

    def pieces(name: str) -> tuple:
        return (pl.read_parquet(file) for file in files(name)), pl.read_parquet_schema(files(name)[0])

    write_decided(ctx, pieces("anomalies"), {outcome: pieces(outcome) for outcome in contract.ROW_OUTCOMES})
    status = decision_status(pl.read_parquet(_decide_folder(ctx) / "decisions.parquet"),
                             pl.concat([pl.read_parquet(file) for file in files("flags")]))
    counts = {outcome: sum(result["counts"][outcome] for result in results) for outcome in contract.ROW_OUTCOMES}
    decided = decide_summary(ctx, ingest_results, counts, sum(result["repeated_ids"] for result in results),
                             sum(result["repairs"] for result in results), status, pl.scan_parquet(ctx.path("anomalies.parquet")))
    clean(ctx)
    return decided


def decide(ctx, step: Step, fan_out: FanOut, ingest_results: dict) -> dict:
    """Decide as partition tasks over ranges of id_dtks (wiring only)."""
    plan = step("decide-split", decide_split, ctx)
    boundaries = plan["boundaries"]
    runs = [fan_out("decide-scatter", measured(decide_scatter), [
        (ctx, name, path, columns, fuzzy_only, offset, size, boundaries, i)
        for name, path, columns, fuzzy_only, rows in plan["sources"] for i, (offset, size) in enumerate(scatter_chunks(ctx, rows))
    ])]
    runs.append(fan_out("decide-buckets", measured(decide_bucket), [(ctx, b, boundaries) for b in range(len(boundaries) + 1)]))
    decided = step("decide-gather", decide_finish, ctx, ingest_results, len(boundaries) + 1, [task["result"] for task in runs[-1]])
    decided["partitions"] = _partition_summary(len(boundaries) + 1, runs, tasks=sum(len(run) for run in runs),
                                               bytes_shuffled=sum(task["result"] for task in runs[0]))
    return decided


# --------------------------------------------------------------------------- workbooks


def workbooks_split(ctx) -> dict:
    """The reviewers' workbooks as batches of whole kabupaten/kota: each batch's cases in
    a Parquet file, its jobs (names and tallies, no case) as the task's argument."""
    from pipeline.report import xlsx

    folder = _parts(ctx) / "workbooks"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    anomalies, outcomes, jobs = xlsx.plan_workbooks(ctx.work_dir, ctx.full_nik)
    cases = sum(job.cases.height for job in jobs)
    # As many batches as the other stages' partitions: the batch size stays constant as the
    # registry grows (a kabupaten is never split, so the largest batch is at least one kab).
    work = xlsx.batches(jobs, min(xlsx.BATCH_CASES, max(1, -(-cases // max(ctx.partitions, 1)))))
    batches = []
    for index, batch in enumerate(work):
        path = folder / f"batch{index:05d}.parquet"
        pl.concat([job.cases.with_columns(_job=pl.lit(i, pl.UInt32)) for i, job in enumerate(batch)]).write_parquet(path)
        batches.append((str(path), [dataclasses.replace(job, cases=job.cases.clear()) for job in batch]))
    return {"anomalies": anomalies, "outcomes": outcomes, "batches": batches}


def workbook_batch(ctx, path: str, jobs: list) -> list[dict]:
    """The workbooks of one batch, written into the round's work folder."""
    from pipeline import contract
    from pipeline.report import xlsx

    cases = pl.read_parquet(path)
    parts = cases.partition_by("_job", as_dict=True, include_key=False)
    jobs = [dataclasses.replace(job, cases=parts[(i,)]) for i, job in enumerate(jobs)]
    return xlsx.write_batch(jobs, ctx.path(contract.workbook_settings()["folder"]))


def workbooks_finish(ctx, plan: dict, runs: list[list[dict]]) -> dict:
    from pipeline import contract
    from pipeline.report import xlsx
    from pipeline.round import workbook_summary

    results = sorted((result for task in runs[0] for result in task["result"]), key=lambda r: r["kode_kabupaten"])
    written = xlsx.finish_workbooks(ctx.work_dir, ctx.path(contract.workbook_settings()["folder"]), results, plan["anomalies"],
                                    plan["outcomes"], ctx.full_nik, len(worker_peaks(runs)))
    clean(ctx)
    return workbook_summary(written)


def write_workbooks(ctx, step: Step, fan_out: FanOut) -> dict:
    """The workbooks as partition tasks of whole kabupaten/kota (wiring only)."""
    from pipeline import contract

    ctx.path(contract.workbook_settings()["folder"]).mkdir(parents=True, exist_ok=True)
    plan = step("workbooks-split", workbooks_split, ctx)
    runs = [fan_out("workbooks-write", measured(workbook_batch), [(ctx, path, jobs) for path, jobs in plan["batches"]])]
    written = step("workbooks-national", workbooks_finish, ctx, plan, runs)
    written["partitions"] = _partition_summary(len(plan["batches"]), runs)
    return written


# --------------------------------------------------------------------------- status index


def lookup_split(ctx) -> dict:
    """The status index's named rows in slices of whole clusters, each slice's Parquet
    files streamed from the round's files (the secret for them is in the round's lookup/
    folder, never in a task's arguments)."""
    from pipeline.lookup import index

    folder = _parts(ctx) / "lookup"
    for stale in (folder, _lookup_entries(ctx)):
        shutil.rmtree(stale, ignore_errors=True)
    return index.plan_index(ctx.work_dir, folder, ctx.as_of, slices=max(ctx.partitions, 1))


def _lookup_entries(ctx) -> Path:
    """The status index's entries, by key range (lookup.index.write_slice_entries)."""
    return _parts(ctx) / "lookup_entries"


def lookup_slice(ctx, index: int, paths: list[str], ranges: int) -> int:
    """The index entries of one slice, by key range into the entries folder."""
    from pipeline.lookup import index as lookup

    entries = lookup.slice_entries(pl.read_parquet(paths), lookup.read_secret(ctx.work_dir), threads=ctx.worker_threads)
    return lookup.write_slice_entries(entries, _lookup_entries(ctx), index, ranges)


def lookup_finish(ctx, plan: dict) -> dict:
    from pipeline.lookup import index

    built = index.write_index(ctx.work_dir, _lookup_entries(ctx), plan["slices"], plan["round_date"], plan["handles"])
    clean(ctx)
    return {"entries": built["entries"], "people": built["people"]}


def write_lookup_index(ctx, step: Step, fan_out: FanOut) -> dict:
    """The status index as partition tasks of whole clusters (wiring only)."""
    plan = step("lookup-split", lookup_split, ctx)
    runs = [fan_out("lookup-slices", measured(lookup_slice), [(ctx, i, paths, plan["slices"]) for i, paths in enumerate(plan["paths"])])]
    built = step("lookup-gather", lookup_finish, ctx, plan)
    built["partitions"] = _partition_summary(len(plan["paths"]), runs)
    return built


def clean(ctx) -> None:
    shutil.rmtree(_parts(ctx), ignore_errors=True)
