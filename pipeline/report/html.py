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
    "dob_agreement": {"exact": "sama", "close": "hampir sama", "different": "berbeda"},
}


def fmt_int(value: int | float | None) -> str:
    """Indonesian thousands separator: 12.345."""
    return "" if value is None else f"{int(value):,}".replace(",", ".")


def fmt_dec(value: float | None, digits: int) -> str:
    """Indonesian decimals: 1.234,56 (thousands with dots, decimals after a comma)."""
    if value is None:
        return ""
    return f"{value:,.{digits}f}".replace(",", "_").replace(".", ",").replace("_", ".")


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


def rank_of(column: str, order: tuple[str, ...]) -> pl.Expr:
    return pl.col(column).replace_strict(order, list(range(len(order))), default=len(order), return_dtype=pl.Int8)


def ranked(
    frame: pl.LazyFrame, severity: str = "severity", action: str = "action", id_dtks: str = "id_dtks", code: str = "anomaly_code"
) -> pl.LazyFrame:
    """The fixed order of every list: severity, action, id_dtks, code. Joins do not keep
    row order, so every list is sorted with this last."""
    return (
        frame.with_columns(_sev=rank_of(severity, SEVERITIES), _act=rank_of(action, ACTIONS))
        .sort("_sev", "_act", id_dtks, code)
        .drop("_sev", "_act")
    )


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
            nik=mask_nik(pl.col("nik")),
            nama=mask_name(pl.col("nama")),
            jk=pl.col("jenis_kelamin"),
            thn=birth_year(pl.col("tanggal_lahir")).cast(pl.String),
            detail=scrub_text(pl.col("detail")),
            rel=pl.when(pl.col("_related_is_row").fill_null(False)).then(pl.col("related_id")).otherwise(mask_nik(pl.col("related_id"))),
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
        "daftar lengkap di anomalies.parquet / anomalies.xlsx."
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


def action_words(rule) -> str:
    words = ACTION_LABELS.get(rule.action, rule.action)
    if rule.strong_action:
        words += " / kuat: " + ACTION_LABELS.get(rule.strong_action, rule.strong_action)
    return words


