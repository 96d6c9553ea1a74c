"""Monev (monitoring dan evaluasi) across rounds: per kabupaten/kota and per round, how the
register is kept: rows in, verified, the review backlog, exclusions by reason, inclusion
errors found per 1,000 rows, reviewers' decisions taken and outstanding, citizens'
objections received and resolved. Aggregates only: no NIK, name or id_dtks.

Each round writes `indicators.parquet`: its own per-kabupaten indicators plus those of the
earlier rounds published at the same --out (the previous round folder is replaced on
publish, so the history travels forward, as history.json does). `verval monev` lays them
out as monev.html, from one --out's indicators or from several round folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from pipeline.checks.wilayah import region_names, with_current_kabupaten
from pipeline.contract import OUTCOME, ROW_OUTCOMES, outcome_rules
from pipeline.errors import InputError
from pipeline.lookup.index import exclusion_reason

INDICATORS_FILE = "indicators.parquet"
OUTCOME_FILES = {outcome_rules()[o].file: outcome_rules()[o].key for o in ROW_OUTCOMES}
EXCLUDED_KEY = outcome_rules()[OUTCOME.excluded].key
REASON_COLUMNS = {"meninggal": "keluar_meninggal", "tercatat_ganda": "keluar_ganda",
                  "pindah_domisili": "keluar_pindah", "tidak_layak": "keluar_tidak_layak"}
COUNTS = ["baris", *OUTCOME_FILES.values(), *REASON_COLUMNS.values(),
          "keputusan_diambil", "keputusan_tertunda", "tanggapan_diterima", "tanggapan_selesai"]

# What the page shows, in order. A rate is ratio[0] / ratio[1] * scale, recomputed from
# the sums at every level (a province's rate is not the mean of its kabupaten's).
INDICATORS = [
    {"key": "baris", "label": "Baris DTKS terbaca"},
    {"key": "terverifikasi", "label": "Terverifikasi"},
    {"key": "diperiksa", "label": "Antrean pemeriksaan (baris diperiksa)"},
    {"key": "dikeluarkan", "label": "Dikeluarkan"},
    {"key": "keluar_meninggal", "label": "Dikeluarkan: meninggal"},
    {"key": "keluar_ganda", "label": "Dikeluarkan: tercatat ganda"},
    {"key": "keluar_pindah", "label": "Dikeluarkan: pindah domisili"},
    {"key": "keluar_tidak_layak", "label": "Dikeluarkan: tidak layak"},
    {"key": "salah_sasaran_per_1000", "label": "Salah sasaran ditemukan per 1.000 baris",
     "ratio": ["dikeluarkan", "baris"], "scale": 1000},
    {"key": "keputusan_diambil", "label": "Keputusan pemeriksa diterapkan"},
    {"key": "keputusan_tertunda", "label": "Kasus menunggu keputusan"},
    {"key": "tanggapan_diterima", "label": "Tanggapan warga diterima (kumulatif)"},
    {"key": "tanggapan_selesai", "label": "Tanggapan warga selesai (kumulatif)"},
]
SCHEMA = {"as_of": pl.String, "kode_kabupaten": pl.String, **{c: pl.Int64 for c in COUNTS}}


def _scan(round_dir: Path, name: str) -> pl.LazyFrame | None:
    path = round_dir / name
    return pl.scan_parquet(path) if path.is_file() else None


def _per_kab(frame: pl.LazyFrame | None, rows: pl.LazyFrame, name: str) -> pl.LazyFrame:
    """Count of `frame`'s rows per kabupaten of their id_dtks."""
    if frame is None:
        return pl.LazyFrame(schema={"kode_kabupaten": pl.String, name: pl.Int64})
    return frame.join(rows.select("id_dtks", "kode_kabupaten"), on="id_dtks", how="inner").group_by(
        "kode_kabupaten").agg(pl.len().cast(pl.Int64).alias(name))


