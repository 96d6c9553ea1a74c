"""Verdicts that hold on a registry the model was not tuned on (issue 8): look-alike
relatives stay apart even when the civil registry cannot help, rows resolved to
different Dukcapil persons are never merged, nothing is excluded on a fuzzy resolution
alone, and the fitted model moves toward the truth."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import polars as pl
import pytest

from conftest import make_nik, run_csv_round
from pipeline.matching.blocking import candidate_pairs
from pipeline.matching.compare import compare_pairs
from pipeline.matching.model import load_model
from pipeline.matching.sql import register_macros
from pipeline.progress import StageClock
from pipeline.round import RoundContext, run_round

KEC, DESA = "320101", "3201011001"


def _kk(serial: int) -> str:
    return f"{KEC}0101150{serial:03d}"


# (id_dtks, written NIK, KK, name, sex, birth date, in Dukcapil as (true NIK, name) or None)
ROWS = [
    # Twins one letter apart, one of them missing from Dukcapil.
    ("T1A", make_nik(KEC, "2001-05-05", True, 1), _kk(1), "RINA AZZAHRA", "P", "2001-05-05", "own"),
    ("T1B", make_nik(KEC, "2001-05-05", True, 2), _kk(1), "RINI AZZAHRA", "P", "2001-05-05", None),
    # Twin sisters, one name damaged by OCR and her NIK transposed on entry.
    ("T2A", make_nik(KEC, "1999-03-07", True, 3), _kk(2), "DEWI FITRIANI", "P", "1999-03-07", "own"),
    ("T2B", "3201014703990040", _kk(2), "EDWIFITRIANA", "P", "1999-03-07", (make_nik(KEC, "1999-03-07", True, 4), "DEWI FITRIANA")),
    # Siblings a year apart with similar names; the younger's NIK in Excel notation.
    ("S1A", make_nik(KEC, "1992-05-24", True, 1), _kk(3), "YUNI MULYANI", "P", "1992-05-24", "own"),
    ("S1B", "3.20101E+15", _kk(3), "YUNIA MULYANI", "P", "1993-05-24", (make_nik(KEC, "1993-05-24", True, 1), "YUNIA MULYANI")),
    # Father and son with one name; the son's NIK is empty.
    ("F1A", make_nik(KEC, "1960-02-02", False, 1), _kk(4), "SUPARMAN", "L", "1960-02-02", "own"),
    ("F1B", "", _kk(4), "SUPARMAN", "L", "1990-06-06", (make_nik(KEC, "1990-06-06", False, 1), "SUPARMAN")),
    # Father and son in one KK, the son's row carrying his father's NIK, his birth year the
    # father's with its digits swapped (58 / 85) and a name close to his father's: the NIK
    # links both rows to the father's Dukcapil record, yet they are 27 years apart.
    ("F2A", make_nik(KEC, "1958-02-26", False, 1), _kk(12), "SOEPARMAN", "L", "1958-02-26", "own"),
    ("F2B", make_nik(KEC, "1958-02-26", False, 1), _kk(12), "SUPARNO", "L", "1985-02-26", None),
    # Twins one vowel apart in one KK, the younger written with her sister's NIK; the civil
    # registry holds both: NUR AINA's row is her own person, not NUR AINI's duplicate.
    ("T3A", make_nik(KEC, "2003-09-09", True, 1), _kk(13), "NUR AINI", "P", "2003-09-09", "own"),
    ("T3B", make_nik(KEC, "2003-09-09", True, 1), _kk(13), "NUR AINA", "P", "2003-09-09",
     (make_nik(KEC, "2003-09-09", True, 2), "NUR AINA")),
    # The same, the younger missing from Dukcapil: nothing tells a vowel typo from a twin.
    ("T4A", make_nik(KEC, "2004-04-14", False, 1), _kk(14), "RAFA ALFARIZI", "L", "2004-04-14", "own"),
    ("T4B", make_nik(KEC, "2004-04-14", False, 1), _kk(14), "RAFI ALFARIZI", "L", "2004-04-14", None),
    # Twins given one name, both in Dukcapil, the younger written with the elder's NIK.
    ("T5A", make_nik(KEC, "2005-05-15", False, 1), _kk(15), "AHMAD FAUZAN", "L", "2005-05-15", "own"),
    ("T5B", make_nik(KEC, "2005-05-15", False, 1), _kk(15), "AHMAD FAUZAN", "L", "2005-05-15",
     (make_nik(KEC, "2005-05-15", False, 2), "AHMAD FAUZAN")),
    # A twin with another given name on her sister's card, missing from Dukcapil.
    ("T6A", make_nik(KEC, "1979-07-21", True, 1), _kk(16), "SUMIYATI", "P", "1979-07-21", "own"),
    ("T6B", make_nik(KEC, "1979-07-21", True, 1), _kk(16), "ROHAETI", "P", "1979-07-21", None),
    # Brothers of one name two years apart, the younger on the elder's card and missing from
    # Dukcapil: the NIK leads both rows to the elder.
    ("S2A", make_nik(KEC, "1996-03-03", False, 1), _kk(19), "BAYU SAPUTRA", "L", "1996-03-03", "own"),
    ("S2B", make_nik(KEC, "1996-03-03", False, 1), _kk(19), "BAYU SAPUTRA", "L", "1998-03-03", None),
    # Twin brothers in one KK, the younger missing from Dukcapil with a number beyond every
    # serial issued (so not trusted as his own): no spelling turns BUDI into JOKO.
    ("T9A", make_nik(KEC, "2007-07-07", False, 1), _kk(20), "JOKO SUSILO", "L", "2007-07-07", "own"),
    ("T9B", make_nik(KEC, "2007-07-07", False, 9), _kk(20), "BUDI SUSILO", "L", "2007-07-07", None),
    # Two different people with one name, birth date and desa, each with their own NIK.
    ("N1A", make_nik(KEC, "1985-08-17", False, 1), _kk(5), "AGUS", "L", "1985-08-17", "own"),
    ("N1B", make_nik(KEC, "1985-08-17", False, 2), _kk(6), "AGUS", "L", "1985-08-17", "own"),
    # Positive controls: one person listed twice with the same NIK (may be excluded) ...
    ("D1A", make_nik(KEC, "1970-01-15", False, 1), _kk(7), "BUDI SANTOSO", "L", "1970-01-15", "own"),
    ("D1B", make_nik(KEC, "1970-01-15", False, 1), _kk(7), "BUDI SANTOSO", "L", "1970-01-15", "dup"),
    # ... and once more with a damaged NIK and a typo: found, but only for review.
    ("D2A", make_nik(KEC, "1980-11-20", True, 1), _kk(8), "SITI AMINAH", "P", "1980-11-20", "own"),
    ("D2B", make_nik(KEC, "1980-11-20", True, 1).replace("0", "O", 1), _kk(8), "SITI AMINA", "P", "1980-11-20", "dup"),
    # ... and once in her KK with a typo in the name and the serial mistyped to a number the
    # civil registry never issued for that kecamatan and birth date: no twin's number.
    ("D3A", make_nik(KEC, "1975-04-09", False, 1), _kk(9), "SLAMET RIYADI", "L", "1975-04-09", "own"),
    ("D3B", make_nik(KEC, "1975-04-09", False, 7), _kk(9), "SIAMET RIYADI", "L", "1975-04-09", "dup"),
]


# Someone missing from Dukcapil who carries his own number, and a namesake born the same
# day in his kecamatan whose number is two edits from his (and who has died).
MISSING_OWN_NUMBER = ("M1A", make_nik(KEC, "1988-08-08", False, 1), _kk(10), "HENDRA GUNAWAN", "L", "1988-08-08", None)
NAMESAKE_DUKCAPIL = f"{make_nik(KEC, '1988-08-08', False, 12)},{_kk(11)},HENDRA GUNAWAN,L,BOGOR,1988-08-08,JL MELATI,{KEC}1002,2024-02-02"


# The same in his own desa: a namesake with the same name and birth date and his own KK.
# Name, birth date and desa outweigh the number there, so only the rule keeps them apart.
MISSING_OWN_NUMBER_SAME_DESA = ("M2A", make_nik(KEC, "1983-06-16", False, 1), _kk(21), "DEDI KURNIAWAN", "L", "1983-06-16", None)
NAMESAKE_SAME_DESA_DUKCAPIL = f"{make_nik(KEC, '1983-06-16', False, 23)},{_kk(22)},DEDI KURNIAWAN,L,BOGOR,1983-06-16,JL MAWAR,{DESA},"
# Control: a number two typos from the one Dukcapil holds for the same name, birth date and
# KK is still a typo; the link suggests the right number.
TWO_TYPOS_SAME_KK = ("M3A", make_nik(KEC, "1977-03-13", False, 1), _kk(23), "EKO PRASETYO", "L", "1977-03-13", None)
TWO_TYPOS_SAME_KK_DUKCAPIL = f"{make_nik(KEC, '1977-03-13', False, 23)},{_kk(23)},EKO PRASETYO,L,BOGOR,1977-03-13,JL MAWAR,{DESA},"

# Someone missing from Dukcapil with his own number, and a dead namesake born the same day
# in the next kecamatan (320102) with the same serial: their numbers are one kecamatan digit
# apart, which is common at a province's density (serials start at 0001 every day).
MISSING_NEXT_KECAMATAN = ("M4A", make_nik(KEC, "1986-07-17", False, 1), _kk(26), "AGUS SETIAWAN", "L", "1986-07-17", None)
NAMESAKE_NEXT_KECAMATAN_DUKCAPIL = (f"{make_nik('320102', '1986-07-17', False, 1)},3201020101150027,AGUS SETIAWAN,L,BOGOR,"
                                    f"1986-07-17,JL KENANGA,3201021003,2025-03-03")
# The same in his own kecamatan: a dead namesake born that day with the next serial, in
# another desa and another KK.
MISSING_NEXT_SERIAL = ("M6A", make_nik(KEC, "1991-01-19", False, 1), _kk(29), "RUDI HARTONO", "L", "1991-01-19", None)
NAMESAKE_NEXT_SERIAL_DUKCAPIL = (f"{make_nik(KEC, '1991-01-19', False, 2)},{_kk(30)},RUDI HARTONO,L,BOGOR,1991-01-19,JL KENANGA,"
                                 f"{KEC}1002,2025-04-04")
# Control: a kecamatan digit mistyped by someone the civil registry holds in the row's own
# desa (the row's KK blank): the desa vouches for a typo, the link suggests the right number.
REGION_TYPO_SAME_DESA = ("M5A", make_nik("320102", "1979-11-21", False, 1), "", "BAMBANG SUSILO", "L", "1979-11-21", None)
REGION_TYPO_SAME_DESA_DUKCAPIL = f"{make_nik(KEC, '1979-11-21', False, 1)},{_kk(28)},BAMBANG SUSILO,L,BOGOR,1979-11-21,JL MAWAR,{DESA},"


# A living twin missing from Dukcapil, listed with her dead sister's card: one vowel apart.
LIVING_TWIN_ON_DEAD_TWIN_S_CARD = ("T7B", make_nik(KEC, "1990-10-10", True, 1), _kk(17), "NANI SUHARTINI", "P", "1990-10-10", None)
DEAD_TWIN_DUKCAPIL = f"{make_nik(KEC, '1990-10-10', True, 1)},{_kk(17)},NANA SUHARTINI,P,BOGOR,1990-10-10,JL MAWAR,{DESA},2025-01-01"
# Twins given one name, the elder dead; the living younger is listed with the elder's card.
LIVING_NAMESAKE_TWIN = ("T8B", make_nik(KEC, "1994-12-01", False, 1), _kk(18), "MUHAMMAD RIZKI", "L", "1994-12-01",
                        (make_nik(KEC, "1994-12-01", False, 2), "MUHAMMAD RIZKI"))
DEAD_NAMESAKE_TWIN_DUKCAPIL = f"{make_nik(KEC, '1994-12-01', False, 1)},{_kk(18)},MUHAMMAD RIZKI,L,BOGOR,1994-12-01,JL MAWAR,{DESA},2024-06-06"


EXTRA_ROWS = [MISSING_OWN_NUMBER, LIVING_TWIN_ON_DEAD_TWIN_S_CARD, LIVING_NAMESAKE_TWIN, MISSING_OWN_NUMBER_SAME_DESA,
              TWO_TYPOS_SAME_KK, MISSING_NEXT_KECAMATAN, REGION_TYPO_SAME_DESA, MISSING_NEXT_SERIAL]


@pytest.fixture(scope="module")
def look_alike_round(tmp_path_factory) -> Path:
    return run_csv_round(tmp_path_factory.mktemp("lookalike"), *_look_alike_lines())


def _look_alike_lines() -> tuple[list[str], list[str]]:
    dtks, dukcapil = [], []
    dukcapil += [NAMESAKE_DUKCAPIL, DEAD_TWIN_DUKCAPIL, DEAD_NAMESAKE_TWIN_DUKCAPIL, NAMESAKE_SAME_DESA_DUKCAPIL,
                 TWO_TYPOS_SAME_KK_DUKCAPIL, NAMESAKE_NEXT_KECAMATAN_DUKCAPIL, REGION_TYPO_SAME_DESA_DUKCAPIL,
                 NAMESAKE_NEXT_SERIAL_DUKCAPIL]
    for id_dtks, nik, kk, name, sex, born, in_dukcapil in ROWS + EXTRA_ROWS:
        dtks.append(f"{id_dtks},{nik},{kk},{name},{sex},BOGOR,{born},JL MAWAR,{DESA},PKH")
        if in_dukcapil == "own":
            dukcapil.append(f"{nik},{kk},{name},{sex},BOGOR,{born},JL MAWAR,{DESA},")
        elif isinstance(in_dukcapil, tuple):
            true_nik, true_name = in_dukcapil
            dukcapil.append(f"{true_nik},{kk},{true_name},{sex},BOGOR,{born},JL MAWAR,{DESA},")
    # Unrelated people so that Dukcapil is not only the cases above.
    for serial in range(1, 40):
        born = f"19{50 + serial}-0{1 + serial % 9}-1{serial % 9}"
        nik = make_nik("320102", born, serial % 2 == 0, serial)
        dukcapil.append(f"{nik},{_kk(100 + serial)},WARGA NOMOR {serial},{'P' if serial % 2 == 0 else 'L'},BOGOR,{born},JL X,3201021001,")
    return dtks, dukcapil


def _cluster_of(out: Path) -> dict[str, str]:
    clusters = pl.read_parquet(out / "duplicate_clusters.parquet")
    return dict(zip(clusters["id_dtks"], clusters["cluster_id"]))


@pytest.mark.parametrize("pair", [("T1A", "T1B"), ("T2A", "T2B"), ("S1A", "S1B"), ("F1A", "F1B"), ("N1A", "N1B"),
                                  ("T3A", "T3B"), ("T6A", "T6B"), ("T9A", "T9B")])
def test_look_alike_relatives_stay_apart_without_the_registry_s_help(look_alike_round, pair):
    cluster = _cluster_of(look_alike_round)
    assert cluster[pair[0]] != cluster[pair[1]]


def test_the_same_person_twice_is_still_found(look_alike_round):
    cluster = _cluster_of(look_alike_round)
    assert cluster["D1A"] == cluster["D1B"]
    assert cluster["D2A"] == cluster["D2B"]
    assert cluster["D3A"] == cluster["D3B"]


def test_resolution_is_a_visible_output(look_alike_round):
    resolution = pl.read_parquet(look_alike_round / "resolution.parquet")
    by_id = {row["id_dtks"]: row for row in resolution.iter_rows(named=True)}
    assert by_id["D1A"]["resolution"] == by_id["D1B"]["resolution"] == "exact_nik"
    assert by_id["D1A"]["dukcapil_person"] == by_id["D1B"]["dukcapil_person"]
    assert by_id["N1A"]["dukcapil_person"] != by_id["N1B"]["dukcapil_person"]
    assert by_id["T1B"]["resolution"] == "unresolved"  # missing from Dukcapil: not pinned on her twin
    assert by_id["D2B"]["resolution"] == "fuzzy" and by_id["D2B"]["dukcapil_person"] == by_id["D2A"]["dukcapil_person"]
    assert resolution.height == len(ROWS) + len(EXTRA_ROWS)
    assert by_id["M1A"]["resolution"] == "unresolved"  # a namesake's number two edits from his own is not his


def test_someone_missing_from_dukcapil_is_not_declared_dead_through_a_namesake(look_alike_round):
    anomalies = pl.read_parquet(look_alike_round / "anomalies.parquet").filter(pl.col("id_dtks") == "M1A")
    assert "DECEASED" not in anomalies["anomaly_code"].to_list()
    assert "NIK_NOT_FOUND" in anomalies["anomaly_code"].to_list()


def test_a_number_nobody_holds_is_not_pinned_on_a_namesake_in_another_kk(look_alike_round):
    fuzzy = pl.read_parquet(look_alike_round / "dukcapil_links.parquet").filter(pl.col("link_method") == "fuzzy")
    suggested = dict(zip(fuzzy["id_dtks"], fuzzy["dukcapil_nik"]))
    assert "M1A" not in suggested and "M2A" not in suggested  # no namesake's number offered as theirs
    assert suggested["M3A"] == TWO_TYPOS_SAME_KK_DUKCAPIL.split(",")[0]  # the KK vouches for a typo
    anomalies = pl.read_parquet(look_alike_round / "anomalies.parquet").filter(pl.col("id_dtks") == "M2A")
    assert sorted(anomalies["anomaly_code"]) == ["KK_NOT_FOUND", "NIK_NOT_FOUND"]  # his KK is missing too
    namesake_nik = NAMESAKE_SAME_DESA_DUKCAPIL.split(",")[0]
    assert not any(namesake_nik in (text or "") for text in anomalies["detail"].to_list() + anomalies["evidence"].to_list())


@pytest.mark.parametrize("row", ["M4A", "M6A"])
def test_a_number_nobody_holds_is_not_pinned_on_a_namesake_one_digit_away_in_another_desa(look_alike_round, row):
    fuzzy = pl.read_parquet(look_alike_round / "dukcapil_links.parquet").filter(pl.col("link_method") == "fuzzy")
    suggested = dict(zip(fuzzy["id_dtks"], fuzzy["dukcapil_nik"]))
    assert row not in suggested  # the namesake next door is not him
    anomalies = pl.read_parquet(look_alike_round / "anomalies.parquet").filter(pl.col("id_dtks") == row)
    assert "DECEASED" not in anomalies["anomaly_code"].to_list()  # nor is his death
    assert suggested["M5A"] == REGION_TYPO_SAME_DESA_DUKCAPIL.split(",")[0]  # the desa vouches for a typo


def test_exclusion_needs_declared_strong_evidence_never_a_fuzzy_resolution(look_alike_round):
    duplicates = pl.read_parquet(look_alike_round / "anomalies.parquet").filter(pl.col("anomaly_code") == "DUPLICATE_PERSON")
    action = dict(zip(duplicates["id_dtks"], duplicates["action"]))
    non_canonical = {"D1A", "D1B"} - {i for i, a in action.items() if a == "warn"}
    assert [action[i] for i in non_canonical] == ["exclude"]
    for damaged in ("D2B", "D3B"):  # resolved to the person only through the fuzzy link, or not at all
        assert action[damaged] == "review"
    excluded = pl.read_parquet(look_alike_round / "excluded.parquet")["id_dtks"].to_list()
    assert excluded == sorted(non_canonical)
    clusters = pl.read_parquet(look_alike_round / "duplicate_clusters.parquet")
    assert clusters.filter(pl.col("id_dtks").is_in(list(non_canonical)))["exclusion_evidence"].to_list() == ["same_civil_registry_person"]


def test_a_relative_on_the_same_civil_registry_record_years_apart_is_not_excluded(look_alike_round):
    """Both rows resolve by exact NIK to one Dukcapil person, but their own birth dates lie
    27 years apart: a son written with his father's number. A reviewer decides; the son
    is not cut off as his father's duplicate."""
    excluded = pl.read_parquet(look_alike_round / "excluded.parquet")["id_dtks"].to_list()
    assert "F2B" not in excluded and "F2A" not in excluded
    links = pl.read_parquet(look_alike_round / "dukcapil_links.parquet").filter(pl.col("id_dtks").is_in(["F2A", "F2B"]))
    assert links["dukcapil_person"].n_unique() == 1  # the case this guards: one civil-registry person for both


