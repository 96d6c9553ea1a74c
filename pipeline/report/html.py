"""report.html: one self-contained page for reviewers, in Bahasa Indonesia.

This module computes what the page shows; templates/report.html.j2 (with the shared
layout, macros and stylesheet of pipeline/report/pages.py) lays it out. Everything the
page needs is inside the file (CSS, JavaScript, SVG charts, data as JSON), and a
Content-Security-Policy forbids any request, so it opens offline and cannot leak what it
shows. Personal data is masked (pipeline/report/mask.py):
initials instead of names, NIKs as 3201********0012, birth year instead of birth date.
Reviewers find a record by id_dtks in the Parquet outputs or the workbook.

Scale: aggregates (per code, province, kabupaten) cover every row; lists embed only
the first `max_cases` cases of each anomaly code, in a fixed order (severity, action,
id_dtks), so the page stays a few MB at a million input rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.checks.wilayah import region_names, with_current_kabupaten
from pipeline.contract import (
    CODE, OUTCOME, OUTCOMES, ROW_OUTCOMES, action_rules, anomaly_rules, national_workbook, outcome_rules, severities, workbook_settings,
)
from pipeline.lookup.objections import is_objection_id
from pipeline.report.mask import birth_year, mask_name, mask_nik, scrub_text
from pipeline.report.pages import asset, fmt_dec, fmt_int, render

MAX_CASES = 500

SEVERITIES = tuple(severities())
SEVERITY_LABELS = severities()
ACTIONS = tuple(sorted(action_rules(), key=lambda name: -action_rules()[name].rank))  # strongest first
ACTION_LABELS = {name: action.label for name, action in action_rules().items()}
ACTION_COLORS = dict(zip(ACTIONS, ("#b42318", "#c4820e", "#9aa5b1")))
OUTCOME_LABELS = {name: outcome.label for name, outcome in outcome_rules().items()}
OUTCOME_COLORS = dict(zip(OUTCOMES, ("#1f7a3d", "#c4820e", "#b42318", "#6941c6")))
OUTCOME_FILES = {name: outcome_rules()[name].file for name in ROW_OUTCOMES}
# Outcomes that need someone's attention, most drastic first (bars per region).
NEEDS_ACTION = (OUTCOME.excluded, OUTCOME.review)

# Codes whose case is shown beside the civil-registry record (catalogue: registry_fields).
DUKCAPIL_CODES = tuple(code for code, rule in anomaly_rules().items() if rule.registry_fields)

# Matching evidence: comparison names and levels (pipeline/matching model.json) in words.
EVIDENCE_FIELDS = {
    "name": "nama", "patronym": "bin/binti", "dob": "tanggal lahir", "nik": "NIK", "sex": "jenis kelamin",
    "no_kk": "nomor KK", "region": "wilayah",
}
EVIDENCE_LEVELS = {
    "null": "kosong di salah satu", "exact": "sama persis", "agree": "sama", "different": "berbeda",
    "token_order": "kata sama, urutan beda", "phonetic_or_jw95": "bunyi sama / sangat mirip", "jw88": "mirip",
    "shares_token": "ada kata yang sama", "exact_placeholder": "sama (tanggal pengganti)",
    "day_month_swapped": "hari dan bulan tertukar", "year_off_by_one": "tahun selisih satu",
    "one_part_differs": "satu bagian beda", "both_verified_different": "keduanya sah di Dukcapil, berbeda",
    "one_edit_or_transposition": "beda satu digit / dua digit tertukar", "same_desa": "desa sama",
    "same_kabupaten": "kabupaten sama", "tokens_covered": "kata yang satu tercakup di yang lain",
    "years_far_apart": "tahun lahir berjauhan", "both_valid_different": "keduanya sah, berbeda",
    "exact_already_judged": "sama (sudah dinilai lewat NIK)", "two_edits": "beda dua digit",
    "one_vowel_apart": "beda satu huruf vokal (nama saudara kembar?)",
    "same_person_namesake": "orang yang sama, tetapi ada orang lain senama lahir hari itu (kembar?)",
}
EVIDENCE_ITEM = re.compile(r"(?P<field>\w+)=(?P<level>[\w-]+) \((?P<weight>[+-]?\d+(?:\.\d+)?)\)")

LINK_LABELS = {
    "identity": {"strong": "kuat", "consistent": "konsisten", "weak": "lemah", "mismatch": "orang lain"},
    "dob_agreement": {"exact": "sama", "close": "hampir sama", "different": "berbeda"},
}


# --------------------------------------------------------------------------- page assembly


SECTIONS = (
    ("rekonsiliasi", "Rekonsiliasi"),
    ("kode", "Anomali per kode"),
    ("wilayah", "Per provinsi dan kabupaten/kota"),
    ("daftar", "Daftar anomali"),
    ("duplikat", "Klaster duplikat"),
    ("dukcapil", "DTKS dibanding Dukcapil"),
    ("perubahan", "Perubahan sejak putaran sebelumnya"),
    ("mutu", "Mutu data"),
    ("proses", "Ringkasan proses"),
    ("karantina", "Karantina"),
    ("waktu", "Waktu per tahap"),
)


@dataclass
class Page:
    """The data of every interactive list; templates/report.html.j2 lays out the rest."""

    lists: dict[str, dict] = field(default_factory=dict)

    def list_mount(self, name: str, spec: dict) -> str:
        """Register a list's data under the name the page's mount element carries."""
        self.lists[name] = spec
        return name


# --------------------------------------------------------------------------- chart data


def bar_chart(bars: list[tuple[str, dict[str, int]]], segments: dict[str, tuple[str, str]], width: int = 860) -> dict:
    """Geometry of horizontal stacked bars (macros.html.j2 draws them). bars: (label,
    {segment: value}); segments: {segment: (label, colour)} in stacking order."""
    label_width, value_width, row, top = 260, 90, 22, 4
    plot = width - label_width - value_width
    largest = max((sum(values.values()) for _, values in bars), default=0) or 1
    rows = []
    for i, (label, values) in enumerate(bars):
        y = top + i * row
        x = float(label_width)
        parts = []
        for key, (seg_label, colour) in segments.items():
            value = values.get(key, 0)
            if not value:
                continue
            w = max(plot * value / largest, 1.0)
            parts.append({"x": f"{x:.1f}", "w": f"{w:.1f}", "colour": colour, "label": seg_label, "value": value})
            x += w
        rows.append({"label": label, "short": label if len(label) <= 38 else label[:36] + "…", "text_y": y + 14,
                     "bar_y": y + 3, "segments": parts, "total_x": f"{x + 5:.1f}", "total": sum(values.values())})
    return {"rows": rows, "width": width, "height": top + row * len(bars) + 4, "label_x": label_width - 6, "bar_height": row - 7}


def legend(segments: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    return list(segments.values())


def sparkline(values: list[int], width: int = 120, height: int = 26) -> dict | None:
    if len(values) < 2:
        return None
    top = max(values) or 1
    step = (width - 6) / (len(values) - 1)
    points = [(3 + i * step, height - 3 - (height - 6) * v / top) for i, v in enumerate(values)]
    return {"width": width, "height": height, "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in points),
            "last_x": f"{points[-1][0]:.1f}", "last_y": f"{points[-1][1]:.1f}"}


def marked(text: object, cls: str | None = None, tag: str = "span") -> dict:
    """A table cell with markup: text in a <span class=...> (or <b>)."""
    return {"text": "" if text is None else str(text), "cls": cls, "tag": tag}


# --------------------------------------------------------------------------- reading the round


def scan(work_dir: Path, name: str) -> pl.LazyFrame | None:
    path = work_dir / name
    return pl.scan_parquet(path) if path.is_file() else None


def load_records(work_dir: Path) -> pl.LazyFrame:
    """Every parsed DTKS row with its outcome and current kabupaten code."""
    parts = [
        frame.with_columns(outcome=pl.lit(outcome))
        for outcome, name in OUTCOME_FILES.items()
        if (frame := scan(work_dir, name)) is not None
    ]
    schema = {c: (pl.Date if c == "tanggal_lahir" else pl.String) for c in RECORD_COLUMNS}
    if not parts:
        return pl.LazyFrame(schema=schema | {"kode_kabupaten": pl.String})
    # Optional extract columns (desil, hubungan_keluarga) are null when the round had none.
    return with_current_kabupaten(pl.concat([with_columns_of(p, schema) for p in parts], how="vertical_relaxed"),
                                  "kode_wilayah", "kode_kabupaten")


RECORD_COLUMNS = [
    "id_dtks", "nik_raw", "nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir", "alamat",
    "kode_wilayah", "program", "desil", "hubungan_keluarga", "outcome",
]


def region_lookup() -> pl.LazyFrame:
    return region_names().lazy()


def with_region(frame: pl.LazyFrame, code: str = "kode_kabupaten") -> pl.LazyFrame:
    """Add nama_kabupaten, kode_provinsi, nama_provinsi for a 4-digit kabupaten column."""
    return frame.join(region_lookup(), left_on=code, right_on="kode_kabupaten", how="left").with_columns(
        nama_kabupaten=pl.coalesce(pl.col("nama_kabupaten"), pl.format("kode {} (tidak dikenal)", pl.col(code))),
        kode_provinsi=pl.coalesce(pl.col("kode_provinsi"), pl.col(code).str.slice(0, 2)),
        nama_provinsi=pl.coalesce(pl.col("nama_provinsi"), pl.format("kode {} (tidak dikenal)", pl.col(code).str.slice(0, 2))),
    )


def load_anomalies(work_dir: Path) -> pl.LazyFrame:
    frame = scan(work_dir, "anomalies.parquet")
    if frame is None:
        from pipeline.contract import ANOMALY_SCHEMA

        return pl.LazyFrame(schema=ANOMALY_SCHEMA)
    return frame


def rows_with_ids(frame: pl.LazyFrame, ids: pl.Series, column: str = "id_dtks") -> pl.LazyFrame:
    """frame's rows whose `column` is one of `ids`: the few rows a list shows, read by their
    ids instead of joining them to every row (at 10M rows the clusters' section took 9.7 s
    and 3.2 GB so)."""
    return frame.filter(pl.col(column).is_in(ids.drop_nulls().unique().implode()))


def rank_of(column: str, order: tuple[str, ...]) -> pl.Expr:
    return pl.col(column).replace_strict(order, list(range(len(order))), default=len(order), return_dtype=pl.Int8)


def ranked(
    frame: pl.LazyFrame, severity: str = "severity", action: str = "action", id_dtks: str = "id_dtks", code: str = "anomaly_code",
    within: tuple[str, ...] = (),
) -> pl.LazyFrame:
    """The fixed order of every list: severity, action, id_dtks, code (within each value of
    the `within` columns, e.g. a list per kabupaten). Joins do not keep row order, so every
    list is sorted with this last."""
    return (
        frame.with_columns(_sev=rank_of(severity, SEVERITIES), _act=rank_of(action, ACTIONS))
        .sort(*within, "_sev", "_act", id_dtks, code)
        .drop("_sev", "_act")
    )


def first_cases(anomalies: pl.LazyFrame, max_cases: int) -> pl.DataFrame:
    """The first max_cases anomalies of each code, in the fixed order."""
    return ranked(anomalies).filter(pl.int_range(pl.len()).over("anomaly_code") < max_cases).collect()


def masked_case_rows(cases: pl.DataFrame, records: pl.LazyFrame) -> pl.DataFrame:
    """Display columns of anomaly rows: region names and masked personal data.
    related_id is an id_dtks for duplicates and shared NIKs but a Dukcapil NIK for the
    link codes: anything that is not a known id_dtks is masked as a NIK."""
    known_ids = rows_with_ids(records, cases["related_id"]).select(related_id=pl.col("id_dtks"), _related_is_row=pl.lit(True))
    people = rows_with_ids(records, cases["id_dtks"]).select("id_dtks", "nik", "nama", "jenis_kelamin", "tanggal_lahir", "kode_kabupaten")
    frame = (
        cases.lazy()
        .join(people, on="id_dtks", how="left")
        .join(known_ids, on="related_id", how="left")
        .pipe(with_region)
        .select(
            id=pl.col("id_dtks"),
            code=pl.col("anomaly_code"),
            sev=pl.col("severity"),
            act=pl.col("action"),
            kab=pl.col("nama_kabupaten"),
            nik=mask_nik(pl.col("nik")),
            nama=mask_name(pl.col("nama")),
            jk=pl.col("jenis_kelamin"),
            thn=birth_year(pl.col("tanggal_lahir")).cast(pl.String),
            detail=scrub_text(pl.col("detail")),
            rel=pl.when(pl.col("_related_is_row").fill_null(False) | is_objection_id(pl.col("related_id")))
            .then(pl.col("related_id")).otherwise(mask_nik(pl.col("related_id"))),
            score=pl.col("score").round(4),
            bukti=pl.col("evidence"),
        )
    )
    return ranked(frame, "sev", "act", "id", "code").collect()


def list_spec(
    frame: pl.DataFrame, columns: list[dict], facets: list[dict], search: list[str], placeholder: str, unit: str = "baris"
) -> dict:
    """Data of one interactive list: rows as arrays (smaller than objects) plus the
    columns, drop-down filters and searchable fields the JavaScript needs."""
    return {
        "kind": "table",
        "fields": frame.columns,
        "rows": frame.rows(),
        "columns": columns,
        "facets": facets,
        "search": search,
        "placeholder": placeholder,
        "unit": unit,
    }


def code_labels() -> dict[str, str]:
    return {code: f"{code}: {rule.label_id}" for code, rule in anomaly_rules().items()}


def shown_note(shown: int, total: int, what: str = "kasus") -> str:
    if shown >= total:
        return f"Menampilkan semua {fmt_int(total)} {what}."
    return (
        f"Menampilkan {fmt_int(shown)} dari {fmt_int(total)} {what}; "
        f"daftar lengkap di anomalies.parquet / lembar kerja di folder {workbook_settings()['folder']}/."
    )


@dataclass
class RoundData:
    """What the sections read: lazy frames over the round's outputs, the count of each
    code, and the cases shown in the lists (the first max_cases of each code)."""

    work_dir: Path
    summary: dict
    max_cases: int
    records: pl.LazyFrame
    anomalies: pl.LazyFrame
    totals: dict[str, int]
    cases: pl.DataFrame

    @classmethod
    def load(cls, work_dir: Path, summary: dict, max_cases: int) -> RoundData:
        anomalies = load_anomalies(work_dir)
        totals = {code: 0 for code in anomaly_rules()} | dict(anomalies.group_by("anomaly_code").len().collect().iter_rows())
        return cls(
            work_dir=work_dir, summary=summary, max_cases=max_cases, records=load_records(work_dir),
            anomalies=anomalies, totals=totals, cases=first_cases(anomalies, max_cases),
        )


# --------------------------------------------------------------------------- sections


def reconciliation_section(summary: dict) -> dict:
    rec = summary["reconciliation"]
    parts = {key: int(rec.get(key, 0)) for key in OUTCOMES}
    total = sum(parts.values())
    segments = {key: (OUTCOME_LABELS[key], OUTCOME_COLORS[key]) for key in OUTCOMES}
    return {
        "rows_in": rec["rows_in"], "parts": parts, "total": total,
        "balanced": bool(rec.get("balanced")) and total == int(rec["rows_in"]) and int(rec.get("sum", total)) == total,
        "cards": [(key, OUTCOME_LABELS[key], parts[key]) for key in OUTCOMES],
        "chart": bar_chart([("Baris DTKS", parts)], segments), "legend": legend(segments),
    }


def action_words(rule) -> str:
    words = ACTION_LABELS.get(rule.action, rule.action)
    if rule.strong_action:
        words += " / kuat: " + ACTION_LABELS.get(rule.strong_action, rule.strong_action)
    return words


def codes_section(data: RoundData) -> dict:
    by_code = data.summary.get("anomalies_by_code", {})
    rows, bars = [], []
    for code, rule in anomaly_rules().items():
        counts = {action: int(by_code.get(code, {}).get(action, 0)) for action in ACTIONS}
        found = data.totals.get(code, 0)
        rows.append([
            code, rule.label_id, marked(SEVERITY_LABELS.get(rule.severity, rule.severity), f"sev-{rule.severity}"),
            action_words(rule), *(fmt_int(counts[a]) for a in ACTIONS), marked(fmt_int(sum(counts.values())), tag="b"),
            f"{fmt_int(min(found, data.max_cases))} dari {fmt_int(found)}",
        ])
        bars.append((code, counts))
    segments = {a: (ACTION_LABELS[a], ACTION_COLORS[a]) for a in ACTIONS}
    return {"rows": rows, "chart": bar_chart(bars, segments), "legend": legend(segments), "max_cases": data.max_cases}


def region_counts(records: pl.LazyFrame, anomalies: pl.LazyFrame) -> pl.DataFrame:
    """Per kabupaten: rows per outcome, anomalies in total and per code."""
    outcomes = records.group_by("kode_kabupaten").agg(
        baris=pl.len(),
        **{key: (pl.col("outcome") == key).sum() for key in OUTCOME_FILES},
    )
    per_code = (
        anomalies.select("id_dtks", "anomaly_code")
        .join(records.select("id_dtks", "kode_kabupaten"), on="id_dtks", how="inner")
        .group_by("kode_kabupaten", "anomaly_code").len()
        .collect()
    )
    codes = list(anomaly_rules())
    wide = (
        per_code.pivot(on="anomaly_code", index="kode_kabupaten", values="len").fill_null(0)
        if per_code.height else pl.DataFrame(schema={"kode_kabupaten": pl.String})
    )
    for code in codes:
        if code not in wide.columns:
            wide = wide.with_columns(pl.lit(0, dtype=pl.UInt32).alias(code))
    table = (
        outcomes.collect()
        .join(wide, on="kode_kabupaten", how="left")
        .with_columns(pl.col(codes).fill_null(0))
        .with_columns(anomali=pl.sum_horizontal(codes))
    )
    return with_region(table.lazy()).collect().sort("kode_kabupaten")


def need_bars(frame: pl.DataFrame, label) -> list[tuple[str, dict[str, int]]]:
    """Bars of rows needing action (excluded, review) per region; label(row) names a bar."""
    return [(label(r), {key: r[key] for key in NEEDS_ACTION}) for r in frame.iter_rows(named=True)]


def region_section(page: Page, data: RoundData) -> dict:
    regions = region_counts(data.records, data.anomalies)
    codes = list(anomaly_rules())
    numeric = ["baris", *ROW_OUTCOMES, "anomali", *codes]
    provinces = regions.group_by("kode_provinsi", "nama_provinsi").agg(pl.col(numeric).sum()).sort("kode_provinsi")
    top_kab = (
        regions.with_columns(_need=pl.sum_horizontal(NEEDS_ACTION)).filter(pl.col("_need") > 0)
        .sort(["_need", "kode_kabupaten"], descending=[True, False]).head(20)
    )
    segments = {key: (OUTCOME_LABELS[key], OUTCOME_COLORS[key]) for key in NEEDS_ACTION}
    province_chart = bar_chart(need_bars(provinces, lambda r: r["nama_provinsi"]), segments)
    kab_chart = bar_chart(need_bars(top_kab, lambda r: f"{r['nama_kabupaten']} ({r['nama_provinsi']})"), segments)

    count_columns = [
        {"key": "baris", "label": "Baris", "num": True},
        *({"key": o, "label": OUTCOME_LABELS[o].capitalize(), "num": True} for o in ROW_OUTCOMES),
        {"key": "anomali", "label": "Anomali", "num": True},
    ] + [{"key": code, "label": code, "num": True, "title": rule.label_id} for code, rule in anomaly_rules().items()]
    page.list_mount("provinsi", list_spec(
        provinces.select("kode_provinsi", "nama_provinsi", *numeric),
        [{"key": "kode_provinsi", "label": "Kode"}, {"key": "nama_provinsi", "label": "Provinsi"}] + count_columns,
        facets=[], search=["kode_provinsi", "nama_provinsi"], placeholder="Cari provinsi…", unit="provinsi",
    ))
    page.list_mount("kabupaten", list_spec(
        regions.select("kode_kabupaten", "nama_kabupaten", "kode_provinsi", "nama_provinsi", *numeric),
        [{"key": "kode_kabupaten", "label": "Kode"}, {"key": "nama_kabupaten", "label": "Kabupaten/kota"},
         {"key": "nama_provinsi", "label": "Provinsi"}] + count_columns,
        facets=[{"key": "nama_provinsi", "label": "Provinsi"}],
        search=["kode_kabupaten", "nama_kabupaten", "nama_provinsi"], placeholder="Cari kabupaten/kota…", unit="kabupaten/kota",
    ))
    return {"province_chart": province_chart, "kab_chart": kab_chart, "legend": legend(segments)}


def anomaly_list_section(page: Page, data: RoundData) -> dict:
    rows = masked_case_rows(data.cases, data.records)
    shown = dict(rows.group_by("code").len().iter_rows()) if rows.height else {}
    notes = [(code, ": " + shown_note(shown.get(code, 0), total)) for code, total in data.totals.items() if total]
    page.list_mount("anomalies", list_spec(
        rows,
        columns=[
            {"key": "id", "label": "id_dtks"},
            {"key": "code", "label": "Kode"},
            {"key": "sev", "label": "Tingkat", "labels": SEVERITY_LABELS, "cls": "sev"},
            {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "cls": "act"},
            {"key": "kab", "label": "Kabupaten/kota"},
            {"key": "nik", "label": "NIK (disamarkan)"},
            {"key": "nama", "label": "Inisial"},
            {"key": "jk", "label": "JK"},
            {"key": "thn", "label": "Tahun lahir"},
            {"key": "detail", "label": "Keterangan", "css": "text"},
            {"key": "rel", "label": "Terkait"},
            {"key": "score", "label": "Peluang", "num": True, "digits": 4},
            {"key": "bukti", "label": "Bukti per kolom", "css": "evidence"},
        ],
        facets=[
            {"key": "code", "label": "Kode", "labels": code_labels(), "order": list(anomaly_rules())},
            {"key": "kab", "label": "Kabupaten/kota"},
            {"key": "sev", "label": "Tingkat", "labels": SEVERITY_LABELS, "order": list(SEVERITIES)},
            {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "order": list(ACTIONS)},
        ],
        search=["id", "code", "kab", "nik", "nama", "detail", "rel"],
        placeholder="Cari id_dtks, kode, kabupaten, keterangan…",
    ))
    return {"notes": notes}


# --- duplicates


def parse_evidence(evidence: str | None) -> list[tuple[str, str, float]]:
    """'name=exact (+9.1); dob=exact (+10.6)' -> [("name", "exact", 9.1), ("dob", "exact", 10.6)].
    The page turns field and level codes into words (EVIDENCE_FIELDS, EVIDENCE_LEVELS)."""
    return [(m["field"], m["level"], float(m["weight"])) for m in EVIDENCE_ITEM.finditer(evidence or "")]


# (label, raw column compared for "differs", displayed column)
CLUSTER_FIELDS = (
    ("NIK", "nik", "nik_m"),
    ("Nama (inisial)", "nama", "nama_m"),
    ("Jenis kelamin", "jenis_kelamin", "jenis_kelamin"),
    ("Tahun lahir", "tanggal_lahir", "thn"),
    ("Tempat lahir", "tempat_lahir", "tempat_lahir"),
    ("Nomor KK", "no_kk", "kk_m"),
    ("Kode desa", "kode_wilayah", "kode_wilayah"),
    ("Kabupaten/kota", "kode_kabupaten", "nama_kabupaten"),
    ("Program", "program", "program"),
    ("Orang di Dukcapil", "dukcapil_person", "resolusi_m"),
)
RESOLUTION_WORDS = {"exact_nik": "NIK sama", "fuzzy": "fuzzy", "ambiguous": "ragu: dua orang mirip", "unresolved": "tidak ditemukan"}


def cluster_members(data: RoundData) -> tuple[pl.DataFrame, int]:
    """Members of the first max_cases clusters with more than one row (clusters holding a
    row a reviewer must decide on first, then by cluster_id), and the number of such clusters."""
    clusters = scan(data.work_dir, "duplicate_clusters.parquet")
    if clusters is None:
        return pl.DataFrame(), 0
    multi = clusters.filter(pl.col("cluster_size") > 1)
    total = multi.select(pl.col("cluster_id").n_unique()).collect().item()
    actions = data.anomalies.filter(pl.col("anomaly_code") == CODE.DUPLICATE_PERSON).select("id_dtks", "action")
    chosen = (
        multi.join(actions, on="id_dtks", how="left")
        .group_by("cluster_id").agg(needs_review=(pl.col("action") == "review").any())
        .sort(["needs_review", "cluster_id"], descending=[True, False])
        .head(data.max_cases)
    )
    resolution = scan(data.work_dir, "resolution.parquet")
    if resolution is None:
        resolution = pl.LazyFrame(schema={"id_dtks": pl.String, "resolution": pl.String, "dukcapil_person": pl.Int64,
                                          "dukcapil_nik": pl.String, "probability": pl.Float64})
    # Which civil-registry person each row resolved to, and how: rows of one cluster
    # resolved to different persons would be different people.
    resolved = resolution.select(
        "id_dtks", "dukcapil_person",
        resolusi_m=pl.concat_str([
            pl.col("resolution").replace_strict(RESOLUTION_WORDS, default=pl.col("resolution")),
            pl.when(pl.col("resolution") == "fuzzy").then(pl.format(" p={}", pl.col("probability").round(3))).otherwise(pl.lit("")),
            pl.when(pl.col("dukcapil_nik").is_not_null()).then(pl.lit(": ") + mask_nik(pl.col("dukcapil_nik"))).otherwise(pl.lit("")),
        ]),
    )
    shown = multi.join(chosen, on="cluster_id", how="inner").collect()
    members = (
        shown.lazy()
        .join(rows_with_ids(data.records, shown["id_dtks"]), on="id_dtks", how="left")
        .join(rows_with_ids(resolved, shown["id_dtks"]), on="id_dtks", how="left")
        .pipe(with_region)
        .with_columns(
            nik_m=mask_nik(pl.col("nik")),
            nama_m=mask_name(pl.col("nama")),
            kk_m=mask_nik(pl.col("no_kk")),
            thn=birth_year(pl.col("tanggal_lahir")),
        )
        .sort(["needs_review", "cluster_id", "is_canonical", "id_dtks"], descending=[True, False, True, False])
        .collect()
    )
    return members, total


def cluster_view(cluster_id: str, members: list[dict]) -> dict:
    """One cluster for the page: per field (CLUSTER_FIELDS, then the outcome) the members'
    displayed values side by side; `diff` lists the [field, member] cells whose raw value
    differs from the canonical row's; `evidence` the per-field evidence of each link."""
    canonical = next((m for m in members if m["is_canonical"]), members[0])
    values = [[m[shown] for m in members] for _, _, shown in CLUSTER_FIELDS]
    values.append([OUTCOME_LABELS.get(m["outcome"], m["outcome"]) for m in members])
    diff = [
        [f, i] for f, (_, raw, _) in enumerate(CLUSTER_FIELDS) for i, m in enumerate(members)
        if m is not canonical and m[raw] != canonical[raw]
    ]
    evidence = []
    for m in members:
        if m is canonical:
            continue
        probability = f": peluang {fmt_dec(m['match_probability'], 4)}" if m["match_probability"] is not None else ""
        evidence.append({
            "title": f"Bukti {m['id_dtks']} sama dengan {canonical['id_dtks']} (baris utama){probability}",
            "items": parse_evidence(m["evidence"]),
        })
    needs_review = bool(members[0]["needs_review"])
    return {
        "title": f"Klaster {cluster_id}: {len(members)} baris, {canonical['nama_kabupaten']}, "
                 + ("perlu diperiksa" if needs_review else "duplikat kuat, baris lain dikeluarkan"),
        "members": [m["id_dtks"] + (" (utama)" if m is canonical else "") for m in members],
        "values": values,
        "diff": diff,
        "evidence": evidence,
        "kab": canonical["nama_kabupaten"],
        "status": "review" if needs_review else "exclude",
        "search": " ".join([cluster_id, canonical["nama_kabupaten"], *(m["id_dtks"] for m in members)]),
    }


