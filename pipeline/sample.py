"""Synthetic DTKS and Dukcapil extracts with ground truth, for tests and benchmarks.

`generate_sample(n, seed, out_dir)` builds a small synthetic Indonesia: households living in real
Kemendagri desa, people with Indonesian names and NIKs built the real way, a Dukcapil (civil registry)
extract holding everyone, and a DTKS (social-assistance registry) extract of n rows that lists poor
households with the problems real DTKS data has: duplicates, damaged NIKs, dead and moved people, and so on.

Files written into out_dir (CSV, or Parquet with the same columns; every value is text):

    dtks.csv             id_dtks,nik,no_kk,nama,jenis_kelamin,tempat_lahir,tanggal_lahir,alamat,kode_wilayah,program,
                         desil,hubungan_keluarga
    dukcapil.csv         nik,no_kk,nama,jenis_kelamin,tempat_lahir,tanggal_lahir,alamat,kode_wilayah,tanggal_meninggal,
                         hubungan_keluarga
    ineligible.csv       nik,nama,tanggal_lahir,jenis,sumber,tanggal (an ineligibility list for --ineligible)
    truth_rows.csv       id_dtks,person_id,true_nik,scenario,true_deceased,expect_quarantine
    truth_anomalies.csv  id_dtks,anomaly_code (the eligibility codes: pipeline/sample_eligibility.py)

The truth anomalies are not copied from the scenario plan: they are recomputed from the written DTKS
values and the Dukcapil rows with the exact rule semantics (see `compute_truth_anomalies`), so accidental
interactions between scenarios are still labelled correctly.

Everything is vectorized (numpy arrays over people, polars string expressions); the only Python loops run
over a handful of name styles, scenario kinds or retry rounds. The same n and seed give byte-identical files.

Run from the command line: python -m pipeline.sample --n 20000 --seed 7 --out data/sample
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.contract import CODE
from pipeline.paths import REFERENCE_DIR, SAMPLE_DIR

# The day the extracts are taken: nobody is born, dies or gets a KK after it.
REFERENCE_DAY = int(np.datetime64("2025-06-30", "D").astype(np.int64))

DUKCAPIL_PER_DTKS_ROW = 2.5

# The codes whose truth the generator labels, in catalogue order (pipeline/rules/anomalies.toml).
ANOMALY_CODES = (
    CODE.NIK_INVALID_FORMAT,
    CODE.NIK_INVALID_REGION,
    CODE.NIK_INVALID_DATE,
    CODE.NIK_SEX_MISMATCH,
    CODE.NIK_DOB_MISMATCH,
    CODE.NIK_SHARED,
    CODE.NIK_NOT_FOUND,
    CODE.DUPLICATE_PERSON,
    CODE.DECEASED,
    CODE.RELOCATED,
    CODE.IDENTITY_MISMATCH,
)

# Share of DTKS rows given each row-level problem (mutually exclusive per person).
ROW_SCENARIO_SHARES = {
    "quarantine_bad_row": 0.001,
    "invalid_format": 0.021,  # 7 damage kinds x 0.3%
    "invalid_region": 0.005,
    "invalid_date": 0.005,
    "identity_mismatch": 0.005,
    "shared_nik": 0.004,  # people carrying a household member's NIK; the owners are labelled too
    "missing_from_dukcapil": 0.02,
    "sex_mismatch": 0.005,
    "dukcapil_nik_collision": 0.0005,  # Dukcapil also gave this person's NIK to a stranger
}
DUPLICATE_EXTRA_ROWS = 0.044  # extra DTKS rows for people listed twice (~4%) or three times (a few)
TRIPLICATE_SHARE = 0.05  # of the extra rows, this share belongs to people listed three times
DOB_CORRECTED_SHARE = 0.01  # birth date corrected after the NIK was issued (NIK keeps the old date)
COMMON_NAME_PAIR_SHARE = 0.002  # unrelated DTKS people deliberately given the same very common name
MOVED_OTHER_KAB_SHARE = 0.03  # of households
MOVED_SAME_KAB_SHARE = 0.02
PAPUA_RETIRED_CODE_SHARE = 0.5  # of DTKS households in a re-coded Papua desa: DTKS still uses the old code
DUKCAPIL_REPEAT_SHARE = 0.002  # same person recorded twice in Dukcapil

@dataclass(frozen=True)
class Mix:
    """How often each problem occurs. `standard` is the mix the matching model was first
    calibrated on; `hard` is a second world with other rates and the cases that broke the
    standard model elsewhere (twins with names one letter apart, one of them missing from
    Dukcapil or with a mistyped NIK; siblings born a year or two apart with similar names;
    OCR-damaged names; households re-registered after moving; people missing from
    Dukcapil who share a very common name with someone in it). Report on a mix and seed
    you did not calibrate on."""

    name: str
    row_scenario_shares: dict
    twin_household_share: float = 0.03  # of households with two or more children
    father_son_share: float = 0.03  # of households with a male head and a son
    deceased_share: float = 0.03
    duplicate_nik_kinds: tuple = (0.62, 0.14, 0.10, 0.14)  # identical, one typo, two digits swapped, damaged
    name_variation_kinds: tuple = (0.15, 0.30, 0.20, 0.10, 0.10, 0.10, 0.05)  # see vary_names
    birth_date_variation_kinds: tuple = (0.8, 0.1, 0.1)  # same, day/month swapped, year off by one
    duplicate_kk_kinds: tuple = (0.72, 0.14, 0.14)  # the household's KK, a newer KK, blank
    # Only in the hard mix (0 keeps the standard world byte for byte):
    twin_similar_name_share: float = 0.0  # of twin pairs: the younger's name one letter from the elder's
    twin_one_missing_share: float = 0.0  # of twin pairs: one twin missing from Dukcapil
    twin_one_nik_typo_share: float = 0.0  # of twin pairs: one twin's DTKS NIK mistyped
    close_sibling_share: float = 0.0  # of households with two or more children: born 1-2 years apart, similar names
    ocr_name_share: float = 0.0  # of DTKS rows: name damaged by OCR (letters merged, split, swapped, confused)
    reregistered_share: float = 0.0  # of DTKS households that moved kabupaten: listed again at the new address
    missing_common_name_share: float = 0.0  # of people missing from Dukcapil: given a very common name


STANDARD_ROW_SHARES = dict(ROW_SCENARIO_SHARES, nik_typo=0.0)
MIXES = {
    "standard": Mix(name="standard", row_scenario_shares=STANDARD_ROW_SHARES),
    "hard": Mix(
        name="hard",
        row_scenario_shares=dict(STANDARD_ROW_SHARES, missing_from_dukcapil=0.03, invalid_format=0.028, shared_nik=0.006,
                                 identity_mismatch=0.007, nik_typo=0.006),
        twin_household_share=0.05, father_son_share=0.05, deceased_share=0.04,
        duplicate_nik_kinds=(0.50, 0.18, 0.12, 0.20),
        name_variation_kinds=(0.10, 0.25, 0.30, 0.10, 0.05, 0.10, 0.10),
        birth_date_variation_kinds=(0.7, 0.15, 0.15),
        duplicate_kk_kinds=(0.6, 0.2, 0.2),
        twin_similar_name_share=0.6, twin_one_missing_share=0.2, twin_one_nik_typo_share=0.2,
        close_sibling_share=0.04, ocr_name_share=0.02, reregistered_share=0.3, missing_common_name_share=0.3,
    ),
}

VERY_COMMON_NAMES = ("SITI AMINAH", "SUTRISNO", "MUHAMMAD RIZKI", "NUR HIDAYAH", "SRI WAHYUNI", "AHMAD FAUZI")

PROGRAMS = ("PKH", "BPNT", "PBI-JK")
PROGRAM_WEIGHTS = (0.25, 0.35, 0.40)

# Approximate population in millions (2020 census / 2024 estimates), to place households realistically.
PROVINCE_POPULATION_M = {
    11: 5.4, 12: 15.4, 13: 5.7, 14: 6.7, 15: 3.7, 16: 8.7, 17: 2.1, 18: 9.3, 19: 1.5, 21: 2.2,
    31: 10.7, 32: 49.9, 33: 37.5, 34: 3.7, 35: 41.5, 36: 12.4, 51: 4.4, 52: 5.6, 53: 5.6, 61: 5.6,
    62: 2.8, 63: 4.2, 64: 4.0, 65: 0.7, 71: 2.7, 72: 3.1, 73: 9.4, 74: 2.8, 75: 1.2, 76: 1.5,
    81: 1.9, 82: 1.4, 91: 1.1, 92: 0.6, 93: 0.5, 94: 1.4, 95: 1.5, 96: 0.6,
}


NATIONAL_POPULATION_M = sum(PROVINCE_POPULATION_M.values())
EXTENTS = ("national", "regional")


def regional_extract(regions: Regions, people: int, seed: int) -> Regions:
    """The regions of a province-like extract: whole kabupaten, province after province in
    a seeded order, until they hold `people` at the country's real density; households
    live only there (moves may still leave it). The national extent spreads any size over
    all 84k desa, so a small registry is thin everywhere and a larger one denser: blocks
    keyed on a desa or a kabupaten then grow with the registry, which no real extract of a
    fixed area does."""
    rng = np.random.default_rng([seed, 7])
    province_of_kab = regions.desa[regions.kab_first] // 10**8  # kabupaten in code order, as desa_kab_pos counts them
    provinces = np.unique(province_of_kab)
    order = np.concatenate([np.flatnonzero(province_of_kab == p) for p in rng.permutation(provinces)])
    kab_weight = np.bincount(regions.desa_kab_pos, weights=regions.desa_weight)
    share = min(1.0, people / (NATIONAL_POPULATION_M * 1e6))
    chosen = order[: int(np.searchsorted(np.cumsum(kab_weight[order]), share)) + 1]
    weight = np.where(np.isin(regions.desa_kab_pos, chosen), regions.desa_weight, 0.0)
    return dataclasses.replace(regions, desa_weight=weight / weight.sum())


# ----------------------------------------------------------------------------------------- dates
# Dates are int64 day numbers since 1970-01-01 (negative before), so arithmetic stays vectorized.


def days_from_ymd(year, month, day) -> np.ndarray:
    months = (np.asarray(year, np.int64) - 1970) * 12 + (np.asarray(month, np.int64) - 1)
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    return first + np.asarray(day, np.int64) - 1


def ymd_from_days(days) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dt = np.asarray(days, np.int64).astype("datetime64[D]")
    months = dt.astype("datetime64[M]")
    month_number = months.astype(np.int64)
    first = months.astype("datetime64[D]")
    return month_number // 12 + 1970, month_number % 12 + 1, (dt - first).astype(np.int64) + 1


def date_strings(days: np.ndarray, fmt: str = "%Y-%m-%d") -> pl.Series:
    return pl.Series(np.asarray(days, np.int64)).cast(pl.Int32).cast(pl.Date).dt.to_string(fmt)


def random_days_between(rng, start, end) -> np.ndarray:
    """Uniform day in [start, end] per element (end is clipped up to start)."""
    start = np.asarray(start, np.int64)
    span = np.maximum(np.asarray(end, np.int64) - start, 0)
    return start + np.floor(rng.random(start.shape) * (span + 1)).astype(np.int64)


# ------------------------------------------------------------------------------------ NIK arithmetic
# A NIK is kecamatan(6) + DD(2, +40 for women) + MM(2) + YY(2) + serial(4). Kecamatan codes start at
# 11xxxx, so every NIK (and KK number) is a 16-digit int64 and can be built with arithmetic.


def nik_prefix(kecamatan, day, month, year, female) -> np.ndarray:
    dd = np.asarray(day, np.int64) + 40 * np.asarray(female, np.int64)
    return (np.asarray(kecamatan, np.int64) * 10**10 + dd * 10**8
            + np.asarray(month, np.int64) * 10**6 + (np.asarray(year, np.int64) % 100) * 10**4)


def nik_parts(niks: np.ndarray) -> tuple[np.ndarray, ...]:
    """(kecamatan, DD as written, MM, YY, serial)."""
    niks = np.asarray(niks, np.int64)
    return (niks // 10**10, niks // 10**8 % 100, niks // 10**6 % 100, niks // 10**4 % 100, niks % 10**4)


def rank_serials(group_key: np.ndarray, *tie_breakers: np.ndarray) -> np.ndarray:
    """1, 2, 3... within each group_key, ordered by the tie breakers (most significant first)."""
    order = np.lexsort(tuple(reversed(tie_breakers)) + (group_key,))
    sorted_key = group_key[order]
    new_group = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
    serial = np.empty(len(order), np.int64)
    serial[order] = np.arange(len(order)) - group_start + 1
    return serial


def digits_of(numbers: np.ndarray) -> np.ndarray:
    """(k, 16) uint8 digits of 16-digit numbers."""
    powers = 10 ** np.arange(15, -1, -1, dtype=np.int64)
    return (np.asarray(numbers, np.int64)[:, None] // powers % 10).astype(np.uint8)


def number_of(digits: np.ndarray) -> np.ndarray:
    powers = 10 ** np.arange(digits.shape[1] - 1, -1, -1, dtype=np.int64)
    return (digits.astype(np.int64) * powers).sum(axis=1)


def text_of(chars: np.ndarray) -> pl.Series:
    """(k, w) array of ASCII codes -> k strings."""
    chars = np.ascontiguousarray(chars, dtype=np.uint8)
    return pl.Series(chars.view(f"S{chars.shape[1]}").ravel()).cast(pl.String)


# ---------------------------------------------------------------------------------- reference data


@dataclass(frozen=True)
class Regions:
    """Kemendagri codes as int64 arrays, plus the lookups the generator needs."""

    desa: np.ndarray  # sorted 10-digit desa codes
    desa_weight: np.ndarray  # chance that a household lives in each desa
    desa_kab_pos: np.ndarray  # index of each desa's kabupaten in kab_first / kab_count
    kab_first: np.ndarray  # first desa index of each kabupaten (desa are sorted by code)
    kab_count: np.ndarray
    kec_retired_alias: np.ndarray  # per desa: pre-pemekaran kecamatan code of its kecamatan, 0 if none
    desa_retired_alias: np.ndarray  # per desa: retired Papua desa code that became this desa, 0 if none
    valid_nik_prefix: np.ndarray  # sorted current + retired kecamatan codes
    retired_kab_successor: dict[int, int]
    kab_code: np.ndarray  # sorted current + retired kabupaten codes ...
    kab_city: pl.Series  # ... and the upper-case place name written as tempat_lahir


def load_regions(reference_dir: Path = REFERENCE_DIR) -> Regions:
    def read(name: str) -> pl.DataFrame:
        return pl.read_csv(reference_dir / name, infer_schema=False)  # codes stay text until parsed here

    villages = read("villages.csv").sort("kode")
    desa = villages["kode"].cast(pl.Int64).to_numpy()
    province = desa // 10**8
    provinces, per_province = np.unique(province, return_counts=True)
    people_per_desa = np.array([PROVINCE_POPULATION_M.get(int(p), 1.0) for p in provinces]) / per_province
    weight = people_per_desa[np.searchsorted(provinces, province)]

    kab_of_desa = desa // 10**6
    kab_ids, kab_first, kab_count = np.unique(kab_of_desa, return_index=True, return_counts=True)

    retired = read("retired_codes.csv").with_columns(
        pl.col("kode").cast(pl.Int64), pl.col("kode_pengganti_guess").cast(pl.Int64), pl.col("level").cast(pl.Int8)
    )
    retired_kab = retired.filter(pl.col("level") == 2, pl.col("kode_pengganti_guess").is_not_null())
    retired_kab_successor = dict(zip(retired_kab["kode"].to_list(), retired_kab["kode_pengganti_guess"].to_list()))

    retired_kec = retired.filter(pl.col("level") == 3)
    districts = read("districts.csv")["kode"].cast(pl.Int64).to_numpy()
    valid_nik_prefix = np.unique(np.concatenate([districts, retired_kec["kode"].to_numpy()]))

    # A kecamatan created by the Papua pemekaran: NIKs issued before it keep the old kecamatan code.
    kec_alias = (retired_kec.drop_nulls("kode_pengganti_guess").sort("kode")
                 .unique("kode_pengganti_guess", keep="first", maintain_order=True))
    kec_retired_alias = lookup(desa // 10**4, kec_alias["kode_pengganti_guess"].to_numpy(),
                               kec_alias["kode"].to_numpy())

    # Retired Papua desa whose kabupaten successor is the kabupaten of the desa they became:
    # a DTKS row still using such a code has not moved.
    successor = pl.col("kode").floordiv(10**6).replace_strict(retired_kab_successor, default=None)
    desa_alias = (retired.filter(pl.col("level") == 4, pl.col("kode_pengganti_guess").is_not_null())
                  .filter(successor == pl.col("kode_pengganti_guess").floordiv(10**6))
                  .sort("kode").unique("kode_pengganti_guess", keep="first", maintain_order=True))
    desa_retired_alias = lookup(desa, desa_alias["kode_pengganti_guess"].to_numpy(), desa_alias["kode"].to_numpy())

    regencies = read("regencies.csv").select("kode", "nama")
    old_regencies = retired.filter(pl.col("level") == 2).select(pl.col("kode").cast(pl.String), "nama")
    cities = (pl.concat([regencies, old_regencies]).with_columns(pl.col("kode").cast(pl.Int64)).sort("kode")
              .with_columns(pl.col("nama").str.replace(r"^(?i)(kabupaten|kota)( administrasi)? |^(KAB|KOTA)\.? ", "")
                            .str.to_uppercase()))
    return Regions(
        desa=desa,
        desa_weight=weight / weight.sum(),
        desa_kab_pos=np.searchsorted(kab_ids, kab_of_desa),
        kab_first=kab_first,
        kab_count=kab_count,
        kec_retired_alias=kec_retired_alias,
        desa_retired_alias=desa_retired_alias,
        valid_nik_prefix=valid_nik_prefix,
        retired_kab_successor=retired_kab_successor,
        kab_code=cities["kode"].to_numpy(),
        kab_city=cities["nama"],
    )


def lookup(keys: np.ndarray, table_keys: np.ndarray, table_values: np.ndarray, default: int = 0) -> np.ndarray:
    """Vectorized dict lookup on int arrays."""
    order = np.argsort(table_keys, kind="stable")
    sorted_keys, sorted_values = table_keys[order], table_values[order]
    pos = np.clip(np.searchsorted(sorted_keys, keys), 0, max(len(sorted_keys) - 1, 0))
    if len(sorted_keys) == 0:
        return np.full(len(keys), default, np.int64)
    return np.where(sorted_keys[pos] == keys, sorted_values[pos], default)


def in_sorted(values: np.ndarray, sorted_array: np.ndarray) -> np.ndarray:
    """np.isin for a large, already sorted right-hand side (binary search instead of re-hashing it)."""
    pos = np.clip(np.searchsorted(sorted_array, values), 0, len(sorted_array) - 1)
    return sorted_array[pos] == values


def city_of_kabupaten(regions: Regions, kab: np.ndarray) -> pl.Series:
    pos = np.clip(np.searchsorted(regions.kab_code, kab), 0, len(regions.kab_code) - 1)
    return regions.kab_city.gather(pos)


# ------------------------------------------------------------------------------------------ names
# Pools are written compactly: "NAME:weight" (default weight 1), "_" stands for a space.

POOLS_TEXT = {
    # Javanese
    "jawa_m_mono": "SUTRISNO:5 SUPARMAN:3 SLAMET:4 SUGIONO SUYANTO SUKIRNO WAGIMAN PAIJO DARMAJI SUPRIYADI "
                   "SUMARNO MULYONO SUNARTO PURWANTO PARMIN KARYONO SUKADI TUKIMAN SAMIDI SUWARNO SUGENG "
                   "RIYANTO SUHARTO WARSITO KASMAN NGADIMAN SUPARNO TARMUJI JOKO GIYANTO SUROSO WALUYO "
                   "SUPRIYONO SUMADI KATIMAN RUSMAN SARIMIN SUKARDI SUPANDI TURIMAN PONIMAN SUYONO DARSONO "
                   "SARWADI MARDI WIJI SARDI SUYADI PAIMAN SUTARJO SUMARDI JUMADI KARTONO SUNARDI TUGIMAN "
                   "SUPARDI TRIYONO SUGIYANTO RUSDI TASIMAN KASIDI SAKIMAN NGATIMIN SUDARMO SUPARJO",
    "jawa_m_first": "AGUS BUDI EKO DWI TRI JOKO BAMBANG HADI EDI TEGUH RUDI YUDI HERU ARIS WAHYU ANTON DIDIK CAHYO",
    "jawa_m_last": "SANTOSO SETIAWAN PRASETYO SUSANTO WIBOWO NUGROHO PURNOMO HARTONO KURNIAWAN SAPUTRO WIDODO "
                   "SULISTYO HARYANTO SUSILO PRIYONO RAHARJO",
    "jawa_f_mono": "SUMIATI SUWARNI SULASTRI SUMARNI PAINEM TUKINEM WARTINI SUTINI JUMIATI KARSINI NGATINI SUYATMI "
                   "PURWANTI LESTARI SUPARMI SITI_ROMLAH MARYATI SUKINAH SUPARTI WAGINEM SUMINAH SUPRIYATI "
                   "PARTINI SARINAH WAGIYEM SUGIYEM SUWARTI TUMINAH KASIYEM NGATEMI SUNARSIH MUJIATI SURATMI "
                   "WARSINAH SUPRAPTI SARMI JUMINAH SUKARMI TARMI PONIYEM KASMINI SUMIYATI PAINAH SAMINAH "
                   "TURIYAH RUBIYEM SUKESI WIDARTI MARSINAH",
    "jawa_f_first": "SRI:5 DWI TRI ENDANG RINA DEWI EKA ANI YUNI SITI",
    "jawa_f_last": "WAHYUNI:3 RAHAYU LESTARI HANDAYANI UTAMI SURYANI ASTUTI WULANDARI MULYANI KURNIASIH "
                   "SUSILOWATI RAHMAWATI PURWANINGSIH SETYANINGSIH",
    # Muslim names common everywhere
    "ms_m_first": "MUHAMMAD:6 AHMAD:4 RIZKI FAJAR ARIF HENDRA IRFAN IMAM HASAN YUSUF ILHAM RAHMAT FIRMAN DEDI "
                  "HERMAN SYAIFUL ZAINAL NUR",
    "ms_m_last": "RIZKI:2 FAUZI:2 RAHMAN HIDAYAT RIDWAN SYAHPUTRA FIRMANSYAH MAULANA ABDULLAH SAPUTRA HUDA HAKIM "
                 "SETIAWAN KURNIAWAN ALI HAMZAH SYAHRIAL IBRAHIM ISMAIL RAMADHAN",
    "ms_abdul": "RAHMAN:2 AZIZ MALIK KARIM HAMID GANI WAHAB LATIF HALIM MANAN ROZAK MUIS",
    "ms_f_first": "SITI:6 NUR:3 NURUL DEWI FITRI RATNA YULI ANISA RINA SRI MAYA LINDA",
    "ms_f_last": "AMINAH:3 HIDAYAH:2 FATIMAH KHADIJAH RAHMAWATI NURHAYATI AISYAH ZAHRA HASANAH ROHMAH SAFITRI "
                 "MAULIDA SARI HANDAYANI KURNIA JUBAIDAH MARYAM",
    # Sundanese
    "sunda_m_first": "ASEP:3 UJANG:2 DADANG CECEP DEDEN YAYAN AAN ENDANG JAJANG DEDI UDIN ENGKOS DODI IWAN",
    "sunda_m_last": "SUNARYA SUPRIATNA HERMAWAN SAEPUDIN KURNIA RUSTANDI SOLIHIN KUSNADI SOBARI HIDAYAT SOPIAN "
                    "MULYANA SETIADI RAHMAT",
    "sunda_f_first": "EUIS IIS NENENG ENTIN IMAS YATI TITIN ENOK EHA CUCU LILIS ENCUM",
    "sunda_f_last": "KOMARIAH ROHAETI SUMARNI NURJANAH KURNIASIH MARYAM RATNASARI JUBAEDAH ROSMIATI HALIMAH",
    # Batak: given name + marga
    "batak_m": "JOSUA DANIEL MARULI LAMHOT PARULIAN HOTMAN BINSAR TIGOR JONNY RICARDO SAHAT MANGATUR DAVID",
    "batak_f": "TIURMA ROSMAWATI RUTH HOTNIDA LAMRIA DUMARIA SORTA NURMALA MASTIUR ROMAULI",
    "batak_marga": "SIMANJUNTAK SIREGAR NASUTION HARAHAP HUTAPEA SITOMPUL PARDEDE SINAGA SITUMORANG PANJAITAN "
                   "LUBIS SILALAHI TAMBUNAN SIAHAAN MANURUNG HUTAGALUNG SIMATUPANG GULTOM NAINGGOLAN SIHOMBING",
    # Balinese: birth-order name (see BALI_PREFIX) + given name
    "bali_m": "SUDARMA WIRAWAN BUDIASA ARTANA SUARDANA MERTA SUKADANA PARWATA ADNYANA SUWITRA SUDIANA",
    "bali_f": "SUARTINI ARIANI WIDIASTUTI SUKERTI MURNI SUARNI DARMAYANTI ARTINI SRIANI SUWENI",
    # Chinese-Indonesian
    "cina_m": "HENDRA SUSANTO YOHANES KEVIN WILLIAM STEVEN BUDI ANDI HARTONO JIMMY TONY",
    "cina_f": "LINDA LILIS FELICIA MELIANA JESSICA LIANA SUSANTI VERONIKA LIDYA MEILIANA",
    "cina_family": "WIJAYA TANOTO HALIM SALIM GUNAWAN KURNIAWAN SANTOSO TANUWIJAYA HARTONO SETIADI LIMANTO "
                   "SUGIANTO",
    "cina_clan": "TAN LIE OEI LIM GO KHO LIEM THE ONG",
    "cina_syllable": "SIOK LAN KIM HOA HONG DJIEN BENG TJOE SWIE HOK LIANG MEI",
    # Minangkabau
    "minang_m": "RUSDI SYAFRI ZULKIFLI NOFRIZAL AFRIZAL YUSRIZAL HENDRI ERIZAL JONI RIDWAN SYAFRUDDIN ASRUL",
    "minang_m_last": "SAPUTRA EFENDI PUTRA SYAM ANWAR MUCHTAR HAMZAH",
    "minang_f": "YUSNIDAR ERNI YULIA DESRITA RAHMI ELFI ASNIMAR NURHAYATI YENNI ROSMANIAR MARDIANA NELFI",
    "minang_f_last": "SARI WATI YANTI FITRI",
    # Bugis / Makassar
    "bugis_m": "MUHAMMAD_ARIF SYAMSUDDIN HAERUDDIN SAHABUDDIN BAHARUDDIN MUSTAFA AMIRUDDIN NASRULLAH BASO "
               "ABDUL_HALIM IRWAN JUFRI SUDIRMAN MUHAMMAD_ALI",
    "bugis_f": "HASNAH NURHAEDAH SITTI_NURBAYA HASMAWATI RAHMATIAH NURHAYATI SUHARTINI MARLINA HALIJAH "
               "SAHARIAH SITTI_AMINAH",
    # Eastern Indonesia (Christian given names + regional family names)
    "nasrani_m": "YOHANES YOHANIS MARKUS FRANSISKUS PETRUS YAKOBUS SIMON YOSEF ALEXANDER DOMINGGUS AGUSTINUS MARTHEN",
    "nasrani_f": "MARIA YOSEPHA AGUSTINA MARTHA YULIANA MAGDALENA ELISABETH KRISTINA SELVI DORKAS",
    "papua_marga": "WENDA TABUNI KOGOYA WONDA MURIB WAKER YIKWA KAYAME PIGAI RUMBIAK WOMSIWOR KAFIAR MANSAWAN "
                   "MAHUZE GEBZE",
    "ntt_marga": "MANEK BRIA SERAN LAKE NAHAK NDUN BENU TOSI LAOE RIWU",
    "timur_marga": "SONDAKH WOWOR RUMENGAN PANGEMANAN LUMENTUT MAMAHIT KAWENGIAN TUMEWU PATTIRAJAWANE "
                   "LATUPEIRISSA PATTINAMA SAHETAPY RIRIHENA",
}

# Balinese birth-order names: [sex][order % 4] -> variants.
BALI_PREFIX = (
    (("I WAYAN", "I PUTU", "I GEDE"), ("I MADE", "I KADEK"), ("I NYOMAN", "I KOMANG"), ("I KETUT",)),
    (("NI LUH", "NI WAYAN", "NI PUTU"), ("NI MADE", "NI KADEK"), ("NI NYOMAN", "NI KOMANG"), ("NI KETUT",)),
)


@dataclass(frozen=True)
class NameStyle:
    """How one community names people: weighted patterns of pool names, '@surname', '@bali' or literals."""

    male: tuple[tuple[float, str], ...]
    female: tuple[tuple[float, str], ...]
    surnames: str | None = None  # pool for '@surname' (inherited from the household head)
    bin_binti: float = 0.0  # share with a 'BIN <father>' / 'BINTI <father>' patronymic
    old_spelling: bool = False  # older people may keep the pre-1972 spelling (Soeharto, Djoko)


NAME_STYLES = {
    "jawa": NameStyle(((6, "jawa_m_mono"), (4, "jawa_m_first jawa_m_last")),
                      ((5, "jawa_f_mono"), (5, "jawa_f_first jawa_f_last")), bin_binti=0.02, old_spelling=True),
    "muslim": NameStyle(((8, "ms_m_first ms_m_last"), (2, "ABDUL ms_abdul")), ((1, "ms_f_first ms_f_last"),),
                        bin_binti=0.10, old_spelling=True),
    "sunda": NameStyle(((3, "sunda_m_first"), (7, "sunda_m_first sunda_m_last")),
                       ((4, "sunda_f_first"), (6, "sunda_f_first sunda_f_last")), bin_binti=0.04, old_spelling=True),
    "batak": NameStyle(((1, "batak_m @surname"),), ((6, "batak_f @surname"), (4, "batak_f BR @surname")),
                       surnames="batak_marga"),
    "bali": NameStyle(((1, "@bali bali_m"),), ((1, "@bali bali_f"),)),
    "cina": NameStyle(((8, "cina_m @surname"), (2, "cina_clan cina_syllable cina_syllable")),
                      ((8, "cina_f @surname"), (2, "cina_clan cina_syllable cina_syllable")), surnames="cina_family"),
    "minang": NameStyle(((7, "minang_m"), (3, "minang_m minang_m_last")),
                        ((6, "minang_f"), (4, "minang_f minang_f_last")), bin_binti=0.08),
    "bugis": NameStyle(((2, "ANDI bugis_m"), (8, "bugis_m")), ((1.5, "ANDI bugis_f"), (8.5, "bugis_f")),
                       bin_binti=0.08),
    "papua": NameStyle(((1, "nasrani_m @surname"),), ((1, "nasrani_f @surname"),), surnames="papua_marga"),
    "ntt": NameStyle(((1, "nasrani_m @surname"),), ((1, "nasrani_f @surname"),), surnames="ntt_marga"),
    "timur": NameStyle(((1, "nasrani_m @surname"),), ((1, "nasrani_f @surname"),), surnames="timur_marga"),
}
STYLE_NAMES = tuple(NAME_STYLES)

# Which communities live where (province -> style weights); unlisted provinces use DEFAULT_MIX.
DEFAULT_MIX = "muslim:70 jawa:25 cina:3 bugis:2"
PROVINCE_MIX = {
    11: "muslim:95 jawa:5", 12: "batak:50 muslim:25 jawa:15 cina:8 minang:2", 13: "minang:88 jawa:5 batak:4 muslim:3",
    14: "muslim:45 minang:20 jawa:20 batak:10 cina:5", 15: "muslim:55 jawa:30 minang:10 cina:5",
    16: "muslim:65 jawa:30 cina:5", 17: "muslim:65 jawa:25 minang:10", 18: "jawa:60 muslim:25 sunda:12 cina:3",
    19: "muslim:60 cina:30 jawa:10", 21: "muslim:45 cina:20 jawa:20 batak:10 minang:5",
    31: "muslim:35 jawa:30 sunda:15 cina:8 batak:5 minang:4 timur:3", 32: "sunda:65 muslim:20 jawa:13 cina:2",
    33: "jawa:75 muslim:23 cina:2", 34: "jawa:80 muslim:18 cina:2", 35: "jawa:70 muslim:28 cina:2",
    36: "sunda:45 muslim:40 jawa:12 cina:3", 51: "bali:85 jawa:8 muslim:7", 52: "muslim:90 bali:5 jawa:5",
    53: "ntt:85 muslim:10 jawa:5", 61: "muslim:50 cina:20 jawa:15 ntt:15", 62: "muslim:60 jawa:25 ntt:15",
    63: "muslim:80 jawa:20", 64: "muslim:40 jawa:35 bugis:20 cina:5", 65: "muslim:40 bugis:30 jawa:20 ntt:10",
    71: "timur:70 muslim:25 cina:5", 72: "muslim:55 bugis:25 jawa:10 timur:10", 73: "bugis:80 muslim:15 cina:2 timur:3",
    74: "muslim:50 bugis:40 jawa:10", 75: "muslim:95 timur:5", 76: "bugis:60 muslim:40", 81: "timur:55 muslim:45",
    82: "muslim:75 timur:25",
    **{p: "papua:60 muslim:15 jawa:15 bugis:5 ntt:5" for p in (91, 92, 93, 94, 95, 96)},
}


def parse_weighted(text: str) -> tuple[list[str], np.ndarray]:
    items, weights = [], []
    for token in text.split():
        name, _, weight = token.partition(":")
        items.append(name.replace("_", " "))
        weights.append(float(weight or 1))
    w = np.array(weights)
    return items, w / w.sum()


POOLS = {name: (pl.Series(name, parse_weighted(text)[0]), parse_weighted(text)[1]) for name, text in POOLS_TEXT.items()}


def draw_from_pool(rng, pool: str, size: int) -> pl.Series:
    values, p = POOLS[pool]
    return values.gather(rng.choice(len(values), size=size, p=p))


def draw_bali_prefix(rng, female: np.ndarray, birth_order: np.ndarray) -> pl.Series:
    flat = [(sex, order, prefix) for sex in (0, 1) for order in range(4) for prefix in BALI_PREFIX[sex][order]]
    table = pl.Series([prefix for _, _, prefix in flat])
    slot_start = np.array([next(i for i, f in enumerate(flat) if f[:2] == (s, o)) for s in (0, 1) for o in range(4)])
    slot_size = np.array([len(BALI_PREFIX[s][o]) for s in (0, 1) for o in range(4)])
    slot = female.astype(np.int64) * 4 + birth_order % 4
    pick = slot_start[slot] + np.floor(rng.random(len(slot)) * slot_size[slot]).astype(np.int64)
    return table.gather(pick)


def compose_names(rng, style: NameStyle, female: np.ndarray, surname_idx: np.ndarray,
                  birth_order: np.ndarray) -> pl.Series:
    """One name per person, following the style's patterns (returned in input order)."""
    pieces = []
    for is_female, patterns in ((False, style.male), (True, style.female)):
        who = np.flatnonzero(female == is_female)
        weights = np.array([w for w, _ in patterns], dtype=float)
        pattern_of = rng.choice(len(patterns), size=len(who), p=weights / weights.sum())
        for i, (_, pattern) in enumerate(patterns):
            sel = who[pattern_of == i]
            if len(sel) == 0:
                continue
            parts = []
            for token in pattern.split():
                if token == "@surname":
                    parts.append(POOLS[style.surnames][0].gather(surname_idx[sel]))
                elif token == "@bali":
                    parts.append(draw_bali_prefix(rng, female[sel], birth_order[sel]))
                elif token in POOLS:
                    parts.append(draw_from_pool(rng, token, len(sel)))
                else:
                    parts.append(pl.repeat(token, len(sel), eager=True))
            names = pl.select(pl.concat_str(parts, separator=" ")).to_series()
            pieces.append(pl.DataFrame({"pos": sel, "name": names}))
    return pl.concat(pieces).sort("pos")["name"]