def test_rows_resolved_to_different_persons_are_never_merged():
    """Every DTKS field agrees; only the civil registry tells them apart."""
    model = load_model()
    con = register_macros(duckdb.connect())
    row = {"id_dtks": "A", "nik": None, "nik_format_ok": False, "nik_valid": False, "nik_consistent": False,
           "nik_verified": False, "cr_method": "fuzzy", "cr_namesake": False, "cr_rejected": None, "name_std": "AGUS SALIM",
           "name_sorted": "AGUS SALIM", "name_patronym": None, "name_first": "AGUS", "key_first": "AGS",
           "key_last": "SLM", "key_name": "AGS SLM", "dob_placeholder": False, "jenis_kelamin": "L", "no_kk": _kk(9),
           "kode_wilayah": DESA, "kab": "3201", "completeness": 3, "nik_digits": None,
           "birth_year": 1985}
    from pipeline.matching.dedupe import find_duplicates

    records = pl.DataFrame([{**row, "rid": 0, "id_dtks": "A", "cr_person": 1}, {**row, "rid": 1, "id_dtks": "B", "cr_person": 2}]).with_columns(
        tanggal_lahir=pl.lit("1985-08-17").str.to_date()
    )
    apart = find_duplicates(con, records, model)["clusters"]
    assert apart["cluster_id"].n_unique() == 2
    same = find_duplicates(con, records.with_columns(cr_person=pl.lit(1, dtype=pl.Int64)), model)["clusters"]
    assert same["cluster_id"].n_unique() == 1
    # One person through fuzzy links only: merged for review, no exclusion evidence.
    assert same["exclusion_evidence"].is_null().all()