def duplicates_section(page: Page, data: RoundData) -> dict:
    members, total = cluster_members(data)
    views = []
    if members.height:
        for (cluster_id,), group in members.group_by("cluster_id", maintain_order=True):
            views.append(cluster_view(cluster_id, group.to_dicts()))
    page.list_mount("clusters", {
        "kind": "clusters",
        "rows": views,
        "fieldLabels": [label for label, _, _ in CLUSTER_FIELDS] + ["Hasil"],
        "evidenceFields": EVIDENCE_FIELDS,
        "evidenceLevels": EVIDENCE_LEVELS,
        "facets": [
            {"key": "status", "label": "Status", "labels": {"review": "perlu diperiksa", "exclude": "duplikat kuat"}},
            {"key": "kab", "label": "Kabupaten/kota"},
        ],
        "placeholder": "Cari id_dtks atau klaster…",
        "unit": "klaster",
    })
    return {"note": shown_note(len(views), total, "klaster")}


# --- Dukcapil beside DTKS


LINK_SCHEMA = {
    "id_dtks": pl.String, "link_method": pl.String, "dukcapil_source_line": pl.Int64, "dukcapil_nik": pl.String,
    "name_similarity": pl.Float64, "dob_agreement": pl.String, "identity": pl.String, "tanggal_meninggal": pl.Date,
    "kab_dukcapil": pl.String, "dukcapil_kode_wilayah": pl.String, "match_probability": pl.Float64, "evidence": pl.String,
}
PERSON_SCHEMA = {"d_nama": pl.String, "d_jk": pl.String, "d_lahir": pl.Date, "d_alamat": pl.String}


