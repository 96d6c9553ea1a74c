"""The partitioned round (pipeline/partitioned.py) gives the same answers as one process:
on a Dask LocalCluster through the Prefect flow's DaskTaskRunner, and partitioned in one
process with more buckets than rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipeline.progress import StageClock
from pipeline.round import RoundContext, run_round

# The status index is keyed with a secret made fresh for every round (README, Cek status),
# so two rounds never share its bytes, whatever the partitioning.
FRESH_SECRET = ("lookup",)
SUMMARY_COUNTS = ("reconciliation", "anomalies_by_code", "nik_checks")


def parquet_outputs(out: Path) -> list[Path]:
    return sorted(
        p.relative_to(out) for p in out.rglob("*.parquet")
        if p.relative_to(out).parts[0] not in ("staging", *FRESH_SECRET)
    )


def status_entries(folder: Path) -> pl.DataFrame:
    """The status index without its keys: each entry's answer and the row it points to."""
    handles = pl.read_parquet(folder / "handles.parquet").select("handle", "id_dtks")
    return pl.read_parquet(folder / "index.parquet").join(handles, on="handle").drop("handle", "k_hi", "k_lo").sort(pl.all())


def assert_same_round(single: Path, partitioned: Path) -> None:
    files = parquet_outputs(single)
    assert files == parquet_outputs(partitioned)
    assert {"duplicate_clusters.parquet", "dukcapil_links.parquet", "resolution.parquet", "anomalies.parquet"} <= {f.name for f in files}
    for name in files:
        expected, got = pl.read_parquet(single / name), pl.read_parquet(partitioned / name)
        assert got.schema == expected.schema, name
        assert got.equals(expected), f"{name} differs"
        assert (partitioned / name).read_bytes() == (single / name).read_bytes(), f"{name}: same rows, different bytes"
    # The reviewers' workbooks (written on the workers in a cluster round), byte for byte.
    books = sorted(p.relative_to(single) for p in single.rglob("*.xlsx"))
    assert len(books) > 1 and books == sorted(p.relative_to(partitioned) for p in partitioned.rglob("*.xlsx"))
    for name in books:
        assert (partitioned / name).read_bytes() == (single / name).read_bytes(), f"{name} differs"
    one, many = (json.loads((out / "summary.json").read_text()) for out in (single, partitioned))
    for key in SUMMARY_COUNTS:
        assert many[key] == one[key], key
    link_counts = ("exact_links", "identity", "fuzzy_queries", "fuzzy_links", "resolution", "fuzzy_blocking", "anomalies")
    assert {k: many["civil_registry_link"][k] for k in link_counts} == {k: one["civil_registry_link"][k] for k in link_counts}
    duplicate_counts = ("clusters_gt1", "rows_in_clusters_gt1", "pairs_scored_reported", "blocking", "model_fit")
    assert {k: many["duplicates"][k] for k in duplicate_counts} == {k: one["duplicates"][k] for k in duplicate_counts}