def to_old_spelling(names: pl.Expr) -> pl.Expr:
    """Pre-1972 (van Ophuijsen) spelling: SUHARTO -> SOEHARTO, JOKO -> DJOKO, CAHYO -> TJAHJO."""
    return (names.str.replace_all("J", "DJ", literal=True).str.replace_all("Y", "J", literal=True)
            .str.replace_all("C", "TJ", literal=True).str.replace_all("U", "OE", literal=True))


def without_patronymic(names: pl.Expr) -> pl.Expr:
    return names.str.replace(r" BIN(TI)? .*$", "")


# ---------------------------------------------------------------------------------- addresses

STREET_KINDS = ("JL.", "JL.", "JL.", "GG.", "DUSUN", "KP.", "LINGK.", "PERUM")
STREET_NAMES = pl.Series(parse_weighted(
    "MERDEKA SUDIRMAN DIPONEGORO KARTINI MAWAR MELATI ANGGREK KENANGA KRAJAN SUKAMAJU SUKAMAKMUR MEKARSARI "
    "CEMPAKA PAHLAWAN GATOT_SUBROTO AHMAD_YANI IMAM_BONJOL HASANUDDIN KAMBOJA NANGKA DURIAN MANGGA RAYA BARU "
    "PEMUDA VETERAN SETIABUDI CEMARA FLAMBOYAN MAJAPAHIT SRIWIJAYA TANJUNG SIDOMULYO SUKOREJO KARANGANYAR"
)[0])