@pytest.fixture(scope="module")
def hard_round(tmp_path_factory) -> dict:
    """A registry whose error rates differ from the declared model's (the hard mix)."""
    from pipeline.sample import generate_sample

    base = tmp_path_factory.mktemp("hard")
    generate_sample(20_000, 5, base / "data", fmt="parquet", mix="hard")
    ctx = RoundContext(dtks=str(base / "data" / "dtks.parquet"), dukcapil=str(base / "data" / "dukcapil.parquet"),
                       out=str(base / "out"), as_of="2026-11-21", decision_log=str(base / "decisions.jsonl"))
    run_round(ctx, StageClock(quiet=True))
    return {"data": base / "data", "out": base / "out"}


def _true_rates(out: Path, data: Path, model: dict) -> dict[tuple[str, str], tuple[float, float]]:
    """m and u of every level over this round's candidate pairs, from the truth labels."""
    con = register_macros(duckdb.connect())
    con.execute("CREATE TABLE records AS SELECT * FROM read_parquet($p)", {"p": str(out / "staging" / "records.parquet")})
    candidate_pairs(con, model, "records")
    compare_pairs(con, model, "records")
    truth = pl.read_parquet(data / "truth_rows.parquet").select("id_dtks", "person_id")
    con.register("truth", truth)
    columns = ", ".join(f"g_{c['name']}" for c in model["comparisons"])
    vectors = con.sql(
        f"""SELECT (tl.person_id = tr.person_id) AS match, {columns}
            FROM comparison_vectors v JOIN records l ON l.rid = v.rid_l JOIN records r ON r.rid = v.rid_r
            JOIN truth tl ON tl.id_dtks = l.id_dtks JOIN truth tr ON tr.id_dtks = r.id_dtks"""
    ).pl()
    rates = {}
    for comparison in model["comparisons"]:
        column = f"g_{comparison['name']}"
        for key, subset in (("m", vectors.filter(pl.col("match"))), ("u", vectors.filter(~pl.col("match")))):
            shares = subset[column].value_counts(normalize=True)
            for index, share in shares.iter_rows():
                rates.setdefault((comparison["name"], comparison["levels"][index]["label"]), {})[key] = share
    return rates


