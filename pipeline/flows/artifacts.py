"""What an analyst sees of each round in the Prefect UI: a markdown summary, a table of
counts per anomaly code and the headline monev figures of every round at the same --out.
Aggregates only: no NIK, name or birth date (UU 27/2022)."""

from __future__ import annotations

from pipeline.contract import anomaly_rules, outcome_rules


def summary_markdown(summary: dict) -> str:
    rec = summary["reconciliation"]
    status = "seimbang" if rec["balanced"] else "TIDAK SEIMBANG"
    lines = [
        f"# Putaran verval {summary.get('as_of', '')}",
        "",
        f"**Rekonsiliasi ({status})**: masuk {rec['rows_in']:,} = "
        + " + ".join(f"{o.label} {rec[name]:,}" for name, o in outcome_rules().items()),
        "",
        "| kode | arti | dikeluarkan | diperiksa | peringatan |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    rules = anomaly_rules()
    for code, counts in summary["anomalies_by_code"].items():
        lines.append(
            f"| {code} | {rules[code].label_id} | {counts.get('exclude', 0):,} | {counts.get('review', 0):,} | {counts.get('warn', 0):,} |"
        )
    decisions = summary.get("decisions", {})
    if decisions:
        lines += ["", f"Keputusan pemeriksa diterapkan: {decisions.get('applied', 0):,}; usang: {decisions.get('stale', 0):,}; "
                      f"ditolak (format salah): {decisions.get('malformed', 0):,}."]
    if summary.get("output_dir"):
        lines += ["", f"Keluaran: `{summary['output_dir']}`"]
    workbooks = summary.get("workbooks")
    if workbooks:
        lines += ["", f"Lembar kerja pemeriksa: {workbooks['files']:,} file per kabupaten/kota dan `{workbooks['national']}` "
                      f"di folder `{workbooks['folder']}/`."]
    return "\n".join(lines)


def counts_table(summary: dict) -> list[dict]:
    rules = anomaly_rules()
    return [
        {"kode": code, "tingkat": rules[code].severity, "dikeluarkan": c.get("exclude", 0),
         "diperiksa": c.get("review", 0), "peringatan": c.get("warn", 0)}
        for code, c in summary["anomalies_by_code"].items()
    ]


def monev_table(output_dir: str | None) -> list[dict]:
    """The headline monev figures (national, one row per round at this --out), from the
    round's indicators.parquet; empty when there is none."""
    from pathlib import Path

    from pipeline.monev import INDICATORS_FILE, headline

    path = Path(output_dir) / INDICATORS_FILE if output_dir else None
    return headline(path) if path is not None and path.is_file() else []


def publish_artifacts(summary: dict) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(summary_markdown(summary), key="verval-ringkasan", description="Ringkasan putaran verval")
    create_table_artifact(counts_table(summary), key="verval-anomali", description="Jumlah baris per kode anomali")
    monev = monev_table(summary.get("output_dir"))
    if monev:
        create_table_artifact(monev, key="verval-monev", description="Monev nasional per putaran (angka agregat)")
