"""verval command line: run | sample | serve | bench | blocking | lookup | lookup-index | status-server | monev."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from pipeline.errors import UsageError, VervalError  # noqa: E402
from pipeline.paths import PROJECT_DIR, REPORTS_DIR  # noqa: E402


def _default_out() -> str:
    return str(REPORTS_DIR / time.strftime("round-%Y%m%d-%H%M%S"))


def _print_outcome(summary: dict) -> None:
    from pipeline.contract import outcome_rules
    from pipeline.progress import console

    rec = summary["reconciliation"]
    parts = " + ".join(f"{o.label} {rec[name]:,}" for name, o in outcome_rules().items())
    console.print(f"\n[bold]Rekonsiliasi[/bold]: masuk {rec['rows_in']:,} = {parts}")
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]perhatian / warning[/yellow]: {warning}", markup=True, highlight=False)
    console.print(f"Laporan / report: [bold]{Path(summary['output_dir']) / 'report.html'}[/bold]")
    workbooks = summary.get("workbooks")
    if workbooks:
        console.print(f"Lembar kerja / workbooks: [bold]{Path(summary['output_dir']) / workbooks['folder']}[/bold] "
                      f"({workbooks['files']:,} kabupaten/kota + {workbooks['national']})")


def command_run(args: argparse.Namespace) -> int:
    if args.workers < 0 or args.partitions < 0:
        raise UsageError("--workers and --partitions take a positive number (0 = not partitioned).")
    if args.workers and args.cluster:
        raise UsageError("give either --workers (a local Dask cluster) or --cluster (an existing one), not both.")
    if not args.no_prefect:
        from pipeline.flows.early_server import EarlyServer

        early_server = EarlyServer()  # boots while the imports below run
    from pipeline.progress import StageClock, console

    out = args.out or _default_out()
    from pipeline import partitioned

    if args.no_prefect:
        from pipeline.round import RoundContext, run_round

        ctx = RoundContext(dtks=args.dtks, dukcapil=args.dukcapil, out=out, model_path=args.model, link_model_path=args.link_model,
                           decisions=args.decisions, decision_log=args.decision_log or None,
                           objections=args.objections or None, full_nik=args.full_nik,
                           allow_partial_dukcapil=args.allow_partial_dukcapil, partitions=args.partitions,
                           workers=args.workers, cluster=partitioned.scheduler_address(args.cluster),
                           ineligible=args.ineligible or [])
        if args.as_of:
            ctx.as_of = args.as_of
        clock = StageClock(quiet=args.quiet)
        if args.workers or ctx.cluster:
            with partitioned.DaskCluster(args.workers, ctx.cluster) as fan_out:
                summary = run_round(ctx, clock, fan_out=fan_out)
        else:
            summary = run_round(ctx, clock)
        timings = clock.timings
    else:
        from pipeline.flows.verval import run_flow

        with early_server.serving():
            summary = run_flow(
                dtks=args.dtks, dukcapil=args.dukcapil, out=out, model_path=args.model, link_model_path=args.link_model,
                as_of=args.as_of, quiet=args.quiet,
                decisions=args.decisions, decision_log=args.decision_log or None, objections=args.objections or None,
                full_nik=args.full_nik, allow_partial_dukcapil=args.allow_partial_dukcapil, partitions=args.partitions,
                workers=args.workers, cluster=partitioned.scheduler_address(args.cluster),
                ineligible=args.ineligible or [],
            )
        timings = summary["stage_timings"]
    if not args.quiet:
        clock = StageClock(timings=timings)
        console.print(clock.table())
    _print_outcome(summary)
    return 0


def command_sample(args: argparse.Namespace) -> int:
    from pipeline.progress import console
    from pipeline.sample import generate_sample

    started = time.perf_counter()
    try:
        result = generate_sample(args.n, args.seed, Path(args.out), fmt=args.format, mix=args.mix, extent=args.extent)
    except ValueError as error:
        raise UsageError(f"sample --n {args.n}: {error}") from None
    console.print(f"sample of {args.n:,} DTKS rows (seed {args.seed}) in {time.perf_counter() - started:.1f} s -> {args.out}")
    for key, value in result.items():
        console.print(f"  {key}: {value}")
    return 0


def command_serve(args: argparse.Namespace) -> int:
    from pipeline.flows.deployment import serve_from_prefect_yaml

    serve_from_prefect_yaml(PROJECT_DIR / "prefect.yaml", args.deployment)
    return 0


def command_bench(args: argparse.Namespace) -> int:
    from pipeline.bench import run_benchmark
    from pipeline.errors import InputError

    try:
        sizes = [int(size.replace("_", "")) for size in args.sizes.split(",")] if args.sizes else [args.n]
    except ValueError:
        raise InputError(f"--sizes {args.sizes!r}: give row counts separated by commas, e.g. 1000000,3000000") from None
    return run_benchmark(sizes=sizes, seed=args.seed, work=args.dir, fmt=args.format, through_prefect=args.prefect,
                         score=args.score, mix=args.mix, vs_splink=args.vs_splink, extent=args.extent)


def command_score(args: argparse.Namespace) -> int:
    from pipeline.bench import print_scores

    print_scores(Path(args.round), Path(args.truth))
    return 0


def command_blocking(args: argparse.Namespace) -> int:
    import polars as pl

    from pipeline.matching.diagnostics import blocking_report_for_round
    from pipeline.progress import console

    report = blocking_report_for_round(Path(args.round), Path(args.truth), Path(args.model) if args.model else None)
    with pl.Config(tbl_rows=50, float_precision=4, tbl_hide_dataframe_shape=True):
        console.print(str(report))
    return 0


def _from_stdin(value: str | None) -> str | None:
    """"-" reads the value from standard input, so a NIK or name stays out of the shell
    history and the process list."""
    return sys.stdin.readline().rstrip("\n") if value == "-" else value


def command_lookup(args: argparse.Namespace) -> int:
    import json

    from pipeline.errors import InputError
    from pipeline.lookup.index import LookupIndex, index_dir, normalise_desa, normalise_nik, standard_names

    index = LookupIndex(index_dir(Path(args.round)))
    nik, name = _from_stdin(args.nik), _from_stdin(args.nama)
    if not (name or "").strip():
        raise InputError("--nama: give the full name as on the KTP")
    standard = standard_names([name])[0]
    if args.nik is not None:
        if normalise_nik(nik) is None:
            raise InputError("--nik: a NIK is 16 digits")
        answers = [index.by_nik(normalise_nik(nik), standard)]
        more = False
    else:
        desa = normalise_desa(args.desa)
        if desa is None:
            raise InputError("--desa: a desa code is 10 digits (dots allowed), e.g. 32.01.01.1001")
        answers, more = index.by_region(desa, standard)
        answers = answers or [index.not_found()]
    public = [{k: a.public()[k] for k in ("status", "reason", "round_date", "nama")} for a in answers]
    if args.json:
        print(json.dumps(public[0] if args.nik is not None else public, ensure_ascii=False))
        return 0
    for answer in answers:
        words = answer.public()
        who = f"{words['nama']}: " if words["nama"] else ""
        reason = f" ({words['reason_label']})" if words["reason_label"] else ""
        print(f"{who}{words['status_label']}{reason}. {words['keterangan']} Putaran per {words['round_date']}.")
    if more:
        print("Ada lebih banyak orang dengan nama ini di desa tersebut: cari dengan NIK.")
    return 0


def command_lookup_index(args: argparse.Namespace) -> int:
    from pipeline.lookup.index import build_index
    from pipeline.progress import console

    started = time.perf_counter()
    built = build_index(Path(args.round))
    console.print(f"status index: {built['entries']:,} entries, {built['people']:,} people, round {built['round_date']} "
                  f"in {time.perf_counter() - started:.1f} s -> {built['path']}")
    return 0


def command_status_server(args: argparse.Namespace) -> int:
    from pipeline.lookup.server import Settings, serve

    settings = Settings(round_path=Path(args.round), objections_path=Path(args.objections))
    if args.rate_per_minute is not None:
        settings.per_minute = args.rate_per_minute
    if args.burst is not None:
        settings.burst = args.burst
    serve(settings, host=args.host, port=args.port)
    return 0


def command_monev(args: argparse.Namespace) -> int:
    from pipeline.monev import gather, write_monev
    from pipeline.progress import console

    table = gather(rounds=[Path(r) for r in args.rounds] if args.rounds else None, out=Path(args.out) if args.out else None)
    path = write_monev(table, Path(args.html) if args.html else (Path(args.out) if args.out else REPORTS_DIR) / "monev.html")
    console.print(f"monev: {table['as_of'].n_unique()} rounds, {table['kode_kabupaten'].n_unique():,} kabupaten/kota -> [bold]{path}[/bold]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verval", description="Verifikasi dan validasi DTKS terhadap Dukcapil.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one verification round")
    run.add_argument("--dtks", required=True, help="DTKS extract: CSV, Parquet or XLSX")
    run.add_argument("--dukcapil", required=True, help="Dukcapil extract: CSV, Parquet or XLSX")
    run.add_argument("--out", help="output folder: new, empty, or the --out of a previous round (default: reports/round-YYYYMMDD-HHMMSS)")
    run.add_argument("--model", help="matching model JSON (default: pipeline/rules/model.json)")
    run.add_argument("--link-model", help="civil-registry link model JSON (default: pipeline/rules/link_model.json)")
    run.add_argument("--as-of", help="date of the round, YYYY-MM-DD (default: today in Asia/Jakarta)")
    run.add_argument("--decisions", nargs="+", metavar="FILE_OR_FOLDER",
                     help="filled workbooks of a round's anomalies/ folder, CSVs of the same columns, or folders of them")
    run.add_argument("--decision-log", default=str(PROJECT_DIR / "data" / "decisions" / "decisions.jsonl"),
                     help="append-only log of reviewers' decisions, read by every round (default: data/decisions/decisions.jsonl)")
    run.add_argument("--objections", default=str(PROJECT_DIR / "data" / "decisions" / "objections.jsonl"),
                     help="queue of objections filed on the status page, read by every round (default: data/decisions/objections.jsonl)")
    run.add_argument("--ineligible", nargs="+", metavar="FILE",
                     help="ineligibility lists (CSV, Parquet or XLSX: nik, nama, jenis, optional tanggal_lahir, sumber, tanggal)")
    run.add_argument("--full-nik", action="store_true", help="write full NIKs into the workbooks (default: masked)")
    run.add_argument("--allow-partial-dukcapil", action="store_true",
                     help="run even when the Dukcapil extract is empty, has no tanggal_meninggal column, or is far smaller than DTKS")
    run.add_argument("--no-prefect", action="store_true", help="run the stages directly, without a Prefect flow run")
    run.add_argument("--workers", type=int, default=0,
                     help="run the link and duplicate search as partition tasks on a local Dask cluster of N worker processes")
    run.add_argument("--cluster", nargs="?", const="env", metavar="ADDRESS",
                     help="... on the Dask scheduler at ADDRESS (tcp://host:8786); alone: DASK_SCHEDULER_ADDRESS")
    run.add_argument("--partitions", type=int, default=0,
                     help="buckets per partitioned step (default with --workers/--cluster: from the row count; "
                          "alone: partitioned in this process, in bounded memory)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.set_defaults(handler=command_run)

    sample = commands.add_parser("sample", help="write synthetic DTKS and Dukcapil extracts with truth labels")
    sample.add_argument("--n", type=int, default=10_000, help="DTKS rows")
    sample.add_argument("--seed", type=int, default=42)
    sample.add_argument("--out", required=True)
    sample.add_argument("--format", choices=("csv", "parquet"), default="csv")
    sample.add_argument("--mix", choices=("standard", "hard"), default="standard",
                        help="scenario mix: standard, or hard (look-alike relatives, OCR names, re-registrations...)")
    sample.add_argument("--extent", choices=("national", "regional"), default="national",
                        help="national: any size spread thinly over every desa; regional: whole kabupaten at the "
                             "country's real density, as a province's extract")
    sample.set_defaults(handler=command_sample)

    serve = commands.add_parser("serve", help="serve the scheduled deployment from prefect.yaml (needs `prefect server start`)")
    serve.add_argument("--deployment", default="verval-semesteran")
    serve.set_defaults(handler=command_serve)

    blocking = commands.add_parser("blocking", help="per blocking rule: candidate pairs and share of true pairs reached")
    blocking.add_argument("--round", required=True, help="output folder of a round (uses its staging/records.parquet)")
    blocking.add_argument("--truth", required=True, help="folder with truth_rows.csv from `verval sample`")
    blocking.add_argument("--model", help="matching model JSON (default: pipeline/rules/model.json)")
    blocking.set_defaults(handler=command_blocking)

    score = commands.add_parser("score", help="score a round against the truth labels of `verval sample`")
    score.add_argument("--round", required=True, help="output folder of a round")
    score.add_argument("--truth", required=True, help="folder with truth_rows and truth_anomalies from `verval sample`")
    score.set_defaults(handler=command_score)

    lookup = commands.add_parser("lookup", help="a person's status in a published round (NIK + name, or desa + name)")
    lookup.add_argument("--round", required=True, help="output folder of a round (or a folder with its lookup index)")
    asked = lookup.add_mutually_exclusive_group(required=True)
    asked.add_argument("--nik", help="16-digit NIK ('-' reads it from standard input)")
    asked.add_argument("--desa", help="10-digit desa code (kode wilayah), dots allowed")
    lookup.add_argument("--nama", required=True, help="full name as on the KTP ('-' reads it from standard input)")
    lookup.add_argument("--json", action="store_true", help="print JSON: one object, or a list for a desa query")
    lookup.set_defaults(handler=command_lookup)

    lookup_index = commands.add_parser("lookup-index", help="(re)build the status index of a published round")
    lookup_index.add_argument("--round", required=True, help="output folder of a round")
    lookup_index.set_defaults(handler=command_lookup_index)

    status = commands.add_parser("status-server", help="serve the status page (cek status) of the last published round")
    status.add_argument("--round", required=True, help="output folder of the round to answer from (re-read when it changes)")
    status.add_argument("--host", default="127.0.0.1")
    status.add_argument("--port", type=int, default=8080)
    status.add_argument("--objections", default=str(PROJECT_DIR / "data" / "decisions" / "objections.jsonl"),
                        help="append-only queue of objections filed on the page (default: data/decisions/objections.jsonl)")
    status.add_argument("--rate-per-minute", type=float, help="requests per minute per client (default: pipeline/rules/lookup.toml)")
    status.add_argument("--burst", type=int, help="requests a client may make at once (default: pipeline/rules/lookup.toml)")
    status.set_defaults(handler=command_status_server)

    monev = commands.add_parser("monev", help="monitoring and evaluation across rounds: monev.html per province and kabupaten")
    rounds = monev.add_mutually_exclusive_group(required=True)
    rounds.add_argument("--rounds", nargs="+", help="output folders of rounds, in any order")
    rounds.add_argument("--out", help="an --out folder: the rounds in its indicators.parquet history")
    monev.add_argument("--html", help="where to write monev.html (default: into --out, else reports/monev.html)")
    monev.set_defaults(handler=command_monev)

    bench = commands.add_parser("bench", help="generate N rows, run the round, print per-stage time and peak memory")
    bench.add_argument("--n", type=int, default=1_000_000)
    bench.add_argument("--sizes", help="several sizes, e.g. 1000000,3000000,10000000: the scaling table with growth exponents")
    bench.add_argument("--vs-splink", action="store_true", help="also run Splink's dedupe of the same DTKS rows (SPLINK_PYTHON)")
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--dir", help="work folder; generated registries are kept there and reused (default: a temporary folder)")
    bench.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    bench.add_argument("--mix", choices=("standard", "hard"), default="standard", help="scenario mix of the generated data")
    bench.add_argument("--extent", choices=("national", "regional"), default="national",
                       help="national: every size over all desa (denser as it grows); regional: whole kabupaten at real density")
    bench.add_argument("--prefect", action="store_true", help="run through the Prefect flow (adds server start-up)")
    bench.add_argument("--score", action="store_true", help="also print precision/recall per anomaly code")
    bench.set_defaults(handler=command_bench)
    return parser


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C, so the run removes its work folder on the way out.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.handler(args)
    except VervalError as error:
        print(f"verval: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("verval: interrupted; previous outputs are untouched", file=sys.stderr)
        return 130
    except Exception as error:
        # Never a traceback (it may quote a row); VERVAL_DEBUG=1 shows it to a developer.
        if os.environ.get("VERVAL_DEBUG"):
            raise
        print(f"verval: error: unexpected {type(error).__name__}; previous outputs are untouched. Run again with "
              "VERVAL_DEBUG=1 to see the details (they may show personal data) and report them.", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
