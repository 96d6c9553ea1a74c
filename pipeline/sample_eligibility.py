"""Generator scenarios for the eligibility codes (pipeline/findings/): an ineligibility
list, desil and programs per household, the household's relation column, and members who
now stand on another KK in Dukcapil; with the truth a correct pipeline must find.

Drawn from their own random stream (seed, 10) after the rest of the world is built, so
the civil-registry scenarios of pipeline/sample.py stay as they were. The truth is
computed from the world (who is on a list, who is dead, which KK Dukcapil holds), not
from the pipeline's rules; only the declared desil ranges and head values are read.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.contract import CODE, eligibility_rules

# Codes whose truth this module labels, in catalogue order.
ELIGIBILITY_CODES = (
    CODE.NOT_ELIGIBLE, CODE.DESIL_NOT_ELIGIBLE, CODE.KK_NOT_FOUND, CODE.HOUSEHOLD_HEAD_DECEASED, CODE.HOUSEHOLD_SPLIT,
    CODE.HOUSEHOLD_ALL_GONE,
)
LISTED_SHARE = 0.006  # of DTKS people: on an ineligibility list
OUTSIDERS_PER_LISTED = 3  # list rows for people not in DTKS (most civil servants are not poor)
LIST_NIK_DAMAGED_SHARE = 0.12  # list rows whose NIK is mistyped (one digit, or two swapped)
LIST_DOB_SHARE = 0.7  # list rows that carry a birth date
LIST_TITLE_SHARE = 0.2  # names written with a title or degree
WRONG_NAME_ROWS_SHARE = 0.001  # of DTKS people: a list row carries their NIK with another person's name
LIST_TYPES = {"ASN": ("PNS", 0.3), "TNI": ("TNI", 0.1), "POLRI": ("POLISI", 0.1), "PENSIUNAN": ("PENSIUNAN", 0.2),
              "BPJSTK_DI_ATAS_UMP": ("BPJS TK DI ATAS UMP", 0.2), "PENGURUS_BADAN_USAHA": ("AHU", 0.1)}
DESIL_OUTSIDE_SHARE = 0.02  # of households: a desil outside a program they receive
DESIL_MISSING_SHARE = 0.05  # of DTKS rows: no desil
SPLIT_SHARE = 0.01  # of DTKS households with two or more members: one member on a new KK in Dukcapil
# How extracts spell each program (pipeline/rules/eligibility.toml aliases), and one undeclared program.
PROGRAM_SPELLINGS = {"PKH": ("PKH", "Program Keluarga Harapan"), "SEMBAKO": ("BPNT", "SEMBAKO", "Kartu Sembako"),
                     "PBI_JK": ("PBI-JK", "PBI JKN", "KIS")}
UNDECLARED_PROGRAM = "BLT-DD"
RELATION_SPELLINGS = {0: ("KEPALA KELUARGA", "1", "Kepala Rumah Tangga"), 1: ("ISTRI", "2", "SUAMI"), 2: ("ANAK", "3", "ANAK")}


def spelled(rng, choices: tuple[str, ...], size: int) -> pl.Series:
    return pl.Series(list(choices), dtype=pl.String).gather(rng.integers(0, len(choices), size))


def where(mask: np.ndarray, values: pl.Series, other: pl.Series | None = None) -> pl.Series:
    other = other if other is not None else pl.Series([None] * len(mask), dtype=pl.String)
    return pl.select(pl.when(pl.Series(mask)).then(values).otherwise(other)).to_series()


def write_relations(rng, role: np.ndarray) -> pl.Series:
    """hubungan_keluarga as extracts write it: words or SHDK numbers."""
    out = pl.Series([None] * len(role), dtype=pl.String)
    for value, choices in RELATION_SPELLINGS.items():
        out = where(role == value, spelled(rng, choices, len(role)), out)
    return out


def draw_programs(rng, n_hh: int) -> tuple[np.ndarray, np.ndarray]:
    """Per household: which declared programs it receives (bool matrix, PROGRAM_SPELLINGS
    order) and whether it also receives the undeclared one."""
    names = list(PROGRAM_SPELLINGS)
    first = rng.integers(0, len(names), n_hh)
    held = np.zeros((n_hh, len(names)), bool)
    held[np.arange(n_hh), first] = True
    second = rng.random(n_hh) < 0.25
    held[np.flatnonzero(second), rng.integers(0, len(names), int(second.sum()))] = True
    return held, rng.random(n_hh) < 0.03


def draw_desil(rng, held: np.ndarray) -> np.ndarray:
    """A desil each household's programs allow; for a few, one above a program's range."""
    ranges = eligibility_rules()["programs"]
    high = np.array([ranges[name]["desil"][1] for name in PROGRAM_SPELLINGS])
    allowed = np.where(held, high, 10).min(axis=1)
    inside = 1 + np.floor(rng.random(len(held)) * allowed).astype(np.int64)
    above = allowed + 1 + np.floor(rng.random(len(held)) * (10 - allowed)).astype(np.int64)
    chosen = (rng.random(len(held)) < DESIL_OUTSIDE_SHARE) & (allowed < 10)
    return np.where(chosen, above, inside)


def program_cells(rng, held: np.ndarray, undeclared: np.ndarray) -> pl.Series:
    parts = []
    for j, name in enumerate(PROGRAM_SPELLINGS):
        parts.append(where(held[:, j], spelled(rng, PROGRAM_SPELLINGS[name], len(held))))
    parts.append(where(undeclared, spelled(rng, (UNDECLARED_PROGRAM,), len(held))))
    separator = (", ", "+", "; ")[int(rng.integers(0, 3))]
    return pl.select(pl.concat_str(parts, separator=separator, ignore_nulls=True)).to_series()


def add_eligibility(seed: int, regions, pop, plan, dtks: pl.DataFrame, dukcapil: pl.DataFrame,
                    nik_typos) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """DTKS with desil, hubungan_keluarga and rewritten programs; Dukcapil with split KKs and
    hubungan_keluarga; the ineligibility list; the truth (id_dtks, anomaly_code) of the
    eligibility codes. `nik_typos(rng, niks, real_niks_sorted)` damages list NIKs."""
    rng = np.random.default_rng([seed, 10])
    pid = dtks["pid"].to_numpy()
    hh = pop.hh[pid]
    n_hh = len(pop.hh_size)

    # Programs and desil per household; an extra (duplicate) row keeps its household's.
    held, undeclared = draw_programs(rng, n_hh)
    desil = draw_desil(rng, held)
    desil_text = pl.Series(desil[hh]).cast(pl.String)
    missing_desil = np.flatnonzero(rng.random(len(pid)) < DESIL_MISSING_SHARE)
    desil_text = desil_text.scatter(missing_desil, None)
    dtks = dtks.with_columns(program=program_cells(rng, held[hh], undeclared[hh]), desil=desil_text,
                             hubungan_keluarga=write_relations(rng, pop.role[pid]))

    # Household split: in a few DTKS households one member (not the head) got a KK of their own.
    in_dtks_hh = np.flatnonzero(pop.hh_in_dtks & (pop.hh_size >= 2))
    split_hh = rng.permutation(in_dtks_hh)[: max(1, round(SPLIT_SHARE * len(in_dtks_hh)))]
    leaver = pop.hh_first[split_hh] + 1 + np.floor(rng.random(len(split_hh)) * (pop.hh_size[split_hh] - 1)).astype(np.int64)
    kec = regions.desa[pop.hh_cur_desa[split_hh]] // 10**4
    order = np.lexsort((split_hh, kec))
    serial = np.empty(len(kec), np.int64)
    serial[order] = np.arange(len(kec)) - np.searchsorted(kec[order], kec[order])
    new_kk = kec * 10**10 + 10125 * 10**4 + 9000 + serial % 1000  # issued 01-01-2025, serials 9000+
    dk_pid = dukcapil["pid"].to_numpy()
    position = np.full(pop.size, -1, np.int64)
    position[leaver] = np.arange(len(leaver))
    moved_kk = position[dk_pid] >= 0
    dukcapil = dukcapil.with_columns(
        no_kk=pl.when(pl.Series(moved_kk)).then(pl.Series(new_kk[np.maximum(position[dk_pid], 0)]).cast(pl.String))
        .otherwise(pl.col("no_kk")),
        hubungan_keluarga=write_relations(rng, np.where(moved_kk, 0, pop.role[dk_pid])),
    )

    # The ineligibility list: DTKS people, outsiders, and rows carrying a DTKS person's NIK
    # under another person's name.
    quarantined = dtks["quarantine"].to_numpy()
    dtks_people = np.unique(pid[~quarantined])
    listed = rng.permutation(dtks_people)[: max(6, round(LISTED_SHARE * len(dtks_people)))]
    outside = np.flatnonzero(~pop.hh_in_dtks[pop.hh] & ~pop.hh_victim[pop.hh])
    outsiders = rng.permutation(outside)[: OUTSIDERS_PER_LISTED * len(listed)]
    people = np.r_[listed, outsiders]
    types = list(LIST_TYPES)
    kind = rng.choice(len(types), size=len(people), p=[LIST_TYPES[t][1] for t in types])
    niks = pl.Series(pop.nik[people]).cast(pl.String)
    damaged = np.flatnonzero(rng.random(len(people)) < LIST_NIK_DAMAGED_SHARE)
    niks = niks.scatter(damaged, nik_typos(rng, pop.nik[people[damaged]], np.sort(pop.nik)))
    names = pop.name.gather(people)
    titled = np.flatnonzero(rng.random(len(people)) < LIST_TITLE_SHARE)
    names = names.scatter(titled, spelled(rng, ("DRS. ", "H. ", "IR. ", ""), len(titled)) + names.gather(titled))
    born = pl.Series(pop.dob[people].astype("datetime64[D]")).dt.strftime("%Y-%m-%d")
    born = born.scatter(np.flatnonzero(rng.random(len(people)) >= LIST_DOB_SHARE), None)
    wrong = rng.permutation(np.setdiff1d(dtks_people, listed))[: max(1, round(WRONG_NAME_ROWS_SHARE * len(dtks_people)))]
    strangers = rng.permutation(outside)[: len(wrong)]
    # Another person's name: a stranger who happens to share it would be the same list row.
    differ = (pop.name.gather(strangers) != pop.name.gather(wrong)).to_numpy()
    wrong, strangers = wrong[differ], strangers[differ]
    lists = pl.DataFrame({
        "nik": pl.concat([niks, pl.Series(pop.nik[wrong]).cast(pl.String)]),
        "nama": pl.concat([names, pop.name.gather(strangers)]),
        "tanggal_lahir": pl.concat([born, pl.Series([None] * len(wrong), dtype=pl.String)]),
        "jenis": pl.Series([LIST_TYPES[t][0] for t in types], dtype=pl.String).gather(np.r_[kind, np.zeros(len(wrong), np.int64)]),
        "sumber": pl.Series(["BKN", "TNI", "POLRI", "TASPEN", "BPJS KETENAGAKERJAAN", "AHU"], dtype=pl.String)
        .gather(np.r_[kind, np.zeros(len(wrong), np.int64)]),
        "tanggal": "2025-05-31",
    })
    lists = lists[rng.permutation(lists.height)]

    truth = eligibility_truth(regions, pop, plan, dtks, dukcapil, set(listed.tolist()), held, undeclared, desil)
    return dtks, dukcapil, lists, truth


def eligibility_truth(regions, pop, plan, dtks: pl.DataFrame, dukcapil: pl.DataFrame, listed: set, held: np.ndarray,
                      undeclared: np.ndarray, desil: np.ndarray) -> pl.DataFrame:
    """(id_dtks, anomaly_code) of the eligibility codes, from the world.
    - NOT_ELIGIBLE: every parsed row of a person on a list (under their own NIK or a damaged one).
    - DESIL_NOT_ELIGIBLE: the row has a desil and its household receives a declared program
      whose range the desil is outside of.
    - Household codes, per DTKS household (parsed rows sharing a 16-digit no_kk): KK_NOT_FOUND
      when no Dukcapil row has that KK; HOUSEHOLD_ALL_GONE when every member is dead in Dukcapil
      or lives in another kabupaten than the row says; HOUSEHOLD_HEAD_DECEASED when a row
      written as the head is dead and not all are gone; HOUSEHOLD_SPLIT when the members'
      own Dukcapil records hold two or more KK numbers."""
    from pipeline.sample import MISSING  # the world's category of people missing from Dukcapil

    rules = eligibility_rules()
    parsed = dtks.filter(~pl.col("quarantine"))
    pid = parsed["pid"].to_numpy()
    hh = pop.hh[pid]
    low = np.array([rules["programs"][name]["desil"][0] for name in PROGRAM_SPELLINGS])
    high = np.array([rules["programs"][name]["desil"][1] for name in PROGRAM_SPELLINGS])
    d = desil[hh][:, None]
    outside = (held[hh] & ((d < low) | (d > high))).any(axis=1) & parsed["desil"].is_not_null().to_numpy()

    own = dukcapil.unique("pid", keep="first").select("pid", dk_kk="no_kk", dk_kab=pl.col("kode_wilayah").str.slice(0, 4).cast(pl.Int64))
    heads = {value.strip().upper() for value in rules["household"]["head_values"]}
    rows = parsed.select(
        "id_dtks", "pid", kk="no_kk",
        is_head=pl.col("hubungan_keluarga").str.to_uppercase().is_in(list(heads)).fill_null(False),
        dtks_kab=pl.col("kode_wilayah").str.replace_all(".", "", literal=True).str.slice(0, 4).cast(pl.Int64)
        .replace(regions.retired_kab_successor),
    ).with_columns(
        dead=pl.Series((pop.dead_day[pid] >= 0) & (plan.category[pid] != MISSING)),
        listed=pl.col("pid").is_in(list(listed)),
        desil_out=pl.Series(outside),
    ).join(own, on="pid", how="left")
    rows = rows.with_columns(gone=pl.col("dead") | (pl.col("dk_kab").is_not_null() & (pl.col("dk_kab") != pl.col("dtks_kab"))))
    households = rows.filter(pl.col("kk").str.contains(r"^[0-9]{16}$").fill_null(False)).with_columns(
        kk_not_found=~pl.col("kk").is_in(dukcapil["no_kk"].drop_nulls().implode()),
        all_gone=pl.col("gone").all().over("kk"),
        head_dead=(pl.col("is_head") & pl.col("dead")).any().over("kk"),
        split=pl.col("dk_kk").drop_nulls().n_unique().over("kk") > 1,
    )
    flags = {
        CODE.NOT_ELIGIBLE: rows.filter("listed"),
        CODE.DESIL_NOT_ELIGIBLE: rows.filter("desil_out"),
        CODE.KK_NOT_FOUND: households.filter("kk_not_found"),
        CODE.HOUSEHOLD_HEAD_DECEASED: households.filter(pl.col("head_dead") & ~pl.col("all_gone")),
        CODE.HOUSEHOLD_SPLIT: households.filter("split"),
        CODE.HOUSEHOLD_ALL_GONE: households.filter("all_gone"),
    }
    return pl.concat([frame.select("id_dtks", anomaly_code=pl.lit(code)) for code, frame in flags.items()])
