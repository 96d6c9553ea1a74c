"""report.html: one self-contained page for reviewers, in Bahasa Indonesia.

Everything the page needs is inside the file (CSS, JavaScript, SVG charts, data as
JSON), and a Content-Security-Policy forbids any request, so it opens offline and
cannot leak what it shows. Personal data is masked (pipeline/report/mask.py):
initials instead of names, NIKs as 3201********0012, birth year instead of birth date.
Reviewers find a record by id_dtks in the Parquet outputs or the workbook.

Scale: aggregates (per code, province, kabupaten) cover every row; lists embed only
the first `max_cases` cases of each anomaly code, in a fixed order (severity, action,
id_dtks), so the page stays a few MB at a million input rows.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.checks.wilayah import current_kabupaten, region_names
from pipeline.contract import anomaly_rules
from pipeline.report.mask import birth_year, mask_name, mask_nik, scrub_text

MAX_CASES = 500
TEMPLATES = Path(__file__).with_name("templates")

SEVERITIES = ("critical", "high", "medium", "low")
ACTIONS = ("exclude", "review", "warn")
SEVERITY_LABELS = {"critical": "kritis", "high": "tinggi", "medium": "sedang", "low": "rendah"}
ACTION_LABELS = {"exclude": "dikeluarkan", "review": "perlu diperiksa", "warn": "peringatan"}
ACTION_COLORS = {"exclude": "#b42318", "review": "#c4820e", "warn": "#9aa5b1"}
OUTCOMES = ("verified", "review", "excluded", "quarantined")
OUTCOME_LABELS = {"verified": "terverifikasi", "review": "perlu diperiksa", "excluded": "dikeluarkan", "quarantined": "karantina"}
OUTCOME_COLORS = {"verified": "#1f7a3d", "review": "#c4820e", "excluded": "#b42318", "quarantined": "#6941c6"}
OUTCOME_FILES = {"verified": "verified_recipients.parquet", "review": "review.parquet", "excluded": "excluded.parquet"}

# Codes whose case is judged against the linked Dukcapil record.
DUKCAPIL_CODES = ("DECEASED", "RELOCATED", "IDENTITY_MISMATCH")

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
}
EVIDENCE_ITEM = re.compile(r"(?P<field>\w+)=(?P<level>[\w-]+) \((?P<weight>[+-]?\d+(?:\.\d+)?)\)")

LINK_LABELS = {
    "identity": {"strong": "kuat", "consistent": "konsisten", "weak": "lemah", "mismatch": "orang lain"},
    "dob_agreement": {"exact": "sama", "different": "berbeda"},
}


def fmt_int(value: int | float | None) -> str:
    """Indonesian thousands separator: 12.345."""
    return "" if value is None else f"{int(value):,}".replace(",", ".")


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


# --------------------------------------------------------------------------- page assembly


@dataclass
class Page:
    """Sections in reading order plus the data of every interactive list."""

    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, title, body html)
    lists: dict[str, dict] = field(default_factory=dict)

    def add(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    def list_mount(self, name: str, spec: dict) -> str:
        """Register a list's data; return the element the JavaScript fills in."""
        self.lists[name] = spec
        return f'<div class="list" data-list="{esc(name)}"></div>'


def json_for_script(data: object) -> str:
    """JSON that cannot close its <script> element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csp_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()


def assemble(page: Page, summary: dict) -> str:
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    js = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    # No request of any kind may leave the page; only this exact script may run.
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src '{csp_hash(js)}'; img-src data:; form-action 'none'"
    nav = "".join(f'<a href="#{anchor}">{esc(title)}</a>' for anchor, title, _ in page.sections)
    body = "\n".join(f'<section id="{anchor}"><h2>{esc(title)}</h2>\n{content}</section>' for anchor, title, content in page.sections)
    as_of = esc(summary.get("as_of", ""))
    return f"""<!doctype html>
