"""The row-level CSV reader's building blocks: the UTF-8 check agrees with Python's
decoder, block-wise counting agrees with whole-buffer counting, and records keep their
true physical lines."""

import random

import numpy as np
import pytest

from pipeline import csvread
from pipeline.csvread import Scanner, invalid_utf8_positions, read_csv_records


def test_utf8_check_agrees_with_python():
    pieces = [b"a", b",", b"\xc3\xa9", b"\xe2\x80\x99", b"\xf0\x9f\x98\x80", b"\xff", b"\xc3", b"\x80",
              b"\xed\xa0\x80", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]
    rng = random.Random(7)
    for _ in range(2000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        invalid, _ = invalid_utf8_positions(np.frombuffer(data, dtype=np.uint8))
        try:
            data.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        assert valid == (len(invalid) == 0), data


def test_block_wise_counts_match_the_whole_buffer(monkeypatch):
    rng = np.random.default_rng(3)
    buf = rng.choice(np.frombuffer(b"ab,\n\"", dtype=np.uint8), size=5000)
    starts = np.concatenate([[0], np.flatnonzero(buf == 10) + 1])
    starts = starts[starts < len(buf)]
    monkeypatch.setattr(Scanner, "BLOCK", 37)
    scanner = Scanner(buf)
    assert (scanner.positions(44) == np.flatnonzero(buf == 44)).all()
    expected = np.add.reduceat((buf == 44).astype(np.int64), starts)
    assert (scanner.per_line(44, starts) == expected).all()


@pytest.mark.parametrize("text, lines, rejected", [
    ('id,a\n1,"x\ny"\n2,b\n', [2, 4], {}),
    ('id,a\n\n1,x\n  \n2,"p\n\nq"\n3,y\n', [3, 5, 8], {}),
    ('id,a\n1,"x\n2,b\n3,c\n', [3, 4], {2: "tidak ditutup"}),
    ('id,a\n1,x,y\n2\n3,c\n', [4], {2: "3 kolom", 3: "1 kolom"}),
    ('id,a\n1,"a""b"\n2,ab"c\n', [2], {3: "di tengah nilai"}),
])
def test_records_keep_their_physical_lines(tmp_path, text, lines, rejected):
    path = tmp_path / "x.csv"
    path.write_text(text)
    read = read_csv_records(path, "--dtks")
    assert read.rows["_line"].to_list() == lines
    found = dict(zip(read.rejects["line"].to_list(), read.rejects["reason"].to_list()))
    assert set(found) == set(rejected) and all(rejected[k] in found[k] for k in rejected)
    counts = read.counts
    assert counts["physical_lines"] == text.count("\n")
    assert counts["records"] == len(lines) + len(rejected)


def test_damaged_file_is_parsed_from_a_clean_copy(tmp_path, monkeypatch):
    path = tmp_path / "x.csv"
    path.write_text('id,a\n1,"x\n2,b\n')
    read = read_csv_records(path, "--dtks", work_dir=tmp_path)
    assert read.rows["id"].to_list() == ["2"] and (tmp_path / "x.read.csv").read_text() == "id,a\n2,b\n"
    assert csvread.MAX_QUOTED_LINES >= 2


def test_delimiters_inside_quotes_are_counted_alike_by_bytes_and_by_delimiters():
    """The two ways of counting the delimiters inside quotes (a few quoted lines byte by
    byte, most lines quoted delimiter by delimiter) agree on any bytes."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        buf = rng.choice(np.frombuffer(b'ab,,\n""\r', dtype=np.uint8), size=int(rng.integers(1, 400)))
        if rng.random() < 0.3:
            buf = np.concatenate([np.frombuffer(b"\xef\xbb\xbf", dtype=np.uint8), buf])
        s = csvread.Structure(buf, ord(","))
        quoted = np.flatnonzero(s.quote_count > 0)
        by_bytes, by_delimiters = s._inside_by_bytes(quoted), s._inside_by_delimiters()
        assert (by_bytes == by_delimiters).all(), buf.tobytes()
        assert (by_bytes <= s.delim_count).all()
