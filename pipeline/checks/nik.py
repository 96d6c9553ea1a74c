"""NIK checks: parse the 16 digits into region, birth date, sex and serial, and flag
each broken rule with its own anomaly code. Vectorized polars expressions only.

NIK = PPKKCC DDMMYY SSSS: kecamatan of first registration, birth date (day + 40 for
women), serial from 0001. The rules below are the single place they are defined.
"""

from __future__ import annotations

import polars as pl

from pipeline.checks import wilayah
from pipeline.contract import CODE, anomaly_frame

# Birth day-months that registrars write when the real date is unknown. They hold
# millions of people, so a date agreement on them says little.
PLACEHOLDER_DAY_MONTHS = ((1, 7), (31, 12), (1, 1))

SIXTEEN_DIGITS = r"^[0-9]{16}$"


def placeholder_birth_date(date: pl.Expr) -> pl.Expr:
    """True for 1 July, 31 December and 1 January: dates written when the real one is unknown."""
    return pl.any_horizontal(
        [(date.dt.day() == d) & (date.dt.month() == m) for d, m in PLACEHOLDER_DAY_MONTHS]
    ).fill_null(False)


def format_problem(nik: pl.Expr) -> pl.Expr:
    """Why a NIK is not 16 digits with a non-zero serial, or null when it is."""
    digits_only = nik.str.contains(r"^[0-9]+$")
    length = nik.str.len_chars()
    return (
        pl.when(nik.is_null() | (nik == "")).then(pl.lit("kosong"))
        .when(nik.str.contains(r"(?i)^[0-9.,]+E\+?[0-9]+$")).then(pl.lit("notasi ilmiah (rusak oleh Excel)"))
        .when(nik.str.contains(r"^[0-9]{15,17}[.,]0+$")).then(pl.lit("akhiran .0 (pernah menjadi angka desimal)"))
        .when(~digits_only).then(pl.lit("mengandung huruf/tanda baca"))
        .when(length == 15).then(pl.lit("15 digit"))
        .when(length == 17).then(pl.lit("17 digit"))
        .when(length != 16).then(pl.lit("panjang ") + length.cast(pl.String) + pl.lit(" digit"))
        .when(nik.str.slice(12, 4) == "0000").then(pl.lit("nomor urut 0000"))
        .otherwise(None)
    )


