"""The eligibility findings (pipeline/findings/): a list match excludes only when exact and
name-confirmed for a type declared to exclude; desil ranges per program at their
boundaries; household codes on every row of the household."""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import pytest

from pipeline.contract import CODE, anomaly_rules
from pipeline.findings.desil import desil_anomalies
from pipeline.findings.household import household_findings, households
from pipeline.findings.ineligible import link_lists, not_eligible_anomalies
from pipeline.matching.model import LINK_MODEL_PATH, load_model
from pipeline.matching.sql import register_macros


def test_desil_boundaries_aliases_and_undeclared_programs():
    rows = pl.DataFrame({
        "id_dtks": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "program": ["PKH", "PKH", "PBI JKN", "KIS", "BLT-DD", "pkh; Kartu Sembako", "Program Keluarga Harapan", "BPNT"],
        "desil": [4, 5, 5, 6, 9, 5, None, 1],
    }, schema_overrides={"desil": pl.Int8})
    found = desil_anomalies(rows)
    assert found["id_dtks"].to_list() == ["b", "d", "f"]  # 4 and 5 are inside PKH 1-4 / PBI 1-5 only at the edge
    assert set(found["anomaly_code"]) == {CODE.DESIL_NOT_ELIGIBLE}
    assert set(found["action"]) == {anomaly_rules()[CODE.DESIL_NOT_ELIGIBLE].action}
    # Only the program the desil is outside of is named: SEMBAKO allows 5.
    assert found.filter(pl.col("id_dtks") == "f")["related_id"].item() == "PKH"


def records(rows: list[tuple]) -> pl.DataFrame:
    """DTKS records for the household stage: no row carries its own valid number, all in one kabupaten."""
    return pl.DataFrame(rows, schema={"id_dtks": pl.String, "no_kk": pl.String, "hubungan_keluarga": pl.String,
                                      "tanggal_lahir": pl.Date}, orient="row").with_columns(
        nik_consistent=pl.lit(False), kab=pl.lit("3201"))


def sure_exact_links(resolution: pl.DataFrame) -> pl.DataFrame:
    """The exact link's facts of a resolution whose exact links agree on name and birth date."""
    return resolution.with_columns(identity=pl.lit("strong"), name_similarity=pl.lit(1.0), dob_agreement=pl.lit("exact"))


KK1, KK2, KK3, KK4 = (f"32010{i}0101200001" for i in range(1, 5))


def test_head_by_relation_column_else_the_eldest():
    frame = households(records([
        ("a1", KK1, "ANAK", dt.date(1950, 1, 1)), ("a2", KK1, "Kepala Keluarga", dt.date(1980, 1, 1)),
        ("b1", KK2, None, dt.date(1990, 1, 1)), ("b2", KK2, None, dt.date(1960, 1, 1)),
        ("c1", "123", "1", dt.date(1960, 1, 1)),  # not a valid KK: no household
    ]))
    assert dict(frame.select("id_dtks", "representative").iter_rows()) == {"a1": "a2", "a2": "a2", "b1": "b2", "b2": "b2"}
    assert frame.filter(pl.col("is_head"))["id_dtks"].sort().to_list() == ["a2", "b2"]