def with_columns_of(frame: pl.LazyFrame, schema: dict) -> pl.LazyFrame:
    """frame restricted to schema's columns; a column an older round lacks is null."""
    present = frame.collect_schema().names()
    return frame.select([pl.col(c).cast(t) if c in present else pl.lit(None, dtype=t).alias(c) for c, t in schema.items()])


def linked_dukcapil(work_dir: Path, cases: pl.LazyFrame, by_ids: bool = False) -> pl.LazyFrame:
    """For each (id_dtks, anomaly_code) in cases, the Dukcapil link the anomaly is about
    and the linked person (d_* columns, d_kab = kabupaten name).

    A row can have two links: by exact NIK and, when that NIK does not lead to the
    person, a fuzzy one. A code declared with registry_record = "exact_nik"
    (IDENTITY_MISMATCH: the other person holding the NIK) is about the exact-NIK record;
    any other code about the link whose NIK is its related_id (DECEASED/RELOCATED, or the
    NIK a fuzzy link suggests), else the exact-NIK link. by_ids: the cases are the few a
    list shows, whose links and civil-registry records are read by their ids
    (rows_with_ids) instead of being joined to every one."""
    links = scan(work_dir, "dukcapil_links.parquet")
    if links is None:
        keys = {"id_dtks": pl.String, "anomaly_code": pl.String}
        return pl.LazyFrame(schema=keys | LINK_SCHEMA | PERSON_SCHEMA | {"d_kab": pl.String})
    if by_ids:
        few = cases.collect()
        links, cases = rows_with_ids(links, few["id_dtks"]), few.lazy()
    exact = pl.col("link_method").str.starts_with("exact")
    chosen = (
        cases.select("id_dtks", "anomaly_code", "related_id")
        .join(with_columns_of(links, LINK_SCHEMA), on="id_dtks", how="inner")
        .with_columns(
            _priority=pl.when(pl.col("anomaly_code").is_in(EXACT_RECORD_CODES) & exact).then(0)
            .when(pl.col("dukcapil_nik") == pl.col("related_id")).then(1)
            .when(exact).then(2)
            .otherwise(3)
        )
        .sort("id_dtks", "anomaly_code", "_priority", "link_method")
        .unique(["id_dtks", "anomaly_code"], keep="first")
        .drop("_priority", "related_id")
    )
    staged = scan(work_dir, "staging/dukcapil.parquet")
    if staged is not None:
        if by_ids:
            picked = chosen.collect()
            chosen = picked.lazy()
            person = rows_with_ids(staged, picked["dukcapil_source_line"], "source_line")
        else:
            person = staged.join(chosen.select(source_line=pl.col("dukcapil_source_line")), on="source_line", how="semi")
        person = person.select(
            dukcapil_source_line=pl.col("source_line"), d_nama=pl.col("nama"), d_jk=pl.col("jenis_kelamin"),
            d_lahir=pl.col("tanggal_lahir"), d_alamat=pl.col("alamat"),
        )
        chosen = chosen.join(person.unique("dukcapil_source_line"), on="dukcapil_source_line", how="left")
    else:
        chosen = chosen.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in PERSON_SCHEMA.items()])
    names = region_lookup().select(kab_dukcapil=pl.col("kode_kabupaten"), d_kab=pl.col("nama_kabupaten"))
    return chosen.join(names, on="kab_dukcapil", how="left").with_columns(d_kab=pl.coalesce("d_kab", "kab_dukcapil"))