def test_the_fit_moves_toward_the_truth_on_a_registry_with_other_error_rates(hard_round):
    fitted = __import__("json").loads((hard_round["out"] / "model.json").read_text())
    assert fitted["fit"]["status"] == "fitted", fitted["fit"]
    truth = _true_rates(hard_round["out"], hard_round["data"], load_model())
    closer, compared, declared_error, fitted_error = 0, 0, 0.0, 0.0
    for comparison in fitted["comparisons"]:
        if comparison.get("estimate") == "fixed":
            continue
        for level in comparison["levels"]:
            true = truth.get((comparison["name"], level["label"]), {})
            if level.get("fixed") or "declared" not in level or level["m"] == level["u"] == 1.0:
                continue
            if true.get("m", 0) < 0.01 or true.get("u", 0) < 0.001:
                continue  # too rare in this registry to say what the truth is
            true_weight = math.log2(true["m"] / true["u"])
            declared = abs(math.log2(level["declared"]["m"] / level["declared"]["u"]) - true_weight)
            fit = abs(math.log2(level["m"] / level["u"]) - true_weight)
            compared += 1
            closer += fit < declared
            declared_error += declared
            fitted_error += fit
    assert compared >= 8
    assert fitted_error < 0.5 * declared_error, (fitted_error, declared_error)
    assert closer >= 0.75 * compared, (closer, compared)