def test_household_codes_stand_on_every_member():
    recs = records([
        ("h1", KK1, "1", dt.date(1950, 1, 1)), ("h2", KK1, "3", dt.date(1990, 1, 1)),   # head dead
        ("s1", KK2, "1", dt.date(1960, 1, 1)), ("s2", KK2, "3", dt.date(1992, 1, 1)),   # split
        ("g1", KK3, "1", dt.date(1940, 1, 1)), ("g2", KK3, "2", dt.date(1945, 1, 1)),   # dead + moved: all gone
        ("n1", KK4, "1", dt.date(1970, 1, 1)),                                           # KK unknown to Dukcapil
    ])
    link = pl.DataFrame({"id_dtks": ["h1", "g1", "g2"], "anomaly_code": [CODE.DECEASED, CODE.DECEASED, CODE.RELOCATED]})
    resolution = pl.DataFrame({"id_dtks": ["h1", "h2", "s1", "s2", "g1", "g2"], "dukcapil_person": [1, 2, 3, 4, 5, 6],
                               "resolution": ["exact_nik"] * 6})
    dukcapil = pl.LazyFrame({"source_line": [1, 2, 3, 4, 5, 6], "no_kk": [KK1, KK1, KK2, "3201999999990001", KK3, KK3]})
    found, shown = household_findings(recs, link, sure_exact_links(resolution), dukcapil)
    codes = {code: sorted(found.filter(pl.col("anomaly_code") == code)["id_dtks"]) for code in set(found["anomaly_code"])}
    assert codes == {
        CODE.HOUSEHOLD_HEAD_DECEASED: ["h1", "h2"],
        CODE.HOUSEHOLD_SPLIT: ["s1", "s2"],
        CODE.HOUSEHOLD_ALL_GONE: ["g1", "g2"],
        CODE.KK_NOT_FOUND: ["n1"],
    }
    assert dict(found.select("id_dtks", "related_id").unique().iter_rows())["h2"] == "h1"  # the head represents them
    assert set(found["action"]) <= {"review", "warn"}  # household facts never exclude by themselves
    assert shown.filter(pl.col("id_dtks") == "s2")["members"].item() == "s1, s2"


def test_a_relative_s_card_under_a_close_name_does_not_split_the_household():
    recs = records([("s1", KK2, "1", dt.date(1960, 1, 1)), ("s2", KK2, "3", dt.date(1992, 1, 1))])
    dukcapil = pl.LazyFrame({"source_line": [3, 4], "no_kk": [KK2, "3201999999990001"]})
    no_findings = pl.DataFrame(schema={"id_dtks": pl.String, "anomaly_code": pl.String})

    def split(identity_of_s2: str, name_similarity: float) -> list[str]:
        resolution = pl.DataFrame({"id_dtks": ["s1", "s2"], "dukcapil_person": [3, 4], "resolution": ["exact_nik"] * 2,
                                   "identity": ["strong", identity_of_s2], "name_similarity": [1.0, name_similarity],
                                   "dob_agreement": ["exact", "exact"]})
        found, _ = household_findings(recs, no_findings, resolution, dukcapil)
        return sorted(found.filter(pl.col("anomaly_code") == CODE.HOUSEHOLD_SPLIT)["id_dtks"])

    assert split("strong", 1.0) == ["s1", "s2"]      # the person is sure: the family lives on two cards
    assert split("consistent", 1.0) == ["s1", "s2"]  # name and birth date agree, the sex was mistyped
    assert split("consistent", 0.9) == []            # a close name on that NIK: perhaps a relative's card


def test_a_death_found_through_one_row_holds_for_the_person_s_duplicate_row():
    recs = records([("g1", KK3, "1", dt.date(1940, 1, 1)), ("g2", KK3, "1", dt.date(1940, 1, 1))])  # g2: g1 again, NIK damaged
    link = pl.DataFrame({"id_dtks": ["g1"], "anomaly_code": [CODE.DECEASED]})
    resolution = pl.DataFrame({"id_dtks": ["g1", "g2"], "dukcapil_person": [5, None], "resolution": ["exact_nik", "unresolved"]},
                              schema_overrides={"dukcapil_person": pl.Int64})
    dukcapil = pl.LazyFrame({"source_line": [5], "no_kk": [KK3]})

    def all_gone(clusters) -> list[str]:
        found, _ = household_findings(recs, link, sure_exact_links(resolution), dukcapil, clusters)
        return sorted(found.filter(pl.col("anomaly_code") == CODE.HOUSEHOLD_ALL_GONE)["id_dtks"])

    assert all_gone(None) == []  # the damaged row alone looks like a living member
    assert all_gone(pl.DataFrame({"id_dtks": ["g1", "g2"], "cluster_id": ["K-g1", "K-g1"]})) == ["g1", "g2"]