def make_addresses(rng, k: int) -> pl.Series:
    """'JL. MAWAR NO. 12 RT 003 RW 005' / 'DUSUN KRAJAN RT 002 RW 001'."""
    kind = pl.Series(STREET_KINDS).gather(rng.integers(0, len(STREET_KINDS), k))
    frame = pl.DataFrame({
        "kind": kind,
        "street": STREET_NAMES.gather(rng.integers(0, len(STREET_NAMES), k)),
        "no": rng.integers(1, 200, k),
        "rt": rng.integers(1, 16, k),
        "rw": rng.integers(1, 11, k),
    })
    numbered = pl.col("kind").is_in(["JL.", "GG.", "PERUM"])
    return frame.select(pl.concat_str([
        pl.col("kind"), pl.lit(" "), pl.col("street"),
        pl.when(numbered).then(pl.lit(" NO. ") + pl.col("no").cast(pl.String)).otherwise(pl.lit("")),
        pl.lit(" RT "), pl.col("rt").cast(pl.String).str.zfill(3),
        pl.lit(" RW "), pl.col("rw").cast(pl.String).str.zfill(3),
    ])).to_series()


def vary_addresses(rng, alamat: pl.Series) -> pl.Series:
    """The same address written differently (compact RT/RW, JALAN spelled out, house number dropped)."""
    kind = rng.integers(0, 3, len(alamat))
    frame = pl.DataFrame({"a": alamat, "kind": kind})
    a = pl.col("a")
    return frame.select(
        pl.when(pl.col("kind") == 0).then(a.str.replace(r"RT 0*(\d+) RW 0*(\d+)", "RT.$1/RW.$2"))
        .when(pl.col("kind") == 1).then(a.str.replace(r"^JL\. ", "JALAN ").str.replace(r"^GG\. ", "GANG ")
                                        .str.replace(r"^KP\. ", "KAMPUNG ").str.replace(r"^DUSUN ", "DSN. "))
        .otherwise(a.str.replace(r" NO\. \d+", "").str.replace(r"RT 0*(\d+) RW 0*(\d+)", "RT $1 RW $2"))
    ).to_series()


# ---------------------------------------------------------------------------------- population


@dataclass
class Population:
    """Everyone in the synthetic world: households (hh_*) and people (one entry per person id)."""

    # households
    hh_desa: np.ndarray  # desa index (into Regions.desa) DTKS knows the household at
    hh_cur_desa: np.ndarray  # desa index Dukcapil has them at now (differs for movers)
    hh_move: np.ndarray  # 0 stayed, 1 moved to another kabupaten, 2 moved within the kabupaten
    hh_style: np.ndarray  # index into STYLE_NAMES
    hh_surname: np.ndarray  # index into the style's surname pool
    hh_first: np.ndarray  # person id of the head (members are consecutive)
    hh_size: np.ndarray
    hh_victim: np.ndarray  # reserved single-person households, filled in for identity_mismatch
    hh_program: np.ndarray
    hh_alamat: pl.Series
    hh_alamat_cur: pl.Series
    # people
    hh: np.ndarray
    member: np.ndarray  # 0 = head
    role: np.ndarray  # 0 head, 1 spouse, 2 child
    birth_order: np.ndarray  # among the children (Balinese names follow it)
    female: np.ndarray
    dob: np.ndarray  # day number of the recorded birth date
    nik_dob: np.ndarray  # day number of the birth date encoded in the NIK
    reg_kec: np.ndarray  # kecamatan where the NIK was issued
    twin: np.ndarray
    father_son: np.ndarray
    sibling_close: np.ndarray  # two children born a year or two apart with similar names
    dead_day: np.ndarray  # day number of death in Dukcapil, -1 = alive
    name: pl.Series | None = None
    tempat_lahir: pl.Series | None = None
    hh_in_dtks: np.ndarray | None = None
    hh_dtks_desa_code: np.ndarray | None = None
    hh_kk: np.ndarray | None = None
    hh_kk_cur: np.ndarray | None = None
    nik: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.hh)


