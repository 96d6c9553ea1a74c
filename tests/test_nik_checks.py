"""Each NIK rule, table-driven. NIKs are built from parts so no real-looking literal is
needed: kecamatan + DDMMYY (+40 on the day for women) + serial."""

import datetime as dt

import polars as pl
import pytest

from pipeline.checks.nik import check_niks


def nik(kec="320101", day=5, month=1, year=90, female=False, serial="0012"):
    return f"{kec}{day + (40 if female else 0):02d}{month:02d}{year:02d}{serial}"


def run(nik_value, sex="L", dob=dt.date(1990, 1, 5)):
    frame = pl.DataFrame(
        {"id_dtks": ["X"], "nik": [nik_value], "jenis_kelamin": [sex], "tanggal_lahir": [dob]},
        schema={"id_dtks": pl.String, "nik": pl.String, "jenis_kelamin": pl.String, "tanggal_lahir": pl.Date},
    )
    facts, anomalies = check_niks(frame)
    return facts.row(0, named=True), set(anomalies["anomaly_code"].to_list())


FORMAT_CASES = [
    ("empty", "", "kosong"),
    ("null", None, "kosong"),
    ("letters", nik()[:-2] + "O2", "huruf"),
    ("scientific", "3.20101E+15", "notasi ilmiah"),
    ("scientific lower", "3,20101e+15", "notasi ilmiah"),
    ("float suffix", nik() + ".0", "akhiran .0"),
    ("15 digits", nik()[:-1], "15 digit"),
    ("17 digits", nik() + "1", "17 digit"),
    ("serial 0000", nik(serial="0000"), "nomor urut 0000"),
    ("spaces inside", nik()[:8] + " " + nik()[8:], "huruf"),
]


@pytest.mark.parametrize("label,value,problem", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_invalid_format(label, value, problem):
    facts, codes = run(value)
    assert codes == {"NIK_INVALID_FORMAT"}
    assert problem in facts["nik_format_problem"]
    assert facts["nik_valid"] is False


REGION_CASES = [
    ("current kecamatan", "320101", set()),
    ("retired Papua kecamatan (Mimika Baru, 2022 split)", "910901", set()),
    ("retired Papua Barat kecamatan (2025 split)", "920101", set()),
    ("unknown kecamatan", "329999", {"NIK_INVALID_REGION"}),
    ("unknown province", "990101", {"NIK_INVALID_REGION"}),
]


@pytest.mark.parametrize("label,kec,expected", REGION_CASES, ids=[c[0] for c in REGION_CASES])
def test_region(label, kec, expected):
    _, codes = run(nik(kec=kec))
    assert codes == expected


DATE_CASES = [
    ("day 00", dict(day=0), True),
    ("day 32", dict(day=32), True),
    ("day 40", dict(day=40), True),
    ("day 72 (women +40 above 71)", dict(day=32, female=True), True),
    ("month 13", dict(month=13), True),
    ("month 00", dict(month=0), True),
    ("31 April", dict(day=31, month=4), True),
    ("30 February", dict(day=30, month=2), True),
    ("29 February 2000", dict(day=29, month=2, year=0), False),
    ("29 February 1996", dict(day=29, month=2, year=96), False),
    ("29 February 1997", dict(day=29, month=2, year=97), True),
    ("woman born on the 31st (day 71)", dict(day=31, month=1, female=True), False),
]


@pytest.mark.parametrize("label,parts,invalid", DATE_CASES, ids=[c[0] for c in DATE_CASES])
def test_date(label, parts, invalid):
    facts, codes = run(nik(**parts), sex="P" if parts.get("female") else "L")
    assert ("NIK_INVALID_DATE" in codes) is invalid
    assert facts["nik_date_valid"] is (not invalid)


def test_women_plus_forty_is_not_a_sex_mismatch():
    _, codes = run(nik(female=True), sex="P")
    assert codes == set()


@pytest.mark.parametrize("female,sex", [(True, "L"), (False, "P")])
def test_sex_mismatch(female, sex):
    facts, codes = run(nik(female=female), sex=sex)
    assert codes == {"NIK_SEX_MISMATCH"}
    assert facts["nik_sex"] == ("P" if female else "L")


@pytest.mark.parametrize(
    "dob,mismatch",
    [(dt.date(1990, 1, 5), False), (dt.date(1990, 1, 6), True), (dt.date(1990, 2, 5), True), (dt.date(1991, 1, 5), True),
     (dt.date(2090, 1, 5), False)],
)
def test_dob_mismatch_is_a_warning_only(dob, mismatch):
    facts, codes = run(nik(), dob=dob)
    assert ("NIK_DOB_MISMATCH" in codes) is mismatch
    # A corrected birth date leaves the NIK valid.
    assert facts["nik_valid"] is True


@pytest.mark.parametrize(
    "dob,placeholder",
    [(dt.date(1970, 7, 1), True), (dt.date(1965, 12, 31), True), (dt.date(1950, 1, 1), True), (dt.date(1950, 1, 2), False)],
)
def test_placeholder_birth_dates_are_marked(dob, placeholder):
    facts, _ = run(nik(day=dob.day, month=dob.month, year=dob.year % 100), dob=dob)
    assert facts["dob_placeholder"] is placeholder


def test_anomaly_rows_carry_severity_and_action_from_rules():
    frame = pl.DataFrame({
        "id_dtks": ["a", "b"], "nik": ["", nik(day=0)], "jenis_kelamin": ["L", "L"],
        "tanggal_lahir": [dt.date(1990, 1, 5)] * 2,
    })
    _, anomalies = check_niks(frame)
    rows = {r["anomaly_code"]: r for r in anomalies.to_dicts()}
    assert rows["NIK_INVALID_FORMAT"]["severity"] == "high" and rows["NIK_INVALID_FORMAT"]["action"] == "review"
    assert rows["NIK_INVALID_DATE"]["id_dtks"] == "b"


def test_current_kabupaten_eager_and_lazy():
    """In the frame's order: a current code, a retired one (Papua's 9101 -> 9301), an
    unknown one kept as it is, a short code and a missing one."""
    from pipeline.checks import wilayah

    frame = pl.DataFrame({"kode_wilayah": ["3201010001", "9101", "9999123", "32", None, "3273"]})
    expected = pl.Series("kab", ["3201", "9301", "9999", "32", None, "3273"])
    assert expected.to_list()[:2] == ["3201", "9301"]
    eager = wilayah.with_current_kabupaten(frame, "kode_wilayah", "kab")
    lazy = wilayah.with_current_kabupaten(frame.lazy(), "kode_wilayah", "kab").collect(engine="streaming")
    assert eager.columns == lazy.columns == ["kode_wilayah", "kab"]
    assert eager["kab"].equals(expected) and lazy["kab"].equals(expected)