def codes_section(data: RoundData) -> str:
    by_code = data.summary.get("anomalies_by_code", {})
    rows, bars = [], []
    for code, rule in anomaly_rules().items():
        counts = {action: int(by_code.get(code, {}).get(action, 0)) for action in ACTIONS}
        found = data.totals.get(code, 0)
        severity = f'<span class="sev-{esc(rule.severity)}">{esc(SEVERITY_LABELS.get(rule.severity, rule.severity))}</span>'
        rows.append([
            esc(code), esc(rule.label_id), severity, esc(action_words(rule)),
            *(fmt_int(counts[a]) for a in ACTIONS), f"<b>{fmt_int(sum(counts.values()))}</b>",
            f"{fmt_int(min(found, data.max_cases))} dari {fmt_int(found)}",
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
        f"{fmt_int(data.max_cases)} kasus per kode (urut tingkat, tindakan, id_dtks); daftar lengkap di "
        "anomalies.parquet / anomalies.xlsx.</p>"
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


def need_bars(frame: pl.DataFrame, label) -> list[tuple[str, dict[str, int]]]:
    """Bars of rows needing action (excluded, review) per region; label(row) names a bar."""
    return [(label(r), {"excluded": r["excluded"], "review": r["review"]}) for r in frame.iter_rows(named=True)]


def region_section(page: Page, data: RoundData) -> str:
    regions = region_counts(data.records, data.anomalies)
    codes = list(anomaly_rules())
    numeric = ["baris", "verified", "review", "excluded", "anomali", *codes]
    provinces = regions.group_by("kode_provinsi", "nama_provinsi").agg(pl.col(numeric).sum()).sort("kode_provinsi")
    top_kab = (
        regions.with_columns(_need=pl.col("review") + pl.col("excluded")).filter(pl.col("_need") > 0)
        .sort(["_need", "kode_kabupaten"], descending=[True, False]).head(20)
    )
    segments = {key: (OUTCOME_LABELS[key], OUTCOME_COLORS[key]) for key in ("excluded", "review")}
    province_chart = bar_chart_svg(need_bars(provinces, lambda r: r["nama_provinsi"]), segments)
    kab_chart = bar_chart_svg(need_bars(top_kab, lambda r: f"{r['nama_kabupaten']} ({r['nama_provinsi']})"), segments)

    count_columns = [
        {"key": "baris", "label": "Baris", "num": True},
        {"key": "verified", "label": "Terverifikasi", "num": True},
        {"key": "review", "label": "Perlu diperiksa", "num": True},
        {"key": "excluded", "label": "Dikeluarkan", "num": True},
        {"key": "anomali", "label": "Anomali", "num": True},
    ] + [{"key": code, "label": code, "num": True, "title": rule.label_id} for code, rule in anomaly_rules().items()]
    province_list = page.list_mount("provinsi", list_spec(
        provinces.select("kode_provinsi", "nama_provinsi", *numeric),
        [{"key": "kode_provinsi", "label": "Kode"}, {"key": "nama_provinsi", "label": "Provinsi"}] + count_columns,
        facets=[], search=["kode_provinsi", "nama_provinsi"], placeholder="Cari provinsi…", unit="provinsi",
    ))
    kab_list = page.list_mount("kabupaten", list_spec(
        regions.select("kode_kabupaten", "nama_kabupaten", "kode_provinsi", "nama_provinsi", *numeric),
        [{"key": "kode_kabupaten", "label": "Kode"}, {"key": "nama_kabupaten", "label": "Kabupaten/kota"},
         {"key": "nama_provinsi", "label": "Provinsi"}] + count_columns,
        facets=[{"key": "nama_provinsi", "label": "Provinsi"}],
        search=["kode_kabupaten", "nama_kabupaten", "nama_provinsi"], placeholder="Cari kabupaten/kota…", unit="kabupaten/kota",
    ))
    return (
        '<p class="note">Dihitung atas semua baris yang terbaca (tanpa karantina), menurut kabupaten/kota domisili DTKS; '
        "kode lama (pemekaran Papua) dipetakan ke kode yang berlaku.</p>"
        f"<h3>Per provinsi: baris perlu diperiksa dan dikeluarkan</h3>{province_chart}{legend(segments)}{province_list}"
        f"<h3>20 kabupaten/kota dengan baris bermasalah terbanyak</h3>{kab_chart}"
        f"<h3>Semua kabupaten/kota</h3>{kab_list}"
    )


def anomaly_list_section(page: Page, data: RoundData) -> str:
    rows = masked_case_rows(data.cases, data.records)
    shown = dict(rows.group_by("code").len().iter_rows()) if rows.height else {}
    notes = "".join(
        f"<li><b>{esc(code)}</b>: {esc(shown_note(shown.get(code, 0), total))}</li>"
        for code, total in data.totals.items() if total
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


def cluster_members(data: RoundData) -> tuple[pl.DataFrame, int]:
    """Members of the first max_cases clusters with more than one row (clusters holding a
    row a reviewer must decide on first, then by cluster_id), and the number of such clusters."""
    clusters = scan(data.work_dir, "duplicate_clusters.parquet")
    if clusters is None:
        return pl.DataFrame(), 0
    multi = clusters.filter(pl.col("cluster_size") > 1)
    total = multi.select(pl.col("cluster_id").n_unique()).collect().item()
    actions = data.anomalies.filter(pl.col("anomaly_code") == "DUPLICATE_PERSON").select("id_dtks", "action")
    chosen = (
        multi.join(actions, on="id_dtks", how="left")
        .group_by("cluster_id").agg(needs_review=(pl.col("action") == "review").any())
        .sort(["needs_review", "cluster_id"], descending=[True, False])
        .head(data.max_cases)
    )
    members = (
        multi.join(chosen, on="cluster_id", how="inner")
        .join(data.records, on="id_dtks", how="left")
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


def duplicates_section(page: Page, data: RoundData) -> str:
    members, total = cluster_members(data)
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
        keys = {"id_dtks": pl.String, "anomaly_code": pl.String}
        return pl.LazyFrame(schema=keys | LINK_SCHEMA | PERSON_SCHEMA | {"d_kab": pl.String})
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
        lines = chosen.select(source_line=pl.col("dukcapil_source_line"))
        person = staged.join(lines, on="source_line", how="semi").select(
            dukcapil_source_line=pl.col("source_line"), d_nama=pl.col("nama"), d_jk=pl.col("jenis_kelamin"),
            d_lahir=pl.col("tanggal_lahir"), d_alamat=pl.col("alamat"),
        )
        chosen = chosen.join(person.unique("dukcapil_source_line"), on="dukcapil_source_line", how="left")
    else:
        chosen = chosen.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in PERSON_SCHEMA.items()])
    names = region_lookup().select(kab_dukcapil=pl.col("kode_kabupaten"), d_kab=pl.col("nama_kabupaten"))
    return chosen.join(names, on="kab_dukcapil", how="left").with_columns(d_kab=pl.coalesce("d_kab", "kab_dukcapil"))


LINK_METHOD_LABELS = {"exact_nik": "NIK sama", "fuzzy": "fuzzy (nama, tanggal lahir, wilayah)"}


def dukcapil_rows(data: RoundData) -> pl.DataFrame:
    """DTKS row and the linked Dukcapil record side by side for the shown cases."""
    chosen = data.cases.filter(pl.col("anomaly_code").is_in(list(DUKCAPIL_CODES)))
    if chosen.height == 0:
        return pl.DataFrame(schema={"id": pl.String, "code": pl.String, "act": pl.String, "kab": pl.String})
    people = data.records.select("id_dtks", "nik", "nama", "jenis_kelamin", "tanggal_lahir", "kode_kabupaten")
    frame = (
        chosen.lazy()
        .join(people, on="id_dtks", how="left")
        .pipe(with_region)
        .join(linked_dukcapil(data.work_dir, chosen.lazy()), on=["id_dtks", "anomaly_code"], how="left")
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


def dukcapil_section(page: Page, data: RoundData) -> str:
    rows = dukcapil_rows(data)
    shown = dict(rows.group_by("code").len().iter_rows()) if rows.height else {}
    notes = "".join(
        f"<li><b>{esc(code)}</b> ({esc(anomaly_rules()[code].label_id)}): "
        f"{esc(shown_note(shown.get(code, 0), data.totals.get(code, 0)))}</li>"
        for code in DUKCAPIL_CODES
    )
    dtks, duk = "DTKS", "Dukcapil"
    mount = page.list_mount("dukcapil", list_spec(
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
    return (
        "<p>Kasus meninggal, pindah domisili, dan identitas tidak cocok: baris DTKS di kiri, catatan Dukcapil yang "
        "tertaut di kanan (lewat NIK yang sama, atau tautan fuzzy bila NIK tidak mengarah ke orangnya; "
        "tautan fuzzy selalu diperiksa pemeriksa). Sel kuning: berbeda dengan DTKS. Identitas kuat = nama dan "
        "tanggal lahir cocok; orang lain = NIK sama tetapi nama dan tanggal lahir milik orang lain.</p>"
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
                f"{fmt_dec(r['unexpected_percent'], 2)}%" if r.get("unexpected_percent") is not None else "",
            ]
            for r in result.get("results", [])
        ]
        passed = f"{fmt_int(result.get('successful'))} dari {fmt_int(result.get('evaluated'))} aturan lulus"
        out.append(
            f"<h3>{esc(kind.upper())}: {badge} &middot; {passed} &middot; {fmt_int(result.get('rows'))} baris</h3>"
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
    out = html_table(["Tahap", "Jumlah"], facts, numeric={1})
    out += "<h3>Aturan blocking pencarian duplikat</h3>" + blocking_table(dup.get("blocking", []))
    if link.get("fuzzy_blocking"):
        out += "<h3>Aturan blocking tautan fuzzy ke Dukcapil</h3>" + blocking_table(link["fuzzy_blocking"])
    return out


def blocking_table(rules: list[dict]) -> str:
    rows = [
        [rule.get("rule"), fmt_int(rule.get("pairs")), fmt_int(rule.get("total_candidate_pairs")),
         fmt_int(rule.get("records_in_skipped_blocks"))]
        for rule in rules
    ]
    headers = ["Aturan", "Pasangan baru", "Semua pasangan kandidat", "Baris di blok terlalu besar (dilewati)"]
    return html_table(headers, rows, numeric={1, 2, 3})


def timings_section(summary: dict) -> str:
    timings = summary.get("stage_timings") or []
    rows = [[esc(t.get("stage")), fmt_dec(t.get("seconds", 0), 2), fmt_int(t.get("peak_rss_mib", 0))] for t in timings]
    bars = [(t.get("stage", ""), {"s": max(int(round(t.get("seconds", 0) * 1000)), 0)}) for t in timings]
    chart = bar_chart_svg(bars, {"s": ("milidetik", "#17324d")})
    total = sum(t.get("seconds", 0) for t in timings)
    return (
        html_table(["Tahap", "Detik", "Puncak memori (MiB)"], rows, numeric={1, 2}, raw=True)
        + f'<p class="note">Jumlah {fmt_dec(total, 2)} detik (tanpa tahap laporan dan penerbitan). '
        f"Grafik dalam milidetik.</p>{chart}"
    )


def quarantine_section(page: Page, data: RoundData) -> str:
    frame = scan(data.work_dir, "quarantine.parquet")
    if frame is None:
        return '<p class="empty">quarantine.parquet tidak ada.</p>'
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
    mount = page.list_mount("quarantine", list_spec(
        lines,
        columns=[
            {"key": "source", "label": "Sumber"}, {"key": "file", "label": "File"}, {"key": "line", "label": "Baris", "num": True},
            {"key": "id_dtks", "label": "id_dtks"}, {"key": "reason", "label": "Alasan"},
        ],
        facets=[{"key": "source", "label": "Sumber"}],
        search=["file", "id_dtks", "reason"], placeholder="Cari id_dtks atau alasan…",
    ))
    counts = ", ".join(f"{esc(s)}: {fmt_int(n)}" for s, n in per_source.iter_rows()) or "tidak ada"
    reason_rows = [[s, r, fmt_int(n)] for s, r, n in reasons.iter_rows()]
    return (
        f"<p>Baris yang tidak dapat dibaca masuk karantina, tidak dibuang: {counts}. "
        "DTKS yang dikarantina ikut dihitung di rekonsiliasi.</p><h3>Alasan terbanyak</h3>"
        + html_table(["Sumber", "Alasan", "Baris"], reason_rows, numeric={2})
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


def trend_table(history: list[dict]) -> str:
    rounds = [h.get("as_of") or f"#{i + 1}" for i, h in enumerate(history)]
    rows = []
    for code in anomaly_rules():
        values = [code_total(h.get("anomalies_by_code", {}).get(code)) for h in history]
        rows.append([esc(code), *(fmt_int(v) for v in values), sparkline_svg(values)])
    return html_table(["Kode", *rounds, "Tren"], rows, numeric=set(range(1, len(rounds) + 1)), raw=True)


def counts_by_code(frame: pl.LazyFrame) -> dict[str, int]:
    return dict(frame.group_by("anomaly_code").len().collect().iter_rows())


def change_table(before: dict[str, int], now: dict[str, int], new: dict[str, int], resolved: dict[str, int]) -> str:
    rows = []
    for code in anomaly_rules():
        delta = now.get(code, 0) - before.get(code, 0)
        if delta > 0:
            change = f'<span class="up">+{fmt_int(delta)}</span>'
        elif delta < 0:
            change = f'<span class="down">-{fmt_int(-delta)}</span>'
        else:
            change = "0"
        rows.append([
            esc(code), fmt_int(before.get(code, 0)), fmt_int(now.get(code, 0)), change,
            fmt_int(new.get(code, 0)), fmt_int(resolved.get(code, 0)),
        ])
    return html_table(["Kode", "Sebelumnya", "Sekarang", "Selisih", "Baru", "Selesai"], rows, numeric={1, 2, 3, 4, 5}, raw=True)


CHANGE_FACETS = [
    {"key": "code", "label": "Kode", "labels": code_labels(), "order": list(anomaly_rules())},
    {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "order": list(ACTIONS)},
]
CHANGE_COLUMNS = [
    {"key": "id", "label": "id_dtks"}, {"key": "code", "label": "Kode"},
    {"key": "sev", "label": "Tingkat", "labels": SEVERITY_LABELS, "cls": "sev"},
    {"key": "act", "label": "Tindakan", "labels": ACTION_LABELS, "cls": "act"},
]


def changes_section(page: Page, data: RoundData, previous_dir: Path | None) -> str:
    """New anomalies (id_dtks + code not in the previous round), resolved ones, counts per
    code before and now, and the trend over the rounds in history.json."""
    previous = scan(Path(previous_dir), "anomalies.parquet") if previous_dir is not None else None
    if previous is None or not (Path(previous_dir) / "summary.json").is_file():
        return (
            '<p class="empty">Tidak ada putaran sebelumnya untuk dibandingkan (berikan folder hasil putaran sebelumnya '
            "yang berisi anomalies.parquet dan summary.json).</p>"
        )
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
    new_mount = page.list_mount("new", list_spec(
        new_rows,
        CHANGE_COLUMNS + [{"key": "kab", "label": "Kabupaten/kota"}, {"key": "nama", "label": "Inisial"},
                          {"key": "detail", "label": "Keterangan"}],
        CHANGE_FACETS, ["id", "code", "kab", "detail"], "Cari id_dtks…",
    ))
    resolved_mount = page.list_mount("resolved", list_spec(
        resolved_rows, CHANGE_COLUMNS + [{"key": "detail", "label": "Keterangan (putaran sebelumnya)"}],
        CHANGE_FACETS, ["id", "code", "detail"], "Cari id_dtks…",
    ))
    history = build_history(previous_dir, data.summary)
    return (
        f"<p>Dibandingkan dengan putaran per <b>{esc(previous_as_of)}</b>: "
        f'<b id="changes-new">{fmt_int(new_total)}</b> anomali baru dan <b id="changes-resolved">{fmt_int(resolved_total)}</b> '
        "anomali selesai (ada sebelumnya, sekarang tidak). Kunci pembanding: id_dtks + kode.</p>"
        + change_table(counts_by_code(previous), data.totals, new_by_code, resolved_by_code)
        + f"<h3>Tren {len(history)} putaran</h3>" + trend_table(history)
        + f'<h3>Anomali baru</h3><p class="note">{esc(shown_note(new_rows.height, new_total))}</p>{new_mount}'
        + f'<h3>Anomali selesai</h3><p class="note">{esc(shown_note(resolved_rows.height, resolved_total))}</p>{resolved_mount}'
    )


# --------------------------------------------------------------------------- entry point


def render_report(work_dir: Path, summary: dict, previous_dir: Path | None = None, max_cases: int = MAX_CASES) -> str:
    """The whole report as one HTML string. work_dir holds the round's Parquet outputs;
    previous_dir (optional) the previous round's outputs, for "what changed"."""
    data = RoundData.load(Path(work_dir), summary, max_cases)
    page = Page()
    page.add("rekonsiliasi", "Rekonsiliasi", reconciliation_section(summary))
    page.add("kode", "Anomali per kode", codes_section(data))
    page.add("wilayah", "Per provinsi dan kabupaten/kota", region_section(page, data))
    page.add("daftar", "Daftar anomali", anomaly_list_section(page, data))
    page.add("duplikat", "Klaster duplikat", duplicates_section(page, data))
    page.add("dukcapil", "DTKS dibanding Dukcapil", dukcapil_section(page, data))
    page.add("perubahan", "Perubahan sejak putaran sebelumnya", changes_section(page, data, previous_dir))
    page.add("mutu", "Mutu data", quality_section(summary))
    page.add("proses", "Ringkasan proses", process_section(summary))
    page.add("karantina", "Karantina", quarantine_section(page, data))
    page.add("waktu", "Waktu per tahap", timings_section(summary))
    return assemble(page, summary)