def test_harm_on_a_registry_the_model_was_not_calibrated_on(hard_round):
    from pipeline.evaluate import evaluate_round

    result = evaluate_round(hard_round["out"], hard_round["data"])
    assert result["harm"]["living_people_all_rows_excluded"] == 0, result["harm"]
    assert result["harm"]["duplicate_exclusions_pointing_at_another_person"] == 0
    for relation in ("twin", "sibling_close", "father_son", "shared_nik"):
        assert result["hard_negatives"][relation]["pairs"] > 0
        assert result["hard_negatives"][relation]["merged"] <= 0.01 * result["hard_negatives"][relation]["pairs"], relation


def test_a_serial_beyond_every_issued_one_is_nobody_s_own_number(tmp_path):
    from pipeline.matching.link import mark_unissued_numbers

    issued = [make_nik(KEC, "1975-04-09", False, serial) for serial in (1, 2)]
    pl.DataFrame({"nik": issued + ["3201010904750001X"]}).write_parquet(tmp_path / "dukcapil.parquet")
    records = pl.DataFrame({
        "rid": [0, 1, 2, 3, 4],
        "nik_digits": [make_nik(KEC, "1975-04-09", False, s) for s in (2, 4, 5)]
        + [make_nik(KEC, "1975-04-10", False, 9), "32010109047500"],
        "nik_consistent": [True, True, True, True, False],
    })
    marked = mark_unissued_numbers(records.lazy(), str(tmp_path / "dukcapil.parquet"), slack=2).collect()
    # Serial 2 is issued, 4 is within the slack for people Dukcapil lacks, 5 is beyond it;
    # a prefix the registry never issued tells nothing; a short number is no serial.
    assert marked["nik_unissued"].to_list() == [False, False, True, False, False]
    assert marked["nik_consistent"].to_list() == [True, True, False, True, False]