def test_a_move_holds_for_the_person_s_rows_at_the_old_address_not_for_a_re_registration():
    # h1, h2: one person written twice in kabupaten 3201 (h2's NIK damaged); Dukcapil has her
    # in 3273 (h1's link says RELOCATED). h3: the same person re-registered in 3273, alone
    # on a new KK: she lives there.
    recs = records([("h1", KK4, "1", dt.date(1950, 1, 1)), ("h2", KK4, "1", dt.date(1950, 1, 1)),
                    ("h3", KK1, "1", dt.date(1950, 1, 1))]).with_columns(kab=pl.Series(["3201", "3201", "3273"]))
    link = pl.DataFrame({"id_dtks": ["h1"], "anomaly_code": [CODE.RELOCATED]})
    resolution = pl.DataFrame({"id_dtks": ["h1", "h2", "h3"], "dukcapil_person": [7, None, 7],
                               "resolution": ["exact_nik", "unresolved", "exact_nik"]}, schema_overrides={"dukcapil_person": pl.Int64})
    clusters = pl.DataFrame({"id_dtks": ["h1", "h2", "h3"], "cluster_id": ["K-h1"] * 3})
    found, _ = household_findings(recs, link, sure_exact_links(resolution), pl.LazyFrame({"source_line": [7], "no_kk": [KK1]}),
                                  clusters)
    assert sorted(found.filter(pl.col("anomaly_code") == CODE.HOUSEHOLD_ALL_GONE)["id_dtks"]) == ["h1", "h2"]


def test_a_fuzzy_resolution_splits_a_household_only_for_a_damaged_nik():
    dukcapil = pl.LazyFrame({"source_line": [3, 4], "no_kk": [KK2, "3201999999990001"]})
    no_findings = pl.DataFrame(schema={"id_dtks": pl.String, "anomaly_code": pl.String})
    resolution = pl.DataFrame({"id_dtks": ["s1", "s2"], "dukcapil_person": [3, 4], "resolution": ["exact_nik", "fuzzy"],
                               "identity": ["strong", None], "name_similarity": [1.0, None], "dob_agreement": ["exact", None]})

    def split(s2_carries_own_number: bool) -> list[str]:
        recs = records([("s1", KK2, "1", dt.date(1960, 1, 1)), ("s2", KK2, "3", dt.date(1992, 1, 1))]).with_columns(
            nik_consistent=pl.Series([True, s2_carries_own_number]))
        found, _ = household_findings(recs, no_findings, resolution, dukcapil)
        return sorted(found.filter(pl.col("anomaly_code") == CODE.HOUSEHOLD_SPLIT)["id_dtks"])

    assert split(False) == ["s1", "s2"]  # a damaged NIK resolved by name, birth date and region
    assert split(True) == []             # her own number, which Dukcapil lacks: the link found a namesake


@pytest.fixture(scope="module")
def linked_round(generated_round):
    """Rows of the generated round to build list entries from: exact-NIK resolved, clean names."""
    out = generated_round["out"]
    resolution = pl.read_parquet(out / "resolution.parquet")
    recs = pl.read_parquet(out / "staging" / "records.parquet")
    clusters = pl.read_parquet(out / "duplicate_clusters.parquet")
    chosen = (
        recs.join(resolution.filter(pl.col("resolution") == "exact_nik"), on="id_dtks")
        .join(clusters.filter(pl.col("cluster_size") == 1).select("id_dtks"), on="id_dtks", how="semi")
        .filter(pl.col("nik") == pl.col("dukcapil_nik"))
        .sort("id_dtks").head(5).select("id_dtks", "nik", "nama", "tanggal_lahir")
    )
    return {"out": out, "resolution": resolution, "clusters": clusters, "chosen": chosen}