<html lang="id">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="referrer" content="no-referrer">
<title>Laporan verval DTKS {as_of}</title>
<style>{css}</style>
</head>
<body>
<header><h1>Laporan Verifikasi dan Validasi DTKS terhadap Dukcapil</h1>
<p>Putaran per {as_of} &middot; verval {esc(summary.get("verval_version", ""))} &middot;
data pribadi disamarkan (UU 27/2022): NIK sebagian, nama hanya inisial, hanya tahun lahir.
Cari baris lengkap dengan <b>id_dtks</b> di file Parquet atau anomalies.xlsx.</p></header>
<nav>{nav}</nav>
<main>
{body}
</main>
<script type="application/json" id="report-data">{json_for_script({"lists": page.lists})}</script>
<script>{js}</script>
</body>
</html>
"""


# --------------------------------------------------------------------------- SVG charts


def bar_chart_svg(bars: list[tuple[str, dict[str, int]]], segments: dict[str, tuple[str, str]], width: int = 860) -> str:
    """Horizontal stacked bars, hand-built SVG. bars: (label, {segment: value});
    segments: {segment: (label, colour)} in stacking order."""
    if not bars:
        return '<p class="empty">Tidak ada data untuk grafik.</p>'
    label_width, value_width, row, top = 260, 90, 22, 4
    plot = width - label_width - value_width
    largest = max(sum(values.values()) for _, values in bars) or 1
    height = top + row * len(bars) + 4
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for i, (label, values) in enumerate(bars):
        y = top + i * row
        short = label if len(label) <= 38 else label[:36] + "…"
        parts.append(f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end"><title>{esc(label)}</title>{esc(short)}</text>')
        x = float(label_width)
        for key, (seg_label, colour) in segments.items():
            value = values.get(key, 0)
            if not value:
                continue
            w = max(plot * value / largest, 1.0)
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 7}" fill="{colour}">'
                f"<title>{esc(label)}: {esc(seg_label)} {fmt_int(value)}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 5:.1f}" y="{y + 14}" class="muted">{fmt_int(sum(values.values()))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def legend(segments: dict[str, tuple[str, str]]) -> str:
    items = "".join(
        f'<span><svg width="10" height="10"><rect width="10" height="10" fill="{colour}"/></svg> {esc(label)}</span>'
        for label, colour in segments.values()
    )
    return f'<p class="legend">{items}</p>'


def sparkline_svg(values: list[int], width: int = 120, height: int = 26) -> str:
    if len(values) < 2:
        return ""
    top = max(values) or 1
    step = (width - 6) / (len(values) - 1)
    points = " ".join(f"{3 + i * step:.1f},{height - 3 - (height - 6) * v / top:.1f}" for i, v in enumerate(values))
    last_x, last_y = points.split(" ")[-1].split(",")
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<polyline points="{points}" fill="none" stroke="#17324d" stroke-width="1.5"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2.5" fill="#b42318"/></svg>'
    )


def html_table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), raw: bool = False) -> str:
    """A static table; cells are escaped unless raw=True (then the caller escaped them)."""
    head = "".join(f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{c if raw else esc(c)}</td>' if i in numeric else f"<td>{c if raw else esc(c)}</td>"
            for i, c in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
    columns = [
        "id_dtks", "nik_raw", "nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir", "alamat",
        "kode_wilayah", "program", "outcome",
    ]
    if not parts:
        return pl.LazyFrame(schema={c: (pl.Date if c == "tanggal_lahir" else pl.String) for c in columns + ["kode_kabupaten"]})
    return pl.concat([p.select(columns) for p in parts], how="vertical_relaxed").with_columns(
        kode_kabupaten=current_kabupaten(pl.col("kode_wilayah"))
    )


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


def ranked(frame: pl.LazyFrame, severity: str = "severity", action: str = "action", id_dtks: str = "id_dtks", code: str = "anomaly_code") -> pl.LazyFrame:
    """The fixed order of every list: severity, action, id_dtks, code. Joins do not keep
    row order, so every list is sorted with this last."""
    return frame.with_columns(
        _sev=pl.col(severity).replace_strict(SEVERITIES, list(range(len(SEVERITIES))), default=len(SEVERITIES), return_dtype=pl.Int8),
        _act=pl.col(action).replace_strict(ACTIONS, list(range(len(ACTIONS))), default=len(ACTIONS), return_dtype=pl.Int8),
    ).sort("_sev", "_act", id_dtks, code).drop("_sev", "_act")


def first_cases(anomalies: pl.LazyFrame, max_cases: int) -> pl.DataFrame:
    """The first max_cases anomalies of each code, in the fixed order."""
    return ranked(anomalies).filter(pl.int_range(pl.len()).over("anomaly_code") < max_cases).collect()


def masked_case_rows(cases: pl.DataFrame, records: pl.LazyFrame) -> pl.DataFrame:
    """Display columns of anomaly rows: region names and masked personal data.
    related_id is an id_dtks for duplicates and shared NIKs but a Dukcapil NIK for the
    link codes: anything that is not a known id_dtks is masked as a NIK."""
    known_ids = records.select(related_id=pl.col("id_dtks"), _related_is_row=pl.lit(True))
    people = records.select("id_dtks", "nik", "nama", "jenis_kelamin", "tanggal_lahir", "kode_kabupaten")
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
            prov=pl.col("nama_provinsi"),
            nik=mask_nik(pl.col("nik")),
            nama=mask_name(pl.col("nama")),
            jk=pl.col("jenis_kelamin"),
            thn=birth_year(pl.col("tanggal_lahir")),
            detail=scrub_text(pl.col("detail")),
            rel=pl.when(pl.col("_related_is_row").fill_null(False)).then(pl.col("related_id")).otherwise(mask_nik(pl.col("related_id"))),
            score=pl.col("score").round(4),
            bukti=pl.col("evidence"),
        )
    )
    return ranked(frame, "sev", "act", "id", "code").collect()


def list_spec(frame: pl.DataFrame, columns: list[dict], facets: list[dict], search: list[str], placeholder: str, unit: str = "baris") -> dict:
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
        "daftar lengkap di anomalies.parquet / anomalies.xlsx."
    )


# --------------------------------------------------------------------------- sections


def reconciliation_section(summary: dict) -> str:
    rec = summary["reconciliation"]
    parts = {key: int(rec.get(key, 0)) for key in OUTCOMES}
    total = sum(parts.values())
    balanced = bool(rec.get("balanced")) and total == int(rec["rows_in"]) and int(rec.get("sum", total)) == total
    status = (
        '<span class="status ok">SEIMBANG &#10003;</span> setiap baris masuk ada di tepat satu hasil.'
        if balanced
        else '<span class="status bad">TIDAK SEIMBANG &#10007;</span> jumlah hasil tidak sama dengan baris masuk: jangan dipakai sebelum diperiksa.'
    )
    cards = "".join(
        f'<div class="card {key}"><div class="n">{fmt_int(parts[key])}</div>{esc(OUTCOME_LABELS[key])}</div>' for key in OUTCOMES
    )
    equation = (
        f"Baris masuk <b>{fmt_int(rec['rows_in'])}</b> = terverifikasi <b>{fmt_int(parts['verified'])}</b> + "
        f"perlu diperiksa <b>{fmt_int(parts['review'])}</b> + dikeluarkan <b>{fmt_int(parts['excluded'])}</b> + "
        f"karantina <b>{fmt_int(parts['quarantined'])}</b> = <b>{fmt_int(total)}</b>"
    )
    chart = bar_chart_svg(
        [("Baris DTKS", {key: parts[key] for key in OUTCOMES})],
        {key: (OUTCOME_LABELS[key], OUTCOME_COLORS[key]) for key in OUTCOMES},
    )
    return (
        f'<div class="cards"><div class="card"><div class="n">{fmt_int(rec["rows_in"])}</div>baris masuk</div>{cards}</div>'
        f'<p class="equation" id="reconciliation-equation">{equation}</p><p>{status}</p>'
        f"{chart}{legend({k: (OUTCOME_LABELS[k], OUTCOME_COLORS[k]) for k in OUTCOMES})}"
        '<p class="note">Terverifikasi: tetap menerima bantuan. Perlu diperiksa: menunggu keputusan pemeriksa, belum dibayar. '
        "Dikeluarkan: dikeluarkan atas bukti kuat (misalnya meninggal dengan identitas cocok, duplikat pasti). "
        "Karantina: baris yang tidak dapat dibaca (lihat bagian Karantina).</p>"
    )


def codes_section(summary: dict, totals: dict[str, int], max_cases: int) -> str:
    rules = anomaly_rules()
    by_code = summary.get("anomalies_by_code", {})
    rows, bars = [], []
    for code, rule in rules.items():
        counts = {action: int(by_code.get(code, {}).get(action, 0)) for action in ACTIONS}
        total = sum(counts.values())
        shown = min(totals.get(code, 0), max_cases)
        rows.append([
            esc(code), esc(rule.label_id), f'<span class="sev-{esc(rule.severity)}">{esc(SEVERITY_LABELS.get(rule.severity, rule.severity))}</span>',
            esc(ACTION_LABELS.get(rule.action, rule.action)) + (f" / kuat: {esc(ACTION_LABELS.get(rule.strong_action, rule.strong_action))}" if rule.strong_action else ""),
            *(fmt_int(counts[a]) for a in ACTIONS), f"<b>{fmt_int(total)}</b>",
            f"{fmt_int(shown)} dari {fmt_int(totals.get(code, 0))}",
        ])
        bars.append((code, counts))
    table = html_table(
        ["Kode", "Arti", "Tingkat", "Tindakan", "Dikeluarkan", "Perlu diperiksa", "Peringatan", "Jumlah", "Di halaman ini"],
        rows, numeric={4, 5, 6, 7}, raw=True,
    )
    segments = {a: (ACTION_LABELS[a], ACTION_COLORS[a]) for a in ACTIONS}
    return (
        f'<div class="wide">{table}</div><h3>Grafik per kode</h3>{bar_chart_svg(bars, segments)}{legend(segments)}'
        f'<p class="note">Satu baris DTKS dapat memiliki beberapa kode. Daftar di halaman ini memuat paling banyak '
        f"{fmt_int(max_cases)} kasus per kode (urut tingkat, tindakan, id_dtks); daftar lengkap di anomalies.parquet / anomalies.xlsx.</p>"
    )


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


def region_section(page: Page, regions: pl.DataFrame) -> str:
    codes = list(anomaly_rules())
    numeric = ["baris", "verified", "review", "excluded", "anomali", *codes]
    provinces = (
        regions.group_by("kode_provinsi", "nama_provinsi").agg(pl.col(numeric).sum()).sort("kode_provinsi")
    )
    segments = {"excluded": ("dikeluarkan", OUTCOME_COLORS["excluded"]), "review": ("perlu diperiksa", OUTCOME_COLORS["review"])}
    province_bars = [(r["nama_provinsi"], {"excluded": r["excluded"], "review": r["review"]}) for r in provinces.iter_rows(named=True)]
    top_kab = regions.with_columns(_need=pl.col("review") + pl.col("excluded")).filter(pl.col("_need") > 0).sort(
        ["_need", "kode_kabupaten"], descending=[True, False]
    ).head(20)
    kab_bars = [(f"{r['nama_kabupaten']} ({r['nama_provinsi']})", {"excluded": r["excluded"], "review": r["review"]}) for r in top_kab.iter_rows(named=True)]

    count_columns = [
        {"key": "baris", "label": "Baris", "num": True},
        {"key": "verified", "label": "Terverifikasi", "num": True},
        {"key": "review", "label": "Perlu diperiksa", "num": True},
        {"key": "excluded", "label": "Dikeluarkan", "num": True},
        {"key": "anomali", "label": "Anomali", "num": True},
    ] + [{"key": code, "label": code, "num": True, "title": anomaly_rules()[code].label_id} for code in codes]
    province_frame = provinces.select("kode_provinsi", "nama_provinsi", *numeric)
    kab_frame = regions.select("kode_kabupaten", "nama_kabupaten", "kode_provinsi", "nama_provinsi", *numeric)
    province_list = page.list_mount("provinsi", list_spec(
        province_frame,
        [{"key": "kode_provinsi", "label": "Kode"}, {"key": "nama_provinsi", "label": "Provinsi"}] + count_columns,
        facets=[], search=["kode_provinsi", "nama_provinsi"], placeholder="Cari provinsi…", unit="provinsi",
    ))
    kab_list = page.list_mount("kabupaten", list_spec(
        kab_frame,
        [{"key": "kode_kabupaten", "label": "Kode"}, {"key": "nama_kabupaten", "label": "Kabupaten/kota"},
         {"key": "nama_provinsi", "label": "Provinsi"}] + count_columns,
        facets=[{"key": "nama_provinsi", "label": "Provinsi"}],
        search=["kode_kabupaten", "nama_kabupaten", "nama_provinsi"], placeholder="Cari kabupaten/kota…", unit="kabupaten/kota",
    ))
    return (
        "<p class=\"note\">Dihitung atas semua baris yang terbaca (tanpa karantina), menurut kabupaten/kota domisili DTKS; "
        "kode lama (pemekaran Papua) dipetakan ke kode yang berlaku.</p>"
        f"<h3>Per provinsi: baris perlu diperiksa dan dikeluarkan</h3>{bar_chart_svg(province_bars, segments)}{legend(segments)}"
        f"{province_list}"
        f"<h3>20 kabupaten/kota dengan baris bermasalah terbanyak</h3>{bar_chart_svg(kab_bars, segments)}"
        f"<h3>Semua kabupaten/kota</h3>{kab_list}"
    )


def anomaly_list_section(page: Page, rows: pl.DataFrame, totals: dict[str, int], max_cases: int) -> str:
    shown = dict(rows.group_by("code").len().iter_rows()) if rows.height else {}
    notes = "".join(
        f"<li><b>{esc(code)}</b>: {esc(shown_note(shown.get(code, 0), total))}</li>"
        for code, total in totals.items() if total
    )
    mount = page.list_mount("anomalies", list_spec(
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
            {"key": "detail", "label": "Keterangan"},
            {"key": "rel", "label": "Terkait"},
            {"key": "score", "label": "Peluang", "num": True, "digits": 4},
            {"key": "bukti", "label": "Bukti per kolom"},
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
    return (
        "<p>Semua anomali dalam satu daftar: ketik di kotak pencarian atau pilih kode, kabupaten/kota, tingkat, tindakan. "
        "Terkait: id_dtks baris lain (duplikat, NIK ganda) atau NIK Dukcapil (disamarkan).</p>"
        f'<ul class="note">{notes or "<li>Tidak ada anomali.</li>"}</ul>{mount}'
    )


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
)


def cluster_members(work_dir: Path, records: pl.LazyFrame, anomalies: pl.LazyFrame, max_cases: int) -> tuple[pl.DataFrame, int]:
    """Members of the first max_cases clusters with more than one row: clusters holding a
    row a reviewer must decide on first, then by cluster_id."""
    clusters = scan(work_dir, "duplicate_clusters.parquet")
    if clusters is None:
        return pl.DataFrame(), 0
    multi = clusters.filter(pl.col("cluster_size") > 1)
    total = multi.select(pl.col("cluster_id").n_unique()).collect().item()
    actions = anomalies.filter(pl.col("anomaly_code") == "DUPLICATE_PERSON").select("id_dtks", "action")
    chosen = (
        multi.join(actions, on="id_dtks", how="left")
        .group_by("cluster_id").agg(needs_review=(pl.col("action") == "review").any())
        .sort(["needs_review", "cluster_id"], descending=[True, False])
        .head(max_cases)
    )
    members = (
        multi.join(chosen, on="cluster_id", how="inner")
        .join(records, on="id_dtks", how="left")
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
        probability = f": peluang {m['match_probability']:.4f}" if m["match_probability"] is not None else ""
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


def duplicates_section(page: Page, work_dir: Path, records: pl.LazyFrame, anomalies: pl.LazyFrame, max_cases: int) -> str:
    members, total = cluster_members(work_dir, records, anomalies, max_cases)
    views = []
    if members.height:
        for (cluster_id,), group in members.group_by("cluster_id", maintain_order=True):
            views.append(cluster_view(cluster_id, group.to_dicts()))
    mount = page.list_mount("clusters", {
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
    return (
        "<p>Baris yang diduga orang yang sama, berdampingan. Sel kuning: nilainya berbeda dengan baris utama "
        "(dibandingkan pada data lengkap, meskipun yang tampil disamarkan). Di bawah tiap klaster: bukti per kolom "
        "(bobot positif mendukung orang yang sama, negatif menentangnya) dan peluang kecocokan.</p>"
        f'<p class="note">{esc(shown_note(len(views), total, "klaster"))}</p>{mount}'
    )


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


def linked_dukcapil(work_dir: Path, cases: pl.LazyFrame) -> pl.LazyFrame:
    """For each (id_dtks, anomaly_code) in cases, the Dukcapil link the anomaly is about
    and the linked person (d_* columns, d_kab = kabupaten name).

    A row can have two links: by exact NIK and, when that NIK does not lead to the
    person, a fuzzy one. IDENTITY_MISMATCH is about the exact-NIK record (the other
    person holding the NIK); any other code about the link whose NIK is its related_id
    (DECEASED/RELOCATED, or the NIK a fuzzy link suggests), else the exact-NIK link."""
    links = scan(work_dir, "dukcapil_links.parquet")
    if links is None:
        return pl.LazyFrame(schema={"id_dtks": pl.String, "anomaly_code": pl.String} | LINK_SCHEMA | PERSON_SCHEMA | {"d_kab": pl.String})
    exact = pl.col("link_method").str.starts_with("exact")
    chosen = (
        cases.select("id_dtks", "anomaly_code", "related_id")
        .join(with_columns_of(links, LINK_SCHEMA), on="id_dtks", how="inner")
        .with_columns(
            _priority=pl.when((pl.col("anomaly_code") == "IDENTITY_MISMATCH") & exact).then(0)
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
        person = staged.join(chosen.select("dukcapil_source_line"), left_on="source_line", right_on="dukcapil_source_line", how="semi").select(
            dukcapil_source_line=pl.col("source_line"), d_nama=pl.col("nama"), d_jk=pl.col("jenis_kelamin"),
            d_lahir=pl.col("tanggal_lahir"), d_alamat=pl.col("alamat"),
        )
        chosen = chosen.join(person.unique("dukcapil_source_line"), on="dukcapil_source_line", how="left")
    else:
        chosen = chosen.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in PERSON_SCHEMA.items()])
    names = region_lookup().select(kab_dukcapil=pl.col("kode_kabupaten"), d_kab=pl.col("nama_kabupaten"))
    return chosen.join(names, on="kab_dukcapil", how="left").with_columns(d_kab=pl.coalesce("d_kab", "kab_dukcapil"))


LINK_METHOD_LABELS = {"exact_nik": "NIK sama", "fuzzy": "fuzzy (nama, tanggal lahir, wilayah)"}


def dukcapil_rows(work_dir: Path, cases: pl.DataFrame, records: pl.LazyFrame) -> pl.DataFrame:
    """DTKS row and the linked Dukcapil record side by side for the shown cases."""
    chosen = cases.filter(pl.col("anomaly_code").is_in(list(DUKCAPIL_CODES)))
    if chosen.height == 0:
        return pl.DataFrame()
    frame = (
        chosen.lazy()
        .join(records.select("id_dtks", "nik", "nama", "jenis_kelamin", "tanggal_lahir", "kode_kabupaten"), on="id_dtks", how="left")
        .pipe(with_region)
        .join(linked_dukcapil(work_dir, chosen.lazy()), on=["id_dtks", "anomaly_code"], how="left")
        .select(
            id=pl.col("id_dtks"), code=pl.col("anomaly_code"), sev=pl.col("severity"), act=pl.col("action"),
            nik=mask_nik(pl.col("nik")), nama=mask_name(pl.col("nama")), jk=pl.col("jenis_kelamin"),
            thn=birth_year(pl.col("tanggal_lahir")), kab=pl.col("nama_kabupaten"),
            d_nik=mask_nik(pl.col("dukcapil_nik")), d_nama=mask_name(pl.col("d_nama")), d_jk=pl.col("d_jk"),
            d_thn=birth_year(pl.col("d_lahir")), d_kab=pl.col("d_kab"),
            d_mati=pl.col("tanggal_meninggal").cast(pl.String),
            via=pl.col("link_method"), p=pl.col("match_probability").round(4),
            sim=pl.col("name_similarity").round(3), dob=pl.col("dob_agreement"), identity=pl.col("identity"),
        )
    )
    return ranked(frame, "sev", "act", "id", "code").collect()


def dukcapil_section(page: Page, work_dir: Path, cases: pl.DataFrame, records: pl.LazyFrame, totals: dict[str, int]) -> str:
    rows = dukcapil_rows(work_dir, cases, records)
    notes = "".join(
        f"<li><b>{esc(code)}</b> ({esc(anomaly_rules()[code].label_id)}): "
        f"{esc(shown_note(rows.filter(pl.col('code') == code).height if rows.height else 0, totals.get(code, 0)))}</li>"
        for code in DUKCAPIL_CODES
    )
    dtks, duk = "DTKS", "Dukcapil"
    mount = page.list_mount("dukcapil", list_spec(
        rows if rows.height else pl.DataFrame(schema={"id": pl.String, "code": pl.String, "act": pl.String, "kab": pl.String}),
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
            {"key": "d_nama", "label": "Inisial", "group": duk},
            {"key": "d_jk", "label": "JK", "group": duk},
            {"key": "d_thn", "label": "Tahun lahir", "group": duk},
            {"key": "d_kab", "label": "Kabupaten/kota", "group": duk},
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
    return (
        "<p>Kasus meninggal, pindah domisili, dan identitas tidak cocok: baris DTKS di kiri, catatan Dukcapil yang "
        "tertaut di kanan (lewat NIK yang sama, atau tautan fuzzy bila NIK tidak mengarah ke orangnya; "
        "tautan fuzzy selalu diperiksa pemeriksa). Identitas kuat = nama dan tanggal lahir cocok; orang lain = NIK sama tetapi "
        "nama dan tanggal lahir milik orang lain.</p>"
        f'<ul class="note">{notes}</ul>{mount}'
    )


# --- data quality, timings, quarantine


def quality_section(summary: dict) -> str:
    out = []
    for kind, result in (summary.get("data_quality") or {}).items():
        ok = result.get("success")
        badge = '<span class="yes">lulus</span>' if ok else '<span class="no">ada yang gagal</span>'
        rows = [
            [
                esc(r.get("rule")), esc(r.get("expectation")), esc(r.get("column") or ""),
                '<span class="yes">&#10003;</span>' if r.get("success") else '<span class="no">&#10007;</span>',
                fmt_int(r.get("unexpected_count")) if r.get("unexpected_count") is not None else "",
                f"{r['unexpected_percent']:.2f}%" if r.get("unexpected_percent") is not None else "",
            ]
            for r in result.get("results", [])
        ]
        out.append(
            f"<h3>{esc(kind.upper())}: {badge} &middot; {fmt_int(result.get('successful'))} dari {fmt_int(result.get('evaluated'))} "
            f"aturan lulus &middot; {fmt_int(result.get('rows'))} baris</h3>"
            + html_table(["Aturan", "Expectation (GX)", "Kolom", "Lulus", "Tidak sesuai", "Persen"], rows, numeric={4, 5}, raw=True)
        )
    return (
        '<p class="note">Pemeriksaan mutu data (Great Expectations) atas data staging sebelum pencocokan. '
        "Aturan yang gagal tidak menghentikan putaran; baris yang bermasalah muncul sebagai anomali atau karantina.</p>"
        + ("".join(out) or '<p class="empty">Tidak ada hasil mutu data.</p>')
    )


def process_section(summary: dict) -> str:
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
    facts = [f for f in facts if f[1] not in ("", " / ")]
    return (
        html_table(["Tahap", "Jumlah"], facts, numeric={1})
        + "<h3>Aturan blocking pencarian duplikat</h3>" + blocking_table(dup.get("blocking", []))
        + ("<h3>Aturan blocking tautan fuzzy ke Dukcapil</h3>" + blocking_table(link["fuzzy_blocking"]) if link.get("fuzzy_blocking") else "")
    )


def blocking_table(rules: list[dict]) -> str:
    rows = [
        [b.get("rule"), fmt_int(b.get("pairs")), fmt_int(b.get("total_candidate_pairs")), fmt_int(b.get("records_in_skipped_blocks"))]
        for b in rules
    ]
    return html_table(["Aturan", "Pasangan baru", "Semua pasangan kandidat", "Baris di blok terlalu besar (dilewati)"], rows, numeric={1, 2, 3})


def timings_section(summary: dict) -> str:
    timings = summary.get("stage_timings") or []
    rows = [[esc(t.get("stage")), f"{t.get('seconds', 0):.2f}", f"{t.get('peak_rss_mib', 0):,.0f}"] for t in timings]
    bars = [(t.get("stage", ""), {"s": max(int(round(t.get("seconds", 0) * 1000)), 0)}) for t in timings]
    chart = bar_chart_svg(bars, {"s": ("milidetik", "#17324d")})
    total = sum(t.get("seconds", 0) for t in timings)
    return (
        html_table(["Tahap", "Detik", "Puncak memori (MiB)"], rows, numeric={1, 2}, raw=True)
        + f'<p class="note">Jumlah {total:.2f} detik (tanpa tahap laporan dan penerbitan). Grafik dalam milidetik.</p>{chart}'
    )


def quarantine_section(page: Page, work_dir: Path, max_cases: int) -> str:
    frame = scan(work_dir, "quarantine.parquet")
    if frame is None:
        return '<p class="empty">quarantine.parquet tidak ada.</p>'
    # The raw line is never shown: it holds the person's data as typed.
    safe = frame.select("source", "file", "line", "id_dtks", reason=scrub_text(pl.col("reason")))
    per_source = safe.group_by("source").len().sort("source").collect()
    reasons = safe.group_by("source", "reason").len().sort(["len", "source", "reason"], descending=[True, False, False]).head(20).collect()
    total = sum(per_source["len"]) if per_source.height else 0
    lines = safe.sort("source", "file", "line").head(max_cases).collect()
    mount = page.list_mount("quarantine", list_spec(
        lines,
        columns=[{"key": "source", "label": "Sumber"}, {"key": "file", "label": "File"}, {"key": "line", "label": "Baris", "num": True},
                 {"key": "id_dtks", "label": "id_dtks"}, {"key": "reason", "label": "Alasan"}],
        facets=[{"key": "source", "label": "Sumber"}],
        search=["file", "id_dtks", "reason"], placeholder="Cari id_dtks atau alasan…",
    ))
    counts = ", ".join(f"{esc(s)}: {fmt_int(n)}" for s, n in per_source.iter_rows()) or "tidak ada"
    return (
        f"<p>Baris yang tidak dapat dibaca masuk karantina, tidak dibuang: {counts}. "
        "DTKS yang dikarantina ikut dihitung di rekonsiliasi.</p><h3>Alasan terbanyak</h3>"
        + html_table(["Sumber", "Alasan", "Baris"], [[s, r, fmt_int(n)] for s, r, n in reasons.iter_rows()], numeric={2})
        + f'<h3>Daftar baris</h3><p class="note">{esc(shown_note(lines.height, total, "baris"))} '
        "Isi baris asli tidak ditampilkan (data pribadi); lihat quarantine.parquet.</p>" + mount
    )


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
            # history.json of the previous round already ends with that round.
            if not history or history[-1].get("as_of") != previous["as_of"] or history[-1].get("anomalies_by_code") != previous["anomalies_by_code"]:
                history.append(previous)
    history.append(history_entry(summary))
    return history


def code_total(counts: dict | None) -> int:
    return sum(int(v) for v in (counts or {}).values())


def trend_table(history: list[dict]) -> str:
    rounds = [h.get("as_of") or f"#{i + 1}" for i, h in enumerate(history)]
    rows = []
    for code in anomaly_rules():
        values = [code_total(h.get("anomalies_by_code", {}).get(code)) for h in history]
        rows.append([esc(code), *(fmt_int(v) for v in values), sparkline_svg(values)])
    return html_table(["Kode", *rounds, "Tren"], rows, numeric=set(range(1, len(rounds) + 1)), raw=True)


def changes_section(page: Page, previous_dir: Path | None, summary: dict, anomalies: pl.LazyFrame, records: pl.LazyFrame, max_cases: int) -> str:
    previous = scan(Path(previous_dir), "anomalies.parquet") if previous_dir is not None else None
    if previous is None or not (Path(previous_dir) / "summary.json").is_file():
        return (
            '<p class="empty">Tidak ada putaran sebelumnya untuk dibandingkan (berikan folder hasil putaran sebelumnya '
            "yang berisi anomalies.parquet dan summary.json).</p>"
        )
    previous_summary = json.loads((Path(previous_dir) / "summary.json").read_text(encoding="utf-8"))
    keys = ["id_dtks", "anomaly_code"]
    new = anomalies.join(previous.select(keys), on=keys, how="anti")
    resolved = previous.join(anomalies.select(keys), on=keys, how="anti")
    new_by_code = dict(new.group_by("anomaly_code").len().collect().iter_rows())
    resolved_by_code = dict(resolved.group_by("anomaly_code").len().collect().iter_rows())
    now_by_code = dict(anomalies.group_by("anomaly_code").len().collect().iter_rows())
    before_by_code = dict(previous.group_by("anomaly_code").len().collect().iter_rows())
    new_total, resolved_total = sum(new_by_code.values()), sum(resolved_by_code.values())

    rows = []
    for code in anomaly_rules():
        before, now = before_by_code.get(code, 0), now_by_code.get(code, 0)
        delta = now - before
        arrow = f'<span class="up">+{fmt_int(delta)}</span>' if delta > 0 else f'<span class="down">-{fmt_int(-delta)}</span>' if delta < 0 else "0"
        rows.append([esc(code), fmt_int(before), fmt_int(now), arrow, fmt_int(new_by_code.get(code, 0)), fmt_int(resolved_by_code.get(code, 0))])
    per_code = html_table(["Kode", "Sebelumnya", "Sekarang", "Selisih", "Baru", "Selesai"], rows, numeric={1, 2, 3, 4, 5}, raw=True)

    new_rows = masked_case_rows(first_cases(new, max_cases), records) if new_total else pl.DataFrame(schema={"id": pl.String, "code": pl.String})
    resolved_rows = (
        ranked(resolved).filter(pl.int_range(pl.len()).over("anomaly_code") < max_cases)
        .select(id=pl.col("id_dtks"), code=pl.col("anomaly_code"), sev=pl.col("severity"), act=pl.col("action"), detail=scrub_text(pl.col("detail")))
        .collect()
    )
    facets = [
        {"key": "code", "label": "Kode", "labels": code_labels(), "order": list(anomaly_rules())},
        {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "order": list(ACTIONS)},
    ]
    common = [
        {"key": "id", "label": "id_dtks"}, {"key": "code", "label": "Kode"},
        {"key": "sev", "label": "Tingkat", "labels": SEVERITY_LABELS, "cls": "sev"},
        {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "cls": "act"},
    ]
    new_mount = page.list_mount("new", list_spec(
        new_rows, common + [{"key": "kab", "label": "Kabupaten/kota"}, {"key": "nama", "label": "Inisial"}, {"key": "detail", "label": "Keterangan"}],
        facets, ["id", "code", "kab", "detail"], "Cari id_dtks…",
    ))
    resolved_mount = page.list_mount("resolved", list_spec(
        resolved_rows, common + [{"key": "detail", "label": "Keterangan (putaran sebelumnya)"}], facets, ["id", "code", "detail"], "Cari id_dtks…",
    ))
    history = build_history(previous_dir, summary)
    return (
        f'<p>Dibandingkan dengan putaran per <b>{esc(previous_summary.get("as_of", "?"))}</b>: '
        f'<b id="changes-new">{fmt_int(new_total)}</b> anomali baru dan <b id="changes-resolved">{fmt_int(resolved_total)}</b> '
        "anomali selesai (ada sebelumnya, sekarang tidak). Kunci pembanding: id_dtks + kode.</p>"
        + per_code
        + f"<h3>Tren {len(history)} putaran</h3>" + trend_table(history)
        + f'<h3>Anomali baru</h3><p class="note">{esc(shown_note(new_rows.height, new_total))}</p>{new_mount}'
        + f'<h3>Anomali selesai</h3><p class="note">{esc(shown_note(resolved_rows.height, resolved_total))}</p>{resolved_mount}'
    )


# --------------------------------------------------------------------------- entry point


def render_report(work_dir: Path, summary: dict, previous_dir: Path | None = None, max_cases: int = MAX_CASES) -> str:
    """The whole report as one HTML string. work_dir holds the round's Parquet outputs;
    previous_dir (optional) the previous round's outputs, for "what changed"."""
    work_dir = Path(work_dir)
    records = load_records(work_dir)
    anomalies = load_anomalies(work_dir)
    totals = {code: 0 for code in anomaly_rules()} | dict(anomalies.group_by("anomaly_code").len().collect().iter_rows())
    cases = first_cases(anomalies, max_cases)
    case_rows = masked_case_rows(cases, records)

    page = Page()
    page.add("rekonsiliasi", "Rekonsiliasi", reconciliation_section(summary))
    page.add("kode", "Anomali per kode", codes_section(summary, totals, max_cases))
    page.add("wilayah", "Per provinsi dan kabupaten/kota", region_section(page, region_counts(records, anomalies)))
    page.add("daftar", "Daftar anomali", anomaly_list_section(page, case_rows, totals, max_cases))
    page.add("duplikat", "Klaster duplikat", duplicates_section(page, work_dir, records, anomalies, max_cases))
    page.add("dukcapil", "DTKS dibanding Dukcapil", dukcapil_section(page, work_dir, cases, records, totals))
    page.add("perubahan", "Perubahan sejak putaran sebelumnya", changes_section(page, previous_dir, summary, anomalies, records, max_cases))
    page.add("mutu", "Mutu data", quality_section(summary))
    page.add("proses", "Ringkasan proses", process_section(summary))
    page.add("karantina", "Karantina", quarantine_section(page, work_dir, max_cases))
    page.add("waktu", "Waktu per tahap", timings_section(summary))
    return assemble(page, summary)