def make_households(rng, regions: Regions, n_people: int, n_victims: int) -> Population:
    """Households of head + spouse + 0-4 children, in desa drawn by population; ages and sexes plausible."""
    n_hh = int(n_people / 3.0) + 16
    head_female = rng.random(n_hh) < 0.15  # mostly widows
    head_age = 20 + 65 * rng.beta(2.0, 2.6, n_hh)
    has_spouse = rng.random(n_hh) < np.where(head_female, 0.12, 0.85)
    gap = np.abs(rng.normal(3.5, 3.0, n_hh))  # wives are usually a few years younger
    spouse_age = np.clip(np.where(head_female, head_age + gap, head_age - gap), 17, 95)
    mother_age = np.where(head_female, head_age, np.where(has_spouse, spouse_age, head_age - 4))
    children = rng.choice(5, size=n_hh, p=[0.17, 0.23, 0.30, 0.18, 0.12])
    # Children are born when the mother is 19-31; older couples' children have mostly left home.
    max_children = np.clip((mother_age - 19) // 3 + 1, 0, 4).astype(np.int64)
    max_children = np.where(mother_age > 65, np.minimum(max_children, 1), max_children)
    children = np.minimum(children, max_children)
    size = 1 + has_spouse + children

    # Keep whole households up to n_people, then append the reserved single-person households.
    n_hh = int(np.searchsorted(np.cumsum(size), n_people, side="right"))
    n_hh = max(n_hh, 1)
    head_female, head_age, has_spouse, spouse_age, mother_age, children, size = (
        a[:n_hh] for a in (head_female, head_age, has_spouse, spouse_age, mother_age, children, size))
    victim = np.r_[np.zeros(n_hh, bool), np.ones(n_victims, bool)]
    head_female = np.r_[head_female, np.zeros(n_victims, bool)]
    head_age = np.r_[head_age, np.full(n_victims, 40.0)]
    has_spouse = np.r_[has_spouse, np.zeros(n_victims, bool)]
    spouse_age = np.r_[spouse_age, np.zeros(n_victims)]
    mother_age = np.r_[mother_age, np.zeros(n_victims)]
    children = np.r_[children, np.zeros(n_victims, np.int64)]
    size = np.r_[size, np.ones(n_victims, np.int64)]
    n_hh = len(size)

    first = np.r_[0, np.cumsum(size)[:-1]]
    hh = np.repeat(np.arange(n_hh), size)
    member = np.arange(len(hh)) - first[hh]
    spouse_here = has_spouse[hh]
    role = np.where(member == 0, 0, np.where((member == 1) & spouse_here, 1, 2))
    birth_order = np.where(role == 2, member - 1 - spouse_here, rng.integers(0, 4, len(hh)))
    female = np.where(role == 0, head_female[hh],
                      np.where(role == 1, ~head_female[hh], rng.random(len(hh)) < 0.49))
    child_age = mother_age[hh] - (19 + 3 * birth_order + 3 * rng.random(len(hh)))
    child_age = np.maximum(child_age, rng.random(len(hh)))  # the youngest may be a baby
    age = np.where(role == 0, head_age[hh], np.where(role == 1, spouse_age[hh], child_age))
    dob = REFERENCE_DAY - np.round(age * 365.25).astype(np.int64)

    desa = rng.choice(len(regions.desa), size=n_hh, p=regions.desa_weight)
    return Population(
        hh_desa=desa, hh_cur_desa=desa.copy(), hh_move=np.zeros(n_hh, np.int8),
        hh_style=draw_name_styles(rng, regions.desa[desa] // 10**8),
        hh_surname=np.zeros(n_hh, np.int64), hh_first=first, hh_size=size, hh_victim=victim,
        hh_program=rng.choice(len(PROGRAMS), size=n_hh, p=PROGRAM_WEIGHTS),
        hh_alamat=make_addresses(rng, n_hh), hh_alamat_cur=pl.Series([], dtype=pl.String),
        hh=hh, member=member, role=role, birth_order=birth_order, female=female, dob=dob, nik_dob=dob.copy(),
        reg_kec=np.zeros(len(hh), np.int64), twin=np.zeros(len(hh), bool), father_son=np.zeros(len(hh), bool),
        sibling_close=np.zeros(len(hh), bool),
        dead_day=np.full(len(hh), -1, np.int64),
    )


def draw_name_styles(rng, province: np.ndarray) -> np.ndarray:
    """Community of each household, drawn from its province's mix."""
    provinces = np.arange(100)
    cumulative = np.zeros((100, len(STYLE_NAMES)))
    for p in provinces:
        weights = dict.fromkeys(STYLE_NAMES, 0.0)
        for token in PROVINCE_MIX.get(int(p), DEFAULT_MIX).split():
            style, _, w = token.partition(":")
            weights[style] = float(w)
        w = np.array(list(weights.values()))
        cumulative[p] = np.cumsum(w / w.sum())
    u = rng.random(len(province))
    return np.minimum((u[:, None] > cumulative[province]).sum(axis=1), len(STYLE_NAMES) - 1)


def set_placeholder_birthdays(rng, pop: Population) -> None:
    """~8% of people were registered with 01-07, 31-12 or 01-01 when the real day was unknown (older more often)."""
    year, _, _ = ymd_from_days(pop.dob)
    weight = np.where(year < 1975, 2.0, 1.0)
    chosen = rng.random(pop.size) < 0.08 * weight / weight.mean()
    chosen &= ~pop.hh_victim[pop.hh]
    kind = rng.integers(0, 3, pop.size)
    month = np.choose(kind, [7, 12, 1])
    day = np.choose(kind, [1, 31, 1])
    placeholder = days_from_ymd(year, month, day)
    chosen &= placeholder <= REFERENCE_DAY
    pop.dob = np.where(chosen, placeholder, pop.dob)
    pop.nik_dob = pop.dob.copy()


def make_twins(rng, pop: Population, mix: Mix) -> None:
    """Some households' two eldest children are same-sex twins: same birth date, same KK."""
    children = child_count(pop)
    eligible = np.flatnonzero((children >= 2) & ~pop.hh_victim)
    chosen = rng.permutation(eligible)[: round(mix.twin_household_share * len(eligible))]
    elder = pop.hh_first[chosen] + pop.hh_size[chosen] - children[chosen]  # children come last, eldest first
    younger = elder + 1
    pop.dob[younger] = pop.dob[elder]
    pop.nik_dob[younger] = pop.nik_dob[elder]
    pop.female[younger] = pop.female[elder]  # same sex, so their NIKs are consecutive serials
    pop.twin[elder] = pop.twin[younger] = True


def make_close_siblings(rng, pop: Population, mix: Mix) -> None:
    """The two eldest children of some households born one or two years apart on the same
    day and month (their names are made alike in `make_similar_names`)."""
    if not mix.close_sibling_share:
        return
    children = child_count(pop)
    has_twins = np.bincount(pop.hh, weights=pop.twin, minlength=len(pop.hh_size)) > 0
    eligible = np.flatnonzero((children >= 2) & ~pop.hh_victim & ~has_twins)
    chosen = rng.permutation(eligible)[: round(mix.close_sibling_share * len(eligible))]
    elder = pop.hh_first[chosen] + pop.hh_size[chosen] - children[chosen]
    younger = elder + 1
    year, month, day = ymd_from_days(pop.dob[elder])
    later = days_from_ymd(year + rng.integers(1, 3, len(elder)), month, np.minimum(day, 28))
    born = np.where(later <= REFERENCE_DAY, later, days_from_ymd(year - 1, month, np.minimum(day, 28)))
    pop.dob[younger] = pop.nik_dob[younger] = born
    pop.sibling_close[elder] = pop.sibling_close[younger] = True


NAME_PREFIX_TOKENS = ("SITI", "NUR", "NURUL", "MUHAMMAD", "AHMAD", "ABDUL", "I", "NI", "SRI", "DWI", "TRI", "EKA")


def one_letter_apart(names: pl.Expr) -> pl.Expr:
    """A sibling's name one letter from another's, as parents name twins: RINA -> RINI,
    FITRI -> FITRIA, HASAN -> HASIN. Changes the given name (the first token that is not
    a common prefix such as SITI or I), never the family name or patronym."""
    pattern = r"^((?:(?:" + "|".join(NAME_PREFIX_TOKENS) + r") )*)(\S+)(.*)$"
    head, given, tail = (names.str.extract(pattern, i) for i in (1, 2, 3))
    changed = (
        pl.when(given.str.ends_with("A")).then(given.str.slice(0, given.str.len_chars() - 1) + pl.lit("I"))
        .when(given.str.ends_with("I")).then(given + pl.lit("A"))
        .when(given.str.contains(r"[AEIOU]$")).then(given.str.slice(0, given.str.len_chars() - 1) + pl.lit("A"))
        .when(given.str.contains(r"I[^AEIOU]*$")).then(given.str.replace(r"I([^AEIOU]*)$", "A$1"))
        .otherwise(given.str.replace(r"[AEIOU]([^AEIOU]*)$", "I$1"))
    )
    return pl.when(given.is_null()).then(names).otherwise(head.fill_null("") + changed + tail.fill_null(""))


def make_similar_names(rng, pop: Population, mix: Mix) -> None:
    """Some twins, and every close sibling pair, get names one letter apart."""
    if not (mix.twin_similar_name_share or mix.close_sibling_share):
        return
    younger_twin = np.flatnonzero(pop.twin & np.r_[False, pop.twin[:-1]] & (pop.hh == np.r_[-1, pop.hh[:-1]]))
    younger_twin = younger_twin[rng.random(len(younger_twin)) < mix.twin_similar_name_share]
    younger_sibling = np.flatnonzero(pop.sibling_close & np.r_[False, pop.sibling_close[:-1]] & (pop.hh == np.r_[-1, pop.hh[:-1]]))
    younger = np.r_[younger_twin, younger_sibling]
    similar = pl.DataFrame({"n": pop.name.gather(younger - 1)}).select(one_letter_apart(pl.col("n"))).to_series()
    pop.name = pop.name.scatter(younger, similar)


def child_count(pop: Population) -> np.ndarray:
    return np.bincount(pop.hh, weights=(pop.role == 2), minlength=len(pop.hh_size)).astype(np.int64)


def assign_registration_kecamatan(rng, regions: Regions, pop: Population) -> None:
    """Kecamatan in the NIK: where the person was first registered (home, elsewhere, or pre-pemekaran Papua)."""
    home_kec = regions.desa[pop.hh_desa[pop.hh]] // 10**4
    reg = home_kec.copy()
    # Adults who came from elsewhere keep the NIK issued there.
    from_elsewhere = (pop.role < 2) & (rng.random(pop.size) < 0.07) & ~pop.hh_victim[pop.hh]
    elsewhere = rng.choice(len(regions.desa), size=int(from_elsewhere.sum()), p=regions.desa_weight)
    reg[from_elsewhere] = regions.desa[elsewhere] // 10**4
    # Papua households registered before the 2022 pemekaran keep the old kecamatan code in their NIKs.
    alias = regions.kec_retired_alias[pop.hh_desa[pop.hh]]
    old_household = (rng.random(len(pop.hh_size)) < 0.8)[pop.hh]
    born_before = pop.nik_dob < days_from_ymd(2022, 7, 1)
    use_alias = (alias > 0) & old_household & born_before & (reg == home_kec)
    pop.reg_kec = np.where(use_alias, alias, reg)


def name_people(rng, pop: Population, pids: np.ndarray, style_of: np.ndarray | None = None) -> pl.Series:
    """Fresh names for the given people (in their household's style unless style_of is given)."""
    style_of = pop.hh_style[pop.hh[pids]] if style_of is None else style_of
    # Heads and children carry the household's family name; a spouse keeps her (or his) own.
    spouse = pop.role[pids] == 1
    pieces = []
    for s, style_name in enumerate(STYLE_NAMES):
        sel = np.flatnonzero(style_of == s)
        if len(sel) == 0:
            continue
        style = NAME_STYLES[style_name]
        surname = np.zeros(len(sel), np.int64)
        if style.surnames:
            pool_size = len(POOLS[style.surnames][0])
            own = rng.integers(0, pool_size, len(sel))
            surname = np.where(spouse[sel], own, pop.hh_surname[pop.hh[pids[sel]]] % pool_size)
        names = compose_names(rng, style, pop.female[pids[sel]], surname, pop.birth_order[pids[sel]])
        pieces.append(pl.DataFrame({"pos": sel, "name": names}))
    return pl.concat(pieces).sort("pos")["name"]


def name_population(rng, pop: Population) -> None:
    pop.hh_surname = rng.integers(0, 1000, len(pop.hh_size))
    everyone = np.arange(pop.size)
    frame = pl.DataFrame({"name": name_people(rng, pop, everyone)})

    # Older Javanese/Sundanese/Muslim names are often still written in the old spelling.
    year, _, _ = ymd_from_days(pop.dob)
    old_styles = [STYLE_NAMES.index(s) for s, style in NAME_STYLES.items() if style.old_spelling]
    old_style = np.isin(pop.hh_style[pop.hh], old_styles)
    old = old_style & (year < 1960) & (rng.random(pop.size) < 0.5)
    frame = frame.with_columns(pl.when(pl.Series(old)).then(to_old_spelling(pl.col("name"))).otherwise(pl.col("name")))

    # bin/binti: children of a male head take his name; others get a plausible father's name.
    share = np.array([NAME_STYLES[s].bin_binti for s in STYLE_NAMES])[pop.hh_style[pop.hh]]
    with_bin = np.flatnonzero((rng.random(pop.size) < share) & ~pop.hh_victim[pop.hh])
    head = pop.hh_first[pop.hh[with_bin]]
    own_father = (pop.role[with_bin] == 2) & ~pop.female[head]
    zeros = np.zeros(len(with_bin), np.int64)
    some_father = compose_names(rng, NAME_STYLES["muslim"], zeros.astype(bool), zeros, zeros)
    names = frame["name"]
    patronymic = pl.DataFrame({
        "name": names.gather(with_bin), "head": names.gather(head), "other": some_father, "own": own_father,
        "link": np.where(pop.female[with_bin], " BINTI ", " BIN "),
    }).select(pl.col("name") + pl.col("link")
              + pl.when(pl.col("own")).then(without_patronymic(pl.col("head"))).otherwise(pl.col("other")))
    pop.name = names.scatter(with_bin, patronymic.to_series())


def make_father_son_same_name(rng, pop: Population, mix: Mix) -> None:
    """A son named exactly after his father, in the same KK: a hard negative for duplicate detection."""
    first_son = first_member_where(pop, (pop.role == 2) & ~pop.female & ~pop.twin)
    head_name_plain = ~pop.name.gather(pop.hh_first).str.contains(" BIN")
    male_head = ~pop.female[pop.hh_first]
    eligible = np.flatnonzero((first_son >= 0) & male_head & head_name_plain.to_numpy() & ~pop.hh_victim)
    chosen = rng.permutation(eligible)[: round(mix.father_son_share * len(eligible))]
    sons, fathers = first_son[chosen], pop.hh_first[chosen]
    pop.name = pop.name.scatter(sons, pop.name.gather(fathers))
    pop.father_son[sons] = pop.father_son[fathers] = True


def first_member_where(pop: Population, mask: np.ndarray) -> np.ndarray:
    """Per household, the first person id matching mask, or -1."""
    candidate = np.where(mask, np.arange(pop.size), np.iinfo(np.int64).max)
    first = np.minimum.reduceat(candidate, pop.hh_first)
    return np.where(first == np.iinfo(np.int64).max, -1, first)


def make_twin_names_differ(rng, pop: Population) -> None:
    younger = np.flatnonzero(pop.twin & (np.r_[False, pop.twin[:-1]]) & (pop.hh == np.r_[-1, pop.hh[:-1]]))
    for _ in range(10):
        same = younger[(pop.name.gather(younger) == pop.name.gather(younger - 1)).to_numpy()]
        if len(same) == 0:
            break
        pop.name = pop.name.scatter(same, name_people(rng, pop, same))


def mark_deaths(rng, pop: Population, mix: Mix) -> None:
    """~3% of people are dead in Dukcapil, older people far more often; deaths since 2016."""
    age = (REFERENCE_DAY - pop.dob) / 365.25
    weight = np.select([age < 40, age < 60, age < 70], [0.3, 1.0, 3.0], 6.0)
    dead = (rng.random(pop.size) < np.minimum(mix.deceased_share * weight / weight.mean(), 0.9)) & ~pop.hh_victim[pop.hh]
    since = np.maximum(pop.dob + 1, days_from_ymd(2016, 1, 1))
    pop.dead_day = np.where(dead, random_days_between(rng, since, REFERENCE_DAY - 1), -1)


def move_households(rng, regions: Regions, pop: Population) -> None:
    """Dukcapil has some households at a new address: another kabupaten, or another desa of the same one."""
    movable = np.flatnonzero(~pop.hh_victim)
    order = rng.permutation(movable)
    n_other = round(MOVED_OTHER_KAB_SHARE * len(movable))
    other = order[:n_other]
    kab_pos = regions.desa_kab_pos
    same_candidates = order[n_other:]
    same_candidates = same_candidates[regions.kab_count[kab_pos[pop.hh_desa[same_candidates]]] > 1]
    within = same_candidates[: round(MOVED_SAME_KAB_SHARE * len(movable))]

    new_desa = rng.choice(len(regions.desa), size=len(other), p=regions.desa_weight)
    for _ in range(10):  # redraw the few that landed in their own kabupaten
        clash = kab_pos[new_desa] == kab_pos[pop.hh_desa[other]]
        if not clash.any():
            break
        new_desa[clash] = rng.choice(len(regions.desa), size=int(clash.sum()), p=regions.desa_weight)
    clash = kab_pos[new_desa] == kab_pos[pop.hh_desa[other]]
    clash_kab = kab_pos[new_desa[clash]]
    new_desa[clash] = (regions.kab_first[clash_kab] + regions.kab_count[clash_kab]) % len(regions.desa)  # next kab

    home = pop.hh_desa[within]
    start, count = regions.kab_first[kab_pos[home]], regions.kab_count[kab_pos[home]]
    step = 1 + np.floor(rng.random(len(within)) * (count - 1)).astype(np.int64)  # never 0: a different desa
    pop.hh_cur_desa[other] = new_desa
    pop.hh_cur_desa[within] = start + (home - start + step) % count
    pop.hh_move[other], pop.hh_move[within] = 1, 2
    movers = np.r_[other, within]
    pop.hh_alamat_cur = pop.hh_alamat.clone().scatter(movers, make_addresses(rng, len(movers)))


def select_dtks_households(rng, pop: Population, target_people: int) -> None:
    """DTKS lists whole households: take random households until target_people are listed."""
    candidates = rng.permutation(np.flatnonzero(~pop.hh_victim))
    taken = candidates[: int(np.searchsorted(np.cumsum(pop.hh_size[candidates]), target_people, side="right"))]
    pop.hh_in_dtks = np.zeros(len(pop.hh_size), bool)
    pop.hh_in_dtks[taken] = True


def choose_dtks_region_codes(rng, regions: Regions, pop: Population) -> None:
    """DTKS keeps the desa it knows; in re-coded Papua desa half of the DTKS households still use the old code."""
    code = regions.desa[pop.hh_desa].copy()
    alias = regions.desa_retired_alias[pop.hh_desa]
    old_code = (alias > 0) & pop.hh_in_dtks & (pop.hh_move == 0) & (rng.random(len(code)) < PAPUA_RETIRED_CODE_SHARE)
    pop.hh_dtks_desa_code = np.where(old_code, alias, code)


# -------------------------------------------------------------------------------- scenario plan

CLEAN, QUARANTINE, INVALID_FORMAT, INVALID_REGION, INVALID_DATE, IDENTITY, SHARED_RECEIVER, SHARED_OWNER, \
    MISSING, SEX_MISMATCH, NIK_COLLISION, DUPLICATED, NIK_TYPO = range(13)


@dataclass
class Plan:
    """Who in DTKS gets which problem. `category` is per person id (CLEAN for people outside DTKS)."""

    category: np.ndarray
    extra_rows: np.ndarray  # per person id: extra DTKS rows (duplicates)
    common_pair: np.ndarray  # deliberately given a very common name shared with an unrelated DTKS person
    dob_corrected: np.ndarray
    victim_of: np.ndarray  # identity_mismatch person -> person id whose NIK their DTKS row carries
    shared_owner_of: np.ndarray  # shared_nik receiver -> owner person id
    collision_with: np.ndarray  # Dukcapil-only people given a DTKS person's NIK in Dukcapil
    collision_owner: np.ndarray
    reregistered: np.ndarray  # per person id: listed again at the new address after moving kabupaten


def share_count(share: float, n: int, available: int) -> int:
    """Rows for a share of n, at least one when anything is available (small samples still show every kind)."""
    return int(min(max(round(share * n), 1 if available else 0), available))


def make_common_name_pairs(rng, pop: Population, dtks_people: np.ndarray, n: int) -> np.ndarray:
    """Unrelated DTKS people with the same very common name (half also share the birth date)."""
    pair = np.zeros(pop.size, bool)
    protected = pop.twin | pop.father_son
    adult = (pop.role < 2) & ~protected
    is_common = pop.name.is_in(list(VERY_COMMON_NAMES)).to_numpy()
    javanese_or_muslim = np.isin(pop.hh_style[pop.hh], [STYLE_NAMES.index(s) for s in ("jawa", "muslim", "sunda")])
    for female in (False, True):
        in_sex = dtks_people[(pop.female[dtks_people] == female) & adult[dtks_people]]
        sources = rng.permutation(in_sex[is_common[in_sex]])
        sources = sources[: share_count(COMMON_NAME_PAIR_SHARE / 2, n, len(sources))]
        # Each source gets the closest-aged unrelated namesake-to-be, so sharing a birthday stays plausible.
        targets = in_sex[~is_common[in_sex] & javanese_or_muslim[in_sex]]
        if len(targets) == 0:
            continue
        targets = targets[np.argsort(pop.dob[targets], kind="stable")]
        nearest = np.clip(np.searchsorted(pop.dob[targets], pop.dob[sources]), 0, len(targets) - 1)
        dst, first = np.unique(targets[nearest], return_index=True)
        src = sources[first]
        keep = pop.hh[src] != pop.hh[dst]
        src, dst = src[keep], dst[keep]
        pop.name = pop.name.scatter(dst, pop.name.gather(src))
        same_birthday = (np.abs(pop.dob[src] - pop.dob[dst]) < 3 * 365) & (rng.random(len(src)) < 0.5)
        pop.dob[dst[same_birthday]] = pop.dob[src[same_birthday]]
        pop.nik_dob[dst[same_birthday]] = pop.nik_dob[src[same_birthday]]
        pair[src] = pair[dst] = True
    return pair


def plan_scenarios(rng, pop: Population, n: int, mix: Mix) -> Plan:
    dtks_people = np.flatnonzero(pop.hh_in_dtks[pop.hh])
    common_pair = make_common_name_pairs(rng, pop, dtks_people, n)
    protected = pop.twin | pop.father_son | common_pair
    category = np.full(pop.size, CLEAN, np.int8)
    in_dtks = pop.hh_in_dtks[pop.hh]

    # shared_nik: someone listed under the head's NIK (wife or child using the husband's/father's card).
    head = pop.hh_first[pop.hh]
    receivers = dtks_people[(pop.role[dtks_people] > 0) & ~protected[dtks_people] & ~protected[head[dtks_people]]]
    receivers = rng.permutation(receivers)
    _, first_in_household = np.unique(pop.hh[receivers], return_index=True)
    receivers = receivers[np.sort(first_in_household)]
    receivers = receivers[: share_count(mix.row_scenario_shares["shared_nik"], n, len(receivers))]
    shared_owner_of = np.full(pop.size, -1, np.int64)
    shared_owner_of[receivers] = head[receivers]
    category[receivers] = SHARED_RECEIVER
    category[head[receivers]] = SHARED_OWNER

    free = dtks_people[(category[dtks_people] == CLEAN) & ~protected[dtks_people]]
    _, month, day = ymd_from_days(pop.nik_dob)
    not_leap_day = ~((month == 2) & (day == 29))  # their one-digit year typo must stay a valid date
    pool = rng.permutation(free)
    taken = np.zeros(pop.size, bool)

    def take(k: int, mask: np.ndarray | None = None) -> np.ndarray:
        candidates = pool[~taken[pool]] if mask is None else pool[~taken[pool] & mask[pool]]
        chosen = candidates[:k]
        taken[chosen] = True
        return chosen

    for cat, key, mask in ((IDENTITY, "identity_mismatch", not_leap_day), (QUARANTINE, "quarantine_bad_row", None),
                           (INVALID_FORMAT, "invalid_format", None), (INVALID_REGION, "invalid_region", None),
                           (INVALID_DATE, "invalid_date", None), (MISSING, "missing_from_dukcapil", None),
                           (SEX_MISMATCH, "sex_mismatch", None), (NIK_COLLISION, "dukcapil_nik_collision", None),
                           (NIK_TYPO, "nik_typo", None)):
        if cat == IDENTITY:
            # one victim household was reserved per identity_mismatch row
            k = int(pop.hh_victim.sum())
        elif not mix.row_scenario_shares[key]:
            continue
        else:
            k = share_count(mix.row_scenario_shares[key], n, len(free))
        category[take(k, mask)] = cat
    troubled_twins(rng, pop, mix, category, dtks_people)
    if mix.missing_common_name_share:
        give_missing_people_common_names(rng, pop, mix, category)

    # Households that moved kabupaten and were registered again at the new address: every
    # member gets a second row there (from the duplicate budget).
    extra_rows = np.zeros(pop.size, np.int64)
    reregistered = np.zeros(pop.size, bool)
    if mix.reregistered_share:
        movers = np.flatnonzero(pop.hh_in_dtks & (pop.hh_move == 1))
        member_free = np.bincount(pop.hh, weights=~taken & (category == CLEAN) & ~protected, minlength=len(pop.hh_size))
        movers = movers[member_free[movers] == pop.hh_size[movers]]
        movers = rng.permutation(movers)[: round(mix.reregistered_share * len(movers))]
        members = np.flatnonzero(np.isin(pop.hh, movers))
        taken[members] = True
        reregistered[members] = True
        extra_rows[members] = 1
        category[members] = DUPLICATED

    # Duplicates fill DTKS up to exactly n rows.
    n_extra = n - len(dtks_people) - int(extra_rows.sum())
    triples = int(round(n_extra * TRIPLICATE_SHARE / 2))
    doubles = n_extra - 2 * triples
    duplicated = take(doubles + triples)
    if len(duplicated) < doubles + triples:
        raise ValueError(f"n={n} is too small to plan duplicates")
    category[duplicated] = DUPLICATED
    extra_rows[duplicated[:doubles]] = 1
    extra_rows[duplicated[doubles:]] = 2

    # Birth date corrected after the NIK was issued: Dukcapil and DTKS show the new date, the NIK the old.
    clean_dtks = pool[~taken[pool]]
    outside = np.flatnonzero(~in_dtks & ~pop.hh_victim[pop.hh] & ~pop.twin)
    corrected = np.r_[clean_dtks[: share_count(DOB_CORRECTED_SHARE, n, len(clean_dtks))],
                      rng.permutation(outside)[: round(DOB_CORRECTED_SHARE * len(outside))]]
    dob_corrected = np.zeros(pop.size, bool)
    dob_corrected[corrected] = True
    shift_days = np.where(rng.random(len(corrected)) < 0.5, rng.integers(1, 15, len(corrected)),
                          365 * rng.integers(1, 4, len(corrected)))
    earlier = (rng.random(len(corrected)) < 0.5) | (pop.dead_day[corrected] >= 0)
    shift_days = np.where(earlier, -shift_days, shift_days)
    new_dob = np.minimum(pop.nik_dob[corrected] + shift_days, REFERENCE_DAY)
    pop.dob[corrected] = np.where(new_dob == pop.nik_dob[corrected], new_dob - 2, new_dob)  # capped at today

    # People missing from Dukcapil cannot be recorded dead there.
    pop.dead_day[category == MISSING] = -1

    # Dukcapil-only strangers who were given a DTKS person's NIK (double-issued NIKs).
    owners = np.flatnonzero(category == NIK_COLLISION)
    strangers = rng.permutation(outside[pop.dead_day[outside] < 0])[: len(owners)]
    owners = owners[: len(strangers)]

    return Plan(category=category, extra_rows=extra_rows, common_pair=common_pair, dob_corrected=dob_corrected,
                victim_of=np.full(pop.size, -1, np.int64), shared_owner_of=shared_owner_of,
                collision_with=strangers, collision_owner=owners, reregistered=reregistered)


def troubled_twins(rng, pop: Population, mix: Mix, category: np.ndarray, dtks_people: np.ndarray) -> None:
    """Some twin pairs in DTKS lose the civil registry's help: one twin is missing from
    Dukcapil, or one twin's DTKS NIK was mistyped."""
    if not (mix.twin_one_missing_share or mix.twin_one_nik_typo_share):
        return
    in_dtks = np.zeros(pop.size, bool)
    in_dtks[dtks_people] = True
    younger = np.flatnonzero(pop.twin & np.r_[False, pop.twin[:-1]] & (pop.hh == np.r_[-1, pop.hh[:-1]]) & in_dtks)
    younger = younger[(category[younger] == CLEAN) & (category[younger - 1] == CLEAN)]
    which = rng.random(len(younger))
    one = np.where(rng.random(len(younger)) < 0.5, younger, younger - 1)
    missing = which < mix.twin_one_missing_share
    typo = (which >= mix.twin_one_missing_share) & (which < mix.twin_one_missing_share + mix.twin_one_nik_typo_share)
    category[one[missing]] = MISSING
    category[one[typo]] = NIK_TYPO


def give_missing_people_common_names(rng, pop: Population, mix: Mix, category: np.ndarray) -> None:
    """Adults missing from Dukcapil given a very common name that someone in Dukcapil
    carries; half also share that person's birth date."""
    missing = np.flatnonzero((category == MISSING) & (pop.role < 2) & ~pop.twin)
    chosen = rng.permutation(missing)[: round(mix.missing_common_name_share * len(missing))]
    is_common = pop.name.is_in(list(VERY_COMMON_NAMES)).to_numpy()
    for female in (False, True):
        who = chosen[pop.female[chosen] == female]
        donors = np.flatnonzero(is_common & (pop.female == female) & (category != MISSING) & ~pop.hh_victim[pop.hh])
        if len(who) == 0 or len(donors) == 0:
            continue
        donor = donors[rng.integers(0, len(donors), len(who))]
        pop.name = pop.name.scatter(who, pop.name.gather(donor))
        same_day = rng.random(len(who)) < 0.5
        pop.dob[who[same_day]] = pop.dob[donor[same_day]]
        pop.nik_dob[who[same_day]] = pop.nik_dob[donor[same_day]]


def prepare_identity_victims(rng, regions: Regions, pop: Population, plan: Plan) -> None:
    """For each identity_mismatch person X, a Dukcapil-only stranger whose NIK is X's with one year digit changed.

    The stranger shares X's kecamatan, sex, day and month but is born in another year of the same decade, has
    another name and lives in X's desa. Both are ranked first for NIK serials, so the NIKs differ in one digit.
    """
    xs = np.flatnonzero(plan.category == IDENTITY)
    victims = pop.hh_first[np.flatnonzero(pop.hh_victim)][: len(xs)]
    xs = xs[: len(victims)]
    year, month, day = ymd_from_days(pop.nik_dob[xs])
    # Another last digit of the year, same decade, not in the future (so only one NIK digit differs).
    decade, last = year - year % 10, year % 10
    max_last = np.minimum(9, 2024 - decade)
    own_is_option = last <= max_last
    pick = np.floor(rng.random(len(xs)) * (max_last + 1 - own_is_option)).astype(np.int64)
    other_year = decade + np.where(own_is_option & (pick >= last), pick + 1, pick)
    pop.nik_dob[victims] = pop.dob[victims] = days_from_ymd(other_year, month, day)
    pop.female[victims] = pop.female[xs]
    pop.reg_kec[victims] = pop.reg_kec[xs]
    victim_hh = pop.hh[victims]
    pop.hh_desa[victim_hh] = pop.hh_cur_desa[victim_hh] = pop.hh_cur_desa[pop.hh[xs]]
    pop.hh_style[victim_hh] = pop.hh_style[pop.hh[xs]]
    pop.name = pop.name.scatter(victims, name_people(rng, pop, victims))
    for _ in range(10):
        same = (pop.name.gather(victims) == pop.name.gather(xs)).to_numpy()
        if not same.any():
            break
        pop.name = pop.name.scatter(victims[same], name_people(rng, pop, victims[same]))
    plan.victim_of[xs] = victims


# ----------------------------------------------------------------------------------- numbering


def assign_niks(pop: Population, plan: Plan) -> None:
    """Serial = rank among people sharing kecamatan + DDMMYY(+40); identity pairs rank first, twins adjacent."""
    year, month, day = ymd_from_days(pop.nik_dob)
    prefix = nik_prefix(pop.reg_kec, day, month, year, pop.female)
    priority = np.ones(pop.size, np.int64)
    priority[plan.victim_of >= 0] = 0
    priority[plan.victim_of[plan.victim_of >= 0]] = 0
    serial = rank_serials(prefix, priority, pop.hh, pop.member)
    if serial.max() > 9999:
        raise ValueError("more than 9999 people share a NIK prefix; the population is too concentrated")
    pop.nik = prefix + serial


def assign_kk_numbers(rng, regions: Regions, pop: Population, alt_kk_kec: np.ndarray) -> np.ndarray:
    """No KK = kecamatan + issue date DDMMYY + serial. Returns the alternative KKs requested for DTKS duplicates.

    Every household has the KK issued where DTKS knows them (after its youngest member was born); movers got a
    new KK at their new kecamatan, which is the one Dukcapil holds. A DTKS duplicate may carry yet another KK
    (a new family after marriage).
    """
    n_hh = len(pop.hh_size)
    youngest = np.maximum.reduceat(pop.dob, pop.hh_first)
    issued = random_days_between(rng, np.maximum(youngest, days_from_ymd(2005, 1, 1)), REFERENCE_DAY - 30)
    moved = np.flatnonzero(pop.hh_move > 0)
    reissued = random_days_between(rng, np.maximum(issued[moved] + 1, days_from_ymd(2019, 1, 1)), REFERENCE_DAY)
    alt_issued = random_days_between(rng, np.full(len(alt_kk_kec), days_from_ymd(2015, 1, 1)), REFERENCE_DAY)

    kec = np.r_[regions.desa[pop.hh_desa] // 10**4, regions.desa[pop.hh_cur_desa[moved]] // 10**4, alt_kk_kec]
    day_number = np.r_[issued, reissued, alt_issued]
    y, m, d = ymd_from_days(day_number)
    prefix = nik_prefix(kec, d, m, y, np.zeros(len(kec), bool))
    kk = prefix + rank_serials(prefix, np.arange(len(prefix)))
    pop.hh_kk = kk[:n_hh]
    pop.hh_kk_cur = pop.hh_kk.copy()
    pop.hh_kk_cur[moved] = kk[n_hh:n_hh + len(moved)]
    return kk[n_hh + len(moved):]


# ------------------------------------------------------------------------------------ Dukcapil


def build_dukcapil(rng, regions: Regions, pop: Population, plan: Plan) -> pl.DataFrame:
    """Everyone except the people deliberately missing; a few recorded twice; some NIKs double-issued.

    Keeps the internal `pid` column (dropped when written) so the truth can tell people apart.
    """
    present = np.flatnonzero(plan.category != MISSING)
    repeats = rng.permutation(present)[: max(1, round(DUKCAPIL_REPEAT_SHARE * len(present)))]
    pid = np.r_[present, repeats]
    is_repeat = np.arange(len(pid)) >= len(present)
    shuffle = rng.permutation(len(pid))  # row order says nothing about households
    pid, is_repeat = pid[shuffle], is_repeat[shuffle]

    nik = pop.nik[pid].copy()
    stranger_rows = np.flatnonzero(np.isin(pid, plan.collision_with))
    owner_of_stranger = lookup(pid[stranger_rows], plan.collision_with, plan.collision_owner, -1)
    nik[stranger_rows] = pop.nik[owner_of_stranger]

    hh = pop.hh[pid]
    alamat = pop.hh_alamat_cur.gather(hh)
    repeat_rows = np.flatnonzero(is_repeat)  # an older record: same person, address written differently
    alamat = alamat.scatter(repeat_rows, vary_addresses(rng, alamat.gather(repeat_rows)))
    dead = pop.dead_day[pid]
    frame = pl.DataFrame({
        "nik": pl.Series(nik).cast(pl.String),
        "no_kk": pl.Series(pop.hh_kk_cur[hh]).cast(pl.String),
        "nama": pop.name.gather(pid),
        "jenis_kelamin": pl.Series(np.where(pop.female[pid], "PEREMPUAN", "LAKI-LAKI")),
        "tempat_lahir": pop.tempat_lahir.gather(pid),
        "tanggal_lahir": date_strings(pop.dob[pid]),
        "alamat": alamat,
        "kode_wilayah": pl.Series(regions.desa[pop.hh_cur_desa[hh]]).cast(pl.String),
        "tanggal_meninggal": date_strings(dead),
        "pid": pid,
    }).with_columns(pl.when(pl.Series(dead >= 0)).then(pl.col("tanggal_meninggal")).alias("tanggal_meninggal"))
    return frame


def assign_birth_places(rng, regions: Regions, pop: Population) -> None:
    """City of birth: usually the kabupaten of the NIK's kecamatan; a quarter of adults were born elsewhere."""
    kab = pop.reg_kec // 100
    elsewhere = (pop.role < 2) & (rng.random(pop.size) < 0.25) & ~pop.hh_victim[pop.hh]
    other = regions.desa[rng.choice(len(regions.desa), size=pop.size, p=regions.desa_weight)] // 10**6
    pop.tempat_lahir = city_of_kabupaten(regions, np.where(elsewhere, other, kab))


# ------------------------------------------------------------------------------- damaged NIKs

NIK_DAMAGE_KINDS = ("empty", "letter", "scientific", "15_digits", "17_digits", "serial_0000", "float_suffix")
NOT_A_PROVINCE = np.array([10, 20, 22, 30, 37, 40, 50, 60, 70, 80, 90, 97, 98, 99])


def damage_niks(rng, niks: np.ndarray) -> pl.Series:
    """NIKs broken the ways spreadsheets and data entry break them, in equal shares of NIK_DAMAGE_KINDS."""
    k = len(niks)
    kind = rng.permutation(np.arange(k) % len(NIK_DAMAGE_KINDS))
    digits = digits_of(niks)
    # O for 0 or I for 1, as typed from a photocopy
    has_zero, has_one = (digits == 0).any(axis=1), (digits == 1).any(axis=1)
    use_o = (has_zero & (rng.random(k) < 0.5)) | ~has_one
    pos = np.where(use_o, np.argmax(digits == 0, axis=1), np.argmax(digits == 1, axis=1))
    lettered = digits + ord("0")
    lettered[np.arange(k), pos] = np.where(use_o, ord("O"), ord("I"))
    frame = pl.DataFrame({"s": text_of(digits + ord("0")), "letter": text_of(lettered), "kind": kind,
                          "pos": rng.integers(0, 16, k)})
    s, pos_col, kind_col = pl.col("s"), pl.col("pos"), pl.col("kind")
    # Excel shows a 16-digit number as 3.20101E+15 (6 significant digits, trailing zeros dropped).
    mantissa = s.str.slice(1, 5).str.strip_chars_end("0")
    scientific = (pl.when(mantissa == "").then(s.str.slice(0, 1))
                  .otherwise(s.str.slice(0, 1) + pl.lit(".") + mantissa) + pl.lit("E+15"))
    return frame.select(
        pl.when(kind_col == 0).then(pl.lit(None, pl.String))
        .when(kind_col == 1).then(pl.col("letter"))
        .when(kind_col == 2).then(scientific)
        .when(kind_col == 3).then(s.str.slice(0, pos_col) + s.str.slice(pos_col + 1))  # a digit dropped
        .when(kind_col == 4).then(s.str.slice(0, pos_col + 1) + s.str.slice(pos_col))  # a digit typed twice
        .when(kind_col == 5).then(s.str.slice(0, 12) + pl.lit("0000"))
        .otherwise(s + pl.lit(".0"))  # read as a float and written back
    ).to_series()


def invalid_region_niks(rng, regions: Regions, niks: np.ndarray) -> np.ndarray:
    """Same NIK with a kecamatan that does not exist: a high kecamatan number, or a province that isn't one."""
    k = len(niks)
    kab = niks // 10**12
    prefix = kab * 100 + rng.integers(70, 100, k)
    for _ in range(20):
        exists = np.isin(prefix, regions.valid_nik_prefix)
        if not exists.any():
            break
        prefix[exists] = kab[exists] * 100 + rng.integers(70, 100, int(exists.sum()))
    bogus_province = (rng.random(k) < 0.3) | np.isin(prefix, regions.valid_nik_prefix)
    province = NOT_A_PROVINCE[rng.integers(0, len(NOT_A_PROVINCE), k)]
    prefix = np.where(bogus_province, province * 10**4 + rng.integers(0, 10**4, k), prefix)
    return prefix * 10**10 + niks % 10**10


def invalid_date_niks(rng, niks: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Same NIK with an impossible DDMM: day 00, 32-40, above 71, month 00/13+, 31 April, 30 February."""
    kec, dd, mm, yy, serial = nik_parts(niks)
    k = len(niks)
    kind = rng.permutation(np.arange(k) % 6)
    plus = 40 * female.astype(np.int64)
    dd = np.select([kind == 0, kind == 1, kind == 2, kind == 4, kind == 5],
                   [0, rng.integers(32, 41, k), rng.integers(72, 100, k), 31 + plus, rng.integers(30, 32, k) + plus],
                   dd)
    mm = np.select([kind == 3, kind == 4, kind == 5],
                   [np.array([0, 13, 14, 15, 19, 21])[rng.integers(0, 6, k)],
                    np.array([4, 6, 9, 11])[rng.integers(0, 4, k)], 2], mm)
    return kec * 10**10 + dd * 10**8 + mm * 10**6 + yy * 10**4 + serial


def one_digit_typos(rng, digits: np.ndarray) -> np.ndarray:
    out = digits.copy()
    rows = np.arange(len(out))
    pos = rng.integers(1, 16, len(out))  # the leading province digit is rarely mistyped
    out[rows, pos] = (out[rows, pos] + rng.integers(1, 10, len(out))) % 10
    return out


def adjacent_transpositions(rng, digits: np.ndarray) -> np.ndarray:
    out = digits.copy()
    rows = np.arange(len(out))
    differs = digits[:, :-1] != digits[:, 1:]
    pos = np.argmax(rng.random(differs.shape) * differs, axis=1)  # a random place where swapping changes something
    out[rows, pos], out[rows, pos + 1] = digits[rows, pos + 1], digits[rows, pos]
    return out


def duplicate_niks(rng, niks: np.ndarray, real_niks: np.ndarray, kinds=(0.62, 0.14, 0.10, 0.14)) -> pl.Series:  # real_niks sorted
    """NIK on a duplicate row: identical, one digit mistyped, two digits swapped, or damaged.

    Typos that would land on another real person's NIK are redrawn: that case is its own scenario
    (identity_mismatch), and keeping it out keeps the other labels unambiguous.
    """
    k = len(niks)
    kind = rng.choice(4, size=k, p=list(kinds))
    digits = digits_of(niks)
    variant = digits.copy()
    todo = kind.copy()
    for _ in range(10):
        typo, swap = todo == 1, todo == 2
        variant[typo] = one_digit_typos(rng, digits[typo])
        variant[swap] = adjacent_transpositions(rng, digits[swap])
        lands_on_someone = in_sorted(number_of(variant), real_niks) & ((todo == 1) | (todo == 2))
        todo = np.where(lands_on_someone, todo, 0)
        if not lands_on_someone.any():
            break
    landed = in_sorted(number_of(variant), real_niks) & ((kind == 1) | (kind == 2))
    variant[landed] = digits[landed]  # give up: keep the person's own NIK
    out = text_of(variant + ord("0"))
    damaged = np.flatnonzero(kind == 3)
    return out.scatter(damaged, damage_niks(rng, niks[damaged]))


# ------------------------------------------------------------------------- duplicate variation

SPELLING_VARIANTS = (
    (r"\bMUHAMMAD\b", "MUHAMAD"), (r"\bMUHAMMAD\b", "MOCH."), (r"\bMUHAMMAD\b", "M."), (r"\bMUHAMMAD\b", "MOHAMAD"),
    (r"\bAHMAD\b", "ACHMAD"), (r"\bSITI\b", "ST."), (r"\bSITTI\b", "SITI"), (r"\bABDUL\b", "ABD."),
    (r"RIZKI\b", "RIZKY"), (r"FAUZI\b", "FAUZY"), (r"SYAH", "SAH"), (r"\bYUSUF\b", "YUSUP"), (r"KH", "H"),
    (r"\bNUR\b", "NOER"), (r"\bI (WAYAN|MADE|NYOMAN|KETUT|PUTU|GEDE|KADEK|KOMANG) ", "$1 "), (r"\bBR ", "BR. "),
    # old spelling <-> new spelling
    (r"OE", "U"), (r"\bDJ", "J"), (r"TJ", "C"), (r"\bSU", "SOE"), (r"\bJO", "DJO"), (r"\bCAHYO\b", "TJAHJO"),
    (r"\bSUHARTO\b", "SOEHARTO"), (r"WAHYU", "WAHJU"),
)
TYPO_LETTERS = pl.Series(list("AEIOUNRSTMLKHDGBY"))


def respell_names(rng, names: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """One applicable spelling variant per name (random among those that apply); also says which names had one."""
    matches = np.column_stack([names.str.contains(pattern).to_numpy() for pattern, _ in SPELLING_VARIANTS])
    rule = np.argmax(rng.random(matches.shape) * matches, axis=1)
    spelled = pl.col("n")
    for i, (pattern, replacement) in enumerate(SPELLING_VARIANTS):
        spelled = pl.when(pl.col("rule") == i).then(pl.col("n").str.replace(pattern, replacement)).otherwise(spelled)
    spelled = pl.DataFrame({"n": names, "rule": rule}).select(spelled).to_series()
    return spelled, matches.any(axis=1)


def typo_names(rng, names: pl.Series) -> pl.Series:
    """One character substituted, deleted, or swapped with its neighbour (never the first letter)."""
    k = len(names)
    frame = pl.DataFrame({"n": names, "kind": rng.integers(0, 3, k), "u": rng.random(k),
                          "letter": TYPO_LETTERS.gather(rng.integers(0, len(TYPO_LETTERS), k))})
    n = pl.col("n")
    pos = (1 + (pl.col("u") * (n.str.len_chars() - 2).clip(lower_bound=1)).floor()).cast(pl.Int64)
    deleted = n.str.slice(0, pos) + n.str.slice(pos + 1)
    typo = (pl.when(pl.col("kind") == 0).then(n.str.slice(0, pos) + pl.col("letter") + n.str.slice(pos + 1))
            .when(pl.col("kind") == 1).then(deleted)
            .otherwise(n.str.slice(0, pos) + n.str.slice(pos + 1, 1) + n.str.slice(pos, 1) + n.str.slice(pos + 2)))
    return frame.select(pl.when(typo == n).then(deleted).otherwise(typo)).to_series()


OCR_CONFUSIONS = (("RN", "M"), ("M", "RN"), ("LI", "U"), ("CL", "D"), ("I", "L"), ("O", "D"))


def ocr_damage(rng, names: pl.Series) -> pl.Series:
    """Names as a scanner reads a worn form: two words merged, a word split, two letters
    swapped, or letters confused (RN/M, LI/U, CL/D, I/L, O/D)."""
    k = len(names)
    frame = pl.DataFrame({"n": names, "kind": rng.integers(0, 4, k), "u": rng.random(k),
                          "confusion": rng.integers(0, len(OCR_CONFUSIONS), k)})
    n = pl.col("n")
    middle = (n.str.len_chars() // 2).cast(pl.Int64)
    confused = n
    for i, (seen, read) in enumerate(OCR_CONFUSIONS):
        confused = pl.when(pl.col("confusion") == i).then(n.str.replace(seen, read, literal=True)).otherwise(confused)
    pos = (1 + (pl.col("u") * (n.str.len_chars() - 2).clip(lower_bound=1)).floor()).cast(pl.Int64)
    swapped = n.str.slice(0, pos - 1) + n.str.slice(pos, 1) + n.str.slice(pos - 1, 1) + n.str.slice(pos + 1)
    damaged = (
        pl.when((pl.col("kind") == 0) & n.str.contains(" ")).then(n.str.replace(" ", "", literal=True))
        .when(pl.col("kind") == 1).then(n.str.slice(0, middle) + pl.lit(" ") + n.str.slice(middle))
        .when((pl.col("kind") == 2) | (confused == n)).then(swapped)
        .otherwise(confused)
    )
    return frame.select(pl.when(damaged == n).then(n.str.slice(0, middle) + pl.lit(" ") + n.str.slice(middle))
                        .otherwise(damaged)).to_series()


def add_titles(rng, names: pl.Series, female: np.ndarray) -> pl.Series:
    """Haji/academic titles some registrars add: H. / HJ., DRS. / DRA., S.PD, S.AG."""
    kind = rng.integers(0, 5, len(names))
    for_men = np.array(["H. ", "DRS. ", "", "", ""])
    for_women = np.array(["HJ. ", "DRA. ", "", "", ""])
    suffixes = np.array(["", "", " S.PD", ", S.PD.", " S.AG"])
    frame = pl.DataFrame({"n": names, "pre": np.where(female, for_women[kind], for_men[kind]), "suf": suffixes[kind]})
    return frame.select(pl.col("pre") + pl.col("n") + pl.col("suf")).to_series()


def toggle_patronymics(rng, names: pl.Series, female: np.ndarray) -> pl.Series:
    """Drop 'BIN/BINTI <father>' where present, add one where absent."""
    father = pl.select(pl.concat_str([draw_from_pool(rng, "ms_m_first", len(names)),
                                      draw_from_pool(rng, "ms_m_last", len(names))], separator=" ")).to_series()
    frame = pl.DataFrame({"n": names, "father": father, "link": np.where(female, " BINTI ", " BIN ")})
    n = pl.col("n")
    return frame.select(pl.when(n.str.contains(" BIN(TI)? ")).then(without_patronymic(n))
                        .otherwise(n + pl.col("link") + pl.col("father"))).to_series()


def vary_names(rng, names: pl.Series, female: np.ndarray, adult: np.ndarray,
               kinds=(0.15, 0.30, 0.20, 0.10, 0.10, 0.10, 0.05)) -> pl.Series:
    """How a second registration spells the same person's name."""
    k = len(names)
    kind = rng.choice(7, size=k, p=list(kinds))
    spelled, has_variant = respell_names(rng, names)
    frame = pl.DataFrame({
        "n": names, "kind": kind, "has_variant": has_variant, "adult": adult,
        "spelled": spelled, "typo": typo_names(rng, names), "titled": add_titles(rng, names, female),
        "bin": toggle_patronymics(rng, names, female), "spelled_typo": typo_names(rng, spelled),
    })
    kind_col = pl.col("kind")
    return frame.select(
        pl.when(kind_col == 0).then(pl.col("n"))
        .when((kind_col == 1) & pl.col("has_variant")).then(pl.col("spelled"))
        .when((kind_col == 3) & pl.col("adult")).then(pl.col("titled"))
        .when(kind_col == 4).then(pl.col("bin"))
        .when((kind_col == 5) & pl.col("n").str.contains(" ") & ~pl.col("n").str.contains(" BIN"))
        .then(pl.col("n").str.replace(r"^(\S+) (\S+)", "$2 $1"))
        .when((kind_col == 6) & pl.col("has_variant")).then(pl.col("spelled_typo"))
        .otherwise(pl.col("typo"))  # also the fallback when the chosen variation does not apply
    ).to_series()


def vary_birth_dates(rng, days: np.ndarray, kinds=(0.8, 0.1, 0.1)) -> np.ndarray:
    """Day and month swapped (10%) or the year off by one (10%); otherwise the same date."""
    year, month, day = ymd_from_days(days)
    kind = rng.choice(3, size=len(days), p=list(kinds))
    swap = (kind == 1) & (day <= 12) & (day != month)
    shift_year = (kind == 2) & ~((month == 2) & (day == 29))
    new_year = np.where(shift_year, year + rng.choice([-1, 1], size=len(days)), year)
    new_year = np.where(days_from_ymd(new_year, month, day) > REFERENCE_DAY, year - 1, new_year)
    return np.where(swap, days_from_ymd(year, day, month), days_from_ymd(new_year, month, day))


@dataclass(frozen=True)
class DuplicateRows:
    """Extra DTKS rows for people listed more than once."""

    pid: np.ndarray
    kk_kind: np.ndarray  # 0 the household's KK, 1 a newer KK (new family after marriage), 2 blank, 3 the KK after moving
    alt_kk_kec: np.ndarray  # kecamatan of the newer KKs
    reregistered: np.ndarray  # the row was written at the new address after the household moved


def plan_duplicate_rows(rng, regions: Regions, pop: Population, plan: Plan, mix: Mix) -> DuplicateRows:
    pid = np.repeat(np.arange(pop.size), plan.extra_rows)
    reregistered = plan.reregistered[pid]
    kk_kind = rng.choice(3, size=len(pid), p=list(mix.duplicate_kk_kinds))
    kk_kind = np.where(reregistered, 3, kk_kind)
    alt_kk_kec = regions.desa[pop.hh_cur_desa[pop.hh[pid[kk_kind == 1]]]] // 10**4
    return DuplicateRows(pid=pid, kk_kind=kk_kind, alt_kk_kec=alt_kk_kec, reregistered=reregistered)


# --------------------------------------------------------------------------------------- DTKS


def write_sex(rng, female: np.ndarray) -> pl.Series:
    """Mostly L/P, some 1/2, some LAKI-LAKI/PEREMPUAN."""
    style = rng.choice(3, size=len(female), p=[0.85, 0.10, 0.05])
    return pl.Series(["L", "P", "1", "2", "LAKI-LAKI", "PEREMPUAN"]).gather(style * 2 + female.astype(np.int64))


def write_dates(rng, days: np.ndarray) -> pl.Series:
    """Mostly YYYY-MM-DD, some DD-MM-YYYY and DD/MM/YYYY."""
    style = rng.choice(3, size=len(days), p=[0.85, 0.08, 0.07])
    frame = pl.DataFrame({"iso": date_strings(days), "dash": date_strings(days, "%d-%m-%Y"),
                          "slash": date_strings(days, "%d/%m/%Y"), "style": style})
    return frame.select(pl.when(pl.col("style") == 0).then(pl.col("iso"))
                        .when(pl.col("style") == 1).then(pl.col("dash")).otherwise(pl.col("slash"))).to_series()


def write_region_codes(rng, codes: np.ndarray) -> pl.Series:
    """Mostly 3201012001, some 32.01.01.2001 as printed in Kemendagri lists."""
    frame = pl.DataFrame({"c": pl.Series(codes).cast(pl.String), "dotted": rng.random(len(codes)) < 0.10})
    c = pl.col("c")
    dotted = pl.concat_str([c.str.slice(0, 2), c.str.slice(2, 2), c.str.slice(4, 2), c.str.slice(6, 4)], separator=".")
    return frame.select(pl.when(pl.col("dotted")).then(dotted).otherwise(c)).to_series()


def decorate_niks(rng, niks: pl.Series) -> pl.Series:
    """A leading apostrophe (Excel text marker) or stray spaces on some well-formed NIKs."""
    u = rng.random(len(niks))
    frame = pl.DataFrame({"n": niks, "u": u})
    n = pl.col("n")
    digits16 = n.str.contains(r"^[0-9]{16}$").fill_null(False)
    return frame.select(
        pl.when(digits16 & (pl.col("u") < 0.02)).then(pl.lit("'") + n)
        .when(digits16 & (pl.col("u") < 0.025)).then(pl.lit(" ") + n + pl.lit(" "))
        .when(digits16 & (pl.col("u") < 0.03)).then(n + pl.lit("  "))
        .otherwise(n)
    ).to_series()


def break_quarantine_rows(rng, frame: pl.DataFrame, rows: np.ndarray, years: np.ndarray) -> pl.DataFrame:
    """Rows ingest must quarantine: unparseable birth date, empty name, or unknown sex (equal shares)."""
    kind = rng.permutation(np.arange(len(rows)) % 3)
    bad_date_rows = rows[kind == 0]
    y = years[kind == 0].astype(str)
    bad_dates = np.select(
        [np.arange(len(y)) % 4 == i for i in range(3)],
        [np.char.add("31-02-", y), np.char.add(y, "-13-45"), np.full(len(y), "TIDAK TAHU")], "00-00-0000")
    unknown_sex_rows = rows[kind == 2]
    unknown_sex = np.where(np.arange(len(unknown_sex_rows)) % 2 == 0, "X", "-")
    return frame.with_columns(
        frame["tanggal_lahir"].clone().scatter(bad_date_rows, pl.Series(bad_dates, dtype=pl.String)),
        frame["nama"].clone().scatter(rows[kind == 1], None),
        frame["jenis_kelamin"].clone().scatter(unknown_sex_rows, pl.Series(unknown_sex, dtype=pl.String)),
    )


def build_dtks(rng, regions: Regions, pop: Population, plan: Plan, dups: DuplicateRows,
               alt_kk: np.ndarray, mix: Mix) -> pl.DataFrame:
    """n DTKS rows in random order, with the internal columns pid, is_extra and quarantine."""
    primary = np.flatnonzero(pop.hh_in_dtks[pop.hh])
    pid = np.r_[primary, dups.pid]
    extra = np.arange(len(primary), len(pid))
    category = np.r_[plan.category[primary], np.full(len(dups.pid), -1, np.int8)]
    hh = pop.hh[pid]

    def rows_with(cat: int) -> np.ndarray:
        return np.flatnonzero(category == cat)

    nik = pl.Series(pop.nik[pid]).cast(pl.String)
    r = rows_with(INVALID_FORMAT)
    nik.scatter(r, damage_niks(rng, pop.nik[pid[r]]))
    r = rows_with(INVALID_REGION)
    nik.scatter(r, pl.Series(invalid_region_niks(rng, regions, pop.nik[pid[r]])).cast(pl.String))
    r = rows_with(INVALID_DATE)
    nik.scatter(r, pl.Series(invalid_date_niks(rng, pop.nik[pid[r]], pop.female[pid[r]])).cast(pl.String))
    r = rows_with(IDENTITY)
    nik.scatter(r, pl.Series(pop.nik[plan.victim_of[pid[r]]]).cast(pl.String))
    r = rows_with(SHARED_RECEIVER)
    nik.scatter(r, pl.Series(pop.nik[plan.shared_owner_of[pid[r]]]).cast(pl.String))
    r = rows_with(NIK_TYPO)
    if len(r):  # one digit mistyped or two swapped, never landing on someone else's NIK
        nik.scatter(r, duplicate_niks(rng, pop.nik[pid[r]], np.sort(pop.nik), kinds=(0.0, 0.5, 0.5, 0.0)))
    nik.scatter(extra, duplicate_niks(rng, pop.nik[dups.pid], np.sort(pop.nik), mix.duplicate_nik_kinds))

    names = pop.name.gather(pid)
    names.scatter(extra, vary_names(rng, pop.name.gather(dups.pid), pop.female[dups.pid], pop.role[dups.pid] < 2,
                                    mix.name_variation_kinds))
    ocr = np.zeros(len(pid), bool)
    if mix.ocr_name_share:
        ocr = (rng.random(len(pid)) < mix.ocr_name_share) & (category != QUARANTINE)
        names.scatter(np.flatnonzero(ocr), ocr_damage(rng, names.gather(np.flatnonzero(ocr))))
    days = pop.dob[pid].copy()
    days[extra] = vary_birth_dates(rng, days[extra], mix.birth_date_variation_kinds)
    written_female = pop.female[pid].copy()
    written_female[rows_with(SEX_MISMATCH)] ^= True

    no_kk = pl.Series(pop.hh_kk[hh]).cast(pl.String)
    no_kk.scatter(extra[dups.kk_kind == 1], pl.Series(alt_kk).cast(pl.String))
    no_kk.scatter(extra[dups.kk_kind == 2], None)
    alamat = pop.hh_alamat.gather(hh)
    restyled = extra[rng.random(len(extra)) < 0.4]
    alamat.scatter(restyled, vary_addresses(rng, alamat.gather(restyled)))
    desa_code = pop.hh_dtks_desa_code[hh].copy()
    moved_rows = extra[dups.reregistered]
    if len(moved_rows):  # written where the household lives now, with the KK issued there
        no_kk.scatter(moved_rows, pl.Series(pop.hh_kk_cur[hh[moved_rows]]).cast(pl.String))
        alamat.scatter(moved_rows, pop.hh_alamat_cur.gather(hh[moved_rows]))
        desa_code[moved_rows] = regions.desa[pop.hh_cur_desa[hh[moved_rows]]]
    program = pop.hh_program[hh].copy()
    program[extra] = rng.choice(len(PROGRAMS), size=len(extra), p=PROGRAM_WEIGHTS)

    frame = pl.DataFrame({
        "nik": decorate_niks(rng, nik),
        "no_kk": no_kk,
        "nama": names,
        "jenis_kelamin": write_sex(rng, written_female),
        "tempat_lahir": pop.tempat_lahir.gather(pid),
        "tanggal_lahir": write_dates(rng, days),
        "alamat": alamat,
        "kode_wilayah": write_region_codes(rng, desa_code),
        "program": pl.Series(PROGRAMS).gather(program),
        "pid": pid,
        "is_extra": np.arange(len(pid)) >= len(primary),
        "reregistered": np.r_[np.zeros(len(primary), bool), dups.reregistered],
        "ocr_name": ocr,
        "quarantine": category == QUARANTINE,
    })
    quarantine = rows_with(QUARANTINE)
    frame = break_quarantine_rows(rng, frame, quarantine, ymd_from_days(days[quarantine])[0])

    # Row order and ids carry no information about the person or the scenario.
    frame = frame[rng.permutation(len(frame))]
    width = max(8, len(str(len(frame))))
    ids = pl.Series(np.arange(1, len(frame) + 1)).cast(pl.String).str.zfill(width)
    return frame.with_columns(id_dtks=pl.lit("DTKS") + ids).select("id_dtks", pl.exclude("id_dtks"))


# ------------------------------------------------------------------------------------------ truth

SCENARIO_PRECEDENCE = (
    "quarantine_bad_row", "invalid_format", "invalid_region", "invalid_date", "identity_mismatch", "shared_nik",
    "missing_from_dukcapil", "sex_mismatch", "dukcapil_nik_collision", "nik_typo", "reregistered", "duplicate_variant",
    "duplicate_original", "twin", "sibling_close", "father_son_same_name", "common_name", "ocr_name", "dob_corrected",
    "deceased", "moved", "moved_within_kab", "papua_retired", "papua_retired_nik", "common_name_natural",
)


def scenario_labels(regions: Regions, pop: Population, plan: Plan, dtks: pl.DataFrame) -> pl.Series:
    """One short label per DTKS row: the first scenario in SCENARIO_PRECEDENCE that applies, else 'clean'."""
    pid, is_extra = dtks["pid"].to_numpy(), dtks["is_extra"].to_numpy()
    category = np.where(is_extra, -1, plan.category[pid])
    hh = pop.hh[pid]
    applies = {
        "quarantine_bad_row": category == QUARANTINE,
        "invalid_format": category == INVALID_FORMAT,
        "invalid_region": category == INVALID_REGION,
        "invalid_date": category == INVALID_DATE,
        "identity_mismatch": category == IDENTITY,
        "shared_nik": (category == SHARED_RECEIVER) | (category == SHARED_OWNER),
        "missing_from_dukcapil": category == MISSING,
        "sex_mismatch": category == SEX_MISMATCH,
        "dukcapil_nik_collision": category == NIK_COLLISION,
        "nik_typo": category == NIK_TYPO,
        "reregistered": dtks["reregistered"].to_numpy(),
        "duplicate_variant": is_extra,
        "duplicate_original": category == DUPLICATED,
        "twin": pop.twin[pid],
        "sibling_close": pop.sibling_close[pid],
        "father_son_same_name": pop.father_son[pid],
        "common_name": plan.common_pair[pid],
        "ocr_name": dtks["ocr_name"].to_numpy(),
        "dob_corrected": plan.dob_corrected[pid],
        "deceased": pop.dead_day[pid] >= 0,
        "moved": pop.hh_move[hh] == 1,
        "moved_within_kab": pop.hh_move[hh] == 2,
        "papua_retired": pop.hh_dtks_desa_code[hh] != regions.desa[pop.hh_desa[hh]],
        "papua_retired_nik": pop.reg_kec[pid] == regions.kec_retired_alias[pop.hh_desa[hh]],
        "common_name_natural": pop.name.gather(pid).is_in(list(VERY_COMMON_NAMES)).to_numpy(),
    }
    code = np.select([applies[label] for label in SCENARIO_PRECEDENCE], np.arange(len(SCENARIO_PRECEDENCE)),
                     default=len(SCENARIO_PRECEDENCE))
    labels = [label.replace("common_name_natural", "common_name") for label in SCENARIO_PRECEDENCE] + ["clean"]
    return pl.Series(labels).gather(code)


def person_ids(pid: np.ndarray) -> pl.Series:
    return pl.lit("P") + pl.Series(pid).cast(pl.String).str.zfill(9)


def build_truth_rows(regions: Regions, pop: Population, plan: Plan, dtks: pl.DataFrame) -> pl.DataFrame:
    pid = dtks["pid"].to_numpy()
    deceased = (pop.dead_day[pid] >= 0) & (plan.category[pid] != MISSING)
    return pl.DataFrame({
        "id_dtks": dtks["id_dtks"],
        "person_id": pl.select(person_ids(pid)).to_series(),
        "true_nik": pl.Series(pop.nik[pid]).cast(pl.String),
        "scenario": scenario_labels(regions, pop, plan, dtks),
        "true_deceased": pl.Series(np.where(deceased, "1", "0")),
        "expect_quarantine": pl.Series(np.where(dtks["quarantine"].to_numpy(), "1", "0")),
        "household_id": pl.select(pl.lit("H") + pl.Series(pop.hh[pid]).cast(pl.String).str.zfill(9)).to_series(),
        # Look-alike relatives, whatever scenario label the row carries: the hard negatives.
        "relation": pl.select(pl.concat_str(
            [pl.when(pl.Series(flags[pid])).then(pl.lit(name)) for name, flags in
             (("twin", pop.twin), ("father_son", pop.father_son), ("sibling_close", pop.sibling_close))],
            separator=",", ignore_nulls=True)).to_series(),
    })


def parse_written_dates(col: pl.Expr) -> pl.Expr:
    """The three DTKS date formats; anything else is null (quarantine)."""
    return (pl.when(col.str.contains(r"^\d{4}-\d{2}-\d{2}$")).then(col.str.strptime(pl.Date, "%Y-%m-%d", strict=False))
            .when(col.str.contains(r"^\d{2}-\d{2}-\d{4}$")).then(col.str.strptime(pl.Date, "%d-%m-%Y", strict=False))
            .when(col.str.contains(r"^\d{2}/\d{2}/\d{4}$")).then(col.str.strptime(pl.Date, "%d/%m/%Y", strict=False)))


SEX_CODES = {"L": "L", "1": "L", "LAKI-LAKI": "L", "P": "P", "2": "P", "PEREMPUAN": "P"}


def compute_truth_anomalies(regions: Regions, dtks: pl.DataFrame, dukcapil: pl.DataFrame,
                            true_name: pl.Series, true_nik: np.ndarray) -> pl.DataFrame:
    """The anomaly codes a correct pipeline must emit per DTKS row, computed from the written values.

    NIK means the nik text without surrounding whitespace and one leading apostrophe. Quarantined rows get
    no codes and take no part in NIK_SHARED or DUPLICATE_PERSON.
    - NIK_INVALID_FORMAT: not exactly 16 ASCII digits, or serial (last 4) 0000. Every other NIK check
      needs a well-formed NIK.
    - NIK_INVALID_REGION: first 6 digits neither a current kecamatan nor a retired level-3 code.
    - NIK_INVALID_DATE: DD 00, 32-40 or above 71, month not 01-12, or (DD - 40 for women) not a day of that
      month; 29 February is fine when YY % 4 == 0 (19YY or 20YY can be a leap year).
    - NIK_SEX_MISMATCH / NIK_DOB_MISMATCH (valid date): jenis_kelamin is not the NIK's sex (DD > 40 = woman);
      tanggal_lahir's day, month or 2-digit year differs from the NIK's.
    - NIK_NOT_FOUND: format, region and date valid, and no Dukcapil row has the NIK.
    - IDENTITY_MISMATCH: format, region and date valid, found, and every Dukcapil row with the NIK is another
      person with another name.
    - DECEASED / RELOCATED: the NIK is the person's true NIK and the person's own Dukcapil row is dead / lies in
      another kabupaten than the DTKS kode_wilayah (retired kabupaten codes mapped to their successors).
    - NIK_SHARED: a well-formed NIK on the rows of two or more different people.
    - DUPLICATE_PERSON: the person has more than one row.
    """
    nik = pl.col("nik").str.strip_chars().str.strip_prefix("'")
    rows = (dtks.filter(~pl.col("quarantine"))
            .select("id_dtks", "pid", "jenis_kelamin", "tanggal_lahir", "kode_wilayah", nik=nik))
    pid = rows["pid"].to_numpy()
    rows = rows.with_columns(true_nik=pl.Series(true_nik[pid]).cast(pl.String), true_name=true_name.gather(pid))

    n = pl.col("nik")
    well_formed = (n.str.contains(r"^[0-9]{16}$") & ~n.str.ends_with("0000")).fill_null(False)
    part = lambda start: pl.when(well_formed).then(n.str.slice(start, 2).cast(pl.Int64))  # noqa: E731
    rows = rows.with_columns(well_formed=well_formed,
                             prefix=pl.when(well_formed).then(n.str.slice(0, 6).cast(pl.Int64)),
                             dd=part(6), mm=part(8), yy=part(10))
    day = pl.when(pl.col("dd") > 40).then(pl.col("dd") - 40).otherwise(pl.col("dd"))
    days_in_month = (pl.when(pl.col("mm") == 2).then(pl.when(pl.col("yy") % 4 == 0).then(29).otherwise(28))
                     .when(pl.col("mm").is_in([4, 6, 9, 11])).then(30).otherwise(31))
    date_ok = (pl.col("well_formed") & (pl.col("dd") >= 1) & ~pl.col("dd").is_between(32, 40) & (pl.col("dd") <= 71)
               & pl.col("mm").is_between(1, 12) & (day <= days_in_month)).fill_null(False)
    born = parse_written_dates(pl.col("tanggal_lahir"))
    rows = rows.with_columns(
        region_ok=pl.col("prefix").is_in(pl.Series(regions.valid_nik_prefix).implode()).fill_null(False),
        date_ok=date_ok,
        nik_sex=pl.when(pl.col("dd") > 40).then(pl.lit("P")).otherwise(pl.lit("L")),
        sex=pl.col("jenis_kelamin").replace_strict(SEX_CODES, default=None),
        dob_differs=(born.dt.day() != day) | (born.dt.month() != pl.col("mm")) | (born.dt.year() % 100 != pl.col("yy")),
        dtks_kab=pl.col("kode_wilayah").str.replace_all(".", "", literal=True).str.slice(0, 4).cast(pl.Int64)
        .replace(regions.retired_kab_successor),
    )

    # What Dukcapil holds under each DTKS NIK.
    registry = dukcapil.select(
        "nik", dk_pid="pid", dk_nama="nama", dk_dead=pl.col("tanggal_meninggal").is_not_null(),
        dk_kab=pl.col("kode_wilayah").str.slice(0, 4).cast(pl.Int64))
    found = (rows.select("id_dtks", "nik", "pid", "true_name").join(registry, on="nik", how="inner")
             .group_by("id_dtks").agg(
                 found=pl.lit(True),
                 all_strangers=((pl.col("dk_pid") != pl.col("pid")) & (pl.col("dk_nama") != pl.col("true_name"))).all(),
                 own=(pl.col("dk_pid") == pl.col("pid")).any(),
                 own_dead=((pl.col("dk_pid") == pl.col("pid")) & pl.col("dk_dead")).any(),
                 own_kab=pl.col("dk_kab").filter(pl.col("dk_pid") == pl.col("pid")).first()))
    rows = rows.join(found, on="id_dtks", how="left", maintain_order="left").with_columns(
        pl.col("found", "all_strangers", "own", "own_dead").fill_null(False))

    checks_ok = pl.col("well_formed") & pl.col("region_ok") & pl.col("date_ok")
    valid_date = pl.col("well_formed") & pl.col("date_ok")
    true_nik_used = pl.col("nik") == pl.col("true_nik")
    rules = {
        CODE.NIK_INVALID_FORMAT: ~pl.col("well_formed"),
        CODE.NIK_INVALID_REGION: pl.col("well_formed") & ~pl.col("region_ok"),
        CODE.NIK_INVALID_DATE: pl.col("well_formed") & ~pl.col("date_ok"),
        CODE.NIK_SEX_MISMATCH: valid_date & (pl.col("sex") != pl.col("nik_sex")),
        CODE.NIK_DOB_MISMATCH: valid_date & pl.col("dob_differs"),
        CODE.NIK_NOT_FOUND: checks_ok & ~pl.col("found"),
        CODE.IDENTITY_MISMATCH: checks_ok & pl.col("found") & pl.col("all_strangers"),
        CODE.DECEASED: true_nik_used & pl.col("own") & pl.col("own_dead"),
        CODE.RELOCATED: true_nik_used & pl.col("own") & (pl.col("own_kab") != pl.col("dtks_kab")),
        CODE.NIK_SHARED: pl.col("well_formed") & (pl.col("pid").n_unique().over("nik") > 1),
        CODE.DUPLICATE_PERSON: pl.len().over("pid") > 1,
    }
    assert set(rules) == set(ANOMALY_CODES)
    flags = rows.select("id_dtks", *[rule.fill_null(False).alias(code) for code, rule in rules.items()])
    return (flags.unpivot(index="id_dtks", variable_name="anomaly_code", value_name="hit")
            .filter(pl.col("hit"))
            .with_columns(order=pl.col("anomaly_code").replace_strict(ANOMALY_CODES, list(range(len(ANOMALY_CODES)))))
            .sort("id_dtks", "order").select("id_dtks", "anomaly_code"))


# ------------------------------------------------------------------------------------------ entry

DTKS_COLUMNS = ("id_dtks", "nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir", "alamat",
                "kode_wilayah", "program", "desil", "hubungan_keluarga")
DUKCAPIL_COLUMNS = ("nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir", "alamat",
                    "kode_wilayah", "tanggal_meninggal", "hubungan_keluarga")


def build_world(n: int, seed: int, regions: Regions | None = None, mix: Mix = MIXES["standard"], extent: str = "national"):
    """All generation steps, in order; returns (regions, population, plan, dtks, dukcapil) with internal columns."""
    rng = np.random.default_rng(seed)
    regions = regions or load_regions()
    if extent == "regional":
        regions = regional_extract(regions, round(DUKCAPIL_PER_DTKS_ROW * n), seed)
    n_victims = share_count(mix.row_scenario_shares["identity_mismatch"], n, n)
    pop = make_households(rng, regions, round(DUKCAPIL_PER_DTKS_ROW * n), n_victims)
    set_placeholder_birthdays(rng, pop)
    make_twins(rng, pop, mix)
    make_close_siblings(rng, pop, mix)
    assign_registration_kecamatan(rng, regions, pop)
    name_population(rng, pop)
    make_father_son_same_name(rng, pop, mix)
    make_twin_names_differ(rng, pop)
    make_similar_names(rng, pop, mix)
    mark_deaths(rng, pop, mix)
    move_households(rng, regions, pop)
    select_dtks_households(rng, pop, target_people=int(n / (1 + DUPLICATE_EXTRA_ROWS)))
    choose_dtks_region_codes(rng, regions, pop)
    plan = plan_scenarios(rng, pop, n, mix)
    prepare_identity_victims(rng, regions, pop, plan)
    assign_birth_places(rng, regions, pop)
    assign_niks(pop, plan)
    dups = plan_duplicate_rows(rng, regions, pop, plan, mix)
    alt_kk = assign_kk_numbers(rng, regions, pop, dups.alt_kk_kec)
    dukcapil = build_dukcapil(rng, regions, pop, plan)
    dtks = build_dtks(rng, regions, pop, plan, dups, alt_kk, mix)
    return regions, pop, plan, dtks, dukcapil


def generate_sample(n: int, seed: int, out_dir: Path, fmt: str = "csv", mix: str = "standard", extent: str = "national") -> dict:
    """Write dtks, dukcapil, truth_rows and truth_anomalies (CSV or Parquet, all text) into out_dir.

    Returns the file paths and counts. Same n and seed -> byte-identical files.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if n < 1000:
        raise ValueError("n must be at least 1000 so that every scenario can be represented")
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {', '.join(MIXES)}, not {mix!r}")
    if extent not in EXTENTS:
        raise ValueError(f"extent must be one of {', '.join(EXTENTS)}, not {extent!r}")
    from pipeline.sample_eligibility import ELIGIBILITY_CODES, add_eligibility

    regions, pop, plan, dtks, dukcapil = build_world(n, seed, mix=MIXES[mix], extent=extent)
    dtks, dukcapil, ineligible, eligibility_truth = add_eligibility(
        seed, regions, pop, plan, dtks, dukcapil,
        nik_typos=lambda rng, niks, real: duplicate_niks(rng, niks, real, kinds=(0.0, 0.5, 0.5, 0.0)))
    truth_rows = build_truth_rows(regions, pop, plan, dtks)
    codes = ANOMALY_CODES + ELIGIBILITY_CODES
    truth_anomalies = (
        pl.concat([compute_truth_anomalies(regions, dtks, dukcapil, pop.name, pop.nik), eligibility_truth])
        .with_columns(order=pl.col("anomaly_code").replace_strict(codes, list(range(len(codes)))))
        .sort("id_dtks", "order").select("id_dtks", "anomaly_code")
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "dtks": dtks.select(DTKS_COLUMNS),
        "dukcapil": dukcapil.select(DUKCAPIL_COLUMNS),
        "ineligible": ineligible,
        "truth_rows": truth_rows,
        "truth_anomalies": truth_anomalies,
    }
    paths = {}
    for name, table in tables.items():
        path = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            table.write_csv(path)
        else:
            table.write_parquet(path, statistics=False)
        paths[name] = path
    return {
        **paths,
        "format": fmt,
        "seed": seed,
        "mix": mix,
        "n_dtks": dtks.height,
        "n_dukcapil": dukcapil.height,
        "n_people": int(pop.size),
        "n_households": int(len(pop.hh_size)),
        "n_truth_anomalies": truth_anomalies.height,
        "scenario_counts": dict(truth_rows["scenario"].value_counts().sort("scenario").iter_rows()),
        "anomaly_counts": dict(truth_anomalies["anomaly_code"].value_counts().sort("anomaly_code").iter_rows()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="DTKS rows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--mix", choices=tuple(MIXES), default="standard")
    parser.add_argument("--extent", choices=EXTENTS, default="national")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = generate_sample(args.n, args.seed, args.out, args.format, args.mix, extent=args.extent)
    print(f"wrote {result['n_dtks']} DTKS rows, {result['n_dukcapil']} Dukcapil rows to {args.out} "
          f"in {time.perf_counter() - started:.1f}s")
    for label, count in sorted(result["scenario_counts"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:24s} {count}")


if __name__ == "__main__":
    main()