def run_lists(linked_round, entries: pl.DataFrame, dukcapil_staging: str | None = None) -> pl.DataFrame:
    import duckdb

    con = register_macros(duckdb.connect())
    try:
        matches, _ = link_lists(con, entries.with_columns(file=pl.lit("daftar.csv"), source_line=pl.int_range(2, 2 + pl.len())),
                                str(linked_round["out"] / "staging" / "records.parquet"), linked_round["resolution"],
                                linked_round["clusters"], load_model(LINK_MODEL_PATH), as_of_year=2026,
                                dukcapil_staging=dukcapil_staging)
    finally:
        con.close()
    return matches


def entry(row: dict, jenis: str, nik: str | None = None, nama: str | None = None, lahir=None) -> dict:
    return {"nik": nik or row["nik"], "nama": nama or row["nama"], "tanggal_lahir": lahir, "jenis": jenis,
            "sumber": "BKN", "tanggal": "2025-05-31"}


def test_exact_match_excludes_only_as_declared_and_a_fuzzy_one_goes_to_review(linked_round):
    a, b, c, d, e = linked_round["chosen"].to_dicts()
    typo = d["nik"][:14] + str((int(d["nik"][14]) + 3) % 10) + d["nik"][15]
    entries = pl.DataFrame([
        entry(a, "ASN", lahir=a["tanggal_lahir"]),                                  # exact, confirmed: excludes
        entry(b, "BPJSTK_DI_ATAS_UMP"),                                             # exact, a type for review
        entry(c, "ASN", nama="BAMBANG SUPRIYADI WIJAYAKUSUMA"),                     # NIK right, another name: no match
        entry(d, "TNI", nik=typo, lahir=d["tanggal_lahir"]),                        # damaged NIK: fuzzy, review
        entry(e, "POLRI", lahir=e["tanggal_lahir"] + dt.timedelta(days=400)),       # birth date disagrees: review
    ], schema_overrides={"tanggal_lahir": pl.Date})
    matches = run_lists(linked_round, entries)
    got = {row["id_dtks"]: (row["method"], row["action"]) for row in matches.iter_rows(named=True)}
    assert got == {a["id_dtks"]: ("exact", "exclude"), b["id_dtks"]: ("exact", "review"),
                   d["id_dtks"]: ("fuzzy", "review"), e["id_dtks"]: ("exact", "review")}
    anomalies = not_eligible_anomalies(matches)
    assert set(anomalies["anomaly_code"]) == {CODE.NOT_ELIGIBLE}
    assert anomalies.filter(pl.col("id_dtks") == d["id_dtks"])["related_id"].item() == "TNI"
    assert anomalies.filter(pl.col("id_dtks") == d["id_dtks"])["detail"].item().startswith("TNI")


def test_a_listed_twin_one_vowel_apart_on_the_same_card_goes_to_review(linked_round):
    """The list names RINA under the NIK and birth date a DTKS row carries as RINI: twins
    share birth dates and, often, a card; the phonetic key agrees, which links them, but
    one vowel apart never excludes."""
    a = linked_round["chosen"].to_dicts()[0]
    twin = re.sub(r"([AEIOU])([^AEIOU]*)$", lambda m: ("I" if m.group(1) == "A" else "A") + m.group(2), a["nama"].upper())
    entries = pl.DataFrame([entry(a, "ASN", nama=twin, lahir=a["tanggal_lahir"])], schema_overrides={"tanggal_lahir": pl.Date})
    matches = run_lists(linked_round, entries)
    assert matches.select("id_dtks", "method", "action").rows() == [(a["id_dtks"], "exact", "review")]


