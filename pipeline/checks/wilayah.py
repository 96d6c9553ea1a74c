"""Kemendagri region codes: current kecamatan and kabupaten, plus the codes retired by
the Papua splits (NIKs keep the code of first registration for life)."""

from __future__ import annotations

from functools import cache

import polars as pl

from pipeline.paths import REFERENCE_DIR


def _read(name: str) -> pl.DataFrame:
    return pl.read_csv(REFERENCE_DIR / name, infer_schema=False)


@cache
def kecamatan_codes() -> pl.DataFrame:
    """kode (6 digits), status: current | retired. Valid NIK prefixes."""
    current = _read("districts.csv").select(kode=pl.col("kode"), status=pl.lit("current"))
    retired = (
        _read("retired_codes.csv")
        .filter(pl.col("level") == "3")
        .select(kode=pl.col("kode"), status=pl.lit("retired"))
    )
    return pl.concat([current, retired.filter(~pl.col("kode").is_in(current["kode"].implode()))]).sort("kode")


@cache
def kabupaten_successors() -> pl.DataFrame:
    """kode (4 digits) -> kode_kabupaten_kini: every current kabupaten maps to itself, a
    retired one to its successor, so two codes compare by the region they denote today."""
    current = _read("regencies.csv").select(kode=pl.col("kode"), kode_kabupaten_kini=pl.col("kode"))
    retired = (
        _read("retired_codes.csv")
        .filter((pl.col("level") == "2") & pl.col("kode_pengganti_guess").is_not_null())
        .select(kode=pl.col("kode"), kode_kabupaten_kini=pl.col("kode_pengganti_guess"))
    )
    return pl.concat([current, retired]).unique("kode", keep="first").sort("kode")


@cache
def region_names() -> pl.DataFrame:
    """kode_kabupaten -> nama_kabupaten, kode_provinsi, nama_provinsi (for the report)."""
    provinces = _read("provinces.csv").rename({"kode": "kode_provinsi", "nama": "nama_provinsi"})
    regencies = _read("regencies.csv").rename({"kode": "kode_kabupaten", "nama": "nama_kabupaten"})
    return regencies.join(provinces, on="kode_provinsi", how="left").sort("kode_kabupaten")


def with_current_kabupaten(frame: pl.DataFrame | pl.LazyFrame, code: str, name: str) -> pl.DataFrame | pl.LazyFrame:
    """Column `name`: the kabupaten of the region code in column `code` (any level >= 4
    digits), retired codes mapped to their successors, other codes kept as they are. A
    join with the successors' table, not `replace`: polars' streaming engine runs a join
    batch by batch and `replace` on the whole column (25M Dukcapil rows: 1.3 GB against 6.9 GB)."""
    successors = kabupaten_successors().rename({"kode": "_kab4", "kode_kabupaten_kini": "_kab_now"})
    return (
        frame.with_columns(_kab4=pl.col(code).str.slice(0, 4))
        .join(successors.lazy() if isinstance(frame, pl.LazyFrame) else successors, on="_kab4", how="left",
              maintain_order="left")
        .with_columns(pl.coalesce("_kab_now", "_kab4").alias(name))
        .drop("_kab4", "_kab_now")
    )