def test_local_dask_cluster_gives_the_single_process_round(generated_round, prefect_harness, tmp_path, monkeypatch):
    from pipeline import csvread
    from pipeline.flows.verval import run_flow

    data, single = generated_round["data"], generated_round["out"]
    # Chunks of 512 KiB: the CSV extracts, read whole by the single-process round, are staged
    # a chunk per task on the workers (the driver plans the cuts; a task gets its chunk).
    monkeypatch.setattr(csvread, "CSV_CHUNK_BYTES", 1 << 19)
    summary = run_flow(dtks=str(data / "dtks.csv"), dukcapil=str(data / "dukcapil.csv"), out=str(tmp_path / "out"),
                       as_of="2026-11-21", quiet=True, workers=2, partitions=3, ineligible=[str(data / "ineligible.csv")])
    assert_same_round(single, tmp_path / "out")
    for stage in ("civil_registry_link", "duplicates"):
        partitions = summary[stage]["partitions"]
        assert partitions["count"] == 3 and partitions["bytes_shuffled"] > 0
        # The tasks ran in the cluster's worker processes (both of them; more pids if Dask
        # restarted one), not in this one.
        assert len(partitions["worker_peak_mib"]) >= 2 and str(os.getpid()) not in partitions["worker_peak_mib"]
        # A worker of one thread runs polars on one thread too, whatever the host's cores.
        assert partitions["polars_threads_per_task"] == [1]
    # The duplicate search is fitted and scored in the buckets: only the pairs it keeps
    # reach the driver, not every candidate pair.
    found = summary["duplicates"]
    assert found["partitions"]["pairs_to_driver"] == found["pairs_scored_reported"] < found["blocking"][0]["total_candidate_pairs"] / 2
    for kind in ("dtks", "dukcapil"):
        staged, size = summary["ingest"][kind], (data / f"{kind}.csv").stat().st_size
        assert 3 <= size >> 19 <= staged["partitions"]["tasks"] <= -(-size >> 19)  # chunks of at least 512 KiB
        assert str(os.getpid()) not in staged["partitions"]["worker_peak_mib"]
        facts = ("file_format", "encoding", "rows_in", "rows_staged", "rows_quarantined", "counts", "warnings")
        assert {k: staged[k] for k in facts} == {k: generated_round["summary"]["ingest"][kind][k] for k in facts}
    # The CSV DTKS rows, settled in the gather, have their NIKs checked in slices on the workers.
    timings = [t["stage"] for t in summary["stage_timings"]]
    assert "nik-checks-chunks" in timings and "nik-checks" not in timings
    assert summary["nik_checks"] == generated_round["summary"]["nik_checks"]
    for stage in ("decide", "workbooks", "lookup"):  # on the workers too
        partitions = summary[stage]["partitions"]
        assert partitions["count"] >= 2 and str(os.getpid()) not in partitions["worker_peak_mib"]
    # The status index answers alike: same entries for the same people (its keys differ,
    # hashed with a fresh secret).
    answers = [status_entries(out / "lookup") for out in (single, tmp_path / "out")]
    assert answers[0].height > 20_000 and answers[1].equals(answers[0])
    assert sorted(p.name for p in (tmp_path / "out" / "lookup").iterdir()) == ["handles.parquet", "index.parquet", "secret.key"]
    duplicates = pl.read_parquet(tmp_path / "out" / "duplicate_clusters.parquet")
    assert duplicates.filter(pl.col("cluster_size") > 1).height > 1000  # the registry has duplicates to find


def test_more_buckets_than_rows_in_one_process(small_extracts, tmp_path):
    """Seven buckets for nine rows: most buckets of most rules are empty."""
    outs = {}
    for partitions in (0, 7):
        out = tmp_path / f"out{partitions}"
        ctx = RoundContext(dtks=str(small_extracts["dtks"]), dukcapil=str(small_extracts["dukcapil"]), out=str(out),
                           as_of="2026-11-21", partitions=partitions)
        outs[partitions] = run_round(ctx, StageClock(quiet=True))
    assert_same_round(tmp_path / "out0", tmp_path / "out7")
    assert outs[7]["duplicates"]["partitions"]["count"] == 7
    assert outs[7]["decide"]["partitions"]["count"] >= 2 and "decide" not in outs[0]  # ranges of ids, cut from 9 rows
    assert not (tmp_path / "out7" / "staging" / "partitions").exists()  # partition files are not published


