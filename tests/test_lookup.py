"""Cek status: the index answers each person's status as the round decided it, NIK only
with the right name, region queries capped and masked; the server rate-limits, logs
nothing personal, files objections and follows the round when it is replaced."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

import polars as pl
import pytest
from fastapi.testclient import TestClient

from pipeline.cli import main
from pipeline.lookup.index import LookupIndex, build_index, index_dir, standard_names
from pipeline.lookup.objections import read_queue
from pipeline.lookup.server import Settings, create_app

OUTCOMES = {"verified_recipients.parquet": "terverifikasi", "review.parquet": "diperiksa",
            "excluded.parquet": "tidak_memenuhi_syarat"}


@pytest.fixture(scope="module")
def rows(generated_round) -> pl.DataFrame:
    """Every parsed row of the 20k round with its outcome as a status."""
    out = generated_round["out"]
    return pl.concat([
        pl.read_parquet(out / name).select("id_dtks", "nik", "nama", "kode_wilayah", "exclude_codes", "review_codes",
                                           "cluster_id", own=pl.lit(status))
        for name, status in OUTCOMES.items()
    ]).join(pl.read_parquet(out / "duplicate_clusters.parquet").select("id_dtks", "canonical_id_dtks"), on="id_dtks")


@pytest.fixture(scope="module")
def index(generated_round) -> LookupIndex:
    return LookupIndex(index_dir(generated_round["out"]))


def expected_people(rows: pl.DataFrame) -> pl.DataFrame:
    """Status a person should read, computed from the outputs: their own row's outcome,
    except a row held only as a duplicate (excluded or in review), which reads as the row
    kept."""
    kept = rows.select(canonical_id_dtks=pl.col("id_dtks"), kept_status=pl.col("own"))
    only_duplicate = (pl.col("exclude_codes").list.join(",") == "DUPLICATE_PERSON") | (
        (pl.col("exclude_codes").list.len() == 0) & (pl.col("review_codes").list.join(",") == "DUPLICATE_PERSON"))
    from pipeline.lookup.index import STATUS_RANK

    people = rows.join(kept, on="canonical_id_dtks", how="left").with_columns(
        expected=pl.when(only_duplicate).then(pl.col("kept_status")).otherwise(pl.col("own")),
        std=pl.Series(standard_names(rows["nama"].to_list())),
    )
    # Asked by desa and name, every row of the person with that name answers at once: the
    # best status.
    rank = pl.col("expected").replace_strict(STATUS_RANK, return_dtype=pl.Int8)
    # A person whose rows read different statuses (a kept row excluded as dead and a
    # duplicate under review, say) answers with the best of them, through whichever
    # rows a query meets; the sample keeps to people whose rows agree, so the expected
    # answer does not depend on which rows a query meets.
    return people.with_columns(
        expected_person=pl.col("expected").sort_by(rank).first().over("cluster_id", "kode_wilayah", "std"),
        statuses_in_person=pl.col("expected").n_unique().over("cluster_id"),
    )


def unambiguous(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows whose valid NIK and whose (desa, name) belong to one cluster only, so the
    answer is about that person alone."""
    rows = rows.with_columns(std=pl.Series(standard_names(rows["nama"].to_list())))
    return rows.filter(
        pl.col("nik").str.contains(r"^\d{16}$")
        & (pl.col("cluster_id").n_unique().over("nik") == 1)
        & (pl.col("cluster_id").n_unique().over("kode_wilayah", "std") == 1)
    )


def test_status_of_a_sample_matches_the_round_outputs(rows, index, generated_round):
    people = unambiguous(expected_people(rows)).filter(pl.col("statuses_in_person") == 1)
    # Every exclusion reason present, and all three statuses, in the sample.
    sample = pl.concat([
        people.filter(pl.col("own") == status).sample(n=min(60, people.filter(pl.col("own") == status).height), seed=5)
        for status in OUTCOMES.values()
    ])
    assert set(sample["expected"]) == {"terverifikasi", "diperiksa", "tidak_memenuhi_syarat"}
    checked = {"meninggal": 0, "inherited": 0}
    for person in sample.iter_rows(named=True):
        by_nik = index.by_nik(person["nik"], person["std"])
        region, more = index.by_region(person["kode_wilayah"], person["std"])
        assert by_nik.status == person["expected"], person["id_dtks"]
        assert [a.status for a in region] == [person["expected_person"]] and not more
        assert by_nik.round_date == generated_round["summary"]["as_of"]
        assert "*" in by_nik.nama and "*" in region[0].nama
        if "DECEASED" in (person["exclude_codes"] or []) and person["expected"] == "tidak_memenuhi_syarat":
            assert by_nik.reason == "meninggal"
            checked["meninggal"] += 1
        if person["expected"] != person["own"]:
            checked["inherited"] += 1  # a duplicate row answering as the person's kept row
    assert checked["meninggal"] > 0 and checked["inherited"] > 0