def test_a_mistyped_sex_does_not_unmake_a_person_whose_nik_name_and_birth_date_agree():
    from pipeline.matching.link import FUZZY_COLUMNS, resolve

    # (id, name similarity, birth date agreement, sex agrees) on the record under the row's NIK
    cases = [("typo", 1.0, "exact", False), ("covered", 0.9, "exact", False), ("close_date", 1.0, "close", False)]
    exact = pl.DataFrame({
        "id_dtks": [c[0] for c in cases], "dukcapil_person": [1, 2, 3], "dukcapil_nik": ["a", "b", "c"],
        "identity": ["consistent"] * 3, "name_similarity": [c[1] for c in cases], "dob_agreement": [c[2] for c in cases],
        "sex_agreement": [c[3] for c in cases], "another_fits": [False] * 3,
    })
    fuzzy = pl.DataFrame(schema={name: pl.String for name in FUZZY_COLUMNS}).with_columns(
        pl.col("dukcapil_person").cast(pl.Int64), pl.col("match_probability", "margin").cast(pl.Float64),
        pl.col("ambiguous").cast(pl.Boolean))
    resolution = resolve(exact.select("id_dtks"), exact, fuzzy, 0.99)
    assert dict(resolution.select("id_dtks", "resolution").iter_rows()) == {
        "typo": "exact_nik", "covered": "unresolved", "close_date": "unresolved"}