LINK_METHOD_LABELS = {"exact_nik": "NIK sama", "fuzzy": "fuzzy (nama, tanggal lahir, wilayah)"}
EXACT_RECORD_CODES = [code for code, rule in anomaly_rules().items() if rule.registry_record == "exact_nik"]


def dukcapil_rows(data: RoundData) -> pl.DataFrame:
    """DTKS row and the linked Dukcapil record side by side for the shown cases."""
    chosen = data.cases.filter(pl.col("anomaly_code").is_in(list(DUKCAPIL_CODES)))
    if chosen.height == 0:
        return pl.DataFrame(schema={"id": pl.String, "code": pl.String, "act": pl.String, "kab": pl.String})
    people = rows_with_ids(data.records, chosen["id_dtks"]).select("id_dtks", "nik", "nama", "jenis_kelamin", "tanggal_lahir",
                                                                   "kode_kabupaten")
    frame = (
        chosen.lazy()
        .join(people, on="id_dtks", how="left")
        .pipe(with_region)
        .join(linked_dukcapil(data.work_dir, chosen.lazy(), by_ids=True), on=["id_dtks", "anomaly_code"], how="left")
        .select(
            id=pl.col("id_dtks"), code=pl.col("anomaly_code"), sev=pl.col("severity"), act=pl.col("action"),
            nik=mask_nik(pl.col("nik")), nama=mask_name(pl.col("nama")), jk=pl.col("jenis_kelamin"),
            thn=birth_year(pl.col("tanggal_lahir")).cast(pl.String), kab=pl.col("nama_kabupaten"),
            d_nik=mask_nik(pl.col("dukcapil_nik")), d_nama=mask_name(pl.col("d_nama")), d_jk=pl.col("d_jk"),
            d_thn=birth_year(pl.col("d_lahir")).cast(pl.String), d_kab=pl.col("d_kab"),
            d_mati=pl.col("tanggal_meninggal").cast(pl.String),
            via=pl.col("link_method"), p=pl.col("match_probability").round(4),
            sim=pl.col("name_similarity").round(3), dob=pl.col("dob_agreement"), identity=pl.col("identity"),
        )
    )
    return ranked(frame, "sev", "act", "id", "code").collect()