def test_names_match_after_standardisation(rows, index):
    person = unambiguous(rows).filter(pl.col("nama").str.starts_with("MUHAMMAD ")).sort("id_dtks").row(0, named=True)
    rest = person["nama"].removeprefix("MUHAMMAD ")
    expected = index.by_nik(person["nik"], standard_names([person["nama"]])[0])
    assert expected.status != "tidak_terdaftar"
    for spelling in (f"Moch. {rest}", f"moh {rest.lower()}", f"{rest} Muhammad"):
        assert index.by_nik(person["nik"], standard_names([spelling])[0]) == expected, spelling


def test_nik_without_the_right_name_answers_nothing(rows, index):
    person = unambiguous(rows).filter(pl.col("own") == "terverifikasi").sort("id_dtks").row(0, named=True)
    unknown = index.by_nik("3201010101010001", standard_names([person["nama"]])[0])
    for name in ("", "SITI", "BUDI SANTOSO", person["nama"].split(" ")[0] + " X"):
        assert index.by_nik(person["nik"], standard_names([name])[0] if name else "") == unknown
    assert unknown.status == "tidak_terdaftar" and unknown.nama is None and unknown.handle is None


def test_index_holds_no_names_or_niks_and_is_owner_only(rows, generated_round):
    folder = generated_round["out"] / "lookup"
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    assert folder.stat().st_mode & 0o077 == 0
    text = pl.read_parquet(folder / "index.parquet").write_csv()
    sample = rows.sample(n=300, seed=1)
    for value in sample["nik"].drop_nulls().to_list() + sample["nama"].to_list() + sample["id_dtks"].to_list():
        assert value not in text
    assert sorted(pl.read_parquet(folder / "index.parquet").columns) == sorted(
        ["k_hi", "k_lo", "status", "reason", "nama_samaran", "handle"])


def test_region_query_is_capped(tmp_path, rows, generated_round):
    """Seven people of one name in one desa: five answers and a note to use the NIK."""
    out = tmp_path / "round"
    shutil.copytree(generated_round["out"], out, ignore=shutil.ignore_patterns("*.xlsx", "*.html", "lookup"))
    desa = rows["kode_wilayah"][0]
    verified = pl.read_parquet(out / "verified_recipients.parquet")
    twins = verified.head(7).with_columns(nama=pl.lit("SITI AMINAH"), kode_wilayah=pl.lit(desa),
                                          cluster_id=pl.format("K-{}", "id_dtks"))
    pl.concat([verified.slice(7), twins]).write_parquet(out / "verified_recipients.parquet")
    (out / "staging" / "records.parquet").unlink()  # names standardised by the index builder itself
    build_index(out)
    answers, more = LookupIndex(index_dir(out)).by_region(desa, standard_names(["Siti Aminah"])[0])
    assert len(answers) == 5 and more and len({a.handle for a in answers}) == 5


def test_index_built_a_slice_of_clusters_at_a_time_holds_the_same_entries(tmp_path, generated_round, monkeypatch):
    """Large rounds build the key texts in slices of whole clusters (memory); the index
    must hold exactly what one pass gives (same secret; handles mapped back to rows)."""
    import pipeline.lookup.index as lookup_index

    monkeypatch.setattr(lookup_index.secrets, "token_bytes", lambda n: b"k" * n)
    entries = {}
    for slice_rows in (10**9, 3_000):
        out = tmp_path / f"round-{slice_rows}"
        shutil.copytree(generated_round["out"], out, ignore=shutil.ignore_patterns("*.xlsx", "*.html", "lookup"))
        monkeypatch.setattr(lookup_index, "SLICE_ROWS", slice_rows)
        build_index(out)
        folder = index_dir(out)
        handles = pl.read_parquet(folder / "handles.parquet").select("handle", "id_dtks")
        written = pl.read_parquet(folder / "index.parquet")
        # Written a key range at a time, the file must still be sorted by key throughout:
        # a query looks its key up by binary search.
        assert written.equals(written.sort("k_hi", "k_lo", "handle"))
        entries[slice_rows] = written.join(handles, on="handle").drop("handle").sort(pl.all())
    assert entries[3_000].height > 20_000
    assert entries[3_000].equals(entries[10**9])