def round_indicators(round_dir: Path) -> pl.DataFrame:
    """This round's indicators per kabupaten/kota (current code; retired Papua codes are
    mapped to their successors), from its Parquet outputs."""
    round_dir = Path(round_dir)
    summary_path = round_dir / "summary.json"
    if not summary_path.is_file():
        raise InputError(f"{round_dir}: summary.json not found; is this the output folder of a verval round?")
    as_of = json.loads(summary_path.read_text(encoding="utf-8")).get("as_of") or round_dir.name
    parts = []
    for name, outcome in OUTCOME_FILES.items():
        frame = _scan(round_dir, name)
        if frame is None:
            raise InputError(f"{round_dir}: {name} not found")
        parts.append(frame.select("id_dtks", "kode_wilayah", "exclude_codes", outcome=pl.lit(outcome)))
    rows = with_current_kabupaten(pl.concat(parts, how="vertical_relaxed"), "kode_wilayah", "kode_kabupaten")
    outcomes = rows.group_by("kode_kabupaten").agg(
        baris=pl.len().cast(pl.Int64), **{o: (pl.col("outcome") == o).sum().cast(pl.Int64) for o in OUTCOME_FILES.values()}
    )
    excluded = rows.filter(pl.col("outcome") == EXCLUDED_KEY)
    reasons = (
        exclusion_reason(excluded).join(excluded.select("id_dtks", "kode_kabupaten"), on="id_dtks")
        .group_by("kode_kabupaten", "reason").len()
        .collect()
        .pivot(on="reason", index="kode_kabupaten", values="len")
    )
    for reason, column in REASON_COLUMNS.items():
        reasons = reasons.rename({reason: column}) if reason in reasons.columns else reasons.with_columns(pl.lit(0).alias(column))
    applied = _scan(round_dir, "decisions_applied.parquet")
    anomalies = _scan(round_dir, "anomalies.parquet")
    objections = _scan(round_dir, "objections.parquet")
    tables = [
        reasons.lazy().select("kode_kabupaten", *REASON_COLUMNS.values()),
        _per_kab(applied.filter(pl.col("status").str.starts_with("applied")) if applied is not None else None,
                 rows, "keputusan_diambil"),
        _per_kab(anomalies.filter(pl.col("action") == "review") if anomalies is not None else None, rows, "keputusan_tertunda"),
        _per_kab(objections.filter(pl.col("state") != "stale") if objections is not None else None, rows, "tanggapan_diterima"),
        _per_kab(objections.filter(pl.col("state").is_in(["accepted", "rejected"])) if objections is not None else None,
                 rows, "tanggapan_selesai"),
    ]
    result = outcomes
    for table in tables:
        result = result.join(table, on="kode_kabupaten", how="left")
    return (
        result.with_columns(as_of=pl.lit(as_of))
        .select(list(SCHEMA))
        .with_columns(pl.col(COUNTS).fill_null(0))
        .cast(SCHEMA)
        .collect()
        .sort("kode_kabupaten")
    )


def carried_history(previous_dir: Path | None, current: pl.DataFrame) -> pl.DataFrame:
    """indicators.parquet of a round: the previous round's (its own and earlier ones),
    without any round of the same date, then this round; oldest first."""
    frames = []
    if previous_dir is not None and (Path(previous_dir) / INDICATORS_FILE).is_file():
        earlier = pl.read_parquet(Path(previous_dir) / INDICATORS_FILE)
        frames.append(earlier.filter(~pl.col("as_of").is_in(current["as_of"].unique().implode())).select(list(SCHEMA)).cast(SCHEMA))
    frames.append(current)
    return pl.concat(frames).sort("as_of", "kode_kabupaten")