def dukcapil_section(page: Page, data: RoundData) -> dict:
    rows = dukcapil_rows(data)
    shown = dict(rows.group_by("code").len().iter_rows()) if rows.height else {}
    notes = [
        (code, f" ({anomaly_rules()[code].label_id}): {shown_note(shown.get(code, 0), data.totals.get(code, 0))}")
        for code in DUKCAPIL_CODES
    ]
    dtks, duk = "DTKS", "Dukcapil"
    page.list_mount("dukcapil", list_spec(
        rows,
        columns=[
            {"key": "id", "label": "id_dtks", "group": ""},
            {"key": "code", "label": "Kode", "group": ""},
            {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "cls": "act", "group": ""},
            {"key": "nik", "label": "NIK", "group": dtks},
            {"key": "nama", "label": "Inisial", "group": dtks},
            {"key": "jk", "label": "JK", "group": dtks},
            {"key": "thn", "label": "Tahun lahir", "group": dtks},
            {"key": "kab", "label": "Kabupaten/kota", "group": dtks},
            {"key": "d_nik", "label": "NIK", "group": duk},
            {"key": "d_nama", "label": "Inisial", "group": duk, "compare": "nama"},
            {"key": "d_jk", "label": "JK", "group": duk, "compare": "jk"},
            {"key": "d_thn", "label": "Tahun lahir", "group": duk, "compare": "thn"},
            {"key": "d_kab", "label": "Kabupaten/kota", "group": duk, "compare": "kab"},
            {"key": "d_mati", "label": "Tanggal meninggal", "group": duk},
            {"key": "via", "label": "Tautan", "labels": LINK_METHOD_LABELS, "group": "Kecocokan"},
            {"key": "p", "label": "Peluang", "num": True, "digits": 4, "group": "Kecocokan"},
            {"key": "sim", "label": "Kemiripan nama", "num": True, "digits": 3, "group": "Kecocokan"},
            {"key": "dob", "label": "Tanggal lahir", "labels": LINK_LABELS["dob_agreement"], "group": "Kecocokan"},
            {"key": "identity", "label": "Identitas", "labels": LINK_LABELS["identity"], "group": "Kecocokan"},
        ],
        facets=[
            {"key": "code", "label": "Kode", "labels": code_labels(), "order": list(DUKCAPIL_CODES)},
            {"key": "kab", "label": "Kabupaten/kota"},
            {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "order": list(ACTIONS)},
        ],
        search=["id", "code", "kab", "d_kab", "nik", "d_nik"],
        placeholder="Cari id_dtks, kabupaten…",
    ))
    return {"notes": notes}


