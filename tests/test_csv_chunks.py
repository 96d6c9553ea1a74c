"""A CSV extract read in chunks gives what reading it whole gives: the same staged rows,
quarantine (true lines and reasons), counts, warnings and refusals, wherever the chunks
are cut. Every CSV file of the bad-input corpus and the generated sample are read both
ways, the corpus with chunks of one byte (a cut at nearly every line)."""

import shutil
from pathlib import Path

import polars as pl
import pytest
from corpus import CASES

from pipeline import csvread
from pipeline.errors import InputError, ReconciliationError
from pipeline.ingest import ingest_extract, plan_csv_extract

TODAY = "2026-11-21"
SAMPLE = Path(__file__).parent.parent / "data" / "sample"


def staged(path: Path, kind: str, staging: Path):
    """What ingest leaves: the result without its paths, the staged rows and the quarantine,
    or the error a user would read."""
    try:
        result = ingest_extract(path, kind, staging, TODAY).to_dict()
    except (InputError, ReconciliationError) as error:
        return ("refused", type(error).__name__, str(error))
    rows, quarantine = pl.read_parquet(result.pop("staging_path")), pl.read_parquet(result.pop("quarantine_path"))
    return result, rows, quarantine


def both_ways(path: Path, kind: str, tmp_path: Path, monkeypatch, chunk_bytes: int):
    whole = staged(path, kind, tmp_path / "whole")
    monkeypatch.setattr(csvread, "CSV_CHUNK_BYTES", chunk_bytes)
    try:
        plan = plan_csv_extract(path, kind, TODAY)
    except (InputError, ReconciliationError):
        plan = None
    chunked = staged(path, kind, tmp_path / "chunked")
    monkeypatch.undo()
    return whole, chunked, plan


def assert_same(whole, chunked):
    if whole[0] == "refused":
        assert chunked == whole
        return
    assert chunked[0] == whole[0]
    assert chunked[1].equals(whole[1])
    assert chunked[2].equals(whole[2])


def corpus_files(tmp_path: Path):
    """Every distinct CSV extract of the corpus (most cases share a clean Dukcapil file)."""
    seen = set()
    for case in CASES:
        folder = tmp_path / case.name
        folder.mkdir(parents=True)
        try:
            run = case.build(folder)
        except Exception:
            continue
        for kind in ("dtks", "dukcapil"):
            path = Path(getattr(run, kind))
            if path.suffix == ".csv" and path.is_file() and (kind, path.read_bytes()) not in seen:
                seen.add((kind, path.read_bytes()))
                yield case.name, kind, path


def test_every_corpus_csv_reads_the_same_in_chunks(tmp_path, monkeypatch):
    """Chunks of one byte: a cut at every line a record of the whole reading begins on."""
    files, chunked_files = 0, 0
    for name, kind, path in corpus_files(tmp_path / "corpus"):
        work = tmp_path / "work" / name / kind
        whole, chunked, plan = both_ways(path, kind, work, monkeypatch, 1)
        assert_same(whole, chunked)
        files += 1
        chunked_files += plan is not None and len(plan.csv.chunks) > 1
        shutil.rmtree(work)
    assert files >= 30
    # 23 of 35 files are cut; the others are read whole by design (UTF-16, classic Mac line
    # endings, a header alone) or refused before any chunk (empty, a workbook, columns).
    assert chunked_files >= 20


def test_the_generated_sample_reads_the_same_in_chunks(tmp_path, monkeypatch):
    for kind in ("dtks", "dukcapil"):
        path = SAMPLE / f"{kind}.csv"
        whole, chunked, plan = both_ways(path, kind, tmp_path / kind, monkeypatch, 20_000)
        assert len(plan.csv.chunks) > 20
        assert_same(whole, chunked)
        assert whole[1].height > 1000
        assert kind != "dtks" or whole[2].height > 0


@pytest.mark.parametrize("every_value_quoted", [False, True])
def test_a_quoted_line_break_is_never_cut(tmp_path, monkeypatch, every_value_quoted):
    """Records whose quoted values hold line breaks, and an unterminated quote, at every
    possible cut: each chunk starts on a line no quoted value spans. Also when the export
    quotes every value (every line then holds quotes)."""
    header = "id_dtks,nik,no_kk,nama,jenis_kelamin,tempat_lahir,tanggal_lahir,alamat,kode_wilayah,program"
    good = "D{0:03d},3201014501900012,3201010101100001,SITI {0},P,BOGOR,1990-01-05,JL A {0},3201012001,BPNT"
    lines = [header]
    for i in range(60):
        if i % 7 == 3:
            lines.append(good.format(i).replace("JL A", '"JL A\nRT 01\nRW 02'))
            lines[-1] = lines[-1].replace(",3201012001", '",3201012001')
        elif i % 7 == 5:  # the first value holds the break: its second line looks complete
            lines.append('"' + good.format(i).replace(",", '\nX",', 1))
        elif i == 41:
            lines.append(good.format(i).replace("SITI", '"SITI'))  # never closed
        else:
            lines.append(good.format(i))
    if every_value_quoted:
        lines = [",".join(f'"{v}"' if v[:1] != '"' else v for v in line.split(",")) for line in lines]
    path = tmp_path / "dtks.csv"
    path.write_text("\n".join(lines) + "\n")
    for chunk_bytes in (1, 50, 97, 400):
        whole, chunked, plan = both_ways(path, "dtks", tmp_path / f"w{chunk_bytes}", monkeypatch, chunk_bytes)
        assert_same(whole, chunked)
        assert len(plan.csv.chunks) > 1
        quarantine = whole[2]
        assert quarantine["line"].to_list() == [2 + 41 + 2 * 6 + 6]  # the unterminated quote, alone
        assert whole[0]["counts"]["multi_line_records"] == 17 and whole[1].height == 59