def gather(rounds: list[Path] | None = None, out: Path | None = None) -> pl.DataFrame:
    """Indicators of several round folders (each computed from its outputs), or the
    history carried by one --out folder."""
    if out is not None:
        path = Path(out) / INDICATORS_FILE
        if not path.is_file():
            raise InputError(f"--out {out}: {INDICATORS_FILE} not found (rounds write it from this version on); "
                             "pass the round folders with --rounds instead")
        return pl.read_parquet(path).cast(SCHEMA).sort("as_of", "kode_kabupaten")
    frames = [round_indicators(Path(r)) for r in rounds or []]
    if not frames:
        raise InputError("give the round folders with --rounds, or one --out folder")
    table = pl.concat(frames)
    dates = table.group_by("as_of").agg(pl.col("kode_kabupaten").is_duplicated().any().alias("twice"))
    if dates["twice"].any():
        twice = ", ".join(dates.filter("twice")["as_of"].to_list())
        raise InputError(f"--rounds: two folders are rounds of the same date ({twice}); give each round once")
    return table.sort("as_of", "kode_kabupaten")


def with_rates(frame: pl.DataFrame) -> pl.DataFrame:
    for spec in INDICATORS:
        if "ratio" in spec:
            top, bottom = spec["ratio"]
            frame = frame.with_columns(
                pl.when(pl.col(bottom) > 0).then(pl.col(top) / pl.col(bottom) * spec["scale"]).otherwise(None)
                .round(2).alias(spec["key"])
            )
    return frame


def national(table: pl.DataFrame) -> pl.DataFrame:
    """One row per round: the sums over every kabupaten, with rates recomputed."""
    return with_rates(table.group_by("as_of").agg(pl.col(COUNTS).sum()).sort("as_of"))


def headline(indicators_path: Path) -> list[dict]:
    """The national figures of every round in an indicators.parquet (for the Prefect
    artifact): one dict per round, labels in Bahasa."""
    rows = national(pl.read_parquet(indicators_path).cast(SCHEMA))
    labels = {spec["key"]: spec["label"] for spec in INDICATORS}
    return [{"putaran": row["as_of"], **{labels[k]: row[k] for k in labels}} for row in rows.to_dicts()]


def page_data(table: pl.DataFrame) -> dict:
    """What monev.html embeds: rounds, indicators, region names, one row per (round,
    kabupaten) as an array in COUNTS order."""
    names = region_names()
    kab = table.select("kode_kabupaten").unique().join(names, on="kode_kabupaten", how="left").with_columns(
        nama_kabupaten=pl.coalesce("nama_kabupaten", pl.format("kode {} (tidak dikenal)", "kode_kabupaten")),
        kode_provinsi=pl.coalesce("kode_provinsi", pl.col("kode_kabupaten").str.slice(0, 2)),
    ).sort("kode_kabupaten")
    provinces = (
        kab.select("kode_provinsi", "nama_provinsi").unique("kode_provinsi")
        .with_columns(nama_provinsi=pl.coalesce("nama_provinsi", pl.format("kode {} (tidak dikenal)", "kode_provinsi")))
        .sort("kode_provinsi")
    )
    return {
        "rounds": sorted(table["as_of"].unique().to_list()),
        "counts": COUNTS,
        "indicators": INDICATORS,
        "provinces": [{"kode": k, "nama": n} for k, n in provinces.iter_rows()],
        "kabupaten": [{"kode": k, "nama": n, "prov": p} for k, n, p in kab.select("kode_kabupaten", "nama_kabupaten", "kode_provinsi").iter_rows()],
        "rows": table.select("as_of", "kode_kabupaten", *COUNTS).rows(),
    }


def render_monev(table: pl.DataFrame) -> str:
    from pipeline.report.pages import asset, render

    rows = national(table)
    return render(
        "monev.html.j2", asset("monev.js"), page_data=page_data(table), indicators=INDICATORS,
        national=rows.to_dicts(), rounds=rows["as_of"].to_list(),
    )


def write_monev(table: pl.DataFrame, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(render_monev(table), encoding="utf-8")
    temporary.replace(path)
    return path