# --------------------------------------------------------------------------- CLI


def test_cli_lookup_json(rows, generated_round, capsys):
    person = unambiguous(rows).filter(pl.col("own") == "diperiksa").sort("id_dtks").row(0, named=True)
    assert main(["lookup", "--round", str(generated_round["out"]), "--nik", person["nik"], "--nama", person["nama"], "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "diperiksa" and answer["round_date"] == "2026-11-21" and "*" in answer["nama"]
    assert main(["lookup", "--round", str(generated_round["out"]), "--desa", person["kode_wilayah"], "--nama", "ZZZ QQQ", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"status": "tidak_terdaftar", "reason": None, "round_date": "2026-11-21", "nama": None}]
    assert main(["lookup", "--round", str(generated_round["out"]), "--nik", "12345", "--nama", "X"]) == 2
    assert "16 digits" in capsys.readouterr().err


# --------------------------------------------------------------------------- server


@pytest.fixture
def client(generated_round, tmp_path):
    settings = Settings(round_path=generated_round["out"], objections_path=tmp_path / "objections.jsonl")
    settings.burst, settings.per_minute = 100, 600
    return TestClient(create_app(settings)), settings


def test_rate_limit_refuses_in_bahasa(generated_round, tmp_path):
    settings = Settings(round_path=generated_round["out"], objections_path=tmp_path / "q.jsonl", per_minute=6, burst=3)
    client = TestClient(create_app(settings))
    body = {"cara": "nik", "nik": "3201010101010001", "nama": "X"}
    codes = [client.post("/api/cek", json=body).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    refused = client.post("/api/cek", json=body)
    assert refused.status_code == 429 and refused.json()["pesan"].startswith("Terlalu banyak permintaan")
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    # The pickers' reference data is not rationed.
    assert client.get("/api/wilayah").status_code == 200


def test_server_answers_files_objections_and_logs_nothing_personal(client, rows, caplog, capfd):
    client, settings = client
    person = unambiguous(expected_people(rows)).filter(
        pl.col("exclude_codes").list.contains("DECEASED")).sort("id_dtks").row(0, named=True)
    caplog.set_level(logging.DEBUG)
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    answer = client.post("/api/cek", json={"cara": "nik", "nik": person["nik"], "nama": person["nama"]}).json()
    assert [a["status"] for a in answer["hasil"]] == ["tidak_memenuhi_syarat"]
    assert answer["hasil"][0]["reason_label"] == "tercatat meninggal"
    region = client.post("/api/cek", json={"cara": "wilayah", "desa": person["kode_wilayah"], "nama": person["nama"]}).json()
    assert region["hasil"][0]["handle"] == answer["hasil"][0]["handle"]
    bad = client.post("/api/cek", json={"cara": "nik", "nik": person["nik"][:15], "nama": person["nama"]})
    assert bad.status_code == 400 and person["nik"][:15] not in bad.text and person["nama"] not in bad.text
    assert client.post("/api/cek", data={"nama": person["nama"]}).status_code == 400  # a form post: refused
    receipt = client.post("/api/tanggapan", json={
        "handle": answer["hasil"][0]["handle"], "kategori": "masih_hidup",
        "alasan": f"Saya masih hidup, NIK saya {person['nik']}, lahir 1960-05-05"})
    assert receipt.status_code == 200 and receipt.json()["nomor"].startswith("TGP-")
    assert client.post("/api/tanggapan", json={"handle": "0" * 16, "kategori": "masih_hidup"}).status_code == 404

    queue, _ = read_queue(settings.objections_path)
    assert queue.select("id", "id_dtks", "category", "status_at_filing").row(0) == (
        receipt.json()["nomor"], person["id_dtks"], "masih_hidup", "tidak_memenuhi_syarat")
    assert person["nik"] not in queue["reason"][0] and "1960-**-**" in queue["reason"][0]
    assert settings.objections_path.stat().st_mode & 0o077 == 0

    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    for secret in (person["nik"], person["nama"], person["id_dtks"], person["nik"][:15]):
        assert secret not in logs


def test_server_follows_the_round_it_is_pointed_at(generated_round, tmp_path):
    """--round is a symlink swapped to a new round folder: the server keeps answering
    from the old index until the new one is loaded, then from the new one."""
    first, second = tmp_path / "r1", tmp_path / "r2"
    for target, date in ((first, "2026-11-21"), (second, "2027-05-21")):
        shutil.copytree(generated_round["out"], target, ignore=shutil.ignore_patterns("*.xlsx", "*.html"))
        build_index(target, round_date=date)
    current = tmp_path / "current"
    current.symlink_to(first)
    client = TestClient(create_app(Settings(round_path=current, objections_path=tmp_path / "q.jsonl", per_minute=6000, burst=1000)))
    ask = {"cara": "nik", "nik": "3201010101010001", "nama": "X"}
    assert client.post("/api/cek", json=ask).json()["round_date"] == "2026-11-21"
    swap = tmp_path / "current.new"
    swap.symlink_to(second)
    os.replace(swap, current)
    dates = set()
    deadline = time.monotonic() + 20
    while "2027-05-21" not in dates and time.monotonic() < deadline:
        dates.add(client.post("/api/cek", json=ask).json()["round_date"])
        time.sleep(0.05)
    assert dates <= {"2026-11-21", "2027-05-21"} and "2027-05-21" in dates


def test_every_code_a_row_gives_makes_one_key_even_with_gaps_and_repeats():
    from pipeline.lookup.index import key_texts

    nik_a, nik_b, nik_c = "3201014501900012", "3201014501900013", "3201010101800001"
    named = pl.DataFrame({
        "id_dtks": ["R1", "R2", "R3"], "cluster_id": ["R1", "R2", "R3"], "person_id": ["R1", "R2", "R3"],
        "status": ["terverifikasi", "diperiksa", "terverifikasi"], "reason": [None, None, None],
        "nama_samaran": ["S*** A*****", "B*** S******", "A***"], "_other_row": [False, False, False],
        "name_sorted": ["AMINAH SITI", "BUDI SANTOSO", "AGUS"],
        "kode_wilayah": ["3201011001", "3201011001", None],
        # R1: the original NIK repeats the NIK; R2: no NIK, only the original and a fuzzy
        # link's; R3: the fuzzy link found the NIK the row already has.
        "nik": [nik_a, None, nik_c], "nik_asli": [nik_a, nik_b, None], "fuzzy_nik": [None, nik_a, nik_c],
    })
    keys = sorted(key_texts(named)["key_text"].to_list())
    assert keys == sorted([
        f"N|{nik_a}|AMINAH SITI", "W|3201011001|AMINAH SITI",
        f"N|{nik_b}|BUDI SANTOSO", f"N|{nik_a}|BUDI SANTOSO", "W|3201011001|BUDI SANTOSO",
        f"N|{nik_c}|AGUS",
    ])


def test_a_round_without_a_named_row_builds_an_empty_index_in_one_process_and_in_slices(tmp_path, generated_round):
    """No row carries a name: no slice is written, and both builders still write an index
    (empty), leaving no slice files behind."""
    from types import SimpleNamespace

    from pipeline import partitioned

    for way in ("one process", "slices"):
        out = tmp_path / way.replace(" ", "-")
        shutil.copytree(generated_round["out"], out, ignore=shutil.ignore_patterns("*.xlsx", "*.html", "lookup"))
        for name in ("verified_recipients.parquet", "excluded.parquet", "review.parquet"):
            path = out / name
            pl.read_parquet(path).with_columns(nama=pl.lit(None, dtype=pl.String)).write_parquet(path)
        (out / "staging" / "records.parquet").unlink(missing_ok=True)
        if way == "one process":
            built = build_index(out)
        else:
            ctx = SimpleNamespace(work_dir=out, staging_dir=out / "staging", as_of=None, partitions=3, worker_threads=1)
            plan = partitioned.lookup_split(ctx)
            assert plan["paths"] == []
            built = partitioned.lookup_finish(ctx, plan)
        assert built["entries"] == 0 and built["people"] > 1000
        assert pl.read_parquet(out / "lookup" / "index.parquet").height == 0
        assert sorted(p.name for p in (out / "lookup").iterdir()) == ["handles.parquet", "index.parquet", "secret.key"]


def test_slices_missing_from_the_sink_stop_the_index_instead_of_emptying_it(tmp_path, generated_round, monkeypatch):
    """The slices are found by the partitioned sink's folder layout: if it ever writes
    them elsewhere, the build stops rather than publishing an index without entries."""
    out = tmp_path / "round"
    shutil.copytree(generated_round["out"], out, ignore=shutil.ignore_patterns("*.xlsx", "*.html", "lookup"))
    real = pl.PartitionBy
    monkeypatch.setattr(pl, "PartitionBy", lambda base, **options: real(str(tmp_path / "elsewhere"), **options))
    with pytest.raises(RuntimeError, match="no slice was found"):
        build_index(out)
    assert not (out / "lookup" / "index.parquet").exists()