def test_a_twin_on_her_sister_s_card_is_her_own_person_when_the_registry_holds_her(look_alike_round):
    """NUR AINA's row carries NUR AINI's NIK, and the names share a phonetic key: the NIK
    link alone would call them one person. The civil registry holds NUR AINA, born the same
    day in the same kecamatan, under her own number: the row is hers."""
    links = pl.read_parquet(look_alike_round / "dukcapil_links.parquet").filter(pl.col("id_dtks") == "T3B")
    exact = links.filter(pl.col("link_method") == "exact_nik").row(0, named=True)
    assert exact["identity"] == "mismatch" and exact["another_fits"]
    fuzzy = links.filter(pl.col("link_method") == "fuzzy").row(0, named=True)
    assert fuzzy["dukcapil_nik"] == make_nik(KEC, "2003-09-09", True, 2)  # her own number, suggested for repair
    anomalies = pl.read_parquet(look_alike_round / "anomalies.parquet").filter(pl.col("id_dtks") == "T3B")
    mismatch = anomalies.filter(pl.col("anomaly_code") == "IDENTITY_MISMATCH").row(0, named=True)
    assert mismatch["related_id"] == make_nik(KEC, "2003-09-09", True, 2) and "kembar" in mismatch["detail"]


def test_relatives_on_one_card_are_never_excluded_as_each_other_s_duplicate(look_alike_round):
    """One card for two twins: one vowel apart with the younger missing from Dukcapil
    (T4), or one name for both with the registry holding both (T5); brothers of one name
    two years apart (S2). The rows may be shown to a reviewer as one person; neither is
    cut off."""
    excluded = set(pl.read_parquet(look_alike_round / "excluded.parquet")["id_dtks"])
    assert not excluded & {"T4A", "T4B", "T5A", "T5B", "S2A", "S2B"}
    resolution = pl.read_parquet(look_alike_round / "resolution.parquet").filter(pl.col("id_dtks").is_in(["T5A", "T5B"]))
    assert resolution["namesake"].to_list() == [True, True]
    namesake = dict(pl.read_parquet(look_alike_round / "resolution.parquet").select("id_dtks", "namesake").iter_rows())
    assert not any(namesake[i] for i in ("T3A", "T4A", "D1A"))
    assert namesake["N1A"] and namesake["N1B"]  # two men named AGUS born that day in one kecamatan


def test_a_twin_on_her_sister_s_card_is_not_resolved_to_her_sister_through_the_card(look_alike_round):
    """ROHAETI's row carries SUMIYATI's NIK; the name says it is not SUMIYATI, and the fuzzy
    link may not take her back to SUMIYATI on the same card, KK, desa and birth date."""
    resolution = pl.read_parquet(look_alike_round / "resolution.parquet")
    by_id = {row["id_dtks"]: row for row in resolution.iter_rows(named=True)}
    assert by_id["T6B"]["resolution"] != "fuzzy"
    assert by_id["T6B"]["not_dukcapil_person"] == by_id["T6A"]["dukcapil_person"]


def test_a_living_twin_on_her_dead_sister_s_card_goes_to_review_not_out(look_alike_round):
    """NANI's row carries NANA's NIK and NANA died; the names share a phonetic key and
    Jaro-Winkler 0.97, but one vowel apart is how twins are named: the death is shown to a
    reviewer, the row is not excluded."""
    anomalies = pl.read_parquet(look_alike_round / "anomalies.parquet").filter(pl.col("id_dtks") == "T7B")
    deceased = anomalies.filter(pl.col("anomaly_code") == "DECEASED")
    assert deceased["action"].to_list() == ["review"]
    assert "T7B" not in set(pl.read_parquet(look_alike_round / "excluded.parquet")["id_dtks"])


