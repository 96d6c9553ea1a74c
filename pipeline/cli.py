"""verval command line: run | sample | serve | bench."""

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
    from pipeline.progress import console

    rec = summary["reconciliation"]
    console.print(
        f"\n[bold]Rekonsiliasi[/bold]: masuk {rec['rows_in']:,} = terverifikasi {rec['verified']:,} + diperiksa "
        f"{rec['review']:,} + dikeluarkan {rec['excluded']:,} + karantina {rec['quarantined']:,}"
    )
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]perhatian / warning[/yellow]: {warning}", markup=True, highlight=False)
    console.print(f"Laporan / report: [bold]{Path(summary['output_dir']) / 'report.html'}[/bold]")


def command_run(args: argparse.Namespace) -> int:
    from pipeline.progress import StageClock, console

    out = args.out or _default_out()
    if args.no_prefect:
        from pipeline.round import RoundContext, run_round

        ctx = RoundContext(dtks=args.dtks, dukcapil=args.dukcapil, out=out, model_path=args.model,
                           decisions=args.decisions, decision_log=args.decision_log or None, full_nik=args.full_nik,
                           allow_partial_dukcapil=args.allow_partial_dukcapil)
        if args.as_of:
            ctx.as_of = args.as_of
        clock = StageClock(quiet=args.quiet)
        summary = run_round(ctx, clock)
        timings = clock.timings
    else:
        from pipeline.flows.verval import verval_round

        summary = verval_round(
            dtks=args.dtks, dukcapil=args.dukcapil, out=out, model_path=args.model, as_of=args.as_of, quiet=args.quiet,
            decisions=args.decisions, decision_log=args.decision_log or None, full_nik=args.full_nik,
            allow_partial_dukcapil=args.allow_partial_dukcapil,
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
        result = generate_sample(args.n, args.seed, Path(args.out), fmt=args.format)
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

    return run_benchmark(n=args.n, seed=args.seed, work=args.dir, fmt=args.format, through_prefect=args.prefect, score=args.score)


def command_blocking(args: argparse.Namespace) -> int:
    import polars as pl

    from pipeline.matching.diagnostics import blocking_report_for_round
    from pipeline.progress import console

    report = blocking_report_for_round(Path(args.round), Path(args.truth), Path(args.model) if args.model else None)
    with pl.Config(tbl_rows=50, float_precision=4, tbl_hide_dataframe_shape=True):
        console.print(str(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verval", description="Verifikasi dan validasi DTKS terhadap Dukcapil.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one verification round")
    run.add_argument("--dtks", required=True, help="DTKS extract: CSV, Parquet or XLSX")
    run.add_argument("--dukcapil", required=True, help="Dukcapil extract: CSV, Parquet or XLSX")
    run.add_argument("--out", help="output folder: new, empty, or the --out of a previous round (default: reports/round-YYYYMMDD-HHMMSS)")
    run.add_argument("--model", help="matching model JSON (default: pipeline/rules/model.json)")
    run.add_argument("--as-of", help="date of the round, YYYY-MM-DD (default: today in Asia/Jakarta)")
    run.add_argument("--decisions", help="filled anomalies.xlsx / CSV of the same columns, or a folder of them")
    run.add_argument("--decision-log", default=str(PROJECT_DIR / "data" / "decisions" / "decisions.jsonl"),
                     help="append-only log of reviewers' decisions, read by every round (default: data/decisions/decisions.jsonl)")
    run.add_argument("--full-nik", action="store_true", help="write full NIKs into anomalies.xlsx (default: masked)")
    run.add_argument("--allow-partial-dukcapil", action="store_true",
                     help="run even when the Dukcapil extract is empty, has no tanggal_meninggal column, or is far smaller than DTKS")
    run.add_argument("--no-prefect", action="store_true", help="run the stages directly, without a Prefect flow run")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.set_defaults(handler=command_run)

    sample = commands.add_parser("sample", help="write synthetic DTKS and Dukcapil extracts with truth labels")
    sample.add_argument("--n", type=int, default=10_000, help="DTKS rows")
    sample.add_argument("--seed", type=int, default=42)
    sample.add_argument("--out", required=True)
    sample.add_argument("--format", choices=("csv", "parquet"), default="csv")
    sample.set_defaults(handler=command_sample)

    serve = commands.add_parser("serve", help="serve the scheduled deployment from prefect.yaml (needs `prefect server start`)")
    serve.add_argument("--deployment", default="verval-semesteran")
    serve.set_defaults(handler=command_serve)

    blocking = commands.add_parser("blocking", help="per blocking rule: candidate pairs and share of true pairs reached")
    blocking.add_argument("--round", required=True, help="output folder of a round (uses its staging/records.parquet)")
    blocking.add_argument("--truth", required=True, help="folder with truth_rows.csv from `verval sample`")
    blocking.add_argument("--model", help="matching model JSON (default: pipeline/rules/model.json)")
    blocking.set_defaults(handler=command_blocking)

    bench = commands.add_parser("bench", help="generate N rows, run the round, print per-stage time and peak memory")
    bench.add_argument("--n", type=int, default=1_000_000)
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--dir", help="work folder (default: a temporary folder)")
    bench.add_argument("--format", choices=("csv", "parquet"), default="csv")
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