def _servant_entry(a: dict, nik: str, with_birth_date: bool = False) -> pl.DataFrame:
    # A civil servant who is not in DTKS, with the name and birth date of a recipient; a
    # list without birth dates has only the date its NIK encodes.
    return pl.DataFrame([entry(a, "ASN", nik=nik, lahir=a["tanggal_lahir"] if with_birth_date else None)],
                        schema_overrides={"tanggal_lahir": pl.Date})


def _two_serial_digits_apart(nik: str) -> str:
    return nik[:14] + ("98" if nik[14:] != "98" else "97")


def test_a_list_nik_the_registry_knows_is_never_scored_against_dtks_namesakes(linked_round, tmp_path):
    a = linked_round["chosen"].row(0, named=True)
    servant_nik = a["nik"][:15] + str((int(a["nik"][15]) + 1) % 10)  # one serial digit apart
    entries = _servant_entry(a, servant_nik, with_birth_date=True)
    assert run_lists(linked_round, entries)["id_dtks"].to_list() == [a["id_dtks"]]  # the namesake, by name and date alone
    pl.DataFrame({
        "source_line": [2], "nik": [servant_nik], "no_kk": [None], "nama": [a["nama"]], "jenis_kelamin": [None],
        "tanggal_lahir": [a["tanggal_lahir"]], "kode_wilayah": ["5101011001"], "deceased": [False], "tanggal_meninggal": [None],
    }, schema_overrides={"no_kk": pl.String, "jenis_kelamin": pl.String, "tanggal_meninggal": pl.Date}).write_parquet(
        tmp_path / "dukcapil.parquet")
    assert run_lists(linked_round, entries, str(tmp_path / "dukcapil.parquet")).height == 0


def test_two_readable_niks_far_apart_are_two_people_whatever_the_names_say(linked_round):
    a = linked_round["chosen"].row(0, named=True)
    far = "510101" + a["nik"][6:12] + "0987"
    assert run_lists(linked_round, _servant_entry(a, far)).height == 0
    damaged = pl.DataFrame([entry(a, "ASN", nik=a["nik"][:6] + "O" + a["nik"][7:], lahir=a["tanggal_lahir"])],
                           schema_overrides={"tanggal_lahir": pl.Date})  # unreadable: the fuzzy way is for this
    assert run_lists(linked_round, damaged)["id_dtks"].to_list() == [a["id_dtks"]]


def test_without_a_birth_date_a_nik_two_edits_away_or_another_name_is_someone_else(linked_round):
    a, b = linked_round["chosen"].row(0, named=True), linked_round["chosen"].row(1, named=True)
    # Name and sex alone back a link when the list has no birth date: a namesake has them too.
    assert run_lists(linked_round, _servant_entry(a, _two_serial_digits_apart(a["nik"]))).height == 0
    # One typo in the date part, the birth date on the list, but another name: a neighbour
    # born that day, however strongly number and date agree.
    typo = b["nik"][:11] + str((int(b["nik"][11]) + 1) % 10) + b["nik"][12:]
    other = pl.DataFrame([entry(b, "ASN", nik=typo, nama="BAMBANG SUPRIYADI WIJAYAKUSUMA", lahir=b["tanggal_lahir"])],
                         schema_overrides={"tanggal_lahir": pl.Date})
    assert run_lists(linked_round, other).height == 0
    same = other.with_columns(nama=pl.lit(b["nama"]))
    assert run_lists(linked_round, same)["id_dtks"].to_list() == [b["id_dtks"]]


def test_a_list_without_birth_dates_finds_a_nik_mistyped_in_its_year(linked_round):
    c = linked_round["chosen"].row(2, named=True)
    year_typo = c["nik"][:11] + str((int(c["nik"][11]) + 1) % 10) + c["nik"][12:]  # the date it encodes is a year off
    matches = run_lists(linked_round, pl.DataFrame([entry(c, "TNI", nik=year_typo)], schema_overrides={"tanggal_lahir": pl.Date}))
    assert matches.select("id_dtks", "method", "action").rows() == [(c["id_dtks"], "fuzzy", "review")]


