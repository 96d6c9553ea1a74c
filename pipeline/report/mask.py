"""Masking of personal data for what reviewers read (UU 27/2022 on personal data).

The report shows just enough to find a record (id_dtks) and judge a case; the
full data stays in the Parquet outputs. All functions are vectorized Polars
expressions so they cost nothing extra at a million rows.
"""

from __future__ import annotations

import polars as pl

NIK_STARS = "*" * 8


def mask_nik(expr: pl.Expr) -> pl.Expr:
    """A 16-digit NIK (or KK number) keeps its first 4 digits (province + kabupaten,
    which the report shows anyway) and last 4: 3201********0012. Any other value
    (15/17 digits, Excel notation, letters) becomes stars except its last 2 characters,
    so a malformed NIK cannot leak more than a well-formed one."""
    text = expr.cast(pl.String)
    well_formed = text.str.contains(r"^\d{16}$")
    length = text.str.len_chars()
    # A null stays null through every branch; the first branch names the output
    # after the input column.
    return (
        pl.when(well_formed)
        .then(pl.concat_str(text.str.slice(0, 4), pl.lit(NIK_STARS), text.str.slice(12, 4)))
        .when(length <= 2)
        .then(pl.lit("**"))
        .otherwise(text.str.slice(-2).str.pad_start(length, "*"))
    )


def mask_name(expr: pl.Expr) -> pl.Expr:
    """Initials only, one star per hidden letter: "SITI AMINAH" -> "S*** A*****".
    Every word character that does not start a word is replaced."""
    return expr.cast(pl.String).str.replace_all(r"\B\w", "*")


def birth_year(expr: pl.Expr) -> pl.Expr:
    """Only the year of a birth date (a full date plus initials identifies a person)."""
    return expr.dt.year()


def mask_digit_runs(expr: pl.Expr) -> pl.Expr:
    """Digit runs of 12 or more (a NIK or KK number quoted in free text) keep their first
    and last 4 digits."""
    return expr.cast(pl.String).str.replace_all(r"\b(\d{4})\d{4,}(\d{4})\b", "${1}" + NIK_STARS + "${2}")


def scrub_text(expr: pl.Expr) -> pl.Expr:
    """Free text (anomaly details, quarantine reasons) may quote input values: long digit
    runs (NIK, KK) are masked and dates keep only their year."""
    return (
        mask_digit_runs(expr)
        .str.replace_all(r"\b(\d{4})[-/.]\d{1,2}[-/.]\d{1,2}\b", "${1}-**-**")
        .str.replace_all(r"\b\d{1,2}[-/.]\d{1,2}[-/.](\d{2}|\d{4})\b", "**-**-${1}")
    )
