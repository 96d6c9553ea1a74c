"""Tests for the Great Expectations suites on normalized staging extracts."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from pipeline.checks.expectations import SUITE_SPECS, validate_extract

N = 20
NAMES = [f"SITI AMINAH BINTI SUPARMAN {chr(65 + i)}" for i in range(N)]
NIKS = [f"32730141{i:02d}900{i:03d}" for i in range(N)]
KKS = [f"32730120{i:02d}100{i:03d}" for i in range(N)]


def dtks_frame(**overrides: list) -> pl.DataFrame:
    columns = {
        "source_line": pl.Series(range(2, N + 2), dtype=pl.Int64),
        "id_dtks": [f"DTKS-{i:05d}" for i in range(N)],
        "nik_raw": NIKS,
        "nik": NIKS,
        "no_kk": [None if i % 5 == 0 else kk for i, kk in enumerate(KKS)],
        "nama": NAMES,
        "jenis_kelamin": ["L" if i % 2 else "P" for i in range(N)],
        "tempat_lahir": [None if i % 3 == 0 else "BANDUNG" for i in range(N)],
        "tanggal_lahir": [dt.date(1950 + i, 1 + i % 12, 1 + i) for i in range(N)],
        "alamat": ["JL. MERDEKA NO. 1"] * N,
        "kode_wilayah": ["3273010001"] * N,
        "program": [None if i % 2 else "PKH" for i in range(N)],
    }
    columns.update(overrides)
    return pl.DataFrame(columns, schema_overrides={"tanggal_lahir": pl.Date})


def dukcapil_frame(**overrides: list) -> pl.DataFrame:
    columns = {
        "source_line": pl.Series(range(2, N + 2), dtype=pl.Int64),
        "nik_raw": NIKS,
        "nik": NIKS,
        "no_kk": KKS,
        "nama": NAMES,
        "jenis_kelamin": ["L" if i % 2 else "P" for i in range(N)],
        "tempat_lahir": ["BANDUNG"] * N,
        "tanggal_lahir": [dt.date(1950 + i, 1 + i % 12, 1 + i) for i in range(N)],
        "alamat": [None] * N,
        "kode_wilayah": ["3273010001"] * N,
        "tanggal_meninggal": [dt.date(2020, 5, 17) if i == 3 else None for i in range(N)],
    }
    columns.update(overrides)
    return pl.DataFrame(
        columns,
        schema_overrides={"tanggal_lahir": pl.Date, "tanggal_meninggal": pl.Date,
                          "alamat": pl.String},
    )


def result(report: dict, rule: str) -> dict:
    (match,) = [r for r in report["results"] if r["rule"] == rule]
    return match


def failed_rules(report: dict) -> set[str]:
    return {r["rule"] for r in report["results"] if not r["success"]}


def test_good_dtks_frame_passes():
    report = validate_extract(dtks_frame(), "dtks")
    assert report["success"], failed_rules(report)
    assert report["kind"] == "dtks"
    assert report["rows"] == N
    assert report["evaluated"] == report["successful"] == len(SUITE_SPECS["dtks"])
    assert [r["rule"] for r in report["results"]] == [s["rule"] for s in SUITE_SPECS["dtks"]]
    assert isinstance(report["seconds"], float)
    json.dumps(report, allow_nan=False)
    no_kk = result(report, "no_kk.format")
    assert no_kk["unexpected_count"] == 0
    assert no_kk["missing_count"] == 4  # nulls are skipped, not failed


def test_nik_holding_names_fails_regex():
    report = validate_extract(dtks_frame(nik=NAMES), "dtks")
    assert not report["success"]
    nik = result(report, "nik.format")
    assert nik["expectation"] == "expect_column_values_to_match_regex"
    assert nik["column"] == "nik"
    assert not nik["success"]
    assert nik["unexpected_count"] == N
    assert nik["unexpected_percent"] == pytest.approx(100.0)
    assert failed_rules(report) == {"nik.format"}


def test_few_bad_niks_are_tolerated_by_mostly():
    niks = list(NIKS)
    niks[0] = "0000000000000"  # 1 of 20 = 5 % < 10 %
    report = validate_extract(dtks_frame(nik=niks), "dtks")
    nik = result(report, "nik.format")
    assert nik["success"]
    assert nik["unexpected_count"] == 1
    assert nik["kwargs"]["mostly"] == 0.9


def test_null_in_required_column_fails_not_null():
    names = list(NAMES)
    names[7] = None
    report = validate_extract(dtks_frame(nama=names), "dtks")
    nama = result(report, "nama.not_null")
    assert nama["expectation"] == "expect_column_values_to_not_be_null"
    assert not nama["success"]
    assert nama["unexpected_count"] == 1
    assert failed_rules(report) == {"nama.not_null"}


def test_unknown_sex_code_fails_value_set():
    sexes = ["L"] * N
    sexes[4] = "X"
    report = validate_extract(dtks_frame(jenis_kelamin=sexes), "dtks")
    jk = result(report, "jenis_kelamin.in_set")
    assert not jk["success"]
    assert jk["unexpected_count"] == 1
    assert jk["kwargs"]["value_set"] == ["L", "P"]


def test_duplicate_id_dtks_fails_uniqueness():
    ids = [f"DTKS-{i:05d}" for i in range(N)]
    ids[9] = ids[8]
    report = validate_extract(dtks_frame(id_dtks=ids), "dtks")
    unique = result(report, "id_dtks.unique")
    assert not unique["success"]
    assert unique["unexpected_count"] == 2  # both rows of the duplicated id
    assert failed_rules(report) == {"id_dtks.unique"}


def test_birth_dates_out_of_range_fail():
    dates = [dt.date(1980, 1, 1)] * N
    dates[0] = dt.date(1899, 12, 31)
    dates[1] = dt.date.today() + dt.timedelta(days=1)
    dates[2] = dt.date(1, 1, 1)  # outside pandas' datetime64[ns] range
    report = validate_extract(dtks_frame(tanggal_lahir=dates), "dtks")
    born = result(report, "tanggal_lahir.range")
    assert not born["success"]
    assert born["unexpected_count"] == 3
    assert born["kwargs"]["min_value"].startswith("1900-01-01")
    assert born["kwargs"]["max_value"].startswith(dt.date.today().isoformat())


def test_bad_kode_wilayah_fails():
    codes = ["3273010001"] * N
    codes[0] = "32.73.01.1001"
    report = validate_extract(dtks_frame(kode_wilayah=codes), "dtks")
    assert result(report, "kode_wilayah.format")["unexpected_count"] == 1
    assert not report["success"]


def test_missing_column_is_reported_not_raised():
    report = validate_extract(dtks_frame().drop("nik"), "dtks")
    assert not report["success"]
    columns = result(report, "table.columns")
    assert not columns["success"]
    assert columns["mismatched"] == {"missing": ["nik"]}
    nik = result(report, "nik.format")
    assert not nik["success"]
    assert nik["unexpected_count"] is None
    assert "error" in nik
    json.dumps(report, allow_nan=False)


def test_empty_frame_fails_row_count():
    report = validate_extract(dtks_frame().clear(), "dtks")
    assert report["rows"] == 0
    assert not result(report, "table.row_count")["success"]
    json.dumps(report, allow_nan=False)


def test_report_holds_no_personal_values():
    niks = list(NIKS)
    niks[0] = "9999888877776"  # an invalid NIK GX would list as unexpected
    frames = [
        dtks_frame(nik=niks),
        dtks_frame(nik=NAMES),  # names in the NIK column: every value unexpected
        dtks_frame(jenis_kelamin=["X"] * N, kode_wilayah=NIKS, no_kk=NAMES),
    ]
    for frame in frames:
        dumped = json.dumps(validate_extract(frame, "dtks"))
        for value in [*NIKS, *KKS, *NAMES, "9999888877776", "SITI AMINAH"]:
            assert value not in dumped
        assert "partial_unexpected" not in dumped
        assert "unexpected_list" not in dumped


def test_dukcapil_with_null_death_dates_passes():
    frame = dukcapil_frame()
    assert frame["tanggal_meninggal"].null_count() == N - 1
    report = validate_extract(frame, "dukcapil")
    assert report["success"], failed_rules(report)
    assert report["kind"] == "dukcapil"
    assert [r["rule"] for r in report["results"]] == [s["rule"] for s in SUITE_SPECS["dukcapil"]]
    assert "id_dtks.unique" not in {r["rule"] for r in report["results"]}
    death = result(report, "tanggal_meninggal.range")
    assert death["unexpected_count"] == 0
    assert death["missing_count"] == N - 1


def test_dukcapil_death_before_birth_fails():
    deaths = [None] * N
    deaths[5] = dt.date(1940, 1, 1)  # born 1955
    report = validate_extract(dukcapil_frame(tanggal_meninggal=deaths), "dukcapil")
    assert failed_rules(report) == {"tanggal_meninggal.after_lahir"}
    assert result(report, "tanggal_meninggal.after_lahir")["unexpected_count"] == 1


def test_dukcapil_all_null_death_dates():
    report = validate_extract(dukcapil_frame(tanggal_meninggal=[None] * N), "dukcapil")
    assert report["success"], failed_rules(report)


def test_unknown_kind_raises():
    with pytest.raises(ValueError):
        validate_extract(dtks_frame(), "siks")


def test_chunked_validation_gives_the_whole_extract_s_results(tmp_path):
    """A Parquet extract is validated chunk by chunk (memory of one chunk) with the same
    results as the whole frame: counts add up, duplicates are found across chunks."""
    from pipeline.checks.expectations import validate_extract

    frame = pl.DataFrame({
        "source_line": list(range(2, 2002)),
        "id_dtks": [f"D{i % 1900:05d}" for i in range(2000)],  # 100 ids appear twice
        "nik_raw": ["x"] * 2000, "nik": ["3201014505010001" if i % 7 else "BAD" for i in range(2000)],
        "no_kk": [None] * 2000, "nama": ["A"] * 2000, "jenis_kelamin": ["L", "P", "X", "L"] * 500,
        "tempat_lahir": [None] * 2000, "tanggal_lahir": [dt.date(1990, 1, 1)] * 2000, "alamat": [None] * 2000,
        "kode_wilayah": ["3201011001"] * 2000, "program": ["PKH"] * 2000,
    }, schema_overrides={"no_kk": pl.String, "tempat_lahir": pl.String, "alamat": pl.String})
    path = tmp_path / "dtks.parquet"
    frame.write_parquet(path)
    whole = validate_extract(frame, "dtks")
    for chunk_rows in (300, 700):  # 7 chunks scattered in one pass over the file; 3 read by a filter each
        chunked = validate_extract(str(path), "dtks", chunk_rows=chunk_rows)
        assert [r for r in chunked["results"]] == [r for r in whole["results"]]
        assert chunked["rows"] == whole["rows"] == 2000
    unique = next(r for r in whole["results"] if r["rule"] == "id_dtks.unique")
    assert unique["unexpected_count"] == 200 and not unique["success"]
    assert [p.name for p in tmp_path.iterdir()] == ["dtks.parquet"]  # the chunks' files are gone

    # More chunks than the hash fills: the empty ones are validated as empty frames.
    few = frame.head(6)
    few.write_parquet(path)
    assert validate_extract(str(path), "dtks", chunk_rows=1)["results"] == validate_extract(few, "dtks")["results"]


def test_dukcapil_validated_in_slices_gives_the_whole_extract_s_results(tmp_path):
    """Dukcapil has no rule comparing rows with each other, so its chunks are consecutive
    slices of the file; every count, the failures spread over several slices and a short
    last slice, adds up to the whole extract's."""
    from pipeline.checks.expectations import validate_extract

    rows = 2003
    frame = pl.DataFrame({
        "source_line": pl.Series(range(2, rows + 2), dtype=pl.Int64),
        "nik_raw": ["x"] * rows,
        "nik": ["3273014505500001" if i % 9 else ("BAD" if i % 2 else None) for i in range(rows)],
        "no_kk": [None if i % 5 == 0 else "3273010101010001" for i in range(rows)],
        "nama": ["A"] * rows,
        "jenis_kelamin": [["L", "P", "X"][i % 3] for i in range(rows)],
        "tempat_lahir": [None] * rows,
        "tanggal_lahir": [dt.date(1880 if i % 301 == 0 else 1960, 1, 1) for i in range(rows)],
        "alamat": [None] * rows,
        "kode_wilayah": ["3273010001" if i % 13 else "32730" for i in range(rows)],
        "tanggal_meninggal": [dt.date(1950, 1, 1) if i % 250 == 0 else (dt.date(2020, 1, 1) if i % 3 == 0 else None)
                              for i in range(rows)],
    }, schema_overrides={"no_kk": pl.String, "tempat_lahir": pl.String, "alamat": pl.String,
                         "tanggal_lahir": pl.Date, "tanggal_meninggal": pl.Date})
    path = tmp_path / "dukcapil.parquet"
    frame.write_parquet(path, row_group_size=128)
    whole = validate_extract(frame, "dukcapil")
    assert result(whole, "tanggal_meninggal.after_lahir")["unexpected_count"] > 0
    assert result(whole, "nik.format")["unexpected_count"] > 0 and result(whole, "kode_wilayah.format")["unexpected_count"] > 0
    for chunk_rows in (300, 1000, 667):  # 7, 3 and 4 slices, each with a short last one
        chunked = validate_extract(str(path), "dukcapil", chunk_rows=chunk_rows)
        assert chunked["results"] == whole["results"]
        assert chunked["rows"] == rows
    assert [p.name for p in tmp_path.iterdir()] == ["dukcapil.parquet"]