def parse_nik(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the NIK's parts and validity flags. Expects columns nik, jenis_kelamin, tanggal_lahir."""
    kecamatan = wilayah.kecamatan_codes()
    well_formed = pl.col("nik").str.contains(SIXTEEN_DIGITS).fill_null(False) & (pl.col("nik").str.slice(12, 4) != "0000")
    day_raw = pl.col("nik").str.slice(6, 2).cast(pl.Int32, strict=False)
    month = pl.col("nik").str.slice(8, 2).cast(pl.Int32, strict=False)
    year2 = pl.col("nik").str.slice(10, 2).cast(pl.Int32, strict=False)
    day = pl.when(day_raw > 40).then(day_raw - 40).otherwise(day_raw)
    frame = frame.with_columns(
        nik_format_problem=format_problem(pl.col("nik")),
        nik_region=pl.when(well_formed).then(pl.col("nik").str.slice(0, 6)),
        nik_region_status=pl.when(well_formed).then(
            pl.col("nik").str.slice(0, 6).replace_strict(kecamatan["kode"], kecamatan["status"], default="unknown")
        ),
        _day_raw=pl.when(well_formed).then(day_raw),
        _day=pl.when(well_formed).then(day),
        _month=pl.when(well_formed).then(month),
        _year2=pl.when(well_formed).then(year2),
    )
    day_in_range = pl.col("_day_raw").is_between(1, 31) | pl.col("_day_raw").is_between(41, 71)
    month_in_range = pl.col("_month").is_between(1, 12)
    # 20YY is a leap year whenever 19YY or 20YY is (2000 covers YY=00), so 29 February is judged right;
    # pl.date errors on impossible dates, so build text and parse it non-strictly.
    date_text = pl.format(
        "{}-{}-{}", (2000 + pl.col("_year2")).cast(pl.String), pl.col("_month").cast(pl.String).str.zfill(2), pl.col("_day").cast(pl.String).str.zfill(2)
    )
    date_exists = date_text.str.to_date("%Y-%m-%d", strict=False).is_not_null()
    frame = frame.with_columns(
        nik_date_valid=pl.when(pl.col("nik_format_problem").is_null()).then(day_in_range & month_in_range & date_exists),
    )
    frame = frame.with_columns(
        nik_sex=pl.when(pl.col("nik_date_valid")).then(pl.when(pl.col("_day_raw") > 40).then(pl.lit("P")).otherwise(pl.lit("L"))),
        nik_dob_mismatch=pl.when(pl.col("nik_date_valid")).then(
            (pl.col("tanggal_lahir").dt.day() != pl.col("_day"))
            | (pl.col("tanggal_lahir").dt.month() != pl.col("_month"))
            | ((pl.col("tanggal_lahir").dt.year() % 100) != pl.col("_year2"))
        ),
        nik_format_ok=pl.col("nik_format_problem").is_null(),
        nik_valid=(
            pl.col("nik_format_problem").is_null()
            & (pl.col("nik_region_status") != "unknown")
            & pl.col("nik_date_valid").fill_null(False)
        ).fill_null(False),
        dob_placeholder=placeholder_birth_date(pl.col("tanggal_lahir")),
    )
    return frame


# Each rule: anomaly code -> (condition, detail). Conditions see the columns parse_nik adds.
NIK_RULES: dict[str, tuple[pl.Expr, pl.Expr]] = {
    CODE.NIK_INVALID_FORMAT: (
        pl.col("nik_format_problem").is_not_null(),
        pl.col("nik_format_problem"),
    ),
    CODE.NIK_INVALID_REGION: (
        pl.col("nik_region_status") == "unknown",
        pl.format("kode kecamatan {} tidak ada di daftar Kemendagri (berlaku maupun lama)", pl.col("nik_region")),
    ),
    CODE.NIK_INVALID_DATE: (
        pl.col("nik_date_valid").not_(),
        pl.format("bagian tanggal NIK: hari {} bulan {}", pl.col("_day_raw"), pl.col("_month")),
    ),
    CODE.NIK_SEX_MISMATCH: (
        pl.col("nik_sex") != pl.col("jenis_kelamin"),
        pl.format("NIK menunjukkan {}, data tertulis {}", pl.col("nik_sex"), pl.col("jenis_kelamin")),
    ),
    CODE.NIK_DOB_MISMATCH: (
        pl.col("nik_dob_mismatch"),
        pl.format(
            "NIK: {}-{}-{} (DD-MM-YY), tanggal_lahir berbeda",
            pl.col("_day").cast(pl.String).str.zfill(2), pl.col("_month").cast(pl.String).str.zfill(2),
            pl.col("_year2").cast(pl.String).str.zfill(2),
        ),
    ),
}

NIK_CHECK_COLUMNS = [
    "id_dtks", "nik_format_ok", "nik_valid", "nik_format_problem", "nik_region", "nik_region_status", "nik_date_valid",
    "nik_sex", "nik_dob_mismatch", "dob_placeholder",
]


def nik_anomalies(parsed: pl.DataFrame) -> pl.DataFrame:
    """One row per (id_dtks, code) for every NIK rule a row breaks."""
    parts = [
        anomaly_frame(parsed.filter(condition.fill_null(False)), code, detail=detail)
        for code, (condition, detail) in NIK_RULES.items()
    ]
    return pl.concat(parts)


# The staged DTKS columns the checks read.
NIK_CHECK_INPUT = ["id_dtks", "nik", "jenis_kelamin", "tanggal_lahir"]


def check_niks(dtks: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stage: staging DTKS -> (per-row NIK facts, NIK anomalies). Each row is judged on
    its own, so any cut of the rows into chunks gives the same facts and anomalies."""
    parsed = parse_nik(dtks)
    return parsed.select(NIK_CHECK_COLUMNS), nik_anomalies(parsed)


def check_counts(facts: pl.DataFrame, anomalies: pl.DataFrame) -> dict:
    """The stage's figures in summary.json; they add up over chunks of rows."""
    return {"rows": facts.height, "valid": int(facts["nik_valid"].sum()), "anomalies": anomalies.height}