def test_a_living_twin_of_one_name_on_her_dead_twin_s_card_goes_to_review_not_out(look_alike_round):
    """MUHAMMAD RIZKI's row carries his dead twin's NIK; the civil registry holds a living
    MUHAMMAD RIZKI born the same day in the same kecamatan: the death is shown, not applied."""
    anomalies = pl.read_parquet(look_alike_round / "anomalies.parquet").filter(pl.col("id_dtks") == "T8B")
    assert anomalies.filter(pl.col("anomaly_code") == "DECEASED")["action"].to_list() == ["review"]
    assert "T8B" not in set(pl.read_parquet(look_alike_round / "excluded.parquet")["id_dtks"])


def test_a_twin_whose_given_name_no_spelling_explains_is_not_resolved_to_his_brother(look_alike_round):
    """BUDI SUSILO is missing from Dukcapil and his number is not trusted as his own; his
    brother JOKO shares his KK, desa and birth date. The fuzzy link may not make him JOKO."""
    by_id = {row["id_dtks"]: row for row in pl.read_parquet(look_alike_round / "resolution.parquet").iter_rows(named=True)}
    assert by_id["T9B"]["dukcapil_person"] is None or by_id["T9B"]["dukcapil_person"] != by_id["T9A"]["dukcapil_person"]


def test_a_partitioned_round_finds_the_same_twins_on_each_other_s_cards(look_alike_round, tmp_path):
    """The look-up of another person of the row's name and birth date crosses NIK buckets
    (the twins' numbers differ): partitioned, it runs per bucket of (name, birth date)
    and must give the very links, resolution and clusters of one process."""
    out = run_csv_round(tmp_path, *_look_alike_lines(), partitions=3)
    for name in ("dukcapil_links.parquet", "resolution.parquet", "duplicate_clusters.parquet", "anomalies.parquet"):
        assert pl.read_parquet(out / name).equals(pl.read_parquet(look_alike_round / name)), name
    assert pl.read_parquet(out / "dukcapil_links.parquet")["another_fits"].sum() >= 3  # T3B, T5A, T5B, N1A ...


def test_a_misspelt_name_on_the_row_s_own_nik_is_no_identity_mismatch_once_the_evidence_resolves_it_to_the_holder():
    """The exact link judges by name alone; when birth date, region, KK and NIK digits
    resolve the row to the very holder of its NIK (the name misspelt: EKRI for ERNI), the
    NIK is the row's own. A row resolved to someone else, or to nobody, keeps the flag."""
    from pipeline.contract import CODE
    from pipeline.matching.link import LINK_COLUMNS, RESOLUTION_COLUMNS, link_anomalies

    ids = ["misspelt", "relative_s_card", "unresolved"]
    links = pl.DataFrame({
        "id_dtks": ids, "link_method": ["exact_nik"] * 3, "dukcapil_candidates": [1] * 3, "dukcapil_source_line": [2, 3, 4],
        "dukcapil_person": [10, 20, 30], "dukcapil_nik": ["n1", "n2", "n3"], "name_similarity": [0.8] * 3,
        "dob_agreement": ["exact"] * 3, "sex_agreement": [True] * 3, "identity": ["mismatch"] * 3, "another_fits": [False] * 3,
        "deceased": [False] * 3, "tanggal_meninggal": [None] * 3, "kab_dtks": ["3201"] * 3, "kab_dukcapil": ["3201"] * 3,
        "dukcapil_kode_wilayah": ["3201011001"] * 3,
    }).with_columns(pl.col("tanggal_meninggal").cast(pl.Date)).select(LINK_COLUMNS)
    resolution = pl.DataFrame({
        "id_dtks": ids, "resolution": ["fuzzy", "fuzzy", "unresolved"], "dukcapil_person": [10, 21, None],
        "dukcapil_nik": ["n1", "m2", None], "probability": [0.999, 0.999, None], "margin": [5.0, 5.0, None],
        "namesake": [False] * 3, "not_dukcapil_person": [None, 20, 30],
    }).select(RESOLUTION_COLUMNS)
    dtks = pl.DataFrame({"id_dtks": ids, "nik": ["n1", "n2", "n3"], "nik_valid": [True] * 3})
    anomalies = link_anomalies(dtks, links, resolution)
    flagged = anomalies.filter(pl.col("anomaly_code") == CODE.IDENTITY_MISMATCH)["id_dtks"].to_list()
    assert sorted(flagged) == ["relative_s_card", "unresolved"]