def test_parquet_extracts_are_staged_chunk_by_chunk_in_partition_tasks(tmp_path, monkeypatch):
    """A partitioned round stages each chunk of a Parquet extract in its own task and writes
    the staging file, quarantine and every output with the bytes of one process."""
    from pipeline import ingest
    from pipeline.sample import generate_sample

    generate_sample(3_000, 5, tmp_path / "data", fmt="parquet")
    monkeypatch.setattr(ingest, "PARQUET_CHUNK_ROWS", 1_000)  # several chunks per extract
    outs = {}
    for partitions in (0, 3):
        ctx = RoundContext(dtks=str(tmp_path / "data" / "dtks.parquet"), dukcapil=str(tmp_path / "data" / "dukcapil.parquet"),
                           out=str(tmp_path / f"out{partitions}"), as_of="2026-11-21", partitions=partitions)
        outs[partitions] = run_round(ctx, StageClock(quiet=True))
    assert_same_round(tmp_path / "out0", tmp_path / "out3")
    for name in ("dtks.parquet", "dukcapil.parquet", "dtks_quarantine.parquet", "dukcapil_quarantine.parquet"):
        assert (tmp_path / "out3" / "staging" / name).read_bytes() == (tmp_path / "out0" / "staging" / name).read_bytes(), name
    for kind, rows in (("dtks", 3_000), ("dukcapil", outs[0]["ingest"]["dukcapil"]["rows_in"])):
        staged = outs[3]["ingest"][kind]
        assert staged["partitions"]["tasks"] == -(-rows // 1_000) >= 3
        facts = ("source", "file_format", "column_mapping", "rows_in", "rows_staged", "rows_quarantined", "counts", "warnings")
        assert {k: staged[k] for k in facts} == {k: outs[0]["ingest"][kind][k] for k in facts}
    timings = [t["stage"] for t in outs[3]["stage_timings"]]
    assert "ingest-dtks-chunks" in timings and "ingest-dtks" not in timings
    # The NIKs are checked in the same chunk tasks: the same facts and anomalies, only
    # the anomalies' order differs (chunk by chunk instead of code by code).
    assert "nik-checks-gather" in timings and "nik-checks" not in timings
    assert outs[3]["nik_checks"] == outs[0]["nik_checks"] and outs[0]["nik_checks"]["anomalies"] > 30
    for name, key in (("nik_checks.parquet", ["id_dtks"]), ("anomalies_nik.parquet", ["id_dtks", "anomaly_code"])):
        one, chunked = (pl.read_parquet(tmp_path / out / "staging" / name).sort(key) for out in ("out0", "out3"))
        assert chunked.equals(one), name


def test_link_outputs_made_a_range_of_ids_at_a_time_are_those_made_at_once(tmp_path, monkeypatch):
    """The link stage makes its outputs a range of ids at a time (round.write_links), and a
    partitioned round a range per task (partitioned.link_range); ranges of 250 records give
    the files and verdicts of one range holding every record."""
    from pipeline import round as round_module
    from pipeline.sample import generate_sample

    generate_sample(2_000, 13, tmp_path / "data", fmt="parquet")
    outs = {}
    for size, partitions in ((1_000_000, 0), (250, 0), (250, 3)):
        monkeypatch.setattr(round_module, "LINK_OUTPUT_RANGE", size)
        ctx = RoundContext(dtks=str(tmp_path / "data" / "dtks.parquet"), dukcapil=str(tmp_path / "data" / "dukcapil.parquet"),
                           out=str(tmp_path / f"out{size}-{partitions}"), as_of="2026-11-21", partitions=partitions)
        outs[size, partitions] = run_round(ctx, StageClock(quiet=True))
    for other in ("out250-0", "out250-3"):
        assert_same_round(tmp_path / "out1000000-0", tmp_path / other)
    records = outs[250, 3]["ingest"]["dtks"]["rows_staged"]
    assert outs[250, 3]["civil_registry_link"]["partitions"]["output_ranges"] == -(-records // 250) >= 7
    outs = {size: outs[size, 0] for size in (1_000_000, 250)}
    linked = outs[250]["civil_registry_link"]
    assert linked["fuzzy_links"] > 20 and linked["anomalies"] > 50 and outs[250]["duplicates"]["clusters_gt1"] > 20
    # The link findings hold the same rows, grouped by range instead of by code.
    one, ranged = (pl.read_parquet(tmp_path / out / "staging" / "anomalies_link.parquet") for out in ("out1000000-0", "out250-0"))
    assert ranged.sort(pl.all()).equals(one.sort(pl.all())) and not ranged.equals(one)


def test_link_ranges_take_every_link_once_and_need_sorted_records():
    from pipeline.round import link_ranges

    records = pl.DataFrame({"id_dtks": ["A", "B", "C", "D", "E"]})
    exact = pl.DataFrame({"id_dtks": ["E", "A", "B", "B", "D"], "n": [1, 2, 3, 4, 5]})
    fuzzy = pl.DataFrame({"id_dtks": ["C", "E"], "n": [6, 7]})
    ranges = list(link_ranges(records, exact, fuzzy, size=2))
    assert [part["id_dtks"].to_list() for part, _, _ in ranges] == [["A", "B"], ["C", "D"], ["E"]]
    assert [sorted(e["n"].to_list()) for _, e, _ in ranges] == [[2, 3, 4], [5], [1]]
    assert [f["n"].to_list() for _, _, f in ranges] == [[], [6], [7]]
    empty = list(link_ranges(records.clear(), exact.clear(), fuzzy.clear()))
    assert len(empty) == 1 and empty[0][1].height == 0
    with pytest.raises(RuntimeError, match="not sorted"):
        list(link_ranges(records.reverse(), exact, fuzzy))


def test_cluster_options_are_checked_before_any_work(small_extracts, tmp_path):
    base = [sys.executable, "-m", "pipeline.cli", "run", "--no-prefect", "--dtks", str(small_extracts["dtks"]),
            "--dukcapil", str(small_extracts["dukcapil"]), "--out", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    for extra, said in ((["--workers", "2", "--cluster", "tcp://127.0.0.1:8786"], "not both"),
                        (["--cluster"], "DASK_SCHEDULER_ADDRESS"),
                        (["--partitions", "-1"], "positive number")):
        done = subprocess.run(base + extra, capture_output=True, text=True, env=env)
        assert done.returncode == 2, extra
        assert said in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
