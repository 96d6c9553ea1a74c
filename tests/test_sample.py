"""Tests for the synthetic DTKS / Dukcapil generator (pipeline.sample).

One sample of N rows is generated per module and read back from the written files; the checks re-derive
what they can from the files with plain Python, independently of the generator's own code.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from pipeline.paths import REFERENCE_DIR
from pipeline.sample import ANOMALY_CODES, VERY_COMMON_NAMES, generate_sample
from pipeline.sample_eligibility import ELIGIBILITY_CODES

N = 5000
SEED = 7


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("sample")
    return generate_sample(N, SEED, out)


def read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


@pytest.fixture(scope="module")
def dtks(sample) -> pl.DataFrame:
    return read(sample["dtks"])


@pytest.fixture(scope="module")
def dukcapil(sample) -> pl.DataFrame:
    return read(sample["dukcapil"])


@pytest.fixture(scope="module")
def truth(sample) -> pl.DataFrame:
    return read(sample["truth_rows"])


@pytest.fixture(scope="module")
def anomalies(sample) -> pl.DataFrame:
    return read(sample["truth_anomalies"])


@pytest.fixture(scope="module")
def rows(dtks, truth, anomalies) -> list[dict]:
    """DTKS rows joined with their truth, as dicts with an extra 'codes' set."""
    codes = defaultdict(set)
    for id_dtks, code in anomalies.iter_rows():
        codes[id_dtks].add(code)
    joined = dtks.join(truth, on="id_dtks", how="inner", maintain_order="left")
    return [{**row, "codes": codes[row["id_dtks"]]} for row in joined.iter_rows(named=True)]


@pytest.fixture(scope="module")
def reference() -> dict:
    def codes(name: str, level: str | None = None) -> set[str]:
        with open(REFERENCE_DIR / name, newline="", encoding="utf-8") as f:
            return {r["kode"] for r in csv.DictReader(f) if level is None or r["level"] == level}

    with open(REFERENCE_DIR / "retired_codes.csv", newline="", encoding="utf-8") as f:
        retired = list(csv.DictReader(f))
    return {
        "kecamatan": codes("districts.csv"),
        "retired_kecamatan": codes("retired_codes.csv", "3"),
        "retired_desa": codes("retired_codes.csv", "4"),
        "kab_successor": {r["kode"]: r["kode_pengganti_guess"] for r in retired if r["level"] == "2"},
    }


# ------------------------------------------------------------------------------ plain helpers


def norm_nik(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[1:] if value.startswith("'") else value


def parse_date(value: str | None) -> date | None:
    for fmt, pattern in (("%Y-%m-%d", r"\d{4}-\d{2}-\d{2}"), ("%d-%m-%Y", r"\d{2}-\d{2}-\d{4}"),
                         ("%d/%m/%Y", r"\d{2}/\d{2}/\d{4}")):
        if value and re.fullmatch(pattern, value):
            try:
                return datetime.strptime(value, fmt).date()
            except ValueError:
                return None
    return None


SEX = {"L": "L", "1": "L", "LAKI-LAKI": "L", "P": "P", "2": "P", "PEREMPUAN": "P"}
DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def nik_checks(nik: str | None, reference: dict) -> dict:
    """Format / region / date validity of a (normalized) NIK, written independently of the generator."""
    well_formed = bool(nik) and re.fullmatch(r"[0-9]{16}", nik) is not None and not nik.endswith("0000")
    if not well_formed:
        return {"format": False, "region": False, "date": False}
    dd, mm, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    day = dd - 40 if dd > 40 else dd
    feb_days = 29 if yy % 4 == 0 else 28
    month_days = feb_days if mm == 2 else (DAYS_IN_MONTH[mm - 1] if 1 <= mm <= 12 else 0)
    date_ok = dd != 0 and not 32 <= dd <= 40 and dd <= 71 and 1 <= mm <= 12 and day <= month_days
    region_ok = nik[:6] in reference["kecamatan"] or nik[:6] in reference["retired_kecamatan"]
    return {"format": True, "region": region_ok, "date": date_ok, "dd": dd, "mm": mm, "yy": yy, "day": day,
            "sex": "P" if dd > 40 else "L"}


def kabupaten(code: str, reference: dict) -> str:
    kab = code.replace(".", "")[:4]
    return reference["kab_successor"].get(kab, kab)


# -------------------------------------------------------------------------------------- files


def test_same_seed_gives_identical_files_and_another_seed_differs(sample, tmp_path):
    again = generate_sample(N, SEED, tmp_path / "again")
    for name in ("dtks", "dukcapil", "truth_rows", "truth_anomalies"):
        assert again[name].read_bytes() == sample[name].read_bytes(), name
    other = generate_sample(N, SEED + 1, tmp_path / "other")
    assert other["dtks"].read_bytes() != sample["dtks"].read_bytes()
    assert other["dukcapil"].read_bytes() != sample["dukcapil"].read_bytes()


def test_files_columns_and_counts(sample, dtks, dukcapil, truth, anomalies):
    assert dtks.columns == ["id_dtks", "nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir",
                            "alamat", "kode_wilayah", "program", "desil", "hubungan_keluarga"]
    assert dukcapil.columns == ["nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir", "alamat",
                                "kode_wilayah", "tanggal_meninggal", "hubungan_keluarga"]
    assert truth.columns == ["id_dtks", "person_id", "true_nik", "scenario", "true_deceased", "expect_quarantine",
                             "household_id", "relation"]
    assert anomalies.columns == ["id_dtks", "anomaly_code"]
    assert dtks.height == sample["n_dtks"] == N
    assert dukcapil.height == sample["n_dukcapil"]
    assert anomalies.height == sample["n_truth_anomalies"]
    assert 2 * N <= dukcapil.height <= 3 * N
    assert sum(sample["scenario_counts"].values()) == N


def test_ineligibility_list_mixes_registry_people_outsiders_and_damaged_niks(sample, dtks):
    listed = pl.read_csv(sample["ineligible"], infer_schema=False)
    assert listed.columns == ["nik", "nama", "tanggal_lahir", "jenis", "sumber", "tanggal"]
    dtks_niks = set(dtks["nik"].str.strip_chars().str.strip_prefix("'"))
    in_dtks = listed["nik"].is_in(list(dtks_niks))
    assert 0.1 < in_dtks.mean() < 0.4  # most people on such lists are not registry recipients
    assert listed["tanggal_lahir"].null_count() > 0 and set(listed["jenis"]) >= {"PNS", "AHU"}


def test_truth_rows_cover_exactly_the_dtks_rows(dtks, truth, anomalies):
    assert dtks["id_dtks"].n_unique() == N
    assert truth["id_dtks"].n_unique() == N
    assert set(dtks["id_dtks"]) == set(truth["id_dtks"])
    assert set(anomalies["id_dtks"]) <= set(dtks["id_dtks"])
    assert anomalies.unique().height == anomalies.height
    assert set(anomalies["anomaly_code"]) <= set(ANOMALY_CODES + ELIGIBILITY_CODES)


def test_ids_do_not_follow_people(truth):
    # Consecutive ids should almost never be the same or neighbouring person ids.
    person_number = [int(p[1:]) for p in truth["person_id"]]
    neighbours = sum(abs(a - b) <= 1 for a, b in zip(person_number, person_number[1:]))
    assert neighbours < N * 0.01


def test_parquet_has_same_columns_all_text(tmp_path):
    result = generate_sample(1000, 3, tmp_path, fmt="parquet")
    dtks = pl.read_parquet(result["dtks"])
    assert dtks.height == 1000
    assert dtks.columns[0] == "id_dtks" and dtks.columns[-1] == "hubungan_keluarga"
    for name in ("dtks", "dukcapil", "truth_rows", "truth_anomalies"):
        frame = pl.read_parquet(result[name])
        assert all(dtype == pl.String for dtype in frame.dtypes), name


def test_regional_extent_keeps_households_in_a_few_whole_kabupaten_at_real_density(tmp_path):
    from pipeline.sample import PROVINCE_POPULATION_M, load_regions, regional_extract

    regions = load_regions()
    people = 2_000_000
    area = regional_extract(regions, people, seed=5)
    kab = regions.desa // 10**6
    chosen = set(kab[area.desa_weight > 0].tolist())
    # Whole kabupaten: every desa of a chosen kabupaten can be lived in, in its national proportion.
    inside = regions.desa_weight[area.desa_weight > 0]
    assert (regions.desa_weight[[k in chosen for k in kab]] > 0).all()
    assert area.desa_weight[area.desa_weight > 0] == pytest.approx(inside / inside.sum())
    # As many kabupaten as hold that many people at the country's density, not all 514.
    national = sum(PROVINCE_POPULATION_M.values()) * 1e6
    assert regions.desa_weight[area.desa_weight > 0].sum() == pytest.approx(people / national, rel=0.5)
    assert 1 <= len(chosen) < 40
    assert regional_extract(regions, people, seed=5).desa_weight.tolist() == area.desa_weight.tolist()
    assert set(kab[regional_extract(regions, people, seed=6).desa_weight > 0].tolist()) != chosen

    result = generate_sample(2000, 5, tmp_path, fmt="parquet", extent="regional")
    dtks = pl.read_parquet(result["dtks"])
    assert dtks.height == 2000
    written = dtks.filter(pl.col("kode_wilayah").str.contains(r"^\d{10}$"))["kode_wilayah"].str.slice(0, 4).cast(pl.Int64)
    assert written.is_in(list(chosen)).mean() > 0.9  # the rest: DTKS addresses left behind after a move


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_sample(5000, 1, tmp_path, fmt="xlsx")
    with pytest.raises(ValueError):
        generate_sample(5000, 1, tmp_path, extent="planet")
    with pytest.raises(ValueError):
        generate_sample(10, 1, tmp_path)


# ----------------------------------------------------------------------------- NIK structure


def test_clean_rows_carry_well_formed_consistent_niks(rows, reference):
    clean = [r for r in rows if r["scenario"] == "clean"]
    assert len(clean) > N * 0.6
    for r in clean:
        nik = norm_nik(r["nik"])
        assert nik == r["true_nik"]
        checks = nik_checks(nik, reference)
        assert checks["format"] and checks["region"] and checks["date"], nik
        assert int(nik[12:]) >= 1
        assert checks["sex"] == SEX[r["jenis_kelamin"]], (nik, r["jenis_kelamin"])
        born = parse_date(r["tanggal_lahir"])
        assert (born.day, born.month, born.year % 100) == (checks["day"], checks["mm"], checks["yy"])
        # The eligibility codes (list, desil, household) belong to the person's world, not the row's identity.
        assert not r["codes"] & set(ANOMALY_CODES)


def test_papua_people_keep_retired_kecamatan_prefixes(truth, reference):
    prefixes = {nik[:6] for nik in truth["true_nik"]}
    assert prefixes & reference["retired_kecamatan"], "no NIK issued before the Papua pemekaran"
    assert prefixes <= reference["kecamatan"] | reference["retired_kecamatan"]


def test_dukcapil_niks_are_mostly_unique_with_a_few_repeats(dukcapil):
    per_nik = dukcapil.group_by("nik").agg(pl.len(), pl.col("nama").n_unique().alias("names"))
    repeated = per_nik.filter(pl.col("len") > 1)
    assert 0 < repeated.height < dukcapil.height * 0.01
    assert repeated.filter(pl.col("names") == 1).height > 0, "nobody recorded twice"
    assert repeated.filter(pl.col("names") > 1).height > 0, "no NIK on two different people"


def test_dukcapil_rows_are_clean(dukcapil, reference):
    for r in dukcapil.iter_rows(named=True):
        assert re.fullmatch(r"[0-9]{16}", r["nik"]) and not r["nik"].endswith("0000")
        assert re.fullmatch(r"[0-9]{16}", r["no_kk"])
        assert r["nama"] and r["jenis_kelamin"] in ("LAKI-LAKI", "PEREMPUAN")
        born = date.fromisoformat(r["tanggal_lahir"])
        assert re.fullmatch(r"[0-9]{10}", r["kode_wilayah"])
        assert r["kode_wilayah"][:6] in reference["kecamatan"]
        if r["tanggal_meninggal"]:
            assert date.fromisoformat(r["tanggal_meninggal"]) > born


# -------------------------------------------------------------------------------- households


def test_households_share_no_kk_and_live_together(dukcapil):
    frame = dukcapil.unique("nik").with_columns(born=pl.col("tanggal_lahir").str.to_date())
    kk = frame.group_by("no_kk").agg(
        pl.len(), pl.col("kode_wilayah").n_unique().alias("desa"), pl.col("kode_wilayah").first(),
        age_gap=(pl.col("born").max() - pl.col("born").min()).dt.total_days() / 365.25)
    # Every member of a KK lives in the same desa, and the KK was issued in that kecamatan.
    assert kk["desa"].max() == 1
    assert (kk["no_kk"].str.slice(0, 6) == kk["kode_wilayah"].str.slice(0, 6)).all()
    # Families, not singletons: most people share their KK; households have at most 6 members.
    assert kk["len"].max() <= 6
    assert kk.filter(pl.col("len") > 1)["len"].sum() > frame.height * 0.7
    # Bigger households span generations (parents at least ~17 years older than their youngest child).
    big = kk.filter(pl.col("len") >= 4)
    assert (big["age_gap"] >= 17).mean() > 0.9


def test_spouses_are_usually_of_opposite_sex(dukcapil):
    frame = dukcapil.unique("nik").with_columns(born=pl.col("tanggal_lahir").str.to_date())
    # The two oldest members of a KK are usually the couple.
    couples = (frame.sort("born").group_by("no_kk", maintain_order=True).head(2)
               .group_by("no_kk").agg(pl.len(), pl.col("jenis_kelamin").n_unique().alias("sexes"),
                                      gap=(pl.col("born").max() - pl.col("born").min()).dt.total_days())
               .filter((pl.col("len") == 2) & (pl.col("gap") < 15 * 365)))
    assert (couples["sexes"] == 2).mean() > 0.85


def test_placeholder_birthdays_are_common(dukcapil):
    day_month = dukcapil["tanggal_lahir"].str.slice(5, 5)
    share = day_month.is_in(["07-01", "12-31", "01-01"]).mean()
    assert 0.05 < share < 0.13


# ----------------------------------------------------------------------------- anomaly codes


def test_every_anomaly_code_is_present(anomalies):
    counts = Counter(anomalies["anomaly_code"])
    for code in ANOMALY_CODES + ELIGIBILITY_CODES:
        assert counts[code] >= N * 0.001, code


def test_each_issue_kind_has_a_few_percent_at_most(truth):
    shares = truth["scenario"].value_counts(normalize=True)
    share = dict(shares.iter_rows())
    assert share["clean"] > 0.6
    for label in ("invalid_format", "invalid_region", "invalid_date", "sex_mismatch", "identity_mismatch",
                  "shared_nik", "missing_from_dukcapil", "deceased", "moved", "moved_within_kab", "dob_corrected",
                  "twin", "father_son_same_name", "common_name", "papua_retired", "quarantine_bad_row"):
        assert 0 < share.get(label, 0) < 0.06, label
    assert 0.0005 <= share["quarantine_bad_row"] <= 0.002
    assert 0.015 <= share["missing_from_dukcapil"] <= 0.025
    deceased = (truth["true_deceased"] == "1").mean()
    assert 0.015 < deceased < 0.05


SCENARIO_REQUIRES = {
    "invalid_format": "NIK_INVALID_FORMAT",
    "invalid_region": "NIK_INVALID_REGION",
    "invalid_date": "NIK_INVALID_DATE",
    "sex_mismatch": "NIK_SEX_MISMATCH",
    "dob_corrected": "NIK_DOB_MISMATCH",
    "missing_from_dukcapil": "NIK_NOT_FOUND",
    "identity_mismatch": "IDENTITY_MISMATCH",
    "shared_nik": "NIK_SHARED",
    "deceased": "DECEASED",
    "moved": "RELOCATED",
    "duplicate_variant": "DUPLICATE_PERSON",
    "duplicate_original": "DUPLICATE_PERSON",
}


def test_scenarios_carry_their_anomaly(rows):
    for r in rows:
        required = SCENARIO_REQUIRES.get(r["scenario"])
        if required:
            assert required in r["codes"], (r["scenario"], r["codes"])


def test_quarantine_rows_are_broken_and_get_no_codes(rows):
    quarantined = [r for r in rows if r["expect_quarantine"] == "1"]
    assert quarantined and all(r["scenario"] == "quarantine_bad_row" for r in quarantined)
    for r in quarantined:
        assert not r["codes"]
        broken = (parse_date(r["tanggal_lahir"]) is None or not r["nama"] or r["jenis_kelamin"] not in SEX)
        assert broken, r
    for r in rows:
        if r["expect_quarantine"] == "0":
            assert parse_date(r["tanggal_lahir"]) and r["nama"] and r["jenis_kelamin"] in SEX, r


def test_nik_checks_match_an_independent_recheck(rows, reference):
    expected = defaultdict(set)
    for r in rows:
        if r["expect_quarantine"] == "1":
            continue
        checks = nik_checks(norm_nik(r["nik"]), reference)
        if not checks["format"]:
            expected["NIK_INVALID_FORMAT"].add(r["id_dtks"])
            continue
        if not checks["region"]:
            expected["NIK_INVALID_REGION"].add(r["id_dtks"])
        if not checks["date"]:
            expected["NIK_INVALID_DATE"].add(r["id_dtks"])
            continue
        if SEX[r["jenis_kelamin"]] != checks["sex"]:
            expected["NIK_SEX_MISMATCH"].add(r["id_dtks"])
        born = parse_date(r["tanggal_lahir"])
        if (born.day, born.month, born.year % 100) != (checks["day"], checks["mm"], checks["yy"]):
            expected["NIK_DOB_MISMATCH"].add(r["id_dtks"])
    for code in ("NIK_INVALID_FORMAT", "NIK_INVALID_REGION", "NIK_INVALID_DATE", "NIK_SEX_MISMATCH",
                 "NIK_DOB_MISMATCH"):
        actual = {r["id_dtks"] for r in rows if code in r["codes"]}
        assert actual == expected[code], code


def test_linkage_codes_match_an_independent_recheck(rows, dukcapil, reference):
    registry = defaultdict(list)
    for r in dukcapil.iter_rows(named=True):
        registry[r["nik"]].append(r)
    people_per_nik = defaultdict(set)
    rows_per_person = Counter()
    for r in rows:
        if r["expect_quarantine"] == "1":
            continue
        rows_per_person[r["person_id"]] += 1
        if nik_checks(norm_nik(r["nik"]), reference)["format"]:
            people_per_nik[norm_nik(r["nik"])].add(r["person_id"])

    for r in rows:
        if r["expect_quarantine"] == "1":
            continue
        nik = norm_nik(r["nik"])
        checks = nik_checks(nik, reference)
        valid = checks["format"] and checks["region"] and checks["date"]
        found = registry.get(nik, [])
        assert ("NIK_NOT_FOUND" in r["codes"]) == (valid and not found), r
        assert ("NIK_SHARED" in r["codes"]) == (checks["format"] and len(people_per_nik[nik]) > 1), r
        assert ("DUPLICATE_PERSON" in r["codes"]) == (rows_per_person[r["person_id"]] > 1), r
        if "IDENTITY_MISMATCH" in r["codes"]:
            assert valid and found and nik != r["true_nik"]
        own = found if nik == r["true_nik"] else []
        if len({(d["nama"], d["tanggal_lahir"]) for d in own}) == 1:  # unambiguous: only this person there
            dead = bool(own[0]["tanggal_meninggal"])
            assert ("DECEASED" in r["codes"]) == dead, r
            moved = own[0]["kode_wilayah"][:4] != kabupaten(r["kode_wilayah"], reference)
            assert ("RELOCATED" in r["codes"]) == moved, r
        elif not own:
            assert not {"DECEASED", "RELOCATED"} & r["codes"]


def test_true_deceased_follows_dukcapil(rows, dukcapil):
    dead_niks = set(dukcapil.filter(pl.col("tanggal_meninggal").is_not_null())["nik"])
    for r in rows:
        if r["true_deceased"] == "1":
            assert r["true_nik"] in dead_niks


# ------------------------------------------------------------------------ messy but valid data


def test_mixed_formats_are_present(dtks):
    assert set(dtks["jenis_kelamin"]) >= {"L", "P", "1", "2", "LAKI-LAKI", "PEREMPUAN"}
    dates = dtks["tanggal_lahir"].drop_nulls()
    for pattern in (r"^\d{4}-\d{2}-\d{2}$", r"^\d{2}-\d{2}-\d{4}$", r"^\d{2}/\d{2}/\d{4}$"):
        assert dates.str.contains(pattern).sum() > 50, pattern
    assert dtks["kode_wilayah"].str.contains(r"^\d{2}\.\d{2}\.\d{2}\.\d{4}$").sum() > 100
    assert dtks["kode_wilayah"].str.contains(r"^\d{10}$").mean() > 0.85
    assert dtks["nik"].str.contains(r"^'\d{16}$").sum() > 20
    assert dtks["nik"].str.contains(r"^\s+\d{16}\s*$|^\d{16}\s+$").sum() > 5
    # Programs spelled as extracts do, some rows with two, a few with an undeclared one.
    programs = set(dtks["program"].str.split(", ").explode()) | set(dtks["program"].str.split("+").explode()) \
        | set(dtks["program"].str.split("; ").explode())
    assert {"PKH", "BPNT", "PBI-JK", "KIS", "Kartu Sembako", "BLT-DD"} <= programs
    assert dtks["desil"].drop_nulls().cast(pl.Int32).is_between(1, 10).all() and dtks["desil"].null_count() > 0


def test_every_kind_of_damaged_nik_is_generated(rows):
    damaged = [norm_nik(r["nik"]) for r in rows if r["scenario"] == "invalid_format"]
    kinds = Counter()
    for nik in damaged:
        if nik is None:
            kinds["empty"] += 1
        elif re.fullmatch(r"\d\.\d+E\+15|\dE\+15", nik):
            kinds["scientific"] += 1
        elif nik.endswith(".0"):
            kinds["float"] += 1
        elif re.search(r"[OI]", nik):
            kinds["letter"] += 1
        elif re.fullmatch(r"\d{15}", nik):
            kinds["15"] += 1
        elif re.fullmatch(r"\d{17}", nik):
            kinds["17"] += 1
        elif re.fullmatch(r"\d{12}0000", nik):
            kinds["serial_0000"] += 1
    assert set(kinds) == {"empty", "scientific", "float", "letter", "15", "17", "serial_0000"}
    assert sum(kinds.values()) == len(damaged)
    assert max(kinds.values()) - min(kinds.values()) <= 2  # equal shares


def test_names_are_indonesian_and_upper_case(dtks):
    names = dtks["nama"].drop_nulls()
    assert (names == names.str.to_uppercase()).all()
    text = " ".join(names)
    for token in ("SITI", "MUHAMMAD", "SRI", " BIN ", " BINTI ", "NI ", "I ", "ANDI"):
        assert token in text, token
    assert any(marga in text for marga in ("SIREGAR", "NASUTION", "SIMANJUNTAK", "HARAHAP", "SINAGA"))


def test_very_common_names_repeat(dtks):
    counts = Counter(dtks["nama"].drop_nulls())
    assert sum(counts[name] for name in VERY_COMMON_NAMES) > N * 0.02
    assert counts["SITI AMINAH"] >= N * 0.002


# ------------------------------------------------------------------- duplicates and hard negatives


def test_duplicates_share_person_id_but_vary(rows):
    by_person = defaultdict(list)
    for r in rows:
        by_person[r["person_id"]].append(r)
    variants = [r for r in rows if r["scenario"] == "duplicate_variant"]
    assert N * 0.03 < len(variants) < N * 0.06
    name_changed = nik_changed = kk_changed = 0
    for v in variants:
        group = by_person[v["person_id"]]
        assert len(group) in (2, 3)
        assert len({r["id_dtks"] for r in group}) == len(group)
        original = next(r for r in group if r["scenario"] != "duplicate_variant")
        name_changed += v["nama"] != original["nama"]
        nik_changed += norm_nik(v["nik"]) != norm_nik(original["nik"])
        kk_changed += v["no_kk"] != original["no_kk"]
    assert name_changed > len(variants) * 0.6
    assert len(variants) * 0.2 < nik_changed < len(variants) * 0.6
    assert len(variants) * 0.15 < kk_changed < len(variants) * 0.5
    assert any(len(by_person[v["person_id"]]) == 3 for v in variants), "nobody is listed three times"


def test_twins_share_kk_and_birth_date_with_consecutive_niks(rows):
    by_kk = defaultdict(list)
    for r in rows:
        if r["scenario"] == "twin":
            by_kk[r["no_kk"]].append(r)
    assert len(by_kk) >= N * 0.001
    for pair in by_kk.values():
        assert len(pair) == 2
        a, b = pair
        assert a["person_id"] != b["person_id"]
        assert parse_date(a["tanggal_lahir"]) == parse_date(b["tanggal_lahir"])
        assert SEX[a["jenis_kelamin"]] == SEX[b["jenis_kelamin"]]
        nik_a, nik_b = norm_nik(a["nik"]), norm_nik(b["nik"])
        assert abs(int(nik_a) - int(nik_b)) == 1
        assert a["nama"].split()[0:2] != b["nama"].split()[0:2]
        assert "DUPLICATE_PERSON" not in a["codes"] | b["codes"]


def test_father_and_son_with_the_same_name_are_not_duplicates(rows):
    by_kk = defaultdict(list)
    for r in rows:
        if r["scenario"] == "father_son_same_name":
            by_kk[r["no_kk"]].append(r)
    assert len(by_kk) >= N * 0.001
    for pair in by_kk.values():
        assert len(pair) == 2
        father, son = sorted(pair, key=lambda r: parse_date(r["tanggal_lahir"]))
        assert father["nama"] == son["nama"]
        assert father["person_id"] != son["person_id"]
        assert (parse_date(son["tanggal_lahir"]) - parse_date(father["tanggal_lahir"])).days > 15 * 365
        assert SEX[father["jenis_kelamin"]] == SEX[son["jenis_kelamin"]] == "L"
        assert "DUPLICATE_PERSON" not in father["codes"] | son["codes"]


def test_common_names_belong_to_different_people(rows):
    common = [r for r in rows if r["scenario"] == "common_name"]
    by_name = defaultdict(set)
    for r in common:
        by_name[r["nama"]].add(r["person_id"])
        assert "DUPLICATE_PERSON" not in r["codes"]
    assert max(len(people) for people in by_name.values()) >= 5
    # Some unrelated namesakes were even born on the same day: only the NIK tells them apart.
    same_day = Counter((r["nama"], parse_date(r["tanggal_lahir"])) for r in common)
    assert any(count > 1 for count in same_day.values())


def test_identity_mismatch_is_a_one_digit_typo_onto_a_stranger(rows, dukcapil):
    registry = {r["nik"]: r for r in dukcapil.iter_rows(named=True)}
    cases = [r for r in rows if r["scenario"] == "identity_mismatch"]
    assert len(cases) >= N * 0.004
    for r in cases:
        nik = norm_nik(r["nik"])
        assert sum(x != y for x, y in zip(nik, r["true_nik"])) == 1
        stranger, person = registry[nik], registry[r["true_nik"]]
        assert stranger["nama"] != person["nama"]
        assert stranger["tanggal_lahir"] != person["tanggal_lahir"]


def test_shared_niks_are_used_by_two_people(rows):
    shared = defaultdict(set)
    for r in rows:
        if r["scenario"] == "shared_nik":
            shared[norm_nik(r["nik"])].add(r["person_id"])
    assert len(shared) >= N * 0.002
    assert all(len(people) >= 2 for people in shared.values())


def test_moves_and_retired_papua_codes(rows, dukcapil, reference):
    kab_of = dict(zip(dukcapil["nik"], dukcapil["kode_wilayah"].str.slice(0, 4)))
    within = [r for r in rows if r["scenario"] == "moved_within_kab"]
    papua = [r for r in rows if r["scenario"] == "papua_retired"]
    assert within and papua
    for r in within:
        assert kab_of[r["true_nik"]] == r["kode_wilayah"].replace(".", "")[:4]
        assert "RELOCATED" not in r["codes"]
    for r in papua:
        code = r["kode_wilayah"].replace(".", "")
        assert code in reference["retired_desa"]
        assert code[:4] != kab_of[r["true_nik"]]  # the raw code differs ...
        assert kabupaten(code, reference) == kab_of[r["true_nik"]]  # ... its successor does not
        assert "RELOCATED" not in r["codes"]


def test_hard_mix_look_alike_relatives_never_share_a_name(tmp_path):
    """Twins and close siblings in the hard mix are one letter apart, never identical
    (parents do not give twins one name), and their labels name the relation."""
    from pipeline.sample import generate_sample

    generate_sample(3000, 4, tmp_path, fmt="parquet", mix="hard")
    truth = pl.read_parquet(tmp_path / "truth_rows.parquet")
    dtks = pl.read_parquet(tmp_path / "dtks.parquet").join(truth, on="id_dtks")
    for relation in ("twin", "sibling_close"):
        rows = dtks.filter(pl.col("relation").str.contains(relation) & ~pl.col("scenario").is_in(["ocr_name", "duplicate_variant"]))
        pairs = rows.join(rows, on="household_id", suffix="_r").filter(pl.col("person_id") < pl.col("person_id_r"))
        assert pairs.height > 0, relation
        assert (pairs["nama"] != pairs["nama_r"]).all(), pairs.filter(pl.col("nama") == pl.col("nama_r"))
    assert truth.filter(pl.col("scenario") == "reregistered").height > 0