# --- data quality, timings, quarantine


def quality_section(summary: dict) -> dict:
    kinds = []
    for kind, result in (summary.get("data_quality") or {}).items():
        table = [
            [
                r.get("rule"), r.get("expectation"), r.get("column") or "",
                marked("\u2713", "yes") if r.get("success") else marked("\u2717", "no"),
                fmt_int(r.get("unexpected_count")) if r.get("unexpected_count") is not None else "",
                f"{fmt_dec(r['unexpected_percent'], 2)}%" if r.get("unexpected_percent") is not None else "",
            ]
            for r in result.get("results", [])
        ]
        kinds.append({
            "kind": kind.upper(), "ok": bool(result.get("success")), "rows": result.get("rows"), "table": table,
            "passed": f"{fmt_int(result.get('successful'))} dari {fmt_int(result.get('evaluated'))} aturan lulus",
        })
    return {"kinds": kinds}


BLOCKING_HEADERS = ["Aturan", "Pasangan baru", "Semua pasangan kandidat", "Baris di blok terlalu besar (dilewati)"]


def process_section(summary: dict) -> dict:
    nik = summary.get("nik_checks") or {}
    link = summary.get("civil_registry_link") or {}
    dup = summary.get("duplicates") or {}
    identity = ", ".join(f"{LINK_LABELS['identity'].get(k, k)} {fmt_int(v)}" for k, v in (link.get("identity") or {}).items())
    facts = [
        ["Baris DTKS yang NIK-nya diperiksa", fmt_int(nik.get("rows"))],
        ["NIK sah (format, kode wilayah, tanggal)", fmt_int(nik.get("valid"))],
        ["Tertaut ke Dukcapil lewat NIK yang sama", fmt_int(link.get("exact_links", link.get("linked")))],
        ["Kekuatan identitas tautan NIK", identity],
        ["NIK yang muncul lebih dari sekali di Dukcapil", fmt_int(link.get("dukcapil_nik_repeats"))],
        ["Dicari lewat tautan fuzzy (NIK tidak mengarah ke orangnya)", fmt_int(link.get("fuzzy_queries"))],
        ["Tautan fuzzy ditemukan / meragukan", f"{fmt_int(link.get('fuzzy_links'))} / {fmt_int(link.get('fuzzy_ambiguous'))}"],
        ["Klaster duplikat (lebih dari satu baris)", fmt_int(dup.get("clusters_gt1"))],
        ["Baris dalam klaster duplikat", fmt_int(dup.get("rows_in_clusters_gt1"))],
        ["Pasangan duplikat yang dinilai dan dilaporkan", fmt_int(dup.get("pairs_scored_reported"))],
    ]
    fit = dup.get("model_fit") or {}
    drift = sorted(dup.get("model_drift") or [], key=lambda row: -abs(row.get("drift", 0)))
    return {
        "facts": [f for f in facts if f[1] not in ("", " / ")],
        "fit": fit_sentence(fit),
        "drift": [
            [f"{row['comparison']}: {row['level']}", fmt_dec(row["declared_weight"], 1), fmt_dec(row["fitted_weight"], 1),
             ("+" if row["drift"] > 0 else "") + fmt_dec(row["drift"], 1), fmt_int(row.get("matches")),
             fmt_int(row.get("non_matches"))]
            for row in drift[:30]
        ],
        "blocking_headers": BLOCKING_HEADERS,
        "blocking": blocking_rows(dup.get("blocking", [])),
        "fuzzy_blocking": blocking_rows(link.get("fuzzy_blocking") or []),
    }