def test_without_a_birth_date_only_the_whole_name_lets_an_exact_match_exclude(linked_round):
    plain = [row for row in linked_round["chosen"].to_dicts() if " BIN" not in row["nama"]][:2]
    same, other_father = plain
    entries = pl.DataFrame([
        entry(same, "ASN"),                                                   # NIK and whole name: excludes
        entry(other_father, "ASN", nama=other_father["nama"] + " BIN YUSUF ISMAIL"),  # a patronym DTKS lacks: review
    ], schema_overrides={"tanggal_lahir": pl.Date})
    got = {row["id_dtks"]: row["action"] for row in run_lists(linked_round, entries).iter_rows(named=True)}
    assert got == {same["id_dtks"]: "exclude", other_father["id_dtks"]: "review"}


def test_a_row_on_two_lists_gets_one_case_with_the_stronger_action(linked_round):
    a = linked_round["chosen"].row(0, named=True)
    entries = pl.DataFrame([entry(a, "PENGURUS_BADAN_USAHA"), entry(a, "PENSIUNAN")], schema_overrides={"tanggal_lahir": pl.Date})
    anomalies = not_eligible_anomalies(run_lists(linked_round, entries))
    assert anomalies.height == 1
    assert anomalies.row(0, named=True)["action"] == "exclude" and anomalies["related_id"].item() == "PENSIUNAN"
    assert "PENGURUS_BADAN_USAHA" in anomalies["detail"].item()


def test_round_reads_the_list_and_reports_each_type(generated_round):
    summary = generated_round["summary"]
    eligibility = summary["eligibility"]
    assert eligibility["ineligible_lists"][0]["rows_quarantined"] == 0
    assert set(eligibility["not_eligible_by_type"]) >= {"ASN", "BPJSTK_DI_ATAS_UMP"}
    assert eligibility["not_eligible_links"]["exact"] > 0 and eligibility["not_eligible_links"]["fuzzy"] > 0
    # Types declared for review never exclude, whatever the link.
    assert "exclude" not in eligibility["not_eligible_by_type"]["BPJSTK_DI_ATAS_UMP"]


def test_unknown_list_type_is_quarantined_with_its_line(tmp_path):
    from pipeline.ingest import ingest_extract

    path = tmp_path / "daftar.csv"
    path.write_text("NIK;NAMA;JENIS;SUMBER\n'3201014501900012;SITI AMINAH;pns;BKN\n3201014501900013;ANI;ASTRONOT;BKN\n;BUDI;TNI;X\n")
    result = ingest_extract(path, "ineligible", tmp_path / "staging", "2026-01-01")
    staged = pl.read_parquet(result.staging_path)
    assert staged.select("nik", "jenis").rows() == [("3201014501900012", "ASN")]
    quarantine = pl.read_parquet(result.quarantine_path)
    assert quarantine["line"].to_list() == [3, 4]
    assert "jenis daftar tidak dikenal" in quarantine["reason"][0]


def test_workbooks_give_each_list_type_a_sheet_and_each_household_one_case(generated_round):
    """Across the per-kabupaten workbooks: one `Tidak layak <type>` sheet per list type
    with cases, and a household code listed once per household (not once per member)."""
    import openpyxl

    from pipeline.contract import codes_where, sheets, workbook_settings

    out = generated_round["out"]
    anomalies = pl.read_parquet(out / "anomalies.parquet").filter(pl.col("action") != "warn")
    per_type = next(name for name, sheet in sheets().items() if sheet.per_type)
    household = list(codes_where(lambda rule: rule.scope == "household"))
    listed, household_rows = {}, 0
    for path in sorted((out / workbook_settings()["folder"]).glob("*.xlsx")):
        if path.name == workbook_settings()["national_file"]:
            continue
        book = openpyxl.load_workbook(path, read_only=True)
        for name in book.sheetnames:
            rows = book[name].max_row - 1
            if name.startswith(f"{per_type} "):
                listed[name] = listed.get(name, 0) + rows
            elif name == anomaly_rules()[household[0]].sheet:
                household_rows += rows
        book.close()
    expected = anomalies.filter(pl.col("anomaly_code") == CODE.NOT_ELIGIBLE).group_by("related_id").len()
    assert listed == {f"{per_type} {kind}"[:31]: n for kind, n in expected.iter_rows()}
    shown = anomalies.filter(pl.col("anomaly_code").is_in(household) & (pl.col("id_dtks") == pl.col("related_id")))
    assert 0 < household_rows == shown.height < anomalies.filter(pl.col("anomaly_code").is_in(household)).height