def fit_sentence(fit: dict) -> str:
    """The fitted model in one sentence for reviewers (Bahasa)."""
    if not fit:
        return ""
    labels = f"{fmt_int(fit.get('labelled_matches'))} pasangan berlabel sama dan {fmt_int(fit.get('labelled_non_matches'))} berlabel berbeda"
    if fit.get("status") == "fitted":
        return (f"Bobot pencocokan dipasang dari data putaran ini: {labels} (label dari Dukcapil: kedua baris tertaut lewat NIK "
                "ke orang yang sama, atau ke orang yang berbeda). Bobot yang dinyatakan di model menjadi titik awal.")
    return f"Bobot pencocokan memakai nilai yang dinyatakan di model: label terlalu sedikit untuk dipasang ({labels})."


def blocking_rows(rules: list[dict]) -> list[list[str]]:
    return [
        [rule.get("rule"), fmt_int(rule.get("pairs")), fmt_int(rule.get("total_candidate_pairs")),
         fmt_int(rule.get("records_in_skipped_blocks"))]
        for rule in rules
    ]


def timings_section(summary: dict) -> dict:
    timings = summary.get("stage_timings") or []
    bars = [(t.get("stage", ""), {"s": max(int(round(t.get("seconds", 0) * 1000)), 0)}) for t in timings]
    return {
        "rows": [[t.get("stage"), fmt_dec(t.get("seconds", 0), 2), fmt_int(t.get("peak_rss_mib", 0))] for t in timings],
        "total": sum(t.get("seconds", 0) for t in timings),
        "chart": bar_chart(bars, {"s": ("milidetik", "#17324d")}),
    }


def quarantine_section(page: Page, data: RoundData) -> dict:
    frame = scan(data.work_dir, "quarantine.parquet")
    if frame is None:
        return {"missing": True}
    # The raw line is never shown: it holds the person's data as typed.
    safe = frame.select("source", "file", "line", "id_dtks", reason=scrub_text(pl.col("reason")))
    per_source = safe.group_by("source").len().sort("source").collect()
    reasons = (
        safe.group_by("source", "reason").len()
        .sort(["len", "source", "reason"], descending=[True, False, False]).head(20).collect()
    )
    total = sum(per_source["len"]) if per_source.height else 0
    # Line numbers are identifiers, not amounts: text, so no thousands separator.
    lines = safe.sort("source", "file", "line").head(data.max_cases).with_columns(pl.col("line").cast(pl.String)).collect()
    page.list_mount("quarantine", list_spec(
        lines,
        columns=[
            {"key": "source", "label": "Sumber"}, {"key": "file", "label": "File"}, {"key": "line", "label": "Baris", "num": True},
            {"key": "id_dtks", "label": "id_dtks"}, {"key": "reason", "label": "Alasan"},
        ],
        facets=[{"key": "source", "label": "Sumber"}],
        search=["file", "id_dtks", "reason"], placeholder="Cari id_dtks atau alasan…",
    ))
    return {
        "missing": False,
        "counts": ", ".join(f"{s}: {fmt_int(n)}" for s, n in per_source.iter_rows()) or "tidak ada",
        "reasons": [[s, r, fmt_int(n)] for s, r, n in reasons.iter_rows()],
        "note": shown_note(lines.height, total, "baris"),
    }


# --------------------------------------------------------------------------- previous round


def history_entry(summary: dict) -> dict:
    return {
        "as_of": summary.get("as_of"),
        "anomalies_by_code": summary.get("anomalies_by_code", {}),
        "reconciliation": summary.get("reconciliation", {}),
    }


def build_history(previous_dir: Path | None, summary: dict) -> list[dict]:
    """What history.json should hold after this round: the previous round's history (or,
    without one, the previous summary as its only entry), then this round. Each entry:
    {as_of, anomalies_by_code, reconciliation}, oldest first."""
    history: list[dict] = []
    if previous_dir is not None:
        previous_dir = Path(previous_dir)
        history_path = previous_dir / "history.json"
        summary_path = previous_dir / "summary.json"
        if history_path.is_file():
            history = list(json.loads(history_path.read_text(encoding="utf-8")))
        if summary_path.is_file():
            previous = history_entry(json.loads(summary_path.read_text(encoding="utf-8")))
            # history.json of the previous round normally already ends with that round.
            last = history[-1] if history else {}
            if (last.get("as_of"), last.get("anomalies_by_code")) != (previous["as_of"], previous["anomalies_by_code"]):
                history.append(previous)
    current = history_entry(summary)
    # A rerun for the same date replaces that date's entry instead of adding a copy.
    history = [entry for entry in history if entry.get("as_of") != current["as_of"]]
    history.append(current)
    return history


def code_total(counts: dict | None) -> int:
    return sum(int(v) for v in (counts or {}).values())


def trend(history: list[dict]) -> tuple[list[str], list[list]]:
    """Round labels and, per code, its count in each round and a sparkline."""
    rounds = [h.get("as_of") or f"#{i + 1}" for i, h in enumerate(history)]
    rows = []
    for code in anomaly_rules():
        values = [code_total(h.get("anomalies_by_code", {}).get(code)) for h in history]
        rows.append([code, *(fmt_int(v) for v in values), {"spark": sparkline(values)}])
    return rounds, rows


def counts_by_code(frame: pl.LazyFrame) -> dict[str, int]:
    return dict(frame.group_by("anomaly_code").len().collect().iter_rows())


def change_rows(before: dict[str, int], now: dict[str, int], new: dict[str, int], resolved: dict[str, int]) -> list[list]:
    rows = []
    for code in anomaly_rules():
        delta = now.get(code, 0) - before.get(code, 0)
        change = marked(f"+{fmt_int(delta)}", "up") if delta > 0 else marked(f"-{fmt_int(-delta)}", "down") if delta < 0 else "0"
        rows.append([code, fmt_int(before.get(code, 0)), fmt_int(now.get(code, 0)), change,
                     fmt_int(new.get(code, 0)), fmt_int(resolved.get(code, 0))])
    return rows


CHANGE_FACETS = [
    {"key": "code", "label": "Kode", "labels": code_labels(), "order": list(anomaly_rules())},
    {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "order": list(ACTIONS)},
]
CHANGE_COLUMNS = [
    {"key": "id", "label": "id_dtks"}, {"key": "code", "label": "Kode"},
    {"key": "sev", "label": "Tingkat", "labels": SEVERITY_LABELS, "cls": "sev"},
    {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "cls": "act"},
]


def changes_section(page: Page, data: RoundData, previous_dir: Path | None) -> dict:
    """New anomalies (id_dtks + code not in the previous round), resolved ones, counts per
    code before and now, and the trend over the rounds in history.json."""
    previous = scan(Path(previous_dir), "anomalies.parquet") if previous_dir is not None else None
    if previous is None or not (Path(previous_dir) / "summary.json").is_file():
        return {"previous": False}
    previous_as_of = json.loads((Path(previous_dir) / "summary.json").read_text(encoding="utf-8")).get("as_of", "?")
    keys = ["id_dtks", "anomaly_code"]
    new = data.anomalies.join(previous.select(keys), on=keys, how="anti")
    resolved = previous.join(data.anomalies.select(keys), on=keys, how="anti")
    new_by_code, resolved_by_code = counts_by_code(new), counts_by_code(resolved)
    new_total, resolved_total = sum(new_by_code.values()), sum(resolved_by_code.values())

    new_rows = masked_case_rows(first_cases(new, data.max_cases), data.records).select(
        "id", "code", "sev", "act", "kab", "nama", "detail"
    )
    resolved_rows = first_cases(resolved, data.max_cases).select(
        id=pl.col("id_dtks"), code=pl.col("anomaly_code"), sev=pl.col("severity"), act=pl.col("action"),
        detail=scrub_text(pl.col("detail")),
    )
    page.list_mount("new", list_spec(
        new_rows,
        CHANGE_COLUMNS + [{"key": "kab", "label": "Kabupaten/kota"}, {"key": "nama", "label": "Inisial"},
                          {"key": "detail", "label": "Keterangan"}],
        CHANGE_FACETS, ["id", "code", "kab", "detail"], "Cari id_dtks…",
    ))
    page.list_mount("resolved", list_spec(
        resolved_rows, CHANGE_COLUMNS + [{"key": "detail", "label": "Keterangan (putaran sebelumnya)"}],
        CHANGE_FACETS, ["id", "code", "detail"], "Cari id_dtks…",
    ))
    rounds, trend_rows = trend(build_history(previous_dir, data.summary))
    return {
        "previous": True, "previous_as_of": previous_as_of, "new_total": new_total, "resolved_total": resolved_total,
        "change_rows": change_rows(counts_by_code(previous), data.totals, new_by_code, resolved_by_code),
        "trend_rounds": rounds, "trend_rows": trend_rows,
        "new_note": shown_note(new_rows.height, new_total), "resolved_note": shown_note(resolved_rows.height, resolved_total),
    }


# --------------------------------------------------------------------------- entry point


def render_report(work_dir: Path, summary: dict, previous_dir: Path | None = None, max_cases: int = MAX_CASES) -> str:
    """The whole report as one HTML string. work_dir holds the round's Parquet outputs;
    previous_dir (optional) the previous round's outputs, for "what changed"."""
    data = RoundData.load(Path(work_dir), summary, max_cases)
    page = Page()
    sections = {
        "rekonsiliasi": reconciliation_section(summary),
        "kode": codes_section(data),
        "wilayah": region_section(page, data),
        "daftar": anomaly_list_section(page, data),
        "duplikat": duplicates_section(page, data),
        "dukcapil": dukcapil_section(page, data),
        "perubahan": changes_section(page, data, previous_dir),
        "mutu": quality_section(summary),
        "proses": process_section(summary),
        "karantina": quarantine_section(page, data),
        "waktu": timings_section(summary),
    }
    return render("report.html.j2", asset("report.js"), sections=SECTIONS, d=sections, lists=page.lists,
                  as_of=summary.get("as_of", ""), version=summary.get("verval_version", ""),
                  workbooks=workbook_settings(), national_workbook=national_workbook())