def test_a_member_two_dead_namesakes_could_be_counts_as_gone_one_who_may_live_does_not(tmp_path):
    from conftest import make_nik, run_csv_round

    kec, desa, born = "320101", "3201011001", "1950-03-03"
    # Each household: one member whose NIK is missing, and two namesakes born the same
    # day in her desa in Dukcapil, whom the fuzzy link cannot tell apart.
    dtks, dukcapil = [], []
    for n, (household, second_dies) in enumerate((("A", True), ("B", False))):
        name = ("SUMIYATI WULANDARI", "KARTINI RAHAYU")[n]
        kk = f"{kec}0101150{n + 1:03d}"
        dtks.append(f"{household}1,,{kk},{name},P,BOGOR,{born},JL MAWAR,{desa},PKH")
        for serial, died in ((10 + 2 * n, "2024-01-01"), (11 + 2 * n, "2024-02-02" if second_dies else "")):
            dukcapil.append(f"{make_nik(kec, born, True, serial)},{kec}0101159{serial:03d},{name},P,BOGOR,{born},JL X,{desa},{died}")
    out = run_csv_round(tmp_path, dtks, dukcapil)
    links = pl.read_parquet(out / "dukcapil_links.parquet").filter(pl.col("link_method") == "fuzzy")
    assert dict(links.select("id_dtks", "ambiguous").iter_rows()) == {"A1": True, "B1": True}
    assert dict(links.select("id_dtks", "contenders_away").iter_rows()) == {"A1": True, "B1": False}
    anomalies = pl.read_parquet(out / "anomalies.parquet")
    gone = anomalies.filter(pl.col("anomaly_code") == CODE.HOUSEHOLD_ALL_GONE)
    assert gone["id_dtks"].to_list() == ["A1"] and "tidak pasti" in gone["detail"].item()
    assert anomalies.filter(pl.col("anomaly_code") == CODE.DECEASED).height == 0  # nobody is declared dead on it


def test_the_list_model_reads_only_what_a_list_row_has():
    # The list link reuses the civil-registry link model; a level reading a DTKS-only fact
    # (whether any civil-registry record holds the row's number) must be left out of it.
    from pipeline.findings.ineligible import RIGHT_COLUMNS, list_model, standardise_list

    entries = pl.DataFrame({"nik": ["3201014501900012"], "nama": ["SITI AMINAH"], "tanggal_lahir": [dt.date(1990, 1, 5)],
                            "jenis": ["pns"], "sumber": ["BKN"], "tanggal": ["2025-05-31"]})
    list_columns = set(standardise_list(entries, 2026).columns)
    model = list_model(load_model(LINK_MODEL_PATH))
    conditions = " ".join(level["when"] for comparison in model["comparisons"] for level in comparison["levels"])
    assert set(re.findall(r"\bl\.(\w+)", conditions)) <= list_columns
    assert set(re.findall(r"\br\.(\w+)", conditions)) <= set(RIGHT_COLUMNS)
    full = " ".join(level["when"] for comparison in load_model(LINK_MODEL_PATH)["comparisons"] for level in comparison["levels"])
    assert "l.nik_found" in full and "l.nik_found" not in conditions
